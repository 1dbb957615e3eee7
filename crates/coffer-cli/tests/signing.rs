//! Image signatures end to end: an image sealed only to a recipient can be written by anyone who
//! knows the recipient, so restores demand a signer (issue 13, item 1); and the header copy a
//! key opens is found even when the other copy's generation was raised (item 14).

mod common;

use common::*;

fn stdout_of(v: &[&str]) -> String {
    let (code, out, err) = run(v);
    assert_eq!(code, 0, "coffer {v:?}: {err}");
    String::from_utf8(out).unwrap()
}

/// A source tree, a restore-side identity (its recipient returned) and a signing key on the
/// backup side (its signer returned).
fn setup() -> (Fixture, String, String) {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src/db")).unwrap();
    std::fs::write(fx.path("src/db/t1.ibd"), vec![7u8; 100_000]).unwrap();
    let recipient = stdout_of(&["key", "generate", "--x25519", "-o", &fx.s("restore.id"), "-q"]).trim().to_owned();
    let signer = stdout_of(&["key", "generate", "--signing", "-o", &fx.s("backup.sig"), "-q"]).trim().to_owned();
    assert!(signer.starts_with("coffersig1"), "{signer}");
    assert_eq!(stdout_of(&["key", "signer", &fx.s("backup.sig")]).trim(), signer);
    (fx, recipient, signer)
}

#[test]
fn a_recipient_only_forgery_is_refused_when_a_signer_is_required() {
    let (fx, recipient, signer) = setup();
    let good = fx.s("good.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &good, "-r", &recipient, "--signing-key", &fx.s("backup.sig"), "-q"]);
    // The forger knows only the recipient (printed in every image's key slots): that is enough
    // to write an image the identity opens, holding a set-uid shell.
    std::fs::create_dir_all(fx.path("evil")).unwrap();
    std::fs::write(fx.path("evil/sh"), b"#!/bin/sh\n").unwrap();
    let forged = fx.s("forged.coffer");
    expect(0, &["backup", &fx.s("evil"), "-o", &forged, "-r", &recipient, "-q"]);

    let id = fx.s("restore.id");
    // Demanded on the command line: the forgery exits 3 before anything is written.
    let to = fx.path("r1");
    let err = expect(3, &["restore", &forged, "--to", to.to_str().unwrap(), "-i", &id, "--require-signer", &signer]);
    assert!(err.contains("not signed"), "{err}");
    assert!(!to.join("sh").exists());
    for cmd in [&["verify", &forged][..], &["list", &forged], &["extract", &forged, "sh", "--stdout"]] {
        let mut v = cmd.to_vec();
        v.extend(["-i", &id, "--require-signer", &signer]);
        expect(3, &v);
    }
    // The genuine image passes, and is reported as signed.
    expect(0, &["restore", &good, "--to", &fx.s("r2"), "-i", &id, "--require-signer", &signer]);
    assert_eq!(snapshot(&fx.path("r2")), snapshot(&fx.path("src")));
    let listed: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &good, "--json"])).unwrap();
    assert_eq!(listed["signer"], signer.as_str());

    // From the environment (and a file holding the signer), as a host would configure it.
    std::fs::write(fx.path("signer.pub"), format!("# backup host\n{signer}\n")).unwrap();
    let (code, _, err) = {
        let out = coffer()
            .args(["verify", &forged, "-i", &id])
            .env("COFFER_REQUIRE_SIGNER", fx.s("signer.pub"))
            .output()
            .unwrap();
        (out.status.code().unwrap(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, 3, "{err}");

    // Another signer's image is refused too, naming who signed it.
    let other = stdout_of(&["key", "generate", "--signing", "-o", &fx.s("other.sig"), "-q"]).trim().to_owned();
    let theirs = fx.s("theirs.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &theirs, "-r", &recipient, "--signing-key", &fx.s("other.sig"), "-q"]);
    let err = expect(3, &["verify", &theirs, "-i", &id, "--require-signer", &signer]);
    assert!(err.contains(&other), "{err}");
    // Either of two accepted signers will do.
    expect(0, &["verify", &theirs, "-i", &id, "--require-signer", &format!("{signer},{other}")]);
}

#[test]
fn a_signature_survives_key_changes_but_not_a_new_data_key() {
    let (fx, recipient, signer) = setup();
    let img = fx.s("img.coffer");
    let key = fx.key();
    expect(0, &["backup", &fx.s("src"), "-o", &img, "--key-file", &key, "--signing-key", &fx.s("backup.sig"), "-q"]);
    // Slot changes rewrite the header and keep the data key: still signed.
    expect(0, &["key", "add", &img, "--key-file", &key, "--new-recipient", &recipient, "-q"]);
    expect(0, &["verify", &img, "-i", &fx.s("restore.id"), "--require-signer", &signer]);
    // rekey makes a new data key: unsigned (with a warning) unless signed again.
    let plain = fx.s("rekeyed.coffer");
    let err = expect(0, &["rekey", &img, "-o", &plain, "--key-file", &key, "--new-key-file", &key]);
    assert!(err.contains("unsigned"), "{err}");
    expect(3, &["verify", &plain, "--key-file", &key, "--require-signer", &signer]);
    let signed = fx.s("resigned.coffer");
    expect(
        0,
        &[
            "rekey",
            &img,
            "-o",
            &signed,
            "--key-file",
            &key,
            "--new-key-file",
            &key,
            "--signing-key",
            &fx.s("backup.sig"),
            "-q",
        ],
    );
    expect(0, &["verify", &signed, "--key-file", &key, "--require-signer", &signer]);
}

#[test]
fn a_keyring_can_demand_a_signer() {
    let (fx, _, signer) = setup();
    let ring = fx.s("ring");
    let ring_key = fx.s("ring.key");
    expect(0, &["key", "generate", "-o", &ring_key, "-q"]);
    expect(0, &["keyring", "create", &ring, "--name", "backup", "--key-file", &ring_key, "-q"]);
    let with_ring = |extra: &[&str]| {
        let mut v = vec!["--keyring", ring.as_str(), "--keyring-key-file", ring_key.as_str()];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let backup = |out: &str, sign: bool| {
        let mut v: Vec<String> =
            ["backup", &fx.s("src"), "-o", out, "--key-id", "backup", "-q"].map(String::from).into();
        v.extend(with_ring(&[]));
        if sign {
            v.extend(["--signing-key".to_owned(), fx.s("backup.sig")]);
        }
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        expect(0, &refs);
    };
    let (signed, unsigned) = (fx.s("signed.coffer"), fx.s("unsigned.coffer"));
    backup(&signed, true);
    backup(&unsigned, false);
    let verify = |img: &str, code: i32| {
        let mut v = vec!["verify".to_owned(), img.to_owned()];
        v.extend(with_ring(&[]));
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        expect(code, &refs)
    };
    verify(&unsigned, 0);
    let mut v = vec!["keyring".to_owned(), "trust".to_owned(), ring.clone(), signer.clone()];
    v.extend(["--key-file".to_owned(), ring_key.clone(), "-q".to_owned()]);
    expect(0, &v.iter().map(String::as_str).collect::<Vec<_>>());
    let listed = stdout_of(&["keyring", "list", &ring, "--key-file", &ring_key]);
    assert!(listed.contains(&signer), "{listed}");
    verify(&signed, 0);
    verify(&unsigned, 3);
}

#[test]
fn signing_keys_are_guarded_like_other_secrets() {
    let (fx, _, _) = setup();
    let sig = fx.path("backup.sig");
    let text = std::fs::read_to_string(&sig).unwrap();
    let secret_line = text.lines().last().unwrap().to_owned();
    assert!(secret_line.starts_with("COFFER-SIGNING-KEY-1"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sig).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(&sig, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = expect(
        1,
        &[
            "backup",
            &fx.s("src"),
            "-o",
            &fx.s("x.coffer"),
            "--key-file",
            &fx.key(),
            "--signing-key",
            &fx.s("backup.sig"),
        ],
    );
    assert!(err.contains("readable by group or others"), "{err}");
    assert!(!err.contains(&secret_line[20..]), "the key must never be printed");
    assert!(!fx.path("x.coffer").exists());
    // A public key where a signer is wanted, and garbage, are one-line usage errors.
    let err = expect(1, &["verify", &fx.s("x.coffer"), "--key-file", &fx.key(), "--require-signer", "coffer1nope"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Item 14: the generation of a header copy is protected by no key. Raising it on a copy whose
/// slots were damaged (checksum recomputed, so the copy looks intact) must not make the right
/// key look wrong while the other copy still opens.
#[test]
fn a_raised_generation_on_a_damaged_copy_does_not_hide_the_intact_one() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    std::fs::write(fx.path("src/a"), b"hello").unwrap();
    let img = fx.s("img.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]);
    let mut bytes = std::fs::read(&img).unwrap();
    // Copy 1: a wrapped key byte flipped, generation raised, checksum made to match.
    let copy = 8192;
    bytes[copy + 256 + 60] ^= 0xff;
    bytes[copy + 16..copy + 24].copy_from_slice(&7u64.to_le_bytes());
    let sum = coffer_crypto::sha256(&bytes[copy..copy + 8160]);
    bytes[copy + 8160..copy + 8192].copy_from_slice(&sum);
    std::fs::write(&img, &bytes).unwrap();
    // verify reports the altered copy as damage (exit 4, not 3); restore goes on with copy 0.
    let err = expect(4, &["verify", &img, "--key-file", &fx.key()]);
    assert!(err.contains("copy 1 was altered"), "{err}");
    expect(0, &["restore", &img, "--to", &fx.s("r"), "--key-file", &fx.key(), "-q"]);
    assert_eq!(std::fs::read(fx.path("r/a")).unwrap(), b"hello");
    // A key that opens neither copy is still a wrong key.
    fx.write_secret("other.key", "1111111111111111111111111111111111111111111111111111111111111111\n");
    expect(3, &["verify", &img, "--key-file", &fx.s("other.key")]);
}
