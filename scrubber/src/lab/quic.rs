//! A real QUIC server and client for the lab (`scrubber lab quic-server`, `scrubber lab
//! quic-client`): quinn with rustls on ring, TLS 1.3, a self-signed certificate made at start.
//!
//! The server (in origin) accepts connections on the service addresses, port 443, and echoes
//! each bidirectional stream back; it writes its certificate (DER) where the client can load it
//! as its only trust anchor, so the client verifies the server for real.
//!
//! The client (in client) makes connections from many source addresses at a fixed rate, each
//! from a fresh UDP socket (so every connection is a new 4-tuple and its first Initial is checked
//! by the scrubber), completes the handshake, sends a request on a stream and reads the echo
//! (1-RTT data in short-header packets), then closes. Every `split_hello_every`-th connection
//! offers a long ALPN list, so its ClientHello (about 2 KB) spans two Initials, as large
//! post-quantum key shares make it. It reports JSON ([`ClientReport`]).

use super::services::LatencyUs;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// UDP port of the lab's QUIC service.
pub const QUIC_PORT: u16 = 443;
/// Name in the server's certificate; the client sends it as SNI.
pub const SERVER_NAME: &str = "lab.example";
/// ALPN protocol of the echo service.
pub const ALPN: &[u8] = b"lab-echo";
/// Line the server prints once it listens.
pub const READY: &str = "quic-server: listening";

/// Largest request echoed.
const MAX_REQUEST: usize = 1 << 20;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio runtime: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Options of `scrubber lab quic-server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Addresses to serve (`ip:port`).
    pub binds: Vec<SocketAddr>,
    /// Where to write the self-signed certificate (DER).
    pub cert_out: PathBuf,
}

/// What the server has done so far (printed every few seconds).
#[derive(Debug, Default)]
struct ServerCounts {
    handshakes: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    streams: std::sync::atomic::AtomicU64,
}

/// Runs the echo server until killed.
pub fn quic_server(o: &ServerOptions) -> Result<(), String> {
    let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).map_err(|e| format!("rcgen: {e}"))?;
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let tmp = o.cert_out.with_extension("tmp");
    std::fs::write(&tmp, cert.as_ref())
        .and_then(|()| std::fs::rename(&tmp, &o.cert_out))
        .map_err(|e| format!("{}: {e}", o.cert_out.display()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("rustls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("rustls: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| format!("quic server config: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(0u8.into());
    transport.max_idle_timeout(Some(Duration::from_secs(10).try_into().expect("in range")));
    config.transport_config(Arc::new(transport));

    let rt = runtime()?;
    rt.block_on(async move {
        let counts = Arc::new(ServerCounts::default());
        let mut endpoints = Vec::new();
        for addr in &o.binds {
            let ep = quinn::Endpoint::server(config.clone(), *addr).map_err(|e| format!("bind {addr}: {e}"))?;
            endpoints.push(ep);
        }
        for ep in &endpoints {
            tokio::spawn(accept_loop(ep.clone(), counts.clone()));
        }
        let listen: Vec<String> = o.binds.iter().map(|a| a.to_string()).collect();
        println!("{READY} on {} (certificate {})", listen.join(" "), o.cert_out.display());
        let _ = std::io::stdout().flush();
        let mut last = (0, 0, 0);
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            use std::sync::atomic::Ordering::Relaxed;
            let now = (counts.handshakes.load(Relaxed), counts.failed.load(Relaxed), counts.streams.load(Relaxed));
            if now != last {
                println!("quic-server: {} handshakes, {} failed, {} streams echoed", now.0, now.1, now.2);
                let _ = std::io::stdout().flush();
                last = now;
            }
        }
    })
}

async fn accept_loop(ep: quinn::Endpoint, counts: Arc<ServerCounts>) {
    while let Some(incoming) = ep.accept().await {
        let counts = counts.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let conn = match incoming.await {
                Ok(c) => c,
                Err(_) => {
                    counts.failed.fetch_add(1, Relaxed);
                    return;
                }
            };
            counts.handshakes.fetch_add(1, Relaxed);
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    if let Ok(data) = recv.read_to_end(MAX_REQUEST).await
                        && send.write_all(&data).await.is_ok()
                        && send.finish().is_ok()
                    {
                        counts.streams.fetch_add(1, Relaxed);
                        // Keep the stream until the peer has the data (or the connection ends).
                        let _ = send.stopped().await;
                    }
                });
            }
        });
    }
}

/// Options of `scrubber lab quic-client`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// Servers, one per address family; each source uses the one of its family.
    pub targets: Vec<SocketAddr>,
    /// Source addresses, used in turn (the families interleaved evenly).
    pub sources: Vec<IpAddr>,
    /// The server's certificate (DER), the only trust anchor.
    pub ca: PathBuf,
    /// Connections to make (0: until `duration`).
    pub count: u64,
    /// Stop starting connections after this long (`None`: after `count`).
    pub duration: Option<Duration>,
    /// New connections per second.
    pub rate: f64,
    /// Most connections in flight.
    pub concurrency: usize,
    /// Bytes sent on the stream (and echoed back).
    pub bytes: usize,
    /// Every n-th connection sends a ClientHello spanning two Initials (0: none).
    pub split_hello_every: u64,
    /// Limit of one connection (handshake, exchange, close).
    pub timeout: Duration,
}

/// Results of one address family or of all connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections started.
    pub attempts: u64,
    /// Handshakes completed (server certificate verified).
    pub handshakes: u64,
    /// Connections whose stream came back intact.
    pub exchanges: u64,
}

/// What `scrubber lab quic-client` reports (JSON on stdout).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// Servers.
    pub targets: Vec<String>,
    /// Connections started.
    pub attempts: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Connections whose echo came back intact (1-RTT data both ways).
    pub exchanges: u64,
    /// `handshakes / attempts` (1 when nothing was attempted).
    pub handshake_ratio: f64,
    /// IPv4 sources.
    pub v4: Totals,
    /// IPv6 sources.
    pub v6: Totals,
    /// Connections whose ClientHello spanned two Initials.
    pub split_hello: Totals,
    /// Distinct source addresses used.
    pub sources_used: u64,
    /// Distinct source addresses with at least one completed handshake.
    pub sources_ok: u64,
    /// Handshake time.
    pub handshake_us: LatencyUs,
    /// Handshake plus the exchange.
    pub exchange_us: LatencyUs,
    /// Payload bytes sent after the handshake (stream data).
    pub bytes_sent: u64,
    /// Failures by error.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first connection to the last result.
    pub seconds: f64,
}

/// The sources in an order that spreads each family evenly over the run.
pub fn interleave(sources: &[IpAddr]) -> Vec<IpAddr> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = sources.iter().partition(|a| a.is_ipv4());
    let mut keyed: Vec<(f64, IpAddr)> = Vec::with_capacity(sources.len());
    for family in [&v4, &v6] {
        let n = family.len() as f64;
        keyed.extend(family.iter().enumerate().map(|(i, a)| ((i as f64 + 0.5) / n, *a)));
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, a)| a).collect()
}

fn client_config(ca: &[u8], split_hello: bool) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).map_err(|e| format!("trust anchor: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("rustls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    if split_hello {
        // Seven 250-byte protocol names the server does not speak: about 1.8 KB more
        // ClientHello, which no longer fits one Initial.
        for i in 0..7u8 {
            let mut name = vec![b'a' + i; 250];
            name[..9].copy_from_slice(b"lab-pad-x");
            tls.alpn_protocols.insert(0, name);
        }
    }
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| format!("quic client config: {e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(10).try_into().expect("in range")));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Outcome of one connection.
#[derive(Debug)]
struct Outcome {
    source: IpAddr,
    split: bool,
    handshake: Option<Duration>,
    exchange: Option<Duration>,
    error: Option<String>,
}

async fn connect_once(
    source: IpAddr,
    target: SocketAddr,
    config: quinn::ClientConfig,
    payload: Arc<Vec<u8>>,
) -> (Option<Duration>, Option<Duration>, Option<String>) {
    let started = Instant::now();
    let ep = match quinn::Endpoint::client(SocketAddr::new(source, 0)) {
        Ok(ep) => ep,
        Err(e) => return (None, None, Some(format!("bind: {e}"))),
    };
    let connecting = match ep.connect_with(config, target, SERVER_NAME) {
        Ok(c) => c,
        Err(e) => return (None, None, Some(format!("connect: {e}"))),
    };
    let conn = match connecting.await {
        Ok(c) => c,
        Err(e) => return (None, None, Some(format!("handshake: {e}"))),
    };
    let handshake = started.elapsed();
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open stream: {e}"))?;
        send.write_all(&payload).await.map_err(|e| format!("send: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        let echo = recv.read_to_end(payload.len() + 1).await.map_err(|e| format!("read: {e}"))?;
        if echo != *payload {
            return Err(format!("echo of {} bytes differs ({} bytes back)", payload.len(), echo.len()));
        }
        Ok(started.elapsed())
    }
    .await;
    conn.close(0u32.into(), b"done");
    // Let the endpoint send the CONNECTION_CLOSE (a short-header packet) before it goes.
    let _ = tokio::time::timeout(Duration::from_millis(50), ep.wait_idle()).await;
    match exchange {
        Ok(t) => (Some(handshake), Some(t), None),
        Err(e) => (Some(handshake), None, Some(e)),
    }
}

/// Runs the client (see the module docs) and reports.
pub fn quic_client(o: &ClientOptions) -> Result<ClientReport, String> {
    if o.sources.is_empty() {
        return Err("no source addresses".into());
    }
    let target_of = |a: &IpAddr| o.targets.iter().copied().find(|t| t.is_ipv4() == a.is_ipv4());
    if let Some(a) = o.sources.iter().find(|a| target_of(a).is_none()) {
        return Err(format!("no --target of the family of source {a}"));
    }
    if o.count == 0 && o.duration.is_none() {
        return Err("give --count or --seconds".into());
    }
    let ca = std::fs::read(&o.ca).map_err(|e| format!("{}: {e}", o.ca.display()))?;
    let plain = client_config(&ca, false)?;
    let split = client_config(&ca, true)?;
    let order = interleave(&o.sources);
    let payload: Arc<Vec<u8>> = Arc::new((0..o.bytes).map(|i| (i * 7 % 251) as u8).collect());
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let rt = runtime()?;
    let started = Instant::now();
    rt.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(o.concurrency.max(1)));
        let period = Duration::from_secs_f64(1.0 / o.rate.max(0.001));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = Vec::new();
        let mut n = 0u64;
        loop {
            if o.count > 0 && n >= o.count {
                break;
            }
            if o.duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            tick.tick().await;
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let source = order[(n % order.len() as u64) as usize];
            let target = target_of(&source).expect("checked above");
            let is_split = o.split_hello_every > 0 && n % o.split_hello_every == o.split_hello_every - 1;
            let config = if is_split { split.clone() } else { plain.clone() };
            let (payload, outcomes, timeout) = (payload.clone(), outcomes.clone(), o.timeout);
            tasks.push(tokio::spawn(async move {
                let r = tokio::time::timeout(timeout, connect_once(source, target, config, payload)).await;
                let (handshake, exchange, error) =
                    r.unwrap_or_else(|_| (None, None, Some(format!("no result within {timeout:?}"))));
                let out = Outcome { source, split: is_split, handshake, exchange, error };
                outcomes.lock().expect("not poisoned").push(out);
                drop(permit);
            }));
            n += 1;
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let outcomes = std::mem::take(&mut *outcomes.lock().map_err(|_| "poisoned".to_string())?);
    let mut r = ClientReport {
        targets: o.targets.iter().map(|t| t.to_string()).collect(),
        seconds: started.elapsed().as_secs_f64(),
        ..ClientReport::default()
    };
    let (mut used, mut ok) = (BTreeSet::new(), BTreeSet::new());
    let (mut hs, mut ex) = (Vec::new(), Vec::new());
    for out in &outcomes {
        used.insert(out.source);
        let family = if out.source.is_ipv4() { &mut r.v4 } else { &mut r.v6 };
        let tally = |t: &mut Totals| {
            t.attempts += 1;
            t.handshakes += u64::from(out.handshake.is_some());
            t.exchanges += u64::from(out.exchange.is_some());
        };
        tally(family);
        if out.split {
            tally(&mut r.split_hello);
        }
        if let Some(h) = out.handshake {
            ok.insert(out.source);
            hs.push(h.as_micros() as u64);
        }
        if let Some(e) = out.exchange {
            ex.push(e.as_micros() as u64);
            r.bytes_sent += o.bytes as u64;
        }
        if let Some(e) = &out.error {
            *r.failures.entry(e.clone()).or_default() += 1;
        }
    }
    r.attempts = r.v4.attempts + r.v6.attempts;
    r.handshakes = r.v4.handshakes + r.v6.handshakes;
    r.exchanges = r.v4.exchanges + r.v6.exchanges;
    r.handshake_ratio = if r.attempts == 0 { 1.0 } else { r.handshakes as f64 / r.attempts as f64 };
    r.sources_used = used.len() as u64;
    r.sources_ok = ok.len() as u64;
    r.handshake_us = LatencyUs::of(hs);
    r.exchange_us = LatencyUs::of(ex);
    Ok(r)
}

/// The argv of `bin lab quic-client` for `o`.
pub fn client_argv(bin: &Path, o: &ClientOptions) -> Vec<String> {
    let mut v: Vec<String> = vec![bin.display().to_string(), "lab".into(), "quic-client".into()];
    for t in &o.targets {
        v.push("--target".into());
        v.push(t.to_string());
    }
    v.push("--sources".into());
    v.push(o.sources.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","));
    v.push("--ca".into());
    v.push(o.ca.display().to_string());
    v.push("--count".into());
    v.push(o.count.to_string());
    if let Some(d) = o.duration {
        v.push("--seconds".into());
        v.push(format!("{}", d.as_secs_f64()));
    }
    v.push("--rate".into());
    v.push(format!("{}", o.rate));
    v.push("--concurrency".into());
    v.push(o.concurrency.to_string());
    v.push("--bytes".into());
    v.push(o.bytes.to_string());
    v.push("--split-hello-every".into());
    v.push(o.split_hello_every.to_string());
    v.push("--timeout-ms".into());
    v.push(o.timeout.as_millis().to_string());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_interleaved_evenly() {
        let mut s: Vec<IpAddr> = (1..=9u8).map(|i| IpAddr::from([198, 18, 1, i])).collect();
        s.extend((1..=3u16).map(|i| IpAddr::from([0x2001, 2, 0, 1, 0, 0, 0, i])));
        let o = interleave(&s);
        assert_eq!(o.len(), 12);
        let v6_at: Vec<usize> = o.iter().enumerate().filter(|(_, a)| a.is_ipv6()).map(|(i, _)| i).collect();
        assert!(v6_at.windows(2).all(|w| w[1] - w[0] >= 3), "{o:?}");
    }

    /// A handshake and an echo over loopback, one of them with a ClientHello spanning two
    /// Initials; the report counts both.
    #[test]
    fn client_and_server_talk_over_loopback() {
        let dir = std::env::temp_dir().join(format!("scrubber-quic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.der");
        // A free port: bind and release.
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let so = ServerOptions { binds: vec![target], cert_out: cert.clone() };
        std::thread::spawn(move || quic_server(&so));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cert.exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let o = ClientOptions {
            targets: vec![target],
            sources: vec!["127.0.0.1".parse().unwrap()],
            ca: cert,
            count: 4,
            duration: None,
            rate: 100.0,
            concurrency: 2,
            bytes: 5000,
            split_hello_every: 2,
            timeout: Duration::from_secs(5),
        };
        let r = quic_client(&o).unwrap();
        assert_eq!((r.attempts, r.handshakes, r.exchanges), (4, 4, 4), "{r:?}");
        assert_eq!(r.split_hello, Totals { attempts: 2, handshakes: 2, exchanges: 2 });
        assert_eq!(r.bytes_sent, 20_000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
