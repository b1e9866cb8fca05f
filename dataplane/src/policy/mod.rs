//! The compiled, lookup-ready policy snapshot.
//!
//! A `Policy` is immutable once built. The control plane compiles configuration into one with
//! `PolicyBuilder`, then publishes it through a `PolicyCell` (an `ArcSwap`); workers load the
//! current snapshot once per batch, so a change takes effect at a batch boundary and a worker
//! never sees half a policy. Per-worker state (buckets, tables) is not in here: it survives swaps.
//!
//! Lookups a packet needs:
//! - destination → `DstClass`: a protected prefix (index into `prefixes`), or `Local` (the
//!   appliance's own addresses, link-local, multicast, broadcast: always passed to the kernel);
//! - source → allow list, deny list (each entry with an optional expiry), bogon ranges (RFC 6890
//!   special-purpose ranges minus configured exemptions).
//!
//! Each list has two layers: a base (the document's entries and list files, possibly millions of
//! prefixes, shared by `Arc` between snapshots so a runtime change does not rebuild it) and the
//! runtime entries (few, rebuilt with every snapshot). A source is on a list when either layer
//! holds a live (unexpired) entry covering it.

pub mod lpm;
pub mod rules;

use crate::addr::{Addr, Cidr};
use crate::ratelimit::Rate;
use arc_swap::ArcSwap;
use lpm::{Entry, LpmMap};
use rules::Rule;
use std::sync::Arc;

/// Expiry value meaning "never expires".
pub const NEVER: u64 = u64::MAX;

/// What happens to a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstClass {
    /// Inside a protected prefix: index into `Policy::prefixes`.
    Protected(u32),
    /// The appliance itself, link-local, multicast or broadcast: the kernel's.
    Local,
}

/// Whether a profile's drops are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Drop what the checks reject.
    #[default]
    Mitigate,
    /// Count what would be dropped (as `monitored`), forward it anyway.
    Monitor,
}

/// What to do with traffic for destinations outside every protected prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnprotectedAction {
    /// Hand to the kernel.
    #[default]
    Pass,
    /// Forward unchecked.
    Forward,
    /// Drop (reason `unprotected`).
    Drop,
}

/// Fragment policy of a profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FragmentPolicy {
    /// Forward fragments (after the other checks).
    #[default]
    Allow,
    /// Drop every fragment.
    Drop,
    /// Admit fragments within a per-destination budget.
    RateLimit(Rate),
}

/// Baseline filters a profile turns on (all on by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineFilters {
    /// Drop sources in RFC 6890 special-purpose ranges.
    pub bogon_sources: bool,
    /// Drop source == destination.
    pub land: bool,
    /// Drop NULL, SYN+FIN, SYN+RST and XMAS TCP flag combinations.
    pub tcp_flag_abuse: bool,
    /// Drop TTL / hop limit 0.
    pub ttl_zero: bool,
    /// Drop IPv4 packets carrying options.
    pub drop_ipv4_options: bool,
}

impl Default for BaselineFilters {
    fn default() -> Self {
        BaselineFilters {
            bogon_sources: true,
            land: true,
            tcp_flag_abuse: true,
            ttl_zero: true,
            drop_ipv4_options: true,
        }
    }
}

/// Settings applied to the destinations of one or more protected prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Name from config.
    pub name: String,
    /// Mitigate or monitor.
    pub mode: Mode,
    /// Baseline filters.
    pub filters: BaselineFilters,
    /// Fragment policy.
    pub fragments: FragmentPolicy,
    /// Budget per source address.
    pub src_limit: Option<Rate>,
    /// Budget per destination address.
    pub dst_limit: Option<Rate>,
    /// UDP amplification / reflection defence.
    pub amp: crate::amp::Settings,
    /// QUIC Initial validation and flow gating.
    pub quic: crate::quic::Settings,
    /// SYN authentication.
    pub syn: crate::syn::Settings,
}

impl Profile {
    /// A profile with every default (baseline filters on, no budgets, mitigate).
    pub fn named(name: &str) -> Profile {
        Profile {
            name: name.to_string(),
            mode: Mode::Mitigate,
            filters: BaselineFilters::default(),
            fragments: FragmentPolicy::Allow,
            src_limit: None,
            dst_limit: None,
            amp: crate::amp::Settings::default(),
            quic: crate::quic::Settings::default(),
            syn: crate::syn::Settings::default(),
        }
    }
}

/// One protected prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedPrefix {
    /// The prefix.
    pub cidr: Cidr,
    /// Index into `Policy::profiles`.
    pub profile: u16,
    /// GRE tunnel endpoint (IPv4) of the origin, for `gre` forwarding.
    pub gre_endpoint: Option<u32>,
}

/// How clean traffic leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardMode {
    /// Out of the egress interface to the next-hop MAC.
    #[default]
    L2,
    /// Inside IPv4 GRE to the prefix's origin endpoint.
    Gre,
    /// Back out of the ingress interface to the next-hop MAC.
    Hairpin,
}

/// VLAN handling on forwarded frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VlanAction {
    /// Leave tags as received.
    #[default]
    Keep,
    /// Remove all tags.
    Strip,
    /// Set the outermost tag's VLAN ID (push a tag onto untagged frames).
    Set(u16),
}

/// Forwarding parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardSettings {
    /// l2, gre or hairpin.
    pub mode: ForwardMode,
    /// Source MAC of forwarded frames (the egress interface's).
    pub src_mac: [u8; 6],
    /// Destination MAC of forwarded frames (the next hop's).
    pub next_hop_mac: [u8; 6],
    /// VLAN handling.
    pub vlan: VlanAction,
    /// Local tunnel address (IPv4, host order) for `gre`.
    pub gre_local: u32,
    /// Egress MTU (IP bytes) checked before encapsulating.
    pub egress_mtu: u16,
    /// Source MAC of relayed origin → client frames (the ingress interface's), symmetric only.
    pub return_src_mac: [u8; 6],
    /// Destination MAC of relayed origin → client frames (the upstream router's), symmetric only.
    pub return_next_hop_mac: [u8; 6],
}

/// The immutable policy snapshot. Build it with `PolicyBuilder`.
#[derive(Debug)]
pub struct Policy {
    /// Increases with each published snapshot.
    pub generation: u64,
    /// Forward everything unchecked (operator's escape hatch).
    pub bypass: bool,
    /// Protected prefixes (`DstClass::Protected` indexes this).
    pub prefixes: Vec<ProtectedPrefix>,
    /// Profiles (`ProtectedPrefix::profile` indexes this).
    pub profiles: Vec<Profile>,
    /// Traffic for unprotected destinations.
    pub unprotected: UnprotectedAction,
    /// Ordered firewall rules.
    pub rules: Vec<Rule>,
    /// Forwarding parameters.
    pub forward: ForwardSettings,
    /// Reflection catalogue and amplification table timeouts.
    pub amp: crate::amp::Global,
    /// QUIC timeouts, replay limit and budgets.
    pub quic: crate::quic::Global,
    /// SYN cookie secrets, verified-source TTL, failed-check budget.
    pub syn: crate::syn::Global,
    dst_v4: LpmMap<u32, DstClass>,
    dst_v6: LpmMap<u128, DstClass>,
    allow: Arc<PrefixList>,
    allow_runtime: PrefixList,
    deny: Arc<PrefixList>,
    deny_runtime: PrefixList,
    bogon_v4: LpmMap<u32, bool>,
    bogon_v6: LpmMap<u128, bool>,
}

#[inline]
fn lookup<V: Copy + PartialEq>(v4: &LpmMap<u32, V>, v6: &LpmMap<u128, V>, addr: Addr) -> Option<V> {
    if addr.is_v4() { v4.get(addr.v4_value()) } else { v6.get(addr.0) }
}

/// One layer of an allow or deny list: prefixes of both families with their expiry (monotonic
/// ns, `NEVER`). Built once, off the hot path.
#[derive(Clone, Debug)]
pub struct PrefixList {
    v4: LpmMap<u32, u64>,
    v6: LpmMap<u128, u64>,
    /// False when both maps are empty: most layers (the runtime ones above all) usually are,
    /// and the hot path then skips them with one inlined test.
    any: bool,
}

impl PrefixList {
    /// Builds the lookup tables of `entries` (a longer prefix wins over a shorter one).
    pub fn build(entries: impl IntoIterator<Item = (Cidr, u64)>) -> PrefixList {
        let (v4, v6) = split(entries);
        let (v4, v6) = (LpmMap::build(v4), LpmMap::build(v6));
        let any = !(v4.is_empty() && v6.is_empty());
        PrefixList { v4, v6, any }
    }

    /// True when the longest prefix covering `addr` has not expired at `now_ns`.
    #[inline(always)]
    pub fn live(&self, addr: Addr, now_ns: u64) -> bool {
        self.any && self.live_lookup(addr, now_ns)
    }

    #[inline(never)]
    fn live_lookup(&self, addr: Addr, now_ns: u64) -> bool {
        matches!(lookup(&self.v4, &self.v6, addr), Some(exp) if exp > now_ns)
    }

    /// Starts loading the records a lookup of `addr` will read.
    #[inline]
    pub fn prefetch(&self, addr: Addr) {
        if !self.any {
            return;
        }
        if addr.is_v4() {
            self.v4.prefetch(addr.v4_value());
        } else {
            self.v6.prefetch(addr.0);
        }
    }

    /// Starts loading the index entry `prefetch(addr)` will read.
    #[inline]
    pub fn prefetch_index(&self, addr: Addr) {
        if !self.any {
            return;
        }
        if addr.is_v4() {
            self.v4.prefetch_index(addr.v4_value());
        } else {
            self.v6.prefetch_index(addr.0);
        }
    }

    /// Number of prefixes (both families).
    pub fn len(&self) -> usize {
        self.v4.prefix_count() + self.v6.prefix_count()
    }

    /// True when the list holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for PrefixList {
    fn default() -> PrefixList {
        PrefixList::build(std::iter::empty())
    }
}

impl Policy {
    /// Classifies a destination; `None` means unprotected.
    #[inline]
    pub fn classify_dst(&self, dst: Addr) -> Option<DstClass> {
        lookup(&self.dst_v4, &self.dst_v6, dst)
    }

    /// True when `src` is on the allow list with an entry not expired at `now_ns`.
    #[inline]
    pub fn allowed(&self, src: Addr, now_ns: u64) -> bool {
        self.allow.live(src, now_ns) || self.allow_runtime.live(src, now_ns)
    }

    /// True when `src` is on the deny list with an entry not expired at `now_ns`.
    #[inline]
    pub fn denied(&self, src: Addr, now_ns: u64) -> bool {
        self.deny.live(src, now_ns) || self.deny_runtime.live(src, now_ns)
    }

    /// First stage of loading what `denied(src)` and `allowed(src)` will read: the lists' index
    /// entries. `prefetch_lists` is the second stage; a batch runs each stage over all its frames
    /// before the next, so the memory trips of independent frames overlap.
    #[inline]
    pub fn prefetch_list_index(&self, src: Addr) {
        self.deny.prefetch_index(src);
        self.deny_runtime.prefetch_index(src);
        self.allow.prefetch_index(src);
        self.allow_runtime.prefetch_index(src);
    }

    /// Starts loading what `denied(src)` and `allowed(src)` will read (large lists miss the cache).
    #[inline]
    pub fn prefetch_lists(&self, src: Addr) {
        self.deny.prefetch(src);
        self.deny_runtime.prefetch(src);
        self.allow.prefetch(src);
        self.allow_runtime.prefetch(src);
    }

    /// True when `src` lies in a special-purpose range that is not exempted.
    #[inline]
    pub fn is_bogon(&self, src: Addr) -> bool {
        lookup(&self.bogon_v4, &self.bogon_v6, src).unwrap_or(false)
    }

    /// The profile of a protected prefix.
    #[inline]
    pub fn profile_of(&self, prefix: u32) -> (&ProtectedPrefix, &Profile) {
        let p = &self.prefixes[prefix as usize];
        (p, &self.profiles[usize::from(p.profile)])
    }

    /// Number of deny-list prefixes (both families).
    pub fn deny_count(&self) -> usize {
        self.deny.len() + self.deny_runtime.len()
    }

    /// Number of allow-list prefixes (both families).
    pub fn allow_count(&self) -> usize {
        self.allow.len() + self.allow_runtime.len()
    }

    /// The base layer of the deny list (shared between snapshots while it does not change).
    pub fn deny_base(&self) -> &Arc<PrefixList> {
        &self.deny
    }
}

/// RFC 6890 (and successors) special-purpose IPv4 ranges that never source internet traffic.
pub const BOGONS_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// RFC 6890 (and successors) special-purpose IPv6 ranges that never source internet traffic.
pub const BOGONS_V6: &[&str] = &[
    "::/8",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Destinations that are always the kernel's: loopback, link-local, multicast, broadcast.
const LOCAL_DST: &[&str] =
    &["127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::1/128", "fe80::/10", "ff00::/8"];

/// Collects the parts of a policy and builds its lookup tables.
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    /// Snapshot generation to stamp.
    pub generation: u64,
    /// Bypass flag.
    pub bypass: bool,
    /// Profiles.
    pub profiles: Vec<Profile>,
    /// Protected prefixes.
    pub prefixes: Vec<ProtectedPrefix>,
    /// The appliance's own addresses.
    pub own: Vec<Addr>,
    /// Unprotected traffic.
    pub unprotected: UnprotectedAction,
    /// Allow list: prefix and expiry (monotonic ns; `NEVER`). With `allow_base` set, these are
    /// the runtime layer; without, they are the base.
    pub allow: Vec<(Cidr, u64)>,
    /// Deny list: prefix and expiry (as `allow`).
    pub deny: Vec<(Cidr, u64)>,
    /// A base layer of the allow list built earlier (shared, not rebuilt).
    pub allow_base: Option<Arc<PrefixList>>,
    /// A base layer of the deny list built earlier (shared, not rebuilt).
    pub deny_base: Option<Arc<PrefixList>>,
    /// Special-purpose ranges exempted from the bogon filter.
    pub bogon_exempt: Vec<Cidr>,
    /// Firewall rules.
    pub rules: Vec<Rule>,
    /// Forwarding parameters.
    pub forward: ForwardSettings,
    /// Reflection catalogue and amplification table timeouts.
    pub amp: crate::amp::Global,
    /// QUIC timeouts, replay limit and budgets.
    pub quic: crate::quic::Global,
    /// SYN cookie secrets, verified-source TTL, failed-check budget.
    pub syn: crate::syn::Global,
}

/// Entries of both families, ready for `LpmMap::build`.
type FamilyEntries<V> = (Vec<Entry<u32, V>>, Vec<Entry<u128, V>>);

fn split<V: Copy>(items: impl IntoIterator<Item = (Cidr, V)>) -> FamilyEntries<V> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (cidr, value) in items {
        match cidr {
            Cidr::V4(network, len) => v4.push(Entry { network, len, value }),
            Cidr::V6(network, len) => v6.push(Entry { network, len, value }),
        }
    }
    (v4, v6)
}

fn builtin(list: &'static [&'static str]) -> impl Iterator<Item = Cidr> {
    list.iter().map(|s| s.parse::<Cidr>().expect("built-in prefix lists are valid"))
}

impl PolicyBuilder {
    /// A builder with the default profile set empty and forwarding unset.
    pub fn new() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Adds a profile, returning its index.
    pub fn profile(&mut self, profile: Profile) -> u16 {
        self.profiles.push(profile);
        (self.profiles.len() - 1) as u16
    }

    /// Protects `cidr` with profile `profile`.
    pub fn protect(&mut self, cidr: Cidr, profile: u16) -> &mut Self {
        self.prefixes.push(ProtectedPrefix { cidr, profile, gre_endpoint: None });
        self
    }

    /// Builds the lookup tables. Own addresses take precedence over protected prefixes.
    pub fn build(self) -> Policy {
        let mut dst: Vec<(Cidr, DstClass)> =
            self.prefixes.iter().enumerate().map(|(i, p)| (p.cidr, DstClass::Protected(i as u32))).collect();
        // Local classes go last so that, for the same prefix, they win; longer prefixes win anyway.
        dst.extend(builtin(LOCAL_DST).map(|c| (c, DstClass::Local)));
        dst.extend(self.own.iter().map(|&a| (Cidr::host(a), DstClass::Local)));
        let (dst_v4, dst_v6) = split(dst);

        let layers = |base: Option<Arc<PrefixList>>, entries: Vec<(Cidr, u64)>| match base {
            Some(base) => (base, PrefixList::build(entries)),
            None => (Arc::new(PrefixList::build(entries)), PrefixList::default()),
        };
        let (allow, allow_runtime) = layers(self.allow_base, self.allow);
        let (deny, deny_runtime) = layers(self.deny_base, self.deny);

        let bogons = builtin(BOGONS_V4).chain(builtin(BOGONS_V6)).map(|c| (c, true));
        let exempt = self.bogon_exempt.iter().map(|&c| (c, false));
        let (bogon_v4, bogon_v6) = split(bogons.chain(exempt));

        Policy {
            generation: self.generation,
            bypass: self.bypass,
            prefixes: self.prefixes,
            profiles: self.profiles,
            unprotected: self.unprotected,
            rules: self.rules,
            forward: self.forward,
            amp: self.amp,
            quic: self.quic,
            syn: self.syn,
            dst_v4: LpmMap::build(dst_v4),
            dst_v6: LpmMap::build(dst_v6),
            allow,
            allow_runtime,
            deny,
            deny_runtime,
            bogon_v4: LpmMap::build(bogon_v4),
            bogon_v6: LpmMap::build(bogon_v6),
        }
    }
}

/// The published snapshot, swapped atomically by the control plane and loaded by workers.
pub type PolicyCell = ArcSwap<Policy>;

/// A new cell holding `policy`.
pub fn cell(policy: Policy) -> Arc<PolicyCell> {
    Arc::new(ArcSwap::from_pointee(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<IpAddr>().unwrap())
    }

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn own_addresses_beat_protected_prefixes() {
        let mut b = PolicyBuilder::new();
        let web = b.profile(Profile::named("web"));
        b.protect(c("198.18.10.0/24"), web).protect(c("2001:2:0:10::/64"), web);
        b.own.push(a("198.18.10.1"));
        let p = b.build();
        assert_eq!(p.classify_dst(a("198.18.10.1")), Some(DstClass::Local));
        assert_eq!(p.classify_dst(a("198.18.10.2")), Some(DstClass::Protected(0)));
        assert_eq!(p.classify_dst(a("2001:2:0:10::5")), Some(DstClass::Protected(1)));
        assert_eq!(p.classify_dst(a("198.18.11.1")), None);
        assert_eq!(p.classify_dst(a("ff02::1")), Some(DstClass::Local));
        assert_eq!(p.classify_dst(a("fe80::1")), Some(DstClass::Local));
        assert_eq!(p.classify_dst(a("255.255.255.255")), Some(DstClass::Local));
    }

    #[test]
    fn bogons_and_exemptions() {
        let p = PolicyBuilder::new().build();
        assert!(p.is_bogon(a("198.18.0.1")));
        assert!(p.is_bogon(a("2001:2::1")));
        assert!(p.is_bogon(a("10.1.2.3")));
        assert!(!p.is_bogon(a("8.8.8.8")));
        assert!(!p.is_bogon(a("2a00::1")));
        let mut b = PolicyBuilder::new();
        b.bogon_exempt = vec![c("198.18.0.0/15"), c("2001:2::/48")];
        let p = b.build();
        assert!(!p.is_bogon(a("198.18.0.1")));
        assert!(!p.is_bogon(a("2001:2::1")));
        assert!(p.is_bogon(a("2001:3::1")));
        assert!(p.is_bogon(a("10.1.2.3")));
    }

    #[test]
    fn list_entries_expire() {
        let mut b = PolicyBuilder::new();
        b.deny = vec![(c("203.0.113.0/24"), 1_000), (c("2001:db8::/32"), NEVER)];
        b.allow = vec![(c("203.0.113.7/32"), NEVER)];
        let p = b.build();
        assert!(p.denied(a("203.0.113.9"), 999));
        assert!(!p.denied(a("203.0.113.9"), 1_000));
        assert!(p.denied(a("2001:db8::1"), u64::MAX - 1));
        assert!(p.allowed(a("203.0.113.7"), 5));
        assert_eq!(p.deny_count(), 2);
    }

    #[test]
    fn a_shared_base_and_runtime_entries_both_count() {
        let base = Arc::new(PrefixList::build([(c("203.0.113.0/24"), NEVER)]));
        let mut b = PolicyBuilder::new();
        b.deny_base = Some(base.clone());
        // An expired, more specific runtime entry does not hide the base entry.
        b.deny = vec![(c("203.0.113.128/25"), 1_000), (c("198.51.100.0/24"), NEVER)];
        let p = b.build();
        assert!(Arc::ptr_eq(p.deny_base(), &base));
        assert!(p.denied(a("203.0.113.200"), 5_000));
        assert!(p.denied(a("198.51.100.1"), 5_000));
        assert!(!p.denied(a("192.0.2.1"), 0));
        assert_eq!(p.deny_count(), 3);
        assert!(!p.allowed(a("203.0.113.200"), 0));
    }
}
