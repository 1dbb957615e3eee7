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

    /// The work one derivation takes, for ordering slots: memory × passes (KiB-passes). Lanes
    /// share the memory and do not change the total.
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, CryptoError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.lanes, Some(KEY_LEN))
            .map_err(|_| CryptoError::WeakKdf(*self))?;
        Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }

    /// Argon2id's working memory for these costs, allocated fallibly: memory the host cannot
    /// give is an error for this slot, not an abort of the process (the argon2 crate's own
    /// allocation aborts). Zeroed when dropped: its last blocks determine the output.
    fn memory(&self) -> Result<Zeroizing<Vec<argon2::Block>>, CryptoError> {
        self.check()?;
        let count = self.argon2()?.params().block_count();
        #[cfg(test)]
        if self.memory_kib > tests::ALLOC_CEILING_KIB.get() {
            return Err(CryptoError::KdfMemory(*self));
        }
        let mut blocks = Vec::new();
        blocks.try_reserve_exact(count).map_err(|_| CryptoError::KdfMemory(*self))?;
        blocks.resize(count, argon2::Block::default());
        Ok(Zeroizing::new(blocks))
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt` in `memory` (from [`Self::memory`]),
    /// 32 bytes out.
    fn derive_in(
        &self,
        passphrase: &[u8],
        salt: &[u8],
        memory: &mut [argon2::Block],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        self.argon2()?
            .hash_password_into_with_memory(passphrase, salt, out.as_mut(), memory)
            .map_err(|_| CryptoError::WeakKdf(*self))?;
        Ok(out)
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt`, 32 bytes out.
    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        self.derive_in(passphrase, salt, &mut self.memory()?)
    }
}

/// Amounts of memory as people read them: whole MiB where they are.
fn kib_text(kib: u32) -> String {
    if kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

fn passes_text(t: u32) -> String {
    if t == 1 {
        "1 pass".into()
    } else {
        format!("{t} passes")
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Argon2id {}, {}", kib_text(self.memory_kib), passes_text(self.iterations))
    }
}

/// The most Argon2id work a reader does for one passphrase slot: a slot asking for more is
/// skipped, not tried. At most the format's ceiling ([`KdfParams::MAX_MEMORY_KIB`],
/// [`KdfParams::MAX_ITERATIONS`]), which is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    pub max_memory_kib: u32,
    pub max_iterations: u32,
}

impl KdfLimits {
    /// The format's ceiling: what every reader refuses to go beyond.
    pub const CEILING: Self =
        Self { max_memory_kib: KdfParams::MAX_MEMORY_KIB, max_iterations: KdfParams::MAX_ITERATIONS };

    /// Does `params` ask for more memory, more passes than these limits allow?
    fn exceeded_by(&self, params: &KdfParams) -> (bool, bool) {
        (params.memory_kib > self.max_memory_kib, params.iterations > self.max_iterations)
    }
}

impl Default for KdfLimits {
    fn default() -> Self {
        Self::CEILING
    }
}

/// Why a passphrase slot was not tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotNote {
    /// It asks for more than the reader's limits.
    OverLimit { slot: usize, params: KdfParams, limits: KdfLimits },
    /// Its Argon2id memory could not be allocated.
    NoMemory { slot: usize, params: KdfParams },
    /// Its costs are outside the format's bounds: refused without running Argon2id.
    OutOfBounds { slot: usize, params: KdfParams },
}

impl std::fmt::Display for SlotNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OverLimit { slot, params, limits } => {
                write!(f, "passphrase slot {slot} ({params}) skipped: above ")?;
                match limits.exceeded_by(params) {
                    (true, true) => write!(
                        f,
                        "--kdf-max-memory {} and --kdf-max-passes {}",
                        kib_text(limits.max_memory_kib),
                        limits.max_iterations
                    ),
                    (true, false) => write!(f, "--kdf-max-memory {}", kib_text(limits.max_memory_kib)),
                    _ => write!(f, "--kdf-max-passes {}", limits.max_iterations),
                }
            }
            Self::NoMemory { slot, params } => {
                write!(
                    f,
                    "passphrase slot {slot}: cannot allocate {} MiB for Argon2id",
                    params.memory_kib.div_ceil(1024)
                )
            }
            Self::OutOfBounds { slot, params } => write!(
                f,
                "passphrase slot {slot} refused: Argon2id costs out of bounds ({} KiB, {}, {} lanes)",
                params.memory_kib,
                passes_text(params.iterations),
                params.lanes
            ),
        }
    }
}

/// No slot opened. `notes` lists the passphrase slots that were not tried; without any, the
/// secrets given are certainly wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unopened {
    pub notes: Vec<SlotNote>,
}

impl std::error::Error for Unopened {}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no key slot opens with the key given")?;
        if self.notes.is_empty() {
            return Ok(());
        }
        let n = self.notes.len();
        write!(f, ", and {n} passphrase slot{} not tried (", if n == 1 { " was" } else { "s were" })?;
        for (i, note) in self.notes.iter().enumerate() {
            write!(f, "{}{note}", if i == 0 { "" } else { "; " })?;
        }
        f.write_str(")")?;
        let over = |memory: bool| {
            self.notes.iter().any(|n| match n {
                SlotNote::OverLimit { params, limits, .. } => {
                    let (m, t) = limits.exceeded_by(params);
                    if memory {
                        m
                    } else {
                        t
                    }
                }
                _ => false,
            })
        };
        let mut hints = Vec::new();
        if over(true) {
            hints.push(format!("raise --kdf-max-memory (at most {})", kib_text(KdfParams::MAX_MEMORY_KIB)));
        }
        if over(false) {
            hints.push(format!("raise --kdf-max-passes (at most {})", KdfParams::MAX_ITERATIONS));
        }
        if self.notes.iter().any(|n| matches!(n, SlotNote::NoMemory { .. })) {
            hints.push("free memory (or raise the process's memory limit)".into());
        }
        if !hints.is_empty() {
            write!(f, ": to try them, {}", hints.join(", "))?;
        }
        Ok(())
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

/// Told about each passphrase slot that is not tried, as it is passed over.
pub type SlotNotify = std::sync::Arc<dyn Fn(&SlotNote) + Send + Sync>;

/// A passphrase, as bytes (UTF-8 as typed; no normalization), with the most Argon2id work it
/// may be tried at ([`KdfLimits`]) and whom to tell about slots passed over.
pub struct Passphrase {
    bytes: Zeroizing<Vec<u8>>,
    limits: KdfLimits,
    notify: Option<SlotNotify>,
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// A passphrase tried up to the format's ceiling.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        if bytes.is_empty() {
            return Err(CryptoError::EmptyPassphrase);
        }
        Ok(Self { bytes, limits: KdfLimits::CEILING, notify: None })
    }

    /// Tries slots only up to `limits` (never beyond the ceiling), telling `notify` about each
    /// passphrase slot that is not tried.
    pub fn with_limits(mut self, limits: KdfLimits, notify: Option<SlotNotify>) -> Self {
        self.limits = KdfLimits {
            max_memory_kib: limits.max_memory_kib.min(KdfParams::MAX_MEMORY_KIB),
            max_iterations: limits.max_iterations.min(KdfParams::MAX_ITERATIONS),
        };
        self.notify = notify;
        self
    }

    pub fn limits(&self) -> KdfLimits {
        self.limits
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
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
    /// Opens nothing: demands that the image be signed by this key (or by another `Signer`
    /// given), refused before any slot is tried.
    Signer(crate::Signer),
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
/// secret (or the slot is of a kind this secret cannot open, asks for costs out of bounds or
/// above the passphrase's limits, or its memory cannot be had). [`open_slots`] says why.
pub fn open_slot(suite: Suite, unlock: &Unlock, image_id: &[u8; 16], slot: &KeySlot) -> Option<DataKey> {
    match (unlock, slot.kind) {
        (Unlock::Passphrase(pass), slot_kind::PASSPHRASE) => {
            let params = KdfParams::of_slot(slot);
            let (m, t) = pass.limits.exceeded_by(&params);
            if m || t {
                return None;
            }
            let mut memory = params.memory().ok()?;
            open_passphrase_slot(suite, pass, image_id, slot, &params, &mut memory)
        }
        _ => open_cheap_slot(suite, unlock, image_id, slot),
    }
}

/// Opens one of `slots` (index, slot) with one of `unlocks`, cheapest first: every slot that
/// needs no Argon2id (key, keyring, recipient), in order, then the passphrase slots in order of
/// their cost (memory × passes; the index breaks ties). The slot index is not bound into a slot,
/// and anyone can put slots in an image's header (its MAC is checked only once a slot opens), so
/// the order of the slots says nothing: a right passphrase pays at most for the slots that cost
/// no more than its own, never for a costlier decoy put before it.
///
/// A passphrase slot above a passphrase's limits, whose memory cannot be allocated or whose
/// costs are out of bounds is passed over: the passphrase's notifier hears of it, and the error
/// lists it if no slot opens.
pub fn open_slots<'a>(
    suite: Suite,
    unlocks: &[Unlock],
    image_id: &[u8; 16],
    slots: impl IntoIterator<Item = (usize, &'a KeySlot)>,
) -> Result<(usize, DataKey), Unopened> {
    let slots: Vec<(usize, &KeySlot)> = slots.into_iter().filter(|(_, s)| !s.is_empty()).collect();
    for (i, slot) in slots.iter().filter(|(_, s)| s.kind != slot_kind::PASSPHRASE) {
        if let Some(dk) = unlocks.iter().find_map(|u| open_cheap_slot(suite, u, image_id, slot)) {
            return Ok((*i, dk));
        }
    }
    let passphrases: Vec<&Passphrase> =
        unlocks.iter().filter_map(|u| if let Unlock::Passphrase(p) = u { Some(p) } else { None }).collect();
    let Some(first) = passphrases.first() else {
        return Err(Unopened { notes: Vec::new() });
    };
    let mut costly: Vec<(usize, &KeySlot, KdfParams)> = slots
        .iter()
        .filter(|(_, s)| s.kind == slot_kind::PASSPHRASE)
        .map(|(i, s)| (*i, *s, KdfParams::of_slot(s)))
        .collect();
    costly.sort_by_key(|(i, _, params)| (params.cost(), *i));
    let mut notes = Vec::new();
    let mut pass_over = |note: SlotNote| {
        if let Some(notify) = &first.notify {
            notify(&note);
        }
        notes.push(note);
    };
    for (i, slot, params) in costly {
        if params.check().is_err() {
            pass_over(SlotNote::OutOfBounds { slot: i, params });
            continue;
        }
        let within: Vec<&&Passphrase> = passphrases
            .iter()
            .filter(|p| {
                let (m, t) = p.limits.exceeded_by(&params);
                !(m || t)
            })
            .collect();
        if within.is_empty() {
            pass_over(SlotNote::OverLimit { slot: i, params, limits: first.limits });
            continue;
        }
        // One allocation per slot, for every passphrase tried on it, freed before the next.
        let Ok(mut memory) = params.memory() else {
            pass_over(SlotNote::NoMemory { slot: i, params });
            continue;
        };
        for pass in within {
            if let Some(dk) = open_passphrase_slot(suite, pass, image_id, slot, &params, &mut memory) {
                return Ok((i, dk));
            }
        }
    }
    Err(Unopened { notes })
}

fn open_passphrase_slot(
    suite: Suite,
    pass: &Passphrase,
    image_id: &[u8; 16],
    slot: &KeySlot,
    params: &KdfParams,
    memory: &mut [argon2::Block],
) -> Option<DataKey> {
    let derived = params.derive_in(pass.as_bytes(), &slot.salt, memory).ok()?;
    unwrap(&slot_kek(derived.as_ref(), &slot.salt, image_id, suite), slot_aad(image_id, slot), &slot.wrapped)
}

/// Opens a slot that needs no Argon2id: key and keyring slots with a key, recipient slots with
/// an identity.
fn open_cheap_slot(suite: Suite, unlock: &Unlock, image_id: &[u8; 16], slot: &KeySlot) -> Option<DataKey> {
    let aad = || slot_aad(image_id, slot);
    match (unlock, slot.kind) {
        (Unlock::Key(master), slot_kind::KEY | slot_kind::KEYRING) => {
            unwrap(&slot_kek(master.bytes(), &slot.salt, image_id, suite), aad(), &slot.wrapped)
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    thread_local! {
        /// Argon2id memory above this (KiB) "cannot be allocated" on this test's thread.
        pub(super) static ALLOC_CEILING_KIB: std::cell::Cell<u32> = const { std::cell::Cell::new(u32::MAX) };
    }

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

    /// A passphrase slot with these costs that no passphrase opens (a decoy).
    fn decoy(memory_kib: u32, iterations: u32) -> KeySlot {
        let mut slot = KeySlot { kind: slot_kind::PASSPHRASE, salt: [9; 32], wrapped: [9; 48], ..KeySlot::default() };
        KdfParams { memory_kib, iterations, lanes: 1 }.encode(&mut slot.params);
        slot
    }

    /// A passphrase limited to 1 GiB and 10 passes, and a count of the slots it was told about.
    fn limited(s: &str) -> (Passphrase, Arc<AtomicUsize>) {
        let heard = Arc::new(AtomicUsize::new(0));
        let h = heard.clone();
        let notify: SlotNotify = Arc::new(move |_: &SlotNote| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let limits = KdfLimits { max_memory_kib: 1024 * 1024, max_iterations: 10 };
        (pass(s).with_limits(limits, Some(notify)), heard)
    }

    /// Costly decoys first, the real (cheapest) slot last; any decoy tried would leave a note:
    /// slot 0 is above the memory limit, slot 1 cannot be allocated, slot 2 is above the pass
    /// limit, slot 3 is out of bounds.
    fn hostile_slots(dk: &DataKey) -> Vec<KeySlot> {
        let real =
            seal_slot(Suite::Aes256Gcm, &SlotSecret::Passphrase(pass("right"), fast()), dk, &[1; 16], [2; 32], 0);
        vec![
            decoy(KdfParams::MAX_MEMORY_KIB, 100),
            decoy(96 * 1024, 1),
            decoy(KdfParams::MIN_MEMORY_KIB, 50),
            decoy(8 * 1024 * 1024, 1),
            real.unwrap(),
        ]
    }

    #[test]
    fn the_cheapest_passphrase_slot_is_tried_first() {
        ALLOC_CEILING_KIB.set(80 * 1024);
        let slots = hostile_slots(&DataKey::from_bytes([7; 32]));
        let (right, heard) = limited("right");
        let unlocks = [Unlock::Passphrase(right)];
        let (i, dk) = open_slots(Suite::Aes256Gcm, &unlocks, &[1; 16], slots.iter().enumerate()).expect("opens");
        assert_eq!((i, *dk.0), (4, [7; 32]));
        assert_eq!(heard.load(Ordering::SeqCst), 0, "no decoy was tried, skipped or refused");
    }

    #[test]
    fn slots_passed_over_are_told_and_listed_when_none_opens() {
        ALLOC_CEILING_KIB.set(80 * 1024);
        let slots = hostile_slots(&DataKey::from_bytes([7; 32]));
        let (wrong, heard) = limited("wrong");
        let unlocks = [Unlock::Passphrase(wrong)];
        let err = open_slots(Suite::Aes256Gcm, &unlocks, &[1; 16], slots.iter().enumerate()).unwrap_err();
        let params = |i: usize| KdfParams::of_slot(&slots[i]);
        let limits = KdfLimits { max_memory_kib: 1024 * 1024, max_iterations: 10 };
        // In order of cost: the real slot (tried, wrong), 1, 2, 3, 0.
        assert_eq!(
            err.notes,
            [
                SlotNote::NoMemory { slot: 1, params: params(1) },
                SlotNote::OverLimit { slot: 2, params: params(2), limits },
                SlotNote::OutOfBounds { slot: 3, params: params(3) },
                SlotNote::OverLimit { slot: 0, params: params(0), limits },
            ]
        );
        assert_eq!(heard.load(Ordering::SeqCst), 4);
        let text = err.to_string();
        for part in [
            "4 passphrase slots were not tried",
            "passphrase slot 1: cannot allocate 96 MiB for Argon2id",
            "passphrase slot 2 (Argon2id 64 MiB, 50 passes) skipped: above --kdf-max-passes 10",
            "passphrase slot 3 refused: Argon2id costs out of bounds (8388608 KiB, 1 pass, 1 lanes)",
            "passphrase slot 0 (Argon2id 4096 MiB, 100 passes) skipped: above --kdf-max-memory 1024 MiB and --kdf-max-passes 10",
            "raise --kdf-max-memory (at most 4096 MiB)",
            "raise --kdf-max-passes (at most 100)",
            "free memory",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        // Without a passphrase, passphrase slots are not considered at all: a plain wrong key.
        let err = open_slots(
            Suite::Aes256Gcm,
            &[Unlock::Key(MasterKey::from_bytes([5; 32]))],
            &[1; 16],
            slots.iter().enumerate(),
        );
        assert_eq!(err.unwrap_err(), Unopened { notes: Vec::new() });
    }

    #[test]
    fn slots_without_argon2id_are_tried_before_passphrase_slots() {
        let dk = DataKey::from_bytes([7; 32]);
        let k = || MasterKey::from_bytes([5; 32]);
        let key_slot = seal_slot(Suite::Aes256Gcm, &SlotSecret::Key(k()), &dk, &[1; 16], [2; 32], 0).unwrap();
        let slots = [decoy(KdfParams::MAX_MEMORY_KIB, 1), key_slot];
        let (wrong, heard) = limited("wrong");
        let unlocks = [Unlock::Passphrase(wrong), Unlock::Key(k())];
        let (i, _) = open_slots(Suite::Aes256Gcm, &unlocks, &[1; 16], slots.iter().enumerate()).unwrap();
        assert_eq!((i, heard.load(Ordering::SeqCst)), (1, 0));
    }

    #[test]
    fn memory_that_cannot_be_had_is_an_error_not_an_abort() {
        ALLOC_CEILING_KIB.set(80 * 1024);
        let choice = KdfChoice { memory_kib: 96 * 1024, ..fast() };
        let r = seal_slot(
            Suite::Aes256Gcm,
            &SlotSecret::Passphrase(pass("x"), choice),
            &DataKey::from_bytes([7; 32]),
            &[1; 16],
            [2; 32],
            0,
        );
        let err = r.unwrap_err();
        assert!(matches!(err, CryptoError::KdfMemory(_)));
        assert_eq!(err.to_string(), "cannot allocate 96 MiB for Argon2id");
    }
}
