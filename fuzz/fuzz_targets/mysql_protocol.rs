//! What a MySQL/MariaDB server (or anything that answers on its port) sends coffer's
//! replication client: the handshake and binary log event headers; and the names of binary log
//! segments that anyone who can write to the bucket chooses; a segment's events as recovery
//! walks them. Nothing may panic.
#![no_main]

use coffer_mysql::client::{EventHeader, Handshake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Handshake::parse(data) {
        assert!(h.scramble.len() <= data.len());
        let _ = coffer_mysql::client::native_password(b"pw", &h.scramble);
    }
    if let Ok(e) = EventHeader::parse(data) {
        assert_eq!(e.size as usize, data.len());
    }
    // A segment's events, walked as point-in-time recovery walks them.
    if let Ok(w) = coffer_mysql::events::walk("binlog.000001", 4, data) {
        assert!(w.events as usize <= data.len() / 19 && w.transactions <= w.events);
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = coffer_mysql::meta::is_binlog_file_name(name);
    }
});
