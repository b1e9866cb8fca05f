//! `scrubber run --config FILE`: the daemon.
//!
//! Start-up: check privileges and AF_XDP, validate every interface and queue, learn MACs and the
//! appliance's own addresses, compile the policy, attach (or take over) the XDP program on each
//! ingress interface and fill its prefix maps, open one UMEM and socket pair per queue, register
//! the sockets, and start one pinned worker thread each. Then serve the control socket until
//! SIGINT/SIGTERM, when workers stop, sockets are unregistered and the programs detached.
//! A crash or `kill -9` leaves the programs attached: their queues fall to the fail mode until a
//! restart takes them over.

pub mod capture;
mod commands;
mod control_socket;
mod metrics;
pub mod rates;
pub mod system;

use control::config::{
    AttachMode as CfgAttach, BindMode as CfgBind, FailMode, ForwardModeConfig, LogFormat, UmemPagesConfig,
};
use control::runtime::PolicyState;
use control::{Config, SystemFacts, pipeline_config};
use dataplane::policy::{self, Policy, PolicyCell};
use dataplane::worker::{self, WorkerShared};
use dataplane::xsk::prog::{AttachMode, Class, XdpProgram};
use dataplane::xsk::socket::{BindMode, Io, UmemPages, XskSettings};
use dataplane::{Now, Pipeline};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use system::StartError;
use tracing::{error, info, warn};

/// One running worker, as the control plane sees it.
#[derive(Debug)]
pub struct WorkerInfo {
    /// Ingress interface.
    pub interface: String,
    /// Ingress queue.
    pub queue: u32,
    /// Pinned core.
    pub core: Option<usize>,
    /// Egress interface and queue.
    pub egress: Option<(String, u32)>,
    /// Zero-copy bind.
    pub zero_copy: bool,
    /// Its UMEM is on huge pages.
    pub umem_huge_pages: bool,
    /// Shared counters and stop flag.
    pub shared: Arc<WorkerShared>,
    /// The ingress socket, to take out of the XSKMAP when the worker stalls and put back.
    pub ingress_fd: std::os::fd::RawFd,
    /// Symmetric mode: the egress queue and socket the return-direction program steers the
    /// origin's answers to, taken out and put back with the ingress one.
    pub return_socket: Option<(u32, std::os::fd::RawFd)>,
    /// Set by the watchdog while the worker makes no progress (its queue is in fail mode).
    pub stalled: AtomicBool,
}

/// Everything the control socket reads.
#[derive(Debug)]
pub struct Daemon {
    /// Config file.
    pub config_path: PathBuf,
    /// Config as loaded.
    pub config: Config,
    /// Published policy.
    pub cell: Arc<PolicyCell>,
    /// XDP programs, one per ingress interface.
    pub programs: Vec<XdpProgram>,
    /// Workers.
    pub workers: Vec<WorkerInfo>,
    /// Start time.
    pub started: Instant,
    /// The running policy (document + runtime overlay); the control plane's lock, never taken
    /// by a worker.
    pub policy: Mutex<PolicyState>,
    /// The appliance's own addresses (kept in the XDP maps as local).
    pub own: Vec<dataplane::Addr>,
    /// Counter history for rates.
    pub rates: rates::Rates,
    /// Cross-worker tables (and the capture slot workers read).
    pub shared: Arc<dataplane::pipeline::Shared>,
    /// The running capture, if any.
    pub captures: capture::Captures,
    /// Workers run the minimal forwarder (MAC rewrite only, no pipeline): a benchmark floor.
    pub forwarder_only: bool,
    /// What the XDP programs' prefix maps hold (`None`: unknown after a failed update, so the
    /// next publish rewrites them).
    pub xdp_synced: Mutex<Option<Vec<(dataplane::Cidr, Class)>>>,
    /// Fault injection (`fault_xdp_sync`): how many more XDP map updates fail once written.
    pub fault_xdp_syncs: std::sync::atomic::AtomicU32,
}

impl Daemon {
    /// Sum of what every worker last published.
    pub fn total_stats(&self) -> dataplane::stats::Stats {
        let mut total = dataplane::stats::Stats::default();
        for w in &self.workers {
            match w.shared.report.lock() {
                Ok(r) => total.add(&r.stats),
                Err(p) => total.add(&p.into_inner().stats),
            }
        }
        total
    }

    /// Publishes a compiled snapshot to the XDP maps and the workers' cell (taken at their next
    /// batch boundary), in the order that never steers a frame to a worker whose policy does not
    /// protect its destination: prefixes that go away leave the XDP maps first, then the workers
    /// get the snapshot, then new prefixes enter the maps. A change that leaves the prefixes as
    /// they are (lists, rules, bypass) makes no XDP update at all.
    ///
    /// All or nothing: when an XDP map update fails, the snapshot that was running is put back
    /// and the maps are rewritten as they were, and the error says so. `publish_change` restores
    /// the caller's policy state as well.
    fn publish(&self, policy: Policy) -> Result<u64, String> {
        let classes = xdp_classes(&policy, &self.own);
        let mut synced = self.xdp_synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = policy.generation;
        if synced.as_ref().is_some_and(|s| s.len() == classes.len() && s.iter().all(|c| classes.contains(c))) {
            self.cell.store(Arc::new(policy));
            return Ok(generation);
        }
        let sync = |wanted: &[(dataplane::Cidr, Class)]| -> Result<(), String> {
            for prog in &self.programs {
                prog.sync_classes(wanted)
                    .map_err(|e| format!("updating the XDP prefix map of {}: {e}", prog.ifname()))?;
            }
            if self.fault_xdp_syncs.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                return Err("updating the XDP prefix maps: failed by fault injection, after writing them".into());
            }
            Ok(())
        };
        // What the maps held before this change (`None`: unknown), to put back on failure.
        let before = synced.take();
        let running = self.cell.load().generation;
        let put_back = |synced: &mut Option<Vec<_>>, error: String| -> String {
            let Some(old) = &before else {
                return format!("{error}; the change is not applied, generation {running} runs");
            };
            match sync(old) {
                Ok(()) => {
                    *synced = Some(old.clone());
                    format!("{error}; the change is rolled back, generation {running} runs")
                }
                // Left unknown (`None`): the next publish rewrites the maps whole.
                Err(again) => format!(
                    "{error}; the change is not applied, generation {running} runs, but putting the XDP prefix maps \
                     back failed too ({again}): they are rewritten at the next change"
                ),
            }
        };
        if let Some(old) = &before {
            let kept: Vec<_> = old.iter().filter(|c| classes.contains(c)).copied().collect();
            if kept.len() != old.len()
                && let Err(e) = sync(&kept)
            {
                return Err(put_back(&mut synced, e));
            }
        }
        let previous = self.cell.swap(Arc::new(policy));
        if let Err(e) = sync(&classes) {
            // The running snapshot first, so that no worker runs the refused change while the
            // maps are put back.
            self.cell.store(previous);
            return Err(put_back(&mut synced, e));
        }
        *synced = Some(classes);
        Ok(generation)
    }

    /// `publish` for a change of `state`, all or nothing for the state too: when publishing fails,
    /// `state` goes back to `saved`, the copy taken before the change (`None`: nothing to restore).
    pub fn publish_change(
        &self,
        state: &mut PolicyState,
        saved: Option<PolicyState>,
        policy: Policy,
    ) -> Result<u64, String> {
        let published = self.publish(policy);
        if let (Err(_), Some(saved)) = (&published, saved) {
            *state = saved;
        }
        published
    }
}

static CLOCK_ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Shares of the shared tables swept for expired entries, one a second.
const SWEEP_PARTS: usize = 60;

/// The clock workers read once per batch.
///
/// One clock read: wall-clock seconds are the monotonic time plus an offset the daemon re-anchors
/// to the system clock once a second (`anchor_wall_clock`), so a stepped system clock is followed
/// within a second without a second clock read per batch.
pub fn now() -> Now {
    let origin = *CLOCK_ORIGIN.get_or_init(Instant::now);
    let mono_ns = origin.elapsed().as_nanos() as u64;
    let mut offset = WALL_OFFSET_NS.load(Ordering::Relaxed);
    if offset == 0 {
        offset = anchor_wall_clock();
    }
    Now { mono_ns, wall_secs: (offset.saturating_add(mono_ns as i64) / 1_000_000_000).max(0) as u64 }
}

/// Wall-clock time minus monotonic time, ns (0 until first anchored).
static WALL_OFFSET_NS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Re-reads the system clock and stores its offset from the monotonic clock; returns it.
pub fn anchor_wall_clock() -> i64 {
    let origin = *CLOCK_ORIGIN.get_or_init(Instant::now);
    let mono = origin.elapsed().as_nanos() as i64;
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let offset = (wall - mono).max(1);
    WALL_OFFSET_NS.store(offset, Ordering::Relaxed);
    offset
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: a journal or a log file gets plain text an operator can grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// The daemon's entry point.
pub fn run(
    path: &Path,
    log_format: Option<LogFormat>,
    control_socket: Option<PathBuf>,
    forwarder_only: bool,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(log_format.unwrap_or(config.daemon.log_format));
    match start(path, config, control_socket, forwarder_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prefixes the XDP program must know: protected ones, and the appliance's own addresses.
pub fn xdp_classes(policy: &Policy, own: &[dataplane::Addr]) -> Vec<(dataplane::Cidr, Class)> {
    let mut v: Vec<_> = policy.prefixes.iter().map(|p| (p.cidr, Class::Protected)).collect();
    v.extend(own.iter().map(|&a| (dataplane::Cidr::host(a), Class::Local)));
    v
}

fn start(
    path: &Path,
    mut config: Config,
    control_socket: Option<PathBuf>,
    forwarder_only: bool,
) -> Result<(), StartError> {
    system::preflight()?;
    // Before anything is attached: a stop requested while starting is then a clean shutdown as
    // soon as the start completes, not a kill that leaves the programs behind.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| StartError(format!("signal handler: {e}")))?;
    }
    if forwarder_only && config.forward.mode != ForwardModeConfig::L2 {
        return Err(StartError("--forwarder-only rewrites MAC addresses only: it needs forward.mode = \"l2\"".into()));
    }
    if let Some(p) = control_socket {
        config.daemon.control_socket = p;
    }
    // Refuse a path we must not replace before touching any interface.
    control_socket::prepare_path(&config.daemon.control_socket)
        .map_err(|e| StartError(format!("daemon.control_socket: {e}")))?;
    if config.dataplane.queues.is_empty() {
        return Err(StartError(format!("{}: dataplane.queues: no queue to scrub", path.display())));
    }
    for q in &config.dataplane.queues {
        system::check_queue(&q.interface, q.queue)?;
    }
    // The program steers by RX queue: what RSS hashes to a queue without a worker gets the fail
    // mode, silently but for the `no_socket` counter.
    let mut interfaces: Vec<&str> = config.dataplane.queues.iter().map(|q| q.interface.as_str()).collect();
    interfaces.sort_unstable();
    interfaces.dedup();
    for i in interfaces {
        let listed = config.dataplane.queues.iter().filter(|q| q.interface == i).count();
        let rx = system::rx_queues(i);
        if rx > listed {
            warn!(
                interface = i,
                rx_queues = rx,
                workers = listed,
                fail = ?config.dataplane.fail,
                "RX queues without a worker: traffic RSS puts there falls to the fail mode (list every queue, or reduce the channels with ethtool -L)"
            );
        }
    }
    let hairpin = config.forward.mode == ForwardModeConfig::Hairpin;
    let egress = if hairpin { None } else { config.forward.egress.clone() };
    if let Some(e) = &egress {
        let tx = system::tx_queues(e);
        if tx == 0 {
            return Err(StartError(format!("egress interface {e} does not exist")));
        }
        for (i, q) in config.dataplane.queues.iter().enumerate() {
            let eq = q.egress_queue.unwrap_or(i as u32);
            if eq as usize >= tx {
                return Err(StartError(format!(
                    "egress interface {e} has {tx} TX queues; worker {i} needs queue {eq} (set dataplane.queues[{i}].egress_queue)"
                )));
            }
        }
    }

    // Facts: MACs, own addresses, next hop.
    let mac_if = egress.clone().unwrap_or_else(|| config.dataplane.queues[0].interface.clone());
    let egress_mac = system::mac_of(&mac_if)?;
    let own = system::own_addresses()?;
    let resolve = |mac: &str, ip: Option<&str>, key: &str| -> Result<Option<[u8; 6]>, StartError> {
        if mac != "auto" {
            return Ok(None);
        }
        let ip: IpAddr = ip
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| StartError(format!("forward.{key}_ip is required with {key}_mac = \"auto\"")))?;
        let mac = system::resolve_neighbour(ip, Duration::from_secs(3))?;
        info!(next_hop = %ip, mac = %fmt_mac(&mac), which = key, "resolved a next hop");
        Ok(Some(mac))
    };
    let f = &config.forward;
    let next_hop_mac = resolve(&f.next_hop_mac, f.next_hop_ip.as_deref(), "next_hop")?;
    let symmetric = f.symmetric && egress.is_some();
    // A return-direction program left by an earlier symmetric run that crashed steers the
    // origin's answers to sockets that no longer exist (dropped under fail = "closed"): this
    // daemon owns its egress interface, so it detaches it.
    if let Some(e) = &egress
        && !symmetric
        && !config.dataplane.queues.iter().any(|q| &q.interface == e)
    {
        match dataplane::xsk::prog::detach_scrubber_program(e) {
            Ok(Some(id)) => warn!(
                interface = e,
                program_id = id,
                "detached a scrubber XDP program an earlier run left on the egress interface, which this run \
                 does not use for the return direction"
            ),
            Ok(None) => {}
            Err(err) => warn!(
                interface = e,
                error = %err,
                "a scrubber XDP program may be left on the egress interface; detach it (ip link set dev <interface> xdp off)"
            ),
        }
    }
    let (return_src_mac, return_next_hop_mac) = if symmetric {
        let ingress_if = &config.dataplane.queues[0].interface;
        (
            Some(system::mac_of(ingress_if)?),
            resolve(&f.return_next_hop_mac, f.return_next_hop_ip.as_deref(), "return_next_hop")?,
        )
    } else {
        (None, None)
    };
    let syn_seed = system::random_seed()?;
    let mut syn_random = [0u8; 16];
    syn_random[..8].copy_from_slice(&syn_seed[0].to_le_bytes());
    syn_random[8..].copy_from_slice(&syn_seed[1].to_le_bytes());
    let facts = SystemFacts {
        egress_mac: Some(egress_mac),
        next_hop_mac,
        return_src_mac,
        return_next_hop_mac,
        own_addresses: own.clone(),
        syn_random,
        syn_previous: None,
        wall_secs: now().wall_secs,
        amp_previous: None,
    };
    let mut state = PolicyState::new(path, config.clone(), facts, 1);
    // Through the state, so that its list cache holds the list files from now on.
    let policy = state.compile(1).map_err(|e| StartError(e.to_string()))?;
    // A key changed by the first reload keeps this one valid for a period.
    state.facts.syn_previous = Some(policy.syn.clone());
    state.facts.amp_previous = Some(control::runtime::vector_names(&policy));
    let classes = xdp_classes(&policy, &own);
    let xdp_synced = Mutex::new(Some(classes.clone()));
    let macs = (policy.forward.next_hop_mac, policy.forward.src_mac);
    let cell = policy::cell(policy);

    // XDP programs.
    let attach = match config.dataplane.attach {
        CfgAttach::Auto => AttachMode::Auto,
        CfgAttach::Native => AttachMode::Native,
        CfgAttach::Generic => AttachMode::Generic,
    };
    let mut programs = StartingPrograms(Vec::new());
    for q in &config.dataplane.queues {
        if programs.0.iter().any(|p| p.ifname() == q.interface) {
            continue;
        }
        let prog = XdpProgram::attach(&q.interface, attach).map_err(|e| StartError(e.to_string()))?;
        prog.configure(config.dataplane.fail == FailMode::Open, false).map_err(|e| StartError(e.to_string()))?;
        prog.sync_classes(&classes).map_err(|e| StartError(e.to_string()))?;
        info!(
            interface = q.interface,
            mode = %prog.mode(),
            taken_over = prog.taken_over(),
            fail = ?config.dataplane.fail,
            prefixes = classes.len(),
            "XDP program attached"
        );
        programs.0.push(prog);
    }
    // Symmetric: the egress interface's program steers frames *from* protected prefixes (the
    // origin → client direction) to the workers' egress sockets.
    if symmetric && let Some(e) = &egress {
        let prog = XdpProgram::attach(e, attach).map_err(|err| StartError(err.to_string()))?;
        prog.configure(config.dataplane.fail == FailMode::Open, true).map_err(|err| StartError(err.to_string()))?;
        prog.sync_classes(&classes).map_err(|err| StartError(err.to_string()))?;
        info!(interface = e, mode = %prog.mode(), taken_over = prog.taken_over(), "XDP program attached (return direction)");
        programs.0.push(prog);
    }

    // Workers.
    let d = &config.dataplane;
    let settings = XskSettings {
        frames: d.frames,
        frame_size: d.frame_size,
        ring_size: d.ring_size,
        fill_size: d.fill_size,
        bind: match d.bind {
            CfgBind::Auto => BindMode::Auto,
            CfgBind::ZeroCopy => BindMode::ZeroCopy,
            CfgBind::Copy => BindMode::Copy,
        },
        batch: d.batch as usize,
        busy_poll_budget: d.busy_poll_budget,
        pages: match d.umem_pages {
            UmemPagesConfig::Auto => UmemPages::Auto,
            UmemPagesConfig::Huge => UmemPages::Huge,
            UmemPagesConfig::Small => UmemPages::Small,
        },
    };
    let n_workers = d.queues.len() as u32;
    let shared_config = dataplane::pipeline::SharedConfig {
        amp: control::amp::shared_config(path, &config.amp).map_err(|e| StartError(e.to_string()))?,
        quic: control::quic::shared_config(&config.quic),
        syn: control::syn::shared_config(path, &config.syn).map_err(|e| StartError(e.to_string()))?,
    };
    let seed = system::random_seed()?;
    let shared = Arc::new(dataplane::pipeline::Shared::new(shared_config, seed));
    let mut workers = Vec::new();
    let mut handles = Vec::new();
    for (i, q) in d.queues.iter().enumerate() {
        let egress_pair = egress.as_ref().map(|e| (e.clone(), q.egress_queue.unwrap_or(i as u32)));
        let io = system::retry_busy(Duration::from_secs(2), || {
            Io::open(&settings, (&q.interface, q.queue), egress_pair.as_ref().map(|(e, n)| (e.as_str(), *n)), symmetric)
        })
        .map_err(|e| StartError(e.to_string()))?;
        let prog = programs.0.iter().find(|p| p.ifname() == q.interface).expect("a program per ingress interface");
        prog.insert_socket(q.queue, io.ingress_fd()).map_err(|e| StartError(e.to_string()))?;
        let mut return_socket = None;
        if let (Some((e, eq)), Some(fd)) = (&egress_pair, io.egress_fd())
            && symmetric
            && let Some(ret) = programs.0.iter().find(|p| p.ifname() == e)
        {
            ret.insert_socket(*eq, fd).map_err(|err| StartError(err.to_string()))?;
            return_socket = Some((*eq, fd));
        }
        let shared_worker = Arc::new(WorkerShared::default());
        let mut pipeline_cfg = pipeline_config(&config, n_workers);
        pipeline_cfg.seed = seed[3] ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let pipeline = Pipeline::with_shared(cell.clone(), pipeline_cfg, shared.clone());
        info!(
            interface = q.interface,
            queue = q.queue,
            core = ?q.core,
            egress = ?egress_pair,
            zero_copy = io.zero_copy(),
            umem_huge_pages = io.huge_pages(),
            "worker bound"
        );
        workers.push(WorkerInfo {
            interface: q.interface.clone(),
            queue: q.queue,
            core: q.core,
            egress: egress_pair,
            zero_copy: io.zero_copy(),
            umem_huge_pages: io.huge_pages(),
            shared: shared_worker.clone(),
            ingress_fd: io.ingress_fd(),
            return_socket,
            stalled: AtomicBool::new(false),
        });
        let core = q.core;
        let name = format!("w-{}-{}", q.interface, q.queue);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                if let Some(c) = core
                    && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
                {
                    warn!(core = c, "could not pin the worker");
                }
                if forwarder_only {
                    worker::run_minimal(io, macs.0, macs.1, shared_worker, now);
                } else {
                    worker::run(io, pipeline, shared_worker, now);
                }
            })
            .map_err(|e| StartError(format!("cannot start a worker thread: {e}")))?;
        handles.push(handle);
    }

    let daemon = Arc::new(Daemon {
        config_path: path.to_path_buf(),
        config,
        cell,
        programs: programs.into_inner(),
        workers,
        started: Instant::now(),
        policy: Mutex::new(state),
        own,
        rates: rates::Rates::default(),
        shared,
        captures: capture::Captures::default(),
        forwarder_only,
        xdp_synced,
        fault_xdp_syncs: std::sync::atomic::AtomicU32::new(0),
    });
    if forwarder_only {
        warn!("forwarder only: workers rewrite MAC addresses and forward everything, unchecked (a benchmark floor)");
    }

    // Serve the socket once every worker runs: a client that can connect sees a scrubbing daemon.
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.workers.iter().any(|w| !w.shared.running.load(Ordering::Acquire)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let late: Vec<String> = daemon
        .workers
        .iter()
        .filter(|w| !w.shared.running.load(Ordering::Acquire))
        .map(|w| format!("{}/{}", w.interface, w.queue))
        .collect();
    if !late.is_empty() {
        // Serving anyway: the watchdog takes a queue whose worker never beats out of the XDP
        // map, so it falls to the fail mode rather than to a socket nobody reads.
        warn!(queues = %late.join(", "), "workers not running 5 s after start; serving without them");
    }
    // The metrics listener before the control socket: a client that reaches the control socket
    // may take the daemon for started, so it opens last, when nothing else can fail.
    let serving = metrics::MetricsServer::start(&daemon).map_err(|e| StartError(e.to_string())).and_then(|m| {
        match control_socket::Server::start(daemon.clone()) {
            Ok(server) => Ok((server, m)),
            Err(e) => {
                if let Some(m) = m {
                    m.stop();
                }
                Err(StartError(e.to_string()))
            }
        }
    });
    let (server, metrics) = match serving {
        Ok(s) => s,
        Err(e) => {
            stop_workers(&daemon, handles);
            detach_programs(&daemon, false);
            return Err(e);
        }
    };
    info!(
        socket = %daemon.config.daemon.control_socket.display(),
        workers = daemon.workers.len(),
        // Tables are advised onto transparent huge pages; 0 here means THP is off (`never`)
        // and lookups pay a TLB miss more often.
        huge_page_mib = dataplane::mem::huge_page_bytes().unwrap_or(0) >> 20,
        "scrubbing"
    );

    // Housekeeping: counter history for rates (every second), expiry of runtime list entries.
    let mut last_tick = Instant::now() - Duration::from_secs(1);
    let mut syn_active: std::collections::HashMap<dataplane::Cidr, bool> = std::collections::HashMap::new();
    let mut watchdog = Watchdog::new(&daemon);
    let mut ticks = 0usize;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        watchdog.check(&daemon);
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            anchor_wall_clock();
            // The shared tables keep expiry modulo 2^24 units: free what expired, a sixtieth of
            // each table a second, before it could read as live again.
            let clock = now();
            daemon.shared.amp.sweep(clock.mono_ns, ticks % SWEEP_PARTS, SWEEP_PARTS);
            daemon.shared.syn.verified.sweep(clock.mono_ns / 1_000_000_000, ticks % SWEEP_PARTS, SWEEP_PARTS);
            ticks += 1;
            daemon.rates.sample(&daemon.total_stats());
            watch_syn_auto(&daemon, &mut syn_active);
            // Publish under the policy lock, as commands do, so snapshots go out in order.
            if let Ok(mut state) = daemon.policy.lock() {
                let at = now().mono_ns;
                // A refused publish leaves the entries in the state, to expire again a second later.
                let saved = state.expiry_due(at).then(|| state.clone());
                match state.expire(at) {
                    Some(Ok((policy, expired))) => match daemon.publish_change(&mut state, saved, policy) {
                        Ok(g) => info!(generation = g, entries = %expired.join(", "), "runtime list entries expired"),
                        Err(e) => warn!("publishing after expiry: {e}"),
                    },
                    Some(Err(e)) => warn!("expiring runtime entries: {e}"),
                    None => {}
                }
            }
        }
    }
    info!("stopping");
    server.stop();
    if let Some(m) = metrics {
        m.stop();
    }
    stop_workers(&daemon, handles);
    let _ = capture::stop(&daemon, None);
    detach_programs(&daemon, true);
    Ok(())
}

/// The XDP programs of a start in progress. Dropped before the daemon owns them (the start
/// failed), it detaches those this start attached: left behind, a program would steer frames to
/// sockets that no longer exist, and with `fail = "closed"` drop every protected packet. One
/// taken over from an earlier run stays as it was found.
struct StartingPrograms(Vec<XdpProgram>);

impl StartingPrograms {
    fn into_inner(mut self) -> Vec<XdpProgram> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for StartingPrograms {
    fn drop(&mut self) {
        for prog in self.0.iter().filter(|p| !p.taken_over()) {
            match prog.detach() {
                Ok(()) => info!(interface = prog.ifname(), "XDP program detached: the start failed"),
                Err(e) => warn!(interface = prog.ifname(), "{e}"),
            }
        }
    }
}

/// Stops the workers and waits for them, up to `WORKER_STOP_WAIT`: a worker stuck in its loop
/// (what the watchdog is for) must not keep the shutdown from detaching the programs; it ends
/// with the process.
fn stop_workers(daemon: &Daemon, handles: Vec<std::thread::JoinHandle<()>>) {
    for w in &daemon.workers {
        w.shared.stop.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + WORKER_STOP_WAIT;
    while handles.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (w, h) in daemon.workers.iter().zip(handles) {
        if h.is_finished() {
            let _ = h.join();
        } else {
            warn!(interface = w.interface, queue = w.queue, "worker did not stop; shutting down without it");
        }
    }
}

/// How long a shutdown waits for the workers to stop.
const WORKER_STOP_WAIT: Duration = Duration::from_secs(3);

/// Takes the workers' sockets out of the programs and detaches them (`all`: also those taken
/// over at start, as a clean shutdown does; otherwise, for a start that failed, only those this
/// run attached).
fn detach_programs(daemon: &Daemon, all: bool) {
    for (w, prog) in daemon
        .workers
        .iter()
        .flat_map(|w| daemon.programs.iter().filter(move |p| p.ifname() == w.interface).map(move |p| (w, p)))
    {
        let _ = prog.remove_socket(w.queue);
    }
    for prog in daemon.programs.iter().filter(|p| all || !p.taken_over()) {
        let name = prog.ifname().to_string();
        match prog.detach() {
            Ok(()) if all => info!(interface = name, "XDP program detached"),
            Ok(()) => info!(interface = name, "XDP program detached: the start failed"),
            Err(e) => warn!(interface = name, "{e}"),
        }
    }
}

/// Per-queue watchdog: a worker whose loop makes no progress for `dataplane.watchdog_ms` has its
/// socket taken out of the XDP program's socket map, so its queue falls to the fail mode (open:
/// the kernel forwards; closed: dropped) instead of piling up behind a dead loop; `health`
/// reports it. When the loop moves again the socket goes back in.
struct Watchdog {
    last: Vec<(u64, Instant)>,
    limit: Duration,
}

impl Watchdog {
    fn new(d: &Daemon) -> Watchdog {
        let now = Instant::now();
        Watchdog {
            last: d.workers.iter().map(|w| (w.shared.heartbeat.load(Ordering::Relaxed), now)).collect(),
            limit: Duration::from_millis(d.config.dataplane.watchdog_ms),
        }
    }

    fn check(&mut self, d: &Daemon) {
        let now = Instant::now();
        for (w, (beat, seen)) in d.workers.iter().zip(self.last.iter_mut()) {
            let current = w.shared.heartbeat.load(Ordering::Relaxed);
            let Some(prog) = d.programs.iter().find(|p| p.ifname() == w.interface) else { continue };
            // Symmetric mode: the origin's answers reach the worker through the egress
            // interface's program, and must fall to the fail mode with the rest of its queue.
            let ret = w.return_socket.and_then(|(queue, fd)| {
                let e = w.egress.as_ref().map(|(e, _)| e.as_str())?;
                d.programs.iter().find(|p| p.ifname() == e).map(|p| (p, queue, fd))
            });
            if current != *beat {
                *beat = current;
                *seen = now;
                if w.stalled.swap(false, Ordering::AcqRel) {
                    let back = prog.insert_socket(w.queue, w.ingress_fd).and_then(|()| match ret {
                        Some((p, queue, fd)) => p.insert_socket(queue, fd),
                        None => Ok(()),
                    });
                    match back {
                        Ok(()) => info!(
                            interface = w.interface,
                            queue = w.queue,
                            "worker progressing again; queue scrubbed again"
                        ),
                        Err(e) => warn!(interface = w.interface, queue = w.queue, "re-registering the socket: {e}"),
                    }
                }
            } else if now.duration_since(*seen) >= self.limit && !w.stalled.swap(true, Ordering::AcqRel) {
                let _ = prog.remove_socket(w.queue);
                if let Some((p, queue, _)) = ret {
                    let _ = p.remove_socket(queue);
                }
                error!(
                    interface = w.interface,
                    queue = w.queue,
                    stalled_ms = now.duration_since(*seen).as_millis() as u64,
                    fail = ?d.config.dataplane.fail,
                    "worker stalled; its queue falls to the fail mode"
                );
            }
        }
    }
}

/// Lets quiet `auto` prefixes switch off (workers only evaluate when SYNs arrive) and logs every
/// switch of SYN authentication.
fn watch_syn_auto(d: &Daemon, seen: &mut std::collections::HashMap<dataplane::Cidr, bool>) {
    let policy = d.cell.load();
    let now_ns = now().mono_ns;
    for p in &policy.prefixes {
        let profile = &policy.profiles[usize::from(p.profile)];
        let dataplane::syn::When::Auto(t) = profile.syn.when else { continue };
        let _ = d.shared.syn.auto.evaluate(p.cidr, now_ns, &t);
        let Some(status) = d.shared.syn.auto.status(p.cidr) else { continue };
        let was = seen.insert(p.cidr, status.active).unwrap_or(false);
        if was != status.active {
            info!(
                prefix = %p.cidr,
                syn_pps = status.syn_pps,
                state = if status.active { "on" } else { "off" },
                "SYN authentication switched"
            );
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
