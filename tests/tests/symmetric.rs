//! Symmetric deployments (root; `--test-threads=1`): with `forward.symmetric`, the origin routes
//! its replies back through the scrubber, an XDP program on the egress interface steers frames
//! *from* the protected prefixes to the workers' egress sockets, and the workers relay them to
//! the upstream next hop out of the ingress interface — without the kernel of the scrub
//! namespace forwarding anything. The control is the asymmetric lab, where no frame comes back.

use std::net::IpAddr;
use std::time::Duration;
use tests::topo::{ORIGIN_V4, ORIGIN_V6};
use tests::{Role, TestLab, client_sources_v4, client_sources_v6, require_root, xdp_attached};

const HELLO: &str = "/hello.txt";

/// Return frames relayed by the workers, and frames the XDP programs steered beyond what the
/// ingress side received (i.e. what the egress program steered).
fn relayed(t: &TestLab) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(150));
    let s = t.stats();
    (s.event("return_relayed"), s.xdp.redirected.saturating_sub(s.rx))
}

#[test]
fn replies_are_relayed_by_the_workers_in_a_symmetric_lab() {
    require_root!();
    let t = TestLab::with_daemon(|mut o| {
        o.symmetric = true;
        o
    });
    let before = relayed(&t);
    let r4 = t.curl(IpAddr::V4(ORIGIN_V4), HELLO, &client_sources_v4()[..40]);
    let r6 = t.curl(IpAddr::V6(ORIGIN_V6), HELLO, &client_sources_v6()[..20]);
    assert_eq!(r4.succeeded, r4.attempts, "{r4:?}");
    assert_eq!(r6.succeeded, r6.attempts, "{r6:?}");
    let after = relayed(&t);
    let (events, steered) = (after.0 - before.0, after.1 - before.1);
    // Every connection's replies (SYN-ACK, data, FIN) come back through the workers.
    assert!(events >= 3 * 60, "relayed {events} return frames for 60 connections");
    assert!(steered >= events, "the egress XDP program steered {steered}, the workers relayed {events}");
    let s = t.stats();
    assert!(s.tx_ingress >= events, "relayed frames leave by the ingress interface: {s:?}");
}

#[test]
fn nothing_comes_back_through_the_scrubber_in_the_asymmetric_lab() {
    require_root!();
    let t = TestLab::with_daemon(|o| o);
    let r = t.curl(IpAddr::V4(ORIGIN_V4), HELLO, &client_sources_v4()[..20]);
    assert_eq!(r.succeeded, r.attempts, "{r:?}");
    assert_eq!(relayed(&t), (0, 0), "the return path bypasses the scrubber");
}

/// A symmetric daemon that crashed leaves its return-direction program on the egress interface;
/// a daemon started without symmetric mode, which owns that interface, detaches it and says so.
#[test]
fn a_return_program_left_by_a_crash_is_detached() {
    require_root!();
    let mut t = TestLab::with_daemon(|mut o| {
        o.symmetric = true;
        o
    });
    t.kill_daemon().unwrap();
    assert!(xdp_attached(&t.ns(Role::Scrub), "out0"), "the crash leaves the return-direction program");
    let path = t.state().daemon.config.clone();
    let mut config = control::Config::load(&path).unwrap();
    config.forward.symmetric = false;
    std::fs::write(&path, config.to_toml()).unwrap();
    t.start_scrubber();
    let log = std::fs::read_to_string(&t.state().daemon.log).unwrap();
    assert!(log.contains("detached a scrubber XDP program an earlier run left on the egress interface"), "{log}");
    assert!(!xdp_attached(&t.ns(Role::Scrub), "out0"), "the orphaned program is gone");
    assert!(xdp_attached(&t.ns(Role::Scrub), "in0"), "the ingress program stays");
}
