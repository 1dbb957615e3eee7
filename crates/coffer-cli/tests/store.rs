//! Images in object storage, against a real S3 server process on loopback (`moto_server`, from
//! PyPI's `moto[server]`): multipart uploads, ranged reads through the index, and failures.
//! Skipped when moto_server is missing, unless COFFER_REQUIRE_S3=1 (CI).

mod common;

use common::mariadb::{self, Server};
use common::s3::S3;
use common::*;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 23 MB in a few files: more 5 MiB parts than the 2 uploads in flight of these tests.
fn tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("db/sub")).unwrap();
    for (name, len) in [("db/t1.dat", 15 << 20), ("db/t2.dat", 8 << 20), ("db/sub/small", 100)] {
        let mut v = vec![0u8; len];
        coffer_crypto::random(&mut v).unwrap();
        std::fs::write(root.join(name), v).unwrap();
    }
}

const PARTS: [&str; 4] = ["--part-size", "5M", "--upload-concurrency", "2"];

#[test]
fn images_go_to_and_come_from_a_bucket() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let url = "s3://bkt/prod/one.coffer";
    let (k, src) = (fx.key(), fx.s("src"));
    let mut args = vec!["backup", &src, "-o", url, "--key-file", &k];
    args.extend(PARTS);
    let err = s3.expect(0, &args);
    assert!(err.contains(url), "{err}");
    // An existing object is not replaced without --force.
    let err = s3.expect(1, &args);
    assert!(err.contains("already exists") && err.lines().count() == 1, "{err}");

    // Read back: list and extract through the index (ranged reads), verify and restore as a stream.
    let out = s3.coffer().args(["list", url, "--key-file", &k]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5, "{out:?}");
    s3.expect(0, &["verify", url, "--key-file", &k]);
    s3.expect(0, &["validate", url, "--key-file", &k]);
    let out = s3.coffer().args(["info", url, "--key-file", &k]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    s3.expect(0, &["restore", url, "--to", &fx.s("dst"), "--key-file", &k]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
    s3.expect(0, &["extract", url, "db/t2.dat", "--to", &fx.s("x"), "--key-file", &k]);
    assert_eq!(std::fs::read(fx.path("x/db/t2.dat")).unwrap(), std::fs::read(fx.path("src/db/t2.dat")).unwrap());
    // The wrong key is told apart (exit 3), through the object too.
    s3.expect(3, &["verify", url, "--key-file", &fx.s("other.key")]);

    // A stream under a prefix: coffer names the object by time.
    let mut child = s3
        .coffer()
        .args(["backup", "-", "--name", "dump.sql", "-o", "s3://bkt/dumps/", "--key-file", &k])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&vec![b'x'; 7 << 20]).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let named = err.split(" to ").nth(1).and_then(|r| r.split(": ").next()).unwrap().to_owned();
    // Its start time and 8 random hex digits: backups started in one second have names of their own.
    let tag = named.strip_suffix(".coffer").and_then(|n| n.rsplit_once("Z-")).map(|(_, t)| t).unwrap_or_default();
    assert!(named.starts_with("s3://bkt/dumps/20") && tag.len() == 8, "{named}");
    assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{named}");
    let out = s3.coffer().args(["extract", &named, "dump.sql", "--stdout", "--key-file", &k]).output().unwrap();
    assert_eq!(out.stdout, vec![b'x'; 7 << 20]);

    // Missing things: a bucket, an object.
    let err = s3.expect(1, &["backup", &src, "-o", "s3://nobucket/x.coffer", "--key-file", &k]);
    assert!(err.lines().count() == 1 && err.contains("no such bucket"), "{err}");
    let err = s3.expect(1, &["restore", "s3://bkt/none.coffer", "--to", &fx.s("n"), "--key-file", &k]);
    assert!(err.contains("does not exist") && err.lines().count() == 1, "{err}");
    assert!(!fx.path("n").exists());
}

#[test]
fn a_tampered_object_is_found_out() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let img = fx.s("img.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key()]);
    let mut bytes = std::fs::read(&img).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    assert_eq!(s3.http("PUT", "/bkt/bad.coffer", &bytes).unwrap().0, 200);
    let err = s3.expect(4, &["verify", "s3://bkt/bad.coffer", "--key-file", &fx.key()]);
    assert!(err.contains("corrupt") && err.lines().count() == 1, "{err}");
    let err = s3.expect(4, &["restore", "s3://bkt/bad.coffer", "--to", &fx.s("dst"), "--key-file", &fx.key()]);
    assert!(err.contains("incomplete"), "{err}");
    assert!(fx.path("dst/.coffer-restore-incomplete").exists());
}

#[test]
fn an_interrupted_upload_leaves_no_object_and_no_parts() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let mut args = vec!["backup", "-", "-o", "s3://bkt/int.coffer", "--compress", "none"];
    let k = fx.key();
    args.extend(["--key-file", &k]);
    args.extend(PARTS);
    let mut child = s3.coffer().args(&args).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Enough for a few parts to be uploaded, then the stream stays open.
    stdin.write_all(&vec![1u8; 16 << 20]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s3.uploads_in_progress("bkt") == 0 {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    // The next write sees the interrupt.
    let _ = stdin.write_all(&vec![1u8; 6 << 20]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted") && err.lines().count() == 1, "{err}");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "the multipart upload was aborted");
    assert_eq!(s3.http("HEAD", "/bkt/int.coffer", b"").unwrap().0, 404);
}

#[test]
fn a_server_that_dies_fails_uploads_and_downloads_cleanly() {
    let Some(mut s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    // Large enough that moto, serving one 5 MiB range at a time, is still at it when killed.
    let mut big = vec![0u8; 48 << 20];
    coffer_crypto::random(&mut big).unwrap();
    std::fs::write(fx.path("src/db/big.dat"), big).unwrap();
    let (k, src) = (fx.key(), fx.s("src"));
    let mut args = vec!["backup", &src, "-o", "s3://bkt/a.coffer", "--key-file", &k, "--compress", "none"];
    args.extend(PARTS);
    s3.expect(0, &args);

    // Mid-download: the restore fails with one line, its target marked incomplete.
    let child = s3
        .coffer()
        .args(["restore", "s3://bkt/a.coffer", "--to", &fx.s("dst"), "--key-file", &k])
        // The retry window is the retry timeout plus one request's: both short, so that the
        // restore gives up long before its lease is due for renewal (a warning line).
        .args(["--part-size", "5M", "--upload-concurrency", "1", "--store-retry-timeout", "1", "--store-timeout", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fx.path("dst/.coffer-restore-incomplete").exists() {
        assert!(Instant::now() < deadline, "the restore did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = s3.child.kill();
    let _ = s3.child.wait();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.contains("incomplete"), "{err}");
    assert!(fx.path("dst/.coffer-restore-incomplete").exists());

    // The server gone: a backup fails with one line, exit 1.
    args[3] = "s3://bkt/b.coffer";
    let mut with_timeout = args.clone();
    with_timeout.extend(["--store-retry-timeout", "1", "--store-timeout", "5"]);
    let err = s3.expect(1, &with_timeout);
    assert!(err.lines().count() == 1, "{err}");
}

/// An `s3s-fs` server (crates.io; it checks signatures and keeps its objects in a directory, so
/// it can be killed and started again on the same data), access key "right".
struct S3s {
    child: Child,
    port: u16,
}

impl S3s {
    fn binary() -> Option<std::path::PathBuf> {
        let bin = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo/bin/s3s-fs"));
        let bin = bin.filter(|p| p.exists());
        if bin.is_none() {
            assert!(std::env::var_os("COFFER_REQUIRE_S3").is_none(), "s3s-fs is required (COFFER_REQUIRE_S3=1)");
            eprintln!("s3s-fs not found: skipped");
        }
        bin
    }

    fn start(bin: &std::path::Path, root: &std::path::Path, port: u16) -> Self {
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "right", "--secret-key", "rightsecret"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        await_listener(port, "s3s-fs", Duration::from_secs(30));
        Self { child, port }
    }

    fn coffer(&self, secret: &str) -> Command {
        let mut c = coffer();
        c.args(["--store-retry-timeout", "1"])
            .env("AWS_ACCESS_KEY_ID", "right")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_CA_BUNDLE")
            .env("COFFER_S3_ENDPOINT", format!("http://127.0.0.1:{}", self.port));
        c
    }
}

impl Drop for S3s {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wrong credentials, against a server that checks them (moto does not): one line, exit 1,
/// nothing stored.
#[test]
fn wrong_credentials_are_refused() {
    let Some(bin) = S3s::binary() else { return };
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("root/bucket1")).unwrap();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/a"), b"data").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = S3s::start(&bin, &fx.path("root"), port);
    let backup = |secret: &str| {
        server
            .coffer(secret)
            .args(["backup", &fx.s("src"), "-o", "s3://bucket1/a.coffer", "--key-file", &fx.key()])
            .output()
            .unwrap()
    };
    let out = backup("wrongsecret");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.contains("s3://bucket1/a.coffer"), "{err}");
    assert!(!fx.path("root/bucket1/a.coffer").exists());
    // The right ones work: the same server, the same command.
    let out = backup("rightsecret");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fx.path("root/bucket1/a.coffer").exists());
    // Or from the AWS CLI's files, for a named profile, when the environment has no key.
    std::fs::create_dir_all(fx.path("aws")).unwrap();
    fx.write_secret("aws/credentials", "[default]\naws_access_key_id = right\naws_secret_access_key = wrongsecret\n\n[ops]\naws_access_key_id = right\naws_secret_access_key = rightsecret\n");
    fx.write_secret("aws/config", "[profile ops]\nregion = us-east-1\n");
    let from_files = |profile: &str| {
        server
            .coffer("unused")
            .args(["verify", "s3://bucket1/a.coffer", "--key-file", &fx.key()])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .env("AWS_SHARED_CREDENTIALS_FILE", fx.path("aws/credentials"))
            .env("AWS_CONFIG_FILE", fx.path("aws/config"))
            .env("AWS_PROFILE", profile)
            .output()
            .unwrap()
    };
    let out = from_files("ops");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(from_files("default").status.code(), Some(1), "the default profile holds the wrong secret");
}

/// The server killed while parts are in flight: the backup fails with one line, and once the
/// server is back on the same data, there is no object.
#[test]
fn a_server_killed_mid_upload_leaves_no_object() {
    let Some(bin) = S3s::binary() else { return };
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("root/bucket1")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = S3s::start(&bin, &fx.path("root"), port);
    let mut child = server
        .coffer("rightsecret")
        .args(["backup", "-", "-o", "s3://bucket1/cut.coffer", "--compress", "none", "--key-file", &fx.key()])
        .args(PARTS)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![3u8; 16 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.child.kill();
    let _ = server.child.wait();
    // The stream goes on; its next parts find no server.
    let _ = stdin.write_all(&vec![3u8; 16 << 20]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.contains("no image was left"), "{err}");
    let server = S3s::start(&bin, &fx.path("root"), port);
    let out = server
        .coffer("rightsecret")
        .args(["verify", "s3://bucket1/cut.coffer", "--key-file", &fx.key()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

/// A hot backup of a live MariaDB server straight into a bucket (under a prefix), restored and
/// prepared from it, and started: the tables match.
#[test]
fn a_live_server_backs_up_to_a_bucket_and_restores_from_it() {
    if !mariadb::available() || mariadb::which("mariadb-backup").is_none() {
        assert!(std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(), "MariaDB and mariadb-backup are required");
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("live");
    let fx = Fixture::new();
    let mut server = Server::start(&fx.path("src"), &[]);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT); \
         INSERT INTO d.t (v) SELECT REPEAT(CONCAT('row ', seq), 50) FROM d.seq_1_to_20000;",
    );
    let want = server.sql("CHECKSUM TABLE d.t");
    let sock = server.socket.to_str().unwrap().to_owned();
    let k = fx.key();
    let mut args = vec!["backup", "--mysql", "-S", &sock, "-u", "root", "-o", "s3://live/prod/", "--key-file", &k];
    args.extend(PARTS);
    let err = s3.expect(0, &args);
    let summary = err.lines().find(|l| l.starts_with("coffer: backed up")).unwrap();
    let url = summary.split(" to ").nth(1).and_then(|r| r.split(": ").next()).unwrap().to_owned();
    assert!(url.starts_with("s3://live/prod/"), "{err}");
    server.stop();
    let data = fx.path("dst/data");
    let err = s3.expect(0, &["restore", &url, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &k]);
    assert!(err.contains("prepared"), "{err}");
    let restored = Server::open(&fx.path("dst"), &[]);
    assert_eq!(restored.sql("CHECKSUM TABLE d.t"), want);
    let info = s3.coffer().args(["info", &url, "--key-file", &k, "--json"]).output().unwrap();
    assert_eq!(info.status.code(), Some(0), "{info:?}");
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("mariabackup")
            || String::from_utf8_lossy(&info.stdout).contains("mariadb-backup"),
        "{info:?}"
    );
}

/// A chain in a bucket: a full and two incrementals of a live server under a prefix, each
/// building on the newest; the catalog shows the chain (with and without a key), the newest
/// restores through it, and prune keeps the chain whole until a new full makes it unneeded.
#[test]
fn a_chain_under_a_prefix_restores_and_prunes_whole() {
    if !mariadb::available() || mariadb::which("mariadb-backup").is_none() {
        assert!(std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(), "MariaDB and mariadb-backup are required");
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("chain");
    let fx = Fixture::new();
    let server = Server::start(&fx.path("src"), &[]);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT); \
         INSERT INTO d.t (v) SELECT REPEAT(CONCAT('row ', seq), 50) FROM d.seq_1_to_20000;",
    );
    let sock = server.socket.to_str().unwrap().to_owned();
    let k = fx.key();
    let backup = |extra: &[&str]| {
        // Names under a prefix are the time to the second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut args = vec!["backup", "--mysql", "-S", &sock, "-u", "root", "-o", "s3://chain/db/", "--key-file", &k];
        args.extend(extra);
        let err = s3.expect(0, &args);
        let summary = err.lines().find(|l| l.starts_with("coffer: backed up")).unwrap();
        (summary.split(" to ").nth(1).and_then(|r| r.split(": ").next()).unwrap().to_owned(), err)
    };
    backup(&["--incremental"]);
    server.sql("UPDATE d.t SET v = CONCAT(v, 'x') WHERE id % 7 = 0");
    let (inc1, err) = backup(&["--incremental"]);
    assert!(err.contains("taking incremental backup 1"), "{err}");
    server.sql("INSERT INTO d.t (v) SELECT 'later' FROM d.seq_1_to_1000");
    let (inc2, err) = backup(&["--incremental"]);
    assert!(err.contains("taking incremental backup 2") && err.contains(&inc1), "{err}");
    let want = server.sql("CHECKSUM TABLE d.t");

    // The catalog shows the chain, without a key (the records' links) and with one.
    for key in [&[][..], &["--key-file", &k][..]] {
        let out = s3.coffer().args(["catalog", "s3://chain/db/"]).args(key).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(text.contains("incremental 2 of") && text.contains("incremental 1 of"), "{text}");
        assert!(text.contains(": full + 2 later backup(s), depth 2"), "{text}");
    }
    // The newest restores through its chain, resolved from the prefix.
    let data = fx.path("dst/data");
    let err = s3.expect(0, &["restore", &inc2, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &k]);
    assert!(err.contains("restoring a chain of 3"), "{err}");
    let restored = Server::open(&fx.path("dst"), &[]);
    assert_eq!(restored.sql("CHECKSUM TABLE d.t"), want);
    drop(restored);
    let out = s3.expect(0, &["verify", &inc2, "--chain", "--key-file", &k]);
    assert!(out.contains("chain of 3 backups is linked"), "{out}");

    // Prune keeps what the newest needs: its whole chain.
    let count = |s3: &S3| {
        let out = s3.coffer().args(["catalog", "s3://chain/db/", "-q"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(".coffer")).count()
    };
    let err = s3.expect(0, &["prune", "s3://chain/db/", "--keep-last", "1"]);
    assert!(err.contains("needed by"), "{err}");
    assert_eq!(count(&s3), 3, "{err}");
    // A new full: the old chain is no longer needed, and goes whole.
    backup(&[]);
    let err = s3.expect(0, &["prune", "s3://chain/db/", "--keep-last", "1"]);
    assert_eq!(count(&s3), 1, "{err}");
    assert!(err.contains("deleted 3 of 4"), "{err}");
}

/// Backups under a prefix: the catalog lists them (details with a key), prune keeps what its
/// rules say, prints its plan, and deletes nothing with --dry-run.
#[test]
fn catalog_and_prune_a_prefix() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("many");
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/a"), b"data").unwrap();
    let (k, src) = (fx.key(), fx.s("src"));
    let names = ["01T00-00-00", "02T00-00-00", "02T12-00-00", "05T00-00-00", "10T00-00-00", "20T00-00-00"];
    for n in names {
        s3.expect(0, &["backup", &src, "-o", &format!("s3://many/p/2026-11-{n}Z.coffer"), "--key-file", &k]);
    }
    // Something else under the prefix is not a backup.
    assert_eq!(s3.http("PUT", "/many/p/notes.txt", b"hello").unwrap().0, 200);

    let out = s3.coffer().args(["catalog", "s3://many/p/"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("2026-11-20 00:00:00") && lines[5].starts_with("2026-11-01 00:00:00"), "{text}");
    let catalog = |s3: &S3| {
        let out = s3.coffer().args(["catalog", "s3://many/p/", "--json", "--key-file", &k]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (v, _) = catalog(&s3);
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(v[0]["files"], 1);
    assert_eq!(v[0]["data_bytes"], 4);
    assert_eq!(v[0]["key_slots"], 1);
    assert!(v[0]["url"].as_str().unwrap().starts_with("s3://many/p/2026-11-20"));
    assert!(v.as_array().unwrap().iter().all(|b| b["metadata"] == "record"), "{v}");
    // A record that does not open (damaged, or another image's): a warning, then the index.
    s3.expect(0, &["backup", &src, "-o", "s3://many/p/2026-11-05T00-00-00Z.coffer.meta", "--force", "--key-file", &k]);
    let (v, err) = catalog(&s3);
    assert_eq!(v[2]["metadata"], "index", "{v}");
    assert_eq!(v[2]["files"], 1);
    assert!(err.contains("2026-11-05T00-00-00Z.coffer") && err.contains("catalog record"), "{err}");
    assert_eq!(v[1]["metadata"], "record");

    let rules = ["--keep-last", "2", "--keep-daily", "3"];
    let mut dry = vec!["prune", "s3://many/p/", "--dry-run"];
    dry.extend(rules);
    // Without a key, a kept backup whose record does not read might build on older ones: they
    // are all kept.
    let err = s3.expect(0, &dry);
    assert_eq!(err.lines().filter(|l| l.contains("coffer: delete")).count(), 0, "{err}");
    assert!(err.contains("whose chain is unknown"), "{err}");
    // With one, its index says it is a backup of its own.
    dry.extend(["--key-file", &k]);
    let err = s3.expect(0, &dry);
    assert_eq!(err.lines().filter(|l| l.contains("coffer: delete")).count(), 3, "{err}");
    assert!(err.contains("nothing was"), "{err}");
    let count = |s3: &S3| {
        let out = s3.coffer().args(["catalog", "s3://many/p/", "-q"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(count(&s3), 6, "a dry run deletes nothing");
    let mut real = vec!["prune", "s3://many/p/", "--json", "--key-file", &k];
    real.extend(rules);
    let out = s3.coffer().args(&real).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&str> = plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["keep"] == true)
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["2026-11-20T00-00-00Z.coffer", "2026-11-10T00-00-00Z.coffer", "2026-11-05T00-00-00Z.coffer"]);
    assert_eq!(count(&s3), 3);
    // Records went with their images.
    let (_, listing) = s3.http("GET", "/many?prefix=p/", b"").unwrap();
    assert_eq!(listing.matches(".coffer.meta</Key>").count(), 3, "{listing}");
    assert!(!listing.contains("2026-11-01T00-00-00Z.coffer.meta"), "{listing}");
    // (moto answers 403 to an anonymous read of an object that exists, 404 when it does not.)
    assert_ne!(s3.http("GET", "/many/p/notes.txt", b"").unwrap().0, 404, "not a backup: left alone");

    // No rule, or not a prefix: refused.
    s3.expect(2, &["prune", "s3://many/p/"]);
    s3.expect(2, &["prune", "s3://many/p", "--keep-last", "1"]);
}

/// Key-slot changes on an object rewrite its header alone: on S3 the store copies everything
/// after it from the object itself (5 MiB are sent, whatever the image's size); the old key no
/// longer opens it, the new one does, and the catalog record still opens (it has no slots of
/// its own). Against s3s-fs, which checks the signatures of the requests coffer signs itself.
#[test]
fn key_changes_on_an_object_rewrite_only_its_header() {
    let Some(bin) = S3s::binary() else { return };
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("root/keys")).unwrap();
    tree(&fx.path("src"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = S3s::start(&bin, &fx.path("root"), port);
    let run = |args: &[&str]| {
        let out = server.coffer("rightsecret").args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
    };
    let (k1, k2) = (fx.key(), fx.s("other.key"));
    let url = "s3://keys/db.coffer";
    let (code, err, _) = run(&["backup", &fx.s("src"), "-o", url, "--key-file", &k1, "--part-size", "5M"]);
    assert_eq!(code, 0, "{err}");
    let stored = fx.path("root/keys/db.coffer");
    let before = std::fs::read(&stored).unwrap();
    assert!(before.len() > 20 << 20);
    assert!(fx.path("root/keys/db.coffer.meta").exists(), "a catalog record beside the image");

    let (code, err, _) = run(&["key", "rotate", url, "--key-file", &k1, "--new-key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("copied by the store itself") && err.contains("5.00 MiB sent"), "{err}");
    let after = std::fs::read(&stored).unwrap();
    assert_eq!(after.len(), before.len());
    assert_ne!(after[..16384], before[..16384], "a new header");
    assert!(after[16384..] == before[16384..], "the frames are untouched");
    assert_eq!(run(&["verify", url, "--key-file", &k2]).0, 0);
    let (code, err, _) = run(&["verify", url, "--key-file", &k1]);
    assert_eq!(code, 3, "the old key no longer opens it: {err}");
    let (code, err, _) = run(&["key", "rotate", url, "--key-file", &k1, "--new-key-file", &k2]);
    assert_eq!(code, 3, "{err}");
    assert!(std::fs::read(&stored).unwrap() == after, "a refused change changes nothing");

    // The object replaced while its header is being rewritten: the rewrite is refused, and the
    // new object is left as it is.
    let slow = server
        .coffer("rightsecret")
        .args(["key", "rotate", url, "--key-file", &k2, "--new-key-file", &k1])
        .env("COFFER_TEST_PAUSE_BEFORE_COMPLETE_MS", "3000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(fx.path("src/db/sub/small"), b"changed").unwrap();
    let (code, err, _) = run(&["backup", &fx.s("src"), "-o", url, "--key-file", &k2, "--force", "--part-size", "5M"]);
    assert_eq!(code, 0, "{err}");
    let replaced = std::fs::read(&stored).unwrap();
    let out = slow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("PreconditionFailed"), "{err}");
    assert!(std::fs::read(&stored).unwrap() == replaced, "the newer object is left alone");
    let leftovers: Vec<_> = std::fs::read_dir(fx.path("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "the refused upload was aborted: {leftovers:?}");
    assert_eq!(run(&["verify", url, "--key-file", &k2]).0, 0);

    // The record opens through the new header.
    let (code, err, out) = run(&["catalog", "s3://keys/", "--json", "--key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["metadata"], "record", "{v}");
    assert_eq!(v[0]["files"], 3);
    assert_eq!(v[0]["key_slots"], 1);

    // Add and remove work the same way; `key list` reads the object's header.
    assert_eq!(run(&["key", "add", url, "--key-file", &k2, "--new-key-file", &k1]).0, 0);
    let (_, _, out) = run(&["key", "list", url, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["slots"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["generation"], 2, "the image written by the backup --force above, once changed");
    assert_eq!(run(&["key", "remove", url, "--slot", "0", "--key-file", &k1]).0, 0);
    assert_eq!(run(&["verify", url, "--key-file", &k2]).0, 3);
    assert_eq!(run(&["restore", url, "--to", &fx.s("back"), "--key-file", &k1]).0, 0);
    assert_eq!(snapshot(&fx.path("src")), snapshot(&fx.path("back")));

    // Rekey (a new data key) from object to object, the catalog record carried over.
    let re = "s3://keys/re.coffer";
    let (code, err, _) = run(&["rekey", url, "-o", re, "--key-file", &k1, "--new-key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(run(&["verify", re, "--key-file", &k2]).0, 0);
    assert_eq!(run(&["rekey", url, "-o", re, "--key-file", &k1, "--new-key-file", &k2]).0, 1, "no overwrite");
    // db.coffer no longer opens with k2: the catalog says so, lists the others, exit 1.
    let (code, err, out) = run(&["catalog", "s3://keys/", "--json", "--key-file", &k2]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("s3://keys/db.coffer: wrong key") && err.contains("1 of 2 backups"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let re_row = v.as_array().unwrap().iter().find(|b| b["name"] == "re.coffer").unwrap();
    assert_eq!(re_row["metadata"], "record", "{v}");
    assert_eq!(re_row["files"], 3);

    // An object under S3's 5 MiB part minimum is rewritten whole (it is that small).
    std::fs::write(fx.path("small"), b"a few bytes").unwrap();
    let small = "s3://keys/small.coffer";
    assert_eq!(run(&["backup", &fx.s("small"), "-o", small, "--key-file", &k1]).0, 0);
    let (code, err, _) = run(&["key", "rotate", small, "--key-file", &k1, "--new-key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("streamed through this host"), "{err}");
    assert_eq!(run(&["verify", small, "--key-file", &k2]).0, 0);
    assert_eq!(run(&["verify", small, "--key-file", &k1]).0, 3);
}

/// HTTPS to an S3 endpoint behind a private CA (socat terminating TLS in front of s3s-fs, with
/// a certificate from `coffer tls generate`): trusted through AWS_CA_BUNDLE as the AWS CLI does,
/// refused on one line without it; a key change's server-side copy goes the same way.
#[test]
fn https_endpoints_are_verified() {
    let Some(bin) = S3s::binary() else { return };
    if Command::new("socat").arg("-V").output().is_err() {
        assert!(std::env::var_os("COFFER_REQUIRE_S3").is_none(), "socat is required (COFFER_REQUIRE_S3=1)");
        eprintln!("socat not found: skipped");
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("root/secure")).unwrap();
    tree(&fx.path("src"));
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port = free();
    let server = S3s::start(&bin, &fx.path("root"), port);
    let made = coffer().args(["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "s3", "-q"]).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let tls_port = free();
    let cert = format!("cert={},key={},verify=0", fx.s("pki/s3.crt"), fx.s("pki/s3.key"));
    let mut proxy = Command::new("socat")
        .arg(format!("openssl-listen:{tls_port},bind=127.0.0.1,reuseaddr,fork,{cert}"))
        .arg(format!("tcp:127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    await_listener(tls_port, "socat", Duration::from_secs(10));
    let run = |ca: Option<&str>, args: &[&str]| {
        let mut c = server.coffer("rightsecret");
        c.env("COFFER_S3_ENDPOINT", format!("https://127.0.0.1:{tls_port}"));
        if let Some(ca) = ca {
            c.env("AWS_CA_BUNDLE", ca);
        }
        let out = c.args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (k1, k2, ca) = (fx.key(), fx.s("other.key"), fx.s("pki/ca.crt"));
    let url = "s3://secure/db.coffer";
    let backup = ["backup", &fx.s("src"), "-o", url, "--key-file", &k1, "--part-size", "5M"];
    let (code, err) = run(None, &backup);
    assert_eq!(code, 1, "an unknown CA is refused: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!fx.path("root/secure/db.coffer").exists());
    let (code, err) = run(Some(&ca), &backup);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(Some(&ca), &["key", "rotate", url, "--key-file", &k1, "--new-key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("copied by the store itself"), "{err}");
    let (code, err) = run(Some(&ca), &["restore", url, "--to", &fx.s("back"), "--key-file", &k2]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(&fx.path("src")), snapshot(&fx.path("back")));
    let _ = proxy.kill();
    let _ = proxy.wait();
}

/// Starts `coffer receive` on a free loopback port; returns it with the port and its stderr.
fn receiver(args: &[String]) -> (Child, u16, std::io::BufReader<std::process::ChildStderr>) {
    let mut rx = coffer();
    rx.args(["receive", "--listen", "127.0.0.1:0"]).args(args);
    listening(rx)
}

/// Waits for a receiver; whether it succeeded, and the rest of its stderr.
fn finish(mut child: Child, mut err: std::io::BufReader<std::process::ChildStderr>) -> (bool, String) {
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    (child.wait().unwrap().success(), rest)
}

/// An image in a bucket sent as it is to `coffer receive`, which restores it as it arrives;
/// and, after a transfer cut short, sent again from where the receiver stopped (the object read
/// from that offset).
#[test]
fn an_object_is_sent_to_a_receiver() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("outbox");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    for name in ["sender", "receiver"] {
        let made = coffer().args(["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", name, "-q"]).output().unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    let tls = |name: &str| {
        [
            "--cert",
            &fx.s(&format!("pki/{name}.crt")),
            "--key",
            &fx.s(&format!("pki/{name}.key")),
            "--ca",
            &fx.s("pki/ca.crt"),
        ]
        .map(str::to_owned)
    };
    let k = fx.key();
    let recv_args = |dst: &str| {
        let mut a =
            vec!["--to".to_owned(), fx.s(dst), "--key-file".into(), k.clone(), "--checkpoint".into(), "1".into()];
        a.extend(tls("receiver"));
        a
    };
    let send = |port: u16, extra: &[&str]| {
        let mut a = vec!["send".to_owned(), "s3://outbox/db.coffer".into(), "--to".into(), format!("127.0.0.1:{port}")];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(tls("sender"));
        s3.expect(0, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The same image as a file and as an object (uploaded as it is).
    let img = fx.s("db.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &img, "--key-file", &k, "-q"]);
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(s3.http("PUT", "/outbox/db.coffer", &bytes).unwrap().0, 200);

    let (rx, port, err) = receiver(&recv_args("whole"));
    assert!(send(port, &[]).contains("sent"));
    let (ok, rest) = finish(rx, err);
    assert!(ok, "{rest}");
    assert_eq!(snapshot(&fx.path("src")), snapshot(&fx.path("whole")));

    // Cut short: 60% of the image from a pipe, the sender killed after a checkpoint.
    let (rx, port, err) = receiver(&recv_args("part"));
    let mut sender = coffer()
        .args(["send", "-", "--to", &format!("127.0.0.1:{port}")])
        .args(tls("sender"))
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() * 3 / 5]).unwrap();
    stdin.flush().unwrap();
    let journal = fx.path("part/.coffer-receive-journal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&journal).map(|m| m.len() <= 37).unwrap_or(true) {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    sender.kill().unwrap();
    let _ = sender.wait();
    drop(stdin);
    assert!(!finish(rx, err).0);
    let (rx, port, err) = receiver(&recv_args("part"));
    let said = send(port, &["--resume"]);
    let from = resumed_from(&said);
    assert!(from > 16384 && from < bytes.len() as u64, "{from}");
    let (ok, rest) = finish(rx, err);
    assert!(ok, "{rest}");
    assert_eq!(snapshot(&fx.path("src")), snapshot(&fx.path("part")));
}

/// The most memory `pid` has held (VmHWM), sampled until it exits.
fn watch_peak(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) else { break };
            peak = peak.max(kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) << 10);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    })
}

/// A catalog record is read with a cap: whoever can write to the bucket (no key needed) chooses
/// its size, so a huge one is refused after the cap, never downloaded whole; the backup is then
/// described through its index.
#[test]
fn a_huge_catalog_record_is_not_downloaded() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("huge");
    let fx = Fixture::new();
    std::fs::write(fx.path("a"), b"data").unwrap();
    let k = fx.key();
    s3.expect(0, &["backup", &fx.s("a"), "-o", "s3://huge/p/2026-11-01T00-00-00Z.coffer", "--key-file", &k]);
    // 128 MiB where a record of a few hundred bytes belongs (moto refuses an anonymous
    // overwrite, so coffer puts it there: an image of 128 MiB of noise).
    let big: Vec<u8> = (0..128u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(fx.path("big"), big).unwrap();
    let meta = "s3://huge/p/2026-11-01T00-00-00Z.coffer.meta";
    s3.expect(0, &["backup", &fx.s("big"), "-o", meta, "--force", "--compress", "none", "--key-file", &k]);
    let child = s3
        .coffer()
        .args(["catalog", "s3://huge/p/", "--json", "--key-file", &k])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peak = watch_peak(child.id());
    let out = child.wait_with_output().unwrap();
    let peak = peak.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(peak < 64 << 20, "catalog held {} MiB for a record it refused", peak >> 20);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v[0]["metadata"], &v[0]["files"]), (&serde_json::json!("index"), &serde_json::json!(1)), "{v}");
    assert!(err.contains("more than the") && err.contains(".coffer.meta"), "{err}");
}
