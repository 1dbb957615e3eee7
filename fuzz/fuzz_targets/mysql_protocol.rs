//! What a MySQL/MariaDB server (or anything that answers on its port) sends coffer's
//! replication client: the handshake and binary log event headers; and the names of binary log
//! segments that anyone who can write to the bucket chooses. Nothing may panic.
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
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = coffer_mysql::meta::is_binlog_file_name(name);
    }
});
