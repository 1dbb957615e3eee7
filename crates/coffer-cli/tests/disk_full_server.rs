//! The disk fills (issue 28, part 2) under the jobs that need a server: `binlog archive` into
//! a `file://` prefix, `binlog fetch`, a chain restore beside its target (`restore --prepare`,
//! and `restore --until`, which stages its chain the same way) and `drill --scratch`. What each
//! must do is said in disk_full.rs.

mod common;

use common::live::*;
use common::mariadb::{self, Server};
use common::scenario::*;
use common::tmpfs::{error_line, names, names_the_fs, Tmpfs};
use common::*;
use std::path::Path;

/// A server with the binary log on and a user `repl` that may read it; two binary log files
/// of about a megabyte each.
fn binlog_server(fx: &Fixture) -> Server {
    Scenario::new(fx).opts(&["--binlog-format=ROW"]).repl().sql(TWO_LOGS).start().server
}

/// `coffer binlog archive` of `server` into `prefix` (a run that ends at the log's end).
fn archive(fx: &Fixture, server: &Server, prefix: &str) -> (i32, String) {
    let (code, _, err) = run_args(&archive_args(fx, &socket_args(server), prefix, &["--segment-size", "64K"]));
    (code, err)
}

/// Files in `dir` and below that are neither segments nor the catalog records beside them:
/// what a store left half-written (a record without its segment is one too).
fn not_segments(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for n in names(&d) {
            let p = d.join(&n);
            let segment = n.ends_with(".coffer") && !n.starts_with('.') && !n.contains('#');
            let record = n.strip_suffix(".meta").is_some_and(|s| s.ends_with(".coffer") && d.join(s).is_file());
            if p.is_dir() {
                todo.push(p);
            } else if !segment && !record {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// `binlog archive` into a `file://` prefix on a file system that fills: one line naming it,
/// no segment half-written, no gap; the same command completes once there is room. Then
/// `binlog fetch`: refused before it writes where the files cannot fit; where they fit but
/// their last pages do not (a ballast), nothing is left under a binary log's name, and the
/// same command completes once the ballast goes.
#[test]
fn binary_logs_archived_and_fetched_on_a_full_disk() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let server = binlog_server(&fx);
    let Some(fs) = Tmpfs::mount(&fx.path("arch"), "512k") else { return };
    let prefix = format!("file://{}/binlog/", fs.path.display());
    let (code, err) = archive(&fx, &server, &prefix);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(not_segments(&fs.path), Vec::<String>::new(), "nothing half-written");
    let stored = names(&fs.path.join("binlog")).len();
    assert!(stored > 0, "some segments were stored before the disk filled");
    let list = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert!(!list.contains("gap"), "{list}");

    fs.resize("16m");
    let (code, err) = archive(&fx, &server, &prefix);
    assert_eq!(code, 0, "the same command completes: {err}");
    let list = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert!(!list.contains("gap") && names(&fs.path.join("binlog")).len() > stored, "{list}");

    // Following the server, the archiver ends on a full disk in one line (systemd restarts it);
    // the next run, with room, takes up where the archive ends: no gap.
    let ballast = fs.ballast(64 * 1024);
    let follower = {
        coffer()
            .args(archive_args(&fx, &socket_args(&server), &prefix, &["--segment-size", "64K", "--follow"]))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000;");
    let out = wait_exit(follower, 60);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert_eq!(
        not_segments(&fs.path).iter().filter(|p| !p.ends_with("ballast")).count(),
        0,
        "{:?}",
        not_segments(&fs.path)
    );
    std::fs::remove_file(ballast).unwrap();
    let (code, err) = archive(&fx, &server, &prefix);
    assert_eq!(code, 0, "{err}");
    let list = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert!(!list.contains("gap"), "{list}");

    // The fetch: too small for the files, then room for them but not for their last pages.
    let Some(out) = Tmpfs::mount(&fx.path("out"), "512k") else { return };
    let to = out.s("logs");
    let fetch = ["binlog", "fetch", &prefix, "--to-dir", &to, "--key-file", &fx.key()];
    let (code, _, err) = run(&fetch);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &out);
    assert!(line.contains("needs") && line.contains("missing"), "before it writes: {line}");
    assert_eq!(names(Path::new(&to)), Vec::<String>::new());

    out.resize("16m");
    let sizes: Vec<u64> =
        server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').nth(1).unwrap().parse().unwrap()).collect();
    let exact: u64 = sizes.iter().sum();
    let pages: u64 = sizes.iter().map(|s| s.div_ceil(4096) * 4096).sum();
    let leave = exact.div_ceil(4096) * 4096;
    assert!(leave < pages, "the files' last pages do not fit: {sizes:?}");
    let ballast = out.ballast(leave);
    let (code, _, err) = run(&fetch);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &out);
    assert!(line.contains("ran out of room") && line.contains("No space left on device"), "{line}");
    assert_eq!(names(Path::new(&to)), Vec::<String>::new(), "no binary log under its name, no temporary");

    std::fs::remove_file(ballast).unwrap();
    let (code, _, err) = run(&fetch);
    assert_eq!(code, 0, "the same command completes: {err}");
    fetched_as_on_the_server(&server, Path::new(&to));
}

/// A table of a thousand short rows.
const SMALL_TABLE: &str = "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
    INSERT INTO d.t SELECT seq, 'before' FROM d.seq_1_to_1000;";

/// A server with a backup user and a small table; a full and an incremental backup of it in
/// `bk/`; the incremental's path.
fn chain(fx: &Fixture) -> (Server, String) {
    let Source { server: src, port, .. } = Scenario::new(fx).backup_user().sql(SMALL_TABLE).start();
    std::fs::create_dir_all(fx.path("bk")).unwrap();
    let mut args = backup_args(fx, port, &fx.s("bk/full.coffer"));
    args.push("--incremental".into());
    coffer_ok(&args);
    src.sql("INSERT INTO d.t SELECT seq + 1000, 'after' FROM d.seq_1_to_1000;");
    let mut args = backup_args(fx, port, &fx.s("bk/inc.coffer"));
    args.push("--incremental".into());
    coffer_ok(&args);
    (src, fx.s("bk/inc.coffer"))
}

/// The bytes of the files of the image at `path`, as `coffer info` says.
fn info_bytes(fx: &Fixture, path: &str) -> u64 {
    let (code, out, err) = run(&["info", path, "--json", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    info["bytes"].as_u64().unwrap()
}

/// A chain restored beside its target, on a file system without room for its backups: refused
/// before anything is written, naming the file system and the bytes missing; the same command
/// completes on a larger one. A drill whose scratch is that small says the same.
#[test]
fn a_chain_restore_and_a_drill_on_a_small_disk() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    let (_src, inc) = chain(&fx);
    let whole = info_bytes(&fx, &fx.s("bk/full.coffer")) + info_bytes(&fx, &inc);
    let small = format!("{}k", whole / 2 / 1024);
    let Some(fs) = Tmpfs::mount(&fx.path("small"), &small) else { return };
    let to = fs.s("data");
    let args = ["restore", &inc, "--to", &to, "--prepare", "--key-file", &fx.key()];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("the restore of 2 backups") && line.contains("missing"), "{line}");
    assert_eq!(names(&fs.path), Vec::<String>::new(), "nothing written");

    // A drill in a scratch directory there: the same refusal, from the drill.
    let (code, _, err) = run(&["drill", &inc, "--scratch", &fs.s(""), "--key-file", &fx.key()]);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains(fs.path.canonicalize().unwrap().to_str().unwrap()) && line.contains("missing"), "{line}");
    assert_eq!(names(&fs.path), Vec::<String>::new(), "nothing written");

    // Room for the chain, its prepare and the redo log the engine makes.
    fs.resize(&format!("{}k", (whole * 3) / 1024 + 256 * 1024));
    let err = expect(0, &args);
    assert!(err.contains("restoring a chain of 2"), "{err}");
    assert!(Path::new(&to).join("d/t.ibd").exists());
    assert_eq!(names(&fs.path), ["data"], "nothing left beside the target");
}

/// A point-in-time restore (`restore PREFIX --until`), whose binary log and chain go beside
/// its target, on a file system without room for its backup: one line naming it and the bytes
/// missing, nothing left there; the same command completes on a larger one.
#[test]
fn a_point_in_time_restore_on_a_small_disk() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server: src, port, .. } =
        Scenario::new(&fx).opts(&["--binlog-format=ROW"]).backup_user().repl().sql(SMALL_TABLE).start();
    let prefix = format!("file://{}/", fx.path("bk").display());
    std::fs::create_dir_all(fx.path("bk")).unwrap();
    coffer_ok(&backup_args(&fx, port, &prefix));
    src.sql("INSERT INTO d.t VALUES (5001, 'kept')");
    let at: i64 = src.sql("SELECT UNIX_TIMESTAMP(); DO SLEEP(1.2)").trim().parse().unwrap();
    src.sql("INSERT INTO d.t VALUES (5002, 'after'); FLUSH BINARY LOGS");
    let (code, err) = archive(&fx, &src, &format!("{prefix}binlog/"));
    assert_eq!(code, 0, "{err}");
    let until = utc(at);

    let image = names(&fx.path("bk")).into_iter().find(|n| n.ends_with(".coffer")).unwrap();
    let whole = info_bytes(&fx, &fx.s(&format!("bk/{image}")));
    let Some(fs) = Tmpfs::mount(&fx.path("small"), &format!("{}k", whole / 2 / 1024)) else { return };
    let to = fs.s("data");
    let args = ["restore", &prefix, "--to", &to, "--until", until.trim(), "--key-file", &fx.key()];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("missing"), "{line}");
    assert_eq!(names(&fs.path), Vec::<String>::new(), "nothing left");

    fs.resize(&format!("{}k", (whole * 3) / 1024 + 256 * 1024));
    let err = expect(0, &args);
    assert!(err.contains("replayed"), "{err}");
    assert_eq!(names(&fs.path), ["data"], "nothing left beside the target");
}
