//! Cross-worker state of the amplification countermeasure: lock-free, fixed-size tables of
//! atomics that every worker reads and writes.
//!
//! - `Buckets`: GCRA budgets (packets/s and bytes/s) keyed by (destination, vector), so that a
//!   rate-limited vector holds its budget for the destination as a whole, however many queues
//!   RSS spreads its packets over. Over budget, a check is two loads and no store, so workers
//!   hammering one victim share its cache line read-only.
//! - `Fragments`: the verdict given to a datagram's first fragment, keyed by (source,
//!   destination, protocol, IP ID), for its later fragments. Shared rather than per worker:
//!   RSS hashes a first fragment (which has ports) and the later ones (which do not) with
//!   different inputs on many NICs, so they routinely land on different queues.
//! - `Requests`: DNS queries and NTP client requests protected hosts sent (symmetric
//!   deployments), so that exactly the matching responses are admitted. Requests leave by the
//!   egress side and responses arrive on the ingress side: different workers by construction.
//!
//! Every table is set-associative (a set is one or two cache lines) with a fixed number of sets
//! chosen at start; a full set evicts its oldest or soonest-expiring entry and the evicting
//! worker counts it. Keys are hashed with a secret seed (an argument) so that a spoofing
//! attacker cannot aim entries at one set. Memory ordering is `Relaxed` throughout: each slot
//! is self-contained (one word, or a tag plus budgets whose races cost at most a packet of
//! accuracy), and nothing else is published through them.

use crate::addr::Addr;
use crate::ratelimit::Rate;
use crate::table::TableStats;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A compiled per-destination budget: GCRA emission intervals and burst tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Nanoseconds per packet (0: no packet budget).
    packet_ns: u64,
    /// Nanoseconds per byte, 32.32 fixed point (0: no byte budget).
    byte_ns_q32: u64,
    /// Burst tolerance in nanoseconds.
    tolerance_ns: u64,
    /// The budget it was compiled from.
    rate: Rate,
}

impl Limit {
    /// Compiles `rate` (IP bytes per second; 0 in a dimension: unlimited in it).
    pub fn new(rate: Rate) -> Limit {
        const NS: u128 = 1_000_000_000;
        let packet_ns = if rate.pps == 0 { 0 } else { (NS / u128::from(rate.pps)).max(1) as u64 };
        let byte_ns_q32 =
            if rate.bytes_per_sec == 0 { 0 } else { ((NS << 32) / u128::from(rate.bytes_per_sec)).max(1) as u64 };
        let tolerance_ns = u64::from(rate.burst_ms.max(1)) * 1_000_000;
        Limit { packet_ns, byte_ns_q32, tolerance_ns, rate }
    }

    /// The budget this was compiled from.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    #[inline]
    fn byte_cost(&self, bytes: u32) -> u64 {
        ((u128::from(bytes) * u128::from(self.byte_ns_q32)) >> 32) as u64
    }
}

/// Capacities of the shared tables (entries; rounded up to whole sets and a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedConfig {
    /// (destination, vector) budgets.
    pub bucket_slots: usize,
    /// First-fragment verdicts.
    pub fragment_slots: usize,
    /// Recorded requests (symmetric mode).
    pub request_slots: usize,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig { bucket_slots: 1 << 16, fragment_slots: 1 << 16, request_slots: 1 << 16 }
    }
}

/// Most slots one table may have: 16 Mi (512 MiB of budgets, 128 MiB of one-word slots).
pub const MAX_SLOTS: usize = 1 << 24;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Keyed hash of a few words (folded multiplies, as in foldhash).
#[derive(Clone, Copy, Debug)]
struct Hasher {
    seed: [u64; 4],
}

impl Hasher {
    fn new(seed: [u64; 4]) -> Hasher {
        // Odd multipliers keep every fold invertible in its low half.
        Hasher { seed: [seed[0], seed[1] | 1, seed[2] | 1, seed[3] ^ 0x243f_6a88_85a3_08d3] }
    }

    #[inline]
    fn hash(&self, words: &[u64]) -> u64 {
        let mut h = self.seed[3];
        for pair in words.chunks(2) {
            let a = pair[0];
            let b = pair.get(1).copied().unwrap_or(0);
            h = fold(h ^ a ^ self.seed[0], b ^ self.seed[1]).rotate_left(23) ^ h;
        }
        fold(h, self.seed[2])
    }
}

#[inline]
fn addr_words(a: Addr) -> [u64; 2] {
    [(a.0 >> 64) as u64, a.0 as u64]
}

/// Number of sets for `slots` entries (at most `MAX_SLOTS`) of `ways` per set.
fn set_count(slots: usize, ways: usize) -> usize {
    crate::table::set_count(slots.min(MAX_SLOTS), ways)
}

// --- budgets --------------------------------------------------------------------------------

#[derive(Debug, Default)]
#[repr(C)]
struct BucketSlot {
    /// Key hash with the low bit set; 0 = free.
    tag: AtomicU64,
    /// GCRA theoretical arrival time of the next packet (monotonic ns).
    packet_tat: AtomicU64,
    /// Same for bytes.
    byte_tat: AtomicU64,
    _pad: u64,
}

const BUCKET_WAYS: usize = 4;

#[derive(Debug, Default)]
#[repr(C, align(128))]
struct BucketSet([BucketSlot; BUCKET_WAYS]);

/// One GCRA step: takes `cost` if `tat` is no more than `tolerance` ahead of `now`.
#[inline]
fn gcra(tat: &AtomicU64, now: u64, cost: u64, tolerance: u64) -> bool {
    let mut current = tat.load(Relaxed);
    loop {
        let base = current.max(now);
        if base - now > tolerance {
            return false;
        }
        match tat.compare_exchange_weak(current, base.saturating_add(cost), Relaxed, Relaxed) {
            Ok(_) => return true,
            Err(seen) => current = seen,
        }
    }
}

impl BucketSlot {
    #[inline]
    fn idle_since(&self) -> u64 {
        self.packet_tat.load(Relaxed).max(self.byte_tat.load(Relaxed))
    }

    #[inline]
    fn admit(&self, now: u64, limit: &Limit, bytes: u32, count_packet: bool) -> bool {
        let horizon = now.saturating_add(limit.tolerance_ns);
        let packets = count_packet && limit.packet_ns != 0;
        let byte_limited = limit.byte_ns_q32 != 0;
        // Over budget: decide on loads alone, so the line stays shared between workers.
        if (packets && self.packet_tat.load(Relaxed) > horizon)
            || (byte_limited && self.byte_tat.load(Relaxed) > horizon)
        {
            return false;
        }
        if packets && !gcra(&self.packet_tat, now, limit.packet_ns, limit.tolerance_ns) {
            return false;
        }
        if byte_limited && !gcra(&self.byte_tat, now, limit.byte_cost(bytes), limit.tolerance_ns) {
            if packets {
                // Give back the packet taken above: the packet is not admitted. Saturating, in
                // case another worker reset the slot for a new key in between.
                let _ = self.packet_tat.fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_sub(limit.packet_ns)));
            }
            return false;
        }
        true
    }
}

/// Shared per-(destination, vector) budgets. See the module docs.
#[derive(Debug)]
struct Buckets {
    sets: Box<[BucketSet]>,
    shift: u32,
}

impl Buckets {
    fn new(slots: usize) -> Buckets {
        let n = set_count(slots, BUCKET_WAYS);
        let sets: Vec<BucketSet> = (0..n).map(|_| BucketSet::default()).collect();
        Buckets { sets: sets.into_boxed_slice(), shift: 64 - n.trailing_zeros() }
    }

    #[inline]
    fn set(&self, hash: u64) -> &BucketSet {
        // `shift` is 64 for a single set: checked_shr yields None → set 0.
        &self.sets[hash.checked_shr(self.shift).unwrap_or(0) as usize]
    }

    /// The slot for `hash`, claiming the most idle way of its set when absent.
    #[inline]
    fn slot(&self, hash: u64, evictions: &mut u64) -> &BucketSlot {
        let tag = hash | 1;
        let set = &self.set(hash).0;
        if let Some(s) = set.iter().find(|s| s.tag.load(Relaxed) == tag) {
            return s;
        }
        self.claim(set, tag, evictions)
    }

    #[cold]
    fn claim<'a>(&self, set: &'a [BucketSlot; BUCKET_WAYS], tag: u64, evictions: &mut u64) -> &'a BucketSlot {
        for _ in 0..BUCKET_WAYS {
            let mut victim = &set[0];
            let mut victim_tag = victim.tag.load(Relaxed);
            let mut victim_age = if victim_tag == 0 { 0 } else { victim.idle_since().max(1) };
            for s in &set[1..] {
                let t = s.tag.load(Relaxed);
                let age = if t == 0 { 0 } else { s.idle_since().max(1) };
                if age < victim_age {
                    (victim, victim_tag, victim_age) = (s, t, age);
                }
            }
            if victim.tag.compare_exchange(victim_tag, tag, Relaxed, Relaxed).is_ok() {
                if victim_tag != 0 {
                    *evictions += 1;
                    // The newcomer starts with a full budget, not the old key's debt.
                    victim.packet_tat.store(0, Relaxed);
                    victim.byte_tat.store(0, Relaxed);
                }
                return victim;
            }
            // Another worker took that way: maybe for this very key.
            if let Some(s) = set.iter().find(|s| s.tag.load(Relaxed) == tag) {
                return s;
            }
        }
        // Four lost races in a row: share a way for this packet rather than spin.
        &set[(tag as usize >> 1) % BUCKET_WAYS]
    }

    fn stats(&self) -> TableStats {
        let len = self.sets.iter().flat_map(|s| s.0.iter()).filter(|s| s.tag.load(Relaxed) != 0).count();
        TableStats { len: len as u64, capacity: (self.sets.len() * BUCKET_WAYS) as u64, evictions: 0 }
    }
}

// --- one-word tables (fragments, requests) ---------------------------------------------------

const WORD_WAYS: usize = 8;
/// Bits of expiry time kept in a word slot.
const EXPIRY_BITS: u32 = 24;
const EXPIRY_MASK: u64 = (1 << EXPIRY_BITS) - 1;

#[derive(Debug, Default)]
#[repr(C, align(64))]
struct WordSet([AtomicU64; WORD_WAYS]);

/// A set-associative table of one-word slots: `[tag | payload | expiry:24]`, 0 = free. Expiry is
/// kept in units of `2^unit_shift` ns, modulo 2^24, compared with wrapping arithmetic (an entry
/// is live while its expiry is less than half the range ahead).
#[derive(Debug)]
struct WordTable {
    sets: Box<[WordSet]>,
    shift: u32,
    unit_shift: u32,
    /// Bits of the slot above the expiry that hold the tag (the payload sits between).
    tag_shift: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Hit(u64),
    Miss,
}

impl WordTable {
    fn new(slots: usize, unit_shift: u32, tag_shift: u32) -> WordTable {
        let n = set_count(slots, WORD_WAYS);
        let sets: Vec<WordSet> = (0..n).map(|_| WordSet::default()).collect();
        WordTable { sets: sets.into_boxed_slice(), shift: 64 - n.trailing_zeros(), unit_shift, tag_shift }
    }

    #[inline]
    fn now_units(&self, now_ns: u64) -> u64 {
        (now_ns >> self.unit_shift) & EXPIRY_MASK
    }

    /// Units left before `word` expires (0 when expired or free).
    #[inline]
    fn remaining(word: u64, now: u64) -> u64 {
        if word == 0 {
            return 0;
        }
        let left = (word & EXPIRY_MASK).wrapping_sub(now) & EXPIRY_MASK;
        if left < 1 << (EXPIRY_BITS - 1) { left } else { 0 }
    }

    #[inline]
    fn tag_of(&self, hash: u64) -> u64 {
        // The tag takes the hash's low bits; the set index its high bits. Never zero.
        (hash << self.tag_shift) | (1 << self.tag_shift)
    }

    #[inline]
    fn set(&self, hash: u64) -> &WordSet {
        &self.sets[hash.checked_shr(self.shift).unwrap_or(0) as usize]
    }

    /// Frees the expired slots of the sets in `part` of `parts` equal shares. Expiry wraps
    /// (modulo 2^24 units), so an expired slot nobody overwrites would read as live again half
    /// a cycle later: sweeping every share within that time keeps expired entries expired.
    fn sweep(&self, now_ns: u64, part: usize, parts: usize) {
        let now = self.now_units(now_ns);
        let sets = &self.sets[crate::table::share(self.sets.len(), part, parts)];
        crate::table::free_expired(sets.iter().flat_map(|s| &s.0), |w| Self::remaining(w, now) == 0);
    }

    /// The payload bits (between tag and expiry) of the live entry for `hash`.
    #[inline]
    fn get(&self, hash: u64, now_ns: u64) -> Probe {
        let tag = self.tag_of(hash);
        let tag_mask = u64::MAX << self.tag_shift;
        let now = self.now_units(now_ns);
        for slot in &self.set(hash).0 {
            let w = slot.load(Relaxed);
            if w & tag_mask == tag && Self::remaining(w, now) > 0 {
                return Probe::Hit((w & !tag_mask) >> EXPIRY_BITS);
            }
        }
        Probe::Miss
    }

    /// Stores `payload` for `hash` for `ttl_ns`. Returns true when a live entry of another key
    /// was evicted to make room.
    fn put(&self, hash: u64, payload: u64, now_ns: u64, ttl_ns: u64) -> bool {
        let tag = self.tag_of(hash);
        let tag_mask = u64::MAX << self.tag_shift;
        let now = self.now_units(now_ns);
        let ttl = (ttl_ns >> self.unit_shift).clamp(1, (1 << (EXPIRY_BITS - 1)) - 1);
        let word = tag | ((payload << EXPIRY_BITS) & !tag_mask) | ((now + ttl) & EXPIRY_MASK);
        let set = &self.set(hash).0;
        // Same key: refresh in place.
        for slot in set {
            let w = slot.load(Relaxed);
            if w & tag_mask == tag {
                if slot.compare_exchange(w, word, Relaxed, Relaxed).is_ok() {
                    return false;
                }
                break;
            }
        }
        // Otherwise the free, expired or soonest-expiring way.
        let mut victim = &set[0];
        let mut seen = victim.load(Relaxed);
        let mut left = Self::remaining(seen, now);
        for slot in &set[1..] {
            if left == 0 {
                break;
            }
            let w = slot.load(Relaxed);
            let l = Self::remaining(w, now);
            if l < left {
                (victim, seen, left) = (slot, w, l);
            }
        }
        // Losing a race to another worker loses this entry, which only costs a later packet
        // the fallback path; it is not worth a retry loop.
        victim.compare_exchange(seen, word, Relaxed, Relaxed).is_ok() && left > 0
    }

    fn stats(&self, now_ns: u64) -> TableStats {
        let now = self.now_units(now_ns);
        let len =
            self.sets.iter().flat_map(|s| s.0.iter()).filter(|w| Self::remaining(w.load(Relaxed), now) > 0).count();
        TableStats { len: len as u64, capacity: (self.sets.len() * WORD_WAYS) as u64, evictions: 0 }
    }
}

/// What the first fragment of a datagram was given, for the fragments after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstVerdict {
    /// Admitted without a vector budget (no vector matched, or the vector is allowed/solicited).
    Pass,
    /// Dropped (or, in monitor mode, would have been) as vector `v`.
    Drop(u8),
    /// Admitted within vector `v`'s budget: later fragments are charged its byte budget.
    Limited(u8),
    /// Rejected by a check that runs before this countermeasure (see
    /// `State::first_fragment_rejected`): later fragments are rejected too.
    Rejected,
}

impl FirstVerdict {
    fn encode(self) -> u64 {
        match self {
            FirstVerdict::Pass => 0,
            FirstVerdict::Drop(v) => 0x40 | u64::from(v & 0x3f),
            FirstVerdict::Limited(v) => 0x80 | u64::from(v & 0x3f),
            FirstVerdict::Rejected => 0xc0,
        }
    }

    fn decode(bits: u64) -> FirstVerdict {
        let v = (bits & 0x3f) as u8;
        match bits & 0xc0 {
            0x40 => FirstVerdict::Drop(v),
            0x80 => FirstVerdict::Limited(v),
            0xc0 => FirstVerdict::Rejected,
            _ => FirstVerdict::Pass,
        }
    }
}

/// Which table an eviction happened in (index into a worker's eviction counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Buckets = 0,
    Fragments = 1,
    Requests = 2,
}

/// All cross-worker state of the countermeasure. Create once, share by reference.
#[derive(Debug)]
pub struct Shared {
    hasher: Hasher,
    buckets: Buckets,
    fragments: WordTable,
    requests: WordTable,
}

/// Fragment entries keep expiry in 2^24 ns (≈ 16.8 ms) units: 32-bit tag, 8-bit verdict.
const FRAGMENT_UNIT_SHIFT: u32 = 24;
const FRAGMENT_TAG_SHIFT: u32 = 32;
/// Request entries keep expiry in 2^27 ns (≈ 134 ms) units: 40-bit tag, no payload.
const REQUEST_UNIT_SHIFT: u32 = 27;
const REQUEST_TAG_SHIFT: u32 = 24;

/// Bucket key for the fragment budget of a destination (not a catalogue position).
pub(crate) const FRAGMENT_BUDGET: u64 = 0xff;

/// The datagram a fragment belongs to: source, destination, protocol and identification for
/// IPv4 (RFC 791 §3.2); source, destination and identification for IPv6 (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentKey {
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Upper-layer protocol (IPv4); 0 for IPv6.
    pub protocol: u8,
    /// Identification.
    pub id: u32,
}

impl FragmentKey {
    /// The key of a parsed fragment.
    ///
    /// An IPv6 first fragment is parsed through to its upper layer, while a later one stops at
    /// the Fragment header, whose Next Header may name a header after it (Destination Options,
    /// AH) rather than the upper layer: so IPv6 keys leave the protocol out, as reassembly does.
    #[inline]
    pub fn of(info: &crate::parse::PacketInfo) -> FragmentKey {
        let protocol = if info.src.is_v4() { info.protocol } else { 0 };
        FragmentKey { src: info.src, dst: info.dst, protocol, id: info.frag_id }
    }
}

/// The kind of request a response answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A DNS query: matched on the 16-bit message ID.
    Dns,
    /// An NTP client request: its transmit timestamp comes back as the origin timestamp.
    Ntp,
}

/// The identity of one request/response exchange, seen from the protected host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// What kind of request.
    pub kind: RequestKind,
    /// The protected host.
    pub host: Addr,
    /// The host's port.
    pub host_port: u16,
    /// The server asked.
    pub server: Addr,
    /// The server's port.
    pub server_port: u16,
    /// DNS message ID or NTP transmit timestamp.
    pub id: u64,
}

impl Shared {
    /// Tables sized by `config`, keyed with `seed` (draw it from a CSPRNG at start).
    pub fn new(config: SharedConfig, seed: [u64; 4]) -> Shared {
        Shared {
            hasher: Hasher::new(seed),
            buckets: Buckets::new(config.bucket_slots),
            fragments: WordTable::new(config.fragment_slots, FRAGMENT_UNIT_SHIFT, FRAGMENT_TAG_SHIFT),
            requests: WordTable::new(config.request_slots, REQUEST_UNIT_SHIFT, REQUEST_TAG_SHIFT),
        }
    }

    /// Takes one packet of `bytes` (IP length) from the budget of (`dst`, `key`) if it allows;
    /// `count_packet = false` charges only the byte budget (later fragments of a datagram).
    #[inline]
    pub(crate) fn admit(
        &self,
        (dst, key): (Addr, u64),
        limit: &Limit,
        now_ns: u64,
        bytes: u32,
        count_packet: bool,
        evictions: &mut [u64; 3],
    ) -> bool {
        let [hi, lo] = addr_words(dst);
        let hash = self.hasher.hash(&[hi, lo, key]);
        self.buckets.slot(hash, &mut evictions[Which::Buckets as usize]).admit(now_ns, limit, bytes, count_packet)
    }

    #[inline]
    fn fragment_hash(&self, k: &FragmentKey) -> u64 {
        let [a, b] = addr_words(k.src);
        let [c, d] = addr_words(k.dst);
        self.hasher.hash(&[a, b, c, d, u64::from(k.protocol) << 32 | u64::from(k.id)])
    }

    /// Frees the expired first-fragment verdicts and recorded requests in `part` of `parts`
    /// shares of their tables. Expiry is kept modulo 2^24 units, so an entry nobody overwrites
    /// would read as live again half a cycle after it expired (39 hours for fragments, 13 days
    /// for requests): the daemon sweeps one share a second, the whole tables every `parts` seconds.
    pub fn sweep(&self, now_ns: u64, part: usize, parts: usize) {
        self.fragments.sweep(now_ns, part, parts);
        self.requests.sweep(now_ns, part, parts);
    }

    /// Remembers the verdict of a datagram's first fragment.
    #[inline]
    pub(crate) fn note_first_fragment(
        &self,
        key: &FragmentKey,
        verdict: FirstVerdict,
        now_ns: u64,
        ttl_ns: u64,
        evictions: &mut [u64; 3],
    ) {
        let hash = self.fragment_hash(key);
        if self.fragments.put(hash, verdict.encode(), now_ns, ttl_ns) {
            evictions[Which::Fragments as usize] += 1;
        }
    }

    /// The verdict of the first fragment of the datagram this fragment belongs to, if seen.
    #[inline]
    pub(crate) fn first_fragment(&self, key: &FragmentKey, now_ns: u64) -> Option<FirstVerdict> {
        match self.fragments.get(self.fragment_hash(key), now_ns) {
            Probe::Hit(bits) => Some(FirstVerdict::decode(bits)),
            Probe::Miss => None,
        }
    }

    #[inline]
    fn exchange_hash(&self, e: &Exchange) -> u64 {
        let [a, b] = addr_words(e.host);
        let [c, d] = addr_words(e.server);
        let kind = match e.kind {
            RequestKind::Dns => 1u64,
            RequestKind::Ntp => 2,
        };
        self.hasher.hash(&[a, b, c, d, kind << 32 | u64::from(e.host_port) << 16 | u64::from(e.server_port), e.id])
    }

    /// Records a request a protected host sent, for `ttl_ns`.
    pub(crate) fn note_request(&self, e: &Exchange, now_ns: u64, ttl_ns: u64, evictions: &mut [u64; 3]) {
        if self.requests.put(self.exchange_hash(e), 0, now_ns, ttl_ns) {
            evictions[Which::Requests as usize] += 1;
        }
    }

    /// True when a live request matches this response's exchange.
    #[inline]
    pub(crate) fn requested(&self, e: &Exchange, now_ns: u64) -> bool {
        self.requests.get(self.exchange_hash(e), now_ns) != Probe::Miss
    }

    /// Occupancy and capacity of the budget, fragment and request tables (evictions are
    /// counted by the workers). Scans every slot: for the control plane, not the packet path.
    pub fn table_stats(&self, now_ns: u64) -> [TableStats; 3] {
        [self.buckets.stats(), self.fragments.stats(now_ns), self.requests.stats(now_ns)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn shared() -> Shared {
        Shared::new(SharedConfig { bucket_slots: 64, fragment_slots: 64, request_slots: 64 }, [1, 2, 3, 4])
    }

    #[test]
    fn swept_fragment_verdicts_and_requests_stay_expired_past_the_wrap() {
        let mut ev = [0; 3];
        let k = FragmentKey { src: Addr::v4(1), dst: Addr::v4(2), protocol: 17, id: 0xbeef };
        let e = Exchange {
            kind: RequestKind::Dns,
            host: Addr::v4(1),
            host_port: 5353,
            server: Addr::v4(8),
            server_port: 53,
            id: 7,
        };
        // Half a cycle of the 24-bit expiry after it expired, an entry reads as live again.
        let fragment_back = SEC + 5 * SEC + (1u64 << 47) + SEC;
        let request_back = 11 * SEC + (1u64 << 50) + SEC;
        let unswept = shared();
        unswept.note_first_fragment(&k, FirstVerdict::Drop(5), SEC, 5 * SEC, &mut ev);
        unswept.note_request(&e, SEC, 10 * SEC, &mut ev);
        assert_eq!(unswept.first_fragment(&k, fragment_back), Some(FirstVerdict::Drop(5)));
        assert!(unswept.requested(&e, request_back));
        let s = shared();
        s.note_first_fragment(&k, FirstVerdict::Drop(5), SEC, 5 * SEC, &mut ev);
        s.note_request(&e, SEC, 10 * SEC, &mut ev);
        let live = FragmentKey { id: 0xbef0, ..k };
        s.note_first_fragment(&live, FirstVerdict::Pass, SEC, 60 * SEC, &mut ev);
        for part in 0..3 {
            s.sweep(20 * SEC, part, 3);
        }
        assert_eq!(s.first_fragment(&k, fragment_back), None);
        assert!(!s.requested(&e, request_back));
        assert_eq!(s.first_fragment(&live, 30 * SEC), Some(FirstVerdict::Pass), "live entries survive");
    }

    #[test]
    fn gcra_holds_a_packet_budget_with_its_burst() {
        let s = shared();
        let limit = Limit::new(Rate { pps: 1000, bytes_per_sec: 0, burst_ms: 100 });
        let mut ev = [0; 3];
        let dst = Addr::v4(0xc612_6401);
        let mut ok = 0;
        // 20 000 packets over 2 s (10 kpps offered).
        for i in 0..20_000u64 {
            if s.admit((dst, 1), &limit, SEC + i * 100_000, 100, true, &mut ev) {
                ok += 1;
            }
        }
        // 2 s × 1000 pps plus a 100 ms burst (101 packets).
        assert!((2000..=2102).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn byte_budget_refunds_the_packet_it_rejects() {
        let s = shared();
        let limit = Limit::new(Rate { pps: 1_000_000, bytes_per_sec: 10_000, burst_ms: 100 });
        let mut ev = [0; 3];
        let dst = Addr::v4(7);
        let ok = (0..1000u64).filter(|i| s.admit((dst, 3), &limit, SEC + i * MS, 1000, true, &mut ev)).count();
        // 1 s of 10 kB/s in 1000-byte packets, plus the burst: about 11.
        assert!((10..=13).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn keys_do_not_share_budgets_and_full_sets_evict() {
        let s = Shared::new(SharedConfig { bucket_slots: 4, fragment_slots: 8, request_slots: 8 }, [9; 4]);
        let limit = Limit::new(Rate::pps(1));
        let mut ev = [0; 3];
        for k in 0..4u64 {
            assert!(s.admit((Addr::v4(1), k), &limit, SEC, 60, true, &mut ev));
        }
        assert_eq!(ev[0], 0);
        assert!(s.admit((Addr::v4(1), 99), &limit, SEC, 60, true, &mut ev));
        assert_eq!(ev[0], 1);
        assert_eq!(s.table_stats(SEC)[0].len, 4);
    }

    #[test]
    fn fragment_verdicts_expire() {
        let s = shared();
        let mut ev = [0; 3];
        let k = FragmentKey { src: Addr::v4(1), dst: Addr::v4(2), protocol: 17, id: 0xbeef };
        s.note_first_fragment(&k, FirstVerdict::Drop(5), SEC, 2 * SEC, &mut ev);
        s.note_first_fragment(&FragmentKey { id: 0xbef0, ..k }, FirstVerdict::Limited(63), SEC, 2 * SEC, &mut ev);
        assert_eq!(s.first_fragment(&k, SEC + 100 * MS), Some(FirstVerdict::Drop(5)));
        assert_eq!(s.first_fragment(&FragmentKey { id: 0xbef0, ..k }, SEC), Some(FirstVerdict::Limited(63)));
        assert_eq!(s.first_fragment(&FragmentKey { protocol: 6, ..k }, SEC), None);
        assert_eq!(s.first_fragment(&FragmentKey { src: k.dst, dst: k.src, ..k }, SEC), None);
        assert_eq!(s.first_fragment(&k, 4 * SEC), None);
    }

    #[test]
    fn fragment_table_stays_bounded_under_a_flood() {
        let s = shared();
        let mut ev = [0; 3];
        for id in 0..10_000u32 {
            let k = FragmentKey { src: Addr::v4(id), dst: Addr::v4(2), protocol: 17, id };
            s.note_first_fragment(&k, FirstVerdict::Pass, SEC, 5 * SEC, &mut ev);
        }
        let st = s.table_stats(SEC)[1];
        assert_eq!(st.capacity, 64);
        assert_eq!(st.len, 64);
        assert_eq!(ev[1], 10_000 - 64);
    }

    #[test]
    fn requests_match_exactly() {
        let s = shared();
        let mut ev = [0; 3];
        let e = Exchange {
            kind: RequestKind::Dns,
            host: Addr::v4(10),
            host_port: 40000,
            server: Addr::v4(20),
            server_port: 53,
            id: 0x1234,
        };
        s.note_request(&e, SEC, 5 * SEC, &mut ev);
        assert!(s.requested(&e, 2 * SEC));
        assert!(!s.requested(&Exchange { id: 0x1235, ..e }, 2 * SEC));
        assert!(!s.requested(&Exchange { host_port: 40001, ..e }, 2 * SEC));
        assert!(!s.requested(&Exchange { kind: RequestKind::Ntp, ..e }, 2 * SEC));
        assert!(!s.requested(&e, 7 * SEC));
    }
}
