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
/// Version 2 adds the backup's chain links, in the clear but authenticated.
const VERSION_LINKED: u8 = 2;
/// Magic, version, reserved, image id, nonce, length: authenticated as associated data.
const FIXED: usize = 44;
/// The longest links a version 2 record carries (a few ids: about 200 bytes).
pub const MAX_LINKS: usize = 4096;
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

/// A version 2 record: `json` sealed, and `links` (the backup's place in its chain, JSON) in
/// the clear, so that `prune` can keep chains whole without a key; the key authenticates them.
pub fn seal_linked_record(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    json: &[u8],
    links: &[u8],
) -> Result<Vec<u8>, ImageError> {
    let mut nonce = [0u8; NONCE_LEN];
    coffer_crypto::random(&mut nonce).map_err(|e| ImageError::Usage(e.to_string()))?;
    seal(keys, image_id, nonce, json, Some(links))
}

/// [`seal_record`] with a given nonce (known-answer tests).
pub fn seal_record_with(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    nonce: [u8; NONCE_LEN],
    json: &[u8],
) -> Result<Vec<u8>, ImageError> {
    seal(keys, image_id, nonce, json, None)
}

/// [`seal_linked_record`] with a given nonce (known-answer tests).
pub fn seal_linked_record_with(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    nonce: [u8; NONCE_LEN],
    json: &[u8],
    links: &[u8],
) -> Result<Vec<u8>, ImageError> {
    seal(keys, image_id, nonce, json, Some(links))
}

fn seal(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    nonce: [u8; NONCE_LEN],
    json: &[u8],
    links: Option<&[u8]>,
) -> Result<Vec<u8>, ImageError> {
    if json.len() > MAX_RECORD {
        return Err(ImageError::Usage(format!("a catalog record of {} bytes is too large", json.len())));
    }
    if links.is_some_and(|l| l.len() > MAX_LINKS) {
        return Err(ImageError::Usage("a catalog record's links are too long".into()));
    }
    let mut out = Vec::with_capacity(FIXED + 4 + links.map_or(0, <[u8]>::len) + json.len() + TAG_LEN);
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&[if links.is_some() { VERSION_LINKED } else { VERSION }, 0, 0, 0]);
    out.extend_from_slice(image_id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    if let Some(links) = links {
        out.extend_from_slice(&(links.len() as u32).to_le_bytes());
        out.extend_from_slice(links);
    }
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
    links: Option<&'a [u8]>,
    aad: &'a [u8],
    sealed: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ImageError> {
    if bytes.len() < FIXED + TAG_LEN || bytes[..8] != RECORD_MAGIC {
        return Err(bad("not a coffer catalog record"));
    }
    if !matches!(bytes[8], VERSION | VERSION_LINKED) || bytes[9..12] != [0, 0, 0] {
        return Err(bad(format!("unknown version {} (or reserved bytes set)", bytes[8])));
    }
    let len = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes")) as usize;
    let (links, aad_len) = if bytes[8] == VERSION_LINKED {
        let n = bytes.get(44..48).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        match n {
            Some(n) if n <= MAX_LINKS && bytes.len() >= 48 + n => (Some(&bytes[48..48 + n]), 48 + n),
            _ => return Err(bad("links run past the record, or are too long")),
        }
    } else {
        (None, FIXED)
    };
    if len > MAX_RECORD || bytes.len() != aad_len + len + TAG_LEN {
        return Err(bad(format!("{} bytes for a record of {len}", bytes.len())));
    }
    Ok(Parsed {
        image_id: bytes[12..28].try_into().expect("16 bytes"),
        nonce: bytes[28..40].try_into().expect("12 bytes"),
        links,
        aad: &bytes[..aad_len],
        sealed: &bytes[aad_len..],
    })
}

/// A version 2 record's links, read without a key (so unauthenticated: trust them only to
/// keep more, never to delete more than an attacker who can write the bucket could anyway).
pub fn record_links(bytes: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
    parse(bytes).map(|p| p.links.map(<[u8]>::to_vec))
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

    /// Version 2: the links in the clear, authenticated with the rest.
    #[test]
    fn linked_records_known_answer_and_every_flip_refused() {
        let links = br#"{"id":"1"}"#;
        let rec = seal_linked_record_with(&keys(Suite::Aes256Gcm), &[9; 16], [1; 12], b"{}", links).unwrap();
        assert_eq!(rec[8], 2);
        assert_eq!(&rec[44..48], &(links.len() as u32).to_le_bytes());
        // Computed independently with Python's `cryptography` (as above, AAD = bytes 0..58).
        assert_eq!(hex(&rec[48 + links.len()..]), "617bf559b921ea1a5a4377d90cb6751891ad");
        let chacha = seal_linked_record_with(&keys(Suite::ChaCha20Poly1305), &[9; 16], [1; 12], b"{}", links).unwrap();
        assert_eq!(hex(&chacha[48 + links.len()..]), "c0f607ef3e3bb1912f53c339c167da64a1e6");
        let k = keys(Suite::Aes256Gcm);
        let rec = seal_linked_record(&k, &[9; 16], b"{\"a\":1}", links).unwrap();
        assert_eq!(record_links(&rec).unwrap().as_deref(), Some(&links[..]));
        assert_eq!(open_record(&k, &[9; 16], &rec).unwrap(), b"{\"a\":1}");
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(open_record(&k, &[9; 16], &bad).is_err(), "flip at {i} accepted");
        }
        for cut in 0..rec.len() {
            assert!(open_record(&k, &[9; 16], &rec[..cut]).is_err(), "cut at {cut} accepted");
            let _ = record_links(&rec[..cut]);
        }
        // A version 1 record has no links.
        assert_eq!(record_links(&seal_record(&k, &[9; 16], b"{}").unwrap()).unwrap(), None);
        // Links longer than allowed are refused by the writer and the reader.
        assert!(seal_linked_record(&k, &[9; 16], b"{}", &[b'x'; MAX_LINKS + 1]).is_err());
        let mut long = rec.clone();
        long[44..48].copy_from_slice(&(MAX_LINKS as u32 + 1).to_le_bytes());
        assert!(record_links(&long).is_err());
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
