//! The pipeline allocates nothing per packet or per batch once warm: a counting global
//! allocator watches a steady stream of mixed traffic (clean, dropped, rate-limited, replies), and
//! QUIC Initial validation (`quic::State::inspect`) the same over every QUIC traffic kind (valid
//! first Initials, split ClientHellos, junk, short datagrams, random DCIDs, replays, short headers).

use benches::{FramePool, clean_tcp, clean_udp, deny_addresses, deny_hits, lab_policy, malformed, many_sources};
use dataplane::build::Packet;
use dataplane::parse::parse;
use dataplane::quic::craft::{self, HelloSpec, InitialSpec, Kind, client_hello, client_initials};
use dataplane::quic::keys::KeySchedule;
use dataplane::quic::{Global, Settings, Shared, SharedConfig, State, StateConfig};
use dataplane::ratelimit::Rate;
use dataplane::stats::{Event, Stats};
use dataplane::{Now, Pipeline, PipelineConfig, Verdict, policy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so tests running side by side do not count each other's allocations.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the slot is gone while a thread is being torn down; those allocations are not ours.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations made by the calling thread so far.
fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
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
    let before = allocations();
    let mut forwarded = 0;
    for b in 0..batches * 4 {
        forwarded += pool.run_batch(
            &mut pipeline,
            b,
            Now { mono_ns: 1_000_000_000 + b as u64 * 1_000, wall_secs: 0 },
            &mut verdicts,
        );
    }
    let after = allocations();
    assert!(forwarded > 0, "the stream must exercise the forward path");
    let stats = pipeline.stats();
    assert!(stats.tables.iter().any(|t| t.evictions > 0), "the source table must be evicting");
    assert_eq!(after - before, 0, "allocations during {} batches", batches * 4);
}

#[test]
fn quic_validation_allocates_nothing_per_packet() {
    let ks = KeySchedule::new();
    let mut frames = Vec::new();
    for i in 0..600u64 {
        let src = format!("198.18.{}.{}", 1 + i / 250, 1 + i % 250).parse().unwrap();
        let dst = "198.18.100.10".parse().unwrap();
        let port = 1024 + i as u16;
        let kind = Kind::ALL[i as usize % Kind::ALL.len()];
        let dgram = craft::generate(&ks, kind, i, None);
        frames.push(Packet::udp(src, port, dst, 443).payload(&dgram).build());
        if i % 10 == 0 {
            // A ClientHello split over two Initials, from its own port.
            let hello = client_hello(&HelloSpec { extra_key_share: 1216, seed: i, ..HelloSpec::default() });
            let dcid = i.to_be_bytes();
            let spec = InitialSpec { dcid: &dcid, ..InitialSpec::default() };
            for d in client_initials(&ks, &spec, &hello, 2, i + 1) {
                frames.push(Packet::udp(src, port + 5000, dst, 443).payload(&d).build());
            }
        }
    }
    let infos: Vec<_> = frames.iter().map(|f| parse(f).unwrap().unwrap()).collect();
    let mut state = State::new(StateConfig { flows: 256, pending: 16, summaries: 64, ..StateConfig::default() });
    let shared = Shared::new(SharedConfig { replay_slots: 1 << 12 }, [5; 4]);
    let global = Global { replay_limit: 2, ..Global::default() };
    let settings = Settings {
        enabled: true,
        hello_rules: vec![dataplane::quic::HelloRule {
            sni: Some(dataplane::quic::SniPattern::parse("*.blocked.example")),
            fingerprint: None,
            action: dataplane::quic::HelloAction::Drop,
        }],
        ..Settings::default()
    };
    let mut stats = Stats::default();
    let mut now = 1_000_000_000u64;
    let mut pass = |count: &mut u64, stats: &mut Stats| {
        // An hour later: every flow and DCID of the previous pass has expired, so each pass
        // takes the full path again (derivation, AEAD, ClientHello, flow insert).
        now += 3_600_000_000_000;
        for (f, info) in frames.iter().zip(&infos) {
            now += 10_000;
            let n = Now { mono_ns: now, wall_secs: 0 };
            let before = allocations();
            let _ = state.inspect(&shared, &global, &settings, n, info, f, stats);
            *count += allocations() - before;
        }
    };
    let mut warm = 0;
    pass(&mut warm, &mut stats);
    let valid_after_warm = stats.event_count(Event::QuicInitialValid);
    let mut steady = 0;
    pass(&mut steady, &mut stats);
    pass(&mut steady, &mut stats);
    assert_eq!(steady, 0, "allocations in {} inspected packets", 2 * frames.len());
    // The steady passes validated Initials and completed split ClientHellos again.
    assert_eq!(stats.event_count(Event::QuicInitialValid), 3 * valid_after_warm);
    assert!(stats.event_count(Event::QuicHelloContinued) > 0);
}
