//! `scrubber sim`: a mixed attack run through the pipeline in memory, with a report.
//!
//! No NIC, no namespaces, no root: frames are built with `dataplane::build`, decided by the same
//! `Pipeline` the workers run, and tallied per traffic class and drop reason. It shows what a
//! configuration does to a known mix, and how many nanoseconds a decision costs on this machine.

use control::{CompileInput, Config, SystemFacts, compile, pipeline_config};
use dataplane::build::Packet;
use dataplane::policy;
use dataplane::stats::Stats;
use dataplane::verdict::{DropReason, Verdict, VerdictKind};
use dataplane::{Frame, Now, Pipeline};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const HEADROOM: usize = 256;
const CLASSES: &[&str] =
    &["legit-tcp", "legit-udp", "bogon-flood", "land", "xmas-null", "ttl-zero", "ipv4-options", "malformed"];

fn ip(s: String) -> IpAddr {
    s.parse().expect("generated addresses are valid")
}

/// Frame `i` of class `class`.
fn frame(class: usize, i: usize) -> Vec<u8> {
    let client = ip(format!("198.18.1.{}", 1 + i % 250));
    let client6 = ip(format!("2001:2:0:1::{:x}", 1 + i % 250));
    let server = ip("198.18.100.10".to_string());
    let server6 = ip("2001:2:0:100::10".to_string());
    let port = 1024 + (i % 60000) as u16;
    match CLASSES[class] {
        "legit-tcp" if i.is_multiple_of(2) => {
            Packet::tcp(client, port, server, 80).flags(0x18).payload(b"GET / HTTP/1.1\r\n\r\n").build()
        }
        "legit-tcp" => Packet::tcp(client6, port, server6, 443).flags(0x10).build(),
        "legit-udp" => Packet::udp(client, port, server, 5000).payload(&[0x42; 64]).build(),
        "bogon-flood" => Packet::udp(ip(format!("10.{}.{}.{}", i % 200, i % 7, i % 250)), 53, server, port)
            .payload(&[0; 400])
            .build(),
        "land" => Packet::tcp(server, 80, server, 80).build(),
        "xmas-null" => Packet::tcp(client, port, server, 80).flags(if i.is_multiple_of(2) { 0x29 } else { 0 }).build(),
        "ttl-zero" => Packet::udp(client, port, server, 9).ttl(0).build(),
        "ipv4-options" => Packet::udp(client, port, server, 9).ipv4_options(&[0x94, 0x04, 0, 0]).build(),
        _ => {
            let mut f = Packet::tcp(client, port, server, 80).build();
            f.truncate(14 + 20 + (i % 19));
            f[17] = (f.len() - 14) as u8;
            f
        }
    }
}

pub fn run(path: &Path, frames: usize, json_out: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let facts = SystemFacts {
        egress_mac: Some([2, 0, 0, 0, 0, 1]),
        next_hop_mac: Some([2, 0, 0, 0, 0, 2]),
        ..Default::default()
    };
    let policy =
        match compile(&CompileInput { config: &config, file: path, generation: 1, facts: &facts, overlay: None }) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let mut pipeline = Pipeline::new(policy::cell(policy), pipeline_config(&config, 1));

    // Build every frame before timing anything.
    let mix: Vec<(usize, Vec<u8>)> =
        (0..frames).map(|i| (i % CLASSES.len(), frame(i % CLASSES.len(), i / CLASSES.len()))).collect();
    let mut buffers: Vec<Vec<u8>> = mix.iter().map(|(_, f)| vec![0u8; HEADROOM + f.len() + 64]).collect();
    let mut verdicts = vec![Verdict::Pass; 64];
    let mut per_class: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); CLASSES.len()];

    let started = Instant::now();
    for (chunk_mix, chunk_buf) in mix.chunks(64).zip(buffers.chunks_mut(64)) {
        let mut batch: Vec<Frame<'_>> = Vec::with_capacity(64);
        for ((_, bytes), buf) in chunk_mix.iter().zip(chunk_buf.iter_mut()) {
            buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
            batch.push(Frame::new(buf, HEADROOM, bytes.len()));
        }
        pipeline.process(Now { mono_ns: started.elapsed().as_nanos() as u64, wall_secs: 0 }, &mut batch, &mut verdicts);
        for ((class, _), v) in chunk_mix.iter().zip(&verdicts) {
            let key = match v {
                Verdict::Drop(r) => format!("drop:{}", r.name()),
                other => other.kind().name().to_string(),
            };
            *per_class[*class].entry(key).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let stats: Stats = pipeline.stats().clone();
    let ns_per_packet = elapsed.as_nanos() as f64 / frames.max(1) as f64;

    let drops: BTreeMap<&str, u64> =
        DropReason::ALL.iter().filter(|r| stats.drops_of(**r) > 0).map(|r| (r.name(), stats.drops_of(*r))).collect();
    let classes: BTreeMap<&str, &BTreeMap<String, u64>> = CLASSES.iter().copied().zip(per_class.iter()).collect();
    let report = json!({
        "config": path.display().to_string(),
        "frames": frames,
        "forwarded": stats.packets_of(VerdictKind::Forward),
        "passed": stats.packets_of(VerdictKind::Pass),
        "dropped": drops,
        "classes": classes,
        "ns_per_packet": (ns_per_packet * 10.0).round() / 10.0,
        "note": "in-memory run of the pipeline; includes copying each frame into its buffer",
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!(
            "scrubber sim — {} frames through {} ({:.1} ns/frame incl. copy)",
            frames,
            path.display(),
            ns_per_packet
        );
        println!("{:<14} outcome", "class");
        for (class, outcomes) in &classes {
            let text: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{:<14} {}", class, text.join("  "));
        }
        println!(
            "forwarded {}  passed {}  dropped {}",
            stats.packets_of(VerdictKind::Forward),
            stats.packets_of(VerdictKind::Pass),
            stats.packets_of(VerdictKind::Drop)
        );
    }
    ExitCode::SUCCESS
}
