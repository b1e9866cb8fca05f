//! Ordered firewall rules: match fields, first match wins.
//!
//! A rule matches on any combination of protocol, source/destination prefix, port ranges, TCP
//! flags under a mask, IP length range and TTL range. Absent fields match everything. Rules are
//! evaluated in order after the allow/deny lists; the first that matches decides.

use crate::addr::Cidr;
use crate::parse::PacketInfo;
use crate::ratelimit::Rate;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Stop evaluating rules; the packet continues to the rate limits and countermeasures.
    Allow,
    /// Drop (reason `rule_drop`).
    Drop,
    /// Admit within the budget (shared by everything the rule matches), drop the rest
    /// (reason `rule_rate_limit`).
    RateLimit(Rate),
}

/// An inclusive range of values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span<T> {
    /// Lowest value matched.
    pub lo: T,
    /// Highest value matched.
    pub hi: T,
}

impl<T: PartialOrd + Copy> Span<T> {
    /// A range; `lo` must not exceed `hi`.
    pub const fn new(lo: T, hi: T) -> Span<T> {
        Span { lo, hi }
    }

    #[inline]
    fn contains(&self, v: T) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// One firewall rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable identifier (for the control plane and per-rule counters).
    pub id: u32,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// Source prefix.
    pub src: Option<Cidr>,
    /// Destination prefix.
    pub dst: Option<Cidr>,
    /// Source port range (TCP/UDP only; a packet without ports never matches a port condition).
    pub src_ports: Option<Span<u16>>,
    /// Destination port range.
    pub dst_ports: Option<Span<u16>>,
    /// TCP flags: `(mask, value)` matches when `flags & mask == value` (TCP only).
    pub tcp_flags: Option<(u8, u8)>,
    /// IP packet length range.
    pub length: Option<Span<u16>>,
    /// TTL / hop limit range.
    pub ttl: Option<Span<u8>>,
    /// What to do on a match.
    pub action: RuleAction,
}

impl Rule {
    /// True when every present condition holds for `info`.
    #[inline]
    pub fn matches(&self, info: &PacketInfo) -> bool {
        if let Some(p) = self.protocol
            && p != info.protocol
        {
            return false;
        }
        if let Some(c) = self.src
            && !c.contains(info.src)
        {
            return false;
        }
        if let Some(c) = self.dst
            && !c.contains(info.dst)
        {
            return false;
        }
        if self.src_ports.is_some() || self.dst_ports.is_some() {
            if !info.has_ports() {
                return false;
            }
            if let Some(r) = self.src_ports
                && !r.contains(info.src_port)
            {
                return false;
            }
            if let Some(r) = self.dst_ports
                && !r.contains(info.dst_port)
            {
                return false;
            }
        }
        if let Some((mask, value)) = self.tcp_flags
            && (info.protocol != crate::parse::proto::TCP || info.tcp_flags & mask != value)
        {
            return false;
        }
        if let Some(r) = self.length
            && !r.contains(info.ip_len)
        {
            return false;
        }
        if let Some(r) = self.ttl
            && !r.contains(info.ttl)
        {
            return false;
        }
        true
    }
}

/// A rule that matches everything (tests and builders start from it).
pub fn match_all(id: u32, action: RuleAction) -> Rule {
    Rule {
        id,
        protocol: None,
        src: None,
        dst: None,
        src_ports: None,
        dst_ports: None,
        tcp_flags: None,
        length: None,
        ttl: None,
        action,
    }
}

/// First rule matching `info`, with its position.
#[inline]
pub fn first_match<'a>(rules: &'a [Rule], info: &PacketInfo) -> Option<(usize, &'a Rule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(info))
}
