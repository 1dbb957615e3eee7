//! Arbitrary bytes as an InnoDB tablespace: page 0 decides the page size and format, every page
//! is judged (decompressing page_compressed pages on the way), streaming and all at once.
//! Nothing may panic or allocate beyond a page per page.
#![no_main]

use coffer_innodb::{check_page, PageStream, Policy, Scratch, Space};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = match data.first().map(|b| b % 4) {
        Some(0) => Policy::StrictCrc32,
        Some(1) => Policy::Innodb,
        _ => Policy::Auto,
    };
    let mut stream = PageStream::new("fuzz".into(), policy, None);
    for (i, piece) in data.chunks(997).enumerate() {
        stream.write_at((i * 997) as u64, piece);
    }
    let _ = stream.finish(data.len() as u64 + 4096);
    if let Ok(space) = Space::from_page0(data) {
        let mut scratch = Scratch::default();
        for (i, page) in data.chunks_exact(space.physical_size as usize).enumerate() {
            let _ = check_page(&space, i as u64, page, policy, &mut scratch);
        }
    }
});
