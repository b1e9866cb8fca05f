//! `capture start` / `capture stop`: samples of what the workers decided, written to a pcapng
//! file that tcpdump and Wireshark read, each packet annotated (comment option) with its verdict,
//! drop reason and tags such as a QUIC SNI.
//!
//! Workers copy matching frames into a fixed pool of buffers (`dataplane::capture`); a writer
//! thread here drains them, so the workers never wait on the disk. One capture at a time; it ends
//! at its packet limit, its duration, or `capture stop`.

use super::{Daemon, now};
use dataplane::capture::{Filter, Session, reason_bit, verdict_bit};
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// A running capture.
#[derive(Debug)]
pub struct Running {
    session: Arc<Session>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
    path: PathBuf,
    started: Instant,
}

/// The daemon's capture slot.
#[derive(Debug, Default)]
pub struct Captures {
    running: Mutex<Option<Running>>,
}

type CmdResult = Result<Value, (&'static str, String)>;

fn bad(msg: impl Into<String>) -> (&'static str, String) {
    ("bad_request", msg.into())
}

/// Parses the filter arguments of `capture start`.
fn filter(d: &Daemon, args: &Value) -> Result<Filter, (&'static str, String)> {
    let mut f = Filter::default();
    for v in args.get("verdicts").and_then(Value::as_array).into_iter().flatten() {
        let name = v.as_str().ok_or_else(|| bad("`verdicts` holds verdict names"))?;
        f.verdicts |= verdict_bit(name).ok_or_else(|| bad(format!("unknown verdict `{name}`")))?;
    }
    for v in args.get("reasons").and_then(Value::as_array).into_iter().flatten() {
        let name = v.as_str().ok_or_else(|| bad("`reasons` holds drop reason names"))?;
        f.reasons |= reason_bit(name).ok_or_else(|| bad(format!("unknown drop reason `{name}`")))?;
    }
    if let Some(p) = args.get("prefix").and_then(Value::as_str) {
        f.prefix = Some(p.parse().map_err(|e| bad(format!("`prefix`: {e}")))?);
    }
    if let Some(name) = args.get("vector").and_then(Value::as_str) {
        let policy = d.cell.load();
        let index = policy
            .amp
            .catalogue
            .vectors()
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| bad(format!("no amplification vector named `{name}`")))?;
        f.vector = Some(index as u8);
    }
    Ok(f)
}

/// Creates `path` for writing, never through an existing file or link: a predictable name in a
/// shared directory (the default is in /tmp) must not let anyone point the daemon's write at
/// another file.
fn create_new(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(e.kind(), "exists (a capture never writes over a file or through a link)")
        } else {
            e
        }
    })
}

/// `capture_start`.
pub fn start(d: &Arc<Daemon>, args: &Value, uid: Option<u32>) -> CmdResult {
    let mut slot = d.captures.running.lock().map_err(|_| ("internal", "capture lock poisoned".to_string()))?;
    if let Some(r) = slot.as_ref()
        && r.thread.as_ref().is_some_and(|t| !t.is_finished())
    {
        return Err(("busy", format!("a capture to {} is running; stop it first", r.path.display())));
    }
    let f = filter(d, args)?;
    let max_packets = args.get("max_packets").and_then(Value::as_u64).unwrap_or(1000).clamp(1, 10_000_000);
    let duration =
        Duration::from_secs_f64(args.get("duration_s").and_then(Value::as_f64).unwrap_or(60.0).clamp(0.1, 86_400.0));
    let snaplen = args.get("snaplen").and_then(Value::as_u64).unwrap_or(256) as usize;
    let chosen = args.get("path").and_then(Value::as_str);
    // The daemon writes as root: a control-group member naming the path could create a file
    // anywhere, so only root chooses it.
    if chosen.is_some() && uid != Some(0) {
        return Err(("forbidden", "only root may choose a capture's path; leave `path` out for the default".into()));
    }
    let path = PathBuf::from(chosen.map(str::to_string).unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("/tmp/scrubber-{}-{:09}.pcapng", t.as_secs(), t.subsec_nanos())
    }));
    let file = create_new(&path).map_err(|e| ("io", format!("{}: {e}", path.display())))?;
    let session = Arc::new(Session::new(f, snaplen, max_packets, 4096));
    let stop = Arc::new(AtomicBool::new(false));
    // Map the workers' monotonic stamps to wall-clock time.
    let wall0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mono0 = now().mono_ns;
    let (s2, stop2, d2) = (session.clone(), stop.clone(), d.clone());
    let snap = session.snaplen as u32;
    let thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || -> Result<u64, String> {
            let mut w = PcapNgWriter::new(std::io::BufWriter::new(file)).map_err(|e| e.to_string())?;
            // Timestamps are written in nanoseconds (if_tsresol 9; the default would be µs).
            let options = vec![InterfaceDescriptionOption::IfTsResol(9)];
            w.write_pcapng_block(InterfaceDescriptionBlock { linktype: DataLink::ETHERNET, snaplen: snap, options })
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + duration;
            let mut written = 0u64;
            loop {
                let mut idle = true;
                while let Some(rec) = s2.next() {
                    idle = false;
                    let ts = wall0 + Duration::from_nanos(rec.mono_ns.saturating_sub(mono0));
                    let block = EnhancedPacketBlock {
                        interface_id: 0,
                        timestamp: ts,
                        original_len: rec.len,
                        data: Cow::Borrowed(&rec.data[..rec.kept as usize]),
                        options: vec![EnhancedPacketOption::Comment(Cow::Owned(rec.annotation()))],
                    };
                    let r = w.write_pcapng_block(block).map_err(|e| e.to_string());
                    s2.recycle(rec);
                    r?;
                    written += 1;
                }
                let done = stop2.load(Ordering::Relaxed) || Instant::now() >= deadline || s2.exhausted();
                if done && idle {
                    break;
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Detach the session (if it is still the published one) and flush.
            let current = d2.shared.capture.load();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &s2)) {
                d2.shared.capture.store(None);
            }
            while let Some(rec) = s2.next() {
                s2.recycle(rec);
            }
            use std::io::Write;
            w.into_inner().flush().map_err(|e| e.to_string())?;
            info!(packets = written, "capture finished");
            Ok(written)
        })
        .map_err(|e| ("internal", format!("cannot start the capture writer: {e}")))?;
    d.shared.capture.store(Some(session));
    info!(peer_uid = uid, path = %path.display(), max_packets, duration_s = duration.as_secs_f64(), "capture started");
    *slot = Some(Running {
        session: d.shared.capture.load_full().expect("just stored"),
        stop,
        thread: Some(thread),
        path: path.clone(),
        started: Instant::now(),
    });
    Ok(json!({"path": path.display().to_string(), "max_packets": max_packets, "duration_s": duration.as_secs_f64()}))
}

/// `capture_stop`: ends the running capture (if any) and reports it.
pub fn stop(d: &Daemon, uid: Option<u32>) -> CmdResult {
    let mut slot = d.captures.running.lock().map_err(|_| ("internal", "capture lock poisoned".to_string()))?;
    let Some(mut r) = slot.take() else {
        return Err(("not_running", "no capture has been started".into()));
    };
    r.stop.store(true, Ordering::Relaxed);
    let written = match r.thread.take().map(|t| t.join()) {
        Some(Ok(Ok(n))) => n,
        Some(Ok(Err(e))) => return Err(("io", e)),
        _ => {
            warn!("the capture writer failed");
            r.session.taken()
        }
    };
    info!(peer_uid = uid, path = %r.path.display(), packets = written, "capture stopped");
    Ok(json!({
        "path": r.path.display().to_string(),
        "packets": written,
        "missed": r.session.missed(),
        "seconds": r.started.elapsed().as_secs_f64(),
    }))
}

/// `capture_status`.
pub fn status(d: &Daemon) -> CmdResult {
    let slot = d.captures.running.lock().map_err(|_| ("internal", "capture lock poisoned".to_string()))?;
    Ok(match slot.as_ref() {
        None => json!({"running": false}),
        Some(r) => json!({
            "running": r.thread.as_ref().is_some_and(|t| !t.is_finished()),
            "path": r.path.display().to_string(),
            "packets": r.session.taken(),
            "missed": r.session.missed(),
            "seconds": r.started.elapsed().as_secs_f64(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_file_is_never_an_existing_file_or_link() {
        let dir = std::env::temp_dir().join(format!("scrubber-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.join("link.pcapng");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = dir.join("dangling.pcapng");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        for p in [&victim, &link, &dangling] {
            let e = create_new(p).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{}", p.display());
            assert!(e.to_string().contains("never writes over"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!dir.join("nowhere").exists());
        create_new(&dir.join("new.pcapng")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
