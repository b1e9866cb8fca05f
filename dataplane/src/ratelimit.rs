//! Token buckets for packet and byte budgets.
//!
//! A `Rate` is a budget (packets/s and/or bytes/s, 0 meaning unlimited in that dimension) with a
//! burst expressed as a time window. A `TokenBucket` is the per-key state: two token counts in
//! nano-units (token × 1e9) and the time of the last refill, so refills are exact integer
//! arithmetic on monotonic nanoseconds. Buckets live in per-worker `ClockTable`s; a budget that
//! must hold for the appliance as a whole is divided by the number of workers (`Rate::per_worker`),
//! which is exact when RSS spreads the keys evenly and conservative otherwise.

/// Nano-units per token.
const NANO: u128 = 1_000_000_000;

/// A packet and byte budget. Zero in a dimension means unlimited in that dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Packets per second.
    pub pps: u64,
    /// Bytes per second (IP length).
    pub bytes_per_sec: u64,
    /// Burst window in milliseconds: the bucket holds this much time's worth of tokens.
    pub burst_ms: u32,
}

impl Rate {
    /// Default burst window.
    pub const DEFAULT_BURST_MS: u32 = 100;

    /// A packets-per-second budget with the default burst.
    pub const fn pps(pps: u64) -> Rate {
        Rate { pps, bytes_per_sec: 0, burst_ms: Self::DEFAULT_BURST_MS }
    }

    /// This budget split evenly over `workers` (each keeps at least 1 unit per second).
    pub fn per_worker(self, workers: u32) -> Rate {
        let n = u64::from(workers.max(1));
        let split = |v: u64| if v == 0 { 0 } else { v.div_ceil(n).max(1) };
        Rate { pps: split(self.pps), bytes_per_sec: split(self.bytes_per_sec), burst_ms: self.burst_ms }
    }

    /// Packet bucket depth in nano-units: the burst window's worth, at least one packet.
    #[inline]
    fn packet_depth(self) -> u128 {
        (u128::from(self.pps) * u128::from(self.burst_ms.max(1)) * NANO / 1000).max(NANO)
    }

    /// Byte bucket depth in nano-units: the burst window's worth, at least `MIN_BYTE_DEPTH`. A
    /// bucket shallower than a packet could never admit that packet: a small byte budget
    /// (64 kbit/s, or 1 Mbit/s split over 16 workers) would drop every full-size packet
    /// instead of limiting them.
    #[inline]
    fn byte_depth(self) -> u128 {
        (u128::from(self.bytes_per_sec) * u128::from(self.burst_ms.max(1)) * NANO / 1000)
            .max(u128::from(MIN_BYTE_DEPTH) * NANO)
    }
}

/// The least a byte bucket holds: a 9 000-byte jumbo frame's IP packet and more, so every packet a
/// worker can receive (UMEM frames are at most 4 KiB) fits.
pub const MIN_BYTE_DEPTH: u32 = 9_216;

/// Token state of one key. Starts full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    packets: u128,
    bytes: u128,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` at time `now_ns`.
    pub fn new(rate: Rate, now_ns: u64) -> TokenBucket {
        TokenBucket { packets: rate.packet_depth(), bytes: rate.byte_depth(), last_ns: now_ns }
    }

    /// Takes one packet of `bytes` bytes if both budgets allow it. Returns false when over budget
    /// (and takes nothing).
    #[inline]
    pub fn admit(&mut self, rate: Rate, now_ns: u64, bytes: u32) -> bool {
        let elapsed = u128::from(now_ns.saturating_sub(self.last_ns));
        self.last_ns = self.last_ns.max(now_ns);
        let packet_cost = NANO;
        let byte_cost = u128::from(bytes) * NANO;
        if rate.pps != 0 {
            self.packets = (self.packets + elapsed * u128::from(rate.pps)).min(rate.packet_depth());
        }
        if rate.bytes_per_sec != 0 {
            self.bytes = (self.bytes + elapsed * u128::from(rate.bytes_per_sec)).min(rate.byte_depth());
        }
        let packets_ok = rate.pps == 0 || self.packets >= packet_cost;
        let bytes_ok = rate.bytes_per_sec == 0 || self.bytes >= byte_cost;
        if packets_ok && bytes_ok {
            if rate.pps != 0 {
                self.packets -= packet_cost;
            }
            if rate.bytes_per_sec != 0 {
                self.bytes -= byte_cost;
            }
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted_over(rate: Rate, seconds: u64, offered_pps: u64, bytes: u32) -> u64 {
        let mut b = TokenBucket::new(rate, 0);
        let step = SEC / offered_pps;
        let mut ok = 0;
        let mut t = 0;
        while t < seconds * SEC {
            if b.admit(rate, t, bytes) {
                ok += 1;
            }
            t += step;
        }
        ok
    }

    #[test]
    fn holds_a_packet_budget_within_the_burst() {
        let rate = Rate::pps(1000);
        let ok = admitted_over(rate, 10, 50_000, 100);
        // 10 s × 1000 pps plus one 100 ms burst.
        assert!((10_000..=10_101).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn holds_a_byte_budget() {
        let rate = Rate { pps: 0, bytes_per_sec: 100_000, burst_ms: 100 };
        let ok = admitted_over(rate, 10, 10_000, 1000);
        assert!((1_000..=1_011).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn a_byte_budget_smaller_than_a_packet_still_admits_its_rate() {
        // 64 kbit/s: a 100 ms window holds 800 bytes, less than one 1500-byte packet.
        let rate = Rate { pps: 0, bytes_per_sec: 8_000, burst_ms: 100 };
        // Offered at 120 kbit/s for 60 s: 480 000 bytes are due, 320 packets, plus the bucket.
        let ok = admitted_over(rate, 60, 10, 1500);
        assert!((320..=327).contains(&ok), "admitted {ok}");
        // Split over 16 workers, 1 Mbit/s leaves each 7 813 bytes/s: the same holds per worker.
        let per = Rate { pps: 0, bytes_per_sec: 125_000, burst_ms: 100 }.per_worker(16);
        let ok = admitted_over(per, 60, 10, 1500);
        assert!((312..=319).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn under_budget_everything_passes() {
        let rate = Rate::pps(1000);
        assert_eq!(admitted_over(rate, 2, 500, 64), 1000);
    }

    #[test]
    fn per_worker_split_adds_back_up() {
        let r = Rate { pps: 1000, bytes_per_sec: 7, burst_ms: 100 }.per_worker(3);
        assert_eq!(r.pps, 334);
        assert_eq!(r.bytes_per_sec, 3);
        assert_eq!(Rate::pps(0).per_worker(4).pps, 0);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let rate = Rate::pps(10);
        let mut b = TokenBucket::new(rate, 5 * SEC);
        assert!(b.admit(rate, SEC, 1));
    }
}
