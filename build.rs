//! Generates the C header from the Rust sources with the pinned cbindgen.
//!
//! The header is written to `$OUT_DIR/afut.h`; the committed `include/afut.h` must be
//! identical (the `header_is_fresh` test fails otherwise). Regenerate the committed copy
//! with `AFUT_BLESS_HEADER=1 cargo build` (or `scripts/bless-header.sh`).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=AFUT_BLESS_HEADER");
    poller_cfgs();
    // The C test harness needs the target triple to drive the `cc` crate.
    println!("cargo:rustc-env=AFUT_TARGET={}", env::var("TARGET").unwrap());
    // One SONAME rule for every build of the shared library: libafut.so.MAJOR.
    // Before 1.0 the minor version breaks the ABI, so it is part of the name.
    let major: u32 = env::var("CARGO_PKG_VERSION_MAJOR").unwrap().parse().unwrap();
    let minor: u32 = env::var("CARGO_PKG_VERSION_MINOR").unwrap().parse().unwrap();
    let soname = if major == 0 { format!("libafut.so.0.{minor}") } else { format!("libafut.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // rustc already gives the cdylib a version script that exports only the
    // #[no_mangle] functions, i.e. the afut_* API (checked by a test).

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is readable");
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    config.after_includes = Some(format!(
        "{}\n/** The library version this header belongs to; afut_version() returns it as a string. */\n\
         #define AFUT_VERSION_MAJOR {}\n#define AFUT_VERSION_MINOR {}\n#define AFUT_VERSION_PATCH {}\n\
         #define AFUT_VERSION_STRING \"{}\"\n",
        config.after_includes.clone().unwrap_or_default(),
        major,
        minor,
        env::var("CARGO_PKG_VERSION_PATCH").unwrap(),
        version
    ));
    let header = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let generated = out_dir.join("afut.h");
    header.write_to_file(&generated);
    if env::var_os("AFUT_BLESS_HEADER").is_some() {
        std::fs::copy(&generated, crate_dir.join("include/afut.h")).expect("include/afut.h is writable");
    }
}

/// The poller aliases `src/runtime/wakeup.rs` uses, so that each platform list is written once:
/// - `afut_poller_fd`: the poller has an fd of its own that hosts can watch (polling's epoll,
///   kqueue and event-port backends: the platforms where its `Poller` is `AsRawFd`);
/// - `afut_epoll`: Linux epoll, which the loop drives with its own `epoll_wait`.
///
/// `--cfg polling_test_poll_backend` (in RUSTFLAGS) forces polling's `poll()` backend, so it
/// turns both off. Cargo hands the target's cfgs (RUSTFLAGS' included) to build scripts as
/// `CARGO_CFG_*`.
fn poller_cfgs() {
    println!("cargo::rustc-check-cfg=cfg(afut_poller_fd)");
    println!("cargo::rustc-check-cfg=cfg(afut_epoll)");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let vendor = env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    let forced_poll = env::var_os("CARGO_CFG_POLLING_TEST_POLL_BACKEND").is_some();
    let own_fd = ["linux", "android", "redox", "illumos", "solaris", "freebsd", "netbsd", "openbsd", "dragonfly"]
        .contains(&os.as_str())
        || vendor == "apple";
    if own_fd && !forced_poll {
        println!("cargo:rustc-cfg=afut_poller_fd");
        if os == "linux" {
            println!("cargo:rustc-cfg=afut_epoll");
        }
    }
}
