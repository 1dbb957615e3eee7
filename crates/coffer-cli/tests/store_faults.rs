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
    let out = s3.through(proxy).args(args).args(PARTS).stdin(Stdio::null()).output().unwrap();
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
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("coffer: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    eprintln!("{}: {}", args[0], errors[0]);
    errors[0].to_owned()
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
    let cases = [(Kind::Part, Fault::Status503, 3), (Kind::Part, Fault::Reset, 3), (Kind::Complete, Fault::Status500, 1)];
    for (kind, fault, nth) in cases {
        // From the nth request of its kind on: the upload has begun.
        let from = proxy.seen(kind) + nth;
        proxy.set_rules(
            (from..from + 200).map(|n| Rule::new(&[kind], fault, When::Nth(n))).collect(),
        );
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
        // The first reads pass (the header, the index): the job is under way when the store goes.
        outage(&proxy, &[Kind::Get], fault, 3);
        let mut args = job.to_vec();
        args.extend(SHORT);
        let line = fails(&s3, &proxy, 1, &args);
        assert!(line.contains(img), "names the object: {line}");
        assert!(proxy.injected(Some(Kind::Get), Some(fault)) > 0, "{}", proxy.report());
        if job[0] == "restore" {
            assert!(fx.path("dst/.coffer-restore-incomplete").exists(), "the restore is marked incomplete");
        }
        if job[0] == "extract" {
            let got = std::fs::read(fx.path("x/db/t1.dat")).unwrap_or_default();
            assert!(got != std::fs::read(fx.path("src/db/t1.dat")).unwrap(), "not whole");
        }
        proxy.set_rules(Vec::new());
        let mut again = job.to_vec();
        if job[0] == "restore" {
            // Into a target an interrupted restore left, as tests/hardening.rs says: --force.
            again.push("--force");
        }
        ok(&s3, &proxy, &again);
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
