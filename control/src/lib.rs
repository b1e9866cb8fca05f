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

#[cfg(test)]
mod tests {
    use super::*;
    use config::UmemPagesConfig;

    #[test]
    fn umem_pages_default_to_auto_and_take_three_words() {
        let load = |t: &str| Config::from_toml(t, Path::new("x.toml"));
        assert_eq!(load("").expect("empty config").dataplane.umem_pages, UmemPagesConfig::Auto);
        for (word, want) in
            [("auto", UmemPagesConfig::Auto), ("huge", UmemPagesConfig::Huge), ("small", UmemPagesConfig::Small)]
        {
            let c = load(&format!("[dataplane]\numem_pages = \"{word}\"\n")).expect("valid");
            assert_eq!(c.dataplane.umem_pages, want);
        }
        let e = load("[dataplane]\numem_pages = \"giant\"\n").expect_err("unknown word").to_string();
        assert!(e.contains("x.toml: line 2") && e.contains("`auto`, `huge`, `small`"), "{e}");
    }
}
