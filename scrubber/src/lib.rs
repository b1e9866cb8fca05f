//! Library side of the `scrubber` package: what the binary and the integration tests share.
//! Today that is the namespace lab ([`lab`]): topology, origin services, counters and clients.

#![deny(unsafe_code)]

pub mod lab;
