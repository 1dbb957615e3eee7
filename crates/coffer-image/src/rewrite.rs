//! Changing an image after it is written: its key slots in place (the header region only), a
//! backup copy of the header region, and `rekey`: a new image under a new data key.
//!
//! In-place writes keep one good header copy at every instant: the copy not in use is written
//! and made durable first, then the other. A crash leaves either the old header (the first
//! write torn) or the new one (a higher generation) to open with; bytes after the header region
//! are never touched.

use crate::error::{io, ImageError, Location};
use crate::header::{choose_header, seal_region, ImageParams, OpenedImage};
use crate::read::{produce, Decoded, Job, Scope};
use crate::BufPool;
use coffer_crypto::{sha256, ImageKeys, SlotSecret};
use coffer_format::frame::{self, END_FIELDS_LEN, FRAME_HEADER_LEN};
use coffer_format::{EndFields, FrameKind, Header, KeySlot, DATA_OFFSET, HEADER_SIZE, TAG_LEN};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The header region (both copies) at the start of an image file.
pub fn read_header_region(file: &File, path: &Path) -> Result<Vec<u8>, ImageError> {
    let len = file.metadata().map_err(io("stat", path))?.len();
    let mut region = vec![0u8; DATA_OFFSET.min(len) as usize];
    file.read_exact_at(&mut region, 0).map_err(io("read", path))?;
    Ok(region)
}

/// An image file opened for a header change: read-write, and locked against concurrent
/// changes by other coffer processes.
#[derive(Debug)]
pub struct HeaderFile {
    file: nix::fcntl::Flock<File>,
    path: PathBuf,
}

impl HeaderFile {
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(io("open", path))?;
        let md = file.metadata().map_err(io("stat", path))?;
        if !md.is_file() {
            return Err(ImageError::Usage(format!(
                "{} is not a regular file: key slots change in place",
                path.display()
            )));
        }
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            ImageError::Usage(format!("{} is locked: another coffer is changing its header ({e})", path.display()))
        })?;
        Ok(Self { file, path: path.into() })
    }

    pub fn region(&self) -> Result<Vec<u8>, ImageError> {
        read_header_region(&self.file, &self.path)
    }

    /// Replaces the key slots: the header gets generation + 1 and a fresh MAC, both copies are
    /// rewritten (see the module comment), and the result is read back and checked.
    /// `after_copy` runs once each copy is durable (tests inject crashes there).
    pub fn write_slots(
        &self,
        image: &OpenedImage,
        slots: Vec<KeySlot>,
        after_copy: &mut dyn FnMut(usize),
    ) -> Result<Header, ImageError> {
        let chosen = choose_header(&self.region()?)?;
        if chosen.header.image_id != image.header.image_id {
            return Err(ImageError::Usage(format!("{} changed while it was open", self.path.display())));
        }
        let mut header = chosen.header.clone();
        header.slots = slots;
        header.generation += 1;
        let region = seal_region(&header, &image.keys);
        self.write_region(&region, 1 - chosen.copy, after_copy)?;
        Ok(header)
    }

    /// Writes a whole header region, copy `first` first, each copy made durable before the
    /// next; then reads it back.
    pub fn write_region(
        &self,
        region: &[u8],
        first: usize,
        after_copy: &mut dyn FnMut(usize),
    ) -> Result<(), ImageError> {
        for copy in [first, 1 - first] {
            let at = copy * HEADER_SIZE;
            self.file.write_all_at(&region[at..at + HEADER_SIZE], at as u64).map_err(io("write", &self.path))?;
            self.file.sync_data().map_err(io("flush", &self.path))?;
            after_copy(copy);
        }
        if self.region()? != region {
            return Err(ImageError::Io {
                op: "verify",
                path: self.path.clone(),
                source: std::io::Error::other("the header read back differs from what was written"),
            });
        }
        Ok(())
    }
}

/// A copy of an image's header region, as `coffer header backup` writes it:
///
/// ```text
/// 0      8  magic "\x89COFHDR\n"
/// 8      2  version (1, little-endian)
/// 10     6  reserved (0)
/// 16    16  image id
/// 32 16384  the header region, both copies, as in the image
/// 16416 32  SHA-256 of bytes [0, 16416)
/// ```
#[derive(Debug, Clone)]
pub struct HeaderBackup {
    pub image_id: [u8; 16],
    pub region: Vec<u8>,
}

impl HeaderBackup {
    pub const MAGIC: [u8; 8] = *b"\x89COFHDR\n";
    pub const LEN: usize = 32 + 2 * HEADER_SIZE + 32;

    /// Takes the region of an image; at least one copy must be intact.
    pub fn of_region(region: &[u8]) -> Result<Self, ImageError> {
        let chosen = choose_header(region)?;
        Ok(Self { image_id: chosen.header.image_id, region: region[..2 * HEADER_SIZE].to_vec() })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.image_id);
        out.extend_from_slice(&self.region);
        let sum = sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let bad = |d: &str| ImageError::NotAnImage(format!("not a coffer header backup: {d}"));
        if bytes.len() != Self::LEN || bytes[..8] != Self::MAGIC {
            return Err(bad("wrong size or magic"));
        }
        if bytes[8..10] != 1u16.to_le_bytes() || bytes[10..16] != [0; 6] {
            return Err(bad("unknown version"));
        }
        if sha256(&bytes[..Self::LEN - 32]) != bytes[Self::LEN - 32..] {
            return Err(ImageError::corrupt(Location::default(), "the header backup's checksum does not match"));
        }
        let image_id: [u8; 16] = bytes[16..32].try_into().expect("16 bytes");
        let region = bytes[32..32 + 2 * HEADER_SIZE].to_vec();
        if choose_header(&region)?.header.image_id != image_id {
            return Err(bad("its header belongs to another image"));
        }
        Ok(Self { image_id, region })
    }
}

/// Re-encrypts an image under a new data key and image id (from `params`; the header keeps the
/// image's codec, chunk size and creation date), frame by frame:
/// each frame is authenticated and decrypted with the old keys and sealed with the new ones.
/// Nothing is decompressed, and the frame layout and sizes are unchanged, so the index stays
/// valid. `input` is positioned after the old header region; returns the bytes written.
pub fn rekey<W: Write>(
    input: &mut (dyn Read + Send),
    mut sink: W,
    old: &OpenedImage,
    params: &ImageParams,
    secrets: &[SlotSecret],
    threads: usize,
    progress: &dyn crate::Progress,
) -> Result<u64, ImageError> {
    let new_keys = params.keys();
    let mut header = old.header.clone();
    header.generation = 1;
    header.image_id = params.image_id;
    header.suite = params.suite;
    header.slots = params.seal_slots(secrets)?;
    // A signature covers the old data key: sign anew with the caller's key, or drop it.
    let header = crate::header::sign_header(header, params.signing_key.as_ref(), &params.data_key);
    let region = seal_region(&header, &new_keys);
    sink.write_all(&region).map_err(io("write", "output"))?;
    let chunk_size = old.chunk_size();
    let pool = BufPool::new(FRAME_HEADER_LEN + frame::max_body_len(chunk_size));
    let (old_id, new_id) = (old.header.image_id, params.image_id);
    let make_worker = || {
        |job: &mut Job| {
            let Some(h) = job.header else { return };
            let body = &mut job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.body_len as usize];
            let ok = if h.kind == FrameKind::End {
                reseal_end(&old.keys, &new_keys, &old_id, &new_id, &h, body)
            } else {
                let (old_aad, new_aad) = (frame::aad(&old_id, job.pos, &h), frame::aad(&new_id, job.pos, &h));
                reseal(&old.keys, &new_keys, job.pos.seq, &old_aad, &new_aad, body)
            };
            if !ok {
                job.decoded = Decoded::Bad { truncated: false, detail: "frame fails authentication".into() };
            }
        }
    };
    let mut written = region.len() as u64;
    let mut complete = false;
    let consumer = |job: Job| -> Result<(), ImageError> {
        let at = Location { offset: job.offset, ..Location::default() };
        match &job.decoded {
            Decoded::Bad { truncated: true, detail } => {
                return Err(ImageError::Truncated { at, detail: detail.clone() })
            }
            Decoded::Bad { truncated: false, detail } => return Err(ImageError::corrupt(at, detail.clone())),
            _ => {}
        }
        let len = job.frame_len() as usize;
        sink.write_all(&job.buf[..len]).map_err(io("write", "output"))?;
        written += len as u64;
        progress.advance(len as u64);
        complete = job.header.is_some_and(|h| h.kind == FrameKind::End);
        pool.put(job.buf);
        Ok(())
    };
    let producer = |feed: &coffer_pipe::Feed<Job>| produce(input, feed, &pool, old, &Scope::Whole);
    coffer_pipe::run(coffer_pipe::Shape::for_threads(threads), producer, make_worker, consumer)?;
    if !complete {
        return Err(ImageError::Truncated {
            at: Location { offset: written, ..Location::default() },
            detail: "the image ends without its END frame".into(),
        });
    }
    sink.flush().map_err(io("write", "output"))?;
    Ok(written)
}

/// Opens a frame body in place under the old keys and seals it under the new ones.
fn reseal(old: &ImageKeys, new: &ImageKeys, seq: u64, old_aad: &[u8], new_aad: &[u8], body: &mut [u8]) -> bool {
    let plain_len = match old.open(seq, old_aad, body) {
        Ok(plain) => plain.len(),
        Err(_) => return false,
    };
    let tag = new.seal(seq, new_aad, &mut body[..plain_len]);
    body[plain_len..plain_len + TAG_LEN].copy_from_slice(&tag);
    true
}

/// The END frame authenticates its plaintext fields; only its tag changes.
fn reseal_end(
    old: &ImageKeys,
    new: &ImageKeys,
    old_id: &[u8; 16],
    new_id: &[u8; 16],
    h: &coffer_format::FrameHeader,
    body: &mut [u8],
) -> bool {
    let Ok(fields) = EndFields::parse(&body[..END_FIELDS_LEN]) else { return false };
    let (_, tag) = body.split_at_mut(END_FIELDS_LEN);
    if old.open(fields.seq, &fields.aad(old_id, h), tag).is_err() {
        return false;
    }
    tag.copy_from_slice(&new.seal(fields.seq, &fields.aad(new_id, h), &mut []));
    true
}
