//! The small JSON file that records a lab that is up (`/run/scrubber-lab/<id>/state.json`), so
//! `lab status` and `lab down` find it from another process, and after a crash.

use super::topo::{GreImpl, HostInfo, LabOptions, VlanImpl};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Directory holding every lab's state directory.
pub const STATE_ROOT: &str = "/run/scrubber-lab";

/// State directory of lab `id`.
pub fn state_dir(id: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(id)
}

/// State file of lab `id`.
pub fn state_file(id: &str) -> PathBuf {
    state_dir(id).join("state.json")
}

/// A background process the lab started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Namespace it runs in.
    pub namespace: String,
    /// Process id (`None` until started).
    pub pid: Option<u32>,
    /// Addresses it serves (`ip:port`, IPv6 in brackets) or, for the daemon, nothing.
    pub listen: Vec<String>,
    /// Its stdout/stderr log.
    pub log: PathBuf,
    /// The command line.
    pub command: Vec<String>,
}

/// The daemon's part of the state: reserved when the lab comes up, filled when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Namespace it runs in (`scrb<ID>-scrub`).
    pub namespace: String,
    /// The config the lab generated for it (from `source_config`, with this lab's control
    /// socket, symmetric and GRE settings).
    pub config: PathBuf,
    /// The config it was generated from.
    pub source_config: PathBuf,
    /// Control socket path (a filesystem path, so reachable from any namespace).
    pub control_socket: PathBuf,
    /// Prometheus endpoint address, inside the daemon's namespace (`ip netns exec NS curl ...`).
    pub metrics: String,
    /// The daemon's stdout/stderr log.
    pub log: PathBuf,
    /// Process id while running.
    pub pid: Option<u32>,
    /// The command line it was started with.
    pub command: Vec<String>,
}

/// Everything recorded about one lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// Instance id.
    pub id: String,
    /// `building` while being made, `up` once complete.
    pub status: String,
    /// Seconds since the Unix epoch when it was made.
    pub created_unix: u64,
    /// The options it was made with.
    pub options: LabOptions,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its namespaces.
    pub namespaces: Vec<String>,
    /// Hosts: role, namespace, interfaces with addresses and MACs.
    pub hosts: Vec<HostInfo>,
    /// How `--vlan` was realised on this kernel (`8021q` devices or `tc-bpf` tagging).
    pub vlan_impl: Option<VlanImpl>,
    /// How `--gre` was realised on this kernel (`kernel` device or `userspace` endpoint).
    pub gre_impl: Option<GreImpl>,
    /// The userspace GRE endpoint feeding origin's `gre1`, when `gre_impl` is `userspace`.
    pub gre_endpoint: Option<ServiceInfo>,
    /// Where the attack-marker counters are (`nft -j list counters table inet lab`).
    pub counters: CountersInfo,
    /// Origin's HTTP server, when started.
    pub http: Option<ServiceInfo>,
    /// Origin's UDP sequence service, when started.
    pub udp_echo: Option<ServiceInfo>,
    /// Origin's QUIC echo service, when started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<ServiceInfo>,
    /// The scrubber daemon.
    pub daemon: DaemonInfo,
}

/// Location of the nftables counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersInfo {
    /// Namespace (origin).
    pub namespace: String,
    /// `inet lab`.
    pub table: String,
    /// Interfaces counted as "from the scrubber".
    pub interfaces: Vec<String>,
}

impl LabState {
    /// Writes the state file atomically (temporary file, then rename).
    pub fn save(&self) -> std::io::Result<()> {
        let path = state_file(&self.id);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)
    }

    /// Reads lab `id`'s state file.
    pub fn load(id: &str) -> std::io::Result<LabState> {
        let path = state_file(id);
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
    }
}
