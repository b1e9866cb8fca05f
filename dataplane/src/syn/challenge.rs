//! The challenge, built in place in the received SYN, and the SYN option check.
//!
//! Contract: `challenge_in_place` turns a parsed SYN (`PacketInfo` from `parse::parse`) into the
//! segment that answers it, an ACK or a SYN-ACK (`Challenge`) carrying the cookie as its
//! acknowledgment number. The SYN-ACK (`syn_ack_in_place`): Ethernet addresses swapped with the
//! VLAN tags left where they are,
//! a fresh IPv4 (20 bytes, DF, TTL 64) or IPv6 (40 bytes, no extension headers) header with the
//! addresses swapped, and a 24-byte TCP header with the ports swapped, SYN|ACK, our sequence
//! number, the cookie as acknowledgment number, an MSS option, and every checksum filled. Any
//! IPv4 options, IPv6 extension headers, TCP options and payload of the SYN are dropped. When
//! the buffer has no 4 bytes of tailroom for the MSS option (a 20-byte-header SYN at the very end
//! of its buffer), the option is left out. The ACK is the same without the SYN flag and without
//! options (a 20-byte TCP header). It never reads or writes outside the frame.
//!
//! Why an ACK by default: a client in SYN-SENT answers any segment whose ACK is unacceptable with
//! an RST carrying that ACK (RFC 9293 §3.10.7.3, and Linux and the BSDs check the ACK before the
//! SYN flag), so both work; but a stateful middlebox on the client's side reads a SYN-ACK as the
//! server's. Linux conntrack (a host's `ct state invalid drop`, a NAT router) initialises its
//! tracking of the server side from the challenge SYN-ACK and keeps it, since the client's RST
//! is outside that window and does not close the entry; when the real server's ISN lands behind
//! the challenge's sequence number (half the time) conntrack leaves the entry in SYN-SENT and
//! finds the server's FIN invalid: a firewall drops it, with the data it carries (measured in the
//! lab: one connection in eight lost its last segment, one in two its teardown). An ACK in
//! SYN-SENT is one conntrack ignores without tracking it; the client's RST then closes the entry
//! and the retransmitted SYN opens a clean one.
//!
//! `syn_options_ok` walks a SYN's TCP options: every option must fit the header, and the ones
//! with a fixed length (MSS, window scale, SACK-permitted, timestamps) must have it.

use super::Challenge;
use crate::frame::Frame;
use crate::parse::{Family, PacketInfo, proto, tcp_flags};
use crate::reply::{swap_macs, write_ipv4_header, write_ipv6_header};
use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv6Address, checksum};

/// MSS advertised over IPv4 (1500 − 40).
pub const MSS_V4: u16 = 1460;
/// MSS advertised over IPv6 (1500 − 60).
pub const MSS_V6: u16 = 1440;
/// Receive window advertised (a common initial window; the SYN-ACK is never answered with data).
pub const WINDOW: u16 = 64_240;

const TCP_MIN: usize = 20;

/// The client's fields a challenge needs, read before the frame is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynFields {
    /// The client's initial sequence number.
    pub isn: u32,
}

/// Reads the client's ISN from a parsed TCP segment (None if the frame is too short).
#[inline]
pub fn syn_fields(frame: &[u8], info: &PacketInfo) -> Option<SynFields> {
    let at = usize::from(info.l4_offset);
    let seq = frame.get(at + 4..at + 8)?;
    Some(SynFields { isn: u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]) })
}

/// The sequence number of a parsed TCP segment (the cookie, in an RST answering a challenge).
#[inline]
pub fn seq_number(frame: &[u8], info: &PacketInfo) -> Option<u32> {
    syn_fields(frame, info).map(|f| f.isn)
}

/// The TCP options of a parsed segment.
#[inline]
pub fn tcp_options<'a>(frame: &'a [u8], info: &PacketInfo) -> &'a [u8] {
    let start = usize::from(info.l4_offset) + TCP_MIN;
    let end = usize::from(info.payload_offset);
    frame.get(start..end).unwrap_or(&[])
}

/// True when a SYN's options are well formed. See the module docs.
pub fn syn_options_ok(options: &[u8]) -> bool {
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => return true, // end of option list: the rest is padding
            1 => i += 1,      // no-operation
            _ => {
                let Some(&len) = options.get(i + 1) else { return false };
                let len = usize::from(len);
                if len < 2 || i + len > options.len() {
                    return false;
                }
                let fixed = match kind {
                    2 => 4,  // MSS (RFC 9293 §3.2: length 4)
                    3 => 3,  // window scale (RFC 7323 §2.2)
                    4 => 2,  // SACK permitted (RFC 2018 §2)
                    8 => 10, // timestamps (RFC 7323 §3.2)
                    _ => len,
                };
                if len != fixed {
                    return false;
                }
                i += len;
            }
        }
    }
    true
}

/// Rewrites the SYN in `frame` into its SYN-ACK challenge. See the module docs. Returns false
/// (frame untouched) when `info` is not a TCP segment of this frame.
pub fn syn_ack_in_place(frame: &mut Frame<'_>, info: &PacketInfo, seq: u32, ack: u32) -> bool {
    challenge_in_place(frame, info, Challenge::SynAck, seq, ack)
}

/// Rewrites the SYN in `frame` into its challenge of kind `kind`. See the module docs. Returns
/// false (frame untouched) when `info` is not a TCP segment of this frame.
pub fn challenge_in_place(frame: &mut Frame<'_>, info: &PacketInfo, kind: Challenge, seq: u32, ack: u32) -> bool {
    let l3 = usize::from(info.l3_offset);
    let l4 = usize::from(info.l4_offset);
    let ip_len = match info.family {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    if info.protocol != proto::TCP || frame.len() < l4 + TCP_MIN || l4 < l3 + ip_len {
        return false;
    }
    let (src_port, dst_port) = {
        let d = frame.data();
        (u16::from_be_bytes([d[l4], d[l4 + 1]]), u16::from_be_bytes([d[l4 + 2], d[l4 + 3]]))
    };
    let tcp_at = l3 + ip_len;
    let mut tcp_len = if kind == Challenge::SynAck { TCP_MIN + 4 } else { TCP_MIN };
    if tcp_at + tcp_len > frame.len() + frame.tailroom() {
        tcp_len = TCP_MIN;
    }
    if !frame.set_len(tcp_at + tcp_len) {
        return false;
    }
    let data = frame.data_mut();
    swap_macs(data);
    let tcp = &mut data[tcp_at..tcp_at + tcp_len];
    tcp[0..2].copy_from_slice(&dst_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&src_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = match kind {
        Challenge::Ack => tcp_flags::ACK,
        Challenge::SynAck => tcp_flags::SYN | tcp_flags::ACK,
    };
    tcp[14..16].copy_from_slice(&WINDOW.to_be_bytes());
    tcp[16..20].fill(0); // checksum, urgent pointer
    if tcp_len > TCP_MIN {
        let mss = if info.family == Family::V4 { MSS_V4 } else { MSS_V6 };
        tcp[20] = 2;
        tcp[21] = 4;
        tcp[22..24].copy_from_slice(&mss.to_be_bytes());
    }
    let pseudo = match info.family {
        Family::V4 => {
            let (src, dst) = (info.dst.v4_value(), info.src.v4_value());
            checksum::pseudo_header_v4(
                &Ipv4Address::from(src),
                &Ipv4Address::from(dst),
                IpProtocol::Tcp,
                tcp_len as u32,
            )
        }
        Family::V6 => checksum::pseudo_header_v6(
            &Ipv6Address::from(info.dst.0),
            &Ipv6Address::from(info.src.0),
            IpProtocol::Tcp,
            tcp_len as u32,
        ),
    };
    let sum = !checksum::combine(&[pseudo, checksum::data(tcp)]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let ip = &mut data[l3..tcp_at];
    match info.family {
        Family::V4 => {
            write_ipv4_header(ip, (20 + tcp_len) as u16, proto::TCP, info.dst.v4_value(), info.src.v4_value());
        }
        Family::V6 => write_ipv6_header(ip, tcp_len as u16, proto::TCP, info.dst.0, info.src.0),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Packet;
    use crate::parse::parse;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Builds `p`, rewrites it with seq 0x11223344 and ack 0xa1b2c3d4, and returns input and output.
    fn challenge(p: &Packet, tailroom: usize) -> (Vec<u8>, Vec<u8>) {
        let bytes = p.build();
        let info = parse(&bytes).unwrap().unwrap();
        let mut buf = bytes.clone();
        buf.resize(bytes.len() + tailroom, 0xee);
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        assert!(syn_ack_in_place(&mut frame, &info, 0x1122_3344, 0xa1b2_c3d4));
        let out = frame.data().to_vec();
        (bytes, out)
    }

    /// The SYN-ACK the challenge must produce, built independently by the frame builder.
    fn expected(p: &Packet, mss: u16) -> Vec<u8> {
        let L4Tcp { src_port, dst_port } = ports(p);
        let mut q = Packet::tcp(p.dst, dst_port, p.src, src_port)
            .macs(p.dst_mac, p.src_mac)
            .flags(tcp_flags::SYN | tcp_flags::ACK)
            .seq_ack(0x1122_3344, 0xa1b2_c3d4)
            .tcp_options(&[2, 4, (mss >> 8) as u8, mss as u8])
            .ttl(64)
            .ident(0);
        q.vlans = p.vlans.clone();
        q.build()
    }

    struct L4Tcp {
        src_port: u16,
        dst_port: u16,
    }

    fn ports(p: &Packet) -> L4Tcp {
        match &p.l4 {
            crate::build::L4::Tcp { src_port, dst_port, .. } => L4Tcp { src_port: *src_port, dst_port: *dst_port },
            _ => panic!("not tcp"),
        }
    }

    fn check_tcp(tcp_bytes: &[u8], src: IpAddr, dst: IpAddr) {
        let tcp = TcpPacket::new_checked(tcp_bytes).unwrap();
        assert!(tcp.verify_checksum(&src.into(), &dst.into()), "TCP checksum (smoltcp)");
        assert!(tcp.syn() && tcp.ack() && !tcp.rst() && !tcp.fin());
        assert_eq!(tcp.seq_number().0 as u32, 0x1122_3344);
        assert_eq!(tcp.ack_number().0 as u32, 0xa1b2_c3d4);
        assert!(tcp.payload().is_empty());
    }

    #[test]
    fn ipv4_syn_ack_is_byte_exact() {
        let p = Packet::tcp(ip("198.18.1.7"), 40123, ip("198.18.100.10"), 80)
            .seq_ack(777, 0)
            .tcp_options(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]);
        let (input, out) = challenge(&p, 0);
        assert_eq!(out, expected(&p, MSS_V4));
        assert_eq!(&out[0..6], &input[6..12]);
        assert_eq!(&out[6..12], &input[0..6]);
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        let v4 = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(v4.verify_checksum(), "IPv4 header checksum (smoltcp)");
        assert_eq!(v4.src_addr().octets(), [198, 18, 100, 10]);
        assert!(v4.dont_frag());
        check_tcp(v4.payload(), ip("198.18.100.10"), ip("198.18.1.7"));
        let tcp = TcpPacket::new_checked(v4.payload()).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40123));
        assert_eq!(tcp.options(), &[2, 4, (MSS_V4 >> 8) as u8, MSS_V4 as u8]);
    }

    #[test]
    fn ipv6_syn_ack_is_byte_exact() {
        let p = Packet::tcp(ip("2001:2:0:1::7"), 50000, ip("2001:2:0:100::10"), 443)
            .tcp_options(&[2, 4, 5, 0x8c, 1, 3, 3, 7])
            .payload(b"fast open data");
        let (_, out) = challenge(&p, 0);
        assert_eq!(out, expected(&p, MSS_V6));
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        let v6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(v6.payload_len(), 24);
        assert_eq!(v6.hop_limit(), 64);
        check_tcp(v6.payload(), ip("2001:2:0:100::10"), ip("2001:2:0:1::7"));
    }

    #[test]
    fn ipv6_extension_headers_are_dropped() {
        let p = Packet::tcp(ip("2001:2:0:1::7"), 50000, ip("2001:2:0:100::10"), 443)
            .ext(crate::build::ExtHeader::DestOpts(1));
        let (_, out) = challenge(&p, 16);
        let plain = Packet::tcp(ip("2001:2:0:1::7"), 50000, ip("2001:2:0:100::10"), 443);
        assert_eq!(out, expected(&plain, MSS_V6));
    }

    #[test]
    fn vlan_tags_are_kept() {
        let p = Packet::tcp(ip("198.18.1.9"), 1234, ip("198.18.100.20"), 22).vlan_tpid(0x88a8, 100).vlan(7);
        let (input, out) = challenge(&p, 64);
        assert_eq!(out, expected(&p, MSS_V4));
        assert_eq!(&out[12..22], &input[12..22], "both tags and the EtherType unchanged");
        let reply = parse(&out).unwrap().unwrap();
        assert_eq!(reply.vlan_count, 2);
        assert_eq!(reply.vlan_ids, [100, 7]);
        let v4 = Ipv4Packet::new_checked(&out[22..]).unwrap();
        assert!(v4.verify_checksum());
        check_tcp(v4.payload(), ip("198.18.100.20"), ip("198.18.1.9"));
    }

    #[test]
    fn without_tailroom_the_mss_option_is_left_out() {
        let p = Packet::tcp(ip("198.18.1.9"), 1234, ip("198.18.100.20"), 22);
        let (input, out) = challenge(&p, 0);
        assert_eq!(out.len(), input.len());
        let v4 = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert!(v4.verify_checksum());
        check_tcp(v4.payload(), ip("198.18.100.20"), ip("198.18.1.9"));
        assert_eq!(TcpPacket::new_checked(v4.payload()).unwrap().header_len(), 20);
        // With room, the option is there.
        let (_, out) = challenge(&p, 4);
        assert_eq!(out, expected(&p, MSS_V4));
    }

    #[test]
    fn ipv4_options_are_dropped() {
        let p = Packet::tcp(ip("198.18.1.9"), 1234, ip("198.18.100.20"), 22).ipv4_options(&[1, 1, 1, 0]);
        let (_, out) = challenge(&p, 0);
        let plain = Packet::tcp(ip("198.18.1.9"), 1234, ip("198.18.100.20"), 22);
        assert_eq!(out, expected(&plain, MSS_V4));
    }

    #[test]
    fn ack_challenge_is_the_syn_ack_without_syn_and_options() {
        for p in [
            Packet::tcp(ip("198.18.1.7"), 40123, ip("198.18.100.10"), 80).seq_ack(777, 0).tcp_options(&[2, 4, 5, 0xb4]),
            Packet::tcp(ip("2001:2:0:1::7"), 50000, ip("2001:2:0:100::10"), 443).vlan(9).payload(b"fast open data"),
        ] {
            let bytes = p.build();
            let info = parse(&bytes).unwrap().unwrap();
            let mut buf = bytes.clone();
            let mut frame = Frame::new(&mut buf, 0, bytes.len());
            assert!(challenge_in_place(&mut frame, &info, Challenge::Ack, 0x1122_3344, 0xa1b2_c3d4));
            let L4Tcp { src_port, dst_port } = ports(&p);
            let mut want = Packet::tcp(p.dst, dst_port, p.src, src_port)
                .macs(p.dst_mac, p.src_mac)
                .flags(tcp_flags::ACK)
                .seq_ack(0x1122_3344, 0xa1b2_c3d4)
                .ttl(64)
                .ident(0);
            want.vlans = p.vlans.clone();
            assert_eq!(frame.data(), &want.build()[..]);
            let reply = parse(frame.data()).unwrap().unwrap();
            let tcp = TcpPacket::new_checked(&frame.data()[usize::from(reply.l4_offset)..]).unwrap();
            assert!(
                tcp.verify_checksum(&reply.src.to_ip().into(), &reply.dst.to_ip().into()),
                "TCP checksum (smoltcp)"
            );
            assert!(tcp.ack() && !tcp.syn() && !tcp.rst() && !tcp.fin() && tcp.options().is_empty());
        }
    }

    #[test]
    fn option_walk() {
        assert!(syn_options_ok(&[]));
        assert!(syn_options_ok(&[2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]));
        assert!(syn_options_ok(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1]));
        assert!(syn_options_ok(&[34, 2, 1, 1])); // TFO cookie request
        assert!(syn_options_ok(&[0, 99, 99])); // after EOL: padding
        assert!(!syn_options_ok(&[2, 4, 5])); // runs past the header
        assert!(!syn_options_ok(&[2, 3, 5, 1])); // MSS of length 3
        assert!(!syn_options_ok(&[3, 4, 7, 1])); // window scale of length 4
        assert!(!syn_options_ok(&[254, 1, 1, 1])); // length below 2
        assert!(!syn_options_ok(&[254, 0, 1, 1])); // length 0 (would loop forever)
        assert!(!syn_options_ok(&[1, 1, 1, 5])); // kind without a length byte
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = syn_options_ok(&bytes);
        }
    }
}
