//! The protocol on a transfer connection, after the TLS handshake:
//!
//! ```text
//! sender → receiver:  "COFFERTX" | version u16 LE (1) | reserved u16 (0)
//! receiver → sender:  "READY\n"
//! sender → receiver:  image bytes ... | TLS close_notify
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

pub fn write_hello(w: &mut dyn Write) -> std::io::Result<()> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&[0, 0]);
    w.write_all(&hello)
}

pub fn read_hello(r: &mut dyn Read) -> Result<(), WireError> {
    let mut hello = [0u8; 12];
    r.read_exact(&mut hello).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::NotCoffer,
        _ => WireError::Io(e),
    })?;
    if &hello[..8] != MAGIC {
        return Err(WireError::NotCoffer);
    }
    let version = u16::from_le_bytes([hello[8], hello[9]]);
    if version != VERSION || hello[10..] != [0, 0] {
        return Err(WireError::Version(version));
    }
    Ok(())
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
        write_hello(&mut b).unwrap();
        assert_eq!(b, b"COFFERTX\x01\x00\x00\x00");
        read_hello(&mut &b[..]).unwrap();
        assert!(matches!(read_hello(&mut &b"GET / HTTP/1.1\r\n"[..]), Err(WireError::NotCoffer)));
        assert!(matches!(read_hello(&mut &b"COFFERTX\x02\x00\x00\x00"[..]), Err(WireError::Version(2))));
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
