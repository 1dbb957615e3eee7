//! `drill`: prove that a backup restores.

use super::*;

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// An image (file or object URL), or a prefix ending in '/': its newest backup.
    #[arg(value_name = "IMAGE|PREFIX")]
    pub image: String,

    /// A directory to restore into, on a filesystem with room for the backup's files (checked
    /// first): a private directory is made in it and removed at the end (or by the next drill,
    /// if this one is killed). The server's user must be able to reach it (mode 0711 will do).
    #[arg(long, value_name = "DIR")]
    pub scratch: PathBuf,

    /// Drill a point-in-time restore to this moment (PREFIX: the backups' prefix): the newest
    /// backup before it, then the archived binary log (see `restore --until`).
    #[arg(long, value_name = "TIME", group = "pitr")]
    pub until: Option<String>,

    /// Drill a point-in-time restore up to this GTID (see `restore --until-gtid`).
    #[arg(long, value_name = "GTID", group = "pitr")]
    pub until_gtid: Option<String>,

    /// Drill a point-in-time restore up to this binary log position (see `restore
    /// --until-position`).
    #[arg(long, value_name = "FILE:POS", group = "pitr")]
    pub until_position: Option<String>,

    /// With --until-gtid or --until-position: stop just before that transaction.
    #[arg(long)]
    pub exclusive: bool,

    /// With --until*: the binary log archive's prefix [default: PREFIX + binlog/].
    #[arg(long, value_name = "PREFIX")]
    pub binlogs: Option<String>,

    /// Another image of an incremental backup's chain, where it is not beside the image.
    /// Repeatable.
    #[arg(long, value_name = "IMAGE")]
    pub base: Vec<PathBuf>,

    /// An option of the prepare and of the drill's server over the backup's own, e.g.
    /// file_key_management_filename=PATH, or innodb_page_size=4k for a directory backup of a
    /// server with 4K pages. Repeatable.
    #[arg(long = "prepare-option", value_name = "NAME=VALUE")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,

    /// Run the drill's server as this unprivileged user (USER[:GROUP]), who then owns the
    /// restored files, when coffer runs as root [default: mysql]. Never root: the server takes
    /// its orders from the image.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,

    /// The verdict and what was checked, as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// Write the drill's metrics (verdict, duration, pages, tables) for node_exporter's
    /// textfile collector (Prometheus text format, replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,
}
