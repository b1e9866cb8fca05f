//! Compact addresses and prefixes used as table keys.
//!
//! `Addr` holds an IPv6 address or an IPv4 address mapped into `::ffff:0:0/96`, so one hash
//! table can key both families. `Cidr` is a validated prefix (host bits zero) of either family,
//! parsed from the usual `a.b.c.d/n` and `x::y/n` text.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const V4_MAPPED: u128 = 0xffff_0000_0000;

/// An IPv6 address, or an IPv4 address in its IPv4-mapped IPv6 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr(pub u128);

impl Addr {
    /// An IPv4 address from its host-order value.
    #[inline]
    pub const fn v4(value: u32) -> Addr {
        Addr(V4_MAPPED | value as u128)
    }

    /// An IPv6 address from its host-order value.
    #[inline]
    pub const fn v6(value: u128) -> Addr {
        Addr(value)
    }

    /// An IPv4 address from network-order bytes.
    #[inline]
    pub fn from_v4_bytes(bytes: [u8; 4]) -> Addr {
        Addr::v4(u32::from_be_bytes(bytes))
    }

    /// An IPv6 address from network-order bytes.
    #[inline]
    pub fn from_v6_bytes(bytes: [u8; 16]) -> Addr {
        Addr(u128::from_be_bytes(bytes))
    }

    /// True when this is an IPv4(-mapped) address.
    #[inline]
    pub const fn is_v4(self) -> bool {
        (self.0 >> 32) == 0xffff
    }

    /// The IPv4 value (meaningful only when `is_v4`).
    #[inline]
    pub const fn v4_value(self) -> u32 {
        self.0 as u32
    }

    /// The standard library form.
    pub fn to_ip(self) -> IpAddr {
        if self.is_v4() { IpAddr::V4(Ipv4Addr::from(self.v4_value())) } else { IpAddr::V6(Ipv6Addr::from(self.0)) }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::v4(u32::from(v4)),
            IpAddr::V6(v6) => Addr(u128::from(v6)),
        }
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_ip(), f)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_ip(), f)
    }
}

/// A network prefix: address with host bits cleared, and its length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cidr {
    /// IPv4 network (host order) and length 0..=32.
    V4(u32, u8),
    /// IPv6 network (host order) and length 0..=128.
    V6(u128, u8),
}

/// Why a prefix string did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    BadAddress(String),
    /// The length part is not a number or too long for the family.
    BadLength(String),
    /// Bits set below the prefix length (e.g. `10.0.0.1/8`).
    HostBitsSet(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress(s) => write!(f, "`{s}` is not an IPv4 or IPv6 address or prefix"),
            CidrError::BadLength(s) => write!(f, "`{s}` has an invalid prefix length"),
            CidrError::HostBitsSet(s) => {
                write!(f, "`{s}` has bits set past its prefix length (write the network address)")
            }
        }
    }
}

impl std::error::Error for CidrError {}

#[inline]
const fn mask_v4(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len as u32) }
}

#[inline]
const fn mask_v6(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len as u32) }
}

impl Cidr {
    /// A prefix, clearing any host bits.
    pub fn new_truncating(ip: IpAddr, len: u8) -> Option<Cidr> {
        match ip {
            IpAddr::V4(a) if len <= 32 => Some(Cidr::V4(u32::from(a) & mask_v4(len), len)),
            IpAddr::V6(a) if len <= 128 => Some(Cidr::V6(u128::from(a) & mask_v6(len), len)),
            _ => None,
        }
    }

    /// The host prefix (/32 or /128) of one address.
    pub fn host(addr: Addr) -> Cidr {
        if addr.is_v4() { Cidr::V4(addr.v4_value(), 32) } else { Cidr::V6(addr.0, 128) }
    }

    /// Prefix length.
    pub const fn prefix_len(self) -> u8 {
        match self {
            Cidr::V4(_, l) | Cidr::V6(_, l) => l,
        }
    }

    /// True for the IPv4 family.
    pub const fn is_v4(self) -> bool {
        matches!(self, Cidr::V4(..))
    }

    /// True when `addr` lies inside this prefix (families must match).
    pub fn contains(self, addr: Addr) -> bool {
        match self {
            Cidr::V4(net, len) => addr.is_v4() && addr.v4_value() & mask_v4(len) == net,
            Cidr::V6(net, len) => !addr.is_v4() && addr.0 & mask_v6(len) == net,
        }
    }

    /// First and last address of the prefix as IPv4 values (None for IPv6).
    pub fn v4_range(self) -> Option<(u32, u32)> {
        match self {
            Cidr::V4(net, len) => Some((net, net | !mask_v4(len))),
            Cidr::V6(..) => None,
        }
    }

    /// First and last address of the prefix as IPv6 values (None for IPv4).
    pub fn v6_range(self) -> Option<(u128, u128)> {
        match self {
            Cidr::V6(net, len) => Some((net, net | !mask_v6(len))),
            Cidr::V4(..) => None,
        }
    }

    /// The network address.
    pub fn network(self) -> IpAddr {
        match self {
            Cidr::V4(n, _) => IpAddr::V4(Ipv4Addr::from(n)),
            Cidr::V6(n, _) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `addr/len`, or a bare address as a host prefix. Host bits must be zero.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr_text.parse().map_err(|_| CidrError::BadAddress(text.to_string()))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError::BadLength(text.to_string())),
            },
        };
        let cidr = Cidr::new_truncating(ip, len).ok_or_else(|| CidrError::BadLength(text.to_string()))?;
        if cidr.network() != ip {
            return Err(CidrError::HostBitsSet(text.to_string()));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapping_round_trips() {
        let a = Addr::v4(0xc612_0001);
        assert!(a.is_v4());
        assert_eq!(a.to_ip(), "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(Addr::from(a.to_ip()), a);
        let b = Addr::from("2001:2::1".parse::<IpAddr>().unwrap());
        assert!(!b.is_v4());
        assert_eq!(b.to_string(), "2001:2::1");
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(c.contains(Addr::from("198.19.255.255".parse::<IpAddr>().unwrap())));
        assert!(!c.contains(Addr::from("198.20.0.0".parse::<IpAddr>().unwrap())));
        assert!(!c.contains(Addr::from("::ffff:1".parse::<IpAddr>().unwrap())) || c.is_v4());
        let h: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(h.prefix_len(), 32);
        let six: Cidr = "2001:2::/48".parse().unwrap();
        assert!(six.contains(Addr::from("2001:2:0:ffff::1".parse::<IpAddr>().unwrap())));
        assert!(!six.contains(Addr::v4(1)));
        assert_eq!(six.to_string(), "2001:2::/48");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().v4_range(), Some((0, u32::MAX)));
    }

    #[test]
    fn cidr_errors_name_the_problem() {
        assert!(matches!("10.0.0.1/8".parse::<Cidr>(), Err(CidrError::HostBitsSet(_))));
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::BadLength(_))));
        assert!(matches!("banana/8".parse::<Cidr>(), Err(CidrError::BadAddress(_))));
        assert!(matches!("::/129".parse::<Cidr>(), Err(CidrError::BadLength(_))));
    }
}
