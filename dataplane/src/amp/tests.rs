//! Fixtures of the amplification countermeasure: every vector's attack form and the legitimate
//! traffic that shares its port, built from the protocol formats (`samples`, `simple-dns`),
//! with the verdicts the default and relaxed profiles must give; fragments; symmetric mode; the
//! shared budget across two workers; and property tests that arbitrary bytes never panic.

use super::samples::{self, ATTACK_VARIANTS, ATTACKS, LEGIT, Rng, Spec};
use super::*;
use crate::build::Packet;
use crate::parse::parse;
use proptest::prelude::*;
use std::net::IpAddr;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Reflectors share /24s with legitimate peers in the lab (198.18.1.0/24, 2001:2:0:1::/64).
const REFLECTOR_V4: &str = "198.18.1.100";
const REFLECTOR_V6: &str = "2001:2:0:1::100";
const VICTIM_V4: &str = "198.18.100.10";
const VICTIM_V6: &str = "2001:2:0:100::10";

struct Harness {
    shared: Shared,
    global: Global,
    settings: Settings,
    state: State,
    stats: Stats,
}

impl Harness {
    fn new(settings: Settings) -> Harness {
        Harness {
            shared: Shared::new(SharedConfig { bucket_slots: 1024, fragment_slots: 1024, request_slots: 1024 }, [7; 4]),
            global: Global::default(),
            settings,
            state: State::new(),
            stats: Stats::default(),
        }
    }

    fn inspect_at(&mut self, frame: &[u8], now_ns: u64) -> Check {
        let info = parse(frame).expect("well-formed").expect("IP");
        let now = Now { mono_ns: now_ns, wall_secs: 0 };
        self.state.inspect(&self.shared, &self.global, &self.settings, now, &info, frame, &mut self.stats)
    }

    fn inspect(&mut self, frame: &[u8]) -> Check {
        self.inspect_at(frame, SEC)
    }

    fn index(&self, name: &str) -> usize {
        self.global.catalogue.index_of(name).unwrap_or_else(|| panic!("no vector {name}"))
    }

    fn count(&self, name: &str, outcome: Outcome) -> u64 {
        self.stats.amp.packets_of(self.index(name), outcome)
    }

    fn matched(&self, name: &str) -> u64 {
        Outcome::ALL.iter().map(|&o| self.count(name, o)).sum()
    }
}

fn udp(src: &str, src_port: u16, dst: &str, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    Packet::udp(ip(src), src_port, ip(dst), dst_port).payload(payload).build()
}

fn attack_frame(spec: &Spec, seed: u64, v6: bool) -> Vec<u8> {
    let (src, dst) = if v6 { (REFLECTOR_V6, VICTIM_V6) } else { (REFLECTOR_V4, VICTIM_V4) };
    udp(src, spec.src_port, dst, 40_000 + (seed % 20_000) as u16, &spec.payload(seed))
}

/// What the default profile does with each vector's first attack packet, written out (not read
/// from the catalogue) so that a changed default shows up here.
const DEFAULT_VERDICTS: &[(&str, Check)] = &[
    ("dns-any", Check::Reject(DropReason::AmpReflection)),
    ("dns-large", Check::Reject(DropReason::AmpReflection)),
    ("dns", Check::Clean), // rate-limited: the first packet is within budget
    ("ntp-private", Check::Reject(DropReason::AmpReflection)),
    ("ntp-control", Check::Reject(DropReason::AmpReflection)),
    ("ntp", Check::Clean), // rate-limited
    ("memcached", Check::Reject(DropReason::AmpReflection)),
    ("ssdp", Check::Reject(DropReason::AmpReflection)),
    ("cldap", Check::Reject(DropReason::AmpReflection)),
    ("chargen", Check::Reject(DropReason::AmpReflection)),
    ("qotd", Check::Reject(DropReason::AmpReflection)),
    ("snmp", Check::Reject(DropReason::AmpReflection)),
    ("netbios", Check::Reject(DropReason::AmpReflection)),
    ("portmap", Check::Reject(DropReason::AmpReflection)),
    ("mdns", Check::Reject(DropReason::AmpReflection)),
    ("ws-discovery", Check::Reject(DropReason::AmpReflection)),
    ("arms", Check::Reject(DropReason::AmpReflection)),
    ("coap", Check::Reject(DropReason::AmpReflection)),
    ("slp", Check::Reject(DropReason::AmpReflection)),
    ("tp240", Check::Clean), // rate-limited
    ("jenkins", Check::Reject(DropReason::AmpReflection)),
    ("ripv1", Check::Reject(DropReason::AmpReflection)),
    ("mssql", Check::Reject(DropReason::AmpReflection)),
    ("openvpn", Check::Clean), // rate-limited
    ("stun", Check::Clean),    // rate-limited
    ("dtls", Check::Clean),    // rate-limited
    ("nat-pmp", Check::Reject(DropReason::AmpReflection)),
];

#[test]
fn the_issue_names_every_required_vector_and_samples_cover_the_catalogue() {
    let required = [
        (53, "dns"),
        (123, "ntp"),
        (1900, "ssdp"),
        (11211, "memcached"),
        (389, "cldap"),
        (19, "chargen"),
        (17, "qotd"),
        (161, "snmp"),
        (137, "netbios"),
        (111, "portmap"),
        (5353, "mdns"),
        (3702, "ws-discovery"),
        (3283, "arms"),
        (5683, "coap"),
        (427, "slp"),
        (10074, "tp240"),
        (33848, "jenkins"),
        (520, "ripv1"),
        (1434, "mssql"),
        (1194, "openvpn"),
        (3478, "stun"),
        (443, "dtls"),
    ];
    let c = Catalogue::standard();
    for (port, name) in required {
        let i = c.index_of(name).unwrap_or_else(|| panic!("catalogue lacks {name}"));
        assert!(c.vectors()[i].ports.contains(&port), "{name} is not on port {port}");
    }
    for v in c.vectors() {
        assert!(ATTACKS.iter().any(|s| s.vector == Some(v.name.as_str())), "no attack sample for {}", v.name);
        assert!(DEFAULT_VERDICTS.iter().any(|(n, _)| *n == v.name), "no expected verdict for {}", v.name);
    }
}

#[test]
fn the_generator_mix_covers_every_vector() {
    let c = Catalogue::standard();
    for v in c.vectors() {
        assert!(
            samples::UDP_AMP_MIX
                .iter()
                .any(|(n, _)| samples::spec(n).is_some_and(|s| s.vector == Some(v.name.as_str()))),
            "the udp-amp mix lacks {}",
            v.name
        );
    }
    let mut rng = Rng::new(1);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20_000 {
        seen.insert(samples::pick(rng.next_u64()).name);
    }
    assert_eq!(seen.len(), samples::UDP_AMP_MIX.len());
}

#[test]
fn every_attack_sample_gets_its_vector_default_verdict() {
    for v6 in [false, true] {
        for spec in ATTACKS.iter().chain(ATTACK_VARIANTS) {
            let vector = spec.vector.unwrap();
            let expected = DEFAULT_VERDICTS.iter().find(|(n, _)| *n == vector).unwrap().1;
            for seed in 0..8 {
                let mut h = Harness::new(Settings::default());
                let frame = attack_frame(spec, seed, v6);
                assert_eq!(h.inspect(&frame), expected, "{} (seed {seed}, v6 {v6})", spec.name);
                assert_eq!(h.matched(vector), 1, "{} counted under {vector}", spec.name);
                let outcome = if expected == Check::Clean { Outcome::Admitted } else { Outcome::Dropped };
                assert_eq!(h.count(vector, outcome), 1, "{}", spec.name);
            }
        }
    }
}

#[test]
fn legitimate_traffic_from_reflector_ports_is_clean() {
    for v6 in [false, true] {
        for spec in LEGIT {
            for seed in 0..32 {
                let mut h = Harness::new(Settings::default());
                let frame = attack_frame(spec, seed, v6);
                assert_eq!(h.inspect(&frame), Check::Clean, "{} (seed {seed})", spec.name);
                let counted: u64 = h.stats.amp.packets.iter().flatten().sum();
                assert_eq!(counted, 0, "{} matched a vector", spec.name);
            }
        }
    }
}

#[test]
fn high_port_vectors_never_fire_on_the_port_alone() {
    let c = Catalogue::standard();
    let mut rng = Rng::new(42);
    for v in c.vectors().iter().filter(|v| v.ports.iter().any(|&p| p >= 1024)) {
        assert!(v.signature.is_specific(), "{}", v.name);
        for &port in v.ports.iter().filter(|&&p| p >= 1024) {
            let mut h = Harness::new(Settings::default());
            // Empty, tiny and random payloads of every size class.
            for i in 0..3000usize {
                let mut payload = Vec::new();
                let len = match i % 4 {
                    0 => i % 9,
                    1 => 20 + i % 64,
                    _ => 100 + i % 1300,
                };
                rng.fill(&mut payload, len);
                let frame = udp(REFLECTOR_V4, port, VICTIM_V4, 443, &payload);
                assert_eq!(h.inspect(&frame), Check::Clean, "{} fired on random bytes from port {port}", v.name);
            }
            assert_eq!(h.matched(&v.name), 0);
        }
    }
}

#[test]
fn low_port_any_vectors_fire_on_any_payload() {
    let mut h = Harness::new(Settings::default());
    for (port, payload) in [(19u16, &b""[..]), (17, b"x"), (19, &[0u8; 1400][..])] {
        let frame = udp(REFLECTOR_V4, port, VICTIM_V4, 5000, payload);
        assert_eq!(h.inspect(&frame), Check::Reject(DropReason::AmpReflection));
    }
    assert_eq!(h.count("chargen", Outcome::Dropped), 2);
    assert_eq!(h.count("qotd", Outcome::Dropped), 1);
}

#[test]
fn the_same_payload_from_another_port_is_not_a_vector() {
    let mut h = Harness::new(Settings::default());
    for spec in ATTACKS {
        let frame = udp(REFLECTOR_V4, 4242, VICTIM_V4, 5000, &spec.payload(1));
        assert_eq!(h.inspect(&frame), Check::Clean, "{}", spec.name);
    }
}

// --- DNS ----------------------------------------------------------------------------------------

fn simple_dns_response(qtype: simple_dns::QTYPE, answers: usize, txt_len: usize) -> Vec<u8> {
    use simple_dns::rdata::{A, RData, TXT};
    use simple_dns::{CLASS, Name, Packet as Dns, PacketFlag, QCLASS, Question, ResourceRecord};
    let text = "t".repeat(txt_len.min(255));
    let mut p = Dns::new_reply(0x4242);
    p.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
    p.questions.push(Question::new(Name::new_unchecked("example.org"), qtype, QCLASS::CLASS(CLASS::IN), false));
    for i in 0..answers {
        let rdata = if txt_len == 0 {
            RData::A(A { address: 0xc000_0200 + i as u32 })
        } else {
            RData::TXT(TXT::new().with_string(&text).unwrap())
        };
        p.answers.push(ResourceRecord::new(Name::new_unchecked("example.org"), CLASS::IN, 300, rdata));
    }
    p.build_bytes_vec_compressed().unwrap()
}

#[test]
fn dns_samples_are_valid_dns_messages() {
    let dns_like = |s: &&Spec| s.name.starts_with("dns") || s.name == "mdns" || s.name == "netbios";
    for spec in ATTACKS.iter().chain(LEGIT).filter(dns_like) {
        let payload = spec.payload(3);
        if let Err(e) = simple_dns::Packet::parse(&payload) {
            // NetBIOS NBSTAT records are not DNS types; their header still parses.
            assert_eq!(spec.name, "netbios", "{}: {e:?}", spec.name);
        }
    }
    let bytes = ATTACKS[0].payload(1);
    let any = simple_dns::Packet::parse(&bytes).unwrap();
    assert_eq!(any.questions[0].qtype, simple_dns::QTYPE::ANY);
    assert!(ATTACKS[0].payload(1).len() > 3000, "ANY responses of signed zones are several kB");
}

#[test]
fn dns_responses_by_form_and_role() {
    use simple_dns::{QTYPE, TYPE};
    let any = simple_dns_response(QTYPE::ANY, 3, 0);
    let small = simple_dns_response(QTYPE::TYPE(TYPE::A), 2, 0);
    let large = simple_dns_response(QTYPE::TYPE(TYPE::TXT), 6, 250);
    assert!(large.len() > 1232 && small.len() < 100);
    let mut query = simple_dns::Packet::new_query(7);
    query.questions.push(simple_dns::Question::new(
        simple_dns::Name::new_unchecked("example.org"),
        QTYPE::TYPE(TYPE::A),
        simple_dns::QCLASS::CLASS(simple_dns::CLASS::IN),
        false,
    ));
    let query = query.build_bytes_vec().unwrap();

    let frame = |p: &[u8]| udp("192.0.2.53", 53, VICTIM_V4, 33_000, p);
    let reflect = Check::Reject(DropReason::AmpReflection);

    let mut h = Harness::new(Settings::default());
    assert_eq!(h.inspect(&frame(&any)), reflect);
    assert_eq!(h.inspect(&frame(&large)), reflect);
    assert_eq!(h.inspect(&frame(&small)), Check::Clean);
    assert_eq!(h.inspect(&frame(&query)), Check::Clean, "a query from port 53 (resolver to authoritative)");
    assert_eq!((h.count("dns-any", Outcome::Dropped), h.count("dns-large", Outcome::Dropped)), (1, 1));
    assert_eq!(h.count("dns", Outcome::Admitted), 1);

    // A resolver: plain responses allowed, the attack forms still dropped.
    let mut h = Harness::new(Settings::new(&Catalogue::standard(), Roles::RESOLVER));
    assert_eq!(h.inspect(&frame(&small)), Check::Clean);
    assert_eq!(h.count("dns", Outcome::Allowed), 1);
    assert_eq!(h.inspect(&frame(&any)), reflect);
    assert_eq!(h.inspect(&frame(&large)), reflect);

    // The size threshold is per profile.
    let mut s = Settings::new(&Catalogue::standard(), Roles::RESOLVER);
    let i = Catalogue::standard().index_of("dns-large").unwrap();
    s.vectors[i].min_size = 4097;
    let mut h = Harness::new(s);
    assert_eq!(h.inspect(&frame(&large)), Check::Clean);
    assert_eq!(h.count("dns", Outcome::Allowed), 1);
}

#[test]
fn a_rate_limited_vector_is_held_to_its_budget() {
    let mut h = Harness::new(Settings::default());
    let spec = samples::attack("dns").unwrap();
    let frame = attack_frame(spec, 1, false);
    // 10 kpps for 1 s against the default 1000 pps (100 ms burst) budget.
    let admitted = (0..10_000u64).filter(|i| h.inspect_at(&frame, SEC + i * 100_000) == Check::Clean).count() as u64;
    assert!((1000..=1102).contains(&admitted), "admitted {admitted}");
    assert_eq!(h.count("dns", Outcome::Admitted), admitted);
    assert_eq!(h.count("dns", Outcome::OverBudget), 10_000 - admitted);
    // Another destination has its own budget.
    let other = udp(REFLECTOR_V4, 53, "198.18.100.11", 40000, &spec.payload(1));
    assert_eq!(h.inspect_at(&other, 2 * SEC - 1), Check::Clean);
}

// --- NTP ------------------------------------------------------------------------------------------

#[test]
fn ntp_modes_and_the_client_role() {
    let spec = |n| samples::attack(n).unwrap().payload(5);
    let frame = |p: &[u8]| udp("192.0.2.123", 123, VICTIM_V4, 123, p);
    let client_request = samples::ntp_client_request(&mut Rng::new(1));
    let reflect = Check::Reject(DropReason::AmpReflection);

    let mut h = Harness::new(Settings::default());
    assert_eq!(h.inspect(&frame(&spec("ntp-private"))), reflect);
    assert_eq!(h.inspect(&frame(&spec("ntp-control"))), reflect);
    assert_eq!(h.inspect(&frame(&spec("ntp"))), Check::Clean);
    assert_eq!(h.count("ntp", Outcome::Admitted), 1);
    assert_eq!(
        h.inspect(&frame(&client_request)),
        Check::Clean,
        "a client (mode 3) from port 123 to a protected server"
    );
    // A mode 7 *request* (R bit clear) is not a reflected response.
    let mut request = spec("ntp-private");
    request[0] &= 0x7f;
    assert_eq!(h.inspect(&frame(&request)), Check::Clean);

    let mut h = Harness::new(Settings::new(&Catalogue::standard(), Roles::NTP_CLIENT));
    assert_eq!(h.inspect(&frame(&spec("ntp"))), Check::Clean);
    assert_eq!(h.count("ntp", Outcome::Allowed), 1);
    assert_eq!(h.inspect(&frame(&spec("ntp-private"))), reflect);
    assert_eq!(h.inspect(&frame(&spec("ntp-control"))), reflect);
}

// --- memcached, SSDP, CLDAP ---------------------------------------------------------------------

#[test]
fn memcached_needs_its_frame_header_and_a_response() {
    let frame = |p: &[u8]| udp(REFLECTOR_V4, 11211, VICTIM_V4, 80, p);
    let reflect = Check::Reject(DropReason::AmpReflection);
    let mut h = Harness::new(Settings::default());
    for name in ["memcached", "memcached-continuation", "memcached-stats"] {
        let spec = ATTACKS.iter().chain(ATTACK_VARIANTS).find(|s| s.name == name).unwrap();
        assert_eq!(h.inspect(&frame(&spec.payload(9))), reflect, "{name}");
    }
    // The body without the UDP frame header, a bad reserved field, a request: not responses.
    assert_eq!(h.inspect(&frame(b"VALUE a 0 5\r\nhello\r\nEND\r\n")), Check::Clean);
    assert_eq!(h.inspect(&frame(b"\x00\x01\x00\x00\x00\x01\x00\x01VALUE a 0 5\r\n")), Check::Clean);
    assert_eq!(h.inspect(&frame(b"\x00\x01\x00\x00\x00\x01\x00\x00get a\r\n")), Check::Clean);
    assert_eq!(h.inspect(&frame(b"\x00\x01\x00\x05\x00\x05\x00\x00tail")), Check::Clean, "seq beyond total");
}

#[test]
fn ssdp_and_cldap_forms() {
    let reflect = Check::Reject(DropReason::AmpReflection);
    let mut h = Harness::new(Settings::default());
    let ssdp = |p: &[u8]| udp(REFLECTOR_V4, 1900, VICTIM_V4, 80, p);
    assert_eq!(h.inspect(&ssdp(b"http/1.1 200 ok\r\nST: ssdp:all\r\n\r\n")), reflect);
    assert_eq!(h.inspect(&ssdp(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n")), Check::Clean);
    assert_eq!(h.inspect(&ssdp(b"HTTP/1.1 404 Not Found\r\n\r\n")), Check::Clean);
    let cldap = |p: &[u8]| udp(REFLECTOR_V4, 389, VICTIM_V4, 80, p);
    // searchRequest (APPLICATION 3 = 0x63) from port 389 is not a response.
    assert_eq!(h.inspect(&cldap(&[0x30, 0x05, 0x02, 0x01, 0x01, 0x63, 0x00])), Check::Clean);
    assert_eq!(h.inspect(&cldap(&[0x30, 0x84, 0, 0, 0, 5, 0x02, 0x01, 0x01, 0x64, 0x00])), reflect);
}

// --- profile overrides, disabling --------------------------------------------------------------

#[test]
fn profile_overrides_and_disabling() {
    let c = Catalogue::standard();
    let memcached = samples::attack("memcached").unwrap();
    let chargen = samples::attack("chargen").unwrap();
    let mut s = Settings::default();
    s.vectors[c.index_of("memcached").unwrap()].action = Action::Allow;
    s.vectors[c.index_of("chargen").unwrap()].action = Action::rate_limit(Rate::pps(1));
    let mut h = Harness::new(s);
    assert_eq!(h.inspect(&attack_frame(memcached, 1, false)), Check::Clean);
    assert_eq!(h.count("memcached", Outcome::Allowed), 1);
    assert_eq!(h.inspect(&attack_frame(chargen, 1, false)), Check::Clean);
    assert_eq!(h.inspect(&attack_frame(chargen, 1, false)), Check::Reject(DropReason::AmpRateLimit));
    assert_eq!(h.stats.event_count(Event::AmpVectorAllowed), 1);

    let mut h = Harness::new(Settings { enabled: false, ..Settings::default() });
    for spec in ATTACKS {
        assert_eq!(h.inspect(&attack_frame(spec, 2, false)), Check::Clean, "{}", spec.name);
    }
    assert_eq!(h.stats, Stats::default());
}

// --- fragments ----------------------------------------------------------------------------------

fn fragmented(spec: &Spec, src: &str, dst: &str, ident: u16) -> Vec<Vec<u8>> {
    let payload = spec.payload(u64::from(ident));
    samples::frames(ip(src), spec.src_port, ip(dst), 5555, &payload, ident, 1500)
}

#[test]
fn sample_fragments_reassemble_with_a_valid_checksum() {
    use smoltcp::wire::{IpAddress, UdpPacket};
    let spec = samples::attack("dns-any").unwrap();
    for (src, dst, l3) in [(REFLECTOR_V4, VICTIM_V4, 20), (REFLECTOR_V6, VICTIM_V6, 48)] {
        let frames = fragmented(spec, src, dst, 0x77);
        assert!(frames.len() >= 2 && frames.iter().all(|f| f.len() <= 1514));
        let mut datagram = Vec::new();
        for f in &frames {
            let info = parse(f).unwrap().unwrap();
            datagram.extend_from_slice(&f[usize::from(info.l4_offset)..]);
            assert_eq!(f.len(), 14 + l3 + usize::from(info.l4_len));
        }
        let udp = UdpPacket::new_checked(&datagram[..]).unwrap();
        let (s, d) = (IpAddress::from(ip(src)), IpAddress::from(ip(dst)));
        assert!(udp.verify_checksum(&s, &d));
        assert_eq!(udp.payload(), &spec.payload(0x77)[..]);
    }
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let reflect = Check::Reject(DropReason::AmpReflection);
    for (src, dst) in [(REFLECTOR_V4, VICTIM_V4), (REFLECTOR_V6, VICTIM_V6)] {
        let mut h = Harness::new(Settings::default());
        // A DNS ANY answer of ~3 kB: three fragments.
        let frames = fragmented(samples::attack("dns-any").unwrap(), src, dst, 0x1001);
        assert_eq!(frames.len(), 3);
        assert_eq!(h.inspect(&frames[0]), reflect);
        for f in &frames[1..] {
            assert_eq!(h.inspect(f), Check::Reject(DropReason::AmpFragment));
        }
        assert_eq!(h.count("dns-any", Outcome::Dropped), 1);
        assert_eq!(h.count("dns-any", Outcome::FragmentDropped), 2);

        // A legitimate large datagram (no vector): all fragments pass, following the first.
        let payload = vec![0x5a; 4000];
        let frames = samples::frames(ip(src), 4500, ip(dst), 4500, &payload, 0x2002, 1500);
        for f in &frames {
            assert_eq!(h.inspect(f), Check::Clean);
        }
        assert_eq!(h.stats.event_count(Event::AmpFragmentFollowed), frames.len() as u64 - 1);
    }
}

#[test]
fn fragments_of_a_rate_limited_datagram_share_its_byte_budget() {
    let c = Catalogue::standard();
    let mut s = Settings::default();
    // 4000 bytes/s and no packet budget: one 3.6 kB datagram per second fits, a second does not.
    let budget = Rate { pps: 0, bytes_per_sec: 4000, burst_ms: 1000 };
    s.vectors[c.index_of("dns-any").unwrap()].action = Action::rate_limit(budget);
    let mut h = Harness::new(s);
    let spec = samples::attack("dns-any").unwrap();
    let first = fragmented(spec, REFLECTOR_V4, VICTIM_V4, 1);
    let total: usize = first.iter().map(|f| f.len() - 14).sum();
    assert!((3000..=4000).contains(&total), "{total}");
    for f in &first {
        assert_eq!(h.inspect(f), Check::Clean);
    }
    assert_eq!(h.count("dns-any", Outcome::FragmentAdmitted), 2);
    let second = fragmented(spec, REFLECTOR_V4, VICTIM_V4, 2);
    let verdicts: Vec<Check> = second.iter().map(|f| h.inspect(f)).collect();
    assert!(verdicts.contains(&Check::Reject(DropReason::AmpRateLimit)), "{verdicts:?}");
}

#[test]
fn unseen_later_fragments_get_the_profile_fragment_action() {
    let spec = samples::attack("dns-any").unwrap();
    // Only later fragments (a first fragment lost, or an attack that sends no first fragment).
    let tails: Vec<Vec<u8>> =
        (0..2000u16).flat_map(|id| fragmented(spec, REFLECTOR_V4, VICTIM_V4, id).split_off(1)).collect();
    let mut h = Harness::new(Settings::default());
    let admitted = tails.iter().filter(|f| h.inspect_at(f, SEC) == Check::Clean).count();
    // Default: 1000 pps with a 100 ms burst → 101 at one instant (the 1.5 MB/s byte budget
    // allows more).
    assert_eq!(admitted, 101);
    assert_eq!(h.inspect_at(&tails[0], SEC), Check::Reject(DropReason::AmpFragmentRateLimit));

    let mut h = Harness::new(Settings { fragments: Action::Drop, ..Settings::default() });
    assert_eq!(h.inspect(&tails[0]), Check::Reject(DropReason::AmpFragmentPolicy));
    let mut h = Harness::new(Settings { fragments: Action::Allow, ..Settings::default() });
    assert_eq!(h.inspect(&tails[0]), Check::Clean);
    assert_eq!(h.stats.event_count(Event::AmpFragmentUnseenAdmit), 1);
}

#[test]
fn first_fragments_rejected_before_amp_take_their_fragments_with_them() {
    // A rule (say, on the destination port) drops a first fragment; its tail has no ports.
    let payload = vec![0x42; 3000];
    let frames = samples::frames(ip(REFLECTOR_V4), 4444, ip(VICTIM_V4), 9999, &payload, 77, 1500);
    let mut h = Harness::new(Settings::default());
    let first = parse(&frames[0]).unwrap().unwrap();
    let now = Now { mono_ns: SEC, wall_secs: 0 };
    h.state.first_fragment_rejected(&h.shared, &h.global, &h.settings, now, &first, &mut h.stats);
    for f in &frames[1..] {
        assert_eq!(h.inspect(f), Check::Reject(DropReason::AmpFragment));
    }
    // Not a first fragment, or amp off: nothing recorded.
    let whole = parse(&udp(REFLECTOR_V4, 4444, VICTIM_V4, 9999, b"x")).unwrap().unwrap();
    h.state.first_fragment_rejected(&h.shared, &h.global, &h.settings, now, &whole, &mut h.stats);
    assert_eq!(h.stats.event_count(Event::AmpFragmentRecorded), 1);
}

#[test]
fn a_first_fragment_seen_by_one_worker_governs_fragments_another_sees() {
    let mut a = Harness::new(Settings::default());
    let mut b = State::new();
    let mut b_stats = Stats::default();
    let frames = fragmented(samples::attack("dns-any").unwrap(), REFLECTOR_V4, VICTIM_V4, 9);
    assert_eq!(a.inspect(&frames[0]), Check::Reject(DropReason::AmpReflection));
    let info = parse(&frames[1]).unwrap().unwrap();
    let now = Now { mono_ns: SEC + MS, wall_secs: 0 };
    let v = b.inspect(&a.shared, &a.global, &a.settings, now, &info, &frames[1], &mut b_stats);
    assert_eq!(v, Check::Reject(DropReason::AmpFragment));
    // After the fragment memory expires, the same fragment is unseen.
    let later = Now { mono_ns: SEC + a.global.fragment_ttl_ns + SEC, wall_secs: 0 };
    let v = b.inspect(&a.shared, &a.global, &a.settings, later, &info, &frames[1], &mut b_stats);
    assert_eq!(v, Check::Clean, "unseen: within the default fragment budget");
}

// --- the shared budget across workers ----------------------------------------------------------

/// Two workers (two `State`s whose batch clocks are apart by `skew_ns`) see one destination's
/// rate-limited vector at 10× its budget; together they admit the budget ± 5 %. Returns what
/// each worker admitted.
fn two_workers(skew_ns: u64) -> [u64; 2] {
    let c = Catalogue::standard();
    let budget = Rate { pps: 3000, bytes_per_sec: 0, burst_ms: 100 };
    let mut s = Settings::default();
    s.vectors[c.index_of("stun").unwrap()].action = Action::rate_limit(budget);
    let global = Global::default();
    let shared = Shared::new(SharedConfig::default(), [3; 4]);
    let mut workers = [(State::new(), Stats::default()), (State::new(), Stats::default())];
    let spec = samples::attack("stun").unwrap();
    // Sources differ (RSS spreads them over the two queues); the destination is one.
    let frames: Vec<Vec<u8>> = (0..64u8)
        .map(|i| udp(&format!("198.18.1.{}", 10 + i), 3478, VICTIM_V4, 50_000, &spec.payload(u64::from(i))))
        .collect();
    let infos: Vec<_> = frames.iter().map(|f| parse(f).unwrap().unwrap()).collect();
    let seconds = 10u64;
    let offered_pps = 30_000u64;
    let step = SEC / offered_pps;
    for n in 0..seconds * offered_pps {
        let w = (n % 2) as usize;
        let now = Now { mono_ns: SEC + n * step - if w == 1 { skew_ns } else { 0 }, wall_secs: 0 };
        let k = (n % 64) as usize;
        let (state, stats) = &mut workers[w];
        state.inspect(&shared, &global, &s, now, &infos[k], &frames[k], stats);
    }
    let admitted = workers.map(|(_, st)| st.amp.packets_of(c.index_of("stun").unwrap(), Outcome::Admitted));
    let total: u64 = admitted.iter().sum();
    let expected = budget.pps * seconds;
    assert!(
        (expected * 95 / 100..=expected * 105 / 100).contains(&total),
        "skew {skew_ns} ns: admitted {total}, budget {expected}"
    );
    admitted
}

#[test]
fn two_workers_share_one_destination_budget() {
    for skew in [0, 10_000, 40_000, 1_000_000] {
        let per_worker = two_workers(skew);
        // With clocks closer than the packets' spacing, both workers get a share. (A worker
        // whose clock lags further sees tokens later and leaves them to the other: the budget
        // still holds for the destination, which is what it is for.)
        if skew < 33_000 {
            assert!(per_worker.iter().all(|&n| n > 30_000 / 4), "skew {skew}: {per_worker:?}");
        }
    }
}

#[test]
fn two_threads_share_one_byte_budget() {
    use std::sync::Arc;
    let budget = Rate { pps: 0, bytes_per_sec: 1_000_000, burst_ms: 100 };
    let mut s = Settings::default();
    s.vectors[Catalogue::standard().index_of("dns").unwrap()].action = Action::rate_limit(budget);
    let s = Arc::new(s);
    let global = Arc::new(Global::default());
    let shared = Arc::new(Shared::new(SharedConfig::default(), [5; 4]));
    let frame = attack_frame(samples::attack("dns").unwrap(), 3, false);
    let ip_len = u64::from(parse(&frame).unwrap().unwrap().ip_len);
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (s, global, shared, frame) = (s.clone(), global.clone(), shared.clone(), frame.clone());
            std::thread::spawn(move || {
                let info = parse(&frame).unwrap().unwrap();
                let mut state = State::new();
                let mut stats = Stats::default();
                let mut ok = 0u64;
                // Each thread offers 5 s of 50 kpps on its own clock; the clocks agree.
                for n in 0..250_000u64 {
                    let now = Now { mono_ns: SEC + n * 20_000 + t * 7_000, wall_secs: 0 };
                    if state.inspect(&shared, &global, &s, now, &info, &frame, &mut stats) == Check::Clean {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let expected = 5 * budget.bytes_per_sec / ip_len;
    assert!(
        admitted * 100 >= expected * 95 && admitted * 100 <= expected * 105 + 100 * ip_len,
        "admitted {admitted} packets of {ip_len} B, budget {expected}"
    );
}

// --- symmetric mode -------------------------------------------------------------------------------

#[test]
fn symmetric_mode_admits_exactly_the_responses_to_recorded_requests() {
    let mut h = Harness::new(Settings { symmetric: true, ..Settings::new(&Catalogue::standard(), Roles::RESOLVER) });
    let now = Now { mono_ns: SEC, wall_secs: 0 };
    // The protected host asks a resolver outside (origin → internet).
    let query = samples::dns_query(&mut Rng::new(11));
    let id = u16::from_be_bytes([query[0], query[1]]);
    let out = udp(VICTIM_V4, 41_000, "192.0.2.53", 53, &query);
    let info = parse(&out).unwrap().unwrap();
    assert!(h.state.record_request(&h.shared, &h.global, now, &info, &out, &mut h.stats));
    let mut answer = samples::attack("dns").unwrap().payload(1);
    answer[0..2].copy_from_slice(&id.to_be_bytes());
    let reply = |a: &[u8], src: &str, port: u16| udp(src, 53, VICTIM_V4, port, a);
    assert_eq!(h.inspect(&reply(&answer, "192.0.2.53", 41_000)), Check::Clean);
    assert_eq!(h.count("dns", Outcome::Solicited), 1);
    let unsolicited = Check::Reject(DropReason::AmpUnsolicited);
    assert_eq!(h.inspect(&reply(&answer, "192.0.2.54", 41_000)), unsolicited, "another server");
    assert_eq!(h.inspect(&reply(&answer, "192.0.2.53", 41_001)), unsolicited, "another port");
    answer[1] ^= 1;
    assert_eq!(h.inspect(&reply(&answer, "192.0.2.53", 41_000)), unsolicited, "another id");
    assert_eq!(h.count("dns", Outcome::Unsolicited), 3);

    // NTP: the reply's origin timestamp is the request's transmit timestamp.
    let request = samples::ntp_client_request(&mut Rng::new(12));
    let out = udp(VICTIM_V4, 123, "192.0.2.123", 123, &request);
    let info = parse(&out).unwrap().unwrap();
    assert!(h.state.record_request(&h.shared, &h.global, now, &info, &out, &mut h.stats));
    let mut server = samples::attack("ntp").unwrap().payload(2);
    server[24..32].copy_from_slice(&request[40..48]);
    let from_server = |p: &[u8]| udp("192.0.2.123", 123, VICTIM_V4, 123, p);
    assert_eq!(h.inspect(&from_server(&server)), Check::Clean);
    server[31] ^= 1;
    assert_eq!(h.inspect(&from_server(&server)), unsolicited);
    // Vectors without request matching keep their action.
    assert_eq!(
        h.inspect(&from_server(&samples::attack("ntp-private").unwrap().payload(1))),
        Check::Reject(DropReason::AmpReflection)
    );
    // Requests expire.
    let late = h.global.request_ttl_ns + 2 * SEC;
    server[31] ^= 1;
    assert_eq!(h.inspect_at(&from_server(&server), late), unsolicited);
    // Only queries and client requests are recorded.
    let resp = udp(VICTIM_V4, 53, "192.0.2.1", 40_000, &answer);
    let info = parse(&resp).unwrap().unwrap();
    assert!(!h.state.record_request(&h.shared, &h.global, now, &info, &resp, &mut h.stats));
    assert_eq!(h.stats.event_count(Event::AmpRequestRecorded), 2);
}

// --- counters -------------------------------------------------------------------------------------

#[test]
fn counters_add_up_across_workers() {
    let mut a = Harness::new(Settings::default());
    let mut b = Harness::new(Settings::default());
    let spec = samples::attack("chargen").unwrap();
    a.inspect(&attack_frame(spec, 1, false));
    b.inspect(&attack_frame(spec, 2, false));
    b.inspect(&attack_frame(spec, 3, true));
    let mut total = a.stats.clone();
    total.add(&b.stats);
    let i = a.index("chargen");
    assert_eq!(total.amp.packets_of(i, Outcome::Dropped), 3);
    assert!(total.amp.bytes[i][Outcome::Dropped.index()] > 3 * 900);
    assert_eq!(a.state.table_stats()[0].0, Table::AmpBuckets);
}

// --- property tests ---------------------------------------------------------------------------

fn catalogue_ports() -> Vec<u16> {
    Catalogue::standard().vectors().iter().flat_map(|v| v.ports.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn signatures_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600), claimed in 0usize..70_000) {
        for v in Catalogue::standard().vectors() {
            let _ = v.signature.matches(&bytes, claimed);
            let _ = v.signature.matches(&bytes, bytes.len());
        }
    }

    #[test]
    fn arbitrary_payloads_from_reflector_ports_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1500),
        port_pick in any::<proptest::sample::Index>(),
        v6 in any::<bool>(),
        symmetric in any::<bool>(),
    ) {
        let ports = catalogue_ports();
        let port = ports[port_pick.index(ports.len())];
        let (src, dst) = if v6 { (REFLECTOR_V6, VICTIM_V6) } else { (REFLECTOR_V4, VICTIM_V4) };
        let mut h = Harness::new(Settings { symmetric, ..Settings::default() });
        let frame = udp(src, port, dst, 9999, &bytes);
        let v = h.inspect(&frame);
        prop_assert!(matches!(v, Check::Clean | Check::Reject(_)));
        let info = parse(&frame).unwrap().unwrap();
        let now = Now { mono_ns: SEC, wall_secs: 0 };
        let _ = h.state.record_request(&h.shared, &h.global, now, &info, &frame, &mut h.stats);
    }

    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(Some(info)) = parse(&bytes) {
            let mut h = Harness::new(Settings::default());
            let now = Now { mono_ns: SEC, wall_secs: 0 };
            let _ = h.state.inspect(&h.shared, &h.global, &h.settings, now, &info, &bytes, &mut h.stats);
            let _ = h.state.record_request(&h.shared, &h.global, now, &info, &bytes, &mut h.stats);
        }
    }

    #[test]
    fn truncated_attack_payloads_never_panic(pick in any::<proptest::sample::Index>(), cut in 0usize..1500, seed in any::<u64>()) {
        let spec = &ATTACKS[pick.index(ATTACKS.len())];
        let mut payload = spec.payload(seed);
        payload.truncate(cut);
        let mut h = Harness::new(Settings::default());
        let _ = h.inspect(&udp(REFLECTOR_V4, spec.src_port, VICTIM_V4, 1234, &payload));
    }
}
