//! Keys, key slots, header backups, keyrings and rekey.

use super::*;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random 256-bit key as 64 hex digits, or with --x25519 a new identity whose
    /// recipient string is printed on stdout (files get mode 0600).
    #[command(after_help = "Examples:
  coffer key generate -o backup.key
  coffer key generate --x25519 -o restore-host.id      # prints coffer1..., give it to backup hosts
  coffer key generate --signing -o backup-host.sig     # prints coffersig1..., give it to restore hosts")]
    Generate {
        /// File to create ('-' for stdout).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// An X25519 identity (private key) instead of a symmetric key.
        #[arg(long)]
        x25519: bool,
        /// An Ed25519 signing key for `backup --signing-key` (prints its public half, coffersig1...).
        #[arg(long, conflicts_with = "x25519")]
        signing: bool,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public id of a key (as `coffer key list` shows for images).
    Id {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print the signer (coffersig1...) of a signing key file.
    Signer {
        /// Signing key file.
        signing_key: PathBuf,
        #[arg(long)]
        allow_insecure_key_file: bool,
    },
    /// Print the recipient string (coffer1...) of an identity file (coffer's or age's).
    Recipient {
        /// Identity file.
        identity: PathBuf,
        #[arg(long)]
        allow_insecure_key_file: bool,
    },
    /// Show an image's key slots: kind, key id or recipient, KDF costs, date. Needs no key.
    List {
        image: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add key slots for new secrets; rewrites only the header.
    #[command(after_help = "Examples:
  coffer key add db.coffer --key-file old.key --new-key-file second.key
  coffer key add db.coffer --key-file old.key --new-recipient coffer1...
  coffer key add db.coffer --key-file old.key --new-passphrase")]
    Add {
        image: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        new: NewKeyArgs,
    },
    /// Empty a key slot, opening the image with a secret of another slot. The data key does not
    /// change: whoever kept an old header and the removed secret can still read the image (use
    /// `coffer rekey` for that).
    #[command(after_help = "Example:
  coffer key remove db.coffer --slot 2 --key-file other.key")]
    Remove {
        image: PathBuf,
        /// Slot number, as `coffer key list` shows it.
        #[arg(long)]
        slot: usize,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Replace the slot that the given secret opens with one for the new secret. On an object
    /// URL the object is replaced whole: on S3 by a server-side copy of all but its header.
    #[command(after_help = "Examples:
  coffer key rotate db.coffer --key-file old.key --new-key-file new.key
  coffer key rotate s3://backups/prod/db.coffer --key-file old.key --new-key-file new.key")]
    Rotate {
        image: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        new: NewKeyArgs,
    },
    /// Move keyring slots of images to the newest version of their key (header only).
    #[command(after_help = "Example:
  coffer keyring rotate ring.coffer backup --key-file ring.key
  coffer key rewrap /backups/*.coffer --keyring ring.coffer --keyring-key-file ring.key")]
    Rewrap {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum HeaderCommand {
    /// Save the header region (both copies, all key slots) to a file, with a checksum.
    Backup {
        image: PathBuf,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Write a saved header region back into its image (the same image only).
    Restore {
        image: PathBuf,
        /// A file written by `coffer header backup`.
        backup: PathBuf,
        /// Restore even though the image's own header copies are both unreadable (the image id
        /// cannot be compared).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Create a keyring file, sealed under the key file, passphrase or recipient given.
    #[command(after_help = "Example:
  coffer keyring create ring.coffer --name backup --key-file ring.key")]
    Create {
        #[arg(value_name = "KEYRING")]
        file: PathBuf,
        /// Names of keys to create (version 1 each).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Add a new version of a key (creating the key if new); older versions stay, so older
    /// backups still open. Then `coffer key rewrap` moves images to it.
    Rotate {
        #[arg(value_name = "KEYRING")]
        file: PathBuf,
        name: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Demand that every image opened with this keyring be signed by SIGNER (repeat for
    /// several accepted signers): unsigned images and images of other signers are refused.
    #[command(after_help = "Example:
  coffer keyring trust ring.coffer coffersig1... --key-file ring.key")]
    Trust {
        #[arg(value_name = "KEYRING")]
        file: PathBuf,
        /// coffersig1... (as `coffer key generate --signing` prints), or a file holding one.
        signer: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// List names, versions, dates and key ids (never keys).
    List {
        #[arg(value_name = "KEYRING")]
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// Secrets that open an image (any one that opens a slot will do).
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// Key file: 64 hex digits (the format of MySQL Enterprise Backup's --key-file). Must not be
    /// readable by group or others. Repeat on backup to let any of several keys open the image.
    #[arg(long = "key-file", env = "COFFER_KEY_FILE", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,

    /// Read a key file's contents from this open file descriptor.
    #[arg(long = "key-fd", value_name = "FD")]
    pub key_fds: Vec<i32>,

    /// Run this shell command and read the key (64 hex digits) from its output (Vault, KMS,
    /// a hardware token). Its output is never stored.
    #[arg(long, value_name = "CMD")]
    pub key_command: Option<String>,

    /// The key itself, as 64 hex digits. Visible to other users in the process list: prefer
    /// --key-file.
    #[arg(long = "key-hex", value_name = "HEX", hide_env_values = true)]
    pub key_hex: Option<String>,

    /// Ask for a passphrase on the terminal (twice when creating a slot).
    #[arg(long)]
    pub passphrase: bool,

    /// Read a passphrase from a file (one trailing newline is ignored).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_files: Vec<PathBuf>,

    /// Read a passphrase from this open file descriptor.
    #[arg(long, value_name = "FD")]
    pub passphrase_fd: Option<i32>,

    /// Skip passphrase slots that ask for more Argon2id memory than SIZE (512M, 2G) instead of
    /// trying them [default and at most: 4G].
    #[arg(long, env = "COFFER_KDF_MAX_MEMORY", value_name = "SIZE", value_parser = parse_kdf_max_memory)]
    pub kdf_max_memory: Option<u32>,

    /// Skip passphrase slots that ask for more Argon2id passes than N [default and at most: 100].
    #[arg(long, env = "COFFER_KDF_MAX_PASSES", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub kdf_max_passes: Option<u32>,

    /// X25519 identity file (COFFER-SECRET-KEY-1... or age's AGE-SECRET-KEY-1...).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,

    /// Keyring file: its keys open keyring slots (with --key-id on backup, seal for one).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,

    /// Key file that opens the keyring.
    #[arg(long, value_name = "FILE", requires = "keyring")]
    pub keyring_key_file: Option<PathBuf>,

    /// Passphrase file that opens the keyring (without either, the terminal is asked).
    #[arg(long, value_name = "FILE", requires = "keyring")]
    pub keyring_passphrase_file: Option<PathBuf>,

    /// Accept key, passphrase and identity files that group or others can read.
    #[arg(long)]
    pub allow_insecure_key_file: bool,

    /// Refuse images not signed by this signer (coffersig1..., or a file holding one; repeat
    /// to accept any of several): unsigned images and other signers exit 3 before anything is
    /// written. A keyring can demand signers too (`coffer keyring trust`).
    #[arg(long = "require-signer", env = "COFFER_REQUIRE_SIGNER", value_name = "SIGNER", value_delimiter = ',')]
    pub require_signers: Vec<String>,
}

/// Argon2id costs for new passphrase slots.
#[derive(Debug, Args, Clone, Default)]
pub struct KdfArgs {
    /// Argon2id memory in MiB [default: 1024, or half the available memory; at least 64].
    #[arg(long, value_name = "MiB")]
    pub kdf_memory: Option<u32>,

    /// Tune the Argon2id pass count to take about this long [default: 1500; at least 100].
    #[arg(long, value_name = "MS")]
    pub kdf_time: Option<u64>,

    /// Fix the Argon2id pass count instead of tuning it.
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

/// Further slots for a new backup.
#[derive(Debug, Args, Clone, Default)]
pub struct SealArgs {
    /// Also let this X25519 public key open the image (coffer1... or age1...). The backup host
    /// then needs no secret that reads the backups. Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,

    /// With --keyring: seal for the newest version of this key.
    #[arg(long, value_name = "NAME", requires = "keyring")]
    pub key_id: Option<String>,

    /// Sign the image with this Ed25519 signing key (`coffer key generate --signing`), so that
    /// readers can demand it with --require-signer: a recipient's public key alone then no
    /// longer lets anyone write an image that restores.
    #[arg(long, env = "COFFER_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// New secrets for `key add`, `key rotate` and `rekey`.
#[derive(Debug, Args, Clone, Default)]
pub struct NewKeyArgs {
    #[arg(long = "new-key-file", value_name = "FILE")]
    pub new_key_files: Vec<PathBuf>,

    /// Ask for a new passphrase on the terminal (twice).
    #[arg(long)]
    pub new_passphrase: bool,

    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,

    #[arg(long = "new-recipient", value_name = "RECIPIENT")]
    pub new_recipients: Vec<String>,

    /// The newest version of this key of --keyring.
    #[arg(long, value_name = "NAME", requires = "keyring")]
    pub new_key_id: Option<String>,

    #[command(flatten)]
    pub kdf: KdfArgs,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// New image ('-' for stdout).
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,

    /// AEAD of the new image [default: the input's].
    #[arg(long, value_parser = named(&Suite::ALL, Suite::name))]
    pub cipher: Option<Suite>,

    #[arg(long)]
    pub force: bool,

    /// Sign the new image with this signing key (a signature covers the old data key, so the
    /// new image is unsigned without one).
    #[arg(long, env = "COFFER_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub new: NewKeyArgs,
}
