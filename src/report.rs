//! Reports: errors that have no caller to return to ("Future exception was never retrieved",
//! slow callbacks in debug mode), delivered to the loop's exception handler or to stderr.

use std::ffi::{CStr, c_char, c_void};

use crate::callback::Owned;
use crate::ffi::types::{afut_loop_t, afut_t};

/// An exception stored in a future, as C sees it.
#[repr(C)]
pub struct afut_exception_t {
    /// The application's error code; never 0 for a set exception (0 in `afut_exception()`'s
    /// output means "the future has a result").
    pub code: i32,
    /// NUL-terminated text owned by the future (copied at `afut_set_exception`), or NULL.
    pub message: *const c_char,
    /// The application's payload, owned by the future (freed with its `detail_free` when the
    /// future is freed), or NULL.
    pub detail: *mut c_void,
}

/// What the exception handler is told. Every pointer is borrowed for the duration of the call.
#[repr(C)]
pub struct afut_error_context_t {
    /// "Future exception was never retrieved" (for a future whose exception nobody read),
    /// or "Executing <callback> took 0.123 seconds" (debug mode), ...
    pub message: *const c_char,
    /// The future concerned, or NULL. During a never-retrieved report the future is being
    /// destroyed: it may be inspected (`afut_exception`, `afut_describe`, ...) but not kept
    /// (`afut_ref` on it returns NULL).
    pub future: *mut afut_t,
    /// The exception concerned, or NULL.
    pub exception: *const afut_exception_t,
}

/// `void (*)(afut_loop_t *loop, const afut_error_context_t *context, void *userdata)`.
#[allow(non_camel_case_types)]
pub type afut_exception_handler_fn = Option<
    unsafe extern "C" fn(r#loop: *mut afut_loop_t, context: *const afut_error_context_t, userdata: *mut c_void),
>;

pub type HandlerFn =
    unsafe extern "C" fn(*mut afut_loop_t, *const afut_error_context_t, *mut c_void);

/// An installed exception handler and its userdata (freed when it is replaced or the loop freed).
pub struct Handler {
    func: HandlerFn,
    data: Owned,
}

impl Handler {
    pub fn new(func: HandlerFn, data: Owned) -> Self {
        Handler { func, data }
    }

    pub fn call(&self, event_loop: *mut afut_loop_t, context: &afut_error_context_t) {
        // SAFETY: the caller's handler with its userdata; `context` and what it points to live
        // until the call returns; no afut lock is held.
        unsafe { (self.func)(event_loop, context, self.data.ptr()) }
    }
}

/// The default handler: one block on stderr.
pub fn write_to_stderr(message: &CStr, description: Option<&str>, exception: Option<&afut_exception_t>) {
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
