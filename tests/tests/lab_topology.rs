//! The namespace lab without a scrubber daemon (root; run with `--test-threads=1`).
//!
//! With no daemon, the scrub namespace routes in the kernel — exactly the fail-open path — so
//! real clients must reach origin through it, and origin's replies must come back around it
//! (asymmetric) or through it (`--symmetric`). The attack marker (DSCP CS1) must be counted in
//! origin for marked packets only. Every variant must come up and leave nothing behind.

use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;
use tests::topo::{ORIGIN_V4, ORIGIN_V6, SCRUB_IN0_V4, SCRUB_IN0_V6, UNPROTECTED_V4, UNPROTECTED_V6};
use tests::{
    Cmd, GreImpl, Hping, HpingMode, LabOptions, Role, TestLab, VlanImpl, assert_all_ok, assert_no_leftovers,
    client_sources_v4, client_sources_v6, lab, require_root, scrubber_bin,
};

const HELLO: &str = "/hello.txt";

fn v4(a: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn v6(a: std::net::Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// Fail-open (no daemon): 200 IPv4 and 64 IPv6 client sources fetch from origin through the
/// scrub namespace's kernel; requests cross scrub:out0, replies leave origin by r0 and never by
/// the egress link, and nothing is counted as attack.
#[test]
fn fail_open_serves_many_clients_and_replies_bypass_the_scrubber() {
    require_root!();
    let t = TestLab::with_services(|o| o);
    let c0 = t.counters();
    let (in0, out0) = (t.link(Role::Scrub, "in0"), t.link(Role::Scrub, "out0"));

    let v4_sources = client_sources_v4();
    assert!(v4_sources.len() >= 200);
    let r4 = t.curl(v4(ORIGIN_V4), HELLO, &v4_sources);
    assert_all_ok("curl v4", &r4);
    assert!(r4.results.iter().all(|r| r.size == tests::lab::services::HELLO_BODY.len() as u64));
    let v6_sources = &client_sources_v6()[..64];
    let r6 = t.curl(v6(ORIGIN_V6), HELLO, v6_sources);
    assert_all_ok("curl v6", &r6);

    let d = t.counters().since(&c0);
    let conns = (r4.attempts + r6.attempts) as u64;
    eprintln!("origin counters: {d:?}");
    // Each connection: SYN, ACK, request, FIN/ACK at least, all through scrub -> o0.
    assert!(d.packets("in_all") >= 4 * conns, "{d:?}");
    assert!(d.packets("in_ip6") >= 4 * r6.attempts as u64, "{d:?}");
    // Replies (SYN-ACK, data, FIN) leave by r0, none by the egress link, none arrive on r0.
    assert!(d.packets("out_return") >= 3 * conns, "{d:?}");
    assert_eq!(d.packets("out_egress"), 0, "a reply went back through the scrubber: {d:?}");
    assert_eq!(d.packets("in_return"), 0, "{d:?}");
    assert_eq!(d.attack_packets(), 0, "legitimate traffic carried the attack marker: {d:?}");

    // The scrub namespace forwarded the requests (in0 -> out0) and sent nothing back by in0 but
    // neighbour discovery.
    let (in0, out0) = (t.link(Role::Scrub, "in0").since(&in0), t.link(Role::Scrub, "out0").since(&out0));
    eprintln!("scrub in0 {in0:?}, out0 {out0:?}");
    assert!(in0.rx_packets >= 4 * conns && out0.tx_packets >= 4 * conns);
    assert!(in0.tx_packets < 50, "replies crossed the scrubber: in0 sent {}", in0.tx_packets);
    assert!(out0.rx_packets < 50, "replies crossed the scrubber: out0 received {}", out0.rx_packets);
}

/// The UDP sequence service answers numbered requests from every client source, v4 and v6, and
/// the probe reports which numbers were answered.
#[test]
fn udp_sequence_service_answers_every_source() {
    require_root!();
    let t = TestLab::with_services(|o| o);
    for (target, sources, count) in [
        (v4(ORIGIN_V4), "198.18.1.1-198.18.1.200", 1000u64),
        (v6(ORIGIN_V6), "2001:2:0:1::1-2001:2:0:1::c8", 500),
        (v4(UNPROTECTED_V4), "198.18.1.1-198.18.1.10", 100),
    ] {
        let r = t.udp_probe(target, sources, count, 5000);
        eprintln!("udp {target}: sent {} answered {} lost {} rtt {:?} us", r.sent, r.answered, r.lost(), r.rtt_us);
        assert_eq!(r.sent, count);
        // Paced at 5 kpps the kernel path loses nothing; allow 1 % for a busy 2-core machine.
        assert!(r.answered * 100 >= count * 99, "{target}: {r:?}");
        assert_eq!(r.sources_answered, r.sources, "{target}: a source got no answer: {r:?}");
        assert_eq!((r.duplicates, r.bogus), (0, 0));
        let listed: u64 = r.answered_ranges.iter().map(|(a, b)| b - a + 1).sum();
        assert_eq!(listed, r.answered, "answered ranges match the count");
    }
}

/// Traffic to the scrub namespace's own address and to the unprotected destination reaches the
/// kernel; dig reports a server that does not answer.
#[test]
fn scrubber_own_address_and_unprotected_destination_answer() {
    require_root!();
    let t = TestLab::with_services(|o| o);
    let client = t.ns(Role::Client);
    for target in [v4(SCRUB_IN0_V4), v6(SCRUB_IN0_V6)] {
        let s = tests::ping(&client, target, 3, None, None).expect("ping");
        assert_eq!((s.transmitted, s.received), (3, 3), "ping {target}");
    }
    let sources = &client_sources_v4()[..8];
    assert_all_ok("curl unprotected v4", &t.curl(v4(UNPROTECTED_V4), HELLO, sources));
    assert_all_ok("curl unprotected v6", &t.curl(v6(UNPROTECTED_V6), HELLO, &client_sources_v6()[..8]));
    // No DNS server in the lab: the wrapper reports it instead of hanging.
    let d =
        tests::dig(&client, v4(ORIGIN_V4), Some(sources[0]), "example.lab", "A", Duration::from_secs(1)).expect("dig");
    assert_eq!(d.status, "TIMEOUT", "{d:?}");
}

/// Origin counts marked packets (DSCP CS1, TOS 0x20) by family and protocol, and nothing else.
#[test]
fn attack_marker_counts_only_cs1_packets() {
    require_root!();
    let t = TestLab::with_services(|o| o);
    let attacker = t.ns(Role::Attacker);
    t.reset_origin_counters().expect("reset");

    // Marked: ICMP v4 and v6, UDP (also with a spoofed source from the clients' /24), TCP SYN.
    let p4 = tests::ping(&attacker, v4(ORIGIN_V4), 5, Some(0x20), None).expect("ping -Q");
    let p6 = tests::ping(&attacker, v6(ORIGIN_V6), 4, Some(0x20), None).expect("ping -6 -Q");
    let udp = Hping { tos: Some(0x20), ..Hping::new(ORIGIN_V4, HpingMode::Udp(9000), 7) };
    let spoofed = Hping { source: Some("198.18.1.99".parse().unwrap()), ..udp };
    let syn = Hping { tos: Some(0x20), ..Hping::new(ORIGIN_V4, HpingMode::Syn(80), 6) };
    let sent: Vec<u64> = [udp, Hping { count: 3, ..spoofed }, syn]
        .iter()
        .map(|h| tests::hping3(&attacker, h).expect("hping3").transmitted)
        .collect();
    assert_eq!((p4.transmitted, p6.transmitted, &sent[..]), (5, 4, &[7, 3, 6][..]));

    // Unmarked from the attacker and legitimate clients.
    tests::ping(&attacker, v4(ORIGIN_V4), 5, None, None).expect("ping");
    tests::ping(&attacker, v6(ORIGIN_V6), 5, None, None).expect("ping -6");
    tests::hping3(&attacker, &Hping::new(ORIGIN_V4, HpingMode::Udp(9000), 4)).expect("hping3");
    assert_all_ok("legit curl", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..10]));
    assert_all_ok("legit curl v6", &t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..5]));

    let c = t.counters();
    eprintln!("origin counters: {c:?}");
    let expect = [
        ("attack_ip4_icmp", 5),
        ("attack_ip6_icmp", 4),
        ("attack_ip4_udp", 10),
        ("attack_ip4_tcp", 6),
        ("attack_ip4_other", 0),
        ("attack_ip6_tcp", 0),
        ("attack_ip6_udp", 0),
        ("attack_ip6_other", 0),
    ];
    for (name, n) in expect {
        assert_eq!(c.packets(name), n, "{name}: {c:?}");
    }
    assert_eq!(c.attack_packets(), 25);
    // Everything from the scrubber side is counted, marked or not.
    assert!(c.packets("in_all") >= 25 + 5 + 5 + 4 + 15 * 4, "{c:?}");
}

/// `--symmetric`: origin's replies come back through the scrub namespace.
#[test]
fn symmetric_return_path_crosses_the_scrubber() {
    require_root!();
    let t = TestLab::with_services(|o| LabOptions { symmetric: true, ..o });
    let out0 = t.link(Role::Scrub, "out0");
    let r4 = t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..40]);
    assert_all_ok("curl v4 symmetric", &r4);
    let r6 = t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..20]);
    assert_all_ok("curl v6 symmetric", &r6);
    let c = t.counters();
    assert!(c.packets("out_egress") >= 3 * 60, "{c:?}");
    assert_eq!(c.packets("out_return"), 0, "{c:?}");
    assert!(t.link(Role::Scrub, "out0").since(&out0).rx_packets >= 3 * 60);
}

fn link_json(ns: &str, dev: &str) -> serde_json::Value {
    let out = Cmd::new("ip").args(&["-d", "-j", "link", "show", "dev", dev]).netns(ns).run().expect("ip link show");
    serde_json::from_str::<serde_json::Value>(&out.stdout).expect("ip -j")[0].clone()
}

/// `--vlan N`: the ingress and egress links carry VLAN N: frames on in0 (where XDP attaches)
/// are tagged, and the kernel path still works. With 802.1Q the addresses live on the VLAN
/// devices (`in0.N`); without it (this kind of kernel) tc programs tag and untag on the veths.
#[test]
fn vlan_variant_carries_tagged_frames() {
    require_root!();
    let t = TestLab::with_services(|o| LabOptions { vlan: Some(100), ..o });
    let scrub = t.ns(Role::Scrub);
    match t.state().vlan_impl.expect("vlan impl recorded") {
        VlanImpl::Devices => {
            for (role, dev, parent) in [
                (Role::Edge, "e-s.100", "e-s"),
                (Role::Scrub, "in0.100", "in0"),
                (Role::Scrub, "out0.100", "out0"),
                (Role::Origin, "o0.100", "o0"),
            ] {
                let l = link_json(&t.ns(role), dev);
                assert_eq!(l["linkinfo"]["info_kind"], "vlan", "{dev}: {l}");
                assert_eq!(l["linkinfo"]["info_data"]["id"], 100, "{dev}: {l}");
                assert_eq!(l["link"], parent, "{dev}: {l}");
            }
        }
        VlanImpl::TcBpf => {
            for (role, dev) in [(Role::Edge, "e-s"), (Role::Scrub, "in0"), (Role::Scrub, "out0"), (Role::Origin, "o0")]
            {
                for hook in ["ingress", "egress"] {
                    let f = Cmd::new("tc").args(&["filter", "show", "dev", dev, hook]).netns(t.ns(role)).run().unwrap();
                    assert!(f.stdout.contains("vlan100-"), "{dev} {hook}: {}", f.stdout);
                }
            }
        }
    }
    let in0 = &t.state().hosts[3].interfaces[0];
    assert_eq!((in0.vlan, in0.ipv4.as_deref()), (Some(100), Some("198.18.0.2/30")));

    // Tagged frames on in0 and on the egress link while clients fetch.
    let cap_in = tests::capture(&scrub, "in0", 5, Duration::from_secs(10), "vlan 100");
    let cap_out = tests::capture(&t.ns(Role::Origin), "o0", 5, Duration::from_secs(10), "vlan 100");
    std::thread::sleep(Duration::from_millis(700));
    let in0 = t.link(Role::Scrub, "in0");
    assert_all_ok("curl v4 over vlan", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..30]));
    assert_all_ok("curl v6 over vlan", &t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..10]));
    for (name, cap) in [("in0", cap_in), ("o0", cap_out)] {
        let out = cap.join().unwrap().unwrap_or_else(|e| panic!("tcpdump on {name}: {e}"));
        let tagged = out.stdout.lines().filter(|l| l.contains("vlan 100")).count();
        assert_eq!(tagged, 5, "tagged frames on {name}: {}", out.stdout);
    }
    assert!(t.link(Role::Scrub, "in0").since(&in0).rx_packets >= 4 * 40);
    let c = t.counters();
    assert!(c.packets("in_all") >= 4 * 40, "{c:?}");
    assert_eq!(c.packets("out_egress"), 0);
}

/// `--gre`: origin has gre1 (local 198.18.0.6, remote 198.18.0.5) and decapsulates what arrives
/// in it — a kernel GRE device, or where the kernel has none a TUN device with a userspace
/// endpoint. With no daemon, a second endpoint in the scrub namespace (made here, for this
/// test only) plays the scrubber's encapsulation. The lab then tears down clean.
#[test]
fn gre_variant_decapsulates_and_tears_down_clean() {
    require_root!();
    let mut t = TestLab::with_services(|o| LabOptions { gre: true, ..o });
    let id = t.id().to_string();
    let g = link_json(&t.ns(Role::Origin), "gre1");
    let cfg = control::Config::load(&t.state().daemon.config).expect("generated config");
    assert_eq!(cfg.forward.mode, control::config::ForwardModeConfig::Gre);
    assert_eq!(t.state().counters.interfaces, ["o0", "gre1"]);

    let scrub = t.ns(Role::Scrub);
    match t.state().gre_impl.expect("gre impl recorded") {
        GreImpl::Kernel => {
            assert_eq!(g["linkinfo"]["info_kind"], "gre", "{g}");
            let d = &g["linkinfo"]["info_data"];
            assert_eq!((d["local"].as_str(), d["remote"].as_str()), (Some("198.18.0.6"), Some("198.18.0.5")), "{g}");
            let add = "link add gre-t type gre local 198.18.0.5 remote 198.18.0.6 ttl 64\n";
            Cmd::new("ip").args(&["-n", &scrub, "-batch", "-"]).stdin(add).run().expect("kernel gre in scrub");
        }
        GreImpl::Userspace => {
            assert_eq!(g["linkinfo"]["info_kind"], "tun", "{g}");
            let ep = t.state().gre_endpoint.clone().expect("endpoint recorded");
            assert!(lab::instance::pid_alive(ep.pid.unwrap()));
            Cmd::new("ip").args(&["-n", &scrub, "tuntap", "add", "dev", "gre-t", "mode", "tun"]).run().unwrap();
            t.start_gre_endpoint(Role::Scrub, "gre-t", "198.18.0.5", "198.18.0.6").expect("endpoint in scrub");
        }
    }
    let routes =
        "link set gre-t up\nroute replace 198.18.100.10/32 dev gre-t\nroute replace 2001:2:0:100::10/128 dev gre-t\n";
    Cmd::new("ip").args(&["-n", &scrub, "-batch", "-"]).stdin(routes).run().expect("routes into gre-t");
    assert_all_ok("curl v4 over gre", &t.curl(v4(ORIGIN_V4), HELLO, &client_sources_v4()[..20]));
    assert_all_ok("curl v6 over gre", &t.curl(v6(ORIGIN_V6), HELLO, &client_sources_v6()[..10]));
    let c = t.counters();
    eprintln!("origin counters: {c:?}");
    assert!(c.packets("gre_outer") >= 4 * 30, "{c:?}");
    assert!(c.packets("in_all") >= 4 * 30, "decapsulated packets counted on gre1: {c:?}");
    assert_eq!(c.packets("out_egress"), 0);

    let r = t.down();
    assert_eq!(r.namespaces.len(), 5);
    assert_no_leftovers(&id);
}

/// Removes a lab made through the CLI when the test ends, however it ends.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = lab::down(&self.0);
    }
}

fn cli(args: &[&str]) -> tests::Output {
    let bin = scrubber_bin().display().to_string();
    Cmd::new(bin).args(args).timeout(Duration::from_secs(60)).ok_codes(&[0, 1]).run().expect("scrubber lab")
}

/// `scrubber lab up/status/down`: up returns leaving the lab and its daemon running; status
/// --json has every host and the daemon's paths; a second up is refused without harming the first;
/// down works with the state file gone (a crash), is idempotent, and leaves nothing.
#[test]
fn cli_up_status_down_survive_a_crash() {
    require_root!();
    let id = tests::unique_id();
    let _guard = DownOnDrop(id.clone());
    let up = cli(&["lab", "up", "--id", &id, "--vlan", "7", "--gre", "--symmetric"]);
    assert_eq!(up.code, 0, "lab up: {}{}", up.stdout, up.stderr);

    let st = cli(&["lab", "status", "--id", &id, "--json"]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    let s: serde_json::Value = serde_json::from_str(&st.stdout).expect("status JSON");
    let hosts = s["hosts"].as_array().expect("hosts");
    let roles: Vec<&str> = hosts.iter().filter_map(|h| h["role"].as_str()).collect();
    assert_eq!(roles, ["client", "attacker", "edge", "scrub", "origin"]);
    for h in hosts {
        assert_eq!(h["namespace"], format!("scrb{id}-{}", h["role"].as_str().unwrap()));
        for i in h["interfaces"].as_array().unwrap().iter().filter(|i| i["link"] != "gre") {
            for k in ["interface", "ipv4", "ipv6", "mac"] {
                assert!(i[k].is_string(), "{k} of {i}");
            }
        }
    }
    let in0 = &hosts[3]["interfaces"][0];
    let expect_if = if s["vlan_impl"] == "8021q" { "in0.7" } else { "in0" };
    assert_eq!(
        (in0["interface"].as_str(), in0["ipv4"].as_str(), in0["vlan"].as_u64()),
        (Some(expect_if), Some("198.18.0.2/30"), Some(7))
    );
    assert!(s["gre_impl"].is_string() && s["vlan_impl"].is_string(), "{s}");
    let d = &s["daemon"];
    let dir = format!("/run/scrubber-lab/{id}");
    assert_eq!(d["control_socket"], format!("{dir}/control.sock"));
    assert_eq!(d["log"], format!("{dir}/daemon.log"));
    assert_eq!(d["metrics"], "127.0.0.1:9477");
    assert_eq!(d["namespace"], format!("scrb{id}-scrub"));
    // `lab up` starts the daemon unless `--no-daemon`.
    let pid = d["pid"].as_u64().expect("daemon pid") as u32;
    assert!(lab::instance::pid_alive(pid));
    let st = lab::observe::ctl(std::path::Path::new(d["control_socket"].as_str().unwrap()), "status", Value::Null)
        .expect("control socket");
    assert_eq!(st["forward"], "gre", "{st}");
    let cfg =
        control::check_file(std::path::Path::new(d["config"].as_str().unwrap())).expect("generated config checks").0;
    assert!(cfg.forward.symmetric);
    assert_eq!(s["http"]["listen"][0], "198.18.100.10:80");

    // The lab is up and working after `up` returned.
    let client = format!("scrb{id}-client");
    let url = tests::http_url(IpAddr::V4(ORIGIN_V4), 80, HELLO);
    let r = tests::curl_many(&client, &url, &client_sources_v4()[..5], Duration::from_secs(3)).unwrap();
    assert_all_ok("curl after lab up", &r);

    let again = cli(&["lab", "up", "--id", &id]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already up"), "{}", again.stderr);
    assert_eq!(lab::lab_namespaces(&id).unwrap().len(), 5, "a refused up must not touch the lab");

    // A crash that lost the state file: down still finds everything by name prefix.
    std::fs::remove_file(format!("{dir}/state.json")).unwrap();
    let down = cli(&["lab", "down", "--id", &id]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    // http, udp-echo and the daemon, plus the userspace GRE endpoint where the kernel has no GRE.
    let procs = if s["gre_impl"] == "userspace" { 4 } else { 3 };
    assert!(down.stdout.contains(&format!("removed 5 namespaces, stopped {procs} processes")), "{}", down.stdout);
    assert_no_leftovers(&id);
    assert!(!lab::instance::pid_alive(pid), "down stopped the daemon");
    let down2 = cli(&["lab", "down", "--id", &id]);
    assert_eq!(down2.code, 0);
    assert!(down2.stdout.contains("nothing to remove"), "{}", down2.stdout);
    let st = cli(&["lab", "status", "--id", &id]);
    assert_ne!(st.code, 0);
}

/// A lab whose owner died (a killed test run) is swept; a failed build removes what it made.
#[test]
fn orphans_are_swept_and_failed_builds_clean_up() {
    require_root!();
    // Owner: a process that has already exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let id = tests::unique_id();
    let _guard = DownOnDrop(id.clone());
    let kept = tests::Lab::up(LabOptions { owner_pid: Some(dead), ..LabOptions::new(id.clone()) }).unwrap().keep();
    assert_eq!(lab::lab_namespaces(&kept.id).unwrap().len(), 5);
    let swept = lab::sweep_orphans();
    assert!(swept.iter().any(|r| r.id == id), "{swept:?}");
    assert_no_leftovers(&id);

    let id = tests::unique_id();
    let bad = LabOptions { config: Some("/nonexistent/lab.toml".into()), ..LabOptions::new(id.clone()) };
    let e = tests::Lab::up(bad).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/lab.toml"), "{e}");
    assert_no_leftovers(&id);
}

/// Five up/down cycles with services running leave no namespace, veth, process or state.
#[test]
fn five_up_down_cycles_leave_nothing() {
    require_root!();
    for cycle in 0..5 {
        let t = TestLab::with_services(|o| LabOptions {
            vlan: (cycle % 2 == 1).then_some(10 + cycle),
            gre: cycle == 4,
            ..o
        });
        let id = t.id().to_string();
        let pids: Vec<u32> = [&t.state().http, &t.state().udp_echo].iter().filter_map(|s| s.as_ref()?.pid).collect();
        assert_eq!(pids.len(), 2);
        let s = tests::ping(&t.ns(Role::Client), v4(ORIGIN_V4), 1, None, None).unwrap();
        assert_eq!(s.received, 1, "cycle {cycle}");
        let r = t.down();
        assert_eq!(r.namespaces.len(), 5, "cycle {cycle}: {r:?}");
        assert_no_leftovers(&id);
        assert!(pids.iter().all(|p| !lab::instance::pid_alive(*p)), "cycle {cycle}: a service survived");
    }
}
