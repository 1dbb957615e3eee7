//! Power cuts (issue 28, part 3): each job's output on the `powercut` FUSE file system, which
//! keeps only what was made durable (fsync, fdatasync, fsyncdir) when the power is cut.
//!
//! Every test first runs the job once to count its durability points (T), then for every N in
//! 1..=T (sampled when T is large) runs it again with the power cut right after point N: the
//! job meets EIO from then on, as on a dead disk; then the cut is taken and what is left is
//! checked: what the job had reported done is intact, what it had not is absent, marked
//! incomplete, or finished by running the same command again. A cut right after the job
//! returned is checked too.
//!
//! Needs /dev/fuse and root: skipped with a message otherwise, unless COFFER_REQUIRE_FUSE=1.

mod common;
use common::*;
use powercut::{Control, Mount};
use std::path::{Path, PathBuf};

const MARKER: &str = ".coffer-restore-incomplete";

/// A mounted power-cut file system, or None (skipped) where FUSE cannot mount.
fn mount(fx: &Fixture) -> Option<Mount> {
    mount_for(fx, false)
}

/// [`mount`]; with `everyone`, open to every user, permissions checked from modes.
fn mount_for(fx: &Fixture, everyone: bool) -> Option<Mount> {
    let at = fx.path("mnt");
    std::fs::create_dir_all(&at).unwrap();
    match if everyone { Mount::for_everyone(&at) } else { Mount::new(&at) } {
        Ok(m) => Some(m),
        Err(e) if std::env::var_os("COFFER_REQUIRE_FUSE").is_some_and(|v| v == "1") => {
            panic!("COFFER_REQUIRE_FUSE=1 but the power-cut file system does not mount: {e}")
        }
        Err(e) => {
            eprintln!("skipped: the power-cut file system does not mount here ({e})");
            None
        }
    }
}

/// The cut points to try out of `total`: all of them, or an even sample of at most 60 that
/// keeps the first and last few (said on stderr).
fn points(total: u64, what: &str) -> Vec<u64> {
    const MAX: u64 = 60;
    if total <= MAX {
        return (1..=total).collect();
    }
    eprintln!("{what}: {total} durability points, trying {MAX} of them");
    let mut v: Vec<u64> = (1..=5).chain(total - 4..=total).collect();
    let step = total / (MAX - 10);
    v.extend((1..MAX - 10).map(|i| i * step).filter(|&n| n > 5 && n < total - 4));
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs `job` once on an empty file system (set up by `setup`); its durability points.
fn count_points(c: &Control, setup: &dyn Fn(), job: &dyn Fn() -> (i32, String)) -> u64 {
    c.reset();
    setup();
    let (code, err) = job();
    assert_eq!(code, 0, "the job fails without a power cut: {err}");
    let total = c.durable_ops();
    assert!(total > 0, "the job made nothing durable: {:?}", c.log());
    total
}

/// For every cut point: set up, run `job` with the power cut after point N, take the cut and
/// `check` what is left (given whether the job said it succeeded). Returns how many runs met
/// the cut (the job was still writing) so a caller can see the faults happened.
fn sweep(
    c: &Control,
    what: &str,
    setup: &dyn Fn(),
    job: &dyn Fn() -> (i32, String),
    check: &dyn Fn(u64, bool, &str),
) -> usize {
    let total = count_points(c, setup, job);
    eprintln!("{what}: {total} durability points: {:?}", c.log());
    c.cut();
    check(total, true, "");
    let mut refused = 0;
    for n in points(total, what) {
        c.reset();
        setup();
        c.cut_after(Some(n));
        let (code, err) = job();
        // An engine may flush a little less often in one run than in another (mariabackup's
        // prepare): a point past its last is a cut right after it returned.
        assert!(c.tripped() || code == 0, "{what}: cut point {n} of {total} was never reached: {err}");
        if c.refused() > 0 {
            refused += 1;
            // A job that met EIO fails in one line, or succeeds saying what it could not do
            // (a backup whose image is stored but not its catalog record).
            let errors = err.lines().filter(|l| l.starts_with("coffer: error:")).count();
            assert!(
                (code != 0 && errors == 1) || (code == 0 && err.contains("warning")),
                "{what}: after point {n}, exit {code}: {err}"
            );
        }
        c.cut();
        check(n, code == 0, &err);
    }
    assert!(refused > 0, "{what}: no cut point fell while the job was still writing");
    refused
}

/// Creates a directory and makes it and its name durable (what was there before the job).
fn durable_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::File::open(p).unwrap().sync_all().unwrap();
    std::fs::File::open(p.parent().unwrap()).unwrap().sync_all().unwrap();
}

/// Writes a file and makes it and its name durable.
fn durable_file(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap();
    std::fs::File::open(p).unwrap().sync_all().unwrap();
    std::fs::File::open(p.parent().unwrap()).unwrap().sync_all().unwrap();
}

fn backup_tree(fx: &Fixture) -> PathBuf {
    use std::os::unix::fs::symlink;
    let src = fx.path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("small"), b"small file").unwrap();
    std::fs::write(src.join("a/zero"), b"").unwrap();
    std::fs::write(src.join("a/b/mid"), noise(300_000, 7)).unwrap();
    std::fs::write(src.join("big"), noise(3 << 20, 9)).unwrap();
    std::fs::hard_link(src.join("small"), src.join("a/hard")).unwrap();
    symlink("../small", src.join("a/link")).unwrap();
    for i in 0..6 {
        std::fs::write(src.join(format!("a/f{i}")), noise(1000 + i * 4000, i as u64)).unwrap();
    }
    src
}

/// A target after a cut: absent, empty, marked incomplete, or equal to `src`. True if complete.
#[track_caller]
fn restored_or_marked(target: &Path, src: &Path, point: u64) -> bool {
    if !target.exists() || std::fs::read_dir(target).unwrap().next().is_none() {
        return false;
    }
    if target.join(MARKER).exists() {
        return false;
    }
    assert_eq!(snapshot(target), snapshot(src), "cut at point {point}: no marker, yet not the image's tree");
    true
}

#[test]
fn a_restore_is_complete_after_a_cut_once_reported_and_marked_or_absent_before() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let src = backup_tree(&fx);
    let img = fx.s("img.coffer");
    expect(0, &["backup", src.to_str().unwrap(), "-o", &img, "--key-file", &fx.key(), "-q"]);
    let target = m.path().join("restore/out");
    let t = target.to_str().unwrap().to_owned();
    let setup = || durable_dir(&m.path().join("restore"));
    let job = || {
        let (code, _, err) = run(&["restore", &img, "--to", &t, "--key-file", &fx.key(), "-q"]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        let complete = restored_or_marked(&target, &src, n);
        assert!(!reported || complete, "cut after point {n}: the restore said done, the tree is not there");
        if !complete {
            // The same command finishes the job (the marker names the image: no --force).
            let (code, _, again) = run(&["restore", &img, "--to", &t, "--key-file", &fx.key(), "-q"]);
            assert_eq!(code, 0, "cut after point {n}: the same restore again: {again} (first run: {err})");
            c.cut();
            assert!(restored_or_marked(&target, &src, n), "cut after point {n}: the rerun's tree is not durable");
        }
    };
    sweep(&c, "restore", &setup, &job, &check);
}

/// A restore by a user other than root onto FUSE, of files and directories whose modes forbid
/// that user to open them (0000, write-only, read-only, a directory of 0000): it completes, and
/// the tree is whole after a cut right after. (Before: it failed at its end, flushing by name
/// files it could no longer open.)
#[test]
fn a_restore_by_another_user_of_entries_it_may_not_open_is_durable() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv, to restore as nobody");
        return;
    }
    let fx = Fixture::new();
    let Some(m) = mount_for(&fx, true) else { return };
    let c = m.control();
    let src = fx.path("modes");
    for d in ["sealed", "readonly", "open"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let files: [(&str, u32, usize); 6] = [
        ("none", 0o000, 1000),
        ("big-none", 0o000, 600_000),
        ("write-only", 0o200, 10),
        ("sealed/inner", 0o644, 5000),
        ("readonly/f", 0o400, 7),
        ("open/g", 0o644, 3),
    ];
    for (name, mode, len) in files {
        std::fs::write(src.join(name), noise(len, len as u64)).unwrap();
        std::fs::set_permissions(src.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for (d, mode) in [("sealed", 0o000), ("readonly", 0o500)] {
        std::fs::set_permissions(src.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let img = fx.s("modes.coffer");
    expect(0, &["backup", src.to_str().unwrap(), "-o", &img, "--key-file", &fx.key(), "-q"]);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a 'nobody' user");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    fx.write_secret("nobody.key", &format!("{KEY_HEX}\n"));
    chown(fx.path("nobody.key"), Some(uid), Some(gid)).unwrap();
    let home = m.path().join("home");
    durable_dir(&home);
    chown(&home, Some(uid), Some(gid)).unwrap();
    std::fs::File::open(&home).unwrap().sync_all().unwrap();
    let target = home.join("out");
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .args(["restore", &img, "--to", target.to_str().unwrap(), "--key-file", &fx.s("nobody.key"), "-q"])
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the restore as nobody: {}", String::from_utf8_lossy(&out.stderr));
    assert!(c.durable_ops() > 0, "nothing was flushed: {:?}", c.log());
    c.cut();
    assert!(!target.join(MARKER).exists());
    assert_eq!(snapshot(&target), snapshot(&src), "the restore said done; after a cut the tree is not the image's");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(target.join("none")).unwrap()), uid);
}

/// Does `image` open (verify) with the key in `key`?
fn opens(image: &str, key: &str) -> bool {
    let (code, _, err) = run(&["verify", image, "--key-file", key, "-q"]);
    assert!(code == 0 || code == 3, "verify with {key}: exit {code}: {err}");
    code == 0
}

/// A small image made on the real disk, with `keys`.
fn small_image(fx: &Fixture, keys: &[&str]) -> Vec<u8> {
    let src = fx.path("small-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), noise(200_000, 3)).unwrap();
    let out = fx.s("small.coffer");
    let mut v = vec!["backup", src.to_str().unwrap(), "-o", &out, "-q"];
    for k in keys {
        v.extend(["--key-file", k]);
    }
    expect(0, &v);
    std::fs::read(&out).unwrap()
}

#[test]
fn a_key_rotation_leaves_the_old_key_or_the_new_one_never_neither() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let bytes = small_image(&fx, &[&fx.key()]);
    let img = m.path().join("img.coffer");
    let i = img.to_str().unwrap().to_owned();
    let (old, new) = (fx.key(), fx.s("other.key"));
    let setup = || durable_file(&img, &bytes);
    let job = || {
        let (code, _, err) = run(&["key", "rotate", &i, "--key-file", &old, "--new-key-file", &new, "-q"]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        let (by_old, by_new) = (opens(&i, &old), opens(&i, &new));
        assert!(by_old || by_new, "cut after point {n}: the image opens with neither key ({err})");
        assert!(!reported || by_new, "cut after point {n}: the rotation was reported, the new key does not open");
        if !by_new {
            expect(0, &["key", "rotate", &i, "--key-file", &old, "--new-key-file", &new, "-q"]);
            c.cut();
            assert!(opens(&i, &new), "cut after point {n}: the rerun's rotation did not survive a cut");
        }
    };
    sweep(&c, "key rotate", &setup, &job, &check);
}

#[test]
fn a_header_restore_leaves_the_old_header_or_the_saved_one() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let (k, other) = (fx.key(), fx.s("other.key"));
    small_image(&fx, &[&k, &other]);
    let (plain, hdr) = (fx.s("small.coffer"), fx.s("small.header"));
    expect(0, &["header", "backup", &plain, "-o", &hdr]);
    expect(0, &["key", "remove", &plain, "--slot", "1", "--key-file", &k, "-q"]);
    assert!(!opens(&plain, &other));
    let bytes = std::fs::read(&plain).unwrap();
    let img = m.path().join("img.coffer");
    let i = img.to_str().unwrap().to_owned();
    let setup = || durable_file(&img, &bytes);
    let job = || {
        let (code, _, err) = run(&["header", "restore", &i, &hdr, "-q"]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        assert!(opens(&i, &k), "cut after point {n}: the key both headers hold no longer opens ({err})");
        let restored = opens(&i, &other);
        assert!(!reported || restored, "cut after point {n}: the header restore was reported and is not there");
        if !restored {
            expect(0, &["header", "restore", &i, &hdr, "-q"]);
            c.cut();
            assert!(opens(&i, &other), "cut after point {n}: the rerun's header did not survive a cut");
        }
    };
    sweep(&c, "header restore", &setup, &job, &check);
}

/// Names in `dir` other than `keep`: what a job left beside its output.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| !keep.contains(&n.as_str())).collect()
}

#[test]
fn a_backup_to_a_file_is_there_once_reported_and_absent_or_finished_by_a_rerun_before() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let src = backup_tree(&fx);
    let s = src.to_str().unwrap().to_owned();
    let dir = m.path().join("images");
    let img = dir.join("b.coffer");
    let i = img.to_str().unwrap().to_owned();
    let setup = || durable_dir(&dir);
    let job = || {
        let (code, _, err) = run(&["backup", &s, "-o", &i, "--key-file", &fx.key(), "-q"]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        let there = dir.exists() && img.exists();
        assert!(!reported || there, "cut after point {n}: the backup was reported, the image is gone");
        if there {
            assert!(opens(&i, &fx.key()), "cut after point {n}: an image under its name that does not verify");
            return;
        }
        if !dir.exists() {
            return;
        }
        let (code, _, again) = run(&["backup", &s, "-o", &i, "--key-file", &fx.key(), "-q"]);
        assert_eq!(code, 0, "cut after point {n}: the rerun failed: {again} (first run: {err})");
        assert!(others(&dir, &["b.coffer"]).is_empty(), "cut after point {n}: left beside: {:?}", others(&dir, &[]));
        c.cut();
        assert!(opens(&i, &fx.key()), "cut after point {n}: the rerun's image did not survive a cut");
    };
    sweep(&c, "backup -o", &setup, &job, &check);
}

/// `tls generate` for a CA with node1 and node2.
fn pki(fx: &Fixture) {
    for name in ["node1", "node2"] {
        expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", name, "-q"]);
    }
}

fn tls_args(fx: &Fixture, name: &str) -> Vec<String> {
    let f = |n: &str| fx.s(&format!("pki/{n}"));
    vec![
        "--cert".into(),
        f(&format!("{name}.crt")),
        "--key".into(),
        f(&format!("{name}.key")),
        "--ca".into(),
        f("ca.crt"),
    ]
}

/// `coffer receive ARGS` on a free loopback port: the process, its port, and its stderr (once
/// it has exited).
fn receiver(recv: &[String]) -> (std::process::Child, u16, std::thread::JoinHandle<String>) {
    let mut rx = coffer();
    rx.args(["receive", "--listen", "127.0.0.1:0"]).args(recv).stdout(std::process::Stdio::null());
    let (child, port, err) = listening(rx);
    (child, port, drained(err))
}

/// `coffer receive ARGS` and `coffer send IMAGE SEND_ARGS` to it: the receiver's exit code
/// (or the sender's, if the receiver succeeded) and the receiver's stderr (or the sender's).
fn transfer(recv: &[String], image: &str, send: &[String]) -> (i32, String) {
    let (mut rx, port, drain) = receiver(recv);
    let mut args = vec!["send".to_string(), image.into(), "--to".into(), format!("127.0.0.1:{port}")];
    args.extend(send.iter().cloned());
    let (sent, _, send_err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let code = rx.wait().unwrap().code().unwrap_or(-1);
    let err = drain.join().unwrap();
    if code == 0 && sent != 0 {
        return (sent, send_err);
    }
    (code, err)
}

#[test]
fn a_receive_is_complete_once_reported_and_resumable_or_marked_after_a_cut() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    pki(&fx);
    let src = fx.path("src");
    std::fs::create_dir_all(src.join("db/sub")).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("db/t{i}.ibd")), noise(700 * 1024, 0x9e37 + i)).unwrap();
    }
    std::fs::write(src.join("db/sub/small"), b"small").unwrap();
    std::fs::hard_link(src.join("db/t0.ibd"), src.join("db/sub/hard")).unwrap();
    std::os::unix::fs::symlink("../t1.ibd", src.join("db/sub/link")).unwrap();
    let img = fx.s("img.coffer");
    expect(0, &["backup", src.to_str().unwrap(), "-o", &img, "--key-file", &fx.key(), "-q"]);
    let target = m.path().join("recv/dst");
    let mut recv = vec!["--to".to_string(), target.to_str().unwrap().into(), "--key-file".into(), fx.key()];
    recv.extend(["--checkpoint".to_string(), "1".into()]);
    recv.extend(tls_args(&fx, "node2"));
    let send = tls_args(&fx, "node1");
    let mut resume = send.clone();
    resume.push("--resume".into());
    let setup = || durable_dir(&m.path().join("recv"));
    let job = || transfer(&recv, &img, &send);
    let check = |n: u64, reported: bool, err: &str| {
        let complete = restored_or_marked(&target, &src, n);
        assert!(!reported || complete, "cut after point {n}: the receiver said done, the tree is not there");
        if !complete {
            let (code, again) = transfer(&recv, &img, &resume);
            assert_eq!(code, 0, "cut after point {n}: send --resume failed: {again} (first run: {err})");
            c.cut();
            assert!(restored_or_marked(&target, &src, n), "cut after point {n}: the resumed tree is not durable");
        }
    };
    sweep(&c, "receive --to", &setup, &job, &check);
}

/// The images (`*.coffer`) under a directory a file:// prefix names.
fn images_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> =
        rd.map(|e| e.unwrap().path().to_str().unwrap().to_owned()).filter(|p| p.ends_with(".coffer")).collect();
    v.sort();
    v
}

#[test]
fn a_backup_into_a_file_prefix_is_there_once_reported_and_never_torn() {
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let src = backup_tree(&fx);
    let s = src.to_str().unwrap().to_owned();
    let repo = m.path().join("repo");
    let prefix = format!("file://{}/", repo.display());
    let setup = || durable_dir(&repo);
    let job = || {
        // Not quiet: a warning is part of what it says.
        let (code, _, err) = run(&["backup", &s, "-o", &prefix, "--key-file", &fx.key()]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        let images = images_in(&repo);
        for i in &images {
            assert!(opens(i, &fx.key()), "cut after point {n}: {i} is under its final name and does not verify");
        }
        if repo.exists() {
            let (code, _, cat) = run(&["catalog", &prefix, "--key-file", &fx.key()]);
            assert_eq!(code, 0, "cut after point {n}: the catalog no longer reads: {cat}");
        }
        assert!(!reported || !images.is_empty(), "cut after point {n}: the backup was reported, it is gone ({err})");
        if images.is_empty() && repo.exists() {
            expect(0, &["backup", &s, "-o", &prefix, "--key-file", &fx.key(), "-q"]);
            c.cut();
            assert_eq!(images_in(&repo).len(), 1, "cut after point {n}: the rerun's backup did not survive a cut");
        }
    };
    sweep(&c, "backup -o file://", &setup, &job, &check);
}

/// `binlog list --json` of `prefix`: (file, end) of each segment; fails if the list cannot be read.
#[track_caller]
fn segments(prefix: &str, point: u64) -> Vec<(String, u64)> {
    let (code, out, err) = run(&["binlog", "list", prefix, "--json"]);
    assert_eq!(code, 0, "cut after point {point}: the archive no longer lists: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let seg = |s: &serde_json::Value| (s["file"].as_str().unwrap().to_owned(), s["end"].as_u64().unwrap());
    v.as_array().unwrap().iter().map(seg).collect()
}

#[test]
fn a_binlog_archive_and_a_fetch_keep_what_they_reported_through_a_cut() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let port = common::live::free_port();
    let server = common::mariadb::Server::start(&fx.path("server"), &common::live::binlog_options(port, &[]));
    server.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'127.0.0.1'; \
         CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t SELECT seq, REPEAT('x', 100) FROM d.seq_1_to_300; FLUSH BINARY LOGS; \
         INSERT INTO d.t SELECT seq + 1000, 'second' FROM d.seq_1_to_50;",
    );
    // Statements of their own, so the log holds many segments of 8K.
    let long = "y".repeat(3000);
    server.sql(&(0..30).map(|i| format!("INSERT INTO d.t VALUES ({}, '{long}');", 5000 + i)).collect::<String>());
    fx.write_secret("pw", "repl-pw\n");
    let status = server.sql("SHOW MASTER STATUS");
    let mut cols = status.split('\t');
    let head = (cols.next().unwrap().to_owned(), cols.next().unwrap().trim().parse::<u64>().unwrap());
    let arch = m.path().join("arch");
    let prefix = format!("file://{}/", arch.display());
    let (pw, port, key) = (fx.s("pw"), port.to_string(), fx.key());
    let args = ["binlog", "archive", "-h", "127.0.0.1", "-P", &port, "-u", "repl", "--password-file", &pw];
    let args = [&args[..], &["-o", &prefix, "--key-file", &key, "--segment-size", "8K"]].concat();
    let setup = || durable_dir(&arch);
    let job = || {
        let (code, _, err) = run(&args);
        (code, err)
    };
    let fetched_match = |n: u64| {
        let out = fx.path(&format!("fetched-{n}"));
        expect(0, &["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &fx.key()]);
        for name in server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()) {
            let disk = std::fs::read(server.datadir.join(&name)).unwrap();
            let got = std::fs::read(out.join(&name)).unwrap();
            assert_eq!(disk.len(), got.len(), "cut after point {n}: {name} fetched is not the server's");
        }
        std::fs::remove_dir_all(out).unwrap();
    };
    let check = |n: u64, reported: bool, err: &str| {
        if !arch.exists() {
            return;
        }
        let listed = segments(&prefix, n);
        if reported {
            assert_eq!(listed.last(), Some(&head), "cut after point {n}: archived, then lost: {listed:?}");
        } else {
            let (code, _, again) = run(&args);
            assert_eq!(code, 0, "cut after point {n}: the rerun failed: {again} (first run: {err})");
            c.cut();
            assert_eq!(segments(&prefix, n).last(), Some(&head), "cut after point {n}: the rerun's segments are lost");
        }
        let (_, list, _) = run(&["binlog", "list", &prefix]);
        assert!(
            !String::from_utf8_lossy(&list).contains("gap"),
            "cut after point {n}: {}",
            String::from_utf8_lossy(&list)
        );
        fetched_match(n);
    };
    sweep(&c, "binlog archive", &setup, &job, &check);

    // binlog fetch into the power-cut file system, from an archive on the real disk.
    let stored = fx.path("stored");
    let stored_prefix = format!("file://{}/", stored.display());
    std::fs::create_dir_all(&stored).unwrap();
    let args = [&args[..args.len() - 6], &["-o", &stored_prefix, "--key-file", &key, "-q"]].concat();
    assert_eq!(run(&args).0, 0);
    let to = m.path().join("fetched");
    let t = to.to_str().unwrap().to_owned();
    let logs: Vec<String> =
        server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    assert!(logs.len() >= 2, "a fetch of several files: {logs:?}");
    let whole = |dir: &Path, n: u64| {
        for name in &logs {
            let disk = std::fs::metadata(server.datadir.join(name)).unwrap().len();
            let got = std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
            assert_eq!(disk, got, "cut after point {n}: {name} was fetched and is not there whole");
        }
    };
    // The directory is there before: a cut then loses no file by losing the directory's name.
    let setup = || durable_dir(&to);
    let job = || {
        let (code, _, err) = run(&["binlog", "fetch", &stored_prefix, "--to-dir", &t, "--key-file", &key, "-q"]);
        (code, err)
    };
    let check = |n: u64, reported: bool, err: &str| {
        if !reported {
            // All or none: a fetch cut short leaves no binary log under its name, and the same
            // fetch then gives them all.
            let left: Vec<String> = std::fs::read_dir(&to)
                .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            assert!(!left.iter().any(|n| logs.contains(n)), "cut after point {n}: a failed fetch left {left:?}: {err}");
            let (code, again) = job();
            assert_eq!(code, 0, "cut after point {n}: the same fetch again: {again}");
            c.cut();
        }
        whole(&to, n);
    };
    sweep(&c, "binlog fetch", &setup, &job, &check);

    // Into a relative directory, two levels of it new: the current directory's entry and the
    // levels created survive a cut too.
    c.reset();
    let out = coffer()
        .args(["binlog", "fetch", &stored_prefix, "--to-dir", "rel/logs", "--key-file", &key, "-q"])
        .current_dir(m.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.cut();
    whole(&m.path().join("rel/logs"), 0);
}

/// (relative path, size) of the regular files under `root`, leaving out the engine's own
/// bookkeeping that differs from one prepare to the next.
fn sizes(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                todo.push(e.path());
            } else if !rel.starts_with("xtrabackup_") && !rel.starts_with("mariadb_backup") {
                out.push((rel, md.len()));
            }
        }
    }
    out.sort();
    out
}

/// A full backup and an incremental on it, of a small server (stopped when this returns).
fn full_and_incremental(fx: &Fixture) -> (String, String) {
    let port = common::live::free_port();
    let opts = common::live::binlog_options(port, &["--innodb-log-file-size=4M"]);
    let server = common::mariadb::Server::start(&fx.path("src"), &opts);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY 'secret-pw'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'backup'@'127.0.0.1'; \
         INSERT INTO d.t SELECT seq, REPEAT('a', 200) FROM d.seq_1_to_2000;",
    );
    fx.write_secret("pw", "secret-pw\n");
    std::fs::create_dir_all(fx.path("bk")).unwrap();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let full = fx.s("bk/full.coffer");
    common::live::coffer_ok(&common::live::backup_args(fx, port, &full));
    server.sql("INSERT INTO d.t SELECT seq + 5000, REPEAT('b', 200) FROM d.seq_1_to_2000;");
    let inc = fx.s("bk/inc.coffer");
    let mut args = common::live::backup_args(fx, port, &inc);
    args.push("--incremental".into());
    common::live::coffer_ok(&args);
    (full, inc)
}

#[test]
fn a_chain_restore_is_complete_after_a_cut_once_reported_and_absent_before() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let (_, inc) = full_and_incremental(&fx);
    let reference = fx.path("reference");
    expect(0, &["restore", &inc, "--to", reference.to_str().unwrap(), "--prepare", "--key-file", &fx.key(), "-q"]);
    let want = sizes(&reference);
    let target = m.path().join("restore/data");
    let t = target.to_str().unwrap().to_owned();
    let setup = || durable_dir(&m.path().join("restore"));
    let job = || {
        let (code, _, err) = run(&["restore", &inc, "--to", &t, "--prepare", "--key-file", &fx.key(), "-q"]);
        (code, err)
    };
    let complete = |n: u64| {
        if !target.exists() || std::fs::read_dir(&target).unwrap().next().is_none() {
            return false;
        }
        assert_eq!(sizes(&target), want, "cut after point {n}: a target that is not the prepared chain");
        let (code, _, err) = run(&["validate", &t, "--quiet"]);
        assert_eq!(code, 0, "cut after point {n}: the restored chain's pages: {err}");
        true
    };
    let check = |n: u64, reported: bool, err: &str| {
        let done = complete(n);
        assert!(!reported || done, "cut after point {n}: the chain restore said done, the target is not there");
        if !done {
            let (code, _, again) =
                run(&["restore", &inc, "--to", &t, "--prepare", "--key-file", &fx.key(), "-q", "--force"]);
            assert_eq!(code, 0, "cut after point {n}: the rerun failed: {again} (first run: {err})");
            c.cut();
            assert!(complete(n), "cut after point {n}: the rerun's chain is not durable");
        }
    };
    sweep(&c, "chain restore", &setup, &job, &check);
}

#[test]
fn a_prepared_restore_of_a_full_is_complete_once_reported_and_marked_or_absent_before() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    let (full, _) = full_and_incremental(&fx);
    let reference = fx.path("reference");
    expect(0, &["restore", &full, "--to", reference.to_str().unwrap(), "--prepare", "--key-file", &fx.key(), "-q"]);
    let want = sizes(&reference);
    let target = m.path().join("restore/data");
    let t = target.to_str().unwrap().to_owned();
    let setup = || durable_dir(&m.path().join("restore"));
    let job = || {
        let (code, _, err) = run(&["restore", &full, "--to", &t, "--prepare", "--key-file", &fx.key(), "-q"]);
        (code, err)
    };
    // Prepared and complete, or absent, empty, or marked incomplete (restored, not yet
    // prepared or not yet flushed): never a tree without the marker that is not the prepared one.
    let complete = |n: u64| {
        if !target.exists() || std::fs::read_dir(&target).unwrap().next().is_none() || target.join(MARKER).exists() {
            return false;
        }
        assert_eq!(sizes(&target), want, "cut after point {n}: no marker, yet not the prepared backup");
        let checkpoints = std::fs::read_to_string(target.join("xtrabackup_checkpoints")).unwrap();
        assert!(checkpoints.contains("log-applied"), "cut after point {n}: no marker, yet unprepared");
        let (code, _, err) = run(&["validate", &t, "--quiet"]);
        assert_eq!(code, 0, "cut after point {n}: the prepared pages: {err}");
        true
    };
    let check = |n: u64, reported: bool, err: &str| {
        let done = complete(n);
        assert!(!reported || done, "cut after point {n}: the restore said done, the target is not complete");
        if !done {
            // The same command, without --force, finishes it.
            let (code, again) = job();
            assert_eq!(code, 0, "cut after point {n}: the rerun failed: {again} (first run: {err})");
            c.cut();
            assert!(complete(n), "cut after point {n}: the rerun's prepared restore is not durable");
        }
    };
    sweep(&c, "prepared restore of a full", &setup, &job, &check);
}

#[test]
fn what_a_receive_to_a_file_kept_for_resuming_survives_a_cut_right_after() {
    use std::io::Write;
    let fx = Fixture::new();
    let Some(m) = mount(&fx) else { return };
    let c = m.control();
    pki(&fx);
    let big = fx.path("big-src");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("f"), noise(4 << 20, 11)).unwrap();
    let img = fx.s("big.coffer");
    expect(0, &["backup", big.to_str().unwrap(), "-o", &img, "--key-file", &fx.key(), "-q"]);
    let bytes = std::fs::read(&img).unwrap();
    let dir = m.path().join("in");
    durable_dir(&dir);
    let out = dir.join("kept.coffer");
    let mut recv = vec!["-o".to_string(), out.to_str().unwrap().into(), "--checkpoint".into(), "1".into()];
    recv.extend(tls_args(&fx, "node2"));
    let (mut rx, port, drain) = receiver(&recv);
    let mut sender = coffer()
        .args(["send", "-", "--to", &format!("127.0.0.1:{port}")])
        .args(tls_args(&fx, "node1"))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() * 3 / 4]).unwrap();
    stdin.flush().unwrap();
    let mark = dir.join(".kept.coffer.coffer-partial.mark");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mark.exists() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within a minute");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sender.kill().unwrap();
    let _ = sender.wait();
    assert_eq!(rx.wait().unwrap().code(), Some(1));
    let err = drain.join().unwrap();
    assert!(err.contains("for `coffer send --resume`"), "{err}");
    // The power goes right after the receiver said what it kept.
    c.cut();
    let mut resume = tls_args(&fx, "node1");
    resume.push("--resume".into());
    let (mut rx, port, drain) = receiver(&recv);
    let mut args = vec!["send".to_string(), img.clone(), "--to".into(), format!("127.0.0.1:{port}")];
    args.extend(resume);
    let sent = expect(0, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(rx.wait().unwrap().code(), Some(0), "{}", drain.join().unwrap());
    assert!(resumed_from(&sent) > 0, "what the receiver kept did not survive the cut: {sent}");
    c.cut();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}
