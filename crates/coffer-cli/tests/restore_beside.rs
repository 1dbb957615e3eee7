//! A chain restore works in private directories beside its target and then renames the result
//! into the target's place (issue 26): a user who may create names in the target's parent (not
//! root: `nobody`, through setpriv) creates the target while the chain is restored, and must
//! get neither the restored datadir nor coffer's hands on their directory; a parent that others
//! could rename entries in is refused before anything is written.
//!
//! `COFFER_TEST_PAUSE_BEFORE_REPLACE=FILE` holds coffer at the point where it checks the target
//! before the rename (it creates FILE and waits until it is removed), so the race is won every
//! time.

mod common;

use common::live::*;
use common::mariadb::Server;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PAUSE: &str = "COFFER_TEST_PAUSE_BEFORE_REPLACE";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small server with the binary log on and a backup user; a full and an incremental backup
/// of it in `bk/`.
fn chain(fx: &Fixture) -> (Server, String) {
    for d in ["scratch", "bk"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let port = free_port();
    let src = Server::start(&fx.path("src"), &binlog_options(port, &[]));
    src.sql(
        "CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY 'secret-pw'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'backup'@'127.0.0.1'; \
         CREATE DATABASE secret; CREATE TABLE secret.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO secret.t SELECT seq, 'before' FROM secret.seq_1_to_1000;",
    );
    fx.write_secret("pw", "secret-pw\n");
    let mut args = backup_args(fx, port, &fx.s("bk/full.coffer"));
    args.push("--incremental".into());
    coffer_ok(&args);
    src.sql("INSERT INTO secret.t SELECT seq + 1000, 'after' FROM secret.seq_1_to_1000;");
    let mut args = backup_args(fx, port, &fx.s("bk/inc.coffer"));
    args.push("--incremental".into());
    let log = coffer_ok(&args);
    assert!(log.contains("taking incremental backup 1"), "{log}");
    (src, fx.s("bk/inc.coffer"))
}

/// Runs `sh -c script` as `nobody` (as this user if not root, or without setpriv).
fn as_nobody(script: &str) {
    let unprivileged = nix::unistd::geteuid().is_root() && Path::new("/usr/bin/setpriv").exists();
    let mut c = if unprivileged {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a 'nobody' user");
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid", &nobody.uid.to_string(), "--regid", &nobody.gid.to_string(), "--clear-groups", "--"]);
        c.args(["sh", "-c", script]);
        c
    } else {
        eprintln!("note: the attacker runs as this user (not root, or no setpriv)");
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    let out = c.output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_target_created_while_a_chain_is_restored_is_not_adopted() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    chmod(fx.dir.path(), 0o711);
    let (_src, inc) = chain(&fx);
    let k = fx.key();

    // A parent anyone may write in (not sticky): whatever is beside the target could be moved.
    let open = fx.path("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let to = open.join("data");
    let (code, _, err) = run(&["restore", &inc, "--to", to.to_str().unwrap(), "--prepare", "--key-file", &k]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is writable by group or others"), "{err}");
    assert!(names(&open).is_empty(), "nothing was written: {:?}", names(&open));

    // A sticky parent (as /tmp): others may create names in it. `nobody` creates the target,
    // open to all, while coffer is about to move the restored chain in.
    let shared = fx.path("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let to = shared.join("data");
    let pause = fx.path("pause");
    let child = coffer()
        .args(["restore", &inc, "--to", to.to_str().unwrap(), "--prepare", "--key-file", &k])
        .env(PAUSE, &pause)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pause.exists() {
        assert!(Instant::now() < deadline, "coffer never reached the rename");
        std::thread::sleep(Duration::from_millis(20));
    }
    as_nobody(&format!("mkdir {0} && chmod 777 {0}", to.display()));
    std::fs::remove_file(&pause).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was created while the chain was restored"), "{err}");
    // Their directory is as they made it: empty, theirs, its mode untouched; and nothing of the
    // restore is left beside it.
    let m = std::fs::symlink_metadata(&to).unwrap();
    let theirs = if nix::unistd::geteuid().is_root() { 65534 } else { nix::unistd::geteuid().as_raw() };
    assert_eq!((m.uid(), m.mode() & 0o7777), (theirs, 0o777));
    assert!(names(&to).is_empty(), "{:?}", names(&to));
    assert_eq!(names(&shared), ["data"]);

    // Without anyone in the way, the same restore completes, and the datadir stays private.
    std::fs::remove_dir(&to).unwrap();
    let err = expect(0, &["restore", &inc, "--to", to.to_str().unwrap(), "--prepare", "--key-file", &k]);
    assert!(err.contains("restoring a chain of 2"), "{err}");
    assert!(to.join("secret").is_dir());
    assert_eq!(std::fs::symlink_metadata(&to).unwrap().mode() & 0o077, 0, "the restored datadir is private");
    assert_eq!(names(&shared), ["data"]);
}

/// A chain restore killed (SIGKILL) while its restored, prepared datadir waits beside the
/// target leaves that plaintext there; the next restore to the same target removes it (its
/// lock is free, its process gone), with a warning, and completes (issue 26, item 9).
#[test]
fn a_killed_chain_restore_leaves_plaintext_the_next_one_removes() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    chmod(fx.dir.path(), 0o711);
    let (_src, inc) = chain(&fx);
    let k = fx.key();
    std::fs::create_dir(fx.path("out")).unwrap();
    let to = fx.path("out/data");
    let pause = fx.path("pause");
    let mut child = coffer()
        .args(["restore", &inc, "--to", to.to_str().unwrap(), "--prepare", "--key-file", &k])
        .env(PAUSE, &pause)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pause.exists() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "coffer never reached the rename");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = names(&fx.path("out"));
    assert_eq!(left.len(), 1, "the prepared datadir waits beside the target: {left:?}");
    assert!(left[0].starts_with(".data.coffer-chain-") && fx.path("out").join(&left[0]).join("secret").is_dir());

    std::fs::remove_file(&pause).unwrap();
    let err = expect(0, &["restore", &inc, "--to", to.to_str().unwrap(), "--prepare", "--key-file", &k]);
    assert!(err.contains(&format!("removed {}", fx.path("out").join(&left[0]).display())), "{err}");
    assert_eq!(names(&fx.path("out")), ["data"], "only the target is left");
    assert!(!to.join(".coffer-lock").exists(), "the lock file does not follow the datadir");
}
