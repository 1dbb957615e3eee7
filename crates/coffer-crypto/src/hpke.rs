//! HPKE (RFC 9180), base mode, single-shot, for one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305 (KEM 0x0020, KDF 0x0001, AEAD 0x0003). Built from aws-lc-rs
//! primitives exactly as the RFC specifies, and checked against its test vectors (A.2.1).
//! Recipient key slots wrap the data key with it.

use crate::CryptoError;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

const KEM_ID: u16 = 0x0020;
const KDF_ID: u16 = 0x0001;
const AEAD_ID: u16 = 0x0003;
/// Bytes of `enc` (the ephemeral public key) and of a public key.
pub const ENC_LEN: usize = 32;

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn kem_suite() -> Vec<u8> {
    [b"KEM".as_slice(), &KEM_ID.to_be_bytes()].concat()
}

fn hpke_suite() -> Vec<u8> {
    [b"HPKE".as_slice(), &KEM_ID.to_be_bytes(), &KDF_ID.to_be_bytes(), &AEAD_ID.to_be_bytes()].concat()
}

/// LabeledExtract(salt, label, ikm) = HKDF-Extract(salt, "HPKE-v1" || suite || label || ikm):
/// HMAC-SHA256 keyed with the salt (an empty salt is 32 zero bytes, as HMAC pads it anyway).
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let input = Zeroizing::new([b"HPKE-v1".as_slice(), suite, label, ikm].concat());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), &input);
    Zeroizing::new(tag.as_ref().try_into().expect("32 bytes"))
}

/// LabeledExpand(prk, label, info, L) = HKDF-Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite || label || info, L).
fn labeled_expand(suite: &[u8], prk: &[u8], label: &[u8], info: &[u8], out: &mut [u8]) {
    let len = (out.len() as u16).to_be_bytes();
    let parts = [len.as_slice(), b"HPKE-v1", suite, label, info];
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk)
        .expand(&parts, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF output length is valid");
}

/// DHKEM's ExtractAndExpand.
fn shared_secret(dh: &[u8], enc: &[u8], pk_r: &[u8]) -> Zeroizing<[u8; 32]> {
    let suite = kem_suite();
    let prk = labeled_extract(&suite, b"", b"eae_prk", dh);
    let mut out = Zeroizing::new([0u8; 32]);
    labeled_expand(&suite, prk.as_ref(), b"shared_secret", &[enc, pk_r].concat(), out.as_mut());
    out
}

/// The base-mode key schedule: the AEAD key and the base nonce (the nonce of message 0).
fn key_schedule(shared: &[u8], info: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let suite = hpke_suite();
    let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&suite, b"", b"info_hash", info);
    let context = [&[0u8][..], psk_id_hash.as_slice(), info_hash.as_slice()].concat();
    let secret = labeled_extract(&suite, shared, b"secret", b"");
    let mut key = Zeroizing::new([0u8; 32]);
    labeled_expand(&suite, secret.as_ref(), b"key", &context, key.as_mut());
    let mut nonce = [0u8; 12];
    labeled_expand(&suite, secret.as_ref(), b"base_nonce", &context, &mut nonce);
    (key, nonce)
}

fn dh(private: &PrivateKey, public: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    agreement::agree(private, UnparsedPublicKey::new(&X25519, public), CryptoError::Unauthentic, |s| {
        Ok(Zeroizing::new(s.try_into().map_err(|_| CryptoError::Unauthentic)?))
    })
}

fn public_of(private: &PrivateKey) -> [u8; 32] {
    private.compute_public_key().expect("X25519 public key").as_ref().try_into().expect("32 bytes")
}

/// Seals `plaintext` to `pk_r` with the ephemeral private key `sk_e` (random in real use);
/// returns `enc` and the ciphertext with its tag.
pub fn seal(
    pk_r: &[u8; 32],
    sk_e: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 32], Vec<u8>), CryptoError> {
    let sk_e = PrivateKey::from_private_key(&X25519, sk_e).map_err(|_| CryptoError::Random)?;
    let enc = public_of(&sk_e);
    let shared = shared_secret(dh(&sk_e, pk_r)?.as_ref(), &enc, pk_r);
    let (key, nonce) = key_schedule(shared.as_ref(), info);
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key.as_ref()).expect("32-byte key"));
    let mut out = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out)
        .map_err(|_| CryptoError::Unauthentic)?;
    Ok((enc, out))
}

/// Opens what [`seal`] made, with the recipient's private key.
pub fn open(
    sk_r: &[u8; 32],
    enc: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sk_r = PrivateKey::from_private_key(&X25519, sk_r).map_err(|_| CryptoError::Unauthentic)?;
    let pk_r = public_of(&sk_r);
    let shared = shared_secret(dh(&sk_r, enc)?.as_ref(), enc, &pk_r);
    let (key, nonce) = key_schedule(shared.as_ref(), info);
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key.as_ref()).expect("32-byte key"));
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let n = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| CryptoError::Unauthentic)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// The X25519 public key of a private key.
pub fn public_key(sk: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
    Ok(public_of(&PrivateKey::from_private_key(&X25519, sk).map_err(|_| CryptoError::BadKeyText)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
        v.try_into().unwrap()
    }
    fn hv(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 9180, appendix A.2.1 (base mode) and A.2.1.1 (sequence number 0).
    #[test]
    fn rfc_9180_a_2_1() {
        let sk_e: [u8; 32] = h("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600");
        let sk_r: [u8; 32] = h("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let pk_r: [u8; 32] = h("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
        let info = hv("4f6465206f6e2061204772656369616e2055726e");
        let aad = hv("436f756e742d30");
        let pt = hv("4265617574792069732074727574682c20747275746820626561757479");
        assert_eq!(public_key(&sk_r).unwrap(), pk_r);
        let enc: [u8; 32] = h("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        let shared = shared_secret(
            dh(&PrivateKey::from_private_key(&X25519, &sk_e).unwrap(), &pk_r).unwrap().as_ref(),
            &enc,
            &pk_r,
        );
        assert_eq!(*shared, h::<32>("0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7"));
        let (key, nonce) = key_schedule(shared.as_ref(), &info);
        assert_eq!(*key, h::<32>("ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91"));
        assert_eq!(nonce, h::<12>("5c4d98150661b848853b547f"));
        let (got_enc, ct) = seal(&pk_r, &sk_e, &info, &aad, &pt).unwrap();
        assert_eq!(got_enc, enc);
        assert_eq!(
            ct,
            hv("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28")
        );
        assert_eq!(open(&sk_r, &enc, &info, &aad, &ct).unwrap().as_slice(), pt.as_slice());
        assert!(open(&sk_r, &enc, &info, b"other", &ct).is_err());
        assert!(open(&sk_e, &enc, &info, &aad, &ct).is_err());
    }
}
