//! `coffer tls generate`, `coffer send`, `coffer receive`: images between hosts over TLS 1.3,
//! both ends authenticated, restored on the fly at the far end.

use super::{human, rate};
use crate::cli::{BackupArgs, ReceiveArgs, TlsArgs, TlsCommand};
use crate::progress::{Bar, CountingReader};
use anyhow::{anyhow, bail, Context, Result};
use coffer::net::{Outgoing, Stalling};
use coffer_image::journal::PartialMark;
use coffer_net::{tls, wire};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn tls_command(cmd: TlsCommand, quiet: bool) -> Result<()> {
    match cmd {
        TlsCommand::Generate { ca_dir, name, san, days } => {
            let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            sans.extend(san);
            let g = coffer_net::pki::generate(&ca_dir, &name, &sans, days)?;
            if !quiet {
                if g.ca_created {
                    eprintln!(
                        "coffer: created the CA {} (its key, ca.key, signs node certificates: keep it offline)",
                        g.ca.display()
                    );
                }
                eprintln!("coffer: wrote {} and {} for {name}", g.cert.display(), g.key.display());
            }
            Ok(())
        }
        TlsCommand::Fingerprint { cert } => {
            println!("{}", tls::fingerprint(&cert)?);
            Ok(())
        }
    }
}

impl TlsArgs {
    /// The options as the library takes them.
    pub fn options(&self) -> coffer::net::TlsOptions {
        coffer::net::TlsOptions {
            cert: self.cert.clone(),
            key: self.tls_key.clone(),
            ca: self.ca.clone(),
            peer_fingerprints: self.peer_fingerprint.clone(),
            stall_timeout: self.stall_timeout,
            streams: self.streams,
            resume: self.resume,
            limit_rate: self.limit_rate,
        }
    }
}

fn credentials(t: &TlsArgs) -> Result<tls::Credentials> {
    Ok(t.options().credentials()?)
}

fn stall(t: &TlsArgs) -> Duration {
    t.options().stall()
}

/// Turns a timed-out read or write into the stall it is.
fn stalled(e: std::io::Error, t: &TlsArgs, peer: &str) -> anyhow::Error {
    coffer::net::stalled(e, t.stall_timeout, peer).into()
}

fn dial(to: &str, t: &TlsArgs) -> Result<(Outgoing, Option<wire::Offer>)> {
    Ok(coffer::net::dial(to, &t.options())?)
}

fn finish_send(out: Outgoing, to: &str, t: &TlsArgs) -> Result<u64> {
    Ok(coffer::net::finish_send(out, to, &t.options())?)
}

/// `coffer send`: an image as it is (a file with coffer's magic, an object, or '-'), else a
/// backup of the source (a directory, a file, --mysql, --xbstream) made straight onto the wire.
pub fn send(args: BackupArgs, quiet: bool, threads: usize) -> Result<()> {
    let to = args.send_to.clone().ok_or_else(|| crate::exit::usage("send needs --to HOST:PORT"))?;
    let object = match args.source.as_deref() {
        Some(p) => crate::store::object(p)?,
        None => None,
    };
    let image = args.source.as_deref().filter(|p| *p == Path::new("-") || object.is_some() || is_image(p));
    let Some(image) = image else {
        return super::backup::run(args, quiet, threads);
    };
    let t = args.tls.required();
    let (mut input, len) = super::open_stream_input(image)?;
    let mut region = Vec::new();
    (&mut input)
        .take(coffer_format::DATA_OFFSET)
        .read_to_end(&mut region)
        .with_context(|| format!("cannot read {}", image.display()))?;
    if !coffer_format::Header::has_magic(&region) {
        bail!("{} is not a coffer image (to send a stream as a file, use `coffer backup - --to ...`)", image.display());
    }
    let (mut stream, offer) = dial(&to, &t)?;
    let skip = match &offer {
        Some(offer) => resume_at(offer, &region, &to, quiet)?,
        None => 0,
    };
    let started = Instant::now();
    let bar = Bar::new(quiet, len, "send");
    bar.inc(skip);
    // The header region, then the frames from where the receiver goes on.
    if let (Some(o), Some(len), true) = (&object, len, skip > 0) {
        // An object is read from where the receiver goes on, not from its start.
        crate::store::abort_on_signals();
        let from = coffer_format::DATA_OFFSET + skip;
        input = Box::new(o.range_reader(from, len.saturating_sub(from)));
    } else {
        std::io::copy(&mut (&mut input).take(skip), &mut std::io::sink())
            .with_context(|| format!("cannot read {}", image.display()))?;
    }
    let sent = stream.write_all(&region).and_then(|()| {
        let mut reader = CountingReader { inner: &mut input, bar: bar.clone() };
        std::io::copy(&mut reader, &mut stream)
    });
    bar.finish();
    let sent = sent.map_err(|e| stalled(e, &t, &to))? + region.len() as u64;
    let stored = finish_send(stream, &to, &t)?;
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "coffer: sent {} to {to} in {secs:.1} s ({}); the receiver stored {}",
            human(sent),
            rate(sent, secs),
            human(stored)
        );
    }
    Ok(())
}

/// How many bytes after the header region the receiver already holds of the image whose header
/// region is `region`.
fn resume_at(offer: &wire::Offer, region: &[u8], to: &str, quiet: bool) -> Result<u64> {
    let Some(held) = offer.image_id else { return Ok(0) };
    let ours = coffer_image::choose_header(region).context("cannot read the image's header")?.header.image_id;
    if held != ours {
        bail!(
            "{to} holds an interrupted transfer of another image ({}): restart the receiver with --force to replace it",
            coffer_crypto::hex(&held[..8])
        );
    }
    let data_offset = coffer_format::DATA_OFFSET;
    if offer.offset <= data_offset {
        return Ok(0);
    }
    if !quiet {
        eprintln!("coffer: {to} holds this image up to byte {} durably: sending the rest", offer.offset);
    }
    Ok(offer.offset - data_offset)
}

/// A regular file that starts with coffer's magic.
fn is_image(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && coffer_format::Header::has_magic(&magic)
}

fn listen_addr(listen: &str) -> String {
    match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen.to_owned(),
    }
}

pub fn receive(args: ReceiveArgs, quiet: bool, threads: usize) -> Result<()> {
    let config = tls::server_config(&credentials(&args.tls)?)?;
    let addr = listen_addr(&args.listen);
    let listener = std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    // The line a supervisor (a Galera SST script, a test) waits for.
    // What an interrupted transfer into the target left, offered to a sender that resumes.
    let held = match &args.to {
        Some(dir) => coffer::restore::interrupted(dir).unwrap_or_else(|e| {
            super::warn(quiet, format!("{e:#}: the interrupted transfer cannot be resumed"));
            None
        }),
        None => None,
    };
    // A partial image counts if its file still holds what its mark says is durable.
    let kept = args.output.as_deref().and_then(|f| {
        let (data, mark) = partial_paths(f);
        read_mark(&mark).filter(|m| std::fs::metadata(&data).is_ok_and(|md| md.len() >= m.durable_len))
    });
    let offer = match &kept {
        Some(k) => wire::Offer { image_id: Some(k.image_id), offset: k.durable_len, files: Vec::new() },
        None => offer_of(held.as_ref()),
    };
    eprintln!("coffer: listening on {bound}");
    let (streams, peer, hello) = accept_all(&listener, config, &args.tls, &offer)?;
    drop(listener);
    let started = Instant::now();
    let mut incoming = if streams.len() == 1 {
        Incoming::One(Box::new(streams.into_iter().next().expect("one stream")))
    } else {
        Incoming::Many(coffer_net::stripe::StripedReader::new(streams))
    };
    let journaling =
        coffer::restore::Journaling { state: held, resume: hello.flags & wire::RESUME != 0, every: args.checkpoint };
    let result = match (&args.to, &args.output) {
        (Some(dir), _) => restore_into(&mut incoming, dir, &args, &journaling, quiet, threads),
        (None, Some(file)) => keep(&mut incoming, file, &args, kept.as_ref(), journaling.resume, quiet),
        (None, None) => unreachable!("clap requires --to or -o"),
    };
    let result = result.map_err(|e| match io_error(e) {
        Ok(io) => stalled(io, &args.tls, &peer),
        Err(e) => e,
    });
    // The sender learns the outcome (on the first connection) before either side exits.
    let mut streams = match incoming {
        Incoming::One(s) => vec![*s],
        Incoming::Many(r) => r.finish().unwrap_or_default(),
    };
    let status = result.as_ref().map(|n| *n).map_err(crate::exit::one_line);
    if let Some(first) = streams.first_mut() {
        let _ = wire::write_status(first, &status);
    }
    for s in &mut streams {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let stored = result?;
    if args.json {
        let v = serde_json::json!({"peer": peer, "bytes": stored, "seconds": started.elapsed().as_secs_f64()});
        println!("{v}");
    }
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!("coffer: received {} from {peer} in {secs:.1} s ({})", human(stored), rate(stored, secs));
    }
    Ok(())
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

/// Accepts the sender's connections: the first says how many there are and names the session;
/// the others must name the same session. Each gets a READY.
fn accept_all(
    listener: &std::net::TcpListener,
    config: std::sync::Arc<tls::ReceiverConfig>,
    t: &TlsArgs,
    offer: &wire::Offer,
) -> Result<(Vec<tls::ServerStream>, String, wire::Hello)> {
    let (mut first, peer) = tls::accept(listener, config.clone(), stall(t))?;
    let hello = wire::read_hello(&mut first).with_context(|| format!("from {peer}"))?;
    first.write_all(wire::READY).and_then(|()| first.flush()).map_err(|e| stalled(e, t, &peer))?;
    if hello.flags & wire::RESUME != 0 {
        wire::write_offer(&mut first, offer).map_err(|e| stalled(e, t, &peer))?;
    }
    let mut slots: Vec<Option<tls::ServerStream>> = (0..hello.streams).map(|_| None).collect();
    slots[usize::from(hello.index)] = Some(first);
    let deadline = Instant::now() + stall(t);
    listener.set_nonblocking(true).context("cannot poll the listener")?;
    while slots.iter().any(Option::is_none) {
        let ready = match listener.accept() {
            Ok((tcp, _)) => Some(tcp),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(anyhow!(e).context("accept")),
        };
        let Some(tcp) = ready else {
            if Instant::now() > deadline {
                bail!(
                    "{peer} announced {} connections, and the others did not come within {} s",
                    hello.streams,
                    t.stall_timeout
                );
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        tcp.set_nonblocking(false).context("accept")?;
        let (mut s, from) = tls::handshake_server(tcp, config.clone(), stall(t))?;
        let h = wire::read_hello(&mut s).with_context(|| format!("from {from}"))?;
        let slot =
            slots.get_mut(usize::from(h.index)).filter(|_| h.session == hello.session && h.streams == hello.streams);
        match slot {
            Some(slot @ None) => {
                s.write_all(wire::READY).and_then(|()| s.flush()).map_err(|e| stalled(e, t, &from))?;
                *slot = Some(s);
            }
            _ => bail!("{from} is not part of the transfer from {peer} (session, count or index differs)"),
        }
    }
    Ok((slots.into_iter().map(|s| s.expect("all came")).collect(), peer, hello))
}

/// The I/O error `e` is, if it is one (a read or write of the connection that failed).
fn io_error(e: anyhow::Error) -> std::result::Result<std::io::Error, anyhow::Error> {
    let e = match e.downcast::<coffer::Error>() {
        Ok(coffer::Error::Other(inner)) => match inner.downcast::<std::io::Error>() {
            Ok(io) => return Ok(*io),
            Err(inner) => anyhow::Error::from(coffer::Error::Other(inner)),
        },
        Ok(other) => anyhow::Error::from(other),
        Err(e) => e,
    };
    e.downcast::<std::io::Error>()
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

fn restore_into(
    stream: &mut Incoming,
    dir: &Path,
    args: &ReceiveArgs,
    journaling: &coffer::restore::Journaling,
    quiet: bool,
    threads: usize,
) -> Result<u64> {
    let keys = coffer::keys::KeySources {
        key_files: args.key_files.clone(),
        passphrase_files: args.passphrase_files.clone(),
        identities: args.identities.clone(),
        require_signers: args.require_signers.clone(),
        ..Default::default()
    };
    let spec = coffer::restore::RestoreSpec {
        image: None,
        to: dir.to_path_buf(),
        keys,
        owner: args.owner.clone(),
        keep_setuid: args.keep_setuid,
        force: args.force,
        sync: true,
    };
    let env = crate::report::env(quiet, threads);
    let input = Stalling::new(stream, args.tls.stall_timeout);
    let summary = coffer::restore::restore_from(input, None, &spec, Some(journaling), &env)?;
    super::restore::print_restored(&summary, quiet);
    if args.prepare {
        coffer::restore::prepare(dir, &args.prepare_options, None, args.force, &env)?;
    }
    Ok(summary.read.logical_bytes)
}

/// Where `receive -o FILE` keeps the image while it arrives, and the mark that says how much of
/// it is durable: `.FILE.coffer-partial` and `.FILE.coffer-partial.mark`, beside FILE.
fn partial_paths(file: &Path) -> (PathBuf, PathBuf) {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    (dir.join(format!(".{name}.coffer-partial")), dir.join(format!(".{name}.coffer-partial.mark")))
}

/// Writes the mark: flushed under a temporary name, then renamed over the old one.
fn write_mark(mark: &Path, m: &PartialMark) -> std::io::Result<()> {
    let tmp = mark.with_extension("mark-new");
    // Never through a symlink planted beside the output (a shared directory such as /tmp).
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&tmp)?;
    f.write_all(&m.encode())?;
    f.sync_data()?;
    std::fs::rename(&tmp, mark)
}

fn read_mark(mark: &Path) -> Option<PartialMark> {
    std::fs::read(mark).ok().and_then(|b| PartialMark::parse(&b))
}

/// Stores the stream as an image file, which appears under its name only when the sender has
/// closed the stream cleanly (a TLS close_notify; an image cut short is never kept). Until then
/// it grows under a partial name, flushed and marked every `--checkpoint` bytes and when the
/// transfer fails, so that `send --resume` can go on from there.
fn keep(
    stream: &mut Incoming,
    file: &Path,
    args: &ReceiveArgs,
    held: Option<&PartialMark>,
    resume: bool,
    quiet: bool,
) -> Result<u64> {
    if !args.force && std::fs::symlink_metadata(file).is_ok() {
        bail!("{} already exists (use --force to replace it)", file.display());
    }
    let (data, mark) = partial_paths(file);
    if held.is_some() && !resume && !args.force {
        bail!(
            "{} holds part of an interrupted transfer: `coffer send --resume` continues it; --force replaces it",
            data.display()
        );
    }
    let mut input = Stalling::new(stream, args.tls.stall_timeout);
    let mut region = vec![0u8; coffer_format::DATA_OFFSET as usize];
    input.read_exact(&mut region).context("the sender sent no image")?;
    let image_id = coffer_image::choose_header(&region).context("the sender's image")?.header.image_id;
    let held = held.filter(|_| resume);
    if let Some(h) = held {
        if h.image_id != image_id {
            bail!(
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
    if !quiet && held.is_some() {
        eprintln!("coffer: going on with {} from byte {written}", data.display());
    }
    let bar = Bar::new(quiet, None, "receive");
    bar.inc(written);
    let mut since = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let result: Result<()> = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A message, not an io::Error: the context added below must survive.
            Err(e) => break Err(anyhow!("the transfer failed: {e}")),
        };
        if let Err(e) = out.write_all_at(&buf[..n], written) {
            break Err(anyhow!(e).context(format!("cannot write {}", data.display())));
        }
        written += n as u64;
        since += n as u64;
        bar.inc(n as u64);
        if since >= args.checkpoint {
            since = 0;
            if let Err(e) =
                out.sync_data().and_then(|()| write_mark(&mark, &PartialMark { image_id, durable_len: written }))
            {
                break Err(anyhow!(e).context(format!("cannot flush {}", data.display())));
            }
        }
    };
    bar.finish();
    if let Err(e) = result {
        // What arrived is kept for `send --resume`, once it is on disk.
        if out.sync_data().and_then(|()| write_mark(&mark, &PartialMark { image_id, durable_len: written })).is_ok() {
            return Err(anyhow!(
                "{e:#} ({} of the image are kept in {} for `coffer send --resume`)",
                human(written),
                data.display()
            ));
        }
        return Err(e);
    }
    out.sync_all().with_context(|| format!("cannot flush {}", data.display()))?;
    drop(out);
    std::fs::rename(&data, file).with_context(|| format!("cannot rename {} to {}", data.display(), file.display()))?;
    let _ = std::fs::remove_file(&mark);
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot flush {}", dir.display()))?;
    Ok(written)
}
