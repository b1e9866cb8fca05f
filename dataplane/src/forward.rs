//! Egress rewriting of clean frames: `l2` / `hairpin` (next-hop MAC, VLAN keep/strip/set) and
//! `gre` (IPv4 GRE to the origin endpoint of the protected prefix, RFC 2784).
//!
//! Contract: `rewrite` either leaves a frame ready to transmit and returns `Ok`, or leaves the
//! frame untouched and says why not: no room in the headroom, or the result would exceed the
//! egress MTU (the pipeline then answers with an ICMP too-big within its reply budget).

use crate::frame::Frame;
use crate::parse::{ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Family, PacketInfo, proto};
use crate::policy::{ForwardMode, ForwardSettings, ProtectedPrefix, VlanAction};
use crate::reply::write_ipv4_header;
use crate::wire::gre;
use crate::wire::vlan::{TAG_LEN, TPID_8021Q};

/// Bytes GRE encapsulation adds to the IP packet (outer IPv4 + basic GRE header).
pub const GRE_OVERHEAD: usize = 20 + gre::HEADER_LEN;

/// Why a frame could not be rewritten for egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// Not enough headroom to add headers.
    NoHeadroom,
    /// The frame would exceed the egress MTU; `mtu` is what the sender should use.
    TooBig {
        /// Largest inner IP packet that fits.
        mtu: u16,
    },
}

/// Rewrites `frame` for egress according to `settings` (and the prefix's GRE endpoint).
#[inline]
pub fn rewrite(
    settings: &ForwardSettings,
    prefix: Option<&ProtectedPrefix>,
    info: &PacketInfo,
    frame: &mut Frame<'_>,
) -> Result<(), ForwardError> {
    let overhead = if settings.mode == ForwardMode::Gre { GRE_OVERHEAD } else { 0 };
    if settings.egress_mtu != 0 && usize::from(info.ip_len) + overhead > usize::from(settings.egress_mtu) {
        return Err(ForwardError::TooBig { mtu: settings.egress_mtu.saturating_sub(overhead as u16) });
    }
    match settings.mode {
        ForwardMode::L2 | ForwardMode::Hairpin => rewrite_l2(settings, info, frame),
        ForwardMode::Gre => {
            let endpoint = prefix.and_then(|p| p.gre_endpoint).unwrap_or(0);
            encapsulate_gre(settings, endpoint, info, frame)
        }
    }
}

#[inline]
fn write_macs(data: &mut [u8], settings: &ForwardSettings) {
    data[0..6].copy_from_slice(&settings.next_hop_mac);
    data[6..12].copy_from_slice(&settings.src_mac);
}

fn rewrite_l2(settings: &ForwardSettings, info: &PacketInfo, frame: &mut Frame<'_>) -> Result<(), ForwardError> {
    let tags = usize::from(info.vlan_count);
    match settings.vlan {
        VlanAction::Keep => {}
        VlanAction::Strip if tags > 0 => {
            // Drop the tags by moving the start past them; the EtherType after them stays.
            frame.pull_front(tags * TAG_LEN);
        }
        VlanAction::Strip => {}
        VlanAction::Set(vid) if tags > 0 => {
            let d = frame.data_mut();
            let tci = (u16::from_be_bytes([d[14], d[15]]) & 0xf000) | (vid & 0x0fff);
            d[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        VlanAction::Set(vid) => {
            if !frame.push_front(TAG_LEN) {
                return Err(ForwardError::NoHeadroom);
            }
            let d = frame.data_mut();
            d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
            d[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
    }
    write_macs(frame.data_mut(), settings);
    Ok(())
}

fn encapsulate_gre(
    settings: &ForwardSettings,
    endpoint: u32,
    info: &PacketInfo,
    frame: &mut Frame<'_>,
) -> Result<(), ForwardError> {
    let tag = if matches!(settings.vlan, VlanAction::Set(_)) { TAG_LEN } else { 0 };
    let l2 = ETH_HEADER_LEN + tag;
    let outer = l2 + GRE_OVERHEAD;
    let l3 = usize::from(info.l3_offset);
    let inner_len = usize::from(info.ip_len);
    // The inner packet starts at l3; the outer headers must fit in front of it.
    if frame.headroom() + l3 < outer {
        return Err(ForwardError::NoHeadroom);
    }
    frame.pull_front(l3);
    frame.set_len(inner_len);
    frame.push_front(outer);
    let d = frame.data_mut();
    write_macs(d, settings);
    if let VlanAction::Set(vid) = settings.vlan {
        d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        d[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    d[l2 - 2..l2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = (GRE_OVERHEAD + inner_len) as u16;
    write_ipv4_header(&mut d[l2..], total, proto::GRE, settings.gre_local, endpoint);
    let inner_type = match info.family {
        Family::V4 => ETHERTYPE_IPV4,
        Family::V6 => ETHERTYPE_IPV6,
    };
    gre::Packet::new_unchecked(&mut d[l2 + 20..l2 + 24]).emit_basic(inner_type);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Cidr;
    use crate::build::Packet;
    use crate::parse::parse;
    use smoltcp::wire::Ipv4Packet;
    use std::net::IpAddr;

    const HEADROOM: usize = 64;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn settings(mode: ForwardMode, vlan: VlanAction) -> ForwardSettings {
        ForwardSettings {
            mode,
            src_mac: [2, 0, 0, 0, 0, 0xee],
            next_hop_mac: [2, 0, 0, 0, 0, 0xff],
            vlan,
            gre_local: 0xc612_0001,
            egress_mtu: 1500,
            ..ForwardSettings::default()
        }
    }

    fn run(s: &ForwardSettings, bytes: &[u8]) -> (Result<(), ForwardError>, Vec<u8>) {
        let info = parse(bytes).unwrap().unwrap();
        let mut buf = vec![0u8; HEADROOM + bytes.len() + 64];
        buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
        let mut frame = Frame::new(&mut buf, HEADROOM, bytes.len());
        let prefix = ProtectedPrefix {
            cidr: "198.18.100.0/24".parse::<Cidr>().unwrap(),
            profile: 0,
            gre_endpoint: Some(0xc612_c801),
        };
        let r = rewrite(s, Some(&prefix), &info, &mut frame);
        (r, frame.data().to_vec())
    }

    #[test]
    fn l2_rewrites_macs_and_keeps_tags() {
        let bytes = Packet::udp(ip("198.18.1.2"), 1, ip("198.18.100.10"), 2).vlan(10).build();
        let (r, out) = run(&settings(ForwardMode::L2, VlanAction::Keep), &bytes);
        assert_eq!(r, Ok(()));
        assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 0xff]);
        assert_eq!(&out[6..12], &[2, 0, 0, 0, 0, 0xee]);
        assert_eq!(&out[12..], &bytes[12..]);
    }

    #[test]
    fn l2_strips_sets_and_pushes_tags() {
        let tagged = Packet::udp(ip("198.18.1.2"), 1, ip("198.18.100.10"), 2).vlan_tpid(0x88a8, 5).vlan(10).build();
        let (_, out) = run(&settings(ForwardMode::L2, VlanAction::Strip), &tagged);
        let info = parse(&out).unwrap().unwrap();
        assert_eq!(info.vlan_count, 0);
        assert_eq!(&out[14..], &tagged[22..]);

        let (_, out) = run(&settings(ForwardMode::L2, VlanAction::Set(300)), &tagged);
        let info = parse(&out).unwrap().unwrap();
        assert_eq!(info.vlan_ids, [300, 10]);

        let untagged = Packet::udp(ip("2001:2::1"), 1, ip("2001:2:0:100::1"), 2).build();
        let (_, out) = run(&settings(ForwardMode::L2, VlanAction::Set(42)), &untagged);
        let info = parse(&out).unwrap().unwrap();
        assert_eq!((info.vlan_count, info.vlan_ids[0]), (1, 42));
        assert_eq!(&out[18..], &untagged[14..]);
    }

    #[test]
    fn gre_wraps_the_ip_packet() {
        let bytes = Packet::tcp(ip("2001:2::1"), 1000, ip("2001:2:0:100::1"), 80).vlan(9).payload(b"GET /").build();
        let (r, out) = run(&settings(ForwardMode::Gre, VlanAction::Keep), &bytes);
        assert_eq!(r, Ok(()));
        let outer = parse(&out).unwrap().unwrap();
        assert_eq!(outer.protocol, proto::GRE);
        assert_eq!(outer.vlan_count, 0);
        assert_eq!(outer.dst.v4_value(), 0xc612_c801);
        assert_eq!(outer.src.v4_value(), 0xc612_0001);
        let v4 = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert!(v4.verify_checksum());
        let g = gre::Packet::new_checked(&out[34..38]).unwrap();
        assert_eq!(g.protocol(), ETHERTYPE_IPV6);
        assert_eq!(&out[38..], &bytes[18..]);
    }

    #[test]
    fn gre_refuses_oversize_frames() {
        let bytes = Packet::udp(ip("198.18.1.2"), 1, ip("198.18.100.10"), 2).payload(&[0; 1460]).build();
        let (r, out) = run(&settings(ForwardMode::Gre, VlanAction::Keep), &bytes);
        assert_eq!(r, Err(ForwardError::TooBig { mtu: 1476 }));
        assert_eq!(out, bytes);
    }

    #[test]
    fn gre_needs_headroom() {
        let bytes = Packet::udp(ip("198.18.1.2"), 1, ip("198.18.100.10"), 2).build();
        let info = parse(&bytes).unwrap().unwrap();
        let mut buf = bytes.clone();
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        let s = settings(ForwardMode::Gre, VlanAction::Keep);
        assert_eq!(rewrite(&s, None, &info, &mut frame), Err(ForwardError::NoHeadroom));
    }
}
