//! Issue 28, part 1: the object store errs and stalls. Every job that touches a store (and
//! needs no database server) runs through a fault-injecting proxy (crates/fault-proxy) in front
//! of a real S3 server (moto). Transient faults change no result; an outage longer than the
//! retry policy fails the job on one line, leaves nothing that looks complete, and the same
//! command run again once the store answers finishes the job. Every test counts the faults it
//! injected, so none passes without them. Skipped when moto_server is missing, unless
//! COFFER_REQUIRE_S3=1 (CI).

mod common;

use common::s3::S3;
use common::*;
use fault_proxy::{Fault, Kind, Proxy, Rule, When};
use std::process::Stdio;
use std::time::Duration;

/// About 30 MB in a few files (random: it does not compress), so 5 MiB parts make several.
fn tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("db/sub")).unwrap();
    for (name, len) in [("db/t1.dat", 17 << 20), ("db/t2.dat", 11 << 20), ("db/sub/s", 100), ("db/z", 70_000)] {
        let mut v = vec![0u8; len];
        coffer_crypto::random(&mut v).unwrap();
        std::fs::write(root.join(name), v).unwrap();
    }
}

const PARTS: [&str; 4] = ["--part-size", "5M", "--upload-concurrency", "2"];
/// A short retry policy: an outage of a few seconds outlasts it.
const SHORT: [&str; 6] = ["--store-retries", "2", "--store-retry-timeout", "2", "--store-timeout", "2"];

/// Runs coffer through `proxy` with `args` (and PARTS); exit code, stdout, stderr.
fn via(s3: &S3, proxy: &Proxy, args: &[&str]) -> (i32, Vec<u8>, String) {
    via_env(s3, proxy, &[], args)
}

/// As [`via`], with `env` set for coffer.
fn via_env(s3: &S3, proxy: &Proxy, env: &[(&str, &str)], args: &[&str]) -> (i32, Vec<u8>, String) {
    let mut c = s3.through(proxy);
    let out = c.envs(env.iter().copied()).args(args).args(PARTS).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[track_caller]
fn ok(s3: &S3, proxy: &Proxy, args: &[&str]) -> (Vec<u8>, String) {
    let (code, out, err) = via(s3, proxy, args);
    assert_eq!(code, 0, "coffer {args:?}: {err}\nproxy: {}", proxy.report());
    (out, err)
}

/// A failure on one line (the `coffer: error:` line), exit `code`; returns that line.
#[track_caller]
fn fails(s3: &S3, proxy: &Proxy, code: i32, args: &[&str]) -> String {
    let (got, _, err) = via(s3, proxy, args);
    assert_eq!(got, code, "coffer {args:?}: {err}\nproxy: {}", proxy.report());
    eprint!("{}: ", args[0]);
    error_line(&err)
}

/// Transient faults of every kind, a few percent each: every job succeeds with exact results.
#[test]
fn transient_faults_change_no_result() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(28);
    let transient = vec![
        // Done by the store, an error to the client: the first copy of a part, the first delete.
        Rule::new(&[Kind::CopyPart, Kind::Delete], Fault::Forward500, When::Nth(1)),
        // The 2nd and 4th request of every kind, whatever the dice say: no kind goes untried.
        Rule::new(&[], Fault::Mix, When::Nth(2)),
        Rule::new(&[], Fault::SlowDownRetryAfter, When::Nth(4)),
        Rule::new(&[], Fault::Mix, When::Chance(0.05)),
        Rule::new(&[Kind::Get], Fault::Short, When::Chance(0.04)),
        Rule::new(&[Kind::Get], Fault::ResetBody, When::Chance(0.03)),
        Rule::new(&[], Fault::SlowDownRetryAfter, When::Chance(0.02)),
        Rule::new(&[], Fault::Status503, When::Chance(0.02)),
    ];
    proxy.set_rules(transient.clone());
    let (k, k2, src) = (fx.key(), fx.s("other.key"), fx.s("src"));
    let img = "s3://bkt/p/one.coffer";
    ok(&s3, &proxy, &["backup", &src, "-o", img, "--key-file", &k]);
    std::thread::sleep(Duration::from_millis(1100));
    let (_, err) = ok(&s3, &proxy, &["backup", &src, "-o", "s3://bkt/p/", "--key-file", &k]);
    let second = err.split(" to ").nth(1).and_then(|r| r.split(": ").next()).unwrap().to_owned();
    ok(&s3, &proxy, &["verify", img, "--key-file", &k]);
    // A GET that stalls longer than --store-timeout is abandoned and sent again.
    proxy.set_stall(Duration::from_secs(8));
    let mut stalling = transient.clone();
    stalling.insert(0, Rule::new(&[Kind::Get], Fault::Stall, When::Nth(proxy.seen(Kind::Get) + 2)));
    proxy.set_rules(stalling);
    ok(&s3, &proxy, &["restore", img, "--to", &fx.s("dst"), "--key-file", &k, "--store-timeout", "2"]);
    assert_eq!(proxy.injected(Some(Kind::Get), Some(Fault::Stall)), 1);
    proxy.set_rules(transient);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
    ok(&s3, &proxy, &["extract", &second, "db/t2.dat", "--to", &fx.s("x"), "--key-file", &k]);
    assert!(std::fs::read(fx.path("x/db/t2.dat")).unwrap() == std::fs::read(fx.path("src/db/t2.dat")).unwrap());
    let (out, _) = ok(&s3, &proxy, &["catalog", "s3://bkt/p/", "--json", "--key-file", &k]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    // Header-only changes (UploadPartCopy) and a rekey.
    ok(&s3, &proxy, &["key", "rotate", img, "--key-file", &k, "--new-key-file", &k2]);
    ok(&s3, &proxy, &["verify", img, "--key-file", &k2]);
    ok(&s3, &proxy, &["key", "add", img, "--key-file", &k2, "--new-key-file", &k]);
    ok(&s3, &proxy, &["rekey", img, "-o", "s3://bkt/re.coffer", "--key-file", &k, "--new-key-file", &k2]);
    ok(&s3, &proxy, &["restore", "s3://bkt/re.coffer", "--to", &fx.s("re"), "--key-file", &k2]);
    assert_eq!(snapshot(&fx.path("re")), snapshot(&fx.path("src")));
    ok(&s3, &proxy, &["prune", "s3://bkt/p/", "--keep-last", "1", "--key-file", &k]);
    let kept: Vec<String> = s3.keys("bkt", "p/").into_iter().filter(|k| k.ends_with(".coffer")).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(second.ends_with(&kept[0]), "the newest is kept: {kept:?}");
    assert_eq!(s3.uploads_in_progress("bkt"), 0);
    eprintln!("proxy: {}", proxy.report());
    let kinds = [Kind::Get, Kind::Head, Kind::Put, Kind::Part, Kind::CopyPart, Kind::Create, Kind::Complete];
    for kind in kinds.into_iter().chain([Kind::List, Kind::Delete]) {
        assert!(proxy.injected(Some(kind), None) > 0, "no fault on {kind:?}: {}", proxy.report());
    }
    assert!(proxy.injected(None, Some(Fault::Short)) > 0 && proxy.injected(None, Some(Fault::Reset)) > 0);
    assert_eq!(proxy.injected(None, Some(Fault::Forward500)), 2, "{}", proxy.report());
}

/// The backup's objects under a prefix: images and records, by name.
fn stored(s3: &S3, prefix: &str) -> Vec<String> {
    let mut keys = s3.keys("bkt", prefix);
    keys.sort();
    keys
}

/// A backup whose parts, or whose completion, fail for longer than the retry policy: one line
/// naming the object, no object, no upload left in progress; the same command then succeeds.
#[test]
fn a_backup_through_an_outage_leaves_nothing_and_reruns() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(1);
    let (k, src) = (fx.key(), fx.s("src"));
    let img = "s3://bkt/o/db.coffer";
    let mut args = vec!["backup", &src, "-o", img, "--key-file", &k];
    args.extend(SHORT);
    let cases =
        [(Kind::Part, Fault::Status503, 3), (Kind::Part, Fault::Reset, 3), (Kind::Complete, Fault::Status500, 1)];
    for (kind, fault, nth) in cases {
        // From the nth request of its kind on: the upload has begun.
        let from = proxy.seen(kind) + nth;
        proxy.set_rules((from..from + 200).map(|n| Rule::new(&[kind], fault, When::Nth(n))).collect());
        let line = fails(&s3, &proxy, 1, &args);
        assert!(line.contains(img), "names the object: {line}");
        assert!(proxy.injected(Some(kind), Some(fault)) > 0, "{}", proxy.report());
        assert_eq!(stored(&s3, "o/"), Vec::<String>::new(), "{kind:?} {fault:?}: nothing stored");
        assert_eq!(s3.uploads_in_progress("bkt"), 0, "{kind:?} {fault:?}: the upload was aborted");
    }
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &args);
    ok(&s3, &proxy, &["restore", img, "--to", &fx.s("dst"), "--key-file", &k]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
}

/// The store completes an upload, or stores a record, and the client sees an error: the retry
/// finds the name taken. coffer tells its own object from another's: success, not "already
/// exists", and nothing deleted.
#[test]
fn a_completion_the_store_did_but_the_client_missed_is_success() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(2);
    let (k, src) = (fx.key(), fx.s("src"));
    for (i, (kind, fault)) in [
        (Kind::Complete, Fault::Forward500),
        (Kind::Complete, Fault::ForwardReset),
        (Kind::Put, Fault::Forward500),
        (Kind::Put, Fault::ForwardReset),
    ]
    .into_iter()
    .enumerate()
    {
        let img = format!("s3://bkt/c/{i}.coffer");
        proxy.set_rules(vec![Rule::new(&[kind], fault, When::Nth(proxy.seen(kind) + 1))]);
        let (_, err) = ok(&s3, &proxy, &["backup", &src, "-o", &img, "--key-file", &k]);
        assert_eq!(proxy.injected(Some(kind), Some(fault)), 1, "{kind:?} {fault:?}: {}", proxy.report());
        assert!(!err.contains("already exists"), "{err}");
        proxy.set_rules(Vec::new());
        ok(&s3, &proxy, &["verify", &img, "--key-file", &k]);
        let meta = format!("c/{i}.coffer.meta");
        assert!(stored(&s3, "c/").contains(&meta), "the record is there: {:?}", stored(&s3, "c/"));
    }
    // A small image is one PUT (If-None-Match), whose answer is lost.
    std::fs::write(fx.path("small"), b"a few bytes").unwrap();
    proxy.set_rules(vec![Rule::new(&[Kind::Put], Fault::Forward500, When::Nth(proxy.seen(Kind::Put) + 1))]);
    ok(&s3, &proxy, &["backup", &fx.s("small"), "-o", "s3://bkt/c/small.coffer", "--key-file", &k]);
    assert_eq!(proxy.injected(Some(Kind::Put), Some(Fault::Forward500)), 2);
    ok(&s3, &proxy, &["verify", "s3://bkt/c/small.coffer", "--key-file", &k]);
    // Its connection reset, before the store had it or after: sent again (the condition makes
    // that safe), and the second case found to be coffer's own.
    for (i, fault) in [Fault::Reset, Fault::ForwardReset].into_iter().enumerate() {
        let before = proxy.injected(Some(Kind::Put), Some(fault));
        proxy.set_rules(vec![Rule::new(&[Kind::Put], fault, When::Nth(proxy.seen(Kind::Put) + 1))]);
        let img = format!("s3://bkt/c/reset{i}.coffer");
        ok(&s3, &proxy, &["backup", &fx.s("small"), "-o", &img, "--key-file", &k]);
        assert_eq!(proxy.injected(Some(Kind::Put), Some(fault)), before + 1, "{}", proxy.report());
        ok(&s3, &proxy, &["verify", &img, "--key-file", &k]);
    }
    // Another's object under the name is still refused.
    let line = fails(&s3, &proxy, 1, &["backup", &src, "-o", "s3://bkt/c/0.coffer", "--key-file", &k]);
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(s3.uploads_in_progress("bkt"), 0);
}

/// Every request of `kinds` from the next `after`-th on (per kind) fails with `fault`: an outage
/// that outlasts the short retry policy.
fn outage(proxy: &Proxy, kinds: &[Kind], fault: Fault, after: u64) {
    let mut rules = Vec::new();
    for kind in kinds {
        let from = proxy.seen(*kind) + after;
        rules.extend((from..from + 500).map(|n| Rule::new(&[*kind], fault, When::Nth(n))));
    }
    proxy.set_rules(rules);
}

/// Reads through an outage: restore, extract, verify, catalog fail on one line naming the
/// object; a restore leaves its marker; each, run again, finishes.
#[test]
fn reads_through_an_outage_fail_in_one_line_and_rerun() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(3);
    let (k, src) = (fx.key(), fx.s("src"));
    let img = "s3://bkt/r/db.coffer";
    ok(&s3, &proxy, &["backup", &src, "-o", img, "--key-file", &k]);
    let (dst, x) = (fx.s("dst"), fx.s("x"));
    let jobs: [&[&str]; 3] = [
        &["restore", img, "--to", &dst, "--key-file", &k],
        &["extract", img, "db/t1.dat", "--to", &x, "--key-file", &k],
        &["verify", img, "--key-file", &k],
    ];
    for (job, fault) in jobs.iter().zip([Fault::Status500, Fault::Reset, Fault::Short]) {
        // The store goes at the job's last read (counted on a run without faults): the job is
        // well under way, its data partly read.
        let before = proxy.seen(Kind::Get);
        let mut probe = job.to_vec();
        let elsewhere = fx.s("probe");
        if let Some(to) = probe.iter().position(|a| *a == "--to") {
            probe[to + 1] = &elsewhere;
        }
        ok(&s3, &proxy, &probe);
        let _ = std::fs::remove_dir_all(fx.path("probe"));
        outage(&proxy, &[Kind::Get], fault, proxy.seen(Kind::Get) - before);
        let mut args = job.to_vec();
        args.extend(SHORT);
        let line = fails(&s3, &proxy, 1, &args);
        assert!(line.contains(img), "names the object: {line}");
        assert!(proxy.injected(Some(Kind::Get), Some(fault)) > 0, "{}", proxy.report());
        if job[0] == "restore" {
            assert!(fx.path("dst/.coffer-restore-incomplete").exists(), "the restore is marked incomplete");
            assert!(std::fs::read_dir(fx.path("dst")).unwrap().count() > 1, "the restore had begun");
        }
        if job[0] == "extract" {
            let got = std::fs::read(fx.path("x/db/t1.dat")).unwrap_or_default();
            assert!(got != std::fs::read(fx.path("src/db/t1.dat")).unwrap(), "not whole");
        }
        proxy.set_rules(Vec::new());
        // The same command finishes the job (a restore continues the one its marker names).
        ok(&s3, &proxy, job);
    }
    assert!(!fx.path("dst/.coffer-restore-incomplete").exists());
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
    assert!(std::fs::read(fx.path("x/db/t1.dat")).unwrap() == std::fs::read(fx.path("src/db/t1.dat")).unwrap());
    // A listing that fails: the catalog says so on one line.
    outage(&proxy, &[Kind::List], Fault::SlowDown, 1);
    let mut args = vec!["catalog", "s3://bkt/r/", "--key-file", &k];
    args.extend(SHORT);
    let line = fails(&s3, &proxy, 1, &args);
    assert!(line.contains("s3://bkt/r/") && line.contains("SlowDown"), "{line}");
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &args);
}

/// Backups of a small tree under `p/`, named by time, and more than a page of other objects
/// after them (a listing of the prefix takes two pages).
fn prefix_with_two_pages(s3: &S3, proxy: &Proxy, fx: &Fixture) -> Vec<String> {
    std::fs::create_dir_all(fx.path("small")).unwrap();
    std::fs::write(fx.path("small/a"), b"data").unwrap();
    let names: Vec<String> = (1..=3).map(|d| format!("p/2026-11-0{d}T00-00-00Z.coffer")).collect();
    for n in &names {
        ok(s3, proxy, &["backup", &fx.s("small"), "-o", &format!("s3://bkt/{n}"), "--key-file", &fx.key()]);
    }
    for i in 0..1001 {
        assert_eq!(s3.http("PUT", &format!("/bkt/p/zz-{i:04}.txt"), b"x").unwrap().0, 200);
    }
    names
}

/// Prune deletes nothing after a read it could not complete: the listing's second page, or a
/// catalog record; a prune whose deletions fail says so, and the same command finishes.
#[test]
fn prune_deletes_nothing_after_a_failed_read() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    let proxy = s3.proxy(4);
    let names = prefix_with_two_pages(&s3, &proxy, &fx);
    let k = fx.key();
    let all = stored(&s3, "p/2");
    assert_eq!(all.len(), 6, "3 images and their records: {all:?}");
    let mut prune = vec!["prune", "s3://bkt/p/", "--keep-last", "1", "--key-file", &k];
    prune.extend(SHORT);
    // The second page of the listing fails.
    outage(&proxy, &[Kind::ListNext], Fault::Status500, 1);
    let line = fails(&s3, &proxy, 1, &prune);
    assert!(line.contains("s3://bkt/p/"), "{line}");
    assert!(proxy.injected(Some(Kind::ListNext), None) > 0, "{}", proxy.report());
    assert_eq!(stored(&s3, "p/2"), all, "nothing deleted");
    // Records that cannot be read (every GET after the prune's read of its own lease fails).
    outage(&proxy, &[Kind::Get], Fault::Reset, 2);
    let (code, _, err) = via(&s3, &proxy, &prune);
    assert!(code == 0 && err.contains("keep (cannot be read)"), "exit {code}: {err}");
    assert!(proxy.injected(Some(Kind::Get), Some(Fault::Reset)) > 0, "{}", proxy.report());
    assert_eq!(stored(&s3, "p/2"), all, "nothing deleted (exit {code}): {err}");
    // Deletions that fail: said on one line; what is left is whole backups (image and record).
    outage(&proxy, &[Kind::Delete], Fault::Status503, 2);
    fails(&s3, &proxy, 1, &prune);
    assert!(proxy.injected(Some(Kind::Delete), None) > 0, "{}", proxy.report());
    let left = stored(&s3, "p/2");
    for n in &names {
        let image = left.contains(n);
        assert!(image || !left.contains(&format!("{n}.meta")), "a record without its image: {left:?}");
    }
    assert!(left.contains(&names[2]) && left.contains(&format!("{}.meta", names[2])), "the newest kept: {left:?}");
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &prune);
    assert_eq!(stored(&s3, "p/2"), [names[2].clone(), format!("{}.meta", names[2])]);
    ok(&s3, &proxy, &["verify", &format!("s3://bkt/{}", names[2]), "--key-file", &k]);
}

/// Which of `keys` open `img` (verify exits 0), through no fault.
fn opens(s3: &S3, proxy: &Proxy, img: &str, keys: &[&str]) -> Vec<bool> {
    proxy.set_rules(Vec::new());
    keys.iter().map(|k| via(s3, proxy, &["verify", img, "--key-file", k]).0 == 0).collect()
}

/// A header rotation on an object (UploadPartCopy of the rest, a conditional completion) that
/// fails half-way leaves the old header or the new one, never neither; a completion the store
/// did but the client missed is success; a rekey through an outage leaves no object.
#[test]
fn header_rotations_through_faults_leave_one_header() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(5);
    let (k1, k2) = (fx.key(), fx.s("other.key"));
    let img = "s3://bkt/k/db.coffer";
    ok(&s3, &proxy, &["backup", &fx.s("src"), "-o", img, "--key-file", &k1]);
    let mut rotate = vec!["key", "rotate", img, "--key-file", &k1, "--new-key-file", &k2];
    rotate.extend(SHORT);
    // Part copies, the first part, or the completion fail for longer than the retry policy.
    for (kind, fault, after) in
        [(Kind::CopyPart, Fault::Status503, 1), (Kind::Part, Fault::Reset, 1), (Kind::Complete, Fault::SlowDown, 1)]
    {
        outage(&proxy, &[kind], fault, after);
        let line = fails(&s3, &proxy, 1, &rotate);
        assert!(line.contains(img), "{line}");
        assert!(proxy.injected(Some(kind), Some(fault)) > 0, "{}", proxy.report());
        assert_eq!(opens(&s3, &proxy, img, &[&k1, &k2]), [true, false], "{kind:?}: the old header stays");
        assert_eq!(s3.uploads_in_progress("bkt"), 0, "{kind:?}: the upload was aborted");
    }
    // The store completes the rotation and the client sees an error.
    proxy.set_rules(vec![Rule::new(&[Kind::Complete], Fault::Forward500, When::Nth(proxy.seen(Kind::Complete) + 1))]);
    let (code, _, err) = via(&s3, &proxy, &rotate);
    assert_eq!(proxy.injected(Some(Kind::Complete), Some(Fault::Forward500)), 1);
    assert_eq!(opens(&s3, &proxy, img, &[&k1, &k2]), [false, true], "the new header");
    assert_eq!(code, 0, "the rotation happened; coffer says so: {err}");
    // A key added the same way: both keys open it.
    proxy.set_rules(vec![Rule::new(&[Kind::Complete], Fault::ForwardReset, When::Nth(proxy.seen(Kind::Complete) + 1))]);
    let mut add = vec!["key", "add", img, "--key-file", &k2, "--new-key-file", &k1];
    add.extend(SHORT);
    let (code, _, err) = via(&s3, &proxy, &add);
    assert_eq!(proxy.injected(Some(Kind::Complete), Some(Fault::ForwardReset)), 1);
    assert_eq!(opens(&s3, &proxy, img, &[&k1, &k2]), [true, true], "both slots");
    assert_eq!(code, 0, "{err}");
    // A rekey (a new image) through an outage of its parts: no object, no upload; then whole.
    let re = "s3://bkt/k/re.coffer";
    let mut rekey = vec!["rekey", img, "-o", re, "--key-file", &k1, "--new-key-file", &k2];
    rekey.extend(SHORT);
    outage(&proxy, &[Kind::Part], Fault::Status500, 2);
    let line = fails(&s3, &proxy, 1, &rekey);
    assert!(line.contains(re), "{line}");
    assert!(!stored(&s3, "k/").iter().any(|n| n.starts_with("k/re")), "{:?}", stored(&s3, "k/"));
    assert_eq!(s3.uploads_in_progress("bkt"), 0);
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &rekey);
    ok(&s3, &proxy, &["restore", re, "--to", &fx.s("dst"), "--key-file", &k2]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
}

/// The same on a store that forgets a completed upload (s3s-fs, like S3: a second completion
/// is refused): a rotation, or a backup, that the store completed while the client saw an
/// error is success, and says so.
#[test]
fn completions_missed_on_a_strict_store_are_success() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("root/bkt")).unwrap();
    let Some(s3) = S3::s3s(&fx.path("root")) else { return };
    tree(&fx.path("src"));
    let proxy = s3.proxy(6);
    let (k1, k2) = (fx.key(), fx.s("other.key"));
    let img = "s3://bkt/db.coffer";
    for fault in [Fault::Forward500, Fault::ForwardReset] {
        let _ = std::fs::remove_file(fx.path("root/bkt/db.coffer"));
        let _ = std::fs::remove_file(fx.path("root/bkt/db.coffer.meta"));
        proxy.set_rules(vec![Rule::new(&[Kind::Complete], fault, When::Nth(proxy.seen(Kind::Complete) + 1))]);
        let (code, _, err) = via(&s3, &proxy, &["backup", &fx.s("src"), "-o", img, "--key-file", &k1]);
        assert_eq!(proxy.injected(Some(Kind::Complete), Some(fault)), 1, "{}", proxy.report());
        assert_eq!(code, 0, "{fault:?}: {err}");
        assert_eq!(opens(&s3, &proxy, img, &[&k1]), [true]);
    }
    for (fault, from, to) in [(Fault::Forward500, &k1, &k2), (Fault::ForwardReset, &k2, &k1)] {
        proxy.set_rules(vec![Rule::new(&[Kind::Complete], fault, When::Nth(proxy.seen(Kind::Complete) + 1))]);
        let mut rotate = vec!["key", "rotate", img, "--key-file", from, "--new-key-file", to];
        rotate.extend(SHORT);
        let (code, _, err) = via(&s3, &proxy, &rotate);
        assert_eq!(proxy.injected(Some(Kind::Complete), Some(fault)), 2, "{}", proxy.report());
        assert_eq!(opens(&s3, &proxy, img, &[from, to]), [false, true], "{fault:?}: the new header");
        assert_eq!(code, 0, "{fault:?}: the rotation happened; coffer says so: {err}");
    }
}

/// A store that stops answering (requests stall past --store-timeout): a read or a backup fails
/// on one line, the backup's upload aborted; the same commands then succeed.
#[test]
fn a_stalled_store_fails_within_the_policy_and_reruns() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(7);
    // Longer than --store-timeout (SHORT: 2 s); each stalled connection ends after it.
    proxy.set_stall(Duration::from_secs(6));
    let (k, src) = (fx.key(), fx.s("src"));
    let img = "s3://bkt/s/db.coffer";
    let mut backup = vec!["backup", &src, "-o", img, "--key-file", &k];
    backup.extend(SHORT);
    outage(&proxy, &[Kind::Part], Fault::Stall, 2);
    let line = fails(&s3, &proxy, 1, &backup);
    assert!(line.contains(img), "{line}");
    assert!(proxy.injected(Some(Kind::Part), Some(Fault::Stall)) > 0, "{}", proxy.report());
    assert_eq!(stored(&s3, "s/"), Vec::<String>::new());
    assert_eq!(s3.uploads_in_progress("bkt"), 0);
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &backup);
    let mut verify = vec!["verify", img, "--key-file", &k];
    verify.extend(SHORT);
    outage(&proxy, &[Kind::Get], Fault::Stall, 2);
    let line = fails(&s3, &proxy, 1, &verify);
    assert!(line.contains(img), "{line}");
    assert!(proxy.injected(Some(Kind::Get), Some(Fault::Stall)) > 0, "{}", proxy.report());
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &verify);
}

/// The one `coffer: error:` line of `err`.
#[track_caller]
fn error_line(err: &str) -> String {
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("coffer: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    eprintln!("{}", errors[0]);
    errors[0].to_owned()
}

/// A header rotation whose rest is copied by the store in several parts (UploadPartCopy of
/// 5 MiB, as the tests ask), one copy failing half-way through, the parts before it copied:
/// afterwards the old header or the new one opens (both keys tried), never neither, no upload
/// is left in progress, and the same command run again finishes the rotation. A copy the store
/// did whose answer was lost (reset before the status, or half-way through the body) is sent
/// again, and the rotation succeeds.
#[test]
fn a_rotation_whose_part_copy_fails_half_way_leaves_one_header() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    let proxy = s3.proxy(12);
    let (k1, k2) = (fx.key(), fx.s("other.key"));
    let img = "s3://bkt/h/db.coffer";
    ok(&s3, &proxy, &["backup", &fx.s("src"), "-o", img, "--key-file", &k1]);
    let small = [("COFFER_TEST_COPY_PART_BYTES", "5242880")];
    let rotate = |from: &str, to: &str| {
        let mut v = vec!["key".to_owned(), "rotate".into(), img.into(), "--key-file".into(), from.into()];
        v.extend(["--new-key-file".to_owned(), to.to_owned()]);
        v.extend(SHORT.map(str::to_owned));
        v
    };
    let run = |args: &[String]| {
        let (code, _, err) = via_env(&s3, &proxy, &small, &args.iter().map(String::as_str).collect::<Vec<_>>());
        (code, err)
    };
    // The copies from the third on fail for longer than the retry policy.
    let (before, faulted) = (proxy.seen(Kind::CopyPart), proxy.injected(Some(Kind::CopyPart), None));
    outage(&proxy, &[Kind::CopyPart], Fault::Status503, 3);
    let (code, err) = run(&rotate(&k1, &k2));
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(line.contains(img) && line.contains("UploadPartCopy") && line.contains("503"), "{line}");
    let copies = proxy.seen(Kind::CopyPart) - before;
    let refused = proxy.injected(Some(Kind::CopyPart), None) - faulted;
    assert!(refused > 0 && copies - refused >= 2, "half-way: {copies} copies, {refused} refused");
    assert_eq!(opens(&s3, &proxy, img, &[&k1, &k2]), [true, false], "the old header stays");
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "the upload was aborted");
    // The same command, the store answering: done.
    let (code, err) = run(&rotate(&k1, &k2));
    assert_eq!(code, 0, "{err}");
    assert!(proxy.seen(Kind::CopyPart) - before - copies >= 4, "several parts copied: {}", proxy.report());
    assert_eq!(opens(&s3, &proxy, img, &[&k1, &k2]), [false, true], "the new header");
    // A copy done by the store, its answer lost half-way: sent again, and the rotation is done.
    let mut keys = [k2.clone(), k1.clone()];
    for fault in [Fault::ForwardReset, Fault::ResetBody] {
        let before = proxy.injected(Some(Kind::CopyPart), Some(fault));
        proxy.set_rules(vec![Rule::new(&[Kind::CopyPart], fault, When::Nth(proxy.seen(Kind::CopyPart) + 3))]);
        let (code, err) = run(&rotate(&keys[0], &keys[1]));
        assert_eq!(proxy.injected(Some(Kind::CopyPart), Some(fault)), before + 1, "{}", proxy.report());
        assert_eq!(code, 0, "{fault:?}: {err}");
        assert_eq!(opens(&s3, &proxy, img, &[&keys[0], &keys[1]]), [false, true], "{fault:?}: the new header");
        keys.swap(0, 1);
    }
    assert_eq!(s3.uploads_in_progress("bkt"), 0);
    ok(&s3, &proxy, &["restore", img, "--to", &fx.s("dst"), "--key-file", &keys[0]]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
}

/// A slow link (defect 5): a backup whose part cannot cross within `--store-timeout` fails on
/// one line that names the timeout, leaving no object and no upload; with the default timeout
/// the same backup succeeds, though a part takes longer than object_store's own 30 s for a
/// whole request (the old default, under which every attempt timed out).
#[test]
fn a_backup_through_a_slow_link_is_bounded_by_the_store_timeout() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    // Two parts of 5 MiB and a little (random: it does not compress).
    std::fs::write(fx.path("src/f"), noise((5 << 20) + 50_000, 28)).unwrap();
    let proxy = s3.proxy(13);
    // 144 KiB/s per connection: the 5 MiB part takes about 36 s.
    proxy.set_rate(144 << 10);
    proxy.set_rules(vec![Rule::new(&[Kind::Part, Kind::Put], Fault::Throttle, When::Always)]);
    let (k, src) = (fx.key(), fx.s("src"));
    let img = "s3://bkt/slow/db.coffer";
    let backup = ["backup", &src, "-o", img, "--key-file", &k];
    let short = ["--store-timeout", "2", "--store-retries", "1", "--store-retry-timeout", "1"];
    let line = fails(&s3, &proxy, 1, &[&backup[..], &short].concat());
    assert!(line.contains(img) && line.contains("--store-timeout (2 s)"), "names the object and the timeout: {line}");
    assert!(proxy.injected(Some(Kind::Part), Some(Fault::Throttle)) >= 2, "{}", proxy.report());
    assert_eq!(stored(&s3, "slow/"), Vec::<String>::new());
    assert_eq!(s3.uploads_in_progress("bkt"), 0, "the upload was aborted");
    let parts = proxy.seen(Kind::Part);
    let started = std::time::Instant::now();
    ok(&s3, &proxy, &backup);
    let took = started.elapsed();
    eprintln!("through the slow link: {took:?}; proxy: {}", proxy.report());
    assert_eq!(proxy.seen(Kind::Part) - parts, 2, "each part sent once: {}", proxy.report());
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &["restore", img, "--to", &fx.s("dst"), "--key-file", &k]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
}

/// A real refusal (403 AccessDenied) to a write, or to a read: the backup and the restore fail
/// at once, with no retry (one request of the refused kind), on one line naming the object and
/// "access denied"; no object is left, and a restore leaves nothing that looks complete.
#[test]
fn access_denied_fails_at_once_in_one_line() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("bkt");
    let fx = Fixture::new();
    tree(&fx.path("src"));
    std::fs::write(fx.path("small"), b"a few bytes").unwrap();
    let proxy = s3.proxy(14);
    let k = fx.key();
    // A small image is one PUT; a larger one starts with CreateMultipartUpload, then parts.
    for (src, img, kind) in [
        (fx.s("small"), "s3://bkt/d/small.coffer", Kind::Put),
        (fx.s("src"), "s3://bkt/d/big.coffer", Kind::Create),
        (fx.s("src"), "s3://bkt/d/big.coffer", Kind::Part),
    ] {
        let before = proxy.seen(kind);
        proxy.set_rules(vec![Rule::new(&[kind], Fault::Status403, When::Always)]);
        let line = fails(&s3, &proxy, 1, &["backup", &src, "-o", img, "--key-file", &k]);
        assert!(line.contains(img) && line.contains("access denied"), "{kind:?}: {line}");
        assert!(proxy.injected(Some(kind), Some(Fault::Status403)) > 0, "{}", proxy.report());
        // Parts go several at once: each refused once, none sent again.
        let sent = proxy.seen(kind) - before;
        let most = if kind == Kind::Part { 2 } else { 1 };
        assert!((1..=most).contains(&sent), "{kind:?}: {sent} requests, no retry: {}", proxy.report());
        assert_eq!(stored(&s3, "d/"), Vec::<String>::new(), "{kind:?}");
        assert_eq!(s3.uploads_in_progress("bkt"), 0, "{kind:?}");
    }
    proxy.set_rules(Vec::new());
    let img = "s3://bkt/d/ok.coffer";
    ok(&s3, &proxy, &["backup", &fx.s("src"), "-o", img, "--key-file", &k]);
    let gets = proxy.seen(Kind::Get);
    proxy.set_rules(vec![Rule::new(&[Kind::Get], Fault::Status403, When::Always)]);
    let line = fails(&s3, &proxy, 1, &["restore", img, "--to", &fx.s("dst"), "--key-file", &k]);
    assert!(line.contains(img) && line.contains("access denied"), "{line}");
    // The job ends at the first refusal: one request, not sent again, and no other read after
    // it (the room check's refusal was once passed over, and the image read again).
    let (sent, refused) = (proxy.seen(Kind::Get) - gets, proxy.injected(Some(Kind::Get), Some(Fault::Status403)));
    assert!(sent == 1 && refused == 1, "one refused GET, no other: {}", proxy.report());
    let left: Vec<_> = match std::fs::read_dir(fx.path("dst")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(left.is_empty() || left.contains(&".coffer-restore-incomplete".to_owned()), "{left:?}");
    proxy.set_rules(Vec::new());
    ok(&s3, &proxy, &["restore", img, "--to", &fx.s("dst"), "--key-file", &k]);
    assert_eq!(snapshot(&fx.path("dst")), snapshot(&fx.path("src")));
}
