//! The opaque C handle types and every conversion between a C pointer and a Rust reference.
//!
//! `afut_t *` is the address of a `FutureInner` (from `Future::into_raw`, the future's own
//! reference count), `afut_loop_t *` the address of a `LoopInner` inside its `Arc`, and
//! `afut_executor_t *` a boxed `Executor`. Each live `afut_t *` the caller holds is one strong
//! count. The functions here are the only places that turn those pointers back into
//! references.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::abi::{afut_executor_t, afut_loop_t, afut_t};
use crate::futures::future::{Future, TAG_FINALIZING};
use crate::runtime::eventloop::{Loop, LoopInner};
use crate::tasks::executor::Executor;

/// Borrows the caller's future without touching its count. `None` for NULL.
///
/// # Safety
/// `p` is NULL or a live `afut_t *` from this library (the API contract).
pub(crate) unsafe fn borrow_future(p: *const afut_t) -> Option<ManuallyDrop<Future>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract `p` came from `Future::into_raw` and the caller holds a count
    // (or the library does, during a callback or report); ManuallyDrop keeps this borrow
    // from releasing that count.
    Some(ManuallyDrop::new(unsafe { Future::from_raw(p) }))
}

/// Like [`borrow_future`], but also refuses a future whose never-retrieved report is running:
/// for every call that may take a new reference to it.
///
/// # Safety
/// As for [`borrow_future`].
pub(crate) unsafe fn borrow_future_to_keep(p: *const afut_t) -> Option<ManuallyDrop<Future>> {
    // SAFETY: forwarded contract.
    let fut = unsafe { borrow_future(p) }?;
    (fut.inner().tag() != TAG_FINALIZING).then_some(fut)
}

/// Hands a new reference to C.
pub(crate) fn future_into_raw(fut: Future) -> *mut afut_t {
    fut.into_raw()
}

/// Takes back one reference the caller held.
///
/// # Safety
/// `p` is a live `afut_t *` whose count the caller gives up.
pub(crate) unsafe fn future_from_raw(p: *const afut_t) -> Future {
    // SAFETY: forwarded contract: one strong count is transferred back to Rust.
    unsafe { Future::from_raw(p) }
}

/// Adds one reference for C.
///
/// # Safety
/// `p` is a live, non-finalizing `afut_t *`.
pub(crate) unsafe fn future_add_ref(p: *const afut_t) {
    // SAFETY: the caller holds a count (or borrows the library's, in a callback), so the
    // future is alive.
    unsafe { Future::increment_raw(p) }
}

/// Borrows the caller's loop. `None` for NULL.
///
/// # Safety
/// `p` is NULL or a live `afut_loop_t *` (not yet passed to `afut_loop_free`).
pub(crate) unsafe fn borrow_loop(p: *const afut_loop_t) -> Option<ManuallyDrop<Loop>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` in `afut_loop_new` and the owner's count is alive.
    Some(ManuallyDrop::new(Loop(unsafe { Arc::from_raw(p as *const LoopInner) })))
}

pub(crate) fn loop_into_raw(l: Loop) -> *mut afut_loop_t {
    Arc::into_raw(l.0) as *mut afut_loop_t
}

/// Takes back the owner's reference (`afut_loop_free`).
///
/// # Safety
/// `p` is a live `afut_loop_t *` whose owner gives it up.
pub(crate) unsafe fn loop_from_raw(p: *const afut_loop_t) -> Loop {
    // SAFETY: forwarded contract.
    Loop(unsafe { Arc::from_raw(p as *const LoopInner) })
}

/// Hands a new executor to C.
pub(crate) fn executor_into_raw(ex: Executor) -> *mut afut_executor_t {
    Box::into_raw(Box::new(ex)) as *mut afut_executor_t
}

/// Borrows the caller's executor. `None` for NULL.
///
/// # Safety
/// `p` is NULL or a live `afut_executor_t *` (not yet passed to `afut_executor_free`), and
/// stays so while the borrow is used.
pub(crate) unsafe fn borrow_executor<'a>(p: *const afut_executor_t) -> Option<&'a Executor> {
    // SAFETY: per the contract `p` came from `executor_into_raw` and is not freed yet.
    unsafe { (p as *const Executor).as_ref() }
}

/// Takes back the owner's executor (`afut_executor_free`).
///
/// # Safety
/// `p` is a live `afut_executor_t *` whose owner gives it up; no other call uses it any more.
pub(crate) unsafe fn executor_from_raw(p: *mut afut_executor_t) -> Box<Executor> {
    // SAFETY: forwarded contract: the box made by `executor_into_raw` comes back once.
    unsafe { Box::from_raw(p as *mut Executor) }
}

/// Sets the calling thread's `errno`, which C reads after a failed call.
pub(crate) fn set_errno(e: libc::c_int) {
    // SAFETY: `errno_location` returns the calling thread's errno, always valid to write.
    unsafe { *errno_location() = e }
}

#[cfg(any(target_os = "linux", target_os = "redox", target_os = "fuchsia", target_os = "hurd"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: a libc function without preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "dragonfly"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: a libc function without preconditions.
    unsafe { libc::__error() }
}

#[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: a libc function without preconditions.
    unsafe { libc::__errno() }
}

#[cfg(any(target_os = "illumos", target_os = "solaris"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: a libc function without preconditions.
    unsafe { libc::___errno() }
}
