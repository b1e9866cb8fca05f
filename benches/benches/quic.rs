//! QUIC Initial validation (`dataplane::quic`): ns/packet of the full check of a flow's first
//! Initial and of structural rejection. Goals: ≤ 1 µs for the full check (key derivation
//! included), ≤ 50 ns for a structural rejection. Run: `cargo bench -p benches --bench quic`.
//!
//! Inputs are built outside the timed loop: 16 Ki distinct valid client Initials (distinct
//! DCIDs, 1200-byte datagrams, sources spread over 198.18.0.0/15 and 2001:2::/48 with random
//! ports): about 20 MB of frames, more than the caches hold.
//!
//! - `full_initial`: `quic::State::inspect` on those Initials: structure, coalesced walk, flow
//!   lookup (a miss), per-source and per-destination Initial budgets, replay table lookup, key
//!   derivation from the DCID, header protection, AEAD over the whole packet, frame walk,
//!   ClientHello reassembly and parse (SNI, ALPN), replay record, flow insert.
//!   The flow TTL is 0 so that every pass over the pool sees new flows.
//! - `full_initial_batched`: the same, with `prefetch` called for the 64 frames of a batch
//!   before they are inspected (the pipeline's lookup pass), so flow- and replay-table misses
//!   overlap.
//! - `full_initial_warm_frames`: as `full_initial_batched`, with each batch first copied into a
//!   64-slot RX ring outside the timing, as a live worker finds its frames (the kernel's copy
//!   or the NIC's DMA into the last-level cache): datagrams warm, tables cold.
//! - `full_initial_hot`: the same on 64 frames that stay in cache (still a new flow and a new
//!   key derivation each time): the compute cost without memory latency.
//! - `full_initial_capturing`: `full_initial` while a capture runs, so that the JA4-style
//!   fingerprint is computed for its tags (it is otherwise computed only for fingerprint rules).
//! - `part_derive_keys`, `part_open`: the two crypto parts alone (distinct DCIDs; keys
//!   precomputed for `part_open`).
//! - `reject_junk`: Initial-looking junk with a DCID length over 20 (`quic_bad_cid`).
//! - `reject_short_datagram`: a valid Initial in a 300-byte datagram (`quic_short_datagram`).
//! - `reject_unadmitted_short_header`: short-header junk of unknown flows (`quic_unadmitted_short`:
//!   one flow-table miss).
//!
//! Measured on the 2-core development VM (SHA-NI, VAES), on-CPU time per packet, two runs in
//! one session: full first Initial 1.41–1.47 µs from the 20 MB pool, 1.28–1.35 µs with the batch
//! prefetch, 1.09–1.10 µs from warm frames, 0.97–0.99 µs hot, 1.54–1.60 µs while a capture
//! makes it compute the fingerprint; of that, key derivation 0.51–0.55 µs (14 SHA-256
//! compressions, the fewest HKDF allows) and header protection + AEAD over 1200 bytes
//! 0.29–0.30 µs. Structural rejections 13.5–23 ns.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::Now;
use dataplane::build::Packet;
use dataplane::parse::{PacketInfo, parse};
use dataplane::quic::craft::{self, Kind, SplitMix};
use dataplane::quic::initial;
use dataplane::quic::keys::{KeySchedule, Version};
use dataplane::quic::{Global, Settings, Shared, SharedConfig, State, StateConfig};
use dataplane::stats::Stats;
use dataplane::verdict::Check;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

const N: usize = 1 << 14;
const PER_ITER: usize = 64;

struct Input {
    frames: Vec<Vec<u8>>,
    infos: Vec<PacketInfo>,
}

fn source(rng: &mut SplitMix) -> IpAddr {
    if rng.next_u64().is_multiple_of(4) {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (rng.next_u64() as u32 & 0x1_ffff)))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            0x2001_0002_0000_0000_0000_0000_0000_0000u128 | u128::from(rng.next_u64() as u32) << 16,
        ))
    }
}

fn server(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => "198.18.100.10".parse().unwrap(),
        IpAddr::V6(_) => "2001:2:0:100::10".parse().unwrap(),
    }
}

fn input(kind: Kind, seed: u64) -> Input {
    input_n(kind, seed, N)
}

fn input_n(kind: Kind, seed: u64, n: usize) -> Input {
    let ks = KeySchedule::new();
    let mut rng = SplitMix(seed);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let dgram = craft::generate(&ks, kind, seed.wrapping_mul(1_000_003) + i as u64, None);
            let src = source(&mut rng);
            Packet::udp(src, 1024 + (rng.next_u64() % 60000) as u16, server(src), 443).payload(&dgram).build()
        })
        .collect();
    let infos = frames.iter().map(|f| parse(f).unwrap().unwrap()).collect();
    Input { frames, infos }
}

struct Env {
    state: State,
    shared: Shared,
    global: Global,
    settings: Settings,
    stats: Stats,
    now: u64,
}

fn env() -> Env {
    Env {
        state: State::new(StateConfig { flows: 1 << 16, ..StateConfig::default() }),
        shared: Shared::new(SharedConfig::default(), [7; 4]),
        global: Global { flow_ttl_ns: 0, decrypt_budget_pps: 0, replay_limit: 32, ..Global::default() },
        settings: Settings { enabled: true, src_initial_rate: None, dst_initial_rate: None, ..Settings::default() },
        stats: Stats::default(),
        now: 1_000_000_000_000,
    }
}

impl Env {
    /// `State::inspect` one frame, one nanosecond after the last.
    fn inspect(&mut self, info: &PacketInfo, frame: &[u8]) -> Check {
        self.now += 1;
        let now = Now { mono_ns: self.now, wall_secs: 0 };
        self.state.inspect(&self.shared, &self.global, &self.settings, now, info, frame, &mut self.stats)
    }

    /// One batch as the pipeline decides it: `State::prefetch` for each of its `PER_ITER`
    /// frames (the lookup pass), then `inspect` each. `frame(k)` is the batch's frame `k`.
    fn decide_batch<'a>(&mut self, frame: impl Fn(usize) -> (&'a PacketInfo, &'a [u8])) {
        for k in 0..PER_ITER {
            let (info, bytes) = frame(k);
            self.state.prefetch(&self.shared, &self.settings, info, bytes);
        }
        for k in 0..PER_ITER {
            let (info, bytes) = frame(k);
            black_box(self.inspect(info, bytes));
        }
    }
}

fn run(c: &mut Criterion, name: &str, input: &Input, env: &mut Env, expect: fn(Check) -> bool) {
    // Every input gives the expected verdict (checked once, outside the timings).
    let mut probe = self::env();
    probe.settings = env.settings.clone();
    for (f, info) in input.frames.iter().zip(&input.infos).take(256) {
        let v = probe.inspect(info, f);
        assert!(expect(v), "{name}: {v:?}");
    }
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.measurement_time(Duration::from_secs(4));
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..PER_ITER {
                i = (i + 1) % input.frames.len();
                black_box(env.inspect(&input.infos[i], &input.frames[i]));
            }
        })
    });
    g.finish();
}

/// Like `run`, but as the pipeline's two passes would: `prefetch` for the 64 frames of a batch,
/// then `inspect` them.
fn run_batched(c: &mut Criterion, name: &str, input: &Input, env: &mut Env) {
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.measurement_time(Duration::from_secs(4));
    let mut start = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            let n = input.frames.len();
            env.decide_batch(|k| {
                let j = (start + k) % n;
                (&input.infos[j], &input.frames[j][..])
            });
            start = (start + PER_ITER) % n;
        })
    });
    g.finish();
}

/// Like `run_batched`, with each batch first copied into a 64-slot RX ring outside the timed
/// part, as the kernel's copy or the NIC's DMA leaves a live worker's frames: the datagrams are
/// warm, the flow and replay tables as cold as 16 Ki distinct flows make them.
fn run_warm(c: &mut Criterion, name: &str, input: &Input, env: &mut Env) {
    const SLOT: usize = 2048;
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.measurement_time(Duration::from_secs(4));
    let mut ring = vec![0u8; PER_ITER * SLOT];
    let mut start = 0usize;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let n = input.frames.len();
                let batch: [usize; PER_ITER] = core::array::from_fn(|k| (start + k) % n);
                start = (start + PER_ITER) % n;
                for (k, &j) in batch.iter().enumerate() {
                    ring[k * SLOT..k * SLOT + input.frames[j].len()].copy_from_slice(&input.frames[j]);
                }
                let frame = |k: usize, j: usize| &ring[k * SLOT..k * SLOT + input.frames[j].len()];
                let t = Instant::now();
                env.decide_batch(|k| (&input.infos[batch[k]], frame(k, batch[k])));
                spent += t.elapsed();
            }
            spent
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let valid = input(Kind::Valid, 1);
    run(c, "full_initial", &valid, &mut env(), |v| v == Check::Clean);
    run_batched(c, "full_initial_batched", &valid, &mut env());
    run_warm(c, "full_initial_warm_frames", &valid, &mut env());
    // The same work on 64 frames that stay in cache (each still a new flow with its own DCID):
    // the compute cost without the memory latency of the pool and the tables.
    let hot = input_n(Kind::Valid, 9, PER_ITER);
    run(c, "full_initial_hot", &hot, &mut env(), |v| v == Check::Clean);
    let mut capturing = env();
    capturing.state.set_capturing(true);
    run(c, "full_initial_capturing", &valid, &mut capturing, |v| v == Check::Clean);

    // The crypto parts alone.
    let ks = KeySchedule::new();
    let dcids: Vec<[u8; 8]> = (0..N as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes()).collect();
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    let mut i = 0usize;
    g.bench_function("part_derive_keys", |b| {
        b.iter(|| {
            for _ in 0..PER_ITER {
                i = (i + 1) % N;
                black_box(ks.client_keys(Version::V1, &dcids[i]));
            }
        })
    });
    let dgrams: Vec<(Vec<u8>, dataplane::quic::keys::InitialKeys, usize)> = valid
        .frames
        .iter()
        .zip(&valid.infos)
        .take(1024)
        .map(|(f, info)| {
            let d = f[usize::from(info.payload_offset)..].to_vec();
            let h = initial::parse_header(&d, Version::V1).unwrap();
            let keys = ks.client_keys(Version::V1, &d[h.dcid.clone()]);
            (d[..h.end].to_vec(), keys, h.pn_offset)
        })
        .collect();
    let mut scratch = vec![0u8; 4096];
    let mut j = 0usize;
    g.bench_function("part_open", |b| {
        b.iter(|| {
            for _ in 0..PER_ITER {
                j = (j + 1) % dgrams.len();
                let (d, keys, pn_offset) = &dgrams[j];
                black_box(initial::open(keys, d, *pn_offset, None, &mut scratch).is_ok());
            }
        })
    });
    g.finish();

    let junk = input(Kind::Junk, 2);
    run(c, "reject_junk", &junk, &mut env(), |v| matches!(v, Check::Reject(_)));
    let short = input(Kind::Short, 3);
    run(c, "reject_short_datagram", &short, &mut env(), |v| matches!(v, Check::Reject(_)));
    let sh = input(Kind::ShortHeaderJunk, 4);
    run(c, "reject_unadmitted_short_header", &sh, &mut env(), |v| matches!(v, Check::Reject(_)));
}

criterion_group!(quic, benches);
criterion_main!(quic);
