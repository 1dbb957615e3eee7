//! Issue 28, part 1, the jobs that need a database server: `binlog archive` and `binlog fetch`
//! through a fault-injecting proxy in front of moto, the store out for longer than the retry
//! policy. A run to the log's end ends on one line; a run following the server holds the
//! segment it could not store and stores it once the store answers, even if the server purged
//! its file meanwhile. No segment is left that is not whole; the next run takes up where the
//! archive ends, with no gap, and the fetched files are the server's. Skipped without MariaDB
//! or moto_server.

mod common;

use common::live;
use common::mariadb::{self, Server};
use common::s3::S3;
use common::scenario::{
    archive_args, fetched_as_on_the_server, master_status, socket_args, wait_exit, wait_until, Follower, Scenario,
    TWO_LOGS,
};
use common::tmpfs::{error_line, names};
use common::*;
use fault_proxy::{Fault, Kind, Proxy, Rule, When};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A short retry policy: an outage of a few seconds outlasts it.
const SHORT: [&str; 6] = ["--store-retries", "2", "--store-retry-timeout", "2", "--store-timeout", "2"];

/// A server with the binary log on and a user `repl` that may read it; two files of about a
/// megabyte each.
fn binlog_server(fx: &Fixture) -> Server {
    Scenario::new(fx).opts(&["--binlog-format=ROW"]).repl().sql(TWO_LOGS).start().server
}

/// The store (a bucket `bkt`), a fixture, a [`binlog_server`] in it, and a proxy to the store
/// (`seed`); none without MariaDB or moto_server.
fn binlog_setup(seed: u64) -> Option<(S3, Fixture, Server, Proxy)> {
    if !mariadb::available() {
        return None;
    }
    let s3 = S3::start()?;
    s3.bucket("bkt");
    let fx = Fixture::new();
    let server = binlog_server(&fx);
    let proxy = s3.proxy(seed);
    Some((s3, fx, server, proxy))
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
    let mut c = s3.through(proxy);
    c.args(archive_args(fx, &socket_args(server), prefix, &["--segment-size", "64K"])).args(SHORT).args(more);
    c.stdin(Stdio::null());
    c
}

fn run_cmd(mut c: std::process::Command) -> (i32, String) {
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
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

/// `binlog list` of `prefix` shows no gap.
#[track_caller]
fn no_gap(s3: &S3, prefix: &str) {
    let out = s3.coffer().args(["binlog", "list", prefix]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !list.contains("gap"), "{list}");
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

/// A following archiver through a store outage, then `binlog fetch` through one.
#[test]
fn binary_logs_archived_and_fetched_through_a_store_outage() {
    let Some((s3, fx, server, proxy)) = binlog_setup(9) else { return };
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
    no_gap(&s3, prefix);

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
    let logs: Vec<String> = scenario::server_logs(&server).into_iter().map(|(name, _)| name).collect();
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

/// What the point-in-time tests restore to: the source's tables, and the GTID position and
/// the checksums of an instant between two sysbench runs.
struct Target {
    tables: Vec<String>,
    gtid: String,
    sums: String,
}

/// A sysbench source (ROW binary log, a user `repl`), a hot backup of it under
/// `s3://bkt/prod/` and its binary log archived beside it, each through `run` (which must
/// succeed); the target is an instant between the backup and the archive's end.
fn backed_up_and_archived(fx: &Fixture, run: &dyn Fn(&[&str]) -> (i32, String)) -> (Server, Target) {
    let source = Scenario::new(fx).opts(&["--binlog-format=ROW"]).sysbench().repl().start();
    let server = source.server;
    let must = |args: &[String]| {
        let (code, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "coffer {args:?}: {err}");
    };
    must(&live::backup_args(fx, source.port, "s3://bkt/prod/"));
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    // The target: nothing writes while it is read.
    let tables = live::tables(&server);
    let gtid = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let sums = live::checksums(&server, &tables);
    live::sysbench(&server, "run", &["--time=1"]).wait().unwrap();
    must(&archive_args(fx, &socket_args(&server), "s3://bkt/prod/binlog/", &["--segment-size", "256K"]));
    (server, Target { tables, gtid, sums })
}

/// The scratch directory of a drill (the server's user must reach its datadir through it).
fn drill_scratch(fx: &Fixture) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(fx.path("drill")).unwrap();
    std::fs::set_permissions(fx.path("drill"), std::fs::Permissions::from_mode(0o711)).unwrap();
    fx.s("drill")
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
    let proxy = s3.proxy(10);
    proxy.set_rules(vec![
        Rule::new(&[], Fault::Mix, When::Nth(2)),
        Rule::new(&[], Fault::Mix, When::Chance(0.04)),
        Rule::new(&[Kind::Get], Fault::Short, When::Chance(0.03)),
    ]);
    let run = |args: &[&str]| {
        let out = s3.through(&proxy).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let run_ok = |args: &[&str]| {
        let (code, err) = run(args);
        assert_eq!(code, 0, "coffer {args:?}: {err}\nproxy: {}", proxy.report());
        err
    };
    let (_server, Target { tables, gtid, sums }) = backed_up_and_archived(&fx, &run);
    let key = fx.key();
    let to = fx.s("r/data");
    let err = run_ok(&["restore", "s3://bkt/prod/", "--to", &to, "--until-gtid", &gtid, "--key-file", &key]);
    assert!(err.contains("replayed"), "{err}");
    let restored = Server::open(&fx.path("r"), &[]);
    assert_eq!(live::checksums(&restored, &tables), sums, "the state at the target");
    drop(restored);
    let err = run_ok(&["drill", "s3://bkt/prod/", "--scratch", &drill_scratch(&fx), "--key-file", &key]);
    eprintln!("{err}\nproxy: {}", proxy.report());
    for kind in [Kind::Get, Kind::Head, Kind::Put, Kind::List] {
        assert!(proxy.injected(Some(kind), None) > 0, "no fault on {kind:?}: {}", proxy.report());
    }
}

/// The archive's end, from the segments' names: the file and the position.
fn archived_to(s3: &S3) -> Option<(String, u64)> {
    let mut ends: Vec<(String, u64, u64)> = s3
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

/// Issue 28, part 1: a following archiver holds the segment it could not store through a store
/// outage longer than the retry policy, while the server flushes and purges the file that
/// segment is of; once the store answers it stores it, with no gap and nothing archived twice
/// (all the server purged had been read). A stop during an outage says what was not stored.
#[test]
fn a_following_archiver_stores_what_it_held_through_an_outage_and_a_purge() {
    let Some((s3, fx, server, proxy)) = binlog_setup(11) else { return };
    let prefix = "s3://bkt/binlog/";
    let mut follower = Follower::spawn({
        let mut c = archiver(&s3, &proxy, &fx, &server, prefix, &["--follow", "--segment-time", "2"]);
        c.stdout(Stdio::null());
        c
    });
    wait_until("caught up", 60, &follower, || archived_to(&s3) == Some(master_status(&server)));

    let writes = [Kind::Put, Kind::Part, Kind::Create, Kind::Complete];
    outage(&proxy, &writes, Fault::Status503);
    let (held_file, _) = master_status(&server);
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_40;");
    let paused = |f: &Follower, from: usize| f.said()[from..].contains("reading from the server paused");
    wait_until("the outage said", 60, &follower, || paused(&follower, 0));
    // More rows in the outage (they wait in the connection), then the file is closed, kept
    // aside to compare, and purged: the server no longer has it.
    server.sql("INSERT INTO d.t SELECT seq + 6000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_20; FLUSH BINARY LOGS;");
    let (next, _) = master_status(&server);
    std::fs::copy(server.datadir.join(&held_file), fx.path("kept")).unwrap();
    wait_until("the held segment's file purged", 30, &follower, || {
        server.sql(&format!("PURGE BINARY LOGS TO '{next}'"));
        !server.sql("SHOW BINARY LOGS").contains(&held_file)
    });
    // The server drops the link meanwhile (its dump thread killed): what it had sent waits in
    // the connection; the run goes on from what is stored, once the held segment is.
    let dump = server.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'");
    server.sql(&format!("KILL {}", dump.trim()));
    // Two attempts at least, each through the store's retries (3 requests with `SHORT`).
    wait_until("a second attempt", 60, &follower, || proxy.injected(None, Some(Fault::Status503)) >= 6);
    assert!(follower.running(), "still running: {}", follower.said());
    assert!(archived_to(&s3).unwrap().0 == held_file, "the held segment is not stored yet");

    // The store answers again: what was held is stored, and the archiver goes on.
    proxy.set_rules(Vec::new());
    wait_until("the outage's end said", 120, &follower, || follower.said().contains("the store answers again"));
    server.sql("INSERT INTO d.t SELECT seq + 7000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_20;");
    wait_until("caught up after the outage", 60, &follower, || archived_to(&s3) == Some(master_status(&server)));
    assert!(follower.running(), "still running: {}", follower.said());
    let text = follower.said();
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
    wait_until("the second outage said", 60, &follower, || paused(&follower, said));
    let (code, text) = follower.term(60);
    assert_eq!(code, Some(1), "{text}");
    // A refusal no wait cures (here: no such bucket) ends a following run at once, in one line.
    let mut nobucket = archiver(&s3, &proxy, &fx, &server, "s3://nobucket/binlog/", &["--follow"]);
    let out = wait_exit(nobucket.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(), 60);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(error_line(&said).contains("nobucket"), "{said}");
    let line = error_line(&text);
    assert!(line.contains("not stored") && line.contains(&next) && line.contains("503"), "{line}");
    assert_eq!(not_segments(&s3), Vec::<String>::new(), "nothing half-stored");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "no upload left in progress");

    // The store answers: a run to the log's end completes the archive; no gap, and the purged
    // file, fetched, is the server's as it was kept aside (the rows held in the outage are in it).
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(archived_to(&s3), Some(master_status(&server)));
    no_gap(&s3, prefix);
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
    let more = ["--follow", "--segment-time", "2", "--part-size", "5M", "--segment-size", "32M"];
    let follower = Follower::spawn({
        let mut c = s3.through(&proxy);
        c.args(archive_args(&fx, &socket_args(&server), prefix, &more)).args(SHORT).stdout(Stdio::null());
        c
    });
    let dumps = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'";
    wait_until("streaming", 60, &follower, || server.sql(dumps).trim() == "1");
    outage(&proxy, &[Kind::Part], Fault::Status503);
    // Random bytes, which do not compress: a sealed segment of more than one part.
    server.sql("INSERT INTO d.t SELECT seq + 10000, HEX(RANDOM_BYTES(1000)) FROM d.seq_1_to_8000;");
    wait_until("an outage said", 90, &follower, || paused(&follower, 0));
    assert!(proxy.injected(Some(Kind::Part), Some(Fault::Status503)) > 0, "{}", proxy.report());
    let (code, text) = follower.term(60);
    assert_eq!(code, Some(1), "{text}");
    assert!(error_line(&text).contains("not stored"), "{text}");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "no upload left in progress");
    assert_eq!(not_segments(&s3), Vec::<String>::new(), "nothing half-stored");
    proxy.set_rules(Vec::new());
    let (code, err) = run_cmd(archiver(&s3, &proxy, &fx, &server, prefix, &["--part-size", "5M"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(archived_to(&s3), Some(master_status(&server)));
    no_gap(&s3, prefix);
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
    let proxy = s3.proxy(15);
    let run = |args: &[&str]| {
        let out = s3.through(&proxy).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (_server, Target { tables, gtid, sums }) = backed_up_and_archived(&fx, &run);
    let key = fx.key();
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
    let scratch = drill_scratch(&fx);
    let drill = ["drill", "s3://bkt/prod/", "--scratch", &scratch, "--key-file", &key];
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
