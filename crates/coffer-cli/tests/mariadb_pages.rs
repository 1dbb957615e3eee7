//! coffer's page validation against tablespaces MariaDB writes here and now, in every shape a
//! MariaDB 10.11 instance makes (4K, 16K and 64K pages; full_crc32 and crc32 checksums;
//! ROW_FORMAT=COMPRESSED with every key block size; PAGE_COMPRESSED with every algorithm;
//! ENCRYPTED with file_key_management), compared with MariaDB's own `innochecksum`:
//! - clean files: no false alarm from coffer, and innochecksum agrees;
//! - files with corrupted pages: coffer finds exactly the corrupted pages (bar those nobody can
//!   check without the key), and every difference from innochecksum is explained.

mod common;

use common::mariadb::{self, Server};
use common::{coffer, Fixture};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Table {
    name: &'static str,
    options: &'static str,
    /// `innodb_compression_algorithm` while the table is created and written.
    algorithm: Option<&'static str>,
}

const fn t(name: &'static str, options: &'static str, algorithm: Option<&'static str>) -> Table {
    Table { name, options, algorithm }
}

const PLAIN: &[Table] = &[t("plain", "", None)];

const ZIP: &[Table] = &[
    t("zip1", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=1", None),
    t("zip2", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=2", None),
    t("zip4", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=4", None),
    t("zip8", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8", None),
    t("zip16", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=16", None),
];

const PAGE_COMPRESSED: &[Table] = &[
    t("pc_zlib", "PAGE_COMPRESSED=1", Some("zlib")),
    t("pc_lz4", "PAGE_COMPRESSED=1", Some("lz4")),
    t("pc_lzo", "PAGE_COMPRESSED=1", Some("lzo")),
    t("pc_lzma", "PAGE_COMPRESSED=1", Some("lzma")),
    t("pc_bzip2", "PAGE_COMPRESSED=1", Some("bzip2")),
    t("pc_snappy", "PAGE_COMPRESSED=1", Some("snappy")),
];

const ENCRYPTED: &[Table] = &[
    t("enc", "ENCRYPTED=YES ENCRYPTION_KEY_ID=1", None),
    t("enc_pc", "ENCRYPTED=YES ENCRYPTION_KEY_ID=1 PAGE_COMPRESSED=1", Some("zlib")),
];

const ENCRYPTED_ZIP: &[Table] =
    &[t("enc_zip", "ENCRYPTED=YES ENCRYPTION_KEY_ID=1 ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8", None)];

fn server_options(dir: &Path, page_size: &str, checksum: &str) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, "1;000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n").unwrap();
    let mut o = vec![
        format!("--innodb-page-size={page_size}"),
        format!("--innodb-checksum-algorithm={checksum}"),
        // Separate undo tablespaces (undo001, undo002), and a system tablespace in two files,
        // validated like the others (ibdata2 continues ibdata1's page numbers).
        "--innodb-undo-tablespaces=2".into(),
        "--innodb-data-file-path=ibdata1:12M;ibdata2:12M:autoextend".into(),
        "--plugin-load-add=file_key_management".into(),
        format!("--file-key-management-filename={}", keys.display()),
    ];
    for provider in ["provider_lz4", "provider_lzo", "provider_lzma", "provider_bzip2", "provider_snappy"] {
        o.push(format!("--plugin-load-add={provider}"));
    }
    o
}

/// Creates and fills the tables, then shuts down with every page flushed.
fn build(dir: &Path, page_size: &str, checksum: &str, tables: &[&Table]) -> PathBuf {
    let mut server = Server::start(dir, &server_options(dir, page_size, checksum));
    server.sql("CREATE DATABASE t");
    for table in tables {
        if let Some(a) = table.algorithm {
            server.sql(&format!("SET GLOBAL innodb_compression_algorithm = {a}"));
        }
        server.sql(&format!(
            "USE t; CREATE TABLE t.{n} (id INT AUTO_INCREMENT PRIMARY KEY, k INT, c VARCHAR(120), pad VARCHAR(120), KEY (k)) {o};
             INSERT INTO t.{n} (k, c, pad) SELECT seq % 997, CONCAT(MD5(seq), '-', REPEAT(CHAR(65 + seq % 26), 60)), REPEAT(MD5(seq DIV 7), 3) FROM seq_1_to_4000;
             DELETE FROM t.{n} WHERE id % 5 = 0;
             UPDATE t.{n} SET pad = REVERSE(pad) WHERE id % 3 = 0;
             FLUSH TABLES t.{n} FOR EXPORT; UNLOCK TABLES;",
            n = table.name,
            o = table.options
        ));
    }
    server.stop();
    server.datadir.clone()
}

#[derive(Debug)]
struct Verdicts {
    status: String,
    pages: u64,
    corrupt: BTreeSet<u64>,
    unverifiable: u64,
    decompressed: u64,
    valid: BTreeMap<String, u64>,
    format: String,
    skipped: u64,
}

/// `coffer validate DIR --json`, by path relative to DIR.
fn coffer_validate(dir: &Path) -> BTreeMap<String, Verdicts> {
    let out = coffer().args(["validate", "--json"]).arg(dir).output().unwrap();
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 5, "coffer validate exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let v = Verdicts {
                status: f["status"].as_str().unwrap().into(),
                pages: f["pages"].as_u64().unwrap(),
                corrupt: f["corrupt_pages"].as_array().unwrap().iter().map(|p| p["page"].as_u64().unwrap()).collect(),
                unverifiable: f["unverifiable_pages"].as_u64().unwrap(),
                decompressed: f["decompressed_pages"].as_u64().unwrap(),
                valid: f["valid_pages"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                    .collect(),
                format: f["format"].as_str().unwrap_or("").into(),
                skipped: f["skipped_pages"].as_u64().unwrap(),
            };
            (f["path"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// `innochecksum -a 1000000 FILE`: (exit code, pages it reports invalid).
fn innochecksum(file: &Path) -> (i32, BTreeSet<u64>) {
    let out = Command::new(mariadb::which("innochecksum").unwrap())
        .arg("--allow-mismatches=1000000")
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pages = stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Fail: page::").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok())
        })
        .collect();
    (out.status.code().unwrap_or(-1), pages)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// (logical, physical) page size from page 0's flags.
fn sizes(file: &[u8]) -> (usize, usize) {
    let flags = be32(file, 54);
    if flags & 0x10 != 0 {
        let s = 512 << (flags & 0xF);
        return (s, s);
    }
    let logical = match (flags >> 6) & 0xF {
        0 => 16384,
        s => 512 << s,
    };
    let zip = (flags >> 1) & 0xF;
    (logical, if zip == 0 { logical } else { 512 << zip })
}

/// Whether the extent descriptor marks the page free (MariaDB's innochecksum skips those).
fn is_free(file: &[u8], logical: usize, physical: usize, page: usize) -> bool {
    let extent = if logical <= 16384 { (1 << 20) / logical } else { 64 };
    let entry = 24 + (2 * extent).div_ceil(8);
    let xdes_page = page - page % physical;
    let idx = (page % physical) / extent;
    let at = xdes_page * physical + 150 + entry * idx;
    if at + entry > file.len() {
        return true;
    }
    let state = be32(file, at + 20);
    let bit = (page % extent) * 2;
    state == 1 || state == 0 || file[at + 24 + bit / 8] & (1 << (bit % 8)) != 0
}

/// Offset to damage in a page: inside whatever its checksum covers (for compressed pages,
/// inside the compressed data; bytes after it are padding no check covers, by design).
fn damage_offset(page: &[u8], full_crc32: bool) -> usize {
    let t = be16(page, 24);
    if full_crc32 && t & 0x8000 != 0 {
        return (usize::from(t & 0x7FFF) * 256) / 2;
    }
    if t == 34354 {
        return 40 + usize::from(be16(page, 38)) / 2;
    }
    page.len() / 2 + 1
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Checks one instance: clean files, then corrupted copies.
fn check_instance(name: &str, page_size: &str, checksum: &str, tables: &[&Table]) {
    if !mariadb::available() || mariadb::which("innochecksum").is_none() {
        return;
    }
    let fx = Fixture::new();
    let datadir = build(&fx.path(name), page_size, checksum, tables);
    let full_crc32 = checksum == "full_crc32";

    // 1. Clean: no false alarm anywhere in the datadir, and innochecksum agrees.
    let clean = coffer_validate(&datadir);
    for table in tables {
        let rel = format!("t/{}.ibd", table.name);
        if let Some(v) = clean.get(&rel) {
            eprintln!(
                "{name} {rel}: {} pages, {}, valid {:?}, {} decompressed, {} unverifiable",
                v.pages, v.format, v.valid, v.decompressed, v.unverifiable
            );
        }
    }
    for (path, v) in &clean {
        assert!(v.corrupt.is_empty(), "{name}: false alarm in clean {path}: {v:?}");
        assert_ne!(v.status, "corrupt", "{name}: {path}");
    }
    for table in tables {
        let rel = format!("t/{}.ibd", table.name);
        let v = clean.get(&rel).unwrap_or_else(|| panic!("{name}: {rel} not validated"));
        assert!(v.pages > 4, "{name}: {rel} has only {} pages", v.pages);
        let (code, pages) = innochecksum(&datadir.join(&rel));
        assert!(code == 0 && pages.is_empty(), "{name}: innochecksum says clean {rel} is corrupt: {pages:?}");
        // What coffer verified, by kind of table.
        if table.options.contains("PAGE_COMPRESSED") && !table.options.contains("ENCRYPTED") && !full_crc32 {
            assert!(v.decompressed > 0, "{name}: {rel}: no page_compressed page was decompressed and checked: {v:?}");
        }
        if table.options.contains("ENCRYPTED") && !table.options.contains("PAGE_COMPRESSED") && !full_crc32 {
            let encrypted = v.valid.iter().filter(|(k, _)| k.contains("encrypted")).map(|(_, n)| n).sum::<u64>();
            assert!(encrypted > 0, "{name}: {rel}: no page verified over its ciphertext: {v:?}");
        }
        if table.options.contains("ENCRYPTED") && table.options.contains("PAGE_COMPRESSED") && !full_crc32 {
            // Compressed then encrypted, with no checksum outside: nobody can check these pages.
            assert!(v.unverifiable > 0, "{name}: {rel}: {v:?}");
        }
        if full_crc32 && !table.options.contains("ROW_FORMAT") {
            assert!(v.valid.contains_key("full_crc32"), "{name}: {rel}: {v:?}");
            assert!(v.format.contains("full_crc32"), "{name}: {rel}: {}", v.format);
        }
    }
    // The system tablespace, with its doublewrite buffer recognised (its pages are copies of
    // other pages, skipped as the servers skip them), and the system tables.
    let ibdata = &clean["ibdata1"];
    assert_eq!(ibdata.status, "ok", "{name}: {ibdata:?}");
    assert!(ibdata.skipped > 0, "{name}: no doublewrite area found in ibdata1: {ibdata:?}");
    for system in [
        "undo001",
        "undo002",
        "mysql/innodb_table_stats.ibd",
        "mysql/innodb_index_stats.ibd",
        "mysql/gtid_slave_pos.ibd",
    ] {
        assert_eq!(clean[system].status, "ok", "{name}: {system}: {:?}", clean[system]);
    }
    assert!(clean.iter().any(|(p, v)| p.starts_with("ib_logfile") && v.status == "not_checked"), "{name}: redo log");
    if let Some(tmp) = clean.get("ibtmp1") {
        assert_eq!(tmp.status, "not_checked", "{name}: the temporary tablespace is rebuilt at start");
    }

    // The same verdicts from inside an image: back the datadir up (its pages checked as they
    // are read, page_compressed files sparse), then validate the image without restoring it.
    let image = fx.path(&format!("{name}.coffer"));
    let out = coffer()
        .arg("backup")
        .arg(&datadir)
        .arg("-o")
        .arg(&image)
        .args(["--key-file", &fx.key(), "--fail-on-corrupt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: backup: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("all valid"),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = coffer().arg("validate").arg(&image).args(["--key-file", &fx.key(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{name}: validate image: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in doc["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let on_disk = &clean[path];
        assert_eq!(
            (f["status"].as_str().unwrap(), f["pages"].as_u64().unwrap()),
            (on_disk.status.as_str(), on_disk.pages),
            "{name}: {path} in the image"
        );
        assert_eq!(f["unverifiable_pages"].as_u64().unwrap(), on_disk.unverifiable, "{name}: {path}");
    }

    // 2. Corrupted copies: three random pages of each table (never page 0, without which
    //    innochecksum gives up on the whole file).
    let scratch = fx.path(&format!("{name}-corrupt/t"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut damaged: BTreeMap<String, (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
    for table in tables {
        let rel = format!("t/{}.ibd", table.name);
        let mut bytes = std::fs::read(datadir.join(&rel)).unwrap();
        let (logical, physical) = sizes(&bytes);
        let pages = (bytes.len() / physical) as u64;
        // Mostly pages with data (files are preallocated: most pages are empty), and one empty.
        let written: Vec<u64> = (1..pages)
            .filter(|&p| bytes[p as usize * physical..(p as usize + 1) * physical].iter().any(|&b| b != 0))
            .collect();
        let empty: Vec<u64> = (1..pages).filter(|p| !written.contains(p)).collect();
        let mut picks: Vec<u64> = (0..3).map(|_| written[rng.next(written.len() as u64) as usize]).collect();
        if !empty.is_empty() {
            picks.push(empty[rng.next(empty.len() as u64) as usize]);
        }
        let mut chosen = BTreeSet::new();
        let mut free = BTreeSet::new();
        for p in picks {
            if !chosen.insert(p) {
                continue;
            }
            let page = &mut bytes[p as usize * physical..(p as usize + 1) * physical];
            let at = damage_offset(page, full_crc32);
            page[at] ^= 0x5A;
            if is_free(&std::fs::read(datadir.join(&rel)).unwrap(), logical, physical, p as usize) {
                free.insert(p);
            }
        }
        std::fs::write(scratch.join(format!("{}.ibd", table.name)), &bytes).unwrap();
        damaged.insert(rel, (chosen, free));
    }
    let found = coffer_validate(scratch.parent().unwrap());
    let (mut missed_compressed, mut missed_free, mut agreed) = (0, 0, 0);
    for (rel, (chosen, free)) in &damaged {
        let v = &found[rel];
        let original = std::fs::read(datadir.join(rel)).unwrap();
        let (_, physical) = sizes(&original);
        let page_type = |p: u64| be16(&original, p as usize * physical + 24);
        // Pages compressed and then encrypted (type 37401) carry no checksum anyone can check
        // without the key: coffer counts them as not verifiable, innochecksum skips them.
        let checkable: BTreeSet<u64> = chosen.iter().copied().filter(|&p| page_type(p) != 37401).collect();
        assert_eq!(v.corrupt, checkable, "{name}: {rel}: coffer found {:?}, pages damaged {chosen:?}", v.corrupt);
        let (_, theirs) = innochecksum(&scratch.join(rel.strip_prefix("t/").unwrap()));
        assert!(
            theirs.is_subset(&v.corrupt),
            "{name}: {rel}: innochecksum found {theirs:?}, which coffer missed ({:?})",
            v.corrupt
        );
        agreed += theirs.len();
        for p in v.corrupt.difference(&theirs) {
            // Every page innochecksum misses must be one it skips by design:
            // - page_compressed pages of non-full_crc32 spaces (type 34354), which it does not
            //   decompress, so their damage goes unseen (coffer decompresses and checks them);
            // - pages its extent descriptor marks free, which MariaDB 10.11's innochecksum never
            //   verifies, though a damaged free page is still damage on disk.
            if page_type(*p) == 34354 {
                missed_compressed += 1;
            } else if free.contains(p) {
                missed_free += 1;
            } else {
                panic!("{name}: {rel}: innochecksum missed page {p} (type {}), unexplained", page_type(*p));
            }
        }
    }
    eprintln!(
        "{name}: damaged pages found by both: {agreed}; missed by innochecksum: {missed_compressed} page_compressed, {missed_free} free"
    );
    let classic_compressed = !full_crc32 && tables.iter().any(|t| t.options == "PAGE_COMPRESSED=1");
    if classic_compressed {
        assert!(missed_compressed > 0, "{name}: the page_compressed blind spot of innochecksum was not exercised");
    }
}

#[test]
fn mariadb_16k_full_crc32() {
    let tables: Vec<&Table> =
        PLAIN.iter().chain(ZIP).chain(PAGE_COMPRESSED).chain(ENCRYPTED).chain(ENCRYPTED_ZIP).collect();
    check_instance("16k-full_crc32", "16k", "full_crc32", &tables);
}

#[test]
fn mariadb_16k_crc32() {
    let tables: Vec<&Table> =
        PLAIN.iter().chain(ZIP).chain(PAGE_COMPRESSED).chain(ENCRYPTED).chain(ENCRYPTED_ZIP).collect();
    check_instance("16k-crc32", "16k", "crc32", &tables);
}

#[test]
fn mariadb_4k_pages() {
    let tables = [
        t("plain", "", None),
        t("zip1", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=1", None),
        t("zip2", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=2", None),
        t("zip4", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=4", None),
        t("pc_lz4", "PAGE_COMPRESSED=1", Some("lz4")),
        t("enc", "ENCRYPTED=YES ENCRYPTION_KEY_ID=1", None),
    ];
    let refs: Vec<&Table> = tables.iter().collect();
    check_instance("4k-full_crc32", "4k", "full_crc32", &refs);
    check_instance("4k-crc32", "4k", "crc32", &refs);
}

#[test]
fn mariadb_64k_pages() {
    let tables = [
        t("plain", "", None),
        t("pc_zlib", "PAGE_COMPRESSED=1", Some("zlib")),
        t("enc", "ENCRYPTED=YES ENCRYPTION_KEY_ID=1", None),
    ];
    let refs: Vec<&Table> = tables.iter().collect();
    check_instance("64k-full_crc32", "64k", "full_crc32", &refs);
    check_instance("64k-crc32", "64k", "crc32", &refs);
}
