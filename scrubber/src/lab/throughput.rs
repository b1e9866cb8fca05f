//! `scrubber lab bench --throughput` (`make bench-rfc2544`): an RFC 2544 §26.1 style throughput
//! search through the scrubber with its full checks, per frame size.
//!
//! For each frame size (64..1518 bytes on the wire with the FCS, as RFC 2544 §9.1 counts them),
//! the generator in the edge namespace sends clean UDP at a rate, the daemon forwards it and
//! origin's o0 drops it in XDP; the loss of a trial is what was sent minus what the workers
//! transmitted. The search starts at the generator's own ceiling for that size (a trial at
//! rate 0, "as fast as it can") and bisects between the highest rate that passed and the
//! lowest that failed until they are within `resolution` of each other. RFC 2544 asks for zero
//! loss; `max_loss` (default 0.1 %) is the tolerance allowed on a shared VM where one stray
//! scheduling hiccup loses a few frames, and the report states it.
//!
//! With `queues` > 1 the ingress and egress links get that many queues and the daemon a worker
//! per queue (`lab up --queues`); a trial runs one generator per queue, each sending a share of
//! the rate on its own TX queue from its own spoofed /24 (as RSS keeps a source on one queue),
//! pinned to its own core (`gen_cores`; by default the cores after the workers'). A veth hands
//! a frame sent on TX queue q to its peer's RX queue q, so each worker gets one generator's
//! traffic: the search measures how the whole path scales with queues and cores.
//!
//! With an attack `profile` (`syn-flood`, `udp-amp`, `quic-initial`, `tcp-xmas`, `tcp-null`)
//! instead of clean UDP, the generators send that flood in its own frame sizes, and a trial's
//! loss is what was sent minus what the workers received and decided (dropped, challenged or
//! forwarded): the search finds the highest attack rate absorbed with nothing lost before the
//! checks.
//!
//! One lab, one daemon for the whole search; everything is removed at the end.

use super::bench::{attach_sink, worker_cores};
use super::instance::{Lab, LabError};
use super::observe::PUBLISH_SETTLE;
use super::topo::{LabOptions, MAX_QUEUES, Role, SCRUB_IN0_V4};
use super::traffic::GenSpec;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// RFC 2544 §9.1's Ethernet frame sizes (with the 4-byte FCS).
pub const RFC2544_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 1280, 1518];
/// The generator profiles the search can send: clean UDP, forwarded, and floods, decided.
pub const PROFILES: [&str; 6] = [CLEAN, "syn-flood", "udp-amp", "quic-initial", "tcp-xmas", "tcp-null"];
/// The clean profile: its frames are to be forwarded, a flood's to be decided.
const CLEAN: &str = "udp";
/// Bytes on the wire around each frame besides the frame itself: preamble, SFD, inter-frame gap.
const WIRE_OVERHEAD: usize = 20;
/// The FCS the generator does not write (the NIC does).
const FCS: usize = 4;

/// Options of the throughput search.
#[derive(Clone, Debug, PartialEq)]
pub struct ThroughputOptions {
    /// Lab instance id.
    pub id: String,
    /// Frame sizes with FCS, 64..=1518.
    pub sizes: Vec<usize>,
    /// Seconds per trial.
    pub trial_seconds: f64,
    /// Loss tolerated in a passing trial, as a fraction (RFC 2544: 0).
    pub max_loss: f64,
    /// The search stops when the pass/fail bracket is narrower than this fraction of the rate.
    pub resolution: f64,
    /// Daemon config to adapt (default `configs/lab.toml`).
    pub config: Option<PathBuf>,
    /// Core the generator is pinned to (one queue).
    pub gen_core: usize,
    /// Queues of the scrubbed links, and workers (`lab up --queues`).
    pub queues: u32,
    /// Cores of the generators, one per queue; empty: `gen_core` for one queue, else the cores
    /// after the workers' (see [`ThroughputOptions::generator_cores`]).
    pub gen_cores: Vec<usize>,
    /// Generator profile ([`PROFILES`]): `udp` searches per size, a flood once in its own sizes.
    pub profile: String,
}

impl ThroughputOptions {
    /// Checks the sizes and fractions.
    pub fn validate(&self) -> Result<(), String> {
        if self.sizes.is_empty() {
            return Err("--sizes: at least one frame size".into());
        }
        if let Some(s) = self.sizes.iter().find(|s| !(64..=1518).contains(*s)) {
            return Err(format!("--sizes: {s} is outside 64..=1518 (frame bytes with the FCS)"));
        }
        if !(0.0..0.5).contains(&self.max_loss) {
            return Err(format!("--max-loss: {} is not a fraction in [0, 0.5)", self.max_loss));
        }
        if !(0.001..=0.5).contains(&self.resolution) {
            return Err(format!("--resolution: {} is not in [0.001, 0.5]", self.resolution));
        }
        if !(0.5..=60.0).contains(&self.trial_seconds) {
            return Err(format!("--trial-seconds: {} is not in [0.5, 60]", self.trial_seconds));
        }
        if !(1..=MAX_QUEUES).contains(&self.queues) {
            return Err(format!("--queues {}: 1 to {MAX_QUEUES}", self.queues));
        }
        if !PROFILES.contains(&self.profile.as_str()) {
            return Err(format!("--profile {}: one of {}", self.profile, PROFILES.join(", ")));
        }
        if !self.gen_cores.is_empty() && self.gen_cores.len() != self.queues as usize {
            return Err(format!(
                "--gen-cores: {} cores for {} queues (one generator per queue)",
                self.gen_cores.len(),
                self.queues
            ));
        }
        Ok(())
    }

    /// Whether the traffic is clean UDP, to be forwarded, rather than a flood, to be decided.
    pub fn clean(&self) -> bool {
        self.profile == CLEAN
    }

    /// The frame sizes searched: `sizes` for clean UDP, else one search of the flood's own
    /// frames (size 0).
    pub fn searched_sizes(&self) -> Vec<usize> {
        if self.clean() { self.sizes.clone() } else { vec![0] }
    }

    /// The generators' cores on a machine of `cores` cores whose workers are pinned to
    /// `workers` (the daemon's config, queue order). With several queues the generators take
    /// the cores after the last worker's, going round the machine, those without a worker
    /// first: they share cores with the workers only on a machine with fewer than twice as
    /// many cores as queues.
    pub fn generator_cores(&self, cores: usize, workers: &[usize]) -> Vec<usize> {
        if !self.gen_cores.is_empty() {
            return self.gen_cores.clone();
        }
        if self.queues == 1 {
            return vec![self.gen_core];
        }
        let cores = cores.max(1);
        let start = workers.last().map_or(0, |&c| c + 1);
        let round: Vec<usize> = (0..cores).map(|i| (start + i) % cores).collect();
        let (free, taken): (Vec<usize>, Vec<usize>) = round.into_iter().partition(|c| !workers.contains(c));
        free.into_iter().chain(taken).cycle().take(self.queues as usize).collect()
    }
}

/// Spoofed sources of queue `q`'s generator: queue 0 the lab's attack range, queue q > 0
/// 198.18.(16 + q).1 to .254, a range nothing else in the lab uses.
pub fn queue_sources(q: u32) -> String {
    if q == 0 { super::traffic::ATTACK_SOURCES.to_string() } else { format!("198.18.{0}.1-198.18.{0}.254", 16 + q) }
}

/// One trial at one rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Trial {
    /// Requested rate (0: as fast as the generator can).
    pub rate: u64,
    /// Rate the generator reached.
    pub offered_pps: f64,
    /// Frames sent.
    pub sent: u64,
    /// Frames the workers forwarded.
    pub forwarded: u64,
    /// Frames the workers received and decided.
    pub decided: u64,
    /// Frames the workers answered with a reply (SYN challenges).
    pub replied: u64,
    /// Frames the workers dropped.
    pub dropped: u64,
    /// `1 - forwarded / sent` for clean UDP, `1 - decided / sent` for a flood.
    pub loss: f64,
    /// Worker CPU per received frame, ns.
    pub worker_ns_per_packet: f64,
    /// Frames each worker received (one per queue).
    pub worker_rx: Vec<u64>,
    /// Whether the loss was within the tolerance.
    pub passed: bool,
}

impl Trial {
    /// Whether the generator sent at (nearly) the requested rate; a trial at rate 0 always did.
    pub fn reached_rate(&self) -> bool {
        self.rate == 0 || self.offered_pps >= self.rate as f64 * 0.95
    }
}

/// The search's result for one frame size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SizeResult {
    /// Frame size with FCS (0: a flood's own sizes).
    pub size: usize,
    /// The highest rate that passed, frames per second.
    pub throughput_pps: f64,
    /// That rate in bits per second on the wire (frame + preamble + gap).
    pub throughput_bps: f64,
    /// Loss measured at that rate.
    pub loss: f64,
    /// Worker CPU per frame at that rate.
    pub worker_ns_per_packet: f64,
    /// The generator could send no faster and nothing was lost at its ceiling: the figure is
    /// the generator's, a lower bound of the scrubber's.
    pub generator_bound: bool,
    /// Every trial, in order.
    pub trials: Vec<Trial>,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThroughputReport {
    /// Loss tolerated in a passing trial.
    pub max_loss: f64,
    /// Generator profile.
    pub profile: String,
    /// Seconds per trial.
    pub trial_seconds: f64,
    /// Queues (and workers).
    pub queues: u32,
    /// Generator cores, one per queue.
    pub gen_cores: Vec<usize>,
    /// One entry per size.
    pub sizes: Vec<SizeResult>,
}

struct Search<'a> {
    lab: Lab,
    bin: &'a Path,
    o: &'a ThroughputOptions,
    gen_cores: Vec<usize>,
}

impl Search<'_> {
    fn trial(&mut self, size: usize, rate: u64, seconds: f64) -> Result<Trial, LabError> {
        let n = self.gen_cores.len() as u64;
        let specs: Vec<GenSpec> = (0..n)
            .map(|q| GenSpec {
                role: Role::Edge,
                interface: "e-s".into(),
                gateway: SCRUB_IN0_V4.into(),
                src: queue_sources(q as u32),
                dport: self.o.clean().then_some(9),
                // The rate split over the queues; the first takes the remainder.
                rate: rate / n + if q == 0 { rate % n } else { 0 },
                seconds,
                core: Some(self.gen_cores[q as usize]),
                size: (size > 0).then(|| size - FCS),
                queue: q as u32,
                ..GenSpec::attack(&[self.o.profile.as_str()])
            })
            .collect();
        let s0 = self.lab.scrub_stats()?;
        let lab = &self.lab;
        let bin = self.bin;
        let reports: Vec<Result<_, LabError>> = std::thread::scope(|scope| {
            let running: Vec<_> = specs.iter().map(|spec| scope.spawn(move || lab.run_gen(bin, spec))).collect();
            running
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(LabError::Invalid("a generator thread panicked".into()))))
                .collect()
        });
        let mut g = super::observe::GenReport::default();
        for r in reports {
            let r = r?;
            g.sent += r.sent;
            g.pps += r.pps;
        }
        std::thread::sleep(PUBLISH_SETTLE);
        let d = self.lab.scrub_stats()?.since(&s0);
        let handled = if self.o.clean() { d.tx_egress } else { d.rx };
        let loss = if g.sent == 0 { 1.0 } else { g.sent.saturating_sub(handled) as f64 / g.sent as f64 };
        Ok(Trial {
            rate,
            offered_pps: g.pps,
            sent: g.sent,
            forwarded: d.tx_egress,
            decided: d.rx,
            replied: d.replied,
            dropped: d.dropped_total,
            loss,
            worker_ns_per_packet: d.cpu_ns_per_packet(),
            worker_rx: d.worker_rx.clone(),
            passed: g.sent > 0 && loss <= self.o.max_loss,
        })
    }

    fn size(&mut self, size: usize, stop: &AtomicBool, live: &mut dyn Write) -> Result<SizeResult, LabError> {
        let mut trials = Vec::new();
        let label = if size == 0 { self.o.profile.clone() } else { format!("{size} B") };
        let log = |t: &Trial, live: &mut dyn Write| {
            let _ = writeln!(
                live,
                "  {label:>10}  rate {:>8}  offered {:>9.0} pps  loss {:>8.5}  worker {:>6.0} ns/pkt  {}",
                if t.rate == 0 { "max".to_string() } else { t.rate.to_string() },
                t.offered_pps,
                t.loss,
                t.worker_ns_per_packet,
                if t.passed { "pass" } else { "FAIL" }
            );
        };
        // Warm-up: neighbour entries, caches, the worker's first wake-ups.
        self.trial(size, 50_000, 0.5)?;
        let ceiling = self.trial(size, 0, self.o.trial_seconds)?;
        log(&ceiling, live);
        trials.push(ceiling.clone());
        let mut best: Option<Trial> = ceiling.passed.then(|| ceiling.clone());
        let generator_bound = ceiling.passed;
        if !ceiling.passed {
            let mut hi = ceiling.offered_pps.max(1.0);
            let mut lo = 0.0f64;
            let mut rate = hi * 0.5;
            while (hi - lo) > hi * self.o.resolution && rate >= 1_000.0 {
                if stop.load(Ordering::Relaxed) {
                    return Err(LabError::Invalid("interrupted".into()));
                }
                let mut t = self.trial(size, rate as u64, self.o.trial_seconds)?;
                log(&t, live);
                if !t.reached_rate() {
                    // The generator was starved by other load: the trial says nothing of the
                    // scrubber. Once more; if it falls short again, count it as failed.
                    t = self.trial(size, rate as u64, self.o.trial_seconds)?;
                    log(&t, live);
                    t.passed &= t.reached_rate();
                }
                if t.passed {
                    lo = rate;
                    if best.as_ref().is_none_or(|b| t.offered_pps > b.offered_pps) {
                        best = Some(t.clone());
                    }
                } else {
                    hi = rate;
                }
                trials.push(t);
                rate = (lo + hi) / 2.0;
            }
        }
        let (pps, loss, ns) = best.map_or((0.0, 0.0, 0.0), |t| (t.offered_pps, t.loss, t.worker_ns_per_packet));
        Ok(SizeResult {
            size,
            throughput_pps: pps,
            // A flood's frames have several sizes: no single wire rate.
            throughput_bps: if size == 0 { 0.0 } else { wire_bps(size, pps) },
            loss,
            worker_ns_per_packet: ns,
            generator_bound,
            trials,
        })
    }
}

/// Runs the search; progress lines go to `live`. The lab is removed at the end, whatever
/// happened.
pub fn run(
    o: &ThroughputOptions,
    bin: &Path,
    stop: &Arc<AtomicBool>,
    live: &mut dyn Write,
) -> Result<ThroughputReport, LabError> {
    o.validate().map_err(LabError::Invalid)?;
    let opts = LabOptions {
        config: o.config.clone(),
        owner_pid: Some(std::process::id()),
        queues: o.queues,
        ..LabOptions::new(o.id.clone())
    };
    super::instance::sweep_orphans();
    let mut lab = Lab::up(opts)?;
    attach_sink(&lab)?;
    lab.start_daemon(bin, &[])?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gen_cores = o.generator_cores(cores, &worker_cores(&lab));
    let _ = writeln!(
        live,
        "lab {}: throughput search, full checks, {} queue(s), generators on cores {:?}, {} s trials, loss tolerated {}",
        lab.id(),
        o.queues,
        gen_cores,
        o.trial_seconds,
        o.max_loss
    );
    let mut s = Search { lab, bin, o, gen_cores: gen_cores.clone() };
    let mut sizes = Vec::new();
    let mut result = Ok(());
    for size in o.searched_sizes() {
        if stop.load(Ordering::Relaxed) {
            result = Err(LabError::Invalid("interrupted".into()));
            break;
        }
        match s.size(size, stop, live) {
            Ok(r) => sizes.push(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = s.lab.stop_daemon(Duration::from_secs(5));
    s.lab.down()?;
    result?;
    Ok(ThroughputReport {
        max_loss: o.max_loss,
        profile: o.profile.clone(),
        trial_seconds: o.trial_seconds,
        queues: o.queues,
        gen_cores,
        sizes,
    })
}

/// Bits per second on the wire of `pps` frames of `size` bytes (with FCS): each frame also takes
/// its preamble, start delimiter and inter-frame gap.
pub fn wire_bps(size: usize, pps: f64) -> f64 {
    pps * ((size + WIRE_OVERHEAD) * 8) as f64
}

/// The report as a table.
pub fn format_report(r: &ThroughputReport) -> String {
    let what = if r.profile == CLEAN {
        "clean UDP forwarded".to_string()
    } else {
        format!("{} decided (loss: sent and not received by a worker)", r.profile)
    };
    let mut out = format!(
        "throughput (RFC 2544 style search, loss tolerated {}, {} s trials, full checks, {} queue(s), {what})\n\
         | frame B | throughput pps | Mbit/s on the wire | loss | worker ns/pkt | trials | note |\n\
         |---|---|---|---|---|---|---|\n",
        r.max_loss, r.trial_seconds, r.queues
    );
    for s in &r.sizes {
        let (size, mbps) = if s.size == 0 {
            (format!("{} frames", r.profile), "-".to_string())
        } else {
            (s.size.to_string(), format!("{:.1}", s.throughput_bps / 1e6))
        };
        out += &format!(
            "| {size} | {:.0} | {mbps} | {:.5} | {:.0} | {} | {} |\n",
            s.throughput_pps,
            s.loss,
            s.worker_ns_per_packet,
            s.trials.len(),
            if s.generator_bound { "generator-bound" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ThroughputOptions {
        ThroughputOptions {
            id: "t".into(),
            sizes: RFC2544_SIZES.to_vec(),
            trial_seconds: 2.0,
            max_loss: 0.001,
            resolution: 0.05,
            config: None,
            gen_core: 0,
            queues: 1,
            gen_cores: Vec::new(),
            profile: "udp".into(),
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(opts().validate().is_ok());
        assert!(ThroughputOptions { sizes: vec![60], ..opts() }.validate().unwrap_err().contains("60"));
        assert!(ThroughputOptions { sizes: vec![1519], ..opts() }.validate().is_err());
        assert!(ThroughputOptions { sizes: vec![], ..opts() }.validate().is_err());
        assert!(ThroughputOptions { max_loss: 0.6, ..opts() }.validate().is_err());
        assert!(ThroughputOptions { resolution: 0.0, ..opts() }.validate().is_err());
        assert!(ThroughputOptions { queues: 0, ..opts() }.validate().is_err());
        assert!(ThroughputOptions { queues: MAX_QUEUES + 1, ..opts() }.validate().is_err());
        let e = ThroughputOptions { queues: 2, gen_cores: vec![3], ..opts() }.validate().unwrap_err();
        assert!(e.contains("1 cores for 2 queues"), "{e}");
        assert!(ThroughputOptions { queues: 2, gen_cores: vec![3, 4], ..opts() }.validate().is_ok());
        let e = ThroughputOptions { profile: "tcp-syn".into(), ..opts() }.validate().unwrap_err();
        assert!(e.contains("one of udp, syn-flood"), "{e}");
    }

    #[test]
    fn a_flood_is_searched_once_in_its_own_sizes() {
        assert_eq!(opts().searched_sizes(), RFC2544_SIZES);
        let syn = ThroughputOptions { profile: "syn-flood".into(), ..opts() };
        assert!(syn.validate().is_ok() && !syn.clean());
        assert_eq!(syn.searched_sizes(), [0]);
    }

    #[test]
    fn generators_take_the_cores_after_the_workers() {
        assert_eq!(ThroughputOptions { gen_core: 5, ..opts() }.generator_cores(16, &[1]), [5]);
        // Workers on 1..=4, generators on 5..=8.
        assert_eq!(ThroughputOptions { queues: 4, ..opts() }.generator_cores(16, &[1, 2, 3, 4]), [5, 6, 7, 8]);
        // Workers on 1..=8, generators on 9..=15 and 0.
        let eight: Vec<usize> = (1..=8).collect();
        assert_eq!(
            ThroughputOptions { queues: 8, ..opts() }.generator_cores(16, &eight),
            [9, 10, 11, 12, 13, 14, 15, 0]
        );
        // Too few cores: they wrap onto the workers'.
        assert_eq!(ThroughputOptions { queues: 2, ..opts() }.generator_cores(2, &[1, 0]), [1, 0]);
        let given = ThroughputOptions { queues: 2, gen_cores: vec![7, 3], ..opts() };
        assert_eq!(given.generator_cores(16, &[1, 2]), [7, 3]);
        // Workers a config pinned apart: the generators avoid every one of them.
        assert_eq!(ThroughputOptions { queues: 3, ..opts() }.generator_cores(8, &[2, 7, 4]), [5, 6, 0]);
    }

    #[test]
    fn each_queue_spoofs_its_own_sources() {
        assert_eq!(queue_sources(0), crate::lab::traffic::ATTACK_SOURCES);
        assert_eq!(queue_sources(1), "198.18.17.1-198.18.17.254");
        assert_eq!(queue_sources(7), "198.18.23.1-198.18.23.254");
    }

    #[test]
    fn a_starved_generator_is_not_a_pass() {
        let t = Trial { rate: 273_164, offered_pps: 152_715.0, passed: true, ..Trial::default() };
        assert!(!t.reached_rate());
        assert!(Trial { rate: 273_164, offered_pps: 270_000.0, ..Trial::default() }.reached_rate());
        assert!(Trial { rate: 0, offered_pps: 1.0, ..Trial::default() }.reached_rate());
    }

    #[test]
    fn wire_rate_counts_preamble_and_gap() {
        // 10GbE line rate: 14.88 Mpps at 64 B, 812 744 pps at 1518 B.
        assert!((wire_bps(64, 14_880_952.0) / 1e6 - 10_000.0).abs() < 1.0);
        assert!((wire_bps(1518, 812_744.0) / 1e6 - 10_000.0).abs() < 1.0);
        let r = ThroughputReport {
            sizes: vec![SizeResult {
                size: 64,
                throughput_pps: 1e6,
                throughput_bps: wire_bps(64, 1e6),
                ..SizeResult::default()
            }],
            ..ThroughputReport::default()
        };
        assert!(format_report(&r).contains("| 64 | 1000000 | 672.0 |"));
        let syn = ThroughputReport {
            profile: "syn-flood".into(),
            sizes: vec![SizeResult { size: 0, throughput_pps: 2e6, ..SizeResult::default() }],
            ..ThroughputReport::default()
        };
        let text = format_report(&syn);
        assert!(text.contains("syn-flood decided") && text.contains("| syn-flood frames | 2000000 | - |"), "{text}");
    }
}
