//! The verified-source table shared by every worker: lock-free, fixed size, set-associative.
//!
//! Contract: `Verified::new` allocates everything; `lookup` and `insert` never allocate, lock or
//! block, and a source inserted by one worker is seen by every other worker as soon as the
//! store reaches the other core's cache (nanoseconds; the issue asks for 10 ms).
//!
//! Layout: sets of 8 ways, one 64-byte cache line per set, each way one `AtomicU64` holding
//! `fingerprint (40 bits) << 24 | expiry (24 bits)`. A source's keyed 64-bit hash picks the set
//! (low bits) and the fingerprint (high 40 bits); the hash key comes from the daemon's randomness,
//! so an attacker cannot aim addresses at one set to evict a victim. The expiry is in monotonic
//! seconds modulo 2^24 (194 days) and compared with wrapping arithmetic. One word per entry means
//! a reader never sees half an entry. A fingerprint match stands for the address: the chance that
//! an unverified source matches a live entry is 8 / 2^40 per lookup (about one packet in 10^11).
//!
//! Eviction: an insert takes a free or expired way, else the way closest to expiry (the oldest
//! verification), and counts the eviction. Two workers verifying the same source at the same
//! instant may store it twice in one set; that wastes a way until it expires and is harmless.
//!
//! The filter: the sets (8 bytes per entry, 8 MiB for a million) do not stay in cache, and a
//! spoofed SYN flood looks up a different unverified source every packet. So a bitmap of 4 bits
//! per entry (512 KiB for a million), indexed by low bits of the fingerprint, says which sources
//! *may* be in the table: an insert sets its bit; a lookup whose bit is clear stops there
//! without touching the sets. A lookup that finds its bit set but no live entry behind it clears
//! the bit, so bits of expired and evicted entries fade. That clearing can race with an insert
//! of the same bit on another core and hide the new entry: the source is challenged once more
//! and its answer sets the bit again. A rare extra round trip, never a false "verified".

use crate::addr::Addr;
use crate::table::TableStats;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Ways per set (one cache line of `AtomicU64`).
pub const WAYS: usize = 8;
/// Longest TTL the expiry encoding supports.
pub const MAX_TTL_SECS: u32 = 7 * 86_400;

const EXP_BITS: u32 = 24;
const EXP_MASK: u64 = (1 << EXP_BITS) - 1;
const FP_BITS: u32 = 40;
/// Filter bits per table entry.
const FILTER_BITS_PER_ENTRY: usize = 4;

#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Set([AtomicU64; WAYS]);

/// What `insert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The source was there: its expiry was extended.
    Refreshed,
    /// Stored in a free or expired way.
    New,
    /// Stored in place of a live entry (counted as an eviction).
    Evicted,
    /// Lost a race on every attempt; nothing stored (the next packet tries again).
    Contended,
}

/// The shared verified-source table. See the module docs.
#[derive(Debug)]
pub struct Verified {
    sets: Box<[Set]>,
    mask: u64,
    filter: Box<[AtomicU64]>,
    filter_mask: u64,
    seed: [u64; 2],
    evictions: AtomicU64,
}

/// Seconds left before `word` expires at `now_s`, or 0 when free or expired.
#[inline]
fn remaining(word: u64, now_s: u64) -> u32 {
    if word == 0 {
        return 0;
    }
    let d = (word.wrapping_sub(now_s)) & EXP_MASK;
    if d <= u64::from(MAX_TTL_SECS) { d as u32 } else { 0 }
}

impl Verified {
    /// A table of at least `capacity` entries (rounded up to a power-of-two number of sets),
    /// hashing with `seed` (from the daemon's randomness).
    pub fn new(capacity: usize, seed: [u64; 2]) -> Verified {
        let sets = crate::table::set_count(capacity, WAYS).min(1 << EXP_BITS);
        let filter_bits = (sets * WAYS * FILTER_BITS_PER_ENTRY).max(64);
        Verified {
            sets: (0..sets).map(|_| Set::default()).collect(),
            mask: (sets - 1) as u64,
            filter: (0..filter_bits / 64).map(|_| AtomicU64::new(0)).collect(),
            filter_mask: (filter_bits - 1) as u64,
            seed,
            evictions: AtomicU64::new(0),
        }
    }

    /// Keyed hash of an address: a folded 128-bit multiply, keyed twice (cheap and unguessable
    /// without the seed; not a MAC, which this use does not need).
    #[inline]
    fn hash(&self, addr: Addr) -> u64 {
        #[inline(always)]
        fn fold(a: u64, b: u64) -> u64 {
            let p = u128::from(a).wrapping_mul(u128::from(b));
            (p as u64) ^ ((p >> 64) as u64)
        }
        let lo = addr.0 as u64;
        let hi = (addr.0 >> 64) as u64;
        let h = fold(lo ^ self.seed[0], hi ^ self.seed[1] ^ 0x9e37_79b9_7f4a_7c15);
        fold(h ^ self.seed[1], self.seed[0] ^ 0x2545_f491_4f6c_dd1d | 1)
    }

    #[inline]
    fn slot(&self, addr: Addr) -> (&Set, u64) {
        let h = self.hash(addr);
        let fp = (h >> (64 - FP_BITS)).max(1);
        (&self.sets[(h & self.mask) as usize], fp)
    }

    /// The filter word and bit of a fingerprint.
    #[inline]
    fn filter_bit(&self, fp: u64) -> (&AtomicU64, u64) {
        let bit = fp & self.filter_mask;
        (&self.filter[(bit >> 6) as usize], 1 << (bit & 63))
    }

    /// Starts loading the filter word and the set a `lookup(src)` reads (changes nothing).
    #[inline]
    pub fn prefetch(&self, src: Addr) {
        let (set, fp) = self.slot(src);
        crate::xsk::prefetch_ref(self.filter_bit(fp).0);
        crate::xsk::prefetch_ref(set);
    }

    /// Seconds of verification left for `src` at monotonic second `now_s` (None: not verified).
    #[inline]
    pub fn lookup(&self, src: Addr, now_s: u64) -> Option<u32> {
        let (set, fp) = self.slot(src);
        let (word, bit) = self.filter_bit(fp);
        if word.load(Relaxed) & bit == 0 {
            return None;
        }
        let mut shares_bit = false;
        for way in &set.0 {
            let w = way.load(Relaxed);
            let left = remaining(w, now_s);
            if w >> EXP_BITS == fp && left > 0 {
                return Some(left);
            }
            shares_bit |= left > 0 && (w >> EXP_BITS) & self.filter_mask == fp & self.filter_mask;
        }
        if !shares_bit {
            // Nothing live behind this bit any more (expired, evicted or removed): let it fade.
            word.fetch_and(!bit, Relaxed);
        }
        None
    }

    /// Frees the expired ways of the sets in `part` of `parts` equal shares. Expiry is kept
    /// modulo 2^24 seconds, so an expired entry nobody overwrites would read as verified again
    /// about 187 days later; the daemon sweeps one share a second, every set within `parts`
    /// seconds. Filter bits are left to fade as lookups find nothing behind them.
    pub fn sweep(&self, now_s: u64, part: usize, parts: usize) {
        let sets = &self.sets[crate::table::share(self.sets.len(), part, parts)];
        crate::table::free_expired(sets.iter().flat_map(|s| &s.0), |w| remaining(w, now_s) == 0);
    }

    /// Marks `src` verified for `ttl_s` seconds from `now_s`.
    pub fn insert(&self, src: Addr, now_s: u64, ttl_s: u32) -> Inserted {
        let (set, fp) = self.slot(src);
        let ttl = u64::from(ttl_s.clamp(1, MAX_TTL_SECS));
        let word = fp << EXP_BITS | (now_s.wrapping_add(ttl) & EXP_MASK);
        for _ in 0..4 {
            let mut victim = 0usize;
            let mut victim_word = 0u64;
            let mut victim_left = u32::MAX;
            let mut found = None;
            for (i, way) in set.0.iter().enumerate() {
                let w = way.load(Relaxed);
                if w != 0 && w >> EXP_BITS == fp {
                    found = Some((i, w));
                    break;
                }
                let left = remaining(w, now_s);
                if left < victim_left {
                    (victim, victim_word, victim_left) = (i, w, left);
                }
            }
            let done = if let Some((i, w)) = found {
                set.0[i].compare_exchange(w, word, Relaxed, Relaxed).is_ok().then_some(Inserted::Refreshed)
            } else if set.0[victim].compare_exchange(victim_word, word, Relaxed, Relaxed).is_ok() {
                if victim_left > 0 {
                    self.evictions.fetch_add(1, Relaxed);
                    Some(Inserted::Evicted)
                } else {
                    Some(Inserted::New)
                }
            } else {
                None
            };
            if let Some(done) = done {
                // The entry first, then its filter bit: a reader never sees the bit without it.
                let (filter, bit) = self.filter_bit(fp);
                if filter.load(Relaxed) & bit == 0 {
                    filter.fetch_or(bit, Relaxed);
                }
                return done;
            }
        }
        Inserted::Contended
    }

    /// Forgets `src` (operator action). True when it was there.
    pub fn remove(&self, src: Addr) -> bool {
        let (set, fp) = self.slot(src);
        let mut removed = false;
        for way in &set.0 {
            let w = way.load(Relaxed);
            if w != 0 && w >> EXP_BITS == fp && way.compare_exchange(w, 0, Relaxed, Relaxed).is_ok() {
                removed = true;
            }
        }
        removed
    }

    /// Forgets every source (operator action).
    pub fn clear(&self) {
        for set in self.sets.iter() {
            for way in &set.0 {
                way.store(0, Relaxed);
            }
        }
        for word in self.filter.iter() {
            word.store(0, Relaxed);
        }
    }

    /// Filter bits set (tests and diagnostics).
    pub fn filter_ones(&self) -> u64 {
        self.filter.iter().map(|w| u64::from(w.load(Relaxed).count_ones())).sum()
    }

    /// Capacity in entries.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Live entries, capacity and evictions (walks the whole table: control plane only).
    pub fn stats(&self, now_s: u64) -> TableStats {
        let len = self.sets.iter().flat_map(|s| s.0.iter()).filter(|w| remaining(w.load(Relaxed), now_s) > 0).count();
        TableStats { len: len as u64, capacity: self.capacity() as u64, evictions: self.evictions.load(Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_lookup_expire() {
        let t = Verified::new(1024, [1, 2]);
        let a = Addr::v4(0xc612_0102);
        assert_eq!(t.lookup(a, 100), None);
        assert_eq!(t.insert(a, 100, 300), Inserted::New);
        assert_eq!(t.lookup(a, 100), Some(300));
        assert_eq!(t.lookup(a, 399), Some(1));
        assert_eq!(t.lookup(a, 400), None);
        assert_eq!(t.lookup(Addr::v4(0xc612_0103), 100), None);
        assert_eq!(t.insert(a, 200, 300), Inserted::Refreshed);
        assert_eq!(t.lookup(a, 450), Some(50));
        assert!(t.remove(a));
        assert_eq!(t.lookup(a, 200), None);
    }

    #[test]
    fn a_swept_entry_stays_expired_past_the_wrap() {
        let (a, b) = (Addr::v4(0xc612_0102), Addr::v4(0xc612_0103));
        let wrapped = 400 + (1 << 24) - 1000;
        // Unswept, the expired entry reads as verified again once the 24-bit clock wraps.
        let unswept = Verified::new(1024, [1, 2]);
        unswept.insert(a, 100, 300);
        assert_eq!(unswept.lookup(a, wrapped), Some(1000));
        let t = Verified::new(1024, [1, 2]);
        t.insert(a, 100, 300);
        t.insert(b, 100, 3000);
        for part in 0..4 {
            t.sweep(500, part, 4);
        }
        assert_eq!(t.lookup(a, wrapped), None);
        assert_eq!(t.lookup(b, 500), Some(2600), "a live entry survives the sweep");
    }

    #[test]
    fn expiry_survives_the_24_bit_wrap() {
        let t = Verified::new(64, [3, 4]);
        let a = Addr::v6(0x2001_0002_0000_0001 << 64 | 5);
        let now = (1 << 24) - 10;
        t.insert(a, now, 300);
        assert_eq!(t.lookup(a, now + 20), Some(280));
        assert_eq!(t.lookup(a, now + 300), None);
        // Long after: stays expired (until 194 days have wrapped round).
        assert_eq!(t.lookup(a, now + 100_000), None);
    }

    #[test]
    fn stays_bounded_and_counts_evictions() {
        let t = Verified::new(1024, [5, 6]);
        let mut evicted = 0;
        for i in 0..100_000u32 {
            if t.insert(Addr::v4(i), 10, 300) == Inserted::Evicted {
                evicted += 1;
            }
        }
        let s = t.stats(10);
        assert_eq!(s.capacity, 1024);
        assert_eq!(s.len, 1024);
        assert_eq!(s.evictions, evicted);
        assert!(evicted >= 100_000 - 1024);
        // Expired entries are reused without counting evictions.
        let before = t.stats(10).evictions;
        for i in 0..100u32 {
            t.insert(Addr::v4(1_000_000 + i), 1_000, 300);
        }
        assert_eq!(t.stats(1_000).evictions, before);
        t.clear();
        assert_eq!(t.stats(1_000).len, 0);
    }

    #[test]
    fn filter_bits_fade_when_their_entries_are_gone() {
        let t = Verified::new(1024, [11, 12]);
        for i in 0..200u32 {
            t.insert(Addr::v4(i), 10, 300);
        }
        let ones = t.filter_ones();
        assert!(ones > 150 && ones <= 200, "{ones}");
        // Still live: every bit stays.
        for i in 0..200u32 {
            assert!(t.lookup(Addr::v4(i), 100).is_some());
        }
        assert_eq!(t.filter_ones(), ones);
        // Expired: looking them up clears their bits; the table answers the same.
        for i in 0..200u32 {
            assert_eq!(t.lookup(Addr::v4(i), 400), None);
        }
        assert_eq!(t.filter_ones(), 0);
        // Removal leaves the bit to fade at the next lookup; a bit shared with a live entry stays.
        t.insert(Addr::v4(1), 500, 300);
        assert!(t.remove(Addr::v4(1)));
        assert_eq!(t.filter_ones(), 1);
        assert_eq!(t.lookup(Addr::v4(1), 500), None);
        assert_eq!(t.filter_ones(), 0);
    }

    #[test]
    fn oldest_verification_is_evicted_first() {
        // One set: every address lands in it.
        let t = Verified::new(8, [7, 8]);
        for i in 0..8u32 {
            t.insert(Addr::v4(i), u64::from(i), 300);
        }
        t.insert(Addr::v4(100), 20, 300);
        assert_eq!(t.lookup(Addr::v4(0), 20), None, "earliest expiry goes");
        for i in 1..8u32 {
            assert!(t.lookup(Addr::v4(i), 20).is_some(), "{i} kept");
        }
    }

    #[test]
    fn seen_by_another_thread() {
        let t = std::sync::Arc::new(Verified::new(1 << 16, [9, 10]));
        let writer = {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u32 {
                    t.insert(Addr::v4(i), 1, 300);
                }
            })
        };
        writer.join().unwrap();
        let seen = (0..10_000u32).filter(|&i| t.lookup(Addr::v4(i), 1).is_some()).count();
        // A 1<<16 table with 10 000 keys: nearly all fit without set overflow.
        assert!(seen > 9_900, "{seen}");
    }
}
