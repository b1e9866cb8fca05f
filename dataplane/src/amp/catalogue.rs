//! The reflection catalogue, compiled: which source ports and payload signatures name which
//! amplification vector, and what a profile does with a vector unless it says otherwise.
//!
//! The catalogue is data (`configs/reflection.toml`, compiled by `control::amp`); this is its
//! immutable, lookup-ready form, held in the policy snapshot so that a new catalogue takes
//! effect at a batch boundary like any other policy change. `Catalogue::standard()` is the
//! same catalogue built in code: the default when no file is configured, and what tests and
//! benches use (a test in `control` checks that the shipped file compiles to exactly this).
//!
//! Lookup: a 65 536-bit bitmap says whether a source port has vectors at all (one L1-resident
//! load for the common case); for the few ports that do, the number of set bits before the
//! port's bit (a per-word prefix count plus a popcount) indexes their candidate list, tried in
//! catalogue order (first signature match wins). No search, no hashing.

use super::shared::{Limit, RequestKind};
use super::signature::{Pattern, Signature};
use crate::ratelimit::Rate;
use core::fmt;

/// Most vectors a catalogue holds: per-vector counters and profile settings are fixed arrays
/// of this length, and fragment verdicts store the vector in 6 bits.
pub const MAX_VECTORS: usize = 64;
/// Most vectors that share one source port.
pub const MAX_PER_PORT: usize = 8;

/// What a profile does with a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward (the vector is expected at this destination).
    Allow,
    /// Drop under `amp_reflection`.
    Drop,
    /// Admit within a budget per destination shared by all workers; drop the excess under
    /// `amp_rate_limit`.
    RateLimit(Limit),
}

impl Action {
    /// A rate-limit action for `rate`.
    pub fn rate_limit(rate: Rate) -> Action {
        Action::RateLimit(Limit::new(rate))
    }

    /// The word used in config and logs.
    pub const fn word(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Drop => "drop",
            Action::RateLimit(_) => "rate-limit",
        }
    }
}

/// Roles a protected destination may declare; a vector relaxed by one of them is allowed
/// (left to the signature entries that single out its attack forms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// No roles.
    pub const NONE: Roles = Roles(0);
    /// The destination runs a DNS resolver (it receives DNS responses).
    pub const RESOLVER: Roles = Roles(1);
    /// The destination runs an NTP client (it receives mode 4 replies).
    pub const NTP_CLIENT: Roles = Roles(2);

    /// Both sets together.
    pub const fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    /// True when the two sets share a role.
    #[inline]
    pub const fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    /// The config word of a single role.
    pub fn from_word(word: &str) -> Option<Roles> {
        match word {
            "resolver" => Some(Roles::RESOLVER),
            "ntp-client" => Some(Roles::NTP_CLIENT),
            _ => None,
        }
    }
}

/// One amplification vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vector {
    /// Stable name (metrics label, profile key).
    pub name: String,
    /// Reflector source ports.
    pub ports: Vec<u16>,
    /// How its responses are recognised.
    pub signature: Signature,
    /// Smallest UDP payload (of the whole datagram) that counts as this vector.
    pub min_size: u16,
    /// What a profile does with it unless it overrides.
    pub action: Action,
    /// Roles that turn the default action into `allow`.
    pub relaxed_by: Roles,
    /// In symmetric mode: the request kind its responses must match.
    pub requests: Option<RequestKind>,
    /// Published bandwidth amplification factor (documentation only).
    pub amplification: String,
}

impl Vector {
    /// A vector with no minimum size, no relaxing role, no request matching.
    pub fn new(name: &str, ports: &[u16], signature: Signature, action: Action, amplification: &str) -> Vector {
        Vector {
            name: name.to_string(),
            ports: ports.to_vec(),
            signature,
            min_size: 0,
            action,
            relaxed_by: Roles::NONE,
            requests: None,
            amplification: amplification.to_string(),
        }
    }

    /// Sets the minimum size.
    pub fn min_size(mut self, bytes: u16) -> Vector {
        self.min_size = bytes;
        self
    }

    /// Sets the relaxing roles.
    pub fn relaxed_by(mut self, roles: Roles) -> Vector {
        self.relaxed_by = roles;
        self
    }

    /// Sets the request kind matched in symmetric mode.
    pub fn requests(mut self, kind: RequestKind) -> Vector {
        self.requests = Some(kind);
        self
    }
}

/// Why a list of vectors is not a catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogueError {
    /// More than `MAX_VECTORS` entries.
    TooMany(usize),
    /// Entry `index` has an empty or duplicate name.
    BadName {
        /// Position in the list.
        index: usize,
        /// The name.
        name: String,
    },
    /// Entry `index` lists no port, or port 0.
    BadPorts {
        /// Position in the list.
        index: usize,
    },
    /// More than `MAX_PER_PORT` entries on one port.
    CrowdedPort {
        /// Position of the entry that overflowed.
        index: usize,
        /// The port.
        port: u16,
    },
    /// A port at or above 1024 bound to a signature that is not specific.
    NeedsPayloadSignature {
        /// Position in the list.
        index: usize,
        /// The port.
        port: u16,
    },
    /// Request matching on a signature that cannot carry that kind of response.
    BadRequests {
        /// Position in the list.
        index: usize,
    },
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogueError::TooMany(n) => {
                write!(f, "{n} vectors; a catalogue holds at most {MAX_VECTORS}")
            }
            CatalogueError::BadName { name, .. } if name.is_empty() => f.write_str("the name is empty"),
            CatalogueError::BadName { name, .. } => write!(f, "the name `{name}` is used twice"),
            CatalogueError::BadPorts { .. } => f.write_str("needs at least one source port, none of them 0"),
            CatalogueError::CrowdedPort { port, .. } => {
                write!(f, "port {port} already has {MAX_PER_PORT} vectors")
            }
            CatalogueError::NeedsPayloadSignature { port, .. } => write!(
                f,
                "port {port} is at or above 1024, where clients' ephemeral ports and NAT mappings live: \
                 it needs a payload signature that recognises the protocol from its bytes alone"
            ),
            CatalogueError::BadRequests { .. } => {
                f.write_str("`requests = \"dns\"` needs a dns-* signature and `\"ntp\"` an ntp-mode one")
            }
        }
    }
}

impl std::error::Error for CatalogueError {}

impl CatalogueError {
    /// Position of the offending entry, when there is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            CatalogueError::TooMany(_) => None,
            CatalogueError::BadName { index, .. }
            | CatalogueError::BadPorts { index }
            | CatalogueError::CrowdedPort { index, .. }
            | CatalogueError::NeedsPayloadSignature { index, .. }
            | CatalogueError::BadRequests { index } => Some(*index),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PortEntry {
    port: u16,
    len: u8,
    members: [u8; MAX_PER_PORT],
}

/// The compiled catalogue. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    vectors: Vec<Vector>,
    port_bits: Box<[u64; 1024]>,
    /// Set bits in `port_bits` before each word: the rank of a port's entry in `ports`.
    port_rank: Box<[u16; 1024]>,
    /// One entry per port with vectors, sorted by port.
    ports: Vec<PortEntry>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::standard()
    }
}

impl Catalogue {
    /// Validates and indexes `vectors` (their order is the match order and counter index).
    pub fn new(vectors: Vec<Vector>) -> Result<Catalogue, CatalogueError> {
        if vectors.len() > MAX_VECTORS {
            return Err(CatalogueError::TooMany(vectors.len()));
        }
        let mut port_bits = Box::new([0u64; 1024]);
        let mut ports: Vec<PortEntry> = Vec::new();
        for (index, v) in vectors.iter().enumerate() {
            if v.name.is_empty() || vectors[..index].iter().any(|o| o.name == v.name) {
                return Err(CatalogueError::BadName { index, name: v.name.clone() });
            }
            if v.ports.is_empty() || v.ports.contains(&0) {
                return Err(CatalogueError::BadPorts { index });
            }
            let ok_requests = match v.requests {
                None => true,
                Some(RequestKind::Dns) => {
                    matches!(v.signature, Signature::DnsResponse | Signature::DnsQtype { .. } | Signature::DnsStrict)
                }
                Some(RequestKind::Ntp) => matches!(v.signature, Signature::NtpMode { .. }),
            };
            if !ok_requests {
                return Err(CatalogueError::BadRequests { index });
            }
            for &port in &v.ports {
                if port >= 1024 && !v.signature.is_specific() {
                    return Err(CatalogueError::NeedsPayloadSignature { index, port });
                }
                port_bits[usize::from(port >> 6)] |= 1 << (port & 63);
                let entry = match ports.iter_mut().find(|e| e.port == port) {
                    Some(e) => e,
                    None => {
                        ports.push(PortEntry { port, len: 0, members: [0; MAX_PER_PORT] });
                        ports.last_mut().expect("pushed just above")
                    }
                };
                if entry.members[..usize::from(entry.len)].contains(&(index as u8)) {
                    continue;
                }
                if usize::from(entry.len) == MAX_PER_PORT {
                    return Err(CatalogueError::CrowdedPort { index, port });
                }
                entry.members[usize::from(entry.len)] = index as u8;
                entry.len += 1;
            }
        }
        ports.sort_by_key(|e| e.port);
        let mut port_rank = Box::new([0u16; 1024]);
        let mut seen = 0u16;
        for (rank, word) in port_rank.iter_mut().zip(port_bits.iter()) {
            *rank = seen;
            seen += word.count_ones() as u16;
        }
        Ok(Catalogue { vectors, port_bits, port_rank, ports })
    }

    /// The vectors in catalogue order.
    pub fn vectors(&self) -> &[Vector] {
        &self.vectors
    }

    /// Position of the vector named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.vectors.iter().position(|v| v.name == name)
    }

    /// Vectors whose reflectors send from `port`, in match order (empty for most ports).
    #[inline]
    pub fn candidates(&self, port: u16) -> &[u8] {
        let word_index = usize::from(port >> 6);
        let word = self.port_bits[word_index];
        let bit = 1u64 << (port & 63);
        if word & bit == 0 {
            return &[];
        }
        let rank = usize::from(self.port_rank[word_index]) + (word & (bit - 1)).count_ones() as usize;
        match self.ports.get(rank) {
            Some(e) => &e.members[..usize::from(e.len)],
            None => &[],
        }
    }

    /// The shipped catalogue (`configs/reflection.toml`), built in code.
    pub fn standard() -> Catalogue {
        Catalogue::new(standard_vectors()).expect("the standard catalogue is valid")
    }
}

fn pattern(text: &str, nocase: bool) -> Pattern {
    Pattern::new(text.as_bytes(), nocase).expect("built-in patterns fit")
}

/// Default budget of a rate-limited vector: packets/s and bits/s per destination.
fn budget(pps: u64, bits_per_sec: u64) -> Action {
    Action::rate_limit(Rate { pps, bytes_per_sec: bits_per_sec / 8, burst_ms: Rate::DEFAULT_BURST_MS })
}

/// The vectors of `configs/reflection.toml`, in its order. Keep the two identical: a test in
/// `control` compiles the file and compares.
pub fn standard_vectors() -> Vec<Vector> {
    use Action::Drop;
    use Signature as S;
    vec![
        Vector::new("dns-any", &[53], S::DnsQtype { qtypes: [255, 0, 0, 0], count: 1 }, Drop, "28-54")
            .requests(RequestKind::Dns),
        Vector::new("dns-large", &[53], S::DnsResponse, Drop, "28-54").min_size(1233).requests(RequestKind::Dns),
        Vector::new("dns", &[53], S::DnsResponse, budget(1000, 8_000_000), "28-54")
            .relaxed_by(Roles::RESOLVER)
            .requests(RequestKind::Dns),
        Vector::new("ntp-private", &[123], S::NtpMode { modes: 1 << 7 }, Drop, "556.9"),
        Vector::new("ntp-control", &[123], S::NtpMode { modes: 1 << 6 }, Drop, "varies"),
        Vector::new("ntp", &[123], S::NtpMode { modes: 1 << 4 }, budget(500, 4_000_000), "varies")
            .relaxed_by(Roles::NTP_CLIENT)
            .requests(RequestKind::Ntp),
        Vector::new("memcached", &[11211], S::Memcached, Drop, "10000-51000"),
        Vector::new("ssdp", &[1900], S::Prefix { pattern: pattern("HTTP/1.1 200 OK", true), offset: 0 }, Drop, "30.8"),
        Vector::new("cldap", &[389], S::CldapResponse, Drop, "varies"),
        Vector::new("chargen", &[19], S::Any, Drop, "358.8"),
        Vector::new("qotd", &[17], S::Any, Drop, "140.3"),
        Vector::new("snmp", &[161], S::SnmpResponse, Drop, "6.3"),
        Vector::new("netbios", &[137], S::DnsResponse, Drop, "3.8"),
        Vector::new("portmap", &[111], S::RpcReply, Drop, "listed"),
        Vector::new("mdns", &[5353], S::DnsStrict, Drop, "listed"),
        Vector::new(
            "ws-discovery",
            &[3702],
            S::Xml { needle: pattern("Envelope", false), within: 512 },
            Drop,
            "150-500",
        ),
        Vector::new("arms", &[3283], S::ArmsReply, Drop, "35.5"),
        Vector::new("coap", &[5683], S::CoapResponse, Drop, "varies"),
        Vector::new("slp", &[427], S::SlpReply, Drop, "up to 2200"),
        Vector::new("tp240", &[10074], S::Text, budget(200, 2_000_000), "4.29e9"),
        Vector::new("jenkins", &[33848], S::Prefix { pattern: pattern("<hudson>", false), offset: 0 }, Drop, "100"),
        Vector::new("ripv1", &[520], S::RipResponse, Drop, "listed"),
        Vector::new("mssql", &[1434], S::SsrpResponse, Drop, "varies"),
        Vector::new("openvpn", &[1194], S::OpenvpnReset, budget(200, 2_000_000), "varies"),
        Vector::new("stun", &[3478], S::StunResponse, budget(1000, 8_000_000), "varies"),
        Vector::new("dtls", &[443], S::DtlsHandshake, budget(1000, 8_000_000), "varies"),
        Vector::new("nat-pmp", &[5351], S::NatPmpResponse, Drop, "varies"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_catalogue_indexes_ports_in_order() {
        let c = Catalogue::standard();
        let names =
            |port| c.candidates(port).iter().map(|&i| c.vectors()[usize::from(i)].name.as_str()).collect::<Vec<_>>();
        assert_eq!(names(53), ["dns-any", "dns-large", "dns"]);
        assert_eq!(names(123), ["ntp-private", "ntp-control", "ntp"]);
        assert_eq!(names(11211), ["memcached"]);
        assert!(names(80).is_empty());
        assert!(names(54).is_empty());
        assert!(names(65535).is_empty());
        // Every port of every vector finds it, and no other port finds anything.
        for port in 0..=u16::MAX {
            let expect: Vec<&str> =
                c.vectors().iter().filter(|v| v.ports.contains(&port)).map(|v| v.name.as_str()).collect();
            assert_eq!(names(port), expect, "port {port}");
        }
        assert!(c.vectors().len() <= MAX_VECTORS);
    }

    #[test]
    fn high_ports_need_specific_signatures() {
        let bad = vec![Vector::new("stun-any", &[3478], Signature::Any, Action::Drop, "")];
        assert_eq!(Catalogue::new(bad), Err(CatalogueError::NeedsPayloadSignature { index: 0, port: 3478 }));
        let weak = Signature::Prefix { pattern: Pattern::new(b"HT", false).unwrap(), offset: 0 };
        assert!(Catalogue::new(vec![Vector::new("x", &[1900], weak, Action::Drop, "")]).is_err());
        assert!(Catalogue::new(vec![Vector::new("x", &[19], Signature::Any, Action::Drop, "")]).is_ok());
    }

    #[test]
    fn rejects_duplicates_crowding_and_bad_request_kinds() {
        let v = |n: &str| Vector::new(n, &[19], Signature::Any, Action::Drop, "");
        assert!(matches!(Catalogue::new(vec![v("a"), v("a")]), Err(CatalogueError::BadName { index: 1, .. })));
        let many: Vec<Vector> = (0..9).map(|i| v(&format!("v{i}"))).collect();
        assert!(matches!(Catalogue::new(many), Err(CatalogueError::CrowdedPort { index: 8, port: 19 })));
        assert_eq!(
            Catalogue::new(vec![v("a").requests(RequestKind::Dns)]),
            Err(CatalogueError::BadRequests { index: 0 })
        );
        let too_many: Vec<Vector> =
            (0..65).map(|i| Vector::new(&format!("v{i}"), &[i + 1], Signature::Any, Action::Drop, "")).collect();
        assert_eq!(Catalogue::new(too_many), Err(CatalogueError::TooMany(65)));
        assert_eq!(
            Catalogue::new(vec![Vector::new("z", &[], Signature::Any, Action::Drop, "")]).unwrap_err().index(),
            Some(0)
        );
    }
}
