//! `FlowTable`: the per-worker QUIC flow table, set-associative so that a lookup can be
//! prefetched.
//!
//! A key hashes (keyed, random per process, as `ClockTable`'s map) to one set of `WAYS` entries,
//! each entry one cache line: the key's bytes, the flow's state, its summary reference and its
//! last packet time. `prefetch` starts the set's lines without reading anything, so the
//! pipeline's lookup pass overlaps the misses of a whole batch. A general hash map cannot offer
//! that: its probe reads control bytes, then buckets, two dependent reads that a lookup pass
//! would have to wait for.
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

const EMPTY: u8 = 0;
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
        kind: EMPTY,
        referenced: false,
        slot: 0,
        generation: 0,
        summary: (0, 0),
        last_ns: 0,
    };

    #[inline]
    fn holds(&self, key: &FlowKey) -> bool {
        self.kind != EMPTY && self.client == key.client.0 && self.server == key.server.0 && self.ports == ports(key)
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
    entries: Box<[Entry]>,
    mask: usize,
    hasher: DefaultHashBuilder,
    len: usize,
    evictions: u64,
}

impl FlowTable {
    /// A table of at least `capacity` entries (whole sets, a power-of-two count of them).
    pub fn new(capacity: usize) -> FlowTable {
        let sets = capacity.max(1).div_ceil(WAYS).next_power_of_two();
        FlowTable {
            entries: vec![Entry::FREE; sets * WAYS].into_boxed_slice(),
            mask: sets - 1,
            hasher: DefaultHashBuilder::default(),
            len: 0,
            evictions: 0,
        }
    }

    #[inline]
    fn set_of(&self, key: &FlowKey) -> usize {
        (self.hasher.hash_one(key) as usize) & self.mask
    }

    #[inline]
    fn set(&self, set: usize) -> &[Entry] {
        &self.entries[set * WAYS..(set + 1) * WAYS]
    }

    /// The set of `key` and, if present, the index of its entry.
    #[inline]
    fn find(&self, key: &FlowKey) -> (usize, Option<usize>) {
        let set = self.set_of(key);
        let way = self.set(set).iter().position(|e| e.holds(key));
        (set, way.map(|w| set * WAYS + w))
    }

    /// Starts loading the lines a lookup of `key` reads; reads nothing itself.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        for e in self.set(self.set_of(key)) {
            crate::xsk::prefetch_ref(e);
        }
    }

    /// The flow of `key`, without marking it used.
    #[inline]
    pub fn peek(&self, key: &FlowKey) -> Option<Flow> {
        self.find(key).1.map(|i| self.entries[i].flow())
    }

    /// `key`'s flow after a packet at `now_ns`: absent; expired (no packet for over `ttl_ns`:
    /// removed, and returned); or live (its last packet time set to `now_ns` and marked used).
    #[inline]
    pub fn refresh(&mut self, key: &FlowKey, now_ns: u64, ttl_ns: u64) -> Refresh {
        let Some(i) = self.find(key).1 else {
            return Refresh::Absent;
        };
        let e = &mut self.entries[i];
        if now_ns.saturating_sub(e.last_ns) > ttl_ns {
            let flow = e.flow();
            *e = Entry::FREE;
            self.len -= 1;
            return Refresh::Expired(flow);
        }
        e.last_ns = now_ns;
        e.referenced = true;
        Refresh::Live(e.flow())
    }

    /// Removes `key`, returning its flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let i = self.find(key).1?;
        let flow = self.entries[i].flow();
        self.entries[i] = Entry::FREE;
        self.len -= 1;
        Some(flow)
    }

    /// Inserts or replaces `key`'s flow. Returns the flow evicted to make room, if one was.
    pub fn insert(&mut self, key: FlowKey, flow: Flow) -> Option<Flow> {
        let (set, found) = self.find(&key);
        if let Some(i) = found {
            let e = &mut self.entries[i];
            e.set_flow(&flow);
            e.referenced = true;
            return None;
        }
        let (i, evicted) = match self.set(set).iter().position(|e| e.kind == EMPTY) {
            Some(way) => {
                self.len += 1;
                (set * WAYS + way, None)
            }
            None => {
                let i = self.victim(set);
                self.evictions += 1;
                (i, Some(self.entries[i].flow()))
            }
        };
        // New entries start unreferenced: a flow seen once is the first to go under a flood.
        let e = &mut self.entries[i];
        *e = Entry { client: key.client.0, server: key.server.0, ports: ports(&key), ..Entry::FREE };
        e.set_flow(&flow);
        evicted
    }

    /// The entry of a full `set` to evict: the oldest not hit since insertion (or since the
    /// set's marks were last cleared); when all were hit, the marks are cleared and the oldest
    /// goes.
    fn victim(&mut self, set: usize) -> usize {
        let range = set * WAYS..(set + 1) * WAYS;
        let oldest = |entries: &[Entry], unhit_only: bool| {
            range.clone().filter(|&i| !(unhit_only && entries[i].referenced)).min_by_key(|&i| entries[i].last_ns)
        };
        if let Some(i) = oldest(&self.entries, true) {
            return i;
        }
        for e in &mut self.entries[range.clone()] {
            e.referenced = false;
        }
        oldest(&self.entries, false).unwrap_or(range.start)
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
    fn replacing_a_key_keeps_one_entry() {
        let mut t = FlowTable::new(4);
        t.insert(key(1), admitted(1));
        assert_eq!(t.insert(key(1), admitted(2)), None);
        assert_eq!(t.stats().len, 1);
        assert_eq!(t.peek(&key(1)).map(|f| f.last_ns), Some(2));
    }
}
