//! GRE header view (RFC 2784, with the RFC 2890 key and sequence bits recognised).
//!
//! The scrubber emits only the basic 4-byte header (no checksum, key or sequence) when it
//! tunnels clean traffic to an origin, and reads the same header in tests.

use super::{Truncated, get_u16, set_u16};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const FLAGS_VERSION: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
}

/// Length of the basic GRE header.
pub const HEADER_LEN: usize = field::PROTOCOL.end;

const FLAG_CHECKSUM: u16 = 0x8000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQUENCE: u16 = 0x1000;

/// A view of a GRE header.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer, checking that it holds the header including optional fields.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Truncated> {
        let packet = Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN || len < packet.header_len() { Err(Truncated) } else { Ok(packet) }
    }

    fn flags_version(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_VERSION.start)
    }

    /// Checksum-present bit.
    pub fn checksum_present(&self) -> bool {
        self.flags_version() & FLAG_CHECKSUM != 0
    }

    /// Key-present bit (RFC 2890).
    pub fn key_present(&self) -> bool {
        self.flags_version() & FLAG_KEY != 0
    }

    /// Sequence-present bit (RFC 2890).
    pub fn sequence_present(&self) -> bool {
        self.flags_version() & FLAG_SEQUENCE != 0
    }

    /// Version field (0 for GRE).
    pub fn version(&self) -> u8 {
        (self.flags_version() & 0x7) as u8
    }

    /// EtherType of the payload.
    pub fn protocol(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PROTOCOL.start)
    }

    /// Header length including the optional fields announced by the flags.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present())
            + 4 * usize::from(self.sequence_present())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes a basic header (no optional fields, version 0) carrying `protocol`.
    pub fn emit_basic(&mut self, protocol: u16) {
        set_u16(self.buffer.as_mut(), field::FLAGS_VERSION.start, 0);
        set_u16(self.buffer.as_mut(), field::PROTOCOL.start, protocol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_round_trips() {
        let mut b = [0xffu8; 4];
        Packet::new_unchecked(&mut b[..]).emit_basic(0x86dd);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.protocol(), 0x86dd);
        assert_eq!(p.version(), 0);
        assert_eq!(p.header_len(), 4);
        assert!(!p.checksum_present() && !p.key_present() && !p.sequence_present());
    }

    #[test]
    fn optional_fields_extend_the_header() {
        let b = [0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 16);
        assert!(Packet::new_checked(&b[..12]).is_err());
    }
}
