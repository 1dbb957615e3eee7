//! The jobs as a program uses them: no binary, no terminal. A directory backed up to a file,
//! listed, verified, extracted and restored; the errors typed, with their exit codes.

use coffer::backup::{backup, BackupSpec};
use coffer::error::exit;
use coffer::keys::KeySources;
use coffer::read::{list, verify};
use coffer::restore::{extract, restore, ExtractSpec, RestoreSpec};
use coffer::{Env, Location, SourceSpec};
use coffer_crypto::MasterKey;

fn keys(key: &MasterKey) -> KeySources {
    KeySources { master_keys: vec![key.clone()], ..Default::default() }
}

#[test]
fn a_program_backs_up_lists_verifies_extracts_and_restores() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("db")).unwrap();
    std::fs::write(src.join("db/t1.ibd"), vec![3u8; 300_000]).unwrap();
    std::fs::write(src.join("my.cnf"), b"[mysqld]\n").unwrap();
    let key = MasterKey::generate().unwrap();
    let env = Env::default();

    let image = Location::parse(t.path().join("img.coffer").to_str().unwrap());
    let mut spec = BackupSpec::new(SourceSpec::Path { path: src.clone(), name: None }, image.clone());
    spec.keys = keys(&key);
    let done = backup(&spec, &env).unwrap();
    assert_eq!((done.image.files, done.image.logical_bytes), (2, 300_009));

    let listing = list(&image, &keys(&key), &env).unwrap();
    let paths: Vec<_> = listing.records.iter().map(|r| String::from_utf8_lossy(&r.meta.path).into_owned()).collect();
    assert_eq!(paths, ["", "db", "db/t1.ibd", "my.cnf"]);
    assert_eq!(verify(&image, &keys(&key), &env).unwrap().files, 2);

    let x = ExtractSpec {
        image: Some(image.clone()),
        paths: vec!["db".into()],
        to: Some(t.path().join("x")),
        keys: keys(&key),
        ..Default::default()
    };
    extract(&x, &env).unwrap();
    assert_eq!(std::fs::read(t.path().join("x/db/t1.ibd")).unwrap(), vec![3u8; 300_000]);
    assert!(!t.path().join("x/my.cnf").exists());

    let r = RestoreSpec { image: Some(image.clone()), to: t.path().join("r"), keys: keys(&key), ..Default::default() };
    assert_eq!(restore(&r, &env).unwrap().files, 2);
    assert_eq!(std::fs::read(t.path().join("r/my.cnf")).unwrap(), b"[mysqld]\n");

    // Typed failures, each with its exit code: another key, an existing output, damage.
    let other = MasterKey::generate().unwrap();
    let e = verify(&image, &keys(&other), &env).unwrap_err();
    assert_eq!(e.exit_code(), exit::WRONG_KEY, "{}", e.one_line());
    let e = backup(&spec, &env).unwrap_err();
    assert!(e.one_line().contains("already exists (use --force"), "{}", e.one_line());
    assert_eq!(e.exit_code(), exit::FAILURE);
    let path = t.path().join("img.coffer");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = verify(&image, &keys(&key), &env).unwrap_err();
    assert_eq!(e.exit_code(), exit::CORRUPT, "{}", e.one_line());
}
