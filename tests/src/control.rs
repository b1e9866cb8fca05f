//! Helpers for the control-plane tests (`tests/tests/control.rs`): a raw connection to the
//! control socket, a sequence-numbered UDP stream that runs until it is stopped, a strict parser
//! of the Prometheus / OpenMetrics text format, a pcapng reader that returns each packet's
//! comment, and the daemon's JSON log.

use crate::{Cmd, Role, TestLab, scrubber_bin};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// `scrubctl`, beside the `scrubber` binary under test.
pub fn scrubctl_bin() -> PathBuf {
    let bin = scrubber_bin().with_file_name("scrubctl");
    assert!(bin.is_file(), "{} is missing (build it: cargo build -p scrubber)", bin.display());
    bin
}

/// One connection to the control socket, kept open for many requests.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    /// Connects (panics with the error).
    pub fn open(socket: &Path) -> Conn {
        Conn::try_open(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()))
    }

    /// Connects, with a 15 s read timeout.
    pub fn try_open(socket: &Path) -> std::io::Result<Conn> {
        let s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Conn { writer: s.try_clone()?, reader: BufReader::new(s) })
    }

    /// A second handle on the connection for writing (from another thread).
    pub fn clone_writer(&self) -> UnixStream {
        self.writer.try_clone().expect("clone a Unix stream")
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one response line as JSON; `None` at end of stream.
    pub fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("response {line:?} is not JSON: {e}"))),
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// True when the daemon has closed the connection (reads end of stream or a reset).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    /// Sends `{"id": id, "version": 1, "cmd": cmd, ...args}` and returns the whole response
    /// (checking that it carries the same id and the protocol version).
    pub fn call(&mut self, id: u64, cmd: &str, args: Value) -> Value {
        let mut req = if args.is_object() { args } else { json!({}) };
        req["id"] = json!(id);
        req["version"] = json!(1);
        req["cmd"] = json!(cmd);
        self.send_raw(format!("{req}\n").as_bytes()).unwrap_or_else(|e| panic!("sending {cmd}: {e}"));
        let resp = self.read().unwrap_or_else(|| panic!("{cmd}: the daemon closed the connection"));
        assert_eq!(resp["id"], json!(id), "{cmd}: the response carries the request's id: {resp}");
        assert_eq!(resp["version"], json!(1), "{cmd}: {resp}");
        resp
    }

    /// [`Conn::call`] that must succeed; returns the `result`.
    pub fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let resp = self.call(7, cmd, args.clone());
        assert_eq!(resp["ok"], json!(true), "{cmd} {args}: {resp}");
        resp["result"].clone()
    }

    /// [`Conn::call`] that must fail with `code`; returns the error message.
    pub fn err(&mut self, cmd: &str, args: Value, code: &str) -> String {
        let resp = self.call(8, cmd, args.clone());
        assert_eq!(resp["ok"], json!(false), "{cmd} {args}: expected {code}: {resp}");
        assert_eq!(resp["error"]["code"], json!(code), "{cmd} {args}: {resp}");
        resp["error"]["message"].as_str().unwrap_or_default().to_string()
    }
}

/// A sequence-numbered UDP stream from the client namespace to origin's sequence service
/// (`scrubber lab udp-probe`), running until [`Stream::stop`]; the report says which numbers
/// were answered, i.e. reached origin (answers return around the scrubber).
#[derive(Debug)]
pub struct Stream {
    child: Option<Child>,
    log: PathBuf,
}

impl Stream {
    /// Starts `rate` requests per second from the first `sources` client addresses to
    /// 198.18.100.10:9000, for at most `max` (it is meant to be stopped before).
    pub fn start(t: &TestLab, rate: u64, sources: usize, max: Duration) -> Stream {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let log = t.dir().join(format!("stream-{}.log", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let last = crate::client_sources_v4()[sources.clamp(1, 250) - 1];
        let target = std::net::SocketAddr::new(crate::topo::ORIGIN_V4.into(), crate::topo::UDP_ECHO_PORT);
        let bin = scrubber_bin().display().to_string();
        let count = (rate as f64 * max.as_secs_f64()) as u64;
        let child = Cmd::from_argv(&[bin.as_str(), "lab", "udp-probe"])
            .args(&["--target", &target.to_string(), "--sources", &format!("198.18.1.1-{last}")])
            .args(&["--count", &count.to_string(), "--rate", &rate.to_string(), "--wait-ms", "1000"])
            .netns(t.ns(Role::Client))
            .spawn_logged(&log)
            .unwrap_or_else(|e| panic!("start the stream: {e}"));
        // Let it bind its sockets and send the first requests.
        std::thread::sleep(Duration::from_millis(300));
        Stream { child: Some(child), log }
    }

    /// Stops sending (SIGTERM), waits for the answers and returns the report.
    pub fn stop(mut self) -> crate::ProbeReport {
        let mut child = self.child.take().expect("running until stopped");
        let _ = Cmd::new("kill").args(&["-TERM", &child.id().to_string()]).run();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the stream did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("stream log: {text}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stream report {line:?}: {e}"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines of the daemon's log, each of which must be a JSON object (`--log-format json`).
pub fn json_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"));
            assert!(v.is_object() && v["fields"]["message"].is_string(), "log line without a message: {l}");
            v
        })
        .collect()
}

/// Log events whose message is `message`: their `fields`.
pub fn log_events<'a>(log: &'a [Value], message: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["fields"]["message"] == message).map(|v| &v["fields"]).collect()
}

/// One packet of a pcapng file.
#[derive(Clone, Debug)]
pub struct CapturedPacket {
    /// Time stamp (since the Unix epoch).
    pub timestamp: Duration,
    /// Bytes kept.
    pub data: Vec<u8>,
    /// Length on the wire.
    pub original_len: u32,
    /// The packet's comment option.
    pub comment: Option<String>,
}

impl CapturedPacket {
    /// `key=value` words of the comment (`verdict`, `reason`, `sni`, ...).
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.comment_text()
            .split_whitespace()
            .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    /// The comment, or "" when there is none.
    pub fn comment_text(&self) -> &str {
        self.comment.as_deref().unwrap_or("")
    }

    /// UDP destination port, for an untagged IPv4 or IPv6 frame carrying UDP.
    pub fn udp_dst_port(&self) -> Option<u16> {
        let d = &self.data;
        let l4 = match d.get(12..14)? {
            [0x08, 0x00] if d.get(23) == Some(&17) => 14 + usize::from(d.get(14)? & 0x0f) * 4,
            [0x86, 0xdd] if d.get(20) == Some(&17) => 14 + 40,
            _ => return None,
        };
        d.get(l4 + 2..l4 + 4).map(|p| u16::from_be_bytes([p[0], p[1]]))
    }
}

/// Every packet of the pcapng file at `path` (panics if it does not parse).
pub fn read_pcapng(path: &Path) -> Vec<CapturedPacket> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapNgReader::new(file).unwrap_or_else(|e| panic!("{}: not pcapng: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.unwrap_or_else(|e| panic!("{}: bad block: {e}", path.display())) {
            Block::EnhancedPacket(p) => out.push(CapturedPacket {
                timestamp: p.timestamp,
                data: p.data.to_vec(),
                original_len: p.original_len,
                comment: p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                }),
            }),
            Block::InterfaceDescription(_) | Block::SectionHeader(_) => {}
            other => panic!("{}: unexpected block {other:?}", path.display()),
        }
    }
    out
}

/// A strict parser of the Prometheus text exposition format in its OpenMetrics 1.0 form (what
/// `prometheus-client` writes): every rule the format states that a scraper relies on is
/// checked, and a violation is an error naming the line.
pub mod prom {
    use std::collections::{BTreeMap, BTreeSet};

    /// One sample line.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Sample {
        /// Sample name (`family_total`, `family_bucket`, ...).
        pub name: String,
        /// Labels.
        pub labels: BTreeMap<String, String>,
        /// Value.
        pub value: f64,
    }

    /// A metric family: its metadata and samples.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Family {
        /// Family name.
        pub name: String,
        /// counter, gauge, histogram, ...
        pub kind: String,
        /// HELP text.
        pub help: Option<String>,
        /// Samples, in order.
        pub samples: Vec<Sample>,
    }

    /// A parsed exposition.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct Exposition {
        /// Families by name.
        pub families: BTreeMap<String, Family>,
    }

    impl Exposition {
        /// The family `name` (panics naming it when absent).
        pub fn family(&self, name: &str) -> &Family {
            self.families.get(name).unwrap_or_else(|| panic!("no metric family {name}"))
        }

        /// Value of the sample `name` whose labels include every pair of `labels`; 0 when none
        /// matches (a counter not written yet).
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            self.families
                .values()
                .flat_map(|f| &f.samples)
                .filter(|s| {
                    s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| s.value)
                .sum()
        }
    }

    const TYPES: [&str; 8] =
        ["counter", "gauge", "histogram", "gaugehistogram", "stateset", "info", "summary", "unknown"];

    fn valid_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        chars.next().is_some_and(first_ok) && chars.all(|c| first_ok(c) || c.is_ascii_digit())
    }

    fn parse_value(s: &str) -> Option<f64> {
        match s {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && !s.is_empty() => s.parse().ok(),
            _ => None,
        }
    }

    /// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
    fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut labels = BTreeMap::new();
        let mut rest = s.strip_prefix('{').ok_or("labels must start with `{`")?;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((labels, r));
            }
            let eq = rest.find('=').ok_or("a label without `=`")?;
            let name = &rest[..eq];
            if !valid_name(name, false) {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("a label value must be quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape in a label value: {other:?}")),
                    },
                    Some((_, '\n')) => return Err("a raw newline in a label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.insert(name.to_string(), value).is_some() {
                return Err(format!("label {name} given twice"));
            }
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("labels must be separated by `,`".into());
            }
        }
    }

    /// The family a sample named `sample` belongs to, given the family declared last.
    fn sample_allowed(family: &Family, sample: &str) -> bool {
        let n = family.name.as_str();
        let suffix = |s: &str| sample == format!("{n}{s}");
        match family.kind.as_str() {
            "counter" => suffix("_total") || suffix("_created"),
            "histogram" | "gaugehistogram" => {
                suffix("_bucket")
                    || suffix("_count")
                    || suffix("_sum")
                    || suffix("_created")
                    || suffix("_gcount")
                    || suffix("_gsum")
            }
            "summary" => sample == n || suffix("_count") || suffix("_sum") || suffix("_created"),
            "info" => suffix("_info"),
            _ => sample == n,
        }
    }

    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        let mut current: Option<Family> = None;
        let mut seen_series = BTreeSet::new();
        let mut eof = false;
        if !text.ends_with('\n') {
            return Err("the exposition must end with a newline".into());
        }
        for (i, line) in text.lines().enumerate() {
            let at = |msg: String| format!("line {}: {msg}: {line:?}", i + 1);
            if eof {
                return Err(at("text after `# EOF`".into()));
            }
            if line == "# EOF" {
                eof = true;
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (kw, name, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
                if !valid_name(name, true) {
                    return Err(at(format!("bad metric name {name:?}")));
                }
                let same = current.as_ref().is_some_and(|f| f.name == name);
                if !same {
                    if let Some(f) = current.take() {
                        finish(&mut out, f)?;
                    }
                    if out.families.contains_key(name) {
                        return Err(at(format!("family {name} appears twice (families must not interleave)")));
                    }
                    current =
                        Some(Family { name: name.to_string(), kind: "unknown".into(), help: None, samples: vec![] });
                }
                let f = current.as_mut().expect("set above");
                if !f.samples.is_empty() {
                    return Err(at("metadata after the family's samples".into()));
                }
                match (kw, rest) {
                    ("TYPE", Some(t)) if TYPES.contains(&t) => f.kind = t.to_string(),
                    ("TYPE", t) => return Err(at(format!("bad type {t:?}"))),
                    ("HELP", h) => f.help = Some(h.unwrap_or("").to_string()),
                    ("UNIT", _) => {}
                    _ => return Err(at(format!("unknown metadata `{kw}`"))),
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                return Err(at("empty lines and other comments are not allowed".into()));
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("a sample needs a value".into()))?;
            let name = &line[..name_end];
            if !valid_name(name, true) {
                return Err(at(format!("bad sample name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let rest = rest.strip_prefix(' ').ok_or_else(|| at("one space before the value".into()))?;
            let mut words = rest.split(' ');
            let value_text = words.next().unwrap_or("");
            let value = parse_value(value_text).ok_or_else(|| at(format!("bad value {value_text:?}")))?;
            if let Some(ts) = words.next()
                && (ts.starts_with('#') || parse_value(ts).is_none())
            {
                return Err(at(format!("bad timestamp {ts:?}")));
            }
            if words.next().is_some() {
                return Err(at("trailing text after the timestamp".into()));
            }
            let Some(f) = current.as_mut() else {
                return Err(at("a sample before any `# TYPE`".into()));
            };
            if !sample_allowed(f, name) {
                return Err(at(format!("sample {name} does not belong to {} family {}", f.kind, f.name)));
            }
            if f.kind == "counter" && name.ends_with("_total") && (value.is_nan() || value < 0.0) {
                return Err(at("a counter must be a non-negative number".into()));
            }
            if !seen_series.insert((name.to_string(), labels.clone())) {
                return Err(at("the same series twice".into()));
            }
            f.samples.push(Sample { name: name.to_string(), labels, value });
        }
        if !eof {
            return Err("no `# EOF` at the end".into());
        }
        if let Some(f) = current.take() {
            finish(&mut out, f)?;
        }
        Ok(out)
    }

    /// Checks a finished family (histogram buckets) and stores it.
    fn finish(out: &mut Exposition, f: Family) -> Result<(), String> {
        if f.kind == "histogram" {
            // Per label set (without `le`): buckets ascending, cumulative, +Inf == _count.
            let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
                let mut key = s.labels.clone();
                let le = key.remove("le").ok_or_else(|| format!("{}: a bucket without `le`", f.name))?;
                let le = parse_value(&le).ok_or_else(|| format!("{}: bad le {le:?}", f.name))?;
                groups.entry(key).or_default().push((le, s.value));
            }
            for (labels, buckets) in &groups {
                if !buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                    return Err(format!("{} {labels:?}: buckets not ascending and cumulative: {buckets:?}", f.name));
                }
                let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1);
                let count = f
                    .samples
                    .iter()
                    .find(|s| s.name == format!("{}_count", f.name) && &s.labels == labels)
                    .map(|s| s.value);
                if inf.is_none() || inf != count {
                    return Err(format!("{} {labels:?}: +Inf bucket {inf:?} differs from _count {count:?}", f.name));
                }
            }
        }
        out.families.insert(f.name.clone(), f);
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const GOOD: &str = "# HELP a_packets Packets.\n# TYPE a_packets counter\n\
            a_packets_total{verdict=\"forward\"} 5\na_packets_total{verdict=\"drop\",x=\"q\\\"\\\\\\n\"} 0\n\
            # TYPE g gauge\ng 1.5\n# TYPE h histogram\nh_bucket{q=\"0\",le=\"1.0\"} 1\nh_bucket{q=\"0\",le=\"+Inf\"} 3\n\
            h_sum{q=\"0\"} 4.0\nh_count{q=\"0\"} 3\n# EOF\n";

        #[test]
        fn a_valid_exposition_parses() {
            let e = parse(GOOD).unwrap();
            assert_eq!(e.value("a_packets_total", &[("verdict", "forward")]), 5.0);
            assert_eq!(e.family("a_packets").samples[1].labels["x"], "q\"\\\n");
            assert_eq!(e.family("h").kind, "histogram");
            assert_eq!(e.value("g", &[]), 1.5);
        }

        #[test]
        fn violations_are_refused() {
            for (bad, why) in [
                (GOOD.replace("# EOF\n", ""), "no EOF"),
                (
                    GOOD.replace("a_packets_total{verdict=\"forward\"}", "a_packets{verdict=\"forward\"}"),
                    "counter suffix",
                ),
                (GOOD.replace("g 1.5", "g one"), "value"),
                (GOOD.replace("g 1.5", "g  1.5"), "two spaces"),
                (GOOD.replace("verdict=\"forward\"", "verdict=forward"), "unquoted"),
                (GOOD.replace("verdict=\"forward\"", "verdict=\"forward\",verdict=\"x\""), "label twice"),
                (GOOD.replace("h_count{q=\"0\"} 3", "h_count{q=\"0\"} 4"), "+Inf != count"),
                (GOOD.replace("le=\"1.0\"} 1", "le=\"1.0\"} 4"), "not cumulative"),
                (GOOD.replace("# TYPE g gauge\n", ""), "sample of another family"),
                (format!("{GOOD}g 2\n"), "after EOF"),
                (GOOD.replace("} 5\n", "} 5\na_packets_total{verdict=\"forward\"} 6\n"), "same series"),
                (
                    GOOD.replace("# TYPE g gauge\ng 1.5\n", "# TYPE g gauge\ng 1.5\n# TYPE a_packets counter\n"),
                    "interleaved",
                ),
                (GOOD.replace("# TYPE g gauge", "# TYPE g meter"), "type"),
                (
                    GOOD.replace("a_packets_total{verdict=\"forward\"} 5", "a_packets_total{verdict=\"forward\"} -5"),
                    "negative",
                ),
            ] {
                assert!(parse(&bad).is_err(), "{why}: accepted\n{bad}");
            }
        }
    }
}

/// Counters along the stream's path, to say where packets went missing: the scrubber's
/// (received, forwarded, dropped, socket drops), origin's nftables counters, and the UDP
/// statistics of origin (the sequence service) and the client (the stream's sockets).
#[derive(Clone, Debug)]
pub struct PathSnapshot {
    scrub: crate::ScrubStats,
    origin: crate::Counters,
    udp: Vec<(Role, BTreeMap<String, u64>)>,
}

fn udp_snmp(t: &TestLab, role: Role) -> BTreeMap<String, u64> {
    let out = Cmd::new("cat").arg("/proc/net/snmp").netns(t.ns(role)).run().map(|o| o.stdout).unwrap_or_default();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("Udp: ")).collect();
    match lines.as_slice() {
        [names, values, ..] => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| (n.to_string(), v.parse().unwrap_or(0)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl PathSnapshot {
    /// The counters now.
    pub fn take(t: &TestLab) -> PathSnapshot {
        PathSnapshot {
            scrub: t.stats(),
            origin: t.counters(),
            udp: [Role::Origin, Role::Client].into_iter().map(|r| (r, udp_snmp(t, r))).collect(),
        }
    }

    /// What changed since `earlier`, as text.
    pub fn since(&self, earlier: &PathSnapshot) -> String {
        let s = self.scrub.since(&earlier.scrub);
        let o = self.origin.since(&earlier.origin);
        let udp: Vec<String> = self
            .udp
            .iter()
            .zip(&earlier.udp)
            .map(|((role, now), (_, then))| {
                let d: Vec<String> = now
                    .iter()
                    .filter(|(k, _)| k.contains("Err") || k.contains("Datagrams"))
                    .map(|(k, v)| format!("{k} {}", v.saturating_sub(then.get(k).copied().unwrap_or(0))))
                    .collect();
                format!("{role:?} udp: {}", d.join(", "))
            })
            .collect();
        format!(
            "scrubber: xdp {:?} rx {} forwarded {} dropped {:?} passed {} tx_egress {} tx_ring_full {} socket {:?}; \
             origin in_all {}; {}",
            s.xdp,
            s.rx,
            s.forwarded,
            s.dropped,
            s.passed,
            s.tx_egress,
            s.tx_ring_full,
            s.socket,
            o.packets("in_all"),
            udp.join("; ")
        )
    }
}
