//! Command-line definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure (I/O, permissions, disk full, missing tool), with its cause
  2  usage error
  3  wrong key: no key slot of the image opens with the key given (nothing was written)
  4  the image is corrupt, tampered with or truncated (the error names the file, chunk and offset)
  5  corrupt InnoDB pages found (validate), or a backup refused by --fail-on-corrupt";

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    about = "Encrypted, compressed, parallel, streaming backups for MySQL and MariaDB",
    long_about = "Encrypted, compressed, parallel, streaming backups for MySQL and MariaDB.\n\n\
        An image holds a directory tree (a datadir) or a stream, cut into chunks that are \
        compressed (zstd or lz4) and sealed with AES-256-GCM or ChaCha20-Poly1305 under a \
        random per-image data key, wrapped by your key in the image's header.",
    after_help = EXIT_CODES,
    after_long_help = EXIT_CODES,
)]
pub struct Cli {
    /// Print nothing but errors (no progress bar, no summary).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Worker threads [default: all cores].
    #[arg(short = 'j', long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Object storage: where images named by URL (s3://, gs://, az://, file://) live.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Object storage")]
pub struct StoreArgs {
    /// An S3-compatible endpoint (MinIO, Ceph RGW, R2): path-style requests, and plain http://
    /// only because it is named here. Credentials and region come from the usual AWS_*
    /// variables.
    #[arg(long, global = true, env = "COFFER_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Parts uploaded, or ranges downloaded, at once (memory: this times --part-size).
    #[arg(long, global = true, value_name = "N", default_value_t = 8)]
    pub upload_concurrency: usize,
    /// Size of each uploaded part and downloaded range (at least 5M, as S3 requires).
    #[arg(long, global = true, value_name = "SIZE", default_value = "16M", value_parser = parse_part_size)]
    pub part_size: u64,
    /// How long a failing request is retried, with backoff, before coffer gives up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub store_retry_timeout: u64,
}

fn parse_part_size(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s)?;
    if !(5 << 20..=5 << 30).contains(&v) {
        return Err("a part size must be between 5M and 5G".into());
    }
    Ok(v)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate and inspect keys.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Change an image's header: save it, put a saved one back.
    #[command(subcommand)]
    Header(HeaderCommand),

    /// Files of named, versioned master keys.
    #[command(subcommand)]
    Keyring(KeyringCommand),

    /// Re-encrypt an image under a new data key (for a data key that may have leaked):
    /// streaming, nothing decompressed.
    #[command(after_help = "Example:
  coffer rekey db.coffer -o db2.coffer --key-file old.key --new-key-file new.key")]
    Rekey(RekeyArgs),

    /// Back up a running server (hot), a directory, a file, an xbstream, or stdin into an image.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:
  coffer backup --mysql -S /run/mysqld/mysqld.sock -u backup --password-file pw -o db.coffer --key-file backup.key
  mariabackup --backup --stream=xbstream | coffer backup --xbstream - -o db.coffer --key-file backup.key
  coffer backup /var/lib/mysql -o db.coffer --key-file backup.key      # a stopped server's datadir
  mysqldump --all-databases | coffer backup - --name dump.sql -o dump.coffer --key-file backup.key
  coffer backup --mysql -o - --key-file backup.key | ssh host coffer restore - --to /var/lib/mysql --prepare --key-file backup.key"
    )]
    Backup(BackupArgs),

    /// Make certificates for transfers: a small CA and node certificates.
    #[command(subcommand)]
    Tls(TlsCommand),

    /// Send to `coffer receive` over TLS 1.3 with both ends authenticated: an image as it is, or
    /// a directory or a live server backed up straight onto the wire.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:
  coffer send db.coffer --to node2:4444 --cert node1.crt --key node1.key --ca ca.crt
  coffer send /var/lib/mysql --to node2:4444 --cert node1.crt --key node1.key --ca ca.crt --key-file k
  coffer send --mysql -S /run/mysqld/mysqld.sock --to node2:4444 --cert node1.crt --key node1.key --ca ca.crt --key-file k
  coffer send db.coffer --resume --to node2:4444 ...      # after an interruption: only what node2 lacks
  coffer backup --mysql -o - --key-file k | coffer send - --to node2:4444 --cert node1.crt --key node1.key --ca ca.crt"
    )]
    Send(BackupArgs),

    /// Receive one image over TLS: restore it as it arrives (--to), or keep it (-o).
    #[command(after_help = "Examples:
  coffer receive --listen 0.0.0.0:4444 --to /var/lib/mysql --prepare --cert node2.crt --key node2.key --ca ca.crt --key-file k
  coffer receive --listen :4444 -o db.coffer --cert node2.crt --key node2.key --ca ca.crt")]
    Receive(ReceiveArgs),

    /// Describe a backup of a server: engine, versions, times, LSNs, binary log position, GTIDs.
    #[command(after_help = "Examples:
  coffer info db.coffer --key-file backup.key
  coffer info db.coffer --key-file backup.key --replication    # CHANGE MASTER TO ... for a new replica")]
    Info(InfoArgs),

    /// The backups under a prefix of an object store: name, size and time; with a key, what
    /// each holds (server, engine, LSNs, binary log position), read through its index.
    #[command(after_help = "Examples:
  coffer catalog s3://backups/prod/
  coffer catalog s3://backups/prod/ --key-file backup.key --json")]
    Catalog(CatalogArgs),

    /// Delete the backups under a prefix that a retention policy does not keep; prints the plan
    /// first, and only the plan with --dry-run.
    #[command(after_help = "Examples:
  coffer prune s3://backups/prod/ --keep-last 7 --keep-daily 14 --keep-weekly 8 --dry-run
  coffer prune s3://backups/prod/ --keep-last 7 --keep-daily 14 --keep-weekly 8")]
    Prune(PruneArgs),

    /// Restore an image (file or stdin) into a directory, as the bytes arrive.
    #[command(after_help = "Examples:
  coffer restore db.coffer --to /var/lib/mysql --key-file backup.key --owner mysql
  ssh host cat db.coffer | coffer restore - --to /restore --key-file backup.key")]
    Restore(RestoreArgs),

    /// Extract some entries, reading only what they need through the index.
    #[command(after_help = "Examples:
  coffer extract db.coffer sbtest/sbtest1.ibd --to /tmp/x --key-file backup.key
  coffer extract dump.coffer dump.sql --stdout --key-file backup.key | mysql")]
    Extract(ExtractArgs),

    /// List the entries of an image.
    List(ListArgs),

    /// Authenticate every frame of an image without writing anything.
    Verify(VerifyArgs),

    /// Check every InnoDB page: in an image (nothing is written), a data directory, or files.
    #[command(after_help = "Examples:
  coffer validate db.coffer --key-file backup.key     # every chunk authenticated and every page checked
  coffer validate /var/lib/mysql                       # a stopped server's datadir, or a restored backup
  coffer validate --innodb sbtest1.ibd ibdata1         # single tablespaces; '-' reads one from stdin
  coffer validate /var/lib/mysql --json --quiet

Exit codes: 0 every page checked is valid; 5 corrupt InnoDB pages were found; 4 the image itself
is corrupt or truncated; 3 wrong key; 1 other errors (a file that cannot be read).")]
    Validate(ValidateArgs),

    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) to stdout.
    #[command(name = "manpage")]
    ManPage,
}

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

impl KeyArgs {
    /// Was any secret given (so that a command for which one is optional reads details)?
    pub fn any(&self) -> bool {
        !self.key_files.is_empty()
            || !self.key_fds.is_empty()
            || self.key_command.is_some()
            || self.key_hex.is_some()
            || self.passphrase
            || !self.passphrase_files.is_empty()
            || self.passphrase_fd.is_some()
            || !self.identities.is_empty()
            || self.keyring.is_some()
    }
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

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompressArg {
    Zstd,
    Lz4,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CipherArg {
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
    #[value(name = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory, file, or '-' for stdin (not with --mysql or --xbstream).
    #[arg(required_unless_present_any = ["mysql", "xbstream"], conflicts_with_all = ["mysql", "xbstream"])]
    pub source: Option<PathBuf>,

    /// Hot backup of a running MySQL or MariaDB server, through mariabackup or xtrabackup
    /// (chosen by the server's version), streamed into the image as it is taken.
    #[arg(long)]
    pub mysql: bool,

    /// Store an xbstream (`mariabackup --backup --stream=xbstream` output) read from FILE or
    /// '-' (stdin), file by file.
    #[arg(long, value_name = "FILE", conflicts_with = "mysql")]
    pub xbstream: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,

    /// Image to write: a file (written under a temporary name, renamed when complete), '-' for
    /// stdout, an object URL (s3://, gs://, az://, file://; a prefix ending in '/' names the
    /// backup by its time), or tls://HOST:PORT for `coffer receive` (like --to).
    #[arg(short, long, value_name = "IMAGE", required_unless_present = "send_to", conflicts_with = "send_to")]
    pub output: Option<PathBuf>,

    /// Send the image to `coffer receive` at HOST:PORT instead (TLS 1.3; needs --cert, --key,
    /// --ca): what `coffer send` does.
    #[arg(long = "to", value_name = "HOST:PORT", requires_all = ["cert", "tls_key"])]
    pub send_to: Option<String>,

    #[command(flatten)]
    pub tls: OptionalTlsArgs,

    /// Entry name for stdin (default "stdin") or a single file (default its file name).
    #[arg(long)]
    pub name: Option<String>,

    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: CompressArg,

    /// Compression level [default: zstd 1, lz4 has one level].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub level: Option<i32>,

    /// AEAD [default: aes-256-gcm, or chacha20-poly1305 on CPUs without AES instructions].
    #[arg(long, value_enum)]
    pub cipher: Option<CipherArg>,

    /// Bytes of data per chunk (K, M suffixes are powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size)]
    pub chunk_size: u32,

    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,

    /// Refuse the backup (exit code 5, no image left) if an InnoDB page is corrupt. Without it,
    /// each corrupt page is a warning.
    #[arg(long, conflicts_with = "no_validate")]
    pub fail_on_corrupt: bool,

    /// Do not check InnoDB page checksums while reading.
    #[arg(long)]
    pub no_validate: bool,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub seal: SealArgs,
}

/// How to reach the server for `backup --mysql`; the engine's own options.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// Server socket.
    #[arg(short = 'S', long, value_name = "PATH", requires = "mysql")]
    pub socket: Option<PathBuf>,

    /// Server host (TCP).
    #[arg(short = 'h', long, requires = "mysql")]
    pub host: Option<String>,

    /// Server port (TCP).
    #[arg(short = 'P', long, requires = "mysql")]
    pub port: Option<u16>,

    /// User to connect as (it needs RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR and SELECT).
    #[arg(short = 'u', long, requires = "mysql")]
    pub user: Option<String>,

    /// File holding the password (one line). Never on the command line.
    #[arg(long, value_name = "FILE", requires = "mysql")]
    pub password_file: Option<PathBuf>,

    /// An option file for the client and the engine (passed as their --defaults-file).
    #[arg(long, value_name = "FILE", requires = "mysql")]
    pub defaults_file: Option<PathBuf>,

    /// The engine [default: mariabackup for MariaDB, xtrabackup for MySQL].
    #[arg(long, value_enum, requires = "mysql")]
    pub engine: Option<EngineArg>,

    /// An extra option for the engine (repeatable), e.g. --engine-arg=--parallel=4 [coffer
    /// passes --parallel=THREADS before these].
    #[arg(long = "engine-arg", value_name = "ARG", allow_hyphen_values = true, requires = "mysql")]
    pub engine_args: Vec<String>,

    /// Where the engine keeps its own few files (a private directory is made and removed in it)
    /// [default: the temporary directory].
    #[arg(long, value_name = "DIR", requires = "mysql")]
    pub scratch_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EngineArg {
    Mariabackup,
    Xtrabackup,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create DIR/ca.crt and DIR/ca.key if absent, then DIR/NAME.crt and DIR/NAME.key (keys mode
    /// 0600), valid for sending and receiving as NAME, localhost, 127.0.0.1 and every --san.
    #[command(after_help = "Example:
  coffer tls generate --ca-dir ./pki --name node1 --san 10.0.0.5 --san node1.example.com")]
    Generate {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Another host name or address the certificate is valid for (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Days the node certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Print the SHA-256 fingerprint of a certificate, for --peer-fingerprint.
    Fingerprint {
        /// A PEM certificate.
        cert: PathBuf,
    },
}

/// This end's certificate and key, and the CA that the other end's certificate must chain to.
#[derive(Debug, Args, Clone)]
pub struct TlsArgs {
    /// This end's certificate (PEM; a chain is accepted).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// This end's private key (PEM).
    #[arg(long = "key", value_name = "FILE")]
    pub tls_key: PathBuf,
    /// The CA certificate(s) the peer's certificate must chain to (PEM).
    #[arg(long, value_name = "FILE", required_unless_present = "peer_fingerprint")]
    pub ca: Option<PathBuf>,
    /// Accept only a peer certificate with this SHA-256 fingerprint (`coffer tls fingerprint
    /// FILE` prints it); repeatable; with --ca, both must hold.
    #[arg(long, value_name = "sha256:HEX")]
    pub peer_fingerprint: Vec<String>,
    /// A transfer that moves no byte for this long fails, on both ends.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub stall_timeout: u64,
    /// (The receiver takes as many connections as the sender opens.)
    #[arg(skip = 1usize)]
    pub streams: usize,
    #[arg(skip)]
    pub resume: bool,
    #[arg(skip)]
    pub limit_rate: Option<u64>,
}

/// TLS options of `send` and of `backup --to` (or `-o tls://HOST:PORT`).
#[derive(Debug, Args, Clone, Default)]
pub struct OptionalTlsArgs {
    /// This end's certificate (PEM; a chain is accepted).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This end's private key (PEM).
    #[arg(long = "key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) the receiver's certificate must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept only a receiver certificate with this SHA-256 fingerprint (repeatable).
    #[arg(long, value_name = "sha256:HEX")]
    pub peer_fingerprint: Vec<String>,
    /// A transfer that moves no byte for this long fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub stall_timeout: u64,
    /// Connections to carry the image in parallel (TLS on every core) [default: cores].
    #[arg(long, value_name = "N")]
    pub streams: Option<usize>,
    /// Go on with an interrupted transfer: the receiver says what it holds durably, and only
    /// the rest is sent (an image: from its next entry on; a directory: the files it lacks).
    #[arg(long)]
    pub resume: bool,
    /// Send at most this many bytes per second (e.g. 50M), to spare a shared link.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

impl OptionalTlsArgs {
    /// Was any of these options given?
    pub fn any(&self) -> bool {
        self.cert.is_some()
            || self.tls_key.is_some()
            || self.ca.is_some()
            || !self.peer_fingerprint.is_empty()
            || self.streams.is_some()
            || self.resume
            || self.limit_rate.is_some()
    }

    /// The options as given, if this end's certificate and key are.
    pub fn given(&self) -> Option<TlsArgs> {
        (self.cert.is_some() && self.tls_key.is_some()).then(|| self.required())
    }

    /// The options as given (clap has required all three with --to).
    pub fn required(&self) -> TlsArgs {
        TlsArgs {
            cert: self.cert.clone().expect("clap requires --cert"),
            tls_key: self.tls_key.clone().expect("clap requires --key"),
            ca: self.ca.clone(),
            peer_fingerprint: self.peer_fingerprint.clone(),
            stall_timeout: self.stall_timeout,
            streams: self.streams.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            resume: self.resume,
            limit_rate: self.limit_rate,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on: HOST:PORT, or :PORT for every address.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Print a JSON summary on stdout: {"peer", "bytes", "seconds"}.
    #[arg(long)]
    pub json: bool,
    /// Restore the image into this directory as it arrives (created; must be empty unless
    /// --force).
    #[arg(long, value_name = "DIR", conflicts_with = "output", required_unless_present = "output")]
    pub to: Option<PathBuf>,
    /// Keep the image as this file instead (written under a temporary name, renamed when whole).
    #[arg(short, long, value_name = "IMAGE")]
    pub output: Option<PathBuf>,
    /// With --to: run the engine's prepare on the restored backup of a server.
    #[arg(long, requires = "to")]
    pub prepare: bool,
    /// With --prepare: set an option of the prepare in place of the backup's own
    /// (backup-my.cnf), e.g. file_key_management_filename=PATH where this host keeps the key
    /// file of an encrypting server. Repeatable.
    #[arg(long = "prepare-option", value_name = "NAME=VALUE", requires = "prepare")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Keep set-uid and set-gid bits when the owner applied is not the image's (--owner, or a
    /// restore by another user than the image's owner); they are cleared otherwise.
    #[arg(long)]
    pub keep_setuid: bool,
    /// Restore into a non-empty directory, replacing what is there (and any interrupted
    /// transfer's journal).
    #[arg(long)]
    pub force: bool,
    /// With --to: flush what was restored and record it in the directory's journal after every
    /// SIZE of data, so that `coffer send --resume` re-sends at most about that much.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_bytes)]
    pub checkpoint: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Key file that opens the image (for --to).
    #[arg(long = "key-file", env = "COFFER_KEY_FILE", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,
    /// Passphrase file that opens the image (for --to).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_files: Vec<PathBuf>,
    /// Identity that opens the image (for --to).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,

    /// Refuse images not signed by this signer (coffersig1..., or a file holding one;
    /// repeatable): unsigned images and other signers exit 3 before anything is written.
    #[arg(long = "require-signer", env = "COFFER_REQUIRE_SIGNER", value_name = "SIGNER", value_delimiter = ',')]
    pub require_signers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// A prefix: s3://BUCKET/PATH/ (or gs://, az://, file://).
    pub prefix: String,
    /// One JSON object per backup, in an array.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A prefix: s3://BUCKET/PATH/ (or gs://, az://, file://).
    pub prefix: String,
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N days that have one (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the last N weeks that have one (Monday to Sunday, UTC).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Print what would be kept and deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// Print the statements that make a server restored from this image a replica of the source.
    #[arg(long)]
    pub replication: bool,

    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// New image ('-' for stdout).
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,

    /// AEAD of the new image [default: the input's].
    #[arg(long, value_enum)]
    pub cipher: Option<CipherArg>,

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

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// Target directory: created if absent, must be empty unless --force.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,

    /// Give every restored entry to this user (and its group, or USER:GROUP). As root, owners are
    /// otherwise restored from the image (by name when it exists here).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,

    /// Keep set-uid and set-gid bits when the owner applied is not the image's (--owner, or a
    /// restore by another user than the image's owner); they are cleared otherwise.
    #[arg(long)]
    pub keep_setuid: bool,

    /// Restore into a non-empty directory, replacing entries of the same name.
    #[arg(long)]
    pub force: bool,

    /// Skip the final flush to stable storage (faster, not crash-safe).
    #[arg(long)]
    pub no_sync: bool,

    /// After restoring a server backup, run the engine's prepare (mariabackup --prepare), so
    /// the directory is a consistent datadir a server starts on.
    #[arg(long)]
    pub prepare: bool,

    /// With --prepare: set an option of the prepare in place of the backup's own
    /// (backup-my.cnf), e.g. file_key_management_filename=PATH where this host keeps the key
    /// file of an encrypting server. Repeatable.
    #[arg(long = "prepare-option", value_name = "NAME=VALUE", requires = "prepare")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,

    /// Then move the prepared backup into --datadir (mariabackup --move-back); refuses a
    /// non-empty datadir unless --force.
    #[arg(long, requires_all = ["prepare", "datadir"])]
    pub copy_back: bool,

    /// The server's data directory, for --copy-back.
    #[arg(long, value_name = "DIR", requires = "copy_back")]
    pub datadir: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Image file ('-' reads stdin from the start, without the index).
    pub image: PathBuf,

    /// Entries to extract; a directory brings everything under it.
    #[arg(required = true)]
    pub paths: Vec<String>,

    /// Directory to extract into (created if absent; existing files are kept unless --force).
    #[arg(long, value_name = "DIR", conflicts_with = "stdout", required_unless_present = "stdout")]
    pub to: Option<PathBuf>,

    /// Write the contents of one file to stdout.
    #[arg(long)]
    pub stdout: bool,

    #[arg(long)]
    pub owner: Option<String>,

    /// Keep set-uid and set-gid bits when the owner applied is not the image's (--owner, or a
    /// restore by another user than the image's owner); they are cleared otherwise.
    #[arg(long)]
    pub keep_setuid: bool,

    /// Replace existing files.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// Show type, mode, owner, size and modification time.
    #[arg(short, long)]
    pub long: bool,

    /// Print the image and its entries as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// An image, a data directory, or tablespace files. '-' is an image on stdin, or with
    /// --innodb a tablespace on stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// Treat every path as an InnoDB tablespace, whatever its name.
    #[arg(long)]
    pub innodb: bool,

    /// Checksums to accept on pages of classic (non-full_crc32) tablespaces [default: what each
    /// tablespace's flags say, else any valid one, as the servers' non-strict modes do].
    #[arg(long, value_name = "ALGORITHM", value_parser = ["crc32", "strict_crc32", "innodb", "strict_innodb", "none", "strict_none", "full_crc32"])]
    pub checksum_algorithm: Option<String>,

    /// List at most N corrupt pages per file (all are counted).
    #[arg(long, value_name = "N")]
    pub max_corrupt_pages: Option<usize>,

    /// Print one JSON object: {"files": [...], "summary": {...}}.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

/// Parses a byte count: "4096", "64K", "1M", "1MiB", "2G", "1T" (binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("too large: {s}"))
}

/// Parses a chunk size (see [`parse_bytes`]) within the format's bounds.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let v = parse_bytes(s)?;
    let (min, max) = (u64::from(coffer_format::MIN_CHUNK_SIZE), u64::from(coffer_format::MAX_CHUNK_SIZE));
    if !(min..=max).contains(&v) {
        return Err(format!("chunk size must be between {min} bytes and {} MiB", max >> 20));
    }
    Ok(v as u32)
}

/// Parses an Argon2id memory limit (see [`parse_bytes`]) within the format's bounds, in KiB.
fn parse_kdf_max_memory(s: &str) -> Result<u32, String> {
    let v = parse_bytes(s)?;
    let kib = |k: u32| u64::from(k) << 10;
    let (min, max) = (kib(coffer_crypto::KdfParams::MIN_MEMORY_KIB), kib(coffer_crypto::KdfParams::MAX_MEMORY_KIB));
    if !(min..=max).contains(&v) {
        return Err("the Argon2id memory limit must be between 64M and 4G (a size such as 512M or 2G)".into());
    }
    Ok((v >> 10) as u32)
}

/// Parses a rate in bytes per second ("50M": 50 MiB/s); at least 1 KiB/s.
fn parse_rate(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s.trim_end_matches("/s"))?;
    if v < 1024 {
        return Err("a rate below 1K per second".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1").is_err());
        assert!(parse_size("1G").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1TiB"), Ok(1 << 40));
        assert!(parse_bytes("99999999999G").is_err());
        assert_eq!(parse_rate("50M/s"), Ok(50 << 20));
        assert!(parse_rate("10").is_err());
    }

    #[test]
    fn kdf_limits() {
        assert_eq!(parse_kdf_max_memory("1G"), Ok(1 << 20));
        assert_eq!(parse_kdf_max_memory("64M"), Ok(64 << 10));
        assert_eq!(parse_kdf_max_memory("4G"), Ok(4 << 20));
        for bad in ["4097M", "63M", "1024", "x"] {
            assert!(parse_kdf_max_memory(bad).is_err(), "{bad}");
        }
    }
}
