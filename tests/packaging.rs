//! Packaging checks: libafut.so, include/afut.h and the build files describe one
//! and the same library, the way a distribution's library would.
//!
//! - the shared library exports exactly the functions include/afut.h declares, all `afut_*`
//!   (`nm -D --defined-only`);
//! - its SONAME follows the rule in build.rs (`libafut.so.0.MINOR` before 1.0,
//!   `libafut.so.MAJOR` after), CMake applies the same rule, and the file has no
//!   RPATH/RUNPATH, no text relocations and a non-executable stack (`readelf`);
//! - the header compiles alone as C99 and C11 (`-Wstrict-prototypes`), C++11 and C++17,
//!   with `-Wall -Wextra -Wpedantic -Werror`;
//! - the system libraries a static link needs, as rustc prints them
//!   (`--print native-static-libs`), are the ones tests/common/mod.rs, CMakeLists.txt,
//!   the generated afut.pc (`Libs.private`), the CMake package and README.md declare;
//! - one version everywhere: Cargo.toml, the header's AFUT_VERSION_* macros, the CMake
//!   project (and its package version file) and afut.pc;
//! - one build, one artefact: Cargo.toml's library has only the two C crate types (an `rlib`
//!   or `dylib` beside them makes rustc skip LTO) and the release profile has LTO, so a plain
//!   `cargo build --release` makes the LTO libraries CMake and the benchmarks use
//!   (scripts/consumers.sh compares the two builds' files).
//!
//! A check whose tool (nm, readelf, cc, c++, cmake) is missing is skipped with a note
//! on stderr, except under CI (`CI=true`), where a missing tool fails the check.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Scratch space that survives between runs (`target/tmp/packaging`), so the cargo
/// build in `built()` is incremental.
fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("packaging").join(name);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Writes past the test harness's output capture, so skips are visible in a normal run.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "packaging: {msg}");
}

fn on_path(tool: &str) -> bool {
    let path = Path::new(tool);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// True if `tool` can be run. Otherwise the check is skipped (false), or fails under CI.
fn require(tool: &str, check: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    if in_ci() {
        panic!("{check}: `{tool}` is not installed, and CI=true requires every packaging check to run");
    }
    note(&format!("SKIPPED {check}: `{tool}` not found"));
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What one `cargo rustc --lib -- --print native-static-libs` produced.
struct Built {
    /// The shared library (`libafut.so`), as cargo links it with build.rs's flags.
    shared: PathBuf,
    /// rustc's `native-static-libs` note for the static library.
    native_static_libs: Option<Vec<String>>,
}

/// Builds the library (both crate types of Cargo.toml) once per test run, in its own
/// target directory: the extra rustc arguments (`--print native-static-libs`) are part of
/// cargo's fingerprint, so in the target directory of this `cargo test` they would make the
/// next `cargo build` of the C suite's libraries (tests/common/mod.rs) compile afut again.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let target_dir = tmp_dir("cargo");
        let build = || {
            let out = run(Command::new(&cargo)
                .args(["rustc", "--lib", "--color", "never"])
                .arg("--manifest-path")
                .arg(manifest_dir().join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target_dir)
                .args(["-j", "2", "--", "--print", "native-static-libs"]));
            parse_native_static_libs(&String::from_utf8_lossy(&out.stderr))
        };
        let mut native_static_libs = build();
        if native_static_libs.is_none() {
            // Fresh from an earlier run and cargo did not replay rustc's note: rebuild afut only.
            run(Command::new(&cargo)
                .args(["clean", "-p", "afut", "--target-dir"])
                .arg(&target_dir)
                .arg("--manifest-path")
                .arg(manifest_dir().join("Cargo.toml")));
            native_static_libs = build();
        }
        let shared = target_dir.join("debug/libafut.so");
        assert!(shared.is_file(), "cargo rustc --lib did not produce {}", shared.display());
        Built { shared, native_static_libs }
    })
}

fn shared_lib() -> PathBuf {
    built().shared.clone()
}

fn header_path() -> PathBuf {
    manifest_dir().join("include/afut.h")
}

/// The SONAME rule of build.rs, for this crate's version.
fn expected_soname() -> String {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    if major == 0 { format!("libafut.so.0.{minor}") } else { format!("libafut.so.{major}") }
}

// ---------------------------------------------------------------------------
// Reading the header
// ---------------------------------------------------------------------------

/// The header without comments and preprocessor lines (string literals kept).
fn header_declarations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    } else if c == '"' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    // Drop preprocessor lines, continuation lines included.
    let mut kept = String::with_capacity(out.len());
    let mut in_directive = false;
    for line in out.lines() {
        let directive = in_directive || line.trim_start().starts_with('#');
        in_directive = directive && line.trim_end().ends_with('\\');
        if !directive {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// Names of the functions the header declares: every `afut_*` identifier directly
/// followed by `(`. Function-pointer typedefs (`(*afut_free_fn)(...)`) are followed
/// by `)` and so are not counted.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let text = header_declarations(header);
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if word.starts_with("afut_") && j < bytes.len() && bytes[j] == b'(' {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The value of `#define NAME value` in the header.
fn header_define(header: &str, name: &str) -> Option<String> {
    header.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix('#')?.trim_start().strip_prefix("define")?;
        let mut words = rest.split_whitespace();
        (words.next()? == name).then(|| words.collect::<Vec<_>>().join(" "))
    })
}

// ---------------------------------------------------------------------------
// The static link flags, wherever they are written down
// ---------------------------------------------------------------------------

/// `STATIC_LIBS` in tests/common/mod.rs, the list the C and C++ suites link libafut.a with.
fn c_suite_static_libs() -> Vec<String> {
    let text = read(&manifest_dir().join("tests/common/mod.rs"));
    let marker = "STATIC_LIBS: &[&str] = &[";
    let start = text.find(marker).expect("tests/common/mod.rs defines STATIC_LIBS") + marker.len();
    let rest = &text[start..];
    let list = &rest[..rest.find(']').expect("STATIC_LIBS ends with ]")];
    list.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
}

/// `set(AFUT_NATIVE_STATIC_LIBS ...)` in CMakeLists.txt.
fn cmake_static_libs() -> Vec<String> {
    let text = read(&manifest_dir().join("CMakeLists.txt"));
    let start = text.find("set(AFUT_NATIVE_STATIC_LIBS").expect("CMakeLists.txt sets AFUT_NATIVE_STATIC_LIBS");
    let rest = &text[start + "set(AFUT_NATIVE_STATIC_LIBS".len()..];
    rest[..rest.find(')').expect("set( ... ) closes")].split_whitespace().map(str::to_string).collect()
}

/// The flags after "native-static-libs:" in rustc's note.
fn parse_native_static_libs(stderr: &str) -> Option<Vec<String>> {
    let line = stderr.lines().find(|l| l.contains("native-static-libs:"))?;
    let flags = &line[line.find("native-static-libs:")? + "native-static-libs:".len()..];
    Some(flags.split_whitespace().map(str::to_string).collect())
}

// ---------------------------------------------------------------------------
// A configured (not built) CMake tree, shared by the CMake checks
// ---------------------------------------------------------------------------

struct CMakeTree {
    dir: PathBuf,
}

/// Configures CMakeLists.txt once per test run. Configuring writes afutConfig.cmake,
/// afutConfigVersion.cmake and afut.pc; it does not run cargo.
fn cmake_tree() -> &'static CMakeTree {
    static TREE: OnceLock<CMakeTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tmp_dir("cmake-configure");
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("cmake")
            .arg("-S")
            .arg(manifest_dir())
            .arg("-B")
            .arg(&dir)
            .arg("-DAFUT_BUILD_TESTS=OFF")
            .arg("-DAFUT_INSTALL=ON")
            .arg("-DCMAKE_INSTALL_PREFIX=/opt/afut-packaging-check"));
        CMakeTree { dir }
    })
}

/// The `Key: value` field of a .pc file.
fn pc_field(pc: &str, key: &str) -> Option<String> {
    pc.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

#[test]
fn exported_symbols_are_the_header_functions() {
    if !require("nm", "exported symbols") {
        return;
    }
    let lib = shared_lib();
    let listing = stdout_of(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let exported: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|name| name.split('@').next().unwrap().to_string())
        .collect();
    let not_afut: Vec<_> = exported.iter().filter(|s| !s.starts_with("afut_")).collect();
    assert!(not_afut.is_empty(), "{} exports symbols outside afut_*: {not_afut:?}", lib.display());

    let declared = declared_functions(&read(&header_path()));
    assert!(!declared.is_empty(), "no afut_* function found in include/afut.h");
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    let missing: Vec<_> = declared.difference(&exported).collect();
    assert!(
        undeclared.is_empty() && missing.is_empty(),
        "exported but not declared in include/afut.h: {undeclared:?}\n\
         declared in include/afut.h but not exported: {missing:?}"
    );
}

#[test]
fn soname_follows_the_rule() {
    if !require("readelf", "SONAME") {
        return;
    }
    let dynamic = stdout_of(Command::new("readelf").arg("-d").arg(shared_lib()));
    let soname = dynamic
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("Library soname: [")? + "Library soname: [".len()..];
            Some(rest[..rest.find(']')?].to_string())
        })
        .expect("libafut.so has a SONAME");
    assert_eq!(soname, expected_soname(), "SONAME of libafut.so (rule: build.rs)");
}

#[test]
fn cmake_uses_the_same_soname_rule() {
    if !require("cmake", "CMake's SONAME rule") {
        return;
    }
    let out = stdout_of(Command::new("cmake").arg("-P").arg(manifest_dir().join("cmake/afutVersion.cmake")));
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("cmake/afutVersion.cmake printed no {key}=: {out}"))
            .to_string()
    };
    assert_eq!(value("soname"), expected_soname(), "cmake/afutVersion.cmake vs build.rs");
    assert_eq!(value("realname"), format!("libafut.so.{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(value("version"), env!("CARGO_PKG_VERSION"));
}

#[test]
fn shared_library_is_well_formed() {
    if !require("readelf", "shared library hygiene") {
        return;
    }
    let lib = shared_lib();
    let dynamic = stdout_of(Command::new("readelf").arg("-d").arg(&lib));
    for tag in ["(RPATH)", "(RUNPATH)", "(TEXTREL)"] {
        assert!(!dynamic.contains(tag), "{} has a {tag} entry:\n{dynamic}", lib.display());
    }
    assert!(
        !dynamic.lines().any(|l| l.contains("(FLAGS)") && l.contains("TEXTREL")),
        "{} needs text relocations",
        lib.display()
    );
    let headers = stdout_of(Command::new("readelf").arg("-lW").arg(&lib));
    let stack =
        headers.lines().find(|l| l.trim_start().starts_with("GNU_STACK")).expect("libafut.so has a GNU_STACK header");
    assert!(!stack.contains("RWE"), "{} asks for an executable stack: {stack}", lib.display());
}

/// Compiles a file that includes only afut.h (twice: the include guard) with the
/// given compiler and flags.
fn header_compiles(compiler_env: &str, default: &str, lang: &str, flags: &[&str]) {
    let compiler = std::env::var(compiler_env).ok().filter(|c| !c.trim().is_empty());
    let compiler = compiler.as_deref().unwrap_or(default);
    let mut words = compiler.split_whitespace();
    let program = words.next().unwrap();
    let check = format!("header compiles as {}", flags[0]);
    if !require(program, &check) {
        return;
    }
    let ext = if lang == "c" { "c" } else { "cpp" };
    let name = flags[0].trim_start_matches("-std=").replace('+', "x");
    let src = tmp_dir("header").join(format!("header_{name}.{ext}"));
    std::fs::write(&src, "#include \"afut.h\"\n#include \"afut.h\"\n").unwrap();
    let out = Command::new(program)
        .args(words)
        .args(["-x", lang])
        .args(flags)
        .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only"])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "include/afut.h does not compile alone with {program} {}:\n{}",
        flags.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99() {
    header_compiles("CC", "cc", "c", &["-std=c99", "-Wstrict-prototypes"]);
}

#[test]
fn header_compiles_as_c11() {
    header_compiles("CC", "cc", "c", &["-std=c11", "-Wstrict-prototypes"]);
}

#[test]
fn header_compiles_as_cxx11() {
    header_compiles("CXX", "c++", "c++", &["-std=c++11"]);
}

#[test]
fn header_compiles_as_cxx17() {
    header_compiles("CXX", "c++", "c++", &["-std=c++17"]);
}

/// Asks rustc itself, through the build in `built()`.
#[test]
fn static_libs_match_rustc() {
    let rustc = built().native_static_libs.clone().expect("rustc printed no native-static-libs note for the staticlib");
    assert_eq!(
        rustc,
        c_suite_static_libs(),
        "rustc's native-static-libs vs STATIC_LIBS in tests/common/mod.rs \
         (update it, CMakeLists.txt and README.md together)"
    );
}

#[test]
fn static_libs_agree_in_sources() {
    let expected = c_suite_static_libs();
    assert!(expected.iter().all(|f| f.starts_with("-l")), "STATIC_LIBS: {expected:?}");
    assert_eq!(cmake_static_libs(), expected, "AFUT_NATIVE_STATIC_LIBS in CMakeLists.txt vs tests/common/mod.rs");
    let readme = manifest_dir().join("README.md");
    if !readme.is_file() {
        note("no README.md: its static link flags are not checked");
        return;
    }
    let text = read(&readme);
    let joined = expected.join(" ");
    let mentions: Vec<&str> = text.lines().filter(|l| l.contains(expected[0].as_str())).collect();
    if mentions.is_empty() {
        note(&format!("README.md does not mention {}: its static link flags are not checked", expected[0]));
    }
    for line in mentions {
        assert!(line.contains(&joined), "README.md lists static link flags that differ from `{joined}`:\n{line}");
    }
}

#[test]
fn cmake_package_agrees() {
    if !require("cmake", "CMake package files") {
        return;
    }
    let tree = cmake_tree();
    let version = env!("CARGO_PKG_VERSION");
    let libs = c_suite_static_libs();

    let version_file = read(&tree.dir.join("afutConfigVersion.cmake"));
    assert!(
        version_file.contains(&format!("set(PACKAGE_VERSION \"{version}\")")),
        "afutConfigVersion.cmake does not say version {version}"
    );
    let config = read(&tree.dir.join("afutConfig.cmake"));
    assert!(
        config.contains(&format!("IMPORTED_SONAME \"{}\"", expected_soname())),
        "afutConfig.cmake does not give afut::afut_shared the SONAME {}",
        expected_soname()
    );
    assert!(
        config.contains(&format!("INTERFACE_LINK_LIBRARIES \"{}\"", libs.join(";"))),
        "afutConfig.cmake does not give afut::afut_static the libraries {libs:?}"
    );

    let pc_path = tree.dir.join("afut.pc");
    let pc = read(&pc_path);
    assert_eq!(pc_field(&pc, "Version").as_deref(), Some(version), "afut.pc Version");
    assert_eq!(pc_field(&pc, "Libs.private").as_deref(), Some(libs.join(" ").as_str()), "afut.pc Libs.private");
    assert!(!pc.contains('@'), "afut.pc has an unsubstituted @VARIABLE@:\n{pc}");
    if require("pkg-config", "afut.pc read by pkg-config") {
        let modversion =
            stdout_of(Command::new("pkg-config").env("PKG_CONFIG_PATH", &tree.dir).args(["--modversion", "afut"]));
        assert_eq!(modversion.trim(), version, "pkg-config --modversion afut");
        let static_libs = stdout_of(Command::new("pkg-config").env("PKG_CONFIG_PATH", &tree.dir).args([
            "--static",
            "--libs-only-l",
            "afut",
        ]));
        assert_eq!(static_libs.trim(), format!("-lafut {}", libs.join(" ")), "pkg-config --static --libs-only-l afut");
    }
}

#[test]
fn versions_agree() {
    let version = env!("CARGO_PKG_VERSION");
    // Cargo.toml as written (CARGO_PKG_VERSION comes from it, but say so plainly).
    let manifest = read(&manifest_dir().join("Cargo.toml"));
    assert!(manifest.lines().any(|l| l.trim() == format!("version = \"{version}\"")));

    let header = read(&header_path());
    let macro_value =
        |name: &str| header_define(&header, name).unwrap_or_else(|| panic!("include/afut.h does not define {name}"));
    let from_macros = format!(
        "{}.{}.{}",
        macro_value("AFUT_VERSION_MAJOR"),
        macro_value("AFUT_VERSION_MINOR"),
        macro_value("AFUT_VERSION_PATCH")
    );
    assert_eq!(from_macros, version, "AFUT_VERSION_MAJOR/MINOR/PATCH in include/afut.h vs Cargo.toml");
    assert_eq!(macro_value("AFUT_VERSION_STRING"), format!("\"{version}\""), "AFUT_VERSION_STRING");
    // The CMake project and afut.pc take their version from Cargo.toml when
    // configured; cmake_package_agrees checks what they generate.
}

/// The value of `key` in the `[section]` table of a TOML file, as written (a string keeps
/// its quotes); enough for Cargo.toml's one-line values.
fn toml_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if in_section && k.trim() == key => return Some(v.trim().to_string()),
            _ => {}
        }
    }
    None
}

/// The items of a one-line TOML array of strings: `["a", "b"]` gives `a`, `b`.
fn toml_strings(value: &str) -> Vec<String> {
    let inner = value.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
}

/// `cargo build --release` is the build CMake, the benchmarks and the examples use: rustc
/// applies the release profile's LTO only when every crate type of the library can take it
/// (cdylib, staticlib), and Cargo.toml's release profile asks for it.
#[test]
fn release_build_is_the_lto_artefact() {
    let manifest = read(&manifest_dir().join("Cargo.toml"));
    let types = toml_value(&manifest, "lib", "crate-type").expect("Cargo.toml: [lib] crate-type");
    let mut types = toml_strings(&types);
    types.sort();
    assert_eq!(
        types,
        ["cdylib", "staticlib"],
        "Cargo.toml [lib] crate-type must be exactly the two C artefacts: a Rust crate type \
         (rlib, lib, dylib) beside them makes `cargo build --release` skip LTO"
    );
    let lto = toml_value(&manifest, "profile.release", "lto").expect("Cargo.toml: [profile.release] lto");
    assert!(
        ["true", "\"fat\"", "\"thin\""].contains(&lto.as_str()),
        "Cargo.toml [profile.release] lto = {lto}: the release artefacts are meant to be LTO builds"
    );
}

// ---------------------------------------------------------------------------
// The parsers above, on known input
// ---------------------------------------------------------------------------

#[test]
fn parsers_work_on_samples() {
    let header = r#"
#ifndef AFUT_H
#define AFUT_H
#define AFUT_VERSION_MAJOR 3
#define AFUT_CALL(x) afut_hidden(x)
/** afut_in_comment(void) */
typedef void (*afut_free_fn)(void *ptr);
typedef struct afut_exception_t { int32_t code; } afut_exception_t;
// afut_line_comment(void);
const char *afut_version(void);
afut_status_t afut_set_result(afut_t *fut,
                              void *value,
                              afut_free_fn value_free);
bool afut_done (const afut_t *fut);
#endif
"#;
    let names: Vec<String> = declared_functions(header).into_iter().collect();
    assert_eq!(names, ["afut_done", "afut_set_result", "afut_version"]);
    assert_eq!(header_define(header, "AFUT_VERSION_MAJOR").as_deref(), Some("3"));
    assert_eq!(
        parse_native_static_libs("warning: x\nnote: native-static-libs: -lgcc_s -lc\n"),
        Some(vec!["-lgcc_s".to_string(), "-lc".to_string()])
    );
    assert_eq!(pc_field("Name: afut\nVersion: 1.2.3\n", "Version").as_deref(), Some("1.2.3"));
    let manifest = "[package]\nname = \"x\"\n[lib]\nname = \"x\" # the lib\n# crate-type = [\"dylib\"]\n\
                    crate-type = [\"cdylib\", \"rlib\"]\n[profile.release]\nlto = true\n";
    assert_eq!(toml_value(manifest, "lib", "name").as_deref(), Some("\"x\""));
    assert_eq!(toml_strings(&toml_value(manifest, "lib", "crate-type").unwrap()), ["cdylib", "rlib"]);
    assert_eq!(toml_value(manifest, "profile.release", "lto").as_deref(), Some("true"));
    assert_eq!(toml_value(manifest, "profile.dev", "lto"), None);
}
