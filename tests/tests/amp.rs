//! UDP amplification and reflection floods in the namespace lab, with the real daemon running
//! two workers (root; run with `--test-threads=1`; one lab per test, removed however it ends).
//!
//! The flood is the generator's `udp-amp` profile: reflection responses of every catalogue
//! vector (large DNS and SNMP answers fragmented at 1500 bytes), spoofed from 198.18.1.201-253 (`traffic::ATTACK_SOURCES`) —
//! the /24 the legitimate clients and the lab's DNS resolver (198.18.1.53) live in. What the lab
//! profile does with each vector is read from the daemon's compiled config
//! (`scrubber::lab::amp::AmpPlan`); origin counts the dropped vectors' packets in its netdev
//! ingress hook, before reassembly, by source port and, where a port also carries vectors that
//! pass, by the samples' exact UDP lengths (`DropMatchers`), and tcpdump at origin watches for
//! the same. The control run turns the countermeasure off (`[profiles.lab.amp] enabled =
//! false`) and the same counters and capture see the flood.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tests::control::scrubctl_bin;
use tests::lab::amp::{self, AmpCounts, AmpPlan, DigReport, DropMatchers};
use tests::topo::ORIGIN_V4;
use tests::{Cmd, GenReport, GenSpec, LabOptions, ProbeReport, Role, TempConfig, TestLab, require_root, scrubber_bin};

/// The lab's fixed offered rate (that of `scrubber lab bench`), packets per second.
const FIXED_RATE: u64 = 200_000;
/// Legitimate UDP sequence requests per second during a flood.
const PROBE_RATE: u64 = 500;
/// Drop reasons of this countermeasure; an attack drop under any other reason fails a test.
const AMP_REASONS: [&str; 6] = [
    "amp_reflection",
    "amp_fragment",
    "amp_rate_limit",
    "amp_fragment_policy",
    "amp_fragment_rate_limit",
    "amp_unsolicited",
];

/// `scrubctl stats --json` after the workers have published their latest counters.
fn scrubctl_stats(t: &TestLab) -> Value {
    std::thread::sleep(tests::PUBLISH_SETTLE);
    let sock = t.state().daemon.control_socket.display().to_string();
    let out = Cmd::new(scrubctl_bin().display().to_string())
        .args(&["--socket", &sock, "--json", "stats"])
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap_or_else(|e| panic!("scrubctl stats: {e}"));
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("scrubctl output: {e}"));
    assert!(v["amp"].is_object(), "scrubctl stats --json has the per-vector `amp` object: {v}");
    v
}

fn drops(stats: &Value) -> BTreeMap<String, u64> {
    stats["totals"]["dropped"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

fn drops_since(a: &Value, b: &Value) -> BTreeMap<String, u64> {
    let before = drops(b);
    drops(a)
        .into_iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(&k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// How much event `name` grew during flood `f`.
fn event_since(f: &Flood, name: &str) -> u64 {
    let n = |v: &Value| v["totals"]["events"][name].as_u64().unwrap_or(0);
    n(&f.after).saturating_sub(n(&f.before))
}

/// Each worker's socket statistics that grew between two `stats` results.
fn ring_growth(after: &Value, before: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for w in after["workers"].as_array().into_iter().flatten() {
        let b = before["workers"].as_array().into_iter().flatten().find(|b| b["queue"] == w["queue"]);
        for (k, v) in w["ring"].as_object().into_iter().flatten() {
            let d = v.as_u64().unwrap_or(0).saturating_sub(b.and_then(|b| b["ring"][k].as_u64()).unwrap_or(0));
            if d > 0 && k != "tx_ring_empty" {
                out.push(format!("q{} {k} {d}", w["queue"]));
            }
        }
    }
    out
}

fn socket_drops(stats: &Value) -> u64 {
    stats["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| ["rx_dropped", "rx_ring_full"].iter().map(|k| w["ring"][k].as_u64().unwrap_or(0)).sum::<u64>())
        .sum()
}

/// The lab with two queues and two workers, origin's services, the daemon (`config`, default
/// the lab config), the resolver, and origin's flood counters for `flood` (`None`: the mix).
fn amp_lab(config: Option<&TempConfig>, flood: Option<&str>) -> (TestLab, AmpPlan, DropMatchers) {
    let mut t = TestLab::with_daemon(|o| LabOptions { queues: 2, config: config.map(|c| c.0.clone()), ..o });
    let st = t.control("status", json!({}));
    let queues: Vec<u64> = st["workers"].as_array().unwrap().iter().map(|w| w["queue"].as_u64().unwrap()).collect();
    assert_eq!(queues, [0, 1], "a worker per queue of in0: {st}");
    t.start_resolver().unwrap_or_else(|e| panic!("resolver: {e}"));
    let plan = AmpPlan::load(&t.state().daemon.config, ORIGIN_V4.into()).unwrap_or_else(|e| panic!("{e}"));
    let samples = amp::flood_samples(flood).unwrap();
    // The matchers of the protected profile: the control run counts what it would have dropped.
    let protected = AmpPlan { enforced: true, ..plan.clone() };
    let m = DropMatchers::new(&protected, &samples).unwrap_or_else(|e| panic!("{e}"));
    t.load_amp_counters(&m).unwrap_or_else(|e| panic!("origin counters: {e}"));
    // Neighbours learned and the path warm before anything is measured.
    let d = t.dig_from_origin(1);
    assert_eq!(d.ok, 1, "dig from origin before the flood: {d:?}");
    (t, plan, m)
}

/// tcpdump at origin's o0 for `secs` seconds (or until 100 packets) matching `filter`; joins to
/// the captured lines. Give it half a second to start.
fn capture(t: &TestLab, filter: &str, secs: u64) -> JoinHandle<Vec<String>> {
    let mut argv: Vec<String> =
        ["timeout", "-s", "INT", &secs.to_string(), "tcpdump", "-n", "-l", "-c", "100", "-i", "o0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    argv.extend(filter.split_whitespace().map(String::from));
    let c = Cmd::from_argv(&argv).netns(t.ns(Role::Origin)).ok_codes(&[0, 124]).timeout(Duration::from_secs(secs + 10));
    std::thread::spawn(move || {
        let out = c.run().unwrap_or_else(|e| panic!("tcpdump: {e}"));
        out.stdout.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
    })
}

/// Numbered UDP requests from every client source at [`PROBE_RATE`] for `secs`, on a thread.
fn probe(t: &TestLab, secs: f64) -> JoinHandle<ProbeReport> {
    let count = (PROBE_RATE as f64 * secs) as u64;
    let target = std::net::SocketAddr::new(ORIGIN_V4.into(), tests::topo::UDP_ECHO_PORT).to_string();
    let bin = scrubber_bin().display().to_string();
    let c = Cmd::new(bin)
        .args(&["lab", "udp-probe", "--target", &target, "--sources", "198.18.1.1-198.18.1.200"])
        .args(&["--count", &count.to_string(), "--rate", &PROBE_RATE.to_string(), "--wait-ms", "1500"])
        .netns(t.ns(Role::Client))
        .timeout(Duration::from_secs_f64(secs + 20.0));
    std::thread::spawn(move || {
        let out = c.run().unwrap_or_else(|e| panic!("udp-probe: {e}"));
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("udp-probe output {:?}: {e}", out.stdout))
    })
}

/// dig from origin to the lab's resolver every 200 ms until `stop` is set, on a thread.
fn dig_loop(t: &TestLab, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> JoinHandle<DigReport> {
    let ns = t.ns(Role::Origin);
    std::thread::spawn(move || {
        let mut r = DigReport::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            amp::dig_once(&ns, r.attempts, &mut r);
            std::thread::sleep(Duration::from_millis(200));
        }
        r
    })
}

/// Everything one flood changed.
struct Flood {
    sent: GenReport,
    probe: ProbeReport,
    dig: DigReport,
    captured: Vec<String>,
    /// `scrubctl stats --json` before and after.
    before: Value,
    after: Value,
    /// Per-vector outcomes from `stats` and from the metrics endpoint.
    vectors: AmpCounts,
    metrics: AmpCounts,
    /// Origin's flood counters.
    origin: tests::Counters,
    workers: BTreeMap<(String, u64), u64>,
}

/// `spec` from the attacker while the probe, dig and a capture at origin run.
fn flood(t: &TestLab, m: &DropMatchers, spec: &GenSpec) -> Flood {
    let (before, metrics0, origin0) =
        (scrubctl_stats(t), AmpCounts::from_metrics(&t.metrics().unwrap()), t.amp_counters().unwrap());
    let cap = capture(t, &m.capture_filter(), spec.seconds.ceil() as u64 + 3);
    std::thread::sleep(Duration::from_millis(700));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let digs = dig_loop(t, stop.clone());
    let probe = probe(t, spec.seconds);
    let started = Instant::now();
    let sent = t.generate(spec);
    let probe = probe.join().expect("probe thread");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let dig = digs.join().expect("dig thread");
    let captured = cap.join().expect("capture thread");
    let after = scrubctl_stats(t);
    let f = Flood {
        vectors: AmpCounts::from_stats(&after).since(&AmpCounts::from_stats(&before)),
        metrics: AmpCounts::from_metrics(&t.metrics().unwrap()).since(&metrics0),
        origin: t.amp_counters().unwrap().since(&origin0),
        workers: amp::worker_rx_since(&amp::worker_rx(&after), &amp::worker_rx(&before)),
        sent,
        probe,
        dig,
        captured,
        before,
        after,
    };
    eprintln!(
        "flood {:?} at {} pps ({:.0} sent/s, {} sent) in {:?}: workers {:?}; drops {:?}; sockets {:?}; origin {:?}; \
         captured {}; probe {}/{} rtt {:?}; dig {}/{}",
        spec.profiles,
        spec.rate,
        f.sent.pps,
        f.sent.sent,
        started.elapsed(),
        f.workers,
        drops_since(&f.after, &f.before),
        ring_growth(&f.after, &f.before),
        f.origin,
        f.captured.len(),
        f.probe.answered,
        f.probe.sent,
        f.probe.rtt_us,
        f.dig.ok,
        f.dig.attempts
    );
    f
}

/// Both workers took a real share of the traffic.
fn assert_both_workers(what: &str, f: &Flood) {
    let total: u64 = f.workers.values().sum();
    assert_eq!(f.workers.len(), 2, "{what}: {:?}", f.workers);
    for (w, rx) in &f.workers {
        assert!(*rx * 5 >= total, "{what}: worker {w:?} received {rx} of {total}: {:?}", f.workers);
    }
}

/// Whether losing `lost` of `n` exchanges is no worse than a socket overflow of `share` of all
/// frames explains: overflow comes in bursts (a worker held off its core), so up to three times
/// the share, plus `slack` exchanges.
fn overflow_explains(lost: u64, n: u64, share: f64, slack: u64) -> bool {
    lost as f64 <= 3.0 * share * n as f64 + slack as f64
}

/// At least 99.9 % of the legitimate UDP exchanges (by sequence number) and every dig from
/// origin succeeded. Only where the workers' sockets overflowed — the kernel dropped frames
/// before any check: on this shared 2-core VM other load (builds pinned nowhere, other labs'
/// workers pinned to the same core) can hold a worker off its core for tens of milliseconds —
/// may the legitimate loss reach what that counted overflow explains (it hits attack and
/// legitimate frames alike, in bursts), and one dig fail; the callers check separately that the
/// scrubber itself dropped nothing but the flood.
fn assert_legit_served(what: &str, f: &Flood) {
    let p = &f.probe;
    assert!(p.sent >= PROBE_RATE, "{what}: probe sent {}", p.sent);
    assert!(f.dig.attempts >= 1, "{what}: dig ran {:?}", f.dig);
    let overflow = socket_drops(&f.after) - socket_drops(&f.before);
    let lost = p.sent - p.answered;
    if overflow > 0 {
        let redirected = |s: &Value| s["xdp"]["in0"]["redirected"].as_u64().unwrap_or(0);
        let share = overflow as f64 / (redirected(&f.after) - redirected(&f.before)).max(1) as f64;
        eprintln!(
            "{what}: the workers' sockets dropped {overflow} frames ({:.3} %): {lost} of {} legitimate requests lost",
            share * 100.0,
            p.sent
        );
        assert!(overflow_explains(lost, p.sent, share, 3), "{what}: {lost} lost beyond the overflow: {p:?}");
        let dig_lost = f.dig.attempts - f.dig.ok;
        assert!(overflow_explains(dig_lost, f.dig.attempts, share, 1), "{what}: dig from origin: {:?}", f.dig);
        return;
    }
    assert!(lost * 1000 <= p.sent, "{what}: {} of {} sequence numbers answered: {:?}", p.answered, p.sent, p);
    assert_eq!(f.dig.ok, f.dig.attempts, "{what}: dig from origin to the resolver: {:?}", f.dig);
}

/// The mix at the lab's fixed rate, then as fast as the generator can, then over IPv6 (fragment
/// headers) at a quarter of the fixed rate: no packet of a dropped
/// vector reaches origin (counters and capture), later fragments of dropped datagrams are
/// dropped as `amp_fragment`, every drop is under the countermeasure's own reasons, the
/// per-vector counters move in `stats` and on the metrics endpoint alike, both workers take
/// their share, and the legitimate UDP service and DNS from origin keep working.
#[test]
fn reflection_mix_is_dropped_by_vector_at_fixed_and_max_rate() {
    require_root!();
    let (t, plan, m) = amp_lab(None, None);
    assert!(plan.enforced && plan.resolver, "{plan:?}");
    assert!(m.all_fragmented_dropped(), "{m:?}");
    eprintln!("dropped vectors {:?}; origin matchers {:?} {:?}", m.dropped_vectors, m.ports, m.lengths);
    let v4 = GenSpec::attack(&["udp-amp"]);
    // The same mix over IPv6 (fragment headers), more briefly: origin counts it in the same table.
    let v6 = GenSpec { rate: FIXED_RATE / 4, seconds: 2.0, ..GenSpec::attack_v6(&["udp-amp"]) };
    for (what, spec) in [
        ("fixed rate", GenSpec { rate: FIXED_RATE, seconds: 4.0, ..v4.clone() }),
        ("max rate", GenSpec { rate: 0, seconds: 3.0, ..v4 }),
        ("ipv6", v6),
    ] {
        let f = flood(&t, &m, &spec);
        let floor = if spec.rate == 0 { FIXED_RATE } else { spec.rate };
        assert!(
            f.sent.sent >= (floor as f64 * spec.seconds * 0.5) as u64,
            "{what}: the generator sent {}",
            f.sent.sent
        );
        // Nothing of a dropped vector reached origin; what did reach it is of the vectors that pass.
        assert_eq!(f.origin.packets("drop_vectors"), 0, "{what}: origin {:?}", f.origin);
        let later = f.origin.packets("later_fragments");
        assert!(
            f.captured.len() as u64 <= later,
            "{what}: tcpdump at origin saw {:?}",
            &f.captured[..f.captured.len().min(5)]
        );
        let passed: u64 = m.watched.iter().map(|p| f.origin.packets(&DropMatchers::port_counter(*p))).sum();
        assert!(passed > 0, "{what}: the allowed and budgeted vectors reach origin: {:?}", f.origin);
        assert_eq!(f.origin.packets("attack"), passed + later, "{what}: origin {:?}", f.origin);
        // Every drop is this countermeasure's: no deny list, bogon filter or rule took part.
        let d = drops_since(&f.after, &f.before);
        // A later fragment whose first fragment never reached the scrubber (lost on the lab's
        // kernel path, where no socket counter sees it: seen in CI) is unseen, and the lab
        // profile admits unseen fragments (`fragments = "allow"`). Only those may reach origin:
        // each is counted as such, and there are no more of them than flood frames lost on the
        // way (sent, less dropped by the scrubber, less arrived at origin). With no loss, none.
        let unseen = event_since(&f, "amp_fragment_unseen_admit");
        let lost = f.sent.sent.saturating_sub(d.values().sum::<u64>() + f.origin.packets("attack"));
        assert!(
            later <= unseen && unseen <= lost,
            "{what}: {later} later fragments at origin, {unseen} admitted unseen, {lost} flood frames lost on the \
             way; fragment table {} (before {})",
            f.after["totals"]["tables"]["amp_fragments"],
            f.before["totals"]["tables"]["amp_fragments"]
        );
        assert!(d.keys().all(|r| AMP_REASONS.contains(&r.as_str())), "{what}: drops {d:?}");
        let get = |r: &str| d.get(r).copied().unwrap_or(0);
        assert_eq!(get("amp_reflection"), f.vectors.outcome("dropped"), "{what}: {:?}", f.vectors);
        assert_eq!(get("amp_rate_limit"), f.vectors.outcome("over_budget"), "{what}: {:?}", f.vectors);
        // Every drop was a flood frame matched to its vector: nothing legitimate was dropped here.
        let dropped_total: u64 = d.values().sum();
        let by_vector =
            ["dropped", "over_budget", "fragment_dropped"].iter().map(|o| f.vectors.outcome(o)).sum::<u64>();
        assert_eq!(dropped_total, by_vector, "{what}: drops {d:?} vs vectors {:?}", f.vectors);
        for v in &m.dropped_vectors {
            assert!(f.vectors.get(v, "dropped") > 0, "{what}: {v} dropped: {:?}", f.vectors);
        }
        // Fragments: each dropped DNS ANY answer (three fragments) takes its two later fragments
        // with it, each oversize answer (two) its one; all counted as amp_fragment.
        assert!(get("amp_fragment") > 0, "{what}: {d:?}");
        assert_eq!(get("amp_fragment"), f.vectors.outcome("fragment_dropped"), "{what}: {:?}", f.vectors);
        // The generator may stop inside a datagram, so its last one can miss later fragments;
        // and a few frames can go missing on the way without a socket drop to show it (seen
        // once in CI: 6 of 157 476 later fragments short). The slack, one datagram in 5 000,
        // still fails a fragment table that loses its entries.
        if socket_drops(&f.after) == socket_drops(&f.before) {
            let (any, large) = (f.vectors.get("dns-any", "dropped"), f.vectors.get("dns-large", "dropped"));
            let any_later = f.vectors.get("dns-any", "fragment_dropped");
            let large_later = f.vectors.get("dns-large", "fragment_dropped");
            let short = |datagrams: u64, per: u64| per * (1 + datagrams / 5_000);
            assert!(
                (2 * any - short(any, 2)..=2 * any).contains(&any_later),
                "{what}: dns-any {any} dropped, {any_later} later"
            );
            assert!(
                (large - short(large, 1)..=large).contains(&large_later),
                "{what}: dns-large {large}, {large_later} later"
            );
        }
        // The allowed vector (DNS answers, for a resolver) passed and was counted as such.
        assert!(f.vectors.get("dns", "allowed") > 0, "{what}: {:?}", f.vectors);
        // Per-vector counters move alike in stats and on the metrics endpoint.
        assert_eq!(f.metrics, f.vectors, "{what}: metrics vs stats");
        assert_both_workers(what, &f);
        assert_legit_served(what, &f);
    }
}

/// STUN binding responses at ten times their budget (1000 pps per destination) from many
/// sources, spread over two workers: what origin receives stays within ±5 % of one budget for
/// the destination (not one per worker), and both workers drop their share of the excess.
#[test]
fn rate_limited_vector_keeps_one_budget_across_two_workers() {
    require_root!();
    let (t, plan, m) = amp_lab(None, Some("stun"));
    let (pps, burst_ms) = plan.budget("stun").expect("stun is rate-limited in the lab profile");
    let seconds = 4.0;
    let spec = GenSpec { rate: 10 * pps, seconds, vector: Some("stun".into()), ..GenSpec::attack(&["udp-amp"]) };
    let f = flood(&t, &m, &spec);
    assert!(
        f.sent.sent as f64 >= 0.95 * 10.0 * pps as f64 * seconds,
        "the generator kept 10x the budget: {}",
        f.sent.sent
    );
    let allowed = pps as f64 * f.sent.seconds + pps as f64 * f64::from(burst_ms) / 1000.0;
    let at_origin = f.origin.packets(&DropMatchers::port_counter(3478));
    let admitted = f.vectors.get("stun", "admitted");
    eprintln!(
        "stun: budget {pps} pps over {:.3} s + {burst_ms} ms burst = {allowed:.0}; admitted {admitted}, at origin {at_origin}",
        f.sent.seconds
    );
    assert!((at_origin as f64 - allowed).abs() <= 0.05 * allowed, "{at_origin} at origin vs {allowed:.0} allowed");
    assert_eq!(at_origin, admitted, "origin got exactly what was admitted");
    assert_eq!(f.origin.packets("attack"), at_origin);
    if socket_drops(&f.after) == socket_drops(&f.before) {
        assert_eq!(admitted + f.vectors.get("stun", "over_budget"), f.sent.sent, "every STUN datagram was decided");
    }
    assert_both_workers("stun", &f);
    for w in f.after["workers"].as_array().unwrap() {
        let before = f.before["workers"].as_array().unwrap().iter().find(|b| b["queue"] == w["queue"]).unwrap();
        let n = |v: &Value| v["stats"]["dropped"]["amp_rate_limit"].as_u64().unwrap_or(0);
        assert!(n(w) - n(before) > 0, "worker {} dropped over-budget STUN too", w["queue"]);
    }
    assert_eq!(drops_since(&f.after, &f.before).keys().collect::<Vec<_>>(), ["amp_rate_limit"]);
    assert_legit_served("stun", &f);
}

/// The control run: with `[profiles.lab.amp] enabled = false` the same flood reaches origin —
/// dropped vectors, later fragments and all — the capture sees it, and the countermeasure's
/// counters stay still.
#[test]
fn without_the_countermeasure_the_flood_reaches_origin() {
    require_root!();
    let config = TempConfig::lab_with(&[("[profiles.lab.amp]\n", "[profiles.lab.amp]\nenabled = false\n")]);
    let (t, plan, m) = amp_lab(Some(&config), None);
    assert!(!plan.enforced, "{plan:?}");
    let spec = GenSpec { rate: FIXED_RATE / 4, seconds: 2.0, ..GenSpec::attack(&["udp-amp"]) };
    let f = flood(&t, &m, &spec);
    let d = drops_since(&f.after, &f.before);
    assert!(d.keys().all(|r| !AMP_REASONS.contains(&r.as_str())), "nothing dropped as amp: {d:?}");
    assert_eq!(f.vectors.total(), 0, "the countermeasure saw nothing: {:?}", f.vectors);
    let (dropped_vectors, later) = (f.origin.packets("drop_vectors"), f.origin.packets("later_fragments"));
    // What the workers got of the flood (less what their sockets dropped, counted) all reaches
    // origin; most of the mix is of vectors the lab profile drops when it acts.
    let received = f.sent.sent - (socket_drops(&f.after) - socket_drops(&f.before));
    assert!(f.origin.packets("attack") as f64 >= 0.99 * received as f64, "{:?} of {received}", f.origin);
    assert!(dropped_vectors as f64 >= 0.5 * received as f64, "origin {:?} of {received}", f.origin);
    assert!(later as f64 >= 0.1 * received as f64, "later fragments reach origin: {:?}", f.origin);
    assert_eq!(f.captured.len(), 100, "tcpdump at origin sees the flood: {:?}", &f.captured[..f.captured.len().min(3)]);
    assert_legit_served("control", &f);
}

/// `scrubber lab run --scenario udp-amp --json` (two workers by default) reports the amp
/// section: dropped vectors at origin, fragments, budgets, workers, dig and the metrics.
#[test]
fn lab_run_udp_amp_reports_vectors_budgets_and_dig() {
    require_root!();
    let r = tests::lab_run(&["--scenario", "udp-amp", "--seconds", "3", "--rate", "50000"], Duration::from_secs(120));
    let a = &r["amp"];
    let n = |p: &str| a.pointer(p).and_then(Value::as_u64).unwrap_or_else(|| panic!("{p} missing: {a}"));
    assert_eq!(n("/dropped_vectors_at_origin"), 0, "{a}");
    // As in the flood test: later fragments reach origin only when their first fragment was
    // lost before the scrubber (dropped on a link, lost without a counter, or at the sockets).
    let rc = &r["reconciliation"];
    let lost = rc["dropped_before_xdp_total"].as_u64().unwrap_or(0)
        + rc["gap"].as_i64().unwrap_or(0).max(0) as u64
        + rc["socket_dropped"].as_u64().unwrap_or(0);
    let (later, unseen) = (n("/later_fragments_at_origin"), n("/unseen_fragments_admitted"));
    assert!(later <= unseen && unseen <= lost, "{later} at origin, {unseen} unseen, {lost} lost: {a}; {rc}");
    assert!(n("/fragments_dropped") > 0, "{a}");
    // Keys "in0/0" and "in0/1" (`~1` is a `/` in a JSON pointer).
    assert!(n("/worker_rx/in0~10") > 0 && n("/worker_rx/in0~11") > 0, "two workers: {a}");
    assert!(n("/vectors/dns-any/dropped") > 0 && n("/metrics/dns-any/dropped") > 0, "{a}");
    assert_eq!(a["plan"]["resolver"], true);
    let budgets = a["budgets"].as_array().expect("budgets");
    assert!(budgets.iter().any(|b| b["vector"] == "stun"), "{a}");
    for b in budgets {
        let ratio = b["ratio"].as_f64().unwrap();
        assert!(ratio <= 1.05, "within budget: {b}");
        if b["saturated"] == true {
            assert!(ratio >= 0.95, "a vector over its budget gets the whole budget: {b}");
        }
    }
    // As in assert_legit_served: 99.9 % of the UDP exchanges and every dig, unless the workers'
    // sockets overflowed (counted), and then no worse than that overflow explains.
    let overflow = rc["socket_dropped"].as_u64().unwrap_or(0);
    let share = overflow as f64 / rc["xdp_redirected"].as_f64().unwrap_or(1.0).max(1.0);
    let (sent, answered) = (r.pointer("/legit/udp/sent"), r.pointer("/legit/udp/answered"));
    let (sent, answered) = (sent.and_then(Value::as_u64).unwrap_or(0), answered.and_then(Value::as_u64).unwrap_or(0));
    let (digs, digs_ok) = (n("/dig/attempts"), n("/dig/ok"));
    assert!(sent >= 500 && digs >= 1, "{}; dig {}", r["legit"]["udp"], a["dig"]);
    if overflow == 0 {
        assert!((sent - answered) * 1000 <= sent, "legitimate UDP: {}", r["legit"]["udp"]);
        assert_eq!(digs_ok, digs, "dig {}", a["dig"]);
    } else {
        eprintln!("the workers' sockets dropped {overflow} frames ({:.3} %)", share * 100.0);
        assert!(overflow_explains(sent - answered, sent, share, 3), "{overflow} socket drops: {}", r["legit"]["udp"]);
        assert!(overflow_explains(digs - digs_ok, digs, share, 1), "{overflow} socket drops: dig {}", a["dig"]);
    }
}
