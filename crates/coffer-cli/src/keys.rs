//! Loading master keys from key files and the command line.

use crate::cli::KeyArgs;
use crate::exit::usage;
use anyhow::{Context, Result};
use coffer_crypto::MasterKey;
use std::io::Read;
use std::path::Path;

/// Reads a key file: 64 hex digits, optionally followed by a newline.
pub fn read_key_file(path: &Path) -> Result<MasterKey> {
    let mut text = String::new();
    let mut f: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open key file {}", path.display()))?)
    };
    // A key file is 65 bytes; reading a little more catches files that are something else.
    f.by_ref()
        .take(4096)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let key = MasterKey::from_hex(&text).with_context(|| format!("key file {}", path.display()));
    zeroize_string(&mut text);
    key
}

fn zeroize_string(s: &mut String) {
    // SAFETY-free zeroing: overwrite through the byte vector, then clear.
    let mut bytes = std::mem::take(s).into_bytes();
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
}

/// The master keys given, in order; at least one.
pub fn load(args: &KeyArgs, quiet: bool) -> Result<Vec<MasterKey>> {
    let mut keys = Vec::new();
    for path in &args.key_files {
        keys.push(read_key_file(path)?);
    }
    if let Some(hex) = &args.key_hex {
        if !quiet {
            eprintln!("coffer: warning: a key given with --key is visible to other users of this host (ps, /proc); prefer --key-file");
        }
        keys.push(MasterKey::from_hex(hex).context("--key")?);
    }
    if keys.is_empty() {
        return Err(usage(
            "no key given: use --key-file FILE (or COFFER_KEY_FILE); create one with `coffer key generate -o FILE`",
        ));
    }
    Ok(keys)
}
