//! The sending end of a transfer over TLS 1.3: dialling a receiver on one or several
//! connections, pacing, stalls, and the receiver's verdict.

use crate::error::{Error, Result};
use coffer_fs::rate::RateLimit;
use coffer_net::{tls, wire};
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// This end's certificate and key, the peer it accepts, and how the transfer runs.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// This end's certificate (PEM; a chain is accepted).
    pub cert: PathBuf,
    /// This end's private key (PEM).
    pub key: PathBuf,
    /// The CA certificate(s) the peer's certificate must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// SHA-256 fingerprints (`sha256:HEX`) one of which the peer's certificate must have.
    pub peer_fingerprints: Vec<String>,
    /// A transfer that moves no byte for this many seconds fails.
    pub stall_timeout: u64,
    /// Connections to carry the image in parallel.
    pub streams: usize,
    /// Go on with an interrupted transfer.
    pub resume: bool,
    /// At most this many bytes per second.
    pub limit_rate: Option<u64>,
}

impl TlsOptions {
    /// A receiver's options: one connection, nothing resumed, no pace (the receiver takes as
    /// many connections as the sender opens).
    pub fn new(cert: PathBuf, key: PathBuf, ca: Option<PathBuf>, pins: Vec<String>, stall_timeout: u64) -> Self {
        let peer_fingerprints = pins;
        Self { cert, key, ca, peer_fingerprints, stall_timeout, streams: 1, resume: false, limit_rate: None }
    }

    /// These options for a sender: `streams` connections [default: one a core], resumed or not,
    /// paced or not.
    pub fn sending(self, streams: Option<usize>, resume: bool, limit_rate: Option<u64>) -> Self {
        let streams = streams.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Self { streams, resume, limit_rate, ..self }
    }

    /// The certificates and pins, checked.
    pub fn credentials(&self) -> Result<tls::Credentials> {
        let pins = self
            .peer_fingerprints
            .iter()
            .map(|f| {
                tls::parse_fingerprint(f)
                    .ok_or_else(|| Error::usage(format!("--peer-fingerprint {f}: expected sha256: and 64 hex digits")))
            })
            .collect::<Result<_>>()?;
        Ok(tls::Credentials { cert: self.cert.clone(), key: self.key.clone(), ca: self.ca.clone(), pins })
    }

    /// The stall timeout (at least a second).
    pub fn stall(&self) -> Duration {
        Duration::from_secs(self.stall_timeout.max(1))
    }
}

/// A stream whose timed-out reads and writes say that the transfer stalled, whichever layer
/// (restore, image reader, copy) reports them.
#[derive(Debug)]
pub struct Stalling<S> {
    inner: S,
    secs: u64,
}

impl<S> Stalling<S> {
    /// `inner`, whose timeouts are stalls of `secs` seconds.
    pub fn new(inner: S, secs: u64) -> Self {
        Self { inner, secs }
    }

    /// The stream inside.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn check<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the transfer stalled: nothing moved for {} s (--stall-timeout)", self.secs),
            ),
            _ => e,
        })
    }
}

impl<S: Read> Read for Stalling<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        self.check(r)
    }
}

impl<S: Write> Write for Stalling<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.check(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.check(r)
    }
}

/// Turns a timed-out read or write into the stall it is.
pub fn stalled(e: std::io::Error, stall_timeout: u64, peer: &str) -> Error {
    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
        Error::msg(format!("the transfer with {peer} stalled: nothing moved for {stall_timeout} s (--stall-timeout)"))
    } else {
        Error::from(e).context(format!("the transfer with {peer} failed"))
    }
}

/// Where an image goes: one connection, or blocks over several; at most the rate limit.
pub struct Outgoing {
    way: Way,
    limit: Option<RateLimit>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").finish_non_exhaustive()
    }
}

enum Way {
    One(Box<tls::ClientStream>),
    Many(coffer_net::stripe::StripedWriter<tls::ClientStream>),
}

impl Write for Outgoing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Paced in pieces of at most 64 KiB, so that a large write does not go out as a burst.
        let buf = if self.limit.is_some() { &buf[..buf.len().min(64 << 10)] } else { buf };
        let n = match &mut self.way {
            Way::One(s) => s.write(buf),
            Way::Many(w) => w.write(buf),
        }?;
        if let Some(l) = &self.limit {
            l.take(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.way {
            Way::One(s) => s.flush(),
            Way::Many(w) => w.flush(),
        }
    }
}

fn refused(e: wire::WireError, to: &str, t: &TlsOptions) -> Error {
    match e {
        wire::WireError::Io(io) if io.to_string().contains("alert") => Error::msg(tls::explain(&io, to)),
        wire::WireError::Io(io) => stalled(io, t.stall_timeout, to),
        other => Error::from(other).context(format!("{to} refused the transfer")),
    }
}

/// Opens `t.streams` connections to a receiver, each announced with the session's id, and
/// waits for every READY (the receiver has accepted our certificate on each). With `resume`,
/// also what the receiver holds from an interrupted transfer.
pub fn dial(to: &str, t: &TlsOptions) -> Result<(Outgoing, Option<wire::Offer>)> {
    let config = tls::client_config(&t.credentials()?)?;
    let n = t.streams.clamp(1, usize::from(wire::MAX_STREAMS)) as u16;
    let mut session = [0u8; 16];
    coffer_crypto::random(&mut session)?;
    let flags = if t.resume { wire::RESUME } else { 0 };
    let mut streams = Vec::new();
    let mut offer = None;
    // One at a time: each READY says the receiver accepted us before the next connection.
    for index in 0..n {
        let mut stream = tls::connect(to, config.clone(), t.stall())?;
        wire::write_hello(&mut stream, &wire::Hello { streams: n, session, index, flags })
            .and_then(|()| stream.flush())
            .map_err(wire::WireError::Io)
            .and_then(|()| wire::read_ready(&mut stream))
            .map_err(|e| refused(e, to, t))?;
        if index == 0 && t.resume {
            offer = Some(wire::read_offer(&mut stream).map_err(|e| refused(e, to, t))?);
        }
        streams.push(stream);
    }
    let way = if n == 1 {
        Way::One(Box::new(streams.pop().expect("one stream")))
    } else {
        Way::Many(coffer_net::stripe::StripedWriter::new(streams))
    };
    let limit = t.limit_rate.map(RateLimit::new);
    Ok((Outgoing { way, limit }, offer))
}

/// Ends the image stream and waits for the receiver's verdict: the bytes it stored.
pub fn finish_send(out: Outgoing, to: &str, t: &TlsOptions) -> Result<u64> {
    let mut streams = match out.way {
        Way::One(s) => vec![*s],
        Way::Many(w) => w.finish().map_err(|e| stalled(e, t.stall_timeout, to))?,
    };
    for s in &mut streams {
        s.conn.send_close_notify();
        s.flush().map_err(|e| stalled(e, t.stall_timeout, to))?;
    }
    wire::read_status(&mut BufReader::new(&mut streams[0])).map_err(|e| match e {
        wire::WireError::Io(io) => stalled(io, t.stall_timeout, to),
        other => Error::from(other),
    })
}

/// The files a receiver holds durably, by path, from its offer: a resumed directory transfer
/// leaves out those whose size and modification time still match.
pub fn held_files(offer: &wire::Offer) -> Result<std::collections::HashMap<Vec<u8>, coffer_format::EntryMeta>> {
    let records = coffer_format::IndexRecord::parse_all(&offer.files)
        .map_err(|e| Error::msg(format!("the receiver's list of what it holds is malformed: {e}")))?;
    Ok(records.into_iter().map(|r| (r.meta.path.clone(), r.meta)).collect())
}

/// What [`generate`] wrote: the CA (if it made one), and a node's certificate and key.
#[derive(Debug)]
pub struct Generated {
    /// The node's name.
    pub name: String,
    /// The files written.
    pub files: coffer_net::pki::Generated,
}

/// Makes `ca_dir/ca.crt` and `ca.key` if absent, then the certificate and key of the node
/// `name`, for `localhost`, `127.0.0.1` and the names and addresses in `san`.
pub fn generate(ca_dir: &std::path::Path, name: &str, san: &[String], days: u32) -> Result<Generated> {
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    sans.extend_from_slice(san);
    let files = coffer_net::pki::generate(ca_dir, name, &sans, days)?;
    Ok(Generated { name: name.to_owned(), files })
}

impl Generated {
    /// The lines that say what was written.
    pub fn lines(&self) -> Vec<String> {
        let g = &self.files;
        let ca = g.ca_created.then(|| {
            format!("created the CA {} (its key, ca.key, signs node certificates: keep it offline)", g.ca.display())
        });
        let node = format!("wrote {} and {} for {}", g.cert.display(), g.key.display(), self.name);
        ca.into_iter().chain([node]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_takes_one_connection_and_a_sender_one_a_core_unless_told() {
        let r = TlsOptions::new("a.crt".into(), "a.key".into(), None, vec!["sha256:00".into()], 30);
        assert_eq!((r.streams, r.resume, r.limit_rate, r.stall_timeout), (1, false, None, 30));
        assert_eq!(r.peer_fingerprints, ["sha256:00"]);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s = r.clone().sending(None, true, Some(9));
        assert_eq!((s.streams, s.resume, s.limit_rate), (cores, true, Some(9)));
        assert_eq!((&s.cert, &s.key, s.stall_timeout), (&r.cert, &r.key, 30));
        assert_eq!(r.sending(Some(3), false, None).streams, 3);
    }
}
