//! Helpers of the SYN authentication lab tests (`tests/tests/syn.rs`) and of its benchmark: curl
//! with connect times (sequential, or many at once as a legitimate load), a bounded `hping3
//! --flood`, a stateful firewall in the client, profile edits through the control socket, the
//! verified-source table, and origin's own view of TCP (the SYN-ACKs it sends, its syncookie
//! counters) and the machine's kernel CPU time.

use crate::{Cmd, CmdError, GenReport, GenSpec, Lab, Role, ScrubStats, TempConfig, TestLab, scrubber_bin, topo};
use scrubber::lab::counters;
use scrubber::lab::observe::CoreTimes;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

/// The page every request fetches.
pub const HELLO: &str = "/hello.txt";

/// One HTTP request and its timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Conn {
    /// The source address it was bound to.
    pub source: IpAddr,
    /// Status 200 from that source.
    pub ok: bool,
    /// Time until the TCP connection was established, microseconds.
    pub connect_us: u64,
    /// Time of the whole transfer, microseconds.
    pub total_us: u64,
    /// curl's error, if any.
    pub error: String,
}

const FORMAT: &str = "%{http_code}\t%{exitcode}\t%{time_connect}\t%{time_total}\t%{local_ip}\t%{errormsg}\n";

fn parse_conn(source: IpAddr, line: &str) -> Conn {
    let f: Vec<&str> = line.split('\t').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let us = |s: &str| (s.parse::<f64>().unwrap_or(0.0) * 1e6) as u64;
    let ok = get(0) == "200" && get(1) == "0" && get(4).parse::<IpAddr>().ok() == Some(source);
    Conn {
        source,
        ok,
        connect_us: us(get(2)),
        total_us: us(get(3)),
        error: if ok { String::new() } else { format!("http {} exit {} {}", get(0), get(1), get(5)) },
    }
}

fn curl_args(mut c: Cmd, target: IpAddr, sources: &[IpAddr], max_time: Duration) -> Cmd {
    let url = crate::http_url(target, topo::HTTP_PORT, HELLO);
    for (i, src) in sources.iter().enumerate() {
        if i > 0 {
            c = c.arg("--next");
        }
        c = c
            .args(&["-sS", "-g", "-o", "/dev/null", "-w", FORMAT])
            .args(&["--max-time", &format!("{:.3}", max_time.as_secs_f64())])
            .args(&["--interface", &format!("host!{src}")])
            .arg(url.clone());
    }
    c
}

/// One GET of `/hello.txt` on `target` from each source, one after another (so no request waits
/// on another: the connect times are the path's), in the client namespace.
pub fn curl_sequential(lab: &Lab, target: IpAddr, sources: &[IpAddr], max_time: Duration) -> Vec<Conn> {
    let mut out = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(50) {
        let limit = max_time * chunk.len() as u32 + Duration::from_secs(5);
        let c = curl_args(Cmd::new("curl"), target, chunk, max_time);
        let r = c.netns(lab.ns(Role::Client)).timeout(limit).ok_codes(&(0..=255).collect::<Vec<_>>()).run();
        let text = r.map(|o| o.stdout).unwrap_or_else(|e| panic!("curl: {e}"));
        let mut lines = text.lines();
        out.extend(chunk.iter().map(|s| parse_conn(*s, lines.next().unwrap_or(""))));
    }
    out
}

/// One GET from each source, all at once (`curl --parallel`, at most 64 in flight).
pub fn curl_parallel(lab: &Lab, target: IpAddr, sources: &[IpAddr], max_time: Duration) -> Vec<Conn> {
    // In parallel mode the result lines come in completion order: tag each with its source.
    let mut c = Cmd::new("curl").args(&["--parallel", "--parallel-immediate", "--parallel-max", "64"]);
    let url = crate::http_url(target, topo::HTTP_PORT, HELLO);
    for (i, src) in sources.iter().enumerate() {
        if i > 0 {
            c = c.arg("--next");
        }
        c = c
            .args(&["-sS", "-g", "-o", "/dev/null", "-w", &format!("{src}\t{FORMAT}")])
            .args(&["--max-time", &format!("{:.3}", max_time.as_secs_f64())])
            .args(&["--interface", &format!("host!{src}")])
            .arg(format!("{url}?src={src}"));
    }
    let r = c
        .netns(lab.ns(Role::Client))
        .timeout(max_time + Duration::from_secs(10))
        .ok_codes(&(0..=255).collect::<Vec<_>>())
        .run();
    let text = r.map(|o| o.stdout).unwrap_or_else(|e| panic!("curl --parallel: {e}"));
    let mut by_source: BTreeMap<IpAddr, Vec<Conn>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((src, rest)) = line.split_once('\t')
            && let Ok(src) = src.parse::<IpAddr>()
        {
            by_source.entry(src).or_default().push(parse_conn(src, rest));
        }
    }
    sources
        .iter()
        .map(|s| {
            let list = by_source.entry(*s).or_default();
            if list.is_empty() {
                Conn { source: *s, ok: false, connect_us: 0, total_us: 0, error: "no result from curl".into() }
            } else {
                list.remove(0)
            }
        })
        .collect()
}

/// What a legitimate load saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    /// Connections tried.
    pub attempts: usize,
    /// Connections that fetched the page.
    pub succeeded: usize,
    /// Connect times of the successful ones, microseconds, sorted.
    pub connect_us: Vec<u64>,
    /// A few failures.
    pub failures: Vec<String>,
}

impl Load {
    /// Share of the attempts that succeeded.
    pub fn success(&self) -> f64 {
        if self.attempts == 0 { 0.0 } else { self.succeeded as f64 / self.attempts as f64 }
    }
}

/// `n` connections from `sources` (round-robin) to `target`, `per_round` at once.
pub fn legit_load(
    lab: &Lab,
    target: IpAddr,
    sources: &[IpAddr],
    n: usize,
    per_round: usize,
    max_time: Duration,
) -> Load {
    let mut load = Load::default();
    let mut next = 0usize;
    while load.attempts < n {
        let k = per_round.min(n - load.attempts).min(sources.len());
        let round: Vec<IpAddr> = (0..k).map(|i| sources[(next + i) % sources.len()]).collect();
        next = (next + k) % sources.len();
        for c in curl_parallel(lab, target, &round, max_time) {
            load.attempts += 1;
            if c.ok {
                load.succeeded += 1;
                load.connect_us.push(c.connect_us);
            } else if load.failures.len() < 5 {
                load.failures.push(format!("{}: {}", c.source, c.error));
            }
        }
    }
    load.connect_us.sort_unstable();
    load
}

/// The `q` quantile of sorted `v` (0 when empty).
pub fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Connect times of the successful connections, sorted.
pub fn connect_times(conns: &[Conn]) -> Vec<u64> {
    let mut v: Vec<u64> = conns.iter().filter(|c| c.ok).map(|c| c.connect_us).collect();
    v.sort_unstable();
    v
}

/// `hping3 --flood -S -p 80` to `target` with the attack marker, spoofing `source` (`-a`), from
/// the attacker, stopped with SIGINT after `seconds`. Returns what hping3 printed.
pub fn hping3_flood(lab: &Lab, target: Ipv4Addr, source: Ipv4Addr, seconds: u32) -> String {
    let secs = seconds.to_string();
    let (src, dst) = (source.to_string(), target.to_string());
    let out = Cmd::new("timeout")
        .args(&["-s", "INT", &secs, "hping3", "--flood", "-q", "-n", "-S", "-p", "80", "--tos", "20", "-a", &src])
        .arg(dst)
        .netns(lab.ns(Role::Attacker))
        .timeout(Duration::from_secs(u64::from(seconds) + 10))
        .ok_codes(&(0..=255).collect::<Vec<_>>())
        .run()
        .unwrap_or_else(|e| panic!("hping3 --flood: {e}"));
    format!("{}{}", out.stdout, out.stderr)
}

/// nftables table in the client namespace: the stateful firewall of most Linux hosts (ufw and
/// firewalld install the same rule): drop what conntrack finds invalid. Counter `invalid`.
pub const CLIENT_FIREWALL: &str = "table inet synfw {
  counter invalid { }
  chain in {
    type filter hook input priority 0; policy accept;
    ct state invalid counter name \"invalid\" drop
  }
}
";

/// nftables table in the client namespace standing for a firewall stricter than Linux conntrack,
/// one that drops every segment a connection in SYN-SENT cannot accept: it drops the scrubber's
/// challenges before conntrack sees them, recognised by their short TCP header (an ACK without
/// options, or a SYN-ACK with an MSS option only, where origin's Linux always sends timestamps:
/// 32 bytes or more). Counter `challenge`.
pub const CLIENT_STRICT_FIREWALL: &str = "table inet synstrict {
  counter challenge { }
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    tcp sport 80 @th,96,4 < 8 counter name \"challenge\" drop
  }
}
";

/// Installs `ruleset` ([`CLIENT_FIREWALL`], [`CLIENT_STRICT_FIREWALL`]) in the client.
pub fn client_firewall(lab: &Lab, ruleset: &str) {
    counters::load(&lab.ns(Role::Client), ruleset).unwrap_or_else(|e| panic!("client firewall: {e}"));
}

/// Packets counted by `counter` of client table `table`.
pub fn client_counter(lab: &Lab, table: &str, counter: &str) -> u64 {
    counters::read(&lab.ns(Role::Client), "inet", table).unwrap_or_else(|e| panic!("{e}")).packets(counter)
}

/// Removes client table `table`.
pub fn client_firewall_remove(lab: &Lab, table: &str) {
    Cmd::new("nft").args(&["delete", "table", "inet", table]).netns(lab.ns(Role::Client)).run().expect("nft delete");
}

/// Origin's TCP sockets stuck closing (`CLOSING`, `LAST-ACK`): their FIN never acknowledged.
pub fn origin_unfinished(lab: &Lab) -> usize {
    let out = Cmd::new("ss")
        .args(&["-Htan", "state", "closing", "state", "last-ack"])
        .netns(lab.ns(Role::Origin))
        .run()
        .unwrap_or_else(|e| panic!("ss: {e}"));
    out.stdout.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Sets `key` of the lab profile's `syn` section through the control socket (`policy_get`,
/// `policy_set`): a new policy at once, the verified sources kept.
pub fn set_syn(lab: &Lab, key: &str, value: Value) {
    let got = lab.ctl("policy_get", json!({})).unwrap_or_else(|e| panic!("policy_get: {e}"));
    let mut doc = got["document"].clone();
    doc["profiles"]["lab"]["syn"][key] = value;
    lab.ctl("policy_set", json!({ "document": doc })).unwrap_or_else(|e| panic!("policy_set {key}: {e}"));
}

/// The verified-source table (`syn_status`): live entries, capacity, evictions.
pub fn verified_table(lab: &Lab) -> (u64, u64, u64) {
    let s = lab.ctl("syn_status", json!({})).unwrap_or_else(|e| panic!("syn_status: {e}"));
    let v = &s["verified"];
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("syn_status.verified.{k}: {s}"));
    (n("len"), n("capacity"), n("evictions"))
}

/// nftables table in origin counting the SYN-ACKs origin sends (its backscatter under a spoofed
/// flood: each one goes to a spoofed address).
pub const ORIGIN_SYNACKS: &str = "table inet synout {
  counter synack { }
  chain out {
    type filter hook output priority 0; policy accept;
    tcp flags & (syn | ack) == syn | ack counter name \"synack\"
  }
}
";

/// Origin's TCP figures: SYN-ACKs sent (nftables) and the kernel's listen counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginTcp {
    /// SYN-ACKs origin sent.
    pub syn_acks: u64,
    /// `TcpExt` counters of origin's namespace (`/proc/net/netstat`).
    pub ext: BTreeMap<String, u64>,
}

impl OriginTcp {
    /// Installs the SYN-ACK counter in origin.
    pub fn install(lab: &Lab) {
        counters::load(&lab.ns(Role::Origin), ORIGIN_SYNACKS).unwrap_or_else(|e| panic!("origin counter: {e}"));
    }

    /// Reads them now.
    pub fn read(lab: &Lab) -> OriginTcp {
        let ns = lab.ns(Role::Origin);
        let syn_acks = counters::read(&ns, "inet", "synout").unwrap_or_else(|e| panic!("{e}")).packets("synack");
        let out = Cmd::new("cat").arg("/proc/net/netstat").netns(&ns).run().unwrap_or_else(|e| panic!("{e}"));
        OriginTcp { syn_acks, ext: parse_netstat(&out.stdout) }
    }

    /// `self - earlier`.
    pub fn since(&self, e: &OriginTcp) -> OriginTcp {
        OriginTcp {
            syn_acks: self.syn_acks.saturating_sub(e.syn_acks),
            ext: self
                .ext
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(e.ext.get(k).copied().unwrap_or(0))))
                .collect(),
        }
    }

    /// A `TcpExt` counter (e.g. `SyncookiesSent`).
    pub fn ext(&self, name: &str) -> u64 {
        self.ext.get(name).copied().unwrap_or(0)
    }
}

/// The `TcpExt:` pairs of lines of `/proc/net/netstat`.
pub fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut m = BTreeMap::new();
    for pair in lines.windows(2) {
        if pair[0].starts_with("TcpExt:") && pair[1].starts_with("TcpExt:") {
            let is_header = pair[0].split_whitespace().nth(1).is_some_and(|w| w.parse::<u64>().is_err());
            if is_header {
                for (k, v) in pair[0].split_whitespace().zip(pair[1].split_whitespace()).skip(1) {
                    m.insert(k.to_string(), v.parse().unwrap_or(0));
                }
            }
        }
    }
    m
}

/// Sets a sysctl in `role`'s namespace.
pub fn sysctl(lab: &Lab, role: Role, kv: &str) -> Result<(), CmdError> {
    Cmd::new("sysctl").args(&["-qw", kv]).netns(lab.ns(role)).run().map(|_| ())
}

/// Kernel time (system + softirq) and busy time of every core, nanoseconds, from `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// System plus softirq time, all cores.
    pub kernel_ns: u64,
    /// Everything but idle, all cores.
    pub busy_ns: u64,
}

impl Cpu {
    /// Now.
    pub fn read() -> Cpu {
        let mut c = Cpu::default();
        for core in 0.. {
            let Ok(t) = CoreTimes::read(core) else { break };
            c.kernel_ns += t.system_ns + t.softirq_ns;
            c.busy_ns += t.user_ns + t.system_ns + t.softirq_ns;
        }
        c
    }

    /// `self - earlier`.
    pub fn since(&self, e: &Cpu) -> Cpu {
        Cpu { kernel_ns: self.kernel_ns.saturating_sub(e.kernel_ns), busy_ns: self.busy_ns.saturating_sub(e.busy_ns) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_lines_and_netstat_parse() {
        let src: IpAddr = "198.18.1.7".parse().unwrap();
        let c = parse_conn(src, "200\t0\t0.012345\t0.013\t198.18.1.7\t");
        assert!(c.ok && c.connect_us == 12_345 && c.total_us == 13_000, "{c:?}");
        let bad = parse_conn(src, "000\t28\t0\t4.0\t\tOperation timed out");
        assert!(!bad.ok && bad.error.contains("timed out"), "{bad:?}");
        let n = parse_netstat("TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 5 2\nIpExt: InNoRoutes\nIpExt: 1\n");
        assert_eq!((n["SyncookiesSent"], n["SyncookiesRecv"], n.len()), (5, 2, 2));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), 3);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}

// Floods with a legitimate load, shared by the tests and the syncookies benchmark.

/// The lab's fixed offered rate (`scrubber lab bench`'s default).
pub const FIXED_RATE: u64 = 200_000;
/// Reply budgets of these tests: the global one, and the one per address replied to.
pub const REPLY_PPS: u64 = 50_000;
pub const REPLY_PPS_PER_DST: u64 = 100;
/// The reply budget's burst window (`Rate::DEFAULT_BURST_MS`).
pub const REPLY_BURST_S: f64 = 0.1;
/// Addresses in `traffic::ATTACK_SOURCES` (198.18.1.201-253).
pub const FLOOD_ADDRESSES: u64 = 53;
/// As many addresses of the clients' /64, none of them a client's. (The lab's default IPv6 flood
/// draws from 2^64 - 2^16 addresses: each SYN then comes from a new address, the per-address reply
/// budget never applies, and new clients' first SYNs compete with the flood for the global one;
/// at 200 kpps against a 50 kpps budget about one in six first connections then missed 5 s.)
pub const FLOOD_SOURCES_V6: &str = "2001:2:0:1::1:0-2001:2:0:1::1:34";
/// The default SYN budget of a verified source and its burst.
pub const VERIFIED_SYN_PPS: u64 = 100;
pub const VERIFIED_SYN_BURST: u64 = 100;

/// `configs/lab.toml` with the SYN tests' reply budgets, and a watchdog patient enough for a shared
/// 2-core VM (a worker starved for 500 ms would have its queue failed open, and the frames of that
/// moment would reach origin unchallenged, counted as the XDP program's `no_socket`).
pub fn budget_config() -> TempConfig {
    TempConfig::lab_with(&[
        (
            "dst_buckets = 65536",
            &format!("dst_buckets = 65536\nreply_pps = {REPLY_PPS}\nreply_pps_per_destination = {REPLY_PPS_PER_DST}"),
        ),
        ("fail = \"open\"", "fail = \"open\"\nwatchdog_ms = 5000"),
    ])
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Starts the generator on a thread.
pub fn spawn_gen(t: &TestLab, spec: &GenSpec) -> thread::JoinHandle<GenReport> {
    let cmd = t.gen_cmd(scrubber_bin(), spec);
    thread::spawn(move || {
        let out = cmd.run().unwrap_or_else(|e| panic!("gen: {e}"));
        GenReport::parse(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// One flood with the legitimate load running meanwhile: what the scrubber, origin and the
/// clients saw.
#[derive(Debug)]
pub struct FloodRun {
    pub report: GenReport,
    pub d: ScrubStats,
    pub origin_attack: u64,
    pub legit: Load,
    pub seconds: f64,
}

pub fn flood_with_load(t: &TestLab, spec: &GenSpec, legit: &[IpAddr], target: IpAddr, conns: usize) -> FloodRun {
    let (s0, o0) = (t.stats(), t.counters());
    let started = Instant::now();
    let g = spawn_gen(t, spec);
    thread::sleep(Duration::from_millis(500));
    let legit = legit_load(t, target, legit, conns, 100, Duration::from_secs(5));
    let report = g.join().expect("generator thread");
    let d = t.stats().since(&s0);
    let seconds = started.elapsed().as_secs_f64();
    let origin_attack = t.counters().since(&o0).attack_packets();
    FloodRun { report, d, origin_attack, legit, seconds }
}
