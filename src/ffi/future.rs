//! Futures (asyncio's `Future`): creating them, references, completing, reading the
//! outcome, cancelling, done-callbacks, blocking waits and descriptions.

use std::ffi::{CStr, c_char, c_void};

use super::convert::*;
use super::panic::guard;
use crate::abi::*;
use crate::callback::Owned;
use crate::futures::future::{DoneCb, Exception, ExceptionView, Future, TAG_FINALIZING, copy_message};
use crate::runtime::eventloop::Loop;

/// Copies a C string argument (NULL stays None).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string readable for the call.
unsafe fn c_str<'a>(s: *const c_char) -> Option<&'a CStr> {
    // SAFETY: forwarded contract.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) })
}

/// Creates a future (asyncio `Future(loop=loop)`).
///
/// With a loop, the same as `afut_loop_create_future`. With `loop == NULL`, a loop-less,
/// concurrent.futures-style future: its done-callbacks run in the thread that completes it,
/// right after the state changes, and a callback added to it once it is done runs at once in
/// the adding thread. No "never retrieved" report is made for a loop-less future.
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller.
/// Bad input: none (NULL is a valid `loop`).
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_new(r#loop: *mut afut_loop_t) -> *mut afut_t {
    guard("afut_new", std::ptr::null_mut(), || {
        // SAFETY: `r#loop` is NULL or a live loop (API contract).
        let l = unsafe { borrow_loop(r#loop) };
        future_into_raw(Future::new(l.map(|l| l.link())))
    })
}

/// Creates a future bound to `loop` (asyncio `loop.create_future()`).
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller (release it with `afut_unref`).
/// Bad input: NULL `loop` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_create_future(r#loop: *mut afut_loop_t) -> *mut afut_t {
    guard("afut_loop_create_future", std::ptr::null_mut(), || {
        // SAFETY: `r#loop` is NULL or a live loop (API contract).
        let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return std::ptr::null_mut() };
        future_into_raw(Future::new(Some(l.link())))
    })
}

/// Adds a reference to `fut` and returns `fut`.
///
/// Thread: any.
/// Bad input: NULL returns NULL. A future whose never-retrieved report is running (see
/// `afut_error_context_t`) cannot be kept: returns NULL and adds nothing.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_ref(fut: *mut afut_t) -> *mut afut_t {
    guard("afut_ref", std::ptr::null_mut(), || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        if unsafe { borrow_future_to_keep(fut) }.is_none() {
            return std::ptr::null_mut();
        }
        // SAFETY: just checked live and not finalizing.
        unsafe { future_add_ref(fut) };
        fut
    })
}

/// Releases one reference. When the last one goes, the future is freed: its value's
/// `value_free` or its exception's `detail_free` runs, the `userdata_free` of callbacks still
/// registered runs, and if it holds an exception that nobody retrieved, the loop's exception
/// handler is told "Future exception was never retrieved" first, on this thread.
/// A future with queued callbacks is also referenced by its loop until they ran.
///
/// Thread: any.
/// Bad input: NULL is a no-op; so is a future whose never-retrieved report is running.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_unref(fut: *mut afut_t) {
    guard("afut_unref", (), || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        if unsafe { borrow_future_to_keep(fut) }.is_none() {
            return;
        }
        // SAFETY: live, and the caller gives up this reference.
        drop(unsafe { future_from_raw(fut) });
    })
}

/// Completes `fut` with `value` (asyncio `set_result`). Its done-callbacks are scheduled on
/// its loop (they run in a later iteration, never inside this call); a thread other than the
/// loop's wakes the loop.
///
/// Thread: any.
/// Ownership: on `AFUT_OK` the future owns `value` and calls `value_free(value)` (if not NULL)
/// once when it is freed; `afut_result` lends it out meanwhile. On any error `value` stays the
/// caller's and `value_free` is not called.
/// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if `fut` is already done (cancelled included).
/// If the loop is closed the future still completes (`AFUT_OK`) and its callbacks are dropped.
/// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `value_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_set_result(
    fut: *mut afut_t,
    value: *mut c_void,
    value_free: afut_free_fn,
) -> afut_status_t {
    guard("afut_set_result", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        match f.set_result(Owned::new(value, value_free)) {
            Ok(()) => AFUT_OK,
            Err((s, v)) => {
                v.disarm();
                s
            }
        }
    })
}

/// Completes `fut` with an exception (asyncio `set_exception`): `code` (the application's, not
/// 0), a `message` (copied; may be NULL) and a `detail` payload (may be NULL). Callbacks are
/// scheduled as for `afut_set_result`. The exception is marked "unretrieved" until
/// `afut_result`, `afut_exception` or `afut_cancel` is called on the future.
///
/// Thread: any.
/// Ownership: on `AFUT_OK` the future owns `detail` and calls `detail_free(detail)` (if not
/// NULL) once when freed. On any error `detail` stays the caller's.
/// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if already done.
/// Bad input: NULL `fut` or `code == 0` returns `AFUT_ERR_INVALID_ARGUMENT`, changing nothing.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `message` is NULL or a NUL-terminated string, read only during the call.
/// `detail_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_set_exception(
    fut: *mut afut_t,
    code: i32,
    message: *const c_char,
    detail: *mut c_void,
    detail_free: afut_free_fn,
) -> afut_status_t {
    guard("afut_set_exception", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        if code == 0 {
            return AFUT_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: `message` is NULL or a NUL-terminated string (API contract).
        let message = copy_message(unsafe { c_str(message) });
        match f.set_exception(Exception { code, message, detail: Owned::new(detail, detail_free) }) {
            Ok(()) => AFUT_OK,
            Err((s, e)) => {
                e.detail.disarm();
                s
            }
        }
    })
}

/// Reads the outcome (asyncio `result()`).
///
/// Thread: any.
/// Ownership: `*value_out` is borrowed from the future and valid as long as it lives.
/// Returns: `AFUT_OK` (and the value in `*value_out`, if `value_out` is not NULL);
/// `AFUT_ERR_EXCEPTION` if it holds an exception (now counted as retrieved; read it with
/// `afut_exception`); `AFUT_ERR_CANCELLED`; `AFUT_ERR_INVALID_STATE` while pending.
/// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`. `value_out` may be NULL.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `value_out` is NULL or valid for one write of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_result(fut: *mut afut_t, value_out: *mut *mut c_void) -> afut_status_t {
    guard("afut_result", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        match f.result() {
            Ok(v) => {
                if !value_out.is_null() {
                    // SAFETY: a non-NULL `value_out` points to writable storage (contract).
                    unsafe { value_out.write(v) };
                }
                AFUT_OK
            }
            Err(s) => s,
        }
    })
}

/// Reads the exception (asyncio `exception()`), marking it retrieved.
///
/// Thread: any.
/// Ownership: `out->message` and `out->detail` are borrowed from the future, valid as long as
/// it lives.
/// Returns: `AFUT_OK` with `out->code == 0` (and NULL message and detail) if the future has a
/// result; `AFUT_OK` with the exception if it has one; `AFUT_ERR_CANCELLED`;
/// `AFUT_ERR_INVALID_STATE` while pending. `*out` is written only on `AFUT_OK`.
/// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`. `out` may be NULL.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `out` is NULL or valid for one write of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_exception(fut: *mut afut_t, out: *mut afut_exception_t) -> afut_status_t {
    guard("afut_exception", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        let view = match f.exception() {
            Ok(ExceptionView::Exception(e)) => e,
            Ok(ExceptionView::NoException) => {
                afut_exception_t { code: 0, message: std::ptr::null(), detail: std::ptr::null_mut() }
            }
            Err(s) => return s,
        };
        if !out.is_null() {
            // SAFETY: a non-NULL `out` points to a writable afut_exception_t (contract).
            unsafe { out.write(view) };
        }
        AFUT_OK
    })
}

/// True once the future is finished or cancelled.
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_done(fut: *const afut_t) -> bool {
    guard("afut_done", false, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        unsafe { borrow_future(fut) }.is_some_and(|f| f.is_done())
    })
}

/// True if the future was cancelled.
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_cancelled(fut: *const afut_t) -> bool {
    guard("afut_cancelled", false, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        unsafe { borrow_future(fut) }.is_some_and(|f| f.is_cancelled())
    })
}

/// Cancels a pending future (asyncio `cancel(msg)`), storing a copy of `msg` (may be NULL),
/// and schedules its callbacks. Whatever the state, it also marks a stored exception as
/// retrieved (so a failed future that is cancelled is never reported); the one exception is a
/// done gather, which asyncio's `_GatheringFuture.cancel` leaves reportable.
///
/// A cancel passes on through a task to what it awaits and through a gather or `wait_for` to
/// its inputs, at any depth with constant stack: past 64 nested levels on one thread the
/// deeper ones are queued and cancelled by this call before it returns, in blocks of 64, so
/// the order in which their callbacks are scheduled then differs from asyncio's strictly
/// depth-first order (each future's own callbacks keep their order).
///
/// Thread: any.
/// Returns: true if this call cancelled the future; false if it was already done.
/// Bad input: NULL `fut` returns false.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `msg` is NULL or a NUL-terminated string, read only during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_cancel(fut: *mut afut_t, msg: *const c_char) -> bool {
    guard("afut_cancel", false, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return false };
        // SAFETY: `msg` is NULL or a NUL-terminated string (API contract).
        f.cancel(copy_message(unsafe { c_str(msg) }))
    })
}

/// The message given to the `afut_cancel` call that cancelled the future.
///
/// Thread: any.
/// Ownership: borrowed from the future; the same pointer on every call, valid as long as the
/// future lives.
/// Returns: NULL if the future is not cancelled or was cancelled without a message.
/// Bad input: NULL returns NULL.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_cancel_message(fut: *const afut_t) -> *const c_char {
    guard("afut_cancel_message", std::ptr::null(), || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        unsafe { borrow_future(fut) }.map_or(std::ptr::null(), |f| f.cancel_message())
    })
}

/// Registers `cb(fut, userdata)` to run once the future is done.
///
/// For a future bound to a loop, `cb` always runs on the loop's thread in a later iteration,
/// never inside this call or inside the call that completes the future: callbacks of one
/// completion run in registration order, as one contiguous run of the loop's ready queue.
/// Adding to a done future schedules `cb` at once (asyncio `call_soon`). For a loop-less future
/// see `afut_new`.
///
/// Thread: any. `cb` may call any afut function, including on `fut` itself (even dropping
/// the last reference to it).
/// Ownership: on `AFUT_OK` the library owns `userdata` and calls `userdata_free(userdata)`
/// (if not NULL) exactly once: after `cb` ran, or when the entry is removed, or dropped because
/// the loop closed or the future was freed first. On error it stays the caller's.
/// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_CLOSED` if the future is done and its loop closed.
/// Bad input: NULL `fut` or `cb` returns `AFUT_ERR_INVALID_ARGUMENT`; a future whose
/// never-retrieved report is running returns `AFUT_ERR_INVALID_STATE`.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_add_done_callback(
    fut: *mut afut_t,
    cb: afut_done_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_status_t {
    guard("afut_add_done_callback", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        let Some(cb) = cb else { return AFUT_ERR_INVALID_ARGUMENT };
        if f.inner().tag() == TAG_FINALIZING {
            return AFUT_ERR_INVALID_STATE; // its never-retrieved report is running
        }
        match f.add_done_callback(DoneCb::c(cb, Owned::new(userdata, userdata_free))) {
            Ok(()) => AFUT_OK,
            Err((s, cb)) => {
                cb.disarm();
                s
            }
        }
    })
}

/// Removes every registered entry equal to `(cb, userdata)` (asyncio `remove_done_callback`),
/// calling each removed entry's `userdata_free` once. Callbacks already queued because the
/// future is done cannot be removed.
///
/// Thread: any.
/// Returns: how many entries were removed (0 once the future is done).
/// Bad input: NULL `fut` or `cb` returns 0.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_remove_done_callback(fut: *mut afut_t, cb: afut_done_fn, userdata: *mut c_void) -> usize {
    guard("afut_remove_done_callback", 0, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return 0 };
        let Some(cb) = cb else { return 0 };
        f.remove_done_callback(cb, userdata)
    })
}

/// The loop the future is bound to.
///
/// Thread: any.
/// Ownership: borrowed; the caller's `afut_loop_new` reference is what keeps it valid.
/// Returns: NULL for a loop-less future, or once the loop was freed with `afut_loop_free`.
/// Bad input: NULL returns NULL.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_get_loop(fut: *const afut_t) -> *mut afut_loop_t {
    guard("afut_get_loop", std::ptr::null_mut(), || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return std::ptr::null_mut() };
        match Loop::of(&f) {
            Some(l) if !l.is_freed() => l.as_ptr(),
            _ => std::ptr::null_mut(),
        }
    })
}

/// Blocks the calling thread until the future is done, whatever its outcome.
/// `timeout_s`: 0 polls, `INFINITY` waits forever, a negative value acts as 0.
///
/// Thread: any thread except the one running the future's loop (the future could never
/// complete): that returns `AFUT_ERR_WRONG_THREAD` without waiting.
/// Returns: `AFUT_OK` when done; `AFUT_ERR_TIMEOUT`.
/// Bad input: NULL `fut` or NaN `timeout_s` returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_wait(fut: *mut afut_t, timeout_s: f64) -> afut_status_t {
    guard("afut_wait", AFUT_ERR_PANIC, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let Some(f) = (unsafe { borrow_future(fut) }) else { return AFUT_ERR_INVALID_ARGUMENT };
        f.wait(timeout_s)
    })
}

/// Writes an asyncio-style description into `buf`, with snprintf's rules: at most `len - 1`
/// characters and a NUL (nothing when `len == 0`). Formats: `<Future pending>`,
/// `<Future pending cb=[2]>`, `<Future cancelled>`, `<Future finished result=0x1f2e>`
/// (`result=NULL` for a NULL value), `<Future finished exception=code 5: boom>` (without
/// `: message` when there is none). A task says `Task`, and `cancelling` instead of `pending`
/// while cancel requests are pending (`<Task cancelling>`, as asyncio's Task repr).
///
/// Thread: any.
/// Returns: the length of the full description (excluding the NUL), as snprintf does.
/// Bad input: NULL `fut` describes as `<NULL>`; NULL `buf` writes nothing.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `buf` is NULL or valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_describe(fut: *const afut_t, buf: *mut c_char, len: usize) -> usize {
    guard("afut_describe", 0, || {
        // SAFETY: `fut` is NULL or a live future (API contract).
        let text = unsafe { borrow_future(fut) }.map_or_else(|| "<NULL>".to_string(), |f| f.describe());
        if !buf.is_null() && len > 0 {
            let n = text.len().min(len - 1);
            // SAFETY: `buf` has room for `len` bytes (contract) and `n + 1 <= len`.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        text.len()
    })
}
