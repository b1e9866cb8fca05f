//! Configuration of the UDP amplification countermeasure: the reflection catalogue file, the
//! global `[amp]` section and each profile's `[profiles.NAME.amp]`, compiled into the
//! dataplane's `amp::Global` (policy snapshot), `amp::Settings` (per profile) and
//! `amp::SharedConfig` (table sizes, fixed at start).
//!
//! Every error names the file and the dotted key (`vector[3].ports`,
//! `profiles.web.amp.vectors.dns.rate.pps`) and says what is wrong. The catalogue is read again
//! on every compile, so a policy reload also replaces the catalogue.

use crate::config::{FragmentConfig, RateConfig};
use crate::error::ConfigError;
use dataplane::amp::{
    self, Action, Catalogue, CatalogueError, Global, MAX_PATTERN, MAX_SLOTS, MAX_VECTORS, MAX_XML_SCAN, Pattern,
    RequestKind, Roles, Settings, SharedConfig, Signature, Vector,
};
use dataplane::ratelimit::Rate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The global `[amp]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AmpConfig {
    /// Catalogue file, relative to the config file; none: the built-in catalogue (the shipped
    /// `configs/reflection.toml`).
    pub catalogue: Option<PathBuf>,
    /// How long a first fragment's verdict governs its datagram's other fragments (ms).
    pub fragment_timeout_ms: u64,
    /// How long a recorded request admits its responses, symmetric mode (ms).
    pub request_timeout_ms: u64,
    /// Entries of the shared per-(destination, vector) budget table (read at start only).
    pub bucket_slots: usize,
    /// Entries of the shared first-fragment table (read at start only).
    pub fragment_slots: usize,
    /// Entries of the shared request table (read at start only).
    pub request_slots: usize,
}

impl Default for AmpConfig {
    fn default() -> Self {
        let shared = SharedConfig::default();
        AmpConfig {
            catalogue: None,
            fragment_timeout_ms: amp::DEFAULT_FRAGMENT_TTL_NS / 1_000_000,
            request_timeout_ms: amp::DEFAULT_REQUEST_TTL_NS / 1_000_000,
            bucket_slots: shared.bucket_slots,
            fragment_slots: shared.fragment_slots,
            request_slots: shared.request_slots,
        }
    }
}

/// Action words of the catalogue and of profile overrides.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ActionWord {
    /// Forward.
    Allow,
    /// Drop.
    Drop,
    /// Budget per destination.
    RateLimit,
}

/// A profile's override for one vector (`[profiles.NAME.amp.vectors.VECTOR]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorOverrideConfig {
    /// Action instead of the catalogue's (and of any role relaxation).
    pub action: Option<ActionWord>,
    /// Budget for `rate-limit` (default: the catalogue's, when it has one).
    pub rate: Option<RateConfig>,
    /// Minimum datagram payload size instead of the catalogue's.
    pub min_size: Option<u16>,
}

/// A profile's `[profiles.NAME.amp]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmpProfileConfig {
    /// Inspect this profile's traffic at all.
    pub enabled: bool,
    /// The destinations run a DNS resolver: DNS responses are allowed (ANY and oversize ones
    /// stay dropped).
    pub resolver: bool,
    /// The destinations run an NTP client: mode 4 replies are allowed (modes 6/7 stay dropped).
    pub ntp_client: bool,
    /// Admit exactly the DNS/NTP responses matching requests the hosts sent; needs
    /// `forward.symmetric = true`.
    pub symmetric: bool,
    /// Later fragments of datagrams whose first fragment was not seen.
    pub fragments: FragmentConfig,
    /// Their budget per destination with `fragments = "rate-limit"` (default 1000 pps, 12 Mbit/s).
    pub fragment_rate: Option<RateConfig>,
    /// Per-vector overrides, by catalogue name.
    pub vectors: BTreeMap<String, VectorOverrideConfig>,
}

impl Default for AmpProfileConfig {
    fn default() -> Self {
        AmpProfileConfig {
            enabled: true,
            resolver: false,
            ntp_client: false,
            symmetric: false,
            fragments: FragmentConfig::RateLimit,
            fragment_rate: None,
            vectors: BTreeMap::new(),
        }
    }
}

/// The catalogue file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CatalogueFile {
    /// Vectors in match order.
    #[serde(default)]
    pub vector: Vec<VectorConfig>,
}

/// One `[[vector]]` of the catalogue file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorConfig {
    /// Stable name.
    pub name: String,
    /// Reflector source ports.
    pub ports: Vec<u16>,
    /// Signature kind.
    pub signature: String,
    /// `dns-qtype`: question types.
    pub qtypes: Option<Vec<u16>>,
    /// `ntp-mode`: modes.
    pub modes: Option<Vec<u8>>,
    /// `prefix`: text.
    pub prefix: Option<String>,
    /// `prefix`: bytes in hex.
    pub prefix_hex: Option<String>,
    /// `prefix`: compare ASCII letters regardless of case.
    pub case_insensitive: Option<bool>,
    /// `prefix`: where in the payload.
    pub offset: Option<u16>,
    /// `xml`: text to find.
    pub needle: Option<String>,
    /// `xml`: how far to look.
    pub within: Option<u16>,
    /// Smallest datagram payload that counts.
    pub min_size: Option<u16>,
    /// Default action.
    pub action: Option<ActionWord>,
    /// Default budget for `rate-limit`.
    pub rate: Option<RateConfig>,
    /// A role that allows the vector.
    pub relaxed_by: Option<String>,
    /// Request kind to match in symmetric profiles: `dns` or `ntp`.
    pub requests: Option<String>,
    /// Published amplification factor (documentation).
    pub amplification: Option<String>,
    /// Where it was published (documentation).
    pub reference: Option<String>,
}

/// Compiles a budget (same rules as the other budgets of the config).
fn compile_rate(file: &Path, key: &str, r: &RateConfig) -> Result<Rate, ConfigError> {
    if r.pps == 0 && r.bps == 0 {
        return Err(ConfigError::new(file, key, "a budget needs pps or bps above 0"));
    }
    if r.burst_ms == 0 || r.burst_ms > 10_000 {
        return Err(ConfigError::new(file, &format!("{key}.burst_ms"), format!("{} must be 1..=10000", r.burst_ms)));
    }
    Ok(Rate { pps: r.pps, bytes_per_sec: r.bps.div_ceil(8), burst_ms: r.burst_ms })
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits.chunks(2).map(|p| u8::from_str_radix(&p.iter().collect::<String>(), 16).ok()).collect()
}

fn compile_signature(file: &Path, key: &str, v: &VectorConfig) -> Result<Signature, ConfigError> {
    let err = |sub: &str, msg: String| ConfigError::new(file, &format!("{key}.{sub}"), msg);
    let kind = v.signature.as_str();
    // Parameters that the kind does not take are an error, not silently ignored.
    let takes: &[&str] = match kind {
        "dns-qtype" => &["qtypes"],
        "ntp-mode" => &["modes"],
        "prefix" => &["prefix", "prefix_hex", "case_insensitive", "offset"],
        "xml" => &["needle", "within"],
        _ => &[],
    };
    let given = [
        ("qtypes", v.qtypes.is_some()),
        ("modes", v.modes.is_some()),
        ("prefix", v.prefix.is_some()),
        ("prefix_hex", v.prefix_hex.is_some()),
        ("case_insensitive", v.case_insensitive.is_some()),
        ("offset", v.offset.is_some()),
        ("needle", v.needle.is_some()),
        ("within", v.within.is_some()),
    ];
    if let Some((name, _)) = given.iter().find(|(name, set)| *set && !takes.contains(name)) {
        return Err(err(name, format!("signature `{kind}` takes no `{name}`")));
    }
    if let Some(simple) = Signature::simple_from_name(kind) {
        return Ok(simple);
    }
    match kind {
        "dns-qtype" => {
            let q = v.qtypes.as_deref().unwrap_or_default();
            if q.is_empty() || q.len() > 4 {
                return Err(err("qtypes", "list 1 to 4 question types (255 = ANY)".to_string()));
            }
            let mut qtypes = [0u16; 4];
            qtypes[..q.len()].copy_from_slice(q);
            Ok(Signature::DnsQtype { qtypes, count: q.len() as u8 })
        }
        "ntp-mode" => {
            let m = v.modes.as_deref().unwrap_or_default();
            if m.is_empty() || m.iter().any(|&x| x > 7) {
                return Err(err("modes", "list NTP modes between 0 and 7".to_string()));
            }
            Ok(Signature::NtpMode { modes: m.iter().fold(0u8, |acc, &x| acc | 1 << x) })
        }
        "prefix" => {
            let bytes = match (&v.prefix, &v.prefix_hex) {
                (Some(t), None) => t.as_bytes().to_vec(),
                (None, Some(h)) => parse_hex(h).ok_or_else(|| err("prefix_hex", format!("`{h}` is not hex bytes")))?,
                _ => return Err(err("prefix", "give exactly one of `prefix` and `prefix_hex`".to_string())),
            };
            let pattern = Pattern::new(&bytes, v.case_insensitive.unwrap_or(false))
                .ok_or_else(|| err("prefix", format!("1 to {MAX_PATTERN} bytes")))?;
            let offset = v.offset.unwrap_or(0);
            if offset > 1500 {
                return Err(err("offset", format!("{offset} is past any datagram's first packet")));
            }
            Ok(Signature::Prefix { pattern, offset })
        }
        "xml" => {
            let needle = v.needle.as_deref().unwrap_or_default();
            let needle = Pattern::new(needle.as_bytes(), false)
                .ok_or_else(|| err("needle", format!("1 to {MAX_PATTERN} bytes are required")))?;
            let within = v.within.unwrap_or(512);
            if !(16..=MAX_XML_SCAN).contains(&within) {
                return Err(err("within", format!("{within} must be 16..={MAX_XML_SCAN}")));
            }
            Ok(Signature::Xml { needle, within })
        }
        other => Err(err(
            "signature",
            format!(
                "`{other}` is not a signature kind (any, dns-response, dns-qtype, dns-strict, ntp-mode, memcached, \
                 cldap-response, snmp-response, rpc-reply, rip-response, slp-reply, ssrp-response, stun-response, \
                 dtls-handshake, openvpn-reset, coap-response, nat-pmp-response, arms-reply, text, prefix, xml)"
            ),
        )),
    }
}

fn compile_vector(file: &Path, index: usize, v: &VectorConfig) -> Result<Vector, ConfigError> {
    let key = format!("vector[{index}]");
    let err = |sub: &str, msg: String| ConfigError::new(file, &format!("{key}.{sub}"), msg);
    if v.name.is_empty() || !v.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(err("name", format!("`{}` must be lowercase letters, digits and `-`", v.name)));
    }
    let signature = compile_signature(file, &key, v)?;
    let action = match (v.action, &v.rate) {
        (None, _) => return Err(err("action", "required: \"drop\", \"rate-limit\" or \"allow\"".to_string())),
        (Some(ActionWord::RateLimit), Some(r)) => Action::rate_limit(compile_rate(file, &format!("{key}.rate"), r)?),
        (Some(ActionWord::RateLimit), None) => {
            return Err(err("rate", "required with action = \"rate-limit\"".to_string()));
        }
        (Some(_), Some(_)) => return Err(err("rate", "only with action = \"rate-limit\"".to_string())),
        (Some(ActionWord::Drop), None) => Action::Drop,
        (Some(ActionWord::Allow), None) => Action::Allow,
    };
    let relaxed_by = match &v.relaxed_by {
        None => Roles::NONE,
        Some(word) => Roles::from_word(word)
            .ok_or_else(|| err("relaxed_by", format!("`{word}` is not a role (\"resolver\", \"ntp-client\")")))?,
    };
    let requests = match v.requests.as_deref() {
        None => None,
        Some("dns") => Some(RequestKind::Dns),
        Some("ntp") => Some(RequestKind::Ntp),
        Some(other) => return Err(err("requests", format!("`{other}` is not \"dns\" or \"ntp\""))),
    };
    Ok(Vector {
        name: v.name.clone(),
        ports: v.ports.clone(),
        signature,
        min_size: v.min_size.unwrap_or(0),
        action,
        relaxed_by,
        requests,
        amplification: v.amplification.clone().unwrap_or_default(),
    })
}

/// Parses and compiles catalogue text; `file` names it in errors.
pub fn parse_catalogue(text: &str, file: &Path) -> Result<Catalogue, ConfigError> {
    let parsed: CatalogueFile = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    if parsed.vector.len() > MAX_VECTORS {
        return Err(ConfigError::new(file, "vector", CatalogueError::TooMany(parsed.vector.len()).to_string()));
    }
    let vectors =
        parsed.vector.iter().enumerate().map(|(i, v)| compile_vector(file, i, v)).collect::<Result<Vec<_>, _>>()?;
    Catalogue::new(vectors).map_err(|e| {
        let key = match (&e, e.index()) {
            (CatalogueError::BadName { .. }, Some(i)) => format!("vector[{i}].name"),
            (CatalogueError::BadRequests { .. }, Some(i)) => format!("vector[{i}].requests"),
            (CatalogueError::NeedsPayloadSignature { .. }, Some(i)) => format!("vector[{i}].signature"),
            (_, Some(i)) => format!("vector[{i}].ports"),
            (_, None) => "vector".to_string(),
        };
        ConfigError::new(file, &key, e.to_string())
    })
}

/// Reads and compiles a catalogue file.
pub fn load_catalogue(path: &Path) -> Result<Catalogue, ConfigError> {
    load_catalogue_with(path, None)
}

fn load_catalogue_with(path: &Path, read: Option<crate::compile::ReadFile<'_>>) -> Result<Catalogue, ConfigError> {
    let bytes = read.map_or_else(|| std::fs::read(path), |read| read(path));
    let text = bytes
        .and_then(|b| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
        .map_err(|e| ConfigError::new(path, "", format!("cannot read the reflection catalogue: {e}")))?;
    parse_catalogue(&text, path)
}

/// Compiles the global `[amp]` section of `file` (reading the catalogue it names).
pub fn compile_global(file: &Path, cfg: &AmpConfig) -> Result<Global, ConfigError> {
    compile_global_with(file, cfg, None)
}

/// `compile_global`, reading the catalogue with `read` (the compiler's, which may keep what it
/// read last).
pub fn compile_global_with(
    file: &Path,
    cfg: &AmpConfig,
    read: Option<crate::compile::ReadFile<'_>>,
) -> Result<Global, ConfigError> {
    let ms = |key: &str, v: u64, max: u64| {
        if v == 0 || v > max {
            Err(ConfigError::new(file, key, format!("{v} must be 1..={max}")))
        } else {
            Ok(v * 1_000_000)
        }
    };
    let fragment_ttl_ns = ms("amp.fragment_timeout_ms", cfg.fragment_timeout_ms, 60_000)?;
    let request_ttl_ns = ms("amp.request_timeout_ms", cfg.request_timeout_ms, 120_000)?;
    let catalogue = match &cfg.catalogue {
        None => Catalogue::standard(),
        Some(path) => {
            let base = file.parent().unwrap_or(Path::new("."));
            let full = if path.is_absolute() { path.clone() } else { base.join(path) };
            if !full.exists() {
                return Err(ConfigError::new(file, "amp.catalogue", format!("{} does not exist", full.display())));
            }
            load_catalogue_with(&full, read)?
        }
    };
    Ok(Global { catalogue, fragment_ttl_ns, request_ttl_ns })
}

/// Sizes of the shared tables (`Shared::new` at start; not changed by a reload).
pub fn shared_config(file: &Path, cfg: &AmpConfig) -> Result<SharedConfig, ConfigError> {
    for (key, v) in [
        ("amp.bucket_slots", cfg.bucket_slots),
        ("amp.fragment_slots", cfg.fragment_slots),
        ("amp.request_slots", cfg.request_slots),
    ] {
        if v == 0 || v > MAX_SLOTS {
            return Err(ConfigError::new(file, key, format!("{v} must be between 1 and {MAX_SLOTS}")));
        }
    }
    Ok(SharedConfig {
        bucket_slots: cfg.bucket_slots,
        fragment_slots: cfg.fragment_slots,
        request_slots: cfg.request_slots,
    })
}

/// Compiles a profile's `amp` section against `catalogue`. `key` is the section's dotted key
/// (`profiles.web.amp`); `forward_symmetric` is `forward.symmetric`.
pub fn compile_settings(
    file: &Path,
    key: &str,
    cfg: &AmpProfileConfig,
    catalogue: &Catalogue,
    forward_symmetric: bool,
) -> Result<Settings, ConfigError> {
    if cfg.symmetric && !forward_symmetric {
        return Err(ConfigError::new(
            file,
            &format!("{key}.symmetric"),
            "needs forward.symmetric = true: responses can only be matched to requests the scrubber relays",
        ));
    }
    let mut roles = Roles::NONE;
    if cfg.resolver {
        roles = roles.union(Roles::RESOLVER);
    }
    if cfg.ntp_client {
        roles = roles.union(Roles::NTP_CLIENT);
    }
    let fragments = match cfg.fragments {
        FragmentConfig::Allow | FragmentConfig::Drop if cfg.fragment_rate.is_some() => {
            return Err(ConfigError::new(
                file,
                &format!("{key}.fragment_rate"),
                "only with fragments = \"rate-limit\"",
            ));
        }
        FragmentConfig::Allow => Action::Allow,
        FragmentConfig::Drop => Action::Drop,
        FragmentConfig::RateLimit => match &cfg.fragment_rate {
            Some(r) => Action::rate_limit(compile_rate(file, &format!("{key}.fragment_rate"), r)?),
            None => Action::rate_limit(amp::DEFAULT_FRAGMENT_RATE),
        },
    };
    let mut settings =
        Settings { enabled: cfg.enabled, symmetric: cfg.symmetric, fragments, ..Settings::new(catalogue, roles) };
    for (name, o) in &cfg.vectors {
        let vkey = format!("{key}.vectors.{name}");
        let Some(index) = catalogue.index_of(name) else {
            let known: Vec<&str> = catalogue.vectors().iter().map(|v| v.name.as_str()).collect();
            return Err(ConfigError::new(
                file,
                &vkey,
                format!("no vector named `{name}` in the catalogue (known: {})", known.join(", ")),
            ));
        };
        let vector = &catalogue.vectors()[index];
        let rate = o.rate.as_ref().map(|r| compile_rate(file, &format!("{vkey}.rate"), r)).transpose()?;
        let action = match (o.action, rate) {
            (Some(ActionWord::Allow), None) => Some(Action::Allow),
            (Some(ActionWord::Drop), None) => Some(Action::Drop),
            (Some(ActionWord::RateLimit), Some(r)) => Some(Action::rate_limit(r)),
            // A new budget for a vector the catalogue already rate-limits.
            (None, Some(r)) if matches!(vector.action, Action::RateLimit(_)) => Some(Action::rate_limit(r)),
            (Some(ActionWord::RateLimit), None) => match vector.action {
                Action::RateLimit(limit) => Some(Action::RateLimit(limit)),
                _ => {
                    return Err(ConfigError::new(
                        file,
                        &format!("{vkey}.rate"),
                        "required: the catalogue gives this vector no budget",
                    ));
                }
            },
            (None, None) => None,
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    file,
                    &format!("{vkey}.rate"),
                    "only with action = \"rate-limit\" (or for a vector the catalogue rate-limits)",
                ));
            }
        };
        if let Some(action) = action {
            settings.vectors[index].action = action;
        }
        if let Some(size) = o.min_size {
            settings.vectors[index].min_size = size;
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/reflection.toml")
    }

    #[test]
    fn the_shipped_catalogue_compiles_to_the_built_in_one() {
        let file = load_catalogue(&shipped_path()).unwrap_or_else(|e| panic!("{e}"));
        let builtin = Catalogue::standard();
        assert_eq!(file.vectors().len(), builtin.vectors().len());
        for (a, b) in file.vectors().iter().zip(builtin.vectors()) {
            assert_eq!(a, b, "vector `{}` differs between configs/reflection.toml and the built-in catalogue", a.name);
        }
        assert_eq!(file, builtin);
    }

    fn cat_err(text: &str) -> String {
        parse_catalogue(text, Path::new("r.toml")).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn catalogue_errors_name_the_key() {
        let base = "[[vector]]\nname = \"x\"\nports = [19]\naction = \"drop\"\n";
        assert!(
            cat_err(&format!("{base}signature = \"bogus\"\n"))
                .starts_with("r.toml: vector[0].signature: `bogus` is not")
        );
        assert_eq!(
            cat_err("[[vector]]\nname = \"stun\"\nports = [3478]\nsignature = \"any\"\naction = \"drop\"\n"),
            "r.toml: vector[0].signature: port 3478 is at or above 1024, where clients' ephemeral ports and NAT \
             mappings live: it needs a payload signature that recognises the protocol from its bytes alone"
        );
        assert_eq!(
            cat_err(&format!("{base}signature = \"any\"\nmodes = [7]\n")),
            "r.toml: vector[0].modes: signature `any` takes no `modes`"
        );
        assert_eq!(
            cat_err(&format!("{base}signature = \"ntp-mode\"\nmodes = [9]\n")),
            "r.toml: vector[0].modes: list NTP modes between 0 and 7"
        );
        assert_eq!(
            cat_err("[[vector]]\nname = \"x\"\nports = [19]\nsignature = \"any\"\naction = \"rate-limit\"\n"),
            "r.toml: vector[0].rate: required with action = \"rate-limit\""
        );
        assert_eq!(
            cat_err(&format!(
                "{base}signature = \"any\"\n[[vector]]\nname = \"x\"\nports = [17]\nsignature = \"any\"\naction = \"drop\"\n"
            )),
            "r.toml: vector[1].name: the name `x` is used twice"
        );
        assert_eq!(
            cat_err(&format!("{base}signature = \"any\"\nrequests = \"dns\"\n")),
            "r.toml: vector[0].requests: `requests = \"dns\"` needs a dns-* signature and `\"ntp\"` an ntp-mode one"
        );
        assert!(cat_err(&format!("{base}signature = \"any\"\ncolour = 1\n")).contains("unknown field `colour`"));
        assert_eq!(
            cat_err("[[vector]]\nname = \"x\"\nports = []\nsignature = \"any\"\naction = \"drop\"\n"),
            "r.toml: vector[0].ports: needs at least one source port, none of them 0"
        );
        assert_eq!(
            cat_err(
                "[[vector]]\nname = \"x\"\nports = [1900]\nsignature = \"prefix\"\nprefix_hex = \"zz\"\naction = \"drop\"\n"
            ),
            "r.toml: vector[0].prefix_hex: `zz` is not hex bytes"
        );
    }

    #[test]
    fn prefix_hex_and_xml_parameters_compile() {
        let c = parse_catalogue(
            "[[vector]]\nname = \"arms-hex\"\nports = [3283]\nsignature = \"prefix\"\nprefix_hex = \"00 01 03 ea\"\n\
             action = \"drop\"\n[[vector]]\nname = \"wsd\"\nports = [3702]\nsignature = \"xml\"\nneedle = \"Envelope\"\n\
             within = 256\naction = \"rate-limit\"\nrate = { pps = 10 }\n",
            Path::new("r.toml"),
        )
        .unwrap();
        assert!(c.vectors()[0].signature.matches(&[0, 1, 3, 0xea, 0, 0x31], 6));
        assert!(matches!(c.vectors()[1].signature, Signature::Xml { within: 256, .. }));
        assert!(matches!(c.vectors()[1].action, Action::RateLimit(l) if l.rate().pps == 10));
    }

    fn profile(text: &str) -> AmpProfileConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        compile_settings(Path::new("s.toml"), "profiles.web.amp", &profile(text), &Catalogue::standard(), false)
    }

    #[test]
    fn profile_settings_compile() {
        let c = Catalogue::standard();
        let s = settings(
            "resolver = true\nfragments = \"drop\"\n[vectors.memcached]\naction = \"allow\"\n\
             [vectors.dns-large]\nmin_size = 4097\n[vectors.dns]\nrate = { pps = 5000 }\n[vectors.chargen]\n\
             action = \"rate-limit\"\nrate = { pps = 10, bps = 80000 }\n[vectors.stun]\naction = \"rate-limit\"\n",
        )
        .unwrap();
        assert_eq!(s.roles, Roles::RESOLVER);
        assert_eq!(s.fragments, Action::Drop);
        assert_eq!(s.vectors[c.index_of("memcached").unwrap()].action, Action::Allow);
        assert_eq!(s.vectors[c.index_of("dns-large").unwrap()].min_size, 4097);
        assert!(matches!(s.vectors[c.index_of("dns").unwrap()].action, Action::RateLimit(l) if l.rate().pps == 5000));
        let ntp = c.index_of("ntp").unwrap();
        assert_eq!(s.vectors[ntp].action, c.vectors()[ntp].action, "resolver does not relax ntp");
        assert!(
            matches!(s.vectors[c.index_of("chargen").unwrap()].action, Action::RateLimit(l) if l.rate().bytes_per_sec == 10_000)
        );
        let stun = c.index_of("stun").unwrap();
        assert_eq!(s.vectors[stun].action, c.vectors()[stun].action);
        assert_eq!(settings("").unwrap(), Settings::default());
        let resolver = settings("resolver = true\n").unwrap();
        assert_eq!(resolver.vectors[c.index_of("dns").unwrap()].action, Action::Allow);
        assert_eq!(resolver.vectors[c.index_of("dns-any").unwrap()].action, Action::Drop);
    }

    #[test]
    fn profile_errors_name_the_key() {
        let e = settings("[vectors.dnss]\naction = \"drop\"\n").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "s.toml: profiles.web.amp.vectors.dnss: no vector named `dnss` in the catalogue (known: dns-any"
            ),
            "{e}"
        );
        assert_eq!(
            settings("[vectors.memcached]\nrate = { pps = 5 }\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.vectors.memcached.rate: only with action = \"rate-limit\" (or for a vector the catalogue rate-limits)"
        );
        assert_eq!(
            settings("[vectors.memcached]\naction = \"rate-limit\"\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.vectors.memcached.rate: required: the catalogue gives this vector no budget"
        );
        assert_eq!(
            settings("[vectors.dns]\naction = \"drop\"\nrate = { pps = 1 }\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.vectors.dns.rate: only with action = \"rate-limit\" (or for a vector the catalogue rate-limits)"
        );
        assert_eq!(
            settings("[vectors.dns]\nrate = { pps = 0 }\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.vectors.dns.rate: a budget needs pps or bps above 0"
        );
        assert_eq!(
            settings("symmetric = true\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.symmetric: needs forward.symmetric = true: responses can only be matched to requests the scrubber relays"
        );
        assert_eq!(
            settings("fragments = \"allow\"\nfragment_rate = { pps = 1 }\n").unwrap_err().to_string(),
            "s.toml: profiles.web.amp.fragment_rate: only with fragments = \"rate-limit\""
        );
        assert!(
            toml::from_str::<AmpProfileConfig>("resolvr = true\n").unwrap_err().to_string().contains("unknown field")
        );
    }

    #[test]
    fn global_section_reads_the_catalogue_relative_to_the_config() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab.toml");
        let cfg: AmpConfig = toml::from_str("catalogue = \"reflection.toml\"\nfragment_timeout_ms = 2000\n").unwrap();
        let g = compile_global(&config, &cfg).unwrap();
        assert_eq!(g.catalogue, Catalogue::standard());
        assert_eq!(g.fragment_ttl_ns, 2_000_000_000);
        assert_eq!(compile_global(&config, &AmpConfig::default()).unwrap(), Global::default());
        let missing: AmpConfig = toml::from_str("catalogue = \"nope.toml\"\n").unwrap();
        assert!(compile_global(&config, &missing).unwrap_err().to_string().contains("amp.catalogue: "));
        let zero: AmpConfig = toml::from_str("request_timeout_ms = 0\n").unwrap();
        assert!(
            compile_global(&config, &zero)
                .unwrap_err()
                .to_string()
                .ends_with("amp.request_timeout_ms: 0 must be 1..=120000")
        );
        assert_eq!(shared_config(&config, &AmpConfig::default()).unwrap(), SharedConfig::default());
        let huge: AmpConfig = toml::from_str("bucket_slots = 0\n").unwrap();
        assert!(shared_config(&config, &huge).is_err());
    }
}
