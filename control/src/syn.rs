//! Configuration of SYN authentication (`dataplane::syn`): the global `[syn]` section (fleet
//! secret, cookie period, verified-source TTL, table sizes) and each profile's
//! `[profiles.NAME.syn]` (method, when, auto thresholds, strict, budget for unverified non-SYN
//! TCP, retransmission window, SYN budget per verified source, challenge segment), and the functions compiling them into the dataplane's types.
//!
//! The secret: `secret` (32 hex digits) or `secret_file` (a file holding 32 hex digits, or 16 raw
//! bytes; relative paths are read from the config file's directory). With neither, the daemon's
//! randomness (`SecretInputs::random`) is used, and kept across reloads. When a reload changes the
//! key, the previous one stays valid for one period (`Secrets::rotate`), so the control plane
//! passes the running policy's `Global` as `SecretInputs::previous`. Errors name the key.

use crate::config::RateConfig;
use crate::error::ConfigError;
use dataplane::ratelimit::Rate;
use dataplane::syn::auto::Thresholds;
use dataplane::syn::cookie::{Key, Secrets};
use dataplane::syn::verified::MAX_TTL_SECS;
use dataplane::syn::{Challenge, Global, Method, Settings, SharedConfig, StateConfig, VERIFIED_SYN_LIMIT, When};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The global `[syn]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SynConfig {
    /// Cookie secret shared by the fleet: 32 hex digits (128 bits).
    pub secret: Option<String>,
    /// File holding the secret (32 hex digits, or 16 raw bytes), instead of `secret`.
    pub secret_file: Option<PathBuf>,
    /// Cookie time slot in seconds; a cookie is accepted for one to two slots.
    pub period_secs: u64,
    /// How long a verified source stays verified (seconds; not extended by use).
    pub verified_ttl_secs: u64,
    /// Verified sources remembered (all workers share one table).
    pub verified_sources: usize,
    /// Failed cookie checks a source may cause per second, per worker; then its RSTs go unchecked.
    pub check_failures_pps: u64,
    /// Sources whose failed checks are counted (per worker).
    pub check_failure_sources: usize,
    /// SYNs remembered for `method = "rst+retransmit"` (per worker).
    pub retransmit_entries: usize,
    /// Destinations with a budget for unverified non-SYN TCP (per worker).
    pub unverified_buckets: usize,
    /// Verified sources with a SYN budget (`verified_syn_pps`; per worker).
    pub verified_syn_buckets: usize,
    /// Prefixes tracked by `when = "auto"` (all workers share one table).
    pub auto_prefixes: usize,
}

impl Default for SynConfig {
    fn default() -> Self {
        let shared = SharedConfig::default();
        let state = StateConfig::default();
        let global = Global::default();
        SynConfig {
            secret: None,
            secret_file: None,
            period_secs: global.secrets.period(),
            verified_ttl_secs: u64::from(global.verified_ttl_secs),
            verified_sources: shared.verified_sources,
            check_failures_pps: global.check_failures.pps,
            check_failure_sources: state.check_failures,
            retransmit_entries: state.retransmit,
            unverified_buckets: state.unverified_buckets,
            verified_syn_buckets: state.verified_syn_buckets,
            auto_prefixes: shared.auto_prefixes,
        }
    }
}

/// `method`: how sources are authenticated.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum MethodConfig {
    /// SYN-ACK challenge answered by an RST.
    #[default]
    #[serde(rename = "rst")]
    Rst,
    /// As `rst`, and a retransmitted SYN (same 4-tuple and ISN) within the window verifies too.
    #[serde(rename = "rst+retransmit")]
    RstRetransmit,
    /// No SYN authentication.
    #[serde(rename = "off")]
    Off,
}

/// `challenge`: what answers an unverified SYN.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeConfig {
    /// A bare ACK carrying the cookie (stateful middleboxes on the client's side ignore it).
    #[default]
    Ack,
    /// A SYN-ACK carrying the cookie.
    SynAck,
}

/// `when`: always, or per prefix by its SYN rate.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhenConfig {
    /// Always on.
    #[default]
    Always,
    /// On above `auto_on_pps`, off after `auto_hold_secs` below `auto_off_pps`.
    Auto,
}

/// A profile's `[profiles.NAME.syn]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SynProfileConfig {
    /// `rst`, `rst+retransmit` or `off`.
    pub method: MethodConfig,
    /// `ack` or `syn-ack`: the segment carrying the cookie.
    pub challenge: ChallengeConfig,
    /// `always` or `auto`.
    pub when: WhenConfig,
    /// `auto`: SYNs per second toward a prefix that switch authentication on.
    pub auto_on_pps: u64,
    /// `auto`: SYNs per second below which it may switch off.
    pub auto_off_pps: u64,
    /// `auto`: seconds below `auto_off_pps` before switching off.
    pub auto_hold_secs: u64,
    /// Drop non-SYN TCP from unverified sources.
    pub strict: bool,
    /// Budget per destination for non-SYN TCP from unverified sources (none: unlimited).
    pub unverified_non_syn: Option<RateConfig>,
    /// `rst+retransmit`: earliest a retransmitted SYN verifies (ms after the first).
    pub retransmit_min_ms: u64,
    /// `rst+retransmit`: latest a retransmitted SYN verifies (ms after the first).
    pub retransmit_max_ms: u64,
    /// SYNs per second one verified source may send (appliance-wide): bounds a flood that
    /// spoofs a verified client's exact address. 0: no budget.
    pub verified_syn_pps: u64,
    /// Burst of `verified_syn_pps`, in milliseconds of its rate.
    pub verified_syn_burst_ms: u32,
}

impl Default for SynProfileConfig {
    fn default() -> Self {
        let s = Settings::default();
        let t = Thresholds::default();
        SynProfileConfig {
            method: MethodConfig::Rst,
            challenge: match s.challenge {
                Challenge::Ack => ChallengeConfig::Ack,
                Challenge::SynAck => ChallengeConfig::SynAck,
            },
            when: WhenConfig::Always,
            auto_on_pps: t.on_pps,
            auto_off_pps: t.off_pps,
            auto_hold_secs: t.hold_ns / 1_000_000_000,
            strict: false,
            unverified_non_syn: None,
            retransmit_min_ms: s.retransmit_min_ns / 1_000_000,
            retransmit_max_ms: s.retransmit_max_ns / 1_000_000,
            verified_syn_pps: s.verified_syn_limit.map_or(0, |r| r.pps),
            verified_syn_burst_ms: s.verified_syn_limit.map_or(VERIFIED_SYN_LIMIT.burst_ms, |r| r.burst_ms),
        }
    }
}

/// What the daemon supplies to compile the secrets.
#[derive(Clone, Copy)]
pub struct SecretInputs<'a> {
    /// 16 random bytes from the OS, used when the config has no secret.
    pub random: [u8; 16],
    /// The running policy's global part (None at start), so a reload keeps a random key and a
    /// changed key keeps the previous one for a period.
    pub previous: Option<&'a Global>,
    /// Wall-clock seconds now (the rotation time).
    pub wall_secs: u64,
    /// Reads `secret_file` (the compiler's, which may keep what it read last; None: the file
    /// system).
    pub read: Option<crate::compile::ReadFile<'a>>,
}

impl core::fmt::Debug for SecretInputs<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretInputs")
            .field("previous", &self.previous.is_some())
            .field("wall_secs", &self.wall_secs)
            .finish_non_exhaustive()
    }
}

fn in_range(file: &Path, key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(file, key, format!("{v} must be between {lo} and {hi}")));
    }
    Ok(())
}

/// A budget, checked like every other `RateConfig` of the file.
fn compile_rate(file: &Path, key: &str, r: &RateConfig) -> Result<Rate, ConfigError> {
    if r.pps == 0 && r.bps == 0 {
        return Err(ConfigError::new(file, key, "a budget needs pps or bps above 0"));
    }
    if r.burst_ms == 0 || r.burst_ms > 10_000 {
        return Err(ConfigError::new(file, &format!("{key}.burst_ms"), format!("{} must be 1..=10000", r.burst_ms)));
    }
    Ok(Rate { pps: r.pps, bytes_per_sec: r.bps.div_ceil(8), burst_ms: r.burst_ms })
}

/// Compiles a profile's `syn` section; `key` is its dotted path (`profiles.web.syn`).
pub fn compile_profile(file: &Path, key: &str, p: &SynProfileConfig) -> Result<Settings, ConfigError> {
    let k = |s: &str| format!("{key}.{s}");
    let method = match p.method {
        MethodConfig::Rst => Method::Rst,
        MethodConfig::RstRetransmit => Method::RstRetransmit,
        MethodConfig::Off => Method::Off,
    };
    let when = match p.when {
        WhenConfig::Always => When::Always,
        WhenConfig::Auto => {
            in_range(file, &k("auto_on_pps"), p.auto_on_pps, 1, u64::from(u32::MAX))?;
            if p.auto_off_pps > p.auto_on_pps {
                return Err(ConfigError::new(
                    file,
                    &k("auto_off_pps"),
                    format!("{} is above auto_on_pps ({}): it must be at most that", p.auto_off_pps, p.auto_on_pps),
                ));
            }
            in_range(file, &k("auto_hold_secs"), p.auto_hold_secs, 1, 86_400)?;
            When::Auto(Thresholds {
                on_pps: p.auto_on_pps,
                off_pps: p.auto_off_pps,
                hold_ns: p.auto_hold_secs * 1_000_000_000,
            })
        }
    };
    in_range(file, &k("retransmit_max_ms"), p.retransmit_max_ms, 1, 60_000)?;
    if p.retransmit_min_ms >= p.retransmit_max_ms {
        return Err(ConfigError::new(
            file,
            &k("retransmit_min_ms"),
            format!("{} must be below retransmit_max_ms ({})", p.retransmit_min_ms, p.retransmit_max_ms),
        ));
    }
    let unverified_limit =
        p.unverified_non_syn.as_ref().map(|r| compile_rate(file, &k("unverified_non_syn"), r)).transpose()?;
    in_range(file, &k("verified_syn_burst_ms"), u64::from(p.verified_syn_burst_ms), 1, 10_000)?;
    let verified_syn_limit = (p.verified_syn_pps > 0).then_some(Rate {
        pps: p.verified_syn_pps,
        bytes_per_sec: 0,
        burst_ms: p.verified_syn_burst_ms,
    });
    Ok(Settings {
        method,
        challenge: match p.challenge {
            ChallengeConfig::Ack => Challenge::Ack,
            ChallengeConfig::SynAck => Challenge::SynAck,
        },
        when,
        strict: p.strict,
        unverified_limit,
        retransmit_min_ns: p.retransmit_min_ms * 1_000_000,
        retransmit_max_ns: p.retransmit_max_ms * 1_000_000,
        verified_syn_limit,
    })
}

/// Parses 32 hex digits into a key.
pub fn parse_secret_hex(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// The key the config names, if any. `file` is the config file (relative paths start beside it).
fn configured_key(
    file: &Path,
    cfg: &SynConfig,
    read: Option<crate::compile::ReadFile<'_>>,
) -> Result<Option<[u8; 16]>, ConfigError> {
    let key = match (&cfg.secret, &cfg.secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(file, "syn.secret_file", "set `secret` or `secret_file`, not both"));
        }
        (Some(text), None) => parse_secret_hex(text).ok_or_else(|| {
            ConfigError::new(file, "syn.secret", "must be 32 hex digits (128 bits), e.g. from `openssl rand -hex 16`")
        })?,
        (None, Some(path)) => {
            let base = file.parent().unwrap_or(Path::new("."));
            let full = if path.is_absolute() { path.clone() } else { base.join(path) };
            let bytes = read.map_or_else(|| std::fs::read(&full), |read| read(&full)).map_err(|e| {
                ConfigError::new(file, "syn.secret_file", format!("cannot read {}: {e}", full.display()))
            })?;
            let from_text = std::str::from_utf8(&bytes).ok().and_then(parse_secret_hex);
            match (from_text, <[u8; 16]>::try_from(bytes.as_slice())) {
                (Some(key), _) | (None, Ok(key)) => key,
                (None, Err(_)) => {
                    return Err(ConfigError::new(
                        file,
                        "syn.secret_file",
                        format!("{} must hold 32 hex digits or exactly 16 bytes", full.display()),
                    ));
                }
            }
        }
        (None, None) => return Ok(None),
    };
    if key == [0; 16] {
        let which = if cfg.secret.is_some() { "syn.secret" } else { "syn.secret_file" };
        return Err(ConfigError::new(file, which, "an all-zero secret is no secret"));
    }
    Ok(Some(key))
}

/// Compiles the `[syn]` section's policy part: secrets (see the module docs), TTL, failure budget.
pub fn compile_global(file: &Path, cfg: &SynConfig, inputs: &SecretInputs<'_>) -> Result<Global, ConfigError> {
    in_range(file, "syn.period_secs", cfg.period_secs, 1, 3_600)?;
    in_range(file, "syn.verified_ttl_secs", cfg.verified_ttl_secs, 1, u64::from(MAX_TTL_SECS))?;
    in_range(file, "syn.check_failures_pps", cfg.check_failures_pps, 1, 1_000_000)?;
    let previous = inputs.previous.map(|g| &g.secrets);
    let (key, random) = match configured_key(file, cfg, inputs.read)? {
        Some(key) => (key, false),
        // No secret configured: keep the random key already in use, or draw one.
        None => match previous.filter(|s| s.is_random()) {
            Some(s) => (s.current().bytes(), true),
            None => (inputs.random, true),
        },
    };
    let secrets = match previous {
        Some(prev) => prev.rotate(Key::new(key), inputs.wall_secs).with_period(cfg.period_secs).with_random(random),
        None => Secrets::new(Key::new(key), cfg.period_secs).with_random(random),
    };
    Ok(Global {
        secrets,
        verified_ttl_secs: cfg.verified_ttl_secs as u32,
        check_failures: Rate { pps: cfg.check_failures_pps, bytes_per_sec: 0, burst_ms: 1000 },
    })
}

const MAX_ENTRIES: u64 = 1 << 26;

/// Sizes of the cross-worker tables from the `[syn]` section, after checking every size of the
/// section (per-worker ones included). Fixed at start: a reload does not resize.
pub fn shared_config(file: &Path, cfg: &SynConfig) -> Result<SharedConfig, ConfigError> {
    for (key, v) in [
        ("syn.verified_sources", cfg.verified_sources),
        ("syn.check_failure_sources", cfg.check_failure_sources),
        ("syn.retransmit_entries", cfg.retransmit_entries),
        ("syn.unverified_buckets", cfg.unverified_buckets),
        ("syn.verified_syn_buckets", cfg.verified_syn_buckets),
    ] {
        in_range(file, key, v as u64, 1, MAX_ENTRIES)?;
    }
    in_range(file, "syn.auto_prefixes", cfg.auto_prefixes as u64, 1, 1 << 20)?;
    Ok(SharedConfig { verified_sources: cfg.verified_sources, auto_prefixes: cfg.auto_prefixes })
}

/// Sizes of one worker's tables (`shared_config` has checked them; out-of-range values clamp).
pub fn state_config(cfg: &SynConfig, workers: u32) -> StateConfig {
    let clamp = |v: usize| v.clamp(1, MAX_ENTRIES as usize);
    StateConfig {
        workers: workers.max(1),
        retransmit: clamp(cfg.retransmit_entries),
        check_failures: clamp(cfg.check_failure_sources),
        unverified_buckets: clamp(cfg.unverified_buckets),
        verified_syn_buckets: clamp(cfg.verified_syn_buckets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The shape the sections take in the config file.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct File {
        syn: SynConfig,
        profiles: BTreeMap<String, Profile>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Profile {
        syn: SynProfileConfig,
    }

    const FILE: &str = "/etc/scrubber/scrubber.toml";

    fn load(text: &str) -> Result<File, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn inputs() -> SecretInputs<'static> {
        SecretInputs { random: [0x5a; 16], previous: None, wall_secs: 1_700_000_000, read: None }
    }

    fn profile_err(text: &str) -> ConfigError {
        let f = load(text).unwrap();
        compile_profile(Path::new(FILE), "profiles.web.syn", &f.profiles["web"].syn).unwrap_err()
    }

    fn global_err(text: &str) -> ConfigError {
        let f = load(text).unwrap();
        compile_global(Path::new(FILE), &f.syn, &inputs()).unwrap_err()
    }

    #[test]
    fn defaults_match_the_dataplane() {
        let f = load("").unwrap();
        let p = SynProfileConfig::default();
        assert_eq!(compile_profile(Path::new(FILE), "profiles.x.syn", &p).unwrap(), Settings::default());
        assert_eq!(shared_config(Path::new(FILE), &f.syn).unwrap(), SharedConfig::default());
        assert_eq!(state_config(&f.syn, 1), StateConfig::default());
        assert_eq!(state_config(&f.syn, 4).workers, 4);
        let g = compile_global(Path::new(FILE), &f.syn, &inputs()).unwrap();
        assert_eq!(g.verified_ttl_secs, 300);
        assert_eq!(g.secrets.period(), 60);
        assert!(g.secrets.is_random());
        assert_eq!(g.secrets.current().bytes(), [0x5a; 16]);
    }

    #[test]
    fn a_full_profile_compiles() {
        let f = load(
            r#"
            [profiles.web.syn]
            method = "rst+retransmit"
            challenge = "syn-ack"
            when = "auto"
            auto_on_pps = 20000
            auto_off_pps = 2000
            auto_hold_secs = 30
            strict = true
            unverified_non_syn = { pps = 5000 }
            retransmit_min_ms = 400
            retransmit_max_ms = 2500
            verified_syn_pps = 20
            verified_syn_burst_ms = 500
            "#,
        )
        .unwrap();
        let s = compile_profile(Path::new(FILE), "profiles.web.syn", &f.profiles["web"].syn).unwrap();
        assert_eq!(s.method, Method::RstRetransmit);
        assert_eq!(s.challenge, Challenge::SynAck);
        assert_eq!(s.when, When::Auto(Thresholds { on_pps: 20_000, off_pps: 2_000, hold_ns: 30_000_000_000 }));
        assert!(s.strict);
        assert_eq!(s.unverified_limit, Some(Rate::pps(5_000)));
        assert_eq!((s.retransmit_min_ns, s.retransmit_max_ns), (400_000_000, 2_500_000_000));
        assert_eq!(s.verified_syn_limit, Some(Rate { pps: 20, bytes_per_sec: 0, burst_ms: 500 }));
        let unlimited = load("[profiles.web.syn]\nverified_syn_pps = 0\n").unwrap();
        let s = compile_profile(Path::new(FILE), "profiles.web.syn", &unlimited.profiles["web"].syn).unwrap();
        assert_eq!(s.verified_syn_limit, None, "0 turns the budget off");
        let off = load("[profiles.web.syn]\nmethod = \"off\"\n").unwrap();
        let s = compile_profile(Path::new(FILE), "profiles.web.syn", &off.profiles["web"].syn).unwrap();
        assert_eq!(s.method, Method::Off);
    }

    #[test]
    fn profile_errors_name_the_key() {
        let e = profile_err("[profiles.web.syn]\nwhen = \"auto\"\nauto_on_pps = 100\nauto_off_pps = 200\n");
        assert_eq!(e.key, "profiles.web.syn.auto_off_pps");
        let e = profile_err("[profiles.web.syn]\nwhen = \"auto\"\nauto_on_pps = 0\n");
        assert_eq!(e.key, "profiles.web.syn.auto_on_pps");
        let e = profile_err("[profiles.web.syn]\nwhen = \"auto\"\nauto_hold_secs = 0\n");
        assert_eq!(e.key, "profiles.web.syn.auto_hold_secs");
        let e = profile_err("[profiles.web.syn]\nretransmit_min_ms = 3000\nretransmit_max_ms = 500\n");
        assert_eq!(e.key, "profiles.web.syn.retransmit_min_ms");
        let e = profile_err("[profiles.web.syn]\nverified_syn_burst_ms = 0\n");
        assert_eq!(e.key, "profiles.web.syn.verified_syn_burst_ms");
        let e = profile_err("[profiles.web.syn]\nunverified_non_syn = { burst_ms = 10 }\n");
        assert_eq!(e.key, "profiles.web.syn.unverified_non_syn");
        let e = profile_err("[profiles.web.syn]\nunverified_non_syn = { pps = 10, burst_ms = 0 }\n");
        assert_eq!(e.key, "profiles.web.syn.unverified_non_syn.burst_ms");
        assert!(
            e.to_string().starts_with("/etc/scrubber/scrubber.toml: profiles.web.syn.unverified_non_syn.burst_ms: ")
        );
        // Thresholds are only checked when they are used.
        let f = load("[profiles.web.syn]\nauto_on_pps = 0\n").unwrap();
        assert!(compile_profile(Path::new(FILE), "profiles.web.syn", &f.profiles["web"].syn).is_ok());
    }

    #[test]
    fn unknown_words_and_keys_are_refused() {
        let e = load("[profiles.web.syn]\nmethod = \"cookie\"\n").unwrap_err();
        assert!(e.contains("rst+retransmit"), "{e}");
        let e = load("[profiles.web.syn]\nwhen = \"sometimes\"\n").unwrap_err();
        assert!(e.contains("auto"), "{e}");
        let e = load("[syn]\nperiod = 60\n").unwrap_err();
        assert!(e.contains("period"), "{e}");
    }

    #[test]
    fn global_errors_name_the_key() {
        assert_eq!(global_err("[syn]\nsecret = \"abc\"\n").key, "syn.secret");
        assert_eq!(global_err("[syn]\nsecret = \"zz112233445566778899aabbccddeeff\"\n").key, "syn.secret");
        assert_eq!(global_err("[syn]\nsecret = \"00000000000000000000000000000000\"\n").key, "syn.secret");
        assert_eq!(
            global_err("[syn]\nsecret = \"00112233445566778899aabbccddeeff\"\nsecret_file = \"k\"\n").key,
            "syn.secret_file"
        );
        let e = global_err("[syn]\nsecret_file = \"no-such-key-file\"\n");
        assert_eq!(e.key, "syn.secret_file");
        assert!(e.message.contains("/etc/scrubber/no-such-key-file"), "{}", e.message);
        assert_eq!(global_err("[syn]\nperiod_secs = 0\n").key, "syn.period_secs");
        assert_eq!(global_err("[syn]\nverified_ttl_secs = 0\n").key, "syn.verified_ttl_secs");
        assert_eq!(global_err("[syn]\nverified_ttl_secs = 99999999\n").key, "syn.verified_ttl_secs");
        assert_eq!(global_err("[syn]\ncheck_failures_pps = 0\n").key, "syn.check_failures_pps");
        let f = load("[syn]\nverified_sources = 0\n").unwrap();
        assert_eq!(shared_config(Path::new(FILE), &f.syn).unwrap_err().key, "syn.verified_sources");
        let f = load("[syn]\nauto_prefixes = 0\n").unwrap();
        assert_eq!(shared_config(Path::new(FILE), &f.syn).unwrap_err().key, "syn.auto_prefixes");
        let f = load("[syn]\nretransmit_entries = 0\n").unwrap();
        assert_eq!(shared_config(Path::new(FILE), &f.syn).unwrap_err().key, "syn.retransmit_entries");
        let f = load("[syn]\nverified_syn_buckets = 0\n").unwrap();
        assert_eq!(shared_config(Path::new(FILE), &f.syn).unwrap_err().key, "syn.verified_syn_buckets");
    }

    #[test]
    fn hex_secret_and_secret_files() {
        let f = load("[syn]\nsecret = \"00112233445566778899AABBCCDDEEFF\"\nperiod_secs = 30\n").unwrap();
        let g = compile_global(Path::new(FILE), &f.syn, &inputs()).unwrap();
        assert_eq!(g.secrets.current().bytes()[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(g.secrets.period(), 30);
        assert!(!g.secrets.is_random());

        let dir = std::env::temp_dir().join(format!("scrubber-syn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("scrubber.toml");
        std::fs::write(dir.join("hex.key"), "ffeeddccbbaa99887766554433221100\n").unwrap();
        std::fs::write(dir.join("raw.key"), [7u8; 16]).unwrap();
        std::fs::write(dir.join("bad.key"), "not a key").unwrap();
        let with = |name: &str| SynConfig { secret_file: Some(PathBuf::from(name)), ..SynConfig::default() };
        let g = compile_global(&config, &with("hex.key"), &inputs()).unwrap();
        assert_eq!(g.secrets.current().bytes()[0], 0xff);
        let g = compile_global(&config, &with("raw.key"), &inputs()).unwrap();
        assert_eq!(g.secrets.current().bytes(), [7; 16]);
        let e = compile_global(&config, &with("bad.key"), &inputs()).unwrap_err();
        assert_eq!(e.key, "syn.secret_file");
        assert!(e.message.contains("32 hex digits or exactly 16 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reloads_keep_a_random_key_and_rotate_a_changed_one() {
        let none = SynConfig::default();
        let first = compile_global(Path::new(FILE), &none, &inputs()).unwrap();
        // A reload draws new randomness, but the running random key is kept.
        let again = SecretInputs { random: [0x11; 16], previous: Some(&first), wall_secs: 1_700_000_100, read: None };
        let second = compile_global(Path::new(FILE), &none, &again).unwrap();
        assert_eq!(second.secrets, first.secrets);

        // A configured key replaces it; the random one stays valid for a period.
        let set = SynConfig { secret: Some("00112233445566778899aabbccddeeff".into()), ..SynConfig::default() };
        let third = compile_global(Path::new(FILE), &set, &SecretInputs { previous: Some(&second), ..again }).unwrap();
        assert_eq!(third.secrets.current().bytes()[1], 0x11);
        assert_eq!(third.secrets.previous().unwrap().bytes(), [0x5a; 16]);
        assert_eq!(third.secrets.rotated_at(), 1_700_000_100);
        assert!(!third.secrets.is_random());

        // The same key again: no rotation, the grace period is not restarted.
        let later = SecretInputs { random: [0x22; 16], previous: Some(&third), wall_secs: 1_700_000_130, read: None };
        let fourth = compile_global(Path::new(FILE), &set, &later).unwrap();
        assert_eq!(fourth.secrets, third.secrets);

        // Removing the secret from the config goes back to a fresh random key.
        let fifth = compile_global(Path::new(FILE), &none, &later).unwrap();
        assert_eq!(fifth.secrets.current().bytes(), [0x22; 16]);
        assert!(fifth.secrets.is_random());
        assert_eq!(fifth.secrets.previous().unwrap().bytes()[1], 0x11);
    }

    #[test]
    fn round_trips_through_toml() {
        let f = load("[syn]\nsecret = \"00112233445566778899aabbccddeeff\"\nverified_sources = 4096\n").unwrap();
        let text = toml::to_string(&f.syn).unwrap();
        let back: SynConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, f.syn);
        let p = SynProfileConfig { method: MethodConfig::RstRetransmit, ..SynProfileConfig::default() };
        let text = toml::to_string(&p).unwrap();
        assert!(text.contains("method = \"rst+retransmit\""), "{text}");
        assert_eq!(toml::from_str::<SynProfileConfig>(&text).unwrap(), p);
    }
}
