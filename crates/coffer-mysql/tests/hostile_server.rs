//! coffer's MySQL client against a hostile server (or whoever sits on the path of a connection
//! without TLS): a fake server (`fake/mod.rs`) answers queries with results that never end or
//! inflate. The client must
//! stop with its one-line error before it has read more than its cap; the server stops by
//! itself after `limit` bytes, so that a client that does not stop (the code before issue 26)
//! fails the test instead of eating the machine's memory.

mod fake;

use coffer_mysql::client::{Client, ClientError, ResultCap};
use fake::*;
use std::thread::JoinHandle;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// The client's default cap (`ResultCap::DEFAULT`), spelled out so that the tests of floods
/// build against the client before it had caps (where they fail).
const DEFAULT_ROWS: u64 = 1_000_000;
const DEFAULT_BYTES: u64 = 128 * MIB;

/// What the socket's buffers, the client's reader and our writer may hold beyond what the client
/// read when it stopped (a Unix socket buffers about 200 KiB; loopback TCP, up to 32 MiB).
const IN_FLIGHT: u64 = MIB;

/// Connects to the fake server, runs `sql`, and gives its error and how the server's answer
/// went; the connection is dropped before the server is waited for.
fn run(at: Server, server: JoinHandle<Outcome>, sql: &str) -> (ClientError, Outcome) {
    let err = match Client::connect(&at.target, "u", b"pw", Duration::from_secs(20), None) {
        Ok(mut c) => c.query(sql).map(|rows| rows.len()).expect_err("the endless result was accepted"),
        Err(e) => e,
    };
    (err, server.join().unwrap())
}

#[track_caller]
fn assert_stopped_first(err: &ClientError, outcome: &Outcome, message: &str, within: u64) {
    eprintln!("{err}: the server wrote {} bytes", outcome.written);
    assert_eq!(err.to_string(), message, "{outcome:?}");
    assert!(!outcome.gave_up, "the server stopped first ({} bytes written); the client said: {err}", outcome.written);
    assert!(outcome.written <= within + IN_FLIGHT, "{} bytes written before the client stopped", outcome.written);
}

/// Endless rows such as SHOW BINARY LOGS gives: refused at the default cap's million rows, not
/// after the client has kept every row the server chose to send.
#[test]
fn endless_rows_are_refused_at_the_row_cap() {
    let row = b"\x0dbinlog.000001\x04\x31\x32\x33\x34".to_vec();
    let wire_per_row = 4 + row.len() as u64;
    let answer = move |_: &str| -> Answer { Box::new(head(vec![2], 2).chain(endless(5, row.clone()))) };
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 32 * MIB);
    let (err, outcome) = run(at, server, "SHOW BINARY LOGS");
    let message = "the server sent more than 1000000 rows for SHOW BINARY LOGS; refusing";
    assert_stopped_first(&err, &outcome, message, DEFAULT_ROWS * wire_per_row);
}

/// Rows of 4096 NULLs, 4 KiB on the wire, 96 KiB as cells: refused by what they become
/// (128 MiB), within about 5.5 MB read.
#[test]
fn a_null_flood_is_refused_by_what_it_becomes() {
    let answer = |_: &str| -> Answer { Box::new(head(vec![0xfc, 0, 0x10], 4096).chain(endless(1, vec![0xfb; 4096]))) };
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 10 * MIB);
    let (err, outcome) = run(at, server, "SELECT * FROM wide");
    let cells = DEFAULT_BYTES / std::mem::size_of::<Option<String>>() as u64;
    assert_stopped_first(&err, &outcome, "the server sent more than 128 MiB for SELECT * FROM wide; refusing", cells);
}

/// A column count of 2^40 and column definitions that never end: refused at the count.
#[test]
fn a_column_count_bomb_is_refused_at_once() {
    let def = b"\x03def\0\0\0\x01c\0\x0c\x2d\0\0\0\0\0\xfd\0\0\0\0\0".to_vec();
    let answer = move |_: &str| -> Answer {
        let count = packet(1, &[0xfe, 0, 0, 0, 0, 0, 1, 0, 0]);
        Box::new(std::iter::once(count).chain(endless(2, def.clone())))
    };
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 16 * MIB);
    let (err, outcome) = run(at, server, "SELECT 1");
    assert_stopped_first(&err, &outcome, "the server sent more than 4096 columns for SELECT 1; refusing", 0);
}

/// A row whose packet never ends (16 MiB pieces, each saying another follows): refused when its
/// pieces would pass the cap, not at the protocol's 1 GiB.
#[test]
fn a_packet_that_never_ends_is_refused_at_the_cap() {
    let answer = |_: &str| -> Answer {
        let piece = (0u64..).map(|i| {
            let mut p = packet(3u8.wrapping_add(i as u8), &[]);
            p[..3].copy_from_slice(&[0xff; 3]);
            p.extend(std::iter::repeat_n(if i == 0 { 0xfc } else { b'x' }, 0xff_ffff));
            p
        });
        Box::new(head(vec![1], 1).chain(piece))
    };
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 144 * MIB);
    let (err, outcome) = run(at, server, "SELECT v FROM t");
    let cap = DEFAULT_BYTES;
    assert_stopped_first(&err, &outcome, "the server sent more than 128 MiB for SELECT v FROM t; refusing", cap);
}

/// A greeting that never ends: refused at 64 KiB, not read up to 1 GiB.
#[test]
fn an_endless_greeting_is_refused() {
    let greet: Answer = Box::new((0u8..).map(|i| {
        let mut p = packet(i, &[]);
        p[..3].copy_from_slice(&[0xff; 3]);
        p.extend(std::iter::repeat_n(10, 0xff_ffff));
        p
    }));
    let (at, server) = fake_server(greet, |_: &str| -> Answer { Box::new(std::iter::empty()) }, 16 * MIB);
    let (err, outcome) = run(at, server, "SELECT 1");
    assert_stopped_first(&err, &outcome, "the server sent more than 64 KiB for a packet of the handshake; refusing", 0);
}

/// A query that returns a row or a few, capped as such: refused at the 101st row, and the
/// connection (the rest of that result still on its way) refused after it, at once.
#[test]
fn a_tight_cap_and_a_connection_left_mid_result() {
    let answer = |sql: &str| -> Answer {
        match sql {
            "SELECT 1" => Box::new(head(vec![1], 1).chain([packet(3, b"\x011"), packet(4, b"\xfe\0\0\x02\0")])),
            _ => Box::new(head(vec![1], 1).chain(endless(3, b"\x011".to_vec()))),
        }
    };
    assert_eq!(ResultCap::DEFAULT, ResultCap { rows: DEFAULT_ROWS as usize, bytes: DEFAULT_BYTES as usize });
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 16 * MIB);
    let mut c = Client::connect(&at.target, "u", b"pw", Duration::from_secs(20), None).unwrap();
    assert_eq!(c.query_capped("SELECT 1", ResultCap::FEW).unwrap(), [vec![Some("1".to_owned())]]);
    let err = c.query_capped("SELECT @@hostname", ResultCap::FEW).unwrap_err();
    assert_eq!(err.to_string(), "the server sent more than 100 rows for SELECT @@hostname; refusing");
    let err = c.query("SELECT 1").unwrap_err();
    assert!(matches!(err, ClientError::Broken(_)), "{err}");
    assert!(err.to_string().contains("100 rows") && !err.to_string().contains('\n'), "{err}");
    drop(c);
    let outcome = server.join().unwrap();
    assert!(!outcome.gave_up, "{outcome:?}");
}
