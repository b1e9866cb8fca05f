//! The policy commands of the control protocol, applied to a `PolicyState`.
//!
//! Everything here is pure: arguments (a JSON object) are validated, the change goes through
//! `PolicyState` (compile first, commit only on success), and the caller gets either a new
//! snapshot to publish or a value to return. The daemon adds the transport, the publishing (XDP
//! maps, workers) and the log line; tests and the fuzz target drive this module directly.

use crate::config::{Config, DataplaneConfig, PrefixConfig, RuleConfig};
use crate::runtime::{List, ListEntry, PolicyState};
use dataplane::Cidr;
use dataplane::policy::Policy;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// An error answer: machine-readable code and a message.
pub type CmdError = (&'static str, String);

/// What a command did.
#[derive(Debug)]
pub enum Outcome {
    /// The policy changed: publish this snapshot.
    Changed {
        /// The new snapshot.
        policy: Box<Policy>,
        /// What changed, for the log.
        what: &'static str,
        /// The change's arguments, for the log (`198.18.9.0/24 ttl 30s`).
        detail: String,
    },
    /// A read-only answer (or a change that needs no new snapshot, like `policy_save`).
    Answer(Value),
}

/// What a command may need from the outside world.
pub struct Context<'a> {
    /// Monotonic time, ns (list entry expiry).
    pub mono_ns: u64,
    /// Wall-clock seconds (SYN key rotation time).
    pub wall_secs: u64,
    /// Peer uid (recorded with runtime list entries).
    pub uid: Option<u32>,
    /// The `[dataplane]` section the daemon runs with (it cannot change without a restart).
    pub dataplane: &'a DataplaneConfig,
    /// A fresh random 128-bit key (SYN key rotation).
    pub random_key: &'a mut dyn FnMut() -> Result<[u8; 16], String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("mono_ns", &self.mono_ns).field("uid", &self.uid).finish()
    }
}

fn bad(msg: impl Into<String>) -> CmdError {
    ("bad_request", msg.into())
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, CmdError> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| bad(format!("missing string argument `{key}`")))
}

fn arg_cidr(args: &Value, key: &str) -> Result<Cidr, CmdError> {
    arg_str(args, key)?.parse::<Cidr>().map_err(|e| bad(format!("`{key}`: {e}")))
}

fn changed(result: Result<Policy, String>, what: &'static str, detail: String) -> Result<Outcome, CmdError> {
    result.map(|policy| Outcome::Changed { policy: Box::new(policy), what, detail }).map_err(|e| ("rejected", e))
}

/// A one-line summary of a document for the log: what a whole-document change installs.
fn summary(c: &Config) -> String {
    format!(
        "{} prefixes, {} profiles, {} rules, {} deny and {} allow entries, {} list files",
        c.prefixes.len(),
        c.profiles.len(),
        c.rules.len(),
        c.policy.deny.len(),
        c.policy.allow.len(),
        c.policy.deny_files.len() + c.policy.allow_files.len()
    )
}

fn entries_json(l: &[(Cidr, ListEntry)], now_ns: u64) -> Vec<Value> {
    l.iter()
        .map(|(c, e)| {
            json!({"cidr": c.to_string(), "source": "runtime",
                   "ttl_s": e.expires_ns.map(|t| t.saturating_sub(now_ns) as f64 / 1e9), "added_by": e.added_by})
        })
        .collect()
}

/// The policy commands that change nothing (`apply` answers them with `Outcome::Answer` and
/// leaves the state as it was): a caller that must restore the state after a change that fails
/// later needs no copy of it for these.
pub const READ_ONLY: [&str; 5] = ["policy_get", "policy_save", "deny_list", "allow_list", "rule_list"];

/// Applies policy command `cmd`; `None` when `cmd` is not one of them.
pub fn apply(s: &mut PolicyState, cmd: &str, args: &Value, ctx: &mut Context<'_>) -> Option<Result<Outcome, CmdError>> {
    Some(match cmd {
        "policy_get" => Ok(Outcome::Answer(json!({
            "generation": s.generation,
            "document": serde_json::to_value(&s.document).unwrap_or(Value::Null),
            "toml": s.document.to_toml(),
            "runtime": {"deny": entries_json(&s.overlay.deny, ctx.mono_ns),
                        "allow": entries_json(&s.overlay.allow, ctx.mono_ns), "bypass": s.overlay.bypass},
        }))),
        "policy_set" => policy_set(s, args, ctx.dataplane),
        "policy_save" => policy_save(s, args, ctx.uid),
        "reload" => reload(s, ctx.dataplane),
        "prefix_add" => (|| {
            let cidr = arg_cidr(args, "cidr")?;
            let prefix = PrefixConfig {
                cidr: cidr.to_string(),
                profile: args.get("profile").and_then(Value::as_str).unwrap_or("default").to_string(),
                gre_endpoint: args.get("gre_endpoint").and_then(Value::as_str).map(str::to_string),
            };
            let detail = format!("{} profile {}", prefix.cidr, prefix.profile);
            changed(s.prefix_add(prefix), "prefix add", detail)
        })(),
        "prefix_del" => arg_cidr(args, "cidr").and_then(|c| changed(s.prefix_del(c), "prefix del", c.to_string())),
        "prefix_set_profile" => (|| {
            let (cidr, profile) = (arg_cidr(args, "cidr")?, arg_str(args, "profile")?);
            changed(s.prefix_set_profile(cidr, profile), "prefix set-profile", format!("{cidr} profile {profile}"))
        })(),
        "deny_add" | "allow_add" => (|| {
            let list = if cmd == "deny_add" { List::Deny } else { List::Allow };
            let ttl = match args.get("ttl_s") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_f64() {
                    Some(t) if t > 0.0 && t < 1e9 => Some(t),
                    _ => return Err(bad("`ttl_s` must be a positive number of seconds")),
                },
            };
            let expires = ttl.map(|t| ctx.mono_ns + (t * 1e9) as u64);
            let what = if list == List::Deny { "deny add" } else { "allow add" };
            let cidr = arg_cidr(args, "cidr")?;
            let detail = match ttl {
                Some(t) => format!("{cidr} ttl {t}s"),
                None => cidr.to_string(),
            };
            changed(s.list_add(list, cidr, expires, ctx.uid), what, detail)
        })(),
        "deny_del" | "allow_del" => (|| {
            let list = if cmd == "deny_del" { List::Deny } else { List::Allow };
            let what = if list == List::Deny { "deny del" } else { "allow del" };
            let cidr = arg_cidr(args, "cidr")?;
            changed(s.list_del(list, cidr), what, cidr.to_string())
        })(),
        "deny_list" | "allow_list" => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(1000) as usize;
            let (runtime, doc, files) = if cmd == "deny_list" {
                (&s.overlay.deny, &s.document.policy.deny, &s.document.policy.deny_files)
            } else {
                (&s.overlay.allow, &s.document.policy.allow, &s.document.policy.allow_files)
            };
            let mut entries: Vec<Value> = doc.iter().map(|c| json!({"cidr": c, "source": "config"})).collect();
            entries.extend(entries_json(runtime, ctx.mono_ns));
            let total = entries.len();
            entries.truncate(limit);
            Ok(Outcome::Answer(json!({"entries": entries, "listed": total, "files": files})))
        }
        "rule_add" => (|| {
            let rule: RuleConfig = serde_json::from_value(args.get("rule").cloned().unwrap_or(Value::Null))
                .map_err(|e| bad(format!("`rule`: {e}")))?;
            let position = args.get("position").and_then(Value::as_u64).map(|p| p as usize);
            let detail = serde_json::to_string(&rule).unwrap_or_default();
            let explicit = rule.id;
            let r = s.rule_add(rule, position);
            // The id the rule got: its own, or the next free one (the largest now).
            let id = explicit.or_else(|| s.document.rules.iter().filter_map(|r| r.id).max()).unwrap_or(0);
            changed(r, "rule add", format!("id {id} {detail}"))
        })(),
        "rule_del" => {
            // `rule_id`; a bare `id` (which is also the request's id) is taken when it is absent.
            let id = args.get("rule_id").or_else(|| args.get("id"));
            match id.and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()) {
                Some(id) => changed(s.rule_del(id), "rule del", format!("id {id}")),
                None => Err(bad("missing number `rule_id`")),
            }
        }
        "rule_list" => Ok(Outcome::Answer(json!({"rules": s
            .document
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                v["id"] = json!(r.id.unwrap_or(i as u32 + 1));
                v
            })
            .collect::<Vec<_>>()}))),
        "bypass" => match args.get("on").and_then(Value::as_bool) {
            Some(on) => changed(s.set_bypass(on), "bypass", if on { "on" } else { "off" }.to_string()),
            None => Err(bad("missing boolean `on`")),
        },
        "syncookie_rotate" => match (ctx.random_key)() {
            Ok(key) => {
                changed(s.rotate_syn_key(key, ctx.wall_secs), "syncookie rotate", "a new random key".to_string())
            }
            Err(e) => Err(("internal", e)),
        },
        _ => return None,
    })
}

fn policy_set(s: &mut PolicyState, args: &Value, running: &DataplaneConfig) -> Result<Outcome, CmdError> {
    let document: Config = if let Some(text) = args.get("toml").and_then(Value::as_str) {
        Config::from_toml(text, Path::new("<policy set>")).map_err(|e| ("rejected", e.to_string()))?
    } else if let Some(doc) = args.get("document") {
        serde_json::from_value(doc.clone()).map_err(|e| ("rejected", format!("document: {e}")))?
    } else {
        return Err(bad("give the new policy as `toml` (text) or `document` (object)"));
    };
    let detail = summary(&document);
    install(s, document, running, "policy set", "<policy set>", detail)
}

/// `reload`: the config file again, on the same terms as `policy_set`; on any error the running
/// policy stays.
fn reload(s: &mut PolicyState, running: &DataplaneConfig) -> Result<Outcome, CmdError> {
    let document = Config::load(&s.file).map_err(|e| ("rejected", e.to_string()))?;
    let source = s.file.display().to_string();
    let detail = format!("{source}: {}", summary(&document));
    install(s, document, running, "reload", &source, detail)
}

/// Makes `document` the policy, unless it changes a setting the daemon applies only at start
/// (`Config::restart_only_changes`: sockets, rings, interfaces, resolved next hops, table
/// capacities), which needs a restart; the running policy then stays as it is.
fn install(
    s: &mut PolicyState,
    document: Config,
    running: &DataplaneConfig,
    what: &'static str,
    source: &str,
    detail: String,
) -> Result<Outcome, CmdError> {
    if &document.dataplane != running {
        return Err((
            "rejected",
            format!("{source}: the [dataplane] section (queues, rings, modes) changed; that needs a restart"),
        ));
    }
    let keys = s.document.restart_only_changes(&document);
    if !keys.is_empty() {
        return Err((
            "rejected",
            format!(
                "{source}: {} changed; these take effect only at a restart, so nothing was applied \
                 (restart the daemon, or put them back and {what} again)",
                keys.join(", ")
            ),
        ));
    }
    // The compiler names the config file (relative list paths start beside it); a document
    // sent with `policy set` is not that file.
    let file = format!("{}: ", s.file.display());
    let result = s.set_document(document).map_err(|e| match e.strip_prefix(&file) {
        Some(rest) if source != s.file.display().to_string() => format!("{source}: {rest}"),
        _ => e,
    });
    changed(result, what, detail)
}

/// `policy_save`: the running document to the config file, or to `path` (root only: the daemon
/// writes as root, and a control-group member naming the path could replace any file). It is
/// written to a new temporary file beside the target, never through an existing file or link,
/// then renamed over the target.
fn policy_save(s: &PolicyState, args: &Value, uid: Option<u32>) -> Result<Outcome, CmdError> {
    let chosen = args.get("path").and_then(Value::as_str).map(PathBuf::from);
    if chosen.is_some() && uid != Some(0) {
        return Err((
            "forbidden",
            "only root may choose where the policy is saved; leave `path` out for the config file".into(),
        ));
    }
    let path = chosen.unwrap_or_else(|| s.file.clone());
    let text = format!("# written by `policy save` (generation {})\n{}", s.generation, s.document.to_toml());
    let tmp = path.with_extension("toml.tmp");
    let write_new = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A stale one from an interrupted save; if anything is put back in its place meanwhile,
        // create_new refuses it.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write_new().map_err(|e| ("io", format!("{}: {e}", path.display())))?;
    Ok(Outcome::Answer(json!({"path": path.display().to_string(), "generation": s.generation})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::SystemFacts;

    fn state() -> PolicyState {
        let doc = Config::from_toml("[[prefixes]]\ncidr = \"198.18.100.0/24\"\n", Path::new("t.toml")).unwrap();
        let mut s = PolicyState::new(Path::new("t.toml"), doc, SystemFacts::default(), 1);
        let first = s.compile(1).unwrap();
        s.facts.syn_previous = Some(first.syn.clone());
        s
    }

    fn run(s: &mut PolicyState, cmd: &str, args: Value) -> Result<Outcome, CmdError> {
        let dp = DataplaneConfig::default();
        let mut key = || Ok([3u8; 16]);
        let mut ctx = Context { mono_ns: 1_000, wall_secs: 5, uid: Some(0), dataplane: &dp, random_key: &mut key };
        apply(s, cmd, &args, &mut ctx).expect("a policy command")
    }

    fn generation(o: Result<Outcome, CmdError>) -> u64 {
        match o {
            Ok(Outcome::Changed { policy, .. }) => policy.generation,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn every_change_command_publishes_a_new_generation() {
        let mut s = state();
        let g = [
            ("prefix_add", json!({"cidr": "198.18.101.0/24"})),
            ("prefix_set_profile", json!({"cidr": "198.18.101.0/24", "profile": "default"})),
            ("prefix_del", json!({"cidr": "198.18.101.0/24"})),
            ("deny_add", json!({"cidr": "198.18.9.0/24", "ttl_s": 30})),
            ("deny_del", json!({"cidr": "198.18.9.0/24"})),
            ("allow_add", json!({"cidr": "198.18.7.7/32"})),
            ("allow_del", json!({"cidr": "198.18.7.7/32"})),
            ("rule_add", json!({"rule": {"action": "drop", "protocol": "udp", "dst_ports": "0-0"}})),
            ("rule_del", json!({"id": 77, "rule_id": 1})),
            ("bypass", json!({"on": true})),
            ("syncookie_rotate", json!({})),
            ("policy_set", json!({"toml": "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n"})),
        ]
        .into_iter()
        .map(|(c, a)| generation(run(&mut s, c, a)))
        .collect::<Vec<_>>();
        assert_eq!(g, (2..14).collect::<Vec<_>>());
    }

    #[test]
    fn bad_arguments_and_invalid_changes_are_refused_and_change_nothing() {
        let mut s = state();
        for (cmd, args, code) in [
            ("prefix_add", json!({}), "bad_request"),
            ("prefix_add", json!({"cidr": "banana"}), "bad_request"),
            ("prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "nope"}), "rejected"),
            ("deny_add", json!({"cidr": "198.18.1.0/24", "ttl_s": -1}), "bad_request"),
            ("deny_add", json!({"cidr": "198.18.1.0/24", "ttl_s": "soon"}), "bad_request"),
            ("deny_del", json!({"cidr": "198.18.1.0/24"}), "rejected"),
            ("rule_add", json!({"rule": {"action": "explode"}}), "bad_request"),
            ("rule_del", json!({"id": 99}), "rejected"),
            ("rule_del", json!({"id": "one"}), "bad_request"),
            ("bypass", json!({"on": "yes"}), "bad_request"),
            ("policy_set", json!({"toml": "[dataplane]\nbatch = 32\n"}), "rejected"),
            ("policy_set", json!({"toml": "[[prefixes]]\ncidr = \"1.2.3.4/8\"\n"}), "rejected"),
            ("policy_set", json!({}), "bad_request"),
        ] {
            match run(&mut s, cmd, args.clone()) {
                Err((c, _)) => assert_eq!(c, code, "{cmd} {args}"),
                Ok(o) => panic!("{cmd} {args}: expected {code}, got {o:?}"),
            }
        }
        assert_eq!(s.generation, 1);
    }

    #[test]
    fn a_policy_that_changes_start_only_settings_is_refused_and_names_them() {
        let mut s = state();
        let base = "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n";
        for (extra, key) in [
            ("[forward]\negress = \"eth7\"\n", "forward.egress"),
            ("[forward]\nsymmetric = true\n", "forward.symmetric"),
            ("[forward]\nnext_hop_ip = \"198.18.0.99\"\n", "forward.next_hop_mac/next_hop_ip (auto)"),
            ("[tables]\nreply_pps = 10\n", "tables"),
            ("[daemon]\nmetrics = \"off\"\n", "daemon"),
            ("[quic]\nflows = 16\n", "quic.flows"),
            ("[syn]\nverified_sources = 4096\n", "syn.verified_sources"),
            ("[amp]\nrequest_slots = 4096\n", "amp.request_slots"),
        ] {
            let toml = format!("{base}{extra}");
            match run(&mut s, "policy_set", json!({ "toml": toml })) {
                Err((code, msg)) => {
                    assert_eq!(code, "rejected", "{extra}");
                    assert!(msg.contains(key) && msg.contains("restart"), "{extra}: {msg}");
                }
                Ok(o) => panic!("{extra}: accepted: {o:?}"),
            }
        }
        assert_eq!(s.generation, 1);
        // A document's own errors name it, not the config file on disk.
        match run(&mut s, "policy_set", json!({"toml": "[[prefixes]]\ncidr = \"1.2.3.4/8\"\n"})) {
            Err((_, msg)) => assert!(msg.starts_with("<policy set>: prefixes[0].cidr: "), "{msg}"),
            Ok(o) => panic!("accepted: {o:?}"),
        }
        // What applies at runtime still does: a literal next-hop MAC, the MTU, a QUIC budget.
        let toml = format!(
            "{base}[forward]\nnext_hop_mac = \"02:00:00:00:00:09\"\nmtu = 1400\n[quic]\ndecrypt_budget_pps = 1000\n"
        );
        let Ok(Outcome::Changed { policy, .. }) = run(&mut s, "policy_set", json!({ "toml": toml })) else {
            panic!("runtime settings refused")
        };
        assert_eq!(policy.forward.next_hop_mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!(policy.forward.egress_mtu, 1400);
    }

    #[test]
    fn policy_save_writes_no_file_but_its_own() {
        let dir = std::env::temp_dir().join(format!("scrubber-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = state();
        let target = dir.join("out.toml");
        let args = json!({"path": target.display().to_string()});
        let dp = DataplaneConfig::default();
        let mut key = || Ok([3u8; 16]);
        let mut as_uid = |s: &mut PolicyState, uid| {
            let mut ctx = Context { mono_ns: 0, wall_secs: 0, uid, dataplane: &dp, random_key: &mut key };
            apply(s, "policy_save", &args, &mut ctx).expect("a policy command")
        };
        match as_uid(&mut s, Some(1000)) {
            Err((code, _)) => assert_eq!(code, "forbidden"),
            other => panic!("a group member chose the path: {other:?}"),
        }
        assert!(!target.exists());
        // A link where the temporary file goes is replaced, not written through.
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("out.toml.tmp")).unwrap();
        as_uid(&mut s, Some(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::read_to_string(&target).unwrap().contains("198.18.100.0/24"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_commands_answer() {
        let mut s = state();
        run(&mut s, "deny_add", json!({"cidr": "198.18.9.0/24", "ttl_s": 2})).unwrap();
        let Ok(Outcome::Answer(v)) = run(&mut s, "deny_list", json!({})) else { panic!() };
        assert_eq!(v["listed"], 1);
        assert!((v["entries"][0]["ttl_s"].as_f64().unwrap() - 2.0).abs() < 1e-3);
        let Ok(Outcome::Answer(v)) = run(&mut s, "policy_get", json!({})) else { panic!() };
        assert!(v["toml"].as_str().unwrap().contains("198.18.100.0/24"));
        let Ok(Outcome::Answer(v)) = run(&mut s, "rule_list", json!({})) else { panic!() };
        assert_eq!(v["rules"].as_array().unwrap().len(), 0);
        let dp = DataplaneConfig::default();
        let mut key = || Ok([0u8; 16]);
        let mut ctx = Context { mono_ns: 0, wall_secs: 0, uid: None, dataplane: &dp, random_key: &mut key };
        assert!(apply(&mut s, "stats", &json!({}), &mut ctx).is_none());
    }

    #[test]
    fn read_only_commands_change_nothing() {
        let mut s = state();
        let dir = std::env::temp_dir().join(format!("scrubber-read-only-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        s.file = dir.join("scrubber.toml");
        let before = (s.generation, s.document.to_toml());
        for cmd in READ_ONLY {
            assert!(matches!(run(&mut s, cmd, json!({})), Ok(Outcome::Answer(_))), "{cmd}");
            assert_eq!((s.generation, s.document.to_toml()), before, "{cmd}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
