//! `coffer validate` end to end: directories, single files, stdin, images; text and JSON;
//! exit codes 0, 5 (corrupt pages), 4 (damaged image), 3 (wrong key); and page checks during
//! `coffer backup`.

mod common;

use common::*;
use std::path::Path;

fn data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../coffer-innodb/tests/data").join(rel)
}

/// A small data directory made of real server-written tablespaces.
fn datadir(fx: &Fixture) -> std::path::PathBuf {
    let root = fx.path("datadir");
    std::fs::create_dir_all(root.join("sakila")).unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    for (src, dst) in [
        ("innodb_ruby/spec/data/sakila/8.4/sakila/inventory.ibd", "sakila/inventory.ibd"),
        ("innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd", "sakila/actor.ibd"),
        ("idb-utils/tests/fixtures/mysql9/mysql90_compressed.ibd", "app/compressed.ibd"),
        ("fae/mysql/fae_dummy/fae_users.ibd", "app/users.ibd"),
    ] {
        std::fs::copy(data(src), root.join(dst)).unwrap();
    }
    std::fs::write(root.join("sakila/inventory.frm"), b"not innodb").unwrap();
    std::fs::write(root.join("ib_logfile0"), vec![0u8; 4096]).unwrap();
    root
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn a_clean_directory_is_exit_0_with_every_file_accounted_for() {
    let fx = Fixture::new();
    let root = datadir(&fx);
    let (code, out, err) = run(&["validate", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ok           sakila/inventory.ibd  28 pages, crc32 (sakila.inventory)"), "{text}");
    assert!(text.contains("ok           sakila/actor.ibd  7 pages, innodb"), "{text}");
    assert!(text.contains("not checked  sakila/inventory.frm  not an InnoDB tablespace"), "{text}");
    assert!(text.contains("not checked  ib_logfile0  redo log"), "{text}");
    assert!(text.contains("coffer: validated 6 files (4 InnoDB, 2 not checked): 51 pages"), "{text}");
    let (code, out, _) = run(&["validate", root.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let doc = json(&out);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 6);
    for f in files {
        for key in ["path", "status", "pages", "algorithm", "corrupt_pages"] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
    }
    let zip = files.iter().find(|f| f["path"] == "app/compressed.ibd").unwrap();
    assert_eq!((zip["status"].as_str(), zip["pages"].as_u64()), (Some("ok"), Some(7)));
    assert_eq!(doc["summary"]["corrupt_pages"], 0);
    assert_eq!(doc["summary"]["pages"], 51);
}

#[test]
fn corrupt_pages_are_listed_the_way_dbas_grep_for_them_and_exit_5() {
    let fx = Fixture::new();
    let root = datadir(&fx);
    flip(&root.join("sakila/inventory.ibd"), 5 * 16384 + 1000);
    flip(&root.join("sakila/inventory.ibd"), 9 * 16384 + 16383);
    flip(&root.join("app/users.ibd"), 3 * 16384 + 77);
    let (code, out, err) = run(&["validate", root.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("ERROR: sakila/inventory.ibd is corrupt and has : 2 corrupt pages (sakila.inventory)"),
        "{text}"
    );
    assert!(text.contains("  page 5 at byte 81920: checksum mismatch: stored"), "{text}");
    assert!(text.contains("  page 9 at byte 147456: LSN mismatch"), "{text}");
    assert!(text.contains("ERROR: app/users.ibd is corrupt and has : 1 corrupt page"), "{text}");
    assert!(err.contains("3 corrupt InnoDB pages in 2 files"), "{err}");
    // Quiet: only the problems.
    let (code, out, _) = run(&["validate", root.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 5);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("ok ") || l.starts_with("not checked")), "{text}");
    assert!(text.contains("ERROR: app/users.ibd"), "{text}");
    // A cap on the listing, not on the count.
    let (_, out, _) = run(&["validate", root.to_str().unwrap(), "--json", "--max-corrupt-pages", "1"]);
    let doc = json(&out);
    let inv = doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "sakila/inventory.ibd").unwrap();
    assert_eq!(inv["corrupt_pages"].as_array().unwrap().len(), 1);
    assert_eq!(inv["corrupt_page_count"], 2);
    assert_eq!(inv["corrupt_pages"][0]["page"], 5);
    assert_eq!(inv["corrupt_pages"][0]["offset"], 81920);
    assert_eq!(inv["status"], "corrupt");
    assert_eq!(doc["summary"]["corrupt_pages"], 3);
}

#[test]
fn single_files_stdin_and_strict_algorithms() {
    let fx = Fixture::new();
    let actor = data("innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd");
    let actor = actor.to_str().unwrap();
    expect(0, &["validate", "--innodb", actor]);
    let err = expect(5, &["validate", "--innodb", actor, "--checksum-algorithm", "strict_crc32"]);
    assert!(err.contains("5 corrupt InnoDB pages"), "{err}");
    expect(0, &["validate", "--innodb", actor, "--checksum-algorithm", "strict_innodb"]);
    expect(2, &["validate", "--innodb", actor, "--checksum-algorithm", "adler"]);
    let bytes = std::fs::read(data("fae/mysql/fae_dummy/fae_text_areas.ibd")).unwrap();
    let (code, out, _) = run_with_stdin(&["validate", "--innodb", "-", "--json"], &bytes);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["files"][0]["pages"], 15);
    let mut bad = bytes.clone();
    bad[2 * 16384 + 100] ^= 1;
    let (code, out, _) = run_with_stdin(&["validate", "--innodb", "-", "--json"], &bad);
    assert_eq!(code, 5);
    assert_eq!(json(&out)["files"][0]["corrupt_pages"][0]["page"], 2);
    let missing = fx.s("missing.ibd");
    let (code, out, _) = run(&["validate", "--innodb", &missing, "--json"]);
    assert_eq!(code, 5, "an unreadable tablespace is reported, not skipped");
    assert!(json(&out)["files"][0]["corrupt_pages"][0]["reason"].as_str().unwrap().contains("cannot read"));
}

#[test]
fn inside_an_image_every_chunk_and_every_page_is_checked() {
    let fx = Fixture::new();
    let root = datadir(&fx);
    flip(&root.join("app/users.ibd"), 5 * 16384 + 300);
    // The backup warns about the corrupt page as it reads it...
    let (code, _, err) = run(&["backup", root.to_str().unwrap(), "-o", &fx.s("db.coffer"), "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: corrupt InnoDB page in app/users.ibd: page 5 at byte 81920"), "{err}");
    assert!(err.contains("1 corrupt pages in 1 files"), "{err}");
    // users.ibd (144 KiB) is packed with other small files: the page is still found, and on it.
    let (_, out, _) = run(&["list", &fx.s("db.coffer"), "--json", "--key-file", &fx.key()]);
    let doc = json(&out);
    let entries = doc["entries"].as_array().unwrap();
    let frame_of = |p: &str| entries.iter().find(|e| e["path"] == p).unwrap()["frame_offset"].clone();
    let sharing = entries.iter().filter(|e| e["frame_offset"] == frame_of("app/users.ibd")).count();
    assert!(sharing >= 3, "app/users.ibd shares its pack with {} entries", sharing - 1);
    assert_eq!(frame_of("app/users.ibd"), frame_of("sakila/actor.ibd"));
    // ...refuses the backup with --fail-on-corrupt...
    let err = expect(
        5,
        &[
            "backup",
            root.to_str().unwrap(),
            "-o",
            &fx.s("refused.coffer"),
            "--key-file",
            &fx.key(),
            "--fail-on-corrupt",
        ],
    );
    assert!(err.contains("app/users.ibd") && err.contains("--fail-on-corrupt"), "{err}");
    assert!(!fx.path("refused.coffer").exists());
    // ...and validation inside the image finds the same page, with paths inside the image.
    let (code, out, err) = run(&["validate", &fx.s("db.coffer"), "--key-file", &fx.key(), "--json"]);
    assert_eq!(code, 5, "{err}");
    let doc = json(&out);
    let users = doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "app/users.ibd").unwrap();
    assert_eq!(users["corrupt_pages"][0]["page"], 5);
    assert_eq!(doc["summary"]["pages"], 51);
    // From a pipe too.
    let image = std::fs::read(fx.path("db.coffer")).unwrap();
    let (code, _, _) = run_with_stdin(&["validate", "-", "--key-file", &fx.key()], &image);
    assert_eq!(code, 5);
    // A wrong key is exit 3; a damaged image is exit 4, after reporting what was checked.
    expect(3, &["validate", &fx.s("db.coffer"), "--key-file", &fx.s("other.key")]);
    let mut bad = image.clone();
    let n = bad.len();
    bad[n - 200] ^= 1;
    std::fs::write(fx.path("bad.coffer"), &bad).unwrap();
    let (code, out, err) = run(&["validate", &fx.s("bad.coffer"), "--key-file", &fx.key(), "--json"]);
    assert_eq!(code, 4, "{err}");
    assert!(json(&out)["summary"]["image_error"].as_str().is_some());
    // Pages are not checked with --no-validate.
    let (code, _, err) =
        run(&["backup", root.to_str().unwrap(), "-o", &fx.s("fast.coffer"), "--key-file", &fx.key(), "--no-validate"]);
    assert_eq!(code, 0);
    assert!(!err.contains("corrupt"), "{err}");
}

#[test]
fn backups_cut_inspected_files_on_page_boundaries() {
    // With a chunk size that is not a multiple of the page size, chunks of InnoDB files are
    // still cut on page boundaries, so the backup checks every page.
    let fx = Fixture::new();
    let root = datadir(&fx);
    flip(&root.join("sakila/inventory.ibd"), 20 * 16384 + 9000);
    let (code, _, err) = run(&[
        "backup",
        root.to_str().unwrap(),
        "-o",
        &fx.s("odd.coffer"),
        "--key-file",
        &fx.key(),
        "--chunk-size",
        "100000",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("page 20 at byte 327680"), "{err}");
    assert!(err.contains("checked 51 InnoDB pages in 4 files"), "{err}");
    expect(0, &["restore", &fx.s("odd.coffer"), "--to", &fx.s("out"), "--key-file", &fx.key()]);
    assert_eq!(
        std::fs::read(fx.path("out/sakila/inventory.ibd")).unwrap(),
        std::fs::read(root.join("sakila/inventory.ibd")).unwrap()
    );
}

/// The incremental backup MariaDB 10.11's mariabackup made (coffer-innodb/tests/data/coffer):
/// `.delta` + `.meta` per tablespace (full_crc32, classic crc32, ROW_FORMAT=COMPRESSED 4K, and
/// one with no page changed), and its checkpoints file.
fn incremental(fx: &Fixture) -> std::path::PathBuf {
    let root = fx.path("inc");
    let src = data("coffer/mariadb-10.11-incremental/inc1");
    for rel in [
        "lab/t.ibd.delta",
        "lab/t.ibd.meta",
        "lab/c.ibd.delta",
        "lab/c.ibd.meta",
        "lab/z.ibd.delta",
        "lab/z.ibd.meta",
        "mysql/gtid_slave_pos.ibd.delta",
        "mysql/gtid_slave_pos.ibd.meta",
        "xtrabackup_checkpoints",
    ] {
        std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), root.join(rel)).unwrap();
    }
    root
}

/// The lines every clean validation of `incremental` prints.
const DELTA_LINES: &[&str] = &[
    "ok           lab/t.ibd.delta  4 pages, full_crc32 (lab.t)",
    "ok           lab/c.ibd.delta  4 pages, crc32 (lab.c)",
    "ok           lab/z.ibd.delta  4 pages, crc32 (compressed page) (lab.z)",
    "ok           mysql/gtid_slave_pos.ibd.delta  0 pages, none found (mysql.gtid_slave_pos); no page changed since the base backup",
    "not checked  lab/t.ibd.meta  incremental delta metadata (read with its .delta)",
];

#[test]
fn pages_inside_incremental_deltas_are_validated_in_directories_backups_and_images() {
    let fx = Fixture::new();
    let root = incremental(&fx);
    let dir = root.to_str().unwrap();
    // A directory.
    let (code, out, err) = run(&["validate", dir]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8(out).unwrap();
    for line in DELTA_LINES {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    assert!(text.contains("coffer: validated 9 files (4 InnoDB, 5 not checked): 12 pages"), "{text}");
    // A backup of it checks the deltas' pages as it reads them...
    let img = fx.s("inc.coffer");
    let (code, _, err) = run(&["backup", dir, "-o", &img, "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("checked 12 InnoDB pages in 4 files"), "{err}");
    // ...and so does validating the image, where each delta comes before its .meta.
    let (code, out, err) = run(&["validate", &img, "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8(out).unwrap();
    for line in DELTA_LINES {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    let (_, out, _) = run(&["validate", &img, "--key-file", &fx.key(), "--json"]);
    let doc = json(&out);
    let t = doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "lab/t.ibd.delta").unwrap().clone();
    assert_eq!((t["status"].as_str(), t["pages"].as_u64()), (Some("ok"), Some(4)), "{t}");
    assert_eq!(doc["summary"]["pages"], 12);

    // One byte changed in page 2 of a delta: reported on that page, by the backup, by validate
    // of the directory and of the image.
    flip(&root.join("lab/c.ibd.delta"), 3 * 16384 + 500);
    let img = fx.s("bad.coffer");
    let (code, _, err) = run(&["backup", dir, "-o", &img, "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: corrupt InnoDB page in lab/c.ibd.delta: page 2 at byte 49152: checksum"), "{err}");
    for target in [dir, img.as_str()] {
        let (code, out, err) = run(&["validate", target, "--key-file", &fx.key()]);
        assert_eq!(code, 5, "{err}");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ERROR: lab/c.ibd.delta is corrupt and has : 1 corrupt page (lab.c)"), "{text}");
        assert!(text.contains("  page 2 at byte 49152: checksum mismatch"), "{text}");
        assert!(err.contains("1 corrupt InnoDB page in 1 file"), "{err}");
    }
    flip(&root.join("lab/c.ibd.delta"), 3 * 16384 + 500);

    // A delta cut short.
    let t = std::fs::read(root.join("lab/t.ibd.delta")).unwrap();
    std::fs::write(root.join("lab/t.ibd.delta"), &t[..3 * 16384 + 100]).unwrap();
    let (code, out, _) = run(&["validate", dir]);
    assert_eq!(code, 5);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("  page 2 at byte 49252: the delta ends 49252 bytes into the block at byte 0"), "{text}");
    std::fs::write(root.join("lab/t.ibd.delta"), &t).unwrap();

    // A .meta that disagrees with its delta: in the image it comes after the delta, which was
    // read with the page size it shows; the .meta is checked against it.
    std::fs::write(root.join("lab/t.ibd.meta"), "page_size = 8192\nzip_size = 0 \nspace_id = 5\n").unwrap();
    let img = fx.s("meta.coffer");
    expect(0, &["backup", dir, "-o", &img, "--key-file", &fx.key(), "--no-validate"]);
    let (code, out, _) = run(&["validate", &img, "--key-file", &fx.key()]);
    assert_eq!(code, 5);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ERROR: lab/t.ibd.delta is corrupt"), "{text}");
    assert!(text.contains("its .meta says 8192-byte pages, but the delta's pages are 16384 bytes"), "{text}");
    // Without a .meta at all, the delta's own page size is used, and said.
    std::fs::remove_file(root.join("lab/t.ibd.meta")).unwrap();
    let (code, out, _) = run(&["validate", dir]);
    assert_eq!(code, 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("lab/t.ibd.delta  4 pages, full_crc32 (lab.t); no .meta beside it"), "{text}");
}

/// An engine's xbstream holds each .meta before its delta: the delta is read with it.
#[test]
fn deltas_in_an_xbstream_are_read_with_the_meta_before_them() {
    use coffer_mysql::xbstream::{write_chunk, ChunkType};
    let fx = Fixture::new();
    let src = data("coffer/mariadb-10.11-incremental/inc1");
    let stream = |flip_at: Option<usize>| {
        let mut xb = Vec::new();
        for rel in ["lab/z.ibd.meta", "lab/t.ibd.meta", "lab/z.ibd.delta", "lab/t.ibd.delta", "xtrabackup_checkpoints"]
        {
            let mut bytes = std::fs::read(src.join(rel)).unwrap();
            if let (Some(at), "lab/z.ibd.delta") = (flip_at, rel) {
                bytes[at] ^= 0x40;
            }
            write_chunk(&mut xb, ChunkType::Payload, rel.as_bytes(), 0, &[], &bytes);
            write_chunk(&mut xb, ChunkType::Eof, rel.as_bytes(), 0, &[], &[]);
        }
        let info = b"tool_name = mariabackup\ntool_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB\n";
        write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_info", 0, &[], info);
        write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_info", 0, &[], &[]);
        xb
    };
    let img = fx.s("xb.coffer");
    let (code, _, err) =
        run_with_stdin(&["backup", "--xbstream", "-", "-o", &img, "--key-file", &fx.key()], &stream(None));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["validate", &img, "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ok           lab/z.ibd.delta  4 pages, crc32 (compressed page) (lab.z)"), "{text}");
    assert!(text.contains("ok           lab/t.ibd.delta  4 pages, full_crc32 (lab.t)"), "{text}");
    // Page 1 of the compressed delta (4K pages: its second page, at byte 8192).
    let img = fx.s("xb-bad.coffer");
    let (code, _, err) =
        run_with_stdin(&["backup", "--xbstream", "-", "-o", &img, "--key-file", &fx.key()], &stream(Some(8192 + 99)));
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&["validate", &img, "--key-file", &fx.key(), "--json"]);
    assert_eq!(code, 5);
    let doc = json(&out);
    let z = doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "lab/z.ibd.delta").unwrap().clone();
    assert_eq!(z["corrupt_pages"][0]["page"], 1, "{z}");
    assert_eq!(z["corrupt_pages"][0]["offset"], 8192, "{z}");
}

/// The doublewrite buffer of ibdata1 holds copies of other pages (their own page numbers): a
/// system tablespace named on its own (`--innodb`, or read from stdin) is read as one, its
/// TRX_SYS page telling where that buffer is, as a whole datadir is.
#[test]
fn a_system_tablespace_alone_skips_its_doublewrite_copies() {
    if !common::mariadb::available() {
        return;
    }
    let f = Fixture::new();
    let mut server = common::mariadb::Server::start(&f.path("server"), &[]);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(200)) ENGINE=InnoDB; \
         INSERT INTO d.t (v) SELECT REPEAT('x', 200) FROM information_schema.COLUMNS a, information_schema.COLUMNS b LIMIT 20000; SET GLOBAL innodb_max_dirty_pages_pct = 0;",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    server.stop();
    let ibdata1 = server.datadir.join("ibdata1");
    // The buffer (pages 64..192 of a 16K system tablespace) was used, or this proves nothing.
    let bytes = std::fs::read(&ibdata1).unwrap();
    let copies = (64..192).filter(|p| bytes[p * 16384..(p + 1) * 16384].iter().any(|b| *b != 0)).count();
    assert!(copies > 0, "the doublewrite buffer is empty");
    // Exit 0: no corrupt page (5 before the fix, for the 128 copies of a full buffer).
    expect(0, &["validate", server.datadir.to_str().unwrap()]);
    expect(0, &["validate", "--innodb", ibdata1.to_str().unwrap()]);
    let (code, _, piped) = run_with_stdin(&["validate", "--innodb", "-"], &bytes);
    assert_eq!(code, 0, "{piped}");
}
