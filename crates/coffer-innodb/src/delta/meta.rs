//! The `.meta` beside a delta: parsing it (hostile input), and finding it by name.

use super::META_MAX;
use crate::scan::{classify, Kind};
use crate::space::decode_flags;

/// Page sizes of uncompressed tablespaces.
const PAGE_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];
/// Page sizes of ROW_FORMAT=COMPRESSED tablespaces (KEY_BLOCK_SIZE 1 to 16).
const ZIP_SIZES: [u32; 5] = [1024, 2048, 4096, 8192, 16384];

/// Why a `.meta` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("longer than {META_MAX} bytes: not a delta's .meta")]
    TooLong,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("{0} is given twice")]
    Duplicate(&'static str),
    #[error("no page_size")]
    NoPageSize,
    #[error("page_size {0} is not a page size (4K to 64K, or the zip_size)")]
    PageSize(u64),
    #[error("zip_size {0} is not a compressed page size (0, or 1K to 16K)")]
    ZipSize(u64),
    #[error(
        "page_size {page_size} with zip_size {zip_size}: compressed pages need a page size from the zip_size to 16K"
    )]
    Sizes { page_size: u32, zip_size: u32 },
    #[error("space_flags {flags:#x} {why}")]
    Flags { flags: u32, why: String },
}

/// What a `.meta` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaMeta {
    /// `page_size`: the logical page size, or (MariaDB, compressed tables) the physical one.
    pub page_size: u32,
    /// `zip_size`: the compressed page size, 0 for uncompressed tablespaces.
    pub zip_size: u32,
    /// `space_id` (absent from XtraBackup 2.0.1 and older).
    pub space_id: Option<u32>,
    /// `space_flags` (Percona XtraBackup 8.0).
    pub space_flags: Option<u32>,
}

impl DeltaMeta {
    /// Parses a `.meta` (hostile input: bounded, every value checked). Unknown keys are ignored,
    /// as the engines do.
    pub fn parse(text: &[u8]) -> Result<Self, MetaError> {
        if text.len() > META_MAX {
            return Err(MetaError::TooLong);
        }
        let mut values: [Option<u64>; 4] = [None; 4];
        const KEYS: [&str; 4] = ["page_size", "zip_size", "space_id", "space_flags"];
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let shown = || String::from_utf8_lossy(line).into_owned();
            let Some(eq) = line.iter().position(|&b| b == b'=') else {
                return Err(MetaError::Line { line: i + 1, why: format!("{:?} is not `key = value`", shown()) });
            };
            let (key, value) = (line[..eq].trim_ascii(), line[eq + 1..].trim_ascii());
            let Some(k) = KEYS.iter().position(|name| name.as_bytes() == key) else { continue };
            let Some(v) = number(value) else {
                return Err(MetaError::Line {
                    line: i + 1,
                    why: format!("{} is not a number: {:?}", KEYS[k], shown()),
                });
            };
            if k >= 2 && v > u64::from(u32::MAX) {
                return Err(MetaError::Line { line: i + 1, why: format!("{} {v} is out of range", KEYS[k]) });
            }
            if values[k].replace(v).is_some() {
                return Err(MetaError::Duplicate(KEYS[k]));
            }
        }
        let [page_size, zip_size, space_id, space_flags] = values;
        let page_size = page_size.ok_or(MetaError::NoPageSize)?;
        let zip_size = zip_size.unwrap_or(0);
        if zip_size != 0 && !ZIP_SIZES.iter().any(|&z| u64::from(z) == zip_size) {
            return Err(MetaError::ZipSize(zip_size));
        }
        let zip_size = zip_size as u32;
        let page_ok = PAGE_SIZES.iter().any(|&p| u64::from(p) == page_size)
            || (zip_size != 0 && page_size == u64::from(zip_size));
        if !page_ok {
            return Err(MetaError::PageSize(page_size));
        }
        let page_size = page_size as u32;
        if zip_size != 0 && !(zip_size..=16384).contains(&page_size) {
            return Err(MetaError::Sizes { page_size, zip_size });
        }
        // Both were checked to fit in 32 bits.
        let meta = Self {
            page_size,
            zip_size,
            space_id: space_id.map(|v| v as u32),
            space_flags: space_flags.map(|v| v as u32),
        };
        if let Some(flags) = meta.space_flags {
            let (_, _, physical) =
                decode_flags(flags).map_err(|_| MetaError::Flags { flags, why: "is not a valid flag word".into() })?;
            if physical != meta.physical_size() {
                return Err(MetaError::Flags {
                    flags,
                    why: format!("say {physical}-byte pages, page_size and zip_size {}", meta.physical_size()),
                });
            }
        }
        Ok(meta)
    }

    /// The size of a page in the delta (and of its block headers).
    pub fn physical_size(&self) -> u32 {
        if self.zip_size != 0 {
            self.zip_size
        } else {
            self.page_size
        }
    }

    /// The page size of the buffer pool, as far as the `.meta` tells: for a compressed table of
    /// MariaDB's (which writes its compressed size twice) 16K, the only size such tables have in
    /// practice; page 0, when the delta holds it, says for sure.
    pub(super) fn logical_size(&self) -> u32 {
        match self.space_flags.and_then(|f| decode_flags(f).ok()) {
            Some((_, logical, _)) => logical,
            None if self.zip_size != 0 && self.page_size == self.zip_size => 16384,
            None => self.page_size,
        }
    }
}

/// A decimal number of at most 20 digits, nothing else.
fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The tablespace `name` (a path) is the delta of: `db/t.ibd` for `db/t.ibd.delta`, if it is an
/// InnoDB file's name.
pub fn delta_of(name: &str) -> Option<&str> {
    name.strip_suffix(".delta").filter(|stem| !matches!(classify(stem), Kind::Other(_)))
}

/// The tablespace `name` is the `.meta` of: `db/t.ibd` for `db/t.ibd.meta`.
pub fn meta_of(name: &str) -> Option<&str> {
    name.strip_suffix(".meta").filter(|stem| !matches!(classify(stem), Kind::Other(_)))
}

/// Reads the `.meta` beside the delta at `delta` (`X.meta` for `X.delta`), without following a
/// symlink or blocking on a FIFO, at most [`META_MAX`] bytes of it. `Ok(None)`: there is none.
pub fn read_meta_beside(delta: &std::path::Path) -> Result<Option<DeltaMeta>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(name) = delta.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".delta")) else {
        return Ok(None);
    };
    let path = delta.with_file_name(format!("{name}.meta"));
    let shown = format!("{name}.meta");
    let file =
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("its {shown} cannot be read: {e}")),
        };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(format!("its {shown} is not a regular file"));
    }
    let mut text = Vec::new();
    file.take(META_MAX as u64 + 1).read_to_end(&mut text).map_err(|e| format!("its {shown} cannot be read: {e}"))?;
    DeltaMeta::parse(&text).map(Some).map_err(|e| format!("its {shown} is unusable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn meta_of_mariadb_and_percona() {
        let m = DeltaMeta::parse(b"page_size = 16384\nzip_size = 0 \nspace_id = 5\n").unwrap();
        assert_eq!(m, DeltaMeta { page_size: 16384, zip_size: 0, space_id: Some(5), space_flags: None });
        let m = DeltaMeta::parse(b"page_size = 4096\nzip_size = 4096 \nspace_id = 6\n").unwrap();
        assert_eq!((m.physical_size(), m.logical_size()), (4096, 16384));
        let m = DeltaMeta::parse(b"page_size = 16384\nzip_size = 8192\nspace_id = 9\nspace_flags = 41\n").unwrap();
        assert_eq!((m.physical_size(), m.logical_size(), m.space_flags), (8192, 16384, Some(0x29)));
        // XtraBackup 2.0.1 and older: no space id; CRLF and unknown keys are fine.
        let m = DeltaMeta::parse(b"page_size = 8192\r\nfuture = x\r\n").unwrap();
        assert_eq!((m.page_size, m.zip_size, m.space_id), (8192, 0, None));
    }

    #[test]
    fn bad_metas_are_refused() {
        let err = |t: &[u8]| DeltaMeta::parse(t).unwrap_err();
        assert_eq!(err(b"zip_size = 0\n"), MetaError::NoPageSize);
        assert_eq!(err(b"page_size = 16000\n"), MetaError::PageSize(16000));
        assert_eq!(err(b"page_size = 1024\n"), MetaError::PageSize(1024));
        assert_eq!(err(b"page_size = 16384\nzip_size = 3000\n"), MetaError::ZipSize(3000));
        assert_eq!(err(b"page_size = 65536\nzip_size = 8192\n"), MetaError::Sizes { page_size: 65536, zip_size: 8192 });
        assert_eq!(err(b"page_size = 16384\npage_size = 16384\n"), MetaError::Duplicate("page_size"));
        assert!(matches!(err(b"page_size = -1\n"), MetaError::Line { line: 1, .. }));
        assert!(matches!(err(b"page_size = 99999999999999999999999\n"), MetaError::Line { .. }));
        assert!(matches!(err(b"page_size 16384\n"), MetaError::Line { .. }));
        assert!(matches!(err(b"page_size = 16384\nspace_id = 4294967296\n"), MetaError::Line { .. }));
        assert_eq!(err(&vec![b' '; META_MAX + 1]), MetaError::TooLong);
        // Flags that say 8K pages beside a 16K page size; flags that are no flag word.
        assert!(matches!(err(b"page_size = 16384\nspace_flags = 41\n"), MetaError::Flags { .. }));
        assert!(matches!(err(b"page_size = 16384\nspace_flags = 4294967295\n"), MetaError::Flags { .. }));
    }

    #[test]
    fn names() {
        assert_eq!(delta_of("db/t.ibd.delta"), Some("db/t.ibd"));
        assert_eq!(delta_of("ibdata1.delta"), Some("ibdata1"));
        assert_eq!(delta_of("undo001.delta"), Some("undo001"));
        assert_eq!(delta_of("db/t.frm.delta"), None);
        assert_eq!(delta_of("db/t.ibd"), None);
        assert_eq!(meta_of("db/t.ibd.meta"), Some("db/t.ibd"));
        assert_eq!(meta_of("x.coffer.meta"), None);
    }
}
