//! Restore drills: the proof that a backup restores. The newest backup under a prefix (or the
//! image named) is restored into a private directory of a scratch filesystem, prepared (a
//! server backup, with its chain), its InnoDB pages checked, a private server started on it
//! with CHECK TABLE run on every table, and the directory removed. The report says what passed
//! and the first thing that did not.
//!
//! The server runs as an unprivileged user (`--owner`, else `mysql`), never as root, with only
//! what InnoDB needs of the image's options (`crate::server`), and dies with coffer. The private
//! directories are locked while the drill runs; the next drill removes those a killed one left.
//!
//! Row counts are not compared with counts taken at backup time: InnoDB keeps no row count,
//! so recording exact ones would cost a scan of every table during each backup, and the
//! statistics' estimates differ between a server and its own restored copy.

use super::pitr::{PitrSpec, PitrSummary};
use super::private::{program, Server, ServerUser};
use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::repo::recovery::Until;
use crate::restore::RestoreSpec;
use crate::text::human;
use crate::Env;
use coffer_mysql::client::Client;
use coffer_mysql::engine::PrepareOption;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A drill, as a user asks for it.
#[derive(Debug, Clone, Default)]
pub struct DrillSpec {
    /// An image (a file, an object URL), or a prefix ending in '/': its newest backup.
    pub image: String,
    /// A directory on the filesystem to restore into (a private directory is made in it, and
    /// removed).
    pub scratch: PathBuf,
    /// The secrets that open the backups.
    pub keys: KeySources,
    /// Other images of the chain, where they are not beside the image.
    pub bases: Vec<Location>,
    /// A point-in-time restore instead (`image` is then the backups' prefix).
    pub until: Option<Until>,
    /// The binary log archive's prefix, for `until` [default: the prefix + binlog/].
    pub binlogs: Option<String>,
    /// Options of the prepare and of the drill's server (over the backup's own).
    pub options: Vec<PrepareOption>,
    /// The user the drill's server runs as, and the restored files' owner, when coffer runs as
    /// root (`USER[:GROUP]`, never root) [default: mysql].
    pub owner: Option<String>,
}

/// A table CHECK TABLE did not pass.
#[derive(Debug, Clone, Serialize)]
pub struct TableProblem {
    /// `db`.`table`.
    pub table: String,
    /// What the server said.
    pub message: String,
}

/// What a drill found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillReport {
    /// Every step passed.
    pub passed: bool,
    /// The first step that did not pass, in one line.
    pub failure: Option<String>,
    /// What was drilled: the image's URL or path.
    pub image: String,
    /// The backups restored, full first.
    pub backups: Vec<String>,
    /// "server backup", "directory" (a stopped server's datadir) or "point-in-time".
    pub kind: String,
    /// Bytes the restore writes (the backups' files), and what the scratch filesystem had free.
    pub needed_bytes: u64,
    /// Free bytes of the scratch filesystem before the drill.
    pub free_bytes: u64,
    /// Seconds to restore and prepare (and replay, for a point in time).
    pub restore_seconds: f64,
    /// InnoDB pages checked in the restored datadir.
    pub pages_checked: u64,
    /// Corrupt pages found.
    pub pages_corrupt: u64,
    /// The files that hold them.
    pub corrupt_files: Vec<String>,
    /// The server's version, once it answered.
    pub server_version: Option<String>,
    /// Tables CHECK TABLE passed.
    pub tables_checked: u64,
    /// Tables it did not.
    pub tables_failed: Vec<TableProblem>,
    /// Tables whose engine cannot check itself.
    pub tables_skipped: u64,
    /// Seconds for the server's start, the checks and its shutdown.
    pub check_seconds: f64,
    /// Seconds for the whole drill.
    pub seconds: f64,
    /// For a point in time: what was replayed.
    pub pitr: Option<PitrSummary>,
    /// The options of the backup's `backup-my.cnf` its server did not take (it takes only what
    /// InnoDB needs to open and decrypt the files).
    pub options_left_out: Vec<String>,
}

impl DrillReport {
    /// The verdict's line: `drill of IMAGE (KIND): PASSED` (or FAILED).
    pub fn verdict(&self) -> String {
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let kind = if self.kind.is_empty() { "not restored" } else { &self.kind };
        format!("drill of {} ({kind}): {verdict}", self.image)
    }

    /// The lines under the verdict, indented: the chain, the restore, the replay, the pages
    /// and the tables checked, each table that failed. None if nothing was restored (the
    /// error says why).
    pub fn details(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind.is_empty() {
            return out;
        }
        if self.backups.len() > 1 {
            out.push(format!("  chain:    {}", self.backups.join(" <- ")));
        }
        out.push(format!(
            "  restore:  {} in {:.1} s (scratch had {} free)",
            human(self.needed_bytes),
            self.restore_seconds,
            human(self.free_bytes)
        ));
        if let Some(p) = &self.pitr {
            out.push(format!("  replayed: {} transactions to {}:{}", p.transactions, p.stop.0, p.stop.1));
        }
        out.push(format!("  pages:    {} checked, {} corrupt", self.pages_checked, self.pages_corrupt));
        if let Some(v) = &self.server_version {
            out.push(format!(
                "  tables:   {} passed CHECK TABLE, {} failed, {} not checkable (server {v}, {:.1} s)",
                self.tables_checked,
                self.tables_failed.len(),
                self.tables_skipped,
                self.check_seconds
            ));
        }
        out.extend(self.tables_failed.iter().map(|t| format!("  FAILED    {}: {}", t.table, t.message)));
        out
    }

    /// How the drill ends, with the error that ended it early, if one did: failed (with that
    /// error, or the first step that did not pass), or passed.
    pub fn outcome(&self, error: Option<Error>) -> Result<()> {
        match (error, self.passed) {
            (Some(e), _) => Err(e.context("drill failed")),
            (None, false) => Err(Error::msg(format!("drill failed: {}", self.failure.clone().unwrap_or_default()))),
            (None, true) => Ok(()),
        }
    }

    fn fail(&mut self, why: impl Into<String>) {
        self.passed = false;
        if self.failure.is_none() {
            self.failure = Some(why.into());
        }
    }
}

/// Runs the drill of `spec`. The report is returned in all cases (with the error that ended it
/// early, if one did: its exit code is the caller's).
pub fn drill(spec: &DrillSpec, env: &Env) -> (DrillReport, Option<Error>) {
    let started = Instant::now();
    let mut report = DrillReport { passed: true, image: spec.image.clone(), ..Default::default() };
    let ended = run(spec, &mut report, env);
    report.seconds = started.elapsed().as_secs_f64();
    match ended {
        Ok(()) => (report, None),
        Err(e) => {
            report.fail(e.one_line());
            (report, Some(e))
        }
    }
}

fn run(spec: &DrillSpec, report: &mut DrillReport, env: &Env) -> Result<()> {
    if !spec.scratch.is_dir() {
        return Err(Error::usage(format!("--scratch {}: not a directory", spec.scratch.display())));
    }
    let user = server_user(spec, env)?;
    let image = resolve(spec, env)?;
    let unlocks = crate::keys::unlocks(&spec.keys, env)?;
    report.image = image.shown();
    let info = crate::read::info_with(&image, &unlocks, env)?;
    // The chain is resolved and every link checked before anything is written.
    let plan = match &spec.until {
        None => Some(crate::server::prepare::plan(&image, &spec.bases, &spec.keys, env)?),
        Some(_) => None,
    };
    let chain = match (&spec.until, &plan) {
        (Some(until), _) => {
            let binlogs =
                spec.binlogs.clone().unwrap_or_else(|| crate::repo::recovery::default_binlog_prefix(&spec.image));
            Some(crate::repo::recovery::chain_until(&spec.image, &binlogs, until, &unlocks, env)?)
                .filter(|c| !c.is_empty())
        }
        (None, plan) => plan.as_ref().and_then(|p| p.chain.clone()),
    };
    if let Some(last) = chain.as_ref().and_then(|c| c.last()) {
        report.image = last.location.shown();
    }
    check_space(spec, report, chain.as_deref(), info.bytes, &unlocks, env)?;
    let private = coffer_fs::private::PrivateDir::create(&spec.scratch, PRIVATE)
        .map_err(|e| Error::other(e).context("cannot make the drill's private directory"))?;
    let data = private.path().join("data");
    let restoring = Instant::now();
    let restore = RestoreSpec {
        image: Some(image.clone()),
        to: data.clone(),
        keys: spec.keys.clone(),
        sync: false,
        ..Default::default()
    };
    report.backups = chain.as_ref().map_or_else(|| vec![image.shown()], |c| c.iter().map(|k| k.shown()).collect());
    restore_for_drill(spec, plan.as_ref(), restore, private.path(), user.is_some(), report, env)?;
    report.restore_seconds = restoring.elapsed().as_secs_f64();
    env.report.say(&format!("restored {} into {} in {:.1} s", report.image, data.display(), report.restore_seconds));
    if !data.join("ibdata1").exists() && !data.join("mysql").is_dir() {
        crate::bail!("{} holds no server datadir (no ibdata1, no mysql/): there is no server to start", report.image);
    }
    check_pages(&data, report, env)?;
    // What the server runs comes from the backups: confined, unless their signer was checked
    // where confinement is not possible.
    let signed = unlocks.iter().any(|u| matches!(u, coffer_crypto::Unlock::Signer(_)));
    check_tables(&data, private.path(), user.as_ref(), signed, &spec.options, report, env)?;
    Ok(())
}

/// The scratch directory must hold what the restore writes (the backups' files).
fn check_space(
    spec: &DrillSpec,
    report: &mut DrillReport,
    chain: Option<&[crate::repo::chain::Known]>,
    image_bytes: u64,
    unlocks: &[coffer_crypto::Unlock],
    env: &Env,
) -> Result<()> {
    report.needed_bytes = match chain {
        Some(members) => {
            let mut sum = 0u64;
            for m in members {
                sum = sum.saturating_add(crate::read::info_with(&m.location, unlocks, env)?.bytes);
            }
            sum
        }
        None => image_bytes,
    };
    let room = crate::room::of(&spec.scratch)?;
    report.free_bytes = room.free;
    if report.needed_bytes > report.free_bytes {
        crate::bail!(
            "the scratch directory {} has {} free (its file system is {}); the restore needs {} (the backup's files): {} missing",
            spec.scratch.display(),
            crate::text::human(report.free_bytes),
            room.mount.display(),
            crate::text::human(report.needed_bytes),
            crate::text::human(report.needed_bytes - report.free_bytes)
        );
    }
    Ok(())
}

/// Restores (and prepares, or replays to `--until`) the backup into `private/data`.
fn restore_for_drill(
    spec: &DrillSpec,
    plan: Option<&crate::server::prepare::Plan>,
    restore: RestoreSpec,
    private: &Path,
    has_user: bool,
    report: &mut DrillReport,
    env: &Env,
) -> Result<()> {
    let data = restore.to.clone();
    match (&spec.until, plan) {
        (Some(until), _) => {
            report.kind = "point-in-time".into();
            // The replay server, as the drill's, reaches its datadir through this directory: it
            // may search it, not rename what the restore stages in it (see `crate::server::beside`).
            if has_user {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o711))
                    .with_context(|| format!("cannot open {} to the replay server", private.display()))?;
            }
            let backups = spec.image.clone();
            let pitr = PitrSpec {
                binlogs: spec.binlogs.clone().unwrap_or_else(|| crate::repo::recovery::default_binlog_prefix(&backups)),
                backups,
                until: until.clone(),
                restore: RestoreSpec { image: None, owner: spec.owner.clone(), ..restore },
                options: spec.options.clone(),
                print_replay: false,
                applier: Default::default(),
            };
            let s = crate::server::pitr::restore_until(&pitr, env)?;
            report.backups = s.backups.clone();
            report.pitr = Some(s);
        }
        (None, Some(plan)) if plan.chain.is_some() => {
            report.kind = "server backup".into();
            crate::server::prepare::restore_chain(plan, &restore, &spec.options, env)?;
        }
        (None, Some(plan)) => {
            plan.restore(&restore, env)?;
            if data.join("xtrabackup_checkpoints").exists() {
                report.kind = "server backup".into();
                crate::server::prepare::prepare(&data, &spec.options, None, false, env)?;
            } else {
                report.kind = "directory".into();
            }
        }
        (None, None) => unreachable!("a plan without --until"),
    }
    Ok(())
}

/// The user the drill's server runs as, once it is known to reach the scratch and temporary
/// directories; and what killed drills left there removed: their servers first (their pid
/// files are in the temporary directory), then their datadirs.
fn server_user(spec: &DrillSpec, env: &Env) -> Result<Option<ServerUser>> {
    let user = crate::server::private::server_user(spec.owner.as_deref(), "the drill's server")?;
    crate::server::private::check_reachable(&spec.scratch, user.as_ref(), "the drill's server")?;
    crate::server::private::check_reachable(&std::env::temp_dir(), user.as_ref(), "the drill's server")?;
    crate::server::private::sweep(&std::env::temp_dir(), PRIVATE, "drill", env);
    crate::server::private::sweep(&spec.scratch, PRIVATE, "drill", env);
    Ok(user)
}

/// The image a drill restores: the newest backup under a prefix, or the one named.
fn resolve(spec: &DrillSpec, env: &Env) -> Result<Location> {
    if spec.until.is_some() {
        if !spec.image.ends_with('/') || !matches!(Location::parse(&spec.image), Location::Object(_)) {
            return Err(Error::usage(format!(
                "{}: a point-in-time drill reads the backups under a prefix (s3://B/P/, file:///D/)",
                spec.image
            )));
        }
        let newest = crate::repo::backups(&spec.image, env)?;
        let b = newest.first().ok_or_else(|| Error::msg(format!("no backup under {}", spec.image)))?;
        return Ok(Location::parse(b.listed.object.url()));
    }
    if spec.image.ends_with('/') && matches!(Location::parse(&spec.image), Location::Object(_)) {
        let newest = crate::repo::backups(&spec.image, env)?;
        let b = newest.first().ok_or_else(|| Error::msg(format!("no backup under {}", spec.image)))?;
        env.report.say(&format!("the newest backup under {} is {}", spec.image, b.listed.name));
        return Ok(Location::parse(b.listed.object.url()));
    }
    if Path::new(&spec.image).is_dir() {
        return Err(Error::usage(format!(
            "{} is a directory: name an image in it, or the backups' prefix as file://{}/",
            spec.image,
            std::path::absolute(&spec.image).unwrap_or_default().display().to_string().trim_end_matches('/')
        )));
    }
    match Location::from_path(Path::new(&spec.image)) {
        Location::Stdio => Err(Error::usage("a drill reads a file or an object, not standard input")),
        Location::Tls(_) => Err(Error::usage("a drill reads a file or an object, not a TLS address")),
        l => Ok(l),
    }
}

/// The name of the drill's private directories: `coffer-drill-RANDOM`, in the scratch
/// directory (the datadir) and in the temporary directory (its server's socket and logs).
const PRIVATE: &str = "coffer-drill";

/// Every InnoDB page of the restored datadir.
fn check_pages(data: &Path, report: &mut DrillReport, env: &Env) -> Result<()> {
    let spec = crate::validate::ValidateSpec { paths: vec![data.to_owned()], ..Default::default() };
    let quiet = Env { report: std::sync::Arc::new(crate::Silent), ..env.clone() };
    let v = crate::validate::validate(&spec, &quiet)?;
    for r in &v.reports {
        report.pages_checked += r.tally.pages;
        if !r.tally.corrupt.is_empty() {
            report.pages_corrupt += r.tally.corrupt.len() as u64;
            report.corrupt_files.push(r.path.clone());
        }
    }
    env.report.say(&format!("checked {} InnoDB pages: {} corrupt", report.pages_checked, report.pages_corrupt));
    if report.pages_corrupt > 0 {
        report.fail(format!(
            "{} corrupt InnoDB page{} in {}",
            report.pages_corrupt,
            if report.pages_corrupt == 1 { "" } else { "s" },
            report.corrupt_files.join(", ")
        ));
    }
    Ok(())
}

/// A private server on the datadir, CHECK TABLE on every table, a clean shutdown.
fn check_tables(
    data: &Path,
    private: &Path,
    user: Option<&ServerUser>,
    signed: bool,
    options: &[PrepareOption],
    report: &mut DrillReport,
    env: &Env,
) -> Result<()> {
    let started = Instant::now();
    let binary = program(&["mariadbd", "mysqld"], "mariadb-server")?;
    let taken = coffer_mysql::engine::server_options(data, options).map_err(Error::other)?;
    if !taken.left_out.is_empty() {
        env.report.warn(&format!(
            "the drill's server takes only what InnoDB needs of the backup's backup-my.cnf; left out: {}",
            taken.left_out.join(", ")
        ));
        report.options_left_out = taken.left_out;
    }
    crate::server::private::check_confined(data)?;
    let run = crate::server::private::rundir(PRIVATE)?;
    // The server's user owns the datadir (restored and prepared as coffer's) and reaches it
    // through the private directory.
    crate::server::private::give_tree(data, user)?;
    for dir in [private, run.path()] {
        crate::server::private::give(dir, user)?;
    }
    let options_file = crate::server::private::write_options(run.path(), "drill", &taken.text)?;
    crate::server::private::give(&options_file, user)?;
    crate::server::private::check_reachable(data, user, "the drill's server")?;
    let args = crate::server::private::private_args(&options_file, data, run.path(), "drill");
    let confined = crate::server::private::confinement(&[data, run.path()], signed, "the drill's server", env)?;
    let mut server = Server::start(&binary, &args, run.path(), "drill", "the drill's server", user, confined)?;
    let mut control = server.connect(Duration::from_secs(600))?;
    env.report.say(&format!("the drill's server (pid {}) started on {}", server.id(), data.display()));
    let checked = check_every_table(&server, &mut control, report, env);
    let stopped = server.shutdown(control);
    report.check_seconds = started.elapsed().as_secs_f64();
    checked?;
    stopped
}

/// CHECK TABLE on every table, a session per thread (the server checks a table on one core).
fn check_every_table(server: &Server, control: &mut Client, report: &mut DrillReport, env: &Env) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let sql = |c: &mut Client, q: &str| c.query(q).map_err(|e| Error::other(e).context(format!("drill: {q}")));
    report.server_version = sql(control, "SELECT VERSION()")?.first().and_then(|r| r.first()).cloned().flatten();
    let rows = sql(
        control,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
         AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'sys') ORDER BY 1, 2",
    )?;
    let names: Vec<String> = rows
        .iter()
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(Some(db)), Some(Some(table))) => Some(format!("{}.{}", quote(db), quote(table))),
            _ => None,
        })
        .collect();
    let outcomes: Vec<Mutex<Option<Verdict>>> = names.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let dead = AtomicBool::new(false);
    let sessions = env.threads.clamp(1, 8).min(names.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..sessions {
            scope.spawn(|| {
                let Ok(mut session) = server.session() else {
                    dead.store(true, Ordering::Relaxed);
                    return;
                };
                while !dead.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    let outcome = match session.query(&format!("CHECK TABLE {name}")) {
                        Ok(rows) => verdict(&rows),
                        Err(e) => {
                            // A server that died with the table cannot check the others.
                            if session.query("SELECT 1").is_err() {
                                dead.store(true, Ordering::Relaxed);
                            }
                            Verdict::Failed(e.to_string())
                        }
                    };
                    *outcomes[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                }
            });
        }
    });
    for (name, outcome) in names.iter().zip(outcomes) {
        match outcome.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Verdict::Ok) => report.tables_checked += 1,
            Some(Verdict::Skipped) => report.tables_skipped += 1,
            Some(Verdict::Failed(message)) => {
                report.fail(format!("CHECK TABLE {name}: {message}"));
                report.tables_failed.push(TableProblem { table: name.clone(), message });
            }
            None => crate::bail!("the drill's server stopped answering before CHECK TABLE {name}"),
        }
    }
    env.report.say(&format!(
        "CHECK TABLE: {} passed, {} failed, {} not checkable ({sessions} sessions)",
        report.tables_checked,
        report.tables_failed.len(),
        report.tables_skipped
    ));
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Skipped,
    Failed(String),
}

/// CHECK TABLE's rows (Table, Op, Msg_type, Msg_text) as one verdict: an error, or a last
/// status other than OK, fails; an engine that cannot check is skipped.
fn verdict(rows: &[Vec<Option<String>>]) -> Verdict {
    let field = |r: &Vec<Option<String>>, i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let errors: Vec<String> = rows.iter().filter(|r| field(r, 2) == "error").map(|r| field(r, 3)).collect();
    if !errors.is_empty() {
        return Verdict::Failed(errors.join("; "));
    }
    match rows.last() {
        Some(r) if field(r, 2) == "status" && field(r, 3) == "OK" => Verdict::Ok,
        Some(r) if field(r, 2) == "note" && field(r, 3).contains("doesn't support check") => Verdict::Skipped,
        Some(r) => Verdict::Failed(format!("{}: {}", field(r, 2), field(r, 3))),
        None => Verdict::Failed("no answer".into()),
    }
}

/// An identifier the server gave, quoted for SQL.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, text: &str) -> Vec<Option<String>> {
        vec![Some("db.t".into()), Some("check".into()), Some(t.into()), Some(text.into())]
    }

    #[test]
    fn check_table_answers_become_verdicts() {
        assert_eq!(verdict(&[row("status", "OK")]), Verdict::Ok);
        assert_eq!(verdict(&[row("warning", "x"), row("status", "OK")]), Verdict::Ok);
        assert_eq!(verdict(&[row("note", "The storage engine for the table doesn't support check")]), Verdict::Skipped);
        assert_eq!(
            verdict(&[row("error", "Corrupt"), row("status", "Operation failed")]),
            Verdict::Failed("Corrupt".into())
        );
        assert_eq!(
            verdict(&[row("status", "Table is marked as crashed")]),
            Verdict::Failed("status: Table is marked as crashed".into())
        );
        assert_eq!(verdict(&[]), Verdict::Failed("no answer".into()));
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote("a`b"), "`a``b`");
    }
}
