//! SYN flood defense: stateless SYN authentication of sources.
//!
//! Job: while a protected prefix is under SYN authentication, a SYN from a source that has not
//! proven it can receive packets at its address never reaches the origin. The scrubber answers it
//! itself, statelessly, with a segment whose acknowledgment number is a cookie (a keyed MAC of
//! the 4-tuple and a wall-clock slot, `cookie`) deliberately out of the client's window: an ACK
//! by default, or a SYN-ACK (`challenge`; the ACK leaves the client's stateful firewall or NAT
//! router, if it runs Linux conntrack, with clean state, the SYN-ACK does not). A real TCP stack
//! in SYN-SENT answers such a segment with an RST whose sequence number is that acknowledgment
//! number (RFC 9293 §3.10.7.3); an RST carrying a valid cookie marks its source verified in a table all
//! workers share (`verified`), and the client's retransmitted SYN (Linux: ~12 ms later) is
//! forwarded. Nothing is stored for an unverified source, so a spoofed flood costs one SYN-ACK
//! per SYN within the reply budget, and nothing else; it works when the origin's replies bypass
//! the scrubber.
//!
//! Methods (per profile): `rst`; `rst+retransmit`, which also verifies a source whose SYN comes
//! again with the same 4-tuple and ISN 0.5–3 s later (for clients whose stateful firewall eats the
//! out-of-window SYN-ACK; a small per-worker table remembers recent SYNs); `off`. Linux conntrack
//! (`ct state invalid drop`, the rule of ufw and firewalld) does not eat it: the cookie is placed
//! behind the client's ISN + 1, where conntrack ignores an ACK instead of marking it invalid
//! (`cookie`); stricter firewalls, which drop any SYN-ACK not acknowledging ISN + 1, do.
//! When (per profile): `always`, or `auto`, switched per protected prefix by its SYN rate
//! (`auto`).
//!
//! Other TCP from unverified sources: RSTs and ACKs without a valid cookie are forwarded (they
//! may belong to connections established before the prefix came under protection, whose replies
//! the scrubber never sees); `strict` drops them; a per-destination budget for them sits between.
//! A SYN carrying data (TCP Fast Open) is challenged like any SYN: the SYN-ACK drops the data and
//! the client sends it again once connected. A SYN in a fragment, or with malformed options, is
//! dropped under its own reason.
//!
//! Contract with the pipeline: `State::inspect` is called for every frame to a protected
//! destination after the lists, rules and rate limits; it returns `Check::Clean` (continue),
//! `Check::Reject(reason)` (a `Syn*` drop reason), or `Check::Replied` (the frame is now the
//! SYN-ACK, only in `Mode::Mitigate`; in monitor mode the frame is never touched and an
//! unverified SYN is `Reject(SynUnverified)`). Every SYN-ACK is taken from the `ReplyBudget`.
//! No allocation, lock or syscall per packet; time, secrets and the hash seed come in as
//! arguments; all tables are bounded and count their evictions.
//!
//! Limits, by design:
//! - **A spoofed live host.** An attacker who spoofs the address of a host that is up gets that
//!   host's RST to our SYN-ACK, and the host becomes verified: from then on, for the TTL, SYNs
//!   spoofed with its address are forwarded. Verification proves an address answers, not who
//!   sends. Verified sources therefore still go through the pipeline's per-source and
//!   per-destination rate limits (which run before this check), and the TTL is hard (a verified
//!   source is not refreshed by use, so a spoofer cannot keep it verified forever). What bounds
//!   the damage is the profile's SYN budget per verified source (`verified_syn_limit`, default
//!   100 SYN/s with a 1 s burst, appliance-wide, split over workers): a flood that spoofs a
//!   verified client's exact address gets at most that many SYNs per second to the origin; the
//!   rest is dropped as `syn_verified_over_budget`. It is a bound, not a cure: those SYNs still
//!   reach the origin, and the real client shares the budget with the spoofer while the flood
//!   lasts (its new connections may need a SYN retransmission). A flood that spoofs many
//!   verified addresses gets the budget once per address.
//! - **`rst+retransmit`** can be satisfied by a spoofer that sends every SYN twice, 0.5–3 s apart;
//!   it is a fallback to enable only where clients need it.
//! - **Per appliance.** Cookies are fleet-wide (shared secret, wall-clock slots), verified
//!   sources are not: a client whose traffic moves to another appliance is challenged once more.
//! - **Brute force.** A cookie has 31 bits of MAC and two slots (four during a rotation's grace
//!   period) are tried, so one forged RST passes with probability about 2^-30; failed checks are
//!   rate-limited per source (`Global::check_failures`), after which that source's RSTs are not
//!   checked (and forwarded like any RST) until its budget refills.

pub mod auto;
pub mod challenge;
pub mod cookie;
pub mod verified;

use crate::addr::{Addr, Cidr};
use crate::frame::Frame;
use crate::parse::{Fragment, PacketInfo, proto, tcp_flags};
use crate::pipeline::Now;
use crate::policy::Mode;
use crate::ratelimit::{Rate, TokenBucket};
use crate::reply::ReplyBudget;
use crate::stats::{Event, Stats, Table};
use crate::table::ClockTable;
use crate::verdict::{Check, DropReason};
use auto::{AutoCounts, AutoTable, Switch, Thresholds};
use challenge::{challenge_in_place, seq_number, syn_fields, syn_options_ok, tcp_options};
use cookie::{Secrets, Tuple, Validity};
use verified::{Inserted, Verified};

const SEC: u64 = 1_000_000_000;

/// How sources are authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// No SYN authentication.
    Off,
    /// SYN-ACK challenge answered by an RST.
    #[default]
    Rst,
    /// As `Rst`, and a SYN retransmitted with the same ISN within the window also verifies.
    RstRetransmit,
}

/// What the challenge answering an unverified SYN is. Both carry the cookie as acknowledgment
/// number and make a client in SYN-SENT answer with an RST carrying it (see `challenge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// A bare ACK: stateful middleboxes (Linux conntrack) ignore it without tracking it.
    #[default]
    Ack,
    /// A SYN-ACK with an MSS option: looks like the server's answer, to middleboxes too.
    SynAck,
}

/// When authentication is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum When {
    /// Always, for every prefix of the profile.
    #[default]
    Always,
    /// Per prefix, while its SYN rate says so.
    Auto(Thresholds),
}

/// The profile's part (lives in `policy::Profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Method.
    pub method: Method,
    /// The challenge sent to an unverified SYN.
    pub challenge: Challenge,
    /// Always or auto.
    pub when: When,
    /// Drop non-SYN TCP from unverified sources.
    pub strict: bool,
    /// Budget per destination for non-SYN TCP from unverified sources (appliance-wide; split
    /// over workers). None: unlimited.
    pub unverified_limit: Option<Rate>,
    /// Earliest a retransmitted SYN verifies (`rst+retransmit`), ns after the first.
    pub retransmit_min_ns: u64,
    /// Latest a retransmitted SYN verifies, ns after the first.
    pub retransmit_max_ns: u64,
    /// SYNs one verified source may send (appliance-wide; split over workers). None: unlimited.
    pub verified_syn_limit: Option<Rate>,
}

/// Default SYN budget of one verified source: 100 per second, with a burst of one second's worth.
pub const VERIFIED_SYN_LIMIT: Rate = Rate { pps: 100, bytes_per_sec: 0, burst_ms: 1000 };

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: Method::Rst,
            challenge: Challenge::Ack,
            when: When::Always,
            strict: false,
            unverified_limit: None,
            retransmit_min_ns: 500_000_000,
            retransmit_max_ns: 3 * SEC,
            verified_syn_limit: Some(VERIFIED_SYN_LIMIT),
        }
    }
}

impl Settings {
    /// Settings with authentication off.
    pub fn off() -> Settings {
        Settings { method: Method::Off, ..Settings::default() }
    }
}

/// The global part (lives in `policy::Policy`): the fleet's cookie secrets and table policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// Cookie keys and slot length.
    pub secrets: Secrets,
    /// How long a verified source stays verified.
    pub verified_ttl_secs: u32,
    /// Failed cookie checks a source may cause per worker (then its RSTs go unchecked).
    pub check_failures: Rate,
}

impl Default for Global {
    /// Default TTL and failure budget with an all-zero key (tests only: the compiler sets a key).
    fn default() -> Self {
        Global {
            secrets: Secrets::default(),
            verified_ttl_secs: 300,
            check_failures: Rate { pps: 10, bytes_per_sec: 0, burst_ms: 1000 },
        }
    }
}

/// Sizes of the cross-worker tables, fixed when the daemon starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedConfig {
    /// Verified sources remembered.
    pub verified_sources: usize,
    /// Prefixes tracked by `when = "auto"`.
    pub auto_prefixes: usize,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig { verified_sources: 1 << 20, auto_prefixes: 4096 }
    }
}

/// Sizes of a worker's tables, fixed when the worker starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// Workers sharing the appliance-wide budgets.
    pub workers: u32,
    /// SYNs remembered for `rst+retransmit`.
    pub retransmit: usize,
    /// Sources with failed cookie checks.
    pub check_failures: usize,
    /// Destinations with a budget for unverified non-SYN TCP.
    pub unverified_buckets: usize,
    /// Verified sources with a SYN budget.
    pub verified_syn_buckets: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            workers: 1,
            retransmit: 1 << 16,
            check_failures: 1 << 16,
            unverified_buckets: 1 << 16,
            verified_syn_buckets: 1 << 16,
        }
    }
}

/// What every worker shares: verified sources and the auto switches. Created once by the daemon.
#[derive(Debug)]
pub struct Shared {
    /// Verified sources.
    pub verified: Verified,
    /// `when = "auto"` state per prefix.
    pub auto: AutoTable,
}

impl Shared {
    /// Tables sized by `config`; `seed` (drawn from the OS at start: an attacker who knew it could
    /// aim sources at one set of the verified table) keys the verified table's hash.
    pub fn new(config: SharedConfig, seed: [u64; 4]) -> Shared {
        // Mixed with a constant of this module's own, so other users of the same seed get other keys.
        const DOMAIN: u64 = 0x7379_6e2d_7665_7269; // "syn-veri"
        let key = [seed[0] ^ seed[2] ^ DOMAIN, (seed[1] ^ seed[3]).rotate_left(23).wrapping_add(DOMAIN)];
        Shared { verified: Verified::new(config.verified_sources, key), auto: AutoTable::new(config.auto_prefixes) }
    }

    /// True when `src` is verified at `now`.
    #[inline]
    pub fn is_verified(&self, src: Addr, now: Now) -> bool {
        self.verified.lookup(src, now.mono_ns / SEC).is_some()
    }

    /// Starts loading what `inspect` will read for this frame under `settings`: the verified
    /// table for the segments that consult it (SYN, a bare RST, anything under `strict` or an
    /// unverified budget; not the ACKs of established connections), and the reply budget's slot
    /// for a SYN, which may be challenged. For the pipeline's lookup pass; changes nothing.
    #[inline]
    pub fn prefetch(&self, settings: &Settings, info: &PacketInfo, replies: &ReplyBudget) {
        if settings.method == Method::Off || info.protocol != proto::TCP {
            return;
        }
        let syn = is_syn(info.tcp_flags);
        if syn || settings.other_reads_verified(info.tcp_flags) {
            self.verified.prefetch(info.src);
        }
        if syn {
            replies.prefetch(info.src);
        }
    }
}

/// A SYN without ACK: a connection attempt, challenged unless its source is verified.
#[inline]
fn is_syn(flags: u8) -> bool {
    flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// A bare RST: possibly a client's answer to a challenge, its sequence number the cookie.
#[inline]
fn is_answer(flags: u8) -> bool {
    flags & (tcp_flags::RST | tcp_flags::ACK | tcp_flags::SYN) == tcp_flags::RST
}

impl Settings {
    /// Whether a non-SYN segment with these flags consults the verified table: a bare RST
    /// always, anything else only under `strict` or an unverified budget.
    #[inline]
    fn other_reads_verified(&self, flags: u8) -> bool {
        is_answer(flags) || self.strict || self.unverified_limit.is_some()
    }
}

/// Everything `inspect` reads besides the packet: shared tables, policy parts, clock.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// Shared tables.
    pub shared: &'a Shared,
    /// Global part of the policy.
    pub global: &'a Global,
    /// The profile's settings.
    pub settings: &'a Settings,
    /// The protected prefix the destination is in (`when = "auto"` is per prefix).
    pub prefix: Cidr,
    /// The profile's mode.
    pub mode: Mode,
    /// The batch's clock.
    pub now: Now,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: Addr,
    dst: Addr,
    ports: u32,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    isn: u32,
    first_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    bucket: TokenBucket,
    blocked_until_ns: u64,
}

/// Per-worker state; survives policy swaps. See the module docs.
#[derive(Debug)]
pub struct State {
    workers: u32,
    retransmit: ClockTable<FlowKey, Pending>,
    failures: ClockTable<Addr, Failures>,
    unverified: ClockTable<Addr, TokenBucket>,
    verified_syn: ClockTable<Addr, TokenBucket>,
    auto: AutoCounts,
}

impl State {
    /// Tables sized by `config` (appliance-wide budgets split over `config.workers`), and local
    /// counts for each slot of `shared`'s auto table.
    pub fn new(config: StateConfig, shared: &Shared) -> State {
        State {
            workers: config.workers.max(1),
            retransmit: ClockTable::new(config.retransmit),
            failures: ClockTable::new(config.check_failures),
            unverified: ClockTable::new(config.unverified_buckets),
            verified_syn: ClockTable::new(config.verified_syn_buckets),
            auto: AutoCounts::new(shared.auto.capacity()),
        }
    }

    /// Decides one frame to a protected destination. See the module docs.
    #[inline]
    pub fn inspect(
        &mut self,
        env: &Env<'_>,
        info: &PacketInfo,
        frame: &mut Frame<'_>,
        replies: &mut ReplyBudget,
        stats: &mut Stats,
    ) -> Check {
        if env.settings.method == Method::Off || info.protocol != proto::TCP || info.fragment == Fragment::NonFirst {
            return Check::Clean;
        }
        let syn = is_syn(info.tcp_flags);
        if let When::Auto(t) = env.settings.when
            && !self.auto_active(env, &t, syn, stats)
        {
            return Check::Clean;
        }
        if syn { self.on_syn(env, info, frame, replies, stats) } else { self.on_other(env, info, frame, stats) }
    }

    /// Counts a SYN toward the prefix (for `auto`) and tells whether authentication is on.
    #[inline]
    fn auto_active(&mut self, env: &Env<'_>, t: &Thresholds, syn: bool, stats: &mut Stats) -> bool {
        let table = &env.shared.auto;
        let Some(i) = table.slot(env.prefix, env.now.mono_ns) else {
            stats.event(Event::SynAutoNoSlot);
            return true;
        };
        if syn {
            self.auto.count(table, i, env.now.mono_ns, t, |s| {
                stats.event(match s {
                    Switch::On => Event::SynAutoOn,
                    Switch::Off => Event::SynAutoOff,
                })
            });
        }
        table.is_active(i)
    }

    fn on_syn(
        &mut self,
        env: &Env<'_>,
        info: &PacketInfo,
        frame: &mut Frame<'_>,
        replies: &mut ReplyBudget,
        stats: &mut Stats,
    ) -> Check {
        if info.fragment == Fragment::First {
            return Check::Reject(DropReason::SynFragment);
        }
        if !syn_options_ok(tcp_options(frame.data(), info)) {
            return Check::Reject(DropReason::SynBadOptions);
        }
        let now = env.now;
        if env.shared.is_verified(info.src, now) {
            // A spoofer of a verified address passes the check above: bound what it gets through.
            if let Some(rate) = env.settings.verified_syn_limit {
                let rate = rate.per_worker(self.workers);
                let bucket = self.verified_syn.get_or_insert_with(info.src, || TokenBucket::new(rate, now.mono_ns));
                if !bucket.admit(rate, now.mono_ns, 0) {
                    return Check::Reject(DropReason::SynVerifiedOverBudget);
                }
            }
            stats.event(Event::SynVerifiedSyn);
            return Check::Clean;
        }
        let Some(fields) = syn_fields(frame.data(), info) else {
            // parse() checked the TCP header is in the frame; a SYN without one cannot be here.
            return Check::Reject(DropReason::TcpTruncated);
        };
        if env.settings.method == Method::RstRetransmit && self.retransmitted(env, info, fields.isn) {
            stats.event(Event::SynRetransmitVerified);
            self.verify(env, info.src, stats);
            return Check::Clean;
        }
        if env.mode != Mode::Mitigate {
            return Check::Reject(DropReason::SynUnverified);
        }
        if !replies.admit(info.src, now.mono_ns) {
            return Check::Reject(DropReason::SynChallengeOverBudget);
        }
        let cookie = env.global.secrets.mint(&tuple(info), fields.isn, now.wall_secs);
        // RFC 4987 §3.6 / RFC 9293 §3.10.7.3: the cookie rides in the challenge's acknowledgment
        // number, off the client's window, so the client's RST echoes it as its sequence number.
        if !challenge_in_place(frame, info, env.settings.challenge, cookie.seq, cookie.value) {
            return Check::Reject(DropReason::TcpTruncated);
        }
        stats.event(Event::SynAckSent);
        Check::Replied
    }

    /// `rst+retransmit`: true when this SYN repeats a recent one (same 4-tuple and ISN) within
    /// the window. Remembers the SYN otherwise.
    fn retransmitted(&mut self, env: &Env<'_>, info: &PacketInfo, isn: u32) -> bool {
        let key =
            FlowKey { src: info.src, dst: info.dst, ports: u32::from(info.src_port) << 16 | u32::from(info.dst_port) };
        let now = env.now.mono_ns;
        let s = env.settings;
        match self.retransmit.get_mut(&key) {
            Some(p) if p.isn == isn => {
                let age = now.saturating_sub(p.first_ns);
                if (s.retransmit_min_ns..=s.retransmit_max_ns).contains(&age) {
                    self.retransmit.remove(&key);
                    return true;
                }
                if age > s.retransmit_max_ns {
                    p.first_ns = now;
                }
                false
            }
            Some(p) => {
                *p = Pending { isn, first_ns: now };
                false
            }
            None => {
                self.retransmit.insert(key, Pending { isn, first_ns: now });
                false
            }
        }
    }

    fn on_other(&mut self, env: &Env<'_>, info: &PacketInfo, frame: &Frame<'_>, stats: &mut Stats) -> Check {
        let s = env.settings;
        // RFC 9293 §3.10.7.3: the answer to an unacceptable SYN-ACK is <SEQ=SEG.ACK><CTL=RST>.
        let answer = is_answer(info.tcp_flags);
        if !s.other_reads_verified(info.tcp_flags) {
            return Check::Clean;
        }
        let now = env.now;
        if env.shared.is_verified(info.src, now) {
            return Check::Clean;
        }
        if answer && self.check_cookie(env, info, frame, stats) == Some(Validity::Valid) {
            self.verify(env, info.src, stats);
            return Check::Reject(DropReason::SynCookieAnswer);
        }
        if s.strict {
            return Check::Reject(DropReason::SynStrictUnverified);
        }
        if let Some(rate) = s.unverified_limit {
            let rate = rate.per_worker(self.workers);
            let bucket = self.unverified.get_or_insert_with(info.dst, || TokenBucket::new(rate, now.mono_ns));
            if !bucket.admit(rate, now.mono_ns, u32::from(info.ip_len)) {
                return Check::Reject(DropReason::SynUnverifiedRateLimit);
            }
        }
        Check::Clean
    }

    /// Checks an RST's sequence number as a cookie, within the source's failure budget.
    fn check_cookie(
        &mut self,
        env: &Env<'_>,
        info: &PacketInfo,
        frame: &Frame<'_>,
        stats: &mut Stats,
    ) -> Option<Validity> {
        let now = env.now.mono_ns;
        if self.failures.peek(&info.src).is_some_and(|f| f.blocked_until_ns > now) {
            stats.event(Event::SynCookieCheckLimited);
            return None;
        }
        let value = seq_number(frame.data(), info)?;
        let validity = env.global.secrets.check(&tuple(info), value, env.now.wall_secs);
        match validity {
            Validity::Valid => stats.event(Event::SynCookieValid),
            Validity::Expired => stats.event(Event::SynCookieExpired),
            Validity::Invalid => stats.event(Event::SynCookieInvalid),
        }
        if validity != Validity::Valid {
            let rate = env.global.check_failures;
            let f = self
                .failures
                .get_or_insert_with(info.src, || Failures { bucket: TokenBucket::new(rate, now), blocked_until_ns: 0 });
            if !f.bucket.admit(rate, now, 0) {
                // Blocked until the bucket holds a token again.
                f.blocked_until_ns = now.saturating_add(SEC / rate.pps.max(1));
            }
        }
        Some(validity)
    }

    fn verify(&mut self, env: &Env<'_>, src: Addr, stats: &mut Stats) {
        match env.shared.verified.insert(src, env.now.mono_ns / SEC, env.global.verified_ttl_secs) {
            Inserted::New | Inserted::Refreshed => stats.event(Event::SynSourceVerified),
            Inserted::Evicted => {
                stats.event(Event::SynSourceVerified);
                stats.event(Event::SynVerifiedEvicted);
            }
            Inserted::Contended => {}
        }
    }

    /// Writes this worker's table figures into `stats` (the shared verified table's figures come
    /// from `Shared::verified.stats`, read once by the control plane, not per worker).
    pub fn table_stats(&self, stats: &mut Stats) {
        stats.tables[Table::SynRetransmit.index()] = self.retransmit.stats();
        stats.tables[Table::SynCheckFailures.index()] = self.failures.stats();
        stats.tables[Table::SynUnverifiedBuckets.index()] = self.unverified.stats();
        stats.tables[Table::SynVerifiedSynBuckets.index()] = self.verified_syn.stats();
    }
}

/// The client→server 4-tuple of a parsed segment.
#[inline]
fn tuple(info: &PacketInfo) -> Tuple {
    Tuple { src: info.src, dst: info.dst, src_port: info.src_port, dst_port: info.dst_port }
}

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod tests;
