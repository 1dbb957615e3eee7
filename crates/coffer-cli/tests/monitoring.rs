//! The Grafana dashboard and the Prometheus alert rules of contrib/ (issue 31): the dashboard is
//! valid JSON and its every query selects only metrics docs/METRICS.md lists, as do the rules;
//! every metric either selects is written by a real run of its command (a failed and a good
//! backup of a datadir, a drill of that backup, an archive of a real MariaDB's binary log, all
//! through one profile into one metrics file); `promtool check rules` passes; and
//! `promtool test rules` passes on a test file that makes each alert fire and stay quiet.
//! promtool comes with Debian's `prometheus` package: without it, its checks are skipped with a
//! message, unless COFFER_REQUIRE_PROMETHEUS is set (CI), which makes them fail.

mod common;

use common::mariadb;
use common::scenario::Scenario;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A metric name and the `command` its selector names (`None`: any command).
type Selector = (String, Option<String>);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The metrics docs/METRICS.md lists: the first column of its tables.
fn listed_metrics() -> BTreeSet<String> {
    let listed: BTreeSet<String> = read("docs/METRICS.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `coffer_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("coffer_{name}"))
        .collect();
    assert!(listed.len() >= 25, "METRICS.md's tables were not read: {listed:?}");
    listed
}

/// The index just past the string that starts at `b[i]` (a quote), escapes skipped.
fn past_string(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() && b[j] != b[i] {
        j += if b[j] == b'\\' { 2 } else { 1 };
    }
    j + 1
}

/// The index just past the `closer` that ends what opens at `b[i]`, strings skipped.
fn past(b: &[u8], i: usize, closer: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() && b[j] != closer {
        j = if matches!(b[j], b'"' | b'\'' | b'`') { past_string(b, j) } else { j + 1 };
    }
    j + 1
}

/// The value of an exact `command="..."` among a selector's label matchers.
fn command_of(matchers: &str) -> Option<String> {
    matchers.split(',').find_map(|m| {
        let value = m.trim().strip_prefix("command")?.trim_start().strip_prefix('=')?.trim_start();
        value.strip_prefix('"')?.split('"').next().map(str::to_owned)
    })
}

/// The series a PromQL expression selects. Skipped: strings, ranges, grouping lists (`by (...)`,
/// `on (...)`, ...), names before `(` (functions, aggregations), keywords, numbers and
/// durations, Grafana's `$variables`; a selector's matchers are read only for its `command`.
fn selectors(expr: &str) -> Vec<Selector> {
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "inf",
        "nan",
    ];
    let b = expr.as_bytes();
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = past_string(b, i),
            b'[' => i = past(b, i, b']'),
            b'{' => i = past(b, i, b'}'),
            b'$' | b'0'..=b'9' | b'.' => {
                i += 1;
                while i < b.len() && (word_byte(b[i]) || matches!(b[i], b'.' | b'{' | b'}')) {
                    i += 1;
                }
            }
            c if word_byte(c) => {
                let start = i;
                while i < b.len() && word_byte(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = i + expr[i..].len() - expr[i..].trim_start().len();
                if GROUPING.contains(&word) {
                    if b.get(next) == Some(&b'(') {
                        i = past(b, next, b')');
                    }
                } else if !KEYWORDS.contains(&word) && b.get(next) != Some(&b'(') {
                    let command = (b.get(next) == Some(&b'{')).then(|| {
                        i = past(b, next, b'}');
                        command_of(&expr[next + 1..i - 1])
                    });
                    out.push((word.to_owned(), command.flatten()));
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every query of the dashboard: the panels' `expr`s, and the template variables' queries
/// (`label_values(SELECTOR, LABEL)` gives its selector).
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn exprs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| exprs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    exprs(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"].as_array().expect("templating.list") {
        if var["type"] != "query" {
            continue;
        }
        for q in [&var["definition"], &var["query"], &var["query"]["query"]].into_iter().filter_map(Value::as_str) {
            let inner = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(sel, _)| sel);
            out.push(inner.unwrap_or(q).to_owned());
        }
    }
    out
}

/// The `expr` of every rule of a rules file as written here: on its line, or a block
/// (`expr: |`) of the lines indented deeper than the key.
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("expr:") else { continue };
        let indent = line.len() - trimmed.len();
        if rest.trim() == "|" {
            let block = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim());
            out.push(block.collect::<Vec<_>>().join("\n"));
        } else {
            out.push(rest.trim().to_owned());
        }
    }
    let rules =
        lines.iter().filter(|l| l.trim_start().starts_with("- alert:") || l.trim_start().starts_with("- record:"));
    assert_eq!(out.len(), rules.count(), "an expr a rule");
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read("contrib/grafana/coffer.json")).unwrap_or_else(|e| panic!("coffer.json: {e}"))
}

/// What the dashboard and the rules select, with where each came from.
fn used() -> Vec<(Selector, String)> {
    let mut out = vec![];
    for q in dashboard_queries(&dashboard()) {
        out.extend(selectors(&q).into_iter().map(|s| (s, format!("coffer.json: {q}"))));
    }
    for e in rule_exprs(&read("contrib/prometheus/coffer-rules.yml")) {
        out.extend(selectors(&e).into_iter().map(|s| (s, format!("coffer-rules.yml: {e}"))));
    }
    out
}

/// A rule's own threshold series (`coffer:NAME`, recorded by the user's rules), not coffer's.
fn is_threshold(name: &str) -> bool {
    name.starts_with("coffer:")
}

#[test]
fn the_selector_reader_finds_metric_names() {
    let expr = r#"time() - max by (instance, profile) (coffer_a{command="backup", profile=~"$profile"})
        > on(profile) group_left() (x:y or 0.5 * coffer_b offset 1d) and sum(rate(coffer_c[$__rate_interval])) by (job)
        unless max_over_time(coffer_d{command = "drill"}[1d]) == bool 1e3 and label_replace(c2{a="}"}, "x", "$1", "", "")"#;
    let got = selectors(expr);
    let want = [
        ("coffer_a", Some("backup")),
        ("x:y", None),
        ("coffer_b", None),
        ("coffer_c", None),
        ("coffer_d", Some("drill")),
        ("c2", None),
    ];
    assert_eq!(got, want.map(|(n, c)| (n.to_owned(), c.map(str::to_owned))));
    assert_eq!(
        rule_exprs("  - alert: A\n    expr: |\n      a\n        > 1\n    for: 5m\n  - record: b\n    expr: c\n"),
        ["a\n> 1", "c"]
    );
}

/// The dashboard is Grafana's JSON model: a `datasource` variable every panel queries through, a
/// `profile` variable; its queries, and the rules', select only metrics METRICS.md lists.
#[test]
fn the_dashboard_and_the_rules_select_only_listed_metrics() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion: {}", d["schemaVersion"]);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"));
    assert_eq!((&var("datasource")["type"], &var("datasource")["query"]), (&"datasource".into(), &"prometheus".into()));
    assert!(var("profile")["query"]["query"].as_str().unwrap().starts_with("label_values(coffer_"));
    let panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();
    assert!(panels.len() >= 15, "{} panels", panels.len());
    for p in &panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(!p["targets"].as_array().unwrap().is_empty(), "{} has no query", p["title"]);
    }
    let listed = listed_metrics();
    let used = used();
    assert!(used.len() > 40, "{used:?}");
    for ((name, _), query) in &used {
        assert!(listed.contains(name) || is_threshold(name), "{name} is not in docs/METRICS.md ({query})");
    }
    // Each promised view: the age of the last backup, drill and segment; sizes, ratio, lag,
    // gaps, failures.
    let names: BTreeSet<&str> = used.iter().map(|((n, _), _)| n.as_str()).collect();
    for n in [
        "coffer_last_success_timestamp_seconds",
        "coffer_binlog_archive_last_segment_timestamp_seconds",
        "coffer_bytes_written",
        "coffer_compression_ratio",
        "coffer_binlog_archive_lag_seconds",
        "coffer_binlog_archive_gaps",
        "coffer_last_failure_timestamp_seconds",
        "coffer_drill_passed",
    ] {
        assert!(names.contains(n), "{n} is used nowhere");
    }
}

/// Runs coffer with `args`, killed past `bound`: its exit code and stderr.
fn bounded(args: &[&str], bound: Duration) -> (i32, String) {
    let mut child =
        coffer().args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() <= bound + Duration::from_secs(1), "coffer {args:?} took past {bound:?}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The samples of a metrics file: (name, command), every one labelled `profile`="mon".
fn emitted(text: &str) -> BTreeSet<Selector> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("no labels: {line}"));
        let labels = rest.split_once('}').unwrap().0;
        assert!(labels.contains("profile=\"mon\""), "{line}");
        out.insert((name.to_owned(), command_of(labels)));
    }
    out
}

/// Every metric the dashboard and the rules select is written by a real run: an archive of a
/// MariaDB server's binary log, a backup that fails and one of the server's stopped datadir, and
/// a drill of it, through the profile "mon" into one file (as the README's profile does).
#[test]
fn every_metric_used_is_written_by_a_real_run() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    for d in ["drill", "bk", "bk/binlog"] {
        std::fs::create_dir(fx.path(d)).unwrap();
    }
    let rows = "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; \
                INSERT INTO d.t SELECT seq, REPEAT(MD5(seq), 20) FROM d.seq_1_to_2000;";
    let mut src = Scenario::new(&fx).repl().sql(rows).start();
    let prom = fx.s("node-exporter.prom");
    let config = fx.path("coffer.toml");
    fx.write_secret("coffer.toml", &format!("[profile.mon]\nkey-file = \"{}\"\nmetrics-file = \"{prom}\"\n", fx.key()));
    let config = config.to_str().unwrap();
    let mon = ["--config", config, "--profile", "mon"];
    let minute = Duration::from_secs(60);

    let (sock, pw, binlogs) =
        (src.server.socket.display().to_string(), fx.s("repl-pw"), format!("file://{}/", fx.s("bk/binlog")));
    let archive = ["binlog", "archive", "-S", &sock, "-u", "repl", "--password-file", &pw, "-o", &binlogs];
    let (code, err) = bounded(&[&archive[..], &mon].concat(), minute);
    assert_eq!(code, 0, "binlog archive: {err}");
    src.server.stop();

    let (image, datadir) = (fx.s("bk/full.coffer"), src.server.datadir.display().to_string());
    let (code, err) = bounded(&[&["backup", &fx.s("nowhere"), "-o", &image][..], &mon].concat(), minute);
    assert_ne!(code, 0, "a backup of nothing: {err}");
    let (code, err) = bounded(&[&["backup", &datadir, "-o", &image][..], &mon].concat(), minute);
    assert_eq!(code, 0, "backup: {err}");
    let (code, err) = bounded(&[&["drill", &image, "--scratch", &fx.s("drill")][..], &mon].concat(), minute);
    assert_eq!(code, 0, "drill: {err}");

    let text = std::fs::read_to_string(&prom).unwrap();
    let written = emitted(&text);
    for ((name, command), query) in used().into_iter().filter(|((n, _), _)| !is_threshold(n)) {
        let found = written.iter().any(|(n, c)| *n == name && (command.is_none() || *c == command));
        assert!(found, "{name}{{command={command:?}}} is not written by a real run ({query}):\n{text}");
    }
}

/// promtool, or a skip (a failure when COFFER_REQUIRE_PROMETHEUS is set).
fn promtool() -> Option<PathBuf> {
    let found = mariadb::which("promtool");
    if found.is_none() {
        assert!(
            std::env::var_os("COFFER_REQUIRE_PROMETHEUS").is_none(),
            "promtool is required (apt-get install prometheus)"
        );
        eprintln!("skipped: promtool is not installed (Debian's prometheus package has it)");
    }
    found
}

/// Runs `promtool ARGS` (a minute at most); panics with what it said unless it succeeded.
fn promtool_ok(promtool: &Path, args: &[&str]) -> String {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {said}");
    said
}

/// The alerts of the rules file, and for each, whether the test file expects it to fire at some
/// evaluation and to stay quiet at another.
fn alert_coverage() -> Vec<(String, bool, bool)> {
    let rules = read("contrib/prometheus/coffer-rules.yml");
    let tests = read("contrib/prometheus/coffer-rules.test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let alerts = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(str::trim);
    alerts
        .map(|alert| {
            let expected = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.strip_prefix("alertname:").map(str::trim) == Some(alert))
                .filter_map(|(n, _)| lines.get(n + 1)?.strip_prefix("exp_alerts:").map(str::trim));
            let (mut fires, mut quiet) = (false, false);
            for e in expected {
                quiet |= e == "[]";
                fires |= e != "[]";
            }
            (alert.to_owned(), fires, quiet)
        })
        .collect()
}

/// `promtool check rules` passes; `promtool test rules` passes, on a test file that makes every
/// alert fire at one evaluation and stay quiet at another.
#[test]
fn promtool_checks_the_rules_and_each_alert_fires_and_stays_quiet() {
    let coverage = alert_coverage();
    assert!(coverage.len() >= 5, "{coverage:?}");
    for (alert, fires, quiet) in &coverage {
        assert!(*fires && *quiet, "coffer-rules.test.yml: {alert} fires: {fires}, stays quiet: {quiet}");
    }
    let Some(promtool) = promtool() else { return };
    let said = promtool_ok(&promtool, &["check", "rules", "contrib/prometheus/coffer-rules.yml"]);
    assert!(said.contains(&format!("SUCCESS: {} rules found", coverage.len())), "{said}");
    let said = promtool_ok(&promtool, &["test", "rules", "contrib/prometheus/coffer-rules.test.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}
