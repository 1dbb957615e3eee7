//! `coffer backup` (and `coffer send` of a source): the command line made into a
//! `coffer::backup::BackupSpec`, the job run, its summary printed.

use super::{io_priority, warn};
use crate::cli::{BackupArgs, OptionalTlsArgs, ServerArgs, SslModeArg};
use crate::exit::usage;
use anyhow::Result;
use coffer::backup::{BackupSpec, BackupSummary, Compression};
use coffer::source::server_tls;
use coffer::{Location, OutOptions, ServerOptions, SourceSpec};
use std::io::{IsTerminal, Write};

impl ServerArgs {
    fn options(&self) -> ServerOptions {
        ServerOptions {
            socket: self.socket.clone(),
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            defaults_file: self.defaults_file.clone(),
            engine: self.engine,
            engine_args: self.engine_args.clone(),
            scratch_dir: self.scratch_dir.clone(),
            tls: server_tls(self.ssl_mode.map(SslModeArg::mode), &self.ssl_ca, &self.ssl_cert, &self.ssl_key),
        }
    }
}

impl BackupArgs {
    fn spec(&self) -> Result<BackupSpec> {
        let server = self.mysql.then(|| self.server.options());
        let source = SourceSpec::given(server, self.xbstream.clone(), self.source.as_deref(), self.name.clone());
        let mut spec = BackupSpec::new(source, Location::output(self.send_to.as_deref(), self.output.as_deref()));
        // --limit-rate paces the wire when sending, else the reading of the source.
        let sending = matches!(spec.output, Location::Tls(_));
        // Any option of sending given, but --limit-rate and --stall-timeout?
        let for_sending = OptionalTlsArgs { limit_rate: None, stall_timeout: 0, ..self.tls.clone() };
        let tls = match &spec.output {
            Location::Tls(_) => self.tls.given(),
            _ if for_sending != OptionalTlsArgs::default() => {
                return Err(usage(
                    "--cert, --key, --ca, --peer-fingerprint, --streams and --resume are for sending \
                     (--to HOST:PORT, or -o tls://HOST:PORT)",
                ))
            }
            _ => None,
        };
        spec.limit_rate = if sending { None } else { self.tls.limit_rate };
        spec.out = OutOptions { force: self.force, tls, ..OutOptions::default() };
        spec.keys = self.key.sources();
        spec.seal = self.seal.options();
        spec.cipher = self.cipher;
        spec.compression = Compression { codec: self.compress, level: self.level };
        spec.chunk_size = self.chunk_size;
        spec.pack_limit = self.pack_limit;
        spec.validate = !self.no_validate;
        spec.fail_on_corrupt = self.fail_on_corrupt;
        let c = &self.chain;
        spec.chain = coffer::repo::chain::ChainRequest::new(c.incremental, c.differential, &c.base, c.max_chain);
        Ok(spec)
    }
}

pub fn run(args: BackupArgs, quiet: bool, threads: usize) -> Result<()> {
    let metrics = crate::metrics::start(args.metrics_file.clone(), "backup");
    let result = io_priority(args.io_priority).and_then(|()| backup(&args, quiet, threads));
    let summary = crate::metrics::finish(metrics, result, coffer::service::gauges::backup)?;
    summary.lines().iter().for_each(|line| super::say(quiet, line));
    summary.warnings().into_iter().for_each(|w| warn(quiet, w));
    let _ = std::io::stderr().flush();
    if args.json {
        println!("{}", summary.to_json());
    }
    Ok(())
}

fn backup(args: &BackupArgs, quiet: bool, threads: usize) -> Result<BackupSummary> {
    let spec = args.spec()?;
    if args.json && spec.output == Location::Stdio {
        return Err(usage("--json prints on stdout, where -o - writes the image: give -o FILE"));
    }
    if spec.output == Location::Stdio && std::io::stdout().is_terminal() {
        return Err(usage("refusing to write an image to a terminal: use -o FILE or a pipe"));
    }
    if spec.source.reads_stdin() && std::io::stdin().is_terminal() {
        return Err(usage("refusing to read data from a terminal: pipe it in, or name a directory or file"));
    }
    Ok(coffer::backup::backup(&spec, &crate::report::env(quiet, threads))?)
}
