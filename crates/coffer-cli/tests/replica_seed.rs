//! `coffer replica seed` against real servers: a TLS-only primary with GTIDs under load, a
//! replica seeded from its backups (a prefix with a chain), started by its own "service", and
//! proven to replicate over verified TLS with every table equal.

mod common;

use common::live;
use common::mariadb::Server;
use common::s3::S3;
use common::scenario::{Scenario, Source};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// The password of `repl`: a quote and a backslash, which CHANGE MASTER must carry exactly.
const REPL_PW: &str = "p'w\\x";

/// A primary that accepts only TLS (its certificate names 127.0.0.1, not 127.0.0.2), with
/// GTIDs, sysbench tables, a backup user and `repl`.
fn primary(fx: &Fixture) -> Source {
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "db"]);
    let opts = [
        "--bind-address=127.0.0.1,127.0.0.2".to_owned(),
        format!("--ssl-ca={}", fx.s("pki/ca.crt")),
        format!("--ssl-cert={}", fx.s("pki/db.crt")),
        format!("--ssl-key={}", fx.s("pki/db.key")),
        "--require-secure-transport=ON".into(),
        "--gtid-strict-mode=ON".into(),
        "--binlog-format=ROW".into(),
        // For the replica's connection as the primary sees it: its cipher.
        "--performance-schema=ON".into(),
    ];
    let refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    let source = Scenario::new(fx).opts(&refs).sysbench().repl().start();
    source.server.sql(
        "CREATE USER 'seed'@'127.0.0.1' IDENTIFIED BY 'p''w\\\\x'; GRANT REPLICATION SLAVE ON *.* TO 'seed'@'127.0.0.1';",
    );
    fx.write_secret("seed-pw", &format!("{REPL_PW}\n"));
    source
}

/// `coffer backup --mysql` of `server` over its socket into `to`, with `extra`.
fn backup_args(fx: &Fixture, server: &Server, to: &str, extra: &[&str]) -> Vec<String> {
    let sock = server.socket.display().to_string();
    let args = ["backup", "--mysql", "-S", &sock, "-u", "backup", "--password-file", &fx.s("pw"), "-o", to];
    let tail = ["--key-file", &fx.key(), "--scratch-dir", &fx.s("scratch")];
    [&args[..], &tail, extra].concat().into_iter().map(str::to_owned).collect()
}

fn backup(fx: &Fixture, server: &Server, to: &str, extra: &[&str]) {
    let args = backup_args(fx, server, to, extra);
    expect(0, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn backup_to_s3(s3: &S3, fx: &Fixture, server: &Server, to: &str, extra: &[&str]) {
    let args = backup_args(fx, server, to, extra);
    s3.expect(0, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The ciphers of the primary's binary log dump threads (performance_schema).
fn dump_ciphers(primary: &Server) -> String {
    primary.sql(
        "SELECT s.VARIABLE_VALUE FROM performance_schema.threads t JOIN performance_schema.status_by_thread s \
         ON s.THREAD_ID = t.THREAD_ID WHERE t.PROCESSLIST_COMMAND = 'Binlog Dump' AND s.VARIABLE_NAME = 'Ssl_cipher'",
    )
}

fn seed_args(fx: &Fixture, source: &str, port: u16, to: &str) -> Vec<String> {
    let primary = format!("127.0.0.1:{port}");
    let args = ["replica", "seed", source, "--to", to, "--primary", &primary, "--user", "seed"];
    let tail = ["--password-file", &fx.s("seed-pw"), "--ssl-ca", &fx.s("pki/ca.crt"), "--key-file", &fx.key()];
    [&args[..], &tail].concat().into_iter().map(str::to_owned).collect()
}

fn ssl_accepts(server: &Server) -> u64 {
    let row = server.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'");
    row.split('\t').nth(1).unwrap().trim().parse().unwrap()
}

/// The replica's datadir holds the password in master.info only (0600, the server's own file),
/// no relay log of the private server, and coffer-seed.json.
fn check_datadir(data: &std::path::Path, started: bool) {
    for entry in walkdir(data) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let has = bytes.windows(REPL_PW.len()).any(|w| w == REPL_PW.as_bytes());
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!has || name == "master.info", "the password is in {}", entry.display());
        assert!(!name.starts_with("coffer-relay"), "{} left", entry.display());
        assert!(started || name != "relay-log.info", "{} left", entry.display());
    }
    let mode = std::fs::metadata(data.join("master.info")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.info");
    assert!(data.join("coffer-seed.json").exists());
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `SHOW SLAVE STATUS` as `Name: value` lines.
fn slave_status(replica: &Server) -> String {
    let out = std::process::Command::new(common::mariadb::which("mariadb").unwrap())
        .arg(format!("--socket={}", replica.socket.display()))
        .args(["-uroot", "-e", "SHOW SLAVE STATUS\\G"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned() + "\n").collect()
}

/// After the load stops: the replica applies everything, every table's checksum equals the
/// primary's, replication runs by GTID without an error, and it came over TLS.
fn assert_replicates(primary: &Server, replica: &Server, accepts_before: u64) {
    let target = primary.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    let waited = replica.sql(&format!("SELECT MASTER_GTID_WAIT('{target}', 180)"));
    let status = slave_status(replica);
    assert_eq!(waited.trim(), "0", "the replica did not catch up: {status}\n{}", replica.error_log());
    assert_eq!(replica.sql("SELECT @@gtid_slave_pos").trim(), target);
    for want in [
        "Slave_IO_Running: Yes",
        "Slave_SQL_Running: Yes",
        "Using_Gtid: Slave_Pos",
        "Last_Errno: 0",
        "Master_SSL_Allowed: Yes",
        "Master_SSL_Verify_Server_Cert: Yes",
        "Last_IO_Errno: 0",
    ] {
        assert!(status.contains(want), "{want}: {status}");
    }
    let tables = live::tables(primary);
    assert!(tables.len() >= 4, "{tables:?}");
    assert_eq!(live::checksums(replica, &tables), live::checksums(primary, &tables));
    assert!(ssl_accepts(primary) > accepts_before, "the replica's connection was not TLS");
    let ciphers = dump_ciphers(primary);
    assert!(ciphers.contains("TLS_"), "the replica's dump thread has no cipher: {ciphers:?}");
}

/// A full and two incrementals under an S3 prefix, taken while sysbench writes; the replica
/// seeded from the prefix (the chain), started by its own service (--start-with), replicates
/// over verified TLS.
#[test]
fn a_replica_seeded_from_an_s3_prefix_replicates_over_verified_tls() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("seed");
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    let mut load = live::sysbench(&server, "run", &["--time=900", "--rate=20", "--threads=1"]);
    let prefix = "s3://seed/prod/".to_owned();
    backup_to_s3(&s3, &fx, &server, &prefix, &[]);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        backup_to_s3(&s3, &fx, &server, &prefix, &["--incremental"]);
    }
    let data = fx.path("replica/data");
    let mut args = seed_args(&fx, &prefix, port, data.to_str().unwrap());
    let (start, socket) = service_script(&fx, "replica", 2, "");
    args.extend(
        ["--json", "--start-with", &start, "--replica-socket", &socket, "--wait-timeout", "300"].map(String::from),
    );
    let out = s3.coffer().args(&args).stdin(std::process::Stdio::null()).output().unwrap();
    let (code, err, out) =
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout);
    let service = Service(fx.path("replica/mysqld.pid"));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(REPL_PW) && !String::from_utf8_lossy(&out).contains(REPL_PW), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["backups"].as_array().unwrap().len(), 3, "{summary}");
    assert!(summary["archive"].is_null(), "{summary}");
    assert!(summary["tls"].as_str().unwrap().starts_with("TLS (verified"), "{summary}");
    assert!(summary["wait"]["gtid_slave_pos"].as_str().is_some_and(|g| !g.is_empty()), "{summary}");
    assert!(err.contains("seeded ") && err.contains(" over TLS") && err.contains("caught up"), "{err}");
    check_datadir(&data, true);
    // Restarted by the test's own server: replication goes on from what the server stored.
    drop(service);
    let accepts = ssl_accepts(&server);
    let replica = start_replica(&fx);
    std::thread::sleep(Duration::from_secs(3));
    let _ = load.kill();
    let _ = load.wait();
    assert_replicates(&server, &replica, accepts);
    // The server kept master.info as coffer left it.
    let mode = std::fs::metadata(data.join("master.info")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.info after the replica ran");
}

/// The replica's "own service": a script that starts mariadbd on the datadir in the background
/// (as `systemctl start` would), and the socket it listens on.
fn service_script(fx: &Fixture, name: &str, server_id: u32, extra: &str) -> (String, String) {
    let dir = fx.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("mysqld.sock").display().to_string();
    let script = format!(
        "{} --no-defaults --datadir={d}/data --socket={socket} --pid-file={d}/mysqld.pid --log-error={d}/error.log \
         --user=root --skip-networking --tmpdir={d} --innodb-buffer-pool-size=64M --server-id={server_id} --log-bin=replica-bin \
         --log-slave-updates {extra} > /dev/null 2>&1 &\n",
        common::mariadb::which("mariadbd").unwrap().display(),
        d = dir.display()
    );
    std::fs::write(dir.join("start.sh"), script).unwrap();
    (format!("sh {}/start.sh", dir.display()), socket)
}

/// The server the script started, shut down (then killed) when dropped.
struct Service(std::path::PathBuf);

impl Drop for Service {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|p| p.trim().parse::<i32>().ok()) else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..600 {
            if nix::sys::signal::kill(pid, None).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn start_replica(fx: &Fixture) -> Server {
    Server::open(
        &fx.path("replica"),
        &["--server-id=2".into(), "--log-bin=replica-bin".into(), "--log-slave-updates".into()],
    )
}

/// The replica seeded into `fx`'s `replica/data`, started as its own service; then the load
/// stops, and it replicates.
fn started_and_replicating(fx: &Fixture, server: &Server, load: std::process::Child) {
    check_datadir(&fx.path("replica/data"), false);
    let accepts = ssl_accepts(server);
    let replica = start_replica(fx);
    std::thread::sleep(Duration::from_secs(3));
    stop_load(load);
    assert_replicates(server, &replica, accepts);
}

fn stop_load(mut load: std::process::Child) {
    let _ = load.kill();
    let _ = load.wait();
}

/// The primary purged the backup's position: the archive's part is replayed through the
/// private server, and the primary takes over from where the archive ends; the line says which
/// part came from where.
#[test]
fn a_replica_whose_primary_purged_the_backups_position_catches_up_from_the_archive() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    let load = live::sysbench(&server, "run", &["--time=900", "--rate=20", "--threads=1"]);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &server, &prefix, &[]);
    std::thread::sleep(Duration::from_secs(2));
    server.sql("FLUSH BINARY LOGS");
    std::thread::sleep(Duration::from_secs(1));
    server.sql("FLUSH BINARY LOGS");
    let archive =
        common::scenario::archive_args(&fx, &common::scenario::socket_args(&server), &format!("{prefix}binlog/"), &[]);
    live::coffer_ok(&archive);
    let current = server.sql("SHOW MASTER STATUS").split('\t').next().unwrap().to_owned();
    server.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
    let data = fx.path("replica/data");
    let args = seed_args(&fx, &prefix, port, data.to_str().unwrap());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = expect(0, &refs);
    assert!(err.contains(" + archive ") && err.contains(" + primary 127.0.0.1:"), "{err}");
    started_and_replicating(&fx, &server, load);
}

/// No storage between: the primary's host sends a hot backup straight to the replica's host,
/// which restores, prepares and configures it as it arrives.
#[test]
fn a_replica_seeded_from_a_live_send_replicates() {
    use std::io::BufRead;
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "replica"]);
    let load = live::sysbench(&server, "run", &["--time=900", "--rate=20", "--threads=1"]);
    let data = fx.path("replica/data");
    let mut args = seed_args(&fx, "", port, data.to_str().unwrap());
    args.remove(2);
    let (cert, key, ca) = (fx.s("pki/replica.crt"), fx.s("pki/replica.key"), fx.s("pki/ca.crt"));
    args.extend(["--listen", "127.0.0.1:0", "--cert", &cert, "--key", &key, "--ca", &ca].map(String::from));
    let mut seed =
        coffer().args(&args).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(seed.stderr.take().unwrap());
    let mut said = String::new();
    let listen_port: u16 = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the seed ended: {said}");
        said.push_str(&line);
        if let Some(at) = line.trim().strip_prefix("coffer: listening on ") {
            break at.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let rest = drained(err);
    let sock = server.socket.display().to_string();
    let to = format!("127.0.0.1:{listen_port}");
    let send = ["send", "--mysql", "-S", &sock, "-u", "backup", "--password-file", &fx.s("pw"), "--to", &to];
    let tls = ["--cert", &fx.s("pki/db.crt"), "--key", &fx.s("pki/db.key"), "--ca", &ca];
    expect(0, &[&send[..], &tls, &["--key-file", &fx.key(), "--scratch-dir", &fx.s("scratch")]].concat());
    let status = seed.wait().unwrap();
    let said = said + &rest.join().unwrap();
    assert!(status.success(), "{said}");
    assert!(!said.contains(REPL_PW), "{said}");
    started_and_replicating(&fx, &server, load);
}

/// Each refusal: one line, exit 1 (2 for usage), the target as it was, nothing left beside it.
#[test]
fn seeds_that_cannot_replicate_are_refused_before_anything_is_written() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("other"), "--name", "db"]);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &server, &prefix, &[]);
    std::fs::create_dir_all(fx.path("replica/data")).unwrap();
    let data = fx.path("replica/data");
    let target = data.to_str().unwrap().to_owned();
    fx.write_secret("wrong-pw", "not-it\n");
    let base = seed_args(&fx, &prefix, port, &target);
    let with = |changes: &[(&str, &str)], extra: &[&str]| -> Vec<String> {
        let mut a = base.clone();
        for (opt, value) in changes {
            let i = a.iter().position(|x| x == opt).unwrap();
            a[i + 1] = value.to_string();
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let other_ca = fx.s("other/ca.crt");
    let wrong_pw = fx.s("wrong-pw");
    let host_not_named = format!("127.0.0.2:{port}");
    std::fs::write(fx.path("same-id.cnf"), "[mysqld]\nserver-id = 1\n").unwrap();
    std::fs::write(fx.path("no-id.cnf"), "[mysqld]\nlog-bin\n[client]\nserver-id = 5\n").unwrap();
    let (same_id_cnf, no_id_cnf) = (fx.s("same-id.cnf"), fx.s("no-id.cnf"));
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (with(&[("--ssl-ca", &other_ca)], &[]), 1, "its certificate is not signed by the CA"),
        (with(&[("--primary", &host_not_named)], &[]), 1, "its certificate does not name 127.0.0.2"),
        (with(&[("--primary", &host_not_named)], &["--ssl-mode", "VERIFY_CA"]), 1, "does not name 127.0.0.2"),
        (with(&[("--password-file", &wrong_pw)], &[]), 1, "wrong user or password"),
        (with(&[], &["--ssl-mode", "REQUIRED"]), 2, "REQUIRED"),
        (with(&[], &["--replica-config", &same_id_cnf]), 1, "server_id 1, the primary's"),
        (with(&[], &["--replica-config", &no_id_cnf]), 1, "sets no server_id"),
    ];
    let before = snapshot(&data);
    for (args, code, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = expect(code, &refs);
        assert!(err.contains(want), "{args:?}: {err}");
        let errors = err.lines().filter(|l| l.starts_with("coffer: error") || l.starts_with("error:")).count();
        assert_eq!(errors, 1, "{err}");
        assert!(!err.contains(REPL_PW), "{err}");
        assert_eq!(snapshot(&data), before, "{args:?}");
        let left: Vec<_> = std::fs::read_dir(fx.path("replica")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "left beside the target: {left:?}");
    }
    // With --json, a refusal is a JSON object too.
    let args = with(&[("--ssl-ca", &other_ca)], &["--json"]);
    let (code, out, _) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let failed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((code, &failed["ok"], &failed["exit_code"]), (1, &false.into(), &1.into()), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("cannot reach the primary"), "{failed}");
    // A target that is not empty, without --force.
    std::fs::write(data.join("ibdata1"), b"someone's").unwrap();
    let refs: Vec<&str> = base.iter().map(String::as_str).collect();
    let err = expect(1, &refs);
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(data.join("ibdata1")).unwrap(), b"someone's");
    // A replica whose own configuration gives it the primary's server id.
    let (start, socket) = service_script(&fx, "same-id", 1, "");
    let mut args = seed_args(&fx, &prefix, port, &fx.s("same-id/data"));
    args.extend(["--start-with", &start, "--replica-socket", &socket, "--wait-timeout", "60"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(&refs);
    drop(Service(fx.path("same-id/mysqld.pid")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the replica is seeded in") && err.contains("server_id 1"), "{err}");
    // An idle primary is "reached" at once: a replica that does not replicate is still said.
    let (start, socket) = service_script(&fx, "idle", 2, "--skip-slave-start");
    let mut args = seed_args(&fx, &prefix, port, &fx.s("idle/data"));
    args.extend(["--start-with", &start, "--replica-socket", &socket, "--wait-timeout", "60"].map(String::from));
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    drop(Service(fx.path("idle/mysqld.pid")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the replica is seeded in") && err.contains("replication did not start"), "{err}");
    // The primary purges the backup's position, and no archive holds it: refused up front.
    server.sql("INSERT INTO sbtest.zipped (v) VALUES ('after the backup'); FLUSH BINARY LOGS; FLUSH BINARY LOGS");
    let current = server.sql("SHOW MASTER STATUS").split('\t').next().unwrap().to_owned();
    // (A file a replica's dump thread still reads is kept: the replica stopped, its thread
    // ends when the primary notices.)
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while {
        server.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
        server.sql("SHOW BINARY LOGS").contains("binlog.000001")
    } {
        assert!(std::time::Instant::now() < deadline, "not purged: {}", server.sql("SHOW PROCESSLIST"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let fresh = fx.path("purged/data");
    for (extra, want) in
        [(&[][..], "nor the archive"), (&["--archive", "never"][..], "no longer has the backup's position")]
    {
        let mut args = seed_args(&fx, &prefix, port, fresh.to_str().unwrap());
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = expect(1, &refs);
        assert!(err.contains(want) && err.contains("Could not find GTID state"), "{err}");
        assert!(!fresh.exists() || std::fs::read_dir(&fresh).unwrap().count() == 0, "written: {err}");
    }
}

/// The migration: an unencrypted primary, its replica seeded with encryption at rest on (its
/// own key file). Once the server's encryption threads are done, every tablespace is
/// encrypted and replication still runs; then the switch (writes stopped, the replica caught
/// up and promoted) leaves every table equal.
#[test]
fn a_migration_to_a_replica_encrypted_at_rest_switches_over_with_equal_tables() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    let load = live::sysbench(&server, "run", &["--time=900", "--rate=20", "--threads=1"]);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &server, &prefix, &[]);
    let data = fx.path("replica/data");
    let args = seed_args(&fx, &prefix, port, data.to_str().unwrap());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    expect(0, &refs);
    let keys = fx.path("replica-keys.txt");
    common::mariadb::write_key_file(&keys, None);
    let mut opts: Vec<String> =
        ["--server-id=2", "--log-bin=replica-bin", "--log-slave-updates"].map(String::from).into();
    opts.extend(common::mariadb::encryption_options(&keys, "AES_CTR", None));
    opts.push("--innodb-encryption-threads=2".into());
    let replica = Server::open(&fx.path("replica"), &opts);
    // Every tablespace encrypted by the background threads, within a bound.
    let spaces = "SELECT COUNT(*) FROM information_schema.INNODB_TABLESPACES_ENCRYPTION";
    // Every tablespace but the temporary one (encrypted page by page as it is written) shows
    // in the encryption table once a thread has rotated it.
    let missing = "SELECT NAME FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME <> 'innodb_temporary' \
                   AND SPACE NOT IN (SELECT SPACE FROM information_schema.INNODB_TABLESPACES_ENCRYPTION \
                   WHERE ENCRYPTION_SCHEME = 1 AND ROTATING_OR_FLUSHING = 0)";
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !replica.sql(missing).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not encrypted in time: {}", replica.sql(missing));
        std::thread::sleep(Duration::from_millis(500));
    }
    let encrypted: u64 = replica.sql(spaces).trim().parse().unwrap();
    assert!(encrypted >= 10, "the system tablespace and every table's: {encrypted}");
    let status = slave_status(&replica);
    assert!(status.contains("Slave_SQL_Running: Yes") && status.contains("Slave_IO_Running: Yes"), "{status}");
    // The switch: writes stop, the replica catches up, then it is promoted.
    stop_load(load);
    server.sql("SET GLOBAL read_only = 1");
    let target = server.sql("SELECT @@gtid_binlog_pos").trim().to_owned();
    assert_eq!(replica.sql(&format!("SELECT MASTER_GTID_WAIT('{target}', 180)")).trim(), "0");
    replica.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0");
    let tables = live::tables(&server);
    assert_eq!(live::checksums(&replica, &tables), live::checksums(&server, &tables));
    replica.sql("INSERT INTO sbtest.zipped (v) VALUES ('written on the new primary')");
}

/// coffer killed while its private server runs on the restored copy: the server dies with it,
/// the target is as it was, and the same command run again seeds the replica.
#[test]
fn a_seed_killed_midway_leaves_the_target_and_runs_again() {
    use std::io::BufRead;
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &server, &prefix, &[]);
    std::fs::create_dir_all(fx.path("replica/data")).unwrap();
    let data = fx.path("replica/data");
    let args = seed_args(&fx, &prefix, port, data.to_str().unwrap());
    let mut seed =
        coffer().args(&args).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(seed.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the seed ended first: {said}");
        said.push_str(&line);
        if line.contains("replay server started") {
            break;
        }
    }
    seed.kill().unwrap();
    seed.wait().unwrap();
    // The private server went with coffer (within a bound), and the target is untouched.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let running = || {
        std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("mariadbd") && cmd.contains(&*fx.path("replica").to_string_lossy())
        })
    };
    while running() {
        assert!(std::time::Instant::now() < deadline, "the private server outlived coffer");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "the target was written");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = expect(0, &refs);
    assert!(again.contains("seeded "), "{again}");
    check_datadir(&data, false);
    let left: Vec<_> = std::fs::read_dir(fx.path("replica")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "left beside the target: {left:?}");
}
