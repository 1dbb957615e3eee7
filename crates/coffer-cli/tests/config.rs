//! Profiles in a config file: precedence (file < COFFER_* < flag), every error path with its
//! file:line:column and exit code 2, inline secrets, `config show` and `config check`, and the
//! metrics files of validate and prune read back by a Prometheus text-format parser.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

/// Runs coffer with a clean COFFER_* environment plus `env`; returns (code, stdout, stderr).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = coffer();
    for (k, _) in std::env::vars() {
        if k.starts_with("COFFER_") || k == "XDG_CONFIG_HOME" {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied()).args(args).stdin(Stdio::null());
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn source_tree(f: &Fixture) -> String {
    std::fs::create_dir_all(f.path("src/db")).unwrap();
    std::fs::write(f.path("src/db/notes.txt"), "hello ".repeat(1000)).unwrap();
    f.s("src")
}

/// The `source` and `value` `config show --json` gives an option.
fn shown(rows: &Value, option: &str) -> (String, String) {
    let row =
        rows.as_array().unwrap().iter().find(|r| r["option"] == option).unwrap_or_else(|| panic!("{option}: {rows}"));
    (row["value"].as_str().unwrap().to_owned(), row["source"].as_str().unwrap().to_owned())
}

#[test]
fn a_profile_sets_options_under_the_environment_and_the_command_line() {
    let f = Fixture::new();
    let src = source_tree(&f);
    std::fs::create_dir(f.path("repo")).unwrap();
    let config = f.path("coffer.toml");
    write(
        &config,
        &format!(
            "# backups of the test tree\n[profile.t]\nrepository = \"file://{}/\"\nkey-file = \"{}\"\ncompress = \"lz4\"\nthreads = 1\n\n[profile.t.backup]\nchunk-size = \"256K\"\n",
            f.s("repo"),
            f.key()
        ),
        0o644,
    );
    let cfg = config.to_str().unwrap();
    let codec = |extra: &[&str], env: &[(&str, &str)]| -> String {
        let mut args = vec!["--config", cfg, "--profile", "t", "backup", &src, "--json", "-q"];
        args.extend_from_slice(extra);
        // Backups under a prefix are named by the second they start.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (code, out, err) = run_env(&args, env);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["output"].as_str().unwrap().starts_with(&format!("file://{}/", f.s("repo"))), "{v}");
        v["codec"].as_str().unwrap().to_owned()
    };
    // The file alone; a variable over the file; a flag over both.
    assert_eq!(codec(&[], &[]), "lz4");
    assert_eq!(codec(&[], &[("COFFER_COMPRESS", "none")]), "none");
    assert_eq!(codec(&["--compress", "zstd"], &[("COFFER_COMPRESS", "none")]), "zstd");

    // config show says where each value came from.
    let show = |extra: &[&str], env: &[(&str, &str)]| -> Value {
        let mut args = vec!["--config", cfg, "--profile", "t", "config", "show", "--json", "backup", &src];
        args.extend_from_slice(extra);
        let (code, out, err) = run_env(&args, env);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let rows = show(&[], &[]);
    assert_eq!(shown(&rows, "--compress"), ("lz4".into(), format!("file {}:5:1", config.display())));
    assert_eq!(shown(&rows, "--chunk-size"), ("256K".into(), format!("file {}:9:1", config.display())));
    assert_eq!(shown(&rows, "--threads"), ("1".into(), format!("file {}:6:1", config.display())));
    assert_eq!(shown(&rows, "--part-size"), ("16M".into(), "default".into()));
    let rows = show(&["--threads", "2"], &[("COFFER_COMPRESS", "none")]);
    assert_eq!(shown(&rows, "--compress"), ("none".into(), "env COFFER_COMPRESS".into()));
    assert_eq!(shown(&rows, "--threads"), ("2".into(), "flag".into()));
    // The profile's own keys.
    let (code, out, _) = run_env(&["--config", cfg, "--profile", "t", "config", "show"], &[("COFFER_THREADS", "2")]);
    assert_eq!(code, 0);
    assert!(out.contains("[backup] chunk-size"), "{out}");
    assert!(out.contains("(overridden by COFFER_THREADS)"), "{out}");

    // Commands that take the repository as their argument get it too.
    let (code, out, err) = run_env(&["--config", cfg, "--profile", "t", "catalog", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 3);

    // Without --profile nothing of the file applies, even where coffer looks for it.
    let xdg = f.path("xdg");
    std::fs::create_dir_all(xdg.join("coffer")).unwrap();
    std::fs::copy(&config, xdg.join("coffer/coffer.toml")).unwrap();
    let (code, _, err) = run_env(&["backup", &src, "-q"], &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    assert_eq!(code, 2, "no output, no key: a usage error as before: {err}");
    // With it, the user's file is found without --config.
    let (code, out, err) = run_env(
        &["--profile", "t", "config", "show", "--json", "backup", &src],
        &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown(&rows, "--compress").1, format!("file {}:5:1", xdg.join("coffer/coffer.toml").display()));
}

#[test]
fn every_config_error_names_the_file_line_and_column_and_exits_2() {
    let f = Fixture::new();
    let config = f.path("c.toml");
    let cfg = config.to_str().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[profile.p]\ncompres = \"zstd\"\n", ":2:1: unknown key \"compres\": not an option of any command"),
        ("[profile.p]\nthreads = \"many\"\n", ":2:11: threads: invalid value 'many'"),
        ("[profile.p]\ncompress = \"brotli\"\n", ":2:12: compress: invalid value 'brotli'"),
        ("[profile.p]\nmysql = 1\n", ":2:9: mysql: a flag: true or false"),
        ("[profile.p]\nthreads = [1, 2]\n", ":2:11: threads: takes one value, not a list"),
        ("[profile.p]\noutput = \"/x\"\n", ":2:1: output only in a command's table"),
        ("[profile.p.bakup]\nlevel = 1\n", ":1:12: \"bakup\" is not a command"),
        ("[profile.p.prune]\nlevel = 1\n", ":2:1: unknown key \"level\": not an option of prune"),
        ("[p]\nthreads = 1\n", ":1:2: unknown table \"p\""),
        ("[profile.p]\nthreads = 1\nthreads = 2\n", ":3:1:"),
        ("[profile.p]\nthreads = \n", ":2:"),
        ("[profile.p]\n  threads = \"many\"\n", ":2:13: threads: invalid value 'many'"),
        ("[profile.p]\nlevel = 1.5\n", ":2:9: a number with a fraction: options take whole numbers or text"),
        ("[profile.p.backup]\naws-region = \"x\"\n", ":2:1: aws-region belongs to the profile"),
    ];
    for (text, want) in cases {
        write(&config, text, 0o644);
        let (code, out, err) = run_env(&["--config", cfg, "--profile", "p", "catalog", "file:///nowhere/"], &[]);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with(&format!("coffer: error: {cfg}{want}")), "{text:?}: {err}");
    }
    // No such profile, no such file.
    write(&config, "[profile.p]\nthreads = 1\n", 0o644);
    let (code, _, err) = run_env(&["--config", cfg, "--profile", "q", "catalog", "file:///nowhere/"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no profile \"q\"") && err.contains("it has: p"), "{err}");
    let (code, _, err) = run_env(&["--config", &f.s("absent.toml"), "--profile", "p", "catalog", "x/"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the config file"), "{err}");
    // A secret inline is refused while others can read the file; accepted at 0600.
    write(&config, &format!("[profile.p]\nkey-hex = \"{KEY_HEX}\"\n"), 0o640);
    let (code, _, err) = run_env(&["--config", cfg, "--profile", "p", "catalog", "x/"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains(":2:1: key-hex is a secret written in the file") && err.contains("mode 0640"), "{err}");
    assert!(!err.contains(KEY_HEX));
}

/// The README's example is a profile the commands take; so are keys of every command, a
/// command's table and a nested command's; every option has its COFFER_* variable but those
/// that name one run's output or overwrite.
#[test]
fn the_readmes_example_and_the_commands_tables_are_profiles_and_options_have_variables() {
    let f = Fixture::new();
    let readme = include_str!("../../../README.md");
    let start = readme.find("# /etc/coffer/coffer.toml").expect("the example");
    let end = start + readme[start..].find("```").expect("its end");
    let example = f.path("readme.toml");
    write(&example, &readme[start..end], 0o600);
    let args = ["--config", example.to_str().unwrap(), "--profile", "prod", "config", "show", "--json"];
    let (code, out, err) = run_env(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len() > 10, "{out}");

    let config = f.path("c.toml");
    write(
        &config,
        "[profile.prod]\nrepository = \"s3://b/prod/\"\nkey-file = [\"/k1\", \"/k2\"]\nthreads = 4\nmysql = true\n\
         [profile.prod.backup]\ncompress = \"lz4\"\n[profile.prod.binlog.archive]\nsegment-time = 30\n",
        0o644,
    );
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_env(&["--config", cfg, "--profile", "prod", "config", "show", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6, "{rows}");
    assert_eq!(shown(&rows, "[binlog archive] segment-time"), ("30".into(), format!("file {cfg}:9:1")));

    let env = [("COFFER_SEGMENT_TIME", "45"), ("COFFER_KEY_FILE", "/k3"), ("COFFER_OUTPUT", "file:///x/")];
    let show = |words: &[&str]| -> Value {
        let mut args = vec!["--config", cfg, "--profile", "prod", "config", "show", "--json"];
        args.extend_from_slice(words);
        let (code, out, err) = run_env(&args, &env);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let rows = show(&["binlog", "archive"]);
    assert_eq!(shown(&rows, "--segment-time"), ("45".into(), "env COFFER_SEGMENT_TIME".into()));
    assert_eq!(shown(&rows, "--key-file"), ("/k3".into(), "env COFFER_KEY_FILE".into()));
    assert!(!rows.as_array().unwrap().iter().any(|r| r["option"] == "--output"), "no COFFER_OUTPUT: {rows}");
    let rows = show(&["backup"]);
    assert_eq!(shown(&rows, "--output"), ("s3://b/prod/".into(), format!("file {cfg}:2:1")));
    assert_eq!(shown(&rows, "--compress"), ("lz4".into(), format!("file {cfg}:7:1")));
    let (code, out, err) = run_env(
        &["--config", cfg, "--profile", "prod", "config", "show", "--json", "backup"],
        &[("COFFER_FORCE", "true")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown(&serde_json::from_str(&out).unwrap(), "--force"), ("false".into(), "default".into()));
}

#[test]
fn inline_secrets_work_from_a_private_file_and_are_never_shown() {
    let f = Fixture::new();
    let src = source_tree(&f);
    let config = f.path("c.toml");
    write(&config, &format!("[profile.p]\nkey-hex = \"{KEY_HEX}\"\ncompress = \"none\"\n"), 0o600);
    let cfg = config.to_str().unwrap();
    let image = f.s("img.coffer");
    let (code, _, err) = run_env(&["--config", cfg, "--profile", "p", "backup", &src, "-o", &image], &[]);
    assert_eq!(code, 0, "{err}");
    // It never was on a command line: no warning about the process list.
    assert!(!err.contains("visible to other users"), "{err}");
    // The key file opens what the inline key sealed.
    expect(0, &["verify", &image, "--key-file", &f.key(), "-q"]);
    let (code, out, _) = run_env(&["--config", cfg, "--profile", "p", "config", "show", "list", &image], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("<secret from {cfg}:2:1>")), "{out}");
    let (_, all, _) = run_env(&["--config", cfg, "--profile", "p", "config", "show"], &[]);
    for text in [&out, &all] {
        assert!(!text.contains(KEY_HEX) && !text.contains(&KEY_HEX[..16]), "{text}");
    }
}

#[test]
fn config_check_reads_what_every_profile_names() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("repo")).unwrap();
    let config = f.path("c.toml");
    write(
        &config,
        &format!(
            "[profile.good]\nrepository = \"file://{repo}/\"\nkey-file = \"{key}\"\n\n\
             [profile.bad]\nrepository = \"file://{repo}/\"\nkey-file = \"{missing}\"\n",
            repo = f.s("repo"),
            key = f.key(),
            missing = f.s("missing.key")
        ),
        0o644,
    );
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_env(&["--config", cfg, "--profile", "good", "config", "check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("good: ok   secrets: 1 read"), "{out}");
    assert!(out.contains("reachable, 0 backups"), "{out}");
    let (code, out, err) = run_env(&["--config", cfg, "config", "check", "--json"], &[]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let profiles = v["profiles"].as_array().unwrap();
    let by = |n: &str| profiles.iter().find(|p| p["profile"] == n).unwrap().clone();
    assert_eq!(by("good")["ok"], true);
    assert_eq!(by("bad")["ok"], false);
    let bad = by("bad");
    let checks = bad["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["ok"] == false && c["detail"].as_str().unwrap().contains("cannot read")), "{v}");
    assert!(err.contains("failed"), "{err}");
}

/// The samples of a Prometheus text file as Python's `prometheus_client` parser reads them:
/// (name, labels as JSON, value).
fn parse_metrics(path: &Path) -> Vec<(String, Value, f64)> {
    let script = "import json,sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  out=[[s.name,s.labels,s.value] for f in p(open(sys.argv[1]).read()) for s in f.samples]\n\
                  print(json.dumps(out))";
    let out = std::process::Command::new("python3").args(["-c", script]).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    rows
}

fn sample(rows: &[(String, Value, f64)], name: &str, command: &str) -> f64 {
    rows.iter()
        .find(|(n, l, _)| n == name && l["command"] == command)
        .unwrap_or_else(|| panic!("{name}{{command={command}}} not in {rows:?}"))
        .2
}

fn tablespaces(dir: &Path) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../coffer-innodb/tests/data");
    std::fs::create_dir_all(dir.join("sakila")).unwrap();
    for (from, to) in [
        ("innodb_ruby/spec/data/sakila/8.4/sakila/inventory.ibd", "sakila/inventory.ibd"),
        ("innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd", "sakila/actor.ibd"),
    ] {
        std::fs::copy(data.join(from), dir.join(to)).unwrap();
    }
}

#[test]
fn validate_and_prune_write_metrics_a_prometheus_parser_reads() {
    let f = Fixture::new();
    tablespaces(&f.path("datadir"));
    let metrics = f.path("coffer.prom");
    let m = metrics.to_str().unwrap();
    let (code, out, err) = run_env(&["validate", &f.s("datadir"), "--json", "-q", "--metrics-file", m], &[]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = parse_metrics(&metrics);
    assert_eq!(sample(&rows, "coffer_innodb_pages_checked", "validate"), v["summary"]["pages"].as_f64().unwrap());
    assert_eq!(sample(&rows, "coffer_innodb_pages_corrupt", "validate"), 0.0);
    assert_eq!(sample(&rows, "coffer_last_run_success", "validate"), 1.0);
    let success = sample(&rows, "coffer_last_success_timestamp_seconds", "validate");
    assert!(success > 1.7e9);

    // A corrupt page: the run fails (exit 5), its failure time is set, its success kept.
    let page = f.path("datadir/sakila/actor.ibd");
    let mut bytes = std::fs::read(&page).unwrap();
    bytes[3 * 16384 + 1000] ^= 0xff;
    std::fs::write(&page, bytes).unwrap();
    let (code, _, _) = run_env(&["validate", &f.s("datadir"), "-q", "--metrics-file", m], &[]);
    assert_eq!(code, 5);
    let rows = parse_metrics(&metrics);
    assert_eq!(sample(&rows, "coffer_last_run_success", "validate"), 0.0);
    assert_eq!(sample(&rows, "coffer_innodb_pages_corrupt", "validate"), 1.0);
    assert_eq!(sample(&rows, "coffer_last_success_timestamp_seconds", "validate"), success);
    assert!(sample(&rows, "coffer_last_failure_timestamp_seconds", "validate") >= success);

    // prune writes its own samples into the same file; validate's stay.
    std::fs::create_dir(f.path("repo")).unwrap();
    let repo = format!("file://{}/", f.s("repo"));
    for _ in 0..3 {
        expect(0, &["backup", &f.s("datadir"), "-o", &repo, "--key-file", &f.key(), "-q", "--no-validate"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let (code, out, err) = run_env(&["prune", &repo, "--keep-last", "1", "--json", "--metrics-file", m], &[]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let deleted = plan["backups"].as_array().unwrap().iter().filter(|b| b["keep"] == false).count();
    assert_eq!(deleted, 2);
    let rows = parse_metrics(&metrics);
    assert_eq!(sample(&rows, "coffer_prune_backups_deleted", "prune"), 2.0);
    assert_eq!(sample(&rows, "coffer_prune_backups_kept", "prune"), 1.0);
    assert_eq!(sample(&rows, "coffer_last_run_success", "prune"), 1.0);
    assert_eq!(sample(&rows, "coffer_last_run_success", "validate"), 0.0);
    // Nothing but the file itself is left in its directory (no temporary file).
    let names: Vec<String> =
        std::fs::read_dir(f.path("")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("coffer-tmp")), "{names:?}");
}

#[test]
fn an_inline_password_reaches_the_server_and_no_process_list() {
    if !common::mariadb::available() {
        return;
    }
    let f = Fixture::new();
    let server = common::mariadb::Server::start(&f.path("server"), &[]);
    server.sql(
        "CREATE USER 'checker'@'localhost' IDENTIFIED BY 'in-the-file'; GRANT PROCESS ON *.* TO 'checker'@'localhost';",
    );
    let config = f.path("c.toml");
    let text = |password: &str| {
        format!(
            "[profile.db]\nsocket = \"{}\"\nuser = \"checker\"\npassword = \"{password}\"\n",
            server.socket.display()
        )
    };
    write(&config, &text("in-the-file"), 0o600);
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_env(&["--config", cfg, "--profile", "db", "config", "check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("db: ok   server ") && out.contains("answers (10."), "{out}");
    let (_, shown, _) = run_env(&["--config", cfg, "--profile", "db", "config", "show"], &[]);
    assert!(!shown.contains("in-the-file") && shown.contains("<secret from"), "{shown}");
    // A wrong password is the server's refusal, and a failed check.
    write(&config, &text("wrong"), 0o600);
    let (code, out, _) = run_env(&["--config", cfg, "--profile", "db", "config", "check"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("db: FAIL server") && out.contains("1045"), "{out}");
}

/// The unprivileged user that plays the other user (the tests run as root).
const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None).unwrap();
}

fn dir(path: &Path, uid: u32, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    chown(path, uid);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A profile `p` whose key-command leaves `marker` behind when it runs.
fn marker_profile(marker: &Path) -> String {
    format!("[profile.p]\nkey-command = \"touch {} && echo {KEY_HEX}\"\ncompress = \"none\"\n", marker.display())
}

/// A backup under profile `p` (the config named by `args` or found through `env`): (code, stderr).
fn backup_under(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let src = source_tree(f);
    let image = f.s("img.coffer");
    let _ = std::fs::remove_file(&image);
    let mut all = args.to_vec();
    all.extend_from_slice(&["--profile", "p", "backup", &src, "-o", &image, "-q"]);
    let (code, _, err) = run_env(&all, env);
    (code, err)
}

/// The run is refused in one line naming `file` and saying `why`, before the key-command ran.
#[track_caller]
fn assert_refused((code, err): (i32, String), file: &Path, why: &str, marker: &Path) {
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let head = format!("coffer: error: refusing the config file {}", file.display());
    assert!(err.starts_with(&head), "{err}");
    assert!(err.contains(why), "{why:?} in {err}");
    assert!(!marker.exists(), "the profile's key-command ran: {err}");
}

#[test]
fn a_config_another_user_can_change_is_refused_before_anything_runs() {
    let f = Fixture::new();
    let marker = f.path("ran");
    let text = marker_profile(&marker);
    let refused = |file: &Path, why: &str| {
        let cfg = file.to_str().unwrap();
        assert_refused(backup_under(&f, &["--config", cfg], &[]), file, why, &marker);
        // config check resolves the profile's secrets (it runs the key-command): refused too.
        let (code, _, err) = run_env(&["--config", cfg, "config", "check"], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("refusing the config file") && !marker.exists(), "{err}");
    };

    // The file: writable by group, by others, or another user's.
    dir(&f.path("a"), 0, 0o755);
    let file = f.path("a/c.toml");
    for mode in [0o664, 0o620, 0o602] {
        write(&file, &text, mode);
        refused(&file, &format!("group or others can write it (mode {mode:04o})"));
        refused(&file, &format!(": chmod go-w {}", file.display()));
    }
    write(&file, &text, 0o644);
    chown(&file, NOBODY);
    refused(&file, "it is owned by nobody (uid 65534), not root, and as root coffer obeys only root's files");
    chown(&file, 0);

    // Its directory: writable by others (sticky or not), or another user's.
    for mode in [0o777, 0o775, 0o1777] {
        std::fs::set_permissions(f.path("a"), std::fs::Permissions::from_mode(mode)).unwrap();
        refused(&file, &format!("group or others can write its directory {} (mode {mode:04o})", f.s("a")));
    }
    dir(&f.path("a"), NOBODY, 0o755);
    refused(&file, &format!("its directory {} is owned by nobody (uid 65534)", f.s("a")));

    // A directory further up that another user owns could swap the whole subtree.
    dir(&f.path("a"), 0, 0o755);
    dir(&f.path("up/b"), 0, 0o755);
    chown(&f.path("up"), NOBODY);
    let deep = f.path("up/b/c.toml");
    write(&deep, &text, 0o600);
    refused(&deep, &format!("its directory {} is owned by nobody", f.s("up")));

    // Through a symlink, the file it names is what is checked.
    let link = f.path("link.toml");
    std::os::unix::fs::symlink(&deep, &link).unwrap();
    refused(&link, &format!("its directory {} is owned by nobody", f.s("up")));
}

#[test]
fn as_root_a_home_another_user_chose_is_not_obeyed() {
    let f = Fixture::new();
    let marker = f.path("ran");
    let text = marker_profile(&marker);
    // HOME kept from another user (sudo -E, su -m): all of it theirs.
    let home = f.path("home");
    let file = home.join(".config/coffer/coffer.toml");
    for d in ["home", "home/.config", "home/.config/coffer"] {
        dir(&f.path(d), NOBODY, 0o755);
    }
    write(&file, &text, 0o644);
    chown(&file, NOBODY);
    let h = home.to_str().unwrap();
    let why = "it is owned by nobody (uid 65534), not root";
    assert_refused(backup_under(&f, &[], &[("HOME", h)]), &file, why, &marker);
    let xdg = home.join(".config");
    assert_refused(backup_under(&f, &[], &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]), &file, why, &marker);

    // A file of root's in a directory the other user owns: they could replace it.
    chown(&file, 0);
    let why = format!("its directory {} is owned by nobody", home.join(".config/coffer").display());
    assert_refused(backup_under(&f, &[], &[("HOME", h)]), &file, &why, &marker);

    // The same HOME, all root's: obeyed.
    for d in ["home", "home/.config", "home/.config/coffer"] {
        chown(&f.path(d), 0);
    }
    let (code, err) = backup_under(&f, &[], &[("HOME", h)]);
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists());
}

#[test]
fn configs_of_their_reader_or_root_are_obeyed() {
    let f = Fixture::new();
    let marker = f.path("ran");
    let text = marker_profile(&marker);
    // In a private directory under /tmp (sticky, writable by all, above the file's directory).
    let file = f.path("c.toml");
    for mode in [0o600, 0o644] {
        write(&file, &text, mode);
        let (code, err) = backup_under(&f, &["--config", file.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "mode {mode:o}: {err}");
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }
    // Where /etc/coffer/coffer.toml is kept, and through a symlink to it.
    dir(&f.path("etc/coffer"), 0, 0o755);
    let system = f.path("etc/coffer/coffer.toml");
    write(&system, &text, 0o644);
    let link = f.path("link.toml");
    std::os::unix::fs::symlink(&system, &link).unwrap();
    for cfg in [&system, &link] {
        let (code, err) = backup_under(&f, &["--config", cfg.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{}: {err}", cfg.display());
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }
}

#[test]
fn an_unprivileged_user_obeys_its_own_and_roots_configs_only() {
    use std::os::unix::process::CommandExt;
    let f = Fixture::new();
    std::fs::set_permissions(f.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir(&f.path("mine"), NOBODY, 0o755);
    let file = f.path("mine/c.toml");
    write(&file, "[profile.p]\nthreads = 3\n", 0o644);
    let show = || {
        let out = coffer()
            .args(["--config", file.to_str().unwrap(), "--profile", "p", "config", "show"])
            .env("HOME", "/nonexistent")
            .env_remove("XDG_CONFIG_HOME")
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for owner in [NOBODY, 0] {
        chown(&file, owner);
        let (code, err) = show();
        assert_eq!(code, 0, "owner {owner}: {err}");
    }
    // Another user's (daemon, uid 1).
    chown(&file, 1);
    let (code, err) = show();
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("it is owned by daemon (uid 1), not root or you (uid 65534)"), "{err}");
}
