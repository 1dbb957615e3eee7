//! The byte layout of a coffer image, versions 1 and 2, as specified in `docs/FORMAT.md`.
//!
//! This crate turns bytes into typed values and back. It does no I/O, holds no keys and spawns no
//! threads: cryptography lives in `coffer-crypto`, orchestration in `coffer-image`. Every parser
//! here accepts untrusted input: it never panics, caps every length before allocating, and
//! rejects reserved bits and trailing bytes.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod codec;
pub mod entry;
pub mod frame;
pub mod header;
pub mod index;
pub mod pack;

pub use chunk::{ChunkHeader, Segment};
pub use entry::{EntryKind, EntryMeta};
pub use frame::{EndFields, FrameHeader, FrameKind};
pub use header::{Header, ImageSignature, KeySlot};
pub use index::IndexRecord;

/// First eight bytes of every image: not valid UTF-8 (0x89), with a line feed that text-mode
/// transfers would mangle, like PNG's signature.
pub const MAGIC: [u8; 8] = *b"\x89COFFER\n";
/// The newest format version, which this crate writes when entries are packed (version 2 adds
/// PACK frames to version 1; an image without them is written as version 1, which older readers
/// read too).
pub const VERSION: u16 = 2;
/// The oldest format version this crate reads.
pub const MIN_VERSION: u16 = 1;
/// Size of one header copy.
pub const HEADER_SIZE: usize = 8192;
/// The header is stored twice, back to back; frames start after both copies.
pub const DATA_OFFSET: u64 = 2 * HEADER_SIZE as u64;
/// Smallest and largest chunk sizes a writer may declare.
pub const MIN_CHUNK_SIZE: u32 = 4096;
pub const MAX_CHUNK_SIZE: u32 = 64 << 20;
/// Length of the AEAD authentication tag of both suites.
pub const TAG_LEN: usize = 16;
/// Length of the data key and of every master key.
pub const KEY_LEN: usize = 32;

/// Authenticated encryption suite of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    Aes256Gcm = 1,
    ChaCha20Poly1305 = 2,
}

impl Suite {
    /// Every suite, in the order a command line lists them.
    pub const ALL: [Suite; 2] = [Self::Aes256Gcm, Self::ChaCha20Poly1305];

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

/// Compression codec of a chunk (or, in the header, the writer's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None = 0,
    Zstd = 1,
    Lz4 = 2,
}

impl Codec {
    /// Every codec, in the order a command line lists them.
    pub const ALL: [Codec; 3] = [Self::Zstd, Self::Lz4, Self::None];

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Zstd),
            2 => Some(Self::Lz4),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }
}

/// Why a structure could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    #[error("not a coffer image (bad magic)")]
    BadMagic,
    #[error("unsupported image format version {0} (this coffer reads versions {MIN_VERSION} to {VERSION})")]
    UnsupportedVersion(u16),
    #[error("{what}: needs {need} bytes, has {have}")]
    Short { what: &'static str, need: usize, have: usize },
    #[error("{what}: {extra} unexpected trailing bytes")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what}: reserved field {field} is not zero")]
    Reserved { what: &'static str, field: &'static str },
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::Invalid { what, detail: detail.into() }
}
