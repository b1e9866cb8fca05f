//! The fixture table: input frame → expected verdict (and output frame where it matters) for
//! every branch of parsing, classification, the baseline filters, lists, rules, rate limits,
//! monitor mode and egress rewriting. Frames are built with `build::Packet`; malformations are
//! applied to a valid frame by small, named mutations.

use crate::addr::{Addr, Cidr};
use crate::build::{ExtHeader, MAC_A, MAC_B, Packet};
use crate::frame::Frame;
use crate::pipeline::{Now, Pipeline, PipelineConfig};
use crate::policy::rules::{RuleAction, Span, match_all};
use crate::policy::{
    self, ForwardMode, ForwardSettings, FragmentPolicy, Mode, PolicyBuilder, Profile, UnprotectedAction, VlanAction,
};
use crate::ratelimit::Rate;
use crate::stats::Event;
use crate::verdict::{DropReason as R, Verdict};
use proptest::prelude::*;
use std::net::IpAddr;

const HEADROOM: usize = 128;
const EGRESS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xee];
const NEXT_HOP: [u8; 6] = [2, 0, 0, 0, 0, 0xff];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client() -> IpAddr {
    ip("198.18.1.10")
}
fn server() -> IpAddr {
    ip("198.18.100.10")
}
fn client6() -> IpAddr {
    ip("2001:2:0:1::10")
}
fn server6() -> IpAddr {
    ip("2001:2:0:100::10")
}

/// Knobs a fixture may turn on the otherwise standard lab policy.
#[derive(Clone, Default)]
struct Knobs {
    no_exempt: bool,
    monitor: bool,
    bypass: bool,
    unprotected: Option<UnprotectedAction>,
    fragments: Option<FragmentPolicy>,
    src_limit: Option<Rate>,
    vlan: Option<VlanAction>,
}

fn policy(k: &Knobs) -> policy::Policy {
    let mut b = PolicyBuilder::new();
    let mut profile = Profile::named("lab");
    if k.monitor {
        profile.mode = Mode::Monitor;
    }
    if let Some(f) = k.fragments {
        profile.fragments = f;
    }
    profile.src_limit = k.src_limit;
    // The table covers parsing, filters, lists, rules and egress; SYN authentication has its own
    // pipeline tests (`syn::pipeline_tests`), so TCP SYNs here are plain packets.
    profile.syn = crate::syn::Settings::off();
    let lab = b.profile(profile);
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.protect("2001:2:0:100::/64".parse().unwrap(), lab);
    b.own = vec![Addr::from(ip("198.18.100.1")), Addr::from(ip("2001:2:0:100::1"))];
    if !k.no_exempt {
        b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap(), "2001:2::/48".parse().unwrap()];
    }
    b.deny = vec![
        ("198.18.66.0/24".parse::<Cidr>().unwrap(), policy::NEVER),
        ("2001:2:0:66::/64".parse::<Cidr>().unwrap(), policy::NEVER),
        ("198.18.67.0/24".parse::<Cidr>().unwrap(), policy::NEVER),
    ];
    b.allow = vec![("198.18.67.7/32".parse::<Cidr>().unwrap(), policy::NEVER)];
    let mut drop_port = match_all(10, RuleAction::Drop);
    drop_port.protocol = Some(17);
    drop_port.dst_ports = Some(Span::new(0, 0));
    let mut allow_ssh = match_all(11, RuleAction::Allow);
    allow_ssh.protocol = Some(6);
    allow_ssh.dst_ports = Some(Span::new(22, 22));
    let mut drop_tcp_low = match_all(12, RuleAction::Drop);
    drop_tcp_low.protocol = Some(6);
    drop_tcp_low.dst_ports = Some(Span::new(1, 1023));
    drop_tcp_low.src = Some("198.18.9.0/24".parse().unwrap());
    b.rules = vec![drop_port, allow_ssh, drop_tcp_low];
    b.unprotected = k.unprotected.unwrap_or(UnprotectedAction::Pass);
    b.bypass = k.bypass;
    b.forward = ForwardSettings {
        mode: ForwardMode::L2,
        src_mac: EGRESS_MAC,
        next_hop_mac: NEXT_HOP,
        vlan: k.vlan.unwrap_or(VlanAction::Keep),
        gre_local: 0,
        egress_mtu: 1500,
        ..ForwardSettings::default()
    };
    b.build()
}

fn pipeline(k: &Knobs) -> Pipeline {
    Pipeline::with_shared(policy::cell(policy(k)), small_config(), small_shared())
}

/// Per-worker tables small enough that building thousands of pipelines stays quick.
fn small_config() -> PipelineConfig {
    let small = crate::syn::StateConfig {
        workers: 1,
        retransmit: 64,
        check_failures: 64,
        unverified_buckets: 64,
        verified_syn_buckets: 64,
    };
    PipelineConfig {
        src_buckets: 64,
        dst_buckets: 64,
        frag_buckets: 64,
        reply_buckets: 64,
        syn: small,
        ..PipelineConfig::default()
    }
}

/// Cross-worker tables small enough that building thousands of pipelines stays quick.
fn small_shared() -> std::sync::Arc<crate::pipeline::Shared> {
    let mut config = crate::pipeline::SharedConfig::default();
    config.syn.verified_sources = 1024;
    config.amp = crate::amp::SharedConfig { bucket_slots: 64, fragment_slots: 64, request_slots: 64 };
    config.quic.replay_slots = 1024;
    std::sync::Arc::new(crate::pipeline::Shared::new(config, [1, 2, 3, 4]))
}

/// Runs one frame, returning the verdict and the bytes left in the frame.
fn run(p: &mut Pipeline, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + bytes.len() + 64];
    buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
    let mut f = Frame::new(&mut buf, HEADROOM, bytes.len());
    let v = p.process_one(Now { mono_ns: 1_000_000_000, wall_secs: 1_700_000_000 }, &mut f);
    let out = f.data().to_vec();
    (v, out)
}

// ---- mutations -------------------------------------------------------------------------------

/// Offset of the IP header in an untagged frame.
const L3: usize = 14;

fn fix_ipv4_checksum(f: &mut [u8], l3: usize) {
    let hl = usize::from(f[l3] & 0x0f) * 4;
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let c = !smoltcp::wire::checksum::data(&f[l3..l3 + hl.min(f.len() - l3)]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Cuts an IPv4 frame to `ip_len` IP bytes, keeping the IP header consistent.
fn cut_ipv4(mut f: Vec<u8>, ip_len: usize) -> Vec<u8> {
    f.truncate(L3 + ip_len);
    f[L3 + 2..L3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    fix_ipv4_checksum(&mut f, L3);
    f
}

/// Cuts an IPv6 frame to `ip_len` IP bytes, keeping the payload length consistent.
fn cut_ipv6(mut f: Vec<u8>, ip_len: usize) -> Vec<u8> {
    f.truncate(L3 + ip_len);
    f[L3 + 4..L3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
    f
}

fn with(mut f: Vec<u8>, at: usize, byte: u8) -> Vec<u8> {
    f[at] = byte;
    f
}

fn with_ipv4(f: Vec<u8>, at: usize, byte: u8) -> Vec<u8> {
    let mut f = with(f, L3 + at, byte);
    fix_ipv4_checksum(&mut f, L3);
    f
}

fn ethertype_frame(ethertype: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&MAC_B);
    f[6..12].copy_from_slice(&MAC_A);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    f
}

struct Case {
    name: &'static str,
    knobs: Knobs,
    input: Vec<u8>,
    expected: Verdict,
}

fn case(name: &'static str, input: Vec<u8>, expected: Verdict) -> Case {
    Case { name, knobs: Knobs::default(), input, expected }
}

fn case_with(name: &'static str, knobs: Knobs, input: Vec<u8>, expected: Verdict) -> Case {
    Case { name, knobs, input, expected }
}

const FWD: Verdict = Verdict::Forward;
const PASS: Verdict = Verdict::Pass;
fn drop(r: R) -> Verdict {
    Verdict::Drop(r)
}

fn cases() -> Vec<Case> {
    let tcp = || Packet::tcp(client(), 40000, server(), 80).flags(0x02);
    let tcp6 = || Packet::tcp(client6(), 40000, server6(), 80).flags(0x02);
    let udp = || Packet::udp(client(), 40000, server(), 5000).payload(&[1; 32]);
    let udp6 = || Packet::udp(client6(), 40000, server6(), 5000).payload(&[1; 32]);
    let tcp_frame = tcp().payload(b"0123456789").build();
    let mut v = vec![
        // --- not IP: the kernel's ---
        case("arp", ethertype_frame(0x0806, 42), PASS),
        case("lldp", ethertype_frame(0x88cc, 60), PASS),
        case("lacp", ethertype_frame(0x8809, 60), PASS),
        case("802.3 length field", ethertype_frame(0x0040, 60), PASS),
        case(
            "arp behind a vlan tag",
            {
                let mut f = ethertype_frame(0x8100, 46);
                f[14..16].copy_from_slice(&5u16.to_be_bytes());
                f[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
                f
            },
            PASS,
        ),
        // --- Ethernet and VLAN ---
        case("empty frame", vec![], drop(R::EthTruncated)),
        case("13-byte frame", vec![0; 13], drop(R::EthTruncated)),
        case("vlan tag cut", ethertype_frame(0x8100, 16), drop(R::VlanTruncated)),
        case(
            "qinq tag cut",
            {
                let mut f = ethertype_frame(0x88a8, 20);
                f[16..18].copy_from_slice(&0x8100u16.to_be_bytes());
                f
            },
            drop(R::VlanTruncated),
        ),
        case("three vlan tags", tcp().vlan_tpid(0x88a8, 1).vlan(2).vlan(3).build(), drop(R::VlanTooMany)),
        case("802.1q tcp forwarded", tcp().vlan(100).build(), FWD),
        case("qinq tcp forwarded", tcp().vlan_tpid(0x88a8, 10).vlan(20).build(), FWD),
        case("legacy 0x9100 qinq forwarded", tcp6().vlan_tpid(0x9100, 10).vlan(20).build(), FWD),
        // --- IPv4 header ---
        case("ipv4 header cut", tcp_frame[..L3 + 19].to_vec(), drop(R::Ipv4Truncated)),
        case("ipv4 version 5", with_ipv4(tcp_frame.clone(), 0, 0x55), drop(R::Ipv4BadVersion)),
        case("ipv4 ihl 4", with_ipv4(tcp_frame.clone(), 0, 0x44), drop(R::Ipv4BadIhl)),
        case("ipv4 ihl past the packet", with(tcp_frame[..L3 + 30].to_vec(), L3, 0x4f), drop(R::Ipv4BadIhl)),
        case(
            "ipv4 total length below header",
            {
                let mut f = tcp_frame.clone();
                f[L3 + 2..L3 + 4].copy_from_slice(&19u16.to_be_bytes());
                fix_ipv4_checksum(&mut f, L3);
                f
            },
            drop(R::Ipv4BadTotalLength),
        ),
        case(
            "ipv4 total length past the frame",
            tcp_frame[..tcp_frame.len() - 1].to_vec(),
            drop(R::Ipv4BadTotalLength),
        ),
        case("ipv4 bad checksum", with(tcp_frame.clone(), L3 + 10, tcp_frame[L3 + 10] ^ 1), drop(R::Ipv4BadChecksum)),
        case(
            "ethernet padding ignored",
            {
                let mut f = tcp().build();
                f.extend_from_slice(&[0; 6]);
                f
            },
            FWD,
        ),
        // --- IPv4 fragments ---
        case("first fragment with whole tcp header", tcp().payload(&[0; 64]).ipv4_fragment(0, true).build(), FWD),
        case("non-first udp fragment", udp().ipv4_fragment(1480, false).build(), FWD),
        case("tcp fragment at offset 8 (RFC 1858)", tcp().ipv4_fragment(8, true).build(), drop(R::Ipv4TinyFragment)),
        case(
            "first fragment without the tcp header",
            cut_ipv4(tcp().ipv4_fragment(0, true).build(), 20 + 12),
            drop(R::Ipv4TinyFragment),
        ),
        case_with(
            "fragment under profile drop",
            Knobs { fragments: Some(FragmentPolicy::Drop), ..Knobs::default() },
            udp().ipv4_fragment(1480, false).build(),
            drop(R::Fragment),
        ),
        case_with(
            "fragment within the fragment budget",
            Knobs { fragments: Some(FragmentPolicy::RateLimit(Rate::pps(100))), ..Knobs::default() },
            udp().ipv4_fragment(0, true).build(),
            FWD,
        ),
        // --- IPv6 ---
        case("ipv6 header cut", tcp6().build()[..L3 + 39].to_vec(), drop(R::Ipv6Truncated)),
        case("ipv6 version 4", with(tcp6().build(), L3, 0x40), drop(R::Ipv6BadVersion)),
        case(
            "ipv6 payload length past the frame",
            {
                let f = tcp6().build();
                f[..f.len() - 1].to_vec()
            },
            drop(R::Ipv6BadPayloadLength),
        ),
        case(
            "ipv6 payload length zero (jumbogram)",
            {
                let mut f = tcp6().build();
                f[L3 + 4] = 0;
                f[L3 + 5] = 0;
                f
            },
            drop(R::Ipv6BadPayloadLength),
        ),
        case("ipv6 hbh + dstopts + tcp", tcp6().ext(ExtHeader::HopByHop(1)).ext(ExtHeader::DestOpts(2)).build(), FWD),
        case(
            "ipv6 hbh not first",
            tcp6().ext(ExtHeader::DestOpts(1)).ext(ExtHeader::HopByHop(1)).build(),
            drop(R::Ipv6HopByHopNotFirst),
        ),
        case("ipv6 routing type 0", tcp6().ext(ExtHeader::Routing(0)).build(), drop(R::Ipv6RoutingType0)),
        case("ipv6 routing type 4 (srh)", tcp6().ext(ExtHeader::Routing(4)).build(), FWD),
        case("ipv6 eight ext headers", (0..8).fold(tcp6(), |p, _| p.ext(ExtHeader::DestOpts(1))).build(), FWD),
        case(
            "ipv6 nine ext headers",
            (0..9).fold(tcp6(), |p, _| p.ext(ExtHeader::DestOpts(1))).build(),
            drop(R::Ipv6ExtTooMany),
        ),
        case(
            "ipv6 ext header cut",
            {
                let f = udp6().payload(&[]).ext(ExtHeader::DestOpts(2)).build();
                cut_ipv6(f, 40 + 10)
            },
            drop(R::Ipv6ExtTruncated),
        ),
        case(
            "ipv6 first fragment, chain cut (RFC 7112)",
            {
                let f = tcp6()
                    .ext(ExtHeader::Fragment { offset: 0, more: true, id: 7 })
                    .ext(ExtHeader::DestOpts(4))
                    .build();
                cut_ipv6(f, 40 + 8 + 16)
            },
            drop(R::Ipv6IncompleteChain),
        ),
        case(
            "ipv6 first fragment, tcp header cut (RFC 7112)",
            {
                let f = tcp6().ext(ExtHeader::Fragment { offset: 0, more: true, id: 7 }).build();
                cut_ipv6(f, 40 + 8 + 10)
            },
            drop(R::Ipv6IncompleteChain),
        ),
        case(
            "ipv6 first fragment with whole chain",
            tcp6().payload(&[0; 100]).ext(ExtHeader::Fragment { offset: 0, more: true, id: 7 }).build(),
            FWD,
        ),
        case(
            "ipv6 non-first fragment",
            udp6().ext(ExtHeader::Fragment { offset: 1232, more: false, id: 7 }).build(),
            FWD,
        ),
        case("ipv6 atomic fragment", udp6().ext(ExtHeader::Fragment { offset: 0, more: false, id: 7 }).build(), FWD),
        // --- transport headers ---
        case("tcp header cut", cut_ipv4(tcp().build(), 20 + 19), drop(R::TcpTruncated)),
        case("tcp data offset 4", with(tcp().build(), L3 + 20 + 12, 0x40), drop(R::TcpBadDataOffset)),
        case("tcp data offset past the segment", with(tcp().build(), L3 + 20 + 12, 0xf0), drop(R::TcpBadDataOffset)),
        case("tcp with options", tcp().tcp_options(&[2, 4, 5, 0xb4, 1, 3, 3, 7]).build(), FWD),
        case("udp header cut", cut_ipv4(udp().build(), 20 + 7), drop(R::UdpTruncated)),
        case("udp length below 8", with(udp().build(), L3 + 20 + 5, 7), drop(R::UdpBadLength)),
        case("udp length past the packet", with(udp().build(), L3 + 20 + 5, 200), drop(R::UdpBadLength)),
        case("ipv6 udp header cut", cut_ipv6(udp6().build(), 40 + 5), drop(R::UdpTruncated)),
        case("icmp header cut", cut_ipv4(Packet::icmp(client(), server()).build(), 20 + 6), drop(R::IcmpTruncated)),
        case("icmp echo forwarded", Packet::icmp(client(), server()).build(), FWD),
        case("icmpv6 echo forwarded", Packet::icmp(client6(), server6()).build(), FWD),
        case("gre (other protocol) forwarded", Packet::raw(client(), server(), 47).payload(&[0, 0, 8, 0]).build(), FWD),
        // --- destinations ---
        case("own ipv4 address", Packet::tcp(client(), 1, ip("198.18.100.1"), 22).build(), PASS),
        case("own ipv6 address", Packet::tcp(client6(), 1, ip("2001:2:0:100::1"), 22).build(), PASS),
        case(
            "neighbour solicitation to solicited-node multicast",
            Packet::icmp(client6(), ip("ff02::1:ff00:1")).icmp_type(135, 0).build(),
            PASS,
        ),
        case("link-local destination", Packet::icmp(ip("fe80::2"), ip("fe80::1")).build(), PASS),
        case("ipv4 multicast destination", Packet::udp(client(), 5353, ip("224.0.0.251"), 5353).build(), PASS),
        case("unprotected destination passes", Packet::tcp(client(), 1, ip("198.18.200.1"), 80).build(), PASS),
        case_with(
            "unprotected destination dropped",
            Knobs { unprotected: Some(UnprotectedAction::Drop), ..Knobs::default() },
            Packet::tcp(client(), 1, ip("198.18.200.1"), 80).build(),
            drop(R::Unprotected),
        ),
        case_with(
            "unprotected destination forwarded",
            Knobs { unprotected: Some(UnprotectedAction::Forward), ..Knobs::default() },
            Packet::tcp(client(), 1, ip("198.18.200.1"), 80).build(),
            FWD,
        ),
        // --- baseline filters ---
        case("ttl 0", udp().ttl(0).build(), drop(R::TtlZero)),
        case("hop limit 0", udp6().ttl(0).build(), drop(R::TtlZero)),
        case("land", Packet::tcp(server(), 80, server(), 80).build(), drop(R::Land)),
        case("bogon source 10/8", Packet::udp(ip("10.1.2.3"), 53, server(), 1000).build(), drop(R::BogonSource)),
        case("bogon source fc00::/7", Packet::udp(ip("fd00::1"), 53, server6(), 1000).build(), drop(R::BogonSource)),
        case_with(
            "lab range is a bogon without its exemption",
            Knobs { no_exempt: true, ..Knobs::default() },
            tcp().build(),
            drop(R::BogonSource),
        ),
        case("tcp null flags", tcp().flags(0).build(), drop(R::TcpNullFlags)),
        case("tcp syn+fin", tcp().flags(0x03).build(), drop(R::TcpSynFin)),
        case("tcp syn+rst", tcp6().flags(0x06).build(), drop(R::TcpSynRst)),
        case("tcp xmas", tcp().flags(0x29).build(), drop(R::TcpXmas)),
        case("ipv4 options", udp().ipv4_options(&[0x94, 4, 0, 0]).build(), drop(R::Ipv4Options)),
        // --- lists and rules ---
        case("deny list v4", Packet::udp(ip("198.18.66.5"), 1, server(), 2).build(), drop(R::DenyList)),
        case("deny list v6", Packet::udp(ip("2001:2:0:66::5"), 1, server6(), 2).build(), drop(R::DenyList)),
        case("allow beats deny", Packet::udp(ip("198.18.67.7"), 1, server(), 0).build(), FWD),
        case("rule drop: udp port 0", Packet::udp(client(), 1, server(), 0).build(), drop(R::RuleDrop)),
        case("rule allow stops evaluation", Packet::tcp(ip("198.18.9.1"), 1, server(), 22).build(), FWD),
        case(
            "rule drop by source and port range",
            Packet::tcp(ip("198.18.9.1"), 1, server(), 80).build(),
            drop(R::RuleDrop),
        ),
        case("rule port range miss", Packet::tcp(ip("198.18.9.1"), 1, server(), 8080).build(), FWD),
        // --- modes ---
        case_with(
            "monitor forwards what it would drop",
            Knobs { monitor: true, ..Knobs::default() },
            tcp().flags(0x29).build(),
            FWD,
        ),
        case_with(
            "monitor still drops malformed frames",
            Knobs { monitor: true, ..Knobs::default() },
            cut_ipv4(tcp().build(), 30),
            drop(R::TcpTruncated),
        ),
        case_with(
            "bypass forwards a land packet",
            Knobs { bypass: true, ..Knobs::default() },
            Packet::tcp(server(), 80, server(), 80).build(),
            FWD,
        ),
        case_with(
            "bypass forwards a deny-listed source",
            Knobs { bypass: true, ..Knobs::default() },
            Packet::udp(ip("198.18.66.5"), 1, server(), 2).build(),
            FWD,
        ),
        case_with(
            "bypass still drops malformed frames",
            Knobs { bypass: true, ..Knobs::default() },
            cut_ipv4(tcp().build(), 30),
            drop(R::TcpTruncated),
        ),
        case_with(
            "vlan set pushes a tag",
            Knobs { vlan: Some(VlanAction::Set(42)), ..Knobs::default() },
            tcp().build(),
            FWD,
        ),
    ];
    // Truncation at every byte of a TCP/IPv4 frame: each length names the header it cuts.
    for len in 0..tcp_frame.len() {
        let expected = match len {
            0..14 => R::EthTruncated,
            14..34 => R::Ipv4Truncated,
            _ => R::Ipv4BadTotalLength,
        };
        v.push(case("truncated tcp/ipv4 frame", tcp_frame[..len].to_vec(), drop(expected)));
    }
    // Truncation of the transport header inside a consistent IP packet, every length.
    for l4 in 0..20 {
        v.push(case(
            "tcp cut inside a consistent ipv4 packet",
            cut_ipv4(tcp().build(), 20 + l4),
            drop(R::TcpTruncated),
        ));
        // A zero payload length means a jumbogram in IPv6, a different drop (tested above).
        if l4 > 0 {
            v.push(case(
                "tcp cut inside a consistent ipv6 packet",
                cut_ipv6(tcp6().build(), 40 + l4),
                drop(R::TcpTruncated),
            ));
        }
    }
    v
}

#[test]
fn fixture_table() {
    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let mut p = pipeline(&c.knobs);
        let (got, _) = run(&mut p, &c.input);
        if got != c.expected {
            failures.push(format!("{}: expected {:?}, got {:?}", c.name, c.expected, got));
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn forwarded_frames_carry_the_egress_macs_and_nothing_else_changes() {
    let mut p = pipeline(&Knobs::default());
    let input = Packet::tcp(client(), 40000, server(), 80).vlan(100).payload(b"GET /").build();
    let (v, out) = run(&mut p, &input);
    assert_eq!(v, Verdict::Forward);
    let mut expected = input.clone();
    expected[0..6].copy_from_slice(&NEXT_HOP);
    expected[6..12].copy_from_slice(&EGRESS_MAC);
    assert_eq!(out, expected);
}

#[test]
fn vlan_set_output_frame() {
    let mut p = pipeline(&Knobs { vlan: Some(VlanAction::Set(42)), ..Knobs::default() });
    let input = Packet::udp(client6(), 1, server6(), 2).build();
    let (_, out) = run(&mut p, &input);
    let mut expected = Vec::new();
    expected.extend_from_slice(&NEXT_HOP);
    expected.extend_from_slice(&EGRESS_MAC);
    expected.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
    expected.extend_from_slice(&input[12..]);
    assert_eq!(out, expected);
}

#[test]
fn monitor_mode_counts_what_it_would_drop() {
    let mut p = pipeline(&Knobs { monitor: true, ..Knobs::default() });
    run(&mut p, &Packet::tcp(client(), 1, server(), 80).flags(0x29).build());
    run(&mut p, &Packet::udp(ip("198.18.66.1"), 1, server(), 2).build());
    let s = p.stats();
    assert_eq!(s.monitored[R::TcpXmas.index()], 1);
    assert_eq!(s.monitored[R::DenyList.index()], 1);
    assert_eq!(s.drops_of(R::TcpXmas), 0);
    assert_eq!(s.packets_of(crate::verdict::VerdictKind::Forward), 2);
}

#[test]
fn source_budget_drops_the_excess_and_counts_it() {
    let k = Knobs { src_limit: Some(Rate { pps: 100, bytes_per_sec: 0, burst_ms: 100 }), ..Knobs::default() };
    let mut p = pipeline(&k);
    let frame = Packet::udp(client(), 1, server(), 2).build();
    let verdicts: Vec<Verdict> = (0..50).map(|_| run(&mut p, &frame).0).collect();
    // A 100 ms burst at 100 pps is 10 packets; the clock does not move within the test.
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Forward).count(), 10);
    assert_eq!(p.stats().drops_of(R::SrcRateLimit), 40);
    // Another source has its own bucket.
    assert_eq!(run(&mut p, &Packet::udp(ip("198.18.1.11"), 1, server(), 2).build()).0, Verdict::Forward);
}

#[test]
fn rule_rate_limit_shares_one_budget_for_everything_it_matches() {
    let mut b = PolicyBuilder::new();
    let lab = b.profile(Profile::named("lab"));
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap()];
    let mut icmp = match_all(1, RuleAction::RateLimit(Rate { pps: 50, bytes_per_sec: 0, burst_ms: 100 }));
    icmp.protocol = Some(1);
    b.rules = vec![icmp];
    let mut p = Pipeline::new(policy::cell(b.build()), PipelineConfig::default());
    let admitted = (0..100u8)
        .filter(|i| run(&mut p, &Packet::icmp(ip(&format!("198.18.1.{i}")), server()).build()).0 == Verdict::Forward)
        .count();
    assert_eq!(admitted, 5);
    assert_eq!(p.stats().drops_of(R::RuleRateLimit), 95);
}

#[test]
fn per_worker_buckets_divide_the_budget() {
    // Two workers, each with half of a 1000 pps per-destination budget, see half the traffic each.
    let mut b = PolicyBuilder::new();
    let mut prof = Profile::named("lab");
    prof.dst_limit = Some(Rate { pps: 1000, bytes_per_sec: 0, burst_ms: 100 });
    let lab = b.profile(prof);
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap()];
    let cell = policy::cell(b.build());
    let config = PipelineConfig { workers: 2, ..PipelineConfig::default() };
    let mut workers = [Pipeline::new(cell.clone(), config), Pipeline::new(cell, config)];
    let frame = Packet::udp(client(), 1, server(), 2).build();
    let mut admitted = 0;
    // 10 s at 10 000 pps offered, alternating workers (what RSS does with many flows).
    for i in 0..100_000u64 {
        let w = &mut workers[(i % 2) as usize];
        let mut buf = vec![0u8; HEADROOM + frame.len()];
        buf[HEADROOM..].copy_from_slice(&frame);
        let mut f = Frame::new(&mut buf, HEADROOM, frame.len());
        if w.process_one(Now { mono_ns: i * 100_000, wall_secs: 0 }, &mut f) == Verdict::Forward {
            admitted += 1;
        }
    }
    // 10 s × 1000 pps, plus one 100 ms burst per worker.
    assert!((10_000..=10_200).contains(&admitted), "admitted {admitted}");
}

#[test]
fn policy_swap_takes_effect_at_the_next_batch() {
    let cell = policy::cell(policy(&Knobs::default()));
    let mut p = Pipeline::new(cell.clone(), PipelineConfig::default());
    let frame = Packet::tcp(client(), 1, server(), 80).build();
    assert_eq!(run(&mut p, &frame).0, Verdict::Forward);
    let mut next = policy(&Knobs::default());
    next.generation = 2;
    next.bypass = false;
    let mut b = PolicyBuilder::new();
    let lab = b.profile(Profile::named("lab"));
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap()];
    b.deny = vec![("198.18.1.0/24".parse().unwrap(), policy::NEVER)];
    b.generation = 2;
    cell.store(std::sync::Arc::new(b.build()));
    assert_eq!(run(&mut p, &frame).0, Verdict::Drop(R::DenyList));
    assert_eq!(p.stats().event_count(Event::PolicySwap), 1);
}

/// The lab policy with QUIC validation or SYN authentication on, for the fragment tests below.
fn pipeline_with(quic: bool, syn: bool) -> Pipeline {
    let mut b = PolicyBuilder::new();
    let mut profile = Profile::named("lab");
    if !syn {
        profile.syn = crate::syn::Settings::off();
    }
    profile.quic.enabled = quic;
    let lab = b.profile(profile);
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap()];
    b.forward = ForwardSettings { mode: ForwardMode::L2, egress_mtu: 1500, ..ForwardSettings::default() };
    Pipeline::with_shared(policy::cell(b.build()), small_config(), small_shared())
}

#[test]
fn a_first_fragment_the_quic_or_syn_check_drops_takes_its_later_fragments_with_it() {
    // QUIC: UDP datagrams carrying QUIC must not be fragmented (RFC 9000 §14).
    let mut p = pipeline_with(true, false);
    let first = Packet::udp(client(), 5555, server(), 443).ident(77).payload(&[0; 64]).ipv4_fragment(0, true).build();
    let later = Packet::udp(client(), 5555, server(), 443).ident(77).payload(&[0; 64]).ipv4_fragment(72, false).build();
    assert_eq!(run(&mut p, &first).0, drop(R::QuicFragment));
    assert_eq!(run(&mut p, &later).0, drop(R::AmpFragment));
    // SYN: a fragmented SYN is refused by the SYN check.
    let mut p = pipeline_with(false, true);
    let first = Packet::tcp(client(), 5555, server(), 80)
        .flags(0x02)
        .ident(78)
        .payload(&[0; 64])
        .ipv4_fragment(0, true)
        .build();
    let later = Packet::tcp(client(), 5555, server(), 80).ident(78).payload(&[0; 64]).ipv4_fragment(88, false).build();
    assert_eq!(run(&mut p, &first).0, drop(R::SynFragment));
    assert_eq!(run(&mut p, &later).0, drop(R::AmpFragment));
    // The control: a first fragment that passes lets its later fragments follow.
    let mut p = pipeline_with(false, false);
    let first = Packet::udp(client(), 5555, server(), 443).ident(79).payload(&[0; 64]).ipv4_fragment(0, true).build();
    let later = Packet::udp(client(), 5555, server(), 443).ident(79).payload(&[0; 64]).ipv4_fragment(72, false).build();
    assert_eq!(run(&mut p, &first).0, Verdict::Forward);
    assert_eq!(run(&mut p, &later).0, Verdict::Forward);
}

#[test]
fn ipv6_later_fragments_follow_their_first_whatever_headers_follow_the_fragment_header() {
    // RFC 8200 allows Destination Options (and AH) after the Fragment header: a later fragment's
    // parse then stops at a Next Header that is not the upper layer.
    for dest_opts in [false, true] {
        let frame = |offset: u16, more: bool| {
            let mut pk = Packet::udp(client6(), 5555, server6(), 0).payload(&[0; 64]).ext(ExtHeader::Fragment {
                offset,
                more,
                id: 99,
            });
            if dest_opts {
                pk = pk.ext(ExtHeader::DestOpts(1));
            }
            pk.build()
        };
        let mut p = pipeline(&Knobs::default());
        assert_eq!(run(&mut p, &frame(0, true)).0, drop(R::RuleDrop), "dest_opts {dest_opts}");
        assert_eq!(run(&mut p, &frame(1232, false)).0, drop(R::AmpFragment), "dest_opts {dest_opts}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = pipeline(&Knobs::default());
        let _ = run(&mut p, &bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
        cut in any::<u16>(),
    ) {
        let base = [
            Packet::tcp(client(), 1, server(), 80).vlan(3).tcp_options(&[2, 4, 5, 0xb4]).payload(b"x").build(),
            Packet::tcp(client6(), 1, server6(), 80).ext(ExtHeader::HopByHop(1)).build(),
            Packet::udp(client6(), 1, server6(), 53).ext(ExtHeader::Fragment { offset: 0, more: true, id: 1 }).payload(&[0; 40]).build(),
            Packet::udp(client(), 1, server(), 53).ipv4_fragment(0, true).payload(&[0; 40]).build(),
            Packet::icmp(client(), server()).vlan_tpid(0x88a8, 1).vlan(2).build(),
            Packet::udp(client(), 1, server(), 53).ipv4_options(&[1, 1, 1, 0]).build(),
        ];
        let mut f = base[which].clone();
        for (at, byte) in flips {
            let at = usize::from(at) % f.len();
            f[at] = byte;
        }
        f.truncate(usize::from(cut) % (f.len() + 1));
        let mut p = pipeline(&Knobs { vlan: Some(VlanAction::Set(7)), ..Knobs::default() });
        let _ = run(&mut p, &f);
    }
}
