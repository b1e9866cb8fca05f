//! Rates over the last second and the last minute, from a history of counter totals sampled
//! once a second by the daemon (60 samples kept).

use dataplane::stats::Stats;
use dataplane::verdict::{DropReason, VerdictKind};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Samples kept: one minute at one per second.
const KEEP: usize = 61;

/// Counter history. See the module docs.
#[derive(Debug, Default)]
pub struct Rates {
    history: Mutex<VecDeque<(Instant, Stats)>>,
}

fn per_second(new: &Stats, old: &Stats, secs: f64) -> Value {
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    let mut verdicts = Map::new();
    for k in VerdictKind::ALL {
        verdicts.insert(k.name().into(), json!(d(new.packets[k.index()], old.packets[k.index()])));
    }
    let mut reasons = Map::new();
    for r in DropReason::ALL {
        let v = d(new.drops[r.index()], old.drops[r.index()]);
        if v > 0.0 {
            reasons.insert(r.name().into(), json!(v));
        }
    }
    json!({"packets": verdicts, "dropped": reasons, "seconds": secs})
}

impl Rates {
    /// Records the totals now.
    pub fn sample(&self, totals: &Stats) {
        if let Ok(mut h) = self.history.lock() {
            h.push_back((Instant::now(), totals.clone()));
            while h.len() > KEEP {
                h.pop_front();
            }
        }
    }

    /// Packets per second per verdict and drop reason, over the last second and the last minute
    /// (or as much of it as has been sampled).
    pub fn json(&self) -> Value {
        let Ok(h) = self.history.lock() else { return Value::Null };
        let Some((t_new, new)) = h.back() else { return json!({}) };
        let window = |n: usize| -> Value {
            if h.len() < 2 {
                return Value::Null;
            }
            let (t_old, old) = &h[h.len().saturating_sub(n + 1)];
            let secs = t_new.duration_since(*t_old).as_secs_f64();
            if secs <= 0.0 { Value::Null } else { per_second(new, old, secs) }
        };
        json!({"last_second": window(1), "last_minute": window(60)})
    }
}
