//! `coffer replica seed` against real servers: a TLS-only primary with GTIDs under load, a
//! replica seeded from its backups (a prefix with a chain), started by its own "service", and
//! proven to replicate over verified TLS with every table equal.

mod common;

use common::live;
use common::mariadb::Server;
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
    ];
    let refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    let source = Scenario::new(fx).opts(&refs).sysbench().start();
    source.server.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'p''w\\\\x'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';",
    );
    fx.write_secret("repl-pw", &format!("{REPL_PW}\n"));
    source
}

fn backup(fx: &Fixture, server: &Server, to: &str, extra: &[&str]) {
    let sock = server.socket.display().to_string();
    let args = ["backup", "--mysql", "-S", &sock, "-u", "backup", "--password-file", &fx.s("pw"), "-o", to];
    let tail = ["--key-file", &fx.key(), "--scratch-dir", &fx.s("scratch")];
    expect(0, &[&args[..], &tail, extra].concat());
}

fn seed_args(fx: &Fixture, source: &str, port: u16, to: &str) -> Vec<String> {
    let primary = format!("127.0.0.1:{port}");
    let args = ["replica", "seed", source, "--to", to, "--primary", &primary, "--user", "repl"];
    let tail = ["--password-file", &fx.s("repl-pw"), "--ssl-ca", &fx.s("pki/ca.crt"), "--key-file", &fx.key()];
    [&args[..], &tail].concat().into_iter().map(str::to_owned).collect()
}

fn ssl_accepts(server: &Server) -> u64 {
    let row = server.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'");
    row.split('\t').nth(1).unwrap().trim().parse().unwrap()
}

/// The replica's datadir holds the password in master.info only (0600, the server's own file),
/// no relay log of the private server, and coffer-seed.json.
fn check_datadir(data: &std::path::Path) {
    for entry in walkdir(data) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let has = bytes.windows(REPL_PW.len()).any(|w| w == REPL_PW.as_bytes());
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!has || name == "master.info", "the password is in {}", entry.display());
        assert!(!name.starts_with("coffer-relay") && name != "relay-log.info", "{} left", entry.display());
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
}

/// A full and an incremental under a prefix, taken while sysbench writes; the replica seeded
/// from the prefix (the chain), started as its own service, replicates over verified TLS.
#[test]
fn a_replica_seeded_from_a_prefix_replicates_over_verified_tls() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = primary(&fx);
    let mut load = live::sysbench(&server, "run", &["--time=900", "--rate=20", "--threads=1"]);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &server, &prefix, &[]);
    std::thread::sleep(Duration::from_secs(2));
    backup(&fx, &server, &prefix, &["--incremental"]);
    let data = fx.path("replica/data");
    let mut args = seed_args(&fx, &prefix, port, data.to_str().unwrap());
    args.push("--json".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&refs);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(REPL_PW) && !String::from_utf8_lossy(&out).contains(REPL_PW), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["backups"].as_array().unwrap().len(), 2, "{summary}");
    assert!(summary["archive"].is_null(), "{summary}");
    assert!(summary["tls"].as_str().unwrap().starts_with("TLS (verified"), "{summary}");
    assert!(err.contains("seeded ") && err.contains(" over TLS"), "{err}");
    check_datadir(&data);
    let accepts = ssl_accepts(&server);
    let replica = Server::open(
        &fx.path("replica"),
        &["--server-id=2".into(), "--log-bin=replica-bin".into(), "--log-slave-updates".into()],
    );
    std::thread::sleep(Duration::from_secs(3));
    let _ = load.kill();
    let _ = load.wait();
    assert_replicates(&server, &replica, accepts);
    // The server kept master.info as coffer left it.
    let mode = std::fs::metadata(data.join("master.info")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.info after the replica ran");
}
