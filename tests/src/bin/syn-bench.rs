//! `syn-bench`: origin defending itself with Linux syncookies (`net.ipv4.tcp_syncookies=2`, the
//! scrubber in bypass) against the scrubber's SYN authentication, at the same spoofed flood while
//! real clients connect: legitimate success, SYNs reaching origin, the SYN-ACKs origin sends to
//! the spoofed sources, and CPU. Prints the table of BENCHMARKS.md. Root; about a minute:
//!
//! `SCRUBBER_BIN=$PWD/target/ci/scrubber cargo run --profile ci -p tests --bin syn-bench`
//! (`SYN_BENCH_RATE=0` for the generator's maximum, `SYN_BENCH_SECONDS`, `SYN_BENCH_CONNS`).

use serde_json::json;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;
use tests::syn::{Cpu, FIXED_RATE, OriginTcp, budget_config, flood_with_load, ms, quantile, sysctl};
use tests::topo::ORIGIN_V4;
use tests::{GenSpec, LabOptions, Role, TestLab, client_sources_v4};

fn main() -> ExitCode {
    if !tests::lab::is_root() {
        eprintln!("syn-bench: needs root (it builds a namespace lab)");
        return ExitCode::FAILURE;
    }
    run();
    ExitCode::SUCCESS
}

fn run() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let rate = env("SYN_BENCH_RATE", FIXED_RATE);
    let seconds = env("SYN_BENCH_SECONDS", 10) as f64;
    let conns = env("SYN_BENCH_CONNS", 1000) as usize;
    let config = budget_config();
    let t = TestLab::with_daemon(|o| LabOptions { config: Some(config.0.clone()), ..o });
    OriginTcp::install(&t);
    let mut rows = Vec::new();
    for (name, bypass, cookies) in [
        ("origin alone: Linux syncookies=2, scrubber in bypass", true, "2"),
        ("scrubber SYN authentication (origin syncookies=1, default)", false, "1"),
    ] {
        sysctl(&t, Role::Origin, &format!("net.ipv4.tcp_syncookies={cookies}")).expect("sysctl");
        t.control("bypass", json!({"on": bypass}));
        thread::sleep(Duration::from_millis(300));
        let spec = GenSpec { rate, seconds, ..GenSpec::attack(&["syn-flood"]) };
        let (o0, cpu0) = (OriginTcp::read(&t), Cpu::read());
        let r = flood_with_load(&t, &spec, &client_sources_v4(), ORIGIN_V4.into(), conns);
        let (o, cpu) = (OriginTcp::read(&t).since(&o0), Cpu::read().since(&cpu0));
        let row = format!(
            "| {name} | {:.0} | {}/{} ({:.1} %) | {:.1} / {:.1} | {} | {} | {} | {} | {:.2} | {:.2} |",
            r.report.pps,
            r.legit.succeeded,
            r.legit.attempts,
            r.legit.success() * 100.0,
            ms(quantile(&r.legit.connect_us, 0.5)),
            ms(quantile(&r.legit.connect_us, 0.99)),
            r.origin_attack,
            o.syn_acks,
            o.ext("SyncookiesSent"),
            r.d.event("syn_ack_sent"),
            cpu.kernel_ns as f64 / 1e9 / r.seconds,
            r.d.cpu_ns as f64 / 1e9 / r.seconds,
        );
        eprintln!(
            "{row}\n  origin TcpExt: {:?}\n  scrubber: {:?}",
            o.ext.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>(),
            r.d
        );
        rows.push(row);
    }
    println!(
        "\nflood {} pps for {seconds} s, {conns} legitimate connections, load {}\n\n| defence | flood pps | legit ok | \
         connect p50 / p99 ms | attack SYNs at origin | SYN-ACKs origin sent | origin SyncookiesSent | \
         challenges the scrubber sent | machine kernel CPU (cores) | scrubber worker CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|",
        rate,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    for r in rows {
        println!("{r}");
    }
}
