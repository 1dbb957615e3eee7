use crate::cli::KeyCommand;
use crate::output::AtomicFile;
use anyhow::{Context, Result};
use coffer_crypto::{hex, MasterKey};
use std::io::Write;
use std::path::Path;

pub fn run(cmd: KeyCommand, quiet: bool) -> Result<()> {
    match cmd {
        KeyCommand::Generate { output, force } => {
            let key = MasterKey::generate().context("cannot generate a key")?;
            let text = key.to_hex_line();
            if output == Path::new("-") {
                super::stdout_file()?.write_all(text.as_bytes()).context("cannot write the key to stdout")?;
            } else {
                let file = AtomicFile::create(&output, force, 0o600)?;
                (&file).write_all(text.as_bytes()).with_context(|| format!("cannot write {}", output.display()))?;
                file.commit()?;
                if !quiet {
                    eprintln!("coffer: wrote a new key to {} (key id {}); keep a copy somewhere safe: without it the backups cannot be read", output.display(), hex(&key.key_id()));
                }
            }
            Ok(())
        }
        KeyCommand::Id { key } => {
            for k in crate::keys::load(&key, quiet)? {
                println!("{}", hex(&k.key_id()));
            }
            Ok(())
        }
    }
}
