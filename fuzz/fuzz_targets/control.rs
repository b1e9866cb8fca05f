//! Control protocol fuzz target: lines of arbitrary bytes parsed as requests and applied to a
//! running policy state, as the daemon does for each line a client sends.
//! Invariants: never panics; a refused command leaves the generation unchanged; a change
//! advances it by exactly one.
#![no_main]

use control::SystemFacts;
use control::commands::{Context, Outcome, apply};
use control::config::{Config, DataplaneConfig};
use control::runtime::PolicyState;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let doc = Config::from_toml("[[prefixes]]\ncidr = \"198.18.100.0/24\"\n", Path::new("f.toml")).unwrap();
    let mut state = PolicyState::new(Path::new("/nonexistent/f.toml"), doc, SystemFacts::default(), 1);
    if let Ok(first) = state.compile(1) {
        state.facts.syn_previous = Some(first.syn.clone());
    }
    let dp = DataplaneConfig::default();
    for line in data.split(|&b| b == b'\n').take(16) {
        let Ok(req) = serde_json::from_slice::<Value>(line) else { continue };
        let Some(cmd) = req.get("cmd").and_then(Value::as_str) else { continue };
        if cmd == "policy_save" {
            continue; // writes files
        }
        let before = state.generation;
        let mut key = || Ok([5u8; 16]);
        let mut ctx = Context { mono_ns: 1_000, wall_secs: 1, uid: Some(0), dataplane: &dp, random_key: &mut key };
        match apply(&mut state, cmd, &req, &mut ctx) {
            Some(Ok(Outcome::Changed { policy, .. })) => assert_eq!(policy.generation, before + 1),
            Some(Err(_)) | Some(Ok(Outcome::Answer(_))) | None => assert_eq!(state.generation, before),
        }
    }
});
