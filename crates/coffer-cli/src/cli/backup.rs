//! `backup` (and `send` of a source): what to back up and how.

use super::*;
pub use coffer_fs::ioprio::IoPriority;
use coffer_mysql::engine::EngineKind;

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

    #[command(flatten)]
    pub chain: ChainArgs,

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

    #[arg(long, default_value = "zstd", value_parser = named(&Codec::ALL, Codec::name))]
    pub compress: Codec,

    /// Compression level [default: zstd 1, lz4 has one level].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub level: Option<i32>,

    /// AEAD [default: aes-256-gcm, or chacha20-poly1305 on CPUs without AES instructions].
    #[arg(long, value_parser = named(&Suite::ALL, Suite::name))]
    pub cipher: Option<Suite>,

    /// Bytes of data per chunk (K, M suffixes are powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_chunk_size)]
    pub chunk_size: u32,

    /// Pack files of at most SIZE bytes (and directories and links) several to a frame,
    /// compressed together [default: a quarter of the chunk size, at most 256K]. 0 packs
    /// nothing and writes a format version 1 image, which coffer releases before packing read.
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk_size)]
    pub pack_limit: Option<u32>,

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

    /// Print what the backup did as one JSON object on stdout (not with -o -).
    #[arg(long)]
    pub json: bool,

    /// Run at this I/O scheduling class: idle (the disk only when no one else wants it) or
    /// best-effort[:LEVEL] (the normal class at a level from 0, first, to 7, last; default 7).
    /// Set for coffer and the backup engine it runs. Only schedulers that know classes honour
    /// it: BFQ (class and level), mq-deadline (class only); none and kyber ignore it (see
    /// /sys/block/DEV/queue/scheduler). Writes through the page cache reach the disk from the
    /// kernel's writeback threads, at their own priority.
    #[arg(long, value_name = "CLASS")]
    pub io_priority: Option<IoPriority>,

    /// Write the run's metrics (Prometheus text format, for node_exporter's textfile collector)
    /// into FILE, replacing this command's earlier samples there and keeping the others':
    /// last run, success and failure times, duration, bytes read and written, compression
    /// ratio, files, InnoDB pages checked and corrupt, incremental or not. A failed run writes
    /// it too.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub seal: SealArgs,
}

/// Incremental and differential backups of a server.
#[derive(Debug, Args, Clone, Default)]
pub struct ChainArgs {
    /// Back up only the pages changed since the newest backup of this server under the output's
    /// prefix (or in its directory, or given with --base). Its LSN comes from that backup's
    /// sealed description; a full backup is taken instead, with the reason, when there is no
    /// such backup, the server changed (identity, major version, an LSN below the parent's) or
    /// --max-chain is reached.
    #[arg(long, requires = "mysql", conflicts_with = "differential")]
    pub incremental: bool,

    /// Back up the pages changed since the newest full backup of this server (as --incremental
    /// otherwise).
    #[arg(long, requires = "mysql")]
    pub differential: bool,

    /// The parent image (a local file, an object), instead of looking beside the output.
    /// Repeatable.
    #[arg(long, value_name = "IMAGE", requires = "mysql")]
    pub base: Vec<PathBuf>,

    /// At most N backups after a full in a chain; the next is a full [default: 14].
    #[arg(long, value_name = "N")]
    pub max_chain: Option<u32>,
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
    #[arg(long, requires = "mysql", value_parser = named(&EngineKind::ALL, EngineKind::name))]
    pub engine: Option<EngineKind>,

    /// An extra option for the engine (repeatable), e.g. --engine-arg=--parallel=4 [coffer
    /// passes --parallel=THREADS before these].
    #[arg(long = "engine-arg", value_name = "ARG", allow_hyphen_values = true, requires = "mysql")]
    pub engine_args: Vec<String>,

    /// Where the engine keeps its own few files (a private directory is made and removed in it)
    /// [default: the temporary directory].
    #[arg(long, value_name = "DIR", requires = "mysql")]
    pub scratch_dir: Option<PathBuf>,

    /// TLS to the server, with MySQL's meanings: REQUIRED (encrypted), VERIFY_CA (and the
    /// server's certificate signed by --ssl-ca), VERIFY_IDENTITY (and naming the host)
    /// [default: VERIFY_CA with --ssl-ca, REQUIRED with --ssl-cert; without any --ssl option,
    /// the client's default]. MariaDB's tools check the host name whenever they check the CA.
    #[arg(long, value_enum, value_name = "MODE", requires = "mysql")]
    pub ssl_mode: Option<SslModeArg>,

    /// The CA that signs the server's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "mysql")]
    pub ssl_ca: Option<PathBuf>,

    /// Our certificate, for a server that asks for one (PEM; with --ssl-key).
    #[arg(long, value_name = "FILE", requires_all = ["mysql", "ssl_key"])]
    pub ssl_cert: Option<PathBuf>,

    /// The key of --ssl-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["mysql", "ssl_cert"])]
    pub ssl_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SslModeArg {
    #[value(name = "REQUIRED", alias = "required")]
    Required,
    #[value(name = "VERIFY_CA", alias = "verify-ca", alias = "verify_ca")]
    VerifyCa,
    #[value(name = "VERIFY_IDENTITY", alias = "verify-identity", alias = "verify_identity")]
    VerifyIdentity,
}

impl SslModeArg {
    /// The mode this names.
    pub fn mode(self) -> coffer_mysql::engine::SslMode {
        use coffer_mysql::engine::SslMode;
        match self {
            SslModeArg::Required => SslMode::Required,
            SslModeArg::VerifyCa => SslMode::VerifyCa,
            SslModeArg::VerifyIdentity => SslMode::VerifyIdentity,
        }
    }
}
