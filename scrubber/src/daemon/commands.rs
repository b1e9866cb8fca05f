//! Policy-changing commands of the control socket. Each validates its arguments, applies the
//! change through `PolicyState` (compile first, commit only on success), publishes the snapshot
//! and logs who changed what.

use super::{Daemon, now};
use control::config::{Config, PrefixConfig, RuleConfig};
use control::runtime::List;
use dataplane::Cidr;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tracing::info;

/// An error answer: machine-readable code and a message.
pub type CmdError = (&'static str, String);

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, CmdError> {
    args.get(key).and_then(Value::as_str).ok_or(("bad_request", format!("missing string argument `{key}`")))
}

fn arg_cidr(args: &Value, key: &str) -> Result<Cidr, CmdError> {
    arg_str(args, key)?.parse::<Cidr>().map_err(|e| ("bad_request", format!("`{key}`: {e}")))
}

fn publish(
    d: &Daemon,
    result: Result<dataplane::policy::Policy, String>,
    what: &str,
    uid: Option<u32>,
) -> Result<Value, CmdError> {
    let policy = result.map_err(|e| ("rejected", e))?;
    let generation = d.publish(policy).map_err(|e| ("xdp", e))?;
    info!(peer_uid = ?uid, generation, change = what, "policy changed");
    Ok(json!({"generation": generation}))
}

/// Runs a policy command; `None` when `cmd` is not one of them.
pub fn run(d: &Daemon, cmd: &str, args: &Value, uid: Option<u32>) -> Option<Result<Value, CmdError>> {
    Some(match cmd {
        "policy_get" => policy_get(d),
        "policy_set" => policy_set(d, args, uid),
        "policy_save" => policy_save(d, args, uid),
        "reload" => {
            let result =
                d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string())).map(|mut s| s.reload());
            match result {
                Ok(r) => publish(d, r, "reload", uid),
                Err(e) => Err(e),
            }
        }
        "prefix_add" => with_state(d, uid, "prefix add", |s| {
            let cidr = arg_cidr(args, "cidr")?;
            let prefix = PrefixConfig {
                cidr: cidr.to_string(),
                profile: args.get("profile").and_then(Value::as_str).unwrap_or("default").to_string(),
                gre_endpoint: args.get("gre_endpoint").and_then(Value::as_str).map(str::to_string),
            };
            Ok(s.prefix_add(prefix))
        }),
        "prefix_del" => with_state(d, uid, "prefix del", |s| Ok(s.prefix_del(arg_cidr(args, "cidr")?))),
        "prefix_set_profile" => with_state(d, uid, "prefix set-profile", |s| {
            Ok(s.prefix_set_profile(arg_cidr(args, "cidr")?, arg_str(args, "profile")?))
        }),
        "deny_add" | "allow_add" => with_state(d, uid, cmd, |s| {
            let list = if cmd == "deny_add" { List::Deny } else { List::Allow };
            let ttl = args.get("ttl_s").and_then(Value::as_f64);
            if let Some(t) = ttl
                && !(t > 0.0 && t < 1e9)
            {
                return Err(("bad_request", "`ttl_s` must be a positive number of seconds".into()));
            }
            let expires = ttl.map(|t| now().mono_ns + (t * 1e9) as u64);
            Ok(s.list_add(list, arg_cidr(args, "cidr")?, expires, uid))
        }),
        "deny_del" | "allow_del" => with_state(d, uid, cmd, |s| {
            let list = if cmd == "deny_del" { List::Deny } else { List::Allow };
            Ok(s.list_del(list, arg_cidr(args, "cidr")?))
        }),
        "deny_list" | "allow_list" => list(d, if cmd == "deny_list" { List::Deny } else { List::Allow }, args),
        "rule_add" => with_state(d, uid, "rule add", |s| {
            let rule: RuleConfig = serde_json::from_value(args.get("rule").cloned().unwrap_or(Value::Null))
                .map_err(|e| ("bad_request", format!("`rule`: {e}")))?;
            let position = args.get("position").and_then(Value::as_u64).map(|p| p as usize);
            Ok(s.rule_add(rule, position))
        }),
        "rule_del" => with_state(d, uid, "rule del", |s| {
            let id =
                args.get("id").and_then(Value::as_u64).ok_or(("bad_request", "missing number `id`".to_string()))?;
            Ok(s.rule_del(id as u32))
        }),
        "rule_list" => rule_list(d),
        "syncookie_rotate" => with_state(d, uid, "syncookie rotate", |s| {
            let seed = super::system::random_seed().map_err(|e| ("internal", e.0))?;
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&seed[0].to_le_bytes());
            key[8..].copy_from_slice(&seed[1].to_le_bytes());
            Ok(s.rotate_syn_key(key, now().wall_secs))
        }),
        "syn_status" => syn_status(d),
        "bypass" => with_state(d, uid, "bypass", |s| {
            let on =
                args.get("on").and_then(Value::as_bool).ok_or(("bad_request", "missing boolean `on`".to_string()))?;
            Ok(s.set_bypass(on))
        }),
        _ => return None,
    })
}

fn with_state(
    d: &Daemon,
    uid: Option<u32>,
    what: &str,
    f: impl FnOnce(&mut control::runtime::PolicyState) -> Result<Result<dataplane::policy::Policy, String>, CmdError>,
) -> Result<Value, CmdError> {
    let mut state = d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string()))?;
    let result = f(&mut state)?;
    // Publish under the lock so snapshots are published in generation order.
    publish(d, result, what, uid)
}

fn policy_get(d: &Daemon) -> Result<Value, CmdError> {
    let s = d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string()))?;
    let overlay = |l: &Vec<(Cidr, control::runtime::ListEntry)>| {
        let n = now().mono_ns;
        l.iter()
            .map(|(c, e)| json!({"cidr": c.to_string(), "ttl_s": e.expires_ns.map(|t| t.saturating_sub(n) as f64 / 1e9), "added_by": e.added_by}))
            .collect::<Vec<_>>()
    };
    Ok(json!({
        "generation": s.generation,
        "document": serde_json::to_value(&s.document).unwrap_or(Value::Null),
        "toml": s.document.to_toml(),
        "runtime": {"deny": overlay(&s.overlay.deny), "allow": overlay(&s.overlay.allow), "bypass": s.overlay.bypass},
    }))
}

fn policy_set(d: &Daemon, args: &Value, uid: Option<u32>) -> Result<Value, CmdError> {
    let document: Config = if let Some(text) = args.get("toml").and_then(Value::as_str) {
        Config::from_toml(text, Path::new("<policy set>")).map_err(|e| ("rejected", e.to_string()))?
    } else if let Some(doc) = args.get("document") {
        serde_json::from_value(doc.clone()).map_err(|e| ("rejected", format!("document: {e}")))?
    } else {
        return Err(("bad_request", "give the new policy as `toml` (text) or `document` (object)".into()));
    };
    if document.dataplane != d.config.dataplane {
        return Err((
            "rejected",
            "the [dataplane] section (queues, rings, modes) needs a restart; it must not change".into(),
        ));
    }
    with_state(d, uid, "policy set", |s| Ok(s.set_document(document)))
}

fn policy_save(d: &Daemon, args: &Value, uid: Option<u32>) -> Result<Value, CmdError> {
    let s = d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string()))?;
    let path = args.get("path").and_then(Value::as_str).map(PathBuf::from).unwrap_or_else(|| s.file.clone());
    let text = format!("# written by `policy save` (generation {})\n{}", s.generation, s.document.to_toml());
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| ("io", format!("{}: {e}", path.display())))?;
    info!(peer_uid = ?uid, path = %path.display(), "policy saved");
    Ok(json!({"path": path.display().to_string(), "generation": s.generation}))
}

fn list(d: &Daemon, which: List, args: &Value) -> Result<Value, CmdError> {
    let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(1000) as usize;
    let s = d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string()))?;
    let (runtime, doc, files) = match which {
        List::Deny => (&s.overlay.deny, &s.document.policy.deny, &s.document.policy.deny_files),
        List::Allow => (&s.overlay.allow, &s.document.policy.allow, &s.document.policy.allow_files),
    };
    let n = now().mono_ns;
    let mut entries: Vec<Value> = doc.iter().map(|c| json!({"cidr": c, "source": "config"})).collect();
    entries.extend(runtime.iter().map(|(c, e)| {
        json!({"cidr": c.to_string(), "source": "runtime", "ttl_s": e.expires_ns.map(|t| t.saturating_sub(n) as f64 / 1e9), "added_by": e.added_by})
    }));
    let total = entries.len();
    entries.truncate(limit);
    let policy = d.cell.load();
    let in_effect = match which {
        List::Deny => policy.deny_count(),
        List::Allow => policy.allow_count(),
    };
    Ok(json!({"entries": entries, "listed": total, "files": files, "prefixes_in_effect": in_effect}))
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
                   "strict": s.strict, "auto": auto})
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

fn rule_list(d: &Daemon) -> Result<Value, CmdError> {
    let s = d.policy.lock().map_err(|_| ("internal", "policy lock poisoned".to_string()))?;
    let rules: Vec<Value> = s
        .document
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["id"] = json!(r.id.unwrap_or(i as u32 + 1));
            v
        })
        .collect();
    Ok(json!({"rules": rules}))
}
