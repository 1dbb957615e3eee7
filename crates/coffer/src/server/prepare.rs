//! The prepare step of a restored server backup (the engine's `--prepare`, InnoDB's crash
//! recovery on the copied files), and restores of a chain: the full and each incremental
//! restored into a private directory beside the target, one engine step per link, then the
//! result moved into place.

use super::beside::{Beside, Place};
use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::read::{ChainMember, ChainVerified, Verified};
use crate::repo::chain::Known;
use crate::restore::{restore_unlocked, RestoreSpec, RestoreSummary};
use crate::Env;
use coffer_image::ReadSummary;
use coffer_mysql::engine::{EngineKind, PrepareOption, PrepareStep};
use coffer_mysql::meta::{BackupInfo, BackupKind, META_ENTRY};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a prepare did.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// The engine that prepared.
    pub engine: &'static str,
    /// How long the prepare took (not the copy-back).
    pub seconds: f64,
}

/// The prepare step of a restored server backup (mariabackup/xtrabackup --prepare), and with
/// `copy_back_to` the move of the prepared files into a datadir (empty, unless `force`).
pub fn prepare(
    dir: &Path,
    options: &[PrepareOption],
    copy_back_to: Option<&Path>,
    force: bool,
    env: &Env,
) -> Result<Prepared> {
    let (engine, prepared) = run_prepare(dir, options, env)
        .map_err(|e| e.context("prepare failed; the restored files are left as they are"))?;
    if let Some(datadir) = copy_back_to {
        move_back(engine, dir, datadir, force, true, env)?;
    }
    Ok(prepared)
}

/// Runs the engine's prepare on the restored server backup in `dir` (a full: an incremental
/// alone is refused, saying why).
fn run_prepare(dir: &Path, options: &[PrepareOption], env: &Env) -> Result<(EngineKind, Prepared)> {
    // Restored from the image: read at most what a writer may store.
    let info = read_description(dir);
    if let Some(link) = info.as_ref().and_then(|i| i.chain.as_ref()).filter(|l| l.kind != BackupKind::Full) {
        crate::bail!(
            "{} holds an {} backup (depth {} of full {}): its pages apply only on top of its chain; restore it \
             from its file or object with --prepare, which resolves and applies the whole chain",
            dir.display(),
            link.kind.name(),
            link.depth,
            link.full
        );
    }
    let engine = match info.as_ref().and_then(|i| i.engine.as_deref()) {
        Some("xtrabackup") => EngineKind::Xtrabackup,
        Some(_) => EngineKind::Mariabackup,
        None if dir.join("xtrabackup_checkpoints").exists() => EngineKind::Mariabackup,
        None => crate::bail!(
            "{} is not a backup of a server (no xtrabackup_checkpoints): nothing to prepare",
            dir.display()
        ),
    };
    let show = |line: &str| env.report.engine_line(engine.name(), line);
    sweep_engine_scratch(env);
    let started = Instant::now();
    coffer_mysql::engine::prepare(engine, dir, options, &show)?;
    let prepared = Prepared { engine: engine.name(), seconds: started.elapsed().as_secs_f64() };
    env.report.say(&format!("prepared {} with {} in {:.1} s", dir.display(), prepared.engine, prepared.seconds));
    Ok((engine, prepared))
}

/// Restores the full backup `spec.image` alone into `spec.to` and prepares it there (see
/// [`prepare_restored`]), then moves the result into `copy_back_to`, if given.
fn restore_prepared_one(
    plan: &Plan,
    spec: &RestoreSpec,
    options: &[PrepareOption],
    copy_back_to: Option<&Path>,
    env: &Env,
) -> Result<(RestoreSummary, Prepared)> {
    let s = plan.restore_keeping_marker(spec, true, env)?;
    env.report.say(&s.line());
    let prepared = prepare_restored(&spec.to, options, copy_back_to, spec.force, spec.sync, env)?;
    Ok((s, prepared))
}

/// Prepares the server backup a restore (or a receive) left in `to` with its marker, naming
/// the image, and completes it. The marker stays until the prepare has succeeded and what it
/// wrote is flushed (mariadb-backup does not flush all of its writes), and with `copy_back_to`
/// until the files moved there are flushed too: a prepare or a copy-back that fails (or a
/// coffer killed, a power cut) leaves a tree marked incomplete, never an unprepared datadir
/// that looks finished, and the same command run again restores it over and prepares it
/// again. With `sync`, the marker's removal is made durable, last.
pub(crate) fn prepare_restored(
    to: &Path,
    options: &[PrepareOption],
    copy_back_to: Option<&Path>,
    force: bool,
    sync: bool,
    env: &Env,
) -> Result<Prepared> {
    let (engine, prepared) = run_prepare(to, options, env).map_err(|e| {
        e.context(format!(
            "the prepare of {} failed; it keeps its restore marker ({}): the same command restores and prepares it again",
            to.display(),
            coffer_fs::restore::MARKER
        ))
    })?;
    let complete = || format!("cannot complete the prepared restore into {}", to.display());
    if sync {
        let dir = std::fs::File::open(to).with_context(complete)?;
        coffer_fs::restore::flush_tree(std::os::fd::AsFd::as_fd(&dir), to).with_context(complete)?;
    }
    if let Some(datadir) = copy_back_to {
        move_back(engine, to, datadir, force, sync, env)?;
    }
    coffer_fs::restore::remove_marker(to, sync).with_context(complete)?;
    Ok(prepared)
}

/// Removes the engine's scratch directories (in the temporary directory) that a killed coffer
/// left: the option file of a prepare holds the key file's password, if the backup's has one.
fn sweep_engine_scratch(env: &Env) {
    for dir in coffer_mysql::engine::sweep_scratch(None) {
        env.report.warn(&format!("removed {}, which an interrupted run of the engine left", dir.display()));
    }
}

/// Moves a prepared backup in `dir` into a datadir (empty, unless `force`), and with `sync`
/// flushes what the engine moved there. A move that fails half-way leaves the datadir marked
/// incomplete (a marker naming no image): half a datadir never looks like a whole one.
fn move_back(engine: EngineKind, dir: &Path, datadir: &Path, force: bool, sync: bool, env: &Env) -> Result<()> {
    if std::fs::read_dir(datadir).is_ok_and(|mut d| d.next().is_some()) && !force {
        crate::bail!("{} is not empty: refusing to copy back into it (the engine copies back only into an empty directory: empty it first)", datadir.display());
    }
    let show = |line: &str| env.report.engine_line(engine.name(), line);
    if let Err(e) = coffer_mysql::engine::move_back(engine, dir, datadir, &show) {
        let marked = match coffer_fs::restore::mark_incomplete(datadir) {
            Ok(()) => format!("{} is marked incomplete ({})", datadir.display(), coffer_fs::restore::MARKER),
            Err(m) => format!("{} could not be marked incomplete: {m}", datadir.display()),
        };
        return Err(Error::from(e).context(format!("copy-back failed; {marked}")));
    }
    let complete = || format!("cannot complete the copy-back into {}", datadir.display());
    if sync {
        let fd = std::fs::File::open(datadir).with_context(complete)?;
        coffer_fs::restore::flush_tree(std::os::fd::AsFd::as_fd(&fd), datadir).with_context(complete)?;
    }
    // The engine moves every file, the restore's marker too where it was still there.
    coffer_fs::restore::remove_marker(datadir, sync).with_context(complete)?;
    env.report.say(&format!("moved the prepared backup into {}", datadir.display()));
    Ok(())
}

/// Moves the prepared chain in `dir` (whose full is described by `full`) into a datadir.
pub fn copy_back(dir: &Path, full: &BackupInfo, datadir: &Path, force: bool, sync: bool, env: &Env) -> Result<()> {
    move_back(EngineKind::of_backup(full), dir, datadir, force, sync, env)
}

/// What a restore of a chain did.
#[derive(Debug, Clone)]
pub struct ChainSummary {
    /// The chain, full first, as messages show each backup.
    pub backups: Vec<String>,
    /// Each backup's kind (full first).
    pub kinds: Vec<BackupKind>,
    /// Each backup's restore.
    pub restores: Vec<RestoreSummary>,
    /// How long each backup's prepare (the full's) or apply (a later one's) took.
    pub prepare_seconds: Vec<f64>,
    /// The engine that prepared the chain.
    pub engine: &'static str,
    /// Where.
    pub to: PathBuf,
    /// How long it all took (restores and prepares).
    pub seconds: f64,
}

/// The backup under a prefix (its newest) or an image; a stream is refused with `refusal`.
pub(crate) fn newest_or_image(source: &str, refusal: &str, env: &Env) -> Result<Location> {
    if source.ends_with('/') && matches!(Location::parse(source), Location::Object(_)) {
        let newest = crate::repo::backups(source, env)?;
        let b = newest.first().ok_or_else(|| Error::msg(format!("no backup under {source}")))?;
        env.report.say(&format!("the newest backup under {source} is {}", b.listed.name));
        return Ok(Location::parse(b.listed.object.url()));
    }
    match Location::from_path(Path::new(source)) {
        Location::Stdio | Location::Tls(_) => Err(Error::usage(refusal.to_owned())),
        l => Ok(l),
    }
}

/// What a restore of `image` with its prepare will read: the chain that ends at it if it is an
/// incremental or differential backup (resolved from the backups beside it and `bases`, every
/// link checked), with the secrets that opened it, read once (a passphrase is asked for once).
pub fn plan(image: &Location, bases: &[Location], keys: &KeySources, env: &Env) -> Result<Plan> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    if matches!(image, Location::Stdio | Location::Tls(_)) {
        return Ok(Plan { chain: None, unlocks, _lease: None });
    }
    let info = crate::read::info_with(image, &unlocks, env)?;
    let link = info.backup.as_ref().and_then(|b| b.chain.clone()).filter(|l| l.kind != BackupKind::Full);
    let (Some(backup), Some(link)) = (info.backup, link) else {
        let lease = crate::repo::lease::for_reading(&[image], None, "restore", env)?;
        return Ok(Plan { chain: None, unlocks, _lease: lease });
    };
    let neighbours = crate::repo::chain::neighbours(image, bases, &unlocks, env)?;
    let target = Known { location: image.clone(), time: 0, info: backup, link };
    let backups = crate::repo::chain::resolve(&target, &neighbours)?;
    // What the restore reads is kept by any prune from now on.
    let read: Vec<&Location> = backups.iter().map(|k| &k.location).collect();
    let lease = crate::repo::lease::for_reading(&read, None, "restore", env)?;
    Ok(Plan { chain: Some(backups), unlocks, _lease: lease })
}

/// A restore planned by [`plan`].
pub struct Plan {
    /// The chain, full first and the image asked for last; `None`: the image alone.
    pub chain: Option<Vec<Known>>,
    unlocks: Vec<coffer_crypto::Unlock>,
    /// Held while the plan is carried out: a prune keeps what it reads.
    _lease: Option<crate::repo::lease::Lease>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("chain", &self.chain).finish_non_exhaustive()
    }
}

/// Restores the chain of `plan` (full first; see [`plan`]) into `spec.to` and prepares it: the full
/// is restored and prepared in a private directory beside the target, each later backup is
/// restored into a scratch directory there and applied by the engine, then the result takes
/// the target's place. A failure at any step leaves the target as it was.
pub fn restore_chain(plan: &Plan, spec: &RestoreSpec, options: &[PrepareOption], env: &Env) -> Result<ChainSummary> {
    let (Some(chain), keys) = (plan.chain.as_deref(), &plan.unlocks) else {
        return Err(Error::usage("no chain to restore"));
    };
    let started = Instant::now();
    let (staging, restores, prepare_seconds) = stage_chain_timed(chain, keys, spec, options, None, env)?;
    staging.replace(spec.force, spec.sync)?;
    Ok(ChainSummary {
        backups: chain.iter().map(Known::shown).collect(),
        kinds: chain.iter().map(|k| k.link.kind).collect(),
        restores,
        prepare_seconds,
        engine: EngineKind::of_backup(&chain[0].info).name(),
        to: spec.to.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores `chain` (full first, every link checked) and prepares it in a private directory
/// beside `spec.to`, which the caller puts in the target's place (or drops: then it goes).
pub(crate) fn stage_chain(
    chain: &[Known],
    keys: &[coffer_crypto::Unlock],
    spec: &RestoreSpec,
    options: &[PrepareOption],
    env: &Env,
) -> Result<(Beside, Vec<RestoreSummary>)> {
    stage_chain_timed(chain, keys, spec, options, None, env).map(|(staging, restores, _)| (staging, restores))
}

/// Which entries of each backup a restore reads (see [`stage_chosen`]).
pub(crate) type Keep<'a> = &'a (dyn Fn(&[u8]) -> bool + Sync);

/// [`stage_chain`] of only the entries of each backup that `keep` chooses, each read through
/// its image's index (some tables, and what the engine needs to prepare them).
pub(crate) fn stage_chosen(
    chain: &[Known],
    keys: &[coffer_crypto::Unlock],
    spec: &RestoreSpec,
    options: &[PrepareOption],
    keep: Keep,
    env: &Env,
) -> Result<(Beside, Vec<RestoreSummary>)> {
    stage_chain_timed(chain, keys, spec, options, Some(keep), env).map(|(staging, restores, _)| (staging, restores))
}

/// [`stage_chain`], with how long each backup's prepare or apply took.
fn stage_chain_timed(
    chain: &[Known],
    keys: &[coffer_crypto::Unlock],
    spec: &RestoreSpec,
    options: &[PrepareOption],
    keep: Option<Keep>,
    env: &Env,
) -> Result<(Beside, Vec<RestoreSummary>, Vec<f64>)> {
    let to = &spec.to;
    let occupied = std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some());
    if occupied && !spec.force {
        crate::bail!("{} is not empty: refusing to restore into it (use --force)", to.display());
    }
    // The target as it is now is what the result replaces (see `crate::server::beside`); what
    // killed restores left beside it goes before the room is counted.
    let place = Place::open(to, env.report.as_ref())?;
    // Some tables of a backup are restored without counting: their room is the live server's.
    let needed = if keep.is_none() { Some(chain_room(chain, keys, to, env)?) } else { None };
    stage_members(chain, keys, spec, options, keep, &place, env).map_err(|e| crate::room::explain(e, to, needed))
}

/// Refuses a chain whose backups do not fit beside `to`, where they are restored, before
/// anything is written (a target replaced with --force stays until the end: it is no room);
/// the bytes its backups' files take.
fn chain_room(chain: &[Known], keys: &[coffer_crypto::Unlock], to: &Path, env: &Env) -> Result<u64> {
    let (mut needed, mut entries) = (0u64, 0u64);
    for m in chain {
        let (bytes, names) = crate::read::files_bytes(&m.location, keys, env)?.unwrap_or_default();
        (needed, entries) = (needed.saturating_add(bytes), entries.saturating_add(names + 1));
    }
    let what = format!(
        "the restore of {} backup{} beside {}",
        chain.len(),
        if chain.len() == 1 { "" } else { "s" },
        to.display()
    );
    crate::room::check_entries(to, needed, entries, &what)?;
    Ok(needed)
}

/// [`stage_chain_timed`] once the target and the room are checked.
fn stage_members(
    chain: &[Known],
    keys: &[coffer_crypto::Unlock],
    spec: &RestoreSpec,
    options: &[PrepareOption],
    keep: Option<Keep>,
    place: &std::sync::Arc<Place>,
    env: &Env,
) -> Result<(Beside, Vec<RestoreSummary>, Vec<f64>)> {
    let to = &spec.to;
    let engine = EngineKind::of_backup(&chain[0].info);
    sweep_engine_scratch(env);
    let staging = Beside::within(place, "chain")?;
    let mut restores = Vec::new();
    let mut prepare_seconds = Vec::new();
    let show = |line: &str| env.report.engine_line(engine.name(), line);
    for (i, member) in chain.iter().enumerate() {
        let last = i + 1 == chain.len();
        let scratch = if i == 0 { None } else { Some(Beside::within(place, "incremental")?) };
        let into = scratch.as_ref().map_or(staging.path.clone(), |s| s.path.clone());
        // The scratch directories go once applied: no need to make them durable.
        let member_spec = RestoreSpec { to: into.clone(), force: false, sync: spec.sync && i == 0, ..spec.clone() };
        let summary = match keep {
            Some(keep) => {
                crate::restore::restore_chosen(&member.location, keys, &into, spec.owner.as_deref(), keep, env)
            }
            None => {
                let (input, len) = member.location.open_stream(env)?;
                restore_unlocked(input, len, &member_spec, None, keys, false, env)
            }
        }
        .with_context(|| format!("cannot restore {} ({}) of the chain", member.shown(), member.what()))?;
        same_as_checked(&into, member)?;
        env.report.say(&summary.line());
        restores.push(summary);
        let step = match (i, last) {
            (0, true) => PrepareStep::Only,
            (0, false) => PrepareStep::ChainFull,
            (_, last) => PrepareStep::Apply { incremental_dir: into.clone(), last },
        };
        let t = Instant::now();
        coffer_mysql::engine::prepare_step(engine, &staging.path, &step, options, &show).with_context(|| {
            format!("the prepare of {} ({}) failed; {} was left as it was", member.shown(), member.what(), to.display())
        })?;
        let seconds = t.elapsed().as_secs_f64();
        prepare_seconds.push(seconds);
        env.report.say(&format!(
            "{} {} ({}) with {} in {:.1} s",
            if i == 0 { "prepared" } else { "applied" },
            member.shown(),
            member.what(),
            engine.name(),
            seconds
        ));
    }
    Ok((staging, restores, prepare_seconds))
}

/// The description restored into `dir` is the one `member` was checked with (an object can be
/// replaced between the check and the read).
fn same_as_checked(dir: &Path, member: &Known) -> Result<()> {
    let restored = read_description(dir);
    let same = restored.as_ref().is_some_and(|r| {
        r.chain == member.info.chain && r.from_lsn == member.info.from_lsn && r.to_lsn == member.info.to_lsn
    });
    if !same {
        crate::bail!(
            "{}: the backup restored is not the one its chain was checked with (its description differs): it was replaced meanwhile",
            member.shown()
        );
    }
    Ok(())
}

/// The backup description restored into `dir`, if it holds one (read at most as large as a
/// writer may make it).
pub(crate) fn read_description(dir: &Path) -> Option<BackupInfo> {
    let f = std::fs::File::open(dir.join(META_ENTRY)).ok()?;
    let mut bytes = Vec::new();
    f.take(coffer_mysql::meta::MAX_DESCRIPTION as u64 + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() <= coffer_mysql::meta::MAX_DESCRIPTION).then(|| serde_json::from_slice(&bytes).ok())?
}

impl Plan {
    /// The backups to restore, full first: the chain, or `image` alone (a full).
    pub(crate) fn members(&self, image: &Location, env: &Env) -> Result<Vec<Known>> {
        if let Some(chain) = &self.chain {
            return Ok(chain.clone());
        }
        let info = crate::read::info_with(image, &self.unlocks, env)?;
        let backup = info.backup.ok_or_else(|| Error::msg(format!("{}: not a backup of a server", image.shown())))?;
        Ok(vec![Known::new(image.clone(), 0, backup)])
    }

    /// The secrets that opened the image.
    pub(crate) fn unlocks(&self) -> &[coffer_crypto::Unlock] {
        &self.unlocks
    }

    /// Reads `backup` (one of the chain's) through, authenticating every frame.
    pub fn verify(&self, backup: &Known, env: &Env) -> Result<ReadSummary> {
        crate::read::verify_with(&backup.location, &self.unlocks, env)
    }

    /// Verifies every image of the chain (none without one), full first, each handed to `each`
    /// as soon as it is verified (`verify --chain`).
    pub fn verify_chain(&self, env: &Env, mut each: impl FnMut(&ChainMember)) -> ChainVerified {
        let mut verified = ChainVerified::default();
        for backup in self.chain.iter().flatten() {
            let result = Verified::timed(|| self.verify(backup, env));
            let member = ChainMember { image: backup.location.shown(), kind: backup.what(), result };
            each(&member);
            verified.members.push(member);
        }
        verified
    }

    /// Restores the image `spec.image` alone (see [`crate::restore::restore`]).
    pub fn restore(&self, spec: &RestoreSpec, env: &Env) -> Result<RestoreSummary> {
        self.restore_keeping_marker(spec, false, env)
    }

    /// [`Plan::restore`]; with `keep_marker`, the restore's marker stays for the caller to
    /// remove (see [`restore_prepared_one`]).
    fn restore_keeping_marker(&self, spec: &RestoreSpec, keep_marker: bool, env: &Env) -> Result<RestoreSummary> {
        let image = spec.image.as_ref().ok_or_else(|| Error::usage("no image to restore"))?;
        let needed = crate::restore::check_room(image, spec, &self.unlocks, env)?;
        let (input, len) = image.open_stream(env)?;
        restore_unlocked(input, len, spec, None, &self.unlocks, keep_marker, env).map_err(|mut e| {
            crate::read::name_packed_entries(&mut e, image, &self.unlocks, env);
            crate::restore::full_disk(e, spec, needed)
        })
    }
}

/// Receives a server backup over TLS into `spec.to` ([`crate::transfer::receive`]) and
/// prepares it there with `options`; the sender learns the outcome of both.
pub fn receive(
    spec: &crate::transfer::ReceiveSpec,
    options: &[PrepareOption],
    env: &Env,
) -> Result<crate::transfer::ReceiveSummary> {
    // As a restore with --prepare: the marker stays until the prepare is done and durable.
    let then = |dir: &Path| prepare_restored(dir, options, None, spec.force, true, env).map(drop);
    crate::transfer::receive_then(spec, Some(&then), env)
}

/// What a restore with its prepare did: of one backup, or of a chain.
#[derive(Debug, Clone)]
pub struct PreparedRestore {
    /// Where.
    pub to: PathBuf,
    /// Flushed to disk.
    pub synced: bool,
    /// How long it all took: restores, prepares and the copy-back.
    pub seconds: f64,
    /// The engine that prepared.
    pub engine: &'static str,
    /// Each backup restored, full first.
    pub backups: Vec<PreparedBackup>,
    /// The datadir the result was moved into, if it was.
    pub copied_back_to: Option<PathBuf>,
}

/// One backup of a [`PreparedRestore`].
#[derive(Debug, Clone)]
pub struct PreparedBackup {
    /// The backup, as messages show it.
    pub image: String,
    /// Its kind.
    pub kind: BackupKind,
    /// Its restore.
    pub restore: RestoreSummary,
    /// How long its prepare (the full's) or apply (a later one's) took.
    pub prepare_seconds: f64,
}

/// Restores `spec.image` and prepares it: alone, or with the chain that ends at it (resolved
/// from the backups beside it and `bases`, see [`plan`]); with `copy_back_to`, the result is
/// then moved into that datadir.
pub fn restore_prepared(
    spec: &RestoreSpec,
    bases: &[Location],
    options: &[PrepareOption],
    copy_back_to: Option<&Path>,
    env: &Env,
) -> Result<PreparedRestore> {
    let started = Instant::now();
    let image = spec.image.as_ref().ok_or_else(|| Error::usage("no image to restore"))?;
    // A chain is resolved and checked before anything is written.
    let plan = plan(image, bases, &spec.keys, env)?;
    let copied_back_to = copy_back_to.map(Path::to_path_buf);
    let Some(chain) = &plan.chain else {
        let (s, p) = restore_prepared_one(&plan, spec, options, copy_back_to, env)?;
        return Ok(PreparedRestore {
            to: spec.to.clone(),
            synced: s.synced,
            seconds: started.elapsed().as_secs_f64(),
            engine: p.engine,
            backups: vec![PreparedBackup {
                image: image.shown(),
                kind: BackupKind::Full,
                restore: s,
                prepare_seconds: p.seconds,
            }],
            copied_back_to,
        });
    };
    let names: Vec<String> = chain.iter().map(|k| format!("{} ({})", k.shown(), k.what())).collect();
    env.report.say(&format!("restoring a chain of {}: {}", names.len(), names.join(" <- ")));
    let s = restore_chain(&plan, spec, options, env)?;
    env.report.say(&format!(
        "restored and prepared the chain of {} backups into {} in {:.1} s",
        s.backups.len(),
        s.to.display(),
        s.seconds
    ));
    if let Some(datadir) = copy_back_to {
        copy_back(&spec.to, &chain[0].info, datadir, spec.force, spec.sync, env)?;
    }
    let synced = s.restores.first().is_some_and(|r| r.synced);
    let backups = s.backups.into_iter().zip(s.kinds).zip(s.restores).zip(s.prepare_seconds);
    Ok(PreparedRestore {
        to: s.to,
        synced,
        seconds: started.elapsed().as_secs_f64(),
        engine: s.engine,
        backups: backups
            .map(|(((image, kind), restore), prepare_seconds)| PreparedBackup { image, kind, restore, prepare_seconds })
            .collect(),
        copied_back_to,
    })
}

impl PreparedRestore {
    /// What `restore --prepare --json` prints: what it prints of a plain restore (entries,
    /// files and bytes summed over the backups), what was prepared, and each backup.
    pub fn to_json(&self) -> serde_json::Value {
        let sum = |f: fn(&RestoreSummary) -> u64| self.backups.iter().map(|b| f(&b.restore)).sum::<u64>();
        serde_json::json!({
            "to": self.to,
            "entries": sum(|r| r.read.entries),
            "files": sum(|r| r.files),
            "logical_bytes": sum(|r| r.read.logical_bytes),
            "synced": self.synced,
            "seconds": self.seconds,
            "prepared": {
                "engine": self.engine,
                "seconds": self.backups.iter().map(|b| b.prepare_seconds).sum::<f64>(),
            },
            "copied_back_to": self.copied_back_to,
            "backups": self.backups.iter().map(|b| serde_json::json!({
                "image": b.image,
                "kind": b.kind.name(),
                "entries": b.restore.read.entries,
                "files": b.restore.files,
                "logical_bytes": b.restore.read.logical_bytes,
                "image_bytes": b.restore.read.image_bytes,
                "seconds": b.restore.seconds,
                "prepare_seconds": b.prepare_seconds,
            })).collect::<Vec<_>>(),
        })
    }
}
