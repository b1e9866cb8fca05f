//! Shared helpers for the integration tests.
//!
//! Root tests build their own lab ([`TestLab`]: unique id per test, everything removed on drop,
//! including while a panic unwinds; labs left by a killed test run are swept at the next start)
//! and drive real clients in its namespaces. Run them one at a time (`--test-threads=1`): they
//! share the machine's CPU and the lab's fixed addresses inside each namespace set.
//!
//! The topology, services, counters and client wrappers live in the `scrubber` package's library
//! (`scrubber::lab`), because `scrubber lab` uses them too; this crate re-exports them and adds
//! what only tests need: the root check, the guard, the binary under test.

pub mod control;
pub mod quic;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use scrubber::lab::clients::{
    CurlReport, CurlResult, DigResult, Hping, HpingMode, LinkStats, Sent, curl_many, dig, hping3, http_url, link_stats,
    ping,
};
pub use scrubber::lab::observe::{GenReport, PUBLISH_SETTLE, ScrubStats, XdpStats};
pub use scrubber::lab::services::{ProbeReport, parse_sources};
pub use scrubber::lab::topo::{self, GreImpl, VlanImpl, client_sources_v4, client_sources_v6};
pub use scrubber::lab::traffic::GenSpec;
pub use scrubber::lab::{self, Cmd, CmdError, Counters, Lab, LabOptions, Output, Role, exec, exec_in};

pub mod syn;

/// Programs the root tests run.
pub const TOOLS: [&str; 13] =
    ["ip", "ethtool", "sysctl", "nft", "tc", "clang", "tcpdump", "curl", "python3", "ping", "hping3", "dig", "kill"];

/// Whether a root integration test can run here. Not root: prints why and returns `false` (the
/// test returns early) — except under `CI=true`, where it panics, so a CI job without root fails
/// instead of passing vacuously. Root with a tool missing: panics naming it.
pub fn require_root() -> bool {
    if !lab::is_root() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "CI=true but not root: the namespace integration tests need root (run `sudo -E make test`)");
        eprintln!("skipped: needs root (network namespaces, veth, nftables)");
        return false;
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(missing.is_empty(), "missing programs: {} (run scripts/deps.sh)", missing.join(", "));
    true
}

/// Returns from the calling test unless [`require_root`] says it can run.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file())).unwrap_or(false)
}

/// The `scrubber` binary under test: `$SCRUBBER_BIN` (what `make test` sets), else built now with
/// the cargo and profile that built this test (`cargo build -p scrubber`), so it is never stale.
pub fn scrubber_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SCRUBBER_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "SCRUBBER_BIN={} is not a file", p.display());
            return p;
        }
        // This test runs from <target>/<profile-dir>/deps/<name>-<hash>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("test binary inside <target>/<profile>/deps");
        let target = profile_dir.parent().expect("target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("cannot tell the cargo profile from {}", exe.display()),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        Cmd::new(cargo)
            .args(&["build", "-q", "-p", "scrubber", "--bin", "scrubber", "--profile", profile, "--manifest-path"])
            .arg(manifest.display().to_string())
            .args(&["--target-dir", &target.display().to_string()])
            .timeout(Duration::from_secs(900))
            .run()
            .unwrap_or_else(|e| panic!("building the scrubber binary: {e}"));
        let bin = profile_dir.join("scrubber");
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
}

/// A lab id no other test, run or process uses now: `t<pid>x<n>`.
pub fn unique_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A lab owned by one test: removed when dropped (also during a panic), and marked with this
/// process as owner so the next test run removes it if this process is killed.
#[derive(Debug)]
pub struct TestLab {
    lab: Option<Lab>,
    started: Instant,
}

impl TestLab {
    /// The default lab (asymmetric, untagged).
    pub fn up() -> TestLab {
        TestLab::with(|o| o)
    }

    /// A lab with options adjusted by `f` (id and owner are set already).
    pub fn with(f: impl FnOnce(LabOptions) -> LabOptions) -> TestLab {
        for r in lab::sweep_orphans() {
            eprintln!("removed lab {} left by a killed test run", r.id);
        }
        let opts = f(LabOptions { owner_pid: Some(std::process::id()), ..LabOptions::new(unique_id()) });
        let started = Instant::now();
        let lab = Lab::up(opts).unwrap_or_else(|e| panic!("lab up: {e}"));
        eprintln!("lab {} up in {:?}", lab.id(), started.elapsed());
        TestLab { lab: Some(lab), started }
    }

    /// The lab with origin's HTTP server and UDP sequence service running.
    pub fn with_services(f: impl FnOnce(LabOptions) -> LabOptions) -> TestLab {
        let mut t = TestLab::with(f);
        t.start_http().unwrap_or_else(|e| panic!("start http: {e}"));
        t.start_udp_echo(scrubber_bin()).unwrap_or_else(|e| panic!("start udp-echo: {e}"));
        t
    }

    /// Removes the lab now, returning what was removed.
    pub fn down(mut self) -> lab::DownReport {
        let lab = self.lab.take().expect("lab present until down or drop");
        lab.down().unwrap_or_else(|e| panic!("lab down: {e}"))
    }

    /// One GET of `path` on `target:80` from each source, from the client namespace.
    pub fn curl(&self, target: IpAddr, path: &str, sources: &[IpAddr]) -> CurlReport {
        let url = http_url(target, topo::HTTP_PORT, path);
        curl_many(&self.ns(Role::Client), &url, sources, Duration::from_secs(3)).unwrap_or_else(|e| panic!("curl: {e}"))
    }

    /// `count` numbered UDP requests to `target:9000` from `sources` at `rate` per second,
    /// from the client namespace (`scrubber lab udp-probe`).
    pub fn udp_probe(&self, target: IpAddr, sources: &str, count: u64, rate: u64) -> ProbeReport {
        let t = std::net::SocketAddr::new(target, topo::UDP_ECHO_PORT).to_string();
        let bin = scrubber_bin().display().to_string();
        let argv = [&bin, "lab", "udp-probe", "--target", &t, "--sources", sources];
        let out = Cmd::from_argv(&argv)
            .args(&["--count", &count.to_string(), "--rate", &rate.to_string(), "--wait-ms", "1000"])
            .netns(self.ns(Role::Client))
            .timeout(Duration::from_secs(10 + count / rate.max(1)))
            .run()
            .unwrap_or_else(|e| panic!("udp-probe: {e}"));
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("udp-probe output {:?}: {e}", out.stdout))
    }

    /// The lab with origin's services and the scrubber daemon running.
    pub fn with_daemon(f: impl FnOnce(LabOptions) -> LabOptions) -> TestLab {
        let mut t = TestLab::with_services(f);
        t.start_scrubber();
        t
    }

    /// Starts the daemon (`scrubber run`) in the scrub namespace; panics with its log.
    pub fn start_scrubber(&mut self) {
        let started = Instant::now();
        self.start_daemon(scrubber_bin(), &[]).unwrap_or_else(|e| panic!("start the daemon: {e}"));
        eprintln!("daemon pid {:?} up in {:?}", self.daemon_pid(), started.elapsed());
    }

    /// One request on the daemon's control socket (panics with the error).
    pub fn control(&self, cmd: &str, args: serde_json::Value) -> serde_json::Value {
        self.ctl(cmd, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The daemon's counters once its workers have published the latest ones.
    pub fn stats(&self) -> ScrubStats {
        std::thread::sleep(PUBLISH_SETTLE);
        self.scrub_stats().unwrap_or_else(|e| panic!("stats: {e}"))
    }

    /// Runs the generator to completion (panics with its error).
    pub fn generate(&self, spec: &GenSpec) -> GenReport {
        self.run_gen(scrubber_bin(), spec).unwrap_or_else(|e| panic!("gen {:?}: {e}", spec.profiles))
    }

    /// Origin's counters (panics with the nft error).
    pub fn counters(&self) -> Counters {
        self.origin_counters().unwrap_or_else(|e| panic!("origin counters: {e}"))
    }

    /// Counters of `dev` in `role`'s namespace.
    pub fn link(&self, role: Role, dev: &str) -> LinkStats {
        link_stats(&self.ns(role), dev).unwrap_or_else(|e| panic!("link stats: {e}"))
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab.as_ref().expect("lab present until down or drop")
    }
}

impl std::ops::DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("lab present until down or drop")
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take() {
            let id = lab.id().to_string();
            // Lab's own Drop removes everything; report how long the lab lived.
            drop(lab);
            eprintln!("lab {id} removed after {:?}", self.started.elapsed());
        }
    }
}

/// Starts `tcpdump -e -n -c COUNT -i DEV FILTER` in `ns` on a thread, limited to `timeout`;
/// join the handle for its output (one line per captured frame on stdout). tcpdump needs a
/// moment to start: send the traffic after about half a second, and keep sending until joined.
pub fn capture(
    ns: &str,
    dev: &str,
    count: u32,
    timeout: Duration,
    filter: &str,
) -> std::thread::JoinHandle<Result<Output, CmdError>> {
    let c = Cmd::new("tcpdump")
        .args(&["-e", "-n", "-l", "-c", &count.to_string(), "-i", dev])
        .args(&filter.split_whitespace().collect::<Vec<_>>())
        .netns(ns)
        .timeout(timeout);
    std::thread::spawn(move || c.run())
}

/// Polls `f` every 10 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A lab config file made from `configs/lab.toml` with text replaced; removed when dropped.
#[derive(Debug)]
pub struct TempConfig(pub PathBuf);

impl TempConfig {
    /// `configs/lab.toml` with each `(from, to)` replaced (each `from` must occur).
    pub fn lab_with(replace: &[(&str, &str)]) -> TempConfig {
        let src = scrubber::lab::config::default_source();
        let mut text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        for (from, to) in replace {
            assert!(text.contains(from), "{} has no `{from}`", src.display());
            text = text.replace(from, to);
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "scrubber-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempConfig(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `scrubber lab run <args> --json` in a lab of its own (within `timeout`), checks it left
/// nothing behind, and returns its JSON report.
pub fn lab_run(args: &[&str], timeout: Duration) -> serde_json::Value {
    let id = unique_id();
    let started = Instant::now();
    let out = Cmd::new(scrubber_bin().display().to_string())
        .arg("lab")
        .arg("run")
        .args(args)
        .args(&["--json", "--id", &id])
        .timeout(timeout)
        .run()
        .unwrap_or_else(|e| panic!("lab run: {e}"));
    eprintln!("lab run took {:?}\n{}", started.elapsed(), out.stderr);
    assert_no_leftovers(&id);
    serde_json::from_str(&out.stdout).expect("JSON report")
}

/// Whether an XDP program is attached to `dev` in `ns` (`ip -d link show`).
pub fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = Cmd::new("ip").args(&["-d", "link", "show", "dev", dev]).netns(ns).run().expect("ip link show");
    out.stdout.contains("prog/xdp") || out.stdout.split_whitespace().any(|w| w.starts_with("xdp"))
}

/// Asserts that lab `id` left nothing behind (namespaces, state directory, stray links).
pub fn assert_no_leftovers(id: &str) {
    let l = lab::leftovers(id).unwrap_or_else(|e| panic!("leftovers: {e}"));
    assert!(l.is_empty(), "lab {id} left {l:?}");
}

/// Asserts every request of `r` succeeded from every source, naming the first failures.
pub fn assert_all_ok(what: &str, r: &CurlReport) {
    let failures = r.failures();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} failed, first: {:?}",
        failures.len(),
        r.attempts,
        &failures[..failures.len().min(3)]
    );
    assert_eq!(r.sources_ok, r.attempts, "{what}: every source succeeds");
    eprintln!("{what}: {}/{} ok, latency {:?} us", r.succeeded, r.attempts, r.latency_us);
}
