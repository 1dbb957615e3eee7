//! The protocol on a transfer connection, after the TLS handshake:
//!
//! ```text
//! sender → receiver:  "COFFERTX" | version u16 LE (1) | streams u16 LE (N ≥ 1)
//!                     | session id [16] | this connection's index u16 LE (0..N)
//! receiver → sender:  "READY\n"
//! sender → receiver:  image bytes ... | TLS close_notify     (N = 1)
//!                     blocks (see `stripe`), round-robin over the N connections (N > 1)
//! receiver → sender:  "OK <bytes>\n" once the image is stored or restored and flushed, or
//!                     "ERR <one line>\n" if it failed
//! ```
//! The READY round trip makes the sender learn, before it streams anything, that the receiver
//! accepted its certificate (in TLS 1.3 the client's certificate is judged after the client's
//! side of the handshake is complete).
//! The image carries its own authentication (every frame's AEAD); TLS adds peer authentication
//! and hides even the frame lengths on the wire.

use std::io::{BufRead, Read, Write};

pub const MAGIC: &[u8; 8] = b"COFFERTX";
pub const VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("the peer does not speak coffer's transfer protocol")]
    NotCoffer,
    #[error("the peer speaks transfer protocol version {0}; this coffer speaks {VERSION}")]
    Version(u16),
    #[error("the receiver failed: {0}")]
    Receiver(String),
    #[error("the receiver closed the connection without saying whether it succeeded")]
    NoStatus,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a connection's hello says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub streams: u16,
    pub session: [u8; 16],
    pub index: u16,
}

pub const MAX_STREAMS: u16 = 64;

pub fn write_hello(w: &mut dyn Write, h: &Hello) -> std::io::Result<()> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&h.streams.to_le_bytes());
    hello.extend_from_slice(&h.session);
    hello.extend_from_slice(&h.index.to_le_bytes());
    w.write_all(&hello)
}

pub fn read_hello(r: &mut dyn Read) -> Result<Hello, WireError> {
    let mut hello = [0u8; 30];
    r.read_exact(&mut hello).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::NotCoffer,
        _ => WireError::Io(e),
    })?;
    if &hello[..8] != MAGIC {
        return Err(WireError::NotCoffer);
    }
    let version = u16::from_le_bytes([hello[8], hello[9]]);
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let streams = u16::from_le_bytes([hello[10], hello[11]]);
    let index = u16::from_le_bytes([hello[28], hello[29]]);
    if streams == 0 || streams > MAX_STREAMS || index >= streams {
        return Err(WireError::NotCoffer);
    }
    Ok(Hello { streams, session: hello[12..28].try_into().expect("16 bytes"), index })
}

pub const READY: &[u8] = b"READY\n";

/// Reads the receiver's READY.
pub fn read_ready(r: &mut dyn Read) -> Result<(), WireError> {
    let mut b = [0u8; 6];
    r.read_exact(&mut b)?;
    if b != READY {
        return Err(WireError::NotCoffer);
    }
    Ok(())
}

/// The receiver's last word.
pub fn write_status(w: &mut dyn Write, result: &Result<u64, String>) -> std::io::Result<()> {
    let line = match result {
        Ok(bytes) => format!("OK {bytes}\n"),
        Err(e) => format!("ERR {}\n", e.replace('\n', " ")),
    };
    w.write_all(line.as_bytes())?;
    w.flush()
}

/// Reads the receiver's last word: the bytes it stored, or its error.
pub fn read_status(r: &mut dyn BufRead) -> Result<u64, WireError> {
    let mut line = String::new();
    r.take(4096).read_line(&mut line)?;
    let line = line.trim_end();
    if let Some(n) = line.strip_prefix("OK ") {
        return n.parse().map_err(|_| WireError::NoStatus);
    }
    if let Some(e) = line.strip_prefix("ERR ") {
        return Err(WireError::Receiver(e.to_owned()));
    }
    Err(WireError::NoStatus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_status_round_trip() {
        let mut b = Vec::new();
        let h = Hello { streams: 3, session: [7; 16], index: 2 };
        write_hello(&mut b, &h).unwrap();
        assert_eq!(&b[..12], b"COFFERTX\x01\x00\x03\x00");
        assert_eq!(b.len(), 30);
        assert_eq!(read_hello(&mut &b[..]).unwrap(), h);
        let mut bad = b.clone();
        bad[28] = 3; // index 3 of 3
        assert!(matches!(read_hello(&mut &bad[..]), Err(WireError::NotCoffer)));
        assert!(matches!(read_hello(&mut &b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"[..]), Err(WireError::NotCoffer)));
        let mut v2 = b.clone();
        v2[8] = 2;
        assert!(matches!(read_hello(&mut &v2[..]), Err(WireError::Version(2))));
        assert!(matches!(read_hello(&mut &b"COFF"[..]), Err(WireError::NotCoffer)));
        let mut s = Vec::new();
        write_status(&mut s, &Ok(1234)).unwrap();
        assert_eq!(read_status(&mut &s[..]).unwrap(), 1234);
        let mut s = Vec::new();
        write_status(&mut s, &Err("disk full\nsecond line".into())).unwrap();
        assert!(matches!(read_status(&mut &s[..]), Err(WireError::Receiver(m)) if m == "disk full second line"));
        assert!(matches!(read_status(&mut &b""[..]), Err(WireError::NoStatus)));
    }
}
