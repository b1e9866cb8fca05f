//! Per-worker QUIC flow state: admission by 4-tuple, pending ClientHello reassembly, and the
//! ClientHello summaries that tag packets for capture.
//!
//! With an asymmetric return path the scrubber never sees the server's connection ID, and the
//! client switches DCID after the server's first Initial (RFC 9000 §7.2), so flows are keyed by
//! client address and port ↔ server address and port. RSS keeps a 4-tuple on one queue, so the
//! table is per worker (`FlowTable`: fixed capacity, set-associative so that the lookup pass can
//! prefetch it, evictions counted). An entry expires when no packet refreshed it within the
//! flow TTL.
//!
//! A flow whose ClientHello spans several Initials (large post-quantum key shares) is `Pending`:
//! it owns a slot of the fixed `PendingPool`, holding the Initial keys already derived (later
//! Initials keep the original keys, RFC 9001 §5.2, so they are not derived again) and the
//! reassembly buffer. Slots are handed out round-robin; a slot reused before its flow completed
//! is detected by a generation number. Summaries of parsed ClientHellos live in a fixed ring
//! (`Summaries`) with the same generation scheme, so a flow's packets can be tagged with SNI,
//! ALPN and fingerprint for as long as its summary has not been overwritten.

use super::client_hello::{Assembly, HelloInfo};
use super::keys::{InitialKeys, Version};
use crate::addr::Addr;
use crate::parse::PacketInfo;

/// Client address and port ↔ server address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address.
    pub client: Addr,
    /// Server address.
    pub server: Addr,
    /// Client port.
    pub client_port: u16,
    /// Server port.
    pub server_port: u16,
}

impl FlowKey {
    /// The key of a client→server packet.
    #[inline]
    pub fn of(info: &PacketInfo) -> FlowKey {
        FlowKey { client: info.src, server: info.dst, client_port: info.src_port, server_port: info.dst_port }
    }

    /// The key as bytes (for hashing into the shared DCID table).
    #[inline]
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..16].copy_from_slice(&self.client.0.to_be_bytes());
        b[16..32].copy_from_slice(&self.server.0.to_be_bytes());
        b[32..34].copy_from_slice(&self.client_port.to_be_bytes());
        b[34..].copy_from_slice(&self.server_port.to_be_bytes());
        b
    }
}

/// Admission state of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// First Initial authenticated, ClientHello incomplete: reassembly in `PendingPool[slot]`.
    Pending {
        /// Slot index.
        slot: u32,
        /// Slot generation when taken.
        generation: u32,
    },
    /// Admitted: its packets are forwarded.
    Admitted,
    /// A ClientHello rule dropped it: its packets are dropped until the entry expires.
    Refused,
}

/// One flow entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Admission state.
    pub state: FlowState,
    /// Last packet seen (monotonic ns).
    pub last_ns: u64,
    /// Summary reference: index + 1 in `Summaries` (0: none) and its generation.
    pub summary: (u32, u32),
}

/// A pending ClientHello: keys and reassembly.
#[derive(Debug)]
pub struct PendingSlot {
    /// Bumped every time the slot is handed out.
    pub generation: u32,
    /// In use by a pending flow.
    pub busy: bool,
    /// Version of the flow's Initials.
    pub version: Version,
    /// The flow's Initial keys.
    pub keys: InitialKeys,
    /// Initials decrypted for this flow so far.
    pub packets: u8,
    /// Largest packet number seen.
    pub largest_pn: u64,
    /// Reassembly buffer.
    pub assembly: Assembly,
}

/// Fixed pool of pending slots. See the module docs.
#[derive(Debug)]
pub struct PendingPool {
    slots: Vec<PendingSlot>,
    next: usize,
}

impl PendingPool {
    /// `count` slots (at least 1) of `max_hello` bytes each.
    pub fn new(count: usize, max_hello: usize) -> PendingPool {
        let slots = (0..count.max(1))
            .map(|_| PendingSlot {
                generation: 0,
                busy: false,
                version: Version::V1,
                keys: InitialKeys { key: [0; 16], iv: [0; 12], hp: [0; 16] },
                packets: 0,
                largest_pn: 0,
                assembly: Assembly::new(max_hello),
            })
            .collect();
        PendingPool { slots, next: 0 }
    }

    /// Takes the next slot round-robin, swapping `assembly` into it (the caller's filled buffer
    /// moves in without a copy; the slot's old buffer comes back out, to be reset before reuse).
    /// Returns `(index, generation, evicted_a_busy_slot)`.
    pub fn take(&mut self, version: Version, keys: InitialKeys, pn: u64, assembly: &mut Assembly) -> (u32, u32, bool) {
        let i = self.next;
        self.next = (self.next + 1) % self.slots.len();
        let s = &mut self.slots[i];
        let evicted = s.busy;
        s.generation = s.generation.wrapping_add(1);
        s.busy = true;
        s.version = version;
        s.keys = keys;
        s.packets = 1;
        s.largest_pn = pn;
        core::mem::swap(&mut s.assembly, assembly);
        (i as u32, s.generation, evicted)
    }

    /// The slot if it still belongs to the flow that took it with `generation`.
    pub fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut PendingSlot> {
        self.slots.get_mut(index as usize).filter(|s| s.busy && s.generation == generation)
    }

    /// Frees a slot (flow completed or gave up).
    pub fn release(&mut self, index: u32, generation: u32) {
        if let Some(s) = self.get_mut(index, generation) {
            s.busy = false;
            s.assembly.reset();
        }
    }

    /// Slots in use.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }
}

/// Fixed ring of ClientHello summaries. See the module docs.
#[derive(Debug)]
pub struct Summaries {
    ring: Vec<(u32, HelloInfo)>,
    next: usize,
}

impl Summaries {
    /// A ring of `count` summaries (0 keeps none).
    pub fn new(count: usize) -> Summaries {
        Summaries { ring: vec![(0, HelloInfo::default()); count], next: 0 }
    }

    /// Stores a summary, returning its reference (`(0, 0)` when the ring is empty).
    pub fn put(&mut self, info: &HelloInfo) -> (u32, u32) {
        if self.ring.is_empty() {
            return (0, 0);
        }
        let i = self.next;
        self.next = (self.next + 1) % self.ring.len();
        let slot = &mut self.ring[i];
        slot.0 = slot.0.wrapping_add(1).max(1);
        slot.1.copy_from(info);
        (i as u32 + 1, slot.0)
    }

    /// The summary for a reference, unless overwritten since.
    pub fn get(&self, reference: (u32, u32)) -> Option<&HelloInfo> {
        let index = reference.0.checked_sub(1)? as usize;
        self.ring.get(index).filter(|s| s.0 == reference.1).map(|s| &s.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_slots_detect_reuse() {
        let mut pool = PendingPool::new(2, 256);
        let keys = InitialKeys { key: [1; 16], iv: [2; 12], hp: [3; 16] };
        let mut a = Assembly::new(256);
        let (i0, g0, e0) = pool.take(Version::V1, keys, 0, &mut a);
        let (_, _, e1) = pool.take(Version::V1, keys, 0, &mut a);
        assert!(!e0 && !e1);
        assert!(pool.get_mut(i0, g0).is_some());
        let (i2, g2, e2) = pool.take(Version::V2, keys, 0, &mut a);
        assert!(e2, "third take reuses a busy slot");
        assert_eq!(i2, i0);
        assert!(pool.get_mut(i0, g0).is_none(), "old generation is gone");
        pool.release(i2, g2);
        assert_eq!(pool.busy(), 1);
    }

    #[test]
    fn summaries_expire_by_overwrite() {
        let mut s = Summaries::new(2);
        let info = HelloInfo::default();
        let a = s.put(&info);
        let b = s.put(&info);
        assert!(s.get(a).is_some() && s.get(b).is_some());
        let _c = s.put(&info);
        assert!(s.get(a).is_none());
        assert!(s.get((0, 0)).is_none());
        assert_eq!(Summaries::new(0).put(&info), (0, 0));
    }
}
