//! Issue 28, part 1, the jobs that need a database server: `binlog archive` (following the
//! server) and `binlog fetch` through a fault-injecting proxy in front of moto, the store out
//! for longer than the retry policy. The archiver ends on one line (systemd restarts it); no
//! segment is left that is not whole; the next run takes up where the archive ends, with no
//! gap, and the fetched files are the server's. Skipped without MariaDB or moto_server.

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

    // Following; the store refuses every write: the archiver ends on one line naming the
    // segment it could not store.
    let mut follow = archiver(&s3, &proxy, &fx, &server, prefix, &["--follow"]);
    let follower = follow.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    outage(&proxy, &[Kind::Put, Kind::Part, Kind::Create, Kind::Complete], Fault::Status503);
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000;");
    let out = wait_exit(follower, 90);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
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
            panic!("still running after {secs} s");
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
