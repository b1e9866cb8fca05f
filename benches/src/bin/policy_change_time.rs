//! `policy-change-time`: how long one runtime policy change takes to validate and compile, with
//! and without a large deny-list file. The daemon publishes a change only after compiling it; the
//! control plane must keep up with 100 changes a second.
//! Run: `cargo run --release -p benches --bin policy-change-time`.

use control::runtime::{List, PolicyState};
use control::{Config, SystemFacts};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("scrubber-change-time-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut list = String::with_capacity(20 << 20);
    for i in 0..1_000_000u32 {
        let a = 0x0b00_0000u32 + (i << 8);
        list.push_str(&format!("{}.{}.{}.0/24\n", a >> 24, (a >> 16) & 255, (a >> 8) & 255));
    }
    std::fs::write(dir.join("deny.txt"), &list).unwrap();
    let lab = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/lab.toml")).unwrap();
    for (name, extra) in [("lab.toml", ""), ("lab.toml + 1 000 000-prefix deny file", "deny_files = [\"deny.txt\"]\n")]
    {
        let file = dir.join("c.toml");
        std::fs::write(&file, lab.replace("[policy]\n", &format!("[policy]\n{extra}"))).unwrap();
        let mut s = PolicyState::new(&file, Config::load(&file).unwrap(), SystemFacts::default(), 1);
        let t0 = Instant::now();
        let first = s.compile(1).unwrap();
        let first_time = t0.elapsed();
        let n = 500u32;
        let t0 = Instant::now();
        for i in 0..n {
            let cidr = format!("198.19.{}.0/24", i % 200).parse().unwrap();
            let p = if i % 2 == 0 {
                s.list_add(List::Deny, cidr, None, Some(0)).unwrap()
            } else {
                s.list_del(List::Deny, format!("198.19.{}.0/24", (i - 1) % 200).parse().unwrap()).unwrap()
            };
            assert!(std::sync::Arc::ptr_eq(p.deny_base(), first.deny_base()));
        }
        println!("{name}: first compile {first_time:?}, then {:?} per change ({n} changes)", t0.elapsed() / n);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
