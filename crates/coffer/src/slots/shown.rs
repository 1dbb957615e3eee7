//! The key commands' output: an image's key slots as `key list` shows them, a keyring's keys,
//! the ids of the secrets given.

use crate::error::Result;
use crate::keys::KeySources;
use crate::text::utc;
use crate::Env;
use coffer_crypto::{hex, slot::describe, KeyringRef, Unlock};
use coffer_format::header::{slot_kind, SLOT_COUNT};
use coffer_format::KeySlot;
use coffer_image::ChosenHeader;
use serde_json::{json, Value};

/// An image's header copy in use, as `key list` shows it (as stored: slots are checked only
/// when a key opens the image).
#[derive(Debug)]
pub struct SlotList(pub ChosenHeader);

impl SlotList {
    fn used(&self) -> Vec<(usize, &KeySlot)> {
        self.0.header.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()).collect()
    }

    /// Its signer, as stored: checked only when a key opens the image.
    fn signer(&self) -> Option<String> {
        self.0.header.signature.as_ref().map(|s| coffer_crypto::Signer(s.signer).to_string())
    }

    /// What `key list --json` prints.
    pub fn to_json(&self) -> Value {
        let (chosen, h) = (&self.0, &self.0.header);
        let slots = self.used();
        json!({
            "image_id": hex(&h.image_id),
            "generation": h.generation,
            "copy_in_use": chosen.copy,
            "stale_copy": chosen.stale_copy,
            "warnings": chosen.warnings,
            "cipher": h.suite.name(),
            "signer": self.signer(),
            "slots": slots.iter().map(|(i, s)| slot_json(*i, s)).collect::<Vec<_>>(),
            "free_slots": SLOT_COUNT - slots.len(),
        })
    }

    /// What `key list` prints: its [`lines`](Self::lines), or with `json` one line of JSON.
    pub fn shown(&self, json: bool) -> Vec<String> {
        if json {
            return vec![self.to_json().to_string()];
        }
        self.lines()
    }

    /// The lines `key list` prints: the image, its signer, one line per slot, the warnings.
    pub fn lines(&self) -> Vec<String> {
        let (chosen, h) = (&self.0, &self.0.header);
        let slots = self.used();
        let mut out = vec![format!(
            "image {}  generation {}  {}  {} of {SLOT_COUNT} slots used",
            hex(&h.image_id),
            h.generation,
            h.suite.name(),
            slots.len()
        )];
        out.push(match self.signer() {
            Some(s) => format!("signed by {s} (unverified until a key opens the image)"),
            None => "unsigned".into(),
        });
        out.extend(slots.iter().map(|(i, s)| format!("slot {i:2}  {}  {}", utc(s.created), describe(s))));
        out.extend(chosen.warnings.iter().map(|w| format!("warning: {w}")));
        if let Some(c) = chosen.stale_copy {
            out.push(format!("warning: header copy {c} is of an older generation (a key change was interrupted); the next key command rewrites it"));
        }
        out
    }
}

/// A key slot as JSON: its kind, time and description, and what identifies its secret.
fn slot_json(i: usize, s: &KeySlot) -> Value {
    let kind = match s.kind {
        slot_kind::KEY => "key",
        slot_kind::PASSPHRASE => "passphrase",
        slot_kind::RECIPIENT => "recipient",
        slot_kind::KEYRING => "keyring",
        _ => "unknown",
    };
    let mut v = json!({"slot": i, "kind": kind, "created": utc(s.created), "description": describe(s)});
    match s.kind {
        slot_kind::PASSPHRASE => {
            let p = coffer_crypto::KdfParams::of_slot(s);
            v["kdf"] = json!({"algorithm": "argon2id", "memory_kib": p.memory_kib, "iterations": p.iterations, "lanes": p.lanes});
        }
        slot_kind::RECIPIENT => {
            let pk: [u8; 32] = s.params[32..64].try_into().expect("32 bytes");
            v["recipient"] = json!(coffer_crypto::Recipient(pk).to_string());
        }
        slot_kind::KEYRING => {
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

/// What identifies each of the secrets given, one line each, as `key id` prints them: a key's
/// id, an identity's recipient, a required signer (a passphrase has none).
pub fn ids(keys: &KeySources, env: &Env) -> Result<Vec<String>> {
    let line = |u: Unlock| match u {
        Unlock::Key(k) => hex(&k.key_id()),
        Unlock::Identity(i) => i.recipient().to_string(),
        Unlock::Passphrase(_) => "passphrase (no id)".into(),
        Unlock::Signer(s) => format!("required signer {s}"),
    };
    Ok(crate::keys::unlocks(keys, env)?.into_iter().map(line).collect())
}

/// The keyring at `file`, opened with `keys`, as `keyring list` prints it: as JSON, or as
/// lines (its keys, then the signers it demands).
pub fn keyring_listing(file: &std::path::Path, keys: &KeySources, json: bool, env: &Env) -> Result<Vec<String>> {
    let (ring, _) = super::keyring_open(file, keys, env)?;
    let signers: Vec<String> = ring.signers().iter().map(ToString::to_string).collect();
    let rows = ring.describe();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, v, c, id)| json!({"name": n, "version": v, "created": utc(*c), "key_id": id}))
            .collect();
        return Ok(vec![json!({ "keys": v, "signers": signers }).to_string()]);
    }
    let mut out: Vec<String> =
        rows.iter().map(|(n, v, c, id)| format!("{n}  version {v}  {}  key {id}", utc(*c))).collect();
    out.extend(signers.iter().map(|s| format!("required signer {s}")));
    Ok(out)
}
