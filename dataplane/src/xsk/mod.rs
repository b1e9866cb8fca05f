//! The AF_XDP data path: the XDP program (`prog`) and the sockets (`socket`). The only module of
//! the crate with `unsafe` code; every block says why it is sound.
#![allow(unsafe_code)]

pub mod prog;
pub mod socket;
pub mod sys;

/// Asks the CPU to bring the cache line at `p` closer (no-op where not supported). A hint: it
/// never faults and reads nothing into the program, whatever `p` is.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches the cache line holding `value`.
#[inline(always)]
pub fn prefetch_ref<T>(value: &T) {
    prefetch((value as *const T).cast());
}

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
