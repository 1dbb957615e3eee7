//! `coffer replica seed`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Seed a MariaDB replica in one command: the newest backup under a prefix (with its chain),
    /// an image, or a live `coffer send` (--listen), restored and prepared beside DATADIR; caught
    /// up from the binary log archive if the primary purged the backup's position; replication
    /// to the primary configured over verified TLS; then DATADIR is replaced, and the replica's
    /// own service starts it (--start-with, or the command printed).
    #[command(after_help = "Examples:
  coffer replica seed s3://bk/db1/ --to /var/lib/mysql --primary db1.example:3306 --user repl \\
      --password-file repl.pw --ssl-ca /etc/mysql/ca.pem --key-file backup.key --start-with 'systemctl start mariadb'
  coffer replica seed --listen :4444 --cert r.crt --key r.key --ca ca.crt --key-file k --to /var/lib/mysql \\
      --primary db1.example --user repl --password-file repl.pw --ssl-ca /etc/mysql/ca.pem
      # and on db1: coffer send --mysql -S /run/mysqld/mysqld.sock --to replica:4444 --cert ... --key-file k")]
    Seed(Box<SeedArgs>),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The backups' prefix (s3://B/P/, file:///D/: its newest backup) or an image.
    #[arg(required_unless_present = "listen", conflicts_with = "listen")]
    pub source: Option<String>,
    /// Receive the backup from `coffer send` on this address (HOST:PORT or :PORT) instead.
    #[arg(long, value_name = "ADDR", requires_all = ["cert", "tls_key"])]
    pub listen: Option<String>,
    /// The replica's datadir: replaced only when everything is done (not empty: --force).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The primary, as its certificate names it: HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub primary: String,
    /// The replication account (REPLICATION SLAVE, mysql_native_password).
    #[arg(long)]
    pub user: String,
    /// File holding its password (one line, mode 0600). The server keeps it in master.info
    /// (made 0600); coffer writes it nowhere else.
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// VERIFY_IDENTITY or VERIFY_CA: TLS, the primary's certificate checked against --ssl-ca
    /// and its host (MariaDB checks both either way); DISABLED: plaintext, only when asked so.
    #[arg(long, value_enum, value_name = "MODE", default_value = "VERIFY_IDENTITY")]
    pub ssl_mode: SeedSslMode,
    /// The CA that signs the primary's certificate (PEM); kept at this path for the replica.
    #[arg(long, value_name = "FILE")]
    pub ssl_ca: Option<PathBuf>,
    /// The replica's certificate, for a primary that asks for one (with --ssl-key).
    #[arg(long, value_name = "FILE", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// The key of --ssl-cert.
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// The binary log archive [default: SOURCE + binlog/ for a prefix].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,
    /// When the archive is replayed first: auto (the primary purged the backup's position),
    /// always (to its end), never (refuse instead).
    #[arg(long, value_enum, default_value = "auto")]
    pub archive: SeedArchive,
    /// Run this shell command once the datadir is in place (e.g. 'systemctl start mariadb'),
    /// then wait until the replica has applied what the primary had at the end of the seed.
    #[arg(long, value_name = "CMD")]
    pub start_with: Option<String>,
    /// The replica's socket, for --start-with.
    #[arg(long, value_name = "PATH", default_value = "/run/mysqld/mysqld.sock")]
    pub replica_socket: PathBuf,
    /// How long --start-with waits for the replica to catch up.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub wait_timeout: u64,
    /// The server's user, owner of the datadir (never root).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// An option of the prepare and the private server in place of the backup's own.
    #[arg(long = "prepare-option", value_name = "NAME=VALUE")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,
    /// Another image of the chain, where it is not beside the image. Repeatable.
    #[arg(long, value_name = "IMAGE")]
    pub base: Vec<PathBuf>,
    /// Replace a datadir that is not empty.
    #[arg(long)]
    pub force: bool,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: OptionalTlsArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SeedSslMode {
    #[value(name = "VERIFY_IDENTITY", alias = "verify-identity")]
    VerifyIdentity,
    #[value(name = "VERIFY_CA", alias = "verify-ca")]
    VerifyCa,
    #[value(name = "DISABLED", alias = "disabled")]
    Disabled,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SeedArchive {
    Auto,
    Always,
    Never,
}
