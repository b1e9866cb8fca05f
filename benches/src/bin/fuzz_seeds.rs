//! Writes seed corpora for the cargo-fuzz targets (`fuzz/corpus/<target>/`) from the project's
//! own fixtures and builders: frames of every traffic class, reflection samples, QUIC Initials,
//! TCP SYNs, the shipped configs and control requests. `make fuzz` runs it first.

use benches::{clean_tcp, clean_udp, malformed, many_sources};
use dataplane::amp::samples;
use dataplane::build::{ExtHeader, Packet};
use dataplane::quic::craft::{Kind, generate};
use dataplane::quic::keys::KeySchedule;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let mut frames: Vec<Vec<u8>> = Vec::new();
    frames.extend(clean_tcp(8));
    frames.extend(clean_udp(8));
    frames.extend(malformed(6));
    frames.extend(many_sources(4));
    let v6 = |s: &str| s.parse::<std::net::IpAddr>().expect("valid");
    frames.push(
        Packet::tcp(v6("2001:2:0:1::1"), 1, v6("2001:2:0:100::10"), 80)
            .ext(ExtHeader::HopByHop(1))
            .ext(ExtHeader::Fragment { offset: 0, more: true, id: 9 })
            .vlan(7)
            .build(),
    );
    let schedule = KeySchedule::new();
    let quic: Vec<Vec<u8>> = [Kind::Valid, Kind::Junk, Kind::Short, Kind::RandomDcid, Kind::ShortHeaderJunk]
        .iter()
        .enumerate()
        .map(|(i, k)| generate(&schedule, *k, i as u64, None))
        .collect();
    for (i, q) in quic.iter().enumerate() {
        frames.push(Packet::udp(v6("198.18.1.2"), 5000, v6("198.18.100.10"), 443).payload(q).build());
        let mut seed = vec![0u8];
        seed.extend_from_slice(q);
        write(&root.join("quic"), &format!("initial-{i}"), &seed);
    }
    for (i, s) in samples::ATTACKS.iter().chain(samples::LEGIT).enumerate() {
        let payload = s.payload(i as u64);
        let mut seed = s.src_port.to_be_bytes().to_vec();
        seed.extend_from_slice(&payload);
        write(&root.join("amp"), &format!("{}-{i}", s.name), &seed);
        frames.extend(samples::frames(v6("198.18.1.9"), s.src_port, v6("198.18.100.10"), 40000, &payload, 7, 1500));
    }
    for (i, f) in frames.iter().enumerate() {
        write(&root.join("parse"), &format!("frame-{i}"), f);
        let mut seed = vec![(i % 2) as u8];
        seed.extend_from_slice(f);
        write(&root.join("pipeline"), &format!("frame-{i}"), &seed);
    }
    for (i, (flags, opts)) in [
        (0x02u8, vec![2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2]),
        (0x02, vec![]),
        (0x04, vec![]),
        (0x10, vec![1, 1, 8, 10, 0, 0]),
    ]
    .iter()
    .enumerate()
    {
        let mut seed = vec![*flags, opts.len() as u8, (i % 2) as u8, i as u8];
        seed.extend_from_slice(opts);
        write(&root.join("syn"), &format!("segment-{i}"), &seed);
    }
    if let Ok(dir) = std::fs::read_dir("configs") {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read(e.path()).expect("read a config");
                write(&root.join("config"), &e.file_name().to_string_lossy(), &text);
            }
        }
    }
    let requests = [
        r#"{"cmd":"deny_add","cidr":"198.18.9.0/24","ttl_s":30}"#,
        r#"{"cmd":"prefix_add","cidr":"198.18.101.0/24","profile":"default"}"#,
        r#"{"cmd":"rule_add","rule":{"action":"drop","protocol":"udp","dst_ports":"0-0"}}"#,
        r#"{"cmd":"bypass","on":true}"#,
        r#"{"cmd":"policy_set","toml":"[[prefixes]]\ncidr = \"198.18.100.0/24\"\n"}"#,
        r#"{"cmd":"syncookie_rotate"}"#,
    ];
    write(&root.join("control"), "requests", requests.join("\n").as_bytes());
    println!("seed corpora written under {}", root.display());
}
