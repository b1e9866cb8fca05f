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
}

fn print_stats(r: &Value) {
    println!(
        "received {}  forwarded {}  replied {}  dropped {}",
        r["rx"], r["forwarded"], r["replied"], r["dropped_total"]
    );
    if let Some(drops) = r["totals"]["dropped"].as_object() {
        let mut v: Vec<_> = drops.iter().collect();
        v.sort_by(|a, b| b.1.as_u64().cmp(&a.1.as_u64()));
        if !v.is_empty() {
            println!("\n{:<28} {:>14}", "drop reason", "packets");
            for (k, n) in v {
                println!("{k:<28} {n:>14}");
            }
        }
    }
    if let Some(ws) = r["workers"].as_array() {
        println!(
            "\n{:<10} {:>5} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "interface", "queue", "rx", "tx egress", "tx ingress", "ring full", "cpu ms"
        );
        for w in ws {
            println!(
                "{:<10} {:>5} {:>12} {:>12} {:>12} {:>10} {:>10}",
                w["interface"].as_str().unwrap_or(""),
                w["queue"],
                w["rx"],
                w["tx_egress"],
                w["tx_ingress"],
                w["tx_ring_full"],
                w["cpu_ns"].as_u64().unwrap_or(0) / 1_000_000
            );
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (cmd, args) = match cli.command {
        Cmd::Status => ("status", json!({})),
        Cmd::Stats => ("stats", json!({})),
        Cmd::Health => ("health", json!({})),
    };
    match ctl::request(&cli.socket, cmd, args) {
        Ok(result) => {
            if cli.json || cmd != "stats" {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            } else {
                print_stats(&result);
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
