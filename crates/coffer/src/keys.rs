//! Where secrets come from: key files and descriptors, key commands, passphrases (files,
//! descriptors, the terminal), identities, recipients and keyrings. Everything read is held in
//! zeroizing buffers and never printed.

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::keyring::Keyring;
use crate::Env;
use coffer_crypto::{Identity, KdfChoice, MasterKey, Passphrase, Recipient, Signer, SigningKey, SlotSecret, Unlock};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Secrets that open an image (any one that opens a slot will do), as a user names them.
#[derive(Clone, Default)]
pub struct KeySources {
    /// Keys a program holds itself.
    pub master_keys: Vec<MasterKey>,
    /// Key files: 64 hex digits.
    pub key_files: Vec<PathBuf>,
    /// Open descriptors to read a key file's contents from.
    pub key_fds: Vec<i32>,
    /// A shell command that prints a key.
    pub key_command: Option<String>,
    /// The key itself, as 64 hex digits (visible to other users when it came from a command line).
    pub key_hex: Option<Zeroizing<String>>,
    /// Ask for a passphrase on the terminal.
    pub passphrase_prompt: bool,
    /// Passphrase files (one trailing newline ignored).
    pub passphrase_files: Vec<PathBuf>,
    /// An open descriptor to read a passphrase from.
    pub passphrase_fd: Option<i32>,
    /// Skip passphrase slots that ask for more Argon2id memory (KiB).
    pub kdf_max_memory: Option<u32>,
    /// Skip passphrase slots that ask for more Argon2id passes.
    pub kdf_max_passes: Option<u32>,
    /// X25519 identity files.
    pub identities: Vec<PathBuf>,
    /// A keyring file.
    pub keyring: Option<PathBuf>,
    /// The key file that opens the keyring.
    pub keyring_key_file: Option<PathBuf>,
    /// The passphrase file that opens the keyring (without either, the terminal is asked).
    pub keyring_passphrase_file: Option<PathBuf>,
    /// Accept secret files that group or others can read.
    pub allow_insecure_key_file: bool,
    /// Signers (`coffersig1...`, or files holding one) one of which must have signed the image.
    pub require_signers: Vec<String>,
}

impl std::fmt::Debug for KeySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySources")
            .field("master_keys", &self.master_keys.len())
            .field("key_files", &self.key_files)
            .field("key_hex", &self.key_hex.as_ref().map(|_| "(hidden)"))
            .field("identities", &self.identities)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl KeySources {
    /// Secrets in files only, and the signers demanded: what a receiver, which runs unattended,
    /// is given.
    pub fn files(keys: &[PathBuf], passphrases: &[PathBuf], identities: &[PathBuf], signers: &[String]) -> Self {
        KeySources {
            key_files: keys.to_vec(),
            passphrase_files: passphrases.to_vec(),
            identities: identities.to_vec(),
            require_signers: signers.to_vec(),
            ..Default::default()
        }
    }

    /// Was any secret given (so that a command for which one is optional reads details)?
    pub fn any(&self) -> bool {
        !self.master_keys.is_empty()
            || !self.key_files.is_empty()
            || !self.key_fds.is_empty()
            || self.key_command.is_some()
            || self.key_hex.is_some()
            || self.passphrase_prompt
            || !self.passphrase_files.is_empty()
            || self.passphrase_fd.is_some()
            || !self.identities.is_empty()
            || self.keyring.is_some()
    }
}

/// Argon2id costs for new passphrase slots (unset: the host's defaults).
#[derive(Debug, Clone, Default)]
pub struct KdfOptions {
    /// Memory in MiB.
    pub memory_mib: Option<u32>,
    /// Tune the pass count to take about this many milliseconds.
    pub time_ms: Option<u64>,
    /// A fixed pass count.
    pub iterations: Option<u32>,
}

/// Further slots and a signature for a new image.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// X25519 public keys (coffer1... or age1...) that may open the image.
    pub recipients: Vec<String>,
    /// With a keyring: seal for the newest version of this key.
    pub key_id: Option<String>,
    /// Sign the image with this Ed25519 signing key file.
    pub signing_key: Option<PathBuf>,
    /// Argon2id costs of new passphrase slots.
    pub kdf: KdfOptions,
}

/// New secrets for `key add`, `key rotate` and `rekey`.
#[derive(Debug, Clone, Default)]
pub struct NewSecrets {
    /// Key files.
    pub key_files: Vec<PathBuf>,
    /// Ask for a new passphrase on the terminal (twice).
    pub passphrase_prompt: bool,
    /// A passphrase file.
    pub passphrase_file: Option<PathBuf>,
    /// X25519 public keys.
    pub recipients: Vec<String>,
    /// The newest version of this key of the keyring.
    pub key_id: Option<String>,
    /// Argon2id costs of new passphrase slots.
    pub kdf: KdfOptions,
}

/// Reads a secret from a file, '-' (stdin) or /dev/fd/N. A regular file is refused unless
/// `allow_insecure` if group or others can read or write it, if it belongs to another user than
/// root and coffer's, or if another user could replace it (a directory above it that is theirs,
/// or that they can write to: `coffer_fs::trust`), as ssh refuses such private keys: a key
/// file another user can change lets them swap in a key they know, and backups are then sealed
/// for it. The file is checked through the descriptor it is read from.
pub fn read_secret(path: &Path, what: &str, allow_insecure: bool) -> Result<Zeroizing<Vec<u8>>> {
    let mut f: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
        let md = file.metadata().with_context(|| format!("cannot stat {what} {}", path.display()))?;
        if md.is_file() && !allow_insecure {
            check_secret_file(path, &md, what)?;
        }
        Box::new(file)
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    // Secrets are small; reading a little more catches files that are something else.
    f.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    Ok(buf)
}

/// Refuses the secret file `path` (`md`: of the descriptor opened) if others could read or
/// change it (see [`read_secret`]).
fn check_secret_file(path: &Path, md: &std::fs::Metadata, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    const SWAP: &str = "another user could put a secret of theirs in its place";
    const OVERRIDE: &str = "or pass --allow-insecure-key-file";
    let shown = path.display();
    if let Err(u) = coffer_fs::trust::check(path, md, false) {
        bail!("{what} {u}: {SWAP}; fix its owner or mode, {OVERRIDE}");
    }
    let mode = md.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {shown} is readable by group or others (mode {:04o}): run `chmod 600 {shown}`, {OVERRIDE}",
            mode & 0o7777
        );
    }
    // A file no name leads to (a memfd, as profiles pass inline secrets) cannot be replaced.
    if md.nlink() == 0 {
        return Ok(());
    }
    // The directories above the file read: its name must still lead to it.
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string()).and_then(|real| {
        let same = std::fs::metadata(&real).is_ok_and(|m| (m.dev(), m.ino()) == (md.dev(), md.ino()));
        if same {
            Ok(real)
        } else {
            Err(format!("{} is no longer the file read", real.display()))
        }
    });
    if let Err(why) = real.and_then(|real| coffer_fs::trust::check_dirs(&real).map_err(|u| u.to_string())) {
        bail!("{what} {shown}: {why}, so {SWAP}: move it, {OVERRIDE}");
    }
    Ok(())
}

fn fd_path(fd: i32) -> PathBuf {
    PathBuf::from(format!("/dev/fd/{fd}"))
}

fn parse_key(text: &[u8], what: impl std::fmt::Display) -> Result<MasterKey> {
    let text = std::str::from_utf8(text).map_err(|_| coffer_crypto::CryptoError::BadKeyText);
    text.and_then(MasterKey::from_hex).with_context(|| what.to_string())
}

/// Reads a key file: 64 hex digits, optionally followed by a newline.
pub fn read_key_file(path: &Path, allow_insecure: bool) -> Result<MasterKey> {
    parse_key(&read_secret(path, "key file", allow_insecure)?, format!("key file {}", path.display()))
}

/// Runs `sh -c CMD` and reads a key (64 hex digits) from its standard output. Its standard
/// error passes through; its output is never stored or shown. As root, it runs with root's own
/// `HOME` (not `$HOME`, which `sudo -E` keeps from another user) and a PATH of the directories
/// only root can change (each one left out is a warning), without `BASH_ENV` and `ENV`.
pub fn run_key_command(cmd: &str, env: &Env) -> Result<MasterKey> {
    let mut command = std::process::Command::new("/bin/sh");
    if nix::unistd::geteuid().is_root() {
        for left_out in as_root(&mut command) {
            env.report.warn(&format!(
                "the key command runs without {}: as root, coffer runs no program another user could change",
                left_out
            ));
        }
    }
    let out = command
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the key command")?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        bail!("the key command failed ({})", out.status);
    }
    parse_key(&stdout, "the key command's output")
}

/// The environment of a program root runs for a user: root's own home and names, what shells
/// read at start removed, and PATH without the directories another user could change; those
/// (and relative ones) are returned. Those kept are given as their real paths: no link in them
/// to re-point later.
fn as_root(cmd: &mut std::process::Command) -> Vec<String> {
    if let Ok(Some(root)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0)) {
        cmd.env("HOME", &root.dir).env("USER", &root.name).env("LOGNAME", &root.name);
    }
    cmd.env_remove("BASH_ENV").env_remove("ENV");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut kept = Vec::new();
    let mut left_out = Vec::new();
    for dir in std::env::split_paths(&path) {
        // A directory that is not there holds nothing to run: left out without a word.
        let Ok(real) = std::fs::canonicalize(&dir) else { continue };
        let trusted = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display())).and_then(|md| {
            coffer_fs::trust::check(&real, &md, false)
                .and_then(|()| coffer_fs::trust::check_dirs(&real.join("-")))
                .map_err(|u| u.to_string())
        });
        match trusted {
            Ok(()) if dir.is_absolute() => kept.push(real),
            Ok(()) => left_out.push(format!("{} on its PATH (a relative directory)", dir.display())),
            Err(why) => left_out.push(format!("{} on its PATH ({why})", dir.display())),
        }
    }
    cmd.env("PATH", std::env::join_paths(kept).unwrap_or_default());
    left_out
}

/// A passphrase from a file or descriptor: its contents without one trailing newline.
fn read_passphrase(path: &Path, allow_insecure: bool) -> Result<Passphrase> {
    let mut bytes = read_secret(path, "passphrase file", allow_insecure)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Passphrase::new(bytes).with_context(|| format!("passphrase file {}", path.display()))
}

/// Asks on the terminal (not stdin, which may carry an image), without echo; twice when
/// creating a slot.
pub fn prompt_passphrase(prompt: &str, confirm: bool) -> Result<Passphrase> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let mut tty =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|_| {
            Error::usage("no terminal to ask for a passphrase: use --passphrase-file or --passphrase-fd")
        })?;
    let saved = tcgetattr(&tty).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("cannot turn off echo")?;
    let mut ask = |p: &str| -> Result<Zeroizing<Vec<u8>>> {
        write!(tty, "{p}").context("cannot write to the terminal")?;
        // Room for any passphrase typed, so the buffer never moves and leaves copies behind.
        let mut line = Zeroizing::new(Vec::with_capacity(4096));
        let mut byte = [0u8; 1];
        while tty.read(&mut byte).context("cannot read the terminal")? == 1 && byte[0] != b'\n' {
            if line.len() == line.capacity() {
                bail!("the passphrase is too long");
            }
            line.push(byte[0]);
        }
        writeln!(tty).ok();
        Ok(line)
    };
    let result = (|| {
        let first = ask(prompt)?;
        if confirm && *ask("Repeat the passphrase: ")? != *first {
            bail!("the passphrases do not match");
        }
        Ok(Passphrase::new(first)?)
    })();
    tcsetattr(&tty, SetArg::TCSAFLUSH, &saved).ok();
    result
}

fn read_identity(path: &Path, allow_insecure: bool) -> Result<Identity> {
    let bytes = read_secret(path, "identity file", allow_insecure)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadIdentity);
    text.and_then(Identity::parse).with_context(|| format!("identity file {}", path.display()))
}

/// The master keys named by key files, descriptors, --key and --key-command.
fn master_keys(args: &KeySources, env: &Env) -> Result<Vec<MasterKey>> {
    let mut keys = args.master_keys.clone();
    for path in &args.key_files {
        keys.push(read_key_file(path, args.allow_insecure_key_file)?);
    }
    for fd in &args.key_fds {
        keys.push(read_key_file(&fd_path(*fd), true)?);
    }
    if let Some(hex) = &args.key_hex {
        env.report
            .warn("a key given with --key-hex is visible to other users of this host (ps, /proc); prefer --key-file");
        keys.push(MasterKey::from_hex(hex).context("--key-hex")?);
    }
    if let Some(cmd) = &args.key_command {
        keys.push(run_key_command(cmd, env)?);
    }
    Ok(keys)
}

fn passphrases(args: &KeySources, confirm: bool) -> Result<Vec<Passphrase>> {
    let mut out = Vec::new();
    for path in &args.passphrase_files {
        out.push(read_passphrase(path, args.allow_insecure_key_file)?);
    }
    if let Some(fd) = args.passphrase_fd {
        out.push(read_passphrase(&fd_path(fd), true)?);
    }
    if args.passphrase_prompt {
        out.push(prompt_passphrase("Passphrase: ", confirm)?);
    }
    Ok(out)
}

/// The keyring named by --keyring, unlocked with its own secret.
pub fn keyring(args: &KeySources, env: &Env) -> Result<Option<Keyring>> {
    let Some(path) = &args.keyring else { return Ok(None) };
    let mut unlocks = Vec::new();
    if let Some(k) = &args.keyring_key_file {
        unlocks.push(Unlock::Key(read_key_file(k, args.allow_insecure_key_file)?));
    }
    if let Some(p) = &args.keyring_passphrase_file {
        unlocks.push(Unlock::Passphrase(kdf_limited(read_passphrase(p, args.allow_insecure_key_file)?, args, env)));
    }
    if unlocks.is_empty() {
        unlocks.push(Unlock::Passphrase(kdf_limited(prompt_passphrase("Keyring passphrase: ", false)?, args, env)));
    }
    Keyring::open(path, &unlocks).map(Some)
}

const NO_KEY: &str = "no key given: use --key-file FILE (or COFFER_KEY_FILE), --passphrase-file, --identity, --keyring or --key-command; create a key with `coffer key generate -o FILE`";

/// The secrets given to open an image; at least one.
pub fn unlocks(args: &KeySources, env: &Env) -> Result<Vec<Unlock>> {
    Ok(unlocks_and_keyring(args, env)?.0)
}

/// The secrets given to open an image, and the keyring (opened once) for commands that seal
/// new keyring slots.
pub fn unlocks_and_keyring(args: &KeySources, env: &Env) -> Result<(Vec<Unlock>, Option<Keyring>)> {
    let mut out: Vec<Unlock> = master_keys(args, env)?.into_iter().map(Unlock::Key).collect();
    for path in &args.identities {
        out.push(Unlock::Identity(read_identity(path, args.allow_insecure_key_file)?));
    }
    let ring = keyring(args, env)?;
    if let Some(ring) = &ring {
        out.extend(ring.all_keys().map(Unlock::Key));
    }
    // Passphrases last: each try costs an Argon2id run.
    out.extend(passphrases(args, false)?.into_iter().map(|p| Unlock::Passphrase(kdf_limited(p, args, env))));
    if out.is_empty() {
        return Err(Error::usage(NO_KEY));
    }
    let mut signers = required_signers(&args.require_signers)?;
    signers.extend(ring.iter().flat_map(|r| r.signers().iter().copied()));
    out.extend(signers.into_iter().map(Unlock::Signer));
    Ok((out, ring))
}

/// Parses --require-signer values: `coffersig1...`, or a file holding one.
pub fn required_signers(values: &[String]) -> Result<Vec<Signer>> {
    values.iter().filter(|v| !v.trim().is_empty()).map(|v| parse_signer(v)).collect()
}

/// `coffersig1...`, or the path of a file holding one.
pub fn parse_signer(value: &str) -> Result<Signer> {
    if let Ok(s) = Signer::parse(value) {
        return Ok(s);
    }
    use std::io::Read;
    let path = Path::new(value);
    let file = std::fs::File::open(path)
        .with_context(|| format!("signer {value:?} is neither coffersig1... nor a readable file"))?;
    // Whoever could change the file would choose whose images coffer accepts.
    let md = file.metadata().with_context(|| format!("cannot stat the signer file {value}"))?;
    let trusted = coffer_fs::trust::check(path, &md, false).and_then(|()| coffer_fs::trust::check_dirs(path));
    if let Err(u) = trusted {
        bail!("the signer file {u}: another user could name a signer of theirs in it; fix its owner or mode");
    }
    let mut text = Vec::new();
    file.take(4096).read_to_end(&mut text).with_context(|| format!("cannot read the signer file {value}"))?;
    Signer::parse(&String::from_utf8_lossy(&text)).with_context(|| format!("signer file {value}"))
}

/// The recipient of the identity file at `path` (what `key recipient` prints).
pub fn recipient_of(path: &Path, allow_insecure: bool) -> Result<String> {
    let bytes = read_secret(path, "identity file", allow_insecure)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadIdentity);
    let id = text.and_then(Identity::parse).map_err(Error::other);
    Ok(id.with_context(|| format!("identity file {}", path.display()))?.recipient().to_string())
}

/// Reads a signing key file (COFFER-SIGNING-KEY-1...), refused if group or others can read it.
pub fn read_signing_key(path: &Path, allow_insecure: bool) -> Result<SigningKey> {
    let bytes = read_secret(path, "signing key file", allow_insecure)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadSigningKey);
    text.and_then(SigningKey::parse).with_context(|| format!("signing key file {}", path.display()))
}

/// `pass`, tried only on passphrase slots within --kdf-max-memory and --kdf-max-passes (the
/// format's ceiling without them); each slot passed over is a warning as it happens.
fn kdf_limited(pass: Passphrase, args: &KeySources, env: &Env) -> Passphrase {
    let limits = coffer_crypto::KdfLimits {
        max_memory_kib: args.kdf_max_memory.unwrap_or(coffer_crypto::KdfParams::MAX_MEMORY_KIB),
        max_iterations: args.kdf_max_passes.unwrap_or(coffer_crypto::KdfParams::MAX_ITERATIONS),
    };
    let report = env.report.clone();
    let notify: coffer_crypto::SlotNotify = std::sync::Arc::new(move |note| report.warn(&note.to_string()));
    pass.with_limits(limits, Some(notify))
}

/// The default Argon2id costs on this host.
pub fn default_kdf() -> KdfChoice {
    KdfChoice::default_for(available_memory_kib())
}

fn kdf_choice(kdf: &KdfOptions) -> Result<KdfChoice> {
    let mut choice = default_kdf();
    if let Some(mib) = kdf.memory_mib {
        let kib = mib.checked_mul(1024).filter(|k| *k >= coffer_crypto::KdfParams::MIN_MEMORY_KIB);
        let kib = kib.filter(|k| *k <= coffer_crypto::KdfParams::MAX_MEMORY_KIB);
        choice.memory_kib = kib.ok_or_else(|| Error::usage("--kdf-memory must be between 64 and 4096 MiB"))?;
    }
    if let Some(ms) = kdf.time_ms {
        if ms < 100 {
            return Err(Error::usage("--kdf-time must be at least 100 ms"));
        }
        choice.target = Duration::from_millis(ms);
    }
    if let Some(t) = kdf.iterations {
        if !(1..=coffer_crypto::KdfParams::MAX_ITERATIONS).contains(&t) {
            return Err(Error::usage("--kdf-iterations must be between 1 and 100"));
        }
        choice.iterations = Some(t);
    }
    Ok(choice)
}

/// MemAvailable from /proc/meminfo.
fn available_memory_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn parse_recipients(list: &[String]) -> Result<Vec<Recipient>> {
    list.iter().map(|r| Recipient::parse(r).with_context(|| format!("recipient {r:?}"))).collect()
}

fn keyring_secret(ring: Option<&Keyring>, name: &str) -> Result<SlotSecret> {
    let ring = ring.ok_or_else(|| Error::usage("a key id needs --keyring FILE"))?;
    let (version, key) = ring.newest(name).with_context(|| format!("keyring {}", ring.path().display()))?;
    Ok(SlotSecret::Keyring { key, name: name.to_owned(), version })
}

/// The slots a new backup gets: every key, passphrase, identity (as its recipient), recipient
/// and keyring key given.
pub fn backup_secrets(args: &KeySources, seal: &SealOptions, env: &Env) -> Result<Vec<SlotSecret>> {
    let mut out: Vec<SlotSecret> = master_keys(args, env)?.into_iter().map(SlotSecret::Key).collect();
    for path in &args.identities {
        out.push(SlotSecret::Recipient(read_identity(path, args.allow_insecure_key_file)?.recipient()));
    }
    out.extend(parse_recipients(&seal.recipients)?.into_iter().map(SlotSecret::Recipient));
    let ring = keyring(args, env)?;
    match (&ring, &seal.key_id) {
        (Some(_), None) => {
            return Err(Error::usage("--keyring on a backup needs --key-id NAME: the keyring key to use"))
        }
        (_, Some(name)) => out.push(keyring_secret(ring.as_ref(), name)?),
        (None, None) => {}
    }
    let kdf = kdf_choice(&seal.kdf)?;
    out.extend(passphrases(args, true)?.into_iter().map(|p| SlotSecret::Passphrase(p, kdf)));
    check_count(&out)?;
    Ok(out)
}

/// The new secrets of `key add`, `key rotate` and `rekey`.
pub fn new_secrets(args: &NewSecrets, ring: Option<&Keyring>, allow_insecure: bool) -> Result<Vec<SlotSecret>> {
    let mut out = Vec::new();
    for path in &args.key_files {
        out.push(SlotSecret::Key(read_key_file(path, allow_insecure)?));
    }
    out.extend(parse_recipients(&args.recipients)?.into_iter().map(SlotSecret::Recipient));
    if let Some(name) = &args.key_id {
        out.push(keyring_secret(ring, name)?);
    }
    let kdf = kdf_choice(&args.kdf)?;
    if let Some(path) = &args.passphrase_file {
        out.push(SlotSecret::Passphrase(read_passphrase(path, allow_insecure)?, kdf));
    }
    if args.passphrase_prompt {
        out.push(SlotSecret::Passphrase(prompt_passphrase("New passphrase: ", true)?, kdf));
    }
    if out.is_empty() {
        return Err(Error::usage(
            "no new secret given: use --new-key-file, --new-passphrase(-file), --new-recipient or --new-key-id",
        ));
    }
    Ok(out)
}

fn check_count(secrets: &[SlotSecret]) -> Result<()> {
    if secrets.is_empty() {
        return Err(Error::usage(NO_KEY));
    }
    if secrets.len() > coffer_format::header::SLOT_COUNT {
        return Err(Error::usage(format!(
            "{} secrets given; an image has {} key slots",
            secrets.len(),
            coffer_format::header::SLOT_COUNT
        )));
    }
    Ok(())
}
