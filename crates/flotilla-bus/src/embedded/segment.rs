//! Segment files: naming, the header, and the recovery scan that finds where the valid
//! records of a segment end.

use std::path::{Path, PathBuf};

use super::io::ReadFile;
use super::record::{self, Decoded};

/// `FLOTSEG1`: identifies a Flotilla segment file, format version 1.
pub const MAGIC: &[u8; 8] = b"FLOTSEG1";
/// Bytes before the first record.
pub const HEADER_LEN: u64 = 24;
const EXTENSION: &str = "seg";

/// The file name of the segment whose first record has sequence number `base`.
pub fn file_name(base: u64) -> String {
    format!("{base:020}.{EXTENSION}")
}

/// The base sequence number encoded in a segment's file name.
pub fn parse_file_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A segment's path in its queue directory.
pub fn path(queue_dir: &Path, base: u64) -> PathBuf {
    queue_dir.join(file_name(base))
}

/// The header: magic, base sequence number, CRC-32C of both, four reserved bytes.
pub fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&header[..16]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a header; returns the base sequence number it names.
pub fn decode_header(header: &[u8]) -> Result<u64, String> {
    if header.len() < HEADER_LEN as usize {
        return Err(format!("header is {} bytes, expected {HEADER_LEN}", header.len()));
    }
    if &header[..8] != MAGIC {
        return Err("not a Flotilla segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[..16]) != crc {
        return Err("header checksum mismatch".into());
    }
    Ok(u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")))
}

/// What a recovery scan found in a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Offset just past the last valid record: where appends continue.
    pub valid_end: u64,
    /// Sequence number of the last valid record.
    pub last_seq: Option<u64>,
    /// Timestamp of the last valid record.
    pub last_timestamp_ms: Option<u64>,
    pub records: u64,
    /// Damaged byte ranges `(offset, length)` inside the segment that were skipped
    /// because valid records follow them.
    pub skipped: Vec<(u64, u64)>,
}

/// Scans the records of a segment of `len` bytes. A damaged or incomplete record
/// followed by nothing valid is a torn tail: `valid_end` stops before it. A damaged
/// record followed by valid ones is skipped (and reported), never served.
pub fn scan(file: &dyn ReadFile, len: u64, max_payload: usize) -> std::io::Result<ScanReport> {
    let mut report = ScanReport { valid_end: HEADER_LEN, ..ScanReport::default() };
    const CHUNK: usize = 4 << 20;
    let mut offset = HEADER_LEN;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = offset;
    while offset < len {
        let in_buf = (offset - buf_start) as usize;
        let available = &buf[in_buf.min(buf.len())..];
        match record::decode(available, max_payload) {
            Decoded::Record(r) if report.last_seq.is_none_or(|last| r.seq > last) => {
                offset += r.total_len() as u64;
                report.valid_end = offset;
                report.last_seq = Some(r.seq);
                report.last_timestamp_ms = Some(r.timestamp_ms);
                report.records += 1;
            }
            Decoded::Incomplete { needed } if (offset + needed as u64) <= len => {
                // Refill the buffer from `offset`, large enough for this record.
                let want = needed.max(CHUNK).min((len - offset) as usize);
                buf.resize(want, 0);
                let got = file.read_at(offset, &mut buf)?;
                buf.truncate(got);
                buf_start = offset;
                if got < needed {
                    break; // The file shrank under us; treat as end.
                }
            }
            Decoded::Incomplete { .. } => break, // Torn tail: the record runs past EOF.
            Decoded::Record(_) | Decoded::Corrupt(_) => {
                // Damage: look for the next valid record in the rest of the file.
                let mut rest = vec![0u8; (len - offset) as usize];
                let got = file.read_at(offset, &mut rest)?;
                rest.truncate(got);
                match record::resync(&rest, report.last_seq, max_payload) {
                    Some(skip) => {
                        report.skipped.push((offset, skip as u64));
                        buf = rest;
                        buf_start = offset;
                        offset += skip as u64;
                    }
                    None => break,
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::io::ReadFile;

    struct Bytes(Vec<u8>);
    impl ReadFile for Bytes {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let start = (offset as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
    }

    fn segment(records: &[(u64, &[u8])]) -> (Vec<u8>, Vec<u64>) {
        let mut out = encode_header(records.first().map_or(0, |r| r.0)).to_vec();
        let mut offsets = Vec::new();
        for (seq, payload) in records {
            offsets.push(out.len() as u64);
            record::encode(&mut out, *seq, 0, payload);
        }
        (out, offsets)
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(Path::new("/x/00000000000000000042.seg")), Some(42));
        assert_eq!(parse_file_name(Path::new("/x/42.seg")), None);
        assert_eq!(parse_file_name(Path::new("/x/00000000000000000042.tmp")), None);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let header = encode_header(99);
        assert_eq!(decode_header(&header), Ok(99));
        let mut bad = header;
        bad[9] ^= 1;
        assert!(decode_header(&bad).unwrap_err().contains("checksum"));
        assert!(decode_header(&header[..10]).is_err());
        assert!(decode_header(&[0u8; 24]).unwrap_err().contains("magic"));
    }

    #[test]
    fn clean_segment() {
        let (bytes, _) = segment(&[(5, b"a"), (6, b"bb"), (7, b"ccc")]);
        let report = scan(&Bytes(bytes.clone()), bytes.len() as u64, 1024).unwrap();
        assert_eq!(report.valid_end, bytes.len() as u64);
        assert_eq!((report.last_seq, report.records), (Some(7), 3));
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let (bytes, offsets) = segment(&[(1, b"first"), (2, b"second"), (3, b"third")]);
        for cut in offsets[2] as usize..bytes.len() {
            let report = scan(&Bytes(bytes[..cut].to_vec()), cut as u64, 1024).unwrap();
            assert_eq!(report.valid_end, offsets[2], "cut at {cut}");
            assert_eq!(report.last_seq, Some(2));
        }
    }

    #[test]
    fn damage_in_the_middle_is_skipped_and_damage_at_the_end_is_cut() {
        let (mut bytes, offsets) = segment(&[(1, b"first"), (2, b"second"), (3, b"third")]);
        let mut tail = bytes.clone();
        bytes[offsets[1] as usize + 26] ^= 0xff;
        let report = scan(&Bytes(bytes.clone()), bytes.len() as u64, 1024).unwrap();
        assert_eq!(report.valid_end, bytes.len() as u64);
        assert_eq!((report.last_seq, report.records), (Some(3), 2));
        assert_eq!(report.skipped, vec![(offsets[1], offsets[2] - offsets[1])]);

        let last = tail.len() - 1;
        tail[last] ^= 0xff;
        let report = scan(&Bytes(tail.clone()), tail.len() as u64, 1024).unwrap();
        assert_eq!(report.valid_end, offsets[2]);
        assert!(report.skipped.is_empty());
    }
}
