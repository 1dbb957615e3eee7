//! The jobs that change who can open an image without touching its data: key generation, key
//! slots (add, remove, rotate, rewrap), header backups, keyrings, and rekey (a new data key).

mod shown;
pub use shown::{ids, keyring_listing, SlotList};

use crate::atomic::AtomicFile;
use crate::bail;
use crate::error::{Context, Error, Result};
use crate::keyring::Keyring;
use crate::keys::{KeySources, NewSecrets};
use crate::location::{Location, OutOptions};
use crate::text::human;
use crate::Env;
use coffer_crypto::{seal_slot, Identity, KeyringRef, MasterKey, SlotSecret, Unlock};
use coffer_format::header::SLOT_COUNT;
use coffer_format::{Header, KeySlot, Suite, DATA_OFFSET};
use coffer_image::{choose_header, open_header, HeaderBackup, HeaderFile, ImageParams, OpenedImage};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use zeroize::Zeroizing;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What kind of key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A master key (64 hex digits), for key slots.
    Master,
    /// An X25519 identity; its recipient seals images the backup host cannot read.
    X25519,
    /// An Ed25519 signing key; its signer is what readers demand.
    Signing,
}

impl KeyKind {
    /// The kind `key generate` is asked for: an identity (`--x25519`), a signing key
    /// (`--signing`), or else a master key.
    pub fn asked(x25519: bool, signing: bool) -> Self {
        match (x25519, signing) {
            (true, _) => KeyKind::X25519,
            (_, true) => KeyKind::Signing,
            _ => KeyKind::Master,
        }
    }
}

/// A new key, as its file holds it.
pub struct NewKey {
    /// The file's text (secret).
    pub text: Zeroizing<String>,
    /// What identifies it: a key id, a recipient or a signer.
    pub id: String,
    /// The public half (recipient or signer), for a key that has one.
    pub public: Option<String>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl NewKey {
    /// What is said once it is written into `path`.
    pub fn written(&self, path: &Path) -> String {
        let (shown, id) = (path.display(), &self.id);
        format!("wrote {shown} ({id}); keep a copy somewhere safe: without it the backups cannot be read")
    }
}

/// Makes a new random key of `kind`.
pub fn generate_key(kind: KeyKind) -> Result<NewKey> {
    let created = crate::text::utc(now());
    Ok(match kind {
        KeyKind::X25519 => {
            let identity = Identity::generate().context("cannot generate an identity")?;
            let r = identity.recipient().to_string();
            NewKey { text: identity.to_file_text(&created), id: r.clone(), public: Some(r) }
        }
        KeyKind::Signing => {
            let key = coffer_crypto::SigningKey::generate().context("cannot generate a signing key")?;
            let s = key.public().to_string();
            NewKey { text: key.to_file_text(&created), id: s.clone(), public: Some(s) }
        }
        KeyKind::Master => {
            let key = MasterKey::generate().context("cannot generate a key")?;
            let id = format!("key id {}", coffer_crypto::hex(&key.key_id()));
            NewKey { text: key.to_hex_line(), id, public: None }
        }
    })
}

/// Writes a secret file (mode 0600) atomically; refuses to replace one unless `force`.
pub fn write_secret_file(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let file = AtomicFile::create(path, force, 0o600)?;
    (&file).write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    file.commit()
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
    fn open(image: &Path, env: &Env) -> Result<Self> {
        match Location::from_path(image) {
            Location::Object(url) => {
                let o = coffer_store::Object::open(&url, &env.store)?;
                let head = o.read_head(DATA_OFFSET).with_context(|| format!("cannot open {}", image.display()))?;
                Ok(Self::Object(Box::new(ObjectImage { object: o, head })))
            }
            _ => Ok(Self::File(HeaderFile::open(image)?)),
        }
    }

    fn region(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Self::File(f) => f.region()?,
            Self::Object(o) => o.head.bytes.clone(),
        })
    }

    /// Writes a whole header region (a file: copy `first` first).
    fn write_region(&self, image: &Path, region: &[u8], first: usize, env: &Env) -> Result<()> {
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
                env.report.say(&format!("rewrote {} in {secs:.1} s ({how})", image.display()));
                Ok(())
            }
        }
    }
}

/// Opens an image for a slot change: header chosen, unlocked by a slot other than `except`.
fn open_for_change(
    image: &Path,
    keys: &KeySources,
    except: Option<usize>,
    env: &Env,
) -> Result<(Target, OpenedImage, Option<Keyring>)> {
    let (unlocks, ring) = crate::keys::unlocks_and_keyring(keys, env)?;
    let file = Target::open(image, env)?;
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
                return Err(Error::usage(if others {
                    "the secret given opens only the slot to remove: give a secret of another slot"
                } else {
                    "that is the image's last key slot: add another before removing it"
                }));
            }
        }
    }
    for w in opened.warnings.iter().chain(&opened.notes) {
        env.report.warn(w);
    }
    Ok((file, opened, ring))
}

fn new_slot(opened: &OpenedImage, secret: &SlotSecret) -> Result<KeySlot> {
    let mut salt = [0u8; 32];
    coffer_crypto::random(&mut salt)?;
    let h = &opened.header;
    Ok(seal_slot(h.suite, secret, &opened.data_key, &h.image_id, salt, now())?)
}

/// Writes the new slots; `COFFER_TEST_CRASH_AFTER_HEADER_COPY=N` aborts the process once copy
/// N of a file is durable (the crash tests use it).
fn write_slots(target: &Target, image: &Path, opened: &OpenedImage, slots: Vec<KeySlot>, env: &Env) -> Result<Header> {
    let file = match target {
        Target::File(file) => file,
        Target::Object(_) => {
            let chosen = choose_header(&target.region()?)?;
            let mut header = chosen.header.clone();
            header.slots = slots;
            header.generation += 1;
            let region = coffer_image::header::seal_region(&header, &opened.keys);
            target.write_region(image, &region, 0, env)?;
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

/// Adds a slot for each of `new` (in free slots); returns their numbers.
pub fn add_slots(image: &Path, keys: &KeySources, new: &NewSecrets, env: &Env) -> Result<Vec<usize>> {
    let (file, opened, ring) = open_for_change(image, keys, None, env)?;
    let secrets = crate::keys::new_secrets(new, ring.as_ref(), keys.allow_insecure_key_file)?;
    let mut slots = opened.header.slots.clone();
    let mut added = Vec::new();
    for secret in &secrets {
        let free = slots.iter().position(KeySlot::is_empty).ok_or_else(|| {
            Error::usage(format!("all {SLOT_COUNT} key slots are in use: remove one first (`coffer key remove`)"))
        })?;
        slots[free] = new_slot(&opened, secret)?;
        added.push(free);
    }
    write_slots(&file, image, &opened, slots, env)?;
    env.report.say(&format!("added key slot(s) {added:?} to {}", image.display()));
    Ok(added)
}

/// Empties slot `slot`, opening the image with a secret of another slot.
pub fn remove_slot(image: &Path, slot: usize, keys: &KeySources, env: &Env) -> Result<()> {
    let (file, opened, _) = open_for_change(image, keys, Some(slot), env)?;
    let mut slots = opened.header.slots.clone();
    if slots.get(slot).is_none_or(KeySlot::is_empty) {
        return Err(Error::usage(format!("slot {slot} is empty (see `coffer key list`)")));
    }
    slots[slot] = KeySlot::default();
    write_slots(&file, image, &opened, slots, env)?;
    env.report.say(&format!("removed key slot {slot} from {}; the data key is unchanged: a copy of the old header still opens with the removed secret (`coffer rekey` re-encrypts)", image.display()));
    Ok(())
}

/// Replaces the slot the secrets given open with one for the single new secret; returns its
/// number.
pub fn rotate_slot(image: &Path, keys: &KeySources, new: &NewSecrets, env: &Env) -> Result<usize> {
    let (file, opened, ring) = open_for_change(image, keys, None, env)?;
    let secrets = crate::keys::new_secrets(new, ring.as_ref(), keys.allow_insecure_key_file)?;
    let [secret] = &secrets[..] else {
        return Err(Error::usage("rotate replaces one slot with one new secret; use `key add` for more"));
    };
    let mut slots = opened.header.slots.clone();
    slots[opened.slot] = new_slot(&opened, secret)?;
    write_slots(&file, image, &opened, slots, env)?;
    env.report.say(&format!("replaced key slot {} of {}", opened.slot, image.display()));
    Ok(opened.slot)
}

/// Moves the keyring slots of `image` to the newest versions of their keys; returns how many
/// moved.
pub fn rewrap(image: &Path, ring: &Keyring, env: &Env) -> Result<usize> {
    let unlocks: Vec<Unlock> = ring.all_keys().map(Unlock::Key).collect();
    let file = Target::open(image, env)?;
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
        write_slots(&file, image, &opened, slots, env)?;
    }
    env.report.say(&match moved {
        0 => format!("{}: already at the newest key versions", image.display()),
        n => format!("{}: moved {n} slot(s) to the newest key version", image.display()),
    });
    Ok(moved)
}

/// [`rewrap`] for each of `images`, with the keyring the secrets name (`--keyring`): an image
/// that fails is handed to `failed`, and the others go on. Fails if any failed.
pub fn rewrap_all(
    images: &[PathBuf],
    keys: &KeySources,
    env: &Env,
    mut failed: impl FnMut(&Path, Error),
) -> Result<()> {
    let ring = crate::keys::keyring(keys, env)?.ok_or_else(|| Error::usage("rewrap needs --keyring FILE"))?;
    let mut failures = 0;
    for image in images {
        if let Err(e) = rewrap(image, &ring, env) {
            failures += 1;
            failed(image, e);
        }
    }
    if failures > 0 {
        bail!("{failures} of {} images were not rewrapped", images.len());
    }
    Ok(())
}

/// The header region of an image file, stdin or object.
pub fn read_region(image: &Path, env: &Env) -> Result<Vec<u8>> {
    let location = Location::from_path(image);
    if let Location::Object(url) = &location {
        let o = coffer_store::Object::open(url, &env.store)?;
        return Ok(o.read_head(DATA_OFFSET).with_context(|| format!("cannot open {}", image.display()))?.bytes);
    }
    let file = match location {
        Location::Stdio => {
            let fd = std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned().context("cannot use stdin")?;
            std::fs::File::from(fd)
        }
        _ => crate::location::open_file(image)?.0,
    };
    Ok(coffer_image::read_header_region(&file, image)?)
}

/// The header copy in use of `image`, as stored (no key needed; slots are checked only when a
/// key opens the image).
pub fn list_slots(image: &Path, env: &Env) -> Result<SlotList> {
    Ok(SlotList(choose_header(&read_region(image, env)?)?))
}

/// Saves the header region of `image` to `output`; returns the image id.
pub fn header_backup(image: &Path, output: &Path, force: bool, env: &Env) -> Result<[u8; 16]> {
    let region = read_region(image, env)?;
    let backup = HeaderBackup::of_region(&region)
        .with_context(|| format!("cannot back up the header of {}", image.display()))?;
    write_secret_file(output, &backup.encode(), force)?;
    let id = coffer_crypto::hex(&backup.image_id);
    env.report.say(&format!("saved the header of {} (image {id}) to {}", image.display(), output.display()));
    Ok(backup.image_id)
}

/// Writes a saved header region back into `image` (of the same image id, unless its own header
/// is unreadable and `force`).
pub fn header_restore(image: &Path, backup: &Path, force: bool, env: &Env) -> Result<()> {
    let bytes = std::fs::read(backup).with_context(|| format!("cannot read {}", backup.display()))?;
    let saved = HeaderBackup::parse(&bytes).with_context(|| backup.display().to_string())?;
    let file = Target::open(image, env)?;
    let first = match choose_header(&file.region()?) {
        Ok(current) if current.header.image_id != saved.image_id => bail!(
            "{} is image {}, the backup is of image {}: refusing",
            image.display(),
            coffer_crypto::hex(&current.header.image_id),
            coffer_crypto::hex(&saved.image_id)
        ),
        Ok(current) => 1 - current.copy,
        Err(_) if force => 0,
        Err(e) => {
            return Err(Error::from(e).context(format!(
                "{}'s own header is unreadable, so the backup cannot be matched to it; --force restores anyway",
                image.display()
            )))
        }
    };
    file.write_region(image, &saved.region, first, env)?;
    env.report.say(&format!("restored the header of {} from {}", image.display(), backup.display()));
    Ok(())
}

/// Creates a keyring at `file` holding version 1 of each of `names`, sealed for `keys`.
pub fn keyring_create(file: &Path, names: &[String], force: bool, keys: &KeySources, env: &Env) -> Result<()> {
    let secrets = crate::keys::backup_secrets(keys, &Default::default(), env)?;
    let mut ring = Keyring::new(file);
    for name in names {
        ring.rotate(name)?;
    }
    ring.save(&secrets, force)?;
    env.report.say(&format!("created keyring {} with {} key(s)", file.display(), names.len()));
    Ok(())
}

/// Opens a keyring file with `keys`: a keyring is not a backup, so the signers demanded of
/// backups do not apply to it.
pub fn keyring_open(file: &Path, keys: &KeySources, env: &Env) -> Result<(Keyring, Vec<Unlock>)> {
    let unlocks: Vec<Unlock> =
        crate::keys::unlocks(keys, env)?.into_iter().filter(|u| !matches!(u, Unlock::Signer(_))).collect();
    Ok((Keyring::open(file, &unlocks)?, unlocks))
}

/// A secret that opened the keyring, to seal its next version for.
fn reseal(u: Unlock) -> Result<SlotSecret> {
    Ok(match u {
        Unlock::Key(k) => SlotSecret::Key(k),
        Unlock::Identity(i) => SlotSecret::Recipient(i.recipient()),
        Unlock::Passphrase(p) => SlotSecret::Passphrase(p, crate::keys::default_kdf()),
        Unlock::Signer(_) => bail!("a signer is not a secret to seal a keyring for"),
    })
}

/// Adds a new version of `name` to the keyring; returns its number.
pub fn keyring_rotate(file: &Path, name: &str, keys: &KeySources, env: &Env) -> Result<u32> {
    let (mut ring, unlocks) = keyring_open(file, keys, env)?;
    let version = ring.rotate(name)?;
    let secrets: Vec<SlotSecret> = unlocks.into_iter().map(reseal).collect::<Result<_>>()?;
    ring.save(&secrets, true)?;
    let shown = file.display();
    env.report
        .say(&format!("keyring {shown}: {name} is now at version {version}; `coffer key rewrap` moves images to it"));
    Ok(version)
}

/// Makes the keyring demand `signer` of every image it opens; false if it already did.
pub fn keyring_trust(file: &Path, signer: &str, keys: &KeySources, env: &Env) -> Result<(bool, coffer_crypto::Signer)> {
    let signer = crate::keys::parse_signer(signer)?;
    let (mut ring, unlocks) = keyring_open(file, keys, env)?;
    if !ring.trust(signer) {
        env.report.say(&format!("keyring {} already demands {signer}", file.display()));
        return Ok((false, signer));
    }
    let secrets: Vec<SlotSecret> = unlocks.into_iter().map(reseal).collect::<Result<_>>()?;
    ring.save(&secrets, true)?;
    env.report.say(&format!("keyring {}: images opened with it must now be signed by {signer}", file.display()));
    Ok((true, signer))
}

/// A rekey, as a user asks for it: the image re-encrypted under a new data key, for new secrets.
#[derive(Debug, Clone, Default)]
pub struct RekeySpec {
    /// The image to read.
    pub image: PathBuf,
    /// Where the new image goes.
    pub output: PathBuf,
    /// A new AEAD (default: the image's).
    pub cipher: Option<Suite>,
    /// Replace an existing output.
    pub force: bool,
    /// Sign the new image with this signing key file.
    pub signing_key: Option<PathBuf>,
    /// The secrets that open the image.
    pub keys: KeySources,
    /// The secrets the new image is sealed for.
    pub new: NewSecrets,
}

/// What a rekey did.
#[derive(Debug, Clone)]
pub struct RekeySummary {
    /// Where the new image went, as messages show it (an object under a prefix: with its name).
    pub output: String,
    /// Bytes of the new image.
    pub written: u64,
    /// How long it took.
    pub seconds: f64,
}

/// Re-encrypts an image under a new data key, for new secrets, into a new image.
pub fn rekey(spec: &RekeySpec, env: &Env) -> Result<RekeySummary> {
    let (unlocks, ring) = crate::keys::unlocks_and_keyring(&spec.keys, env)?;
    let secrets = crate::keys::new_secrets(&spec.new, ring.as_ref(), spec.keys.allow_insecure_key_file)?;
    let (mut input, len) = Location::from_path(&spec.image).open_stream(env)?;
    let opened = coffer_image::open_stream(&mut input, &unlocks)?;
    for w in opened.warnings.iter().chain(&opened.notes) {
        env.report.warn(w);
    }
    let h = &opened.header;
    let suite = spec.cipher.unwrap_or(h.suite);
    // The new header keeps the image's creation time; its slots are dated now.
    let mut params = ImageParams::random(suite, h.codec, h.level.into(), h.chunk_size, secrets.len())?;
    params.signing_key = match &spec.signing_key {
        Some(p) => Some(crate::keys::read_signing_key(p, spec.keys.allow_insecure_key_file)?),
        None => None,
    };
    if let (Some(signer), None) = (opened.signer(), &params.signing_key) {
        env.report.warn(&format!(
            "{} is signed by {signer}; the new image is unsigned (give --signing-key to sign it)",
            spec.image.display()
        ));
    }
    let options = OutOptions { force: spec.force, tls: None, job: "rekey" };
    let output = Location::from_path(&spec.output);
    if let Location::Tls(_) = output {
        return Err(Error::usage("rekey writes to a file, '-' or an object; send the new image with `coffer send`"));
    }
    let mut out = output.create(&options, env, env.report.as_ref())?;
    let shown = out.shown();
    let progress = env.report.progress(len, "rekey");
    let started = Instant::now();
    let written = coffer_image::rekey(
        &mut input,
        &mut out,
        &opened,
        &params,
        &secrets,
        env.threads,
        &crate::report::ImageProgress(progress.clone()),
    )
    .map_err(Error::from)
    .and_then(|n| out.finish().map(|()| n));
    progress.finish();
    let written = written.with_context(|| {
        format!("rekey of {} failed; no image was left at {}", spec.image.display(), spec.output.display())
    })?;
    let record = if out.keeps_records() { carried_record(&spec.image, &opened, &params, written, env) } else { None };
    out.commit(record, env.report.as_ref())?;
    let s = RekeySummary { output: shown, written, seconds: started.elapsed().as_secs_f64() };
    let (image, rate) = (spec.image.display(), crate::text::rate(s.written, s.seconds));
    let line = format!("{} under a new data key ({}, {:.1} s, {rate})", s.output, human(s.written), s.seconds);
    env.report.say(&format!("re-encrypted {image} into {line}"));
    Ok(s)
}

/// The catalog record of the rekeyed image: its source's (an object with one), sealed under
/// the new keys; without one, the catalog reads the new image's index.
fn carried_record(
    source: &Path,
    opened: &OpenedImage,
    params: &ImageParams,
    image_bytes: u64,
    env: &Env,
) -> Option<Vec<u8>> {
    let result = (|| -> Result<Option<Vec<u8>>> {
        let Location::Object(url) = Location::from_path(source) else { return Ok(None) };
        let src = coffer_store::Object::open(&url, &env.store)?;
        let Some(mut record) = crate::repo::records::read_record(&src, opened)? else { return Ok(None) };
        record["image_bytes"] = serde_json::json!(image_bytes);
        record["cipher"] = serde_json::json!(params.suite.name());
        let bytes = serde_json::to_vec(&record)?;
        let keys = params.keys();
        Ok(Some(match crate::repo::records::links_of(&record["backup"]) {
            Some(links) => coffer_image::catalog::seal_linked_record(&keys, &params.image_id, &bytes, &links)?,
            None => coffer_image::catalog::seal_record(&keys, &params.image_id, &bytes)?,
        }))
    })();
    result.unwrap_or_else(|e| {
        env.report.warn(&format!(
            "the source's catalog record was not carried over ({}): `coffer catalog` reads the new image's index instead",
            e.one_line()
        ));
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_wins_over_a_signing_key_over_a_master_key() {
        let asked = [KeyKind::asked(true, true), KeyKind::asked(false, true), KeyKind::asked(false, false)];
        assert_eq!(asked, [KeyKind::X25519, KeyKind::Signing, KeyKind::Master]);
        let key = NewKey { text: Zeroizing::new(String::new()), id: "coffer1abc".into(), public: None };
        let said = "wrote /k/a.id (coffer1abc); keep a copy somewhere safe: without it the backups cannot be read";
        assert_eq!(key.written(Path::new("/k/a.id")), said);
    }
}
