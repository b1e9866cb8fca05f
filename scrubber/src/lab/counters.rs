//! nftables counters in `origin`: the attack marker (DSCP CS1, set by the generator on every
//! attack packet and never by legitimate clients) counted by family and protocol on what arrives
//! from the scrubber (`o0`, its VLAN device, `gre1`), everything that arrives, and the TCP/UDP
//! packets origin sends back by each link — so a test can assert "no attack packet reached
//! origin" and "replies bypassed the scrubber". Read as JSON with `nft -j list counters`.
//!
//! Counters (all `packets` and `bytes`):
//! - `in_all`, `in_ip4`, `in_ip6`: every packet from the scrubber side (GRE outer headers
//!   excluded; the decapsulated packet is counted on `gre1`).
//! - `gre_outer`: GRE packets arriving on the egress link (before decapsulation).
//! - `attack_ip4_{tcp,udp,icmp,other}`, `attack_ip6_{tcp,udp,icmp,other}`: marked packets.
//! - `in_return`: TCP and UDP packets arriving on `r0` (none should, in either mode).
//! - `out_egress`, `out_return`: TCP and UDP packets origin sends by the egress link / `r0`.

use super::cmd::{Cmd, CmdError};
use serde::Serialize;
use std::collections::BTreeMap;

/// The nftables table (family `inet`) holding the lab counters.
pub const TABLE: &str = "lab";

/// Names of the attack-marker counters.
pub const ATTACK_COUNTERS: [&str; 8] = [
    "attack_ip4_tcp",
    "attack_ip4_udp",
    "attack_ip4_icmp",
    "attack_ip4_other",
    "attack_ip6_tcp",
    "attack_ip6_udp",
    "attack_ip6_icmp",
    "attack_ip6_other",
];

/// The ruleset for origin; `egress` are the interfaces traffic from the scrubber arrives on
/// (`o0`, or `o0.N` with `--vlan`, plus `gre1` with `--gre`).
pub fn origin_ruleset(egress: &[String]) -> String {
    let set = egress.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    let mut s = format!("table inet {TABLE} {{\n");
    for c in ["in_all", "in_ip4", "in_ip6", "gre_outer", "in_return", "out_egress", "out_return"]
        .iter()
        .chain(ATTACK_COUNTERS.iter())
    {
        s.push_str(&format!("  counter {c} {{ }}\n"));
    }
    s.push_str(&format!(
        "  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    iifname \"r0\" meta l4proto {{ tcp, udp }} counter name \"in_return\" return
    iifname \"r0\" return
    iifname != {{ {set} }} return
    meta l4proto gre counter name \"gre_outer\" return
    counter name \"in_all\"
    meta nfproto ipv4 counter name \"in_ip4\"
    meta nfproto ipv6 counter name \"in_ip6\"
    ip dscp cs1 meta l4proto tcp counter name \"attack_ip4_tcp\" return
    ip dscp cs1 meta l4proto udp counter name \"attack_ip4_udp\" return
    ip dscp cs1 meta l4proto icmp counter name \"attack_ip4_icmp\" return
    ip dscp cs1 counter name \"attack_ip4_other\" return
    ip6 dscp cs1 meta l4proto tcp counter name \"attack_ip6_tcp\" return
    ip6 dscp cs1 meta l4proto udp counter name \"attack_ip6_udp\" return
    ip6 dscp cs1 meta l4proto ipv6-icmp counter name \"attack_ip6_icmp\" return
    ip6 dscp cs1 counter name \"attack_ip6_other\" return
  }}
  chain post {{
    type filter hook postrouting priority 300; policy accept;
    meta l4proto != {{ tcp, udp }} return
    oifname {{ {set} }} counter name \"out_egress\" return
    oifname \"r0\" counter name \"out_return\" return
  }}
}}
"
    ));
    s
}

/// One counter's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Named counters of one table, as read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, Counter>);

impl Counters {
    /// Packets of counter `name` (0 when absent).
    pub fn packets(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |c| c.packets)
    }

    /// Marked (attack) packets that reached origin, all families and protocols.
    pub fn attack_packets(&self) -> u64 {
        ATTACK_COUNTERS.iter().map(|c| self.packets(c)).sum()
    }

    /// `self - earlier`, per counter (saturating).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| {
                    let e = earlier.0.get(k).copied().unwrap_or_default();
                    (
                        k.clone(),
                        Counter {
                            packets: v.packets.saturating_sub(e.packets),
                            bytes: v.bytes.saturating_sub(e.bytes),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Parses `nft -j list counters ...` output.
    pub fn from_nft_json(text: &str) -> Result<Counters, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("nft JSON: {e}"))?;
        let items = v.get("nftables").and_then(|x| x.as_array()).ok_or("nft JSON: no `nftables` array")?;
        let mut map = BTreeMap::new();
        for item in items {
            let Some(c) = item.get("counter") else { continue };
            let name = c.get("name").and_then(|x| x.as_str()).ok_or("nft JSON: counter without a name")?;
            let get = |k: &str| c.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            map.insert(name.to_string(), Counter { packets: get("packets"), bytes: get("bytes") });
        }
        Ok(Counters(map))
    }
}

/// Loads `ruleset` (nft syntax) into namespace `ns`.
pub fn load(ns: &str, ruleset: &str) -> Result<(), CmdError> {
    Cmd::new("nft").args(&["-f", "-"]).netns(ns).stdin(ruleset).run().map(|_| ())
}

/// Reads the named counters of table `family name` in namespace `ns`.
pub fn read(ns: &str, family: &str, table: &str) -> Result<Counters, CmdError> {
    let c = Cmd::new("nft").args(&["-j", "list", "counters", "table", family, table]).netns(ns);
    let out = c.run()?;
    Counters::from_nft_json(&out.stdout).map_err(|e| CmdError::Failed {
        cmdline: c.cmdline(),
        code: 0,
        stdout: out.stdout.clone(),
        stderr: e,
    })
}

/// Zeroes the named counters of table `family name` in namespace `ns`.
pub fn reset(ns: &str, family: &str, table: &str) -> Result<(), CmdError> {
    Cmd::new("nft").args(&["reset", "counters", "table", family, table]).netns(ns).run().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nft_json_and_subtracts() {
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "attack_ip4_udp", "table": "lab", "handle": 4, "packets": 7, "bytes": 700}},
            {"counter": {"family": "inet", "name": "attack_ip6_icmp", "table": "lab", "handle": 5, "packets": 2, "bytes": 208}},
            {"counter": {"family": "inet", "name": "in_all", "table": "lab", "handle": 3, "packets": 30, "bytes": 3000}}]}"#;
        let c = Counters::from_nft_json(text).unwrap();
        assert_eq!(c.packets("attack_ip4_udp"), 7);
        assert_eq!(c.attack_packets(), 9);
        assert_eq!(c.packets("missing"), 0);
        let d = c.since(&Counters(BTreeMap::from([("in_all".into(), Counter { packets: 10, bytes: 1000 })])));
        assert_eq!(d.packets("in_all"), 20);
        assert!(Counters::from_nft_json("{}").is_err());
    }

    #[test]
    fn ruleset_names_every_counter_it_uses() {
        let r = origin_ruleset(&["o0.7".into(), "gre1".into()]);
        assert!(r.contains(r#"iifname != { "o0.7", "gre1" } return"#));
        for line in r.lines().filter(|l| l.contains("counter name")) {
            let name = line.split('"').nth(line.matches('"').count() - 1).unwrap();
            assert!(r.contains(&format!("counter {name} {{ }}")), "{name}");
        }
    }
}
