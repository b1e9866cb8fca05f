//! QUIC Initial validation in the namespace lab, with the real daemon and real QUIC peers (root;
//! run with `--test-threads=1`; one lab per test, removed however the test ends).
//!
//! Origin runs a QUIC echo server (`scrubber lab quic-server`: quinn, rustls on ring, a
//! self-signed certificate the clients trust); the client namespace runs quinn clients
//! (`scrubber lab quic-client`), each connection from a fresh socket, so every handshake starts
//! a new 4-tuple whose first Initial the scrubber must validate. Gating is strict (the lab
//! profile's default): only flows that began with a valid Initial get their Handshake and
//! short-header packets through. Replies take the asymmetric return path around the scrubber.
//!
//! The generator floods from the attacker with the attack marker (DSCP CS1), which origin counts.
//! Spoofed sources are spread (IPv4 198.19.0.0/16, IPv6 2001:2:0:8000::/49, a /64 each for the
//! per-source budget) so that the per-source Initial budget (`src_initial_pps`, default 100)
//! does not catch the floods first: every kind then reaches the check it is made to fail, and is
//! counted under that check's own reason. The budget stays at its default.

use serde_json::json;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tests::control::read_pcapng;
use tests::quic::{ClientReport, QUIC_PORT, client_options, quic_clients, send_datagrams, spawn_quic_clients};
use tests::topo::{ORIGIN_V4, ORIGIN_V6};
use tests::{
    Cmd, Counters, GenSpec, LabOptions, Role, ScrubStats, TempConfig, TestLab, client_sources_v4, client_sources_v6,
    require_root, scrubber_bin,
};

use dataplane::quic::craft::{self, HelloSpec, InitialSpec};
use dataplane::quic::keys::{KeySchedule, Version};

/// Spoofed IPv4 sources of the floods: 65536 addresses, none a client's.
const SPOOF_V4: &str = "198.19.0.0/16";
/// Spoofed IPv6 sources: 32768 /64s (the per-source budget's unit).
const SPOOF_V6: &str = "2001:2:0:8000::/49";

/// Each flood kind (`scrubber gen --profile quic-initial --quic-kind K`) and the drop reason it
/// must be counted under.
const KINDS: [(&str, &str); 5] = [
    ("junk", "quic_bad_cid"),
    ("short", "quic_short_datagram"),
    ("random-dcid", "quic_auth_failed"),
    ("replayed", "quic_replay"),
    ("short-header-junk", "quic_unadmitted_short"),
];

/// The valid Initial the generator's `replayed` kind repeats (`generator::profiles::quic_template`:
/// `craft::generate(Valid, seed 0x7e57)`). A client sends it once just before the copies,
/// unmarked: every copy from the attacker is then a replay of a DCID already seen from one
/// 4-tuple (the lab's `replay_limit = 1`).
fn replayed_original() -> Vec<u8> {
    craft::generate(&KeySchedule::new(), craft::Kind::Valid, 0x7e57, None)
}

fn origin(v6: bool) -> SocketAddr {
    let ip: IpAddr = if v6 { ORIGIN_V6.into() } else { ORIGIN_V4.into() };
    SocketAddr::new(ip, QUIC_PORT)
}

/// 150 IPv4 and 50 IPv6 client addresses.
fn client_sources() -> Vec<IpAddr> {
    let mut s = client_sources_v4()[..150].to_vec();
    s.extend_from_slice(&client_sources_v6()[..50]);
    s
}

/// What the lab config's watchdog period becomes in these tests: on a busy shared machine the
/// worker can go unscheduled for longer than the default 500 ms, and the watchdog would then put
/// its queue in the fail mode (open: the kernel forwards the floods to origin). The watchdog has
/// its own tests (`faults.rs`); here it must not blur what the QUIC checks did.
const PATIENT_WATCHDOG: (&str, &str) = ("fail = \"open\"", "fail = \"open\"\nwatchdog_ms = 10000");

/// The lab config with [`PATIENT_WATCHDOG`] and `more` replacements.
fn config_with(more: &[(&str, &str)]) -> TempConfig {
    let mut r = vec![PATIENT_WATCHDOG];
    r.extend_from_slice(more);
    TempConfig::lab_with(&r)
}

/// Origin's QUIC service started in `t`, and a few handshakes through the scrubber (the edge
/// and the clients learn their neighbours).
fn start_quic(t: &mut TestLab) {
    t.start_quic_server(scrubber_bin()).unwrap_or_else(|e| panic!("quic server: {e}"));
    let warm = quic_clients(t, &client_options(t, &[client_sources_v4()[0], client_sources_v6()[0]], 4, 50.0));
    assert_eq!(warm.handshakes, 4, "warm-up: {warm:?}");
}

fn assert_clients_ok(what: &str, r: &ClientReport) {
    eprintln!(
        "{what}: {}/{} handshakes, {} echoed, {}/{} sources, v4 {:?} v6 {:?} split {:?}, handshake {:?} us, \
         exchange {:?} us, failures {:?}",
        r.handshakes,
        r.attempts,
        r.exchanges,
        r.sources_ok,
        r.sources_used,
        r.v4,
        r.v6,
        r.split_hello,
        r.handshake_us,
        r.exchange_us,
        r.failures
    );
    assert!(r.attempts > 0, "{what}: nothing attempted");
    assert!(r.handshakes * 1000 >= r.attempts * 999, "{what}: under 99.9 % of handshakes completed: {r:?}");
    assert!(r.exchanges * 1000 >= r.attempts * 999, "{what}: under 99.9 % of the streams came back: {r:?}");
}

/// `scrubctl` beside the scrubber binary (what `make test` builds), else the same request on the
/// control socket directly.
fn scrubctl(t: &TestLab, args: &[&str], cmd: &str, json_args: serde_json::Value) -> serde_json::Value {
    let bin = scrubber_bin().with_file_name("scrubctl");
    if !bin.is_file() {
        return t.control(cmd, json_args);
    }
    let sock = t.state().daemon.control_socket.display().to_string();
    let out = Cmd::new(bin.display().to_string())
        .args(&["--socket", &sock, "--json"])
        .args(args)
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap_or_else(|e| panic!("scrubctl {args:?}: {e}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("scrubctl {args:?} output {:?}: {e}", out.stdout))
}

/// One flood of `kind` from the attacker (spread spoofed sources), `n` frames.
fn flood(kind: &str, v6: bool, n: u64, rate: u64) -> GenSpec {
    let base = if v6 { GenSpec::attack_v6(&["quic-initial"]) } else { GenSpec::attack(&["quic-initial"]) };
    GenSpec {
        src: if v6 { SPOOF_V6 } else { SPOOF_V4 }.into(),
        count: n,
        rate,
        seconds: 10.0,
        quic_kind: Some(kind.into()),
        ..base
    }
}

/// The scrubber's statistics and origin's counters since `a` and `o0`, read once `done` holds
/// for them or after 5 s: on a busy machine the worker may still be draining its ring when the
/// generator has finished (the statistics' own settling time is 150 ms).
fn settled(
    t: &TestLab,
    a: &ScrubStats,
    o0: &Counters,
    done: impl Fn(&ScrubStats, &Counters) -> bool,
) -> (ScrubStats, Counters) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (d, o) = (t.stats().since(a), t.counters().since(o0));
        if done(&d, &o) || Instant::now() >= deadline {
            return (d, o);
        }
    }
}

/// 1200 quinn handshakes from 200 client addresses (150 IPv4, 50 IPv6; every 25th ClientHello
/// spanning two Initials), each followed by a 4 KiB stream echoed back, while the generator
/// floods each kind of bad Initial from IPv4 and IPv6 (and replays one Initial for longer than
/// the replay table's TTL): at least 99.9 % of the handshakes and
/// exchanges complete; no attack packet reaches origin; each kind is dropped under its own
/// reason and nothing else is dropped (the legitimate traffic included); a capture of the
/// forwarded QUIC packets carries the ClientHello's server name and fingerprint in its comments.
#[test]
fn quic_handshakes_complete_while_initial_floods_are_dropped_for_their_reasons() {
    require_root!();
    let started = Instant::now();
    let config = config_with(&[]);
    let mut t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    start_quic(&mut t);
    let pcap = t.dir().join("quic.pcapng");
    let pcap_s = pcap.display().to_string();
    let cap = scrubctl(
        &t,
        &["capture", "start", "--write", &pcap_s, "--prefix", "198.18.100.0/24", "--verdict", "forward"],
        "capture_start",
        json!({"path": pcap_s, "prefix": "198.18.100.0/24", "verdicts": ["forward"]}),
    );
    eprintln!("capture: {cap}");

    let (s0, c0) = (t.stats(), t.counters());
    let mut co = client_options(&t, &client_sources(), 1200, 100.0);
    co.split_hello_every = 25;
    let clients = spawn_quic_clients(&t, &co);

    let mut attack_frames = 0;
    for (kind, reason) in KINDS {
        if kind == "replayed" {
            // The original of the replayed Initial, from a client address the quinn clients do
            // not use, just before its copies: the
            // first of them must come within the replay table's memory of it (`replay_ttl_secs`,
            // 10 s; later refused copies keep the DCID known), however slow the machine is.
            send_datagrams(
                &t,
                Role::Client,
                SocketAddr::new(*client_sources_v4().last().expect("client sources"), 44443),
                origin(false),
                &[replayed_original()],
            );
        }
        for (v6, n) in [(false, 4000u64), (true, 2000)] {
            let spec = flood(kind, v6, n, 8000);
            let (a, o0) = (t.stats(), t.counters());
            let g = t.generate(&spec);
            assert_eq!(g.sent, n, "{kind}: the generator sent everything");
            let (d, o) = settled(&t, &a, &o0, |d, _| d.drops(reason) + d.socket.rx_dropped >= n);
            let family = if v6 { "v6" } else { "v4" };
            eprintln!(
                "{kind} {family}: sent {n}, dropped {:?}, socket {:?}, attack at origin {}",
                d.dropped,
                d.socket,
                o.attack_packets()
            );
            assert_eq!(o.attack_packets(), 0, "{kind} {family}: attack packets reached origin: {o:?}");
            let got = d.drops(reason);
            // A busy machine may make the worker's socket drop a few; they are counted there.
            assert!(got >= n * 95 / 100 && got <= n, "{kind} {family}: {got} of {n} dropped as {reason}");
            assert_eq!(d.dropped_total, got, "{kind} {family}: drops under other reasons: {:?}", d.dropped);
            attack_frames += n;
        }
    }
    // Copies of the same Initial for longer than the replay table's TTL (10 s): the refused
    // copies keep its DCID known, so none passes as a new first sighting when the TTL runs out.
    {
        let n = 6000;
        let spec = GenSpec { seconds: 20.0, ..flood("replayed", false, n, 500) };
        let (a, o0) = (t.stats(), t.counters());
        let g = t.generate(&spec);
        assert_eq!(g.sent, n);
        let (d, o) = settled(&t, &a, &o0, |d, _| d.drops("quic_replay") >= n);
        eprintln!("replayed for 12 s: dropped {:?}, attack at origin {}", d.dropped, o.attack_packets());
        assert_eq!(o.attack_packets(), 0, "a copy passed after the TTL: {o:?}");
        assert!(d.drops("quic_replay") >= n * 95 / 100, "{:?}", d.dropped);
        attack_frames += n;
    }
    let r = clients.join().expect("quic clients");
    let (d, o) = (t.stats().since(&s0), t.counters().since(&c0));
    let stopped = scrubctl(&t, &["capture", "stop"], "capture_stop", json!({}));
    eprintln!("scrubber over the run: dropped {:?}\n  events {:?}\ncapture: {stopped}", d.dropped, d.events);

    assert_clients_ok("quic clients under floods", &r);
    assert_eq!(r.attempts, 1200);
    assert!(r.sources_ok >= 50 && r.v4.handshakes > 0 && r.v6.handshakes > 0, "{r:?}");
    assert_eq!(r.split_hello.attempts, 1200 / 25);
    assert_eq!(r.split_hello.exchanges, r.split_hello.attempts, "every split ClientHello: {r:?}");
    // What the scrubber did for them: every handshake began with a validated Initial (plus the
    // replayed original), split ClientHellos were reassembled, and 1-RTT packets of admitted flows
    // (the request on the stream, acknowledgements, the close) were forwarded. A client socket
    // that got the port of an earlier connection from the same address finds that flow still
    // admitted (its first Initial is then not checked again), hence the slack of 1 %.
    let admitted = d.event("quic_flow_admitted");
    assert!(admitted >= r.handshakes * 99 / 100 && admitted <= r.attempts + 1, "{:?}", d.events);
    assert!(d.event("quic_hello_continued") >= r.split_hello.handshakes, "{:?}", d.events);
    assert!(d.event("quic_admitted_forward") >= 3 * r.exchanges, "{:?}", d.events);
    let reasons: BTreeSet<&str> = KINDS.iter().map(|k| k.1).collect();
    assert!(d.dropped.keys().all(|k| reasons.contains(k.as_str())), "only the floods were dropped: {:?}", d.dropped);
    assert!(d.dropped_total <= attack_frames);
    assert_eq!(o.attack_packets(), 0, "{o:?}");
    assert!(o.packets("in_ip4") > 0 && o.packets("in_ip6") > 0, "{o:?}");

    // The capture: forwarded QUIC packets tagged with the server name of their flow's ClientHello.
    let packets = read_pcapng(&pcap);
    let tagged: Vec<_> = packets.iter().filter(|p| p.comment_text().contains("sni=")).collect();
    eprintln!(
        "capture: {} packets, {} with sni=, e.g. {:?}",
        packets.len(),
        tagged.len(),
        tagged.first().map(|p| p.comment_text())
    );
    assert!(tagged.len() >= 100, "{} of {} packets tagged", tagged.len(), packets.len());
    for p in &tagged {
        let comment = p.comment_text();
        assert!(comment.contains("sni=lab.example") && comment.contains("verdict=forward"), "{comment}");
        // And the ClientHello's fingerprint (JA4 for QUIC: TLS 1.3, a server name).
        assert!(comment.split(' ').any(|w| w.starts_with("q13d")), "{comment}");
        assert_eq!(p.udp_dst_port(), Some(QUIC_PORT), "{comment}");
    }
    eprintln!("test took {:?}", started.elapsed());
}

/// A ClientHello split over two Initials (a 1216-byte key share, as X25519MLKEM768 makes) is
/// reassembled and admitted, in QUIC v1 and v2; the flow's short-header packet then passes,
/// while the same packet from a tuple that sent no Initial is dropped. quinn clients whose
/// ClientHello spans two Initials (a long ALPN list) all complete and exchange data.
#[test]
fn a_client_hello_split_over_two_initials_is_admitted_and_its_1rtt_packets_pass() {
    require_root!();
    let mut t = TestLab::with_daemon(|o| o);
    start_quic(&mut t);
    let ks = KeySchedule::new();
    let client = client_sources_v4()[76];
    for (i, version) in [Version::V1, Version::V2].into_iter().enumerate() {
        let hello = craft::client_hello(&HelloSpec {
            sni: Some("split.lab.example"),
            extra_key_share: 1216,
            seed: 77 + i as u64,
            ..HelloSpec::default()
        });
        let dcid = [0x5c, 0x11, 0x7e, 0x00, 0x01, 0x02, 0x03, i as u8];
        let spec = InitialSpec { version, dcid: &dcid, scid: &[1, 2, 3, 4], ..InitialSpec::default() };
        let initials = craft::client_initials(&ks, &spec, &hello, 2, 0);
        assert_eq!(initials.len(), 2);
        assert!(initials.iter().all(|d| d.len() >= 1200));
        let mut short = vec![0x41];
        short.extend_from_slice(&dcid);
        short.resize(60, 0xab);
        let port = 45000 + 2 * i as u16;

        let (s0, c0) = (t.stats(), t.counters());
        let mut datagrams = initials.clone();
        datagrams.push(short.clone());
        send_datagrams(&t, Role::Client, SocketAddr::new(client, port), origin(false), &datagrams);
        let (d, o) = (t.stats().since(&s0), t.counters().since(&c0));
        eprintln!("{version:?} split: dropped {:?} events {:?} origin {o:?}", d.dropped, d.events);
        assert_eq!(d.event("quic_hello_pending"), 1, "{version:?}: {:?}", d.events);
        assert_eq!(d.event("quic_hello_continued"), 1, "{version:?}: {:?}", d.events);
        assert_eq!(d.event("quic_flow_admitted"), 1, "{version:?}: {:?}", d.events);
        assert_eq!(d.dropped_total, 0, "{version:?}: {:?}", d.dropped);
        assert_eq!(d.forwarded, 3, "{version:?}: both Initials and the short-header packet forwarded: {d:?}");
        assert_eq!(o.packets("in_ip4"), 3, "{version:?}: {o:?}");

        // The same short-header packet from the next port: no Initial, no admission.
        let (s0, c0) = (t.stats(), t.counters());
        send_datagrams(&t, Role::Client, SocketAddr::new(client, port + 1), origin(false), &[short]);
        let (d, o) = (t.stats().since(&s0), t.counters().since(&c0));
        assert_eq!(d.drops("quic_unadmitted_short"), 1, "{version:?}: {:?}", d.dropped);
        assert_eq!(o.packets("in_ip4"), 0, "{version:?}: {o:?}");
    }

    let s0 = t.stats();
    let sources: Vec<IpAddr> =
        client_sources_v4()[..20].iter().chain(client_sources_v6()[..5].iter()).copied().collect();
    let mut co = client_options(&t, &sources, 25, 50.0);
    co.split_hello_every = 1;
    let r = quic_clients(&t, &co);
    assert_clients_ok("quinn with a split ClientHello", &r);
    assert_eq!((r.split_hello.handshakes, r.split_hello.exchanges), (25, 25), "{r:?}");
    let d = t.stats().since(&s0);
    eprintln!("quinn split: dropped {:?} events {:?}", d.dropped, d.events);
    assert_eq!(d.event("quic_hello_pending"), 25, "each ClientHello spanned two Initials: {:?}", d.events);
    assert_eq!(d.event("quic_hello_continued"), 25, "{:?}", d.events);
    assert_eq!(d.dropped_total, 0, "{:?}", d.dropped);
}

/// The control run: QUIC protection off for the lab profile. The same floods reach origin (the
/// QUIC checks never run), and the quinn clients work as before.
#[test]
fn without_quic_protection_the_floods_reach_origin() {
    require_root!();
    let config = config_with(&[("[profiles.lab.quic]\nenabled = true", "[profiles.lab.quic]\nenabled = false")]);
    let mut t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    start_quic(&mut t);
    const N: u64 = 1000;
    for (kind, _) in KINDS {
        for v6 in [false, true] {
            let (a, o0) = (t.stats(), t.counters());
            let g = t.generate(&flood(kind, v6, N, 4000));
            assert_eq!(g.sent, N);
            let (d, o) = settled(&t, &a, &o0, |_, o| o.attack_packets() >= N);
            eprintln!(
                "{kind} (v6 {v6}, protection off): dropped {:?}, attack at origin {}",
                d.dropped,
                o.attack_packets()
            );
            assert!(d.dropped.keys().all(|k| !k.starts_with("quic_")), "{kind}: {:?}", d.dropped);
            assert_eq!(d.event("quic_initial_valid"), 0);
            assert!(o.attack_packets() >= N * 95 / 100, "{kind}: the flood reaches origin: {o:?}");
        }
    }
    let sources: Vec<IpAddr> = client_sources_v4()[..50].iter().chain(&client_sources_v6()[..10]).copied().collect();
    let r = quic_clients(&t, &client_options(&t, &sources, 60, 100.0));
    assert_clients_ok("quic clients without protection", &r);
}

/// `scrubber lab run --scenario quic-flood`: real QUIC clients are the legitimate load beside the
/// flood (from the default attack sources, the clients' own /25), and the report says how their
/// handshakes went, how much of the flood reached origin and what was dropped under each reason.
///
/// The run's clients share their addresses with the flood and its per-source budget, and the run
/// takes whatever CPU the machine has left: its handshake figure is a measurement, held here to
/// 98 %; the 99.9 % bar is the first test's, under a controlled load.
#[test]
fn lab_run_quic_flood_reports_quic_handshakes() {
    require_root!();
    let config = config_with(&[]);
    let cfg = config.0.display().to_string();
    let args = ["--scenario", "quic-flood", "--seconds", "3", "--rate", "5000", "--config", &cfg];
    let r = tests::lab_run(&args, Duration::from_secs(120));
    let q: ClientReport = serde_json::from_value(r["legit"]["quic"].clone())
        .unwrap_or_else(|e| panic!("legit.quic: {e}: {}", r["legit"]));
    eprintln!(
        "lab run quic-flood: {}/{} handshakes, {} echoed, {} split of {}, failures {:?}; attack {}; dropped {}",
        q.handshakes,
        q.attempts,
        q.exchanges,
        q.split_hello.handshakes,
        q.split_hello.attempts,
        q.failures,
        r["attack"],
        r["scrubber"]["dropped"]
    );
    assert!(q.attempts >= 200 && q.v4.handshakes > 0 && q.v6.handshakes > 0 && q.split_hello.handshakes > 0, "{q:?}");
    assert!(q.handshakes * 100 >= q.attempts * 98, "under 98 % of the handshakes completed: {q:?}");
    assert!(q.exchanges * 100 >= q.attempts * 98, "under 98 % of the streams came back: {q:?}");
    let n = |k: &str| r.pointer(k).and_then(|v| v.as_u64()).unwrap_or(0);
    for (_, reason) in KINDS {
        assert!(n(&format!("/scrubber/dropped/{reason}")) > 0, "{reason}: {}", r["scrubber"]["dropped"]);
    }
    for other in ["deny", "bogon", "rule"] {
        assert!(
            r["scrubber"]["dropped"].as_object().is_some_and(|d| d.keys().all(|k| !k.starts_with(other))),
            "{other}: {}",
            r["scrubber"]["dropped"]
        );
    }
    // The first copy of the replayed Initial cannot be told from its original: that one flow is
    // admitted, and its copies (the generator repeats a pool of 4096 frames) reach origin.
    let sent = n("/attack/sent");
    assert!(sent > 0 && n("/attack/reached_origin") * 1000 <= sent, "{}", r["attack"]);
}
