//! `coffer drill` end to end against real MariaDB servers (Debian's packages): hot backups of a
//! live server drilled through a file:// prefix (the newest backup, then a full + incremental
//! chain, then a point in time), a chain whose full is gone, a stopped server's datadir backed
//! up as a directory (clean, and with a page of a table's tablespace damaged before the
//! backup), and a scratch filesystem too small. Each drill's JSON report and exit code are
//! checked, its metrics file is read with Prometheus' own Python parser, and nothing of the
//! drill may be left in the scratch directory or its temporary directory.

mod common;

use common::live::*;
use common::mariadb::Server;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `coffer drill IMAGE --scratch SCRATCH --json` with `extra` (and the test key unless
/// `extra` names one), its temporary files in `fx/tmp`; returns the exit code, the JSON report
/// and stderr.
fn drill(fx: &Fixture, image: &str, scratch: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut cmd = coffer();
    cmd.args(["drill", image, "--scratch", scratch.to_str().unwrap(), "--json"]).args(extra);
    if !extra.contains(&"--key-file") {
        cmd.args(["--key-file", &fx.key()]);
    }
    let out = cmd.env("TMPDIR", fx.path("tmp")).stdin(Stdio::null()).output().expect("run coffer drill");
    let code = out.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("drill {image}: exit {code}, no JSON report ({e}): {}\n{err}", String::from_utf8_lossy(&out.stdout))
    });
    (code, report, err)
}

/// The names in `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Asserts that a drill left nothing in its scratch directory nor its temporary directory.
#[track_caller]
fn nothing_left(fx: &Fixture, scratch: &Path, what: &str) {
    assert!(entries(scratch).is_empty(), "{what}: left in the scratch dir: {:?}", entries(scratch));
    assert!(entries(&fx.path("tmp")).is_empty(), "{what}: left in TMPDIR: {:?}", entries(&fx.path("tmp")));
}

/// The one error line a failed drill prints (with --json, nothing else goes to stderr).
#[track_caller]
fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(lines[0].starts_with("coffer: error: drill failed: "), "{err}");
    lines[0]
}

/// True if python3 can import prometheus_client's parser; else a skip (a failure where CI
/// requires the tests' tools).
fn has_parser() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(),
            "python3's prometheus_client is required (pip install prometheus-client)"
        );
        eprintln!("skipped: the metrics checks (python3's prometheus_client is not installed)");
    }
    ok
}

/// The samples of the metrics file at `path` labelled command="drill", by name, as
/// prometheus_client's text parser reads them; every family must be a gauge with help.
fn drill_metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let samples = parse_metrics(&text);
    let mut drill = BTreeMap::new();
    for (name, labels, value, kind, help) in samples {
        assert_eq!(kind, "gauge", "{name}:\n{text}");
        assert!(!help.is_empty(), "{name} has no help:\n{text}");
        if labels.get("command").map(String::as_str) == Some("drill") {
            assert!(drill.insert(name.clone(), value).is_none(), "{name} twice:\n{text}");
        }
    }
    drill
}

/// A sample that must be in `m`.
#[track_caller]
fn metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(name).unwrap_or_else(|| panic!("no {name}{{command=\"drill\"}} in {m:?}"))
}

/// The tables a drill's server checks on a copy of `server`: every base table outside
/// information_schema, performance_schema and sys.
fn base_tables(server: &Server) -> u64 {
    server
        .sql(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'sys')",
        )
        .trim()
        .parse()
        .unwrap()
}

/// "2026-11-27 14:02:59" in UTC.
fn utc(t: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%F %T"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The path of a file:// URL.
fn file_path(url: &str) -> &Path {
    Path::new(url.strip_prefix("file://").unwrap_or_else(|| panic!("not a file:// URL: {url}")))
}

/// A moment between two marker rows (sbtest.marker 1 and 2), a second apart; the binary log
/// flushed after them.
fn point_in_time(server: &Server) -> i64 {
    server.sql("INSERT INTO sbtest.marker VALUES (1, NOW())");
    let at: i64 = server.sql("SELECT UNIX_TIMESTAMP(); DO SLEEP(1.2)").trim().parse().unwrap();
    server.sql("INSERT INTO sbtest.marker VALUES (2, NOW()); FLUSH BINARY LOGS");
    at
}

/// Archives `server`'s binary log to `prefix`binlog/ as the user repl.
fn archive_binlogs(fx: &Fixture, server: &Server, prefix: &str) {
    let binlogs = format!("{prefix}binlog/");
    let sock = server.socket.display().to_string();
    let pw = fx.s("repl-pw");
    let key = fx.key();
    expect(
        0,
        &["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", &binlogs, "--key-file", &key],
    );
}

/// A live source with the binary log on, sbtest.marker and a user repl that may archive the
/// binary log.
fn live_source(fx: &Fixture, port: u16) -> Server {
    let server = source(fx, port, &["--binlog-format=ROW".into()]);
    server.sql(
        "CREATE TABLE sbtest.marker (id INT PRIMARY KEY, at DATETIME) ENGINE=InnoDB; \
         CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost';",
    );
    fx.write_secret("repl-pw", "repl-pw\n");
    server
}

/// Hot backups of a live server (sysbench tables, a ROW_FORMAT=COMPRESSED and a PAGE_COMPRESSED
/// table, a MyISAM table, a view) into a file:// prefix. The newest backup under the prefix
/// drills: restored, prepared, its pages and every table checked, the report's numbers in the
/// metrics file. A full + incremental chain drills as two backups, and a point in time after it
/// from the archived binary log. With the full's object deleted, the chain's drill fails before
/// anything is restored, names the missing parent, and the metrics file says so while keeping
/// the last success's time.
#[test]
fn hot_backups_drill_through_a_prefix_and_a_broken_chain_fails() {
    if !tools() {
        return;
    }
    let parser = has_parser();
    let fx = Fixture::new();
    for d in ["scratch", "bk/binlog", "drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let port = free_port();
    let server = live_source(&fx, port);
    server.sql(
        "CREATE DATABASE app; \
         CREATE TABLE app.notes (id INT PRIMARY KEY, body VARCHAR(200), KEY (body(20))); \
         INSERT INTO app.notes SELECT seq, REPEAT(CONCAT('note ', seq), 10) FROM sbtest.seq_1_to_5000; \
         CREATE TABLE app.legacy (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM; \
         INSERT INTO app.legacy SELECT seq, CONCAT('legacy ', seq) FROM sbtest.seq_1_to_300; \
         CREATE VIEW app.recent AS SELECT id FROM app.notes WHERE id > 4900;",
    );
    let user_tables: u64 = server
        .sql(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA IN ('sbtest', 'app')",
        )
        .trim()
        .parse()
        .unwrap();
    assert!(user_tables >= 9, "{user_tables}");
    let all_tables = base_tables(&server);
    let prefix = format!("file://{}/", fx.path("bk").display());
    let scratch = fx.path("drill");
    let prom = fx.path("coffer.prom");
    let prom_arg = prom.to_str().unwrap();

    // The newest (only) backup under the prefix: a full hot backup.
    coffer_ok(&backup_args(&fx, port, &prefix));
    let (code, r, err) = drill(&fx, &prefix, &scratch, &["--metrics-file", prom_arg]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert!(r["failure"].is_null(), "{r:#}");
    assert_eq!(r["kind"], "server backup", "{r:#}");
    let image = r["image"].as_str().unwrap().to_owned();
    assert!(image.starts_with(&prefix) && image.ends_with(".coffer"), "the newest backup under the prefix: {r:#}");
    assert!(file_path(&image).is_file(), "{image}");
    assert_eq!(r["backups"], serde_json::json!([image]), "{r:#}");
    let (needed, free) = (r["needed_bytes"].as_u64().unwrap(), r["free_bytes"].as_u64().unwrap());
    assert!(needed > 1 << 20 && needed <= free, "{r:#}");
    assert!(r["pages_checked"].as_u64().unwrap() > 100, "{r:#}");
    assert_eq!(r["pages_corrupt"], 0, "{r:#}");
    assert_eq!(r["corrupt_files"], serde_json::json!([]), "{r:#}");
    assert!(r["server_version"].as_str().is_some_and(|v| v.contains("MariaDB")), "{r:#}");
    let checked = r["tables_checked"].as_u64().unwrap();
    assert!(checked >= user_tables, "{checked} tables checked, {user_tables} user tables: {r:#}");
    assert_eq!(checked + r["tables_skipped"].as_u64().unwrap(), all_tables, "every base table: {r:#}");
    assert_eq!(r["tables_failed"], serde_json::json!([]), "{r:#}");
    assert!(r["pitr"].is_null(), "{r:#}");
    assert!(err.trim().is_empty(), "--json says nothing else: {err}");
    nothing_left(&fx, &scratch, "the full's drill");
    let first_success = if parser {
        let m = drill_metrics(&prom);
        assert_eq!(metric(&m, "coffer_drill_passed"), 1.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_drill_tables_checked"), checked as f64, "{m:?}");
        assert_eq!(metric(&m, "coffer_drill_tables_failed"), 0.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_innodb_pages_checked"), r["pages_checked"].as_f64().unwrap(), "{m:?}");
        assert_eq!(metric(&m, "coffer_innodb_pages_corrupt"), 0.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_bytes_restored"), needed as f64, "{m:?}");
        assert_eq!(metric(&m, "coffer_last_run_success"), 1.0, "{m:?}");
        assert!(!m.contains_key("coffer_last_failure_timestamp_seconds"), "{m:?}");
        let t = metric(&m, "coffer_last_success_timestamp_seconds");
        assert!(t > 1.6e9, "{m:?}");
        Some(t)
    } else {
        None
    };
    // The text verdict, without --json.
    let out = coffer()
        .args(["drill", &prefix, "--scratch", scratch.to_str().unwrap(), "--key-file", &fx.key()])
        .env("TMPDIR", fx.path("tmp"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("(server backup): PASSED") && text.contains(&format!("{checked} passed CHECK TABLE")),
        "{text}"
    );
    nothing_left(&fx, &scratch, "the text drill");

    // Writes, then an incremental into the same prefix: the chain drills, full first.
    sysbench(&server, "run", &["--time=3"]).wait().unwrap();
    server.sql("INSERT INTO app.notes SELECT seq, 'after the full' FROM sbtest.seq_5001_to_6000");
    let mut args = backup_args(&fx, port, &prefix);
    args.push("--incremental".into());
    let log = coffer_ok(&args);
    assert!(log.contains("taking incremental backup 1"), "{log}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, r, err) = drill(&fx, &prefix, &scratch, &["--metrics-file", prom_arg]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(r["kind"], "server backup", "{r:#}");
    let backups: Vec<String> =
        r["backups"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()).collect();
    assert_eq!(backups.len(), 2, "{r:#}");
    assert_eq!(backups[0], image, "the full first: {r:#}");
    assert_eq!(backups[1], r["image"].as_str().unwrap(), "{r:#}");
    assert_ne!(backups[1], image, "the newest is the incremental: {r:#}");
    assert!(backups[1].starts_with(&prefix), "{r:#}");
    let checked = r["tables_checked"].as_u64().unwrap();
    assert_eq!(checked + r["tables_skipped"].as_u64().unwrap(), all_tables, "{r:#}");
    assert!(checked >= user_tables && r["tables_failed"] == serde_json::json!([]), "{r:#}");
    assert!(r["pages_checked"].as_u64().unwrap() > 100 && r["pages_corrupt"] == 0, "{r:#}");
    nothing_left(&fx, &scratch, "the chain's drill");
    let second_success = if parser {
        let m = drill_metrics(&prom);
        assert_eq!(metric(&m, "coffer_drill_passed"), 1.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_drill_tables_checked"), checked as f64, "{m:?}");
        assert_eq!(metric(&m, "coffer_last_run_success"), 1.0, "{m:?}");
        let t = metric(&m, "coffer_last_success_timestamp_seconds");
        assert!(t > first_success.unwrap(), "a newer success: {m:?}");
        Some(t)
    } else {
        None
    };

    // A point in time after the incremental, from the binary log archived under the prefix.
    let at = point_in_time(&server);
    archive_binlogs(&fx, &server, &prefix);
    let (code, r, err) = drill(&fx, &prefix, &scratch, &["--until", &utc(at)]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(r["kind"], "point-in-time", "{r:#}");
    assert!(r["pitr"].is_object(), "{r:#}");
    assert_eq!(r["backups"].as_array().unwrap().len(), 2, "the chain, then the binary log: {r:#}");
    let checked = r["tables_checked"].as_u64().unwrap();
    assert_eq!(checked + r["tables_skipped"].as_u64().unwrap(), all_tables, "{r:#}");
    assert!(r["tables_failed"] == serde_json::json!([]) && r["pages_corrupt"] == 0, "{r:#}");
    nothing_left(&fx, &scratch, "the point-in-time drill");

    // The full's object deleted: the incremental is still the newest, its chain is broken.
    std::fs::remove_file(file_path(&image)).unwrap();
    let (code, r, err) = drill(&fx, &prefix, &scratch, &["--metrics-file", prom_arg]);
    assert_eq!(code, 1, "{r:#}\n{err}");
    assert_eq!(r["passed"], false, "{r:#}");
    let failure = r["failure"].as_str().unwrap();
    assert!(failure.contains("is broken") && failure.contains("its parent"), "{r:#}");
    assert_eq!(r["image"], backups[1], "{r:#}");
    assert_eq!(r["kind"], "", "nothing restored: {r:#}");
    assert_eq!(r["tables_checked"], 0, "{r:#}");
    assert!(r["server_version"].is_null(), "{r:#}");
    let line = one_error_line(&err);
    assert!(line.contains(failure), "the report's failure is the error: {line}\n{r:#}");
    nothing_left(&fx, &scratch, "the broken chain's drill");
    if parser {
        let m = drill_metrics(&prom);
        assert_eq!(metric(&m, "coffer_drill_passed"), 0.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_drill_tables_checked"), 0.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_last_run_success"), 0.0, "{m:?}");
        assert_eq!(metric(&m, "coffer_last_success_timestamp_seconds"), second_success.unwrap(), "kept: {m:?}");
        assert!(metric(&m, "coffer_last_failure_timestamp_seconds") >= second_success.unwrap(), "{m:?}");
    }
}

/// A stopped server's datadir backed up as a directory drills without a prepare; the same
/// datadir with bytes flipped in the middle of a data page of one table's tablespace is backed
/// up (with a warning) and its drill fails, naming the corrupt page's file. A wrong key, a
/// tampered image and a scratch that is no directory keep their own exit codes (3, 4, 2). A
/// scratch filesystem with less room than the backup's files is refused before anything is
/// restored.
#[test]
fn a_stopped_datadir_drills_and_a_corrupt_page_or_a_small_scratch_fails_it() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    for d in ["drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let mut server = Server::start(&fx.path("db"), &[]);
    server.sql(
        "CREATE DATABASE test; \
         CREATE TABLE test.t1 (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB; \
         INSERT INTO test.t1 SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM test.seq_1_to_8000; \
         CREATE TABLE test.t2 (id INT PRIMARY KEY, n INT, KEY (n)) ENGINE=InnoDB; \
         INSERT INTO test.t2 SELECT seq, seq * 7 FROM test.seq_1_to_3000; \
         CREATE TABLE test.`t``q'x; DROP` (id INT PRIMARY KEY) ENGINE=InnoDB; \
         INSERT INTO test.`t``q'x; DROP` VALUES (1);",
    );
    // A table name with a backtick, a quote and a semicolon: the drill quotes what the server
    // names (every table checked below, none failed).
    let all_tables = base_tables(&server);
    let pages_t1 = std::fs::metadata(server.datadir.join("test/t1.ibd")).unwrap().len() / 16384;
    assert!(pages_t1 > 8, "t1 spans many pages: {pages_t1}");
    server.stop();
    let clean = server.datadir.clone();
    let copy = fx.path("copy");
    let ok = Command::new("cp").arg("-a").arg(&clean).arg(&copy).status().unwrap();
    assert!(ok.success());

    // Page 3 of t1 (its clustered index's root), bytes flipped in its middle.
    let ibd = copy.join("test/t1.ibd");
    let mut bytes = std::fs::read(&ibd).unwrap();
    let at = 3 * 16384 + 1000;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&ibd, &bytes).unwrap();

    let key = fx.key();
    let good = fx.s("good.coffer");
    let bad = fx.s("bad.coffer");
    expect(0, &["backup", clean.to_str().unwrap(), "-o", &good, "--key-file", &key]);
    let warned = expect(0, &["backup", copy.to_str().unwrap(), "-o", &bad, "--key-file", &key]);
    assert!(warned.contains("corrupt") && warned.contains("t1.ibd"), "the backup warns: {warned}");

    // The clean datadir: no prepare, every table checked.
    let scratch = fx.path("drill");
    let (code, r, err) = drill(&fx, &good, &scratch, &[]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(r["kind"], "directory", "{r:#}");
    assert_eq!(r["backups"], serde_json::json!([good]), "{r:#}");
    assert!(r["pages_checked"].as_u64().unwrap() >= pages_t1, "{r:#}");
    assert_eq!(r["pages_corrupt"], 0, "{r:#}");
    let checked = r["tables_checked"].as_u64().unwrap();
    assert!(checked >= 2, "{r:#}");
    assert_eq!(checked + r["tables_skipped"].as_u64().unwrap(), all_tables, "{r:#}");
    assert_eq!(r["tables_failed"], serde_json::json!([]), "{r:#}");
    nothing_left(&fx, &scratch, "the clean directory's drill");

    // The damaged copy: the drill fails on the corrupt page, and names t1's file.
    let (code, r, err) = drill(&fx, &bad, &scratch, &[]);
    assert_eq!(code, 1, "{r:#}\n{err}");
    assert_eq!(r["passed"], false, "{r:#}");
    assert_eq!(r["kind"], "directory", "{r:#}");
    let failure = r["failure"].as_str().unwrap();
    assert!(failure.contains("corrupt InnoDB page") && failure.contains("t1.ibd"), "{r:#}");
    assert!(r["pages_corrupt"].as_u64().unwrap() >= 1, "{r:#}");
    let files: Vec<&str> = r["corrupt_files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(files.len(), 1, "{r:#}");
    assert!(files[0].ends_with("test/t1.ibd"), "{r:#}");
    // The drill goes on to the server: CHECK TABLE fails t1 too, and passes every other table.
    let failed = r["tables_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert_eq!(failed[0]["table"], "`test`.`t1`", "{r:#}");
    assert_eq!(r["tables_checked"].as_u64().unwrap(), checked - 1, "{r:#}");
    let line = one_error_line(&err);
    assert!(line.contains("corrupt InnoDB page") && line.contains("t1.ibd"), "{line}");
    nothing_left(&fx, &scratch, "the damaged directory's drill");

    // Errors keep their own exit codes: a key that does not open the image (3), an image
    // tampered with after the backup (4: a byte flipped in the middle of its largest frame),
    // a scratch that is no directory (2). The report says the drill did not pass.
    let other = fx.s("other.key");
    let tampered = fx.path("tampered.coffer");
    let mut image = std::fs::read(&good).unwrap();
    let (at, _, len) = frames(&image).into_iter().max_by_key(|f| f.2).unwrap();
    image[at + 8 + len / 2] ^= 0x01;
    std::fs::write(&tampered, &image).unwrap();
    let not_dir = fx.s("good.coffer");
    for (what, image, scratch, extra, want) in [
        ("the wrong key", good.as_str(), scratch.as_path(), &["--key-file", other.as_str()][..], 3),
        ("a tampered image", tampered.to_str().unwrap(), scratch.as_path(), &[][..], 4),
        ("a file as the scratch", good.as_str(), Path::new(&not_dir), &[][..], 2),
    ] {
        let (code, r, err) = drill(&fx, image, scratch, extra);
        assert_eq!(code, want, "{what}: {r:#}\n{err}");
        assert_eq!(r["passed"], false, "{what}: {r:#}");
        assert!(r["failure"].as_str().is_some_and(|f| !f.is_empty()), "{what}: {r:#}");
        assert_eq!(r["tables_checked"], 0, "{what}: {r:#}");
        let line = one_error_line(&err);
        assert!(line.contains(r["failure"].as_str().unwrap()), "{what}: {line}\n{r:#}");
        nothing_left(&fx, &fx.path("drill"), what);
    }

    // A scratch filesystem of 8 MiB: less than the backup's files; nothing restored.
    let Some(small) = SmallFs::mount(&fx.path("small"), "8m") else {
        assert!(!nix::unistd::geteuid().is_root(), "root could not mount a tmpfs");
        eprintln!("skipped: the small scratch (no tmpfs without root)");
        return;
    };
    let (code, r, err) = drill(&fx, &good, &small.0, &[]);
    assert_eq!(code, 1, "{r:#}\n{err}");
    assert_eq!(r["passed"], false, "{r:#}");
    let failure = r["failure"].as_str().unwrap();
    assert!(failure.contains("free") && failure.contains("needs"), "{r:#}");
    assert!(failure.contains(small.0.to_str().unwrap()), "names the scratch dir: {r:#}");
    let (needed, free) = (r["needed_bytes"].as_u64().unwrap(), r["free_bytes"].as_u64().unwrap());
    assert!(free <= 8 << 20 && needed > free, "{r:#}");
    assert_eq!(r["kind"], "", "nothing restored: {r:#}");
    assert_eq!(r["pages_checked"], 0, "{r:#}");
    one_error_line(&err);
    nothing_left(&fx, &small.0, "the small scratch's drill");
}

/// A point-in-time drill of an incremental chain is refused when the scratch filesystem lacks
/// room for the chain's backups: the space the restore needs is every backup of the chain it
/// restores (as for a drill of the chain without --until), not the newest image alone.
#[test]
fn a_point_in_time_drill_counts_its_whole_chain_against_the_scratch() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    for d in ["scratch", "bk/binlog", "drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let port = free_port();
    let server = live_source(&fx, port);
    let prefix = format!("file://{}/", fx.path("bk").display());
    coffer_ok(&backup_args(&fx, port, &prefix));
    sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    let mut args = backup_args(&fx, port, &prefix);
    args.push("--incremental".into());
    coffer_ok(&args);
    let at = point_in_time(&server);
    archive_binlogs(&fx, &server, &prefix);

    // What the chain's own drill says it needs, and what its newest image alone holds.
    let (code, chain, err) = drill(&fx, &prefix, &fx.path("drill"), &[]);
    assert_eq!(code, 0, "{chain:#}\n{err}");
    assert_eq!(chain["backups"].as_array().unwrap().len(), 2, "{chain:#}");
    let whole = chain["needed_bytes"].as_u64().unwrap();
    let out = run(&["info", chain["image"].as_str().unwrap(), "--json", "--key-file", &fx.key()]);
    assert_eq!(out.0, 0, "{}", out.2);
    let info: Value = serde_json::from_slice(&out.1).unwrap();
    let newest = info["bytes"].as_u64().unwrap_or_else(|| panic!("no bytes in {info:#}"));
    assert!(newest < whole, "the incremental is smaller than its chain: {newest} {whole}");

    // A scratch with room for the newest image, not for the chain.
    let size_kib = (newest + (whole - newest) / 2) / 1024;
    let small = SmallFs::mount(&fx.path("small"), &format!("{size_kib}k")).expect("a tmpfs (run as root)");
    let (code, r, err) = drill(&fx, &prefix, &small.0, &["--until", &utc(at)]);
    assert_eq!(code, 1, "{r:#}\n{err}");
    assert!(r["needed_bytes"].as_u64().unwrap() >= whole, "the chain's bytes are needed: {r:#}");
    let failure = r["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("free") && failure.contains("needs"), "refused before restoring: {r:#}");
    assert_eq!(r["kind"], "", "nothing restored: {r:#}");
    nothing_left(&fx, &small.0, "the point-in-time drill into a small scratch");
}

/// The mariadbd processes with an argument that starts with `arg`: (pid, uid). A zombie (dead,
/// not yet reaped) has no command line and is not one.
fn servers_with(arg: &str) -> Vec<(i32, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !args.first().is_some_and(|a| a.ends_with(b"mariadbd") || a.ends_with(b"mysqld")) {
            continue;
        }
        if !args.iter().any(|a| a.starts_with(arg.as_bytes())) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
        if let Some(uid) = uid.and_then(|u| u.parse().ok()) {
            found.push((pid, uid));
        }
    }
    found
}

/// Watches, until `done`, for servers with an argument starting with `arg`; every one seen.
fn watch_servers(
    arg: String,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i32, u32)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            for s in servers_with(&arg) {
                if !seen.contains(&s) {
                    seen.push(s);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        seen
    })
}

/// Starts `coffer drill ... --json` with `extra` in the background, waits (a minute at most) for
/// a server with an argument starting with `arg`, kills coffer with SIGKILL; returns that
/// server (pid, uid).
fn kill_drill_when_server(fx: &Fixture, image: &str, scratch: &Path, extra: &[&str], arg: &str) -> (i32, u32) {
    let mut cmd = coffer();
    cmd.args(["drill", image, "--scratch", scratch.to_str().unwrap(), "--json", "--key-file", &fx.key()]);
    let mut child = cmd
        .args(extra)
        .env("TMPDIR", fx.path("tmp"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let server = loop {
        if let Some(s) = servers_with(arg).first() {
            break *s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the drill ended ({status}) before a server with {arg} was seen");
        }
        assert!(std::time::Instant::now() < deadline, "no server with {arg}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    confined(server.0);
    child.kill().unwrap();
    child.wait().unwrap();
    server
}

/// Asserts that the running server `pid` is confined (issue 26, hostile binary logs): mount
/// and network namespaces of its own, in which every mount but its own directories is
/// read-only.
#[track_caller]
fn confined(pid: i32) {
    let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    assert_ne!(ns(&pid.to_string(), "mnt"), ns("self", "mnt"), "a mount namespace of its own");
    assert_ne!(ns(&pid.to_string(), "net"), ns("self", "net"), "a network namespace of its own");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    // Fields: id parent major:minor root mount-point options ...
    let (mut rw, mut ro) = (Vec::new(), 0);
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f[5].split(',').any(|o| o == "rw") {
            rw.push(f[4].to_owned());
        } else {
            ro += 1;
        }
    }
    assert!(ro > 0 && rw.len() <= 4, "only its directories are writable: {rw:?}");
    assert!(!rw.iter().any(|m| m == "/" || m == "/tmp" || m == "/var"), "{rw:?}");
}

/// Asserts that the server `pid` is gone within 10 s of its coffer's death.
#[track_caller]
fn server_dies(pid: i32, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            panic!("{what}: the server (pid {pid}) outlived its coffer");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The uid of the user a drill's server runs as by default (as root): mysql.
fn mysql_uid() -> u32 {
    nix::unistd::User::from_name("mysql").unwrap().expect("the user mysql (mariadb-server's)").uid.as_raw()
}

/// The names in `dir` that start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    entries(dir).into_iter().filter(|n| n.starts_with(prefix)).collect()
}

/// A stopped server's datadir whose backup-my.cnf (which an image may hold, and a drill's server
/// read) says to run SQL at start (`init_file`: SQL that has the server write a file outside
/// the drill's directories), to log every query, and more. The drill passes, its server runs
/// none of it, as the mysql user (never root, whoever owns the image's files), and the report
/// names what was left out. A drill killed (SIGKILL) while its server runs takes the server
/// with it within seconds; the next drill removes the datadir and the server's directory it
/// left, with a warning each, and passes.
#[test]
fn a_drills_server_runs_nothing_the_image_says_never_as_root_and_dies_with_coffer() {
    if !common::mariadb::available() || !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs MariaDB and root (a server of another user)");
        return;
    }
    let fx = Fixture::new();
    for d in ["drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let mut server = Server::start(&fx.path("db"), &[]);
    server.sql(
        "CREATE DATABASE test; CREATE TABLE test.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         INSERT INTO test.t SELECT seq, CONCAT('row ', seq) FROM test.seq_1_to_2000;",
    );
    server.stop();
    let outside = fx.path("outside.log");
    std::fs::write(
        server.datadir.join("evil.sql"),
        format!("SET GLOBAL general_log_file = '{}';\nSET GLOBAL general_log = ON;\nSELECT 1;\n", outside.display()),
    )
    .unwrap();
    std::fs::write(
        server.datadir.join("backup-my.cnf"),
        "[mysqld]\ninnodb_page_size=16384\ninit_file=evil.sql\ngeneral_log=1\ngeneral_log_file=general.log\n\
         slow_query_log=1\nslow_query_log_file=slow.log\nplugin_maturity=experimental\nskip_grant_tables\n",
    )
    .unwrap();
    let image = fx.s("evil.coffer");
    expect(0, &["backup", server.datadir.to_str().unwrap(), "-o", &image, "--key-file", &fx.key()]);
    let scratch = fx.path("drill");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_servers(format!("--datadir={}/coffer-drill-", scratch.display()), done.clone());
    let (code, r, err) = drill(&fx, &image, &scratch, &[]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(r["kind"], "directory", "{r:#}");
    assert!(!outside.exists(), "the image's init_file ran: {} was written", outside.display());
    assert_eq!(
        r["options_left_out"],
        serde_json::json!([
            "init_file",
            "general_log",
            "general_log_file",
            "slow_query_log",
            "slow_query_log_file",
            "plugin_maturity",
            "skip_grant_tables"
        ]),
        "{r:#}"
    );
    assert!(!seen.is_empty(), "the drill's server was seen");
    assert!(seen.iter().all(|(_, uid)| *uid == mysql_uid()), "the server ran as mysql: {seen:?}");
    nothing_left(&fx, &scratch, "the drill of an image with a hostile backup-my.cnf");

    // Killed while its server runs: the server goes too; the next drill sweeps what is left.
    let (pid, uid) =
        kill_drill_when_server(&fx, &image, &scratch, &[], &format!("--datadir={}/coffer-drill-", scratch.display()));
    assert_ne!(uid, 0, "the drill's server never runs as root");
    server_dies(pid, "a killed drill");
    let datadirs = named(&scratch, "coffer-drill-");
    let rundirs = named(&fx.path("tmp"), "coffer-drill-");
    assert_eq!((datadirs.len(), rundirs.len()), (1, 1), "what a killed drill leaves: {datadirs:?} {rundirs:?}");
    let out = coffer()
        .args(["drill", &image, "--scratch", scratch.to_str().unwrap(), "--key-file", &fx.key()])
        .env("TMPDIR", fx.path("tmp"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for left in [scratch.join(&datadirs[0]), fx.path("tmp").join(&rundirs[0])] {
        let warning = format!("coffer: warning: removed {}, which an interrupted drill left", left.display());
        assert!(text.contains(&warning), "{warning}:\n{text}");
    }
    assert!(text.contains("left out: init_file, general_log, "), "{text}");
    nothing_left(&fx, &scratch, "the drill after a killed one");
}

/// A point-in-time drill killed (SIGKILL) while its replay server runs takes that server with it
/// within seconds (it never ran as root); the next point-in-time drill removes the datadir and
/// the replay server's directory it left, with a warning each, and passes.
#[test]
fn a_killed_point_in_time_drill_takes_its_replay_server_with_it() {
    if !tools() || !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs MariaDB's tools and root (a server of another user)");
        return;
    }
    let fx = Fixture::new();
    for d in ["scratch", "bk/binlog", "drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let port = free_port();
    let server = live_source(&fx, port);
    let prefix = format!("file://{}/", fx.path("bk").display());
    coffer_ok(&backup_args(&fx, port, &prefix));
    sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    let until = utc(point_in_time(&server));
    archive_binlogs(&fx, &server, &prefix);
    let scratch = fx.path("drill");
    let tmp = fx.path("tmp");

    let replay_server = format!("--pid-file={}/coffer-replay-", tmp.display());
    let (pid, uid) = kill_drill_when_server(&fx, &prefix, &scratch, &["--until", &until], &replay_server);
    assert_ne!(uid, 0, "the replay server never runs as root");
    server_dies(pid, "a killed point-in-time drill");
    let datadirs = named(&scratch, "coffer-drill-");
    let rundirs = named(&tmp, "coffer-replay-");
    assert_eq!((datadirs.len(), rundirs.len()), (1, 1), "what a killed drill leaves: {datadirs:?} {rundirs:?}");

    let out = coffer()
        .args(["drill", &prefix, "--scratch", scratch.to_str().unwrap(), "--key-file", &fx.key(), "--until", &until])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for (left, what) in [(scratch.join(&datadirs[0]), "drill"), (tmp.join(&rundirs[0]), "point-in-time replay")] {
        let warning = format!("coffer: warning: removed {}, which an interrupted {what} left", left.display());
        assert!(text.contains(&warning), "{warning}:\n{text}");
    }
    assert!(text.contains("(point-in-time): PASSED"), "{text}");
    nothing_left(&fx, &scratch, "the point-in-time drill after a killed one");
}

/// Where the private server cannot be confined (here: root without CAP_SYS_ADMIN, as in a
/// container), a drill refuses, in one line, unless the backups' signer is demanded: then it
/// runs unconfined on data whose origin was checked, with a warning.
#[test]
fn without_namespaces_only_signed_backups_are_drilled() {
    if !common::mariadb::available() || !nix::unistd::geteuid().is_root() || common::mariadb::which("setpriv").is_none()
    {
        eprintln!("skipped: needs MariaDB, root and setpriv");
        return;
    }
    let fx = Fixture::new();
    for d in ["drill", "tmp"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let mut server = Server::start(&fx.path("db"), &[]);
    server.sql(
        "CREATE DATABASE test; CREATE TABLE test.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO test.t VALUES (1);",
    );
    server.stop();
    let (_, signer, _) = run(&["key", "generate", "--signing", "-o", &fx.s("b.sig"), "-q"]);
    let signer = String::from_utf8(signer).unwrap().trim().to_owned();
    let image = fx.s("signed.coffer");
    let datadir = server.datadir.to_str().unwrap().to_owned();
    expect(0, &["backup", &datadir, "-o", &image, "--key-file", &fx.key(), "--signing-key", &fx.s("b.sig")]);
    let drill_without_sys_admin = |extra: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--bounding-set=-sys_admin", "--"])
            .arg(env!("CARGO_BIN_EXE_coffer"))
            .args(["drill", &image, "--scratch", fx.path("drill").to_str().unwrap(), "--key-file", &fx.key()])
            .args(extra)
            .env("TMPDIR", fx.path("tmp"))
            .env_remove("COFFER_KEY_FILE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A TMPDIR another user could change is no place for the server's own directory.
    std::fs::create_dir_all(fx.path("open")).unwrap();
    std::fs::set_permissions(fx.path("open"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = coffer()
        .args(["drill", &image, "--scratch", fx.path("drill").to_str().unwrap(), "--key-file", &fx.key()])
        .env("TMPDIR", fx.path("open"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("set TMPDIR elsewhere"), "{err}");
    let (code, err) = drill_without_sys_admin(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot be confined") && err.contains("--require-signer"), "{err}");
    let (code, err) = drill_without_sys_admin(&["--require-signer", &signer]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("runs unconfined, on backups and logs whose signer was checked"), "{err}");
    assert!(err.contains("PASSED"), "{err}");
}
