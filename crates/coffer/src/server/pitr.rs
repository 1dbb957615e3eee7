//! Point-in-time recovery: the newest backup before a target, restored and prepared, then the
//! archived binary log replayed into it up to the target, through one client session of a
//! private server (docs/FORMAT.md Appendix C.4 says exactly where replay stops).
//!
//! Nothing is written to the target until the whole plan holds: a backup before the target,
//! an archive that covers the way from the backup's binlog position to the target without a
//! gap, every segment read and checked. The backup is restored, prepared and replayed beside
//! the target, and takes its place only when replay has ended cleanly.

use super::beside::Beside;
use super::private::{last_line, program, Server, ServerUser};
use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::repo::archive::Archive;
use crate::repo::chain::Known;
use crate::repo::recovery::stop::{gather, Gathered};
use crate::repo::recovery::{gtid_text, parse_gtids, Route, Until};
use crate::restore::RestoreSpec;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::client::Client;
use coffer_mysql::engine::PrepareOption;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A point-in-time restore, as a user asks for it.
#[derive(Debug, Clone)]
pub struct PitrSpec {
    /// The prefix the backups are under.
    pub backups: String,
    /// The prefix of the binary log archive.
    pub binlogs: String,
    /// Where replay stops.
    pub until: Until,
    /// The target directory, secrets, owner, --force, durability.
    pub restore: RestoreSpec,
    /// The engine's prepare options (also the replay server's).
    pub options: Vec<PrepareOption>,
    /// Restore and prepare, write the binary logs beside the target, and give the replay's
    /// commands instead of running them.
    pub print_replay: bool,
    /// What applies the log.
    pub applier: Applier,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PitrSummary {
    /// The backups restored (a chain: full first).
    pub backups: Vec<String>,
    /// Where replay started: the backup's binlog position.
    pub start: (String, u32),
    /// Where replay stopped.
    pub stop: (String, u32),
    /// Events replayed.
    pub events: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// Bytes of the events replayed.
    pub bytes: u64,
    /// The GTID of the last transaction replayed.
    pub last_gtid: Option<String>,
    /// Its time (Unix seconds, the source's clock).
    pub last_time: Option<i64>,
    /// The server's GTID position after replay (set as its `gtid_slave_pos`).
    pub gtid_state: String,
    /// Seconds to restore and prepare.
    pub restore_seconds: f64,
    /// Seconds to replay (server start, replay, shutdown).
    pub replay_seconds: f64,
    /// With `print_replay`: where the binary logs are.
    pub binlog_dir: Option<PathBuf>,
    /// With `print_replay`: the commands that replay them.
    pub commands: Option<String>,
}

impl PitrSummary {
    /// The line that says what the restore did into `to`: where the binary logs to replay are
    /// (with `print_replay`), or what was replayed.
    pub fn line(&self, to: &Path) -> String {
        let backup = self.backups.last().map(String::as_str).unwrap_or_default();
        let ((start, start_at), (stop, stop_at)) = (&self.start, &self.stop);
        if let Some(dir) = &self.binlog_dir {
            return format!(
                "restored and prepared {backup} into {}; the binary logs to replay ({start}:{start_at} .. {stop}:{stop_at}, {} transactions) are in {}",
                to.display(),
                self.transactions,
                dir.display()
            );
        }
        let last = match (&self.last_gtid, self.last_time) {
            (Some(g), Some(t)) => format!("; the last transaction: GTID {g} at {} UTC", crate::text::utc(t)),
            _ => String::new(),
        };
        format!(
            "restored {backup} and replayed {} events ({} transactions, {}) from {start}:{start_at} to {stop}:{stop_at}{last}; \
             GTID position {}; restore {:.1} s, replay {:.1} s, into {}",
            self.events,
            self.transactions,
            crate::text::human(self.bytes),
            if self.gtid_state.is_empty() { "none" } else { &self.gtid_state },
            self.restore_seconds,
            self.replay_seconds,
            to.display()
        )
    }
}

/// Refuses `backups` unless it is a prefix (`s3://B/P/`, `file:///D/`): a point-in-time
/// recovery reads the backups under one.
pub fn check_backups_prefix(backups: &str) -> Result<()> {
    if backups.ends_with('/') && matches!(Location::parse(backups), Location::Object(_)) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{backups}: point-in-time recovery reads the backups under a prefix (s3://B/P/, file:///D/)"
    )))
}

/// Plans the restore: the backup, and the binary log up to the target, read and checked into a
/// private directory beside the target. Then restores, prepares and replays (or, with
/// `print_replay`, gives the commands).
pub fn restore_until(spec: &PitrSpec, env: &Env) -> Result<PitrSummary> {
    let to = &spec.restore.to;
    if !spec.restore.force && std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        crate::bail!("{} is not empty: refusing to restore into it (use --force)", to.display());
    }
    replay_host(spec.restore.owner.as_deref(), env)?;
    let unlocks = crate::keys::unlocks(&spec.restore.keys, env)?;
    let Route { archive, chain, start, found_stop } =
        crate::repo::recovery::route(&spec.backups, &spec.binlogs, &spec.until, &unlocks, env)?;
    let backup = chain.last().expect("a chain ends at its backup");
    let from = backup.info.binlog.clone().expect("a backup with a binlog position");
    // A prune keeps what this restore reads from now on: the chain, and the log from its file.
    let read: Vec<&Location> = chain.iter().map(|k| &k.location).collect();
    let _lease = crate::repo::lease::for_reading(&read, Some(&start.0), "restore", env)?;
    same_server(&spec.binlogs, &archive, backup, &start)?;
    // The binary log, read and checked before anything else is written.
    let logs = Beside::create(to, "binlog", env.report.as_ref())?;
    let Gathered { walk, stop, files, ids, one_session } =
        gather(&archive, &start, &spec.until, found_stop.as_ref(), &logs.path)
            .map_err(|e| crate::room::explain(e, to, None))?;
    if let Some(why) = one_session {
        one_session_refused(spec, &why, env)?;
    }
    env.report.say(&format!(
        "restoring {} ({}, binlog {}:{}), then replaying its binary log to {} ({}:{})",
        backup.shown(),
        backup.what(),
        start.0,
        start.1,
        spec.until.shown(),
        stop.0,
        stop.1
    ));

    let mut state = parse_gtids(from.gtid.as_deref().unwrap_or_default()).unwrap_or_default();
    state.extend(walk.applied.iter().map(|(d, v)| (*d, *v)));
    let mut summary = PitrSummary {
        backups: chain.iter().map(Known::shown).collect(),
        start: start.clone(),
        stop: stop.clone(),
        events: walk.events,
        transactions: walk.transactions,
        bytes: walk.bytes,
        last_gtid: walk.last_gtid.map(|(d, s, n)| format!("{d}-{s}-{n}")),
        last_time: walk.last_time,
        gtid_state: gtid_text(&state),
        ..Default::default()
    };

    let t = Instant::now();
    let (staging, _) = crate::server::prepare::stage_chain(&chain, &unlocks, &spec.restore, &spec.options, env)?;
    summary.restore_seconds = t.elapsed().as_secs_f64();
    let mut replay = Replay::new(
        &staging.path,
        &logs.path,
        &files,
        (&start, &stop),
        &summary.gtid_state,
        &spec.options,
        spec.restore.owner.as_deref(),
    )?;
    replay.applier = spec.applier;
    replay.signed = unlocks.iter().any(|u| matches!(u, Unlock::Signer(_)));
    replay.server_id = (1..).map(|n: u32| u32::MAX - n).find(|id| !ids.contains(id)).unwrap_or(2);
    if spec.print_replay {
        return print_replay(spec, staging, logs, replay, summary);
    }
    let t = Instant::now();
    replay.run(env)?;
    summary.replay_seconds = t.elapsed().as_secs_f64();
    write_report(&staging.path, &summary)?;
    staging.replace(spec.restore.force, spec.restore.sync)?;
    Ok(summary)
}

/// The archive must be of the backup's server (where both say which it is).
fn same_server(binlogs: &str, archive: &Archive, backup: &Known, start: &(String, u32)) -> Result<()> {
    let ours = backup.info.server.as_ref().and_then(|s| s.server_id);
    if let (Some(ours), Some(first)) = (ours, archive.file_start(&start.0)) {
        if let Some(theirs) = archive.description(first)?["server"]["server_id"].as_u64() {
            if theirs != ours {
                crate::bail!(
                    "{binlogs} holds the binary log of server id {theirs}, but {} is of server id {ours}",
                    backup.shown()
                );
            }
        }
    }
    Ok(())
}

/// `--print-replay`: the restored backup takes the target's place, its binary log goes beside
/// it (`TARGET.binlog`), and the summary gives the commands that replay it.
fn print_replay(
    spec: &PitrSpec,
    staging: Beside,
    logs: Beside,
    replay: Replay,
    mut summary: PitrSummary,
) -> Result<PitrSummary> {
    let to = &spec.restore.to;
    let dir = beside_name(to, "binlog");
    if dir.exists() {
        crate::bail!("{} exists: move it away to have the binary logs written there", dir.display());
    }
    staging.replace(spec.restore.force, spec.restore.sync)?;
    let replay = Replay { datadir: to.clone(), ..replay };
    crate::server::private::write_options(&logs.path, "replay", &replay.options)?;
    logs.keep_as(&dir)?;
    let replay = Replay { logs: dir.clone(), ..replay };
    summary.commands = Some(replay.commands());
    summary.binlog_dir = Some(dir);
    Ok(summary)
}

/// What a replay needs of this host, checked before anything is read or written: the server's
/// user (`owner`) and its programs (found, and trusted); then what killed replays left goes.
fn replay_host(owner: Option<&str>, env: &Env) -> Result<()> {
    crate::server::private::server_user(owner, "the replay server")?;
    program(&["mariadbd", "mysqld"], "mariadb-server")?;
    program(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?;
    program(&["mariadb", "mysql"], "mariadb-client")?;
    crate::server::private::sweep(&std::env::temp_dir(), RUN, "point-in-time replay", env);
    Ok(())
}

/// The log holds what one client session cannot replay (`why`): refused before anything is
/// restored with `--replay-with client`, a warning with `--print-replay` (whose commands
/// replay through one client session).
fn one_session_refused(spec: &PitrSpec, why: &str, env: &Env) -> Result<()> {
    let limit = format!(
        "{why}: MariaDB refuses to change gtid_domain_id in a session that holds a temporary table (error 1953)"
    );
    if spec.print_replay {
        env.report.warn(&format!("the printed replay (one client session) will fail: {limit}"));
    } else if spec.applier == Applier::Client {
        crate::bail!(
            "--replay-with client cannot replay this binary log in one session: {limit}; replay with --replay-with \
             sql-thread (the default)"
        );
    }
    Ok(())
}

/// `TARGET.binlog`, beside the target.
fn beside_name(to: &Path, what: &str) -> PathBuf {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "restore".into());
    to.with_file_name(format!("{name}.{what}"))
}

/// How the replay runs: a private server on the restored datadir (as `crate::server` keeps
/// them: an unprivileged user, only what InnoDB needs of the image's options, dead with coffer),
/// the binary log given to its SQL thread or through `mariadb-binlog` into one client session.
#[derive(Debug, Clone)]
struct Replay {
    datadir: PathBuf,
    logs: PathBuf,
    files: Vec<String>,
    start: (String, u32),
    stop: (String, u32),
    gtid_state: String,
    /// The server's option file, and what it left out of the backup's.
    options: String,
    left_out: Vec<String>,
    server: PathBuf,
    binlog_tool: PathBuf,
    client: PathBuf,
    /// The server's user (`None`: coffer's own, not root).
    user: Option<ServerUser>,
    /// How the log is applied, and (by the SQL thread) the server id the replay server takes:
    /// one no event of the log carries, or it would skip them as its own.
    applier: Applier,
    server_id: u32,
    /// Were the backups and the log read with their signer checked? (Then the server may run
    /// unconfined where it cannot be confined.)
    signed: bool,
}

/// A path as one shell word.
fn shell_word(p: &Path) -> String {
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
    fn new(
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
        // A crash during replay throws the directory away: no need to flush each commit.
        args.extend(["--innodb-flush-log-at-trx-commit=0".into(), "--innodb-doublewrite=0".into()]);
        if self.applier == Applier::SqlThread {
            args.extend([
                format!("--server-id={}", self.server_id),
                format!("--relay-log={RELAY}"),
                format!("--relay-log-index={RELAY}.index"),
                "--relay-log-purge=0".into(),
            ]);
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
    fn commands(&self) -> String {
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

    /// Starts the server, replays, sets the GTID position, shuts the server down cleanly.
    fn run(&self, env: &Env) -> Result<()> {
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
            if !self.gtid_state.is_empty() && coffer_mysql::meta::is_mariadb_gtid_list(&self.gtid_state) {
                control
                    .query(&format!("SET GLOBAL gtid_slave_pos = '{}'", self.gtid_state))
                    .map_err(|e| Error::other(e).context("cannot set the server's GTID position"))?;
            }
            Ok(())
        });
        let stopped = server.shutdown(control);
        result?;
        stopped
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
        let reached = loop {
            let rows = sql(control, &wait)?;
            match rows.first().and_then(|r| r.first()).cloned().flatten() {
                Some(n) if n == "-1" => continue,
                Some(_) => break true,
                None => break false,
            }
        };
        if !reached {
            let _ = sql(control, "STOP SLAVE");
            crate::bail!("replay failed (the server's SQL thread stopped): {}", applier_error(&run.join("replay.err")));
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
const RUN: &str = "coffer-replay";

/// The relay logs' base name in the restored datadir while its SQL thread replays.
const RELAY: &str = "coffer-relay";

/// `coffer-pitr.json` in the restored datadir: what was replayed.
const REPORT: &str = "coffer-pitr.json";

fn write_report(dir: &Path, s: &PitrSummary) -> Result<()> {
    let path = dir.join(REPORT);
    std::fs::write(&path, serde_json::to_vec_pretty(s)?).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_commands_quote_what_they_name() {
        assert_eq!(shell_word(Path::new("/var/lib/x")), "/var/lib/x");
        assert_eq!(shell_word(Path::new("/tmp/a b'c")), r"'/tmp/a b'\''c'");
    }
}
