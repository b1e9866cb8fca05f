//! `scrubctl`: talk to a running scrubber over its control socket.

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "../ctl.rs"]
mod ctl;

#[derive(Parser, Debug)]
#[command(name = "scrubctl", version, about = "Control a running scrubber")]
struct Cli {
    /// Control socket.
    #[arg(long, short, default_value = "/run/scrubber/control.sock", env = "SCRUBBER_SOCKET")]
    socket: PathBuf,
    /// Print the raw JSON result.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Version, uptime, interfaces, queues, modes.
    Status,
    /// Counters: verdicts, drops per reason, rings, CPU.
    Stats,
    /// Whether every worker runs.
    Health,
    /// The running policy document.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Re-read the config file (on error the running policy stays).
    Reload,
    /// Protected prefixes.
    #[command(subcommand)]
    Prefix(PrefixCmd),
    /// The deny list.
    #[command(subcommand)]
    Deny(ListCmd),
    /// The allow list.
    #[command(subcommand)]
    Allow(ListCmd),
    /// Firewall rules.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Capture decided packets to a pcapng file (annotated with verdict and reason).
    #[command(subcommand)]
    Capture(CaptureCmd),
    /// Refresh rates per verdict and drop reason and the top talkers every second.
    Top {
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// SYN authentication: rotate the cookie key, or show its state per prefix.
    #[command(subcommand)]
    Syncookie(SynCmd),
    /// Forward everything unchecked (on) or scrub again (off).
    Bypass {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Subcommand, Debug)]
enum SynCmd {
    /// Draw a new random cookie key; the current one stays valid for one more period.
    Rotate,
    /// Method and mode per prefix, auto state, verified sources.
    Status,
}

#[derive(Subcommand, Debug)]
enum CaptureCmd {
    /// Start a capture.
    Start {
        /// File to write (pcapng), on the daemon's machine.
        #[arg(long, short)]
        write: Option<String>,
        /// Only these verdicts (forward, reply, drop, pass); repeatable.
        #[arg(long)]
        verdict: Vec<String>,
        /// Only these drop reasons; repeatable.
        #[arg(long)]
        reason: Vec<String>,
        /// Only packets from or to this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only this amplification vector.
        #[arg(long)]
        vector: Option<String>,
        /// Stop after this many packets.
        #[arg(long, default_value_t = 1000)]
        max_packets: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Bytes kept per packet.
        #[arg(long, default_value_t = 256)]
        snaplen: u64,
    },
    /// Stop the running capture.
    Stop,
    /// The running capture.
    Status,
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Print the running document (TOML) and the runtime entries.
    Get,
    /// Replace the document with a TOML file (validated, then swapped).
    Set {
        /// TOML file.
        file: PathBuf,
    },
    /// Write the running document back to the config file (or PATH).
    Save {
        /// Where to write (default: the daemon's config file).
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PrefixCmd {
    /// Protect a prefix.
    Add {
        /// The prefix.
        cidr: String,
        /// Profile name.
        #[arg(long, default_value = "default")]
        profile: String,
        /// GRE endpoint of the origin.
        #[arg(long)]
        gre_endpoint: Option<String>,
    },
    /// Stop protecting a prefix.
    Del {
        /// The prefix.
        cidr: String,
    },
    /// Change a prefix's profile.
    SetProfile {
        /// The prefix.
        cidr: String,
        /// Profile name.
        profile: String,
    },
}

#[derive(Subcommand, Debug)]
enum ListCmd {
    /// Add a prefix (optionally for a time).
    Add {
        /// The prefix.
        cidr: String,
        /// Seconds until the entry expires.
        #[arg(long)]
        ttl: Option<f64>,
    },
    /// Remove a prefix.
    Del {
        /// The prefix.
        cidr: String,
    },
    /// List the entries.
    List {
        /// Most entries to print.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
}

#[derive(Subcommand, Debug)]
enum RuleCmd {
    /// Add a rule given as JSON (the keys of a [[rules]] table).
    Add {
        /// e.g. '{"action":"drop","protocol":"udp","dst_ports":"0-0"}'
        rule: String,
        /// Position (0 = first; default last).
        #[arg(long)]
        position: Option<u64>,
    },
    /// Remove the rule with this id.
    Del {
        /// Rule id.
        id: u64,
    },
    /// List the rules in order.
    List,
}

fn print_stats(r: &Value) {
    println!(
        "received {}  forwarded {}  replied {}  dropped {}",
        r["rx"], r["forwarded"], r["replied"], r["dropped_total"]
    );
    if let Some(drops) = r["totals"]["dropped"].as_object() {
        let mut v: Vec<_> = drops.iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.as_u64()));
        if !v.is_empty() {
            println!("\n{:<28} {:>14}", "drop reason", "packets");
            for (k, n) in v {
                println!("{k:<28} {:>14}", n.as_u64().unwrap_or(0));
            }
        }
    }
    if let Some(ws) = r["workers"].as_array() {
        println!(
            "\n{:<10} {:>5} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "interface", "queue", "rx", "tx egress", "tx ingress", "ring full", "cpu ms"
        );
        for w in ws {
            let n = |k: &str| w[k].as_u64().unwrap_or(0);
            println!(
                "{:<10} {:>5} {:>12} {:>12} {:>12} {:>10} {:>10}",
                w["interface"].as_str().unwrap_or(""),
                n("queue"),
                n("rx"),
                n("tx_egress"),
                n("tx_ingress"),
                n("tx_ring_full"),
                n("cpu_ns") / 1_000_000
            );
        }
    }
}

fn list_cmd(list: &str, cmd: ListCmd) -> (&'static str, Value) {
    let name = |op: &str| -> &'static str {
        match (list, op) {
            ("deny", "add") => "deny_add",
            ("deny", "del") => "deny_del",
            ("deny", _) => "deny_list",
            (_, "add") => "allow_add",
            (_, "del") => "allow_del",
            _ => "allow_list",
        }
    };
    match cmd {
        ListCmd::Add { cidr, ttl } => (name("add"), json!({"cidr": cidr, "ttl_s": ttl})),
        ListCmd::Del { cidr } => (name("del"), json!({"cidr": cidr})),
        ListCmd::List { limit } => (name("list"), json!({"limit": limit})),
    }
}

fn print_top(r: &Value) {
    let rates = &r["rates"]["last_second"];
    println!("scrubber top — received {}  forwarded {}  dropped {}", r["rx"], r["forwarded"], r["dropped_total"]);
    if let Some(p) = rates["packets"].as_object() {
        let line: Vec<String> = p.iter().map(|(k, v)| format!("{k} {:.0}/s", v.as_f64().unwrap_or(0.0))).collect();
        println!("last second: {}", line.join("  "));
    }
    println!("\n{:<28} {:>12}  top sources | top destinations (sampled packets)", "drop reason", "pkts/s");
    let mut reasons: Vec<(&String, f64)> = rates["dropped"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k, v.as_f64().unwrap_or(0.0))).collect())
        .unwrap_or_default();
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (reason, pps) in reasons {
        let hitters = |which: &str| -> String {
            r["top"][reason.as_str()][which]
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(3)
                        .map(|h| format!("{} ({})", h["addr"].as_str().unwrap_or(""), h["packets"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        println!("{reason:<28} {pps:>12.0}  {} | {}", hitters("sources"), hitters("destinations"));
    }
}

fn top(socket: &std::path::Path, count: Option<u64>) -> ExitCode {
    let mut n = 0u64;
    loop {
        match ctl::request(socket, "stats", json!({})) {
            Ok(r) => {
                print!("\x1b[2J\x1b[H");
                print_top(&r);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Top { count } = cli.command {
        return top(&cli.socket, count);
    }
    let (cmd, args) = match cli.command {
        Cmd::Status => ("status", json!({})),
        Cmd::Stats => ("stats", json!({})),
        Cmd::Health => ("health", json!({})),
        Cmd::Reload => ("reload", json!({})),
        Cmd::Policy(PolicyCmd::Get) => ("policy_get", json!({})),
        Cmd::Policy(PolicyCmd::Set { file }) => match std::fs::read_to_string(&file) {
            Ok(text) => ("policy_set", json!({"toml": text})),
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return ExitCode::from(1);
            }
        },
        Cmd::Policy(PolicyCmd::Save { path }) => ("policy_save", json!({"path": path})),
        Cmd::Prefix(PrefixCmd::Add { cidr, profile, gre_endpoint }) => {
            ("prefix_add", json!({"cidr": cidr, "profile": profile, "gre_endpoint": gre_endpoint}))
        }
        Cmd::Prefix(PrefixCmd::Del { cidr }) => ("prefix_del", json!({"cidr": cidr})),
        Cmd::Prefix(PrefixCmd::SetProfile { cidr, profile }) => {
            ("prefix_set_profile", json!({"cidr": cidr, "profile": profile}))
        }
        Cmd::Deny(l) => list_cmd("deny", l),
        Cmd::Allow(l) => list_cmd("allow", l),
        Cmd::Rule(RuleCmd::Add { rule: text, position }) => match serde_json::from_str::<Value>(&text) {
            Ok(rule) => ("rule_add", json!({"rule": rule, "position": position})),
            Err(e) => {
                eprintln!("error: the rule is not JSON: {e}");
                return ExitCode::from(1);
            }
        },
        Cmd::Rule(RuleCmd::Del { id }) => ("rule_del", json!({"rule_id": id})),
        Cmd::Rule(RuleCmd::List) => ("rule_list", json!({})),
        Cmd::Bypass { state } => ("bypass", json!({"on": state == "on"})),
        Cmd::Top { .. } => unreachable!("handled above"),
        Cmd::Capture(CaptureCmd::Start { write, verdict, reason, prefix, vector, max_packets, duration, snaplen }) => (
            "capture_start",
            json!({"path": write, "verdicts": verdict, "reasons": reason, "prefix": prefix, "vector": vector,
                   "max_packets": max_packets, "duration_s": duration, "snaplen": snaplen}),
        ),
        Cmd::Capture(CaptureCmd::Stop) => ("capture_stop", json!({})),
        Cmd::Syncookie(SynCmd::Rotate) => ("syncookie_rotate", json!({})),
        Cmd::Syncookie(SynCmd::Status) => ("syn_status", json!({})),
        Cmd::Capture(CaptureCmd::Status) => ("capture_status", json!({})),
    };
    match ctl::request(&cli.socket, cmd, args) {
        Ok(result) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            } else if cmd == "stats" {
                print_stats(&result);
            } else if cmd == "policy_get" {
                print!("{}", result["toml"].as_str().unwrap_or(""));
                println!("# runtime: {}", result["runtime"]);
            } else {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            }
            if cmd == "health" && result["ok"] != Value::Bool(true) {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
