//! A small frame builder: Ethernet (+ VLAN tags) / IPv4 or IPv6 (+ options, extension headers,
//! fragmentation) / TCP, UDP, ICMP or raw payload, with correct lengths and checksums.
//!
//! Used by fixtures, property tests, benches, fuzz seeds and the traffic generator, so frames
//! are described rather than typed as hex. `write_into` builds into a caller's buffer without
//! allocating (the generator's hot loop); `build` returns a `Vec`.

use crate::parse::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, proto};
use crate::wire::vlan::TPID_8021Q;
use smoltcp::wire::{IpProtocol, checksum};
use std::net::IpAddr;

/// Transport layer of a built packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with ports, flags, sequence and acknowledgment numbers, window and raw options.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flags (low byte).
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Window.
        window: u16,
        /// Options bytes (padded to a multiple of 4 with NOPs... zeros at the end).
        options: Vec<u8>,
    },
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP (IPv4) or ICMPv6: type, code and the 4 bytes after the checksum.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Rest of header (identifier/sequence for echo).
        rest: [u8; 4],
    },
    /// Any other protocol: the payload is the whole IP payload.
    Raw(u8),
}

/// An IPv6 extension header to insert before the transport header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Hop-by-Hop options with `n` 8-byte units of PadN (n ≥ 1).
    HopByHop(u8),
    /// Destination options, same layout.
    DestOpts(u8),
    /// Routing header of the given type with zero segments left.
    Routing(u8),
    /// Fragment header: offset (bytes, multiple of 8), more-fragments flag, identification.
    Fragment {
        /// Offset in bytes.
        offset: u16,
        /// More fragments.
        more: bool,
        /// Identification.
        id: u32,
    },
}

/// Description of one frame. Start from `Packet::tcp`, `Packet::udp`, `Packet::icmp` or `Packet::raw`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// VLAN tags outermost first: (TPID, TCI).
    pub vlans: Vec<(u16, u16)>,
    /// Source address (its family picks IPv4 or IPv6).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Traffic class: DSCP in the top 6 bits, ECN in the low 2 (IPv4 TOS / IPv6 traffic class).
    pub tos: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 Don't Fragment.
    pub dont_fragment: bool,
    /// IPv4 fragment: offset in bytes and more-fragments.
    pub ipv4_fragment: Option<(u16, bool)>,
    /// IPv4 options (padded to 4 bytes with End-of-options).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers in order.
    pub ipv6_ext: Vec<ExtHeader>,
    /// Transport.
    pub l4: L4,
    /// Transport payload.
    pub payload: Vec<u8>,
}

/// Default lab MACs: locally administered.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Default lab MACs: locally administered.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

impl Packet {
    fn base(src: IpAddr, dst: IpAddr, l4: L4) -> Packet {
        Packet {
            dst_mac: MAC_B,
            src_mac: MAC_A,
            vlans: Vec::new(),
            src,
            dst,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_fragment: true,
            ipv4_fragment: None,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            l4,
            payload: Vec::new(),
        }
    }

    /// A TCP segment (flags SYN by default, window 64240).
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Packet {
        Packet::base(
            src,
            dst,
            L4::Tcp { src_port, dst_port, flags: 0x02, seq: 1000, ack: 0, window: 64240, options: Vec::new() },
        )
    }

    /// A UDP datagram.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Packet {
        Packet::base(src, dst, L4::Udp { src_port, dst_port })
    }

    /// An ICMP / ICMPv6 message (echo request by default).
    pub fn icmp(src: IpAddr, dst: IpAddr) -> Packet {
        let echo = if src.is_ipv4() { 8 } else { 128 };
        Packet::base(src, dst, L4::Icmp { icmp_type: echo, code: 0, rest: [0, 1, 0, 1] })
    }

    /// Another protocol carrying `payload` directly.
    pub fn raw(src: IpAddr, dst: IpAddr, protocol: u8) -> Packet {
        Packet::base(src, dst, L4::Raw(protocol))
    }

    /// Sets TCP flags (no effect on other protocols).
    pub fn flags(mut self, value: u8) -> Packet {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = value;
        }
        self
    }

    /// Sets TCP sequence and acknowledgment numbers.
    pub fn seq_ack(mut self, s: u32, a: u32) -> Packet {
        if let L4::Tcp { seq, ack, .. } = &mut self.l4 {
            *seq = s;
            *ack = a;
        }
        self
    }

    /// Sets raw TCP options.
    pub fn tcp_options(mut self, opts: &[u8]) -> Packet {
        if let L4::Tcp { options, .. } = &mut self.l4 {
            *options = opts.to_vec();
        }
        self
    }

    /// Sets the ICMP type and code.
    pub fn icmp_type(mut self, t: u8, c: u8) -> Packet {
        if let L4::Icmp { icmp_type, code, .. } = &mut self.l4 {
            *icmp_type = t;
            *code = c;
        }
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, bytes: &[u8]) -> Packet {
        self.payload = bytes.to_vec();
        self
    }

    /// Adds an 802.1Q tag (outermost first in call order).
    pub fn vlan(mut self, vid: u16) -> Packet {
        self.vlans.push((TPID_8021Q, vid));
        self
    }

    /// Adds a tag with an explicit TPID.
    pub fn vlan_tpid(mut self, tpid: u16, vid: u16) -> Packet {
        self.vlans.push((tpid, vid));
        self
    }

    /// Sets TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Packet {
        self.ttl = ttl;
        self
    }

    /// Sets the DSCP (ECN bits left 0).
    pub fn dscp(mut self, dscp: u8) -> Packet {
        self.tos = dscp << 2;
        self
    }

    /// Sets the IPv4 identification.
    pub fn ident(mut self, id: u16) -> Packet {
        self.ident = id;
        self
    }

    /// Sets MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Packet {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Makes an IPv4 fragment: offset in bytes (multiple of 8) and more-fragments.
    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> Packet {
        self.ipv4_fragment = Some((offset, more));
        self.dont_fragment = false;
        self
    }

    /// Sets IPv4 options.
    pub fn ipv4_options(mut self, opts: &[u8]) -> Packet {
        self.ipv4_options = opts.to_vec();
        self
    }

    /// Appends an IPv6 extension header.
    pub fn ext(mut self, header: ExtHeader) -> Packet {
        self.ipv6_ext.push(header);
        self
    }

    fn l4_header_len(&self) -> usize {
        match &self.l4 {
            L4::Tcp { options, .. } => 20 + options.len().div_ceil(4) * 4,
            L4::Udp { .. } => 8,
            L4::Icmp { .. } => 8,
            L4::Raw(_) => 0,
        }
    }

    fn protocol(&self) -> u8 {
        match &self.l4 {
            L4::Tcp { .. } => proto::TCP,
            L4::Udp { .. } => proto::UDP,
            L4::Icmp { .. } => {
                if self.src.is_ipv4() {
                    proto::ICMP
                } else {
                    proto::ICMPV6
                }
            }
            L4::Raw(p) => *p,
        }
    }

    fn ext_len(h: &ExtHeader) -> usize {
        match h {
            ExtHeader::HopByHop(n) | ExtHeader::DestOpts(n) => 8 * usize::from((*n).max(1)),
            ExtHeader::Routing(_) => 8,
            ExtHeader::Fragment { .. } => 8,
        }
    }

    /// Total frame length `write_into` produces.
    pub fn frame_len(&self) -> usize {
        let l3 = if self.src.is_ipv4() {
            20 + self.ipv4_options.len().div_ceil(4) * 4
        } else {
            40 + self.ipv6_ext.iter().map(Packet::ext_len).sum::<usize>()
        };
        14 + 4 * self.vlans.len() + l3 + self.l4_header_len() + self.payload.len()
    }

    /// Builds the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.frame_len()];
        self.write_into(&mut out);
        out
    }

    /// Builds the frame into `out` (at least `frame_len()` bytes), returning its length.
    ///
    /// # Panics
    /// When `out` is shorter than `frame_len()` or the two addresses differ in family.
    pub fn write_into(&self, out: &mut [u8]) -> usize {
        let total = self.frame_len();
        let out = &mut out[..total];
        out[0..6].copy_from_slice(&self.dst_mac);
        out[6..12].copy_from_slice(&self.src_mac);
        let mut at = 12;
        for &(tpid, tci) in &self.vlans {
            out[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
            out[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
            at += 4;
        }
        let ethertype = if self.src.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
        out[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
        at += 2;
        let l3 = at;
        let l4_len = self.l4_header_len() + self.payload.len();
        let protocol = self.protocol();
        let l4_at = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let opt_len = self.ipv4_options.len().div_ceil(4) * 4;
                let hl = 20 + opt_len;
                let ip = &mut out[l3..l3 + hl];
                ip[0] = 0x40 | (hl / 4) as u8;
                ip[1] = self.tos;
                ip[2..4].copy_from_slice(&((hl + l4_len) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&self.ident.to_be_bytes());
                let (offset, more) = self.ipv4_fragment.unwrap_or((0, false));
                let flags = (u16::from(self.dont_fragment) << 14) | (u16::from(more) << 13) | ((offset / 8) & 0x1fff);
                ip[6..8].copy_from_slice(&flags.to_be_bytes());
                ip[8] = self.ttl;
                ip[9] = protocol;
                ip[10..12].fill(0);
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                ip[20..20 + self.ipv4_options.len()].copy_from_slice(&self.ipv4_options);
                let c = !checksum::data(ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                l3 + hl
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ext_total: usize = self.ipv6_ext.iter().map(Packet::ext_len).sum();
                let ip = &mut out[l3..l3 + 40];
                ip[0..4].copy_from_slice(&(0x6000_0000u32 | (u32::from(self.tos) << 20)).to_be_bytes());
                ip[4..6].copy_from_slice(&((ext_total + l4_len) as u16).to_be_bytes());
                ip[6] = self.ipv6_ext.first().map_or(protocol, ext_code);
                ip[7] = self.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                let mut e = l3 + 40;
                for (i, h) in self.ipv6_ext.iter().enumerate() {
                    let next = self.ipv6_ext.get(i + 1).map_or(protocol, ext_code);
                    let len = Packet::ext_len(h);
                    let hdr = &mut out[e..e + len];
                    hdr.fill(0);
                    hdr[0] = next;
                    match h {
                        ExtHeader::HopByHop(_) | ExtHeader::DestOpts(_) => {
                            hdr[1] = (len / 8 - 1) as u8;
                            // One PadN option covering the rest of the header.
                            hdr[2] = 1;
                            hdr[3] = (len - 4) as u8;
                        }
                        ExtHeader::Routing(kind) => {
                            hdr[1] = 0;
                            hdr[2] = *kind;
                            hdr[3] = 0;
                        }
                        ExtHeader::Fragment { offset, more, id } => {
                            let v = (offset & 0xfff8) | u16::from(*more);
                            hdr[2..4].copy_from_slice(&v.to_be_bytes());
                            hdr[4..8].copy_from_slice(&id.to_be_bytes());
                        }
                    }
                    e += len;
                }
                e
            }
            _ => panic!("source and destination must be the same family"),
        };
        let hl = self.l4_header_len();
        let (l4, payload) = out[l4_at..].split_at_mut(hl);
        payload[..self.payload.len()].copy_from_slice(&self.payload);
        match &self.l4 {
            L4::Tcp { src_port, dst_port, flags, seq, ack, window, options } => {
                l4[0..2].copy_from_slice(&src_port.to_be_bytes());
                l4[2..4].copy_from_slice(&dst_port.to_be_bytes());
                l4[4..8].copy_from_slice(&seq.to_be_bytes());
                l4[8..12].copy_from_slice(&ack.to_be_bytes());
                l4[12] = ((hl / 4) as u8) << 4;
                l4[13] = *flags;
                l4[14..16].copy_from_slice(&window.to_be_bytes());
                l4[16..20].fill(0);
                l4[20..].fill(0);
                l4[20..20 + options.len()].copy_from_slice(options);
            }
            L4::Udp { src_port, dst_port } => {
                l4[0..2].copy_from_slice(&src_port.to_be_bytes());
                l4[2..4].copy_from_slice(&dst_port.to_be_bytes());
                l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                l4[6..8].fill(0);
            }
            L4::Icmp { icmp_type, code, rest } => {
                l4[0] = *icmp_type;
                l4[1] = *code;
                l4[2..4].fill(0);
                l4[4..8].copy_from_slice(rest);
            }
            L4::Raw(_) => {}
        }
        let fragmented = self.ipv4_fragment.is_some_and(|(o, _)| o != 0)
            || self.ipv6_ext.iter().any(|h| matches!(h, ExtHeader::Fragment { offset, .. } if *offset != 0));
        if !fragmented {
            fill_l4_checksum(&mut out[l3..], l4_at - l3, protocol, self.src, self.dst, l4_len);
        }
        total
    }
}

fn ext_code(h: &ExtHeader) -> u8 {
    match h {
        ExtHeader::HopByHop(_) => proto::HOPOPT,
        ExtHeader::DestOpts(_) => proto::DSTOPTS,
        ExtHeader::Routing(_) => proto::ROUTING,
        ExtHeader::Fragment { .. } => proto::FRAGMENT,
    }
}

/// Fills the TCP/UDP/ICMP(v6) checksum of the transport segment at `l4_at` in `ip` (an IP
/// packet), `l4_len` bytes long. Other protocols are left alone.
pub fn fill_l4_checksum(ip: &mut [u8], l4_at: usize, protocol: u8, src: IpAddr, dst: IpAddr, l4_len: usize) {
    let field = match protocol {
        proto::TCP => 16,
        proto::UDP => 6,
        proto::ICMP | proto::ICMPV6 => 2,
        _ => return,
    };
    let seg = &mut ip[l4_at..l4_at + l4_len];
    seg[field..field + 2].fill(0);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if protocol != proto::ICMP => {
            checksum::pseudo_header_v4(&s, &d, IpProtocol::from(protocol), l4_len as u32)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(&s, &d, IpProtocol::from(protocol), l4_len as u32),
        _ => 0,
    };
    let mut c = !checksum::combine(&[pseudo, checksum::data(seg)]);
    if protocol == proto::UDP && c == 0 {
        c = 0xffff;
    }
    seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Rewrites the MACs and the DSCP of an untagged IPv4/IPv6 frame built elsewhere (fixing the
/// IPv4 header checksum), so frames from other builders can carry a generator's marking.
pub fn remark(frame: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], dscp: u8) {
    if frame.len() < 14 {
        return;
    }
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETHERTYPE_IPV4 if frame.len() >= 34 => {
            let hl = (usize::from(frame[14] & 0x0f) * 4).clamp(20, frame.len() - 14);
            frame[15] = (dscp << 2) | (frame[15] & 0x03);
            frame[24] = 0;
            frame[25] = 0;
            let c = !checksum::data(&frame[14..14 + hl]);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
        }
        ETHERTYPE_IPV6 if frame.len() >= 54 => {
            let tc = (dscp << 2) | ((frame[15] >> 4) & 0x03);
            frame[14] = (frame[14] & 0xf0) | (tc >> 4);
            frame[15] = (frame[15] & 0x0f) | (tc << 4);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_v4_checksums_verify() {
        let f = Packet::tcp(ip("198.18.1.2"), 40000, ip("198.18.100.10"), 80).payload(b"hi").build();
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ipv4 = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ipv4.verify_checksum());
        let tcp = TcpPacket::new_checked(ipv4.payload()).unwrap();
        assert!(tcp.verify_checksum(&ipv4.src_addr().into(), &ipv4.dst_addr().into()));
        assert_eq!(tcp.payload(), b"hi");
        assert_eq!(f.len(), Packet::tcp(ip("1.1.1.1"), 1, ip("2.2.2.2"), 2).payload(b"hi").frame_len());
    }

    #[test]
    fn udp_v6_with_extensions_checksums_verify() {
        let f = Packet::udp(ip("2001:2::1"), 5353, ip("2001:2:0:100::10"), 53)
            .ext(ExtHeader::HopByHop(1))
            .ext(ExtHeader::DestOpts(2))
            .payload(&[7; 33])
            .build();
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let v6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let udp_at = 8 + 16;
        let udp = UdpPacket::new_checked(&v6.payload()[udp_at..]).unwrap();
        assert!(udp.verify_checksum(&v6.src_addr().into(), &v6.dst_addr().into()));
        assert_eq!(udp.payload().len(), 33);
    }
}
