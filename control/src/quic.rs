//! Configuration of QUIC Initial validation: the appliance-wide `[quic]` section and each
//! profile's `[profiles.NAME.quic]` table, and their compilation into `dataplane::quic` types.
//!
//! ```toml
//! [quic]                       # appliance-wide (all optional)
//! flow_ttl_secs = 120          # a flow is forgotten this long after its last packet
//! replay_ttl_secs = 10         # a DCID is forgotten this long after its last sighting
//! replay_limit = 3             # most 4-tuples one DCID may come from (1..=32)
//! decrypt_budget_pps = 200000  # first Initials each worker may decrypt per second (0: no limit)
//! max_hello_packets = 4        # Initials decrypted to complete one ClientHello (1..=16)
//! flows = 131072               # per worker
//! src_buckets = 65536          # per worker
//! dst_buckets = 16384          # per worker
//! pending = 1024               # split ClientHellos reassembled at once, per worker
//! max_client_hello = 8192      # bytes (512..=65536)
//! summaries = 16384            # ClientHello summaries kept for capture tags, per worker
//! replay_slots = 1048576       # shared DCID table
//!
//! [profiles.web.quic]
//! enabled = true
//! ports = [443, "8443-8444"]
//! gating = "strict"            # or "lenient"
//! unknown_versions = "drop"    # or "pass"
//! src_initial_pps = 100        # first Initials per source (IPv6: per /64); 0 = no limit
//! dst_initial_pps = 50000      # first Initials per destination address; 0 = no limit
//! initial_burst_ms = 100
//! fingerprint = true
//! hello_default = "allow"      # or "drop"
//! hello_rules = [
//!   { sni = "*.bad.example", action = "drop" },
//!   { fingerprint = "q13d0312h3_*", action = "drop" },
//! ]
//! ```

use crate::error::ConfigError;
use dataplane::quic::{
    FingerprintPattern, Gating, Global, HelloAction, HelloRule, Settings, Shared, SharedConfig, SniPattern,
    StateConfig, UnknownVersion,
};
use dataplane::ratelimit::Rate;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[quic]`: appliance-wide QUIC settings and table sizes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QuicGlobalConfig {
    /// Flow entry lifetime after its last packet, in seconds.
    pub flow_ttl_secs: u64,
    /// DCID lifetime in the replay table after its last sighting, in seconds.
    pub replay_ttl_secs: u64,
    /// Most distinct 4-tuples one DCID may arrive from.
    pub replay_limit: u32,
    /// First Initials each worker may decrypt per second (0: unlimited).
    pub decrypt_budget_pps: u64,
    /// Most Initials decrypted to complete one flow's ClientHello.
    pub max_hello_packets: u8,
    /// Flow entries per worker.
    pub flows: usize,
    /// Per-source Initial buckets per worker.
    pub src_buckets: usize,
    /// Per-destination Initial buckets per worker.
    pub dst_buckets: usize,
    /// Split ClientHellos reassembled at once, per worker.
    pub pending: usize,
    /// Largest ClientHello reassembled, in bytes.
    pub max_client_hello: usize,
    /// ClientHello summaries kept per worker for capture tags.
    pub summaries: usize,
    /// Slots of the shared DCID replay table.
    pub replay_slots: usize,
}

impl Default for QuicGlobalConfig {
    fn default() -> Self {
        let g = Global::default();
        let s = StateConfig::default();
        QuicGlobalConfig {
            flow_ttl_secs: g.flow_ttl_ns / 1_000_000_000,
            replay_ttl_secs: g.replay_ttl_ns / 1_000_000_000,
            replay_limit: g.replay_limit,
            decrypt_budget_pps: g.decrypt_budget_pps,
            max_hello_packets: g.max_hello_packets,
            flows: s.flows,
            src_buckets: s.src_buckets,
            dst_buckets: s.dst_buckets,
            pending: s.pending,
            max_client_hello: s.max_client_hello,
            summaries: s.summaries,
            replay_slots: Shared::DEFAULT_REPLAY_SLOTS,
        }
    }
}

/// `strict` or `lenient`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GatingConfig {
    /// Only admitted flows' Handshake, 0-RTT and short-header packets pass.
    #[default]
    Strict,
    /// Those always pass; Initials over the decryption budget pass unadmitted.
    Lenient,
}

/// `drop` or `pass`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownVersionConfig {
    /// Drop.
    #[default]
    Drop,
    /// Pass (datagrams of at least 1200 bytes).
    Pass,
}

/// `allow` or `drop`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HelloActionConfig {
    /// Admit.
    #[default]
    Allow,
    /// Refuse.
    Drop,
}

/// A port or an inclusive range `"lo-hi"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum QuicPort {
    /// One port.
    One(u16),
    /// `"lo-hi"`.
    Range(String),
}

/// One ClientHello rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HelloRuleConfig {
    /// Server name: `name`, `*.suffix`, or `""` for "no server name".
    #[serde(default)]
    pub sni: Option<String>,
    /// JA4-style fingerprint, or a prefix of one ending in `*`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Action.
    pub action: HelloActionConfig,
}

/// `[profiles.NAME.quic]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QuicProfileConfig {
    /// QUIC protection on.
    pub enabled: bool,
    /// QUIC ports.
    pub ports: Vec<QuicPort>,
    /// Gating of unadmitted flows.
    pub gating: GatingConfig,
    /// Versions other than 1 and 2.
    pub unknown_versions: UnknownVersionConfig,
    /// First Initials per source per second, appliance-wide (0: no limit).
    pub src_initial_pps: u64,
    /// First Initials per destination address per second, appliance-wide (0: no limit).
    pub dst_initial_pps: u64,
    /// Burst window of both Initial budgets, in milliseconds.
    pub initial_burst_ms: u32,
    /// Compute the JA4-style fingerprint (when a fingerprint rule or a running capture reads it).
    pub fingerprint: bool,
    /// Action when no rule matches.
    pub hello_default: HelloActionConfig,
    /// ClientHello rules, first match wins.
    pub hello_rules: Vec<HelloRuleConfig>,
}

impl Default for QuicProfileConfig {
    fn default() -> Self {
        let s = Settings::default();
        QuicProfileConfig {
            enabled: s.enabled,
            ports: vec![QuicPort::One(443)],
            gating: GatingConfig::Strict,
            unknown_versions: UnknownVersionConfig::Drop,
            src_initial_pps: s.src_initial_rate.map_or(0, |r| r.pps),
            dst_initial_pps: s.dst_initial_rate.map_or(0, |r| r.pps),
            initial_burst_ms: Rate::DEFAULT_BURST_MS,
            fingerprint: s.fingerprint,
            hello_default: HelloActionConfig::Allow,
            hello_rules: Vec::new(),
        }
    }
}

/// What `compile_global` produces: the policy part, the worker sizing and the shared sizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledGlobal {
    /// Goes into `Policy` (swappable).
    pub global: Global,
    /// Sizes of each worker's tables (fixed at start; set `workers` per deployment).
    pub state: StateConfig,
    /// Slots of the shared replay table (fixed at start).
    pub replay_slots: usize,
}

fn range_check<T: PartialOrd + std::fmt::Display + Copy>(
    file: &Path,
    key: &str,
    value: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::new(file, key, format!("{value} must be between {lo} and {hi}")));
    }
    Ok(value)
}

/// Validates and compiles `[quic]` (key prefix `key`, normally "quic").
pub fn compile_global(file: &Path, key: &str, c: &QuicGlobalConfig) -> Result<CompiledGlobal, ConfigError> {
    let k = |sub: &str| format!("{key}.{sub}");
    range_check(file, &k("flow_ttl_secs"), c.flow_ttl_secs, 1, 86_400)?;
    range_check(file, &k("replay_ttl_secs"), c.replay_ttl_secs, 1, 240)?;
    range_check(file, &k("replay_limit"), c.replay_limit, 1, 32)?;
    range_check(file, &k("max_hello_packets"), c.max_hello_packets, 1, 16)?;
    range_check(file, &k("max_client_hello"), c.max_client_hello, 512, 65_536)?;
    for (name, v) in [
        ("flows", c.flows),
        ("src_buckets", c.src_buckets),
        ("dst_buckets", c.dst_buckets),
        ("pending", c.pending),
        ("replay_slots", c.replay_slots),
    ] {
        range_check(file, &k(name), v, 1, 1 << 26)?;
    }
    range_check(file, &k("summaries"), c.summaries, 0, 1 << 22)?;
    Ok(CompiledGlobal {
        global: Global {
            flow_ttl_ns: c.flow_ttl_secs * 1_000_000_000,
            replay_ttl_ns: c.replay_ttl_secs * 1_000_000_000,
            replay_limit: c.replay_limit,
            decrypt_budget_pps: c.decrypt_budget_pps,
            max_hello_packets: c.max_hello_packets,
        },
        state: StateConfig {
            workers: 1,
            flows: c.flows,
            src_buckets: c.src_buckets,
            dst_buckets: c.dst_buckets,
            pending: c.pending,
            max_client_hello: c.max_client_hello,
            summaries: c.summaries,
        },
        replay_slots: c.replay_slots,
    })
}

fn port_range(file: &Path, key: &str, p: &QuicPort) -> Result<(u16, u16), ConfigError> {
    let bad = || ConfigError::new(file, key, "a port (1..=65535) or an inclusive range like \"8443-8444\"");
    let (lo, hi) = match p {
        QuicPort::One(v) => (*v, *v),
        QuicPort::Range(text) => {
            let (a, b) = text.split_once('-').ok_or_else(bad)?;
            (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?)
        }
    };
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn sni_pattern(file: &Path, key: &str, text: &str) -> Result<SniPattern, ConfigError> {
    let name = text.strip_prefix("*.").unwrap_or(text);
    let valid = name.len() <= 253
        && (text.is_empty() || !name.is_empty())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid {
        return Err(ConfigError::new(
            file,
            key,
            format!("`{text}` is not a server name, `*.suffix`, or \"\" (no server name)"),
        ));
    }
    Ok(SniPattern::parse(text))
}

fn fingerprint_pattern(file: &Path, key: &str, text: &str) -> Result<FingerprintPattern, ConfigError> {
    let body = text.strip_suffix('*').unwrap_or(text);
    let exact = body.len() == text.len();
    let valid = !body.is_empty()
        && body.len() <= dataplane::quic::client_hello::JA4_LEN
        && (!exact || body.len() == dataplane::quic::client_hello::JA4_LEN)
        && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(ConfigError::new(
            file,
            key,
            format!(
                "`{text}` is not a 36-character fingerprint like q13d0312h3_55b375c5d22e_06cda9e17597, or a prefix of one ending in `*`"
            ),
        ));
    }
    Ok(FingerprintPattern::parse(text))
}

/// Validates and compiles a profile's `quic` table (key prefix `key`, e.g. "profiles.web.quic").
pub fn compile_profile(file: &Path, key: &str, c: &QuicProfileConfig) -> Result<Settings, ConfigError> {
    let k = |sub: &str| format!("{key}.{sub}");
    if c.enabled && c.ports.is_empty() {
        return Err(ConfigError::new(file, &k("ports"), "at least one port is needed when enabled = true"));
    }
    let ports = c
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| port_range(file, &k(&format!("ports[{i}]")), p))
        .collect::<Result<Vec<_>, _>>()?;
    range_check(file, &k("initial_burst_ms"), c.initial_burst_ms, 1, 10_000)?;
    let rate = |pps: u64| (pps > 0).then_some(Rate { pps, bytes_per_sec: 0, burst_ms: c.initial_burst_ms });
    let mut hello_rules = Vec::with_capacity(c.hello_rules.len());
    for (i, r) in c.hello_rules.iter().enumerate() {
        let rk = k(&format!("hello_rules[{i}]"));
        let sni = r.sni.as_deref().map(|t| sni_pattern(file, &format!("{rk}.sni"), t)).transpose()?;
        let fingerprint =
            r.fingerprint.as_deref().map(|t| fingerprint_pattern(file, &format!("{rk}.fingerprint"), t)).transpose()?;
        if fingerprint.is_some() && !c.fingerprint {
            return Err(ConfigError::new(
                file,
                &format!("{rk}.fingerprint"),
                format!("fingerprint rules need {} = true", k("fingerprint")),
            ));
        }
        let action = match r.action {
            HelloActionConfig::Allow => HelloAction::Allow,
            HelloActionConfig::Drop => HelloAction::Drop,
        };
        hello_rules.push(HelloRule { sni, fingerprint, action });
    }
    Ok(Settings {
        enabled: c.enabled,
        ports,
        gating: match c.gating {
            GatingConfig::Strict => Gating::Strict,
            GatingConfig::Lenient => Gating::Lenient,
        },
        unknown_versions: match c.unknown_versions {
            UnknownVersionConfig::Drop => UnknownVersion::Drop,
            UnknownVersionConfig::Pass => UnknownVersion::Pass,
        },
        src_initial_rate: rate(c.src_initial_pps),
        dst_initial_rate: rate(c.dst_initial_pps),
        fingerprint: c.fingerprint,
        hello_rules,
        hello_default: match c.hello_default {
            HelloActionConfig::Allow => HelloAction::Allow,
            HelloActionConfig::Drop => HelloAction::Drop,
        },
    })
}

/// The worker sizing for `workers` workers, from a validated `[quic]` section (call
/// `compile_global` first; this one cannot fail, so `pipeline_config` can use it).
pub fn state_config(c: &QuicGlobalConfig, workers: u32) -> StateConfig {
    StateConfig {
        workers: workers.max(1),
        flows: c.flows.max(1),
        src_buckets: c.src_buckets.max(1),
        dst_buckets: c.dst_buckets.max(1),
        pending: c.pending.max(1),
        max_client_hello: c.max_client_hello.clamp(512, 65_536),
        summaries: c.summaries,
    }
}

/// Sizes of the shared tables the daemon creates once (`dataplane::quic::Shared::new`).
pub fn shared_config(c: &QuicGlobalConfig) -> SharedConfig {
    SharedConfig { replay_slots: c.replay_slots.clamp(1, 1 << 26) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        quic: QuicGlobalConfig,
        profile: QuicProfileConfig,
    }

    fn file() -> &'static Path {
        Path::new("test.toml")
    }

    fn doc(text: &str) -> Doc {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_compile_to_the_dataplane_defaults() {
        let g = compile_global(file(), "quic", &QuicGlobalConfig::default()).unwrap();
        assert_eq!(g.global, Global::default());
        assert_eq!(g.state, StateConfig::default());
        let s = compile_profile(file(), "profiles.x.quic", &QuicProfileConfig::default()).unwrap();
        assert_eq!(s, Settings::default());
        let c = QuicGlobalConfig::default();
        assert_eq!(state_config(&c, 4), StateConfig { workers: 4, ..g.state });
        assert_eq!(Shared::new(shared_config(&c), [0; 4]).replay.capacity(), Shared::DEFAULT_REPLAY_SLOTS);
    }

    #[test]
    fn a_full_profile_compiles() {
        let d = doc(r#"
            [quic]
            replay_limit = 5
            decrypt_budget_pps = 1000
            [profile]
            enabled = true
            ports = [443, "8443-8444"]
            gating = "lenient"
            unknown_versions = "pass"
            src_initial_pps = 0
            hello_default = "drop"
            hello_rules = [
              { sni = "*.example.com", action = "allow" },
              { sni = "", action = "drop" },
              { fingerprint = "q13d0312h3_*", action = "allow" },
            ]
        "#);
        let g = compile_global(file(), "quic", &d.quic).unwrap();
        assert_eq!(g.global.replay_limit, 5);
        let s = compile_profile(file(), "profiles.web.quic", &d.profile).unwrap();
        assert!(s.enabled && s.is_quic_port(8444) && !s.is_quic_port(8445));
        assert_eq!(s.gating, Gating::Lenient);
        assert_eq!(s.unknown_versions, UnknownVersion::Pass);
        assert_eq!(s.src_initial_rate, None);
        assert_eq!(s.dst_initial_rate.map(|r| r.pps), Some(50_000));
        assert_eq!(s.hello_rules.len(), 3);
        assert_eq!(s.hello_rules[1].sni, Some(SniPattern::Absent));
        assert_eq!(s.hello_default, HelloAction::Drop);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                r#"[profile]
                enabled = true
                ports = []"#,
                "profiles.p.quic.ports",
            ),
            (
                r#"[profile]
                ports = ["9-3"]"#,
                "profiles.p.quic.ports[0]",
            ),
            (
                r#"[profile]
                hello_rules = [{ sni = "bad name", action = "drop" }]"#,
                "profiles.p.quic.hello_rules[0].sni",
            ),
            (
                r#"[profile]
                hello_rules = [{ fingerprint = "Q13", action = "drop" }]"#,
                "profiles.p.quic.hello_rules[0].fingerprint",
            ),
            (
                r#"[profile]
                fingerprint = false
                hello_rules = [{ fingerprint = "q13*", action = "drop" }]"#,
                "profiles.p.quic.hello_rules[0].fingerprint",
            ),
            (
                r#"[profile]
                initial_burst_ms = 0"#,
                "profiles.p.quic.initial_burst_ms",
            ),
        ];
        for (text, key) in cases {
            let e = compile_profile(file(), "profiles.p.quic", &doc(text).profile).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let d = doc("[quic]\nreplay_limit = 33\n[profile]\n");
        assert_eq!(compile_global(file(), "quic", &d.quic).unwrap_err().key, "quic.replay_limit");
        assert!(toml::from_str::<Doc>("[profile]\nbogus = 1\n").is_err(), "unknown keys are refused");
    }
}
