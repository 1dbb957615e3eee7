//! Hot backups of a real MariaDB server (Debian's packages, private datadir, socket and
//! loopback port): backed up while sysbench writes to it, restored and prepared, started, its
//! tables checked; consistency proven by replaying the source's binary log from the position
//! coffer recorded. And every way a live backup can fail.

mod common;

use common::live::*;
use common::mariadb::{self, Server};
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Restores and prepares `image` into `dir/data` and starts a server on it.
fn restore_and_start(fx: &Fixture, image: &str, dir: &str) -> Server {
    let data = fx.path(dir).join("data");
    std::fs::create_dir_all(fx.path(dir)).unwrap();
    let err = expect(0, &["restore", image, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &fx.key()]);
    assert!(err.contains("prepared"), "{err}");
    Server::open(&fx.path(dir), &[])
}

/// Watches a directory tree until told to stop; returns the largest file seen and every name.
fn watch(
    dir: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let mut largest = 0;
        let mut names = std::collections::BTreeSet::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    match e.metadata() {
                        Ok(m) if m.is_dir() => stack.push(p),
                        Ok(m) => {
                            largest = largest.max(m.len());
                            names.insert(p.file_name().unwrap().to_string_lossy().into_owned());
                        }
                        Err(_) => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (largest, names.into_iter().collect())
    })
}

#[test]
fn a_hot_backup_under_load_restores_consistent() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let port = free_port();
    let source_port = port;
    let mut src = source(&fx, port, &[]);
    let all = tables(&src);
    assert_eq!(all.len(), 6, "{all:?}");

    // Writers run for the whole backup.
    let mut load = sysbench(&src, "run", &["--time=60"]);
    std::thread::sleep(Duration::from_secs(2));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch(fx.path("scratch"), stop.clone());
    let image = fx.s("hot.coffer");
    let log = coffer_ok(&backup_args(&fx, port, &image));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (largest, names) = watcher.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let _ = load.kill();
    let _ = load.wait();
    assert!(log.contains("mariabackup: ") && log.contains("completed OK"), "the engine's log is shown: {log}");
    // The engine's scratch directory never held table data: only its option file and a few bytes.
    assert!(largest < 64 * 1024, "scratch held a file of {largest} bytes: {names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with(".ibd") || n.starts_with("ibdata") || n.starts_with("ib_logfile")),
        "{names:?}"
    );
    assert!(std::fs::read_dir(fx.path("scratch")).unwrap().next().is_none(), "scratch removed");

    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", &image, "--json", "--key-file", &fx.key()]).1).unwrap();
    let b = &info["backup"];
    assert_eq!(b["engine"].as_str().map(|e| e.contains("backup")), Some(true), "{info}");
    assert!(b["server_version"].as_str().unwrap().contains("MariaDB"));
    assert!(b["to_lsn"].as_u64().unwrap() > 0);
    let file = b["binlog"]["file"].as_str().unwrap().to_owned();
    let pos = b["binlog"]["position"].as_u64().unwrap();
    let sql = String::from_utf8(run(&["info", &image, "--replication", "--key-file", &fx.key()]).1).unwrap();
    assert!(
        sql.contains(&format!("MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}")) && sql.contains("gtid_slave_pos"),
        "{sql}"
    );
    assert!(String::from_utf8(run(&["list", &image, "--key-file", &fx.key()]).1).unwrap().contains("backup.log"));

    // Restore, prepare, start: every table checks.
    let dst = restore_and_start(&fx, &image, "dst");
    for t in &all {
        let check = dst.sql(&format!("CHECK TABLE {t}"));
        assert!(check.contains("\tstatus\tOK"), "{t}: {check}");
    }
    // Replaying the source's binary log from the recorded position gives the source's tables.
    replay(&src, &dst, &file, pos, false);
    assert_eq!(checksums(&dst, &all), checksums(&src, &all), "restored + replayed == source");
    drop(dst);

    // An idle server, through a pipe (backup -o - | restore - --prepare): the restored tables
    // equal the source's directly.
    let mut args = backup_args(&fx, port, "-");
    args.push("-q".into());
    let to = fx.path("dst2").join("data");
    std::fs::create_dir_all(fx.path("dst2")).unwrap();
    let script = format!(
        "{bin} {} | {bin} restore - --to {} --prepare --key-file {} -q",
        args.join(" "),
        to.display(),
        fx.key(),
        bin = env!("CARGO_BIN_EXE_coffer")
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dst2 = Server::open(&fx.path("dst2"), &[]);
    assert_eq!(checksums(&dst2, &all), checksums(&src, &all));
    drop(dst2);

    // Prepare and copy back into an empty datadir; a non-empty one is refused.
    let idle = fx.s("idle.coffer");
    coffer_ok(&backup_args(&fx, port, &idle));
    let datadir = fx.path("dst4").join("data");
    std::fs::create_dir_all(&datadir).unwrap();
    std::fs::write(datadir.join("stray"), b"x").unwrap();
    let stage = fx.s("stage");
    let dd = datadir.to_str().unwrap();
    let copy_back =
        ["restore", &idle, "--to", &stage, "--prepare", "--copy-back", "--datadir", dd, "--key-file", &fx.key()];
    let err = expect(1, &copy_back);
    assert!(err.contains("not empty"), "{err}");
    std::fs::remove_file(datadir.join("stray")).unwrap();
    std::fs::remove_dir_all(&stage).unwrap();
    expect(0, &copy_back);
    let dst4 = Server::open(&fx.path("dst4"), &[]);
    assert_eq!(checksums(&dst4, &all), checksums(&src, &all));
    drop(dst4);

    // The same hot backup through a pipe: mariabackup | coffer backup --xbstream -.
    let piped = fx.s("piped.coffer");
    let script = format!(
        "{} --no-defaults --backup --stream=xbstream --socket={} --user=root --target-dir={} | {} backup --xbstream - -o {} --key-file {} -q",
        mariadb::which("mariadb-backup").unwrap().display(),
        src.socket.display(),
        fx.s("scratch/t"),
        env!("CARGO_BIN_EXE_coffer"),
        piped,
        fx.key()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dst3 = restore_and_start(&fx, &piped, "dst3");
    assert_eq!(checksums(&dst3, &all), checksums(&src, &all));
    drop(dst3);

    // A hot backup sent straight to another host's datadir and prepared there (SST-like).
    for name in ["node1", "node2"] {
        expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", name, "-q"]);
    }
    let tls = |n: &str| {
        [
            "--cert".to_string(),
            fx.s(&format!("pki/{n}.crt")),
            "--key".into(),
            fx.s(&format!("pki/{n}.key")),
            "--ca".into(),
            fx.s("pki/ca.crt"),
        ]
    };
    std::fs::create_dir_all(fx.path("dst5")).unwrap();
    let mut receiver = coffer()
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &fx.s("dst5/data"),
            "--prepare",
            "--key-file",
            &fx.key(),
            "-q",
        ])
        .args(tls("node2"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = std::io::BufReader::new(receiver.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    // The same options as `backup --mysql`, with the receiver in place of -o.
    let mut args = backup_args(&fx, source_port, "");
    args[0] = "send".into();
    let o = args.iter().position(|a| a == "-o").unwrap();
    args.splice(o..o + 2, ["--to".to_string(), format!("127.0.0.1:{port}")]);
    args.extend(tls("node1"));
    args.push("-q".into());
    coffer_ok(&args);
    let status = receiver.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    let dst5 = Server::open(&fx.path("dst5"), &[]);
    assert_eq!(checksums(&dst5, &all), checksums(&src, &all));
    drop(dst5);
    src.stop();
}

/// A string the encrypted tests write into a table and the binary log: never found in a file.
const MARKER: &str = "coffer-plaintext-marker";

/// The password of the encrypted key file (`file_key_management_filekey`): never shown.
const FILEKEY: &str = "coffer-filekey-s3cret";

/// A server that encrypts everything at rest with `file_key_management` and `algorithm` (tables,
/// redo log, temporary tables and files, binary log), backed up while sysbench writes to it,
/// restored and prepared, started, checked and caught up by replaying its binary log. `moved`:
/// the restore host keeps the key file elsewhere (`--prepare-option`); else the key file is
/// password-protected, and the password never shows in coffer's output.
fn encrypted_round_trip(algorithm: &str, moved: bool) {
    if !tools() {
        return;
    }
    if mariadb::which("openssl").is_none() {
        assert!(std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(), "openssl is required");
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    std::fs::create_dir_all(fx.path("keys")).unwrap();
    let port = free_port();
    let keys = fx.path("keys/keys.txt");
    let filekey = (!moved).then_some(FILEKEY);
    mariadb::write_key_file(&keys, filekey);
    let mut src = source(&fx, port, &mariadb::encryption_options(&keys, algorithm, filekey));
    src.sql(&format!(
        "CREATE TABLE sbtest.enc (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) ENCRYPTED=YES ENCRYPTION_KEY_ID=2; \
         INSERT INTO sbtest.enc (v) SELECT CONCAT('{MARKER} ', seq) FROM sbtest.seq_1_to_2000;"
    ));
    let all = tables(&src);
    let encrypted = |server: &Server| {
        let n = server.sql(
            "SELECT COUNT(*) FROM information_schema.innodb_tablespaces_encryption \
             WHERE name LIKE 'sbtest/%' AND encryption_scheme = 1",
        );
        n.trim().parse::<usize>().unwrap()
    };
    assert_eq!(encrypted(&src), all.len(), "every table is encrypted: {all:?}");

    let mut load = sysbench(&src, "run", &["--time=60"]);
    std::thread::sleep(Duration::from_secs(2));
    let image = fx.s("enc.coffer");
    // Whatever the user's ~/.my.cnf says, coffer connects where its command line says.
    std::fs::create_dir_all(fx.path("home")).unwrap();
    let home = "[client]\nhost=localhost\nsocket=/nonexistent/mysqld.sock\nport=1\nuser=nobody\n";
    std::fs::write(fx.path("home/.my.cnf"), home).unwrap();
    let out = coffer().args(backup_args(&fx, port, &image)).env("HOME", fx.path("home")).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let _ = load.kill();
    let _ = load.wait();
    assert!(log.contains("completed OK"), "{log}");
    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", &image, "--json", "--key-file", &fx.key()]).1).unwrap();
    let file = info["backup"]["binlog"]["file"].as_str().unwrap().to_owned();
    let pos = info["backup"]["binlog"]["position"].as_u64().unwrap();
    // What the server encrypts is encrypted on disk: the marker is in no table or binlog file.
    for f in [src.datadir.join("sbtest/enc.ibd"), src.datadir.join(&file)] {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "{} holds plaintext", f.display());
    }

    let key = fx.key();
    let mut restore = vec!["restore", &image, "--prepare", "--key-file", &key];
    let host_keys = fx.path("restore-host/keys.txt");
    let key_option = format!("file_key_management_filename={}", host_keys.display());
    let host_keys = if moved {
        // The key file is elsewhere on the restore host: without being told, the prepare says so.
        std::fs::create_dir_all(fx.path("restore-host")).unwrap();
        std::fs::rename(&keys, &host_keys).unwrap();
        let to = fx.s("lost/data");
        let (code, _, err) = run(&[&restore[..], &["--to", to.as_str()]].concat());
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("--prepare-option file_key_management_filename="), "{err}");
        restore.extend(["--prepare-option", &key_option]);
        host_keys
    } else {
        keys.clone()
    };
    let to = fx.path("dst/data");
    std::fs::create_dir_all(fx.path("dst")).unwrap();
    let err = expect(0, &[&restore[..], &["--to", to.to_str().unwrap()]].concat());
    assert!(err.contains("prepared"), "{err}");
    if let Some(secret) = filekey {
        assert!(log.contains("filekey=<redacted>"), "{log}");
        assert!(!log.contains(secret) && !err.contains(secret), "the key file's password was shown");
    }
    let enc = std::fs::read(to.join("sbtest/enc.ibd")).unwrap();
    assert!(!enc.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "the restored table holds plaintext");

    let dst = Server::open(&fx.path("dst"), &mariadb::encryption_options(&host_keys, algorithm, filekey));
    for t in &all {
        let check = dst.sql(&format!("CHECK TABLE {t}"));
        assert!(check.contains("\tstatus\tOK"), "{t}: {check}");
    }
    assert_eq!(encrypted(&dst), all.len());
    // The binary log is encrypted: replayed through the server, it gives the source's tables.
    replay(&src, &dst, &file, pos, true);
    assert_eq!(checksums(&dst, &all), checksums(&src, &all), "restored + replayed == source");
    drop(dst);
    src.stop();
}

#[test]
fn an_encrypted_server_aes_ctr_restores_and_prepares() {
    encrypted_round_trip("AES_CTR", false);
}

#[test]
fn an_encrypted_server_aes_cbc_restores_with_the_key_file_elsewhere() {
    encrypted_round_trip("AES_CBC", true);
}

/// The image file and coffer's temporary files in `dir`: none may be left by a failed backup.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("coffer") && !n.ends_with(".key"))
        .collect()
}

#[test]
fn failed_live_backups_leave_no_image() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    std::fs::create_dir_all(fx.path("out")).unwrap();
    let port = free_port();
    let src = source(&fx, port, &[]);
    let image = fx.path("out").join("x.coffer");
    let image = image.to_str().unwrap();
    let run_backup = |extra: &[&str], path: Option<&str>| {
        let mut args = backup_args(&fx, port, image);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = coffer();
        cmd.args(&args).stdin(Stdio::null());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // The engine missing: a PATH with the client only.
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(mariadb::which("mariadb").unwrap(), bin.join("mariadb")).unwrap();
    let (code, err) = run_backup(&[], Some(bin.to_str().unwrap()));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("mariabackup not found") && err.lines().count() == 1, "{err}");
    assert!(leftovers(&fx.path("out")).is_empty());

    // Wrong credentials; the server down.
    fx.write_secret("pw", "wrong\n");
    let (code, err) = run_backup(&[], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect to the server") && err.contains("Access denied"), "{err}");
    fx.write_secret("pw", "secret-pw\n");
    let mut args = backup_args(&fx, port, image);
    let at = args.iter().position(|a| a == "-h").unwrap();
    args.splice(at..at + 4, ["-S".to_string(), fx.s("nowhere.sock")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = expect(1, &refs);
    assert!(err.contains("cannot connect to the server"), "{err}");
    assert!(leftovers(&fx.path("out")).is_empty());

    // The engine killed midway (slowed down so that it is caught in the act).
    let child = coffer()
        .args(backup_args(&fx, port, image))
        .args(["--engine-arg=--throttle=1", "-q"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let engine_pid = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "the engine never started streaming");
        let streaming = leftovers(&fx.path("out")).iter().any(|n| n.contains("coffer-tmp"))
            && std::fs::read_dir(fx.path("out")).unwrap().flatten().any(|e| e.metadata().unwrap().len() > 16384);
        if let Some(pid) = find_process(&fx.s("scratch")) {
            if streaming {
                break pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Once the engine runs, the option file with the password is gone from the scratch directory.
    let cnf_left =
        std::fs::read_dir(fx.path("scratch")).unwrap().flatten().any(|d| d.path().join("client.cnf").exists());
    assert!(!cnf_left, "the password's option file outlived the engine's start");
    assert!(Command::new("kill").args(["-9", &engine_pid.to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("mariabackup failed") && err.contains("signal"), "{err}");
    assert!(leftovers(&fx.path("out")).is_empty(), "{:?}", leftovers(&fx.path("out")));
    assert!(std::fs::read_dir(fx.path("scratch")).unwrap().next().is_none(), "scratch removed");

    // A stream cut short on stdin: refused as incomplete.
    let full = fx.s("full.xb");
    let script = format!(
        "{} --no-defaults --backup --stream=xbstream --socket={} --user=root --target-dir={} > {full}",
        mariadb::which("mariadb-backup").unwrap().display(),
        src.socket.display(),
        fx.s("scratch/t"),
    );
    assert!(Command::new("sh").arg("-c").arg(&script).output().unwrap().status.success());
    let bytes = std::fs::read(&full).unwrap();
    let cut = &bytes[..bytes.len() - 3000];
    let (code, _, err) = run_with_stdin(&["backup", "--xbstream", "-", "-o", image, "--key-file", &fx.key()], cut);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("incomplete") || err.contains("truncated") || err.contains("cut short"), "{err}");
    assert!(leftovers(&fx.path("out")).is_empty());
}

/// The pid of a mariadb-backup process whose command line mentions `needle`.
fn find_process(needle: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("--backup")
            && text.contains(needle)
            && (text.contains("mariadb-backup") || text.contains("mariabackup"))
        {
            return Some(pid);
        }
    }
    None
}

/// A server that accepts only TLS (`require_secure_transport=ON`): with
/// `--ssl-mode VERIFY_IDENTITY --ssl-ca` the client and the
/// engine connect over verified TLS; a certificate from another CA, or one that does not name
/// the host connected to, is refused (one line, exit 1, no image).
#[test]
fn a_server_that_requires_tls_is_backed_up_over_verified_tls() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "db"]);
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("other"), "--name", "db"]);
    let port = free_port();
    let opts: Vec<String> = vec![
        "--skip-networking=0".into(),
        // 127.0.0.2 reaches the same server under a name its certificate does not hold.
        "--bind-address=127.0.0.1,127.0.0.2".into(),
        format!("--port={port}"),
        format!("--ssl-ca={}", fx.s("pki/ca.crt")),
        format!("--ssl-cert={}", fx.s("pki/db.crt")),
        format!("--ssl-key={}", fx.s("pki/db.key")),
        "--require-secure-transport=ON".into(),
    ];
    let server = Server::start(&fx.path("src"), &opts);
    server.sql(
        "CREATE USER 'b'@'%' IDENTIFIED BY 'secret-pw'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SELECT ON *.* TO 'b'@'%'; \
         CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1), (2);",
    );
    fx.write_secret("pw", "secret-pw\n");
    let (pw, key, scratch, port) = (fx.s("pw"), fx.key(), fx.s("scratch"), port.to_string());
    let backup = |host: &str, image: &str, tls: &[&str]| {
        let mut args = vec!["backup", "--mysql", "-h", host, "-P", &port, "-u", "b", "--password-file", &pw];
        args.extend(["-o", image, "--key-file", &key, "--scratch-dir", &scratch]);
        args.extend(tls);
        run(&args)
    };
    let accepts = || {
        server.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'").split('\t').nth(1).unwrap().trim().parse::<u64>().unwrap()
    };

    // Without --ssl options the client's own default applies (MariaDB 10.11.19's tools from
    // Debian encrypt by default, without checking the certificate).
    let (code, _, err) = backup("127.0.0.1", &fx.s("default.coffer"), &[]);
    assert_eq!(code, 0, "{err}");

    let ca = fx.s("pki/ca.crt");
    let before = accepts();
    let (code, _, err) = backup("127.0.0.1", &fx.s("tls.coffer"), &["--ssl-mode", "VERIFY_IDENTITY", "--ssl-ca", &ca]);
    assert_eq!(code, 0, "{err}");
    assert!(accepts() >= before + 3, "the client and the engine's connections used TLS");
    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", &fx.s("tls.coffer"), "--json", "--key-file", &key]).1).unwrap();
    assert!(info["backup"]["server_version"].as_str().unwrap().contains("MariaDB"), "{info}");

    // Another CA's certificate; a certificate that does not name 127.0.0.2.
    let other = fx.s("other/ca.crt");
    for (host, ca, mode) in [("127.0.0.1", &other, "VERIFY_CA"), ("127.0.0.2", &ca, "VERIFY_IDENTITY")] {
        let (code, _, err) = backup(host, &fx.s("refused.coffer"), &["--ssl-mode", mode, "--ssl-ca", ca]);
        assert_eq!(code, 1, "{host} {mode}: {err}");
        assert!(err.contains("cannot connect") && err.lines().count() == 1, "{err}");
        assert!(!fx.path("refused.coffer").exists());
    }
    // Verifying needs a CA: a usage mistake, before any connection.
    let (code, _, err) = backup("127.0.0.1", &fx.s("refused.coffer"), &["--ssl-mode", "VERIFY_IDENTITY"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--ssl-ca"), "{err}");
    // REQUIRED without a CA: MariaDB's own programs would go on in plaintext, password
    // included, behind a man in the middle who strips TLS (issue 26): refused before any
    // connection.
    let before = server.sql("SHOW GLOBAL STATUS LIKE 'Connections'");
    let (code, _, err) = backup("127.0.0.1", &fx.s("refused.coffer"), &["--ssl-mode", "REQUIRED"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.lines().count() == 1 && err.contains("REQUIRED") && err.contains("--ssl-ca"), "{err}");
    assert!(!fx.path("refused.coffer").exists());
    let after = server.sql("SHOW GLOBAL STATUS LIKE 'Connections'");
    let n = |s: &str| s.split('\t').nth(1).unwrap().trim().parse::<u64>().unwrap();
    assert_eq!(n(&after), n(&before) + 1, "no connection but this test's own: {before} {after}");
}
