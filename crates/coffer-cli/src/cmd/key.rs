//! Keys and key slots: generate, list, add, remove, rotate, rewrap; header backups; keyrings;
//! rekey (`coffer::slots`), printed.

use super::{human, rate, stdout_file};
use crate::cli::{HeaderCommand, KeyCommand, KeyringCommand, RekeyArgs};
use crate::exit::usage;
use anyhow::{bail, Context, Result};
use coffer::slots::{self, KeyKind};
use coffer::text::utc;
use coffer_crypto::{hex, slot::describe, Identity, KeyringRef, Unlock};
use coffer_format::header::SLOT_COUNT;
use coffer_format::KeySlot;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(cmd: KeyCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        KeyCommand::Generate { output, x25519, signing, force } => generate(&output, x25519, signing, force, quiet),
        KeyCommand::Id { key } => {
            for k in coffer::keys::unlocks(&key.sources(), &env)? {
                match k {
                    Unlock::Key(k) => println!("{}", hex(&k.key_id())),
                    Unlock::Identity(i) => println!("{}", i.recipient()),
                    Unlock::Passphrase(_) => println!("passphrase (no id)"),
                    Unlock::Signer(s) => println!("required signer {s}"),
                }
            }
            Ok(())
        }
        KeyCommand::Signer { signing_key, allow_insecure_key_file } => {
            println!("{}", coffer::keys::read_signing_key(&signing_key, allow_insecure_key_file)?.public());
            Ok(())
        }
        KeyCommand::Recipient { identity, allow_insecure_key_file } => {
            let bytes = coffer::keys::read_secret(&identity, "identity file", allow_insecure_key_file)?;
            let text = std::str::from_utf8(&bytes).map_err(|_| coffer_crypto::CryptoError::BadIdentity);
            let id = text.and_then(Identity::parse).with_context(|| format!("identity file {}", identity.display()))?;
            println!("{}", id.recipient());
            Ok(())
        }
        KeyCommand::List { image, json } => list(&image, json, &env),
        KeyCommand::Add { image, key, new } => {
            let added = slots::add_slots(&image, &key.sources(), &new.secrets(), &env)?;
            say(quiet, format!("added key slot(s) {added:?} to {}", image.display()));
            Ok(())
        }
        KeyCommand::Remove { image, slot, key } => {
            slots::remove_slot(&image, slot, &key.sources(), &env)?;
            say(quiet, format!("removed key slot {slot} from {}; the data key is unchanged: a copy of the old header still opens with the removed secret (`coffer rekey` re-encrypts)", image.display()));
            Ok(())
        }
        KeyCommand::Rotate { image, key, new } => {
            let slot = slots::rotate_slot(&image, &key.sources(), &new.secrets(), &env)?;
            say(quiet, format!("replaced key slot {slot} of {}", image.display()));
            Ok(())
        }
        KeyCommand::Rewrap { images, key } => {
            let ring =
                coffer::keys::keyring(&key.sources(), &env)?.ok_or_else(|| usage("rewrap needs --keyring FILE"))?;
            let mut failed = 0;
            for image in &images {
                match slots::rewrap(image, &ring, &env) {
                    Ok(0) => say(quiet, format!("{}: already at the newest key versions", image.display())),
                    Ok(n) => say(quiet, format!("{}: moved {n} slot(s) to the newest key version", image.display())),
                    Err(e) => {
                        failed += 1;
                        eprintln!("coffer: error: {}: {}", image.display(), e.one_line());
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} images were not rewrapped", images.len());
            }
            Ok(())
        }
    }
}

fn generate(output: &Path, x25519: bool, signing: bool, force: bool, quiet: bool) -> Result<()> {
    let kind = match (x25519, signing) {
        (true, _) => KeyKind::X25519,
        (_, true) => KeyKind::Signing,
        _ => KeyKind::Master,
    };
    let key = slots::generate_key(kind)?;
    if output == Path::new("-") {
        stdout_file()?.write_all(key.text.as_bytes()).context("cannot write to stdout")?;
        return Ok(());
    }
    slots::write_secret_file(output, key.text.as_bytes(), force)?;
    if let Some(p) = &key.public {
        println!("{p}");
    }
    say(
        quiet,
        format!(
            "wrote {} ({}); keep a copy somewhere safe: without it the backups cannot be read",
            output.display(),
            key.id
        ),
    );
    Ok(())
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("coffer: {msg}");
    }
}

fn slot_json(i: usize, s: &KeySlot) -> serde_json::Value {
    let kind = match s.kind {
        coffer_format::header::slot_kind::KEY => "key",
        coffer_format::header::slot_kind::PASSPHRASE => "passphrase",
        coffer_format::header::slot_kind::RECIPIENT => "recipient",
        coffer_format::header::slot_kind::KEYRING => "keyring",
        _ => "unknown",
    };
    let mut v = json!({"slot": i, "kind": kind, "created": utc(s.created), "description": describe(s)});
    match s.kind {
        coffer_format::header::slot_kind::PASSPHRASE => {
            let p = coffer_crypto::KdfParams::of_slot(s);
            v["kdf"] = json!({"algorithm": "argon2id", "memory_kib": p.memory_kib, "iterations": p.iterations, "lanes": p.lanes});
        }
        coffer_format::header::slot_kind::RECIPIENT => {
            let pk: [u8; 32] = s.params[32..64].try_into().expect("32 bytes");
            v["recipient"] = json!(coffer_crypto::Recipient(pk).to_string());
        }
        coffer_format::header::slot_kind::KEYRING => {
            if let Some(r) = KeyringRef::of_slot(s) {
                v["key_name"] = json!(r.name);
                v["key_version"] = json!(r.version);
            }
            v["key_id"] = json!(hex(&s.key_id));
        }
        _ => v["key_id"] = json!(hex(&s.key_id)),
    }
    v
}

fn list(image: &Path, as_json: bool, env: &coffer::Env) -> Result<()> {
    if image == Path::new("-") {
        super::refuse_terminal(&coffer::Location::Stdio)?;
    }
    let chosen = slots::list_slots(image, env)?;
    let h = &chosen.header;
    let slots: Vec<_> = h.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()).collect();
    // Shown as stored: checked only when a key opens the image.
    let signer = h.signature.as_ref().map(|s| coffer_crypto::Signer(s.signer).to_string());
    let mut out = std::io::stdout().lock();
    if as_json {
        let v = json!({
            "image_id": hex(&h.image_id),
            "generation": h.generation,
            "copy_in_use": chosen.copy,
            "stale_copy": chosen.stale_copy,
            "warnings": chosen.warnings,
            "cipher": h.suite.name(),
            "signer": signer,
            "slots": slots.iter().map(|(i, s)| slot_json(*i, s)).collect::<Vec<_>>(),
            "free_slots": SLOT_COUNT - slots.len(),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "image {}  generation {}  {}  {} of {SLOT_COUNT} slots used",
        hex(&h.image_id),
        h.generation,
        h.suite.name(),
        slots.len()
    )?;
    match &signer {
        Some(s) => writeln!(out, "signed by {s} (unverified until a key opens the image)")?,
        None => writeln!(out, "unsigned")?,
    }
    for (i, s) in slots {
        writeln!(out, "slot {i:2}  {}  {}", utc(s.created), describe(s))?;
    }
    for w in &chosen.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(c) = chosen.stale_copy {
        writeln!(out, "warning: header copy {c} is of an older generation (a key change was interrupted); the next key command rewrites it")?;
    }
    Ok(())
}

pub fn header(cmd: HeaderCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        HeaderCommand::Backup { image, output, force } => {
            if image == Path::new("-") {
                super::refuse_terminal(&coffer::Location::Stdio)?;
            }
            let id = slots::header_backup(&image, &output, force, &env)?;
            say(quiet, format!("saved the header of {} (image {}) to {}", image.display(), hex(&id), output.display()));
            Ok(())
        }
        HeaderCommand::Restore { image, backup, force } => {
            slots::header_restore(&image, &backup, force, &env)?;
            say(quiet, format!("restored the header of {} from {}", image.display(), backup.display()));
            Ok(())
        }
    }
}

pub fn keyring(cmd: KeyringCommand, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    match cmd {
        KeyringCommand::Create { file: keyring, names, force, key } => {
            slots::keyring_create(&keyring, &names, force, &key.sources(), &env)?;
            say(quiet, format!("created keyring {} with {} key(s)", keyring.display(), names.len()));
            Ok(())
        }
        KeyringCommand::Rotate { file: keyring, name, key } => {
            let version = slots::keyring_rotate(&keyring, &name, &key.sources(), &env)?;
            say(
                quiet,
                format!(
                    "keyring {}: {name} is now at version {version}; `coffer key rewrap` moves images to it",
                    keyring.display()
                ),
            );
            Ok(())
        }
        KeyringCommand::Trust { file: keyring, signer, key } => {
            let (added, signer) = slots::keyring_trust(&keyring, &signer, &key.sources(), &env)?;
            if added {
                say(
                    quiet,
                    format!("keyring {}: images opened with it must now be signed by {signer}", keyring.display()),
                );
            } else {
                say(quiet, format!("keyring {} already demands {signer}", keyring.display()));
            }
            Ok(())
        }
        KeyringCommand::List { file: keyring, json, key } => {
            let (ring, _) = slots::keyring_open(&keyring, &key.sources(), &env)?;
            let signers: Vec<String> = ring.signers().iter().map(ToString::to_string).collect();
            let rows = ring.describe();
            let mut out = std::io::stdout().lock();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, v, c, id)| json!({"name": n, "version": v, "created": utc(*c), "key_id": id}))
                    .collect();
                writeln!(out, "{}", json!({ "keys": v, "signers": signers }))?;
            } else {
                for (n, v, c, id) in rows {
                    writeln!(out, "{n}  version {v}  {}  key {id}", utc(c))?;
                }
                for signer in signers {
                    writeln!(out, "required signer {signer}")?;
                }
            }
            Ok(())
        }
    }
}

pub fn rekey(args: RekeyArgs, quiet: bool, threads: usize) -> Result<()> {
    if args.output == Path::new("-") && std::io::stdout().is_terminal() {
        return Err(usage("refusing to write an image to a terminal: use -o FILE or a pipe"));
    }
    if args.image == Path::new("-") {
        super::refuse_terminal(&coffer::Location::Stdio)?;
    }
    let spec = slots::RekeySpec {
        image: args.image.clone(),
        output: args.output.clone(),
        cipher: args.cipher.map(crate::cli::CipherArg::suite),
        force: args.force,
        signing_key: args.signing_key.clone(),
        keys: args.key.sources(),
        new: args.new.secrets(),
    };
    let s = slots::rekey(&spec, &crate::report::env(quiet, threads))?;
    say(
        quiet,
        format!(
            "re-encrypted {} into {} under a new data key ({}, {:.1} s, {})",
            args.image.display(),
            s.output,
            human(s.written),
            s.seconds,
            rate(s.written, s.seconds)
        ),
    );
    Ok(())
}
