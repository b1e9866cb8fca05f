//! The frames of a decrypted Initial payload (RFC 9000 §12.4, §19).
//!
//! Only PADDING (0x00), PING (0x01), ACK (0x02, 0x03), CRYPTO (0x06) and CONNECTION_CLOSE of
//! type 0x1c may appear in an Initial packet (RFC 9000 §12.4, table 3); anything else, and any
//! frame that runs past the payload, is a fault. CRYPTO frames are recorded (offset and where
//! their data lies in the payload) in a fixed array, in the order they appear: some clients
//! shuffle them, so the caller reassembles by offset. A payload with no frame at all is a fault
//! too (RFC 9000 §12.4: a packet MUST contain at least one frame).

use crate::wire::quic::read_varint;
use core::ops::Range;

/// Most CRYPTO frames recorded from one packet.
pub const MAX_CRYPTO_FRAMES: usize = 32;
/// Most ACK ranges walked in one ACK frame.
pub const MAX_ACK_RANGES: u64 = 256;

/// One CRYPTO frame: stream offset and the data's place in the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CryptoFrame {
    /// Offset in the Initial-level crypto stream.
    pub offset: u64,
    /// Data range within the payload.
    pub data: Range<usize>,
}

/// What a walk over an Initial's frames found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frames {
    /// CRYPTO frames in packet order (`crypto[..crypto_count]`).
    pub crypto: [CryptoFrame; MAX_CRYPTO_FRAMES],
    /// Number of CRYPTO frames recorded.
    pub crypto_count: usize,
    /// An ACK frame was present.
    pub ack: bool,
    /// A CONNECTION_CLOSE (0x1c) frame was present.
    pub close: bool,
    /// Frames other than PADDING.
    pub non_padding: usize,
}

impl Frames {
    /// The recorded CRYPTO frames.
    pub fn crypto(&self) -> &[CryptoFrame] {
        &self.crypto[..self.crypto_count]
    }
}

/// Why a payload's frames were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A frame type not allowed in an Initial packet (RFC 9000 §12.4).
    NotAllowed(u8),
    /// A frame runs past the payload, or a field is out of range.
    Malformed,
    /// More CRYPTO frames than `MAX_CRYPTO_FRAMES`, or ACK ranges than `MAX_ACK_RANGES`.
    TooMany,
    /// No frame at all.
    Empty,
}

#[inline]
fn varint(payload: &[u8], at: &mut usize) -> Result<u64, FrameError> {
    let (v, next) = read_varint(payload, *at).ok_or(FrameError::Malformed)?;
    *at = next;
    Ok(v)
}

#[inline]
fn skip(payload: &[u8], at: &mut usize, len: u64) -> Result<Range<usize>, FrameError> {
    let len = usize::try_from(len).map_err(|_| FrameError::Malformed)?;
    let start = *at;
    let end = start.checked_add(len).filter(|&e| e <= payload.len()).ok_or(FrameError::Malformed)?;
    *at = end;
    Ok(start..end)
}

/// Length of the run of zero bytes at the start of `bytes`: 32 bytes per step while they are
/// all zero (a first Initial is mostly PADDING), then eight at a time.
#[inline]
fn zero_run(bytes: &[u8]) -> usize {
    let mut n = 0;
    // An array comparison compiles to two 16-byte vector compares; combining eight-byte words
    // with OR instead was turned back into 32 byte loads.
    while let Some(block) = bytes[n..].first_chunk::<32>() {
        if *block != [0u8; 32] {
            break;
        }
        n += 32;
    }
    let mut words = bytes[n..].chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if v != 0 {
            return n + (v.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + words.remainder().iter().take_while(|&&b| b == 0).count()
}

/// Walks `payload`, filling `out`. See the module docs.
pub fn walk(payload: &[u8], out: &mut Frames) -> Result<(), FrameError> {
    out.crypto_count = 0;
    out.ack = false;
    out.close = false;
    out.non_padding = 0;
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut at = 0usize;
    while at < payload.len() {
        let frame_type = payload[at];
        at += 1;
        match frame_type {
            0x00 => {
                // A run of PADDING: skip it in one go.
                at += zero_run(&payload[at..]);
                continue;
            }
            0x01 => {}
            0x02 | 0x03 => {
                let _largest = varint(payload, &mut at)?;
                let _delay = varint(payload, &mut at)?;
                let ranges = varint(payload, &mut at)?;
                if ranges > MAX_ACK_RANGES {
                    return Err(FrameError::TooMany);
                }
                let _first = varint(payload, &mut at)?;
                for _ in 0..ranges {
                    varint(payload, &mut at)?;
                    varint(payload, &mut at)?;
                }
                if frame_type == 0x03 {
                    for _ in 0..3 {
                        varint(payload, &mut at)?;
                    }
                }
                out.ack = true;
            }
            0x06 => {
                let offset = varint(payload, &mut at)?;
                let len = varint(payload, &mut at)?;
                // RFC 9000 §19.6: offset + length MUST NOT exceed 2^62 - 1.
                if offset.checked_add(len).is_none_or(|e| e > crate::wire::quic::VARINT_MAX) {
                    return Err(FrameError::Malformed);
                }
                let data = skip(payload, &mut at, len)?;
                if out.crypto_count == MAX_CRYPTO_FRAMES {
                    return Err(FrameError::TooMany);
                }
                out.crypto[out.crypto_count] = CryptoFrame { offset, data };
                out.crypto_count += 1;
            }
            0x1c => {
                let _code = varint(payload, &mut at)?;
                let _frame = varint(payload, &mut at)?;
                let reason = varint(payload, &mut at)?;
                skip(payload, &mut at, reason)?;
                out.close = true;
            }
            // RFC 9000 §12.4: every other type (including 0x1d and any multi-byte encoding of a
            // type) is forbidden in an Initial packet.
            other => return Err(FrameError::NotAllowed(other)),
        }
        out.non_padding += 1;
    }
    Ok(())
}

/// Appends a CRYPTO frame (used by builders and tests).
pub fn put_crypto(out: &mut Vec<u8>, offset: u64, data: &[u8]) {
    out.push(0x06);
    put_varint(out, offset);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Appends an ACK frame acknowledging packets `0..=largest`.
pub fn put_ack(out: &mut Vec<u8>, largest: u64) {
    out.push(0x02);
    put_varint(out, largest);
    put_varint(out, 0);
    put_varint(out, 0);
    put_varint(out, largest);
}

/// Appends a varint in its shortest form (values above 2^62 - 1 are clamped).
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    let value = value.min(crate::wire::quic::VARINT_MAX);
    let mut buf = [0u8; 8];
    let end = crate::wire::quic::write_varint(&mut buf, 0, value).unwrap_or(0);
    out.extend_from_slice(&buf[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn allowed_frames_walk() {
        let mut p = vec![0x01];
        put_ack(&mut p, 3);
        p.extend_from_slice(&[0x03, 5, 0, 1, 0, 0, 0, 1, 2, 3]); // ACK_ECN with one extra range
        put_crypto(&mut p, 100, b"world");
        put_crypto(&mut p, 0, b"hello");
        p.extend_from_slice(&[0x1c, 0x0a, 0x00, 0x02, b'n', b'o']);
        p.extend_from_slice(&[0; 40]);
        let mut f = Frames::default();
        walk(&p, &mut f).unwrap();
        assert!(f.ack && f.close);
        assert_eq!(f.crypto().len(), 2);
        assert_eq!(f.crypto()[0].offset, 100);
        assert_eq!(&p[f.crypto()[1].data.clone()], b"hello");
        assert_eq!(f.non_padding, 6);
    }

    #[test]
    fn forbidden_frames_are_named() {
        // STREAM, NEW_TOKEN, HANDSHAKE_DONE, application CONNECTION_CLOSE, MAX_DATA, a
        // two-byte encoding of PING.
        for t in [0x08u8, 0x07, 0x1e, 0x1d, 0x10, 0x40] {
            let mut f = Frames::default();
            assert_eq!(walk(&[0x00, t, 0, 0, 0, 0], &mut f), Err(FrameError::NotAllowed(t)));
        }
    }

    #[test]
    fn truncated_and_empty_payloads_are_malformed() {
        let mut p = Vec::new();
        put_crypto(&mut p, 0, b"hello");
        let mut f = Frames::default();
        assert_eq!(walk(&p[..p.len() - 1], &mut f), Err(FrameError::Malformed));
        assert_eq!(walk(&[0x02, 0x01], &mut f), Err(FrameError::Malformed));
        assert_eq!(walk(&[], &mut f), Err(FrameError::Empty));
        let mut many = Vec::new();
        for i in 0..=MAX_CRYPTO_FRAMES as u64 {
            put_crypto(&mut many, i, b"x");
        }
        assert_eq!(walk(&many, &mut f), Err(FrameError::TooMany));
        // A CRYPTO frame whose end passes 2^62 - 1.
        let mut huge = vec![0x06];
        put_varint(&mut huge, crate::wire::quic::VARINT_MAX);
        put_varint(&mut huge, 1);
        huge.push(0);
        assert_eq!(walk(&huge, &mut f), Err(FrameError::Malformed));
    }

    #[test]
    fn zero_runs() {
        for len in 0..40 {
            for stop in 0..=len {
                let mut v = vec![0u8; len];
                if stop < len {
                    v[stop] = 7;
                }
                assert_eq!(zero_run(&v), stop, "len {len} stop {stop}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut f = Frames::default();
            if walk(&bytes, &mut f).is_ok() {
                for c in f.crypto() {
                    prop_assert!(c.data.end <= bytes.len());
                }
            }
        }
    }
}
