//! State-level scenarios: handshakes through the challenge, floods, options, modes.

use super::*;
use crate::build::Packet;
use crate::parse::parse;
use crate::pipeline::PipelineConfig;
use cookie::Key;
use smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket};
use std::net::IpAddr;

const MS: u64 = 1_000_000;
const T0_WALL: u64 = 1_700_000_000;
const T0_MONO: u64 = 1_000 * SEC;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn prefix_of(addr: IpAddr) -> Cidr {
    if addr.is_ipv4() { "198.18.100.0/24".parse().unwrap() } else { "2001:2:0:100::/64".parse().unwrap() }
}

/// One appliance: shared tables, global policy part, and the reply budget of each worker.
struct Rig {
    shared: Shared,
    global: Global,
    settings: Settings,
    mode: Mode,
    workers: Vec<(State, ReplyBudget, Stats)>,
}

impl Rig {
    fn new(workers: usize, settings: Settings) -> Rig {
        Rig::with_budget(workers, settings, PipelineConfig::default())
    }

    fn with_budget(workers: usize, settings: Settings, config: PipelineConfig) -> Rig {
        let sizes =
            StateConfig { workers: workers as u32, retransmit: 1024, check_failures: 1024, ..StateConfig::default() };
        let shared = Shared::new(SharedConfig { verified_sources: 1 << 16, ..SharedConfig::default() }, [1, 2, 3, 4]);
        let global = Global { secrets: Secrets::new(Key::new(*b"0123456789abcdef"), 60), ..Global::default() };
        let config = PipelineConfig { workers: workers as u32, ..config };
        Rig {
            workers: (0..workers)
                .map(|_| (State::new(sizes, &shared), ReplyBudget::new(&config), Stats::default()))
                .collect(),
            shared,
            global,
            settings,
            mode: Mode::Mitigate,
        }
    }

    /// Runs `bytes` through worker `w` at `now`; returns the check and the frame afterwards.
    fn run(&mut self, w: usize, now: Now, bytes: &[u8]) -> (Check, Vec<u8>) {
        let info = parse(bytes).unwrap().unwrap();
        let mut buf = bytes.to_vec();
        buf.resize(bytes.len() + 64, 0);
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        let env = Env {
            shared: &self.shared,
            global: &self.global,
            settings: &self.settings,
            prefix: prefix_of(info.dst.to_ip()),
            mode: self.mode,
            now,
        };
        let (state, replies, stats) = &mut self.workers[w];
        let check = state.inspect(&env, &info, &mut frame, replies, stats);
        (check, frame.data().to_vec())
    }

    fn events(&self, e: Event) -> u64 {
        self.workers.iter().map(|(_, _, s)| s.event_count(e)).sum()
    }
}

fn at(ms: u64) -> Now {
    Now { mono_ns: T0_MONO + ms * MS, wall_secs: T0_WALL + ms / 1000 }
}

fn syn(src: IpAddr, sport: u16, dst: IpAddr, isn: u32) -> Vec<u8> {
    Packet::tcp(src, sport, dst, 80)
        .seq_ack(isn, 0)
        .tcp_options(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
        .build()
}

/// The client's answer to a SYN-ACK: RST with SEQ = the SYN-ACK's ACK (RFC 9293 §3.10.7.3).
fn client_rst(syn_ack: &[u8]) -> Vec<u8> {
    let info = parse(syn_ack).unwrap().unwrap();
    let l4 = usize::from(info.l4_offset);
    let tcp = TcpPacket::new_checked(&syn_ack[l4..]).unwrap();
    assert!(tcp.ack() && !tcp.rst());
    let mut p = Packet::tcp(info.dst.to_ip(), tcp.dst_port(), info.src.to_ip(), tcp.src_port())
        .flags(tcp_flags::RST)
        .seq_ack(tcp.ack_number().0 as u32, 0);
    p.vlans = (0..info.vlan_count).map(|i| (0x8100, info.vlan_ids[usize::from(i)])).collect();
    p.build()
}

fn assert_syn_ack_for(out: &[u8], syn_bytes: &[u8]) {
    let s = parse(syn_bytes).unwrap().unwrap();
    let r = parse(out).unwrap().unwrap();
    assert_eq!((r.src, r.dst, r.src_port, r.dst_port), (s.dst, s.src, s.dst_port, s.src_port));
    assert_eq!(r.tcp_flags, tcp_flags::ACK, "the default challenge is a bare ACK");
    let eth = EthernetFrame::new_checked(out).unwrap();
    let l3 = &out[usize::from(r.l3_offset)..];
    let _ = eth;
    let ok = if r.src.is_v4() {
        let v4 = Ipv4Packet::new_checked(l3).unwrap();
        v4.verify_checksum()
            && TcpPacket::new_checked(v4.payload())
                .unwrap()
                .verify_checksum(&r.src.to_ip().into(), &r.dst.to_ip().into())
    } else {
        let v6 = Ipv6Packet::new_checked(l3).unwrap();
        TcpPacket::new_checked(v6.payload()).unwrap().verify_checksum(&r.src.to_ip().into(), &r.dst.to_ip().into())
    };
    assert!(ok, "checksums of the SYN-ACK");
    // The cookie is out of the client's window: never ISN + 1.
    let isn = challenge::seq_number(syn_bytes, &s).unwrap();
    let ack = TcpPacket::new_checked(&out[usize::from(r.l4_offset)..]).unwrap().ack_number().0 as u32;
    assert_ne!(ack, isn.wrapping_add(1));
}

fn client(i: u32) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::from([198, 18, 1 + (i / 2 / 250) as u8, 1 + (i / 2 % 250) as u8])
    } else {
        IpAddr::from(std::net::Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, (i >> 16) as u16, i as u16))
    }
}

fn server(c: IpAddr) -> IpAddr {
    if c.is_ipv4() { ip("198.18.100.10") } else { ip("2001:2:0:100::10") }
}

#[test]
fn handshake_from_many_sources_verifies_and_forwards_the_retransmitted_syn() {
    let mut rig = Rig::new(2, Settings::default());
    let n = 600u32;
    for i in 0..n {
        let c = client(i);
        let first = syn(c, 40_000 + i as u16, server(c), 1000 + i);
        let t = u64::from(i);
        let (check, out) = rig.run(0, at(t), &first);
        assert_eq!(check, Check::Replied, "source {c}");
        assert_syn_ack_for(&out, &first);
        // The RST lands on worker 1, the retransmitted SYN on worker 0: verification is shared.
        let (check, _) = rig.run(1, at(t + 1), &client_rst(&out));
        assert_eq!(check, Check::Reject(DropReason::SynCookieAnswer), "source {c}");
        let (check, again) = rig.run(0, at(t + 13), &first);
        assert_eq!(check, Check::Clean, "retransmitted SYN from {c} is forwarded");
        assert_eq!(again, first, "a forwarded SYN is not touched");
        // Later connections from the source pass at once.
        let later = syn(c, 50_000 + i as u16, server(c), 99);
        assert_eq!(rig.run(1, at(t + 5_000), &later).0, Check::Clean);
    }
    assert_eq!(rig.events(Event::SynAckSent), u64::from(n));
    assert_eq!(rig.events(Event::SynCookieValid), u64::from(n));
    assert_eq!(rig.events(Event::SynSourceVerified), u64::from(n));
    assert_eq!(rig.events(Event::SynVerifiedSyn), 2 * u64::from(n));
    assert_eq!(rig.events(Event::SynCookieInvalid), 0);
    assert_eq!(rig.shared.verified.stats(at(6_000).mono_ns / SEC).len, u64::from(n));
}

#[test]
fn syn_ack_challenge_verifies_too() {
    let mut rig = Rig::new(1, Settings { challenge: Challenge::SynAck, ..Settings::default() });
    for c in [ip("198.18.1.2"), ip("2001:2:0:1::2")] {
        let first = syn(c, 1234, server(c), 77);
        let (check, out) = rig.run(0, at(0), &first);
        assert_eq!(check, Check::Replied);
        let r = parse(&out).unwrap().unwrap();
        assert_eq!(r.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
        let tcp = TcpPacket::new_checked(&out[usize::from(r.l4_offset)..]).unwrap();
        assert_eq!(tcp.options()[..2], [2, 4], "an MSS option");
        assert!(tcp.verify_checksum(&r.src.to_ip().into(), &r.dst.to_ip().into()));
        assert_eq!(rig.run(0, at(1), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
        assert_eq!(rig.run(0, at(13), &first).0, Check::Clean);
    }
}

#[test]
fn vlan_tagged_handshake() {
    let mut rig = Rig::new(1, Settings::default());
    let first = Packet::tcp(ip("198.18.1.5"), 33_000, ip("198.18.100.10"), 443).seq_ack(5, 0).vlan(42).build();
    let (check, out) = rig.run(0, at(0), &first);
    assert_eq!(check, Check::Replied);
    assert_eq!(&out[12..18], &first[12..18], "tag kept");
    assert_syn_ack_for(&out, &first);
    assert_eq!(rig.run(0, at(1), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
    assert_eq!(rig.run(0, at(12), &first).0, Check::Clean);
}

/// A tiny deterministic generator (xorshift) for spoofed sources and guesses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn spoofed_syn_flood_never_produces_a_forward() {
    let config = PipelineConfig {
        reply_budget: Rate::pps(20_000),
        reply_budget_per_dst: Rate::pps(1_000),
        ..PipelineConfig::default()
    };
    let mut rig = Rig::with_budget(2, Settings::default(), config);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut template = Packet::tcp(ip("198.18.1.1"), 1, ip("198.18.100.10"), 80);
    let (mut replied, mut over) = (0u64, 0u64);
    for k in 0..100_000u64 {
        let r = rng.next();
        // Sources share the clients' /24s and the rest of 198.18.0.0/15.
        let src = 0xc612_0000u32 | (r as u32 & 0x1_ffff);
        template.src = IpAddr::from(src.to_be_bytes());
        template.l4 = crate::build::L4::Tcp {
            src_port: (r >> 20) as u16,
            dst_port: 80,
            flags: tcp_flags::SYN,
            seq: (r >> 32) as u32,
            ack: 0,
            window: 512,
            options: Vec::new(),
        };
        let bytes = template.build();
        // 1 Mpps offered for 0.1 s.
        let now = Now { mono_ns: T0_MONO + k * 1_000, wall_secs: T0_WALL };
        match rig.run((k % 2) as usize, now, &bytes).0 {
            Check::Replied => replied += 1,
            Check::Reject(DropReason::SynChallengeOverBudget) => over += 1,
            other => panic!("spoofed SYN #{k} got {other:?}"),
        }
        // And a blind RST guessing the cookie of that SYN.
        let mut rst = template.clone().flags(tcp_flags::RST);
        rst.l4 = match rst.l4 {
            crate::build::L4::Tcp { src_port, .. } => crate::build::L4::Tcp {
                src_port,
                dst_port: 80,
                flags: tcp_flags::RST,
                seq: rng.next() as u32,
                ack: 0,
                window: 0,
                options: Vec::new(),
            },
            l4 => l4,
        };
        assert_eq!(
            rig.run((k % 2) as usize, now, &rst.build()).0,
            Check::Clean,
            "unverified RST forwarded, not verified"
        );
    }
    assert_eq!(replied + over, 100_000);
    // The budget held: per worker, 10 000 pps for 0.1 s plus its 100 ms burst.
    assert!((3_900..=4_002).contains(&replied), "replied {replied}");
    assert_eq!(over, 100_000 - replied);
    assert_eq!(rig.workers.iter().map(|w| w.2.event_count(Event::SynAckSent)).sum::<u64>(), replied);
    assert_eq!(rig.events(Event::SynCookieValid), 0);
    assert_eq!(rig.events(Event::SynSourceVerified), 0);
    assert_eq!(rig.shared.verified.stats(T0_MONO / SEC).len, 0);
    // Every blind RST failed a check; the per-source failure tables stayed within their size.
    assert_eq!(rig.events(Event::SynCookieInvalid) + rig.events(Event::SynCookieExpired), 100_000);
    for (state, _, _) in &rig.workers {
        assert_eq!(state.failures.len(), 1024);
        assert!(state.failures.stats().evictions > 40_000);
    }
}

#[test]
fn monitor_mode_never_touches_the_frame() {
    let mut rig = Rig::new(1, Settings::default());
    rig.mode = Mode::Monitor;
    let first = syn(ip("198.18.1.2"), 1234, ip("198.18.100.10"), 1);
    let (check, out) = rig.run(0, at(0), &first);
    assert_eq!(check, Check::Reject(DropReason::SynUnverified));
    assert_eq!(out, first);
    assert_eq!(rig.events(Event::SynAckSent), 0);
}

#[test]
fn expired_and_misdirected_cookies_do_not_verify() {
    let mut rig = Rig::new(1, Settings::default());
    let c = ip("198.18.1.2");
    let first = syn(c, 1234, server(c), 1);
    let (_, out) = rig.run(0, at(0), &first);
    let rst = client_rst(&out);
    // Two periods later the cookie has expired: counted, forwarded, not verified.
    let late = Now { mono_ns: at(0).mono_ns + 121 * SEC, wall_secs: at(0).wall_secs / 60 * 60 + 120 };
    assert_eq!(rig.run(0, late, &rst).0, Check::Clean);
    assert_eq!(rig.events(Event::SynCookieExpired), 1);
    // Same value from another port, or toward another server: invalid.
    let mut other = client_rst(&out);
    let info = parse(&other).unwrap().unwrap();
    let l4 = usize::from(info.l4_offset);
    other[l4] ^= 1; // source port
    crate::build::fill_l4_checksum(
        &mut other[14..],
        l4 - 14,
        proto::TCP,
        info.src.to_ip(),
        info.dst.to_ip(),
        usize::from(info.l4_len),
    );
    assert_eq!(rig.run(0, at(1), &other).0, Check::Clean);
    assert_eq!(rig.events(Event::SynCookieInvalid), 1);
    assert_eq!(rig.run(0, at(2), &first).0, Check::Replied, "still unverified");
    // The real answer in time still works.
    assert_eq!(rig.run(0, at(3), &rst).0, Check::Reject(DropReason::SynCookieAnswer));
}

#[test]
fn rst_ack_and_ack_are_forwarded_by_default_and_dropped_under_strict() {
    let c = ip("198.18.1.2");
    let ack = Packet::tcp(c, 1234, server(c), 80).flags(tcp_flags::ACK).seq_ack(5, 6).payload(b"GET /").build();
    let rst_ack = Packet::tcp(c, 1234, server(c), 80).flags(tcp_flags::RST | tcp_flags::ACK).seq_ack(5, 6).build();
    let syn_ack = Packet::tcp(c, 1234, server(c), 80).flags(tcp_flags::SYN | tcp_flags::ACK).build();
    let mut rig = Rig::new(1, Settings::default());
    for bytes in [&ack, &rst_ack, &syn_ack] {
        assert_eq!(rig.run(0, at(0), bytes).0, Check::Clean);
    }
    assert_eq!(rig.events(Event::SynCookieInvalid), 0, "RST+ACK is not a challenge answer");

    let mut rig = Rig::new(1, Settings { strict: true, ..Settings::default() });
    for bytes in [&ack, &rst_ack, &syn_ack] {
        assert_eq!(rig.run(0, at(0), bytes).0, Check::Reject(DropReason::SynStrictUnverified));
    }
    // Once verified, the same segments pass.
    let (_, out) = rig.run(0, at(1), &syn(c, 1234, server(c), 1));
    assert_eq!(rig.run(0, at(2), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
    for bytes in [&ack, &rst_ack, &syn_ack] {
        assert_eq!(rig.run(0, at(3), bytes).0, Check::Clean);
    }
}

#[test]
fn unverified_non_syn_budget_per_destination() {
    let settings = Settings { unverified_limit: Some(Rate::pps(100)), ..Settings::default() };
    let mut rig = Rig::new(1, settings);
    let mut passed = 0;
    for i in 0..1_000u32 {
        let ack = Packet::tcp(client(2 * i), 1234, ip("198.18.100.10"), 80).flags(tcp_flags::ACK).build();
        match rig.run(0, at(u64::from(i)), &ack).0 {
            Check::Clean => passed += 1,
            Check::Reject(DropReason::SynUnverifiedRateLimit) => {}
            other => panic!("{other:?}"),
        }
    }
    // 1 s at 100 pps plus the 100 ms burst.
    assert!((100..=112).contains(&passed), "passed {passed}");
    let other_dst = Packet::tcp(ip("198.18.1.1"), 1, ip("198.18.100.11"), 80).flags(tcp_flags::ACK).build();
    assert_eq!(rig.run(0, at(1_000), &other_dst).0, Check::Clean, "budget is per destination");
}

#[test]
fn fragments_options_and_fast_open() {
    let mut rig = Rig::new(1, Settings::default());
    let c = ip("198.18.1.2");
    let frag = Packet::tcp(c, 1, server(c), 80).ipv4_fragment(0, true).payload(&[0; 64]).build();
    assert_eq!(rig.run(0, at(0), &frag).0, Check::Reject(DropReason::SynFragment));
    let frag6 = Packet::tcp(ip("2001:2:0:1::2"), 1, ip("2001:2:0:100::10"), 80)
        .ext(crate::build::ExtHeader::Fragment { offset: 0, more: true, id: 7 })
        .build();
    assert_eq!(rig.run(0, at(0), &frag6).0, Check::Reject(DropReason::SynFragment));
    let bad = Packet::tcp(c, 1, server(c), 80).tcp_options(&[2, 3, 5, 0]).build();
    assert_eq!(rig.run(0, at(0), &bad).0, Check::Reject(DropReason::SynBadOptions));
    // TCP Fast Open: a SYN with a cookie option and data is challenged, not dropped.
    let tfo = Packet::tcp(c, 2, server(c), 80)
        .tcp_options(&[2, 4, 5, 0xb4, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8])
        .payload(b"GET / HTTP/1.1\r\n\r\n")
        .build();
    let (check, out) = rig.run(0, at(0), &tfo);
    assert_eq!(check, Check::Replied);
    assert_syn_ack_for(&out, &tfo);
    assert_eq!(parse(&out).unwrap().unwrap().payload_len, 0);
}

#[test]
fn retransmitted_syn_verifies_with_rst_plus_retransmit_only() {
    let c = ip("198.18.1.2");
    let first = syn(c, 1234, server(c), 777);
    let settings = Settings { method: Method::RstRetransmit, ..Settings::default() };
    let mut rig = Rig::new(1, settings);
    assert_eq!(rig.run(0, at(0), &first).0, Check::Replied);
    assert_eq!(rig.run(0, at(200), &first).0, Check::Replied, "too early");
    assert_eq!(rig.run(0, at(1_000), &first).0, Check::Clean, "RTO retransmission");
    assert_eq!(rig.events(Event::SynRetransmitVerified), 1);
    assert_eq!(rig.events(Event::SynSourceVerified), 1);
    assert_eq!(rig.run(0, at(1_001), &syn(c, 999, server(c), 1)).0, Check::Clean);

    // Another ISN, or too late, starts over.
    let d = ip("198.18.1.3");
    assert_eq!(rig.run(0, at(0), &syn(d, 1, server(d), 10)).0, Check::Replied);
    assert_eq!(rig.run(0, at(1_000), &syn(d, 1, server(d), 11)).0, Check::Replied, "new ISN");
    assert_eq!(rig.run(0, at(5_000), &syn(d, 1, server(d), 11)).0, Check::Replied, "too late");
    assert_eq!(rig.run(0, at(6_000), &syn(d, 1, server(d), 11)).0, Check::Clean, "in window after restart");

    let mut plain = Rig::new(1, Settings::default());
    assert_eq!(plain.run(0, at(0), &first).0, Check::Replied);
    assert_eq!(plain.run(0, at(1_000), &first).0, Check::Replied, "method rst ignores retransmissions");
}

#[test]
fn failed_checks_are_rate_limited_per_source() {
    let mut rig = Rig::new(1, Settings::default());
    let c = ip("198.18.1.2");
    let first = syn(c, 1234, server(c), 1);
    let (_, out) = rig.run(0, at(0), &first);
    let good = client_rst(&out);
    for guess in 0..100u32 {
        let bad = Packet::tcp(c, 1234, server(c), 80)
            .flags(tcp_flags::RST)
            .seq_ack(guess.wrapping_mul(0x9e37_79b9), 0)
            .build();
        assert_eq!(rig.run(0, at(1), &bad).0, Check::Clean);
    }
    // The burst of 10, and the check that found the budget empty.
    assert_eq!(rig.events(Event::SynCookieInvalid), 11);
    assert_eq!(rig.events(Event::SynCookieCheckLimited), 89);
    // While blocked, even the right answer is not checked; after the refill it is.
    assert_eq!(rig.run(0, at(2), &good).0, Check::Clean);
    assert_eq!(rig.run(0, at(200), &good).0, Check::Reject(DropReason::SynCookieAnswer));
    // Another source is unaffected.
    let d = ip("198.18.1.3");
    let (_, out) = rig.run(0, at(3), &syn(d, 1, server(d), 1));
    assert_eq!(rig.run(0, at(4), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
}

/// Verifies `c` on worker 0 by a full handshake at `ms`.
fn handshake(rig: &mut Rig, c: IpAddr, ms: u64) {
    let (check, out) = rig.run(0, at(ms), &syn(c, 999, server(c), 5));
    assert_eq!(check, Check::Replied);
    assert_eq!(rig.run(0, at(ms), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
}

#[test]
fn a_flood_spoofing_a_verified_source_gets_only_that_sources_syn_budget() {
    let budget = Rate { pps: 100, bytes_per_sec: 0, burst_ms: 1000 };
    assert_eq!(Settings::default().verified_syn_limit, Some(budget), "the default");
    // Two workers share the appliance-wide budget: 50 per second each, a burst of 50 each.
    let mut rig = Rig::new(2, Settings::default());
    let (c, d) = (ip("198.18.1.7"), ip("2001:2:0:1::7"));
    handshake(&mut rig, c, 0);
    handshake(&mut rig, d, 0);
    let (mut passed, mut dropped) = (0u64, 0u64);
    // 10 000 SYNs over one second (10 kpps) spoofing c, spread over both workers.
    for i in 0..10_000u64 {
        match rig.run((i % 2) as usize, at(10 + i / 10), &syn(c, i as u16, server(c), i as u32)).0 {
            Check::Clean => passed += 1,
            Check::Reject(DropReason::SynVerifiedOverBudget) => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    // The burst (100) and one second at 100 per second, whatever the split.
    assert!((195..=205).contains(&passed), "passed {passed}");
    assert_eq!(passed + dropped, 10_000);
    assert_eq!(rig.events(Event::SynVerifiedSyn), passed);
    // Another verified source has a budget of its own; unverified sources are still challenged.
    assert_eq!(rig.run(0, at(1_011), &syn(d, 1, server(d), 1)).0, Check::Clean);
    let e = ip("198.18.1.8");
    assert_eq!(rig.run(0, at(1_011), &syn(e, 1, server(e), 1)).0, Check::Replied);
    // The budget refills: a second later c passes again.
    assert_eq!(rig.run(0, at(2_100), &syn(c, 1, server(c), 1)).0, Check::Clean);
    let mut stats = Stats::default();
    rig.workers[0].0.table_stats(&mut stats);
    assert_eq!(stats.tables[Table::SynVerifiedSynBuckets.index()].len, 2, "one bucket per verified source seen");

    // Without a budget (verified_syn_pps = 0) the same flood passes entirely: the documented limit.
    let mut open = Rig::new(1, Settings { verified_syn_limit: None, ..Settings::default() });
    handshake(&mut open, c, 0);
    let passed = (0..10_000u64)
        .filter(|&i| open.run(0, at(10 + i / 10), &syn(c, i as u16, server(c), i as u32)).0 == Check::Clean)
        .count();
    assert_eq!(passed, 10_000);
}

#[test]
fn verified_sources_expire_after_the_ttl() {
    let mut rig = Rig::new(1, Settings::default());
    rig.global.verified_ttl_secs = 300;
    let c = ip("2001:2:0:1::9");
    let first = syn(c, 1234, server(c), 1);
    let (_, out) = rig.run(0, at(0), &first);
    rig.run(0, at(1), &client_rst(&out));
    assert_eq!(rig.run(0, at(299_000), &first).0, Check::Clean);
    let later = Now { mono_ns: at(0).mono_ns + 301 * SEC, wall_secs: T0_WALL + 301 };
    assert_eq!(rig.run(0, later, &first).0, Check::Replied, "hard TTL: challenged again");
}

#[test]
fn cookies_survive_a_secret_rotation_and_another_appliance_accepts_them() {
    let mut a = Rig::new(1, Settings::default());
    let c = ip("198.18.1.2");
    let (_, out) = a.run(0, at(0), &syn(c, 1234, server(c), 1));
    let rst = client_rst(&out);
    // The fleet rotates: a new snapshot with a new key keeps the old one for a period.
    a.global.secrets = a.global.secrets.rotate(Key::new([9; 16]), at(0).wall_secs);
    let mut b = Rig::new(1, Settings::default());
    b.global = a.global.clone();
    assert_eq!(b.run(0, at(10), &rst).0, Check::Reject(DropReason::SynCookieAnswer), "other appliance, after rotation");
    // A period after the rotation the old key is gone.
    let mut c2 = Rig::new(1, Settings::default());
    c2.global = a.global.clone();
    let later = Now { mono_ns: at(0).mono_ns + 61 * SEC, wall_secs: at(0).wall_secs + 60 };
    assert_eq!(c2.run(0, later, &rst).0, Check::Clean);
    assert_eq!(c2.events(Event::SynCookieInvalid), 1);
}

#[test]
fn the_challenge_acknowledges_behind_the_clients_isn() {
    let mut rig = Rig::new(1, Settings::default());
    let c = ip("198.18.1.2");
    let probe = syn(c, 1234, server(c), 0);
    let info = parse(&probe).unwrap().unwrap();
    let low = rig.global.secrets.mint(&tuple(&info), 0, at(0).wall_secs).value & cookie::MAC_MASK;
    // ISNs just below, at and just above the MAC value: the acknowledgment is behind ISN + 1 each
    // time (an ACK Linux conntrack ignores rather than marks invalid), and the RST verifies.
    for (i, isn) in [low.wrapping_sub(1), low, low.wrapping_add(5), low ^ 0x8000_0000].into_iter().enumerate() {
        let s = syn(ip(&format!("198.18.1.{}", 10 + i)), 1234, server(c), isn);
        let (check, out) = rig.run(0, at(0), &s);
        assert_eq!(check, Check::Replied);
        assert_syn_ack_for(&out, &s);
        let r = parse(&out).unwrap().unwrap();
        let ack = TcpPacket::new_checked(&out[usize::from(r.l4_offset)..]).unwrap().ack_number().0 as u32;
        assert!((ack.wrapping_sub(isn.wrapping_add(1)) as i32) < 0, "isn {isn:#x} ack {ack:#x}");
        assert_eq!(rig.run(0, at(1), &client_rst(&out)).0, Check::Reject(DropReason::SynCookieAnswer));
    }
}

#[test]
fn method_off_and_other_protocols_are_clean() {
    let mut rig = Rig::new(1, Settings::off());
    let c = ip("198.18.1.2");
    let first = syn(c, 1234, server(c), 1);
    assert_eq!(rig.run(0, at(0), &first), (Check::Clean, first.clone()));
    let mut rig = Rig::new(1, Settings::default());
    let udp = Packet::udp(c, 53, server(c), 53).build();
    assert_eq!(rig.run(0, at(0), &udp).0, Check::Clean);
}

#[test]
fn auto_switches_on_under_a_flood_and_off_after_the_hold() {
    let t = Thresholds { on_pps: 1_000, off_pps: 100, hold_ns: 2 * SEC };
    let mut rig = Rig::new(1, Settings { when: When::Auto(t), ..Settings::default() });
    let p: Cidr = "198.18.100.0/24".parse().unwrap();
    // Quiet: SYNs go through unchallenged.
    for i in 0..50u64 {
        let c = client(2 * i as u32);
        assert_eq!(rig.run(0, at(i * 20), &syn(c, 1, server(c), 1)).0, Check::Clean);
    }
    assert!(!rig.shared.auto.status(p).unwrap().active);
    // Flood at 10 kpps: on within about one window, then challenged.
    let mut first_reply = None;
    for i in 0..5_000u64 {
        let c = client(2 * (i as u32 % 500));
        let now = Now { mono_ns: at(1_000).mono_ns + i * 100_000, wall_secs: T0_WALL + 1 };
        if rig.run(0, now, &syn(c, i as u16, server(c), 1)).0 == Check::Replied && first_reply.is_none() {
            first_reply = Some(i);
        }
    }
    let first_reply = first_reply.expect("switched on");
    assert!(first_reply < 1_500, "on after {first_reply} SYNs (0.1 ms apart)");
    assert_eq!(rig.events(Event::SynAutoOn), 1);
    assert_eq!(rig.shared.auto.active([p]).len(), 1);
    // The flood stops; the control plane's periodic evaluation switches it off after the hold.
    let now = at(1_600).mono_ns;
    assert_eq!(rig.shared.auto.evaluate(p, now + SEC, &t), None);
    assert_eq!(rig.shared.auto.evaluate(p, now + 3 * SEC, &t), Some(Switch::Off));
    let c = client(0);
    assert_eq!(rig.run(0, at(5_000), &syn(c, 7, server(c), 1)).0, Check::Clean);
    let status = rig.shared.auto.status(p).unwrap();
    assert_eq!((status.active, status.switched_on, status.switched_off), (false, 1, 1));
}

#[test]
fn verification_on_one_thread_is_honoured_by_the_next_packet_on_another() {
    use std::sync::{Arc, Barrier};
    let rig = Rig::new(2, Settings::default());
    let shared = Arc::new(rig.shared);
    let global = rig.global;
    let c = ip("198.18.1.77");
    let first = syn(c, 4321, server(c), 1);
    let barrier = Arc::new(Barrier::new(2));
    // Worker 1 runs on its own thread and sees the SYN before and after worker 0 verifies.
    let other = {
        let (shared, global, barrier, first) = (shared.clone(), global.clone(), barrier.clone(), first.clone());
        std::thread::spawn(move || {
            let mut w1 = State::new(StateConfig { workers: 2, ..StateConfig::default() }, &shared);
            let mut replies = ReplyBudget::new(&PipelineConfig::default());
            let mut stats = Stats::default();
            let settings = Settings::default();
            let env = Env {
                shared: &shared,
                global: &global,
                settings: &settings,
                prefix: prefix_of(c),
                mode: Mode::Monitor,
                now: at(1),
            };
            let info = parse(&first).unwrap().unwrap();
            let mut run = || {
                let mut buf = first.clone();
                let mut frame = Frame::new(&mut buf, 0, first.len());
                w1.inspect(&env, &info, &mut frame, &mut replies, &mut stats)
            };
            let before = run();
            barrier.wait();
            barrier.wait();
            (before, run())
        })
    };
    let mut w0 = State::new(StateConfig { workers: 2, ..StateConfig::default() }, &shared);
    let mut replies = ReplyBudget::new(&PipelineConfig::default());
    let mut stats = Stats::default();
    let settings = Settings::default();
    let env = Env {
        shared: &shared,
        global: &global,
        settings: &settings,
        prefix: prefix_of(c),
        mode: Mode::Mitigate,
        now: at(0),
    };
    let mut go = |bytes: &[u8], env: &Env<'_>| {
        let info = parse(bytes).unwrap().unwrap();
        let mut buf = bytes.to_vec();
        buf.resize(bytes.len() + 64, 0);
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        let check = w0.inspect(env, &info, &mut frame, &mut replies, &mut stats);
        (check, frame.data().to_vec())
    };
    barrier.wait();
    let (check, out) = go(&first, &env);
    assert_eq!(check, Check::Replied);
    let (check, _) = go(&client_rst(&out), &Env { now: at(1), ..env });
    assert_eq!(check, Check::Reject(DropReason::SynCookieAnswer));
    barrier.wait();
    let (before, after) = other.join().unwrap();
    assert_eq!(before, Check::Reject(DropReason::SynUnverified));
    assert_eq!(after, Check::Clean, "the other worker's next packet sees the verification");
}
