//! Seeding a replica in one command: the newest backup (with its chain) under a prefix, an
//! image, or a live `coffer send`, restored and prepared beside the target; caught up from the
//! binary log archive where the primary no longer has the backup's position; the replication
//! connection to the primary set (TLS verified, unless plaintext is asked for by name); then the
//! datadir takes the target's place, and the user's own service starts it.
//!
//! Everything that can refuse is checked before anything is written: the primary (reached,
//! authenticated, over TLS as the replica will reach it, and holding the backup's position or
//! the archive's end), the backups, the archive. A failure later leaves the target as it was.

mod configure;
mod host;
pub(crate) mod primary;
mod wait;

pub use primary::{catalog_primary, PrimarySpec, PrimaryTls};
pub use wait::{StartSpec, Waited};

use super::applier::Replay;
use super::beside::Beside;
use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::net::TlsOptions;
use crate::repo::recovery::stop::Gathered;
use crate::repo::recovery::{gtid_text, parse_gtids};
use crate::restore::RestoreSpec;
use crate::transfer::ReceiveSpec;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::engine::PrepareOption;
use coffer_mysql::meta::BackupInfo;
use primary::{Held, Position, Primary};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// When the archive is replayed before the primary takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveUse {
    /// Only when the primary no longer has the backup's position.
    #[default]
    Auto,
    /// Always, to the archive's end (a slow link to the primary).
    Always,
    /// Never: refused if the primary no longer has the position.
    Never,
}

impl ArchiveUse {
    /// Every choice, in the order a command line lists them.
    pub const ALL: [ArchiveUse; 3] = [Self::Auto, Self::Always, Self::Never];

    /// Its name on a command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

/// A seed, as a user asks for it.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    /// A prefix (its newest backup, with its chain) or an image; unused with `live`.
    pub source: String,
    /// Receive the backup from a live `coffer send` instead.
    pub live: Option<crate::transfer::ReceiveSpec>,
    /// Other images of the chain, where they are not beside the image.
    pub bases: Vec<Location>,
    /// The target, secrets, owner, --force, durability.
    pub restore: RestoreSpec,
    /// The engine's prepare options (also the private server's).
    pub options: Vec<PrepareOption>,
    /// The primary and how to reach it.
    pub primary: PrimarySpec,
    /// The binary log archive (default: `PREFIX/binlog/` when the source is a prefix).
    pub binlogs: Option<String>,
    /// When the archive is replayed.
    pub archive: ArchiveUse,
    /// Start the replica and wait for it to catch up.
    pub start: Option<StartSpec>,
    /// The option file the replica's own service reads, checked first (its server id).
    pub replica_config: Option<PathBuf>,
}

impl SeedSpec {
    /// The receiver of a live seed on `listen`, with this end's TLS (None: no certificate and
    /// key given), the sender authenticated by a CA or a pinned fingerprint. The seed gives it
    /// its target, secrets and owner.
    pub fn receiver(listen: Option<&str>, tls: Option<TlsOptions>) -> Result<Option<ReceiveSpec>> {
        let Some(listen) = listen else { return Ok(None) };
        let tls = tls.ok_or_else(|| Error::usage("--listen needs --cert and --key"))?;
        if tls.ca.is_none() && tls.peer_fingerprints.is_empty() {
            return Err(Error::usage("--listen needs --ca or --peer-fingerprint: the sender is authenticated"));
        }
        Ok(Some(ReceiveSpec {
            listen: listen.to_owned(),
            // The receiver takes as many connections as the sender opens.
            tls: TlsOptions { streams: 1, resume: false, limit_rate: None, ..tls },
            to: None,
            output: None,
            keys: crate::keys::KeySources::default(),
            owner: None,
            keep_setuid: false,
            force: true,
            checkpoint: 256 << 20,
        }))
    }
}

/// The part of a seed that came from the archive.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatchUp {
    /// The archive's prefix.
    pub prefix: String,
    /// Where replay started: the backup's position.
    pub from: (String, u32),
    /// Where it stopped: the archive's end (between transactions).
    pub to: (String, u32),
    /// Events replayed.
    pub events: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// Seconds of replay (server start, replay, shutdown).
    pub seconds: f64,
}

/// What a seed did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SeedSummary {
    /// The datadir seeded.
    pub to: PathBuf,
    /// The backups restored, full first.
    pub backups: Vec<String>,
    /// The backup's binary log position.
    pub backup_position: Option<(String, u64)>,
    /// The backup's GTID position.
    pub backup_gtid: Option<String>,
    /// The archive's part, if it was replayed.
    pub archive: Option<CatchUp>,
    /// The primary, `HOST:PORT`.
    pub primary: String,
    /// Its server id.
    pub primary_server_id: u32,
    /// Its `gtid_binlog_pos` when the seed began.
    pub primary_gtid: String,
    /// How the replica reaches it: `verified (CA FILE, host HOST)` or `plaintext`.
    pub tls: String,
    /// Where replication starts: `GTID 0-1-5` or `FILE:POS`.
    pub replication_from: String,
    /// Seconds to restore and prepare.
    pub restore_seconds: f64,
    /// The command that starts the replica (run with --start-with).
    pub start_command: Option<String>,
    /// The wait for it to catch up, with --start-with.
    pub wait: Option<Waited>,
}

impl SeedSummary {
    /// What `--json` prints: the summary, with `"ok": true`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["ok"] = true.into();
        v
    }

    /// What `--json` prints for a seed that failed: its one line and exit code.
    pub fn failed_json(e: &Error) -> serde_json::Value {
        serde_json::json!({"ok": false, "error": e.one_line(), "exit_code": e.exit_code()})
    }

    /// What a seed says: its line, then how to start the replica unless the seed started it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.line()];
        if self.start_command.is_none() {
            let primary = &self.primary;
            lines.push(format!(
                "start it with the server's own service (e.g. systemctl start mariadb); it replicates from {primary}"
            ));
        }
        lines
    }

    /// The one line: which part came from where.
    pub fn line(&self) -> String {
        let backup = self.backups.last().map(String::as_str).unwrap_or("the backup received");
        let chain = if self.backups.len() > 1 { format!("chain of {}, ", self.backups.len()) } else { String::new() };
        let at = match (&self.backup_gtid, &self.backup_position) {
            (Some(g), _) if !g.is_empty() => format!("GTID {g}"),
            (_, Some((f, p))) => format!("{f}:{p}"),
            _ => "no position".into(),
        };
        let archive = self.archive.as_ref().map_or(String::new(), |a| {
            format!(
                " + archive {} ({}:{}..{}:{}, {} transactions)",
                a.prefix, a.from.0, a.from.1, a.to.0, a.to.1, a.transactions
            )
        });
        let waited = self.wait.as_ref().map_or(String::new(), |w| {
            format!("; started and caught up with the primary in {:.1} s, at {}", w.seconds, w.gtid_slave_pos)
        });
        format!(
            "seeded {}: backup {backup} ({chain}{at}){archive} + primary {} from {} over {}{waited}",
            self.to.display(),
            self.primary,
            self.replication_from,
            self.tls
        )
    }
}

/// Seeds the replica `spec` asks for.
pub fn seed(spec: &SeedSpec, env: &Env) -> Result<SeedSummary> {
    let to = &spec.restore.to;
    if !spec.restore.force && std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        crate::bail!("{} is not empty: refusing to seed a replica into it (use --force)", to.display());
    }
    super::applier::host(spec.restore.owner.as_deref(), env)?;
    let mut primary = Primary::connect(&spec.primary)?;
    configure::check_lengths(&spec.primary, primary.password())?;
    let about = primary.about()?;
    env.report.say(&format!(
        "the primary {}:{} answers: {}, server id {}",
        spec.primary.host,
        spec.primary.port,
        crate::text::escape(about.version.as_bytes()),
        about.server_id
    ));
    if let Some(file) = &spec.replica_config {
        host::check(file, about.server_id, env)?;
    }
    warn_unreadable_tls(spec, env)?;
    let mut summary = SeedSummary {
        to: to.clone(),
        primary: format!("{}:{}", spec.primary.host, spec.primary.port),
        primary_server_id: about.server_id,
        primary_gtid: about.gtid_binlog_pos.clone(),
        tls: match &spec.primary.tls {
            Some(t) => format!("TLS (verified: CA {}, host {})", t.ca.display(), spec.primary.host),
            None => "plaintext (--ssl-mode DISABLED)".into(),
        },
        start_command: spec.start.as_ref().map(|s| s.command.clone()),
        ..Default::default()
    };
    match &spec.live {
        Some(live) => seed_live(spec, live, &primary, &mut summary, env)?,
        None => seed_stored(spec, &primary, &mut summary, env)?,
    }
    if let Some(start) = &spec.start {
        let target = Primary::connect(&spec.primary)?.about()?.gtid_binlog_pos;
        summary.wait = Some(wait::start_and_wait(start, to, (&target, summary.primary_server_id), env)?);
    }
    Ok(summary)
}

/// The backup's position, as replication starts from it (MariaDB: its GTID position where it
/// has one, else its file and position).
fn position_of(info: &BackupInfo, shown: &str) -> Result<((String, u32), Position)> {
    if info.flavor.as_deref() == Some("MySQL") || info.engine.as_deref() == Some("xtrabackup") {
        crate::bail!("{shown} is a backup of MySQL: coffer seeds MariaDB replicas only, for now");
    }
    let Some(b) = &info.binlog else {
        crate::bail!("{shown} has no binary log position (the server had log_bin off): a replica cannot start from it");
    };
    if !coffer_mysql::meta::is_binlog_file_name(&b.file) {
        crate::bail!(
            "{shown}: its binary log file name {:?} is not one a server writes",
            crate::text::escape(b.file.as_bytes())
        );
    }
    let pos = u32::try_from(b.position).map_err(|_| Error::msg(format!("{shown}: binlog position out of range")))?;
    let start = (b.file.clone(), pos);
    Ok(match b.gtid.as_deref().filter(|g| !g.is_empty()) {
        Some(g) if coffer_mysql::meta::is_mariadb_gtid_list(g) => (start, Position::Gtid(g.to_owned())),
        Some(g) => crate::bail!("{shown}: its GTID position {:?} is not MariaDB's", crate::text::escape(g.as_bytes())),
        None => (start.clone(), Position::File(start.0, start.1)),
    })
}

/// The archive, gathered into a private directory beside the target, when the primary no longer
/// has the backup's position (or it is asked for); `None` when the primary serves it all.
#[allow(clippy::too_many_arguments)]
fn catch_up_from(
    spec: &SeedSpec,
    source_prefix: Option<&str>,
    (info, shown_backup): (&BackupInfo, &str),
    start: &(String, u32),
    from: &Position,
    primary: &Primary,
    unlocks: &[Unlock],
    env: &Env,
) -> Result<Option<(String, Beside, Gathered)>> {
    let held = primary.holds(from)?;
    let why = match (&held, spec.archive) {
        (Held::Yes, ArchiveUse::Auto | ArchiveUse::Never) => return Ok(None),
        (Held::Purged(why), ArchiveUse::Never) => crate::bail!(
            "the primary {}:{} no longer has the backup's position {} ({why}), and --archive never was given",
            spec.primary.host,
            spec.primary.port,
            shown(from)
        ),
        (Held::Purged(why), _) => why.clone(),
        (Held::Yes, ArchiveUse::Always) => String::new(),
        (Held::Diverged(why), _) => crate::bail!(
            "the primary {}:{} never had the backup's position {} ({why}): the backup is of another server, or of a history that went another way",
            spec.primary.host,
            spec.primary.port,
            shown(from)
        ),
    };
    let prefix = spec.binlogs.clone().or_else(|| source_prefix.map(crate::repo::recovery::default_binlog_prefix));
    let Some(prefix) = prefix else {
        crate::bail!(
            "the primary {}:{} no longer has the backup's position {} ({why}): give the archive (--binlogs PREFIX)",
            spec.primary.host,
            spec.primary.port,
            shown(from)
        );
    };
    let archive = crate::repo::archive::Archive::new(crate::repo::archive::segments(&prefix, env)?, unlocks, env)?;
    if archive.segments.is_empty() {
        crate::bail!(
            "neither the primary ({why}) nor the archive {prefix} (empty) holds the backup's position {}",
            shown(from)
        );
    }
    super::applier::same_server(&prefix, &archive, info, shown_backup, start)?;
    let logs = Beside::create(&spec.restore.to, "binlog", env.report.as_ref())?;
    let gathered = crate::repo::recovery::stop::gather_run(&archive, start, &logs.path)
        .map_err(|e| e.context(format!("the archive {prefix} cannot catch the replica up")))?;
    Ok(Some((prefix, logs, gathered)))
}

/// The TLS files CHANGE MASTER names are read by the replica's server at each connection: say
/// so now if its user (`--owner`) cannot read one, or if one lies under the temporary directory.
fn warn_unreadable_tls(spec: &SeedSpec, env: &Env) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(tls) = &spec.primary.tls else { return Ok(()) };
    let user = crate::server::private::server_user(spec.restore.owner.as_deref(), "the replica's server")?;
    for file in [Some(&tls.ca), tls.cert.as_ref(), tls.key.as_ref()].into_iter().flatten() {
        let reachable = file
            .parent()
            .map_or(Ok(()), |d| crate::server::private::check_reachable(d, user.as_ref(), "the replica's server"));
        let readable = std::fs::metadata(file).is_ok_and(|m| match &user {
            Some(u) if m.uid() == u.uid => m.mode() & 0o400 != 0,
            Some(u) if m.gid() == u.gid => m.mode() & 0o040 != 0,
            Some(_) => m.mode() & 0o004 != 0,
            None => true,
        });
        if reachable.is_err() || !readable {
            env.report.warn(&format!(
                "{} cannot be read by the replica's server user: it will fail to connect (ERROR 2026) until it can",
                file.display()
            ));
        } else if std::path::absolute(file).is_ok_and(|f| f.starts_with(std::env::temp_dir())) {
            env.report.warn(&format!(
                "{} is in the temporary directory: the replica reads it at every connection",
                file.display()
            ));
        }
    }
    Ok(())
}

/// A primary streams a GTID position with a domain it never had from its oldest log, as if
/// nothing were missing: a backup whose GTID names a domain the primary's position lacks is of
/// another server.
fn same_domains(from: &Position, primary_gtid: &str, shown_backup: &str) -> Result<()> {
    let Position::Gtid(g) = from else { return Ok(()) };
    let theirs = parse_gtids(primary_gtid).unwrap_or_default();
    let foreign: Vec<u32> =
        parse_gtids(g).unwrap_or_default().keys().copied().filter(|d| !theirs.contains_key(d)).collect();
    if !foreign.is_empty() {
        crate::bail!(
            "{shown_backup} is at GTID {g}, whose domain {} the primary (at {primary_gtid}) never wrote: a backup of another server",
            foreign.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

fn shown(p: &Position) -> String {
    match p {
        Position::Gtid(g) => format!("GTID {g}"),
        Position::File(f, n) => format!("{f}:{n}"),
    }
}

/// From a prefix or an image: the chain planned and every link checked, the primary and the
/// archive probed, all before anything is written; then restored and prepared beside the target.
fn seed_stored(spec: &SeedSpec, primary: &Primary, summary: &mut SeedSummary, env: &Env) -> Result<()> {
    let image = crate::server::prepare::newest_or_image(
        &spec.source,
        "a replica is seeded from a prefix, an image, or --listen (a live send)",
        env,
    )?;
    let plan = crate::server::prepare::plan(&image, &spec.bases, &spec.restore.keys, env)?;
    let chain = plan.members(&image, env)?;
    let backup = chain.last().expect("a chain ends at its backup");
    let (start, from) = position_of(&backup.info, &backup.shown())?;
    same_domains(&from, &summary.primary_gtid, &backup.shown())?;
    let prefix = spec.source.ends_with('/').then_some(spec.source.as_str());
    let catch_up =
        catch_up_from(spec, prefix, (&backup.info, &backup.shown()), &start, &from, primary, plan.unlocks(), env)?;
    // A prune keeps the log this seed reads from the backup's file on.
    let read: Vec<&Location> = chain.iter().map(|k| &k.location).collect();
    let _lease = match &catch_up {
        Some(_) => crate::repo::lease::for_reading(&read, Some(&start.0), "replica seed", env)?,
        None => None,
    };
    summary.backups = chain.iter().map(crate::repo::chain::Known::shown).collect();
    env.report.say(&format!("restoring {} ({}) beside {}", backup.shown(), backup.what(), spec.restore.to.display()));
    let t = Instant::now();
    let (staging, _) = crate::server::prepare::stage_chain(&chain, plan.unlocks(), &spec.restore, &spec.options, env)?;
    summary.restore_seconds = t.elapsed().as_secs_f64();
    let signed = plan.unlocks().iter().any(|u| matches!(u, Unlock::Signer(_)));
    configure_datadir(spec, &staging.path, &backup.info, catch_up, primary, signed, summary, env)?;
    staging.replace(spec.restore.force, spec.restore.sync)
}

/// From a live `coffer send`: received beside the target, prepared, probed and configured
/// before the sender hears the outcome; then it takes the target's place.
fn seed_live(
    spec: &SeedSpec,
    live: &crate::transfer::ReceiveSpec,
    primary: &Primary,
    summary: &mut SeedSummary,
    env: &Env,
) -> Result<()> {
    let staging = Beside::create(&spec.restore.to, "seed", env.report.as_ref())?;
    let receive = crate::transfer::ReceiveSpec {
        to: Some(staging.path.clone()),
        output: None,
        force: true,
        keys: spec.restore.keys.clone(),
        owner: spec.restore.owner.clone(),
        ..live.clone()
    };
    let unlocks = crate::keys::unlocks(&spec.restore.keys, env)?;
    let done = std::cell::RefCell::new(summary.clone());
    let then = |dir: &Path| -> Result<()> {
        let t = Instant::now();
        crate::server::prepare::prepare_restored(dir, &spec.options, None, true, spec.restore.sync, env)?;
        let info = crate::server::prepare::read_description(dir)
            .ok_or_else(|| Error::msg("the backup received has no description of its server"))?;
        let (start, from) = position_of(&info, "the backup received")?;
        same_domains(&from, &done.borrow().primary_gtid, "the backup received")?;
        let catch_up =
            catch_up_from(spec, None, (&info, "the backup received"), &start, &from, primary, &unlocks, env)?;
        let mut s = done.borrow_mut();
        s.restore_seconds = t.elapsed().as_secs_f64();
        configure_datadir(spec, dir, &info, catch_up, primary, false, &mut s, env)
    };
    let received = crate::transfer::receive_then(&receive, Some(&then), env)?;
    *summary = done.into_inner();
    summary.backups = vec![format!("from {}", received.peer)];
    staging.replace(spec.restore.force, spec.restore.sync)
}

/// The prepared datadir `dir` made a replica: on a private server (no network), the archive's
/// part replayed where there is one, the GTID position set, the replication connection
/// configured; the private server's relay logs removed (the replica's own server would fail to
/// open them and run without replicating, silently), master.info made the owner's alone.
#[allow(clippy::too_many_arguments)]
fn configure_datadir(
    spec: &SeedSpec,
    dir: &Path,
    info: &BackupInfo,
    catch_up: Option<(String, Beside, Gathered)>,
    primary: &Primary,
    signed: bool,
    summary: &mut SeedSummary,
    env: &Env,
) -> Result<()> {
    let (start, from) = position_of(info, "the backup")?;
    summary.backup_position = info.binlog.as_ref().map(|b| (b.file.clone(), b.position));
    summary.backup_gtid = info.binlog.as_ref().and_then(|b| b.gtid.clone());
    let mut state = match &from {
        Position::Gtid(g) => parse_gtids(g).unwrap_or_default(),
        Position::File(..) => Default::default(),
    };
    let (logs, files, stop) = match &catch_up {
        Some((_, logs, g)) => {
            state.extend(g.walk.applied.iter().map(|(d, v)| (*d, *v)));
            (logs.path.clone(), g.files.clone(), g.stop.clone())
        }
        None => (dir.to_owned(), Vec::new(), start.clone()),
    };
    let gtid_state = gtid_text(&state);
    let from = match from {
        Position::Gtid(_) => Position::Gtid(gtid_state.clone()),
        Position::File(..) => Position::File(stop.0.clone(), stop.1),
    };
    let mut replay =
        Replay::new(dir, &logs, &files, (&start, &stop), &gtid_state, &spec.options, spec.restore.owner.as_deref())?;
    replay.signed = signed;
    if let Some((_, _, g)) = &catch_up {
        replay.expect_applied = Some(g.walk.applied.clone());
        replay.server_id = (1..).map(|n: u32| u32::MAX - n).find(|id| !g.ids.contains(id)).unwrap_or(2);
    }
    let t = Instant::now();
    replay.run(env, &mut |c| configure::configure(c, &spec.primary, primary.password(), &from))?;
    if let Some((prefix, _, g)) = &catch_up {
        summary.archive = Some(CatchUp {
            prefix: prefix.clone(),
            from: start.clone(),
            to: g.stop.clone(),
            events: g.walk.events,
            transactions: g.walk.transactions,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    // The primary may have purged the position while this seed ran (a restore takes hours).
    match primary.holds(&from)? {
        Held::Yes => {}
        Held::Purged(why) => {
            crate::bail!("the primary purged {} while the replica was seeded ({why}): run the seed again", shown(&from))
        }
        Held::Diverged(why) => crate::bail!(
            "the primary never had {}, where the replica would start ({why}): the archive is of another server",
            shown(&from)
        ),
    }
    summary.replication_from = shown(&from);
    tidy(dir)?;
    write_summary(dir, summary)
}

/// Removes the private server's relay log files and its `relay-log.info`, and makes master.info
/// (which holds the replication password, as the server keeps it) readable by its owner only.
fn tidy(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name == "relay-log.info" || name.starts_with(&format!("{}.", super::applier::RELAY)) {
            let path = dir.join(&*name);
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let info = dir.join("master.info");
    if info.exists() {
        std::fs::set_permissions(&info, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", info.display()))?;
    }
    Ok(())
}

/// `coffer-seed.json` in the datadir: what the seed did (never the password).
fn write_summary(dir: &Path, s: &SeedSummary) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("coffer-seed.json");
    std::fs::write(&path, serde_json::to_vec_pretty(s)?).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: Option<&str>, pins: &[&str]) -> TlsOptions {
        let pins = pins.iter().map(|p| (*p).to_owned()).collect();
        TlsOptions::new("r.crt".into(), "r.key".into(), ca.map(PathBuf::from), pins, 120).sending(
            Some(8),
            true,
            Some(5),
        )
    }

    #[test]
    fn a_live_seed_receives_with_an_authenticated_sender_only() {
        assert!(SeedSpec::receiver(None, Some(tls(None, &[]))).unwrap().is_none());
        let refused = |t| SeedSpec::receiver(Some(":4444"), t).unwrap_err();
        let none = refused(None);
        assert_eq!((none.to_string().as_str(), none.exit_code()), ("--listen needs --cert and --key", 2));
        let open = refused(Some(tls(None, &[])));
        let said = "--listen needs --ca or --peer-fingerprint: the sender is authenticated";
        assert_eq!((open.to_string().as_str(), open.exit_code()), (said, 2));
        for t in [tls(Some("ca.crt"), &[]), tls(None, &["sha256:00"])] {
            let r = SeedSpec::receiver(Some(":4444"), Some(t)).unwrap().unwrap();
            assert_eq!((r.listen.as_str(), r.tls.streams, r.tls.resume, r.tls.limit_rate), (":4444", 1, false, None));
            assert_eq!((r.force, r.keep_setuid, r.checkpoint, r.tls.stall_timeout), (true, false, 256 << 20, 120));
        }
    }

    #[test]
    fn a_seed_not_started_says_how_to_start_it() {
        let s = SeedSummary { primary: "db1:3306".into(), ..Default::default() };
        let lines = s.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], s.line());
        let hint = "start it with the server's own service (e.g. systemctl start mariadb); it replicates from db1:3306";
        assert_eq!(lines[1], hint);
        let started = SeedSummary { start_command: Some("systemctl start mariadb".into()), ..s };
        assert_eq!(started.lines(), vec![started.line()]);
    }
}
