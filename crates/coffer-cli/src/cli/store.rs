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
