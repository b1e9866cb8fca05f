//! Traffic the lab drives through a running scrubber: the attack generator (`scrubber gen` in
//! the attacker namespace, or in the edge namespace for benchmarks) and the legitimate load (real
//! curl clients from many of the client's source addresses, in parallel, and the UDP sequence
//! probe).

use super::cmd::{Cmd, CmdError, Output};
use super::services::{LatencyUs, ProbeReport};
use super::topo::{self, HTTP_PORT, ORIGIN_V4, ORIGIN_V6, Role, UDP_ECHO_PORT};
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The attacker's gateway (edge:e-a).
pub const ATTACKER_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
/// Where spoofed IPv4 attack sources come from by default: the clients' own /24, so prefix-based
/// filters cannot separate attack from legitimate traffic, but not the addresses of its live
/// hosts (198.18.1.1-200, `topo::CLIENT_SOURCES`): a host that is up answers the scrubber's SYN-ACK
/// challenge to its spoofed address with an RST and so verifies it (verification proves an
/// address answers, not who sends). Not the edge router's own address (198.18.1.254) either: a
/// router drops packets claiming to come from itself (martians) without counting them anywhere.
pub const ATTACK_SOURCES: &str = "198.18.1.201-198.18.1.253";
/// The IPv6 counterpart: the clients' /64 above the block their live addresses are in (::1-::c8).
pub const ATTACK_SOURCES_V6: &str = "2001:2:0:1::1:0-2001:2:0:1:ffff:ffff:ffff:ffff";

/// One run of `scrubber gen`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenSpec {
    /// Namespace it runs in (attacker; edge for benchmarks, skipping the router).
    pub role: Role,
    /// Interface it sends on.
    pub interface: String,
    /// Next hop whose MAC it resolves.
    pub gateway: IpAddr,
    /// Profiles (`scrubber gen --profile`), mixed round-robin.
    pub profiles: Vec<String>,
    /// Spoofed source range.
    pub src: String,
    /// Destination.
    pub dst: IpAddr,
    /// Destination port (profile default when `None`).
    pub dport: Option<u16>,
    /// Packets per second (0: as fast as it can).
    pub rate: u64,
    /// Seconds to send for.
    pub seconds: f64,
    /// Stop after this many frames (0: no limit).
    pub count: u64,
    /// Core to pin it to.
    pub core: Option<usize>,
    /// `quic-initial` only: which kinds of Initials (`--quic-kind`; the generator's mix when `None`).
    pub quic_kind: Option<String>,
    /// `udp-amp`: one vector's responses only (`--vector`).
    pub vector: Option<String>,
    /// `udp`: frame size without FCS (`--size`; the generator's default when `None`).
    pub size: Option<usize>,
    /// TX queue of `interface` (`--queue`).
    pub queue: u32,
}

impl GenSpec {
    /// `profiles` from the attacker to the protected IPv4 service, spoofed from the clients' range,
    /// one second as fast as possible, pinned to core 0.
    pub fn attack(profiles: &[&str]) -> GenSpec {
        GenSpec {
            role: Role::Attacker,
            interface: "a0".into(),
            gateway: ATTACKER_GATEWAY.into(),
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            src: ATTACK_SOURCES.into(),
            dst: ORIGIN_V4.into(),
            dport: None,
            rate: 0,
            seconds: 1.0,
            count: 0,
            core: Some(0),
            quic_kind: None,
            vector: None,
            size: None,
            queue: 0,
        }
    }

    /// The IPv6 variant of [`GenSpec::attack`].
    pub fn attack_v6(profiles: &[&str]) -> GenSpec {
        GenSpec {
            gateway: "2001:2:0:2::fe".parse().expect("valid"),
            src: ATTACK_SOURCES_V6.into(),
            dst: ORIGIN_V6.into(),
            ..GenSpec::attack(profiles)
        }
    }

    /// The command line with binary `bin`.
    pub fn argv(&self, bin: &Path) -> Vec<String> {
        let mut v: Vec<String> = vec![bin.display().to_string(), "gen".into()];
        let mut kv = |k: &str, x: String| {
            v.push(k.to_string());
            v.push(x);
        };
        kv("--interface", self.interface.clone());
        if self.queue > 0 {
            kv("--queue", self.queue.to_string());
        }
        kv("--gateway", self.gateway.to_string());
        kv("--profile", self.profiles.join(","));
        kv("--src", self.src.clone());
        kv("--dst", self.dst.to_string());
        if let Some(p) = self.dport {
            kv("--dport", p.to_string());
        }
        kv("--rate", self.rate.to_string());
        kv("--seconds", format!("{}", self.seconds));
        if self.count > 0 {
            kv("--count", self.count.to_string());
        }
        if let Some(c) = self.core {
            kv("--core", c.to_string());
        }
        if let Some(k) = &self.quic_kind {
            kv("--quic-kind", k.clone());
        }
        if let Some(name) = &self.vector {
            kv("--vector", name.clone());
        }
        if let Some(size) = self.size {
            kv("--size", size.to_string());
        }
        v.push("--json".into());
        v.push("--quiet".into());
        v
    }

    /// How long to let it run before killing it.
    pub fn limit(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0)) + Duration::from_secs(15)
    }
}

/// The legitimate load of a lab run.
#[derive(Clone, Debug, PartialEq)]
pub struct LegitOptions {
    /// How long to keep making requests.
    pub duration: Duration,
    /// IPv4 sources, used round-robin.
    pub v4_sources: Vec<IpAddr>,
    /// IPv6 sources, used round-robin.
    pub v6_sources: Vec<IpAddr>,
    /// Concurrent HTTP requests per round (IPv4; a third as many over IPv6).
    pub per_round: usize,
    /// Limit of one HTTP transfer.
    pub max_time: Duration,
    /// UDP sequence requests per second (0: no UDP probe).
    pub udp_rate: u64,
    /// Real QUIC clients against origin's QUIC service (which must be running), if any.
    pub quic: Option<QuicLegit>,
}

/// The QUIC part of the legitimate load: `scrubber lab quic-client` from every client source
/// (IPv4 and IPv6 interleaved) for the whole duration.
#[derive(Clone, Debug, PartialEq)]
pub struct QuicLegit {
    /// The service's certificate (`Lab::quic_cert`).
    pub ca: PathBuf,
    /// New connections per second.
    pub rate: f64,
    /// Every n-th connection's ClientHello spans two Initials (0: none).
    pub split_hello_every: u64,
}

impl LegitOptions {
    /// Every client source, 24 concurrent requests per round, 2 s per transfer, 200 UDP
    /// requests per second, for `duration`.
    pub fn new(duration: Duration) -> LegitOptions {
        LegitOptions {
            duration,
            v4_sources: topo::client_sources_v4(),
            v6_sources: topo::client_sources_v6(),
            per_round: 24,
            max_time: Duration::from_secs(2),
            udp_rate: 200,
            quic: None,
        }
    }
}

/// Live progress of the legitimate load (read by the live table).
#[derive(Debug, Default)]
pub struct LegitProgress {
    /// HTTP requests finished.
    pub attempts: AtomicU64,
    /// HTTP requests that got a 200 from the right source.
    pub succeeded: AtomicU64,
}

/// HTTP part of [`LegitReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpTotals {
    /// Requests made.
    pub attempts: u64,
    /// Requests that got a 200 from the right source.
    pub succeeded: u64,
    /// Distinct sources with at least one success.
    pub sources: u64,
    /// Distinct sources used.
    pub sources_used: u64,
    /// Latency of successful requests.
    pub latency_us: LatencyUs,
    /// TCP connect time of the successful requests that were their source's first of the run
    /// (under SYN authentication, the ones challenged).
    pub first_connect_us: LatencyUs,
    /// TCP connect time of the other successful requests.
    pub repeat_connect_us: LatencyUs,
    /// A few failures, for the report (`source: error`).
    pub sample_failures: Vec<String>,
}

/// What the legitimate clients saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LegitReport {
    /// HTTP requests plus UDP requests (plus QUIC connections, when they ran).
    pub attempts: u64,
    /// HTTP successes plus UDP answers (plus completed QUIC handshakes).
    pub succeeded: u64,
    /// Distinct client addresses that completed at least one HTTP request.
    pub sources: u64,
    /// Real HTTP clients (curl) against origin's server, IPv4 and IPv6.
    pub http: HttpTotals,
    /// The UDP sequence probe (IPv4, every client source), if it ran.
    pub udp: Option<ProbeReport>,
    /// Why the UDP probe did not report, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_error: Option<String>,
    /// Real QUIC clients (quinn) against origin's QUIC service, if they ran: handshakes and
    /// echoed streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<super::quic::ClientReport>,
    /// Why the QUIC clients did not report, if they failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_error: Option<String>,
}

const CURL_FORMAT: &str =
    "%{url_effective}\t%{http_code}\t%{exitcode}\t%{time_total}\t%{local_ip}\t%{time_connect}\t%{errormsg}\n";

/// One result line of [`curl_parallel`].
#[derive(Clone, Debug, PartialEq)]
pub struct CurlLine {
    /// Source the request was bound to.
    pub source: IpAddr,
    /// Whether it got a 200 from that source.
    pub ok: bool,
    /// Total time, seconds.
    pub time_s: f64,
    /// Time until the TCP connection was established, seconds.
    pub connect_s: f64,
    /// curl's error message.
    pub error: String,
}

/// One GET of `/hello.txt` on `target` from each of `sources`, all at once (`curl --parallel`),
/// in namespace `ns`. A source with no result line counts as failed.
pub fn curl_parallel(
    ns: &str,
    target: IpAddr,
    sources: &[IpAddr],
    max_time: Duration,
) -> Result<Vec<CurlLine>, CmdError> {
    let url = super::clients::http_url(target, HTTP_PORT, "/hello.txt");
    let mut c = Cmd::new("curl").args(&["--parallel", "--parallel-max", "64"]);
    for (i, src) in sources.iter().enumerate() {
        if i > 0 {
            c = c.arg("--next");
        }
        c = c
            .args(&["-sS", "-g", "-o", "/dev/null", "-w", CURL_FORMAT])
            .args(&["--max-time", &format!("{:.3}", max_time.as_secs_f64())])
            .args(&["--interface", &format!("host!{src}")])
            .arg(format!("{url}?src={src}"));
    }
    let out = c.netns(ns).timeout(max_time + Duration::from_secs(5)).ok_codes(&(0..=255).collect::<Vec<_>>()).run()?;
    let mut lines = Vec::with_capacity(sources.len());
    for src in sources {
        let tag = format!("src={src}\t");
        let line = out.stdout.lines().map(|l| format!("{l}\t")).find(|l| l.contains(&tag));
        let Some(line) = line else {
            lines.push(CurlLine {
                source: *src,
                ok: false,
                time_s: 0.0,
                connect_s: 0.0,
                error: "no result from curl".into(),
            });
            continue;
        };
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let ok = get(1) == "200" && get(2) == "0" && get(4).parse::<IpAddr>().ok() == Some(*src);
        lines.push(CurlLine {
            source: *src,
            ok,
            time_s: get(3).parse().unwrap_or(0.0),
            connect_s: get(5).parse().unwrap_or(0.0),
            error: if ok { String::new() } else { format!("http {} exit {} {}", get(1), get(2), get(6)) },
        });
    }
    Ok(lines)
}

/// The JSON report of a client command run on a thread, or why there is none.
fn joined_report<R: serde::de::DeserializeOwned>(
    h: std::thread::JoinHandle<Result<Output, CmdError>>,
    what: &str,
) -> Result<R, String> {
    match h.join() {
        Ok(Ok(out)) => serde_json::from_str(&out.stdout).map_err(|e| format!("{what} output: {e}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{what} thread panicked")),
    }
}

/// Runs the legitimate load in namespace `client_ns` until `o.duration` has passed or `stop` is
/// set: rounds of concurrent HTTP requests from rotating sources, and (in a second thread) the
/// UDP sequence probe (`bin lab udp-probe`). Blocks; run it on a thread.
pub fn run_legit(
    client_ns: &str,
    bin: &Path,
    o: &LegitOptions,
    progress: &LegitProgress,
    stop: &AtomicBool,
) -> LegitReport {
    let start = Instant::now();
    let udp = (o.udp_rate > 0 && !o.v4_sources.is_empty()).then(|| {
        let count = (o.udp_rate as f64 * o.duration.as_secs_f64()).max(1.0) as u64;
        let first = o.v4_sources[0];
        let last = o.v4_sources[o.v4_sources.len() - 1];
        let argv: Vec<String> = vec![
            bin.display().to_string(),
            "lab".into(),
            "udp-probe".into(),
            "--target".into(),
            SocketAddr::new(ORIGIN_V4.into(), UDP_ECHO_PORT).to_string(),
            "--sources".into(),
            format!("{first}-{last}"),
            "--count".into(),
            count.to_string(),
            "--rate".into(),
            o.udp_rate.to_string(),
            "--wait-ms".into(),
            "1000".into(),
        ];
        let cmd = Cmd::from_argv(&argv).netns(client_ns).timeout(o.duration + Duration::from_secs(15));
        std::thread::spawn(move || cmd.run())
    });
    let quic = o.quic.as_ref().map(|q| {
        let mut sources = o.v4_sources.clone();
        sources.extend(o.v6_sources.iter().copied());
        let co = super::quic::ClientOptions {
            targets: vec![
                SocketAddr::new(ORIGIN_V4.into(), super::quic::QUIC_PORT),
                SocketAddr::new(ORIGIN_V6.into(), super::quic::QUIC_PORT),
            ],
            sources,
            ca: q.ca.clone(),
            count: 0,
            duration: Some(o.duration),
            rate: q.rate,
            concurrency: 64,
            bytes: 4096,
            split_hello_every: q.split_hello_every,
            timeout: Duration::from_secs(5),
        };
        let cmd = Cmd::from_argv(&super::quic::client_argv(bin, &co))
            .netns(client_ns)
            .timeout(o.duration + Duration::from_secs(20));
        std::thread::spawn(move || cmd.run())
    });

    let mut http = HttpTotals::default();
    let mut ok_sources = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut latencies = Vec::new();
    let (mut first_connect, mut repeat_connect) = (Vec::new(), Vec::new());
    let (mut i4, mut i6) = (0usize, 0usize);
    let n6 = o.per_round.div_ceil(3);
    while start.elapsed() < o.duration && !stop.load(Ordering::Relaxed) {
        for (target, pool, at, n) in [
            (IpAddr::from(ORIGIN_V4), &o.v4_sources, &mut i4, o.per_round),
            (IpAddr::from(ORIGIN_V6), &o.v6_sources, &mut i6, n6),
        ] {
            if pool.is_empty() || n == 0 {
                continue;
            }
            let srcs: Vec<IpAddr> = (0..n.min(pool.len())).map(|k| pool[(*at + k) % pool.len()]).collect();
            *at = (*at + srcs.len()) % pool.len();
            let lines = curl_parallel(client_ns, target, &srcs, o.max_time).unwrap_or_else(|e| {
                let line =
                    |s: &IpAddr| CurlLine { source: *s, ok: false, time_s: 0.0, connect_s: 0.0, error: e.to_string() };
                srcs.iter().map(line).collect()
            });
            for l in lines {
                http.attempts += 1;
                let first = used.insert(l.source);
                if l.ok {
                    http.succeeded += 1;
                    ok_sources.insert(l.source);
                    latencies.push((l.time_s * 1e6) as u64);
                    let connect = if first { &mut first_connect } else { &mut repeat_connect };
                    connect.push((l.connect_s * 1e6) as u64);
                } else if http.sample_failures.len() < 5 {
                    http.sample_failures.push(format!("{}: {}", l.source, l.error));
                }
            }
            progress.attempts.store(http.attempts, Ordering::Relaxed);
            progress.succeeded.store(http.succeeded, Ordering::Relaxed);
        }
    }
    http.sources = ok_sources.len() as u64;
    http.sources_used = used.len() as u64;
    http.latency_us = LatencyUs::of(latencies);
    http.first_connect_us = LatencyUs::of(first_connect);
    http.repeat_connect_us = LatencyUs::of(repeat_connect);

    let mut report = LegitReport { sources: http.sources, ..LegitReport::default() };
    if let Some(h) = udp {
        match joined_report::<ProbeReport>(h, "udp-probe") {
            Ok(r) => report.udp = Some(r),
            Err(e) => report.udp_error = Some(e),
        }
    }
    if let Some(h) = quic {
        match joined_report::<super::quic::ClientReport>(h, "quic-client") {
            Ok(r) => report.quic = Some(r),
            Err(e) => report.quic_error = Some(e),
        }
    }
    report.attempts =
        http.attempts + report.udp.as_ref().map_or(0, |u| u.sent) + report.quic.as_ref().map_or(0, |q| q.attempts);
    report.succeeded = http.succeeded
        + report.udp.as_ref().map_or(0, |u| u.answered)
        + report.quic.as_ref().map_or(0, |q| q.handshakes);
    report.http = http;
    report
}

/// Runs [`run_legit`] on a thread.
pub fn spawn_legit(
    client_ns: String,
    bin: PathBuf,
    o: LegitOptions,
    progress: Arc<LegitProgress>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<LegitReport> {
    std::thread::spawn(move || run_legit(&client_ns, &bin, &o, &progress, &stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_argv_names_every_option() {
        let mut g = GenSpec::attack(&["tcp-xmas", "tcp-null"]);
        g.rate = 1000;
        g.seconds = 2.5;
        g.dport = Some(7);
        let a = g.argv(Path::new("/bin/scrubber")).join(" ");
        assert_eq!(
            a,
            "/bin/scrubber gen --interface a0 --gateway 198.18.2.254 --profile tcp-xmas,tcp-null --src 198.18.1.201-198.18.1.253 \
             --dst 198.18.100.10 --dport 7 --rate 1000 --seconds 2.5 --core 0 --json --quiet"
        );
        let stun = GenSpec { vector: Some("stun".into()), ..GenSpec::attack(&["udp-amp"]) };
        assert!(
            stun.argv(Path::new("s")).join(" ").contains("--profile udp-amp --src")
                && stun.argv(Path::new("s")).join(" ").contains("--core 0 --vector stun --json")
        );
        let v6 = GenSpec::attack_v6(&["udp"]);
        assert_eq!((v6.dst.to_string(), v6.src.as_str()), ("2001:2:0:100::10".to_string(), ATTACK_SOURCES_V6));
        assert_eq!(g.limit(), Duration::from_secs_f64(17.5));
    }
}
