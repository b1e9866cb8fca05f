//! Longest-prefix-match lookups alone: 1 M IPv4 /32 deny prefixes and 1 M IPv6 /64s, random
//! hitting keys. Run: `cargo bench -p benches --bench lpm`.

use benches::{XorShift, deny_addresses};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::policy::lpm::{Entry, LpmMap};
use std::hint::black_box;
use std::time::Duration;

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm");
    group.throughput(Throughput::Elements(64));
    let v4: Vec<u32> = deny_addresses(1_000_000).into_iter().map(u32::from).collect();
    let map = LpmMap::build(v4.iter().map(|&a| Entry { network: a, len: 32, value: u64::MAX }).collect());
    let mut rng = XorShift(7);
    let keys: Vec<u32> = (0..1 << 20).map(|_| v4[rng.next_u64() as usize % v4.len()]).collect();
    let mut at = 0usize;
    group.bench_function("v4_1m_hit", |b| {
        b.iter(|| {
            let mut hits = 0;
            for k in &keys[at..at + 64] {
                hits += usize::from(map.get(*k).is_some());
            }
            at = (at + 64) % (keys.len() - 64);
            black_box(hits)
        })
    });
    let v6: Vec<u128> =
        (0..1_000_000u128).map(|i| (0x2a00u128 << 112) | (((i * 0x9e37_79b9) & 0xffff_ffff) << 64)).collect();
    let map6 = LpmMap::build(v6.iter().map(|&a| Entry { network: a, len: 64, value: u64::MAX }).collect());
    let keys6: Vec<u128> = (0..1 << 20).map(|_| v6[rng.next_u64() as usize % v6.len()] | 1).collect();
    group.bench_function("v6_1m_hit", |b| {
        b.iter(|| {
            let mut hits = 0;
            for k in &keys6[at..at + 64] {
                hits += usize::from(map6.get(*k).is_some());
            }
            at = (at + 64) % (keys6.len() - 64);
            black_box(hits)
        })
    });
    group.finish();
}

criterion_group! {
    name = lpm_benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(lpm_benches);
