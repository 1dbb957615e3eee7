//! The parsers behind the AEAD: what a reader sees once a frame authenticates. A writer holding
//! the key can put anything there, so they get the same scrutiny as the outer layers.
#![no_main]

use coffer_format::{chunk, frame, index, pack, EndFields, EntryMeta, FrameHeader, Header, IndexRecord, KeySlot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 8 {
        0 => {
            if let Ok(m) = EntryMeta::parse(rest) {
                let mut out = vec![];
                m.encode(&mut out);
                assert_eq!(out, rest, "entry metadata round-trips");
            }
        }
        1 => {
            let _ = chunk::parse_chunk(rest, 1 << 20);
        }
        2 => {
            if let Ok(records) = IndexRecord::parse_all(rest) {
                let mut out = vec![];
                records.iter().for_each(|r| r.encode(&mut out));
                assert_eq!(out, rest, "index records round-trip");
            }
            let _ = index::parse_index_part(rest, 1 << 20);
        }
        3 => {
            if let Ok(h) = Header::parse(rest) {
                assert_eq!(h.encode(), rest, "headers round-trip");
            }
        }
        4 => {
            if let Ok(s) = KeySlot::parse(rest) {
                assert_eq!(s.encode().as_slice(), rest);
            }
        }
        5 => {
            if let Ok(head) = rest.try_into() {
                if let Ok(h) = FrameHeader::parse(head, 1 << 20) {
                    assert_eq!(&h.encode(), head, "frame headers round-trip");
                }
            }
        }
        6 => {
            // A pack's members: the count from the first two bytes, as a frame header gives it.
            let (count, raw) = rest.split_at(rest.len().min(2));
            let count = usize::from(u16::from_le_bytes([count.first().copied().unwrap_or(0), count.get(1).copied().unwrap_or(0)]));
            if let Ok(members) = pack::parse_members(raw, count) {
                let mut out = vec![];
                for m in &members {
                    let mut meta = vec![];
                    m.meta.encode(&mut meta);
                    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
                    out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
                    out.extend_from_slice(&meta);
                    out.extend_from_slice(&raw[m.data.clone()]);
                }
                assert_eq!(out, raw, "pack members round-trip");
            }
            let _ = pack::parse_pack(rest, 1 << 20);
        }
        _ => {
            if let Ok(e) = EndFields::parse(rest) {
                assert_eq!(e.encode().as_slice(), rest);
            }
            let _ = frame::max_body_len(u32::from_le_bytes(rest.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4])));
        }
    }
});
