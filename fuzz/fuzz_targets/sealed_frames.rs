//! The reader's logic behind the AEAD. A mutated frame of a real image never opens, so
//! `image_reader` cannot reach what is checked after authentication: how the index grows, how
//! totals, segment counts and parts add up. Here the fuzzer's bytes are the *plaintexts* of
//! frames, which are sealed with a fixed key into an image that opens, and read both ways:
//! streaming (as from a pipe) and through the index (as from a file).
//!
//! Input: one byte choosing the chunk size (4 KiB, 16 KiB, 64 KiB, 1 MiB or 4 MiB: byte % 5),
//! then records of
//! `tag u8 | len u16 LE | payload[len]`, where `tag & 7` is
//!
//! | 0 | ENTRY, payload = plaintext                                          |
//! | 1 | CHUNK, payload = plaintext                                          |
//! | 2 | INDEX, payload = plaintext                                          |
//! | 3 | the index of the entries so far, as a writer makes it (no payload) |
//! | 4 | END, payload = its 40 bytes of fields (zero-padded)                 |
//! | 5 | END as a writer sets it (totals wrapping)                           |
//! | 6 | payload appended as it is, unsealed                                 |
//! | 7 | CHUNK of `start u64 | end u64 | data`: one segment at `start`       |
//!
//! and `tag >> 3` the frame's flags (1 LAST, 2 PAUSE). An ENTRY record whose flags have bit 16
//! set is a PACK instead (format version 2), of `(flags & 15) + 1` members (1 to 15), its
//! payload the members' raw bytes (`meta_len u32 | data_len u32 | meta | data`...), sealed
//! uncompressed; with `flags & 15 == 15`, the payload is `count u16 LE | codec u8 | reps u16 LE
//! | members`: the frame counts `count` members (0 to 65535), and its raw bytes are the members
//! repeated `reps` times (at most a chunk and 64 bytes), compressed with codec `codec % 3` (none,
//! zstd, lz4) where that makes them smaller, so that a few bytes of input make a pack of tens
//! of thousands of entries, or one whose metadata compresses past the 32x index rule.
//!
//! Nothing may panic, hang or allocate more than the frame sizes allow; visitors must see
//! entries, data and file ends in order; and an image the streaming reader accepts must be
//! accepted, with the same records and totals, through the index, where reading all its
//! entries at once (each pack read once) hands on the same entries, data and ends as streaming.
#![no_main]

use coffer_crypto::{MasterKey, Unlock};
use coffer_format::{Codec, EndFields, EntryKind, EntryMeta, FrameKind, IndexRecord};
use coffer_image::craft::{chunk_plaintext, pack_plaintext, pack_plaintext_with, FrameSealer};
use coffer_image::{open_stream, read_stream, ImageError, IndexedImage, RandomAccess, ReadOptions, Visitor};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::io::Read;

const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| run(data));

/// Seals the frames `data` describes into an image.
fn image(data: &[u8]) -> Option<Vec<u8>> {
    let (&cs, mut rest) = data.split_first()?;
    let chunk_size = [4096, 16384, 65536, 1 << 20, 4 << 20][usize::from(cs % 5)];
    let mut s = FrameSealer::new(&MasterKey::from_bytes(KEY), chunk_size).ok()?;
    while rest.len() >= 3 {
        let (tag, len) = (rest[0], usize::from(u16::from_le_bytes([rest[1], rest[2]])));
        let payload = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[3 + payload.len()..];
        let flags = tag >> 3;
        match tag & 7 {
            0 if flags & 31 == 31 => {
                let (count, plain) = big_pack(payload, chunk_size);
                s.frame_of(FrameKind::Pack, 0, count, &plain)
            }
            0 if flags & 16 != 0 => s.frame_of(FrameKind::Pack, 0, u16::from(flags & 15) + 1, &pack_plaintext(payload)),
            0 => s.frame(FrameKind::Entry, flags, payload),
            1 => s.frame(FrameKind::Chunk, flags, payload),
            2 => s.frame(FrameKind::Index, flags, payload),
            3 => s.auto_index(),
            4 => {
                let mut f = [0u8; 40];
                f[..payload.len().min(40)].copy_from_slice(&payload[..payload.len().min(40)]);
                let u = |i: usize| u64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().unwrap());
                let fields = EndFields {
                    seq: u(0),
                    entry_count: u(1),
                    index_offset: u(2),
                    index_frames: u(3),
                    total_size: u(4),
                };
                s.end(&fields);
            }
            5 => s.auto_end(),
            6 => s.raw(payload),
            _ => {
                let u = |i: usize| payload.get(i..i + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                let body = payload.get(16..).unwrap_or_default();
                s.frame(FrameKind::Chunk, flags, &chunk_plaintext((u(0), u(8)), body));
            }
        }
    }
    Some(s.into_bytes())
}

/// A PACK of `count u16 | codec u8 | reps u16 | members`: its count and plaintext (see above).
fn big_pack(payload: &[u8], chunk_size: u32) -> (u16, Vec<u8>) {
    let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
    let count = u16::from_le_bytes([byte(0), byte(1)]);
    let codec = [Codec::None, Codec::Zstd, Codec::Lz4][usize::from(byte(2) % 3)];
    let reps = usize::from(u16::from_le_bytes([byte(3), byte(4)]));
    let members = payload.get(5..).unwrap_or_default();
    let most = chunk_size as usize + 64;
    let mut raw = Vec::with_capacity((members.len() * reps).min(most));
    for _ in 0..reps {
        if raw.len() + members.len() > most || members.is_empty() {
            break;
        }
        raw.extend_from_slice(members);
    }
    (count, pack_plaintext_with(codec, &raw))
}

fn run(data: &[u8]) {
    let Some(image) = image(data) else { return };
    let unlocks = [Unlock::Key(MasterKey::from_bytes(KEY))];

    // Streaming, as from a pipe.
    let mut input = &image[..];
    let Ok(opened) = open_stream(&mut input, &unlocks) else { panic!("the sealer's header does not open") };
    let mut order = InOrder::new(false);
    let streamed = read_stream(&mut input, &opened, &mut order, ReadOptions { threads: 1, skip_data: false });
    let handed = std::mem::take(&mut order.handed);
    order.done(streamed.is_ok());

    // Through the index, as from a file: every entry (up to a bound) read on its own.
    let indexed = IndexedImage::open_with(Box::new(Mem(image.clone())), std::path::Path::new("fuzz"), &unlocks);
    if let Ok(idx) = &indexed {
        for i in 0..idx.records().len().min(8) {
            let mut order = InOrder::new(true);
            let _ = idx.read_entry(i, &mut order, 1);
        }
        // What list and info add up from the index: the index's checks promise it fits.
        let total = folded_sizes(idx.records());
        assert_eq!(total, Some(idx.end().total_size), "the files' sizes and END disagree");
    }

    if debug() {
        eprintln!("streaming: {:?}", streamed.as_ref().map(|s| (s.entries, s.files, s.logical_bytes)));
        eprintln!("index: {:?}", indexed.as_ref().map(|i| i.records().len()));
    }

    // An image read whole must read through its index, the same.
    if let Ok(summary) = &streamed {
        let idx = match &indexed {
            Ok(idx) => idx,
            Err(e) => panic!("streaming accepted the image, the index refused it: {e}"),
        };
        assert_eq!(summary.records, idx.records(), "records differ");
        assert_eq!(summary.logical_bytes, idx.end().total_size);
        assert_eq!(summary.entries, idx.end().entry_count);
        assert!(summary.files <= summary.entries && summary.data_bytes <= summary.logical_bytes);
        // Every entry at once through the index (as `extract` of the root's directories reads
        // them, each pack once): what streaming handed on, in the same order.
        let all: Vec<usize> = (0..idx.records().len()).collect();
        let mut order = InOrder::new(true);
        if let Err(e) = idx.read_entries(&all, &mut order, 1) {
            panic!("streaming accepted the image, reading its entries through the index failed: {e}");
        }
        assert!(order.handed == handed, "the entries read through the index differ from those streamed");
    }
}

/// COFFER_FUZZ_DEBUG set: say how each input was read (to check seeds).
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("COFFER_FUZZ_DEBUG").is_some())
}

/// Each file's final size (its last part's end), summed; None if the sum overflows.
fn folded_sizes(records: &[IndexRecord]) -> Option<u64> {
    let mut last: HashMap<&[u8], usize> = HashMap::new();
    let mut sizes: Vec<u64> = Vec::new();
    for r in records.iter().filter(|r| r.meta.kind == EntryKind::File) {
        match last.get(r.meta.path.as_slice()) {
            Some(&i) if r.meta.continues => sizes[i] = r.size,
            _ => {
                last.insert(&r.meta.path, sizes.len());
                sizes.push(r.size);
            }
        }
    }
    sizes.into_iter().try_fold(0u64, u64::checked_add)
}

/// An image in memory, read at any offset.
#[derive(Debug)]
struct Mem(Vec<u8>);

impl RandomAccess for Mem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = self.0.get(at..).and_then(|s| s.get(..buf.len()));
        buf.copy_from_slice(src.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?);
        Ok(())
    }
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(self.0.len());
        let to = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX).min(self.0.len());
        Ok(Box::new(&self.0[from..to]))
    }
}

/// Checks that a reader hands on what a restorer can take: an entry only between files, data
/// only inside a file and in increasing order, an end or a pause only of an open file, a
/// continuation only of a file paused where it begins (the restorer asserts the first three).
struct InOrder {
    /// Reading entries through the index: their records vouch for a continuation.
    scoped: bool,
    /// What was handed on, in order (data as offset, length and a hash of the bytes).
    handed: Vec<Handed>,
    /// The open file: its path and where its data may go on.
    open: Option<(Vec<u8>, u64)>,
    paused: HashMap<Vec<u8>, u64>,
}

impl InOrder {
    fn new(scoped: bool) -> Self {
        Self { scoped, handed: Vec::new(), open: None, paused: HashMap::new() }
    }

    /// The read is over: nothing may be left open after a whole image was read.
    fn done(self, complete: bool) {
        assert!(!complete || (self.open.is_none() && self.paused.is_empty()), "a complete read left a file open");
    }
}

/// One call a reader made of a visitor.
#[derive(Debug, PartialEq)]
enum Handed {
    Entry(EntryMeta),
    Data(u64, usize, u64),
    End(u64),
    Pause(u64),
}

fn digest(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

impl Visitor for InOrder {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        assert!(self.open.is_none(), "an entry while a file is open");
        self.handed.push(Handed::Entry(meta.clone()));
        if meta.kind == EntryKind::File {
            let start = if meta.continues { meta.size } else { 0 };
            if !self.scoped {
                let paused = self.paused.remove(&meta.path);
                assert_eq!(paused, meta.continues.then_some(start), "a continuation of a file not paused there");
            }
            self.open = Some((meta.path.clone(), start));
        }
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        let Some((_, next)) = self.open.as_mut() else { panic!("data outside a file") };
        assert!(offset >= *next, "data at {offset}, before {next}");
        self.handed.push(Handed::Data(offset, data.len(), digest(data)));
        *next = offset.checked_add(data.len() as u64).expect("data past 2^64");
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        let Some((_, next)) = self.open.take() else { panic!("the end of a file that is not open") };
        assert!(size >= next, "a file of {size} bytes with data up to {next}");
        self.handed.push(Handed::End(size));
        Ok(())
    }
    fn pause_file(&mut self, end: u64) -> Result<(), ImageError> {
        let Some((path, next)) = self.open.take() else { panic!("a pause of a file that is not open") };
        assert!(end >= next, "a part ending at {end} with data up to {next}");
        self.handed.push(Handed::Pause(end));
        self.paused.insert(path, end);
        Ok(())
    }
}
