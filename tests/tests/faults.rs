//! Failure behaviour (root; `--test-threads=1`): the per-queue watchdog. A worker that stops
//! making progress (made to stall by the fault-injection command) has its socket taken out of the
//! XDP program's socket map within the watchdog period, so its queue falls to the fail mode —
//! open: the kernel forwards, traffic keeps reaching origin; closed: none does — and `health`
//! reports it. When the worker moves again its socket goes back in and it scrubs again. In a
//! symmetric lab the worker's return-direction socket falls to the fail mode with it. A change
//! whose XDP map update fails is rolled back whole.

use serde_json::json;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tests::control::Conn;
use tests::topo::ORIGIN_V4;
use tests::{LabOptions, Role, TempConfig, TestLab, require_root, xdp_attached};

const CONFIG: &[(&str, &str)] = &[("[daemon]\n", "[daemon]\nfault_injection = true\n")];

/// A lab whose daemon accepts fault injection, with `replace` applied to the lab config besides
/// and `options` to the lab; the config file is returned to live as long as the lab.
fn fault_lab(replace: &[(&str, &str)], options: impl FnOnce(LabOptions) -> LabOptions) -> (TempConfig, TestLab) {
    let config = TempConfig::lab_with(&[CONFIG, replace].concat());
    let t = TestLab::with_daemon(|o| options(LabOptions { config: Some(config.0.clone()), ..o }));
    (config, t)
}

/// Packets that reached origin while a client sent numbered UDP requests for about `d`.
fn origin_packets(t: &TestLab, d: Duration) -> u64 {
    let c0 = t.counters();
    let count = (d.as_millis() as u64 / 2).max(1);
    t.udp_probe(IpAddr::V4(ORIGIN_V4), "198.18.1.10", count, 500);
    t.counters().since(&c0).packets("in_all")
}

fn stalled(t: &TestLab) -> bool {
    !t.control("health", json!({}))["stalled"].as_array().is_none_or(|a| a.is_empty())
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn stall_and_recover(fail_open: bool) {
    let closed: &[(&str, &str)] = if fail_open { &[] } else { &[("fail = \"open\"", "fail = \"closed\"")] };
    let (_config, t) = fault_lab(closed, |o| o);
    assert!(t.control("health", json!({}))["ok"].as_bool().unwrap_or(false));
    assert!(origin_packets(&t, Duration::from_millis(500)) > 0, "traffic reaches origin through the worker");
    let scrubbed_before = t.stats().rx;

    t.control("fault_stall", json!({"queue": 0, "ms": 3000}));
    let took = wait_until("the watchdog notices", Duration::from_secs(2), || stalled(&t));
    eprintln!("watchdog noticed after {took:?} (limit 500 ms + one check)");
    let no_socket_before = t.stats().xdp.no_socket;
    let reached = origin_packets(&t, Duration::from_millis(800));
    let no_socket = t.stats().xdp.no_socket - no_socket_before;
    assert!(no_socket > 0, "the XDP program finds no socket on the stalled queue");
    if fail_open {
        assert!(reached > 0, "fail open: the kernel forwards while the worker is stalled");
    } else {
        assert_eq!(reached, 0, "fail closed: nothing reaches origin while the worker is stalled");
    }
    assert!(!t.control("health", json!({}))["ok"].as_bool().unwrap_or(true), "health reports the stall");

    wait_until("the worker recovers", Duration::from_secs(6), || !stalled(&t));
    assert!(origin_packets(&t, Duration::from_millis(500)) > 0, "traffic reaches origin again");
    assert!(t.stats().rx > scrubbed_before, "the worker scrubs again");
    assert!(t.control("health", json!({}))["ok"].as_bool().unwrap_or(false));
}

#[test]
fn a_stalled_worker_fails_open_and_recovers() {
    require_root!();
    stall_and_recover(true);
}

#[test]
fn a_stalled_worker_fails_closed_and_recovers() {
    require_root!();
    stall_and_recover(false);
}

/// Symmetric mode: the origin's answers reach a worker through the egress interface's program.
/// While the worker is stalled they must fall to the fail mode too (open: the kernel routes them),
/// not go on to a socket nobody reads.
#[test]
fn a_stalled_worker_in_a_symmetric_lab_fails_open_both_ways() {
    require_root!();
    let (_config, t) = fault_lab(&[], |o| LabOptions { symmetric: true, ..o });
    let answered = |t: &TestLab| t.udp_probe(IpAddr::V4(ORIGIN_V4), "198.18.1.10", 200, 500).answered;
    // Answers the probe got, and answers the worker relayed meanwhile.
    let through_worker = |t: &TestLab| {
        let before = t.stats().event("return_relayed");
        (answered(t), t.stats().event("return_relayed") - before)
    };
    let (got, relayed) = through_worker(&t);
    assert!(got > 0 && relayed > 0, "answers come back through the worker: {got} answered, {relayed} relayed");
    t.control("fault_stall", json!({"queue": 0, "ms": 4000}));
    wait_until("the watchdog notices", Duration::from_secs(2), || stalled(&t));
    assert!(answered(&t) > 0, "fail open: requests and answers pass through the kernel while the worker is stalled");
    wait_until("the worker recovers", Duration::from_secs(8), || !stalled(&t));
    let (got, relayed) = through_worker(&t);
    assert!(got > 0 && relayed > 0, "answers come back through the worker again: {got} answered, {relayed} relayed");
}

/// An interface with more RX queues than workers: what RSS puts on the others falls to the fail
/// mode, so the daemon says so at start.
#[test]
fn rx_queues_without_a_worker_are_reported_at_start() {
    require_root!();
    let mut t = TestLab::with_services(|o| LabOptions { queues: 2, ..o });
    let path = t.state().daemon.config.clone();
    let mut config = control::Config::load(&path).unwrap();
    assert_eq!(config.dataplane.queues.len(), 2);
    config.dataplane.queues.truncate(1);
    std::fs::write(&path, config.to_toml()).unwrap();
    t.start_scrubber();
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("RX queues without a worker"), "{log}");
    assert_eq!(t.control("health", json!({}))["workers"], 1, "the start goes on with the worker it has");
}

/// A worker stuck at shutdown (stalled for 30 s) does not keep the daemon from detaching its
/// program and exiting.
#[test]
fn a_stuck_worker_does_not_hold_up_the_shutdown() {
    require_root!();
    let (_config, mut t) = fault_lab(&[], |o| o);
    t.control("fault_stall", json!({"queue": 0, "ms": 30_000}));
    wait_until("the watchdog notices", Duration::from_secs(2), || stalled(&t));
    let started = Instant::now();
    t.stop_daemon(Duration::from_secs(15)).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the daemon took {took:?} to stop");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "in0"), "the program is detached");
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("worker did not stop; shutting down without it"), "{log}");
}

#[test]
fn fault_injection_is_refused_unless_configured() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let r = t.ctl("fault_stall", json!({"queue": 0, "ms": 100}));
    assert!(r.is_err_and(|e| e.to_string().contains("forbidden")), "fault injection must be off by default");
}

/// A change whose XDP map update fails (made to, by fault injection, after the maps were
/// written) is rolled back whole: the answer is `xdp` and says so, the running generation and
/// the policy document stay, the maps are put back — origin's prefix, which the refused
/// `prefix_del` had taken out of them, steers origin's traffic to the workers again — and the
/// next change goes through as if the refused one had never been asked.
#[test]
fn a_change_the_xdp_maps_refuse_is_rolled_back() {
    require_root!();
    let (_config, t) = fault_lab(&[], |o| o);
    let mut c = Conn::open(&t.state().daemon.control_socket);
    let before = c.ok("policy_get", json!({}));
    let generation = before["generation"].as_u64().unwrap();
    let protected = |p: &serde_json::Value| -> Vec<String> {
        p["document"]["prefixes"].as_array().unwrap().iter().map(|x| x["cidr"].as_str().unwrap().to_string()).collect()
    };

    for (cmd, args) in [
        ("prefix_del", json!({"cidr": "198.18.100.0/24"})),
        ("prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "lab"})),
    ] {
        t.control("fault_xdp_sync", json!({"count": 1}));
        let message = c.err(cmd, args.clone(), "xdp");
        assert!(message.contains(&format!("rolled back, generation {generation} runs")), "{cmd}: {message}");
        let now = c.ok("policy_get", json!({}));
        assert_eq!(now["generation"].as_u64(), Some(generation), "{cmd}: the running generation stays");
        assert_eq!(protected(&now), protected(&before), "{cmd}: the document stays");
        let status = t.control("status", json!({}));
        assert_eq!(status["policy_generation"].as_u64(), Some(generation), "{cmd}: the published snapshot: {status}");
        // Origin's prefix is in the maps again: its traffic is scrubbed, by the workers.
        let scrubbed = t.stats().rx;
        assert!(origin_packets(&t, Duration::from_millis(400)) > 0, "{cmd}: traffic reaches origin");
        assert!(t.stats().rx >= scrubbed + 100, "{cmd}: origin's traffic goes through the workers");
    }

    // Without the fault, the same change goes through as the next generation.
    let g = c.ok("prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "lab"}))["generation"].as_u64();
    assert_eq!(g, Some(generation + 1));
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("policy change failed"), "the refusal is logged: {log}");
}

/// When a change and its rollback both fail, the XDP maps are left unknown and the next publish
/// rewrites them whole. Here that next publish is a runtime entry's expiry, and it is refused
/// once too: the entry stays in the policy state and expires again a second later, so that what
/// runs never keeps an entry the state has dropped.
#[test]
fn an_expiry_the_xdp_maps_refuse_is_published_a_second_later() {
    require_root!();
    let (_config, t) = fault_lab(&[], |o| o);
    let mut c = Conn::open(&t.state().daemon.control_socket);
    let in_effect = |c: &mut Conn| c.ok("deny_list", json!({}))["prefixes_in_effect"].as_u64().unwrap();
    let base = in_effect(&mut c);
    c.ok("deny_add", json!({"cidr": "198.18.77.0/24", "ttl_s": 2}));
    assert_eq!(in_effect(&mut c), base + 1);

    t.control("fault_xdp_sync", json!({"count": 2}));
    let message = c.err("prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "lab"}), "xdp");
    assert!(message.contains("they are rewritten at the next change"), "{message}");
    t.control("fault_xdp_sync", json!({"count": 1}));
    let took = wait_until("the entry leaves the running policy", Duration::from_secs(8), || in_effect(&mut c) == base);
    eprintln!("expired from the running policy after {took:?}");
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    let refused = log.find("publishing after expiry").expect("the refused expiry is logged");
    let expired = log.rfind("runtime list entries expired").expect("the expiry is logged");
    assert!(refused < expired, "refused first, then published: {log}");
    // The maps were rewritten whole: origin's traffic goes through the workers.
    let scrubbed = t.stats().rx;
    assert!(origin_packets(&t, Duration::from_millis(400)) > 0, "traffic reaches origin");
    assert!(t.stats().rx >= scrubbed + 100, "origin's traffic goes through the workers");
}
