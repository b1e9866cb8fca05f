//! Huge pages for the big tables.
//!
//! The packet path reads tables of megabytes at random: the deny list's ranges (16 MB for a
//! million prefixes), the per-source buckets, the verified-source, replay and amplification
//! tables. On 4 KiB pages nearly every such read also misses the TLB, and in a virtual machine a
//! TLB miss is a two-dimensional page walk that can cost more than the read itself.
//!
//! `HugePageAlloc` is a global allocator that forwards to the system allocator and asks the
//! kernel to back every allocation of `HUGE_MIN` bytes or more with transparent huge pages
//! (`madvise(MADV_HUGEPAGE)`), before anything is written into it. It needs THP set to
//! `madvise` (Debian's default) or `always`; under `never` the advice is refused and ignored.
//!
//! Contract: only large allocations pay a system call, and those are made at start and by the
//! control plane, never per packet; failure of the advice is harmless (the memory stays on
//! small pages). `huge_page_bytes` reports how much of the process is on huge pages.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size up are advised onto huge pages (one huge page on x86-64).
pub const HUGE_MIN: usize = 2 << 20;
const PAGE: usize = 4096;

/// The system allocator, with huge-page advice for large allocations. See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePageAlloc;

/// The whole pages inside `at..at + len`, as (start, length), if any.
fn whole_pages(at: usize, len: usize) -> Option<(usize, usize)> {
    let start = at.checked_next_multiple_of(PAGE)?;
    let end = at.checked_add(len)? & !(PAGE - 1);
    (end > start).then(|| (start, end - start))
}

/// Advises the whole pages inside `ptr..ptr + len` onto huge pages.
fn advise(ptr: *mut u8, len: usize) {
    if let Some((start, len)) = whole_pages(ptr as usize, len) {
        // SAFETY: the pages lie wholly inside an allocation this process owns; MADV_HUGEPAGE
        // changes only how the kernel backs them, never their contents or their mapping.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the advice
// only touches memory of the allocation just returned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && layout.size() >= HUGE_MIN {
            advise(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && layout.size() >= HUGE_MIN {
            advise(ptr, layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() && new_size >= HUGE_MIN {
            advise(moved, new_size);
        }
        moved
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Asks for `buf` to stay on small pages (`MADV_NOHUGEPAGE`), overriding the allocator's advice
/// when called before the buffer is first written. Benches use it for frame pools, which stand
/// for a UMEM (the UMEM is mapped by the socket library, on small pages).
pub fn keep_small_pages(buf: &mut [u8]) {
    if let Some((start, len)) = whole_pages(buf.as_mut_ptr() as usize, buf.len()) {
        // SAFETY: as in `advise`; the pages belong to `buf`, borrowed mutably here.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE);
        }
    }
}

/// Bytes of this process backed by transparent huge pages (`AnonHugePages` of
/// `/proc/self/smaps_rollup`), or `None` where the kernel does not say.
pub fn huge_page_bytes() -> Option<u64> {
    proc_field("/proc/self/smaps_rollup", "AnonHugePages:").map(|kib| kib * 1024)
}

/// The number after `key` in a `/proc` file of `Key: value [kB]` lines (`/proc/meminfo`,
/// `smaps_rollup`), or `None` where the file or the key is missing.
pub fn proc_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_allocations_of_every_size_intact() {
        let alloc = HugePageAlloc;
        for size in [1usize, 64, 4096, HUGE_MIN - 1, HUGE_MIN, 3 * HUGE_MIN + 17] {
            let layout = Layout::from_size_align(size, 64).expect("valid layout");
            // SAFETY: a non-zero layout; the block is written within bounds and freed once.
            unsafe {
                let p = alloc.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % 64, 0, "alignment kept");
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0xa5, size);
                let q = alloc.realloc(p, layout, size * 2);
                assert!(!q.is_null());
                assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0xa5), "contents kept");
                alloc.dealloc(q, Layout::from_size_align(size * 2, 64).expect("valid layout"));
            }
        }
    }

    #[test]
    fn advice_covers_only_whole_pages_inside_the_allocation() {
        assert_eq!(whole_pages(4097, 100), None);
        assert_eq!(whole_pages(4095, 4096), None);
        assert_eq!(whole_pages(8192, 0), None);
        assert_eq!(whole_pages(8192, 4096), Some((8192, 4096)));
        assert_eq!(whole_pages(16, HUGE_MIN), Some((4096, HUGE_MIN - 4096)));
        assert_eq!(whole_pages(usize::MAX - 10, 100), None);
    }

    #[test]
    fn reads_proc_fields() {
        assert!(proc_field("/proc/meminfo", "MemTotal:").is_some_and(|kib| kib > 0));
        assert_eq!(proc_field("/proc/meminfo", "NoSuchField:"), None);
        assert_eq!(proc_field("/proc/no-such-file", "MemTotal:"), None);
    }

    #[test]
    fn reports_huge_page_use() {
        // Every Linux this runs on has smaps_rollup with the field; its value depends on THP.
        assert!(huge_page_bytes().is_some());
    }
}
