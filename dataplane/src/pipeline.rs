//! The pipeline: one verdict per frame, pure code.
//!
//! `Pipeline::process(now, frames, verdicts)` parses each frame, classifies its destination,
//! runs the baseline filters, allow/deny lists, firewall rules, rate limits and the profile's
//! countermeasures, and rewrites clean frames for egress. It never calls the OS: time comes in
//! as `Now`, the policy from a `PolicyCell` loaded once per batch, and all state is owned here
//! (bounded tables created at construction), so nothing is allocated per packet or per batch.
//!
//! Order of checks for a protected destination (first decision wins):
//! 1. malformed frame → drop (always, even in monitor mode: the origin's stack would drop it too);
//! 2. bypass → forward unchecked;
//! 3. baseline filters (TTL 0, LAND, bogon source, TCP flag abuse, IPv4 options);
//! 4. allow list → forward (skips everything below);
//! 5. fragment policy; deny list; firewall rules in order; per-source then per-destination budget;
//! 6. countermeasures of the profile;
//! 7. egress rewrite (L2 / GRE / hairpin), or an ICMP too-big reply within the reply budget.
//!
//! In a `monitor` profile, a drop decided in steps 3–6 is counted under `monitored` and the frame
//! is forwarded.

use crate::addr::Addr;
use crate::amp;
use crate::capture;
use crate::filters;
use crate::forward::{self, ForwardError};
use crate::frame::Frame;
use crate::parse::{Family, Fragment, PacketInfo, parse};
use crate::policy::rules::{RuleAction, first_match};
use crate::policy::{
    DstClass, ForwardMode, FragmentPolicy, Mode, Policy, PolicyCell, Profile, ProtectedPrefix, UnprotectedAction,
};
use crate::quic;
use crate::ratelimit::{Rate, TokenBucket};
use crate::reply::{self, ReplyBudget};
use crate::stats::{Event, Stats, Table};
use crate::syn;
use crate::table::ClockTable;
use crate::topk::TopTalkers;
use crate::verdict::{Check, DropReason, Verdict};
use arc_swap::ArcSwapOption;
use arc_swap::cache::Cache;
use hashbrown::HashMap;
use std::sync::Arc;

/// The clock, read once per batch by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic nanoseconds (timers, buckets, expiries).
    pub mono_ns: u64,
    /// Wall-clock seconds since the Unix epoch (where appliances of a fleet must agree).
    pub wall_secs: u64,
}

/// Sizes and shares fixed when a worker starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Number of workers sharing the appliance-wide budgets (each gets 1/n).
    pub workers: u32,
    /// Capacity of the per-source bucket table.
    pub src_buckets: usize,
    /// Capacity of the per-destination bucket table.
    pub dst_buckets: usize,
    /// Capacity of the per-destination fragment bucket table.
    pub frag_buckets: usize,
    /// Appliance-wide budget for replies the scrubber originates.
    pub reply_budget: Rate,
    /// Budget for replies to any one address (so the scrubber never floods a spoofed victim).
    pub reply_budget_per_dst: Rate,
    /// Capacity of the per-reply-destination bucket table.
    pub reply_buckets: usize,
    /// QUIC per-worker tables and budgets.
    pub quic: quic::StateConfig,
    /// Secret key material for this worker's hashed tables (from the OS at start).
    pub seed: u64,
    /// SYN authentication's per-worker tables (`workers` is taken from above).
    pub syn: crate::syn::StateConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            src_buckets: 1 << 20,
            dst_buckets: 1 << 16,
            frag_buckets: 1 << 16,
            reply_budget: Rate::pps(100_000),
            reply_budget_per_dst: Rate::pps(1_000),
            reply_buckets: 1 << 16,
            quic: quic::StateConfig::default(),
            seed: 0x5eed_5eed_5eed_5eed,
            syn: crate::syn::StateConfig::default(),
        }
    }
}

/// Frames decided per pass; longer batches are split.
const MAX_BATCH: usize = 256;

/// What the first passes over a batch learned about one frame: the parse, and the table
/// lookups that may miss the cache. A batch is decided in four passes: start loading each
/// frame; parse and start loading the list indexes; read the indexes and start loading the list
/// records (and the countermeasures' tables); then look up and decide. Each pass runs over the
/// whole batch before the next, so the CPU overlaps the memory trips of independent frames
/// instead of waiting on each in turn.
#[derive(Clone, Copy, Debug)]
struct Lookup {
    parsed: Result<Option<PacketInfo>, DropReason>,
    dst: Option<DstClass>,
    allowed: bool,
    denied: bool,
}

impl Lookup {
    const EMPTY: Lookup = Lookup { parsed: Ok(None), dst: None, allowed: false, denied: false };

    /// Pass 1: parses the frame and, when the lists will be read (`lists`), starts loading
    /// their index entries.
    #[inline]
    fn parse(policy: &Policy, frame: &[u8], lists: bool) -> Lookup {
        let parsed = parse(frame);
        if lists && let Ok(Some(info)) = parsed {
            policy.prefetch_list_index(info.src);
        }
        Lookup { parsed, ..Lookup::EMPTY }
    }

    /// Pass 2: classifies the destination and, when the lists will be read, starts loading
    /// their records.
    #[inline]
    fn classify(&mut self, policy: &Policy, lists: bool) {
        if let Ok(Some(info)) = self.parsed {
            self.dst = policy.classify_dst(info.dst);
            if lists {
                policy.prefetch_lists(info.src);
            }
        }
    }

    /// Pass 3: the list lookups, once the batch's records are on their way.
    #[inline]
    fn look_up(&mut self, policy: &Policy, now: Now) {
        if let Ok(Some(info)) = self.parsed {
            self.allowed = policy.allowed(info.src, now.mono_ns);
            self.denied = policy.denied(info.src, now.mono_ns);
        }
    }
}

/// Cross-worker state: one per process, shared by every worker's pipeline. Every field is
/// lock-free (atomics in fixed-size tables): a fact learned on one queue is honoured on all.
#[derive(Debug)]
pub struct Shared {
    /// Amplification budgets per destination, first-fragment verdicts, recorded requests.
    pub amp: amp::Shared,
    /// DCIDs seen, for QUIC replay detection.
    pub quic: quic::Shared,
    /// The running capture session, if any (set and cleared by the control plane).
    pub capture: ArcSwapOption<capture::Session>,
    /// Verified sources, `when = "auto"` switches.
    pub syn: syn::Shared,
}

/// Sizes and hash seed of the cross-worker tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedConfig {
    /// Amplification tables.
    pub amp: amp::SharedConfig,
    /// QUIC replay table.
    pub quic: quic::SharedConfig,
    /// SYN authentication tables.
    pub syn: syn::SharedConfig,
}

impl Shared {
    /// Tables sized by `config`, keyed with `seed` (from the OS at start; an attacker must not
    /// know it, or he could aim collisions).
    pub fn new(config: SharedConfig, seed: [u64; 4]) -> Shared {
        Shared {
            amp: amp::Shared::new(config.amp, seed),
            quic: quic::Shared::new(config.quic, seed),
            syn: syn::Shared::new(config.syn, seed),
            capture: ArcSwapOption::empty(),
        }
    }
}

/// Per-worker state: everything that survives a policy swap.
#[derive(Debug)]
struct State {
    shared: Arc<Shared>,
    /// Monotonic time of the last batch (for table figures read between batches).
    last_now_ns: u64,
    amp: amp::State,
    quic: quic::State,
    syn: syn::State,
    config: PipelineConfig,
    generation: u64,
    src_buckets: ClockTable<Addr, TokenBucket>,
    dst_buckets: ClockTable<Addr, TokenBucket>,
    frag_buckets: ClockTable<Addr, TokenBucket>,
    /// One bucket per rate-limit rule id; bounded by the number of rules in the policy.
    rule_buckets: HashMap<u32, TokenBucket>,
    replies: ReplyBudget,
    lookups: Vec<Lookup>,
    stats: Stats,
    talkers: TopTalkers,
    /// What the countermeasures learned about the frame being decided, for capture tags:
    /// the amplification vector it matched, and whether QUIC inspected it.
    last_vector: Option<u8>,
    quic_inspected: bool,
}

/// The per-worker pipeline. See the module docs.
#[derive(Debug)]
pub struct Pipeline {
    /// The published policy and capture session, read once per batch through caches: a cache
    /// checks one pointer and loads again only after a change, where a plain load takes and
    /// returns a slot of the process-wide arc-swap bookkeeping (most of a light batch's fixed
    /// cost). A replaced snapshot is released at this worker's next batch or idle pass.
    policy: Cache<Arc<PolicyCell>, Arc<Policy>>,
    capture: Cache<CaptureCell, Option<Arc<capture::Session>>>,
    state: State,
}

/// The capture slot of `Shared`, as something a `Cache` can own.
#[derive(Clone, Debug)]
struct CaptureCell(Arc<Shared>);

impl std::ops::Deref for CaptureCell {
    type Target = ArcSwapOption<capture::Session>;

    fn deref(&self) -> &Self::Target {
        &self.0.capture
    }
}

/// Seed of the private cross-worker tables `Pipeline::new` creates (tests, benches, `sim`).
const PRIVATE_SEED: [u64; 4] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004];

impl Pipeline {
    /// A pipeline reading policy from `cell`, with tables sized by `config` and cross-worker
    /// tables of its own (a single-worker setup: tests, benches, `sim`).
    pub fn new(cell: Arc<PolicyCell>, config: PipelineConfig) -> Pipeline {
        Pipeline::with_shared(cell, config, Arc::new(Shared::new(SharedConfig::default(), PRIVATE_SEED)))
    }

    /// A worker's pipeline: its own tables sized by `config`, cross-worker facts in `shared`.
    pub fn with_shared(cell: Arc<PolicyCell>, config: PipelineConfig, shared: Arc<Shared>) -> Pipeline {
        let syn = syn::State::new(syn::StateConfig { workers: config.workers, ..config.syn }, &shared.syn);
        let policy = Cache::new(cell);
        let capture = Cache::new(CaptureCell(shared.clone()));
        let state = State {
            shared,
            last_now_ns: 0,
            amp: amp::State::new(),
            quic: quic::State::new(quic::StateConfig { workers: config.workers, ..config.quic }),
            syn,
            config,
            generation: u64::MAX,
            src_buckets: ClockTable::new(config.src_buckets),
            dst_buckets: ClockTable::new(config.dst_buckets),
            frag_buckets: ClockTable::new(config.frag_buckets),
            rule_buckets: HashMap::new(),
            replies: ReplyBudget::new(&config),
            lookups: vec![Lookup::EMPTY; MAX_BATCH],
            stats: Stats::default(),
            talkers: TopTalkers::default(),
            last_vector: None,
            quic_inspected: false,
        };
        Pipeline { policy, capture, state }
    }

    /// Decides every frame of a batch; `verdicts[i]` is the verdict of `frames[i]`.
    ///
    /// # Panics
    /// When `verdicts` is shorter than `frames` (a caller bug, not attacker input).
    pub fn process(&mut self, now: Now, frames: &mut [Frame<'_>], verdicts: &mut [Verdict]) {
        assert!(verdicts.len() >= frames.len(), "one verdict slot per frame");
        let policy = self.policy.load();
        let capture = self.capture.load();
        let state = &mut self.state;
        state.adopt(policy);
        state.last_now_ns = now.mono_ns;
        // Held apart from `state` for the batch so that `decide` reads each record in place
        // (copying it out cost a store-forwarding stall per frame).
        let mut lookups = std::mem::take(&mut state.lookups);
        state.quic.set_capturing(capture.is_some());
        // In bypass a frame is parsed (a malformed one is still dropped) and classified, and
        // nothing else is read: the lists and the countermeasures' tables are neither
        // prefetched nor looked up.
        let checks = !policy.bypass;
        for (frames, verdicts) in frames.chunks_mut(MAX_BATCH).zip(verdicts.chunks_mut(MAX_BATCH)) {
            // Pass 0: start every frame's first line, so that pass 1 does not meet each frame's
            // miss (and its TLB walk) one after the other. A worker prefetches on receive too;
            // this covers callers that do not, and frames received long before.
            for frame in frames.iter() {
                crate::xsk::prefetch(frame.data().as_ptr());
            }
            for (frame, lookup) in frames.iter().zip(lookups.iter_mut()) {
                *lookup = Lookup::parse(policy, frame.data(), checks);
            }
            for (frame, lookup) in frames.iter().zip(lookups.iter_mut()) {
                lookup.classify(policy, checks);
                // Start the countermeasures' table reads of this frame so the batch's misses
                // overlap.
                if checks && let (Ok(Some(info)), Some(DstClass::Protected(i))) = (lookup.parsed, lookup.dst) {
                    let profile = policy.profile_of(i).1;
                    state.quic.prefetch(&state.shared.quic, &profile.quic, &info, frame.data());
                    state.shared.syn.prefetch(&profile.syn, &info, &state.replies);
                }
            }
            for ((frame, verdict), lookup) in frames.iter_mut().zip(verdicts.iter_mut()).zip(lookups.iter_mut()) {
                let len = frame.len();
                if checks {
                    lookup.look_up(policy, now);
                }
                let v = state.decide(policy, now, frame, lookup);
                state.stats.verdict(v, len);
                if let (Verdict::Drop(reason), Ok(Some(info))) = (v, &lookup.parsed) {
                    state.talkers.drop_seen(reason, info.src, info.dst);
                }
                if let Some(session) = capture.as_deref() {
                    state.offer_capture(session, now, v, lookup, frame.data());
                }
                *verdict = v;
            }
        }
        state.lookups = lookups;
        state.stats.batches += 1;
    }

    /// Adopts the published snapshot now, outside a batch (a worker with no traffic calls this
    /// when idle, so a change takes effect, and is counted, without waiting for a frame).
    pub fn adopt_latest(&mut self) {
        let policy = self.policy.load();
        self.state.adopt(policy);
    }

    /// Generation of the snapshot this pipeline runs (`u64::MAX` before the first).
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Relays a batch of the return direction (origin → client, symmetric deployments): frames
    /// from protected sources are not scrubbed, but requests they carry are recorded for the
    /// amplification defence's symmetric mode, and each frame is rewritten for the upstream next
    /// hop and forwarded (out of the ingress interface). Malformed frames are dropped.
    pub fn process_return(&mut self, now: Now, frames: &mut [Frame<'_>], verdicts: &mut [Verdict]) {
        assert!(verdicts.len() >= frames.len(), "one verdict slot per frame");
        let policy = self.policy.load();
        let state = &mut self.state;
        state.adopt(policy);
        state.last_now_ns = now.mono_ns;
        for (frame, verdict) in frames.iter_mut().zip(verdicts.iter_mut()) {
            let len = frame.len();
            let v = state.relay(policy, now, frame);
            state.stats.verdict(v, len);
            *verdict = v;
        }
    }

    /// Decides one frame (a batch of one).
    pub fn process_one(&mut self, now: Now, frame: &mut Frame<'_>) -> Verdict {
        let mut v = [Verdict::Pass];
        self.process(now, core::slice::from_mut(frame), &mut v);
        v[0]
    }

    /// Counters, with table figures brought up to date.
    pub fn stats(&mut self) -> &Stats {
        self.state.refresh_table_stats();
        &self.state.stats
    }

    /// SNI, ALPN and fingerprint of the QUIC flow of the last inspected packet, if any.
    pub fn last_quic_hello(&self) -> Option<&quic::client_hello::HelloInfo> {
        self.state.quic.last_hello()
    }

    /// Top dropped sources and destinations per reason (sampled).
    pub fn talkers(&self) -> &TopTalkers {
        &self.state.talkers
    }
}

impl State {
    /// One frame of the return direction. See `Pipeline::process_return`.
    fn relay(&mut self, policy: &Policy, now: Now, frame: &mut Frame<'_>) -> Verdict {
        let info = match parse(frame.data()) {
            Ok(Some(info)) => info,
            Ok(None) => return Verdict::Pass,
            Err(reason) => return Verdict::Drop(reason),
        };
        if let Some(DstClass::Protected(i)) = policy.classify_dst(info.src) {
            let (_, profile) = policy.profile_of(i);
            if profile.amp.symmetric {
                self.amp.record_request(&self.shared.amp, &policy.amp, now, &info, frame.data(), &mut self.stats);
            }
        }
        let s = &policy.forward;
        let d = frame.data_mut();
        d[0..6].copy_from_slice(&s.return_next_hop_mac);
        d[6..12].copy_from_slice(&s.return_src_mac);
        self.stats.event(Event::ReturnRelayed);
        Verdict::Forward
    }

    /// Hands a decided frame to a capture session, tagged with what the countermeasures learned.
    #[cold]
    fn offer_capture(&self, session: &capture::Session, now: Now, v: Verdict, lookup: &Lookup, frame: &[u8]) {
        let info = lookup.parsed.ok().flatten();
        let hello = if self.quic_inspected { self.quic.last_hello() } else { None };
        let mut sni = [0u8; 72];
        let mut tags: [&str; 2] = [""; 2];
        let mut n = 0;
        if let Some(h) = hello {
            let name = h.sni();
            let len = name.len().min(sni.len() - 4);
            sni[..4].copy_from_slice(b"sni=");
            sni[4..4 + len].copy_from_slice(&name[..len]);
            tags[n] = std::str::from_utf8(&sni[..4 + len]).unwrap_or("");
            n += 1;
            if !h.ja4_str().is_empty() {
                tags[n] = h.ja4_str();
                n += 1;
            }
        }
        session.offer(now.mono_ns, v, info.as_ref(), self.last_vector, frame, &tags[..n]);
    }

    /// Adopts a new snapshot at a batch boundary: drops buckets of rules that are gone.
    fn adopt(&mut self, policy: &Policy) {
        if policy.generation == self.generation {
            return;
        }
        if self.generation != u64::MAX {
            self.stats.event(Event::PolicySwap);
        }
        self.generation = policy.generation;
        self.rule_buckets.retain(|id, _| policy.rules.iter().any(|r| r.id == *id));
    }

    fn refresh_table_stats(&mut self) {
        self.stats.tables[Table::SrcBuckets.index()] = self.src_buckets.stats();
        self.stats.tables[Table::DstBuckets.index()] = self.dst_buckets.stats();
        self.stats.tables[Table::FragBuckets.index()] = self.frag_buckets.stats();
        self.stats.tables[Table::ReplyBuckets.index()] = self.replies.table_stats(self.last_now_ns);
        for (table, stats) in self.amp.table_stats() {
            self.stats.tables[table.index()] = stats;
        }
        self.quic.refresh_table_stats(&mut self.stats);
        self.syn.table_stats(&mut self.stats);
    }

    #[inline]
    fn decide(&mut self, policy: &Policy, now: Now, frame: &mut Frame<'_>, lookup: &Lookup) -> Verdict {
        self.last_vector = None;
        self.quic_inspected = false;
        let info = match lookup.parsed {
            Ok(Some(info)) => info,
            Ok(None) => {
                self.stats.event(Event::NonIpPass);
                return Verdict::Pass;
            }
            Err(reason) => return Verdict::Drop(reason),
        };
        let index = match lookup.dst {
            Some(DstClass::Protected(index)) => index,
            Some(DstClass::Local) => {
                self.stats.event(Event::LocalPass);
                return Verdict::Pass;
            }
            None => return self.unprotected(policy, now, &info, frame),
        };
        let (prefix, profile) = policy.profile_of(index);
        if policy.bypass {
            self.stats.event(Event::BypassForward);
            return self.egress(policy, Some(prefix), now, &info, frame);
        }
        let check = match self.inspect(policy, profile, now, &info, lookup, frame.data()) {
            // Step 6, the SYN challenge: after every other check, as it may turn the frame into a reply.
            Check::Clean if !lookup.allowed => {
                let env = syn::Env {
                    shared: &self.shared.syn,
                    global: &policy.syn,
                    settings: &profile.syn,
                    prefix: prefix.cidr,
                    mode: profile.mode,
                    now,
                };
                let syn = self.syn.inspect(&env, &info, frame, &mut self.replies, &mut self.stats);
                if matches!(syn, Check::Reject(_)) {
                    self.first_fragment_rejected(policy, profile, now, &info);
                }
                syn
            }
            other => other,
        };
        match check {
            Check::Clean => {}
            Check::Reject(reason) => {
                if profile.mode == Mode::Mitigate {
                    return Verdict::Drop(reason);
                }
                self.stats.monitored(reason);
            }
            Check::Replied => return Verdict::Reply,
        }
        self.egress(policy, Some(prefix), now, &info, frame)
    }

    fn unprotected(&mut self, policy: &Policy, now: Now, info: &PacketInfo, frame: &mut Frame<'_>) -> Verdict {
        match policy.unprotected {
            UnprotectedAction::Pass => {
                self.stats.event(Event::UnprotectedPass);
                Verdict::Pass
            }
            UnprotectedAction::Forward => {
                self.stats.event(Event::UnprotectedForward);
                self.egress(policy, None, now, info, frame)
            }
            UnprotectedAction::Drop => Verdict::Drop(DropReason::Unprotected),
        }
    }

    /// Steps 3–6 of the module docs.
    #[inline]
    fn inspect(
        &mut self,
        policy: &Policy,
        profile: &Profile,
        now: Now,
        info: &PacketInfo,
        lookup: &Lookup,
        frame: &[u8],
    ) -> Check {
        match self.checks(policy, profile, now, info, lookup) {
            Check::Clean if lookup.allowed => Check::Clean,
            Check::Clean => {
                let amp =
                    self.amp.inspect(&self.shared.amp, &policy.amp, &profile.amp, now, info, frame, &mut self.stats);
                self.last_vector = self.amp.last_vector();
                self.quic_inspected = amp == Check::Clean;
                match amp {
                    Check::Clean => {
                        let quic = self.quic.inspect(
                            &self.shared.quic,
                            &policy.quic,
                            &profile.quic,
                            now,
                            info,
                            frame,
                            &mut self.stats,
                        );
                        if matches!(quic, Check::Reject(_)) {
                            // The amplification check recorded this datagram as passed.
                            self.first_fragment_rejected(policy, profile, now, info);
                        }
                        quic
                    }
                    // The amplification check recorded its own verdict for the datagram.
                    other => other,
                }
            }
            Check::Reject(reason) => {
                self.first_fragment_rejected(policy, profile, now, info);
                Check::Reject(reason)
            }
            Check::Replied => Check::Replied,
        }
    }

    /// Records that a datagram's first fragment was rejected by a check after (or instead of)
    /// the amplification check's own, so that its later fragments, which carry no ports for the
    /// checks to match, are dropped with it.
    #[inline]
    fn first_fragment_rejected(&mut self, policy: &Policy, profile: &Profile, now: Now, info: &PacketInfo) {
        if info.fragment == Fragment::First {
            self.amp.first_fragment_rejected(&self.shared.amp, &policy.amp, &profile.amp, now, info, &mut self.stats);
        }
    }

    /// Steps 3–5 of the module docs: filters, lists, rules and budgets.
    #[inline]
    fn checks(&mut self, policy: &Policy, profile: &Profile, now: Now, info: &PacketInfo, lookup: &Lookup) -> Check {
        if let Some(reason) = filters::check(policy, &profile.filters, info) {
            return Check::Reject(reason);
        }
        if lookup.allowed {
            self.stats.event(Event::AllowListHit);
            return Check::Clean;
        }
        // Later fragments follow their datagram's first fragment in the amplification defence
        // (a per-worker budget would cut datagrams in half); the coarse policy still drops all.
        let coarse = info.fragment == Fragment::First
            || (info.fragment == Fragment::NonFirst
                && (!profile.amp.enabled || profile.fragments == FragmentPolicy::Drop));
        if coarse {
            match profile.fragments {
                FragmentPolicy::Allow => {}
                FragmentPolicy::Drop => return Check::Reject(DropReason::Fragment),
                FragmentPolicy::RateLimit(rate) => {
                    let rate = rate.per_worker(self.config.workers);
                    let bucket = self.frag_buckets.get_or_insert_with(info.dst, || TokenBucket::new(rate, now.mono_ns));
                    if !bucket.admit(rate, now.mono_ns, u32::from(info.ip_len)) {
                        return Check::Reject(DropReason::FragmentRateLimit);
                    }
                }
            }
            self.stats.event(Event::FragmentAdmitted);
        }
        if lookup.denied {
            return Check::Reject(DropReason::DenyList);
        }
        if let Some((_, rule)) = first_match(&policy.rules, info) {
            match rule.action {
                RuleAction::Allow => self.stats.event(Event::RuleAllow),
                RuleAction::Drop => return Check::Reject(DropReason::RuleDrop),
                RuleAction::RateLimit(rate) => {
                    let rate = rate.per_worker(self.config.workers);
                    let bucket =
                        self.rule_buckets.entry(rule.id).or_insert_with(|| TokenBucket::new(rate, now.mono_ns));
                    if !bucket.admit(rate, now.mono_ns, u32::from(info.ip_len)) {
                        return Check::Reject(DropReason::RuleRateLimit);
                    }
                    self.stats.event(Event::RuleRateLimitAdmit);
                }
            }
        }
        if let Some(rate) = profile.src_limit {
            let rate = rate.per_worker(self.config.workers);
            let bucket = self.src_buckets.get_or_insert_with(info.src, || TokenBucket::new(rate, now.mono_ns));
            if !bucket.admit(rate, now.mono_ns, u32::from(info.ip_len)) {
                return Check::Reject(DropReason::SrcRateLimit);
            }
        }
        if let Some(rate) = profile.dst_limit {
            let rate = rate.per_worker(self.config.workers);
            let bucket = self.dst_buckets.get_or_insert_with(info.dst, || TokenBucket::new(rate, now.mono_ns));
            if !bucket.admit(rate, now.mono_ns, u32::from(info.ip_len)) {
                return Check::Reject(DropReason::DstRateLimit);
            }
        }
        Check::Clean
    }

    /// Step 7: rewrite for egress, or answer "too big".
    fn egress(
        &mut self,
        policy: &Policy,
        prefix: Option<&ProtectedPrefix>,
        now: Now,
        info: &PacketInfo,
        frame: &mut Frame<'_>,
    ) -> Verdict {
        let settings = &policy.forward;
        if settings.mode == ForwardMode::Gre && prefix.and_then(|p| p.gre_endpoint).is_none() {
            return Verdict::Drop(DropReason::NoTunnelEndpoint);
        }
        match forward::rewrite(settings, prefix, info, frame) {
            Ok(()) => {
                if settings.mode == ForwardMode::Gre {
                    self.stats.event(Event::GreEncapsulated);
                }
                Verdict::Forward
            }
            Err(ForwardError::NoHeadroom) => Verdict::Drop(DropReason::NoHeadroom),
            Err(ForwardError::TooBig { mtu }) => {
                let may_answer = info.family == Family::V6 || info.dont_fragment;
                if may_answer && reply::may_send_icmp_error(info) {
                    if !self.replies.admit(info.src, now.mono_ns) {
                        return Verdict::Drop(DropReason::ReplyOverBudget);
                    }
                    if reply::icmp_too_big(frame, info, mtu) {
                        self.stats.event(Event::IcmpTooBigSent);
                        return Verdict::Reply;
                    }
                }
                Verdict::Drop(DropReason::MtuExceeded)
            }
        }
    }
}
