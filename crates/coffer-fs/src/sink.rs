//! Writing a large output file without the page cache.
//!
//! Copying hundreds of MiB into the page cache is not free: on a VM each fresh page costs a
//! fault in the host, and the final `fsync` must then write everything out while the CPU
//! waits. With `O_DIRECT` the output goes from an aligned buffer straight to the disk as it is
//! produced, and the final flush has (almost) nothing left to do. File systems that refuse
//! `O_DIRECT` (tmpfs, some network file systems) get ordinary buffered writes.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

const ALIGN: usize = 4096;
const BLOCK: usize = 4 << 20;

/// Buffers writes into aligned blocks and writes them with `O_DIRECT` where possible.
#[derive(Debug)]
pub struct DirectWriter {
    file: File,
    buf: Vec<u8>,
    /// Start of the aligned region within `buf`.
    start: usize,
    len: usize,
    offset: u64,
    direct: bool,
}

impl DirectWriter {
    /// Takes a file opened for writing at offset 0.
    pub fn new(file: File) -> Self {
        let direct = set_direct(&file, true);
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Self { file, buf, start, len: 0, offset: 0, direct }
    }

    /// True if writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    fn write_block(&mut self, len: usize) -> std::io::Result<()> {
        let block = &self.buf[self.start..self.start + len];
        match self.file.write_all_at(block, self.offset) {
            // Some file systems accept the flag but not the write: fall back to the page cache.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = false;
                set_direct(&self.file, false);
                self.file.write_all_at(block, self.offset)?;
            }
            other => other?,
        }
        self.offset += len as u64;
        Ok(())
    }

    /// Writes what is buffered and returns the file, exactly as long as what was written.
    pub fn finish(mut self) -> std::io::Result<File> {
        let tail = self.len;
        if tail > 0 {
            let padded = if self.direct { tail.div_ceil(ALIGN) * ALIGN } else { tail };
            self.buf[self.start + tail..self.start + padded].fill(0);
            self.write_block(padded)?;
            self.offset -= (padded - tail) as u64;
            if padded != tail {
                self.file.set_len(self.offset)?;
            }
        }
        if self.direct {
            set_direct(&self.file, false);
        }
        Ok(self.file)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(BLOCK - self.len);
        self.buf[self.start + self.len..self.start + self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == BLOCK {
            self.write_block(BLOCK)?;
            self.len = 0;
        }
        Ok(n)
    }

    /// Data stays buffered until a block is full or [`DirectWriter::finish`]: a partial block
    /// cannot be written directly without padding the file.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn set_direct(file: &File, on: bool) -> bool {
    let Ok(bits) = fcntl(file, FcntlArg::F_GETFL) else { return false };
    let mut flags = OFlag::from_bits_truncate(bits);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file, FcntlArg::F_SETFL(flags)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exactly_what_it_was_given() {
        for len in [0usize, 1, 4095, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
            let path = dir.path().join("out");
            let mut w = DirectWriter::new(File::create(&path).unwrap());
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "len {len}");
        }
    }
}
