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

/// Spoofed source addresses: a CIDR (`198.18.1.0/24`) or an inclusive range of one family
/// (`198.18.1.201-198.18.1.253`, `2001:2:0:1::1:0-2001:2:0:1:ffff:ffff:ffff:ffff`), so a flood
/// can share the clients' prefix without using their live host addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    v4: bool,
    first: u128,
    last: u128,
}

impl Sources {
    /// Every address of `cidr`.
    pub fn cidr(cidr: Cidr) -> Sources {
        match cidr {
            Cidr::V4(net, len) => {
                let last = if len == 0 { u32::MAX } else { net | (u32::MAX >> len) };
                Sources { v4: true, first: u128::from(net), last: u128::from(last) }
            }
            Cidr::V6(net, len) => {
                let last = if len == 0 { u128::MAX } else { net | (u128::MAX >> len) };
                Sources { v4: false, first: net, last }
            }
        }
    }

    /// True for IPv4 sources.
    pub fn is_v4(&self) -> bool {
        self.v4
    }

    /// The first and the last address.
    pub fn bounds(&self) -> (IpAddr, IpAddr) {
        (self.ip(self.first), self.ip(self.last))
    }

    /// Whether `addr` is one of them.
    #[cfg(test)]
    pub fn contains(&self, addr: dataplane::Addr) -> bool {
        let value = if addr.is_v4() { u128::from(addr.v4_value()) } else { addr.0 };
        addr.is_v4() == self.v4 && (self.first..=self.last).contains(&value)
    }

    fn ip(&self, v: u128) -> IpAddr {
        if self.v4 { IpAddr::V4(Ipv4Addr::from(v as u32)) } else { IpAddr::V6(Ipv6Addr::from(v)) }
    }

    /// A random address among them.
    pub fn pick(&self, rng: &mut Rng) -> IpAddr {
        let span = self.last - self.first;
        let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        let offset = if span == u128::MAX { r } else { r % (span + 1) };
        self.ip(self.first + offset)
    }
}

impl std::str::FromStr for Sources {
    type Err = String;

    fn from_str(text: &str) -> Result<Sources, String> {
        let Some((a, b)) = text.split_once('-') else {
            return text.parse::<Cidr>().map(Sources::cidr).map_err(|e| e.to_string());
        };
        let parse = |t: &str| t.trim().parse::<IpAddr>().map_err(|e| format!("`{t}`: {e}"));
        let (a, b) = (parse(a)?, parse(b)?);
        let value = |ip: IpAddr| match ip {
            IpAddr::V4(x) => u128::from(u32::from(x)),
            IpAddr::V6(x) => u128::from(x),
        };
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("`{text}`: both ends of a range must be of one family"));
        }
        if value(a) > value(b) {
            return Err(format!("`{text}`: the first address is above the last"));
        }
        Ok(Sources { v4: a.is_ipv4(), first: value(a), last: value(b) })
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Profile.
    pub profile: Profile,
    /// Spoofed source addresses.
    pub src: Sources,
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
    let src = spec.src.pick(rng);
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
    fn sources_are_a_cidr_or_a_range() {
        let mut rng = Rng::new(9);
        let r: Sources = "198.18.1.201-198.18.1.253".parse().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5_000 {
            let IpAddr::V4(a) = r.pick(&mut rng) else { panic!("family") };
            assert!((201..=253).contains(&a.octets()[3]) && a.octets()[..3] == [198, 18, 1], "{a}");
            seen.insert(a);
        }
        assert_eq!(seen.len(), 53, "every address of the range is drawn");
        let c: Sources = "198.18.1.0/25".parse().unwrap();
        assert_eq!(c.bounds(), ("198.18.1.0".parse().unwrap(), "198.18.1.127".parse().unwrap()));
        let v6: Sources = "2001:2:0:1::1:0-2001:2:0:1:ffff:ffff:ffff:ffff".parse().unwrap();
        for _ in 0..1_000 {
            let IpAddr::V6(a) = v6.pick(&mut rng) else { panic!("family") };
            assert!(u128::from(a) >> 64 == 0x2001_0002_0000_0001 && u128::from(a) as u64 >= 0x1_0000, "{a}");
        }
        let one: Sources = "198.18.1.9-198.18.1.9".parse().unwrap();
        assert_eq!(one.pick(&mut rng), "198.18.1.9".parse::<IpAddr>().unwrap());
        assert!("198.18.1.9-2001:2::1".parse::<Sources>().is_err());
        assert!("198.18.1.9-198.18.1.1".parse::<Sources>().is_err());
        assert!("198.18.1.0/33".parse::<Sources>().is_err());
        let all: Sources = "::/0".parse().unwrap();
        let _ = all.pick(&mut rng);
    }

    #[test]
    fn udp_frames_have_the_requested_size() {
        let mut rng = Rng::new(1);
        let mut s = spec(Profile::Udp, "198.18.1.0/24", "198.18.100.10");
        s.size = 128;
        assert_eq!(frames(&s, &mut rng)[0].len(), 128);
    }
}
