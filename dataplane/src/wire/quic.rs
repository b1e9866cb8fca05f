//! QUIC long-header view (RFC 8999 invariants, RFC 9000 §17.2) and variable-length integers
//! (RFC 9000 §16).
//!
//! `Packet` wraps the bytes of one long-header packet (or a whole datagram whose first packet has
//! a long header). `new_checked` validates once that the version and both connection IDs are
//! inside the buffer, so the getters are plain reads. The version-specific part after the Source
//! Connection ID (Initial: Token Length, Token, Length, Packet Number) is read with
//! `initial_fields`, which checks every varint against the buffer and returns offsets; nothing
//! here panics on attacker bytes. Connection ID lengths up to 255 are representable by the
//! invariants; RFC 9000 limits them to 20 for versions 1 and 2, which the caller enforces.

use super::Truncated;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const FLAGS: usize = 0;
    pub const VERSION: Field = 1..5;
    pub const DCID_LEN: usize = 5;
    pub const DCID: usize = 6;
}

/// Header Form bit: set for a long header.
pub const FORM_LONG: u8 = 0x80;
/// The Fixed Bit ("QUIC bit", RFC 9000 §17.2, RFC 9287).
pub const FIXED_BIT: u8 = 0x40;
/// Shortest possible long header: flags, version, two zero-length connection IDs.
pub const MIN_LONG_HEADER_LEN: usize = field::DCID + 1;
/// Largest connection ID RFC 9000 allows (§17.2: "MUST NOT exceed 20 bytes" for version 1).
pub const MAX_CID_LEN: usize = 20;
/// The Version field of a Version Negotiation packet (RFC 9000 §17.2.1).
pub const VERSION_NEGOTIATION: u32 = 0;

/// A view of a QUIC long-header packet. See the module docs.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Offsets of the Initial-specific fields, from the start of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialFields {
    /// Offset of the token.
    pub token_offset: usize,
    /// Token length in bytes.
    pub token_len: usize,
    /// Offset of the (protected) Packet Number field.
    pub pn_offset: usize,
    /// Value of the Length field: packet number plus protected payload.
    pub length: usize,
    /// Offset one past the last byte of this packet (`pn_offset + length`).
    pub end: usize,
}

/// Why the Initial-specific fields could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// A varint or the token runs past the buffer.
    Truncated,
    /// The Length field claims more bytes than the buffer holds.
    LengthBeyond,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer, checking that the first byte is a long header and that the version and
    /// both connection IDs (with their length bytes) are inside it.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Truncated> {
        let packet = Packet { buffer };
        let buf = packet.buffer.as_ref();
        if buf.len() < MIN_LONG_HEADER_LEN || buf[field::FLAGS] & FORM_LONG == 0 {
            return Err(Truncated);
        }
        let scid_len_at = field::DCID + usize::from(buf[field::DCID_LEN]);
        if scid_len_at >= buf.len() || scid_len_at + 1 + usize::from(buf[scid_len_at]) > buf.len() {
            return Err(Truncated);
        }
        Ok(packet)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first byte (flags; its low bits are header-protected in versions 1 and 2).
    #[inline]
    pub fn first_byte(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the Fixed Bit is set.
    #[inline]
    pub fn fixed_bit(&self) -> bool {
        self.first_byte() & FIXED_BIT != 0
    }

    /// The two Long Packet Type bits (their meaning depends on the version).
    #[inline]
    pub fn type_bits(&self) -> u8 {
        (self.first_byte() >> 4) & 0x03
    }

    /// The Version field.
    #[inline]
    pub fn version(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VERSION];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Destination Connection ID length.
    #[inline]
    pub fn dcid_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DCID_LEN])
    }

    /// Destination Connection ID.
    #[inline]
    pub fn dcid(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DCID..field::DCID + self.dcid_len()]
    }

    #[inline]
    fn scid_len_at(&self) -> usize {
        field::DCID + self.dcid_len()
    }

    /// Source Connection ID length.
    #[inline]
    pub fn scid_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[self.scid_len_at()])
    }

    /// Source Connection ID.
    #[inline]
    pub fn scid(&self) -> &[u8] {
        let at = self.scid_len_at() + 1;
        &self.buffer.as_ref()[at..at + self.scid_len()]
    }

    /// Offset of the first byte after the Source Connection ID (the version-specific part).
    #[inline]
    pub fn rest_offset(&self) -> usize {
        self.scid_len_at() + 1 + self.scid_len()
    }

    /// Reads Token Length, Token and Length of an Initial packet (RFC 9000 §17.2.2) and checks
    /// them against the buffer.
    pub fn initial_fields(&self) -> Result<InitialFields, FieldError> {
        let buf = self.buffer.as_ref();
        let (token_len, token_offset) = read_varint(buf, self.rest_offset()).ok_or(FieldError::Truncated)?;
        let token_len = usize::try_from(token_len).map_err(|_| FieldError::Truncated)?;
        let after_token =
            token_offset.checked_add(token_len).filter(|&e| e <= buf.len()).ok_or(FieldError::Truncated)?;
        let (length, pn_offset) = read_varint(buf, after_token).ok_or(FieldError::Truncated)?;
        let length = usize::try_from(length).map_err(|_| FieldError::LengthBeyond)?;
        let end = pn_offset.checked_add(length).filter(|&e| e <= buf.len()).ok_or(FieldError::LengthBeyond)?;
        Ok(InitialFields { token_offset, token_len, pn_offset, length, end })
    }

    /// Reads the Length field of a 0-RTT or Handshake packet (no token) and returns
    /// `(pn_offset, end)`.
    pub fn length_fields(&self) -> Result<(usize, usize), FieldError> {
        let buf = self.buffer.as_ref();
        let (length, pn_offset) = read_varint(buf, self.rest_offset()).ok_or(FieldError::Truncated)?;
        let length = usize::try_from(length).map_err(|_| FieldError::LengthBeyond)?;
        let end = pn_offset.checked_add(length).filter(|&e| e <= buf.len()).ok_or(FieldError::LengthBeyond)?;
        Ok((pn_offset, end))
    }
}

/// The largest value a QUIC varint holds (2^62 - 1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Encoded length of a varint from its first byte (1, 2, 4 or 8).
#[inline]
pub const fn varint_len_from_first(first: u8) -> usize {
    1 << (first >> 6)
}

/// Bytes needed to encode `value`; `None` above `VARINT_MAX`.
#[inline]
pub const fn varint_len(value: u64) -> Option<usize> {
    match value {
        0..=63 => Some(1),
        64..=16_383 => Some(2),
        16_384..=1_073_741_823 => Some(4),
        1_073_741_824..=VARINT_MAX => Some(8),
        _ => None,
    }
}

/// Reads a varint at `at`: `(value, offset after it)`, or `None` when it runs past `buf`.
#[inline]
pub fn read_varint(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *buf.get(at)?;
    let len = varint_len_from_first(first);
    let bytes = buf.get(at..at.checked_add(len)?)?;
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, at + len))
}

/// Writes `value` at `at` in its shortest encoding; returns the offset after it, or `None` when
/// it does not fit in `buf` or exceeds `VARINT_MAX`.
#[inline]
pub fn write_varint(buf: &mut [u8], at: usize, value: u64) -> Option<usize> {
    write_varint_len(buf, at, value, varint_len(value)?)
}

/// Writes `value` at `at` using exactly `len` bytes (1, 2, 4 or 8), as senders do when they
/// reserve room for a field before knowing its value.
pub fn write_varint_len(buf: &mut [u8], at: usize, value: u64, len: usize) -> Option<usize> {
    let prefix: u64 = match len {
        1 => 0,
        2 => 1,
        4 => 2,
        8 => 3,
        _ => return None,
    };
    if varint_len(value)? > len {
        return None;
    }
    let out = buf.get_mut(at..at.checked_add(len)?)?;
    let encoded = value | (prefix << (8 * len - 2));
    out.copy_from_slice(&encoded.to_be_bytes()[8 - len..]);
    Some(at + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc9000_appendix_a1_varint_examples() {
        // RFC 9000 §A.1 sample encodings.
        let cases: [(&[u8], u64); 5] = [
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(read_varint(bytes, 0), Some((value, bytes.len())));
        }
        let mut out = [0u8; 8];
        assert_eq!(write_varint(&mut out, 0, 15_293), Some(2));
        assert_eq!(&out[..2], &[0x7b, 0xbd]);
        assert_eq!(write_varint_len(&mut out, 0, 37, 2), Some(2));
        assert_eq!(&out[..2], &[0x40, 0x25]);
        assert_eq!(write_varint(&mut out, 0, VARINT_MAX + 1), None);
        assert_eq!(write_varint(&mut out[..1], 0, 64), None);
        assert_eq!(read_varint(&[0x40], 0), None);
        assert_eq!(read_varint(&[], 0), None);
    }

    #[test]
    fn header_fields() {
        let mut p = vec![0xc3, 0, 0, 0, 1, 4, 1, 2, 3, 4, 2, 9, 9, 0, 0x41, 0x00];
        p.resize(16 + 256, 0);
        let packet = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.dcid(), &[1, 2, 3, 4]);
        assert_eq!(packet.scid(), &[9, 9]);
        assert_eq!(packet.type_bits(), 0);
        assert!(packet.fixed_bit());
        let f = packet.initial_fields().unwrap();
        assert_eq!(f.token_len, 0);
        assert_eq!(f.pn_offset, 16);
        assert_eq!(f.length, 256);
        assert_eq!(f.end, 16 + 256);
        // One byte short of the claimed length.
        let packet = Packet::new_checked(&p[..p.len() - 1]).unwrap();
        assert_eq!(packet.initial_fields(), Err(FieldError::LengthBeyond));
        // Connection IDs beyond the buffer.
        assert!(Packet::new_checked(&p[..8]).is_err());
        assert!(Packet::new_checked(&p[..11]).is_err());
        assert!(Packet::new_checked(&[0x40u8, 0, 0, 0, 1, 0, 0][..]).is_err(), "short header");
    }

    proptest! {
        #[test]
        fn varints_round_trip(value in 0..=VARINT_MAX) {
            let mut out = [0u8; 8];
            let end = write_varint(&mut out, 0, value).unwrap();
            prop_assert_eq!(Some(end), varint_len(value));
            prop_assert_eq!(read_varint(&out, 0), Some((value, end)));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.dcid(), p.scid(), p.initial_fields(), p.length_fields());
            }
        }
    }
}
