//! Entry metadata: the plaintext of an ENTRY frame, and part of every index record.
//!
//! ```text
//! kind u8 | flags u8 | reserved u16 (0) | mode u32 | uid u32 | gid u32
//! mtime_sec i64 | mtime_nsec u32 | reserved u32 (0) | size u64
//! path_len u16 | path | target_len u16 | target | uname_len u8 | uname | gname_len u8 | gname
//! ```
//!
//! Flag bit 0, `CONTINUES` (files only): this entry continues a file whose earlier part ended
//! with a paused chunk (see `frame::FLAG_PAUSE`); `size` is the offset where this part begins.

use crate::codec::{Reader, Writer};
use crate::{invalid, FormatError};

/// Longest path or link target an entry may carry.
pub const MAX_PATH_LEN: usize = u16::MAX as usize;
/// Longest name of a single path component (Linux NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file; CHUNK frames follow its ENTRY frame.
    File = 1,
    /// A directory. The entry with the empty path is the backed-up directory itself.
    Dir = 2,
    /// A symbolic link; `target` holds the link's contents, restored verbatim and never followed.
    Symlink = 3,
    /// A second name for an earlier regular file entry, whose path is in `target`.
    HardLink = 4,
}

impl EntryKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::File),
            2 => Some(Self::Dir),
            3 => Some(Self::Symlink),
            4 => Some(Self::HardLink),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::HardLink => "hardlink",
        }
    }
}

/// The entry flag of a file's continuation part.
pub const FLAG_CONTINUES: u8 = 0x01;

/// What an image knows about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: EntryKind,
    /// A later part of a file written in several parts (streams whose files interleave, such as
    /// xbstream); `size` is then the offset of the part's first byte.
    pub continues: bool,
    /// Permission bits, including set-uid, set-gid and sticky (at most 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// For files, the size when the entry was written (the chunks give the final size); for a
    /// continuation part, the offset where it begins.
    pub size: u64,
    /// Path relative to the backed-up directory, `/`-separated bytes (not necessarily UTF-8).
    pub path: Vec<u8>,
    pub target: Vec<u8>,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
}

impl EntryMeta {
    pub fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u8(self.kind as u8)
            .u8(if self.continues { FLAG_CONTINUES } else { 0 })
            .zeros(2)
            .u32(self.mode)
            .u32(self.uid)
            .u32(self.gid)
            .i64(self.mtime_sec)
            .u32(self.mtime_nsec)
            .u32(0)
            .u64(self.size)
            .u16(self.path.len() as u16)
            .bytes(&self.path)
            .u16(self.target.len() as u16)
            .bytes(&self.target)
            .u8(self.uname.len() as u8)
            .bytes(&self.uname)
            .u8(self.gname.len() as u8)
            .bytes(&self.gname);
    }

    /// Length of the encoding ([`EntryMeta::encode`]).
    pub fn encoded_len(&self) -> usize {
        40 + 2 + self.path.len() + 2 + self.target.len() + 1 + self.uname.len() + 1 + self.gname.len()
    }

    /// Checks what the writer must guarantee; the encoder assumes it.
    pub fn check(&self) -> Result<(), FormatError> {
        const WHAT: &str = "entry";
        if self.path.is_empty() {
            if self.kind != EntryKind::Dir {
                return Err(invalid(WHAT, "only the root directory may have an empty path"));
            }
        } else {
            check_relative_path(&self.path)?;
        }
        if self.continues && self.kind != EntryKind::File {
            return Err(invalid(WHAT, "only a file can continue"));
        }
        if self.mode > 0o7777 {
            return Err(invalid(WHAT, format!("mode {:o} has bits beyond 0o7777", self.mode)));
        }
        if self.mtime_nsec >= 1_000_000_000 {
            return Err(invalid(WHAT, "mtime nanoseconds out of range"));
        }
        match self.kind {
            EntryKind::Symlink => {
                if self.target.is_empty() || self.target.len() > MAX_PATH_LEN || self.target.contains(&0) {
                    return Err(invalid(WHAT, "bad symlink target"));
                }
            }
            EntryKind::HardLink => check_relative_path(&self.target)?,
            EntryKind::File | EntryKind::Dir => {
                if !self.target.is_empty() {
                    return Err(invalid(WHAT, "target set on a file or directory"));
                }
            }
        }
        for name in [&self.uname, &self.gname] {
            if name.len() > 255 || name.contains(&0) {
                return Err(invalid(WHAT, "bad owner name"));
            }
        }
        Ok(())
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "entry");
        let meta = Self::read(&mut r)?;
        r.finish()?;
        Ok(meta)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let kind_byte = r.u8()?;
        let kind =
            EntryKind::from_u8(kind_byte).ok_or_else(|| invalid("entry", format!("unknown entry kind {kind_byte}")))?;
        let flags = r.u8()?;
        if flags & !FLAG_CONTINUES != 0 {
            return Err(crate::FormatError::Reserved { what: "entry", field: "flags" });
        }
        r.zeros(2, "bytes 2..4")?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let mtime_sec = r.i64()?;
        let mtime_nsec = r.u32()?;
        r.zeros(4, "bytes 32..36")?;
        let size = r.u64()?;
        let path_len = r.u16()? as usize;
        let path = r.take(path_len)?.to_vec();
        let target_len = r.u16()? as usize;
        let target = r.take(target_len)?.to_vec();
        let uname_len = r.u8()? as usize;
        let uname = r.take(uname_len)?.to_vec();
        let gname_len = r.u8()? as usize;
        let gname = r.take(gname_len)?.to_vec();
        let continues = flags & FLAG_CONTINUES != 0;
        let meta = Self { kind, continues, mode, uid, gid, mtime_sec, mtime_nsec, size, path, target, uname, gname };
        meta.check()?;
        Ok(meta)
    }
}

/// A path is acceptable if it is relative, `/`-separated, and each component is non-empty, at
/// most 255 bytes, free of NUL, and neither `.` nor `..`. Such a path can only name something
/// beneath the directory it is resolved in (provided no component is followed as a symlink).
pub fn check_relative_path(path: &[u8]) -> Result<(), FormatError> {
    const WHAT: &str = "path";
    let shown = || String::from_utf8_lossy(path).into_owned();
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err(invalid(WHAT, format!("bad length {}", path.len())));
    }
    if path.contains(&0) {
        return Err(invalid(WHAT, format!("{:?} contains NUL", shown())));
    }
    if path[0] == b'/' {
        return Err(invalid(WHAT, format!("{:?} is absolute", shown())));
    }
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" => return Err(invalid(WHAT, format!("{:?} has an empty component", shown()))),
            b"." | b".." => {
                return Err(invalid(WHAT, format!("{:?} has a '{}' component", shown(), String::from_utf8_lossy(comp))))
            }
            c if c.len() > MAX_NAME_LEN => {
                return Err(invalid(WHAT, format!("{:?} has a component longer than 255 bytes", shown())))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> EntryMeta {
        EntryMeta {
            kind: EntryKind::File,
            continues: false,
            mode: 0o640,
            uid: 27,
            gid: 28,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 123,
            size: 5,
            path: b"db/t1.ibd".to_vec(),
            target: vec![],
            uname: b"mysql".to_vec(),
            gname: b"mysql".to_vec(),
        }
    }

    #[test]
    fn layout() {
        let mut out = vec![];
        sample().encode(&mut out);
        assert_eq!(out[0], 1);
        assert_eq!(&out[4..8], &0o640u32.to_le_bytes());
        assert_eq!(&out[8..12], &27u32.to_le_bytes());
        assert_eq!(&out[16..24], &1_700_000_000i64.to_le_bytes());
        assert_eq!(&out[24..28], &123u32.to_le_bytes());
        assert_eq!(&out[32..40], &5u64.to_le_bytes());
        assert_eq!(&out[40..42], &9u16.to_le_bytes());
        assert_eq!(&out[42..51], b"db/t1.ibd");
        assert_eq!(out.len(), 40 + 2 + 9 + 2 + 1 + 5 + 1 + 5);
        assert_eq!(EntryMeta::parse(&out).unwrap(), sample());
    }

    #[test]
    fn escaping_paths_are_rejected() {
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a//b", b"a/./b", b"a/", b"a\0b", b".."] {
            assert!(check_relative_path(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [&b"a"[..], b"a/b c/\n\xff", b"...", b".hidden/..x"] {
            check_relative_path(good).unwrap();
        }
        assert!(check_relative_path(&[b'x'; 256]).is_err());
        check_relative_path(&[b'x'; 255]).unwrap();
    }

    #[test]
    fn parse_refuses_an_escaping_entry() {
        let mut m = sample();
        m.path = b"../../etc/cron.d/evil".to_vec();
        let mut out = vec![];
        m.encode(&mut out);
        assert!(EntryMeta::parse(&out).is_err());
        let mut h = sample();
        h.kind = EntryKind::HardLink;
        h.target = b"/etc/shadow".to_vec();
        out.clear();
        h.encode(&mut out);
        assert!(EntryMeta::parse(&out).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = EntryMeta::parse(&bytes);
        }

        #[test]
        fn round_trips(path in "[a-z]{1,8}(/[a-z .]{1,8}){0,4}", mode in 0u32..=0o7777, uid: u32, nsec in 0u32..1_000_000_000, sec: i64, size: u64) {
            let mut m = sample();
            m.path = path.into_bytes();
            m.mode = mode; m.uid = uid; m.mtime_nsec = nsec; m.mtime_sec = sec; m.size = size;
            if check_relative_path(&m.path).is_ok() {
                let mut out = vec![];
                m.encode(&mut out);
                prop_assert_eq!(EntryMeta::parse(&out).unwrap(), m);
            }
        }
    }
}
