//! Replies built in place in the received frame: swap the Ethernet addresses (tags kept), write
//! new IP and transport headers over the old ones, fix every checksum. The frame then leaves by
//! the ingress port (`Verdict::Reply`).
//!
//! Here: ICMP "fragmentation needed" (RFC 792/1191) and ICMPv6 "packet too big" (RFC 4443 §3.2)
//! for frames that would not fit the egress MTU after encapsulation. Countermeasures add their
//! own replies (SYN-ACK) on top of the same helpers.

use crate::addr::Addr;
use crate::frame::Frame;
use crate::parse::{Family, Fragment, PacketInfo, proto};
use crate::pipeline::PipelineConfig;
use crate::ratelimit::{Rate, TokenBucket};
use crate::table::TableStats;
use smoltcp::wire::{IpProtocol, Ipv6Address, checksum};

/// Hop limit / TTL of replies the scrubber originates.
pub const REPLY_TTL: u8 = 64;

/// Swaps Ethernet destination and source.
#[inline]
pub fn swap_macs(frame: &mut [u8]) {
    let (dst, rest) = frame.split_at_mut(6);
    dst.swap_with_slice(&mut rest[..6]);
}

/// Writes a 20-byte IPv4 header (no options) at the start of `ip` and fills its checksum.
pub fn write_ipv4_header(ip: &mut [u8], total_len: u16, protocol: u8, src: u32, dst: u32) {
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[4..6].fill(0);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = REPLY_TTL;
    ip[9] = protocol;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = !checksum::data(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes a 40-byte IPv6 header at the start of `ip`.
pub fn write_ipv6_header(ip: &mut [u8], payload_len: u16, next_header: u8, src: u128, dst: u128) {
    ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip[6] = next_header;
    ip[7] = REPLY_TTL;
    ip[8..24].copy_from_slice(&src.to_be_bytes());
    ip[24..40].copy_from_slice(&dst.to_be_bytes());
}

/// Checksum of an upper-layer segment over IPv6 (pseudo-header included), ready to store.
pub fn ipv6_l4_checksum(src: u128, dst: u128, protocol: u8, segment: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_v6(
        &Ipv6Address::from(src),
        &Ipv6Address::from(dst),
        IpProtocol::from(protocol),
        segment.len() as u32,
    );
    !checksum::combine(&[pseudo, checksum::data(segment)])
}

/// True when an ICMP error may be sent about this packet (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)):
/// never about an ICMP error, a non-first fragment, or a multicast/unspecified source.
pub fn may_send_icmp_error(info: &PacketInfo) -> bool {
    if info.fragment == Fragment::NonFirst {
        return false;
    }
    let src = info.src;
    let bad_source = if src.is_v4() {
        let v = src.v4_value();
        v == 0 || v >> 28 == 0xe || v == u32::MAX
    } else {
        src.0 == 0 || src.0 >> 120 == 0xff
    };
    if bad_source {
        return false;
    }
    match (info.family, info.protocol) {
        // ICMP errors are types 3, 4, 5, 11, 12; echo and the like are queries.
        (Family::V4, proto::ICMP) => !matches!(info.icmp_type, 3 | 4 | 5 | 11 | 12),
        // ICMPv6 errors have types below 128.
        (Family::V6, proto::ICMPV6) => info.icmp_type >= 128,
        _ => true,
    }
}

/// Rewrites `frame` into an ICMP fragmentation-needed (IPv4) or packet-too-big (IPv6) error
/// back to the sender, advertising `mtu`. The error is sourced from the original destination.
/// Returns false (frame untouched) when RFC rules forbid an error or the buffer is too small.
pub fn icmp_too_big(frame: &mut Frame<'_>, info: &PacketInfo, mtu: u16) -> bool {
    if !may_send_icmp_error(info) {
        return false;
    }
    let l3 = usize::from(info.l3_offset);
    let ip_len = usize::from(info.ip_len);
    match info.family {
        Family::V4 => {
            // RFC 792: the original IP header plus the first 8 data bytes.
            let header_len = usize::from(info.l4_offset) - l3;
            let quote = (header_len + 8).min(ip_len);
            let new_len = l3 + 28 + quote;
            if new_len > frame.len() + frame.tailroom() {
                return false;
            }
            if new_len > frame.len() && !frame.set_len(new_len) {
                return false;
            }
            let data = frame.data_mut();
            data.copy_within(l3..l3 + quote, l3 + 28);
            swap_macs(data);
            write_ipv4_header(
                &mut data[l3..],
                (28 + quote) as u16,
                proto::ICMP,
                info.dst.v4_value(),
                info.src.v4_value(),
            );
            let icmp = &mut data[l3 + 20..l3 + 28 + quote];
            icmp[0] = 3; // destination unreachable
            icmp[1] = 4; // fragmentation needed and DF set
            icmp[2..6].fill(0);
            icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
            let c = !checksum::data(icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            frame.set_len(new_len)
        }
        Family::V6 => {
            // RFC 4443 §3.2: as much of the packet as fits in the minimum MTU.
            let quote = ip_len.min(1280 - 48);
            let new_len = l3 + 48 + quote;
            if new_len > frame.len() + frame.tailroom() {
                return false;
            }
            if new_len > frame.len() && !frame.set_len(new_len) {
                return false;
            }
            let data = frame.data_mut();
            data.copy_within(l3..l3 + quote, l3 + 48);
            swap_macs(data);
            let (src, dst) = (info.dst.0, info.src.0);
            write_ipv6_header(&mut data[l3..], (8 + quote) as u16, proto::ICMPV6, src, dst);
            let icmp = &mut data[l3 + 40..l3 + 48 + quote];
            icmp[0] = 2; // packet too big
            icmp[1] = 0;
            icmp[2..4].fill(0);
            icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
            let c = ipv6_l4_checksum(src, dst, proto::ICMPV6, icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            frame.set_len(new_len)
        }
    }
}

/// The budget every reply the scrubber originates must fit: one appliance-wide bucket (split over
/// workers) and one budget per address replied to, so the scrubber never becomes a reflector
/// even when an attacker spoofs one victim's address from many sources.
///
/// The per-address budgets are a fixed array of GCRA slots (one theoretical arrival time each),
/// indexed by a keyed hash of the address: one cache line touched per reply, nothing to insert or
/// evict when a spoofed flood sprays a million addresses. Two addresses that share a slot share
/// its budget, which can only make replies scarcer, never more plentiful; the key is secret, so
/// an attacker cannot aim his spoofed addresses at a real client's slot.
#[derive(Debug)]
pub struct ReplyBudget {
    global_rate: Rate,
    global: TokenBucket,
    /// Per-address emission interval and burst tolerance (GCRA), ns.
    interval_ns: u64,
    tolerance_ns: u64,
    slots: Vec<Slot>,
    key: (u64, u64),
    /// Slots taken over from another address while that one's budget was still in use.
    evictions: u64,
    /// Slots in use at the last count, and when it was taken (`table_stats`).
    counted: Option<(u64, u64)>,
}

/// How often `table_stats` counts the slots in use. Counting walks the whole table (a megabyte
/// with the defaults), which a worker publishing every 50 ms would otherwise do 20 times a
/// second, flushing its own cache, for a figure that moves slowly.
const COUNT_EVERY_NS: u64 = 1_000_000_000;

/// One per-address budget: which address last used it (a hash tag) and when its next reply is due.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    tag: u32,
    tat_ns: u64,
}

impl ReplyBudget {
    /// Budgets from the pipeline config (this worker's share).
    pub fn new(config: &PipelineConfig) -> ReplyBudget {
        let global_rate = config.reply_budget.per_worker(config.workers);
        let per_dst = config.reply_budget_per_dst.per_worker(config.workers);
        let interval_ns = 1_000_000_000 / per_dst.pps.max(1);
        let tolerance_ns = (u64::from(per_dst.burst_ms.max(1)) * 1_000_000).saturating_sub(interval_ns);
        let slots = config.reply_buckets.clamp(1, 1 << 24).next_power_of_two();
        let seed = config.seed;
        ReplyBudget {
            global_rate,
            global: TokenBucket::new(global_rate, 0),
            interval_ns,
            tolerance_ns,
            slots: vec![Slot::default(); slots],
            key: (seed ^ 0x7265_706c_7920_6275, seed.rotate_left(29) ^ 0x6467_6574_206b_6579),
            evictions: 0,
            counted: None,
        }
    }

    /// The keyed hash of a reply destination (slot index in the low bits, tag in the high).
    #[inline]
    fn hash(&self, to: Addr) -> u64 {
        use core::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u128(to.0);
        h.finish()
    }

    /// Starts loading the slot `admit(to)` will read (the pipeline's lookup pass; changes
    /// nothing). The slots are a table of a megabyte or more, read at random by a flood.
    #[inline]
    pub fn prefetch(&self, to: Addr) {
        let hash = self.hash(to);
        crate::xsk::prefetch_ref(&self.slots[(hash as usize) & (self.slots.len() - 1)]);
    }

    /// Takes one reply to `to` from both budgets; false when either is exhausted.
    #[inline]
    pub fn admit(&mut self, to: Addr, now_ns: u64) -> bool {
        let hash = self.hash(to);
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[(hash as usize) & mask];
        let tag = (hash >> 32) as u32;
        if slot.tag != tag {
            if slot.tat_ns > now_ns {
                self.evictions += 1;
            }
            // Another address (or a colliding one) used this slot: its budget is shared from now on.
            slot.tag = tag;
        }
        // Check the per-address budget first so a victim's share cannot drain the global one.
        let next = slot.tat_ns.max(now_ns) + self.interval_ns;
        if next - now_ns > self.tolerance_ns + self.interval_ns {
            return false;
        }
        if !self.global.admit(self.global_rate, now_ns, 0) {
            return false;
        }
        slot.tat_ns = next;
        true
    }

    /// Occupancy of the per-address slots (those whose budget is in use), capacity, takeovers.
    /// The occupancy is counted at most once a second (`COUNT_EVERY_NS`); the takeovers are
    /// always current.
    pub fn table_stats(&mut self, now_ns: u64) -> TableStats {
        let len = match self.counted {
            Some((len, at)) if now_ns.saturating_sub(at) < COUNT_EVERY_NS => len,
            _ => {
                let len = self.slots.iter().filter(|s| s.tat_ns > now_ns).count() as u64;
                self.counted = Some((len, now_ns));
                len
            }
        };
        TableStats { len, capacity: self.slots.len() as u64, evictions: self.evictions }
    }
}

/// Source of a reply: the address the original packet was sent to.
#[inline]
pub fn reply_source(info: &PacketInfo) -> Addr {
    info.dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Packet;
    use crate::parse::parse;
    use smoltcp::wire::{EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv6Packet};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_frag_needed_quotes_the_header_and_verifies() {
        let bytes = Packet::udp(ip("198.18.1.2"), 4000, ip("198.18.100.10"), 9).payload(&[1; 1400]).vlan(7).build();
        let info = parse(&bytes).unwrap().unwrap();
        let mut buf = bytes.clone();
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        assert!(icmp_too_big(&mut frame, &info, 1476));
        let out = frame.data().to_vec();
        assert_eq!(&out[0..6], &bytes[6..12]);
        let reply = parse(&out).unwrap().unwrap();
        assert_eq!(reply.vlan_ids[0], 7);
        assert_eq!(reply.src, info.dst);
        assert_eq!(reply.dst, info.src);
        assert_eq!((reply.icmp_type, reply.icmp_code), (3, 4));
        let v4 = Ipv4Packet::new_checked(&out[18..]).unwrap();
        assert!(v4.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(v4.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(&v4.payload()[6..8], &1476u16.to_be_bytes());
        // The quote is the original IP header and 8 bytes of UDP.
        assert_eq!(&v4.payload()[8..36], &bytes[18..46]);
    }

    #[test]
    fn v6_packet_too_big_verifies() {
        let bytes = Packet::udp(ip("2001:2::2"), 4000, ip("2001:2:0:100::10"), 9).payload(&[1; 1450]).build();
        let info = parse(&bytes).unwrap().unwrap();
        let mut buf = bytes.clone();
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        assert!(icmp_too_big(&mut frame, &info, 1456));
        let out = frame.data().to_vec();
        assert_eq!(out.len(), 14 + 1280);
        let reply = parse(&out).unwrap().unwrap();
        assert_eq!((reply.icmp_type, reply.icmp_code), (2, 0));
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        let v6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = v6.payload();
        assert_eq!(ipv6_l4_checksum(reply.src.0, reply.dst.0, proto::ICMPV6, icmp), 0);
        assert_eq!(&icmp[4..8], &1456u32.to_be_bytes());
    }

    #[test]
    fn reply_budget_holds_per_destination_and_globally() {
        let config = PipelineConfig {
            reply_budget: Rate::pps(50),
            reply_budget_per_dst: Rate::pps(10),
            ..PipelineConfig::default()
        };
        let mut b = ReplyBudget::new(&config);
        let victim = Addr::v4(1);
        let sent = (0..100).filter(|_| b.admit(victim, 0)).count();
        assert_eq!(sent, 1, "one token of burst at 10 pps with a 100 ms window");
        let many = (0..1000u32).filter(|i| b.admit(Addr::v4(100 + i), 0)).count();
        assert!(many <= 5, "global burst caps the total: {many}");
        assert!(b.admit(victim, 1_000_000_000), "refills with time");
    }

    #[test]
    fn occupancy_is_counted_at_most_once_a_second() {
        let open = Rate::pps(1 << 30);
        let config =
            PipelineConfig { reply_budget: open, reply_budget_per_dst: Rate::pps(1), ..PipelineConfig::default() };
        let mut b = ReplyBudget::new(&config);
        let t0 = 5_000_000_000;
        assert_eq!(b.table_stats(t0).len, 0);
        // Each of these ten budgets is in use for a second (1 reply a second per address).
        assert!((0..10u32).all(|i| b.admit(Addr::v4(i), t0 + 1)));
        assert_eq!(b.table_stats(t0 + 500_000_000).len, 0, "the count of 0.5 s ago");
        assert_eq!(b.table_stats(t0 + COUNT_EVERY_NS).len, 10, "counted again after a second");
        assert_eq!(b.table_stats(t0 + 3 * COUNT_EVERY_NS).len, 0, "budgets spent long ago are free");
    }

    #[test]
    fn no_error_about_an_error() {
        let bytes = Packet::icmp(ip("198.18.1.2"), ip("198.18.100.10")).icmp_type(3, 1).payload(&[0; 1500]).build();
        let info = parse(&bytes).unwrap().unwrap();
        assert!(!may_send_icmp_error(&info));
        let echo = Packet::icmp(ip("198.18.1.2"), ip("198.18.100.10")).build();
        assert!(may_send_icmp_error(&parse(&echo).unwrap().unwrap()));
    }
}
