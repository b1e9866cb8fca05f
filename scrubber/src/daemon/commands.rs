//! Policy commands of the control socket: `control::commands` validates and applies them to the
//! running `PolicyState`; here the new snapshot is published (XDP maps, then workers) and the
//! change logged with the peer's uid.

use super::{Daemon, now};
use control::commands::{CmdError, Context, Outcome};
use serde_json::{Value, json};
use tracing::{info, warn};

/// Runs a policy command; `None` when `cmd` is not one of them.
pub fn run(d: &Daemon, cmd: &str, args: &Value, uid: Option<u32>) -> Option<Result<Value, CmdError>> {
    if cmd == "syn_status" {
        return Some(syn_status(d));
    }
    // The policy lock is held until the snapshot is published, so snapshots go out in order.
    let mut state = match d.policy.lock() {
        Ok(s) => s,
        Err(_) => return Some(Err(("internal", "policy lock poisoned".to_string()))),
    };
    let clock = now();
    let mut random_key = || {
        let seed = super::system::random_seed().map_err(|e| e.0)?;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed[0].to_le_bytes());
        key[8..].copy_from_slice(&seed[1].to_le_bytes());
        Ok(key)
    };
    let mut ctx = Context {
        mono_ns: clock.mono_ns,
        wall_secs: clock.wall_secs,
        uid,
        dataplane: &d.config.dataplane,
        random_key: &mut random_key,
    };
    // A change the XDP maps refuse is rolled back whole (`Daemon::publish_change`): the policy
    // state as it was goes back with it. Commands that only read need no copy.
    let saved = (!control::commands::READ_ONLY.contains(&cmd)).then(|| state.clone());
    let outcome = control::commands::apply(&mut state, cmd, args, &mut ctx)?;
    if let Err((code, message)) = &outcome
        && *code == "rejected"
    {
        warn!(peer_uid = uid, command = cmd, error = %message, "policy change rejected; the running policy stays");
    }
    Some(outcome.and_then(|o| match o {
        Outcome::Changed { policy, what, detail } => {
            let generation = d.publish_change(&mut state, saved, *policy).map_err(|e| {
                warn!(peer_uid = uid, command = cmd, error = %e, "policy change failed");
                ("xdp", e)
            })?;
            info!(peer_uid = uid, generation, change = what, detail, "policy changed");
            Ok(json!({"generation": generation}))
        }
        Outcome::Answer(mut v) => {
            if cmd == "policy_save" {
                info!(peer_uid = uid, path = %v["path"], "policy saved");
            }
            if cmd == "deny_list" || cmd == "allow_list" {
                let p = d.cell.load();
                v["prefixes_in_effect"] = json!(if cmd == "deny_list" { p.deny_count() } else { p.allow_count() });
            }
            Ok(v)
        }
    }))
}

/// SYN authentication per protected prefix: method, when, and for `auto` the measured rate and
/// switch counts; the verified-source table's occupancy.
fn syn_status(d: &Daemon) -> Result<Value, CmdError> {
    let policy = d.cell.load();
    let now_s = now().mono_ns / 1_000_000_000;
    let prefixes: Vec<Value> = policy
        .prefixes
        .iter()
        .map(|p| {
            let profile = &policy.profiles[usize::from(p.profile)];
            let s = &profile.syn;
            let auto = match s.when {
                dataplane::syn::When::Always => Value::Null,
                dataplane::syn::When::Auto(_) => match d.shared.syn.auto.status(p.cidr) {
                    Some(st) => json!({"active": st.active, "syn_pps": st.syn_pps, "switched_on": st.switched_on, "switched_off": st.switched_off}),
                    None => json!({"active": false, "syn_pps": 0}),
                },
            };
            json!({"prefix": p.cidr.to_string(), "profile": profile.name, "method": format!("{:?}", s.method),
                   "when": match s.when { dataplane::syn::When::Always => "always", dataplane::syn::When::Auto(_) => "auto" },
                   "strict": s.strict, "auto": auto, "challenge": format!("{:?}", s.challenge),
                   "verified_syn_pps": s.verified_syn_limit.map(|r| r.pps)})
        })
        .collect();
    let v = d.shared.syn.verified.stats(now_s);
    Ok(json!({
        "prefixes": prefixes,
        "verified": {"len": v.len, "capacity": v.capacity, "evictions": v.evictions},
        "secret": {"random": policy.syn.secrets.is_random(), "rotated_at": policy.syn.secrets.rotated_at(),
                   "previous_valid": policy.syn.secrets.previous().is_some()},
    }))
}
