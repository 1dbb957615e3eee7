//! An xbstream as image entries, as it arrives: every run of chunks of one file becomes an entry
//! (the first run a file entry, later runs continuation parts), so interleaved files need no
//! buffering and nothing is staged on disk. Directories are created as their first file
//! appears. Small metadata files the engine writes (checkpoints, binary log position) are kept
//! for the backup's description.

use crate::xbstream::{ChunkHead, ChunkType, XbError, XbReader};
use coffer_format::chunk::MAX_SEGMENTS;
use coffer_format::{EntryKind, EntryMeta, Segment};
use coffer_fs::source::{ChunkReader, Span};
use coffer_fs::FsError;
use coffer_image::{EntrySource, ImageError, SourceItem};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Files whose contents are kept (they describe the backup), up to this size each.
pub const KEPT_FILES: [&str; 7] = [
    "xtrabackup_checkpoints",
    "xtrabackup_binlog_info",
    "mariadb_backup_binlog_info",
    "xtrabackup_galera_info",
    "mariadb_backup_galera_info",
    "xtrabackup_info",
    "mariadb_backup_info",
];
const KEPT_MAX: usize = 1 << 20;

/// What every entry of an xbstream gets: xbstream carries no owners, modes or times.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub mtime: i64,
}

#[derive(Debug, Default)]
struct FileState {
    /// Where the next chunk must start.
    next: u64,
    done: bool,
}

struct Shared<R> {
    reader: XbReader<R>,
    /// A chunk header read ahead (the first of another file's run).
    pending: Option<ChunkHead>,
    files: HashMap<Vec<u8>, FileState>,
    kept: BTreeMap<String, Vec<u8>>,
    /// Bytes of file data read.
    bytes: u64,
}

impl<R: Read> Shared<R> {
    fn next_head(&mut self) -> Result<Option<ChunkHead>, XbError> {
        match self.pending.take() {
            Some(h) => Ok(Some(h)),
            None => self.reader.next_head(),
        }
    }
}

/// The entries of an xbstream.
pub struct XbstreamSource<R> {
    shared: Arc<Mutex<Shared<R>>>,
    defaults: Defaults,
    ready: VecDeque<SourceItem>,
    dirs: HashSet<Vec<u8>>,
    root_done: bool,
}

impl<R> std::fmt::Debug for XbstreamSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XbstreamSource").finish_non_exhaustive()
    }
}

fn xb_err(e: XbError) -> ImageError {
    ImageError::Source(e.to_string())
}

/// Reads an xbstream and describes it, after the fact.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub files: u64,
    pub bytes: u64,
    /// The kept metadata files, by name.
    pub kept: BTreeMap<String, Vec<u8>>,
}

impl<R: Read + Send + 'static> XbstreamSource<R> {
    pub fn new(input: R, defaults: Defaults) -> Self {
        let shared = Shared {
            reader: XbReader::new(input),
            pending: None,
            files: HashMap::new(),
            kept: BTreeMap::new(),
            bytes: 0,
        };
        Self {
            shared: Arc::new(Mutex::new(shared)),
            defaults,
            ready: VecDeque::new(),
            dirs: HashSet::new(),
            root_done: false,
        }
    }

    /// What the stream held; call once the image is written.
    pub fn summary(&self) -> StreamSummary {
        let s = self.shared.lock().expect("lock");
        StreamSummary { files: s.files.len() as u64, bytes: s.bytes, kept: s.kept.clone() }
    }

    fn meta(&self, kind: EntryKind, path: Vec<u8>, continues: bool, size: u64) -> EntryMeta {
        let d = &self.defaults;
        EntryMeta {
            kind,
            continues,
            mode: if kind == EntryKind::Dir { 0o750 } else { 0o640 },
            uid: d.uid,
            gid: d.gid,
            mtime_sec: d.mtime,
            mtime_nsec: 0,
            size,
            path,
            target: vec![],
            uname: d.uname.clone(),
            gname: d.gname.clone(),
        }
    }

    /// Directory entries for the parents of `path` not seen yet, outermost first.
    fn parents(&mut self, path: &[u8]) {
        for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let dir = path[..i].to_vec();
            if self.dirs.insert(dir.clone()) {
                let meta = self.meta(EntryKind::Dir, dir, false, 0);
                self.ready.push_back(SourceItem { meta, data: None, source: None, opened: None });
            }
        }
    }

    fn part(&self, head: ChunkHead, start: u64, path: Vec<u8>) -> Box<dyn ChunkReader> {
        let keep = KEPT_FILES.iter().any(|k| path == k.as_bytes());
        Box::new(Part {
            shared: Arc::clone(&self.shared),
            path,
            keep,
            pos: start,
            head: Some(head),
            map_at: 0,
            data_left: 0,
            paused: false,
        })
    }
}

impl<R: Read + Send + 'static> EntrySource for XbstreamSource<R> {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        if !self.root_done {
            self.root_done = true;
            return Ok(Some(SourceItem {
                meta: self.meta(EntryKind::Dir, Vec::new(), false, 0),
                data: None,
                source: None,
                opened: None,
            }));
        }
        if let Some(item) = self.ready.pop_front() {
            return Ok(Some(item));
        }
        let head = {
            let mut s = self.shared.lock().expect("lock");
            match s.next_head().map_err(xb_err)? {
                Some(h) => h,
                None => {
                    if let Some((path, _)) = s.files.iter().find(|(_, f)| !f.done) {
                        return Err(ImageError::Source(format!(
                            "the xbstream ends before {} is complete: the backup was cut short",
                            String::from_utf8_lossy(path)
                        )));
                    }
                    return Ok(None);
                }
            }
        };
        let path = head.path.clone();
        coffer_format::entry::check_relative_path(&path)
            .map_err(|e| ImageError::Source(format!("xbstream path {:?} refused: {e}", head.path_lossy())))?;
        let (continues, start) = {
            let mut s = self.shared.lock().expect("lock");
            match s.files.get(&path) {
                Some(f) if f.done => {
                    return Err(xb_err(XbError::Invalid {
                        at: head.at,
                        detail: format!("{} continues after its end", head.path_lossy()),
                    }))
                }
                Some(f) => (true, f.next),
                None => {
                    s.files.insert(path.clone(), FileState::default());
                    (false, 0)
                }
            }
        };
        if head.kind != ChunkType::Eof && head.offset != start {
            return Err(xb_err(XbError::Invalid {
                at: head.at,
                detail: format!(
                    "{} chunk at offset {}, expected {start}: out of order",
                    head.path_lossy(),
                    head.offset
                ),
            }));
        }
        if !continues {
            self.parents(&path);
        }
        let data = self.part(head, start, path.clone());
        let meta = self.meta(EntryKind::File, path, continues, start);
        self.ready.push_back(SourceItem { meta, data: Some(data), source: None, opened: None });
        Ok(self.ready.pop_front())
    }
}

/// One run of chunks of one file: reads payload until a chunk of another file (a pause) or the
/// file's EOF chunk (its end).
struct Part<R> {
    shared: Arc<Mutex<Shared<R>>>,
    path: Vec<u8>,
    keep: bool,
    /// File offset of the next byte.
    pos: u64,
    /// The chunk being read, if any (its payload not finished, or an EOF chunk).
    head: Option<ChunkHead>,
    /// Sparse chunks: the next map entry, and data bytes left in the current one.
    map_at: usize,
    data_left: u32,
    paused: bool,
}

/// What follows the current chunk of a run (an EOF chunk becomes the current chunk).
enum Step {
    Chunk,
    Pause,
}

/// The largest file offset a stream may reach: a file's size is an `off_t`.
const MAX_FILE_END: u64 = i64::MAX as u64;

/// `pos` moved on by `by` bytes of `head`'s chunk, unless that passes the largest file size.
fn moved(pos: u64, by: u64, head: &ChunkHead) -> Result<u64, XbError> {
    pos.checked_add(by).filter(|&end| end <= MAX_FILE_END).ok_or_else(|| XbError::Invalid {
        at: head.at,
        detail: format!("{} reaches beyond the largest file size", head.path_lossy()),
    })
}

impl<R: Read + Send> Part<R> {
    fn advance(&mut self, s: &mut Shared<R>) -> Result<Step, XbError> {
        let Some(head) = s.next_head()? else {
            return Ok(Step::Pause);
        };
        if head.path != self.path {
            s.pending = Some(head);
            return Ok(Step::Pause);
        }
        if head.kind != ChunkType::Eof && head.offset != self.pos {
            return Err(XbError::Invalid {
                at: head.at,
                detail: format!(
                    "{} chunk at offset {}, expected {}: out of order",
                    head.path_lossy(),
                    head.offset,
                    self.pos
                ),
            });
        }
        self.head = Some(head);
        self.map_at = 0;
        self.data_left = 0;
        Ok(Step::Chunk)
    }

    /// The current chunk's payload is read: trailing holes of a sparse map move the position.
    fn chunk_done(&mut self) -> Result<(), XbError> {
        if let Some(head) = self.head.take() {
            let holes = head.sparse.get(self.map_at..).unwrap_or_default().iter().map(|&(skip, _)| u64::from(skip));
            for skip in holes {
                self.pos = moved(self.pos, skip, &head)?;
            }
        }
        Ok(())
    }

    /// Makes a chunk with payload left the current one; false when the run has ended (the
    /// file's EOF chunk, another file's chunk, the end of the stream).
    fn ensure_chunk(&mut self, s: &mut Shared<R>) -> Result<bool, XbError> {
        loop {
            if self.head.is_none() {
                if let Step::Pause = self.advance(s)? {
                    self.paused = true;
                    return Ok(false);
                }
            }
            let head = self.head.as_ref().expect("a current chunk");
            if head.kind == ChunkType::Eof {
                s.files.get_mut(&self.path).expect("known file").done = true;
                self.head = None;
                return Ok(false);
            }
            if s.reader.payload_left() > 0 {
                return Ok(true);
            }
            self.chunk_done()?;
        }
    }

    /// Fills `buf`; returns the bytes placed and whether the run ended. A full buffer looks
    /// ahead first, so that a run ending exactly there is marked last now, not by an empty chunk.
    /// A chunk holds at most [`MAX_SEGMENTS`] runs of data, the most an image's reader accepts:
    /// a sparse map with more runs than that (one per compressed page, with xtrabackup) goes
    /// on in the next chunk.
    fn fill(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<(usize, bool), XbError> {
        let shared = Arc::clone(&self.shared);
        let mut guard = shared.lock().expect("lock");
        let s = &mut *guard;
        let mut filled = 0;
        while self.ensure_chunk(s)? {
            if filled == buf.len() {
                return Ok((filled, false));
            }
            let head = self.head.as_ref().expect("a current chunk");
            let mut want = buf.len() - filled;
            let sparse = head.kind == ChunkType::Sparse;
            if sparse {
                while self.data_left == 0 {
                    // The map adds up to the payload (checked by the reader), so a chunk with
                    // payload left has a run left.
                    let &(skip, len) = head.sparse.get(self.map_at).ok_or_else(|| XbError::Invalid {
                        at: head.at,
                        detail: "sparse map ends before the payload".into(),
                    })?;
                    self.map_at += 1;
                    self.pos = moved(self.pos, u64::from(skip), head)?;
                    self.data_left = len;
                }
                want = want.min(self.data_left as usize);
            }
            let continues_last = segments.last().is_some_and(|last| last.end() == self.pos);
            if !continues_last && segments.len() >= MAX_SEGMENTS {
                // This chunk's range ends here, holes included; the next starts at this run.
                return Ok((filled, false));
            }
            let n = s.reader.read_payload(&mut buf[filled..filled + want])?;
            match segments.last_mut() {
                Some(last) if continues_last => last.len += n as u32,
                _ => segments.push(Segment { offset: self.pos, len: n as u32 }),
            }
            if sparse {
                self.data_left -= n as u32;
            }
            filled += n;
            self.pos = moved(self.pos, n as u64, head)?;
            s.bytes += n as u64;
            if s.reader.payload_left() == 0 {
                self.chunk_done()?;
            }
        }
        Ok((filled, true))
    }
}

impl<R: Read + Send> ChunkReader for Part<R> {
    fn next_chunk(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<Span, FsError> {
        segments.clear();
        let start = self.pos;
        let (len, last) = self.fill(buf, segments).map_err(|e| FsError::Io {
            op: "read",
            path: PathBuf::from(String::from_utf8_lossy(&self.path).into_owned()),
            source: std::io::Error::other(e.to_string()),
        })?;
        {
            let mut s = self.shared.lock().expect("lock");
            if let Some(state) = s.files.get_mut(&self.path) {
                state.next = self.pos;
            }
            if self.keep {
                let kept = s.kept.entry(String::from_utf8_lossy(&self.path).into_owned()).or_default();
                if kept.len() + len <= KEPT_MAX {
                    kept.extend_from_slice(&buf[..len]);
                }
            }
        }
        Ok(Span { range_start: start, range_end: self.pos, len, last })
    }

    fn paused(&self) -> bool {
        self.paused
    }
}
