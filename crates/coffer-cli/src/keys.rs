//! The command line's secrets, handed to `coffer::keys` (where they are read).

use crate::cli::{KdfArgs, KeyArgs, NewKeyArgs, SealArgs};
use anyhow::Result;
use coffer::keyring::Keyring;
use coffer::keys::{KdfOptions, KeySources, NewSecrets, SealOptions};
use coffer_crypto::{KdfChoice, Signer, SigningKey, SlotSecret, Unlock};
use std::path::Path;
use zeroize::Zeroizing;

pub use coffer::keys::read_secret;

impl KeyArgs {
    /// The secrets as the library takes them.
    pub fn sources(&self) -> KeySources {
        KeySources {
            master_keys: Vec::new(),
            key_files: self.key_files.clone(),
            key_fds: self.key_fds.clone(),
            key_command: self.key_command.clone(),
            key_hex: self.key_hex.clone().map(Zeroizing::new),
            passphrase_prompt: self.passphrase,
            passphrase_files: self.passphrase_files.clone(),
            passphrase_fd: self.passphrase_fd,
            kdf_max_memory: self.kdf_max_memory,
            kdf_max_passes: self.kdf_max_passes,
            identities: self.identities.clone(),
            keyring: self.keyring.clone(),
            keyring_key_file: self.keyring_key_file.clone(),
            keyring_passphrase_file: self.keyring_passphrase_file.clone(),
            allow_insecure_key_file: self.allow_insecure_key_file,
            require_signers: self.require_signers.clone(),
        }
    }
}

impl KdfArgs {
    pub fn options(&self) -> KdfOptions {
        KdfOptions { memory_mib: self.kdf_memory, time_ms: self.kdf_time, iterations: self.kdf_iterations }
    }
}

impl SealArgs {
    pub fn options(&self) -> SealOptions {
        SealOptions {
            recipients: self.recipients.clone(),
            key_id: self.key_id.clone(),
            signing_key: self.signing_key.clone(),
            kdf: self.kdf.options(),
        }
    }
}

impl NewKeyArgs {
    pub fn secrets(&self) -> NewSecrets {
        NewSecrets {
            key_files: self.new_key_files.clone(),
            passphrase_prompt: self.new_passphrase,
            passphrase_file: self.new_passphrase_file.clone(),
            recipients: self.new_recipients.clone(),
            key_id: self.new_key_id.clone(),
            kdf: self.kdf.options(),
        }
    }
}

/// Secrets are read before threads matter: one is enough for the reports.
fn env(quiet: bool) -> coffer::Env {
    crate::report::env(quiet, 1)
}

/// The keyring named by --keyring, unlocked with its own secret.
pub fn keyring(args: &KeyArgs) -> Result<Option<Keyring>> {
    Ok(coffer::keys::keyring(&args.sources(), &env(false))?)
}

/// The secrets given to open an image; at least one.
pub fn unlocks(args: &KeyArgs, quiet: bool) -> Result<Vec<Unlock>> {
    Ok(coffer::keys::unlocks(&args.sources(), &env(quiet))?)
}

/// The secrets given to open an image, and the keyring (opened once).
pub fn unlocks_and_keyring(args: &KeyArgs, quiet: bool) -> Result<(Vec<Unlock>, Option<Keyring>)> {
    Ok(coffer::keys::unlocks_and_keyring(&args.sources(), &env(quiet))?)
}

/// `coffersig1...`, or the path of a file holding one.
pub fn parse_signer(value: &str) -> Result<Signer> {
    Ok(coffer::keys::parse_signer(value)?)
}

/// Reads a signing key file, refused if group or others can read it.
pub fn read_signing_key(path: &Path, allow_insecure: bool) -> Result<SigningKey> {
    Ok(coffer::keys::read_signing_key(path, allow_insecure)?)
}

/// The default Argon2id costs on this host.
pub fn default_kdf() -> KdfChoice {
    coffer::keys::default_kdf()
}

/// The slots a new backup gets.
pub fn backup_secrets(args: &KeyArgs, seal: &SealArgs, quiet: bool) -> Result<Vec<SlotSecret>> {
    Ok(coffer::keys::backup_secrets(&args.sources(), &seal.options(), &env(quiet))?)
}

/// The new secrets of `key add`, `key rotate` and `rekey`.
pub fn new_secrets(args: &NewKeyArgs, ring: Option<&Keyring>, allow_insecure: bool) -> Result<Vec<SlotSecret>> {
    Ok(coffer::keys::new_secrets(&args.secrets(), ring, allow_insecure)?)
}
