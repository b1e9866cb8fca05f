//! Prefix list files: one CIDR (or bare address) per line, the format of public IP reputation
//! lists. `#` and `;` start comments (Spamhaus DROP writes `1.2.3.0/24 ; SBL123`), blank lines
//! are skipped, and an error names the file and line.

use crate::error::ConfigError;
use dataplane::Cidr;
use std::path::Path;

/// Parses list text; `file` names the source in errors.
pub fn parse_prefix_list(text: &str, file: &Path) -> Result<Vec<Cidr>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // Some lists carry extra columns after whitespace; the prefix is the first one.
        let first = line.split_whitespace().next().unwrap_or(line);
        let cidr =
            first.parse::<Cidr>().map_err(|e| ConfigError::new(file, &format!("line {}", i + 1), e.to_string()))?;
        out.push(cidr);
    }
    Ok(out)
}

/// Reads and parses a list file.
pub fn load_prefix_list(path: &Path) -> Result<Vec<Cidr>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read the list: {e}")))?;
    parse_prefix_list(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reputation_list_formats() {
        let text = "; Spamhaus-style header\n1.10.16.0/20 ; SBL256894\n\n# comment\n2001:db8::/32\n203.0.113.7\n5.6.7.0/24 extra columns\n";
        let v = parse_prefix_list(text, Path::new("drop.txt")).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2].to_string(), "203.0.113.7/32");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_prefix_list("10.0.0.0/8\n10.0.0.1/8\n", Path::new("bad.txt")).unwrap_err();
        assert_eq!(e.key, "line 2");
        assert!(e.to_string().starts_with("bad.txt: line 2: "), "{e}");
    }
}
