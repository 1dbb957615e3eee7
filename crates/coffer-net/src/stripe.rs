//! One byte stream over several connections (`--streams N`): the sender cuts it into blocks sent
//! round-robin, each connection on its own thread (TLS on every core); the receiver reads every
//! connection on its own thread and puts the blocks back in order, holding a bounded number.
//!
//! ```text
//! block := seq u64 LE | len u32 LE | data[len]        len 0: this connection's last block
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

pub const BLOCK: usize = 1 << 20;

/// What a connection's thread is handed: a block (sequence number, bytes), or `None` to end.
type Message = Option<(u64, Vec<u8>)>;

fn stream_failed(i: usize, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(format!("connection {i}: {e}"))
}

/// Writes blocks round-robin over `N` streams.
pub struct StripedWriter<S> {
    buf: Vec<u8>,
    /// Blocks the connection threads have written, for reuse (fresh pages cost page faults).
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    seq: u64,
    senders: Vec<SyncSender<Message>>,
    threads: Vec<JoinHandle<io::Result<S>>>,
}

impl<S> std::fmt::Debug for StripedWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripedWriter").field("streams", &self.senders.len()).finish_non_exhaustive()
    }
}

impl<S: Write + Send + 'static> StripedWriter<S> {
    pub fn new(streams: Vec<S>) -> Self {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let free = Arc::new(Mutex::new(Vec::new()));
        for mut s in streams {
            let (tx, rx) = sync_channel::<Message>(2);
            senders.push(tx);
            let free = Arc::clone(&free);
            threads.push(std::thread::spawn(move || -> io::Result<S> {
                loop {
                    match rx.recv() {
                        Ok(Some((seq, mut data))) => {
                            s.write_all(&seq.to_le_bytes())?;
                            s.write_all(&(data.len() as u32).to_le_bytes())?;
                            s.write_all(&data)?;
                            data.clear();
                            free.lock().expect("lock").push(data);
                        }
                        Ok(None) => break,
                        // Dropped without finish (the sender failed): no last block, so the
                        // receiver sees a connection cut short, never a complete stream.
                        Err(_) => return Err(io::Error::other("abandoned")),
                    }
                }
                s.write_all(&u64::MAX.to_le_bytes())?;
                s.write_all(&0u32.to_le_bytes())?;
                s.flush()?;
                Ok(s)
            }));
        }
        Self { buf: Vec::with_capacity(BLOCK), free, seq: 0, senders, threads }
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let i = (self.seq % self.senders.len() as u64) as usize;
        let next = self.free.lock().expect("lock").pop().unwrap_or_else(|| Vec::with_capacity(BLOCK));
        let data = std::mem::replace(&mut self.buf, next);
        if self.senders[i].send(Some((self.seq, data))).is_err() {
            return Err(stream_failed(i, &"it stopped"));
        }
        self.seq += 1;
        Ok(())
    }

    /// Sends what is left and every connection's last block; returns the streams, in order.
    pub fn finish(mut self) -> io::Result<Vec<S>> {
        let sent = self.send_block();
        for tx in &self.senders {
            let _ = tx.send(None);
        }
        self.senders.clear();
        let mut streams = Vec::new();
        for (i, t) in self.threads.drain(..).enumerate() {
            match t.join() {
                Ok(Ok(s)) => streams.push(s),
                Ok(Err(e)) => return Err(io::Error::new(e.kind(), format!("connection {i}: {e}"))),
                Err(_) => return Err(stream_failed(i, &"its thread panicked")),
            }
        }
        sent.map(|()| streams)
    }
}

impl<S: Write + Send + 'static> Write for StripedWriter<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct State {
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Blocks already read, for reuse.
    free: Vec<Vec<u8>>,
    next: u64,
    ended: usize,
    error: Option<(io::ErrorKind, String)>,
}

/// Reads blocks from `N` streams and gives them back in order.
pub struct StripedReader<S> {
    shared: Arc<(Mutex<State>, Condvar)>,
    streams: usize,
    cur: Vec<u8>,
    pos: usize,
    threads: Vec<JoinHandle<Option<S>>>,
}

impl<S> std::fmt::Debug for StripedReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripedReader").field("streams", &self.streams).finish_non_exhaustive()
    }
}

impl<S: Read + Send + 'static> StripedReader<S> {
    pub fn new(streams: Vec<S>) -> Self {
        let n = streams.len();
        // Blocks held at most: a few per connection.
        let ahead = 4 * n as u64;
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let threads = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let result = (|| -> io::Result<()> {
                        loop {
                            let mut head = [0u8; 12];
                            s.read_exact(&mut head)?;
                            let seq = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
                            let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
                            if len == 0 {
                                return Ok(());
                            }
                            if len > BLOCK {
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("a block of {len} bytes"),
                                ));
                            }
                            let (lock, cv) = &*shared;
                            let mut data = lock.lock().expect("lock").free.pop().unwrap_or_default();
                            data.resize(len, 0);
                            s.read_exact(&mut data)?;
                            let mut st = lock.lock().expect("lock");
                            while seq >= st.next + ahead && st.error.is_none() {
                                st = cv.wait(st).expect("lock");
                            }
                            if seq < st.next || st.blocks.insert(seq, data).is_some() {
                                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("block {seq} twice")));
                            }
                            cv.notify_all();
                        }
                    })();
                    let (lock, cv) = &*shared;
                    let mut st = lock.lock().expect("lock");
                    match result {
                        Ok(()) => st.ended += 1,
                        Err(e) => {
                            st.error.get_or_insert((e.kind(), format!("connection {i}: {e}")));
                        }
                    }
                    cv.notify_all();
                    drop(st);
                    Some(s)
                })
            })
            .collect();
        Self { shared, streams: n, cur: Vec::new(), pos: 0, threads }
    }

    /// Waits for every connection's reader; returns the streams, in order.
    pub fn finish(self) -> io::Result<Vec<S>> {
        {
            let (lock, cv) = &*self.shared;
            let mut st = lock.lock().expect("lock");
            st.error.get_or_insert((io::ErrorKind::Other, "finished".into()));
            cv.notify_all();
        }
        self.threads
            .into_iter()
            .map(|t| t.join().ok().flatten().ok_or_else(|| io::Error::other("a connection's reader failed")))
            .collect()
    }
}

impl<S: Read + Send + 'static> Read for StripedReader<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            let (lock, cv) = &*self.shared;
            let mut st = lock.lock().expect("lock");
            loop {
                let next = st.next;
                if let Some(b) = st.blocks.remove(&next) {
                    st.next += 1;
                    cv.notify_all();
                    let used = std::mem::replace(&mut self.cur, b);
                    if used.capacity() > 0 {
                        st.free.push(used);
                    }
                    self.pos = 0;
                    break;
                }
                if let Some((kind, e)) = &st.error {
                    return Err(io::Error::new(*kind, e.clone()));
                }
                if st.ended == self.streams {
                    return Ok(0);
                }
                st = cv.wait(st).expect("lock");
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_come_back_in_order_over_any_number_of_streams() {
        for n in [1, 2, 4] {
            let (mut ends_w, mut ends_r) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let (a, b) = UnixStream::pair().unwrap();
                ends_w.push(a);
                ends_r.push(b);
            }
            let data: Vec<u8> = (0..(5 * BLOCK + 12345)).map(|i| (i * 31 % 251) as u8).collect();
            let expected = data.clone();
            let writer = std::thread::spawn(move || {
                let mut w = StripedWriter::new(ends_w);
                for piece in data.chunks(70_001) {
                    w.write_all(piece).unwrap();
                }
                w.finish().unwrap().len()
            });
            let mut r = StripedReader::new(std::mem::take(&mut ends_r));
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(writer.join().unwrap(), n);
            assert_eq!(got, expected, "{n} streams");
            assert_eq!(r.finish().unwrap().len(), n);
        }
    }

    #[test]
    fn a_connection_that_breaks_is_an_error_not_an_end() {
        let (a, b) = UnixStream::pair().unwrap();
        let (c, d) = UnixStream::pair().unwrap();
        let mut w = StripedWriter::new(vec![a, c]);
        w.write_all(&vec![1u8; 3 * BLOCK]).unwrap();
        drop(w); // no last blocks: the connections just close
        let mut r = StripedReader::new(vec![b, d]);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
    }
}
