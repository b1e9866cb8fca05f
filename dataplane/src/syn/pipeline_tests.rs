//! SYN authentication through the whole pipeline: a handshake verifies a source and its next
//! SYN is forwarded, a spoofed flood never is, monitor mode forwards and counts.

use crate::build::Packet;
use crate::parse::{parse, tcp_flags};
use crate::policy::{self, ForwardMode, ForwardSettings, Mode, PolicyBuilder, Profile, VlanAction};
use crate::verdict::{DropReason, Verdict};
use crate::{Frame, Now, Pipeline, PipelineConfig};
use smoltcp::wire::TcpPacket;
use std::net::IpAddr;

fn lab(mode: Mode) -> Pipeline {
    let mut b = PolicyBuilder::new();
    let mut profile = Profile::named("lab");
    profile.mode = mode;
    let lab = b.profile(profile);
    b.protect("198.18.100.0/24".parse().unwrap(), lab);
    b.protect("2001:2:0:100::/64".parse().unwrap(), lab);
    b.bogon_exempt = vec!["198.18.0.0/15".parse().unwrap(), "2001:2::/48".parse().unwrap()];
    b.forward = ForwardSettings {
        mode: ForwardMode::L2,
        src_mac: [2, 0, 0, 0, 0, 1],
        next_hop_mac: [2, 0, 0, 0, 0, 2],
        vlan: VlanAction::Keep,
        gre_local: 0,
        egress_mtu: 1500,
        ..ForwardSettings::default()
    };
    Pipeline::new(policy::cell(b.build()), PipelineConfig::default())
}

fn run(p: &mut Pipeline, now: Now, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 256];
    buf[64..64 + bytes.len()].copy_from_slice(bytes);
    let mut frame = Frame::new(&mut buf, 64, bytes.len());
    let v = p.process_one(now, &mut frame);
    (v, frame.data().to_vec())
}

fn rst_for(syn_ack: &[u8]) -> Vec<u8> {
    let info = parse(syn_ack).unwrap().unwrap();
    let tcp = TcpPacket::new_checked(&syn_ack[usize::from(info.l4_offset)..]).unwrap();
    Packet::tcp(info.dst.to_ip(), tcp.dst_port(), info.src.to_ip(), tcp.src_port())
        .flags(tcp_flags::RST)
        .seq_ack(tcp.ack_number().0 as u32, 0)
        .build()
}

#[test]
fn handshake_through_the_pipeline() {
    let mut p = lab(Mode::Mitigate);
    let now = Now { mono_ns: 5_000_000_000, wall_secs: 1_700_000_000 };
    for (c, s) in [("198.18.1.2", "198.18.100.10"), ("2001:2:0:1::2", "2001:2:0:100::10")] {
        let (c, s): (IpAddr, IpAddr) = (c.parse().unwrap(), s.parse().unwrap());
        let syn = Packet::tcp(c, 40000, s, 80).seq_ack(1, 0).tcp_options(&[2, 4, 5, 0xb4]).build();
        let (v, out) = run(&mut p, now, &syn);
        assert_eq!(v, Verdict::Reply);
        assert_eq!(run(&mut p, now, &rst_for(&out)).0, Verdict::Drop(DropReason::SynCookieAnswer));
        let (v, out) = run(&mut p, now, &syn);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 2]);
    }
    let stats = p.stats();
    assert_eq!(stats.event_count(crate::stats::Event::SynAckSent), 2);
    assert_eq!(stats.drops_of(DropReason::SynCookieAnswer), 2);
}

#[test]
fn spoofed_flood_through_the_pipeline_never_forwards() {
    let mut p = lab(Mode::Mitigate);
    for i in 0..50_000u32 {
        let c = IpAddr::from((0xc612_0000u32 | (i.wrapping_mul(2_654_435_761) & 0x1_ffff)).to_be_bytes());
        let now = Now { mono_ns: 5_000_000_000 + u64::from(i) * 1000, wall_secs: 1_700_000_000 };
        let syn = Packet::tcp(c, i as u16, "198.18.100.10".parse().unwrap(), 80).build();
        let v = run(&mut p, now, &syn).0;
        assert!(matches!(v, Verdict::Reply | Verdict::Drop(DropReason::SynChallengeOverBudget)), "{v:?}");
    }
}

#[test]
fn syns_over_a_verified_sources_budget_are_dropped_under_their_own_reason() {
    let mut p = lab(Mode::Mitigate);
    let now = Now { mono_ns: 5_000_000_000, wall_secs: 1_700_000_000 };
    let (c, s): (IpAddr, IpAddr) = ("198.18.1.2".parse().unwrap(), "198.18.100.10".parse().unwrap());
    let syn = |port: u16| Packet::tcp(c, port, s, 80).seq_ack(u32::from(port), 0).build();
    let (_, out) = run(&mut p, now, &syn(1));
    assert_eq!(run(&mut p, now, &rst_for(&out)).0, Verdict::Drop(DropReason::SynCookieAnswer));
    let verdicts: Vec<Verdict> = (2..1_002).map(|port| run(&mut p, now, &syn(port)).0).collect();
    let forwarded = verdicts.iter().filter(|v| **v == Verdict::Forward).count();
    assert_eq!(forwarded, 100, "the default budget's burst");
    let stats = p.stats();
    assert_eq!(stats.drops_of(DropReason::SynVerifiedOverBudget), 900);
    assert_eq!(stats.event_count(crate::stats::Event::SynVerifiedSyn), 100);
}

#[test]
fn monitor_mode_forwards_and_counts() {
    let mut p = lab(Mode::Monitor);
    let now = Now { mono_ns: 5_000_000_000, wall_secs: 1_700_000_000 };
    let syn = Packet::tcp("198.18.1.2".parse().unwrap(), 40000, "198.18.100.10".parse().unwrap(), 80).build();
    assert_eq!(run(&mut p, now, &syn).0, Verdict::Forward);
    assert_eq!(p.stats().monitored[DropReason::SynUnverified.index()], 1);
}
