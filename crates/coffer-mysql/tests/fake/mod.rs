//! A fake MySQL server for tests: a thread that speaks the protocol on a Unix socket (whose
//! small buffers hold little of what was written and not yet read), greets, accepts any
//! password, and answers each query with packets the test makes, counting what it writes.
//! Shared by coffer-mysql's tests and coffer-cli's (`#[path]`).
#![allow(dead_code)]

use coffer_mysql::client::Target;
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;

/// A packet of the protocol: 3-byte length, sequence number, payload.
pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// A protocol 10 greeting that offers `mysql_native_password` (and no TLS).
pub fn greeting() -> Vec<u8> {
    let caps: u32 = 1 | 1 << 9 | 1 << 13 | 1 << 15 | 1 << 19;
    let mut p = vec![10];
    p.extend_from_slice(b"10.11.99-MariaDB-hostile\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    p
}

fn read_packet(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    let mut p = vec![0; usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16];
    s.read_exact(&mut p)?;
    Ok(p)
}

/// How the fake server's answer went: the bytes it wrote, and whether it stopped because it
/// reached its limit (the client still reading) rather than because the client hung up.
#[derive(Debug)]
pub struct Outcome {
    pub written: u64,
    pub gave_up: bool,
}

/// An answer to a query: packets (from sequence number 1), one after another, until there are
/// no more or the client goes away.
pub type Answer = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// Writes packets, counting bytes, until `limit`.
struct Counted {
    out: BufWriter<UnixStream>,
    written: u64,
    limit: u64,
}

impl Counted {
    /// False once the client is gone or the limit is reached.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.written >= self.limit || self.out.write_all(bytes).is_err() {
            return false;
        }
        self.written += bytes.len() as u64;
        true
    }
}

/// A server on a Unix socket of its own directory that greets (`greet`: the greeting, or what it
/// sends first), accepts the client, and answers each query with what `answer` makes of its SQL;
/// it stops at `limit` bytes written.
pub fn fake_server(
    greet: Answer,
    answer: impl Fn(&str) -> Answer + Send + 'static,
    limit: u64,
) -> (Server, JoinHandle<Outcome>) {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("fake.sock")).unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut out = Counted { out: BufWriter::with_capacity(64 << 10, s.try_clone().unwrap()), written: 0, limit };
        let go = |out: &mut Counted, packets: Answer| {
            let all = packets.into_iter().all(|p| out.send(&p));
            all && out.out.flush().is_ok()
        };
        if !go(&mut out, greet)
            || read_packet(&mut s).is_err()
            || !go(&mut out, once(packet(2, &[0, 0, 0, 2, 0, 0, 0])))
        {
            return Outcome { written: out.written, gave_up: out.written >= limit };
        }
        while let Ok(command) = read_packet(&mut s) {
            let sql = String::from_utf8_lossy(command.get(1..).unwrap_or_default()).into_owned();
            if !go(&mut out, answer(&sql)) {
                break;
            }
        }
        Outcome { written: out.written, gave_up: out.written >= limit }
    });
    (Server { target: Target::Socket(dir.path().join("fake.sock")), _dir: dir }, handle)
}

/// Where the fake server listens.
pub struct Server {
    pub target: Target,
    _dir: tempfile::TempDir,
}

pub fn once(p: Vec<u8>) -> Answer {
    Box::new(std::iter::once(p))
}

/// A result's packets up to its rows: the column count (`count`, length-encoded), a column
/// definition for each of `columns`, the EOF.
pub fn head(count: Vec<u8>, columns: usize) -> impl Iterator<Item = Vec<u8>> {
    let def = b"\x03def\0\0\0\x01c\0\x0c\x2d\0\0\0\0\0\xfd\0\0\0\0\0".to_vec();
    let defs = (0..columns).map(move |i| packet(2u8.wrapping_add(i as u8), &def));
    std::iter::once(packet(1, &count))
        .chain(defs)
        .chain(std::iter::once(packet(2u8.wrapping_add(columns as u8), b"\xfe\0\0\x02\0")))
}

/// Rows made by `row` that never end.
pub fn endless(first_seq: u8, row: Vec<u8>) -> impl Iterator<Item = Vec<u8>> {
    (0u64..).map(move |i| packet(first_seq.wrapping_add(i as u8), &row))
}
