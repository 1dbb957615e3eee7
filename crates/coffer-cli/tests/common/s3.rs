//! A real S3 server process on loopback (`moto_server`, from PyPI's `moto[server]`) for the
//! object storage tests; skipped when it is missing, unless COFFER_REQUIRE_S3=1 (CI).

use super::coffer;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto S3 server on a free loopback port, killed when dropped.
pub struct S3 {
    pub child: Child,
    pub port: u16,
}

impl S3 {
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) if std::env::var_os("COFFER_REQUIRE_S3").is_none() => {
                eprintln!("moto_server not found: object storage tests skipped");
                return None;
            }
            Err(e) => panic!("moto_server is required (COFFER_REQUIRE_S3=1): {e}"),
        };
        let s3 = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s3.http("GET", "/", b"").is_none() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s3)
    }

    /// An s3s-fs server (it checks signatures, keeps its objects as files under `root`, and is
    /// strict where moto is lenient: a completed upload is gone), for the same credentials.
    pub fn s3s(root: &std::path::Path) -> Option<Self> {
        let bin = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo/bin/s3s-fs"));
        let Some(bin) = bin.filter(|p| p.exists()) else {
            assert!(std::env::var_os("COFFER_REQUIRE_S3").is_none(), "s3s-fs is required (COFFER_REQUIRE_S3=1)");
            eprintln!("s3s-fs not found: skipped");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "test", "--secret-key", "test"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, port })
    }

    /// One plain HTTP request (moto does not check signatures); the status and body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text))
    }

    pub fn bucket(&self, name: &str) {
        assert_eq!(self.http("PUT", &format!("/{name}"), b"").unwrap().0, 200);
    }

    /// coffer, with credentials and this server as the S3 endpoint.
    pub fn coffer(&self) -> Command {
        let mut c = coffer();
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_CA_BUNDLE")
            .env("COFFER_S3_ENDPOINT", format!("http://127.0.0.1:{}", self.port));
        c
    }

    /// A fault-injecting proxy (crates/fault-proxy) in front of this server.
    pub fn proxy(&self, seed: u64) -> fault_proxy::Proxy {
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        fault_proxy::Proxy::start(upstream, seed, Vec::new()).unwrap()
    }

    /// coffer, with this server as the S3 endpoint, reached through `proxy`.
    pub fn through(&self, proxy: &fault_proxy::Proxy) -> Command {
        let mut c = self.coffer();
        c.env("COFFER_S3_ENDPOINT", format!("http://127.0.0.1:{}", proxy.port()));
        c
    }

    /// Keys under `prefix` in `bucket` (first page of a listing: up to 1000).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (_, body) = self.http("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), b"").unwrap();
        body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect()
    }

    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.coffer().args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    #[track_caller]
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let (got, err) = self.run(args);
        assert_eq!(got, code, "coffer {args:?}: {err}");
        err
    }

    /// Multipart uploads still in progress in `bucket`.
    pub fn uploads_in_progress(&self, bucket: &str) -> usize {
        let (_, body) = self.http("GET", &format!("/{bucket}?uploads"), b"").unwrap();
        body.matches("<UploadId>").count()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
