//! The C ABI's vocabulary: every `#[repr(C)]` type, opaque handle, function-pointer type and
//! constant that the header declares. This is the bottom layer: it imports nothing from the
//! rest of the crate, and everything else may import it.
//!
//! Status codes: `AFUT_OK == 0`, every error negative, never renumbered.

use std::ffi::{c_char, c_void};

/// The result of every fallible afut function: `AFUT_OK` (0) or a negative `AFUT_ERR_*` code.
#[allow(non_camel_case_types)]
pub type afut_status_t = i32;

/// Success.
pub const AFUT_OK: afut_status_t = 0;
/// The future is not in a state that allows the call (asyncio `InvalidStateError`): completing a
/// done future, reading the result of a pending one, or a run stopped before its future was done.
pub const AFUT_ERR_INVALID_STATE: afut_status_t = -1;
/// The future was cancelled (asyncio `CancelledError`).
pub const AFUT_ERR_CANCELLED: afut_status_t = -2;
/// The future holds an exception; read it with `afut_exception()`.
pub const AFUT_ERR_EXCEPTION: afut_status_t = -3;
/// A NULL handle or function, a NaN time, a zero exception code, a future of another loop, ...
pub const AFUT_ERR_INVALID_ARGUMENT: afut_status_t = -4;
/// The call would deadlock on this thread (for example `afut_wait()` on the loop's own thread).
pub const AFUT_ERR_WRONG_THREAD: afut_status_t = -5;
/// The loop is closed: nothing new can be scheduled on it.
pub const AFUT_ERR_LOOP_CLOSED: afut_status_t = -6;
/// The loop is running (a `run_*` call while it runs, also from inside a callback; `close` while it runs).
pub const AFUT_ERR_LOOP_RUNNING: afut_status_t = -7;
/// The wait timed out (`afut_wait`), or the exception code of a timed-out `afut_wait_for`.
pub const AFUT_ERR_TIMEOUT: afut_status_t = -8;
/// Reserved for an allocation failure; no function returns it in this version. The library
/// allocates through Rust's global allocator, which aborts the process when memory runs out.
pub const AFUT_ERR_NO_MEMORY: afut_status_t = -9;
/// Reserved for a failed system call (`errno` would hold its error); no function returns it
/// in this version. The one function whose system calls can fail, `afut_loop_new`, returns a
/// handle: it reports the failure as NULL with `errno` set.
pub const AFUT_ERR_OS: afut_status_t = -10;
/// An internal bug was caught at the API boundary. It was reported once on stderr; a loop it
/// happened in is poisoned and its `run_*` functions return this code from then on.
pub const AFUT_ERR_PANIC: afut_status_t = -11;

// ----- handles -----

/// A future (a task is also one). Opaque; reference counted with `afut_ref` / `afut_unref`.
#[allow(non_camel_case_types)]
pub struct afut_t {
    _private: [u8; 0],
}

/// An event loop. Opaque; created by `afut_loop_new`, released by `afut_loop_free`.
#[allow(non_camel_case_types)]
pub struct afut_loop_t {
    _private: [u8; 0],
}

/// A thread-pool executor (concurrent.futures' `ThreadPoolExecutor`). Opaque; created by
/// `afut_executor_new`, released by `afut_executor_free`.
#[allow(non_camel_case_types)]
pub struct afut_executor_t {
    _private: [u8; 0],
}

/// A scheduled callback; 0 means none. Valid until it ran or was cancelled.
#[allow(non_camel_case_types)]
pub type afut_handle_t = u64;

// ----- function-pointer types -----

/// `void (*)(void *)`: frees a userdata, value or exception detail.
#[allow(non_camel_case_types)]
pub type afut_free_fn = Option<unsafe extern "C" fn(ptr: *mut c_void)>;
/// `void (*)(void *userdata)`: a scheduled callback.
#[allow(non_camel_case_types)]
pub type afut_callback_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;
/// `void (*)(afut_t *fut, void *userdata)`: a done-callback; `fut` is borrowed for the call.
#[allow(non_camel_case_types)]
pub type afut_done_fn = Option<unsafe extern "C" fn(fut: *mut afut_t, userdata: *mut c_void)>;
/// `void (*)(afut_t *task, afut_t *awaited, void *userdata)`: a task's step (see `afut_task_new`).
#[allow(non_camel_case_types)]
pub type afut_step_fn = Option<unsafe extern "C" fn(task: *mut afut_t, awaited: *mut afut_t, userdata: *mut c_void)>;
/// `void (*)(afut_t *fut, void *userdata)`: an executor job (see `afut_executor_submit`); it
/// completes `fut`, borrowed for the call.
#[allow(non_camel_case_types)]
pub type afut_job_fn = Option<unsafe extern "C" fn(fut: *mut afut_t, userdata: *mut c_void)>;
/// `void (*)(afut_loop_t *loop, const afut_error_context_t *context, void *userdata)`.
#[allow(non_camel_case_types)]
pub type afut_exception_handler_fn =
    Option<unsafe extern "C" fn(r#loop: *mut afut_loop_t, context: *const afut_error_context_t, userdata: *mut c_void)>;

/// The non-NULL forms of the function-pointer types, as the library stores them.
pub type CallbackFn = unsafe extern "C" fn(*mut c_void);
pub type DoneFn = unsafe extern "C" fn(*mut afut_t, *mut c_void);
pub type FreeFn = unsafe extern "C" fn(*mut c_void);
pub type StepFn = unsafe extern "C" fn(*mut afut_t, *mut afut_t, *mut c_void);
pub type JobFn = unsafe extern "C" fn(*mut afut_t, *mut c_void);
pub type HandlerFn = unsafe extern "C" fn(*mut afut_loop_t, *const afut_error_context_t, *mut c_void);

// ----- structs -----

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

// ----- asyncio.wait -----

/// `asyncio.ALL_COMPLETED`.
pub const AFUT_ALL_COMPLETED: i32 = 0;
/// `asyncio.FIRST_COMPLETED`.
pub const AFUT_FIRST_COMPLETED: i32 = 1;
/// `asyncio.FIRST_EXCEPTION`.
pub const AFUT_FIRST_EXCEPTION: i32 = 2;

/// The result of `afut_wait_many`: the futures done and still pending when it completed.
/// Both arrays and the futures in them are borrowed from the wait future.
#[repr(C)]
pub struct afut_wait_result_t {
    /// The futures done at that time (`n_done` entries; NULL when 0).
    pub done: *const *mut afut_t,
    pub n_done: usize,
    /// The futures still pending (`n_pending` entries; NULL when 0).
    pub pending: *const *mut afut_t,
    pub n_pending: usize,
}

/// The static description of a status code (the text behind `afut_status_str`).
pub fn describe(status: i32) -> &'static std::ffi::CStr {
    match status {
        AFUT_OK => c"ok",
        AFUT_ERR_INVALID_STATE => c"invalid state",
        AFUT_ERR_CANCELLED => c"cancelled",
        AFUT_ERR_EXCEPTION => c"the future holds an exception",
        AFUT_ERR_INVALID_ARGUMENT => c"invalid argument",
        AFUT_ERR_WRONG_THREAD => c"called from the wrong thread",
        AFUT_ERR_LOOP_CLOSED => c"the loop is closed",
        AFUT_ERR_LOOP_RUNNING => c"the loop is running",
        AFUT_ERR_TIMEOUT => c"timed out",
        AFUT_ERR_NO_MEMORY => c"out of memory",
        AFUT_ERR_OS => c"system call failed (see errno)",
        AFUT_ERR_PANIC => c"internal error (a bug in afut, caught at the boundary)",
        _ => c"unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_text() {
        let codes = [
            AFUT_OK,
            AFUT_ERR_INVALID_STATE,
            AFUT_ERR_CANCELLED,
            AFUT_ERR_EXCEPTION,
            AFUT_ERR_INVALID_ARGUMENT,
            AFUT_ERR_WRONG_THREAD,
            AFUT_ERR_LOOP_CLOSED,
            AFUT_ERR_LOOP_RUNNING,
            AFUT_ERR_TIMEOUT,
            AFUT_ERR_NO_MEMORY,
            AFUT_ERR_OS,
            AFUT_ERR_PANIC,
        ];
        let texts: std::collections::HashSet<_> = codes.iter().map(|&c| describe(c)).collect();
        assert_eq!(texts.len(), codes.len());
        assert!(!texts.contains(describe(12345)));
        assert_eq!(describe(-999), c"unknown status");
    }
}
