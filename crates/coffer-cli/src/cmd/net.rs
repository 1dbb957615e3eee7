//! `coffer tls generate`, `coffer send`, `coffer receive` (`coffer::transfer`): images between
//! hosts over TLS 1.3, both ends authenticated, restored on the fly at the far end.

use super::say;
use crate::cli::{BackupArgs, ReceiveArgs, TlsArgs, TlsCommand};
use anyhow::Result;
use coffer::keys::KeySources;
use coffer_net::tls;

pub fn tls_command(cmd: TlsCommand, quiet: bool) -> Result<()> {
    match cmd {
        TlsCommand::Generate { ca_dir, name, san, days } => {
            coffer::net::generate(&ca_dir, &name, &san, days)?.lines().iter().for_each(|l| say(quiet, l));
            Ok(())
        }
        TlsCommand::Fingerprint { cert } => {
            println!("{}", tls::fingerprint(&cert)?);
            Ok(())
        }
    }
}

impl TlsArgs {
    /// The options as the library takes them.
    pub fn options(&self) -> coffer::net::TlsOptions {
        let (cert, key, pins) = (self.cert.clone(), self.tls_key.clone(), self.peer_fingerprint.clone());
        coffer::net::TlsOptions::new(cert, key, self.ca.clone(), pins, self.stall_timeout)
    }
}

/// `coffer send` of an image as it is (a file with coffer's magic, an object, or '-'); a
/// source is backed up onto the wire by `backup` (see `cmd::run`).
pub fn send(args: BackupArgs, quiet: bool, threads: usize) -> Result<()> {
    let metrics = crate::metrics::start(args.metrics_file.clone(), "send");
    let result = super::io_priority(args.io_priority).and_then(|()| send_image(args, quiet, threads));
    crate::metrics::finish(metrics, result, coffer::service::gauges::send)?;
    Ok(())
}

fn send_image(args: BackupArgs, quiet: bool, threads: usize) -> Result<coffer::transfer::SendSummary> {
    let to = args.send_to.clone().ok_or_else(|| crate::exit::usage("send needs --to HOST:PORT"))?;
    let image = args.source.clone().unwrap_or_default();
    let image = image.as_path();
    super::refuse_stdin_terminal(image)?;
    let tls = args.tls.given().expect("clap requires --cert and --key with --to");
    let s = coffer::transfer::send(image, &to, &tls, &crate::report::env(quiet, threads))?;
    say(quiet, s.line(&to));
    Ok(s)
}

pub fn receive(args: ReceiveArgs, quiet: bool, threads: usize) -> Result<()> {
    let keys = KeySources::files(&args.key_files, &args.passphrase_files, &args.identities, &args.require_signers);
    let spec = coffer::transfer::ReceiveSpec {
        listen: args.listen.clone(),
        tls: args.tls.options(),
        to: args.to.clone(),
        output: args.output.clone(),
        keys,
        owner: args.owner.clone(),
        keep_setuid: args.keep_setuid,
        force: args.force,
        checkpoint: args.checkpoint,
    };
    let env = crate::report::env(quiet, threads);
    let s = match args.prepare {
        true => coffer::server::prepare::receive(&spec, &args.prepare_options, &env)?,
        false => coffer::transfer::receive(&spec, &env)?,
    };
    if args.json {
        println!("{}", s.to_json());
    }
    say(quiet, s.line());
    Ok(())
}
