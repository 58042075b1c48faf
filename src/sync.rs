//! The atomics and cells of the lock-free core, from `std` or, when the crate's unit tests are
//! built with `--cfg loom`, from the loom model checker (a dev-dependency: a non-test build
//! with `--cfg loom` uses `std`).
//!
//! Only the lock-free core uses this module: the future's state word and reference counts
//! (`futures::state`, `futures::future`), the loop's queues and its wakeup flag
//! (`runtime::queue`). Under `cfg(all(test, loom))` every access those make is a point where loom may
//! switch threads, and every `UnsafeCell` access is checked for data races, so the
//! `#[cfg(all(test, loom))]` tests run the real code in every interleaving loom explores (the
//! approach tokio takes). Everything else keeps `std`'s atomics directly.
//!
//! `cfg(afut_loom_broken)` (only together with `loom`) compiles a deliberately broken
//! variant of the core, which the loom tests must catch: see [`BROKEN`].

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

pub(crate) use std::sync::atomic::Ordering;

/// True in the deliberately broken build (`--cfg loom --cfg afut_loom_broken`): the future's
/// first add_done_callback publishes its inline callback with a plain load and store instead
/// of claiming the state word with a compare-and-swap, so a completion racing it can miss the
/// callback (or an add can land on a done future). The loom tests prove that the model
/// checker finds this (`loom_catches_the_broken_variant`).
pub(crate) const BROKEN: bool = cfg!(all(test, loom, afut_loom_broken));

/// A cell whose accesses loom checks for data races; with `std` it is a plain
/// `UnsafeCell` with the same closure-based API.
#[cfg(all(test, loom))]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(all(test, loom)))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(all(test, loom)))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading; the caller guarantees no concurrent write.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing; the caller guarantees exclusive access.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Waits a moment for another thread to finish a short step (a few instructions that run no
/// C code, take no lock and make no system call): spins first, then yields the core. Under
/// loom, yields to the model's scheduler (a spin loop must, or loom cannot explore past it).
#[inline]
pub(crate) fn backoff(round: &mut u32) {
    #[cfg(all(test, loom))]
    {
        *round += 1;
        loom::thread::yield_now();
    }
    #[cfg(not(all(test, loom)))]
    {
        *round += 1;
        if *round < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
