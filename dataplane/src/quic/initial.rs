//! Client Initial packets: structure, opening (header protection, packet number, AEAD) and the
//! inverse, sealing, for the builders in `gen`.
//!
//! `parse_header` reads one Initial at the start of a buffer with `wire::quic` and reports the
//! first structural rule it breaks. `open` copies the packet into a caller-owned scratch buffer
//! and removes header protection (RFC 9001 §5.4.3: one AES-128 block of the sample, with the
//! `aes` crate's block cipher), recovers the packet number (RFC 9000 §A.3) and authenticates the payload with
//! AEAD_AES_128_GCM (RFC 9001 §5.3, `ring`'s AEAD) over the whole packet; the plaintext is left
//! in the scratch buffer. Nothing is allocated; the frame itself is never written.

use super::keys::{InitialKeys, LongType, Version};
use crate::wire::quic::{FIXED_BIT, FieldError, MAX_CID_LEN, Packet};
use aes::Aes128Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use core::ops::Range;
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// AEAD tag length of AEAD_AES_128_GCM.
pub const TAG_LEN: usize = 16;
/// Header-protection sample length (RFC 9001 §5.4.2).
pub const SAMPLE_LEN: usize = 16;
/// The sample starts this many bytes after the Packet Number field's offset (RFC 9001 §5.4.2).
pub const SAMPLE_OFFSET: usize = 4;
/// Smallest DCID of a client's first Initial (RFC 9000 §7.2).
pub const MIN_FIRST_DCID_LEN: usize = 8;

/// The parsed header of one Initial packet; offsets from the start of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialHeader {
    /// Version.
    pub version: Version,
    /// Destination Connection ID.
    pub dcid: Range<usize>,
    /// Source Connection ID.
    pub scid: Range<usize>,
    /// Token.
    pub token: Range<usize>,
    /// Offset of the protected Packet Number field.
    pub pn_offset: usize,
    /// One past the last byte of the packet.
    pub end: usize,
}

/// Structural faults of an Initial header, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Connection IDs run past the datagram.
    Truncated,
    /// A connection ID longer than 20 bytes.
    CidTooLong,
    /// Token Length or Length inconsistent with the datagram, or too short to sample.
    BadLength,
    /// Fixed Bit clear without a token (RFC 9287 §3.1 allows it only with one).
    FixedBitClear,
}

/// Reads the Initial header at the start of `buf`, whose version is `version`, and holds it to
/// the QUIC-bit rule of a connection's first Initial ([`first_initial_bit_ok`]).
pub fn parse_header(buf: &[u8], version: Version) -> Result<InitialHeader, HeaderError> {
    let h = parse_header_any_bit(buf, version)?;
    if !first_initial_bit_ok(buf[0], &h) {
        return Err(HeaderError::FixedBitClear);
    }
    Ok(h)
}

/// RFC 9287 §3.1: a client clears the QUIC bit of the Initial that opens a connection only when
/// it carries a token. Later Initials of the connection may clear it once the client has the
/// server's transport parameters (the client's Initial acknowledging the server's, coalesced
/// with its Handshake Finished, often does), so this holds for a flow's first Initial only.
#[inline]
pub fn first_initial_bit_ok(first: u8, h: &InitialHeader) -> bool {
    fixed_bit(first) || !h.token.is_empty()
}

/// [`parse_header`] without the QUIC-bit rule, for Initials of a known flow.
pub fn parse_header_any_bit(buf: &[u8], version: Version) -> Result<InitialHeader, HeaderError> {
    if buf.get(5).is_some_and(|&len| usize::from(len) > MAX_CID_LEN) {
        return Err(HeaderError::CidTooLong);
    }
    let p = Packet::new_checked(buf).map_err(|_| HeaderError::Truncated)?;
    // RFC 9000 §17.2: connection IDs MUST NOT exceed 20 bytes in version 1 (RFC 9369: same in v2).
    if p.dcid_len() > MAX_CID_LEN || p.scid_len() > MAX_CID_LEN {
        return Err(HeaderError::CidTooLong);
    }
    let f = p.initial_fields().map_err(|e| match e {
        FieldError::Truncated | FieldError::LengthBeyond => HeaderError::BadLength,
    })?;
    // The header-protection sample must lie inside the packet (RFC 9001 §5.4.2), and the payload
    // must hold at least a tag.
    if f.length < SAMPLE_OFFSET + SAMPLE_LEN || f.length < 1 + TAG_LEN {
        return Err(HeaderError::BadLength);
    }
    let dcid_at = 6;
    let scid_at = dcid_at + p.dcid_len() + 1;
    Ok(InitialHeader {
        version,
        dcid: dcid_at..dcid_at + p.dcid_len(),
        scid: scid_at..scid_at + p.scid_len(),
        token: f.token_offset..f.token_offset + f.token_len,
        pn_offset: f.pn_offset,
        end: f.end,
    })
}

/// True when the first byte announces an Initial of `version`.
#[inline]
pub fn is_initial(first: u8, version: Version) -> bool {
    version.long_type((first >> 4) & 3) == LongType::Initial
}

/// Where `open` left the plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Recovered packet number.
    pub pn: u64,
    /// The unprotected first byte.
    pub first: u8,
    /// Length of the unprotected header (the payload starts here in the scratch buffer).
    pub header_len: usize,
    /// Plaintext payload length (without the tag).
    pub payload_len: usize,
}

impl Opened {
    /// The plaintext payload inside the scratch buffer `open` wrote.
    #[inline]
    pub fn payload<'s>(&self, scratch: &'s [u8]) -> &'s [u8] {
        &scratch[self.header_len..self.header_len + self.payload_len]
    }
}

/// Why `open` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The packet does not fit the scratch buffer or is too short to sample.
    TooLong,
    /// The AEAD tag does not verify.
    Auth,
    /// Reserved bits non-zero after removing protection (RFC 9000 §17.2).
    ReservedBits,
}

/// RFC 9000 §A.3: the full packet number from its truncated form and the largest one seen.
pub fn decode_packet_number(largest: Option<u64>, truncated: u64, bits: u32) -> u64 {
    let expected = largest.map_or(0, |l| l.wrapping_add(1));
    let win = 1u64 << bits;
    let hwin = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | truncated;
    if candidate.wrapping_add(hwin) <= expected && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected.wrapping_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// The header-protection mask for `sample` (RFC 9001 §5.4.3): `AES-ECB(hp_key, sample)`.
///
/// `ring`'s QUIC header-protection key does the same, but its key set-up (a general AES key
/// object, copied several times) costs about twice as much as this one block, and a first
/// Initial pays it once per DCID; the tests check both against each other.
#[inline]
fn hp_mask(hp: &[u8; 16], sample: &[u8; SAMPLE_LEN]) -> [u8; SAMPLE_LEN] {
    let mut block = (*sample).into();
    Aes128Enc::new(&(*hp).into()).encrypt_block(&mut block);
    block.into()
}

/// The AEAD nonce: the IV XORed with the packet number (RFC 9001 §5.3).
#[inline]
fn nonce(iv: &[u8; 12], pn: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, p) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
        *b ^= p;
    }
    n
}

/// Opens the Initial `packet` (exactly one packet: `header.end` bytes) with `keys` into `scratch`.
pub fn open(
    keys: &InitialKeys,
    packet: &[u8],
    pn_offset: usize,
    largest_pn: Option<u64>,
    scratch: &mut [u8],
) -> Result<Opened, OpenError> {
    let end = packet.len();
    let sample = packet.get(pn_offset + SAMPLE_OFFSET..).and_then(<[u8]>::first_chunk::<SAMPLE_LEN>);
    let (Some(sample), true) = (sample, end <= scratch.len()) else {
        return Err(OpenError::TooLong);
    };
    // The AEAD key set-up does not depend on the header-protection mask: issued first, the
    // two latency-bound key expansions overlap.
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &keys.key).map_err(|_| OpenError::Auth)?);
    let mask = hp_mask(&keys.hp, sample);
    let buf = &mut scratch[..end];
    buf.copy_from_slice(packet);
    // RFC 9001 §5.4.1: long headers protect the low four bits of the first byte.
    let first = buf[0] ^ (mask[0] & 0x0f);
    buf[0] = first;
    let pn_len = usize::from(first & 0x03) + 1;
    let mut truncated = 0u64;
    for (i, m) in mask[1..=pn_len].iter().enumerate() {
        buf[pn_offset + i] ^= m;
        truncated = (truncated << 8) | u64::from(buf[pn_offset + i]);
    }
    let header_len = pn_offset + pn_len;
    if end < header_len + TAG_LEN {
        return Err(OpenError::Auth);
    }
    let pn = decode_packet_number(largest_pn, truncated, 8 * pn_len as u32);
    let (header, body) = buf.split_at_mut(header_len);
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce(&keys.iv, pn)), Aad::from(&*header), body)
        .map_err(|_| OpenError::Auth)?;
    let payload_len = plain.len();
    // RFC 9000 §17.2: reserved bits MUST be zero once both protections are removed.
    if first & 0x0c != 0 {
        return Err(OpenError::ReservedBits);
    }
    Ok(Opened { pn, first, header_len, payload_len })
}

/// Seals a packet: `header` is the unprotected header ending with the `pn_len`-byte packet
/// number (its first byte's low bits say `pn_len - 1`); `payload` the plaintext frames. Appends
/// the protected packet to `out`. Used by the builders; the caller guarantees `payload` is long
/// enough for the header-protection sample (`pn_len + payload.len() >= 4`).
pub fn seal(keys: &InitialKeys, header: &[u8], pn_len: usize, pn: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    let header_len = header.len();
    let pn_offset = header_len - pn_len;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &keys.key).expect("16-byte key"));
    let (head, body) = out[start..].split_at_mut(header_len);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce(&keys.iv, pn)), Aad::from(&*head), body)
        .expect("payload within AEAD limits");
    out.extend_from_slice(tag.as_ref());
    let packet = &mut out[start..];
    let sample_at = pn_offset + SAMPLE_OFFSET;
    let mask = hp_mask(&keys.hp, packet[sample_at..sample_at + SAMPLE_LEN].try_into().expect("16-byte sample"));
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
    }
}

/// True when `first` has the Fixed Bit set.
#[inline]
pub fn fixed_bit(first: u8) -> bool {
    first & FIXED_BIT != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::keys::KeySchedule;
    use crate::quic::keys::tests::unhex;

    pub(crate) fn rfc9001() -> Vec<u8> {
        unhex(include_str!("testdata/rfc9001_client_initial.hex"))
    }
    pub(crate) fn rfc9369() -> Vec<u8> {
        unhex(include_str!("testdata/rfc9369_client_initial.hex"))
    }
    pub(crate) fn published_payload() -> Vec<u8> {
        let mut p = unhex(include_str!("testdata/client_crypto_frame.hex"));
        p.resize(1162, 0);
        p
    }

    fn open_datagram(dgram: &[u8], version: Version) -> Result<(Opened, Vec<u8>), OpenError> {
        let h = parse_header(dgram, version).map_err(|_| OpenError::TooLong)?;
        let keys = KeySchedule::new().client_keys(version, &dgram[h.dcid.clone()]);
        let mut scratch = vec![0u8; 2048];
        let o = open(&keys, &dgram[..h.end], h.pn_offset, None, &mut scratch)?;
        Ok((o, scratch))
    }

    #[test]
    fn rfc9001_client_initial_opens_to_the_published_payload() {
        let d = rfc9001();
        assert_eq!(d.len(), 1200);
        let h = parse_header(&d, Version::V1).unwrap();
        assert_eq!(h.end, 1200);
        assert_eq!(h.pn_offset, 18);
        let (o, scratch) = open_datagram(&d, Version::V1).unwrap();
        assert_eq!(o.pn, 2);
        assert_eq!(o.first, 0xc3);
        assert_eq!(&scratch[..o.header_len], &unhex("c300000001088394c8f03e5157080000449e00000002")[..]);
        assert_eq!(o.payload(&scratch), &published_payload()[..]);
    }

    #[test]
    fn rfc9369_client_initial_opens_to_the_published_payload() {
        let d = rfc9369();
        let (o, scratch) = open_datagram(&d, Version::V2).unwrap();
        assert_eq!(o.pn, 2);
        assert_eq!(&scratch[..o.header_len], &unhex("d36b3343cf088394c8f03e5157080000449e00000002")[..]);
        assert_eq!(o.payload(&scratch), &published_payload()[..]);
        assert!(is_initial(0xd3, Version::V2));
        assert!(!is_initial(0xd3, Version::V1));
    }

    #[test]
    fn sealing_the_published_payload_reproduces_the_published_packets() {
        let ks = KeySchedule::new();
        let dcid = unhex("8394c8f03e515708");
        for (version, header, expected) in [
            (Version::V1, "c300000001088394c8f03e5157080000449e00000002", rfc9001()),
            (Version::V2, "d36b3343cf088394c8f03e5157080000449e00000002", rfc9369()),
        ] {
            let mut out = Vec::new();
            seal(&ks.client_keys(version, &dcid), &unhex(header), 4, 2, &published_payload(), &mut out);
            assert_eq!(out, expected, "{version:?}");
        }
    }

    #[test]
    fn every_single_byte_tamper_fails() {
        let ks = KeySchedule::new();
        for (version, d) in [(Version::V1, rfc9001()), (Version::V2, rfc9369())] {
            let mut scratch = vec![0u8; 2048];
            for i in 0..d.len() {
                for flip in [0x01u8, 0x80] {
                    let mut t = d.clone();
                    t[i] ^= flip;
                    // Re-parse: a tamper in the header may change the structure itself.
                    let Ok(h) = parse_header(&t, version) else {
                        continue;
                    };
                    if !is_initial(t[0], version) {
                        continue;
                    }
                    let keys = ks.client_keys(version, &t[h.dcid.clone()]);
                    let r = open(&keys, &t[..h.end], h.pn_offset, None, &mut scratch);
                    assert!(r.is_err(), "{version:?}: flipping {flip:#x} at byte {i} still opened");
                }
            }
        }
    }

    proptest::proptest! {
        /// The header-protection mask equals `ring`'s QUIC header-protection key's.
        #[test]
        fn hp_mask_matches_ring(hp in proptest::prelude::any::<[u8; 16]>(), sample in proptest::prelude::any::<[u8; 16]>()) {
            use ring::aead::quic::{AES_128, HeaderProtectionKey};
            let theirs = HeaderProtectionKey::new(&AES_128, &hp).unwrap().new_mask(&sample).unwrap();
            proptest::prop_assert_eq!(&hp_mask(&hp, &sample)[..5], &theirs[..]);
        }
    }

    #[test]
    fn packet_number_decoding_follows_rfc9000_a3() {
        // RFC 9000 §A.3 example.
        assert_eq!(decode_packet_number(Some(0xa82f30ea), 0x9b32, 16), 0xa82f9b32);
        assert_eq!(decode_packet_number(None, 2, 32), 2);
        assert_eq!(decode_packet_number(Some(254), 1, 8), 257);
    }

    #[test]
    fn structural_faults_are_named() {
        let d = rfc9001();
        let mut long_dcid = d.clone();
        long_dcid[5] = 21;
        assert_eq!(parse_header(&long_dcid, Version::V1), Err(HeaderError::CidTooLong));
        let mut bad_len = d.clone();
        // Length field 0x449e → 0x449f: one byte more than the datagram holds.
        bad_len[17] = 0x9f;
        assert_eq!(parse_header(&bad_len, Version::V1), Err(HeaderError::BadLength));
        let mut fixed = d.clone();
        fixed[0] &= !FIXED_BIT;
        assert_eq!(parse_header(&fixed, Version::V1), Err(HeaderError::FixedBitClear));
        assert_eq!(parse_header(&d[..10], Version::V1), Err(HeaderError::Truncated));
    }
}
