//! 802.1Q / 802.1ad VLAN tag view.
//!
//! A tag sits between the source MAC and the EtherType: TPID (0x8100 C-tag, 0x88a8 S-tag, also
//! the legacy 0x9100) then the 16-bit TCI (PCP 3 bits, DEI 1 bit, VID 12 bits). The view starts
//! at the TCI, i.e. right after the TPID that announced the tag, and ends with the next
//! EtherType/TPID, which is how the tag stack is walked.

use super::Truncated;
use super::{get_u16, set_u16};

/// 802.1Q customer tag TPID.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag TPID.
pub const TPID_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ TPID still seen on some equipment.
pub const TPID_QINQ_LEGACY: u16 = 0x9100;

/// True when this EtherType value announces a VLAN tag.
#[inline]
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
}

/// Bytes of one tag after its TPID: TCI and the next EtherType.
pub const TAG_LEN: usize = field::ETHERTYPE.end;

/// A view of one VLAN tag (TCI + inner EtherType).
#[derive(Debug, Clone)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tag<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Tag<T> {
        Tag { buffer }
    }

    /// Wraps a buffer, checking it holds a whole tag.
    pub fn new_checked(buffer: T) -> Result<Tag<T>, Truncated> {
        if buffer.as_ref().len() < TAG_LEN { Err(Truncated) } else { Ok(Tag { buffer }) }
    }

    /// Tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI.start)
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The EtherType (or next TPID) that follows this tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tag<T> {
    /// Sets the VLAN identifier, keeping PCP and DEI.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        set_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the whole TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        set_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the EtherType that follows.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rewrites_a_tag() {
        let mut bytes = [0xa0, 0x64, 0x08, 0x00];
        let mut tag = Tag::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert_eq!(tag.ethertype(), 0x0800);
        tag.set_vid(4000);
        assert_eq!(tag.vid(), 4000);
        assert_eq!(tag.pcp(), 5);
        assert!(Tag::new_checked(&bytes[..3]).is_err());
    }

    #[test]
    fn knows_its_tpids() {
        assert!(is_vlan_tpid(0x8100) && is_vlan_tpid(0x88a8) && is_vlan_tpid(0x9100));
        assert!(!is_vlan_tpid(0x0800));
    }
}
