//! Tables of every kind a single-table restore must handle (issue 30), on a test server: a
//! plain table, a RANGE-partitioned one, one with a FULLTEXT index, a parent and a child with a
//! FOREIGN KEY, an ENCRYPTED=YES one (key id 2), a PAGE_COMPRESSED one, a ROW_FORMAT=COMPRESSED
//! one, one the tests ALTER instantly later, and a bystander no restore touches; a few thousand
//! rows each. And what the tests ask of a server: checksums, uptime, definitions, the mistakes
//! a restore undoes (each giving its own GTID), SQL that may fail, the backup a DBA exports.
//! What the real server does with each kind: /work/helpers/30/findings.md (issue 30's notes).
#![allow(dead_code)]

use super::mariadb::{self, Server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The database the fixture makes.
pub const DB: &str = "kinds";

/// The tables `create` makes besides the encrypted one, as `db.t`.
pub const TABLES: [&str; 9] = [
    "kinds.plain",
    "kinds.part",
    "kinds.ft",
    "kinds.parent",
    "kinds.child",
    "kinds.pc",
    "kinds.rc",
    "kinds.inst",
    "kinds.bystander",
];

/// The ENCRYPTED=YES table (key id 2), made when `create` is asked for it.
pub const ENCRYPTED: &str = "kinds.enc";

/// The partitions of `kinds.part`.
pub const PARTITIONS: [&str; 3] = ["p0", "p1", "p2"];

/// Key id 1 as `mariadb::write_key_file` writes it: a key file that lacks key id 2.
pub fn write_key_file_without_2(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("1;{}\n", "a1".repeat(32))).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The options of a server that can encrypt with the keys of `keys` (file_key_management,
/// AES_CTR) but encrypts only the tables that say ENCRYPTED=YES.
pub fn key_options(keys: &Path) -> Vec<String> {
    vec![
        "--plugin-load-add=file_key_management".into(),
        format!("--file-key-management-filename={}", keys.display()),
        "--file-key-management-encryption-algorithm=AES_CTR".into(),
    ]
}

const SCHEMA: &str = "CREATE DATABASE kinds; USE kinds;
CREATE TABLE plain (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100), n INT, KEY (n));
CREATE TABLE part (id INT NOT NULL, d DATE NOT NULL, v VARCHAR(50), PRIMARY KEY (id, d))
  PARTITION BY RANGE (YEAR(d)) (PARTITION p0 VALUES LESS THAN (2020), PARTITION p1 VALUES LESS THAN (2024),
  PARTITION p2 VALUES LESS THAN MAXVALUE);
CREATE TABLE ft (id INT PRIMARY KEY AUTO_INCREMENT, body TEXT, FULLTEXT KEY fbody (body));
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40));
CREATE TABLE child (id INT PRIMARY KEY, pid INT NOT NULL, x INT,
  CONSTRAINT fk_child_parent FOREIGN KEY (pid) REFERENCES parent (id));
CREATE TABLE pc (id INT PRIMARY KEY, v VARCHAR(200)) PAGE_COMPRESSED=1;
CREATE TABLE rc (id INT PRIMARY KEY, v VARCHAR(200)) ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8;
CREATE TABLE inst (id INT PRIMARY KEY, a INT, b VARCHAR(30));
CREATE TABLE bystander (id INT PRIMARY KEY, v INT);
INSERT INTO plain (v, n) SELECT CONCAT('v', seq), seq MOD 97 FROM seq_1_to_5000;
INSERT INTO part SELECT seq, '2017-01-01' + INTERVAL seq DAY, CONCAT('p', seq) FROM seq_1_to_3000;
INSERT INTO ft (body) SELECT CONCAT('lorem ipsum word', seq MOD 50, ' dolor ', seq) FROM seq_1_to_3000;
INSERT INTO parent SELECT seq, CONCAT('n', seq) FROM seq_1_to_500;
INSERT INTO child SELECT seq, 1 + seq MOD 500, seq FROM seq_1_to_4000;
INSERT INTO pc SELECT seq, REPEAT(CONCAT('c', seq), 10) FROM seq_1_to_3000;
INSERT INTO rc SELECT seq, REPEAT(CONCAT('r', seq), 10) FROM seq_1_to_3000;
INSERT INTO inst SELECT seq, seq, CONCAT('i', seq) FROM seq_1_to_3000;
INSERT INTO bystander SELECT seq, seq FROM seq_1_to_1000;";

const ENCRYPTED_SCHEMA: &str = "USE kinds;
CREATE TABLE enc (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTED=YES ENCRYPTION_KEY_ID=2;
INSERT INTO enc SELECT seq, CONCAT('secret', seq) FROM seq_1_to_3000;";

/// Makes the database `kinds` on `server`, with `kinds.enc` when `encrypted` (the server then
/// needs `key_options` with key id 2); returns CHECKSUM TABLE of every table made.
pub fn create(server: &Server, encrypted: bool) -> BTreeMap<String, String> {
    server.sql(SCHEMA);
    if encrypted {
        server.sql(ENCRYPTED_SCHEMA);
    }
    checksums(server, &tables(encrypted))
}

/// The tables `create` makes, as `db.t`.
pub fn tables(encrypted: bool) -> Vec<String> {
    let mut all: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    if encrypted {
        all.push(ENCRYPTED.into());
    }
    all
}

/// CHECKSUM TABLE of `tables` (`db.t`): table → checksum ("NULL" for a table that is missing).
pub fn checksums<S: AsRef<str>>(server: &Server, tables: &[S]) -> BTreeMap<String, String> {
    let list: Vec<&str> = tables.iter().map(AsRef::as_ref).collect();
    let out = server.sql(&format!("CHECKSUM TABLE {}", list.join(", ")));
    let sums: BTreeMap<String, String> =
        out.lines().filter_map(|l| l.split_once('\t')).map(|(t, sum)| (t.to_owned(), sum.to_owned())).collect();
    assert_eq!(sums.len(), list.len(), "CHECKSUM TABLE {list:?}: {out}");
    sums
}

/// The server's Uptime in seconds (it only grows while the server is not restarted).
pub fn uptime(server: &Server) -> u64 {
    let out = server.sql("SHOW GLOBAL STATUS LIKE 'Uptime'");
    out.trim().split('\t').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("Uptime: {out}"))
}

/// SHOW CREATE TABLE of `table` (`db.t`), as the server prints it.
pub fn definition(server: &Server, table: &str) -> String {
    let out = server.sql(&format!("SHOW CREATE TABLE {table}"));
    let text = out.trim_end().split_once('\t').map(|(_, d)| d).unwrap_or_else(|| panic!("SHOW CREATE: {out}"));
    // --batch escapes the newlines of the statement.
    text.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
}

/// Runs `sql` in one session and returns `@@last_gtid` after it: the GTID of the mistake.
fn mistake(server: &Server, sql: &str) -> String {
    let out = server.sql(&format!("{sql}; SELECT @@last_gtid"));
    let gtid = out.lines().last().unwrap_or_default().trim().to_owned();
    assert!(gtid.split('-').count() == 3, "no GTID after {sql} (is the binary log on?): {out:?}");
    gtid
}

/// `DROP TABLE table`; its GTID.
pub fn drop_table(server: &Server, table: &str) -> String {
    mistake(server, &format!("DROP TABLE {table}"))
}

/// `TRUNCATE TABLE table`; its GTID.
pub fn truncate(server: &Server, table: &str) -> String {
    mistake(server, &format!("TRUNCATE TABLE {table}"))
}

/// An UPDATE of every row of `table` with no WHERE (`set` is the SET list, e.g. `v = 'oops'`);
/// its GTID.
pub fn bad_update(server: &Server, table: &str, set: &str) -> String {
    mistake(server, &format!("UPDATE {table} SET {set}"))
}

/// Runs `sql` in one session; the server's error (the client's stderr, trimmed) if it fails.
pub fn try_sql(server: &Server, sql: &str) -> Result<String, String> {
    let out = Command::new(mariadb::which("mariadb").unwrap())
        .arg(format!("--socket={}", server.socket.display()))
        .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
        .output()
        .expect("run mariadb");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Runs `sql` then `SHOW WARNINGS` in one session whatever fails (`--force`, statements read
/// from stdin: with `-e` the client stops at the first error): everything the server said,
/// errors and warnings, as one text.
pub fn said(server: &Server, sql: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(mariadb::which("mariadb").unwrap())
        .arg(format!("--socket={}", server.socket.display()))
        .args(["-uroot", "--batch", "--skip-column-names", "--force"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mariadb");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{sql};\nSHOW WARNINGS;\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A full `mariadb-backup --backup` of `server` into `dir`, prepared with `--export` (a `.cfg`
/// beside every tablespace): the files a DBA imports by hand. Returns `dir`.
pub fn backup_exported(server: &Server, dir: &Path) -> PathBuf {
    let backup = mariadb::which("mariadb-backup").expect("mariadb-backup");
    let run = |args: &[String]| {
        let out = Command::new(&backup).args(args).output().expect("run mariadb-backup");
        assert!(out.status.success(), "mariadb-backup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "--backup".into(),
        format!("--socket={}", server.socket.display()),
        "--user=root".into(),
        format!("--target-dir={}", dir.display()),
    ]);
    run(&["--prepare".into(), "--export".into(), format!("--target-dir={}", dir.display())]);
    dir.to_owned()
}

/// The largest page LSN of the tablespace file `ibd` (big-endian at byte 16 of each page,
/// readable in encrypted pages too): an encrypted tablespace imports only into a server whose
/// Innodb_lsn_current is past it.
pub fn max_page_lsn(ibd: &Path, page_size: usize) -> u64 {
    let data = std::fs::read(ibd).unwrap();
    data.chunks(page_size)
        .filter(|p| p.len() >= 24)
        .map(|p| u64::from_be_bytes(p[16..24].try_into().unwrap()))
        .max()
        .unwrap_or(0)
}

/// The server's Innodb_lsn_current.
pub fn lsn(server: &Server) -> u64 {
    let out = server.sql("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'");
    out.trim().split('\t').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("LSN: {out}"))
}
