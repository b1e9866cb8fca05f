//! The pipeline allocates nothing per packet or per batch once warm: a counting global
//! allocator watches a steady stream of mixed traffic (clean, dropped, rate-limited, replies).

use benches::{FramePool, clean_tcp, clean_udp, deny_addresses, deny_hits, lab_policy, malformed, many_sources};
use dataplane::ratelimit::Rate;
use dataplane::{Now, Pipeline, PipelineConfig, Verdict, policy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_packet_in_steady_state() {
    let deny = deny_addresses(10_000);
    let mut frames = Vec::new();
    frames.extend(clean_tcp(4096));
    frames.extend(clean_udp(4096));
    frames.extend(deny_hits(&deny, 4096));
    frames.extend(many_sources(4096));
    frames.extend(malformed(4096));
    // Interleave the classes so every batch mixes them.
    let n = frames.len();
    let mixed: Vec<Vec<u8>> = (0..n).map(|i| frames[(i * 4099) % n].clone()).collect();
    let mut pool = FramePool::new(mixed, 256);
    let limit = Some(Rate { pps: 5, bytes_per_sec: 0, burst_ms: 100 });
    let config = PipelineConfig { src_buckets: 1024, ..PipelineConfig::default() };
    let mut pipeline = Pipeline::new(policy::cell(lab_policy(10_000, limit)), config);
    let mut verdicts = [Verdict::Pass; benches::BATCH];
    let batches = pool.len() / benches::BATCH;

    // Warm up: every table reaches its steady size (the source table fills and starts evicting).
    for b in 0..batches * 2 {
        pool.run_batch(&mut pipeline, b, Now { mono_ns: b as u64 * 1_000, wall_secs: 0 }, &mut verdicts);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut forwarded = 0;
    for b in 0..batches * 4 {
        forwarded += pool.run_batch(
            &mut pipeline,
            b,
            Now { mono_ns: 1_000_000_000 + b as u64 * 1_000, wall_secs: 0 },
            &mut verdicts,
        );
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert!(forwarded > 0, "the stream must exercise the forward path");
    let stats = pipeline.stats();
    assert!(stats.tables.iter().any(|t| t.evictions > 0), "the source table must be evicting");
    assert_eq!(after - before, 0, "allocations during {} batches", batches * 4);
}
