//! Reflection responses and their legitimate look-alikes, built from the protocol formats: the
//! payloads that the `udp-amp` traffic generator profile sends and that the fixtures, property
//! tests and benches check. Pure functions of a seed; nothing here runs on the packet path.
//!
//! `ATTACKS` has one entry per vector of the standard catalogue (the typical amplified
//! response, realistic in size and layout); `LEGIT` lists traffic from the same ports that the
//! default profile must not treat as an attack (queries, client requests, QUIC and RTP from
//! high ports that happen to equal a reflector's port). `frames` turns a payload into Ethernet
//! frames, fragmenting over an MTU the way a reflector's IP stack would.

use crate::build::{ExtHeader, Packet};
use std::net::IpAddr;

/// A deterministic generator (splitmix64): samples vary with the seed, reproducibly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random bytes appended to `out`.
    pub fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        out.extend((0..n).map(|_| self.next_u64() as u8));
    }
}

/// One kind of sample.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Sample name (for a vector's attack form, the vector's catalogue name).
    pub name: &'static str,
    /// The catalogue vector it should be classified as (`None`: no vector, i.e. legitimate).
    pub vector: Option<&'static str>,
    /// UDP source port it is sent from.
    pub src_port: u16,
    /// Builds the UDP payload.
    pub build: fn(&mut Rng) -> Vec<u8>,
}

impl Spec {
    /// The payload for `seed`.
    pub fn payload(&self, seed: u64) -> Vec<u8> {
        (self.build)(&mut Rng::new(seed ^ fnv(self.name)))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Typical amplified responses, one per vector of the standard catalogue.
pub const ATTACKS: &[Spec] = &[
    Spec { name: "dns-any", vector: Some("dns-any"), src_port: 53, build: dns_any_response },
    Spec { name: "dns-large", vector: Some("dns-large"), src_port: 53, build: dns_large_response },
    Spec { name: "dns", vector: Some("dns"), src_port: 53, build: dns_a_response },
    Spec { name: "ntp-private", vector: Some("ntp-private"), src_port: 123, build: ntp_monlist_response },
    Spec { name: "ntp-control", vector: Some("ntp-control"), src_port: 123, build: ntp_control_response },
    Spec { name: "ntp", vector: Some("ntp"), src_port: 123, build: ntp_server_reply },
    Spec { name: "memcached", vector: Some("memcached"), src_port: 11211, build: memcached_value },
    Spec { name: "ssdp", vector: Some("ssdp"), src_port: 1900, build: ssdp_response },
    Spec { name: "cldap", vector: Some("cldap"), src_port: 389, build: cldap_response },
    Spec { name: "chargen", vector: Some("chargen"), src_port: 19, build: chargen },
    Spec { name: "qotd", vector: Some("qotd"), src_port: 17, build: qotd },
    Spec { name: "snmp", vector: Some("snmp"), src_port: 161, build: snmp_getbulk_response },
    Spec { name: "netbios", vector: Some("netbios"), src_port: 137, build: netbios_node_status },
    Spec { name: "portmap", vector: Some("portmap"), src_port: 111, build: portmap_dump_reply },
    Spec { name: "mdns", vector: Some("mdns"), src_port: 5353, build: mdns_response },
    Spec { name: "ws-discovery", vector: Some("ws-discovery"), src_port: 3702, build: wsd_probe_matches },
    Spec { name: "arms", vector: Some("arms"), src_port: 3283, build: arms_reply },
    Spec { name: "coap", vector: Some("coap"), src_port: 5683, build: coap_core_reply },
    Spec { name: "slp", vector: Some("slp"), src_port: 427, build: slp_srv_reply },
    Spec { name: "tp240", vector: Some("tp240"), src_port: 10074, build: tp240_text },
    Spec { name: "jenkins", vector: Some("jenkins"), src_port: 33848, build: jenkins_discovery },
    Spec { name: "ripv1", vector: Some("ripv1"), src_port: 520, build: rip_response },
    Spec { name: "mssql", vector: Some("mssql"), src_port: 1434, build: ssrp_response },
    Spec { name: "openvpn", vector: Some("openvpn"), src_port: 1194, build: openvpn_server_reset },
    Spec { name: "stun", vector: Some("stun"), src_port: 3478, build: stun_binding_success },
    Spec { name: "dtls", vector: Some("dtls"), src_port: 443, build: dtls_hello_verify },
    Spec { name: "nat-pmp", vector: Some("nat-pmp"), src_port: 5351, build: nat_pmp_external },
];

/// Further attack forms of some vectors (continuations, other record types).
pub const ATTACK_VARIANTS: &[Spec] = &[
    Spec { name: "memcached-continuation", vector: Some("memcached"), src_port: 11211, build: memcached_continuation },
    Spec { name: "memcached-stats", vector: Some("memcached"), src_port: 11211, build: memcached_stats },
    Spec { name: "dtls-server-hello", vector: Some("dtls"), src_port: 443, build: dtls_server_hello },
    Spec { name: "snmp-v1", vector: Some("snmp"), src_port: 161, build: snmp_v1_response },
    Spec { name: "ntp-monlist-v3", vector: Some("ntp-private"), src_port: 123, build: ntp_monlist_v3 },
];

/// Traffic from reflector ports that is not a reflection attack.
pub const LEGIT: &[Spec] = &[
    Spec { name: "dns-query-from-53", vector: None, src_port: 53, build: dns_query },
    Spec { name: "ntp-client-from-123", vector: None, src_port: 123, build: ntp_client_request },
    Spec { name: "snmp-get-from-161", vector: None, src_port: 161, build: snmp_get_request },
    Spec { name: "ssdp-notify", vector: None, src_port: 1900, build: ssdp_notify },
    Spec { name: "stun-binding-request", vector: None, src_port: 3478, build: stun_binding_request },
    Spec { name: "dtls-client-hello", vector: None, src_port: 443, build: dtls_client_hello },
    Spec { name: "quic-initial-from-443", vector: None, src_port: 443, build: quic_long_header },
    Spec { name: "quic-from-1900", vector: None, src_port: 1900, build: quic_short_header },
    Spec { name: "quic-from-3283", vector: None, src_port: 3283, build: quic_short_header },
    Spec { name: "quic-from-3478", vector: None, src_port: 3478, build: quic_short_header },
    Spec { name: "quic-from-3702", vector: None, src_port: 3702, build: quic_short_header },
    Spec { name: "quic-from-5351", vector: None, src_port: 5351, build: quic_short_header },
    Spec { name: "quic-from-5353", vector: None, src_port: 5353, build: quic_short_header },
    Spec { name: "quic-from-5683", vector: None, src_port: 5683, build: quic_short_header },
    Spec { name: "quic-from-10074", vector: None, src_port: 10074, build: quic_short_header },
    Spec { name: "quic-from-11211", vector: None, src_port: 11211, build: quic_short_header },
    Spec { name: "quic-from-33848", vector: None, src_port: 33848, build: quic_short_header },
    Spec { name: "quic-from-1194", vector: None, src_port: 1194, build: quic_short_header },
    Spec { name: "quic-from-1434", vector: None, src_port: 1434, build: quic_short_header },
    Spec { name: "rtp-from-3478", vector: None, src_port: 3478, build: rtp_audio },
    Spec { name: "rtp-from-5353", vector: None, src_port: 5353, build: rtp_audio },
    Spec { name: "dns-query-from-5353", vector: None, src_port: 5353, build: dns_query },
    Spec { name: "memcached-get-from-11211", vector: None, src_port: 11211, build: memcached_get },
    Spec { name: "sip-from-10074", vector: None, src_port: 10074, build: sip_binary_prefixed },
];

/// Relative weights of the `udp-amp` generator profile's mix: every vector of the standard
/// catalogue, weighted towards the vectors that dominate large reflection floods (DNS, NTP
/// monlist, memcached, CLDAP, SSDP, WS-Discovery), with the continuation datagrams that make
/// up most of a memcached flood.
pub const UDP_AMP_MIX: &[(&str, u32)] = &[
    ("dns-any", 12),
    ("dns-large", 4),
    ("dns", 4),
    ("ntp-private", 10),
    ("ntp-control", 3),
    ("ntp", 3),
    ("memcached", 2),
    ("memcached-continuation", 8),
    ("memcached-stats", 1),
    ("ssdp", 8),
    ("cldap", 8),
    ("chargen", 3),
    ("qotd", 1),
    ("snmp", 3),
    ("snmp-v1", 1),
    ("netbios", 2),
    ("portmap", 2),
    ("mdns", 2),
    ("ws-discovery", 5),
    ("arms", 2),
    ("coap", 2),
    ("slp", 2),
    ("tp240", 1),
    ("jenkins", 1),
    ("ripv1", 1),
    ("mssql", 1),
    ("openvpn", 1),
    ("stun", 2),
    ("dtls", 1),
    ("dtls-server-hello", 1),
    ("nat-pmp", 1),
    ("ntp-monlist-v3", 1),
];

/// The sample named `name` (attack forms and variants).
pub fn spec(name: &str) -> Option<&'static Spec> {
    ATTACKS.iter().chain(ATTACK_VARIANTS).find(|s| s.name == name)
}

/// The `udp-amp` mix's pick for draw `r` (any 64-bit value, e.g. from `Rng`).
pub fn pick(r: u64) -> &'static Spec {
    let total: u64 = UDP_AMP_MIX.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut x = r % total;
    for (name, w) in UDP_AMP_MIX {
        if x < u64::from(*w) {
            return spec(name).expect("the mix names known samples");
        }
        x -= u64::from(*w);
    }
    &ATTACKS[0]
}

/// The attack spec of vector `name`.
pub fn attack(name: &str) -> Option<&'static Spec> {
    ATTACKS.iter().find(|s| s.name == name)
}

/// Ethernet frames carrying `payload` in one UDP datagram from `src:src_port` to
/// `dst:dst_port`, fragmented (IPv4 with identification `ident`, IPv6 with a fragment header of
/// that id) when the IP packet would exceed `mtu`. Fragments carry the whole datagram's UDP
/// header and checksum, as a sender's stack writes them.
pub fn frames(
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
    payload: &[u8],
    ident: u16,
    mtu: usize,
) -> Vec<Vec<u8>> {
    let whole = Packet::udp(src, src_port, dst, dst_port).ident(ident).payload(payload);
    let v4 = src.is_ipv4();
    let ip_header = if v4 { 20 } else { 40 };
    if ip_header + 8 + payload.len() <= mtu {
        return vec![whole.build()];
    }
    let frame = whole.build();
    let l4_at = 14 + ip_header;
    let segment = frame[l4_at..].to_vec();
    // Fragment data is a multiple of 8 bytes except in the last fragment (RFC 791, RFC 8200 §4.5).
    let room = (mtu - ip_header - if v4 { 0 } else { 8 }) / 8 * 8;
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < segment.len() {
        let end = (offset + room).min(segment.len());
        let more = end < segment.len();
        let p = Packet::raw(src, dst, crate::parse::proto::UDP).payload(&segment[offset..end]);
        let p = if v4 {
            p.ident(ident).ipv4_fragment(offset as u16, more)
        } else {
            p.ext(ExtHeader::Fragment { offset: offset as u16, more, id: u32::from(ident) })
        };
        let mut f = p.build();
        if offset == 0 {
            // The builder checksums what it carries; a first fragment carries the whole
            // datagram's UDP header, checksum included.
            let at = f.len() - (end - offset);
            f[at..at + 8].copy_from_slice(&segment[..8]);
        }
        out.push(f);
        offset = end;
    }
    out
}

// --- DNS (RFC 1035) --------------------------------------------------------------------------

/// Writes a DNS name in label form.
pub fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

fn push16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn push32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn dns_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    push16(out, id);
    push16(out, flags);
    for c in counts {
        push16(out, c);
    }
}

/// An answer record owned by the question name (compression pointer to offset 12).
fn dns_rr(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: &[u8]) {
    push16(out, 0xc00c);
    push16(out, rtype);
    push16(out, 1);
    push32(out, ttl);
    push16(out, rdata.len() as u16);
    out.extend_from_slice(rdata);
}

/// EDNS(0) OPT pseudo-record advertising `size` (RFC 6891 §6.1.2).
fn dns_opt(out: &mut Vec<u8>, size: u16) {
    out.push(0);
    push16(out, 41);
    push16(out, size);
    push32(out, 0x8000); // DO bit
    push16(out, 0);
}

/// A DNS response to `qtype` for `name` carrying `records` (type, rdata) and an OPT record.
pub fn dns_response(id: u16, name: &str, qtype: u16, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    dns_header(&mut out, id, 0x8180, [1, records.len() as u16, 0, 1]);
    dns_name(&mut out, name);
    push16(&mut out, qtype);
    push16(&mut out, 1);
    for (t, rdata) in records {
        dns_rr(&mut out, *t, 3600, rdata);
    }
    dns_opt(&mut out, 4096);
    out
}

fn txt_rdata(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(len + 1);
    let len = len.min(255);
    r.push(len as u8);
    r.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
    r
}

/// RRSIG rdata (RFC 4034 §3.1) covering `covered`, signed by `example.org`, with a 2048-bit
/// RSA-sized signature.
fn rrsig_rdata(rng: &mut Rng, covered: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(300);
    push16(&mut r, covered);
    r.extend_from_slice(&[8, 2]); // RSASHA256, 2 labels
    push32(&mut r, 3600);
    push32(&mut r, 1_767_225_600); // expiration
    push32(&mut r, 1_764_633_600); // inception
    push16(&mut r, rng.next_u64() as u16); // key tag
    dns_name(&mut r, "example.org");
    rng.fill(&mut r, 256);
    r
}

/// An ANY answer from a DNSSEC-signed zone: addresses, TXT records and their signatures
/// (about 3.5 kB, three fragments at a 1500-byte MTU).
fn dns_any_response(rng: &mut Rng) -> Vec<u8> {
    let id = rng.next_u64() as u16;
    let mut records =
        vec![(1, vec![192, 0, 2, 1]), (28, vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])];
    for _ in 0..8 {
        records.push((16, txt_rdata(rng, 200)));
    }
    for covered in [1, 28, 16, 2, 6, 48] {
        records.push((46, rrsig_rdata(rng, covered)));
    }
    dns_response(id, "example.org", 255, &records)
}

fn dns_large_response(rng: &mut Rng) -> Vec<u8> {
    let id = rng.next_u64() as u16;
    let records: Vec<(u16, Vec<u8>)> = (0..8).map(|_| (16, txt_rdata(rng, 230))).collect();
    dns_response(id, "example.org", 16, &records)
}

fn dns_a_response(rng: &mut Rng) -> Vec<u8> {
    let id = rng.next_u64() as u16;
    dns_response(id, "www.example.org", 1, &[(1, vec![192, 0, 2, rng.below(250) as u8 + 1])])
}

/// A recursive query for an A record.
pub fn dns_query(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    dns_header(&mut out, rng.next_u64() as u16, 0x0100, [1, 0, 0, 0]);
    dns_name(&mut out, "www.example.org");
    push16(&mut out, 1);
    push16(&mut out, 1);
    out
}

fn mdns_response(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    // RFC 6762 §18: ID 0, QR=1, AA=1, no question.
    dns_header(&mut out, 0, 0x8400, [0, 6, 0, 0]);
    dns_name(&mut out, "_services._dns-sd._udp.local");
    let services = ["_http._tcp.local", "_ipp._tcp.local", "_ssh._tcp.local", "_smb._tcp.local", "_airplay._tcp.local"];
    push16(&mut out, 12);
    push16(&mut out, 1);
    push32(&mut out, 4500);
    let mut first = Vec::new();
    dns_name(&mut first, services[0]);
    push16(&mut out, first.len() as u16);
    out.extend_from_slice(&first);
    for s in &services[1..] {
        let mut rdata = Vec::new();
        dns_name(&mut rdata, s);
        push16(&mut out, 0xc00c);
        push16(&mut out, 12);
        push16(&mut out, 1);
        push32(&mut out, 4500);
        push16(&mut out, rdata.len() as u16);
        out.extend_from_slice(&rdata);
    }
    let mut txt = txt_rdata(rng, 120);
    txt.extend(txt_rdata(rng, 120));
    dns_rr(&mut out, 16, 4500, &txt);
    out
}

fn netbios_node_status(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    dns_header(&mut out, rng.next_u64() as u16, 0x8400, [0, 1, 0, 0]);
    // The wildcard name `*` in first-level encoding (RFC 1002 §4.1): 32 bytes.
    out.push(32);
    out.extend_from_slice(b"CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    out.push(0);
    push16(&mut out, 0x21); // NBSTAT
    push16(&mut out, 1);
    push32(&mut out, 0);
    let names = 6u8;
    let mut rdata = vec![names];
    for i in 0..names {
        let mut name = *b"WORKSTATION-01  ";
        name[15] = [0x00, 0x20, 0x03, 0x00, 0x1e, 0x1d][usize::from(i)];
        rdata.extend_from_slice(&name);
        rdata.extend_from_slice(&[0x04, 0x00]);
    }
    rng.fill(&mut rdata, 6); // unit id (MAC)
    rdata.extend_from_slice(&[0; 40]); // statistics
    push16(&mut out, rdata.len() as u16);
    out.extend_from_slice(&rdata);
    out
}

// --- NTP (RFC 5905; mode 6 RFC 9327; mode 7 ntpd) ----------------------------------------------

fn ntp_monlist_response(rng: &mut Rng) -> Vec<u8> {
    ntp_monlist(rng, 2)
}

fn ntp_monlist_v3(rng: &mut Rng) -> Vec<u8> {
    ntp_monlist(rng, 3)
}

/// A MON_GETLIST_1 reply: R=1, M=1, VN, mode 7; implementation 3 (XNTPD), request 42, six
/// 72-byte items (440 bytes, the classic monlist datagram).
fn ntp_monlist(rng: &mut Rng, version: u8) -> Vec<u8> {
    let mut out = vec![0x80 | 0x40 | (version << 3) | 7, 0, 3, 42];
    push16(&mut out, 6); // err 0, 6 items
    push16(&mut out, 72); // mbz 0, item size 72
    for _ in 0..6 {
        rng.fill(&mut out, 72);
    }
    out
}

/// A READVAR reply: LI 0, VN 2, mode 6; R=1, opcode 2; the system variables as text.
fn ntp_control_response(rng: &mut Rng) -> Vec<u8> {
    let text = format!(
        "version=\"ntpd 4.2.6p5@1.2349-o Fri Jul 22 17:30:51 UTC 2016 (1)\", processor=\"x86_64\", \
         system=\"Linux/3.10.0\", leap=00, stratum=2, precision=-23, rootdelay={}.215, rootdisp=45.872, \
         refid=192.0.2.1, reftime=e3a1c0b2.6d2a1f3e, clock=e3a1c4f7.1b3a9c02, peer=12345, tc=10, mintc=3, \
         offset=-0.312, frequency=12.114, sys_jitter=0.208, clk_jitter=0.127, clk_wander=0.004",
        rng.below(90) + 10
    );
    let mut out = vec![0x16, 0x82];
    push16(&mut out, rng.next_u64() as u16); // sequence
    push16(&mut out, 0x0615); // status
    push16(&mut out, 0); // association id
    push16(&mut out, 0); // offset
    push16(&mut out, text.len() as u16);
    out.extend_from_slice(text.as_bytes());
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

fn ntp_packet(rng: &mut Rng, mode: u8, origin: u64) -> Vec<u8> {
    let mut out = vec![(4 << 3) | mode, if mode == 4 { 2 } else { 0 }, 6, 0xe9];
    push32(&mut out, 0x0000_0a3c);
    push32(&mut out, 0x0000_0b1a);
    out.extend_from_slice(if mode == 4 { &[192, 0, 2, 1] } else { &[0, 0, 0, 0] });
    let t = 0xe3a1_c0b2_0000_0000u64 | (rng.next_u64() & 0xffff_ffff);
    out.extend_from_slice(&if mode == 4 { t } else { 0 }.to_be_bytes()); // reference
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&if mode == 4 { t + 1 } else { 0 }.to_be_bytes()); // receive
    out.extend_from_slice(&(t + 2).to_be_bytes()); // transmit
    out
}

fn ntp_server_reply(rng: &mut Rng) -> Vec<u8> {
    let origin = rng.next_u64();
    ntp_packet(rng, 4, origin)
}

/// A mode 3 client request (48 bytes).
pub fn ntp_client_request(rng: &mut Rng) -> Vec<u8> {
    ntp_packet(rng, 3, 0)
}

// --- memcached ----------------------------------------------------------------------------------

fn memcached_frame(out: &mut Vec<u8>, id: u16, seq: u16, total: u16) {
    push16(out, id);
    push16(out, seq);
    push16(out, total);
    push16(out, 0);
}

/// The first datagram of a `get` answer for a large stored value (~1400 bytes).
fn memcached_value(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(1400);
    memcached_frame(&mut out, rng.next_u64() as u16, 0, 700);
    out.extend_from_slice(b"VALUE a 0 1000000\r\n");
    while out.len() < 1400 {
        out.push(b'A' + rng.below(26) as u8);
    }
    out
}

fn memcached_continuation(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(1400);
    memcached_frame(&mut out, rng.next_u64() as u16, 1 + rng.below(690) as u16, 700);
    while out.len() < 1400 {
        out.push(b'A' + rng.below(26) as u8);
    }
    out
}

fn memcached_stats(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    memcached_frame(&mut out, rng.next_u64() as u16, 0, 1);
    for (k, v) in [("pid", "1234"), ("uptime", "8123456"), ("version", "1.4.25"), ("curr_connections", "10")] {
        out.extend_from_slice(format!("STAT {k} {v}\r\n").as_bytes());
    }
    for i in 0..30 {
        out.extend_from_slice(format!("STAT counter_{i} {}\r\n", rng.next_u64()).as_bytes());
    }
    out.extend_from_slice(b"END\r\n");
    out
}

/// A client's `get` from port 11211: a request, not a response.
fn memcached_get(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    memcached_frame(&mut out, rng.next_u64() as u16, 0, 1);
    out.extend_from_slice(b"get a\r\n");
    out
}

// --- text protocols ----------------------------------------------------------------------------

fn ssdp_response(rng: &mut Rng) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nDATE: Mon, 01 Jan 2024 00:00:00 GMT\r\nEXT:\r\n\
         LOCATION: http://192.168.1.{}:49152/rootDesc.xml\r\nSERVER: Linux/3.14 UPnP/1.0 MiniUPnPd/2.1\r\n\
         ST: upnp:rootdevice\r\nUSN: uuid:{:016x}-0000-1000-8000-00000000cafe::upnp:rootdevice\r\n\r\n",
        rng.below(250) + 1,
        rng.next_u64()
    )
    .into_bytes()
}

fn ssdp_notify(rng: &mut Rng) -> Vec<u8> {
    format!(
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\
         USN: uuid:{:016x}::upnp:rootdevice\r\n\r\n",
        rng.next_u64()
    )
    .into_bytes()
}

fn chargen(rng: &mut Rng) -> Vec<u8> {
    // RFC 864: 72-character lines of the rotating printable set.
    let start = rng.below(95) as u8;
    let mut out = Vec::with_capacity(1024);
    let mut line = 0u8;
    while out.len() + 74 <= 1024 {
        for i in 0..72u8 {
            out.push(b' ' + (start + line + i) % 95);
        }
        out.extend_from_slice(b"\r\n");
        line = line.wrapping_add(1);
    }
    out
}

fn qotd(rng: &mut Rng) -> Vec<u8> {
    const QUOTES: [&str; 2] = [
        "\"The only way to do great work is to love what you do.\"\r\n",
        "\"Simplicity is prerequisite for reliability.\" Edsger W. Dijkstra\r\n",
    ];
    QUOTES[rng.below(2) as usize].as_bytes().to_vec()
}

fn wsd_probe_matches(rng: &mut Rng) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:wsd=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" \
         xmlns:wsdp=\"http://schemas.xmlsoap.org/ws/2006/02/devprof\"><soap:Header>\
         <wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>\
         <wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>\
         <wsa:MessageID>urn:uuid:{:016x}-{:04x}</wsa:MessageID><wsd:AppSequence InstanceId=\"1\" MessageNumber=\"7\"/>\
         </soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch><wsa:EndpointReference>\
         <wsa:Address>urn:uuid:{:016x}</wsa:Address></wsa:EndpointReference><wsd:Types>wsdp:Device</wsd:Types>\
         <wsd:XAddrs>http://192.168.1.20:5357/{:016x}/</wsd:XAddrs><wsd:MetadataVersion>2</wsd:MetadataVersion>\
         </wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>",
        rng.next_u64(),
        rng.below(65536),
        rng.next_u64(),
        rng.next_u64()
    )
    .into_bytes()
}

/// A stand-in for the TP-240 driver's text output. The blast stream's exact format is not in
/// our references; the `tp240` signature matches text-form datagrams from that port.
fn tp240_text(rng: &mut Rng) -> Vec<u8> {
    let mut out = format!("tp240dvr diagnostic stream seq={:08} ", rng.below(100_000_000)).into_bytes();
    while out.len() < 1024 {
        out.push(b'A' + rng.below(26) as u8);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A binary-prefixed SIP-like datagram (e.g. a keep-alive with a framing header): not text.
fn sip_binary_prefixed(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0x00, 0x00, 0x00, 0x01];
    rng.fill(&mut out, 12);
    out.extend_from_slice(b"OPTIONS sip:origin SIP/2.0\r\n");
    out
}

fn jenkins_discovery(rng: &mut Rng) -> Vec<u8> {
    format!(
        "<hudson><version>2.204.1</version><url>http://ci.example.org:8080/</url>\
         <server-id>{:016x}{:016x}</server-id><slave-port>50000</slave-port></hudson>",
        rng.next_u64(),
        rng.next_u64()
    )
    .into_bytes()
}

fn ssrp_response(rng: &mut Rng) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..6 {
        body.push_str(&format!(
            "ServerName;SQL{:02};InstanceName;INST{i};IsClustered;No;Version;15.0.2000.5;tcp;{};;",
            rng.below(100),
            1433 + i
        ));
    }
    let mut out = vec![0x05];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

// --- BER (LDAP, SNMP) -------------------------------------------------------------------------

fn ber(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match contents.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            out.push(0x82);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(contents);
    out
}

fn ber_concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A CLDAP rootDSE answer as Active Directory sends it: searchResEntry then searchResDone.
fn cldap_response(rng: &mut Rng) -> Vec<u8> {
    let id = ber(0x02, &[rng.below(127) as u8 + 1]);
    let attrs: Vec<Vec<u8>> = [
        ("currentTime", "20240101000000.0Z".to_string()),
        ("subschemaSubentry", "CN=Aggregate,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=org".to_string()),
        ("dsServiceName", "CN=NTDS Settings,CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites".to_string()),
        ("namingContexts", "DC=corp,DC=example,DC=org".to_string()),
        ("defaultNamingContext", "DC=corp,DC=example,DC=org".to_string()),
        ("supportedLDAPPolicies", "MaxPoolThreads MaxDatagramRecv MaxReceiveBuffer InitRecvTimeout".to_string()),
        ("dnsHostName", "dc01.corp.example.org".to_string()),
        ("ldapServiceName", "corp.example.org:dc01$@CORP.EXAMPLE.ORG".to_string()),
        ("serverName", "CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration".to_string()),
        ("supportedCapabilities", "1.2.840.113556.1.4.800 1.2.840.113556.1.4.1670 1.2.840.113556.1.4.1791".to_string()),
    ]
    .iter()
    .map(|(k, v)| ber(0x30, &ber_concat(&[ber(0x04, k.as_bytes()), ber(0x31, &ber(0x04, v.as_bytes()))])))
    .collect();
    let entry = ber(0x64, &ber_concat(&[ber(0x04, b""), ber(0x30, &attrs.concat())]));
    let done = ber(0x65, &ber_concat(&[ber(0x0a, &[0]), ber(0x04, b""), ber(0x04, b"")]));
    ber_concat(&[ber(0x30, &ber_concat(&[id.clone(), entry])), ber(0x30, &ber_concat(&[id, done]))])
}

fn snmp_varbinds(rng: &mut Rng, n: usize) -> Vec<u8> {
    let binds: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            // 1.3.6.1.2.1.2.2.1.2.<i> (ifDescr) with an interface description.
            let oid = ber(0x06, &[0x2b, 6, 1, 2, 1, 2, 2, 1, 2, (i % 127) as u8 + 1]);
            let value = ber(0x04, format!("GigabitEthernet0/{i} uplink {:08x}", rng.next_u64() as u32).as_bytes());
            ber(0x30, &ber_concat(&[oid, value]))
        })
        .collect();
    ber(0x30, &binds.concat())
}

fn snmp_message(version: u8, pdu_tag: u8, rng: &mut Rng, binds: usize) -> Vec<u8> {
    let pdu = ber(
        pdu_tag,
        &ber_concat(&[
            ber(0x02, &(rng.next_u64() as u32).to_be_bytes()),
            ber(0x02, &[0]),
            ber(0x02, &[0]),
            snmp_varbinds(rng, binds),
        ]),
    );
    ber(0x30, &ber_concat(&[ber(0x02, &[version]), ber(0x04, b"public"), pdu]))
}

fn snmp_getbulk_response(rng: &mut Rng) -> Vec<u8> {
    snmp_message(1, 0xa2, rng, 30)
}

fn snmp_v1_response(rng: &mut Rng) -> Vec<u8> {
    snmp_message(0, 0xa2, rng, 5)
}

fn snmp_get_request(rng: &mut Rng) -> Vec<u8> {
    snmp_message(1, 0xa0, rng, 1)
}

// --- other binary protocols ---------------------------------------------------------------------

/// PMAPPROC_DUMP reply: accepted, SUCCESS, then the mapping list (RFC 1833 §3.2).
fn portmap_dump_reply(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    push32(&mut out, rng.next_u64() as u32); // xid
    push32(&mut out, 1); // REPLY
    push32(&mut out, 0); // MSG_ACCEPTED
    push32(&mut out, 0); // verifier flavor AUTH_NONE
    push32(&mut out, 0); // verifier length
    push32(&mut out, 0); // SUCCESS
    for (prog, vers, proto, port) in [
        (100000, 4, 6, 111),
        (100000, 3, 6, 111),
        (100000, 2, 6, 111),
        (100000, 4, 17, 111),
        (100000, 3, 17, 111),
        (100000, 2, 17, 111),
        (100024, 1, 17, 45671),
        (100024, 1, 6, 39453),
        (100005, 3, 17, 20048),
        (100005, 3, 6, 20048),
        (100003, 3, 6, 2049),
        (100003, 4, 6, 2049),
        (100021, 4, 17, 41592),
        (100021, 4, 6, 35113),
    ] {
        push32(&mut out, 1); // value follows
        for v in [prog, vers, proto, port] {
            push32(&mut out, v);
        }
    }
    push32(&mut out, 0);
    out
}

fn arms_reply(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0x03, 0xea, 0x00, 0x31];
    rng.fill(&mut out, 1034 - 6);
    out
}

/// A 2.05 Content ACK with Content-Format 40 (link format) listing resources.
fn coap_core_reply(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0x60 | 2, 0x45]; // ver 1, ACK, TKL 2; 2.05
    push16(&mut out, rng.next_u64() as u16);
    rng.fill(&mut out, 2); // token
    out.extend_from_slice(&[0xc1, 40]); // option 12 (Content-Format), 1 byte: 40
    out.push(0xff);
    out.extend_from_slice(b"</.well-known/core>;ct=40,");
    for i in 0..20 {
        out.extend_from_slice(format!("</sensors/s{i}>;rt=\"temperature-c\";if=\"sensor\";obs,").as_bytes());
    }
    out
}

/// SLPv2 SrvRply (RFC 2608 §8.2) with several URL entries.
fn slp_srv_reply(rng: &mut Rng) -> Vec<u8> {
    let mut body = Vec::new();
    push16(&mut body, 0); // error code
    let urls: Vec<String> = (0..12)
        .map(|i| format!("service:printer:lpr://printer-{i}-{:08x}.example.org/queue", rng.next_u64() as u32))
        .collect();
    push16(&mut body, urls.len() as u16);
    for u in &urls {
        body.push(0);
        push16(&mut body, 10800);
        push16(&mut body, u.len() as u16);
        body.extend_from_slice(u.as_bytes());
        body.push(0);
    }
    let lang = b"en";
    let len = 14 + lang.len() + body.len();
    let mut out = vec![2, 2, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    push16(&mut out, 0); // flags
    out.extend_from_slice(&[0, 0, 0]); // next extension offset
    push16(&mut out, rng.next_u64() as u16); // xid
    push16(&mut out, lang.len() as u16);
    out.extend_from_slice(lang);
    out.extend_from_slice(&body);
    out
}

/// RIPv1 response with 25 routes (the most one datagram carries, RFC 1058 §3.1).
fn rip_response(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![2, 1, 0, 0];
    for i in 0..25u8 {
        push16(&mut out, 2);
        push16(&mut out, 0);
        out.extend_from_slice(&[10, rng.below(255) as u8, i, 0]);
        out.extend_from_slice(&[0; 8]);
        push32(&mut out, 1 + u32::from(i % 15));
    }
    out
}

fn openvpn_server_reset(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0x40];
    rng.fill(&mut out, 8); // server session id
    out.push(1); // ack array length
    push32(&mut out, 0); // acked packet id
    rng.fill(&mut out, 8); // client session id
    push32(&mut out, 0); // message packet id
    out
}

/// STUN Binding success response with XOR-MAPPED-ADDRESS and SOFTWARE (RFC 8489).
fn stun_binding_success(rng: &mut Rng) -> Vec<u8> {
    let mut attrs = Vec::new();
    push16(&mut attrs, 0x0020);
    push16(&mut attrs, 8);
    attrs.extend_from_slice(&[0, 1]);
    push16(&mut attrs, rng.next_u64() as u16 ^ 0x2112);
    push32(&mut attrs, rng.next_u64() as u32 ^ 0x2112_a442);
    let software = b"example stun server 1.0";
    push16(&mut attrs, 0x8022);
    push16(&mut attrs, software.len() as u16);
    attrs.extend_from_slice(software);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut out = Vec::new();
    push16(&mut out, 0x0101);
    push16(&mut out, attrs.len() as u16);
    push32(&mut out, 0x2112_a442);
    rng.fill(&mut out, 12);
    out.extend_from_slice(&attrs);
    out
}

fn stun_binding_request(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    push16(&mut out, 0x0001);
    push16(&mut out, 0);
    push32(&mut out, 0x2112_a442);
    rng.fill(&mut out, 12);
    out
}

fn dtls_record(out: &mut Vec<u8>, msg_type: u8, body: &[u8], seq: u16) {
    out.extend_from_slice(&[22, 0xfe, 0xfd, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0, 0, seq as u8]);
    push16(out, (12 + body.len()) as u16);
    let len = body.len() as u32;
    out.push(msg_type);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    push16(out, seq);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(body);
}

fn dtls_hello_verify(rng: &mut Rng) -> Vec<u8> {
    let mut body = vec![0xfe, 0xff, 32];
    rng.fill(&mut body, 32);
    let mut out = Vec::new();
    dtls_record(&mut out, 3, &body, 0);
    out
}

fn dtls_server_hello(rng: &mut Rng) -> Vec<u8> {
    let mut hello = vec![0xfe, 0xfd];
    rng.fill(&mut hello, 32); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0xc0, 0x2b, 0]); // cipher suite, compression
    let mut cert = Vec::new();
    rng.fill(&mut cert, 900);
    let mut out = Vec::new();
    dtls_record(&mut out, 2, &hello, 1);
    dtls_record(&mut out, 11, &cert, 2);
    out
}

fn dtls_client_hello(rng: &mut Rng) -> Vec<u8> {
    let mut hello = vec![0xfe, 0xfd];
    rng.fill(&mut hello, 32);
    hello.extend_from_slice(&[0, 0, 2, 0xc0, 0x2b, 1, 0]);
    let mut out = Vec::new();
    dtls_record(&mut out, 1, &hello, 0);
    out
}

fn nat_pmp_external(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0, 128, 0, 0];
    push32(&mut out, rng.next_u64() as u32 >> 8); // seconds since epoch
    out.extend_from_slice(&[192, 0, 2, rng.below(250) as u8 + 1]);
    out
}

/// A QUIC 1-RTT packet (short header: fixed bit set, spin/key bits random) of typical size.
pub fn quic_short_header(rng: &mut Rng) -> Vec<u8> {
    // The low five bits are masked by header protection on the wire (RFC 9001 §5.4.1).
    let mut out = vec![0x40 | (rng.next_u64() as u8 & 0x3f)];
    let len = 40 + rng.below(1200) as usize;
    rng.fill(&mut out, len);
    out
}

/// A QUIC v1 Initial's first bytes (long header) padded to 1200 bytes.
fn quic_long_header(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0xc3, 0, 0, 0, 1, 8];
    rng.fill(&mut out, 8);
    out.push(0);
    let rest = 1200 - out.len();
    rng.fill(&mut out, rest);
    out
}

/// An RTP audio packet (RFC 3550 §5.1: V=2, PT 111 Opus).
fn rtp_audio(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0x80, 111];
    push16(&mut out, rng.next_u64() as u16);
    push32(&mut out, rng.next_u64() as u32);
    push32(&mut out, rng.next_u64() as u32);
    let len = 80 + rng.below(80) as usize;
    rng.fill(&mut out, len);
    out
}
