//! The metrics over HTTP: `GET /metrics` on a listener of the program's, served from a thread of
//! its own.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most of a request that is read: a request line and a few headers.
const MAX_REQUEST: usize = 8 << 10;
/// How long a client has to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` from a thread of its own, with the text `render` gives;
/// 404 for any other path, 405 for other methods. One client at a time, each given
/// [`CLIENT_TIMEOUT`] to send at most [`MAX_REQUEST`] bytes of request.
pub(crate) fn serve_metrics(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    std::thread::spawn(move || loop {
        match listener.accept() {
            Ok((mut client, _)) => {
                let _ = answer(&mut client, &*render);
            }
            // Out of file descriptors, say: wait rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    });
}

/// Reads one request from `client` and answers it.
fn answer(client: &mut TcpStream, render: &(dyn Fn() -> String + Send + Sync)) -> io::Result<()> {
    client.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = match read_head(client)? {
        Some(head) => head,
        None => return respond(client, "400 Bad Request", "text/plain", "bad request\n", true),
    };
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            respond(client, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &render(), body)
        }
        ("GET" | "HEAD", _) => {
            respond(client, "404 Not Found", "text/plain", "not found: the metrics are at /metrics\n", body)
        }
        _ => respond(client, "405 Method Not Allowed", "text/plain", "only GET and HEAD\n", true),
    }
}

/// The request's head (up to its blank line), if it ends within [`MAX_REQUEST`] bytes and
/// [`CLIENT_TIMEOUT`]; `None` if it does not, or is not text.
fn read_head(client: &mut TcpStream) -> io::Result<Option<String>> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&head) {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return Ok(None);
        };
        client.set_read_timeout(Some(left))?;
        let n = match client.read(&mut buf[..(MAX_REQUEST - head.len()).min(1024)]) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
    }
}

/// Where the head of a request ends (its first empty line; bare newlines accepted).
fn find_blank_line(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Answers and closes. What the client sent beyond the head is read (a little of it, briefly)
/// before closing: a socket closed with data unread resets the connection, and the client
/// could lose the answer.
fn respond(client: &mut TcpStream, status: &str, kind: &str, body: &str, with_body: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes())?;
    if with_body {
        client.write_all(body.as_bytes())?;
    }
    client.flush()?;
    client.shutdown(std::net::Shutdown::Write)?;
    client.set_read_timeout(Some(Duration::from_millis(200)))?;
    let _ = io::copy(&mut client.take(DRAIN), &mut io::sink());
    Ok(())
}

/// The most of a client's unread bytes that are drained before closing its connection.
const DRAIN: u64 = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(23));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
