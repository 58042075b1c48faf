//! The library's one mutex type, which makes "no lock is held while C code runs" checkable.
//!
//! Every afut lock is a [`Mutex`] from here. In debug builds (every test build: `cargo test`
//! and the C suite link the debug library) each guard counts itself in a per-thread counter,
//! and `callback.rs`, the single place where C function pointers are called, asserts that the
//! counter is zero before each call ([`assert_unlocked`]). A C callback, destructor or handler
//! that would run under an afut lock therefore aborts the test program with a message naming
//! the call, instead of deadlocking once in a million runs when that C code re-enters the API.
//! Release builds compile the counter away.

use std::ops::{Deref, DerefMut};

// Not under loom: its threads share the OS thread's thread-locals, and the loom tests run no C.
#[cfg(all(debug_assertions, not(all(test, loom))))]
mod held {
    use std::cell::Cell;

    thread_local! {
        static HELD: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) fn add(delta: i32) {
        HELD.with(|h| h.set(h.get().wrapping_add_signed(delta)));
    }

    pub(super) fn count() -> u32 {
        HELD.with(Cell::get)
    }
}

/// A mutex (parking_lot's) whose guards are counted per thread in debug builds.
#[derive(Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

/// The guard of a [`Mutex`]; the lock is released when it drops.
pub(crate) struct Guard<'a, T>(parking_lot::MutexGuard<'a, T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex(parking_lot::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> Guard<'_, T> {
        let guard = self.0.lock();
        #[cfg(all(debug_assertions, not(all(test, loom))))]
        held::add(1);
        Guard(guard)
    }
}

impl<'a, T> Guard<'a, T> {
    /// The underlying guard, for waiting on a condition variable (the lock is released while
    /// the thread waits, but the thread runs no C code then, so the count stays as it is).
    #[cfg_attr(all(test, loom), allow(dead_code))]
    pub(crate) fn raw(&mut self) -> &mut parking_lot::MutexGuard<'a, T> {
        &mut self.0
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        #[cfg(all(debug_assertions, not(all(test, loom))))]
        held::add(-1);
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// How many afut locks the calling thread holds (always 0 in release builds).
pub(crate) fn held() -> u32 {
    #[cfg(all(debug_assertions, not(all(test, loom))))]
    return held::count();
    #[cfg(not(all(debug_assertions, not(all(test, loom)))))]
    0
}

/// Called right before C code runs: in debug builds, aborts (loudly, naming `what`) if the
/// thread holds an afut lock, because C code may call back into the library.
#[inline]
pub(crate) fn assert_unlocked(what: &str) {
    if cfg!(debug_assertions) && held() != 0 {
        eprintln!(
            "afut: internal error: {what} called while this thread holds {} afut lock(s); \
             C code must never run under a library lock",
            held()
        );
        eprintln!("{}", std::backtrace::Backtrace::force_capture());
        std::process::abort();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn guards_are_counted_and_released() {
        let a = Mutex::new(1);
        let b = Mutex::new(2);
        assert_eq!(held(), 0);
        {
            let ga = a.lock();
            assert_eq!(held(), 1);
            let gb = b.lock();
            assert_eq!(*ga + *gb, 3);
            assert_eq!(held(), 2);
        }
        assert_eq!(held(), 0);
        assert_unlocked("a test");
    }

    #[test]
    fn the_count_is_per_thread() {
        let m = std::sync::Arc::new(Mutex::new(0));
        let _g = m.lock();
        std::thread::spawn(|| assert_eq!(held(), 0)).join().unwrap();
        assert_eq!(held(), 1);
    }
}
