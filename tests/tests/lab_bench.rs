//! `scrubber lab bench --throughput` over several queues (root; run with `--test-threads=1`).
//!
//! A benchmark's figures are not asserted here (they belong to BENCHMARKS.md); what is asserted
//! is that the search measures what it says: with two queues each worker receives its
//! generator's share, what the generators sent is accounted for by what the workers forwarded
//! (clean UDP) or decided (a flood) plus the loss, and the lab is gone afterwards.

use serde_json::Value;
use std::time::Duration;
use tests::{Cmd, assert_no_leftovers, require_root, scrubber_bin};

/// `scrubber lab bench --throughput --queues 2` with `extra` arguments; its JSON report.
fn search(id: &str, extra: &[&str]) -> Value {
    let bin = scrubber_bin().display().to_string();
    let out = Cmd::new(bin)
        .args(&["lab", "bench", "--throughput", "--id", id, "--queues", "2"])
        .args(&["--trial-seconds", "0.5", "--resolution", "0.3", "--json"])
        .args(extra)
        .timeout(Duration::from_secs(120))
        .run()
        .expect("lab bench --throughput --queues 2");
    serde_json::from_str(&out.stdout).expect("a JSON report")
}

/// The frames each worker received in trial `t`: each got some, and about half of them when
/// the trial set a rate.
fn worker_shares(t: &Value) -> Vec<u64> {
    let rx: Vec<u64> = t["worker_rx"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(rx.len(), 2, "a worker per queue: {t}");
    assert!(rx.iter().all(|&n| n > 0), "every queue's worker receives: {t}");
    // At a set rate each generator is paced to half of it on its own queue, so each worker gets
    // about half; at rate 0 each sends as fast as its core lets it, which need not be even.
    if t["rate"].as_u64().unwrap() > 0 {
        let total: u64 = rx.iter().sum();
        for &n in &rx {
            assert!(n * 10 >= total * 3, "each queue's worker receives its generator's share: {t}");
        }
    }
    rx
}

#[test]
fn throughput_search_spreads_over_two_queues() {
    require_root!();
    let id = tests::unique_id();
    let r = search(&id, &["--sizes", "64"]);
    assert_eq!(r["queues"], 2, "{r}");
    assert_eq!(r["gen_cores"].as_array().map(Vec::len), Some(2), "{r}");
    let size = &r["sizes"][0];
    assert_eq!(size["size"], 64, "{r}");
    assert!(size["throughput_pps"].as_f64().unwrap_or(0.0) > 0.0, "some rate passed: {r}");
    let trials = size["trials"].as_array().expect("trials");
    assert!(!trials.is_empty(), "{r}");
    for t in trials {
        let sent = t["sent"].as_u64().unwrap();
        let forwarded = t["forwarded"].as_u64().unwrap();
        let total: u64 = worker_shares(t).iter().sum();
        assert!(sent > 0 && forwarded <= sent && total <= sent, "{t}");
        let loss = t["loss"].as_f64().unwrap();
        let expected = sent.saturating_sub(forwarded) as f64 / sent as f64;
        assert!((loss - expected).abs() < 1e-9, "loss is what was sent and not forwarded: {t}");
    }
    assert_no_leftovers(&id);
}

/// A SYN flood searched over two queues: nothing of it is forwarded, every frame a worker
/// received is challenged or dropped, and the loss is what was sent and not decided.
#[test]
fn flood_search_counts_what_the_workers_decided() {
    require_root!();
    let id = tests::unique_id();
    let r = search(&id, &["--profile", "syn-flood"]);
    assert_eq!(r["profile"], "syn-flood", "{r}");
    let size = &r["sizes"][0];
    assert_eq!(size["size"], 0, "one search in the flood's own frame sizes: {r}");
    assert!(size["throughput_pps"].as_f64().unwrap_or(0.0) > 0.0, "some rate passed: {r}");
    for t in size["trials"].as_array().expect("trials") {
        let n = |k: &str| t[k].as_u64().unwrap();
        let decided = n("decided");
        assert_eq!(decided, worker_shares(t).iter().sum::<u64>(), "{t}");
        assert!(n("sent") > 0 && decided <= n("sent"), "{t}");
        // A neighbour probe may go out on egress; no SYN of a spoofed source is forwarded.
        assert!(n("forwarded") <= 2, "the flood is not forwarded: {t}");
        assert!(n("replied") > 0 && n("dropped") > 0, "challenges sent, the rest over budget: {t}");
        let accounted = n("replied") + n("dropped") + n("forwarded");
        assert!(accounted * 100 >= decided * 99 && accounted <= decided + 2, "every frame decided: {t}");
        let expected = n("sent").saturating_sub(decided) as f64 / n("sent") as f64;
        assert!((t["loss"].as_f64().unwrap() - expected).abs() < 1e-9, "loss is what was not decided: {t}");
    }
    assert_no_leftovers(&id);
}
