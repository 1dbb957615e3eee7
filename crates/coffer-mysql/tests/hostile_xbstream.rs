//! Issue 13, class search for item 6: xbstreams that must be refused or read without a crash,
//! whatever their shape.

use coffer_mysql::xbstream::{write_chunk, ChunkType, XbReader, FLAG_IGNORABLE};

/// A chunk of a type no reader knows, marked ignorable: skipped.
fn ignorable(out: &mut Vec<u8>) {
    let start = out.len();
    write_chunk(out, ChunkType::Payload, b"x", 0, &[], b"");
    out[start + 8] = FLAG_IGNORABLE;
    out[start + 9] = b'Z';
}

#[test]
fn a_long_run_of_ignorable_chunks_is_skipped_without_recursion() {
    // Each skipped chunk used to cost a stack frame (next_head called itself): 200,000 of them
    // (7 MB of stream) overflowed the stack of the thread reading it.
    let mut xb = Vec::new();
    for _ in 0..200_000 {
        ignorable(&mut xb);
    }
    write_chunk(&mut xb, ChunkType::Payload, b"a", 0, &[], b"data");
    // A small stack, as the pipeline's threads have.
    let head = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let mut r = XbReader::new(&xb[..]);
            r.next_head().map(|h| h.map(|h| h.path))
        })
        .unwrap()
        .join()
        .expect("the reader thread survives");
    assert_eq!(head.unwrap(), Some(b"a".to_vec()));
}
