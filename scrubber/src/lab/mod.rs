//! The namespace lab: the topology of `notes/lab-spec.md` built from veth pairs in network
//! namespaces (client, attacker → edge → scrub → origin, the return path around the scrubber by
//! default), the origin's services and attack-marker counters, and the clients that exercise
//! them; the traffic a running scrubber is tested with ([`traffic`]), what is read back from it
//! ([`observe`]), the scenarios of `scrubber lab run` ([`run`]) and the lab benchmark
//! ([`bench`]). Used by `scrubber lab` and by the root integration tests (the `tests` crate).
//!
//! Safety: everything lives in namespaces named `scrb<ID>-<role>`; veths are created directly
//! inside them; only 198.18.0.0/15 and 2001:2::/48 are used; no default route anywhere; every
//! external command runs under a timeout ([`cmd`]); [`Lab`] removes what it made when dropped
//! and [`down`] removes a lab from its id alone.
//!
//! Kernels without 802.1Q or GRE devices (such as a minimal VM kernel) still get both variants:
//! `--vlan` tags with tc BPF programs on the veths (`vlan.bpf.c`, built with clang at `up`), and
//! `--gre` uses a TUN device `gre1` fed by a userspace endpoint (`gre_tun.py`). The lab probes
//! the kernel at `up` and records which it used (`vlan_impl`, `gre_impl` in the state).

pub mod amp;
pub mod bench;
pub mod cli;
pub mod clients;
pub mod cmd;
pub mod config;
pub mod counters;
pub mod instance;
pub mod observe;
pub mod run;
pub mod services;
pub mod state;
pub mod throughput;
pub mod topo;
pub mod traffic;

pub use cmd::{Cmd, CmdError, Output, exec, exec_in};
pub use counters::Counters;
pub use instance::{
    DownReport, Lab, LabError, Leftovers, down, is_root, lab_namespaces, leftovers, status, sweep_orphans,
};
pub use state::{LabState, STATE_ROOT, state_dir};
pub use topo::{LabOptions, Role};
