//! The AF_XDP data path in the namespace lab, with the real daemon (root; run with
//! `--test-threads=1`; one lab per test, removed however the test ends).
//!
//! What reached origin is read from origin's nftables counters (the attack marker DSCP CS1 is set
//! by the generator and never by legitimate clients); what the scrubber did, from its control
//! socket (`stats`). Each attack case has a control run with the scrubber in bypass, in which the
//! same frames visibly reach origin, so the tests can fail.

use serde_json::json;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tests::topo::{ORIGIN_V4, ORIGIN_V6, SCRUB_IN0_V4, SCRUB_IN0_V6, UNPROTECTED_V4, UNPROTECTED_V6};
use tests::{
    Cmd, GenSpec, LabOptions, Role, ScrubStats, TempConfig, TestLab, assert_all_ok, assert_no_leftovers,
    client_sources_v4, client_sources_v6, require_root, scrubber_bin, wait_for, xdp_attached,
};

const HELLO: &str = "/hello.txt";

fn v4(a: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn v6(a: std::net::Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// Asserts the requests of `conns` TCP connections crossed AF_XDP: XDP redirected them, a worker
/// received them and sent them on egress, and the pipeline forwarded them — apart from SYN
/// authentication of each new source (its first SYN answered with a SYN-ACK, the client's RST
/// consumed), the only frames that may not be forwarded.
fn assert_crossed_af_xdp(what: &str, d: &ScrubStats, conns: u64) {
    eprintln!("{what}: scrubber {d:?}");
    // Each connection: SYN, ACK, request, FIN/ACK (and the client's last ACK) at least.
    assert!(d.xdp.redirected >= 4 * conns, "{what}: XDP redirected {} for {conns} connections", d.xdp.redirected);
    assert!(d.rx >= 4 * conns, "{what}: workers received {}", d.rx);
    assert!(d.tx_egress >= 4 * conns, "{what}: workers sent {} on egress", d.tx_egress);
    let answered = d.dropped.get("syn_cookie_answer").copied().unwrap_or(0);
    assert_eq!(d.dropped_total, answered, "{what}: only consumed cookie RSTs are dropped: {:?}", d.dropped);
    assert_eq!(d.replied, answered, "{what}: one SYN-ACK per verified source");
    assert!(d.replied <= conns, "{what}: at most one challenge per source");
    assert_eq!(d.forwarded + d.replied + answered, d.rx, "{what}: every other frame forwarded: {d:?}");
    assert_eq!(d.tx_ring_full, 0);
}

/// `l2` mode: 200 IPv4 and 100 IPv6 client sources fetch from origin's HTTP server through the
/// scrubber; every request crosses the AF_XDP path and arrives at origin by the egress link.
#[test]
fn l2_http_over_ipv4_and_ipv6_crosses_af_xdp() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let (s0, c0) = (t.stats(), t.counters());
    let r4 = t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4());
    assert_all_ok("curl v4", &r4);
    let r6 = t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..100]);
    assert_all_ok("curl v6", &r6);
    let d = t.stats().since(&s0);
    let conns = (r4.attempts + r6.attempts) as u64;
    assert_crossed_af_xdp("l2", &d, conns);
    let c = t.counters().since(&c0);
    assert!(c.packets("in_all") >= 4 * conns && c.packets("in_ip6") >= 4 * 100, "{c:?}");
    // Besides what the workers sent, only the scrub namespace's own neighbour discovery.
    assert!(c.packets("in_all") <= d.tx_egress + 10, "origin got nothing the scrubber did not send: {c:?}");
    assert_eq!(c.attack_packets(), 0);
    assert_eq!(c.packets("out_egress"), 0, "replies bypass the scrubber: {c:?}");
    let st = t.control("status", json!({}));
    assert_eq!(st["forward"], "l2");
    assert_eq!(st["workers"][0]["interface"], "in0");
}

/// `--vlan 100`: tagged frames reach XDP on in0, leave the scrubber still tagged, and origin
/// serves every request.
#[test]
fn vlan_tagged_http_crosses_af_xdp() {
    require_root!();
    let t = TestLab::with_daemon(|o| LabOptions { vlan: Some(100), ..o });
    let s0 = t.stats();
    let cap = tests::capture(&t.ns(Role::Origin), "o0", 5, Duration::from_secs(10), "vlan 100");
    std::thread::sleep(Duration::from_millis(700));
    let r4 = t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..60]);
    assert_all_ok("curl v4 over vlan", &r4);
    let r6 = t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..20]);
    assert_all_ok("curl v6 over vlan", &r6);
    let out = cap.join().unwrap().unwrap_or_else(|e| panic!("tcpdump on o0: {e}"));
    assert_eq!(out.stdout.lines().filter(|l| l.contains("vlan 100")).count(), 5, "{}", out.stdout);
    assert_crossed_af_xdp("vlan", &t.stats().since(&s0), 80);
    assert_eq!(t.counters().attack_packets(), 0);
}

/// `--gre`: the scrubber encapsulates clean frames in GRE to origin's endpoint, which
/// decapsulates them (a kernel device, or the lab's userspace endpoint where the kernel has no
/// GRE); every request succeeds.
#[test]
fn gre_http_crosses_af_xdp_and_is_decapsulated() {
    require_root!();
    let t = TestLab::with_daemon(|o| LabOptions { gre: true, ..o });
    let (s0, c0) = (t.stats(), t.counters());
    let r4 = t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..60]);
    assert_all_ok("curl v4 over gre", &r4);
    let r6 = t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..20]);
    assert_all_ok("curl v6 over gre", &r6);
    let d = t.stats().since(&s0);
    assert_crossed_af_xdp("gre", &d, 80);
    assert_eq!(d.events.get("gre_encapsulated").copied(), Some(d.forwarded), "{d:?}");
    let c = t.counters().since(&c0);
    eprintln!("origin: {c:?}");
    assert!(c.packets("gre_outer") >= 4 * 80, "{c:?}");
    assert!(c.packets("in_all") >= 4 * 80, "decapsulated packets counted on gre1: {c:?}");
    assert_eq!(t.control("status", json!({}))["forward"], "gre");
}

/// One attack of [`attacks_are_dropped_for_their_reason_and_reach_origin_in_bypass`].
struct AttackCase {
    name: &'static str,
    spec: GenSpec,
    /// Control-socket command that makes the policy catch it (a list entry, a rule).
    setup: Option<(&'static str, serde_json::Value)>,
    /// The drop reason it must be counted under.
    reason: &'static str,
}

/// The attack table. A countermeasure adds its flood here as one line, e.g.
/// `case("syn-flood", GenSpec::attack(&["syn-flood"]), None, "<its reason>")`.
fn attack_cases() -> Vec<AttackCase> {
    let case = |name, spec, setup, reason| AttackCase { name, spec, setup, reason };
    let udp_from = |src: &str, dport| GenSpec { src: src.into(), dport: Some(dport), ..GenSpec::attack(&["udp"]) };
    vec![
        case("tcp-xmas", GenSpec::attack(&["tcp-xmas"]), None, "tcp_xmas"),
        case("tcp-null", GenSpec::attack(&["tcp-null"]), None, "tcp_null_flags"),
        case("tcp-xmas v6", GenSpec::attack_v6(&["tcp-xmas"]), None, "tcp_xmas"),
        case(
            "deny-listed sources",
            udp_from("198.18.3.0/24", 9000),
            Some(("deny_add", json!({"cidr": "198.18.3.0/24"}))),
            "deny_list",
        ),
        case(
            "rule drop",
            udp_from("198.18.1.0/25", 7777),
            Some(("rule_add", json!({"rule": {"action": "drop", "protocol": "udp", "dst_ports": 7777}}))),
            "rule_drop",
        ),
    ]
}

/// Attack frames from the generator (marked CS1) are dropped, each under its own reason, and
/// none reaches origin; with the scrubber in bypass the same frames arrive at origin.
#[test]
fn attacks_are_dropped_for_their_reason_and_reach_origin_in_bypass() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let cases = attack_cases();
    for c in &cases {
        if let Some((cmd, args)) = &c.setup {
            t.control(cmd, args.clone());
        }
    }
    const N: u64 = 10_000;
    for bypass in [false, true] {
        t.control("bypass", json!({"on": bypass}));
        for c in &cases {
            let spec = GenSpec { count: N, rate: 50_000, seconds: 5.0, ..c.spec.clone() };
            let (s0, o0) = (t.stats(), t.counters());
            let g = t.generate(&spec);
            assert_eq!(g.sent, N, "{}: the generator sent everything", c.name);
            let (d, o) = (t.stats().since(&s0), t.counters().since(&o0));
            eprintln!(
                "{} (bypass {bypass}): rx {} drops {:?}, events {:?}, socket {:?}, at origin {}",
                c.name,
                d.rx,
                d.dropped,
                d.events,
                d.socket,
                o.attack_packets()
            );
            assert_eq!(d.xdp.redirected, N, "{}: XDP redirected every frame", c.name);
            // A busy machine may make the worker's socket drop a few; they are counted.
            assert_eq!(d.rx + d.socket.rx_dropped + d.socket.rx_ring_full, N, "{}: {d:?}", c.name);
            assert!(d.rx >= N * 95 / 100, "{}: the worker received {} of {N}", c.name, d.rx);
            if bypass {
                assert_eq!(d.dropped_total, 0, "{}: nothing is checked in bypass: {:?}", c.name, d.dropped);
                assert_eq!(d.events.get("bypass_forward").copied(), Some(d.rx), "{}", c.name);
                assert_eq!(o.attack_packets(), d.tx_egress, "{}: in bypass the attack reaches origin: {o:?}", c.name);
                assert!(o.attack_packets() >= N * 95 / 100, "{}: {o:?}", c.name);
            } else {
                assert_eq!(d.drops(c.reason), d.rx, "{}: every frame dropped as {}: {:?}", c.name, c.reason, d.dropped);
                assert_eq!(d.dropped_total, d.rx, "{}: under no other reason: {:?}", c.name, d.dropped);
                assert_eq!(o.attack_packets(), 0, "{}: attack frames reached origin: {o:?}", c.name);
            }
        }
    }
}

/// Traffic for the scrub namespace's own addresses (ping, a TCP connection) and for an
/// unprotected destination is passed to the kernel by XDP; no worker sees it.
#[test]
fn own_address_and_unprotected_destination_stay_in_the_kernel() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let (scrub, client) = (t.ns(Role::Scrub), t.ns(Role::Client));
    // A one-connection TCP server on the scrubber's own address.
    let server = Cmd::new("python3")
        .args(&["-c", "import socket;s=socket.socket();s.bind(('198.18.0.2',2222));s.listen();c,_=s.accept();c.sendall(b'scrub');c.close()"])
        .netns(&scrub)
        .timeout(Duration::from_secs(15));
    let server = std::thread::spawn(move || server.run());
    let s0 = t.stats();
    for target in [v4(SCRUB_IN0_V4), v6(SCRUB_IN0_V6)] {
        let p = tests::ping(&client, target, 5, None, None).expect("ping");
        assert_eq!((p.transmitted, p.received), (5, 5), "ping {target}");
    }
    let connect = "import socket,time\nfor _ in range(100):\n  try:\n    s=socket.create_connection(('198.18.0.2',2222),2);break\n  except OSError: time.sleep(0.05)\nprint(s.recv(16).decode())";
    let got = Cmd::new("python3").args(&["-c", connect]).netns(&client).timeout(Duration::from_secs(10)).run();
    assert_eq!(got.expect("TCP connect to the scrubber").stdout.trim(), "scrub");
    server.join().unwrap().expect("TCP server in the scrub namespace");
    assert_all_ok("curl unprotected v4", &t.curl(v4(UNPROTECTED_V4), HELLO, &client_sources_v4()[..20]));
    assert_all_ok("curl unprotected v6", &t.curl(v6(UNPROTECTED_V6), HELLO, &client_sources_v6()[..10]));
    let d = t.stats().since(&s0);
    eprintln!("scrubber: {d:?}");
    assert!(d.xdp.local >= 10 + 3, "pings and the TCP connection to the scrubber are local: {:?}", d.xdp);
    assert!(d.xdp.unprotected >= 4 * 30, "{:?}", d.xdp);
    assert_eq!((d.xdp.redirected, d.rx), (0, 0), "no worker saw any of it: {d:?}");
}

/// Numbered UDP requests from one client source at 1000 per second on a thread, started now;
/// request `n` leaves no earlier than `n` ms after the returned instant.
fn udp_probe_in_background(
    t: &TestLab,
    count: u64,
) -> (Instant, std::thread::JoinHandle<Result<tests::Output, tests::CmdError>>) {
    let bin = scrubber_bin().display().to_string();
    let target = std::net::SocketAddr::new(v4(ORIGIN_V4), 9000).to_string();
    let c = Cmd::new(bin)
        .args(&["lab", "udp-probe", "--target", &target, "--sources", "198.18.1.10", "--rate", "1000"])
        .args(&["--count", &count.to_string(), "--wait-ms", "1000"])
        .netns(t.ns(Role::Client))
        .timeout(Duration::from_secs(count / 1000 + 15));
    let started = Instant::now();
    (started, std::thread::spawn(move || c.run()))
}

fn probe_report(h: std::thread::JoinHandle<Result<tests::Output, tests::CmdError>>) -> tests::ProbeReport {
    let out = h.join().unwrap().expect("udp-probe");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("udp-probe output {:?}: {e}", out.stdout))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Requests `lo..hi` that were answered.
fn answered_in(r: &tests::ProbeReport, lo: u64, hi: u64) -> u64 {
    (lo..hi).filter(|s| r.was_answered(*s)).count() as u64
}

/// Restarts the daemon after a crash and checks it took the program over and scrubs again.
fn restart_takes_over(t: &mut TestLab) {
    t.start_scrubber();
    let st = t.control("status", json!({}));
    assert_eq!(st["programs"][0]["taken_over"], true, "the restart took the program over: {st}");
    assert!(xdp_attached(&t.ns(Role::Scrub), "in0"));
    let s0 = t.stats();
    assert_all_ok("curl after restart", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..20]));
    let xmas = GenSpec { count: 5000, rate: 50_000, ..GenSpec::attack(&["tcp-xmas"]) };
    let o0 = t.counters();
    assert_eq!(t.generate(&xmas).sent, 5000);
    let d = t.stats().since(&s0);
    assert!(d.rx >= 5000 + 4 * 20, "the workers receive again: {d:?}");
    assert_eq!(d.drops("tcp_xmas"), 5000, "it scrubs again: {:?}", d.dropped);
    assert_eq!(t.counters().since(&o0).attack_packets(), 0);
}

/// `kill -9` under traffic with `fail = open`: the XDP program stays attached and, with no
/// socket, passes protected traffic to the kernel, which routes it to origin within a second. A
/// restart takes the program over and scrubs again.
#[test]
fn kill_9_fails_open_within_a_second_and_restart_takes_over() {
    require_root!();
    let mut t = TestLab::with_daemon(|o| o);
    let (started, probe) = udp_probe_in_background(&t, 4000);
    std::thread::sleep(Duration::from_millis(1500));
    let killed = ms(started.elapsed());
    t.kill_daemon().expect("kill -9");
    assert!(xdp_attached(&t.ns(Role::Scrub), "in0"), "the program outlives the daemon");
    let c0 = t.counters();
    wait_for("UDP requests reaching origin through the kernel", Duration::from_secs(1), || {
        (t.counters().since(&c0).packets("in_all") > 0).then_some(())
    });
    let r = probe_report(probe);
    eprintln!("probe: sent {} answered {} ranges {:?}; killed at {killed} ms", r.sent, r.answered, r.answered_ranges);
    assert_eq!(r.sent, 4000);
    assert!(answered_in(&r, 0, killed) >= killed * 99 / 100, "scrubbed before the kill: {r:?}");
    let after = (killed + 1000)..4000;
    assert_eq!(answered_in(&r, after.start, after.end), after.end - after.start, "fail open from 1 s after the kill");
    assert!(r.answered >= 4000 - 1000, "at most the first second after the kill is lost: {r:?}");
    restart_takes_over(&mut t);
    // The taken-over program kept its counters: the frames it passed with no socket bound.
    assert!(t.stats().xdp.no_socket >= 2000, "{:?}", t.stats().xdp);
}

/// `kill -9` under traffic with `fail = closed`: protected traffic is dropped in XDP until a
/// restart takes the program over; then it is scrubbed and answered again.
#[test]
fn kill_9_fails_closed_and_restart_takes_over() {
    require_root!();
    let config = TempConfig::lab_with(&[("fail = \"open\"", "fail = \"closed\"")]);
    let mut t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    assert_eq!(t.control("status", json!({}))["fail"], "closed");
    let (started, probe) = udp_probe_in_background(&t, 4000);
    std::thread::sleep(Duration::from_millis(1000));
    let killed = ms(started.elapsed());
    t.kill_daemon().expect("kill -9");
    std::thread::sleep(Duration::from_millis(100));
    let c0 = t.counters();
    std::thread::sleep(Duration::from_millis(1500));
    let c = t.counters().since(&c0);
    assert_eq!(c.packets("in_all"), 0, "nothing reaches origin while the daemon is down: {c:?}");
    let restarted = ms(started.elapsed());
    restart_takes_over(&mut t);
    let r = probe_report(probe);
    eprintln!(
        "probe: sent {} answered {} ranges {:?}; killed at {killed} ms, restarted at {restarted} ms",
        r.sent, r.answered, r.answered_ranges
    );
    assert!(answered_in(&r, 0, killed) >= killed * 99 / 100, "scrubbed before the kill: {r:?}");
    assert_eq!(answered_in(&r, killed + 200, restarted.saturating_sub(200)), 0, "fail closed: {r:?}");
    assert!(answered_in(&r, restarted + 1000, 4000) >= (4000 - restarted - 1000) * 99 / 100, "answered again: {r:?}");
}

/// 20 start/stop cycles of the daemon (SIGTERM and SIGINT in turn): each one attaches and
/// scrubs, each clean stop detaches the XDP program and removes the control socket; the lab
/// then goes down leaving nothing.
#[test]
fn twenty_start_stop_cycles_leave_nothing_behind() {
    require_root!();
    let mut t = TestLab::with_services(|o| o);
    let id = t.id().to_string();
    let scrub = t.ns(Role::Scrub);
    let sock = t.state().daemon.control_socket.clone();
    for cycle in 0..20 {
        t.start_scrubber();
        let pid = t.daemon_pid().expect("running");
        assert!(xdp_attached(&scrub, "in0"), "cycle {cycle}: attached");
        let h = t.control("health", json!({}));
        assert_eq!(h["ok"], true, "cycle {cycle}: {h}");
        if cycle % 5 == 0 {
            let s0 = t.stats();
            assert_all_ok("curl", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..4]));
            assert!(t.stats().since(&s0).rx >= 16, "cycle {cycle}: scrubbing");
        }
        let sig = if cycle % 2 == 0 { "TERM" } else { "INT" };
        Cmd::new("kill").args(&[&format!("-{sig}"), &pid.to_string()]).run().expect("kill");
        wait_for("the daemon to exit", Duration::from_secs(5), || {
            (!tests::lab::instance::pid_alive(pid)).then_some(())
        });
        t.stop_daemon(Duration::from_secs(1)).expect("reap");
        assert!(!xdp_attached(&scrub, "in0"), "cycle {cycle}: SIG{sig} left the XDP program attached");
        assert!(!sock.exists(), "cycle {cycle}: SIG{sig} left {}", sock.display());
    }
    // Without the daemon the kernel routes: the lab still works, and goes down clean.
    assert_all_ok("curl without the daemon", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..4]));
    let r = t.down();
    assert_eq!(r.namespaces.len(), 5);
    assert_no_leftovers(&id);
}

/// `scrubber lab run --scenario mixed --seconds 3 --json`: the report has every field, the
/// attack's TCP flag floods are dropped under their reasons, and what the sources sent
/// reconciles with what reached the scrubber's XDP program.
#[test]
fn lab_run_mixed_reports_and_reconciles() {
    require_root!();
    let r = tests::lab_run(&["--scenario", "mixed", "--seconds", "3"], Duration::from_secs(90));
    for key in [
        "/scenario",
        "/seconds",
        "/attack/sent",
        "/attack/reached_origin",
        "/legit/attempts",
        "/legit/succeeded",
        "/legit/sources",
        "/scrubber/rx",
        "/scrubber/forwarded",
        "/scrubber/replied",
        "/scrubber/dropped",
        "/scrubber/xdp_stats/redirected",
        "/scrubber/worker_cpu_ns_per_packet",
        "/rates/offered_pps",
        "/rates/forwarded_pps",
        "/reconciliation/sent",
        "/reconciliation/received_by_xdp",
        "/reconciliation/dropped_before_xdp_total",
        "/reconciliation/gap",
        "/ceiling/pps",
    ] {
        assert!(r.pointer(key).is_some_and(|v| !v.is_null()), "{key} missing: {r}");
    }
    let n = |k: &str| r.pointer(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    assert_eq!(r["scenario"], "mixed");
    assert!(n("/seconds") >= 3.0 && n("/attack/sent") > 0.0, "{r}");
    assert!(r["timeline"].as_array().is_some_and(|t| t.len() >= 3), "a row per second");
    // Two of the five profiles are TCP flag abuse: each a fifth of the attack, of what reached the
    // workers (at 70 % of the ceiling their sockets may drop some).
    let sent = n("/attack/sent");
    let reached_workers = n("/reconciliation/worker_rx") / n("/reconciliation/xdp_redirected").max(1.0);
    for reason in ["tcp_xmas", "tcp_null_flags"] {
        let dropped = n(&format!("/scrubber/dropped/{reason}"));
        assert!(dropped >= 0.15 * sent * reached_workers, "{reason}: {dropped} of {sent}: {}", r["scrubber"]);
    }
    assert!(n("/attack/reached_origin") <= 0.6 * sent + 1.0, "{r}");
    assert!(n("/legit/succeeded") > 0.0 && n("/legit/sources") > 0.0, "{}", r["legit"]);
    let rc = &r["reconciliation"];
    for key in ["/reconciliation/consumed_by_edge", "/reconciliation/edge_own_to_scrubber"] {
        assert!(r.pointer(key).is_some_and(|v| v.is_u64()), "{key}: {rc}");
    }
    let gap = n("/reconciliation/gap").abs();
    assert!(gap <= 50.0 + 1e-4 * n("/reconciliation/sent"), "sent vs received by XDP: {rc}");
    assert_eq!(
        n("/reconciliation/xdp_redirected"),
        n("/reconciliation/worker_rx") + n("/reconciliation/socket_dropped"),
        "after XDP: {rc}"
    );
}

/// Huge pages reserved for the duration of a test (`vm.nr_hugepages`), the old count restored
/// however the test ends.
struct ReservedHugePages {
    before: u64,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let line = text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in meminfo"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

impl ReservedHugePages {
    fn more(pages: u64) -> ReservedHugePages {
        let read =
            || std::fs::read_to_string(NR_HUGEPAGES).expect("nr_hugepages").trim().parse::<u64>().expect("count");
        let before = read();
        std::fs::write(NR_HUGEPAGES, (before + pages).to_string()).expect("write nr_hugepages");
        let guard = ReservedHugePages { before };
        assert_eq!(read(), before + pages, "the kernel gave {pages} more huge pages");
        guard
    }
}

impl Drop for ReservedHugePages {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.before.to_string());
    }
}

/// `umem_pages`: with huge pages reserved, `"huge"` maps each worker's UMEM on them (the pages are
/// taken while the daemon runs) and traffic crosses the worker; asked for more than are free,
/// `"huge"` refuses to start and says how to reserve them, while `"auto"` falls back to small pages.
#[test]
fn umem_on_huge_pages_when_reserved_small_pages_otherwise() {
    require_root!();
    assert_eq!(meminfo("Hugepagesize:"), 2048, "the lab's page arithmetic assumes 2 MiB huge pages");
    // The lab's worker: 8192 frames of 4096 bytes, 32 MiB = 16 huge pages.
    let _reserved = ReservedHugePages::more(16);
    let free = meminfo("HugePages_Free:");

    let huge = TempConfig::lab_with(&[("frames = 8192", "frames = 8192\numem_pages = \"huge\"")]);
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(huge.0.clone()), ..o });
    let status = t.control("status", json!({}));
    assert_eq!(status["workers"][0]["umem_pages"], "huge", "{status}");
    // Apart from the UMEM, the tables sit on transparent huge pages where THP allows it.
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !thp.contains("[never]") {
        assert!(status["huge_page_mib"].as_u64().is_some_and(|m| m > 0), "THP {thp:?}: {status}");
    }
    assert_eq!(free - meminfo("HugePages_Free:"), 16, "the worker's UMEM holds 16 huge pages");
    let probe = t.udp_probe(v4(ORIGIN_V4), "198.18.1.10", 200, 1000);
    assert_eq!(probe.answered, 200, "{probe:?}");
    assert!(t.stats().rx >= 200, "the requests crossed the worker");
    drop(t);
    assert_eq!(meminfo("HugePages_Free:"), free, "given back when the daemon stops");

    // 65536 frames need 128 huge pages: more than are free.
    let more = [("frames = 8192", "frames = 65536\numem_pages = \"huge\"")];
    let too_many = TempConfig::lab_with(&more);
    let mut t = TestLab::with_services(|o| LabOptions { config: Some(too_many.0.clone()), ..o });
    let err = t.start_daemon(scrubber_bin(), &[]).expect_err("not enough huge pages").to_string();
    assert!(err.contains("128 huge pages") && err.contains("vm.nr_hugepages"), "{err}");
    drop(t);

    let auto = TempConfig::lab_with(&[("frames = 8192", "frames = 65536\numem_pages = \"auto\"")]);
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(auto.0.clone()), ..o });
    assert_eq!(t.control("status", json!({}))["workers"][0]["umem_pages"], "small");
    assert_eq!(meminfo("HugePages_Free:"), free, "auto took none of the too few pages");
    assert_eq!(t.udp_probe(v4(ORIGIN_V4), "198.18.1.10", 200, 1000).answered, 200);
}
