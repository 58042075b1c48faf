//! Library-level exports: version and status strings.

use std::ffi::c_char;

use crate::abi;

/// The library version, "MAJOR.MINOR.PATCH" (equal to `AFUT_VERSION_STRING` of the header the
/// program was compiled with, when header and library match).
///
/// Thread: any. Ownership: a static string.
#[unsafe(no_mangle)]
pub extern "C" fn afut_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A static description of a status code; never NULL ("unknown status" for codes this version
/// does not know).
///
/// Thread: any. Ownership: a static string.
#[unsafe(no_mangle)]
pub extern "C" fn afut_status_str(status: i32) -> *const c_char {
    abi::describe(status).as_ptr()
}
