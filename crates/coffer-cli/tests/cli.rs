//! End-to-end tests of the `coffer` binary: round trips, streaming, and every failure with its
//! documented exit code.

mod common;

use coffer_format::EntryKind;
use common::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A tree with every shape the issue names, for chunks of 4 KiB.
fn odd_tree(root: &Path) {
    let d = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    let w = |p: &str, data: &[u8]| std::fs::write(root.join(p), data).unwrap();
    d("db/nested");
    w("empty", b"");
    w("one_byte", b"x");
    w("db/exactly_one_chunk", &[1u8; 4096]);
    w("db/exactly_two_chunks", &[2u8; 8192]);
    let many: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 253) as u8).collect();
    w("db/many_chunks", &many);
    w("with space", b"s");
    w("new\nline", b"n");
    let long_name = "L".repeat(255);
    w(&long_name, b"long");
    let mut deep = String::from("deep");
    for i in 0..40 {
        deep.push_str(&format!("/level{i}"));
    }
    d(&deep);
    w(&format!("{deep}/bottom"), b"bottom");
    // A name that is not UTF-8.
    let raw = root.join(std::ffi::OsStr::from_bytes(b"bytes\xff\xfe"));
    std::fs::write(&raw, b"raw").unwrap();
    std::os::unix::fs::symlink("../one_byte", root.join("db/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("db/many_chunks"), root.join("hardlink")).unwrap();
    std::fs::set_permissions(root.join("db/exactly_one_chunk"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(root.join("one_byte"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(root.join("db/nested"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let f = std::fs::File::options().write(true).open(root.join("with space")).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)).unwrap();
}

fn backup_tree(fx: &Fixture, extra: &[&str]) -> String {
    odd_tree(&fx.path("src"));
    let mut args = ["backup", &fx.s("src"), "-o", &fx.s("img.coffer"), "--key-file", &fx.key()]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    expect(0, &refs);
    fx.s("img.coffer")
}

#[test]
fn round_trip_keeps_names_modes_times_and_links() {
    for extra in [
        &["--chunk-size", "4K"][..],
        &["--chunk-size", "4K", "--compress", "lz4", "-j", "1"],
        &["--compress", "none", "--cipher", "chacha20-poly1305"],
    ] {
        let fx = Fixture::new();
        let img = backup_tree(&fx, extra);
        expect(0, &["restore", &img, "--to", &fx.s("out"), "--key-file", &fx.key()]);
        assert_eq!(snapshot(&fx.path("out")), snapshot(&fx.path("src")), "{extra:?}");
        assert_eq!(inode(&fx.path("out/hardlink")), inode(&fx.path("out/db/many_chunks")), "hard link kept");
        assert_eq!(inode(&fx.path("out/hardlink")).1, 2);
        assert!(!fx.path("out/.coffer-restore-incomplete").exists());
        expect(0, &["verify", &img, "--key-file", &fx.key()]);
    }
}

/// `--json` on backup and restore: one object on stdout with what the human line says.
#[test]
fn backup_and_restore_summarize_as_json() {
    let fx = Fixture::new();
    odd_tree(&fx.path("src"));
    let key = fx.key();
    let (code, out, err) = run(&["backup", &fx.s("src"), "-o", &fx.s("img.coffer"), "--key-file", &key, "--json"]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let logical = b["logical_bytes"].as_u64().unwrap();
    assert!(b["files"].as_u64().unwrap() > 3 && logical > 0, "{b}");
    assert_eq!(b["image_bytes"].as_u64().unwrap(), std::fs::metadata(fx.path("img.coffer")).unwrap().len());
    assert_eq!(b["innodb"]["corrupt_pages"], 0);
    let (code, out, err) = run(&["restore", &fx.s("img.coffer"), "--to", &fx.s("out"), "--key-file", &key, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((r["files"].clone(), r["logical_bytes"].as_u64()), (b["files"].clone(), Some(logical)), "{r}");
    assert_eq!(r["synced"], true);
    // stdout holds the image with -o -: no room for JSON.
    let (code, _, err) = run(&["backup", &fx.s("src"), "-o", "-", "--key-file", &key, "--json"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn streams_through_stdin_and_stdout() {
    let fx = Fixture::new();
    odd_tree(&fx.path("src"));
    let (code, image, err) = run(&["backup", &fx.s("src"), "-o", "-", "--key-file", &fx.key(), "--chunk-size", "4K"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_with_stdin(&["restore", "-", "--to", &fx.s("out"), "--key-file", &fx.key()], &image);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(&fx.path("out")), snapshot(&fx.path("src")));
    // A dump piped in, named, and piped back out.
    let dump: Vec<u8> =
        (0..3_000_000u32).flat_map(|i| format!("INSERT INTO t VALUES ({i});\n").into_bytes()).take(5_000_000).collect();
    let (code, image, err) =
        run_with_stdin(&["backup", "-", "--name", "dump.sql", "-o", "-", "--key-file", &fx.key()], &dump);
    assert_eq!(code, 0, "{err}");
    assert!(image.len() < dump.len() / 4, "compressed");
    std::fs::write(fx.path("dump.coffer"), &image).unwrap();
    let (code, out, err) = run(&["extract", &fx.s("dump.coffer"), "dump.sql", "--stdout", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    assert!(out == dump);
    let (code, out, _) = run_with_stdin(&["extract", "-", "dump.sql", "--stdout", "--key-file", &fx.key()], &image);
    assert_eq!(code, 0);
    assert!(out == dump);
    let (code, listing, _) = run_with_stdin(&["list", "-", "--key-file", &fx.key()], &image);
    assert_eq!((code, listing), (0, b"dump.sql\n".to_vec()));
}

#[test]
fn extract_reads_single_entries_and_directories() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K"]);
    expect(0, &["extract", &img, "db", "hardlink", "--to", &fx.s("x"), "--key-file", &fx.key()]);
    assert_eq!(
        std::fs::read(fx.path("x/db/many_chunks")).unwrap(),
        std::fs::read(fx.path("src/db/many_chunks")).unwrap()
    );
    assert_eq!(std::fs::read(fx.path("x/hardlink")).unwrap(), std::fs::read(fx.path("src/hardlink")).unwrap());
    assert!(fx.path("x/db/nested").is_dir());
    assert!(!fx.path("x/one_byte").exists());
    // Existing files are kept unless --force.
    let err = expect(1, &["extract", &img, "db/link", "--to", &fx.s("x"), "--key-file", &fx.key()]);
    assert!(err.contains("--force"), "{err}");
    expect(0, &["extract", &img, "db/link", "--to", &fx.s("x"), "--key-file", &fx.key(), "--force"]);
    let err = expect(1, &["extract", &img, "no/such/file", "--to", &fx.s("y"), "--key-file", &fx.key()]);
    assert!(err.contains("not in the image"), "{err}");
    expect(2, &["extract", &img, "db", "--stdout", "--key-file", &fx.key()]);
}

#[test]
fn list_json_describes_every_entry() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K"]);
    let (code, out, _) = run(&["list", &img, "--json", "--key-file", &fx.key()]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["image"]["cipher"], "aes-256-gcm");
    assert_eq!(doc["image"]["chunk_size"], 4096);
    let entries = doc["entries"].as_array().unwrap();
    let many = entries.iter().find(|e| e["path"] == "db/many_chunks").unwrap();
    assert_eq!(many["size"], 100_000);
    assert_eq!(many["chunks"], 25);
    let raw = entries.iter().find(|e| e.get("path_hex").is_some()).unwrap();
    assert_eq!(raw["path_hex"], coffer_crypto::hex(b"bytes\xff\xfe"));
    assert_eq!(entries.iter().find(|e| e["path"] == "hardlink").unwrap()["type"], EntryKind::HardLink.name());
    let (_, long, _) = run(&["list", "-l", &img, "--key-file", &fx.key()]);
    let long = String::from_utf8(long).unwrap();
    assert!(long.contains("-rwsr-xr-x"), "{long}");
    assert!(long.contains("new\\nline"), "{long}");
}

#[test]
fn wrong_key_is_exit_3_and_writes_nothing() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &[]);
    for cmd in [
        &["restore", &img, "--to", &fx.s("out")][..],
        &["verify", &img],
        &["list", &img],
        &["extract", &img, "db", "--to", &fx.s("out")],
    ] {
        let mut args: Vec<&str> = cmd.to_vec();
        let other = fx.s("other.key");
        args.extend(["--key-file", &other]);
        let err = expect(3, &args);
        assert!(err.contains("wrong key"), "{err}");
        assert!(!fx.path("out").exists(), "{cmd:?} created its target");
    }
    // From a pipe too, before anything is written.
    let image = std::fs::read(&img).unwrap();
    let (code, _, _) =
        run_with_stdin(&["restore", "-", "--to", &fx.s("out"), "--key-file", &fx.s("other.key")], &image);
    assert_eq!(code, 3);
    assert!(!fx.path("out").exists());
}

#[test]
fn more_than_one_key_opens_an_image() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--key-file", &Fixture::new().s("other.key")]);
    expect(0, &["verify", &img, "--key-file", &fx.s("other.key")]);
    expect(0, &["verify", &img, "--key-file", &fx.key()]);
    let err = expect(0, &["verify", &img, "--key-hex", KEY_HEX]);
    assert!(err.contains("visible to other users"), "{err}");
}

/// Restores `image` (file) and returns (exit code, stderr).
fn try_restore(fx: &Fixture, image: &[u8], name: &str) -> (i32, String) {
    let path = fx.path(name);
    std::fs::write(&path, image).unwrap();
    let target = fx.s(&format!("{name}.out"));
    let (code, _, err) = run(&["restore", path.to_str().unwrap(), "--to", &target, "--key-file", &fx.key()]);
    (code, err)
}

fn verify_bytes(fx: &Fixture, image: &[u8], name: &str) -> (i32, String) {
    let path = fx.path(name);
    std::fs::write(&path, image).unwrap();
    let (code, _, err) = run(&["verify", path.to_str().unwrap(), "--key-file", &fx.key()]);
    (code, err)
}

#[test]
fn every_flipped_bit_region_is_detected() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K"]);
    let good = std::fs::read(&img).unwrap();
    let frames = frames(&good);
    let chunk = frames.iter().filter(|f| f.1 == 2).nth(5).unwrap();
    let index = frames.iter().find(|f| f.1 == 3).unwrap();
    let end = frames.last().unwrap();
    assert_eq!(end.1, 4);
    let cases: Vec<(&str, usize)> = vec![
        ("header copy 0 field", 44),
        ("header copy 1 slot", 8192 + 256 + 60),
        ("chunk frame header", chunk.0 + 1),
        ("chunk body", chunk.0 + 8 + 100),
        ("chunk tag", chunk.0 + 8 + chunk.2 - 1),
        ("entry body", frames[1].0 + 10),
        ("index body", index.0 + 20),
        ("end fields", end.0 + 8 + 3),
        ("end tag", good.len() - 1),
    ];
    for (what, at) in cases {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        let (code, err) = verify_bytes(&fx, &bad, "flip.coffer");
        assert_eq!(code, 4, "{what}: verify said {err}");
        if what.starts_with("header") {
            // The other copy still opens the image: a restore works and says what it found.
            let (code, err) = try_restore(&fx, &bad, &format!("h{at}.coffer"));
            assert_eq!(code, 0, "{what}: {err}");
            assert!(err.contains("damaged"), "{what}: {err}");
        } else {
            let (code, err) = try_restore(&fx, &bad, &format!("f{at}.coffer"));
            assert_eq!(code, 4, "{what}: restore said {err}");
            assert!(err.contains("byte"), "{what}: no offset in {err}");
        }
    }
    // Both header copies damaged: corrupt, not "wrong key".
    let mut bad = good.clone();
    bad[44] ^= 1;
    bad[8192 + 44] ^= 1;
    let (code, err) = verify_bytes(&fx, &bad, "both.coffer");
    assert_eq!(code, 4, "{err}");
}

#[test]
fn corrupt_chunk_is_located_by_file_chunk_and_offset() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K", "--compress", "none"]);
    let good = std::fs::read(&img).unwrap();
    // The third chunk of db/many_chunks: find it by its plaintext-sized frames after its entry.
    let (code, out, _) = run(&["list", &img, "--json", "--key-file", &fx.key()]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let entry = doc["entries"].as_array().unwrap().iter().find(|e| e["path"] == "db/many_chunks").unwrap();
    let at = entry["frame_offset"].as_u64().unwrap() as usize;
    let fr = frames(&good);
    let entry_frame = fr.iter().position(|f| f.0 == at).unwrap();
    assert_eq!(fr[entry_frame].1, 1, "a file of many chunks is not packed");
    let third = fr[entry_frame + 3];
    let mut bad = good.clone();
    bad[third.0 + 50] ^= 0x80;
    let (code, err) = verify_bytes(&fx, &bad, "c.coffer");
    assert_eq!(code, 4);
    assert!(
        err.contains("db/many_chunks") && err.contains("chunk 3") && err.contains(&format!("byte {}", third.0)),
        "{err}"
    );
}

#[test]
fn a_damaged_pack_is_exit_4_naming_its_files() {
    // Forty small tablespaces, packed several to a frame: damage in any byte of a PACK frame
    // (its header, the sealed prefix, member heads, metadata, contents, the tag) is exit 4, and
    // where the index still opens, the message names the files the pack holds.
    let fx = Fixture::new();
    let src = fx.path("tenants");
    std::fs::create_dir_all(src.join("tenant1")).unwrap();
    for i in 0..40 {
        let data: Vec<u8> = (0..3000 + 100 * i).map(|j| (j % 251) as u8 ^ i as u8).collect();
        std::fs::write(src.join(format!("tenant1/t{i:02}.ibd")), data).unwrap();
    }
    let img = fx.s("p.coffer");
    expect(
        0,
        &["backup", src.to_str().unwrap(), "-o", &img, "--key-file", &fx.key(), "--chunk-size", "64K", "--no-validate"],
    );
    let good = std::fs::read(&img).unwrap();
    let fr = frames(&good);
    let (at, kind, len) = *fr.iter().find(|f| f.1 == 5).expect("a PACK frame");
    assert_eq!(kind, 5);
    let members = u16::from_le_bytes([good[at + 2], good[at + 3]]);
    assert!(members >= 5, "{members} entries in the first pack");
    // Every byte of the frame header, every byte of the first 600 of the body, one in 97 after
    // that, and every byte of the tag.
    let body = at + 8;
    let offsets: Vec<usize> =
        (at..body + 600).chain((body + 600..body + len - 16).step_by(97)).chain(body + len - 16..body + len).collect();
    for (n, &byte) in offsets.iter().enumerate() {
        let mut bad = good.clone();
        bad[byte] ^= 0x10;
        let (code, err) = verify_bytes(&fx, &bad, "bad.coffer");
        assert_eq!(code, 4, "byte {byte}: {err}");
        assert!(err.contains("tenant1/t00.ibd") && err.contains(&format!("in a pack of {members}")), "{err}");
        if n % 64 == 0 {
            // A restore says the same, and leaves the target marked incomplete.
            let (code, err) = try_restore(&fx, &bad, &format!("r{n}.coffer"));
            assert_eq!(code, 4, "byte {byte}: {err}");
            assert!(err.contains("tenant1/t00.ibd"), "{err}");
            assert!(fx.path(&format!("r{n}.coffer.out/.coffer-restore-incomplete")).exists());
        }
    }
}

#[test]
fn truncation_anywhere_is_never_complete() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K"]);
    let good = std::fs::read(&img).unwrap();
    let fr = frames(&good);
    let index = fr.iter().find(|f| f.1 == 3).unwrap().0;
    for cut in
        [0, 100, 8192, 16384, 16384 + 3, fr[3].0, fr[3].0 + 20, index, index + 10, good.len() - 64, good.len() - 1]
    {
        let bad = &good[..cut];
        let (code, err) = verify_bytes(&fx, bad, "t.coffer");
        assert_eq!(code, 4, "cut at {cut}: {err}");
        let (code, err) = try_restore(&fx, bad, &format!("t{cut}.coffer"));
        assert_eq!(code, 4, "cut at {cut}: {err}");
        let target = fx.path(&format!("t{cut}.coffer.out"));
        if target.exists() {
            assert!(
                target.join(".coffer-restore-incomplete").exists(),
                "cut at {cut}: a partial restore must stay marked"
            );
            assert!(err.contains("incomplete"), "{err}");
        }
        // Piped, a truncated image fails the same way.
        let (code, _, _) = run_with_stdin(&["verify", "-", "--key-file", &fx.key()], bad);
        assert_eq!(code, 4, "piped cut at {cut}");
    }
    // Extra bytes after the END frame are refused too.
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(verify_bytes(&fx, &longer, "x.coffer").0, 4);
}

#[test]
fn swapped_dropped_and_duplicated_frames_are_detected() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &["--chunk-size", "4K", "--compress", "none"]);
    let good = std::fs::read(&img).unwrap();
    let fr = frames(&good);
    // Two consecutive full-size chunks of the same file have the same length: swap them.
    let pair = fr.windows(2).find(|w| w[0].1 == 2 && w[1].1 == 2 && w[0].2 == w[1].2).unwrap();
    let (a, b) = (pair[0], pair[1]);
    let len = 8 + a.2;
    let mut swapped = good.clone();
    swapped[a.0..a.0 + len].copy_from_slice(&good[b.0..b.0 + len]);
    swapped[b.0..b.0 + len].copy_from_slice(&good[a.0..a.0 + len]);
    assert_eq!(verify_bytes(&fx, &swapped, "s.coffer").0, 4);
    let mut dropped = good[..a.0].to_vec();
    dropped.extend_from_slice(&good[b.0..]);
    assert_eq!(verify_bytes(&fx, &dropped, "d.coffer").0, 4);
    let mut dup = good[..b.0].to_vec();
    dup.extend_from_slice(&good[a.0..]);
    assert_eq!(verify_bytes(&fx, &dup, "u.coffer").0, 4);
}

#[test]
fn frames_spliced_from_another_image_are_detected() {
    let fx = Fixture::new();
    odd_tree(&fx.path("src"));
    let args = |out: &str| {
        vec![
            "backup".to_string(),
            fx.s("src"),
            "-o".into(),
            fx.s(out),
            "--key-file".into(),
            fx.key(),
            "--compress".into(),
            "none".into(),
        ]
    };
    for out in ["a.coffer", "b.coffer"] {
        let a = args(out);
        expect(0, &a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
    let a = std::fs::read(fx.path("a.coffer")).unwrap();
    let b = std::fs::read(fx.path("b.coffer")).unwrap();
    // Same tree, same key, same layout: only the data keys differ.
    let fa = frames(&a);
    assert_eq!(
        fa.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>(),
        frames(&b).iter().map(|f| (f.0, f.2)).collect::<Vec<_>>()
    );
    // A PACK frame: at the default chunk size, every file of this tree is packed.
    let c = fa.iter().find(|f| f.1 == 5).unwrap();
    let mut spliced = a.clone();
    spliced[c.0..c.0 + 8 + c.2].copy_from_slice(&b[c.0..c.0 + 8 + c.2]);
    let (code, err) = verify_bytes(&fx, &spliced, "sp.coffer");
    assert_eq!(code, 4, "{err}");
    // Even a whole header from the other image (its key opens it) does not fit this data.
    let mut swapped_header = b[..16384].to_vec();
    swapped_header.extend_from_slice(&a[16384..]);
    assert_eq!(verify_bytes(&fx, &swapped_header, "sh.coffer").0, 4);
}

#[test]
fn hostile_entries_cannot_escape_the_target() {
    use coffer_format::EntryKind::*;
    let fx = Fixture::new();
    let outside = fx.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_bytes = outside.as_os_str().as_bytes().to_vec();
    type Case<'a> = (&'a str, Vec<(coffer_format::EntryMeta, Option<&'a [u8]>)>);
    let cases: Vec<Case> = vec![
        ("dot-dot", vec![(craft::meta(File, b"../outside/pwned"), Some(b"x"))]),
        ("absolute", vec![(craft::meta(File, &[outside_bytes.as_slice(), b"/pwned"].concat()), Some(b"x"))]),
        ("through a symlink", {
            let mut link = craft::meta(Symlink, b"link");
            link.target = outside_bytes.clone();
            vec![(link, None), (craft::meta(File, b"link/pwned"), Some(b"x"))]
        }),
        ("directory through a symlink", {
            let mut link = craft::meta(Symlink, b"link");
            link.target = outside_bytes.clone();
            vec![(link, None), (craft::meta(Dir, b"link/sub"), None)]
        }),
        ("hard link to a host file", {
            let mut h = craft::meta(HardLink, b"h");
            h.target = b"../../etc/passwd".to_vec();
            vec![(h, None)]
        }),
        ("hard link through a symlink", {
            let mut link = craft::meta(Symlink, b"link");
            link.target = b"/etc".to_vec();
            let mut h = craft::meta(HardLink, b"h");
            h.target = b"link/passwd".to_vec();
            vec![(link, None), (h, None)]
        }),
    ];
    for (what, entries) in cases {
        let image = craft::image(KEY_HEX, &entries);
        let (code, err) = try_restore(&fx, &image, "hostile.coffer");
        assert_eq!(code, 4, "{what}: {err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{what} wrote outside the target");
        std::fs::remove_dir_all(fx.path("hostile.coffer.out")).ok();
    }
    // The crafter itself writes valid images: a benign one restores.
    let benign = craft::image(KEY_HEX, &[(craft::meta(File, b"fine"), Some(b"ok"))]);
    let (code, err) = try_restore(&fx, &benign, "benign.coffer");
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(fx.path("benign.coffer.out/fine")).unwrap(), b"ok");
}

#[test]
fn nothing_is_overwritten_without_force() {
    let fx = Fixture::new();
    let img = backup_tree(&fx, &[]);
    let before = std::fs::read(&img).unwrap();
    let err = expect(1, &["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key()]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before);
    std::fs::create_dir(fx.path("busy")).unwrap();
    std::fs::write(fx.path("busy/keep"), b"keep").unwrap();
    let err = expect(1, &["restore", &img, "--to", &fx.s("busy"), "--key-file", &fx.key()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(fx.path("busy/keep")).unwrap(), b"keep");
    expect(0, &["restore", &img, "--to", &fx.s("busy"), "--key-file", &fx.key(), "--force"]);
    assert_eq!(std::fs::read(fx.path("busy/keep")).unwrap(), b"keep");
    assert!(fx.path("busy/db/many_chunks").exists());
    let err = expect(1, &["key", "generate", "-o", &fx.key()]);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn usage_errors_are_exit_2() {
    let fx = Fixture::new();
    expect(2, &["backup"]);
    expect(2, &["restore", "x"]);
    expect(2, &["backup", ".", "-o", &fx.s("x.coffer")]);
    expect(2, &["backup", ".", "-o", &fx.s("x.coffer"), "--key-file", &fx.key(), "--chunk-size", "1"]);
    expect(2, &["frobnicate"]);
    let err = expect(1, &["verify", &fx.s("missing.coffer"), "--key-file", &fx.key()]);
    assert!(err.contains("missing.coffer"), "{err}");
    let err = expect(4, &["verify", &fx.key(), "--key-file", &fx.key()]);
    assert!(err.contains("not a coffer image"), "{err}");
}

#[test]
fn generated_keys_are_private_and_well_formed() {
    let fx = Fixture::new();
    expect(0, &["key", "generate", "-o", &fx.s("new.key")]);
    let md = std::fs::metadata(fx.path("new.key")).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(fx.path("new.key")).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
    let (code, out, _) = run(&["key", "id", "--key-file", &fx.s("new.key")]);
    assert_eq!(code, 0);
    assert_eq!(out.len(), 17);
    let other = std::fs::read_to_string(fx.path("new.key")).unwrap();
    expect(0, &["key", "generate", "-o", &fx.s("new2.key")]);
    assert_ne!(std::fs::read_to_string(fx.path("new2.key")).unwrap(), other);
}

#[test]
fn key_file_from_the_environment() {
    let fx = Fixture::new();
    odd_tree(&fx.path("src"));
    let out = coffer()
        .args(["backup", &fx.s("src"), "-o", &fx.s("e.coffer")])
        .env("COFFER_KEY_FILE", fx.key())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    expect(0, &["verify", &fx.s("e.coffer"), "--key-file", &fx.key()]);
}

#[test]
fn multi_gib_sparse_file_stays_sparse() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("src")).unwrap();
    let f = std::fs::File::create(fx.path("src/sparse.ibd")).unwrap();
    let size = 6u64 << 30;
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    for (i, at) in [0u64, 1 << 30, (5 << 30) + 12345, size - 10].iter().enumerate() {
        f.write_all_at(&[i as u8 + 1; 10], *at).unwrap();
    }
    drop(f);
    expect(0, &["backup", &fx.s("src"), "-o", &fx.s("s.coffer"), "--key-file", &fx.key()]);
    assert!(std::fs::metadata(fx.path("s.coffer")).unwrap().len() < 1 << 20, "holes are not stored");
    expect(0, &["restore", &fx.s("s.coffer"), "--to", &fx.s("out"), "--key-file", &fx.key()]);
    let md = std::fs::metadata(fx.path("out/sparse.ibd")).unwrap();
    assert_eq!(md.len(), size);
    assert!(md.blocks() * 512 < 1 << 20, "restored sparse: {} blocks", md.blocks());
    let r = std::fs::File::open(fx.path("out/sparse.ibd")).unwrap();
    let mut buf = [0u8; 10];
    r.read_exact_at(&mut buf, (5 << 30) + 12345).unwrap();
    assert_eq!(buf, [3; 10]);
    r.read_exact_at(&mut buf, size - 10).unwrap();
    assert_eq!(buf, [4; 10]);
    let (code, out, _) = run(&["extract", &fx.s("s.coffer"), "sparse.ibd", "--stdout", "--key-file", &fx.key()]);
    assert_eq!(code, 0);
    assert_eq!(out.len() as u64, size);
    assert_eq!(&out[(1 << 30)..(1 << 30) + 10], &[2; 10]);
}

fn random_file(path: &Path, len: usize) {
    let mut v = vec![0u8; len];
    coffer_crypto::random(&mut v).unwrap();
    std::fs::write(path, v).unwrap();
}

#[test]
fn a_full_disk_leaves_no_image_and_a_marked_restore() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("src")).unwrap();
    random_file(&fx.path("src/a.dat"), 6 << 20);
    random_file(&fx.path("src/b.dat"), 12 << 20);
    std::fs::write(fx.path("src/c.frm"), b"small").unwrap();
    expect(0, &["backup", &fx.s("src"), "-o", &fx.s("img.coffer"), "--key-file", &fx.key()]);
    let Some(small) = SmallFs::mount(&fx.path("small"), "10m") else {
        // Without root, a file-size limit stands in for the full disk (SIGXFSZ ignored, so the
        // write fails with EFBIG instead of killing the process).
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f 8192; exec {} backup {} -o {} --key-file {}",
                env!("CARGO_BIN_EXE_coffer"),
                fx.s("src"),
                fx.s("limited.coffer"),
                fx.key()
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!fx.path("limited.coffer").exists());
        return;
    };
    let out = small.0.join("img.coffer");
    let err = expect(1, &["backup", &fx.s("src"), "-o", out.to_str().unwrap(), "--key-file", &fx.key()]);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.lines().count() == 1, "one line: {err}");
    assert_eq!(std::fs::read_dir(&small.0).unwrap().count(), 0, "nothing left behind");

    // From a pipe, so that the disk fills during the restore (from a file, whose index says
    // what it needs, the restore is refused before it starts: tests/disk_full.rs).
    let target = small.0.join("restore");
    let image = std::fs::read(fx.path("img.coffer")).unwrap();
    let (code, _, err) =
        run_with_stdin(&["restore", "-", "--to", target.to_str().unwrap(), "--key-file", &fx.key()], &image);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No space left on device") && err.contains("incomplete"), "{err}");
    assert!(target.join(".coffer-restore-incomplete").exists());
    assert!(!target.join("b.dat").exists(), "the file that did not fit is not there under its name");
    let left: Vec<_> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with(".coffer-tmp")), "{left:?}");
}

#[test]
fn owners_are_restored_by_name_or_forced_with_owner() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can give files away");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a 'nobody' user");
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/theirs"), b"x").unwrap();
    std::fs::write(fx.path("src/mine"), b"y").unwrap();
    nix::unistd::chown(&fx.path("src/theirs"), Some(nobody.uid), Some(nobody.gid)).unwrap();
    expect(0, &["backup", &fx.s("src"), "-o", &fx.s("o.coffer"), "--key-file", &fx.key()]);
    expect(0, &["restore", &fx.s("o.coffer"), "--to", &fx.s("same"), "--key-file", &fx.key()]);
    let uid = |p: &str| std::fs::metadata(fx.path(p)).unwrap().uid();
    assert_eq!(uid("same/theirs"), nobody.uid.as_raw());
    assert_eq!(uid("same/mine"), 0);
    expect(0, &["restore", &fx.s("o.coffer"), "--to", &fx.s("forced"), "--key-file", &fx.key(), "--owner", "nobody"]);
    assert_eq!(uid("forced/theirs"), nobody.uid.as_raw());
    assert_eq!(uid("forced/mine"), nobody.uid.as_raw());
    assert_eq!(std::fs::metadata(fx.path("forced")).unwrap().uid(), nobody.uid.as_raw(), "the root entry too");
    let err = expect(
        2,
        &["restore", &fx.s("o.coffer"), "--to", &fx.s("x"), "--key-file", &fx.key(), "--owner", "no-such-user-here"],
    );
    assert!(err.contains("no such user"), "{err}");
}

/// `coffer --version` says the version, the commit built (or that it is unknown, outside a git
/// checkout) and the crypto backend.
#[test]
fn the_version_names_the_commit_and_the_crypto_backend() {
    let out = common::coffer().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let rest = line.trim_end().strip_prefix(&format!("coffer {} (commit ", env!("CARGO_PKG_VERSION"))).expect(&line);
    let (commit, backend) = rest.split_once(", ").expect(&line);
    let hex = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(commit == "unknown" || (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())), "{line}");
    assert_eq!(backend, "crypto aws-lc-rs)");
}

/// A reader that goes away (`coffer completions bash | head`) gets a one-line error, not a
/// panic: the script is bigger than a pipe's buffer, so the write meets the closed pipe.
#[test]
fn completions_into_a_closed_pipe_end_in_one_line() {
    let mut child = common::coffer()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot write the completions"), "{err}");
}
