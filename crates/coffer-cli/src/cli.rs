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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate and inspect keys.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Back up a directory, a file, or stdin into an image.
    #[command(after_help = "Examples:
  coffer backup /var/lib/mysql -o db.coffer --key-file backup.key
  mysqldump --all-databases | coffer backup - --name dump.sql -o dump.coffer --key-file backup.key
  coffer backup /var/lib/mysql -o - --key-file backup.key | ssh host coffer restore - --to /restore --key-file backup.key")]
    Backup(BackupArgs),

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
    /// Write a new random 256-bit key as 64 hex digits (file mode 0600).
    Generate {
        /// Key file to create ('-' for stdout).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public id of a key (as `coffer list --long` shows for images).
    Id {
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// Where the master key comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// Key file: 64 hex digits (the format of MySQL Enterprise Backup's --key-file). Repeat on
    /// backup to let any of several keys open the image.
    #[arg(long = "key-file", env = "COFFER_KEY_FILE", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,

    /// The key itself, as 64 hex digits. Visible to other users in the process list: prefer
    /// --key-file.
    #[arg(long = "key", value_name = "HEX", hide_env_values = true)]
    pub key_hex: Option<String>,
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
    /// Directory, file, or '-' for stdin.
    pub source: PathBuf,

    /// Image to write ('-' for stdout). Written under a temporary name and renamed when complete.
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,

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

    /// Restore into a non-empty directory, replacing entries of the same name.
    #[arg(long)]
    pub force: bool,

    /// Skip the final flush to stable storage (faster, not crash-safe).
    #[arg(long)]
    pub no_sync: bool,

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

/// Parses "4096", "64K", "1M", "1MiB".
pub fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024u64),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    let v = n * mult;
    let (min, max) = (u64::from(coffer_format::MIN_CHUNK_SIZE), u64::from(coffer_format::MAX_CHUNK_SIZE));
    if !(min..=max).contains(&v) {
        return Err(format!("chunk size must be between {min} bytes and {} MiB", max >> 20));
    }
    Ok(v as u32)
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
    }
}
