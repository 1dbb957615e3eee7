use coffer_fs::FsError;
use std::fmt;
use std::path::PathBuf;

/// Where in an image something was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// Byte offset in the image.
    pub offset: u64,
    /// The entry being read, if any (in a pack: the entry before it).
    pub entry: Option<String>,
    /// Chunk number within that entry (1-based), if in one.
    pub chunk: Option<u64>,
    /// In a PACK frame: which entries it holds.
    pub pack: Option<PackPlace>,
}

/// The entries of a PACK frame, for messages: their numbers, and their names where the index
/// gave them (a frame that fails to open shows none of its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackPlace {
    /// Number of its first entry (0-based).
    pub first: u64,
    pub count: u64,
    pub names: Vec<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}", self.offset)?;
        if let Some(p) = &self.pack {
            return match (p.names.as_slice(), &self.entry) {
                ([], Some(e)) => write!(f, " (a pack of {} entries, after {e:?})", p.count),
                ([], None) => write!(f, " (a pack of {} entries, from entry {})", p.count, p.first + 1),
                (names, _) => {
                    let shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
                    let more = names.len().saturating_sub(3);
                    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                    write!(f, " (in a pack of {}: {}{more})", p.count, shown.join(", "))
                }
            };
        }
        match (&self.entry, self.chunk) {
            (Some(e), Some(c)) => write!(f, " (in {e:?}, chunk {c})"),
            (Some(e), None) => write!(f, " (entry {e:?})"),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The header is intact and no key slot opens with any key given.
    #[error("wrong key: none of the image's key slots opens with the key given")]
    WrongKey,
    /// No key slot opens, and passphrase slots were passed over (above the Argon2id limits
    /// given, memory not to be had, costs out of bounds): the key may be right.
    #[error("{0}")]
    SlotsNotTried(coffer_crypto::Unopened),
    /// A signer was demanded and the image carries no signature.
    #[error("the image is not signed, and a signer is required (--require-signer)")]
    Unsigned,
    /// A signer was demanded and the image is signed by another key.
    #[error("the image is signed by {0}, not by a signer required (--require-signer)")]
    ForeignSigner(String),
    #[error("not a coffer image: {0}")]
    NotAnImage(String),
    #[error("image is corrupt or tampered at {at}: {detail}")]
    Corrupt { at: Location, detail: String },
    #[error("image is truncated at {at}: {detail}")]
    Truncated { at: Location, detail: String },
    /// The image asks for something unsafe (a path outside the target, through a symlink).
    #[error("image entry refused: {0}")]
    Unsafe(FsError),
    #[error(transparent)]
    Fs(FsError),
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    /// What the entries come from failed (a backup engine, a damaged input stream).
    #[error("{0}")]
    Source(String),
    /// An inspector (InnoDB page validation) refused the backup.
    #[error("backup refused: {0}")]
    Refused(String),
}

impl From<FsError> for ImageError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Unsafe { .. } => ImageError::Unsafe(e),
            other => ImageError::Fs(other),
        }
    }
}

impl From<coffer_crypto::Unopened> for ImageError {
    fn from(e: coffer_crypto::Unopened) -> Self {
        if e.notes.is_empty() {
            ImageError::WrongKey
        } else {
            ImageError::SlotsNotTried(e)
        }
    }
}

impl From<coffer_pipe::Stopped> for ImageError {
    fn from(_: coffer_pipe::Stopped) -> Self {
        // Only seen by a producer whose consumer already failed; that error is the one reported.
        ImageError::Usage("pipeline stopped".into())
    }
}

impl ImageError {
    /// True for damage to the image itself (corrupt, tampered, truncated, unsafe entries).
    pub fn is_integrity(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::Truncated { .. } | Self::NotAnImage(_) | Self::Unsafe(_))
    }

    pub(crate) fn corrupt(at: Location, detail: impl Into<String>) -> Self {
        Self::Corrupt { at, detail: detail.into() }
    }
}

pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { op, path, source }
}
