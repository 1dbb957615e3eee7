//! Issue 29: the replica fixtures (`common::replication`) proved on the path a DBA follows by
//! hand today, which `coffer replica seed` replaces: a streamed `mariabackup` of the loaded
//! primary, prepare, chown, start, `gtid_slave_pos`, `CHANGE MASTER` with verified TLS,
//! `START SLAVE`. The wait sees a wrong CA, a host the certificate does not name and a wrong
//! password as the server's own errors, at once, not as a timeout.

mod common;

use common::mariadb::which;
use common::replication::*;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `mariabackup --backup --stream=xbstream` of the running primary, piped into `mbstream -x`.
fn stream_backup(fx: &Fixture, primary: &Primary, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    std::fs::create_dir_all(fx.path("mb-target")).unwrap();
    let mut backup = Command::new(which("mariabackup").unwrap())
        .arg("--no-defaults")
        .args(["--backup", "--stream=xbstream", "--user=backup", "--password=secret-pw"])
        .arg(format!("--socket={}", primary.server.socket.display()))
        .arg(format!("--datadir={}", primary.server.datadir.display()))
        .arg(format!("--target-dir={}", fx.s("mb-target")))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(fx.path("backup.log")).unwrap())
        .spawn()
        .unwrap();
    let stream = backup.stdout.take().unwrap();
    let x = Command::new(which("mbstream").unwrap()).arg("-x").arg("-C").arg(into).stdin(stream).output().unwrap();
    let status = backup.wait().unwrap();
    let log = std::fs::read_to_string(fx.path("backup.log")).unwrap_or_default();
    assert!(status.success(), "mariabackup --backup: {log}");
    assert!(x.status.success(), "mbstream -x: {}", String::from_utf8_lossy(&x.stderr));
}

fn prepare(dir: &Path) {
    let out = Command::new(which("mariabackup").unwrap())
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "mariabackup --prepare: {}", String::from_utf8_lossy(&out.stderr));
}

/// The GTID of the backup: the third field of `xtrabackup_binlog_info` (or of
/// `mariadb_backup_binlog_info`, its name in later releases).
fn backup_gtid(dir: &Path) -> String {
    let info = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .expect("the backup's binlog info");
    let gtid = info.split('\t').nth(2).unwrap_or_else(|| panic!("no GTID in {info:?}")).trim().to_owned();
    assert!(!gtid.is_empty(), "no GTID in {info:?}");
    gtid
}

/// `CHANGE MASTER TO` the primary at `host` with verified TLS (`ca`) and GTIDs, then START SLAVE.
fn change_master(replica: &Replica, host: &str, port: u16, ca: &str, password: &str) {
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER={}, MASTER_PASSWORD={}, \
         MASTER_SSL=1, MASTER_SSL_CA={}, MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_USE_GTID=slave_pos; \
         START SLAVE;",
        quoted(host),
        quoted(REPL_USER),
        quoted(password),
        quoted(ca)
    ));
}

/// The DBA's steps up to START SLAVE: a streamed backup of the primary into `fx`'s `seed`,
/// prepared, given to mysql, started as the replica's service (`cnf`: more lines of its
/// configuration) and `gtid_slave_pos` set from the backup. The replica, the backup's GTID, and
/// the seconds each step took (backup and stream, prepare, start).
fn seed_by_hand(fx: &Fixture, primary: &Primary, cnf: &[&str]) -> (Replica, String, [Duration; 3]) {
    let seed = fx.path("seed");
    let t = Instant::now();
    stream_backup(fx, primary, &seed);
    let backup_s = t.elapsed();
    let t = Instant::now();
    prepare(&seed);
    let prepare_s = t.elapsed();
    chown_tree(&seed);
    let gtid = backup_gtid(&seed);
    let replica = Replica::new(&fx.path("replica"), &seed, cnf);
    let t = Instant::now();
    replica.start();
    let start_s = t.elapsed();
    replica.sql(&format!("SET GLOBAL gtid_slave_pos = {}", quoted(&gtid)));
    (replica, gtid, [backup_s, prepare_s, start_s])
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o7777
}

#[test]
fn a_replica_seeded_by_hand_replicates_over_tls() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let pki = Pki::new(fx.dir.path());
    let primary = Primary::start(&fx, &pki, &[]);
    let load = Load::start(&primary);
    let seed = fx.path("seed");
    let (replica, gtid, [backup_s, prepare_s, start_s]) = seed_by_hand(&fx, &primary, &[]);

    // The wrong ways: each is the server's error, seen by the wait at once.
    let wrong = [
        ("127.0.0.1", pki.other_ca.as_str(), REPL_PASSWORD, "Last_IO_Errno 2026"),
        ("127.0.0.2", pki.ca.as_str(), REPL_PASSWORD, "Last_IO_Errno 2026"),
        ("127.0.0.1", pki.ca.as_str(), "not-the-password", "Last_IO_Errno 1045"),
    ];
    for (host, ca, password, errno) in wrong {
        change_master(&replica, host, primary.port, ca, password);
        let err = catch_up(&replica, &primary.gtid_binlog_pos(), Duration::from_secs(120)).unwrap_err();
        assert!(err.starts_with(errno), "{host} {ca}: {err}");
        eprintln!("refused as it should be: {err}");
        replica.sql("STOP SLAVE");
        assert_eq!(replica.sql("SELECT @@gtid_slave_pos").trim(), gtid, "nothing was applied");
    }

    let accepts = primary.ssl_accepts();
    let t = Instant::now();
    change_master(&replica, "127.0.0.1", primary.port, &pki.ca, REPL_PASSWORD);
    let target = primary.gtid_binlog_pos();
    catch_up(&replica, &target, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}\n{}", replica.log_tail()));
    let catch_up_s = t.elapsed();
    load.stop();
    assert_replicates(&primary, &replica, accepts, Duration::from_secs(300));
    eprintln!(
        "hand-made seed: backup+stream {:.1} s, prepare {:.1} s, start {:.1} s, catch-up {:.1} s (backup GTID {gtid}, caught up with {target})",
        backup_s.as_secs_f64(),
        prepare_s.as_secs_f64(),
        start_s.as_secs_f64(),
        catch_up_s.as_secs_f64()
    );

    // master.info holds the password; tightened to 0600, the server keeps that mode through a
    // restart and more replication (design §4).
    let info = seed.join("master.info");
    assert!(std::fs::read_to_string(&info).unwrap().contains(REPL_PASSWORD), "master.info holds the password");
    std::fs::set_permissions(&info, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let written = std::fs::read(&info).unwrap();
    replica.stop();
    let load = Load::start(&primary);
    let accepts = primary.ssl_accepts();
    replica.start();
    load.stop();
    assert_replicates(&primary, &replica, accepts, Duration::from_secs(300));
    // The server wrote it again (its position moved), in place: the mode stayed.
    assert_ne!(std::fs::read(&info).unwrap(), written, "the server did not write master.info again");
    assert_eq!(mode(&info), 0o600, "master.info's mode after a restart");
    // The server itself keeps the password in master.info and nowhere else (not in the error
    // log, the binary or relay logs, nor any tablespace): all a seed may leave.
    assert_eq!(password_holders(&[&seed, &replica.dir]), [info]);

    // A replica that needs what the primary purged is refused with the server's 1236, at once.
    replica.sql("STOP SLAVE");
    Load::start(&primary).stop();
    primary.purge_binary_logs();
    replica.sql("START SLAVE");
    let err = catch_up(&replica, &primary.gtid_binlog_pos(), Duration::from_secs(120)).unwrap_err();
    assert!(err.starts_with("Last_IO_Errno 1236"), "{err}");
    eprintln!("refused as it should be: {err}");
    replica.stop();
    assert!(processes_mentioning(&replica.cnf.display().to_string()).is_empty(), "the replica is stopped");
}

/// The migration by hand (design §5 d): an unencrypted primary, its replica configured to
/// encrypt at rest (its own key file). Once the encryption threads are done every tablespace
/// is encrypted, replication still runs, and after the switch (writes stopped, caught up,
/// promoted) the tables are equal.
#[test]
fn a_replica_seeded_by_hand_encrypts_at_rest_and_takes_over() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let pki = Pki::new(fx.dir.path());
    let primary = Primary::start(&fx, &pki, &[]);
    assert_eq!(encrypted(&primary.server.sql(ENCRYPTION)).0, 0, "the primary encrypts nothing");
    let load = Load::start(&primary);
    std::fs::create_dir_all(fx.path("replica")).unwrap();
    let keys = fx.path("replica/keys");
    common::mariadb::write_key_file(&keys, None);
    let cnf = format!("file-key-management-filename={}", keys.display());
    let at_rest = [
        "plugin-load-add=file_key_management",
        &cnf,
        "innodb-encrypt-tables=ON",
        "innodb-encrypt-log=ON",
        "innodb-encryption-threads=2",
        "encrypt-binlog=ON",
    ];
    let (replica, _, _) = seed_by_hand(&fx, &primary, &at_rest);
    let accepts = primary.ssl_accepts();
    change_master(&replica, "127.0.0.1", primary.port, &pki.ca, REPL_PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, all) = encrypted(&replica.sql(ENCRYPTION));
        if done == all && all >= spaces(&replica.sql(SPACES)) {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {all} tablespaces encrypted in 120 s\n{}", replica.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }
    load.stop();
    assert_replicates(&primary, &replica, accepts, Duration::from_secs(300));
    // The switch: no more writes on the primary, the replica has them all, then it is promoted.
    primary.server.sql("SET GLOBAL read_only = 1");
    catch_up(&replica, &primary.gtid_binlog_pos(), Duration::from_secs(60)).unwrap();
    replica.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0");
    let checksum = format!("CHECKSUM TABLE {}", primary.tables().join(", "));
    assert_eq!(replica.sql(&checksum), primary.server.sql(&checksum));
    replica.sql("INSERT INTO sbtest.zipped (v) VALUES ('written on the new primary')");
    assert!(replica.slave_status().is_empty(), "no replication left configured");
}

/// Encrypted tablespaces whose key rotation is done, and all tablespaces the encryption
/// threads know of.
const ENCRYPTION: &str = "SELECT SUM(ENCRYPTION_SCHEME = 1 AND ROTATING_OR_FLUSHING = 0), COUNT(*) \
    FROM information_schema.INNODB_TABLESPACES_ENCRYPTION";
/// Every tablespace InnoDB has but the temporary one (which `innodb_encrypt_temporary_tables`
/// governs); in 10.11 the system tablespace is among them.
const SPACES: &str = "SELECT COUNT(*) FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME <> 'innodb_temporary'";

fn encrypted(row: &str) -> (u64, u64) {
    let mut f = row.split('\t').map(|v| v.trim().parse().unwrap_or(0));
    (f.next().unwrap(), f.next().unwrap())
}

fn spaces(row: &str) -> u64 {
    row.trim().parse().unwrap()
}
