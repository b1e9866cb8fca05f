//! Real clients run inside a namespace, each under a timeout, with their output parsed: curl
//! from many source addresses, ping (optionally with the attack marker), hping3, dig, and
//! interface counters from `ip -s -j link`.

use super::cmd::{Cmd, CmdError};
use super::services::LatencyUs;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// One HTTP request made by [`curl_many`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurlResult {
    /// The source address it was bound to.
    pub source: IpAddr,
    /// HTTP status (0: no response).
    pub http_code: u16,
    /// curl's exit code for this transfer.
    pub exit_code: i32,
    /// Total time, seconds.
    pub time_s: f64,
    /// Local address curl reports having used.
    pub local_ip: String,
    /// Body bytes received.
    pub size: u64,
    /// curl's error message, if any.
    pub error: String,
}

impl CurlResult {
    /// Status 200, exit 0, and the connection really left from `source`.
    pub fn ok(&self) -> bool {
        self.http_code == 200 && self.exit_code == 0 && self.local_ip.parse::<IpAddr>().ok() == Some(self.source)
    }
}

/// Outcome of [`curl_many`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurlReport {
    /// Requests made.
    pub attempts: usize,
    /// Requests that got a 200 from the right source.
    pub succeeded: usize,
    /// Distinct sources with at least one success.
    pub sources_ok: usize,
    /// Latency of successful requests, microseconds.
    pub latency_us: LatencyUs,
    /// Every request.
    pub results: Vec<CurlResult>,
}

impl CurlReport {
    /// The failed requests.
    pub fn failures(&self) -> Vec<&CurlResult> {
        self.results.iter().filter(|r| !r.ok()).collect()
    }
}

/// URL of `path` on `host:port` (brackets for IPv6).
pub fn http_url(host: IpAddr, port: u16, path: &str) -> String {
    match host {
        IpAddr::V4(a) => format!("http://{a}:{port}{path}"),
        IpAddr::V6(a) => format!("http://[{a}]:{port}{path}"),
    }
}

const CURL_FORMAT: &str =
    "%{url_effective}\t%{http_code}\t%{exitcode}\t%{time_total}\t%{local_ip}\t%{size_download}\t%{errormsg}\n";
const CURL_CHUNK: usize = 50;

/// One GET of `url` from each of `sources` (`curl --interface host!ADDR`), run in namespace `ns`
/// in a few curl processes (`--next` chains, sequential transfers), each transfer limited to
/// `max_time`. HTTP/1.0 servers close every connection, so no two sources share one.
pub fn curl_many(ns: &str, url: &str, sources: &[IpAddr], max_time: Duration) -> Result<CurlReport, CmdError> {
    let mut results = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(CURL_CHUNK) {
        let mut c = Cmd::new("curl");
        for (i, src) in chunk.iter().enumerate() {
            if i > 0 {
                c = c.arg("--next");
            }
            let sep = if url.contains('?') { '&' } else { '?' };
            c = c
                .args(&["-sS", "-g", "-o", "/dev/null", "-w", CURL_FORMAT])
                .args(&["--max-time", &format!("{:.3}", max_time.as_secs_f64())])
                .args(&["--interface", &format!("host!{src}")])
                .arg(format!("{url}{sep}src={src}"));
        }
        let limit = max_time * chunk.len() as u32 + Duration::from_secs(5);
        let out = c.netns(ns).timeout(limit).ok_codes(&(0..=255).collect::<Vec<_>>()).run()?;
        let mut lines = out.stdout.lines();
        for src in chunk {
            let line = lines.next().unwrap_or("");
            let f: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            results.push(CurlResult {
                source: *src,
                http_code: get(1).parse().unwrap_or(0),
                exit_code: get(2).parse().unwrap_or(-1),
                time_s: get(3).parse().unwrap_or(0.0),
                local_ip: get(4).to_string(),
                size: get(5).parse().unwrap_or(0),
                error: if line.is_empty() {
                    format!("no output from curl: {}", out.stderr.trim())
                } else {
                    get(6).to_string()
                },
            });
        }
    }
    let ok: Vec<&CurlResult> = results.iter().filter(|r| r.ok()).collect();
    let mut srcs: Vec<IpAddr> = ok.iter().map(|r| r.source).collect();
    srcs.sort();
    srcs.dedup();
    Ok(CurlReport {
        attempts: results.len(),
        succeeded: ok.len(),
        sources_ok: srcs.len(),
        latency_us: LatencyUs::of(ok.iter().map(|r| (r.time_s * 1e6) as u64).collect()),
        results,
    })
}

/// Packets sent and answered by ping or hping3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// Packets transmitted.
    pub transmitted: u64,
    /// Replies received.
    pub received: u64,
}

/// `ping` in `ns`: `count` echo requests to `target` 10 ms apart, with TOS / traffic class
/// `tos` (0x20 is the attack marker) and an optional source address.
pub fn ping(ns: &str, target: IpAddr, count: u32, tos: Option<u8>, source: Option<IpAddr>) -> Result<Sent, CmdError> {
    let mut c = Cmd::new("ping").args(&["-n", "-q", "-c", &count.to_string(), "-i", "0.01", "-W", "1"]);
    if target.is_ipv6() {
        c = c.arg("-6");
    }
    if let Some(t) = tos {
        c = c.args(&["-Q", &format!("0x{t:02x}")]);
    }
    if let Some(s) = source {
        c = c.args(&["-I", &s.to_string()]);
    }
    let out = c
        .arg(target.to_string())
        .netns(ns)
        .timeout(Duration::from_secs(5 + u64::from(count) / 50))
        .ok_codes(&[0, 1])
        .run()?;
    Ok(parse_sent(&out.stdout, "transmitted", "received"))
}

/// What hping3 sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpingMode {
    /// UDP to a port (`-2 -p`).
    Udp(u16),
    /// TCP SYN to a port (`-S -p`).
    Syn(u16),
    /// ICMP echo (`-1`).
    Icmp,
}

/// One hping3 run (IPv4 only: hping3 has no IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hping {
    /// Destination.
    pub target: Ipv4Addr,
    /// Protocol.
    pub mode: HpingMode,
    /// Packets.
    pub count: u32,
    /// Gap between packets, microseconds.
    pub interval_us: u32,
    /// TOS byte (0x20: the attack marker).
    pub tos: Option<u8>,
    /// Spoofed source address (`-a`); keep it inside the lab range.
    pub source: Option<Ipv4Addr>,
    /// Payload bytes (`-d`).
    pub data: u16,
}

impl Hping {
    /// `count` packets of `mode` to `target`, 1 ms apart, no marker, no spoofing.
    pub fn new(target: Ipv4Addr, mode: HpingMode, count: u32) -> Hping {
        Hping { target, mode, count, interval_us: 1000, tos: None, source: None, data: 0 }
    }
}

/// Runs hping3 in `ns`.
pub fn hping3(ns: &str, h: &Hping) -> Result<Sent, CmdError> {
    let mut c =
        Cmd::new("hping3").args(&["-q", "-n", "-c", &h.count.to_string(), "-i", &format!("u{}", h.interval_us)]);
    c = match h.mode {
        HpingMode::Udp(p) => c.args(&["-2", "-p", &p.to_string()]),
        HpingMode::Syn(p) => c.args(&["-S", "-p", &p.to_string()]),
        HpingMode::Icmp => c.arg("-1"),
    };
    if let Some(t) = h.tos {
        c = c.args(&["--tos", &format!("{t:02x}")]);
    }
    if let Some(s) = h.source {
        c = c.args(&["-a", &s.to_string()]);
    }
    if h.data > 0 {
        c = c.args(&["-d", &h.data.to_string()]);
    }
    let limit = Duration::from_micros(u64::from(h.count) * u64::from(h.interval_us)) + Duration::from_secs(5);
    let out = c.arg(h.target.to_string()).netns(ns).timeout(limit).ok_codes(&[0, 1]).run()?;
    // "N packets transmitted, M packets received" on stdout or stderr (older hping3: "tramitted").
    let text = format!("{}\n{}", out.stdout, out.stderr).replace("tramitted", "transmitted");
    Ok(parse_sent(&text, "transmitted", "received"))
}

fn parse_sent(text: &str, sent_word: &str, recv_word: &str) -> Sent {
    let mut s = Sent::default();
    for line in text.lines().filter(|l| l.contains(sent_word)) {
        let words: Vec<&str> = line.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
        for (i, w) in words.iter().enumerate() {
            let num = |k: usize| k.checked_sub(1).and_then(|j| words.get(j)).and_then(|n| n.parse().ok());
            if w.starts_with(sent_word) {
                s.transmitted = num(i).or_else(|| num(i.saturating_sub(1))).unwrap_or(0);
            }
            if w.starts_with(recv_word) {
                s.received = num(i).or_else(|| num(i.saturating_sub(1))).unwrap_or(0);
            }
        }
    }
    s
}

/// Outcome of one dig query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DigResult {
    /// `NOERROR`, `NXDOMAIN`, … or `TIMEOUT` when no server answered.
    pub status: String,
    /// Answer section records (`+noall +answer` lines).
    pub answers: Vec<String>,
}

/// `dig @server [-b source] name qtype` in `ns`, one try of `timeout`.
pub fn dig(
    ns: &str,
    server: IpAddr,
    source: Option<IpAddr>,
    name: &str,
    qtype: &str,
    timeout: Duration,
) -> Result<DigResult, CmdError> {
    let mut c = Cmd::new("dig").arg(format!("@{server}"));
    if let Some(s) = source {
        c = c.args(&["-b", &s.to_string()]);
    }
    let secs = timeout.as_secs().max(1);
    let out = c
        .args(&[name, qtype, "+tries=1", &format!("+time={secs}"), "+noall", "+answer", "+comments"])
        .netns(ns)
        .timeout(timeout + Duration::from_secs(3))
        .ok_codes(&[0, 9])
        .run()?;
    if out.code == 9 {
        return Ok(DigResult { status: "TIMEOUT".into(), answers: Vec::new() });
    }
    let status = out
        .stdout
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|r| r.split(',').next())
        .unwrap_or("UNKNOWN")
        .to_string();
    let answers =
        out.stdout.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).map(String::from).collect();
    Ok(DigResult { status, answers })
}

/// Interface counters (`ip -s -j link show DEV`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Receive drops.
    pub rx_dropped: u64,
    /// Transmit drops.
    pub tx_dropped: u64,
}

impl LinkStats {
    /// `self - earlier` (saturating).
    pub fn since(&self, e: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets.saturating_sub(e.rx_packets),
            tx_packets: self.tx_packets.saturating_sub(e.tx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(e.rx_bytes),
            tx_bytes: self.tx_bytes.saturating_sub(e.tx_bytes),
            rx_dropped: self.rx_dropped.saturating_sub(e.rx_dropped),
            tx_dropped: self.tx_dropped.saturating_sub(e.tx_dropped),
        }
    }
}

/// Counters of `dev` in namespace `ns`.
pub fn link_stats(ns: &str, dev: &str) -> Result<LinkStats, CmdError> {
    let c = Cmd::new("ip").args(&["-s", "-j", "link", "show", "dev", dev]).netns(ns);
    let out = c.run()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let s = &v[0]["stats64"];
    if s.is_null() {
        return Err(CmdError::Failed {
            cmdline: c.cmdline(),
            code: 0,
            stdout: out.stdout,
            stderr: "no stats64 in the output".into(),
        });
    }
    let g = |dir: &str, k: &str| s[dir][k].as_u64().unwrap_or(0);
    Ok(LinkStats {
        rx_packets: g("rx", "packets"),
        tx_packets: g("tx", "packets"),
        rx_bytes: g("rx", "bytes"),
        tx_bytes: g("tx", "bytes"),
        rx_dropped: g("rx", "dropped"),
        tx_dropped: g("tx", "dropped"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_and_hping_summaries() {
        let ping =
            "--- 198.18.0.2 ping statistics ---\n5 packets transmitted, 4 received, 20% packet loss, time 41ms\n";
        assert_eq!(parse_sent(ping, "transmitted", "received"), Sent { transmitted: 5, received: 4 });
        let hping =
            "--- 198.18.100.10 hping statistic ---\n7 packets transmitted, 0 packets received, 100% packet loss\n";
        assert_eq!(parse_sent(hping, "transmitted", "received"), Sent { transmitted: 7, received: 0 });
    }

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(http_url("2001:2:0:100::10".parse().unwrap(), 80, "/a"), "http://[2001:2:0:100::10]:80/a");
        assert_eq!(http_url("198.18.100.10".parse().unwrap(), 80, "/"), "http://198.18.100.10:80/");
    }
}
