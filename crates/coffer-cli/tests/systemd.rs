//! Running unattended: the systemd units of contrib/systemd pass `systemd-analyze verify`; the
//! binary log archiver tells systemd READY=1 once it streams, STATUS= lines (archiving,
//! reconnecting), WATCHDOG=1 while its loop runs (only when the watchdog is this process's) and
//! STOPPING=1 at a SIGTERM, which ends it with exit code 0; and its metrics (a file, and an HTTP
//! endpoint), read by the Prometheus project's own parser, say what the run did.

mod common;

use common::live::{binlog_options, free_port};
use common::mariadb::{self, Server};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The units, as contrib/systemd ships them.
const UNITS: &[&str] = &[
    "coffer-backup@.service",
    "coffer-backup@.timer",
    "coffer-drill@.service",
    "coffer-drill@.timer",
    "coffer-binlog@.service",
];
/// Where the units expect coffer.
const INSTALLED: &str = "/usr/local/bin/coffer";

/// CI (which sets COFFER_REQUIRE_MARIADB=1; scripts/test.sh installs what these tests use) turns
/// a missing tool into a failure; elsewhere the test is skipped, saying so.
fn missing(what: &str) -> bool {
    assert!(std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(), "{what} is required");
    eprintln!("skipped: {what} is not installed");
    true
}

fn contrib() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd")
}

/// Every unit, instantiated for a profile, passes `systemd-analyze verify` without a word:
/// with coffer where ExecStart= names it (verify checks that the program exists). And the
/// options its command lines give this build's commands are ones they take.
#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() && missing("systemd-analyze (systemd)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let coffer = env!("CARGO_BIN_EXE_coffer");
    let mut commands = Vec::new();
    for unit in UNITS {
        let text = std::fs::read_to_string(contrib().join(unit)).unwrap();
        if unit.ends_with(".service") {
            let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap_or_else(|| panic!("{unit}"));
            assert!(exec.starts_with(&format!("{INSTALLED} ")), "{unit}: {exec}");
            commands.push((unit, exec.to_owned()));
        }
        std::fs::write(dir.path().join(unit), text.replace(INSTALLED, coffer)).unwrap();
    }
    let instances: Vec<_> = UNITS.iter().map(|u| dir.path().join(u.replace("@.", "@prod."))).collect();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&instances).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {}\n{said}", out.status);
    // A verify that checks nothing would pass the above: a broken unit must fail it.
    let broken = dir.path().join("coffer-binlog@.service");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, text.replace("WatchdogSec=60", "WatchdogSec=sixty")).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&instances[4]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("coffer-binlog@.service:") && said.contains("sixty"), "{said}");

    // The options of each ExecStart= are the command's (those of commands this build has).
    for (unit, exec) in commands {
        let words: Vec<&str> = exec.split_whitespace().skip(1).collect();
        let sub: Vec<&str> = words.iter().take_while(|w| !w.starts_with('-')).copied().collect();
        let help = run(&[sub.as_slice(), &["--help"]].concat());
        if help.0 != 0 {
            eprintln!("{unit}: `coffer {}` is not in this build; its options are not checked", sub.join(" "));
            continue;
        }
        let help = String::from_utf8_lossy(&help.1).into_owned();
        for option in words.iter().filter(|w| w.starts_with("--") && **w != "--profile") {
            assert!(help.contains(&format!("{option} ")), "{unit}: coffer {} has no {option}", sub.join(" "));
        }
    }
}

/// A server with the binary log on, on a loopback port, with a replication user `repl`
/// (password in the fixture's file `pw`).
fn binlog_server(fx: &Fixture) -> (Server, u16) {
    let port = free_port();
    let server = Server::start(&fx.path("src"), &binlog_options(port, &["--binlog-format=ROW"]));
    server.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'127.0.0.1'; \
         CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t SELECT seq, REPEAT('x', 300) FROM d.seq_1_to_200;",
    );
    fx.write_secret("pw", "repl-pw\n");
    (server, port)
}

/// `binlog archive` from the server on `port` into the fixture's `arch` prefix, and `more`.
fn archive_args(fx: &Fixture, port: u16, more: &[&str]) -> Vec<String> {
    let prefix = prefix(fx);
    let port = port.to_string();
    let base = ["binlog", "archive", "-h", "127.0.0.1", "-P", &port, "-u", "repl", "--password-file"];
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend([fx.s("pw"), "-o".into(), prefix, "--key-file".into(), fx.key()]);
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn prefix(fx: &Fixture) -> String {
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    format!("file://{}/", fx.path("arch").display())
}

/// coffer, with none of the settings these tests give it from the environment.
fn bare() -> Command {
    let mut c = coffer();
    for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "COFFER_PROFILE", "COFFER_CONFIG"] {
        c.env_remove(v);
    }
    c
}

/// A running archiver, its stderr collected.
struct Archiver {
    child: Child,
    lines: Arc<Mutex<String>>,
}

impl Archiver {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(String::new()));
        let (stderr, into) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut all = into.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Archiver { child, lines }
    }

    fn said(&self) -> String {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, as systemd stops a service; the exit code.
    fn terminate(&mut self) -> i32 {
        use nix::sys::signal::{kill, Signal};
        assert!(self.child.try_wait().unwrap().is_none(), "the archiver ended early:\n{}", self.said());
        kill(nix::unistd::Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM:\n{}", self.said());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to a minute, which no passing run comes near) until `done`, else fails with `what`
/// and the archiver's lines.
#[track_caller]
fn wait_until(what: &str, a: &Archiver, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within a minute; the archiver said:\n{}", a.said());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `binlog list --json`.
fn listed(prefix: &str) -> Vec<Value> {
    let (code, out, err) = run(&["binlog", "list", prefix, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_slice::<Value>(&out).unwrap().as_array().unwrap().clone()
}

fn master_status(server: &Server) -> (String, u64) {
    let status = server.sql("SHOW MASTER STATUS");
    let mut cols = status.split('\t');
    (cols.next().unwrap().to_owned(), cols.next().unwrap().trim().parse().unwrap())
}

/// The archive holds the server's binary log up to where it is now.
fn caught_up(server: &Server, prefix: &str) -> bool {
    let (file, position) = master_status(server);
    listed(prefix).last().is_some_and(|s| s["file"] == file.as_str() && s["end"] == position)
}

/// The notifications a socket received, with when.
#[derive(Clone)]
struct Notes(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notes {
    fn listen(socket: UnixDatagram) -> Self {
        let notes = Notes(Arc::new(Mutex::new(Vec::new())));
        let into = notes.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                into.0.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        });
        notes
    }

    /// Every line received (`KEY=VALUE`), in order, with when.
    fn lines(&self) -> Vec<(Instant, String)> {
        let all = self.0.lock().unwrap();
        all.iter().flat_map(|(t, m)| m.lines().map(|l| (*t, l.to_owned())).collect::<Vec<_>>()).collect()
    }

    fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|(_, l)| l == line)
    }

    fn statuses(&self) -> Vec<String> {
        self.lines().into_iter().filter_map(|(_, l)| l.strip_prefix("STATUS=").map(str::to_owned)).collect()
    }

    fn pings(&self) -> Vec<Instant> {
        self.lines().into_iter().filter(|(_, l)| l == "WATCHDOG=1").map(|(t, _)| t).collect()
    }

    fn shown(&self) -> String {
        self.lines().into_iter().map(|(_, l)| l + "\n").collect()
    }
}

/// The archiver under a notify socket, with a watchdog of 2 s: READY=1 once it streams (not
/// before), STATUS= lines that say the file and position it archives and, while the server is
/// down, that it reconnects and why; WATCHDOG=1 about every second all along, through the
/// reconnection too; STOPPING=1 at SIGTERM, after storing what it had, and exit code 0. Then,
/// with WATCHDOG_PID naming another process and an abstract socket: READY=1, and no WATCHDOG=1.
#[test]
fn the_archiver_tells_systemd_ready_status_watchdog_and_stopping() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let (mut server, port) = binlog_server(&fx);
    let prefix = prefix(&fx);
    let path = fx.path("notify.sock");
    let notes = Notes::listen(UnixDatagram::bind(&path).unwrap());

    let mut cmd = bare();
    cmd.args(archive_args(&fx, port, &["--follow", "--segment-time", "1"]))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "2000000");
    let mut archiver = Archiver::start(cmd);
    wait_until("READY=1", &archiver, || notes.has("READY=1"));
    let ready_at = notes.lines().iter().position(|(_, l)| l == "READY=1").unwrap();
    let before: Vec<String> = notes.lines()[..ready_at].iter().map(|(_, l)| l.clone()).collect();
    assert!(before.iter().all(|l| !l.starts_with("STATUS=archiving")), "{}", notes.shown());

    server.sql("INSERT INTO d.t VALUES (1000, 'while notifying'); UPDATE d.t SET v = 'u' WHERE id < 50;");
    wait_until("the archive catches up", &archiver, || caught_up(&server, &prefix));
    let (file, position) = master_status(&server);
    let archiving = format!("archiving {file}:{position}");
    wait_until("a STATUS with the position", &archiver, || notes.statuses().iter().any(|s| s.starts_with(&archiving)));
    let status = notes.statuses().into_iter().rev().find(|s| s.starts_with(&archiving)).unwrap();
    assert!(status.contains(", lag ") && status.contains(" stored"), "{status}");

    // The server goes away: the archiver reconnects, says so, and its loop is still alive.
    server.stop();
    wait_until("STATUS=reconnecting", &archiver, || notes.statuses().iter().any(|s| s.starts_with("reconnecting: ")));
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let pinged_down = notes.pings().iter().filter(|t| **t >= down).count();
    assert!(pinged_down >= 2, "WATCHDOG=1 while reconnecting: {pinged_down}\n{}", notes.shown());
    let server = Server::open(&fx.path("src"), &binlog_options(port, &["--binlog-format=ROW"]));
    server.sql("INSERT INTO d.t VALUES (2000, 'after the restart')");
    wait_until("the archive catches up after the restart", &archiver, || caught_up(&server, &prefix));
    assert_eq!(notes.lines().iter().filter(|(_, l)| l == "READY=1").count(), 1, "READY=1 once: {}", notes.shown());

    // Pings all along: due every second (half the watchdog's 2 s), and the loop wakes at least
    // that often (a loaded machine may delay one).
    let pings = notes.pings();
    assert!(pings.len() >= 5, "{}", notes.shown());
    let widest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < Duration::from_secs(3), "WATCHDOG=1 {widest:?} apart");

    assert_eq!(archiver.terminate(), 0, "{}", archiver.said());
    let last = notes.0.lock().unwrap().last().map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(last.starts_with("STOPPING=1\nSTATUS=stopped: "), "{}", notes.shown());
    assert!(archiver.said().contains("coffer: stopped; archived "), "{}", archiver.said());
    assert!(caught_up(&server, &prefix), "what was received is stored");

    // Another process is the one watched: no pings. An abstract socket works as a path does.
    let name = format!("coffer-test-{}", std::process::id());
    let abstract_socket = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&addr).unwrap()
    };
    let notes = Notes::listen(abstract_socket);
    let mut cmd = bare();
    cmd.args(archive_args(&fx, port, &["--follow"]))
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .env("WATCHDOG_USEC", "2000000")
        .env("WATCHDOG_PID", "1");
    let mut archiver = Archiver::start(cmd);
    wait_until("READY=1 on the abstract socket", &archiver, || notes.has("READY=1"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(archiver.terminate(), 0, "{}", archiver.said());
    assert!(notes.pings().is_empty() && notes.has("STOPPING=1"), "{}", notes.shown());
}

/// The values of `text`'s samples labelled `command="binlog-archive"`, by name; every family a
/// gauge with help.
fn archive_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (name, labels, value, kind, help) in parse_metrics(text) {
        assert_eq!(kind, "gauge", "{name}");
        assert!(!help.is_empty(), "{name} has no help");
        if labels.get("command").map(String::as_str) == Some("binlog-archive") {
            out.insert(name, value);
        }
    }
    out
}

/// One HTTP request; the status, the head, the body.
fn http(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), head.to_owned(), body.to_owned())
}

fn get(port: u16, path: &str) -> (u16, String, String) {
    http(port, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n").as_bytes())
}

/// Bytes of events in the segments listed.
fn events(prefix: &str) -> u64 {
    listed(prefix).iter().map(|s| s["end"].as_u64().unwrap() - s["start"].as_u64().unwrap()).sum()
}

/// Segments listed and the bytes they take.
fn stored(prefix: &str) -> (usize, u64) {
    let l = listed(prefix);
    (l.len(), l.iter().map(|s| s["bytes"].as_u64().unwrap()).sum())
}

/// --metrics-file after a run to the end of the log, and --metrics-file and --metrics-listen
/// of a follower, while it runs and after SIGTERM: the segments and bytes are those `binlog
/// list` shows, no gap, connected while it follows, the lag under two seconds once caught up
/// and idle, the run a success. The endpoint answers /metrics only, and reads no more than a
/// request's worth.
#[test]
fn metrics_file_and_endpoint_say_what_the_archiver_did() {
    if !mariadb::available() {
        return;
    }
    let has_parser = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_parser && missing("python3's prometheus_client (pip install prometheus-client)") {
        return;
    }
    let fx = Fixture::new();
    let (server, port) = binlog_server(&fx);
    let prefix = prefix(&fx);
    let file = fx.path("coffer.prom");
    let file_arg = file.to_str().unwrap();

    // To the end of the log, in small segments.
    let args = archive_args(&fx, port, &["--segment-size", "8K", "--metrics-file", file_arg]);
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    let (segments, bytes) = stored(&prefix);
    assert!(segments > 3, "{segments}");
    let m = archive_metrics(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(m["coffer_binlog_archive_segments"], segments as f64, "{m:?}");
    assert_eq!(m["coffer_bytes_written"], bytes as f64, "{m:?}");
    assert_eq!(m["coffer_binlog_archive_gaps"], 0.0);
    assert_eq!(m["coffer_binlog_archive_connected"], 0.0);
    assert_eq!(m["coffer_last_run_success"], 1.0);
    assert_eq!(m["coffer_bytes_read"], events(&prefix) as f64, "{m:?}");
    assert!(m["coffer_binlog_archive_lag_seconds"] >= 0.0, "{m:?}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last = m["coffer_binlog_archive_last_segment_timestamp_seconds"];
    assert!(last <= now && last > now - 60.0, "{last} {now}");

    // Following, with the endpoint.
    let listen = free_port();
    let mut cmd = bare();
    cmd.args(archive_args(&fx, port, &["--follow", "--segment-time", "1", "--metrics-file", file_arg]))
        .args(["--metrics-listen", &format!("127.0.0.1:{listen}")]);
    let archiver = Archiver::start(cmd);
    await_listener(listen, "the metrics endpoint", Duration::from_secs(30));
    for i in 0..5 {
        server
            .sql(&format!("INSERT INTO d.t VALUES ({}, REPEAT('y', 2000)); DELETE FROM d.t WHERE id = {i};", 500 + i));
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_until("the follower catches up", &archiver, || caught_up(&server, &prefix));
    let (all, all_bytes) = stored(&prefix);
    let (new, new_bytes) = (all - segments, all_bytes - bytes);
    assert!(new >= 1, "{new}");
    let mut seen = BTreeMap::new();
    wait_until("the endpoint says what is stored, caught up", &archiver, || {
        let (status, head, body) = get(listen, "/metrics");
        assert_eq!(status, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
        seen = archive_metrics(&body);
        seen["coffer_binlog_archive_segments"] == new as f64
            && seen["coffer_binlog_archive_connected"] == 1.0
            && seen.get("coffer_binlog_archive_lag_seconds").is_some_and(|l| *l < 2.0)
    });
    assert_eq!(seen["coffer_bytes_written"], new_bytes as f64, "{seen:?}");
    assert_eq!((seen["coffer_binlog_archive_gaps"], seen["coffer_last_run_success"]), (0.0, 1.0), "{seen:?}");
    // The file, written after each segment, says the same.
    let written = archive_metrics(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(written["coffer_binlog_archive_connected"], 1.0, "{written:?}");
    assert!(written["coffer_binlog_archive_segments"] >= 1.0, "{written:?}");

    // Anything but GET /metrics.
    let (status, _, body) = get(listen, "/");
    assert_eq!(status, 404, "{body}");
    assert_eq!(get(listen, "/metricsx").0, 404);
    assert_eq!(get(listen, "/metrics?x=1").0, 200);
    assert_eq!(http(listen, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let (status, _, _) = http(listen, huge.as_bytes());
    assert_eq!(status, 400, "a request larger than any GET is refused");
    // A client that says nothing holds it two seconds at most.
    let silent = std::net::TcpStream::connect(("127.0.0.1", listen)).unwrap();
    let asked = Instant::now();
    assert_eq!(get(listen, "/metrics").0, 200);
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
    drop(silent);

    let mut archiver = archiver;
    assert_eq!(archiver.terminate(), 0, "{}", archiver.said());
    let (all, all_bytes) = stored(&prefix);
    let m = archive_metrics(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(m["coffer_binlog_archive_segments"], (all - segments) as f64, "{m:?}");
    assert_eq!(m["coffer_bytes_written"], (all_bytes - bytes) as f64, "{m:?}");
    assert_eq!((m["coffer_binlog_archive_connected"], m["coffer_last_run_success"]), (0.0, 1.0), "{m:?}");
    assert!(!m.contains_key("coffer_last_failure_timestamp_seconds"), "a clean run and stop: {m:?}");
}

/// The value of `coffer_binlog_archive_segments` in the metrics file `path`, if it says one.
fn segments_in(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("coffer_binlog_archive_segments{command=\"binlog-archive\"} "))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Another process holds the metrics file's lock (and a lock on its directory, which an older
/// coffer took) while a follower archives: segments keep being stored and WATCHDOG=1 keeps
/// coming from the loop, the archiver says (once) that it cannot write the file, and writes it
/// again once the lock is free. Monitoring never stops the job it monitors (issue 26, item 7).
#[test]
fn a_held_metrics_lock_never_stops_the_archiver() {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::OpenOptionsExt;
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let (server, port) = binlog_server(&fx);
    let prefix = prefix(&fx);
    std::fs::create_dir(fx.path("prom")).unwrap();
    let file = fx.path("prom/coffer.prom");
    let notify = fx.path("notify.sock");
    let notes = Notes::listen(UnixDatagram::bind(&notify).unwrap());
    let mut cmd = bare();
    cmd.args(archive_args(&fx, port, &["--follow", "--segment-time", "1", "--metrics-file", file.to_str().unwrap()]))
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "2000000");
    let mut archiver = Archiver::start(cmd);
    wait_until("the metrics file", &archiver, || segments_in(&file).is_some());
    wait_until("the archive catches up", &archiver, || caught_up(&server, &prefix));

    let dir_lock = Flock::lock(std::fs::File::open(fx.path("prom")).unwrap(), FlockArg::LockExclusive).unwrap();
    let lock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(fx.path("prom/.coffer.prom.lock"))
        .unwrap();
    let file_lock = Flock::lock(lock_file, FlockArg::LockExclusive).unwrap();
    let held_at = Instant::now();
    let before = stored(&prefix).0;
    let deadline = held_at + Duration::from_secs(60);
    for i in 0.. {
        server.sql(&format!("INSERT INTO d.t VALUES ({}, 'while the lock is held')", 10_000 + i));
        let now = stored(&prefix).0;
        if now >= before + 3 && archiver.said().contains("cannot write the metrics file: cannot lock ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} segments stored (from {before}) in a minute while the metrics lock was held; the archiver said:\n{}",
            archiver.said()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut marks = vec![held_at];
    marks.extend(notes.pings().into_iter().filter(|t| *t >= held_at));
    marks.push(Instant::now());
    let widest = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < Duration::from_secs(3), "WATCHDOG=1 {widest:?} apart while the lock was held");
    let warned = archiver.said().matches("cannot write the metrics file").count();
    assert_eq!(warned, 1, "said once: {}", archiver.said());

    drop(file_lock);
    drop(dir_lock);
    server.sql("INSERT INTO d.t VALUES (20000, 'after the lock')");
    wait_until("the archive catches up", &archiver, || caught_up(&server, &prefix));
    let all = stored(&prefix).0 as f64;
    wait_until("the metrics file again", &archiver, || segments_in(&file) == Some(all));
    assert_eq!(archiver.terminate(), 0, "{}", archiver.said());
    assert_eq!(segments_in(&file), Some(stored(&prefix).0 as f64));
}

/// The value of the first sample of `name` in a metrics file's `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('{')?.rsplit_once(' ')?.1.parse().ok())
}

/// A follower stopped before it ever streams (a server that is not there, stopped by systemd's
/// start timeout, then again and again by Restart=) exits 0, as asked, but its metrics say the
/// run failed and give it no success time: otherwise a restart loop looks healthy.
#[test]
fn a_follower_stopped_before_it_streams_is_not_a_success() {
    let fx = Fixture::new();
    fx.write_secret("pw", "repl-pw\n");
    let file = fx.path("coffer.prom");
    let mut cmd = bare();
    cmd.args(archive_args(&fx, free_port(), &["--follow", "--metrics-file", file.to_str().unwrap()]));
    let mut archiver = Archiver::start(cmd);
    wait_until("the metrics file says it is not connected", &archiver, || {
        std::fs::read_to_string(&file).is_ok_and(|t| sample(&t, "coffer_last_run_success") == Some(0.0))
    });
    assert_eq!(archiver.terminate(), 0, "{}", archiver.said());
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(sample(&text, "coffer_last_run_success"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "coffer_binlog_archive_connected"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "coffer_last_success_timestamp_seconds"), None, "{text}");
    assert!(sample(&text, "coffer_last_failure_timestamp_seconds").is_some(), "{text}");
}
