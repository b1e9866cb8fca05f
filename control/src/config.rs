//! The configuration file: typed serde structs with defaults, and the checks that make every
//! error name the file, the key and what is wrong.
//!
//! Parsing (`Config::from_toml`) catches syntax, unknown keys and type errors; `validate`
//! catches what types cannot say (a prefix with host bits set, a profile that does not exist,
//! GRE forwarding without an endpoint). `compile::compile` then turns a valid config into the
//! dataplane's policy snapshot. Nothing here touches a NIC.

use crate::error::ConfigError;
use dataplane::Cidr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Daemon-level settings (control socket, metrics, logs).
    pub daemon: DaemonConfig,
    /// AF_XDP data path: queues, cores, ring sizes, fail mode.
    pub dataplane: DataplaneConfig,
    /// How clean traffic leaves.
    pub forward: ForwardConfig,
    /// Capacities of the per-worker state tables.
    pub tables: TablesConfig,
    /// Global policy: own addresses, lists, unprotected traffic, bogon exemptions.
    pub policy: PolicyConfig,
    /// Named profiles.
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Protected prefixes.
    pub prefixes: Vec<PrefixConfig>,
    /// Ordered firewall rules.
    pub rules: Vec<RuleConfig>,
    /// UDP amplification defence: catalogue and shared tables.
    pub amp: crate::amp::AmpConfig,
    /// QUIC Initial validation: timeouts, budgets, table sizes.
    pub quic: crate::quic::QuicGlobalConfig,
    /// SYN authentication: secret, cookie period, verified-source TTL, table sizes.
    pub syn: crate::syn::SynConfig,
}

/// Daemon settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Group allowed to use the control socket (besides root).
    pub control_group: Option<String>,
    /// Prometheus endpoint address, or "off".
    pub metrics: String,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Accept fault-injection commands (`fault_stall`, `fault_xdp_sync`): for tests of the
    /// watchdog and of rollbacks, never in production.
    pub fault_injection: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            control_socket: PathBuf::from("/run/scrubber/control.sock"),
            control_group: None,
            metrics: "127.0.0.1:9477".to_string(),
            log_format: LogFormat::Human,
            fault_injection: false,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// What happens to protected traffic when no worker socket is live on a queue.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Hand it to the kernel (which routes it when the appliance is set up as a router).
    #[default]
    Open,
    /// Drop it in XDP.
    Closed,
}

/// AF_XDP bind mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Zero-copy where the driver supports it, else copy.
    #[default]
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode.
    Copy,
}

/// What memory backs each worker's UMEM.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UmemPagesConfig {
    /// Huge pages when enough are reserved (`vm.nr_hugepages`), else small pages.
    #[default]
    Auto,
    /// Huge pages, or refuse to start.
    Huge,
    /// Small pages.
    Small,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// Native (driver) mode where supported, else generic.
    #[default]
    Auto,
    /// Driver mode or fail.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// One worker: an ingress (interface, queue) pinned to a core.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Ingress interface name.
    pub interface: String,
    /// NIC queue id.
    pub queue: u32,
    /// CPU core to pin the worker to (none: not pinned).
    pub core: Option<usize>,
    /// Queue of the egress interface this worker transmits on (default: the worker's position in
    /// the list, so two workers never share an egress queue).
    #[serde(default)]
    pub egress_queue: Option<u32>,
}

/// AF_XDP data path settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// Workers.
    pub queues: Vec<QueueConfig>,
    /// Fail mode with no live socket.
    pub fail: FailMode,
    /// Bind mode.
    pub bind: BindMode,
    /// Attach mode.
    pub attach: AttachMode,
    /// Frames per RX batch.
    pub batch: u32,
    /// RX and TX ring size (power of two).
    pub ring_size: u32,
    /// Fill and completion ring size (power of two).
    pub fill_size: u32,
    /// UMEM frames per worker.
    pub frames: u32,
    /// UMEM frame size in bytes (2048 or 4096).
    pub frame_size: u32,
    /// UMEM memory: huge pages (hugetlbfs, reserved with `vm.nr_hugepages`) save a TLB miss on
    /// nearly every frame a busy worker reads.
    pub umem_pages: UmemPagesConfig,
    /// Preferred busy polling (SO_PREFER_BUSY_POLL) with this budget; 0 = off.
    pub busy_poll_budget: u32,
    /// A worker whose loop makes no progress this long has its queue put in the fail mode.
    pub watchdog_ms: u64,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            queues: Vec::new(),
            fail: FailMode::Open,
            bind: BindMode::Auto,
            attach: AttachMode::Auto,
            batch: 64,
            ring_size: 2048,
            fill_size: 4096,
            frames: 8192,
            frame_size: 4096,
            umem_pages: UmemPagesConfig::Auto,
            busy_poll_budget: 0,
            watchdog_ms: 500,
        }
    }
}

/// Egress mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardModeConfig {
    /// Out of `egress` to the next hop.
    #[default]
    L2,
    /// GRE to each prefix's endpoint, out of `egress`.
    Gre,
    /// Back out of the ingress interface.
    Hairpin,
}

/// VLAN handling: `"keep"`, `"strip"` or a VLAN id.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum VlanConfig {
    /// Set the outer tag to this id.
    Id(u16),
    /// `keep` or `strip`.
    Word(VlanWord),
}

/// The words `VlanConfig` accepts.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VlanWord {
    /// Leave tags.
    Keep,
    /// Remove tags.
    Strip,
}

impl Default for VlanConfig {
    fn default() -> Self {
        VlanConfig::Word(VlanWord::Keep)
    }
}

/// Egress settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// l2, gre or hairpin.
    pub mode: ForwardModeConfig,
    /// Egress interface (l2, gre); ignored for hairpin.
    pub egress: Option<String>,
    /// Next-hop MAC (`aa:bb:cc:dd:ee:ff`), or "auto" to resolve `next_hop_ip` from the kernel
    /// neighbour table.
    pub next_hop_mac: String,
    /// Next-hop IP used to resolve the MAC when `next_hop_mac = "auto"`.
    pub next_hop_ip: Option<String>,
    /// VLAN handling.
    pub vlan: VlanConfig,
    /// Local GRE tunnel address (IPv4).
    pub gre_local: Option<String>,
    /// Egress MTU (IP bytes).
    pub mtu: u16,
    /// Also relay origin→client traffic arriving on the egress interface.
    pub symmetric: bool,
    /// Upstream next hop for the relayed return direction (symmetric): a MAC or "auto".
    pub return_next_hop_mac: String,
    /// IP of the upstream next hop, resolved when `return_next_hop_mac = "auto"`.
    pub return_next_hop_ip: Option<String>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            mode: ForwardModeConfig::L2,
            egress: None,
            next_hop_mac: "auto".to_string(),
            next_hop_ip: None,
            vlan: VlanConfig::default(),
            gre_local: None,
            mtu: 1500,
            symmetric: false,
            return_next_hop_mac: "auto".to_string(),
            return_next_hop_ip: None,
        }
    }
}

/// Table capacities (entries per worker).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Per-source token buckets.
    pub src_buckets: usize,
    /// Per-destination token buckets.
    pub dst_buckets: usize,
    /// Per-destination fragment buckets.
    pub frag_buckets: usize,
    /// Replies (SYN-ACK, ICMP) the appliance may send per second, all workers together.
    pub reply_pps: u64,
    /// Replies the appliance may send per second to any one address.
    pub reply_pps_per_destination: u64,
    /// Per-reply-destination buckets.
    pub reply_buckets: usize,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            src_buckets: 1 << 20,
            dst_buckets: 1 << 16,
            frag_buckets: 1 << 16,
            reply_pps: 100_000,
            reply_pps_per_destination: 5_000,
            reply_buckets: 1 << 16,
        }
    }
}

/// Traffic for destinations outside every protected prefix.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnprotectedConfig {
    /// To the kernel.
    #[default]
    Pass,
    /// Forward unchecked.
    Forward,
    /// Drop.
    Drop,
}

/// Global policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The appliance's own addresses (always passed to the kernel). The daemon adds the
    /// addresses of its interfaces itself.
    pub own_addresses: Vec<String>,
    /// Unprotected destinations.
    pub unprotected: UnprotectedConfig,
    /// Special-purpose ranges exempted from the bogon filter.
    pub bogon_exempt: Vec<String>,
    /// Allow-listed prefixes.
    pub allow: Vec<String>,
    /// Files of allow-listed prefixes, one per line.
    pub allow_files: Vec<PathBuf>,
    /// Deny-listed prefixes.
    pub deny: Vec<String>,
    /// Files of deny-listed prefixes, one per line.
    pub deny_files: Vec<PathBuf>,
}

/// `drop`/`allow`/`monitor`-style words shared by several settings.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModeConfig {
    /// Enforce.
    #[default]
    Mitigate,
    /// Count, forward.
    Monitor,
}

/// Allow or drop.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AllowDrop {
    /// Forward.
    Allow,
    /// Drop.
    #[default]
    Drop,
}

/// Fragment policy words.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FragmentConfig {
    /// Forward.
    #[default]
    Allow,
    /// Drop.
    Drop,
    /// Budget per destination from `fragment_rate`.
    RateLimit,
}

/// A budget: packets/s and/or bits/s (0 = unlimited in that dimension).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Packets per second.
    #[serde(default)]
    pub pps: u64,
    /// Bits per second (of IP length).
    #[serde(default)]
    pub bps: u64,
    /// Burst window in milliseconds.
    #[serde(default = "default_burst_ms")]
    pub burst_ms: u32,
}

fn default_burst_ms() -> u32 {
    dataplane::ratelimit::Rate::DEFAULT_BURST_MS
}

/// A named profile.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// mitigate or monitor.
    pub mode: ModeConfig,
    /// Drop bogon sources.
    pub bogon_sources: bool,
    /// Drop LAND packets.
    pub land: bool,
    /// Drop impossible TCP flag combinations.
    pub tcp_flag_abuse: bool,
    /// Drop TTL 0.
    pub ttl_zero: bool,
    /// IPv4 options: allow or drop.
    pub ipv4_options: AllowDrop,
    /// Fragments: allow, drop or rate-limit.
    pub fragments: FragmentConfig,
    /// Fragment budget per destination (with `fragments = "rate-limit"`).
    pub fragment_rate: Option<RateConfig>,
    /// Budget per source address.
    pub src_limit: Option<RateConfig>,
    /// Budget per destination address.
    pub dst_limit: Option<RateConfig>,
    /// UDP amplification / reflection defence.
    pub amp: crate::amp::AmpProfileConfig,
    /// QUIC Initial validation.
    pub quic: crate::quic::QuicProfileConfig,
    /// SYN authentication of the profile's prefixes.
    pub syn: crate::syn::SynProfileConfig,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            mode: ModeConfig::Mitigate,
            bogon_sources: true,
            land: true,
            tcp_flag_abuse: true,
            ttl_zero: true,
            ipv4_options: AllowDrop::Drop,
            fragments: FragmentConfig::Allow,
            fragment_rate: None,
            src_limit: None,
            dst_limit: None,
            amp: crate::amp::AmpProfileConfig::default(),
            quic: crate::quic::QuicProfileConfig::default(),
            syn: crate::syn::SynProfileConfig::default(),
        }
    }
}

/// A protected prefix.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrefixConfig {
    /// The prefix.
    pub cidr: String,
    /// Profile name.
    #[serde(default = "default_profile_name")]
    pub profile: String,
    /// GRE endpoint of the origin (IPv4), for `forward.mode = "gre"`.
    #[serde(default)]
    pub gre_endpoint: Option<String>,
}

fn default_profile_name() -> String {
    "default".to_string()
}

/// A port condition: one port or an inclusive `"lo-hi"` range.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u16),
    /// `"lo-hi"`.
    Range(String),
}

/// Rule action words.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuleActionConfig {
    /// Stop evaluating rules.
    Allow,
    /// Drop.
    Drop,
    /// Budget from `rate`.
    RateLimit,
}

/// TCP flags condition: `flags & mask == value`, flags named (`"syn,ack"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpFlagsConfig {
    /// Flags to look at.
    pub mask: String,
    /// Which of them must be set.
    pub value: String,
}

/// A firewall rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Stable id (default: position + 1).
    #[serde(default)]
    pub id: Option<u32>,
    /// Action.
    pub action: RuleActionConfig,
    /// Budget for `rate-limit`.
    #[serde(default)]
    pub rate: Option<RateConfig>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `gre` or a number.
    #[serde(default)]
    pub protocol: Option<ProtocolSpec>,
    /// Source prefix.
    #[serde(default)]
    pub src: Option<String>,
    /// Destination prefix.
    #[serde(default)]
    pub dst: Option<String>,
    /// Source ports.
    #[serde(default)]
    pub src_ports: Option<PortSpec>,
    /// Destination ports.
    #[serde(default)]
    pub dst_ports: Option<PortSpec>,
    /// TCP flags.
    #[serde(default)]
    pub tcp_flags: Option<TcpFlagsConfig>,
    /// IP length range `"lo-hi"`.
    #[serde(default)]
    pub length: Option<String>,
    /// TTL range `"lo-hi"`.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// A protocol by name or number.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ProtocolSpec {
    /// Number.
    Number(u8),
    /// Name.
    Name(String),
}

impl Config {
    /// Parses TOML text. `file` names the source in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
        Config::from_toml(&text, path)
    }

    /// Serializes back to TOML (for `policy save`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }

    /// The keys whose value in `next` differs from `self` among the settings a running daemon
    /// applies only at start: sockets, rings and interfaces, next hops resolved at start, the
    /// return-direction XDP program, table capacities, the daemon's own sockets. A reload or
    /// `policy set` that changes one would be reported as applied while the old value stays in
    /// effect, so those are refused instead (empty: nothing needs a restart).
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut check = |key: &'static str, changed: bool| {
            if changed {
                keys.push(key);
            }
        };
        check("dataplane", self.dataplane != next.dataplane);
        check("daemon", self.daemon != next.daemon);
        check("tables", self.tables != next.tables);
        let (a, b) = (&self.forward, &next.forward);
        let hairpin = |f: &ForwardConfig| f.mode == ForwardModeConfig::Hairpin;
        check("forward.mode (to or from hairpin)", hairpin(a) != hairpin(b));
        check("forward.egress", a.egress != b.egress);
        check("forward.symmetric", a.symmetric != b.symmetric);
        // "auto" next hops are resolved from the neighbour table once, at start.
        let auto_changed = |mac_a: &str, ip_a: &Option<String>, mac_b: &str, ip_b: &Option<String>| {
            mac_b == "auto" && (mac_a != "auto" || ip_a != ip_b)
        };
        check(
            "forward.next_hop_mac/next_hop_ip (auto)",
            auto_changed(&a.next_hop_mac, &a.next_hop_ip, &b.next_hop_mac, &b.next_hop_ip),
        );
        check(
            "forward.return_next_hop_mac/return_next_hop_ip (auto)",
            b.symmetric
                && auto_changed(
                    &a.return_next_hop_mac,
                    &a.return_next_hop_ip,
                    &b.return_next_hop_mac,
                    &b.return_next_hop_ip,
                ),
        );
        let (q, r) = (&self.quic, &next.quic);
        check("quic.flows", q.flows != r.flows);
        check("quic.src_buckets", q.src_buckets != r.src_buckets);
        check("quic.dst_buckets", q.dst_buckets != r.dst_buckets);
        check("quic.pending", q.pending != r.pending);
        check("quic.max_client_hello", q.max_client_hello != r.max_client_hello);
        check("quic.summaries", q.summaries != r.summaries);
        check("quic.replay_slots", q.replay_slots != r.replay_slots);
        let (s, t) = (&self.syn, &next.syn);
        check("syn.verified_sources", s.verified_sources != t.verified_sources);
        check("syn.check_failure_sources", s.check_failure_sources != t.check_failure_sources);
        check("syn.retransmit_entries", s.retransmit_entries != t.retransmit_entries);
        check("syn.unverified_buckets", s.unverified_buckets != t.unverified_buckets);
        check("syn.verified_syn_buckets", s.verified_syn_buckets != t.verified_syn_buckets);
        check("syn.auto_prefixes", s.auto_prefixes != t.auto_prefixes);
        let (m, n) = (&self.amp, &next.amp);
        check("amp.bucket_slots", m.bucket_slots != n.bucket_slots);
        check("amp.fragment_slots", m.fragment_slots != n.fragment_slots);
        check("amp.request_slots", m.request_slots != n.request_slots);
        keys
    }
}

/// Parses `text` as a prefix, naming `key` in the error.
pub fn parse_cidr(file: &Path, key: &str, text: &str) -> Result<Cidr, ConfigError> {
    text.parse::<Cidr>().map_err(|e| ConfigError::new(file, key, e.to_string()))
}
