//! Writing large files without the page cache.
//!
//! Copying hundreds of MiB into the page cache is not free: on a VM each fresh page costs a
//! fault in the host, and the final flush must then write everything out while the CPU waits.
//! With `O_DIRECT` data goes from an aligned buffer straight to the disk as it is produced, and
//! the final flush has (almost) nothing left to do. File systems that refuse `O_DIRECT` (tmpfs
//! on older kernels, some network file systems) get ordinary buffered writes.

use crate::FsError;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

const ALIGN: usize = 4096;
const BLOCK: usize = 4 << 20;

/// Is `offset` on an O_DIRECT block boundary?
pub fn is_aligned(offset: u64) -> bool {
    offset.is_multiple_of(ALIGN as u64)
}

fn align_down(x: u64) -> u64 {
    x & !(ALIGN as u64 - 1)
}

/// Turns `O_DIRECT` on or off for an open file; false if the file system refuses.
pub fn set_direct(file: &File, on: bool) -> bool {
    let Ok(bits) = fcntl(file, FcntlArg::F_GETFL) else { return false };
    let mut flags = OFlag::from_bits_truncate(bits);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file, FcntlArg::F_SETFL(flags)).is_ok()
}

/// A 4 MiB buffer whose usable region is aligned for `O_DIRECT`.
struct Block {
    buf: Vec<u8>,
    start: usize,
}

impl Block {
    fn new() -> Self {
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Self { buf, start }
    }
    fn region(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + BLOCK]
    }
}

/// Work done in order after the blocks queued before it: completing a file (truncate, owner,
/// mode, times, rename) without making the caller wait for its last block. It is told whether
/// everything before it succeeded, so that after a failure it can clean up instead.
pub type Deferred = Box<dyn FnOnce(bool) -> Result<(), FsError> + Send>;

enum Msg {
    Write { file: Arc<File>, path: Arc<PathBuf>, at: u64, block: Block, len: usize },
    Run(Deferred),
    Barrier(SyncSender<Result<(), FsError>>),
}

/// Blocks staged while the previous ones are being written.
const IN_FLIGHT: usize = 4;

/// Writes full blocks on a background thread, so that `O_DIRECT` writes (which wait for the
/// disk) overlap with producing the next block, and runs deferred work in order with them.
/// The first error is kept and reported by [`BlockWriter::wait`]; after it, blocks are dropped
/// and deferred work is told to clean up.
struct BlockWriter {
    tx: Option<SyncSender<Msg>>,
    free: Receiver<Block>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set by the thread on its first error, so the caller stops early instead of producing
    /// (say) the rest of a large restore for a full disk.
    failed: Arc<AtomicBool>,
}

impl BlockWriter {
    fn new() -> Self {
        let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
        let (free_tx, free) = sync_channel::<Block>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            free_tx.send(Block::new()).expect("room for the blocks");
        }
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("coffer-write".into())
            .spawn(move || {
                let mut error: Option<FsError> = None;
                let mut failed = false;
                for msg in rx {
                    match msg {
                        Msg::Write { file, path, at, mut block, len } => {
                            if !failed {
                                if let Err(e) = write_block(&file, at, &block.region()[..len]) {
                                    error = Some(FsError::Io { op: "write", path: path.as_ref().clone(), source: e });
                                    failed = true;
                                    flag.store(true, Ordering::Release);
                                }
                            }
                            let _ = free_tx.send(block);
                        }
                        Msg::Run(work) => {
                            if let Err(e) = work(!failed) {
                                error.get_or_insert(e);
                                failed = true;
                                flag.store(true, Ordering::Release);
                            }
                        }
                        Msg::Barrier(reply) => {
                            let _ = reply.send(error.take().map_or(Ok(()), Err));
                            failed = false;
                            flag.store(false, Ordering::Release);
                        }
                    }
                }
            })
            .expect("spawn the block writer");
        Self { tx: Some(tx), free, thread: Some(thread), failed }
    }

    fn send(&self, msg: Msg) -> Result<(), FsError> {
        if self.failed.load(Ordering::Acquire) {
            self.wait()?;
        }
        self.tx.as_ref().expect("open").send(msg).map_err(|_| stopped())
    }

    /// Queues a block; returns a free block to fill next (waiting if all are in flight).
    fn submit(
        &self,
        file: &Arc<File>,
        path: &Arc<PathBuf>,
        at: u64,
        block: Block,
        len: usize,
    ) -> Result<Block, FsError> {
        self.send(Msg::Write { file: Arc::clone(file), path: Arc::clone(path), at, block, len })?;
        self.free.recv().map_err(|_| stopped())
    }

    /// Waits until everything queued is done; returns the first error since the last wait.
    fn wait(&self) -> Result<(), FsError> {
        let (reply_tx, reply) = sync_channel(1);
        self.tx.as_ref().expect("open").send(Msg::Barrier(reply_tx)).map_err(|_| stopped())?;
        reply.recv().map_err(|_| stopped())?
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> FsError {
    FsError::Io {
        op: "write",
        path: PathBuf::from("(background writer)"),
        source: std::io::Error::other("the writer thread stopped"),
    }
}

fn write_block(file: &File, at: u64, data: &[u8]) -> std::io::Result<()> {
    match file.write_all_at(data, at) {
        // Some file systems accept the flag but not the write: go through the page cache.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            set_direct(file, false);
            file.write_all_at(data, at)
        }
        other => other,
    }
}

/// Stages positional writes, which must come in increasing offset order, into aligned blocks,
/// written in the background.
///
/// A gap inside the block being filled is zero-filled (the block is allocated in the source
/// too: holes are whole blocks); a gap beyond it ends the block (padded with zeros) and starts
/// a new one, so holes of a block or more stay holes. The caller sets the final length with
/// `set_len` after [`AlignedStage::finish_then`], which may have written up to a block boundary.
pub struct AlignedStage {
    writer: BlockWriter,
    cur: Block,
    /// File offset of the first staged byte (aligned).
    base: u64,
    len: usize,
}

impl std::fmt::Debug for AlignedStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedStage").field("base", &self.base).field("len", &self.len).finish()
    }
}

impl Default for AlignedStage {
    fn default() -> Self {
        Self { writer: BlockWriter::new(), cur: Block::new(), base: 0, len: 0 }
    }
}

impl AlignedStage {
    /// Writes `data` at `offset` (through the stage); `path` names the file in errors.
    pub fn write_at(
        &mut self,
        file: &Arc<File>,
        path: &Arc<PathBuf>,
        mut offset: u64,
        mut data: &[u8],
    ) -> Result<(), FsError> {
        while !data.is_empty() {
            let end = self.base + self.len as u64;
            if self.len > 0 && offset >= end.next_multiple_of(ALIGN as u64) {
                self.flush(file, path)?;
            }
            if self.len == 0 {
                self.base = align_down(offset);
            }
            let at = (offset - self.base) as usize;
            let n = data.len().min(BLOCK - at);
            let region = self.cur.region();
            if at > self.len {
                region[self.len..at].fill(0);
            }
            region[at..at + n].copy_from_slice(&data[..n]);
            self.len = at + n;
            offset += n as u64;
            data = &data[n..];
            if self.len == BLOCK {
                self.flush(file, path)?;
            }
        }
        Ok(())
    }

    /// Queues the staged bytes, the last block padded with zeros, and empties the stage.
    fn flush(&mut self, file: &Arc<File>, path: &Arc<PathBuf>) -> Result<(), FsError> {
        let padded = self.len.next_multiple_of(ALIGN);
        self.cur.region()[self.len..padded].fill(0);
        let block = std::mem::replace(&mut self.cur, Block { buf: Vec::new(), start: 0 });
        self.cur = match self.writer.submit(file, path, self.base, block, padded) {
            Ok(next) => next,
            Err(e) => {
                self.cur = Block::new();
                return Err(e);
            }
        };
        self.base += padded as u64;
        self.len = 0;
        Ok(())
    }

    /// Forgets whatever is staged (the file it was for is abandoned).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Queues whatever is staged, then `then`, which runs once those writes are done (or, if
    /// anything queued before failed, is told to clean up). Does not wait.
    pub fn finish_then(&mut self, file: &Arc<File>, path: &Arc<PathBuf>, then: Deferred) -> Result<(), FsError> {
        if self.len > 0 {
            self.flush(file, path)?;
        }
        self.writer.send(Msg::Run(then))
    }

    /// Waits until everything queued is done; returns the first error since the last wait.
    pub fn wait(&mut self) -> Result<(), FsError> {
        self.writer.wait()
    }
}

/// A sequential writer (an image being written) that bypasses the page cache where it can.
#[derive(Debug)]
pub struct DirectWriter {
    file: Arc<File>,
    path: Arc<PathBuf>,
    stage: AlignedStage,
    pos: u64,
    direct: bool,
}

impl DirectWriter {
    /// Takes a file opened for writing at offset 0; `path` names it in errors.
    pub fn new(file: File, path: PathBuf) -> Self {
        let direct = set_direct(&file, true);
        Self { file: Arc::new(file), path: Arc::new(path), stage: AlignedStage::default(), pos: 0, direct }
    }

    /// True if writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes what is staged and returns the file, exactly as long as what was written.
    pub fn finish(mut self) -> Result<File, FsError> {
        if self.stage.len > 0 {
            self.stage.flush(&self.file, &self.path)?;
        }
        self.stage.wait()?;
        self.file.set_len(self.pos).map_err(crate::io_err("truncate", self.path.as_ref()))?;
        set_direct(&self.file, false);
        drop(self.stage);
        Ok(Arc::try_unwrap(self.file).expect("the block writer has let go of the file"))
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.direct {
            self.stage.write_at(&self.file, &self.path, self.pos, data).map_err(std::io::Error::other)?;
        } else {
            self.file.write_all_at(data, self.pos)?;
        }
        self.pos += data.len() as u64;
        Ok(data.len())
    }

    /// Data stays staged until a block is full or [`DirectWriter::finish`]: a partial block
    /// cannot be written directly without padding the file.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_exactly_what_it_was_given() {
        for len in [0usize, 1, 4095, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
            let path = dir.path().join("out");
            let mut w = DirectWriter::new(File::create(&path).unwrap(), path.clone());
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn positional_writes_keep_data_and_holes() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let path = dir.path().join("sparse");
        let file = Arc::new(File::options().write(true).create(true).truncate(true).open(&path).unwrap());
        set_direct(&file, true);
        let mut stage = AlignedStage::default();
        let name = Arc::new(path.clone());
        // Two runs in one block with a gap, a run far away, a run across a block boundary of
        // the stage, and an unaligned end.
        let writes: Vec<(u64, Vec<u8>)> = vec![
            (100, vec![1; 900]),
            (3000, vec![2; 50]),
            (64 << 20, vec![3; 10_000]),
            ((64 << 20) + BLOCK as u64 - 5, vec![4; 20]),
            ((100 << 20) + 7, vec![5; 3]),
        ];
        for (at, data) in &writes {
            stage.write_at(&file, &name, *at, data).unwrap();
        }
        let f2 = Arc::clone(&file);
        stage
            .finish_then(
                &file,
                &name,
                Box::new(move |ok| {
                    assert!(ok);
                    f2.set_len((100 << 20) + 10).map_err(crate::io_err("truncate", "x"))
                }),
            )
            .unwrap();
        stage.wait().unwrap();
        let size = (100 << 20) + 10;
        drop(file);
        let got = std::fs::read(&path).unwrap();
        let mut want = vec![0u8; size as usize];
        for (at, data) in &writes {
            want[*at as usize..*at as usize + data.len()].copy_from_slice(data);
        }
        assert!(got == want);
        let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(blocks < 16 << 20, "holes stayed holes: {blocks} bytes allocated");
    }
}
