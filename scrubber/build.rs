//! Compiles the lab benchmark's XDP sink (`src/lab/sink.bpf.c`) with clang for the BPF target;
//! the object is embedded in the binary (`lab::bench::SINK_BPF_O`), so the lab's benchmarks need
//! no compiler where they run. clang comes from `scripts/deps.sh`, as for the dataplane's program.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/lab/sink.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("sink.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let arch_include = format!("/usr/include/{}-linux-gnu", env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    let status = Command::new(&clang)
        .args(["-O2", "-Wall", "-Werror", "-target", "bpf", "-c", src, "-o"])
        .arg(&out)
        .arg(format!("-I{arch_include}"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {src} ({s}); run scripts/deps.sh"),
        Err(e) => panic!("cannot run {clang} to compile {src}: {e}; install clang (scripts/deps.sh)"),
    }
}
