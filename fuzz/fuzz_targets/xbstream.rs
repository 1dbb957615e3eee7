//! Arbitrary bytes as an xbstream (what `mariabackup --stream=xbstream` writes, or anything
//! piped to `coffer backup --xbstream -`), turned into image entries as coffer does: chunk
//! headers, sparse maps, CRCs, interleaved files in parts, paths. Then the image written from it
//! must read back. Nothing may panic, hang or over-allocate.
#![no_main]

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, Suite};
use coffer_image::{open_stream, read_stream, write_image, ImageParams, NoProgress, NullVisitor, ReadOptions};
use coffer_mysql::source::{Defaults, XbstreamSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let defaults = Defaults { uid: 0, gid: 0, uname: vec![], gname: vec![], mtime: 0 };
    let mut source = XbstreamSource::new(std::io::Cursor::new(data.to_vec()), defaults);
    let params = ImageParams::random(Suite::Aes256Gcm, Codec::None, 0, 4096, 1).unwrap();
    let key = MasterKey::from_bytes([7; 32]);
    let mut image = Vec::new();
    if write_image(&mut source, &mut image, &params, &[SlotSecret::Key(key.clone())], 1, &NoProgress, None).is_ok() {
        let mut input = &image[..];
        let opened = open_stream(&mut input, &[Unlock::Key(key)]).expect("our own image opens");
        read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: 1, skip_data: false })
            .expect("an image written from any accepted xbstream reads back");
    }
});
