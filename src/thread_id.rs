//! A cheap identity for the calling thread, to tell the thread running a loop from the others.

/// The calling thread's id (`pthread_self`): never 0 for a live thread, unique among live
/// threads. Cheaper than a Rust thread-local in a shared library (no `__tls_get_addr`).
#[cfg(not(all(test, loom)))]
pub(crate) fn current() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}

/// Under loom every model thread runs on the same OS thread: number them instead.
#[cfg(all(test, loom))]
pub(crate) fn current() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    loom::thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}
