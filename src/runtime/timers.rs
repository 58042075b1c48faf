//! Timers: a binary min-heap of deadlines, ties broken by scheduling order (FIFO).
//!
//! The callbacks themselves live in the [`HandleTable`]; the heap holds only
//! `(when, seq, handle)`. Cancelling a timer removes it from the table and leaves a dead
//! heap entry that is skipped when it reaches the top; when more than half of a large heap
//! is dead, it is rebuilt (asyncio's rule, SEMANTICS.md L4).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::runtime::handles::{Handle, HandleTable};

/// 24 bytes: the heap's cost is mostly moving entries around.
struct TimerEntry {
    /// The deadline as an integer with the same order (see [`order_key`]): one integer
    /// compare, and `when` is recovered from it.
    key: i64,
    seq: u64,
    handle: Handle,
}

/// Maps an `f64` to an `i64` with the same total order (`f64::total_cmp`'s transform).
fn order_key(when: f64) -> i64 {
    let bits = when.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The inverse of [`order_key`] (the transform is its own inverse).
fn when_of(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<TimerEntry>,
    next_seq: u64,
    dead: usize,
}

const COMPACT_MIN: usize = 100;

impl TimerHeap {
    pub(crate) fn push(&mut self, when: f64, handle: Handle) {
        let seq = self.next_seq;
        self.next_seq += 1;
        // `+ 0.0` turns -0.0 into +0.0: equal deadlines must get equal keys, so that they run
        // in the order they were scheduled.
        self.heap.push(TimerEntry { key: order_key(when + 0.0), seq, handle });
    }

    /// Records that one heap entry's handle was cancelled.
    pub(crate) fn note_cancelled(&mut self, handles: &HandleTable) {
        self.dead += 1;
        if self.heap.len() > COMPACT_MIN && self.dead * 2 > self.heap.len() {
            self.heap.retain(|e| handles.contains(e.handle));
            self.dead = 0;
        }
    }

    fn drop_dead_head(&mut self, handles: &HandleTable) {
        while let Some(top) = self.heap.peek() {
            if handles.contains(top.handle) {
                break;
            }
            self.heap.pop();
            self.dead = self.dead.saturating_sub(1);
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self, handles: &HandleTable) -> Option<f64> {
        self.drop_dead_head(handles);
        self.heap.peek().map(|e| when_of(e.key))
    }

    /// Pops every live timer due at `now` (deadline order, FIFO ties) into `out`.
    /// Dead entries due by then are dropped on the way (one look-up of the handle each).
    pub(crate) fn pop_due(&mut self, now: f64, handles: &mut HandleTable, mut out: impl FnMut(Handle)) {
        let now = order_key(now);
        while self.heap.peek().is_some_and(|top| top.key <= now) {
            let Some(e) = self.heap.pop() else { break };
            match handles.get_mut(e.handle) {
                Some(entry) => {
                    entry.is_timer = false;
                    out(e.handle);
                }
                None => self.dead = self.dead.saturating_sub(1),
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.dead = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::Callback;

    #[test]
    fn order_key_keeps_the_order_and_inverts() {
        let xs = [f64::NEG_INFINITY, -1e300, -2.5, -0.0, 0.0, 1e-300, 1.0, 3.5, 1e300, f64::INFINITY];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(when_of(order_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn deadline_order_with_fifo_ties() {
        let mut handles = HandleTable::default();
        let mut timers = TimerHeap::default();
        let mut expect: Vec<(f64, usize, u64)> = Vec::new();
        for i in 0..20 {
            let h = handles.insert(Callback::rust(|| {}), true);
            timers.push(if i % 2 == 0 { 5.0 } else { 1.0 }, h);
            expect.push((if i % 2 == 0 { 5.0 } else { 1.0 }, i, h));
        }
        expect.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out = Vec::new();
        timers.pop_due(10.0, &mut handles, |h| out.push(h));
        assert_eq!(out, expect.iter().map(|e| e.2).collect::<Vec<_>>());
    }

    #[test]
    fn cancelled_timers_are_skipped_and_compacted() {
        let mut handles = HandleTable::default();
        let mut timers = TimerHeap::default();
        let hs: Vec<_> = (0..300)
            .map(|i| {
                let h = handles.insert(Callback::rust(|| {}), true);
                timers.push(i as f64, h);
                h
            })
            .collect();
        for h in &hs[..200] {
            handles.remove(*h);
            timers.note_cancelled(&handles);
        }
        assert!(timers.len() < 300, "compacted");
        assert_eq!(timers.next_deadline(&handles), Some(200.0));
        let mut out = Vec::new();
        timers.pop_due(1e9, &mut handles, |h| out.push(h));
        assert_eq!(out.len(), 100);
    }

    fn timer(handles: &mut HandleTable, timers: &mut TimerHeap, when: f64) -> Handle {
        let h = handles.insert(Callback::rust(|| {}), true);
        timers.push(when, h);
        h
    }

    #[test]
    fn only_due_timers_pop_and_they_leave_the_timer_state() {
        let mut handles = HandleTable::default();
        let mut timers = TimerHeap::default();
        let soon = timer(&mut handles, &mut timers, 1.0);
        let later = timer(&mut handles, &mut timers, 2.0);
        let never = timer(&mut handles, &mut timers, f64::INFINITY);
        let past = timer(&mut handles, &mut timers, f64::NEG_INFINITY);
        assert_eq!(timers.next_deadline(&handles), Some(f64::NEG_INFINITY));
        let mut out = Vec::new();
        timers.pop_due(0.5, &mut handles, |h| out.push(h));
        assert_eq!(out, [past], "a past (even -inf) deadline is due, a future one is not");
        timers.pop_due(1.0, &mut handles, |h| out.push(h));
        assert_eq!(out, [past, soon], "due exactly at its deadline");
        assert!(!handles.get_mut(soon).unwrap().is_timer, "a popped timer is ready work now");
        assert!(handles.get_mut(later).unwrap().is_timer);
        timers.pop_due(f64::MAX, &mut handles, |h| out.push(h));
        assert_eq!(out, [past, soon, later], "INFINITY is never due");
        assert_eq!(timers.next_deadline(&handles), Some(f64::INFINITY));
        assert!(handles.contains(never));
        timers.clear();
        assert_eq!((timers.len(), timers.next_deadline(&handles)), (0, None));
    }

    #[test]
    fn a_cancelled_earliest_timer_is_skipped() {
        let mut handles = HandleTable::default();
        let mut timers = TimerHeap::default();
        let first = timer(&mut handles, &mut timers, 1.0);
        let second = timer(&mut handles, &mut timers, 2.0);
        assert!(handles.remove(first).is_some());
        timers.note_cancelled(&handles);
        assert_eq!(timers.len(), 2, "small heaps are not compacted: the dead entry stays");
        assert_eq!(timers.next_deadline(&handles), Some(2.0), "but it is never the next deadline");
        assert_eq!(timers.len(), 1, "and it is dropped once it reaches the top");
        let mut out = Vec::new();
        timers.pop_due(10.0, &mut handles, |h| out.push(h));
        assert_eq!(out, [second]);
    }

    #[test]
    fn a_reused_slot_does_not_revive_a_cancelled_timer() {
        let mut handles = HandleTable::default();
        let mut timers = TimerHeap::default();
        let old = timer(&mut handles, &mut timers, 1.0);
        assert!(handles.remove(old).is_some());
        timers.note_cancelled(&handles);
        // The slot is reused by a plain call_soon entry with a new generation.
        let reuse = handles.insert(Callback::rust(|| {}), false);
        assert_ne!(reuse, old);
        let mut out = Vec::new();
        timers.pop_due(10.0, &mut handles, |h| out.push(h));
        assert!(out.is_empty(), "the dead heap entry's handle is stale: {out:?}");
        assert!(handles.contains(reuse));
    }
}
