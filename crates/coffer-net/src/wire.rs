//! The protocol on a transfer connection, after the TLS handshake:
//!
//! ```text
//! sender → receiver:  "COFFERTX" | version u16 LE (1) | streams u16 LE (N ≥ 1)
//!                     | session id [16] | this connection's index u16 LE (0..N) | flags u16 LE
//! receiver → sender:  "READY\n"
//! receiver → sender:  (connection 0, if flags has RESUME) "COFFERRS" | image id [16]
//!                     | offset u64 LE | files_len u32 LE | files[files_len]
//!                     what the receiver holds durably from an interrupted transfer: the image
//!                     it was restoring and where that image's next entry starts (zeros: none),
//!                     and the index records (FORMAT.md §6) of every file it restored
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
    pub flags: u16,
}

/// Hello flag: the sender asks what the receiver already holds (`coffer send --resume`).
pub const RESUME: u16 = 1;
const HELLO_LEN: usize = 32;

pub const MAX_STREAMS: u16 = 64;

pub fn write_hello(w: &mut dyn Write, h: &Hello) -> std::io::Result<()> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&h.streams.to_le_bytes());
    hello.extend_from_slice(&h.session);
    hello.extend_from_slice(&h.index.to_le_bytes());
    hello.extend_from_slice(&h.flags.to_le_bytes());
    w.write_all(&hello)
}

pub fn read_hello(r: &mut dyn Read) -> Result<Hello, WireError> {
    let mut hello = [0u8; HELLO_LEN];
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
    let flags = u16::from_le_bytes([hello[30], hello[31]]);
    if streams == 0 || streams > MAX_STREAMS || index >= streams || flags & !RESUME != 0 {
        return Err(WireError::NotCoffer);
    }
    Ok(Hello { streams, session: hello[12..28].try_into().expect("16 bytes"), index, flags })
}

/// What a receiver holds from an interrupted transfer (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The image it was restoring, if any.
    pub image_id: Option<[u8; 16]>,
    /// Where that image's next entry starts (0: nothing of it is durable).
    pub offset: u64,
    /// Index records of the files it holds durably.
    pub files: Vec<u8>,
}

const OFFER_MAGIC: &[u8; 8] = b"COFFERRS";
/// A bound on the file list a receiver may send (about 2 million files' records).
pub const MAX_OFFER_FILES: u32 = 256 << 20;

pub fn write_offer(w: &mut dyn Write, o: &Offer) -> std::io::Result<()> {
    let mut b = OFFER_MAGIC.to_vec();
    b.extend_from_slice(&o.image_id.unwrap_or_default());
    b.extend_from_slice(&o.offset.to_le_bytes());
    b.extend_from_slice(&(o.files.len() as u32).to_le_bytes());
    b.extend_from_slice(&o.files);
    w.write_all(&b)?;
    w.flush()
}

pub fn read_offer(r: &mut dyn Read) -> Result<Offer, WireError> {
    let mut head = [0u8; 36];
    r.read_exact(&mut head)?;
    if &head[..8] != OFFER_MAGIC {
        return Err(WireError::NotCoffer);
    }
    let id: [u8; 16] = head[8..24].try_into().expect("16 bytes");
    let offset = u64::from_le_bytes(head[24..32].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(head[32..36].try_into().expect("4 bytes"));
    if len > MAX_OFFER_FILES {
        return Err(WireError::NotCoffer);
    }
    let mut files = vec![0u8; len as usize];
    r.read_exact(&mut files)?;
    Ok(Offer { image_id: (id != [0; 16]).then_some(id), offset, files })
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
        let h = Hello { streams: 3, session: [7; 16], index: 2, flags: RESUME };
        write_hello(&mut b, &h).unwrap();
        assert_eq!(&b[..12], b"COFFERTX\x01\x00\x03\x00");
        assert_eq!(&b[28..], b"\x02\x00\x01\x00");
        assert_eq!(b.len(), 32);
        assert_eq!(read_hello(&mut &b[..]).unwrap(), h);
        let mut bad = b.clone();
        bad[28] = 3; // index 3 of 3
        assert!(matches!(read_hello(&mut &bad[..]), Err(WireError::NotCoffer)));
        let mut unknown_flag = b.clone();
        unknown_flag[30] = 2;
        assert!(matches!(read_hello(&mut &unknown_flag[..]), Err(WireError::NotCoffer)));
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

    #[test]
    fn offers_round_trip() {
        for o in [Offer::default(), Offer { image_id: Some([5; 16]), offset: 123_456, files: b"records".to_vec() }] {
            let mut b = Vec::new();
            write_offer(&mut b, &o).unwrap();
            assert_eq!(b.len(), 36 + o.files.len());
            assert_eq!(read_offer(&mut &b[..]).unwrap(), o);
            assert!(read_offer(&mut &b[..b.len() - 1]).is_err());
        }
        let mut huge = Vec::new();
        write_offer(&mut huge, &Offer::default()).unwrap();
        huge[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_offer(&mut &huge[..]), Err(WireError::NotCoffer)));
        assert!(matches!(
            read_offer(&mut &b"READY\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..]),
            Err(WireError::NotCoffer)
        ));
    }
}
