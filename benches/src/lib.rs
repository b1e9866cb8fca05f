//! Inputs shared by the criterion benches and the allocation test: policies at realistic
//! scale and large pools of pre-built frames, so a benchmark walks millions of distinct keys
//! instead of one flow that sits in L1.

use dataplane::Cidr;
use dataplane::amp::samples::{ATTACK_VARIANTS, ATTACKS, Spec};
use dataplane::build::Packet;
use dataplane::policy::{self, ForwardMode, ForwardSettings, Policy, PolicyBuilder, Profile, VlanAction};
use dataplane::ratelimit::Rate;
use dataplane::verdict::Verdict;
use dataplane::{Frame, Now, Pipeline, PipelineConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Headroom in front of each pooled frame (room for GRE or a VLAN tag).
pub const HEADROOM: usize = 64;
/// Frames per batch, as a worker would see them.
pub const BATCH: usize = 64;

/// Deterministic xorshift generator (benches must not depend on OS randomness).
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The lab policy: 198.18.100.0/24 and 2001:2:0:100::/64 protected, lab ranges exempt from the
/// bogon filter, `deny` random /32s (from 100.0.0.0/8 upwards, avoiding the lab) on the deny list,
/// and an optional per-source budget.
pub fn lab_policy(deny: usize, src_limit: Option<Rate>) -> Policy {
    let mut b = PolicyBuilder::new();
    let mut profile = Profile::named("lab");
    profile.src_limit = src_limit;
    let lab = b.profile(profile);
    b.protect("198.18.100.0/24".parse().expect("valid"), lab);
    b.protect("2001:2:0:100::/64".parse().expect("valid"), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().expect("valid"), "2001:2::/48".parse().expect("valid")];
    b.deny = deny_addresses(deny).into_iter().map(|a| (Cidr::V4(u32::from(a), 32), policy::NEVER)).collect();
    b.forward = ForwardSettings {
        mode: ForwardMode::L2,
        src_mac: [2, 0, 0, 0, 0, 1],
        next_hop_mac: [2, 0, 0, 0, 0, 2],
        vlan: VlanAction::Keep,
        gre_local: 0,
        egress_mtu: 1500,
        ..ForwardSettings::default()
    };
    b.build()
}

/// `n` distinct deny-listed IPv4 addresses (deterministic).
pub fn deny_addresses(n: usize) -> Vec<Ipv4Addr> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..n).map(|_| Ipv4Addr::from(0x6400_0000 + (rng.next_u64() as u32 % 0x8000_0000))).collect()
}

/// A pool of frames laid out one per fixed-size slot, processed batch by batch.
#[derive(Debug)]
pub struct FramePool {
    buf: Vec<u8>,
    lens: Vec<usize>,
    slot: usize,
}

impl FramePool {
    /// Builds the pool from frames (each must fit `slot - HEADROOM`).
    pub fn new(frames: impl IntoIterator<Item = Vec<u8>>, slot: usize) -> FramePool {
        let frames: Vec<Vec<u8>> = frames.into_iter().collect();
        let mut buf = vec![0u8; frames.len() * slot];
        dataplane::mem::keep_small_pages(&mut buf);
        let mut lens = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            let at = i * slot + HEADROOM;
            buf[at..at + f.len()].copy_from_slice(f);
            lens.push(f.len());
        }
        FramePool { buf, lens, slot }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Runs batch number `batch` (wrapping) through `pipeline`; returns how many were forwarded.
    pub fn run_batch(
        &mut self,
        pipeline: &mut Pipeline,
        batch: usize,
        now: Now,
        verdicts: &mut [Verdict; BATCH],
    ) -> usize {
        let batches = self.lens.len() / BATCH;
        let first = (batch % batches.max(1)) * BATCH;
        let slot = self.slot;
        let chunk = &mut self.buf[first * slot..(first + BATCH) * slot];
        process_slots(chunk, slot, &self.lens[first..first + BATCH], pipeline, now, verdicts)
    }
}

/// Runs the `BATCH` frames laid out one per `slot` bytes of `chunk` (after `HEADROOM`, `lens`
/// long) through `pipeline`; returns how many were forwarded.
fn process_slots(
    chunk: &mut [u8],
    slot: usize,
    lens: &[usize],
    pipeline: &mut Pipeline,
    now: Now,
    verdicts: &mut [Verdict; BATCH],
) -> usize {
    let mut frames: [Option<Frame<'_>>; BATCH] = [const { None }; BATCH];
    for ((cell, piece), &len) in frames.iter_mut().zip(chunk.chunks_mut(slot)).zip(lens) {
        *cell = Some(Frame::new(piece, HEADROOM, len));
    }
    let mut frames = frames.map(|f| f.expect("every slot filled"));
    pipeline.process(now, &mut frames, verdicts);
    verdicts.iter().filter(|v| **v == Verdict::Forward).count()
}

/// The body of a criterion `iter_custom` over batches: `iters` times, advances the batch number
/// and the clock (10 µs a batch) and sums the durations `step` reports, so that a step can leave
/// its set-up (filling an RX ring) out of the timing.
pub fn timed_batches(
    iters: u64,
    batch: &mut usize,
    now_ns: &mut u64,
    mut step: impl FnMut(usize, Now) -> std::time::Duration,
) -> std::time::Duration {
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..iters {
        *batch += 1;
        *now_ns += 10_000;
        spent += step(*batch, Now { mono_ns: *now_ns, wall_secs: 0 });
    }
    spent
}

/// A batch-sized RX ring: the frames of one batch, written just before they are decided, as
/// the kernel's copy (AF_XDP copy mode) or the NIC's DMA into the last-level cache (DDIO) leaves
/// them. Deciding frames from here measures the pipeline without the DRAM read of each frame
/// that a pool far larger than the caches costs.
#[derive(Debug)]
pub struct RxRing {
    buf: Vec<u8>,
    lens: [usize; BATCH],
    slot: usize,
}

impl RxRing {
    /// A ring of `BATCH` slots of `slot` bytes.
    pub fn new(slot: usize) -> RxRing {
        RxRing { buf: vec![0u8; BATCH * slot], lens: [0; BATCH], slot }
    }

    /// Copies batch number `batch` (wrapping) of `pool` into the ring.
    pub fn fill(&mut self, pool: &FramePool, batch: usize) {
        let batches = pool.lens.len() / BATCH;
        let first = (batch % batches.max(1)) * BATCH;
        for i in 0..BATCH {
            // The frame's bytes only, as a NIC or the kernel writes them; the headroom is the
            // worker's and the tail of the slot is never read.
            let len = pool.lens[first + i].min(self.slot - HEADROOM);
            let from = (first + i) * pool.slot + HEADROOM;
            let to = i * self.slot + HEADROOM;
            self.buf[to..to + len].copy_from_slice(&pool.buf[from..from + len]);
            self.lens[i] = len;
        }
    }

    /// Runs the ring's frames through `pipeline`; returns how many were forwarded.
    pub fn run(&mut self, pipeline: &mut Pipeline, now: Now, verdicts: &mut [Verdict; BATCH]) -> usize {
        process_slots(&mut self.buf, self.slot, &self.lens, pipeline, now, verdicts)
    }
}

/// Address `i` of the client /16s (198.18.0.0/15 minus the protected /24), for many sources.
pub fn client_v4(i: u32) -> IpAddr {
    let host = i % 0x1_0000;
    IpAddr::V4(Ipv4Addr::from(0xc612_0000 | host))
}

/// Address `i` of the IPv6 client range.
pub fn client_v6(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0x2001_0002_0000_0001_0000_0000_0000_0000u128 | u128::from(i)))
}

/// The protected server.
pub fn server_v4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 100, 10))
}

/// The protected IPv6 server.
pub fn server_v6() -> IpAddr {
    "2001:2:0:100::10".parse().expect("valid")
}

/// Clean TCP (ACK with 32 bytes) from `n` sources.
pub fn clean_tcp(n: usize) -> Vec<Vec<u8>> {
    (0..n as u32)
        .map(|i| {
            Packet::tcp(client_v4(i), 1024 + (i % 60000) as u16, server_v4(), 443).flags(0x10).payload(&[7; 32]).build()
        })
        .collect()
}

/// Clean UDP (64 bytes of payload) from `n` sources, alternating IPv4 and IPv6.
pub fn clean_udp(n: usize) -> Vec<Vec<u8>> {
    (0..n as u32)
        .map(|i| {
            if i % 2 == 0 {
                Packet::udp(client_v4(i), 1024 + (i % 60000) as u16, server_v4(), 5000).payload(&[7; 64]).build()
            } else {
                Packet::udp(client_v6(i), 1024 + (i % 60000) as u16, server_v6(), 5000).payload(&[7; 64]).build()
            }
        })
        .collect()
}

/// UDP from deny-listed sources.
pub fn deny_hits(addresses: &[Ipv4Addr], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            Packet::udp(IpAddr::V4(addresses[i * 7919 % addresses.len()]), 53, server_v4(), 4444)
                .payload(&[0; 18])
                .build()
        })
        .collect()
}

/// UDP from `n` distinct sources across a 1 M space (for the per-source budget).
pub fn many_sources(n: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift(42);
    (0..n)
        .map(|_| {
            let a = IpAddr::V6(Ipv6Addr::from(
                0x2001_0002_0000_0000_0000_0000_0000_0000u128 | u128::from(rng.next_u64() as u32 % 1_000_000),
            ));
            Packet::udp(a, 1000, server_v6(), 5000).payload(&[0; 18]).build()
        })
        .collect()
}

/// Malformed frames of several kinds (bad checksum, cut headers, bad lengths).
pub fn malformed(n: usize) -> Vec<Vec<u8>> {
    (0..n as u32)
        .map(|i| {
            let mut f = Packet::tcp(client_v4(i), 1000, server_v4(), 80).build();
            match i % 3 {
                0 => f[24] ^= 0xff,          // IPv4 checksum
                1 => f[14 + 20 + 12] = 0x30, // TCP data offset 3
                _ => f[14 + 3] = 0xff,       // total length past the frame
            }
            f
        })
        .collect()
}

/// A pipeline over `policy` with one worker's default sizing (`src_buckets` overridable).
pub fn pipeline(policy: Policy, src_buckets: usize) -> Pipeline {
    Pipeline::new(policy::cell(policy), PipelineConfig { src_buckets, ..PipelineConfig::default() })
}

/// A pipeline whose reply budgets admit everything, so that a SYN flood is challenged packet
/// by packet instead of stopping at the budget.
pub fn pipeline_unbounded_replies(policy: Policy) -> Pipeline {
    Pipeline::new(policy::cell(policy), unbounded_replies(PipelineConfig::default()))
}

/// `config` with reply budgets that admit everything (see `pipeline_unbounded_replies`).
pub fn unbounded_replies(config: PipelineConfig) -> PipelineConfig {
    let unbounded = Rate { pps: 1 << 40, bytes_per_sec: 0, burst_ms: 100 };
    PipelineConfig { reply_budget: unbounded, reply_budget_per_dst: unbounded, ..config }
}

/// SYNs (Linux-like options) from `n` distinct sources, three in four IPv6, to the protected
/// servers, each from its own port and initial sequence number.
pub fn syn_flood(n: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x5eed);
    (0..n)
        .map(|i| {
            let r = rng.next_u64();
            let (src, dst) = if i % 4 == 0 {
                (IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (r as u32 & 0x1_ffff))), server_v4())
            } else {
                (client_v6(r as u32), server_v6())
            };
            Packet::tcp(src, 1024 + (r as u16 % 60000), dst, 443)
                .seq_ack((r >> 32) as u32, 0)
                .tcp_options(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
                .build()
        })
        .collect()
}

/// The lab policy with QUIC protection on (strict gating) and no Initial budgets, so that a
/// bench can admit many flows quickly.
pub fn quic_policy() -> Policy {
    let mut policy = lab_policy(0, None);
    for profile in &mut policy.profiles {
        profile.quic.enabled = true;
        profile.quic.src_initial_rate = None;
        profile.quic.dst_initial_rate = None;
    }
    policy.quic.decrypt_budget_pps = 0;
    policy
}

/// `n` QUIC flows (IPv4 and IPv6 clients to the protected servers, port 443): for each, a valid
/// first Initial that admits it and a 1-RTT (short-header) packet of 100 bytes of the flow.
pub fn quic_flows(n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use dataplane::quic::craft::{self, Kind};
    let schedule = dataplane::quic::keys::KeySchedule::new();
    (0..n as u32)
        .map(|i| {
            // IPv4 clients from 198.19.0.0/16: `client_v4` meets the server's own address once.
            let v4 = IpAddr::V4(Ipv4Addr::from(0xc613_0000 | (i & 0xffff)));
            let (src, dst) = if i % 2 == 0 { (v4, server_v4()) } else { (client_v6(i), server_v6()) };
            let port = 1024 + (i % 60000) as u16;
            let initial = craft::generate(&schedule, Kind::Valid, u64::from(i), None);
            let mut short = craft::generate(&schedule, Kind::ShortHeaderJunk, u64::from(i), None);
            short.resize(100, 0x5a);
            (
                Packet::udp(src, port, dst, 443).payload(&initial).build(),
                Packet::udp(src, port, dst, 443).payload(&short).build(),
            )
        })
        .unzip()
}

/// Reflector `i` of 64 Ki (one in four IPv6), for amplification floods.
pub fn amp_reflector(i: usize) -> IpAddr {
    if i % 4 == 3 {
        IpAddr::V6(Ipv6Addr::from(0x2001_0002_0000_0001_0000_0000_0000_0000u128 | (i as u128 * 7919 % 65536)))
    } else {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (i as u32 * 7919 % 65536)))
    }
}

/// Victim `i` of the 256 protected hosts of the lab /24 (or its IPv6 /64).
pub fn amp_victim(i: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(0x2001_0002_0000_0100_0000_0000_0000_0000u128 | (i as u128 % 256)))
    } else {
        IpAddr::V4(Ipv4Addr::from(0xc612_6400 | (i as u32 % 256)))
    }
}

/// The attack samples named (`dataplane::amp::samples`, attack forms and variants).
///
/// # Panics
/// On a name the samples do not have (a bench's own typo).
pub fn amp_samples(names: &[&str]) -> Vec<&'static Spec> {
    names.iter().map(|n| ATTACKS.iter().chain(ATTACK_VARIANTS).find(|s| s.name == *n).expect("known sample")).collect()
}

/// `n` reflection responses drawn round-robin from `specs`, from 64 Ki reflectors to the 256
/// protected hosts.
pub fn amp_responses(specs: &[&Spec], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let spec = specs[i % specs.len()];
            let src = amp_reflector(i);
            let dst = amp_victim(i / specs.len(), src.is_ipv6());
            Packet::udp(src, spec.src_port, dst, 1024 + (i % 60_000) as u16).payload(&spec.payload(i as u64)).build()
        })
        .collect()
}
