//! The image header: fixed fields, the key-slot area, a keyed MAC and an unkeyed checksum.
//!
//! ```text
//! off   len  field
//!   0     8  magic
//!   8     2  version (1 or 2)
//!  10     2  copy number (0 at offset 0, 1 at offset 8192)
//!  12     4  header size (8192)
//!  16     8  generation (1 when written; +1 on every in-place rewrite)
//!  24    16  image id (random)
//!  40     1  AEAD suite
//!  41     1  default codec
//!  42     1  compression level (i8)
//!  43     1  reserved (0)
//!  44     4  chunk size
//!  48     8  created (Unix seconds)
//!  56     8  flags (bit 0: signed; other bits 0)
//!  64   192  reserved (0)
//! 256  4096  16 key slots of 256 bytes
//! 4352  128  signature block if signed: signer (32), key commitment (32), Ed25519 signature (64); else 0
//! 4480 3648  reserved (0)
//! 8128   32  MAC: HMAC-SHA256(header MAC key, bytes [0, 8128))
//! 8160   32  checksum: SHA-256(bytes [0, 8160))
//! ```

use crate::codec::{Reader, Writer};
use crate::{
    invalid, Codec, FormatError, Suite, HEADER_SIZE, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, MIN_VERSION, VERSION,
};

pub const SLOT_COUNT: usize = 16;
pub const SLOT_SIZE: usize = 256;
pub const SLOTS_OFFSET: usize = 256;
pub const MAC_OFFSET: usize = HEADER_SIZE - 64;
pub const CHECKSUM_OFFSET: usize = HEADER_SIZE - 32;
/// Where the signature block starts (after the key-slot area).
pub const SIGNATURE_OFFSET: usize = SLOTS_OFFSET + SLOT_COUNT * SLOT_SIZE;
/// Signer (32), key commitment (32), Ed25519 signature (64).
pub const SIGNATURE_BLOCK: usize = 128;
/// Header flag: the header carries a signature block.
pub const FLAG_SIGNED: u64 = 1;
/// What a signature covers starts with this context string (FORMAT.md §3.1).
pub const SIGNATURE_CONTEXT: &[u8] = b"coffer v1 image signature";

/// An image's origin: an Ed25519 signature over the header's fixed fields and a commitment to
/// the data key. Key-slot changes leave it valid (the data key stays); a new data key does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSignature {
    /// The signer's Ed25519 public key.
    pub signer: [u8; 32],
    /// HKDF of the data key (FORMAT.md §2): binds the signature to the key that opens the frames.
    pub commitment: [u8; 32],
    pub signature: [u8; 64],
}

/// The decoded fields of one header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version: 1, or 2 if the image may hold PACK frames.
    pub version: u16,
    pub copy: u16,
    pub generation: u64,
    pub image_id: [u8; 16],
    pub suite: Suite,
    pub codec: Codec,
    pub level: i8,
    pub chunk_size: u32,
    pub created: i64,
    pub slots: Vec<KeySlot>,
    pub signature: Option<ImageSignature>,
    pub mac: [u8; 32],
    pub checksum: [u8; 32],
}

impl Header {
    fn flags(&self) -> u64 {
        if self.signature.is_some() {
            FLAG_SIGNED
        } else {
            0
        }
    }

    /// The message an image signature covers: the context string, the version, then bytes
    /// [24, 64) of the header (image id, suite, codec, level, chunk size, created, flags), then
    /// the signer and the key commitment. Nothing a key-slot rewrite changes is covered.
    pub fn signed_message(&self, signer: &[u8; 32], commitment: &[u8; 32]) -> Vec<u8> {
        // Taken from the encoding itself, so the message follows the layout; the flags are
        // those of the signed header, whether or not `self` carries its signature yet.
        let encoded = self.encode();
        [SIGNATURE_CONTEXT, &encoded[8..10], &encoded[24..56], &FLAG_SIGNED.to_le_bytes(), signer, commitment].concat()
    }

    /// Encodes every field; the MAC and checksum are written as stored in `self` (the crypto layer
    /// computes them over the returned bytes and patches them in with [`Header::set_mac`] and
    /// [`Header::set_checksum`]).
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(self.slots.len(), SLOT_COUNT, "a header has exactly {SLOT_COUNT} slots");
        let mut out = Vec::with_capacity(HEADER_SIZE);
        let mut w = Writer::new(&mut out);
        w.bytes(&MAGIC)
            .u16(self.version)
            .u16(self.copy)
            .u32(HEADER_SIZE as u32)
            .u64(self.generation)
            .bytes(&self.image_id)
            .u8(self.suite as u8)
            .u8(self.codec as u8)
            .u8(self.level as u8)
            .u8(0)
            .u32(self.chunk_size)
            .i64(self.created)
            .u64(self.flags())
            .zeros(SLOTS_OFFSET - 64);
        for slot in &self.slots {
            w.bytes(&slot.encode());
        }
        match &self.signature {
            Some(s) => w.bytes(&s.signer).bytes(&s.commitment).bytes(&s.signature),
            None => w.zeros(SIGNATURE_BLOCK),
        };
        w.zeros(MAC_OFFSET - SIGNATURE_OFFSET - SIGNATURE_BLOCK).bytes(&self.mac).bytes(&self.checksum);
        debug_assert_eq!(out.len(), HEADER_SIZE);
        out
    }

    /// The bytes the MAC covers.
    pub fn mac_region(bytes: &[u8]) -> &[u8] {
        &bytes[..MAC_OFFSET]
    }

    /// The bytes the checksum covers.
    pub fn checksum_region(bytes: &[u8]) -> &[u8] {
        &bytes[..CHECKSUM_OFFSET]
    }

    pub fn set_mac(bytes: &mut [u8], mac: &[u8; 32]) {
        bytes[MAC_OFFSET..MAC_OFFSET + 32].copy_from_slice(mac);
    }

    pub fn set_checksum(bytes: &mut [u8], checksum: &[u8; 32]) {
        bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 32].copy_from_slice(checksum);
    }

    /// The checksum stored in an encoded header (of any validity).
    pub fn stored_checksum(bytes: &[u8]) -> Option<[u8; 32]> {
        bytes.get(CHECKSUM_OFFSET..HEADER_SIZE)?.try_into().ok()
    }

    /// True if `bytes` start with the coffer magic (whatever else they hold).
    pub fn has_magic(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC)
    }

    /// Parses one header copy. Does not verify the checksum or the MAC: that needs hashing and
    /// keys, which belong to the caller.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "header";
        let mut r = Reader::new(bytes, WHAT);
        if r.array::<8>()? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let copy = r.u16()?;
        if copy > 1 {
            return Err(invalid(WHAT, format!("copy number {copy}")));
        }
        let size = r.u32()?;
        if size as usize != HEADER_SIZE {
            return Err(invalid(WHAT, format!("header size {size}")));
        }
        if bytes.len() != HEADER_SIZE {
            return Err(FormatError::Short { what: WHAT, need: HEADER_SIZE, have: bytes.len() });
        }
        let generation = r.u64()?;
        let image_id = r.array()?;
        let suite_byte = r.u8()?;
        let suite =
            Suite::from_u8(suite_byte).ok_or_else(|| invalid(WHAT, format!("unknown AEAD suite {suite_byte}")))?;
        let codec_byte = r.u8()?;
        let codec = Codec::from_u8(codec_byte).ok_or_else(|| invalid(WHAT, format!("unknown codec {codec_byte}")))?;
        let level = r.u8()? as i8;
        r.zeros(1, "byte 43")?;
        let chunk_size = r.u32()?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(invalid(WHAT, format!("chunk size {chunk_size} out of range")));
        }
        let created = r.i64()?;
        let flags = r.u64()?;
        if flags & !FLAG_SIGNED != 0 {
            return Err(FormatError::Reserved { what: WHAT, field: "flags" });
        }
        r.zeros(SLOTS_OFFSET - 64, "bytes 64..256")?;
        let slots = (0..SLOT_COUNT).map(|_| KeySlot::parse(r.take(SLOT_SIZE)?)).collect::<Result<Vec<_>, _>>()?;
        let signature = if flags & FLAG_SIGNED != 0 {
            Some(ImageSignature { signer: r.array()?, commitment: r.array()?, signature: r.array()? })
        } else {
            r.zeros(SIGNATURE_BLOCK, "bytes 4352..4480")?;
            None
        };
        r.zeros(MAC_OFFSET - SIGNATURE_OFFSET - SIGNATURE_BLOCK, "bytes 4480..8128")?;
        let mac = r.array()?;
        let checksum = r.array()?;
        r.finish()?;
        Ok(Self {
            version,
            copy,
            generation,
            image_id,
            suite,
            codec,
            level,
            chunk_size,
            created,
            slots,
            signature,
            mac,
            checksum,
        })
    }
}

/// Slot kinds this version defines. Unknown kinds are kept as they are (a later version may add
/// kinds; an older reader skips slots it cannot open).
pub mod slot_kind {
    pub const EMPTY: u8 = 0;
    /// A raw 256-bit master key (a key file, a key command).
    pub const KEY: u8 = 1;
    /// A passphrase through Argon2id; costs in the parameters.
    pub const PASSPHRASE: u8 = 2;
    /// An X25519 public key (HPKE); `enc` and the public key in the parameters.
    pub const RECIPIENT: u8 = 3;
    /// A named, versioned key of a keyring; version and name in the parameters.
    pub const KEYRING: u8 = 4;
}

/// One 256-byte key slot: the data key wrapped under one master secret.
///
/// ```text
/// off len field
///   0   1 kind (0 empty: then all 256 bytes are zero)
///   1   7 reserved (0)
///   8   8 created (Unix seconds)
///  16   8 key id: identifies the master key without revealing it
///  24  32 salt (random)
///  56  48 wrapped data key: AEAD ciphertext (32) and tag (16)
/// 104 152 kind-specific parameters (0 for kind 1)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    pub kind: u8,
    pub created: i64,
    pub key_id: [u8; 8],
    pub salt: [u8; 32],
    pub wrapped: [u8; 48],
    pub params: [u8; 152],
}

impl Default for KeySlot {
    fn default() -> Self {
        Self { kind: slot_kind::EMPTY, created: 0, key_id: [0; 8], salt: [0; 32], wrapped: [0; 48], params: [0; 152] }
    }
}

impl KeySlot {
    pub fn is_empty(&self) -> bool {
        self.kind == slot_kind::EMPTY
    }

    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut out = Vec::with_capacity(SLOT_SIZE);
        Writer::new(&mut out)
            .u8(self.kind)
            .zeros(7)
            .i64(self.created)
            .bytes(&self.key_id)
            .bytes(&self.salt)
            .bytes(&self.wrapped)
            .bytes(&self.params);
        out.try_into().expect("slot is 256 bytes")
    }

    /// The slot's bytes other than the wrapped key: bound to the wrapped key as associated data,
    /// so no field of a slot can be changed without the slot failing to open.
    pub fn bound_fields(&self) -> Vec<u8> {
        let enc = self.encode();
        let mut out = enc[..56].to_vec();
        out.extend_from_slice(&enc[104..]);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "key slot");
        let kind = r.u8()?;
        r.zeros(7, "bytes 1..8")?;
        let slot = Self {
            kind,
            created: r.i64()?,
            key_id: r.array()?,
            salt: r.array()?,
            wrapped: r.array()?,
            params: r.array()?,
        };
        r.finish()?;
        if slot.is_empty() && slot != Self::default() {
            return Err(invalid("key slot", "empty slot with non-zero bytes"));
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let mut slots = vec![KeySlot::default(); SLOT_COUNT];
        slots[0] = KeySlot {
            kind: slot_kind::KEY,
            created: 7,
            key_id: [1; 8],
            salt: [2; 32],
            wrapped: [3; 48],
            params: [0; 152],
        };
        Header {
            version: VERSION,
            copy: 0,
            generation: 1,
            image_id: [9; 16],
            suite: Suite::Aes256Gcm,
            codec: Codec::Zstd,
            level: -3,
            chunk_size: 1 << 20,
            created: 1_700_000_000,
            slots,
            signature: None,
            mac: [4; 32],
            checksum: [5; 32],
        }
    }

    #[test]
    fn signed_round_trip_and_layout() {
        let mut h = sample();
        h.signature = Some(ImageSignature { signer: [6; 32], commitment: [7; 32], signature: [8; 64] });
        let bytes = h.encode();
        assert_eq!(Header::parse(&bytes).unwrap(), h);
        assert_eq!(&bytes[56..64], &1u64.to_le_bytes());
        assert_eq!(&bytes[4352..4384], &[6; 32]);
        assert_eq!(&bytes[4384..4416], &[7; 32]);
        assert_eq!(&bytes[4416..4480], &[8; 64]);
        // The message covers the fixed fields, whatever the generation, copy or slots.
        let msg = h.signed_message(&[6; 32], &[7; 32]);
        assert_eq!(&msg[..SIGNATURE_CONTEXT.len()], SIGNATURE_CONTEXT);
        assert_eq!(&msg[SIGNATURE_CONTEXT.len()..], [&bytes[8..10], &bytes[24..64], &bytes[4352..4416]].concat());
        let mut rewritten = h.clone();
        rewritten.generation = 9;
        rewritten.copy = 1;
        rewritten.slots[3] = rewritten.slots[0].clone();
        assert_eq!(rewritten.signed_message(&[6; 32], &[7; 32]), msg);
        // Unknown flags and a signature block without the flag are refused.
        let mut b = bytes.clone();
        b[56] = 3;
        assert!(matches!(Header::parse(&b), Err(FormatError::Reserved { .. })));
        let mut b = sample().encode();
        b[4400] = 1;
        assert!(matches!(Header::parse(&b), Err(FormatError::Reserved { .. })));
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert_eq!(Header::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn every_field_sits_where_the_spec_says() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..8], b"\x89COFFER\n");
        assert_eq!(&bytes[8..10], &[2, 0]);
        assert_eq!(&bytes[12..16], &8192u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
        assert_eq!(&bytes[24..40], &[9; 16]);
        assert_eq!(bytes[40], 1);
        assert_eq!(bytes[41], 1);
        assert_eq!(bytes[42], (-3i8) as u8);
        assert_eq!(&bytes[44..48], &(1u32 << 20).to_le_bytes());
        assert_eq!(&bytes[48..56], &1_700_000_000i64.to_le_bytes());
        assert_eq!(bytes[256], slot_kind::KEY);
        assert_eq!(&bytes[256 + 8..256 + 16], &7i64.to_le_bytes());
        assert_eq!(&bytes[256 + 16..256 + 24], &[1; 8]);
        assert_eq!(&bytes[256 + 24..256 + 56], &[2; 32]);
        assert_eq!(&bytes[256 + 56..256 + 104], &[3; 48]);
        assert_eq!(&bytes[8128..8160], &[4; 32]);
        assert_eq!(&bytes[8160..8192], &[5; 32]);
    }

    #[test]
    fn rejects_bad_magic_version_and_reserved_bytes() {
        let good = sample().encode();
        let mut b = good.clone();
        b[0] = b'x';
        assert_eq!(Header::parse(&b), Err(FormatError::BadMagic));
        for (v, ok) in [(0u8, false), (1, true), (2, true), (3, false)] {
            let mut b = good.clone();
            b[8] = v;
            let got = Header::parse(&b);
            assert_eq!(got.is_ok(), ok, "version {v}");
            if ok {
                assert_eq!(got.unwrap().version, u16::from(v));
            } else {
                assert_eq!(got, Err(FormatError::UnsupportedVersion(v.into())));
            }
        }
        for at in [43, 57, 100, 4400, 8000] {
            let mut b = good.clone();
            b[at] = 1;
            assert!(matches!(Header::parse(&b), Err(FormatError::Reserved { .. })), "byte {at}");
        }
        let mut b = good.clone();
        b[40] = 9;
        assert!(Header::parse(&b).is_err());
        assert!(Header::parse(&good[..4000]).is_err());
    }

    #[test]
    fn empty_slots_must_be_all_zero() {
        let mut b = sample().encode();
        b[SLOTS_OFFSET + SLOT_SIZE + 30] = 1; // inside slot 1, which is empty
        assert!(Header::parse(&b).is_err());
    }
}
