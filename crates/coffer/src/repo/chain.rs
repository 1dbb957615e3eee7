//! Chains of server backups (docs/FORMAT.md §9.2, §9.3): a full backup, then incrementals (each
//! holding the pages changed since the previous backup) or differentials (since the full).
//!
//! A new backup's parent, and the LSN its engine starts from, come from coffer's own sealed
//! description of the parent, never from the user: a wrong LSN makes a backup that cannot be
//! restored and that nothing diagnoses. A chain to restore is resolved and every link checked
//! before anything is written.

use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_image::ImageError;
use coffer_mysql::meta::{BackupInfo, BackupKind, ChainLink, ServerIdentity};
use std::path::Path;

/// What a backup of a server is asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every page (as before chains).
    #[default]
    Full,
    /// The pages changed since the newest backup of this server (`--incremental`).
    Incremental,
    /// The pages changed since the newest full backup of this server (`--differential`).
    Differential,
}

/// The most incrementals after a full unless `--max-chain` says otherwise: a restore applies
/// each in turn (one engine run per incremental), so a chain's restore time grows with it.
pub const DEFAULT_MAX_CHAIN: u32 = 14;

/// How a backup joins a chain.
#[derive(Debug, Clone, Default)]
pub struct ChainRequest {
    /// Full, incremental or differential.
    pub mode: Mode,
    /// The parent (or other backups of the chain) named by the user (`--base`); without it,
    /// the backups beside the output (under its prefix, or in its directory).
    pub base: Vec<Location>,
    /// At most this many backups after the full [default: [`DEFAULT_MAX_CHAIN`]].
    pub max_chain: Option<u32>,
}

impl ChainRequest {
    /// A backup asked for as `--incremental` (which wins), `--differential` or neither, with
    /// the images named by `--base`.
    pub fn new(incremental: bool, differential: bool, base: &[std::path::PathBuf], max_chain: Option<u32>) -> Self {
        let mode = match (incremental, differential) {
            (true, _) => Mode::Incremental,
            (_, true) => Mode::Differential,
            _ => Mode::Full,
        };
        Self { mode, base: base.iter().map(|b| Location::from_path(b)).collect(), max_chain }
    }
}

/// A backup of a server, read with its description.
#[derive(Debug, Clone)]
pub struct Known {
    /// Where it is.
    pub location: Location,
    /// Unix seconds: from its name under a prefix, else its modification time.
    pub time: i64,
    /// Its description.
    pub info: BackupInfo,
    /// Its place in its chain (a backup made before chains: a full of its own).
    pub link: ChainLink,
}

impl Known {
    pub(crate) fn new(location: Location, time: i64, info: BackupInfo) -> Self {
        // Images made before chains hold every page: fulls of their own. Their id is all zeros:
        // no writer makes it (ids are random), so only a forged link could name one, and a
        // forged link fails the server and LSN checks all the same.
        let link = info.chain.clone().unwrap_or_else(|| ChainLink::full("0".repeat(32)));
        Self { location, time, info, link }
    }

    /// The backup as messages name it (control characters escaped: object names are anyone's
    /// who can write to the bucket).
    pub fn shown(&self) -> String {
        crate::text::escape(self.location.shown().as_bytes())
    }

    /// `full`, `incremental 2` or `differential`.
    pub fn what(&self) -> String {
        match self.link.kind {
            BackupKind::Incremental => format!("incremental {}", self.link.depth),
            k => k.name().to_owned(),
        }
    }
}

/// The backups beside a place: those read with the secrets given, and those not.
#[derive(Debug, Default)]
pub struct Neighbours {
    /// Backups of servers that opened.
    pub known: Vec<Known>,
    /// Images that did not open, and why (`true`: no secret given opened them).
    pub unread: Vec<(String, String, bool)>,
    /// Where they were looked for, as messages show it.
    pub place: String,
}

impl Neighbours {
    /// The images that no secret given opened.
    fn locked(&self) -> Vec<&str> {
        self.unread.iter().filter(|u| u.2).map(|u| u.0.as_str()).collect()
    }
}

/// The backups beside `around` (under its prefix, or in its directory), and those named in
/// `bases`; `around` itself when it is an image that exists.
pub fn neighbours(around: &Location, bases: &[Location], unlocks: &[Unlock], env: &Env) -> Result<Neighbours> {
    let mut out = Neighbours::default();
    // Each place with its time, and its listing when it is an object under the prefix.
    let mut places: Vec<(Location, i64, Option<coffer_store::Listed>)> = Vec::new();
    match around {
        Location::Object(url) => {
            let prefix = &url[..url.rfind('/').map_or(url.len(), |i| i + 1)];
            out.place = prefix.to_owned();
            for b in crate::repo::backups(prefix, env)? {
                places.push((Location::Object(b.listed.object.url().to_owned()), b.time, Some(b.listed)));
            }
        }
        Location::File(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => ".".into(),
            };
            out.place = dir.display().to_string();
            places.extend(images_in(&dir)?.into_iter().map(|(l, t)| (l, t, None)));
        }
        Location::Stdio | Location::Tls(_) => out.place = "the images given with --base".into(),
    }
    for b in bases {
        if !places.iter().any(|(l, _, _)| l == b) {
            let time = match b {
                Location::File(p) => mtime(p).unwrap_or(0),
                _ => 0,
            };
            places.push((b.clone(), time, None));
        }
    }
    for (location, time, listed) in places {
        // Under a prefix, the catalog records answer in two small reads per backup.
        let described = match &listed {
            Some(l) => crate::repo::records::description_of(l, unlocks, env),
            None => crate::read::info_with(&location, unlocks, env).map(|i| i.backup),
        };
        match described {
            Ok(Some(info)) => out.known.push(Known::new(location, time, info)),
            Ok(None) => {}
            Err(e) => {
                let locked = e.exit_code() == crate::error::exit::WRONG_KEY;
                out.unread.push((location.shown(), e.one_line(), locked));
            }
        }
    }
    Ok(out)
}

/// The `*.coffer` files in `dir`, with their modification times.
fn images_in(dir: &Path) -> Result<Vec<(Location, i64)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        r => r.with_context(|| format!("cannot list {}", dir.display()))?,
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_image = path.extension().is_some_and(|x| x == "coffer") && e.file_type().is_ok_and(|t| t.is_file());
        if is_image {
            out.push((Location::File(path.clone()), mtime(&path).unwrap_or(0)));
        }
    }
    out.sort_by_key(|a| a.0.shown());
    Ok(out)
}

fn mtime(path: &Path) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.mtime())
}

/// What a new backup will be.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Its link.
    pub link: ChainLink,
    /// The backup it builds on (none for a full).
    pub parent: Option<Known>,
    /// Why a full backup is taken although an incremental or a differential was asked for.
    pub fallback: Option<String>,
}

impl Decision {
    /// A full backup, asked for as such.
    pub fn full(id: String) -> Self {
        Decision { link: ChainLink::full(id), parent: None, fallback: None }
    }

    /// The LSN the engine starts from: the parent's `to_lsn`.
    pub fn from_lsn(&self) -> Option<u64> {
        self.parent.as_ref().and_then(|p| p.info.to_lsn)
    }
}

/// Decides what a backup asked to be `mode` is, for the server `me` (whose current LSN is
/// `lsn`), among the backups beside it.
pub fn decide(
    mode: Mode,
    max_chain: u32,
    beside: &Neighbours,
    me: &ServerIdentity,
    lsn: Option<u64>,
    id: String,
) -> Decision {
    let place = &beside.place;
    let full = |why: String| Decision { link: ChainLink::full(id.clone()), parent: None, fallback: Some(why) };
    if mode == Mode::Full {
        return Decision::full(id);
    }
    let known = &beside.known;
    // The newest backup of the place says whose backups go there now.
    let Some(newest) = known.iter().max_by_key(|k| (k.time, k.info.to_lsn)) else {
        return full(format!("no earlier backup of a server in {place}"));
    };
    let of_me = |k: &Known| k.info.server.as_ref().is_some_and(|s| me.differs_from(s).is_none());
    if let Some(s) = &newest.info.server {
        if let Some(why) = me.differs_from(s) {
            return full(format!("the newest backup in {place}, {}, is of another server: {why}", newest.shown()));
        }
    }
    let wanted = |k: &&Known| {
        of_me(k)
            && k.link.is_consistent()
            && k.info.to_lsn.is_some()
            && (mode == Mode::Incremental || k.link.kind == BackupKind::Full)
    };
    let Some(parent) = known.iter().filter(wanted).max_by_key(|k| (k.info.to_lsn, k.time)) else {
        let what = if mode == Mode::Differential { "full backup" } else { "backup" };
        return full(format!("no earlier {what} of this server (with its LSN) in {place}"));
    };
    if parent.link.depth >= max_chain {
        return full(format!(
            "{} is backup {} after its full: --max-chain {max_chain} reached",
            parent.shown(),
            parent.link.depth
        ));
    }
    // A server restored or rebuilt since reuses LSNs: below the newest backup's, it is not
    // the server those backups were taken of any more.
    let tip = known.iter().filter(|k| of_me(k)).filter_map(|k| k.info.to_lsn).max().unwrap_or(0);
    if let Some(now) = lsn.filter(|now| *now < tip) {
        return full(format!(
            "the server's LSN {now} is below {tip}, where its newest backup in {place} ended: it was restored or rebuilt since"
        ));
    }
    // The parent's own chain must restore, or nothing built on it will.
    if let Err(e) = resolve(parent, beside) {
        return full(format!("the chain of {} cannot be restored: {}", parent.shown(), e.one_line()));
    }
    let kind = if mode == Mode::Differential { BackupKind::Differential } else { BackupKind::Incremental };
    Decision { link: ChainLink::on(&parent.link, kind, id), parent: Some(parent.clone()), fallback: None }
}

/// A chain's backups, full first, ending with the one asked for; every link checked.
pub fn resolve(target: &Known, neighbours: &Neighbours) -> Result<Vec<Known>> {
    let mut chain = vec![target.clone()];
    let mut here = target;
    if !here.link.is_consistent() {
        crate::bail!("{}: its chain description is inconsistent (kind, parent, depth)", here.shown());
    }
    while here.link.kind != BackupKind::Full {
        let parent_id = here.link.parent.as_deref().unwrap_or_default();
        let Some(parent) = neighbours.known.iter().find(|k| k.link.id == parent_id) else {
            let missing = format!(
                "the chain of {} is broken: its parent (backup {parent_id}, {} of full {}) is not in {}{}",
                target.shown(),
                if here.link.depth == 1 { "the full".to_owned() } else { format!("depth {}", here.link.depth - 1) },
                here.link.full,
                neighbours.place,
                " nor given with --base"
            );
            let locked = neighbours.locked();
            if !locked.is_empty() {
                return Err(Error::Image(ImageError::WrongKey).context(format!(
                    "{missing}; {} image(s) there do not open with the secrets given ({}): the key opens only part of the chain",
                    locked.len(),
                    locked.join(", ")
                )));
            }
            return Err(Error::msg(missing));
        };
        check_link(parent, here)?;
        chain.push(parent.clone());
        here = parent;
    }
    chain.reverse();
    Ok(chain)
}

/// The link from `parent` to `child` holds: ids, depths, the same server, and the LSN where the
/// parent ended is the one the child starts from.
fn check_link(parent: &Known, child: &Known) -> Result<()> {
    let broken = |why: String| Err(Error::msg(format!("{} cannot follow {}: {why}", child.shown(), parent.shown())));
    if !parent.link.is_consistent() {
        return broken("the parent's chain description is inconsistent".into());
    }
    if parent.link.full != child.link.full || parent.link.depth.checked_add(1) != Some(child.link.depth) {
        return broken(format!(
            "they are of different chains (full {} depth {}, full {} depth {})",
            parent.link.full, parent.link.depth, child.link.full, child.link.depth
        ));
    }
    match (&parent.info.server, &child.info.server) {
        (Some(p), Some(c)) => {
            if let Some(why) = c.differs_from(p) {
                return broken(format!("they are backups of different servers: {why}"));
            }
        }
        _ => return broken("one of them does not say which server it is of".into()),
    }
    match (parent.info.to_lsn, child.info.from_lsn) {
        (Some(to), Some(from)) if to == from => Ok(()),
        (to, from) => broken(format!(
            "the parent ends at LSN {} but the child starts at {}",
            to.map_or("?".into(), |v| v.to_string()),
            from.map_or("?".into(), |v| v.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_wins_over_differential_and_bases_are_places() {
        let base = [std::path::PathBuf::from("s3://b/p/full.coffer")];
        let asked = |i, d| ChainRequest::new(i, d, &base, Some(3));
        assert_eq!(
            [asked(true, true).mode, asked(false, true).mode, asked(false, false).mode],
            [Mode::Incremental, Mode::Differential, Mode::Full]
        );
        let r = asked(false, false);
        assert_eq!((r.base, r.max_chain), (vec![Location::Object("s3://b/p/full.coffer".into())], Some(3)));
    }

    fn server(born: i64) -> ServerIdentity {
        ServerIdentity {
            hostname: Some("db1".into()),
            datadir: Some("/var/lib/mysql/".into()),
            server_id: Some(1),
            born: Some(born),
            version: Some("10.11.19-MariaDB".into()),
            ..Default::default()
        }
    }

    fn id(n: u8) -> String {
        format!("{n:032x}")
    }

    fn known(name: &str, time: i64, link: ChainLink, from: u64, to: u64, born: i64) -> Known {
        let info = BackupInfo {
            from_lsn: Some(from),
            to_lsn: Some(to),
            chain: Some(link),
            server: Some(server(born)),
            ..Default::default()
        };
        Known::new(Location::File(name.into()), time, info)
    }

    /// full (1) <- inc (2) <- inc (3); full <- diff (4).
    fn sample() -> Vec<Known> {
        let f = ChainLink::full(id(1));
        let i1 = ChainLink::on(&f, BackupKind::Incremental, id(2));
        let i2 = ChainLink::on(&i1, BackupKind::Incremental, id(3));
        let d = ChainLink::on(&f, BackupKind::Differential, id(4));
        vec![
            known("f", 100, f, 0, 1000, 7),
            known("i1", 200, i1, 1000, 2000, 7),
            known("i2", 300, i2, 2000, 3000, 7),
            known("d", 400, d, 1000, 3500, 7),
        ]
    }

    fn near(known: Vec<Known>) -> Neighbours {
        Neighbours { known, unread: vec![], place: "p".into() }
    }

    #[test]
    fn incrementals_build_on_the_newest_differentials_on_the_full() {
        let k = near(sample());
        let d = decide(Mode::Incremental, 14, &k, &server(7), Some(4000), id(9));
        assert_eq!(d.fallback, None);
        assert_eq!(d.parent.as_ref().unwrap().link.id, id(4), "the differential ended last");
        assert_eq!((d.link.depth, d.link.full.as_str(), d.from_lsn()), (2, id(1).as_str(), Some(3500)));
        let d = decide(Mode::Differential, 14, &k, &server(7), Some(4000), id(9));
        assert_eq!(d.parent.as_ref().unwrap().link.id, id(1));
        assert_eq!((d.link.kind, d.link.depth, d.from_lsn()), (BackupKind::Differential, 1, Some(1000)));
        assert!(d.link.is_consistent());
    }

    #[test]
    fn falls_back_to_a_full_and_says_why() {
        let k = near(sample());
        let why = |mode, max, known: &Neighbours, me: ServerIdentity, lsn| {
            let d = decide(mode, max, known, &me, lsn, id(9));
            assert_eq!((d.link.kind, d.parent.is_none()), (BackupKind::Full, true));
            d.fallback.unwrap()
        };
        assert!(why(Mode::Incremental, 14, &near(vec![]), server(7), None).contains("no earlier backup"));
        assert!(why(Mode::Incremental, 14, &k, server(8), None).contains("another server"));
        assert!(why(Mode::Incremental, 1, &k, server(7), None).contains("--max-chain 1"));
        assert!(why(Mode::Incremental, 14, &k, server(7), Some(10)).contains("restored or rebuilt"));
        // A differential's parent is the full, but the server must not be behind the newest.
        assert!(why(Mode::Differential, 14, &k, server(7), Some(2500)).contains("below 3500"));
        let mut newer = server(7);
        newer.version = Some("11.4.2-MariaDB".into());
        assert!(why(Mode::Differential, 14, &k, newer, None).contains("major version"));
        assert!(why(Mode::Differential, 0, &k, server(7), None).contains("--max-chain 0"));
        // A parent whose chain is broken (its full gone) is built on by no one.
        let broken = near(sample().into_iter().skip(1).collect());
        assert!(why(Mode::Incremental, 14, &broken, server(7), None).contains("cannot be restored"));
        // A full asked for is not a fallback.
        assert_eq!(decide(Mode::Full, 14, &k, &server(7), None, id(9)).fallback, None);
    }

    #[test]
    fn chains_resolve_full_first_and_every_broken_link_is_named() {
        let n = |known: Vec<Known>| Neighbours { known, unread: vec![], place: "DIR".into() };
        let k = sample();
        let chain = resolve(&k[2], &n(k.clone())).unwrap();
        assert_eq!(chain.iter().map(|c| c.shown()).collect::<Vec<_>>(), ["f", "i1", "i2"]);
        assert_eq!(resolve(&k[3], &n(k.clone())).unwrap().len(), 2);
        assert_eq!(resolve(&k[0], &n(vec![])).unwrap().len(), 1);
        // A missing middle.
        let without = vec![k[0].clone(), k[2].clone()];
        let err = resolve(&k[2], &n(without.clone())).unwrap_err().one_line();
        assert!(err.contains("is broken") && err.contains(&id(2)) && err.contains("DIR"), "{err}");
        // ... which a key that opens only part of the chain explains (exit 3).
        let locked =
            Neighbours { known: without, unread: vec![("i1".into(), "wrong key".into(), true)], place: "D".into() };
        let err = resolve(&k[2], &locked).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::WRONG_KEY, "{}", err.one_line());
        // An LSN that does not meet.
        let mut bad = k.clone();
        bad[1].info.to_lsn = Some(1999);
        let err = resolve(&bad[2], &n(bad.clone())).unwrap_err().one_line();
        assert!(err.contains("ends at LSN 1999 but the child starts at 2000"), "{err}");
        // Another server's parent.
        let mut other = k.clone();
        other[1].info.server = Some(server(8));
        let err = resolve(&other[2], &n(other.clone())).unwrap_err().one_line();
        assert!(err.contains("different servers"), "{err}");
        // A forged link (depth that does not follow).
        let mut forged = k.clone();
        forged[2].link.depth = 5;
        assert!(resolve(&forged[2], &n(forged.clone())).is_err());
    }
}
