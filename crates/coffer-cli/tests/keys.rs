//! Key management end to end: every slot kind, mixed slots, wrong keys, slot changes in place
//! (and crashes in the middle of them), header backups, keyrings, rekey, secrets hygiene.

mod common;

use common::*;
use std::path::Path;

const PASS: &str = "correct horse battery staple";
/// The cheapest Argon2id costs coffer accepts, so the tests stay fast.
const KDF: [&str; 4] = ["--kdf-memory", "64", "--kdf-iterations", "1"];

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("db")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("db/t1.ibd"), &data).unwrap();
    std::fs::write(root.join("my.cnf"), b"[mysqld]\n").unwrap();
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn exec(code: i32, v: &[String]) -> String {
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    expect(code, &refs)
}

fn stdout_of(v: &[&str]) -> String {
    let (code, out, err) = run(v);
    assert_eq!(code, 0, "coffer {v:?}: {err}");
    String::from_utf8(out).unwrap()
}

/// Restores `image` with `secret` args into a fresh directory and checks it matches src.
fn restores(fx: &Fixture, image: &str, secret: &[&str]) {
    let to = fx.path(&format!("r{}", rand_suffix()));
    let mut v = args(&["restore", image, "--to", to.to_str().unwrap()]);
    v.extend(args(secret));
    exec(0, &v);
    assert_eq!(snapshot(&to), snapshot(&fx.path("src")), "restore with {secret:?}");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A fixture with a source tree, a passphrase file and an X25519 identity; returns the
/// identity's recipient.
fn setup() -> (Fixture, String) {
    let fx = Fixture::new();
    tree(&fx.path("src"));
    fx.write_secret("pass.txt", &format!("{PASS}\n"));
    let recipient = stdout_of(&["key", "generate", "--x25519", "-o", &fx.s("id.key"), "-q"]).trim().to_owned();
    assert!(recipient.starts_with("coffer1"), "{recipient}");
    (fx, recipient)
}

fn slot_kinds(image: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", image, "--json"])).unwrap();
    v["slots"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap().to_owned()).collect()
}

fn data_region(image: &str) -> Vec<u8> {
    std::fs::read(image).unwrap()[16384..].to_vec()
}

#[test]
fn every_slot_kind_opens_a_mixed_image() {
    let (fx, recipient) = setup();
    exec(0, &args(&["keyring", "create", &fx.s("ring"), "--name", "backup", "--key-file", &fx.s("other.key"), "-q"]));
    let img = fx.s("img.coffer");
    let mut v =
        args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "--passphrase-file", &fx.s("pass.txt")]);
    v.extend(args(&[
        "-r",
        &recipient,
        "--keyring",
        &fx.s("ring"),
        "--keyring-key-file",
        &fx.s("other.key"),
        "--key-id",
        "backup",
    ]));
    v.extend(args(&KDF));
    exec(0, &v);
    assert_eq!(slot_kinds(&img), ["key", "recipient", "keyring", "passphrase"]);
    let listing = stdout_of(&["key", "list", &img]);
    assert!(
        listing.contains(&recipient)
            && listing.contains("argon2id m=64 MiB t=1")
            && listing.contains("keyring backup version 1"),
        "{listing}"
    );
    restores(&fx, &img, &["--key-file", &fx.key()]);
    restores(&fx, &img, &["--passphrase-file", &fx.s("pass.txt")]);
    restores(&fx, &img, &["--identity", &fx.s("id.key")]);
    restores(&fx, &img, &["--keyring", &fx.s("ring"), "--keyring-key-file", &fx.s("other.key")]);
    // Descriptors and commands carry the same secrets.
    let bin = env!("CARGO_BIN_EXE_coffer");
    let sh = |script: String| {
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sh(format!("{bin} verify {img} --key-fd 3 3<{} -q", fx.key()));
    sh(format!("{bin} verify {img} --passphrase-fd 4 4<{} -q", fx.s("pass.txt")));
    exec(0, &args(&["verify", &img, "--key-command", &format!("cat {}", fx.key()), "-q"]));
    let err = exec(1, &args(&["verify", &img, "--key-command", "exit 7", "-q"]));
    assert!(err.contains("key command failed"), "{err}");
}

#[test]
fn a_wrong_secret_of_each_kind_is_exit_3_and_writes_nothing() {
    let (fx, recipient) = setup();
    let img = fx.s("img.coffer");
    let mut v = args(&[
        "backup",
        &fx.s("src"),
        "-o",
        &img,
        "--key-file",
        &fx.key(),
        "--passphrase-file",
        &fx.s("pass.txt"),
        "-r",
        &recipient,
    ]);
    v.extend(args(&KDF));
    exec(0, &v);
    fx.write_secret("wrong.txt", "correct horse battery stapler\n");
    stdout_of(&["key", "generate", "--x25519", "-o", &fx.s("other.id"), "-q"]);
    exec(0, &args(&["keyring", "create", &fx.s("ring"), "--name", "backup", "--key-file", &fx.key(), "-q"]));
    for wrong in [
        vec!["--key-file", &fx.s("other.key")],
        vec!["--passphrase-file", &fx.s("wrong.txt")],
        vec!["--identity", &fx.s("other.id")],
        vec!["--keyring", &fx.s("ring"), "--keyring-key-file", &fx.key()],
    ] {
        for cmd in ["restore", "verify", "list"] {
            let to = fx.path("never");
            let mut v = args(&[cmd, &img]);
            if cmd == "restore" {
                v.extend(args(&["--to", to.to_str().unwrap()]));
            }
            v.extend(args(&wrong));
            let err = exec(3, &v);
            assert!(err.contains("wrong key"), "{err}");
            assert!(!err.contains(PASS) && !err.contains(KEY_HEX), "no secret in errors: {err}");
            assert!(!to.exists(), "nothing written");
        }
    }
    // A wrong secret for the keyring itself is a wrong key too.
    let err = exec(3, &args(&["keyring", "list", &fx.s("ring"), "--key-file", &fx.s("other.key")]));
    assert!(err.contains("wrong key"), "{err}");
}

#[test]
fn slot_changes_keep_the_data_region_byte_identical() {
    let (fx, recipient) = setup();
    let img = fx.s("img.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]));
    let data = data_region(&img);
    let before_id = stdout_of(&["key", "list", &img, "--json"]);
    // add: a passphrase and a recipient
    let mut v = args(&[
        "key",
        "add",
        &img,
        "--key-file",
        &fx.key(),
        "--new-passphrase-file",
        &fx.s("pass.txt"),
        "--new-recipient",
        &recipient,
    ]);
    v.extend(args(&KDF));
    exec(0, &v);
    assert_eq!(slot_kinds(&img), ["key", "recipient", "passphrase"]);
    assert_eq!(data_region(&img), data);
    restores(&fx, &img, &["--passphrase-file", &fx.s("pass.txt")]);
    restores(&fx, &img, &["--identity", &fx.s("id.key")]);
    // rotate: the key slot moves to other.key; k.key no longer opens
    exec(0, &args(&["key", "rotate", &img, "--key-file", &fx.key(), "--new-key-file", &fx.s("other.key")]));
    assert_eq!(data_region(&img), data);
    exec(3, &args(&["verify", &img, "--key-file", &fx.key()]));
    restores(&fx, &img, &["--key-file", &fx.s("other.key")]);
    // remove: needs a secret of another slot
    let err = exec(2, &args(&["key", "remove", &img, "--slot", "0", "--key-file", &fx.s("other.key")]));
    assert!(err.contains("another slot"), "{err}");
    exec(0, &args(&["key", "remove", &img, "--slot", "0", "--identity", &fx.s("id.key")]));
    exec(3, &args(&["verify", &img, "--key-file", &fx.s("other.key")]));
    exec(0, &args(&["key", "remove", &img, "--slot", "2", "--identity", &fx.s("id.key")]));
    assert_eq!(slot_kinds(&img), ["recipient"]);
    let err = exec(2, &args(&["key", "remove", &img, "--slot", "1", "--identity", &fx.s("id.key")]));
    assert!(err.contains("last key slot"), "{err}");
    assert_eq!(data_region(&img), data);
    restores(&fx, &img, &["--identity", &fx.s("id.key")]);
    let after: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &img, "--json"])).unwrap();
    let before: serde_json::Value = serde_json::from_str(&before_id).unwrap();
    assert_eq!(after["image_id"], before["image_id"]);
    assert_eq!(after["generation"], 5, "add, rotate, remove, remove");
}

#[test]
fn sixteen_slots_then_no_more() {
    let (fx, _) = setup();
    let img = fx.s("img.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]));
    let mut v = args(&["key", "add", &img, "--key-file", &fx.key()]);
    for i in 0..15 {
        let name = format!("k{i}.key");
        fx.write_secret(&name, &format!("{:064x}\n", i + 1));
        v.extend(args(&["--new-key-file", &fx.s(&name)]));
    }
    exec(0, &v);
    assert_eq!(slot_kinds(&img).len(), 16);
    let before = std::fs::read(&img).unwrap();
    let err = exec(2, &args(&["key", "add", &img, "--key-file", &fx.key(), "--new-key-file", &fx.s("other.key")]));
    assert!(err.contains("all 16 key slots are in use"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "a refused change writes nothing");
    restores(&fx, &img, &["--key-file", &fx.s("k14.key")]);
    // A backup asked for 17 slots is refused before it starts.
    let mut v = args(&["backup", &fx.s("src"), "-o", &fx.s("17.coffer"), "--key-file", &fx.key()]);
    for i in 0..15 {
        v.extend(args(&["--key-file", &fx.s(&format!("k{i}.key"))]));
    }
    v.extend(args(&["--key-file", &fx.s("other.key")]));
    exec(2, &v);
    assert!(!fx.path("17.coffer").exists());
}

#[test]
fn a_crash_between_the_header_copies_leaves_a_usable_image() {
    let (fx, _) = setup();
    let img = fx.s("img.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]));
    let data = data_region(&img);
    // Copy 0 is in use, so copy 1 is written first; the process dies once it is durable.
    let out = coffer()
        .args(["key", "rotate", &img, "--key-file", &fx.key(), "--new-key-file", &fx.s("other.key")])
        .env("COFFER_TEST_CRASH_AFTER_HEADER_COPY", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the process was killed");
    assert_eq!(data_region(&img), data);
    let listing = stdout_of(&["key", "list", &img]);
    assert!(listing.contains("older generation"), "{listing}");
    // The newer copy rules: the rotation took effect.
    restores(&fx, &img, &["--key-file", &fx.s("other.key")]);
    // The old key still opens the older copy until the change is completed (the bytes are on
    // disk either way: refusing would protect nothing); said, and not taken for damage.
    let err = exec(0, &args(&["verify", &img, "--key-file", &fx.key()]));
    assert!(err.contains("a key change was interrupted"), "{err}");
    // The next change heals the stale copy.
    exec(0, &args(&["key", "add", &img, "--key-file", &fx.s("other.key"), "--new-key-file", &fx.key()]));
    assert!(!stdout_of(&["key", "list", &img]).contains("older generation"));
    // A crash before anything is durable (the first write) leaves the old header.
    let out = coffer()
        .args(["key", "remove", &img, "--slot", "1", "--key-file", &fx.s("other.key")])
        .env("COFFER_TEST_CRASH_AFTER_HEADER_COPY", "9")
        .output()
        .unwrap();
    assert!(out.status.success());
    restores(&fx, &img, &["--key-file", &fx.s("other.key")]);
}

#[test]
fn a_header_backup_restores_removed_slots_and_refuses_other_images() {
    let (fx, _) = setup();
    let img = fx.s("img.coffer");
    exec(
        0,
        &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "--key-file", &fx.s("other.key"), "-q"]),
    );
    let hdr = fx.s("img.header");
    exec(0, &args(&["header", "backup", &img, "-o", &hdr]));
    exec(1, &args(&["header", "backup", &img, "-o", &hdr]));
    exec(0, &args(&["key", "remove", &img, "--slot", "1", "--key-file", &fx.key()]));
    exec(3, &args(&["verify", &img, "--key-file", &fx.s("other.key")]));
    exec(0, &args(&["header", "restore", &img, &hdr]));
    // As documented: a kept header and a removed secret still open the image.
    restores(&fx, &img, &["--key-file", &fx.s("other.key")]);
    // Both copies wiped: only --force restores (the image id cannot be compared).
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 16384], 0).unwrap();
    exec(4, &args(&["verify", &img, "--key-file", &fx.key()]));
    exec(4, &args(&["header", "restore", &img, &hdr]));
    exec(0, &args(&["header", "restore", &img, &hdr, "--force"]));
    restores(&fx, &img, &["--key-file", &fx.key()]);
    // Another image's header is refused; a damaged backup file too.
    let other = fx.s("other.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &other, "--key-file", &fx.key(), "-q"]));
    let err = exec(1, &args(&["header", "restore", &other, &hdr]));
    assert!(err.contains("refusing"), "{err}");
    let mut bytes = std::fs::read(&hdr).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(fx.path("bad.header"), bytes).unwrap();
    exec(4, &args(&["header", "restore", &img, &fx.s("bad.header")]));
}

#[test]
fn rekey_gives_a_new_image_under_a_new_data_key() {
    let (fx, recipient) = setup();
    let img = fx.s("img.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]));
    let out = fx.s("new.coffer");
    exec(
        0,
        &args(&[
            "rekey",
            &img,
            "-o",
            &out,
            "--key-file",
            &fx.key(),
            "--new-key-file",
            &fx.s("other.key"),
            "--new-recipient",
            &recipient,
            "--cipher",
            "chacha20-poly1305",
        ]),
    );
    exec(3, &args(&["verify", &out, "--key-file", &fx.key()]));
    restores(&fx, &out, &["--key-file", &fx.s("other.key")]);
    restores(&fx, &out, &["--identity", &fx.s("id.key")]);
    let a: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &img, "--json"])).unwrap();
    let b: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &out, "--json"])).unwrap();
    assert_ne!(a["image_id"], b["image_id"]);
    assert_eq!(b["cipher"], "chacha20-poly1305");
    assert_ne!(data_region(&img), data_region(&out));
    // From a pipe, to a pipe.
    let (code, piped, err) = run_with_stdin(
        &["rekey", "-", "-o", "-", "--key-file", &fx.key(), "--new-key-file", &fx.s("other.key")],
        &std::fs::read(&img).unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(fx.path("piped.coffer"), piped).unwrap();
    restores(&fx, &fx.s("piped.coffer"), &["--key-file", &fx.s("other.key")]);
    // A truncated input leaves no output.
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(fx.path("short.coffer"), &bytes[..bytes.len() - 100]).unwrap();
    exec(
        4,
        &args(&[
            "rekey",
            &fx.s("short.coffer"),
            "-o",
            &fx.s("none.coffer"),
            "--key-file",
            &fx.key(),
            "--new-key-file",
            &fx.s("other.key"),
        ]),
    );
    assert!(!fx.path("none.coffer").exists());
}

#[test]
fn keyrings_rotate_and_images_follow_by_rewrap() {
    let (fx, _) = setup();
    let ring = fx.s("ring");
    let unlock = ["--keyring", &ring, "--keyring-key-file", &fx.key()];
    exec(0, &args(&["keyring", "create", &ring, "--name", "backup", "--key-file", &fx.key()]));
    assert_eq!(
        std::fs::metadata(&ring).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(),
        0o600
    );
    let img = fx.s("img.coffer");
    let mut v = args(&["backup", &fx.s("src"), "-o", &img, "--key-id", "backup", "-q"]);
    v.extend(args(&unlock));
    exec(0, &v);
    let data = data_region(&img);
    exec(0, &args(&["keyring", "rotate", &ring, "backup", "--key-file", &fx.key()]));
    let listing = stdout_of(&["keyring", "list", &ring, "--key-file", &fx.key()]);
    assert!(listing.contains("backup  version 1") && listing.contains("backup  version 2"), "{listing}");
    assert!(!listing.contains(KEY_HEX));
    let mut v = args(&["key", "rewrap", &img]);
    v.extend(args(&unlock));
    exec(0, &v);
    let list: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &img, "--json"])).unwrap();
    assert_eq!(list["slots"][0]["key_version"], 2);
    assert_eq!(data_region(&img), data);
    restores(&fx, &img, &unlock);
    // A second rewrap has nothing to do; a backup without --key-id is refused.
    let mut v = args(&["key", "rewrap", &img]);
    v.extend(args(&unlock));
    assert!(exec(0, &v).contains("already at the newest"));
    let mut v = args(&["backup", &fx.s("src"), "-o", &fx.s("x.coffer")]);
    v.extend(args(&unlock));
    exec(2, &v);
}

#[test]
fn argon2_costs_below_the_floor_are_refused() {
    let (fx, _) = setup();
    let base = ["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--passphrase-file", &fx.s("pass.txt")];
    for bad in [["--kdf-memory", "32"], ["--kdf-iterations", "0"], ["--kdf-time", "10"]] {
        let mut v = args(&base);
        v.extend(args(&bad));
        exec(2, &v);
    }
    assert!(!fx.path("x.coffer").exists());
    // An empty passphrase is refused too.
    fx.write_secret("empty.txt", "\n");
    exec(1, &args(&["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--passphrase-file", &fx.s("empty.txt")]));
}

#[test]
fn secret_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (fx, _) = setup();
    std::fs::set_permissions(fx.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = exec(1, &args(&["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--key-file", &fx.key()]));
    assert!(err.contains("readable by group or others") && err.contains("chmod 600"), "{err}");
    assert!(!fx.path("x.coffer").exists());
    exec(
        0,
        &args(&[
            "backup",
            &fx.s("src"),
            "-o",
            &fx.s("x.coffer"),
            "--key-file",
            &fx.key(),
            "--allow-insecure-key-file",
            "-q",
        ]),
    );
    std::fs::set_permissions(fx.s("pass.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    exec(1, &args(&["verify", &fx.s("x.coffer"), "--passphrase-file", &fx.s("pass.txt")]));
    // Generated identities are private.
    assert_eq!(std::fs::metadata(fx.path("id.key")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn identities_print_their_recipient_and_age_keys_work() {
    let (fx, recipient) = setup();
    assert_eq!(stdout_of(&["key", "recipient", &fx.s("id.key")]).trim(), recipient);
    let text = std::fs::read_to_string(fx.path("id.key")).unwrap();
    assert!(text.contains("COFFER-SECRET-KEY-1") && text.contains(&recipient));
    if !have("age-keygen") {
        return;
    }
    let out = std::process::Command::new("age-keygen").arg("-o").arg(fx.path("age.key")).output().unwrap();
    assert!(out.status.success());
    let age_text = std::fs::read_to_string(fx.path("age.key")).unwrap();
    let age_recipient = age_text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let img = fx.s("img.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "-r", &age_recipient, "-q"]));
    restores(&fx, &img, &["--identity", &fx.s("age.key")]);
    // age's own tool agrees that this is the same key pair.
    let r = stdout_of(&["key", "recipient", &fx.s("age.key")]);
    let y = std::process::Command::new("age-keygen").arg("-y").arg(fx.path("age.key")).output().unwrap();
    let age_y = String::from_utf8(y.stdout).unwrap();
    assert_eq!(
        coffer_crypto::Recipient::parse(r.trim()).unwrap(),
        coffer_crypto::Recipient::parse(age_y.trim()).unwrap()
    );
}

fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("COFFER_REQUIRE_AGE").is_some() {
        panic!("{tool} is required (COFFER_REQUIRE_AGE is set)");
    }
    found
}

/// The independent reader (contrib/reference/coffer_read.py, written from docs/FORMAT.md) opens
/// key, passphrase (Argon2id) and recipient (HPKE) slots, coffer's and age's identities alike.
#[test]
fn the_reference_reader_opens_every_slot_kind() {
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import zstandard; from cryptography.hazmat.primitives.kdf.argon2 import Argon2id"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_python {
        assert!(
            std::env::var_os("COFFER_REQUIRE_REFERENCE").is_none(),
            "python3 with cryptography>=44 and zstandard is required"
        );
        return;
    }
    let (fx, recipient) = setup();
    let img = fx.s("img.coffer");
    let mut v = args(&["backup", &fx.s("src"), "-o", &img, "--compress", "none", "--key-file", &fx.key()]);
    v.extend(args(&["--passphrase-file", &fx.s("pass.txt"), "-r", &recipient, "-q"]));
    v.extend(args(&KDF));
    let have_age = have("age-keygen");
    if have_age {
        std::process::Command::new("age-keygen").arg("-o").arg(fx.path("age.key")).output().unwrap();
        let text = std::fs::read_to_string(fx.path("age.key")).unwrap();
        v.extend(args(&["-r", text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap()]));
    }
    exec(0, &v);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/reference/coffer_read.py");
    let want = coffer_crypto::hex(&coffer_crypto::sha256(&std::fs::read(fx.path("src/db/t1.ibd")).unwrap()));
    let mut secrets =
        vec![vec![fx.key()], vec!["--passphrase".into(), fx.s("pass.txt")], vec!["--identity".into(), fx.s("id.key")]];
    if have_age {
        secrets.push(vec!["--identity".into(), fx.s("age.key")]);
    }
    for secret in secrets {
        let out = std::process::Command::new("python3").arg(&script).arg(&img).args(&secret).output().unwrap();
        assert!(out.status.success(), "{secret:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&want), "{secret:?}");
    }
    fx.write_secret("wrong.txt", "not it\n");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&img)
        .args(["--passphrase", &fx.s("wrong.txt")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

/// Runs coffer on a pseudo-terminal (through Python's pty module), answering each prompt as it
/// appears; returns (exit code, everything the terminal showed).
fn on_terminal(v: &[String], answers: &[(&str, &str)]) -> (i32, String) {
    const DRIVER: &str = r#"
import os, pty, sys
argv, answers = sys.argv[1:sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
def more():
    global out
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        chunk = b""
    out += chunk
    return chunk
for prompt, answer in zip(answers[::2], answers[1::2]):
    while prompt.encode() not in out:
        if not more():
            break
    out = out.replace(prompt.encode(), b"<" + prompt.encode().strip() + b">", 1)
    os.write(fd, answer.encode() + b"\n")
while more():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(DRIVER).arg(env!("CARGO_BIN_EXE_coffer")).args(v).arg("--");
    for (p, a) in answers {
        cmd.arg(p).arg(a);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn passphrases_are_asked_on_the_terminal_without_echo() {
    let (fx, _) = setup();
    let img = fx.s("img.coffer");
    let mut v = args(&["backup", &fx.s("src"), "-o", &img, "--passphrase", "-q"]);
    v.extend(args(&KDF));
    let (code, shown) = on_terminal(&v, &[("Passphrase: ", PASS), ("Repeat the passphrase: ", PASS)]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("<Passphrase:>") && shown.contains("<Repeat the passphrase:>"), "{shown}");
    assert!(!shown.contains(PASS), "echo is off: {shown}");
    restores(&fx, &img, &["--passphrase-file", &fx.s("pass.txt")]);
    let (code, shown) = on_terminal(&args(&["verify", &img, "--passphrase", "-q"]), &[("Passphrase: ", PASS)]);
    assert_eq!(code, 0, "{shown}");
    let (code, _) = on_terminal(&args(&["verify", &img, "--passphrase", "-q"]), &[("Passphrase: ", "nope")]);
    assert_eq!(code, 3);
    // Two different answers when creating: refused, no image.
    let mut v = args(&["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--passphrase", "-q"]);
    v.extend(args(&KDF));
    let (code, shown) = on_terminal(&v, &[("Passphrase: ", PASS), ("Repeat the passphrase: ", "other")]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("do not match"), "{shown}");
    assert!(!fx.path("x.coffer").exists());
    // No terminal at all (a new session has no controlling terminal): a usage error that
    // names the alternatives.
    let out = std::process::Command::new("setsid")
        .args(["-w", env!("CARGO_BIN_EXE_coffer"), "verify", &img, "--passphrase"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--passphrase-file"), "{err}");
}

/// An image whose costly passphrase slots come before its cheap one: slot 0 a key, slot 1
/// "costly" (Argon2id 1 GiB, 1 pass), slot 2 "three" (64 MiB, 3 passes), slot 3 PASS (64 MiB,
/// 1 pass). Slots are filled in order, so `key add` puts each after the last.
fn costly_first(fx: &Fixture) -> String {
    let img = fx.s("costly.coffer");
    exec(0, &args(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]));
    fx.write_secret("costly.txt", "a passphrase whose slot costs 1 GiB\n");
    fx.write_secret("three.txt", "a passphrase whose slot takes 3 passes\n");
    for (file, kdf) in [
        ("costly.txt", ["--kdf-memory", "1024", "--kdf-iterations", "1"]),
        ("three.txt", ["--kdf-memory", "64", "--kdf-iterations", "3"]),
        ("pass.txt", KDF),
    ] {
        let mut v = args(&["key", "add", &img, "--key-file", &fx.key(), "--new-passphrase-file", &fx.s(file), "-q"]);
        v.extend(args(&kdf));
        exec(0, &v);
    }
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&["key", "list", &img, "--json"])).unwrap();
    let costs: Vec<(u64, u64)> = v["slots"].as_array().unwrap()[1..]
        .iter()
        .map(|s| (s["kdf"]["memory_kib"].as_u64().unwrap(), s["kdf"]["iterations"].as_u64().unwrap()))
        .collect();
    assert_eq!(costs, [(1 << 20, 1), (65536, 3), (65536, 1)]);
    img
}

/// Runs coffer with its address space limited to `limit` bytes (RLIMIT_AS, as `ulimit -v`
/// does), so that an Argon2id memory above it cannot be allocated; `None` without prlimit. One
/// worker thread and few malloc arenas, so that the rest fits whatever the number of cores.
fn run_limited(limit: u64, v: &[&str]) -> Option<(Option<i32>, String)> {
    let prlimit = std::process::Command::new("prlimit").arg("--version").output();
    if !prlimit.is_ok_and(|o| o.status.success()) {
        eprintln!("prlimit (util-linux) not found: skipping the allocation test");
        return None;
    }
    let out = std::process::Command::new("prlimit")
        .arg(format!("--as={limit}"))
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .args(v)
        .args(["-j", "1"])
        .env_remove("COFFER_KEY_FILE")
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Some((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Enough address space for coffer and a 64 MiB Argon2id, not for a 1 GiB one.
const AS_LIMIT: u64 = 768 << 20;

/// A passphrase slot whose Argon2id memory cannot be had fails alone, on one line, and the
/// other slots are still tried (coffer used to abort: "memory allocation of 1073741824 bytes
/// failed", SIGABRT); and a cheap slot after it opens without it being tried at all.
#[test]
fn a_slot_whose_argon2_memory_cannot_be_had_fails_alone() {
    let (fx, _) = setup();
    let img = costly_first(&fx);
    fx.write_secret("wrong.txt", "not any slot's passphrase\n");
    let Some((code, err)) = run_limited(AS_LIMIT, &["list", &img, "--passphrase-file", &fx.s("wrong.txt")]) else {
        return;
    };
    assert_eq!(code, Some(3), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "coffer: warning: passphrase slot 1: cannot allocate 1024 MiB for Argon2id",
            "coffer: error: no key slot opens with the key given, and 1 passphrase slot was not tried \
             (passphrase slot 1: cannot allocate 1024 MiB for Argon2id): to try them, free memory (or raise \
             the process's memory limit)",
        ],
        "{err}"
    );
    // Slot 1's own passphrase cannot open it under that limit either: said, not an abort.
    let (code, err) = run_limited(AS_LIMIT, &["verify", &img, "--passphrase-file", &fx.s("costly.txt")]).unwrap();
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot allocate 1024 MiB"), "{err}");
    // The right passphrase of the cheap slot 3 opens it, and slot 1, costlier, is never tried:
    // no warning that its memory could not be had.
    let (code, err) = run_limited(AS_LIMIT, &["verify", &img, "--passphrase-file", &fx.s("pass.txt")]).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("slot"), "{err}");
}

#[test]
fn kdf_limits_skip_costly_slots_and_say_which_limit_to_raise() {
    let (fx, _) = setup();
    let img = costly_first(&fx);
    let list = |extra: &[&str]| {
        let mut v = args(&["list", &img]);
        v.extend(args(extra));
        v
    };
    let (costly, three) = (fx.s("costly.txt"), fx.s("three.txt"));
    // Above --kdf-max-memory: skipped with a warning naming the slot and its cost, and the
    // error says which limit to raise (exit 3, as for a wrong key, but not said to be one).
    let err = exec(3, &list(&["--passphrase-file", &costly, "--kdf-max-memory", "512M"]));
    let skipped = "passphrase slot 1 (Argon2id 1024 MiB, 1 pass) skipped: above --kdf-max-memory 512 MiB";
    assert!(err.starts_with(&format!("coffer: warning: {skipped}\ncoffer: error: ")), "{err}");
    assert!(err.contains("1 passphrase slot was not tried") && err.contains(&format!("({skipped})")), "{err}");
    assert!(err.contains("raise --kdf-max-memory (at most 4096 MiB)") && !err.contains("wrong key"), "{err}");
    // Above --kdf-max-passes likewise; the memory limit from the environment. With -q, the
    // error alone.
    let out = coffer()
        .args(list(&["--passphrase-file", &three, "--kdf-max-passes", "2", "-q"]))
        .env("COFFER_KDF_MAX_MEMORY", "512M")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), err.lines().count()), (Some(3), 1), "{err}");
    assert!(err.contains("2 passphrase slots were not tried"), "{err}");
    assert!(err.contains("passphrase slot 2 (Argon2id 64 MiB, 3 passes) skipped: above --kdf-max-passes 2"), "{err}");
    assert!(err.contains("raise --kdf-max-memory") && err.contains("raise --kdf-max-passes (at most 100)"), "{err}");
    // Within the limits the slot opens; slot 2, cheaper in memory × passes, comes before it
    // and is skipped on the way, with a warning.
    let err = exec(0, &list(&["--passphrase-file", &costly, "--kdf-max-memory", "1G", "--kdf-max-passes", "1"]));
    assert_eq!(
        err, "coffer: warning: passphrase slot 2 (Argon2id 64 MiB, 3 passes) skipped: above --kdf-max-passes 1\n",
        "{err}"
    );
    // Slot 2 opens before slot 1 is reached.
    let err = exec(0, &list(&["--passphrase-file", &three, "--kdf-max-memory", "512M"]));
    assert!(!err.contains("slot"), "{err}");
    // The cheapest slot opens under the lowest limits, and the costlier slots before it are
    // never reached: no warning.
    let err =
        exec(0, &list(&["--passphrase-file", &fx.s("pass.txt"), "--kdf-max-memory", "64M", "--kdf-max-passes", "1"]));
    assert!(!err.contains("slot"), "{err}");
    // Keys open key slots whatever the limits.
    exec(0, &list(&["--key-file", &fx.key(), "--kdf-max-memory", "64M"]));
    // Limits are checked: at least the floor, at most the ceiling, a size with its unit.
    for bad in [
        ["--kdf-max-memory", "8G"],
        ["--kdf-max-memory", "1024"],
        ["--kdf-max-passes", "0"],
        ["--kdf-max-passes", "101"],
    ] {
        exec(2, &list(&["--passphrase-file", &costly, bad[0], bad[1]]));
    }
}
