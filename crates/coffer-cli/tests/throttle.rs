//! Running unattended without starving the server: `--limit-rate` on backup and restore (a
//! lower bound on the time taken, never an upper one), `--io-priority` on coffer's threads and
//! the engine it runs, `--metrics-file` read back with a Prometheus text-format parser, and
//! `restore --prepare --json` of one backup and of a chain.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `files` files of `each` bytes that do not compress (a xorshift stream), and a few small
/// ones (which are packed).
fn incompressible_tree(root: &Path, files: usize, each: usize) {
    std::fs::create_dir_all(root.join("db")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..files {
        let mut data = Vec::with_capacity(each);
        while data.len() < each {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(each);
        std::fs::write(root.join(format!("db/t{i}.ibd.bin")), &data).unwrap();
    }
    for i in 0..20 {
        std::fs::write(root.join(format!("db/small{i}.frm")), format!("small file {i}\n").repeat(40)).unwrap();
    }
}

/// Runs coffer and returns (exit code, stdout, stderr, seconds).
fn timed(args: &[&str]) -> (i32, Vec<u8>, String, f64) {
    let t = Instant::now();
    let (code, out, err) = run(args);
    (code, out, err, t.elapsed().as_secs_f64())
}

/// 24 MiB read at 8 MiB/s take at least 3 s (2.5 asserted: a lower bound only), and the
/// image restores to the same tree.
#[test]
fn backup_limit_rate_holds_the_reading_back() {
    let fx = Fixture::new();
    incompressible_tree(&fx.path("src"), 3, 8 << 20);
    let img = fx.s("img.coffer");
    let (code, out, err, secs) =
        timed(&["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "--limit-rate", "8M", "--json"]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(b["logical_bytes"].as_u64().unwrap() >= 24 << 20, "{b}");
    assert!(secs >= 2.5, "24 MiB at 8 MiB/s took {secs:.2} s");
    expect(0, &["restore", &img, "--to", &fx.s("out"), "--key-file", &fx.key()]);
    assert_eq!(snapshot(&fx.path("out")), snapshot(&fx.path("src")));
    // Sending, the rate is the wire's; any other TLS option without a receiver is refused.
    let (code, _, err) = run(&["backup", &fx.s("src"), "-o", &fx.s("x.coffer"), "--key-file", &fx.key(), "--resume"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn restore_limit_rate_holds_the_writing_back() {
    let fx = Fixture::new();
    incompressible_tree(&fx.path("src"), 3, 8 << 20);
    let img = fx.s("img.coffer");
    expect(0, &["backup", &fx.s("src"), "-o", &img, "--key-file", &fx.key(), "-q"]);
    let (code, out, err, secs) =
        timed(&["restore", &img, "--to", &fx.s("out"), "--key-file", &fx.key(), "--limit-rate", "8M", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(secs >= 2.5, "24 MiB at 8 MiB/s took {secs:.2} s");
    assert_eq!(snapshot(&fx.path("out")), snapshot(&fx.path("src")));
    // The JSON of a plain restore is what it was.
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["entries", "files", "logical_bytes", "seconds", "synced", "to"], "{r}");
    let (code, _, err) = run(&["restore", &img, "--to", &fx.s("o2"), "--key-file", &fx.key(), "--limit-rate", "10"]);
    assert_eq!(code, 2, "a rate below 1K: {err}");
}

/// `ionice -p ID`'s answer for a thread, if util-linux's ionice is installed.
fn ionice(id: u32) -> Option<String> {
    let out = Command::new("ionice").args(["-p", &id.to_string()]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn have_ionice() -> bool {
    let found = Command::new("ionice").arg("-V").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: ionice (util-linux) is not installed");
    }
    found
}

/// The threads of process `pid`.
fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// A backup of a stream that never ends (stdin held open) waits with every thread started: each
/// has the class asked for.
#[test]
fn io_priority_applies_to_every_thread() {
    if !have_ionice() {
        return;
    }
    let fx = Fixture::new();
    for (class, shown) in
        [("idle", "idle"), ("best-effort:5", "best-effort: prio 5"), ("best-effort", "best-effort: prio 7")]
    {
        let mut child = coffer()
            .args(["backup", "-", "--name", "s", "-o", &fx.s("s.coffer"), "--key-file", &fx.key(), "-q"])
            .args(["--io-priority", class, "--force"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // The reading, walking and worker threads are up once it waits for input.
        let deadline = Instant::now() + Duration::from_secs(20);
        while threads(pid).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let tids = threads(pid);
        assert!(tids.len() >= 3, "{tids:?}");
        for tid in &tids {
            assert_eq!(ionice(*tid).as_deref(), Some(shown), "thread {tid} of {class}");
        }
        child.kill().unwrap();
        let _ = child.wait();
    }
    let (code, _, err) =
        run(&["backup", &fx.s("k.key"), "-o", &fx.s("x"), "--key-file", &fx.key(), "--io-priority", "realtime"]);
    assert_eq!(code, 2, "{err}");
}

/// The families of a metrics file as Python's prometheus_client parses them: "name{labels}" to
/// value, or `None` (a skip) without python3 and prometheus-client.
fn parse_metrics(path: &Path) -> Option<std::collections::BTreeMap<String, f64>> {
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))\n\
        \x20       out['%s{%s}' % (s.name, labels)] = s.value\n\
        print(json.dumps(out))\n";
    let has = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(std::env::var_os("COFFER_REQUIRE_PROMETHEUS").is_none(), "python3 with prometheus-client is required");
        eprintln!("skipped: python3 with prometheus-client is not installed");
        return None;
    }
    let out = Command::new("python3").args(["-c", script]).arg(path).output().unwrap();
    assert!(out.status.success(), "the metrics file does not parse: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn metric(m: &std::collections::BTreeMap<String, f64>, name: &str, command: &str) -> f64 {
    let key = format!("{name}{{command={command}}}");
    *m.get(&key).unwrap_or_else(|| panic!("no {key} in {m:?}"))
}

/// A server tablespace from the repository's test data, so that pages are checked.
fn tablespace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../coffer-innodb/tests/data/innodb_ruby/spec/data/sakila/8.4/sakila/inventory.ibd")
}

/// The metrics file of a backup and of a restore hold what their --json said; a failed backup
/// records the failure and keeps the time of the last success.
#[test]
fn metrics_files_hold_what_the_run_printed() {
    let fx = Fixture::new();
    incompressible_tree(&fx.path("src"), 1, 1 << 20);
    std::fs::copy(tablespace(), fx.path("src/db/inventory.ibd")).unwrap();
    let prom = fx.s("coffer.prom");
    let key = fx.key();
    let (code, out, err) = run(&[
        "backup",
        &fx.s("src"),
        "-o",
        &fx.s("img.coffer"),
        "--key-file",
        &key,
        "--json",
        "--metrics-file",
        &prom,
    ]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let (code, out, err) = run(&[
        "restore",
        &fx.s("img.coffer"),
        "--to",
        &fx.s("out"),
        "--key-file",
        &key,
        "--json",
        "--metrics-file",
        &prom,
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let Some(m) = parse_metrics(Path::new(&prom)) else { return };
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as f64;
    assert_eq!(metric(&m, "coffer_bytes_read", "backup"), n(&b["logical_bytes"]));
    assert_eq!(metric(&m, "coffer_bytes_written", "backup"), n(&b["image_bytes"]));
    let ratio = n(&b["logical_bytes"]) / n(&b["image_bytes"]);
    assert!((metric(&m, "coffer_compression_ratio", "backup") - ratio).abs() < 1e-9);
    assert_eq!(metric(&m, "coffer_files", "backup"), n(&b["files"]));
    assert!(n(&b["innodb"]["pages"]) > 0.0, "{b}");
    assert_eq!(metric(&m, "coffer_innodb_pages_checked", "backup"), n(&b["innodb"]["pages"]));
    assert_eq!(metric(&m, "coffer_innodb_pages_corrupt", "backup"), n(&b["innodb"]["corrupt_pages"]));
    assert_eq!(metric(&m, "coffer_backup_incremental", "backup"), 0.0);
    assert_eq!(metric(&m, "coffer_last_run_success", "backup"), 1.0);
    let success = metric(&m, "coffer_last_success_timestamp_seconds", "backup");
    assert!(success > 1.7e9, "{success}");
    assert!(metric(&m, "coffer_last_run_duration_seconds", "backup") <= b["seconds"].as_f64().unwrap() + 5.0);
    assert_eq!(metric(&m, "coffer_bytes_written", "restore"), n(&r["logical_bytes"]));
    assert_eq!(metric(&m, "coffer_files", "restore"), n(&r["files"]));
    assert_eq!(
        metric(&m, "coffer_bytes_read", "restore"),
        std::fs::metadata(fx.path("img.coffer")).unwrap().len() as f64
    );
    assert_eq!(metric(&m, "coffer_last_run_success", "restore"), 1.0);

    // A failed backup (a source that is not there): its failure now, its last success kept, its
    // byte counts gone; the restore's samples untouched.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, _, err) =
        run(&["backup", &fx.s("missing"), "-o", &fx.s("img2.coffer"), "--key-file", &key, "--metrics-file", &prom]);
    assert_eq!(code, 1, "{err}");
    let m = parse_metrics(Path::new(&prom)).unwrap();
    assert_eq!(metric(&m, "coffer_last_run_success", "backup"), 0.0);
    assert_eq!(metric(&m, "coffer_last_success_timestamp_seconds", "backup"), success);
    assert!(metric(&m, "coffer_last_failure_timestamp_seconds", "backup") > success);
    assert!(!m.contains_key("coffer_bytes_read{command=backup}"), "{m:?}");
    assert_eq!(metric(&m, "coffer_last_run_success", "restore"), 1.0);
}

/// A live server: a full and an incremental backup taken at the idle class (the engine too),
/// slowed down, with their metrics; each restored with --prepare --json.
#[test]
fn live_backups_run_idle_and_restore_prepared_as_json() {
    if !common::live::tools() || !have_ionice() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("scratch")).unwrap();
    let port = common::live::free_port();
    let src = common::live::source(&fx, port, &[]);
    let prom = fx.s("coffer.prom");
    let full = fx.s("full.coffer");
    let mut args = common::live::backup_args(&fx, port, &full);
    args.extend(["--io-priority", "idle", "--limit-rate", "16M", "--metrics-file", &prom, "-q"].map(String::from));
    let mut child = coffer().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // The engine is coffer's child while it streams: it inherited the class.
    let mut engine_class = None;
    while child.try_wait().unwrap().is_none() {
        let children =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id())).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim().starts_with("mariabackup") || comm.trim().starts_with("mariadb-backup") {
                engine_class = engine_class.or(ionice(pid));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(engine_class.as_deref(), Some("idle"), "the engine's class");

    common::live::sysbench(&src, "run", &["--time=3"]).wait().unwrap();
    let inc = fx.s("inc.coffer");
    let mut args = common::live::backup_args(&fx, port, &inc);
    args.extend(["--incremental", "--json", "--metrics-file", &prom].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&refs);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(b["kind"], "incremental", "{b}");
    if let Some(m) = parse_metrics(Path::new(&prom)) {
        assert_eq!(metric(&m, "coffer_backup_incremental", "backup"), 1.0);
        assert_eq!(metric(&m, "coffer_bytes_written", "backup"), b["image_bytes"].as_u64().unwrap() as f64);
    }

    // One backup: restored and prepared.
    let (code, out, err) =
        run(&["restore", &full, "--to", &fx.s("r1/data"), "--prepare", "--json", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let one: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(one["prepared"]["engine"], "mariabackup", "{one}");
    assert_eq!(one["backups"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["backups"][0]["kind"], "full");
    assert_eq!(one["files"], one["backups"][0]["files"]);
    assert!(one["files"].as_u64().unwrap() > 3 && one["copied_back_to"].is_null(), "{one}");
    assert_eq!(one["backups"][0]["image_bytes"].as_u64(), Some(std::fs::metadata(&full).unwrap().len()));

    // The chain: both restored, the incremental applied; sums over the backups.
    let (code, out, err) = run(&[
        "restore",
        &inc,
        "--to",
        &fx.s("r2/data"),
        "--prepare",
        "--json",
        "--limit-rate",
        "64M",
        "--io-priority",
        "idle",
        "--key-file",
        &fx.key(),
    ]);
    assert_eq!(code, 0, "{err}");
    let chain: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let backups = chain["backups"].as_array().unwrap();
    assert_eq!(backups.iter().map(|b| b["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["full", "incremental"]);
    let sum: u64 = backups.iter().map(|b| b["logical_bytes"].as_u64().unwrap()).sum();
    assert_eq!(chain["logical_bytes"].as_u64(), Some(sum), "{chain}");
    assert!(backups.iter().all(|b| b["prepare_seconds"].as_f64().unwrap() > 0.0), "{chain}");
    assert_eq!(chain["to"], fx.s("r2/data"));
    let dst = common::mariadb::Server::open(&fx.path("r2"), &[]);
    let tables = common::live::tables(&src);
    assert_eq!(common::live::checksums(&dst, &tables), common::live::checksums(&src, &tables));
}
