//! SYN authentication in the namespace lab, with real Linux TCP on both ends and origin's replies
//! bypassing the scrubber (root; run with `--test-threads=1`; one lab per test).
//!
//! What reached origin is read from origin's nftables counters (the generator and hping3 mark
//! every attack packet with DSCP CS1; legitimate clients never do); what the scrubber did, from
//! its control socket (`stats`, `syn_status`). The floods spoof sources inside the clients' own
//! /24 and /64 but not their live addresses (`traffic::ATTACK_SOURCES`): a live host answers the
//! challenge sent to its spoofed address and so verifies it. The flood that does spoof a verified
//! client's exact address is bounded by the per-source SYN budget, and shown unbounded without it.
//!
//! The long comparison with Linux syncookies in origin is the `syn-bench` binary of this crate
//! (`tests/src/bin/syn-bench.rs`; BENCHMARKS.md has the command).

use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};
use tests::syn::{
    CLIENT_FIREWALL, CLIENT_STRICT_FIREWALL, Conn, client_counter, client_firewall, client_firewall_remove,
    connect_times, curl_parallel, curl_sequential, hping3_flood, origin_unfinished, quantile, set_syn, verified_table,
};
use tests::syn::{
    FIXED_RATE, FLOOD_ADDRESSES, FLOOD_SOURCES_V6, REPLY_BURST_S, REPLY_PPS, REPLY_PPS_PER_DST, VERIFIED_SYN_BURST,
    VERIFIED_SYN_PPS, budget_config, flood_with_load, ms, spawn_gen,
};
use tests::topo::{ORIGIN_V4, ORIGIN_V6};
use tests::{GenSpec, LabOptions, Role, ScrubStats, TestLab, client_sources_v4, client_sources_v6, require_root};

/// Drop reasons that belong to SYN authentication.
const SYN_REASONS: [&str; 3] = ["syn_challenge_over_budget", "syn_cookie_answer", "syn_verified_over_budget"];

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn assert_all_ok(what: &str, conns: &[Conn]) {
    let failed: Vec<&Conn> = conns.iter().filter(|c| !c.ok).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} failed, first: {:?}",
        failed.len(),
        conns.len(),
        &failed[..failed.len().min(3)]
    );
}

/// Asserts every drop in `d` is SYN authentication's and none is a list's, a filter's or a rule's.
fn assert_only_syn_drops(what: &str, d: &ScrubStats) {
    for (reason, n) in &d.dropped {
        assert!(SYN_REASONS.contains(&reason.as_str()), "{what}: {n} dropped as {reason}: {:?}", d.dropped);
    }
    for reason in ["deny_list", "bogon_source", "rule_drop", "rule_rate_limit", "src_rate_limit", "dst_rate_limit"] {
        assert_eq!(d.drops(reason), 0, "{what}: {reason}");
    }
}

/// Real curl from 200 IPv4 and 200 IPv6 client addresses: each first connection is challenged
/// once (SYN-ACK, the client's RST verifies it, its SYN retransmitted ~12 ms later is forwarded),
/// every one succeeds, and later connections from the same sources are forwarded at once. The
/// added latency of a first connection is measured against later ones and against the scrubber
/// in bypass.
#[test]
fn first_connections_from_200_sources_are_challenged_once_and_later_ones_pass() {
    require_root!();
    let config = budget_config();
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    let max = Duration::from_secs(5);
    let (v4s, v6s) = (client_sources_v4(), client_sources_v6());
    assert!(v4s.len() >= 200 && v6s.len() >= 200);
    let (s0, o0) = (t.stats(), t.counters());
    let first4 = curl_sequential(&t, ORIGIN_V4.into(), &v4s, max);
    let first6 = curl_sequential(&t, ORIGIN_V6.into(), &v6s, max);
    assert_all_ok("first connections v4", &first4);
    assert_all_ok("first connections v6", &first6);
    let d = t.stats().since(&s0);
    let sources = (v4s.len() + v6s.len()) as u64;
    eprintln!("first connections: {d:?}");
    assert_eq!(d.xdp.no_socket, 0, "every frame reached the worker (no queue failed open): {:?}", d.xdp);
    assert_eq!(d.event("syn_cookie_valid"), sources, "one valid cookie per source");
    assert!(d.event("syn_cookie_valid") >= 200);
    assert_eq!(d.event("syn_ack_sent"), sources, "one challenge per source");
    assert_eq!(d.event("syn_source_verified"), sources);
    assert_eq!(d.replied, sources);
    assert_eq!(d.drops("syn_cookie_answer"), sources, "the cookie RSTs are consumed");
    assert_eq!(d.dropped_total, sources, "{:?}", d.dropped);
    assert_eq!(d.event("syn_cookie_invalid") + d.event("syn_cookie_expired"), 0);
    assert_eq!(verified_table(&t).0, sources);

    let s1 = t.stats();
    let again4 = curl_sequential(&t, ORIGIN_V4.into(), &v4s, max);
    let again6 = curl_sequential(&t, ORIGIN_V6.into(), &v6s, max);
    assert_all_ok("later connections v4", &again4);
    assert_all_ok("later connections v6", &again6);
    let d = t.stats().since(&s1);
    assert_eq!((d.replied, d.event("syn_ack_sent"), d.dropped_total), (0, 0, 0), "no challenge for verified sources");
    assert_eq!(d.event("syn_verified_syn"), sources);

    t.control("bypass", json!({"on": true}));
    let bypass4 = curl_sequential(&t, ORIGIN_V4.into(), &v4s[..100], max);
    let bypass6 = curl_sequential(&t, ORIGIN_V6.into(), &v6s[..100], max);
    t.control("bypass", json!({"on": false}));
    assert_all_ok("bypass", &[bypass4.clone(), bypass6.clone()].concat());
    let c = t.counters().since(&o0);
    assert_eq!(c.attack_packets(), 0);
    assert_eq!(c.packets("out_egress"), 0, "replies bypass the scrubber: {c:?}");

    let first = connect_times(&[first4, first6].concat());
    let later = connect_times(&[again4, again6].concat());
    let bypass = connect_times(&[bypass4, bypass6].concat());
    let q = |v: &[u64], x| ms(quantile(v, x));
    let added = q(&first, 0.5) - q(&later, 0.5);
    eprintln!(
        "connect time ms (p50 / p90 / max): first {:.2} / {:.2} / {:.2}; verified {:.2} / {:.2} / {:.2}; bypass {:.2} \
         / {:.2} / {:.2}; a first connection adds {added:.2} ms at the median (goal <= 15, floor ~12: one fast SYN \
         retransmission); load {}",
        q(&first, 0.5),
        q(&first, 0.9),
        q(&first, 1.0),
        q(&later, 0.5),
        q(&later, 0.9),
        q(&later, 1.0),
        q(&bypass, 0.5),
        q(&bypass, 0.9),
        q(&bypass, 1.0),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    // Correctness with slack for a shared 2-core VM: first connections take the fast path (the
    // client's ~12 ms retransmission, not its 1 s timeout); verified ones add nothing measurable.
    let slow = first.iter().filter(|&&us| us >= 900_000).count();
    assert!(slow * 100 <= first.len(), "{slow} of {} first connections fell back to the 1 s timeout", first.len());
    assert!(q(&first, 0.5) >= 5.0, "a first connection waits for the client's retransmission");
    assert!(q(&first, 0.5) <= 100.0, "first connections: p50 {:.2} ms", q(&first, 0.5));
    assert!(q(&later, 0.5) <= q(&bypass, 0.5) + 3.0, "verified sources add nothing: {later:?} vs {bypass:?}");
}

/// Clients behind stateful firewalls. Behind `ct state invalid drop` (Linux conntrack, the rule
/// of ufw and firewalld) `method = "rst"` connects by the fast path with the default ACK
/// challenge, fetches every byte and closes cleanly: conntrack ignores the ACK (the cookie sits
/// behind the client's ISN + 1, where an ACK is "under the lower bound"), the client's RST closes
/// the entry, its retransmitted SYN opens a clean one. The same with `challenge = "syn-ack"` is
/// measured and printed (conntrack tracks a SYN-ACK as the server's and keeps that state).
/// Behind a stricter firewall that drops every challenge, `rst` alone never connects (each
/// retransmitted SYN is challenged again) while `rst+retransmit` verifies the client by its first
/// retransmission (its 1 s SYN timeout).
#[test]
fn clients_behind_stateful_firewalls_connect() {
    require_root!();
    let config = budget_config();
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    let sources = client_sources_v4();
    let max = Duration::from_secs(3);

    client_firewall(&t, CLIENT_FIREWALL);
    let mut seen = Vec::new();
    for (challenge, range) in [("ack", 0..24), ("syn-ack", 24..48)] {
        set_syn(&t, "challenge", json!(challenge));
        let (s0, stuck0) = (t.stats(), origin_unfinished(&t));
        let conns = curl_sequential(&t, ORIGIN_V4.into(), &sources[range], max);
        thread::sleep(Duration::from_millis(1500));
        let d = t.stats().since(&s0);
        let stuck = origin_unfinished(&t).saturating_sub(stuck0);
        let ok = conns.iter().filter(|c| c.ok).count();
        let times = connect_times(&conns);
        eprintln!(
            "behind `ct state invalid drop`, method rst, challenge {challenge}: {ok}/{} fetched the whole page, \
             connect p50 {:.1} ms max {:.1} ms; {} answered the challenge; origin sockets left closing: {stuck}; \
             firewall drops so far {}",
            conns.len(),
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 1.0)),
            d.event("syn_cookie_valid"),
            client_counter(&t, "synfw", "invalid")
        );
        seen.push((ok, stuck, conns, d));
    }
    let (ok, stuck, conns, d) = &seen[0];
    assert_all_ok("ack challenge behind ct state invalid drop", conns);
    assert_eq!((*ok, *stuck), (24, 0), "every page whole, every connection closed");
    assert_eq!(d.event("syn_cookie_valid"), 24, "every client answered its challenge: {d:?}");
    assert!(quantile(&connect_times(conns), 1.0) < 500_000, "the fast path, not the 1 s timeout");
    assert!(seen[1].0 <= *ok && seen[1].1 >= *stuck, "the ACK challenge is no worse than the SYN-ACK");
    set_syn(&t, "challenge", json!("ack"));
    client_firewall_remove(&t, "synfw");

    client_firewall(&t, CLIENT_STRICT_FIREWALL);
    let (rst_sources, retransmit_sources) = (&sources[48..56], &sources[56..64]);
    let s0 = t.stats();
    let started = Instant::now();
    let rst = curl_parallel(&t, ORIGIN_V4.into(), rst_sources, Duration::from_secs(4));
    let rst_time = started.elapsed();
    let d = t.stats().since(&s0);
    eprintln!(
        "strict firewall, method rst: {d:?}, the firewall dropped {}",
        client_counter(&t, "synstrict", "challenge")
    );
    assert!(rst.iter().all(|c| !c.ok), "no connection within 4 s with rst alone: {rst:?}");
    // The first SYN and its retransmissions at 1 s and 3 s: each challenged, none answered.
    assert!(d.event("syn_ack_sent") >= 3 * rst_sources.len() as u64, "{d:?}");
    assert_eq!(d.event("syn_cookie_valid"), 0);
    assert!(client_counter(&t, "synstrict", "challenge") >= 3 * rst_sources.len() as u64);

    set_syn(&t, "method", json!("rst+retransmit"));
    let s1 = t.stats();
    let rr = curl_parallel(&t, ORIGIN_V4.into(), retransmit_sources, Duration::from_secs(4));
    let d = t.stats().since(&s1);
    assert_all_ok("rst+retransmit behind the strict firewall", &rr);
    assert_eq!(d.event("syn_retransmit_verified"), retransmit_sources.len() as u64, "{d:?}");
    let times = connect_times(&rr);
    eprintln!(
        "strict firewall: rst: 0/{} connected in {:.1} s; rst+retransmit: {}/{} connected, connect p50 {:.0} ms max \
         {:.0} ms (the client's 1 s SYN timeout)",
        rst.len(),
        rst_time.as_secs_f64(),
        rr.len(),
        rr.len(),
        ms(quantile(&times, 0.5)),
        ms(quantile(&times, 1.0))
    );
    assert!(quantile(&times, 0.5) >= 500_000 && quantile(&times, 1.0) < 3_000_000, "{times:?}");
    assert_eq!(t.counters().attack_packets(), 0);
}

/// The generator's spoofed SYN flood (sources in the clients' /24 and /64, never a live client
/// address) at the lab's fixed rate and at the generator's maximum, while 1 000 real connections
/// are made: no spoofed SYN reaches origin, every attack frame is answered within the reply
/// budget or dropped under SYN authentication's own reasons, >= 99 % of the connections succeed,
/// the verified table holds only the clients. With SYN authentication off, the same flood
/// reaches origin.
#[test]
fn spoofed_syn_floods_never_reach_origin_and_legitimate_clients_connect() {
    require_root!();
    let config = budget_config();
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    let v4s = client_sources_v4();
    let v6s = client_sources_v6();
    let cases = [
        (
            "v4 fixed rate",
            GenSpec { rate: FIXED_RATE, seconds: 6.0, ..GenSpec::attack(&["syn-flood"]) },
            v4(ORIGIN_V4),
            &v4s,
            1000,
        ),
        (
            "v4 maximum rate",
            GenSpec { rate: 0, seconds: 6.0, ..GenSpec::attack(&["syn-flood"]) },
            v4(ORIGIN_V4),
            &v4s,
            1000,
        ),
        (
            "v6 fixed rate",
            GenSpec {
                rate: FIXED_RATE,
                seconds: 4.0,
                src: FLOOD_SOURCES_V6.into(),
                ..GenSpec::attack_v6(&["syn-flood"])
            },
            IpAddr::V6(ORIGIN_V6),
            &v6s,
            400,
        ),
    ];
    for (name, spec, target, legit, conns) in cases {
        let r = flood_with_load(&t, &spec, legit, target, conns);
        let d = &r.d;
        let (verified, capacity, evictions) = verified_table(&t);
        let syn_acks = d.event("syn_ack_sent");
        eprintln!(
            "{name}: sent {} ({:.0} pps) in {:.1} s; worker rx {} replied {} dropped {:?}; socket {:?}; at origin {}; \
             legit {}/{} ({:.2} %), connect p50 {:.1} ms p99 {:.1} ms, failures {:?}; verified {verified}/{capacity} \
             evictions {evictions}; load {}",
            r.report.sent,
            r.report.pps,
            r.seconds,
            d.rx,
            d.replied,
            d.dropped,
            d.socket,
            r.origin_attack,
            r.legit.succeeded,
            r.legit.attempts,
            r.legit.success() * 100.0,
            ms(quantile(&r.legit.connect_us, 0.5)),
            ms(quantile(&r.legit.connect_us, 0.99)),
            r.legit.failures,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        assert!(r.report.sent > 0);
        assert_eq!(r.origin_attack, 0, "{name}: spoofed SYNs reached origin");
        assert_only_syn_drops(name, d);
        // Every frame a worker received was decided; every attack SYN among them was challenged
        // or dropped as over the reply budget (a few frames are lost on the way, on a busy VM).
        assert_eq!(d.rx, d.forwarded + d.replied + d.dropped_total + d.passed, "{name}: {d:?}");
        let over = d.drops("syn_challenge_over_budget");
        let handled = syn_acks + over + d.socket.rx_dropped + d.socket.rx_ring_full;
        assert!(handled >= r.report.sent * 97 / 100, "{name}: {handled} of {} handled: {d:?}", r.report.sent);
        assert!(over > 0, "{name}: the flood outran the reply budget");
        // The reply budget holds: per address (the v4 flood's 53 addresses) and in all.
        let budget = |pps: u64, n: u64| (pps as f64 * (r.seconds + REPLY_BURST_S) * n as f64) as u64;
        assert!(syn_acks <= budget(REPLY_PPS, 1), "{name}: {syn_acks} SYN-ACKs over the global budget");
        if spec.src == tests::lab::traffic::ATTACK_SOURCES || spec.src == FLOOD_SOURCES_V6 {
            let cap = budget(REPLY_PPS_PER_DST, FLOOD_ADDRESSES) + legit.len() as u64;
            assert!(syn_acks <= cap, "{name}: {syn_acks} SYN-ACKs over {FLOOD_ADDRESSES} x the per-address budget");
        }
        assert_eq!(d.event("syn_cookie_valid"), d.event("syn_source_verified"));
        assert!(verified <= (v4s.len() + v6s.len()) as u64, "{name}: only clients are verified: {verified}");
        assert_eq!(evictions, 0);
        assert!(r.legit.success() >= 0.99, "{name}: legitimate success {:.2} %", r.legit.success() * 100.0);
    }

    // Control: the same flood with SYN authentication off reaches origin.
    set_syn(&t, "method", json!("off"));
    let spec = GenSpec { rate: FIXED_RATE, seconds: 2.0, ..GenSpec::attack(&["syn-flood"]) };
    let (s0, o0) = (t.stats(), t.counters());
    let g = spawn_gen(&t, &spec).join().expect("generator thread");
    let d = t.stats().since(&s0);
    let at_origin = t.counters().since(&o0).attack_packets();
    eprintln!("control (method off): sent {} rx {} forwarded {} at origin {at_origin}", g.sent, d.rx, d.forwarded);
    assert_eq!(d.dropped_total, 0, "{:?}", d.dropped);
    // Origin's own backlog drops part of a 200 kpps flood on a busy 2-core VM before its ingress
    // hook counts it (about half here); what is counted is still the bulk of the flood.
    assert!(at_origin * 4 >= d.forwarded && at_origin * 10 >= g.sent, "the flood reaches origin: {at_origin}");
}

/// `hping3 --flood -S` spoofing lab sources with `-a` (bounded in time): from an address of the
/// clients' /24 with no live host, every SYN is challenged within the per-address reply budget
/// and none reaches origin; from a verified client's exact address (the documented limit: its
/// host answered a challenge), SYN authentication lets through no more than that source's SYN
/// budget, and without the budget the whole flood reaches origin. With SYN authentication off,
/// the first flood reaches origin too.
#[test]
fn hping3_floods_spoofing_lab_sources() {
    require_root!();
    let config = budget_config();
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    let clients = client_sources_v4();
    assert_all_ok("verify ten clients", &curl_sequential(&t, ORIGIN_V4.into(), &clients[..10], Duration::from_secs(4)));
    let verified_before = verified_table(&t).0;
    let victim = Ipv4Addr::new(198, 18, 1, 5);
    let idle = Ipv4Addr::new(198, 18, 1, 230);
    const SECS: u32 = 2;

    let flood = |src: Ipv4Addr| {
        let (s0, o0, a0) = (t.stats(), t.counters(), t.link(Role::Attacker, "a0"));
        let started = Instant::now();
        let out = hping3_flood(&t, ORIGIN_V4, src, SECS);
        let secs = started.elapsed().as_secs_f64();
        let d = t.stats().since(&s0);
        let sent = t.link(Role::Attacker, "a0").since(&a0).tx_packets;
        let at_origin = t.counters().since(&o0).attack_packets();
        eprintln!(
            "hping3 -a {src}: sent {sent} in {secs:.1} s, rx {} replied {} forwarded {} dropped {:?}, at origin \
             {at_origin}; {}",
            d.rx,
            d.replied,
            d.forwarded,
            d.dropped,
            out.lines().filter(|l| l.contains("transmitted")).collect::<Vec<_>>().join(" ")
        );
        assert!(sent >= 1000, "hping3 flooded: {sent}");
        (d, at_origin, secs)
    };

    // A spoofed address with no live host: challenged within the per-address budget, never forwarded.
    let (d, at_origin, secs) = flood(idle);
    assert_eq!(at_origin, 0);
    assert_only_syn_drops("hping3 from an idle address", &d);
    let syn_acks = d.event("syn_ack_sent");
    let cap = (REPLY_PPS_PER_DST as f64 * (secs + REPLY_BURST_S)) as u64 + 1;
    assert!(syn_acks <= cap && syn_acks > 0, "per-address reply budget: {syn_acks} SYN-ACKs to one address, cap {cap}");
    assert_eq!(syn_acks + d.drops("syn_challenge_over_budget"), d.rx, "{d:?}");
    assert_eq!(verified_table(&t).0, verified_before, "the flood verified nobody");

    // A verified client's exact address: only that source's SYN budget reaches origin.
    let (d, at_origin, secs) = flood(victim);
    assert_only_syn_drops("hping3 from a verified address", &d);
    let cap = (VERIFIED_SYN_PPS as f64 * secs) as u64 + VERIFIED_SYN_BURST + 1;
    assert!(
        at_origin > 0 && at_origin <= cap,
        "SYN budget of a verified source: {at_origin} reached origin, cap {cap}"
    );
    assert_eq!(at_origin, d.event("syn_verified_syn"), "what passed is what the budget admitted");
    // The rest of what the worker received is the real client's RSTs to origin's SYN-ACKs (it has
    // no such connection; origin may send a SYN-ACK twice): forwarded, unmarked.
    let others = d.rx - d.drops("syn_verified_over_budget") - at_origin;
    assert!(others <= 2 * at_origin + 20 && d.forwarded == at_origin + others, "{d:?}");
    assert_eq!(d.replied, 0);

    // Without the budget the same flood passes entirely: the limit the budget bounds.
    set_syn(&t, "verified_syn_pps", json!(0));
    let (d, at_origin, _) = flood(victim);
    assert_eq!(d.dropped_total, 0, "{:?}", d.dropped);
    assert!(at_origin * 4 >= d.rx && at_origin > 10 * cap, "without a budget it reaches origin: {at_origin}");

    // Control for the first flood: SYN authentication off.
    set_syn(&t, "method", json!("off"));
    let (d, at_origin, _) = flood(idle);
    assert_eq!(d.dropped_total, 0, "{:?}", d.dropped);
    assert!(at_origin * 4 >= d.rx && at_origin >= 1000, "with SYN authentication off it reaches origin");
}
