//! Arbitrary bytes as a header region (both copies and their key slots) and as the small
//! secret formats around it: header backups, identity files, recipient strings, catalog records
//! (opened with the keys of a fixed image, and with an image id taken from the bytes). The region is
//! opened with a key and an identity (passphrase slots are left out: each try is an Argon2id
//! run, bounded by the caps in `KdfParams`). Nothing may panic.
#![no_main]

use coffer_crypto::{slot::describe, Identity, KdfParams, KeyringRef, MasterKey, Recipient, Unlock};
use coffer_crypto::{DataKey, ImageKeys};
use coffer_format::Suite;
use coffer_image::catalog::{open_record, record_image_id, record_links};
use coffer_image::{choose_header, open_header, HeaderBackup};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fuzz_target!(|data: &[u8]| {
    let identity = Identity::parse("COFFER-SECRET-KEY-19THJAYNWSW9QEZFVAV3LHCC49EJ4JVVYF75SE2NJG72E370TEU3SMEJZ7Z").ok();
    let mut unlocks = vec![Unlock::Key(MasterKey::from_hex(KEY).unwrap())];
    unlocks.extend(identity.map(Unlock::Identity));
    if let Ok(chosen) = choose_header(data) {
        for slot in &chosen.header.slots {
            let _ = describe(slot);
            let _ = KeyringRef::of_slot(slot);
            let _ = KdfParams::of_slot(slot).check();
        }
        let _ = open_header(data, &unlocks);
    }
    let _ = HeaderBackup::parse(data);
    let keys = ImageKeys::derive(Suite::Aes256Gcm, &DataKey::from_bytes([7; 32]), &[9; 16]);
    let _ = open_record(&keys, &[9; 16], data);
    // A version 2 record's links are read without a key (prune): never more than declared.
    if let Ok(Some(links)) = record_links(data) {
        assert!(links.len() <= coffer_image::catalog::MAX_LINKS && links.len() < data.len());
    }
    if let Ok(id) = record_image_id(data) {
        let _ = open_record(&keys, &id, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Identity::parse(text);
        let _ = Recipient::parse(text);
    }
});
