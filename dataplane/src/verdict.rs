//! What the pipeline decided for one frame, and why it dropped it.
//!
//! `Verdict` is returned per frame; `DropReason` names every way a frame can be dropped and
//! doubles as the index of its drop counter. Reasons are grouped by the stage that raises them:
//! malformed headers (parse), baseline filters, policy (lists, rules, rate limits), forwarding,
//! and one block per countermeasure.

use crate::counted_enum;

/// The decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send onward to the origin (the frame has been rewritten for the egress path).
    Forward,
    /// The frame was rewritten in place into a reply; send it back out of the ingress port.
    Reply,
    /// Discard the frame (return it to the fill ring).
    Drop(DropReason),
    /// Not ours (non-IP, the appliance's own address, unprotected destination): hand to the kernel.
    Pass,
}

impl Verdict {
    /// The counter bucket of this verdict.
    #[inline]
    pub const fn kind(self) -> VerdictKind {
        match self {
            Verdict::Forward => VerdictKind::Forward,
            Verdict::Reply => VerdictKind::Reply,
            Verdict::Drop(_) => VerdictKind::Drop,
            Verdict::Pass => VerdictKind::Pass,
        }
    }
}

/// What a check (baseline filter, list, rule, countermeasure) decided about a frame for a
/// protected destination. The pipeline turns it into a `Verdict`, honouring monitor mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing wrong: continue with the next check, forward at the end.
    Clean,
    /// Drop for this reason (in a monitor-mode profile: count under `monitored`, forward).
    Reject(DropReason),
    /// The frame has been rewritten in place into a reply (e.g. a SYN-ACK challenge) that leaves
    /// by the ingress port. Only returned when the profile mitigates: a check must not touch the
    /// frame in monitor mode, it returns `Reject` with its would-be reason instead.
    Replied,
}

counted_enum! {
    /// `Verdict` without its payload, for counters.
    pub enum VerdictKind {
        /// `Verdict::Forward`.
        Forward = "forward",
        /// `Verdict::Reply`.
        Reply = "reply",
        /// `Verdict::Drop`.
        Drop = "drop",
        /// `Verdict::Pass`.
        Pass = "pass",
    }
}

counted_enum! {
    /// Why a frame was dropped. The name is the metrics label and the capture annotation.
    pub enum DropReason {
        // --- malformed frames (parse) ---
        /// Shorter than an Ethernet header.
        EthTruncated = "eth_truncated",
        /// An 802.1Q/802.1ad tag cut short.
        VlanTruncated = "vlan_truncated",
        /// More than two VLAN tags.
        VlanTooMany = "vlan_too_many",
        /// Shorter than a minimal IPv4 header.
        Ipv4Truncated = "ipv4_truncated",
        /// EtherType IPv4 but the version field is not 4.
        Ipv4BadVersion = "ipv4_bad_version",
        /// IHL below 5 or beyond the packet.
        Ipv4BadIhl = "ipv4_bad_ihl",
        /// Total length below the header length or beyond the frame.
        Ipv4BadTotalLength = "ipv4_bad_total_length",
        /// Header checksum does not verify.
        Ipv4BadChecksum = "ipv4_bad_checksum",
        /// A fragment too small to carry the transport header, or one that overlaps it (RFC 1858).
        Ipv4TinyFragment = "ipv4_tiny_fragment",
        /// Shorter than the fixed IPv6 header.
        Ipv6Truncated = "ipv6_truncated",
        /// EtherType IPv6 but the version field is not 6.
        Ipv6BadVersion = "ipv6_bad_version",
        /// Payload length beyond the frame (or zero: jumbograms are not scrubbed).
        Ipv6BadPayloadLength = "ipv6_bad_payload_length",
        /// An extension header runs past the packet.
        Ipv6ExtTruncated = "ipv6_ext_truncated",
        /// More extension headers than the bounded walk accepts.
        Ipv6ExtTooMany = "ipv6_ext_too_many",
        /// Hop-by-Hop options not directly after the fixed header (RFC 8200 §4.1).
        Ipv6HopByHopNotFirst = "ipv6_hbh_not_first",
        /// Routing header type 0 (deprecated, RFC 5095).
        Ipv6RoutingType0 = "ipv6_routing_type0",
        /// First fragment without the whole header chain (RFC 7112).
        Ipv6IncompleteChain = "ipv6_incomplete_chain",
        /// Shorter than a TCP header.
        TcpTruncated = "tcp_truncated",
        /// Data offset below 5 or beyond the segment.
        TcpBadDataOffset = "tcp_bad_data_offset",
        /// Shorter than a UDP header.
        UdpTruncated = "udp_truncated",
        /// UDP length field below 8 or beyond the IP payload.
        UdpBadLength = "udp_bad_length",
        /// Shorter than an ICMP header.
        IcmpTruncated = "icmp_truncated",

        // --- baseline filters ---
        /// TTL or hop limit 0.
        TtlZero = "ttl_zero",
        /// Source address equals destination address.
        Land = "land",
        /// Source in an RFC 6890 special-purpose range (not exempted by config).
        BogonSource = "bogon_source",
        /// TCP with no flags at all.
        TcpNullFlags = "tcp_null_flags",
        /// TCP SYN together with FIN.
        TcpSynFin = "tcp_syn_fin",
        /// TCP SYN together with RST.
        TcpSynRst = "tcp_syn_rst",
        /// TCP FIN+PSH+URG (XMAS scan).
        TcpXmas = "tcp_xmas",
        /// IPv4 options present and the profile drops them.
        Ipv4Options = "ipv4_options",
        /// Fragment and the profile drops fragments.
        Fragment = "fragment",
        /// Fragment over the profile's fragment budget.
        FragmentRateLimit = "fragment_rate_limit",

        // --- policy ---
        /// Source on the deny list.
        DenyList = "deny_list",
        /// Matched a firewall rule whose action is drop.
        RuleDrop = "rule_drop",
        /// Matched a rate-limit rule over its budget.
        RuleRateLimit = "rule_rate_limit",
        /// Source over its per-source budget.
        SrcRateLimit = "src_rate_limit",
        /// Destination over its per-destination budget.
        DstRateLimit = "dst_rate_limit",
        /// Destination not protected and the policy drops such traffic.
        Unprotected = "unprotected",

        // --- forwarding ---
        /// Encapsulated frame would exceed the egress MTU.
        MtuExceeded = "mtu_exceeded",
        /// Not enough headroom in the buffer to add the egress headers.
        NoHeadroom = "no_headroom",
        /// No GRE endpoint configured for the destination.
        NoTunnelEndpoint = "no_tunnel_endpoint",
        /// A reply (SYN-ACK, ICMP) the reply budget did not allow.
        ReplyOverBudget = "reply_over_budget",

        // --- UDP amplification / reflection (amp) ---
        /// A reflection vector the profile drops (memcached, CharGEN, NTP monlist, ...).
        AmpReflection = "amp_reflection",
        /// A reflection vector over its per-destination budget.
        AmpRateLimit = "amp_rate_limit",
        /// Symmetric mode: a DNS/NTP response matching no request the host sent.
        AmpUnsolicited = "amp_unsolicited",
        /// A later fragment of a datagram whose first fragment was dropped (as reflection, or by
        /// an earlier check).
        AmpFragment = "amp_fragment",
        /// A later fragment of an unseen datagram, and the profile drops those.
        AmpFragmentPolicy = "amp_fragment_policy",
        /// A later fragment of an unseen datagram, over the profile's fragment budget.
        AmpFragmentRateLimit = "amp_fragment_rate_limit",

        // --- QUIC Initial validation (quic) ---
        /// UDP to a QUIC port in an IP fragment (RFC 9000 §14: QUIC datagrams are never fragmented).
        QuicFragment = "quic_fragment",
        /// Empty datagram or a long header cut short.
        QuicTruncated = "quic_truncated",
        /// Version Negotiation packet sent to a server.
        QuicVersionNegotiation = "quic_version_negotiation",
        /// Version other than 1 and 2, and the profile drops unknown versions.
        QuicUnknownVersion = "quic_unknown_version",
        /// A Retry packet from a client.
        QuicUnexpectedType = "quic_unexpected_type",
        /// Client Initial in a UDP payload under 1200 bytes (RFC 9000 §14.1).
        QuicShortDatagram = "quic_short_datagram",
        /// Connection ID over 20 bytes, or a first Initial's DCID under 8 (RFC 9000 §7.2, §17.2).
        QuicBadCid = "quic_bad_cid",
        /// Token Length / Length inconsistent with the datagram.
        QuicBadLength = "quic_bad_length",
        /// Fixed Bit clear on an Initial without a token (RFC 9287 §3.1).
        QuicFixedBit = "quic_fixed_bit",
        /// Coalesced packets with another DCID or version, or trailing bytes that are not a packet.
        QuicBadCoalesced = "quic_bad_coalesced",
        /// First Initial over the per-source Initial budget.
        QuicSrcRateLimit = "quic_src_rate_limit",
        /// First Initial over the per-destination Initial budget.
        QuicDstRateLimit = "quic_dst_rate_limit",
        /// First Initial over the worker's decryption budget (strict gating).
        QuicCryptoBudget = "quic_crypto_budget",
        /// AEAD tag did not verify with the keys derived from the DCID.
        QuicAuthFailed = "quic_auth_failed",
        /// Reserved header bits set once protection is removed (RFC 9000 §17.2).
        QuicReservedBits = "quic_reserved_bits",
        /// A frame type not allowed in an Initial (RFC 9000 §12.4).
        QuicForbiddenFrame = "quic_forbidden_frame",
        /// Frames that run past the payload, or too many of them.
        QuicBadFrame = "quic_bad_frame",
        /// First Initial of a flow without a CRYPTO frame at offset 0 starting a ClientHello.
        QuicNoClientHello = "quic_no_client_hello",
        /// ClientHello malformed, or without quic_transport_parameters (RFC 9001 §8.2).
        QuicBadClientHello = "quic_bad_client_hello",
        /// ClientHello larger than the reassembly bound.
        QuicHelloTooLarge = "quic_hello_too_large",
        /// ClientHello not complete within the flow's first Initials (or its buffer was reused).
        QuicHelloIncomplete = "quic_hello_incomplete",
        /// DCID already seen from more 4-tuples than the replay limit.
        QuicReplay = "quic_replay",
        /// A profile rule dropped the ClientHello by SNI or fingerprint.
        QuicHelloRuleDrop = "quic_hello_rule_drop",
        /// Packet of a flow whose ClientHello a rule dropped.
        QuicRefusedFlow = "quic_refused_flow",
        /// Handshake packet of a flow not admitted (strict gating).
        QuicUnadmittedHandshake = "quic_unadmitted_handshake",
        /// 0-RTT packet of a flow not admitted (strict gating).
        QuicUnadmittedZeroRtt = "quic_unadmitted_0rtt",
        /// Short-header packet of a flow not admitted (strict gating).
        QuicUnadmittedShort = "quic_unadmitted_short",

        // --- SYN authentication (`syn`) ---
        /// SYN from an unverified source that would be challenged (monitor mode: forwarded).
        SynUnverified = "syn_unverified",
        /// SYN from an unverified source whose SYN-ACK challenge the reply budget did not allow.
        SynChallengeOverBudget = "syn_challenge_over_budget",
        /// RST answering a SYN-ACK challenge with a valid cookie: consumed (the source is verified).
        SynCookieAnswer = "syn_cookie_answer",
        /// A SYN in the first fragment of a fragmented datagram.
        SynFragment = "syn_fragment",
        /// A SYN whose TCP options are malformed.
        SynBadOptions = "syn_bad_options",
        /// Non-SYN TCP from an unverified source under `strict`.
        SynStrictUnverified = "syn_strict_unverified",
        /// Non-SYN TCP from an unverified source over the destination's budget for it.
        SynUnverifiedRateLimit = "syn_unverified_rate_limit",
        /// SYN from a verified source over that source's SYN budget (a flood spoofing a
        /// verified address).
        SynVerifiedOverBudget = "syn_verified_over_budget",
    }
}

impl DropReason {
    /// True for reasons that mean "the frame itself is broken" rather than "policy said no".
    pub const fn is_malformed(self) -> bool {
        (self as u8) <= (DropReason::IcmpTruncated as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names.iter().all(|n| { n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn malformed_block_ends_at_icmp_truncated() {
        assert!(DropReason::EthTruncated.is_malformed());
        assert!(DropReason::IcmpTruncated.is_malformed());
        assert!(!DropReason::TtlZero.is_malformed());
        assert!(!DropReason::DenyList.is_malformed());
    }
}
