//! QUIC fuzz target: the long-header view, the Initial checks and the whole `quic::State`.
//! The first byte picks what the rest drives:
//! - 0: the rest is a UDP payload sent to port 443 (and, for a long header, once more with the
//!   version rewritten to 1 and to 2 so the version-specific checks are reached);
//! - 1: the rest is the plaintext frames of a client Initial that is then sealed with valid keys,
//!   so the frame walk, CRYPTO reassembly and ClientHello parsing after authentication are
//!   reached; a second packet from the same flow follows (the split-ClientHello path);
//! - 2: the rest feeds the parsers directly (`wire::quic::Packet`, `frames::walk`,
//!   `client_hello::parse`, `Assembly`).
//!
//! Invariants: never panics; offsets reported lie inside their buffers; nothing but a Clean
//! verdict admits a flow.
#![no_main]

use dataplane::Now;
use dataplane::build::Packet;
use dataplane::parse::parse;
use dataplane::quic::client_hello::{self, Assembly, HelloInfo};
use dataplane::quic::craft::{InitialSpec, seal_initial};
use dataplane::quic::flows::{FlowKey, FlowState};
use dataplane::quic::frames::{self, Frames};
use dataplane::quic::keys::{KeySchedule, Version};
use dataplane::quic::{Global, Settings, Shared, SharedConfig, State, StateConfig};
use dataplane::stats::Stats;
use dataplane::verdict::Check;
use dataplane::wire::quic::Packet as LongHeader;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

struct Env {
    state: State,
    shared: Shared,
    global: Global,
    settings: Settings,
    stats: Stats,
    keys: KeySchedule,
    now: u64,
    port: u16,
}

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env {
        state: State::new(StateConfig { flows: 256, pending: 4, summaries: 16, ..StateConfig::default() }),
        shared: Shared::new(SharedConfig { replay_slots: 1 << 10 }, [1; 4]),
        global: Global { max_hello_packets: 2, ..Global::default() },
        settings: Settings {
            enabled: true,
            src_initial_rate: None,
            dst_initial_rate: None,
            hello_rules: vec![dataplane::quic::HelloRule {
                sni: Some(dataplane::quic::SniPattern::parse("*.fuzz")),
                fingerprint: Some(dataplane::quic::FingerprintPattern::parse("q13*")),
                action: dataplane::quic::HelloAction::Drop,
            }],
            ..Settings::default()
        },
        stats: Stats::default(),
        keys: KeySchedule::new(),
        now: 1_000_000_000,
        port: 1024,
    });
}

fn send(env: &mut Env, port: u16, dgram: &[u8]) -> Check {
    let frame =
        Packet::udp("198.18.1.2".parse().unwrap(), port, "198.18.100.10".parse().unwrap(), 443).payload(dgram).build();
    let info = parse(&frame).expect("built frames parse").expect("IP");
    env.now += 1_000;
    let now = Now { mono_ns: env.now, wall_secs: 0 };
    let check = env.state.inspect(&env.shared, &env.global, &env.settings, now, &info, &frame, &mut env.stats);
    let _ = env.state.last_hello().map(|h| (h.sni().len(), h.ja4_str().len()));
    check
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    ENV.with(|env| {
        let env = &mut *env.borrow_mut();
        match mode % 3 {
            0 => {
                let port = 40_000 + u16::from(rest.first().copied().unwrap_or(0));
                send(env, port, rest);
                if rest.len() >= 5 && rest[0] & 0x80 != 0 {
                    for v in [Version::V1, Version::V2] {
                        let mut d = rest.to_vec();
                        d[1..5].copy_from_slice(&v.wire().to_be_bytes());
                        send(env, port, &d);
                    }
                }
            }
            1 => {
                // A fresh 4-tuple each time (the table holds 256 flows, so old ones are gone).
                // Ports 1024..31024, apart from mode 0's 40000..40256.
                env.port = 1024 + (env.port - 1024 + 1) % 30_000;
                let port = env.port;
                let key = FlowKey {
                    client: dataplane::Addr::v4(0xc612_0102),
                    server: dataplane::Addr::v4(0xc612_640a),
                    client_port: port,
                    server_port: 443,
                };
                let split = rest.len() / 2;
                for (i, part) in [&rest[..split], &rest[split..]].into_iter().enumerate() {
                    let mut d = Vec::new();
                    let dcid = [(port >> 8) as u8, port as u8, 0xf0, 0x0d, 1, 2, 3, 4];
                    let spec = InitialSpec { pn: i as u32, dcid: &dcid, ..InitialSpec::default() };
                    seal_initial(&env.keys, &spec, None, part, &mut d);
                    let check = send(env, port, &d);
                    let state = env.state.flow_state(&key);
                    if i == 0 {
                        // A clean first Initial leaves a flow; a refused one never an admitted
                        // or pending one.
                        match check {
                            Check::Clean => assert!(state.is_some()),
                            _ => assert!(matches!(state, None | Some(FlowState::Refused)), "{check:?} {state:?}"),
                        }
                    }
                }
            }
            _ => {
                if let Ok(p) = LongHeader::new_checked(rest) {
                    if let Ok(f) = p.initial_fields() {
                        assert!(f.end <= rest.len() && f.token_offset + f.token_len <= rest.len());
                    }
                    let _ = (p.dcid(), p.scid(), p.length_fields());
                }
                let mut fr = Frames::default();
                if frames::walk(rest, &mut fr).is_ok() {
                    assert!(fr.crypto().iter().all(|c| c.data.end <= rest.len()));
                }
                let mut info = HelloInfo::default();
                let _ = client_hello::parse(rest, true, &mut info);
                let mut a = Assembly::new(1024);
                for c in rest.chunks(97) {
                    let _ = a.add(u64::from(c[0]) * 8, c);
                }
                if let Some(m) = a.message() {
                    assert!(m.len() <= a.capacity());
                }
            }
        }
    });
});
