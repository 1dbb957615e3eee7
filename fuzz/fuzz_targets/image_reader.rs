//! Feeds arbitrary bytes to the image reader, both ways: streaming (as from a pipe) and through
//! the index (as from a file). The key is the one of the seed corpus (fuzz/seeds.sh), so inputs
//! derived from valid images get past the key slot. Nothing may panic, hang or over-allocate.
#![no_main]

use coffer_crypto::{MasterKey, Unlock};
use coffer_image::{open_stream, read_stream, IndexedImage, NullVisitor, ReadOptions};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fuzz_target!(|data: &[u8]| {
    let keys = [Unlock::Key(MasterKey::from_hex(KEY).unwrap())];
    let mut input = data;
    if let Ok(image) = open_stream(&mut input, &keys) {
        let _ = read_stream(&mut input, &image, &mut NullVisitor, ReadOptions { threads: 1, skip_data: false });
    }
    let dir = std::env::temp_dir().join(format!("coffer-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("image");
    if std::fs::write(&path, data).is_ok() {
        if let Ok(idx) = IndexedImage::open(&path, &keys) {
            for i in 0..idx.records().len().min(4) {
                let _ = idx.read_entry(i, &mut NullVisitor, 1);
            }
        }
    }
});
