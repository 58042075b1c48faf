//! The loop's monotonic clock, in seconds as `f64` (asyncio's `loop.time()`).
//!
//! Seconds since the first use of the clock in this process, on `CLOCK_MONOTONIC`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The clock's zero: `CLOCK_MONOTONIC` read directly (seconds, nanoseconds), and the same
/// moment as an `Instant` (read just after, so never earlier: a deadline converted to an
/// `Instant` is never early).
struct Epoch {
    sec: i64,
    nsec: i64,
    instant: Instant,
}

fn monotonic() -> (i64, i64) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists on Linux (vDSO call).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

fn epoch_parts() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| {
        let (sec, nsec) = monotonic();
        Epoch { sec, nsec, instant: Instant::now() }
    })
}

fn epoch() -> Instant {
    epoch_parts().instant
}

/// The current time on the loop clock (one vDSO clock read and a subtraction: every
/// `call_later` reads it).
pub(crate) fn now() -> f64 {
    let e = epoch_parts();
    let (sec, nsec) = monotonic();
    (sec - e.sec) as f64 + (nsec - e.nsec) as f64 * 1e-9
}

/// The `Instant` of a loop-clock time (saturating at the epoch; `None` if it is not finite or
/// too far away to represent).
pub(crate) fn instant_of(when: f64) -> Option<Instant> {
    if !when.is_finite() {
        return None;
    }
    if when <= 0.0 {
        return Some(epoch());
    }
    epoch().checked_add(Duration::try_from_secs_f64(when).ok()?)
}

/// Milliseconds from now until `when`, rounded up so that a waiter never wakes early and
/// spins; 0 when due; `None` for "never" (clamped to one day, as asyncio does).
pub(crate) fn ms_until(when: f64) -> Option<i32> {
    if when == f64::INFINITY {
        return None;
    }
    let delta = when - now();
    if delta <= 0.0 {
        return Some(0);
    }
    let ms = (delta * 1000.0).ceil();
    Some(ms.min(86_400_000.0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advances_and_rounds_up() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > a);
        assert_eq!(ms_until(now() - 1.0), Some(0));
        assert_eq!(ms_until(f64::INFINITY), None);
        let ms = ms_until(now() + 0.0015).unwrap();
        assert!((1..=2).contains(&ms), "{ms}");
        assert_eq!(ms_until(now() + 1e9), Some(86_400_000));
    }
}
