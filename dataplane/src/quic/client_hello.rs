//! The TLS ClientHello carried in a client's Initial CRYPTO frames: bounded reassembly, parsing
//! (RFC 8446 §4.1.2) and a JA4-style fingerprint.
//!
//! `Assembly` holds up to a fixed number of bytes of the Initial-level crypto stream, accepts
//! CRYPTO data at any offset and in any order, and says when the ClientHello (handshake type 1,
//! 24-bit length) is whole. `parse` reads a whole ClientHello into a fixed-size `HelloInfo`:
//! server name (lower-cased), first ALPN protocol, highest offered TLS version and a JA4-style
//! fingerprint `q13d0312h3_<12 hex>_<12 hex>` (FoxIO's JA4 layout: protocol, version, SNI
//! present, cipher and extension counts, ALPN ends; then truncated SHA-256 of the sorted cipher
//! suites, and of the sorted extensions without SNI/ALPN followed by the signature algorithms in
//! order; GREASE values ignored throughout). No allocation after construction.

use sha2::{Digest, Sha256};

/// Longest server name kept (a DNS name is at most 253 bytes).
pub const MAX_SNI: usize = 255;
/// Longest ALPN protocol kept.
pub const MAX_ALPN: usize = 32;
/// Length of the fingerprint text.
pub const JA4_LEN: usize = 36;
const MAX_CIPHERS: usize = 128;
const MAX_EXTENSIONS: usize = 64;
const MAX_SIGALGS: usize = 64;

/// TLS handshake type of a ClientHello.
pub const CLIENT_HELLO: u8 = 1;
/// TLS extension: server_name.
pub const EXT_SERVER_NAME: u16 = 0x0000;
/// TLS extension: signature_algorithms.
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
/// TLS extension: application_layer_protocol_negotiation.
pub const EXT_ALPN: u16 = 0x0010;
/// TLS extension: supported_versions.
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
/// TLS extension: quic_transport_parameters (RFC 9001 §8.2).
pub const EXT_QUIC_TRANSPORT_PARAMETERS: u16 = 0x0039;

/// Reassembly of the start of the crypto stream. See the module docs.
#[derive(Debug)]
pub struct Assembly {
    buf: Box<[u8]>,
    filled: Box<[u64]>,
    touched: usize,
}

/// What the reassembled bytes amount to so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not yet the whole ClientHello.
    Incomplete,
    /// The whole ClientHello is there (`Assembly::message`).
    Complete,
    /// The stream does not start with a ClientHello.
    NotClientHello,
    /// The ClientHello is longer than the assembly holds.
    TooLarge,
}

impl Assembly {
    /// An assembly holding up to `max_len` bytes.
    pub fn new(max_len: usize) -> Assembly {
        let max_len = max_len.max(64);
        Assembly { buf: vec![0; max_len].into_boxed_slice(), filled: vec![0; max_len.div_ceil(64)].into(), touched: 0 }
    }

    /// Forgets everything received.
    pub fn reset(&mut self) {
        self.filled[..self.touched].fill(0);
        self.touched = 0;
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Adds CRYPTO data at `offset`. Returns false (adding nothing) when it ends past capacity.
    pub fn add(&mut self, offset: u64, data: &[u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        let Some(end) = start.checked_add(data.len()).filter(|&e| e <= self.buf.len()) else {
            return false;
        };
        if start == end {
            return true;
        }
        self.buf[start..end].copy_from_slice(data);
        let (first_word, last_word) = (start / 64, (end - 1) / 64);
        for w in first_word..=last_word {
            let lo = if w == first_word { start % 64 } else { 0 };
            let hi = if w == last_word { (end - 1) % 64 + 1 } else { 64 };
            let bits = if hi - lo == 64 { u64::MAX } else { ((1u64 << (hi - lo)) - 1) << lo };
            self.filled[w] |= bits;
        }
        self.touched = self.touched.max(last_word + 1);
        true
    }

    /// Bytes received contiguously from offset 0.
    pub fn prefix_len(&self) -> usize {
        let mut n = 0;
        for &w in &self.filled[..self.touched] {
            if w == u64::MAX {
                n += 64;
            } else {
                return n + w.trailing_ones() as usize;
            }
        }
        n
    }

    /// The whole ClientHello message (handshake header included), once complete.
    pub fn message(&self) -> Option<&[u8]> {
        let total = self.total()?;
        (self.prefix_len() >= total).then(|| &self.buf[..total])
    }

    fn total(&self) -> Option<usize> {
        if self.prefix_len() < 4 || self.buf[0] != CLIENT_HELLO {
            return None;
        }
        let total = 4 + (usize::from(self.buf[1]) << 16 | usize::from(self.buf[2]) << 8 | usize::from(self.buf[3]));
        (total <= self.buf.len()).then_some(total)
    }

    /// How far the ClientHello is. See `Status`.
    pub fn status(&self) -> Status {
        let have = self.prefix_len();
        if have >= 1 && self.buf[0] != CLIENT_HELLO {
            return Status::NotClientHello;
        }
        if have < 4 {
            return Status::Incomplete;
        }
        let total = 4 + (usize::from(self.buf[1]) << 16 | usize::from(self.buf[2]) << 8 | usize::from(self.buf[3]));
        if total > self.buf.len() {
            return Status::TooLarge;
        }
        if have >= total { Status::Complete } else { Status::Incomplete }
    }
}

/// What the fingerprinting learned from one ClientHello.
///
/// The small fields lead and the server name, up to 255 bytes, comes last, so that a copy of what
/// is in use (`copy_from`) writes the first one or two cache lines of the six the struct spans.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct HelloInfo {
    /// Highest TLS version offered (supported_versions, else legacy_version).
    pub tls_version: u16,
    sni_len: u8,
    alpn_len: u8,
    /// quic_transport_parameters present.
    pub has_transport_parameters: bool,
    /// JA4-style fingerprint text (ASCII); `ja4[0]` is 0 when fingerprinting was off, and the
    /// rest is then meaningless.
    pub ja4: [u8; JA4_LEN],
    alpn: [u8; MAX_ALPN],
    sni: [u8; MAX_SNI],
}

impl Default for HelloInfo {
    fn default() -> Self {
        HelloInfo {
            tls_version: 0,
            sni_len: 0,
            alpn_len: 0,
            has_transport_parameters: false,
            ja4: [0; JA4_LEN],
            alpn: [0; MAX_ALPN],
            sni: [0; MAX_SNI],
        }
    }
}

/// Equal when what they hold is equal: bytes past a length, or a fingerprint marked absent, do
/// not count.
impl PartialEq for HelloInfo {
    fn eq(&self, other: &Self) -> bool {
        self.tls_version == other.tls_version
            && self.has_transport_parameters == other.has_transport_parameters
            && self.sni() == other.sni()
            && self.alpn() == other.alpn()
            && self.ja4_str().as_bytes() == other.ja4_str().as_bytes()
            && (self.ja4[0] == 0) == (other.ja4[0] == 0)
    }
}

impl Eq for HelloInfo {}

impl core::fmt::Debug for HelloInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HelloInfo")
            .field("sni", &String::from_utf8_lossy(self.sni()))
            .field("alpn", &String::from_utf8_lossy(self.alpn()))
            .field("ja4", &self.ja4_str())
            .field("tls_version", &self.tls_version)
            .finish()
    }
}

impl HelloInfo {
    /// Server name, lower-cased (empty when absent).
    pub fn sni(&self) -> &[u8] {
        &self.sni[..usize::from(self.sni_len)]
    }

    /// First ALPN protocol (empty when absent).
    pub fn alpn(&self) -> &[u8] {
        &self.alpn[..usize::from(self.alpn_len)]
    }

    /// Makes `self` hold what `src` holds, writing only the bytes in use (a summary ring's
    /// slot is written once per admitted flow; most of a full copy would be unused name room).
    #[inline]
    pub fn copy_from(&mut self, src: &HelloInfo) {
        self.tls_version = src.tls_version;
        self.has_transport_parameters = src.has_transport_parameters;
        self.sni_len = src.sni_len;
        self.sni[..usize::from(src.sni_len)].copy_from_slice(src.sni());
        self.alpn_len = src.alpn_len;
        self.alpn[..usize::from(src.alpn_len)].copy_from_slice(src.alpn());
        if src.ja4[0] == 0 {
            self.ja4[0] = 0;
        } else {
            self.ja4 = src.ja4;
        }
    }

    /// The fingerprint as text ("" when it was not computed).
    pub fn ja4_str(&self) -> &str {
        if self.ja4[0] == 0 { "" } else { core::str::from_utf8(&self.ja4).unwrap_or("") }
    }
}

/// Why a ClientHello was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// A length field runs past the message or a vector is malformed.
    Malformed,
    /// No quic_transport_parameters extension (RFC 9001 §8.2 makes it mandatory).
    NoTransportParameters,
}

/// True for a GREASE value (RFC 8701: 0x?a?a with equal bytes).
#[inline]
pub const fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, HelloError> {
        let v = *self.buf.get(self.at).ok_or(HelloError::Malformed)?;
        self.at += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(HelloError::Malformed)?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8()?);
        self.bytes(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16()?);
        self.bytes(n)
    }
}

fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// Parses a whole ClientHello `msg` (handshake header included) into `out`; computes the
/// fingerprint when `fingerprint` is set.
pub fn parse(msg: &[u8], fingerprint: bool, out: &mut HelloInfo) -> Result<(), HelloError> {
    out.sni_len = 0;
    out.alpn_len = 0;
    out.ja4[0] = 0;
    out.tls_version = 0;
    out.has_transport_parameters = false;
    let mut r = Reader { buf: msg, at: 0 };
    if r.u8()? != CLIENT_HELLO {
        return Err(HelloError::Malformed);
    }
    let len = usize::from(r.u8()?) << 16 | usize::from(r.u16()?);
    if 4 + len != msg.len() {
        return Err(HelloError::Malformed);
    }
    let legacy_version = r.u16()?;
    r.bytes(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed);
    }
    let ciphers = r.vec16()?;
    if ciphers.len() % 2 != 0 || ciphers.is_empty() {
        return Err(HelloError::Malformed);
    }
    let compression = r.vec8()?;
    if compression.is_empty() {
        return Err(HelloError::Malformed);
    }
    let extensions = if r.at == msg.len() { &[][..] } else { r.vec16()? };
    if r.at != msg.len() {
        return Err(HelloError::Malformed);
    }

    let mut ext_types = [0u16; MAX_EXTENSIONS];
    let mut ext_count = 0usize;
    let mut ext_total = 0usize;
    let mut sigalgs: &[u8] = &[];
    let mut sni_present = false;
    let mut highest = legacy_version;
    let mut er = Reader { buf: extensions, at: 0 };
    while er.at < extensions.len() {
        let t = er.u16()?;
        let data = er.vec16()?;
        if is_grease(t) {
            continue;
        }
        ext_total += 1;
        if ext_count < MAX_EXTENSIONS {
            ext_types[ext_count] = t;
            ext_count += 1;
        }
        let mut d = Reader { buf: data, at: 0 };
        match t {
            EXT_SERVER_NAME => {
                sni_present = true;
                let list = d.vec16()?;
                let mut l = Reader { buf: list, at: 0 };
                if l.u8()? == 0 {
                    let name = l.vec16()?;
                    let n = name.len().min(MAX_SNI);
                    for (o, &b) in out.sni.iter_mut().zip(&name[..n]) {
                        *o = b.to_ascii_lowercase();
                    }
                    out.sni_len = n as u8;
                }
            }
            EXT_ALPN => {
                let list = d.vec16()?;
                let mut l = Reader { buf: list, at: 0 };
                let first = l.vec8()?;
                let n = first.len().min(MAX_ALPN);
                out.alpn[..n].copy_from_slice(&first[..n]);
                out.alpn_len = n as u8;
            }
            EXT_SUPPORTED_VERSIONS => {
                let list = d.vec8()?;
                if let Some(v) = u16s(list).filter(|&v| !is_grease(v)).max() {
                    highest = v;
                }
            }
            EXT_SIGNATURE_ALGORITHMS => sigalgs = d.vec16()?,
            EXT_QUIC_TRANSPORT_PARAMETERS => out.has_transport_parameters = true,
            _ => {}
        }
    }
    out.tls_version = highest;
    // RFC 9001 §8.2: a ClientHello without quic_transport_parameters MUST be refused.
    if !out.has_transport_parameters {
        return Err(HelloError::NoTransportParameters);
    }
    if fingerprint {
        ja4(out, ciphers, &mut ext_types[..ext_count], ext_total, sigalgs, sni_present);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex4(v: u16) -> [u8; 4] {
    [
        HEX[usize::from(v >> 12)],
        HEX[usize::from(v >> 8 & 0xf)],
        HEX[usize::from(v >> 4 & 0xf)],
        HEX[usize::from(v & 0xf)],
    ]
}

/// Room for the text a JA4 hash covers: two lists of at most 128 and 64 values, 5 bytes each.
const LIST_TEXT: usize = 5 * (MAX_CIPHERS + MAX_EXTENSIONS + MAX_SIGALGS) + 1;

/// SHA-256 of the comma-joined 4-hex-digit values (then `_` and the second list, when given
/// and not empty), truncated to 12 hex characters; zeros for an empty first list (JA4
/// convention). The text is laid out on the stack and hashed in one call.
fn hash_list(first: &[u16], second: Option<&[u16]>, out: &mut [u8]) {
    if first.is_empty() {
        out[..12].fill(b'0');
        return;
    }
    let mut text = [0u8; LIST_TEXT];
    let mut n = 0;
    let mut push = |sep: u8, v: u16, text: &mut [u8; LIST_TEXT]| {
        if n > 0 {
            text[n] = sep;
            n += 1;
        }
        text[n..n + 4].copy_from_slice(&hex4(v));
        n += 4;
    };
    for &v in first {
        push(b',', v, &mut text);
    }
    for (i, &v) in second.unwrap_or(&[]).iter().enumerate() {
        push(if i == 0 { b'_' } else { b',' }, v, &mut text);
    }
    let digest = Sha256::digest(&text[..n]);
    for (i, b) in digest[..6].iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99);
    [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]
}

fn ja4(out: &mut HelloInfo, ciphers: &[u8], exts: &mut [u16], ext_total: usize, sigalgs: &[u8], sni: bool) {
    let mut cs = [0u16; MAX_CIPHERS];
    let mut n_cs = 0usize;
    let mut cs_total = 0usize;
    for c in u16s(ciphers).filter(|&c| !is_grease(c)) {
        cs_total += 1;
        if n_cs < MAX_CIPHERS {
            cs[n_cs] = c;
            n_cs += 1;
        }
    }
    let cs = &mut cs[..n_cs];
    cs.sort_unstable();
    let mut sa = [0u16; MAX_SIGALGS];
    let mut n_sa = 0usize;
    for s in u16s(sigalgs).filter(|&s| !is_grease(s)).take(MAX_SIGALGS) {
        sa[n_sa] = s;
        n_sa += 1;
    }
    let j = &mut out.ja4;
    j[0] = b'q';
    let version: &[u8; 2] = match out.tls_version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        _ => b"00",
    };
    j[1..3].copy_from_slice(version);
    j[3] = if sni { b'd' } else { b'i' };
    j[4..6].copy_from_slice(&two_digits(cs_total));
    j[6..8].copy_from_slice(&two_digits(ext_total));
    let alpn = &out.alpn[..usize::from(out.alpn_len)];
    let ends = match (alpn.first(), alpn.last()) {
        (Some(&f), Some(&l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() => [f, l],
        (Some(&f), Some(&l)) => [HEX[usize::from(f >> 4)], HEX[usize::from(l & 0xf)]],
        _ => *b"00",
    };
    j[8..10].copy_from_slice(&ends);
    j[10] = b'_';
    hash_list(cs, None, &mut j[11..23]);
    j[23] = b'_';
    let mut n_ext = 0;
    for i in 0..exts.len() {
        if exts[i] != EXT_SERVER_NAME && exts[i] != EXT_ALPN {
            exts[n_ext] = exts[i];
            n_ext += 1;
        }
    }
    let exts = &mut exts[..n_ext];
    exts.sort_unstable();
    hash_list(exts, Some(&sa[..n_sa]), &mut j[24..36]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::quic::keys::tests::unhex;
    use proptest::prelude::*;

    /// The ClientHello of RFC 9001 Appendix A.2 (the CRYPTO frame's data).
    pub(crate) fn rfc_client_hello() -> Vec<u8> {
        let frame = unhex(include_str!("testdata/client_crypto_frame.hex"));
        // 06 | offset 00 | length 40f1 | data
        frame[4..].to_vec()
    }

    #[test]
    fn parses_the_rfc9001_client_hello() {
        let msg = rfc_client_hello();
        assert_eq!(msg.len(), 0xf1);
        let mut info = HelloInfo::default();
        parse(&msg, true, &mut info).unwrap();
        assert_eq!(info.sni(), b"example.com");
        assert_eq!(info.alpn(), b"alpn");
        assert_eq!(info.tls_version, 0x0304);
        let ja4 = info.ja4_str();
        assert_eq!(ja4.len(), JA4_LEN);
        // 2 cipher suites; 11 extensions (server_name, renegotiation_info, supported_groups,
        // ALPN, status_request, key_share, supported_versions, signature_algorithms,
        // psk_key_exchange_modes, record_size_limit, quic_transport_parameters); ALPN "alpn".
        assert_eq!(&ja4[..10], "q13d0211an");
        assert_eq!(&ja4[8..10], "an");
        assert_eq!(ja4.as_bytes()[10], b'_');
        assert_eq!(ja4.as_bytes()[23], b'_');
        // The cipher hash is SHA-256("1301,1302") truncated.
        let digest = Sha256::digest(b"1301,1302");
        let expect: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&ja4[11..23], expect);
    }

    #[test]
    fn copy_from_writes_what_is_in_use() {
        let mut full = HelloInfo::default();
        parse(&rfc_client_hello(), true, &mut full).unwrap();
        let mut bare = HelloInfo::default();
        parse(&rfc_client_hello(), false, &mut bare).unwrap();
        bare.sni_len = 3;
        bare.alpn_len = 0;
        bare.has_transport_parameters = false;
        // A slot that held a longer name, an ALPN and a fingerprint now holds the shorter one.
        let mut slot = full;
        slot.copy_from(&bare);
        assert_eq!(slot, bare);
        assert_ne!(slot, full);
        assert_eq!(slot.sni(), b"exa");
        assert_eq!(slot.alpn(), b"");
        assert_eq!(slot.ja4_str(), "");
        assert!(!slot.has_transport_parameters);
        slot.copy_from(&full);
        assert_eq!(slot, full);
        assert_eq!(slot.sni(), b"example.com");
        assert_eq!(slot.ja4_str(), full.ja4_str());
    }

    #[test]
    fn reassembles_shuffled_pieces() {
        let msg = rfc_client_hello();
        let mut a = Assembly::new(4096);
        let cuts = [0, 7, 64, 65, 130, 200, msg.len()];
        let mut pieces: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        pieces.reverse();
        pieces.swap(1, 4);
        for (i, &(s, e)) in pieces.iter().enumerate() {
            assert!(a.add(s as u64, &msg[s..e]));
            if i + 1 < pieces.len() {
                assert_eq!(a.status(), Status::Incomplete, "after piece {i}");
            }
        }
        assert_eq!(a.status(), Status::Complete);
        assert_eq!(a.message(), Some(&msg[..]));
        a.reset();
        assert_eq!(a.prefix_len(), 0);
        assert!(!a.add(4090, &[0; 7]), "past capacity");
        assert!(a.add(0, &[2, 0, 0, 1]));
        assert_eq!(a.status(), Status::NotClientHello);
        a.reset();
        assert!(a.add(0, &[1, 0, 0x20, 0]));
        assert_eq!(a.status(), Status::TooLarge);
    }

    #[test]
    fn refuses_a_hello_without_transport_parameters_and_truncations() {
        let msg = rfc_client_hello();
        let mut info = HelloInfo::default();
        for cut in 1..msg.len() {
            assert!(parse(&msg[..cut], true, &mut info).is_err(), "cut at {cut}");
        }
        // Rename the quic_transport_parameters extension (0x0039) to 0x0038. It is the last
        // extension of the published ClientHello: its type sits 0x32 + 4 bytes from the end.
        let mut renamed = msg.clone();
        let at = msg.len() - 0x32 - 4;
        assert_eq!(&renamed[at..at + 2], &[0x00, 0x39]);
        renamed[at + 1] = 0x38;
        assert_eq!(parse(&renamed, true, &mut info), Err(HelloError::NoTransportParameters));
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa));
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut info = HelloInfo::default();
            let _ = parse(&bytes, true, &mut info);
            let mut a = Assembly::new(256);
            let _ = a.add(u64::from(bytes.first().copied().unwrap_or(0)), &bytes);
            let _ = a.status();
        }
    }
}
