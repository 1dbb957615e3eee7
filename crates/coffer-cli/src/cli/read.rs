//! The commands that read images: `restore`, `extract`, `list`, `verify`, `validate`, `info`.

use super::*;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// Target directory: created if absent, must be empty unless --force (with --tables: the
    /// exported files, and import.sql, the statements that import them by hand).
    #[arg(long, value_name = "DIR", required_unless_present = "into_server", conflicts_with = "into_server")]
    pub to: Option<PathBuf>,

    /// Give every restored entry to this user (and its group, or USER:GROUP). As root, owners are
    /// otherwise restored from the image (by name when it exists here).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,

    /// Keep set-uid and set-gid bits when the owner applied is not the image's (--owner, or a
    /// restore by another user than the image's owner); they are cleared otherwise.
    #[arg(long)]
    pub keep_setuid: bool,

    /// Restore into a non-empty directory, replacing entries of the same name (not needed to
    /// finish an interrupted restore of the same image: the same command continues it).
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
    #[arg(long = "prepare-option", value_name = "NAME=VALUE")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,

    /// Then move the prepared backup into --datadir (mariabackup --move-back); refuses a
    /// non-empty datadir unless --force.
    #[arg(long, requires_all = ["prepare", "datadir"])]
    pub copy_back: bool,

    /// The server's data directory, for --copy-back.
    #[arg(long, value_name = "DIR", requires = "copy_back")]
    pub datadir: Option<PathBuf>,

    /// With --prepare, for an incremental or differential backup: another image of its chain,
    /// where it is not beside the image (in its directory, or under its prefix). Repeatable.
    #[arg(long, value_name = "IMAGE", requires = "prepare")]
    pub base: Vec<PathBuf>,

    /// Point-in-time recovery to a moment: IMAGE is the backups' prefix. The newest backup
    /// before it is restored and prepared, then the archived binary log replayed: every
    /// transaction logged before the first one stamped later than this second. UTC unless a
    /// zone is given (Z, +01:00, -0500); binary log stamps are the source server's clock, in
    /// Unix seconds.
    #[arg(long, value_name = "TIME", group = "pitr", conflicts_with_all = ["copy_back", "base"])]
    pub until: Option<String>,

    /// Point-in-time recovery up to and including this transaction (DOMAIN-SERVER-SEQ; one
    /// per domain, comma separated: replay stops when each has been applied).
    #[arg(long, value_name = "GTID", group = "pitr", conflicts_with_all = ["copy_back", "base"])]
    pub until_gtid: Option<String>,

    /// Point-in-time recovery up to this position of the source's binary log (as SHOW MASTER
    /// STATUS gives it): every event that ends at or before it; it must lie between
    /// transactions.
    #[arg(long, value_name = "FILE:POS", group = "pitr", conflicts_with_all = ["copy_back", "base"])]
    pub until_position: Option<String>,

    /// With --until-gtid (one GTID) or --until-position (where a transaction begins, as
    /// `binlog show` prints it): stop just before that transaction, not after it.
    #[arg(long)]
    pub exclusive: bool,

    /// With --until*: the binary log archive's prefix [default: IMAGE's prefix + binlog/].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,

    /// With --until*: restore and prepare the backup, write the binary logs it needs into
    /// TARGET.binlog beside the target, and print the commands that replay them, instead of
    /// replaying.
    #[arg(long)]
    pub print_replay: bool,

    /// With --until*: what applies the binary log: the restored server's own replication
    /// applier, given the log as relay logs (sql-thread, about 4x faster), or mariadb-binlog
    /// piped into one mariadb client session (client, as DBAs replay by hand). One session
    /// holds every temporary table the log creates, and MariaDB will not change its GTID
    /// domain then (error 1953): client is refused, before anything is restored, for a log
    /// where a temporary table (logged as a statement) is followed by another domain's
    /// transaction; sql-thread replays it.
    #[arg(long, value_enum, value_name = "HOW", default_value = "sql-thread")]
    pub replay_with: ReplayWith,

    /// What was restored (and prepared, or with --until* replayed), as one JSON object on
    /// stdout.
    #[arg(long)]
    pub json: bool,

    /// Write files at most at this many bytes per second (e.g. 50M: MiB/s), to spare the disk
    /// of a server running beside the target; each backup of a chain in turn.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,

    /// Run at this I/O scheduling class: idle or best-effort[:LEVEL] (0-7, default 7), also
    /// for the engine's prepare; see `coffer backup --help`.
    #[arg(long, value_name = "CLASS")]
    pub io_priority: Option<IoPriority>,

    /// Write the run's metrics (Prometheus text format) into FILE, as `backup --metrics-file`
    /// does: bytes read (of images) and written, files, duration, success.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub tables: TablesArgs,

    #[command(flatten)]
    pub key: KeyArgs,
}

/// `restore --tables`: some tables, into a running server or a directory.
#[derive(Debug, Args, Clone, Default)]
pub struct TablesArgs {
    /// Restore only these InnoDB tables (DB.TABLE or DB.*, comma separated), reading only
    /// their files and what the server needs to open them; IMAGE may be a prefix (its newest
    /// backup; with --until*, the newest before the target, then the tables' binary log).
    #[arg(long, value_name = "LIST")]
    pub tables: Option<coffer_mysql::tables::Selection>,

    /// With --tables: import them into this running server, by its socket (a path) or
    /// HOST[:PORT]; coffer runs on its host (it writes into its datadir). Nothing changes
    /// there until every check holds; the session writes nothing to its binary log.
    #[arg(long, value_name = "SOCKET|HOST[:PORT]", requires = "tables")]
    pub into_server: Option<String>,

    /// With --tables naming one partitioned table: only these partitions (comma separated);
    /// the others are left as the server has them.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "tables")]
    pub partitions: Vec<String>,

    /// With --into-server: the user [default: root]; it needs CREATE, ALTER, DROP, SELECT,
    /// and SUPER or BINLOG ADMIN.
    #[arg(long, requires = "into_server")]
    pub user: Option<String>,

    /// With --into-server: a file holding the password (one line).
    #[arg(long, value_name = "FILE", requires = "into_server")]
    pub password_file: Option<PathBuf>,

    /// With --into-server HOST: TLS as MySQL's --ssl-mode says (see `backup --help`).
    #[arg(long, value_enum, value_name = "MODE", requires = "into_server")]
    pub ssl_mode: Option<SslModeArg>,

    /// With --into-server HOST: the CA that signs the server's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "into_server")]
    pub ssl_ca: Option<PathBuf>,

    /// With --into-server: restore a table under another name (repeatable), beside the one
    /// the server has.
    #[arg(long, value_name = "DB.T=DB.T2", requires = "into_server")]
    pub rename: Vec<String>,

    /// With --into-server: replace the rows of tables the server has (their definitions must
    /// be the backup's).
    #[arg(long, requires = "into_server")]
    pub replace: bool,

    /// With --tables: where the tables are restored and prepared [default: beside --to, or
    /// beside the server's datadir].
    #[arg(long, value_name = "DIR", requires = "tables")]
    pub scratch_dir: Option<PathBuf>,
}

/// What applies the binary log in a point-in-time restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayWith {
    SqlThread,
    Client,
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

    /// The tables a server backup holds, with their sizes and partitions, from its index.
    #[arg(long, conflicts_with = "long")]
    pub tables: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Image file, or '-' for stdin.
    pub image: PathBuf,

    /// For an incremental or differential backup: verify every image of its chain, full first,
    /// and the links between them (ids, server, LSNs).
    #[arg(long)]
    pub chain: bool,

    /// With --chain: another image of the chain, where it is not beside the image. Repeatable.
    #[arg(long, value_name = "IMAGE", requires = "chain")]
    pub base: Vec<PathBuf>,

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

    /// Write the run's metrics (pages checked and corrupt, success) for node_exporter's
    /// textfile collector (Prometheus text format, replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,
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
