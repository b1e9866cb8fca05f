//! scrubber's control side: the configuration file and its compiler into the dataplane's
//! policy snapshot, prefix list files, and (in the daemon) the control socket and metrics.
//!
//! Dependencies point one way: `scrubber` → `control` → `dataplane`. This crate never touches a
//! worker's tables: it builds policy snapshots and reads the counters workers publish.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod amp;
pub mod commands;
pub mod compile;
pub mod config;
pub mod error;
pub mod lists;
pub mod quic;
pub mod report;
pub mod runtime;
pub mod syn;

pub use compile::{CompileInput, SystemFacts, compile, pipeline_config};
pub use config::Config;
pub use error::ConfigError;

use std::path::Path;

/// Loads, validates and compiles a config file with no system facts (what `scrubber check` does).
pub fn check_file(path: &Path) -> Result<(Config, dataplane::policy::Policy), ConfigError> {
    let config = Config::load(path)?;
    let facts = SystemFacts::default();
    let policy = compile(&CompileInput { config: &config, file: path, generation: 1, facts: &facts, overlay: None })?;
    Ok((config, policy))
}
