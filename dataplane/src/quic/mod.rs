//! QUIC Initial validation and flow gating (RFC 9000, RFC 9001, RFC 9369).
//!
//! QUIC cannot be protected with SYN cookies, and a middlebox cannot send Retry for the server.
//! What the scrubber does instead is check that a client's first Initial is what the RFCs say it
//! must be, cryptographically (Initial keys derive from the public DCID), and then forward only
//! the flows that started that way.
//!
//! Contract: `State::inspect` is called for every frame of a protected destination after the
//! pipeline's own filters, lists, rules and budgets. It returns `Check::Clean` for anything out
//! of scope (profile without QUIC protection, other protocol or port) and never touches the
//! frame. For UDP to a configured QUIC port it decides, cheapest checks first:
//! 1. structure: long/short header, version (1 and 2 validated; Version Negotiation dropped;
//!    others `drop` or `pass` by profile), packet type (v1 and v2 encode it differently), UDP
//!    payload ≥ 1200 bytes for a datagram carrying an Initial, CID lengths, Token Length and
//!    Length against the datagram, coalesced packets (same version and DCID) and trailing zero
//!    padding;
//! 2. the flow by 4-tuple: an admitted flow's packets pass (later Initials included); a refused
//!    flow's are dropped; Handshake, 0-RTT and short-header packets of unknown flows are dropped
//!    (`strict`) or forwarded (`lenient`);
//! 3. for a flow's first Initial only: DCID of 8..=20 bytes, the per-source and per-destination
//!    Initial budgets, the shared DCID replay table (read-only), the worker's decryption budget;
//!    then key derivation, header protection removal and AEAD authentication of the whole packet,
//!    the frame types allowed in an Initial, a CRYPTO frame at offset 0 starting a ClientHello,
//!    the replay table (recording this tuple), and the ClientHello itself (reassembled across the
//!    flow's first Initials, bounded), its SNI/ALPN/JA4-style fingerprint and the profile's rules.
//!
//! Every refusal has its own `DropReason` (`quic_*`), every admission path its own `Event`.
//! Per-worker tables are fixed-size and counted (`Table::Quic*`); the replay table is shared
//! (see `replay` for why). The frame is never modified, so monitor mode needs nothing special.

pub mod client_hello;
pub mod craft;
pub mod flow_table;
pub mod flows;
pub mod frames;
pub mod initial;
pub mod keys;
pub mod replay;

use crate::addr::Addr;
use crate::parse::{Fragment, PacketInfo, proto};
use crate::pipeline::Now;
use crate::ratelimit::{Rate, TokenBucket};
use crate::stats::{Event, Stats, Table};
use crate::table::ClockTable;
use crate::verdict::{Check, DropReason};
use crate::wire::quic::{FIXED_BIT, FORM_LONG, MAX_CID_LEN, Packet, VERSION_NEGOTIATION};
use client_hello::{Assembly, HelloError, HelloInfo, Status};
use flow_table::{FlowTable, Refresh};
use flows::{Flow, FlowKey, FlowState, PendingPool, Summaries};
use frames::{FrameError, Frames};
use initial::{HeaderError, InitialHeader, OpenError};
use keys::{KeySchedule, LongType, Version};
use replay::ReplayTable;

/// Smallest UDP payload of a datagram carrying a client Initial (RFC 9000 §14.1).
pub const MIN_INITIAL_DATAGRAM: usize = 1200;

/// What happens to packets of flows that were not admitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gating {
    /// Handshake, 0-RTT and short-header packets only for admitted flows; first Initials over
    /// the decryption budget dropped.
    #[default]
    Strict,
    /// Those packets always forwarded; first Initials over the budget forwarded unadmitted.
    Lenient,
}

/// What happens to long-header packets of versions other than 1 and 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownVersion {
    /// Drop them (`quic_unknown_version`).
    #[default]
    Drop,
    /// Forward them (datagrams of at least 1200 bytes only: RFC 9000 §5.2.2), so the server can
    /// answer with Version Negotiation.
    Pass,
}

/// Action of a ClientHello rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HelloAction {
    /// Admit the flow.
    #[default]
    Allow,
    /// Refuse the flow.
    Drop,
}

/// A server-name condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SniPattern {
    /// This name exactly (lower-case).
    Exact(Box<[u8]>),
    /// Any name ending with this suffix (lower-case, starting with '.'): from `*.example.com`.
    Suffix(Box<[u8]>),
    /// No server_name extension.
    Absent,
}

impl SniPattern {
    /// Parses `name`, `*.suffix` or the empty string (no SNI).
    pub fn parse(text: &str) -> SniPattern {
        let lower = text.to_ascii_lowercase();
        if lower.is_empty() {
            SniPattern::Absent
        } else if let Some(suffix) = lower.strip_prefix('*') {
            SniPattern::Suffix(suffix.as_bytes().into())
        } else {
            SniPattern::Exact(lower.as_bytes().into())
        }
    }

    /// True when `sni` (lower-case, empty when absent) matches.
    pub fn matches(&self, sni: &[u8]) -> bool {
        match self {
            SniPattern::Exact(name) => **name == *sni,
            SniPattern::Suffix(suffix) => sni.len() > suffix.len() && sni.ends_with(suffix),
            SniPattern::Absent => sni.is_empty(),
        }
    }
}

/// A fingerprint condition: the whole JA4-style text, or a prefix of it (`q13d*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintPattern {
    text: Box<[u8]>,
    prefix: bool,
}

impl FingerprintPattern {
    /// Parses a fingerprint, a trailing `*` making it a prefix.
    pub fn parse(text: &str) -> FingerprintPattern {
        match text.strip_suffix('*') {
            Some(p) => FingerprintPattern { text: p.as_bytes().into(), prefix: true },
            None => FingerprintPattern { text: text.as_bytes().into(), prefix: false },
        }
    }

    /// True when `ja4` matches.
    pub fn matches(&self, ja4: &[u8]) -> bool {
        if self.prefix { ja4.starts_with(&self.text) } else { *self.text == *ja4 }
    }
}

/// A ClientHello rule: every condition present must match; the first matching rule decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloRule {
    /// Server-name condition.
    pub sni: Option<SniPattern>,
    /// Fingerprint condition.
    pub fingerprint: Option<FingerprintPattern>,
    /// Action.
    pub action: HelloAction,
}

impl HelloRule {
    /// True when the rule matches `hello`.
    pub fn matches(&self, hello: &HelloInfo) -> bool {
        self.sni.as_ref().is_none_or(|p| p.matches(hello.sni()))
            && self.fingerprint.as_ref().is_none_or(|p| p.matches(&hello.ja4))
    }
}

/// A profile's QUIC settings (part of `policy::Profile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// QUIC protection on for this profile.
    pub enabled: bool,
    /// Destination ports treated as QUIC, as inclusive ranges.
    pub ports: Vec<(u16, u16)>,
    /// Gating of unadmitted flows.
    pub gating: Gating,
    /// Versions other than 1 and 2.
    pub unknown_versions: UnknownVersion,
    /// Budget of first Initials per source (IPv6 per /64), appliance-wide.
    pub src_initial_rate: Option<Rate>,
    /// Budget of first Initials per destination address, appliance-wide.
    pub dst_initial_rate: Option<Rate>,
    /// Compute the JA4-style fingerprint when something reads it: a fingerprint rule of the
    /// profile, or a running capture (whose tags carry it). Flows that began while neither was
    /// the case carry no fingerprint.
    pub fingerprint: bool,
    /// ClientHello rules in order.
    pub hello_rules: Vec<HelloRule>,
    /// Action when no rule matches.
    pub hello_default: HelloAction,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            ports: vec![(443, 443)],
            gating: Gating::Strict,
            unknown_versions: UnknownVersion::Drop,
            src_initial_rate: Some(Rate::pps(100)),
            dst_initial_rate: Some(Rate::pps(50_000)),
            fingerprint: true,
            hello_rules: Vec::new(),
            hello_default: HelloAction::Allow,
        }
    }
}

impl Settings {
    /// True when `port` is a QUIC port of this profile.
    #[inline]
    pub fn is_quic_port(&self, port: u16) -> bool {
        self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }

    /// True when the admission decision waits for the whole ClientHello.
    #[inline]
    fn needs_whole_hello(&self) -> bool {
        !self.hello_rules.is_empty() || self.hello_default == HelloAction::Drop
    }
}

/// Appliance-wide QUIC settings (part of `policy::Policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Global {
    /// A flow entry expires this long after its last packet.
    pub flow_ttl_ns: u64,
    /// A DCID is remembered this long after its last sighting.
    pub replay_ttl_ns: u64,
    /// Most distinct 4-tuples one DCID may arrive from.
    pub replay_limit: u32,
    /// First Initials each worker may decrypt per second (0: unlimited).
    pub decrypt_budget_pps: u64,
    /// Most Initials decrypted to complete one flow's ClientHello.
    pub max_hello_packets: u8,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            flow_ttl_ns: 120_000_000_000,
            replay_ttl_ns: 10_000_000_000,
            replay_limit: 3,
            decrypt_budget_pps: 200_000,
            max_hello_packets: 4,
        }
    }
}

/// Sizes of a worker's QUIC tables, fixed when the worker starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// Workers sharing the appliance-wide budgets.
    pub workers: u32,
    /// Flow entries.
    pub flows: usize,
    /// Per-source Initial buckets.
    pub src_buckets: usize,
    /// Per-destination Initial buckets.
    pub dst_buckets: usize,
    /// Flows that may await the rest of their ClientHello at once.
    pub pending: usize,
    /// Largest ClientHello reassembled, in bytes.
    pub max_client_hello: usize,
    /// ClientHello summaries kept for capture tags.
    pub summaries: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            workers: 1,
            flows: 1 << 17,
            src_buckets: 1 << 16,
            dst_buckets: 1 << 14,
            pending: 1024,
            max_client_hello: 8192,
            summaries: 1 << 14,
        }
    }
}

/// Sizes of the cross-worker QUIC tables, fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedConfig {
    /// Slots of the DCID replay table (rounded up to a power of two).
    pub replay_slots: usize,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig { replay_slots: Shared::DEFAULT_REPLAY_SLOTS }
    }
}

/// Cross-worker QUIC state, created once by the daemon.
#[derive(Debug)]
pub struct Shared {
    /// DCIDs seen and from how many 4-tuples.
    pub replay: ReplayTable,
}

impl Shared {
    /// Default replay-table size (8 MiB).
    pub const DEFAULT_REPLAY_SLOTS: usize = 1 << 20;

    /// Tables sized by `config`, their hashes keyed from `seed` (drawn from the OS at start:
    /// an attacker who knew it could aim DCIDs at one slot).
    pub fn new(config: SharedConfig, seed: [u64; 4]) -> Shared {
        // Mixed with a constant of this module's own, so other users of the same seed get other keys.
        const DOMAIN: u64 = 0x7175_6963_2d64_6369; // "quic-dci"
        let k0 = (seed[0] ^ seed[2] ^ DOMAIN).to_le_bytes();
        let k1 = (seed[1] ^ seed[3]).rotate_left(17).wrapping_add(DOMAIN).to_le_bytes();
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&k0);
        secret[8..].copy_from_slice(&k1);
        Shared { replay: ReplayTable::new(config.replay_slots, secret) }
    }
}

/// Largest datagram opened (UMEM frames are at most 4 KiB; jumbo frames fit too).
const SCRATCH_LEN: usize = 1 << 16;

/// A worker's QUIC state. See the module docs.
#[derive(Debug)]
pub struct State {
    config: StateConfig,
    keys: KeySchedule,
    flows: FlowTable,
    src_buckets: ClockTable<Addr, TokenBucket>,
    dst_buckets: ClockTable<Addr, TokenBucket>,
    budget: Option<TokenBucket>,
    pending: PendingPool,
    summaries: Summaries,
    assembly: Assembly,
    scratch: Box<[u8]>,
    frames: Frames,
    hello: HelloInfo,
    last_tag: (u32, u32),
    /// A capture is running (set per batch): its tags carry fingerprints, so compute them.
    capturing: bool,
}

/// The kind of a packet that is not a client Initial, for gating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Other {
    Handshake,
    ZeroRtt,
    Short,
}

impl State {
    /// A worker's tables, sized by `config`.
    pub fn new(config: StateConfig) -> State {
        State {
            config,
            keys: KeySchedule::new(),
            flows: FlowTable::for_flows(config.flows),
            src_buckets: ClockTable::new(config.src_buckets),
            dst_buckets: ClockTable::new(config.dst_buckets),
            budget: None,
            pending: PendingPool::new(config.pending, config.max_client_hello),
            summaries: Summaries::new(config.summaries),
            assembly: Assembly::new(config.max_client_hello),
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
            frames: Frames::default(),
            hello: HelloInfo::default(),
            last_tag: (0, 0),
            capturing: false,
        }
    }

    /// Table figures into `stats` (call where the pipeline refreshes its own).
    pub fn refresh_table_stats(&self, stats: &mut Stats) {
        stats.tables[Table::QuicFlows.index()] = self.flows.stats();
        stats.tables[Table::QuicSrcBuckets.index()] = self.src_buckets.stats();
        stats.tables[Table::QuicDstBuckets.index()] = self.dst_buckets.stats();
    }

    /// Tells whether a capture is running, so that new flows' fingerprints are computed for its
    /// tags (the pipeline calls this once per batch).
    pub fn set_capturing(&mut self, on: bool) {
        self.capturing = on;
    }

    /// ClientHello summary (SNI, ALPN, fingerprint) of the flow of the last packet inspected, if
    /// known: what a capture tags that packet with.
    pub fn last_hello(&self) -> Option<&HelloInfo> {
        self.summaries.get(self.last_tag)
    }

    /// Admission state of a flow (control-plane and tests).
    pub fn flow_state(&self, key: &FlowKey) -> Option<FlowState> {
        self.flows.peek(key).map(|f| f.state)
    }

    /// Prefetches the flow-table set (and, for an Initial, the replay-table slot) that `inspect`
    /// will read for this frame, so that calling this for every frame of a batch before
    /// deciding any of them overlaps the cache misses of independent frames (the pipeline's
    /// lookup pass). Optional: it changes no state. `frame` is the whole frame's bytes.
    #[inline]
    pub fn prefetch(&self, shared: &Shared, settings: &Settings, info: &PacketInfo, frame: &[u8]) {
        if !settings.enabled || info.protocol != proto::UDP || !settings.is_quic_port(info.dst_port) {
            return;
        }
        let start = usize::from(info.payload_offset);
        let dgram = frame.get(start..start + usize::from(info.payload_len)).unwrap_or(&[]);
        // An Initial may insert, and so read every entry of its set to pick a victim.
        let initial = dgram.len() >= MIN_INITIAL_DATAGRAM && dgram[0] & FORM_LONG != 0;
        self.flows.prefetch(&FlowKey::of(info), initial);
        if initial {
            let dcid_len = usize::from(dgram[5]).min(MAX_CID_LEN);
            shared.replay.prefetch(shared.replay.hash_dcid(&dgram[6..6 + dcid_len]));
        }
    }

    /// Decides one frame. See the module docs; `frame` is the whole frame's bytes.
    #[allow(clippy::too_many_arguments)]
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
        self.last_tag = (0, 0);
        if !settings.enabled || info.protocol != proto::UDP || !settings.is_quic_port(info.dst_port) {
            return Check::Clean;
        }
        // RFC 9000 §14: UDP datagrams carrying QUIC MUST NOT be fragmented at the IP layer.
        if info.fragment != Fragment::None {
            return Check::Reject(DropReason::QuicFragment);
        }
        let start = usize::from(info.payload_offset);
        let Some(dgram) = frame.get(start..start + usize::from(info.payload_len)) else {
            return Check::Reject(DropReason::QuicTruncated);
        };
        let key = FlowKey::of(info);
        let Some(&first) = dgram.first() else {
            return Check::Reject(DropReason::QuicTruncated);
        };
        if first & FORM_LONG == 0 {
            return self.gate(global, settings, now, &key, Other::Short, stats);
        }
        let Some(version_bytes) = dgram.get(1..5) else {
            return Check::Reject(DropReason::QuicTruncated);
        };
        let wire = u32::from_be_bytes([version_bytes[0], version_bytes[1], version_bytes[2], version_bytes[3]]);
        if wire == VERSION_NEGOTIATION {
            // RFC 9000 §17.2.1: only servers send Version Negotiation.
            return Check::Reject(DropReason::QuicVersionNegotiation);
        }
        let Some(version) = Version::from_wire(wire) else {
            return match settings.unknown_versions {
                UnknownVersion::Drop => Check::Reject(DropReason::QuicUnknownVersion),
                // RFC 9000 §5.2.2: servers MUST drop smaller packets of unsupported versions.
                UnknownVersion::Pass if dgram.len() < MIN_INITIAL_DATAGRAM => {
                    Check::Reject(DropReason::QuicShortDatagram)
                }
                UnknownVersion::Pass => {
                    stats.event(Event::QuicUnknownVersionPass);
                    Check::Clean
                }
            };
        };
        match version.long_type((first >> 4) & 3) {
            LongType::Initial => self.initial(shared, global, settings, now, &key, dgram, version, stats),
            // Retry is sent by servers only (RFC 9000 §17.2.5).
            LongType::Retry => Check::Reject(DropReason::QuicUnexpectedType),
            kind => {
                if let Err(reason) = check_long_header(dgram) {
                    return Check::Reject(reason);
                }
                let other = if kind == LongType::Handshake { Other::Handshake } else { Other::ZeroRtt };
                self.gate(global, settings, now, &key, other, stats)
            }
        }
    }

    /// The flow of `key`, refreshed, unless absent or expired (an expired entry is removed).
    fn flow(&mut self, global: &Global, now: Now, key: &FlowKey, stats: &mut Stats) -> Option<Flow> {
        match self.flows.refresh(key, now.mono_ns, global.flow_ttl_ns) {
            Refresh::Absent => None,
            Refresh::Expired(old) => {
                if let FlowState::Pending { slot, generation } = old.state {
                    self.pending.release(slot, generation);
                }
                stats.event(Event::QuicFlowExpired);
                None
            }
            Refresh::Live(flow) => {
                self.last_tag = flow.summary;
                Some(flow)
            }
        }
    }

    /// Handshake, 0-RTT and short-header packets: forwarded for admitted flows only (strict).
    fn gate(
        &mut self,
        global: &Global,
        s: &Settings,
        now: Now,
        key: &FlowKey,
        kind: Other,
        stats: &mut Stats,
    ) -> Check {
        match self.flow(global, now, key, stats).map(|f| f.state) {
            Some(FlowState::Admitted) => {
                stats.event(Event::QuicAdmittedForward);
                return Check::Clean;
            }
            Some(FlowState::Refused) => return Check::Reject(DropReason::QuicRefusedFlow),
            // A split ClientHello still arriving: admitted already unless a rule must see it whole.
            Some(FlowState::Pending { .. }) if !s.needs_whole_hello() => {
                stats.event(Event::QuicAdmittedForward);
                return Check::Clean;
            }
            _ => {}
        }
        match s.gating {
            Gating::Lenient => {
                stats.event(Event::QuicLenientForward);
                Check::Clean
            }
            Gating::Strict => Check::Reject(match kind {
                Other::Handshake => DropReason::QuicUnadmittedHandshake,
                Other::ZeroRtt => DropReason::QuicUnadmittedZeroRtt,
                Other::Short => DropReason::QuicUnadmittedShort,
            }),
        }
    }

    /// A datagram whose first packet is an Initial.
    #[allow(clippy::too_many_arguments)]
    fn initial(
        &mut self,
        shared: &Shared,
        global: &Global,
        s: &Settings,
        now: Now,
        key: &FlowKey,
        dgram: &[u8],
        version: Version,
        stats: &mut Stats,
    ) -> Check {
        // RFC 9000 §14.1: a server MUST discard an Initial in a UDP datagram under 1200 bytes.
        if dgram.len() < MIN_INITIAL_DATAGRAM {
            return Check::Reject(DropReason::QuicShortDatagram);
        }
        let header = match initial::parse_header_any_bit(dgram, version) {
            Ok(h) => h,
            Err(e) => return Check::Reject(header_reason(e)),
        };
        let flow = self.flow(global, now, key, stats).map(|f| f.state);
        // RFC 9287: once a client has the server's transport parameters it may clear the QUIC bit
        // of any packet, later Initials of its connection included; only the Initial that opens a
        // connection is held to the rule.
        let known = flow.is_some();
        if !known && !initial::first_initial_bit_ok(dgram[0], &header) {
            return Check::Reject(DropReason::QuicFixedBit);
        }
        if !coalesced_ok(dgram, &header, known) {
            return Check::Reject(DropReason::QuicBadCoalesced);
        }
        match flow {
            Some(FlowState::Admitted) => {
                stats.event(Event::QuicAdmittedForward);
                Check::Clean
            }
            Some(FlowState::Refused) => Check::Reject(DropReason::QuicRefusedFlow),
            Some(FlowState::Pending { slot, generation }) => {
                self.continue_hello(shared, s, global, now, key, dgram, &header, slot, generation, stats)
            }
            None => self.first_initial(shared, global, s, now, key, dgram, &header, stats),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn first_initial(
        &mut self,
        shared: &Shared,
        global: &Global,
        s: &Settings,
        now: Now,
        key: &FlowKey,
        dgram: &[u8],
        h: &InitialHeader,
        stats: &mut Stats,
    ) -> Check {
        let dcid = &dgram[h.dcid.clone()];
        // RFC 9000 §7.2: a client's first DCID MUST be at least 8 bytes long.
        if dcid.len() < initial::MIN_FIRST_DCID_LEN {
            return Check::Reject(DropReason::QuicBadCid);
        }
        let t = now.mono_ns;
        let bytes = dgram.len() as u32;
        if let Some(rate) = s.src_initial_rate {
            let rate = rate.per_worker(self.config.workers);
            let b = self.src_buckets.get_or_insert_with(source_key(key.client), || TokenBucket::new(rate, t));
            if !b.admit(rate, t, bytes) {
                return Check::Reject(DropReason::QuicSrcRateLimit);
            }
        }
        if let Some(rate) = s.dst_initial_rate {
            let rate = rate.per_worker(self.config.workers);
            let b = self.dst_buckets.get_or_insert_with(key.server, || TokenBucket::new(rate, t));
            if !b.admit(rate, t, bytes) {
                return Check::Reject(DropReason::QuicDstRateLimit);
            }
        }
        let dcid_hash = shared.replay.hash_dcid(dcid);
        let tuple_hash = shared.replay.hash_tuple(&key.to_bytes());
        if shared.replay.over_limit(dcid_hash, tuple_hash, t, global.replay_ttl_ns, global.replay_limit) {
            return Check::Reject(DropReason::QuicReplay);
        }
        if global.decrypt_budget_pps != 0 {
            let rate = Rate::pps(global.decrypt_budget_pps);
            let budget = self.budget.get_or_insert_with(|| TokenBucket::new(rate, t));
            if !budget.admit(rate, t, 0) {
                return match s.gating {
                    Gating::Strict => Check::Reject(DropReason::QuicCryptoBudget),
                    Gating::Lenient => {
                        stats.event(Event::QuicBudgetForward);
                        Check::Clean
                    }
                };
            }
        }
        let keys = self.keys.client_keys(h.version, dcid);
        let opened = match initial::open(&keys, &dgram[..h.end], h.pn_offset, None, &mut self.scratch) {
            Ok(o) => o,
            Err(e) => return Check::Reject(open_reason(e)),
        };
        stats.event(Event::QuicInitialValid);
        let payload = opened.payload(&self.scratch);
        if let Err(e) = frames::walk(payload, &mut self.frames) {
            return Check::Reject(frame_reason(e));
        }
        // The first Initial must start the ClientHello: a CRYPTO frame at offset 0 whose first
        // byte is the ClientHello handshake type.
        let starts_hello = self.frames.crypto().iter().any(|c| {
            c.offset == 0 && payload.get(c.data.clone()).and_then(<[u8]>::first) == Some(&client_hello::CLIENT_HELLO)
        });
        if !starts_hello {
            return Check::Reject(DropReason::QuicNoClientHello);
        }
        let sighting = shared.replay.record(dcid_hash, tuple_hash, t, global.replay_ttl_ns);
        if sighting.evicted {
            stats.event(Event::QuicReplayEvicted);
        }
        if sighting.tuples > global.replay_limit {
            return Check::Reject(DropReason::QuicReplay);
        }
        self.assembly.reset();
        for c in self.frames.crypto() {
            if !self.assembly.add(c.offset, &payload[c.data.clone()]) {
                return Check::Reject(DropReason::QuicHelloTooLarge);
            }
        }
        let mut flow = Flow { state: FlowState::Admitted, last_ns: t, summary: (0, 0) };
        match self.assembly.status() {
            Status::Complete => {
                let check = self.decide_hello(s, &mut flow, stats);
                self.insert_flow(*key, flow);
                check
            }
            Status::Incomplete => {
                let (slot, generation, evicted) = self.pending.take(h.version, keys, opened.pn, &mut self.assembly);
                if evicted {
                    stats.event(Event::QuicPendingEvicted);
                }
                flow.state = FlowState::Pending { slot, generation };
                self.insert_flow(*key, flow);
                stats.event(Event::QuicHelloPending);
                Check::Clean
            }
            Status::NotClientHello => Check::Reject(DropReason::QuicNoClientHello),
            Status::TooLarge => Check::Reject(DropReason::QuicHelloTooLarge),
        }
    }

    /// A later Initial of a flow whose ClientHello is incomplete.
    #[allow(clippy::too_many_arguments)]
    fn continue_hello(
        &mut self,
        shared: &Shared,
        s: &Settings,
        global: &Global,
        now: Now,
        key: &FlowKey,
        dgram: &[u8],
        h: &InitialHeader,
        slot: u32,
        generation: u32,
        stats: &mut Stats,
    ) -> Check {
        let give_up = |state: &mut State| {
            state.flows.remove(key);
            state.pending.release(slot, generation);
            Check::Reject(DropReason::QuicHelloIncomplete)
        };
        let Some(p) = self.pending.get_mut(slot, generation) else {
            return give_up(self);
        };
        if p.version != h.version || p.packets >= global.max_hello_packets {
            return give_up(self);
        }
        p.packets += 1;
        // The flow's keys were derived from its first DCID and stay the same (RFC 9001 §5.2).
        let opened = match initial::open(&p.keys, &dgram[..h.end], h.pn_offset, Some(p.largest_pn), &mut self.scratch) {
            Ok(o) => o,
            // After a Retry (RFC 9000 §17.2.5.2) the client starts again: a new DCID, so new keys,
            // and the Retry's token in every Initial. Its ClientHello starts over in that Initial,
            // so it is checked as a first one rather than refused until the pending flow gives up.
            Err(_) if !h.token.is_empty() => {
                self.flows.remove(key);
                self.pending.release(slot, generation);
                stats.event(Event::QuicHelloRestarted);
                return self.first_initial(shared, global, s, now, key, dgram, h, stats);
            }
            Err(e) => return Check::Reject(open_reason(e)),
        };
        p.largest_pn = p.largest_pn.max(opened.pn);
        stats.event(Event::QuicHelloContinued);
        let payload = opened.payload(&self.scratch);
        if let Err(e) = frames::walk(payload, &mut self.frames) {
            return Check::Reject(frame_reason(e));
        }
        for c in self.frames.crypto() {
            if !p.assembly.add(c.offset, &payload[c.data.clone()]) {
                self.flows.remove(key);
                self.pending.release(slot, generation);
                return Check::Reject(DropReason::QuicHelloTooLarge);
            }
        }
        match p.assembly.status() {
            Status::Incomplete => Check::Clean,
            Status::Complete => {
                // Move the buffer out for parsing, then give it back with the slot.
                core::mem::swap(&mut p.assembly, &mut self.assembly);
                let mut flow = Flow { state: FlowState::Admitted, last_ns: now.mono_ns, summary: (0, 0) };
                let check = self.decide_hello(s, &mut flow, stats);
                if let Some(p) = self.pending.get_mut(slot, generation) {
                    core::mem::swap(&mut p.assembly, &mut self.assembly);
                }
                self.pending.release(slot, generation);
                self.insert_flow(*key, flow);
                check
            }
            Status::NotClientHello => {
                self.flows.remove(key);
                self.pending.release(slot, generation);
                Check::Reject(DropReason::QuicNoClientHello)
            }
            Status::TooLarge => {
                self.flows.remove(key);
                self.pending.release(slot, generation);
                Check::Reject(DropReason::QuicHelloTooLarge)
            }
        }
    }

    /// Parses the whole ClientHello in `self.assembly`, applies the rules, sets `flow`.
    fn decide_hello(&mut self, s: &Settings, flow: &mut Flow, stats: &mut Stats) -> Check {
        let Some(msg) = self.assembly.message() else {
            return Check::Reject(DropReason::QuicHelloIncomplete);
        };
        // The fingerprint costs four SHA-256 blocks and two sorts, about a tenth of a first
        // Initial's check: computed only when a rule or a capture will read it.
        let fingerprint = s.fingerprint && (self.capturing || s.hello_rules.iter().any(|r| r.fingerprint.is_some()));
        if let Err(HelloError::Malformed | HelloError::NoTransportParameters) =
            client_hello::parse(msg, fingerprint, &mut self.hello)
        {
            flow.state = FlowState::Refused;
            return Check::Reject(DropReason::QuicBadClientHello);
        }
        flow.summary = self.summaries.put(&self.hello);
        self.last_tag = flow.summary;
        let action = match s.hello_rules.iter().find(|r| r.matches(&self.hello)) {
            Some(rule) => {
                if rule.action == HelloAction::Allow {
                    stats.event(Event::QuicHelloRuleAllow);
                }
                rule.action
            }
            None => s.hello_default,
        };
        match action {
            HelloAction::Allow => {
                flow.state = FlowState::Admitted;
                stats.event(Event::QuicFlowAdmitted);
                Check::Clean
            }
            HelloAction::Drop => {
                flow.state = FlowState::Refused;
                Check::Reject(DropReason::QuicHelloRuleDrop)
            }
        }
    }

    fn insert_flow(&mut self, key: FlowKey, flow: Flow) {
        if let Some(Flow { state: FlowState::Pending { slot, generation }, .. }) = self.flows.insert(key, flow) {
            self.pending.release(slot, generation);
        }
    }
}

/// Per-source bucket key: the address, IPv6 cut to its /64 (one subscriber's prefix).
#[inline]
fn source_key(addr: Addr) -> Addr {
    if addr.is_v4() { addr } else { Addr(addr.0 & !((1u128 << 64) - 1)) }
}

fn header_reason(e: HeaderError) -> DropReason {
    match e {
        HeaderError::Truncated => DropReason::QuicTruncated,
        HeaderError::CidTooLong => DropReason::QuicBadCid,
        HeaderError::BadLength => DropReason::QuicBadLength,
        HeaderError::FixedBitClear => DropReason::QuicFixedBit,
    }
}

fn open_reason(e: OpenError) -> DropReason {
    match e {
        OpenError::TooLong => DropReason::QuicBadLength,
        OpenError::Auth => DropReason::QuicAuthFailed,
        OpenError::ReservedBits => DropReason::QuicReservedBits,
    }
}

fn frame_reason(e: FrameError) -> DropReason {
    match e {
        FrameError::NotAllowed(_) => DropReason::QuicForbiddenFrame,
        FrameError::Malformed | FrameError::TooMany | FrameError::Empty => DropReason::QuicBadFrame,
    }
}

/// Structure of a Handshake or 0-RTT packet: CIDs within 20 bytes, Length within the datagram.
fn check_long_header(dgram: &[u8]) -> Result<(), DropReason> {
    if dgram.get(5).is_some_and(|&len| usize::from(len) > MAX_CID_LEN) {
        return Err(DropReason::QuicBadCid);
    }
    let p = Packet::new_checked(dgram).map_err(|_| DropReason::QuicTruncated)?;
    if p.dcid_len() > MAX_CID_LEN || p.scid_len() > MAX_CID_LEN {
        return Err(DropReason::QuicBadCid);
    }
    p.length_fields().map(|_| ()).map_err(|_| DropReason::QuicBadLength)
}

/// Walks the packets after the first Initial: each must be a long-header packet of the same
/// version and DCID (RFC 9000 §12.2: senders MUST NOT coalesce packets with different
/// connection IDs) whose Length fits, or a last short-header packet with that DCID (its QUIC bit
/// set unless `greasable`: a known flow's client may clear it, RFC 9287); trailing zero bytes
/// (datagram padding) end the walk.
fn coalesced_ok(dgram: &[u8], first: &InitialHeader, greasable: bool) -> bool {
    let dcid = &dgram[first.dcid.clone()];
    let mut at = first.end;
    while at < dgram.len() {
        let rest = &dgram[at..];
        if rest.iter().all(|&b| b == 0) {
            return true;
        }
        if rest[0] & FORM_LONG == 0 {
            return (greasable || rest[0] & FIXED_BIT != 0) && rest.get(1..1 + dcid.len()) == Some(dcid);
        }
        let Ok(p) = Packet::new_checked(rest) else {
            return false;
        };
        if p.version() != first.version.wire() || p.dcid() != dcid {
            return false;
        }
        let end = match first.version.long_type(p.type_bits()) {
            LongType::Initial => p.initial_fields().map(|f| f.end),
            LongType::ZeroRtt | LongType::Handshake => p.length_fields().map(|(_, end)| end),
            LongType::Retry => return false,
        };
        match end {
            Ok(end) if end > 0 => at += end,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;
