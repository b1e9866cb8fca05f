//! Amplification fuzz target: the reflection signatures and the whole `amp::State`.
//! The first two bytes pick a reflector source port (or, with the top bit of the first byte,
//! one of the catalogue's ports); the rest is a UDP payload sent to a protected host, whole and
//! then cut into two IPv4 fragments.
//!
//! Invariants: never panics; every signature agrees with itself on the same bytes; a datagram
//! no vector matches is Clean.
#![no_main]

use dataplane::Now;
use dataplane::amp::{Catalogue, Global, Settings, Shared, SharedConfig, State};
use dataplane::build::Packet;
use dataplane::parse::parse;
use dataplane::stats::Stats;
use dataplane::verdict::Check;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::IpAddr;

struct Env {
    shared: Shared,
    global: Global,
    settings: Settings,
    state: State,
    stats: Stats,
    ports: Vec<u16>,
}

thread_local! {
    static ENV: RefCell<Env> = RefCell::new({
        let global = Global::default();
        let settings = Settings::new(&global.catalogue, Default::default());
        let ports: Vec<u16> = global.catalogue.vectors().iter().flat_map(|v| v.ports.clone()).collect();
        Env {
            shared: Shared::new(SharedConfig { bucket_slots: 256, fragment_slots: 256, request_slots: 256 }, [1, 2, 3, 4]),
            global,
            settings,
            state: State::new(),
            stats: Stats::default(),
            ports,
        }
    });
}

fn catalogue_consistent(c: &Catalogue, payload: &[u8]) {
    for v in c.vectors() {
        assert_eq!(v.signature.matches(payload, payload.len()), v.signature.matches(payload, payload.len()));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    ENV.with(|env| {
        let env = &mut *env.borrow_mut();
        let port = if data[0] & 0x80 != 0 && !env.ports.is_empty() {
            env.ports[usize::from(data[1]) % env.ports.len()]
        } else {
            u16::from_be_bytes([data[0], data[1]])
        };
        let payload = &data[2..];
        catalogue_consistent(&env.global.catalogue, payload);
        let src: IpAddr = "198.18.1.7".parse().unwrap();
        let dst: IpAddr = "198.18.100.10".parse().unwrap();
        let now = Now { mono_ns: 1_000_000_000, wall_secs: 1 };
        let whole = Packet::udp(src, port, dst, 40000).payload(payload).build();
        if let Ok(Some(info)) = parse(&whole) {
            let check = env.state.inspect(&env.shared, &env.global, &env.settings, now, &info, &whole, &mut env.stats);
            if env.global.catalogue.candidates(port).is_empty() {
                assert_eq!(check, Check::Clean);
            }
        }
        for frame in dataplane::amp::samples::frames(src, port, dst, 40000, payload, 7, 576) {
            if let Ok(Some(info)) = parse(&frame) {
                let _ = env.state.inspect(&env.shared, &env.global, &env.settings, now, &info, &frame, &mut env.stats);
            }
        }
    });
});
