//! Key slots: the image's data key wrapped under one master secret each.
//!
//! Four kinds, all binding every other byte of the slot and the image id as associated data:
//! - **key**: a 256-bit master key (key file, key command); KEK = HKDF(key, salt, image id).
//! - **passphrase**: Argon2id over the passphrase and the slot's salt, with the cost parameters
//!   stored in the slot; KEK = HKDF(Argon2id output, salt, image id).
//! - **recipient**: HPKE (RFC 9180, base mode, X25519) to a public key; only the holder of the
//!   private key (the identity) can open it. The public key is stored in the slot.
//! - **keyring**: like a key slot, for a named, versioned key of a keyring; the slot records
//!   name and version so the image can be moved to a newer version without its data.

use crate::{algorithm, hkdf_sha256, hpke, random, CryptoError, DataKey, MasterKey};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use coffer_format::header::slot_kind;
use coffer_format::{KeySlot, Suite, KEY_LEN};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Argon2id costs. Memory in KiB, as Argon2 counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl KdfParams {
    /// Nothing weaker is written or accepted: 64 MiB, one pass (above OWASP's 46 MiB / t=1).
    pub const MIN_MEMORY_KIB: u32 = 64 * 1024;
    pub const MIN_ITERATIONS: u32 = 1;
    /// Nothing costlier is attempted when opening, so a crafted slot cannot exhaust the host.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    pub const MAX_ITERATIONS: u32 = 100;
    pub const MAX_LANES: u32 = 16;
    /// LUKS2's default memory cost.
    pub const DEFAULT_MEMORY_KIB: u32 = 1024 * 1024;

    /// Checks the floor and the ceiling.
    pub fn check(&self) -> Result<(), CryptoError> {
        let ok = (Self::MIN_MEMORY_KIB..=Self::MAX_MEMORY_KIB).contains(&self.memory_kib)
            && (Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&self.iterations)
            && (1..=Self::MAX_LANES).contains(&self.lanes);
        if ok {
            Ok(())
        } else {
            Err(CryptoError::WeakKdf(*self))
        }
    }

    fn encode(&self, params: &mut [u8; 152]) {
        params[0..4].copy_from_slice(&self.memory_kib.to_be_bytes());
        params[4..8].copy_from_slice(&self.iterations.to_be_bytes());
        params[8..12].copy_from_slice(&self.lanes.to_be_bytes());
    }

    /// The parameters stored in a passphrase slot.
    pub fn of_slot(slot: &KeySlot) -> Self {
        let be = |i: usize| u32::from_be_bytes(slot.params[i..i + 4].try_into().expect("4 bytes"));
        Self { memory_kib: be(0), iterations: be(4), lanes: be(8) }
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt`, 32 bytes out.
    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        self.check()?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.lanes, Some(KEY_LEN))
            .map_err(|_| CryptoError::WeakKdf(*self))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon.hash_password_into(passphrase, salt, out.as_mut()).map_err(|_| CryptoError::WeakKdf(*self))?;
        Ok(out)
    }
}

/// How to choose Argon2id costs for a new passphrase slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfChoice {
    pub memory_kib: u32,
    /// Fixed pass count; `None` tunes it to `target`.
    pub iterations: Option<u32>,
    pub target: Duration,
}

impl KdfChoice {
    /// LUKS2-like defaults: 1 GiB (or half the available memory, whichever is less), about 1.5 s.
    pub fn default_for(available_kib: Option<u64>) -> Self {
        let half = available_kib.map_or(u64::MAX, |a| a / 2);
        let memory = u64::from(KdfParams::DEFAULT_MEMORY_KIB).min(half).max(u64::from(KdfParams::MIN_MEMORY_KIB));
        Self { memory_kib: memory as u32, iterations: None, target: Duration::from_millis(1500) }
    }
}

/// A passphrase, as bytes (UTF-8 as typed; no normalization).
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        if bytes.is_empty() {
            return Err(CryptoError::EmptyPassphrase);
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

const RECIPIENT_HRP: &str = "coffer";
const IDENTITY_HRP: &str = "coffer-secret-key-";
const AGE_RECIPIENT_HRP: &str = "age";
const AGE_IDENTITY_HRP: &str = "age-secret-key-";

/// An X25519 public key: who may open a recipient slot. Written `coffer1...`; age's `age1...`
/// strings name the same kind of key and are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient(pub [u8; 32]);

impl Recipient {
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let (hrp, data) = crate::bech32::decode(text.trim()).ok_or(CryptoError::BadRecipient)?;
        if hrp != RECIPIENT_HRP && hrp != AGE_RECIPIENT_HRP {
            return Err(CryptoError::BadRecipient);
        }
        Ok(Self(data.try_into().map_err(|_| CryptoError::BadRecipient)?))
    }

    /// The public 8-byte id stored in the slot's key id field.
    pub fn key_id(&self) -> [u8; 8] {
        crate::sha256(&self.0)[..8].try_into().expect("8 bytes")
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::bech32::encode(RECIPIENT_HRP, &self.0))
    }
}

/// An X25519 private key (`COFFER-SECRET-KEY-1...`, or age's `AGE-SECRET-KEY-1...`).
pub struct Identity(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.recipient())
    }
}

impl Identity {
    pub fn generate() -> Result<Self, CryptoError> {
        let mut sk = Zeroizing::new([0u8; 32]);
        random(sk.as_mut())?;
        Ok(Self(sk))
    }

    /// Parses an identity file: the first line that is neither blank nor a `#` comment.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        let (hrp, data) = line.and_then(crate::bech32::decode).ok_or(CryptoError::BadIdentity)?;
        let data = Zeroizing::new(data);
        if hrp != IDENTITY_HRP && hrp != AGE_IDENTITY_HRP {
            return Err(CryptoError::BadIdentity);
        }
        let sk: [u8; 32] = data.as_slice().try_into().map_err(|_| CryptoError::BadIdentity)?;
        Ok(Self(Zeroizing::new(sk)))
    }

    pub fn recipient(&self) -> Recipient {
        Recipient(hpke::public_key(&self.0).expect("any 32 bytes are an X25519 private key"))
    }

    /// The identity file's contents: comments with the date and the recipient, then the key.
    pub fn to_file_text(&self, created: &str) -> Zeroizing<String> {
        let key = Zeroizing::new(crate::bech32::encode(IDENTITY_HRP, self.0.as_ref()).to_ascii_uppercase());
        Zeroizing::new(format!("# created: {created}\n# recipient: {}\n{}\n", self.recipient(), key.as_str()))
    }
}

/// A secret a new slot is sealed for.
#[derive(Debug)]
pub enum SlotSecret {
    Key(MasterKey),
    Passphrase(Passphrase, KdfChoice),
    Recipient(Recipient),
    Keyring { key: MasterKey, name: String, version: u32 },
}

/// A secret offered to open slots.
#[derive(Debug)]
pub enum Unlock {
    /// Opens key slots and keyring slots.
    Key(MasterKey),
    Passphrase(Passphrase),
    Identity(Identity),
}

/// The keyring key a keyring slot was sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRef {
    pub name: String,
    pub version: u32,
}

impl KeyringRef {
    /// Longest key name a slot records.
    pub const MAX_NAME: usize = 63;

    pub fn of_slot(slot: &KeySlot) -> Option<Self> {
        if slot.kind != slot_kind::KEYRING {
            return None;
        }
        let version = u32::from_be_bytes(slot.params[0..4].try_into().expect("4 bytes"));
        let len = slot.params[4] as usize;
        let name = std::str::from_utf8(slot.params.get(5..5 + len)?).ok()?;
        (len <= Self::MAX_NAME).then(|| Self { name: name.to_owned(), version })
    }

    fn encode(&self, params: &mut [u8; 152]) -> Result<(), CryptoError> {
        let name = self.name.as_bytes();
        if name.is_empty() || name.len() > Self::MAX_NAME {
            return Err(CryptoError::BadKeyName);
        }
        params[0..4].copy_from_slice(&self.version.to_be_bytes());
        params[4] = name.len() as u8;
        params[5..5 + name.len()].copy_from_slice(name);
        Ok(())
    }
}

fn slot_kek(ikm: &[u8], salt: &[u8; 32], image_id: &[u8; 16], suite: Suite) -> LessSafeKey {
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256(ikm, salt, &[b"coffer v1 slot key", image_id], kek.as_mut());
    LessSafeKey::new(UnboundKey::new(algorithm(suite), kek.as_ref()).expect("32-byte key"))
}

fn slot_aad(image_id: &[u8; 16], slot: &KeySlot) -> Vec<u8> {
    let mut aad = b"coffer v1 slot".to_vec();
    aad.extend_from_slice(image_id);
    aad.extend_from_slice(&slot.bound_fields());
    aad
}

fn recipient_info(image_id: &[u8; 16]) -> Vec<u8> {
    [b"coffer v1 recipient slot".as_slice(), image_id].concat()
}

/// Wraps under a symmetric KEK (the KEK is unique to this slot's salt, so the zero nonce is
/// used once).
fn wrap(kek: &LessSafeKey, aad: Vec<u8>, data_key: &DataKey) -> [u8; 48] {
    let mut wrapped = [0u8; 48];
    wrapped[..KEY_LEN].copy_from_slice(data_key.0.as_ref());
    let tag = kek
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), &mut wrapped[..KEY_LEN])
        .expect("sealing 32 bytes cannot fail");
    wrapped[KEY_LEN..].copy_from_slice(tag.as_ref());
    wrapped
}

fn unwrap(kek: &LessSafeKey, aad: Vec<u8>, wrapped: &[u8; 48]) -> Option<DataKey> {
    let mut buf = Zeroizing::new(*wrapped);
    let plain = kek.open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), buf.as_mut()).ok()?;
    DataKey::from_slice(plain)
}

/// Builds a slot that wraps `data_key` for `secret`. `salt` is random in real use. For a
/// passphrase this runs Argon2id (tuned to the choice's target time).
pub fn seal_slot(
    suite: Suite,
    secret: &SlotSecret,
    data_key: &DataKey,
    image_id: &[u8; 16],
    salt: [u8; 32],
    created: i64,
) -> Result<KeySlot, CryptoError> {
    let mut slot = KeySlot { created, salt, ..KeySlot::default() };
    match secret {
        SlotSecret::Key(master) => {
            slot.kind = slot_kind::KEY;
            slot.key_id = master.key_id();
            slot.wrapped = wrap(&slot_kek(master.bytes(), &salt, image_id, suite), slot_aad(image_id, &slot), data_key);
        }
        SlotSecret::Keyring { key, name, version } => {
            slot.kind = slot_kind::KEYRING;
            slot.key_id = key.key_id();
            KeyringRef { name: name.clone(), version: *version }.encode(&mut slot.params)?;
            slot.wrapped = wrap(&slot_kek(key.bytes(), &salt, image_id, suite), slot_aad(image_id, &slot), data_key);
        }
        SlotSecret::Passphrase(pass, choice) => {
            slot.kind = slot_kind::PASSPHRASE;
            let (params, derived) = tune(pass, &salt, choice)?;
            params.encode(&mut slot.params);
            slot.wrapped =
                wrap(&slot_kek(derived.as_ref(), &salt, image_id, suite), slot_aad(image_id, &slot), data_key);
        }
        SlotSecret::Recipient(recipient) => {
            slot.kind = slot_kind::RECIPIENT;
            slot.key_id = recipient.key_id();
            let mut sk_e = Zeroizing::new([0u8; 32]);
            random(sk_e.as_mut())?;
            slot.params[..32].copy_from_slice(&hpke::public_key(&sk_e)?);
            slot.params[32..64].copy_from_slice(&recipient.0);
            let (_, ct) = hpke::seal(
                &recipient.0,
                &sk_e,
                &recipient_info(image_id),
                &slot_aad(image_id, &slot),
                data_key.0.as_ref(),
            )?;
            slot.wrapped = ct.try_into().map_err(|_| CryptoError::Unauthentic)?;
        }
    }
    Ok(slot)
}

/// Runs Argon2id with the choice's memory; with no fixed pass count, one pass is measured and
/// the count scaled to the target time (the measured pass is kept when it alone is long enough).
fn tune(
    pass: &Passphrase,
    salt: &[u8; 32],
    choice: &KdfChoice,
) -> Result<(KdfParams, Zeroizing<[u8; KEY_LEN]>), CryptoError> {
    let mut params = KdfParams { memory_kib: choice.memory_kib, iterations: choice.iterations.unwrap_or(1), lanes: 1 };
    let started = Instant::now();
    let derived = params.derive(pass.as_bytes(), salt)?;
    if choice.iterations.is_some() {
        return Ok((params, derived));
    }
    let one = started.elapsed().max(Duration::from_millis(1));
    let passes = (choice.target.as_secs_f64() / one.as_secs_f64())
        .round()
        .clamp(1.0, f64::from(KdfParams::MAX_ITERATIONS)) as u32;
    if passes <= 1 {
        return Ok((params, derived));
    }
    params.iterations = passes;
    Ok((params, params.derive(pass.as_bytes(), salt)?))
}

/// Tries to unwrap the data key from `slot` with `unlock`; `None` if it is not this slot's
/// secret (or the slot is of a kind this secret cannot open, or asks for costs out of bounds).
pub fn open_slot(suite: Suite, unlock: &Unlock, image_id: &[u8; 16], slot: &KeySlot) -> Option<DataKey> {
    let aad = || slot_aad(image_id, slot);
    match (unlock, slot.kind) {
        (Unlock::Key(master), slot_kind::KEY | slot_kind::KEYRING) => {
            unwrap(&slot_kek(master.bytes(), &slot.salt, image_id, suite), aad(), &slot.wrapped)
        }
        (Unlock::Passphrase(pass), slot_kind::PASSPHRASE) => {
            let derived = KdfParams::of_slot(slot).derive(pass.as_bytes(), &slot.salt).ok()?;
            unwrap(&slot_kek(derived.as_ref(), &slot.salt, image_id, suite), aad(), &slot.wrapped)
        }
        (Unlock::Identity(identity), slot_kind::RECIPIENT) => {
            if slot.params[32..64] != identity.recipient().0 {
                return None;
            }
            let enc: [u8; 32] = slot.params[..32].try_into().expect("32 bytes");
            let plain = hpke::open(&identity.0, &enc, &recipient_info(image_id), &aad(), &slot.wrapped).ok()?;
            DataKey::from_slice(&plain)
        }
        _ => None,
    }
}

/// A public description of a slot, for `coffer key list`.
pub fn describe(slot: &KeySlot) -> String {
    match slot.kind {
        slot_kind::KEY => format!("key {}", crate::hex(&slot.key_id)),
        slot_kind::KEYRING => match KeyringRef::of_slot(slot) {
            Some(r) => format!("keyring {} version {} (key {})", r.name, r.version, crate::hex(&slot.key_id)),
            None => "keyring (unreadable name)".into(),
        },
        slot_kind::PASSPHRASE => {
            let p = KdfParams::of_slot(slot);
            format!("passphrase argon2id m={} MiB t={} p={}", p.memory_kib / 1024, p.iterations, p.lanes)
        }
        slot_kind::RECIPIENT => {
            let pk: [u8; 32] = slot.params[32..64].try_into().expect("32 bytes");
            format!("recipient {}", Recipient(pk))
        }
        other => format!("unknown kind {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfChoice {
        KdfChoice { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: Some(1), target: Duration::ZERO }
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(Zeroizing::new(s.as_bytes().to_vec())).unwrap()
    }

    fn round_trip(secret: SlotSecret, right: Unlock, wrong: Unlock) {
        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let dk = DataKey::from_bytes([7; 32]);
            let slot = seal_slot(suite, &secret, &dk, &[1; 16], [2; 32], 99).unwrap();
            let parsed = KeySlot::parse(&slot.encode()).unwrap();
            assert_eq!(*open_slot(suite, &right, &[1; 16], &parsed).expect("opens").0, [7; 32]);
            assert!(open_slot(suite, &wrong, &[1; 16], &parsed).is_none());
            assert!(open_slot(suite, &right, &[2; 16], &parsed).is_none(), "bound to the image id");
            for byte in [8, 16, 24, 60, 104, 140, 255] {
                let mut b = slot.encode();
                b[byte] ^= 1;
                let tampered = KeySlot::parse(&b).unwrap();
                assert!(open_slot(suite, &right, &[1; 16], &tampered).is_none(), "byte {byte} is bound");
            }
        }
    }

    #[test]
    fn key_slots() {
        let k = || MasterKey::from_bytes([5; 32]);
        round_trip(SlotSecret::Key(k()), Unlock::Key(k()), Unlock::Key(MasterKey::from_bytes([6; 32])));
    }

    #[test]
    fn keyring_slots_record_name_and_version() {
        let k = || MasterKey::from_bytes([5; 32]);
        let secret = SlotSecret::Keyring { key: k(), name: "backup".into(), version: 3 };
        let slot = seal_slot(Suite::Aes256Gcm, &secret, &DataKey::from_bytes([7; 32]), &[1; 16], [2; 32], 0).unwrap();
        assert_eq!(KeyringRef::of_slot(&slot), Some(KeyringRef { name: "backup".into(), version: 3 }));
        round_trip(secret, Unlock::Key(k()), Unlock::Key(MasterKey::from_bytes([6; 32])));
        let long = SlotSecret::Keyring { key: k(), name: "x".repeat(64), version: 1 };
        assert!(seal_slot(Suite::Aes256Gcm, &long, &DataKey::from_bytes([7; 32]), &[1; 16], [2; 32], 0).is_err());
    }

    #[test]
    fn passphrase_slots() {
        round_trip(
            SlotSecret::Passphrase(pass("correct horse"), fast()),
            Unlock::Passphrase(pass("correct horse")),
            Unlock::Passphrase(pass("correct horsf")),
        );
    }

    #[test]
    fn passphrase_costs_below_the_floor_are_refused() {
        let weak = KdfChoice { memory_kib: KdfParams::MIN_MEMORY_KIB - 1, ..fast() };
        let r = seal_slot(
            Suite::Aes256Gcm,
            &SlotSecret::Passphrase(pass("x"), weak),
            &DataKey::from_bytes([7; 32]),
            &[1; 16],
            [2; 32],
            0,
        );
        assert!(matches!(r, Err(CryptoError::WeakKdf(_))));
        // A slot edited to ask for less cannot open (and is refused before any work).
        let slot = seal_slot(
            Suite::Aes256Gcm,
            &SlotSecret::Passphrase(pass("x"), fast()),
            &DataKey::from_bytes([7; 32]),
            &[1; 16],
            [2; 32],
            0,
        )
        .unwrap();
        let mut weakened = slot.clone();
        weakened.params[0..4].copy_from_slice(&1024u32.to_be_bytes());
        assert!(open_slot(Suite::Aes256Gcm, &Unlock::Passphrase(pass("x")), &[1; 16], &weakened).is_none());
        assert!(KdfParams { memory_kib: 1 << 30, iterations: 1, lanes: 1 }.check().is_err(), "ceiling");
        assert!(Passphrase::new(Zeroizing::new(Vec::new())).is_err());
    }

    #[test]
    fn tuning_scales_the_pass_count_to_the_target() {
        let choice =
            KdfChoice { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: None, target: Duration::from_millis(400) };
        let slot = seal_slot(
            Suite::Aes256Gcm,
            &SlotSecret::Passphrase(pass("x"), choice),
            &DataKey::from_bytes([7; 32]),
            &[1; 16],
            [2; 32],
            0,
        )
        .unwrap();
        let p = KdfParams::of_slot(&slot);
        assert_eq!(p.memory_kib, KdfParams::MIN_MEMORY_KIB);
        assert!(p.iterations >= 1);
        assert!(open_slot(Suite::Aes256Gcm, &Unlock::Passphrase(pass("x")), &[1; 16], &slot).is_some());
    }

    #[test]
    fn argon2id_known_answer() {
        // RFC 9106 section 5.3 uses secret and associated data, which coffer does not; this
        // vector (password "password", salt "somesalt", m=64 MiB, t=1, p=1) is from the
        // reference implementation's command line: `echo -n password | argon2 somesalt -id -m 16 -t 1 -p 1 -l 32 -r`.
        let p = KdfParams { memory_kib: 65536, iterations: 1, lanes: 1 };
        let out = p.derive(b"password", b"somesalt").unwrap();
        assert_eq!(crate::hex(out.as_ref()), ARGON2ID_KAT);
    }
    const ARGON2ID_KAT: &str = "f6a5adc1ba723dddef9b5ac1d464e180fcd9dffc9d1cbf76cca2fed795d9ca98";

    #[test]
    fn recipient_slots() {
        let id = Identity::generate().unwrap();
        let copy = Identity::parse(&id.to_file_text("now")).unwrap();
        let other = Identity::generate().unwrap();
        round_trip(SlotSecret::Recipient(id.recipient()), Unlock::Identity(copy), Unlock::Identity(other));
    }

    #[test]
    fn recipient_and_identity_strings() {
        let id = Identity::generate().unwrap();
        let text = id.to_file_text("2026-11-24");
        assert!(text.contains("\nCOFFER-SECRET-KEY-1"));
        let r = id.recipient();
        assert!(r.to_string().starts_with("coffer1"));
        assert_eq!(Recipient::parse(&r.to_string()).unwrap(), r);
        // age's strings name the same X25519 keys.
        let age_r = crate::bech32::encode("age", &r.0);
        assert_eq!(Recipient::parse(&age_r).unwrap(), r);
        let age_id = crate::bech32::encode("age-secret-key-", id.0.as_ref()).to_ascii_uppercase();
        assert_eq!(Identity::parse(&format!("# comment\n\n{age_id}\n")).unwrap().recipient(), r);
        assert!(Recipient::parse("coffer1qqqq").is_err());
        assert!(Recipient::parse(&crate::bech32::encode("bc", &r.0)).is_err());
        assert!(Identity::parse(&r.to_string()).is_err());
        assert!(!format!("{id:?}").contains(&age_id[16..30]));
    }
}
