//! Reports: errors that have no caller to return to ("Future exception was never retrieved",
//! slow callbacks in debug mode), delivered to the loop's exception handler or to stderr.

use std::ffi::CStr;

use crate::abi::afut_exception_t;

/// The default handler: one block on stderr.
pub(crate) fn write_to_stderr(message: &CStr, description: Option<&str>, exception: Option<&afut_exception_t>) {
    use std::io::Write;
    let mut text = format!("afut: {}\n", message.to_string_lossy());
    if let Some(d) = description {
        text.push_str(&format!("  future: {d}\n"));
    }
    if let Some(e) = exception {
        let msg = if e.message.is_null() {
            String::new()
        } else {
            // SAFETY: a non-NULL message of an exception is a NUL-terminated string owned by
            // the future, alive for this call.
            format!(": {}", unsafe { CStr::from_ptr(e.message) }.to_string_lossy())
        };
        text.push_str(&format!("  exception: code {}{msg}\n", e.code));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
