//! The disk fills (issue 28, part 2): every job that writes locally, on a tmpfs too small for
//! it (root mounts one; see common/tmpfs.rs). Each must say so in one line naming the file
//! system (its mount point) and, where it knows them, the bytes missing (before it starts,
//! where the size is known); exit non-zero; leave the target as it was or marked incomplete,
//! never a file under its final name half-written, and no temporary that the next run does not
//! sweep; and the same command, once space is freed, completes (a receive resumes).
//!
//! The jobs that need a server (binlog archive and fetch, chain restores, drills) are in
//! disk_full_server.rs.

mod common;

use common::tmpfs::{error_line, names, names_the_fs, Tmpfs};
use common::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A tree of 18 MiB of incompressible files (page-sized, so the room they take is exact) and a
/// small one; and its image.
fn with_image() -> Fixture {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src/db")).unwrap();
    std::fs::write(fx.path("src/db/a.ibd"), noise(6 << 20, 0x2545_f491_4f6c_dd1d)).unwrap();
    std::fs::write(fx.path("src/db/b.ibd"), noise(12 << 20, 0x9e37_79b9_7f4a_7c15)).unwrap();
    std::fs::write(fx.path("src/my.cnf"), b"[mysqld]\n").unwrap();
    expect(0, &["backup", &fx.s("src"), "-o", &fx.s("img.coffer"), "--key-file", &fx.key(), "-q"]);
    fx
}

/// The bytes the tree's files take on a tmpfs: their pages.
const TREE_ROOM: u64 = 18 * MIB + 4096;

/// No temporary of coffer's anywhere under `dir`.
#[track_caller]
fn no_temporaries(dir: &Path) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for n in names(&d) {
            assert!(!n.contains(".coffer-tmp") && !n.ends_with("mark-new"), "{n} left in {}", d.display());
            if d.join(&n).is_dir() {
                todo.push(d.join(&n));
            }
        }
    }
}

/// A restore from a file whose index says how much it writes: refused before anything is
/// written when it cannot fit, with the bytes missing; the same command completes once the
/// file system is larger.
#[test]
fn a_restore_that_cannot_fit_is_refused_before_it_writes() {
    let fx = with_image();
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "10m") else { return };
    let target = fs.s("dst");
    let args = ["restore", &fx.s("img.coffer"), "--to", &target, "--key-file", &fx.key()];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("needs 18.00 MiB") && line.contains("missing"), "{line}");
    assert!(names(&fs.path).is_empty(), "nothing written: {:?}", names(&fs.path));

    fs.resize("40m");
    expect(0, &args);
    assert_eq!(snapshot(Path::new(&target)), snapshot(&fx.path("src")));
    no_temporaries(&fs.path);
}

/// A file system with room for the files but not for the restore's marker: the disk fills at
/// the end. One line (the file system, what is missing), the marker stays, no file that did
/// not fit under its name, no temporary; once the ballast goes, the same command completes.
#[test]
fn a_disk_that_fills_at_the_end_of_a_restore_leaves_it_marked() {
    let fx = with_image();
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "40m") else { return };
    let ballast = fs.ballast(TREE_ROOM);
    let target = fs.s("dst");
    let args = ["restore", &fx.s("img.coffer"), "--to", &target, "--key-file", &fx.key()];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "the marker's page is what is missing: {err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("ran out of room") && line.contains("missing"), "{line}");
    assert!(line.contains("No space left on device"), "the cause: {line}");
    let target = Path::new(&target);
    assert!(target.join(".coffer-restore-incomplete").exists(), "marked: {:?}", names(target));
    let complete = snapshot(&fx.path("src"));
    assert_ne!(snapshot(target), complete, "not all there");
    no_temporaries(&fs.path);

    // The marker names the image: the same command, without --force, completes the job.
    std::fs::remove_file(ballast).unwrap();
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "the same restore completes: {err}");
    assert!(err.contains("continuing the interrupted restore of image"), "{err}");
    assert_eq!(snapshot(target), complete);
    assert!(!target.join(".coffer-restore-incomplete").exists());
    no_temporaries(&fs.path);
}

/// `backup -o` a file on a full disk: one line naming the file system, no image and no
/// temporary left; the same command completes on a larger one.
#[test]
fn a_backup_to_a_full_disk_leaves_no_file() {
    let fx = with_image();
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "10m") else { return };
    let out = fs.s("new.coffer");
    let args = ["backup", &fx.s("src"), "-o", &out, "--key-file", &fx.key(), "-q"];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("No space left on device") && line.contains("no image was left"), "{line}");
    assert!(names(&fs.path).is_empty(), "{:?}", names(&fs.path));

    fs.resize("40m");
    expect(0, &args);
    expect(0, &["verify", &out, "--key-file", &fx.key(), "-q"]);
    assert_eq!(names(&fs.path), ["new.coffer"]);
}

/// A CA with node1 (the sender) and node2 (the receiver).
fn pki(fx: &Fixture) {
    for name in ["node1", "node2"] {
        expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", name, "-q"]);
    }
}

fn tls(fx: &Fixture, name: &str) -> Vec<String> {
    let f = |ext: &str| fx.s(&format!("pki/{name}.{ext}"));
    vec!["--cert".into(), f("crt"), "--key".into(), f("key"), "--ca".into(), fx.s("pki/ca.crt")]
}

/// `coffer receive` with `args` on a free loopback port, once it listens; its port. Its stderr
/// is collected by a thread (see [`finish`]).
fn receiver(fx: &Fixture, args: &[&str]) -> (Child, u16, std::thread::JoinHandle<String>) {
    let mut rx = coffer();
    rx.args(["receive", "--listen", "127.0.0.1:0"]).args(args).args(tls(fx, "node2")).stdout(Stdio::null());
    let (child, port, err) = listening(rx);
    (child, port, drained(err))
}

/// The receiver's exit code and stderr (it has a minute to finish).
fn finish(mut child: Child, err: std::thread::JoinHandle<String>) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the receiver did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), err.join().unwrap())
}

/// `coffer send IMAGE` to `port`, with `extra`.
fn send(fx: &Fixture, port: u16, extra: &[&str]) -> (i32, String) {
    let to = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = vec!["send".into(), fx.s("img.coffer"), "--to".into(), to];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(tls(fx, "node1"));
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (code, err)
}

/// A receive with `rx_args` of what `send` sends, onto `fs`, which fills: both ends fail, the
/// receiver in one line naming the file system; that line.
fn receive_fails(fx: &Fixture, rx_args: &[&str], fs: &Tmpfs) -> String {
    let (rx, port, err) = receiver(fx, rx_args);
    let (code, sent) = send(fx, port, &[]);
    assert_eq!(code, 1, "{sent}");
    let (code, err) = finish(rx, err);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, fs);
    line
}

/// The same receive into `dst`, the sender resuming: the restore resumes (not started over),
/// the tree is the source's, nothing of coffer's is left; what the sender said.
fn receive_resumes(fx: &Fixture, rx_args: &[&str], dst: &Path, fs: &Tmpfs) -> String {
    let (rx, port, err) = receiver(fx, rx_args);
    let (code, sent) = send(fx, port, &["--resume"]);
    assert_eq!(code, 0, "{sent}");
    let (code, err) = finish(rx, err);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming the restore"), "resumed, not started over: {err}");
    assert_eq!(snapshot(dst), snapshot(&fx.path("src")));
    assert!(!dst.join(".coffer-restore-incomplete").exists() && !dst.join(".coffer-receive-journal").exists());
    no_temporaries(&fs.path);
    sent
}

/// `receive --to` onto a full disk: both ends fail, the receiver in one line naming the file
/// system; the target keeps its marker and journal; once the file system is larger, the
/// sender resumes and only the rest travels.
#[test]
fn a_receive_into_a_full_disk_resumes_once_there_is_room() {
    let fx = with_image();
    pki(&fx);
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "10m") else { return };
    let dst = fs.s("dst");
    let rx_args = ["--to", &dst, "--key-file", &fx.key(), "--checkpoint", "1M"];
    let line = receive_fails(&fx, &rx_args, &fs);
    assert!(line.contains("ran out of room") && line.contains("incomplete"), "{line}");
    assert!(!line.contains("the transfer with"), "the disk, not the connection: {line}");
    let dst = Path::new(&dst);
    assert!(dst.join(".coffer-restore-incomplete").exists() && dst.join(".coffer-receive-journal").exists());
    no_temporaries(&fs.path);

    fs.resize("40m");
    let sent = receive_resumes(&fx, &rx_args, dst, &fs);
    assert!(resumed_from(&sent) > MIB, "resumed, not started over: {sent}");
}

/// `receive -o` onto a full disk: one line naming the file system (not a failed transfer), no
/// file under the output's name, what arrived kept at its last checkpoint and no temporary of
/// the mark; once the file system is larger, the sender resumes and the file is the image.
#[test]
fn a_received_image_file_on_a_full_disk_resumes_once_there_is_room() {
    let fx = with_image();
    pki(&fx);
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "10m") else { return };
    let out = fs.s("kept.coffer");
    // The default checkpoint (256M) is past this image: the resumed run writes no mark of its
    // own, so a temporary left by the failed one would stay.
    let marked = ["-o", &out, "--checkpoint", "1M"];
    let (rx, port, err) = receiver(&fx, &marked);
    let (code, sent) = send(&fx, port, &[]);
    assert_eq!(code, 1, "{sent}");
    let (code, err) = finish(rx, err);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("No space left on device") && !line.contains("the transfer with"), "{line}");
    assert!(line.contains("for `coffer send --resume`"), "what arrived is kept: {line}");
    assert_eq!(names(&fs.path), [".kept.coffer.coffer-partial", ".kept.coffer.coffer-partial.mark"]);

    fs.resize("40m");
    let (rx, port, err) = receiver(&fx, &["-o", &out]);
    let (code, sent) = send(&fx, port, &["--resume"]);
    assert_eq!(code, 0, "{sent}");
    assert!(resumed_from(&sent) > MIB, "resumed: {sent}");
    let (code, err) = finish(rx, err);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("going on with"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fx.path("img.coffer")).unwrap());
    assert_eq!(names(&fs.path), ["kept.coffer"]);
}

/// `receive --to` on a file system with room for the files' data but not for what the receive
/// writes beside them (its marker, its journal): the disk fills late. One line naming the file
/// system; the target marked; once the ballast goes, the sender resumes and the tree is whole.
#[test]
fn a_receive_whose_journal_finds_no_room_resumes() {
    let fx = with_image();
    pki(&fx);
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "40m") else { return };
    let ballast = fs.ballast(TREE_ROOM);
    let dst = fs.s("dst");
    let rx_args = ["--to", &dst, "--key-file", &fx.key(), "--checkpoint", "1M"];
    let line = receive_fails(&fx, &rx_args, &fs);
    assert!(line.contains("No space left on device"), "{line}");
    let dst = Path::new(&dst);
    assert!(dst.join(".coffer-restore-incomplete").exists(), "marked: {:?}", names(dst));
    no_temporaries(&fs.path);

    std::fs::remove_file(ballast).unwrap();
    receive_resumes(&fx, &rx_args, dst, &fs);
}

/// A file system with bytes to spare but no inodes: a restore from a file is refused before it
/// writes (its index counts the entries), one from a pipe fails saying so, marked; with more
/// inodes, the same restore (over the marked target: the image read from the pipe is the one
/// its marker names) completes.
#[test]
fn a_file_system_out_of_inodes_is_said_so() {
    let fx = with_image();
    // The root of the tmpfs takes one of the four.
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "40m,nr_inodes=4") else { return };
    let target = fs.s("dst");
    let (code, _, err) = run(&["restore", &fx.s("img.coffer"), "--to", &target, "--key-file", &fx.key()]);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("3 inodes free: 3 missing"), "{line}");
    assert!(names(&fs.path).is_empty(), "nothing written: {:?}", names(&fs.path));

    let image = std::fs::read(fx.path("img.coffer")).unwrap();
    let piped = ["restore", "-", "--to", &target, "--key-file", &fx.key()];
    let (code, _, err) = run_with_stdin(&piped, &image);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("ran out of inodes") && line.contains("incomplete"), "{line}");
    assert!(Path::new(&target).join(".coffer-restore-incomplete").exists());

    fs.resize("40m,nr_inodes=64");
    let (code, _, err) = run_with_stdin(&piped, &image);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(Path::new(&target)), snapshot(&fx.path("src")));
    no_temporaries(&fs.path);
}

/// `extract --to` onto a full disk: one line naming the file system, no temporary; with room,
/// the extract completes (--force replaces what the failed one extracted whole).
#[test]
fn an_extract_onto_a_full_disk_names_it() {
    let fx = with_image();
    let Some(fs) = Tmpfs::mount(&fx.path("small"), "10m") else { return };
    let to = fs.s("x");
    let args = ["extract", &fx.s("img.coffer"), "db", "--to", &to, "--key-file", &fx.key()];
    let (code, _, err) = run(&args);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    names_the_fs(&line, &fs);
    assert!(line.contains("No space left on device"), "{line}");
    no_temporaries(&fs.path);

    fs.resize("40m");
    let (code, _, err) = run(&[&args[..], &["--force"]].concat());
    assert_eq!(code, 0, "{err}");
    for f in ["a.ibd", "b.ibd"] {
        let want = std::fs::read(fx.path("src/db").join(f)).unwrap();
        assert_eq!(std::fs::read(Path::new(&to).join("db").join(f)).unwrap(), want, "{f}");
    }
    no_temporaries(&fs.path);
}
