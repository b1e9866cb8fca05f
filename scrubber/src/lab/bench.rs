//! `scrubber lab bench` (`make bench-lab`): the cost per packet of the AF_XDP path, measured in
//! one lab, at one fixed offered rate, back to back:
//!
//! - `minimal`: the daemon with `--forwarder-only` (workers rewrite MACs and forward; no
//!   pipeline) — the floor of this path on this machine;
//! - `bypass`: the daemon with bypass on (parse, classify, forward unchecked);
//! - `full`: the daemon with the lab config's checks;
//! - `nftables`: no daemon; an nftables netdev ingress chain on scrub:in0 making the equivalent
//!   checks (protected destination, TTL 0, TCP flag abuse, deny set) and dropping.
//!
//! The generator runs in the edge namespace on e-s (no router in between), pinned to one core;
//! the worker is pinned to another by the config. On veth the XDP program, the copy into the
//! UMEM and nftables all run in the sender's softirq, so the figures are: the worker thread's
//! CPU time per packet (CLOCK_THREAD_CPUTIME_ID, from `stats`; its user/system split from
//! `/proc`), and the softirq time of the sender's core per packet (`/proc/stat`, 10 ms ticks).
//! Origin's o0 drops the forwarded frames in XDP (`sink.bpf.c`): that receive work runs inside
//! the worker's transmit and is charged to it, so it is kept small and equal in every mode.
//! Ratios to `minimal` within one run are the figure: each round runs every mode once, back to
//! back; a mode's ratio is the median over rounds of its ratio to `minimal` in the same round,
//! which cancels the slow drift of other load on a shared machine.

use super::cmd::Cmd;
use super::instance::{Lab, LabError};
use super::observe::{CoreTimes, PUBLISH_SETTLE, ThreadTimes};
use super::topo::{LabOptions, Role, SCRUB_IN0_V4};
use super::traffic::GenSpec;
use dataplane::Cidr;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The XDP sink attached to origin:o0 during the benchmark (`sink.bpf.c`, compiled by the build
/// script).
pub const SINK_BPF_O: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sink.o"));

/// Options of `scrubber lab bench`.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Lab instance id.
    pub id: String,
    /// The fixed offered rate, packets per second.
    pub rate: u64,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Rounds; each runs every mode once.
    pub rounds: usize,
    /// Daemon config to adapt (default `configs/lab.toml`).
    pub config: Option<PathBuf>,
    /// Core the generator is pinned to (the worker's core comes from the config).
    pub gen_core: usize,
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `scrubber run --forwarder-only`.
    Minimal,
    /// The daemon with bypass on.
    Bypass,
    /// The daemon with its checks.
    Full,
    /// nftables in the netdev ingress hook, no daemon.
    Nftables,
}

impl Mode {
    /// In the order they run.
    pub const ALL: [Mode; 4] = [Mode::Minimal, Mode::Bypass, Mode::Full, Mode::Nftables];

    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Minimal => "minimal",
            Mode::Bypass => "bypass",
            Mode::Full => "full",
            Mode::Nftables => "nftables",
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measure {
    /// Mode name.
    pub mode: String,
    /// Round (0-based).
    pub round: usize,
    /// Frames the generator sent.
    pub sent: u64,
    /// Its rate.
    pub offered_pps: f64,
    /// Frames that reached the check (XDP program, or the nftables chain).
    pub received: u64,
    /// Frames forwarded to origin per second (AF_XDP modes).
    pub delivered_pps: f64,
    /// Frames dropped per second (nftables).
    pub dropped_pps: f64,
    /// CPU time per received frame of what does the checking: the worker thread (AF_XDP), the
    /// sender core's softirq (nftables).
    pub check_ns_per_packet: f64,
    /// Worker thread: user part (AF_XDP modes).
    pub worker_user_ns_per_packet: f64,
    /// Worker thread: system part (its transmit path, and the sink's receive work run inside it).
    pub worker_system_ns_per_packet: f64,
    /// Softirq time of the sender's core per received frame (the XDP program and the copy into
    /// the UMEM, or nftables).
    pub sender_softirq_ns_per_packet: f64,
    /// `sender_softirq + worker` (AF_XDP) or `sender_softirq` (nftables).
    pub total_ns_per_packet: f64,
    /// Frames lost on the way: socket drops and TX ring full (AF_XDP), sent but not seen.
    pub lost: u64,
}

/// The median figures of one mode and its ratios to `minimal`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Mode name.
    pub mode: String,
    /// Median offered rate.
    pub offered_pps: f64,
    /// Median delivered rate.
    pub delivered_pps: f64,
    /// Median dropped rate.
    pub dropped_pps: f64,
    /// Median check CPU per packet.
    pub check_ns_per_packet: f64,
    /// Smallest and largest check CPU per packet over the rounds (the spread is the noise).
    pub check_ns_range: (f64, f64),
    /// Its ratio to `minimal`'s: the median over rounds of the ratio within each round.
    pub check_vs_minimal: f64,
    /// Median worker user time per packet.
    pub worker_user_ns_per_packet: f64,
    /// Median worker system time per packet.
    pub worker_system_ns_per_packet: f64,
    /// Median sender softirq per packet.
    pub sender_softirq_ns_per_packet: f64,
    /// Median total per packet.
    pub total_ns_per_packet: f64,
    /// Its ratio to `minimal`'s (median of the per-round ratios).
    pub total_vs_minimal: f64,
    /// Median frames lost.
    pub lost: u64,
}

/// The benchmark's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BenchReport {
    /// Fixed offered rate.
    pub rate: u64,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Rounds per mode.
    pub rounds: usize,
    /// Generator core.
    pub gen_core: usize,
    /// Worker core (from the config).
    pub worker_core: Option<usize>,
    /// Medians per mode.
    pub summary: Vec<Summary>,
    /// `bypass / minimal` worker CPU per packet, the median of the ratios within each round
    /// (goal <= 1.05). Pairing by round cancels the slow drift of other load on the machine.
    pub bypass_vs_minimal: f64,
    /// `full / bypass` worker CPU per packet, likewise (goal <= 1.25).
    pub full_vs_bypass: f64,
    /// The same two ratios taken between the medians over all rounds instead.
    pub ratios_of_medians: (f64, f64),
    /// Per round: `(bypass / minimal, full / bypass)`.
    pub round_ratios: Vec<(f64, f64)>,
    /// Every measurement.
    pub measures: Vec<Measure>,
}

/// The nftables ruleset making, in scrub:in0's netdev ingress hook, the checks of the pipeline's
/// baseline filters that nftables can express (TTL / hop limit 0, TCP flag abuse) and a lookup of
/// the config's deny list (`deny`) for the lab's protected prefixes, then dropping.
pub fn nft_ruleset(deny: &[Cidr]) -> String {
    let set = |v4: bool| {
        let elems: Vec<String> = deny.iter().filter(|c| c.is_v4() == v4).map(|c| c.to_string()).collect();
        let ty = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let elements = if elems.is_empty() { String::new() } else { format!(" elements = {{ {} }}", elems.join(", ")) };
        format!("{{ type {ty}; flags interval; auto-merge;{elements} }}")
    };
    format!(
        r#"table netdev scrubbench {{
  set deny4 {}
  set deny6 {}
  counter checked {{ }}
  counter dropped {{ }}
  chain in0 {{
    type filter hook ingress device "in0" priority 0; policy accept;
    meta protocol != {{ ip, ip6 }} accept
    meta protocol ip ip daddr != 198.18.100.0/24 accept
    meta protocol ip6 ip6 daddr != 2001:2:0:100::/64 accept
    counter name "checked"
    ip ttl 0 drop
    ip6 hoplimit 0 drop
    tcp flags & (fin | syn | rst | psh | ack | urg) == 0x0 drop
    tcp flags & (syn | fin) == syn | fin drop
    tcp flags & (syn | rst) == syn | rst drop
    tcp flags & (fin | psh | urg) == fin | psh | urg drop
    ip saddr @deny4 drop
    ip6 saddr @deny6 drop
    counter name "dropped" drop
  }}
}}
"#,
        set(true),
        set(false)
    )
}

/// The deny list of `config` (inline entries and list files, relative to the config's directory).
pub fn deny_list(config: &Path) -> Result<Vec<Cidr>, LabError> {
    let c = control::Config::load(config).map_err(|e| LabError::Invalid(e.to_string()))?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut v: Vec<Cidr> = Vec::new();
    for d in &c.policy.deny {
        v.push(d.parse().map_err(|e| LabError::Invalid(format!("policy.deny {d}: {e}")))?);
    }
    for f in &c.policy.deny_files {
        let p = if f.is_absolute() { f.clone() } else { dir.join(f) };
        v.extend(control::lists::load_prefix_list(&p).map_err(|e| LabError::Invalid(e.to_string()))?);
    }
    Ok(v)
}

/// Writes the XDP sink's object into the lab's directory and attaches it to origin:o0
/// (`ip link set ... xdp obj` loads it from a file).
pub(super) fn attach_sink(lab: &Lab) -> Result<(), LabError> {
    let obj = lab.dir().join("sink.o");
    std::fs::write(&obj, SINK_BPF_O).map_err(|e| LabError::Io { path: obj.clone(), source: e })?;
    Cmd::new("ip")
        .args(&["-n", &lab.ns(Role::Origin), "link", "set", "dev", "o0", "xdp", "obj", &obj.display().to_string()])
        .args(&["sec", "xdp"])
        .run()?;
    Ok(())
}

/// The cores the lab daemon's workers are pinned to, in the order of its config's queues
/// (queue 0 of in0 first); unpinned workers are left out.
pub(super) fn worker_cores(lab: &Lab) -> Vec<usize> {
    control::Config::load(&lab.state().daemon.config)
        .map(|c| c.dataplane.queues.iter().filter_map(|q| q.core).collect())
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

struct Bench<'a> {
    lab: Lab,
    bin: &'a Path,
    o: &'a BenchOptions,
    worker_core: Option<usize>,
}

impl Bench<'_> {
    fn send(&self, seconds: f64) -> Result<super::observe::GenReport, LabError> {
        let spec = GenSpec {
            role: Role::Edge,
            interface: "e-s".into(),
            gateway: SCRUB_IN0_V4.into(),
            profiles: vec!["udp".into()],
            dport: Some(9),
            rate: self.o.rate,
            seconds,
            core: Some(self.o.gen_core),
            ..GenSpec::attack(&["udp"])
        };
        self.lab.run_gen(self.bin, &spec)
    }

    fn measure_daemon(&mut self, mode: Mode, round: usize) -> Result<Measure, LabError> {
        let extra: Vec<String> = if mode == Mode::Minimal { vec!["--forwarder-only".into()] } else { Vec::new() };
        self.lab.start_daemon(self.bin, &extra)?;
        let result = (|| {
            if mode == Mode::Bypass {
                self.lab.set_bypass(true)?;
            }
            self.send(1.0)?; // warm-up: caches, neighbour entries, the worker's first wakeups
            std::thread::sleep(PUBLISH_SETTLE);
            let pid = self.lab.daemon_pid().ok_or_else(|| LabError::Invalid("the daemon is not running".into()))?;
            let (tid, t0) = ThreadTimes::find(pid, "w-")
                .ok_or_else(|| LabError::Invalid(format!("no worker thread in daemon {pid}")))?;
            let s0 = self.lab.scrub_stats()?;
            let c0 = CoreTimes::read(self.o.gen_core).map_err(|e| LabError::Invalid(e.to_string()))?;
            let g = self.send(self.o.seconds)?;
            std::thread::sleep(PUBLISH_SETTLE);
            let c1 = CoreTimes::read(self.o.gen_core).map_err(|e| LabError::Invalid(e.to_string()))?;
            let d = self.lab.scrub_stats()?.since(&s0);
            let t = ThreadTimes::read(pid, tid).unwrap_or_default().since(&t0);
            let received = d.xdp.total();
            let per = |ns: u64| ratio(ns as f64, d.rx as f64);
            let soft = ratio(c1.since(&c0).softirq_ns as f64, received as f64);
            let check = d.cpu_ns_per_packet();
            Ok(Measure {
                mode: mode.name().into(),
                round,
                sent: g.sent,
                offered_pps: g.pps,
                received,
                delivered_pps: ratio(d.tx_egress as f64, g.seconds),
                dropped_pps: ratio(d.dropped_total as f64, g.seconds),
                check_ns_per_packet: check,
                worker_user_ns_per_packet: per(t.user_ns),
                worker_system_ns_per_packet: per(t.system_ns),
                sender_softirq_ns_per_packet: soft,
                total_ns_per_packet: soft + check,
                lost: g.sent.saturating_sub(d.tx_egress),
            })
        })();
        self.lab.stop_daemon(Duration::from_secs(5))?;
        result
    }

    fn measure_nft(&mut self, round: usize) -> Result<Measure, LabError> {
        let scrub = self.lab.ns(Role::Scrub);
        let deny = deny_list(&self.lab.state().daemon.source_config)?;
        super::counters::load(&scrub, &nft_ruleset(&deny))?;
        let result = (|| {
            self.send(1.0)?;
            super::counters::reset(&scrub, "netdev", "scrubbench")?;
            let c0 = CoreTimes::read(self.o.gen_core).map_err(|e| LabError::Invalid(e.to_string()))?;
            let g = self.send(self.o.seconds)?;
            let c1 = CoreTimes::read(self.o.gen_core).map_err(|e| LabError::Invalid(e.to_string()))?;
            let n = super::counters::read(&scrub, "netdev", "scrubbench")?;
            let received = n.packets("checked");
            let soft = ratio(c1.since(&c0).softirq_ns as f64, received as f64);
            Ok(Measure {
                mode: Mode::Nftables.name().into(),
                round,
                sent: g.sent,
                offered_pps: g.pps,
                received,
                delivered_pps: 0.0,
                dropped_pps: ratio(n.packets("dropped") as f64, g.seconds),
                check_ns_per_packet: soft,
                sender_softirq_ns_per_packet: soft,
                total_ns_per_packet: soft,
                lost: g.sent.saturating_sub(n.packets("dropped")),
                ..Measure::default()
            })
        })();
        Cmd::new("nft").args(&["delete", "table", "netdev", "scrubbench"]).netns(&scrub).run()?;
        result
    }
}

/// Runs the benchmark; progress lines go to `live`. The lab is removed at the end, whatever
/// happened.
pub fn run(
    o: &BenchOptions,
    bin: &Path,
    stop: &Arc<AtomicBool>,
    live: &mut dyn Write,
) -> Result<BenchReport, LabError> {
    let opts =
        LabOptions { config: o.config.clone(), owner_pid: Some(std::process::id()), ..LabOptions::new(o.id.clone()) };
    super::instance::sweep_orphans();
    let lab = Lab::up(opts)?;
    attach_sink(&lab)?;
    let worker_core = worker_cores(&lab).first().copied();
    let _ = writeln!(
        live,
        "lab {}: generator on core {} (edge e-s -> scrub in0), worker on core {}, {} pps for {} s, {} rounds",
        lab.id(),
        o.gen_core,
        worker_core.map_or("-".to_string(), |c| c.to_string()),
        o.rate,
        o.seconds,
        o.rounds
    );
    let mut b = Bench { lab, bin, o, worker_core };
    let mut measures = Vec::new();
    for round in 0..o.rounds.max(1) {
        for mode in Mode::ALL {
            if stop.load(Ordering::Relaxed) {
                return Err(LabError::Invalid("interrupted".into()));
            }
            let m = match mode {
                Mode::Nftables => b.measure_nft(round)?,
                _ => b.measure_daemon(mode, round)?,
            };
            let _ = writeln!(
                live,
                "round {round} {:<9} offered {:>8.0} pps  delivered {:>8.0}  check {:>7.1} ns/pkt (user {:>6.1} sys {:>6.1})  sender softirq {:>6.1} ns/pkt  lost {}",
                m.mode,
                m.offered_pps,
                if mode == Mode::Nftables { m.dropped_pps } else { m.delivered_pps },
                m.check_ns_per_packet,
                m.worker_user_ns_per_packet,
                m.worker_system_ns_per_packet,
                m.sender_softirq_ns_per_packet,
                m.lost
            );
            measures.push(m);
        }
    }
    let worker_core = b.worker_core;
    b.lab.down()?;
    Ok(summarize(o, worker_core, measures))
}

/// Median over rounds of `f(mode in round r) / f(base in round r)`.
fn paired(measures: &[Measure], mode: Mode, base: Mode, f: &dyn Fn(&Measure) -> f64) -> Vec<f64> {
    let at = |mode: Mode, r: usize| measures.iter().find(|m| m.mode == mode.name() && m.round == r).map(f);
    let rounds = measures.iter().map(|m| m.round).max().map_or(0, |r| r + 1);
    (0..rounds).filter_map(|r| Some(ratio(at(mode, r)?, at(base, r)?))).collect()
}

fn summarize(o: &BenchOptions, worker_core: Option<usize>, measures: Vec<Measure>) -> BenchReport {
    let med = |mode: Mode, f: &dyn Fn(&Measure) -> f64| {
        median(measures.iter().filter(|m| m.mode == mode.name()).map(f).collect())
    };
    let check_of = |m: &Measure| m.check_ns_per_packet;
    let summary: Vec<Summary> = Mode::ALL
        .iter()
        .map(|&mode| {
            let all: Vec<f64> = measures.iter().filter(|m| m.mode == mode.name()).map(check_of).collect();
            let range = (all.iter().copied().fold(f64::INFINITY, f64::min), all.iter().copied().fold(0.0, f64::max));
            Summary {
                mode: mode.name().into(),
                offered_pps: med(mode, &|m| m.offered_pps),
                delivered_pps: med(mode, &|m| m.delivered_pps),
                dropped_pps: med(mode, &|m| m.dropped_pps),
                check_ns_per_packet: med(mode, &check_of),
                check_ns_range: if all.is_empty() { (0.0, 0.0) } else { range },
                check_vs_minimal: median(paired(&measures, mode, Mode::Minimal, &check_of)),
                worker_user_ns_per_packet: med(mode, &|m| m.worker_user_ns_per_packet),
                worker_system_ns_per_packet: med(mode, &|m| m.worker_system_ns_per_packet),
                sender_softirq_ns_per_packet: med(mode, &|m| m.sender_softirq_ns_per_packet),
                total_ns_per_packet: med(mode, &|m| m.total_ns_per_packet),
                total_vs_minimal: median(paired(&measures, mode, Mode::Minimal, &|m| m.total_ns_per_packet)),
                lost: med(mode, &|m| m.lost as f64) as u64,
            }
        })
        .collect();
    let check = |mode: Mode| summary.iter().find(|s| s.mode == mode.name()).map_or(0.0, |s| s.check_ns_per_packet);
    let bm = paired(&measures, Mode::Bypass, Mode::Minimal, &check_of);
    let fb = paired(&measures, Mode::Full, Mode::Bypass, &check_of);
    BenchReport {
        rate: o.rate,
        seconds: o.seconds,
        rounds: o.rounds.max(1),
        gen_core: o.gen_core,
        worker_core,
        bypass_vs_minimal: median(bm.clone()),
        full_vs_bypass: median(fb.clone()),
        ratios_of_medians: (
            ratio(check(Mode::Bypass), check(Mode::Minimal)),
            ratio(check(Mode::Full), check(Mode::Bypass)),
        ),
        round_ratios: bm.into_iter().zip(fb).collect(),
        summary,
        measures,
    }
}

/// The report as a Markdown table.
pub fn format_report(r: &BenchReport) -> String {
    let mut s = format!(
        "\n{} pps offered, {} s x {} rounds, generator core {}, worker core {}\n\n",
        r.rate,
        r.seconds,
        r.rounds,
        r.gen_core,
        r.worker_core.map_or("-".into(), |c| c.to_string())
    );
    s.push_str("| mode | offered pps | delivered (dropped) pps | check CPU ns/pkt | range | x minimal | worker user / sys ns/pkt | sender softirq ns/pkt | total ns/pkt | x minimal | lost |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for m in &r.summary {
        let nft = m.mode == Mode::Nftables.name();
        let (user_sys, delivered) = if nft {
            ("-".to_string(), format!("({:.0})", m.dropped_pps))
        } else {
            (
                format!("{:.0} / {:.0}", m.worker_user_ns_per_packet, m.worker_system_ns_per_packet),
                format!("{:.0}", m.delivered_pps),
            )
        };
        s.push_str(&format!(
            "| {} | {:.0} | {} | {:.0} | {:.0}-{:.0} | {:.2} | {} | {:.0} | {:.0} | {:.2} | {} |\n",
            m.mode,
            m.offered_pps,
            delivered,
            m.check_ns_per_packet,
            m.check_ns_range.0,
            m.check_ns_range.1,
            m.check_vs_minimal,
            user_sys,
            m.sender_softirq_ns_per_packet,
            m.total_ns_per_packet,
            m.total_vs_minimal,
            m.lost
        ));
    }
    let rounds: Vec<String> = r.round_ratios.iter().map(|(a, b)| format!("{a:.2} / {b:.2}")).collect();
    s.push_str(&format!(
        "\nworker CPU per packet, median of the per-round ratios: bypass / minimal {:.3} (goal <= 1.05), \
         full / bypass {:.3} (goal <= 1.25)\nper round (bypass / minimal, full / bypass): {}\n\
         ratios of the medians instead: {:.3}, {:.3}\n",
        r.bypass_vs_minimal,
        r.full_vs_bypass,
        rounds.join("; "),
        r.ratios_of_medians.0,
        r.ratios_of_medians.1
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_medians_and_ratios() {
        let m = |mode: Mode, round, check: f64| Measure {
            mode: mode.name().into(),
            round,
            check_ns_per_packet: check,
            total_ns_per_packet: check + 100.0,
            ..Measure::default()
        };
        let o = BenchOptions { id: "b".into(), rate: 1, seconds: 1.0, rounds: 3, config: None, gen_core: 0 };
        let ms = vec![
            m(Mode::Minimal, 0, 100.0),
            m(Mode::Minimal, 1, 1000.0),
            m(Mode::Minimal, 2, 110.0),
            m(Mode::Bypass, 0, 104.0),
            m(Mode::Full, 0, 130.0),
            m(Mode::Nftables, 0, 80.0),
        ];
        let r = summarize(&o, Some(1), ms);
        assert_eq!(r.summary[0].check_ns_per_packet, 110.0, "median, not mean");
        assert_eq!(r.summary[0].check_ns_range, (100.0, 1000.0));
        // Paired by round: bypass and full ran only in round 0, beside minimal's 100.
        assert!((r.bypass_vs_minimal - 1.04).abs() < 1e-9);
        assert!((r.full_vs_bypass - 130.0 / 104.0).abs() < 1e-9);
        assert!((r.ratios_of_medians.0 - 104.0 / 110.0).abs() < 1e-9);
        assert_eq!(r.round_ratios.len(), 1);
        assert!(format_report(&r).contains("| nftables |"));
    }

    #[test]
    fn nft_ruleset_hooks_in0_and_counts() {
        let r = nft_ruleset(&["198.19.0.1/32".parse().unwrap(), "2001:2:0:ff::/64".parse().unwrap()]);
        assert!(r.contains(r#"hook ingress device "in0""#));
        assert!(
            r.contains("set deny4 { type ipv4_addr; flags interval; auto-merge; elements = { 198.19.0.1/32 } }"),
            "{r}"
        );
        assert!(r.contains("elements = { 2001:2:0:ff::/64 }"), "{r}");
        assert!(nft_ruleset(&[]).contains("set deny4 { type ipv4_addr; flags interval; auto-merge; }"));
        assert!(r.contains(r#"counter name "checked""#) && r.contains(r#"counter name "dropped" drop"#));
    }
}
