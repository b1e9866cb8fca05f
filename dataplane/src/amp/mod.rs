//! UDP amplification and reflection floods.
//!
//! Reflection floods arrive *from* the well-known ports of abused services (DNS, NTP,
//! memcached, SSDP, CLDAP, ...) with recognisable response payloads. This countermeasure looks
//! up a UDP datagram's source port in the reflection `Catalogue` (part of the policy snapshot),
//! tries the candidate vectors' payload `Signature`s in catalogue order, and applies the
//! profile's `Action` for the first vector that matches: `allow`, `drop` or `rate-limit` (a
//! packet and byte budget per destination held by all workers together in `Shared`).
//!
//! Contract (called by the pipeline for every packet to a protected destination, after the
//! baseline filters, lists, rules and budgets):
//! - `State::inspect` returns `Check::Clean` or `Check::Reject(reason)` with one of the `amp_*`
//!   drop reasons; it never touches the frame, so a monitor-mode profile simply forwards what it
//!   rejects. Ports at or above 1024 act only on a payload signature (enforced when the
//!   catalogue is built). It never allocates, locks or panics on packet bytes.
//! - Fragments: a datagram's first fragment gets a verdict like any datagram, and that verdict is
//!   remembered in `Shared` keyed by (source, destination, protocol, IP ID); later fragments
//!   follow it (a dropped datagram's fragments are dropped under `amp_fragment`; a rate-limited
//!   one's are charged to the same byte budget). Later fragments of a datagram not seen get the
//!   profile's `fragments` action (`amp_fragment_policy` / `amp_fragment_rate_limit`). The
//!   pipeline reports first fragments that earlier checks rejected with
//!   `State::first_fragment_rejected`, so their later fragments are rejected as well.
//! - Symmetric deployments: `State::record_request` is called for packets protected hosts send
//!   (origin → internet). A profile with `symmetric` then admits exactly the DNS and NTP
//!   responses that match a recorded request and drops the others under `amp_unsolicited`.
//! - Counters: per vector and per `Outcome` in `Stats::amp` (fixed arrays of `MAX_VECTORS`,
//!   indexed by catalogue position), events in `Stats::events`, table evictions per worker.

mod catalogue;
pub mod samples;
mod shared;
mod signature;

#[cfg(test)]
mod tests;

pub use catalogue::{Action, Catalogue, CatalogueError, MAX_PER_PORT, MAX_VECTORS, Roles, Vector, standard_vectors};
pub use shared::{Exchange, FirstVerdict, FragmentKey, Limit, MAX_SLOTS, RequestKind, Shared, SharedConfig};
pub use signature::{MAX_PATTERN, MAX_TEXT_SCAN, MAX_XML_SCAN, MIN_TEXT_LEN, Pattern, Signature};

use crate::counted_enum;
use crate::parse::{Fragment, PacketInfo, proto};
use crate::pipeline::Now;
use crate::ratelimit::Rate;
use crate::stats::{Event, Stats, Table};
use crate::table::TableStats;
use crate::verdict::{Check, DropReason};
use shared::FRAGMENT_BUDGET;

/// The global part, held in the policy snapshot: the catalogue and the table timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// The reflection catalogue.
    pub catalogue: Catalogue,
    /// How long a first fragment's verdict is remembered for its datagram's other fragments.
    pub fragment_ttl_ns: u64,
    /// How long a recorded request admits its responses (symmetric mode).
    pub request_ttl_ns: u64,
}

/// Default of `Global::fragment_ttl_ns`: fragments of one datagram arrive within milliseconds;
/// a short memory also limits IPv4 IP ID reuse by busy reflectors.
pub const DEFAULT_FRAGMENT_TTL_NS: u64 = 5_000_000_000;
/// Default of `Global::request_ttl_ns`: longer than any resolver's or NTP client's retry timer.
pub const DEFAULT_REQUEST_TTL_NS: u64 = 10_000_000_000;

impl Default for Global {
    fn default() -> Self {
        Global {
            catalogue: Catalogue::standard(),
            fragment_ttl_ns: DEFAULT_FRAGMENT_TTL_NS,
            request_ttl_ns: DEFAULT_REQUEST_TTL_NS,
        }
    }
}

/// What a profile does with one vector: its action and minimum size, resolved from the
/// catalogue's defaults, the profile's roles and its overrides when the policy is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorPolicy {
    /// The action.
    pub action: Action,
    /// Smallest UDP payload of the whole datagram that counts as the vector.
    pub min_size: u16,
}

/// The per-profile part (`policy::Profile::amp`), compiled against the catalogue of the same
/// policy snapshot (the control plane compiles both together, so a catalogue swap recompiles
/// every profile). `Settings::default()` goes with `Global::default()` (the standard catalogue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Off: every packet is `Clean` (fragments are not tracked either).
    pub enabled: bool,
    /// Roles the destinations declare (`resolver`, `ntp-client`); already applied to `vectors`.
    pub roles: Roles,
    /// Admit exactly the DNS/NTP responses that match a request the host sent; drop the rest.
    /// Only for deployments that relay origin → internet traffic through the scrubber.
    pub symmetric: bool,
    /// Later fragments of datagrams whose first fragment was not seen.
    pub fragments: Action,
    /// Per vector, by catalogue position (positions past the catalogue's end are unused).
    pub vectors: [VectorPolicy; MAX_VECTORS],
}

/// Default budget for later fragments of unseen datagrams, per destination.
pub const DEFAULT_FRAGMENT_RATE: Rate = Rate { pps: 1000, bytes_per_sec: 1_500_000, burst_ms: Rate::DEFAULT_BURST_MS };

impl Default for Settings {
    fn default() -> Self {
        Settings::new(&Catalogue::standard(), Roles::NONE)
    }
}

impl Settings {
    /// The catalogue's defaults for destinations declaring `roles` (a vector relaxed by one of
    /// them is allowed), inspection on, asymmetric, the default fragment budget.
    pub fn new(catalogue: &Catalogue, roles: Roles) -> Settings {
        let mut vectors = [VectorPolicy { action: Action::Allow, min_size: 0 }; MAX_VECTORS];
        for (slot, v) in vectors.iter_mut().zip(catalogue.vectors()) {
            let action = if v.relaxed_by.intersects(roles) { Action::Allow } else { v.action };
            *slot = VectorPolicy { action, min_size: v.min_size };
        }
        Settings {
            enabled: true,
            roles,
            symmetric: false,
            fragments: Action::rate_limit(DEFAULT_FRAGMENT_RATE),
            vectors,
        }
    }
}

counted_enum! {
    /// What happened to a packet that matched a vector (per-vector counter columns).
    pub enum Outcome {
        /// The profile allows the vector.
        Allowed = "allowed",
        /// Dropped: the profile drops the vector.
        Dropped = "dropped",
        /// Admitted within the vector's per-destination budget.
        Admitted = "admitted",
        /// Dropped: over the vector's per-destination budget.
        OverBudget = "over_budget",
        /// Symmetric mode: matched a recorded request, admitted.
        Solicited = "solicited",
        /// Symmetric mode: matched no recorded request, dropped.
        Unsolicited = "unsolicited",
        /// A later fragment of a datagram this vector admitted, admitted.
        FragmentAdmitted = "fragment_admitted",
        /// A later fragment of a datagram this vector dropped (or over its byte budget), dropped.
        FragmentDropped = "fragment_dropped",
    }
}

/// Per-vector counters of one worker (`Stats::amp`); index by catalogue position, then
/// `Outcome`. A catalogue swap that reorders vectors reorders these rows: label them with the
/// catalogue of the snapshot they were read under, and append new vectors at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: [[u64; Outcome::COUNT]; MAX_VECTORS],
    /// IP bytes.
    pub bytes: [[u64; Outcome::COUNT]; MAX_VECTORS],
}

impl Default for Counters {
    fn default() -> Self {
        Counters { packets: [[0; Outcome::COUNT]; MAX_VECTORS], bytes: [[0; Outcome::COUNT]; MAX_VECTORS] }
    }
}

impl Counters {
    #[inline]
    fn count(&mut self, vector: usize, outcome: Outcome, bytes: u16) {
        if let (Some(p), Some(b)) = (self.packets.get_mut(vector), self.bytes.get_mut(vector)) {
            p[outcome.index()] += 1;
            b[outcome.index()] += u64::from(bytes);
        }
    }

    /// Packets of `vector` with `outcome`.
    pub fn packets_of(&self, vector: usize, outcome: Outcome) -> u64 {
        self.packets.get(vector).map_or(0, |row| row[outcome.index()])
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.packets.iter_mut().flatten().zip(other.packets.iter().flatten()) {
            *a += *b;
        }
        for (a, b) in self.bytes.iter_mut().flatten().zip(other.bytes.iter().flatten()) {
            *a += *b;
        }
    }
}

/// Per-worker state: eviction counts of the shared tables this worker caused. Everything else
/// lives in `Shared` (cross-worker by nature) or the policy snapshot.
#[derive(Clone, Debug, Default)]
pub struct State {
    evictions: [u64; 3],
    /// Catalogue position of the vector the last inspected datagram matched (capture tags).
    last_vector: Option<u8>,
}

/// The protected host's side of an exchange, read from a response's or request's bytes.
#[inline]
fn exchange_id(kind: RequestKind, payload: &[u8], response: bool) -> Option<u64> {
    match kind {
        RequestKind::Dns => payload.get(0..2).map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
        RequestKind::Ntp => {
            // RFC 5905 §7.3: a reply's origin timestamp (bytes 24..32) is the request's transmit
            // timestamp (bytes 40..48).
            let at = if response { 24 } else { 40 };
            payload.get(at..at + 8).map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        }
    }
}

impl State {
    /// A worker's state.
    pub fn new() -> State {
        State::default()
    }

    /// Decides one packet for a protected destination (see the module docs).
    #[inline]
    #[allow(clippy::too_many_arguments)] // the pipeline's countermeasure contract
    pub fn inspect(
        &mut self,
        shared: &Shared,
        global: &Global,
        settings: &Settings,
        now: Now,
        info: &PacketInfo,
        frame: &[u8],
        stats: &mut Stats,
    ) -> Check {
        self.last_vector = None;
        if !settings.enabled {
            return Check::Clean;
        }
        match info.fragment {
            Fragment::None => {
                if info.protocol != proto::UDP {
                    return Check::Clean;
                }
                // The common case, clean traffic from ports no reflector uses: one bitmap load.
                let candidates = global.catalogue.candidates(info.src_port);
                if candidates.is_empty() {
                    return Check::Clean;
                }
                self.datagram(shared, global, settings, now, info, frame, candidates, stats).0
            }
            Fragment::First => {
                let (check, first) = if info.protocol == proto::UDP {
                    let candidates = global.catalogue.candidates(info.src_port);
                    self.datagram(shared, global, settings, now, info, frame, candidates, stats)
                } else {
                    (Check::Clean, FirstVerdict::Pass)
                };
                let ttl = global.fragment_ttl_ns;
                shared.note_first_fragment(&FragmentKey::of(info), first, now.mono_ns, ttl, &mut self.evictions);
                stats.event(Event::AmpFragmentRecorded);
                check
            }
            Fragment::NonFirst => self.later_fragment(shared, settings, now, info, stats),
        }
    }

    /// A whole UDP datagram or its first fragment, from a port with `candidates`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn datagram(
        &mut self,
        shared: &Shared,
        global: &Global,
        settings: &Settings,
        now: Now,
        info: &PacketInfo,
        frame: &[u8],
        candidates: &[u8],
        stats: &mut Stats,
    ) -> (Check, FirstVerdict) {
        let at = usize::from(info.payload_offset);
        let Some(payload) = frame.get(at..at + usize::from(info.payload_len)) else {
            return (Check::Clean, FirstVerdict::Pass);
        };
        let datagram_len = if info.fragment == Fragment::First {
            // The UDP length of a first fragment covers the whole datagram.
            let l4 = usize::from(info.l4_offset);
            frame
                .get(l4 + 4..l4 + 6)
                .map_or(payload.len(), |b| usize::from(u16::from_be_bytes([b[0], b[1]])).saturating_sub(8))
        } else {
            payload.len()
        };
        let vectors = global.catalogue.vectors();
        for &i in candidates {
            let index = usize::from(i);
            let (Some(vector), Some(policy)) = (vectors.get(index), settings.vectors.get(index)) else { continue };
            if datagram_len >= usize::from(policy.min_size) && vector.signature.matches(payload, datagram_len) {
                return self.apply(shared, settings, now, info, payload, index, vector.requests, policy, stats);
            }
        }
        (Check::Clean, FirstVerdict::Pass)
    }

    /// The profile's decision for a datagram that matched vector `index`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        shared: &Shared,
        settings: &Settings,
        now: Now,
        info: &PacketInfo,
        payload: &[u8],
        index: usize,
        requests: Option<RequestKind>,
        policy: &VectorPolicy,
        stats: &mut Stats,
    ) -> (Check, FirstVerdict) {
        let v = index as u8;
        self.last_vector = Some(v);
        if settings.symmetric
            && let Some(kind) = requests
        {
            let solicited = exchange_id(kind, payload, true).is_some_and(|id| {
                let e = Exchange {
                    kind,
                    host: info.dst,
                    host_port: info.dst_port,
                    server: info.src,
                    server_port: info.src_port,
                    id,
                };
                shared.requested(&e, now.mono_ns)
            });
            if solicited {
                stats.amp.count(index, Outcome::Solicited, info.ip_len);
                stats.event(Event::AmpSolicited);
                return (Check::Clean, FirstVerdict::Pass);
            }
            stats.amp.count(index, Outcome::Unsolicited, info.ip_len);
            return (Check::Reject(DropReason::AmpUnsolicited), FirstVerdict::Drop(v));
        }
        match &policy.action {
            Action::Drop => {
                stats.amp.count(index, Outcome::Dropped, info.ip_len);
                (Check::Reject(DropReason::AmpReflection), FirstVerdict::Drop(v))
            }
            Action::RateLimit(limit) => {
                let key = (info.dst, u64::from(v));
                if shared.admit(key, limit, now.mono_ns, u32::from(info.ip_len), true, &mut self.evictions) {
                    stats.amp.count(index, Outcome::Admitted, info.ip_len);
                    stats.event(Event::AmpRateLimitAdmit);
                    (Check::Clean, FirstVerdict::Limited(v))
                } else {
                    stats.amp.count(index, Outcome::OverBudget, info.ip_len);
                    (Check::Reject(DropReason::AmpRateLimit), FirstVerdict::Drop(v))
                }
            }
            Action::Allow => {
                stats.amp.count(index, Outcome::Allowed, info.ip_len);
                stats.event(Event::AmpVectorAllowed);
                (Check::Clean, FirstVerdict::Pass)
            }
        }
    }

    /// A fragment after the first: follow the first fragment's verdict, else the profile's
    /// fragment action.
    fn later_fragment(
        &mut self,
        shared: &Shared,
        settings: &Settings,
        now: Now,
        info: &PacketInfo,
        stats: &mut Stats,
    ) -> Check {
        let bytes = u32::from(info.ip_len);
        match shared.first_fragment(&FragmentKey::of(info), now.mono_ns) {
            Some(FirstVerdict::Pass) => {
                stats.event(Event::AmpFragmentFollowed);
                Check::Clean
            }
            Some(FirstVerdict::Drop(v)) => {
                stats.amp.count(usize::from(v), Outcome::FragmentDropped, info.ip_len);
                Check::Reject(DropReason::AmpFragment)
            }
            Some(FirstVerdict::Rejected) => Check::Reject(DropReason::AmpFragment),
            Some(FirstVerdict::Limited(v)) => {
                let index = usize::from(v);
                // Charged to the byte budget the first fragment was admitted under (as the profile
                // has it now): the budget holds for the datagram's bytes on the wire.
                if let Some(VectorPolicy { action: Action::RateLimit(limit), .. }) = settings.vectors.get(index)
                    && !shared.admit((info.dst, u64::from(v)), limit, now.mono_ns, bytes, false, &mut self.evictions)
                {
                    stats.amp.count(index, Outcome::FragmentDropped, info.ip_len);
                    return Check::Reject(DropReason::AmpRateLimit);
                }
                stats.amp.count(index, Outcome::FragmentAdmitted, info.ip_len);
                stats.event(Event::AmpFragmentFollowed);
                Check::Clean
            }
            None => match &settings.fragments {
                Action::Allow => {
                    stats.event(Event::AmpFragmentUnseenAdmit);
                    Check::Clean
                }
                Action::Drop => Check::Reject(DropReason::AmpFragmentPolicy),
                Action::RateLimit(limit) => {
                    let key = (info.dst, FRAGMENT_BUDGET);
                    if shared.admit(key, limit, now.mono_ns, bytes, true, &mut self.evictions) {
                        stats.event(Event::AmpFragmentUnseenAdmit);
                        Check::Clean
                    } else {
                        Check::Reject(DropReason::AmpFragmentRateLimit)
                    }
                }
            },
        }
    }

    /// Records that a check before this one (baseline filter, deny list, rule, budget) rejected
    /// the first fragment `info` of a datagram, so that its later fragments, which carry no
    /// ports for those checks to match, are rejected too (under `amp_fragment`) instead of
    /// falling to the unseen-fragment action. Call it only for first fragments this
    /// countermeasure did not decide itself; a no-op when the profile disables it.
    pub fn first_fragment_rejected(
        &mut self,
        shared: &Shared,
        global: &Global,
        settings: &Settings,
        now: Now,
        info: &PacketInfo,
        stats: &mut Stats,
    ) {
        if !settings.enabled || info.fragment != Fragment::First {
            return;
        }
        let (key, ttl) = (FragmentKey::of(info), global.fragment_ttl_ns);
        shared.note_first_fragment(&key, FirstVerdict::Rejected, now.mono_ns, ttl, &mut self.evictions);
        stats.event(Event::AmpFragmentRecorded);
    }

    /// Records a request a protected host sent (a packet from a protected source towards the
    /// internet, in a symmetric deployment): a DNS query to port 53 or an NTP client request
    /// to port 123. Returns true when one was recorded.
    pub fn record_request(
        &mut self,
        shared: &Shared,
        global: &Global,
        now: Now,
        info: &PacketInfo,
        frame: &[u8],
        stats: &mut Stats,
    ) -> bool {
        if info.protocol != proto::UDP || info.fragment == Fragment::NonFirst {
            return false;
        }
        let at = usize::from(info.payload_offset);
        let Some(payload) = frame.get(at..at + usize::from(info.payload_len)) else {
            return false;
        };
        let kind = match info.dst_port {
            // A query: QR=0, opcode QUERY (RFC 1035 §4.1.1).
            53 if payload.len() >= 12 && payload[2] & 0xf8 == 0 => RequestKind::Dns,
            // Mode 3 (client), version 1..=4, full header (RFC 5905 §7.3).
            123 if payload.len() >= 48 && payload[0] & 0x07 == 3 && (1..=4).contains(&((payload[0] >> 3) & 7)) => {
                RequestKind::Ntp
            }
            _ => return false,
        };
        let Some(id) = exchange_id(kind, payload, false) else {
            return false;
        };
        let e = Exchange {
            kind,
            host: info.src,
            host_port: info.src_port,
            server: info.dst,
            server_port: info.dst_port,
            id,
        };
        shared.note_request(&e, now.mono_ns, global.request_ttl_ns, &mut self.evictions);
        stats.event(Event::AmpRequestRecorded);
        true
    }

    /// The vector the last inspected datagram matched, if any.
    pub fn last_vector(&self) -> Option<u8> {
        self.last_vector
    }

    /// This worker's eviction counts for the shared tables, as `Stats::tables` entries. Length
    /// and capacity are left 0 (they are the shared tables', not this worker's: read them from
    /// `Shared::table_stats` once, not summed over workers).
    pub fn table_stats(&self) -> [(Table, TableStats); 3] {
        let t = |evictions| TableStats { len: 0, capacity: 0, evictions };
        [
            (Table::AmpBuckets, t(self.evictions[0])),
            (Table::AmpFragments, t(self.evictions[1])),
            (Table::AmpRequests, t(self.evictions[2])),
        ]
    }
}
