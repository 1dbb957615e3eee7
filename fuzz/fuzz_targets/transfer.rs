//! What a transfer peer sends before any image byte (hello, the receiver's offer), the blocks of
//! a striped transfer (`--streams N`), and the receiver's journal, which a crash may leave cut or
//! damaged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(h) = coffer_net::wire::read_hello(&mut &rest[..]) {
                let mut out = vec![];
                coffer_net::wire::write_hello(&mut out, &h).unwrap();
                assert_eq!(out, rest[..out.len()], "hellos round-trip");
            }
        }
        1 => {
            if let Ok(o) = coffer_net::wire::read_offer(&mut &rest[..]) {
                let mut out = vec![];
                coffer_net::wire::write_offer(&mut out, &o).unwrap();
                // An all-zero image id reads as none, and writes back as zeros.
                assert_eq!(out, rest[..out.len()], "offers round-trip");
            }
        }
        2 => stripes(rest),
        _ => {
            if let Ok(state) = coffer_image::journal::parse(rest) {
                if let Some(p) = &state.point {
                    assert_eq!(p.records.len() as u64, p.at.entries);
                }
            }
        }
    }
});

/// `rest` as what N connections carry (N from its first byte; each connection's bytes but the
/// last's after a u16 LE length): the reader gives back exactly what a model of the protocol
/// accepts (block k on connection k mod N, in order, each connection ending with a block of
/// length 0, no block missing), and an error for anything else, without hanging.
fn stripes(rest: &[u8]) {
    let Some((&n, mut rest)) = rest.split_first() else { return };
    let n = usize::from(n % 4) + 1;
    let mut streams = Vec::new();
    for _ in 1..n {
        let len = match rest {
            [a, b, tail @ ..] => {
                rest = tail;
                usize::from(u16::from_le_bytes([*a, *b])).min(rest.len())
            }
            _ => 0,
        };
        let (this, tail) = rest.split_at(len);
        streams.push(this.to_vec());
        rest = tail;
    }
    streams.push(rest.to_vec());
    let expected = model(&streams);
    let mut reader = coffer_net::stripe::StripedReader::new(streams.into_iter().map(std::io::Cursor::new).collect());
    let mut got = Vec::new();
    let result = reader.read_to_end(&mut got);
    assert_eq!(reader.finish().unwrap().len(), n);
    match (result, expected) {
        (Ok(_), Some(want)) => assert_eq!(got, want, "the stream as the model reads it"),
        (Err(_), None) => {}
        (r, want) => panic!("the reader says {r:?}, the model {:?}", want.map(|w| w.len())),
    }
}

/// What a striped stream holds, if the connections keep to the protocol.
fn model(streams: &[Vec<u8>]) -> Option<Vec<u8>> {
    let n = streams.len() as u64;
    let mut blocks = std::collections::BTreeMap::new();
    for (i, s) in streams.iter().enumerate() {
        let (mut at, mut seq) = (0usize, i as u64);
        loop {
            let head = s.get(at..at + 12)?;
            let len = u32::from_le_bytes(head[8..].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            if len > coffer_net::stripe::BLOCK || u64::from_le_bytes(head[..8].try_into().unwrap()) != seq {
                return None;
            }
            blocks.insert(seq, s.get(at + 12..at + 12 + len)?);
            at += 12 + len;
            seq += n;
        }
    }
    // No block missing: 0, 1, ... up to the last.
    if blocks.keys().enumerate().any(|(k, seq)| k as u64 != *seq) {
        return None;
    }
    Some(blocks.into_values().flatten().copied().collect())
}
