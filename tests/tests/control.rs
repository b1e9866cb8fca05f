//! The control plane against the real daemon in the namespace lab (root; run with
//! `--test-threads=1`; one lab per test, removed however the test ends).
//!
//! Every command of `docs/control-protocol.md` and every kind of abuse the protocol defines an
//! answer for, each checked for its documented answer, while a sequence-numbered UDP stream
//! flows to origin and must lose nothing; policy swapped 100 times a second under traffic; a
//! capture of a mixed flood read back with tcpdump and a pcapng parser; the metrics endpoint
//! parsed by a strict text-format parser; the JSON log; `scrubctl top`.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tests::control::{Conn, PathSnapshot, Stream, json_log, log_events, prom, read_pcapng, scrubctl_bin};
use tests::{Cmd, GenSpec, LabOptions, Role, TempConfig, TestLab, require_root, scrubber_bin, wait_for, xdp_attached};

/// Most clients the daemon serves at once (`docs/control-protocol.md`).
const MAX_CLIENTS: usize = 64;

/// The group of gid 65534 (`nogroup` or `nobody`), which `nobody` belongs to by its primary gid.
fn group_of_nobody() -> Option<String> {
    std::fs::read_to_string("/etc/group").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2] == "65534").then(|| f[0].to_string())
    })
}

fn socket(t: &TestLab) -> PathBuf {
    t.state().daemon.control_socket.clone()
}

/// The daemon with `--log-format json`.
fn start_json_daemon(t: &mut TestLab) {
    t.start_daemon(scrubber_bin(), &["--log-format".into(), "json".into()])
        .unwrap_or_else(|e| panic!("start the daemon: {e}"));
}

/// `GET /metrics` from the scrub namespace, parsed strictly.
fn metrics(t: &TestLab) -> prom::Exposition {
    let url = format!("http://{}/metrics", t.state().daemon.metrics);
    let out = Cmd::new("curl")
        .args(&["-sS", "--fail", "--max-time", "5", "-D", "/dev/stderr", &url])
        .netns(t.ns(Role::Scrub))
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap_or_else(|e| panic!("curl {url}: {e}"));
    assert!(out.stderr.contains("application/openmetrics-text"), "content type: {}", out.stderr);
    prom::parse(&out.stdout).unwrap_or_else(|e| panic!("the metrics do not parse: {e}\n{}", out.stdout))
}

fn generation(c: &mut Conn) -> u64 {
    c.ok("health", json!({}))["generation"].as_u64().expect("health has the generation")
}

/// A change answers with a generation above `before`; returns it.
fn changed(c: &mut Conn, cmd: &str, args: Value, before: u64) -> u64 {
    let g = c.ok(cmd, args.clone())["generation"].as_u64().unwrap_or_else(|| panic!("{cmd} {args}: no generation"));
    assert!(g > before, "{cmd} {args}: generation {g} after {before}");
    g
}

fn entries(c: &mut Conn, list: &str) -> Vec<Value> {
    c.ok(list, json!({}))["entries"].as_array().cloned().unwrap_or_default()
}

fn has_cidr(entries: &[Value], cidr: &str) -> bool {
    entries.iter().any(|e| e["cidr"] == cidr)
}

/// Runs `scrubctl --json health` as `nobody` with primary group `gid` and no other groups (a
/// copy of the binary in the lab's directory, which any user may read); returns its output.
fn client_as_nobody(t: &TestLab, gid: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = t.dir().join("scrubctl");
    if !bin.exists() {
        std::fs::copy(scrubctl_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Cmd::new("setpriv")
        .args(&["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
        .args(&[&bin.display().to_string(), "--socket", &socket(t).display().to_string(), "--json", "health"])
        .ok_codes(&[0, 1])
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap_or_else(|e| panic!("scrubctl as nobody: {e}"));
    format!("{}{}", out.stdout, out.stderr)
}

/// Status, stats, health.
fn read_only_commands(c: &mut Conn) {
    let st = c.ok("status", json!({}));
    assert!(st["version"].as_str().is_some_and(|v| !v.is_empty()), "{st}");
    assert!(st["uptime_s"].as_f64().is_some_and(|u| u > 0.0), "{st}");
    assert_eq!((st["fail"].as_str(), st["forward"].as_str()), (Some("open"), Some("l2")), "{st}");
    assert_eq!(st["workers"][0]["interface"], "in0");
    assert_eq!(st["workers"][0]["queue"], 0);
    assert_eq!(st["programs"][0]["interface"], "in0");
    let s = c.ok("stats", json!({}));
    for key in ["totals", "rates", "workers", "xdp", "amp", "top"] {
        assert!(!s[key].is_null(), "stats has `{key}`: {s}");
    }
    assert!(s["xdp"]["in0"]["redirected"].is_u64(), "{s}");
    assert!(s["workers"][0]["ring"]["rx_dropped"].is_u64(), "{s}");
    let h = c.ok("health", json!({}));
    assert_eq!((h["ok"].as_bool(), h["workers"].as_u64(), h["running"].as_u64()), (Some(true), Some(1), Some(1)));
    assert_eq!(h["adopted"], h["generation"], "the worker runs the published policy: {h}");
}

/// prefix add / set-profile / del.
fn prefix_commands(c: &mut Conn) {
    let g = generation(c);
    let doc_prefix = |c: &mut Conn, cidr: &str| -> Option<Value> {
        let doc = c.ok("policy_get", json!({}))["document"].clone();
        doc["prefixes"].as_array().and_then(|a| a.iter().find(|p| p["cidr"] == cidr).cloned())
    };
    let g = changed(c, "prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "lab"}), g);
    assert_eq!(doc_prefix(c, "198.18.101.0/24").map(|p| p["profile"].clone()), Some(json!("lab")));
    assert_eq!(c.ok("syn_status", json!({}))["prefixes"].as_array().map(Vec::len), Some(3));
    let g = changed(c, "prefix_set_profile", json!({"cidr": "198.18.101.0/24", "profile": "default"}), g);
    assert_eq!(doc_prefix(c, "198.18.101.0/24").map(|p| p["profile"].clone()), Some(json!("default")));
    let msg = c.err("prefix_set_profile", json!({"cidr": "198.18.101.0/24", "profile": "nope"}), "rejected");
    assert!(msg.contains("no profile named `nope`"), "{msg}");
    let g = changed(c, "prefix_del", json!({"cidr": "198.18.101.0/24"}), g);
    assert!(doc_prefix(c, "198.18.101.0/24").is_none());
    c.err("prefix_del", json!({"cidr": "198.18.101.0/24"}), "rejected");
    c.err("prefix_add", json!({"cidr": "banana"}), "bad_request");
    c.err("prefix_add", json!({}), "bad_request");
    assert_eq!(generation(c), g, "refused changes publish nothing");
}

/// deny / allow add, del, list; a TTL entry observed to expire. Returns when it expired.
fn list_commands(c: &mut Conn) -> Duration {
    let g = generation(c);
    let added = Instant::now();
    let g = changed(c, "deny_add", json!({"cidr": "198.18.9.0/24", "ttl_s": 2}), g);
    let list = c.ok("deny_list", json!({}));
    let e = list["entries"].as_array().and_then(|a| a.iter().find(|e| e["cidr"] == "198.18.9.0/24").cloned());
    let e = e.unwrap_or_else(|| panic!("deny_list: {list}"));
    assert_eq!((e["source"].as_str(), e["added_by"].as_u64()), (Some("runtime"), Some(0)), "{e}");
    assert!(e["ttl_s"].as_f64().is_some_and(|t| t > 0.5 && t <= 2.0), "{e}");
    assert!(list["prefixes_in_effect"].as_u64().is_some_and(|n| n >= 1), "{list}");
    let g = changed(c, "deny_add", json!({"cidr": "2001:2:0:9::/64"}), g);
    let g = changed(c, "deny_del", json!({"cidr": "2001:2:0:9::/64"}), g);
    assert!(!has_cidr(&entries(c, "deny_list"), "2001:2:0:9::/64"));
    c.err("deny_del", json!({"cidr": "2001:2:0:9::/64"}), "rejected");
    c.err("deny_add", json!({"cidr": "198.18.9.0/24", "ttl_s": -1}), "bad_request");
    c.err("deny_add", json!({"cidr": "198.18.9.0/24", "ttl_s": "soon"}), "bad_request");
    let g = changed(c, "allow_add", json!({"cidr": "198.18.7.7/32"}), g);
    let allow = entries(c, "allow_list");
    let e = allow.iter().find(|e| e["cidr"] == "198.18.7.7/32").unwrap_or_else(|| panic!("{allow:?}"));
    assert!(e["ttl_s"].is_null(), "no TTL: {e}");
    changed(c, "allow_del", json!({"cidr": "198.18.7.7/32"}), g);
    assert!(!has_cidr(&entries(c, "allow_list"), "198.18.7.7/32"));
    c.err("allow_del", json!({"cidr": "198.18.7.7/32"}), "rejected");
    // The daemon drops the entry within a second of its expiry, and publishes a new snapshot.
    let g = generation(c);
    wait_for("the deny entry with a TTL expires", Duration::from_secs(6), || {
        (!has_cidr(&entries(c, "deny_list"), "198.18.9.0/24")).then_some(())
    });
    let lived = added.elapsed();
    assert!(lived >= Duration::from_millis(1900), "expired after {lived:?}, before its 2 s TTL");
    assert!(generation(c) > g, "the expiry published a snapshot");
    lived
}

/// rule add / del / list.
fn rule_commands(c: &mut Conn) {
    let g = generation(c);
    let g = changed(c, "rule_add", json!({"rule": {"action": "drop", "protocol": "udp", "dst_ports": 7777}}), g);
    let g = changed(
        c,
        "rule_add",
        json!({"rule": {"action": "allow", "protocol": "tcp", "dst_ports": "22"}, "position": 0}),
        g,
    );
    let rules = c.ok("rule_list", json!({}))["rules"].clone();
    let summary: Vec<(u64, &str)> =
        rules.as_array().unwrap().iter().map(|r| (r["id"].as_u64().unwrap(), r["action"].as_str().unwrap())).collect();
    assert_eq!(summary, [(2, "allow"), (1, "drop")], "{rules}");
    let g = changed(c, "rule_del", json!({"rule_id": 1}), g);
    changed(c, "rule_del", json!({"rule_id": 2}), g);
    assert_eq!(c.ok("rule_list", json!({}))["rules"], json!([]));
    c.err("rule_del", json!({"rule_id": 99}), "rejected");
    c.err("rule_del", json!({"rule_id": "one"}), "bad_request");
    c.err("rule_add", json!({"rule": {"action": "explode"}}), "bad_request");
}

/// syn_status, syncookie_rotate, bypass.
fn syn_and_bypass(t: &TestLab, c: &mut Conn) {
    let s = c.ok("syn_status", json!({}));
    assert_eq!(s["secret"]["random"], true, "{s}");
    let p = s["prefixes"].as_array().unwrap_or_else(|| panic!("{s}"));
    assert_eq!(p.len(), 2, "{s}");
    assert!(p.iter().all(|p| p["when"] == "always" && p["method"] == "Rst"), "{s}");
    assert!(s["verified"]["capacity"].as_u64().is_some_and(|n| n > 0), "{s}");
    let g = generation(c);
    let g = changed(c, "syncookie_rotate", json!({}), g);
    let s = c.ok("syn_status", json!({}));
    assert_eq!(s["secret"]["previous_valid"], true, "the previous key stays valid: {s}");
    assert!(s["secret"]["rotated_at"].as_u64().is_some_and(|t| t > 0), "{s}");
    let g = changed(c, "bypass", json!({"on": true}), g);
    assert_eq!(c.ok("policy_get", json!({}))["runtime"]["bypass"], true);
    assert_eq!(metrics(t).value("scrubber_bypass", &[]), 1.0);
    changed(c, "bypass", json!({"on": false}), g);
    assert_eq!(c.ok("policy_get", json!({}))["runtime"]["bypass"], false);
    c.err("bypass", json!({"on": "yes"}), "bad_request");
}

/// capture start / status / stop on the stream's forwarded frames.
fn capture_commands(t: &TestLab, c: &mut Conn) {
    assert_eq!(c.ok("capture_status", json!({}))["running"], false);
    c.err("capture_stop", json!({}), "not_running");
    c.err("capture_start", json!({"reasons": ["no_such_reason"]}), "bad_request");
    c.err("capture_start", json!({"verdicts": ["maybe"]}), "bad_request");
    let path = t.dir().join("forward.pcapng");
    let r = c.ok(
        "capture_start",
        json!({"path": path.display().to_string(), "verdicts": ["forward"], "max_packets": 20, "duration_s": 20}),
    );
    assert_eq!(r["max_packets"], 20);
    c.err("capture_start", json!({"path": t.dir().join("x.pcapng").display().to_string()}), "busy");
    wait_for("20 forwarded frames captured", Duration::from_secs(10), || {
        (c.ok("capture_status", json!({}))["packets"].as_u64() >= Some(20)).then_some(())
    });
    let r = c.ok("capture_stop", json!({}));
    assert_eq!((r["packets"].as_u64(), r["missed"].as_u64()), (Some(20), Some(0)), "{r}");
    let packets = read_pcapng(&path);
    assert_eq!(packets.len(), 20);
    for p in &packets {
        assert_eq!(p.comment.as_deref(), Some("verdict=forward"), "{p:?}");
        let magic = p.data.windows(8).any(|w| w == b"SCRBSEQ1");
        assert!(magic, "a frame of the sequence stream: {:02x?}", &p.data[..p.data.len().min(64)]);
    }
    c.err("capture_stop", json!({}), "not_running");
}

/// policy_get / policy_save / policy_set / reload, and what survives them.
fn document_commands(t: &TestLab, c: &mut Conn) {
    let saved = t.dir().join("saved.toml");
    let g = generation(c);
    let r = c.ok("policy_save", json!({"path": saved.display().to_string()}));
    assert_eq!(r["path"], saved.display().to_string());
    let doc = control::Config::load(&saved).unwrap_or_else(|e| panic!("the saved policy does not load: {e}"));
    assert_eq!(doc.prefixes.len(), 2);
    assert_eq!(generation(c), g, "saving changes nothing");
    // A runtime entry survives policy_set and reload.
    let g = changed(c, "allow_add", json!({"cidr": "198.18.7.8/32"}), g);
    // A whole document (JSON) with a deny entry, then the saved TOML without it.
    let mut document = c.ok("policy_get", json!({}))["document"].clone();
    document["policy"]["deny"] = json!(["198.18.66.0/24"]);
    let g = changed(c, "policy_set", json!({"document": document.clone()}), g);
    let deny = entries(c, "deny_list");
    assert!(deny.iter().any(|e| e["cidr"] == "198.18.66.0/24" && e["source"] == "config"), "{deny:?}");
    let text = std::fs::read_to_string(&saved).unwrap();
    let g = changed(c, "policy_set", json!({"toml": text.clone()}), g);
    assert!(!has_cidr(&entries(c, "deny_list"), "198.18.66.0/24"));
    document["dataplane"]["batch"] = json!(32);
    let msg = c.err("policy_set", json!({"document": document}), "rejected");
    assert!(msg.contains("[dataplane]"), "{msg}");
    let broken = text.replacen("cidr = \"198.18.100.0/24\"", "cidr = \"banana\"", 1);
    assert_ne!(broken, text);
    let msg = c.err("policy_set", json!({"toml": broken}), "rejected");
    assert!(msg.contains("prefixes[0].cidr"), "{msg}");
    c.err("policy_set", json!({}), "bad_request");
    assert_eq!(generation(c), g, "refused documents change nothing");
    // reload: a broken file is refused and the running policy stays; the good file is taken.
    let file = t.state().daemon.config.clone();
    let original = std::fs::read_to_string(&file).unwrap();
    let broken = original.replacen("cidr = \"198.18.100.0/24\"", "cidr = \"banana\"", 1);
    assert_ne!(broken, original);
    std::fs::write(&file, broken).unwrap();
    let msg = c.err("reload", json!({}), "rejected");
    std::fs::write(&file, &original).unwrap();
    assert!(msg.contains("prefixes[0].cidr"), "{msg}");
    assert_eq!(generation(c), g);
    let g = changed(c, "reload", json!({}), g);
    assert!(has_cidr(&entries(c, "allow_list"), "198.18.7.8/32"), "runtime entries survive reload");
    changed(c, "allow_del", json!({"cidr": "198.18.7.8/32"}), g);
}

/// Malformed JSON, not an object, no cmd, unknown command, wrong version: structured errors on
/// a connection that stays usable. An oversized request: `too_large`, then the connection closes.
fn bad_requests(sock: &Path, c: &mut Conn) {
    c.send_raw(b"{\"id\": 1, \"cmd\": \n").unwrap();
    let r = c.read().expect("an answer to malformed JSON");
    assert_eq!((r["ok"].as_bool(), r["error"]["code"].as_str()), (Some(false), Some("bad_json")), "{r}");
    c.send_raw(b"[1, 2]\n").unwrap();
    assert_eq!(c.read().unwrap()["error"]["code"], "bad_request");
    c.send_raw(b"{\"id\": 3}\n").unwrap();
    let r = c.read().unwrap();
    assert_eq!((r["id"].as_u64(), r["error"]["code"].as_str()), (Some(3), Some("bad_request")), "{r}");
    let r = c.call(4, "frobnicate", json!({}));
    assert_eq!(r["error"]["code"], "unknown_command", "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("frobnicate"), "{r}");
    c.send_raw(b"{\"id\": 5, \"version\": 2, \"cmd\": \"status\"}\n").unwrap();
    let r = c.read().unwrap();
    assert_eq!((r["id"].as_u64(), r["error"]["code"].as_str()), (Some(5), Some("version")), "{r}");
    c.ok("health", json!({}));

    let mut big = Conn::open(sock);
    let mut w = big.clone_writer();
    let writer = std::thread::spawn(move || {
        // The daemon stops reading after 1 MiB; the rest may meet a closed socket.
        let mut line = vec![b' '; (1 << 20) + 4096];
        line[0] = b'{';
        line.push(b'\n');
        let _ = w.write_all(&line);
    });
    let r = big.read().expect("an answer to an oversized request");
    assert_eq!(r["error"]["code"], "too_large", "{r}");
    assert!(big.closed(), "the connection is closed after too_large");
    writer.join().unwrap();
}

/// A client that never finishes its line delays no one and is closed after the read timeout.
fn silent_client(sock: &Path) -> Duration {
    let mut silent = Conn::open(sock);
    silent.send_raw(b"{\"id\": 1, \"cmd\": \"status\"").unwrap();
    let t0 = Instant::now();
    let mut other = Conn::open(sock);
    let mut worst = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        other.ok("health", json!({}));
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(worst < Duration::from_millis(500), "others are served while a client is silent (worst {worst:?})");
    let r = silent.read().expect("a timeout answer");
    let after = t0.elapsed();
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    assert!(silent.closed(), "then the connection is closed");
    assert!(after >= Duration::from_millis(4500) && after < Duration::from_secs(10), "closed after {after:?}");
    after
}

/// 50 clients at once each get their answers; then the cap: with 64 clients connected, the next
/// one is told `busy`.
fn many_clients(sock: &Path, c: &mut Conn) -> Duration {
    // `c` sat idle through the silent client's 5 s: the daemon closed it too.
    let r = c.read().expect("the idle connection's timeout answer");
    assert_eq!(r["error"]["code"], "timeout", "an idle connection is closed after the read timeout: {r}");
    assert!(c.closed());
    *c = Conn::open(sock);
    let barrier = std::sync::Barrier::new(50);
    let worst = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50u64)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut conn = Conn::open(sock);
                    barrier.wait();
                    let t = Instant::now();
                    for (k, cmd) in ["status", "health", "deny_list", "rule_list", "syn_status"].iter().enumerate() {
                        let id = i * 10 + k as u64;
                        let r = conn.call(id, cmd, json!({}));
                        assert_eq!(r["ok"], true, "client {i} {cmd}: {r}");
                    }
                    t.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a client thread")).max().unwrap_or_default()
    });
    // Let the daemon's threads for those 50 see their clients go.
    std::thread::sleep(Duration::from_millis(300));
    let idle: Vec<Conn> = (0..MAX_CLIENTS - 1).map(|_| Conn::open(sock)).collect();
    let mut extra = Conn::open(sock);
    let r = extra.read().expect("an answer beyond the cap");
    assert_eq!(r["error"]["code"], "busy", "{r}");
    assert!(extra.closed());
    c.ok("health", json!({}));
    drop(idle);
    wait_for("a new client is served once the others left", Duration::from_secs(3), || {
        let mut n = Conn::try_open(sock).ok()?;
        (n.call(1, "health", json!({}))["ok"] == true).then_some(())
    });
    worst
}

/// Clients of other users: a control-group member is served; a non-member cannot open the
/// socket file (mode 0660) and, were its mode loosened, is refused by its peer credentials.
fn other_users(t: &TestLab, group: &str) {
    let sock = socket(t);
    let meta = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), 65534, "socket group is {group}");
    let member = client_as_nobody(t, 65534);
    let r: Value = serde_json::from_str(&member).unwrap_or_else(|e| panic!("member: {member:?}: {e}"));
    assert_eq!(r["ok"], true, "a member is served: {r}");
    let stranger = client_as_nobody(t, 12345);
    assert!(stranger.contains("Permission denied"), "a non-member cannot connect: {stranger:?}");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stranger = client_as_nobody(t, 12345);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
    assert!(stranger.contains("error: forbidden"), "a non-member is refused by its credentials: {stranger:?}");
}

/// Every command, and every abuse with a documented answer, through one daemon while a
/// sequence-numbered UDP stream flows to origin: each gets its answer, the stream loses nothing,
/// the metrics parse and count it, and the JSON log records who changed what.
#[test]
fn every_command_and_every_abuse_get_their_answer_while_forwarding() {
    require_root!();
    let group = group_of_nobody();
    let replace = group.as_ref().map(|g| format!("[daemon]\ncontrol_group = \"{g}\"\n"));
    let cfg = TempConfig::lab_with(&replace.as_deref().map(|r| vec![("[daemon]\n", r)]).unwrap_or_default());
    let mut t = TestLab::with_services(|o| LabOptions { config: Some(cfg.0.clone()), ..o });
    start_json_daemon(&mut t);
    let sock = socket(&t);
    let m0 = metrics(&t);
    let path0 = PathSnapshot::take(&t);
    let started = Instant::now();
    let stream = Stream::start(&t, 1000, 50, Duration::from_secs(150));
    let mut c = Conn::open(&sock);

    read_only_commands(&mut c);
    prefix_commands(&mut c);
    rule_commands(&mut c);
    syn_and_bypass(&t, &mut c);
    capture_commands(&t, &mut c);
    document_commands(&t, &mut c);
    let ttl_lived = list_commands(&mut c);
    bad_requests(&sock, &mut c);
    let silent_closed = silent_client(&sock);
    let worst_of_50 = many_clients(&sock, &mut c);
    match &group {
        Some(g) => other_users(&t, g),
        None => eprintln!("no group with gid 65534: the other-user checks are skipped"),
    }
    c.ok("health", json!({}));
    let report = stream.stop();
    let seconds = started.elapsed();
    eprintln!(
        "stream: {} sent, {} answered in {seconds:?}; TTL entry lived {ttl_lived:?}; silent client closed after \
         {silent_closed:?}; worst of 50 concurrent clients {worst_of_50:?}",
        report.sent, report.answered
    );
    let path = PathSnapshot::take(&t).since(&path0);
    eprintln!("path: {path}");
    assert!(report.sent >= 8_000, "the stream ran through the test: {report:?}");
    assert_eq!(report.lost(), 0, "no sequence number missing at origin: {report:?}\n{path}");
    assert_eq!(report.sources_answered, 50);

    // Metrics: strict parse, families and kinds, counters that moved with the stream.
    let m1 = metrics(&t);
    for (name, kind) in [
        ("scrubber_packets", "counter"),
        ("scrubber_dropped_packets", "counter"),
        ("scrubber_events", "counter"),
        ("scrubber_rx_packets", "counter"),
        ("scrubber_batch_size", "histogram"),
        ("scrubber_worker_busy_ratio", "gauge"),
        ("scrubber_table_entries", "gauge"),
        ("scrubber_xdp_packets", "counter"),
        ("scrubber_policy_generation", "gauge"),
    ] {
        assert_eq!(m1.family(name).kind, kind, "{name}");
    }
    let forward = [("verdict", "forward")];
    let moved = m1.value("scrubber_packets_total", &forward) - m0.value("scrubber_packets_total", &forward);
    assert!(moved >= report.sent as f64, "forward counter moved by {moved} for {} stream frames", report.sent);
    let rx = [("interface", "in0"), ("queue", "0")];
    assert!(m1.value("scrubber_rx_packets_total", &rx) - m0.value("scrubber_rx_packets_total", &rx) >= moved);
    assert_eq!(m1.value("scrubber_policy_generation", &[]), generation(&mut c) as f64);
    assert!(m1.value("scrubber_events_total", &[("event", "policy_swap")]) > 10.0);

    // The JSON log: every line JSON; who changed what; captures; refusals; expiry.
    let log = json_log(&t.state().daemon.log);
    let changes = log_events(&log, "policy changed");
    let change = |what: &str, detail: &str| {
        changes.iter().any(|f| f["change"] == what && f["detail"].as_str().is_some_and(|d| d.contains(detail)))
    };
    assert!(changes.iter().all(|f| f["peer_uid"] == 0 && f["generation"].is_u64()), "{changes:?}");
    for (what, detail) in [
        ("deny add", "198.18.9.0/24 ttl 2s"),
        ("prefix add", "198.18.101.0/24 profile lab"),
        ("prefix set-profile", "198.18.101.0/24 profile default"),
        ("rule add", "id 1 "),
        ("rule del", "id 2"),
        ("bypass", "on"),
        ("syncookie rotate", "key"),
        ("policy set", "2 prefixes"),
        ("reload", "lab.toml"),
    ] {
        assert!(change(what, detail), "log has `{what}` with `{detail}`: {changes:?}");
    }
    let expired = log_events(&log, "runtime list entries expired");
    assert!(expired.iter().any(|f| f["entries"].as_str().is_some_and(|e| e.contains("deny 198.18.9.0/24"))));
    assert!(log_events(&log, "capture started").iter().any(|f| f["peer_uid"] == 0 && f["max_packets"] == 20));
    assert!(log_events(&log, "capture stopped").iter().any(|f| f["packets"] == 20));
    assert!(!log_events(&log, "policy change rejected; the running policy stays").is_empty());
    assert!(!log_events(&log, "closed an idle control client").is_empty());
    if group.is_some() {
        assert!(log_events(&log, "refused a control client").iter().any(|f| f["peer_uid"] == 65534));
    }
}

/// A socket left by a killed daemon is replaced; a live one is not taken over; a regular file at
/// the path is refused with a clear error before any interface is touched. The log, written to a
/// file, is plain text.
#[test]
fn a_stale_socket_is_replaced_and_anything_else_at_its_path_refused() {
    require_root!();
    let mut t = TestLab::with_daemon(|o| o);
    let sock = socket(&t);
    let config = t.state().daemon.config.clone();
    t.kill_daemon().unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket(), "the killed daemon left its socket");
    t.start_daemon(scrubber_bin(), &[]).unwrap_or_else(|e| panic!("restart over a stale socket: {e}"));
    assert_eq!(t.control("health", json!({}))["ok"], true);
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("replaced a stale control socket"), "{log}");
    assert!(!log.contains('\x1b'), "a log written to a file carries no terminal colour codes: {log:?}");

    // A second daemon while this one runs: refused, and the running one is undisturbed.
    let bin = scrubber_bin().display().to_string();
    let second = Cmd::new("sh")
        .args(&["-c", "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; exec \"$@\"", "sh", &bin])
        .args(&["run", "--config", &config.display().to_string()])
        .netns(t.ns(Role::Scrub))
        .ok_codes(&[1])
        .timeout(Duration::from_secs(20))
        .run()
        .unwrap_or_else(|e| panic!("a second daemon: {e}"));
    assert!(second.stderr.contains("in use by a running daemon"), "{}", second.stderr);
    assert_eq!(t.control("health", json!({}))["ok"], true);
    assert!(xdp_attached(&t.ns(Role::Scrub), "in0"));

    t.stop_daemon(Duration::from_secs(5)).unwrap();
    assert!(!sock.exists(), "a clean stop removes the socket");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "in0"));
    std::fs::write(&sock, "not a socket\n").unwrap();
    let err = t.start_daemon(scrubber_bin(), &[]).expect_err("a regular file at the socket path").to_string();
    assert!(err.contains("exists and is not a socket; refusing to replace it"), "{err}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not a socket\n", "the file is left alone");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "in0"), "refused before attaching anything");

    // A start that fails after attaching (its metrics address is on no interface) detaches again.
    std::fs::remove_file(&sock).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let metrics = text.lines().find(|l| l.trim_start().starts_with("metrics =")).expect("a metrics line").to_string();
    std::fs::write(&config, text.replace(&metrics, "metrics = \"198.18.255.254:9477\"")).unwrap();
    t.start_daemon(scrubber_bin(), &[]).expect_err("an address to bind on no interface");
    std::fs::write(&config, &text).unwrap();
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("cannot listen on 198.18.255.254:9477"), "{log}");
    assert!(log.contains("XDP program detached: the start failed"), "{log}");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "in0"), "a failed start leaves no program behind");
    // The same when the sockets cannot be bound (zero-copy on a veth), before any worker runs.
    let bind = text.lines().find(|l| l.trim_start().starts_with("bind =")).expect("a bind line").to_string();
    std::fs::write(&config, text.replace(&bind, "bind = \"zero-copy\"")).unwrap();
    t.start_daemon(scrubber_bin(), &[]).expect_err("zero-copy on a veth");
    std::fs::write(&config, &text).unwrap();
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.matches("XDP program detached: the start failed").count() >= 2, "{log}");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "in0"), "a failed start leaves no program behind");
}

/// Policy swapped 100 times a second for 10 seconds (a deny entry, a rule and a protected prefix,
/// none of which matches the stream) over one connection while a sequence-numbered UDP stream
/// flows to origin: no sequence number is lost, every swap is adopted by the worker before the
/// next (the published generation and the worker's are read back after each), and the worker
/// counted one `policy_swap` per swap.
#[test]
fn policy_swaps_100_times_a_second_lose_nothing() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let mut c = Conn::open(&socket(&t));
    let s0 = t.stats();
    let g0 = generation(&mut c);
    let path0 = PathSnapshot::take(&t);
    let stream = Stream::start(&t, 1000, 50, Duration::from_secs(60));
    const SWAPS: u32 = 1000;
    let period = Duration::from_millis(10);
    let swaps: [(&str, Value); 6] = [
        ("deny_add", json!({"cidr": "198.18.77.0/24"})),
        ("deny_del", json!({"cidr": "198.18.77.0/24"})),
        ("rule_add", json!({"rule": {"id": 9, "action": "drop", "protocol": "udp", "dst_ports": 7777}})),
        ("rule_del", json!({"rule_id": 9})),
        ("prefix_add", json!({"cidr": "198.18.101.0/24", "profile": "lab"})),
        ("prefix_del", json!({"cidr": "198.18.101.0/24"})),
    ];
    let mut answer_us = Vec::new();
    let mut adopt_us = Vec::new();
    let start = Instant::now();
    let mut g = g0;
    for i in 0..SWAPS {
        let due = start + period * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (cmd, args) = &swaps[i as usize % swaps.len()];
        let t0 = Instant::now();
        g = changed(&mut c, cmd, args.clone(), g);
        answer_us.push(t0.elapsed().as_micros() as u64);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = c.ok("health", json!({}));
            if h["adopted"].as_u64() == Some(g) {
                break;
            }
            assert!(Instant::now() < deadline, "swap {i} ({cmd}): generation {g} not adopted: {h}");
        }
        adopt_us.push(t0.elapsed().as_micros() as u64);
    }
    let took = start.elapsed();
    let report = stream.stop();
    let d = t.stats().since(&s0);
    let path = PathSnapshot::take(&t).since(&path0);
    let pct = |v: &mut Vec<u64>, q: f64| {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q) as usize]
    };
    eprintln!(
        "{SWAPS} swaps in {took:?} ({:.0}/s); answer p50 {} us p99 {} us; adopted by the worker p50 {} us p99 {} us; \
         stream {} sent {} answered; policy_swap events {:?}",
        f64::from(SWAPS) / took.as_secs_f64(),
        pct(&mut answer_us, 0.5),
        pct(&mut answer_us, 0.99),
        pct(&mut adopt_us, 0.5),
        pct(&mut adopt_us, 0.99),
        report.sent,
        report.answered,
        d.events.get("policy_swap")
    );
    assert_eq!(g, g0 + u64::from(SWAPS), "one generation per swap");
    assert_eq!(d.events.get("policy_swap").copied(), Some(u64::from(SWAPS)), "the worker adopted every swap: {d:?}");
    assert_eq!(report.lost(), 0, "no sequence number missing at origin: {report:?}\n{path}");
    assert!(report.sent >= 8_000, "{report:?}");
    assert_eq!(d.dropped_total, 0, "nothing of the stream dropped: {:?}", d.dropped);
    assert!(took < Duration::from_secs(15), "100 swaps a second (allowing a busy machine): {took:?}");
    assert_eq!(c.ok("health", json!({}))["adopted"], json!(g));
}

/// The mixed flood (every attack profile of `scrubber lab run --scenario mixed`) beside the
/// sequence stream, with SYN authentication on `auto`: `scrubctl capture` writes a pcapng that
/// tcpdump reads with the expected packets and whose comments name each packet's verdict and
/// drop reason; `scrubctl top` shows rates per reason and top talkers; the drop counters move in
/// the metrics; the SYN auto switches are logged.
#[test]
fn scrubctl_capture_of_a_mixed_flood_is_an_annotated_pcapng() {
    require_root!();
    let cfg = TempConfig::lab_with(&[(
        "[profiles.lab.quic]",
        "[profiles.lab.syn]\nwhen = \"auto\"\nauto_on_pps = 200\nauto_off_pps = 50\nauto_hold_secs = 1\n\n[profiles.lab.quic]",
    )]);
    let mut t = TestLab::with_services(|o| LabOptions { config: Some(cfg.0.clone()), ..o });
    start_json_daemon(&mut t);
    let sock = socket(&t).display().to_string();
    let ctl = |args: &[&str]| -> String {
        Cmd::new(scrubctl_bin().display().to_string())
            .args(&["--socket", &sock])
            .args(args)
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap_or_else(|e| panic!("scrubctl {args:?}: {e}"))
            .stdout
    };
    let pcap = t.dir().join("mixed.pcapng");
    let (s0, m0) = (t.stats(), metrics(&t));
    let path0 = PathSnapshot::take(&t);
    let stream = Stream::start(&t, 500, 20, Duration::from_secs(60));
    let wall0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let started: Value = serde_json::from_str(&ctl(&[
        "--json",
        "capture",
        "start",
        "--write",
        &pcap.display().to_string(),
        "--max-packets",
        "3000",
        "--duration",
        "30",
    ]))
    .unwrap();
    assert_eq!(started["max_packets"], 3000, "{started}");
    let flood = GenSpec { rate: 20_000, seconds: 3.0, ..GenSpec::attack(scrubber::lab::run::MIXED) };
    let top = std::thread::scope(|s| {
        let g = s.spawn(|| t.generate(&flood));
        std::thread::sleep(Duration::from_millis(1500));
        let top = ctl(&["top", "--count", "2"]);
        let g = g.join().expect("the generator thread");
        eprintln!("generator: {g:?}");
        top
    });
    let stopped: Value = serde_json::from_str(&ctl(&["--json", "capture", "stop"])).unwrap();
    let wall1 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let report = stream.stop();
    let d = t.stats().since(&s0);
    eprintln!("scrubber: {d:?}\ncapture: {stopped}\ntop:\n{top}");
    let path = PathSnapshot::take(&t).since(&path0);
    assert_eq!(report.lost(), 0, "the stream lost nothing during the flood: {report:?}\n{path}");

    // scrubctl top: two refreshes with rates per drop reason and top sources / destinations.
    assert_eq!(top.matches("scrubber top").count(), 2, "{top}");
    for reason in ["tcp_xmas", "tcp_null_flags"] {
        let line = top.lines().find(|l| l.starts_with(reason)).unwrap_or_else(|| panic!("top shows {reason}: {top}"));
        let pps: f64 = line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0.0);
        assert!(pps > 100.0, "{reason} rate: {line}");
        assert!(line.contains("198.18.1.") && line.contains("198.18.100.10"), "top talkers: {line}");
    }

    // tcpdump reads the file: as many packets as the capture wrote, time stamps of this run.
    let packets = stopped["packets"].as_u64().expect("packets written");
    assert!(packets >= 1000, "{stopped}");
    let out = Cmd::new("tcpdump")
        .args(&["-r", &pcap.display().to_string(), "-n", "-tt"])
        .timeout(Duration::from_secs(20))
        .run()
        .unwrap_or_else(|e| panic!("tcpdump -r: {e}"));
    assert_eq!(out.stdout.lines().count() as u64, packets, "tcpdump reads every packet");
    assert!(out.stdout.contains("Flags [FPU]"), "xmas segments in the file");
    for line in out.stdout.lines().take(5) {
        let ts: f64 = line.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        assert!(ts >= wall0.as_secs_f64() - 1.0 && ts <= wall1.as_secs_f64() + 1.0, "time stamp of {line}");
    }
    let xmas = Cmd::new("tcpdump")
        .args(&["-r", &pcap.display().to_string(), "-n", "tcp[13] & 0x29 == 0x29"])
        .timeout(Duration::from_secs(20))
        .run()
        .unwrap()
        .stdout
        .lines()
        .count();

    // Every packet annotated: verdict, and for drops the reason; reasons as counted.
    let file = read_pcapng(&pcap);
    assert_eq!(file.len() as u64, packets);
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for p in &file {
        let tags = p.tags();
        let verdict = tags.get("verdict").cloned().unwrap_or_else(|| panic!("no verdict: {p:?}"));
        assert!(["forward", "drop", "reply", "pass"].contains(&verdict.as_str()), "{p:?}");
        assert_eq!(tags.contains_key("reason"), verdict == "drop", "a reason exactly on drops: {p:?}");
        assert!(p.data.len() <= 256 && p.original_len as usize >= p.data.len(), "snaplen: {p:?}");
        let key = match tags.get("reason") {
            Some(r) => format!("drop {r}"),
            None => verdict,
        };
        *by.entry(key).or_default() += 1;
    }
    eprintln!("capture by annotation: {by:?}");
    assert_eq!(
        by.get("drop tcp_xmas").copied().unwrap_or(0) as usize,
        xmas,
        "the annotated xmas drops are the FPU segments"
    );
    let captured: BTreeSet<&str> = by.keys().filter_map(|k| k.strip_prefix("drop ")).collect();
    let counted: BTreeSet<&str> = d.dropped.keys().map(String::as_str).collect();
    assert!(captured.is_subset(&counted), "captured reasons {captured:?} were counted {counted:?}");
    for (reason, n) in &d.dropped {
        if *n * 10 >= d.dropped_total {
            assert!(captured.contains(reason.as_str()), "a tenth of the drops ({reason}) appears in the capture");
        }
    }
    assert!(captured.contains("tcp_xmas") && captured.contains("tcp_null_flags"), "{by:?}");
    assert!(by.contains_key("forward"), "the stream's frames: {by:?}");

    // The drop counters moved in the metrics exactly as in the stats.
    let m1 = metrics(&t);
    let xmas_reason = [("reason", "tcp_xmas")];
    let moved = m1.value("scrubber_dropped_packets_total", &xmas_reason)
        - m0.value("scrubber_dropped_packets_total", &xmas_reason);
    assert_eq!(moved, d.drops("tcp_xmas") as f64);

    // A filtered capture: only tcp_xmas drops.
    let filtered = t.dir().join("xmas.pcapng");
    ctl(&["capture", "start", "-w", &filtered.display().to_string(), "--reason", "tcp_xmas", "--max-packets", "50"]);
    t.generate(&GenSpec { rate: 20_000, count: 2_000, ..GenSpec::attack(&["tcp-xmas", "tcp-null"]) });
    let stopped: Value = serde_json::from_str(&ctl(&["--json", "capture", "stop"])).unwrap();
    assert_eq!(stopped["packets"], 50, "{stopped}");
    let file = read_pcapng(&filtered);
    assert_eq!(file.len(), 50);
    assert!(file.iter().all(|p| p.comment.as_deref() == Some("verdict=drop reason=tcp_xmas")), "{:?}", file[0]);

    // SYN authentication switched on by the flood's SYNs and off once they stopped; logged.
    let log_path = t.state().daemon.log.clone();
    let switches = wait_for("SYN authentication switched on and off", Duration::from_secs(8), || {
        let log = json_log(&log_path);
        let s: Vec<(String, String)> = log_events(&log, "SYN authentication switched")
            .iter()
            .map(|f| (f["prefix"].as_str().unwrap_or("").to_string(), f["state"].as_str().unwrap_or("").to_string()))
            .collect();
        (s.len() >= 2).then_some(s)
    });
    assert_eq!(
        switches[..2],
        [("198.18.100.0/24".to_string(), "on".to_string()), ("198.18.100.0/24".to_string(), "off".to_string())]
    );
    let log = json_log(&log_path);
    assert!(log_events(&log, "capture started").len() == 2 && log_events(&log, "capture stopped").len() == 2);
}
