//! Frames the generator sends, per profile. Pure: addresses, ports and payloads are drawn from a
//! seeded generator, so a run is reproducible, and every attack frame carries the lab's attack
//! marker (DSCP, set by the caller) so the origin can count what got through.

use dataplane::Cidr;
use dataplane::amp::samples;
use dataplane::build::{Packet, remark};
use dataplane::quic;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Traffic profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// UDP datagrams of the given size from spoofed sources.
    Udp,
    /// TCP SYNs from spoofed sources and ports (random ISN).
    SynFlood,
    /// Reflection responses of the amplification catalogue's vectors (fragmented when large).
    UdpAmp,
    /// Clean-looking TCP ACKs and UDP from many sources.
    LegitMix,
    /// TCP FIN+PSH+URG segments (XMAS scan) from spoofed sources and ports.
    TcpXmas,
    /// TCP segments with no flags at all (NULL scan) from spoofed sources and ports.
    TcpNull,
    /// QUIC Initial floods: junk, too short, random DCIDs failing authentication, replays of one
    /// valid Initial, short-header junk (to `--dport`, 443 by default for this profile).
    QuicInitial,
}

/// What a `quic-initial` flood is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QuicKind {
    /// Every kind below, in equal parts.
    Mix,
    /// Garbage behind an Initial-looking first byte.
    Junk,
    /// Initials in datagrams under 1200 bytes.
    Short,
    /// Initials whose payload was not sealed with their DCID's keys.
    RandomDcid,
    /// One valid Initial replayed from many sources.
    Replayed,
    /// Short-header packets of no admitted flow.
    ShortHeaderJunk,
    /// Valid first Initials, each with a fresh DCID (a legitimate-looking connection flood).
    Valid,
}

impl Profile {
    /// Every profile.
    #[cfg(test)]
    pub const ALL: [Profile; 7] = [
        Profile::Udp,
        Profile::SynFlood,
        Profile::UdpAmp,
        Profile::LegitMix,
        Profile::TcpXmas,
        Profile::TcpNull,
        Profile::QuicInitial,
    ];

    /// The name on the command line (`--profile`).
    pub fn name(self) -> &'static str {
        match self {
            Profile::Udp => "udp",
            Profile::SynFlood => "syn-flood",
            Profile::UdpAmp => "udp-amp",
            Profile::LegitMix => "legit-mix",
            Profile::TcpXmas => "tcp-xmas",
            Profile::TcpNull => "tcp-null",
            Profile::QuicInitial => "quic-initial",
        }
    }
}

/// Deterministic generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A random address inside `cidr`.
pub fn address_in(cidr: Cidr, rng: &mut Rng) -> IpAddr {
    match cidr {
        Cidr::V4(net, len) => {
            let host_bits = 32 - u32::from(len);
            let host = if host_bits == 0 { 0 } else { (rng.next() as u32) & (u32::MAX >> (32 - host_bits)) };
            IpAddr::V4(Ipv4Addr::from(net | host))
        }
        Cidr::V6(net, len) => {
            let host_bits = 128 - u32::from(len);
            let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            let host = if host_bits == 0 { 0 } else { r & (u128::MAX >> (128 - host_bits)) };
            IpAddr::V6(Ipv6Addr::from(net | host))
        }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Profile.
    pub profile: Profile,
    /// Spoofed source range.
    pub src: Cidr,
    /// Destination.
    pub dst: IpAddr,
    /// Destination port (TCP/UDP profiles).
    pub dport: u16,
    /// Frame size for `udp` (bytes on the wire, without FCS).
    pub size: usize,
    /// DSCP to mark every frame with.
    pub dscp: u8,
    /// Source and destination MACs.
    pub macs: ([u8; 6], [u8; 6]),
    /// For `udp-amp`: one vector only (its attack sample), instead of the mix.
    pub vector: Option<&'static samples::Spec>,
    /// For `quic-initial`: which kinds.
    pub quic: QuicKind,
    /// For `quic-initial`: the valid Initial that `replayed` sends.
    pub quic_template: Vec<u8>,
}

/// UDP port QUIC Initials are sent to.
pub const QUIC_PORT: u16 = 443;

/// The valid client Initial a `quic-initial` flood replays (deterministic).
pub fn quic_template() -> Vec<u8> {
    quic::craft::generate(&quic::keys::KeySchedule::new(), quic::craft::Kind::Valid, 0x7e57, None)
}

/// The frames of the next datagram of the pool (one frame, or several fragments), with source,
/// ports and payload drawn from `rng`.
pub fn frames(spec: &Spec, rng: &mut Rng) -> Vec<Vec<u8>> {
    let src = address_in(spec.src, rng);
    let sport = 1024 + (rng.next() % 64000) as u16;
    let p = match spec.profile {
        Profile::Udp => {
            let base = Packet::udp(src, sport, spec.dst, spec.dport);
            let overhead = base.frame_len();
            base.payload(&vec![0x5a; spec.size.saturating_sub(overhead)])
        }
        Profile::SynFlood => Packet::tcp(src, sport, spec.dst, spec.dport)
            .flags(0x02)
            .seq_ack(rng.next() as u32, 0)
            .tcp_options(&[2, 4, 0x05, 0xb4, 4, 2, 1, 1]),
        Profile::UdpAmp => {
            let sample = match spec.vector {
                Some(v) => v,
                None => samples::pick(rng.next()),
            };
            let payload = sample.payload(rng.next());
            let mut out = samples::frames(src, sample.src_port, spec.dst, sport, &payload, rng.next() as u16, 1500);
            for f in &mut out {
                remark(f, spec.macs.0, spec.macs.1, spec.dscp);
            }
            return out;
        }
        Profile::QuicInitial => {
            use quic::craft::Kind;
            let kinds = [Kind::Junk, Kind::Short, Kind::RandomDcid, Kind::Replayed, Kind::ShortHeaderJunk];
            let kind = match spec.quic {
                QuicKind::Mix => kinds[(rng.next() % kinds.len() as u64) as usize],
                QuicKind::Junk => Kind::Junk,
                QuicKind::Short => Kind::Short,
                QuicKind::RandomDcid => Kind::RandomDcid,
                QuicKind::Replayed => Kind::Replayed,
                QuicKind::ShortHeaderJunk => Kind::ShortHeaderJunk,
                QuicKind::Valid => Kind::Valid,
            };
            let schedule = quic::keys::KeySchedule::new();
            let payload = quic::craft::generate(&schedule, kind, rng.next(), Some(&spec.quic_template));
            Packet::udp(src, sport, spec.dst, QUIC_PORT).payload(&payload)
        }
        Profile::LegitMix => {
            if rng.next().is_multiple_of(2) {
                Packet::tcp(src, sport, spec.dst, spec.dport).flags(0x10).seq_ack(rng.next() as u32, rng.next() as u32)
            } else {
                Packet::udp(src, sport, spec.dst, spec.dport).payload(&[0x42; 64])
            }
        }
        // FIN+PSH+URG.
        Profile::TcpXmas => Packet::tcp(src, sport, spec.dst, spec.dport).flags(0x29).seq_ack(rng.next() as u32, 0),
        Profile::TcpNull => Packet::tcp(src, sport, spec.dst, spec.dport).flags(0).seq_ack(rng.next() as u32, 0),
    };
    vec![p.macs(spec.macs.0, spec.macs.1).dscp(spec.dscp).build()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::parse::parse;

    fn spec(profile: Profile, src: &str, dst: &str) -> Spec {
        Spec {
            profile,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            dport: 80,
            size: 64,
            dscp: 8,
            macs: ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
            vector: None,
            quic: QuicKind::Mix,
            quic_template: quic_template(),
        }
    }

    #[test]
    fn frames_parse_and_stay_in_their_ranges() {
        let mut rng = Rng::new(7);
        for profile in Profile::ALL {
            for (src, dst) in [("198.18.1.0/24", "198.18.100.10"), ("2001:2:0:1::/64", "2001:2:0:100::10")] {
                let s = spec(profile, src, dst);
                for f in (0..50).flat_map(|_| frames(&s, &mut rng)) {
                    let info = parse(&f).unwrap().unwrap();
                    assert!(s.src.contains(info.src), "{profile:?} source {} outside {src}", info.src);
                    assert_eq!(info.dst.to_ip(), s.dst);
                    let tos = if info.src.is_v4() { f[15] } else { (f[14] << 4) | (f[15] >> 4) };
                    assert_eq!(tos >> 2, 8, "DSCP mark");
                }
            }
        }
    }

    #[test]
    fn flag_scans_and_quic_initials_look_the_part() {
        let mut rng = Rng::new(3);
        let xmas = &frames(&spec(Profile::TcpXmas, "198.18.1.0/24", "198.18.100.10"), &mut rng)[0];
        assert_eq!(parse(xmas).unwrap().unwrap().tcp_flags & 0x3f, 0x29);
        let null = &frames(&spec(Profile::TcpNull, "198.18.1.0/24", "198.18.100.10"), &mut rng)[0];
        assert_eq!(parse(null).unwrap().unwrap().tcp_flags, 0);
        let (mut full, mut short, mut short_header) = (0, 0, 0);
        for _ in 0..200 {
            let f = &frames(&spec(Profile::QuicInitial, "198.18.1.0/24", "198.18.100.10"), &mut rng)[0];
            let info = parse(f).unwrap().unwrap();
            assert_eq!(info.dst_port, QUIC_PORT);
            let quic = &f[usize::from(info.payload_offset)..];
            if quic[0] & 0x80 == 0 {
                short_header += 1;
            } else if quic.len() >= 1200 {
                full += 1;
            } else {
                short += 1;
            }
        }
        assert!(
            full > 60 && short > 20 && short_header > 20,
            "{full} full, {short} short, {short_header} short-header"
        );
    }

    #[test]
    fn udp_frames_have_the_requested_size() {
        let mut rng = Rng::new(1);
        let mut s = spec(Profile::Udp, "198.18.1.0/24", "198.18.100.10");
        s.size = 128;
        assert_eq!(frames(&s, &mut rng)[0].len(), 128);
    }
}
