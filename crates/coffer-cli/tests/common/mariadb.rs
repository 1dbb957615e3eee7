//! A private MariaDB server for tests, from Debian's packages: its own datadir, socket and
//! options, never the system service. Shut down (cleanly, else killed) when dropped, even when
//! the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True if the server binaries are installed; CI sets COFFER_REQUIRE_MARIADB=1, which turns
/// their absence into a failure instead of a skipped test.
pub fn available() -> bool {
    let found = ["mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin"].iter().all(|b| which(b).is_some());
    if !found {
        assert!(
            std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(),
            "MariaDB is required (apt-get install mariadb-server mariadb-backup)"
        );
        eprintln!("skipped: MariaDB is not installed");
    }
    found
}

pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

pub struct Server {
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_else(|| "root".into())
}

impl Server {
    /// A `mariadb` client session on the server's socket, its input and output piped (rows in
    /// batch form, unbuffered): a test keeps a transaction or a lock open while it acts.
    pub fn session(&self) -> Child {
        Command::new(which("mariadb").expect("mariadb"))
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "--skip-column-names", "--unbuffered"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Creates a datadir under `dir` with `mariadb-install-db` and starts a server on it with
    /// the extra options `opts` (e.g. "--innodb-page-size=4k"), on a private socket, no TCP.
    pub fn start(dir: &Path, opts: &[String]) -> Server {
        let datadir = dir.join("data");
        std::fs::create_dir_all(&datadir).unwrap();
        let mut install = Command::new(which("mariadb-install-db").unwrap());
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--user={}", user()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            // Private temporary files: servers bootstrapped side by side never share /tmp.
            .arg(format!("--tmpdir={}", dir.display()));
        // Options that shape the files (page size, undo tablespaces) are needed at bootstrap too.
        let at_bootstrap = [
            "--innodb-page-size",
            "--innodb-checksum-algorithm",
            "--innodb-undo-tablespaces",
            "--innodb-data-file-path",
        ];
        for o in opts.iter().filter(|o| at_bootstrap.iter().any(|b| o.starts_with(b))) {
            install.arg(o);
        }
        let out = install.output().expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        let socket = dir.join("mysqld.sock");
        let mut server = Server { datadir, socket, dir: dir.into(), child: None, args: opts.to_vec() };
        server.launch();
        server
    }

    /// Starts a server on an existing datadir `dir/data` (a restored backup), with `opts`.
    pub fn open(dir: &Path, opts: &[String]) -> Server {
        let datadir = dir.join("data");
        let socket = dir.join("mysqld.sock");
        let mut server = Server { datadir, socket, dir: dir.into(), child: None, args: opts.to_vec() };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = self.dir.join("error.log");
        let mut cmd = Command::new(which("mariadbd").unwrap());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", self.dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--user={}", user()))
            .arg("--skip-networking")
            .arg(format!("--tmpdir={}", self.dir.display()))
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-log-file-size=48M")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start mariadbd");
        self.child = Some(child);
        let started = Instant::now();
        while !self.ping() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mariadbd exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mariadbd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        self.socket.exists()
            && Command::new(which("mariadb-admin").unwrap())
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "ping"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// Runs SQL; panics with the server's message if it fails. Returns tab-separated rows.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new(which("mariadb").unwrap())
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .expect("run mariadb");
        assert!(out.status.success(), "SQL failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Shuts down cleanly after a slow shutdown (purge done, every page flushed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new(which("mariadb").unwrap())
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "-e", "SET GLOBAL innodb_fast_shutdown = 0"])
                .status();
            self.admin_shutdown();
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if started.elapsed() > Duration::from_secs(120) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn admin_shutdown(&self) {
        let _ = Command::new(which("mariadb-admin").unwrap())
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "shutdown"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A failed test: no slow shutdown, just make sure nothing is left running.
            self.admin_shutdown();
            std::thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a key file for MariaDB's `file_key_management` plugin at `path` (mode 0600): keys 1
/// and 2, AES-256. With a `password`, the file is encrypted as the plugin reads it
/// (`openssl enc -aes-256-cbc -md sha1`) and the server needs `file_key_management_filekey`.
pub fn write_key_file(path: &Path, password: Option<&str>) {
    use std::os::unix::fs::PermissionsExt;
    let keys = format!("1;{}\n2;{}\n", "a1".repeat(32), "5c".repeat(32));
    match password {
        None => std::fs::write(path, keys).unwrap(),
        Some(pw) => {
            let plain = path.with_extension("plain");
            std::fs::write(&plain, keys).unwrap();
            let out = Command::new(which("openssl").expect("openssl"))
                .args(["enc", "-aes-256-cbc", "-md", "sha1", "-pass", &format!("pass:{pw}"), "-in"])
                .arg(&plain)
                .arg("-out")
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::remove_file(plain).unwrap();
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The options of a server that encrypts everything it can at rest with `file_key_management`
/// (the key file `keys`, `algorithm` AES_CBC or AES_CTR, its `password` if encrypted): tables,
/// the redo log, temporary tables, temporary files and the binary log.
pub fn encryption_options(keys: &Path, algorithm: &str, password: Option<&str>) -> Vec<String> {
    let mut opts: Vec<String> = [
        "--plugin-load-add=file_key_management".to_string(),
        format!("--file-key-management-filename={}", keys.display()),
        format!("--file-key-management-encryption-algorithm={algorithm}"),
        "--innodb-encrypt-tables=ON".into(),
        "--innodb-encrypt-log=ON".into(),
        "--innodb-encrypt-temporary-tables=ON".into(),
        "--encrypt-tmp-files=ON".into(),
        "--encrypt-binlog=ON".into(),
    ]
    .into();
    if let Some(pw) = password {
        opts.push(format!("--file-key-management-filekey={pw}"));
    }
    opts
}
