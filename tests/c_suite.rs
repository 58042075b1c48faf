//! Runs the C test suite (`c-tests/*.c`) against the real C ABI.
//!
//! Every `c-tests/*.c` is compiled against `include/afut.h` and linked twice, once
//! against `libafut.so` and once against `libafut.a`, then run. Each program prints
//! `N passed, N failed` last. The two libraries are what `cargo build --lib` makes for the
//! profile under test (the driver runs it first: see `artefacts()` in tests/common/mod.rs);
//! the programs are built in `target/<profile>/deps/c-tests-*/`.
//!
//! Environment knobs (used by `scripts/test.sh`):
//! - `AFUT_C_SANITIZE=address,undefined` (or `thread`): compile the C side with
//!   `-fsanitize=...`; any report fails the run.
//! - `AFUT_C_VALGRIND=1`: run each program under valgrind (memcheck, definite leaks
//!   and errors fail the run).
//! - `AFUT_C_FILTER=substr`: only the files whose name contains `substr`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Flavour {
    Shared,
    Static,
}

fn c_sources() -> Vec<PathBuf> {
    let filter = std::env::var("AFUT_C_FILTER").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("c-tests"))
        .expect("c-tests/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .filter(|p| match &filter {
            Some(f) => p.file_name().unwrap().to_string_lossy().contains(f.as_str()),
            None => true,
        })
        .collect();
    files.sort();
    files
}

fn compile(src: &Path, flavour: Flavour, out_dir: &Path) -> PathBuf {
    let sanitize = std::env::var("AFUT_C_SANITIZE").ok().filter(|s| !s.is_empty());
    let target = env!("AFUT_TARGET");
    let mut build = cc::Build::new();
    build
        .target(target)
        .host(target)
        .opt_level(1)
        .debug(true)
        .cargo_metadata(false)
        .warnings(true)
        .extra_warnings(true)
        .flag("-std=c11")
        .flag("-Werror")
        .flag("-pthread")
        .include(manifest_dir().join("include"))
        .include(manifest_dir().join("c-tests"));
    if let Some(s) = &sanitize {
        build.flag(format!("-fsanitize={s}")).flag("-fno-omit-frame-pointer");
    }
    let compiler = build.get_compiler();
    let stem = src.file_stem().unwrap().to_string_lossy().to_string();
    let exe = out_dir.join(format!("{stem}-{flavour:?}").to_lowercase());
    // Compile to a private name, then rename into place: a concurrent run of the suite in the
    // same target directory never executes a half-written binary nor hits "text file busy".
    let tmp = out_dir.join(format!(".{}.{}.tmp", exe.file_name().unwrap().to_string_lossy(), std::process::id()));
    let mut cmd = compiler.to_command();
    cmd.arg(src).arg("-o").arg(&tmp);
    if let Some(s) = &sanitize {
        cmd.arg(format!("-fsanitize={s}"));
    }
    match flavour {
        Flavour::Shared => {
            let lib = shared_lib_dir("c-tests-lib");
            cmd.arg(format!("-L{}", lib.display())).arg("-lafut").arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Flavour::Static => {
            cmd.arg(static_lib());
            cmd.args(STATIC_LIBS);
        }
    }
    // The tests themselves may use libm.
    cmd.arg("-lm");
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "compiling {} ({flavour:?}) failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("move the test binary into place");
    exe
}

fn run_suite(flavour: Flavour) {
    // Sanitizer builds get their own directory, so they never replace the plain binaries.
    let sanitize = std::env::var("AFUT_C_SANITIZE").unwrap_or_default().replace(',', "-");
    let suffix = if sanitize.is_empty() { String::new() } else { format!("-{sanitize}") };
    let dir = deps_dir().join(format!("c-tests-{flavour:?}{suffix}").to_lowercase());
    std::fs::create_dir_all(&dir).unwrap();
    let valgrind = std::env::var("AFUT_C_VALGRIND").is_ok_and(|v| v == "1");
    let (mut passed, mut failed) = (0, 0);
    let mut problems = Vec::new();
    let sources = c_sources();
    assert!(!sources.is_empty() || std::env::var("AFUT_C_FILTER").is_ok(), "no C tests found");
    for src in &sources {
        let exe = compile(src, flavour, &dir);
        let mut cmd = if valgrind {
            let mut c = Command::new("valgrind");
            c.args([
                "-q",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=99",
                "--fair-sched=yes",
            ]);
            c.arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.env("AFUT_UNDER_VALGRIND", if valgrind { "1" } else { "0" });
        let start = Instant::now();
        let out = cmd.output().expect("run a C test program");
        let took = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = src.file_name().unwrap().to_string_lossy();
        match closing_counts(&stdout) {
            Some((p, f)) => {
                passed += p;
                failed += f;
                println!("{name} ({flavour:?}): {p} passed, {f} failed in {:.2?}", took);
            }
            None => problems.push(format!("{name}: no closing line")),
        }
        if !out.status.success() {
            problems.push(format!(
                "{name} ({flavour:?}) exited with {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status
            ));
        }
        if took > Duration::from_secs(120) {
            problems.push(format!("{name} took {took:?}"));
        }
    }
    println!("C suite ({flavour:?}): {passed} passed, {failed} failed");
    assert!(problems.is_empty(), "C suite problems:\n{}", problems.join("\n"));
    assert_eq!(failed, 0);
}

#[test]
fn c_suite_shared() {
    run_suite(Flavour::Shared);
}

#[test]
fn c_suite_static() {
    if std::env::var("AFUT_C_VALGRIND").is_ok_and(|v| v == "1")
        || std::env::var("AFUT_C_SANITIZE").is_ok_and(|v| !v.is_empty())
    {
        // The checked runs use the shared library only; the static flavour is the
        // same code and would double their time.
        return;
    }
    run_suite(Flavour::Static);
}
