//! `scrubber lab run`: one scenario end to end. Builds a lab, starts origin's services and the
//! daemon, measures the lab's own ceiling (the generator as fast as it can for one second; what
//! reached the scrubber's XDP program), then runs the attack at 70 % of it (or `--rate`) from the
//! attacker while real clients fetch from origin's HTTP server and probe its UDP sequence
//! service from many source addresses. A table row each second; then a report (text, or JSON
//! with `--json`) that reconciles what the sources sent with what reached the scrubber's XDP
//! program. Everything is removed at the end, on error and on Ctrl-C.
//!
//! A scenario is a list of generator profiles ([`Scenario::attack`]): when a countermeasure
//! lands, its flood is already in the table. The report says what happened; it never assumes a
//! countermeasure exists: a flood the scrubber has no check for shows up in
//! `attack.reached_origin`.

use super::counters::Counters;
use super::instance::{Lab, LabError};
use super::observe::{GenReport, IpCounters, Links, PUBLISH_SETTLE, ScrubStats, XdpStats};
use super::topo::{LabOptions, Role};
use super::traffic::{GenSpec, LegitOptions, LegitProgress, LegitReport, QuicLegit, spawn_legit};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Profiles of the mixed attack: floods the scrubber drops today (TCP flag abuse) beside the
/// ones its countermeasures target (SYN, UDP reflection, QUIC Initial).
pub const MIXED: &[&str] = &["tcp-xmas", "tcp-null", "syn-flood", "udp-amp", "quic-initial"];

/// New QUIC connections per second of the legitimate load where QUIC clients run (within the
/// default per-source Initial budget even for the IPv6 clients, who share one /64).
pub const QUIC_RATE: f64 = 100.0;

/// Share of the measured ceiling the attack is sent at, unless `--rate`.
pub const CEILING_SHARE: f64 = 0.7;

/// A scenario of `scrubber lab run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Legitimate clients only.
    Clean,
    /// Spoofed TCP SYN flood.
    SynFlood,
    /// UDP reflection responses (DNS, NTP, SSDP, memcached, CLDAP, CharGEN).
    UdpAmp,
    /// QUIC Initial lookalikes.
    QuicFlood,
    /// All of the above and TCP flag-abuse floods at once.
    Mixed,
    /// The mixed attack with the scrubber in bypass (nothing is checked): the control run.
    Bypass,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::SynFlood => "syn-flood",
            Scenario::UdpAmp => "udp-amp",
            Scenario::QuicFlood => "quic-flood",
            Scenario::Mixed => "mixed",
            Scenario::Bypass => "bypass",
        }
    }

    /// Generator profiles of the attack (empty: no attack).
    pub fn attack(self) -> &'static [&'static str] {
        match self {
            Scenario::Clean => &[],
            Scenario::SynFlood => &["syn-flood"],
            Scenario::UdpAmp => &["udp-amp"],
            Scenario::QuicFlood => &["quic-initial"],
            Scenario::Mixed | Scenario::Bypass => MIXED,
        }
    }

    /// Whether the scrubber runs in bypass.
    pub fn bypass(self) -> bool {
        self == Scenario::Bypass
    }

    /// Whether real QUIC clients (and origin's QUIC service) are part of the legitimate load.
    pub fn quic_clients(self) -> bool {
        self == Scenario::QuicFlood
    }

    /// Queues (and daemon workers) unless `--queues`: two for `udp-amp`, whose per-destination
    /// budgets must hold however many workers see a destination's traffic.
    pub fn default_queues(self) -> u32 {
        if self == Scenario::UdpAmp { 2 } else { 1 }
    }
}

/// Options of `scrubber lab run`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Lab instance id.
    pub id: String,
    /// The scenario.
    pub scenario: Scenario,
    /// Seconds of attack and legitimate traffic.
    pub seconds: u64,
    /// Attack rate; `None`: 70 % of the measured ceiling.
    pub rate: Option<u64>,
    /// Route origin's replies through the scrubber.
    pub symmetric: bool,
    /// Daemon config to adapt (default `configs/lab.toml`).
    pub config: Option<PathBuf>,
    /// Core the generator is pinned to (the lab config pins the worker to core 1).
    pub gen_core: usize,
    /// Queues of the ingress and egress links; the daemon runs a worker per queue.
    pub queues: u32,
}

/// The lab's ceiling, measured at the start.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ceiling {
    /// What the generator sent per second, as fast as it could.
    pub gen_pps: f64,
    /// What reached the scrubber's XDP program per second meanwhile.
    pub xdp_pps: f64,
    /// The ceiling: the smaller of the two.
    pub pps: f64,
}

/// The attack part of the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttackReport {
    /// Generator profiles.
    pub profiles: Vec<String>,
    /// Spoofed source range.
    pub src: String,
    /// Destination.
    pub dst: String,
    /// Rate asked of the generator.
    pub rate_pps: u64,
    /// Frames the generator sent.
    pub sent: u64,
    /// Rate it achieved.
    pub sent_pps: f64,
    /// Attack-marked (DSCP CS1) packets counted in origin (nftables), all families/protocols.
    pub reached_origin: u64,
    /// The same by counter (`attack_ip4_tcp`, ...), non-zero ones.
    pub reached_origin_by_counter: BTreeMap<String, u64>,
}

/// The scrubber part of the report (deltas over the measured window).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScrubberReport {
    /// Whether bypass was on.
    pub bypass: bool,
    /// Frames the workers received.
    pub rx: u64,
    /// Verdict forward.
    pub forwarded: u64,
    /// Verdict reply.
    pub replied: u64,
    /// Drops per reason.
    pub dropped: BTreeMap<String, u64>,
    /// All drops.
    pub dropped_total: u64,
    /// Events.
    pub events: BTreeMap<String, u64>,
    /// The XDP program's counters.
    pub xdp_stats: XdpStats,
    /// Worker thread CPU time per received frame.
    pub worker_cpu_ns_per_packet: f64,
    /// Frames lost to a full TX ring.
    pub tx_ring_full: u64,
    /// The sockets' kernel statistics.
    pub socket: super::observe::SocketStats,
}

/// SYN authentication over the measured window (present when it challenged or verified
/// anything): what it sent and checked, the verified-source table, and what a first connection
/// costs a legitimate client (its SYN is answered by the challenge; the client's RST verifies
/// it; Linux retransmits the SYN ~12 ms later) against a connection from a verified source.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SynReport {
    /// SYN-ACK challenges sent.
    pub syn_ack_sent: u64,
    /// RSTs carrying a valid cookie.
    pub cookies_valid: u64,
    /// RSTs whose sequence number was no cookie of their 4-tuple.
    pub cookies_invalid: u64,
    /// RSTs carrying a cookie of an expired slot.
    pub cookies_expired: u64,
    /// Sources verified (by cookie or by a retransmitted SYN).
    pub sources_verified: u64,
    /// Of those, by a retransmitted SYN (`rst+retransmit`).
    pub retransmit_verified: u64,
    /// SYNs from verified sources, forwarded.
    pub verified_syns: u64,
    /// SYNs whose challenge the reply budget did not allow (dropped).
    pub challenges_over_budget: u64,
    /// SYNs from verified sources over their per-source SYN budget (dropped).
    pub verified_over_budget: u64,
    /// The verified-source table at the end (`syn_status`): `len`, `capacity`, `evictions`.
    pub verified_table: serde_json::Value,
    /// TCP connect time of each client source's first connection of the run.
    pub first_connect_us: super::services::LatencyUs,
    /// TCP connect time of the later connections (from verified sources).
    pub repeat_connect_us: super::services::LatencyUs,
    /// Median first minus median later connect time: what the challenge adds, microseconds.
    pub first_connect_added_us: i64,
}

impl SynReport {
    /// The figures from the window's counter deltas, `syn_status` and the legitimate clients.
    pub fn of(d: &ScrubStats, syn_status: &serde_json::Value, legit: &LegitReport) -> Option<SynReport> {
        let e = |k: &str| d.event(k);
        let r = SynReport {
            syn_ack_sent: e("syn_ack_sent"),
            cookies_valid: e("syn_cookie_valid"),
            cookies_invalid: e("syn_cookie_invalid"),
            cookies_expired: e("syn_cookie_expired"),
            sources_verified: e("syn_source_verified"),
            retransmit_verified: e("syn_retransmit_verified"),
            verified_syns: e("syn_verified_syn"),
            challenges_over_budget: d.drops("syn_challenge_over_budget"),
            verified_over_budget: d.drops("syn_verified_over_budget"),
            verified_table: syn_status.get("verified").cloned().unwrap_or(serde_json::Value::Null),
            first_connect_us: legit.http.first_connect_us,
            repeat_connect_us: legit.http.repeat_connect_us,
            first_connect_added_us: legit.http.first_connect_us.p50 as i64 - legit.http.repeat_connect_us.p50 as i64,
        };
        let active = r.syn_ack_sent + r.cookies_valid + r.verified_syns + r.challenges_over_budget;
        (active > 0).then_some(r)
    }
}

/// Rates over the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Frames the attacker and the clients put on their links, per second.
    pub offered_pps: f64,
    /// The generator's rate.
    pub attack_pps: f64,
    /// Frames reaching the scrubber's XDP program per second.
    pub xdp_pps: f64,
    /// Frames the scrubber forwarded per second.
    pub forwarded_pps: f64,
    /// Frames it dropped per second.
    pub dropped_pps: f64,
}

/// Where the frames the sources sent went, up to the scrubber's XDP program.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Reconciliation {
    /// Frames the attacker (a0) and the clients (c0) transmitted: the generator's frames, the
    /// clients' requests, ARP/ND.
    pub sent: u64,
    /// Of which the generator reported sending.
    pub attack_sent: u64,
    /// Frames dropped on the way, by place (link drop counters, the edge's IP discards).
    pub dropped_before_xdp: BTreeMap<String, u64>,
    /// Their sum.
    pub dropped_before_xdp_total: u64,
    /// Neighbour discovery the attacker and clients sent the edge router (ARP, ICMPv6 ND and
    /// MLD, counted by nftables on the edge's e-a and e-c): answered there, never forwarded.
    pub consumed_by_edge: u64,
    /// Frames the XDP program on the scrubber's ingress saw (all its counters).
    pub received_by_xdp: u64,
    /// Of those, the edge router's own neighbour discovery towards the scrubber (counted by
    /// nftables on e-s egress).
    pub edge_own_to_scrubber: u64,
    /// `sent - dropped_before_xdp_total - consumed_by_edge - (received_by_xdp -
    /// edge_own_to_scrubber)`: frames lost without a counter, or counted twice.
    pub gap: i64,
    /// `gap` as a percentage of `sent`.
    pub gap_pct: f64,
    /// Hop by hop: frames received / transmitted at each interface on the way.
    pub hops: BTreeMap<String, u64>,
    /// After XDP: frames redirected to the workers' sockets, frames the workers received, and
    /// what the kernel dropped at the sockets (no fill-ring buffer or RX ring full).
    pub xdp_redirected: u64,
    /// Frames the workers received.
    pub worker_rx: u64,
    /// Socket drops (kernel XDP_STATISTICS rx_dropped).
    pub socket_dropped: u64,
    /// `xdp_redirected - worker_rx - socket_dropped`.
    pub socket_gap: i64,
}

/// One row of the live table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    /// Seconds since the window started.
    pub t: f64,
    /// Frames the sources transmitted per second.
    pub sent_pps: f64,
    /// Frames reaching XDP per second.
    pub xdp_pps: f64,
    /// Forwarded per second.
    pub forwarded_pps: f64,
    /// Dropped per second.
    pub dropped_pps: f64,
    /// Drops per second by reason.
    pub dropped_by_reason_pps: BTreeMap<String, f64>,
    /// Attack-marked packets reaching origin per second.
    pub attack_at_origin_pps: f64,
    /// HTTP requests finished so far.
    pub http_attempts: u64,
    /// HTTP successes so far.
    pub http_ok: u64,
}

/// The report of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Seconds asked for.
    pub requested_seconds: u64,
    /// Lab id and options.
    pub lab: serde_json::Value,
    /// The ceiling measured at the start (absent with `--rate` or without an attack).
    pub ceiling: Option<Ceiling>,
    /// The attack.
    pub attack: AttackReport,
    /// The legitimate clients.
    pub legit: LegitReport,
    /// The scrubber's counters.
    pub scrubber: ScrubberReport,
    /// SYN authentication's figures (absent when it did nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn: Option<SynReport>,
    /// Rates.
    pub rates: Rates,
    /// Origin's counters (deltas).
    pub origin: Counters,
    /// Sent versus received by the scrubber's XDP.
    pub reconciliation: Reconciliation,
    /// The live table.
    pub timeline: Vec<Row>,
    /// `udp-amp`: per-vector outcomes, dropped vectors at origin, budgets, workers, dig.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amp: Option<super::amp::AmpReport>,
}

/// A snapshot of everything a run compares.
struct Snap {
    at: Instant,
    scrub: ScrubStats,
    origin: Counters,
    links: Links,
    edge_ip: IpCounters,
    edge_nd: Counters,
}

/// nftables table (family netdev) in the edge namespace counting the neighbour discovery that
/// never crosses the router: what the attacker and clients send it (`consumed`), and what it
/// sends the scrubber itself (`own`).
pub const EDGE_TABLE: &str = "reconcile";

/// The edge's reconciliation counters.
pub fn edge_ruleset() -> String {
    let nd = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, \
              nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }";
    let mut s = format!("table netdev {EDGE_TABLE} {{\n  counter consumed {{ }}\n  counter own {{ }}\n");
    for (chain, hook, dev, counter) in [
        ("from_a", "ingress", "e-a", "consumed"),
        ("from_c", "ingress", "e-c", "consumed"),
        ("to_s", "egress", "e-s", "own"),
    ] {
        s.push_str(&format!(
            "  chain {chain} {{\n    type filter hook {hook} device \"{dev}\" priority 0; policy accept;\n    \
             meta protocol arp counter name \"{counter}\" return\n    {nd} counter name \"{counter}\"\n  }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

const LINKS: [(Role, &str); 6] = [
    (Role::Attacker, "a0"),
    (Role::Client, "c0"),
    (Role::Edge, "e-a"),
    (Role::Edge, "e-c"),
    (Role::Edge, "e-s"),
    (Role::Scrub, "in0"),
];

fn snap(lab: &Lab) -> Result<Snap, LabError> {
    let which: Vec<(String, &str)> = LINKS.iter().map(|(r, d)| (lab.ns(*r), *d)).collect();
    Ok(Snap {
        at: Instant::now(),
        scrub: lab.scrub_stats()?,
        origin: lab.origin_counters()?,
        links: Links::read(&which)?,
        edge_ip: IpCounters::read(&lab.ns(Role::Edge))?,
        edge_nd: super::counters::read(&lab.ns(Role::Edge), "netdev", EDGE_TABLE)?,
    })
}

/// Why a run stopped early.
fn interrupted() -> LabError {
    LabError::Invalid("interrupted".into())
}

/// Measures the ceiling: `profiles` as fast as the generator can for one second.
fn ceiling(lab: &Lab, bin: &Path, profiles: &[&str], core: usize) -> Result<Ceiling, LabError> {
    let before = lab.scrub_stats()?;
    let spec = GenSpec { core: Some(core), ..GenSpec::attack(profiles) };
    let g = lab.run_gen(bin, &spec)?;
    thread::sleep(PUBLISH_SETTLE);
    let d = lab.scrub_stats()?.since(&before);
    let xdp_pps = d.xdp.total() as f64 / g.seconds.max(1e-3);
    Ok(Ceiling { gen_pps: g.pps, xdp_pps, pps: g.pps.min(xdp_pps) })
}

/// Runs one scenario; `live` gets the table rows as they come. Everything the run made is
/// removed when it returns, whatever happened.
pub fn run(o: &RunOptions, bin: &Path, stop: &Arc<AtomicBool>, live: &mut dyn Write) -> Result<RunReport, LabError> {
    let opts = LabOptions {
        symmetric: o.symmetric,
        config: o.config.clone(),
        owner_pid: Some(std::process::id()),
        queues: o.queues,
        ..LabOptions::new(o.id.clone())
    };
    super::instance::sweep_orphans();
    let mut lab = Lab::up(opts)?;
    super::counters::load(&lab.ns(Role::Edge), &edge_ruleset())?;
    lab.start_http()?;
    lab.start_udp_echo(bin)?;
    if o.scenario.quic_clients() {
        lab.start_quic_server(bin)?;
    }
    lab.start_daemon(bin, &[])?;
    let mut amp = match o.scenario {
        Scenario::UdpAmp => Some(super::amp::AmpRun::prepare(&mut lab)?),
        _ => None,
    };
    let _ = writeln!(live, "lab {} up; daemon pid {}", lab.id(), lab.daemon_pid().unwrap_or(0));
    if stop.load(Ordering::Relaxed) {
        return Err(interrupted());
    }
    // One request through the scrubber first: the edge and the clients learn their neighbours.
    let client = lab.ns(Role::Client);
    let _ = super::traffic::curl_parallel(
        &client,
        super::topo::ORIGIN_V4.into(),
        &super::topo::client_sources_v4()[..4],
        Duration::from_secs(3),
    );
    if o.scenario.bypass() {
        lab.set_bypass(true)?;
    }

    let profiles = o.scenario.attack();
    let mut report = RunReport {
        scenario: o.scenario.name().into(),
        requested_seconds: o.seconds,
        lab: serde_json::json!({
            "id": lab.id(), "symmetric": o.symmetric, "queues": o.queues,
            "config": lab.state().daemon.config, "source_config": lab.state().daemon.source_config,
        }),
        ..RunReport::default()
    };
    let rate = match (profiles.is_empty(), o.rate) {
        (true, _) => 0,
        (false, Some(r)) => r,
        (false, None) => {
            let c = ceiling(&lab, bin, profiles, o.gen_core)?;
            let _ = writeln!(
                live,
                "ceiling: generator {:.0} pps, reaching the scrubber {:.0} pps; attack at {:.0} %: {:.0} pps",
                c.gen_pps,
                c.xdp_pps,
                CEILING_SHARE * 100.0,
                c.pps * CEILING_SHARE
            );
            let r = (c.pps * CEILING_SHARE) as u64;
            report.ceiling = Some(c);
            r.max(1)
        }
    };
    if stop.load(Ordering::Relaxed) {
        return Err(interrupted());
    }

    let spec = GenSpec { rate, seconds: o.seconds as f64, core: Some(o.gen_core), ..GenSpec::attack(profiles) };
    report.attack.profiles = spec.profiles.clone();
    report.attack.src = spec.src.clone();
    report.attack.dst = spec.dst.to_string();
    report.attack.rate_pps = rate;

    // Workers publish every 50 ms: let them catch up with the XDP counters first.
    thread::sleep(PUBLISH_SETTLE);
    if let Some(a) = &mut amp {
        a.begin(&lab)?;
    }
    let s0 = snap(&lab)?;
    let progress = Arc::new(LegitProgress::default());
    let legit_stop = Arc::new(AtomicBool::new(false));
    let mut legit_options = LegitOptions::new(Duration::from_secs(o.seconds));
    if o.scenario.quic_clients() {
        legit_options.quic = Some(QuicLegit { ca: lab.quic_cert(), rate: QUIC_RATE, split_hello_every: 10 });
    }
    let legit = spawn_legit(client.clone(), bin.to_path_buf(), legit_options, progress.clone(), legit_stop.clone());
    let generator = (!profiles.is_empty()).then(|| {
        let cmd = lab.gen_cmd(bin, &spec);
        thread::spawn(move || cmd.run())
    });

    let _ = writeln!(
        live,
        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}  top drops",
        "t", "sent/s", "at-xdp/s", "fwd/s", "drop/s", "atk@orig/s", "http ok/all"
    );
    let mut prev = snap(&lab)?;
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        let gen_done = generator.as_ref().is_none_or(|g| g.is_finished());
        if gen_done && legit.is_finished() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            legit_stop.store(true, Ordering::Relaxed);
            return Err(interrupted());
        }
        let wait = next.saturating_duration_since(Instant::now());
        thread::sleep(wait.min(Duration::from_millis(100)));
        if Instant::now() < next {
            continue;
        }
        next += Duration::from_secs(1);
        let now = snap(&lab)?;
        let row = row(&lab, &s0, &prev, &now, &progress);
        let _ = writeln!(live, "{}", format_row(&row));
        report.timeline.push(row);
        prev = now;
    }
    let gen_report = match generator {
        Some(h) => {
            let out = h.join().map_err(|_| LabError::Invalid("generator thread panicked".into()))??;
            GenReport::parse(&out.stdout).map_err(LabError::Invalid)?
        }
        None => GenReport::default(),
    };
    report.legit = legit.join().map_err(|_| LabError::Invalid("legitimate-client thread panicked".into()))?;
    thread::sleep(PUBLISH_SETTLE);
    let s1 = snap(&lab)?;
    finish(&mut report, &lab, &s0, &s1, &gen_report);
    let syn_status = lab.ctl("syn_status", serde_json::json!({})).unwrap_or_default();
    report.syn = SynReport::of(&s1.scrub.since(&s0.scrub), &syn_status, &report.legit);
    if let Some(a) = amp {
        // Budgets hold over the flood's own duration (the window has a tail after it).
        report.amp = Some(a.finish(&lab, gen_report.seconds, report.legit.udp.as_ref())?);
    }
    lab.down()?;
    Ok(report)
}

fn per_s(n: u64, dt: f64) -> f64 {
    n as f64 / dt.max(1e-3)
}

fn sources_tx(lab: &Lab, l: &Links) -> u64 {
    l.get(&lab.ns(Role::Attacker), "a0").tx_packets + l.get(&lab.ns(Role::Client), "c0").tx_packets
}

fn row(lab: &Lab, s0: &Snap, prev: &Snap, now: &Snap, progress: &LegitProgress) -> Row {
    let dt = now.at.duration_since(prev.at).as_secs_f64();
    let d = now.scrub.since(&prev.scrub);
    let links = now.links.since(&prev.links);
    Row {
        t: now.at.duration_since(s0.at).as_secs_f64(),
        sent_pps: per_s(sources_tx(lab, &links), dt),
        xdp_pps: per_s(d.xdp.total(), dt),
        forwarded_pps: per_s(d.forwarded, dt),
        dropped_pps: per_s(d.dropped_total, dt),
        dropped_by_reason_pps: d.dropped.iter().map(|(k, v)| (k.clone(), per_s(*v, dt))).collect(),
        attack_at_origin_pps: per_s(now.origin.since(&prev.origin).attack_packets(), dt),
        http_attempts: progress.attempts.load(Ordering::Relaxed),
        http_ok: progress.succeeded.load(Ordering::Relaxed),
    }
}

fn format_row(r: &Row) -> String {
    let mut top: Vec<(&String, &f64)> = r.dropped_by_reason_pps.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    let top: Vec<String> = top.iter().take(4).map(|(k, v)| format!("{k} {v:.0}")).collect();
    format!(
        "{:>5.1} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>11}  {}",
        r.t,
        r.sent_pps,
        r.xdp_pps,
        r.forwarded_pps,
        r.dropped_pps,
        r.attack_at_origin_pps,
        format!("{}/{}", r.http_ok, r.http_attempts),
        top.join(", ")
    )
}

fn finish(report: &mut RunReport, lab: &Lab, s0: &Snap, s1: &Snap, g: &GenReport) {
    let dt = s1.at.duration_since(s0.at).as_secs_f64();
    let d = s1.scrub.since(&s0.scrub);
    let origin = s1.origin.since(&s0.origin);
    let links = s1.links.since(&s0.links);
    let edge_ip = s1.edge_ip.since(&s0.edge_ip);
    let edge_nd = s1.edge_nd.since(&s0.edge_nd);
    report.seconds = dt;

    report.attack.sent = g.sent;
    report.attack.sent_pps = g.pps;
    report.attack.reached_origin = origin.attack_packets();
    report.attack.reached_origin_by_counter = super::counters::ATTACK_COUNTERS
        .iter()
        .map(|c| (c.to_string(), origin.packets(c)))
        .filter(|(_, n)| *n > 0)
        .collect();

    report.scrubber = ScrubberReport {
        bypass: report.scenario == Scenario::Bypass.name(),
        rx: d.rx,
        forwarded: d.forwarded,
        replied: d.replied,
        dropped: d.dropped.clone(),
        dropped_total: d.dropped_total,
        events: d.events.clone(),
        xdp_stats: d.xdp,
        worker_cpu_ns_per_packet: d.cpu_ns_per_packet(),
        tx_ring_full: d.tx_ring_full,
        socket: d.socket,
    };

    let sent = sources_tx(lab, &links);
    report.rates = Rates {
        offered_pps: per_s(sent, dt),
        attack_pps: g.pps,
        xdp_pps: per_s(d.xdp.total(), dt),
        forwarded_pps: per_s(d.forwarded, dt),
        dropped_pps: per_s(d.dropped_total, dt),
    };
    report.origin = origin;

    let (a, c, e) = (lab.ns(Role::Attacker), lab.ns(Role::Client), lab.ns(Role::Edge));
    let scrub = lab.ns(Role::Scrub);
    let (a0, c0) = (links.get(&a, "a0"), links.get(&c, "c0"));
    let (ea, ec, es) = (links.get(&e, "e-a"), links.get(&e, "e-c"), links.get(&e, "e-s"));
    let in0 = links.get(&scrub, "in0");
    let dropped: BTreeMap<String, u64> = [
        ("source links (a0, c0 tx_dropped)", a0.tx_dropped + c0.tx_dropped),
        ("edge in (e-a, e-c rx_dropped)", ea.rx_dropped + ec.rx_dropped),
        ("edge IP discards", edge_ip.discarded),
        ("edge to scrubber (e-s tx_dropped)", es.tx_dropped),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let dropped_total: u64 = dropped.values().sum();
    let received = d.xdp.total();
    let (consumed, own) = (edge_nd.packets("consumed"), edge_nd.packets("own"));
    let gap = sent as i64 - dropped_total as i64 - consumed as i64 - (received as i64 - own as i64);
    report.reconciliation = Reconciliation {
        sent,
        attack_sent: g.sent,
        dropped_before_xdp: dropped,
        dropped_before_xdp_total: dropped_total,
        consumed_by_edge: consumed,
        received_by_xdp: received,
        edge_own_to_scrubber: own,
        gap,
        gap_pct: if sent == 0 { 0.0 } else { gap as f64 * 100.0 / sent as f64 },
        hops: [
            ("1 attacker a0 tx", a0.tx_packets),
            ("1 client c0 tx", c0.tx_packets),
            ("2 edge e-a rx", ea.rx_packets),
            ("2 edge e-c rx", ec.rx_packets),
            ("3 edge forwarded (all directions)", edge_ip.forwarded),
            ("4 edge e-s tx", es.tx_packets),
            ("5 scrubber in0 rx", in0.rx_packets),
            ("6 scrubber XDP", received),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        xdp_redirected: d.xdp.redirected,
        worker_rx: d.rx,
        socket_dropped: d.socket.rx_dropped + d.socket.rx_ring_full,
        socket_gap: d.xdp.redirected as i64 - d.rx as i64 - (d.socket.rx_dropped + d.socket.rx_ring_full) as i64,
    };
}

/// The report as text.
pub fn format_report(r: &RunReport) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(format!("\n== scenario {}: {:.1} s ==", r.scenario, r.seconds));
    if let Some(c) = &r.ceiling {
        line(format!(
            "ceiling        {:.0} pps (generator {:.0}, reaching the scrubber {:.0})",
            c.pps, c.gen_pps, c.xdp_pps
        ));
    }
    if r.attack.profiles.is_empty() {
        line("attack         none".into());
    } else {
        line(format!(
            "attack         {} from {} to {}: sent {} ({:.0} pps, asked {})",
            r.attack.profiles.join(","),
            r.attack.src,
            r.attack.dst,
            r.attack.sent,
            r.attack.sent_pps,
            r.attack.rate_pps
        ));
        let by: Vec<String> = r.attack.reached_origin_by_counter.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line(format!(
            "  reached origin {} ({:.2} % of sent){}",
            r.attack.reached_origin,
            if r.attack.sent == 0 { 0.0 } else { r.attack.reached_origin as f64 * 100.0 / r.attack.sent as f64 },
            if by.is_empty() { String::new() } else { format!(": {}", by.join(", ")) }
        ));
    }
    let h = &r.legit.http;
    line(format!(
        "legit http     {}/{} ok from {} of {} sources, latency p50 {} us p99 {} us",
        h.succeeded, h.attempts, h.sources, h.sources_used, h.latency_us.p50, h.latency_us.p99
    ));
    match (&r.legit.quic, &r.legit.quic_error) {
        (Some(q), _) => {
            line(format!(
                "legit quic     {}/{} handshakes ({:.2} %), {} streams echoed, from {} of {} sources; \
                 {} of {} split ClientHellos; handshake p50 {} us p99 {} us",
                q.handshakes,
                q.attempts,
                q.handshake_ratio * 100.0,
                q.exchanges,
                q.sources_ok,
                q.sources_used,
                q.split_hello.handshakes,
                q.split_hello.attempts,
                q.handshake_us.p50,
                q.handshake_us.p99
            ));
            let mut failures: Vec<(&String, &u64)> = q.failures.iter().collect();
            failures.sort_by(|a, b| b.1.cmp(a.1));
            for (e, n) in failures.iter().take(3) {
                line(format!("  quic failure {n} x {e}"));
            }
        }
        (None, Some(e)) => line(format!("legit quic     failed: {e}")),
        (None, None) => {}
    }
    match (&r.legit.udp, &r.legit.udp_error) {
        (Some(u), _) => line(format!(
            "legit udp      {}/{} answered, {} of {} sources, rtt p50 {} us",
            u.answered, u.sent, u.sources_answered, u.sources, u.rtt_us.p50
        )),
        (None, Some(e)) => line(format!("legit udp      failed: {e}")),
        (None, None) => {}
    }
    let sc = &r.scrubber;
    line(format!(
        "scrubber       rx {} forwarded {} replied {} dropped {}{}; worker {:.0} ns/packet; tx ring full {}",
        sc.rx,
        sc.forwarded,
        sc.replied,
        sc.dropped_total,
        if sc.bypass { " (bypass)" } else { "" },
        sc.worker_cpu_ns_per_packet,
        sc.tx_ring_full
    ));
    for (k, v) in &sc.dropped {
        line(format!("  drop {k:<24} {v}"));
    }
    let x = &sc.xdp_stats;
    line(format!(
        "xdp            redirected {} unprotected {} local {} not-ip {} no-socket {} malformed {}",
        x.redirected, x.unprotected, x.local, x.not_ip, x.no_socket, x.malformed
    ));
    if let Some(y) = &r.syn {
        let t = &y.verified_table;
        line(format!(
            "syn auth       SYN-ACKs {}, cookies valid {} invalid {} expired {}, verified {} ({} by retransmit); \
             verified table {}/{} evictions {}",
            y.syn_ack_sent,
            y.cookies_valid,
            y.cookies_invalid,
            y.cookies_expired,
            y.sources_verified,
            y.retransmit_verified,
            t["len"],
            t["capacity"],
            t["evictions"]
        ));
        line(format!(
            "  SYNs from verified sources {} (over their budget {}); challenges over the reply budget {}",
            y.verified_syns, y.verified_over_budget, y.challenges_over_budget
        ));
        line(format!(
            "  connect time: first connection p50 {} us p99 {} us, later p50 {} us: the challenge adds {} us",
            y.first_connect_us.p50, y.first_connect_us.p99, y.repeat_connect_us.p50, y.first_connect_added_us
        ));
    }
    let rt = &r.rates;
    line(format!(
        "rates          offered {:.0} pps, at XDP {:.0}, forwarded {:.0}, dropped {:.0}",
        rt.offered_pps, rt.xdp_pps, rt.forwarded_pps, rt.dropped_pps
    ));
    let rc = &r.reconciliation;
    line(format!(
        "reconcile      sent {} = at XDP {} (less the edge's own {}) + dropped before it {} + ARP/ND the edge \
         answered {} + gap {} ({:.3} %)",
        rc.sent,
        rc.received_by_xdp,
        rc.edge_own_to_scrubber,
        rc.dropped_before_xdp_total,
        rc.consumed_by_edge,
        rc.gap,
        rc.gap_pct
    ));
    line(format!(
        "  after XDP: redirected {} = worker rx {} + socket drops {} + gap {}",
        rc.xdp_redirected, rc.worker_rx, rc.socket_dropped, rc.socket_gap
    ));
    if let Some(a) = &r.amp {
        s.push_str(&super::amp::format_report(a));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_name_their_floods() {
        assert!(Scenario::Clean.attack().is_empty());
        assert_eq!(Scenario::SynFlood.attack(), ["syn-flood"]);
        assert_eq!(Scenario::Bypass.attack(), Scenario::Mixed.attack());
        assert!(Scenario::Bypass.bypass() && !Scenario::Mixed.bypass());
        for s in [Scenario::SynFlood, Scenario::UdpAmp, Scenario::QuicFlood] {
            assert!(s.attack().iter().all(|p| MIXED.contains(p)), "{s:?} is part of the mix");
        }
    }

    #[test]
    fn edge_ruleset_counts_on_every_edge_link() {
        let r = edge_ruleset();
        for dev in ["e-a", "e-c", "e-s"] {
            assert!(r.contains(&format!("device \"{dev}\"")), "{r}");
        }
        assert_eq!(r.matches("counter name \"consumed\"").count(), 4);
        assert_eq!(r.matches("counter name \"own\"").count(), 2);
    }

    #[test]
    fn report_tells_how_the_quic_clients_did() {
        let mut r = RunReport::default();
        r.legit.quic = Some(super::super::quic::ClientReport {
            attempts: 300,
            handshakes: 299,
            exchanges: 299,
            handshake_ratio: 299.0 / 300.0,
            failures: BTreeMap::from([("no result within 5s".to_string(), 1)]),
            ..Default::default()
        });
        let f = format_report(&r);
        assert!(f.contains("legit quic     299/300 handshakes (99.67 %), 299 streams echoed"), "{f}");
        assert!(f.contains("quic failure 1 x no result within 5s"), "{f}");
        r.legit.quic = None;
        r.legit.quic_error = Some("quic-client output: EOF".into());
        assert!(format_report(&r).contains("legit quic     failed: quic-client output: EOF"));
        r.legit.quic_error = None;
        assert!(!format_report(&r).contains("legit quic"));
    }

    #[test]
    fn rows_format() {
        let r = Row {
            t: 1.0,
            sent_pps: 1000.0,
            dropped_by_reason_pps: BTreeMap::from([("tcp_xmas".into(), 10.0), ("tcp_null_flags".into(), 20.0)]),
            http_ok: 3,
            http_attempts: 4,
            ..Row::default()
        };
        let f = format_row(&r);
        assert!(f.contains("3/4") && f.ends_with("tcp_null_flags 20, tcp_xmas 10"), "{f}");
    }
}
