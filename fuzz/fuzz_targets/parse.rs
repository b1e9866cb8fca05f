//! Parser fuzz target: Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP. Invariants: never panics; every
//! offset the parser reports lies inside the frame.
#![no_main]

use dataplane::parse::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = parse(data) {
        assert!(usize::from(info.l3_offset) <= data.len());
        assert!(usize::from(info.l4_offset) + usize::from(info.l4_len) <= data.len());
        assert!(usize::from(info.payload_offset) + usize::from(info.payload_len) <= data.len());
    }
});
