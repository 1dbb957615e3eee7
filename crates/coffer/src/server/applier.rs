//! The applier: a private server on a restored datadir that applies an archived binary log
//! (its SQL thread reading the log as relay logs, or `mariadb-binlog | mariadb` in one client
//! session), sets the GTID position, lets its caller configure it, and shuts down cleanly.
//! Point-in-time recovery replays to a target with it; seeding a replica catches up from the
//! archive and sets the replication connection with it.

use super::private::{last_line, program, Server, ServerUser};
use crate::error::{Context, Error, Result};
use crate::Env;
use coffer_mysql::client::Client;
use coffer_mysql::engine::PrepareOption;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What applies the binary log to the restored server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Applier {
    /// The server's own replication applier (its SQL thread), the log given to it as relay
    /// logs: about 4x faster than a client (docs/BENCHMARKS.md).
    #[default]
    SqlThread,
    /// `mariadb-binlog | mariadb`, one client session: what DBAs do by hand.
    Client,
}

/// What a replay needs of this host, checked before anything is read or written: the server's
/// user (`owner`) and its programs (found, and trusted); then what killed replays left goes.
pub(crate) fn host(owner: Option<&str>, env: &Env) -> Result<()> {
    crate::server::private::server_user(owner, "the replay server")?;
    program(&["mariadbd", "mysqld"], "mariadb-server")?;
    program(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?;
    program(&["mariadb", "mysql"], "mariadb-client")?;
    crate::server::private::sweep(&std::env::temp_dir(), RUN, "point-in-time replay", env);
    Ok(())
}

/// The archive must be of the backup's server (where both say which it is).
pub(crate) fn same_server(
    binlogs: &str,
    archive: &crate::repo::archive::Archive,
    info: &coffer_mysql::meta::BackupInfo,
    shown: &str,
    start: &(String, u32),
) -> Result<()> {
    let ours = info.server.as_ref().and_then(|s| s.server_id);
    if let (Some(ours), Some(first)) = (ours, archive.file_start(&start.0)) {
        if let Some(theirs) = archive.description(first)?["server"]["server_id"].as_u64() {
            if theirs != ours {
                crate::bail!(
                    "{binlogs} holds the binary log of server id {theirs}, but {shown} is of server id {ours}"
                );
            }
        }
    }
    Ok(())
}

/// A quarter of the memory available now, between 128 MiB and 4 GiB (in steps of 128 MiB), for
/// a replay server whose options name no buffer pool of their own.
fn buffer_pool(options: &[PrepareOption]) -> Option<u64> {
    if options.iter().any(|o| o.name() == "innodb_buffer_pool_size") {
        return None;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(pool_for(kib.saturating_mul(1024)))
}

fn pool_for(available: u64) -> u64 {
    let step = 128u64 << 20;
    (available / 4).clamp(step, 4 << 30) / step * step
}

/// How the replay runs: a private server on the restored datadir (as `crate::server` keeps
/// them: an unprivileged user, only what InnoDB needs of the image's options, dead with coffer),
/// the binary log given to its SQL thread or through `mariadb-binlog` into one client session.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    pub(crate) datadir: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) files: Vec<String>,
    pub(crate) start: (String, u32),
    pub(crate) stop: (String, u32),
    pub(crate) gtid_state: String,
    /// The server's option file, and what it left out of the backup's.
    pub(crate) options: String,
    pub(crate) left_out: Vec<String>,
    pub(crate) server: PathBuf,
    pub(crate) binlog_tool: PathBuf,
    pub(crate) client: PathBuf,
    /// The server's user (`None`: coffer's own, not root).
    pub(crate) user: Option<ServerUser>,
    /// How the log is applied, and (by the SQL thread) the server id the replay server takes:
    /// one no event of the log carries, or it would skip them as its own.
    pub(crate) applier: Applier,
    pub(crate) server_id: u32,
    /// Were the backups and the log read with their signer checked? (Then the server may run
    /// unconfined where it cannot be confined.)
    pub(crate) signed: bool,
    /// The buffer pool the server gets (bytes), unless the options give one: replay on
    /// MariaDB's default of 128 MiB ran 2.8 times slower than on 512 MiB (docs/BENCHMARKS.md).
    pub(crate) buffer_pool: Option<u64>,
    /// What the log's walk says each domain's last transaction applied is: the SQL thread's
    /// position must agree before the GTID position is set over it.
    pub(crate) expect_applied: Option<crate::repo::recovery::Gtids>,
    /// Only these tables (`db.t`) are replayed (the SQL thread's `replicate-do-table`): a
    /// restore of some tables, whose other tables the datadir does not hold.
    pub(crate) only_tables: Vec<String>,
}

/// A path as one shell word.
pub(crate) fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Replay {
    /// The replay of `files` (in `logs`) from `range.0` to `range.1` into `datadir`, by a server
    /// that runs as `owner` (`restore --owner`; as root, default mysql), to which the datadir
    /// and `logs` (the printed commands' socket and logs) are given.
    pub(crate) fn new(
        datadir: &Path,
        logs: &Path,
        files: &[String],
        range: (&(String, u32), &(String, u32)),
        gtid_state: &str,
        options: &[PrepareOption],
        owner: Option<&str>,
    ) -> Result<Self> {
        let taken = coffer_mysql::engine::server_options(datadir, options).map_err(Error::other)?;
        let user = crate::server::private::server_user(owner, "the replay server")?;
        crate::server::private::give_tree(datadir, user.as_ref())?;
        crate::server::private::give(logs, user.as_ref())?;
        Ok(Replay {
            datadir: datadir.to_owned(),
            logs: logs.to_owned(),
            files: files.to_vec(),
            start: range.0.clone(),
            stop: range.1.clone(),
            gtid_state: gtid_state.to_owned(),
            options: taken.text,
            left_out: taken.left_out,
            server: program(&["mariadbd", "mysqld"], "mariadb-server")?,
            binlog_tool: program(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?,
            client: program(&["mariadb", "mysql"], "mariadb-client")?,
            user,
            applier: Applier::default(),
            server_id: 2,
            signed: false,
            buffer_pool: buffer_pool(options),
            expect_applied: None,
            only_tables: Vec::new(),
        })
    }

    /// The files replay reads: those from the backup's to the stop's (a stop at a file's
    /// first event leaves that file out).
    fn replayed(&self) -> Vec<&String> {
        let stop_at_start = self.stop.1 <= 4;
        self.files.iter().filter(|f| !(stop_at_start && **f == self.stop.0)).collect()
    }

    fn binlog_args(&self) -> Vec<String> {
        let files = self.replayed();
        let mut args = vec!["--no-defaults".to_owned(), format!("--start-position={}", self.start.1)];
        if files.last().is_some_and(|f| **f == self.stop.0) {
            args.push(format!("--stop-position={}", self.stop.1));
        }
        args.extend(files.iter().map(|f| self.logs.join(f).display().to_string()));
        args
    }

    fn server_args(&self, options_file: &Path, run: &Path) -> Vec<String> {
        let mut args = crate::server::private::private_args(options_file, &self.datadir, run, "replay");
        // A crash during replay throws the directory away: no need to flush each commit. No
        // statement is logged (a seed's CHANGE MASTER holds a password), whatever the options.
        args.extend([
            "--innodb-flush-log-at-trx-commit=0".into(),
            "--innodb-doublewrite=0".into(),
            "--general-log=0".into(),
            "--slow-query-log=0".into(),
        ]);
        args.extend(self.buffer_pool.map(|b| format!("--innodb-buffer-pool-size={b}")));
        if self.applier == Applier::SqlThread {
            args.extend([
                format!("--server-id={}", self.server_id),
                format!("--relay-log={RELAY}"),
                format!("--relay-log-index={RELAY}.index"),
                "--relay-log-purge=0".into(),
            ]);
            args.extend(self.only_tables.iter().map(|t| format!("--replicate-do-table={t}")));
        }
        args
    }

    fn client_args(&self, run: &Path) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            format!("--socket={}", run.join("replay.sock").display()),
            "--user=root".into(),
            "--binary-mode".into(),
            "--local-infile=0".into(),
            "--init-command=FLUSH PRIVILEGES".into(),
        ]
    }

    /// The commands a DBA runs to replay by hand (as root, the server becomes its user itself).
    pub(crate) fn commands(&self) -> String {
        let words = |v: Vec<String>| v.iter().map(|a| shell_word(Path::new(a))).collect::<Vec<_>>().join(" ");
        let run = &self.logs;
        let mut server_args = self.server_args(&run.join("replay.cnf"), run);
        server_args.extend(self.user.as_ref().map(|u| format!("--user={}", u.name)));
        let sock = run.join("replay.sock");
        format!(
            "# 1. a private server on the restored datadir (no network, no replication, no binary log)\n\
             {} {} &\n\
             # 2. the binary log from the backup's position ({}:{}) to the target ({}:{}), in one client session\n\
             {} {} | {} {}\n\
             # 3. the GTID position after replay, for replicas of this server\n\
             {} --no-defaults --socket={} --user=root -e \"SET GLOBAL gtid_slave_pos = '{}'\"\n\
             # 4. a clean shutdown\n\
             {} --no-defaults --socket={} --user=root -e SHUTDOWN\n",
            shell_word(&self.server),
            words(server_args),
            self.start.0,
            self.start.1,
            self.stop.0,
            self.stop.1,
            shell_word(&self.binlog_tool),
            words(self.binlog_args()),
            shell_word(&self.client),
            words(self.client_args(run)),
            shell_word(&self.client),
            shell_word(&sock),
            self.gtid_state,
            shell_word(&self.client),
            shell_word(&sock),
        )
    }

    /// Starts the server, replays, sets the GTID position, runs `then` on its session (a seed
    /// configures replication there), shuts the server down cleanly.
    pub(crate) fn run(&self, env: &Env, then: &mut dyn FnMut(&mut Client) -> Result<()>) -> Result<()> {
        if !self.left_out.is_empty() {
            env.report.warn(&format!(
                "the replay server takes only what InnoDB needs of the backup's backup-my.cnf; left out: {}",
                self.left_out.join(", ")
            ));
        }
        crate::server::private::check_confined(&self.datadir)?;
        let user = self.user.as_ref();
        // The socket's path must be short (108 bytes): a private directory under /tmp, the
        // server's own.
        let dir = crate::server::private::rundir(RUN)?;
        let run = dir.path();
        crate::server::private::give(run, user)?;
        let options = crate::server::private::write_options(run, "replay", &self.options)?;
        crate::server::private::give(&options, user)?;
        crate::server::private::check_reachable(&self.datadir, user, "the replay server")?;
        crate::server::private::check_reachable(run, user, "the replay server")?;
        // Without its key file the server reads every encrypted tablespace as corrupt.
        if let Some(keys) = key_file(&self.options) {
            crate::server::private::check_readable(&keys, user, "the replay server")?;
        }
        // Whatever SQL the log holds writes nowhere but here.
        let confined =
            crate::server::private::confinement(&[&self.datadir, run], self.signed, "the replay server", env)?;
        let mut server = Server::start(
            &self.server,
            &self.server_args(&options, run),
            run,
            "replay",
            "the replay server",
            user,
            confined,
        )?;
        let mut control = server.connect(Duration::from_secs(600))?;
        env.report.say(&format!("replay server started on {}", self.datadir.display()));
        let replayed = match self.applier {
            _ if self.start == self.stop => Ok(()),
            Applier::Client => self.feed(run, env),
            Applier::SqlThread => self.apply(&mut control, run, env),
        };
        let result = replayed.and_then(|()| {
            self.check_applied(&mut control)?;
            if !self.gtid_state.is_empty() && coffer_mysql::meta::is_mariadb_gtid_list(&self.gtid_state) {
                control
                    .query(&format!("SET GLOBAL gtid_slave_pos = '{}'", self.gtid_state))
                    .map_err(|e| Error::other(e).context("cannot set the server's GTID position"))?;
            }
            then(&mut control)
        });
        let stopped = server.shutdown(control);
        result?;
        stopped
    }

    /// The SQL thread's GTID position agrees with the walk's, domain by domain (events it
    /// skipped, or a walk gone wrong, are not hidden under the position set after).
    fn check_applied(&self, control: &mut Client) -> Result<()> {
        let Some(expected) = self.expect_applied.as_ref().filter(|_| self.applier == Applier::SqlThread) else {
            return Ok(());
        };
        let rows = control
            .query("SELECT @@gtid_slave_pos")
            .map_err(|e| Error::other(e).context("cannot read the replay's GTID position"))?;
        let text = rows.first().and_then(|r| r.first()).cloned().flatten().unwrap_or_default();
        let reached = crate::repo::recovery::parse_gtids(&text).unwrap_or_default();
        if expected.iter().any(|(d, g)| reached.get(d) != Some(g)) {
            crate::bail!(
                "replay ended at GTID {}, but the archive says {}",
                crate::text::escape(text.as_bytes()),
                crate::repo::recovery::gtid_text(expected)
            );
        }
        Ok(())
    }

    /// The log as the restored server's relay logs (links in its datadir, named in the relay
    /// log index), applied by its SQL thread from the backup's position until it reaches the
    /// stop (the last relay log ends there), then the replication settings removed.
    fn apply(&self, control: &mut Client, run: &Path, env: &Env) -> Result<()> {
        let sql = |c: &mut Client, q: &str| c.query(q).map_err(|e| Error::other(e).context(format!("replay: {q}")));
        let files = self.replayed();
        // Replication's own files, removed after replay unless the backup had them.
        let made: Vec<&str> =
            ["master.info", "relay-log.info"].into_iter().filter(|f| !self.datadir.join(f).exists()).collect();
        let give = |path: &Path| crate::server::private::give(path, self.user.as_ref());
        let mut index = String::new();
        let mut relays = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let name = format!("{RELAY}.{:06}", i + 1);
            let path = self.datadir.join(&name);
            if std::fs::hard_link(self.logs.join(f), &path).is_err() {
                std::fs::copy(self.logs.join(f), &path).with_context(|| format!("cannot write {}", path.display()))?;
            }
            give(&path)?;
            index.push_str(&format!("./{name}\n"));
            relays.push(name);
        }
        let index_path = self.datadir.join(format!("{RELAY}.index"));
        std::fs::write(&index_path, index).with_context(|| format!("cannot write {}", index_path.display()))?;
        give(&index_path)?;
        // Grants load first, so that GRANT and CREATE USER in the log apply. The names are
        // binary log file names (checked): no quote reaches the SQL.
        sql(control, "FLUSH PRIVILEGES")?;
        sql(
            control,
            &format!(
                "CHANGE MASTER TO MASTER_HOST='coffer-replay.invalid', MASTER_USER='none', MASTER_USE_GTID=no, \
                 MASTER_LOG_FILE='{}', MASTER_LOG_POS={}, RELAY_LOG_FILE='{}', RELAY_LOG_POS={}",
                self.start.0, self.start.1, relays[0], self.start.1
            ),
        )?;
        sql(control, "START SLAVE SQL_THREAD")?;
        // MASTER_POS_WAIT: the position reached (>= 0), -1 after the timeout, NULL when the SQL
        // thread stopped (on an error).
        let wait = format!("SELECT MASTER_POS_WAIT('{}', {}, 5)", self.stop.0, self.stop.1);
        let mut idle_before = false;
        let reached = loop {
            let rows = sql(control, &wait)?;
            match rows.first().and_then(|r| r.first()).cloned().flatten() {
                Some(n) if n == "-1" => {
                    // Every relay log read, and still not there after a whole wait: it never
                    // will be (the wait is bounded by the log, not by time).
                    let idle = sql(control, IDLE)?.first().and_then(|r| r.first()).cloned().flatten();
                    let idle = idle.is_some_and(|n| n != "0");
                    if idle && idle_before {
                        let _ = sql(control, "STOP SLAVE");
                        crate::bail!(
                            "replay stalled: the server's SQL thread read every relay log without reaching {}:{}",
                            self.stop.0,
                            self.stop.1
                        );
                    }
                    idle_before = idle;
                }
                Some(_) => break true,
                None => break false,
            }
        };
        if !reached {
            let _ = sql(control, "STOP SLAVE");
            let said = applier_error(&run.join("replay.err"));
            let hint = if !self.only_tables.is_empty() && said.contains("doesn't exist") {
                " (a statement of the log on the tables restored reads another table: restore that one too)"
            } else {
                ""
            };
            crate::bail!("replay failed (the server's SQL thread stopped): {said}{hint}");
        }
        sql(control, "STOP SLAVE")?;
        sql(control, "RESET SLAVE ALL")?;
        let _ = std::fs::remove_file(self.datadir.join(format!("{RELAY}.index")));
        for f in made {
            let _ = std::fs::remove_file(self.datadir.join(f));
        }
        for name in relays {
            let _ = std::fs::remove_file(self.datadir.join(name));
        }
        env.report.say("replay ended");
        Ok(())
    }

    /// `mariadb-binlog ... | mariadb`: one process each, one session.
    fn feed(&self, run: &Path, env: &Env) -> Result<()> {
        let err = |name: &str| -> Result<std::fs::File> {
            std::fs::File::create(run.join(name)).with_context(|| format!("cannot create {}", run.display()))
        };
        let mut reader = Command::new(&self.binlog_tool);
        coffer_mysql::engine::program_env(&mut reader);
        let mut reader = reader
            .args(self.binlog_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err("binlog.err")?)
            .spawn()
            .with_context(|| format!("cannot run {}", self.binlog_tool.display()))?;
        let stdout = reader.stdout.take().expect("piped");
        let mut client = Command::new(&self.client);
        coffer_mysql::engine::program_env(&mut client);
        let client =
            client.args(self.client_args(run)).stdin(stdout).stdout(Stdio::null()).stderr(err("client.err")?).spawn();
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = reader.kill();
                let _ = reader.wait();
                return Err(Error::from(e).context(format!("cannot run {}", self.client.display())));
            }
        };
        let applied = client.wait()?;
        if !applied.success() {
            let _ = reader.kill();
        }
        let read = reader.wait()?;
        let last = |name: &str| last_line(&run.join(name));
        if !applied.success() {
            crate::bail!("replay failed ({}): {}", self.client.display(), last("client.err"));
        }
        if !read.success() {
            crate::bail!("replay failed ({}): {}", self.binlog_tool.display(), last("binlog.err"));
        }
        env.report.say("replay ended");
        Ok(())
    }
}

/// The key file the server's options name (the last `[loose_]file_key_management_filename`,
/// its value in quotes as `coffer_mysql::engine::server_options` writes it, or bare).
fn key_file(options: &str) -> Option<PathBuf> {
    let value = options
        .lines()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(name, _)| {
            let name = name.trim().replace('-', "_");
            name.strip_prefix("loose_").unwrap_or(&name) == "file_key_management_filename"
        })?
        .1
        .trim();
    let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return Some(PathBuf::from(value));
    };
    let (mut out, mut chars) = (String::new(), quoted.chars());
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(PathBuf::from(out))
}

/// The SQL thread's error, as the server's error log says it ("Slave SQL: Error ..."), or the
/// log's last line.
fn applier_error(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(64 << 10)..];
    let said =
        tail.split(|b| *b == b'\n').rev().find(|l| l.windows(9).any(|w| w == b"Slave SQL")).map(crate::text::escape);
    said.unwrap_or_else(|| last_line(log))
}

/// The name of the replay server's private directories in the temporary directory:
/// `coffer-replay-RANDOM`.
pub(crate) const RUN: &str = "coffer-replay";

/// Whether the replaying SQL thread has applied every relay log and waits for more.
const IDLE: &str = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_SQL' AND \
                    STATE LIKE 'Slave has read all relay log%'";

/// The relay logs' base name in the restored datadir while its SQL thread replays.
pub(crate) const RELAY: &str = "coffer-relay";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_servers_buffer_pool_is_a_quarter_of_the_memory_within_bounds() {
        assert_eq!(pool_for(22 << 30), 4 << 30);
        assert_eq!(pool_for(2 << 30), 512 << 20);
        assert_eq!(pool_for(100 << 20), 128 << 20);
        assert_eq!(pool_for((1 << 30) + (300 << 20)), 256 << 20);
        let given: PrepareOption = "innodb-buffer-pool-size=1G".parse().unwrap();
        assert_eq!(buffer_pool(&[given]), None);
    }

    #[test]
    fn the_key_file_is_read_from_the_servers_options() {
        let options = "[mariadbd]\nplugin_load=\"file_key_management=file_key_management\"\nfile_key_management_filename=\"/k/a \\\"b\\\\.txt\"\n";
        assert_eq!(key_file(options), Some(PathBuf::from("/k/a \"b\\.txt")));
        assert_eq!(key_file("x=\"1\"\n"), None);
        let both = "loose_file_key_management_filename=\"/backup/keys\"\nfile-key-management-filename=/here/keys\n";
        assert_eq!(key_file(both), Some(PathBuf::from("/here/keys")));
    }

    #[test]
    fn replay_commands_quote_what_they_name() {
        assert_eq!(shell_word(Path::new("/var/lib/x")), "/var/lib/x");
        assert_eq!(shell_word(Path::new("/tmp/a b'c")), r"'/tmp/a b'\''c'");
    }
}
