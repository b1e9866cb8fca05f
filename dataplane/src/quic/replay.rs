//! `ReplayTable`: which DCIDs of authenticated client Initials were seen, and from how many
//! 4-tuples, shared by all workers without locks.
//!
//! Initial keys are public, so a captured valid Initial replayed from spoofed sources passes the
//! cryptographic check. A replay carries the same DCID from many 4-tuples; RSS hashes those
//! tuples to different queues, so a per-worker table would let each worker admit `limit` of them
//! (`limit × workers` in all) and would never see the whole picture. This table is therefore
//! shared: a fixed array of `AtomicU64` slots, one per DCID hash, each packing
//! `[tag: 20 bits | time: 12 bits | first tuple: 24 bits | tuples: 8 bits]`:
//! - tag: more bits of the DCID hash, telling slot collisions apart;
//! - time: last sighting in units of 2^27 ns (~134 ms), modulo 4096 (~9 min, far above any TTL);
//! - first tuple: a 24-bit fingerprint of the 4-tuple that sent the DCID first (normally the
//!   client itself); a sighting from it never counts again;
//! - tuples: the first tuple plus one for every sighting from another tuple (saturating).
//!
//! The pipeline records a tuple once, when its flow's first Initial is admitted; every later
//! packet of that flow is decided by the worker's flow table and never comes here. So counting
//! each sighting from a tuple other than the first counts distinct tuples, except where a flow
//! was forgotten (evicted from a full flow table) and its client starts over: that tuple counts
//! again, refusing a replay earlier, never later. An approximate membership test (a bitmap of
//! tuple hashes) would do the opposite: a replayed tuple whose bit collides with a recorded one
//! looks known and is admitted, 1 in 32 per tuple with one recorded tuple, which a flood of
//! replays from many sources turns into a steady leak. Here a replay from another tuple passes
//! only if its fingerprint equals the first tuple's (1 in 2^24).
//!
//! Lookups are one relaxed load; recording is a bounded compare-and-swap loop on one word. Only
//! Initials that passed the structural checks and the rate limits reach it (at most the
//! decryption budget per worker per second), so contention on a slot is rare. A slot holding a
//! different, still-fresh DCID is overwritten (direct-mapped, newest wins) and the caller counts
//! the eviction. Hashes are keyed SipHash with a secret given at construction, so an attacker
//! cannot aim at one slot.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

const TIME_SHIFT: u32 = 27;
const TIME_MASK: u64 = 0xfff;
const FIRST_SHIFT: u32 = 8;
const FIRST_MASK: u64 = 0xff_ffff;
const COUNT_MASK: u64 = 0xff;

/// What recording a sighting found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Distinct tuples that sent this DCID, this one included (see the module docs).
    pub tuples: u32,
    /// A different, still-fresh DCID was overwritten to make room.
    pub evicted: bool,
}

/// The shared DCID table. See the module docs.
#[derive(Debug)]
pub struct ReplayTable {
    slots: Box<[AtomicU64]>,
    mask: usize,
    k0: u64,
    k1: u64,
}

impl ReplayTable {
    /// A table of `capacity` slots (rounded up to a power of two, at least 64), hashing with
    /// `secret`.
    pub fn new(capacity: usize, secret: [u8; 16]) -> ReplayTable {
        let n = capacity.max(64).next_power_of_two();
        let slots = (0..n).map(|_| AtomicU64::new(0)).collect();
        let k0 = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(secret[8..].try_into().expect("8 bytes"));
        ReplayTable { slots, mask: n - 1, k0, k1 }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Keyed hash of a DCID.
    #[inline]
    pub fn hash_dcid(&self, dcid: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(dcid);
        h.finish()
    }

    /// Keyed hash of a 4-tuple's bytes.
    #[inline]
    pub fn hash_tuple(&self, tuple: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k1, self.k0);
        h.write(tuple);
        h.finish()
    }

    /// The slot, the tag and the tuple's fingerprint.
    #[inline]
    fn parts(&self, dcid_hash: u64, tuple_hash: u64) -> (&AtomicU64, u64, u64) {
        let slot = &self.slots[(dcid_hash as usize) & self.mask];
        let tag = dcid_hash >> 44;
        (slot, tag, tuple_hash & FIRST_MASK)
    }

    #[inline]
    fn first(word: u64) -> u64 {
        (word >> FIRST_SHIFT) & FIRST_MASK
    }

    #[inline]
    fn count(word: u64) -> u32 {
        (word & COUNT_MASK) as u32
    }

    #[inline]
    fn fresh(word: u64, now_units: u64, ttl_units: u64) -> bool {
        word != 0 && ((now_units.wrapping_sub(word >> 32)) & TIME_MASK) <= ttl_units
    }

    #[inline]
    fn units(ns: u64) -> u64 {
        ns >> TIME_SHIFT
    }

    /// True when this DCID was already seen from `limit` tuples within `ttl_ns` and this tuple is
    /// not the first of them (it would exceed the limit). Used before spending crypto on a
    /// likely replay, so it records nothing of the tuple; but a refused copy is a sighting too:
    /// it moves the slot's time to now once the recorded time is a quarter of the TTL old, so a
    /// DCID replayed without pause stays known (otherwise one copy would pass every TTL, as a
    /// new first sighting). That is one write per replayed DCID per quarter TTL, whatever the
    /// flood's rate.
    #[inline]
    pub fn over_limit(&self, dcid_hash: u64, tuple_hash: u64, now_ns: u64, ttl_ns: u64, limit: u32) -> bool {
        let (slot, tag, first) = self.parts(dcid_hash, tuple_hash);
        let w = slot.load(Ordering::Relaxed);
        let now_u = Self::units(now_ns) & TIME_MASK;
        let ttl_u = Self::units(ttl_ns).clamp(1, TIME_MASK / 2);
        if w >> 44 != tag || !Self::fresh(w, now_u, ttl_u) {
            return false;
        }
        let refused = Self::first(w) != first && Self::count(w) >= limit;
        if refused && (now_u.wrapping_sub(w >> 32) & TIME_MASK) > ttl_u / 4 {
            let refreshed = (w & !(TIME_MASK << 32)) | now_u << 32;
            // Best effort: a lost race means another sighting just wrote the slot.
            let _ = slot.compare_exchange(w, refreshed, Ordering::Relaxed, Ordering::Relaxed);
        }
        refused
    }

    /// Prefetches the slot of `dcid_hash` ahead of use. A prefetch instruction rather than a
    /// read: a read would hold the CPU's reorder window until the line arrives, so a batch's
    /// misses would overlap only a few at a time.
    #[inline]
    pub fn prefetch(&self, dcid_hash: u64) {
        crate::xsk::prefetch_ref(&self.slots[(dcid_hash as usize) & self.mask]);
    }

    /// Records a sighting of `dcid_hash` from `tuple_hash` at `now_ns`.
    pub fn record(&self, dcid_hash: u64, tuple_hash: u64, now_ns: u64, ttl_ns: u64) -> Sighting {
        let (slot, tag, first) = self.parts(dcid_hash, tuple_hash);
        let now_u = Self::units(now_ns) & TIME_MASK;
        let ttl_u = Self::units(ttl_ns).clamp(1, TIME_MASK / 2);
        let mut current = slot.load(Ordering::Relaxed);
        // Bounded: under heavy contention on one slot, the last attempt's view is reported.
        for _ in 0..8 {
            let same = current >> 44 == tag && Self::fresh(current, now_u, ttl_u);
            let (owner, tuples) = Self::next(current, same, first);
            let evicted = !same && Self::fresh(current, now_u, ttl_u);
            let new = tag << 44 | now_u << 32 | owner << FIRST_SHIFT | u64::from(tuples);
            match slot.compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    return Sighting { tuples, evicted };
                }
                Err(seen) => current = seen,
            }
        }
        let (_, tuples) = Self::next(current, current >> 44 == tag, first);
        Sighting { tuples, evicted: false }
    }

    /// First tuple and count after a sighting from `first` of a slot holding `word` (`same`: the
    /// slot holds this DCID, fresh).
    #[inline]
    fn next(word: u64, same: bool, first: u64) -> (u64, u32) {
        if !same {
            (first, 1)
        } else if Self::first(word) == first {
            (first, Self::count(word))
        } else {
            (Self::first(word), (Self::count(word) + 1).min(COUNT_MASK as u32))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn counts_distinct_tuples_until_the_ttl() {
        let t = ReplayTable::new(1024, [7; 16]);
        let d = t.hash_dcid(b"\x83\x94\xc8\xf0\x3e\x51\x57\x08");
        for _ in 0..5 {
            assert_eq!(t.record(d, 0, SEC, 10 * SEC).tuples, 1, "the first tuple counts once");
        }
        assert!(!t.over_limit(d, 1, SEC, 10 * SEC, 3));
        assert_eq!(t.record(d, 1, SEC, 10 * SEC).tuples, 2);
        assert_eq!(t.record(d, 2, SEC, 10 * SEC).tuples, 3);
        assert!(t.over_limit(d, 3, 2 * SEC, 10 * SEC, 3), "a fourth tuple exceeds a limit of 3");
        assert!(!t.over_limit(d, 0, 2 * SEC, 10 * SEC, 3), "the first tuple never does");
        assert_eq!(t.record(d, 3, 2 * SEC, 10 * SEC).tuples, 4);
        assert_eq!(t.record(d, 0, 2 * SEC, 10 * SEC).tuples, 4, "the first tuple again");
        // After the TTL the DCID is forgotten.
        assert!(!t.over_limit(d, 9, 30 * SEC, 10 * SEC, 3));
        assert_eq!(t.record(d, 9, 30 * SEC, 10 * SEC).tuples, 1);
        // A different DCID is not affected.
        assert!(!t.over_limit(t.hash_dcid(b"other"), 9, 30 * SEC, 10 * SEC, 0));
    }

    /// With a limit of 1, no tuple but the first gets past the check, however many try: a
    /// membership test by a 32-bit bitmap let about 1 in 32 of them through.
    #[test]
    fn a_replay_from_many_tuples_never_passes_a_limit_of_one() {
        let t = ReplayTable::new(1024, [9; 16]);
        let d = t.hash_dcid(b"replayed-dcid");
        let first = t.hash_tuple(b"client");
        assert_eq!(t.record(d, first, SEC, 10 * SEC).tuples, 1);
        let mut passed = 0;
        for i in 0..100_000u32 {
            let tuple = t.hash_tuple(&i.to_le_bytes());
            if !t.over_limit(d, tuple, SEC, 10 * SEC, 1) {
                passed += 1;
            }
        }
        assert_eq!(passed, 0);
        assert!(!t.over_limit(d, first, SEC, 10 * SEC, 1), "the client's own retransmission");
        // The count saturates instead of wrapping.
        for i in 0..300u32 {
            t.record(d, t.hash_tuple(&(i + 1_000_000).to_le_bytes()), SEC, 10 * SEC);
        }
        assert_eq!(t.record(d, first, SEC, 10 * SEC).tuples, 255);
    }

    /// Refused copies keep a replayed DCID known: a flood of them longer than the TTL never
    /// finds the slot stale, while a DCID nobody sends any more is forgotten after the TTL.
    #[test]
    fn a_replay_flood_keeps_its_dcid_known_past_the_ttl() {
        let t = ReplayTable::new(1024, [5; 16]);
        let d = t.hash_dcid(b"replayed-for-long");
        let first = t.hash_tuple(b"client");
        assert_eq!(t.record(d, first, SEC, 10 * SEC).tuples, 1);
        // A copy every 100 ms for a minute, each from a new tuple: all refused.
        for i in 0..600u64 {
            let now = SEC + i * SEC / 10;
            let tuple = t.hash_tuple(&i.to_le_bytes());
            assert!(t.over_limit(d, tuple, now, 10 * SEC, 1), "copy {i} at {} ms", now / 1_000_000);
        }
        // Quiet for longer than the TTL: forgotten.
        assert!(!t.over_limit(d, t.hash_tuple(b"late"), 75 * SEC, 10 * SEC, 1));
    }

    #[test]
    fn collisions_evict_and_say_so() {
        let t = ReplayTable::new(64, [1; 16]);
        // Two hashes with the same slot and different tags.
        let a = 5u64;
        let b = 5u64 | (1 << 50);
        assert!(!t.record(a, 1, SEC, 10 * SEC).evicted);
        assert!(t.record(b, 1, SEC, 10 * SEC).evicted);
        assert!(!t.record(a, 1, 40 * SEC, 10 * SEC).evicted, "stale entries are free");
    }

    #[test]
    fn shared_between_threads() {
        let t = std::sync::Arc::new(ReplayTable::new(1 << 12, [3; 16]));
        let d = t.hash_dcid(b"replayed");
        let handles: Vec<_> = (0..4u64)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..8u64 {
                        t.record(d, w * 8 + i, SEC, 10 * SEC);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // 32 distinct tuples, each counted once; one more makes 33.
        assert_eq!(t.record(d, 99, SEC, 10 * SEC).tuples, 33);
    }
}
