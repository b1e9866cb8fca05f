//! `scrubber`: the daemon (`run`), the offline config checker (`check`), the namespace lab
//! (`lab`) and the traffic generator (`gen`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Large tables on transparent huge pages (see `dataplane::mem`): fewer TLB misses per lookup.
#[global_allocator]
static ALLOC: dataplane::mem::HugePageAlloc = dataplane::mem::HugePageAlloc;

mod check;
mod daemon;
mod generator;
mod sim;

#[derive(Parser, Debug)]
#[command(name = "scrubber", version, about = "Userspace AF_XDP DDoS packet scrubber")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file without touching any NIC.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the daemon: attach to the configured queues and scrub until SIGINT/SIGTERM.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format (overrides daemon.log_format).
        #[arg(long, value_parser = ["human", "json"])]
        log_format: Option<String>,
        /// Control socket path (overrides daemon.control_socket).
        #[arg(long)]
        control_socket: Option<PathBuf>,
        /// Benchmark floor: workers skip the pipeline and only rewrite MAC addresses (l2 mode).
        #[arg(long)]
        forwarder_only: bool,
    },
    /// Transmit generated traffic from an interface through AF_XDP.
    Gen(generator::GenArgs),
    /// Run a scenario through the pipeline in memory and print a report.
    Sim {
        /// Configuration file.
        #[arg(long, short, default_value = "configs/lab.toml")]
        config: PathBuf,
        /// Frames to generate.
        #[arg(long, default_value_t = 200_000)]
        frames: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The namespace lab: build it (`up`), show it (`status`), remove it (`down`).
    Lab {
        #[command(subcommand)]
        command: scrubber::lab::cli::LabCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check::run(&config),
        Command::Run { config, log_format, control_socket, forwarder_only } => {
            let format = log_format.map(|f| {
                if f == "json" { control::config::LogFormat::Json } else { control::config::LogFormat::Human }
            });
            daemon::run(&config, format, control_socket, forwarder_only)
        }
        Command::Gen(args) => generator::run(&args),
        Command::Sim { config, frames, json } => sim::run(&config, frames, json),
        Command::Lab { command } => scrubber::lab::cli::run(command),
    }
}
