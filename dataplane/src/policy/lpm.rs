//! Longest-prefix-match map for IPv4 (`u32`) and IPv6 (`u128`) keys, built once, read per packet.
//!
//! Prefixes are flattened at build time into sorted, disjoint address ranges, each carrying the
//! value of the longest prefix covering it (adjacent ranges with equal values are merged). A
//! lookup is "last range starting at or below the key, then check its end". A bucket index over
//! the key bits just below those all keys of the table share narrows the binary search to the
//! ranges starting in that bucket; the index has about one bucket per range (2^8 to 2^20
//! buckets), so with 1 000 000 prefixes a lookup is one index read, one or two probes of the
//! sorted starts, and one read of the matching range's end and value.
//!
//! Contract: building is O(n log n) and done off the hot path (control plane); `get` allocates
//! nothing and never panics.

use core::fmt;

/// Bounds on the bits of key used by the bucket index (chosen per map from its size).
const MIN_INDEX_BITS: u32 = 8;
const MAX_INDEX_BITS: u32 = 18;
/// How many ranges past the first candidate `prefetch` covers.
const PREFETCH_SPAN: usize = 12;

/// An unsigned integer usable as an address key.
pub trait LpmKey: Copy + Ord + fmt::Debug + Send + Sync + 'static {
    /// Width in bits.
    const BITS: u32;
    /// Zero.
    const ZERO: Self;
    /// Number of leading bits `self` and `other` share.
    fn common_bits(self, other: Self) -> u32;
    /// `bits` bits of the key starting `skip` bits from the top (fewer when the key is shorter),
    /// as a bucket number.
    fn bucket(self, skip: u32, bits: u32) -> usize;
    /// `self + 1`, or `None` at the maximum.
    fn succ(self) -> Option<Self>;
    /// `self - 1` (caller guarantees `self > 0`).
    fn pred(self) -> Self;
    /// First and last key of the prefix `network/len`.
    fn prefix_range(network: Self, len: u8) -> (Self, Self);
}

macro_rules! impl_key {
    ($t:ty) => {
        impl LpmKey for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            #[inline(always)]
            fn common_bits(self, other: Self) -> u32 {
                (self ^ other).leading_zeros()
            }
            #[inline(always)]
            fn bucket(self, skip: u32, bits: u32) -> usize {
                let width = bits.min(Self::BITS - skip);
                if width == 0 {
                    return 0;
                }
                let shifted = (self << skip) >> (Self::BITS - width);
                shifted as usize
            }
            #[inline(always)]
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline(always)]
            fn pred(self) -> Self {
                self - 1
            }
            fn prefix_range(network: Self, len: u8) -> (Self, Self) {
                let len = u32::from(len).min(Self::BITS);
                let host_mask: Self = if len >= Self::BITS { 0 } else { <$t>::MAX >> len };
                let start = network & !host_mask;
                (start, start | host_mask)
            }
        }
    };
}
impl_key!(u32);
impl_key!(u128);

/// A prefix to insert: network, length and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<K, V> {
    /// Network address (host bits are ignored).
    pub network: K,
    /// Prefix length.
    pub len: u8,
    /// Value returned for addresses whose longest match is this prefix.
    pub value: V,
}

/// One flattened range: `start..=end` maps to `value`.
#[derive(Clone, Copy, Debug)]
struct Range<K, V> {
    start: K,
    end: K,
    value: V,
}

/// Immutable longest-prefix-match map. See the module docs.
#[derive(Clone)]
pub struct LpmMap<K: LpmKey, V: Copy> {
    /// Disjoint ranges sorted by start.
    ranges: Vec<Range<K, V>>,
    /// `index[b]` = first range whose start falls in bucket `b` or later; `2^bits + 1` long.
    index: Vec<u32>,
    /// Bits shared by every key between the first start and the last end.
    skip: u32,
    /// Bits of key the index uses.
    bits: u32,
    min: K,
    max: K,
    prefixes: usize,
}

impl<K: LpmKey, V: Copy> fmt::Debug for LpmMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LpmMap").field("prefixes", &self.prefixes).field("ranges", &self.ranges.len()).finish()
    }
}

impl<K: LpmKey, V: Copy + PartialEq> Default for LpmMap<K, V> {
    fn default() -> Self {
        Self::build(Vec::new())
    }
}

impl<K: LpmKey, V: Copy + PartialEq> LpmMap<K, V> {
    /// Builds the map. When the same prefix appears twice, the later entry wins.
    pub fn build(mut entries: Vec<Entry<K, V>>) -> Self {
        let prefixes = entries.len();
        // Canonical ranges; containers sort before what they contain (same start, shorter len first).
        let mut items: Vec<(K, K, u8, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (s, t) = K::prefix_range(e.network, e.len);
                (s, t, e.len.min(K::BITS as u8), i)
            })
            .collect();
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
        // Duplicates: keep the last inserted one.
        items.dedup_by(|later, earlier| {
            if later.0 == earlier.0 && later.2 == earlier.2 {
                earlier.3 = later.3;
                true
            } else {
                false
            }
        });

        let mut starts = Vec::with_capacity(items.len() * 2);
        let mut ends = Vec::with_capacity(items.len() * 2);
        let mut values: Vec<V> = Vec::with_capacity(items.len() * 2);
        let mut emit = |s: K, t: K, v: V| {
            if let (Some(&last_end), Some(&last_v)) = (ends.last(), values.last())
                && last_v == v
                && K::succ(last_end) == Some(s)
            {
                *ends.last_mut().expect("checked non-empty") = t;
                return;
            }
            starts.push(s);
            ends.push(t);
            values.push(v);
        };

        // Sweep with a stack of open (nesting) prefixes. `cursor` is the first key not emitted;
        // `None` once the top of the key space has been emitted.
        let mut stack: Vec<(K, K, usize)> = Vec::new();
        let mut cursor: Option<K> = Some(K::ZERO);
        for &(s, t, _, i) in &items {
            while let Some(&(_, top_end, top_i)) = stack.last() {
                if top_end >= s {
                    break;
                }
                if let Some(c) = cursor
                    && c <= top_end
                {
                    emit(c, top_end, entries[top_i].value);
                }
                cursor = K::succ(top_end);
                stack.pop();
            }
            if let Some(&(_, _, top_i)) = stack.last()
                && let Some(c) = cursor
                && c < s
            {
                emit(c, s.pred(), entries[top_i].value);
            }
            cursor = Some(s);
            stack.push((s, t, i));
        }
        while let Some((_, top_end, top_i)) = stack.pop() {
            if let Some(c) = cursor
                && c <= top_end
            {
                emit(c, top_end, entries[top_i].value);
            }
            cursor = K::succ(top_end);
        }
        entries.clear();

        let (min, max, skip) = match (starts.first(), ends.last()) {
            (Some(&a), Some(&b)) => (a, b, a.common_bits(b).min(K::BITS)),
            _ => (K::ZERO, K::ZERO, 0),
        };
        let bits = (usize::BITS - starts.len().leading_zeros()).clamp(MIN_INDEX_BITS, MAX_INDEX_BITS);
        let mut index = vec![0u32; (1usize << bits) + 1];
        let mut pos = 0usize;
        for (b, slot) in index.iter_mut().enumerate() {
            while pos < starts.len() && starts[pos].bucket(skip, bits) < b {
                pos += 1;
            }
            *slot = pos as u32;
        }
        let ranges =
            starts.into_iter().zip(ends).zip(values).map(|((start, end), value)| Range { start, end, value }).collect();
        LpmMap { ranges, index, skip, bits, min, max, prefixes }
    }

    /// Value of the longest prefix containing `key`.
    #[inline]
    pub fn get(&self, key: K) -> Option<V> {
        if self.ranges.is_empty() || key < self.min || key > self.max {
            return None;
        }
        let b = key.bucket(self.skip, self.bits);
        let lo = self.index[b] as usize;
        let hi = self.index[b + 1] as usize;
        // Last range starting at or below `key`: inside this bucket, or the one just before it.
        let block = &self.ranges[lo..hi];
        let n = block.partition_point(|r| r.start <= key);
        let i = if n == 0 {
            if lo == 0 {
                return None;
            }
            lo - 1
        } else {
            lo + n - 1
        };
        let r = self.ranges[i];
        if key <= r.end { Some(r.value) } else { None }
    }

    /// Starts loading the range records a `get(key)` will read (one index read, from cache, and a
    /// prefetch), so that the lookups of a batch overlap their memory trips.
    #[inline]
    pub fn prefetch(&self, key: K) {
        if self.ranges.is_empty() || key < self.min || key > self.max {
            return;
        }
        let b = key.bucket(self.skip, self.bits);
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        // The search reads ranges lo-1 ..= hi-1; a bucket holds a handful, so this is one to
        // three lines (bounded, so a crowded bucket does not turn into a long prefetch loop).
        let first = lo.saturating_sub(1);
        let last = hi.saturating_sub(1).clamp(first, first + PREFETCH_SPAN);
        // Ranges per 64-byte line: 4 for IPv4 maps, 1 for IPv6 ones (48 bytes each).
        let per_line = (64 / size_of::<Range<K, V>>()).max(1);
        let mut at = first;
        while at <= last {
            if let Some(r) = self.ranges.get(at) {
                crate::xsk::prefetch_ref(r);
            }
            at += per_line;
        }
        if let Some(r) = self.ranges.get(last) {
            crate::xsk::prefetch_ref(r);
        }
    }

    /// Starts loading the index entry a `prefetch(key)` will read: the first of the two stages
    /// that let a batch overlap both of a large map's memory trips.
    #[inline]
    pub fn prefetch_index(&self, key: K) {
        if self.ranges.is_empty() || key < self.min || key > self.max {
            return;
        }
        if let Some(slot) = self.index.get(key.bucket(self.skip, self.bits)) {
            crate::xsk::prefetch_ref(slot);
        }
    }

    /// True when some prefix contains `key`.
    #[inline]
    pub fn contains(&self, key: K) -> bool {
        self.get(key).is_some()
    }

    /// Number of prefixes the map was built from (after duplicate removal: before).
    pub fn prefix_count(&self) -> usize {
        self.prefixes
    }

    /// Number of disjoint ranges after flattening.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// True when the map holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Approximate heap use in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.ranges.capacity() * size_of::<Range<K, V>>() + self.index.capacity() * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e4(net: u32, len: u8, value: u32) -> Entry<u32, u32> {
        Entry { network: net, len, value }
    }

    fn naive(entries: &[Entry<u32, u32>], key: u32) -> Option<u32> {
        let mut best: Option<(u8, usize)> = None;
        for (i, e) in entries.iter().enumerate() {
            let (s, t) = u32::prefix_range(e.network, e.len);
            if s <= key && key <= t {
                match best {
                    Some((l, _)) if l > e.len => {}
                    _ => best = Some((e.len, i)),
                }
            }
        }
        best.map(|(_, i)| entries[i].value)
    }

    #[test]
    fn nested_prefixes_take_the_longest() {
        let m = LpmMap::build(vec![
            e4(0x0a00_0000, 8, 1),
            e4(0x0a01_0000, 16, 2),
            e4(0x0a01_0100, 24, 3),
            e4(0x0a01_0101, 32, 4),
        ]);
        assert_eq!(m.get(0x0a02_0000), Some(1));
        assert_eq!(m.get(0x0a01_0000), Some(2));
        assert_eq!(m.get(0x0a01_01ff), Some(3));
        assert_eq!(m.get(0x0a01_0101), Some(4));
        assert_eq!(m.get(0x0a01_0102), Some(3));
        assert_eq!(m.get(0x0a01_0200), Some(2));
        assert_eq!(m.get(0x0b00_0000), None);
        assert_eq!(m.get(0x09ff_ffff), None);
    }

    #[test]
    fn default_route_and_top_of_space() {
        let m = LpmMap::build(vec![e4(0, 0, 7), e4(0xffff_ff00, 24, 8)]);
        assert_eq!(m.get(0), Some(7));
        assert_eq!(m.get(u32::MAX), Some(8));
        assert_eq!(m.get(0xffff_feff), Some(7));
        let six: LpmMap<u128, u8> = LpmMap::build(vec![Entry { network: 0, len: 0, value: 1 }]);
        assert_eq!(six.get(u128::MAX), Some(1));
    }

    #[test]
    fn later_duplicate_wins_and_equal_neighbours_merge() {
        let m = LpmMap::build(vec![e4(0x0a00_0000, 24, 1), e4(0x0a00_0000, 24, 2)]);
        assert_eq!(m.get(0x0a00_0001), Some(2));
        let m = LpmMap::build(vec![e4(0x0a00_0000, 25, 1), e4(0x0a00_0080, 25, 1)]);
        assert_eq!(m.range_count(), 1);
    }

    #[test]
    fn empty_map_misses() {
        let m: LpmMap<u32, ()> = LpmMap::default();
        assert!(!m.contains(0));
        assert!(m.is_empty());
    }

    #[test]
    fn ipv6_prefixes() {
        let lab = 0x2001_0002_0000_0000_0000_0000_0000_0000u128;
        let m = LpmMap::build(vec![
            Entry { network: lab, len: 48, value: 1 },
            Entry { network: lab | (5u128 << 64), len: 64, value: 2 },
        ]);
        assert_eq!(m.get(lab | 1), Some(1));
        assert_eq!(m.get(lab | (5u128 << 64) | 9), Some(2));
        assert_eq!(m.get(lab | (1u128 << 80)), None);
    }

    #[test]
    fn a_million_host_prefixes() {
        let mut x = 0x1234_5678u32;
        let mut entries = Vec::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            entries.push(Entry { network: x, len: 32, value: () });
        }
        let keys: Vec<u32> = entries.iter().map(|e| e.network).collect();
        let m = LpmMap::build(entries);
        assert!(keys.iter().all(|&k| m.contains(k)));
    }

    proptest! {
        #[test]
        fn matches_a_naive_longest_match(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u32..4), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 0..64),
        ) {
            let entries: Vec<_> = prefixes.iter().map(|&(n, l, v)| e4(n, l, v)).collect();
            // Keep only the last of duplicate prefixes for the naive reference too.
            let mut dedup: Vec<Entry<u32, u32>> = Vec::new();
            for e in &entries {
                let r = u32::prefix_range(e.network, e.len);
                dedup.retain(|d| u32::prefix_range(d.network, d.len) != r || d.len != e.len);
                dedup.push(*e);
            }
            let m = LpmMap::build(entries.clone());
            let mut keys = probes.clone();
            for e in &entries {
                let (s, t) = u32::prefix_range(e.network, e.len);
                keys.extend([s, t, s.wrapping_sub(1), t.wrapping_add(1)]);
            }
            for k in keys {
                prop_assert_eq!(m.get(k), naive(&dedup, k), "key {:#x}", k);
            }
        }
    }
}
