//! What a transfer peer sends before any image byte (hello, the receiver's offer) and the
//! receiver's journal, which a crash may leave cut or damaged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
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
        _ => {
            if let Ok(state) = coffer_image::journal::parse(rest) {
                if let Some(p) = &state.point {
                    assert_eq!(p.records.len() as u64, p.at.entries);
                }
            }
        }
    }
});
