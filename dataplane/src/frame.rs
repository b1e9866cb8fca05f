//! `Frame`: one packet buffer of a batch, with room to grow at the front.
//!
//! A frame borrows the whole buffer it lives in (a UMEM chunk on the AF_XDP path, a `Vec` in
//! tests and benches) and records where its bytes start and how many there are. Stages that add
//! headers (a VLAN tag, GRE encapsulation) grow it into the headroom; stages that remove headers
//! shrink it from the front. The I/O layer turns `start()`/`len()` back into a descriptor.

/// A packet inside a larger buffer. See the module docs.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    start: usize,
    len: usize,
    /// Where the frame started when it was created (see `rebase`).
    origin: usize,
}

impl<'a> Frame<'a> {
    /// A frame of `len` bytes at `start` in `buf`; clamps to the buffer.
    pub fn new(buf: &'a mut [u8], start: usize, len: usize) -> Frame<'a> {
        let start = start.min(buf.len());
        let len = len.min(buf.len() - start);
        Frame { buf, start, len, origin: start }
    }

    /// The frame's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The frame's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// Offset of the first byte in the buffer.
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free before the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.start - self.len
    }

    /// Grows the frame by `n` bytes at the front. False (and unchanged) without enough headroom.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front. False (and unchanged) when the frame is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.start += n;
        self.len -= n;
        true
    }

    /// Sets the length, growing into the tailroom or truncating. False when it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.len() {
            return false;
        }
        self.len = len;
        true
    }
}

impl Frame<'_> {
    /// Moves the bytes back to where the frame started when it was created, for I/O layers whose
    /// descriptors cannot point into the headroom. One `copy_within` when a stage grew or shrank
    /// the front (GRE, VLAN push or strip); nothing otherwise. False when the frame no longer fits
    /// between its origin and the end of the buffer.
    #[inline]
    pub fn rebase(&mut self) -> bool {
        if self.start == self.origin {
            return true;
        }
        if self.origin + self.len > self.buf.len() {
            return false;
        }
        self.buf.copy_within(self.start..self.start + self.len, self.origin);
        self.start = self.origin;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_the_buffer() {
        let mut buf = [0u8; 32];
        buf[8] = 0xaa;
        let mut f = Frame::new(&mut buf, 8, 10);
        assert_eq!(f.data()[0], 0xaa);
        assert_eq!((f.headroom(), f.tailroom()), (8, 14));
        assert!(f.push_front(8));
        assert!(!f.push_front(1));
        assert_eq!(f.len(), 18);
        assert!(f.pull_front(10));
        assert_eq!(f.data()[0], 0);
        assert!(!f.pull_front(9));
        assert!(f.set_len(22));
        assert!(!f.set_len(23));
        let f = Frame::new(&mut buf, 40, 10);
        assert!(f.is_empty());
    }

    #[test]
    fn rebase_moves_the_bytes_back_to_the_origin() {
        let mut buf: Vec<u8> = (0..64).collect();
        let mut f = Frame::new(&mut buf, 16, 8);
        assert!(f.push_front(4));
        f.data_mut()[0] = 0xee;
        assert!(f.rebase());
        assert_eq!(f.start(), 16);
        assert_eq!(f.len(), 12);
        assert_eq!(f.data()[0], 0xee);
        assert_eq!(&f.data()[4..], &[16, 17, 18, 19, 20, 21, 22, 23]);
        let mut g = Frame::new(&mut buf, 60, 4);
        assert!(g.push_front(8));
        assert!(!g.rebase(), "12 bytes do not fit between 60 and 64");
    }
}
