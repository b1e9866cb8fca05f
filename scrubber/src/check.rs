//! `scrubber check --config FILE`: parse, validate and compile a config offline.

use std::path::Path;
use std::process::ExitCode;

/// Exit status 0 and a one-line summary when valid; 2 and the error (file, key, what) otherwise.
pub fn run(path: &Path) -> ExitCode {
    match control::check_file(path) {
        Ok((config, policy)) => {
            println!(
                "{}: OK — {} protected prefixes, {} profiles, {} allow and {} deny entries, {} rules, {} workers",
                path.display(),
                policy.prefixes.len(),
                policy.profiles.len(),
                policy.allow_count(),
                policy.deny_count(),
                policy.rules.len(),
                config.dataplane.queues.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
