//! Builders of client Initials: valid ones (the encrypt side of `initial`) and the attack kinds
//! the traffic generator's `quic-initial` profile sends. Pure functions of their arguments (a
//! seed stands in for randomness), used by tests, fuzz seeds, benches and the generator.
//!
//! - `client_hello` makes a TLS 1.3 ClientHello with SNI, ALPN, QUIC transport parameters and,
//!   optionally, a large extra key share (as post-quantum hybrids make) so that it spans several
//!   Initials;
//! - `seal_initial` protects one Initial packet around given frames, padding it so the datagram
//!   reaches a size;
//! - `client_initials` splits a ClientHello over as many Initials as asked, one datagram each,
//!   optionally shuffling the CRYPTO frames inside each packet;
//! - `generate` makes one UDP payload of a `Kind`.

use super::frames::{put_crypto, put_varint};
use super::initial;
use super::keys::{KeySchedule, LongType, Version};

/// A small deterministic generator (SplitMix64) so builders stay pure functions of a seed.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A value in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo { lo } else { lo + (self.next_u64() % (hi - lo) as u64) as usize }
    }
}

/// What goes into a built ClientHello.
#[derive(Clone, Debug)]
pub struct HelloSpec<'a> {
    /// Server name (none: no server_name extension).
    pub sni: Option<&'a str>,
    /// ALPN protocols.
    pub alpn: &'a [&'a str],
    /// Bytes of an extra key share (X25519MLKEM768 is 1216); 0 for none.
    pub extra_key_share: usize,
    /// Add GREASE cipher suite and extension values (RFC 8701).
    pub grease: bool,
    /// Include quic_transport_parameters (a valid QUIC ClientHello does).
    pub transport_parameters: bool,
    /// Seed of the random field and key shares.
    pub seed: u64,
}

impl Default for HelloSpec<'_> {
    fn default() -> Self {
        HelloSpec {
            sni: Some("example.com"),
            alpn: &["h3"],
            extra_key_share: 0,
            grease: false,
            transport_parameters: true,
            seed: 1,
        }
    }
}

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A TLS 1.3 ClientHello handshake message (header included). See `HelloSpec`.
pub fn client_hello(spec: &HelloSpec<'_>) -> Vec<u8> {
    let mut rng = SplitMix(spec.seed);
    let mut body = vec![0x03, 0x03];
    let mut random = [0u8; 32];
    rng.fill(&mut random);
    body.extend_from_slice(&random);
    body.push(0); // empty legacy_session_id
    let mut suites: Vec<u8> = Vec::new();
    if spec.grease {
        suites.extend_from_slice(&[0x3a, 0x3a]);
    }
    suites.extend_from_slice(&[0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&vec16(&suites));
    body.extend_from_slice(&[1, 0]); // null compression
    let mut exts = Vec::new();
    if spec.grease {
        ext(&mut exts, 0x8a8a, &[]);
    }
    if let Some(name) = spec.sni {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&vec16(name.as_bytes()));
        ext(&mut exts, 0x0000, &vec16(&entry));
    }
    let mut groups = Vec::new();
    if spec.extra_key_share > 0 {
        groups.extend_from_slice(&[0x11, 0xec]);
    }
    groups.extend_from_slice(&[0x00, 0x1d, 0x00, 0x17]);
    ext(&mut exts, 0x000a, &vec16(&groups));
    if !spec.alpn.is_empty() {
        let mut list = Vec::new();
        for p in spec.alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        ext(&mut exts, 0x0010, &vec16(&list));
    }
    ext(&mut exts, 0x000d, &vec16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x08, 0x06]));
    let mut shares = Vec::new();
    if spec.extra_key_share > 0 {
        let mut key = vec![0u8; spec.extra_key_share];
        rng.fill(&mut key);
        shares.extend_from_slice(&[0x11, 0xec]);
        shares.extend_from_slice(&vec16(&key));
    }
    let mut x25519 = [0u8; 32];
    rng.fill(&mut x25519);
    shares.extend_from_slice(&[0x00, 0x1d]);
    shares.extend_from_slice(&vec16(&x25519));
    ext(&mut exts, 0x0033, &vec16(&shares));
    ext(&mut exts, 0x002b, &[0x02, 0x03, 0x04]);
    ext(&mut exts, 0x002d, &[0x01, 0x01]);
    if spec.transport_parameters {
        // initial_max_data (0x04) = 1 MiB, initial_source_connection_id (0x0f) empty.
        ext(&mut exts, 0x0039, &[0x04, 0x04, 0x80, 0x10, 0x00, 0x00, 0x0f, 0x00]);
    }
    body.extend_from_slice(&vec16(&exts));
    let mut msg = vec![0x01, (body.len() >> 16) as u8, (body.len() >> 8) as u8, body.len() as u8];
    msg.extend_from_slice(&body);
    msg
}

/// Header fields of one built Initial.
#[derive(Clone, Debug)]
pub struct InitialSpec<'a> {
    /// Version.
    pub version: Version,
    /// Destination Connection ID (keys derive from it).
    pub dcid: &'a [u8],
    /// Source Connection ID.
    pub scid: &'a [u8],
    /// Token.
    pub token: &'a [u8],
    /// Packet number.
    pub pn: u32,
    /// Packet number length (1..=4).
    pub pn_len: usize,
    /// Pad so the datagram (what `out` holds after this packet) reaches this many bytes.
    pub min_datagram: usize,
}

impl Default for InitialSpec<'_> {
    fn default() -> Self {
        InitialSpec {
            version: Version::V1,
            dcid: &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08],
            scid: &[],
            token: &[],
            pn: 0,
            pn_len: 4,
            min_datagram: super::MIN_INITIAL_DATAGRAM,
        }
    }
}

/// Appends one protected Initial carrying `frames` (then PADDING) to `out`, keys derived from
/// `spec.dcid` with `schedule`. Keys for the DCID of a flow's first Initial protect all its
/// Initials (RFC 9001 §5.2): pass that DCID in `key_dcid`, or `None` to use `spec.dcid`.
pub fn seal_initial(
    schedule: &KeySchedule,
    spec: &InitialSpec<'_>,
    key_dcid: Option<&[u8]>,
    frames: &[u8],
    out: &mut Vec<u8>,
) {
    let pn_len = spec.pn_len.clamp(1, 4);
    let mut header = Vec::with_capacity(64);
    header.push(0xc0 | spec.version.type_bits(LongType::Initial) << 4 | (pn_len as u8 - 1));
    header.extend_from_slice(&spec.version.wire().to_be_bytes());
    header.push(spec.dcid.len() as u8);
    header.extend_from_slice(spec.dcid);
    header.push(spec.scid.len() as u8);
    header.extend_from_slice(spec.scid);
    put_varint(&mut header, spec.token.len() as u64);
    header.extend_from_slice(spec.token);
    let fixed = header.len() + 2 + pn_len + initial::TAG_LEN;
    let already = out.len();
    let want = spec.min_datagram.saturating_sub(already + fixed);
    // The sample needs 4 bytes of packet number and payload before it (RFC 9001 §5.4.2).
    let payload_len = frames.len().max(want).max(4usize.saturating_sub(pn_len)).min(16_383 - pn_len - 16);
    let length = pn_len + payload_len + initial::TAG_LEN;
    header.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    let pn = u64::from(spec.pn) & ((1u64 << (8 * pn_len)) - 1);
    header.extend_from_slice(&pn.to_be_bytes()[8 - pn_len..]);
    let mut payload = frames.to_vec();
    payload.resize(payload_len, 0);
    let keys = schedule.client_keys(spec.version, key_dcid.unwrap_or(spec.dcid));
    initial::seal(&keys, &header, pn_len, pn, &payload, out);
}

/// CRYPTO frames carrying `data` (the stream bytes at `offset..`) in `pieces` frames; shuffled
/// when `shuffle_seed` is not 0, with a PING and a little PADDING between frames, as clients that
/// shuffle do.
pub fn crypto_frames(data: &[u8], offset: usize, pieces: usize, shuffle_seed: u64) -> Vec<u8> {
    let pieces = pieces.clamp(1, data.len().max(1));
    let step = data.len().div_ceil(pieces).max(1);
    let mut frames: Vec<Vec<u8>> = data
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let mut f = Vec::new();
            put_crypto(&mut f, (offset + i * step) as u64, c);
            f
        })
        .collect();
    if shuffle_seed != 0 {
        let mut rng = SplitMix(shuffle_seed);
        for i in (1..frames.len()).rev() {
            let j = rng.range(0, i + 1);
            frames.swap(i, j);
        }
    }
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if shuffle_seed != 0 && i > 0 {
            out.extend_from_slice(&[0x01, 0x00, 0x00]);
        }
        out.extend_from_slice(f);
    }
    out
}

/// The datagrams of a client's first flight: `hello` split over `packets` Initials (packet
/// numbers 0, 1, ...), each padded to 1200 bytes, CRYPTO frames shuffled per packet when
/// `shuffle_seed` is not 0.
pub fn client_initials(
    schedule: &KeySchedule,
    spec: &InitialSpec<'_>,
    hello: &[u8],
    packets: usize,
    shuffle_seed: u64,
) -> Vec<Vec<u8>> {
    let packets = packets.max(1);
    let step = hello.len().div_ceil(packets).max(1);
    hello
        .chunks(step)
        .enumerate()
        .map(|(i, chunk)| {
            let seed = if shuffle_seed == 0 { 0 } else { shuffle_seed.wrapping_add(i as u64) };
            let frames = crypto_frames(chunk, i * step, if seed == 0 { 1 } else { 4 }, seed);
            let mut out = Vec::new();
            let s = InitialSpec { pn: spec.pn + i as u32, ..spec.clone() };
            seal_initial(schedule, &s, None, &frames, &mut out);
            out
        })
        .collect()
}

/// What the `quic-initial` generator profile sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A valid first Initial with a fresh random DCID (what a real client sends).
    Valid,
    /// Garbage behind an Initial-looking first byte and version 1 (dropped as `quic_bad_cid` or
    /// another structural reason).
    Junk,
    /// A valid Initial in a datagram under 1200 bytes (`quic_short_datagram`).
    Short,
    /// A well-formed Initial with a random DCID whose payload was not sealed with that DCID's
    /// keys (`quic_auth_failed`).
    RandomDcid,
    /// The template Initial as is; sent from many sources it is a replay (`quic_replay`).
    Replayed,
    /// Short-header junk (`quic_unadmitted_short` under strict gating).
    ShortHeaderJunk,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] =
        [Kind::Valid, Kind::Junk, Kind::Short, Kind::RandomDcid, Kind::Replayed, Kind::ShortHeaderJunk];

    /// The generator profile's name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Junk => "junk",
            Kind::Short => "short",
            Kind::RandomDcid => "random-dcid",
            Kind::Replayed => "replayed-valid",
            Kind::ShortHeaderJunk => "short-header-junk",
        }
    }
}

/// One UDP payload of `kind`, deterministic in `seed`. `template` is the valid Initial that
/// `Replayed` repeats (a fresh valid one from `seed` when `None`).
pub fn generate(schedule: &KeySchedule, kind: Kind, seed: u64, template: Option<&[u8]>) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut dcid = [0u8; 8];
    rng.fill(&mut dcid);
    let hello = client_hello(&HelloSpec { sni: Some("lab.example"), seed, ..HelloSpec::default() });
    let spec = InitialSpec { dcid: &dcid, ..InitialSpec::default() };
    let mut out = Vec::new();
    match kind {
        Kind::Valid => seal_initial(schedule, &spec, None, &crypto_frames(&hello, 0, 1, 0), &mut out),
        Kind::Replayed => match template {
            Some(t) => out.extend_from_slice(t),
            None => seal_initial(schedule, &spec, None, &crypto_frames(&hello, 0, 1, 0), &mut out),
        },
        Kind::Short => {
            let short = InitialSpec { min_datagram: 0, ..spec };
            seal_initial(schedule, &short, None, &crypto_frames(&hello, 0, 1, 0), &mut out);
        }
        Kind::RandomDcid => {
            let mut other = [0u8; 8];
            rng.fill(&mut other);
            // Sealed with another DCID's keys: well-formed, fails authentication.
            seal_initial(schedule, &spec, Some(&other), &crypto_frames(&hello, 0, 1, 0), &mut out);
        }
        Kind::Junk => {
            out.resize(rng.range(1200, 1400), 0);
            rng.fill(&mut out);
            out[0] = 0xc0 | (out[0] & 0x0f);
            out[1..5].copy_from_slice(&Version::V1.wire().to_be_bytes());
            out[5] = rng.range(21, 256) as u8;
        }
        Kind::ShortHeaderJunk => {
            out.resize(rng.range(24, 1300), 0);
            rng.fill(&mut out);
            out[0] = 0x40 | (out[0] & 0x3f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::client_hello::{self, HelloInfo};

    #[test]
    fn built_hellos_parse() {
        for extra in [0, 1216] {
            let msg = client_hello(&HelloSpec { extra_key_share: extra, grease: true, ..HelloSpec::default() });
            let mut info = HelloInfo::default();
            client_hello::parse(&msg, true, &mut info).unwrap();
            assert_eq!(info.sni(), b"example.com");
            assert_eq!(info.alpn(), b"h3");
            assert_eq!(&info.ja4_str()[..10], "q13d0308h3", "GREASE is not counted");
        }
    }

    #[test]
    fn built_initials_open() {
        let ks = KeySchedule::new();
        let hello = client_hello(&HelloSpec { extra_key_share: 1216, ..HelloSpec::default() });
        for version in [Version::V1, Version::V2] {
            let spec = InitialSpec { version, scid: &[1, 2, 3], token: b"tok", ..InitialSpec::default() };
            let datagrams = client_initials(&ks, &spec, &hello, 2, 7);
            assert_eq!(datagrams.len(), 2);
            for (i, d) in datagrams.iter().enumerate() {
                assert!(d.len() >= 1200);
                let h = initial::parse_header(d, version).unwrap();
                assert_eq!(h.end, d.len());
                let keys = ks.client_keys(version, spec.dcid);
                let mut scratch = vec![0u8; 2048];
                let o = initial::open(&keys, d, h.pn_offset, None, &mut scratch).unwrap();
                assert_eq!(o.pn, i as u64);
            }
        }
    }

    #[test]
    fn generated_kinds_are_deterministic_and_sized() {
        let ks = KeySchedule::new();
        for kind in Kind::ALL {
            let a = generate(&ks, kind, 42, None);
            assert_eq!(a, generate(&ks, kind, 42, None), "{}", kind.name());
            match kind {
                Kind::Short => assert!(a.len() < 1200),
                Kind::ShortHeaderJunk => assert_eq!(a[0] & 0xc0, 0x40),
                _ => assert!(a.len() >= 1200, "{}", kind.name()),
            }
        }
        assert_ne!(generate(&ks, Kind::Valid, 1, None), generate(&ks, Kind::Valid, 2, None));
    }
}
