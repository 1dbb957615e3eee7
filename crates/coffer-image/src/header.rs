//! Writing and opening the two header copies.

use crate::error::{ImageError, Location};
use coffer_crypto::{open_slot, seal_slot, sha256, DataKey, ImageKeys, SlotSecret, Unlock};
use coffer_format::header::SLOT_COUNT;
use coffer_format::{Codec, FormatError, Header, KeySlot, Suite, DATA_OFFSET, HEADER_SIZE};

/// Everything chosen when an image is created. Random in real use ([`ImageParams::random`]);
/// fixed in known-answer tests.
#[derive(Debug)]
pub struct ImageParams {
    pub suite: Suite,
    pub codec: Codec,
    pub level: i32,
    pub chunk_size: u32,
    pub created: i64,
    pub image_id: [u8; 16],
    pub data_key: DataKey,
    /// One salt per key slot to fill.
    pub slot_salts: Vec<[u8; 32]>,
}

impl ImageParams {
    pub fn random(suite: Suite, codec: Codec, level: i32, chunk_size: u32, slots: usize) -> Result<Self, ImageError> {
        let rng = |buf: &mut [u8]| coffer_crypto::random(buf).map_err(|e| ImageError::Usage(e.to_string()));
        let mut image_id = [0u8; 16];
        rng(&mut image_id)?;
        let mut slot_salts = vec![[0u8; 32]; slots];
        for s in &mut slot_salts {
            rng(s)?;
        }
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let data_key = DataKey::generate().map_err(|e| ImageError::Usage(e.to_string()))?;
        Ok(Self { suite, codec, level, chunk_size, created, image_id, data_key, slot_salts })
    }

    pub fn keys(&self) -> ImageKeys {
        ImageKeys::derive(self.suite, &self.data_key, &self.image_id)
    }

    /// Seals one slot per secret (each with its salt).
    pub fn seal_slots(&self, secrets: &[SlotSecret]) -> Result<Vec<KeySlot>, ImageError> {
        if secrets.is_empty() || secrets.len() > SLOT_COUNT || secrets.len() != self.slot_salts.len() {
            return Err(ImageError::Usage(format!("an image needs between 1 and {SLOT_COUNT} keys")));
        }
        let mut slots = vec![KeySlot::default(); SLOT_COUNT];
        for (i, secret) in secrets.iter().enumerate() {
            slots[i] = seal_slot(self.suite, secret, &self.data_key, &self.image_id, self.slot_salts[i], self.created)
                .map_err(|e| ImageError::Usage(e.to_string()))?;
        }
        Ok(slots)
    }

    /// The 16 KiB header region: both copies, each with its MAC and checksum.
    pub fn header_region(&self, slots: Vec<KeySlot>, keys: &ImageKeys) -> Vec<u8> {
        let header = Header {
            copy: 0,
            generation: 1,
            image_id: self.image_id,
            suite: self.suite,
            codec: self.codec,
            level: self.level.clamp(i8::MIN.into(), i8::MAX.into()) as i8,
            chunk_size: self.chunk_size,
            created: self.created,
            slots,
            mac: [0; 32],
            checksum: [0; 32],
        };
        seal_region(&header, keys)
    }
}

/// Both copies of `header` (its copy number is ignored), sealed.
pub fn seal_region(header: &Header, keys: &ImageKeys) -> Vec<u8> {
    let mut header = header.clone();
    header.copy = 0;
    let mut region = seal_header(&header, keys);
    header.copy = 1;
    region.extend_from_slice(&seal_header(&header, keys));
    region
}

/// Encodes a header copy with its MAC and checksum.
pub fn seal_header(header: &Header, keys: &ImageKeys) -> Vec<u8> {
    let mut bytes = header.encode();
    let mac = keys.header_mac(Header::mac_region(&bytes));
    Header::set_mac(&mut bytes, &mac);
    let sum = sha256(Header::checksum_region(&bytes));
    Header::set_checksum(&mut bytes, &sum);
    bytes
}

/// An image whose header has been checked and whose data key is unlocked.
#[derive(Debug)]
pub struct OpenedImage {
    pub header: Header,
    pub keys: ImageKeys,
    /// Kept for header rewrites (key slot changes); never leaves this process.
    pub data_key: DataKey,
    /// The slot that opened.
    pub slot: usize,
    /// Damage found in the other header copy (the image is still readable).
    pub warnings: Vec<String>,
    /// See [`ChosenHeader::stale_copy`].
    pub stale_copy: Option<usize>,
}

impl OpenedImage {
    pub fn chunk_size(&self) -> u32 {
        self.header.chunk_size
    }
}

fn parse_copy(bytes: &[u8]) -> Result<Header, FormatError> {
    let header = Header::parse(bytes)?;
    if Header::stored_checksum(bytes) != Some(sha256(Header::checksum_region(bytes))) {
        return Err(FormatError::Invalid { what: "header", detail: "checksum mismatch".into() });
    }
    Ok(header)
}

fn at(offset: u64) -> Location {
    Location { offset, ..Location::default() }
}

/// The header copy to use, chosen without a key.
#[derive(Debug)]
pub struct ChosenHeader {
    pub header: Header,
    /// Which copy (0 at offset 0, 1 at offset 8192).
    pub copy: usize,
    /// The other copy, if intact.
    pub other: Option<Header>,
    /// Damage found in the other copy.
    pub warnings: Vec<String>,
    /// The other copy is intact but of an older generation: a key-slot change was interrupted
    /// after the first copy was written (the newer copy is used; the next change rewrites both).
    pub stale_copy: Option<usize>,
}

/// Checks the header region (both copies) and picks the copy to use: one whose checksum holds;
/// of two, the one with the higher generation (an in-place rewrite interrupted between the two
/// copies leaves them different).
pub fn choose_header(region: &[u8]) -> Result<ChosenHeader, ImageError> {
    if !Header::has_magic(region) && !Header::has_magic(region.get(HEADER_SIZE..).unwrap_or_default()) {
        return Err(ImageError::NotAnImage("no coffer magic at offset 0".into()));
    }
    if region.len() < DATA_OFFSET as usize {
        return Err(ImageError::Truncated {
            at: at(region.len() as u64),
            detail: "the header region is incomplete".into(),
        });
    }
    let mut copies: Vec<Result<Header, FormatError>> =
        (0..2).map(|i| parse_copy(&region[i * HEADER_SIZE..(i + 1) * HEADER_SIZE])).collect();
    for c in &copies {
        if let Err(FormatError::UnsupportedVersion(v)) = c {
            return Err(ImageError::NotAnImage(format!(
                "format version {v}; this coffer reads version {}",
                coffer_format::VERSION
            )));
        }
    }
    let mut warnings = Vec::new();
    for (i, c) in copies.iter().enumerate() {
        if let Err(e) = c {
            warnings.push(format!("header copy {i} (at byte {}) is damaged: {e}", i * HEADER_SIZE));
        }
    }
    let best = copies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().ok().map(|h| (i, h)))
        .max_by_key(|(i, h)| (h.generation, std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    let Some(copy) = best else {
        return Err(ImageError::corrupt(at(0), format!("both header copies are damaged ({})", warnings.join("; "))));
    };
    let header = std::mem::replace(&mut copies[copy], Err(FormatError::BadMagic)).expect("chosen copy is intact");
    if header.copy as usize != copy {
        return Err(ImageError::corrupt(
            at((copy * HEADER_SIZE) as u64),
            "header copy number does not match its position",
        ));
    }
    let other = std::mem::replace(&mut copies[1 - copy], Err(FormatError::BadMagic)).ok();
    let stale_copy = other.as_ref().filter(|o| o.generation < header.generation).map(|_| 1 - copy);
    Ok(ChosenHeader { header, copy, other, warnings, stale_copy })
}

/// Checks the header region (both copies), opens a key slot with one of `unlocks`, and
/// verifies the header MAC.
///
/// With a good copy and no slot opening, the key is wrong: the checksum rules out accidental
/// damage to the slots, so this is said with certainty.
pub fn open_header(region: &[u8], unlocks: &[Unlock]) -> Result<OpenedImage, ImageError> {
    let ChosenHeader { header, copy, other, mut warnings, stale_copy } = choose_header(region)?;
    let opened = header.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()).find_map(|(i, slot)| {
        unlocks.iter().find_map(|u| open_slot(header.suite, u, &header.image_id, slot)).map(|dk| (i, dk))
    });
    let Some((slot, data_key)) = opened else {
        return Err(ImageError::WrongKey);
    };
    let keys = ImageKeys::derive(header.suite, &data_key, &header.image_id);
    let bytes = &region[copy * HEADER_SIZE..(copy + 1) * HEADER_SIZE];
    keys.verify_header_mac(Header::mac_region(bytes), &header.mac).map_err(|_| {
        ImageError::corrupt(at((copy * HEADER_SIZE) as u64), "header MAC does not verify: the header was altered")
    })?;
    // The other copy, if intact, must describe the same image and verify under the same key.
    if let Some(other) = other {
        if other.image_id != header.image_id || other.suite != header.suite || other.chunk_size != header.chunk_size {
            warnings.push(format!("header copy {} describes a different image", 1 - copy));
        } else {
            let other_bytes = &region[(1 - copy) * HEADER_SIZE..(2 - copy) * HEADER_SIZE];
            if keys.verify_header_mac(Header::mac_region(other_bytes), &other.mac).is_err() {
                warnings.push(format!("header copy {} does not verify: it was altered", 1 - copy));
            }
        }
    }
    Ok(OpenedImage { header, keys, data_key, slot, warnings, stale_copy })
}
