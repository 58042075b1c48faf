//! Exported executor functions (`afut_executor_*`, `afut_loop_run_in_executor`).

use std::ffi::c_void;

use super::convert::*;
use super::panic::{guard, guard_loop};
use crate::abi::*;
use crate::callback::Owned;
use crate::tasks::executor::{self, Executor};

/// Creates a thread-pool executor (concurrent.futures `ThreadPoolExecutor(max_workers)`): at most
/// `max_workers` jobs run at once, each on a worker thread; 0 means the number of CPUs this
/// process may run on (its affinity mask and CPU quota). No thread starts here: a worker is
/// started by a submit that finds no available worker for its job, up to `max_workers`; idle
/// workers wait (no spinning) and are reused, and run until shutdown. Workers have 8 MiB stacks.
///
/// Thread: any.
/// Ownership: the caller owns the executor and releases it with `afut_executor_free`.
/// Returns: the executor; NULL only if memory ran out.
#[unsafe(no_mangle)]
pub extern "C" fn afut_executor_new(max_workers: usize) -> *mut afut_executor_t {
    guard("afut_executor_new", std::ptr::null_mut(), || executor_into_raw(Executor::new(max_workers)))
}

/// Submits a job (concurrent.futures `submit`): `fn(fut, userdata)` runs on a worker and
/// completes `fut` with `afut_set_result` / `afut_set_exception`; if it returns without
/// completing it, `fut` gets a NULL result. Jobs start in submission order.
///
/// `fut` is a loop-less future in concurrent.futures' states:
///   - queued (`afut_describe`: "<Future pending>"): `afut_cancel` cancels it, and the job never
///     runs; its `userdata_free` runs inside that `afut_cancel`, after the done-callbacks;
///   - running ("<Future running>"): `afut_cancel` returns false, also from inside the job
///     (`set_running_or_notify_cancel`);
///   - done: as any future. A future completed by someone else before its job started skips
///     the job.
///
/// Its done-callbacks follow the loop-less rule: they run on the thread that completes or
/// cancels it (the worker, when the job completes it), and at once on the adding thread once it
/// is done. A worker counts as available again as soon as the job function returns; so a
/// done-callback that the executor itself runs (the job returned without completing `fut`)
/// must not block waiting for another job of a full executor. To wait for a job's result on a
/// loop, use `afut_loop_run_in_executor` (or `afut_wrap_future`).
///
/// Thread: any, a job of this executor included.
/// Ownership: returns a new reference owned by the caller; the executor keeps its own until the
/// job is done, so the caller may drop it at once. On success the library owns `userdata` and
/// calls `userdata_free(userdata)` (if not NULL) exactly once, never before the job started
/// unless it was cancelled: on the worker right after `fn` returned (before `fut` gets a NULL
/// result), or inside the `afut_cancel` (or the `afut_executor_shutdown` with `cancel_futures`)
/// that cancelled the queued job, or, for a queued job whose future someone else completed, in
/// the first of a later `afut_cancel` (which returns false) or the worker skipping it; at the latest when `afut_executor_shutdown(ex, true, ...)` or
/// `afut_executor_free` returns. On failure (NULL) it stays the caller's and nothing is freed.
/// Returns: the job's future; NULL after `afut_executor_shutdown`, or if the executor has no
/// worker and the kernel refused to start one.
/// Bad input: NULL `ex` or `fn` returns NULL.
///
/// # Safety
/// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
/// `fn` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_executor_submit(
    ex: *mut afut_executor_t,
    r#fn: afut_job_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> *mut afut_t {
    // SAFETY: NULL or a live executor (API contract).
    let (Some(ex), Some(func)) = (unsafe { borrow_executor(ex) }, r#fn) else { return std::ptr::null_mut() };
    guard("afut_executor_submit", std::ptr::null_mut(), || match ex.submit(func, Owned::new(userdata, userdata_free)) {
        Ok(fut) => future_into_raw(fut),
        Err((_, data)) => {
            data.disarm();
            std::ptr::null_mut()
        }
    })
}

/// Runs a job on `ex` as a future of `loop` (asyncio `loop.run_in_executor(ex, fn)`): the
/// job's future (see `afut_executor_submit`) wrapped with `afut_wrap_future`. The loop future
/// completes one iteration after the job's future, with its outcome (the value or detail
/// borrowed from it); its done-callbacks run on the loop's thread. Cancellation is chained both
/// ways: cancelling the loop future (true while it is pending, as asyncio's wrapper) cancels
/// the job's future on the loop's next iteration, so a queued job never runs, while a running
/// one runs to its end and the loop future stays cancelled; a job cancelled on the executor side
/// (`afut_executor_shutdown` with `cancel_futures`) cancels the loop future. With a virtual clock
/// (`afut_loop_set_virtual_clock`), the job holds auto-advance until it is done.
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller; the library keeps the loop future
/// alive until the job is done, so the caller may drop it at once and its done-callbacks still
/// run. `userdata` as for `afut_executor_submit`. On failure (NULL) it stays the caller's and
/// nothing is freed.
/// Returns: the loop future; NULL if the loop is closed or the executor shut down.
/// Bad input: NULL `loop`, `ex` or `fn` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
/// `fn` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_run_in_executor(
    r#loop: *mut afut_loop_t,
    ex: *mut afut_executor_t,
    r#fn: afut_job_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> *mut afut_t {
    // SAFETY: NULL or live handles (API contract).
    let (Some(l), Some(ex), Some(func)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_executor(ex) }, r#fn) else {
        return std::ptr::null_mut();
    };
    guard_loop("afut_loop_run_in_executor", &l, std::ptr::null_mut(), || {
        match executor::run_in_executor(&l, ex, func, Owned::new(userdata, userdata_free)) {
            Ok(fut) => future_into_raw(fut),
            Err((_, data)) => {
                data.disarm();
                std::ptr::null_mut()
            }
        }
    })
}

/// Shuts the executor down (concurrent.futures `shutdown(wait, cancel_futures=...)`): later
/// submits return NULL. Jobs already queued still run, unless `cancel_futures`: then every
/// queued job's future is cancelled here (its done-callbacks run on this thread, its userdata
/// is freed before this returns); running jobs always run to their end. With `wait`, returns
/// once every job is done (its userdata freed, its future completed) and every worker thread
/// has exited; without, at once (the workers exit once the queue is empty). A second call is
/// harmless: `wait` then waits for what the first left running. Called from one of this
/// executor's own jobs, `wait` waits for the other workers only (jobs still queued then run
/// after that job returns).
///
/// Thread: any, a job of this executor included.
/// Bad input: NULL is a no-op.
///
/// # Safety
/// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_executor_shutdown(ex: *mut afut_executor_t, wait: bool, cancel_futures: bool) {
    // SAFETY: NULL or a live executor (API contract).
    let Some(ex) = (unsafe { borrow_executor(ex) }) else { return };
    guard("afut_executor_shutdown", (), || ex.shutdown(wait, cancel_futures))
}

/// Shuts the executor down with `wait` (`afut_executor_shutdown(ex, true, false)`: queued jobs
/// still run), then frees it. Futures of its jobs outlive it.
///
/// Thread: any, a job of this executor included (then it waits for the other workers only).
/// Bad input: NULL is a no-op.
///
/// # Safety
/// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`, and no other
/// thread uses it during or after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_executor_free(ex: *mut afut_executor_t) {
    if ex.is_null() {
        return;
    }
    guard("afut_executor_free", (), || {
        // SAFETY: live executor (API contract).
        if let Some(e) = unsafe { borrow_executor(ex) } {
            e.shutdown(true, false);
        }
        // SAFETY: live, and the owner gives it up here.
        drop(unsafe { executor_from_raw(ex) });
    })
}
