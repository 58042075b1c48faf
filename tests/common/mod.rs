//! What the test drivers that build C and C++ programs against the library share: where cargo
//! put the library, the SONAME links a shared-library link needs, the static link flags, and
//! the closing "N passed, N failed" line of every test program.

#![allow(dead_code)] // each driver uses part of this

use std::path::PathBuf;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/deps`, where cargo put libafut.so and libafut.a for this run.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().expect("deps dir").to_path_buf()
}

/// The shared library's SONAME (see build.rs): the runtime loader looks for this name, so
/// programs link through a directory that has it as a symlink to cargo's `libafut.so`.
pub fn soname() -> String {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    if major == 0 { format!("libafut.so.0.{minor}") } else { format!("libafut.so.{major}") }
}

/// `lib_dir()/name`, holding `libafut.so` and its SONAME link, both pointing at cargo's build.
/// Links are replaced atomically, so concurrent runs never see them missing.
pub fn shared_lib_dir(name: &str) -> PathBuf {
    let dir = lib_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let target = lib_dir().join("libafut.so");
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
