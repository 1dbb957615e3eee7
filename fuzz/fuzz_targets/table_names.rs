//! Names and events a single-table restore reads from hostile places: an image's entry paths
//! (which file is whose table), the names a user gives, and the binary log events `binlog show`
//! reads (table maps, row events' table ids, statements).
#![no_main]

use coffer_mysql::events::{self, Event};
use coffer_mysql::tables::{self, Selection};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            // An entry path: whatever it names decodes to a name that encodes back to its file.
            if let Some(f) = tables::table_file(rest) {
                assert!(!f.table.db.is_empty() && !f.table.table.is_empty());
                assert!(!f.table.table.chars().any(char::is_control), "no control character in a name");
                assert_eq!(tables::decode(&tables::encode(&f.table.table)).as_deref(), Some(f.table.table.as_str()));
                let chosen: BTreeSet<_> = [f.table.clone()].into();
                let _ = tables::needed_for(rest, &chosen);
            }
            let _ = tables::held(std::iter::once((rest, 1u64)));
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(s) = text.parse::<Selection>() {
                for (db, table) in &s.patterns {
                    assert!(!db.is_empty() && table.as_ref().is_none_or(|t| !t.is_empty()));
                    assert!(!tables::SYSTEM_SCHEMAS.iter().any(|m| m.eq_ignore_ascii_case(db)));
                }
            }
            let _ = tables::parse_rename(&text);
        }
        _ => {
            // Events: the readers take any bytes as an event of any type.
            if let Ok(list) = events::events("binlog.000001", 4, rest) {
                for e in &list {
                    look(e);
                }
            }
            if rest.len() >= 19 {
                if let Ok(header) = coffer_mysql::client::EventHeader::parse(rest) {
                    look(&Event { start: 4, header, bytes: rest });
                }
            }
        }
    }
});

fn look(e: &Event) {
    let _ = events::body(e);
    let id_len = events::table_id_len(e);
    assert!(id_len == 4 || id_len == 6);
    if let Some((_, db, table)) = events::table_map_of(e, id_len) {
        assert!(db.len() <= e.bytes.len() && table.len() <= e.bytes.len());
    }
    let _ = events::rows_table_id(e, id_len);
    if let Some((db, text)) = events::query_of(e) {
        assert!(db.len() + text.len() <= e.bytes.len());
    }
}
