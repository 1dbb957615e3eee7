//! Real-server fixtures for the replica tests (issue 29, design §5): certificates, a primary
//! that accepts nothing but TLS, a write load, a replica started as the user's own service
//! would start it, and the checks that a replica replicates (over verified TLS, caught up,
//! every table equal). Every wait has a deadline; a failure shows the replica's error log.
#![allow(dead_code)]

use super::live::{self, free_port};
use super::mariadb::{which, Server};
use super::*;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The replication account on the primary, from any loopback address.
pub const REPL_USER: &str = "repl";
/// Its password holds `'` and `\`, the two characters SQL quoting gets wrong.
pub const REPL_PASSWORD: &str = "r'pl\\pw-29";
/// The user the replica's own service runs as, and who must own its datadir.
pub const OWNER: &str = "mysql";

/// `s` as a SQL string literal under the default sql_mode (backslashes are escapes).
pub fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Certificates from `coffer tls generate`: a CA and a server certificate `db` for localhost
/// and 127.0.0.1 (not 127.0.0.2), and a second CA that signed nothing the primary holds.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub other_ca: String,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();
        let (pki, other) = (dir.join("pki"), dir.join("other-pki"));
        expect(0, &["tls", "generate", "--ca-dir", &s(pki.clone()), "--name", "db"]);
        expect(0, &["tls", "generate", "--ca-dir", &s(other.clone()), "--name", "db"]);
        // The replica runs as mysql and reads its CA file when its I/O thread connects.
        for d in [&pki, &other] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        Pki {
            ca: s(pki.join("ca.crt")),
            cert: s(pki.join("db.crt")),
            key: s(pki.join("db.key")),
            other_ca: s(other.join("ca.crt")),
        }
    }
}

/// A primary (in `fx`'s `src`): binary log, GTID strict mode, server id 1, TLS required, on
/// 127.0.0.1 and 127.0.0.2 (a name its certificate does not hold), performance_schema on;
/// sysbench tables (`live::source`: a backup user `backup`, its password in `fx`'s `pw`); the
/// account `repl` (REPLICATION SLAVE, mysql_native_password, password in `repl_password_file`).
pub struct Primary {
    pub server: Server,
    pub port: u16,
    pub opts: Vec<String>,
    pub repl_password_file: String,
}

impl Primary {
    /// Starts it with the options `extra` last (they win).
    pub fn start(fx: &Fixture, pki: &Pki, extra: &[&str]) -> Primary {
        let port = free_port();
        let mut opts: Vec<String> = [
            "--server-id=1",
            "--gtid-strict-mode=ON",
            "--require-secure-transport=ON",
            "--bind-address=127.0.0.1,127.0.0.2",
            "--performance-schema=ON",
        ]
        .map(String::from)
        .into();
        opts.extend([
            format!("--ssl-ca={}", pki.ca),
            format!("--ssl-cert={}", pki.cert),
            format!("--ssl-key={}", pki.key),
        ]);
        opts.extend(extra.iter().map(|s| s.to_string()));
        let server = live::source(fx, port, &opts);
        server.sql(&format!(
            "CREATE USER '{REPL_USER}'@'127.0.0.%' IDENTIFIED VIA mysql_native_password USING PASSWORD({}); \
             GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.%';",
            quoted(REPL_PASSWORD)
        ));
        fx.write_secret("repl.pw", &format!("{REPL_PASSWORD}\n"));
        std::fs::create_dir_all(fx.path("scratch")).unwrap();
        let opts = live::binlog_options(port, &[]).into_iter().chain(opts).collect();
        Primary { server, port, opts, repl_password_file: fx.s("repl.pw") }
    }

    fn status(&self, name: &str) -> String {
        let row = self.server.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        row.split('\t').nth(1).unwrap_or_else(|| panic!("no status {name}")).trim().to_owned()
    }

    /// TLS handshakes the primary has accepted since it started.
    pub fn ssl_accepts(&self) -> u64 {
        self.status("Ssl_accepts").parse().unwrap()
    }

    /// The cipher of every `Binlog Dump` thread (a replica's or an archiver's connection), ""
    /// for one that is not TLS.
    pub fn dump_thread_ciphers(&self) -> Vec<String> {
        let rows = self.server.sql(
            "SELECT t.THREAD_ID, IFNULL(MAX(IF(s.VARIABLE_NAME = 'Ssl_cipher', s.VARIABLE_VALUE, NULL)), '') \
             FROM performance_schema.threads t \
             LEFT JOIN performance_schema.status_by_thread s ON s.THREAD_ID = t.THREAD_ID \
             WHERE t.PROCESSLIST_COMMAND = 'Binlog Dump' GROUP BY t.THREAD_ID",
        );
        rows.lines().map(|l| l.split('\t').nth(1).unwrap_or("").to_owned()).collect()
    }

    pub fn gtid_binlog_pos(&self) -> String {
        self.server.sql("SELECT @@gtid_binlog_pos").trim().to_owned()
    }

    /// Starts a new binary log and purges every older one: a replica (or a backup) that needs a
    /// transaction written before now can no longer get it from the primary. The file kept.
    pub fn purge_binary_logs(&self) -> String {
        self.server.sql("FLUSH BINARY LOGS");
        let current = self.server.sql("SHOW MASTER STATUS").split('\t').next().unwrap().to_owned();
        // The server keeps a log until its binlog checkpoint is written: ask again a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.server.sql(&format!("PURGE BINARY LOGS TO {}", quoted(&current)));
            let left = self.server.sql("SHOW BINARY LOGS");
            if left.lines().count() == 1 {
                return current;
            }
            assert!(Instant::now() < deadline, "binary logs left after 30 s: {left}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The user tables (`db.table`), the ones the checksums compare.
    pub fn tables(&self) -> Vec<String> {
        let list = self.server.sql(
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
        );
        list.lines().map(str::to_owned).collect()
    }
}

/// sysbench `oltp_write_only` on the primary's 4 × 20000 rows, one thread, 200 transactions a
/// second (the cores are left to the seed), until stopped.
pub struct Load {
    child: Option<Child>,
    log: PathBuf,
}

impl Load {
    /// Starts it, and returns once the primary has written at least one transaction of it.
    pub fn start(primary: &Primary) -> Load {
        let before = primary.gtid_binlog_pos();
        let log = primary.server.dir.join("load.log");
        let child = Command::new(which("sysbench").unwrap())
            .arg("oltp_write_only")
            .arg(format!("--mysql-socket={}", primary.server.socket.display()))
            .args(["--mysql-user=root", "--mysql-db=sbtest", "--tables=4", "--table-size=20000"])
            .args(["--threads=1", "--rate=200", "--time=0", "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut load = Load { child: Some(child), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while primary.gtid_binlog_pos() == before {
            load.assert_running();
            assert!(Instant::now() < deadline, "the load wrote nothing in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        load
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("sysbench exited by itself ({status}): {}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }

    /// Stops it (it must still be running: a load that died early proves nothing).
    pub fn stop(mut self) {
        self.assert_running();
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The replica as the user's own service: `replica.cnf` (server id 2, binary log with the
/// replica's updates, its own pid file, relay log names, socket and port, the datadir given)
/// and `start.sh`, which runs `mariadbd --defaults-file=replica.cnf` in the background as
/// mysql and records its pid. The datadir is whatever some other tool left there.
pub struct Replica {
    pub dir: PathBuf,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub cnf: PathBuf,
    pub start_sh: PathBuf,
    pid_file: PathBuf,
}

impl Replica {
    /// Writes the service's files into `dir` (made, and given to mysql); `extra` are more lines
    /// of its `[mysqld]` group (e.g. `innodb_encrypt_tables=ON`). Starts nothing.
    pub fn new(dir: &Path, datadir: &Path, extra: &[&str]) -> Replica {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = free_port();
        let (socket, cnf, start_sh) = (dir.join("replica.sock"), dir.join("replica.cnf"), dir.join("start.sh"));
        let pid_file = dir.join("start.pid");
        let mut text = format!(
            "[mysqld]\nuser={OWNER}\ndatadir={}\nsocket={}\nport={port}\nbind-address=127.0.0.1\n\
             pid-file={}\nlog-error={}\ntmpdir={}\nserver-id=2\nlog-bin=replica-bin\nlog-slave-updates\n\
             relay-log=replica-relay-bin\nrelay-log-index=replica-relay-bin.index\ngtid-strict-mode=ON\n\
             innodb-buffer-pool-size=64M\ninnodb-log-file-size=48M\n",
            datadir.display(),
            socket.display(),
            dir.join("replica.pid").display(),
            dir.join("error.log").display(),
            dir.join("tmp").display()
        );
        text.extend(extra.iter().map(|l| format!("{l}\n")));
        std::fs::write(&cnf, text).unwrap();
        let script = format!(
            "#!/bin/sh\n# The replica's service: mariadbd in the background, as {OWNER} (replica.cnf says so).\n\
             {} --defaults-file={} >>{} 2>&1 &\necho $! >{}\n",
            which("mariadbd").unwrap().display(),
            cnf.display(),
            dir.join("mariadbd.out").display(),
            pid_file.display()
        );
        std::fs::write(&start_sh, script).unwrap();
        std::fs::set_permissions(&start_sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        chown_tree(dir);
        Replica { dir: dir.into(), datadir: datadir.into(), socket, port, cnf, start_sh, pid_file }
    }

    /// Runs `start.sh` and waits (60 s at most) until the server answers.
    pub fn start(&self) {
        let out = Command::new(&self.start_sh).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "start.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        self.wait_up();
    }

    /// Waits (60 s at most) until the server `start.sh` started (by us, or by `coffer replica
    /// seed --start-with`) answers.
    pub fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.try_sql("SELECT 1").is_err() {
            assert!(self.running(), "the replica exited: {}", self.log_tail());
            assert!(Instant::now() < deadline, "the replica did not start in 60 s: {}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid `start.sh` recorded, if that process is alive (a zombie is not).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit(')').next()?.split_whitespace().next()?;
        (state != "Z").then_some(pid)
    }

    pub fn running(&self) -> bool {
        self.pid().is_some()
    }

    /// Shuts the server down cleanly, and waits (120 s at most, then kills it).
    pub fn stop(&self) {
        let _ = self.try_sql("SHUTDOWN");
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.running() {
            if Instant::now() > deadline {
                self.kill();
                panic!("the replica did not shut down in 120 s: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs SQL as root over the socket: tab-separated rows, or the client's error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(which("mariadb").unwrap())
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        }
    }

    #[track_caller]
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("SQL failed on the replica: {sql}\n{e}\n{}", self.log_tail()))
    }

    /// `SHOW SLAVE STATUS` as column → value (empty when no replication is configured).
    pub fn slave_status(&self) -> BTreeMap<String, String> {
        let out = Command::new(which("mariadb").unwrap())
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "-e", "SHOW SLAVE STATUS"])
            .output()
            .unwrap();
        assert!(out.status.success(), "SHOW SLAVE STATUS: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return BTreeMap::new() };
        names.split('\t').map(str::to_owned).zip(values.split('\t').map(str::to_owned)).collect()
    }

    /// The last 30 lines of the replica's error log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("replica's error log (tail):\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Gives `dir` and everything under it to mysql (as `chown -R mysql:mysql`).
pub fn chown_tree(dir: &Path) {
    let out = Command::new("chown").args(["-R", &format!("{OWNER}:{OWNER}")]).arg(dir).output().unwrap();
    assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until `replica` has applied `target` (a GTID position), `timeout` at most, asking
/// `MASTER_GTID_WAIT` a second at a time and looking at `SHOW SLAVE STATUS` in between: a
/// replication error (`errno N: message`) or both threads stopped ends the wait at once.
pub fn catch_up(replica: &Replica, target: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let wait = format!("SELECT MASTER_GTID_WAIT({}, 1)", quoted(target));
    loop {
        if replica.sql(&wait).trim() == "0" {
            return Ok(());
        }
        let st = replica.slave_status();
        let get = |k: &str| st.get(k).map(String::as_str).unwrap_or("");
        for (errno, error) in [("Last_IO_Errno", "Last_IO_Error"), ("Last_SQL_Errno", "Last_SQL_Error")] {
            if !matches!(get(errno), "" | "0") {
                return Err(format!("{errno} {}: {}", get(errno), get(error)));
            }
        }
        if get("Slave_IO_Running") != "Yes" && get("Slave_SQL_Running") != "Yes" {
            return Err(format!("replication is not running (Gtid_IO_Pos '{}')", get("Gtid_IO_Pos")));
        }
        if Instant::now() > deadline {
            return Err(format!("not caught up with {target} in {timeout:?}: {st:?}"));
        }
    }
}

/// The checks after every seed, once the load is stopped: the replica catches up with the
/// primary's `gtid_binlog_pos` within `timeout`; every user table has the same CHECKSUM on
/// both; SHOW SLAVE STATUS has both threads running, no error, GTID mode `Slave_Pos` and a
/// verified TLS link; `gtid_slave_pos` equals the primary's `gtid_binlog_pos`; the primary
/// accepted TLS handshakes since `accepts_before`, and each of its dump threads has a cipher.
#[track_caller]
pub fn assert_replicates(primary: &Primary, replica: &Replica, accepts_before: u64, timeout: Duration) {
    let target = primary.gtid_binlog_pos();
    if let Err(e) = catch_up(replica, &target, timeout) {
        panic!("the replica did not catch up: {e}\n{}", replica.log_tail());
    }
    let tables = primary.tables();
    assert!(!tables.is_empty(), "no tables to compare");
    let checksum = format!("CHECKSUM TABLE {}", tables.join(", "));
    assert_eq!(replica.sql(&checksum), primary.server.sql(&checksum), "checksums differ\n{}", replica.log_tail());
    let st = replica.slave_status();
    let want = [
        ("Slave_IO_Running", "Yes"),
        ("Slave_SQL_Running", "Yes"),
        ("Last_Errno", "0"),
        ("Last_IO_Errno", "0"),
        ("Last_SQL_Errno", "0"),
        ("Using_Gtid", "Slave_Pos"),
        ("Master_SSL_Allowed", "Yes"),
        ("Master_SSL_Verify_Server_Cert", "Yes"),
    ];
    for (k, v) in want {
        assert_eq!(st.get(k).map(String::as_str), Some(v), "SHOW SLAVE STATUS {k}: {st:?}\n{}", replica.log_tail());
    }
    let pos = primary.gtid_binlog_pos();
    assert_eq!(replica.sql("SELECT @@gtid_slave_pos").trim(), pos, "gtid_slave_pos\n{}", replica.log_tail());
    assert!(primary.ssl_accepts() > accepts_before, "the primary accepted no TLS handshake");
    let ciphers = primary.dump_thread_ciphers();
    assert!(!ciphers.is_empty() && ciphers.iter().all(|c| !c.is_empty()), "dump threads' ciphers: {ciphers:?}");
}

/// Every file under `roots` that holds the replication password, as typed or as a SQL
/// literal would hold it.
pub fn password_holders(roots: &[&Path]) -> Vec<PathBuf> {
    let forms = [REPL_PASSWORD.to_owned(), quoted(REPL_PASSWORD), REPL_PASSWORD.replace('\\', "\\\\")];
    let mut found = vec![];
    let mut stack: Vec<PathBuf> = roots.iter().map(|r| r.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        if md.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if md.is_file() && md.len() > 0 {
            let Ok(bytes) = std::fs::read(&p) else { continue };
            if forms.iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_bytes())) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// The live processes (pid, command line) whose command line mentions `needle` (a path of the
/// test's): what a refused or killed seed must not leave running.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() as i32 {
            found.push((pid, cmd.trim().to_owned()));
        }
    }
    found
}
