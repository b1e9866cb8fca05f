//! JSON views of the counters workers publish (`stats` on the control socket, lab reports).

use dataplane::stats::{Event, Stats, Table};
use dataplane::verdict::{DropReason, VerdictKind};
use serde_json::{Map, Value, json};

fn named<T: Copy>(items: &[T], name: impl Fn(T) -> &'static str, value: impl Fn(T) -> u64, skip_zero: bool) -> Value {
    let mut m = Map::new();
    for &item in items {
        let v = value(item);
        if !(skip_zero && v == 0) {
            m.insert(name(item).to_string(), json!(v));
        }
    }
    Value::Object(m)
}

/// Counters of one worker or of all of them: packets and bytes per verdict, drops per reason,
/// monitored (would-drop) per reason, events, tables. Zero reasons and events are left out.
pub fn stats_json(s: &Stats) -> Value {
    json!({
        "packets": named(VerdictKind::ALL, VerdictKind::name, |k| s.packets[k.index()], false),
        "bytes": named(VerdictKind::ALL, VerdictKind::name, |k| s.bytes[k.index()], false),
        "dropped": named(DropReason::ALL, DropReason::name, |r| s.drops[r.index()], true),
        "dropped_bytes": named(DropReason::ALL, DropReason::name, |r| s.drop_bytes[r.index()], true),
        "monitored": named(DropReason::ALL, DropReason::name, |r| s.monitored[r.index()], true),
        "events": named(Event::ALL, Event::name, |e| s.events[e.index()], true),
        "tables": Table::ALL.iter().map(|t| {
            let ts = s.tables[t.index()];
            (t.name().to_string(), json!({"len": ts.len, "capacity": ts.capacity, "evictions": ts.evictions}))
        }).collect::<Map<String, Value>>(),
        "batches": s.batches,
    })
}

/// Per-vector amplification counters, labelled with the catalogue's vector names: vector →
/// outcome → packets (vectors with no packets left out).
pub fn amp_json(s: &Stats, catalogue: &dataplane::amp::Catalogue) -> Value {
    use dataplane::amp::Outcome;
    let mut m = Map::new();
    for (i, v) in catalogue.vectors().iter().enumerate() {
        let row = named(Outcome::ALL, Outcome::name, |o| s.amp.packets_of(i, o), true);
        if row.as_object().is_some_and(|r| !r.is_empty()) {
            m.insert(v.name.clone(), row);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::verdict::Verdict;

    #[test]
    fn leaves_out_zero_reasons() {
        let mut s = Stats::default();
        s.verdict(Verdict::Drop(DropReason::Land), 60);
        s.verdict(Verdict::Forward, 100);
        let v = stats_json(&s);
        assert_eq!(v["packets"]["drop"], 1);
        assert_eq!(v["packets"]["forward"], 1);
        assert_eq!(v["dropped"]["land"], 1);
        assert!(v["dropped"].get("ttl_zero").is_none());
        assert_eq!(v["tables"]["src_buckets"]["evictions"], 0);
    }
}
