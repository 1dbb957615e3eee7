//! Transfers: `tls`, the sending options, `receive`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create DIR/ca.crt and DIR/ca.key if absent, then DIR/NAME.crt and DIR/NAME.key (keys mode
    /// 0600), valid for sending and receiving as NAME, localhost, 127.0.0.1 and every --san.
    #[command(after_help = "Example:
  coffer tls generate --ca-dir ./pki --name node1 --san 10.0.0.5 --san node1.example.com")]
    Generate {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Another host name or address the certificate is valid for (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Days the node certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Print the SHA-256 fingerprint of a certificate, for --peer-fingerprint.
    Fingerprint {
        /// A PEM certificate.
        cert: PathBuf,
    },
}

/// This end's certificate and key, and the CA that the other end's certificate must chain to.
#[derive(Debug, Args, Clone)]
pub struct TlsArgs {
    /// This end's certificate (PEM; a chain is accepted).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// This end's private key (PEM).
    #[arg(long = "key", value_name = "FILE")]
    pub tls_key: PathBuf,
    /// The CA certificate(s) the peer's certificate must chain to (PEM).
    #[arg(long, value_name = "FILE", required_unless_present = "peer_fingerprint")]
    pub ca: Option<PathBuf>,
    /// Accept only a peer certificate with this SHA-256 fingerprint (`coffer tls fingerprint
    /// FILE` prints it); repeatable; with --ca, both must hold.
    #[arg(long, value_name = "sha256:HEX")]
    pub peer_fingerprint: Vec<String>,
    /// A transfer that moves no byte for this long fails, on both ends.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub stall_timeout: u64,
}

/// TLS options of `send` and of `backup --to` (or `-o tls://HOST:PORT`).
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub struct OptionalTlsArgs {
    /// This end's certificate (PEM; a chain is accepted).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This end's private key (PEM).
    #[arg(long = "key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) the receiver's certificate must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept only a receiver certificate with this SHA-256 fingerprint (repeatable).
    #[arg(long, value_name = "sha256:HEX")]
    pub peer_fingerprint: Vec<String>,
    /// A transfer that moves no byte for this long fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub stall_timeout: u64,
    /// Connections to carry the image in parallel (TLS on every core) [default: cores].
    #[arg(long, value_name = "N")]
    pub streams: Option<usize>,
    /// Go on with an interrupted transfer: the receiver says what it holds durably, and only
    /// the rest is sent (an image: from its next entry on; a directory: the files it lacks).
    #[arg(long)]
    pub resume: bool,
    /// At most this many bytes per second (e.g. 50M: MiB/s). Sending (--to, tls://): the bytes
    /// put on the wire, to spare a shared link. Otherwise: the bytes read from the source, to
    /// spare its disk (a directory's files; with --mysql, the engine's stream: the engine
    /// waits on its pipe; mariabackup's and xtrabackup's own limit, --throttle=N read-and-write
    /// operations per second, goes with --engine-arg=--throttle=N).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

impl OptionalTlsArgs {
    /// The options as the library takes them, if this end's certificate and key are given
    /// (clap requires both with --to).
    pub fn given(&self) -> Option<coffer::net::TlsOptions> {
        let (cert, key, pins) = (self.cert.clone()?, self.tls_key.clone()?, self.peer_fingerprint.clone());
        let tls = coffer::net::TlsOptions::new(cert, key, self.ca.clone(), pins, self.stall_timeout);
        Some(tls.sending(self.streams, self.resume, self.limit_rate))
    }
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on: HOST:PORT, or :PORT for every address.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Print a JSON summary on stdout: {"peer", "bytes", "seconds"}.
    #[arg(long)]
    pub json: bool,
    /// Restore the image into this directory as it arrives (created; must be empty unless
    /// --force).
    #[arg(long, value_name = "DIR", conflicts_with = "output", required_unless_present = "output")]
    pub to: Option<PathBuf>,
    /// Keep the image as this file instead (written under a temporary name, renamed when whole).
    #[arg(short, long, value_name = "IMAGE")]
    pub output: Option<PathBuf>,
    /// With --to: run the engine's prepare on the restored backup of a server.
    #[arg(long, requires = "to")]
    pub prepare: bool,
    /// With --prepare: set an option of the prepare in place of the backup's own
    /// (backup-my.cnf), e.g. file_key_management_filename=PATH where this host keeps the key
    /// file of an encrypting server. Repeatable.
    #[arg(long = "prepare-option", value_name = "NAME=VALUE", requires = "prepare")]
    pub prepare_options: Vec<coffer_mysql::engine::PrepareOption>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Keep set-uid and set-gid bits when the owner applied is not the image's (--owner, or a
    /// restore by another user than the image's owner); they are cleared otherwise.
    #[arg(long)]
    pub keep_setuid: bool,
    /// Restore into a non-empty directory, replacing what is there (and any interrupted
    /// transfer's journal).
    #[arg(long)]
    pub force: bool,
    /// With --to: flush what was restored and record it in the directory's journal after every
    /// SIZE of data, so that `coffer send --resume` re-sends at most about that much.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_bytes)]
    pub checkpoint: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Key file that opens the image (for --to).
    #[arg(long = "key-file", env = "COFFER_KEY_FILE", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,
    /// Passphrase file that opens the image (for --to).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_files: Vec<PathBuf>,
    /// Identity that opens the image (for --to).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,

    /// Refuse images not signed by this signer (coffersig1..., or a file holding one;
    /// repeatable): unsigned images and other signers exit 3 before anything is written.
    #[arg(long = "require-signer", env = "COFFER_REQUIRE_SIGNER", value_name = "SIGNER", value_delimiter = ',')]
    pub require_signers: Vec<String>,
}
