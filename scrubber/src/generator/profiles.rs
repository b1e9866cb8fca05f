//! Frames the generator sends, per profile. Pure: addresses, ports and payloads are drawn from a
//! seeded generator, so a run is reproducible, and every attack frame carries the lab's attack
//! marker (DSCP, set by the caller) so the origin can count what got through.

use dataplane::Cidr;
use dataplane::build::Packet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Traffic profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// UDP datagrams of the given size from spoofed sources.
    Udp,
    /// TCP SYNs from spoofed sources and ports (random ISN).
    SynFlood,
    /// Reflection responses: DNS, NTP mode 7, SSDP, memcached, CLDAP, CharGEN.
    UdpAmp,
    /// Clean-looking TCP ACKs and UDP from many sources.
    LegitMix,
    /// TCP FIN+PSH+URG segments (XMAS scan) from spoofed sources and ports.
    TcpXmas,
    /// TCP segments with no flags at all (NULL scan) from spoofed sources and ports.
    TcpNull,
    /// QUIC client Initial lookalikes to UDP 443 (RFC 9000 §17.2.2 long header, version 1):
    /// random DCIDs with junk protected payloads padded to 1200 bytes, and short ones under
    /// the 1200-byte minimum (§14.1). None decrypts: a flood, not a handshake.
    QuicInitial,
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
}

fn amp_payload(kind: u64, rng: &mut Rng) -> (u16, Vec<u8>) {
    match kind % 6 {
        0 => {
            // DNS response (QR=1, RD, RA) answering ANY with a large answer section.
            let mut p = vec![(rng.next() >> 8) as u8, rng.next() as u8, 0x81, 0x80, 0, 1, 0, 20, 0, 0, 0, 0];
            p.extend_from_slice(b"\x07example\x03com\x00\x00\xff\x00\x01");
            for _ in 0..20 {
                p.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0x0e, 0x10, 0, 60]);
                p.extend_from_slice(&[b'x'; 60]);
            }
            (53, p)
        }
        1 => {
            // NTP mode 7 MON_GETLIST_1 response: response bit, version 2, mode 7, implementation 3, request 42.
            let mut p = vec![0x97, 0x00, 0x03, 0x2a, 0x00, 0x06, 0x00, 0x48];
            p.extend(std::iter::repeat_n(0u8, 6 * 72));
            (123, p)
        }
        2 => (
            1900,
            b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: http://198.18.7.7:80/desc.xml\r\nSERVER: lab/1.0 UPnP/1.0\r\nST: upnp:rootdevice\r\nUSN: uuid:1::upnp:rootdevice\r\n\r\n".to_vec(),
        ),
        3 => {
            // memcached UDP frame header (request id, sequence 0, 1 datagram, reserved) + VALUE.
            let mut p = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0];
            p.extend_from_slice(b"VALUE k 0 1000\r\n");
            p.extend(std::iter::repeat_n(b'v', 1000));
            p.extend_from_slice(b"\r\nEND\r\n");
            (11211, p)
        }
        4 => {
            // CLDAP searchResEntry: LDAPMessage SEQUENCE, messageID 1, [APPLICATION 4].
            let mut p = vec![0x30, 0x84, 0, 0, 0x01, 0x80, 0x02, 0x01, 0x01, 0x64, 0x84, 0, 0, 0x01, 0x77];
            p.extend(std::iter::repeat_n(0x04u8, 380));
            (389, p)
        }
        _ => {
            let line: Vec<u8> = (0..74).map(|i| b'!' + ((i + (rng.next() % 95) as usize) % 95) as u8).collect();
            let mut p = Vec::new();
            for _ in 0..13 {
                p.extend_from_slice(&line);
                p.extend_from_slice(b"\r\n");
            }
            (19, p)
        }
    }
}

/// UDP port QUIC Initials are sent to.
pub const QUIC_PORT: u16 = 443;

/// A QUIC version 1 client Initial lookalike: long header, random DCID (8..=20 bytes) and SCID,
/// no token, a 2-byte packet number and a junk "protected" payload. `short` makes the UDP
/// payload smaller than the 1200 bytes RFC 9000 §14.1 requires of a client Initial.
fn quic_initial(rng: &mut Rng, short: bool) -> Vec<u8> {
    let dcid_len = 8 + (rng.next() % 13) as usize;
    let scid_len = (rng.next() % 21) as usize;
    let total = if short { 200 + (rng.next() % 800) as usize } else { 1200 };
    let mut p = Vec::with_capacity(total);
    // Header form 1, fixed bit 1, type Initial (0), packet number length 2.
    p.push(0xc1);
    p.extend_from_slice(&1u32.to_be_bytes());
    p.push(dcid_len as u8);
    p.extend((0..dcid_len).map(|_| rng.next() as u8));
    p.push(scid_len as u8);
    p.extend((0..scid_len).map(|_| rng.next() as u8));
    p.push(0); // token length
    // Length (2-byte varint) covers the packet number and the payload.
    let length = total.saturating_sub(p.len() + 2);
    p.extend_from_slice(&(0x4000u16 | (length as u16 & 0x3fff)).to_be_bytes());
    while p.len() < total {
        p.extend_from_slice(&rng.next().to_le_bytes());
    }
    p.truncate(total);
    p
}

/// Frame number `i` of the pool (its source, ports and payload drawn from `rng`).
pub fn frame(spec: &Spec, rng: &mut Rng) -> Vec<u8> {
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
            let (port, payload) = amp_payload(rng.next(), rng);
            Packet::udp(src, port, spec.dst, sport).payload(&payload)
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
        Profile::QuicInitial => {
            let short = rng.next().is_multiple_of(4);
            Packet::udp(src, sport, spec.dst, QUIC_PORT).payload(&quic_initial(rng, short))
        }
    };
    p.macs(spec.macs.0, spec.macs.1).dscp(spec.dscp).build()
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
        }
    }

    #[test]
    fn frames_parse_and_stay_in_their_ranges() {
        let mut rng = Rng::new(7);
        for profile in Profile::ALL {
            for (src, dst) in [("198.18.1.0/24", "198.18.100.10"), ("2001:2:0:1::/64", "2001:2:0:100::10")] {
                let s = spec(profile, src, dst);
                for _ in 0..50 {
                    let f = frame(&s, &mut rng);
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
        let xmas = frame(&spec(Profile::TcpXmas, "198.18.1.0/24", "198.18.100.10"), &mut rng);
        assert_eq!(parse(&xmas).unwrap().unwrap().tcp_flags & 0x3f, 0x29);
        let null = frame(&spec(Profile::TcpNull, "198.18.1.0/24", "198.18.100.10"), &mut rng);
        assert_eq!(parse(&null).unwrap().unwrap().tcp_flags, 0);
        let (mut full, mut short) = (0, 0);
        for _ in 0..200 {
            let f = frame(&spec(Profile::QuicInitial, "198.18.1.0/24", "198.18.100.10"), &mut rng);
            // Ethernet 14 + IPv4 20 + UDP 8, then the long header.
            let (udp, quic) = (&f[34..42], &f[42..]);
            assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), QUIC_PORT);
            assert_eq!(quic[0] & 0xf0, 0xc0, "long header, Initial");
            assert_eq!(&quic[1..5], &[0, 0, 0, 1], "version 1");
            assert!((8..=20).contains(&quic[5]), "DCID length");
            if quic.len() == 1200 {
                full += 1
            } else {
                short += 1
            }
            assert!(quic.len() <= 1200);
        }
        assert!(full > 100 && short > 20, "{full} full, {short} short");
    }

    #[test]
    fn udp_frames_have_the_requested_size() {
        let mut rng = Rng::new(1);
        let mut s = spec(Profile::Udp, "198.18.1.0/24", "198.18.100.10");
        s.size = 128;
        assert_eq!(frame(&s, &mut rng).len(), 128);
    }
}
