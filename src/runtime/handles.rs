//! Handles: the table of scheduled callbacks (`call_soon`, `call_later`, `call_at`).
//!
//! A handle is `generation << 32 | slot`. Generations start at 1, so a handle is never 0,
//! and a slot's generation changes each time it is freed, so a stale handle (already run or
//! cancelled) never matches the slot's next occupant.

use crate::callback::Callback;

pub(crate) type Handle = u64;

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

pub(crate) struct Entry {
    pub(crate) callback: Callback,
    /// True while the callback sits in the timer heap (not yet moved to the ready queue).
    pub(crate) is_timer: bool,
}

#[derive(Default)]
pub(crate) struct HandleTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

fn split(handle: Handle) -> (u32, usize) {
    ((handle >> 32) as u32, (handle & 0xffff_ffff) as usize)
}

impl HandleTable {
    pub(crate) fn insert(&mut self, callback: Callback, is_timer: bool) -> Handle {
        let entry = Some(Entry { callback, is_timer });
        self.live += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].entry = entry;
                i
            }
            None => {
                self.slots.push(Slot { generation: 1, entry });
                (self.slots.len() - 1) as u32
            }
        };
        ((self.slots[index as usize].generation as u64) << 32) | index as u64
    }

    fn slot_mut(&mut self, handle: Handle) -> Option<&mut Slot> {
        let (generation, index) = split(handle);
        self.slots.get_mut(index).filter(|s| s.generation == generation && s.entry.is_some())
    }

    pub(crate) fn contains(&self, handle: Handle) -> bool {
        let (generation, index) = split(handle);
        self.slots.get(index).is_some_and(|s| s.generation == generation && s.entry.is_some())
    }

    pub(crate) fn get_mut(&mut self, handle: Handle) -> Option<&mut Entry> {
        self.slot_mut(handle)?.entry.as_mut()
    }

    /// Takes the entry out; the handle is dead from then on.
    pub(crate) fn remove(&mut self, handle: Handle) -> Option<Entry> {
        let slot = self.slot_mut(handle)?;
        let entry = slot.entry.take();
        slot.generation = slot.generation.wrapping_add(1).max(1);
        let (_, index) = split(handle);
        self.free.push(index as u32);
        self.live -= 1;
        entry
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Empties the table, returning every entry (to be dropped outside any lock).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.live);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(e) = slot.entry.take() {
                slot.generation = slot.generation.wrapping_add(1).max(1);
                self.free.push(i as u32);
                out.push(e);
            }
        }
        self.live = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_never_match() {
        let mut t = HandleTable::default();
        let a = t.insert(Callback::rust(|| {}), false);
        assert_ne!(a, 0);
        assert!(t.contains(a));
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none());
        let b = t.insert(Callback::rust(|| {}), true);
        assert_ne!(a, b, "the slot is reused under a new generation");
        assert!(!t.contains(a));
        assert!(t.contains(b));
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain().len(), 1);
        assert!(!t.contains(b));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn zero_and_unknown_handles_match_nothing() {
        let mut t = HandleTable::default();
        let a = t.insert(Callback::rust(|| {}), false);
        assert!(!t.contains(0) && t.remove(0).is_none(), "0 is never a handle");
        assert!(t.get_mut(a + 1).is_none(), "another slot, not allocated");
        assert!(t.remove(a | (7 << 32)).is_none(), "a generation this slot never had");
        assert!(t.contains(a));
    }

    #[test]
    fn generations_wrap_without_ever_making_handle_zero() {
        let mut t = HandleTable::default();
        let a = t.insert(Callback::rust(|| {}), false);
        t.slots[0].generation = u32::MAX;
        let max = (u64::from(u32::MAX) << 32) | (a & 0xffff_ffff);
        assert!(t.remove(max).is_some());
        assert_eq!(t.slots[0].generation, 1, "wraps to 1, never 0");
        let b = t.insert(Callback::rust(|| {}), false);
        assert_eq!(b >> 32, 1);
        assert_ne!(b, 0);
        assert!(!t.contains(max));
    }

    #[test]
    fn drained_handles_are_dead_and_their_slots_reused() {
        let mut t = HandleTable::default();
        let hs: Vec<Handle> = (0..5).map(|i| t.insert(Callback::rust(|| {}), i % 2 == 0)).collect();
        assert!(t.remove(hs[1]).is_some());
        assert_eq!(t.drain().len(), 4, "every live entry, once");
        assert!(hs.iter().all(|h| !t.contains(*h)));
        let again: Vec<Handle> = (0..5).map(|_| t.insert(Callback::rust(|| {}), false)).collect();
        assert_eq!(t.slots.len(), 5, "the five slots are reused, none added");
        assert!(again.iter().all(|h| !hs.contains(h)), "under new generations");
        assert_eq!(t.len(), 5);
        let entry = t.get_mut(again[0]).expect("a live entry");
        assert!(!entry.is_timer);
        entry.is_timer = true;
        assert!(t.get_mut(again[0]).unwrap().is_timer);
    }
}
