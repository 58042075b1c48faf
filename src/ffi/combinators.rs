//! Exported combinators: `afut_gather`, `afut_wait_for`, `afut_shield`, `afut_wait_many`,
//! `afut_as_completed`.

use std::mem::ManuallyDrop;

use super::convert::*;
use super::panic::guard;
use crate::abi::*;
use crate::futures::future::Future;
use crate::tasks::combinators;

/// Borrows `n` futures from a C array; None if the array or an entry is NULL (or finalizing).
///
/// # Safety
/// `futs` is NULL or points to `n` readable `afut_t *`, each NULL or a live future.
unsafe fn borrow_array(futs: *const *mut afut_t, n: usize) -> Option<Vec<ManuallyDrop<Future>>> {
    if n == 0 {
        return Some(Vec::new());
    }
    if futs.is_null() {
        return None;
    }
    // SAFETY: forwarded contract: `n` readable entries.
    let raw = unsafe { std::slice::from_raw_parts(futs, n) };
    // SAFETY: each entry is NULL or a live future (forwarded contract).
    raw.iter().map(|&p| unsafe { borrow_future_to_keep(p) }).collect()
}

fn owned(v: &[ManuallyDrop<Future>]) -> Vec<Future> {
    v.iter().map(|f| (**f).clone()).collect()
}

/// asyncio `gather(*futs, return_exceptions=...)`: a future of `loop` that completes when
/// every input is done.
///
/// Inputs not bound to `loop` (loop-less, or of another loop) are wrapped
/// (`afut_ensure_future`). The same future passed twice is one child that appears at both
/// positions. Children that are already done are processed during this call, so the gather
/// may be done on return, as asyncio's is; with `n == 0` it is done at once, with a NULL
/// result.
///
/// Results: on success the gather's value (`afut_result`) is an array of `n` `afut_t *`, the
/// children in argument order (borrowed from the gather, like the array): read each with
/// `afut_result` / `afut_exception`, or use `afut_gather_child(gather, i)`.
///   - `return_exceptions == false`: the first child that fails completes the gather with that
///     exception (code, message and a borrowed detail); a cancelled child completes it with an
///     exception whose code is `AFUT_ERR_CANCELLED` and whose message is the child's cancel
///     message (the gather is FINISHED, not cancelled, as in asyncio). The other children keep
///     running; their later exceptions count as retrieved.
///   - `return_exceptions == true`: the gather always succeeds once every child is done; the
///     children's exceptions count as retrieved when the gather completes (they are part of
///     the result). A gather cancelled or dropped before that leaves them to be reported.
///
/// Cancelling the gather (`afut_cancel`) cancels every child that is still pending, at once,
/// with the same message, and the gather ends CANCELLED at once with that message: a
/// deliberate improvement over asyncio, where the gather ends FINISHED with a CancelledError
/// and `cancelled()` is never true (gh-85071).
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller; the gather keeps a reference to each
/// child until it is freed. The caller keeps its own references to the inputs. While a child
/// is pending it keeps the gather alive (as in asyncio): a gather completes and runs its
/// done-callbacks even if the caller has released it. Closing the loop ends that hold.
/// Bad input: NULL `loop`, NULL `futs` with `n > 0`, or a NULL entry returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_gather(
    r#loop: *mut afut_loop_t,
    futs: *const *mut afut_t,
    n: usize,
    return_exceptions: bool,
) -> *mut afut_t {
    guard("afut_gather", std::ptr::null_mut(), || {
        // SAFETY: NULL or a live loop; `futs` per the contract above.
        let (Some(l), Some(v)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_array(futs, n) }) else {
            return std::ptr::null_mut();
        };
        future_into_raw(combinators::gather(&l, &owned(&v), return_exceptions))
    })
}

/// The child at argument position `index` of a gather (see `afut_gather`), whatever the
/// gather's state.
///
/// Thread: any.
/// Ownership: borrowed from the gather; valid as long as the gather lives.
/// Bad input: NULL, a future that is not a gather, or `index >= n` returns NULL.
///
/// # Safety
/// `gather` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_gather_child(gather: *const afut_t, index: usize) -> *mut afut_t {
    guard("afut_gather_child", std::ptr::null_mut(), || {
        // SAFETY: NULL or a live future (API contract).
        let Some(g) = (unsafe { borrow_future(gather) }) else { return std::ptr::null_mut() };
        combinators::gather_child(&g, index).unwrap_or(std::ptr::null_mut())
    })
}

/// asyncio `wait_for(fut, timeout)`: a future of `loop` that completes like `fut`, unless
/// `timeout_s` seconds pass first.
///
/// On timeout `fut` is cancelled, and the wait_for waits until `fut` is really done: if `fut`
/// ends cancelled, the wait_for ends FINISHED with an exception whose code is
/// `AFUT_ERR_TIMEOUT` (message "timed out"), so `afut_result` on it returns
/// `AFUT_ERR_EXCEPTION`; if `fut` swallowed the cancellation, its result (or its other
/// exception) is the wait_for's. A result that is already there when the timeout fires wins,
/// as in asyncio. `timeout_s <= 0` checks at once (a done `fut` gives its result, else it is
/// cancelled now); `INFINITY` never times out. The wait_for completes one iteration after
/// `fut` (its value and detail are borrowed from `fut`, which it keeps alive). Cancelling the
/// wait_for cancels `fut` at once (same message) and ends the wait_for CANCELLED at once. A
/// `fut` of another loop or loop-less is wrapped first (`afut_ensure_future`).
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller; the caller keeps its own on `fut`.
/// While `fut` is pending it keeps the returned future alive, which therefore completes and
/// runs its done-callbacks even if the caller has released it (until the loop is closed).
/// Bad input: NULL `loop` or `fut`, or NaN `timeout_s`, returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_wait_for(r#loop: *mut afut_loop_t, fut: *mut afut_t, timeout_s: f64) -> *mut afut_t {
    guard("afut_wait_for", std::ptr::null_mut(), || {
        // SAFETY: NULL or live handles (API contract).
        let (Some(l), Some(f)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_future_to_keep(fut) }) else {
            return std::ptr::null_mut();
        };
        if timeout_s.is_nan() {
            return std::ptr::null_mut();
        }
        future_into_raw(combinators::wait_for(&l, &f, timeout_s))
    })
}

/// asyncio `shield(fut)`: protects `fut` from cancellation. If `fut` (after
/// `afut_ensure_future`) is already done, it is returned itself. Otherwise a new future of
/// `loop` completes like `fut` (one iteration after it). Cancelling that outer future leaves
/// `fut` running, untouched; once the outer future is done (cancelled, or completed by its
/// caller) the shield lets go of `fut`, whose later outcome is its own: an exception nobody
/// reads is reported as never retrieved, as in asyncio. Cancelling `fut` itself cancels the
/// outer future, without a message (as asyncio does). While both are pending, `fut` keeps the
/// outer future alive: it completes and runs its done-callbacks even if the caller has
/// released it (until the loop is closed).
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller; values and details are borrowed
/// from `fut`, which the outer future keeps alive.
/// Bad input: NULL `loop` or `fut` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_shield(r#loop: *mut afut_loop_t, fut: *mut afut_t) -> *mut afut_t {
    guard("afut_shield", std::ptr::null_mut(), || {
        // SAFETY: NULL or live handles (API contract).
        let (Some(l), Some(f)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_future_to_keep(fut) }) else {
            return std::ptr::null_mut();
        };
        future_into_raw(combinators::shield(&l, &f))
    })
}

/// asyncio `wait(futs, timeout=..., return_when=...)`: a future of `loop` that completes with
/// the sets of done and pending inputs once `return_when` holds or `timeout_s` passes.
///
/// `return_when`: `AFUT_FIRST_COMPLETED` (any input done, whatever its outcome),
/// `AFUT_FIRST_EXCEPTION` (an input fails; a cancellation is not an exception; if none fails
/// it is ALL_COMPLETED), `AFUT_ALL_COMPLETED`. Its value (`afut_result`) is an
/// `afut_wait_result_t *` whose `done` array holds every input done at that moment (several may
/// finish in the same iteration) and `pending` the others, each in input order; the struct,
/// the arrays and the futures are borrowed from the wait future. It never fails: a timeout is
/// not an error and cancels nothing. Even when every input is already done, it takes one
/// iteration, as asyncio's does. Duplicates count once; inputs not bound to `loop` are
/// wrapped. Cancelling the wait future leaves the inputs untouched. The FIRST_EXCEPTION check reads the inputs'
/// exceptions, which marks each one retrieved (asyncio skips the read for the last input).
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller; it keeps a reference to each input.
/// While it is pending the inputs keep it alive, so it completes and runs its done-callbacks
/// even if the caller has released it (until the loop is closed).
/// Bad input: NULL `loop`, `n == 0` (asyncio ValueError), NULL `futs` or a NULL entry, an
/// unknown `return_when`, or a NaN `timeout_s` returns NULL. `INFINITY`: no timeout.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_wait_many(
    r#loop: *mut afut_loop_t,
    futs: *const *mut afut_t,
    n: usize,
    timeout_s: f64,
    return_when: i32,
) -> *mut afut_t {
    guard("afut_wait_many", std::ptr::null_mut(), || {
        if n == 0 || timeout_s.is_nan() || !(AFUT_ALL_COMPLETED..=AFUT_FIRST_EXCEPTION).contains(&return_when) {
            return std::ptr::null_mut();
        }
        // SAFETY: NULL or a live loop; `futs` per the contract above.
        let (Some(l), Some(v)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_array(futs, n) }) else {
            return std::ptr::null_mut();
        };
        future_into_raw(combinators::wait_many(&l, &owned(&v), timeout_s, return_when))
    })
}

/// The done / pending sets of a completed `afut_wait_many` future: the same pointer as its
/// `afut_result` value.
///
/// Thread: any.
/// Ownership: borrowed from the wait future; valid as long as it lives.
/// Returns: NULL while the wait is pending, if it was cancelled, or if `wait` is not one.
/// Bad input: NULL returns NULL.
///
/// # Safety
/// `wait` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_wait_many_result(wait: *const afut_t) -> *const afut_wait_result_t {
    guard("afut_wait_many_result", std::ptr::null(), || {
        // SAFETY: NULL or a live future (API contract).
        let Some(w) = (unsafe { borrow_future(wait) }) else { return std::ptr::null() };
        combinators::wait_many_result(&w).unwrap_or(std::ptr::null())
    })
}

/// asyncio `as_completed(futs, timeout=...)`: writes to `out` one new future per distinct
/// input; `out[0]` completes like the first input to complete, `out[1]` like the second, and
/// so on (each one iteration after that input; values and details borrowed from it). When
/// `timeout_s` passes, every `out[i]` still pending fails with an exception whose code is
/// `AFUT_ERR_TIMEOUT` (asyncio raises TimeoutError from the remaining awaits). An `out[i]` the
/// caller cancels is skipped. `INFINITY`: no timeout.
///
/// Thread: any.
/// Ownership: each `out[i]` is a new reference owned by the caller (`afut_unref` each). Inputs
/// are kept alive until they are done, the timeout passes or `loop` is closed (the close lets
/// go of inputs that never complete).
/// Returns: the number of futures written (the number of distinct inputs, at most `n`).
/// Bad input: NULL `loop` or `out`, NULL `futs` with `n > 0`, a NULL entry, or a NaN
/// `timeout_s` returns 0 and writes nothing.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_as_completed(
    r#loop: *mut afut_loop_t,
    futs: *const *mut afut_t,
    n: usize,
    timeout_s: f64,
    out: *mut *mut afut_t,
) -> usize {
    guard("afut_as_completed", 0, || {
        if out.is_null() || timeout_s.is_nan() {
            return 0;
        }
        // SAFETY: NULL or a live loop; `futs` per the contract above.
        let (Some(l), Some(v)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_array(futs, n) }) else {
            return 0;
        };
        let slots = combinators::as_completed(&l, &owned(&v), timeout_s);
        let k = slots.len();
        for (i, s) in slots.into_iter().enumerate() {
            // SAFETY: `out` has room for `n >= k` entries (contract).
            unsafe { out.add(i).write(future_into_raw(s)) };
        }
        k
    })
}
