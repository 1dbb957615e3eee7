//! `restore --prepare` whose prepare fails (the engine errs, half-way or at once; coffer is
//! killed while the engine runs): the target keeps the restore marker naming the image, never
//! an unprepared datadir that looks finished, the failure is one line, and the same command,
//! once the cause is gone, restores the image over it, prepares it again, and leaves a datadir
//! a server starts on. A chain restore whose prepare fails leaves nothing at all.
//!
//! The engine is made to fail by a program of its name first on coffer's PATH (coffer finds
//! the engine there, in a directory only root can change): one that fails at once, and one that
//! runs the real prepare to its end and then fails, so the rerun meets a tree the engine changed.

mod common;

use common::live::*;
use common::mariadb::{self, Server};
use common::tmpfs::{error_line, names};
use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const MARKER: &str = ".coffer-restore-incomplete";

/// A directory holding a `mariadb-backup` that runs `body` (a shell script's lines).
fn fake_engine(fx: &Fixture, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = fx.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = dir.join("mariadb-backup");
    std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_str().unwrap().to_owned()
}

/// coffer with `engine_dir` first on its PATH.
fn run_with_engine(engine_dir: &str, args: &[&str]) -> (i32, String) {
    let path = format!("{engine_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let out = coffer().env("PATH", path).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Checks every table of the sbtest schema in a server started on `dir/data`; their checksums.
fn start_and_check(dir: &Path, tables: &[String]) -> String {
    let mut server = Server::open(dir, &[]);
    for t in tables {
        let check = server.sql(&format!("CHECK TABLE {t}"));
        assert!(check.contains("\tstatus\tOK"), "{}: {t}: {check}", dir.display());
    }
    let sums = checksums(&server, tables);
    server.stop();
    sums
}

/// The target after a failed prepare: the marker, naming the image, and no temporary.
#[track_caller]
fn marked(data: &Path, image_id: &str, stderr: &str) {
    let marker = std::fs::read_to_string(data.join(MARKER)).unwrap_or_else(|e| panic!("no marker ({e}): {stderr}"));
    assert!(marker.contains(&format!("image {image_id}\n")), "{marker}");
    assert!(!names(data).iter().any(|n| n.starts_with(".coffer-tmp-")), "{:?}", names(data));
}

/// The same command, with the real engine, finishes the job: exit 0, no marker, a datadir a
/// server starts on whose tables equal the reference restore's.
#[track_caller]
fn rerun_finishes(args: &[&str], data: &Path, tables: &[String], want: &str) {
    let err = expect(0, args);
    assert!(err.contains("continuing the interrupted restore of image"), "{err}");
    assert!(!data.join(MARKER).exists(), "{err}");
    assert!(!names(data).iter().any(|n| n.starts_with(".coffer-")), "{:?}", names(data));
    let checkpoints = std::fs::read_to_string(data.join("xtrabackup_checkpoints")).unwrap();
    assert!(checkpoints.contains("log-applied"), "{checkpoints}");
    assert_eq!(start_and_check(data.parent().unwrap(), tables), want);
}

/// A fixture with a source server on `port` and its tables, or None (skipped) without the tools.
fn started() -> Option<(Fixture, u16, Server, Vec<String>)> {
    if !tools() {
        return None;
    }
    let fx = Fixture::new();
    for d in ["scratch", "bk"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let port = free_port();
    let src = source(&fx, port, &[]);
    let tables = tables(&src);
    Some((fx, port, src, tables))
}

/// The id of the image `image` (32 hex digits).
fn image_id(fx: &Fixture, image: &str) -> String {
    let out = run(&["info", image, "--json", "--key-file", &fx.key()]);
    let id = serde_json::from_slice::<serde_json::Value>(&out.1).unwrap()["image_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{}", String::from_utf8_lossy(&out.1));
    id
}

/// The pid of a running engine whose arguments name `dir` as its target, if any.
fn engine_preparing(dir: &Path) -> Option<u32> {
    let want = format!("--target-dir={}", dir.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = args.contains(&want.as_bytes()) && args.contains(&&b"--prepare"[..]);
        ours.then_some(pid)
    })
}

#[test]
fn a_failed_prepare_leaves_the_marker_and_the_same_command_finishes() {
    let Some((fx, port, mut src, tables)) = started() else { return };
    // Taken under writes: the prepare has redo to apply.
    let mut load = sysbench(&src, "run", &["--time=8"]);
    let full = fx.s("bk/full.coffer");
    let mut args = backup_args(&fx, port, &full);
    args.push("--incremental".into());
    coffer_ok(&args);
    let _ = load.wait();
    sysbench(&src, "run", &["--time=3"]).wait().unwrap();
    let inc = fx.s("bk/inc.coffer");
    let mut args = backup_args(&fx, port, &inc);
    args.push("--incremental".into());
    let log = coffer_ok(&args);
    assert!(log.contains("taking incremental backup 1"), "{log}");
    src.stop();
    let id = image_id(&fx, &full);

    // The reference: the same restore, nothing failing.
    let reference = fx.path("ref/data");
    expect(0, &["restore", &full, "--to", reference.to_str().unwrap(), "--prepare", "--key-file", &fx.key()]);
    let want = start_and_check(&fx.path("ref"), &tables);

    let real = mariadb::which("mariadb-backup").unwrap();
    let at_once =
        fake_engine(&fx, "fails", "echo '[ERROR] InnoDB: simulated: the redo log cannot be applied' >&2\nexit 1");
    let half_way = fake_engine(
        &fx,
        "fails-after",
        &format!(
            "{} \"$@\" || exit 2\necho '[ERROR] InnoDB: simulated: failed after applying the log' >&2\nexit 1",
            real.display()
        ),
    );
    for (case, engine, cause) in
        [("at-once", &at_once, "the redo log cannot be applied"), ("half-way", &half_way, "failed after applying")]
    {
        let data = fx.path(&format!("{case}/data"));
        let args = ["restore", &full, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &fx.key()];
        let (code, err) = run_with_engine(engine, &args);
        assert_eq!(code, 1, "{case}: {err}");
        marked(&data, &id, &err);
        let line = error_line(&err);
        assert!(line.contains("the prepare of") && line.contains(MARKER) && line.contains(cause), "{case}: {line}");
        // Another run of the failing engine fails the same way: nothing is taken for done.
        let (code, err) = run_with_engine(engine, &args);
        assert_eq!(code, 1, "{case}: {err}");
        assert!(err.contains("continuing the interrupted restore"), "{case}: {err}");
        marked(&data, &id, &err);
        rerun_finishes(&args, &data, &tables, &want);
    }

    // coffer killed while the engine prepares: the engine dies with it, the marker stays.
    let data = fx.path("killed/data");
    let args = ["restore", &full, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &fx.key()];
    let mut child =
        coffer().args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let engine = loop {
        if let Some(pid) = engine_preparing(&data) {
            break pid;
        }
        assert!(child.try_wait().unwrap().is_none(), "coffer ended before its engine was seen preparing");
        assert!(started.elapsed() < Duration::from_secs(120), "no engine preparing {}", data.display());
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = Instant::now();
    while Path::new(&format!("/proc/{engine}")).exists() && engine_preparing(&data) == Some(engine) {
        assert!(gone.elapsed() < Duration::from_secs(30), "the engine outlived coffer");
        std::thread::sleep(Duration::from_millis(20));
    }
    marked(&data, &id, "killed");
    rerun_finishes(&args, &data, &tables, &want);

    // A chain whose prepare fails: built beside the target, it leaves nothing at all; the same
    // command then restores and prepares the chain.
    let data = fx.path("chain/data");
    let args = ["restore", &inc, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &fx.key()];
    for engine in [&at_once, &half_way] {
        let (code, err) = run_with_engine(engine, &args);
        assert_eq!(code, 1, "{err}");
        let line = error_line(&err);
        assert!(line.contains("the prepare of") && line.contains("simulated"), "{line}");
        assert!(names(&fx.path("chain")).is_empty(), "{:?}", names(&fx.path("chain")));
    }
    let err = expect(0, &args);
    assert!(!data.join(MARKER).exists() && names(&fx.path("chain")) == ["data"], "{err}");
    let chained = start_and_check(&fx.path("chain"), &tables);
    assert_ne!(chained, want, "the incremental's writes are there");
}

/// `--cert`, `--key` and `--ca` of the test PKI's `name`.
fn tls(fx: &Fixture, name: &str) -> Vec<String> {
    let f = |n: &str| fx.s(&format!("pki/{n}"));
    ["--cert".into(), f(&format!("{name}.crt")), "--key".into(), f(&format!("{name}.key")), "--ca".into(), f("ca.crt")]
        .to_vec()
}

/// `receive --to DATA --prepare` with `engine_dir` first on the receiver's PATH, and `send
/// IMAGE` to it: the receiver's exit code and stderr, and the sender's exit code.
fn receive_prepared(fx: &Fixture, engine_dir: &str, data: &Path, image: &str) -> (i32, String, i32) {
    let path = format!("{engine_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let mut rx = coffer();
    rx.env("PATH", path)
        .args(["receive", "--listen", "127.0.0.1:0", "--to", data.to_str().unwrap(), "--prepare"])
        .args(["--key-file", &fx.key()])
        .args(tls(fx, "node2"))
        .stdout(Stdio::null());
    let (mut rx, port, err) = listening(rx);
    let err = drained(err);
    let mut send = vec!["send".to_string(), image.into(), "--to".into(), format!("127.0.0.1:{port}"), "-q".into()];
    send.extend(tls(fx, "node1"));
    let (sent, _, _) = run(&send.iter().map(String::as_str).collect::<Vec<_>>());
    let code = rx.wait().unwrap().code().unwrap_or(-1);
    (code, err.join().unwrap(), sent)
}

/// `receive --to --prepare` whose prepare fails keeps the restore marker naming the image (it
/// was removed before the prepare, leaving an unprepared datadir that looked finished), both
/// ends fail, and the same transfer again restores and prepares it. `restore --prepare
/// --copy-back` whose move fails half-way leaves the datadir marked incomplete and the target
/// its marker (neither was marked); emptied, the same command finishes the job.
#[test]
fn a_received_prepare_and_a_copy_back_that_fail_leave_markers() {
    let Some((fx, port, mut src, tables)) = started() else { return };
    let full = fx.s("bk/full.coffer");
    coffer_ok(&backup_args(&fx, port, &full));
    src.stop();
    let id = image_id(&fx, &full);
    let reference = fx.path("ref/data");
    expect(0, &["restore", &full, "--to", reference.to_str().unwrap(), "--prepare", "--key-file", &fx.key()]);
    let want = start_and_check(&fx.path("ref"), &tables);
    for name in ["node1", "node2"] {
        expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", name, "-q"]);
    }
    let real = mariadb::which("mariadb-backup").unwrap();
    let failing =
        fake_engine(&fx, "fails", "echo '[ERROR] InnoDB: simulated: the redo log cannot be applied' >&2\nexit 1");
    let data = fx.path("received/data");
    let (code, err, sent) = receive_prepared(&fx, &failing, &data, &full);
    assert!(code == 1 && sent != 0, "receiver {code}, sender {sent}: {err}");
    assert!(error_line(&err).contains("the prepare of") && error_line(&err).contains("simulated"), "{err}");
    marked(&data, &id, &err);
    let (code, err, sent) = receive_prepared(&fx, "/nonexistent", &data, &full);
    assert!(code == 0 && sent == 0, "receiver {code}, sender {sent}: {err}");
    assert!(!names(&data).iter().any(|n| n.starts_with(".coffer-")), "{:?}", names(&data));
    assert_eq!(start_and_check(&fx.path("received"), &tables), want);

    // A move-back that moves one file, then fails.
    let half = fake_engine(
        &fx,
        "moves-half",
        &format!(
            "for a in \"$@\"; do case \"$a\" in --move-back) mb=1;; --target-dir=*) t=\"${{a#--target-dir=}}\";; \
             --datadir=*) d=\"${{a#--datadir=}}\";; esac; done\n\
             if [ -n \"$mb\" ]; then mkdir -p \"$d\" && mv \"$t/ibdata1\" \"$d/\"; \
             echo '[ERROR] simulated: cannot move the rest' >&2; exit 1; fi\n\
             exec {} \"$@\"",
            real.display()
        ),
    );
    let (data, datadir) = (fx.path("cb/data"), fx.path("live/data"));
    let key = fx.key();
    let args = ["restore", &full, "--to", data.to_str().unwrap(), "--prepare", "--copy-back"];
    let args = [&args[..], &["--datadir", datadir.to_str().unwrap(), "--key-file", &key]].concat();
    let (code, err) = run_with_engine(&half, &args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains("copy-back failed") && line.contains("simulated"), "{line}");
    assert!(datadir.join("ibdata1").exists(), "the move began: {:?}", names(&datadir));
    assert!(datadir.join(MARKER).exists(), "half a datadir, unmarked: {:?}", names(&datadir));
    marked(&data, &id, &err);
    for n in names(&datadir) {
        std::fs::remove_file(datadir.join(n)).unwrap();
    }
    let err = expect(0, &args);
    assert!(err.contains("continuing the interrupted restore of image"), "{err}");
    assert!(!datadir.join(MARKER).exists() && !data.join(MARKER).exists(), "{err}");
    assert_eq!(start_and_check(&fx.path("live"), &tables), want);
}
