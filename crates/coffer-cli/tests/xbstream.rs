//! `coffer backup --xbstream`: a stream whose files interleave, stored as files in parts, seen
//! whole by every command (list, extract, restore, validate, info).

mod common;

use coffer_mysql::xbstream::{write_chunk, ChunkType};
use common::*;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

/// ib_logfile0 in three runs around two other files, then the engine's info file.
fn stream() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let log = bytes(3 << 20, 1);
    let data = bytes(2 << 20, 2);
    let mut xb = Vec::new();
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 0, &[], &log[..1 << 20]);
    write_chunk(&mut xb, ChunkType::Payload, b"db/t1.frm", 0, &[], b"frm");
    write_chunk(&mut xb, ChunkType::Eof, b"db/t1.frm", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"db/t1.ibd", 0, &[], &data[..1 << 20]);
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 1 << 20, &[], &log[1 << 20..2 << 20]);
    write_chunk(&mut xb, ChunkType::Payload, b"db/t1.ibd", 1 << 20, &[], &data[1 << 20..]);
    write_chunk(&mut xb, ChunkType::Eof, b"db/t1.ibd", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 2 << 20, &[], &log[2 << 20..]);
    write_chunk(&mut xb, ChunkType::Eof, b"ib_logfile0", 0, &[], &[]);
    let info = b"tool_name = mariabackup\ntool_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB-log\n";
    write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_info", 0, &[], info);
    write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_info", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_binlog_info", 0, &[], b"binlog.000002\t4567\t0-1-99\n");
    write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_binlog_info", 0, &[], &[]);
    (xb, log, data)
}

#[test]
fn files_in_parts_are_whole_to_every_command() {
    let fx = Fixture::new();
    let (xb, log, data) = stream();
    let img = fx.s("x.coffer");
    let (code, _, err) = run_with_stdin(
        &["backup", "--xbstream", "-", "-o", &img, "--key-file", &fx.key(), "--chunk-size", "256K"],
        &xb,
    );
    assert_eq!(code, 0, "{err}");

    // list: each file once, at its whole size.
    let (_, out, _) = run(&["list", &img, "--long", "--key-file", &fx.key()]);
    let listing = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = listing.lines().filter(|l| l.ends_with(" ib_logfile0")).collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(lines[0].contains(&(3u64 << 20).to_string()), "{listing}");
    assert!(listing.contains("coffer-backup.json"));
    // The small files are packed as they arrive, even between the parts of a paused file.
    let (_, out, _) = run(&["list", &img, "--json", "--key-file", &fx.key()]);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let entry = |p: &str| doc["entries"].as_array().unwrap().iter().find(|e| e["path"] == p).unwrap().clone();
    assert_eq!(entry("db/t1.frm")["chunks"], 0, "packed");
    assert_eq!(entry("xtrabackup_info")["frame_offset"], entry("xtrabackup_binlog_info")["frame_offset"]);
    assert_ne!(entry("db/t1.ibd")["chunks"], 0, "2 MiB: chunks of its own");

    // extract to stdout and to a directory, restore, verify, validate.
    let (code, out, err) = run(&["extract", &img, "ib_logfile0", "--stdout", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, log);
    expect(0, &["extract", &img, "db", "ib_logfile0", "--to", &fx.s("ex"), "--key-file", &fx.key()]);
    assert_eq!(std::fs::read(fx.path("ex/ib_logfile0")).unwrap(), log);
    assert_eq!(std::fs::read(fx.path("ex/db/t1.ibd")).unwrap(), data);
    expect(0, &["restore", &img, "--to", &fx.s("r"), "--key-file", &fx.key()]);
    assert_eq!(std::fs::read(fx.path("r/ib_logfile0")).unwrap(), log);
    assert_eq!(std::fs::read(fx.path("r/db/t1.ibd")).unwrap(), data);
    assert_eq!(std::fs::read(fx.path("r/db/t1.frm")).unwrap(), b"frm");
    expect(0, &["verify", &img, "--key-file", &fx.key()]);
    // t1.ibd holds no InnoDB pages: validate takes it for a tablespace, and refuses it.
    let (code, out, err) = run(&["validate", &img, "--json", "--key-file", &fx.key()]);
    assert_eq!(code, 5, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let t1 = v["files"].as_array().unwrap().iter().find(|f| f["path"] == "db/t1.ibd").unwrap();
    assert_eq!(t1["status"], "corrupt", "{v}");
    assert_eq!(v["summary"]["bytes"], 2 << 20, "both parts of t1.ibd were read: {v}");

    // info: the description from the engine's files.
    let (_, out, _) = run(&["info", &img, "--json", "--key-file", &fx.key()]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["backup"]["source"], "xbstream");
    assert_eq!(v["backup"]["binlog"]["position"], 4567);
    assert_eq!(v["files"], 6, "{v}");
    let (_, out, _) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
    assert!(String::from_utf8(out).unwrap().contains("MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=4567"));

    // From stdin, info reads the whole image.
    let (code, out, err) =
        run_with_stdin(&["info", "-", "--key-file", &fx.key(), "--json"], &std::fs::read(&img).unwrap());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["backup"]["binlog"]["gtid"], "0-1-99");
}

#[test]
fn an_xbstream_without_the_engines_last_file_is_refused() {
    let fx = Fixture::new();
    let mut xb = Vec::new();
    write_chunk(&mut xb, ChunkType::Payload, b"ibdata1", 0, &[], &[0; 1000]);
    write_chunk(&mut xb, ChunkType::Eof, b"ibdata1", 0, &[], &[]);
    let (code, _, err) =
        run_with_stdin(&["backup", "--xbstream", "-", "-o", &fx.s("x.coffer"), "--key-file", &fx.key()], &xb);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("incomplete") && err.lines().count() == 1, "{err}");
    assert!(!fx.path("x.coffer").exists());
    let (code, _, err) = run_with_stdin(
        &["backup", "--xbstream", "-", "-o", &fx.s("x.coffer"), "--key-file", &fx.key()],
        b"not an xbstream at all",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an xbstream"), "{err}");
}
