//! Keys and key slots: generate, list, add, remove, rotate, rewrap; header backups; keyrings;
//! rekey (`coffer::slots`, which says what each did), printed.

use super::{refuse_stdin_terminal, stdout_file};
use crate::cli::{HeaderCommand, KeyCommand, KeyringCommand, RekeyArgs};
use crate::exit::usage;
use anyhow::{Context, Result};
use coffer::slots::{self, KeyKind};
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(cmd: KeyCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        KeyCommand::Generate { output, x25519, signing, force } => generate(&output, x25519, signing, force, &env),
        KeyCommand::Id { key } => print(slots::ids(&key.sources(), &env)?),
        KeyCommand::Signer { signing_key, allow_insecure_key_file } => {
            print([coffer::keys::read_signing_key(&signing_key, allow_insecure_key_file)?.public()])
        }
        KeyCommand::Recipient { identity, allow_insecure_key_file } => {
            print([coffer::keys::recipient_of(&identity, allow_insecure_key_file)?])
        }
        KeyCommand::List { image, json } => {
            refuse_stdin_terminal(&image)?;
            print(slots::list_slots(&image, &env)?.shown(json))
        }
        KeyCommand::Add { image, key, new } => {
            Ok(slots::add_slots(&image, &key.sources(), &new.secrets(), &env).map(drop)?)
        }
        KeyCommand::Remove { image, slot, key } => Ok(slots::remove_slot(&image, slot, &key.sources(), &env)?),
        KeyCommand::Rotate { image, key, new } => {
            Ok(slots::rotate_slot(&image, &key.sources(), &new.secrets(), &env).map(drop)?)
        }
        KeyCommand::Rewrap { images, key } => Ok(slots::rewrap_all(&images, &key.sources(), &env, |image, e| {
            eprintln!("coffer: error: {}: {}", image.display(), e.one_line())
        })?),
    }
}

/// Prints each item on a line of its own.
fn print<T: std::fmt::Display>(lines: impl IntoIterator<Item = T>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

fn generate(output: &Path, x25519: bool, signing: bool, force: bool, env: &coffer::Env) -> Result<()> {
    let key = slots::generate_key(KeyKind::asked(x25519, signing))?;
    if output == Path::new("-") {
        return stdout_file()?.write_all(key.text.as_bytes()).context("cannot write to stdout");
    }
    slots::write_secret_file(output, key.text.as_bytes(), force)?;
    key.public.iter().for_each(|p| println!("{p}"));
    env.report.say(&key.written(output));
    Ok(())
}

pub fn header(cmd: HeaderCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        HeaderCommand::Backup { image, output, force } => {
            refuse_stdin_terminal(&image)?;
            Ok(slots::header_backup(&image, &output, force, &env).map(drop)?)
        }
        HeaderCommand::Restore { image, backup, force } => Ok(slots::header_restore(&image, &backup, force, &env)?),
    }
}

pub fn keyring(cmd: KeyringCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        KeyringCommand::Create { file, names, force, key } => {
            Ok(slots::keyring_create(&file, &names, force, &key.sources(), &env)?)
        }
        KeyringCommand::Rotate { file, name, key } => {
            Ok(slots::keyring_rotate(&file, &name, &key.sources(), &env).map(drop)?)
        }
        KeyringCommand::Trust { file, signer, key } => {
            Ok(slots::keyring_trust(&file, &signer, &key.sources(), &env).map(drop)?)
        }
        KeyringCommand::List { file, json, key } => print(slots::keyring_listing(&file, &key.sources(), json, &env)?),
    }
}

pub fn rekey(args: RekeyArgs, quiet: bool, threads: usize) -> Result<()> {
    if args.output == Path::new("-") && std::io::stdout().is_terminal() {
        return Err(usage("refusing to write an image to a terminal: use -o FILE or a pipe"));
    }
    refuse_stdin_terminal(&args.image)?;
    let spec = slots::RekeySpec {
        image: args.image.clone(),
        output: args.output.clone(),
        cipher: args.cipher,
        force: args.force,
        signing_key: args.signing_key.clone(),
        keys: args.key.sources(),
        new: args.new.secrets(),
    };
    slots::rekey(&spec, &crate::report::env(quiet, threads))?;
    Ok(())
}
