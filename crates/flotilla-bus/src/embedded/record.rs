//! Record framing: how one message is laid out in a segment file. Pure code over bytes.
//!
//! ```text
//! record := length     u32 LE   payload length in bytes
//!           checksum   u32 LE   CRC-32C over sequence ‖ timestamp ‖ payload
//!           sequence   u64 LE   the message's number within its queue
//!           timestamp  u64 LE   when the bus accepted it, ms since the Unix epoch
//!           payload    [u8; length]
//! ```
//!
//! The checksum covers the sequence number, so a record copied to the wrong place or
//! left over from a previous file fails to verify. A zero-filled region (a hole, or
//! space the file system extended but never wrote) never verifies either, because the
//! CRC-32C of sixteen zero bytes is not zero.

/// Bytes before the payload.
pub const RECORD_HEADER_LEN: usize = 24;

/// A record decoded from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView {
    pub seq: u64,
    pub timestamp_ms: u64,
    /// Where the payload lies within the buffer given to [`decode`].
    pub payload_start: usize,
    pub payload_len: usize,
}

impl RecordView {
    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload_len
    }
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Record(RecordView),
    /// The buffer ends inside this record; `needed` bytes would hold all of it.
    Incomplete {
        needed: usize,
    },
    /// The bytes are not a valid record.
    Corrupt(Corruption),
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The length field exceeds the largest payload the bus accepts.
    Length(u32),
    Checksum,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Length(len) => write!(f, "impossible record length {len}"),
            Corruption::Checksum => f.write_str("checksum mismatch"),
        }
    }
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, timestamp_ms: u64, payload: &[u8]) {
    let mut meta = [0u8; 16];
    meta[..8].copy_from_slice(&seq.to_le_bytes());
    meta[8..].copy_from_slice(&timestamp_ms.to_le_bytes());
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&meta), payload);
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(payload);
}

/// Decodes the record at the start of `buf`, refusing lengths above `max_payload`.
pub fn decode(buf: &[u8], max_payload: usize) -> Decoded {
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete { needed: RECORD_HEADER_LEN };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if len as usize > max_payload {
        return Decoded::Corrupt(Corruption::Length(len));
    }
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Decoded::Incomplete { needed: total };
    }
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let meta = &buf[8..24];
    let payload = &buf[RECORD_HEADER_LEN..total];
    if crc32c::crc32c_append(crc32c::crc32c(meta), payload) != stored {
        return Decoded::Corrupt(Corruption::Checksum);
    }
    Decoded::Record(RecordView {
        seq: u64::from_le_bytes(meta[..8].try_into().expect("8 bytes")),
        timestamp_ms: u64::from_le_bytes(meta[8..].try_into().expect("8 bytes")),
        payload_start: RECORD_HEADER_LEN,
        payload_len: len as usize,
    })
}

/// After corruption at the start of `buf`, finds the offset of the next record that
/// verifies and whose sequence number is above `after_seq`; `None` when there is none
/// in `buf`. Used to skip a damaged record without serving it or losing its neighbours.
pub fn resync(buf: &[u8], after_seq: Option<u64>, max_payload: usize) -> Option<usize> {
    (1..buf.len().saturating_sub(RECORD_HEADER_LEN - 1)).find(|&offset| {
        matches!(decode(&buf[offset..], max_payload),
            Decoded::Record(r) if after_seq.is_none_or(|s| r.seq > s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1234, b"hello");
        encode(&mut buf, 8, 1235, b"");
        let Decoded::Record(first) = decode(&buf, MAX) else { panic!() };
        assert_eq!((first.seq, first.timestamp_ms, first.payload_len), (7, 1234, 5));
        assert_eq!(&buf[first.payload_start..first.total_len()], b"hello");
        let Decoded::Record(second) = decode(&buf[first.total_len()..], MAX) else { panic!() };
        assert_eq!((second.seq, second.payload_len), (8, 0));
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, b"payload bytes");
        for cut in 0..buf.len() {
            assert!(matches!(decode(&buf[..cut], MAX), Decoded::Incomplete { .. }), "cut at {cut}");
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                match decode(&damaged, MAX) {
                    Decoded::Record(_) => panic!("flip of bit {bit} in byte {byte} went unnoticed"),
                    // A flipped length bit may also read as a longer, incomplete record.
                    Decoded::Corrupt(_) | Decoded::Incomplete { .. } => {}
                }
            }
        }
    }

    #[test]
    fn zeroes_are_not_a_record() {
        assert_eq!(decode(&[0u8; 64], MAX), Decoded::Corrupt(Corruption::Checksum));
    }

    #[test]
    fn impossible_lengths_are_corrupt() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, &[7u8; 100]);
        assert_eq!(decode(&buf, 99), Decoded::Corrupt(Corruption::Length(100)));
    }

    #[test]
    fn resync_skips_a_damaged_record() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 0, b"first");
        let second_at = buf.len();
        encode(&mut buf, 2, 0, b"second");
        let third_at = buf.len();
        encode(&mut buf, 3, 0, b"third");
        buf[second_at + 26] ^= 0xff;
        assert!(matches!(decode(&buf[second_at..], MAX), Decoded::Corrupt(_)));
        assert_eq!(resync(&buf[second_at..], Some(1), MAX), Some(third_at - second_at));
        assert_eq!(resync(&buf[second_at..], Some(3), MAX), None);
    }
}
