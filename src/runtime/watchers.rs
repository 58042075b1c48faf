//! fd watchers: asyncio's `add_reader` / `add_writer` / `remove_reader` / `remove_writer`.
//!
//! One reader and one writer per fd, in a table keyed by the fd, each fd registered once in
//! the loop's poller ([`Wakeup`]) with the union of their interests, level-triggered. Each
//! registration is an `Arc<Watcher>`: the table holds one reference, a queued
//! [`Item::Io`](super::eventloop) another, a running callback a third. Removing or replacing a
//! watcher marks it dead, so that a callback already queued for this iteration is skipped
//! (asyncio's `handle.cancel()`), and drops the table's reference; its userdata is freed when
//! the last reference goes: during the call, after the batch that had it queued, or when its own
//! callback (which removed it) returns.
//!
//! An iteration asks the poller which watched fds are ready (with the wait, or with a zero
//! timeout when it does not wait), and queues the reader then the writer of each ready fd after
//! what was already ready and before the timers that came due: asyncio's `_run_once` order.
//!
//! Locking: `table` is held to read or change the table and to (de)register the fd in the
//! poller, never while C code runs. The loop takes it inside `sched` (to queue the ready ones);
//! nothing takes `sched` inside it. Every function that removes watchers hands them back, to
//! be dropped (their userdata freed) by the caller once no lock is held.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::*;
use crate::callback::{Hook, Owned};
use crate::lock::Mutex;
use crate::runtime::wakeup::Wakeup;

/// One registration: a C callback and its userdata (freed when the last reference goes).
pub(crate) struct Watcher {
    hook: Hook,
    live: AtomicBool,
}

impl Watcher {
    /// Runs the callback unless the watcher was removed or replaced since it was queued; true
    /// if it ran. (Removed from another thread at this very moment, it may still run once.)
    pub(crate) fn run(&self) -> bool {
        if !self.live.load(Ordering::Acquire) {
            return false;
        }
        self.hook.call();
        true
    }

    pub(crate) fn describe(&self) -> String {
        format!("<fd watcher {}>", self.hook.describe())
    }

    fn kill(&self) {
        self.live.store(false, Ordering::Release);
    }
}

/// Which of an fd's two watchers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Reader,
    Writer,
}

#[derive(Default)]
struct Slot {
    reader: Option<Arc<Watcher>>,
    writer: Option<Arc<Watcher>>,
}

impl Slot {
    fn get(&mut self, kind: Kind) -> &mut Option<Arc<Watcher>> {
        match kind {
            Kind::Reader => &mut self.reader,
            Kind::Writer => &mut self.writer,
        }
    }
}

#[derive(Default)]
struct Table {
    closed: bool,
    slots: HashMap<RawFd, Slot>,
}

/// A loop's watchers.
#[derive(Default)]
pub(crate) struct Watchers {
    table: Mutex<Table>,
}

/// A refused `add`: the status, the OS error for `AFUT_ERR_OS`, and the userdata back.
pub(crate) struct AddError {
    pub(crate) status: afut_status_t,
    pub(crate) errno: i32,
    pub(crate) data: Owned,
}

impl Watchers {
    /// Every watched fd with its interests (reader, writer), to register them anew in a fresh
    /// poller (after `fork`).
    pub(crate) fn interests(&self) -> Vec<(RawFd, bool, bool)> {
        let t = self.table.lock();
        t.slots.iter().map(|(&fd, s)| (fd, s.reader.is_some(), s.writer.is_some())).collect()
    }

    /// Queues the watchers of the fds the last collecting wait found ready: for each fd its
    /// reader (if readable), then its writer (if writable).
    pub(crate) fn dispatch(&self, wake: &Wakeup, mut push: impl FnMut(Arc<Watcher>)) {
        let t = self.table.lock();
        wake.take_ready(|r| {
            let Some(slot) = t.slots.get(&r.fd) else { return };
            if r.readable {
                if let Some(w) = &slot.reader {
                    push(w.clone());
                }
            }
            if r.writable {
                if let Some(w) = &slot.writer {
                    push(w.clone());
                }
            }
        });
    }
}

impl Watchers {
    /// `afut_loop_add_reader` / `add_writer`. On success, the watcher it replaced (to be dropped
    /// by the caller, with no lock held).
    pub(crate) fn add(
        &self,
        wake: &Wakeup,
        fd: RawFd,
        kind: Kind,
        func: CallbackFn,
        data: Owned,
    ) -> Result<Option<Arc<Watcher>>, AddError> {
        let refuse = |status, errno, data| Err(AddError { status, errno, data });
        if fd < 0 {
            return refuse(AFUT_ERR_INVALID_ARGUMENT, 0, data);
        }
        if let Err(e) = Wakeup::check_pollable(fd) {
            return refuse(AFUT_ERR_OS, e.raw_os_error().unwrap_or(libc::EINVAL), data);
        }
        let mut t = self.table.lock();
        if t.closed {
            return refuse(AFUT_ERR_LOOP_CLOSED, 0, data);
        }
        let registered = match t.slots.get(&fd) {
            None => wake.register(fd, kind == Kind::Reader, kind == Kind::Writer),
            // Always re-registered, even for the same interest: the fd number may now be
            // another file (closed and reused without a remove), which the poller must learn.
            Some(s) => wake.reregister(
                fd,
                kind == Kind::Reader || s.reader.is_some(),
                kind == Kind::Writer || s.writer.is_some(),
            ),
        };
        if let Err(e) = registered {
            return refuse(AFUT_ERR_OS, e.raw_os_error().unwrap_or(libc::EINVAL), data);
        }
        let w = Arc::new(Watcher { hook: Hook::new(func, data), live: AtomicBool::new(true) });
        let old = t.slots.entry(fd).or_default().get(kind).replace(w);
        if let Some(o) = &old {
            o.kill();
        }
        Ok(old)
    }

    /// `afut_loop_remove_reader` / `remove_writer`: the removed watcher (to be dropped by the
    /// caller, with no lock held), if there was one.
    pub(crate) fn remove(&self, wake: &Wakeup, fd: RawFd, kind: Kind) -> Option<Arc<Watcher>> {
        if fd < 0 {
            return None;
        }
        let mut t = self.table.lock();
        let slot = t.slots.get_mut(&fd)?;
        let w = slot.get(kind).take()?;
        w.kill();
        let (r, wr) = (slot.reader.is_some(), slot.writer.is_some());
        if !r && !wr {
            t.slots.remove(&fd);
            wake.deregister(fd);
        } else {
            // Keeps the other watcher; an fd the application closed is gone from the poller
            // already, which is fine.
            let _ = wake.reregister(fd, r, wr);
        }
        Some(w)
    }

    /// Closing: every watcher is removed and handed back (dropped by the caller, with no lock
    /// held); from now on adds are refused.
    pub(crate) fn close(&self, wake: &Wakeup) -> Vec<Arc<Watcher>> {
        let mut t = self.table.lock();
        t.closed = true;
        let mut out = Vec::new();
        for (fd, slot) in t.slots.drain() {
            wake.deregister(fd);
            for w in [slot.reader, slot.writer].into_iter().flatten() {
                w.kill();
                out.push(w);
            }
        }
        out
    }
}
