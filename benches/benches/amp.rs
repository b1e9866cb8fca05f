//! ns/packet of the UDP amplification countermeasure (DESIGN §6): the drop path (parse, then
//! `amp::State::inspect` on reflection responses the default profile drops), the signature
//! checks alone (port lookup and payload match), the shared per-destination budget under an
//! over-budget flood, fragments, and what amp adds to clean UDP. Frames come from pools of
//! 16 Ki reflection responses from 64 Ki reflector addresses towards the 256 protected hosts.
//! `drop_path_parse_inspect_warm_frames` copies each batch into an RX-ring-like buffer first,
//! outside the timed part, as the kernel or the NIC leaves frames for a running worker.
//! Run: `cargo bench -p benches --bench amp`.

use benches::{
    BATCH, amp_reflector as reflector, amp_responses as pool, amp_samples, amp_victim as victim, timed_batches,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::Now;
use dataplane::amp::samples::{self, ATTACK_VARIANTS, ATTACKS, LEGIT, Spec};
use dataplane::amp::{Action, Global, Settings, Shared, SharedConfig, State};
use dataplane::build::Packet;
use dataplane::parse::{PacketInfo, parse};
use dataplane::stats::Stats;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

const POOL: usize = 1 << 14;

struct Bench {
    frames: Vec<Vec<u8>>,
    infos: Vec<PacketInfo>,
    shared: Shared,
    global: Global,
    settings: Settings,
    state: State,
    stats: Stats,
}

impl Bench {
    fn new(frames: Vec<Vec<u8>>, settings: Settings) -> Bench {
        let infos = frames.iter().map(|f| parse(f).expect("valid").expect("IP")).collect();
        Bench {
            frames,
            infos,
            shared: Shared::new(SharedConfig::default(), [0x5eed; 4]),
            global: Global::default(),
            settings,
            state: State::new(),
            stats: Stats::default(),
        }
    }

    /// Parse and inspect one batch; returns the rejected count.
    fn parse_and_inspect(&mut self, batch: usize, now: Now) -> usize {
        let first = (batch * BATCH) % self.frames.len();
        let frames = &self.frames[first..first + BATCH];
        parse_and_inspect(&mut self.state, &self.shared, &self.global, &self.settings, &mut self.stats, frames, now)
    }

    /// Parse and inspect one batch after copying it into `ring` (untimed): frames as warm as a
    /// live RX ring leaves them. Returns the time of the timed part.
    fn parse_and_inspect_warm(&mut self, ring: &mut [Vec<u8>], batch: usize, now: Now) -> Duration {
        let first = (batch * BATCH) % self.frames.len();
        for (slot, f) in ring.iter_mut().zip(&self.frames[first..first + BATCH]) {
            slot.clear();
            slot.extend_from_slice(f);
        }
        let start = Instant::now();
        black_box(parse_and_inspect(
            &mut self.state,
            &self.shared,
            &self.global,
            &self.settings,
            &mut self.stats,
            ring,
            now,
        ));
        start.elapsed()
    }

    /// Inspect one batch of pre-parsed packets.
    fn inspect(&mut self, batch: usize, now: Now) -> usize {
        let first = (batch * BATCH) % self.frames.len();
        let mut rejected = 0;
        for (f, info) in self.frames[first..first + BATCH].iter().zip(&self.infos[first..first + BATCH]) {
            let v = self.state.inspect(&self.shared, &self.global, &self.settings, now, info, f, &mut self.stats);
            rejected += usize::from(v != dataplane::verdict::Check::Clean);
        }
        rejected
    }

    /// Port lookup and signature match only.
    fn classify(&self, batch: usize) -> usize {
        let first = (batch * BATCH) % self.frames.len();
        let catalogue = &self.global.catalogue;
        let mut matched = 0;
        for (f, info) in self.frames[first..first + BATCH].iter().zip(&self.infos[first..first + BATCH]) {
            let at = usize::from(info.payload_offset);
            let payload = &f[at..at + usize::from(info.payload_len)];
            for &v in catalogue.candidates(info.src_port) {
                if catalogue.vectors()[usize::from(v)].signature.matches(payload, payload.len()) {
                    matched += 1;
                    break;
                }
            }
        }
        matched
    }
}

fn run(c: &mut Criterion, name: &str, mut bench: Bench, f: fn(&mut Bench, usize, Now) -> usize) {
    let mut group = c.benchmark_group("amp");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut batch = 0usize;
    let mut now = 1_000_000_000u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            batch += 1;
            now += 10_000;
            black_box(f(&mut bench, batch, Now { mono_ns: now, wall_secs: 0 }))
        })
    });
    group.finish();
}

/// Parses each frame and runs `amp::State::inspect` on it; returns the rejected count.
fn parse_and_inspect(
    state: &mut State,
    shared: &Shared,
    global: &Global,
    settings: &Settings,
    stats: &mut Stats,
    frames: &[Vec<u8>],
    now: Now,
) -> usize {
    let mut rejected = 0;
    for f in frames {
        let Ok(Some(info)) = parse(f) else { continue };
        let v = state.inspect(shared, global, settings, now, &info, f, stats);
        rejected += usize::from(v != dataplane::verdict::Check::Clean);
    }
    rejected
}

/// Like `run` for `parse_and_inspect_warm`: only the parse and inspect are timed.
fn run_warm(c: &mut Criterion, name: &str, mut bench: Bench) {
    let mut group = c.benchmark_group("amp");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut ring: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let mut batch = 0usize;
    let mut now = 1_000_000_000u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, &mut batch, &mut now, |batch, now| bench.parse_and_inspect_warm(&mut ring, batch, now))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // Vectors the default profile drops, in the mix seen in large reflection floods.
    let dropped = amp_samples(&[
        "memcached",
        "memcached-continuation",
        "ntp-private",
        "ssdp",
        "cldap",
        "chargen",
        "dns-any",
        "snmp",
        "ws-discovery",
        "arms",
        "coap",
        "netbios",
    ]);
    let drop_frames = pool(&dropped, POOL);
    run(c, "drop_path_parse_inspect", Bench::new(drop_frames.clone(), Settings::default()), Bench::parse_and_inspect);
    run_warm(c, "drop_path_parse_inspect_warm_frames", Bench::new(drop_frames.clone(), Settings::default()));
    run(c, "drop_path_inspect", Bench::new(drop_frames, Settings::default()), Bench::inspect);

    // Signature checks over every attack and legitimate form (matches and misses).
    let all: Vec<&Spec> = ATTACKS.iter().chain(ATTACK_VARIANTS).chain(LEGIT).collect();
    run(c, "signatures_all_forms", Bench::new(pool(&all, POOL), Settings::default()), |b, n, _| b.classify(n));

    // DNS responses over the per-destination budget (shared GCRA buckets, 256 destinations).
    let dns = amp_samples(&["dns"]);
    let mut limited = Settings::default();
    let i = Global::default().catalogue.index_of("dns").expect("dns");
    limited.vectors[i].action =
        Action::rate_limit(dataplane::ratelimit::Rate { pps: 1000, bytes_per_sec: 1_000_000, burst_ms: 100 });
    run(c, "rate_limit_over_budget", Bench::new(pool(&dns, POOL), limited), Bench::parse_and_inspect);

    // Fragmented DNS ANY answers: first fragments recorded, later ones follow.
    let any = samples::attack("dns-any").expect("dns-any");
    let fragments: Vec<Vec<u8>> = (0..POOL)
        .flat_map(|i| {
            let src = reflector(i);
            samples::frames(src, 53, victim(i, src.is_ipv6()), 5555, &any.payload(i as u64), i as u16, 1500)
        })
        .take(POOL)
        .collect();
    run(c, "fragments_follow_first", Bench::new(fragments, Settings::default()), Bench::parse_and_inspect);

    // What amp adds to clean UDP from ports no vector uses.
    let clean: Vec<Vec<u8>> = (0..POOL)
        .map(|i| {
            let src = reflector(i);
            Packet::udp(src, 20_000 + (i % 40_000) as u16, victim(i, src.is_ipv6()), 5000).payload(&[7; 64]).build()
        })
        .collect();
    run(c, "clean_udp_inspect", Bench::new(clean, Settings::default()), Bench::inspect);
}

criterion_group! {
    name = amp_benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(amp_benches);
