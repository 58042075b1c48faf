//! The loop's poller: the one pollable fd, the coalesced "there is work" signal, the timer fd
//! for hosts, and the fds that watchers watch (`afut_loop_add_reader` / `add_writer`).
//!
//! Built on the `polling` crate (epoll on Linux, kqueue on macOS and the BSDs, event ports on
//! illumos / Solaris, `poll()` elsewhere; `--cfg polling_test_poll_backend` forces `poll()`).
//! Every fd is registered level-triggered, with a key: a watched fd's key is the fd itself, the
//! loop's own fds have keys above every fd number.
//! - The signal: an eventfd on Linux, a pipe elsewhere, written only on the 0 -> 1 transition
//!   of the `signalled` flag (a cross-thread submission, or the loop telling a host that work is
//!   left after `run_once`). The data lives in the loop's queue; the fd only says "look". N
//!   signals before one dispatch give one readable state; every item queued before a signal is
//!   taken by a dispatch that starts after it, because the loop drains the signal fd, then
//!   clears the flag, then takes the queue.
//! - Linux only: a timerfd, armed to the earliest timer deadline once a host asked for the fd,
//!   so that a host that only watches the fd never misses a timer. Other platforms have no
//!   pollable timer: there the host must also wait no longer than `afut_loop_timeout_ms`.
//!
//! The fd handed to hosts (`afut_loop_fd`):
//! - pollers with an fd of their own (epoll, kqueue, event ports): that fd. It is readable while
//!   any registered fd is: the signal, the timer, a watched fd.
//! - `poll()`, which has none: the signal fd, plus a relay thread, started by the first
//!   `afut_loop_fd` call, that waits on the poller between the host's `run_once` calls and
//!   raises the signal when a watched fd (or the timer) is ready. Each `run_once` parks the relay
//!   first (the poller is then the loop thread's alone) and re-arms it at its end.
//!
//! On Linux with epoll the loop waits with `epoll_wait` on the poller's own fd and reads the keys
//! from the events (one system call per wait); `polling` registers, modifies and deletes. Every
//! other backend waits through `polling::Poller::wait`.
//!
//! This module is the only place that makes these system calls.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use parking_lot::Condvar;
use polling::{Event, Events, PollMode, Poller};

#[cfg(target_os = "linux")]
use crate::clock;
use crate::lock::Mutex;
use crate::runtime::queue::Flag;

/// Keys of the loop's own fds. A watched fd's key is the fd (a non-negative `c_int`), so every
/// key at or above `OWN_KEYS` is the loop's own.
const OWN_KEYS: usize = usize::MAX - 16;
const SIGNAL_KEY: usize = usize::MAX - 2;
#[cfg(target_os = "linux")]
const TIMER_KEY: usize = usize::MAX - 3;

/// A watched fd found ready by a wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) fd: RawFd,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// What the loop thread and the relay share: the poller and the loop's own fds.
struct Shared {
    poller: Poller,
    /// The signal's read end (Linux: the eventfd itself).
    signal_rx: OwnedFd,
    /// The signal's write end (a pipe's; Linux writes the eventfd).
    #[cfg(not(target_os = "linux"))]
    signal_tx: OwnedFd,
    #[cfg(target_os = "linux")]
    timer: OwnedFd,
    signalled: Flag,
    /// How many transitions of `signalled` wrote (or are about to write) the signal fd:
    /// counted before the write. With `Wakeup::consumed` it tells the loop that a write is
    /// still owed, see [`Wakeup::clear`].
    writes: AtomicU64,
}

/// The loop thread's wait buffers.
struct Buffers {
    #[cfg(afut_epoll)]
    raw: Vec<libc::epoll_event>,
    #[cfg(not(afut_epoll))]
    events: Events,
    /// The watched fds the last collecting wait found ready.
    ready: Vec<Ready>,
}

pub(crate) struct Wakeup {
    shared: Arc<Shared>,
    /// The deadline the timerfd is armed for (f64 bits), `INFINITY` when disarmed.
    armed: AtomicU64,
    /// How many watched fds are registered in the poller.
    watched: AtomicUsize,
    /// The last wait may have seen the signal fd readable (see [`Wakeup::drain`]).
    signal_seen: AtomicBool,
    /// How many signal writes the loop has read back (the loop thread's count; see `clear`).
    consumed: AtomicU64,
    buffers: Mutex<Buffers>,
    /// Pollers without an fd of their own, in host mode: see the module comment.
    relay: Mutex<Option<Relay>>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

#[cfg(target_os = "linux")]
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by a successful system call and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The poller's own fd, where the backend has one (`afut_poller_fd`, set by build.rs for the
/// platforms where `polling`'s `Poller` is `AsRawFd`).
#[cfg(afut_poller_fd)]
fn poller_fd(p: &Poller) -> Option<RawFd> {
    Some(p.as_raw_fd())
}

#[cfg(not(afut_poller_fd))]
fn poller_fd(_: &Poller) -> Option<RawFd> {
    None
}

/// The signal: an eventfd (read end == write end).
#[cfg(target_os = "linux")]
fn signal_fds() -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with constant arguments; the result is checked.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
}

/// The signal: a non-blocking, close-on-exec pipe (read end, write end).
#[cfg(not(target_os = "linux"))]
fn signal_fds() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two fds pipe() writes; the result is checked.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: both fds were just created by pipe() and nothing else owns them.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&rx, &tx] {
        // SAFETY: fcntl on our own open fds; results checked.
        unsafe {
            let fl = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
            check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK))?;
            check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))?;
        }
    }
    Ok((rx, tx))
}

/// Reads whatever the signal fd holds; returns how many writes that was (an eventfd's
/// counter, or a pipe's bytes: one per write).
fn drain_fd(fd: RawFd) -> u64 {
    let mut writes = 0;
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads at most 64 bytes into a live buffer from our own non-blocking fd.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return writes;
        }
        if cfg!(target_os = "linux") {
            // An eventfd reads as its 8-byte counter, and is empty after one read.
            return writes + u64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
        }
        writes += n as u64;
        if (n as usize) < buf.len() {
            return writes;
        }
    }
}

impl Shared {
    fn signal_write(&self) {
        let one: u64 = 1;
        #[cfg(target_os = "linux")]
        let (fd, len) = (self.signal_rx.as_raw_fd(), 8);
        #[cfg(not(target_os = "linux"))]
        let (fd, len) = (self.signal_tx.as_raw_fd(), 1);
        // SAFETY: writes `len` (<= 8) bytes from a live u64 to our own open fd.
        let n = unsafe { libc::write(fd, (&raw const one).cast(), len) };
        if n != len as isize {
            // Cannot happen short of a kernel bug: the fd is drained on every clear. Do not
            // swallow it (SEMANTICS.md B12); the flag stays set, so the loop still sees the
            // work on its next iteration.
            eprintln!("afut: writing the wakeup signal failed: {}", io::Error::last_os_error());
        }
    }

    fn signal(&self) -> bool {
        if !self.signalled.raise() {
            return false;
        }
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.signal_write();
        true
    }
}

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        let poller = Poller::new()?;
        #[cfg(target_os = "linux")]
        let signal_rx = signal_fds()?;
        #[cfg(not(target_os = "linux"))]
        let (signal_rx, signal_tx) = signal_fds()?;
        // SAFETY: the signal fd is ours and stays open (and registered) as long as the poller.
        unsafe { poller.add_with_mode(&signal_rx, Event::readable(SIGNAL_KEY), PollMode::Level)? };
        #[cfg(target_os = "linux")]
        let timer = {
            // SAFETY: a plain system call with constant arguments; the result is checked.
            let timer =
                owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) })?;
            // SAFETY: as for the signal fd.
            unsafe { poller.add_with_mode(&timer, Event::readable(TIMER_KEY), PollMode::Level)? };
            timer
        };
        Ok(Wakeup {
            shared: Arc::new(Shared {
                poller,
                signal_rx,
                #[cfg(not(target_os = "linux"))]
                signal_tx,
                #[cfg(target_os = "linux")]
                timer,
                signalled: Flag::default(),
                writes: AtomicU64::new(0),
            }),
            armed: AtomicU64::new(f64::INFINITY.to_bits()),
            watched: AtomicUsize::new(0),
            signal_seen: AtomicBool::new(true),
            consumed: AtomicU64::new(0),
            buffers: Mutex::new(Buffers {
                #[cfg(afut_epoll)]
                raw: Vec::new(),
                #[cfg(not(afut_epoll))]
                events: Events::new(),
                ready: Vec::new(),
            }),
            relay: Mutex::new(None),
        })
    }

    /// The pollable fd handed to hosts (see the module comment).
    pub(crate) fn fd(&self) -> RawFd {
        poller_fd(&self.shared.poller).unwrap_or(self.shared.signal_rx.as_raw_fd())
    }

    /// True where the poller has an fd of its own (no relay thread behind the host fd).
    pub(crate) fn has_own_fd(&self) -> bool {
        poller_fd(&self.shared.poller).is_some()
    }

    /// Raises the signal. True if this call made the idle -> signalled transition (and so
    /// wrote the signal fd); false if it was already signalled (coalesced).
    pub(crate) fn signal(&self) -> bool {
        self.shared.signal()
    }

    pub(crate) fn is_signalled(&self) -> bool {
        self.shared.signalled.is_raised()
    }

    /// Reads the signal fd and counts what it held.
    fn drain_signal(&self) {
        let n = drain_fd(self.shared.signal_rx.as_raw_fd());
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    /// Consumes a raised signal: drain the signal fd first, then clear the flag, so that a
    /// signal raised in between is never lost (its item is taken by the caller's next queue
    /// take, which happens after this returns).
    ///
    /// A producer raises the flag, then writes. A clear that runs between the two finds the
    /// fd empty and lowers the flag, and the write then lands on a lowered flag: a readable fd
    /// that no flag accounts for, on which a level-triggered host would spin. So the clear
    /// also drains whenever fewer writes were read back than producers have counted (they
    /// count before writing): such a late write is read by the next clear, the one its own
    /// readiness makes the host call.
    pub(crate) fn clear(&self) {
        let owed = self.shared.writes.load(Ordering::Acquire) > self.consumed.load(Ordering::Relaxed);
        if !self.shared.signalled.is_raised() && !owed {
            return;
        }
        self.drain_signal();
        self.shared.signalled.lower();
    }

    /// Lowers the flag without touching the signal fd (a standalone loop about to sleep: from
    /// now on producers write again; the loop drains the fd only once a wait returned).
    pub(crate) fn lower(&self) {
        self.shared.signalled.lower();
    }

    /// Reads the signal fd (after a wait returned), leaving the flag as it is; skipped when the
    /// wait saw all that was ready and the signal fd was not among it (a watched fd or the
    /// timer woke it), which saves a read per I/O wakeup.
    pub(crate) fn drain(&self) {
        if self.signal_seen.load(Ordering::Relaxed) {
            self.drain_signal();
        }
    }

    /// True while fds are watched: every iteration then asks the poller what is ready.
    pub(crate) fn watching(&self) -> bool {
        self.watched.load(Ordering::Acquire) > 0
    }

    /// Blocks until something registered is ready or `timeout_ms` passes (-1: forever, 0: just
    /// look). With `collect`, the watched fds found ready are kept for [`Wakeup::take_ready`];
    /// returns whether they were.
    pub(crate) fn wait(&self, timeout_ms: i32, collect: bool) -> bool {
        let mut b = self.buffers.lock();
        b.ready.clear();
        self.wait_poller(&mut b, timeout_ms, collect);
        collect
    }

    /// Hands the watched fds the last collecting wait found ready to `f`, and forgets them.
    pub(crate) fn take_ready(&self, mut f: impl FnMut(Ready)) {
        let mut b = self.buffers.lock();
        for r in b.ready.drain(..) {
            f(r);
        }
    }

    /// Linux epoll: `epoll_wait` on the poller's fd, keys read from the events.
    #[cfg(afut_epoll)]
    fn wait_poller(&self, b: &mut Buffers, timeout_ms: i32, collect: bool) {
        let epfd = self.shared.poller.as_raw_fd();
        // Room for every watched fd, so that one wait sees all that are ready (asyncio's
        // select() returns them all), plus the loop's own.
        let cap = if collect { self.watched.load(Ordering::Acquire) + 4 } else { 1 };
        if b.raw.len() < cap {
            b.raw.resize(cap, libc::epoll_event { events: 0, u64: 0 });
        }
        // SAFETY: `raw` has at least `cap` initialised slots; the epoll fd is the poller's, open
        // as long as `self`. EINTR and timeouts are fine (the caller re-examines its queue).
        let n = unsafe { libc::epoll_wait(epfd, b.raw.as_mut_ptr(), cap as libc::c_int, timeout_ms) };
        let n = n.max(0) as usize;
        // Unsure (a full buffer may have left it out) unless every ready fd fitted.
        let mut seen = n == cap;
        if !collect {
            self.signal_seen.store(n > 0, Ordering::Relaxed);
            return;
        }
        let Buffers { raw, ready } = b;
        for ev in &raw[..n] {
            // polling registers each fd with its key as the event's data (checked by the test
            // `watched_fds_come_back_with_their_keys`).
            let (key, flags) = (ev.u64 as usize, ev.events as libc::c_int);
            if key >= OWN_KEYS {
                seen |= key == SIGNAL_KEY;
                continue;
            }
            let err = libc::EPOLLHUP | libc::EPOLLERR;
            ready.push(Ready {
                fd: key as RawFd,
                readable: flags & (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | err) != 0,
                writable: flags & (libc::EPOLLOUT | err) != 0,
            });
        }
        self.signal_seen.store(seen, Ordering::Relaxed);
    }

    /// Every other backend: `polling::Poller::wait`.
    #[cfg(not(afut_epoll))]
    fn wait_poller(&self, b: &mut Buffers, timeout_ms: i32, collect: bool) {
        let watched = self.watched.load(Ordering::Acquire);
        if b.events.capacity().get() < watched + 4 {
            b.events =
                Events::with_capacity(std::num::NonZeroUsize::new(watched + 4).unwrap_or(std::num::NonZeroUsize::MIN));
        }
        b.events.clear();
        let timeout = (timeout_ms >= 0).then(|| std::time::Duration::from_millis(timeout_ms as u64));
        // Errors (EINTR is retried inside) leave the events empty: the caller re-examines its
        // queue either way.
        let _ = self.shared.poller.wait(&mut b.events, timeout);
        // Unsure (a full buffer may have left it out) unless every ready fd fitted.
        let seen = b.events.len() >= b.events.capacity().get() || b.events.iter().any(|e| e.key == SIGNAL_KEY);
        self.signal_seen.store(seen, Ordering::Relaxed);
        if !collect {
            return;
        }
        let Buffers { events, ready } = b;
        for ev in events.iter() {
            if ev.key >= OWN_KEYS {
                continue;
            }
            // An event that is neither (poll()'s POLLNVAL: the application closed a watched fd)
            // wakes both watchers, as asyncio's PollSelector reports it, instead of spinning.
            let neither = !ev.readable && !ev.writable;
            ready.push(Ready {
                fd: ev.key as RawFd,
                readable: ev.readable || neither,
                writable: ev.writable || neither,
            });
        }
    }

    /// Arms the timerfd for `when` (loop clock), or disarms it for `None`. No system call
    /// when the armed deadline is unchanged. Without a timerfd (not Linux) only the deadline is
    /// remembered: hosts there honour `afut_loop_timeout_ms`.
    pub(crate) fn arm_timer(&self, when: Option<f64>) {
        let when = when.unwrap_or(f64::INFINITY);
        if self.armed.swap(when.to_bits(), Ordering::AcqRel) == when.to_bits() {
            return;
        }
        if when != f64::INFINITY && poller_fd(&self.shared.poller).is_none() && when <= crate::clock::now() {
            // Due already: that is work now. Behind a relay the timerfd would make the host's
            // fd readable only after a thread switch; raise the signal at once instead.
            self.shared.signal();
        }
        #[cfg(target_os = "linux")]
        {
            let mut spec: libc::itimerspec = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            };
            // Every deadline but "never" arms it: one in the past (down to -INFINITY) is due
            // now, and fires at once.
            if when != f64::INFINITY {
                let delta = (when - clock::now()).clamp(1e-9, 86_400.0 * 365.0);
                spec.it_value.tv_sec = delta.trunc() as libc::time_t;
                spec.it_value.tv_nsec = ((delta.fract() * 1e9) as libc::c_long).max(1);
            }
            // SAFETY: our own timerfd and a fully initialised itimerspec; a zero it_value
            // disarms.
            unsafe { libc::timerfd_settime(self.shared.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        }
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
        #[cfg(target_os = "linux")]
        {
            let mut buf: u64 = 0;
            let timer = self.shared.timer.as_raw_fd();
            // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking timerfd.
            let n = unsafe { libc::read(timer, (&raw mut buf).cast(), 8) };
            if n != 8 {
                let off = libc::itimerspec {
                    it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                    it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                };
                // SAFETY: our own timerfd and a fully initialised itimerspec; zero disarms it.
                unsafe { libc::timerfd_settime(timer, 0, &off, std::ptr::null_mut()) };
            }
        }
        self.armed.store(f64::INFINITY.to_bits(), Ordering::Release);
    }

    /// After `fork()`, in the child: the poller, the signal fd and the timer fd are kernel
    /// objects the child shares with its parent (a write or a read in one is seen by the other).
    /// This creates fresh ones and puts them behind the same fd numbers (`dup3`), so that the
    /// fd a host watches stays the same, then registers the signal, the timer and every
    /// watched fd (`interests`) in the fresh poller. The timer is left disarmed and the signal
    /// lowered: the caller re-arms and re-signals from the loop's own state.
    ///
    /// Only where the poller is a kernel object of its own the loop can wait on directly
    /// (Linux epoll); elsewhere `Unsupported`.
    #[cfg(afut_epoll)]
    pub(crate) fn renew_after_fork(&self, interests: &[(RawFd, bool, bool)]) -> io::Result<()> {
        fn replace(fresh: libc::c_int, old: RawFd) -> io::Result<()> {
            let fresh = owned(fresh)?;
            // SAFETY: both fds are open; dup3 atomically makes `old` refer to the fresh object
            // (closing the inherited one in this process only); `fresh` is then closed.
            check(unsafe { libc::dup3(fresh.as_raw_fd(), old, libc::O_CLOEXEC) })?;
            Ok(())
        }
        let sh = &self.shared;
        // SAFETY: plain system calls with constant arguments; each result is checked.
        replace(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, sh.poller.as_raw_fd())?;
        // SAFETY: as above.
        replace(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) }, sh.signal_rx.as_raw_fd())?;
        replace(
            // SAFETY: as above.
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) },
            sh.timer.as_raw_fd(),
        )?;
        // SAFETY: the signal and timer fds are ours and stay open as long as the poller.
        unsafe {
            sh.poller.add_with_mode(&sh.signal_rx, Event::readable(SIGNAL_KEY), PollMode::Level)?;
            sh.poller.add_with_mode(&sh.timer, Event::readable(TIMER_KEY), PollMode::Level)?;
        }
        for &(fd, readable, writable) in interests {
            // SAFETY: as in `register`: the application keeps its watched fds open.
            unsafe { sh.poller.add_with_mode(fd, Event::new(fd as usize, readable, writable), PollMode::Level)? };
        }
        sh.signalled.lower();
        sh.writes.store(0, Ordering::Release);
        self.consumed.store(0, Ordering::Relaxed);
        self.armed.store(f64::INFINITY.to_bits(), Ordering::Release);
        self.signal_seen.store(true, Ordering::Relaxed);
        Ok(())
    }

    #[cfg(not(afut_epoll))]
    pub(crate) fn renew_after_fork(&self, _interests: &[(RawFd, bool, bool)]) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    // ----- watched fds -----

    /// Whether `fd` may be watched: open (else EBADF), and not a regular file or a directory
    /// (EPERM, what epoll answers for them; every backend refuses them alike, while `poll()` and
    /// kqueue would call them always ready).
    pub(crate) fn check_pollable(fd: RawFd) -> io::Result<()> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes a `struct stat` into the live buffer; the result is checked.
        check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
        // SAFETY: fstat succeeded, so it initialised the buffer.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        if mode == libc::S_IFREG || mode == libc::S_IFDIR {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    /// Registers `fd` (not yet registered) with the given interest.
    pub(crate) fn register(&self, fd: RawFd, readable: bool, writable: bool) -> io::Result<()> {
        // SAFETY: `add_with_mode` requires the fd to stay valid until it is deleted: the
        // application promised that by watching it, and a watched fd it closes anyway is one
        // the kernel drops from epoll / kqueue and `poll()` reports as invalid (POLLNVAL),
        // neither of which touches memory.
        unsafe { self.shared.poller.add_with_mode(fd, Event::new(fd as usize, readable, writable), PollMode::Level)? };
        self.watched.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Changes the interest of a registered `fd`. An fd number the kernel no longer knows in
    /// the poller (the application closed it and opened another file under the same number)
    /// is registered anew.
    pub(crate) fn reregister(&self, fd: RawFd, readable: bool, writable: bool) -> io::Result<()> {
        let ev = Event::new(fd as usize, readable, writable);
        // SAFETY: the fd number is only handed to the kernel (see `register`).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match self.shared.poller.modify_with_mode(borrowed, ev, PollMode::Level) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: as in `register`.
                unsafe { self.shared.poller.add_with_mode(fd, ev, PollMode::Level) }
            }
            r => r,
        }
    }

    /// Deletes a registered `fd` (errors ignored: a closed fd is already gone from the kernel's
    /// side).
    pub(crate) fn deregister(&self, fd: RawFd) {
        // SAFETY: the fd number is only handed to the kernel (see `register`).
        let _ = self.shared.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        self.watched.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether the host's fd is readable right now (a zero-timeout poll): after an iteration
    /// that dispatched watchers, whose fds may still be ready, this gives edge-triggered hosts a
    /// fresh edge (an `epoll_wait` on the poller does not). Pollers with a relay report through
    /// it instead: false.
    pub(crate) fn poller_ready(&self) -> bool {
        let Some(fd) = poller_fd(&self.shared.poller) else { return false };
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    // ----- the relay (pollers without an fd of their own, host mode) -----

    /// Host mode begins: on a poller without an fd of its own, start the relay (once). It
    /// starts parked; `arm` (when the loop is not running) lets it watch at once.
    pub(crate) fn enter_host_mode(&self, arm: bool) {
        if poller_fd(&self.shared.poller).is_some() {
            return;
        }
        let mut relay = self.relay.lock();
        if relay.is_none() {
            match Relay::start(self.shared.clone()) {
                Ok(r) => *relay = Some(r),
                Err(e) => {
                    eprintln!(
                        "afut: starting the host fd's relay thread failed ({e}): watched fds will not wake the host"
                    );
                    return;
                }
            }
        }
        if arm {
            if let Some(r) = relay.as_ref() {
                r.ctl.arm();
            }
        }
    }

    /// At the start of each iteration: the relay leaves the poller to the loop thread.
    pub(crate) fn park_relay(&self) {
        if let Some(r) = self.relay.lock().as_ref() {
            r.ctl.park(&self.shared);
        }
    }

    /// At the end of a host-mode iteration: the relay watches again until the next one.
    pub(crate) fn arm_relay(&self) {
        if let Some(r) = self.relay.lock().as_ref() {
            r.ctl.arm();
        }
    }

    /// Stops the relay thread, if any (the loop is being freed).
    pub(crate) fn stop_relay(&self) {
        let relay = self.relay.lock().take();
        if let Some(r) = relay {
            r.stop(&self.shared);
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        self.stop_relay();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RelayState {
    /// Not waiting: the loop thread runs an iteration (or the host has work to collect).
    Parked,
    /// Allowed to wait on the poller.
    Armed,
    /// Waiting on the poller.
    Polling,
    /// The loop thread wants the poller back.
    ParkRequested,
    Stop,
}

struct RelayCtl {
    state: Mutex<RelayState>,
    cv: Condvar,
}

impl RelayCtl {
    fn arm(&self) {
        let mut st = self.state.lock();
        if *st == RelayState::Parked {
            *st = RelayState::Armed;
            self.cv.notify_all();
        }
    }

    /// Returns once the relay is not waiting on the poller.
    fn park(&self, shared: &Shared) {
        let mut st = self.state.lock();
        loop {
            match *st {
                RelayState::Parked | RelayState::Stop => return,
                RelayState::Armed => {
                    *st = RelayState::Parked;
                    return;
                }
                RelayState::Polling => {
                    *st = RelayState::ParkRequested;
                    // Wakes its wait (or the next one, if it is about to start) through the
                    // signal fd, which it always watches: one more write, counted, so that the
                    // iteration's `clear` right after this park reads it back (the host sees no
                    // extra readiness once `run_once` is done). Not `Poller::notify`: on
                    // polling's `poll()` backend (3.11) a notify that races the waiter's own
                    // check of the notification (the flag set, the pipe byte not yet written)
                    // makes that wait fail with EAGAIN, which leaves `Poller`'s notified flag set
                    // for good: every later notify is skipped, and this park waited for ever.
                    Self::wake(shared);
                }
                RelayState::ParkRequested => self.cv.wait(st.raw()),
            }
        }
    }

    /// Wakes the relay's wait through the signal fd (see `park`).
    fn wake(shared: &Shared) {
        shared.writes.fetch_add(1, Ordering::AcqRel);
        shared.signal_write();
    }
}

struct Relay {
    ctl: Arc<RelayCtl>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(shared: Arc<Shared>) -> io::Result<Relay> {
        let ctl = Arc::new(RelayCtl { state: Mutex::new(RelayState::Parked), cv: Condvar::new() });
        let c = ctl.clone();
        let thread = std::thread::Builder::new().name("afut-relay".into()).spawn(move || relay_main(&shared, &c))?;
        Ok(Relay { ctl, thread: Some(thread) })
    }

    fn stop(mut self, shared: &Shared) {
        *self.ctl.state.lock() = RelayState::Stop;
        self.ctl.cv.notify_all();
        // Through the signal, as `RelayCtl::park` does (the loop is going: nobody reads the
        // signal any more).
        RelayCtl::wake(shared);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The relay thread: while armed, waits on the poller; a ready watched fd (or timer) raises
/// the signal, which makes the host's fd readable; then it parks until the next iteration ends.
fn relay_main(shared: &Shared, ctl: &RelayCtl) {
    let mut events = Events::new();
    loop {
        {
            let mut st = ctl.state.lock();
            loop {
                match *st {
                    RelayState::Stop => return,
                    RelayState::Parked => ctl.cv.wait(st.raw()),
                    RelayState::ParkRequested => {
                        *st = RelayState::Parked;
                        ctl.cv.notify_all();
                    }
                    RelayState::Armed | RelayState::Polling => break,
                }
            }
            *st = RelayState::Polling;
        }
        events.clear();
        let _ = shared.poller.wait(&mut events, None);
        let work = events.iter().any(|e| e.key != SIGNAL_KEY);
        let mut st = ctl.state.lock();
        match *st {
            RelayState::Stop => return,
            RelayState::ParkRequested => {
                // The loop thread takes over and polls for itself.
                *st = RelayState::Parked;
                ctl.cv.notify_all();
            }
            _ if events.is_empty() => *st = RelayState::Armed, // a stale notification: wait again
            _ => {
                if work {
                    shared.signal();
                }
                // Ready (the signal fd included): park until the host's next run_once.
                *st = RelayState::Parked;
                ctl.cv.notify_all();
            }
        }
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
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_flag_reports_only_the_raising_transition() {
        let f = Flag::default();
        assert!(!f.is_raised());
        assert!(f.raise(), "the first raise makes the transition");
        assert!(!f.raise(), "a raised flag coalesces");
        assert!(f.is_raised());
        f.lower();
        assert!(!f.is_raised());
        assert!(f.raise(), "after a lower, the next raise is a transition again");
        f.lower();
        f.lower();
        assert!(!f.is_raised(), "lowering is idempotent");
    }

    /// Many producers raise at once: exactly one of them sees the transition (and would write
    /// the signal fd), whatever the interleaving. Run under Miri, this also checks the atomics
    /// for data races.
    #[test]
    fn concurrent_raises_make_exactly_one_transition() {
        let rounds = if cfg!(miri) { 3 } else { 200 };
        for _ in 0..rounds {
            let flag = Arc::new(Flag::default());
            let transitions = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (flag, transitions) = (flag.clone(), transitions.clone());
                    std::thread::spawn(move || {
                        if flag.raise() {
                            transitions.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(transitions.load(Ordering::Relaxed), 1);
            assert!(flag.is_raised());
        }
    }

    /// The consumer lowers while a producer raises: every raise that finds the flag lowered is
    /// a transition (the one that writes the signal fd), so none is lost or doubled.
    #[test]
    fn a_raise_after_a_lower_is_never_lost() {
        let flag = Arc::new(Flag::default());
        let n = if cfg!(miri) { 20 } else { 10_000 };
        let producer = {
            let flag = flag.clone();
            std::thread::spawn(move || (0..n).filter(|_| flag.raise()).count())
        };
        let mut lowered = 0;
        while !producer.is_finished() {
            if flag.is_raised() {
                flag.lower();
                lowered += 1;
            }
            std::thread::yield_now();
        }
        let transitions = producer.join().unwrap();
        assert!(transitions >= 1 && transitions <= n);
        assert!(transitions == lowered || transitions == lowered + 1, "{transitions} transitions, {lowered} lowerings");
    }

    /// A write that lands after the clear that lowered its flag (the producer was preempted
    /// between raising and writing) is read by the next clear: the fd does not stay readable.
    #[test]
    #[cfg_attr(miri, ignore = "eventfd, epoll and timerfd system calls")]
    fn a_late_write_is_read_by_the_next_clear() {
        let w = Wakeup::new().unwrap();
        w.enter_host_mode(true);
        // The producer's raise and count, without its write yet.
        assert!(w.shared.signalled.raise());
        w.shared.writes.fetch_add(1, Ordering::AcqRel);
        w.park_relay();
        w.clear(); // finds nothing to read, lowers the flag
        assert!(!w.is_signalled());
        // The write lands now, on a lowered flag.
        w.shared.signal_write();
        assert!(readable(w.fd()));
        w.park_relay();
        w.clear();
        assert!(!readable(w.fd()), "the late write was read back");
        // And from then on a clear with nothing raised or owed makes no system call.
        assert_eq!(w.consumed.load(Ordering::Relaxed), w.shared.writes.load(Ordering::Relaxed));
    }

    #[test]
    #[cfg_attr(miri, ignore = "eventfd, epoll and timerfd system calls")]
    fn signal_is_coalesced_and_cleared() {
        let w = Wakeup::new().unwrap();
        w.enter_host_mode(true);
        assert!(!readable(w.fd()));
        assert!(w.signal());
        assert!(!w.signal());
        assert!(readable(w.fd()));
        w.park_relay();
        w.clear();
        assert!(!readable(w.fd()));
        assert!(!w.is_signalled());
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[cfg_attr(miri, ignore = "system calls Miri cannot run")]
    fn timer_makes_fd_readable() {
        let w = Wakeup::new().unwrap();
        w.arm_timer(Some(clock::now() + 0.005));
        assert!(!readable(w.fd()));
        w.wait(1000, false);
        w.enter_host_mode(true);
        let mut p = libc::pollfd { fd: w.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 1000) }, 1);
        w.park_relay();
        w.clear();
        w.consume_timer();
        assert!(!readable(w.fd()));
    }

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut sv = [0 as libc::c_int; 2];
        // SAFETY: `sv` has room for the two fds; checked.
        check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }).unwrap();
        // SAFETY: fresh fds owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
    }

    /// The epoll fast path reads polling's keys straight from `epoll_event.data`: this fails if
    /// a `polling` release registers fds differently.
    #[test]
    #[cfg_attr(miri, ignore = "system calls Miri cannot run")]
    fn watched_fds_come_back_with_their_keys() {
        let w = Wakeup::new().unwrap();
        let (a, b) = socketpair();
        w.register(a.as_raw_fd(), true, false).unwrap();
        assert!(w.watching());
        assert!(w.wait(0, true));
        let mut got = Vec::new();
        w.take_ready(|r| got.push(r.fd));
        assert!(got.is_empty());
        // SAFETY: writes one byte from a live buffer to our own socket.
        assert_eq!(unsafe { libc::write(b.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
        w.wait(1000, true);
        w.take_ready(|r| got.push(r.fd));
        assert_eq!(got, vec![a.as_raw_fd()]);
        w.reregister(a.as_raw_fd(), false, true).unwrap();
        w.wait(1000, true);
        let mut writable = false;
        w.take_ready(|r| writable |= r.fd == a.as_raw_fd() && r.writable);
        assert!(writable);
        w.deregister(a.as_raw_fd());
        assert!(!w.watching());
    }

    #[test]
    #[cfg_attr(miri, ignore = "system calls Miri cannot run")]
    fn regular_files_and_closed_fds_are_refused() {
        let f = std::fs::File::open("Cargo.toml").unwrap();
        assert_eq!(Wakeup::check_pollable(f.as_raw_fd()).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(Wakeup::check_pollable(-1).unwrap_err().raw_os_error(), Some(libc::EBADF));
        let (a, _b) = socketpair();
        assert!(Wakeup::check_pollable(a.as_raw_fd()).is_ok());
    }

    /// The loop thread takes the poller back from the relay at every host-mode iteration and
    /// hands it back at the end, parking at varied moments of the relay's way into its wait;
    /// now and then the signal is raised meanwhile. Every park must return: one waiting for a
    /// wake-up the relay never gets hangs the host's `run_once` for ever (as `Poller::notify`
    /// did on the `poll()` backend, see `RelayCtl::park`: without its fix this hung in 2 of 3
    /// runs). The other backends have no relay: there it only checks the signal. A park taking
    /// over 10 s fails; nothing else is timed.
    #[test]
    #[cfg_attr(miri, ignore = "system calls Miri cannot run")]
    fn relay_hand_overs_never_hang() {
        let w = Arc::new(Wakeup::new().unwrap());
        w.enter_host_mode(true);
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let rounds = 200_000;
        let worker = {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    w.park_relay();
                    w.clear();
                    if i % 7 == 0 {
                        w.signal();
                    }
                    w.arm_relay();
                    for _ in 0..(i * 7919) % 2000 {
                        std::hint::spin_loop();
                    }
                    if i % 1000 == 0 && tx.send(i).is_err() {
                        return;
                    }
                }
                let _ = tx.send(rounds);
            })
        };
        let mut last = 0;
        while last < rounds {
            match rx.recv_timeout(std::time::Duration::from_secs(10)) {
                Ok(i) => last = i,
                Err(e) => panic!("a relay hand-over hung after {last} of {rounds} rounds ({e:?})"),
            }
        }
        worker.join().unwrap();
        w.park_relay();
        w.clear();
        assert!(!readable(w.fd()), "every wake-up of the relay was read back");
    }
}
