//! The database server crashes (issue 28, part 4), against a real MariaDB: sysbench writes
//! while `binlog archive --follow` runs; mariadbd is killed (`kill -9`) in the middle of a
//! transaction, restarts (its binary log crash recovery; with another server_id, and a new
//! replication domain), and more is written. The crashed
//! file ends with neither ROTATE nor STOP; the archive crosses the restart because nothing is
//! missing (the next file's GTID_LIST against the last transaction archived), `restore --until`
//! a point after the crash gives exactly the state taken there, and a tail deleted from the
//! archive is a gap that point-in-time recovery refuses to cross, in one line naming what is
//! missing.

mod common;

use common::live;
use common::mariadb::Server;
use common::scenario::*;
use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The type codes of the events of a binary log file, in order (whole events only).
fn event_types(file: &Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    let (mut pos, mut types) = (4usize, Vec::new());
    while pos + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[pos + 9..pos + 13].try_into().unwrap()) as usize;
        if size < 19 || pos + size > bytes.len() {
            break;
        }
        types.push(bytes[pos + 4]);
        pos += size;
    }
    types
}

/// A source under sysbench (ROW binary log, a marker table, `sql`), a full backup of it in a
/// `file://` repository, and the archiver following it there with one-second segments: the
/// source, the tables to compare (the marker last), the repository and its `binlog/` prefix.
struct Crashing {
    src: Source,
    tables: Vec<String>,
    repo: String,
    binlogs: String,
    follower: Follower,
}

fn crashing(fx: &Fixture, sql: &str) -> Crashing {
    let src = Scenario::new(fx).opts(&["--binlog-format=ROW"]).sysbench().repl().marker().sql(sql).start();
    let tables = src.tables_marker_last();
    std::fs::create_dir_all(fx.path("repo/binlog")).unwrap();
    let repo = format!("file://{}/", fx.path("repo").display());
    let binlogs = format!("{repo}binlog/");
    let follower =
        Follower::start(&archive_args(fx, &socket_args(&src.server), &binlogs, &["--follow", "--segment-time", "1"]));
    live::coffer_ok(&live::backup_args(fx, src.port, &repo));
    Crashing { src, tables, repo, binlogs, follower }
}

/// The server's current end, once the archive has reached it; the archiver stopped, and what
/// it said (never a gap).
fn archived_to_the_end(server: &Server, follower: Follower, binlogs: &str) -> (String, u64, String) {
    let (end_file, end_pos) = master_status(server);
    wait_until("the archive reaches the server's end", 120, &follower, || {
        listed(binlogs, None).last().is_some_and(|l| l["file"] == end_file.as_str() && l["end"] == end_pos)
    });
    let said = follower.stop();
    assert!(!said.contains("gap"), "{said}");
    (end_file, end_pos, said)
}

/// The server's mariadbd, killed with SIGKILL (its pid from its pid file: the process this
/// test started), and reaped.
fn kill_9(server: Server) {
    let pid: i32 = std::fs::read_to_string(server.dir.join("mysqld.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    // Dropping it reaps the child (its shutdown request finds no server).
    drop(server);
}

#[test]
fn a_crash_mid_transaction_is_crossed_and_a_lost_tail_is_a_gap() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Crashing { src, tables, repo, binlogs, follower } =
        crashing(&fx, "CREATE TABLE sbtest.big (id INT PRIMARY KEY, v TEXT);");
    let Source { server, mut opts, .. } = src;
    let key = fx.key();
    live::sysbench(&server, "run", &["--time=3"]).wait().unwrap();
    // A second replication domain before the crash.
    server.sql("SET SESSION gtid_domain_id = 1; INSERT INTO sbtest.marker VALUES (10, NOW())");

    // The crash: sysbench writing, a long INSERT ... SELECT running in an explicit transaction
    // that has already written a marker row; kill -9 while it runs.
    let mut load = live::sysbench(&server, "run", &["--time=60"]);
    let mut open = client(&server)
        .arg("-e")
        .arg(
            "BEGIN; INSERT INTO sbtest.marker VALUES (100, NOW()); \
             INSERT INTO sbtest.big SELECT seq, REPEAT('x', 500) FROM sbtest.seq_1_to_50000000; COMMIT;",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server
        .sql("SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO sbtest.big%'")
        .trim()
        != "1"
    {
        assert!(Instant::now() < deadline, "the long INSERT did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(open.try_wait().unwrap().is_none(), "the long transaction is still running");
    let before = server_logs(&server);
    let crashed = before.last().unwrap().0.clone();
    kill_9(server);
    let _ = load.wait();
    let _ = open.wait();
    let types = event_types(&fx.path("src/data").join(&crashed));
    let last = *types.last().unwrap();
    assert!(last != 3 && last != 4, "{crashed} ends with neither STOP (3) nor ROTATE (4): {types:?}");

    // Restart, with another server_id: crash recovery rolls the open transaction back; more
    // writes (a third domain appears), then the point to recover to, then more.
    opts.push("--server-id=2".into());
    let server = Server::open(&fx.path("src"), &opts);
    server.sql("SET SESSION gtid_domain_id = 2; INSERT INTO sbtest.marker VALUES (20, NOW())");
    assert_eq!(server.sql("SELECT COUNT(*) FROM sbtest.big").trim(), "0", "rolled back");
    let after = server_logs(&server);
    let next = &after.iter().position(|(f, _)| *f == crashed).map(|i| after[i + 1].0.clone()).unwrap();
    live::sysbench(&server, "run", &["--time=3"]).wait().unwrap();
    let s = mark(&server, &tables, 2);
    assert!(s.gtid.contains("0-2-") && s.gtid.contains("1-1-1") && s.gtid.contains("2-2-1"), "{}", s.gtid);
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    server.sql("FLUSH BINARY LOGS; INSERT INTO sbtest.marker VALUES (3, NOW())");
    let (end_file, end_pos, _) = archived_to_the_end(&server, follower, &binlogs);

    // The archive crosses the crash: no gap, and the restart is where the crashed file ends
    // (or, if the restarted server had more of the file than was archived, the archiver
    // fetched it and the file is complete).
    let segments = listed(&binlogs, Some(&key));
    assert!(segments.iter().all(|s| s["gap_before"] == false), "{segments:#?}");
    let of_crashed: Vec<&serde_json::Value> = segments.iter().filter(|s| s["file"] == crashed.as_str()).collect();
    let tail = *of_crashed.last().expect("the crashed file is archived");
    let first_next = segments.iter().find(|s| s["file"] == next.as_str()).unwrap();
    assert!(
        first_next["restart_before"] == true || tail["closed"] == true,
        "the restart after {crashed}: {tail:#?} {first_next:#?}"
    );
    eprintln!(
        "crashed {crashed}: archived to {} ({} bytes on the server after the restart), restart_before {}",
        tail["end"],
        after.iter().find(|(f, _)| *f == crashed).unwrap().1,
        first_next["restart_before"]
    );

    // The catalog recovers the backup to the archive's end; the files fetched are the server's.
    let (code, out, err) = run(&["catalog", &repo, "--key-file", &key]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(&format!("recoverable to {end_file}:{end_pos}")) && !text.contains("GAP"), "{text}");
    let fetched = fx.path("fetched");
    let (code, _, err) = run(&["binlog", "fetch", &binlogs, "--to-dir", fetched.to_str().unwrap(), "--key-file", &key]);
    assert_eq!(code, 0, "{err}");
    for (file, size) in server_logs(&server) {
        assert_eq!(std::fs::metadata(fetched.join(&file)).unwrap().len(), size, "{file}");
    }

    // Recovery to the point after the crash, by GTID and by time: exactly the state taken.
    let pitr = |to: &str, target: &[&str]| {
        let mut args = vec!["restore", repo.as_str(), "--to", to, "--key-file", &key];
        args.extend_from_slice(target);
        run(&args)
    };
    let (code, _, err) = pitr(&fx.s("r1/data"), &["--until-gtid", &s.gtid]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(restored_state(&fx.path("r1"), &tables), (s.checksums.clone(), "2,10,20".into()), "by GTID");
    let (code, _, err) = pitr(&fx.s("r2/data"), &["--until", &utc(s.time)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(restored_state(&fx.path("r2"), &tables), (s.checksums.clone(), "2,10,20".into()), "by time");

    // The crashed file's tail lost from the archive: a gap, said with what is missing, and
    // recovery past it refused in one line, nothing written.
    let name = format!(
        "{}_{:010}_{:010}{}.coffer",
        crashed,
        tail["start"].as_u64().unwrap(),
        tail["end"].as_u64().unwrap(),
        if tail["closed"] == true { "-closed" } else { "" }
    );
    std::fs::remove_file(fx.path("repo/binlog").join(&name)).unwrap();
    let segments = listed(&binlogs, Some(&key));
    let gaps: Vec<&serde_json::Value> = segments.iter().filter(|s| s["gap_before"] == true).collect();
    assert_eq!(gaps.len(), 1, "{segments:#?}");
    let what = gaps[0]["gap"].as_str().unwrap();
    assert!(what.contains(&crashed) && what.contains("domain 0: sequence"), "{what}");
    if first_next["restart_before"] == true {
        // The size the restarted server reported, in the next file's first segment.
        assert!(what.contains(&format!("bytes {}..{}", tail["start"], tail["end"])), "{what}");
    }
    let (code, _, err) = run(&["binlog", "fetch", &binlogs, "--to-dir", &fx.s("fetched2"), "--key-file", &key]);
    assert!(code == 1 && err.trim().lines().count() == 1 && err.contains("gap"), "{err}");
    let (_, out, _) = run(&["catalog", &repo, "--key-file", &key]);
    assert!(String::from_utf8_lossy(&out).contains("GAP"));
    let (code, _, err) = pitr(&fx.s("bad/data"), &["--until-gtid", &s.gtid]);
    assert_eq!(code, 1, "{err}");
    assert!(err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("gap") && err.contains(&crashed) && err.contains("domain 0: sequence"), "{err}");
    assert!(!fx.path("bad/data").exists(), "nothing written");

    // And the segment before the lost tail renamed `-closed` (anyone who can write the store
    // can): by names the file is complete, but its sealed description says not; recovery
    // refuses it in one line naming the object, and does not replay past the lost tail.
    let Some(last) = segments.iter().rfind(|s| s["file"] == crashed.as_str()) else { return };
    let unclosed =
        format!("{crashed}_{:010}_{:010}.coffer", last["start"].as_u64().unwrap(), last["end"].as_u64().unwrap());
    let dir = fx.path("repo/binlog");
    std::fs::rename(dir.join(&unclosed), dir.join(unclosed.replace(".coffer", "-closed.coffer"))).unwrap();
    let (code, _, err) = pitr(&fx.s("forged/data"), &["--until-gtid", &s.gtid]);
    assert_eq!(code, 1, "{err}");
    assert!(err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("-closed.coffer: its name is not its description's (its closed is false)"), "{err}");
    assert!(!fx.path("forged/data").exists(), "nothing written");
}

/// The events of a binary log file: where each starts, its type, its bytes.
fn events(bytes: &[u8]) -> Vec<(usize, u8, &[u8])> {
    let (mut pos, mut out) = (4usize, Vec::new());
    while pos + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[pos + 9..pos + 13].try_into().unwrap()) as usize;
        if size < 19 || pos + size > bytes.len() {
            break;
        }
        out.push((pos, bytes[pos + 4], &bytes[pos..pos + size]));
        pos += size;
    }
    out
}

/// Appends to the binary log file `path` what a crash in the middle of writing a transaction
/// leaves: the file's last transaction again, with the next sequence number, but for its XID
/// event (each event's position and checksum made right); `torn`: its last event cut short
/// too. Returns the GTID's sequence number and where the whole events end.
fn append_unfinished(path: &Path, torn: bool) -> (u64, u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let all = events(&bytes);
    let gtid = all.iter().rposition(|e| e.1 == 0xa2).expect("a GTID event");
    let xid = gtid + all[gtid..].iter().position(|e| e.1 == 16).expect("its XID event");
    let delta = (bytes.len() - all[gtid].0) as u32;
    let mut tail = Vec::new();
    for (_, _, e) in &all[gtid..xid] {
        let mut e = e.to_vec();
        let n = e.len() - 4;
        assert_eq!(coffer_mysql::events::crc32(&e[..n]).to_le_bytes(), e[n..], "CRC-32 checksums");
        let log_pos = u32::from_le_bytes(e[13..17].try_into().unwrap()) + delta;
        e[13..17].copy_from_slice(&log_pos.to_le_bytes());
        tail.push(e);
    }
    let seq = u64::from_le_bytes(tail[0][19..27].try_into().unwrap()) + 1;
    tail[0][19..27].copy_from_slice(&seq.to_le_bytes());
    for e in &mut tail {
        let n = e.len() - 4;
        let crc = coffer_mysql::events::crc32(&e[..n]);
        e[n..].copy_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(e);
    }
    let whole = bytes.len() as u64;
    if torn {
        let last = tail.last().unwrap().len();
        bytes.truncate(bytes.len() - last / 2);
        assert!(last > 30);
        std::fs::write(path, bytes).unwrap();
        return (seq, whole - last as u64);
    }
    std::fs::write(path, bytes).unwrap();
    (seq, whole)
}

/// A crash in the middle of writing a transaction to the binary log leaves its first events
/// without its XID; the restarted server's crash recovery drops it and gives its sequence
/// number to its next transaction. The archiver, which had the file to where the server had
/// written it whole, reads the rest of it (the restarted server reports it longer), and
/// point-in-time recovery across it (and across a clean restart after it) replays the restarted
/// server's transaction, never the unfinished one (which, replayed, would insert a row again).
#[test]
fn an_unfinished_transaction_at_a_crashed_files_end_is_archived_and_not_replayed() {
    unfinished_transaction_at_a_crashed_files_end(false);
}

/// The same, the crash having torn the unfinished transaction's last event: the restarted
/// server cannot send the rest of the file (ERROR 1236, "binlog truncated in the middle of
/// event"), and the archiver, which stopped there for good before, says so once and goes on
/// from the next file; nothing is missing, the restart is crossed.
#[test]
fn a_torn_event_at_a_crashed_files_end_is_passed_and_the_restart_crossed() {
    unfinished_transaction_at_a_crashed_files_end(true);
}

fn unfinished_transaction_at_a_crashed_files_end(torn: bool) {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Crashing { src, tables, repo, binlogs, follower } = crashing(&fx, "");
    let Source { server, opts, .. } = src;
    let key = fx.key();
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    server.sql("INSERT INTO sbtest.marker VALUES (50, NOW())");
    let logs = server_logs(&server);
    let (crashed, written) = logs.last().unwrap().clone();
    wait_until("the archive reaches the server's end", 120, &follower, || {
        listed(&binlogs, None).last().is_some_and(|l| l["file"] == crashed.as_str() && l["end"] == written)
    });
    kill_9(server);
    let (unfinished, whole) = append_unfinished(&fx.path("src/data").join(&crashed), torn);

    let server = Server::open(&fx.path("src"), &opts);
    let pos = server.sql("SELECT @@gtid_binlog_pos");
    assert_eq!(pos.trim(), format!("0-1-{}", unfinished - 1), "crash recovery dropped the unfinished one");
    let longer = server_logs(&server).iter().find(|(f, _)| *f == crashed).unwrap().1;
    assert!(longer > written, "the restarted server has more of {crashed} than was archived");
    server.sql("INSERT INTO sbtest.marker VALUES (60, NOW())");
    assert_eq!(server.sql("SELECT @@gtid_binlog_pos").trim(), format!("0-1-{unfinished}"), "its number reused");
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();
    // And a clean restart: that file ends with STOP, and no ROTATE either.
    let mut server = server;
    server.stop();
    let server = Server::open(&fx.path("src"), &opts);
    live::sysbench(&server, "run", &["--time=1"]).wait().unwrap();
    let s = mark(&server, &tables, 2);
    server.sql("FLUSH BINARY LOGS; INSERT INTO sbtest.marker VALUES (3, NOW())");
    let (_, _, said) = archived_to_the_end(&server, follower, &binlogs);
    let torn_lines = said.lines().filter(|l| l.contains("torn by a crash")).count();
    assert_eq!(torn_lines, usize::from(torn), "{said}");

    // The archive holds the crashed file as the restarted server has it: whole, or to its
    // torn event, and the restart is crossed.
    let segments = listed(&binlogs, Some(&key));
    assert!(segments.iter().all(|s| s["gap_before"] == false), "{segments:#?}");
    let tail = segments.iter().rfind(|s| s["file"] == crashed.as_str()).unwrap();
    let end = if torn { whole } else { longer };
    assert_eq!((&tail["end"], &tail["closed"]), (&serde_json::json!(end), &serde_json::json!(!torn)), "{tail:#?}");
    assert_eq!(longer, std::fs::metadata(fx.path("src/data").join(&crashed)).unwrap().len());

    for (to, applier) in [("r1", "sql-thread"), ("r2", "client")] {
        let data = fx.s(&format!("{to}/data"));
        let args =
            ["restore", &repo, "--to", &data, "--key-file", &key, "--until-gtid", &s.gtid, "--replay-with", applier];
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{applier}: {err}");
        let state = restored_state(&fx.path(to), &tables);
        assert_eq!(state, (s.checksums.clone(), "2,50,60".into()), "{applier}");
    }
    if torn {
        return;
    }
    // Until the number the crash freed: the restarted server's transaction (row 60) is
    // replayed, by either applier (the default's and the client's walk alike).
    let freed = format!("0-1-{unfinished}");
    for (to, applier) in [("r3", None), ("r4", Some("client"))] {
        let data = fx.s(&format!("{to}/data"));
        let mut args = vec!["restore", &repo, "--to", &data, "--key-file", &key, "--until-gtid", &freed];
        args.extend(applier.iter().flat_map(|a| ["--replay-with", a]));
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{applier:?}: {err}");
        let (_, markers) = restored_state(&fx.path(to), &tables);
        assert_eq!(markers, "50,60", "{applier:?}: replay stopped before the restarted server's {freed}");
    }
}

/// Issue 28, part 4 (second round): a file complete by its segments' names only. The segment
/// before the file's lost tail is copied under a `-closed` name (anyone who can write the
/// store can): `binlog fetch` wrote the file as if whole and `catalog` showed the backup
/// recoverable past it; now both follow point-in-time recovery's rule, read with the key,
/// and say where the archive is known complete to. Without a key, the catalog says the
/// names decide.
#[test]
fn a_file_complete_by_name_only_is_neither_fetched_nor_recoverable_past() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = Scenario::new(&fx).sysbench().repl().marker().start();
    let key = fx.key();
    std::fs::create_dir_all(fx.path("repo/binlog")).unwrap();
    let repo = format!("file://{}/", fx.path("repo").display());
    let binlogs = format!("{repo}binlog/");
    let archive = || {
        let (code, _, err) = run_args(&archive_args(&fx, &socket_args(&server), &binlogs, &[]));
        assert_eq!(code, 0, "{err}");
    };
    live::coffer_ok(&live::backup_args(&fx, port, &repo));
    let first = server_logs(&server).last().unwrap().0.clone();
    server.sql("INSERT INTO sbtest.marker VALUES (1, NOW())");
    archive();
    // The file's tail, its ROTATE, and the next file.
    server.sql(
        "INSERT INTO sbtest.marker VALUES (2, NOW()); FLUSH BINARY LOGS; INSERT INTO sbtest.marker VALUES (3, NOW())",
    );
    archive();
    let segments = listed(&binlogs, Some(&key));
    let ours: Vec<&serde_json::Value> = segments.iter().filter(|s| s["file"] == first.as_str()).collect();
    assert!(ours.len() >= 2 && ours.last().unwrap()["closed"] == true, "{segments:#?}");
    let (a, b) = (ours[ours.len() - 2], ours[ours.len() - 1]);
    let name = |s: &serde_json::Value, closed: bool| {
        let tail = if closed { "-closed" } else { "" };
        format!("{first}_{:010}_{:010}{tail}.coffer", s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap())
    };
    let dir = fx.path("repo/binlog");
    std::fs::remove_file(dir.join(name(b, true))).unwrap();
    std::fs::rename(dir.join(name(a, false)), dir.join(name(a, true))).unwrap();
    let known = format!("the archive is known complete to {first}:{}", a["end"]);

    let (code, _, err) = run(&["binlog", "fetch", &binlogs, "--to-dir", &fx.s("fetched"), "--key-file", &key]);
    assert_eq!(code, 1, "{err}");
    assert!(err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("by its segments' names only") && err.contains(&known), "{err}");
    assert!(err.contains("its name is not its description's (its closed is false)"), "{err}");
    assert!(!fx.path("fetched").join(&first).exists(), "nothing that looks whole");
    let (_, out, _) = run(&["catalog", &repo, "--key-file", &key]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(&format!("recoverable to {first}:{}", a["end"])) && text.contains("GAP"), "{text}");
    // Without a key: by names, and said.
    let (_, out, _) = run(&["catalog", &repo]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("(by the segments' names: without a key"), "{text}");
}
