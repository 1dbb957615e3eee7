//! `binlog`: archive a server's binary log, list and fetch the archive.

use super::*;
use coffer::source::server_tls;

#[derive(Debug, Subcommand)]
pub enum BinlogCommand {
    /// Pull the server's binary log over the replication protocol (as a replica does: a log the
    /// server encrypts arrives decrypted) and store it sealed, in segments, under a prefix,
    /// from where the archive ends.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:
  coffer binlog archive -h db1 -u repl --password-file pw -o s3://b/prod/binlog/ --key-file k
  coffer binlog archive -S /run/mysqld/mysqld.sock -u repl --password-file pw -o s3://b/prod/binlog/ --key-file k --follow
  coffer binlog archive --profile prod --follow --metrics-listen 127.0.0.1:9187

Under systemd (a Type=notify unit, contrib/systemd/coffer-binlog@.service), --follow says
READY=1 once the binary log streams, STATUS= lines, WATCHDOG=1 while its loop runs (with
WatchdogSec=), and STOPPING=1; SIGTERM or SIGINT stores what was received and ends it with
exit code 0."
    )]
    Archive(Box<ArchiveArgs>),
    /// The archive's segments, in log order: file, positions, size, gaps (no key needed); with a
    /// key also event times, GTID positions and the server.
    List(Box<BinlogListArgs>),
    /// Write the archived binary log files into a directory, each as the server wrote it.
    #[command(after_help = "Example:
  coffer binlog fetch s3://b/prod/binlog/ --from binlog.000040 --to-dir /tmp/bl --key-file k")]
    Fetch(Box<FetchArgs>),
    /// The archived transactions, one line each: GTID, time (UTC), FILE:START-END (START: where
    /// its GTID event starts, for --until-position ... --exclusive; END: where it ends), and
    /// what it did; the last line says how many were read and shown. To find a mistake's GTID
    /// and restore to just before it (restore --until-gtid GTID --exclusive).
    #[command(after_help = "Example:
  coffer binlog show s3://b/prod/binlog/ --table shop.orders --from '2026-11-27 14:00:00' --key-file k")]
    Show(Box<ShowArgs>),
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Server socket.
    #[arg(short = 'S', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Server host (TCP).
    #[arg(short = 'h', long)]
    pub host: Option<String>,
    /// Server port (TCP) [default: 3306].
    #[arg(short = 'P', long)]
    pub port: Option<u16>,
    /// User to connect as (it needs REPLICATION SLAVE and BINLOG MONITOR, or REPLICATION CLIENT).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// File holding the password (one line). Never on the command line.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// TLS to the server, with MySQL's meanings (REQUIRED, VERIFY_CA, VERIFY_IDENTITY)
    /// [default: VERIFY_CA with --ssl-ca, REQUIRED with --ssl-cert; without any --ssl option,
    /// no TLS].
    #[arg(long, value_enum, value_name = "MODE")]
    pub ssl_mode: Option<SslModeArg>,
    /// The CA that signs the server's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ssl_ca: Option<PathBuf>,
    /// Our certificate, for a server that asks for one (PEM; with --ssl-key).
    #[arg(long, value_name = "FILE", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// The key of --ssl-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// The prefix the segments go under: s3://BUCKET/PATH/ (or gs://, az://, file://).
    #[arg(short, long, value_name = "PREFIX")]
    pub output: String,
    /// Keep reading as the server writes, reconnecting after a broken link.
    #[arg(long)]
    pub follow: bool,
    /// With --follow, close a segment after this many seconds (the archive's RPO).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub segment_time: u64,
    /// Close a segment at this many bytes (K, M suffixes; 4K to 64M).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_chunk_size)]
    pub segment_size: u32,
    /// The replica id coffer announces (unique among the server's replicas).
    #[arg(long, value_name = "N", default_value_t = 1_953_654_127)]
    pub server_id: u32,
    /// Write the run's metrics to this file (Prometheus text format, for node_exporter's
    /// textfile collector): lag, segments and bytes stored, gaps, connected; after each
    /// segment stored, on each connection or loss of the link, every 30 s, and at the end.
    /// docs/METRICS.md lists them.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Serve the same metrics over HTTP at http://ADDR/metrics (e.g. 127.0.0.1:9187; plain
    /// HTTP, no authentication: bind a loopback or private address). Only useful with
    /// --follow: without it the run ends at the end of the server's log.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

#[derive(Debug, Args)]
pub struct BinlogListArgs {
    /// The archive's prefix.
    pub prefix: String,
    /// One JSON object per segment, in an array.
    #[arg(long)]
    pub json: bool,
    /// With a key: each segment's first and last event times, GTID positions before and
    /// after, and server, from its sealed description.
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The archive's prefix.
    pub prefix: String,
    /// The first binary log file to write [default: the archive's first].
    #[arg(long, value_name = "FILE")]
    pub from: Option<String>,
    /// The directory to write the files into (created if absent; existing files are not
    /// replaced).
    #[arg(long, value_name = "DIR")]
    pub to_dir: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The archive's prefix.
    pub prefix: String,
    /// Only transactions that touch this table (DB.T; repeatable): by its row events, or by a
    /// statement whose text names it as a word (T, `T`, DB.T, `DB`.`T`, any case) with DB its
    /// default database or qualifier: a text match, not a parse of the SQL.
    #[arg(long, value_name = "DB.T")]
    pub table: Vec<String>,
    /// Only transactions stamped at or after this time (YYYY-MM-DD HH:MM:SS, UTC unless a zone).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only transactions stamped at or before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// One JSON object per line for each transaction, the last line the counts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

impl ArchiveArgs {
    /// The server to archive from, as the library takes it.
    pub fn server(&self) -> coffer::ServerOptions {
        coffer::ServerOptions {
            socket: self.socket.clone(),
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            tls: server_tls(self.ssl_mode.map(SslModeArg::mode), &self.ssl_ca, &self.ssl_cert, &self.ssl_key),
            ..Default::default()
        }
    }
}
