//! Building, running and removing one lab. [`Lab`] is also the cleanup guard: dropping it (on
//! an error while building, at the end of a test, or while a panic unwinds) removes every
//! namespace, veth, process and state file the lab made, unless [`Lab::keep`] handed it over to
//! `scrubber lab down`. [`down`] removes a lab from its id alone (by namespace name prefix and
//! state directory), so it works after a crash of whatever built it.

use super::cmd::{Cmd, CmdError};
use super::counters::{self, Counters};
use super::services::{HELLO_BODY, HTTP_SERVER_PY};
use super::state::{CountersInfo, DaemonInfo, LabState, STATE_ROOT, ServiceInfo, state_dir};
use super::topo::{
    GreImpl, HTTP_PORT, LabOptions, ORIGIN_O0_V4, ORIGIN_V4, ORIGIN_V6, Plan, Role, SCRUB_OUT0_V4, UDP_ECHO_PORT,
    UNPROTECTED_V4, UNPROTECTED_V6, VlanImpl, ns_name, ns_prefix,
};
use super::{config, topo};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An external command failed (the message has its command line and stderr).
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not running as root.
    #[error("the lab needs root (network namespaces, veth, nftables): run as root or with sudo")]
    NotRoot,
    /// Something with this id already exists.
    #[error("lab {0} is already up (or left over): run `scrubber lab down --id {0}` first")]
    AlreadyUp(String),
    /// No lab with this id.
    #[error("no lab {0} is up (no {STATE_ROOT}/{0}/state.json)")]
    NotUp(String),
    /// Bad options or config.
    #[error("{0}")]
    Invalid(String),
    /// A process did not become ready.
    #[error("{what} did not become ready: {why}{log}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// `it exited`, or the limit that passed.
        why: String,
        /// The tail of its log, prefixed with a newline.
        log: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io { path: path.to_path_buf(), source }
}

/// Whether the effective user is root (read from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(s) => s.rsplit_once(')').map(|(_, rest)| rest.trim_start()).is_some_and(|r| !r.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Cmd::new("kill").args(&[format!("-{sig}"), pid.to_string()]).timeout(Duration::from_secs(2)).run();
}

/// Sends SIGTERM to each pid, waits up to `grace` for them to go, then SIGKILLs the rest.
pub fn terminate(pids: &[u32], grace: Duration) {
    let me = std::process::id();
    let pids: Vec<u32> = pids.iter().copied().filter(|p| *p != me && *p > 1).collect();
    for p in &pids {
        signal(*p, "TERM");
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for p in pids.iter().filter(|p| pid_alive(**p)) {
        signal(*p, "KILL");
    }
}

/// Every network namespace whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Result<Vec<String>, CmdError> {
    let out = Cmd::new("ip").args(&["netns", "list"]).run()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect())
}

/// The namespaces of lab `id` that exist now.
pub fn lab_namespaces(id: &str) -> Result<Vec<String>, CmdError> {
    namespaces_with_prefix(&ns_prefix(id))
}

/// What [`down`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DownReport {
    /// Lab id.
    pub id: String,
    /// Namespaces deleted (their veth, VLAN and GRE devices and XDP programs go with them).
    pub namespaces: Vec<String>,
    /// Processes that were running in them and were stopped.
    pub processes: Vec<u32>,
    /// Whether a state directory was removed.
    pub state_removed: bool,
}

/// Removes lab `id`: stops every process in its namespaces (SIGTERM, then SIGKILL after 5 s),
/// deletes the namespaces found by name prefix `scrb<ID>-`, removes `/run/scrubber-lab/<id>/`.
/// Idempotent; needs no state file; reports what it removed.
pub fn down(id: &str) -> Result<DownReport, LabError> {
    topo::validate_id(id).map_err(LabError::Invalid)?;
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    let mut report = DownReport { id: id.to_string(), ..DownReport::default() };
    let namespaces = lab_namespaces(id)?;
    for ns in &namespaces {
        if let Ok(out) = Cmd::new("ip").args(&["netns", "pids", ns]).run() {
            report.processes.extend(out.stdout.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    report.processes.sort_unstable();
    report.processes.dedup();
    terminate(&report.processes, Duration::from_secs(5));
    let mut first_err = None;
    for ns in &namespaces {
        match Cmd::new("ip").args(&["netns", "del", ns]).run() {
            Ok(_) => report.namespaces.push(ns.clone()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let dir = state_dir(id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        report.state_removed = true;
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
}

/// What a lab could have left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Namespaces named `scrb<ID>-*`.
    pub namespaces: Vec<String>,
    /// The state directory, if it exists.
    pub state_dir: Option<PathBuf>,
    /// Links in the caller's namespace with a lab MAC (`02:5c:…`) and a lab interface name
    /// (the lab never creates any there; this is read-only).
    pub links: Vec<String>,
}

impl Leftovers {
    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.state_dir.is_none() && self.links.is_empty()
    }
}

/// Looks for anything lab `id` could have left behind.
pub fn leftovers(id: &str) -> Result<Leftovers, LabError> {
    let dir = state_dir(id);
    let out = Cmd::new("ip").args(&["-j", "link", "show"]).run()?;
    let links: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let names = ["c0", "a0", "e-c", "e-a", "e-s", "e-o", "in0", "out0", "o0", "r0"];
    let links = links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["address"].as_str().is_some_and(|a| a.starts_with("02:5c:")))
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| names.iter().any(|x| n.split('.').next() == Some(x)))
        .map(String::from)
        .collect();
    Ok(Leftovers { namespaces: lab_namespaces(id)?, state_dir: dir.exists().then_some(dir), links })
}

/// Removes ephemeral labs (made with `owner_pid`, i.e. by tests) whose owner process is gone:
/// what a killed test run leaves. Labs made by `scrubber lab up` have no owner and are kept.
pub fn sweep_orphans() -> Vec<DownReport> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else { return out };
    for e in entries.flatten() {
        let Some(id) = e.file_name().to_str().map(String::from) else { continue };
        if topo::validate_id(&id).is_err() {
            continue;
        }
        let owner = LabState::load(&id).ok().and_then(|s| s.options.owner_pid);
        if owner.is_some_and(|p| !pid_alive(p))
            && let Ok(r) = down(&id)
        {
            out.push(r);
        }
    }
    out
}

/// Lab `id`'s recorded state, with the daemon pid cleared if that process is gone.
pub fn status(id: &str) -> Result<LabState, LabError> {
    topo::validate_id(id).map_err(LabError::Invalid)?;
    let mut s = match LabState::load(id) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LabError::NotUp(id.to_string())),
        Err(e) => return Err(LabError::Io { path: super::state::state_file(id), source: e }),
    };
    if s.daemon.pid.is_some_and(|p| !pid_alive(p)) {
        s.daemon.pid = None;
    }
    Ok(s)
}

/// The userspace GRE endpoint (see [`Lab::start_gre_endpoint`]).
pub const GRE_TUN_PY: &str = include_str!("gre_tun.py");
/// tc programs that carry a link on a VLAN where the kernel has no 802.1Q devices.
pub const VLAN_BPF_C: &str = include_str!("vlan.bpf.c");

/// Whether the kernel can make a link of this kind: `ip -n NS link add ARGS` succeeds (and the
/// probe device `name` is deleted again) or fails with anything but "Unknown device type".
fn kernel_has(ns: &str, args: &[&str], name: &str) -> Result<bool, CmdError> {
    match Cmd::new("ip").args(&["-n", ns, "link", "add"]).args(args).run() {
        Ok(_) => {
            Cmd::new("ip").args(&["-n", ns, "link", "del", name]).run()?;
            Ok(true)
        }
        Err(CmdError::Failed { stderr, .. }) if stderr.contains("Unknown device type") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Builds the VLAN push (egress) and pop (ingress) tc programs for `vid` into `dir`.
fn compile_vlan_programs(dir: &Path, vid: u16) -> Result<(PathBuf, PathBuf), LabError> {
    let src = dir.join("vlan.bpf.c");
    std::fs::write(&src, VLAN_BPF_C).map_err(io(&src))?;
    let out = |name: &str| dir.join(format!("vlan{vid}-{name}.o"));
    // The kernel headers include <asm/types.h>, which Debian keeps under the multiarch directory;
    // clang's BPF target does not search it (the build scripts pass it for the same reason).
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for (name, push) in [("push", true), ("pop", false)] {
        let mut c = Cmd::new("clang").args(&["-O2", "-target", "bpf", &arch_include, &format!("-DVID={vid}")]);
        if push {
            c = c.arg("-DPUSH");
        }
        c.args(&["-c", &src.display().to_string(), "-o", &out(name).display().to_string()])
            .timeout(Duration::from_secs(60))
            .run()?;
    }
    Ok((out("push"), out("pop")))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() { String::new() } else { format!("\n--- {} (last lines) ---\n{tail}", path.display()) }
}

/// A lab that is up. Dropping it removes it (see the module docs).
#[derive(Debug)]
pub struct Lab {
    plan: Plan,
    state: LabState,
    children: Vec<(String, Child)>,
    keep: bool,
}

impl Lab {
    /// Builds the topology of `opts` (namespaces, veths with offloads off, VLAN/GRE devices,
    /// addresses, routes, sysctls, origin's counters) and generates the daemon config. Services
    /// and the daemon are started separately. On error, everything made so far is removed.
    pub fn up(opts: LabOptions) -> Result<Lab, LabError> {
        opts.validate().map_err(LabError::Invalid)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let id = opts.id.clone();
        let dir = state_dir(&id);
        if dir.exists() || !lab_namespaces(&id)?.is_empty() {
            return Err(LabError::AlreadyUp(id));
        }
        let source = opts.config.clone().unwrap_or_else(config::default_source);
        let source = std::fs::canonicalize(&source).unwrap_or(source);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Provisional (the kernel's features are probed once the namespaces exist).
        let plan = Plan::new(&opts, VlanImpl::Devices, GreImpl::Kernel);
        let scrub = plan.ns(Role::Scrub);
        let state = LabState {
            id: id.clone(),
            status: "building".into(),
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            options: opts.clone(),
            state_dir: dir.clone(),
            namespaces: plan.namespaces(),
            hosts: plan.hosts.clone(),
            vlan_impl: None,
            gre_impl: None,
            gre_endpoint: None,
            counters: CountersInfo {
                namespace: plan.ns(Role::Origin),
                table: format!("inet {}", counters::TABLE),
                interfaces: plan.origin_ingress(),
            },
            http: None,
            udp_echo: None,
            quic: None,
            daemon: DaemonInfo {
                namespace: scrub,
                config: dir.join("lab.toml"),
                source_config: source.clone(),
                control_socket: dir.join("control.sock"),
                metrics: String::new(),
                log: dir.join("daemon.log"),
                pid: None,
                command: Vec::new(),
            },
        };
        // From here on, dropping `lab` removes whatever exists.
        let mut lab = Lab { plan, state, children: Vec::new(), keep: false };
        lab.save()?;
        let config = config::generate(&source, &opts, &dir).map_err(LabError::Invalid)?;
        lab.state.daemon.metrics = control::Config::load(&config).map(|c| c.daemon.metrics).unwrap_or_default();
        lab.build()?;
        lab.state.status = "up".into();
        lab.save()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let opts = self.state.options.clone();
        let ns = |r: Role| ns_name(&opts.id, r);
        for n in self.plan.namespaces() {
            Cmd::new("ip").args(&["netns", "add", &n]).run()?;
        }
        for role in Role::ALL {
            Cmd::new("sysctl").arg("-qw").args(&Plan::base_sysctls(role)).netns(ns(role)).run()?;
        }
        for v in &self.plan.veths {
            // Made directly inside the namespaces: nothing ever appears in the caller's namespace.
            let q = v.queues.to_string();
            let queues: &[&str] =
                if v.queues > 1 { &["numtxqueues", q.as_str(), "numrxqueues", q.as_str()] } else { &[] };
            Cmd::new("ip")
                .args(&["-n", &ns(v.a), "link", "add", v.a_if, "address", &v.a_mac])
                .args(queues)
                .args(&["type", "veth", "peer", "name", v.b_if, "address", &v.b_mac])
                .args(queues)
                .args(&["netns", &ns(v.b)])
                .run()?;
        }
        // What this kernel offers decides how the VLAN and GRE variants are made.
        let vlan_impl = match opts.vlan {
            Some(_)
                if !kernel_has(
                    &ns(Role::Edge),
                    &["link", "e-s", "name", "vprobe", "type", "vlan", "id", "4094"],
                    "vprobe",
                )? =>
            {
                VlanImpl::TcBpf
            }
            _ => VlanImpl::Devices,
        };
        let gre_impl = if opts.gre
            && !kernel_has(
                &ns(Role::Edge),
                &["gprobe", "type", "gre", "local", "198.18.0.1", "remote", "198.18.0.2"],
                "gprobe",
            )? {
            GreImpl::Userspace
        } else {
            GreImpl::Kernel
        };
        self.plan = Plan::new(&opts, vlan_impl, gre_impl);
        self.state.hosts = self.plan.hosts.clone();
        self.state.counters.interfaces = self.plan.origin_ingress();
        self.state.vlan_impl = opts.vlan.map(|_| vlan_impl);
        self.state.gre_impl = opts.gre.then_some(gre_impl);
        self.save()?;

        let p = &self.plan;
        for (role, args) in &p.extra_links {
            Cmd::new("ip").args(&["-n", &p.ns(*role)]).args(args).run()?;
        }
        for v in &p.veths {
            for (role, dev) in [(v.a, v.a_if), (v.b, v.b_if)] {
                Cmd::new("ethtool")
                    .args(&["-K", dev, "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off"])
                    .args(&["txvlan", "off", "rxvlan", "off"])
                    .netns(p.ns(role))
                    .run()?;
            }
        }
        if let (Some(vid), false) = (opts.vlan, p.tc_vlan.is_empty()) {
            let (push, pop) = compile_vlan_programs(&self.state.state_dir, vid)?;
            for (role, dev) in &p.tc_vlan {
                let n = p.ns(*role);
                Cmd::new("tc").args(&["-n", &n, "qdisc", "add", "dev", dev, "clsact"]).run()?;
                for (hook, obj) in [("egress", &push), ("ingress", &pop)] {
                    Cmd::new("tc")
                        .args(&["-n", &n, "filter", "add", "dev", dev, hook, "bpf", "da", "obj"])
                        .args(&[&obj.display().to_string(), "sec", "tc"])
                        .run()?;
                }
            }
        }
        for role in Role::ALL {
            Cmd::new("sysctl").arg("-qw").args(&p.iface_sysctls(role)).netns(p.ns(role)).run()?;
        }
        for phase in [&p.addrs, &p.routes] {
            for (role, lines) in phase {
                let mut batch = lines.join("\n");
                batch.push('\n');
                Cmd::new("ip").args(&["-n", &p.ns(*role), "-batch", "-"]).stdin(batch).run()?;
            }
        }
        counters::load(&p.ns(Role::Origin), &counters::origin_ruleset(&self.state.counters.interfaces))?;
        if opts.gre && gre_impl == GreImpl::Userspace {
            let info =
                self.start_gre_endpoint(Role::Origin, "gre1", &ORIGIN_O0_V4.to_string(), &SCRUB_OUT0_V4.to_string())?;
            self.state.gre_endpoint = Some(info);
        }
        Ok(())
    }

    /// Starts a userspace GRE endpoint (`gre_tun.py`) on TUN device `dev` (which must exist) in
    /// `role`'s namespace: GRE from `remote` to `local` is decapsulated into `dev`, packets
    /// routed into `dev` leave encapsulated to `remote`. For kernels without ip_gre; tests also
    /// use it to play the scrubber's encapsulation.
    pub fn start_gre_endpoint(
        &mut self,
        role: Role,
        dev: &str,
        local: &str,
        remote: &str,
    ) -> Result<ServiceInfo, LabError> {
        let dir = self.dir().to_path_buf();
        let script = dir.join("gre_tun.py");
        std::fs::write(&script, GRE_TUN_PY).map_err(io(&script))?;
        let argv: Vec<String> = ["python3", "-u", &script.display().to_string(), dev, local, remote]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let log = dir.join(format!("gre-{}-{dev}.log", role.name()));
        let pid = self.spawn(&format!("gre {dev}"), role, &argv, &log)?;
        let log2 = log.clone();
        self.wait_ready(&format!("GRE endpoint {dev}"), pid, &log, Duration::from_secs(10), move || {
            std::fs::read_to_string(&log2).is_ok_and(|t| t.contains("gre endpoint"))
        })?;
        Ok(ServiceInfo {
            namespace: self.ns(role),
            pid: Some(pid),
            listen: vec![format!("gre {local} <- {remote}")],
            log,
            command: argv,
        })
    }

    fn save(&self) -> Result<(), LabError> {
        self.state.save().map_err(io(&super::state::state_file(&self.state.id)))
    }

    /// Instance id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Namespace of `role`.
    pub fn ns(&self, role: Role) -> String {
        ns_name(&self.state.id, role)
    }

    /// The recorded state (what `lab status --json` prints).
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The state directory (`/run/scrubber-lab/<id>`).
    pub fn dir(&self) -> &Path {
        &self.state.state_dir
    }

    /// The options it was built with.
    pub fn options(&self) -> &LabOptions {
        &self.state.options
    }

    /// Runs `argv` inside `role`'s namespace under `timeout`; success = exit 0.
    pub fn exec<S: AsRef<str>>(
        &self,
        role: Role,
        argv: &[S],
        timeout: Duration,
    ) -> Result<super::cmd::Output, CmdError> {
        super::cmd::exec_in(&self.ns(role), argv, timeout)
    }

    /// Reads origin's attack-marker and path counters.
    pub fn origin_counters(&self) -> Result<Counters, CmdError> {
        counters::read(&self.ns(Role::Origin), "inet", counters::TABLE)
    }

    /// Zeroes origin's counters.
    pub fn reset_origin_counters(&self) -> Result<(), CmdError> {
        counters::reset(&self.ns(Role::Origin), "inet", counters::TABLE)
    }

    pub(super) fn spawn(&mut self, name: &str, role: Role, argv: &[String], log: &Path) -> Result<u32, LabError> {
        let child = Cmd::from_argv(argv).netns(self.ns(role)).spawn_logged(log)?;
        let pid = child.id();
        self.children.push((name.to_string(), child));
        Ok(pid)
    }

    pub(super) fn wait_ready(
        &mut self,
        what: &str,
        pid: u32,
        log: &Path,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if !pid_alive(pid) || Instant::now() >= deadline {
                let why = if pid_alive(pid) { format!("no sign of it within {timeout:?}") } else { "it exited".into() };
                terminate(&[pid], Duration::from_secs(2));
                return Err(LabError::NotReady { what: what.to_string(), why, log: log_tail(log) });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts origin's HTTP server (python3 `http.server`) on port 80 of the protected and the
    /// unprotected service addresses, v4 and v6, serving `/hello.txt` ([`HELLO_BODY`]) and
    /// `/index.html`; returns once it listens.
    pub fn start_http(&mut self) -> Result<(), LabError> {
        let dir = self.dir().to_path_buf();
        let www = dir.join("www");
        std::fs::create_dir_all(&www).map_err(io(&www))?;
        for (name, body) in
            [("hello.txt", HELLO_BODY), ("index.html", "<html><body>scrubber lab origin</body></html>\n")]
        {
            let f = www.join(name);
            std::fs::write(&f, body).map_err(io(&f))?;
        }
        let script = dir.join("http_server.py");
        std::fs::write(&script, HTTP_SERVER_PY).map_err(io(&script))?;
        let addrs: Vec<IpAddr> = vec![ORIGIN_V4.into(), ORIGIN_V6.into(), UNPROTECTED_V4.into(), UNPROTECTED_V6.into()];
        let mut argv = vec!["python3".to_string(), "-u".into(), script.display().to_string()];
        argv.push(www.display().to_string());
        argv.push(HTTP_PORT.to_string());
        argv.extend(addrs.iter().map(|a| a.to_string()));
        let log = dir.join("http.log");
        let pid = self.spawn("http", Role::Origin, &argv, &log)?;
        let log2 = log.clone();
        self.wait_ready("origin HTTP server", pid, &log, Duration::from_secs(15), move || {
            std::fs::read_to_string(&log2).is_ok_and(|t| t.contains("listening on"))
        })?;
        self.state.http = Some(ServiceInfo {
            namespace: self.ns(Role::Origin),
            pid: Some(pid),
            listen: addrs.iter().map(|a| SocketAddr::new(*a, HTTP_PORT).to_string()).collect(),
            log,
            command: argv,
        });
        self.save()
    }

    /// Starts origin's UDP sequence service (`<bin> lab udp-echo`) on port 9000 of the service
    /// addresses; returns once it listens.
    pub fn start_udp_echo(&mut self, bin: &Path) -> Result<(), LabError> {
        let service = self.start_origin_service(bin, "udp-echo", UDP_ECHO_PORT, &[], "udp-echo: listening")?;
        self.state.udp_echo = Some(service);
        self.save()
    }

    /// Starts origin's QUIC echo service (`<bin> lab quic-server`) on port 443 of the service
    /// addresses; returns once it listens. Its certificate is [`Lab::quic_cert`].
    pub fn start_quic_server(&mut self, bin: &Path) -> Result<(), LabError> {
        let cert = self.quic_cert().display().to_string();
        let port = super::quic::QUIC_PORT;
        let service =
            self.start_origin_service(bin, "quic-server", port, &["--cert-out", &cert], super::quic::READY)?;
        self.state.quic = Some(service);
        self.save()
    }

    /// Runs `<bin> lab <name> --bind ADDR:port ... extra` in origin, bound to every service
    /// address, and waits for `ready` in its log.
    fn start_origin_service(
        &mut self,
        bin: &Path,
        name: &str,
        port: u16,
        extra: &[&str],
        ready: &'static str,
    ) -> Result<ServiceInfo, LabError> {
        let addrs: [IpAddr; 4] = [ORIGIN_V4.into(), ORIGIN_V6.into(), UNPROTECTED_V4.into(), UNPROTECTED_V6.into()];
        let listen: Vec<String> = addrs.iter().map(|a| SocketAddr::new(*a, port).to_string()).collect();
        let mut argv = vec![bin.display().to_string(), "lab".into(), name.to_string()];
        for l in &listen {
            argv.push("--bind".into());
            argv.push(l.clone());
        }
        argv.extend(extra.iter().map(|a| a.to_string()));
        let log = self.dir().join(format!("{name}.log"));
        let pid = self.spawn(name, Role::Origin, &argv, &log)?;
        let log2 = log.clone();
        self.wait_ready(&format!("origin {name} service"), pid, &log, Duration::from_secs(10), move || {
            std::fs::read_to_string(&log2).is_ok_and(|t| t.contains(ready))
        })?;
        Ok(ServiceInfo { namespace: self.ns(Role::Origin), pid: Some(pid), listen, log, command: argv })
    }

    /// Where origin's QUIC service writes its self-signed certificate (DER): the clients' trust anchor.
    pub fn quic_cert(&self) -> PathBuf {
        self.dir().join("quic-cert.der")
    }

    /// Starts the daemon in the scrub namespace: `ip netns exec scrb<ID>-scrub sh -c '<mount
    /// bpffs if missing>; exec "$@"' sh <bin> run --config /run/scrubber-lab/<id>/lab.toml
    /// <extra>`, logging to `daemon.log`; returns once its control socket accepts a connection.
    pub fn start_daemon(&mut self, bin: &Path, extra: &[String]) -> Result<(), LabError> {
        if self.state.daemon.pid.is_some_and(pid_alive) {
            return Err(LabError::Invalid(format!("lab {}: the daemon is already running", self.id())));
        }
        let d = &self.state.daemon;
        // A socket left by a killed daemon stays: the daemon replaces it (and refuses anything
        // else at that path).
        let sock = d.control_socket.clone();
        let mut argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            // `ip netns exec` gives the command a fresh /sys: mount bpffs in the same command (DESIGN §7).
            "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; exec \"$@\"".into(),
            "sh".into(),
            bin.display().to_string(),
            "run".into(),
            "--config".into(),
            d.config.display().to_string(),
        ];
        argv.extend(extra.iter().cloned());
        let log = d.log.clone();
        let pid = self.spawn("daemon", Role::Scrub, &argv, &log)?;
        self.state.daemon.pid = Some(pid);
        self.state.daemon.command = argv;
        self.save()?;
        let r = self.wait_ready("scrubber daemon (control socket)", pid, &log, Duration::from_secs(20), move || {
            // This daemon's socket, not a dying predecessor's: the listener's pid is ours.
            use std::os::fd::AsRawFd;
            std::os::unix::net::UnixStream::connect(&sock).ok().is_some_and(|s| {
                dataplane::xsk::sys::peer_credentials(s.as_raw_fd()).is_some_and(|c| c.pid == pid as i32)
            })
        });
        if r.is_err() {
            self.state.daemon.pid = None;
            self.save()?;
        }
        r
    }

    /// Stops the daemon: SIGTERM (a clean shutdown detaches XDP), SIGKILL after `grace`.
    pub fn stop_daemon(&mut self, grace: Duration) -> Result<(), LabError> {
        if let Some(pid) = self.state.daemon.pid.take() {
            terminate(&[pid], grace);
            self.reap();
        }
        self.save()
    }

    /// Kills the daemon with SIGKILL (a crash: XDP stays attached) and waits until it is gone.
    pub fn kill_daemon(&mut self) -> Result<(), LabError> {
        if let Some(pid) = self.state.daemon.pid.take() {
            signal(pid, "KILL");
            // Until it is reaped: its threads (and the sockets they hold) outlive the moment
            // its main thread turns zombie.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                self.reap();
                thread::sleep(Duration::from_millis(5));
            }
            self.reap();
        }
        self.save()
    }

    /// Collects children that have exited.
    fn reap(&mut self) {
        self.children.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_))));
    }

    /// The daemon's process id while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.state.daemon.pid.filter(|p| pid_alive(*p))
    }

    /// Sends one request to the daemon's control socket and returns its `result`.
    pub fn ctl(&self, cmd: &str, args: serde_json::Value) -> Result<serde_json::Value, LabError> {
        super::observe::ctl(&self.state.daemon.control_socket, cmd, args)
            .map_err(|e| LabError::Invalid(format!("control socket `{cmd}`: {e}")))
    }

    /// The daemon's counters now (they trail the traffic by up to 50 ms:
    /// [`super::observe::PUBLISH_SETTLE`]).
    pub fn scrub_stats(&self) -> Result<super::observe::ScrubStats, LabError> {
        self.ctl("stats", serde_json::json!({})).map(|v| super::observe::ScrubStats::from_json(&v))
    }

    /// Turns bypass on or off (forward everything unchecked).
    pub fn set_bypass(&self, on: bool) -> Result<(), LabError> {
        self.ctl("bypass", serde_json::json!({"on": on})).map(|_| ())
    }

    /// The command that runs the generator `spec` with binary `bin` in its namespace.
    pub fn gen_cmd(&self, bin: &Path, spec: &super::traffic::GenSpec) -> Cmd {
        Cmd::from_argv(&spec.argv(bin)).netns(self.ns(spec.role)).timeout(spec.limit())
    }

    /// Runs the generator to completion and returns its report.
    pub fn run_gen(&self, bin: &Path, spec: &super::traffic::GenSpec) -> Result<super::observe::GenReport, LabError> {
        let out = self.gen_cmd(bin, spec).run()?;
        super::observe::GenReport::parse(&out.stdout).map_err(LabError::Invalid)
    }

    /// Leaves the lab up for `scrubber lab down` (or a later [`down`]) and returns its state.
    pub fn keep(mut self) -> LabState {
        self.keep = true;
        self.state.clone()
    }

    /// Removes the lab now and reports what was removed.
    pub fn down(mut self) -> Result<DownReport, LabError> {
        self.keep = true;
        self.stop_children();
        down(&self.state.id)
    }

    fn stop_children(&mut self) {
        let pids: Vec<u32> = self.children.iter().map(|(_, c)| c.id()).collect();
        terminate(&pids, Duration::from_secs(5));
        for (_, c) in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop_children();
        if let Err(e) = down(&self.state.id) {
            eprintln!("scrubber lab {}: cleanup: {e}", self.state.id);
        }
    }
}
