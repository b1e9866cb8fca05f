//! Baseline filters: cheap, stateless checks every protected destination gets by default.
//!
//! TTL/hop limit 0, LAND (source == destination), bogon sources (RFC 6890 special-purpose
//! ranges not exempted by config), TCP flag combinations no stack sends (NULL, SYN+FIN, SYN+RST,
//! XMAS) and IPv4 options. Each has its own drop reason and can be turned off per profile.
//! Fragment policy needs per-destination state and lives in the pipeline.

use crate::parse::{Family, Fragment, PacketInfo, proto, tcp_flags as f};
use crate::policy::{BaselineFilters, Policy};
use crate::verdict::DropReason;

/// The first baseline filter `info` fails, if any.
#[inline]
pub fn check(policy: &Policy, filters: &BaselineFilters, info: &PacketInfo) -> Option<DropReason> {
    if filters.ttl_zero && info.ttl == 0 {
        return Some(DropReason::TtlZero);
    }
    if filters.land && info.src == info.dst {
        return Some(DropReason::Land);
    }
    if filters.bogon_sources && policy.is_bogon(info.src) {
        return Some(DropReason::BogonSource);
    }
    if filters.tcp_flag_abuse
        && info.protocol == proto::TCP
        && info.fragment != Fragment::NonFirst
        && let Some(reason) = tcp_flag_abuse(info.tcp_flags)
    {
        return Some(reason);
    }
    if filters.drop_ipv4_options && info.family == Family::V4 && info.ip_options {
        return Some(DropReason::Ipv4Options);
    }
    None
}

/// Flag combinations no TCP stack sends.
#[inline]
pub fn tcp_flag_abuse(flags: u8) -> Option<DropReason> {
    const XMAS: u8 = f::FIN | f::PSH | f::URG;
    if flags & (f::FIN | f::SYN | f::RST | f::PSH | f::ACK | f::URG) == 0 {
        Some(DropReason::TcpNullFlags)
    } else if flags & (f::SYN | f::FIN) == (f::SYN | f::FIN) {
        Some(DropReason::TcpSynFin)
    } else if flags & (f::SYN | f::RST) == (f::SYN | f::RST) {
        Some(DropReason::TcpSynRst)
    } else if flags & XMAS == XMAS {
        Some(DropReason::TcpXmas)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_combinations() {
        assert_eq!(tcp_flag_abuse(0), Some(DropReason::TcpNullFlags));
        assert_eq!(tcp_flag_abuse(f::ECE | f::CWR), Some(DropReason::TcpNullFlags));
        assert_eq!(tcp_flag_abuse(f::SYN | f::FIN), Some(DropReason::TcpSynFin));
        assert_eq!(tcp_flag_abuse(f::SYN | f::RST), Some(DropReason::TcpSynRst));
        assert_eq!(tcp_flag_abuse(f::FIN | f::PSH | f::URG), Some(DropReason::TcpXmas));
        assert_eq!(tcp_flag_abuse(f::FIN | f::PSH | f::URG | f::ACK), Some(DropReason::TcpXmas));
        for ok in [f::SYN, f::SYN | f::ACK, f::ACK, f::RST, f::RST | f::ACK, f::FIN | f::ACK, f::PSH | f::ACK] {
            assert_eq!(tcp_flag_abuse(ok), None, "flags {ok:#x}");
        }
    }
}
