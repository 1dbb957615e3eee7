//! The command line's secrets, as `coffer::keys` takes them (it reads them).

use crate::cli::{KdfArgs, KeyArgs, NewKeyArgs, SealArgs};
use coffer::keys::{KdfOptions, KeySources, NewSecrets, SealOptions};
use zeroize::Zeroizing;

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
