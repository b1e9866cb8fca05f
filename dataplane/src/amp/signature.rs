//! Payload signatures of reflection responses: pure functions over the first bytes of a UDP
//! payload.
//!
//! Contract: `Signature::matches(payload, datagram_len)` reads only `payload` (what this packet
//! carries; for a first fragment, the start of the datagram) through checked accessors, never
//! panics, loops at most a small fixed number of times, and parses only as deep as it must to
//! tell a reflector's response from anything else sent from the same port. `datagram_len` is the
//! UDP payload length of the whole datagram (from the UDP header), used for length-consistency
//! checks so that a first fragment still matches.
//!
//! Signatures come in two strengths. *Lenient* ones trust the port to name the protocol and
//! check only that the message is a response of it (ports below 1024, which no client uses as an
//! ephemeral port). *Specific* ones recognise the protocol from the bytes alone with a false
//! match rate on random data far below one in a million; only those may be bound to ports at or
//! above 1024 (`Signature::is_specific`), where any client or NAT mapping may sit.

/// Longest byte pattern a `prefix` or `xml` signature holds.
pub const MAX_PATTERN: usize = 32;

/// A byte pattern kept inline so that a `Signature` is `Copy` and allocation-free.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    bytes: [u8; MAX_PATTERN],
    len: u8,
    /// Compare ASCII letters without regard to case.
    pub nocase: bool,
}

impl core::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))?;
        if self.nocase {
            f.write_str("/i")?;
        }
        Ok(())
    }
}

impl Pattern {
    /// A pattern of 1 to `MAX_PATTERN` bytes; `None` when empty or longer.
    pub fn new(bytes: &[u8], nocase: bool) -> Option<Pattern> {
        if bytes.is_empty() || bytes.len() > MAX_PATTERN {
            return None;
        }
        let mut b = [0u8; MAX_PATTERN];
        b[..bytes.len()].copy_from_slice(bytes);
        if nocase {
            b.make_ascii_lowercase();
        }
        Some(Pattern { bytes: b, len: bytes.len() as u8, nocase })
    }

    /// The pattern bytes (lower-cased when `nocase`).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never true (patterns hold at least one byte); for clippy's sake.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `hay` starts with the pattern.
    #[inline]
    pub fn is_prefix_of(&self, hay: &[u8]) -> bool {
        let p = self.as_bytes();
        match hay.get(..p.len()) {
            Some(h) if self.nocase => h.eq_ignore_ascii_case(p),
            Some(h) => h == p,
            None => false,
        }
    }

    /// True when the pattern occurs in `hay`. Scans 8 bytes at a time for the pattern's first
    /// byte (SWAR zero-byte detection) and compares the whole pattern only at those positions,
    /// so a miss costs about one operation per byte.
    #[inline]
    pub fn occurs_in(&self, hay: &[u8]) -> bool {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let Some(last_start) = hay.len().checked_sub(self.len()) else { return false };
        let first = self.bytes[0];
        // Letters are matched with bit 0x20 forced on both sides (ASCII case folding); any false
        // candidate this lets through fails the full comparison below.
        let fold = if self.nocase && first.is_ascii_lowercase() { LO * 0x20 } else { 0 };
        let want = LO * u64::from(first);
        let mut at = 0;
        while at <= last_start {
            let Some(chunk) = hay.get(at..at + 8) else {
                // Fewer than 8 bytes left: byte by byte.
                return (at..=last_start).any(|i| {
                    let b = if fold != 0 { hay[i] | 0x20 } else { hay[i] };
                    b == first && self.is_prefix_of(&hay[i..])
                });
            };
            let word =
                u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
            let x = (word | fold) ^ want;
            let mut hits = x.wrapping_sub(LO) & !x & HI;
            while hits != 0 {
                let i = at + (hits.trailing_zeros() / 8) as usize;
                if i <= last_start && self.is_prefix_of(&hay[i..]) {
                    return true;
                }
                hits &= hits - 1;
            }
            at += 8;
        }
        false
    }
}

/// How a catalogue entry recognises its vector's responses. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signature {
    /// Any payload, even empty (CharGEN, QOTD: the port alone names the service). Lenient.
    Any,
    /// A DNS-format message with QR=1 and opcode QUERY (DNS, NetBIOS name service). Lenient.
    DnsResponse,
    /// A DNS response whose first question asks for one of these types (255 = ANY). Lenient.
    DnsQtype {
        /// Question types that match.
        qtypes: [u16; 4],
        /// How many of `qtypes` are in use (1..=4).
        count: u8,
    },
    /// A DNS response with a plausible header and a well-formed first name (mDNS). Specific.
    DnsStrict,
    /// NTP with one of these modes (bit n = mode n); modes 6 and 7 only as responses. Lenient.
    NtpMode {
        /// Bit mask of matching modes.
        modes: u8,
    },
    /// Memcached UDP frame header, then `VALUE `/`STAT ` (or a continuation datagram). Specific.
    Memcached,
    /// LDAPMessage whose protocolOp is searchResEntry (CLDAP). Lenient.
    CldapResponse,
    /// SNMP GetResponse/Report (v1/v2c) or any SNMPv3 message. Lenient.
    SnmpResponse,
    /// ONC RPC reply (portmapper). Lenient.
    RpcReply,
    /// RIP response, version 1 or 2. Lenient.
    RipResponse,
    /// SLP reply or advertisement, version 1 or 2. Lenient.
    SlpReply,
    /// SQL Server Resolution Protocol response (`SVR_RESP`, `ServerName;...`). Specific.
    SsrpResponse,
    /// STUN success or error response (magic cookie, consistent length). Specific.
    StunResponse,
    /// DTLS handshake record carrying ServerHello, HelloVerifyRequest or Certificate. Specific.
    DtlsHandshake,
    /// OpenVPN server hard reset without tls-auth (the reflectable form). Specific.
    OpenvpnReset,
    /// CoAP 2.xx response carrying link-format (`/.well-known/core` discovery). Specific.
    CoapResponse,
    /// NAT-PMP response (version 0, opcode 128..=130, matching length). Specific.
    NatPmpResponse,
    /// Apple Remote Management Service reply header (`00 01 len 00 31`). Specific.
    ArmsReply,
    /// Printable ASCII text (the first bytes up to `MAX_TEXT_SCAN`, at least 16). Specific.
    Text,
    /// The payload starts with `pattern` at `offset`. Specific when the pattern has ≥ 4 bytes.
    Prefix {
        /// Bytes to find.
        pattern: Pattern,
        /// Where in the payload.
        offset: u16,
    },
    /// An XML document (first non-blank byte `<`) with `needle` in its first `within` bytes.
    /// Specific when the needle has ≥ 6 bytes.
    Xml {
        /// Bytes to find.
        needle: Pattern,
        /// How far to look.
        within: u16,
    },
}

/// How far `Text` looks.
pub const MAX_TEXT_SCAN: usize = 64;
/// Shortest payload `Text` accepts.
pub const MIN_TEXT_LEN: usize = 16;
/// Most bytes an `Xml` signature scans.
pub const MAX_XML_SCAN: u16 = 1024;

#[inline]
fn be16(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
fn be32(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Signature {
    /// The catalogue name of this kind of signature.
    pub const fn kind_name(&self) -> &'static str {
        match self {
            Signature::Any => "any",
            Signature::DnsResponse => "dns-response",
            Signature::DnsQtype { .. } => "dns-qtype",
            Signature::DnsStrict => "dns-strict",
            Signature::NtpMode { .. } => "ntp-mode",
            Signature::Memcached => "memcached",
            Signature::CldapResponse => "cldap-response",
            Signature::SnmpResponse => "snmp-response",
            Signature::RpcReply => "rpc-reply",
            Signature::RipResponse => "rip-response",
            Signature::SlpReply => "slp-reply",
            Signature::SsrpResponse => "ssrp-response",
            Signature::StunResponse => "stun-response",
            Signature::DtlsHandshake => "dtls-handshake",
            Signature::OpenvpnReset => "openvpn-reset",
            Signature::CoapResponse => "coap-response",
            Signature::NatPmpResponse => "nat-pmp-response",
            Signature::ArmsReply => "arms-reply",
            Signature::Text => "text",
            Signature::Prefix { .. } => "prefix",
            Signature::Xml { .. } => "xml",
        }
    }

    /// Every parameter-free kind, by catalogue name (for the config compiler).
    pub fn simple_from_name(name: &str) -> Option<Signature> {
        Some(match name {
            "any" => Signature::Any,
            "dns-response" => Signature::DnsResponse,
            "dns-strict" => Signature::DnsStrict,
            "memcached" => Signature::Memcached,
            "cldap-response" => Signature::CldapResponse,
            "snmp-response" => Signature::SnmpResponse,
            "rpc-reply" => Signature::RpcReply,
            "rip-response" => Signature::RipResponse,
            "slp-reply" => Signature::SlpReply,
            "ssrp-response" => Signature::SsrpResponse,
            "stun-response" => Signature::StunResponse,
            "dtls-handshake" => Signature::DtlsHandshake,
            "openvpn-reset" => Signature::OpenvpnReset,
            "coap-response" => Signature::CoapResponse,
            "nat-pmp-response" => Signature::NatPmpResponse,
            "arms-reply" => Signature::ArmsReply,
            "text" => Signature::Text,
            _ => return None,
        })
    }

    /// True when the signature recognises its protocol from the payload alone, so it may be
    /// bound to a port at or above 1024 (see the module docs).
    pub fn is_specific(&self) -> bool {
        match self {
            Signature::Any
            | Signature::DnsResponse
            | Signature::DnsQtype { .. }
            | Signature::NtpMode { .. }
            | Signature::CldapResponse
            | Signature::SnmpResponse
            | Signature::RpcReply
            | Signature::RipResponse
            | Signature::SlpReply => false,
            Signature::DnsStrict
            | Signature::Memcached
            | Signature::SsrpResponse
            | Signature::StunResponse
            | Signature::DtlsHandshake
            | Signature::OpenvpnReset
            | Signature::CoapResponse
            | Signature::NatPmpResponse
            | Signature::ArmsReply
            | Signature::Text => true,
            Signature::Prefix { pattern, .. } => pattern.len() >= 4,
            Signature::Xml { needle, .. } => needle.len() >= 6,
        }
    }

    /// True when `payload` (the bytes this packet carries of a datagram whose UDP payload is
    /// `datagram_len` bytes) is a response of this kind.
    #[inline]
    pub fn matches(&self, payload: &[u8], datagram_len: usize) -> bool {
        match self {
            Signature::Any => true,
            Signature::DnsResponse => dns_response(payload),
            Signature::DnsQtype { qtypes, count } => dns_qtype(payload, &qtypes[..usize::from(*count).min(4)]),
            Signature::DnsStrict => dns_strict(payload),
            Signature::NtpMode { modes } => ntp_mode(payload, *modes),
            Signature::Memcached => memcached(payload),
            Signature::CldapResponse => cldap_response(payload),
            Signature::SnmpResponse => snmp_response(payload),
            Signature::RpcReply => rpc_reply(payload),
            Signature::RipResponse => rip_response(payload, datagram_len),
            Signature::SlpReply => slp_reply(payload, datagram_len),
            Signature::SsrpResponse => ssrp_response(payload, datagram_len),
            Signature::StunResponse => stun_response(payload, datagram_len),
            Signature::DtlsHandshake => dtls_handshake(payload),
            Signature::OpenvpnReset => openvpn_reset(payload),
            Signature::CoapResponse => coap_response(payload),
            Signature::NatPmpResponse => nat_pmp_response(payload, datagram_len),
            Signature::ArmsReply => arms_reply(payload, datagram_len),
            Signature::Text => text(payload),
            Signature::Prefix { pattern, offset } => {
                payload.get(usize::from(*offset)..).is_some_and(|p| pattern.is_prefix_of(p))
            }
            Signature::Xml { needle, within } => xml(payload, needle, *within),
        }
    }
}

// --- DNS (RFC 1035 §4.1) -------------------------------------------------------------------

const DNS_HEADER: usize = 12;
/// Labels walked in one name before giving up (a name has at most 127 labels, RFC 1035 §2.3.4).
const MAX_LABELS: usize = 128;

/// QR=1 and opcode 0 (QUERY).
#[inline]
fn dns_response(p: &[u8]) -> bool {
    p.len() >= DNS_HEADER && p[2] & 0xf8 == 0x80
}

/// Offset just past the name starting at `at`, or `None` when it runs off the buffer or is
/// malformed. A compression pointer ends the name (RFC 1035 §4.1.4).
fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..MAX_LABELS {
        let len = *p.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                at += 1 + usize::from(len);
                if at > p.len() {
                    return None;
                }
            }
            0xc0 => return p.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
    None
}

fn dns_qtype(p: &[u8], qtypes: &[u16]) -> bool {
    if !dns_response(p) || be16(p, 4).unwrap_or(0) == 0 {
        return false;
    }
    let Some(end) = skip_name(p, DNS_HEADER) else {
        return false;
    };
    be16(p, end).is_some_and(|t| qtypes.contains(&t))
}

fn dns_strict(p: &[u8]) -> bool {
    if p.len() < DNS_HEADER {
        return false;
    }
    // QR=1, opcode 0; Z=0 and RCODE=0 (mDNS answers never carry errors, RFC 6762 §18).
    if p[2] & 0xf8 != 0x80 || p[3] & 0x4f != 0 {
        return false;
    }
    let (qd, an, ns, ar) = (be16(p, 4), be16(p, 6), be16(p, 8), be16(p, 10));
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (qd, an, ns, ar) else {
        return false;
    };
    // RFC 6762 §6: responses carry no question, except legacy unicast replies (§6.7): one.
    if qd > 1 || an == 0 || an > 256 || ns > 256 || ar > 256 {
        return false;
    }
    skip_name(p, DNS_HEADER).is_some_and(|end| end + 4 <= p.len())
}

// --- NTP (RFC 5905 §7.3; mode 6 RFC 9327 §2; mode 7 ntpd's private protocol) ----------------

fn ntp_mode(p: &[u8], modes: u8) -> bool {
    let Some(&b0) = p.first() else { return false };
    let mode = b0 & 0x07;
    let version = (b0 >> 3) & 0x07;
    if modes & (1 << mode) == 0 || !(1..=4).contains(&version) {
        return false;
    }
    match mode {
        // Mode 7 header: R|M|VN|mode; the response bit is the top bit of the first byte.
        7 => b0 & 0x80 != 0 && p.len() >= 8,
        // Mode 6 header: LI|VN|mode, then R|E|M|opcode (RFC 9327 §2).
        6 => p.len() >= 12 && p[1] & 0x80 != 0,
        // Every other mode has the 48-byte RFC 5905 header.
        _ => p.len() >= 48,
    }
}

// --- memcached (protocol.txt, "UDP protocol") ------------------------------------------------

/// Most datagrams one memcached UDP response is split into that we still recognise (a 1 MB
/// item in ~1400-byte datagrams takes ~750).
const MEMCACHED_MAX_DATAGRAMS: u16 = 8192;

fn memcached(p: &[u8]) -> bool {
    let (Some(seq), Some(total), Some(reserved)) = (be16(p, 2), be16(p, 4), be16(p, 6)) else {
        return false;
    };
    if reserved != 0 || total == 0 || seq >= total || total > MEMCACHED_MAX_DATAGRAMS {
        return false;
    }
    if seq == 0 {
        let body = &p[8..];
        body.starts_with(b"VALUE ") || body.starts_with(b"STAT ")
    } else {
        // Continuation datagrams carry the middle of a value: the frame header is all there is.
        true
    }
}

// --- BER (X.690) helpers for LDAP and SNMP ----------------------------------------------------

/// Reads a tag and a definite length at `at`: returns (tag, offset of the contents).
fn ber_header(p: &[u8], at: usize) -> Option<(u8, usize)> {
    let tag = *p.get(at)?;
    let first = *p.get(at + 1)?;
    let header = match first {
        0x00..=0x7f => 2,
        0x81..=0x84 => 2 + usize::from(first & 0x7f),
        _ => return None,
    };
    if at + header > p.len() {
        return None;
    }
    Some((tag, at + header))
}

/// Skips one TLV whose contents length fits in the buffer; returns the offset after it.
fn ber_skip(p: &[u8], at: usize) -> Option<usize> {
    let first = *p.get(at + 1)?;
    let (len, header) = match first {
        0x00..=0x7f => (usize::from(first), 2),
        0x81 => (usize::from(*p.get(at + 2)?), 3),
        0x82 => (usize::from(be16(p, at + 2)?), 4),
        _ => return None,
    };
    let end = at + header + len;
    (end <= p.len()).then_some(end)
}

/// LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp [APPLICATION 4] ... } (RFC 4511 §4.2).
fn cldap_response(p: &[u8]) -> bool {
    let Some((0x30, body)) = ber_header(p, 0) else {
        return false;
    };
    let Some(&0x02) = p.get(body) else {
        return false;
    };
    let Some(&id_len) = p.get(body + 1) else {
        return false;
    };
    if !(1..=4).contains(&id_len) {
        return false;
    }
    // searchResEntry is [APPLICATION 4], constructed: 0x64.
    p.get(body + 2 + usize::from(id_len)) == Some(&0x64)
}

/// Message ::= SEQUENCE { version INTEGER, community OCTET STRING, data PDU } (RFC 1157, 3416).
fn snmp_response(p: &[u8]) -> bool {
    let Some((0x30, body)) = ber_header(p, 0) else {
        return false;
    };
    if p.get(body..body + 2) != Some(&[0x02, 0x01]) {
        return false;
    }
    match p.get(body + 2) {
        // SNMPv3: the PDU may be encrypted; from port 161 any v3 message is an agent's answer.
        Some(3) => true,
        Some(0 | 1) => {
            let community = body + 3;
            if p.get(community) != Some(&0x04) {
                return false;
            }
            let Some(pdu) = ber_skip(p, community) else {
                return false;
            };
            // GetResponse-PDU [2] = 0xa2, Report-PDU [8] = 0xa8.
            matches!(p.get(pdu), Some(0xa2 | 0xa8))
        }
        _ => false,
    }
}

// --- small binary protocols ------------------------------------------------------------------

/// RFC 5531 §9: xid, msg_type (1 = REPLY), reply_stat (0 accepted, 1 denied).
fn rpc_reply(p: &[u8]) -> bool {
    be32(p, 4) == Some(1) && matches!(be32(p, 8), Some(0 | 1))
}

/// RFC 1058 §3.1 / RFC 2453 §4: command 2 (response), version, zero field, 20-byte entries.
fn rip_response(p: &[u8], datagram_len: usize) -> bool {
    p.len() >= 4
        && p[0] == 2
        && matches!(p[1], 1 | 2)
        && p[2] == 0
        && p[3] == 0
        && datagram_len >= 24
        && (datagram_len - 4).is_multiple_of(20)
}

/// RFC 2608 §8 (v2) / RFC 2165 §7 (v1): replies and advertisements with a consistent length.
fn slp_reply(p: &[u8], datagram_len: usize) -> bool {
    const REPLIES: [u8; 5] = [2, 7, 8, 10, 11]; // SrvRply, AttrRply, DAAdvert, SrvTypeRply, SAAdvert
    let (Some(&version), Some(&function)) = (p.first(), p.get(1)) else {
        return false;
    };
    if !REPLIES.contains(&function) {
        return false;
    }
    match version {
        2 => p.get(2..5).is_some_and(|l| {
            let len = usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]);
            len == datagram_len
        }),
        1 => be16(p, 2).is_some_and(|len| usize::from(len) == datagram_len),
        _ => false,
    }
}

/// [MC-SQLR] §2.2.5: SVR_RESP 0x05, RESP_SIZE (little-endian), then `ServerName;...`.
fn ssrp_response(p: &[u8], datagram_len: usize) -> bool {
    let Some(size) = p.get(1..3).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))) else {
        return false;
    };
    p[0] == 0x05 && size + 3 == datagram_len && p.get(3..14) == Some(b"ServerName;".as_slice())
}

/// RFC 8489 §5: two zero bits, class success/error, magic cookie, length = datagram − 20.
fn stun_response(p: &[u8], datagram_len: usize) -> bool {
    const MAGIC: u32 = 0x2112_a442;
    let (Some(t), Some(len), Some(magic)) = (be16(p, 0), be16(p, 2), be32(p, 4)) else {
        return false;
    };
    let class = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
    t & 0xc000 == 0
        && matches!(class, 0b10 | 0b11)
        && magic == MAGIC
        && len % 4 == 0
        && usize::from(len) + 20 == datagram_len
}

/// RFC 6347 §4.1 / RFC 9147: handshake record (22), DTLS version, epoch 0, then a server's
/// flight: ServerHello (2), HelloVerifyRequest (3) or Certificate (11).
fn dtls_handshake(p: &[u8]) -> bool {
    if p.len() < 13 + 12 || p[0] != 22 || p[1] != 0xfe || !matches!(p[2], 0xff | 0xfd | 0xfc) {
        return false;
    }
    be16(p, 3) == Some(0) && be16(p, 11).is_some_and(|l| l >= 12) && matches!(p[13], 2 | 3 | 11)
}

/// OpenVPN `P_CONTROL_HARD_RESET_SERVER_V1/V2` with key id 0 and no tls-auth HMAC: session id,
/// an ack array of one packet id 0, the peer's session id, message packet id 0. With tls-auth
/// or tls-crypt a server does not answer spoofed resets, so this is the reflectable form.
fn openvpn_reset(p: &[u8]) -> bool {
    p.len() >= 26 && matches!(p[0], 0x10 | 0x40) && p[9] == 1 && be32(p, 10) == Some(0) && be32(p, 22) == Some(0)
}

/// An option's extended delta or length (RFC 7252 §3.1): the value and where the next field starts.
fn coap_ext(p: &[u8], nibble: u8, at: usize) -> Option<(usize, usize)> {
    match nibble {
        0..=12 => Some((usize::from(nibble), at)),
        13 => p.get(at).map(|&v| (usize::from(v) + 13, at + 1)),
        14 => be16(p, at).map(|v| (usize::from(v) + 269, at + 2)),
        _ => None,
    }
}

/// RFC 7252 §3: version 1, NON or ACK, token ≤ 8, a 2.01–2.05 response whose options (walked
/// to the payload marker) include Content-Format 40 and whose payload is link format (`<`):
/// the `/.well-known/core` discovery reply (RFC 6690 §4) reflectors are asked for.
fn coap_response(p: &[u8]) -> bool {
    let (Some(&b0), Some(&code)) = (p.first(), p.get(1)) else {
        return false;
    };
    let tkl = usize::from(b0 & 0x0f);
    if b0 >> 6 != 1 || !matches!((b0 >> 4) & 3, 1 | 2) || tkl > 8 || !(0x41..=0x45).contains(&code) {
        return false;
    }
    let mut at = 4 + tkl;
    let mut number = 0usize;
    let mut link_format = false;
    for _ in 0..32 {
        let Some(&opt) = p.get(at) else { return false };
        if opt == 0xff {
            return link_format && p.get(at + 1) == Some(&b'<');
        }
        let Some((delta, len_at)) = coap_ext(p, opt >> 4, at + 1) else {
            return false;
        };
        let Some((len, value_at)) = coap_ext(p, opt & 0x0f, len_at) else {
            return false;
        };
        number += delta;
        if number == 12 {
            // Content-Format (RFC 7252 §5.10.3): 40 = application/link-format.
            link_format = len == 1 && p.get(value_at) == Some(&40);
        }
        at = value_at + len;
    }
    false
}

/// RFC 6886 §3.2/§3.3: version 0, opcode 128 (12 bytes) or 129/130 (16 bytes), result ≤ 5.
fn nat_pmp_response(p: &[u8], datagram_len: usize) -> bool {
    let (Some(&0), Some(&op), Some(result)) = (p.first(), p.get(1), be16(p, 2)) else {
        return false;
    };
    let want = match op {
        128 => 12,
        129 | 130 => 16,
        _ => return false,
    };
    result <= 5 && datagram_len == want
}

/// ARMS replies as seen in public captures of the 2019 attacks: `00 01`, a 16-bit length no
/// larger than the datagram, `00 31`. The protocol is undocumented; this is the observed header.
fn arms_reply(p: &[u8], datagram_len: usize) -> bool {
    p.get(0..2) == Some(&[0x00, 0x01])
        && p.get(4..6) == Some(&[0x00, 0x31])
        && be16(p, 2).is_some_and(|l| usize::from(l) <= datagram_len)
}

#[inline]
fn printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t')
}

/// Printable ASCII, 8 bytes at a time: a word passes at once when no byte has the top bit set,
/// none is below 0x20 and none is DEL; a word with a control byte is checked byte by byte
/// (CR, LF and TAB are allowed).
fn text(p: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    if p.len() < MIN_TEXT_LEN {
        return false;
    }
    let scan = &p[..p.len().min(MAX_TEXT_SCAN)];
    let mut words = scan.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if x & HI != 0 {
            return false;
        }
        // With no top bit set, these detect a byte below 0x20, and a byte equal to 0x7f.
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        let del = (x ^ (LO * 0x7f)).wrapping_sub(LO) & !(x ^ (LO * 0x7f)) & HI;
        if (control | del) != 0 && !w.iter().all(|&b| printable(b)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| printable(b))
}

fn xml(p: &[u8], needle: &Pattern, within: u16) -> bool {
    let body = p.strip_prefix(&[0xef, 0xbb, 0xbf][..]).unwrap_or(p);
    let Some(start) = body.iter().take(8).position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if body[start] != b'<' {
        return false;
    }
    let end = body.len().min(usize::from(within.min(MAX_XML_SCAN)));
    needle.occurs_in(&body[start..end.max(start)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(needle: &[u8], hay: &[u8], nocase: bool) -> bool {
        hay.windows(needle.len()).any(|w| if nocase { w.eq_ignore_ascii_case(needle) } else { w == needle })
    }

    #[test]
    fn pattern_search_finds_every_position() {
        let p = Pattern::new(b"Envelope", false).unwrap();
        for at in 0..40 {
            let mut hay = vec![b'x'; 48];
            hay[at..at + 8].copy_from_slice(b"Envelope");
            assert!(p.occurs_in(&hay), "at {at}");
            assert!(!p.occurs_in(&hay[..at + 7]), "cut at {at}");
        }
        let ci = Pattern::new(b"Envelope", true).unwrap();
        assert!(ci.occurs_in(b"<s:ENVELOPE xmlns"));
        assert!(!p.occurs_in(b"<s:ENVELOPE xmlns"));
        assert!(!p.occurs_in(b""));
        let digit = Pattern::new(b"1.1 200", true).unwrap();
        assert!(digit.occurs_in(b"HTTP/1.1 200 OK"));
    }

    #[test]
    fn xml_wants_a_document_start() {
        let s = Signature::Xml { needle: Pattern::new(b"Envelope", false).unwrap(), within: 64 };
        assert!(s.matches(b"\xef\xbb\xbf  <?xml version=\"1.0\"?><s:Envelope>", 40));
        assert!(!s.matches(b"x<s:Envelope>", 13));
        let far = [&b"<a>"[..], &[b' '; 80], b"Envelope"].concat();
        assert!(!s.matches(&far, far.len()), "needle beyond `within`");
    }

    proptest! {
        #[test]
        fn text_agrees_with_a_byte_check(bytes in proptest::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b'\t'), Just(0x7f), Just(0x1f), Just(0x80), 0x20u8..0x7f, any::<u8>()
        ], 0..100)) {
            let expect = bytes.len() >= MIN_TEXT_LEN && bytes.iter().take(MAX_TEXT_SCAN).all(|&b| printable(b));
            prop_assert_eq!(text(&bytes), expect);
        }

        #[test]
        fn search_agrees_with_a_naive_scan(
            needle in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'B'), Just(b'<'), any::<u8>()], 1..6),
            hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'A'), Just(b'b'), Just(b'<'), any::<u8>()], 0..80),
            nocase in any::<bool>(),
        ) {
            let p = Pattern::new(&needle, nocase).unwrap();
            let expect = naive(p.as_bytes(), &hay, nocase);
            prop_assert_eq!(p.occurs_in(&hay), expect);
        }
    }
}
