//! The running policy: the document (a `Config`) plus runtime overlays, compiled on every change.
//!
//! Operators change policy during an attack without a restart. Every change is applied to a copy
//! of the state, compiled (which validates it), and only then committed and published; a change
//! that does not compile leaves the running policy untouched and returns the error.
//!
//! What survives what (the contract `reload` documents):
//! - prefix, profile and rule edits change the running document; `reload` replaces the document
//!   with the file (write them back first with `policy save`);
//! - deny/allow entries added at runtime live in the overlay, with an optional TTL; they survive
//!   `reload` and `policy set` and disappear at expiry or on `del`;
//! - `bypass` is operator state and survives `reload`.

use crate::compile::{CompileInput, Files, ListCache, SystemFacts, compile_with};
use crate::config::{Config, PrefixConfig, RuleConfig};
use crate::error::ConfigError;
use dataplane::Cidr;
use dataplane::policy::Policy;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A runtime allow/deny entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// The prefix.
    pub cidr: String,
    /// Expiry on the daemon's monotonic clock (ns); `None` = until deleted.
    #[serde(skip)]
    pub expires_ns: Option<u64>,
    /// Who added it (peer uid).
    pub added_by: Option<u32>,
}

impl ListEntry {
    /// Whether the entry has expired at `now_ns`.
    pub fn expired(&self, now_ns: u64) -> bool {
        self.expires_ns.is_some_and(|t| t <= now_ns)
    }
}

/// Changes made at runtime outside the document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Runtime deny entries.
    pub deny: Vec<(Cidr, ListEntry)>,
    /// Runtime allow entries.
    pub allow: Vec<(Cidr, ListEntry)>,
    /// Forward everything unchecked.
    pub bypass: bool,
}

/// Which list a list command acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// The deny list.
    Deny,
    /// The allow list.
    Allow,
}

/// The running policy state. See the module docs.
#[derive(Clone, Debug)]
pub struct PolicyState {
    /// Config file (for `reload` and relative list paths).
    pub file: PathBuf,
    /// The running document.
    pub document: Config,
    /// Runtime overlay.
    pub overlay: Overlay,
    /// Generation of the last published snapshot.
    pub generation: u64,
    /// System facts learned at start.
    pub facts: SystemFacts,
    /// Base allow/deny lists of earlier compilations (shared by the copies a change makes).
    pub lists: std::sync::Arc<ListCache>,
}

impl PolicyState {
    /// A state for `document` loaded from `file`, at generation `generation`.
    pub fn new(file: &Path, document: Config, facts: SystemFacts, generation: u64) -> PolicyState {
        PolicyState {
            file: file.to_path_buf(),
            document,
            overlay: Overlay::default(),
            generation,
            facts,
            lists: Default::default(),
        }
    }

    /// Compiles this state as snapshot `generation`, reading the list files as they are now.
    pub fn compile(&self, generation: u64) -> Result<Policy, ConfigError> {
        self.compile_files(generation, Files::Reread)
    }

    fn compile_files(&self, generation: u64, files: Files) -> Result<Policy, ConfigError> {
        let mut facts = self.facts.clone();
        facts.wall_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        compile_with(
            &CompileInput {
                config: &self.document,
                file: &self.file,
                generation,
                facts: &facts,
                overlay: Some(&self.overlay),
            },
            Some(&self.lists),
            files,
        )
    }

    /// Applies `change` to a copy; if the copy compiles, commits it and returns the new snapshot.
    /// The list files are not read again (`Files::Reuse`): only a new document (`reload`,
    /// `policy set`) reads them.
    pub fn change(&mut self, change: impl FnOnce(&mut PolicyState) -> Result<(), String>) -> Result<Policy, String> {
        self.change_files(Files::Reuse, change)
    }

    fn change_files(
        &mut self,
        files: Files,
        change: impl FnOnce(&mut PolicyState) -> Result<(), String>,
    ) -> Result<Policy, String> {
        let mut next = self.clone();
        change(&mut next)?;
        let generation = self.generation + 1;
        let policy = next.compile_files(generation, files).map_err(|e| e.to_string())?;
        next.generation = generation;
        next.facts.syn_previous = Some(policy.syn.clone());
        next.facts.amp_previous = Some(vector_names(&policy));
        *self = next;
        Ok(policy)
    }

    /// Adds a prefix to a list (replacing an entry for the same prefix).
    pub fn list_add(
        &mut self,
        list: List,
        cidr: Cidr,
        expires_ns: Option<u64>,
        uid: Option<u32>,
    ) -> Result<Policy, String> {
        self.change(|s| {
            let entries = s.list_mut(list);
            entries.retain(|(c, _)| *c != cidr);
            entries.push((cidr, ListEntry { cidr: cidr.to_string(), expires_ns, added_by: uid }));
            Ok(())
        })
    }

    /// Removes a runtime entry; an entry from the document is removed from the document.
    pub fn list_del(&mut self, list: List, cidr: Cidr) -> Result<Policy, String> {
        self.change(|s| {
            let before = s.list_mut(list).len();
            s.list_mut(list).retain(|(c, _)| *c != cidr);
            let mut removed = before != s.list_mut(list).len();
            let doc = match list {
                List::Deny => &mut s.document.policy.deny,
                List::Allow => &mut s.document.policy.allow,
            };
            let before = doc.len();
            doc.retain(|text| text.parse::<Cidr>().map(|c| c != cidr).unwrap_or(true));
            removed |= before != doc.len();
            if removed { Ok(()) } else { Err(format!("{cidr} is not on the list")) }
        })
    }

    fn list_mut(&mut self, list: List) -> &mut Vec<(Cidr, ListEntry)> {
        match list {
            List::Deny => &mut self.overlay.deny,
            List::Allow => &mut self.overlay.allow,
        }
    }

    /// Whether a runtime entry has expired at `now_ns` (what `expire` would drop).
    pub fn expiry_due(&self, now_ns: u64) -> bool {
        self.overlay.deny.iter().chain(&self.overlay.allow).any(|e| e.1.expired(now_ns))
    }

    /// Drops runtime entries expired at `now_ns`; if anything expired, returns the new snapshot
    /// and the entries dropped (`deny 198.18.9.0/24`, for the log).
    pub fn expire(&mut self, now_ns: u64) -> Option<Result<(Policy, Vec<String>), String>> {
        let live = |e: &(Cidr, ListEntry)| !e.1.expired(now_ns);
        let expired: Vec<String> = [("deny", &self.overlay.deny), ("allow", &self.overlay.allow)]
            .into_iter()
            .flat_map(|(list, entries)| entries.iter().filter(|e| !live(e)).map(move |(c, _)| format!("{list} {c}")))
            .collect();
        if expired.is_empty() {
            return None;
        }
        Some(
            self.change(|s| {
                s.overlay.deny.retain(live);
                s.overlay.allow.retain(live);
                Ok(())
            })
            .map(|policy| (policy, expired)),
        )
    }

    /// Adds a protected prefix.
    pub fn prefix_add(&mut self, prefix: PrefixConfig) -> Result<Policy, String> {
        self.change(|s| {
            s.document.prefixes.push(prefix);
            Ok(())
        })
    }

    /// Removes a protected prefix.
    pub fn prefix_del(&mut self, cidr: Cidr) -> Result<Policy, String> {
        self.change(|s| {
            let before = s.document.prefixes.len();
            s.document.prefixes.retain(|p| p.cidr.parse::<Cidr>().map(|c| c != cidr).unwrap_or(true));
            if before == s.document.prefixes.len() { Err(format!("{cidr} is not protected")) } else { Ok(()) }
        })
    }

    /// Changes the profile of a protected prefix.
    pub fn prefix_set_profile(&mut self, cidr: Cidr, profile: &str) -> Result<Policy, String> {
        self.change(|s| {
            let p = s
                .document
                .prefixes
                .iter_mut()
                .find(|p| p.cidr.parse::<Cidr>().is_ok_and(|c| c == cidr))
                .ok_or_else(|| format!("{cidr} is not protected"))?;
            p.profile = profile.to_string();
            Ok(())
        })
    }

    /// Adds a rule at `position` (default: the end), giving it the next free id if it has none.
    pub fn rule_add(&mut self, mut rule: RuleConfig, position: Option<usize>) -> Result<Policy, String> {
        self.change(|s| {
            let rules = &mut s.document.rules;
            // Pin every existing rule's id so inserting does not renumber them.
            for (i, r) in rules.iter_mut().enumerate() {
                r.id.get_or_insert(i as u32 + 1);
            }
            if rule.id.is_none() {
                rule.id = Some(rules.iter().filter_map(|r| r.id).max().unwrap_or(0) + 1);
            }
            let at = position.unwrap_or(rules.len()).min(rules.len());
            rules.insert(at, rule);
            Ok(())
        })
    }

    /// Removes the rule with `id`.
    pub fn rule_del(&mut self, id: u32) -> Result<Policy, String> {
        self.change(|s| {
            let rules = &mut s.document.rules;
            for (i, r) in rules.iter_mut().enumerate() {
                r.id.get_or_insert(i as u32 + 1);
            }
            let before = rules.len();
            rules.retain(|r| r.id != Some(id));
            if before == rules.len() { Err(format!("no rule with id {id}")) } else { Ok(()) }
        })
    }

    /// Sets bypass.
    pub fn set_bypass(&mut self, on: bool) -> Result<Policy, String> {
        self.change(|s| {
            s.overlay.bypass = on;
            Ok(())
        })
    }

    /// Replaces the SYN-cookie key with `key` (random keys only), keeping the current one valid
    /// for one more period. A key from the config is the fleet's: it changes in the config, on
    /// every appliance, then `reload`.
    pub fn rotate_syn_key(&mut self, key: [u8; 16], wall_secs: u64) -> Result<Policy, String> {
        let mut running = self.facts.syn_previous.clone().ok_or("no SYN secrets are running yet")?;
        if !running.secrets.is_random() {
            return Err(
                "the SYN-cookie secret comes from the config (syn.secret or syn.secret_file): change it there \
                        on every appliance of the fleet, then reload"
                    .into(),
            );
        }
        running.secrets = running.secrets.rotate(dataplane::syn::cookie::Key::new(key), wall_secs).with_random(true);
        self.change(|s| {
            s.facts.syn_previous = Some(running);
            Ok(())
        })
    }

    /// Replaces the whole document.
    pub fn set_document(&mut self, document: Config) -> Result<Policy, String> {
        self.change_files(Files::Reread, |s| {
            s.document = document;
            Ok(())
        })
    }
}

/// The amplification vectors of `policy`, in catalogue order (`SystemFacts::amp_previous`).
pub fn vector_names(policy: &Policy) -> Vec<String> {
    policy.amp.catalogue.vectors().iter().map(|v| v.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `reload` command does once its checks pass: the file again, as a new document.
    fn reload(s: &mut PolicyState) -> Result<Policy, String> {
        let document = Config::load(&s.file).map_err(|e| e.to_string())?;
        s.set_document(document)
    }
    use crate::config::RuleActionConfig;
    use std::sync::Arc;

    fn state() -> PolicyState {
        let doc = Config::from_toml(
            "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n[policy]\ndeny = [\"198.18.66.0/24\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        PolicyState::new(Path::new("t.toml"), doc, SystemFacts::default(), 1)
    }

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn list_entries_apply_and_expire() {
        let mut s = state();
        let p = s.list_add(List::Deny, c("198.18.9.0/24"), Some(1_000), Some(0)).unwrap();
        assert_eq!(p.generation, 2);
        assert!(p.denied(dataplane::Addr::v4(0xc612_0901), 999));
        assert!(!s.expiry_due(500));
        assert!(s.expire(500).is_none());
        assert!(s.expiry_due(1_000));
        let (p, expired) = s.expire(1_000).unwrap().unwrap();
        assert_eq!(expired, ["deny 198.18.9.0/24"]);
        assert!(!p.denied(dataplane::Addr::v4(0xc612_0901), 0));
        assert_eq!(s.generation, 3);
        // A document entry can be deleted too.
        let p = s.list_del(List::Deny, c("198.18.66.0/24")).unwrap();
        assert_eq!(p.deny_count(), 0);
        assert!(s.list_del(List::Deny, c("198.18.66.0/24")).is_err());
    }

    #[test]
    fn a_change_that_does_not_compile_changes_nothing() {
        let mut s = state();
        let err = s
            .prefix_add(PrefixConfig { cidr: "198.18.1.1/24".into(), profile: "default".into(), gre_endpoint: None })
            .unwrap_err();
        assert!(err.contains("prefixes[1].cidr"), "{err}");
        assert_eq!(s.generation, 1);
        assert_eq!(s.document.prefixes.len(), 1);
        assert!(s.prefix_set_profile(c("198.18.100.0/24"), "nope").unwrap_err().contains("no profile named `nope`"));
    }

    #[test]
    fn rules_keep_their_ids() {
        let mut s = state();
        let rule = |a| RuleConfig {
            id: None,
            action: a,
            rate: None,
            protocol: None,
            src: None,
            dst: None,
            src_ports: None,
            dst_ports: None,
            tcp_flags: None,
            length: None,
            ttl: None,
        };
        s.rule_add(rule(RuleActionConfig::Drop), None).unwrap();
        s.rule_add(rule(RuleActionConfig::Allow), Some(0)).unwrap();
        let ids: Vec<_> = s.document.rules.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![Some(2), Some(1)]);
        let p = s.rule_del(1).unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].id, 2);
    }

    #[test]
    fn rotating_a_random_syn_key_keeps_the_old_one_for_a_period() {
        let mut s = state();
        s.facts.syn_random = [7; 16];
        let first = s.compile(1).unwrap();
        s.facts.syn_previous = Some(first.syn.clone());
        let p = s.rotate_syn_key([9; 16], 1_000).unwrap();
        assert_eq!(p.syn.secrets.current().bytes(), [9; 16]);
        assert_eq!(p.syn.secrets.previous().map(|k| k.bytes()), Some([7; 16]));
        // A later change keeps the rotated key and its grace period.
        let p = s.set_bypass(true).unwrap();
        assert_eq!(p.syn.secrets.current().bytes(), [9; 16]);
        assert_eq!(p.syn.secrets.previous().map(|k| k.bytes()), Some([7; 16]));
        // A configured key is the fleet's: not rotated from here.
        s.document.syn.secret = Some("00112233445566778899aabbccddeeff".into());
        s.set_bypass(false).unwrap();
        assert!(s.rotate_syn_key([1; 16], 2_000).unwrap_err().contains("comes from the config"));
    }

    #[test]
    fn list_files_are_built_once_and_read_again_when_they_change() {
        let dir = std::env::temp_dir().join(format!("scrubber-rt-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(dir.join("drop.txt"), "203.0.113.0/24\n198.51.100.0/24\n").unwrap();
        std::fs::write(&file, "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n[policy]\ndeny_files = [\"drop.txt\"]\n")
            .unwrap();
        let mut s = PolicyState::new(&file, Config::load(&file).unwrap(), SystemFacts::default(), 1);
        let first = s.compile(1).unwrap();
        let p = s.list_add(List::Deny, c("198.18.9.0/24"), None, Some(0)).unwrap();
        assert!(Arc::ptr_eq(first.deny_base(), p.deny_base()), "a runtime entry does not rebuild the file's list");
        assert_eq!(p.deny_count(), 3);
        assert!(p.denied(dataplane::Addr::v4(0xcb00_7101), 0) && p.denied(dataplane::Addr::v4(0xc612_0901), 0));
        std::fs::write(dir.join("drop.txt"), "203.0.113.0/24\n").unwrap();
        let p = reload(&mut s).unwrap();
        assert!(!Arc::ptr_eq(first.deny_base(), p.deny_base()), "the changed file is read again");
        assert_eq!(p.deny_count(), 2, "one file entry and the runtime entry");
        // The file replaced by a download: while it is missing, runtime changes (bypass, an
        // entry, an expiry) keep the list read last; a reload reports the file and changes nothing.
        std::fs::write(dir.join("drop.txt"), "192.0.2.0/24\n").unwrap();
        std::fs::remove_file(dir.join("drop.txt")).unwrap();
        let p = s.set_bypass(true).unwrap();
        assert!(p.bypass && p.denied(dataplane::Addr::v4(0xcb00_7101), 0), "the list read last stays");
        s.list_add(List::Deny, c("198.18.10.0/24"), Some(5), Some(0)).unwrap();
        assert!(s.expire(10).expect("one entry expired").is_ok());
        let generation = s.generation;
        let e = reload(&mut s).unwrap_err();
        assert!(e.contains("policy.deny_files[0]") && e.contains("drop.txt: cannot read the list"), "{e}");
        assert_eq!(s.generation, generation);
        std::fs::write(dir.join("drop.txt"), "192.0.2.0/24\n").unwrap();
        let p = reload(&mut s).unwrap();
        assert!(p.denied(dataplane::Addr::v4(0xc000_0201), 0) && !p.denied(dataplane::Addr::v4(0xcb00_7101), 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_secret_file_and_catalogue_are_read_again_by_reload_only() {
        let dir = std::env::temp_dir().join(format!("scrubber-rt-texts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(dir.join("key"), "00112233445566778899aabbccddeeff\n").unwrap();
        std::fs::write(&file, "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n[syn]\nsecret_file = \"key\"\n").unwrap();
        let mut s = PolicyState::new(&file, Config::load(&file).unwrap(), SystemFacts::default(), 1);
        let first = s.compile(1).unwrap();
        // A new key written for the next reload does not take effect with an unrelated change,
        // and a missing key file does not block one.
        std::fs::write(dir.join("key"), "ffeeddccbbaa99887766554433221100\n").unwrap();
        let p = s.list_add(List::Deny, c("198.18.9.0/24"), None, Some(0)).unwrap();
        assert_eq!(p.syn.secrets, first.syn.secrets);
        std::fs::remove_file(dir.join("key")).unwrap();
        assert_eq!(s.set_bypass(true).unwrap().syn.secrets, first.syn.secrets);
        let e = reload(&mut s).unwrap_err();
        assert!(e.contains("syn.secret_file") && e.contains("key"), "{e}");
        std::fs::write(dir.join("key"), "ffeeddccbbaa99887766554433221100\n").unwrap();
        assert_ne!(reload(&mut s).unwrap().syn.secrets, first.syn.secrets, "reload reads the new key");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bypass_and_reload_keep_the_overlay() {
        let dir = std::env::temp_dir().join(format!("scrubber-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n").unwrap();
        let mut s = PolicyState::new(&file, Config::load(&file).unwrap(), SystemFacts::default(), 1);
        s.set_bypass(true).unwrap();
        s.list_add(List::Allow, c("198.18.5.5/32"), None, None).unwrap();
        std::fs::write(&file, "[[prefixes]]\ncidr = \"198.18.100.0/24\"\n[[prefixes]]\ncidr = \"198.18.101.0/24\"\n")
            .unwrap();
        let p = reload(&mut s).unwrap();
        assert!(p.bypass);
        assert_eq!(p.prefixes.len(), 2);
        assert_eq!(p.allow_count(), 1);
        std::fs::write(&file, "[[prefixes]]\ncidr = \"banana\"\n").unwrap();
        assert!(reload(&mut s).unwrap_err().contains("prefixes[0].cidr"));
        assert_eq!(s.document.prefixes.len(), 2, "the old policy stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
