//! coffer's MySQL client facing a hostile server or a man in the middle (issue 26): the
//! archiver refuses a result that never ends in one line; with `--ssl-mode` a connection whose
//! greeting loses its TLS offer, or whose TLS request is answered in plaintext, is refused
//! before any byte of the user's name or password is sent; and an event larger than the
//! server's `max_allowed_packet` (which real servers send) is read.

mod common;
#[path = "../../coffer-mysql/tests/fake/mod.rs"]
mod fake;

use coffer_mysql::client::{native_password, Client, ClientError, Handshake, Target, Tls};
use coffer_net::tls::DbVerify;
use common::live::{binlog_options, free_port};
use common::mariadb::{self, Server};
use common::*;
use fake::{endless, fake_server, greeting, head, once, packet, Answer};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// `coffer binlog archive` against a server whose SHOW BINARY LOGS never ends: exit 1 and one
/// line, once the client's million rows are passed; not gigabytes later (the fake server gives up
/// at 48 MiB, about twice what a million such rows take on the wire).
#[test]
fn binlog_archive_refuses_an_endless_result_in_one_line() {
    let answer = |sql: &str| -> Answer {
        match sql {
            "SHOW BINARY LOGS" => {
                Box::new(head(vec![2], 2).chain(endless(5, b"\x0dbinlog.000001\x04\x31\x32\x33\x34".to_vec())))
            }
            _ => Box::new(head(vec![2], 2).chain([packet(5, b"\x04host\x011"), packet(6, b"\xfe\0\0\x02\0")])),
        }
    };
    let (at, server) = fake_server(once(packet(0, &greeting())), answer, 48 * MIB);
    let Target::Socket(socket) = &at.target else { unreachable!() };
    let fx = Fixture::new();
    fx.write_secret("pw", "pw\n");
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    let prefix = format!("file://{}/", fx.path("arch").display());
    let socket = socket.to_str().unwrap();
    let args = ["binlog", "archive", "-S", socket, "-u", "u", "--password-file", &fx.s("pw"), "-o", &prefix];
    let (code, _, err) = run(&[&args[..], &["--key-file", &fx.key()]].concat());
    let outcome = server.join().unwrap();
    assert!(!outcome.gave_up, "the fake server gave up first ({} bytes written): {err}", outcome.written);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "coffer: error: cannot list the server's binary logs: \
         the server sent more than 1000000 rows for SHOW BINARY LOGS; refusing"
    );
}

/// What a man in the middle does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mitm {
    /// Passes every byte (the proxy works).
    Pass,
    /// Clears the TLS offer (CLIENT_SSL) in the server's greeting.
    StripTls,
    /// Answers the client's TLS request with a plaintext OK instead of a TLS handshake.
    PlainOk,
}

/// What the client sent through the man in the middle, and the greeting it saw.
#[derive(Default)]
struct Heard {
    sent: Vec<u8>,
    greeting: Vec<u8>,
}

/// A man in the middle on a loopback port, in front of the server on `server_port`.
fn mitm(server_port: u16, how: Mitm) -> (u16, Arc<Mutex<Heard>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Heard::default()));
    let h = heard.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let h = h.clone();
            std::thread::spawn(move || relay(client, server_port, how, &h));
        }
    });
    (port, heard)
}

fn read_raw_packet(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut p = vec![0u8; 4];
    s.read_exact(&mut p)?;
    let len = usize::from(p[0]) | usize::from(p[1]) << 8 | usize::from(p[2]) << 16;
    p.resize(4 + len, 0);
    s.read_exact(&mut p[4..])?;
    Ok(p)
}

fn relay(mut client: TcpStream, server_port: u16, how: Mitm, heard: &Mutex<Heard>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", server_port)) else { return };
    let Ok(mut greeting) = read_raw_packet(&mut server) else { return };
    if how == Mitm::StripTls {
        // The capabilities' low half follows the version (NUL-ended), thread id, 8 bytes of
        // scramble and a filler; CLIENT_SSL is its bit 11.
        let version_end = 5 + greeting[5..].iter().position(|b| *b == 0).unwrap();
        greeting[version_end + 1 + 4 + 8 + 1 + 1] &= !0x08;
    }
    heard.lock().unwrap().greeting = greeting[4..].to_vec();
    if client.write_all(&greeting).is_err() {
        return;
    }
    if how == Mitm::PlainOk {
        let Ok(request) = read_raw_packet(&mut client) else { return };
        heard.lock().unwrap().sent.extend_from_slice(&request);
        let _ = client.write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0]));
    }
    let (Ok(mut down_from), Ok(mut down_to)) = (server.try_clone(), client.try_clone()) else { return };
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = std::io::copy(&mut down_from, &mut down_to);
            let _ = down_to.shutdown(Shutdown::Both);
        });
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = client.read(&mut buf) {
            heard.lock().unwrap().sent.extend_from_slice(&buf[..n]);
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Both);
    });
}

const USER: &str = "coffer_mitm_user";
const PASSWORD: &str = "mitm-s3cret-pw";

/// Nothing of the user's name or password (nor the answer to the greeting's scramble) in `sent`.
#[track_caller]
fn assert_no_credentials(heard: &Heard, what: &str) {
    let contains = |needle: &[u8]| heard.sent.windows(needle.len()).any(|w| w == needle);
    let scramble = Handshake::parse(&heard.greeting).unwrap().scramble;
    let answer = native_password(PASSWORD.as_bytes(), &scramble);
    assert!(!contains(USER.as_bytes()), "{what}: the user's name was sent");
    assert!(!contains(PASSWORD.as_bytes()), "{what}: the password was sent");
    assert!(!contains(&answer), "{what}: the password's answer was sent");
}

/// With each `--ssl-mode`, a man in the middle who removes the server's TLS offer, or answers
/// the client's TLS request with a plaintext OK, gets a refusal (one line, exit 1) and no byte
/// of the credentials: the client never falls back to plaintext. (Without such a man in the
/// middle, the same proxy carries a TLS connection.) The server accepts plaintext connections,
/// so a client that fell back would log in.
#[test]
fn ssl_modes_refuse_a_downgrade_before_sending_credentials() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "db"]);
    let port = free_port();
    let mut opts = binlog_options(port, &[]);
    opts.extend([
        format!("--ssl-ca={}", fx.s("pki/ca.crt")),
        format!("--ssl-cert={}", fx.s("pki/db.crt")),
        format!("--ssl-key={}", fx.s("pki/db.key")),
    ]);
    let server = Server::start(&fx.path("src"), &opts);
    server.sql(&format!(
        "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{USER}'@'127.0.0.1';"
    ));
    let ca = fx.path("pki/ca.crt");
    let modes = [("REQUIRED", DbVerify::None), ("VERIFY_CA", DbVerify::Ca), ("VERIFY_IDENTITY", DbVerify::Identity)];
    let tls = |verify| Tls {
        config: coffer_net::tls::db_client_config(verify, Some(ca.as_path()), None).unwrap(),
        host: "127.0.0.1".into(),
    };
    let connect = |port: u16, verify| {
        let target = Target::Tcp { host: "127.0.0.1".into(), port };
        Client::connect(&target, USER, PASSWORD.as_bytes(), Duration::from_secs(10), Some(&tls(verify)))
    };

    for (mode, verify) in modes {
        let (proxy, heard) = mitm(port, Mitm::Pass);
        let mut c = connect(proxy, verify).unwrap_or_else(|e| panic!("{mode} through a faithful proxy: {e}"));
        assert_eq!(c.query("SELECT 1").unwrap(), [vec![Some("1".to_owned())]]);
        drop(c);
        assert_no_credentials(&heard.lock().unwrap(), mode);

        for how in [Mitm::StripTls, Mitm::PlainOk] {
            let (proxy, heard) = mitm(port, how);
            let Err(err) = connect(proxy, verify) else { panic!("{mode}, {how:?}: logged in without TLS") };
            assert!(matches!(err, ClientError::Tls(_)), "{mode}, {how:?}: {err}");
            let heard = heard.lock().unwrap();
            assert_no_credentials(&heard, &format!("{mode}, {how:?}"));
            if how == Mitm::StripTls {
                assert!(
                    heard.sent.is_empty(),
                    "{mode}: {} bytes sent to a server that offers no TLS",
                    heard.sent.len()
                );
            }
        }
    }

    // The archiver: the same refusal, in one line.
    fx.write_secret("pw", &format!("{PASSWORD}\n"));
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    let prefix = format!("file://{}/", fx.path("arch").display());
    let (pw, key, ca) = (fx.s("pw"), fx.key(), fx.s("pki/ca.crt"));
    for (mode, _) in modes {
        for how in [Mitm::StripTls, Mitm::PlainOk] {
            let (proxy, heard) = mitm(port, how);
            let proxy = proxy.to_string();
            let args = ["binlog", "archive", "-h", "127.0.0.1", "-P", &proxy, "-u", USER, "--password-file", &pw];
            let tls = ["--ssl-mode", mode, "--ssl-ca", &ca];
            let (code, _, err) = run(&[&args[..], &["-o", &prefix, "--key-file", &key], &tls[..]].concat());
            assert_eq!(code, 1, "{mode}, {how:?}: {err}");
            assert!(err.contains("TLS") && err.lines().count() == 1, "{mode}, {how:?}: {err}");
            assert_no_credentials(&heard.lock().unwrap(), &format!("coffer binlog archive {mode}, {how:?}"));
        }
    }
    // No mode lets coffer fall back to plaintext (MySQL's PREFERRED does): it is not one.
    let args = ["binlog", "archive", "-h", "127.0.0.1", "-u", USER, "--password-file", &pw, "-o", &prefix];
    let (code, _, err) = run(&[&args[..], &["--key-file", &key, "--ssl-mode", "PREFERRED"]].concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("PREFERRED"), "{err}");
}

/// A row event is larger than the `max_allowed_packet` of the session that wrote it (it holds
/// the row before and after an update, each up to that size), and a server's dump thread sends
/// it whole (it lifts its own limit to 1 GiB): the client reads events up to that ceiling, not
/// up to the server's `max_allowed_packet`.
#[test]
fn events_larger_than_max_allowed_packet_are_read() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let port = free_port();
    let opts = binlog_options(port, &["--max-allowed-packet=1M", "--binlog-format=ROW", "--binlog-row-image=FULL"]);
    let server = Server::start(&fx.path("src"), &opts);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, a LONGBLOB, b LONGBLOB); \
         INSERT INTO d.t VALUES (1, REPEAT('a', 900000), NULL); \
         UPDATE d.t SET b = REPEAT('b', 900000) WHERE id = 1;",
    );
    assert_eq!(server.sql("SELECT @@global.max_allowed_packet").trim(), "1048576");
    let target = Target::Socket(server.socket.clone());
    let mut c = Client::connect(&target, "root", b"", Duration::from_secs(10), None).unwrap();
    let dump = coffer_mysql::client::DUMP_NON_BLOCK | coffer_mysql::client::DUMP_SEND_ANNOTATE_ROWS;
    c.dump("binlog.000001", 4, 4244, dump, Duration::from_secs(1)).unwrap();
    let mut largest = 0;
    while let Some((h, e)) = c.next_event().unwrap() {
        largest = largest.max(e.len());
        assert_eq!(h.size as usize, e.len());
    }
    assert!(largest > 2 * 1048576, "the update's event is {largest} bytes");
}
