//! The AF_XDP data path: the XDP program (`prog`) and the sockets (`socket`). The only module of
//! the crate with `unsafe` code; every block says why it is sound.
#![allow(unsafe_code)]

pub mod prog;
pub mod socket;
pub mod sys;

/// CPU time consumed by the calling thread, in nanoseconds (for CPU-per-packet figures).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
