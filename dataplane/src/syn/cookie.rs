//! The SYN cookie: a keyed MAC of the connection's 4-tuple and a wall-clock time slot.
//!
//! Contract: pure functions of (secret, 4-tuple, wall-clock seconds). A cookie is the low 32
//! bits of SipHash-2-4 keyed with a 128-bit secret over source and destination address and port
//! and the slot counter `wall_secs / period`; its highest bit is a placement bit (below), so it
//! carries 31 bits of MAC and a forged value passes one check with probability 2^-31 (2^-30
//! for the two slots checked, 2^-29 during a rotation's grace period). The slot is not carried
//! in the value: `check` tries the current and the previous slot, so a cookie is accepted for
//! at least one and at most two periods. Appliances of a fleet that share the secret (and keep
//! their clocks within a fraction of a period) mint and accept each other's cookies.
//!
//! Rotation: `Secrets::rotate` makes a new current key and keeps the old one valid for one
//! period after the rotation, so cookies minted just before it survive. A rotation is a new
//! policy snapshot; the secret never changes under a running check.
//!
//! The placement bit: the SYN-ACK challenge puts the cookie in the acknowledgment number and
//! wants it *out* of the client's window (RFC 9293 §3.10.7.3: the client answers an unacceptable
//! ACK with an RST whose sequence number is that ACK). `mint` sets the highest bit so that the
//! value lies in the half of the sequence space *behind* the client's ISN + 1 (serial
//! arithmetic): never ISN + 1 itself, and, for the stateful firewall most Linux clients run
//! (`ct state invalid drop`, as ufw and firewalld install), an ACK that Linux conntrack lets
//! through ("ignored ACK under lower bound") instead of one it marks invalid ("ACK is over upper
//! bound"), which it would for the other half. Such a client sees the challenge and answers it
//! at once. `check` ignores the placement bit: it needs no ISN.

use crate::addr::Addr;
use core::fmt;
use siphasher::sip::SipHasher24;

/// Default time-slot length in seconds.
pub const DEFAULT_PERIOD_SECS: u64 = 60;

/// Bits of the value that are MAC (the highest is the placement bit).
pub const MAC_MASK: u32 = 0x7fff_ffff;

/// A 128-bit cookie key. `Debug` never prints the bytes.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 16],
    sip: SipHasher24,
}

impl Key {
    /// A key from its 16 bytes.
    pub fn new(bytes: [u8; 16]) -> Key {
        Key { bytes, sip: SipHasher24::new_with_key(&bytes) }
    }

    /// The key's bytes (for the control plane carrying a key across a rotation).
    pub fn bytes(&self) -> [u8; 16] {
        self.bytes
    }

    /// The 64-bit MAC of `tuple` in slot `counter`.
    #[inline]
    fn mac(&self, tuple: &Tuple, counter: u64) -> u64 {
        let mut msg = [0u8; 44];
        let len = if tuple.src.is_v4() && tuple.dst.is_v4() {
            msg[0..4].copy_from_slice(&tuple.src.v4_value().to_be_bytes());
            msg[4..8].copy_from_slice(&tuple.dst.v4_value().to_be_bytes());
            msg[8..10].copy_from_slice(&tuple.src_port.to_be_bytes());
            msg[10..12].copy_from_slice(&tuple.dst_port.to_be_bytes());
            msg[12..20].copy_from_slice(&counter.to_le_bytes());
            20
        } else {
            msg[0..16].copy_from_slice(&tuple.src.0.to_be_bytes());
            msg[16..32].copy_from_slice(&tuple.dst.0.to_be_bytes());
            msg[32..34].copy_from_slice(&tuple.src_port.to_be_bytes());
            msg[34..36].copy_from_slice(&tuple.dst_port.to_be_bytes());
            msg[36..44].copy_from_slice(&counter.to_le_bytes());
            44
        };
        // The two lengths differ, and SipHash mixes the length in: the families never collide.
        self.sip.hash(&msg[..len])
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(redacted)")
    }
}

/// The client→server 4-tuple a cookie is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Client address.
    pub src: Addr,
    /// Server (protected) address.
    pub dst: Addr,
    /// Client port.
    pub src_port: u16,
    /// Server port.
    pub dst_port: u16,
}

/// A minted cookie and the sequence number to use as the SYN-ACK's own ISN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// The value to put in the SYN-ACK's acknowledgment number.
    pub value: u32,
    /// The SYN-ACK's sequence number (other bits of the same MAC; carries no meaning).
    pub seq: u32,
}

/// What `check` concluded about a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Minted for this tuple in the current or the previous slot.
    Valid,
    /// Minted for this tuple two slots ago: a real answer that came too late.
    Expired,
    /// Not a cookie of ours for this tuple.
    Invalid,
}

/// The fleet's cookie secrets: current key, the key it replaced (valid for one period after the
/// rotation), and the slot length. Lives in the policy snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secrets {
    current: Key,
    previous: Option<Key>,
    /// Wall-clock second of the last rotation (meaningful with `previous`).
    rotated_at: u64,
    period: u64,
    /// The current key was drawn at random (no secret in the config).
    random: bool,
}

impl Default for Secrets {
    /// An all-zero key with the default period: for tests only; the compiler always sets a key.
    fn default() -> Secrets {
        Secrets::new(Key::new([0; 16]), DEFAULT_PERIOD_SECS)
    }
}

impl Secrets {
    /// Secrets with one key and a slot of `period_secs` (at least 1).
    pub fn new(current: Key, period_secs: u64) -> Secrets {
        Secrets { current, previous: None, rotated_at: 0, period: period_secs.max(1), random: false }
    }

    /// Marks the current key as drawn at random (so a reload without a configured secret keeps it).
    pub fn with_random(mut self, random: bool) -> Secrets {
        self.random = random;
        self
    }

    /// The secrets after replacing the current key with `next` at wall-clock second `now`: the
    /// old key stays valid for one period. Rotating to the same key changes nothing.
    pub fn rotate(&self, next: Key, now: u64) -> Secrets {
        if next == self.current {
            return self.clone();
        }
        Secrets {
            current: next,
            previous: Some(self.current.clone()),
            rotated_at: now,
            period: self.period,
            random: false,
        }
    }

    /// Same keys, another period (a config change of `period_secs` alone).
    pub fn with_period(mut self, period_secs: u64) -> Secrets {
        self.period = period_secs.max(1);
        self
    }

    /// The current key.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The previous key, if a rotation happened.
    pub fn previous(&self) -> Option<&Key> {
        self.previous.as_ref()
    }

    /// Wall-clock second of the last rotation.
    pub fn rotated_at(&self) -> u64 {
        self.rotated_at
    }

    /// Slot length in seconds.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// True when the current key was drawn at random.
    pub fn is_random(&self) -> bool {
        self.random
    }

    /// The slot counter at wall-clock second `wall`.
    #[inline]
    pub fn counter(&self, wall: u64) -> u64 {
        wall / self.period
    }

    /// The previous key while it is still honoured at `wall`.
    #[inline]
    fn grace_key(&self, wall: u64) -> Option<&Key> {
        self.previous.as_ref().filter(|_| wall < self.rotated_at.saturating_add(self.period))
    }

    /// Mints the cookie for `tuple` at `wall`, placed behind `client_isn + 1` (see the module docs).
    #[inline]
    pub fn mint(&self, tuple: &Tuple, client_isn: u32, wall: u64) -> Cookie {
        let mac = self.current.mac(tuple, self.counter(wall));
        let low = (mac as u32) & MAC_MASK;
        // RFC 9293 §3.10.7.3: in SYN-SENT an ACK =< ISS is unacceptable and answered by an RST.
        // Of `low` and `low + 2^31`, exactly one is behind ISN + 1 (negative serial distance).
        let behind = |v: u32| (v.wrapping_sub(client_isn.wrapping_add(1)) as i32) < 0;
        let value = if behind(low) { low } else { low | !MAC_MASK };
        Cookie { value, seq: (mac >> 32) as u32 }
    }

    /// Checks `value` against the cookies of `tuple` for the current and previous slot (with the
    /// current key, and the previous key during its grace period); on failure, tells an expired
    /// cookie (two slots old) from an invalid value.
    #[inline]
    pub fn check(&self, tuple: &Tuple, value: u32, wall: u64) -> Validity {
        let counter = self.counter(wall);
        let matches = |key: &Key, c: u64| ((key.mac(tuple, c) as u32) ^ value) & MAC_MASK == 0;
        let grace = self.grace_key(wall);
        // RFC 4987 §3.6: a cookie is honoured only within its time window.
        for c in [counter, counter.wrapping_sub(1)] {
            if matches(&self.current, c) || grace.is_some_and(|k| matches(k, c)) {
                return Validity::Valid;
            }
        }
        let old = counter.wrapping_sub(2);
        if matches(&self.current, old) || grace.is_some_and(|k| matches(k, old)) {
            return Validity::Expired;
        }
        Validity::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tuple(src: u128, dst: u128, sp: u16, dp: u16, v4: bool) -> Tuple {
        if v4 {
            Tuple { src: Addr::v4(src as u32), dst: Addr::v4(dst as u32), src_port: sp, dst_port: dp }
        } else {
            Tuple { src: Addr::v6(src | 1 << 127), dst: Addr::v6(dst | 1 << 127), src_port: sp, dst_port: dp }
        }
    }

    fn secrets(key: [u8; 16]) -> Secrets {
        Secrets::new(Key::new(key), 60)
    }

    #[test]
    fn known_tuple_validates_and_ages_out() {
        let s = secrets([7; 16]);
        let t = tuple(0xc612_0102, 0xc612_640a, 40000, 80, true);
        let c = s.mint(&t, 1000, 6_000);
        assert_eq!(s.check(&t, c.value, 6_000), Validity::Valid);
        assert_eq!(s.check(&t, c.value, 6_059), Validity::Valid);
        assert_eq!(s.check(&t, c.value, 6_060), Validity::Valid);
        assert_eq!(s.check(&t, c.value, 6_119), Validity::Valid);
        assert_eq!(s.check(&t, c.value, 6_120), Validity::Expired);
        assert_eq!(s.check(&t, c.value, 6_180), Validity::Invalid);
        assert_eq!(s.check(&t, c.value ^ 0x4000_0000, 6_000), Validity::Invalid);
        assert_eq!(s.check(&t, c.value ^ 1, 6_000), Validity::Invalid);
    }

    #[test]
    fn the_isn_whose_successor_is_the_mac_gets_the_other_placement() {
        let s = secrets([3; 16]);
        let t = tuple(1, 2, 3, 4, true);
        let low = s.mint(&t, 0, 0).value & MAC_MASK;
        // The ISN whose successor is exactly the MAC value: the value moves 2^31 away.
        let isn = low.wrapping_sub(1);
        let c = s.mint(&t, isn, 0);
        assert_eq!(c.value, low | 0x8000_0000);
        assert_ne!(c.value, isn.wrapping_add(1));
        assert_eq!(s.check(&t, c.value, 0), Validity::Valid);
    }

    #[test]
    fn debug_hides_the_key() {
        let s = secrets([0xab; 16]);
        let text = format!("{s:?}");
        assert!(!text.contains("171") && !text.contains("ab, ab"), "{text}");
    }

    proptest! {
        #[test]
        fn valid_only_for_its_own_tuple(
            key in any::<[u8; 16]>(),
            src in any::<u128>(), dst in any::<u128>(), sp in any::<u16>(), dp in any::<u16>(),
            v4 in any::<bool>(), isn in any::<u32>(), wall in 0u64..(1 << 40),
            which in 0usize..4, delta in 1u128..u128::MAX,
        ) {
            let s = secrets(key);
            let t = tuple(src, dst, sp, dp, v4);
            let c = s.mint(&t, isn, wall);
            prop_assert_eq!(s.check(&t, c.value, wall), Validity::Valid);
            let mut other = t;
            match which {
                0 => other.src = tuple(src.wrapping_add(delta), 0, 0, 0, v4).src,
                1 => other.dst = tuple(0, dst.wrapping_add(delta), 0, 0, v4).dst,
                2 => other.src_port = sp.wrapping_add(delta as u16 | 1),
                _ => other.dst_port = dp.wrapping_add(delta as u16 | 1),
            }
            prop_assume!(other != t);
            prop_assert_ne!(s.check(&other, c.value, wall), Validity::Valid);
        }

        #[test]
        fn placed_behind_isn_plus_one_and_valid_whatever_the_isn(
            key in any::<[u8; 16]>(), isn in any::<u32>(), wall in 0u64..(1 << 40), sp in any::<u16>(),
        ) {
            let s = secrets(key);
            let t = tuple(0xc612_0102, 0xc612_640a, sp, 80, true);
            let c = s.mint(&t, isn, wall);
            // Unacceptable to the client (=< ISS) and behind ISN + 1 for conntrack.
            prop_assert!((c.value.wrapping_sub(isn.wrapping_add(1)) as i32) < 0);
            prop_assert_eq!(c.value & MAC_MASK, s.mint(&t, 0, wall).value & MAC_MASK, "the MAC does not depend on the ISN");
            prop_assert_eq!(s.check(&t, c.value, wall), Validity::Valid);
        }

        #[test]
        fn valid_only_for_its_own_secret(key in any::<[u8; 16]>(), other in any::<[u8; 16]>(), wall in 0u64..(1 << 40)) {
            prop_assume!(key != other);
            let t = tuple(0xc612_0102, 0xc612_640a, 40000, 443, true);
            let c = secrets(key).mint(&t, 5, wall);
            prop_assert_ne!(secrets(other).check(&t, c.value, wall), Validity::Valid);
        }

        #[test]
        fn window_is_one_to_two_periods(key in any::<[u8; 16]>(), period in 1u64..3600, wall in 0u64..(1 << 40), isn in any::<u32>()) {
            let s = Secrets::new(Key::new(key), period);
            let t = tuple(10, 20, 30, 40, false);
            let c = s.mint(&t, isn, wall);
            let slot_start = wall / period * period;
            // Accepted until the end of the next slot: at least one full period after minting.
            prop_assert_eq!(s.check(&t, c.value, wall + period - 1), Validity::Valid);
            prop_assert_eq!(s.check(&t, c.value, slot_start + 2 * period - 1), Validity::Valid);
            // And never two periods after the slot started.
            prop_assert_eq!(s.check(&t, c.value, slot_start + 2 * period), Validity::Expired);
            prop_assert_eq!(s.check(&t, c.value, slot_start + 3 * period), Validity::Invalid);
        }

        #[test]
        fn a_second_appliance_with_the_same_secret_validates(key in any::<[u8; 16]>(), wall in 0u64..(1 << 40), src in any::<u32>()) {
            let a = secrets(key);
            let b = secrets(key);
            let t = tuple(u128::from(src), 0xc612_640a, 50000, 80, true);
            let c = a.mint(&t, 1, wall);
            prop_assert_eq!(b.check(&t, c.value, wall + 30), Validity::Valid);
            prop_assert_eq!(b.mint(&t, 1, wall), c);
        }

        #[test]
        fn survives_one_rotation_for_one_period(old in any::<[u8; 16]>(), new in any::<[u8; 16]>(), wall in 0u64..(1 << 40), after in 0u64..60) {
            prop_assume!(old != new);
            let s = secrets(old);
            let t = tuple(1, 2, 3, 4, true);
            let c = s.mint(&t, 9, wall);
            let rotated = s.rotate(Key::new(new), wall + after);
            // Honoured until one period after the rotation (and within its own window).
            let end = (wall + after + 59).min(wall / 60 * 60 + 119);
            prop_assert_eq!(rotated.check(&t, c.value, end), Validity::Valid);
            prop_assert_ne!(rotated.check(&t, c.value, wall + after + 60), Validity::Valid);
            // A second rotation forgets it.
            let twice = rotated.rotate(Key::new([!new[0]; 16]), wall + after);
            prop_assume!(Key::new([!new[0]; 16]) != Key::new(old));
            prop_assert_ne!(twice.check(&t, c.value, wall + after), Validity::Valid);
            // New cookies use the new key.
            let fresh = rotated.mint(&t, 9, wall + after);
            prop_assert_eq!(secrets(new).check(&t, fresh.value, wall + after), Validity::Valid);
        }

        #[test]
        fn forged_values_fail(key in any::<[u8; 16]>(), forged in any::<u32>(), wall in 0u64..(1 << 40), sp in any::<u16>()) {
            let s = secrets(key);
            let t = tuple(0x2001_0002, 0xc612_640a, sp, 80, false);
            let real = s.mint(&t, 0, wall).value;
            prop_assume!((forged ^ real) & MAC_MASK != 0);
            let prev = s.mint(&t, 0, wall.saturating_sub(60)).value;
            prop_assume!((forged ^ prev) & MAC_MASK != 0);
            prop_assert_ne!(s.check(&t, forged, wall), Validity::Valid);
        }
    }
}
