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
