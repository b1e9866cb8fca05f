//! Services the lab runs inside namespaces: a real HTTP server (python3 `http.server`) on the
//! origin's addresses, and a UDP sequence service (`scrubber lab udp-echo`) with its client
//! (`scrubber lab udp-probe`) that sends numbered requests from many source addresses and reports
//! which sequence numbers were answered.
//!
//! Wire format of the UDP service: 8 bytes magic `SCRBSEQ1`, 8 bytes sequence number (big
//! endian), optional padding. The service echoes a datagram that starts with the magic back to
//! its sender unchanged and ignores anything else.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// First 8 bytes of every sequence request and answer.
pub const MAGIC: &[u8; 8] = b"SCRBSEQ1";

/// The HTTP server: python3's `http.server` handler on a threading server, one listener per
/// address (IPv4 and IPv6), a listen backlog large enough for a burst of clients, and one line
/// on stdout once every listener is bound. argv: DIR PORT ADDR...
pub const HTTP_SERVER_PY: &str = r#"import functools, http.server, socket, sys, threading
directory, port, addrs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
class V4(http.server.ThreadingHTTPServer):
    request_queue_size = 512
class V6(V4):
    address_family = socket.AF_INET6
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
servers = [(V6 if ":" in a else V4)((a, port), handler) for a in addrs]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("listening on", " ".join(addrs), "port", port, flush=True)
threading.Event().wait()
"#;

/// Body of `/hello.txt` on the lab's HTTP server.
pub const HELLO_BODY: &str = "scrubber lab origin: hello\n";

/// Serves the sequence service on every address of `binds` until killed (one thread each).
pub fn udp_echo(binds: &[SocketAddr]) -> std::io::Result<()> {
    let mut sockets = Vec::new();
    for b in binds {
        let s = UdpSocket::bind(b).map_err(|e| std::io::Error::new(e.kind(), format!("bind {b}: {e}")))?;
        sockets.push(s);
    }
    println!("udp-echo: listening on {}", binds.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" "));
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((n, from)) if n >= 16 && &buf[..8] == MAGIC => {
                            let _ = s.send_to(&buf[..n], from);
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("udp-echo: {e}");
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// What [`udp_probe`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The service.
    pub target: SocketAddr,
    /// Source addresses; request `seq` leaves from `sources[seq % len]`.
    pub sources: Vec<IpAddr>,
    /// Number of requests (sequence numbers `0..count`).
    pub count: u64,
    /// Requests per second (0: as fast as possible).
    pub rate_pps: u64,
    /// How long to wait for answers after the last request.
    pub wait: Duration,
    /// Datagram payload size (at least 16).
    pub payload: usize,
}

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyUs {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
}

impl LatencyUs {
    /// Summary of `samples` (microseconds); all zero when empty.
    pub fn of(mut samples: Vec<u64>) -> LatencyUs {
        if samples.is_empty() {
            return LatencyUs::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        LatencyUs { p50: at(0.5), p99: at(0.99), max: samples[samples.len() - 1] }
    }
}

/// What [`udp_probe`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The service.
    pub target: String,
    /// Requests sent.
    pub sent: u64,
    /// Requests whose send failed (counted as sent = false).
    pub send_errors: u64,
    /// Distinct sequence numbers answered.
    pub answered: u64,
    /// Answers for a sequence number already answered.
    pub duplicates: u64,
    /// Answers that matched no request from that socket (wrong size, magic or number).
    pub bogus: u64,
    /// Source addresses used.
    pub sources: u64,
    /// Source addresses that got at least one answer.
    pub sources_answered: u64,
    /// Answered sequence numbers as inclusive ranges `[first, last]`.
    pub answered_ranges: Vec<(u64, u64)>,
    /// Round-trip times of answered requests.
    pub rtt_us: LatencyUs,
    /// Wall time of the whole probe, milliseconds.
    pub elapsed_ms: u64,
}

impl ProbeReport {
    /// Whether sequence number `seq` was answered.
    pub fn was_answered(&self, seq: u64) -> bool {
        self.answered_ranges.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }

    /// Requests sent and not answered.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.answered)
    }
}

struct Probe<'a> {
    o: &'a ProbeOptions,
    socks: Vec<UdpSocket>,
    len: usize,
    sent_at: Vec<Option<Instant>>,
    answered: Vec<bool>,
    src_ok: Vec<bool>,
    rtts: Vec<u64>,
    buf: Vec<u8>,
    r: ProbeReport,
}

impl Probe<'_> {
    /// Reads every pending answer on every socket.
    fn sweep(&mut self) {
        let n = self.socks.len() as u64;
        for (i, s) in self.socks.iter().enumerate() {
            // Errors (WouldBlock, or an ICMP error reported on the connected socket) end the socket's turn.
            while let Ok(got) = s.recv(&mut self.buf) {
                let seq = (got == self.len && &self.buf[..8] == MAGIC).then(|| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[8..16]);
                    u64::from_be_bytes(b)
                });
                match seq {
                    Some(q) if q < self.o.count && q % n == i as u64 => match self.sent_at[q as usize] {
                        Some(_) if self.answered[q as usize] => self.r.duplicates += 1,
                        Some(t) => {
                            self.answered[q as usize] = true;
                            self.src_ok[i] = true;
                            self.rtts.push(t.elapsed().as_micros() as u64);
                        }
                        None => self.r.bogus += 1,
                    },
                    _ => self.r.bogus += 1,
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.answered.iter().zip(&self.sent_at).all(|(a, s)| *a || s.is_none())
    }
}

/// Sends `count` numbered requests round-robin from `sources` (one socket each, connected to the
/// target) and collects the answers until every request is answered or `wait` has passed since
/// the last one was sent.
pub fn udp_probe(o: &ProbeOptions) -> std::io::Result<ProbeReport> {
    udp_probe_until(o, &AtomicBool::new(false))
}

/// [`udp_probe`] that stops sending early once `stop` is set (a stream that runs until its
/// owner is done: `scrubber lab udp-probe` sets it on SIGTERM), then collects the answers to what
/// it sent as usual.
pub fn udp_probe_until(o: &ProbeOptions, stop: &AtomicBool) -> std::io::Result<ProbeReport> {
    let t0 = Instant::now();
    if o.sources.is_empty() {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "udp-probe: no source addresses"));
    }
    if let Some(bad) = o.sources.iter().find(|s| s.is_ipv4() != o.target.is_ipv4()) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("udp-probe: source {bad} is not of the target's family ({})", o.target),
        ));
    }
    let mut socks = Vec::with_capacity(o.sources.len());
    for src in &o.sources {
        let s = UdpSocket::bind(SocketAddr::new(*src, 0))
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {src}: {e}")))?;
        s.connect(o.target).map_err(|e| std::io::Error::new(e.kind(), format!("connect {}: {e}", o.target)))?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let n = socks.len() as u64;
    let len = o.payload.clamp(16, 1472);
    let mut p = Probe {
        o,
        len,
        sent_at: vec![None; o.count as usize],
        answered: vec![false; o.count as usize],
        src_ok: vec![false; socks.len()],
        socks,
        rtts: Vec::new(),
        buf: vec![0u8; 2048],
        r: ProbeReport { target: o.target.to_string(), sources: n, ..ProbeReport::default() },
    };
    let mut req = vec![0u8; len];
    req[..8].copy_from_slice(MAGIC);
    let gap = if o.rate_pps > 0 { Duration::from_secs_f64(1.0 / o.rate_pps as f64) } else { Duration::ZERO };

    let start = Instant::now();
    for seq in 0..o.count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if !gap.is_zero() {
            let due = start + gap.mul_f64(seq as f64);
            while Instant::now() < due && !stop.load(Ordering::Relaxed) {
                p.sweep();
                let left = due.saturating_duration_since(Instant::now());
                thread::sleep(left.min(Duration::from_millis(1)));
            }
        }
        req[8..16].copy_from_slice(&seq.to_be_bytes());
        p.sent_at[seq as usize] = Some(Instant::now());
        match p.socks[(seq % n) as usize].send(&req) {
            Ok(_) => p.r.sent += 1,
            Err(_) => {
                p.sent_at[seq as usize] = None;
                p.r.send_errors += 1;
            }
        }
        if seq % 64 == 63 {
            p.sweep();
        }
    }
    let deadline = Instant::now() + o.wait;
    loop {
        p.sweep();
        if p.done() || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }

    let mut r = p.r;
    r.answered = p.answered.iter().filter(|a| **a).count() as u64;
    r.sources_answered = p.src_ok.iter().filter(|a| **a).count() as u64;
    r.answered_ranges = ranges(p.answered.iter().enumerate().filter(|(_, a)| **a).map(|(i, _)| i as u64));
    r.rtt_us = LatencyUs::of(p.rtts);
    r.elapsed_ms = t0.elapsed().as_millis() as u64;
    Ok(r)
}

/// Collapses an increasing sequence into inclusive ranges.
fn ranges(it: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for x in it {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == x => *b = x,
            _ => out.push((x, x)),
        }
    }
    out
}

/// Parses a source list: comma-separated addresses or inclusive ranges `A-B` of one family
/// whose addresses differ only in the last 16 bits (IPv6) or 8 bits (IPv4).
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| s.trim().parse::<IpAddr>().map_err(|e| format!("{s:?}: {e}"));
        match part.split_once('-') {
            None => {
                out.insert(parse(part)?);
            }
            Some((a, b)) => match (parse(a)?, parse(b)?) {
                (IpAddr::V4(a), IpAddr::V4(b)) if a.octets()[..3] == b.octets()[..3] && a <= b => {
                    let [p, q, r, lo] = a.octets();
                    for x in lo..=b.octets()[3] {
                        out.insert(IpAddr::from([p, q, r, x]));
                    }
                }
                (IpAddr::V6(a), IpAddr::V6(b)) if a.segments()[..7] == b.segments()[..7] && a <= b => {
                    let mut s = a.segments();
                    for x in a.segments()[7]..=b.segments()[7] {
                        s[7] = x;
                        out.insert(IpAddr::from(s));
                    }
                }
                _ => return Err(format!("{part:?}: a range is FIRST-LAST of one family differing in the last part")),
            },
        }
    }
    if out.is_empty() {
        return Err("no source addresses".into());
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn sources_and_ranges() {
        let v = parse_sources("198.18.1.1-198.18.1.3, 2001:2:0:1::fe-2001:2:0:1::100,198.18.1.2").unwrap();
        assert_eq!(v.len(), 3 + 3);
        assert!(parse_sources("198.18.1.1-198.18.2.1").is_err());
        assert!(parse_sources("").is_err());
        assert_eq!(ranges([0, 1, 2, 5, 7, 8].into_iter()), vec![(0, 2), (5, 5), (7, 8)]);
        assert_eq!(LatencyUs::of(vec![5, 1, 3]), LatencyUs { p50: 3, p99: 5, max: 5 });
    }

    #[test]
    fn probe_against_local_echo() {
        // Loopback only: an echo on 127.0.0.1, probed from three 127/8 sources.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut k = 0u64;
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                k += 1;
                // Drop every tenth request, so the report must name what was missed.
                if !k.is_multiple_of(10) && &buf[..8] == MAGIC {
                    let _ = server.send_to(&buf[..n], from);
                }
            }
        });
        let sources = (1..=3).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect();
        let o =
            ProbeOptions { target, sources, count: 100, rate_pps: 0, wait: Duration::from_millis(300), payload: 32 };
        let r = udp_probe(&o).unwrap();
        assert_eq!((r.sent, r.answered, r.sources, r.sources_answered), (100, 90, 3, 3));
        assert!(!r.was_answered(9) && r.was_answered(0) && r.was_answered(10));
        assert_eq!(r.lost(), 10);
    }
}
