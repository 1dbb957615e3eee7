//! Command-line definitions: the top level here, each group of commands in its own module.

mod backup;
mod binlog;
mod drill;
mod keys;
mod net;
mod read;
mod replica;
mod store;

pub use backup::*;
pub use binlog::*;
pub use drill::*;
pub use keys::*;
pub use net::*;
pub use read::*;
pub use replica::*;
pub use store::*;

pub(crate) use clap::{Args, Parser, Subcommand, ValueEnum};
pub(crate) use coffer::text::{
    parse_bytes, parse_chunk_size, parse_kdf_max_memory, parse_part_size, parse_rate, parse_span,
};
pub(crate) use coffer_format::{Codec, Suite};
pub(crate) use std::path::PathBuf;

/// A value parser of the library's values `all`, by their names: help and errors list them as
/// for a `ValueEnum`.
pub(crate) fn named<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(all.iter().map(move |v| name(*v)))
        .map(move |s| *all.iter().find(|v| name(**v) == s).expect("one of the possible values"))
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure (I/O, permissions, disk full, missing tool), with its cause
  2  usage error
  3  wrong key: no key slot of the image opens with the key given (nothing was written)
  4  the image is corrupt, tampered with or truncated (the error names the file, chunk and offset)
  5  corrupt InnoDB pages found (validate), or a backup refused by --fail-on-corrupt";

/// `coffer --version`: the version, the commit built, and the crypto backend.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COFFER_COMMIT"), ", crypto aws-lc-rs)");

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version = VERSION,
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

    /// Take options from this profile of the config file ([profile.NAME]). Options given on
    /// the command line, then COFFER_* variables, come first.
    #[arg(long, global = true, env = "COFFER_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// The config file [default: $XDG_CONFIG_HOME/coffer/coffer.toml if it exists, else
    /// /etc/coffer/coffer.toml].
    #[arg(long, global = true, env = "COFFER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

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
    /// How long a failing request is retried, with backoff, after its first attempt.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub store_retry_timeout: u64,
    /// How many times a failing request is sent again (0: never), within --store-retry-timeout.
    #[arg(long, global = true, value_name = "N", default_value_t = 10)]
    pub store_retries: usize,
    /// How long one attempt of a request may take, its part or range included (then retried).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub store_timeout: u64,
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

    /// Archive a server's binary log (sealed, in segments, under a prefix); list and fetch it.
    #[command(subcommand)]
    Binlog(BinlogCommand),

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

    /// Restore an image (file or stdin) into a directory, as the bytes arrive; or, with
    /// --until*, a server to a moment: the newest backup before it, then its binary log.
    #[command(after_help = "Examples:
  coffer restore db.coffer --to /var/lib/mysql --key-file backup.key --owner mysql
  ssh host cat db.coffer | coffer restore - --to /restore --key-file backup.key
  coffer restore s3://b/prod/ --until '2026-11-27 14:02:59' --to /restore --key-file k
  coffer restore s3://b/prod/ --until-gtid 0-1-123456 --to /restore --key-file k
  coffer restore s3://b/prod/ --until-position binlog.000042:1234 --to /restore --key-file k --print-replay")]
    Restore(RestoreArgs),

    /// Prove that a backup restores: restore the newest backup (or the one named) into a
    /// scratch directory, prepare it, check its InnoDB pages, start a private server on it
    /// (socket only, no network), run CHECK TABLE on every table, shut it down, delete the
    /// directory, and give the verdict. Exit 0 only if every step passed.
    #[command(after_help = "Examples:
  coffer drill s3://backups/prod/ --scratch /var/tmp/drill --key-file backup.key
  coffer drill --profile prod --json
  coffer drill s3://backups/prod/ --until '2026-11-27 14:00:00' --scratch /var/tmp/drill --key-file k
  coffer drill db.coffer --scratch /var/tmp/drill --key-file k --metrics-file /var/lib/node_exporter/coffer-drill.prom")]
    Drill(Box<DrillArgs>),

    /// Seed a MariaDB replica from a backup, a prefix or a live send.
    #[command(subcommand)]
    Replica(ReplicaCommand),

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

    /// Profiles of the config file: what a command would run with, and whether every
    /// profile's keys and stores are reachable.
    #[command(subcommand)]
    Config(ConfigCommand),

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
pub enum ConfigCommand {
    /// The options a command runs with under --profile, and where each comes from (flag,
    /// COFFER_* variable, file:line:column, default); secrets by their source only. Without a
    /// command, the profile's own keys.
    #[command(after_help = "Examples:
  coffer config show --profile prod
  coffer config show --profile prod backup --compress lz4
  COFFER_THREADS=2 coffer config show --profile prod binlog archive")]
    Show {
        /// A command and its options, as they would be given.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read every profile of the config file and check what it names: key, passphrase,
    /// identity, password and TLS files readable (keys parsed, keyrings opened), the
    /// repository and binary log prefixes listed, the server answering (socket or TCP without
    /// TLS). Only --profile's, if given. Exit 0 if all is reachable, 1 if not, 2 if the
    /// file itself is wrong.
    #[command(after_help = "Examples:
  coffer config check                  # every profile of the file
  coffer config check --profile prod   # one")]
    Check {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}
