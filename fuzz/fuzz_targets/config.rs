//! Config fuzz target: arbitrary text through the TOML loader, the validator and the policy
//! compiler. Invariants: never panics; every error names the file.
#![no_main]

use control::{CompileInput, Config, SystemFacts, compile};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz.toml");
    match Config::from_toml(text, file) {
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
        Ok(config) => {
            let facts = SystemFacts::default();
            if let Err(e) =
                compile(&CompileInput { config: &config, file, generation: 1, facts: &facts, overlay: None })
            {
                assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
            }
        }
    }
});
