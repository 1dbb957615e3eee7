//! `--metrics-file` never holds up the run it describes (issue 26, item 7): a user who can only
//! read the metrics directory cannot stop a backup; a lock held by one of our own processes
//! delays the end by seconds at most, then fails the run in one line (the image stays); a FIFO
//! or a link at the file's name is refused at once, in one line, and left as it was.

mod common;

use common::*;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a backup of a few files may take here, on a loaded machine; the old code's hang
/// shows as a failure past it.
const BOUND: Duration = Duration::from_secs(60);

/// `coffer backup src -o IMAGE --metrics-file METRICS`, killed past [`BOUND`]: exit code and
/// stderr, or a failure saying it hung.
fn backup(fx: &Fixture, image: &str, metrics: &Path) -> (i32, String) {
    let mut child = coffer()
        .args(["backup", &fx.s("src"), "-o", &fx.s(image), "--key-file", &fx.key(), "--metrics-file"])
        .arg(metrics)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the backup hung on its metrics file: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn fixture() -> Fixture {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src/db")).unwrap();
    for i in 0..5 {
        std::fs::write(fx.path(&format!("src/db/t{i}.dat")), vec![b'a' + i as u8; 10_000]).unwrap();
    }
    std::fs::create_dir(fx.path("prom")).unwrap();
    fx
}

/// The lines of `stderr` that say an error: exactly one, which is returned.
#[track_caller]
fn one_error(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("coffer: error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_owned()
}

/// The system's Python, which `nobody` may run (a `python3` on root's PATH may be a shim in a
/// home directory).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A process of `nobody` holding `flock` on the directory `dir`, and on `lock_file` if it can
/// open it; what it said once it held them.
struct Holder(Child, String);

impl Holder {
    fn start(dir: &Path, lock_file: &Path) -> Holder {
        const SCRIPT: &str = "import fcntl, os, sys, time
d = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(d, fcntl.LOCK_EX)
try:
    f = os.open(sys.argv[2], os.O_RDONLY)
    fcntl.flock(f, fcntl.LOCK_EX)
    print('held both', flush=True)
except OSError as e:
    print('held the directory; the lock file: ' + e.strerror, flush=True)
time.sleep(600)";
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", SCRIPT])
            .arg(dir)
            .arg(lock_file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv");
        let mut said = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut said).unwrap();
        assert!(said.starts_with("held"), "the holder did not start: {said:?}");
        Holder(child, said)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A user who may only read the metrics directory holds `flock` on it (and on the lock file,
/// which it cannot open: coffer's, mode 0600): a backup with --metrics-file still completes,
/// and its metrics are written.
#[test]
fn a_reader_of_the_metrics_directory_cannot_hold_up_a_backup() {
    if !nix::unistd::geteuid().is_root() || !Path::new(SYSTEM_PYTHON).exists() {
        eprintln!("skipped: needs root and {SYSTEM_PYTHON} to run a process as nobody");
        return;
    }
    let fx = fixture();
    for d in [fx.dir.path(), &fx.path("prom")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let metrics = fx.path("prom/coffer.prom");
    let (code, err) = backup(&fx, "first.coffer", &metrics);
    assert_eq!(code, 0, "{err}");

    let holder = Holder::start(&fx.path("prom"), &fx.path("prom/.coffer.prom.lock"));
    let started = Instant::now();
    let (code, err) = backup(&fx, "second.coffer", &metrics);
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert!(holder.1.contains("Permission denied"), "nobody opened the lock file: {}", holder.1);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("coffer_last_run_success{command=\"backup\"} 1\n"), "{text}");
    assert!(fx.path("second.coffer").exists());
}

/// A lock held by another process of ours (a stuck run): the backup ends within seconds
/// anyway, exit code 1 and one line (the run succeeded, its metrics were not written), and the
/// image is in place.
#[test]
fn a_held_lock_fails_the_run_within_seconds_and_keeps_the_image() {
    use nix::fcntl::{Flock, FlockArg};
    let fx = fixture();
    let metrics = fx.path("prom/coffer.prom");
    let (code, err) = backup(&fx, "first.coffer", &metrics);
    assert_eq!(code, 0, "{err}");
    let before = std::fs::read_to_string(&metrics).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(fx.path("prom/.coffer.prom.lock"))
        .unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e).unwrap();

    let started = Instant::now();
    let (code, err) = backup(&fx, "second.coffer", &metrics);
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let line = one_error(&err);
    assert!(
        line.contains("the run succeeded, but its metrics were not written: cannot lock ")
            && line.contains("another process has held it"),
        "{line}"
    );
    assert!(fx.path("second.coffer").exists(), "the image stays");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), before);
    drop(held);
    let (code, err) = backup(&fx, "third.coffer", &metrics);
    assert_eq!(code, 0, "{err}");
}

/// A FIFO, a link to a file, and a link to a FIFO at the metrics file's name: the run ends at
/// once with one line that says what is there (exit code 1, its image in place), and leaves it
/// as it was.
#[test]
fn a_fifo_or_a_link_at_the_metrics_name_is_refused_at_once() {
    let fx = fixture();
    let fifo = fx.path("prom/fifo.prom");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let target = fx.path("target");
    std::fs::write(&target, "not metrics\n").unwrap();
    let link = fx.path("prom/link.prom");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let to_fifo = fx.path("prom/to-fifo.prom");
    std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();

    for (i, (path, said)) in
        [(&fifo, "is a FIFO"), (&link, "is a symbolic link"), (&to_fifo, "is a symbolic link")].into_iter().enumerate()
    {
        let image = format!("img{i}.coffer");
        let (code, err) = backup(&fx, &image, path);
        assert_eq!(code, 1, "{}: {err}", path.display());
        let line = one_error(&err);
        assert!(line.contains(&format!("{} {said}, not a metrics file", path.display())), "{line}");
        assert!(fx.path(&image).exists(), "{image}");
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(&to_fifo).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not metrics\n");
}
