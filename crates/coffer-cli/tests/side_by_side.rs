//! Jobs on one repository (issue 26): prune fails closed on what it cannot read, trusts only
//! sealed descriptions with a key, keeps what other jobs use (their leases); backups started
//! together are all kept; an object name is never taken twice.

mod common;

use common::live;
use common::s3::S3;
use common::*;
use std::path::Path;
use std::process::Stdio;

/// A prefix of a `file://` store in the fixture.
fn prefix(fx: &Fixture, name: &str) -> String {
    std::fs::create_dir_all(fx.path(name)).unwrap();
    format!("file://{}/", fx.s(name))
}

/// The `*.coffer` objects under a `file://` prefix directory, sorted.
fn images(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".coffer"))
        .collect();
    v.sort();
    v
}

fn tree(fx: &Fixture, name: &str, bytes: usize) -> String {
    std::fs::create_dir_all(fx.path(name)).unwrap();
    let data: Vec<u8> = (0..bytes).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(fx.path(name).join("data"), data).unwrap();
    fx.s(name)
}

/// The prune's JSON plan: each backup's name and whether it is kept.
fn plan(stdout: &[u8]) -> Vec<(String, bool, Vec<String>)> {
    let v: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    v["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let reasons = b["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
            (b["name"].as_str().unwrap().to_owned(), b["keep"] == true, reasons)
        })
        .collect()
}

/// A catalog record (FORMAT.md §9, version 2) whose clear links claim a full backup: what
/// anyone who may only add objects to the bucket can write beside a junk object.
fn forged_record(id: &str) -> Vec<u8> {
    let links = format!(r#"{{"id":"{id}","kind":"full","full":"{id}","depth":0}}"#);
    let mut r = b"COFFERCR".to_vec();
    r.extend([2, 0, 0, 0]);
    r.extend([0x11; 16]);
    r.extend([0; 12]);
    r.extend(0u32.to_le_bytes());
    r.extend((links.len() as u32).to_le_bytes());
    r.extend(links.as_bytes());
    r.extend([0; 16]);
    r
}

/// Item 1: `--keep-pitr` keeps the backups taken in the window by their time, whatever their
/// descriptions say (here: directory backups, which record no binlog position). 1439a9e
/// deleted all four.
#[test]
fn keep_pitr_keeps_the_window_whatever_the_backups_say() {
    let fx = Fixture::new();
    let p = prefix(&fx, "repo");
    let src = tree(&fx, "src", 1000);
    // A second apart: names of their own on 1439a9e too (this test is about prune).
    for _ in 0..4 {
        expect(0, &["backup", &src, "-o", &p, "--key-file", &fx.key(), "-q"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(images(&fx.path("repo")).len(), 4);
    let out = coffer().args(["prune", &p, "--keep-pitr", "1h", "--json", "--key-file", &fx.key()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let planned = plan(&out.stdout);
    assert!(planned.iter().all(|(_, keep, r)| *keep && r.contains(&"pitr window".to_owned())), "{planned:?}");
    assert_eq!(images(&fx.path("repo")).len(), 4, "nothing deleted");

    // An object another key wrote (one that does not open): kept, and everything older with it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let other = fx.s("other.key");
    expect(0, &["backup", &src, "-o", &p, "--key-file", &other, "-q"]);
    let out = coffer().args(["prune", &p, "--keep-last", "1", "--json", "--key-file", &fx.key()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let planned = plan(&out.stdout);
    assert!(planned.iter().all(|(_, keep, _)| *keep), "{planned:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept, with every backup older than it"), "{err}");
    assert_eq!(images(&fx.path("repo")).len(), 5);
}

/// Item 2: junk objects named in the future, each with a forged record claiming a full, take
/// no keep slot from real signed backups, with or without a key. 1439a9e kept the junk in the
/// three `--keep-last` slots and deleted the three real backups.
#[test]
fn junk_named_in_the_future_takes_no_place_of_a_real_backup() {
    let fx = Fixture::new();
    let p = prefix(&fx, "repo");
    let src = tree(&fx, "src", 1000);
    let (_, signer, _) = run(&["key", "generate", "--signing", "-o", &fx.s("b.sig"), "-q"]);
    let signer = String::from_utf8(signer).unwrap().trim().to_owned();
    for _ in 0..3 {
        expect(0, &["backup", &src, "-o", &p, "--key-file", &fx.key(), "--signing-key", &fx.s("b.sig"), "-q"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let real = images(&fx.path("repo"));
    for d in 1..=3 {
        let name = format!("2099-01-0{d}T00-00-00Z.coffer");
        std::fs::write(fx.path("repo").join(&name), b"junk").unwrap();
        std::fs::write(fx.path("repo").join(format!("{name}.meta")), forged_record(&format!("{d:032x}"))).unwrap();
    }
    let keyed = ["--key-file", &fx.key(), "--require-signer", &signer];
    for key in [&keyed[..], &keyed[..2], &[]] {
        let mut args = vec!["prune", &p, "--keep-last", "3", "--json"];
        args.extend(key);
        let out = coffer().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let planned = plan(&out.stdout);
        for name in &real {
            assert!(planned.iter().any(|(n, keep, _)| n == name && *keep), "{args:?}: {name} {planned:?}");
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("2099-01-03T00-00-00Z.coffer"), "{err}");
    }
    assert_eq!(images(&fx.path("repo")).len(), 6, "nothing was deleted");
    // Monitoring sees what holds pruning back.
    let prom = fx.s("prune.prom");
    expect(0, &["prune", &p, "--keep-last", "3", "--key-file", &fx.key(), "--metrics-file", &prom, "-q"]);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("coffer_prune_backups_unreadable{command=\"prune\"} 3"), "{text}");
}

/// Backups started in the same second under one prefix are all kept, under names of their own
/// (1439a9e: one image, the others failed with "already exists").
#[test]
fn backups_started_together_are_all_kept() {
    let fx = Fixture::new();
    let p = prefix(&fx, "repo");
    let src = tree(&fx, "src", 100_000);
    let children: Vec<_> = (0..4)
        .map(|_| {
            coffer()
                .args(["backup", &src, "-o", &p, "--key-file", &fx.key(), "-q"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let names = images(&fx.path("repo"));
    assert_eq!(names.len(), 4, "{names:?}");
    for n in &names {
        expect(0, &["verify", &format!("{p}{n}"), "--key-file", &fx.key(), "-q"]);
    }
    // One object name, two backups: the first to complete wins; nothing of the other is left.
    let big = tree(&fx, "big", 12 << 20);
    let spawn = |src: &str, pause: &str| {
        coffer()
            .args(["backup", src, "-o", &format!("{p}x.coffer"), "--key-file", &fx.key(), "--compress", "none"])
            .args(["--part-size", "5M", "-q"])
            .env("COFFER_TEST_PAUSE_BEFORE_CREATE_MS", pause)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (slow, fast) = (spawn(&big, "2000"), spawn(&src, "0"));
    let (slow, fast) = (slow.wait_with_output().unwrap(), fast.wait_with_output().unwrap());
    assert_eq!((slow.status.code(), fast.status.code()), (Some(1), Some(0)), "{slow:?} {fast:?}");
    assert!(String::from_utf8_lossy(&slow.stderr).contains("already exists"), "{slow:?}");
    let listing = coffer().args(["list", &format!("{p}x.coffer"), "--key-file", &fx.key()]).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("data"), "{listing:?}");
    let left: Vec<String> = std::fs::read_dir(fx.path("repo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| n.ends_with(".coffer") || n.ends_with(".coffer.meta")),
        "no staging file left: {left:?}"
    );
    assert_eq!(left.len(), 10, "5 images and their records: {left:?}");
}

/// On S3 too; and two backups to one object name: the first to complete wins, whole; the
/// other fails in one line and leaves nothing (1439a9e: both succeeded, the later silently
/// replacing the first).
#[test]
fn an_object_name_is_never_taken_twice() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("side");
    let fx = Fixture::new();
    let small = tree(&fx, "small", 50_000);
    let children: Vec<_> = (0..3)
        .map(|_| {
            s3.coffer()
                .args(["backup", &small, "-o", "s3://side/p/", "--key-file", &fx.key(), "-q"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = s3.coffer().args(["catalog", "s3://side/p/", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3, "{out:?}");

    // Two images to one name, started together (both find the name free), each a multipart
    // upload: the first to complete wins (the other is held back before its completion); the
    // other's completion is refused.
    let a = tree(&fx, "a", 12 << 20);
    let b = tree(&fx, "b", 12 << 20);
    std::fs::write(fx.path("b/which"), b"b").unwrap();
    let spawn = |src: &str, pause: &str| {
        s3.coffer()
            .args(["backup", src, "-o", "s3://side/one.coffer", "--key-file", &fx.key(), "--compress", "none"])
            .args(["--part-size", "5M", "-q"])
            .env("COFFER_TEST_PAUSE_BEFORE_CREATE_MS", pause)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a, "3000"), spawn(&b, "0"));
    let (oa, ob) = (ca.wait_with_output().unwrap(), cb.wait_with_output().unwrap());
    assert_eq!((oa.status.code(), ob.status.code()), (Some(1), Some(0)), "{oa:?} {ob:?}");
    let err = String::from_utf8_lossy(&oa.stderr);
    assert!(err.lines().count() == 1 && err.contains("already exists"), "{err}");
    // What is there is the winner's image, whole.
    let to = fx.path("restored");
    s3.expect(0, &["restore", "s3://side/one.coffer", "--to", to.to_str().unwrap(), "--key-file", &fx.key(), "-q"]);
    assert!(to.join("which").exists(), "the first to complete won");
    assert_eq!(s3.uploads_in_progress("side"), 0, "the loser's upload was aborted");
}

/// A prune runs one at a time: another prune's lease in force refuses it (a dead prune's lease
/// expires); a lease naming a backup keeps it.
#[test]
fn leases_keep_what_they_name_and_prunes_run_alone() {
    let fx = Fixture::new();
    let p = prefix(&fx, "repo");
    let src = tree(&fx, "src", 1000);
    for _ in 0..3 {
        expect(0, &["backup", &src, "-o", &p, "--key-file", &fx.key(), "-q"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let names = images(&fx.path("repo"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::create_dir_all(fx.path("repo/leases")).unwrap();
    let lease = |job: &str, protects: &[&String]| {
        serde_json::json!({"job": job, "host": "elsewhere", "pid": 7, "started": now, "expires": now + 300, "protects": protects})
            .to_string()
    };
    std::fs::write(fx.path("repo/leases/prune-0123456789abcdef.json"), lease("prune", &[])).unwrap();
    let err = expect(1, &["prune", &p, "--keep-last", "1", "--key-file", &fx.key()]);
    assert!(err.contains("another prune is running") && err.contains("prune on elsewhere (pid 7)"), "{err}");
    assert_eq!(images(&fx.path("repo")).len(), 3);
    std::fs::remove_file(fx.path("repo/leases/prune-0123456789abcdef.json")).unwrap();

    // The oldest is in use by a restore elsewhere: kept.
    std::fs::write(fx.path("repo/leases/restore-0123456789abcdef.json"), lease("restore", &[&names[0]])).unwrap();
    let out = coffer().args(["prune", &p, "--keep-last", "1", "--json", "--key-file", &fx.key()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let planned = plan(&out.stdout);
    let oldest = planned.iter().find(|(n, _, _)| *n == names[0]).unwrap();
    assert!(oldest.1 && oldest.2.iter().any(|r| r == "in use by restore on elsewhere (pid 7)"), "{planned:?}");
    assert_eq!(images(&fx.path("repo")), [names[0].clone(), names[2].clone()]);
    // The prune's own lease is gone.
    let left: Vec<_> = std::fs::read_dir(fx.path("repo/leases")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A restore keeps what it reads from a prune that runs meanwhile (its lease names it); a
/// backup deleted under a restore anyway (by hand) fails it in one line, leaving its marker.
#[test]
fn a_prune_keeps_what_a_restore_reads() {
    let fx = Fixture::new();
    let p = prefix(&fx, "repo");
    let src = tree(&fx, "src", 48 << 20);
    expect(0, &["backup", &src, "-o", &p, "--key-file", &fx.key(), "--compress", "none", "-q"]);
    let old = images(&fx.path("repo")).remove(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    expect(0, &["backup", &src, "-o", &p, "--key-file", &fx.key(), "-q"]);
    // A slow restore of the older one (8 MiB/s: about 6 s), reading 5 MiB ahead of its
    // pipeline at most.
    let slow_read = ["--limit-rate", "8M", "--part-size", "5M", "--upload-concurrency", "1", "-q"];
    let to = fx.path("restored");
    let url = format!("{p}{old}");
    let slow = coffer()
        .args(["restore", &url, "--to", to.to_str().unwrap(), "--key-file", &fx.key()])
        .args(slow_read)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lease(&fx.path("repo/leases"), "restore");
    let out = coffer().args(["prune", &p, "--keep-last", "1", "--json", "--key-file", &fx.key()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(plan(&out.stdout).iter().all(|(_, keep, _)| *keep), "{out:?}");
    let done = slow.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(std::fs::read(to.join("data")).unwrap(), std::fs::read(fx.path("src/data")).unwrap());

    // Deleted under the restore by someone who ignores leases: one line, and the target says
    // it is incomplete.
    let to2 = fx.path("restored2");
    let slow = coffer()
        .args(["restore", &url, "--to", to2.to_str().unwrap(), "--key-file", &fx.key()])
        .args(slow_read)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lease(&fx.path("repo/leases"), "restore");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::remove_file(fx.path("repo").join(&old)).unwrap();
    let done = slow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(err.trim().lines().count() == 1 && err.contains("does not exist"), "{err}");
    assert!(to2.join(".coffer-restore-incomplete").exists(), "{err}");
}

/// Waits until a lease of `job` is under `dir`.
fn wait_for_lease(dir: &Path, job: &str) {
    for _ in 0..200 {
        let found = std::fs::read_dir(dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{job}-"))))
            .unwrap_or(false);
        if found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no lease of a {job} appeared under {}", dir.display());
}

/// Waits (10 s at most) for the lease of a running `job` under `dir` that names `name`; then
/// goes on whatever (a coffer without leases shows what a prune does meanwhile).
fn wait_for_lease_naming(dir: &Path, job: &str, name: &str) {
    for _ in 0..200 {
        let named = std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.starts_with(&format!("{job}-")) && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(name))
        });
        if named {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("no lease of a {job} naming {name} appeared under {}", dir.display());
}

/// A prune that runs while an incremental is taken keeps its parent (the backup's lease names
/// it), though no rule keeps it; a parent deleted anyway (by hand, ignoring leases) fails the
/// backup in one line before its image is kept. 1439a9e deleted the parent and kept an
/// incremental that could not be restored.
#[test]
fn a_prune_keeps_the_parent_of_a_backup_in_progress() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let port = live::free_port();
    let server = live::source(&fx, port, &[]);
    let p = prefix(&fx, "repo");
    live::coffer_ok(&live::backup_args(&fx, port, &p));
    let full = images(&fx.path("repo")).remove(0);
    // A newer backup of something else: `--keep-last 1` keeps it, not the full.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let other = tree(&fx, "notes", 1000);
    expect(0, &["backup", &other, "-o", &p, "--key-file", &fx.key(), "-q"]);
    live::sysbench(&server, "run", &["--time=2"]).wait().unwrap();

    let slow = |fx: &Fixture| {
        let mut args = live::backup_args(fx, port, &p);
        args.extend(["--incremental", "--limit-rate", "1M", "-q"].map(String::from));
        coffer().args(&args).stderr(Stdio::piped()).spawn().unwrap()
    };
    let backup = slow(&fx);
    wait_for_lease_naming(&fx.path("repo/leases"), "backup", &full);
    let out = coffer().args(["prune", &p, "--keep-last", "1", "--json", "--key-file", &fx.key()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let planned = plan(&out.stdout);
    let kept = planned.iter().find(|(n, _, _)| *n == full).unwrap();
    assert!(kept.1 && kept.2.iter().any(|r| r.starts_with("in use by backup on")), "{planned:?}");
    let done = backup.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    let now = images(&fx.path("repo"));
    let inc = now.iter().find(|n| **n != full && !planned.iter().any(|(p, _, _)| p == *n)).unwrap().clone();
    expect(0, &["verify", &format!("{p}{inc}"), "--chain", "--key-file", &fx.key(), "-q"]);

    // The incremental's parent deleted under the next one: refused before it is kept.
    live::sysbench(&server, "run", &["--time=1"]).wait().unwrap();
    let backup = slow(&fx);
    wait_for_lease_naming(&fx.path("repo/leases"), "backup", &inc);
    std::fs::remove_file(fx.path("repo").join(&inc)).unwrap();
    let done = backup.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("its parent {p}{inc} was deleted while it ran")), "{err}");
    let after = images(&fx.path("repo"));
    assert_eq!(after.len(), now.len() - 1, "no image kept: {after:?}");
}
