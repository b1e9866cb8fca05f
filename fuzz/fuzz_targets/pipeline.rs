//! Whole-pipeline fuzz target: any bytes as a frame, through a policy with every stage on
//! (lists, rules, budgets, fragments rate-limited, VLAN rewrite, GRE forwarding with headroom).
//! Invariants: never panics; a forwarded or replied frame still fits its buffer.
#![no_main]

use dataplane::addr::Cidr;
use dataplane::policy::rules::{RuleAction, Span, match_all};
use dataplane::policy::{self, ForwardMode, ForwardSettings, FragmentPolicy, PolicyBuilder, Profile, VlanAction};
use dataplane::ratelimit::Rate;
use dataplane::{Frame, Now, Pipeline, PipelineConfig, Verdict};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

fn pipeline(mode: ForwardMode) -> Pipeline {
    let mut b = PolicyBuilder::new();
    let mut p = Profile::named("fuzz");
    p.fragments = FragmentPolicy::RateLimit(Rate::pps(1000));
    p.src_limit = Some(Rate::pps(100_000));
    p.dst_limit = Some(Rate { pps: 0, bytes_per_sec: 10_000_000, burst_ms: 100 });
    let prof = b.profile(p);
    b.protect("198.18.0.0/15".parse().unwrap(), prof);
    b.protect("2001:2::/48".parse().unwrap(), prof);
    b.prefixes.iter_mut().for_each(|p| p.gre_endpoint = Some(0xc612_0001));
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap(), "2001:2::/48".parse().unwrap()];
    b.deny = vec![("198.18.66.0/24".parse::<Cidr>().unwrap(), policy::NEVER)];
    let mut r = match_all(1, RuleAction::RateLimit(Rate::pps(10)));
    r.protocol = Some(17);
    r.dst_ports = Some(Span::new(0, 100));
    b.rules = vec![r];
    b.forward = ForwardSettings {
        mode,
        src_mac: [2, 0, 0, 0, 0, 1],
        next_hop_mac: [2, 0, 0, 0, 0, 2],
        vlan: VlanAction::Set(5),
        gre_local: 0xc612_0002,
        egress_mtu: 1500,
        return_src_mac: [2, 0, 0, 0, 0, 3],
        return_next_hop_mac: [2, 0, 0, 0, 0, 4],
    };
    Pipeline::new(policy::cell(b.build()), PipelineConfig { src_buckets: 256, dst_buckets: 256, ..Default::default() })
}

thread_local! {
    static PIPELINES: RefCell<[Pipeline; 2]> = RefCell::new([pipeline(ForwardMode::L2), pipeline(ForwardMode::Gre)]);
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let which = usize::from(data[0] & 1);
    let bytes = &data[1..];
    let mut buf = vec![0u8; 128 + bytes.len() + 1400];
    buf[128..128 + bytes.len()].copy_from_slice(bytes);
    let cap = buf.len();
    let mut frame = Frame::new(&mut buf, 128, bytes.len());
    PIPELINES.with(|p| {
        let v = p.borrow_mut()[which].process_one(Now { mono_ns: 1, wall_secs: 1 }, &mut frame);
        if matches!(v, Verdict::Forward | Verdict::Reply) {
            assert!(frame.start() + frame.len() <= cap);
        }
    });
});
