//! SYN authentication (`dataplane::syn`): ns/packet of the challenge path and of cookie
//! validation, over 1 M distinct SYNs (3/4 IPv6 sources drawn from 2001:2::/48, 1/4 IPv4 from
//! 198.18.0.0/15 with random ports). Each packet is first copied from the pool into a worker's
//! buffer (the read a real RX would make; the pool is far larger than the caches). Goals: the
//! challenge ≤ 100 ns, validation ≤ 50 ns. Run: `cargo bench -p benches --bench syn`.
//!
//! - `challenge_core`: parse + options check + cookie + in-place SYN-ACK with checksums.
//! - `challenge_inspect`: `syn::State::inspect` on the same SYNs: also the verified-table lookup
//!   (a miss, as for a spoofed source) and the reply budget (a per-address bucket table of 64 K
//!   entries churned by 1 M addresses; its budget set high enough to admit everything).
//!   The pipeline-level figure, with the lookup pass's prefetches, is
//!   `pipeline/syn_flood_challenge_warm_frames` in the pipeline bench.
//! - `validate_valid`: parse + cookie check of RSTs answering those challenges (current slot).
//! - `validate_invalid`: the same with forged values (the worst case: three MACs computed).
//! - `rst_inspect`: `inspect` of the valid RSTs, marking a source verified in the shared table.
//! - `part_verified_lookup_miss`, `part_reply_budget_admit`: two parts of `challenge_inspect`
//!   alone (the shared-table lookup of an unverified source; `ReplyBudget::admit` for 1 M
//!   distinct addresses).

use benches::XorShift;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::build::Packet;
use dataplane::parse::{parse, tcp_flags};
use dataplane::policy::Mode;
use dataplane::ratelimit::Rate;
use dataplane::reply::ReplyBudget;
use dataplane::stats::Stats;
use dataplane::syn::challenge::{seq_number, syn_ack_in_place, syn_fields, syn_options_ok, tcp_options};
use dataplane::syn::cookie::{Key, Secrets, Tuple};
use dataplane::syn::{Env, Global, Settings, Shared, SharedConfig, State, StateConfig};
use dataplane::verdict::Check;
use dataplane::{Cidr, Frame, Now, PipelineConfig};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The daemon's allocator, so that tables sit on huge pages as they do in production.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

const N: usize = 1 << 20;
const SLOT: usize = 128;
const PER_ITER: usize = 64;
const NOW: Now = Now { mono_ns: 1_000_000_000_000, wall_secs: 1_700_000_000 };

/// Frames laid out one per 128-byte slot.
struct Pool {
    buf: Vec<u8>,
    lens: Vec<usize>,
}

impl Pool {
    fn new(frames: impl Iterator<Item = Vec<u8>>) -> Pool {
        let mut buf = vec![0u8; N * SLOT];
        dataplane::mem::keep_small_pages(&mut buf);
        let mut lens = Vec::with_capacity(N);
        for (i, f) in frames.enumerate() {
            buf[i * SLOT..i * SLOT + f.len()].copy_from_slice(&f);
            lens.push(f.len());
        }
        Pool { buf, lens }
    }

    #[inline]
    fn frame(&self, i: usize) -> &[u8] {
        &self.buf[i * SLOT..i * SLOT + self.lens[i]]
    }
}

fn source(rng: &mut XorShift, i: usize) -> IpAddr {
    let r = rng.next_u64();
    if i.is_multiple_of(4) {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (r as u32 & 0x1_ffff)))
    } else {
        IpAddr::V6(Ipv6Addr::from((0x2001_0002_0000u128 << 80) | u128::from(r) << 16 | (i as u128 & 0xffff)))
    }
}

fn server(src: IpAddr) -> IpAddr {
    if src.is_ipv4() { IpAddr::V4(Ipv4Addr::new(198, 18, 100, 10)) } else { "2001:2:0:100::10".parse().expect("valid") }
}

/// The protected prefixes, IPv4 and IPv6.
fn prefixes() -> [Cidr; 2] {
    ["198.18.100.0/24".parse().expect("valid"), "2001:2:0:100::/64".parse().expect("valid")]
}

/// A Linux-like SYN: MSS, SACK-permitted, timestamps, NOP, window scale.
fn syns() -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x5eed);
    (0..N)
        .map(|i| {
            let src = source(&mut rng, i);
            let r = rng.next_u64();
            Packet::tcp(src, 1024 + (r as u16 % 60000), server(src), 443)
                .seq_ack((r >> 32) as u32, 0)
                .tcp_options(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
                .build()
        })
        .collect()
}

/// The client's RST answering the challenge of `syn` (valid unless `forge`).
fn rst_for(secrets: &Secrets, syn: &[u8], forge: bool) -> Vec<u8> {
    let info = parse(syn).expect("well formed").expect("ip");
    let isn = syn_fields(syn, &info).expect("tcp").isn;
    let tuple = Tuple { src: info.src, dst: info.dst, src_port: info.src_port, dst_port: info.dst_port };
    let mut value = secrets.mint(&tuple, isn, NOW.wall_secs).value;
    if forge {
        value ^= 0x5555_5554;
    }
    Packet::tcp(info.src.to_ip(), info.src_port, info.dst.to_ip(), info.dst_port)
        .flags(tcp_flags::RST)
        .seq_ack(value, 0)
        .build()
}

fn benches(c: &mut Criterion) {
    let secrets = Secrets::new(Key::new(*b"bench secret key"), 60);
    let syn_frames = syns();
    let valid = Pool::new(syn_frames.iter().map(|s| rst_for(&secrets, s, false)));
    let forged = Pool::new(syn_frames.iter().map(|s| rst_for(&secrets, s, true)));
    let syns = Pool::new(syn_frames.into_iter());

    let mut group = c.benchmark_group("syn");
    group.throughput(Throughput::Elements(PER_ITER as u64));
    let mut scratch = [0u8; SLOT + 64];

    let mut at = 0usize;
    group.bench_function("challenge_core", |b| {
        b.iter(|| {
            let mut sent = 0u32;
            for i in at..at + PER_ITER {
                let bytes = syns.frame(i);
                scratch[..bytes.len()].copy_from_slice(bytes);
                let mut frame = Frame::new(&mut scratch, 0, bytes.len());
                let Ok(Some(info)) = parse(frame.data()) else { continue };
                if !info.is_tcp_syn() || !syn_options_ok(tcp_options(frame.data(), &info)) {
                    continue;
                }
                let Some(fields) = syn_fields(frame.data(), &info) else { continue };
                let tuple = Tuple { src: info.src, dst: info.dst, src_port: info.src_port, dst_port: info.dst_port };
                let cookie = secrets.mint(&tuple, fields.isn, NOW.wall_secs);
                sent += u32::from(syn_ack_in_place(&mut frame, &info, cookie.seq, cookie.value));
                black_box(frame.data());
            }
            at = (at + PER_ITER) % (N - PER_ITER);
            black_box(sent)
        })
    });

    let protected = prefixes();
    let global = Global { secrets: secrets.clone(), ..Global::default() };
    let settings = Settings::default();
    let shared = Shared::new(SharedConfig::default(), [0xdead_beef, 0xfeed_f00d, 1, 2]);
    let mut state = State::new(StateConfig::default(), &shared);
    let config = PipelineConfig {
        reply_budget: Rate::pps(1 << 40),
        reply_budget_per_dst: Rate::pps(1 << 40),
        ..PipelineConfig::default()
    };
    let mut replies = ReplyBudget::new(&config);
    let mut stats = Stats::default();
    let mut at = 0usize;
    group.bench_function("challenge_inspect", |b| {
        b.iter(|| {
            let mut sent = 0u32;
            for i in at..at + PER_ITER {
                let bytes = syns.frame(i);
                scratch[..bytes.len()].copy_from_slice(bytes);
                let mut frame = Frame::new(&mut scratch, 0, bytes.len());
                let Ok(Some(info)) = parse(frame.data()) else { continue };
                let env = Env {
                    shared: &shared,
                    global: &global,
                    settings: &settings,
                    prefix: protected[usize::from(!info.dst.is_v4())],
                    mode: Mode::Mitigate,
                    now: NOW,
                };
                sent += u32::from(state.inspect(&env, &info, &mut frame, &mut replies, &mut stats) == Check::Replied);
            }
            at = (at + PER_ITER) % (N - PER_ITER);
            black_box(sent)
        })
    });

    for (name, pool) in [("validate_valid", &valid), ("validate_invalid", &forged)] {
        let mut at = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut ok = 0u32;
                for i in at..at + PER_ITER {
                    let bytes = pool.frame(i);
                    scratch[..bytes.len()].copy_from_slice(bytes);
                    let data = &scratch[..bytes.len()];
                    let Ok(Some(info)) = parse(data) else { continue };
                    let Some(value) = seq_number(data, &info) else { continue };
                    let tuple =
                        Tuple { src: info.src, dst: info.dst, src_port: info.src_port, dst_port: info.dst_port };
                    ok += u32::from(
                        secrets.check(&tuple, value, NOW.wall_secs) == dataplane::syn::cookie::Validity::Valid,
                    );
                }
                at = (at + PER_ITER) % (N - PER_ITER);
                black_box(ok)
            })
        });
    }

    let mut at = 0usize;
    let mut now = NOW;
    group.bench_function("rst_inspect", |b| {
        b.iter(|| {
            let mut verified = 0u32;
            for i in at..at + PER_ITER {
                let bytes = valid.frame(i);
                scratch[..bytes.len()].copy_from_slice(bytes);
                let mut frame = Frame::new(&mut scratch, 0, bytes.len());
                let Ok(Some(info)) = parse(frame.data()) else { continue };
                let env = Env {
                    shared: &shared,
                    global: &global,
                    settings: &settings,
                    prefix: protected[usize::from(!info.dst.is_v4())],
                    mode: Mode::Mitigate,
                    now,
                };
                verified += u32::from(state.inspect(&env, &info, &mut frame, &mut replies, &mut stats) != Check::Clean);
            }
            at = (at + PER_ITER) % (N - PER_ITER);
            if at < PER_ITER {
                // A new pass over the pool: let the verifications of the last one expire.
                now.mono_ns += 1_000 * 1_000_000_000;
            }
            black_box(verified)
        })
    });

    // Components of `challenge_inspect`, on the same 1 M sources.
    let sources: Vec<dataplane::Addr> =
        (0..N).map(|i| parse(syns.frame(i)).expect("well formed").expect("ip").src).collect();
    let mut at = 0usize;
    group.bench_function("part_verified_lookup_miss", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for src in &sources[at..at + PER_ITER] {
                hits += u32::from(shared.verified.lookup(*src, 1).is_some());
            }
            at = (at + PER_ITER) % (N - PER_ITER);
            black_box(hits)
        })
    });
    let mut replies = ReplyBudget::new(&config);
    let mut at = 0usize;
    group.bench_function("part_reply_budget_admit", |b| {
        b.iter(|| {
            let mut admitted = 0u32;
            for src in &sources[at..at + PER_ITER] {
                admitted += u32::from(replies.admit(*src, NOW.mono_ns));
            }
            at = (at + PER_ITER) % (N - PER_ITER);
            black_box(admitted)
        })
    });
    group.finish();
}

criterion_group! {
    name = syn_benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(syn_benches);
