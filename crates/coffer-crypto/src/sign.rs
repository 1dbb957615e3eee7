//! Image signatures: an Ed25519 key on the backup host vouches for an image's data key.
//!
//! A recipient slot can be written by anyone who knows the recipient's public key, so an
//! image sealed only to recipients proves nothing about who wrote it. A signature over the
//! header's fixed fields and a commitment to the data key (FORMAT.md §3.1) gives it an origin:
//! only the holder of the signing key can make a header whose data key the signature covers.

use crate::{hkdf_sha256, CryptoError, DataKey};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

/// Bech32 human-readable part of a signing key's public half.
pub const SIGNER_HRP: &str = "coffersig";
/// Bech32 human-readable part of a signing key (upper-cased in files).
pub const SIGNING_KEY_HRP: &str = "coffer-signing-key-";

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 private key (`COFFER-SIGNING-KEY-1...`): 32 bytes of seed.
pub struct SigningKey {
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public())
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, CryptoError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random(seed.as_mut())?;
        Self::from_seed(seed)
    }

    /// From a fixed seed (known-answer tests use one).
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).map_err(|_| CryptoError::BadSigningKey)?;
        Ok(Self { seed, pair })
    }

    /// Parses a signing key file: the first line that is neither blank nor a `#` comment.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        let (hrp, data) = line.and_then(crate::bech32::decode).ok_or(CryptoError::BadSigningKey)?;
        let data = Zeroizing::new(data);
        if hrp != SIGNING_KEY_HRP {
            return Err(CryptoError::BadSigningKey);
        }
        let seed: [u8; 32] = data.as_slice().try_into().map_err(|_| CryptoError::BadSigningKey)?;
        Self::from_seed(Zeroizing::new(seed))
    }

    pub fn public(&self) -> Signer {
        Signer(self.pair.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes"))
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.pair.sign(message).as_ref().try_into().expect("an Ed25519 signature is 64 bytes")
    }

    /// The key file's contents: comments with the date and the public key, then the key.
    pub fn to_file_text(&self, created: &str) -> Zeroizing<String> {
        let key = Zeroizing::new(crate::bech32::encode(SIGNING_KEY_HRP, self.seed.as_ref()).to_ascii_uppercase());
        Zeroizing::new(format!("# created: {created}\n# signer: {}\n{}\n", self.public(), key.as_str()))
    }
}

/// An Ed25519 public key that signs images (`coffersig1...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signer(pub [u8; 32]);

impl Signer {
    /// Parses `coffersig1...`, or a file's text holding one (the first line that is neither
    /// blank nor a `#` comment, so a signing key file's `# signer:` comment does not count).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        let (hrp, data) = line.and_then(crate::bech32::decode).ok_or(CryptoError::BadSigner)?;
        if hrp != SIGNER_HRP {
            return Err(CryptoError::BadSigner);
        }
        Ok(Self(data.try_into().map_err(|_| CryptoError::BadSigner)?))
    }

    /// Checks an Ed25519 signature (RFC 8032) of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(message, signature).map_err(|_| CryptoError::Unauthentic)
    }
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::bech32::encode(SIGNER_HRP, &self.0))
    }
}

/// The public commitment to an image's data key that a signature covers:
/// `HKDF(ikm = DK, salt = image_id, info = "coffer v1 key commitment", 32)`. It reveals nothing
/// about the data key, and a different data key cannot be found that gives the same value.
pub fn key_commitment(data_key: &DataKey, image_id: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf_sha256(data_key.0.as_ref(), image_id, &[b"coffer v1 key commitment"], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let seed = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = SigningKey::from_seed(Zeroizing::new(seed)).unwrap();
        assert_eq!(crate::hex(&key.public().0), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig = key.sign(b"");
        assert_eq!(
            crate::hex(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        key.public().verify(b"", &sig).unwrap();
        assert!(key.public().verify(b"x", &sig).is_err());
    }

    #[test]
    fn text_round_trips_and_hides_the_seed() {
        let key = SigningKey::generate().unwrap();
        let text = key.to_file_text("today");
        let again = SigningKey::parse(&text).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(Signer::parse(&key.public().to_string()).unwrap(), key.public());
        // A signing key file is not a signer: its public key is only in a comment.
        assert!(Signer::parse(&text).is_err());
        assert!(!format!("{key:?}").contains(text.lines().last().unwrap()));
        assert!(SigningKey::parse(&key.public().to_string()).is_err());
    }

    #[test]
    fn commitment_known_answer() {
        // HKDF-SHA256(ikm = 32 x 0x03, salt = 16 x 0x04, info = "coffer v1 key commitment").
        let c = key_commitment(&DataKey::from_bytes([3; 32]), &[4; 16]);
        assert_eq!(crate::hex(&c), COMMITMENT_KAT);
    }
    // Computed independently with Python's hmac and hashlib (RFC 5869 extract, then expand).
    const COMMITMENT_KAT: &str = "5acb42c2285b3e74d2c0f41e80f23a6391f6510806037641c832d5b550aed89e";

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
