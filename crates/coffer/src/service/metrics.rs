//! Prometheus text-format metrics of a run, for node_exporter's textfile collector: each run of a
//! command replaces its own samples in the file (those of other commands and profiles stay), and
//! the file is replaced whole, by rename, so the collector never reads half of one.
//!
//! Every sample carries `command` (and `profile`, when one was used) labels. Each run sets
//! `coffer_last_run_timestamp_seconds`, `coffer_last_run_success` (1 or 0),
//! `coffer_last_run_duration_seconds`, and one of `coffer_last_success_timestamp_seconds` /
//! `coffer_last_failure_timestamp_seconds`; the other one is carried over from the file, so an
//! alert on "no success for 26 hours" works across failed runs.

use crate::error::{Context, Error, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most of an existing metrics file that is read back (its other samples are kept).
const MAX_PREVIOUS: u64 = 4 << 20;
/// How long a run waits at most for another run's turn at the file: monitoring must never
/// hold up the job it monitors.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Never follow a link at the final name, never block on a FIFO or a device, never take a
/// terminal as the controlling one.
const SAFE_OPEN: i32 = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC;

const SUCCESS: &str = "coffer_last_success_timestamp_seconds";
const FAILURE: &str = "coffer_last_failure_timestamp_seconds";

/// The samples of one run of one command.
#[derive(Debug, Clone)]
pub struct Run {
    labels: String,
    started: Instant,
    samples: Vec<(&'static str, &'static str, f64)>,
}

impl Run {
    /// A run of `command` (such as "backup"), under `profile` if one was used; its duration
    /// counts from now.
    pub fn new(command: &str, profile: Option<&str>) -> Self {
        let mut labels = format!("command=\"{}\"", escape(command));
        if let Some(p) = profile {
            labels.push_str(&format!(",profile=\"{}\"", escape(p)));
        }
        Run { labels, started: Instant::now(), samples: Vec::new() }
    }

    /// Sets a gauge of this run (replacing an earlier value of the same name).
    pub fn set(&mut self, name: &'static str, help: &'static str, value: f64) {
        debug_assert!(valid_name(name), "{name}");
        self.samples.retain(|s| s.0 != name);
        self.samples.push((name, help, value));
    }

    /// The value set for `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.0 == name).map(|s| s.2)
    }

    /// The file's text after this run: `previous` (the file as it was) with this run's samples
    /// in place of the same labels' old ones. `now` is the run's end, in Unix seconds.
    pub fn render(&self, ok: bool, now: f64, previous: &str) -> String {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut carried = BTreeMap::new();
        for line in previous.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some((name, help)) = rest.split_once(' ') {
                    if valid_name(name) {
                        families.entry(name.to_owned()).or_default().help = help.to_owned();
                    }
                }
                continue;
            }
            let Some((name, labels, value)) = parse_sample(line) else { continue };
            if labels == self.labels {
                carried.insert(name.to_owned(), value.to_owned());
            } else {
                families.entry(name.to_owned()).or_default().samples.push((labels.to_owned(), value.to_owned()));
            }
        }
        let mut mine: Vec<(&str, &str, String)> = vec![
            ("coffer_last_run_timestamp_seconds", "When the last run of the command ended (Unix seconds).", num(now)),
            ("coffer_last_run_success", "1 if the last run of the command succeeded, else 0.", num(f64::from(ok))),
            (
                "coffer_last_run_duration_seconds",
                "How long the last run of the command took.",
                num(self.started.elapsed().as_secs_f64()),
            ),
        ];
        let (this, other) = if ok { (SUCCESS, FAILURE) } else { (FAILURE, SUCCESS) };
        mine.push((this, help_of(this), num(now)));
        if let Some(v) = carried.get(other) {
            mine.push((other, help_of(other), v.clone()));
        }
        mine.extend(self.samples.iter().map(|(n, h, v)| (*n, *h, num(*v))));
        for (name, help, value) in mine {
            let f = families.entry(name.to_owned()).or_default();
            f.help = help.to_owned();
            f.samples.push((self.labels.clone(), value));
        }
        let mut out = String::new();
        for (name, f) in &families {
            if f.samples.is_empty() {
                continue;
            }
            if !f.help.is_empty() {
                out.push_str(&format!("# HELP {name} {}\n", f.help));
            }
            out.push_str(&format!("# TYPE {name} gauge\n"));
            for (labels, value) in &f.samples {
                out.push_str(&format!("{name}{{{labels}}} {value}\n"));
            }
        }
        out
    }

    /// Writes this run into the metrics file at `path` (see the module's description). Runs
    /// that write the same file at once take turns, through the lock file `.NAME.lock` beside
    /// it; one that cannot have its turn within 5 s (`LOCK_WAIT`) fails, it does not wait longer.
    pub fn write(&self, path: &Path, ok: bool) -> Result<()> {
        self.write_waiting(path, ok, LOCK_WAIT)
    }

    fn write_waiting(&self, path: &Path, ok: bool, wait: Duration) -> Result<()> {
        let _lock = lock_beside(path, wait)?;
        let previous = read_previous(path)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let text = self.render(ok, now.floor(), &previous);
        // Created exclusively (O_EXCL: never through a link), renamed over the final name.
        let out = crate::AtomicFile::create(path, true, 0o644)?;
        std::io::Write::write_all(&mut &out, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.commit()
    }
}

/// The lock file of the metrics file `path`: `.NAME.lock` in the same directory.
fn lock_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut lock = std::ffi::OsString::from(".");
    lock.push(name);
    lock.push(".lock");
    Ok(dir.join(lock))
}

/// Takes the lock of the metrics file `path` (its lock file, created mode 0600 if absent),
/// trying without blocking until `wait` has passed. The lock file must be a regular file of
/// this user that no one else can open: anyone who could open it could hold the lock.
fn lock_beside(path: &Path, wait: Duration) -> Result<Flock<File>> {
    let lock = lock_path(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(SAFE_OPEN)
        .open(&lock)
        .map_err(|e| refused(&lock, e, "coffer's lock file"))?;
    let meta = file.metadata().with_context(|| format!("cannot read {}", lock.display()))?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(Error::msg(format!(
            "{} is not coffer's lock file (a regular file of this user, mode 0600): remove it",
            lock.display()
        )));
    }
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(10);
    let mut file = file;
    loop {
        file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((f, Errno::EINTR)) => f,
            Err((f, Errno::EWOULDBLOCK)) => f,
            Err((_, e)) => {
                return Err(Error::from(std::io::Error::from(e)).context(format!("cannot lock {}", lock.display())))
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::msg(format!(
                "cannot lock {}: another process has held it for {} s",
                lock.display(),
                wait.as_secs_f64()
            )));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The error of an open of `path` that failed: a link at the name is said as such.
fn refused(path: &Path, e: std::io::Error, what: &str) -> Error {
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        return Error::msg(format!("{} is a symbolic link, not {what}", path.display()));
    }
    if e.raw_os_error() == Some(nix::libc::ENXIO) {
        return Error::msg(format!("{} is a socket or a device, not {what}", path.display()));
    }
    Error::from(e).context(format!("cannot open {}", path.display()))
}

/// What a file that is not a regular file is, for a message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[derive(Debug, Default)]
struct Family {
    help: String,
    samples: Vec<(String, String)>,
}

fn help_of(name: &str) -> &'static str {
    if name == SUCCESS {
        "When the command last succeeded (Unix seconds)."
    } else {
        "When the command last failed (Unix seconds)."
    }
}

/// The file as it is (empty if absent); one that is not ours to read back is refused: only a
/// regular file is read (never through a link, never waiting on a FIFO or a device).
fn read_previous(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = match OpenOptions::new().read(true).custom_flags(SAFE_OPEN).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(refused(path, e, "a metrics file")),
    };
    let meta = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        return Err(Error::msg(format!("{} is {}, not a metrics file", path.display(), kind_of(&meta))));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PREVIOUS + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_PREVIOUS {
        return Err(Error::msg(format!(
            "{} is larger than a metrics file ({} MiB)",
            path.display(),
            MAX_PREVIOUS >> 20
        )));
    }
    // A file that is not text keeps nothing of itself.
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

/// `name{labels} value` (labels as written, without braces); anything else is `None`.
fn parse_sample(line: &str) -> Option<(&str, &str, &str)> {
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let (name, labels) = (&line[..open], line.get(open + 1..close)?);
    let value = line[close + 1..].trim();
    (valid_name(name) && !value.is_empty() && value.parse::<f64>().is_ok() && !labels.contains('\n'))
        .then_some((name, labels, value))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// A value as the text format writes it: integers without a fraction.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_replaces_its_own_samples_and_keeps_the_others() {
        let mut backup = Run::new("backup", Some("prod"));
        backup.set("coffer_bytes_read", "Bytes read.", 1024.0);
        let first = backup.render(true, 100.0, "");
        assert!(first.contains("coffer_bytes_read{command=\"backup\",profile=\"prod\"} 1024\n"), "{first}");
        assert!(first.contains("coffer_last_success_timestamp_seconds{command=\"backup\",profile=\"prod\"} 100\n"));
        assert!(!first.contains(FAILURE));

        let mut prune = Run::new("prune", None);
        prune.set("coffer_prune_deleted", "Backups deleted.", 2.0);
        let both = prune.render(true, 150.0, &first);
        assert!(both.contains("coffer_bytes_read{command=\"backup\",profile=\"prod\"} 1024\n"), "{both}");
        assert!(both.contains("coffer_prune_deleted{command=\"prune\"} 2\n"));
        assert_eq!(both.matches("# TYPE coffer_last_run_success gauge").count(), 1);

        // A failed backup: its failure time is now, its last success is carried over, its old
        // byte count is gone.
        let failed = Run::new("backup", Some("prod")).render(false, 200.0, &both);
        assert!(failed.contains("coffer_last_failure_timestamp_seconds{command=\"backup\",profile=\"prod\"} 200\n"));
        assert!(failed.contains("coffer_last_success_timestamp_seconds{command=\"backup\",profile=\"prod\"} 100\n"));
        assert!(failed.contains("coffer_last_run_success{command=\"backup\",profile=\"prod\"} 0\n"));
        assert!(!failed.contains("coffer_bytes_read"), "{failed}");
        assert!(failed.contains("coffer_prune_deleted{command=\"prune\"} 2\n"));
    }

    #[test]
    fn junk_in_the_previous_file_is_dropped() {
        let previous = "garbage\nx{y} notanumber\n1bad{a=\"b\"} 3\ncoffer_ok{command=\"other\"} 5\n";
        let out = Run::new("drill", None).render(true, 1.0, previous);
        assert!(out.contains("coffer_ok{command=\"other\"} 5\n"));
        assert!(!out.contains("garbage") && !out.contains("1bad") && !out.contains("notanumber"), "{out}");
    }

    #[test]
    fn values_and_labels_are_written_as_the_format_says() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    /// `f`'s result, or a failure if it takes longer than `secs` (a hang shows as a failure).
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(secs)).unwrap_or_else(|_| panic!("still waiting after {secs} s"))
    }

    fn write_in(path: &Path, wait: Duration) -> Result<()> {
        let path = path.to_owned();
        within(20, move || Run::new("backup", None).write_waiting(&path, true, wait))
    }

    #[test]
    fn a_lock_on_the_directory_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        // What anyone who can read the directory can take.
        let _held = Flock::lock(File::open(dir.path()).unwrap(), FlockArg::LockExclusive).unwrap();
        write_in(&path, LOCK_WAIT).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("coffer_last_run_success{command=\"backup\"} 1\n"));
        let lock = std::fs::symlink_metadata(dir.path().join(".m.prom.lock")).unwrap();
        assert!(lock.is_file() && lock.mode() & 0o777 == 0o600, "{:o}", lock.mode());
    }

    #[test]
    fn a_held_lock_is_waited_for_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        write_in(&path, LOCK_WAIT).unwrap();
        let open_lock = || File::open(dir.path().join(".m.prom.lock")).unwrap();
        let held = Flock::lock(open_lock(), FlockArg::LockExclusive).unwrap();
        let started = Instant::now();
        let e = write_in(&path, Duration::from_millis(300)).unwrap_err().one_line();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(e.contains("cannot lock") && e.contains("another process") && !e.contains('\n'), "{e}");
        // Released while a run waits: that run writes.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        write_in(&path, Duration::from_secs(5)).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn only_a_regular_file_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.prom");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "kept\n").unwrap();
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo_link = dir.path().join("fifo-link.prom");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        let subdir = dir.path().join("dir.prom");
        std::fs::create_dir(&subdir).unwrap();
        for (path, said) in [
            (&fifo, "is a FIFO"),
            (&link, "is a symbolic link"),
            (&fifo_link, "is a symbolic link"),
            (&subdir, "is a directory"),
        ] {
            let e = write_in(path, LOCK_WAIT).unwrap_err().one_line();
            assert!(e.contains(said) && !e.contains('\n'), "{}: {e}", path.display());
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept\n");
    }

    #[test]
    fn a_lock_file_that_is_not_coffers_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let lock = dir.path().join(".m.prom.lock");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        let e = write_in(&path, LOCK_WAIT).unwrap_err().one_line();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(!elsewhere.exists() && !path.exists());

        std::fs::remove_file(&lock).unwrap();
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = write_in(&path, LOCK_WAIT).unwrap_err().one_line();
        assert!(e.contains("is not coffer's lock file"), "{e}");
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&lock, Some(65534), None).unwrap();
            let e = write_in(&path, LOCK_WAIT).unwrap_err().one_line();
            assert!(e.contains("is not coffer's lock file"), "{e}");
        }
    }

    proptest::proptest! {
        /// Whatever the file held before (it may be anyone's), a run renders, keeps only
        /// well-formed samples, and its own samples read back.
        #[test]
        fn any_previous_file_renders(previous in ".{0,400}", lines in proptest::collection::vec("[a-z_]{1,8}\\{[a-z]{1,4}=\"[^\"\n]{0,6}\"\\} -?[0-9]{1,4}(\\.[0-9])?", 0..6)) {
            let text = format!("{previous}\n{}\n", lines.join("\n"));
            let out = Run::new("backup", Some("p")).render(true, 5.0, &text);
            let own = "coffer_last_run_success{command=\"backup\",profile=\"p\"} 1\n";
            proptest::prop_assert!(out.contains(own), "{}", out);
            for line in out.lines().filter(|l| !l.starts_with('#')) {
                proptest::prop_assert!(parse_sample(line).is_some(), "{line}");
            }
            for l in &lines {
                proptest::prop_assert!(out.contains(l.as_str()) || !valid_name(&l[..l.find('{').unwrap()]), "{l} lost");
            }
        }
    }
}
