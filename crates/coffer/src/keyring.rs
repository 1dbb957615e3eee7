//! Keyrings: named master keys with versions, like MySQL's keyring_file. A keyring file is a
//! coffer image holding one entry, `keyring`, so it is sealed and authenticated like a backup
//! (key slots for a key file, passphrase or recipient) and replaced atomically.
//!
//! The entry's text: a line `coffer-keyring 1`, then one line per key version:
//! `NAME VERSION CREATED HEX` (created in Unix seconds, the key as 64 hex digits), and one line
//! `signer: coffersig1...` per signer that images opened with this keyring must be signed by.

use crate::atomic::AtomicFile;
use crate::bail;
use crate::error::{Context, Result};
use coffer_crypto::{hex, MasterKey, Signer, SlotSecret, Unlock};
use coffer_format::{Codec, EntryKind, EntryMeta};
use coffer_image::{
    open_stream, read_stream, write_image, ImageParams, NoProgress, ReadOptions, StreamSource, StreamVisitor,
};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const FIRST_LINE: &str = "coffer-keyring 1";
const ENTRY: &str = "keyring";

/// One version of a named key.
#[derive(Debug)]
pub struct KeyVersion {
    /// The key's name.
    pub name: String,
    /// Its version (1 for the first).
    pub version: u32,
    /// When it was made (Unix seconds).
    pub created: i64,
    /// The key.
    pub key: MasterKey,
}

/// Named master keys with versions, and the signers required of what they open.
#[derive(Debug)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<KeyVersion>,
    /// Images opened with this keyring must carry a signature by one of these.
    signers: Vec<Signer>,
}

/// Starts a signer line (a colon is never part of a key name).
const SIGNER_LINE: &str = "signer: ";

/// Key names: what a keyring slot can record, and safe to print.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= coffer_crypto::KeyringRef::MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("key name {name:?}: use 1 to 63 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Keyring {
    /// An empty keyring to be saved at `path`.
    pub fn new(path: &Path) -> Self {
        Self { path: path.into(), keys: Vec::new(), signers: Vec::new() }
    }

    /// Where the keyring is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the keyring at `path` with one of `unlocks`.
    pub fn open(path: &Path, unlocks: &[Unlock]) -> Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| format!("cannot open keyring {}", path.display()))?;
        let image = open_stream(&mut file, unlocks).with_context(|| format!("keyring {}", path.display()))?;
        let mut visitor = StreamVisitor::new(Vec::new());
        read_stream(&mut file, &image, &mut visitor, ReadOptions { threads: 1, skip_data: false })
            .with_context(|| format!("keyring {}", path.display()))?;
        let text = Zeroizing::new(visitor.into_inner());
        Self::parse(path, &text).with_context(|| format!("keyring {}", path.display()))
    }

    fn parse(path: &Path, text: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(text).context("not UTF-8")?;
        let mut lines = text.lines();
        if lines.next() != Some(FIRST_LINE) {
            bail!("not a keyring (first line)");
        }
        let mut keys = Vec::new();
        let mut signers = Vec::new();
        for line in lines {
            if let Some(signer) = line.strip_prefix(SIGNER_LINE) {
                signers.push(Signer::parse(signer)?);
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let [name, version, created, key] = f[..] else { bail!("malformed line") };
            check_name(name)?;
            keys.push(KeyVersion {
                name: name.into(),
                version: version.parse().context("malformed version")?,
                created: created.parse().context("malformed date")?,
                key: MasterKey::from_hex(key)?,
            });
        }
        Ok(Self { path: path.into(), keys, signers })
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(format!("{FIRST_LINE}\n").into_bytes());
        for k in &self.keys {
            let hex = k.key.to_hex_line();
            out.extend_from_slice(format!("{} {} {} ", k.name, k.version, k.created).as_bytes());
            out.extend_from_slice(hex.as_bytes());
        }
        for s in &self.signers {
            out.extend_from_slice(format!("{SIGNER_LINE}{s}\n").as_bytes());
        }
        out
    }

    /// The signers images opened with this keyring must be signed by (none: any, or unsigned).
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// Demands a signature by `signer` (one of those listed) from every image this keyring opens.
    pub fn trust(&mut self, signer: Signer) -> bool {
        let new = !self.signers.contains(&signer);
        if new {
            self.signers.push(signer);
        }
        new
    }

    /// The newest version of `name`, and its key.
    pub fn newest(&self, name: &str) -> Result<(u32, MasterKey)> {
        let k = self.keys.iter().filter(|k| k.name == name).max_by_key(|k| k.version);
        let k = k.with_context(|| format!("no key named {name:?}"))?;
        Ok((k.version, k.key.clone()))
    }

    /// Every version of every key.
    pub fn all_keys(&self) -> impl Iterator<Item = MasterKey> + '_ {
        self.keys.iter().map(|k| k.key.clone())
    }

    /// Adds a new random version of `name` (version 1 for a new name); returns its number.
    pub fn rotate(&mut self, name: &str) -> Result<u32> {
        check_name(name)?;
        let version = self.keys.iter().filter(|k| k.name == name).map(|k| k.version).max().unwrap_or(0) + 1;
        let key = MasterKey::generate().context("cannot generate a key")?;
        self.keys.push(KeyVersion { name: name.into(), version, created: now(), key });
        Ok(version)
    }

    /// Writes the keyring, sealed for `secrets`, under a temporary name renamed into place.
    pub fn save(&self, secrets: &[SlotSecret], force: bool) -> Result<()> {
        let text = self.encode();
        let params = ImageParams::random(coffer_crypto::default_suite(), Codec::None, 0, 64 * 1024, secrets.len())?;
        let meta = EntryMeta {
            kind: EntryKind::File,
            continues: false,
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime_sec: now(),
            mtime_nsec: 0,
            size: 0,
            path: ENTRY.as_bytes().to_vec(),
            target: vec![],
            uname: vec![],
            gname: vec![],
        };
        let out = AtomicFile::create(&self.path, force, 0o600)?;
        let mut source = StreamSource::new(meta, Cursor::new(text));
        let mut sink = std::io::BufWriter::new(out.file());
        write_image(&mut source, &mut sink, &params, secrets, 1, &NoProgress, None)
            .with_context(|| format!("cannot write keyring {}", self.path.display()))?;
        sink.flush().with_context(|| format!("cannot write keyring {}", self.path.display()))?;
        drop(sink);
        out.commit()
    }

    /// One line per version, for `coffer keyring list`: never the keys, only their ids.
    pub fn describe(&self) -> Vec<(String, u32, i64, String)> {
        self.keys.iter().map(|k| (k.name.clone(), k.version, k.created, hex(&k.key.key_id()))).collect()
    }
}
