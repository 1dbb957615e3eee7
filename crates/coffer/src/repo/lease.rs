//! Leases: how coffer jobs that share a repository (a prefix of an object store, `file://`
//! included) run side by side (docs/FORMAT.md §9.5).
//!
//! A job that reads backups, or builds on one, puts a lease object under `PREFIX/leases/`
//! naming the backups it uses (and the binary log file it replays from), and rewrites it every
//! minute while it runs; a prune keeps whatever an active lease names. A prune puts its own
//! lease first, then reads the others; a backup names its parent in its lease, then, before
//! its image becomes visible, waits for any prune that was running to end and checks that its
//! parent is still there. Each side writes before it reads, and listings are strongly
//! consistent (S3 since 2020, local file systems), so a prune either sees the lease or the job
//! sees the prune: a parent is never deleted under a backup that then succeeds.
//!
//! Leases are plain JSON, in the clear (job, host, process, times, names of backups): whoever
//! can write to the bucket can forge one, which can only keep more backups or delay a backup's
//! end by a lease's life at most.

use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::Env;
use coffer_store::Object;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The sub-prefix leases live under.
pub const LEASES: &str = "leases";
/// How long a lease lasts unless rewritten.
pub const LIFE: i64 = 300;
/// How often a running job rewrites its lease.
const RENEW: Duration = Duration::from_secs(60);
/// Clocks of hosts sharing a repository may differ this much (seconds).
const SKEW: i64 = 60;
/// Leases are small; a larger object under `leases/` is not read.
const MAX_LEASE_BYTES: u64 = 64 << 10;
/// A lease names at most this many backups.
const MAX_NAMES: usize = 10_000;

/// What a lease says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// "backup", "restore", "drill", "prune", ...
    pub job: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// Unix seconds.
    pub started: i64,
    /// Unix seconds: the lease is void after this (unless rewritten).
    pub expires: i64,
    /// The backups (names under the prefix) the job uses.
    #[serde(default)]
    pub protects: Vec<String>,
    /// The binary log file from which the job replays (the archive keeps it and later ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_from: Option<String>,
    /// Where `pid` names a process: the boot and the process id namespace it ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Body {
    /// The job as messages name it: `backup on db1 (pid 4242)`.
    pub fn who(&self) -> String {
        let host = crate::text::escape(self.host.as_bytes());
        format!("{} on {host} (pid {})", crate::text::escape(self.job.as_bytes()), self.pid)
    }

    /// Is the lease in force at `now` (with the allowance for clocks)? A forged lease that
    /// claims to last for ever keeps what it names (which deleting nothing would too); a
    /// backup waits for a prune's lease a lease's life at most.
    pub fn active(&self, now: i64) -> bool {
        self.expires.saturating_add(SKEW) > now
    }

    /// Did the lease's process end without releasing it (a job whose store failed even the
    /// lease's deletion)? Only where its pid is known to mean this system's process: the same
    /// host, boot and pid namespace (hosts cloned from one snapshot share a boot id, and every
    /// host's first pid namespace has the same inode: the host name tells them apart). A pid
    /// reused since keeps the lease until it expires.
    pub fn gone(&self) -> bool {
        let here = instance();
        let dead = || i32::try_from(self.pid).is_ok_and(|pid| !coffer_fs::tmp::process_exists(pid));
        here.is_some() && self.instance == here && self.host == host_name() && self.pid != std::process::id() && dead()
    }
}

/// This host's name, as a lease names it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// This boot and pid namespace, as a lease names them.
fn instance() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), ns.to_string_lossy()))
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The prefix an object is under (`s3://b/p/x.coffer` → `s3://b/p/`); a prefix is its own.
pub fn prefix_of(url: &str) -> &str {
    &url[..url.rfind('/').map_or(url.len(), |i| i + 1)]
}

/// The leases under `prefix` (ending in '/') that are in force, by object name. A lease that
/// does not parse is said and left out.
pub fn active(prefix: &str, env: &Env) -> Result<Vec<(String, Body)>> {
    active_of(prefix, "", env)
}

/// [`active`], of the leases whose names start with `start` (a job's leases are named after it:
/// a lease named otherwise is not that job's own).
fn active_of(prefix: &str, start: &str, env: &Env) -> Result<Vec<(String, Body)>> {
    let dir = Object::open(prefix, &env.store)?.sub_prefix(LEASES);
    let listed = dir.list().with_context(|| format!("cannot list the leases under {prefix}"))?;
    let now = now();
    let mut out = Vec::new();
    for l in listed.into_iter().filter(|l| l.name.ends_with(".json") && l.name.starts_with(start)) {
        let bytes = match l.object.get_at_most(MAX_LEASE_BYTES) {
            Ok(b) => b,
            // Released (deleted) between the listing and the read.
            Err(coffer_store::StoreError::NotFound(_)) => continue,
            Err(e) => return Err(Error::from(e).context(format!("cannot read the lease {}", l.object.url()))),
        };
        match serde_json::from_slice::<Body>(&bytes) {
            Ok(b) if b.active(now) && b.gone() => env.report.warn(&format!(
                "{}: the lease of {}, which ended without releasing it; ignored",
                crate::text::escape(l.name.as_bytes()),
                b.who()
            )),
            Ok(mut b) if b.active(now) => {
                b.protects.truncate(MAX_NAMES);
                out.push((l.name, b));
            }
            Ok(_) => {}
            Err(e) => {
                env.report.warn(&format!("{}: not a lease ({e}); ignored", crate::text::escape(l.name.as_bytes())))
            }
        }
    }
    Ok(out)
}

/// A lease this process holds: rewritten every minute by a thread of its own, deleted when
/// dropped.
pub struct Lease {
    object: Object,
    name: String,
    body: Arc<Mutex<Body>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// When the lease was last written (Unix seconds), by whichever thread.
    written: Arc<AtomicI64>,
    failed: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("object", &self.object.url()).finish_non_exhaustive()
    }
}

impl Lease {
    /// Puts a new lease for `job` under `prefix` (ending in '/').
    pub fn take(prefix: &str, job: &str, env: &Env) -> Result<Lease> {
        Lease::take_naming(prefix, job, &[], None, env)
    }

    /// [`Lease::take`], naming `names` (and the binary log from `binlog_from`) from the start.
    pub fn take_naming(
        prefix: &str,
        job: &str,
        names: &[String],
        binlog_from: Option<&str>,
        env: &Env,
    ) -> Result<Lease> {
        let dir = Object::open(prefix, &env.store)?.sub_prefix(LEASES);
        let name = format!("{job}-{}.json", &crate::names::new_id()?[..16]);
        let object = dir.child(&name);
        let started = now();
        let body = Body {
            job: job.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            started,
            expires: started + LIFE,
            protects: names.to_vec(),
            binlog_from: binlog_from.map(str::to_owned),
            instance: instance(),
        };
        object
            .put_new(serde_json::to_vec(&body)?)
            .with_context(|| format!("cannot put a lease under {prefix}{LEASES}/"))?;
        let mut lease = Lease {
            object,
            name,
            body: Arc::new(Mutex::new(body)),
            stop: Arc::default(),
            written: Arc::new(AtomicI64::new(started)),
            failed: Arc::default(),
            renewer: None,
        };
        lease.renewer = Some(lease.spawn_renewer(env.report.clone()));
        Ok(lease)
    }

    /// [`Lease::take_naming`] for a job that goes on without one (a reader without write access
    /// to the bucket): a warning instead of an error, and `None`.
    pub fn try_take(prefix: &str, job: &str, names: &[String], binlog_from: Option<&str>, env: &Env) -> Option<Lease> {
        match Lease::take_naming(prefix, job, names, binlog_from, env) {
            Ok(l) => Some(l),
            Err(e) => {
                env.report
                    .warn(&format!("{} (a prune running meanwhile may delete what this {job} reads)", e.one_line()));
                None
            }
        }
    }

    /// The lease's own object name under `leases/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn spawn_renewer(&self, report: Arc<dyn crate::Report>) -> std::thread::JoinHandle<()> {
        let (object, body, stop, written, failed) =
            (self.object.clone(), self.body.clone(), self.stop.clone(), self.written.clone(), self.failed.clone());
        std::thread::spawn(move || loop {
            let (lock, wake) = &*stop;
            let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (stopped, _) = wake.wait_timeout_while(stopped, RENEW, |s| !*s).unwrap_or_else(|e| e.into_inner());
            if *stopped {
                return;
            }
            drop(stopped);
            if let Err(e) = write(&object, &body, &written) {
                if !failed.swap(true, Ordering::Relaxed) {
                    report.warn(&format!("cannot renew the lease {}: {}", object.url(), e.one_line()));
                }
            } else {
                failed.store(false, Ordering::Relaxed);
            }
        })
    }

    /// Names `names` (and the binary log from `binlog_from`) as used by this job, at once.
    pub fn protect(&self, names: &[String], binlog_from: Option<&str>) -> Result<()> {
        {
            let mut b = self.body.lock().unwrap_or_else(|e| e.into_inner());
            for n in names {
                if !b.protects.contains(n) {
                    b.protects.push(n.clone());
                }
            }
            if binlog_from.is_some() {
                b.binlog_from = binlog_from.map(str::to_owned);
            }
        }
        write(&self.object, &self.body, &self.written)
    }

    /// Has the lease been in force without a break until now (every rewrite on time)? A job
    /// whose lease lapsed may have lost what it named to a prune.
    pub fn held(&self) -> bool {
        now() - self.written.load(Ordering::Relaxed) < LIFE - SKEW
    }

    /// Waits until no other job's prune lease is in force under the prefix (at most a lease's
    /// life: a prune that died leaves one that expires), so that what was named before is
    /// safe from every prune. Returns whether one was waited for.
    pub fn wait_for_prunes(&self, prefix: &str, env: &Env) -> Result<bool> {
        let give_up = now() + LIFE + SKEW;
        let mut waited = false;
        loop {
            let prunes: Vec<Body> = active_of(prefix, "prune-", env)?
                .into_iter()
                .filter(|(name, b)| b.job == "prune" && *name != self.name)
                .map(|(_, b)| b)
                .collect();
            let Some(p) = prunes.first() else { return Ok(waited) };
            if now() > give_up {
                env.report.warn(&format!("the lease of a prune ({}) is still in force; going on", p.who()));
                return Ok(waited);
            }
            if !waited {
                env.report.say(&format!("waiting for a prune to end ({})", p.who()));
            }
            waited = true;
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The last step of a backup that builds on `parent` (under `prefix`), before its image is
/// made visible: every prune that was running has ended, the parent is still there, and the
/// lease that named it held all along. Otherwise the backup fails (nothing is left).
pub fn check_parent(prefix: &str, parent: &Object, lease: Option<&Lease>, env: &Env) -> Result<()> {
    if let Some(l) = lease {
        l.wait_for_prunes(prefix, env)?;
        if !l.held() {
            crate::bail!(
                "the lease naming its parent {} could not be renewed in time, so a prune may have missed it: run the backup again",
                parent.url()
            );
        }
    }
    if !parent.exists().with_context(|| format!("cannot check that its parent {} is still there", parent.url()))? {
        crate::bail!("its parent {} was deleted while it ran (by a prune?): run the backup again", parent.url());
    }
    Ok(())
}

/// A lease for a job that reads `images` (objects under one prefix; the others are not
/// leased) and replays the binary log from `binlog_from`: taken, every prune that was running
/// waited for, and each image checked to be still there. `None` where there is nothing to
/// lease, or the lease cannot be put (said in a warning: a reader may lack write access).
pub fn for_reading(images: &[&Location], binlog_from: Option<&str>, job: &str, env: &Env) -> Result<Option<Lease>> {
    let urls: Vec<&str> =
        images.iter().filter_map(|l| if let Location::Object(u) = l { Some(u.as_str()) } else { None }).collect();
    let Some(first) = urls.first() else { return Ok(None) };
    let prefix = prefix_of(first);
    let names: Vec<String> = urls
        .iter()
        .filter_map(|u| u.strip_prefix(prefix))
        .filter(|n| !n.contains('/') && !n.is_empty())
        .map(str::to_owned)
        .collect();
    let Some(lease) = Lease::try_take(prefix, job, &names, binlog_from, env) else { return Ok(None) };
    // A prune that read the leases before this one was put may still delete what it names:
    // once such a prune has ended, what is gone is said now, rather than half-way through.
    if lease.wait_for_prunes(prefix, env)? {
        for u in &urls {
            let object = Object::open(u, &env.store)?;
            if !object.exists().with_context(|| format!("cannot reach {u}"))? {
                crate::bail!("{u} was deleted by a prune before the {job} could start: run it again");
            }
        }
    }
    Ok(Some(lease))
}

/// Writes the lease with a new expiry.
fn write(object: &Object, body: &Mutex<Body>, written: &AtomicI64) -> Result<()> {
    let t = now();
    let bytes = {
        let mut b = body.lock().unwrap_or_else(|e| e.into_inner());
        b.expires = t + LIFE;
        serde_json::to_vec(&*b)?
    };
    object.put(bytes).with_context(|| format!("cannot write the lease {}", object.url()))?;
    written.store(t, Ordering::Relaxed);
    Ok(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.notify_all();
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let _ = self.object.delete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(started: i64, expires: i64) -> Body {
        let protects = vec![];
        Body {
            job: "backup".into(),
            host: "h".into(),
            pid: 1,
            started,
            expires,
            protects,
            binlog_from: None,
            instance: None,
        }
    }

    #[test]
    fn a_lease_of_a_process_that_is_gone_is_told() {
        let mut b = body(now(), now() + LIFE);
        b.instance = instance();
        b.host = host_name();
        assert!(b.instance.is_some());
        b.pid = std::process::id();
        assert!(!b.gone(), "this process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        b.pid = child.id();
        child.wait().unwrap();
        assert!(b.gone(), "a process that ended");
        b.host = "a clone of this host".into();
        assert!(!b.gone(), "another host with the same boot id and namespace");
        b.host = host_name();
        for pid in [0, u32::MAX, 1 << 31] {
            let was = std::mem::replace(&mut b.pid, pid);
            assert!(!b.gone(), "pid {pid} names no single process");
            b.pid = was;
        }
        b.instance = Some("another boot".into());
        assert!(!b.gone(), "elsewhere, a pid means nothing here");
        b.instance = None;
        assert!(!b.gone(), "a lease that does not say where");
    }

    #[test]
    fn leases_are_in_force_until_they_expire() {
        let now = 1_000_000;
        assert!(body(now - 10, now + LIFE).active(now));
        // Expired, with the clocks' allowance.
        assert!(body(now - LIFE - 100, now - 30).active(now));
        assert!(!body(now - LIFE - 100, now - SKEW - 1).active(now));
    }

    #[test]
    fn prefixes_of_objects() {
        assert_eq!(prefix_of("s3://b/p/x.coffer"), "s3://b/p/");
        assert_eq!(prefix_of("s3://b/p/"), "s3://b/p/");
        assert_eq!(prefix_of("file:///srv/b/x.coffer"), "file:///srv/b/");
    }
}
