//! Bounded state under a random-source flood (root; `--test-threads=1`). With small table
//! capacities, a flood from a random spread of IPv6 sources (2001:2::/48) overflows every
//! per-source table: the daemon's memory stays flat after warm-up, the tables report evictions,
//! and sources verified before the flood stay verified (their new connections are not
//! challenged again): the flood only ever competes with its own kind.

use std::net::IpAddr;
use tests::topo::ORIGIN_V4;
use tests::{GenSpec, LabOptions, TempConfig, TestLab, client_sources_v4, require_root};

const HELLO: &str = "/hello.txt";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A flood from random sources of 2001:2::/48: TCP SYNs and UDP, then QUIC Initials (each run
/// replays a pool of 4096 distinct frames, so each profile gets its own run to spread its sources
/// over more addresses than the small tables hold).
fn flood(t: &TestLab, seconds: f64) -> u64 {
    [&["syn-flood", "udp"][..], &["quic-initial"][..]]
        .iter()
        .map(|profiles| {
            let mut spec = GenSpec::attack_v6(profiles);
            spec.src = "2001:2::/48".into();
            spec.seconds = seconds / 2.0;
            t.generate(&spec).sent
        })
        .sum()
}

#[test]
fn a_random_source_flood_overflows_the_tables_not_the_memory() {
    require_root!();
    let config = TempConfig::lab_with(&[
        ("[tables]\nsrc_buckets = 262144", "[tables]\nsrc_buckets = 1024"),
        ("[profiles.lab]\n", "[profiles.lab]\nsrc_limit = { pps = 1000 }\n"),
        ("[quic]\nreplay_limit = 1", "[quic]\nreplay_limit = 1\nflows = 1024\nsrc_buckets = 1024\ndst_buckets = 1024"),
    ]);
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    let pid = t.daemon_pid().expect("daemon running");

    // Verify some real clients first.
    let clients = &client_sources_v4()[..20];
    let r = t.curl(IpAddr::V4(ORIGIN_V4), HELLO, clients);
    assert_eq!(r.succeeded, r.attempts, "{r:?}");

    // Warm up: every table reaches its capacity.
    let warm = flood(&t, 2.0);
    let before = rss_kib(pid);
    let s0 = t.stats();
    let sent = flood(&t, 5.0);
    let after = rss_kib(pid);
    let s1 = t.stats();
    eprintln!(
        "flood: {warm} + {sent} frames; RSS {before} KiB -> {after} KiB; evictions {:?}; drops {:?}",
        s1.table_evictions,
        s1.since(&s0).dropped
    );
    assert!(after <= before + 8 * 1024, "RSS grew from {before} KiB to {after} KiB under the flood");
    let evictions = |s: &tests::ScrubStats, table: &str| s.table_evictions(table);
    for table in ["src_buckets", "quic_src_buckets"] {
        let e = evictions(&s1, table) - evictions(&s0, table);
        assert!(e > 0, "table {table} evicted nothing under a flood of random sources");
    }

    // The verified clients were not pushed out: their new connections are not challenged.
    let challenges = s1.event("syn_ack_sent");
    let r = t.curl(IpAddr::V4(ORIGIN_V4), HELLO, clients);
    assert_eq!(r.succeeded, r.attempts, "{r:?}");
    let s2 = t.stats();
    assert_eq!(s2.event("syn_ack_sent"), challenges, "a source verified before the flood had to be verified again");
}
