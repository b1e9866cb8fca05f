//! The worker loop: joins the AF_XDP sockets (`xsk`) and the pipeline. Safe code only.
//!
//! One thread per (interface, queue), pinned by its spawner. Each pass: reclaim completed TX
//! frames, refill the fill ring, receive a batch, run it through `Pipeline::process`, move each
//! frame to egress TX, ingress TX (replies) or the free list, and kick TX while anything is
//! outstanding. The clock is read once per batch. When idle the worker polls its socket with a
//! short timeout instead of spinning. Counters are published to a `WorkerShared` every
//! `PUBLISH_NS` with `try_lock`, so a reader can never stall the worker; `heartbeat` moves on
//! every pass and is what a watchdog looks at.

use crate::frame::Frame;
use crate::pipeline::{Now, Pipeline};
use crate::stats::Stats;
use crate::verdict::Verdict;
use crate::xsk::socket::{Dest, Io, IoCounters, MAX_BATCH, RingStats, Side};
use crate::xsk::thread_cpu_ns;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How often counters are published.
pub const PUBLISH_NS: u64 = 50_000_000;
/// Empty passes before the worker starts sleeping in poll().
const SPIN_PASSES: u32 = 64;
/// poll() timeout when idle.
const IDLE_POLL_MS: i32 = 1;

/// What a worker publishes.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    /// Pipeline counters.
    pub stats: Stats,
    /// I/O counters.
    pub io: IoCounters,
    /// Kernel ring statistics of the ingress and egress sockets.
    pub rings: (RingStats, Option<RingStats>),
    /// Thread CPU time.
    pub cpu_ns: u64,
    /// Frames the pipeline said to pass to the kernel, which userspace cannot do (dropped).
    pub pass_dropped: u64,
    /// Monotonic time of this report.
    pub at_ns: u64,
    /// Batches by size: bucket `i` counts batches of `2^i ..= 2^(i+1)-1` frames (the last bucket
    /// holds 128..=256).
    pub batch_sizes: [u64; BATCH_BUCKETS],
    /// Loop passes that received frames.
    pub busy_passes: u64,
    /// Loop passes that received nothing.
    pub idle_passes: u64,
    /// Top dropped sources and destinations per reason.
    pub talkers: crate::topk::TopTalkers,
}

/// Buckets of the batch-size histogram.
pub const BATCH_BUCKETS: usize = 8;

/// The histogram bucket of a batch of `n` frames (n >= 1).
#[inline]
pub fn batch_bucket(n: usize) -> usize {
    ((usize::BITS - 1 - n.max(1).leading_zeros()) as usize).min(BATCH_BUCKETS - 1)
}

/// State shared between a worker and the daemon.
#[derive(Debug, Default)]
pub struct WorkerShared {
    /// Latest published report.
    pub report: Mutex<WorkerReport>,
    /// Set to ask the worker to stop.
    pub stop: AtomicBool,
    /// Incremented on every pass of the loop (watchdog).
    pub heartbeat: AtomicU64,
    /// Set once the worker has entered its loop.
    pub running: AtomicBool,
    /// Generation of the policy snapshot the worker has adopted (stored as it adopts one, so
    /// the control plane can tell when a change has taken effect).
    pub generation: AtomicU64,
    /// Fault injection (tests of the watchdog): the worker sleeps until this monotonic time, ns.
    pub stall_until_ns: AtomicU64,
}

/// Runs the loop until `shared.stop` is set. `clock` is read once per batch.
pub fn run(mut io: Io, mut pipeline: Pipeline, shared: Arc<WorkerShared>, clock: impl Fn() -> Now) {
    let mut verdicts = [Verdict::Pass; MAX_BATCH];
    let mut lens = [0usize; MAX_BATCH];
    let mut dest = [Dest::Free; MAX_BATCH];
    let mut pass_dropped = 0u64;
    let mut last_publish = 0u64;
    let mut activity = Activity::default();
    pipeline.adopt_latest();
    let mut generation = pipeline.generation();
    shared.generation.store(generation, Ordering::Release);
    shared.running.store(true, Ordering::Release);
    let return_path = io.return_path();
    while !shared.stop.load(Ordering::Relaxed) {
        shared.heartbeat.fetch_add(1, Ordering::Relaxed);
        io.reclaim();
        io.refill();
        let n = io.receive(Side::Ingress);
        let now = clock();
        stall_if_asked(&shared, now.mono_ns);
        let mut received = n;
        if n > 0 {
            activity.batch_sizes[batch_bucket(n)] += 1;
            let (passed, unfit) = {
                let mut frames = io.frames(n);
                pipeline.process(now, &mut frames[..n], &mut verdicts[..n]);
                route(&mut frames[..n], &verdicts[..n], &mut lens, &mut dest)
            };
            pass_dropped += passed;
            io.count_relocate_failed(unfit);
            io.dispatch(n, &lens[..n], &dest[..n]);
        }
        if return_path {
            let m = io.receive(Side::Egress);
            if m > 0 {
                received += m;
                let (passed, unfit) = {
                    let mut frames = io.frames(m);
                    pipeline.process_return(now, &mut frames[..m], &mut verdicts[..m]);
                    route(&mut frames[..m], &verdicts[..m], &mut lens, &mut dest)
                };
                pass_dropped += passed;
                io.count_relocate_failed(unfit);
                io.dispatch(m, &lens[..m], &dest[..m]);
            }
        }
        io.kick();
        if received == 0 {
            pipeline.adopt_latest();
        }
        activity.pass(received, &mut io);
        if pipeline.generation() != generation {
            generation = pipeline.generation();
            shared.generation.store(generation, Ordering::Release);
        }
        if now.mono_ns.saturating_sub(last_publish) >= PUBLISH_NS {
            last_publish = now.mono_ns;
            publish(&shared, &mut pipeline, &io, pass_dropped, &activity, now.mono_ns);
        }
    }
    publish(&shared, &mut pipeline, &io, pass_dropped, &activity, clock().mono_ns);
}

/// Fault injection for the watchdog's tests: a worker asked to stall stops making progress (no
/// heartbeat, no receive) until the given time. One relaxed load per pass otherwise.
#[cold]
fn stall(shared: &WorkerShared, until_ns: u64, now_ns: u64) {
    std::thread::sleep(std::time::Duration::from_nanos(until_ns.saturating_sub(now_ns)));
    shared.stall_until_ns.store(0, Ordering::Relaxed);
}

#[inline(always)]
fn stall_if_asked(shared: &WorkerShared, now_ns: u64) {
    let until = shared.stall_until_ns.load(Ordering::Relaxed);
    if until > now_ns {
        stall(shared, until, now_ns);
    }
}

/// Turns verdicts into destinations and brings each frame back to its descriptor's address;
/// fills `lens` and `dest`. Returns how many frames had a `Pass` verdict (which userspace cannot
/// hand to the kernel: they are freed and counted). A frame whose rewrite no longer fits is freed.
fn route(frames: &mut [Frame<'_>], verdicts: &[Verdict], lens: &mut [usize], dest: &mut [Dest]) -> (u64, u64) {
    let (mut passed, mut unfit) = (0, 0);
    for (i, frame) in frames.iter_mut().enumerate() {
        dest[i] = match verdicts[i] {
            Verdict::Forward => Dest::Onward,
            Verdict::Reply => Dest::Back,
            Verdict::Drop(_) => Dest::Free,
            Verdict::Pass => {
                passed += 1;
                Dest::Free
            }
        };
        if dest[i] != Dest::Free && !frame.rebase() {
            dest[i] = Dest::Free;
            unfit += 1;
        }
        lens[i] = frame.len();
    }
    (passed, unfit)
}

/// The floor of this path, for benchmarks: the same loop as [`run`] (reclaim, refill, receive,
/// idle wait, TX kicks, publishing) with the pipeline replaced by a rewrite of the two MAC
/// addresses (`dst_mac`, `src_mac`); every frame goes to egress. Its counters show every frame
/// as forwarded. No parsing, no policy, no checks.
pub fn run_minimal(mut io: Io, dst_mac: [u8; 6], src_mac: [u8; 6], shared: Arc<WorkerShared>, clock: impl Fn() -> Now) {
    let mut lens = [0usize; MAX_BATCH];
    let dest = [Dest::Onward; MAX_BATCH];
    let mut stats = Stats::default();
    let forward = Verdict::Forward.kind().index();
    let mut last_publish = 0u64;
    let mut activity = Activity::default();
    shared.running.store(true, Ordering::Release);
    while !shared.stop.load(Ordering::Relaxed) {
        shared.heartbeat.fetch_add(1, Ordering::Relaxed);
        io.reclaim();
        io.refill();
        let n = io.receive(Side::Ingress);
        let now = clock();
        if n == 0 {
            io.kick();
        }
        activity.pass(n, &mut io);
        if n > 0 {
            activity.batch_sizes[batch_bucket(n)] += 1;
            {
                let mut frames = io.frames(n);
                for (frame, len) in frames[..n].iter_mut().zip(lens.iter_mut()) {
                    let d = frame.data_mut();
                    if d.len() >= 12 {
                        d[0..6].copy_from_slice(&dst_mac);
                        d[6..12].copy_from_slice(&src_mac);
                    }
                    *len = frame.len();
                }
            }
            stats.packets[forward] += n as u64;
            stats.batches += 1;
            io.dispatch(n, &lens[..n], &dest[..n]);
            io.kick();
        }
        if now.mono_ns.saturating_sub(last_publish) >= PUBLISH_NS {
            last_publish = now.mono_ns;
            publish_minimal(&shared, &stats, &io, &activity, now.mono_ns);
        }
    }
    publish_minimal(&shared, &stats, &io, &activity, clock().mono_ns);
}

fn publish_minimal(shared: &WorkerShared, stats: &Stats, io: &Io, activity: &Activity, now_ns: u64) {
    if let Ok(mut report) = shared.report.try_lock() {
        report.batch_sizes = activity.batch_sizes;
        report.busy_passes = activity.busy_passes;
        report.idle_passes = activity.idle_passes;
        report.stats.clone_from(stats);
        report.io = io.counters();
        report.rings = io.ring_stats();
        report.cpu_ns = thread_cpu_ns();
        report.at_ns = now_ns;
    }
}

/// Loop activity counters.
#[derive(Debug, Default)]
struct Activity {
    batch_sizes: [u64; BATCH_BUCKETS],
    busy_passes: u64,
    idle_passes: u64,
    /// Empty passes in a row.
    idle_streak: u32,
}

impl Activity {
    /// Counts one pass of a worker loop that received `received` frames; after `SPIN_PASSES`
    /// empty passes in a row with no transmit outstanding, sleeps in poll (up to
    /// `IDLE_POLL_MS`) instead of spinning.
    fn pass(&mut self, received: usize, io: &mut Io) {
        if received > 0 {
            self.idle_streak = 0;
            self.busy_passes += 1;
            return;
        }
        self.idle_passes += 1;
        self.idle_streak = self.idle_streak.saturating_add(1);
        if self.idle_streak > SPIN_PASSES && io.outstanding() == 0 {
            let _ = io.wait(IDLE_POLL_MS);
        }
    }
}

fn publish(
    shared: &WorkerShared,
    pipeline: &mut Pipeline,
    io: &Io,
    pass_dropped: u64,
    activity: &Activity,
    now_ns: u64,
) {
    if let Ok(mut report) = shared.report.try_lock() {
        report.talkers.clone_from(pipeline.talkers());
        report.batch_sizes = activity.batch_sizes;
        report.busy_passes = activity.busy_passes;
        report.idle_passes = activity.idle_passes;
        report.stats.clone_from(pipeline.stats());
        report.io = io.counters();
        report.rings = io.ring_stats();
        report.cpu_ns = thread_cpu_ns();
        report.pass_dropped = pass_dropped;
        report.at_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::batch_bucket;

    #[test]
    fn batch_buckets_are_powers_of_two() {
        assert_eq!(batch_bucket(1), 0);
        assert_eq!(batch_bucket(2), 1);
        assert_eq!(batch_bucket(3), 1);
        assert_eq!(batch_bucket(64), 6);
        assert_eq!(batch_bucket(127), 6);
        assert_eq!(batch_bucket(128), 7);
        assert_eq!(batch_bucket(256), 7);
    }
}
