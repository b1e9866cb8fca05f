//! `scrubber lab bench --throughput` over several queues (root; run with `--test-threads=1`).
//!
//! A benchmark's figures are not asserted here (they belong to BENCHMARKS.md); what is asserted
//! is that the search measures what it says: with two queues each worker receives its
//! generator's share, what the generators sent is accounted for by what the workers forwarded
//! plus the loss, and the lab is gone afterwards.

use serde_json::Value;
use std::time::Duration;
use tests::{Cmd, assert_no_leftovers, require_root, scrubber_bin};

#[test]
fn throughput_search_spreads_over_two_queues() {
    require_root!();
    let id = tests::unique_id();
    let bin = scrubber_bin().display().to_string();
    let out = Cmd::new(bin)
        .args(&["lab", "bench", "--throughput", "--id", &id, "--queues", "2", "--sizes", "64"])
        .args(&["--trial-seconds", "0.5", "--resolution", "0.3", "--json"])
        .timeout(Duration::from_secs(120))
        .run()
        .expect("lab bench --throughput --queues 2");
    let r: Value = serde_json::from_str(&out.stdout).expect("a JSON report");
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
        let rx: Vec<u64> = t["worker_rx"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(rx.len(), 2, "a worker per queue: {t}");
        let total: u64 = rx.iter().sum();
        assert!(sent > 0 && forwarded <= sent && total <= sent, "{t}");
        // Each generator sends half the rate on its own queue: each worker gets about half.
        for &n in &rx {
            assert!(n * 10 >= total * 3, "each queue's worker receives its generator's share: {t}");
        }
        let loss = t["loss"].as_f64().unwrap();
        let expected = sent.saturating_sub(forwarded) as f64 / sent as f64;
        assert!((loss - expected).abs() < 1e-9, "loss is what was sent and not forwarded: {t}");
    }
    assert_no_leftovers(&id);
}
