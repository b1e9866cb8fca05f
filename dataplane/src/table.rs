//! `ClockTable`: a fixed-capacity hash table with CLOCK (second-chance) eviction.
//!
//! Per-worker state (rate-limit buckets, fragment verdicts, challenge records) lives in these
//! tables. Capacity is fixed at construction from config; inserting into a full table evicts
//! the first entry the clock hand finds that was not used since the hand last passed it, and
//! counts the eviction. A flood of random keys therefore recycles entries instead of growing
//! memory, while entries that keep being hit survive. Storage is a hashbrown map (keyed with a
//! per-process random seed, so an attacker cannot aim collisions) plus a ring of keys the
//! clock hand walks. No allocation after construction.
//!
//! Also `set_count`, the one sizing rule of the set-associative tables, and `share` and
//! `free_expired`, with which the daemon sweeps the shared one-word tables.

use core::hash::Hash;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use hashbrown::HashMap;

/// Number of sets for at least `slots` entries of `ways` per set: a power of two, at least one
/// (the sizing of every set-associative table: the SYN verified table, the amplification
/// tables, the QUIC flow table).
#[inline]
pub fn set_count(slots: usize, ways: usize) -> usize {
    slots.max(1).div_ceil(ways).next_power_of_two()
}

/// The sets of share `part` (of `parts` equal shares) of a table of `sets` sets: the sweeps of the
/// shared tables free expired entries one share at a time.
pub fn share(sets: usize, part: usize, parts: usize) -> core::ops::Range<usize> {
    let parts = parts.max(1);
    let part = part % parts;
    sets * part / parts..sets * (part + 1) / parts
}

/// Frees (zeroes) each non-free word of `words` that `expired` says has expired, by
/// compare-and-swap: a word another worker rewrote since it was read keeps its new entry.
pub fn free_expired<'a>(words: impl IntoIterator<Item = &'a AtomicU64>, expired: impl Fn(u64) -> bool) {
    for word in words {
        let w = word.load(Relaxed);
        if w != 0 && expired(w) {
            let _ = word.compare_exchange(w, 0, Relaxed, Relaxed);
        }
    }
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    /// Set on every hit; the clock hand clears it once before evicting.
    referenced: bool,
    /// Position of the key in `ring`.
    ring_pos: u32,
}

/// Occupancy and eviction figures of one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries in use.
    pub len: u64,
    /// Fixed capacity.
    pub capacity: u64,
    /// Entries evicted to make room since start.
    pub evictions: u64,
}

/// Fixed-capacity map with CLOCK eviction. See the module docs.
#[derive(Debug)]
pub struct ClockTable<K: Copy + Eq + Hash, V> {
    map: HashMap<K, Slot<V>>,
    /// Keys in clock order; `None` marks a free position.
    ring: Vec<Option<K>>,
    free: Vec<u32>,
    hand: usize,
    capacity: usize,
    evictions: u64,
}

impl<K: Copy + Eq + Hash, V> ClockTable<K, V> {
    /// A table holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ClockTable {
            map: HashMap::with_capacity(capacity),
            ring: vec![None; capacity],
            free: (0..capacity as u32).rev().collect(),
            hand: 0,
            capacity,
            evictions: 0,
        }
    }

    /// The entry for `key`, marking it recently used.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|slot| {
            slot.referenced = true;
            &mut slot.value
        })
    }

    /// The entry for `key` without marking it used.
    #[inline]
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|slot| &slot.value)
    }

    /// The entry for `key`, inserting `make()` (evicting if full) when absent. A present entry
    /// is marked used; a new one starts unmarked, as with `insert`.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let present = self.map.contains_key(&key);
        if !present {
            self.insert(key, make());
        }
        let slot = self.map.get_mut(&key).expect("present: inserted just above");
        slot.referenced |= present;
        &mut slot.value
    }

    /// Inserts or replaces `key`. Returns the evicted entry when room had to be made.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some(slot) = self.map.get_mut(&key) {
            slot.value = value;
            slot.referenced = true;
            return None;
        }
        let mut evicted = None;
        let pos = match self.free.pop() {
            Some(pos) => pos,
            None => {
                let (pos, old) = self.evict_one();
                evicted = old;
                pos
            }
        };
        self.ring[pos as usize] = Some(key);
        // New entries start unreferenced: a key seen once is the first to go under a flood.
        self.map.insert(key, Slot { value, referenced: false, ring_pos: pos });
        evicted
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.map.remove(key)?;
        self.ring[slot.ring_pos as usize] = None;
        self.free.push(slot.ring_pos);
        Some(slot.value)
    }

    /// Advances the clock hand to a victim, removes it and returns its ring position.
    fn evict_one(&mut self) -> (u32, Option<(K, V)>) {
        loop {
            let pos = self.hand;
            self.hand = (self.hand + 1) % self.capacity;
            let Some(key) = self.ring[pos] else {
                // Free positions are on the free list; the table is full so this cannot last.
                continue;
            };
            let slot = self.map.get_mut(&key).expect("ring and map hold the same keys");
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            let slot = self.map.remove(&key).expect("ring and map hold the same keys");
            self.ring[pos] = None;
            self.evictions += 1;
            return (pos as u32, Some((key, slot.value)));
        }
    }

    /// Removes every entry for which `keep` returns false (used for expiry sweeps).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let ring = &mut self.ring;
        let free = &mut self.free;
        self.map.retain(|k, slot| {
            let kept = keep(k, &mut slot.value);
            if !kept {
                ring[slot.ring_pos as usize] = None;
                free.push(slot.ring_pos);
            }
            kept
        });
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Occupancy and evictions.
    pub fn stats(&self) -> TableStats {
        TableStats { len: self.map.len() as u64, capacity: self.capacity as u64, evictions: self.evictions }
    }

    /// Iterates over the entries (control-plane use only).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_capacity_and_counts_evictions() {
        let mut t = ClockTable::new(100);
        for k in 0..10_000u32 {
            t.insert(k, k);
            assert!(t.len() <= 100);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.stats().evictions, 9_900);
    }

    #[test]
    fn hot_entries_survive_a_flood_of_new_keys() {
        let mut t = ClockTable::new(64);
        for k in 0..8u32 {
            t.insert(k, ());
        }
        for k in 1000..20_000u32 {
            for hot in 0..8u32 {
                assert!(t.get_mut(&hot).is_some(), "hot key {hot} evicted at {k}");
            }
            t.insert(k, ());
        }
    }

    #[test]
    fn remove_frees_a_position() {
        let mut t = ClockTable::new(2);
        t.insert(1u8, 'a');
        t.insert(2u8, 'b');
        assert_eq!(t.remove(&1), Some('a'));
        assert_eq!(t.insert(3u8, 'c'), None);
        assert_eq!(t.stats().evictions, 0);
        assert_eq!(t.peek(&2), Some(&'b'));
        t.retain(|_, v| *v != 'b');
        assert_eq!(t.len(), 1);
        assert_eq!(t.insert(4u8, 'd'), None);
    }

    #[test]
    fn get_or_insert_evicts_when_full() {
        let mut t = ClockTable::new(1);
        *t.get_or_insert_with(1u8, || 10) += 1;
        assert_eq!(t.peek(&1), Some(&11));
        *t.get_or_insert_with(2u8, || 20) += 1;
        assert_eq!(t.peek(&1), None);
        assert_eq!(t.peek(&2), Some(&21));
        assert_eq!(t.stats().evictions, 1);
    }

    #[test]
    fn get_or_insert_keeps_a_key_seen_once_first_to_go() {
        let mut t: ClockTable<u8, u32> = ClockTable::new(2);
        *t.get_or_insert_with(1, || 0) += 1;
        *t.get_or_insert_with(1, || 0) += 1;
        *t.get_or_insert_with(2, || 0) += 1;
        // Key 1 was hit again, key 2 only inserted: the clock passes over 1 and takes 2.
        assert_eq!(t.insert(3, 0).map(|(k, _)| k), Some(2));
        assert_eq!(t.peek(&1), Some(&2));
    }
}
