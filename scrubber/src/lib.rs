//! Library side of the `scrubber` package: what the binary and the integration tests share.
//! The namespace lab ([`lab`]: topology, origin services, counters, clients, scenarios and the
//! lab benchmark) and the control-socket client ([`ctl`]).

#![deny(unsafe_code)]

pub mod ctl;
pub mod lab;
