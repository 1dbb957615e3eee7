//! Writing and opening the two header copies.

use crate::error::{ImageError, Location};
use coffer_crypto::{
    key_commitment, open_slots, seal_slot, sha256, DataKey, ImageKeys, Signer, SigningKey, SlotSecret, Unlock,
};
use coffer_format::header::SLOT_COUNT;
use coffer_format::{Codec, FormatError, Header, ImageSignature, KeySlot, Suite, DATA_OFFSET, HEADER_SIZE};

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
    /// Signs the header (FORMAT.md §3.1) when set.
    pub signing_key: Option<SigningKey>,
    /// Files of at most this many bytes (and directories, links) are packed together (FORMAT.md
    /// §5.7, a version 2 image); 0 packs nothing and writes a version 1 image.
    pub pack_limit: u32,
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
        let pack_limit = crate::write::default_pack_limit(chunk_size);
        Ok(Self {
            suite,
            codec,
            level,
            chunk_size,
            created,
            image_id,
            data_key,
            slot_salts,
            signing_key: None,
            pack_limit,
        })
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
            version: if self.pack_limit > 0 { coffer_format::VERSION } else { 1 },
            copy: 0,
            generation: 1,
            image_id: self.image_id,
            suite: self.suite,
            codec: self.codec,
            level: self.level.clamp(i8::MIN.into(), i8::MAX.into()) as i8,
            chunk_size: self.chunk_size,
            created: self.created,
            slots,
            signature: None,
            mac: [0; 32],
            checksum: [0; 32],
        };
        let header = sign_header(header, self.signing_key.as_ref(), &self.data_key);
        seal_region(&header, keys)
    }
}

/// `header` with a signature block by `key` over its fixed fields and the commitment to
/// `data_key` (FORMAT.md §3.1); without a key, with none.
pub fn sign_header(mut header: Header, key: Option<&SigningKey>, data_key: &DataKey) -> Header {
    header.signature = key.map(|key| {
        let signer = key.public().0;
        let commitment = key_commitment(data_key, &header.image_id);
        let signature = key.sign(&header.signed_message(&signer, &commitment));
        ImageSignature { signer, commitment, signature }
    });
    header
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
    /// What a reader should say but is no damage (a key change interrupted between the copies,
    /// found when the key opens only the older copy).
    pub notes: Vec<String>,
    /// See [`ChosenHeader::stale_copy`].
    pub stale_copy: Option<usize>,
}

impl OpenedImage {
    pub fn chunk_size(&self) -> u32 {
        self.header.chunk_size
    }

    /// Who signed the image (the signature and the key commitment were checked on opening).
    pub fn signer(&self) -> Option<Signer> {
        self.header.signature.as_ref().map(|s| Signer(s.signer))
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

/// Checks the header region (both copies), checks the signature and the signers demanded
/// ([`Unlock::Signer`]), opens a key slot with one of `unlocks`, and verifies the header MAC.
///
/// The copy chosen without a key (see [`choose_header`]) is tried first; if none of its slots
/// opens, or its MAC fails, the other intact copy is tried, so a copy whose generation was
/// raised by someone without the key cannot hide an intact one. A wrong key is reported only
/// when no slot of any intact copy opens.
pub fn open_header(region: &[u8], unlocks: &[Unlock]) -> Result<OpenedImage, ImageError> {
    let ChosenHeader { header, copy, other, mut warnings, stale_copy } = choose_header(region)?;
    let mut candidates = vec![(copy, header)];
    candidates.extend(other.map(|o| (1 - copy, o)));
    let mut failure = None;
    for (i, (at_copy, header)) in candidates.iter().enumerate() {
        // After a wrong key (or passphrase slots passed over), the other copy's slots are tried
        // only where they differ (each try may cost Argon2id); after any other refusal, all.
        let tried: &[KeySlot] = if matches!(failure, Some(ImageError::WrongKey | ImageError::SlotsNotTried(_))) {
            &candidates[0].1.slots
        } else {
            &[]
        };
        match open_copy(region, *at_copy, header, unlocks, tried) {
            Ok((slot, data_key, keys)) => {
                let mut notes = Vec::new();
                if i > 0 {
                    let (first, first_header) = &candidates[0];
                    let first_bytes = &region[first * HEADER_SIZE..(first + 1) * HEADER_SIZE];
                    // Authentic (its MAC holds under this data key): a key change by a key holder,
                    // interrupted between the copies. Otherwise someone without a key altered it.
                    if first_header.image_id == header.image_id
                        && keys.verify_header_mac(Header::mac_region(first_bytes), &first_header.mac).is_ok()
                    {
                        notes.push(format!(
                            "header copy {first} (generation {}) does not open with the key given, copy {at_copy} (generation {}) does: a key change was interrupted; the next key command rewrites both copies",
                            first_header.generation, header.generation
                        ));
                    } else {
                        warnings.push(format!(
                            "header copy {first} does not open with the key given, copy {at_copy} does: copy {first} was altered"
                        ));
                    }
                } else if let Some((other_copy, other)) = candidates.get(1) {
                    check_other_copy(region, *other_copy, other, header, &keys, &mut warnings);
                }
                return Ok(OpenedImage {
                    header: header.clone(),
                    keys,
                    data_key,
                    slot,
                    warnings,
                    notes,
                    stale_copy: if i == 0 { stale_copy } else { None },
                });
            }
            // A refusal other than a wrong key (a forged or altered copy, a signer not
            // accepted) says more than "wrong key", whichever copy gave it.
            Err(e) => {
                failure = match failure {
                    None | Some(ImageError::WrongKey) => Some(e),
                    kept => kept,
                }
            }
        }
    }
    Err(failure.unwrap_or(ImageError::WrongKey))
}

/// Opens one intact header copy: signature and signer policy first (no key needed, no Argon2id
/// spent on an image that would be refused anyway), then the slots (those not in `tried`), then
/// the key commitment and the MAC.
fn open_copy(
    region: &[u8],
    copy: usize,
    header: &Header,
    unlocks: &[Unlock],
    tried: &[KeySlot],
) -> Result<(usize, DataKey, ImageKeys), ImageError> {
    let here = at((copy * HEADER_SIZE) as u64);
    check_signature(header, unlocks, &here)?;
    // Cheapest slots first, whatever their order (see `open_slots`); a wrong key if none opens
    // and none was passed over.
    let slots = header.slots.iter().enumerate().filter(|(_, s)| !tried.contains(s));
    let (slot, data_key) = open_slots(header.suite, unlocks, &header.image_id, slots)?;
    if let Some(sig) = &header.signature {
        if key_commitment(&data_key, &header.image_id) != sig.commitment {
            return Err(ImageError::corrupt(
                here,
                "the image's data key is not the one its signature covers: the image was forged or altered",
            ));
        }
    }
    let keys = ImageKeys::derive(header.suite, &data_key, &header.image_id);
    let bytes = &region[copy * HEADER_SIZE..(copy + 1) * HEADER_SIZE];
    keys.verify_header_mac(Header::mac_region(bytes), &header.mac)
        .map_err(|_| ImageError::corrupt(here, "header MAC does not verify: the header was altered"))?;
    Ok((slot, data_key, keys))
}

/// Checks a signature block, if any, and the signers `unlocks` demand.
fn check_signature(header: &Header, unlocks: &[Unlock], here: &Location) -> Result<(), ImageError> {
    if let Some(sig) = &header.signature {
        let message = header.signed_message(&sig.signer, &sig.commitment);
        Signer(sig.signer).verify(&message, &sig.signature).map_err(|_| {
            ImageError::corrupt(here.clone(), "the header's signature does not verify: the image was forged or altered")
        })?;
    }
    let wanted: Vec<Signer> =
        unlocks.iter().filter_map(|u| if let Unlock::Signer(s) = u { Some(*s) } else { None }).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    match &header.signature {
        None => Err(ImageError::Unsigned),
        Some(sig) if !wanted.contains(&Signer(sig.signer)) => {
            Err(ImageError::ForeignSigner(Signer(sig.signer).to_string()))
        }
        Some(_) => Ok(()),
    }
}

/// The other copy, if intact, must describe the same image and verify under the same key.
fn check_other_copy(
    region: &[u8],
    other_copy: usize,
    other: &Header,
    header: &Header,
    keys: &ImageKeys,
    warnings: &mut Vec<String>,
) {
    if other.image_id != header.image_id || other.suite != header.suite || other.chunk_size != header.chunk_size {
        warnings.push(format!("header copy {other_copy} describes a different image"));
        return;
    }
    let other_bytes = &region[other_copy * HEADER_SIZE..(other_copy + 1) * HEADER_SIZE];
    if keys.verify_header_mac(Header::mac_region(other_bytes), &other.mac).is_err() {
        warnings.push(format!("header copy {other_copy} does not verify: it was altered"));
    }
}
