//! `when = "auto"`: SYN authentication per protected prefix, switched on by its SYN rate.
//!
//! Contract: a prefix switches on as soon as the SYN rate toward it, measured over windows of
//! `WINDOW_NS`, reaches `on_pps`; it switches off once the rate has stayed below `off_pps` for
//! `hold`. The state lives in `AutoTable`, shared by every worker (lock-free: one cache line of
//! atomics per prefix, claimed on first use, never freed until restart), so all workers agree.
//! Workers count SYNs locally (`AutoCounts`) and add them to the shared line in quanta of
//! `FLUSH_QUANTUM` SYNs or every `FLUSH_NS`, so a flood costs one shared atomic add per quantum.
//! Whoever adds a count at a window's end evaluates it (one wins the compare-and-swap); the
//! control plane calls `AutoTable::evaluate` periodically so a prefix that went quiet switches
//! off too, reads `AutoTable::status` to show which prefixes are active, and logs a switch when
//! `switched_on`/`switched_off` change. Each switch is also counted by the worker (or caller)
//! that made it (`Event::SynAutoOn` / `SynAutoOff`).
//!
//! A prefix is keyed by a 64-bit fingerprint of its CIDR (prefixes come from the config, not the
//! wire). With every slot taken, a new prefix has no slot and is treated as always on (counted
//! as `Event::SynAutoNoSlot`): failing towards protection, never towards a silent bypass.

use crate::addr::Cidr;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Length of one rate-measurement window.
pub const WINDOW_NS: u64 = 100_000_000;
/// SYNs a worker counts locally before adding them to the shared line.
pub const FLUSH_QUANTUM: u32 = 64;
/// Longest a worker keeps a local count before adding it.
pub const FLUSH_NS: u64 = 10_000_000;

const NONE: u64 = u64::MAX;
const SEC: u128 = 1_000_000_000;

/// Thresholds of `when = "auto"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// SYNs per second toward the prefix that switch authentication on.
    pub on_pps: u64,
    /// SYNs per second below which it may switch off (≤ `on_pps`).
    pub off_pps: u64,
    /// How long the rate must stay below `off_pps` before switching off (nanoseconds).
    pub hold_ns: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { on_pps: 5_000, off_pps: 1_000, hold_ns: 60 * 1_000_000_000 }
    }
}

/// A switch made by an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Switched on.
    On,
    /// Switched off.
    Off,
}

/// What the control plane sees of one prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// SYN authentication is on for the prefix.
    pub active: bool,
    /// SYN rate measured over the last complete window.
    pub syn_pps: u64,
    /// Times it switched on since start.
    pub switched_on: u64,
    /// Times it switched off since start.
    pub switched_off: u64,
}

#[repr(C, align(64))]
#[derive(Debug)]
struct Slot {
    key: AtomicU64,
    window_start: AtomicU64,
    count: AtomicU64,
    active: AtomicU64,
    below_since: AtomicU64,
    rate: AtomicU64,
    ons: AtomicU64,
    offs: AtomicU64,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            key: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            count: AtomicU64::new(0),
            active: AtomicU64::new(0),
            below_since: AtomicU64::new(NONE),
            rate: AtomicU64::new(0),
            ons: AtomicU64::new(0),
            offs: AtomicU64::new(0),
        }
    }
}

/// Per-prefix auto state shared by all workers. See the module docs.
#[derive(Debug)]
pub struct AutoTable {
    slots: Box<[Slot]>,
    mask: usize,
}

/// Fingerprint of a prefix (never 0, the free-slot mark).
fn fingerprint(cidr: Cidr) -> u64 {
    let (net, len, family) = match cidr {
        Cidr::V4(n, l) => (u128::from(n), l, 4u64),
        Cidr::V6(n, l) => (n, l, 6u64),
    };
    // splitmix64 over the words: a fixed, well-mixed function (keys come from the config).
    let mut x = family << 8 | u64::from(len);
    for word in [net as u64, (net >> 64) as u64] {
        x = (x ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    x.max(1)
}

impl AutoTable {
    /// A table with room for at least `capacity` prefixes.
    pub fn new(capacity: usize) -> AutoTable {
        let n = capacity.max(1).next_power_of_two();
        AutoTable { slots: (0..n).map(|_| Slot::default()).collect(), mask: n - 1 }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slot of `cidr`, if it has one.
    #[inline]
    pub fn find(&self, cidr: Cidr) -> Option<usize> {
        let fp = fingerprint(cidr);
        let mut i = fp as usize & self.mask;
        for _ in 0..self.slots.len() {
            match self.slots[i].key.load(Relaxed) {
                0 => return None,
                k if k == fp => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// The slot of `cidr`, claiming a free one at `now_ns` when it has none. None when full.
    #[inline]
    pub fn slot(&self, cidr: Cidr, now_ns: u64) -> Option<usize> {
        let fp = fingerprint(cidr);
        let mut i = fp as usize & self.mask;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.key.load(Relaxed) {
                k if k == fp => return Some(i),
                0 => {
                    match slot.key.compare_exchange(0, fp, Relaxed, Relaxed) {
                        Ok(_) => {
                            // A worker reading the slot before this store sees one long, quiet
                            // window: harmless (it cannot switch anything on).
                            slot.window_start.store(now_ns, Relaxed);
                            return Some(i);
                        }
                        Err(k) if k == fp => return Some(i),
                        Err(_) => i = (i + 1) & self.mask,
                    }
                }
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// True when authentication is on for the prefix in slot `i`.
    #[inline]
    pub fn is_active(&self, i: usize) -> bool {
        self.slots[i].active.load(Relaxed) != 0
    }

    /// Adds `syns` SYNs to slot `i` at `now_ns` and evaluates the window; returns a switch made.
    pub fn add(&self, i: usize, syns: u64, now_ns: u64, t: &Thresholds) -> Option<Switch> {
        let slot = &self.slots[i];
        let count = slot.count.fetch_add(syns, Relaxed).wrapping_add(syns);
        let start = slot.window_start.load(Relaxed);
        let elapsed = now_ns.saturating_sub(start);
        // Switch on within the window as soon as the count says the rate is reached.
        if slot.active.load(Relaxed) == 0 && reaches(count, elapsed.max(WINDOW_NS), t.on_pps) {
            return self.switch_on(slot);
        }
        if elapsed < WINDOW_NS {
            return None;
        }
        if slot.window_start.compare_exchange(start, now_ns, Relaxed, Relaxed).is_err() {
            return None; // another worker closes this window
        }
        let count = slot.count.swap(0, Relaxed);
        let rate = (u128::from(count) * SEC / u128::from(elapsed)).min(u128::from(u64::MAX)) as u64;
        slot.rate.store(rate, Relaxed);
        if slot.active.load(Relaxed) == 0 {
            return if rate >= t.on_pps.max(1) { self.switch_on(slot) } else { None };
        }
        if rate >= t.off_pps {
            slot.below_since.store(NONE, Relaxed);
            return None;
        }
        let mut since = slot.below_since.load(Relaxed);
        if since == NONE {
            // Below since this window began (a long quiet window counts whole).
            since = start;
            slot.below_since.store(since, Relaxed);
        }
        if now_ns.saturating_sub(since) >= t.hold_ns && slot.active.compare_exchange(1, 0, Relaxed, Relaxed).is_ok() {
            slot.below_since.store(NONE, Relaxed);
            slot.offs.fetch_add(1, Relaxed);
            return Some(Switch::Off);
        }
        None
    }

    fn switch_on(&self, slot: &Slot) -> Option<Switch> {
        if slot.active.compare_exchange(0, 1, Relaxed, Relaxed).is_ok() {
            slot.below_since.store(NONE, Relaxed);
            slot.ons.fetch_add(1, Relaxed);
            Some(Switch::On)
        } else {
            None
        }
    }

    /// Evaluates `cidr`'s window at `now_ns` without adding SYNs (the control plane's periodic
    /// call, so a prefix that went quiet switches off). None when it has no slot or no switch.
    pub fn evaluate(&self, cidr: Cidr, now_ns: u64, t: &Thresholds) -> Option<Switch> {
        self.find(cidr).and_then(|i| self.add(i, 0, now_ns, t))
    }

    /// The state of `cidr` (None: no SYN toward it since start, so never active).
    pub fn status(&self, cidr: Cidr) -> Option<Status> {
        let slot = &self.slots[self.find(cidr)?];
        Some(Status {
            active: slot.active.load(Relaxed) != 0,
            syn_pps: slot.rate.load(Relaxed),
            switched_on: slot.ons.load(Relaxed),
            switched_off: slot.offs.load(Relaxed),
        })
    }

    /// The prefixes among `cidrs` whose authentication is on, with their status.
    pub fn active(&self, cidrs: impl IntoIterator<Item = Cidr>) -> Vec<(Cidr, Status)> {
        cidrs.into_iter().filter_map(|c| self.status(c).filter(|s| s.active).map(|s| (c, s))).collect()
    }
}

/// True when `count` SYNs over `window_ns` reach `pps`.
#[inline]
fn reaches(count: u64, window_ns: u64, pps: u64) -> bool {
    u128::from(count) * SEC >= u128::from(pps.max(1)) * u128::from(window_ns)
}

/// A worker's local SYN counts per auto slot, added to the shared table in quanta.
#[derive(Debug)]
pub struct AutoCounts {
    pending: Box<[u32]>,
    /// Slots counted toward since the last timed flush (each once: `listed` marks them), so the
    /// list never outgrows the capacity it was given.
    dirty: Vec<u32>,
    listed: Box<[bool]>,
    next_flush_ns: u64,
}

impl AutoCounts {
    /// Local counts for a shared table of `capacity` slots.
    pub fn new(capacity: usize) -> AutoCounts {
        let n = capacity.max(1).next_power_of_two();
        AutoCounts {
            pending: vec![0; n].into_boxed_slice(),
            dirty: Vec::with_capacity(n),
            listed: vec![false; n].into_boxed_slice(),
            next_flush_ns: 0,
        }
    }

    /// Counts one SYN toward slot `i`; adds local counts to the shared table when a quantum is
    /// full or the flush timer ran out. Calls `on_switch` for each switch made.
    #[inline]
    pub fn count(
        &mut self,
        table: &AutoTable,
        i: usize,
        now_ns: u64,
        t: &Thresholds,
        mut on_switch: impl FnMut(Switch),
    ) {
        let (Some(p), Some(listed)) = (self.pending.get_mut(i), self.listed.get_mut(i)) else { return };
        if !*listed {
            *listed = true;
            self.dirty.push(i as u32);
        }
        *p += 1;
        if *p >= FLUSH_QUANTUM {
            let n = core::mem::take(p);
            if let Some(s) = table.add(i, u64::from(n), now_ns, t) {
                on_switch(s);
            }
        }
        if now_ns >= self.next_flush_ns {
            self.next_flush_ns = now_ns.saturating_add(FLUSH_NS);
            // Flushes every slot this worker counted toward, with this prefix's thresholds for
            // the slot at hand and no switch-off elsewhere (those are evaluated at their next
            // SYN or by the control plane's periodic `evaluate`).
            for &j in &self.dirty {
                let j = j as usize;
                self.listed[j] = false;
                let n = core::mem::take(&mut self.pending[j]);
                if n == 0 {
                    continue;
                }
                if j == i {
                    if let Some(s) = table.add(j, u64::from(n), now_ns, t) {
                        on_switch(s);
                    }
                } else {
                    table.slots[j].count.fetch_add(u64::from(n), Relaxed);
                }
            }
            self.dirty.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn t() -> Thresholds {
        Thresholds { on_pps: 1_000, off_pps: 100, hold_ns: 1_000 * MS }
    }

    /// Offers `pps` SYNs per second from `from` for `secs`, through one worker's counts.
    fn offer(
        table: &AutoTable,
        counts: &mut AutoCounts,
        cidr: Cidr,
        from: u64,
        secs: f64,
        pps: u64,
    ) -> (u64, Vec<(u64, Switch)>) {
        let mut switches = Vec::new();
        let n = (secs * pps as f64) as u64;
        let step = 1_000_000_000 / pps;
        let mut now = from;
        for _ in 0..n {
            let i = table.slot(cidr, now).unwrap();
            counts.count(table, i, now, &t(), |s| switches.push((now, s)));
            now += step;
        }
        (now, switches)
    }

    #[test]
    fn switches_on_above_and_off_after_the_hold() {
        let table = AutoTable::new(16);
        let mut counts = AutoCounts::new(16);
        let p = c("198.18.100.0/24");
        let (now, sw) = offer(&table, &mut counts, p, 0, 1.0, 500);
        assert!(sw.is_empty(), "500 pps stays below 1000: {sw:?}");
        assert!(!table.status(p).unwrap().active);
        let (now, sw) = offer(&table, &mut counts, p, now, 1.0, 20_000);
        assert_eq!(sw.len(), 1);
        assert_eq!(sw[0].1, Switch::On);
        assert!(sw[0].0 - 1_000 * MS < 150 * MS, "on within ~one window of the flood: {}", sw[0].0);
        let (now, sw) = offer(&table, &mut counts, p, now, 0.5, 50);
        assert!(sw.is_empty(), "below off_pps but not for the hold yet");
        let (_, sw) = offer(&table, &mut counts, p, now, 1.0, 50);
        assert_eq!(sw.iter().map(|s| s.1).collect::<Vec<_>>(), vec![Switch::Off]);
        let s = table.status(p).unwrap();
        assert_eq!((s.active, s.switched_on, s.switched_off), (false, 1, 1));
    }

    #[test]
    fn between_thresholds_stays_on() {
        let table = AutoTable::new(16);
        let mut counts = AutoCounts::new(16);
        let p = c("2001:2:0:100::/64");
        let (now, sw) = offer(&table, &mut counts, p, 0, 0.5, 5_000);
        assert_eq!(sw.len(), 1);
        let (_, sw) = offer(&table, &mut counts, p, now, 5.0, 500);
        assert!(sw.is_empty(), "500 pps is between off (100) and on (1000): {sw:?}");
        assert!(table.status(p).unwrap().active);
    }

    #[test]
    fn quiet_prefix_switches_off_on_evaluate() {
        let table = AutoTable::new(16);
        let mut counts = AutoCounts::new(16);
        let p = c("198.18.100.0/24");
        let (now, _) = offer(&table, &mut counts, p, 0, 0.5, 10_000);
        assert!(table.status(p).unwrap().active);
        assert_eq!(table.evaluate(p, now + 10 * MS, &t()), None);
        assert_eq!(table.evaluate(p, now + 5_000 * MS, &t()), Some(Switch::Off));
        assert_eq!(table.active([p]), vec![]);
        assert_eq!(table.evaluate(c("198.18.101.0/24"), now, &t()), None);
    }

    #[test]
    fn workers_add_up() {
        let table = AutoTable::new(16);
        let p = c("198.18.100.0/24");
        let mut a = AutoCounts::new(16);
        let mut b = AutoCounts::new(16);
        // Each worker sees 600 pps: neither alone crosses 1000, together they do.
        let mut on = 0;
        let mut now = 0;
        for _ in 0..1200 {
            let i = table.slot(p, now).unwrap();
            a.count(&table, i, now, &t(), |_| on += 1);
            b.count(&table, i, now, &t(), |_| on += 1);
            now += 1_000_000_000 / 600;
        }
        assert_eq!(on, 1);
        assert!(table.is_active(table.find(p).unwrap()));
    }

    #[test]
    fn local_list_stays_within_its_capacity() {
        let table = AutoTable::new(4);
        let mut counts = AutoCounts::new(4);
        let p = c("198.18.100.0/24");
        let i = table.slot(p, 0).unwrap();
        // A million SYNs within one flush interval: many quanta, one list entry.
        counts.count(&table, i, 0, &t(), |_| {});
        for _ in 0..1_000_000 {
            counts.count(&table, i, 1, &t(), |_| {});
        }
        assert_eq!(counts.dirty.len(), 1);
        assert!(counts.dirty.capacity() <= 4);
    }

    #[test]
    fn full_table_has_no_slot() {
        let table = AutoTable::new(2);
        assert!(table.slot(c("10.0.0.0/8"), 0).is_some());
        assert!(table.slot(c("10.0.0.0/9"), 0).is_some());
        assert!(table.slot(c("10.0.0.0/10"), 0).is_none());
        assert_eq!(table.slot(c("10.0.0.0/8"), 0), table.find(c("10.0.0.0/8")));
    }
}
