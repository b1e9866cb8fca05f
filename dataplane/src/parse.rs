//! Frame parsing: Ethernet, up to two VLAN tags, IPv4/IPv6 (with a bounded extension-header
//! walk), and the TCP/UDP/ICMP header.
//!
//! Contract: `parse` never panics and never reads past the frame. It returns `Ok(None)` for
//! frames that are not IP (ARP, LLDP, LACP, ...: they belong to the kernel), `Err(reason)` for a
//! malformed frame, and otherwise a `PacketInfo` holding offsets and the few fields every later
//! stage needs, so no stage parses the same header twice. Lengths are taken from the IP header,
//! not the frame, so Ethernet padding is ignored.

use crate::addr::Addr;
use crate::verdict::DropReason;
use crate::wire::vlan::{self, is_vlan_tpid};
use smoltcp::wire::{
    EthernetFrame, IPV4_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet, TCP_HEADER_LEN, TcpPacket, UDP_HEADER_LEN,
    UdpPacket,
};

/// Ethernet header length without tags.
pub const ETH_HEADER_LEN: usize = 14;
/// Most VLAN tags accepted (802.1ad service tag + 802.1Q customer tag).
pub const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before the frame is dropped.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol numbers the pipeline looks at.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 Hop-by-Hop options.
    pub const HOPOPT: u8 = 0;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// Encapsulating security payload (the walk ends here: the rest is encrypted).
    pub const ESP: u8 = 50;
    /// IPv6 no next header.
    pub const NONE: u8 = 59;
    /// Mobility header.
    pub const MOBILITY: u8 = 135;
    /// Host identity protocol.
    pub const HIP: u8 = 139;
    /// Shim6.
    pub const SHIM6: u8 = 140;
}

/// TCP flag bits as they appear in the low byte of the flags field.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// IP family of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where a packet sits in a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    None,
    /// Offset 0 with more fragments following: carries the transport header.
    First,
    /// Offset above 0: no transport header, ports unknown.
    NonFirst,
}

/// What the parser learned about one IP frame. Offsets are from the start of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Offset of the IP header.
    pub l3_offset: u16,
    /// Number of VLAN tags (0..=2).
    pub vlan_count: u8,
    /// VLAN IDs, outermost first.
    pub vlan_ids: [u16; MAX_VLAN_TAGS],
    /// IPv4 or IPv6.
    pub family: Family,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Upper-layer protocol (after any IPv6 extension headers).
    pub protocol: u8,
    /// Length of the IP packet in bytes, from the IP header (excludes Ethernet padding).
    pub ip_len: u16,
    /// IPv4 options present (IHL > 5), or any IPv6 extension header present.
    pub ip_options: bool,
    /// IPv4 Don't Fragment bit (always true for IPv6, which routers never fragment).
    pub dont_fragment: bool,
    /// Fragment position.
    pub fragment: Fragment,
    /// Fragment identification (IPv4 16 bits, IPv6 32 bits); 0 when not a fragment.
    pub frag_id: u32,
    /// Offset of the upper-layer header (or of the fragment data for a non-first fragment).
    pub l4_offset: u16,
    /// Bytes from `l4_offset` to the end of the IP packet.
    pub l4_len: u16,
    /// TCP/UDP source port (0 otherwise).
    pub src_port: u16,
    /// TCP/UDP destination port (0 otherwise).
    pub dst_port: u16,
    /// TCP flags (low byte), 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type and code (0 otherwise).
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code.
    pub icmp_code: u8,
    /// Offset of the transport payload.
    pub payload_offset: u16,
    /// Length of the transport payload carried in this packet.
    pub payload_len: u16,
}

impl PacketInfo {
    /// True for a TCP segment with SYN set and ACK clear.
    #[inline]
    pub fn is_tcp_syn(&self) -> bool {
        self.protocol == proto::TCP
            && self.fragment != Fragment::NonFirst
            && self.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
    }

    /// True when the packet has a transport header with ports (TCP or UDP, not a non-first fragment).
    #[inline]
    pub fn has_ports(&self) -> bool {
        self.fragment != Fragment::NonFirst && (self.protocol == proto::TCP || self.protocol == proto::UDP)
    }
}

/// Parses one frame. See the module docs for the contract.
pub fn parse(frame: &[u8]) -> Result<Option<PacketInfo>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let mut ethertype = u16::from(eth.ethertype());
    let mut offset = ETH_HEADER_LEN;
    let mut vlan_ids = [0u16; MAX_VLAN_TAGS];
    let mut vlan_count = 0usize;
    while is_vlan_tpid(ethertype) {
        if vlan_count == MAX_VLAN_TAGS {
            return Err(DropReason::VlanTooMany);
        }
        let tag = vlan::Tag::new_checked(&frame[offset..]).map_err(|_| DropReason::VlanTruncated)?;
        vlan_ids[vlan_count] = tag.vid();
        vlan_count += 1;
        ethertype = tag.ethertype();
        offset += vlan::TAG_LEN;
    }
    let mut info = PacketInfo {
        l3_offset: offset as u16,
        vlan_count: vlan_count as u8,
        vlan_ids,
        family: Family::V4,
        src: Addr::default(),
        dst: Addr::default(),
        ttl: 0,
        protocol: 0,
        ip_len: 0,
        ip_options: false,
        dont_fragment: false,
        fragment: Fragment::None,
        frag_id: 0,
        l4_offset: 0,
        l4_len: 0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
        payload_offset: 0,
        payload_len: 0,
    };
    let l3 = &frame[offset..];
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(l3, &mut info)?,
        ETHERTYPE_IPV6 => parse_ipv6(l3, &mut info)?,
        _ => return Ok(None),
    }
    Ok(Some(info))
}

fn parse_ipv4(l3: &[u8], info: &mut PacketInfo) -> Result<(), DropReason> {
    if l3.len() < IPV4_HEADER_LEN {
        return Err(DropReason::Ipv4Truncated);
    }
    let ip = Ipv4Packet::new_unchecked(l3);
    if ip.version() != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let header_len = usize::from(ip.header_len());
    if header_len < IPV4_HEADER_LEN || header_len > l3.len() {
        return Err(DropReason::Ipv4BadIhl);
    }
    let total_len = usize::from(ip.total_len());
    if total_len < header_len || total_len > l3.len() {
        return Err(DropReason::Ipv4BadTotalLength);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    info.family = Family::V4;
    info.src = Addr::from_v4_bytes(ip.src_addr().octets());
    info.dst = Addr::from_v4_bytes(ip.dst_addr().octets());
    info.ttl = ip.hop_limit();
    info.protocol = u8::from(ip.next_header());
    info.ip_len = total_len as u16;
    info.ip_options = header_len > IPV4_HEADER_LEN;
    info.dont_fragment = ip.dont_frag();
    // smoltcp returns the offset in bytes (8-byte units already multiplied out).
    let frag_offset = ip.frag_offset();
    info.fragment = if frag_offset != 0 {
        Fragment::NonFirst
    } else if ip.more_frags() {
        Fragment::First
    } else {
        Fragment::None
    };
    if info.fragment != Fragment::None {
        info.frag_id = u32::from(ip.ident());
    }
    // RFC 1858 §3.2: a TCP fragment at offset 8 can overwrite the flags of the first fragment.
    if info.fragment == Fragment::NonFirst && info.protocol == proto::TCP && frag_offset == 8 {
        return Err(DropReason::Ipv4TinyFragment);
    }
    let l4_offset = usize::from(info.l3_offset) + header_len;
    let l4 = &l3[header_len..total_len];
    info.l4_offset = l4_offset as u16;
    info.l4_len = l4.len() as u16;
    if info.fragment == Fragment::NonFirst {
        info.payload_offset = info.l4_offset;
        info.payload_len = info.l4_len;
        return Ok(());
    }
    parse_l4(l4, info).map_err(|reason| {
        // A first fragment too short for its own transport header is the tiny-fragment attack.
        if info.fragment == Fragment::First && is_l4_truncation(reason) { DropReason::Ipv4TinyFragment } else { reason }
    })
}

fn parse_ipv6(l3: &[u8], info: &mut PacketInfo) -> Result<(), DropReason> {
    if l3.len() < IPV6_HEADER_LEN {
        return Err(DropReason::Ipv6Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(l3);
    if ip.version() != 6 {
        return Err(DropReason::Ipv6BadVersion);
    }
    let payload_len = usize::from(ip.payload_len());
    if payload_len == 0 || IPV6_HEADER_LEN + payload_len > l3.len() {
        return Err(DropReason::Ipv6BadPayloadLength);
    }
    let total_len = IPV6_HEADER_LEN + payload_len;
    info.family = Family::V6;
    info.src = Addr::from_v6_bytes(ip.src_addr().octets());
    info.dst = Addr::from_v6_bytes(ip.dst_addr().octets());
    info.ttl = ip.hop_limit();
    info.ip_len = total_len as u16;
    info.dont_fragment = true;

    let packet = &l3[..total_len];
    let mut next = u8::from(ip.next_header());
    let mut at = IPV6_HEADER_LEN;
    let mut walked = 0usize;
    loop {
        let len = match next {
            proto::HOPOPT | proto::ROUTING | proto::DSTOPTS | proto::MOBILITY | proto::HIP | proto::SHIM6 => {
                if next == proto::HOPOPT && walked != 0 {
                    return Err(DropReason::Ipv6HopByHopNotFirst);
                }
                let Some(hdr) = packet.get(at..at + 2) else {
                    return Err(chain_cut(info));
                };
                if next == proto::ROUTING {
                    let Some(&routing_type) = packet.get(at + 2) else {
                        return Err(chain_cut(info));
                    };
                    if routing_type == 0 {
                        return Err(DropReason::Ipv6RoutingType0);
                    }
                }
                8 + 8 * usize::from(hdr[1])
            }
            proto::AH => {
                let Some(hdr) = packet.get(at..at + 2) else {
                    return Err(chain_cut(info));
                };
                4 * (usize::from(hdr[1]) + 2)
            }
            proto::FRAGMENT => {
                let Some(hdr) = packet.get(at..at + 8) else {
                    return Err(chain_cut(info));
                };
                let offset_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                let frag_offset = offset_flags & 0xfff8;
                let more = offset_flags & 1 != 0;
                info.frag_id = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
                if frag_offset != 0 {
                    info.fragment = Fragment::NonFirst;
                } else if more {
                    info.fragment = Fragment::First;
                }
                // An atomic fragment (offset 0, M clear) is a whole datagram: keep walking.
                8
            }
            _ => break,
        };
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(DropReason::Ipv6ExtTooMany);
        }
        if at + len > packet.len() {
            return Err(chain_cut(info));
        }
        next = packet[at];
        at += len;
        if info.fragment == Fragment::NonFirst {
            break;
        }
    }
    info.ip_options = walked > 0;
    info.protocol = next;
    info.l4_offset = (usize::from(info.l3_offset) + at) as u16;
    let l4 = &packet[at..];
    info.l4_len = l4.len() as u16;
    if info.fragment == Fragment::NonFirst {
        info.payload_offset = info.l4_offset;
        info.payload_len = info.l4_len;
        return Ok(());
    }
    parse_l4(l4, info).map_err(|reason| {
        // RFC 7112: the first fragment must hold the whole chain up to the transport header.
        if info.fragment == Fragment::First && is_l4_truncation(reason) {
            DropReason::Ipv6IncompleteChain
        } else {
            reason
        }
    })
}

/// The reason for an extension-header chain that runs out of packet.
fn chain_cut(info: &PacketInfo) -> DropReason {
    if info.fragment == Fragment::First { DropReason::Ipv6IncompleteChain } else { DropReason::Ipv6ExtTruncated }
}

fn is_l4_truncation(reason: DropReason) -> bool {
    matches!(reason, DropReason::TcpTruncated | DropReason::UdpTruncated | DropReason::IcmpTruncated)
        || reason == DropReason::TcpBadDataOffset
}

const ICMP_MIN_LEN: usize = 8;

fn parse_l4(l4: &[u8], info: &mut PacketInfo) -> Result<(), DropReason> {
    let base = info.l4_offset;
    match info.protocol {
        proto::TCP => {
            if l4.len() < TCP_HEADER_LEN {
                return Err(DropReason::TcpTruncated);
            }
            let tcp = TcpPacket::new_unchecked(l4);
            let header_len = usize::from(tcp.header_len());
            if header_len < TCP_HEADER_LEN || header_len > l4.len() {
                return Err(DropReason::TcpBadDataOffset);
            }
            info.src_port = tcp.src_port();
            info.dst_port = tcp.dst_port();
            info.tcp_flags = l4[13];
            info.payload_offset = base + header_len as u16;
            info.payload_len = (l4.len() - header_len) as u16;
        }
        proto::UDP => {
            if l4.len() < UDP_HEADER_LEN {
                return Err(DropReason::UdpTruncated);
            }
            let udp = UdpPacket::new_unchecked(l4);
            let udp_len = usize::from(udp.len());
            // A first fragment's UDP length covers the whole datagram, not this packet.
            let payload_len = if info.fragment == Fragment::First {
                if udp_len < l4.len() {
                    return Err(DropReason::UdpBadLength);
                }
                l4.len() - UDP_HEADER_LEN
            } else {
                if udp_len < UDP_HEADER_LEN || udp_len > l4.len() {
                    return Err(DropReason::UdpBadLength);
                }
                udp_len - UDP_HEADER_LEN
            };
            info.src_port = udp.src_port();
            info.dst_port = udp.dst_port();
            info.payload_offset = base + UDP_HEADER_LEN as u16;
            info.payload_len = payload_len as u16;
        }
        proto::ICMP | proto::ICMPV6 => {
            if l4.len() < ICMP_MIN_LEN {
                return Err(DropReason::IcmpTruncated);
            }
            info.icmp_type = l4[0];
            info.icmp_code = l4[1];
            info.payload_offset = base + ICMP_MIN_LEN as u16;
            info.payload_len = (l4.len() - ICMP_MIN_LEN) as u16;
        }
        _ => {
            info.payload_offset = base;
            info.payload_len = l4.len() as u16;
        }
    }
    Ok(())
}
