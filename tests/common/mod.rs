//! What the test drivers that build C and C++ programs against the library share: building
//! the library's C artefacts, the SONAME links a shared-library link needs, the static link flags, and
//! the closing "N passed, N failed" line of every test program.

#![allow(dead_code)] // each driver uses part of this

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/deps`, the directory of this test executable: the drivers build their
/// programs in subdirectories of it.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().expect("deps dir").to_path_buf()
}

/// The two C artefacts of this profile, as `cargo build` made them.
pub struct Artefacts {
    /// `libafut.so`
    pub shared: PathBuf,
    /// `libafut.a`
    pub static_lib: PathBuf,
}

/// Builds `libafut.so` and `libafut.a` once per test executable, with `cargo build --lib` for
/// the profile, target and target directory this test was built for, and returns their paths.
///
/// The crate has no `rlib` (an rlib would turn LTO off for `cargo build --release`), so the
/// integration tests do not depend on the library target and `cargo test` does not build the
/// C artefacts by itself. The target directory is not locked while the tests run; the build
/// reuses the dependencies `cargo test` compiled and is a no-op when nothing changed.
pub fn artefacts() -> &'static Artefacts {
    static BUILT: OnceLock<Artefacts> = OnceLock::new();
    BUILT.get_or_init(build_artefacts)
}

fn build_artefacts() -> Artefacts {
    // This executable is <target-dir>/[<triple>/]<profile-dir>/deps/<name>-<hash>.
    let deps = deps_dir();
    let profile_dir = deps.parent().expect("profile directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(name) => name.to_string(),
        None => panic!("no profile directory above {}", deps.display()),
    };
    let mut above = profile_dir.parent().expect("target directory");
    let target = env!("AFUT_TARGET");
    let explicit_target = above.file_name().is_some_and(|n| n == target);
    if explicit_target {
        above = above.parent().expect("target directory");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--lib", "--color", "never", "--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(manifest_dir().join("Cargo.toml"))
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(above);
    if explicit_target {
        cmd.args(["--target", target]);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let files = artefact_filenames(&String::from_utf8_lossy(&out.stdout));
    let find = |name: &str| -> PathBuf {
        files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("{cmd:?} reported no {name} (it reported {files:?})"))
            .clone()
    };
    let built = Artefacts { shared: find("libafut.so"), static_lib: find("libafut.a") };
    for f in [&built.shared, &built.static_lib] {
        assert!(f.is_file(), "{} does not exist after {cmd:?}", f.display());
    }
    built
}

/// The `filenames` of afut's library in cargo's JSON messages (one object per line).
fn artefact_filenames(json_lines: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in json_lines.lines() {
        if !line.contains(r#""reason":"compiler-artifact""#) || !line.contains(r#""name":"afut""#) {
            continue;
        }
        let Some(start) = line.find(r#""filenames":["#) else { continue };
        let rest = &line[start + r#""filenames":["#.len()..];
        let list = &rest[..rest.find(']').expect("closing ] of filenames")];
        assert!(!list.contains('\\'), "escaped characters in cargo's filenames: {list}");
        files.extend(list.split(',').map(|f| PathBuf::from(f.trim_matches('"'))));
    }
    files
}

/// Path to the shared library (built on first use).
pub fn shared_lib() -> &'static Path {
    &artefacts().shared
}

/// Path to the static library (built on first use).
pub fn static_lib() -> &'static Path {
    &artefacts().static_lib
}

/// The shared library's SONAME (see build.rs): the runtime loader looks for this name, so
/// programs link through a directory that has it as a symlink to cargo's `libafut.so`.
pub fn soname() -> String {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    if major == 0 { format!("libafut.so.0.{minor}") } else { format!("libafut.so.{major}") }
}

/// `deps_dir()/name`, holding `libafut.so` and its SONAME link, both pointing at cargo's build.
/// Links are replaced atomically, so concurrent runs never see them missing.
pub fn shared_lib_dir(name: &str) -> PathBuf {
    let dir = deps_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let target = shared_lib().to_path_buf();
    for name in ["libafut.so".to_string(), soname()] {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = dir.join(format!(".{}.{}", link.file_name().unwrap().to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    dir
}

/// True under CI (`CI` set to anything but empty, `false` or `0`): a check whose tool is
/// missing must then fail instead of being skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// System libraries a Rust static library needs (`--print native-static-libs`); the packaging
/// tests keep this list, CMake's and afut.pc's equal.
pub const STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

/// Parses a test program's closing "N passed, N failed" line.
pub fn closing_counts(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed, "))?;
    let mut words = line.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}
