//! Issue 28, part 1, the jobs that need a database server: `binlog archive` and `binlog fetch`
//! through a fault-injecting proxy in front of moto, the store out for longer than the retry
//! policy. A run to the log's end ends on one line; a run following the server holds the
//! segment it could not store and stores it once the store answers, even if the server purged
//! its file meanwhile. No segment is left that is not whole; the next run takes up where the
//! archive ends, with no gap, and the fetched files are the server's. Skipped without MariaDB
//! or moto_server.

mod common;

use common::live::*;
use common::mariadb::{self, Server};
use common::s3::S3;
use common::*;
use fault_proxy::{Fault, Kind, Proxy, Rule, When};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A short retry policy: an outage of a few seconds outlasts it.
const SHORT: [&str; 6] = ["--store-retries", "2", "--store-retry-timeout", "2", "--store-timeout", "2"];

/// A server with the binary log on and a user `repl` that may read it; two files of about a
/// megabyte each.
fn binlog_server(fx: &Fixture) -> Server {
    let server = Server::start(&fx.path("src"), &binlog_options(free_port(), &["--binlog-format=ROW"]));
    server.sql(
        "CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost'; \
         CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t SELECT seq, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000; FLUSH BINARY LOGS; \
         INSERT INTO d.t SELECT seq + 1000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000;",
    );
    fx.write_secret("repl-pw", "repl-pw\n");
    server
}

/// `coffer binlog archive` of `server` into `prefix` through `proxy`, with `more`.
fn archiver(
    s3: &S3,
    proxy: &Proxy,
    fx: &Fixture,
    server: &Server,
    prefix: &str,
    more: &[&str],
) -> std::process::Command {
    let (sock, pw, key) = (server.socket.display().to_string(), fx.s("repl-pw"), fx.key());
    let mut c = s3.through(proxy);
    c.args(["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", prefix])
        .args(["--key-file", &key, "--segment-size", "64K"])
        .args(SHORT)
        .args(more)
        .stdin(Stdio::null());
    c
}

fn run_cmd(mut c: std::process::Command) -> (i32, String) {
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The one `coffer: error:` line of `err`.
#[track_caller]
fn error_line(err: &str) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("coffer: error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    eprintln!("{}", lines[0]);
    lines[0].to_owned()
}

/// Every request of `kinds` from the next one on fails with `fault`.
fn outage(proxy: &Proxy, kinds: &[Kind], fault: Fault) {
    let mut rules = Vec::new();
    for kind in kinds {
        let from = proxy.seen(*kind) + 1;
        rules.extend((from..from + 2000).map(|n| Rule::new(&[*kind], fault, When::Nth(n))));
    }
    proxy.set_rules(rules);
}

/// Objects under `binlog/` that are neither segments nor the records beside them.
fn not_segments(s3: &S3) -> Vec<String> {
    let keys = s3.keys("bkt", "binlog/");
    keys.iter()
        .filter(|k| {
            let segment = k.ends_with(".coffer");
            let record = k.strip_suffix(".meta").is_some_and(|s| s.ends_with(".coffer") && keys.iter().any(|x| x == s));
            !segment && !record
        })
        .cloned()
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    n.sort();
    n
}

/// The server's binary log files and what a fetch wrote are the same (but for the active
/// file's "in use" flag, which the stream does not carry).
#[track_caller]
fn fetched_as_on_the_server(server: &Server, dir: &Path) {
    let logs: Vec<String> =
        server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    assert_eq!(names(dir), logs);
    for (i, name) in logs.iter().enumerate() {
        let (disk, got) = (std::fs::read(server.datadir.join(name)).unwrap(), std::fs::read(dir.join(name)).unwrap());
        assert_eq!(disk.len(), got.len(), "{name}");
        let differing = disk.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert!(differing == 0 || (i == logs.len() - 1 && differing == 1), "{name}: {differing} bytes differ");
    }
}

/// A following archiver through a store outage, then `binlog fetch` through one.
#[test]
fn binary_logs_archived_and_fetched_through_a_store_outage() {
    if !mariadb::available() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let server = binlog_server(&fx);
    let proxy = s3.proxy(9);
    let prefix = "s3://bkt/binlog/";
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &[]));
    assert_eq!(code, 0, "{err}");
    let stored = s3.keys("bkt", "binlog/").len();

    // To the log's end; the store refuses every write: the run ends on one line naming the
    // segment it could not store.
    outage(&proxy, &[Kind::Put, Kind::Part, Kind::Create, Kind::Complete], Fault::Status503);
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000;");
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &[]));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains("s3://bkt/binlog/") && line.contains("503"), "names the segment and the cause: {line}");
    assert!(proxy.injected(None, Some(Fault::Status503)) > 0, "{}", proxy.report());
    assert_eq!(not_segments(&s3), Vec::<String>::new(), "nothing half-stored");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "no upload left in progress");
    // The store answers again: the next run takes up where the archive ends, with no gap.
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(s3.keys("bkt", "binlog/").len() > stored);
    let out = s3.coffer().args(["binlog", "list", prefix]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !list.contains("gap"), "{list}");

    // A fetch through an outage of reads: one line, no binary log under its name; then whole.
    let (to, key) = (fx.s("logs"), fx.key());
    let mut fetch = vec!["binlog", "fetch", prefix, "--to-dir", &to, "--key-file", &key];
    fetch.extend(SHORT);
    let gets = proxy.seen(Kind::Get);
    let (code, err) = run_cmd({
        let mut c = s3.through(&proxy);
        c.args(&fetch);
        c
    });
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(fx.path("logs"));
    let half = (proxy.seen(Kind::Get) - gets) / 2;
    outage_after(&proxy, Kind::Get, Fault::Reset, half.max(1));
    let (code, err) = run_cmd({
        let mut c = s3.through(&proxy);
        c.args(&fetch);
        c
    });
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains("s3://bkt/binlog/"), "{line}");
    assert!(proxy.injected(Some(Kind::Get), Some(Fault::Reset)) > 0, "{}", proxy.report());
    let logs: Vec<String> =
        server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    let left = names(Path::new(&to));
    assert!(left.iter().all(|n| !logs.contains(n)), "no binary log under its name: {left:?}");
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd({
        let mut c = s3.through(&proxy);
        c.args(&fetch);
        c
    });
    assert_eq!(code, 0, "the same command completes: {err}");
    fetched_as_on_the_server(&server, Path::new(&to));
}

/// Every request of `kind` from the `after`-th next one on fails with `fault`.
fn outage_after(proxy: &Proxy, kind: Kind, fault: Fault, after: u64) {
    let from = proxy.seen(kind) + after;
    proxy.set_rules((from..from + 2000).map(|n| Rule::new(&[kind], fault, When::Nth(n))).collect());
}

/// Waits (at most `secs` seconds, then kills it) for `child` to exit; its output.
fn wait_exit(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {secs} s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A hot backup, the archive, a point-in-time restore and a drill, each through transient
/// faults of every kind (a few percent, and the 2nd request of each kind): exact results.
#[test]
fn a_point_in_time_restore_and_a_drill_through_transient_faults() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let port = free_port();
    let server = live::source(&fx, port, &["--binlog-format=ROW".into()]);
    server.sql(
        "CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost';",
    );
    fx.write_secret("repl-pw", "repl-pw\n");
    let proxy = s3.proxy(10);
    proxy.set_rules(vec![
        Rule::new(&[], Fault::Mix, When::Nth(2)),
        Rule::new(&[], Fault::Mix, When::Chance(0.04)),
        Rule::new(&[Kind::Get], Fault::Short, When::Chance(0.03)),
    ]);
    let run_ok = |args: &[&str]| {
        let out = s3.through(&proxy).args(args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "coffer {args:?}: {err}\nproxy: {}", proxy.report());
        err
    };
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let backup = live::backup_args(&fx, port, "s3://bkt/prod/");
    run_ok(&backup.iter().map(String::as_str).collect::<Vec<_>>());
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    // The target: nothing writes while it is read.
    let tables = live::tables(&server);
    let gtid = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let sums = live::checksums(&server, &tables);
    live::sysbench(&server, "run", &["--time=1"]).wait().unwrap();
    let (sock, pw, key) = (server.socket.display().to_string(), fx.s("repl-pw"), fx.key());
    let archive =
        ["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", "s3://bkt/prod/binlog/"];
    run_ok(&[&archive[..], &["--key-file", &key, "--segment-size", "256K"]].concat());
    let to = fx.s("r/data");
    let err = run_ok(&["restore", "s3://bkt/prod/", "--to", &to, "--until-gtid", &gtid, "--key-file", &key]);
    assert!(err.contains("replayed"), "{err}");
    let restored = Server::open(&fx.path("r"), &[]);
    assert_eq!(live::checksums(&restored, &tables), sums, "the state at the target");
    drop(restored);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(fx.path("drill")).unwrap();
        std::fs::set_permissions(fx.path("drill"), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let err = run_ok(&["drill", "s3://bkt/prod/", "--scratch", &fx.s("drill"), "--key-file", &key]);
    eprintln!("{err}\nproxy: {}", proxy.report());
    for kind in [Kind::Get, Kind::Head, Kind::Put, Kind::List] {
        assert!(proxy.injected(Some(kind), None) > 0, "no fault on {kind:?}: {}", proxy.report());
    }
}

/// The archive's end, from the segments' names: the file and the position.
fn archived_to(s3: &S3) -> Option<(String, u32)> {
    let mut ends: Vec<(String, u32, u32)> = s3
        .keys("bkt", "binlog/")
        .iter()
        .filter_map(|k| {
            let stem = k.strip_prefix("binlog/")?.strip_suffix(".coffer")?;
            let stem = stem.strip_suffix("-closed").unwrap_or(stem);
            let mut parts = stem.rsplitn(3, '_');
            let (end, start) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
            Some((parts.next()?.to_owned(), start, end))
        })
        .collect();
    ends.sort();
    // No segment archived twice: each starts where the one before it in its file ends.
    for w in ends.windows(2) {
        assert!(w[0].0 != w[1].0 || w[0].2 == w[1].1, "overlapping or missing: {w:?}");
    }
    ends.pop().map(|(f, _, e)| (f, e))
}

/// The server's current binary log file and position.
fn server_at(server: &Server) -> (String, u32) {
    let status = server.sql("SHOW MASTER STATUS");
    let mut cols = status.split('\t');
    (cols.next().unwrap().to_owned(), cols.next().unwrap().trim().parse().unwrap())
}

/// Waits (at most `secs` seconds) for `what` to hold.
#[track_caller]
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A follower's stderr, read as it comes.
fn stderr_of(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut from, to) = (child.stderr.take().unwrap(), text.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut from, &mut buf) {
            to.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// All a follower said, once it has exited: its stderr read to the end (the reader thread,
/// which holds the other reference, is done; at most 10 s).
fn all_said(text: &std::sync::Arc<std::sync::Mutex<String>>) -> String {
    wait_for(10, "the end of the follower's stderr", || std::sync::Arc::strong_count(text) == 1);
    text.lock().unwrap().clone()
}

fn sigterm(child: &std::process::Child) {
    let ok = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// Issue 28, part 1: a following archiver holds the segment it could not store through a store
/// outage longer than the retry policy, while the server flushes and purges the file that
/// segment is of; once the store answers it stores it, with no gap and nothing archived twice
/// (all the server purged had been read). A stop during an outage says what was not stored.
#[test]
fn a_following_archiver_stores_what_it_held_through_an_outage_and_a_purge() {
    if !mariadb::available() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let server = binlog_server(&fx);
    let proxy = s3.proxy(11);
    let prefix = "s3://bkt/binlog/";
    let mut follower = archiver(&s3, &proxy, &fx, &server, prefix, &["--follow", "--segment-time", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = stderr_of(&mut follower);
    wait_for(60, "caught up", || archived_to(&s3) == Some(server_at(&server)));

    let writes = [Kind::Put, Kind::Part, Kind::Create, Kind::Complete];
    outage(&proxy, &writes, Fault::Status503);
    let (held_file, _) = server_at(&server);
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_40;");
    wait_for(60, "the outage said", || err.lock().unwrap().contains("reading from the server paused"));
    // More rows in the outage (they wait in the connection), then the file is closed, kept
    // aside to compare, and purged: the server no longer has it.
    server.sql("INSERT INTO d.t SELECT seq + 6000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_20; FLUSH BINARY LOGS;");
    let (next, _) = server_at(&server);
    std::fs::copy(server.datadir.join(&held_file), fx.path("kept")).unwrap();
    wait_for(30, "the held segment's file purged", || {
        server.sql(&format!("PURGE BINARY LOGS TO '{next}'"));
        !server.sql("SHOW BINARY LOGS").contains(&held_file)
    });
    // The server drops the link meanwhile (its dump thread killed): what it had sent waits in
    // the connection; the run goes on from what is stored, once the held segment is.
    let dump = server.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'");
    server.sql(&format!("KILL {}", dump.trim()));
    // Two attempts at least, each through the store's retries (3 requests with `SHORT`).
    wait_for(60, "a second attempt", || proxy.injected(None, Some(Fault::Status503)) >= 6);
    assert!(follower.try_wait().unwrap().is_none(), "still running: {}", err.lock().unwrap());
    assert!(archived_to(&s3).unwrap().0 == held_file, "the held segment is not stored yet");

    // The store answers again: what was held is stored, and the archiver goes on.
    proxy.set_rules(Vec::new());
    wait_for(120, "the outage's end said", || err.lock().unwrap().contains("the store answers again"));
    server.sql("INSERT INTO d.t SELECT seq + 7000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_20;");
    wait_for(60, "caught up after the outage", || archived_to(&s3) == Some(server_at(&server)));
    assert!(follower.try_wait().unwrap().is_none(), "still running: {}", err.lock().unwrap());
    let text = err.lock().unwrap().clone();
    eprintln!("{text}");
    // One line when it starts, one when it ends: not one per attempt.
    assert_eq!(text.matches("reading from the server paused").count(), 1, "{text}");
    assert_eq!(text.matches("the store answers again").count(), 1, "{text}");
    assert!(text.contains(&held_file) && text.contains("503"), "names the segment and the cause: {text}");
    let after = &text[text.find("the store answers again").unwrap()..];
    assert!(after.contains("reconnecting"), "the link the server dropped is taken up again: {text}");

    // A stop during an outage: what was not stored is said, the run fails, nothing half-stored.
    outage(&proxy, &writes, Fault::Status503);
    server.sql("INSERT INTO d.t SELECT seq + 8000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_20;");
    let said = text.len();
    wait_for(60, "the second outage said", || err.lock().unwrap()[said..].contains("reading from the server paused"));
    sigterm(&follower);
    let out = wait_exit(follower, 60);
    assert_eq!(out.status.code(), Some(1));
    // A refusal no wait cures (here: no such bucket) ends a following run at once, in one line.
    let mut nobucket = archiver(&s3, &proxy, &fx, &server, "s3://nobucket/binlog/", &["--follow"]);
    let out = wait_exit(nobucket.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(), 60);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(error_line(&said).contains("nobucket"), "{said}");
    let text = all_said(&err);
    let line = error_line(&text);
    assert!(line.contains("not stored") && line.contains(&next) && line.contains("503"), "{line}");
    assert_eq!(not_segments(&s3), Vec::<String>::new(), "nothing half-stored");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "no upload left in progress");

    // The store answers: a run to the log's end completes the archive; no gap, and the purged
    // file, fetched, is the server's as it was kept aside (the rows held in the outage are in it).
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(archived_to(&s3), Some(server_at(&server)));
    let out = s3.coffer().args(["binlog", "list", prefix]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !list.contains("gap"), "{list}");
    let to = fx.s("logs");
    s3.expect(0, &["binlog", "fetch", prefix, "--to-dir", &to, "--key-file", &fx.key()]);
    let (kept, got) =
        (std::fs::read(fx.path("kept")).unwrap(), std::fs::read(fx.path("logs").join(&held_file)).unwrap());
    assert_eq!(kept.len(), got.len());
    assert!(kept.iter().zip(&got).filter(|(a, b)| a != b).count() <= 1, "{held_file} differs");
    for log in server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap()) {
        let (disk, got) =
            (std::fs::read(server.datadir.join(log)).unwrap(), std::fs::read(fx.path("logs").join(log)).unwrap());
        assert_eq!(disk.len(), got.len(), "{log}");
    }

    // A segment stored in parts (multipart), its parts refused: a stop in that outage leaves no
    // upload in progress, and the next run stores it.
    let (sock, pw, key) = (server.socket.display().to_string(), fx.s("repl-pw"), fx.key());
    let mut follower = s3
        .through(&proxy)
        .args(["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", prefix])
        .args(["--key-file", &key, "--follow", "--segment-time", "2", "--part-size", "5M", "--segment-size", "32M"])
        .args(SHORT)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = stderr_of(&mut follower);
    let dumps = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'";
    wait_for(60, "streaming", || server.sql(dumps).trim() == "1");
    outage(&proxy, &[Kind::Part], Fault::Status503);
    // Random bytes, which do not compress: a sealed segment of more than one part.
    server.sql("INSERT INTO d.t SELECT seq + 10000, HEX(RANDOM_BYTES(1000)) FROM d.seq_1_to_8000;");
    let said = || err.lock().unwrap().contains("reading from the server paused");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !said() {
        assert!(Instant::now() < deadline, "no outage said: {}\n{}", err.lock().unwrap(), proxy.report());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(proxy.injected(Some(Kind::Part), Some(Fault::Status503)) > 0, "{}", proxy.report());
    sigterm(&follower);
    let out = wait_exit(follower, 60);
    let text = all_said(&err);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(error_line(&text).contains("not stored"), "{text}");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "no upload left in progress");
    assert_eq!(not_segments(&s3), Vec::<String>::new(), "nothing half-stored");
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &["--part-size", "5M"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(archived_to(&s3), Some(server_at(&server)));
    let out = s3.coffer().args(["binlog", "list", prefix]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !list.contains("gap"), "{list}");
}

/// Is `dir` absent, or marked as an unfinished restore (nothing in it looks complete)?
fn absent_or_marked(dir: &Path) -> bool {
    !dir.exists() || dir.join(".coffer-restore-incomplete").exists()
}

/// Issue 28, part 1: `restore --until` and `drill` through an outage of the store (every
/// request refused, then the store answers). An outage shorter than the retry policy is ridden
/// out; one longer than it, starting half-way through the job, fails the job on one line naming
/// the object, leaves nothing that looks complete, and the same command then finishes.
#[test]
fn a_point_in_time_restore_and_a_drill_through_an_outage() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let port = free_port();
    let server = live::source(&fx, port, &["--binlog-format=ROW".into()]);
    server.sql(
        "CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost';",
    );
    fx.write_secret("repl-pw", "repl-pw\n");
    let proxy = s3.proxy(15);
    let run = |args: &[&str]| {
        let out = s3.through(&proxy).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let backup = live::backup_args(&fx, port, "s3://bkt/prod/");
    let (code, err) = run(&backup.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    let tables = live::tables(&server);
    let gtid = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let sums = live::checksums(&server, &tables);
    live::sysbench(&server, "run", &["--time=1"]).wait().unwrap();
    let (sock, pw, key) = (server.socket.display().to_string(), fx.s("repl-pw"), fx.key());
    let archive =
        ["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", "s3://bkt/prod/binlog/"];
    let (code, err) = run(&[&archive[..], &["--key-file", &key, "--segment-size", "256K"]].concat());
    assert_eq!(code, 0, "{err}");
    let restored_as_at_the_target = |dir: &str| {
        let restored = Server::open(&fx.path(dir), &[]);
        assert_eq!(live::checksums(&restored, &tables), sums, "the state at the target");
    };

    // A short outage of everything, from the job's start: ridden out by the default policy.
    let until = |to: &str| {
        ["restore", "s3://bkt/prod/", "--to", to, "--until-gtid", &gtid, "--key-file", &key].map(str::to_owned)
    };
    let (gets, refused) = (proxy.seen(Kind::Get), proxy.injected(None, None));
    proxy.set_rules(vec![Rule::outage(Fault::Status503, Duration::from_secs(3))]);
    let to = fx.s("a/data");
    let (code, err) = run(&until(&to).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}\nproxy: {}", proxy.report());
    assert!(proxy.injected(None, Some(Fault::Status503)) > refused, "{}", proxy.report());
    restored_as_at_the_target("a");
    let reads = proxy.seen(Kind::Get) - gets;

    // Longer than the policy, from half-way through the job's reads: one line, nothing that
    // looks complete; then the same command finishes.
    let to = fx.s("b/data");
    let mut args = until(&to).to_vec();
    args.extend(SHORT.map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    outage_after(&proxy, Kind::Get, Fault::Status503, reads / 2);
    let before = proxy.injected(Some(Kind::Get), Some(Fault::Status503));
    let (code, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains("s3://bkt/prod/") && line.contains("503"), "names the object and the cause: {line}");
    assert!(proxy.injected(Some(Kind::Get), Some(Fault::Status503)) > before, "{}", proxy.report());
    assert!(absent_or_marked(&fx.path("b/data")), "nothing that looks complete");
    proxy.set_rules(Vec::new());
    let (code, err) = run(&args);
    assert_eq!(code, 0, "the same command finishes: {err}");
    restored_as_at_the_target("b");

    // A drill: the same.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(fx.path("drill")).unwrap();
        std::fs::set_permissions(fx.path("drill"), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let drill = ["drill", "s3://bkt/prod/", "--scratch", &fx.s("drill"), "--key-file", &key];
    let gets = proxy.seen(Kind::Get);
    proxy.set_rules(vec![Rule::outage(Fault::SlowDown, Duration::from_secs(3))]);
    let before = proxy.injected(None, Some(Fault::SlowDown));
    let (code, err) = run(&drill);
    assert_eq!(code, 0, "{err}\nproxy: {}", proxy.report());
    assert!(proxy.injected(None, Some(Fault::SlowDown)) > before, "{}", proxy.report());
    let reads = proxy.seen(Kind::Get) - gets;
    let mut args = drill.to_vec();
    args.extend(SHORT);
    outage_after(&proxy, Kind::Get, Fault::Reset, reads / 2);
    let (code, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains("s3://bkt/prod/"), "names the object: {line}");
    assert!(proxy.injected(Some(Kind::Get), Some(Fault::Reset)) > 0, "{}", proxy.report());
    assert!(!err.contains("PASSED"), "{err}");
    proxy.set_rules(Vec::new());
    let (code, err) = run(&args);
    assert_eq!(code, 0, "the same command finishes: {err}");
    eprintln!("{err}\nproxy: {}", proxy.report());
}
