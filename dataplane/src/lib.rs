//! scrubber's data plane: the sans-IO packet pipeline and the compiled policy it reads.
//!
//! `pipeline::Pipeline` turns a batch of frames into one `verdict::Verdict` each, without calling
//! the OS, allocating or locking; everything it needs comes in as arguments (time, the policy
//! snapshot) or lives in bounded per-worker tables. The modules under it are one concern each:
//! `parse` (Ethernet/VLAN/IP/L4), `wire` (views smoltcp lacks), `policy` (prefix maps, lists,
//! rules), `filters` (baseline checks), `ratelimit`, `table` (bounded state), `forward`
//! (egress rewriting), `reply` (in-place replies), `stats` (counters), `mem` (huge pages for
//! the big tables), `build` (a frame builder for tests, benches and the generator).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod amp;
pub mod build;
pub mod capture;
pub mod enums;
pub mod filters;
pub mod forward;
pub mod frame;
pub mod mem;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod quic;
pub mod ratelimit;
pub mod reply;
pub mod stats;
pub mod syn;
pub mod table;
pub mod topk;
pub mod verdict;
pub mod wire;
pub mod worker;
pub mod xsk;

#[cfg(test)]
mod fixtures;

pub use addr::{Addr, Cidr};
pub use frame::Frame;
pub use pipeline::{Now, Pipeline, PipelineConfig};
pub use verdict::{DropReason, Verdict};
