//! Jobs side by side on one repository, for a bounded time (issue 26): against an S3 server
//! (moto), the binary log archiver follows a MariaDB server under sysbench while backups (full,
//! incremental, differential), prunes and drills run in loops, each job a process of its own.
//! Afterwards: every job succeeded, no two backups took one name, every kept backup's chain is
//! whole, and every checkpoint of the recovery window restores exactly (CHECKSUM TABLE of every
//! table, taken under a read lock at that instant).
//!
//! `COFFER_SOAK_SECONDS` sets how long the loops run (default 120).

mod common;

use common::live::{self, free_port};
use common::mariadb::Server;
use common::s3::S3;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PREFIX: &str = "s3://soak/prod/";
const BINLOGS: &str = "s3://soak/prod/binlog/";
/// The recovery window prune keeps; the checkpoints fall in its last part.
const WINDOW: u64 = 100;

/// One run of a job in a loop: what it was, its exit code and stderr.
type Run = (String, i32, String);

/// Runs `args` through the S3 test server's environment; returns the exit code, stdout, stderr.
fn run(s3: &S3, args: &[String]) -> (i32, String, String) {
    let out = s3.coffer().args(args).stdin(std::process::Stdio::null()).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A job run again and again until `stop`, `pause` apart; each run's outcome kept.
fn repeat<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    s3: &'scope S3,
    stop: &'scope AtomicBool,
    runs: &'scope Mutex<Vec<Run>>,
    pause: Duration,
    job: impl Fn(usize) -> Vec<String> + Send + 'scope,
) {
    scope.spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let args = job(n);
            let (code, stdout, stderr) = run(s3, &args);
            runs.lock().unwrap().push((format!("{} {}", args[0], args[1..].join(" ")), code, stdout + &stderr));
            n += 1;
            std::thread::sleep(pause);
        }
    });
}

struct Checkpoint {
    time: i64,
    checksums: String,
}

/// Every table's checksum under FLUSH TABLES WITH READ LOCK, the lock held into the next
/// second (everything later is stamped later).
fn checkpoint(server: &Server, tables: &[String], marker: u32) -> Checkpoint {
    server.sql(&format!("INSERT INTO sbtest.marker VALUES ({marker}, NOW())"));
    let out = server.sql(&format!(
        "FLUSH TABLES WITH READ LOCK; CHECKSUM TABLE {}; SELECT UNIX_TIMESTAMP(); SELECT SLEEP(1.2); UNLOCK TABLES;",
        tables.join(", ")
    ));
    let lines: Vec<&str> = out.lines().collect();
    let n = tables.len();
    Checkpoint { checksums: lines[..n].join("\n"), time: lines[n].trim().parse().unwrap() }
}

fn utc(t: i64) -> String {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%F %T"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn jobs_side_by_side_on_one_repository() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("soak");
    let seconds: u64 = std::env::var("COFFER_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let fx = Fixture::new();
    let port = free_port();
    let server = live::source(&fx, port, &["--binlog-format=ROW".into()]);
    server.sql(
        "CREATE TABLE sbtest.marker (id INT PRIMARY KEY, at DATETIME); \
         CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost';",
    );
    fx.write_secret("repl-pw", "repl-pw\n");
    let tables = live::tables(&server);
    let key = fx.key();
    for d in ["scratch", "drills"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let archiver = s3
        .coffer()
        .args(["binlog", "archive", "-S", &server.socket.display().to_string(), "-u", "repl"])
        .args(["--password-file", &fx.s("repl-pw"), "-o", BINLOGS, "--key-file", &key])
        .args(["--follow", "--segment-time", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let backup = live::backup_args(&fx, port, PREFIX);
    assert_eq!(run(&s3, &backup).0, 0, "the first full backup");
    let mut load = live::sysbench(&server, "run", &[&format!("--time={}", seconds + 5), "--rate=40"]);

    let stop = AtomicBool::new(false);
    let runs: Mutex<Vec<Run>> = Mutex::default();
    let started = Instant::now();
    let mut checkpoints = Vec::new();
    std::thread::scope(|scope| {
        // Backups: a full every fourth run, incrementals between.
        let b = backup.clone();
        repeat(scope, &s3, &stop, &runs, Duration::from_secs(2), move |n| {
            let mut args = b.clone();
            if n % 4 != 3 {
                args.push("--incremental".into());
            }
            args.push("--json".into());
            args
        });
        // Another timer: differentials.
        let b = backup.clone();
        repeat(scope, &s3, &stop, &runs, Duration::from_secs(7), move |_| {
            let mut args = b.clone();
            args.extend(["--differential".into(), "--json".into()]);
            args
        });
        // Prunes: the newest, and point-in-time recovery over the window.
        let k = key.clone();
        repeat(scope, &s3, &stop, &runs, Duration::from_secs(3), move |_| {
            ["prune", PREFIX, "--keep-last", "1", "--keep-pitr", &format!("{WINDOW}s"), "--key-file", &k]
                .map(String::from)
                .to_vec()
        });
        // Drills of the newest backup.
        let (k, scratch) = (key.clone(), fx.s("drills"));
        repeat(scope, &s3, &stop, &runs, Duration::from_secs(1), move |_| {
            ["drill", PREFIX, "--scratch", &scratch, "--key-file", &k].map(String::from).to_vec()
        });
        // Checkpoints in the window's last part.
        for (i, at) in [seconds * 2 / 5, seconds * 3 / 5, seconds * 4 / 5].into_iter().enumerate() {
            let wait = Duration::from_secs(at).saturating_sub(started.elapsed());
            std::thread::sleep(wait);
            checkpoints.push(checkpoint(&server, &tables, i as u32 + 1));
        }
        std::thread::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed()));
        stop.store(true, Ordering::Relaxed);
    });
    load.wait().unwrap();
    let runs = runs.into_inner().unwrap();

    // Every job succeeded.
    let failed: Vec<&Run> = runs.iter().filter(|r| r.1 != 0).collect();
    assert!(failed.is_empty(), "{} of {} runs failed: {failed:#?}", failed.len(), runs.len());
    let count = |job: &str| runs.iter().filter(|r| r.0.starts_with(job)).count();
    eprintln!("soak: {} s, {} backups, {} prunes, {} drills", seconds, count("backup"), count("prune"), count("drill"));
    assert!(count("backup") >= 4 && count("prune") >= 4 && count("drill") >= 2, "{runs:#?}");
    // No two backups took one name.
    let mut names: Vec<String> = runs
        .iter()
        .filter(|r| r.0.starts_with("backup"))
        .map(|r| {
            let json = r.2.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{}", r.2));
            serde_json::from_str::<serde_json::Value>(json).unwrap()["output"].as_str().unwrap().to_owned()
        })
        .collect();
    let all = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all, "names taken twice");

    // The archive catches up with the server's end; one more prune as the loops ran it.
    server.sql("FLUSH BINARY LOGS");
    let status = server.sql("SHOW MASTER STATUS");
    let mut end = status.split('\t');
    let (end_file, end_pos) = (end.next().unwrap().to_owned(), end.next().unwrap().parse::<u64>().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list, _) = run(&s3, &["binlog", "list", BINLOGS, "--json"].map(String::from));
        let segments: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
        let reached = segments.as_array().and_then(|a| a.last()).is_some_and(|s| {
            s["file"].as_str() == Some(end_file.as_str()) && s["end"].as_u64().is_some_and(|e| e >= end_pos)
        });
        if reached {
            break;
        }
        assert!(Instant::now() < deadline, "the archive did not reach {end_file}:{end_pos}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(archiver.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let out = archiver.wait_with_output().unwrap();
    assert!(out.status.success(), "the archiver: {}", String::from_utf8_lossy(&out.stderr));
    let prune =
        ["prune", PREFIX, "--keep-last", "1", "--keep-pitr", &format!("{WINDOW}s"), "--key-file", &key, "--json"];
    let (code, plan, err) = run(&s3, &prune.map(String::from));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let kept: Vec<String> = plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["keep"] == true)
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.len() > kept.len(), "some backups were pruned: {} made, {} kept", names.len(), kept.len());

    // Every kept backup's chain is whole.
    for name in &kept {
        let (code, _, err) =
            run(&s3, &["verify", &format!("{PREFIX}{name}"), "--chain", "--key-file", &key, "-q"].map(String::from));
        assert_eq!(code, 0, "verify --chain {name}: {err}");
    }
    // Every checkpoint restores exactly.
    for (i, c) in checkpoints.iter().enumerate() {
        let to = fx.path(&format!("at{i}/data"));
        let until = utc(c.time);
        let (code, _, err) = run(
            &s3,
            &["restore", PREFIX, "--until", &until, "--to", to.to_str().unwrap(), "--key-file", &key].map(String::from),
        );
        assert_eq!(code, 0, "restore --until {until}: {err}");
        let restored = Server::open(&fx.path(&format!("at{i}")), &[]);
        let sums = live::checksums(&restored, &tables);
        assert_eq!(sums.trim_end(), c.checksums.trim_end(), "checkpoint {i} ({until})");
    }
}
