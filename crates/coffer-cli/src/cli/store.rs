//! Object storage: `catalog` and `prune`.

use super::*;

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// A prefix: s3://BUCKET/PATH/ (or gs://, az://, file://).
    pub prefix: String,
    /// One JSON object per backup, in an array.
    #[arg(long)]
    pub json: bool,
    /// The binary log archive's prefix, for each backup's recovery window [default: PREFIX
    /// + binlog/].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub primary: PrimaryArgs,
}

/// The primary and its replication account (`catalog --primary`, `replica seed`).
#[derive(Debug, Args, Clone, Default)]
pub struct PrimaryArgs {
    /// The primary, HOST[:PORT], as its certificate names it (catalog: says of each backup
    /// whether the primary still has the binary log from its position).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub primary: Option<String>,
    /// The replication account (REPLICATION SLAVE, mysql_native_password).
    #[arg(long, requires = "primary")]
    pub user: Option<String>,
    /// File holding its password (one line). Never on the command line.
    #[arg(long, value_name = "FILE", requires = "primary")]
    pub password_file: Option<PathBuf>,
    /// VERIFY_IDENTITY [default; VERIFY_CA checks the host too, as the replica does] or DISABLED (plaintext, by name).
    #[arg(long, value_name = "MODE", requires = "primary")]
    pub ssl_mode: Option<String>,
    /// The CA that signs the primary's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "primary")]
    pub ssl_ca: Option<PathBuf>,
    /// Our certificate, for a primary that asks for one (PEM; with --ssl-key).
    #[arg(long, value_name = "FILE", requires_all = ["primary", "ssl_key"])]
    pub ssl_cert: Option<PathBuf>,
    /// The key of --ssl-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
}

impl PrimaryArgs {
    /// The primary, checked; None without --primary.
    pub fn spec(&self) -> coffer::Result<Option<coffer::server::replica::PrimarySpec>> {
        let Some(at) = &self.primary else { return Ok(None) };
        let (user, pw, mode) = (self.user.as_deref(), self.password_file.as_deref(), self.ssl_mode.as_deref());
        let (ca, cert, key) = (self.ssl_ca.clone(), self.ssl_cert.clone(), self.ssl_key.clone());
        coffer::server::replica::PrimarySpec::new(at, user, pw, mode, ca, cert, key).map(Some)
    }
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
    /// Keep point-in-time recovery to any moment of this last span (such as 7d, 36h; units
    /// s, m, h, d, w): the backups taken in it and the newest from before its start, with
    /// their chains, and the binary log from that backup's file on. Older binary log
    /// segments are deleted. Needs the key.
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    pub keep_pitr: Option<i64>,
    /// The binary log archive's prefix, for --keep-pitr [default: PREFIX + binlog/].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,
    /// Print what would be kept and deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Carry out a plan that deletes the newest backup, or every backup (refused otherwise).
    #[arg(long)]
    pub allow_deleting_newest: bool,
    /// The plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the run's metrics (backups kept and deleted, bytes freed, success) for
    /// node_exporter's textfile collector (Prometheus text format, replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Secrets to read the images whose catalog record is missing (to learn which backups
    /// their chains need; without one, everything older than such a kept backup is kept).
    #[command(flatten)]
    pub key: KeyArgs,
}
