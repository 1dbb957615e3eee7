//! Just enough HTTP/1.1 to relay S3 requests: heads, and bodies by `Content-Length` or chunked.

use std::io::{self, BufRead, Read, Write};

/// A request or response head: its first line and its headers, in order.
#[derive(Debug, Clone)]
pub struct Head {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

/// Heads larger than this are refused (S3's are a few KiB).
const MAX_HEAD: usize = 64 << 10;

impl Head {
    /// Reads a head; `None` at a clean end of the stream before any byte of it.
    pub fn read(r: &mut impl BufRead) -> io::Result<Option<Self>> {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        let mut size = line.len();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a head"));
            }
            size += h.len();
            if size > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a head too large"));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a bad header"))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Ok(Some(Self { line: line.trim_end_matches(['\r', '\n']).to_owned(), headers }))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: String) {
        self.remove(name);
        self.headers.push((name.to_owned(), value));
    }

    pub fn content_length(&self) -> Option<u64> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }

    pub fn chunked(&self) -> bool {
        self.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{}\r\n", self.line);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// The status of a response head.
    pub fn status(&self) -> Option<u16> {
        self.line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// A chunked body, decoded (trailers dropped).
pub fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let hex = size.trim().split(';').next().unwrap_or("");
        let n = u64::from_str_radix(hex, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a bad chunk"))?;
        if n == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(out);
                }
            }
        }
        let at = out.len();
        out.resize(at + n as usize, 0);
        r.read_exact(&mut out[at..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// Copies exactly `n` bytes from `r` to `w`.
pub fn copy_exact(r: &mut impl Read, w: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), w)?;
    if copied != n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a body"));
    }
    Ok(())
}

/// A whole response of `status` with `body` (and extra headers), kept alive.
pub fn response(status: u16, reason: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_bodies_are_read() {
        let raw = b"PUT /b/k?partNumber=1 HTTP/1.1\r\nHost: x:1\r\nContent-Length: 3\r\nX-A: 1:2\r\n\r\nabcGET";
        let mut r = io::BufReader::new(&raw[..]);
        let h = Head::read(&mut r).unwrap().unwrap();
        assert_eq!(h.line, "PUT /b/k?partNumber=1 HTTP/1.1");
        assert_eq!((h.get("host"), h.get("x-a"), h.content_length()), (Some("x:1"), Some("1:2"), Some(3)));
        let mut body = Vec::new();
        copy_exact(&mut r, &mut body, 3).unwrap();
        assert_eq!(body, b"abc");
        assert!(Head::read(&mut r).is_err(), "a head cut short");
        assert!(Head::read(&mut io::BufReader::new(&b""[..])).unwrap().is_none(), "a clean end");
        let mut c = io::BufReader::new(&b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nrest"[..]);
        assert_eq!(read_chunked(&mut c).unwrap(), b"abcde");
        let mut rest = String::new();
        c.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "rest");
        assert!(copy_exact(&mut &b"ab"[..], &mut Vec::new(), 3).is_err());
        let resp = response(503, "Slow Down", &[("Retry-After", "1")], b"xy");
        let mut r = io::BufReader::new(&resp[..]);
        let h = Head::read(&mut r).unwrap().unwrap();
        assert_eq!((h.status(), h.content_length(), h.get("retry-after")), (Some(503), Some(2), Some("1")));
    }
}
