//! Wakeup: the loop's one pollable fd and the coalesced "there is work" signal.
//!
//! `afut_loop_fd()` is an epoll fd holding two members:
//! - an eventfd, written only on the 0 -> 1 transition of the `signalled` flag (a cross-thread
//!   submission, or the loop telling a host that work is left after `run_once`). The data
//!   lives in the loop's queue; the fd only says "look". N signals before one dispatch give
//!   one readable state; every item queued before a signal is taken by a dispatch that starts
//!   after it, because the loop drains the eventfd, then clears the flag, then takes the queue.
//! - a timerfd, armed to the earliest timer deadline once a host asked for the fd, so that a
//!   host that only watches the fd never misses a timer.
//!
//! This module is the only place that makes these system calls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock;
use crate::runtime::queue::Flag;

pub(crate) struct Wakeup {
    epoll: OwnedFd,
    event: OwnedFd,
    timer: OwnedFd,
    /// The coalescing flag (its protocol with the queues: `runtime::queue`).
    signalled: Flag,
    /// The deadline the timerfd is armed for (f64 bits), `INFINITY` when disarmed.
    armed: AtomicU64,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by a successful system call and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        // SAFETY: plain system calls with constant arguments; each result is checked.
        let epoll = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: as above.
        let event = owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: as above.
        let timer =
            owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) })?;
        for fd in [event.as_raw_fd(), timer.as_raw_fd()] {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: both fds are open and owned by this struct; `ev` is a valid event.
            check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        }
        Ok(Wakeup { epoll, event, timer, signalled: Flag::default(), armed: AtomicU64::new(f64::INFINITY.to_bits()) })
    }

    /// The pollable fd handed to hosts.
    pub(crate) fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Raises the signal. True if this call made the idle -> signalled transition (and so
    /// wrote the eventfd); false if it was already signalled (coalesced).
    pub(crate) fn signal(&self) -> bool {
        if !self.signalled.raise() {
            return false;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own open eventfd.
        let n = unsafe { libc::write(self.event.as_raw_fd(), (&raw const one).cast(), 8) };
        if n != 8 {
            // Cannot happen short of a kernel bug: the counter is drained on every clear.
            // Do not swallow it (SEMANTICS.md B12); the flag stays set, so the loop still
            // sees the work on its next iteration.
            eprintln!("afut: writing the wakeup eventfd failed: {}", io::Error::last_os_error());
        }
        true
    }

    pub(crate) fn is_signalled(&self) -> bool {
        self.signalled.is_raised()
    }

    /// Consumes a raised signal: drain the eventfd first, then clear the flag, so that a
    /// signal raised in between is never lost (its item is taken by the caller's next queue
    /// take, which happens after this returns).
    pub(crate) fn clear(&self) {
        if !self.signalled.is_raised() {
            return;
        }
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.event.as_raw_fd(), (&raw mut buf).cast(), 8) };
        self.signalled.lower();
    }

    /// Lowers the flag without touching the eventfd (a standalone loop about to sleep: from
    /// now on producers write again; the loop drains the eventfd only once a wait returned).
    pub(crate) fn lower(&self) {
        self.signalled.lower();
    }

    /// Reads the eventfd (after a wait returned), leaving the flag as it is.
    pub(crate) fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.event.as_raw_fd(), (&raw mut buf).cast(), 8) };
    }

    /// Blocks until the fd is readable or `timeout_ms` passes (-1: forever).
    pub(crate) fn wait(&self, timeout_ms: i32) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: one event slot, owned epoll fd; EINTR and timeouts are fine (the caller
        // re-examines its queue either way).
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), &mut ev, 1, timeout_ms) };
    }

    /// Arms the timerfd for `when` (loop clock), or disarms it for `None`. No system call
    /// when the armed deadline is unchanged.
    pub(crate) fn arm_timer(&self, when: Option<f64>) {
        let when = when.unwrap_or(f64::INFINITY);
        if self.armed.swap(when.to_bits(), Ordering::AcqRel) == when.to_bits() {
            return;
        }
        let mut spec: libc::itimerspec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        // Every deadline but "never" arms it: one in the past (down to -INFINITY) is due now,
        // and fires at once.
        if when != f64::INFINITY {
            let delta = (when - clock::now()).clamp(1e-9, 86_400.0 * 365.0);
            spec.it_value.tv_sec = delta.trunc() as libc::time_t;
            spec.it_value.tv_nsec = ((delta.fract() * 1e9) as libc::c_long).max(1);
        }
        // SAFETY: our own timerfd and a fully initialised itimerspec; a zero it_value disarms.
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// The deadline the timerfd is armed for.
    pub(crate) fn armed_deadline(&self) -> f64 {
        f64::from_bits(self.armed.load(Ordering::Acquire))
    }

    /// Clears an expired timerfd so it stops being readable, and forgets the deadline.
    ///
    /// The loop runs a timer once the clock reached its deadline, which may be a moment
    /// before the kernel timer expires. Then the read finds nothing, and the timerfd is
    /// disarmed here: left armed, it would expire later and stay readable on an idle loop
    /// whose recorded deadline says "never", and a level-triggered host would spin.
    pub(crate) fn consume_timer(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking timerfd.
        let n = unsafe { libc::read(self.timer.as_raw_fd(), (&raw mut buf).cast(), 8) };
        if n != 8 {
            let off = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            };
            // SAFETY: our own timerfd and a fully initialised itimerspec; zero disarms it.
            unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &off, std::ptr::null_mut()) };
        }
        self.armed.store(f64::INFINITY.to_bits(), Ordering::Release);
    }
}

/// True when `fd` is readable right now (a zero-timeout poll).
#[cfg(test)]
pub(crate) fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_is_coalesced_and_cleared() {
        let w = Wakeup::new().unwrap();
        assert!(!readable(w.fd()));
        assert!(w.signal());
        assert!(!w.signal());
        assert!(readable(w.fd()));
        w.clear();
        assert!(!readable(w.fd()));
        assert!(!w.is_signalled());
    }

    #[test]
    fn timer_makes_fd_readable() {
        let w = Wakeup::new().unwrap();
        w.arm_timer(Some(clock::now() + 0.005));
        assert!(!readable(w.fd()));
        w.wait(1000);
        assert!(readable(w.fd()));
        w.consume_timer();
        assert!(!readable(w.fd()));
    }
}
