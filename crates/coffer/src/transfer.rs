//! Images between hosts over TLS 1.3, both ends authenticated: `send` (an image as it is) and
//! `receive` (restored as it arrives, or kept as a file, resumably).

use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::net::{dial, finish_send, stalled, Stalling, TlsOptions};
use crate::read::Counting;
use crate::restore::{Journaling, RestoreSpec};
use crate::text::human;
use crate::Env;
use coffer_image::journal::PartialMark;
use coffer_net::{tls, wire};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Is `path` an image to send as it is (standard input, an object, or a file that starts with
/// coffer's magic), rather than something to back up onto the wire?
pub fn is_image(path: &Path) -> bool {
    if path == Path::new("-") || matches!(Location::from_path(path), Location::Object(_)) {
        return true;
    }
    let mut magic = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && coffer_format::Header::has_magic(&magic)
}

/// What `send` did.
#[derive(Debug, Clone)]
pub struct SendSummary {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes the receiver says it stored.
    pub stored: u64,
    /// How long it took.
    pub seconds: f64,
}

impl SendSummary {
    /// The line that says what was sent to `to`.
    pub fn line(&self, to: &str) -> String {
        format!(
            "sent {} to {to} in {:.1} s ({}); the receiver stored {}",
            human(self.sent),
            self.seconds,
            crate::text::rate(self.sent, self.seconds),
            human(self.stored)
        )
    }
}

/// Sends the image at `image` as it is to the receiver at `to`; with `tls.resume`, from where
/// the receiver's durable copy of it ends.
pub fn send(image: &Path, to: &str, tls: &TlsOptions, env: &Env) -> Result<SendSummary> {
    let location = Location::from_path(image);
    let (mut input, len) = location.open_stream(env)?;
    let mut region = Vec::new();
    (&mut input)
        .take(coffer_format::DATA_OFFSET)
        .read_to_end(&mut region)
        .with_context(|| format!("cannot read {}", image.display()))?;
    if !coffer_format::Header::has_magic(&region) {
        crate::bail!(
            "{} is not a coffer image (to send a stream as a file, use `coffer backup - --to ...`)",
            image.display()
        );
    }
    let (mut stream, offer) = dial(to, tls)?;
    let skip = match &offer {
        Some(offer) => resume_at(offer, &region, len, to, env)?,
        None => 0,
    };
    let started = Instant::now();
    let progress = env.report.progress(len, "send");
    progress.advance(skip);
    // The header region, then the frames from where the receiver goes on.
    match (&location, len) {
        (Location::Object(url), Some(len)) if skip > 0 => {
            // An object is read from where the receiver goes on, not from its start.
            if env.abort_uploads_on_signals {
                crate::store::abort_on_signals();
            }
            let from = coffer_format::DATA_OFFSET + skip;
            let object = coffer_store::Object::open(url, &env.store)?;
            input = Box::new(object.range_reader(from, len.saturating_sub(from)));
        }
        _ => {
            let skipped = std::io::copy(&mut (&mut input).take(skip), &mut std::io::sink())
                .with_context(|| format!("cannot read {}", image.display()))?;
            if skipped < skip {
                return Err(past_the_end(to, coffer_format::DATA_OFFSET + skip, coffer_format::DATA_OFFSET + skipped));
            }
        }
    }
    let sent = stream.write_all(&region).and_then(|()| {
        let mut reader = Counting { inner: &mut input, progress: progress.clone() };
        std::io::copy(&mut reader, &mut stream)
    });
    progress.finish();
    let sent = sent.map_err(|e| stalled(e, tls.stall_timeout, to))? + region.len() as u64;
    let stored = finish_send(stream, to, tls)?;
    Ok(SendSummary { sent, stored, seconds: started.elapsed().as_secs_f64() })
}

/// A receiver's offer that no image of this length could have left (a hostile or broken peer).
fn past_the_end(to: &str, offset: u64, len: u64) -> Error {
    Error::msg(format!(
        "{to} says it holds this image up to byte {offset}, past its end ({len} bytes): refusing to go on"
    ))
}

/// How many bytes after the header region the receiver already holds of the image whose header
/// region is `region` (and length `len`, if known).
fn resume_at(offer: &wire::Offer, region: &[u8], len: Option<u64>, to: &str, env: &Env) -> Result<u64> {
    let Some(held) = offer.image_id else { return Ok(0) };
    let ours = coffer_image::choose_header(region).context("cannot read the image's header")?.header.image_id;
    if held != ours {
        crate::bail!(
            "{to} holds an interrupted transfer of another image ({}): restart the receiver with --force to replace it",
            coffer_crypto::hex(&held[..8])
        );
    }
    if let Some(len) = len.filter(|len| offer.offset > *len) {
        return Err(past_the_end(to, offer.offset, len));
    }
    let data_offset = coffer_format::DATA_OFFSET;
    if offer.offset <= data_offset {
        return Ok(0);
    }
    env.report.say(&format!("{to} holds this image up to byte {} durably: sending the rest", offer.offset));
    Ok(offer.offset - data_offset)
}

/// A receiver, as a user asks for one.
#[derive(Debug, Clone)]
pub struct ReceiveSpec {
    /// Address to listen on: HOST:PORT, or :PORT for every address.
    pub listen: String,
    /// This end's certificate and key, and the peers it accepts.
    pub tls: TlsOptions,
    /// Restore into this directory as the image arrives.
    pub to: Option<PathBuf>,
    /// Or keep the image as this file.
    pub output: Option<PathBuf>,
    /// The secrets that open the image (to restore it).
    pub keys: KeySources,
    /// Owner of what is restored (see [`RestoreSpec::owner`]).
    pub owner: Option<String>,
    /// Keep set-uid and set-gid bits.
    pub keep_setuid: bool,
    /// Replace what is there, or an interrupted transfer.
    pub force: bool,
    /// Flush and record what arrived every this many bytes.
    pub checkpoint: u64,
}

/// What `receive` did.
#[derive(Debug, Clone)]
pub struct ReceiveSummary {
    /// The sender's address.
    pub peer: String,
    /// Bytes stored (restored files' bytes, or the image's).
    pub stored: u64,
    /// How long it took, from the sender's connection.
    pub seconds: f64,
}

impl ReceiveSummary {
    /// The line that says what was received.
    pub fn line(&self) -> String {
        format!(
            "received {} from {} in {:.1} s ({})",
            human(self.stored),
            self.peer,
            self.seconds,
            crate::text::rate(self.stored, self.seconds)
        )
    }

    /// What was received, as `receive --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"peer": self.peer, "bytes": self.stored, "seconds": self.seconds})
    }
}

fn listen_addr(listen: &str) -> String {
    match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen.to_owned(),
    }
}

/// Listens for one sender, takes its image (restored into `spec.to`, or kept as
/// `spec.output`), and tells the sender the outcome.
pub fn receive(spec: &ReceiveSpec, env: &Env) -> Result<ReceiveSummary> {
    receive_then(spec, None, env)
}

/// Work a receive does on the directory it restored, before the sender learns the outcome.
pub type Then<'a> = dyn Fn(&Path) -> Result<()> + 'a;

/// [`receive`], with `then` run on the restored directory before the sender learns the outcome,
/// which includes it (the server wing prepares a server backup so). With `then`, the restore
/// leaves its marker in the directory, naming the image, for `then` to remove once its own
/// work is done and durable (see `crate::server::prepare`).
pub fn receive_then(spec: &ReceiveSpec, then: Option<&Then<'_>>, env: &Env) -> Result<ReceiveSummary> {
    let config = tls::server_config(&spec.tls.credentials()?)?;
    let addr = listen_addr(&spec.listen);
    let listener = std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    // What an interrupted transfer into the target left, offered to a sender that resumes.
    let held = match &spec.to {
        Some(dir) => crate::restore::interrupted(dir).unwrap_or_else(|e| {
            env.report.warn(&format!("{}: the interrupted transfer cannot be resumed", e.one_line()));
            None
        }),
        None => None,
    };
    // A partial image counts if its file still holds what its mark says is durable.
    let kept = spec.output.as_deref().and_then(|f| {
        let (data, mark) = partial_paths(f);
        read_mark(&mark).filter(|m| std::fs::metadata(&data).is_ok_and(|md| md.len() >= m.durable_len))
    });
    let offer = match &kept {
        Some(k) => wire::Offer { image_id: Some(k.image_id), offset: k.durable_len, files: Vec::new() },
        None => offer_of(held.as_ref()),
    };
    // The line a supervisor (a Galera SST script, a test) waits for.
    env.report.ready(&format!("listening on {bound}"));
    let (streams, peer, hello) = accept_all(&listener, config, &spec.tls, &offer, env)?;
    drop(listener);
    let started = Instant::now();
    let mut incoming = if streams.len() == 1 {
        Incoming::One(Box::new(streams.into_iter().next().expect("one stream")))
    } else {
        Incoming::Many(coffer_net::stripe::StripedReader::new(streams))
    };
    let journaling = Journaling { state: held, resume: hello.flags & wire::RESUME != 0, every: spec.checkpoint };
    let result = match (&spec.to, &spec.output) {
        (Some(dir), _) => restore_into(&mut incoming, dir, spec, &journaling, then.is_some(), env)
            .and_then(|n| then.map_or(Ok(()), |then| then(dir)).map(|()| n)),
        (None, Some(file)) => keep(&mut incoming, file, spec, kept.as_ref(), journaling.resume, env),
        (None, None) => Err(Error::usage("receive needs --to DIR or -o FILE")),
    };
    // A failed read or write of the connection, under whatever context, is the transfer's
    // failure (a stall, or the connection's error), as the sender will be told.
    // A full disk is this end's, not the connection's: said with its file system.
    let result = result.map_err(|e| match (&spec.to, &spec.output) {
        (Some(place), _) | (None, Some(place)) if crate::room::is_full(&e) => crate::room::explain(e, place, None),
        _ => match root_io(e) {
            Ok(io) => stalled(io, spec.tls.stall_timeout, &peer),
            Err(e) => e,
        },
    });
    // The sender learns the outcome (on the first connection) before either side exits.
    let mut streams = match incoming {
        Incoming::One(s) => vec![*s],
        Incoming::Many(r) => r.finish().unwrap_or_default(),
    };
    let status = result.as_ref().map(|n| *n).map_err(Error::one_line);
    if let Some(first) = streams.first_mut() {
        let _ = wire::write_status(first, &status);
    }
    for s in &mut streams {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let stored = result?;
    Ok(ReceiveSummary { peer, stored, seconds: started.elapsed().as_secs_f64() })
}

/// The I/O error at the root of `e` (beneath its contexts), if that is what it is; else `e`
/// unchanged.
fn root_io(e: Error) -> std::result::Result<std::io::Error, Error> {
    fn is_io(e: &Error) -> bool {
        match e {
            Error::Context { source, .. } => is_io(source),
            Error::Other(inner) => inner.is::<std::io::Error>(),
            _ => false,
        }
    }
    if !is_io(&e) {
        return Err(e);
    }
    let mut e = e;
    loop {
        e = match e {
            Error::Context { source, .. } => *source,
            Error::Other(inner) => return inner.downcast::<std::io::Error>().map(|io| *io).map_err(Error::Other),
            other => return Err(other),
        };
    }
}

fn restore_into(
    stream: &mut Incoming,
    dir: &Path,
    spec: &ReceiveSpec,
    journaling: &Journaling,
    keep_marker: bool,
    env: &Env,
) -> Result<u64> {
    let restore = RestoreSpec {
        image: None,
        to: dir.to_path_buf(),
        keys: spec.keys.clone(),
        owner: spec.owner.clone(),
        keep_setuid: spec.keep_setuid,
        force: spec.force,
        sync: true,
        limit_rate: None,
    };
    let input = Stalling::new(stream, spec.tls.stall_timeout);
    let keys = crate::keys::unlocks(&restore.keys, env)?;
    let summary = crate::restore::restore_unlocked(input, None, &restore, Some(journaling), &keys, keep_marker, env)?;
    env.report.say(&summary.line());
    Ok(summary.read.logical_bytes)
}

/// Where an image comes from: one connection, or blocks over several.
enum Incoming {
    One(Box<tls::ServerStream>),
    Many(coffer_net::stripe::StripedReader<tls::ServerStream>),
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Incoming::One(s) => s.read(buf),
            Incoming::Many(r) => r.read(buf),
        }
    }
}

/// Handshakes under way at most: further connections wait in the listener's backlog.
const HANDSHAKES: usize = 64;
/// Refused connections reported one by one at most (then only counted).
const REFUSALS_SHOWN: usize = 20;

/// A connection after its handshake: authenticated, with what it said first; refused over
/// certificates (the two ends' do not fit); or refused as no coffer sender at all.
enum Arrival {
    Hello(Box<tls::ServerStream>, String, Result<wire::Hello>),
    Mismatch(tls::TlsError),
    Refused(String),
}

/// The handshake and hello of one accepted connection, on a thread of its own.
fn greet(tcp: std::net::TcpStream, config: std::sync::Arc<tls::ReceiverConfig>, stall: Duration) -> Arrival {
    if let Err(e) = tcp.set_nonblocking(false) {
        return Arrival::Refused(format!("accept: {e}"));
    }
    match tls::handshake_server(tcp, config, stall) {
        Ok((mut s, peer)) => {
            let hello = wire::read_hello(&mut s).map_err(|e| match e {
                wire::WireError::Io(io) => stalled(io, stall.as_secs(), &peer),
                other => Error::from(other).context(format!("from {peer}")),
            });
            Arrival::Hello(Box::new(s), peer, hello)
        }
        Err(e @ tls::TlsError::Certificate(_)) => Arrival::Mismatch(e),
        Err(e) => Arrival::Refused(e.to_string()),
    }
}

/// The listener and the handshakes under way, each on a thread of its own: a peer that stalls
/// or trickles its handshake holds up no other, and is cut at the stall timeout.
struct Gate<'a> {
    listener: &'a std::net::TcpListener,
    config: std::sync::Arc<tls::ReceiverConfig>,
    stall: Duration,
    pending: usize,
    tx: std::sync::mpsc::Sender<Arrival>,
    rx: std::sync::mpsc::Receiver<Arrival>,
}

impl<'a> Gate<'a> {
    fn new(listener: &'a std::net::TcpListener, config: std::sync::Arc<tls::ReceiverConfig>, stall: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        Self { listener, config, stall, pending: 0, tx, rx }
    }

    /// Starts the handshakes of new connections (as many as there is room for), then waits up
    /// to `patience` for one to end.
    fn next(&mut self, patience: Duration) -> Result<Option<Arrival>> {
        while self.pending < HANDSHAKES {
            let tcp = match self.listener.accept() {
                Ok((tcp, _)) => tcp,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // A peer that gave up before it was accepted.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(Error::from(e).context("accept")),
            };
            let (tx, config, stall) = (self.tx.clone(), self.config.clone(), self.stall);
            std::thread::spawn(move || {
                let _ = tx.send(greet(tcp, config, stall));
            });
            self.pending += 1;
        }
        match self.rx.recv_timeout(patience) {
            Ok(arrival) => {
                self.pending -= 1;
                Ok(Some(arrival))
            }
            Err(_) => Ok(None),
        }
    }
}

/// The transfer's connections as they come: the first says how many there are and names the
/// session; the others must name the same session within the stall timeout.
struct Joining {
    peer: String,
    hello: wire::Hello,
    slots: Vec<Option<tls::ServerStream>>,
    deadline: Instant,
}

impl Joining {
    fn complete(&self) -> bool {
        self.slots.iter().all(Option::is_some)
    }

    /// Takes another connection of the session, with a READY.
    fn join(&mut self, mut s: tls::ServerStream, from: &str, h: wire::Hello, t: &TlsOptions) -> Result<()> {
        let fits = h.session == self.hello.session && h.streams == self.hello.streams;
        match self.slots.get_mut(usize::from(h.index)).filter(|_| fits) {
            Some(slot @ None) => {
                s.write_all(wire::READY).and_then(|()| s.flush()).map_err(|e| stalled(e, t.stall_timeout, from))?;
                *slot = Some(s);
                Ok(())
            }
            _ => {
                crate::bail!("{from} is not part of the transfer from {} (session, count or index differs)", self.peer)
            }
        }
    }
}

/// Accepts the sender's connections, each with a READY (and on the first, if it asks, the
/// offer). Before the sender has come, a peer whose certificate is refused (or that refuses
/// ours) fails the transfer, as a sender with the wrong certificates would: both ends say so.
/// Peers that are no coffer sender at all (not TLS, not TLS 1.3, no certificate, too slow) are
/// reported and the receiver waits on, as it does for any refused peer once the sender has
/// come. An authenticated peer that does not keep to the protocol fails the transfer.
fn accept_all(
    listener: &std::net::TcpListener,
    config: std::sync::Arc<tls::ReceiverConfig>,
    t: &TlsOptions,
    offer: &wire::Offer,
    env: &Env,
) -> Result<(Vec<tls::ServerStream>, String, wire::Hello)> {
    listener.set_nonblocking(true).context("cannot poll the listener")?;
    let mut gate = Gate::new(listener, config, t.stall());
    let mut joining: Option<Joining> = None;
    let mut refused = 0usize;
    loop {
        if let Some(j) = joining.take_if(|j| j.complete()) {
            return Ok((j.slots.into_iter().map(|s| s.expect("all came")).collect(), j.peer, j.hello));
        }
        if let Some(j) = joining.as_ref().filter(|j| Instant::now() > j.deadline) {
            crate::bail!(
                "{} announced {} connections, and the others did not come within {} s",
                j.peer,
                j.hello.streams,
                t.stall_timeout
            );
        }
        // Polled: more often while connections are on their way.
        let patience = Duration::from_millis(if joining.is_some() || gate.pending > 0 { 5 } else { 25 });
        let (mut s, from, hello) = match gate.next(patience)? {
            None => continue,
            Some(Arrival::Hello(s, from, hello)) => (*s, from, hello?),
            Some(Arrival::Mismatch(e)) if joining.is_none() => return Err(e.into()),
            Some(Arrival::Mismatch(e)) => {
                refuse(&mut refused, &e.to_string(), env);
                continue;
            }
            Some(Arrival::Refused(why)) => {
                refuse(&mut refused, &why, env);
                continue;
            }
        };
        match joining.as_mut() {
            Some(j) => j.join(s, &from, hello, t)?,
            None => {
                s.write_all(wire::READY).and_then(|()| s.flush()).map_err(|e| stalled(e, t.stall_timeout, &from))?;
                if hello.flags & wire::RESUME != 0 {
                    wire::write_offer(&mut s, offer).map_err(|e| stalled(e, t.stall_timeout, &from))?;
                }
                let mut slots: Vec<Option<tls::ServerStream>> = (0..hello.streams).map(|_| None).collect();
                slots[usize::from(hello.index)] = Some(s);
                joining = Some(Joining { peer: from, hello, slots, deadline: Instant::now() + t.stall() });
            }
        }
    }
}

/// Reports a refused connection (the first few of them).
fn refuse(refused: &mut usize, why: &str, env: &Env) {
    *refused += 1;
    if *refused <= REFUSALS_SHOWN {
        env.report.warn(&format!("refused a connection: {why}"));
    }
    if *refused == REFUSALS_SHOWN {
        env.report.warn("further refused connections are not reported");
    }
}

/// The offer a target's journal makes: its image and checkpoint, and every durable file.
fn offer_of(held: Option<&coffer_image::journal::JournalState>) -> wire::Offer {
    let Some(state) = held else { return wire::Offer::default() };
    let mut files = Vec::new();
    for r in state.durable_files() {
        r.encode(&mut files);
    }
    wire::Offer { image_id: state.image_id, offset: state.point.as_ref().map_or(0, |p| p.at.offset), files }
}

/// Where `receive -o FILE` keeps the image while it arrives, and the mark that says how much of
/// it is durable: `.FILE.coffer-partial` and `.FILE.coffer-partial.mark`, beside FILE.
fn partial_paths(file: &Path) -> (PathBuf, PathBuf) {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = coffer_fs::sync::parent_of(file);
    (dir.join(format!(".{name}.coffer-partial")), dir.join(format!(".{name}.coffer-partial.mark")))
}

/// Writes the mark: flushed under a temporary name, then renamed over the old one.
fn write_mark(mark: &Path, m: &PartialMark) -> std::io::Result<()> {
    let tmp = mark.with_extension("mark-new");
    // Never through a symlink planted beside the output (a shared directory such as /tmp).
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&tmp)?;
    let written = (&f).write_all(&m.encode()).and_then(|()| f.sync_data()).and_then(|()| std::fs::rename(&tmp, mark));
    if written.is_err() {
        // Not left for a later run to trip over (a full disk fails the write).
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // Its name and the partial image's (the same directory) survive a power cut: what the
    // receiver says it kept for `send --resume` is there.
    coffer_fs::sync::sync_parent(mark)
}

/// The mark beside a partial image, if it is an intact one: read without following a symlink
/// or blocking on a FIFO planted there, and never more than a mark's size.
fn read_mark(mark: &Path) -> Option<PartialMark> {
    let flags = nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits();
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(mark).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(64).read_to_end(&mut bytes).ok()?;
    PartialMark::parse(&bytes)
}

/// Stores the stream as an image file, which appears under its name only when the sender has
/// closed the stream cleanly (a TLS close_notify; an image cut short is never kept). Until then
/// it grows under a partial name, flushed and marked every `--checkpoint` bytes and when the
/// transfer fails, so that `send --resume` can go on from there.
fn keep(
    stream: &mut Incoming,
    file: &Path,
    spec: &ReceiveSpec,
    held: Option<&PartialMark>,
    resume: bool,
    env: &Env,
) -> Result<u64> {
    if !spec.force && std::fs::symlink_metadata(file).is_ok() {
        crate::bail!("{} already exists (use --force to replace it)", file.display());
    }
    let (data, mark) = partial_paths(file);
    if held.is_some() && !resume && !spec.force {
        crate::bail!(
            "{} holds part of an interrupted transfer: `coffer send --resume` continues it; --force replaces it",
            data.display()
        );
    }
    let mut input = Stalling::new(stream, spec.tls.stall_timeout);
    let mut region = vec![0u8; coffer_format::DATA_OFFSET as usize];
    input.read_exact(&mut region).context("the sender sent no image")?;
    let image_id = coffer_image::choose_header(&region).context("the sender's image")?.header.image_id;
    let held = held.filter(|_| resume);
    if let Some(h) = held {
        if h.image_id != image_id {
            crate::bail!(
                "{} holds part of another image ({}): restart the receiver with --force to replace it",
                data.display(),
                coffer_crypto::hex(&h.image_id[..8])
            );
        }
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(held.is_none())
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&data)
        .with_context(|| format!("cannot create {}", data.display()))?;
    // The header region as the sender has it now (a key-slot change may have rewritten it).
    let mut written = held.map_or(0, |h| h.durable_len).max(region.len() as u64);
    out.set_len(written)
        .and_then(|()| out.write_all_at(&region, 0))
        .with_context(|| format!("cannot write {}", data.display()))?;
    if held.is_some() {
        env.report.say(&format!("going on with {} from byte {written}", data.display()));
    }
    let bar = env.report.progress(None, "receive");
    bar.advance(written);
    let result = copy_marked(&mut input, &out, &mut written, &data, &mark, image_id, spec.checkpoint, bar.as_ref());
    bar.finish();
    if let Err(e) = result {
        // What arrived is kept for `send --resume`, once it is on disk; where no mark can be
        // written now (a full disk), the last checkpoint's still says what is.
        let marked = out.sync_data().and_then(|()| write_mark(&mark, &PartialMark { image_id, durable_len: written }));
        let kept = match marked {
            Ok(()) => Some(written),
            Err(_) => read_mark(&mark).filter(|m| m.image_id == image_id).map(|m| m.durable_len),
        };
        let Some(kept) = kept else { return Err(e) };
        return Err(Error::msg(format!(
            "{} ({} of the image are kept in {} for `coffer send --resume`)",
            e.one_line(),
            human(kept),
            data.display()
        )));
    }
    out.sync_all().with_context(|| format!("cannot flush {}", data.display()))?;
    drop(out);
    std::fs::rename(&data, file).with_context(|| format!("cannot rename {} to {}", data.display(), file.display()))?;
    let _ = std::fs::remove_file(&mark);
    let dir = coffer_fs::sync::parent_of(file);
    coffer_fs::sync::sync_dir(dir).with_context(|| format!("cannot flush {}", dir.display()))?;
    Ok(written)
}

/// Copies the rest of the stream into `out` from `*written` on, flushing and marking what is
/// durable every `checkpoint` bytes; `*written` is where it stopped, failed or not.
#[allow(clippy::too_many_arguments)]
fn copy_marked(
    input: &mut impl Read,
    out: &std::fs::File,
    written: &mut u64,
    data: &Path,
    mark: &Path,
    image_id: [u8; 16],
    checkpoint: u64,
    bar: &dyn crate::Progress,
) -> Result<()> {
    let mut since = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A message, not an io::Error: the context added by the caller must survive.
            Err(e) => return Err(Error::msg(format!("the transfer failed: {e}"))),
        };
        out.write_all_at(&buf[..n], *written).with_context(|| format!("cannot write {}", data.display()))?;
        *written += n as u64;
        since += n as u64;
        bar.advance(n as u64);
        if since >= checkpoint {
            since = 0;
            out.sync_data()
                .and_then(|()| write_mark(mark, &PartialMark { image_id, durable_len: *written }))
                .with_context(|| format!("cannot flush {}", data.display()))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_error_is_found_beneath_contexts() {
        let timed_out = Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            .context("the sender sent no image")
            .context("more");
        assert_eq!(root_io(timed_out).unwrap().kind(), std::io::ErrorKind::TimedOut);
        let stalled = stalled(std::io::ErrorKind::TimedOut.into(), 2, "p");
        assert_eq!(stalled.one_line(), "the transfer with p stalled: nothing moved for 2 s (--stall-timeout)");
        let usage = Error::usage("no").context("ctx");
        assert_eq!(root_io(usage).unwrap_err().one_line(), "ctx: no");
        let image = Error::from(coffer_image::ImageError::WrongKey).context("x");
        assert_eq!(root_io(image).unwrap_err().exit_code(), crate::error::exit::WRONG_KEY);
    }
}
