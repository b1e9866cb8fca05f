//! Fixtures for `State::inspect`: one per structural, cryptographic, frame, gating, replay,
//! budget and ClientHello rule, each built as an Ethernet frame and checked for its verdict and
//! counter.

use super::craft::{self, HelloSpec, InitialSpec, Kind, client_hello, client_initials, crypto_frames, seal_initial};
use super::keys::tests::unhex;
use super::*;
use crate::build::Packet as Frame;
use crate::parse::parse;
use proptest::prelude::*;
use std::net::IpAddr;

const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rfc9001() -> Vec<u8> {
    unhex(include_str!("testdata/rfc9001_client_initial.hex"))
}

fn rfc9369() -> Vec<u8> {
    unhex(include_str!("testdata/rfc9369_client_initial.hex"))
}

/// A worker's QUIC state with its settings, driven packet by packet.
struct Harness {
    state: State,
    shared: Shared,
    global: Global,
    settings: Settings,
    stats: Stats,
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            state: State::new(StateConfig { flows: 1024, pending: 8, summaries: 64, ..StateConfig::default() }),
            shared: Shared::new(SharedConfig { replay_slots: 1 << 12 }, [9; 4]),
            global: Global::default(),
            settings: Settings { enabled: true, ..Settings::default() },
            stats: Stats::default(),
            now: SEC,
        }
    }

    /// Sends `dgram` from `client:port` to 198.18.100.10:443.
    fn send_from(&mut self, client: &str, port: u16, dgram: &[u8]) -> Check {
        let frame = Frame::udp(
            ip(client),
            port,
            ip(if client.contains(':') { "2001:2:0:100::10" } else { "198.18.100.10" }),
            443,
        )
        .payload(dgram)
        .build();
        self.send_frame(&frame)
    }

    fn send_frame(&mut self, frame: &[u8]) -> Check {
        let info = parse(frame).unwrap().unwrap();
        let now = Now { mono_ns: self.now, wall_secs: 0 };
        self.state.inspect(&self.shared, &self.global, &self.settings, now, &info, frame, &mut self.stats)
    }

    fn send(&mut self, dgram: &[u8]) -> Check {
        self.send_from("198.18.1.2", 50000, dgram)
    }

    fn key(&self, client: &str, port: u16) -> FlowKey {
        FlowKey {
            client: Addr::from(ip(client)),
            server: Addr::from(ip("198.18.100.10")),
            client_port: port,
            server_port: 443,
        }
    }

    fn event(&self, e: Event) -> u64 {
        self.stats.event_count(e)
    }
}

fn reject(r: DropReason) -> Check {
    Check::Reject(r)
}

/// A valid first Initial with the given DCID and ClientHello spec.
fn valid(dcid: &[u8], hello: &HelloSpec<'_>) -> Vec<u8> {
    let ks = KeySchedule::new();
    let msg = client_hello(hello);
    let mut out = Vec::new();
    seal_initial(&ks, &InitialSpec { dcid, ..InitialSpec::default() }, None, &crypto_frames(&msg, 0, 1, 0), &mut out);
    out
}

/// A valid first Initial carrying exactly `frames` (then PADDING).
fn with_frames(frames: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal_initial(&KeySchedule::new(), &InitialSpec::default(), None, frames, &mut out);
    out
}

/// An unprotected-looking long header of `kind` (Handshake or 0-RTT) with a consistent Length.
fn long_packet(version: Version, kind: LongType, dcid: &[u8], body: usize) -> Vec<u8> {
    let mut p = vec![0xc0 | version.type_bits(kind) << 4];
    p.extend_from_slice(&version.wire().to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(0);
    frames::put_varint(&mut p, body as u64);
    p.resize(p.len() + body, 0x5a);
    p
}

#[test]
fn published_initials_are_admitted_with_their_client_hello() {
    for (d, version) in [(rfc9001(), Version::V1), (rfc9369(), Version::V2)] {
        let mut h = Harness::new();
        assert_eq!(h.send(&d), Check::Clean, "{version:?}");
        assert_eq!(h.state.flow_state(&h.key("198.18.1.2", 50000)), Some(FlowState::Admitted));
        assert_eq!(h.event(Event::QuicInitialValid), 1);
        assert_eq!(h.event(Event::QuicFlowAdmitted), 1);
        let hello = h.state.last_hello().expect("tagged");
        assert_eq!(hello.sni(), b"example.com");
        assert_eq!(hello.alpn(), b"alpn");
        // Later packets of the flow pass; the tag follows them.
        assert_eq!(h.send(&[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]), Check::Clean);
        assert_eq!(h.state.last_hello().map(|i| i.sni().to_vec()), Some(b"example.com".to_vec()));
        assert_eq!(h.send(&d), Check::Clean, "a later Initial of an admitted flow");
    }
}

#[test]
fn out_of_scope_traffic_is_clean() {
    let mut h = Harness::new();
    h.settings.enabled = false;
    assert_eq!(h.send(b"junk"), Check::Clean);
    h.settings.enabled = true;
    h.settings.ports = vec![(8443, 8443)];
    assert_eq!(h.send(b"junk"), Check::Clean);
    let tcp = crate::build::Packet::tcp(ip("198.18.1.2"), 5, ip("198.18.100.10"), 8443).build();
    assert_eq!(h.send_frame(&tcp), Check::Clean);
}

#[test]
fn structural_rules() {
    let d = rfc9001();
    let mut h = Harness::new();
    assert_eq!(h.send(&[]), reject(DropReason::QuicTruncated));
    assert_eq!(h.send(&[0xc0, 0, 0]), reject(DropReason::QuicTruncated));
    assert_eq!(h.send(&d[..1199]), reject(DropReason::QuicShortDatagram));
    assert_eq!(
        h.send(&craft::generate(&KeySchedule::new(), Kind::Short, 3, None)),
        reject(DropReason::QuicShortDatagram)
    );
    // Version Negotiation.
    let mut vn = d.clone();
    vn[1..5].fill(0);
    assert_eq!(h.send(&vn), reject(DropReason::QuicVersionNegotiation));
    // Unknown versions: drop, or pass when at least 1200 bytes.
    let mut other = d.clone();
    other[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
    assert_eq!(h.send(&other), reject(DropReason::QuicUnknownVersion));
    h.settings.unknown_versions = UnknownVersion::Pass;
    assert_eq!(h.send(&other), Check::Clean);
    assert_eq!(h.event(Event::QuicUnknownVersionPass), 1);
    assert_eq!(h.send(&other[..600]), reject(DropReason::QuicShortDatagram));
    // Retry from a client; the type bits differ between versions.
    let mut retry = d.clone();
    retry[0] = 0xf0;
    assert_eq!(h.send(&retry), reject(DropReason::QuicUnexpectedType));
    let mut v2_retry = rfc9369();
    v2_retry[0] = 0xc0;
    assert_eq!(h.send(&v2_retry), reject(DropReason::QuicUnexpectedType));
    // Connection IDs.
    let short_dcid = valid(&[1, 2, 3, 4, 5, 6, 7], &HelloSpec::default());
    assert_eq!(h.send(&short_dcid), reject(DropReason::QuicBadCid));
    let mut long_dcid = d.clone();
    long_dcid[5] = 21;
    assert_eq!(h.send(&long_dcid), reject(DropReason::QuicBadCid));
    let mut long_scid = d.clone();
    long_scid[14] = 21;
    assert_eq!(h.send(&long_scid), reject(DropReason::QuicBadCid));
    let scid21 = {
        let mut out = Vec::new();
        seal_initial(
            &KeySchedule::new(),
            &InitialSpec { scid: &[7; 21], ..InitialSpec::default() },
            None,
            &[1],
            &mut out,
        );
        out
    };
    assert_eq!(h.send(&scid21), reject(DropReason::QuicBadCid));
    // Token Length past the datagram; Length past the datagram.
    let mut token = d.clone();
    token[15] = 0x7f;
    token[16] = 0xff;
    assert_eq!(h.send(&token), reject(DropReason::QuicBadLength));
    let mut length = d.clone();
    length[17] = 0x9f;
    assert_eq!(h.send(&length), reject(DropReason::QuicBadLength));
    // Fixed Bit clear without a token.
    let mut fixed = d.clone();
    fixed[0] &= !0x40;
    assert_eq!(h.send(&fixed), reject(DropReason::QuicFixedBit));
    // Fragment.
    let frag = Frame::udp(ip("198.18.1.2"), 50000, ip("198.18.100.10"), 443).payload(&d).ipv4_fragment(0, true).build();
    assert_eq!(h.send_frame(&frag), reject(DropReason::QuicFragment));
    assert_eq!(h.event(Event::QuicInitialValid), 0, "no structural fault reached the crypto");
}

#[test]
fn coalesced_packets_and_trailing_padding() {
    let ks = KeySchedule::new();
    let hello = client_hello(&HelloSpec::default());
    let spec = InitialSpec { min_datagram: 0, ..InitialSpec::default() };
    let mut first = Vec::new();
    seal_initial(&ks, &spec, None, &crypto_frames(&hello, 0, 1, 0), &mut first);
    assert!(first.len() < 1200);
    let dcid = spec.dcid;

    // Initial + 0-RTT with the same DCID, padded with zeros: fine.
    let mut ok = first.clone();
    ok.extend_from_slice(&long_packet(Version::V1, LongType::ZeroRtt, dcid, 300));
    ok.resize(1250, 0);
    let mut h = Harness::new();
    assert_eq!(h.send(&ok), Check::Clean);

    // Initial + trailing zeros only.
    let mut padded = first.clone();
    padded.resize(1200, 0);
    let mut h = Harness::new();
    assert_eq!(h.send(&padded), Check::Clean);

    // Initial + short-header packet with the same DCID.
    let mut short = first.clone();
    short.push(0x41);
    short.extend_from_slice(dcid);
    short.resize(1200, 0x33);
    let mut h = Harness::new();
    assert_eq!(h.send(&short), Check::Clean);

    // A coalesced packet with another DCID, another version, or junk: refused.
    for tail in [
        long_packet(Version::V1, LongType::Handshake, &[9; 8], 400),
        long_packet(Version::V2, LongType::Handshake, dcid, 400),
        vec![0x13; 400],
        vec![0x41, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7],
    ] {
        let mut bad = first.clone();
        bad.extend_from_slice(&tail);
        bad.resize(bad.len().max(1200), 0);
        let mut h = Harness::new();
        assert_eq!(h.send(&bad), reject(DropReason::QuicBadCoalesced));
    }
}

#[test]
fn authentication_failures() {
    let ks = KeySchedule::new();
    let mut h = Harness::new();
    assert_eq!(h.send(&craft::generate(&ks, Kind::RandomDcid, 5, None)), reject(DropReason::QuicAuthFailed));
    let mut tampered = rfc9001();
    tampered[700] ^= 0x20;
    assert_eq!(h.send(&tampered), reject(DropReason::QuicAuthFailed));
    assert!(matches!(h.send(&craft::generate(&ks, Kind::Junk, 5, None)), Check::Reject(_)));
    assert_eq!(h.state.flow_state(&h.key("198.18.1.2", 50000)), None);
}

#[test]
fn frame_type_rules() {
    let hello = client_hello(&HelloSpec::default());
    let mut h = Harness::new();
    // STREAM frame in an Initial.
    let mut stream = crypto_frames(&hello, 0, 1, 0);
    stream.extend_from_slice(&[0x08, 0x00, 0x01, 0xaa]);
    assert_eq!(h.send(&with_frames(&stream)), reject(DropReason::QuicForbiddenFrame));
    // HANDSHAKE_DONE and application CONNECTION_CLOSE.
    for t in [0x1e, 0x1d] {
        assert_eq!(h.send(&with_frames(&[0x01, t, 0, 0, 0])), reject(DropReason::QuicForbiddenFrame));
    }
    // A CRYPTO frame cut short.
    assert_eq!(h.send(&with_frames(&[0x06, 0x00, 0x7f, 0xff, 1, 2])), reject(DropReason::QuicBadFrame));
    // ACK, PING, CONNECTION_CLOSE 0x1c are allowed, but the first Initial needs the ClientHello.
    let mut no_hello = Vec::new();
    frames::put_ack(&mut no_hello, 0);
    no_hello.extend_from_slice(&[0x01, 0x1c, 0, 0, 0]);
    assert_eq!(h.send(&with_frames(&no_hello)), reject(DropReason::QuicNoClientHello));
    // CRYPTO not at offset 0.
    assert_eq!(h.send(&with_frames(&crypto_frames(&hello[..100], 20, 1, 0))), reject(DropReason::QuicNoClientHello));
    // CRYPTO at offset 0 that is not a ClientHello (ServerHello type 2).
    let mut not_ch = hello.clone();
    not_ch[0] = 2;
    assert_eq!(h.send(&with_frames(&crypto_frames(&not_ch, 0, 1, 0))), reject(DropReason::QuicNoClientHello));
    // An empty CRYPTO frame at offset 0 followed by a PING (type 0x01, the ClientHello's type byte).
    assert_eq!(h.send(&with_frames(&[0x06, 0x00, 0x00, 0x01])), reject(DropReason::QuicNoClientHello));
    // A ClientHello without quic_transport_parameters.
    let no_tp = client_hello(&HelloSpec { transport_parameters: false, ..HelloSpec::default() });
    assert_eq!(h.send(&with_frames(&crypto_frames(&no_tp, 0, 1, 0))), reject(DropReason::QuicBadClientHello));
}

#[test]
fn shuffled_crypto_frames_are_reassembled() {
    let hello = client_hello(&HelloSpec { sni: Some("shuffled.example"), ..HelloSpec::default() });
    let frames = crypto_frames(&hello, 0, 7, 1234);
    // The shuffle really moved offset 0 away from the front.
    assert_ne!(&frames[..2], &[0x06, 0x00]);
    let mut h = Harness::new();
    assert_eq!(h.send(&with_frames(&frames)), Check::Clean);
    assert_eq!(h.state.last_hello().unwrap().sni(), b"shuffled.example");
}

#[test]
fn split_client_hello_is_admitted_after_its_second_initial() {
    let ks = KeySchedule::new();
    let hello = client_hello(&HelloSpec { sni: Some("pq.example"), extra_key_share: 1216, ..HelloSpec::default() });
    assert!(hello.len() > 1300);
    let datagrams = client_initials(&ks, &InitialSpec::default(), &hello, 2, 99);
    let mut h = Harness::new();
    // A rule needs the whole ClientHello, so 0-RTT waits for it.
    h.settings.hello_rules = vec![HelloRule {
        sni: Some(SniPattern::parse("blocked.example")),
        fingerprint: None,
        action: HelloAction::Drop,
    }];
    let key = h.key("198.18.1.2", 50000);
    assert_eq!(h.send(&datagrams[0]), Check::Clean);
    assert!(matches!(h.state.flow_state(&key), Some(FlowState::Pending { .. })));
    assert_eq!(h.event(Event::QuicHelloPending), 1);
    let zero_rtt = long_packet(Version::V1, LongType::ZeroRtt, InitialSpec::default().dcid, 200);
    assert_eq!(h.send(&zero_rtt), reject(DropReason::QuicUnadmittedZeroRtt));
    assert_eq!(h.send(&datagrams[1]), Check::Clean);
    assert_eq!(h.state.flow_state(&key), Some(FlowState::Admitted));
    assert_eq!(h.event(Event::QuicHelloContinued), 1);
    assert_eq!(h.event(Event::QuicInitialValid), 1, "keys derived once per flow");
    assert_eq!(h.state.last_hello().unwrap().sni(), b"pq.example");
    assert_eq!(h.send(&zero_rtt), Check::Clean);

    // The second part first: refused (the first Initial must start the ClientHello).
    let mut h = Harness::new();
    assert_eq!(h.send(&datagrams[1]), reject(DropReason::QuicNoClientHello));
    // Without rules, a pending flow is already admitted for other packets.
    let mut h = Harness::new();
    assert_eq!(h.send(&datagrams[0]), Check::Clean);
    assert_eq!(h.send(&zero_rtt), Check::Clean);
    // A Retry while the ClientHello is pending: the client starts again with the server's DCID
    // (new keys) and the Retry's token, its ClientHello again from the start.
    let mut h = Harness::new();
    assert_eq!(h.send(&datagrams[0]), Check::Clean);
    let retried = client_initials(
        &ks,
        &InitialSpec { dcid: &[0x5e; 12], token: &[0xa5; 40], ..InitialSpec::default() },
        &hello,
        2,
        7,
    );
    assert_eq!(h.send(&retried[0]), Check::Clean);
    assert_eq!(h.event(Event::QuicHelloRestarted), 1);
    assert_eq!(h.send(&retried[1]), Check::Clean);
    assert_eq!(h.state.flow_state(&key), Some(FlowState::Admitted));
    // Without a token, an Initial the pending flow's keys cannot open is refused as before.
    let mut h = Harness::new();
    assert_eq!(h.send(&datagrams[0]), Check::Clean);
    let other = client_initials(&ks, &InitialSpec { dcid: &[0x5e; 12], ..InitialSpec::default() }, &hello, 2, 7);
    assert!(matches!(h.send(&other[0]), Check::Reject(_)));
    assert_eq!(h.event(Event::QuicHelloRestarted), 0);
    // Too many Initials without completing: given up.
    let mut h = Harness::new();
    h.global.max_hello_packets = 1;
    assert_eq!(h.send(&datagrams[0]), Check::Clean);
    assert_eq!(h.send(&datagrams[1]), reject(DropReason::QuicHelloIncomplete));
    assert_eq!(h.state.flow_state(&key), None);
}

#[test]
fn replayed_dcid_is_refused_beyond_the_limit() {
    let mut h = Harness::new();
    h.global.replay_limit = 3;
    let d = rfc9001();
    let mut results = Vec::new();
    for i in 0..6u8 {
        results.push(h.send_from(&format!("198.18.1.{}", 10 + i), 40000, &d));
    }
    let refused = results.iter().filter(|c| **c == reject(DropReason::QuicReplay)).count();
    assert_eq!(&results[..3], &[Check::Clean; 3]);
    assert_eq!(refused, 3, "{results:?}");
    // The admitted tuples keep working; a retransmission from one of them is not a replay.
    assert_eq!(h.send_from("198.18.1.10", 40000, &d), Check::Clean);
    // Replays checked before crypto once the DCID is over the limit: no decryption spent.
    let valid_before = h.event(Event::QuicInitialValid);
    assert_eq!(h.send_from("198.18.1.99", 40000, &d), reject(DropReason::QuicReplay));
    assert_eq!(h.event(Event::QuicInitialValid), valid_before);
    // After the replay TTL the DCID is fresh again.
    h.now += 60 * SEC;
    assert_eq!(h.send_from("198.18.1.98", 40000, &d), Check::Clean);
}

/// RFC 9287 (grease_quic_bit): once a client has the server's transport parameters it may clear
/// the QUIC bit of any packet. Its Initial acknowledging the server's, coalesced with its
/// Handshake packet and a 1-RTT packet, all with the bit clear, passes for an admitted flow; the
/// same datagram opening an unknown flow does not.
#[test]
fn a_known_flow_may_clear_the_quic_bit() {
    let ks = KeySchedule::new();
    let dcid = InitialSpec::default().dcid;
    let mut later = Vec::new();
    let spec = InitialSpec { pn: 1, min_datagram: 0, ..InitialSpec::default() };
    seal_initial(&ks, &spec, None, &[0x02, 0x00, 0x00, 0x00, 0x00], &mut later);
    later[0] &= !0x40;
    let mut hs = long_packet(Version::V1, LongType::Handshake, dcid, 300);
    hs[0] &= !0x40;
    later.extend_from_slice(&hs);
    later.push(0x01);
    later.extend_from_slice(dcid);
    later.resize(1200, 0x33);

    let mut h = Harness::new();
    assert_eq!(h.send(&later), reject(DropReason::QuicFixedBit), "an unknown flow's Initial keeps the rule");
    assert_eq!(h.send(&valid(dcid, &HelloSpec::default())), Check::Clean);
    assert_eq!(h.send(&later), Check::Clean);
    assert_eq!(h.send(&hs), Check::Clean);
    assert_eq!(h.send(&[0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]), Check::Clean);
}

/// Replays of one valid Initial from many 4-tuples, with a limit of 1 (the lab's setting): none
/// is admitted, whatever the tuples' hashes (a bitmap membership test let 1 in 32 through).
#[test]
fn replays_from_many_tuples_are_all_refused_with_a_limit_of_one() {
    let mut h = Harness::new();
    h.global.replay_limit = 1;
    h.settings.src_initial_rate = None;
    h.settings.dst_initial_rate = None;
    let d = rfc9001();
    assert_eq!(h.send_from("198.18.1.10", 40000, &d), Check::Clean, "the client's own Initial");
    let mut admitted = 0;
    for i in 0..4000u32 {
        let src = format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff);
        if h.send_from(&src, 1024 + (i % 60000) as u16, &d) != reject(DropReason::QuicReplay) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 0);
    assert_eq!(h.send_from("198.18.1.10", 40000, &d), Check::Clean, "the client's flow keeps working");
}

#[test]
fn gating_of_unadmitted_flows() {
    let dcid = [5u8; 8];
    let hs = long_packet(Version::V1, LongType::Handshake, &dcid, 100);
    let zrtt = long_packet(Version::V2, LongType::ZeroRtt, &dcid, 100);
    let short = [0x43u8, 5, 5, 5, 5, 5, 5, 5, 5, 0xee, 0xee];
    let mut h = Harness::new();
    assert_eq!(h.send(&hs), reject(DropReason::QuicUnadmittedHandshake));
    assert_eq!(h.send(&zrtt), reject(DropReason::QuicUnadmittedZeroRtt));
    assert_eq!(h.send(&short), reject(DropReason::QuicUnadmittedShort));
    let mut bad_hs = hs.clone();
    bad_hs[5] = 30;
    assert_eq!(h.send(&bad_hs), reject(DropReason::QuicBadCid));
    assert_eq!(h.send(&hs[..hs.len() - 1]), reject(DropReason::QuicBadLength));
    h.settings.gating = Gating::Lenient;
    assert_eq!(h.send(&hs), Check::Clean);
    assert_eq!(h.send(&short), Check::Clean);
    assert_eq!(h.event(Event::QuicLenientForward), 2);
    // Strict again: admitted flows pass until their TTL.
    h.settings.gating = Gating::Strict;
    assert_eq!(h.send(&rfc9001()), Check::Clean);
    assert_eq!(h.send(&hs), Check::Clean);
    h.now += h.global.flow_ttl_ns / 2;
    assert_eq!(h.send(&short), Check::Clean, "traffic refreshes the TTL");
    h.now += h.global.flow_ttl_ns - 1;
    assert_eq!(h.send(&short), Check::Clean);
    h.now += h.global.flow_ttl_ns + 1;
    assert_eq!(h.send(&short), reject(DropReason::QuicUnadmittedShort));
    assert_eq!(h.event(Event::QuicFlowExpired), 1);
}

#[test]
fn decryption_budget_and_initial_rate_limits() {
    let ks = KeySchedule::new();
    let initials: Vec<Vec<u8>> = (0..4).map(|i| craft::generate(&ks, Kind::Valid, 100 + i, None)).collect();
    // Budget of 10 per second: a 100 ms burst holds one token.
    let mut h = Harness::new();
    h.global.decrypt_budget_pps = 10;
    assert_eq!(h.send_from("198.18.1.2", 1000, &initials[0]), Check::Clean);
    assert_eq!(h.send_from("198.18.1.3", 1001, &initials[1]), reject(DropReason::QuicCryptoBudget));
    h.settings.gating = Gating::Lenient;
    assert_eq!(h.send_from("198.18.1.4", 1002, &initials[2]), Check::Clean);
    assert_eq!(h.event(Event::QuicBudgetForward), 1);
    assert_eq!(h.state.flow_state(&h.key("198.18.1.4", 1002)), None, "never admitted over budget");
    h.now += SEC;
    assert_eq!(h.send_from("198.18.1.5", 1003, &initials[3]), Check::Clean);
    assert_eq!(h.event(Event::QuicInitialValid), 2);

    // One first Initial per source per second (burst 1): the second from the same source is
    // refused before any crypto; IPv6 sources share a /64.
    let mut h = Harness::new();
    h.settings.src_initial_rate = Some(Rate::pps(1));
    assert_eq!(h.send_from("198.18.1.2", 1000, &initials[0]), Check::Clean);
    assert_eq!(h.send_from("198.18.1.2", 1001, &initials[1]), reject(DropReason::QuicSrcRateLimit));
    assert_eq!(h.send_from("2001:2:0:1::1", 1000, &initials[2]), Check::Clean);
    assert_eq!(h.send_from("2001:2:0:1::2", 1000, &initials[3]), reject(DropReason::QuicSrcRateLimit));
    let mut h = Harness::new();
    h.settings.dst_initial_rate = Some(Rate::pps(1));
    assert_eq!(h.send_from("198.18.1.2", 1000, &initials[0]), Check::Clean);
    assert_eq!(h.send_from("198.18.1.3", 1000, &initials[1]), reject(DropReason::QuicDstRateLimit));
}

#[test]
fn client_hello_rules_by_sni_and_fingerprint() {
    let d = rfc9001();
    let rule = |sni: Option<&str>, fp: Option<&str>, action| HelloRule {
        sni: sni.map(SniPattern::parse),
        fingerprint: fp.map(FingerprintPattern::parse),
        action,
    };
    let mut h = Harness::new();
    h.settings.hello_rules = vec![rule(Some("EXAMPLE.com"), None, HelloAction::Drop)];
    assert_eq!(h.send(&d), reject(DropReason::QuicHelloRuleDrop));
    assert_eq!(h.state.last_hello().unwrap().sni(), b"example.com", "refused flows are tagged too");
    assert_eq!(h.send(&[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]), reject(DropReason::QuicRefusedFlow));
    assert_eq!(h.send(&d), reject(DropReason::QuicRefusedFlow));

    let mut h = Harness::new();
    h.settings.hello_rules = vec![rule(None, Some("q13d0211an_*"), HelloAction::Drop)];
    assert_eq!(h.send(&d), reject(DropReason::QuicHelloRuleDrop));

    let mut h = Harness::new();
    h.settings.hello_rules = vec![
        rule(Some("*.example.com"), None, HelloAction::Drop),
        rule(Some("example.com"), Some("q13*"), HelloAction::Allow),
    ];
    h.settings.hello_default = HelloAction::Drop;
    assert_eq!(h.send(&d), Check::Clean);
    assert_eq!(h.event(Event::QuicHelloRuleAllow), 1);
    let other = valid(&[3; 8], &HelloSpec { sni: Some("www.example.com"), ..HelloSpec::default() });
    assert_eq!(h.send_from("198.18.1.3", 1, &other), reject(DropReason::QuicHelloRuleDrop));
    let none = valid(&[4; 8], &HelloSpec { sni: None, ..HelloSpec::default() });
    assert_eq!(h.send_from("198.18.1.4", 1, &none), reject(DropReason::QuicHelloRuleDrop), "default drop");

    assert!(SniPattern::parse("").matches(b""));
    assert!(!SniPattern::parse("*.example.com").matches(b"example.com"));
}

#[test]
fn fingerprints_are_computed_only_when_a_rule_or_a_capture_reads_them() {
    let d = rfc9001();
    let mut h = Harness::new();
    assert_eq!(h.send(&d), Check::Clean);
    let hello = h.state.last_hello().expect("tagged");
    assert_eq!(hello.sni(), b"example.com", "SNI is always known");
    assert_eq!(hello.ja4_str(), "", "nothing reads a fingerprint");

    let mut h = Harness::new();
    h.state.set_capturing(true);
    assert_eq!(h.send(&d), Check::Clean);
    assert!(h.state.last_hello().expect("tagged").ja4_str().starts_with("q13d"), "for the capture's tags");

    let mut h = Harness::new();
    h.settings.hello_rules =
        vec![HelloRule { sni: None, fingerprint: Some(FingerprintPattern::parse("x13*")), action: HelloAction::Drop }];
    assert_eq!(h.send(&d), Check::Clean, "the rule does not match");
    assert!(h.state.last_hello().expect("tagged").ja4_str().starts_with("q13d"), "for the rule");

    let mut h = Harness::new();
    h.settings.fingerprint = false;
    h.state.set_capturing(true);
    assert_eq!(h.send(&d), Check::Clean);
    assert_eq!(h.state.last_hello().expect("tagged").ja4_str(), "", "fingerprinting off");
}

#[test]
fn tables_are_bounded_and_counted() {
    let ks = KeySchedule::new();
    let mut h = Harness::new();
    h.state = State::new(StateConfig { flows: 4, ..StateConfig::default() });
    h.settings.src_initial_rate = None;
    for i in 0..10u64 {
        let d = craft::generate(&ks, Kind::Valid, i, None);
        assert_eq!(h.send_from("198.18.1.2", 2000 + i as u16, &d), Check::Clean);
    }
    h.state.refresh_table_stats(&mut h.stats);
    let t = h.stats.tables[Table::QuicFlows.index()];
    // Room for 4 flows is 8 entries in two sets of four; where the 10 flows land is random.
    assert_eq!(t.capacity, 8);
    assert!(t.len <= 8 && t.evictions >= 2, "{t:?}");
    assert_eq!(t.len + t.evictions, 10);
}

proptest! {
    #[test]
    fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400), first in any::<u8>(), v2 in any::<bool>()) {
        let mut d = bytes;
        if let Some(b) = d.first_mut() {
            *b = first;
        }
        if d.len() >= 5 && first & 0x80 != 0 {
            let v = if v2 { Version::V2 } else { Version::V1 };
            d[1..5].copy_from_slice(&v.wire().to_be_bytes());
        }
        let mut h = Harness::new();
        let _ = h.send(&d);
        let _ = h.send(&d);
    }

    #[test]
    fn single_byte_tampers_of_a_built_initial_never_admit(at in 0usize..1200, flip in 1u8..=255) {
        let mut d = rfc9001();
        d[at] ^= flip;
        let mut h = Harness::new();
        let c = h.send(&d);
        prop_assert!(c != Check::Clean || h.state.flow_state(&h.key("198.18.1.2", 50000)).is_none(), "{c:?}");
    }
}
