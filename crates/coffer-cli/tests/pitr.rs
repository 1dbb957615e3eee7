//! Point-in-time recovery against a real MariaDB with the binary log and GTIDs, backups and the
//! binlog archive in S3 (moto): sysbench writes while `binlog archive --follow` runs; marker
//! rows at T1 and T2 with CHECKSUM TABLE of every table taken under a read lock at those
//! instants; `restore --until` by time, GTID and position gives exactly those states.

mod common;

use common::live;
use common::mariadb::Server;
use common::s3::S3;
use common::scenario::*;
use common::*;
use std::time::Duration;

#[test]
fn restore_to_a_time_a_gtid_and_a_position_from_s3() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("pitr");
    let fx = Fixture::new();
    let src = Scenario::new(&fx).opts(&["--binlog-format=ROW"]).sysbench().repl().marker().start();
    let tables = src.tables_marker_last();
    let Source { server, port, .. } = src;
    let key = fx.key();

    // The archive follows from the start, with one-second segments.
    let mut archiver = s3
        .coffer()
        .args(archive_args(&fx, &socket_args(&server), "s3://pitr/prod/binlog/", &["--follow", "--segment-time", "1"]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // A full backup, then writes; T1; more writes (a temporary table across a binlog
    // rotation, in one session); T2; more writes.
    let backup = live::backup_args(&fx, port, "s3://pitr/prod/");
    let refs: Vec<&str> = backup.iter().map(String::as_str).collect();
    s3.expect(0, &refs);
    live::sysbench(&server, "run", &["--time=4"]).wait().unwrap();
    let t1 = mark(&server, &tables, 1);
    let mut load = live::sysbench(&server, "run", &["--time=4"]);
    // Logged as statements (in ROW format a temporary table is not logged at all): the
    // INSERT ... SELECT of the second file needs the table the first file's session made.
    server.sql(
        "SET SESSION binlog_format = STATEMENT; \
         CREATE TEMPORARY TABLE sbtest.tmp (id INT PRIMARY KEY); INSERT INTO sbtest.tmp VALUES (900), (901); \
         FLUSH BINARY LOGS; \
         BEGIN; INSERT INTO sbtest.marker SELECT id, '2026-01-01' FROM sbtest.tmp ORDER BY id; COMMIT;",
    );
    load.wait().unwrap();
    let t2 = mark(&server, &tables, 2);
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    server.sql("FLUSH BINARY LOGS; INSERT INTO sbtest.marker VALUES (3, NOW())");
    // The archive catches up with the server's end (segments close every second).
    let (end_file, end_pos) = master_status(&server);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = s3.coffer().args(["binlog", "list", "s3://pitr/prod/binlog/", "--json"]).output().unwrap();
        let segments: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        let reached = segments.as_array().and_then(|a| a.last()).is_some_and(|s| {
            s["file"].as_str() == Some(end_file.as_str()) && s["end"].as_u64().is_some_and(|e| e >= end_pos)
        });
        if reached {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the archive did not reach {end_file}:{end_pos}");
        std::thread::sleep(Duration::from_millis(500));
    }
    archiver.kill().unwrap();
    let out = archiver.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("archived"), "{said}");

    let pitr = |to: &str, target: &[&str]| {
        let mut args = vec!["restore", "s3://pitr/prod/", "--to", to, "--key-file", &key];
        args.extend_from_slice(target);
        s3.run(&args)
    };

    // By time: every transaction stamped at or before T1.
    let (code, err) = pitr(&fx.s("r1/data"), &["--until", &utc(t1.time)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replayed"), "{err}");
    assert_eq!(restored_state(&fx.path("r1"), &tables), (t1.checksums.clone(), "1".into()), "T1 by time");

    // By GTID: up to and including the last transaction before the lock at T2 (the temporary
    // table's rows, written after a rotation, included).
    let (code, err) = pitr(&fx.s("r2/data"), &["--until-gtid", &t2.gtid]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&t2.gtid), "{err}");
    assert_eq!(restored_state(&fx.path("r2"), &tables), (t2.checksums.clone(), "1,2,900,901".into()), "T2 by GTID");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("r2/data/coffer-pitr.json")).unwrap()).unwrap();
    assert_eq!(report["gtid_state"], t2.gtid.as_str(), "{report}");
    assert_eq!(report["last_gtid"], t2.gtid.as_str(), "{report}");

    // By position: the log up to SHOW MASTER STATUS at T1; through a client session.
    let (code, err) = pitr(&fx.s("r3/data"), &["--until-position", &t1.position, "--replay-with", "client"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(restored_state(&fx.path("r3"), &tables), (t1.checksums.clone(), "1".into()), "T1 by position");

    // --print-replay: the restored datadir and the exact commands; run by hand, they give T2.
    let (code, out, err) = {
        let o = s3
            .coffer()
            .args(["restore", "s3://pitr/prod/", "--to", &fx.s("r4/data"), "--key-file", &key])
            .args(["--until", &utc(t2.time), "--print-replay"])
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
    let steps: Vec<&str> = out.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(steps.len(), 4, "{out}");
    assert!(fx.path("r4/data.binlog").is_dir(), "{err}");
    let start = steps[0].trim_end_matches('&').trim();
    let mut replay_server = std::process::Command::new("sh").arg("-c").arg(format!("exec {start}")).spawn().unwrap();
    let sock = fx.path("r4/data.binlog/replay.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "the printed server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    for step in &steps[1..] {
        let o = std::process::Command::new("sh").arg("-c").arg(step).output().unwrap();
        assert!(o.status.success(), "{step}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(replay_server.wait().unwrap().success());
    assert_eq!(restored_state(&fx.path("r4"), &tables), (t2.checksums.clone(), "1,2,900,901".into()), "T2 by hand");

    // Refused, with nothing written: before the backup, after the archive's last event, a
    // position inside an event.
    for (target, says) in [
        (vec!["--until", "2001-01-01 00:00:00"], "before the oldest backup"),
        (vec!["--until", "2099-01-01 00:00:00"], "after the last archived event"),
        (vec!["--until-gtid", "0-1-99999999"], "after the last archived event"),
        (vec!["--until-position", &format!("{}:5", t1.position.split(':').next().unwrap())], ""),
    ] {
        let (code, err) = pitr(&fx.s("bad/data"), &target);
        assert_eq!(code, 1, "{target:?}: {err}");
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{target:?}: {err}");
        assert!(!fx.path("bad/data").exists(), "{target:?}: nothing written");
    }
    // Not a prefix: a usage error.
    let (code, err) = pitr(&fx.s("bad/data"), &["--until-gtid", &t2.gtid, "--binlogs", "/tmp/x"]);
    assert_ne!(code, 0, "{err}");

    // The catalog says how far the backup can be recovered: to the archive's end.
    let list = s3.coffer().args(["binlog", "list", "s3://pitr/prod/binlog/", "--json"]).output().unwrap();
    let segments: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let segments = segments.as_array().unwrap();
    let last = segments.last().unwrap();
    let end = format!("{}:{}", last["file"].as_str().unwrap(), last["end"]);
    let out = s3.coffer().args(["catalog", "s3://pitr/prod/", "--key-file", &key]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("recoverable to {end}")), "{text}");
    assert!(text.contains("binlog archive s3://pitr/prod/binlog/") && !text.contains("GAP"), "{text}");

    // A segment between T1 and T2 lost: recovery to T1 still works, past it is refused, and
    // catalog shows the gap.
    let (t1_file, t1_pos) = t1.position.split_once(':').unwrap();
    let t1_at = (t1_file.to_owned(), t1_pos.parse::<u64>().unwrap());
    let lost = segments
        .iter()
        .find(|s| (s["file"].as_str().unwrap().to_owned(), s["start"].as_u64().unwrap()) >= t1_at)
        .expect("a segment after T1");
    let name = format!(
        "{}_{:010}_{:010}{}.coffer",
        lost["file"].as_str().unwrap(),
        lost["start"].as_u64().unwrap(),
        lost["end"].as_u64().unwrap(),
        if lost["closed"] == true { "-closed" } else { "" }
    );
    // (moto refuses anonymous deletes: boto3, which comes with it, signs.)
    let delete = format!(
        "import boto3; s = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', aws_access_key_id='test', \
         aws_secret_access_key='test', region_name='us-east-1'); \
         s.head_object(Bucket='pitr', Key='prod/binlog/{name}'); s.delete_object(Bucket='pitr', Key='prod/binlog/{name}')",
        s3.port
    );
    let o = std::process::Command::new("python3").args(["-c", &delete]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, err) = pitr(&fx.s("bad/data"), &["--until-gtid", &t2.gtid]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gap") && err.trim().lines().count() == 1, "{err}");
    let (code, err) = pitr(&fx.s("r5/data"), &["--until-position", &t1.position]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(restored_state(&fx.path("r5"), &tables), (t1.checksums.clone(), "1".into()), "T1 before the gap");
    assert!(!fx.path("bad/data").exists());
    let out = s3.coffer().args(["catalog", "s3://pitr/prod/", "--key-file", &key]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GAP"), "{text}");

    // A later backup; then prune keeps a one-second window: that backup and the binary log
    // from its file on stay, the first backup and the older files go.
    let refs: Vec<&str> = backup.iter().map(String::as_str).collect();
    s3.expect(0, &refs);
    std::thread::sleep(Duration::from_secs(2));
    let err = s3.expect(0, &["prune", "s3://pitr/prod/", "--keep-pitr", "1s", "--key-file", &key, "--dry-run"]);
    assert!(
        err.contains("keep (pitr, newest full)") && err.contains("delete") && err.contains("binary log segments"),
        "{err}"
    );
    s3.expect(0, &["prune", "s3://pitr/prod/", "--keep-pitr", "1s", "--key-file", &key]);
    let list = s3.coffer().args(["binlog", "list", "s3://pitr/prod/binlog/", "--json"]).output().unwrap();
    let left: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let left = left.as_array().unwrap();
    assert!(!left.is_empty() && left.len() < segments.len(), "{left:?}");
    assert!(left.iter().all(|s| s["file"] != segments[0]["file"]), "{left:?}");
    let (code, err) = pitr(&fx.s("bad/data"), &["--until", &utc(t1.time)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("before the oldest backup"), "{err}");
}

/// A server that encrypts its binary log (encrypt_binlog, file_key_management): the archive
/// holds the events as the server sends them, decrypted, sealed by coffer; point-in-time
/// recovery replays them on a host without the server's key file.
#[test]
fn an_encrypted_binlog_is_recovered_without_the_servers_key() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("keys")).unwrap();
    let keys = fx.path("keys/keys.txt");
    common::mariadb::write_key_file(&keys, None);
    let key_opts = format!("--file-key-management-filename={}", keys.display());
    let opts = ["--binlog-format=ROW", "--plugin-load-add=file_key_management", &key_opts, "--encrypt-binlog=ON"];
    let Source { server, port, .. } = Scenario::new(&fx).opts(&opts).sysbench().repl().marker().start();
    let tables = live::tables(&server);
    let key = fx.key();
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    let binlogs = format!("{prefix}binlog/");
    let archive = archive_args(&fx, &socket_args(&server), &binlogs, &[]);
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    live::sysbench(&server, "run", &["--time=3"]).wait().unwrap();
    live::coffer_ok(&archive);
    server.sql("INSERT INTO sbtest.marker VALUES (1, NOW()); FLUSH BINARY LOGS;");
    let t1 = mark(&server, &tables, 2);
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    live::coffer_ok(&archive);
    // Each segment says whose log it is, its checksum algorithm, and the GTID position before
    // and after it; the last one's is the server's.
    let mut names: Vec<_> = std::fs::read_dir(fx.path("prod/binlog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".coffer"))
        .collect();
    names.sort();
    let describe = |name: &str| -> serde_json::Value {
        let image = fx.path("prod/binlog").join(name);
        let out = coffer()
            .args(["extract", image.to_str().unwrap(), "coffer-binlog.json", "--stdout", "--key-file", &key])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let last = describe(names.last().unwrap());
    assert_eq!(last["checksum"], "CRC32", "{last}");
    assert_eq!(last["server"]["server_id"], 1, "{last}");
    assert_eq!(last["gtid_after"].as_str().unwrap(), server.sql("SELECT @@gtid_binlog_pos").trim(), "{last}");
    let second = describe(&names[1]);
    assert_eq!(second["gtid_before"], describe(&names[0])["gtid_after"], "{second}");
    // `binlog list` with the key shows the same, per segment, in log order.
    let out = coffer().args(["binlog", "list", &binlogs, "--json", "--key-file", &key]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), names.len());
    assert_eq!(listed.last().unwrap()["gtid_after"], last["gtid_after"]);
    assert!(listed.iter().all(|s| s["first_event_time"].as_i64().is_some() && s["server"]["server_id"] == 1));
    let text = coffer().args(["binlog", "list", &binlogs, "--key-file", &key]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("GTID") && text.contains("server 1"), "{text}");
    let on_disk = std::fs::read(server.datadir.join("binlog.000001")).unwrap();
    assert!(!on_disk.windows(6).any(|w| w == b"sbtest"), "the server's binary log is encrypted on disk");

    // The server's keys are gone from this host; another key file stands in for the plugin the
    // backup loads (its tables are not encrypted): the binary log replays without the keys
    // that encrypted it.
    std::fs::remove_file(&keys).unwrap();
    let other = fx.path("other-keys.txt");
    std::fs::write(&other, format!("1;{}\n", "3e".repeat(32))).unwrap();
    let stand_in = format!("file_key_management_filename={}", other.display());
    let (code, _, err) = run(&[
        "restore",
        &prefix,
        "--until-gtid",
        &t1.gtid,
        "--to",
        &fx.s("r/data"),
        "--key-file",
        &key,
        "--prepare-option",
        &stand_in,
    ]);
    assert_eq!(code, 0, "{err}");
    let restored = Server::open(
        &fx.path("r"),
        &[
            "--plugin-load-add=file_key_management".into(),
            format!("--file-key-management-filename={}", other.display()),
        ],
    );
    assert_eq!(live::checksums(&restored, &tables).trim_end(), t1.checksums);
    assert_eq!(restored.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM sbtest.marker").trim(), "1,2");
}

/// A source for the smaller tests below: the binary log on (`extra` options), a backup user,
/// a replication user for the archive, and `sbtest.marker`; no sysbench tables.
fn small_source(fx: &Fixture, extra: &[&str]) -> Source {
    Scenario::new(fx)
        .opts(extra)
        .backup_user()
        .repl()
        .sql("CREATE DATABASE sbtest; CREATE TABLE sbtest.marker (id INT PRIMARY KEY, at BIGINT);")
        .start()
}

/// `coffer binlog archive` once, to the server's current end, under `binlogs`, with `extra`.
fn archive_once(fx: &Fixture, server: &Server, binlogs: &str, extra: &[&str]) {
    live::coffer_ok(&archive_args(fx, &socket_args(server), binlogs, extra));
}

/// Runs `sql` in a client of its own, in the background.
fn background(server: &Server, sql: &str) -> std::process::Child {
    client(server).args(["-e", sql]).stdout(std::process::Stdio::null()).spawn().unwrap()
}

/// Issue 26, item 3: a long statement is stamped when it began and logged when it commits, so
/// stamps do not rise along the log. Ten long INSERTs start together (stamped T0); M1 is
/// stamped T1, M2 the second after; the long ones commit after M2, into segments whose last
/// events are stamped T0; a second backup is taken after them. `--until T1` must give A and M1
/// only, from the first backup (the old binary search over the segments' last event times
/// chose the second backup and replayed nothing). Everything is signed, and a restore or drill
/// that requires the signer refuses an unsigned archive (item 3 of the brief's checks).
#[test]
fn until_a_time_walks_the_log_in_order_when_stamps_do_not_rise() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = small_source(&fx, &["--binlog-format=ROW"]);
    let signer = {
        let (code, out, err) = run(&["key", "generate", "--signing", "-o", &fx.s("backup.sig"), "-q"]);
        assert_eq!(code, 0, "{err}");
        String::from_utf8(out).unwrap().trim().to_owned()
    };
    let sign = ["--signing-key", &fx.s("backup.sig")].map(str::to_owned);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    std::fs::create_dir_all(fx.path("unsigned")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    let binlogs = format!("{prefix}binlog/");
    let backup = [live::backup_args(&fx, port, &prefix), sign.to_vec()].concat();

    live::coffer_ok(&backup);
    server.sql("INSERT INTO sbtest.marker VALUES (1, UNIX_TIMESTAMP())");
    // Five long statements end after 4 s, five after 8 s; all are stamped when they began.
    let quick: Vec<_> = (0..5)
        .map(|i| background(&server, &format!("INSERT INTO sbtest.marker SELECT {}, SLEEP(4)", 101 + i)))
        .collect();
    let mut slow: Vec<_> = (0..5)
        .map(|i| background(&server, &format!("INSERT INTO sbtest.marker SELECT {}, SLEEP(8)", 201 + i)))
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    server.sql("INSERT INTO sbtest.marker VALUES (2, UNIX_TIMESTAMP())");
    let t1: i64 = server.sql("SELECT at FROM sbtest.marker WHERE id = 2").trim().parse().unwrap();
    let m1_end = {
        let (file, pos) = master_status(&server);
        format!("{file}:{pos}")
    };
    while server.sql("SELECT UNIX_TIMESTAMP()").trim().parse::<i64>().unwrap() <= t1 {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.sql("INSERT INTO sbtest.marker VALUES (3, UNIX_TIMESTAMP())");
    // A segment ends after the quick ones, another after the slow ones: both end with events
    // stamped before T1.
    for mut c in quick {
        assert!(c.wait().unwrap().success());
    }
    archive_once(&fx, &server, &binlogs, &[&sign[0], &sign[1]]);
    assert!(slow.iter_mut().all(|c| c.try_wait().unwrap().is_none()), "the slow statements ended too early");
    for mut c in slow {
        assert!(c.wait().unwrap().success());
    }
    archive_once(&fx, &server, &binlogs, &[&sign[0], &sign[1]]);
    live::coffer_ok(&backup);
    server.sql("INSERT INTO sbtest.marker VALUES (4, UNIX_TIMESTAMP())");
    archive_once(&fx, &server, &binlogs, &[&sign[0], &sign[1]]);
    let unsigned = format!("file://{}/", fx.path("unsigned").display());
    archive_once(&fx, &server, &unsigned, &[]);

    let key = fx.key();
    let pitr = |to: &str, target: &[&str]| {
        let mut args = vec!["restore", &prefix, "--to", to, "--key-file", &key, "--require-signer", &signer];
        args.extend_from_slice(target);
        run(&args)
    };
    let markers = |dir: &str| {
        let restored = Server::open(&fx.path(dir), &[]);
        restored.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM sbtest.marker").trim().to_owned()
    };
    let (code, _, err) = pitr(&fx.s("r1/data"), &["--until", &utc(t1)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(markers("r1"), "1,2", "--until T1: {err}");
    // The same point by position, where M1 ends.
    let (code, _, err) = pitr(&fx.s("r2/data"), &["--until-position", &m1_end]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(markers("r2"), "1,2", "--until-position {m1_end}: {err}");

    // A drill to T1 chooses the same backup and stops at the same place.
    let (code, out, err) = run(&[
        "drill",
        &prefix,
        "--until",
        &utc(t1),
        "--scratch",
        &fx.s("scratch"),
        "--key-file",
        &key,
        "--require-signer",
        &signer,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let drilled: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("r1/data/coffer-pitr.json")).unwrap()).unwrap();
    assert_eq!(drilled["pitr"]["stop"], report["stop"], "{drilled}");
    assert_eq!(drilled["pitr"]["backups"], report["backups"], "{drilled}");

    // Unsigned segments are refused when a signer is required: exit 3, one line, nothing written.
    let (code, _, err) = pitr(&fx.s("bad/data"), &["--until", &utc(t1), "--binlogs", &unsigned]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not signed") && err.trim().lines().count() == 1, "{err}");
    assert!(!fx.path("bad/data").exists());
    let (code, _, err) = run(&[
        "drill",
        &prefix,
        "--until",
        &utc(t1),
        "--binlogs",
        &unsigned,
        "--scratch",
        &fx.s("scratch"),
        "--key-file",
        &key,
        "--require-signer",
        &signer,
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not signed"), "{err}");
}

/// Issue 26, item 4: one client session (`mariadb-binlog | mariadb`) holds every temporary
/// table the log creates, and MariaDB refuses to change its gtid_domain_id then (error 1953).
/// A session's temporary table (MIXED: logged as statements) is used across a transaction of
/// another session in GTID domain 1: `--replay-with client` is refused before anything is
/// restored, in one line naming the default; the SQL thread restores the exact state.
#[test]
fn client_replay_is_refused_up_front_when_a_temporary_table_spans_a_domain_change() {
    if !live::tools() {
        return;
    }
    use std::io::Write;
    let fx = Fixture::new();
    let Source { server, port, .. } = small_source(&fx, &["--binlog-format=MIXED"]);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    let binlogs = format!("{prefix}binlog/");
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));

    let mut session =
        client(&server).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut input = session.stdin.take().unwrap();
    writeln!(
        input,
        "CREATE TEMPORARY TABLE sbtest.tmp (id INT PRIMARY KEY); INSERT INTO sbtest.tmp VALUES (900), (901); \
         INSERT INTO sbtest.marker VALUES (10, 0);"
    )
    .unwrap();
    input.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.sql("SELECT COUNT(*) FROM sbtest.marker WHERE id = 10").trim() != "1" {
        assert!(std::time::Instant::now() < deadline, "the first session did not write");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.sql("SET SESSION gtid_domain_id = 1; INSERT INTO sbtest.marker VALUES (20, 0);");
    writeln!(input, "INSERT INTO sbtest.marker SELECT id, 1 FROM sbtest.tmp;").unwrap();
    drop(input);
    assert!(session.wait().unwrap().success());
    let gtid = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    assert!(gtid.contains("1-1-1") && gtid.contains(','), "two domains: {gtid}");
    let sums = live::checksums(&server, &["sbtest.marker".into()]);
    archive_once(&fx, &server, &binlogs, &[]);

    let key = fx.key();
    let pitr = |to: &str, extra: &[&str]| {
        let mut args = vec!["restore", &prefix, "--to", to, "--key-file", &key, "--until-gtid", &gtid];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, _, err) = pitr(&fx.s("bad/data"), &["--replay-with", "client"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line, before anything is restored: {err}");
    assert!(err.contains("temporary table") && err.contains("--replay-with sql-thread"), "{err}");
    assert!(!fx.path("bad/data").exists() && !fx.path("bad").read_dir().is_ok_and(|mut d| d.next().is_some()));

    let (code, _, err) = pitr(&fx.s("r/data"), &[]);
    assert_eq!(code, 0, "{err}");
    let restored = Server::open(&fx.path("r"), &[]);
    assert_eq!(live::checksums(&restored, &["sbtest.marker".into()]), sums);
    assert_eq!(restored.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM sbtest.marker").trim(), "10,20,900,901");
    assert_eq!(restored.sql("SELECT @@gtid_slave_pos").trim(), gtid);
}

/// Issue 26, "hostile binary log segments": what a log makes the replay server do stays in its
/// directories. A `CREATE TABLE ... DATA DIRECTORY` outside the datadir (a statement any
/// source server logs, and that a forged segment can hold as well) makes no file outside:
/// the replay server follows no such link (`--skip-symbolic-links`) and, as root, sees every
/// other file system read-only (a mount namespace of its own). (1439a9e's replay server, as
/// root, created the table's files there.)
#[test]
fn the_replay_server_writes_nothing_outside_its_directories() {
    if !live::tools() || !nix::unistd::geteuid().is_root() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = small_source(&fx, &[]);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    let binlogs = format!("{prefix}binlog/");
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    // A directory the replay server's user could write to (mysql's, as another server's
    // datadir would be).
    let outside = fx.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mysql = nix::unistd::User::from_name("mysql").unwrap().expect("the mysql user");
    nix::unistd::chown(&outside, Some(mysql.uid), Some(mysql.gid)).unwrap();
    server.sql(&format!(
        "CREATE TABLE sbtest.elsewhere (id INT PRIMARY KEY) ENGINE=InnoDB DATA DIRECTORY='{}'; \
         INSERT INTO sbtest.elsewhere VALUES (1);",
        outside.display()
    ));
    let until = {
        let (file, pos) = master_status(&server);
        format!("{file}:{pos}")
    };
    // The source's own files go; only the replay could make them again.
    server.sql("DROP TABLE sbtest.elsewhere; INSERT INTO sbtest.marker VALUES (1, 0);");
    assert!(!outside.join("sbtest/elsewhere.ibd").exists());
    archive_once(&fx, &server, &binlogs, &[]);

    let to = fx.path("r/data");
    let key = fx.key();
    let (code, _, err) =
        run(&["restore", &prefix, "--to", to.to_str().unwrap(), "--key-file", &key, "--until-position", &until]);
    assert_eq!(code, 0, "{err}");
    assert!(!outside.join("sbtest/elsewhere.ibd").exists(), "the replay wrote outside its directories");
    let restored = Server::open(&fx.path("r"), &[]);
    assert_eq!(restored.sql("SELECT id FROM sbtest.elsewhere").trim(), "1", "the table, inside the datadir");
}
