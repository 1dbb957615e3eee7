//! Issue 26: every job that runs something fails closed. Nothing from another user's PATH,
//! HOME or environment decides what coffer runs, with which options; key files another user
//! could change are refused; what a point-in-time restore needs of the host is checked before
//! anything is written; what killed runs left in a scratch directory is swept by the next.
//!
//! coffer runs as root here (CI does): `sudo -E` and `su -m` are played by setting the
//! variables another user would have left.

mod common;

use common::live::{self, free_port};
use common::mariadb::Server;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

fn root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: not root");
        return false;
    }
    true
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory `rel` of mode 0777 (another user's, as far as coffer can tell) holding a
/// script `name` that leaves the file `marker` behind when run.
fn planted(fx: &Fixture, rel: &str, name: &str, marker: &Path) -> String {
    let dir = fx.path(rel);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(name);
    std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display())).unwrap();
    chmod(&script, 0o755);
    chmod(&dir, 0o777);
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// A shared library that leaves `marker` behind when loaded, if a C compiler is here.
fn library(fx: &Fixture, dir: &str, name: &str, marker: &Path) -> bool {
    std::fs::create_dir_all(fx.path(dir)).unwrap();
    let src = fx.path("lib.c");
    std::fs::write(
        &src,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void ran(void) {{ \
             int fd = open(\"{}\", O_CREAT | O_WRONLY, 0600); if (fd >= 0) close(fd); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let so = fx.path(dir).join(format!("{name}.so"));
    let built = std::process::Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).status();
    built.is_ok_and(|s| s.success())
}

/// A backup from a server that is not there (`-S` names no socket): far enough for the client
/// to start.
fn backup_nowhere(fx: &Fixture, scratch: &str) -> std::process::Command {
    let mut cmd = coffer();
    cmd.args(["backup", "--mysql", "-S", &fx.s("nowhere.sock"), "-u", "backup", "-o", &fx.s("x.coffer")])
        .args(["--key-file", &fx.key(), "--scratch-dir", scratch])
        .stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_backup_runs_no_program_and_takes_no_option_another_user_chose() {
    if !root() || !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let scratch = fx.s("scratch");

    // A client first on PATH, in a directory another user can write to: refused, never run.
    let ran = fx.path("client-ran");
    let path = planted(&fx, "evil-bin", "mariadb", &ran);
    let (code, err) = output(backup_nowhere(&fx, &scratch).env("PATH", &path));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let named =
        format!("refusing to run {}: {} is writable by", fx.path("evil-bin/mariadb").display(), fx.s("evil-bin"));
    assert!(err.contains(&named), "{err}");
    assert!(!ran.exists(), "the planted client ran");

    // Another user's HOME and environment: their ~/.my.cnf has the client write a file of
    // their choosing as root (tee), their variables have it load their library.
    std::fs::create_dir_all(fx.path("home")).unwrap();
    let tee = fx.path("tee-written");
    std::fs::write(fx.path("home/.my.cnf"), format!("[mysql]\ntee={}\n", tee.display())).unwrap();
    let loaded = fx.path("library-loaded");
    let built = library(&fx, "plugins", "theirs", &loaded);
    let (code, err) = output(
        backup_nowhere(&fx, &scratch)
            .env("HOME", fx.path("home"))
            .env("MYSQL_HOME", fx.path("home"))
            .env("LIBMYSQL_PLUGINS", "theirs")
            .env("MARIADB_PLUGIN_DIR", fx.path("plugins"))
            .env("LIBMYSQL_PLUGIN_DIR", fx.path("plugins")),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect to the server"), "{err}");
    if !built {
        eprintln!("no C compiler: the library part skipped");
    }
    let (read, ran) = (tee.exists(), loaded.exists());
    assert!(!read && !ran, "the client read another user's ~/.my.cnf: {read}; loaded their library: {ran}");
}

/// A `coffer-*` private directory as a killed run leaves it: its lock file names `pid`, and
/// nobody holds it.
fn leftover(parent: &Path, name: &str, pid: u32) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o700);
    std::fs::write(dir.join(".coffer-lock"), format!("{pid}\n")).unwrap();
    std::fs::write(dir.join("client.cnf"), "[client]\npassword=\"left behind\"\n").unwrap();
    dir
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn a_backup_sweeps_what_a_killed_backup_left_in_its_scratch_directory() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    // Outside the temporary directory, where nothing else would ever sweep.
    let scratch = fx.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let dead = leftover(&scratch, "coffer-engine-0123456789abcdef", dead_pid());
    let live = leftover(&scratch, "coffer-engine-fedcba9876543210", std::process::id());
    let (code, err) = output(&mut backup_nowhere(&fx, scratch.to_str().unwrap()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("removed {}, which an interrupted", dead.display())), "{err}");
    assert!(!dead.exists(), "a dead backup's scratch directory is left");
    assert!(live.join("client.cnf").exists(), "a running backup's scratch directory was touched");
    assert!(!err.contains(&live.display().to_string()), "{err}");
    // A place another user can write to (not sticky): they could swap the scratch directory
    // for theirs, with an option file the engine would read. Refused before the client runs.
    chmod(&scratch, 0o777);
    let (code, err) = output(&mut backup_nowhere(&fx, scratch.to_str().unwrap()));
    assert_eq!(code, 1, "{err}");
    let refused = format!("refusing to make the engine's scratch directory in {}", scratch.display());
    assert!(err.contains(&refused) && err.trim().lines().count() == 1, "{err}");
    chmod(&scratch, 0o1777);
    let (code, err) = output(&mut backup_nowhere(&fx, scratch.to_str().unwrap()));
    assert!(code == 1 && err.contains("cannot connect to the server"), "sticky is fine: {err}");
}

#[test]
fn a_point_in_time_restore_sweeps_killed_replays_before_it_reads_anything() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("tmp")).unwrap();
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let dead = leftover(&fx.path("tmp"), "coffer-replay-0123456789abcdef", dead_pid());
    let prefix = format!("file://{}/", fx.path("prod").display());
    let to = fx.s("t/data");
    let args = ["restore", &prefix, "--until-gtid", "0-1-5", "--to", &to, "--key-file", &fx.key()];
    let (code, err) = output(coffer().args(args).env("TMPDIR", fx.path("tmp")));
    // Nothing to restore from; what a killed replay left is gone all the same.
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no archived binary log"), "{err}");
    assert!(err.contains(&format!("removed {}", dead.display())) && !dead.exists(), "{err}");
    // An unknown server user: one line, before anything.
    let owner = ["--owner", "no-such-user"];
    let (code, err) = output(coffer().args(args).args(owner).env("TMPDIR", fx.path("tmp")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--owner no-such-user") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn key_files_another_user_could_change_are_refused() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/a"), b"a").unwrap();
    let backup = |key: &Path, extra: &[&str]| {
        let mut args = vec!["backup".to_owned(), fx.s("src"), "-o".into(), fx.s("x.coffer")];
        args.extend(["--key-file".into(), key.to_str().unwrap().to_owned(), "-q".into(), "--force".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    };
    let key = fx.path("k.key");
    // Group-writable (and readable by none but the owner).
    chmod(&key, 0o620);
    let (code, _, err) = backup(&key, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is writable by group or others (mode 0620)") && err.contains("--allow-insecure-key-file"));
    assert_eq!(backup(&key, &["--allow-insecure-key-file"]).0, 0);
    chmod(&key, 0o600);
    assert_eq!(backup(&key, &[]).0, 0);
    // In a directory another user can write to: they could replace it.
    let open = fx.path("open");
    std::fs::create_dir_all(&open).unwrap();
    let moved = open.join("k.key");
    std::fs::copy(&key, &moved).unwrap();
    chmod(&open, 0o777);
    let (code, _, err) = backup(&moved, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{} is writable by group or others (mode 0777)", open.display())), "{err}");
    assert_eq!(backup(&moved, &["--allow-insecure-key-file"]).0, 0);
    chmod(&open, 0o755);
    // Owned by another user, as root: refused, unless told.
    if nix::unistd::geteuid().is_root() {
        for what in ["--key-file", "--passphrase-file"] {
            let file = fx.path("theirs");
            std::fs::write(&file, format!("{KEY_HEX}\n")).unwrap();
            chmod(&file, 0o600);
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            let mut args = vec!["backup".to_owned(), fx.s("src"), "-o".into(), fx.s("y.coffer")];
            args.extend([what.to_owned(), file.to_str().unwrap().to_owned(), "-q".into(), "--force".into()]);
            args.extend(["--kdf-memory".into(), "64".into(), "--kdf-iterations".into(), "1".into()]);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, _, err) = run(&refs);
            assert_eq!(code, 1, "{what}: {err}");
            assert!(err.contains("is owned by nobody (uid 65534), not root"), "{err}");
            assert!(!err.contains(KEY_HEX), "{err}");
            let mut allowed = refs.clone();
            allowed.push("--allow-insecure-key-file");
            let (code, _, err) = run(&allowed);
            assert_eq!(code, 0, "{what}: {err}");
            std::fs::remove_file(&file).unwrap();
        }
    }
}

#[test]
fn as_root_a_key_command_runs_nothing_from_another_users_path() {
    if !root() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    let ran = fx.path("key-command-ran");
    let path = planted(&fx, "evil-bin", "fetch-key", &ran);
    let args = ["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--key-command", "fetch-key"];
    let (code, err) = output(coffer().args(args).env("PATH", &path).env("HOME", fx.path("evil-bin")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the key command failed"), "{err}");
    let warned = format!("the key command runs without {} on its PATH", fx.s("evil-bin"));
    assert!(err.contains(&warned) && err.contains("is writable by group or others (mode 0777)"), "{err}");
    assert!(!ran.exists(), "the planted key command ran");
    // From a directory only root can change, it runs.
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("fetch-key"), format!("#!/bin/sh\necho {KEY_HEX}\n")).unwrap();
    chmod(&bin.join("fetch-key"), 0o755);
    let path = format!("{}:{path}", bin.display());
    let (code, err) = output(coffer().args(args).env("PATH", &path));
    assert_eq!(code, 0, "{err}");
}

/// A small source server: the binary log on, a backup user and a replication user (passwords
/// in `pw` and `repl-pw`), one table.
fn small_source(fx: &Fixture, port: u16) -> Server {
    let server = Server::start(&fx.path("src"), &live::binlog_options(port, &["--binlog-format=ROW"]));
    server.sql(
        "CREATE DATABASE app; \
         CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY 'secret-pw'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'backup'@'127.0.0.1'; \
         CREATE USER 'repl'@'localhost' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'localhost'; \
         CREATE TABLE app.t (id INT PRIMARY KEY, v INT); INSERT INTO app.t VALUES (1, 1);",
    );
    fx.write_secret("pw", "secret-pw\n");
    fx.write_secret("repl-pw", "repl-pw\n");
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    server
}

#[test]
fn live_backups_and_restores_run_only_what_root_chose() {
    if !root() || !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let port = free_port();
    let server = small_source(&fx, port);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());

    // Another user's ~/.my.cnf (sudo -E): its password and its [mariadb-backup] group are
    // not read, by the client or the engine.
    std::fs::create_dir_all(fx.path("home")).unwrap();
    let home = "[client]\npassword=not-the-password\n[mariadb-backup]\nno-such-option-of-theirs=1\n";
    std::fs::write(fx.path("home/.my.cnf"), home).unwrap();
    let args = live::backup_args(&fx, port, &fx.s("a.coffer"));
    let (code, err) = output(coffer().args(&args).env("HOME", fx.path("home")).stdin(Stdio::null()));
    assert_eq!(code, 0, "{err}");

    // The user's own --defaults-file names the server and user; the password file is read
    // with it (a program given --defaults-file reads no --defaults-extra-file).
    let mine = fx.path("mine.cnf");
    std::fs::write(&mine, format!("[client]\nhost=127.0.0.1\nport={port}\nuser=backup\n")).unwrap();
    let key = fx.key();
    let (code, err) = output(
        coffer()
            .args(["backup", "--mysql", "--defaults-file", mine.to_str().unwrap(), "--password-file", &fx.s("pw")])
            .args(["-o", &prefix, "--key-file", &key, "--scratch-dir", &fx.s("scratch"), "-q"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{err}");

    // An engine first on PATH, in a directory another user can write to: refused, never run.
    let ran = fx.path("engine-ran");
    let path = planted(&fx, "evil-bin", "mariadb-backup", &ran);
    let args = live::backup_args(&fx, port, &fx.s("b.coffer"));
    let (code, err) = output(coffer().args(&args).env("PATH", &path).stdin(Stdio::null()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("refusing to run {}", fx.path("evil-bin/mariadb-backup").display())), "{err}");
    assert!(!ran.exists(), "the planted engine ran");

    // A point-in-time restore whose replay server has no user: refused before anything is
    // read or written, beside the target or in the backups' place (no lease).
    server.sql("INSERT INTO app.t VALUES (2, 2)");
    let gtid = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let sock = server.socket.display().to_string();
    let binlogs = format!("{prefix}binlog/");
    let repl = ["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &fx.s("repl-pw")];
    expect(0, &[&repl[..], &["-o", &binlogs, "--key-file", &key]].concat());
    let before = snapshot(&fx.path("prod"));
    let to = fx.s("t/data");
    let pitr = ["restore", &prefix, "--until-gtid", &gtid, "--to", &to, "--key-file", &key];
    let err = expect(2, &[&pitr[..], &["--owner", "no-such-user"]].concat());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--owner no-such-user"), "{err}");
    assert!(!fx.path("t").exists(), "the target's directory was created");
    assert_eq!(snapshot(&fx.path("prod")), before, "the backups' place was written to");

    // The replay's server, binlog reader and client take nothing of another user's
    // environment: not their client plugins, not the modes of the files the server creates.
    let loaded = fx.path("library-loaded");
    let built = library(&fx, "plugins", "theirs", &loaded);
    let to = fx.s("r/data");
    let pitr = ["restore", &prefix, "--until-gtid", &gtid, "--to", &to, "--key-file", &key, "--replay-with", "client"];
    let (code, err) = output(
        coffer()
            .args(pitr)
            .env("LIBMYSQL_PLUGINS", "theirs")
            .env("MARIADB_PLUGIN_DIR", fx.path("plugins"))
            .env("UMASK", "0666")
            .env("UMASK_DIR", "0777"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!built || !loaded.exists(), "the replay loaded a library named by the environment");
    let open: Vec<String> = snapshot(&fx.path("r/data"))
        .into_iter()
        .filter(|e| e.3 & 0o002 != 0)
        .map(|e| String::from_utf8_lossy(&e.0).into_owned())
        .collect();
    assert!(open.is_empty(), "files others can write: {open:?}");
    let restored = Server::open(&fx.path("r"), &[]);
    assert_eq!(restored.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.t").trim(), "1,2");
    drop(restored);
    drop(server);
}

/// A signer file (`--require-signer FILE`) decides whose images are accepted: one another user
/// could change is refused, as key files are.
#[test]
fn signer_files_another_user_could_change_are_refused() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/a"), b"a").unwrap();
    let (_, signer, _) = run(&["key", "generate", "--signing", "-o", &fx.s("b.sig"), "-q"]);
    std::fs::write(fx.path("signer"), &signer).unwrap();
    let image = fx.s("x.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &image, "--key-file", &fx.key(), "--signing-key", &fx.s("b.sig"), "-q"]);
    chmod(&fx.path("signer"), 0o644);
    expect(0, &["verify", &image, "--key-file", &fx.key(), "--require-signer", &fx.s("signer"), "-q"]);
    chmod(&fx.path("signer"), 0o666);
    let (code, _, err) = run(&["verify", &image, "--key-file", &fx.key(), "--require-signer", &fx.s("signer"), "-q"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("the signer file") && err.contains("writable by group or others (mode 0666)"), "{err}");
}
