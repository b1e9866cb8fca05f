//! Compiles a `Config` into the dataplane's `Policy` snapshot, validating as it goes.
//!
//! Everything the types cannot express is checked here, and every error names the key. The
//! daemon passes what it learned from the system (interface MACs and addresses, the next hop's
//! MAC) in a `SystemFacts`; `scrubber check` passes none and gets the same validation.

use crate::config::*;
use crate::error::ConfigError;
use crate::lists::load_prefix_list;
use dataplane::PipelineConfig;
use dataplane::addr::{Addr, Cidr};
use dataplane::parse::proto;
use dataplane::policy::rules::{Rule, RuleAction, Span};
use dataplane::policy::{
    BaselineFilters, ForwardMode, ForwardSettings, FragmentPolicy, Mode, NEVER, Policy, PolicyBuilder, PrefixList,
    Profile, ProtectedPrefix, UnprotectedAction, VlanAction,
};
use dataplane::ratelimit::Rate;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What the daemon found on the system; all empty for an offline check.
#[derive(Clone, Debug, Default)]
pub struct SystemFacts {
    /// Source MAC for forwarded frames (the egress or, for hairpin, ingress interface).
    pub egress_mac: Option<[u8; 6]>,
    /// Resolved next-hop MAC when the config says "auto".
    pub next_hop_mac: Option<[u8; 6]>,
    /// Source MAC for relayed return frames (the ingress interface's), symmetric deployments.
    pub return_src_mac: Option<[u8; 6]>,
    /// Resolved upstream next-hop MAC for the return direction when the config says "auto".
    pub return_next_hop_mac: Option<[u8; 6]>,
    /// Addresses of the appliance's interfaces.
    pub own_addresses: Vec<Addr>,
    /// 16 random bytes drawn at start: the SYN-cookie key when the config names none.
    pub syn_random: [u8; 16],
    /// The SYN secrets of the snapshot running now (None at start): a changed key keeps the
    /// previous one valid for a period.
    pub syn_previous: Option<dataplane::syn::Global>,
    /// Wall-clock seconds at compilation (the time of a key rotation).
    pub wall_secs: u64,
    /// The amplification vectors of the snapshot running now, in catalogue order (None at
    /// start). Their counters are kept by catalogue position, so a running daemon takes a
    /// catalogue that keeps these in place and only appends.
    pub amp_previous: Option<Vec<String>>,
}

/// Inputs of one compilation.
#[derive(Clone, Debug)]
pub struct CompileInput<'a> {
    /// The config.
    pub config: &'a Config,
    /// File it came from (errors, relative list paths).
    pub file: &'a Path,
    /// Snapshot generation to stamp.
    pub generation: u64,
    /// System facts.
    pub facts: &'a SystemFacts,
    /// Runtime changes on top of the document (none for `check`).
    pub overlay: Option<&'a crate::runtime::Overlay>,
}

/// The profile every prefix without one uses; always present.
pub const DEFAULT_PROFILE: &str = "default";

/// Base layers of the allow and deny lists built by earlier compilations.
///
/// With `Files::Reread` (start, `reload`, `policy set`) a base list is reused while the
/// document's entries and the list files (path, size, modification time) are unchanged, and a
/// changed file is read again. With `Files::Reuse` (every other runtime change: a deny entry, a
/// rule, `bypass`, an expiry) the list files are not looked at while the document names the
/// same ones: a runtime change costs the same with a million-prefix list file as without one,
/// and a list file being replaced (deleted, then downloaded again) cannot make `bypass` fail.
#[derive(Debug, Default)]
pub struct ListCache {
    slots: Mutex<[Option<CachedList>; 2]>,
    /// The SYN secret file and the catalogue as read last, by path, for `Files::Reuse`.
    texts: Mutex<HashMap<PathBuf, Vec<u8>>>,
}

/// Reads a file the config names (the SYN secret, the catalogue).
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Files named by the config kept by path: the secret and the catalogue of a few documents.
const MAX_TEXTS: usize = 16;

/// A base list and what it was built from.
type CachedList = (ListKey, Arc<PrefixList>);

/// What a base list was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListKey {
    inline: Vec<String>,
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

/// Whether a compilation reads the list files again (see `ListCache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Files {
    /// Read what changed on disk: start, `reload`, `policy set`.
    Reread,
    /// Keep the lists read last while the document names the same files: runtime changes.
    Reuse,
}

impl ListCache {
    /// `path`'s bytes: as read last with `Files::Reuse` when it was read before, else read now
    /// and kept.
    fn read(&self, mode: Files, path: &Path) -> std::io::Result<Vec<u8>> {
        if mode == Files::Reuse
            && let Some(text) = self.texts.lock().ok().and_then(|t| t.get(path).cloned())
        {
            return Ok(text);
        }
        let text = std::fs::read(path)?;
        if let Ok(mut texts) = self.texts.lock() {
            if texts.len() >= MAX_TEXTS && !texts.contains_key(path) {
                texts.clear();
            }
            texts.insert(path.to_path_buf(), text.clone());
        }
        Ok(text)
    }

    /// Builds (or reuses) the base list `slot` (0 allow, 1 deny).
    #[allow(clippy::too_many_arguments)]
    fn base(
        cache: Option<&ListCache>,
        mode: Files,
        slot: usize,
        file: &Path,
        keys: (&str, &str),
        inline: &[String],
        files: &[PathBuf],
    ) -> Result<Arc<PrefixList>, ConfigError> {
        let base = file.parent().unwrap_or(Path::new("."));
        let full_paths: Vec<PathBuf> =
            files.iter().map(|path| if path.is_absolute() { path.clone() } else { base.join(path) }).collect();
        if mode == Files::Reuse
            && let Some(c) = cache
            && let Ok(slots) = c.slots.lock()
            && let Some((cached, list)) = &slots[slot]
            && cached.inline == inline
            && cached.files.iter().map(|f| &f.0).eq(full_paths.iter())
        {
            return Ok(list.clone());
        }
        let mut stamps = Vec::with_capacity(files.len());
        for full in full_paths {
            // Unreadable: no key; the load below reports the error.
            let Ok(meta) = std::fs::metadata(&full) else {
                stamps.clear();
                break;
            };
            stamps.push((full, meta.len(), meta.modified().ok()));
        }
        let key = (stamps.len() == files.len()).then(|| ListKey { inline: inline.to_vec(), files: stamps });
        if let (Some(c), Some(k)) = (cache, &key)
            && let Ok(slots) = c.slots.lock()
            && let Some((cached, list)) = &slots[slot]
            && cached == k
        {
            return Ok(list.clone());
        }
        let list = Arc::new(PrefixList::build(list_entries(file, keys.0, inline, keys.1, files)?));
        if let (Some(c), Some(k)) = (cache, key)
            && let Ok(mut slots) = c.slots.lock()
        {
            slots[slot] = Some((k, list.clone()));
        }
        Ok(list)
    }
}

/// Validates and compiles.
pub fn compile(input: &CompileInput<'_>) -> Result<Policy, ConfigError> {
    compile_with(input, None, Files::Reread)
}

/// Validates and compiles, reusing the base allow and deny lists in `cache` as `files` says (see
/// [`ListCache`]).
pub fn compile_with(input: &CompileInput<'_>, cache: Option<&ListCache>, files: Files) -> Result<Policy, ConfigError> {
    let cfg = input.config;
    let file = input.file;
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);

    validate_dataplane(cfg, file)?;
    crate::amp::shared_config(file, &cfg.amp)?;
    crate::syn::shared_config(file, &cfg.syn)?;
    let read_cached = |path: &Path| cache.map_or_else(|| std::fs::read(path), |c| c.read(files, path));
    let read: ReadFile<'_> = &read_cached;
    let syn_inputs = crate::syn::SecretInputs {
        random: input.facts.syn_random,
        previous: input.facts.syn_previous.as_ref(),
        wall_secs: input.facts.wall_secs,
        read: Some(read),
    };
    let syn_global = crate::syn::compile_global(file, &cfg.syn, &syn_inputs)?;
    let amp_global = crate::amp::compile_global_with(file, &cfg.amp, Some(read))?;
    if let Some(previous) = &input.facts.amp_previous {
        let now: Vec<&str> = amp_global.catalogue.vectors().iter().map(|v| v.name.as_str()).collect();
        if let Some(i) =
            previous.iter().zip(&now).position(|(a, b)| a != b).or((now.len() < previous.len()).then_some(now.len()))
        {
            return Err(err(
                "amp.catalogue",
                format!(
                    "vector {i} was `{}` and would be `{}`: a running daemon counts by catalogue position, so a new \
                     catalogue may only append vectors (restart to remove or reorder them)",
                    previous[i],
                    now.get(i).copied().unwrap_or("(none)")
                ),
            ));
        }
    }
    let quic_global = crate::quic::compile_global(file, "quic", &cfg.quic)?;

    let mut b = PolicyBuilder::new();
    b.generation = input.generation;

    // Profiles, with an implicit default one.
    let mut profiles: BTreeMap<String, ProfileConfig> = cfg.profiles.clone();
    profiles.entry(DEFAULT_PROFILE.to_string()).or_default();
    let mut profile_index = BTreeMap::new();
    for (name, p) in &profiles {
        let key = format!("profiles.{name}");
        let mut profile = compile_profile(file, &key, name, p)?;
        profile.amp = crate::amp::compile_settings(
            file,
            &format!("{key}.amp"),
            &p.amp,
            &amp_global.catalogue,
            cfg.forward.symmetric,
        )?;
        profile.quic = crate::quic::compile_profile(file, &format!("{key}.quic"), &p.quic)?;
        profile.syn = crate::syn::compile_profile(file, &format!("{key}.syn"), &p.syn)?;
        profile_index.insert(name.clone(), b.profile(profile));
    }

    // Protected prefixes.
    let mut seen = HashSet::new();
    for (i, p) in cfg.prefixes.iter().enumerate() {
        let key = format!("prefixes[{i}]");
        let cidr = parse_cidr(file, &format!("{key}.cidr"), &p.cidr)?;
        if !seen.insert(cidr) {
            return Err(err(&format!("{key}.cidr"), format!("prefix {cidr} is listed twice")));
        }
        let Some(&profile) = profile_index.get(&p.profile) else {
            let known: Vec<&str> = profile_index.keys().map(String::as_str).collect();
            return Err(err(
                &format!("{key}.profile"),
                format!("no profile named `{}` (defined: {})", p.profile, known.join(", ")),
            ));
        };
        let gre_endpoint = match &p.gre_endpoint {
            Some(text) => Some(parse_ipv4(file, &format!("{key}.gre_endpoint"), text)?),
            None if cfg.forward.mode == ForwardModeConfig::Gre => {
                return Err(err(&format!("{key}.gre_endpoint"), "required with forward.mode = \"gre\"".to_string()));
            }
            None => None,
        };
        b.prefixes.push(ProtectedPrefix { cidr, profile, gre_endpoint });
    }

    // Own addresses.
    for (i, text) in cfg.policy.own_addresses.iter().enumerate() {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| err(&format!("policy.own_addresses[{i}]"), format!("`{text}` is not an IP address")))?;
        b.own.push(Addr::from(ip));
    }
    b.own.extend(input.facts.own_addresses.iter().copied());
    // The XDP program steers by prefix maps of fixed size, one per family.
    for v4 in [true, false] {
        let n = b.prefixes.iter().filter(|p| p.cidr.is_v4() == v4).count()
            + input.facts.own_addresses.iter().filter(|a| a.is_v4() == v4).count();
        if n > dataplane::xsk::prog::MAX_XDP_PREFIXES {
            return Err(err(
                "prefixes",
                format!(
                    "{n} {} prefixes and own addresses; the XDP program holds at most {} a family",
                    if v4 { "IPv4" } else { "IPv6" },
                    dataplane::xsk::prog::MAX_XDP_PREFIXES
                ),
            ));
        }
    }

    b.unprotected = match cfg.policy.unprotected {
        UnprotectedConfig::Pass => UnprotectedAction::Pass,
        UnprotectedConfig::Forward => {
            if cfg.forward.mode == ForwardModeConfig::Gre {
                return Err(err(
                    "policy.unprotected",
                    "\"forward\" needs a destination to tunnel to; with forward.mode = \"gre\" use \"pass\" or \"drop\""
                        .to_string(),
                ));
            }
            UnprotectedAction::Forward
        }
        UnprotectedConfig::Drop => UnprotectedAction::Drop,
    };

    for (i, text) in cfg.policy.bogon_exempt.iter().enumerate() {
        b.bogon_exempt.push(parse_cidr(file, &format!("policy.bogon_exempt[{i}]"), text)?);
    }
    let (p, keys) = (&cfg.policy, [("policy.allow", "policy.allow_files"), ("policy.deny", "policy.deny_files")]);
    b.allow_base = Some(ListCache::base(cache, files, 0, file, keys[0], &p.allow, &p.allow_files)?);
    b.deny_base = Some(ListCache::base(cache, files, 1, file, keys[1], &p.deny, &p.deny_files)?);
    if let Some(overlay) = input.overlay {
        let expiry = |e: &crate::runtime::ListEntry| e.expires_ns.unwrap_or(NEVER);
        b.allow.extend(overlay.allow.iter().map(|(c, e)| (*c, expiry(e))));
        b.deny.extend(overlay.deny.iter().map(|(c, e)| (*c, expiry(e))));
        b.bypass = overlay.bypass;
    }

    let mut ids = HashSet::new();
    for (i, r) in cfg.rules.iter().enumerate() {
        let rule = compile_rule(file, i, r)?;
        if !ids.insert(rule.id) {
            return Err(err(&format!("rules[{i}].id"), format!("rule id {} is used twice", rule.id)));
        }
        b.rules.push(rule);
    }

    b.forward = compile_forward(cfg, file, input.facts)?;
    b.amp = amp_global;
    b.quic = quic_global.global;
    b.syn = syn_global;
    Ok(b.build())
}

/// The per-worker pipeline sizing from the config.
pub fn pipeline_config(cfg: &Config, workers: u32) -> PipelineConfig {
    PipelineConfig {
        workers: workers.max(1),
        src_buckets: cfg.tables.src_buckets,
        dst_buckets: cfg.tables.dst_buckets,
        frag_buckets: cfg.tables.frag_buckets,
        reply_budget: Rate::pps(cfg.tables.reply_pps),
        reply_budget_per_dst: Rate::pps(cfg.tables.reply_pps_per_destination),
        reply_buckets: cfg.tables.reply_buckets,
        quic: crate::quic::state_config(&cfg.quic, workers),
        // Set by the daemon from the OS; `check` and `sim` keep the default.
        seed: PipelineConfig::default().seed,
        syn: crate::syn::state_config(&cfg.syn, workers),
    }
}

fn validate_dataplane(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    let d = &cfg.dataplane;
    let pow2 = |key: &str, v: u32, lo: u32, hi: u32| {
        if !v.is_power_of_two() || v < lo || v > hi {
            Err(ConfigError::new(file, key, format!("{v} must be a power of two between {lo} and {hi}")))
        } else {
            Ok(())
        }
    };
    pow2("dataplane.ring_size", d.ring_size, 64, 1 << 16)?;
    pow2("dataplane.fill_size", d.fill_size, 64, 1 << 16)?;
    if d.frame_size != 2048 && d.frame_size != 4096 {
        return Err(ConfigError::new(file, "dataplane.frame_size", format!("{} must be 2048 or 4096", d.frame_size)));
    }
    if d.batch == 0 || d.batch > 256 || d.batch > d.ring_size {
        return Err(ConfigError::new(
            file,
            "dataplane.batch",
            format!("{} must be between 1 and 256 and not above ring_size", d.batch),
        ));
    }
    if d.frames < d.fill_size + d.ring_size {
        return Err(ConfigError::new(
            file,
            "dataplane.frames",
            format!(
                "{} frames cannot fill the fill ring ({}) and the TX ring ({})",
                d.frames, d.fill_size, d.ring_size
            ),
        ));
    }
    if !(50..=60_000).contains(&d.watchdog_ms) {
        return Err(ConfigError::new(file, "dataplane.watchdog_ms", format!("{} must be 50..=60000", d.watchdog_ms)));
    }
    if d.busy_poll_budget > 1024 {
        return Err(ConfigError::new(
            file,
            "dataplane.busy_poll_budget",
            format!("{} must be 0..=1024", d.busy_poll_budget),
        ));
    }
    let mut seen = HashSet::new();
    for (i, q) in d.queues.iter().enumerate() {
        if q.interface.is_empty() || q.interface.len() > 15 {
            return Err(ConfigError::new(
                file,
                &format!("dataplane.queues[{i}].interface"),
                "an interface name is 1 to 15 characters",
            ));
        }
        if !seen.insert((q.interface.clone(), q.queue)) {
            return Err(ConfigError::new(
                file,
                &format!("dataplane.queues[{i}]"),
                format!("{} queue {} is listed twice", q.interface, q.queue),
            ));
        }
    }
    let t = &cfg.tables;
    for (key, v) in [
        ("tables.src_buckets", t.src_buckets),
        ("tables.dst_buckets", t.dst_buckets),
        ("tables.frag_buckets", t.frag_buckets),
        ("tables.reply_buckets", t.reply_buckets),
    ] {
        if v == 0 || v > 1 << 26 {
            return Err(ConfigError::new(file, key, format!("{v} must be between 1 and {}", 1u64 << 26)));
        }
    }
    if t.reply_pps == 0 || t.reply_pps_per_destination == 0 {
        return Err(ConfigError::new(file, "tables.reply_pps", "reply budgets must be above 0"));
    }
    Ok(())
}

fn compile_rate(file: &Path, key: &str, r: &RateConfig) -> Result<Rate, ConfigError> {
    if r.pps == 0 && r.bps == 0 {
        return Err(ConfigError::new(file, key, "a budget needs pps or bps above 0"));
    }
    if r.burst_ms == 0 || r.burst_ms > 10_000 {
        return Err(ConfigError::new(file, &format!("{key}.burst_ms"), format!("{} must be 1..=10000", r.burst_ms)));
    }
    Ok(Rate { pps: r.pps, bytes_per_sec: r.bps.div_ceil(8), burst_ms: r.burst_ms })
}

fn compile_profile(file: &Path, key: &str, name: &str, p: &ProfileConfig) -> Result<Profile, ConfigError> {
    let rate = |sub: &str, r: &Option<RateConfig>| -> Result<Option<Rate>, ConfigError> {
        r.as_ref().map(|r| compile_rate(file, &format!("{key}.{sub}"), r)).transpose()
    };
    let fragments = match p.fragments {
        FragmentConfig::Allow => FragmentPolicy::Allow,
        FragmentConfig::Drop => FragmentPolicy::Drop,
        FragmentConfig::RateLimit => match rate("fragment_rate", &p.fragment_rate)? {
            Some(r) => FragmentPolicy::RateLimit(r),
            None => {
                return Err(ConfigError::new(
                    file,
                    &format!("{key}.fragment_rate"),
                    "required with fragments = \"rate-limit\"",
                ));
            }
        },
    };
    Ok(Profile {
        name: name.to_string(),
        mode: match p.mode {
            ModeConfig::Mitigate => Mode::Mitigate,
            ModeConfig::Monitor => Mode::Monitor,
        },
        filters: BaselineFilters {
            bogon_sources: p.bogon_sources,
            land: p.land,
            tcp_flag_abuse: p.tcp_flag_abuse,
            ttl_zero: p.ttl_zero,
            drop_ipv4_options: p.ipv4_options == AllowDrop::Drop,
        },
        fragments,
        src_limit: rate("src_limit", &p.src_limit)?,
        dst_limit: rate("dst_limit", &p.dst_limit)?,
        // Compiled against the catalogue by the caller.
        amp: dataplane::amp::Settings::default(),
        quic: dataplane::quic::Settings::default(),
        syn: dataplane::syn::Settings::default(),
    })
}

fn list_entries(
    file: &Path,
    key: &str,
    inline: &[String],
    files_key: &str,
    files: &[PathBuf],
) -> Result<Vec<(Cidr, u64)>, ConfigError> {
    let mut out = Vec::with_capacity(inline.len());
    for (i, text) in inline.iter().enumerate() {
        out.push((parse_cidr(file, &format!("{key}[{i}]"), text)?, NEVER));
    }
    let base = file.parent().unwrap_or(Path::new("."));
    for (i, path) in files.iter().enumerate() {
        let full = if path.is_absolute() { path.clone() } else { base.join(path) };
        let list = load_prefix_list(&full).map_err(|e| {
            let at = if e.key.is_empty() { String::new() } else { format!(": {}", e.key) };
            ConfigError::new(file, &format!("{files_key}[{i}]"), format!("{}{at}: {}", full.display(), e.message))
        })?;
        out.extend(list.into_iter().map(|c| (c, NEVER)));
    }
    Ok(out)
}

fn parse_ipv4(file: &Path, key: &str, text: &str) -> Result<u32, ConfigError> {
    text.parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| ConfigError::new(file, key, format!("`{text}` is not an IPv4 address")))
}

fn parse_range<T: std::str::FromStr + PartialOrd + Copy>(
    file: &Path,
    key: &str,
    text: &str,
) -> Result<Span<T>, ConfigError> {
    let bad = || ConfigError::new(file, key, format!("`{text}` is not a value or an inclusive range like 10-20"));
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse::<T>().map_err(|_| bad())?, b.trim().parse::<T>().map_err(|_| bad())?),
        None => {
            let v = text.trim().parse::<T>().map_err(|_| bad())?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(ConfigError::new(file, key, format!("`{text}`: the low end is above the high end")));
    }
    Ok(Span::new(lo, hi))
}

fn parse_ports(file: &Path, key: &str, spec: &PortSpec) -> Result<Span<u16>, ConfigError> {
    match spec {
        PortSpec::One(p) => Ok(Span::new(*p, *p)),
        PortSpec::Range(text) => parse_range(file, key, text),
    }
}

fn parse_protocol(file: &Path, key: &str, spec: &ProtocolSpec) -> Result<u8, ConfigError> {
    match spec {
        ProtocolSpec::Number(n) => Ok(*n),
        ProtocolSpec::Name(name) => match name.to_ascii_lowercase().as_str() {
            "tcp" => Ok(proto::TCP),
            "udp" => Ok(proto::UDP),
            "icmp" => Ok(proto::ICMP),
            "icmpv6" | "ipv6-icmp" => Ok(proto::ICMPV6),
            "gre" => Ok(proto::GRE),
            "esp" => Ok(proto::ESP),
            "ah" => Ok(proto::AH),
            other => Err(ConfigError::new(
                file,
                key,
                format!("unknown protocol `{other}` (tcp, udp, icmp, icmpv6, gre, esp, ah or a number)"),
            )),
        },
    }
}

/// Parses `"syn,ack"` into flag bits.
pub fn parse_tcp_flags(file: &Path, key: &str, text: &str) -> Result<u8, ConfigError> {
    use dataplane::parse::tcp_flags as f;
    let mut bits = 0u8;
    for word in text.split([',', '|', ' ']).filter(|w| !w.is_empty()) {
        bits |= match word.to_ascii_lowercase().as_str() {
            "fin" => f::FIN,
            "syn" => f::SYN,
            "rst" => f::RST,
            "psh" => f::PSH,
            "ack" => f::ACK,
            "urg" => f::URG,
            "ece" => f::ECE,
            "cwr" => f::CWR,
            other => {
                return Err(ConfigError::new(
                    file,
                    key,
                    format!("unknown TCP flag `{other}` (fin, syn, rst, psh, ack, urg, ece, cwr)"),
                ));
            }
        };
    }
    Ok(bits)
}

fn compile_rule(file: &Path, i: usize, r: &RuleConfig) -> Result<Rule, ConfigError> {
    let key = format!("rules[{i}]");
    let k = |s: &str| format!("{key}.{s}");
    let action = match r.action {
        RuleActionConfig::Allow => RuleAction::Allow,
        RuleActionConfig::Drop => RuleAction::Drop,
        RuleActionConfig::RateLimit => match &r.rate {
            Some(rate) => RuleAction::RateLimit(compile_rate(file, &k("rate"), rate)?),
            None => {
                return Err(ConfigError::new(file, &k("rate"), "required with action = \"rate-limit\""));
            }
        },
    };
    let protocol = r.protocol.as_ref().map(|p| parse_protocol(file, &k("protocol"), p)).transpose()?;
    let has_ports = r.src_ports.is_some() || r.dst_ports.is_some();
    if has_ports && !matches!(protocol, Some(proto::TCP) | Some(proto::UDP)) {
        return Err(ConfigError::new(file, &k("protocol"), "port conditions need protocol = \"tcp\" or \"udp\""));
    }
    if r.tcp_flags.is_some() && protocol != Some(proto::TCP) {
        return Err(ConfigError::new(file, &k("protocol"), "tcp_flags needs protocol = \"tcp\""));
    }
    let tcp_flags = match &r.tcp_flags {
        Some(t) => {
            let mask = parse_tcp_flags(file, &k("tcp_flags.mask"), &t.mask)?;
            let value = parse_tcp_flags(file, &k("tcp_flags.value"), &t.value)?;
            if value & !mask != 0 {
                return Err(ConfigError::new(file, &k("tcp_flags.value"), "value has flags outside the mask"));
            }
            Some((mask, value))
        }
        None => None,
    };
    Ok(Rule {
        id: r.id.unwrap_or(i as u32 + 1),
        protocol,
        src: r.src.as_ref().map(|s| parse_cidr(file, &k("src"), s)).transpose()?,
        dst: r.dst.as_ref().map(|s| parse_cidr(file, &k("dst"), s)).transpose()?,
        src_ports: r.src_ports.as_ref().map(|p| parse_ports(file, &k("src_ports"), p)).transpose()?,
        dst_ports: r.dst_ports.as_ref().map(|p| parse_ports(file, &k("dst_ports"), p)).transpose()?,
        tcp_flags,
        length: r.length.as_ref().map(|s| parse_range(file, &k("length"), s)).transpose()?,
        ttl: r.ttl.as_ref().map(|s| parse_range(file, &k("ttl"), s)).transpose()?,
        action,
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn compile_forward(cfg: &Config, file: &Path, facts: &SystemFacts) -> Result<ForwardSettings, ConfigError> {
    let f = &cfg.forward;
    let mode = match f.mode {
        ForwardModeConfig::L2 => ForwardMode::L2,
        ForwardModeConfig::Gre => ForwardMode::Gre,
        ForwardModeConfig::Hairpin => ForwardMode::Hairpin,
    };
    if mode != ForwardMode::Hairpin && f.egress.is_none() && !cfg.dataplane.queues.is_empty() {
        return Err(ConfigError::new(file, "forward.egress", "required with forward.mode = \"l2\" or \"gre\""));
    }
    // A policy-only config (no queues: tests, `check` of a fragment) forwards nowhere.
    let forwards = !cfg.dataplane.queues.is_empty();
    let next_hop_mac =
        mac_setting(file, "forward.next_hop", &f.next_hop_mac, f.next_hop_ip.as_deref(), forwards, facts.next_hop_mac)?;
    if f.symmetric && mode == ForwardMode::Hairpin {
        return Err(ConfigError::new(
            file,
            "forward.symmetric",
            "needs an egress interface to receive the return direction on (not with mode = \"hairpin\")",
        ));
    }
    let return_next_hop_mac = mac_setting(
        file,
        "forward.return_next_hop",
        &f.return_next_hop_mac,
        f.return_next_hop_ip.as_deref(),
        forwards && f.symmetric,
        facts.return_next_hop_mac,
    )?;
    let vlan = match f.vlan {
        VlanConfig::Word(VlanWord::Keep) => VlanAction::Keep,
        VlanConfig::Word(VlanWord::Strip) => VlanAction::Strip,
        VlanConfig::Id(id) if (1..=4094).contains(&id) => VlanAction::Set(id),
        VlanConfig::Id(id) => {
            return Err(ConfigError::new(file, "forward.vlan", format!("VLAN id {id} is not in 1..=4094")));
        }
    };
    let gre_local = match (&f.gre_local, mode) {
        (Some(t), _) => parse_ipv4(file, "forward.gre_local", t)?,
        (None, ForwardMode::Gre) => {
            return Err(ConfigError::new(file, "forward.gre_local", "required with forward.mode = \"gre\""));
        }
        (None, _) => 0,
    };
    if f.mtu < 1280 {
        return Err(ConfigError::new(file, "forward.mtu", format!("{} is below the IPv6 minimum of 1280", f.mtu)));
    }
    Ok(ForwardSettings {
        mode,
        src_mac: facts.egress_mac.unwrap_or([0; 6]),
        next_hop_mac,
        vlan,
        gre_local,
        egress_mtu: f.mtu,
        return_src_mac: facts.return_src_mac.unwrap_or([0; 6]),
        return_next_hop_mac,
    })
}

/// A next-hop MAC setting: a literal MAC, or "auto" with an IP (`<prefix>_ip`) whose MAC the
/// daemon resolved into `resolved`. The IP is required only when the appliance forwards (`needed`).
fn mac_setting(
    file: &Path,
    prefix: &str,
    mac: &str,
    ip: Option<&str>,
    needed: bool,
    resolved: Option<[u8; 6]>,
) -> Result<[u8; 6], ConfigError> {
    if mac != "auto" {
        return parse_mac(mac).ok_or_else(|| {
            ConfigError::new(file, &format!("{prefix}_mac"), format!("`{mac}` is not a MAC address or \"auto\""))
        });
    }
    match ip {
        None if needed => Err(ConfigError::new(
            file,
            &format!("{prefix}_ip"),
            format!("required with {prefix}_mac = \"auto\" (the MAC is resolved from the kernel neighbour table)"),
        )),
        Some(t) if t.parse::<IpAddr>().is_err() => {
            Err(ConfigError::new(file, &format!("{prefix}_ip"), format!("`{t}` is not an IP address")))
        }
        _ => Ok(resolved.unwrap_or([0; 6])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::build::Packet;
    use dataplane::verdict::{DropReason, Verdict};
    use dataplane::{Frame, Now, Pipeline};

    fn compile_text(text: &str) -> Result<Policy, ConfigError> {
        let file = Path::new("test.toml");
        let config = Config::from_toml(text, file)?;
        compile(&CompileInput { config: &config, file, generation: 1, facts: &SystemFacts::default(), overlay: None })
    }

    fn err(text: &str) -> String {
        compile_text(text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") && path.file_name().is_some_and(|n| n != "reflection.toml")
            {
                crate::check_file(&path).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked >= 2, "found {checked} configs in {}", dir.display());
    }

    #[test]
    fn no_more_prefixes_than_the_xdp_program_holds() {
        let file = Path::new("test.toml");
        let max = dataplane::xsk::prog::MAX_XDP_PREFIXES;
        let prefix = |i: usize| crate::config::PrefixConfig {
            cidr: format!("10.{}.{}.0/24", i >> 8, i & 255),
            profile: DEFAULT_PROFILE.to_string(),
            gre_endpoint: None,
        };
        let mut config = Config::from_toml("", file).unwrap();
        config.prefixes = (0..max).map(prefix).collect();
        let facts = SystemFacts::default();
        let run = |c: &Config| compile(&CompileInput { config: c, file, generation: 1, facts: &facts, overlay: None });
        assert_eq!(run(&config).unwrap().prefixes.len(), max);
        // One more, in another /8: refused, naming the limit.
        config.prefixes.push(crate::config::PrefixConfig { cidr: "11.0.0.0/24".to_string(), ..prefix(0) });
        let e = run(&config).map(|_| ()).unwrap_err().to_string();
        assert!(e.starts_with("test.toml: prefixes: 65537 IPv4 prefixes"), "{e}");
    }

    #[test]
    fn a_running_catalogue_may_only_grow_at_its_end() {
        let file = Path::new("test.toml");
        let config = Config::from_toml("", file).unwrap();
        let names: Vec<String> =
            dataplane::amp::Catalogue::standard().vectors().iter().map(|v| v.name.clone()).collect();
        assert!(names.len() > 3);
        let with = |previous: Vec<String>| {
            let facts = SystemFacts { amp_previous: Some(previous), ..SystemFacts::default() };
            compile(&CompileInput { config: &config, file, generation: 2, facts: &facts, overlay: None }).map(|_| ())
        };
        with(names.clone()).unwrap();
        // The running catalogue had fewer vectors: the new ones are appended.
        with(names[..names.len() - 2].to_vec()).unwrap();
        // It had one more, or two of them the other way round: refused, naming the position.
        let mut longer = names.clone();
        longer.push("gone".to_string());
        let e = with(longer).unwrap_err().to_string();
        assert!(e.contains("amp.catalogue") && e.contains(&format!("vector {} was `gone`", names.len())), "{e}");
        let mut swapped = names.clone();
        swapped.swap(1, 2);
        let e = with(swapped).unwrap_err().to_string();
        assert!(e.contains("vector 1 was") && e.contains("may only append"), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        assert_eq!(
            err("[[prefixes]]\ncidr = \"10.0.0.1/8\"\n"),
            "test.toml: prefixes[0].cidr: `10.0.0.1/8` has bits set past its prefix length (write the network address)"
        );
        assert_eq!(
            err("[[prefixes]]\ncidr = \"10.0.0.0/8\"\nprofile = \"web\"\n"),
            "test.toml: prefixes[0].profile: no profile named `web` (defined: default)"
        );
        assert!(
            err("[profiles.x]\nsrc_limit = { pps = 0 }\n")
                .starts_with("test.toml: profiles.x.src_limit: a budget needs pps or bps above 0")
        );
        assert!(
            err("[dataplane]\nring_size = 1000\n")
                .starts_with("test.toml: dataplane.ring_size: 1000 must be a power of two")
        );
        assert!(
            err("[forward]\nmode = \"gre\"\n[[prefixes]]\ncidr = \"10.0.0.0/8\"\n")
                .contains("prefixes[0].gre_endpoint: required")
        );
        assert!(
            err("[[rules]]\naction = \"drop\"\ndst_ports = 80\n").contains("rules[0].protocol: port conditions need")
        );
        assert!(err("[[rules]]\naction = \"drop\"\nprotocol = \"tcp\"\ntcp_flags = { mask = \"syn\", value = \"syn,ack\" }\n").contains("value has flags outside the mask"));
        assert!(err("[[rules]]\naction = \"rate-limit\"\n").contains("rules[0].rate: required"));
        assert!(err("[[rules]]\naction = \"drop\"\nprotocol = \"sctpx\"\n").contains("unknown protocol `sctpx`"));
        assert!(
            err("[[rules]]\naction = \"drop\"\nprotocol = \"udp\"\ndst_ports = \"9-3\"\n")
                .contains("low end is above the high end")
        );
        assert!(err("[policy]\ndeny = [\"banana\"]\n").contains("policy.deny[0]: `banana` is not"));
    }

    #[test]
    fn syntax_and_unknown_keys_are_located() {
        let e = err("[policy]\nunprotectd = \"pass\"\n");
        assert!(e.starts_with("test.toml: line 2 column 1: unknown field `unprotectd`"), "{e}");
        let e = err("[policy\n");
        assert!(e.starts_with("test.toml: line 1"), "{e}");
        let e = err("[dataplane]\nbatch = \"many\"\n");
        assert!(e.contains("line 2") && e.contains("invalid type"), "{e}");
    }

    #[test]
    fn list_files_are_read_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("scrubber-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("drop.txt"), "203.0.113.0/24 ; SBL1\n2001:db8::/32\n").unwrap();
        std::fs::write(dir.join("bad.txt"), "203.0.113.1/24\n").unwrap();
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, "[policy]\ndeny_files = [\"drop.txt\"]\n").unwrap();
        let (_, policy) = crate::check_file(&cfg).unwrap();
        assert_eq!(policy.deny_count(), 2);
        std::fs::write(&cfg, "[policy]\ndeny_files = [\"bad.txt\"]\n").unwrap();
        let e = crate::check_file(&cfg).unwrap_err().to_string();
        assert!(e.contains(&format!("policy.deny_files[0]: {}: line 1:", dir.join("bad.txt").display())), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The default config drops the lab's own ranges as bogons; lab.toml exempts them.
    #[test]
    fn default_config_drops_lab_ranges_and_lab_config_does_not() {
        let base = "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n[[prefixes]]\ncidr = \"2001:2:0:100::/64\"\n";
        let lab = format!("{base}[policy]\nbogon_exempt = [\"198.18.0.0/15\", \"2001:2::/48\"]\n");
        let v4 = Packet::udp("198.18.1.2".parse().unwrap(), 1, "198.18.100.10".parse().unwrap(), 2).build();
        let v6 = Packet::udp("2001:2:0:1::2".parse().unwrap(), 1, "2001:2:0:100::10".parse().unwrap(), 2).build();
        for (text, expected) in [(base.to_string(), Verdict::Drop(DropReason::BogonSource)), (lab, Verdict::Forward)] {
            let mut p = Pipeline::new(dataplane::policy::cell(compile_text(&text).unwrap()), Default::default());
            for bytes in [&v4, &v6] {
                let mut buf = vec![0u8; 64 + bytes.len()];
                buf[64..].copy_from_slice(bytes);
                let mut f = Frame::new(&mut buf, 64, bytes.len());
                assert_eq!(p.process_one(Now::default(), &mut f), expected);
            }
        }
    }

    #[test]
    fn rules_compile_with_ids_ranges_and_flags() {
        let p = compile_text(
            "[[rules]]\naction = \"drop\"\nprotocol = \"tcp\"\nsrc = \"198.18.0.0/15\"\ndst_ports = \"1-1023\"\ntcp_flags = { mask = \"syn,ack\", value = \"syn\" }\nlength = \"40-60\"\nttl = \"1-5\"\n[[rules]]\nid = 7\naction = \"rate-limit\"\nrate = { bps = 8000 }\nprotocol = 1\n",
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].id, 1);
        assert_eq!(p.rules[0].tcp_flags, Some((0x12, 0x02)));
        assert_eq!(p.rules[0].dst_ports, Some(Span::new(1, 1023)));
        assert_eq!(p.rules[1].id, 7);
        assert_eq!(p.rules[1].action, RuleAction::RateLimit(Rate { pps: 0, bytes_per_sec: 1000, burst_ms: 100 }));
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:00:aa:bb:cc"), Some([2, 0, 0, 0xaa, 0xbb, 0xcc]));
        assert_eq!(parse_mac("02-00-00-aa-bb-cc"), Some([2, 0, 0, 0xaa, 0xbb, 0xcc]));
        assert_eq!(parse_mac("02:00:00:aa:bb"), None);
        assert_eq!(parse_mac("02:00:00:aa:bb:cc:dd"), None);
        assert_eq!(parse_mac("zz:00:00:aa:bb:cc"), None);
    }
}
