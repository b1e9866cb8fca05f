//! The control socket: a Unix stream socket speaking newline-delimited JSON, one request, one
//! response with the request's `id` (`docs/control-protocol.md`). Read-only commands are
//! answered here; policy commands in `commands`, captures in `capture`.
//!
//! Limits: requests up to 1 MiB, a deadline for each request line, a cap on concurrent clients; a
//! bad request gets a structured error and never disturbs the workers (they publish counters
//! with `try_lock` and never wait on this thread). Each client has its own thread, so a slow or
//! silent client delays nobody else.

use super::Daemon;
use control::report::stats_json;
use dataplane::stats::Stats;
use dataplane::verdict::VerdictKind;
use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Protocol version announced in every response.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request accepted.
pub const MAX_REQUEST: usize = 1 << 20;
/// Most clients served at once.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has for each complete request line, counted from accept or from the end of the
/// previous reply; after it the client gets a `timeout` answer and is disconnected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The running server.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// Makes `path` ready to bind: creates its directory, replaces a stale socket (one nobody
/// listens on, left by a daemon that was killed), and refuses a live socket or anything that is
/// not a socket.
pub fn prepare_path(path: &PathBuf) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
            info!(path = %path.display(), "replaced a stale control socket");
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

impl Server {
    /// Binds the socket from the daemon's config and starts accepting.
    pub fn start(daemon: Arc<Daemon>) -> io::Result<Server> {
        let path = daemon.config.daemon.control_socket.clone();
        prepare_path(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("binding the control socket {}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(group) = daemon.config.daemon.control_group.as_deref() {
            let (gid, _) = group_entry(group).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("daemon.control_group: no group named `{group}`"))
            })?;
            std::os::unix::fs::chown(&path, None, Some(gid))?;
        }
        // Blocking accept (a client is served at once); `stop` wakes it with a connection.
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let clients = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) if stop2.load(Ordering::Relaxed) => break,
                    Ok((stream, _)) => {
                        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                            clients.fetch_sub(1, Ordering::AcqRel);
                            let mut s = stream;
                            let _ = writeln!(s, "{}", error(Value::Null, "busy", "too many control clients"));
                            continue;
                        }
                        let daemon = daemon.clone();
                        let clients = clients.clone();
                        let _ = std::thread::Builder::new().name("control-client".into()).spawn(move || {
                            if let Err(e) = serve(stream, &daemon) {
                                warn!("control client: {e}");
                            }
                            clients.fetch_sub(1, Ordering::AcqRel);
                        });
                    }
                    Err(e) => {
                        warn!("control socket accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(Server { stop, thread: Some(thread), path })
    }

    /// Stops accepting and removes the socket file.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept; if nothing can connect any more, leave the thread to exit
        // with the process.
        if let Some(t) = self.thread.take()
            && UnixStream::connect(&self.path).is_ok()
        {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn error(id: Value, code: &str, message: &str) -> Value {
    json!({"id": id, "version": PROTOCOL_VERSION, "ok": false, "error": {"code": code, "message": message}})
}

/// Gid of group `name` and its member user names, from /etc/group.
fn group_entry(name: &str) -> Option<(u32, Vec<String>)> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[0] == name)
                .then(|| (f[2].parse().ok(), f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect()))
        })
        .and_then(|(gid, members)| gid.map(|g| (g, members)))
}

/// User name of `uid`, from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// Root, or a member (primary or supplementary) of the configured control group.
fn authorized(cred: Option<dataplane::xsk::sys::PeerCredentials>, group: Option<&str>) -> bool {
    let Some(cred) = cred else { return false };
    if cred.uid == 0 {
        return true;
    }
    let Some((gid, members)) = group.and_then(group_entry) else { return false };
    cred.gid == gid || user_name(cred.uid).is_some_and(|u| members.contains(&u))
}

fn serve(stream: UnixStream, daemon: &Arc<Daemon>) -> io::Result<()> {
    let cred = dataplane::xsk::sys::peer_credentials(stream.as_raw_fd());
    let uid = cred.map(|c| c.uid);
    if !authorized(cred, daemon.config.daemon.control_group.as_deref()) {
        let mut s = stream;
        writeln!(s, "{}", error(Value::Null, "forbidden", "the control socket is for root and the control group"))?;
        warn!(peer_uid = uid, "refused a control client");
        return Ok(());
    }
    serve_requests(stream, REQUEST_TIMEOUT, uid, |req| handle(req, daemon, uid))
}

/// Reads a stream as if it had one timeout for everything until `deadline`, not one per read.
struct DeadlineReader {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A fixed timeout per read would let a client that sends a byte now and then keep its
        // client slot forever.
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Answers newline-delimited requests on `stream` with `answer` until the client leaves, breaks
/// a limit, or takes longer than `limit` to send a complete request line.
fn serve_requests(
    stream: UnixStream,
    limit: Duration,
    uid: Option<u32>,
    mut answer: impl FnMut(&Value) -> Value,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(limit))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(DeadlineReader { stream, deadline: Instant::now() + limit });
    loop {
        let mut line = Vec::new();
        let read = match (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let msg = format!("no complete request within {} s; closing", limit.as_secs_f64());
                let _ = writeln!(writer, "{}", error(Value::Null, "timeout", &msg));
                info!(peer_uid = uid, partial_bytes = line.len(), "closed an idle control client");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST {
            writeln!(writer, "{}", error(Value::Null, "too_large", "request exceeds 1 MiB"))?;
            return Ok(());
        }
        let response = match serde_json::from_slice::<Value>(&line) {
            Ok(req) => answer(&req),
            Err(e) => error(Value::Null, "bad_json", &e.to_string()),
        };
        writeln!(writer, "{response}")?;
        // The time spent answering is the daemon's, not the client's.
        reader.get_mut().deadline = Instant::now() + limit;
    }
}

/// Answers one request.
pub fn handle(req: &Value, daemon: &Arc<Daemon>, uid: Option<u32>) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(cmd) = req.get("cmd").and_then(Value::as_str) else {
        return error(id, "bad_request", "a request is an object with a string `cmd`");
    };
    match req.get("version") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            let msg = format!("protocol version {v} is not spoken here (this daemon speaks {PROTOCOL_VERSION})");
            return error(id, "version", &msg);
        }
    }
    let result = match cmd {
        "status" => Ok(status(daemon)),
        "stats" => Ok(stats(daemon)),
        "health" => Ok(health(daemon)),
        "capture_start" => super::capture::start(daemon, req, uid),
        "capture_stop" => super::capture::stop(daemon, uid),
        "capture_status" => super::capture::status(daemon),
        "fault_stall" => fault_stall(daemon, req),
        "fault_xdp_sync" => fault_xdp_sync(daemon, req),
        other => match super::commands::run(daemon, other, req, uid) {
            Some(r) => r,
            None => return error(id, "unknown_command", &format!("unknown command `{other}`")),
        },
    };
    match result {
        Ok(result) => json!({"id": id, "version": PROTOCOL_VERSION, "ok": true, "result": result}),
        Err((code, message)) => error(id, code, &message),
    }
}

fn status(d: &Daemon) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": d.started.elapsed().as_secs_f64(),
        "config": d.config_path.display().to_string(),
        "fail": format!("{:?}", d.config.dataplane.fail).to_lowercase(),
        "forward": format!("{:?}", d.config.forward.mode).to_lowercase(),
        "forwarder_only": d.forwarder_only,
        "policy_generation": d.cell.load().generation,
        // Tables advised onto transparent huge pages (0: THP is off; null: unknown).
        "huge_page_mib": dataplane::mem::huge_page_bytes().map(|b| b >> 20),
        "programs": d.programs.iter().map(|p| json!({
            "interface": p.ifname(), "mode": p.mode().to_string(), "taken_over": p.taken_over(),
        })).collect::<Vec<_>>(),
        "workers": d.workers.iter().map(|w| json!({
            "interface": w.interface, "queue": w.queue, "core": w.core,
            "egress": w.egress.as_ref().map(|(i, q)| json!({"interface": i, "queue": q})),
            "bind": if w.zero_copy { "zero-copy" } else { "copy" },
            "umem_pages": if w.umem_huge_pages { "huge" } else { "small" },
            "policy_generation": w.shared.generation.load(Ordering::Acquire),
        })).collect::<Vec<_>>(),
    })
}

fn health(d: &Daemon) -> Value {
    let alive = d.workers.iter().filter(|w| w.shared.running.load(Ordering::Acquire)).count();
    let adopted = d.workers.iter().map(|w| w.shared.generation.load(Ordering::Acquire)).min();
    let stalled: Vec<Value> = d
        .workers
        .iter()
        .filter(|w| w.stalled.load(Ordering::Acquire))
        .map(|w| json!({"interface": w.interface, "queue": w.queue}))
        .collect();
    json!({
        "ok": alive == d.workers.len() && stalled.is_empty(),
        "workers": d.workers.len(),
        "running": alive,
        "stalled": stalled,
        "generation": d.cell.load().generation,
        "adopted": adopted,
    })
}

/// `fault_stall {queue, ms}`: makes a worker stop making progress for a while, to exercise the
/// watchdog. Refused unless `daemon.fault_injection = true`.
fn fault_stall(d: &Daemon, args: &Value) -> Result<Value, (&'static str, String)> {
    if !d.config.daemon.fault_injection {
        return Err(("forbidden", "fault injection is off (daemon.fault_injection = false)".into()));
    }
    let queue = args.get("queue").and_then(Value::as_u64).unwrap_or(0) as u32;
    let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(1000).min(60_000);
    let w =
        d.workers.iter().find(|w| w.queue == queue).ok_or(("bad_request", format!("no worker on queue {queue}")))?;
    w.shared.stall_until_ns.store(super::now().mono_ns + ms * 1_000_000, Ordering::Relaxed);
    warn!(queue, ms, "fault injection: stalling a worker");
    Ok(json!({"queue": queue, "ms": ms}))
}

/// `fault_xdp_sync {count}`: the next `count` updates of the XDP prefix maps fail after writing
/// them, to exercise the rollback of a change. Refused unless `daemon.fault_injection = true`.
fn fault_xdp_sync(d: &Daemon, args: &Value) -> Result<Value, (&'static str, String)> {
    if !d.config.daemon.fault_injection {
        return Err(("forbidden", "fault injection is off (daemon.fault_injection = false)".into()));
    }
    let count = args.get("count").and_then(Value::as_u64).unwrap_or(1).min(100) as u32;
    d.fault_xdp_syncs.store(count, Ordering::Relaxed);
    warn!(count, "fault injection: XDP prefix map updates will fail");
    Ok(json!({"count": count}))
}

fn stats(d: &Daemon) -> Value {
    let mut total = Stats::default();
    let mut talkers = dataplane::topk::TopTalkers::default();
    let mut workers = Vec::new();
    let mut cpu_ns = 0u64;
    let mut rx = 0u64;
    for w in &d.workers {
        let report = match w.shared.report.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        total.add(&report.stats);
        talkers.merge(&report.talkers);
        cpu_ns += report.cpu_ns;
        rx += report.io.rx;
        let (ing, eg) = report.rings;
        let ring = |r: dataplane::xsk::socket::RingStats| {
            json!({"rx_dropped": r.rx_dropped, "rx_invalid": r.rx_invalid, "rx_ring_full": r.rx_ring_full,
                   "fill_ring_empty": r.fill_ring_empty, "tx_invalid": r.tx_invalid, "tx_ring_empty": r.tx_ring_empty})
        };
        workers.push(json!({
            "interface": w.interface, "queue": w.queue,
            "rx": report.io.rx, "tx_egress": report.io.tx_egress, "tx_ingress": report.io.tx_ingress,
            "tx_ring_full": report.io.tx_ring_full, "relocate_failed": report.io.relocate_failed,
            "tx_kicks": report.io.tx_kicks, "pass_dropped": report.pass_dropped,
            "cpu_ns": report.cpu_ns, "ring": ring(ing), "egress_ring": eg.map(ring),
            "stats": stats_json(&report.stats),
        }));
    }
    let xdp: serde_json::Map<String, Value> = d
        .programs
        .iter()
        .map(|p| {
            let c = p.counters();
            (
                p.ifname().to_string(),
                json!({"not_ip": c.not_ip, "local": c.local, "unprotected": c.unprotected,
                "redirected": c.redirected, "no_socket": c.no_socket, "malformed": c.malformed}),
            )
        })
        .collect();
    let processed = total.total_packets();
    let hitters = |v: Vec<dataplane::topk::Hitter>| {
        v.iter().map(|h| json!({"addr": h.addr.to_string(), "packets": h.count, "error": h.error})).collect::<Vec<_>>()
    };
    let top: serde_json::Map<String, Value> = dataplane::verdict::DropReason::ALL
        .iter()
        .filter(|r| total.drops_of(**r) > 0)
        .map(|r| {
            (
                r.name().to_string(),
                json!({"sources": hitters(talkers.top_sources(*r, 5)), "destinations": hitters(talkers.top_destinations(*r, 5))}),
            )
        })
        .collect();
    json!({
        "top": top,
        "rates": d.rates.json(),
        "rx": rx,
        "forwarded": total.packets_of(VerdictKind::Forward),
        "replied": total.packets_of(VerdictKind::Reply),
        "dropped_total": total.packets_of(VerdictKind::Drop),
        "totals": stats_json(&total),
        "amp": control::report::amp_json(&total, &d.cell.load().amp.catalogue),
        "workers": workers,
        "xdp": xdp,
        "cpu_ns": cpu_ns,
        "cpu_ns_per_packet": if processed > 0 { cpu_ns as f64 / processed as f64 } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Serves one end of a socket pair with a short deadline, answering every request with its id.
    fn serve_pair(limit: Duration) -> (UnixStream, mpsc::Receiver<(io::Result<()>, Instant)>) {
        let (server, client) = UnixStream::pair().unwrap();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let r = serve_requests(server, limit, None, |req| json!({"id": req["id"], "ok": true}));
            let _ = done_tx.send((r, Instant::now()));
        });
        client.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        (client, done)
    }

    #[test]
    fn trickling_client_is_closed_at_the_deadline() {
        let limit = Duration::from_millis(1000);
        let start = Instant::now();
        let (client, done) = serve_pair(limit);
        let mut writer = client.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        // Each byte comes well within a per-read timeout of `limit`; only the whole-request
        // deadline can end this client.
        let trickle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(3) {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let mut reader = BufReader::new(client);
        let mut line = String::new();
        reader.read_line(&mut line).expect("a timeout answer before the client's own read timeout");
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["error"]["code"], "timeout", "{reply}");
        line.clear();
        assert_eq!(reader.read_line(&mut line).unwrap(), 0, "the connection is closed after the answer");
        let (result, closed_at) = done.recv_timeout(Duration::from_secs(1)).unwrap();
        result.unwrap();
        let took = closed_at - start;
        // Without the deadline the trickle would hold the slot for 3 s and more.
        assert!(took >= limit && took < limit + Duration::from_millis(1200), "closed after {took:?}");
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
    }

    #[test]
    fn prompt_client_is_answered_and_each_request_gets_a_fresh_deadline() {
        let limit = Duration::from_millis(1200);
        let (client, done) = serve_pair(limit);
        let mut writer = client.try_clone().unwrap();
        let mut reader = BufReader::new(client);
        let mut line = String::new();
        // The pause between requests adds up to more than one deadline, but none is late.
        for id in 1..=3 {
            writer.write_all(format!("{{\"id\":{id},\"cmd\":\"health\"}}\n").as_bytes()).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            let reply: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(reply, json!({"id": id, "ok": true}));
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(writer);
        drop(reader);
        let (result, _) = done.recv_timeout(Duration::from_secs(1)).unwrap();
        result.unwrap();
    }
}
