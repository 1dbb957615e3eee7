//! The catalog record: a small object kept beside an image in object storage, so that a
//! catalog of many backups reads a few hundred bytes per backup instead of each image's index
//! (docs/FORMAT.md §9, "Catalog record").
//!
//! The record holds no key slots: it is sealed under a key derived from the image's data key,
//! so it opens only through the image's own header, and a key-slot change on the image (which
//! rewrites that header alone) covers the record too.

use crate::error::{ImageError, Location};
use coffer_crypto::{ImageKeys, NONCE_LEN};
use coffer_format::TAG_LEN;

pub const RECORD_MAGIC: [u8; 8] = *b"COFFERCR";
const VERSION: u8 = 1;
/// Magic, version, reserved, image id, nonce, length: authenticated as associated data.
const FIXED: usize = 44;
/// Records carry a few hundred bytes of JSON; anything near this is not one.
pub const MAX_RECORD: usize = 1 << 20;
/// The longest a whole record (fixed fields, plaintext, tag) may be.
pub const MAX_RECORD_BYTES: u64 = (FIXED + MAX_RECORD + TAG_LEN) as u64;

/// The catalog record's name beside an image: `NAME.coffer` gets `NAME.coffer.meta`.
pub const RECORD_SUFFIX: &str = ".meta";

fn bad(detail: impl Into<String>) -> ImageError {
    ImageError::Corrupt { at: Location::default(), detail: format!("catalog record: {}", detail.into()) }
}

/// Seals `json` for the image `image_id` under a fresh random nonce.
pub fn seal_record(keys: &ImageKeys, image_id: &[u8; 16], json: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut nonce = [0u8; NONCE_LEN];
    coffer_crypto::random(&mut nonce).map_err(|e| ImageError::Usage(e.to_string()))?;
    seal_record_with(keys, image_id, nonce, json)
}

/// [`seal_record`] with a given nonce (known-answer tests).
pub fn seal_record_with(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    nonce: [u8; NONCE_LEN],
    json: &[u8],
) -> Result<Vec<u8>, ImageError> {
    if json.len() > MAX_RECORD {
        return Err(ImageError::Usage(format!("a catalog record of {} bytes is too large", json.len())));
    }
    let mut out = Vec::with_capacity(FIXED + json.len() + TAG_LEN);
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(image_id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    let mut body = json.to_vec();
    let tag = keys.seal_catalog(nonce, &out, &mut body);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The parts of a record that can be checked without a key.
struct Parsed<'a> {
    image_id: [u8; 16],
    nonce: [u8; NONCE_LEN],
    aad: &'a [u8],
    sealed: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ImageError> {
    if bytes.len() < FIXED + TAG_LEN || bytes[..8] != RECORD_MAGIC {
        return Err(bad("not a coffer catalog record"));
    }
    if bytes[8] != VERSION || bytes[9..12] != [0, 0, 0] {
        return Err(bad(format!("unknown version {} (or reserved bytes set)", bytes[8])));
    }
    let len = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes")) as usize;
    if len > MAX_RECORD || bytes.len() != FIXED + len + TAG_LEN {
        return Err(bad(format!("{} bytes for a record of {len}", bytes.len())));
    }
    Ok(Parsed {
        image_id: bytes[12..28].try_into().expect("16 bytes"),
        nonce: bytes[28..40].try_into().expect("12 bytes"),
        aad: &bytes[..FIXED],
        sealed: &bytes[FIXED..],
    })
}

/// The id of the image a record belongs to (read without a key, to match it to its image).
pub fn record_image_id(bytes: &[u8]) -> Result<[u8; 16], ImageError> {
    parse(bytes).map(|p| p.image_id)
}

/// The record's JSON, if `keys` (the image `image_id`'s) sealed it.
pub fn open_record(keys: &ImageKeys, image_id: &[u8; 16], bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let p = parse(bytes)?;
    if &p.image_id != image_id {
        return Err(bad("it belongs to another image"));
    }
    let mut buf = p.sealed.to_vec();
    let plain = keys.open_catalog(p.nonce, p.aad, &mut buf).map_err(|_| bad("authentication failed"))?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::{hex, DataKey};
    use coffer_format::Suite;

    fn keys(suite: Suite) -> ImageKeys {
        ImageKeys::derive(suite, &DataKey::from_bytes([7; 32]), &[9; 16])
    }

    #[test]
    fn known_answer() {
        let rec = seal_record_with(&keys(Suite::Aes256Gcm), &[9; 16], [1; 12], b"{}").unwrap();
        assert_eq!(rec.len(), 44 + 2 + 16);
        assert_eq!(
            hex(&rec[..44]),
            format!("{}01000000{}{}02000000", hex(b"COFFERCR"), "09".repeat(16), "01".repeat(12))
        );
        // Computed independently with Python's `cryptography` (HKDF-SHA256 of data key 07..
        // with salt = image id 09.., info "coffer v1 catalog key"; nonce 01..; AAD = bytes 0..44).
        assert_eq!(hex(&rec[44..]), KAT_AES_TAIL);
        let chacha = seal_record_with(&keys(Suite::ChaCha20Poly1305), &[9; 16], [1; 12], b"{}").unwrap();
        assert_eq!(hex(&chacha[44..]), KAT_CHACHA_TAIL);
    }

    const KAT_AES_TAIL: &str = "617b450d2c9c073d054da706b41976349d79";
    const KAT_CHACHA_TAIL: &str = "c0f6a9d0d16b7fa532dd8dcbf3aa9693c1bc";

    #[test]
    fn round_trip_and_every_flip_refused() {
        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let k = keys(suite);
            let json = br#"{"files":3,"backup":{"to_lsn":42}}"#;
            let rec = seal_record(&k, &[9; 16], json).unwrap();
            assert_eq!(record_image_id(&rec).unwrap(), [9; 16]);
            assert_eq!(open_record(&k, &[9; 16], &rec).unwrap(), json);
            for i in 0..rec.len() {
                let mut bad = rec.clone();
                bad[i] ^= 0x40;
                assert!(open_record(&k, &[9; 16], &bad).is_err(), "flip at {i} accepted");
            }
            for cut in 0..rec.len() {
                assert!(open_record(&k, &[9; 16], &rec[..cut]).is_err(), "cut at {cut} accepted");
            }
            // Another image's keys, or the record given to another image.
            let other = ImageKeys::derive(suite, &DataKey::from_bytes([8; 32]), &[9; 16]);
            assert!(open_record(&other, &[9; 16], &rec).is_err());
            assert!(open_record(&k, &[10; 16], &rec).is_err());
        }
    }

    #[test]
    fn nonsense_refused_without_a_key() {
        assert!(record_image_id(b"").is_err());
        assert!(record_image_id(&[0u8; 200]).is_err());
        let mut rec = seal_record(&keys(Suite::Aes256Gcm), &[9; 16], b"{}").unwrap();
        rec.push(0);
        assert!(record_image_id(&rec).is_err(), "trailing bytes");
        rec.pop();
        rec[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(record_image_id(&rec).is_err(), "huge length");
    }
}
