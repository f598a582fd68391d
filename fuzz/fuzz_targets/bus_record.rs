//! Bus records and segments from arbitrary bytes: decoding, resynchronising after
//! damage and scanning a whole segment never panic, and whatever is accepted as a
//! record verifies its checksum.
#![no_main]

use flotilla_bus::embedded::io::ReadFile;
use flotilla_bus::embedded::record::{self, Decoded};
use flotilla_bus::embedded::segment;
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(&'a [u8]);

impl ReadFile for Bytes<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    if let Decoded::Record(r) = record::decode(data, 1 << 16) {
        // Re-encoding what was accepted gives back the same bytes.
        let mut again = Vec::new();
        record::encode(&mut again, r.seq, r.timestamp_ms, &data[r.payload_start..r.total_len()]);
        assert_eq!(&again[..], &data[..r.total_len()]);
    }
    let _ = record::resync(data, None, 1 << 16);
    let _ = segment::decode_header(data);
    if let Ok(report) = segment::scan(&Bytes(data), data.len() as u64, 1 << 16) {
        assert!(report.valid_end <= data.len().max(segment::HEADER_LEN as usize) as u64);
    }
});
