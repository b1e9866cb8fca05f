//! Compiles the XDP program (`bpf/scrubber_xdp.c`) with clang for the BPF target; the object is
//! embedded in the crate (`xsk::prog`). clang comes from `scripts/deps.sh`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/scrubber_xdp.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("scrubber_xdp.o");
    let libbpf_include = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports its include directory");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let arch_include = format!("/usr/include/{}-linux-gnu", env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c", src, "-o"])
        .arg(&out)
        .arg(format!("-I{libbpf_include}"))
        .arg(format!("-I{arch_include}"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {src} ({s}); run scripts/deps.sh"),
        Err(e) => panic!("cannot run {clang} to compile {src}: {e}; install clang (scripts/deps.sh)"),
    }
}
