//! Object storage: `catalog` and `prune`.

use super::*;

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
    /// Secrets to read the images whose catalog record is missing (to learn which backups
    /// their chains need; without one, everything older than such a kept backup is kept).
    #[command(flatten)]
    pub key: KeyArgs,
}
