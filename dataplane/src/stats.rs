//! Per-worker counters and their aggregate.
//!
//! A worker owns one `Stats` and bumps plain `u64`s (no atomics on the hot path); it publishes a
//! copy periodically and the control plane sums the copies with `Stats::add`. Every array is
//! indexed by a `counted_enum!`, so adding a reason or an event is one line in its enum.

use crate::counted_enum;
use crate::table::TableStats;
use crate::verdict::{DropReason, Verdict, VerdictKind};

counted_enum! {
    /// Things that happened that are not verdicts or drop reasons.
    pub enum Event {
        /// Non-IP frame handed to the kernel.
        NonIpPass = "non_ip_pass",
        /// Frame for the appliance itself (or link-local, multicast) handed to the kernel.
        LocalPass = "local_pass",
        /// Frame for an unprotected destination handed to the kernel.
        UnprotectedPass = "unprotected_pass",
        /// Frame for an unprotected destination forwarded unchecked.
        UnprotectedForward = "unprotected_forward",
        /// Frame forwarded unchecked because bypass is on.
        BypassForward = "bypass_forward",
        /// Source on the allow list: checks skipped.
        AllowListHit = "allow_list_hit",
        /// A firewall rule with action allow matched.
        RuleAllow = "rule_allow",
        /// A rate-limit rule matched and admitted the packet.
        RuleRateLimitAdmit = "rule_rate_limit_admit",
        /// A fragment was admitted by the fragment policy.
        FragmentAdmitted = "fragment_admitted",
        /// Frame encapsulated in GRE.
        GreEncapsulated = "gre_encapsulated",
        /// VLAN tag pushed, rewritten or stripped on egress.
        VlanRewritten = "vlan_rewritten",
        /// ICMP fragmentation-needed / packet-too-big sent for an oversize frame.
        IcmpTooBigSent = "icmp_too_big_sent",
        /// A new policy snapshot was adopted at a batch boundary.
        PolicySwap = "policy_swap",
        /// Origin → client frame relayed (symmetric deployments).
        ReturnRelayed = "return_relayed",

        // --- UDP amplification / reflection (amp) ---
        /// A reflection vector the profile allows matched.
        AmpVectorAllowed = "amp_vector_allowed",
        /// A rate-limited reflection vector was admitted within its budget.
        AmpRateLimitAdmit = "amp_rate_limit_admit",
        /// Symmetric mode: a response matched a recorded request.
        AmpSolicited = "amp_solicited",
        /// Symmetric mode: a request from a protected host was recorded.
        AmpRequestRecorded = "amp_request_recorded",
        /// A first fragment's verdict was recorded for its datagram's other fragments.
        AmpFragmentRecorded = "amp_fragment_recorded",
        /// A later fragment followed its admitted first fragment.
        AmpFragmentFollowed = "amp_fragment_followed",
        /// A later fragment of an unseen datagram was admitted by the fragment policy.
        AmpFragmentUnseenAdmit = "amp_fragment_unseen_admit",

        // --- QUIC Initial validation (quic) ---
        /// A client Initial authenticated (keys derived from its DCID).
        QuicInitialValid = "quic_initial_valid",
        /// A flow was admitted (whole ClientHello seen and allowed).
        QuicFlowAdmitted = "quic_flow_admitted",
        /// A flow awaits the rest of a ClientHello split over several Initials.
        QuicHelloPending = "quic_hello_pending",
        /// A later Initial of a pending flow was decrypted to continue its ClientHello.
        QuicHelloContinued = "quic_hello_continued",
        /// An Initial with a token that the keys of a pending flow could not open (a client
        /// starting again after a Retry) was checked as a first Initial instead.
        QuicHelloRestarted = "quic_hello_restarted",
        /// A packet of an admitted flow was forwarded.
        QuicAdmittedForward = "quic_admitted_forward",
        /// A non-Initial packet of an unadmitted flow was forwarded (lenient gating).
        QuicLenientForward = "quic_lenient_forward",
        /// A first Initial over the decryption budget was forwarded unadmitted (lenient gating).
        QuicBudgetForward = "quic_budget_forward",
        /// A packet of an unknown version was passed on (profile says pass).
        QuicUnknownVersionPass = "quic_unknown_version_pass",
        /// A profile rule explicitly allowed a ClientHello.
        QuicHelloRuleAllow = "quic_hello_rule_allow",
        /// A flow entry expired (no traffic within the flow TTL).
        QuicFlowExpired = "quic_flow_expired",
        /// A pending ClientHello buffer was reused before its flow completed.
        QuicPendingEvicted = "quic_pending_evicted",
        /// The shared DCID table overwrote a fresh entry of another DCID.
        QuicReplayEvicted = "quic_replay_evicted",

        // --- SYN authentication (`syn`) ---
        /// Challenge sent: an ACK (or a SYN-ACK, `challenge = "syn-ack"`) with the cookie in its
        /// acknowledgment number.
        SynAckSent = "syn_ack_sent",
        /// RST carrying a valid cookie.
        SynCookieValid = "syn_cookie_valid",
        /// RST whose sequence number is no cookie of ours.
        SynCookieInvalid = "syn_cookie_invalid",
        /// RST carrying a cookie of ours older than two periods.
        SynCookieExpired = "syn_cookie_expired",
        /// RST not checked because its source failed too many checks recently.
        SynCookieCheckLimited = "syn_cookie_check_limited",
        /// Source verified by a SYN retransmitted with the same ISN within the window.
        SynRetransmitVerified = "syn_retransmit_verified",
        /// Source added to (or refreshed in) the shared verified table.
        SynSourceVerified = "syn_source_verified",
        /// A live verified source evicted from the shared table to make room.
        SynVerifiedEvicted = "syn_verified_evicted",
        /// SYN from a verified source passed on.
        SynVerifiedSyn = "syn_verified_syn",
        /// `when = "auto"`: a prefix's SYN authentication switched on.
        SynAutoOn = "syn_auto_on",
        /// `when = "auto"`: a prefix's SYN authentication switched off.
        SynAutoOff = "syn_auto_off",
        /// `when = "auto"`: no slot left in the shared auto table (the prefix is protected always).
        SynAutoNoSlot = "syn_auto_no_slot",
    }
}

counted_enum! {
    /// Bounded per-worker tables.
    pub enum Table {
        /// Token buckets per source address.
        SrcBuckets = "src_buckets",
        /// Token buckets per destination address.
        DstBuckets = "dst_buckets",
        /// Fragment budgets per destination address.
        FragBuckets = "frag_buckets",
        /// Reply budgets per address replied to.
        ReplyBuckets = "reply_buckets",

        // --- UDP amplification / reflection (amp): shared tables, evictions per worker ---
        /// Per-(destination, vector) budgets.
        AmpBuckets = "amp_buckets",
        /// First-fragment verdicts.
        AmpFragments = "amp_fragments",
        /// Recorded requests (symmetric mode).
        AmpRequests = "amp_requests",

        // --- QUIC Initial validation (quic) ---
        /// QUIC flows by 4-tuple.
        QuicFlows = "quic_flows",
        /// Initial budgets per source address (IPv6 per /64).
        QuicSrcBuckets = "quic_src_buckets",
        /// Initial budgets per destination address.
        QuicDstBuckets = "quic_dst_buckets",

        // --- SYN authentication (`syn`) ---
        /// SYNs awaiting a retransmission (`rst+retransmit`).
        SynRetransmit = "syn_retransmit",
        /// Failed cookie checks per source.
        SynCheckFailures = "syn_check_failures",
        /// Budgets per destination for non-SYN TCP from unverified sources.
        SynUnverifiedBuckets = "syn_unverified_buckets",
        /// SYN budgets per verified source.
        SynVerifiedSynBuckets = "syn_verified_syn_buckets",
    }
}

/// Counters of one worker (or, after `add`, of several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Packets per verdict.
    pub packets: [u64; VerdictKind::COUNT],
    /// Bytes per verdict (frame length as received).
    pub bytes: [u64; VerdictKind::COUNT],
    /// Dropped packets per reason.
    pub drops: [u64; DropReason::COUNT],
    /// Dropped bytes per reason.
    pub drop_bytes: [u64; DropReason::COUNT],
    /// Packets a monitor-mode profile would have dropped, per reason (they were forwarded).
    pub monitored: [u64; DropReason::COUNT],
    /// Events.
    pub events: [u64; Event::COUNT],
    /// Table occupancy, capacity and evictions.
    pub tables: [TableStats; Table::COUNT],
    /// Batches processed.
    pub batches: u64,
    /// Per-vector counters of the amplification countermeasure.
    pub amp: crate::amp::Counters,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            packets: [0; VerdictKind::COUNT],
            bytes: [0; VerdictKind::COUNT],
            drops: [0; DropReason::COUNT],
            drop_bytes: [0; DropReason::COUNT],
            monitored: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
            tables: [TableStats::default(); Table::COUNT],
            batches: 0,
            amp: crate::amp::Counters::default(),
        }
    }
}

impl Stats {
    /// Counts one verdict for a frame of `len` bytes.
    #[inline(always)]
    pub fn verdict(&mut self, verdict: Verdict, len: usize) {
        let k = verdict.kind().index();
        self.packets[k] += 1;
        self.bytes[k] += len as u64;
        if let Verdict::Drop(reason) = verdict {
            self.drops[reason.index()] += 1;
            self.drop_bytes[reason.index()] += len as u64;
        }
    }

    /// Counts one event.
    #[inline(always)]
    pub fn event(&mut self, event: Event) {
        self.events[event.index()] += 1;
    }

    /// Counts a drop a monitor-mode profile turned into a forward.
    #[inline(always)]
    pub fn monitored(&mut self, reason: DropReason) {
        self.monitored[reason.index()] += 1;
    }

    /// Total packets seen.
    pub fn total_packets(&self) -> u64 {
        self.packets.iter().sum()
    }

    /// Packets with verdict `kind`.
    pub fn packets_of(&self, kind: VerdictKind) -> u64 {
        self.packets[kind.index()]
    }

    /// Drops for `reason`.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Count of `event`.
    pub fn event_count(&self, event: Event) -> u64 {
        self.events[event.index()]
    }

    /// Adds `other` into `self` (aggregating workers). Table figures add up too.
    pub fn add(&mut self, other: &Stats) {
        fn sum<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
        sum(&mut self.packets, &other.packets);
        sum(&mut self.bytes, &other.bytes);
        sum(&mut self.drops, &other.drops);
        sum(&mut self.drop_bytes, &other.drop_bytes);
        sum(&mut self.monitored, &other.monitored);
        sum(&mut self.events, &other.events);
        for (a, b) in self.tables.iter_mut().zip(&other.tables) {
            a.len += b.len;
            a.capacity += b.capacity;
            a.evictions += b.evictions;
        }
        self.batches += other.batches;
        self.amp.add(&other.amp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_aggregates() {
        let mut a = Stats::default();
        a.verdict(Verdict::Drop(DropReason::Land), 60);
        a.verdict(Verdict::Forward, 100);
        a.event(Event::PolicySwap);
        let mut b = Stats::default();
        b.verdict(Verdict::Drop(DropReason::Land), 64);
        b.tables[Table::SrcBuckets.index()] = TableStats { len: 3, capacity: 10, evictions: 2 };
        a.add(&b);
        assert_eq!(a.drops_of(DropReason::Land), 2);
        assert_eq!(a.drop_bytes[DropReason::Land.index()], 124);
        assert_eq!(a.packets_of(VerdictKind::Drop), 2);
        assert_eq!(a.total_packets(), 3);
        assert_eq!(a.event_count(Event::PolicySwap), 1);
        assert_eq!(a.tables[Table::SrcBuckets.index()].evictions, 2);
    }
}
