//! Keys and key slots: generate, list, add, remove, rotate, rewrap; header backups; keyrings;
//! rekey.

use super::{human, open_input, rate, stdout_file, warn};
use crate::cli::{HeaderCommand, KeyArgs, KeyCommand, KeyringCommand, RekeyArgs};
use crate::exit::usage;
use crate::keys;
use anyhow::{bail, Context, Result};
use coffer::keyring::Keyring;
use coffer::text::utc;
use coffer::AtomicFile;
use coffer_crypto::{hex, seal_slot, slot::describe, Identity, KeyringRef, MasterKey, SlotSecret, Unlock};
use coffer_format::header::SLOT_COUNT;
use coffer_format::DATA_OFFSET;
use coffer_format::{Header, KeySlot};
use coffer_image::{choose_header, open_header, HeaderBackup, HeaderFile, ImageParams, OpenedImage};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

pub fn run(cmd: KeyCommand, quiet: bool) -> Result<()> {
    match cmd {
        KeyCommand::Generate { output, x25519, signing, force } => generate(&output, x25519, signing, force, quiet),
        KeyCommand::Id { key } => {
            for k in keys::unlocks(&key, quiet)? {
                match k {
                    Unlock::Key(k) => println!("{}", hex(&k.key_id())),
                    Unlock::Identity(i) => println!("{}", i.recipient()),
                    Unlock::Passphrase(_) => println!("passphrase (no id)"),
                    Unlock::Signer(s) => println!("required signer {s}"),
                }
            }
            Ok(())
        }
        KeyCommand::Signer { signing_key, allow_insecure_key_file } => {
            println!("{}", keys::read_signing_key(&signing_key, allow_insecure_key_file)?.public());
            Ok(())
        }
        KeyCommand::Recipient { identity, allow_insecure_key_file } => {
            let bytes = keys::read_secret(&identity, "identity file", allow_insecure_key_file)?;
            let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadIdentity);
            let id = text.and_then(Identity::parse).with_context(|| format!("identity file {}", identity.display()))?;
            println!("{}", id.recipient());
            Ok(())
        }
        KeyCommand::List { image, json } => list(&image, json),
        KeyCommand::Add { image, key, new } => {
            let (file, opened, ring) = open_for_change(&image, &key, quiet, None)?;
            let secrets = keys::new_secrets(&new, ring.as_ref(), key.allow_insecure_key_file)?;
            let mut slots = opened.header.slots.clone();
            let mut added = Vec::new();
            for secret in &secrets {
                let free = slots.iter().position(KeySlot::is_empty).ok_or_else(|| {
                    usage(format!("all {SLOT_COUNT} key slots are in use: remove one first (`coffer key remove`)"))
                })?;
                slots[free] = new_slot(&opened, secret)?;
                added.push(free);
            }
            write_slots(&file, &image, &opened, slots, quiet)?;
            say(quiet, format!("added key slot(s) {added:?} to {}", image.display()));
            Ok(())
        }
        KeyCommand::Remove { image, slot, key } => {
            let (file, opened, _) = open_for_change(&image, &key, quiet, Some(slot))?;
            let mut slots = opened.header.slots.clone();
            if slots.get(slot).is_none_or(KeySlot::is_empty) {
                return Err(usage(format!("slot {slot} is empty (see `coffer key list`)")));
            }
            slots[slot] = KeySlot::default();
            write_slots(&file, &image, &opened, slots, quiet)?;
            say(quiet, format!("removed key slot {slot} from {}; the data key is unchanged: a copy of the old header still opens with the removed secret (`coffer rekey` re-encrypts)", image.display()));
            Ok(())
        }
        KeyCommand::Rotate { image, key, new } => {
            let (file, opened, ring) = open_for_change(&image, &key, quiet, None)?;
            let secrets = keys::new_secrets(&new, ring.as_ref(), key.allow_insecure_key_file)?;
            let [secret] = &secrets[..] else {
                return Err(usage("rotate replaces one slot with one new secret; use `key add` for more"));
            };
            let mut slots = opened.header.slots.clone();
            slots[opened.slot] = new_slot(&opened, secret)?;
            write_slots(&file, &image, &opened, slots, quiet)?;
            say(quiet, format!("replaced key slot {} of {}", opened.slot, image.display()));
            Ok(())
        }
        KeyCommand::Rewrap { images, key } => rewrap(&images, &key, quiet),
    }
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("coffer: {msg}");
    }
}

fn generate(output: &Path, x25519: bool, signing: bool, force: bool, quiet: bool) -> Result<()> {
    let (text, id, public) = if x25519 {
        let identity = Identity::generate().context("cannot generate an identity")?;
        let r = identity.recipient().to_string();
        (identity.to_file_text(&utc(now())), r.clone(), Some(r))
    } else if signing {
        let key = coffer_crypto::SigningKey::generate().context("cannot generate a signing key")?;
        let s = key.public().to_string();
        (key.to_file_text(&utc(now())), s.clone(), Some(s))
    } else {
        let key = MasterKey::generate().context("cannot generate a key")?;
        (key.to_hex_line(), format!("key id {}", hex(&key.key_id())), None)
    };
    if output == Path::new("-") {
        stdout_file()?.write_all(text.as_bytes()).context("cannot write to stdout")?;
        return Ok(());
    }
    let file = AtomicFile::create(output, force, 0o600)?;
    (&file).write_all(text.as_bytes()).with_context(|| format!("cannot write {}", output.display()))?;
    file.commit()?;
    if let Some(p) = public {
        println!("{p}");
    }
    say(
        quiet,
        format!("wrote {} ({id}); keep a copy somewhere safe: without it the backups cannot be read", output.display()),
    );
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Opens an image for a slot change: locked, header chosen, unlocked by a slot other than
/// `except`.
fn open_for_change(
    image: &Path,
    key: &KeyArgs,
    quiet: bool,
    except: Option<usize>,
) -> Result<(Target, OpenedImage, Option<Keyring>)> {
    let (unlocks, ring) = keys::unlocks_and_keyring(key, quiet)?;
    let file = Target::open(image)?;
    let region = file.region()?;
    let mut opened = open_header(&region, &unlocks).with_context(|| format!("cannot open {}", image.display()))?;
    if except == Some(opened.slot) {
        // Another slot must open too: the last way in cannot remove itself.
        let chosen = choose_header(&region)?;
        let other = chosen.header.slots.iter().enumerate().filter(|(i, s)| Some(*i) != except && !s.is_empty()).find(
            |(_, s)| {
                unlocks
                    .iter()
                    .any(|u| coffer_crypto::open_slot(chosen.header.suite, u, &chosen.header.image_id, s).is_some())
            },
        );
        match other {
            Some((i, _)) => opened.slot = i,
            None => {
                let others = chosen.header.slots.iter().enumerate().any(|(i, s)| Some(i) != except && !s.is_empty());
                return Err(usage(if others {
                    "the secret given opens only the slot to remove: give a secret of another slot".to_string()
                } else {
                    "that is the image's last key slot: add another before removing it".to_string()
                }));
            }
        }
    }
    for w in opened.warnings.iter().chain(&opened.notes) {
        warn(quiet, w);
    }
    Ok((file, opened, ring))
}

fn new_slot(opened: &OpenedImage, secret: &SlotSecret) -> Result<KeySlot> {
    let mut salt = [0u8; 32];
    coffer_crypto::random(&mut salt)?;
    let h = &opened.header;
    Ok(seal_slot(h.suite, secret, &opened.data_key, &h.image_id, salt, now())?)
}

/// An image whose header is to change: a file (rewritten in place, one copy at a time) or an
/// object (replaced whole: on S3 by a server-side copy of everything after the header).
enum Target {
    File(HeaderFile),
    Object(Box<ObjectImage>),
}

/// An object, and its first bytes as read (with the ETag a replacement is conditional on).
struct ObjectImage {
    object: coffer_store::Object,
    head: coffer_store::Head,
}

impl Target {
    fn open(image: &Path) -> Result<Self> {
        match crate::store::object(image)? {
            Some(o) => {
                let head = o.read_head(DATA_OFFSET).with_context(|| format!("cannot open {}", image.display()))?;
                Ok(Self::Object(Box::new(ObjectImage { object: o, head })))
            }
            None => Ok(Self::File(HeaderFile::open(image)?)),
        }
    }

    fn region(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Self::File(f) => f.region()?,
            Self::Object(o) => o.head.bytes.clone(),
        })
    }

    /// Writes a whole header region (a file: copy `first` first).
    fn write_region(&self, image: &Path, region: &[u8], first: usize, quiet: bool) -> Result<()> {
        match self {
            Self::File(f) => Ok(f.write_region(region, first, &mut |_| {})?),
            Self::Object(o) => {
                let started = Instant::now();
                let done = o
                    .object
                    .replace_head(&o.head, region)
                    .with_context(|| format!("cannot rewrite the header of {}", image.display()))?;
                let secs = started.elapsed().as_secs_f64();
                let how = if done.copied_by_server > 0 {
                    format!(
                        "{} copied by the store itself, {} sent",
                        human(done.copied_by_server),
                        human(done.uploaded)
                    )
                } else {
                    format!("{} streamed through this host: this store has no server-side copy", human(done.uploaded))
                };
                say(quiet, format!("rewrote {} in {secs:.1} s ({how})", image.display()));
                Ok(())
            }
        }
    }
}

/// Writes the new slots; `COFFER_TEST_CRASH_AFTER_HEADER_COPY=N` aborts the process once copy
/// N of a file is durable (the crash tests use it).
fn write_slots(
    target: &Target,
    image: &Path,
    opened: &OpenedImage,
    slots: Vec<KeySlot>,
    quiet: bool,
) -> Result<Header> {
    let file = match target {
        Target::File(file) => file,
        Target::Object(_) => {
            let chosen = choose_header(&target.region()?)?;
            let mut header = chosen.header.clone();
            header.slots = slots;
            header.generation += 1;
            let region = coffer_image::header::seal_region(&header, &opened.keys);
            target.write_region(image, &region, 0, quiet)?;
            return Ok(header);
        }
    };
    let crash_after: Option<usize> =
        std::env::var("COFFER_TEST_CRASH_AFTER_HEADER_COPY").ok().and_then(|v| v.parse().ok());
    let mut hook = |copy: usize| {
        if crash_after == Some(copy) {
            std::process::abort();
        }
    };
    file.write_slots(opened, slots, &mut hook)
        .with_context(|| format!("cannot rewrite the header of {}", image.display()))
}

fn slot_json(i: usize, s: &KeySlot) -> serde_json::Value {
    let kind = match s.kind {
        coffer_format::header::slot_kind::KEY => "key",
        coffer_format::header::slot_kind::PASSPHRASE => "passphrase",
        coffer_format::header::slot_kind::RECIPIENT => "recipient",
        coffer_format::header::slot_kind::KEYRING => "keyring",
        _ => "unknown",
    };
    let mut v = json!({"slot": i, "kind": kind, "created": utc(s.created), "description": describe(s)});
    match s.kind {
        coffer_format::header::slot_kind::PASSPHRASE => {
            let p = coffer_crypto::KdfParams::of_slot(s);
            v["kdf"] = json!({"algorithm": "argon2id", "memory_kib": p.memory_kib, "iterations": p.iterations, "lanes": p.lanes});
        }
        coffer_format::header::slot_kind::RECIPIENT => {
            let pk: [u8; 32] = s.params[32..64].try_into().expect("32 bytes");
            v["recipient"] = json!(coffer_crypto::Recipient(pk).to_string());
        }
        coffer_format::header::slot_kind::KEYRING => {
            if let Some(r) = KeyringRef::of_slot(s) {
                v["key_name"] = json!(r.name);
                v["key_version"] = json!(r.version);
            }
            v["key_id"] = json!(hex(&s.key_id));
        }
        _ => v["key_id"] = json!(hex(&s.key_id)),
    }
    v
}

/// The header region of an image file, stdin or object.
fn read_region(image: &Path) -> Result<Vec<u8>> {
    if let Some(o) = crate::store::object(image)? {
        return Ok(o.read_head(DATA_OFFSET).with_context(|| format!("cannot open {}", image.display()))?.bytes);
    }
    let (file, _) = open_input(image)?;
    Ok(coffer_image::read_header_region(&file, image)?)
}

fn list(image: &Path, as_json: bool) -> Result<()> {
    let region = read_region(image)?;
    let chosen = choose_header(&region)?;
    let h = &chosen.header;
    let slots: Vec<_> = h.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()).collect();
    // Shown as stored: checked only when a key opens the image.
    let signer = h.signature.as_ref().map(|s| coffer_crypto::Signer(s.signer).to_string());
    let mut out = std::io::stdout().lock();
    if as_json {
        let v = json!({
            "image_id": hex(&h.image_id),
            "generation": h.generation,
            "copy_in_use": chosen.copy,
            "stale_copy": chosen.stale_copy,
            "warnings": chosen.warnings,
            "cipher": h.suite.name(),
            "signer": signer,
            "slots": slots.iter().map(|(i, s)| slot_json(*i, s)).collect::<Vec<_>>(),
            "free_slots": SLOT_COUNT - slots.len(),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "image {}  generation {}  {}  {} of {SLOT_COUNT} slots used",
        hex(&h.image_id),
        h.generation,
        h.suite.name(),
        slots.len()
    )?;
    match &signer {
        Some(s) => writeln!(out, "signed by {s} (unverified until a key opens the image)")?,
        None => writeln!(out, "unsigned")?,
    }
    for (i, s) in slots {
        writeln!(out, "slot {i:2}  {}  {}", utc(s.created), describe(s))?;
    }
    for w in &chosen.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(c) = chosen.stale_copy {
        writeln!(out, "warning: header copy {c} is of an older generation (a key change was interrupted); the next key command rewrites it")?;
    }
    Ok(())
}

fn rewrap(images: &[std::path::PathBuf], key: &KeyArgs, quiet: bool) -> Result<()> {
    let ring = keys::keyring(key)?.ok_or_else(|| usage("rewrap needs --keyring FILE"))?;
    let unlocks: Vec<Unlock> = ring.all_keys().map(Unlock::Key).collect();
    let mut failed = 0;
    for image in images {
        let result = (|| -> Result<usize> {
            let file = Target::open(image)?;
            let opened = open_header(&file.region()?, &unlocks)?;
            let mut slots = opened.header.slots.clone();
            let mut moved = 0;
            for slot in slots.iter_mut() {
                let Some(r) = KeyringRef::of_slot(slot) else { continue };
                let Ok((version, key)) = ring.newest(&r.name) else { continue };
                if version > r.version {
                    *slot = new_slot(&opened, &SlotSecret::Keyring { key, name: r.name.clone(), version })?;
                    moved += 1;
                }
            }
            if moved > 0 {
                write_slots(&file, image, &opened, slots, quiet)?;
            }
            Ok(moved)
        })();
        match result {
            Ok(0) => say(quiet, format!("{}: already at the newest key versions", image.display())),
            Ok(n) => say(quiet, format!("{}: moved {n} slot(s) to the newest key version", image.display())),
            Err(e) => {
                failed += 1;
                eprintln!("coffer: error: {}: {}", image.display(), crate::exit::one_line(&e));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images were not rewrapped", images.len());
    }
    Ok(())
}

pub fn header(cmd: HeaderCommand, quiet: bool) -> Result<()> {
    match cmd {
        HeaderCommand::Backup { image, output, force } => {
            let region = read_region(&image)?;
            let backup = HeaderBackup::of_region(&region)
                .with_context(|| format!("cannot back up the header of {}", image.display()))?;
            let out = AtomicFile::create(&output, force, 0o600)?;
            (&out).write_all(&backup.encode()).with_context(|| format!("cannot write {}", output.display()))?;
            out.commit()?;
            say(
                quiet,
                format!(
                    "saved the header of {} (image {}) to {}",
                    image.display(),
                    hex(&backup.image_id),
                    output.display()
                ),
            );
            Ok(())
        }
        HeaderCommand::Restore { image, backup, force } => {
            let bytes = std::fs::read(&backup).with_context(|| format!("cannot read {}", backup.display()))?;
            let saved = HeaderBackup::parse(&bytes).with_context(|| backup.display().to_string())?;
            let file = Target::open(&image)?;
            let first = match choose_header(&file.region()?) {
                Ok(current) if current.header.image_id != saved.image_id => bail!(
                    "{} is image {}, the backup is of image {}: refusing",
                    image.display(),
                    hex(&current.header.image_id),
                    hex(&saved.image_id)
                ),
                Ok(current) => 1 - current.copy,
                Err(_) if force => 0,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "{}'s own header is unreadable, so the backup cannot be matched to it; --force restores anyway",
                        image.display()
                    )))
                }
            };
            file.write_region(&image, &saved.region, first, quiet)?;
            say(quiet, format!("restored the header of {} from {}", image.display(), backup.display()));
            Ok(())
        }
    }
}

pub fn keyring(cmd: KeyringCommand, quiet: bool) -> Result<()> {
    match cmd {
        KeyringCommand::Create { file: keyring, names, force, key } => {
            let secrets = keys::backup_secrets(&key, &Default::default(), quiet)?;
            let mut ring = Keyring::new(&keyring);
            for name in &names {
                ring.rotate(name)?;
            }
            ring.save(&secrets, force)?;
            say(quiet, format!("created keyring {} with {} key(s)", keyring.display(), names.len()));
            Ok(())
        }
        KeyringCommand::Rotate { file: keyring, name, key } => {
            let unlocks = keyring_unlocks(&key, quiet)?;
            let mut ring = Keyring::open(&keyring, &unlocks)?;
            let version = ring.rotate(&name)?;
            let secrets: Vec<SlotSecret> = unlocks.into_iter().map(reseal).collect::<Result<_>>()?;
            ring.save(&secrets, true)?;
            say(
                quiet,
                format!(
                    "keyring {}: {name} is now at version {version}; `coffer key rewrap` moves images to it",
                    keyring.display()
                ),
            );
            Ok(())
        }
        KeyringCommand::Trust { file: keyring, signer, key } => {
            let signer = keys::parse_signer(&signer)?;
            let unlocks = keyring_unlocks(&key, quiet)?;
            let mut ring = Keyring::open(&keyring, &unlocks)?;
            if !ring.trust(signer) {
                say(quiet, format!("keyring {} already demands {signer}", keyring.display()));
                return Ok(());
            }
            let secrets: Vec<SlotSecret> = unlocks.into_iter().map(reseal).collect::<Result<_>>()?;
            ring.save(&secrets, true)?;
            say(quiet, format!("keyring {}: images opened with it must now be signed by {signer}", keyring.display()));
            Ok(())
        }
        KeyringCommand::List { file: keyring, json, key } => {
            let ring = Keyring::open(&keyring, &keyring_unlocks(&key, quiet)?)?;
            let signers: Vec<String> = ring.signers().iter().map(ToString::to_string).collect();
            let rows = ring.describe();
            let mut out = std::io::stdout().lock();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, v, c, id)| json!({"name": n, "version": v, "created": utc(*c), "key_id": id}))
                    .collect();
                writeln!(out, "{}", json!({ "keys": v, "signers": signers }))?;
            } else {
                for (n, v, c, id) in rows {
                    writeln!(out, "{n}  version {v}  {}  key {id}", utc(c))?;
                }
                for signer in signers {
                    writeln!(out, "required signer {signer}")?;
                }
            }
            Ok(())
        }
    }
}

/// Gives a rekeyed object the catalog record of its source (an object with one), sealed under
/// its new keys; without one, the catalog reads the new image's index.
fn reseal_record(
    source: &Path,
    opened: &OpenedImage,
    target: &coffer_store::Object,
    params: &ImageParams,
    image_bytes: u64,
    quiet: bool,
) {
    use coffer_image::catalog::{seal_record, RECORD_SUFFIX};
    let result = (|| -> Result<bool> {
        let Some(src) = crate::store::object(source)? else { return Ok(false) };
        let Some(mut record) = coffer::catalog::read_record(&src, opened)? else { return Ok(false) };
        record["image_bytes"] = json!(image_bytes);
        record["cipher"] = json!(params.suite.name());
        let sealed = seal_record(&params.keys(), &params.image_id, &serde_json::to_vec(&record)?)?;
        target.with_suffix(RECORD_SUFFIX).put(sealed)?;
        Ok(true)
    })();
    if let Ok(false) = result {
        // No record to carry over: none of an image this one replaced may stay beside it.
        let _ = target.with_suffix(RECORD_SUFFIX).delete();
    }
    if let Err(e) = result {
        warn(quiet, format!("the source's catalog record was not carried over ({e:#}): `coffer catalog` reads the new image's index instead"));
    }
}

/// The secrets that open a keyring file itself: a keyring is not a backup, so the signers
/// demanded of backups do not apply to it.
fn keyring_unlocks(key: &KeyArgs, quiet: bool) -> Result<Vec<Unlock>> {
    Ok(keys::unlocks(key, quiet)?.into_iter().filter(|u| !matches!(u, Unlock::Signer(_))).collect())
}

/// A secret that opened the keyring, to seal its next version for.
fn reseal(u: Unlock) -> Result<SlotSecret> {
    Ok(match u {
        Unlock::Key(k) => SlotSecret::Key(k),
        Unlock::Identity(i) => SlotSecret::Recipient(i.recipient()),
        Unlock::Passphrase(p) => SlotSecret::Passphrase(p, keys::default_kdf()),
        Unlock::Signer(_) => bail!("a signer is not a secret to seal a keyring for"),
    })
}

pub fn rekey(args: RekeyArgs, quiet: bool, threads: usize) -> Result<()> {
    let (unlocks, ring) = keys::unlocks_and_keyring(&args.key, quiet)?;
    let secrets = keys::new_secrets(&args.new, ring.as_ref(), args.key.allow_insecure_key_file)?;
    let to_stdout = args.output == Path::new("-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(usage("refusing to write an image to a terminal: use -o FILE or a pipe"));
    }
    let (mut input, len) = super::open_stream_input(&args.image)?;
    let opened = coffer_image::open_stream(&mut input, &unlocks)?;
    for w in opened.warnings.iter().chain(&opened.notes) {
        warn(quiet, w);
    }
    let h = &opened.header;
    let suite = args.cipher.map_or(h.suite, super::backup::cipher_suite);
    // The new header keeps the image's creation time; its slots are dated now.
    let mut params = ImageParams::random(suite, h.codec, h.level.into(), h.chunk_size, secrets.len())?;
    params.signing_key = match &args.signing_key {
        Some(p) => Some(keys::read_signing_key(p, args.key.allow_insecure_key_file)?),
        None => None,
    };
    if let (Some(signer), None) = (opened.signer(), &params.signing_key) {
        warn(
            quiet,
            format!(
                "{} is signed by {signer}; the new image is unsigned (give --signing-key to sign it)",
                args.image.display()
            ),
        );
    }
    let object = if to_stdout { None } else { crate::store::object(&args.output)? };
    if let Some(o) = &object {
        if !args.force && o.exists().with_context(|| format!("cannot reach {}", o.url()))? {
            return Err(anyhow::anyhow!("{} already exists (use --force to replace it)", o.url()));
        }
        crate::store::abort_on_signals();
    }
    if !to_stdout && object.is_none() {
        for left in AtomicFile::remove_stale(&args.output) {
            warn(quiet, format!("removed {}, which an interrupted rekey left", left.display()));
        }
    }
    let output =
        if to_stdout || object.is_some() { None } else { Some(AtomicFile::create(&args.output, args.force, 0o600)?) };
    let bar = crate::progress::Bar::new(quiet, len, "rekey");
    let started = Instant::now();
    let written = match (&output, &object) {
        (Some(f), _) => {
            // Written as backups are: O_DIRECT, past the page cache.
            let out = f.file().try_clone().context("cannot use the output file")?;
            let mut sink = coffer_fs::sink::DirectWriter::new(out, args.output.clone());
            coffer_image::rekey(&mut input, &mut sink, &opened, &params, &secrets, threads, &bar).and_then(|n| {
                sink.finish()?;
                Ok(n)
            })
        }
        (None, Some(o)) => {
            let mut sink = o.writer();
            coffer_image::rekey(&mut input, &mut sink, &opened, &params, &secrets, threads, &bar).and_then(|n| {
                sink.finish().map_err(|e| coffer_image::ImageError::Usage(e.to_string()))?;
                Ok(n)
            })
        }
        (None, None) => {
            let sink = std::io::BufWriter::with_capacity(1 << 20, stdout_file()?);
            coffer_image::rekey(&mut input, sink, &opened, &params, &secrets, threads, &bar)
        }
    };
    bar.finish();
    let written = written.with_context(|| {
        format!("rekey of {} failed; no image was left at {}", args.image.display(), args.output.display())
    })?;
    if let Some(f) = output {
        f.commit()?;
    }
    if let Some(o) = &object {
        reseal_record(&args.image, &opened, o, &params, written, quiet);
    }
    let secs = started.elapsed().as_secs_f64();
    say(
        quiet,
        format!(
            "re-encrypted {} into {} under a new data key ({}, {:.1} s, {})",
            args.image.display(),
            args.output.display(),
            human(written),
            secs,
            rate(written, secs)
        ),
    );
    Ok(())
}
