//! `coffer replica seed`.

use super::*;
use coffer::server::replica::ArchiveUse;

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
    /// The binary log archive [default: SOURCE + binlog/ for a prefix].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,
    /// When the archive is replayed first: auto (the primary purged the backup's position),
    /// always (to its end), never (refuse instead).
    #[arg(long, default_value = "auto", value_parser = named(&ArchiveUse::ALL, ArchiveUse::name))]
    pub archive: ArchiveUse,
    /// Run this shell command once the datadir is in place (e.g. 'systemctl start mariadb'),
    /// then wait until the replica has applied what the primary had at the end of the seed.
    #[arg(long, value_name = "CMD")]
    pub start_with: Option<String>,
    /// The option file the replica's service reads: refused without a server_id of its own.
    #[arg(long, value_name = "FILE")]
    pub replica_config: Option<PathBuf>,
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
    pub primary: PrimaryArgs,
    #[command(flatten)]
    pub tls: OptionalTlsArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}
