//! ns/packet of `Pipeline::process` per traffic class, on 64-frame batches drawn from pools of
//! distinct sources (DESIGN §6). Run: `cargo bench -p benches --bench pipeline`.
//!
//! Each pool (50–64 MB) is far larger than the caches, so a plain row pays a DRAM read (and a
//! TLB miss) per frame. A `_warm_frames` row copies each batch into an `RxRing` first, outside
//! the timed part, as the kernel's copy or the NIC's DMA leaves frames in a running worker:
//! the pipeline's own cost, with its tables as cold as the traffic makes them.
//! `syn_flood_challenge_warm_frames` challenges every SYN of a flood from 256 Ki sources (the
//! lab profile, reply budgets unbounded so none stops at the budget).

use benches::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::Now;
use dataplane::ratelimit::Rate;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

fn run(c: &mut Criterion, name: &str, mut pool: FramePool, mut pipeline: dataplane::Pipeline) {
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut verdicts = [dataplane::Verdict::Pass; BATCH];
    let mut batch = 0usize;
    let mut now = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            batch += 1;
            now += 10_000;
            black_box(pool.run_batch(&mut pipeline, batch, Now { mono_ns: now, wall_secs: 0 }, &mut verdicts))
        })
    });
    group.finish();
}

/// As `run`, with each batch first copied into an `RxRing` outside the timed part: frames warm,
/// tables as cold as the traffic makes them.
fn run_warm(c: &mut Criterion, name: &str, pool: &FramePool, mut pipeline: dataplane::Pipeline) {
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut verdicts = [dataplane::Verdict::Pass; BATCH];
    let mut ring = RxRing::new(256);
    let mut batch = 0usize;
    let mut now = 0u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, &mut batch, &mut now, |batch, now| {
                ring.fill(pool, batch);
                let start = Instant::now();
                black_box(ring.run(&mut pipeline, now, &mut verdicts));
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    const POOL: usize = 1 << 18;
    let tcp = FramePool::new(clean_tcp(POOL), 192);
    run_warm(c, "clean_tcp_forward_warm_frames", &tcp, pipeline(lab_policy(0, None), 1 << 20));
    run(c, "clean_tcp_forward", tcp, pipeline(lab_policy(0, None), 1 << 20));
    let udp = FramePool::new(clean_udp(POOL), 256);
    run_warm(c, "clean_udp_forward_warm_frames", &udp, pipeline(lab_policy(0, None), 1 << 20));
    run(c, "clean_udp_forward", udp, pipeline(lab_policy(0, None), 1 << 20));
    let deny = deny_addresses(1_000_000);
    let denied = FramePool::new(deny_hits(&deny, POOL), 192);
    run_warm(c, "deny_hit_1m_prefixes_warm_frames", &denied, pipeline(lab_policy(1_000_000, None), 1 << 20));
    run(c, "deny_hit_1m_prefixes", denied, pipeline(lab_policy(1_000_000, None), 1 << 20));
    let small = deny_addresses(1000);
    run(
        c,
        "deny_hit_1k_prefixes",
        FramePool::new(deny_hits(&small, POOL), 192),
        pipeline(lab_policy(1000, None), 1 << 20),
    );
    let limit = Some(Rate { pps: 10, bytes_per_sec: 0, burst_ms: 100 });
    run(
        c,
        "rate_limited_1m_sources",
        FramePool::new(many_sources(1 << 20), 192),
        pipeline(lab_policy(0, limit), 1 << 20),
    );
    // The lab profile authenticates SYNs: every SYN of the flood is challenged, in place, so the
    // frames go through an `RxRing` (a challenge rewrites its frame; the pool must stay SYNs).
    let syns = FramePool::new(syn_flood(POOL), 192);
    let mut probe = pipeline_unbounded_replies(lab_policy(0, None));
    let mut ring = RxRing::new(256);
    let mut verdicts = [dataplane::Verdict::Pass; BATCH];
    for batch in 0..64 {
        ring.fill(&syns, batch);
        ring.run(&mut probe, Now { mono_ns: 1 + batch as u64 * 10_000, wall_secs: 0 }, &mut verdicts);
        assert!(verdicts.iter().all(|v| *v == dataplane::Verdict::Reply), "{verdicts:?}");
    }
    run_warm(c, "syn_flood_challenge_warm_frames", &syns, pipeline_unbounded_replies(lab_policy(0, None)));
    run(c, "malformed_drop", FramePool::new(malformed(POOL), 192), pipeline(lab_policy(0, None), 1 << 20));

    // Admitted QUIC flows' 1-RTT packets: each is forwarded after one flow-table hit (strict
    // gating). The flows are admitted first, by their valid first Initials, outside the timing.
    let (initials, shorts) = quic_flows(QUIC_FLOWS);
    let mut quic = pipeline(quic_policy(), 1 << 20);
    let mut initials = FramePool::new(initials, 1344);
    let mut now = 0;
    for batch in 0..QUIC_FLOWS / BATCH {
        now += 10_000;
        let admitted = initials.run_batch(&mut quic, batch, Now { mono_ns: now, wall_secs: 0 }, &mut verdicts);
        assert_eq!(admitted, BATCH, "every first Initial admits its flow: {verdicts:?}");
    }
    let shorts = FramePool::new(shorts, 256);
    run_warm(c, "quic_admitted_forward_warm_frames", &shorts, quic);
}

/// Admitted QUIC flows in `quic_admitted_forward_warm_frames`: a full default flow table.
const QUIC_FLOWS: usize = 1 << 17;

criterion_group! {
    name = pipeline_benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(pipeline_benches);
