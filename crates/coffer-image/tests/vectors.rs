//! Known-answer images: written from fixed keys, ids and contents, so a second implementation
//! of docs/FORMAT.md can check itself against them byte for byte (see vectors/README.md).
//! Set COFFER_BLESS=1 to rewrite them after a deliberate format change (and bump the version).

use coffer_crypto::{DataKey, MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, EntryKind, EntryMeta, Segment, Suite};
use coffer_fs::source::{ChunkReader, Span, StreamChunker};
use coffer_fs::FsError;
use coffer_image::*;
use std::io::Cursor;
use std::path::{Path, PathBuf};

const MASTER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn meta(kind: EntryKind, path: &str, mode: u32) -> EntryMeta {
    EntryMeta {
        kind,
        continues: false,
        mode,
        uid: 1000,
        gid: 1000,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: 0,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: b"mysql".to_vec(),
        gname: b"mysql".to_vec(),
    }
}

/// A sparse file of 20000 bytes: "head" at 0, "tail" at 16384, holes elsewhere.
struct Sparse(bool);
impl ChunkReader for Sparse {
    fn next_chunk(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<Span, FsError> {
        assert!(!self.0);
        self.0 = true;
        buf[..8].copy_from_slice(b"headtail");
        segments.clear();
        segments.extend([Segment { offset: 0, len: 4 }, Segment { offset: 16384, len: 4 }]);
        Ok(Span { range_start: 0, range_end: 20000, len: 8, last: true })
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The tree every vector holds.
fn items() -> Vec<SourceItem> {
    let file = |path: &str, data: Vec<u8>| {
        let mut m = meta(EntryKind::File, path, 0o640);
        m.size = data.len() as u64;
        SourceItem {
            meta: m,
            data: Some(Box::new(StreamChunker::new(Cursor::new(data), PathBuf::from(path)))),
            source: None,
            opened: None,
        }
    };
    let mut link = meta(EntryKind::Symlink, "current", 0o777);
    link.target = b"db/t1.ibd".to_vec();
    let mut hard = meta(EntryKind::HardLink, "db/t1-again.ibd", 0o640);
    hard.target = b"db/t1.ibd".to_vec();
    let mut sparse = meta(EntryKind::File, "db/sparse.ibd", 0o640);
    sparse.size = 20000;
    vec![
        SourceItem { meta: meta(EntryKind::Dir, "", 0o750), data: None, source: None, opened: None },
        file("hello.txt", b"Hello, coffer!\n".to_vec()),
        file("empty", vec![]),
        SourceItem { meta: meta(EntryKind::Dir, "db", 0o750), data: None, source: None, opened: None },
        file("db/t1.ibd", pattern(10_000)),
        SourceItem { meta: hard, data: None, source: None, opened: None },
        SourceItem { meta: sparse, data: Some(Box::new(Sparse(false))), source: None, opened: None },
        SourceItem { meta: link, data: None, source: None, opened: None },
    ]
}

struct Fixed(std::vec::IntoIter<SourceItem>);
impl EntrySource for Fixed {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        Ok(self.0.next())
    }
}

fn params(suite: Suite, codec: Codec) -> ImageParams {
    ImageParams {
        suite,
        codec,
        level: 3,
        chunk_size: 4096,
        created: 1_700_000_000,
        image_id: *b"coffer-vector-01",
        data_key: DataKey::from_bytes([0x5a; 32]),
        slot_salts: vec![[0xa5; 32]],
        signing_key: None,
        pack_limit: 0,
    }
}

/// The signed vector's Ed25519 seed (its public key is in vectors/README.md).
const SIGNING_SEED: [u8; 32] = [0x33; 32];

fn signing_key() -> coffer_crypto::SigningKey {
    coffer_crypto::SigningKey::from_seed(zeroize::Zeroizing::new(SIGNING_SEED)).unwrap()
}

/// The pack limit of the version 2 vectors: small entries share PACK frames, `db/t1.ibd`
/// (10000 bytes) has chunks of its own, and so has `db/sparse.ibd` (holes are never packed).
const V2_PACK_LIMIT: u32 = 1024;

fn write_vector(suite: Suite, codec: Codec, signed: bool, version: u16) -> Vec<u8> {
    let master = SlotSecret::Key(MasterKey::from_hex(MASTER).unwrap());
    let mut p = params(suite, codec);
    p.signing_key = signed.then(signing_key);
    p.pack_limit = if version == 2 { V2_PACK_LIMIT } else { 0 };
    let mut out = vec![];
    write_image(&mut Fixed(items().into_iter()), &mut out, &p, &[master], 2, &NoProgress, None).unwrap();
    out
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.chunks(32).map(|c| coffer_crypto::hex(c) + "\n").collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

fn vector_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)
}

/// Collects what a read hands over: entries and file contents.
#[derive(Default)]
struct Collect {
    entries: Vec<(String, EntryKind, Vec<u8>)>,
}
impl Visitor for Collect {
    fn entry(&mut self, m: &EntryMeta) -> Result<(), ImageError> {
        self.entries.push((String::from_utf8_lossy(&m.path).into_owned(), m.kind, vec![]));
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        let buf = &mut self.entries.last_mut().unwrap().2;
        let end = offset as usize + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        self.entries.last_mut().unwrap().2.resize(size as usize, 0);
        Ok(())
    }
}

fn read_vector(image: &[u8]) -> Collect {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(MasterKey::from_hex(MASTER).unwrap())]).unwrap();
    let mut c = Collect::default();
    read_stream(&mut input, &opened, &mut c, ReadOptions { threads: 1, skip_data: false }).unwrap();
    c
}

fn check_contents(c: &Collect) {
    let names: Vec<&str> = c.entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["", "hello.txt", "empty", "db", "db/t1.ibd", "db/t1-again.ibd", "db/sparse.ibd", "current"]);
    assert_eq!(c.entries[1].2, b"Hello, coffer!\n");
    assert_eq!(c.entries[4].2, pattern(10_000));
    let sparse = &c.entries[6].2;
    assert_eq!(sparse.len(), 20000);
    assert_eq!((&sparse[..4], &sparse[16384..16388]), (&b"head"[..], &b"tail"[..]));
    assert!(sparse[4..16384].iter().all(|&b| b == 0));
}

fn check_vector(name: &str, suite: Suite, codec: Codec, byte_exact: bool) {
    let path = vector_path(name);
    let version = if name.starts_with("v2-") { 2 } else { 1 };
    let fresh = write_vector(suite, codec, name.contains("signed"), version);
    if std::env::var_os("COFFER_BLESS").is_some() {
        std::fs::write(&path, to_hex(&fresh)).unwrap();
    }
    let stored = from_hex(&std::fs::read_to_string(&path).unwrap());
    if byte_exact {
        assert!(stored == fresh, "{name}: the writer no longer produces the committed bytes");
    }
    check_contents(&read_vector(&stored));
}

#[test]
fn aes_256_gcm_uncompressed_is_byte_exact() {
    check_vector("v1-aes256gcm-none.hex", Suite::Aes256Gcm, Codec::None, true);
}

#[test]
fn signed_image_is_byte_exact() {
    check_vector("v1-aes256gcm-none-signed.hex", Suite::Aes256Gcm, Codec::None, true);
    let image = from_hex(&std::fs::read_to_string(vector_path("v1-aes256gcm-none-signed.hex")).unwrap());
    let key = || Unlock::Key(MasterKey::from_hex(MASTER).unwrap());
    let signer = signing_key().public();
    assert_eq!(signer.to_string(), SIGNER_TEXT);
    // Flags bit 0, then the block after the slots: signer, commitment, signature.
    assert_eq!(image[56], 1);
    assert_eq!(&image[4352..4384], &signer.0);
    let commitment = coffer_crypto::key_commitment(&DataKey::from_bytes([0x5a; 32]), b"coffer-vector-01");
    assert_eq!(&image[4384..4416], &commitment);
    let opened = open_header(&image[..16384], &[key(), Unlock::Signer(signer)]).unwrap();
    assert_eq!(opened.signer(), Some(signer));
    // A demanded signer that did not sign, or an unsigned image, is refused before any slot.
    let other = coffer_crypto::SigningKey::from_seed(zeroize::Zeroizing::new([0x44; 32])).unwrap().public();
    assert!(matches!(open_header(&image[..16384], &[key(), Unlock::Signer(other)]), Err(ImageError::ForeignSigner(_))));
    let unsigned = from_hex(&std::fs::read_to_string(vector_path("v1-aes256gcm-none.hex")).unwrap());
    assert!(matches!(open_header(&unsigned[..16384], &[key(), Unlock::Signer(signer)]), Err(ImageError::Unsigned)));
    assert!(open_header(&unsigned[..16384], &[key()]).unwrap().signer().is_none());
    // A forger who keeps the signature block but seals the slots (and the MAC) for a data key
    // of their own is caught by the key commitment.
    let mut header = choose_header(&image[..16384]).unwrap().header;
    let own = DataKey::from_bytes([0x77; 32]);
    let secret = SlotSecret::Key(MasterKey::from_hex(MASTER).unwrap());
    header.slots[0] = coffer_crypto::seal_slot(header.suite, &secret, &own, &header.image_id, [1; 32], 0).unwrap();
    let forged = header::seal_region(&header, &coffer_crypto::ImageKeys::derive(header.suite, &own, &header.image_id));
    let err = open_header(&forged, &[key()]).unwrap_err();
    assert!(err.to_string().contains("not the one its signature covers"), "{err}");
}
const SIGNER_TEXT: &str = "coffersig1zl9hn7etgys09v0vvhjpnrtwpzegaqflavq7ffqqswdctcvqsr8qsue8ss";

#[test]
fn chacha20_poly1305_uncompressed_is_byte_exact() {
    check_vector("v1-chacha20poly1305-none.hex", Suite::ChaCha20Poly1305, Codec::None, true);
}

/// zstd and lz4 output may change between library versions; their vectors must still decode.
#[test]
fn compressed_vectors_decode() {
    check_vector("v1-aes256gcm-zstd.hex", Suite::Aes256Gcm, Codec::Zstd, false);
    check_vector("v1-aes256gcm-lz4.hex", Suite::Aes256Gcm, Codec::Lz4, false);
    check_vector("v2-aes256gcm-zstd.hex", Suite::Aes256Gcm, Codec::Zstd, false);
}

#[test]
fn packed_vectors_are_byte_exact() {
    check_vector("v2-aes256gcm-none.hex", Suite::Aes256Gcm, Codec::None, true);
    check_vector("v2-chacha20poly1305-none.hex", Suite::ChaCha20Poly1305, Codec::None, true);
}

/// The version 2 vector's frames, as vectors/README.md lists them: a PACK of the first four
/// entries, t1.ibd's ENTRY and three CHUNKs, a PACK of the hard link, the sparse file's ENTRY
/// and CHUNK, a PACK of the symlink, the INDEX and END.
#[test]
fn packed_vector_layout_matches_the_spec() {
    let image = from_hex(&std::fs::read_to_string(vector_path("v2-aes256gcm-none.hex")).unwrap());
    assert_eq!(&image[8..10], &[2, 0], "version 2");
    let mut at = 16384;
    let mut frames = vec![];
    while at < image.len() {
        let (kind, members) = (image[at], u16::from_le_bytes([image[at + 2], image[at + 3]]));
        frames.push((kind, members));
        at += 8 + u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    assert_eq!(frames, [(5, 4), (1, 0), (2, 0), (2, 0), (2, 0), (5, 1), (1, 0), (2, 0), (5, 1), (3, 0), (4, 0)]);
    let end = &image[image.len() - 64..];
    assert_eq!(u64::from_le_bytes(end[8..16].try_into().unwrap()), 10, "END's seq");
    assert_eq!(u64::from_le_bytes(end[16..24].try_into().unwrap()), 8, "entries");
    // Through the index, a packed file is read from its PACK alone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.coffer");
    std::fs::write(&path, &image).unwrap();
    let idx = IndexedImage::open(&path, &[Unlock::Key(MasterKey::from_hex(MASTER).unwrap())]).unwrap();
    assert_eq!((idx.records()[1].frame_offset, idx.records()[1].chunks), (16384, 0));
    let mut c = Collect::default();
    idx.read_entry(1, &mut c, 1).unwrap();
    assert_eq!(c.entries, [("hello.txt".to_string(), EntryKind::File, b"Hello, coffer!\n".to_vec())]);
}

#[test]
fn vector_layout_matches_the_spec() {
    let image = from_hex(&std::fs::read_to_string(vector_path("v1-aes256gcm-none.hex")).unwrap());
    assert_eq!(&image[..8], b"\x89COFFER\n");
    assert_eq!(&image[8192..8200], b"\x89COFFER\n");
    assert_eq!(image[8192 + 10], 1, "copy number");
    assert_eq!(&image[24..40], b"coffer-vector-01");
    // First frame: the root directory's ENTRY.
    assert_eq!(image[16384], 1);
    // Last 64 bytes: the END frame.
    let end = &image[image.len() - 64..];
    assert_eq!(end[0], 4);
    assert_eq!(u32::from_le_bytes(end[4..8].try_into().unwrap()), 56);
    let entry_count = u64::from_le_bytes(end[16..24].try_into().unwrap());
    assert_eq!(entry_count, 8);
}

/// The Python reader in contrib/reference, written from docs/FORMAT.md alone, must see the
/// same entries and contents. CI sets COFFER_REQUIRE_REFERENCE=1 (and installs its packages).
#[test]
fn the_independent_reference_reader_agrees() {
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import cryptography, zstandard"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_python {
        assert!(
            std::env::var_os("COFFER_REQUIRE_REFERENCE").is_none(),
            "python3 with cryptography and zstandard is required"
        );
        eprintln!("skipped: python3 with cryptography and zstandard is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    std::fs::write(&key, MASTER).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/reference/coffer_read.py");
    for name in [
        "v1-aes256gcm-none.hex",
        "v1-chacha20poly1305-none.hex",
        "v1-aes256gcm-none-signed.hex",
        "v2-aes256gcm-none.hex",
        "v2-chacha20poly1305-none.hex",
        "v2-aes256gcm-zstd.hex",
    ] {
        let image = vector_path(name);
        let out = std::process::Command::new("python3").arg(&script).arg(&image).arg(&key).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let ours = read_vector(&from_hex(&std::fs::read_to_string(&image).unwrap()));
        let theirs: Vec<serde_json_lite::Line> =
            String::from_utf8(out.stdout).unwrap().lines().map(serde_json_lite::parse).collect();
        assert_eq!(theirs.len(), ours.entries.len());
        for ((path, kind, data), line) in ours.entries.iter().zip(&theirs) {
            assert_eq!(&line.path, path);
            if *kind == EntryKind::File {
                assert_eq!(line.sha256, coffer_crypto::hex(&coffer_crypto::sha256(data)), "{path}");
            }
        }
        // A demanded signer: met by the signed vector only.
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&image)
            .arg(&key)
            .args(["--require-signer", SIGNER_TEXT])
            .output()
            .unwrap();
        assert_eq!(out.status.success(), name.contains("signed"), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        // And it refuses what coffer refuses: a flipped bit in a chunk.
        let mut bad = from_hex(&std::fs::read_to_string(&image).unwrap());
        bad[16384 + 100] ^= 1;
        let bad_path = dir.path().join("bad.coffer");
        std::fs::write(&bad_path, &bad).unwrap();
        let out = std::process::Command::new("python3").arg(&script).arg(&bad_path).arg(&key).output().unwrap();
        assert!(!out.status.success());
        // A forged signature (both copies, checksums fixed: only the signature is wrong).
        if name.contains("signed") {
            let mut forged = from_hex(&std::fs::read_to_string(&image).unwrap());
            for copy in [0, 8192] {
                forged[copy + 4420] ^= 1;
                let sum = coffer_crypto::sha256(&forged[copy..copy + 8160]);
                forged[copy + 8160..copy + 8192].copy_from_slice(&sum);
            }
            std::fs::write(&bad_path, &forged).unwrap();
            let out = std::process::Command::new("python3").arg(&script).arg(&bad_path).arg(&key).output().unwrap();
            assert!(!out.status.success(), "a forged signature must be refused");
            let err = open_header(&forged[..16384], &[Unlock::Key(MasterKey::from_hex(MASTER).unwrap())]).unwrap_err();
            assert!(err.to_string().contains("signature does not verify"), "{err}");
        }
    }
}

/// Just enough JSON for the reference reader's one-object-per-line output.
mod serde_json_lite {
    pub struct Line {
        pub path: String,
        pub sha256: String,
    }
    fn field(line: &str, name: &str) -> String {
        let key = format!("\"{name}\": ");
        let start = line.find(&key).map(|i| i + key.len()).unwrap_or_else(|| panic!("{name} in {line}"));
        let rest = &line[start..];
        if let Some(stripped) = rest.strip_prefix('"') {
            stripped[..stripped.find('"').unwrap()].to_owned()
        } else {
            rest[..rest.find([',', '}']).unwrap()].to_owned()
        }
    }
    pub fn parse(line: &str) -> Line {
        Line { path: field(line, "path"), sha256: field(line, "sha256") }
    }
}
