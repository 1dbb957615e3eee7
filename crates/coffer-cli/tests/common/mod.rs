//! Shared helpers for the CLI tests: running the binary, building trees, crafting images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn coffer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_remove("COFFER_KEY_FILE");
    c
}

/// Runs coffer with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = coffer().args(args).stdin(Stdio::null()).output().expect("run coffer");
    decode(out)
}

pub fn run_with_stdin(args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut child =
        coffer().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    decode(out)
}

fn decode(out: Output) -> (i32, Vec<u8>, String) {
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs and asserts the exit code; returns stderr.
#[track_caller]
pub fn expect(code: i32, args: &[&str]) -> String {
    let (got, _, err) = run(args);
    assert_eq!(got, code, "coffer {args:?} exited {got}, expected {code}; stderr: {err}");
    err
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Searchable by others, not listable: the private servers coffer starts run as the
        // mysql user, and reach their directories in here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let other = "ff".repeat(32);
        let f = Self { dir };
        f.write_secret("k.key", &format!("{KEY_HEX}\n"));
        f.write_secret("other.key", &format!("{other}\n"));
        f
    }
    /// Writes a file of mode 0600, as coffer wants secrets kept.
    pub fn write_secret(&self, rel: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(self.path(rel), text).unwrap();
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn s(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }
    pub fn key(&self) -> String {
        self.s("k.key")
    }
}

/// Every entry under `root`: relative path bytes, kind, size, mode, mtime (files and links),
/// and content digest or link target. The restore marker and temp files are left out.
/// (path, kind, size, mode, mtime, content digest or link target)
pub type Snapshot = Vec<(Vec<u8>, String, u64, u32, i64, Vec<u8>)>;

pub fn snapshot(root: &Path) -> Snapshot {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let (kind, content) = if md.is_dir() {
                stack.push(p.clone());
                ("dir", vec![])
            } else if md.file_type().is_symlink() {
                ("link", std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
            } else {
                ("file", coffer_crypto::sha256(&std::fs::read(&p).unwrap()).to_vec())
            };
            out.push((
                rel,
                kind.to_owned(),
                if md.is_dir() { 0 } else { md.size() },
                md.mode() & 0o7777,
                md.mtime(),
                content,
            ));
        }
    }
    out.sort();
    out
}

pub fn inode(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p).unwrap();
    (md.ino(), md.nlink())
}

/// Byte offsets of every frame of an image file: (offset, kind, body_len).
pub fn frames(image: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = vec![];
    let mut at = coffer_format::DATA_OFFSET as usize;
    while at + 8 <= image.len() {
        let len = u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, image[at], len));
        at += 8 + len;
    }
    out
}

pub mod live;
pub mod mariadb;
pub mod replication;
pub mod s3;
pub mod scenario;
pub mod table_scene;
pub mod tables;
pub mod tmpfs;

pub mod craft {
    //! Images that coffer's writer never makes (hostile entries), sealed for the tests' key with
    //! `coffer_image::craft::FrameSealer`.

    use coffer_crypto::MasterKey;
    use coffer_format::EntryMeta;
    use coffer_image::craft::FrameSealer;

    #[allow(unused_imports)] // Not every test binary crafts entries.
    pub use coffer_image::craft::meta;

    /// An image of `entries` for the key `master_hex`; a file's data (if any) is one chunk.
    pub fn image(master_hex: &str, entries: &[(EntryMeta, Option<&[u8]>)]) -> Vec<u8> {
        let mut s = FrameSealer::new(&MasterKey::from_hex(master_hex).unwrap(), 65536).unwrap();
        for (meta, data) in entries {
            s.entry(meta);
            if let Some(data) = data {
                s.chunk((0, data.len() as u64), data, true, false);
            }
        }
        s.auto_index();
        s.auto_end();
        s.into_bytes()
    }
}

/// A small file system for disk-full tests: a tmpfs when we may mount one (root).
pub struct SmallFs(pub std::path::PathBuf);

impl SmallFs {
    pub fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.into()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Waits until something listens on the loopback `port` (a server the test started).
pub fn await_listener(port: u16, what: &str, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The offset a resumed `coffer send` said it continues from ("... up to byte N ...").
pub fn resumed_from(stderr: &str) -> u64 {
    stderr
        .split("up to byte ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume offset in: {stderr}"))
}

/// A Prometheus sample as the `prometheus_client` parser reads it: name, labels, value; its
/// family's type and help.
pub type MetricSample = (String, std::collections::BTreeMap<String, String>, f64, String, String);

/// Parses a Prometheus text exposition with Python's `prometheus_client` (an independent
/// parser); panics if it refuses the text.
pub fn parse_metrics(text: &str) -> Vec<MetricSample> {
    use std::io::Write;
    const SCRIPT: &str = "import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([[s.name, s.labels, s.value, f.type, f.documentation]
                  for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Incompressible bytes (xorshift), the same for the same seed.
pub fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Spawns `receive` (a `coffer receive --listen 127.0.0.1:0 ...` command) with stdin closed and
/// stderr piped, and reads the first line it says, its address: the process, its port, and the
/// rest of its stderr.
pub fn listening(mut receive: Command) -> (std::process::Child, u16, std::io::BufReader<std::process::ChildStderr>) {
    use std::io::BufRead;
    let mut child = receive.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start coffer receive");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read the receiver's address");
    let port =
        line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("not listening: {line}"));
    (child, port, err)
}

/// Reads `err` to its end in a thread (a receiver must never block on a full pipe).
pub fn drained(mut err: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    })
}
