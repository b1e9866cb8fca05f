//! What the lab reads while the scrubber runs: the daemon's counters from its control socket
//! (`stats`), interface counters along the path, the edge router's IP forwarding counters, CPU
//! time per core (`/proc/stat`) and per thread, and the generator's report. Each snapshot type
//! has `since` so a run reports deltas.

use super::clients::{LinkStats, link_stats};
use super::cmd::{Cmd, CmdError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Sends one request to the daemon's control socket (under its 10 s read timeout).
pub fn ctl(socket: &Path, cmd: &str, args: Value) -> Result<Value, String> {
    crate::ctl::request(socket, cmd, args)
}

/// The XDP program's counters (summed over ingress interfaces).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpStats {
    /// Non-IP frames passed to the kernel.
    pub not_ip: u64,
    /// Frames for the appliance's own addresses passed to the kernel.
    pub local: u64,
    /// Frames for unprotected destinations passed to the kernel.
    pub unprotected: u64,
    /// Frames redirected to a worker's socket.
    pub redirected: u64,
    /// Protected frames with no socket bound (the fail mode applied).
    pub no_socket: u64,
    /// IP frames too short for their header (dropped in XDP).
    pub malformed: u64,
}

impl XdpStats {
    /// Every frame the program saw.
    pub fn total(&self) -> u64 {
        self.not_ip + self.local + self.unprotected + self.redirected + self.no_socket + self.malformed
    }

    /// `self - earlier`, per counter (saturating).
    pub fn since(&self, e: &XdpStats) -> XdpStats {
        XdpStats {
            not_ip: self.not_ip.saturating_sub(e.not_ip),
            local: self.local.saturating_sub(e.local),
            unprotected: self.unprotected.saturating_sub(e.unprotected),
            redirected: self.redirected.saturating_sub(e.redirected),
            no_socket: self.no_socket.saturating_sub(e.no_socket),
            malformed: self.malformed.saturating_sub(e.malformed),
        }
    }
}

/// The kernel's statistics of the workers' sockets (XDP_STATISTICS), summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketStats {
    /// Frames the kernel dropped on the way into a socket (no fill-ring buffer, ring full).
    pub rx_dropped: u64,
    /// Of those, or in addition depending on the kernel: RX ring full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub fill_ring_empty: u64,
    /// Invalid TX descriptors.
    pub tx_invalid: u64,
}

/// The daemon's counters, summed over its workers (`stats` on the control socket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStats {
    /// Frames the workers received from their sockets.
    pub rx: u64,
    /// The same per worker, in the daemon's worker order.
    pub worker_rx: Vec<u64>,
    /// Frames sent on egress.
    pub tx_egress: u64,
    /// Frames sent back out of the ingress interface (replies, hairpin).
    pub tx_ingress: u64,
    /// Frames lost because a TX ring was full.
    pub tx_ring_full: u64,
    /// Worker thread CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Verdict `forward`.
    pub forwarded: u64,
    /// Verdict `reply`.
    pub replied: u64,
    /// Verdict `drop`, all reasons.
    pub dropped_total: u64,
    /// Verdict `pass` (cannot be handed to the kernel from userspace: dropped).
    pub passed: u64,
    /// Drops per reason (reasons with no drops left out).
    pub dropped: BTreeMap<String, u64>,
    /// Events (bypass forwards, allow-list hits, ...).
    pub events: BTreeMap<String, u64>,
    /// Evictions per table (all workers).
    pub table_evictions: BTreeMap<String, u64>,
    /// The XDP programs' counters.
    pub xdp: XdpStats,
    /// The sockets' kernel statistics (ingress sockets).
    pub socket: SocketStats,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn map_of(v: &Value) -> BTreeMap<String, u64> {
    v.as_object().map(|m| m.iter().map(|(k, x)| (k.clone(), u(x))).collect()).unwrap_or_default()
}

fn sub_map(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl ScrubStats {
    /// Evictions of `table` (0 when it evicted nothing).
    pub fn table_evictions(&self, table: &str) -> u64 {
        self.table_evictions.get(table).copied().unwrap_or(0)
    }
}

impl ScrubStats {
    /// Reads the result of a `stats` request.
    pub fn from_json(s: &Value) -> ScrubStats {
        let mut out = ScrubStats {
            forwarded: u(&s["forwarded"]),
            replied: u(&s["replied"]),
            dropped_total: u(&s["dropped_total"]),
            passed: u(&s["totals"]["packets"]["pass"]),
            dropped: map_of(&s["totals"]["dropped"]),
            events: map_of(&s["totals"]["events"]),
            table_evictions: s["totals"]["tables"]
                .as_object()
                .map(|m| m.iter().map(|(k, t)| (k.clone(), u(&t["evictions"]))).collect())
                .unwrap_or_default(),
            ..ScrubStats::default()
        };
        for w in s["workers"].as_array().into_iter().flatten() {
            out.rx += u(&w["rx"]);
            out.worker_rx.push(u(&w["rx"]));
            out.tx_egress += u(&w["tx_egress"]);
            out.tx_ingress += u(&w["tx_ingress"]);
            out.tx_ring_full += u(&w["tx_ring_full"]);
            out.cpu_ns += u(&w["cpu_ns"]);
            let r = &w["ring"];
            out.socket.rx_dropped += u(&r["rx_dropped"]);
            out.socket.rx_ring_full += u(&r["rx_ring_full"]);
            out.socket.fill_ring_empty += u(&r["fill_ring_empty"]);
            out.socket.tx_invalid += u(&r["tx_invalid"]);
        }
        for p in s["xdp"].as_object().into_iter().flat_map(|m| m.values()) {
            out.xdp.not_ip += u(&p["not_ip"]);
            out.xdp.local += u(&p["local"]);
            out.xdp.unprotected += u(&p["unprotected"]);
            out.xdp.redirected += u(&p["redirected"]);
            out.xdp.no_socket += u(&p["no_socket"]);
            out.xdp.malformed += u(&p["malformed"]);
        }
        out
    }

    /// Drops counted under `reason` (its metrics name, e.g. `tcp_xmas`).
    pub fn drops(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }

    /// Count of the event `name` (its metrics name, e.g. `syn_ack_sent`), 0 when never seen.
    pub fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
    }

    /// `self - earlier` (saturating; a restarted daemon starts from zero, so take both
    /// snapshots from one daemon).
    pub fn since(&self, e: &ScrubStats) -> ScrubStats {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        ScrubStats {
            rx: d(self.rx, e.rx),
            worker_rx: self
                .worker_rx
                .iter()
                .enumerate()
                .map(|(i, &a)| d(a, e.worker_rx.get(i).copied().unwrap_or(0)))
                .collect(),
            tx_egress: d(self.tx_egress, e.tx_egress),
            tx_ingress: d(self.tx_ingress, e.tx_ingress),
            tx_ring_full: d(self.tx_ring_full, e.tx_ring_full),
            cpu_ns: d(self.cpu_ns, e.cpu_ns),
            forwarded: d(self.forwarded, e.forwarded),
            replied: d(self.replied, e.replied),
            dropped_total: d(self.dropped_total, e.dropped_total),
            passed: d(self.passed, e.passed),
            dropped: sub_map(&self.dropped, &e.dropped),
            events: sub_map(&self.events, &e.events),
            table_evictions: sub_map(&self.table_evictions, &e.table_evictions),
            xdp: self.xdp.since(&e.xdp),
            socket: SocketStats {
                rx_dropped: d(self.socket.rx_dropped, e.socket.rx_dropped),
                rx_ring_full: d(self.socket.rx_ring_full, e.socket.rx_ring_full),
                fill_ring_empty: d(self.socket.fill_ring_empty, e.socket.fill_ring_empty),
                tx_invalid: d(self.socket.tx_invalid, e.socket.tx_invalid),
            },
        }
    }

    /// Worker CPU time per received frame, nanoseconds (0 with no frames).
    pub fn cpu_ns_per_packet(&self) -> f64 {
        if self.rx == 0 { 0.0 } else { self.cpu_ns as f64 / self.rx as f64 }
    }
}

/// Workers publish their counters every 50 ms: wait this long after traffic stops before reading
/// them, so the last frames are included.
pub const PUBLISH_SETTLE: Duration = Duration::from_millis(150);

/// Counters of several interfaces read at one moment, by `namespace/interface`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Links(pub BTreeMap<String, LinkStats>);

impl Links {
    /// Reads `(namespace, interface)` pairs.
    pub fn read(which: &[(String, &str)]) -> Result<Links, CmdError> {
        let mut m = BTreeMap::new();
        for (ns, dev) in which {
            m.insert(format!("{ns}/{dev}"), link_stats(ns, dev)?);
        }
        Ok(Links(m))
    }

    /// Counters of `ns/dev` (zero when not read).
    pub fn get(&self, ns: &str, dev: &str) -> LinkStats {
        self.0.get(&format!("{ns}/{dev}")).copied().unwrap_or_default()
    }

    /// `self - earlier`, per interface.
    pub fn since(&self, e: &Links) -> Links {
        Links(self.0.iter().map(|(k, v)| (k.clone(), v.since(&e.0.get(k).copied().unwrap_or_default()))).collect())
    }
}

/// IP counters of one namespace (`/proc/net/snmp` and `/proc/net/snmp6`, read inside it): what a
/// router forwarded and discarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IpCounters {
    /// IPv4 and IPv6 datagrams forwarded.
    pub forwarded: u64,
    /// IPv4 and IPv6 datagrams discarded on the way in or out (header and address errors, no
    /// route, discards).
    pub discarded: u64,
}

impl IpCounters {
    /// Reads namespace `ns`'s counters.
    pub fn read(ns: &str) -> Result<IpCounters, CmdError> {
        let out = Cmd::new("cat").args(&["/proc/net/snmp", "/proc/net/snmp6"]).netns(ns).run()?;
        Ok(IpCounters::parse(&out.stdout))
    }

    /// Parses the text of `/proc/net/snmp` followed by `/proc/net/snmp6`.
    pub fn parse(text: &str) -> IpCounters {
        let mut v4: BTreeMap<&str, u64> = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let (names, values) = (pair[0], pair[1]);
            if names.starts_with("Ip: ") && values.starts_with("Ip: ") && !names.contains(|c: char| c.is_ascii_digit())
            {
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                    v4.insert(n, v.parse().unwrap_or(0));
                }
            }
        }
        let v6: BTreeMap<&str, u64> = lines
            .iter()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?, w.next()?.parse().ok()?))
            })
            .filter(|(n, _): &(&str, u64)| n.starts_with("Ip6"))
            .collect();
        let g4 = |k: &str| v4.get(k).copied().unwrap_or(0);
        let g6 = |k: &str| v6.get(k).copied().unwrap_or(0);
        IpCounters {
            forwarded: g4("ForwDatagrams") + g6("Ip6OutForwDatagrams"),
            discarded: ["InHdrErrors", "InAddrErrors", "InDiscards", "OutDiscards", "OutNoRoutes"]
                .iter()
                .map(|k| g4(k))
                .sum::<u64>()
                + [
                    "Ip6InHdrErrors",
                    "Ip6InAddrErrors",
                    "Ip6InDiscards",
                    "Ip6OutDiscards",
                    "Ip6InNoRoutes",
                    "Ip6OutNoRoutes",
                ]
                .iter()
                .map(|k| g6(k))
                .sum::<u64>(),
        }
    }

    /// `self - earlier`.
    pub fn since(&self, e: &IpCounters) -> IpCounters {
        IpCounters {
            forwarded: self.forwarded.saturating_sub(e.forwarded),
            discarded: self.discarded.saturating_sub(e.discarded),
        }
    }
}

/// Clock ticks per second of `/proc/stat` and `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
pub const USER_HZ: u64 = 100;

/// Time one CPU core spent per state, from `/proc/stat`, in nanoseconds (tick resolution: 10 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CoreTimes {
    /// User time (with nice).
    pub user_ns: u64,
    /// System time.
    pub system_ns: u64,
    /// Softirq time.
    pub softirq_ns: u64,
    /// Idle time (with iowait).
    pub idle_ns: u64,
}

impl CoreTimes {
    /// Core `core`'s times now.
    pub fn read(core: usize) -> std::io::Result<CoreTimes> {
        let text = std::fs::read_to_string("/proc/stat")?;
        CoreTimes::parse(&text, core).ok_or_else(|| std::io::Error::other(format!("no cpu{core} line in /proc/stat")))
    }

    /// Parses core `core`'s line of `/proc/stat` text.
    pub fn parse(text: &str, core: usize) -> Option<CoreTimes> {
        let name = format!("cpu{core}");
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
        let t = |i: usize| f.get(i).copied().unwrap_or(0) * (1_000_000_000 / USER_HZ);
        // user nice system idle iowait irq softirq ...
        Some(CoreTimes { user_ns: t(0) + t(1), system_ns: t(2), softirq_ns: t(6), idle_ns: t(3) + t(4) })
    }

    /// `self - earlier`.
    pub fn since(&self, e: &CoreTimes) -> CoreTimes {
        CoreTimes {
            user_ns: self.user_ns.saturating_sub(e.user_ns),
            system_ns: self.system_ns.saturating_sub(e.system_ns),
            softirq_ns: self.softirq_ns.saturating_sub(e.softirq_ns),
            idle_ns: self.idle_ns.saturating_sub(e.idle_ns),
        }
    }
}

/// User and system time of one thread (`/proc/<pid>/task/<tid>/stat`), in nanoseconds (tick
/// resolution, scaled by the kernel to the thread's precise runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ThreadTimes {
    /// User time.
    pub user_ns: u64,
    /// System time (including softirq work done in its context).
    pub system_ns: u64,
}

impl ThreadTimes {
    /// The thread of process `pid` whose name (`comm`) starts with `name`, and its times now.
    pub fn find(pid: u32, name: &str) -> Option<(u32, ThreadTimes)> {
        let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for e in dir.flatten() {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(name) {
                return ThreadTimes::read(pid, tid).map(|t| (tid, t));
            }
        }
        None
    }

    /// Times of thread `tid` of `pid` now.
    pub fn read(pid: u32, tid: u32) -> Option<ThreadTimes> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let rest = text.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0) * (1_000_000_000 / USER_HZ);
        Some(ThreadTimes { user_ns: tick(11), system_ns: tick(12) })
    }

    /// `self - earlier`.
    pub fn since(&self, e: &ThreadTimes) -> ThreadTimes {
        ThreadTimes {
            user_ns: self.user_ns.saturating_sub(e.user_ns),
            system_ns: self.system_ns.saturating_sub(e.system_ns),
        }
    }
}

/// What `scrubber gen --json` prints at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenReport {
    /// Interface it sent on.
    #[serde(default)]
    pub interface: String,
    /// Profiles, comma-separated.
    #[serde(default)]
    pub profile: String,
    /// Frames sent.
    pub sent: u64,
    /// Seconds it sent for.
    pub seconds: f64,
    /// Average rate.
    pub pps: f64,
    /// Distinct frames in its pool.
    #[serde(default)]
    pub flows: u64,
}

impl GenReport {
    /// Parses the last JSON line of the generator's stdout.
    pub fn parse(stdout: &str) -> Result<GenReport, String> {
        let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("no JSON report from gen")?;
        serde_json::from_str(line).map_err(|e| format!("gen report {line:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_sum_workers_and_programs_and_subtract() {
        let s = json!({
            "forwarded": 10, "replied": 1, "dropped_total": 5,
            "totals": {"packets": {"pass": 2}, "dropped": {"tcp_xmas": 3, "deny_list": 2}, "events": {"bypass_forward": 4}},
            "workers": [
                {"rx": 10, "tx_egress": 9, "tx_ingress": 1, "tx_ring_full": 0, "cpu_ns": 1000,
                 "ring": {"rx_dropped": 1, "rx_ring_full": 0, "fill_ring_empty": 1, "tx_invalid": 0}},
                {"rx": 8, "tx_egress": 1, "tx_ingress": 0, "tx_ring_full": 2, "cpu_ns": 600, "ring": {}}
            ],
            "xdp": {"in0": {"not_ip": 1, "local": 2, "unprotected": 3, "redirected": 18, "no_socket": 0, "malformed": 0}}
        });
        let a = ScrubStats::from_json(&s);
        assert_eq!((a.rx, a.tx_egress, a.cpu_ns, a.tx_ring_full), (18, 10, 1600, 2));
        assert_eq!(a.worker_rx, [10, 8]);
        assert_eq!((a.drops("tcp_xmas"), a.drops("ttl_zero")), (3, 0));
        assert_eq!((a.xdp.total(), a.xdp.redirected, a.socket.rx_dropped), (24, 18, 1));
        let mut b = a.clone();
        b.rx += 100;
        b.worker_rx = vec![40, 78];
        b.cpu_ns += 5000;
        b.dropped.insert("tcp_xmas".into(), 53);
        b.xdp.redirected += 100;
        let d = b.since(&a);
        assert_eq!((d.rx, d.drops("tcp_xmas"), d.drops("deny_list"), d.xdp.total()), (100, 50, 0, 100));
        assert_eq!(d.worker_rx, [30, 70]);
        assert!(!d.dropped.contains_key("deny_list"), "zero deltas are left out");
        assert_eq!(d.cpu_ns_per_packet(), 50.0);
    }

    #[test]
    fn proc_parsers() {
        let stat = "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 100 0 50 1000 5 0 20 0 0 0\ncpu1 7 0 7 7 0 0 3 0 0 0\n";
        let c = CoreTimes::parse(stat, 1).unwrap();
        assert_eq!((c.user_ns, c.system_ns, c.softirq_ns), (70_000_000, 70_000_000, 30_000_000));
        assert!(CoreTimes::parse(stat, 2).is_none());
        let snmp = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes\n\
                    Ip: 1 64 100 1 2 90 0 3 5 5 4 5\n\
                    Icmp: InMsgs\nIcmp: 0\n\
                    Ip6InReceives 10\nIp6InHdrErrors 1\nIp6OutForwDatagrams 7\nIp6InNoRoutes 2\n";
        let ip = IpCounters::parse(snmp);
        assert_eq!(ip, IpCounters { forwarded: 97, discarded: 1 + 2 + 3 + 4 + 5 + 1 + 2 });
        let g = GenReport::parse("warming up\n{\"sent\": 5, \"seconds\": 1.0, \"pps\": 5.0, \"profile\": \"udp\"}\n")
            .unwrap();
        assert_eq!((g.sent, g.profile.as_str()), (5, "udp"));
        assert!(GenReport::parse("nothing").is_err());
    }
}
