//! The lab topology as data (no I/O): namespaces, veth pairs, VLAN and GRE devices, addresses,
//! routes and sysctls, following `notes/lab-spec.md`. [`Plan::new`] turns [`LabOptions`] into
//! the exact `ip` batch lines the builder runs, so the safety rules (lab ranges only, no default
//! route, short interface names) are checked by unit tests without root.
//!
//! ```text
//!  client  c0 ─── e-c ┐                                   ┌ (asymmetric return path)
//!  attacker a0 ── e-a ┤ edge e-s ── in0 [scrub] out0 ── o0 origin r0 ── e-o edge
//!                     └──────────────────────────────────────────────────┘
//! ```

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Namespace name prefix; a lab's namespaces are `scrb<ID>-<role>`.
pub const NS_PREFIX: &str = "scrb";
/// The IPv4 lab range (RFC 2544 benchmarking).
pub const LAB_V4: &str = "198.18.0.0/15";
/// The IPv6 lab range (RFC 5180 benchmarking).
pub const LAB_V6: &str = "2001:2::/48";

/// Protected service address of the origin (on its `lo`).
pub const ORIGIN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 10);
/// Protected service address of the origin, IPv6.
pub const ORIGIN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x100, 0, 0, 0, 0x10);
/// Unprotected destination on the origin (routed like the protected one).
pub const UNPROTECTED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 10);
/// Unprotected destination on the origin, IPv6.
pub const UNPROTECTED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x200, 0, 0, 0, 0x10);
/// Protected prefixes (what the lab config protects).
pub const PROTECTED: [&str; 2] = ["198.18.100.0/24", "2001:2:0:100::/64"];
/// The attacker's address.
pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The attacker's IPv6 address.
pub const ATTACKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
/// scrub:in0's own address (traffic to it goes to the kernel).
pub const SCRUB_IN0_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// scrub:in0's own IPv6 address.
pub const SCRUB_IN0_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xa, 0, 0, 0, 2);
/// scrub:out0 (GRE local end).
pub const SCRUB_OUT0_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
/// origin:o0 (next hop of the scrubber, GRE endpoint).
pub const ORIGIN_O0_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 6);
/// Number of client source addresses (198.18.1.1 ..= 198.18.1.200, 2001:2:0:1::1 ..= ::c8). The
/// rest of the client's /24 and /64 holds no live host: spoofed floods come from there
/// (`traffic::ATTACK_SOURCES`), sharing the clients' prefixes but not their addresses.
pub const CLIENT_SOURCES: u8 = 200;
/// TCP port of the origin's HTTP server.
pub const HTTP_PORT: u16 = 80;
/// UDP port of the origin's sequence echo service.
pub const UDP_ECHO_PORT: u16 = 9000;

/// The client's `n`-th IPv4 source address, `n` in `1..=CLIENT_SOURCES`.
pub fn client_v4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, n)
}

/// The client's `n`-th IPv6 source address, `n` in `1..=CLIENT_SOURCES`.
pub fn client_v6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, u16::from(n))
}

/// All client IPv4 source addresses.
pub fn client_sources_v4() -> Vec<IpAddr> {
    (1..=CLIENT_SOURCES).map(|n| IpAddr::V4(client_v4(n))).collect()
}

/// All client IPv6 source addresses.
pub fn client_sources_v6() -> Vec<IpAddr> {
    (1..=CLIENT_SOURCES).map(|n| IpAddr::V6(client_v6(n))).collect()
}

/// A host of the lab; each lives in its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Legitimate clients (>= 200 source addresses).
    Client,
    /// Attack sources (the generator, hping3).
    Attacker,
    /// Upstream router: sends protected prefixes to the scrubber, returns replies to clients.
    Edge,
    /// The scrubber appliance (XDP on in0, forwards to out0; a kernel router when fail-open).
    Scrub,
    /// The protected origin (services on lo, attack-marker counters).
    Origin,
}

impl Role {
    /// Every role, in build order.
    pub const ALL: [Role; 5] = [Role::Client, Role::Attacker, Role::Edge, Role::Scrub, Role::Origin];

    /// The role's name, as used in namespace names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Attacker => "attacker",
            Role::Edge => "edge",
            Role::Scrub => "scrub",
            Role::Origin => "origin",
        }
    }

    /// Byte used in MAC addresses.
    fn code(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Attacker => 2,
            Role::Edge => 3,
            Role::Scrub => 4,
            Role::Origin => 5,
        }
    }

    /// Whether the host forwards packets (edge, and scrub for fail-open).
    pub fn forwards(self) -> bool {
        matches!(self, Role::Edge | Role::Scrub)
    }
}

/// How `--vlan` is realised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VlanImpl {
    /// 802.1Q devices (`e-s.N`, `in0.N`, `out0.N`, `o0.N`) hold the addresses, as the spec says.
    #[serde(rename = "8021q")]
    Devices,
    /// For kernels without 802.1Q: the addresses stay on the veths and tc BPF programs tag
    /// every frame on egress and untag on ingress (`vlan.bpf.c`). The tag is on the wire and
    /// in-band, so XDP on in0 sees tagged frames either way.
    #[serde(rename = "tc-bpf")]
    TcBpf,
}

/// How `--gre` is realised in origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GreImpl {
    /// A kernel GRE device `gre1`.
    Kernel,
    /// For kernels without ip_gre: TUN device `gre1` fed by a userspace endpoint
    /// (`gre_tun.py`, a raw IPPROTO_GRE socket bound to 198.18.0.6).
    Userspace,
}

/// Options of one lab instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabOptions {
    /// Instance id: 1 to 16 characters `[a-z0-9]`; namespaces are `scrb<ID>-<role>`.
    pub id: String,
    /// Route origin → client through the scrubber instead of around it.
    pub symmetric: bool,
    /// Carry the ingress and egress links on this VLAN.
    pub vlan: Option<u16>,
    /// Give origin a GRE endpoint `gre1` (remote 198.18.0.5) and the daemon GRE forwarding.
    pub gre: bool,
    /// Source config for the daemon (default `configs/lab.toml`).
    pub config: Option<PathBuf>,
    /// Owner process id for labs that must not outlive their creator (tests); a later sweep
    /// removes an ephemeral lab whose owner is gone.
    pub owner_pid: Option<u32>,
    /// Queues of the ingress and egress veth pairs (`numtxqueues`/`numrxqueues`), and workers
    /// of the daemon: one per queue of in0. The edge spreads forwarded flows over e-s's TX
    /// queues by flow hash, and a veth delivers a frame sent on TX queue q to its peer's RX
    /// queue q, so every worker receives a share.
    #[serde(default = "one_queue")]
    pub queues: u32,
}

fn one_queue() -> u32 {
    1
}

/// Most queues a lab link gets (`--queues`).
pub const MAX_QUEUES: u32 = 8;

impl LabOptions {
    /// Defaults (asymmetric, untagged, l2) for instance `id`.
    pub fn new(id: impl Into<String>) -> LabOptions {
        LabOptions { id: id.into(), symmetric: false, vlan: None, gre: false, config: None, owner_pid: None, queues: 1 }
    }

    /// Checks the id and the VLAN number.
    pub fn validate(&self) -> Result<(), String> {
        validate_id(&self.id)?;
        if let Some(v) = self.vlan
            && !(1..=4094).contains(&v)
        {
            return Err(format!("--vlan {v}: a VLAN id is 1 to 4094"));
        }
        if !(1..=MAX_QUEUES).contains(&self.queues) {
            return Err(format!("--queues {}: 1 to {MAX_QUEUES}", self.queues));
        }
        Ok(())
    }
}

/// Checks an instance id: 1 to 16 characters, lowercase ASCII letters and digits.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(format!("lab id {id:?}: use 1 to 16 characters a-z and 0-9"));
    }
    Ok(())
}

/// Namespace name of `role` in lab `id`.
pub fn ns_name(id: &str, role: Role) -> String {
    format!("{NS_PREFIX}{id}-{}", role.name())
}

/// Prefix shared by every namespace of lab `id` (the dash makes `scrb1-` differ from `scrb12-`).
pub fn ns_prefix(id: &str) -> String {
    format!("{NS_PREFIX}{id}-")
}

/// One interface of a host, as `lab status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceInfo {
    /// Interface name inside the host's namespace (e.g. `in0` or `in0.100`).
    pub interface: String,
    /// Link it belongs to: client, attacker, ingress, egress, return, gre.
    pub link: String,
    /// Underlying veth when this is a VLAN device.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent: Option<String>,
    /// VLAN id carried on this link (`--vlan`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<u16>,
    /// First IPv4 address with prefix length.
    pub ipv4: Option<String>,
    /// First IPv6 address with prefix length.
    pub ipv6: Option<String>,
    /// MAC address (for VLAN devices, the parent's).
    pub mac: Option<String>,
    /// Additional addresses (the client's source ranges), as `first-last/len`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub extra: Vec<String>,
}

/// One host of the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The role.
    pub role: Role,
    /// Its namespace.
    pub namespace: String,
    /// Its lab interfaces.
    pub interfaces: Vec<IfaceInfo>,
    /// Addresses on `lo` (origin's service addresses).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub loopback: Vec<String>,
}

/// One veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veth {
    /// Link name (client, attacker, ingress, egress, return).
    pub link: &'static str,
    /// Side A host.
    pub a: Role,
    /// Side A interface.
    pub a_if: &'static str,
    /// Side A MAC.
    pub a_mac: String,
    /// Side B host.
    pub b: Role,
    /// Side B interface.
    pub b_if: &'static str,
    /// Side B MAC.
    pub b_mac: String,
    /// Whether `--vlan` puts this link's addresses on a VLAN device.
    pub tagged: bool,
    /// TX and RX queues of each end (`--queues` on the ingress and egress links, else 1).
    pub queues: u32,
}

/// Everything the builder runs, per namespace, in order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The options it was made from.
    pub opts: LabOptions,
    /// How `--vlan` is realised (meaningful only with `opts.vlan`).
    pub vlan_impl: VlanImpl,
    /// How `--gre` is realised (meaningful only with `opts.gre`).
    pub gre_impl: GreImpl,
    /// Interfaces that get the tc VLAN programs ([`VlanImpl::TcBpf`]).
    pub tc_vlan: Vec<(Role, &'static str)>,
    /// Veth pairs.
    pub veths: Vec<Veth>,
    /// `ip link add` argument lists run in a namespace after the veths exist (VLAN, GRE).
    pub extra_links: Vec<(Role, Vec<String>)>,
    /// Phase 1 `ip -batch` lines per role: links up, addresses.
    pub addrs: Vec<(Role, Vec<String>)>,
    /// Phase 2 `ip -batch` lines per role: routes.
    pub routes: Vec<(Role, Vec<String>)>,
    /// Interfaces with addresses, per role (for per-interface sysctls and the status report).
    pub hosts: Vec<HostInfo>,
}

/// MAC `02:5c:<role>:<link>:00:<side>` (locally administered, unicast).
fn mac(role: Role, link: u8, side: u8) -> String {
    format!("02:5c:{:02x}:{link:02x}:00:{side:02x}", role.code())
}

struct LinkAddrs {
    link: &'static str,
    code: u8,
    a: (Role, &'static str, &'static str, &'static str),
    b: (Role, &'static str, &'static str, &'static str),
    tagged: bool,
}

/// The five links of the spec: (link, code, side A (role, if, v4, v6), side B, tagged by --vlan).
const LINKS: [LinkAddrs; 5] = [
    LinkAddrs {
        link: "client",
        code: 1,
        a: (Role::Client, "c0", "198.18.1.1/24", "2001:2:0:1::1/64"),
        b: (Role::Edge, "e-c", "198.18.1.254/24", "2001:2:0:1::fe/64"),
        tagged: false,
    },
    LinkAddrs {
        link: "attacker",
        code: 2,
        a: (Role::Attacker, "a0", "198.18.2.1/24", "2001:2:0:2::1/64"),
        b: (Role::Edge, "e-a", "198.18.2.254/24", "2001:2:0:2::fe/64"),
        tagged: false,
    },
    LinkAddrs {
        link: "ingress",
        code: 3,
        a: (Role::Edge, "e-s", "198.18.0.1/30", "2001:2:0:a::1/64"),
        b: (Role::Scrub, "in0", "198.18.0.2/30", "2001:2:0:a::2/64"),
        tagged: true,
    },
    LinkAddrs {
        link: "egress",
        code: 4,
        a: (Role::Scrub, "out0", "198.18.0.5/30", "2001:2:0:b::1/64"),
        b: (Role::Origin, "o0", "198.18.0.6/30", "2001:2:0:b::2/64"),
        tagged: true,
    },
    LinkAddrs {
        link: "return",
        code: 5,
        a: (Role::Origin, "r0", "198.18.0.9/30", "2001:2:0:c::2/64"),
        b: (Role::Edge, "e-o", "198.18.0.10/30", "2001:2:0:c::1/64"),
        tagged: false,
    },
];

impl Plan {
    /// The plan for `opts` (which must be valid), with the kernel features available.
    pub fn new(opts: &LabOptions, vlan_impl: VlanImpl, gre_impl: GreImpl) -> Plan {
        let mut veths = Vec::new();
        let mut extra_links = Vec::new();
        let mut tc_vlan = Vec::new();
        let mut addrs: Vec<(Role, Vec<String>)> =
            Role::ALL.iter().map(|r| (*r, vec!["link set lo up".into()])).collect();
        let mut hosts: Vec<HostInfo> = Role::ALL
            .iter()
            .map(|r| HostInfo {
                role: *r,
                namespace: ns_name(&opts.id, *r),
                interfaces: Vec::new(),
                loopback: Vec::new(),
            })
            .collect();
        let idx = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap_or(0);

        for l in &LINKS {
            let tagged = l.tagged && opts.vlan.is_some();
            veths.push(Veth {
                link: l.link,
                a: l.a.0,
                a_if: l.a.1,
                a_mac: mac(l.a.0, l.code, 1),
                b: l.b.0,
                b_if: l.b.1,
                b_mac: mac(l.b.0, l.code, 2),
                tagged,
                queues: if matches!(l.link, "ingress" | "egress") { opts.queues } else { 1 },
            });
            for (side, (role, ifname, v4, v6)) in [(1u8, l.a), (2u8, l.b)] {
                let lines = &mut addrs[idx(role)].1;
                lines.push(format!("link set {ifname} up"));
                let dev = match opts.vlan {
                    Some(_) if tagged && vlan_impl == VlanImpl::TcBpf => {
                        tc_vlan.push((role, ifname));
                        ifname.to_string()
                    }
                    Some(v) if tagged => {
                        let dev = format!("{ifname}.{v}");
                        extra_links.push((
                            role,
                            ["link", "add", "link", ifname, "name", &dev, "type", "vlan", "id", &v.to_string()]
                                .map(String::from)
                                .to_vec(),
                        ));
                        lines.push(format!("link set {dev} up"));
                        dev
                    }
                    _ => ifname.to_string(),
                };
                lines.push(format!("addr add {v4} dev {dev}"));
                lines.push(format!("addr add {v6} dev {dev} nodad"));
                let mut extra = Vec::new();
                if role == Role::Client {
                    // The client's many sources: .2 ..= .200 and ::2 ..= ::c8 beside the first.
                    for n in 2..=CLIENT_SOURCES {
                        lines.push(format!("addr add {}/24 dev {dev}", client_v4(n)));
                        lines.push(format!("addr add {}/64 dev {dev} nodad", client_v6(n)));
                    }
                    extra.push(format!("{}-{}/24", client_v4(1), client_v4(CLIENT_SOURCES)));
                    extra.push(format!("{}-{}/64", client_v6(1), client_v6(CLIENT_SOURCES)));
                }
                hosts[idx(role)].interfaces.push(IfaceInfo {
                    interface: dev.clone(),
                    link: l.link.to_string(),
                    parent: (dev != ifname).then(|| ifname.to_string()),
                    vlan: if tagged { opts.vlan } else { None },
                    ipv4: Some(v4.to_string()),
                    ipv6: Some(v6.to_string()),
                    mac: Some(mac(role, l.code, side)),
                    extra,
                });
            }
        }

        // Origin's service addresses on lo.
        let lo = [
            format!("{ORIGIN_V4}/32"),
            format!("{ORIGIN_V6}/128"),
            format!("{UNPROTECTED_V4}/32"),
            format!("{UNPROTECTED_V6}/128"),
        ];
        for a in &lo {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            addrs[idx(Role::Origin)].1.push(format!("addr add {a} dev lo{nodad}"));
        }
        hosts[idx(Role::Origin)].loopback = lo.to_vec();

        if opts.gre {
            let add: &[&str] = match gre_impl {
                GreImpl::Kernel => {
                    &["link", "add", "gre1", "type", "gre", "local", "198.18.0.6", "remote", "198.18.0.5", "ttl", "64"]
                }
                GreImpl::Userspace => &["tuntap", "add", "dev", "gre1", "mode", "tun"],
            };
            extra_links.push((Role::Origin, add.iter().map(|a| a.to_string()).collect()));
            addrs[idx(Role::Origin)].1.push("link set gre1 up".into());
            hosts[idx(Role::Origin)].interfaces.push(IfaceInfo {
                interface: "gre1".into(),
                link: "gre".into(),
                parent: None,
                vlan: None,
                ipv4: None,
                ipv6: None,
                mac: None,
                extra: vec![format!(
                    "GRE local 198.18.0.6 remote 198.18.0.5 ({})",
                    match gre_impl {
                        GreImpl::Kernel => "kernel device",
                        GreImpl::Userspace => "TUN device with a userspace endpoint",
                    }
                )],
            });
        }

        let (ret_v4, ret_v6) =
            if opts.symmetric { ("198.18.0.5", "2001:2:0:b::1") } else { ("198.18.0.10", "2001:2:0:c::1") };
        let routes = vec![
            (
                Role::Client,
                vec![format!("route add {LAB_V4} via 198.18.1.254"), format!("route add {LAB_V6} via 2001:2:0:1::fe")],
            ),
            (
                Role::Attacker,
                vec![format!("route add {LAB_V4} via 198.18.2.254"), format!("route add {LAB_V6} via 2001:2:0:2::fe")],
            ),
            (
                Role::Edge,
                vec![
                    "route add 198.18.100.0/24 via 198.18.0.2".into(),
                    "route add 198.18.200.0/24 via 198.18.0.2".into(),
                    "route add 2001:2:0:100::/64 via 2001:2:0:a::2".into(),
                    "route add 2001:2:0:200::/64 via 2001:2:0:a::2".into(),
                ],
            ),
            (
                Role::Scrub,
                vec![
                    "route add 198.18.100.0/24 via 198.18.0.6".into(),
                    "route add 198.18.200.0/24 via 198.18.0.6".into(),
                    "route add 2001:2:0:100::/64 via 2001:2:0:b::2".into(),
                    "route add 2001:2:0:200::/64 via 2001:2:0:b::2".into(),
                    format!("route add {LAB_V4} via 198.18.0.1"),
                    format!("route add {LAB_V6} via 2001:2:0:a::1"),
                ],
            ),
            (
                Role::Origin,
                vec![format!("route add {LAB_V4} via {ret_v4}"), format!("route add {LAB_V6} via {ret_v6}")],
            ),
        ];

        Plan { opts: opts.clone(), vlan_impl, gre_impl, tc_vlan, veths, extra_links, addrs, routes, hosts }
    }

    /// `sysctl -w` assignments for `role`, run before any interface exists: forwarding on the
    /// routers, rp_filter 0 and accept_dad 0 everywhere (`default` makes new interfaces inherit).
    pub fn base_sysctls(role: Role) -> Vec<String> {
        let mut v: Vec<String> = [
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]
        .map(String::from)
        .to_vec();
        let fwd = if role.forwards() { 1 } else { 0 };
        v.push(format!("net.ipv4.ip_forward={fwd}"));
        v.push(format!("net.ipv6.conf.all.forwarding={fwd}"));
        v.push(format!("net.ipv6.conf.default.forwarding={fwd}"));
        v
    }

    /// Per-interface `rp_filter=0` for every interface `role` has (veths, VLAN and GRE devices, lo).
    pub fn iface_sysctls(&self, role: Role) -> Vec<String> {
        let mut names = vec!["lo".to_string()];
        for v in &self.veths {
            if v.a == role {
                names.push(v.a_if.to_string());
            }
            if v.b == role {
                names.push(v.b_if.to_string());
            }
        }
        if let Some(h) = self.hosts.iter().find(|h| h.role == role) {
            for i in &h.interfaces {
                if !names.contains(&i.interface) {
                    names.push(i.interface.clone());
                }
            }
        }
        // sysctl writes a dot inside an interface name (a VLAN device) as a slash.
        names.iter().map(|n| format!("net.ipv4.conf.{}.rp_filter=0", n.replace('.', "/"))).collect()
    }

    /// Namespaces of this lab, in build order.
    pub fn namespaces(&self) -> Vec<String> {
        Role::ALL.iter().map(|r| ns_name(&self.opts.id, *r)).collect()
    }

    /// Namespace of `role`.
    pub fn ns(&self, role: Role) -> String {
        ns_name(&self.opts.id, role)
    }

    /// Interfaces in origin where traffic from the scrubber arrives (what the counters watch).
    pub fn origin_ingress(&self) -> Vec<String> {
        let mut v = vec![match (self.opts.vlan, self.vlan_impl) {
            (Some(n), VlanImpl::Devices) => format!("o0.{n}"),
            _ => "o0".to_string(),
        }];
        if self.opts.gre {
            v.push("gre1".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(p: &Plan) -> Vec<String> {
        let mut v: Vec<String> = p.addrs.iter().chain(p.routes.iter()).flat_map(|(_, l)| l.clone()).collect();
        v.extend(p.extra_links.iter().map(|(_, a)| a.join(" ")));
        v
    }

    fn in_lab(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v) => v.octets()[0] == 198 && (v.octets()[1] & 0xfe) == 18,
            IpAddr::V6(v) => v.segments()[0] == 0x2001 && v.segments()[1] == 2 && v.segments()[2] == 0,
        }
    }

    #[test]
    fn only_lab_addresses_and_never_a_default_route() {
        for opts in [
            LabOptions::new("0"),
            LabOptions { symmetric: true, vlan: Some(100), gre: true, ..LabOptions::new("t1x2") },
        ] {
            let p = Plan::new(&opts, VlanImpl::Devices, GreImpl::Kernel);
            for line in all_lines(&p) {
                assert!(!line.contains("default"), "{line}");
                for word in line.split_whitespace() {
                    let addr = word.split('/').next().unwrap_or(word);
                    if let Ok(a) = addr.parse::<IpAddr>() {
                        assert!(in_lab(a), "{a} in `{line}` is outside the lab ranges");
                    }
                }
            }
            for (_, routes) in &p.routes {
                for r in routes {
                    let dst = r.split_whitespace().nth(2).unwrap();
                    let net = dst.split('/').next().unwrap().parse::<IpAddr>().unwrap();
                    assert!(in_lab(net), "{r}");
                }
            }
        }
    }

    #[test]
    fn names_follow_the_spec() {
        let opts = LabOptions { vlan: Some(4094), gre: true, ..LabOptions::new("abc") };
        let p = Plan::new(&opts, VlanImpl::Devices, GreImpl::Kernel);
        assert_eq!(p.ns(Role::Scrub), "scrbabc-scrub");
        assert_eq!(ns_prefix("abc"), "scrbabc-");
        for h in &p.hosts {
            for i in &h.interfaces {
                assert!(i.interface.len() <= 15, "{}", i.interface);
            }
        }
        let scrub = p.hosts.iter().find(|h| h.role == Role::Scrub).unwrap();
        let names: Vec<_> = scrub.interfaces.iter().map(|i| i.interface.as_str()).collect();
        assert_eq!(names, ["in0.4094", "out0.4094"]);
        assert_eq!(p.veths[2].b_mac, "02:5c:04:03:00:02");
        assert!(p.iface_sysctls(Role::Scrub).contains(&"net.ipv4.conf.in0/4094.rp_filter=0".to_string()));
        assert!(p.extra_links.iter().any(|(r, a)| *r == Role::Origin && a.contains(&"gre1".to_string())));
        let macs: std::collections::BTreeSet<_> =
            p.veths.iter().flat_map(|v| [v.a_mac.clone(), v.b_mac.clone()]).collect();
        assert_eq!(macs.len(), 10);
    }

    #[test]
    fn client_has_200_sources_and_return_path_follows_the_option() {
        let p = Plan::new(&LabOptions::new("0"), VlanImpl::Devices, GreImpl::Kernel);
        let client = &p.addrs.iter().find(|(r, _)| *r == Role::Client).unwrap().1;
        assert_eq!(client.iter().filter(|l| l.starts_with("addr add 198.18.1.")).count(), 200);
        assert_eq!(client.iter().filter(|l| l.starts_with("addr add 2001:2:0:1::")).count(), 200);
        // The flood's sources share the client's prefixes but are never a live client address.
        let range = |r: &str| -> (IpAddr, IpAddr) {
            let (a, b) = r.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        let (first, last) = range(super::super::traffic::ATTACK_SOURCES);
        assert!(IpAddr::V4(client_v4(CLIENT_SOURCES)) < first && last < IpAddr::V4(Ipv4Addr::new(198, 18, 1, 254)));
        assert_eq!((first.to_string(), last.to_string()), ("198.18.1.201".into(), "198.18.1.253".into()));
        let (first, last) = range(super::super::traffic::ATTACK_SOURCES_V6);
        assert!(IpAddr::V6(client_v6(CLIENT_SOURCES)) < first);
        let in64 = |a: IpAddr| matches!(a, IpAddr::V6(x) if u128::from(x) >> 64 == 0x2001_0002_0000_0001);
        assert!(in64(first) && in64(last));
        let origin = |p: &Plan| p.routes.iter().find(|(r, _)| *r == Role::Origin).unwrap().1.clone();
        assert!(origin(&p)[0].ends_with("via 198.18.0.10"));
        let s = Plan::new(&LabOptions { symmetric: true, ..LabOptions::new("0") }, VlanImpl::Devices, GreImpl::Kernel);
        assert!(origin(&s)[0].ends_with("via 198.18.0.5"));
        assert!(origin(&s)[1].ends_with("via 2001:2:0:b::1"));
    }

    #[test]
    fn without_8021q_and_ip_gre_the_plan_uses_tc_and_tun() {
        let opts = LabOptions { vlan: Some(100), gre: true, ..LabOptions::new("0") };
        let p = Plan::new(&opts, VlanImpl::TcBpf, GreImpl::Userspace);
        assert_eq!(p.tc_vlan, [(Role::Edge, "e-s"), (Role::Scrub, "in0"), (Role::Scrub, "out0"), (Role::Origin, "o0")]);
        let lines: Vec<&String> = p.addrs.iter().flat_map(|(_, l)| l).collect();
        assert!(lines.iter().any(|l| *l == "addr add 198.18.0.2/30 dev in0"));
        assert!(!lines.iter().any(|l| l.split_whitespace().any(|w| w.ends_with(".100"))), "no VLAN devices");
        assert!(p.extra_links.iter().all(|(_, a)| !a.contains(&"vlan".to_string())));
        assert!(p.extra_links.iter().any(|(r, a)| *r == Role::Origin && a.join(" ") == "tuntap add dev gre1 mode tun"));
        assert_eq!(p.origin_ingress(), ["o0", "gre1"]);
        let in0 = &p.hosts[3].interfaces[0];
        assert_eq!((in0.interface.as_str(), in0.vlan), ("in0", Some(100)));
        let d = Plan::new(&opts, VlanImpl::Devices, GreImpl::Kernel);
        assert_eq!(d.origin_ingress(), ["o0.100", "gre1"]);
        assert!(d.tc_vlan.is_empty());
    }

    #[test]
    fn queues_apply_to_the_scrubbed_links_only() {
        let p = Plan::new(&LabOptions { queues: 2, ..LabOptions::new("0") }, VlanImpl::Devices, GreImpl::Kernel);
        let q: Vec<(&str, u32)> = p.veths.iter().map(|v| (v.link, v.queues)).collect();
        assert_eq!(q, [("client", 1), ("attacker", 1), ("ingress", 2), ("egress", 2), ("return", 1)]);
        assert!(LabOptions { queues: 0, ..LabOptions::new("0") }.validate().is_err());
        assert!(LabOptions { queues: MAX_QUEUES + 1, ..LabOptions::new("0") }.validate().is_err());
    }

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("0").is_ok());
        assert!(validate_id("t123x4").is_ok());
        for bad in ["", "A", "a-b", "a b", "12345678901234567"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(LabOptions { vlan: Some(0), ..LabOptions::new("0") }.validate().is_err());
        assert!(LabOptions { vlan: Some(4095), ..LabOptions::new("0") }.validate().is_err());
    }
}
