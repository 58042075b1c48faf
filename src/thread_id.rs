//! A cheap identity for the calling thread, to tell the thread running a loop from the others.

/// The calling thread's id (`pthread_self`): never 0 for a live thread, unique among live
/// threads. Cheaper than a Rust thread-local in a shared library (no `__tls_get_addr`).
pub(crate) fn current() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}
