//! `scrubber lab ...`: the command-line side of the lab.

use super::bench::{self, BenchOptions};
use super::instance::{self, Lab};
use super::quic;
use super::run::{self, RunOptions, Scenario};
use super::services::{self, ProbeOptions};
use super::state::LabState;
use super::throughput::{self, ThroughputOptions};
use super::topo::LabOptions;
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `scrubber lab` subcommands.
#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the namespace lab (client, attacker -> edge -> scrub -> origin) and leave it up.
    Up {
        /// Instance id (namespaces are `scrb<ID>-<role>`).
        #[arg(long, default_value = "0")]
        id: String,
        /// Daemon config to adapt (default `configs/lab.toml`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Route origin -> client back through the scrubber (default: around it).
        #[arg(long)]
        symmetric: bool,
        /// Carry the ingress and egress links on this VLAN id.
        #[arg(long)]
        vlan: Option<u16>,
        /// Give origin a GRE endpoint (gre1) and the daemon GRE forwarding.
        #[arg(long)]
        gre: bool,
        /// Queues of the ingress and egress links, and daemon workers (one per queue of in0).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Do not start the scrubber daemon (`scrubber run`) in the scrub namespace: the kernel
        /// routes there, the fail-open path.
        #[arg(long)]
        no_daemon: bool,
        /// Do not start origin's HTTP and UDP services.
        #[arg(long)]
        no_services: bool,
    },
    /// Show a lab that is up: hosts, namespaces, interfaces, addresses, MACs, daemon paths.
    Status {
        /// Instance id.
        #[arg(long, default_value = "0")]
        id: String,
        /// Print the recorded state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a lab: processes, namespaces (with their veths), state. Idempotent.
    Down {
        /// Instance id.
        #[arg(long, default_value = "0")]
        id: String,
    },
    /// Run a scenario end to end: build a lab, start the daemon, measure the lab's ceiling, attack
    /// at 70 % of it while real clients use origin's services; a table row each second, then a
    /// report. Removes everything at the end, on failure and on Ctrl-C.
    Run {
        /// What to send.
        #[arg(long, value_enum, default_value = "mixed")]
        scenario: Scenario,
        /// Seconds of traffic.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Attack rate in packets per second (default: 70 % of the measured ceiling; 0: as fast
        /// as the generator can).
        #[arg(long)]
        rate: Option<u64>,
        /// Queues of the ingress and egress links, and daemon workers (default: 2 for udp-amp,
        /// whose per-destination budgets must hold across workers; else 1).
        #[arg(long)]
        queues: Option<u32>,
        /// Print the report as JSON on stdout (the live table goes to stderr).
        #[arg(long)]
        json: bool,
        /// Route origin -> client back through the scrubber.
        #[arg(long)]
        symmetric: bool,
        /// Daemon config to adapt (default `configs/lab.toml`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Instance id.
        #[arg(long, default_value = "run")]
        id: String,
        /// Core to pin the generator to (the lab config pins the worker to core 1).
        #[arg(long, default_value_t = 0)]
        gen_core: usize,
    },
    /// Measure the AF_XDP path's cost per packet at one fixed rate: a minimal forwarder, bypass,
    /// full checks, and nftables dropping in the netdev ingress hook (what `make bench-lab` runs).
    Bench {
        /// Offered rate, packets per second.
        #[arg(long, default_value_t = 200_000)]
        rate: u64,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Measurements per mode (interleaved; ratios are paired by round).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Daemon config to adapt (default `configs/lab.toml`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Instance id.
        #[arg(long, default_value = "bench")]
        id: String,
        /// Core to pin the generator to (the lab config pins the worker to core 1).
        #[arg(long, default_value_t = 0)]
        gen_core: usize,
        /// Instead: an RFC 2544 style throughput search with full checks, per frame size
        /// (`--sizes`), each trial `--trial-seconds` long (what `make bench-rfc2544` runs).
        #[arg(long)]
        throughput: bool,
        /// Frame sizes with the FCS for `--throughput`.
        #[arg(long, value_delimiter = ',', default_values_t = throughput::RFC2544_SIZES)]
        sizes: Vec<usize>,
        /// Seconds per trial of `--throughput`.
        #[arg(long, default_value_t = 2.0)]
        trial_seconds: f64,
        /// Loss a passing trial of `--throughput` may have, as a fraction (RFC 2544: 0).
        #[arg(long, default_value_t = 0.001)]
        max_loss: f64,
        /// `--throughput` stops bisecting when pass and fail are closer than this fraction.
        #[arg(long, default_value_t = 0.05)]
        resolution: f64,
        /// `--throughput` only: queues of the scrubbed links and workers (1 to 8), one generator
        /// per queue.
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// `--throughput` only: the generators' cores, one per queue (default: `--gen-core` for
        /// one queue, else the cores after the workers').
        #[arg(long, value_delimiter = ',')]
        gen_cores: Vec<usize>,
        /// `--throughput` only: what the generators send: `udp` (clean, forwarded; one search per
        /// `--sizes`) or a flood decided by the checks, searched once in its own frame sizes:
        /// syn-flood, udp-amp, quic-initial, tcp-xmas, tcp-null.
        #[arg(long, default_value = "udp")]
        profile: String,
    },
    /// (Runs inside origin) serve the UDP sequence service until killed.
    UdpEcho {
        /// Address to serve, `ip:port` or `[ipv6]:port`; repeatable.
        #[arg(long = "bind", required = true)]
        binds: Vec<SocketAddr>,
    },
    /// (Runs inside client) send numbered UDP requests from many sources; report the answers.
    /// SIGTERM stops the sending early (the report covers what was sent).
    UdpProbe {
        /// The service, `ip:port` or `[ipv6]:port`.
        #[arg(long)]
        target: SocketAddr,
        /// Source addresses: `A,B,FIRST-LAST` (ranges vary in the last byte / last 16 bits).
        #[arg(long)]
        sources: String,
        /// Requests to send.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Requests per second (0: as fast as possible).
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Milliseconds to wait for answers after the last request.
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
        /// Payload bytes per request (16..=1472).
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// (Runs inside origin) a QUIC echo server (quinn, rustls on ring, a self-signed certificate
    /// made at start) until killed.
    QuicServer {
        /// Address to serve, `ip:port` or `[ipv6]:port`; repeatable.
        #[arg(long = "bind", required = true)]
        binds: Vec<SocketAddr>,
        /// Where to write the certificate (DER) for the clients.
        #[arg(long)]
        cert_out: PathBuf,
    },
    /// (Runs inside client) QUIC connections from many sources at a fixed rate: handshake, an
    /// echoed stream, close; reports JSON.
    QuicClient {
        /// The server, one per address family; repeatable.
        #[arg(long = "target", required = true)]
        targets: Vec<SocketAddr>,
        /// Source addresses: `A,B,FIRST-LAST` (ranges vary in the last byte / last 16 bits).
        #[arg(long)]
        sources: String,
        /// The server's certificate (DER), the only trust anchor.
        #[arg(long)]
        ca: PathBuf,
        /// Connections to make (0: until --seconds).
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Stop starting connections after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// New connections per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Most connections in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Bytes sent on a stream after the handshake (echoed back).
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
        /// Every n-th connection's ClientHello spans two Initials (0: none).
        #[arg(long, default_value_t = 0)]
        split_hello_every: u64,
        /// Limit of one connection, milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

/// Runs a `scrubber lab` subcommand.
pub fn run(cmd: LabCommand) -> ExitCode {
    match cmd {
        LabCommand::Up { id, config, symmetric, vlan, gre, queues, no_daemon, no_services } => {
            let opts = LabOptions { id, symmetric, vlan, gre, config, owner_pid: None, queues };
            up(opts, !no_daemon, !no_services)
        }
        LabCommand::Status { id, json } => match instance::status(&id) {
            Ok(s) if json => {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(s) => {
                print_status(&s);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        LabCommand::Down { id } => match instance::down(&id) {
            Ok(r) => {
                if r.namespaces.is_empty() && !r.state_removed {
                    println!("lab {id}: nothing to remove");
                } else {
                    println!(
                        "lab {id}: removed {} namespaces, stopped {} processes{}",
                        r.namespaces.len(),
                        r.processes.len(),
                        if r.state_removed { ", removed the state directory" } else { "" }
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        LabCommand::Run { scenario, seconds, rate, queues, json, symmetric, config, id, gen_core } => {
            let queues = queues.unwrap_or_else(|| scenario.default_queues());
            let o = RunOptions { id, scenario, seconds, rate, symmetric, config, gen_core, queues };
            lab_run(&o, json)
        }
        LabCommand::Bench {
            json,
            config,
            id,
            gen_core,
            throughput: true,
            sizes,
            trial_seconds,
            max_loss,
            resolution,
            queues,
            gen_cores,
            profile,
            ..
        } => {
            let o = ThroughputOptions {
                id,
                sizes,
                trial_seconds,
                max_loss,
                resolution,
                config,
                gen_core,
                queues,
                gen_cores,
                profile,
            };
            lab_throughput(&o, json)
        }
        LabCommand::Bench { queues, gen_cores, profile, .. }
            if queues != 1 || !gen_cores.is_empty() || profile != "udp" =>
        {
            fail("--queues, --gen-cores and --profile go with --throughput")
        }
        LabCommand::Bench { rate, seconds, rounds, json, config, id, gen_core, .. } => {
            let o = BenchOptions { id, rate, seconds, rounds, config, gen_core };
            lab_bench(&o, json)
        }
        LabCommand::UdpEcho { binds } => match services::udp_echo(&binds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        LabCommand::UdpProbe { target, sources, count, rate, wait_ms, payload } => {
            let sources = match services::parse_sources(&sources) {
                Ok(s) => s,
                Err(e) => return fail(format!("--sources: {e}")),
            };
            let o =
                ProbeOptions { target, sources, count, rate_pps: rate, wait: Duration::from_millis(wait_ms), payload };
            // SIGTERM or Ctrl-C: stop sending, collect the answers, report.
            let stop = stop_flag().unwrap_or_else(|_| Arc::new(AtomicBool::new(false)));
            match services::udp_probe_until(&o, &stop) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        LabCommand::QuicServer { binds, cert_out } => match quic::quic_server(&quic::ServerOptions { binds, cert_out })
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        LabCommand::QuicClient {
            targets,
            sources,
            ca,
            count,
            seconds,
            rate,
            concurrency,
            bytes,
            split_hello_every,
            timeout_ms,
        } => {
            let sources = match services::parse_sources(&sources) {
                Ok(s) => s,
                Err(e) => return fail(format!("--sources: {e}")),
            };
            let o = quic::ClientOptions {
                targets,
                sources,
                ca,
                count,
                duration: seconds.map(Duration::from_secs_f64),
                rate,
                concurrency,
                bytes,
                split_hello_every,
                timeout: Duration::from_millis(timeout_ms),
            };
            match quic::quic_client(&o) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Ctrl-C and SIGTERM set the returned flag instead of killing the process, so a run can
/// remove what it made.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(stop)
}

fn finish<T>(result: Result<T, instance::LabError>, stop: &AtomicBool, print: impl FnOnce(T)) -> ExitCode {
    match result {
        Ok(r) => {
            print(r);
            ExitCode::SUCCESS
        }
        Err(e) if stop.load(Ordering::Relaxed) => {
            eprintln!("interrupted ({e}); the lab was removed");
            ExitCode::from(130)
        }
        Err(e) => fail(e),
    }
}

/// Runs a lab job that reports: progress lines on stdout (stderr with `json`, so stdout carries
/// only the JSON), then the report as a table (`format`) or as JSON. Ctrl-C removes the lab.
fn report_job<R: serde::Serialize>(
    json: bool,
    job: impl FnOnce(&Path, &Arc<AtomicBool>, &mut dyn std::io::Write) -> Result<R, instance::LabError>,
    format: impl FnOnce(&R) -> String,
) -> ExitCode {
    let bin = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot find the scrubber binary: {e}")),
    };
    let stop = match stop_flag() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let result = if json { job(&bin, &stop, &mut std::io::stderr()) } else { job(&bin, &stop, &mut std::io::stdout()) };
    finish(result, &stop, |r| {
        if json {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        } else {
            print!("{}", format(&r));
        }
    })
}

fn lab_run(o: &RunOptions, json: bool) -> ExitCode {
    report_job(json, |bin, stop, live| run::run(o, bin, stop, live), run::format_report)
}

fn lab_bench(o: &BenchOptions, json: bool) -> ExitCode {
    report_job(json, |bin, stop, live| bench::run(o, bin, stop, live), bench::format_report)
}

fn lab_throughput(o: &ThroughputOptions, json: bool) -> ExitCode {
    if let Err(e) = o.validate() {
        return fail(e);
    }
    report_job(json, |bin, stop, live| throughput::run(o, bin, stop, live), throughput::format_report)
}

fn up(opts: LabOptions, daemon: bool, services: bool) -> ExitCode {
    let id = opts.id.clone();
    let bin = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot find the scrubber binary: {e}")),
    };
    let mut lab = match Lab::up(opts) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    // Any error below drops `lab`, which removes everything made so far.
    let started = (|| {
        if services {
            lab.start_http()?;
            lab.start_udp_echo(&bin)?;
        }
        if daemon {
            lab.start_daemon(&bin, &[])?;
        }
        Ok::<(), instance::LabError>(())
    })();
    if let Err(e) = started {
        return fail(e);
    }
    let state = lab.keep();
    print_status(&state);
    println!(
        "\nlab {id} is up; `scrubber lab status --id {id} --json` for details, `scrubber lab down --id {id}` to remove it"
    );
    ExitCode::SUCCESS
}

fn print_status(s: &LabState) {
    let o = &s.options;
    let mut mode = vec![if o.symmetric { "symmetric" } else { "asymmetric" }.to_string()];
    let how = |v: Option<String>| v.map(|v| format!(" ({})", v.trim_matches('"'))).unwrap_or_default();
    if let Some(v) = o.vlan {
        mode.push(format!("vlan {v}{}", how(s.vlan_impl.and_then(|i| serde_json::to_string(&i).ok()))));
    }
    if o.gre {
        mode.push(format!("gre{}", how(s.gre_impl.and_then(|i| serde_json::to_string(&i).ok()))));
    }
    println!("lab {} ({}): {}", s.id, mode.join(", "), s.status);
    println!("{:<9} {:<18} {:<10} {:<18} {:<20} MAC", "ROLE", "NAMESPACE", "INTERFACE", "IPV4", "IPV6");
    for h in &s.hosts {
        for i in &h.interfaces {
            let dash = || "-".to_string();
            let vlan = i.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
            println!(
                "{:<9} {:<18} {:<10} {:<18} {:<20} {}{vlan}",
                h.role.name(),
                h.namespace,
                i.interface,
                i.ipv4.clone().unwrap_or_else(dash),
                i.ipv6.clone().unwrap_or_else(dash),
                i.mac.clone().unwrap_or_else(dash)
            );
            for e in &i.extra {
                println!("{:<9} {:<18} {:<10} + {e}", "", "", "");
            }
        }
        if !h.loopback.is_empty() {
            println!("{:<9} {:<18} {:<10} {}", h.role.name(), h.namespace, "lo", h.loopback.join(" "));
        }
    }
    for (name, svc) in
        [("http", &s.http), ("udp-echo", &s.udp_echo), ("quic", &s.quic), ("gre endpoint", &s.gre_endpoint)]
    {
        if let Some(svc) = svc {
            println!(
                "{name}: {} in {} (pid {}), log {}",
                svc.listen.join(" "),
                svc.namespace,
                svc.pid.unwrap_or(0),
                svc.log.display()
            );
        }
    }
    let d = &s.daemon;
    let pid = d.pid.map_or("not running".to_string(), |p| format!("pid {p}"));
    println!("daemon: {pid} in {}; config {}", d.namespace, d.config.display());
    println!(
        "  control socket {}; metrics {} (inside {}); log {}",
        d.control_socket.display(),
        d.metrics,
        d.namespace,
        d.log.display()
    );
    println!("counters: ip netns exec {} nft -j list counters table {}", s.counters.namespace, s.counters.table);
}
