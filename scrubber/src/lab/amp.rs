//! The lab side of the UDP amplification countermeasure, for `lab run --scenario udp-amp` and
//! the `amp` integration tests:
//!
//! - [`AmpPlan`]: what the daemon's config does with each reflection vector at a destination
//!   (compiled with the daemon's own code, so it cannot drift from what the daemon enforces).
//! - [`DropMatchers`]: how origin tells the flood's packets of dropped vectors from the rest —
//!   by source port where only dropped vectors' samples come from that port, else by the exact
//!   UDP lengths of those samples (checked to differ from every other sample from that port) —
//!   as an nftables table in origin's netdev ingress hook ([`DropMatchers::origin_ruleset`]) and
//!   as a tcpdump filter ([`DropMatchers::capture_filter`]). Both see each fragment on its own,
//!   before origin's reassembly.
//! - A DNS responder ([`Lab::start_resolver`]) in the client namespace on an address the clients
//!   already use ([`RESOLVER_V4`]), so `dig -b 198.18.100.10` from origin sends its query around
//!   the scrubber and gets the answer back through it: a response from source port 53 to a
//!   protected host, which a profile declaring `resolver = true` must let through.
//! - The per-vector counters of `stats` (`amp`: vector → outcome → packets), of the metrics
//!   endpoint (`scrubber_amp_packets_total{vector,outcome}`) and the per-worker receive counts.

use super::cmd::{Cmd, CmdError};
use super::counters::{self, Counters};
use super::instance::{Lab, LabError};
use super::topo::{ORIGIN_V4, Role};
use dataplane::amp::{Action, Roles, samples};
use dataplane::parse::parse;
use dataplane::policy::{DstClass, Mode};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

/// The lab's DNS resolver: one of the client namespace's own addresses (so it shares its /24
/// with the legitimate clients and with the flood's spoofed sources).
pub const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 53);
/// Its IPv6 address.
pub const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x35);
/// The responder (python3): A/AAAA/TXT for any name. argv: PORT ADDR...
pub const DNS_RESPONDER_PY: &str = include_str!("dns_responder.py");
/// nftables table (family netdev) in origin with the flood's counters.
pub const ORIGIN_AMP_TABLE: &str = "amp";

/// What a profile does with one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum VectorAction {
    /// Forwarded.
    Allow,
    /// Dropped under `amp_reflection`.
    Drop,
    /// Admitted within a per-destination budget, all workers together.
    RateLimit {
        /// Packets per second (0: none).
        pps: u64,
        /// IP bytes per second (0: none).
        bytes_per_sec: u64,
        /// Burst tolerance.
        burst_ms: u32,
    },
}

/// One vector of the catalogue as a destination's profile has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VectorPlan {
    /// Catalogue name.
    pub name: String,
    /// Reflector source ports.
    pub ports: Vec<u16>,
    /// The action.
    #[serde(flatten)]
    pub action: VectorAction,
}

/// What the daemon's config does with reflection responses to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AmpPlan {
    /// The destination's profile.
    pub profile: String,
    /// Whether the countermeasure acts: the profile has amp enabled and mitigates (a monitor-mode
    /// profile counts and forwards).
    pub enforced: bool,
    /// The profile declares a DNS resolver (`resolver = true`).
    pub resolver: bool,
    /// Every vector of the catalogue, in match order.
    pub vectors: Vec<VectorPlan>,
}

impl AmpPlan {
    /// Compiles `config` (as `scrubber check` does) and reads the profile of `dst`.
    pub fn load(config: &Path, dst: IpAddr) -> Result<AmpPlan, String> {
        let (_, policy) = control::check_file(config).map_err(|e| e.to_string())?;
        let Some(DstClass::Protected(i)) = policy.classify_dst(dst.into()) else {
            return Err(format!("{dst} is not in a protected prefix of {}", config.display()));
        };
        let (_, profile) = policy.profile_of(i);
        let a = &profile.amp;
        let vectors = policy
            .amp
            .catalogue
            .vectors()
            .iter()
            .zip(a.vectors.iter())
            .map(|(v, p)| VectorPlan {
                name: v.name.clone(),
                ports: v.ports.clone(),
                action: match &p.action {
                    Action::Allow => VectorAction::Allow,
                    Action::Drop => VectorAction::Drop,
                    Action::RateLimit(l) => {
                        let r = l.rate();
                        VectorAction::RateLimit { pps: r.pps, bytes_per_sec: r.bytes_per_sec, burst_ms: r.burst_ms }
                    }
                },
            })
            .collect();
        Ok(AmpPlan {
            profile: profile.name.clone(),
            enforced: a.enabled && profile.mode == Mode::Mitigate,
            resolver: a.roles.intersects(Roles::RESOLVER),
            vectors,
        })
    }

    /// The vector named `name`.
    pub fn vector(&self, name: &str) -> Option<&VectorPlan> {
        self.vectors.iter().find(|v| v.name == name)
    }

    /// Whether the daemon drops every response of vector `name` (enforced, action drop).
    pub fn drops(&self, name: &str) -> bool {
        self.enforced && self.vector(name).is_some_and(|v| v.action == VectorAction::Drop)
    }

    /// The budget of a rate-limited vector, when enforced.
    pub fn budget(&self, name: &str) -> Option<(u64, u32)> {
        match self.vector(name)?.action {
            VectorAction::RateLimit { pps, burst_ms, .. } if self.enforced => Some((pps, burst_ms)),
            _ => None,
        }
    }
}

/// The samples a `udp-amp` flood sends: the generator's mix, or one vector's attack sample
/// (`scrubber gen --vector NAME`).
pub fn flood_samples(vector: Option<&str>) -> Result<Vec<&'static samples::Spec>, String> {
    match vector {
        Some(name) => samples::attack(name).map(|s| vec![s]).ok_or_else(|| format!("no attack sample named {name}")),
        None => samples::UDP_AMP_MIX
            .iter()
            .map(|(name, _)| samples::spec(name).ok_or_else(|| format!("the mix names {name}, which is no sample")))
            .collect(),
    }
}

/// Seeds each sample is built with to learn its sizes (the generator draws its seeds at random;
/// the builders vary sizes a little at most).
const SIZE_SEEDS: u64 = 256;
/// At most this many distinct lengths per port make a length matcher.
const MAX_LENGTHS: usize = 16;

/// How origin recognises the flood's packets of dropped vectors (IPv4 and IPv6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropMatchers {
    /// Source ports from which the flood sends dropped vectors' samples only.
    pub ports: BTreeSet<u16>,
    /// Source ports shared with samples that pass: the UDP lengths (header included, the whole
    /// datagram's, as a first fragment carries it) of the dropped vectors' samples.
    pub lengths: BTreeMap<u16, BTreeSet<u16>>,
    /// Source ports of samples that are not dropped (allowed or budgeted), counted apart.
    pub watched: BTreeSet<u16>,
    /// Vectors whose samples are dropped.
    pub dropped_vectors: BTreeSet<String>,
    /// Vectors of the flood's fragmented samples (over a 1500-byte MTU).
    pub fragmented_vectors: BTreeSet<String>,
}

impl DropMatchers {
    /// Matchers for `flood` under `plan`; an error when a port's dropped and passing samples
    /// cannot be told apart by length.
    pub fn new(plan: &AmpPlan, flood: &[&samples::Spec]) -> Result<DropMatchers, String> {
        let mut by_port: BTreeMap<u16, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
        let mut m = DropMatchers::default();
        for s in flood {
            let vector = s.vector.ok_or_else(|| format!("sample {} is not an attack", s.name))?;
            let dropped = plan.drops(vector);
            let (drop_lens, pass_lens) = by_port.entry(s.src_port).or_default();
            for seed in 0..SIZE_SEEDS {
                let len = s.payload(seed).len() + 8;
                if len > 1500 - 20 {
                    m.fragmented_vectors.insert(vector.to_string());
                }
                let len = u16::try_from(len).map_err(|_| format!("sample {} is over 64 KiB", s.name))?;
                if dropped {
                    drop_lens.insert(len)
                } else {
                    pass_lens.insert(len)
                };
            }
            if dropped {
                m.dropped_vectors.insert(vector.to_string());
            }
        }
        for (port, (drop_lens, pass_lens)) in by_port {
            if !pass_lens.is_empty() {
                m.watched.insert(port);
            }
            match (drop_lens.is_empty(), pass_lens.is_empty()) {
                (true, _) => {}
                (false, true) => {
                    m.ports.insert(port);
                }
                (false, false) => {
                    if drop_lens.len() > MAX_LENGTHS || !drop_lens.is_disjoint(&pass_lens) {
                        return Err(format!(
                            "port {port}: dropped samples ({drop_lens:?}) and passing ones ({pass_lens:?}) have the same lengths"
                        ));
                    }
                    m.lengths.insert(port, drop_lens);
                }
            }
        }
        Ok(m)
    }

    /// Whether every fragmented sample of the flood belongs to a dropped vector, so that no
    /// later fragment of the flood may reach origin.
    pub fn all_fragmented_dropped(&self) -> bool {
        self.fragmented_vectors.is_subset(&self.dropped_vectors)
    }

    /// Name of the counter of attack packets from source port `port` (a watched port).
    pub fn port_counter(port: u16) -> String {
        format!("sport_{port}")
    }

    /// The `netdev` table counting, on each of `ifaces` (origin's ingress from the scrubber),
    /// attack-marked (DSCP CS1) packets: `attack` (all of them), `drop_vectors` (dropped
    /// vectors' packets, first fragments included), `later_fragments` (non-first fragments),
    /// `sport_<port>` (each watched port).
    pub fn origin_ruleset(&self, ifaces: &[String]) -> String {
        let mut s = format!("table netdev {ORIGIN_AMP_TABLE} {{\n");
        let mut names = vec!["attack".to_string(), "drop_vectors".into(), "later_fragments".into()];
        names.extend(self.watched.iter().map(|p| Self::port_counter(*p)));
        for n in &names {
            s.push_str(&format!("  counter {n} {{ }}\n"));
        }
        let list = |v: &mut dyn Iterator<Item = u16>| v.map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        for (chain, frag) in [("v4", "ip frag-off & 0x1fff != 0"), ("v6", "frag frag-off != 0")] {
            s.push_str(&format!("  chain {chain} {{\n    counter name \"attack\"\n"));
            s.push_str(&format!("    {frag} counter name \"later_fragments\" return\n"));
            if !self.ports.is_empty() {
                let ports = list(&mut self.ports.iter().copied());
                s.push_str(&format!("    udp sport {{ {ports} }} counter name \"drop_vectors\" return\n"));
            }
            for (port, lens) in &self.lengths {
                let lens = list(&mut lens.iter().copied());
                s.push_str(&format!(
                    "    udp sport {port} udp length {{ {lens} }} counter name \"drop_vectors\" return\n"
                ));
            }
            for port in &self.watched {
                s.push_str(&format!("    udp sport {port} counter name \"{}\" return\n", Self::port_counter(*port)));
            }
            s.push_str("  }\n");
        }
        for (i, dev) in ifaces.iter().enumerate() {
            s.push_str(&format!(
                "  chain in{i} {{\n    type filter hook ingress device \"{dev}\" priority 0; policy accept;\n    \
                 meta protocol ip ip dscp cs1 jump v4\n    meta protocol ip6 ip6 dscp cs1 jump v6\n  }}\n"
            ));
        }
        s.push_str("}\n");
        s
    }

    /// A tcpdump (pcap) filter for IPv4 attack-marked packets of dropped vectors, and (when
    /// every fragmented sample is of a dropped vector) attack-marked non-first fragments.
    pub fn capture_filter(&self) -> String {
        let mut alts: Vec<String> = Vec::new();
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(|p| format!("udp src port {p}")).collect();
            alts.push(format!("({})", ports.join(" or ")));
        }
        for (port, lens) in &self.lengths {
            let lens: Vec<String> = lens.iter().map(|l| format!("udp[4:2] = {l}")).collect();
            alts.push(format!("(udp src port {port} and ({}))", lens.join(" or ")));
        }
        if self.all_fragmented_dropped() {
            alts.push("(ip[6:2] & 0x1fff != 0)".into());
        }
        if alts.is_empty() {
            // Nothing is dropped: match nothing.
            return "ip and ip[1] & 0xfc = 0x20 and ip[0] = 0".into();
        }
        format!("ip and ip[1] & 0xfc = 0x20 and ({})", alts.join(" or "))
    }
}

/// Per-vector counters: vector → outcome → packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AmpCounts(pub BTreeMap<String, BTreeMap<String, u64>>);

impl AmpCounts {
    /// The `amp` object of a `stats` result (`scrubctl stats --json`).
    pub fn from_stats(stats: &Value) -> AmpCounts {
        let mut m = BTreeMap::new();
        for (vector, row) in stats["amp"].as_object().into_iter().flatten() {
            let row: BTreeMap<String, u64> =
                row.as_object().into_iter().flatten().map(|(o, n)| (o.clone(), n.as_u64().unwrap_or(0))).collect();
            m.insert(vector.clone(), row);
        }
        AmpCounts(m)
    }

    /// The `scrubber_amp_packets_total{vector,outcome}` samples of a metrics scrape.
    pub fn from_metrics(text: &str) -> AmpCounts {
        let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("scrubber_amp_packets_total{")) {
            let Some((labels, value)) = line["scrubber_amp_packets_total{".len()..].split_once("} ") else { continue };
            let label = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\""))?.strip_suffix('"').map(String::from))
            };
            if let (Some(v), Some(o), Ok(n)) = (label("vector"), label("outcome"), value.trim().parse::<f64>()) {
                m.entry(v).or_default().insert(o, n as u64);
            }
        }
        AmpCounts(m)
    }

    /// Packets of `vector` with `outcome`.
    pub fn get(&self, vector: &str, outcome: &str) -> u64 {
        self.0.get(vector).and_then(|r| r.get(outcome)).copied().unwrap_or(0)
    }

    /// Packets with `outcome`, all vectors.
    pub fn outcome(&self, outcome: &str) -> u64 {
        self.0.values().filter_map(|r| r.get(outcome)).sum()
    }

    /// Every packet counted.
    pub fn total(&self) -> u64 {
        self.0.values().flat_map(|r| r.values()).sum()
    }

    /// `self - earlier` (saturating; zero rows left out).
    pub fn since(&self, earlier: &AmpCounts) -> AmpCounts {
        let mut m = BTreeMap::new();
        for (v, row) in &self.0 {
            let d: BTreeMap<String, u64> = row
                .iter()
                .map(|(o, n)| (o.clone(), n.saturating_sub(earlier.get(v, o))))
                .filter(|(_, n)| *n > 0)
                .collect();
            if !d.is_empty() {
                m.insert(v.clone(), d);
            }
        }
        AmpCounts(m)
    }
}

/// Frames each worker received, by (interface, queue), from a `stats` result.
pub fn worker_rx(stats: &Value) -> BTreeMap<(String, u64), u64> {
    stats["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let key = (w["interface"].as_str().unwrap_or("").to_string(), w["queue"].as_u64().unwrap_or(0));
            (key, w["rx"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// `after - before` per worker.
pub fn worker_rx_since(
    after: &BTreeMap<(String, u64), u64>,
    before: &BTreeMap<(String, u64), u64>,
) -> BTreeMap<(String, u64), u64> {
    after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect()
}

/// Datagrams and frames of one sample as the generator sends it (fragmented over 1500 bytes).
pub fn sample_frames(s: &samples::Spec, seed: u64) -> usize {
    let src = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    let f = samples::frames(src, s.src_port, ORIGIN_V4.into(), 40000, &s.payload(seed), 1, 1500);
    debug_assert!(f.iter().all(|f| parse(f).is_ok()));
    f.len()
}

/// What `dig` from origin to the lab's resolver got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DigReport {
    /// Queries made.
    pub attempts: u64,
    /// Queries answered NOERROR with the expected address.
    pub ok: u64,
    /// A few failures (`status`), for the report.
    pub failures: Vec<String>,
}

impl Lab {
    /// Starts the lab's DNS responder in the client namespace on [`RESOLVER_V4`] and
    /// [`RESOLVER_V6`] port 53; returns once it listens.
    pub fn start_resolver(&mut self) -> Result<(), LabError> {
        let script = self.dir().join("dns_responder.py");
        std::fs::write(&script, DNS_RESPONDER_PY).map_err(|source| LabError::Io { path: script.clone(), source })?;
        let argv: Vec<String> = vec![
            "python3".into(),
            "-u".into(),
            script.display().to_string(),
            "53".into(),
            RESOLVER_V4.to_string(),
            RESOLVER_V6.to_string(),
        ];
        let log = self.dir().join("resolver.log");
        let pid = self.spawn("resolver", Role::Client, &argv, &log)?;
        let log2 = log.clone();
        self.wait_ready("lab DNS resolver", pid, &log, Duration::from_secs(10), move || {
            std::fs::read_to_string(&log2).is_ok_and(|t| t.contains("dns responder: listening"))
        })
    }

    /// `count` queries (`dig -b 198.18.100.10 @198.18.1.53 NAME A`) from origin's protected
    /// address to the lab's resolver: the answers come back through the scrubber.
    pub fn dig_from_origin(&self, count: u64) -> DigReport {
        let mut r = DigReport::default();
        for i in 0..count {
            dig_once(&self.ns(Role::Origin), i, &mut r);
        }
        r
    }

    /// Loads origin's flood counters for `m` (replacing an earlier copy).
    pub fn load_amp_counters(&self, m: &DropMatchers) -> Result<(), CmdError> {
        let ns = self.ns(Role::Origin);
        let _ = Cmd::new("nft").args(&["delete", "table", "netdev", ORIGIN_AMP_TABLE]).netns(&ns).run();
        counters::load(&ns, &m.origin_ruleset(&self.state().counters.interfaces))
    }

    /// Origin's flood counters (see [`DropMatchers::origin_ruleset`]).
    pub fn amp_counters(&self) -> Result<Counters, CmdError> {
        counters::read(&self.ns(Role::Origin), "netdev", ORIGIN_AMP_TABLE)
    }

    /// The daemon's metrics page (scraped inside the scrub namespace).
    pub fn metrics(&self) -> Result<String, LabError> {
        let addr = &self.state().daemon.metrics;
        if addr.is_empty() || addr == "off" {
            return Err(LabError::Invalid("the daemon's metrics endpoint is off".into()));
        }
        let url = format!("http://{addr}/metrics");
        let out = Cmd::new("curl")
            .args(&["-sS", "--max-time", "3", &url])
            .netns(self.ns(Role::Scrub))
            .timeout(Duration::from_secs(6))
            .run()?;
        Ok(out.stdout)
    }
}

/// One rate-limited vector in a run: what it admitted against its budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BudgetReport {
    /// Vector name.
    pub vector: String,
    /// The budget, packets per second per destination.
    pub budget_pps: u64,
    /// Burst tolerance, ms.
    pub burst_ms: u32,
    /// Datagrams admitted (all workers).
    pub admitted: u64,
    /// Dropped over budget.
    pub over_budget: u64,
    /// What the budget allows over the window: `budget_pps * seconds + burst`.
    pub allowed: f64,
    /// `admitted / allowed`.
    pub ratio: f64,
    /// Whether the vector came faster than its budget (some were over budget): then `ratio`
    /// should be about 1.
    pub saturated: bool,
    /// Attack packets from the vector's port(s) that reached origin.
    pub at_origin: u64,
}

/// The `amp` section of a `udp-amp` run's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AmpReport {
    /// What the config does at origin's address.
    pub plan: Option<AmpPlan>,
    /// Vectors the profile drops (when enforced).
    pub dropped_vectors: Vec<String>,
    /// Attack packets of those vectors that reached origin (nftables; first fragments included):
    /// 0 when the countermeasure acts.
    pub dropped_vectors_at_origin: u64,
    /// Attack-marked non-first fragments that reached origin: only fragments whose first
    /// fragment the scrubber never saw (lost on the way), which the profile's `fragments`
    /// action may admit.
    pub later_fragments_at_origin: u64,
    /// Later fragments the scrubber admitted without having seen their first fragment
    /// (event `amp_fragment_unseen_admit`): an upper bound on `later_fragments_at_origin`.
    pub unseen_fragments_admitted: u64,
    /// Attack-marked packets at origin, all.
    pub attack_at_origin: u64,
    /// Later fragments dropped because their first fragment was (`amp_fragment`).
    pub fragments_dropped: u64,
    /// Per-vector outcomes over the window (`stats`: `amp`).
    pub vectors: AmpCounts,
    /// The same from the metrics endpoint (`scrubber_amp_packets_total`).
    pub metrics: AmpCounts,
    /// Rate-limited vectors against their budgets.
    pub budgets: Vec<BudgetReport>,
    /// Frames each worker received (`in0/0`, `in0/1`, ...).
    pub worker_rx: BTreeMap<String, u64>,
    /// dig from origin to the lab's resolver during the window (when the profile declares one).
    pub dig: Option<DigReport>,
    /// Legitimate UDP sequence requests answered, percent.
    pub legit_udp_pct: Option<f64>,
}

/// The lab side of a `udp-amp` run: a resolver, origin's flood counters, snapshots of the
/// daemon's per-vector counters, dig from origin in the background.
#[derive(Debug)]
pub struct AmpRun {
    plan: AmpPlan,
    matchers: DropMatchers,
    stats0: Value,
    metrics0: AmpCounts,
    origin0: Counters,
    dig: Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<DigReport>)>,
}

impl AmpRun {
    /// Reads the plan from the lab's daemon config, starts the resolver and loads origin's
    /// counters for the `udp-amp` mix.
    pub fn prepare(lab: &mut Lab) -> Result<AmpRun, LabError> {
        let plan = AmpPlan::load(&lab.state().daemon.config, ORIGIN_V4.into()).map_err(LabError::Invalid)?;
        // Origin counts what the profile drops when it acts, so that a control run with the
        // countermeasure off (or in monitor mode) shows those vectors arriving.
        let protected = AmpPlan { enforced: true, ..plan.clone() };
        let matchers = DropMatchers::new(&protected, &flood_samples(None).map_err(LabError::Invalid)?)
            .map_err(LabError::Invalid)?;
        lab.start_resolver()?;
        lab.load_amp_counters(&matchers)?;
        Ok(AmpRun {
            plan,
            matchers,
            stats0: Value::Null,
            metrics0: AmpCounts::default(),
            origin0: Counters::default(),
            dig: None,
        })
    }

    /// Snapshots the counters and starts dig from origin (every 250 ms) when the profile
    /// declares a resolver. Call right before the measured window.
    pub fn begin(&mut self, lab: &Lab) -> Result<(), LabError> {
        self.stats0 = lab.ctl("stats", serde_json::json!({}))?;
        // A config with the metrics endpoint off reports no metrics rather than failing the run.
        self.metrics0 = lab.metrics().map(|t| AmpCounts::from_metrics(&t)).unwrap_or_default();
        self.origin0 = lab.amp_counters()?;
        if self.plan.resolver {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (ns, s) = (lab.ns(Role::Origin), stop.clone());
            let h = std::thread::spawn(move || {
                let mut r = DigReport::default();
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    dig_once(&ns, r.attempts, &mut r);
                    std::thread::sleep(Duration::from_millis(250));
                }
                r
            });
            self.dig = Some((stop, h));
        }
        Ok(())
    }

    /// Stops dig and reports; budgets are held against a flood of `seconds`.
    pub fn finish(
        self,
        lab: &Lab,
        seconds: f64,
        legit_udp: Option<&super::services::ProbeReport>,
    ) -> Result<AmpReport, LabError> {
        let dig = self.dig.map(|(stop, h)| {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            h.join().unwrap_or_default()
        });
        let stats = lab.ctl("stats", serde_json::json!({}))?;
        let vectors = AmpCounts::from_stats(&stats).since(&AmpCounts::from_stats(&self.stats0));
        let metrics = lab.metrics().map(|t| AmpCounts::from_metrics(&t)).unwrap_or_default().since(&self.metrics0);
        let origin = lab.amp_counters()?.since(&self.origin0);
        let budgets = self
            .plan
            .vectors
            .iter()
            .filter_map(|v| {
                let (pps, burst_ms) = self.plan.budget(&v.name)?;
                let admitted = vectors.get(&v.name, "admitted");
                let over = vectors.get(&v.name, "over_budget");
                (admitted + over > 0).then(|| {
                    let allowed = pps as f64 * seconds + pps as f64 * f64::from(burst_ms) / 1000.0;
                    BudgetReport {
                        vector: v.name.clone(),
                        budget_pps: pps,
                        burst_ms,
                        admitted,
                        over_budget: over,
                        allowed,
                        ratio: admitted as f64 / allowed.max(1.0),
                        saturated: over > 0,
                        at_origin: v.ports.iter().map(|p| origin.packets(&DropMatchers::port_counter(*p))).sum(),
                    }
                })
            })
            .collect();
        // How much a counter of the `stats` totals grew over the window.
        let grew = |kind: &str, name: &str| {
            let n = |s: &Value| s["totals"][kind][name].as_u64().unwrap_or(0);
            n(&stats).saturating_sub(n(&self.stats0))
        };
        Ok(AmpReport {
            dropped_vectors: self.matchers.dropped_vectors.iter().cloned().collect(),
            plan: Some(self.plan),
            dropped_vectors_at_origin: origin.packets("drop_vectors"),
            later_fragments_at_origin: origin.packets("later_fragments"),
            unseen_fragments_admitted: grew("events", "amp_fragment_unseen_admit"),
            attack_at_origin: origin.packets("attack"),
            fragments_dropped: grew("dropped", "amp_fragment"),
            vectors,
            metrics,
            budgets,
            worker_rx: worker_rx_since(&worker_rx(&stats), &worker_rx(&self.stats0))
                .into_iter()
                .map(|((i, q), n)| (format!("{i}/{q}"), n))
                .collect(),
            dig,
            legit_udp_pct: legit_udp.map(|u| if u.sent == 0 { 0.0 } else { u.answered as f64 * 100.0 / u.sent as f64 }),
        })
    }
}

/// One `dig` (the `i`-th) from origin's protected address to the lab's resolver, in origin's
/// namespace `origin_ns`, added to `r`.
pub fn dig_once(origin_ns: &str, i: u64, r: &mut DigReport) {
    r.attempts += 1;
    let name = format!("q{i}.origin.lab");
    let got =
        super::clients::dig(origin_ns, RESOLVER_V4.into(), Some(ORIGIN_V4.into()), &name, "A", Duration::from_secs(2));
    match got {
        Ok(d) if d.status == "NOERROR" && d.answers.iter().any(|a| a.contains(&ORIGIN_V4.to_string())) => r.ok += 1,
        Ok(d) if r.failures.len() < 5 => r.failures.push(format!("{name}: {} {:?}", d.status, d.answers)),
        Err(e) if r.failures.len() < 5 => r.failures.push(format!("{name}: {e}")),
        _ => {}
    }
}

/// The `amp` section as text.
pub fn format_report(a: &AmpReport) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    if let Some(p) = &a.plan {
        line(format!(
            "amp            profile {} ({}{}); it drops {} vectors",
            p.profile,
            if p.enforced { "enforced" } else { "NOT enforced" },
            if p.resolver { ", resolver" } else { "" },
            a.dropped_vectors.len()
        ));
    }
    line(format!(
        "  at origin: dropped vectors' packets {}, later fragments {}, attack packets {}",
        a.dropped_vectors_at_origin, a.later_fragments_at_origin, a.attack_at_origin
    ));
    line(format!(
        "  later fragments dropped with their datagram (amp_fragment) {}, admitted unseen {}; workers rx {}",
        a.fragments_dropped,
        a.unseen_fragments_admitted,
        a.worker_rx.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    ));
    for b in &a.budgets {
        line(format!(
            "  budget {:<10} {} pps: admitted {} of {:.0} allowed ({:.3}{}), over budget {}, at origin {}",
            b.vector,
            b.budget_pps,
            b.admitted,
            b.allowed,
            b.ratio,
            if b.saturated { "" } else { ", under budget" },
            b.over_budget,
            b.at_origin
        ));
    }
    if let Some(d) = &a.dig {
        line(format!("  dig from origin to the resolver: {}/{} answered {:?}", d.ok, d.attempts, d.failures));
    }
    if let Some(p) = a.legit_udp_pct {
        line(format!("  legitimate UDP exchanges answered: {p:.3} %"));
    }
    let mut top: Vec<(String, u64)> =
        a.vectors.0.iter().map(|(v, row)| (v.clone(), row.values().sum::<u64>())).collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    for (v, _) in top.iter().take(8) {
        let row = &a.vectors.0[v];
        let m = a.metrics.0.get(v).map(|r| r.values().sum::<u64>()).unwrap_or(0);
        line(format!("  vector {v:<24} {row:?} (metrics {m})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_plan() -> AmpPlan {
        AmpPlan::load(&super::super::config::default_source(), ORIGIN_V4.into()).unwrap()
    }

    #[test]
    fn the_lab_profile_drops_most_vectors_and_allows_dns_answers() {
        let p = lab_plan();
        assert!(p.enforced && p.resolver, "{p:?}");
        assert!(p.drops("dns-any") && p.drops("memcached") && p.drops("ntp-private"));
        assert!(!p.drops("dns"), "resolver = true allows DNS answers");
        assert_eq!(p.vector("dns").unwrap().action, VectorAction::Allow);
        assert_eq!(p.budget("stun"), Some((1000, 100)));
    }

    #[test]
    fn matchers_tell_dropped_samples_apart_by_port_and_length() {
        let p = lab_plan();
        let m = DropMatchers::new(&p, &flood_samples(None).unwrap()).unwrap();
        assert!(m.ports.contains(&11211) && m.ports.contains(&1900) && !m.ports.contains(&53));
        // DNS: ANY and oversize answers are dropped, the plain answers the resolver role allows pass.
        assert_eq!(m.lengths[&53], BTreeSet::from([1992, 3590]));
        assert!(m.lengths.contains_key(&123), "NTP monlist/control beside mode 4 replies");
        assert!(m.watched.contains(&53) && m.watched.contains(&3478));
        assert!(m.all_fragmented_dropped(), "{m:?}");
        let r = m.origin_ruleset(&["o0".into()]);
        assert!(r.contains("udp sport 53 udp length { 1992, 3590 } counter name \"drop_vectors\""), "{r}");
        assert!(r.contains("counter sport_3478 { }") && r.contains("device \"o0\""), "{r}");
        let f = m.capture_filter();
        assert!(f.starts_with("ip and ip[1] & 0xfc = 0x20 and (") && f.contains("udp[4:2] = 3590"), "{f}");
        let stun = DropMatchers::new(&p, &flood_samples(Some("stun")).unwrap()).unwrap();
        assert!(stun.ports.is_empty() && stun.watched == BTreeSet::from([3478]));
        assert!(flood_samples(Some("nope")).is_err());
    }

    #[test]
    fn amp_counts_from_stats_and_metrics() {
        let stats = serde_json::json!({"amp": {"dns-any": {"dropped": 5, "fragment_dropped": 10}, "stun": {"admitted": 3}},
            "workers": [{"interface": "in0", "queue": 0, "rx": 7}, {"interface": "in0", "queue": 1, "rx": 9}]});
        let a = AmpCounts::from_stats(&stats);
        assert_eq!((a.get("dns-any", "dropped"), a.outcome("admitted"), a.total()), (5, 3, 18));
        let text = "# HELP x\nscrubber_amp_packets_total{vector=\"dns-any\",outcome=\"dropped\"} 7\n\
                    scrubber_amp_packets_total{vector=\"stun\",outcome=\"admitted\"} 3\nother 1\n";
        let m = AmpCounts::from_metrics(text);
        assert_eq!(m.get("dns-any", "dropped"), 7);
        assert_eq!(m.since(&a).0, BTreeMap::from([("dns-any".into(), BTreeMap::from([("dropped".into(), 2)]))]));
        let rx = worker_rx(&stats);
        assert_eq!(rx[&("in0".into(), 1)], 9);
        assert_eq!(sample_frames(samples::spec("dns-any").unwrap(), 1), 3);
    }
}
