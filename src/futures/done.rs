//! Done-callbacks: what `afut_add_done_callback` registers (a future keeps them in its state
//! word, see `futures::state`).
//!
//! The types are generic over the future they are called with (`F`, always
//! [`crate::futures::future::Future`] in practice), so that this module needs nothing from
//! the future's own module: a callback knows only how to call itself with "some future that
//! has a C handle".

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{DoneFn, afut_t};
use crate::callback::{Owned, call_done};

/// A future as a done-callback sees it: something with a C handle.
pub(crate) trait HasHandle {
    /// The handle C sees; valid while the caller holds a reference.
    fn handle(&self) -> *mut afut_t;
}

/// A unique token for a library-internal done-callback, so that its owner can remove it.
pub(crate) fn next_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A done-callback registered on a future.
pub(crate) enum DoneCallback<F> {
    C {
        func: DoneFn,
        data: Owned,
    },
    /// Library-internal (boxed: rare, and it keeps this enum at 3 words).
    Rust(Box<InternalDone<F>>),
}

/// A library-internal done-callback; `token` identifies it for removal.
pub(crate) struct InternalDone<F> {
    token: u64,
    f: Box<dyn FnOnce(&F) + Send>,
}

impl<F: HasHandle> DoneCallback<F> {
    pub(crate) fn c(func: DoneFn, data: Owned) -> Self {
        DoneCallback::C { func, data }
    }

    pub(crate) fn rust(token: u64, f: impl FnOnce(&F) + Send + 'static) -> Self {
        DoneCallback::Rust(Box::new(InternalDone { token, f: Box::new(f) }))
    }

    /// True for the C entry `(func, userdata)`.
    pub(crate) fn matches(&self, func: DoneFn, userdata: *mut c_void) -> bool {
        match self {
            DoneCallback::C { func: f, data } => std::ptr::fn_addr_eq(*f, func) && data.ptr() == userdata,
            DoneCallback::Rust(_) => false,
        }
    }

    pub(crate) fn has_token(&self, token: u64) -> bool {
        matches!(self, DoneCallback::Rust(i) if i.token == token)
    }

    /// Calls the callback with `fut` (which the caller keeps alive for the call), then frees
    /// its userdata.
    pub(crate) fn run(self, fut: &F) {
        match self {
            DoneCallback::C { func, data } => {
                call_done(func, fut.handle(), &data);
                drop(data);
            }
            DoneCallback::Rust(i) => (i.f)(fut),
        }
    }

    /// Drops the callback without freeing a C userdata: ownership goes back to the caller.
    pub(crate) fn disarm(self) {
        if let DoneCallback::C { data, .. } = self {
            data.disarm();
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            DoneCallback::C { func, data } => {
                format!("<done-callback {:p}({:p})>", *func as *const (), data.ptr())
            }
            DoneCallback::Rust(_) => "<afut internal done-callback>".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique() {
        assert_ne!(next_token(), next_token());
    }
}
