//! Heavy hitters per drop reason: the top sources and destinations an operator asks about
//! during an attack ("who is this?"), from a bounded Space-Saving summary.
//!
//! Each drop reason keeps `SLOTS` (address, count, error) entries for sources and as many for
//! destinations. An address already tracked gets its count bumped; a new one replaces the entry
//! with the smallest count and inherits it as its error bound (Space-Saving, Metwally et al.), so
//! any address with more than 1/SLOTS of the sampled drops is always in the list. Only one drop in
//! `SAMPLE` on average is recorded (random gaps, so periodic traffic cannot alias with it), which
//! keeps the cost per dropped packet to a counter decrement most of the time; reported counts are
//! scaled back up. Fixed memory, no allocation after construction.

use crate::addr::Addr;
use crate::verdict::DropReason;

/// Entries kept per reason and direction.
pub const SLOTS: usize = 16;
/// One dropped packet in this many is recorded.
pub const SAMPLE: u32 = 8;

/// One tracked address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hitter {
    /// The address.
    pub addr: Addr,
    /// Sampled count (an overestimate by at most `error`).
    pub count: u64,
    /// Count inherited from the entry it replaced.
    pub error: u64,
}

#[derive(Clone, Debug)]
struct Summary {
    slots: [Hitter; SLOTS],
    used: usize,
}

impl Default for Summary {
    fn default() -> Self {
        Summary { slots: [Hitter::default(); SLOTS], used: 0 }
    }
}

impl Summary {
    #[inline]
    fn record(&mut self, addr: Addr, weight: u64) {
        if let Some(h) = self.slots[..self.used].iter_mut().find(|h| h.addr == addr) {
            h.count += weight;
            return;
        }
        if self.used < SLOTS {
            self.slots[self.used] = Hitter { addr, count: weight, error: 0 };
            self.used += 1;
            return;
        }
        let min = self.slots.iter_mut().min_by_key(|h| h.count).expect("SLOTS > 0");
        *min = Hitter { addr, count: min.count + weight, error: min.count };
    }
}

/// Top sources and destinations per drop reason.
#[derive(Clone, Debug)]
pub struct TopTalkers {
    sources: Vec<Summary>,
    destinations: Vec<Summary>,
    countdown: u32,
    rng: u32,
}

impl Default for TopTalkers {
    fn default() -> Self {
        TopTalkers {
            sources: vec![Summary::default(); DropReason::COUNT],
            destinations: vec![Summary::default(); DropReason::COUNT],
            countdown: 0,
            rng: 0x9e37_79b9,
        }
    }
}

impl TopTalkers {
    /// Notes one drop (sampled).
    #[inline]
    pub fn drop_seen(&mut self, reason: DropReason, src: Addr, dst: Addr) {
        if self.countdown > 0 {
            self.countdown -= 1;
            return;
        }
        // A random gap (mean SAMPLE) so periodic traffic cannot alias with the sampling.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.countdown = self.rng % (2 * SAMPLE);
        self.sources[reason.index()].record(src, u64::from(SAMPLE));
        self.destinations[reason.index()].record(dst, u64::from(SAMPLE));
    }

    /// Merges another worker's summary into this one (control plane).
    pub fn merge(&mut self, other: &TopTalkers) {
        for (mine, theirs) in
            self.sources.iter_mut().zip(&other.sources).chain(self.destinations.iter_mut().zip(&other.destinations))
        {
            for h in &theirs.slots[..theirs.used] {
                mine.record(h.addr, h.count);
            }
        }
    }

    /// The top `n` sources dropped for `reason`, largest first.
    pub fn top_sources(&self, reason: DropReason, n: usize) -> Vec<Hitter> {
        top(&self.sources[reason.index()], n)
    }

    /// The top `n` destinations of packets dropped for `reason`, largest first.
    pub fn top_destinations(&self, reason: DropReason, n: usize) -> Vec<Hitter> {
        top(&self.destinations[reason.index()], n)
    }
}

fn top(s: &Summary, n: usize) -> Vec<Hitter> {
    let mut v = s.slots[..s.used].to_vec();
    v.sort_by_key(|h| std::cmp::Reverse(h.count));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_source_surfaces_among_many_light_ones() {
        let mut t = TopTalkers::default();
        let heavy = Addr::v4(0xc612_0107);
        let victim = Addr::v4(0xc612_640a);
        for i in 0..100_000u32 {
            let src = if i % 4 == 0 { heavy } else { Addr::v4(0xc612_0000 | (i % 5000)) };
            t.drop_seen(DropReason::DenyList, src, victim);
        }
        let top = t.top_sources(DropReason::DenyList, 3);
        assert_eq!(top[0].addr, heavy);
        // About a quarter of 100 000 drops, give or take the sampling and the error bound.
        assert!((20_000..=30_000).contains(&top[0].count), "{}", top[0].count);
        assert_eq!(t.top_destinations(DropReason::DenyList, 1)[0].addr, victim);
        assert!(t.top_sources(DropReason::Land, 3).is_empty());
    }

    #[test]
    fn merging_adds_counts_per_address() {
        let mut a = TopTalkers::default();
        let mut b = TopTalkers::default();
        for _ in 0..800 {
            a.drop_seen(DropReason::Land, Addr::v4(1), Addr::v4(9));
            b.drop_seen(DropReason::Land, Addr::v4(1), Addr::v4(9));
        }
        let (ca, cb) = (a.top_sources(DropReason::Land, 1)[0].count, b.top_sources(DropReason::Land, 1)[0].count);
        a.merge(&b);
        assert_eq!(a.top_sources(DropReason::Land, 1)[0].count, ca + cb);
        assert!((1200..=2000).contains(&(ca + cb)), "{}", ca + cb);
    }
}
