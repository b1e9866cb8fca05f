//! SYN authentication fuzz target: the TCP option walk and the whole `syn::State` on arbitrary
//! TCP segments (flags, options and payload from the input), followed by the RST a client would
//! send for any SYN-ACK it produced.
//!
//! Invariants: never panics; a challenge it builds parses and carries the configured segment's
//! flags (ACK, or SYN|ACK); an unverified source's SYN is never Clean.
#![no_main]

use dataplane::build::Packet;
use dataplane::parse::{parse, tcp_flags};
use dataplane::pipeline::PipelineConfig;
use dataplane::policy::Mode;
use dataplane::reply::ReplyBudget;
use dataplane::stats::Stats;
use dataplane::syn::challenge::syn_options_ok;
use dataplane::syn::{Challenge, Env, Global, Settings, Shared, SharedConfig, State, StateConfig};
use dataplane::verdict::Check;
use dataplane::{Frame, Now};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::IpAddr;

struct World {
    shared: Shared,
    state: State,
    replies: ReplyBudget,
    stats: Stats,
    global: Global,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new({
        let shared = Shared::new(SharedConfig { verified_sources: 1024, auto_prefixes: 16 }, [9, 8, 7, 6]);
        let state = State::new(StateConfig { workers: 1, retransmit: 64, check_failures: 64, unverified_buckets: 64, verified_syn_buckets: 64 }, &shared);
        World { shared, state, replies: ReplyBudget::new(&PipelineConfig::default()), stats: Stats::default(), global: Global::default() }
    });
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let _ = syn_options_ok(&data[4..]);
    WORLD.with(|w| {
        let w = &mut *w.borrow_mut();
        let flags = data[0];
        let opt_len = usize::from(data[1] % 41).min(data.len() - 4);
        let options = &data[4..4 + opt_len];
        let payload = &data[4 + opt_len..];
        let src: IpAddr =
            if data[2] & 1 == 0 { "198.18.1.9".parse().unwrap() } else { "2001:2:0:1::9".parse().unwrap() };
        let dst: IpAddr =
            if data[2] & 1 == 0 { "198.18.100.10".parse().unwrap() } else { "2001:2:0:100::10".parse().unwrap() };
        let bytes = Packet::tcp(src, 40000 + u16::from(data[3]), dst, 80)
            .flags(flags)
            .seq_ack(u32::from(data[3]) << 8, 0)
            .tcp_options(options)
            .payload(payload)
            .build();
        let Ok(Some(info)) = parse(&bytes) else { return };
        let mut buf = bytes.clone();
        buf.resize(bytes.len() + 64, 0);
        let mut frame = Frame::new(&mut buf, 0, bytes.len());
        let challenge = if data[2] & 2 == 0 { Challenge::Ack } else { Challenge::SynAck };
        let settings = Settings { challenge, ..Settings::default() };
        let env = Env {
            shared: &w.shared,
            global: &w.global,
            settings: &settings,
            prefix: "198.18.100.0/24".parse().unwrap(),
            mode: Mode::Mitigate,
            now: Now { mono_ns: 1_000_000_000, wall_secs: 1_700_000_000 },
        };
        let check = w.state.inspect(&env, &info, &mut frame, &mut w.replies, &mut w.stats);
        let is_syn = info.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        if is_syn && !w.shared.is_verified(info.src, env.now) {
            assert_ne!(check, Check::Clean);
        }
        if check == Check::Replied {
            let reply = parse(frame.data()).unwrap().unwrap();
            let expected = match challenge {
                Challenge::Ack => tcp_flags::ACK,
                Challenge::SynAck => tcp_flags::SYN | tcp_flags::ACK,
            };
            assert_eq!(reply.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK), expected);
        }
    });
});
