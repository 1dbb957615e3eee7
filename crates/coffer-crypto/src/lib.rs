//! Keys and authenticated encryption for coffer images.
//!
//! Two tiers: each image has a random 256-bit data key; key slots in the header hold it wrapped
//! under master keys. From the data key, HKDF-SHA256 derives the payload key (frames) and the
//! header MAC key. All primitives come from aws-lc-rs; nothing here is home-made.
//!
//! Key material lives in types that zeroize on drop and never implement `Display` or print
//! their bytes in `Debug`.
#![forbid(unsafe_code)]

pub mod bech32;
pub mod hpke;
pub mod sign;
pub mod slot;

pub use sign::{key_commitment, Signer, SigningKey};
pub use slot::{
    open_slot, open_slots, seal_slot, Identity, KdfChoice, KdfLimits, KdfParams, KeyringRef, Passphrase, Recipient,
    SlotNote, SlotNotify, SlotSecret, Unlock, Unopened,
};

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf, hmac, rand};
use coffer_format::{Suite, KEY_LEN, TAG_LEN};

/// Bytes of an AEAD nonce (both suites).
pub const NONCE_LEN: usize = 12;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("a key must be {KEY_LEN} bytes written as {} hexadecimal digits", KEY_LEN * 2)]
    BadKeyText,
    #[error("authentication failed")]
    Unauthentic,
    #[error("the system random number generator failed")]
    Random,
    #[error("Argon2id parameters out of bounds (memory {} KiB, {} passes, {} lanes): at least 64 MiB and 1 pass, at most 4 GiB, 100 passes and 16 lanes", .0.memory_kib, .0.iterations, .0.lanes)]
    WeakKdf(KdfParams),
    #[error("cannot allocate {} MiB for Argon2id", .0.memory_kib.div_ceil(1024))]
    KdfMemory(KdfParams),
    #[error("an empty passphrase is not allowed")]
    EmptyPassphrase,
    #[error("not a recipient: expected coffer1... or age1... (an X25519 public key)")]
    BadRecipient,
    #[error("not an identity: expected COFFER-SECRET-KEY-1... or AGE-SECRET-KEY-1...")]
    BadIdentity,
    #[error("a key name must be 1 to 63 bytes")]
    BadKeyName,
    #[error("not a signing key: expected COFFER-SIGNING-KEY-1...")]
    BadSigningKey,
    #[error("not a signer: expected coffersig1... (an Ed25519 public key)")]
    BadSigner,
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    rand::fill(buf).map_err(|_| CryptoError::Random)
}

/// SHA-256, used for the header's unkeyed checksum.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, bytes).as_ref().try_into().expect("32 bytes")
}

/// SHA-1, for the MySQL protocol's `mysql_native_password` scramble only (the server decides
/// that method; nothing of coffer's own uses SHA-1).
pub fn sha1_for_mysql_auth(bytes: &[&[u8]]) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    for b in bytes {
        ctx.update(b);
    }
    ctx.finish().as_ref().try_into().expect("20 bytes")
}

/// True where the CPU has the AES and carry-less multiply instructions that make AES-GCM fast
/// and constant-time. Elsewhere ChaCha20-Poly1305 is both faster and safer.
pub fn has_aes_hardware() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

/// The suite to use when the user names none: AES-256-GCM, unless the CPU lacks AES hardware.
pub fn default_suite() -> Suite {
    if has_aes_hardware() {
        Suite::Aes256Gcm
    } else {
        Suite::ChaCha20Poly1305
    }
}

fn algorithm(suite: Suite) -> &'static aead::Algorithm {
    match suite {
        Suite::Aes256Gcm => &aead::AES_256_GCM,
        Suite::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869) with a single info string.
pub(crate) fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[&[u8]], out: &mut [u8]) {
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF output length is valid");
}

/// A 256-bit master key, as held in a key file (64 hex digits, MySQL Enterprise Backup's format).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {})", hex(&self.key_id()))
    }
}

/// A fresh 256-bit key from the operating system's CSPRNG.
fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    random(k.as_mut())?;
    Ok(k)
}

impl MasterKey {
    pub fn generate() -> Result<Self, CryptoError> {
        random_key().map(Self)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses 64 hex digits, ignoring surrounding whitespace.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 {
            return Err(CryptoError::BadKeyText);
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(CryptoError::BadKeyText);
            k[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Self(k))
    }

    /// The key as 64 lowercase hex digits and a newline: the key file's contents.
    pub fn to_hex_line(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(hex(self.0.as_ref()));
        s.push('\n');
        s
    }

    /// A public 8-byte identifier of this key (HKDF output, reveals nothing about the key).
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        hkdf_sha256(self.0.as_ref(), b"", &[b"coffer v1 key id"], &mut id);
        id
    }

    /// The raw key bytes, for derivations inside this crate.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The random per-image key that every frame is (indirectly) encrypted under.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        random_key().map(Self)
    }

    /// For known-answer tests only: a fixed data key.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(bytes.get(..KEY_LEN).filter(|_| bytes.len() == KEY_LEN)?);
        Some(Self(k))
    }
}

/// Keys derived from an image's data key: one for frames, one for the header MAC, one for the
/// catalog record kept beside an image in object storage.
pub struct ImageKeys {
    payload: LessSafeKey,
    header_mac: hmac::Key,
    catalog: LessSafeKey,
}

impl std::fmt::Debug for ImageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageKeys(..)")
    }
}

impl ImageKeys {
    pub fn derive(suite: Suite, data_key: &DataKey, image_id: &[u8; 16]) -> Self {
        let mut payload = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_sha256(data_key.0.as_ref(), image_id, &[b"coffer v1 payload key"], payload.as_mut());
        let mut mac = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_sha256(data_key.0.as_ref(), image_id, &[b"coffer v1 header mac key"], mac.as_mut());
        let mut catalog = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_sha256(data_key.0.as_ref(), image_id, &[b"coffer v1 catalog key"], catalog.as_mut());
        let aead = |k: &[u8]| LessSafeKey::new(UnboundKey::new(algorithm(suite), k).expect("32-byte key"));
        Self {
            payload: aead(payload.as_ref()),
            header_mac: hmac::Key::new(hmac::HMAC_SHA256, mac.as_ref()),
            catalog: aead(catalog.as_ref()),
        }
    }

    /// Encrypts a catalog record in place under its own key and a random `nonce` (a record is
    /// sealed once per image: no counter to keep); returns the tag.
    pub fn seal_catalog(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .catalog
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .expect("records are far below AEAD limits");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    /// Decrypts a catalog record (ciphertext followed by tag) in place.
    pub fn open_catalog<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        self.catalog
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Unauthentic)
    }

    /// Encrypts `buf` in place as frame `seq`; returns the tag.
    pub fn seal(&self, seq: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::assume_unique_for_key(coffer_format::frame::nonce(seq));
        let tag = self
            .payload
            .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
            .expect("frame sizes are far below AEAD limits");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    /// Decrypts `buf` (ciphertext followed by tag) in place; returns the plaintext part.
    pub fn open<'a>(&self, seq: u64, aad: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        let nonce = Nonce::assume_unique_for_key(coffer_format::frame::nonce(seq));
        self.payload.open_in_place(nonce, Aad::from(aad), buf).map_err(|_| CryptoError::Unauthentic)
    }

    pub fn header_mac(&self, region: &[u8]) -> [u8; 32] {
        hmac::sign(&self.header_mac, region).as_ref().try_into().expect("32-byte HMAC")
    }

    /// Constant-time check of a header MAC.
    pub fn verify_header_mac(&self, region: &[u8], mac: &[u8; 32]) -> Result<(), CryptoError> {
        hmac::verify(&self.header_mac, region, mac).map_err(|_| CryptoError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_text_round_trip() {
        let k = MasterKey::from_hex(&format!("  {KEY_HEX}\n")).unwrap();
        assert_eq!(k.to_hex_line().as_str(), format!("{KEY_HEX}\n"));
        assert_eq!(MasterKey::from_hex(&KEY_HEX.to_uppercase()).unwrap().key_id(), k.key_id());
        assert!(MasterKey::from_hex(&KEY_HEX[1..]).is_err());
        assert!(MasterKey::from_hex(&KEY_HEX.replace('a', "g")).is_err());
        assert!(!format!("{k:?}").contains("0102"));
    }

    #[test]
    fn key_id_known_answer() {
        // HKDF-SHA256(ikm = key, salt = "", info = "coffer v1 key id"), first 8 bytes.
        let k = MasterKey::from_hex(KEY_HEX).unwrap();
        assert_eq!(hex(&k.key_id()), KEY_ID_KAT);
    }
    // Computed independently with Python: hmac over the RFC 5869 extract and expand steps.
    const KEY_ID_KAT: &str = "d936748349ce6e46";

    #[test]
    fn frames_bind_sequence_and_aad() {
        let keys = ImageKeys::derive(Suite::Aes256Gcm, &DataKey::from_bytes([3; 32]), &[4; 16]);
        let mut buf = b"hello world".to_vec();
        let tag = keys.seal(5, b"aad", &mut buf);
        buf.extend_from_slice(&tag);
        let sealed = buf.clone();
        assert_eq!(keys.open(5, b"aad", &mut buf).unwrap(), b"hello world");
        assert!(keys.open(6, b"aad", &mut sealed.clone()).is_err());
        assert!(keys.open(5, b"aaD", &mut sealed.clone()).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(keys.open(5, b"aad", &mut flipped).is_err());
    }

    #[test]
    fn header_mac_verifies() {
        let keys = ImageKeys::derive(Suite::ChaCha20Poly1305, &DataKey::from_bytes([3; 32]), &[4; 16]);
        let mac = keys.header_mac(b"header");
        keys.verify_header_mac(b"header", &mac).unwrap();
        assert!(keys.verify_header_mac(b"headex", &mac).is_err());
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
