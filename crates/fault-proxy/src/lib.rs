//! A fault-injecting HTTP/1.1 proxy for coffer's object storage tests (issue 28).
//!
//! It sits between a client (coffer) and an S3 server (moto, s3s-fs), relays each request
//! unchanged (the client signs for the `Host` it connects to, which is relayed as is), and,
//! by a seeded [`Schedule`], answers some requests itself with an error, a reset, a stall or
//! a body cut short, or relays them and then fails ("the store did it, the client saw an
//! error"). Counters say what was injected, so a test can tell that its faults happened.
//!
//! Threads and `std::net` only: one thread per client connection, one upstream connection
//! per request (`Connection: close` upstream; the client's connection is kept alive).

mod http;
pub mod schedule;

pub use schedule::{Fault, Kind, Rule, Schedule, When, FAULTS, KINDS};

use http::Head;
use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the proxy waits on either side before it gives a connection up.
const IO_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    schedule: Mutex<Schedule>,
    injected: Mutex<BTreeMap<(Kind, Fault), u64>>,
    stall: Mutex<Duration>,
    /// Bytes/s of a [`Fault::Throttle`]d request's bodies.
    rate: Mutex<u64>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy on a loopback port; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub fn start(upstream: SocketAddr, seed: u64, rules: Vec<Rule>) -> io::Result<Self> {
        Self::listen("127.0.0.1:0".parse().expect("an address"), upstream, seed, rules)
    }

    /// A proxy on `listen` in front of `upstream`.
    pub fn listen(listen: SocketAddr, upstream: SocketAddr, seed: u64, rules: Vec<Rule>) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream,
            schedule: Mutex::new(Schedule::new(seed, rules)),
            injected: Mutex::default(),
            stall: Mutex::new(Duration::from_secs(30)),
            rate: Mutex::new(64 << 10),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new().name("fault-proxy".into()).spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let s = Arc::clone(&s);
                let _ = std::thread::Builder::new().name("fault-proxy-conn".into()).spawn(move || {
                    let _ = serve(&s, client);
                });
            }
        })?;
        Ok(Self { port, shared, accept: Some(accept) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the rules (the dice and the per-kind request counts go on).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        lock(&self.shared.schedule).rules = rules;
    }

    /// How long a [`Fault::Stall`] holds a request before closing it (30 s unless set).
    pub fn set_stall(&self, t: Duration) {
        *lock(&self.shared.stall) = t;
    }

    /// How fast a [`Fault::Throttle`]d request's bodies move, in bytes/s each way (64 KiB/s
    /// unless set): a slow link, per connection.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        *lock(&self.shared.rate) = bytes_per_sec.max(1);
    }

    /// Faults injected of `kind` and `fault` (`None`: any).
    pub fn injected(&self, kind: Option<Kind>, fault: Option<Fault>) -> u64 {
        let m = lock(&self.shared.injected);
        m.iter()
            .filter(|((k, f), _)| kind.is_none_or(|x| x == *k) && fault.is_none_or(|x| x == *f))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests of `kind` seen so far.
    pub fn seen(&self, kind: Kind) -> u64 {
        lock(&self.shared.schedule).seen(kind)
    }

    /// One line: what was seen and injected, by kind (`get 120 (3 short, 1 reset)`).
    pub fn report(&self) -> String {
        let m = lock(&self.shared.injected).clone();
        let sched = lock(&self.shared.schedule);
        let mut parts = Vec::new();
        for k in KINDS.iter().copied().filter(|k| sched.seen(*k) > 0) {
            let faults: Vec<String> =
                m.iter().filter(|((x, _), _)| *x == k).map(|((_, f), n)| format!("{n} {}", f.name())).collect();
            let faults = if faults.is_empty() { String::new() } else { format!(" ({})", faults.join(", ")) };
            parts.push(format!("{} {}{faults}", k.name(), sched.seen(k)));
        }
        parts.join("; ")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// The answer's body to send on: read whole, or streamed from upstream; slowed on a slow link.
fn answer_body(whole: Option<Vec<u8>>, from: BufReader<TcpStream>, slow: bool, shared: &Shared) -> Box<dyn Read> {
    let body: Box<dyn Read> = match whole {
        Some(b) => Box::new(io::Cursor::new(b)),
        None => Box::new(from),
    };
    match slow {
        true => Box::new(Slow::new(body, shared)),
        false => body,
    }
}

/// A reader at most as fast as the proxy's rate: a slow link.
struct Slow<R> {
    inner: R,
    rate: u64,
    started: Instant,
    moved: u64,
}

impl<R: Read> Slow<R> {
    fn new(inner: R, shared: &Shared) -> Self {
        Self { inner, rate: *lock(&shared.rate), started: Instant::now(), moved: 0 }
    }
}

impl<R: Read> Read for Slow<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Small reads, each after the time the bytes before it took at the rate: the sender's
        // window fills and TCP holds it back.
        let at = Duration::from_secs_f64(self.moved as f64 / self.rate as f64);
        if let Some(wait) = at.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        let step = buf.len().min((self.rate / 10).clamp(1, 16 << 10) as usize);
        let n = self.inner.read(&mut buf[..step])?;
        self.moved += n as u64;
        Ok(n)
    }
}

/// Closes a connection with a reset (RST), as a dropped connection does.
fn reset(s: &TcpStream) {
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger);
    let _ = s.shutdown(Shutdown::Read);
}

/// Serves one client connection, request after request, until it closes or a fault ends it.
fn serve(shared: &Shared, client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut from = BufReader::new(client.try_clone()?);
    let mut to = client;
    while let Some(head) = Head::read(&mut from)? {
        let mut words = head.line.split_whitespace();
        let (method, target) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
        // Decided from the head, before the body: a slow link slows the body's upload.
        let kind = Kind::of(&method, &target, |h| head.get(h).map(str::to_owned));
        let fault = lock(&shared.schedule).decide(kind, Instant::now());
        if let Some(f) = fault {
            *lock(&shared.injected).entry((kind, f)).or_default() += 1;
        }
        let body = match (head.chunked(), head.content_length()) {
            (true, _) => http::read_chunked(&mut from)?,
            (false, Some(n)) => {
                let mut b = Vec::with_capacity(n as usize);
                match fault {
                    Some(Fault::Throttle) => http::copy_exact(&mut Slow::new(&mut from, shared), &mut b, n)?,
                    _ => http::copy_exact(&mut from, &mut b, n)?,
                }
                b
            }
            (false, None) => Vec::new(),
        };
        if !answer(shared, &mut to, head, &method, &body, fault)? {
            return Ok(());
        }
    }
    Ok(())
}

const SLOW_DOWN: &[u8] =
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
const ACCESS_DENIED: &[u8] =
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
const INTERNAL: &[u8] =
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";

/// Answers one request as `fault` says; false when the connection is to end.
fn answer(
    shared: &Shared,
    to: &mut TcpStream,
    head: Head,
    method: &str,
    body: &[u8],
    fault: Option<Fault>,
) -> io::Result<bool> {
    let xml = [("Content-Type", "application/xml")];
    let canned = |status, reason, extra: &[(&str, &str)], body: &[u8]| http::response(status, reason, extra, body);
    let reply = match fault {
        Some(Fault::Status500) => canned(500, "Internal Server Error", &xml, INTERNAL),
        Some(Fault::Status403) => canned(403, "Forbidden", &xml, ACCESS_DENIED),
        Some(Fault::Status503) => canned(503, "Service Unavailable", &[], b""),
        Some(Fault::SlowDown) => canned(503, "Slow Down", &xml, SLOW_DOWN),
        Some(Fault::SlowDownRetryAfter) => {
            canned(503, "Slow Down", &[("Content-Type", "application/xml"), ("Retry-After", "1")], SLOW_DOWN)
        }
        Some(Fault::Reset) => {
            reset(to);
            return Ok(false);
        }
        Some(Fault::Stall) => {
            let until = Instant::now() + *lock(&shared.stall);
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(false);
        }
        _ => return relay(shared, to, head, method, body, fault),
    };
    to.write_all(&reply)?;
    Ok(true)
}

/// Sends the request upstream and the answer back, cut or replaced as `fault` says.
fn relay(
    shared: &Shared,
    to: &mut TcpStream,
    mut head: Head,
    method: &str,
    body: &[u8],
    fault: Option<Fault>,
) -> io::Result<bool> {
    let up = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(10));
    let Ok(mut up) = up else {
        reset(to);
        return Ok(false);
    };
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    head.remove("connection");
    head.remove("transfer-encoding");
    head.set("Connection", "close".into());
    if !body.is_empty() || head.content_length().is_some() {
        head.set("Content-Length", body.len().to_string());
    }
    up.write_all(&head.to_bytes())?;
    up.write_all(body)?;
    let mut from = BufReader::new(up);
    let Some(mut resp) = Head::read(&mut from)? else {
        reset(to);
        return Ok(false);
    };
    let status = resp.status().unwrap_or(502);
    let no_body = method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    // A length to stream, or a body read whole (chunked, or up to the close).
    let (len, whole) = match (no_body, resp.chunked(), resp.content_length()) {
        (true, _, _) => (0, None),
        (false, true, _) => {
            let b = http::read_chunked(&mut from)?;
            (b.len() as u64, Some(b))
        }
        (false, false, Some(n)) => (n, None),
        (false, false, None) => {
            let mut b = Vec::new();
            from.read_to_end(&mut b)?;
            (b.len() as u64, Some(b))
        }
    };
    resp.remove("connection");
    if whole.is_some() {
        resp.remove("transfer-encoding");
        resp.set("Content-Length", len.to_string());
    }
    let mut source = answer_body(whole, from, fault == Some(Fault::Throttle), shared);
    match fault {
        Some(Fault::Forward500 | Fault::ForwardReset) => {
            // The store did it; the client will not know.
            io::copy(&mut source.take(len), &mut io::sink())?;
            if fault == Some(Fault::ForwardReset) {
                reset(to);
                return Ok(false);
            }
            to.write_all(&http::response(500, "Internal Server Error", &[], INTERNAL))?;
            Ok(true)
        }
        Some(f @ (Fault::ResetBody | Fault::Short)) => {
            to.write_all(&resp.to_bytes())?;
            http::copy_exact(&mut source, to, len / 2)?;
            to.flush()?;
            match f {
                Fault::Short => to.shutdown(Shutdown::Both)?,
                _ => reset(to),
            }
            Ok(false)
        }
        _ => {
            to.write_all(&resp.to_bytes())?;
            http::copy_exact(&mut source, to, len)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream answering every request with 200 and the request's target as its body.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let c = c.unwrap();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let mut w = c;
                    while let Ok(Some(h)) = Head::read(&mut r) {
                        let n = h.content_length().unwrap_or(0);
                        http::copy_exact(&mut r, &mut io::sink(), n).unwrap();
                        let target = h.line.split_whitespace().nth(1).unwrap().to_owned();
                        w.write_all(&http::response(200, "OK", &[], target.as_bytes())).unwrap();
                    }
                });
            }
        });
        addr
    }

    fn get(c: &mut BufReader<TcpStream>, target: &str) -> io::Result<(u16, Vec<u8>)> {
        let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        c.get_mut().write_all(req.as_bytes())?;
        let h = Head::read(c)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut body = Vec::new();
        http::copy_exact(c, &mut body, h.content_length().unwrap())?;
        Ok((h.status().unwrap(), body))
    }

    #[test]
    fn relays_and_injects_what_its_rules_say() {
        let rules = vec![
            Rule::parse("get:slowdown@n=2").unwrap(),
            Rule::parse("get:short@n=3").unwrap(),
            Rule::parse("get:reset@n=5").unwrap(),
        ];
        let p = Proxy::start(echo(), 1, rules).unwrap();
        let conn = || BufReader::new(TcpStream::connect(("127.0.0.1", p.port())).unwrap());
        let mut c = conn();
        assert_eq!(get(&mut c, "/b/one").unwrap(), (200, b"/b/one".to_vec()));
        assert_eq!(get(&mut c, "/b/two").unwrap().0, 503, "kept alive, then the 2nd GET");
        assert!(get(&mut c, "/b/three").is_err(), "a body cut short");
        let mut c = conn();
        assert_eq!(get(&mut c, "/b/four").unwrap().0, 200);
        assert!(get(&mut c, "/b/five").is_err(), "reset");
        assert_eq!(get(&mut conn(), "/b/six").unwrap().0, 200);
        assert_eq!(p.seen(Kind::Get), 6);
        assert_eq!(p.injected(Some(Kind::Get), None), 3);
        assert_eq!(p.injected(None, Some(Fault::Short)), 1);
        assert!(p.report().starts_with("get 6 ("), "{}", p.report());
        // An outage of everything, then the store answers again.
        p.set_rules(vec![Rule::outage(Fault::Status500, Duration::from_millis(300))]);
        assert_eq!(get(&mut conn(), "/b/x").unwrap().0, 500);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(get(&mut conn(), "/b/x").unwrap().0, 200);
        // A refusal, and a slow link: 20 KiB/s, a body of about 10 KiB takes about half a second.
        p.set_rules(vec![Rule::parse("get:403@n=9").unwrap(), Rule::parse("get:throttle@n=10").unwrap()]);
        let (status, body) = get(&mut conn(), "/b/denied").unwrap();
        assert_eq!(status, 403);
        assert!(String::from_utf8_lossy(&body).contains("AccessDenied"));
        p.set_rate(20 << 10);
        let long = format!("/b/{}", "x".repeat(10 << 10));
        let t = Instant::now();
        assert_eq!(get(&mut conn(), &long).unwrap(), (200, long.into_bytes()));
        assert!(t.elapsed() >= Duration::from_millis(400), "throttled: {:?}", t.elapsed());
        assert_eq!(p.injected(None, Some(Fault::Throttle)), 1);
    }
}
