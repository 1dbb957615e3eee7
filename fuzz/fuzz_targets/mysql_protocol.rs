//! What a MySQL/MariaDB server (or anything that answers on its port) sends coffer's
//! replication client: the handshake, binary log event headers, and the answers to queries
//! (result sets, read by the client's own reader with its caps, once or with rows that never
//! end); and the names of binary log segments that anyone who can write to the bucket chooses;
//! a segment's events as recovery walks them. Nothing may panic.
//!
//! The first 4 bytes say how the rest is read as an answer: byte 0 the way (bits 0-1: raw bytes
//! once, raw bytes whose tail repeats forever, a result built from the bytes once, one whose
//! rows repeat forever; bits 2-4 all set: the client's cap for a few rows, 1 MiB, whose floods
//! are slow to read; else a cap of byte 1 rows and 64 times byte 2 + 1 bytes), byte 3
//! where the repeated tail starts. An answer must end (rows, or an error) before the reader has
//! taken more than its cap, and hold no more rows and cells than the cap allows.
#![no_main]

use coffer_mysql::client::{read_result, ClientError, EventHeader, Handshake, ResultCap, Row};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Handshake::parse(data) {
        assert!(h.scramble.len() <= data.len());
        let _ = coffer_mysql::client::native_password(b"pw", &h.scramble);
    }
    if let Ok(e) = EventHeader::parse(data) {
        assert_eq!(e.size as usize, data.len());
    }
    // A segment's events, walked as point-in-time recovery walks them.
    if let Ok(w) = coffer_mysql::events::walk("binlog.000001", 4, data) {
        assert!(w.events as usize <= data.len() / 19 && w.transactions <= w.events);
    }
    // Each event's statement, as the refusal of a one-session replay reads it.
    if let Ok(events) = coffer_mysql::events::events("binlog.000001", 4, data) {
        for e in &events {
            if let Some(q) = coffer_mysql::events::query_text(e) {
                assert!(q.len() <= e.bytes.len());
            }
            let _ = coffer_mysql::events::creates_temporary_table(e);
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = coffer_mysql::meta::is_binlog_file_name(name);
    }
    if let [way, rows, bytes, split, rest @ ..] = data {
        answer(*way, ResultCap { rows: usize::from(*rows), bytes: (usize::from(*bytes) + 1) * 64 }, *split, rest);
    }
});

/// Reads `bytes` as the answer to a query, as `way` says (see the top), and checks its bounds.
fn answer(way: u8, cap: ResultCap, split: u8, bytes: &[u8]) {
    let cap = if way & 0x1c == 0x1c { ResultCap::FEW } else { cap };
    let (head, tail) = match way & 3 {
        0 => (bytes.to_vec(), Vec::new()),
        1 => {
            let at = bytes.len() * usize::from(split) / 256;
            (bytes[..at].to_vec(), bytes[at..].to_vec())
        }
        2 => (result(bytes, false), Vec::new()),
        _ => {
            let whole = result(bytes, true);
            let at = whole.len() - rows_len(bytes);
            (whole[..at].to_vec(), whole[at..].to_vec())
        }
    };
    let mut r = Endless { head: &head, tail: &tail, at: 0, taken: 0 };
    let got = read_result(&mut r, &mut 0, "SELECT fuzz", cap);
    // What a refused answer took: the cap, and the header of the packet that would pass it.
    assert!(r.taken <= cap.bytes as u64 + 4, "{} bytes taken under a cap of {}", r.taken, cap.bytes);
    match got {
        Ok(rows) => {
            assert!(rows.len() <= cap.rows);
            assert!(memory(&rows) <= cap.bytes, "{} bytes of rows under a cap of {}", memory(&rows), cap.bytes);
        }
        Err(ClientError::TooLarge { limit, what }) => {
            assert!(what == "SELECT fuzz" && !limit.is_empty());
        }
        Err(_) => {}
    }
}

/// What rows take as the client counts them: each row and each cell its size, and the text.
fn memory(rows: &[Row]) -> usize {
    let cell = |c: &Option<String>| std::mem::size_of::<Option<String>>() + c.as_ref().map_or(0, String::len);
    rows.iter().map(|r| std::mem::size_of::<Row>() + r.iter().map(cell).sum::<usize>()).sum()
}

/// A result made of `bytes`: bytes 0-1 the column count (up to 4200: some beyond the 4096 a
/// server sends), then cells: a byte 0xfb is a NULL, any other byte `n` a text of `n % 32`
/// bytes taken from what follows; rows of that many cells, to the end of the bytes, then the
/// EOF (`endless`: none, the rows repeat).
fn result(bytes: &[u8], endless: bool) -> Vec<u8> {
    let columns = bytes.get(..2).map_or(1, |c| usize::from(u16::from_le_bytes([c[0], c[1]])) % 4201);
    let mut out = packet(1, &[0xfc, columns as u8, (columns >> 8) as u8]);
    for i in 0..columns {
        out.extend(packet(2u8.wrapping_add(i as u8), b"\x03def\0\0\0\x01c\0\x0c\x2d\0\0\0\0\0\xfd\0\0\0\0\0"));
    }
    out.extend(packet(0, b"\xfe\0\0\x02\0"));
    out.extend(rows(bytes.get(2..).unwrap_or_default(), columns));
    if !endless {
        out.extend(packet(0, b"\xfe\0\0\x02\0"));
    }
    out
}

fn rows_len(bytes: &[u8]) -> usize {
    let columns = bytes.get(..2).map_or(1, |c| usize::from(u16::from_le_bytes([c[0], c[1]])) % 4201);
    rows(bytes.get(2..).unwrap_or_default(), columns).len()
}

/// The row packets of `cells` (see [`result`]): as many whole rows of `columns` as there are.
fn rows(mut cells: &[u8], columns: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut row = Vec::new();
    let mut n = 0;
    while let [b, rest @ ..] = cells {
        if *b == 0xfb {
            row.push(0xfb);
            cells = rest;
        } else {
            let text = &rest[..rest.len().min(usize::from(*b % 32))];
            row.push(text.len() as u8);
            row.extend_from_slice(text);
            cells = &rest[text.len()..];
        }
        n += 1;
        if n == columns.max(1) {
            out.extend(packet(0, &row));
            row.clear();
            n = 0;
        }
    }
    out
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// `head`, then `tail` again and again (none: the end), counting what is taken.
struct Endless<'a> {
    head: &'a [u8],
    tail: &'a [u8],
    at: usize,
    taken: u64,
}

impl Read for Endless<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if !self.head.is_empty() {
            let n = buf.len().min(self.head.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head = &self.head[n..];
            n
        } else if self.tail.is_empty() {
            0
        } else {
            let n = buf.len().min(self.tail.len() - self.at);
            buf[..n].copy_from_slice(&self.tail[self.at..self.at + n]);
            self.at = (self.at + n) % self.tail.len();
            n
        };
        self.taken += n as u64;
        Ok(n)
    }
}
