//! Done-callbacks: what `afut_add_done_callback` registers, and the list a pending future
//! keeps them in.
//!
//! The types are generic over the future they are called with (`F`, always
//! [`crate::futures::future::Future`] in practice), so that this module needs nothing from
//! the future's own module: the future owns its callback list, the list knows only how to
//! call a callback with "some future that has a C handle".

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

/// A future's done-callbacks in registration order. The first one is stored inline, so a
/// future with one callback needs no allocation beyond its own.
#[derive(Default)]
pub(crate) enum CallbackList<F> {
    #[default]
    Empty,
    One(DoneCallback<F>),
    Many(Vec<DoneCallback<F>>),
}

impl<F> CallbackList<F> {
    pub(crate) fn push(&mut self, cb: DoneCallback<F>) {
        match self {
            CallbackList::Many(v) => v.push(cb),
            // Empty owns nothing: forgetting it skips its drop glue.
            CallbackList::Empty => std::mem::forget(std::mem::replace(self, CallbackList::One(cb))),
            CallbackList::One(_) => {
                let CallbackList::One(first) = std::mem::take(self) else { unreachable!() };
                *self = CallbackList::Many(vec![first, cb]);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            CallbackList::Empty => 0,
            CallbackList::One(_) => 1,
            CallbackList::Many(v) => v.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves out the entries matching `pred`, keeping the others in order.
    pub(crate) fn extract(&mut self, pred: impl Fn(&DoneCallback<F>) -> bool) -> Vec<DoneCallback<F>> {
        let mut removed = Vec::new();
        let mut kept = CallbackList::Empty;
        for cb in std::mem::take(self) {
            if pred(&cb) { removed.push(cb) } else { kept.push(cb) }
        }
        *self = kept;
        removed
    }
}

impl<F> IntoIterator for CallbackList<F> {
    type Item = DoneCallback<F>;
    type IntoIter = std::iter::Chain<std::option::IntoIter<DoneCallback<F>>, std::vec::IntoIter<DoneCallback<F>>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            CallbackList::Empty => None.into_iter().chain(Vec::new()),
            CallbackList::One(cb) => Some(cb).into_iter().chain(Vec::new()),
            CallbackList::Many(v) => None.into_iter().chain(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fake;
    impl HasHandle for Fake {
        fn handle(&self) -> *mut afut_t {
            std::ptr::null_mut()
        }
    }

    fn counting(token: u64, log: &Arc<parking_lot::Mutex<Vec<u64>>>) -> DoneCallback<Fake> {
        let log = log.clone();
        DoneCallback::rust(token, move |_| log.lock().push(token))
    }

    #[test]
    fn list_keeps_registration_order_and_extracts_in_place() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut list = CallbackList::default();
        assert!(list.is_empty());
        for t in 1..=5 {
            list.push(counting(t, &log));
        }
        assert_eq!(list.len(), 5);
        let removed = list.extract(|cb| cb.has_token(2) || cb.has_token(4));
        assert_eq!(removed.len(), 2);
        assert_eq!(list.len(), 3);
        for cb in list {
            cb.run(&Fake);
        }
        assert_eq!(*log.lock(), vec![1, 3, 5]);
        drop(removed); // never run
        assert_eq!(*log.lock(), vec![1, 3, 5]);
    }

    #[test]
    fn one_entry_stays_inline_and_extracting_it_empties_the_list() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut list = CallbackList::default();
        list.push(counting(7, &log));
        assert!(matches!(list, CallbackList::One(_)));
        assert_eq!(list.extract(|cb| cb.has_token(7)).len(), 1);
        assert!(matches!(list, CallbackList::Empty));
    }

    #[test]
    fn tokens_are_unique() {
        assert_ne!(next_token(), next_token());
    }
}
