//! Status codes: `AFUT_OK == 0`, every error negative, never renumbered.

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
/// An allocation failed.
pub const AFUT_ERR_NO_MEMORY: afut_status_t = -9;
/// A system call failed; `errno` holds its error.
pub const AFUT_ERR_OS: afut_status_t = -10;
/// An internal bug was caught at the API boundary. It was reported once on stderr; a loop it
/// happened in is poisoned and its `run_*` functions return this code from then on.
pub const AFUT_ERR_PANIC: afut_status_t = -11;

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
