//! Byte views for the headers `smoltcp::wire` does not have.
//!
//! Each view follows smoltcp's shape: `Packet<T: AsRef<[u8]>>` (or `Tag`, `Header`) over a
//! buffer, a private `field` module of byte ranges, `new_checked` that validates the length once,
//! and one-line getters (and setters where the pipeline rewrites the header).

pub mod gre;
pub mod quic;
pub mod vlan;

/// The buffer is too short for the header it was asked to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

/// Reads a big-endian u16 at `at`; the caller has checked `at + 2 <= buf.len()`.
#[inline(always)]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Writes a big-endian u16 at `at`; the caller has checked `at + 2 <= buf.len()`.
#[inline(always)]
pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
