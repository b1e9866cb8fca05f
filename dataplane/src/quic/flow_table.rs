//! `FlowTable`: the per-worker QUIC flow table, set-associative so that a lookup can be
//! prefetched.
//!
//! A key hashes (keyed, random per process, as `ClockTable`'s map) to one set of `WAYS` entries.
//! Each set has a tag word, four 16-bit tags from the hash's high bits (0: free way), in a
//! compact array (8 bytes a set: 512 KiB for the default room of 131 072 flows, so it stays in the
//! L2 cache), and four entries of one cache line each: the key's fields, the flow's state, its
//! summary reference and its last packet time. A lookup reads the tag word and only the entry
//! whose tag matches, so a miss (a flood of junk for unknown flows) costs one read of the tag
//! array, and `prefetch` can start exactly the lines the lookup will read. A general hash map's
//! probe reads control bytes, then buckets: two dependent reads a lookup pass would have to
//! wait for.
//!
//! Capacity is fixed: `capacity` rounded up to whole sets of a power-of-two count. Inserting into
//! a full set evicts, and counts it. The victim is the oldest entry not hit since it was
//! inserted, or since its set was last all hit; when every entry of the set was hit, the marks
//! are cleared and the oldest goes. A flood of one-packet flows therefore only ever displaces
//! its own kind while the flows that keep sending hold their places. (A CLOCK hand per set, as
//! in `ClockTable`, does not: with four ways, a burst of five new flows into one set between two
//! packets of a live flow evicts it.) No allocation after construction.

use super::flows::{Flow, FlowKey, FlowState};
use crate::table::TableStats;
use core::hash::BuildHasher;
use hashbrown::DefaultHashBuilder;

/// Entries per set.
pub const WAYS: usize = 4;

const PENDING: u8 = 1;
const ADMITTED: u8 = 2;
const REFUSED: u8 = 3;

/// One entry: a cache line. The key is kept as its fields, so a match is three integer
/// compares.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Entry {
    client: u128,
    server: u128,
    ports: u32,
    kind: u8,
    referenced: bool,
    slot: u32,
    generation: u32,
    summary: (u32, u32),
    last_ns: u64,
}

const _: () = assert!(size_of::<Entry>() == 64);

#[inline]
fn ports(key: &FlowKey) -> u32 {
    u32::from(key.client_port) << 16 | u32::from(key.server_port)
}

impl Entry {
    const FREE: Entry = Entry {
        client: 0,
        server: 0,
        ports: 0,
        kind: ADMITTED,
        referenced: false,
        slot: 0,
        generation: 0,
        summary: (0, 0),
        last_ns: 0,
    };

    #[inline]
    fn holds(&self, key: &FlowKey) -> bool {
        self.client == key.client.0 && self.server == key.server.0 && self.ports == ports(key)
    }

    fn flow(&self) -> Flow {
        let state = match self.kind {
            PENDING => FlowState::Pending { slot: self.slot, generation: self.generation },
            REFUSED => FlowState::Refused,
            _ => FlowState::Admitted,
        };
        Flow { state, last_ns: self.last_ns, summary: self.summary }
    }

    fn set_flow(&mut self, flow: &Flow) {
        (self.kind, self.slot, self.generation) = match flow.state {
            FlowState::Pending { slot, generation } => (PENDING, slot, generation),
            FlowState::Admitted => (ADMITTED, 0, 0),
            FlowState::Refused => (REFUSED, 0, 0),
        };
        self.last_ns = flow.last_ns;
        self.summary = flow.summary;
    }
}

/// What `FlowTable::refresh` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// No entry.
    Absent,
    /// An entry older than the TTL, now removed.
    Expired(Flow),
    /// A live entry, refreshed.
    Live(Flow),
}

/// Fixed-capacity, set-associative flow table. See the module docs.
#[derive(Debug)]
pub struct FlowTable {
    tags: Box<[u64]>,
    entries: Box<[Entry]>,
    mask: usize,
    hasher: DefaultHashBuilder,
    len: usize,
    evictions: u64,
}

/// Where a key lives: its set, its tag, and its entry's index if present.
#[derive(Clone, Copy)]
struct Place {
    set: usize,
    tag: u16,
    found: Option<usize>,
}

impl FlowTable {
    /// A table with room for `flows` flows: twice as many entries. Keys fill sets unevenly, so
    /// a set-associative table starts evicting before every entry is taken; with twice the
    /// entries, about 4 % of `flows` concurrent flows meet a full set (balls into bins: sets of
    /// four at half load), where at full load it would be a fifth.
    pub fn for_flows(flows: usize) -> FlowTable {
        FlowTable::new(flows.saturating_mul(2))
    }

    /// A table of at least `capacity` entries (whole sets, a power-of-two count of them).
    pub fn new(capacity: usize) -> FlowTable {
        let sets = crate::table::set_count(capacity, WAYS);
        FlowTable {
            tags: vec![0; sets].into_boxed_slice(),
            entries: vec![Entry::FREE; sets * WAYS].into_boxed_slice(),
            mask: sets - 1,
            hasher: DefaultHashBuilder::default(),
            len: 0,
            evictions: 0,
        }
    }

    /// The set and tag of `key`: the hash's low bits pick the set, its top 16 bits (never 0,
    /// which marks a free way) are the tag.
    #[inline]
    fn slot_of(&self, key: &FlowKey) -> (usize, u16) {
        let hash = self.hasher.hash_one(key);
        ((hash as usize) & self.mask, ((hash >> 48) as u16).max(1))
    }

    /// Ways of `set` whose tag may be `tag`, as a bit mask: every match, and rarely a way above
    /// a match as well (the lane test below borrows across lanes), which the key compare then
    /// rejects.
    #[inline]
    fn matching(&self, set: usize, tag: u16) -> u32 {
        const LOW: u64 = 0x0001_0001_0001_0001;
        const HIGH: u64 = 0x8000_8000_8000_8000;
        let x = self.tags[set] ^ (u64::from(tag) * LOW);
        let zero = x.wrapping_sub(LOW) & !x & HIGH;
        ((zero >> 15) & 1 | (zero >> 30) & 2 | (zero >> 45) & 4 | (zero >> 60) & 8) as u32
    }

    #[inline]
    fn set_tag(&mut self, set: usize, way: usize, tag: u16) {
        let shift = 16 * way;
        self.tags[set] = (self.tags[set] & !(0xffff << shift)) | u64::from(tag) << shift;
    }

    #[inline]
    fn find(&self, key: &FlowKey) -> Place {
        let (set, tag) = self.slot_of(key);
        let mut ways = self.matching(set, tag);
        while ways != 0 {
            let i = set * WAYS + ways.trailing_zeros() as usize;
            if self.entries[i].holds(key) {
                return Place { set, tag, found: Some(i) };
            }
            ways &= ways - 1;
        }
        Place { set, tag, found: None }
    }

    /// Starts loading what a lookup of `key` reads: the set's tag word, and the entries whose
    /// tag matches (read from the tag word, which the L2 cache usually holds); with `all_ways`,
    /// every entry of the set, for a packet that may insert and so evict.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey, all_ways: bool) {
        let (set, tag) = self.slot_of(key);
        crate::xsk::prefetch_ref(&self.tags[set]);
        let ways = if all_ways { (1 << WAYS) - 1 } else { self.matching(set, tag) };
        for w in 0..WAYS {
            if ways & 1 << w != 0 {
                crate::xsk::prefetch_ref(&self.entries[set * WAYS + w]);
            }
        }
    }

    /// Frees entry `i` of `set`.
    #[inline]
    fn free(&mut self, set: usize, i: usize) {
        self.set_tag(set, i % WAYS, 0);
        self.len -= 1;
    }

    /// The flow of `key`, without marking it used.
    #[inline]
    pub fn peek(&self, key: &FlowKey) -> Option<Flow> {
        self.find(key).found.map(|i| self.entries[i].flow())
    }

    /// `key`'s flow after a packet at `now_ns`: absent; expired (no packet for over `ttl_ns`:
    /// removed, and returned); or live (its last packet time set to `now_ns` and marked used).
    #[inline]
    pub fn refresh(&mut self, key: &FlowKey, now_ns: u64, ttl_ns: u64) -> Refresh {
        let Place { set, found: Some(i), .. } = self.find(key) else {
            return Refresh::Absent;
        };
        let e = &mut self.entries[i];
        if now_ns.saturating_sub(e.last_ns) > ttl_ns {
            let flow = e.flow();
            self.free(set, i);
            return Refresh::Expired(flow);
        }
        e.last_ns = now_ns;
        e.referenced = true;
        Refresh::Live(e.flow())
    }

    /// Removes `key`, returning its flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let Place { set, found: Some(i), .. } = self.find(key) else {
            return None;
        };
        let flow = self.entries[i].flow();
        self.free(set, i);
        Some(flow)
    }

    /// Inserts or replaces `key`'s flow. Returns the flow evicted to make room, if one was.
    pub fn insert(&mut self, key: FlowKey, flow: Flow) -> Option<Flow> {
        let Place { set, tag, found } = self.find(&key);
        if let Some(i) = found {
            let e = &mut self.entries[i];
            e.set_flow(&flow);
            e.referenced = true;
            return None;
        }
        // Free ways have tag 0; the lowest lane the lane test reports is always a true match.
        let free = self.matching(set, 0);
        let (way, evicted) = match free {
            0 => {
                let way = self.victim(set);
                self.evictions += 1;
                (way, Some(self.entries[set * WAYS + way].flow()))
            }
            _ => {
                self.len += 1;
                (free.trailing_zeros() as usize, None)
            }
        };
        self.set_tag(set, way, tag);
        // New entries start unreferenced: a flow seen once is the first to go under a flood.
        let e = &mut self.entries[set * WAYS + way];
        *e = Entry { client: key.client.0, server: key.server.0, ports: ports(&key), ..Entry::FREE };
        e.set_flow(&flow);
        evicted
    }

    /// The way of a full `set` to evict: the oldest not hit since insertion (or since the set's
    /// marks were last cleared); when all were hit, the marks are cleared and the oldest goes.
    fn victim(&mut self, set: usize) -> usize {
        let entries = &mut self.entries[set * WAYS..(set + 1) * WAYS];
        let oldest = |entries: &[Entry], unhit_only: bool| {
            (0..WAYS).filter(|&w| !(unhit_only && entries[w].referenced)).min_by_key(|&w| entries[w].last_ns)
        };
        if let Some(w) = oldest(entries, true) {
            return w;
        }
        for e in entries.iter_mut() {
            e.referenced = false;
        }
        oldest(entries, false).unwrap_or(0)
    }

    /// Occupancy and eviction figures.
    pub fn stats(&self) -> TableStats {
        TableStats { len: self.len as u64, capacity: self.entries.len() as u64, evictions: self.evictions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            client: Addr::from(std::net::IpAddr::from([198, 18, (i >> 8) as u8, i as u8])),
            server: Addr::from(std::net::IpAddr::from([198, 18, 100, 10])),
            client_port: 40000 + (i % 1000) as u16,
            server_port: 443,
        }
    }

    fn admitted(t: u64) -> Flow {
        Flow { state: FlowState::Admitted, last_ns: t, summary: (0, 0) }
    }

    #[test]
    fn entries_are_one_line_and_every_state_round_trips() {
        let mut t = FlowTable::new(8);
        let states = [FlowState::Pending { slot: 7, generation: 9 }, FlowState::Admitted, FlowState::Refused];
        for (i, state) in states.into_iter().enumerate() {
            let flow = Flow { state, last_ns: 100 + i as u64, summary: (3, 4) };
            t.insert(key(i as u32), flow);
            assert_eq!(t.peek(&key(i as u32)), Some(flow));
        }
        assert!(matches!(t.refresh(&key(1), 500, 1000), Refresh::Live(f) if f.last_ns == 500));
        assert!(matches!(t.refresh(&key(2), 5000, 1000), Refresh::Expired(f) if f.state == FlowState::Refused));
        assert_eq!(t.refresh(&key(2), 5000, 1000), Refresh::Absent);
        assert_eq!(t.remove(&key(0)).map(|f| f.state), Some(FlowState::Pending { slot: 7, generation: 9 }));
        assert_eq!(t.peek(&key(0)), None);
        assert_eq!(t.stats().len, 1);
    }

    #[test]
    fn a_full_table_evicts_within_bounds_and_counts() {
        let mut t = FlowTable::new(64);
        assert_eq!(t.stats().capacity, 64);
        for i in 0..10_000 {
            t.insert(key(i), admitted(u64::from(i)));
        }
        let s = t.stats();
        assert_eq!((s.len, s.capacity), (64, 64));
        assert_eq!(s.evictions, 10_000 - 64);
        // The latest key is always present: an insert never evicts the entry it writes.
        assert!(t.peek(&key(9_999)).is_some());
    }

    #[test]
    fn flows_that_keep_sending_survive_a_flood_of_new_ones() {
        let mut t = FlowTable::new(4096);
        let live: Vec<FlowKey> = (0..256).map(|i| key(1_000_000 + i)).collect();
        for k in &live {
            t.insert(*k, admitted(0));
            t.refresh(k, 1, u64::MAX);
        }
        // 16 flood flows per live one between its packets: every set sees four new flows per
        // round on average, often more, which a per-set CLOCK hand would not survive.
        for round in 0..64u32 {
            for i in 0..256 * 16 {
                t.insert(key(round * 100_000 + i), admitted(1));
            }
            for k in &live {
                t.refresh(k, 2, u64::MAX);
            }
        }
        let kept = live.iter().filter(|k| t.peek(k).is_some()).count();
        assert!(kept >= 250, "only {kept} of 256 live flows kept");
        assert!(t.stats().evictions > 0);
    }

    #[test]
    fn tag_matching_finds_every_equal_lane() {
        let mut t = FlowTable::new(4);
        for (word, tag) in
            [(0u64, 1u16), (0x0001_0002_0001_0000, 1), (0xffff_0000_ffff_0001, 0xffff), (u64::MAX, 0xfffe)]
        {
            t.tags[0] = word;
            let exact = (0..WAYS).filter(|&w| (word >> (16 * w)) as u16 == tag).fold(0u32, |m, w| m | 1 << w);
            let got = t.matching(0, tag);
            assert_eq!(got & exact, exact, "{word:#x} {tag:#x}: every match reported");
            // Extra lanes only above a true match (a borrow).
            if exact == 0 {
                assert_eq!(got, 0, "{word:#x} {tag:#x}");
            }
        }
    }

    #[test]
    fn a_table_for_n_flows_holds_nearly_all_of_n() {
        let n = 4096;
        let mut t = FlowTable::for_flows(n);
        for i in 0..n as u32 {
            t.insert(key(i), admitted(u64::from(i)));
        }
        let s = t.stats();
        assert_eq!(s.capacity, 2 * n as u64);
        // About 4 % expected (the hash seed is random per run); a tenth fails the sizing.
        assert!(s.evictions < n as u64 / 10, "{} of {n} flows evicted", s.evictions);
        assert_eq!(s.len + s.evictions, n as u64);
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut t = FlowTable::new(4);
        t.insert(key(1), admitted(1));
        assert_eq!(t.insert(key(1), admitted(2)), None);
        assert_eq!(t.stats().len, 1);
        assert_eq!(t.peek(&key(1)).map(|f| f.last_ns), Some(2));
    }
}
