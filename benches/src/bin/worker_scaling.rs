//! `worker-scaling`: how the pipeline's throughput grows with the number of workers, in memory.
//!
//! The daemon gives every NIC queue its own worker thread, pinned to its own core, with its own
//! pipeline tables; what the workers share is the policy snapshot and the cross-worker tables
//! (`pipeline::Shared`: amplification budgets per destination, QUIC DCIDs seen, verified SYN
//! sources). Whether N queues give N times the throughput of one is therefore decided by that
//! sharing and by the memory system, which this tool measures without a NIC: for each path and
//! worker count it starts the workers as the daemon does (`Pipeline::with_shared` over one
//! `Shared` and one `PolicyCell`), pins worker `i` to the `i`-th core, and lets each decide
//! batches of 64 frames copied from its own pool of distinct frames into a 64-slot RX ring, as
//! copy-mode AF_XDP delivers them, for a fixed time. The copy is counted: it stands for the
//! kernel's. The clock is read once per batch, as in the worker loop, so budgets run in real
//! time.
//!
//! Output: per path and worker count, packets per second over all workers, ns per packet per
//! worker, scaling efficiency (throughput ÷ (workers × the per-worker throughput of the first
//! count measured, normally one)), and the verdict mix, so
//! that a path that changed its verdicts while scaling (a budget that stopped holding across
//! workers, say) shows it.
//!
//! `--copy-only` runs the same workers without the pipeline: what copying the frames alone
//! costs and how the memory system scales with it.
//!
//! Run: `cargo run --release -p benches --bin worker-scaling -- [--workers 1,2,4] [--cores
//! 0,2,4] [--seconds 2] [--paths clean-udp,...] [--copy-only] [--json]` (`make
//! bench-scaling`). On a machine with SMT, `--cores` puts one worker per physical core first,
//! as a deployment would.

use benches::{
    BATCH, FramePool, RxRing, amp_responses, amp_samples, clean_udp, lab_policy, quic_flows, quic_policy, syn_flood,
    unbounded_replies,
};
use dataplane::pipeline::{Shared, SharedConfig};
use dataplane::policy::{self, Policy};
use dataplane::ratelimit::Rate;
use dataplane::verdict::{Verdict, VerdictKind};
use dataplane::{Now, Pipeline, PipelineConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

/// Distinct frames in each worker's pool.
const POOL_PER_WORKER: usize = 1 << 13;

/// What the workers decide in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Clean UDP from many sources, IPv4 and IPv6, forwarded.
    CleanUdp,
    /// Spoofed SYNs, each answered with a cookie SYN-ACK (reply budgets opened).
    SynFlood,
    /// Reflection responses of the vectors the default profile drops.
    AmpDrop,
    /// DNS responses to 256 victims over a per-destination budget shared by all workers.
    AmpBudget,
    /// Valid first Initials, each fully checked (flows expire at once, so none is a repeat).
    QuicInitial,
}

impl Path {
    const ALL: [Path; 5] = [Path::CleanUdp, Path::SynFlood, Path::AmpDrop, Path::AmpBudget, Path::QuicInitial];

    fn name(self) -> &'static str {
        match self {
            Path::CleanUdp => "clean-udp",
            Path::SynFlood => "syn-flood",
            Path::AmpDrop => "amp-drop",
            Path::AmpBudget => "amp-budget",
            Path::QuicInitial => "quic-initial",
        }
    }

    fn parse(name: &str) -> Result<Path, String> {
        Path::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Path::ALL.iter().map(|p| p.name()).collect();
            format!("unknown path {name:?}; known: {}", known.join(", "))
        })
    }

    /// Budget per destination of `AmpBudget`, packets per second.
    const AMP_BUDGET_PPS: u64 = 1000;

    fn policy(self) -> Policy {
        match self {
            Path::QuicInitial => {
                let mut p = quic_policy();
                p.quic.flow_ttl_ns = 1;
                p.quic.replay_ttl_ns = 1;
                p.quic.replay_limit = u32::MAX;
                p
            }
            Path::AmpBudget => {
                let mut p = lab_policy(0, None);
                let dns = p.amp.catalogue.index_of("dns").expect("the standard catalogue has dns");
                let budget = Rate { pps: Path::AMP_BUDGET_PPS, bytes_per_sec: 0, burst_ms: 100 };
                for profile in &mut p.profiles {
                    profile.amp.vectors[dns].action = dataplane::amp::Action::rate_limit(budget);
                }
                p
            }
            _ => lab_policy(0, None),
        }
    }

    /// Frames for `workers` workers, `POOL_PER_WORKER` each, all distinct.
    fn frames(self, workers: usize) -> Vec<Vec<u8>> {
        let n = workers * POOL_PER_WORKER;
        match self {
            Path::CleanUdp => clean_udp(n),
            Path::SynFlood => syn_flood(n),
            Path::AmpDrop => amp_responses(
                &amp_samples(&["memcached", "ntp-private", "ssdp", "cldap", "chargen", "dns-any", "snmp", "coap"]),
                n,
            ),
            Path::AmpBudget => amp_responses(&amp_samples(&["dns"]), n),
            Path::QuicInitial => quic_flows(n).0,
        }
    }

    fn slot(self) -> usize {
        match self {
            Path::QuicInitial | Path::AmpDrop | Path::AmpBudget => 2048,
            _ => 256,
        }
    }

    fn config(self, workers: usize) -> PipelineConfig {
        let config = PipelineConfig { workers: workers as u32, ..PipelineConfig::default() };
        if self == Path::SynFlood { unbounded_replies(config) } else { config }
    }
}

/// What one worker did in one measurement.
#[derive(Clone, Copy, Debug, Default)]
struct WorkerRun {
    packets: u64,
    elapsed: Duration,
    by_kind: [u64; 4],
}

/// One path at one worker count: what each worker did.
#[derive(Debug)]
struct Measurement {
    runs: Vec<WorkerRun>,
}

impl Measurement {
    fn pps(&self) -> f64 {
        self.runs.iter().map(|r| r.packets as f64 / r.elapsed.as_secs_f64().max(1e-9)).sum()
    }

    /// ns per packet of each worker.
    fn per_worker_ns(&self) -> impl Iterator<Item = f64> + '_ {
        self.runs.iter().map(|r| r.elapsed.as_nanos() as f64 / r.packets.max(1) as f64)
    }

    /// Mean over the workers of their ns per packet.
    fn ns_per_packet(&self) -> f64 {
        self.per_worker_ns().sum::<f64>() / self.runs.len().max(1) as f64
    }

    /// The fastest and the slowest worker's ns per packet.
    fn ns_range(&self) -> (f64, f64) {
        self.per_worker_ns().fold((f64::MAX, 0.0), |(lo, hi), ns| (lo.min(ns), hi.max(ns)))
    }

    /// Share of packets given `kind`.
    fn share(&self, kind: VerdictKind) -> f64 {
        let total: u64 = self.runs.iter().map(|r| r.packets).sum();
        let of: u64 = self.runs.iter().map(|r| r.by_kind[kind as usize]).sum();
        of as f64 / total.max(1) as f64
    }

    /// Packets per second given `kind`, over all workers.
    fn pps_of(&self, kind: VerdictKind) -> f64 {
        self.runs.iter().map(|r| r.by_kind[kind as usize] as f64 / r.elapsed.as_secs_f64().max(1e-9)).sum()
    }
}

/// Runs `path` on `workers` workers (pinned to `cores`, one each) for `seconds`, each over its
/// own slice of `frames`. With `copy_only` the workers only copy frames into their rings: the
/// share of the memory system, every verdict `Pass`.
fn measure(
    path: Path,
    frames: &[Vec<u8>],
    workers: usize,
    cores: &[core_affinity::CoreId],
    seconds: f64,
    copy_only: bool,
) -> Measurement {
    let cell = policy::cell(path.policy());
    let shared = Arc::new(Shared::new(SharedConfig::default(), [0x5ca1, 0xab1e, 0x5eed, 0xf00d]));
    let stop = AtomicBool::new(false);
    let start = Barrier::new(workers + 1);
    // One monotonic clock for all workers, as the daemon's: budgets shared across workers are
    // charged at the times each worker reads.
    let clock = Instant::now();
    let runs = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mut pipeline = Pipeline::with_shared(cell.clone(), path.config(workers), shared.clone());
                let mine = &frames[w * POOL_PER_WORKER..(w + 1) * POOL_PER_WORKER];
                let core = cores.get(w % cores.len().max(1)).copied();
                let (stop, start, clock) = (&stop, &start, &clock);
                s.spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let pool = FramePool::new(mine.iter().cloned(), path.slot());
                    let mut ring = RxRing::new(path.slot());
                    let mut verdicts = [Verdict::Pass; BATCH];
                    let mut run = WorkerRun::default();
                    let mut batch = 0usize;
                    start.wait();
                    let began = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        ring.fill(&pool, batch);
                        let wall_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                        let now = Now { mono_ns: 1_000_000_000 + clock.elapsed().as_nanos() as u64, wall_secs };
                        if !copy_only {
                            ring.run(&mut pipeline, now, &mut verdicts);
                        }
                        for v in &verdicts {
                            run.by_kind[v.kind() as usize] += 1;
                        }
                        run.packets += BATCH as u64;
                        batch += 1;
                    }
                    run.elapsed = began.elapsed();
                    run
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("a worker panicked")).collect()
    });
    Measurement { runs }
}

struct Args {
    workers: Vec<usize>,
    /// Cores in the order workers take them (default: every usable core, in order).
    cores: Vec<core_affinity::CoreId>,
    seconds: f64,
    paths: Vec<Path>,
    copy_only: bool,
    json: bool,
}

fn usage() -> String {
    "usage: worker-scaling [--workers 1,2,4,...] [--cores 0,2,4,...] [--seconds S] [--paths clean-udp,syn-flood,amp-drop,amp-budget,quic-initial] [--copy-only] [--json]".into()
}

fn parse_args(cores: Vec<core_affinity::CoreId>) -> Result<Args, String> {
    let n = cores.len();
    let mut workers: Vec<usize> = std::iter::successors(Some(1usize), |w| Some(w * 2)).take_while(|w| *w < n).collect();
    workers.push(n.max(1));
    let mut args = Args { workers, cores, seconds: 2.0, paths: Path::ALL.to_vec(), copy_only: false, json: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value\n{}", usage()));
        match a.as_str() {
            "--workers" => {
                args.workers = value()?
                    .split(',')
                    .map(|n| n.parse().ok().filter(|n| *n >= 1).ok_or(format!("--workers: {n:?} is not a count ≥ 1")))
                    .collect::<Result<_, _>>()?
            }
            "--cores" => {
                let usable = args.cores.clone();
                args.cores = value()?
                    .split(',')
                    .map(|c| {
                        let id: usize = c.parse().map_err(|_| format!("--cores: {c:?} is not a core number"))?;
                        usable
                            .iter()
                            .find(|u| u.id == id)
                            .copied()
                            .ok_or(format!("--cores: core {id} is not usable here"))
                    })
                    .collect::<Result<_, String>>()?;
            }
            "--seconds" => {
                args.seconds =
                    value()?.parse().ok().filter(|s: &f64| *s > 0.0 && *s <= 600.0).ok_or("--seconds: 0 to 600")?
            }
            "--paths" => args.paths = value()?.split(',').map(Path::parse).collect::<Result<_, _>>()?,
            "--json" => args.json = true,
            "--copy-only" => args.copy_only = true,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if let Some(most) = args.workers.iter().max().filter(|w| **w > args.cores.len()) {
        return Err(format!("--workers {most}: only {} cores to pin them to, one each", args.cores.len()));
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args(core_affinity::get_core_ids().unwrap_or_default()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cores = &args.cores;
    if !args.json {
        let order: Vec<String> = cores.iter().map(|c| c.id.to_string()).collect();
        println!(
            "worker-scaling: cores {} (worker i on the i-th), {:.1} s a measurement, {} distinct frames per worker{}",
            order.join(","),
            args.seconds,
            POOL_PER_WORKER,
            if args.copy_only { "; --copy-only: frames copied into the rings, no pipeline" } else { "" }
        );
        println!(
            "{:<13} {:>7} {:>8} {:>7} {:>13} {:>10}  verdicts (and forwarded pps)",
            "path", "workers", "Mpps", "ns/pkt", "(min-max)", "efficiency"
        );
    }
    let most = args.workers.iter().copied().max().unwrap_or(1);
    for path in &args.paths {
        let frames = path.frames(most);
        let mut single = None;
        for &workers in &args.workers {
            let m = measure(*path, &frames, workers, cores, args.seconds, args.copy_only);
            let base = *single.get_or_insert(m.pps() / workers as f64);
            let efficiency = m.pps() / (workers as f64 * base);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "path": path.name(), "workers": workers, "pps": m.pps().round(),
                        "ns_per_packet": (m.ns_per_packet() * 10.0).round() / 10.0,
                        "ns_per_packet_min": (m.ns_range().0 * 10.0).round() / 10.0,
                        "ns_per_packet_max": (m.ns_range().1 * 10.0).round() / 10.0,
                        "efficiency": (efficiency * 1000.0).round() / 1000.0,
                        "forward": m.share(VerdictKind::Forward), "reply": m.share(VerdictKind::Reply),
                        "drop": m.share(VerdictKind::Drop), "pass": m.share(VerdictKind::Pass),
                        "forward_pps": m.pps_of(VerdictKind::Forward).round(),
                    })
                );
            } else {
                let (lo, hi) = m.ns_range();
                println!(
                    "{:<13} {:>7} {:>8.2} {:>7.1} {:>13} {:>10.2}  fwd {:.1}% reply {:.1}% drop {:.1}% ({:.0} fwd/s)",
                    path.name(),
                    workers,
                    m.pps() / 1e6,
                    m.ns_per_packet(),
                    format!("({lo:.0}-{hi:.0})"),
                    efficiency,
                    100.0 * m.share(VerdictKind::Forward),
                    100.0 * m.share(VerdictKind::Reply),
                    100.0 * m.share(VerdictKind::Drop),
                    m.pps_of(VerdictKind::Forward),
                );
            }
        }
        if *path == Path::AmpBudget && !args.json {
            println!(
                "{:<13} the budget allows {} responses/s to each of 256 victims: {} fwd/s in all, whatever the workers",
                "",
                Path::AMP_BUDGET_PPS,
                Path::AMP_BUDGET_PPS * 256
            );
        }
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: Path, workers: usize) -> Measurement {
        let frames = path.frames(workers);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        measure(path, &frames, workers, &cores, 0.2, false)
    }

    #[test]
    fn each_path_gives_its_verdicts_on_two_workers() {
        let clean = run(Path::CleanUdp, 2);
        assert!(clean.runs.iter().all(|r| r.packets > 0), "{clean:?}");
        assert_eq!(clean.share(VerdictKind::Forward), 1.0, "{clean:?}");
        assert_eq!(run(Path::SynFlood, 2).share(VerdictKind::Reply), 1.0);
        assert_eq!(run(Path::AmpDrop, 2).share(VerdictKind::Drop), 1.0);
        let quic = run(Path::QuicInitial, 2);
        assert!(quic.share(VerdictKind::Forward) > 0.99, "every Initial checked and admitted: {quic:?}");
    }

    #[test]
    fn a_shared_budget_holds_across_workers() {
        let m = run(Path::AmpBudget, 2);
        // 256 victims, each 1000/s for the run, plus its bucket's 100 ms burst (101 packets at
        // once), plus one per worker: two workers racing on a bucket may both take its last
        // packet (the shared buckets are documented to be accurate to a packet).
        let longest = m.runs.iter().map(|r| r.elapsed).max().expect("two workers");
        let per_victim = (Path::AMP_BUDGET_PPS as f64 * longest.as_secs_f64()).ceil() as u64 + 101 + 2;
        let allowed = 256 * per_victim;
        let forwarded: u64 = m.runs.iter().map(|r| r.by_kind[VerdictKind::Forward as usize]).sum();
        assert!(forwarded > 0, "{m:?}");
        assert!(forwarded <= allowed, "budget exceeded across workers: {forwarded} > {allowed} ({m:?})");
        assert!(m.share(VerdictKind::Drop) > 0.5, "{m:?}");
    }
}
