//! One byte stream over several connections (`--streams N`): the sender cuts it into blocks sent
//! round-robin, each connection on its own thread (TLS on every core); the receiver reads every
//! connection on its own thread and puts the blocks back in order, holding a bounded number.
//!
//! ```text
//! block := seq u64 LE | len u32 LE | data[len]        len 0: this connection's last block
//! ```
//! Block k comes on connection k mod N, in order, and the receiver refuses any other. The stream
//! ends where the connection that would carry the next block has ended; a later block is a gap.
//! A connection waits for the reader before it reads a block 4·N or more past the next one, so
//! that at most 4·N blocks are held.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Which connections have sent their last block.
    done: Vec<bool>,
    ended: usize,
    error: Option<(io::ErrorKind, String)>,
}

/// Reads blocks from `N` streams and gives them back in order.
pub struct StripedReader<S> {
    shared: Arc<Shared>,
    streams: usize,
    cur: Vec<u8>,
    pos: usize,
    threads: Vec<JoinHandle<Option<S>>>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Set on the first error and at the end: connection threads stop at their next read.
    stop: AtomicBool,
}

impl<S> std::fmt::Debug for StripedReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripedReader").field("streams", &self.streams).finish_non_exhaustive()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A connection's stream, which stops at the next read once the reader has stopped (a peer that
/// trickles bytes does not keep its thread past the failure).
struct Watched<'a, S> {
    inner: &'a mut S,
    stop: &'a AtomicBool,
}

impl<S: Read> Read for Watched<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("the transfer stopped"));
        }
        self.inner.read(buf)
    }
}

/// Reads connection `i`'s blocks (of `n`) into `shared` until its last block: block k comes on
/// connection k mod n, in order, and is read only once it is less than 4·n past the next one.
fn read_blocks<S: Read>(s: &mut S, i: usize, n: usize, shared: &Shared) -> io::Result<()> {
    let ahead = 4 * n as u64;
    let mut s = Watched { inner: s, stop: &shared.stop };
    let mut expected = i as u64;
    loop {
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        let seq = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Ok(());
        }
        if len > BLOCK {
            return Err(invalid(format!("a block of {len} bytes")));
        }
        if seq != expected {
            return Err(invalid(format!(
                "block {seq} where block {expected} belongs (block k comes on connection k mod {n})"
            )));
        }
        expected += n as u64;
        // Room first, then the bytes: a block is held only once it is within the window.
        let mut data = {
            let mut st = shared.state.lock().expect("lock");
            while seq >= st.next + ahead && st.error.is_none() {
                st = shared.cv.wait(st).expect("lock");
            }
            if st.error.is_some() {
                return Err(io::Error::other("the transfer stopped"));
            }
            st.free.pop().unwrap_or_default()
        };
        data.resize(len, 0);
        s.read_exact(&mut data)?;
        shared.state.lock().expect("lock").blocks.insert(seq, data);
        shared.cv.notify_all();
    }
}

impl<S: Read + Send + 'static> StripedReader<S> {
    pub fn new(streams: Vec<S>) -> Self {
        let n = streams.len();
        let state = State { done: vec![false; n], ..State::default() };
        let shared = Arc::new(Shared { state: Mutex::new(state), cv: Condvar::new(), stop: AtomicBool::new(false) });
        let threads = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let result = read_blocks(&mut s, i, n, &shared);
                    let mut st = shared.state.lock().expect("lock");
                    match result {
                        Ok(()) => {
                            st.done[i] = true;
                            st.ended += 1;
                        }
                        Err(e) => {
                            st.error.get_or_insert((e.kind(), format!("connection {i}: {e}")));
                            shared.stop.store(true, Ordering::Relaxed);
                        }
                    }
                    shared.cv.notify_all();
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
            let mut st = self.shared.state.lock().expect("lock");
            st.error.get_or_insert((io::ErrorKind::Other, "finished".into()));
            self.shared.stop.store(true, Ordering::Relaxed);
            self.shared.cv.notify_all();
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
            let mut st = self.shared.state.lock().expect("lock");
            loop {
                let next = st.next;
                if let Some(b) = st.blocks.remove(&next) {
                    st.next += 1;
                    self.shared.cv.notify_all();
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
                let on = (next % self.streams as u64) as usize;
                if st.done[on] {
                    // The connection that carries the next block has ended: the stream ends
                    // here, unless a later block came (a gap).
                    if !st.blocks.is_empty() {
                        return Err(invalid(format!("block {next} never came (connection {on} ended before it)")));
                    }
                    if st.ended == self.streams {
                        return Ok(0);
                    }
                }
                st = self.shared.cv.wait(st).expect("lock");
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

    /// Writes raw blocks `(seq, len)` on `s`; `None` is a last block.
    fn raw(s: &mut UnixStream, blocks: &[Option<(u64, usize)>]) {
        for b in blocks {
            let (seq, len) = b.unwrap_or((u64::MAX, 0));
            let _ = s.write_all(&seq.to_le_bytes());
            let _ = s.write_all(&(len as u32).to_le_bytes());
            // (A block too large is refused on its header: its bytes would fill the socket.)
            let _ = s.write_all(&vec![7u8; if len > BLOCK { 0 } else { len }]);
        }
    }

    /// Reads what `blocks` (one list per connection) give, within 10 s; the connections stay
    /// open (silent) until the reader is done.
    fn read_raw(blocks: &[&[Option<(u64, usize)>]]) -> io::Result<usize> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for b in blocks {
            let (mut a, r) = UnixStream::pair().unwrap();
            // A thread blocked on a silent connection sees the stop once its read times out.
            r.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
            raw(&mut a, b);
            ours.push(a);
            theirs.push(r);
        }
        let n = blocks.len();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = StripedReader::new(theirs);
            let result = r.read_to_end(&mut Vec::new());
            let _ = tx.send((result, r.finish().map(|s| s.len())));
        });
        let (result, finished) = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the reader hung");
        drop(ours);
        assert_eq!(finished.unwrap(), n);
        result
    }

    #[test]
    fn blocks_out_of_place_are_refused_at_once() {
        let at_once = |blocks: &[&[Option<(u64, usize)>]], says: &str| {
            let started = std::time::Instant::now();
            let e = read_raw(blocks).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(started.elapsed().as_secs() < 5, "{e}");
        };
        // Far ahead on every connection: no connection waits for room forever. (Both connections
        // are refused here; either may be first.)
        at_once(&[&[Some((1000, 10))], &[Some((1001, 10))]], " belongs (block k comes on connection k mod 2)");
        at_once(&[&[Some((1, 10))], &[Some((0, 10))]], " belongs (block k comes on connection k mod 2)");
        at_once(&[&[Some((0, 10)), Some((0, 10))], &[]], "block 0 where block 2 belongs");
        at_once(&[&[Some((0, BLOCK + 1))], &[]], "a block of");
        // A gap: every connection ended, block 1 never came but block 2 did.
        at_once(&[&[Some((0, 10)), Some((2, 10)), None], &[None]], "block 1 never came");
        // Connection 1 ended early while connection 0 goes on: refused before the window fills.
        let many: Vec<_> = (0..20).map(|k| Some((2 * k, 10))).collect();
        at_once(&[&many, &[None]], "block 1 never came");
    }

    #[test]
    fn streams_end_on_any_connection() {
        // Three blocks over two connections: connection 1 ends first, having carried block 1.
        assert_eq!(read_raw(&[&[Some((0, 5)), Some((2, 5)), None], &[Some((1, 5)), None]]).unwrap(), 15);
        assert_eq!(read_raw(&[&[Some((0, 5)), None], &[None], &[None]]).unwrap(), 5);
        assert_eq!(read_raw(&[&[None], &[None]]).unwrap(), 0);
    }

    #[test]
    fn a_stopped_reader_does_not_wait_for_a_trickle() {
        let (mut a, r) = UnixStream::pair().unwrap();
        let (mut b, r2) = UnixStream::pair().unwrap();
        r2.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        raw(&mut a, &[Some((7, 10))]); // refused
        let trickle = std::thread::spawn(move || {
            raw(&mut b, &[]);
            let _ = b.write_all(&1u64.to_le_bytes());
            let _ = b.write_all(&(BLOCK as u32).to_le_bytes());
            // One byte at a time, each within the read timeout, for much longer than it.
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if b.write_all(&[1]).is_err() {
                    return true;
                }
            }
            false
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = StripedReader::new(vec![r, r2]);
            assert!(reader.read_to_end(&mut Vec::new()).is_err());
            let started = std::time::Instant::now();
            drop(reader.finish().unwrap());
            let _ = tx.send(started.elapsed());
        });
        let took = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("finish waits for the trickle");
        assert!(took.as_secs() < 3, "{took:?}");
        assert!(trickle.join().unwrap(), "the trickling connection was not dropped");
    }
}
