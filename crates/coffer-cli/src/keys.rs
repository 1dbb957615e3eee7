//! Where secrets come from: key files and descriptors, key commands, passphrases (files,
//! descriptors, the terminal), identities, recipients and keyrings. Everything read is held in
//! zeroizing buffers and never printed.

use crate::cli::{KdfArgs, KeyArgs, NewKeyArgs, SealArgs};
use crate::exit::usage;
use crate::keyring::Keyring;
use anyhow::{bail, Context, Result};
use coffer_crypto::{Identity, KdfChoice, MasterKey, Passphrase, Recipient, Signer, SigningKey, SlotSecret, Unlock};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Reads a secret from a file, '-' (stdin) or /dev/fd/N. A regular file readable by group or
/// others is refused unless `allow_insecure`, as ssh refuses such private keys.
pub fn read_secret(path: &Path, what: &str, allow_insecure: bool) -> Result<Zeroizing<Vec<u8>>> {
    let mut f: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
        let md = file.metadata().with_context(|| format!("cannot stat {what} {}", path.display()))?;
        let mode = md.permissions().mode();
        if md.is_file() && mode & 0o077 != 0 && !allow_insecure {
            bail!(
                "{what} {} is readable by group or others (mode {:04o}): run `chmod 600 {}`, or pass --allow-insecure-key-file",
                path.display(),
                mode & 0o7777,
                path.display()
            );
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
/// error passes through; its output is never stored or shown.
pub fn run_key_command(cmd: &str) -> Result<MasterKey> {
    let out = std::process::Command::new("/bin/sh")
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
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| usage("no terminal to ask for a passphrase: use --passphrase-file or --passphrase-fd"))?;
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
fn master_keys(args: &KeyArgs, quiet: bool) -> Result<Vec<MasterKey>> {
    let mut keys = Vec::new();
    for path in &args.key_files {
        keys.push(read_key_file(path, args.allow_insecure_key_file)?);
    }
    for fd in &args.key_fds {
        keys.push(read_key_file(&fd_path(*fd), true)?);
    }
    if let Some(hex) = &args.key_hex {
        if !quiet {
            eprintln!("coffer: warning: a key given with --key-hex is visible to other users of this host (ps, /proc); prefer --key-file");
        }
        keys.push(MasterKey::from_hex(hex).context("--key-hex")?);
    }
    if let Some(cmd) = &args.key_command {
        keys.push(run_key_command(cmd)?);
    }
    Ok(keys)
}

fn passphrases(args: &KeyArgs, confirm: bool) -> Result<Vec<Passphrase>> {
    let mut out = Vec::new();
    for path in &args.passphrase_files {
        out.push(read_passphrase(path, args.allow_insecure_key_file)?);
    }
    if let Some(fd) = args.passphrase_fd {
        out.push(read_passphrase(&fd_path(fd), true)?);
    }
    if args.passphrase {
        out.push(prompt_passphrase("Passphrase: ", confirm)?);
    }
    Ok(out)
}

/// The keyring named by --keyring, unlocked with its own secret.
pub fn keyring(args: &KeyArgs) -> Result<Option<Keyring>> {
    let Some(path) = &args.keyring else { return Ok(None) };
    let mut unlocks = Vec::new();
    if let Some(k) = &args.keyring_key_file {
        unlocks.push(Unlock::Key(read_key_file(k, args.allow_insecure_key_file)?));
    }
    if let Some(p) = &args.keyring_passphrase_file {
        unlocks.push(Unlock::Passphrase(kdf_limited(read_passphrase(p, args.allow_insecure_key_file)?, args, false)));
    }
    if unlocks.is_empty() {
        unlocks.push(Unlock::Passphrase(kdf_limited(prompt_passphrase("Keyring passphrase: ", false)?, args, false)));
    }
    Keyring::open(path, &unlocks).map(Some)
}

const NO_KEY: &str = "no key given: use --key-file FILE (or COFFER_KEY_FILE), --passphrase-file, --identity, --keyring or --key-command; create a key with `coffer key generate -o FILE`";

/// The secrets given to open an image; at least one.
pub fn unlocks(args: &KeyArgs, quiet: bool) -> Result<Vec<Unlock>> {
    Ok(unlocks_and_keyring(args, quiet)?.0)
}

/// The secrets given to open an image, and the keyring (opened once) for commands that seal
/// new keyring slots.
pub fn unlocks_and_keyring(args: &KeyArgs, quiet: bool) -> Result<(Vec<Unlock>, Option<Keyring>)> {
    let mut out: Vec<Unlock> = master_keys(args, quiet)?.into_iter().map(Unlock::Key).collect();
    for path in &args.identities {
        out.push(Unlock::Identity(read_identity(path, args.allow_insecure_key_file)?));
    }
    let ring = keyring(args)?;
    if let Some(ring) = &ring {
        out.extend(ring.all_keys().map(Unlock::Key));
    }
    // Passphrases last: each try costs an Argon2id run.
    out.extend(passphrases(args, false)?.into_iter().map(|p| Unlock::Passphrase(kdf_limited(p, args, quiet))));
    if out.is_empty() {
        return Err(usage(NO_KEY));
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
    let text = std::fs::read(value)
        .with_context(|| format!("signer {value:?} is neither coffersig1... nor a readable file"))?;
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    Signer::parse(&text).with_context(|| format!("signer file {value}"))
}

/// Reads a signing key file (COFFER-SIGNING-KEY-1...), refused if group or others can read it.
pub fn read_signing_key(path: &Path, allow_insecure: bool) -> Result<SigningKey> {
    let bytes = read_secret(path, "signing key file", allow_insecure)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadSigningKey);
    text.and_then(SigningKey::parse).with_context(|| format!("signing key file {}", path.display()))
}

/// `pass`, tried only on passphrase slots within --kdf-max-memory and --kdf-max-passes (the
/// format's ceiling without them); each slot passed over is a warning as it happens.
fn kdf_limited(pass: Passphrase, args: &KeyArgs, quiet: bool) -> Passphrase {
    let limits = coffer_crypto::KdfLimits {
        max_memory_kib: args.kdf_max_memory.unwrap_or(coffer_crypto::KdfParams::MAX_MEMORY_KIB),
        max_iterations: args.kdf_max_passes.unwrap_or(coffer_crypto::KdfParams::MAX_ITERATIONS),
    };
    let notify: coffer_crypto::SlotNotify = std::sync::Arc::new(move |note| crate::cmd::warn(quiet, note));
    pass.with_limits(limits, Some(notify))
}

/// The default Argon2id costs on this host.
pub fn default_kdf() -> KdfChoice {
    KdfChoice::default_for(available_memory_kib())
}

fn kdf_choice(kdf: &KdfArgs) -> Result<KdfChoice> {
    let mut choice = default_kdf();
    if let Some(mib) = kdf.kdf_memory {
        let kib = mib.checked_mul(1024).filter(|k| *k >= coffer_crypto::KdfParams::MIN_MEMORY_KIB);
        let kib = kib.filter(|k| *k <= coffer_crypto::KdfParams::MAX_MEMORY_KIB);
        choice.memory_kib = kib.ok_or_else(|| usage("--kdf-memory must be between 64 and 4096 MiB"))?;
    }
    if let Some(ms) = kdf.kdf_time {
        if ms < 100 {
            return Err(usage("--kdf-time must be at least 100 ms"));
        }
        choice.target = Duration::from_millis(ms);
    }
    if let Some(t) = kdf.kdf_iterations {
        if !(1..=coffer_crypto::KdfParams::MAX_ITERATIONS).contains(&t) {
            return Err(usage("--kdf-iterations must be between 1 and 100"));
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
    let ring = ring.ok_or_else(|| usage("a key id needs --keyring FILE"))?;
    let (version, key) = ring.newest(name).with_context(|| format!("keyring {}", ring.path().display()))?;
    Ok(SlotSecret::Keyring { key, name: name.to_owned(), version })
}

/// The slots a new backup gets: every key, passphrase, identity (as its recipient), recipient
/// and keyring key given.
pub fn backup_secrets(args: &KeyArgs, seal: &SealArgs, quiet: bool) -> Result<Vec<SlotSecret>> {
    let mut out: Vec<SlotSecret> = master_keys(args, quiet)?.into_iter().map(SlotSecret::Key).collect();
    for path in &args.identities {
        out.push(SlotSecret::Recipient(read_identity(path, args.allow_insecure_key_file)?.recipient()));
    }
    out.extend(parse_recipients(&seal.recipients)?.into_iter().map(SlotSecret::Recipient));
    let ring = keyring(args)?;
    match (&ring, &seal.key_id) {
        (Some(_), None) => return Err(usage("--keyring on a backup needs --key-id NAME: the keyring key to use")),
        (_, Some(name)) => out.push(keyring_secret(ring.as_ref(), name)?),
        (None, None) => {}
    }
    let kdf = kdf_choice(&seal.kdf)?;
    out.extend(passphrases(args, true)?.into_iter().map(|p| SlotSecret::Passphrase(p, kdf)));
    check_count(&out)?;
    Ok(out)
}

/// The new secrets of `key add`, `key rotate` and `rekey`.
pub fn new_secrets(args: &NewKeyArgs, ring: Option<&Keyring>, allow_insecure: bool) -> Result<Vec<SlotSecret>> {
    let mut out = Vec::new();
    for path in &args.new_key_files {
        out.push(SlotSecret::Key(read_key_file(path, allow_insecure)?));
    }
    out.extend(parse_recipients(&args.new_recipients)?.into_iter().map(SlotSecret::Recipient));
    if let Some(name) = &args.new_key_id {
        out.push(keyring_secret(ring, name)?);
    }
    let kdf = kdf_choice(&args.kdf)?;
    if let Some(path) = &args.new_passphrase_file {
        out.push(SlotSecret::Passphrase(read_passphrase(path, allow_insecure)?, kdf));
    }
    if args.new_passphrase {
        out.push(SlotSecret::Passphrase(prompt_passphrase("New passphrase: ", true)?, kdf));
    }
    if out.is_empty() {
        return Err(usage(
            "no new secret given: use --new-key-file, --new-passphrase(-file), --new-recipient or --new-key-id",
        ));
    }
    Ok(out)
}

fn check_count(secrets: &[SlotSecret]) -> Result<()> {
    if secrets.is_empty() {
        return Err(usage(NO_KEY));
    }
    if secrets.len() > coffer_format::header::SLOT_COUNT {
        return Err(usage(format!(
            "{} secrets given; an image has {} key slots",
            secrets.len(),
            coffer_format::header::SLOT_COUNT
        )));
    }
    Ok(())
}
