//! Sampling frames for an operator: a capture session the workers feed and the control plane
//! drains into a pcapng file.
//!
//! A session holds a filter (verdicts, drop reasons, a destination or source prefix, an
//! amplification vector) and a fixed pool of record buffers allocated when it starts. A worker
//! that sees a matching frame takes a free buffer, copies up to `snaplen` bytes and the
//! decision, and hands it over through a lock-free queue; with no free buffer the frame is
//! counted as missed, never waited for. The control plane writes records out and returns the
//! buffers. Nothing is allocated on the hot path, and with no session active the cost is one
//! atomic load per batch.

use crate::addr::Cidr;
use crate::parse::PacketInfo;
use crate::verdict::{DropReason, Verdict, VerdictKind};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest snapshot length.
pub const MAX_SNAPLEN: usize = 2048;

/// Which frames a session takes. Empty sets match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Verdicts to take (bit `VerdictKind::index()`); 0 = all.
    pub verdicts: u8,
    /// Drop reasons to take (bit `DropReason::index()`); 0 = all. A non-zero set takes drops only.
    pub reasons: u128,
    /// Frames whose source or destination lies in this prefix.
    pub prefix: Option<Cidr>,
    /// Amplification vector (catalogue position).
    pub vector: Option<u8>,
}

impl Filter {
    /// True when a frame with this decision matches.
    #[inline]
    pub fn matches(&self, verdict: Verdict, info: Option<&PacketInfo>, vector: Option<u8>) -> bool {
        if self.verdicts != 0 && self.verdicts & (1 << verdict.kind().index()) == 0 {
            return false;
        }
        if self.reasons != 0 {
            match verdict {
                Verdict::Drop(r) if self.reasons & (1u128 << r.index()) != 0 => {}
                _ => return false,
            }
        }
        if let Some(p) = self.prefix {
            match info {
                Some(i) if p.contains(i.src) || p.contains(i.dst) => {}
                _ => return false,
            }
        }
        if self.vector.is_some() && self.vector != vector {
            return false;
        }
        true
    }
}

/// One captured frame.
#[derive(Debug)]
pub struct Record {
    /// Monotonic time of the decision (the daemon maps it to wall-clock time).
    pub mono_ns: u64,
    /// The decision.
    pub verdict: Verdict,
    /// Frame length on the wire.
    pub len: u32,
    /// Bytes kept (`min(len, snaplen)`).
    pub kept: u32,
    /// Free-text tags (e.g. a QUIC SNI), NUL-padded.
    pub tag: [u8; 64],
    /// The bytes.
    pub data: Box<[u8; MAX_SNAPLEN]>,
}

impl Record {
    fn empty() -> Box<Record> {
        Box::new(Record {
            mono_ns: 0,
            verdict: Verdict::Pass,
            len: 0,
            kept: 0,
            tag: [0; 64],
            data: Box::new([0; MAX_SNAPLEN]),
        })
    }

    /// The tag as text.
    pub fn tag_text(&self) -> &str {
        let end = self.tag.iter().position(|&b| b == 0).unwrap_or(self.tag.len());
        std::str::from_utf8(&self.tag[..end]).unwrap_or("")
    }

    /// The annotation written with the packet: verdict, reason and tags.
    pub fn annotation(&self) -> String {
        let mut text = match self.verdict {
            Verdict::Drop(r) => format!("verdict=drop reason={}", r.name()),
            v => format!("verdict={}", v.kind().name()),
        };
        if !self.tag_text().is_empty() {
            text.push(' ');
            text.push_str(self.tag_text());
        }
        text
    }
}

/// A running capture. See the module docs.
#[derive(Debug)]
pub struct Session {
    /// What to take.
    pub filter: Filter,
    /// Bytes kept per frame.
    pub snaplen: usize,
    free: ArrayQueue<Box<Record>>,
    filled: ArrayQueue<Box<Record>>,
    /// Frames still to take (the session's packet limit).
    remaining: AtomicU64,
    /// Frames taken.
    taken: AtomicU64,
    /// Matching frames not taken because no buffer was free.
    missed: AtomicU64,
}

impl Session {
    /// A session taking at most `max_packets`, with `buffers` records in flight.
    pub fn new(filter: Filter, snaplen: usize, max_packets: u64, buffers: usize) -> Session {
        let buffers = buffers.clamp(1, 1 << 16);
        let free = ArrayQueue::new(buffers);
        for _ in 0..buffers {
            let _ = free.push(Record::empty());
        }
        Session {
            filter,
            snaplen: snaplen.clamp(64, MAX_SNAPLEN),
            free,
            filled: ArrayQueue::new(buffers),
            remaining: AtomicU64::new(max_packets),
            taken: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        }
    }

    /// Offers one decided frame (worker side).
    #[inline]
    pub fn offer(
        &self,
        mono_ns: u64,
        verdict: Verdict,
        info: Option<&PacketInfo>,
        vector: Option<u8>,
        frame: &[u8],
        tags: &[&str],
    ) {
        if !self.filter.matches(verdict, info, vector) {
            return;
        }
        let Some(mut rec) = self.free.pop() else {
            if self.remaining.load(Ordering::Relaxed) > 0 {
                self.missed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1)).is_err() {
            let _ = self.free.push(rec);
            return;
        }
        let kept = frame.len().min(self.snaplen);
        rec.data[..kept].copy_from_slice(&frame[..kept]);
        rec.kept = kept as u32;
        rec.len = frame.len() as u32;
        rec.mono_ns = mono_ns;
        rec.verdict = verdict;
        rec.tag = [0; 64];
        let mut at = 0;
        for (i, t) in tags.iter().enumerate() {
            if i > 0 && at < rec.tag.len() {
                rec.tag[at] = b' ';
                at += 1;
            }
            let n = t.len().min(rec.tag.len() - at);
            rec.tag[at..at + n].copy_from_slice(&t.as_bytes()[..n]);
            at += n;
        }
        self.taken.fetch_add(1, Ordering::Relaxed);
        // Both queues have room for every buffer, so this cannot fail.
        let _ = self.filled.push(rec);
    }

    /// Takes the next captured record (control side).
    pub fn next(&self) -> Option<Box<Record>> {
        self.filled.pop()
    }

    /// Returns a written record's buffer to the pool.
    pub fn recycle(&self, rec: Box<Record>) {
        let _ = self.free.push(rec);
    }

    /// Frames taken so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Matching frames missed for lack of a free buffer.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// True once the packet limit is used up.
    pub fn exhausted(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) == 0
    }
}

/// Parses a verdict name (`forward`, `reply`, `drop`, `pass`) into its filter bit.
pub fn verdict_bit(name: &str) -> Option<u8> {
    VerdictKind::from_name(name).map(|k| 1u8 << k.index())
}

/// Parses a drop reason name into its filter bit.
pub fn reason_bit(name: &str) -> Option<u128> {
    DropReason::from_name(name).map(|r| 1u128 << r.index())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Packet;
    use crate::parse::parse;

    #[test]
    fn filters_by_verdict_reason_and_prefix() {
        let f = Packet::udp("198.18.1.2".parse().unwrap(), 1, "198.18.100.10".parse().unwrap(), 2).build();
        let info = parse(&f).unwrap().unwrap();
        let drop = Verdict::Drop(DropReason::DenyList);
        let by_reason = Filter { reasons: reason_bit("deny_list").unwrap(), ..Filter::default() };
        assert!(by_reason.matches(drop, Some(&info), None));
        assert!(!by_reason.matches(Verdict::Drop(DropReason::Land), Some(&info), None));
        assert!(!by_reason.matches(Verdict::Forward, Some(&info), None));
        let by_prefix = Filter { prefix: Some("198.18.100.0/24".parse().unwrap()), ..Filter::default() };
        assert!(by_prefix.matches(Verdict::Forward, Some(&info), None));
        assert!(!by_prefix.matches(Verdict::Forward, None, None));
        let fwd = Filter { verdicts: verdict_bit("forward").unwrap(), ..Filter::default() };
        assert!(fwd.matches(Verdict::Forward, None, None));
        assert!(!fwd.matches(drop, None, None));
        let vec = Filter { vector: Some(3), ..Filter::default() };
        assert!(
            vec.matches(drop, None, Some(3)) && !vec.matches(drop, None, Some(4)) && !vec.matches(drop, None, None)
        );
    }

    #[test]
    fn takes_at_most_the_limit_and_counts_what_it_misses() {
        let s = Session::new(Filter::default(), 128, 5, 2);
        let frame = [7u8; 300];
        for _ in 0..10 {
            s.offer(1, Verdict::Forward, None, None, &frame, &["sni=a", "alpn=h3"]);
        }
        assert_eq!(s.taken(), 2);
        assert_eq!(s.missed(), 8);
        let r = s.next().unwrap();
        assert_eq!((r.len, r.kept), (300, 128));
        assert_eq!(r.annotation(), "verdict=forward sni=a alpn=h3");
        s.recycle(r);
        s.recycle(s.next().unwrap());
        // With the control side draining as it goes, the session stops at its limit.
        for _ in 0..10 {
            s.offer(1, Verdict::Forward, None, None, &frame, &[]);
            while let Some(r) = s.next() {
                s.recycle(r);
            }
        }
        assert_eq!(s.taken(), 5);
        assert!(s.exhausted());
    }
}
