//! Exported task functions (`afut_task_*`, `afut_is_task`).

use std::ffi::{c_char, c_int, c_void};

use super::convert::*;
use super::panic::guard;
use crate::abi::*;
use crate::callback::Owned;
use crate::tasks::task;

/// Creates a task (asyncio `loop.create_task()`): a future driven by `step`.
///
/// A task is an `afut_t`: every function that takes a future takes a task (await it, cancel
/// it, add done-callbacks, run the loop until it completes, gather it...). `afut_isfuture`
/// is true for it, and `afut_is_task` tells it apart.
///
/// The protocol (asyncio's `Task.__step`, with a C function instead of a coroutine):
///   - `step(task, awaited, userdata)` runs on the loop's thread: first on the iteration
///     after this call (never inside it) with `awaited == NULL`; then one iteration after the
///     future it awaits is done, with `awaited` that future (borrowed for the call: take a
///     reference with `afut_ref` to keep it).
///   - Each step does exactly one of:
///     1. complete the task: `afut_set_result(task, ...)` or `afut_set_exception(task, ...)`
///        (only a step may complete its own task: from anywhere else these return
///        `AFUT_ERR_INVALID_STATE`, like asyncio's `Task.set_result`);
///     2. await one future of the same loop: `afut_task_await(task, fut)` (the task holds a
///        reference to `fut` until the next step, so the caller may `afut_unref` it at once);
///     3. return doing neither. Then, if a cancel request is pending or `awaited` was
///        cancelled, the task ends CANCELLED with the pending cancel message (or `awaited`'s);
///        otherwise it yields: the next step runs on the next iteration with `awaited == NULL`.
///   - Cancellation (`afut_cancel(task, msg)`, asyncio `Task.cancel`): a task that is
///     awaiting gets its awaited future cancelled at once (same message) and returns true;
///     the next step sees `awaited` cancelled: returning without awaiting or completing ends
///     the task CANCELLED. A request that finds no awaited future (before the first step,
///     during a yield, or after the awaited future is done) stays pending:
///     `afut_task_cancel_requested` tells the step, `afut_task_await` then cancels the new
///     awaited future at once, and `afut_set_result` / `afut_set_exception` return
///     `AFUT_ERR_CANCELLED`. A step swallows a cancellation by awaiting or completing after
///     seeing its awaited future cancelled, or by `afut_task_take_cancel` or
///     `afut_task_uncancel` for a pending request (asyncio's `except CancelledError` /
///     `uncancel()`). Each request counts in
///     `afut_task_cancelling`. The cancel message of a task is stable: every
///     `afut_cancel_message` returns it (asyncio loses it after the first retrieval).
///   - Lifetime: the loop keeps a pending task alive (through its queued step or the awaited
///     future's callback), so a fire-and-forget task may be `afut_unref`ed at once and still
///     runs to the end (unlike asyncio, gh-91887). `userdata_free(userdata)` runs once, right
///     after the step that ended the task (or when the task ends without a step because its
///     loop closed). A task that fails and whose exception nobody retrieves is reported as
///     "Task exception was never retrieved".
///   - If the loop is closed (or freed) while a task is pending, its step can never run
///     again: `afut_loop_close` ends it CANCELLED with the message "the loop was closed"
///     (its done-callbacks are dropped, its userdata freed, the future it awaited released)
///     and reports "Task was destroyed but it is pending!" to the exception handler, as
///     asyncio reports a pending task that goes away. To end tasks on your own terms, cancel
///     them and run the loop until they are done before closing it.
///
/// Worked example: a task that sleeps twice, then finishes with a string.
/// ```c
/// struct counter { int n; };
/// static void step(afut_t *task, afut_t *awaited, void *userdata) {
///     struct counter *c = userdata;
///     if (awaited && afut_cancelled(awaited))
///         return;                                  /* ends the task CANCELLED */
///     if (c->n++ < 2) {
///         afut_t *nap = afut_sleep(afut_get_loop(task), 0.01, NULL, NULL);
///         afut_task_await(task, nap);              /* resumes when nap is done */
///         afut_unref(nap);                         /* the task keeps its own reference */
///         return;
///     }
///     afut_set_result(task, "slept twice", NULL);  /* done: userdata is freed now */
/// }
/// ...
///     struct counter *c = calloc(1, sizeof *c);
///     afut_t *t = afut_task_new(loop, step, c, free);
///     void *value;
///     if (afut_loop_run_until_complete(loop, t) == AFUT_OK && afut_result(t, &value) == AFUT_OK)
///         puts(value);
///     afut_unref(t);
/// ```
///
/// Thread: any (the steps run on the loop's thread).
/// Ownership: returns a new reference owned by the caller. On success the task owns
/// `userdata` (see Lifetime); on failure it stays the caller's.
/// Returns: NULL if the loop is closed.
/// Bad input: NULL `loop` or `step` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `step` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_new(
    r#loop: *mut afut_loop_t,
    step: afut_step_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> *mut afut_t {
    guard("afut_task_new", std::ptr::null_mut(), || {
        // SAFETY: NULL or a live loop (API contract).
        let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return std::ptr::null_mut() };
        let Some(step) = step else { return std::ptr::null_mut() };
        match task::create(&l, step, Owned::new(userdata, userdata_free)) {
            Ok(t) => future_into_raw(t),
            Err((_, u)) => {
                u.disarm();
                std::ptr::null_mut()
            }
        }
    })
}

/// Makes `task` await `fut` (asyncio `await fut` inside the coroutine): the task's next step
/// runs one iteration after `fut` is done, with `awaited == fut`. If a cancel request is
/// pending, `fut` is cancelled at once (with its message) and the request counts as delivered.
///
/// Thread: only from inside `task`'s own step (on the loop's thread).
/// Ownership: the task takes its own reference to `fut` (until its next step starts).
/// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if called outside the task's step, a second
/// time in the same step, or after the step completed the task; `AFUT_ERR_INVALID_ARGUMENT`
/// if `fut` is the task itself (asyncio "Task cannot await on itself") or is not bound to the
/// task's loop (a loop-less future or one of another loop: wrap it with `afut_wrap_future`
/// first); `AFUT_ERR_LOOP_CLOSED` if `fut` is done and the loop closed.
/// Bad input: NULL `task` or `fut`, or a `task` that is not a task, returns
/// `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_await(task: *mut afut_t, fut: *mut afut_t) -> afut_status_t {
    guard("afut_task_await", AFUT_ERR_PANIC, || {
        // SAFETY: NULL or live handles (API contract).
        let (Some(t), Some(f)) = (unsafe { borrow_future(task) }, unsafe { borrow_future_to_keep(fut) }) else {
            return AFUT_ERR_INVALID_ARGUMENT;
        };
        task::await_future(&t, &f)
    })
}

/// True iff `fut` is a task (created by `afut_task_new`).
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_is_task(fut: *const afut_t) -> bool {
    guard("afut_is_task", false, || {
        // SAFETY: NULL or a live future (API contract).
        unsafe { borrow_future(fut) }.is_some_and(|f| task::is_task(&f))
    })
}

/// The number of cancel requests of the task not withdrawn with `afut_task_uncancel` (asyncio
/// `Task.cancelling()`). Each `afut_cancel` on a pending task adds one (and returns true).
///
/// Thread: any.
/// Bad input: NULL or a future that is not a task returns -1.
///
/// # Safety
/// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_cancelling(task: *const afut_t) -> c_int {
    guard("afut_task_cancelling", -1, || {
        // SAFETY: NULL or a live future (API contract).
        let Some(t) = (unsafe { borrow_future(task) }) else { return -1 };
        task::cancelling(&t).map_or(-1, |n| n.min(c_int::MAX as u32) as c_int)
    })
}

/// Withdraws one cancel request (asyncio 3.13 `Task.uncancel()`): decrements the count
/// (never below 0); when it reaches 0 a pending request is withdrawn too. No effect on a
/// task that is already done, except on the count.
///
/// Thread: any (normally the task's own step).
/// Returns: the remaining count.
/// Bad input: NULL or a future that is not a task returns -1.
///
/// # Safety
/// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_uncancel(task: *mut afut_t) -> c_int {
    guard("afut_task_uncancel", -1, || {
        // SAFETY: NULL or a live future (API contract).
        let Some(t) = (unsafe { borrow_future(task) }) else { return -1 };
        task::uncancel(&t).map_or(-1, |n| n.min(c_int::MAX as u32) as c_int)
    })
}

/// True while a cancel request of the task is pending: one that found no awaited future to
/// cancel (made before the first step, during a yield, or after the awaited future was done,
/// or by the step itself). If the step returns without awaiting or completing, the task then
/// ends CANCELLED. Requests delivered to an awaited future are not pending: the step sees
/// `afut_cancelled(awaited)` instead.
///
/// Thread: any (normally the task's own step).
/// Ownership: `*msg_out` (may be NULL) receives the pending message or NULL; it is borrowed
/// from the task and valid as long as the task lives. Written only when returning true.
/// Bad input: NULL or a future that is not a task returns false.
///
/// # Safety
/// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `msg_out` is NULL or valid for one write of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_cancel_requested(task: *const afut_t, msg_out: *mut *const c_char) -> bool {
    guard("afut_task_cancel_requested", false, || {
        // SAFETY: NULL or a live future (API contract).
        let Some(t) = (unsafe { borrow_future(task) }) else { return false };
        match task::cancel_requested(&t) {
            Some((true, msg)) => {
                if !msg_out.is_null() {
                    // SAFETY: a non-NULL `msg_out` points to writable storage (contract).
                    unsafe { msg_out.write(msg) };
                }
                true
            }
            _ => false,
        }
    })
}

/// Takes the pending cancel request of the task (see `afut_task_cancel_requested`), for
/// bindings that deliver it as an exception, the way asyncio throws CancelledError into the
/// coroutine and clears `_must_cancel`. The rest of the step then runs as if the request had
/// been swallowed: `afut_task_await` no longer cancels the awaited future, `afut_set_result`
/// is allowed, returning doing neither yields. To end the task cancelled after all (the
/// exception was not caught), call `afut_cancel(task, msg)` and return. The count
/// (`afut_task_cancelling`) is unchanged.
///
/// Thread: only from inside the task's own step; elsewhere it takes nothing.
/// Ownership: `*msg_out` (may be NULL) receives the message or NULL, borrowed from the task
/// and valid as long as the task lives. Written only when returning true.
/// Returns: true if a request was pending and is now taken.
/// Bad input: NULL or a future that is not a task returns false.
///
/// # Safety
/// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
/// `msg_out` is NULL or valid for one write of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_task_take_cancel(task: *mut afut_t, msg_out: *mut *const c_char) -> bool {
    guard("afut_task_take_cancel", false, || {
        // SAFETY: NULL or a live future (API contract).
        let Some(t) = (unsafe { borrow_future(task) }) else { return false };
        match task::take_cancel(&t) {
            Some(Some(msg)) => {
                if !msg_out.is_null() {
                    // SAFETY: a non-NULL `msg_out` points to writable storage (contract).
                    unsafe { msg_out.write(msg) };
                }
                true
            }
            _ => false,
        }
    })
}
