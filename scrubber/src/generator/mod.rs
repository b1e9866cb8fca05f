//! `scrubber gen`: an AF_XDP transmit generator (pktgen-like) for the lab and for benchmarks.
//!
//! A pool of distinct frames (`--flows`) is built once (several profiles mix round-robin) and
//! written into the UMEM; the loop then replays it at a paced rate (`--rate`, 0 = as fast as the
//! ring takes them) for `--count` frames or `--seconds`, whichever ends first, printing the rate
//! each second (optionally pinned to one core, `--core`). Spoofed sources and the destination
//! must lie in the benchmarking ranges (198.18.0.0/15, 2001:2::/48) unless `--any-range` is
//! given: a generator pointed at the wrong cable must not flood anyone.

pub mod profiles;

use crate::daemon::system;
use dataplane::Cidr;
use dataplane::xsk::socket::{BindMode, Transmitter, UmemPages, XskSettings};
use profiles::{Profile, Rng, Sources, Spec};
use serde_json::json;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `scrubber gen`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Interface to transmit on.
    #[arg(long, short)]
    pub interface: String,
    /// TX queue.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Traffic profile; several, comma-separated, mix their frames round-robin in one pool.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "udp")]
    pub profile: Vec<Profile>,
    /// Spoofed sources: a CIDR, or an inclusive range `FIRST-LAST` of one family.
    #[arg(long, default_value = "198.18.1.0/24")]
    pub src: String,
    /// Destination address.
    #[arg(long, default_value = "198.18.100.10")]
    pub dst: IpAddr,
    /// Destination port.
    #[arg(long, default_value_t = 80)]
    pub dport: u16,
    /// Frame size for the udp profile (bytes without FCS).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Packets per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stop after this many frames (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// DSCP set on every frame (the lab counts CS1 = 8 as attack traffic at the origin).
    #[arg(long, default_value_t = 8)]
    pub dscp: u8,
    /// Destination MAC, or "auto" to resolve --gateway from the neighbour table.
    #[arg(long, default_value = "auto")]
    pub dst_mac: String,
    /// Next hop to resolve when --dst-mac is auto.
    #[arg(long)]
    pub gateway: Option<IpAddr>,
    /// Distinct frames in the replay pool.
    #[arg(long, default_value_t = 4096)]
    pub flows: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// udp-amp: send only this vector's responses (a catalogue name, e.g. stun).
    #[arg(long)]
    pub vector: Option<String>,
    /// quic-initial: which kinds of Initials.
    #[arg(long, value_enum, default_value = "mix")]
    pub quic_kind: profiles::QuicKind,
    /// Allow addresses outside the benchmarking ranges.
    #[arg(long)]
    pub any_range: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Quiet: no per-second lines.
    #[arg(long)]
    pub quiet: bool,
    /// Pin the transmit loop to this CPU core.
    #[arg(long)]
    pub core: Option<usize>,
}

fn in_lab(addr: IpAddr) -> bool {
    let lab: [Cidr; 2] = ["198.18.0.0/15".parse().expect("valid"), "2001:2::/48".parse().expect("valid")];
    lab.iter().any(|c| c.contains(dataplane::Addr::from(addr)))
}

/// Runs the generator.
pub fn run(args: &GenArgs) -> ExitCode {
    match generate(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn generate(a: &GenArgs) -> Result<(), String> {
    let src: Sources = a.src.parse().map_err(|e| format!("--src: {e}"))?;
    let (first, last) = src.bounds();
    // The lab ranges are contiguous: both ends inside means every address is.
    if !a.any_range && (!in_lab(first) || !in_lab(last) || !in_lab(a.dst)) {
        return Err("--src and --dst must lie in 198.18.0.0/15 or 2001:2::/48 (or pass --any-range)".into());
    }
    if src.is_v4() != a.dst.is_ipv4() {
        return Err("--src and --dst must be the same family".into());
    }
    system::preflight().map_err(|e| e.0)?;
    let src_mac = system::mac_of(&a.interface).map_err(|e| e.0)?;
    let dst_mac = if a.dst_mac == "auto" {
        let gw = a.gateway.ok_or("--gateway is required with --dst-mac auto")?;
        system::resolve_neighbour(gw, Duration::from_secs(3)).map_err(|e| e.0)?
    } else {
        control::compile::parse_mac(&a.dst_mac).ok_or("--dst-mac is not a MAC address")?
    };
    let vector = match &a.vector {
        Some(name) => Some(
            dataplane::amp::samples::attack(name)
                .ok_or_else(|| format!("--vector: no sample named `{name}` in the reflection catalogue"))?,
        ),
        None => None,
    };
    let mix = if a.profile.is_empty() { vec![Profile::Udp] } else { a.profile.clone() };
    let mut spec = Spec {
        profile: mix[0],
        src,
        dst: a.dst,
        dport: a.dport,
        size: a.size,
        dscp: a.dscp,
        macs: (src_mac, dst_mac),
        vector,
        quic: a.quic_kind,
        quic_template: if mix.contains(&Profile::QuicInitial) { profiles::quic_template() } else { Vec::new() },
    };
    let mut rng = Rng::new(a.seed);
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(a.flows.max(1));
    let mut i = 0;
    while pool.len() < a.flows.max(1) {
        spec.profile = mix[i % mix.len()];
        pool.extend(profiles::frames(&spec, &mut rng));
        i += 1;
    }

    let frames = (a.flows.max(1) as u32).next_power_of_two().clamp(4096, 1 << 16);
    let settings = XskSettings {
        frames,
        frame_size: 2048,
        ring_size: 2048,
        fill_size: 2048,
        bind: BindMode::Auto,
        batch: 64,
        busy_poll_budget: 0,
        // Reserved huge pages are for the daemon's workers.
        pages: UmemPages::Small,
    };
    let mut tx = system::retry_busy(Duration::from_secs(2), || Transmitter::open(&settings, &a.interface, a.queue))
        .map_err(|e| e.to_string())?;
    let loaded = tx.load(&pool);
    if loaded == 0 {
        return Err("no frame fits a UMEM frame".into());
    }

    if let Some(c) = a.core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
    {
        return Err(format!("--core {c}: cannot pin the generator to that core"));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.seconds.max(0.0));
    let mut last_print = started;
    let mut last_sent = 0u64;
    while Instant::now() < deadline && (a.count == 0 || tx.sent() < a.count) {
        tx.reclaim();
        let mut budget = 64usize;
        if a.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * a.rate as f64) as u64;
            budget = due.saturating_sub(tx.sent()).min(64) as usize;
        }
        if a.count > 0 {
            budget = budget.min((a.count - tx.sent()) as usize);
        }
        if budget > 0 {
            tx.send(budget);
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        tx.kick();
        if !a.quiet && last_print.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            let pps = (tx.sent() - last_sent) as f64 / now.duration_since(last_print).as_secs_f64();
            eprintln!("{:>6.1}s  sent {:>10}  {:>10.0} pps", started.elapsed().as_secs_f64(), tx.sent(), pps);
            last_print = now;
            last_sent = tx.sent();
        }
    }
    // Let the kernel drain what is still in the ring.
    let drain = Instant::now();
    while tx.outstanding() > 0 && drain.elapsed() < Duration::from_secs(1) {
        tx.kick();
        tx.reclaim();
        std::thread::sleep(Duration::from_micros(200));
    }
    let seconds = started.elapsed().as_secs_f64();
    let ring = tx.ring_stats();
    let report = json!({
        "interface": a.interface,
        "profile": mix.iter().map(|p| p.name()).collect::<Vec<_>>().join(","),
        "sent": tx.sent(),
        "seconds": seconds,
        "pps": tx.sent() as f64 / seconds.max(1e-9),
        "flows": loaded,
        "tx_invalid": ring.tx_invalid,
    });
    if a.json {
        println!("{report}");
    } else {
        println!("sent {} frames in {:.2}s ({:.0} pps)", tx.sent(), seconds, tx.sent() as f64 / seconds.max(1e-9));
    }
    Ok(())
}
