//! `coffer config show|check`: what a profile sets, and whether what it names is reachable.

use crate::cli::{Cli, Command as Cmd, ConfigCommand, KeyCommand};
use crate::config::{self, Config, Entry, Value};
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::FromArgMatches;
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;

pub fn run(cmd: ConfigCommand, profile: Option<String>, file: Option<PathBuf>, quiet: bool) -> Result<()> {
    match cmd {
        ConfigCommand::Show { command, json } => show(profile, file, command, json),
        ConfigCommand::Check { json } => check(profile, file, json, quiet),
    }
}

/// The argument vector of a run of `command` under the profile.
fn argv(profile: &str, file: &Option<PathBuf>, command: &[String]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["coffer".into(), "--profile".into(), profile.into()];
    if let Some(f) = file {
        argv.extend(["--config".into(), f.clone().into_os_string()]);
    }
    argv.extend(command.iter().map(OsString::from));
    argv
}

fn show(profile: Option<String>, file: Option<PathBuf>, command: Vec<String>, json: bool) -> Result<()> {
    let profile = profile.ok_or_else(|| crate::exit::usage("config show needs --profile NAME"))?;
    let cmd = config::command();
    let rows = if command.is_empty() {
        let path = config::locate(file.as_deref());
        let config = Config::read(&path, &cmd)?;
        config.profile(&profile)?.iter().map(entry_row).collect::<Vec<_>>()
    } else {
        options_of(&cmd, &profile, &file, &command)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for r in &rows {
        println!(
            "{:<28} {:<40} {}",
            r["option"].as_str().unwrap_or(""),
            r["value"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// A key of the profile as `config show` prints it, with the variable that overrides it.
fn entry_row(e: &Entry) -> serde_json::Value {
    let option = if e.section.is_empty() { e.key.clone() } else { format!("[{}] {}", e.section.join(" "), e.key) };
    let var = format!("COFFER_{}", e.key.to_uppercase().replace('-', "_"));
    let mut source = format!("file {}", e.at);
    if std::env::var_os(&var).is_some() {
        source.push_str(&format!(" (overridden by {var})"));
    }
    json!({ "option": option, "value": e.shown(), "source": source })
}

/// Every option of `command` that has a value in a run under the profile, and its source.
fn options_of(
    cmd: &clap::Command,
    profile: &str,
    file: &Option<PathBuf>,
    command: &[String],
) -> Result<Vec<serde_json::Value>> {
    let (argv, applied) = config::apply_to(cmd, argv(profile, file, command))?;
    let matches =
        cmd.clone().ignore_errors(true).try_get_matches_from(argv).map_err(|e| crate::exit::usage(e.to_string()))?;
    let mut leaf = &matches;
    let mut sub = cmd;
    while let Some((name, m)) = leaf.subcommand() {
        sub = sub.find_subcommand(name).context("no such command")?;
        leaf = m;
    }
    let from_file = |id: &str| applied.as_ref().and_then(|a| a.set.iter().find(|(i, _, _)| i == id));
    let mut rows = Vec::new();
    let args = sub.get_arguments().chain(cmd.get_arguments().filter(|a| a.is_global_set()));
    let mut seen = std::collections::HashSet::new();
    for arg in args {
        let id = arg.get_id().as_str();
        if !seen.insert(id.to_owned()) || matches!(id, "help" | "version") {
            continue;
        }
        let Some(source) = leaf.value_source(id) else { continue };
        let values: Vec<String> =
            leaf.get_raw(id).map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let name = arg.get_long().map_or_else(|| format!("<{id}>"), |l| format!("--{l}"));
        let secret_arg = matches!(arg.get_long(), Some("key-hex"));
        let (value, source) = match (source, from_file(id)) {
            (ValueSource::CommandLine, Some((_, at, secret))) => {
                let v = if *secret { format!("<secret from {at}>") } else { values.join(", ") };
                (v, format!("file {at}"))
            }
            (ValueSource::CommandLine, None) => (hidden(secret_arg, values), "flag".into()),
            (ValueSource::EnvVariable, _) => {
                let var = arg.get_env().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
                (hidden(secret_arg, values), format!("env {var}"))
            }
            _ => (values.join(", "), "default".into()),
        };
        rows.push(json!({ "option": name, "value": value, "source": source }));
    }
    Ok(rows)
}

fn hidden(secret: bool, values: Vec<String>) -> String {
    if secret {
        "<secret>".into()
    } else {
        values.join(", ")
    }
}

/// One thing checked of a profile.
struct Finding {
    what: String,
    ok: bool,
    detail: String,
}

fn check(profile: Option<String>, file: Option<PathBuf>, json: bool, quiet: bool) -> Result<()> {
    let cmd = config::command();
    let path = config::locate(file.as_deref());
    let config = Config::read(&path, &cmd)?;
    let names: Vec<String> = match &profile {
        Some(p) => {
            config.profile(p)?;
            vec![p.clone()]
        }
        None => config.profiles.keys().cloned().collect(),
    };
    if names.is_empty() {
        return Err(crate::exit::usage(format!("{} has no profile ([profile.NAME])", path.display())));
    }
    let mut report = Vec::new();
    let mut failed = 0;
    for name in &names {
        let findings = check_profile(&cmd, &config, name, &file, quiet);
        failed += findings.iter().filter(|f| !f.ok).count();
        if !json {
            for f in &findings {
                println!("{name}: {} {}: {}", if f.ok { "ok  " } else { "FAIL" }, f.what, f.detail);
            }
        }
        let rows: Vec<_> = findings.iter().map(|f| json!({"check": f.what, "ok": f.ok, "detail": f.detail})).collect();
        report.push(json!({ "profile": name, "ok": findings.iter().all(|f| f.ok), "checks": rows }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "file": path, "profiles": report }))?);
    }
    if failed > 0 {
        anyhow::bail!("{failed} check{} failed", if failed == 1 { "" } else { "s" });
    }
    Ok(())
}

fn check_profile(
    cmd: &clap::Command,
    config: &Config,
    name: &str,
    file: &Option<PathBuf>,
    quiet: bool,
) -> Vec<Finding> {
    let entries = config.profile(name).unwrap_or_default();
    let mut out = Vec::new();
    let text = |e: &Entry| match &e.value {
        Value::Text(t) => vec![t.clone()],
        Value::List(l) => l.clone(),
        Value::Flag(_) => Vec::new(),
    };
    // Files the profile names, readable by this user.
    const FILES: &[&str] = &[
        "key-file",
        "passphrase-file",
        "identity",
        "keyring",
        "keyring-key-file",
        "keyring-passphrase-file",
        "password-file",
        "ssl-ca",
        "ssl-cert",
        "ssl-key",
        "defaults-file",
        "signing-key",
        "cert",
        "key",
        "ca",
    ];
    for e in entries.iter().filter(|e| FILES.contains(&e.key.as_str())) {
        for p in text(e) {
            let read = std::fs::File::open(&p).and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]));
            out.push(Finding {
                what: format!("{} {p}", e.key),
                ok: read.is_ok(),
                detail: read.map_or_else(|e| format!("cannot read: {e}"), |_| "readable".into()),
            });
        }
    }
    // The secrets, opened as a restore would open them (no terminal prompt).
    let parsed = parse_as(cmd, name, file, &["key", "id"]);
    let env = crate::report::env(true, 1);
    match parsed {
        Ok(Cli { command: Cmd::Key(KeyCommand::Id { key }), .. }) => {
            let mut sources = key.sources();
            sources.passphrase_prompt = false;
            let named = sources.key_files.len()
                + sources.identities.len()
                + sources.passphrase_files.len()
                + usize::from(sources.key_hex.is_some() || sources.key_command.is_some() || sources.keyring.is_some());
            if named > 0 {
                let opened = coffer::keys::unlocks(&sources, &env);
                out.push(Finding {
                    what: "secrets".into(),
                    ok: opened.is_ok(),
                    detail: match opened {
                        Ok(u) => format!("{} read", u.len()),
                        Err(e) => crate::exit::one_line(&anyhow::Error::new(e)),
                    },
                });
            }
        }
        Ok(_) => {}
        Err(e) => out.push(Finding { what: "secrets".into(), ok: false, detail: crate::exit::one_line(&e) }),
    }
    // The stores.
    let repository = entries.iter().find(|e| e.key == "repository" && e.section.is_empty()).and_then(|e| text(e).pop());
    if let Some(url) = &repository {
        let listed = coffer::repo::backups(url, &env);
        out.push(Finding {
            what: format!("repository {url}"),
            ok: listed.is_ok(),
            detail: match listed {
                Ok(b) => format!("reachable, {} backup{}", b.len(), if b.len() == 1 { "" } else { "s" }),
                Err(e) => crate::exit::one_line(&anyhow::Error::new(e)),
            },
        });
    }
    let binlogs = entries.iter().find(|e| e.key == "binlogs" && e.section.is_empty()).and_then(|e| text(e).pop());
    if let Some(url) = &binlogs {
        let listed = coffer::repo::archive::segments(url, &env);
        out.push(Finding {
            what: format!("binlogs {url}"),
            ok: listed.is_ok(),
            detail: match listed {
                Ok(s) => format!("reachable, {} segment{}", s.len(), if s.len() == 1 { "" } else { "s" }),
                Err(e) => crate::exit::one_line(&anyhow::Error::new(e)),
            },
        });
    }
    if let Some(f) = server_check(cmd, name, file) {
        out.push(f);
    }
    if out.is_empty() && !quiet {
        out.push(Finding { what: "profile".into(), ok: true, detail: "names no file, secret, store or server".into() });
    }
    out
}

/// Connects to the server the profile's `binlog archive` would use, if it names one.
fn server_check(cmd: &clap::Command, name: &str, file: &Option<PathBuf>) -> Option<Finding> {
    let Ok(Cli { command: Cmd::Binlog(crate::cli::BinlogCommand::Archive(a)), .. }) =
        parse_as(cmd, name, file, &["binlog", "archive", "--output=file:///nowhere/"])
    else {
        return None;
    };
    if a.socket.is_none() && a.host.is_none() {
        return None;
    }
    let shown = a.socket.as_ref().map_or_else(
        || format!("{}:{}", a.host.clone().unwrap_or_default(), a.port.unwrap_or(3306)),
        |s| s.display().to_string(),
    );
    if a.ssl_mode.is_some() || a.ssl_ca.is_some() || a.ssl_cert.is_some() {
        return Some(Finding { what: format!("server {shown}"), ok: true, detail: "not checked (TLS)".into() });
    }
    let result = connect(&a);
    Some(Finding {
        what: format!("server {shown}"),
        ok: result.is_ok(),
        detail: result.map_or_else(|e| crate::exit::one_line(&e), |v| format!("answers ({v})")),
    })
}

fn connect(a: &crate::cli::ArchiveArgs) -> Result<String> {
    use coffer_mysql::client::{Client, Target};
    let options = coffer::ServerOptions {
        socket: a.socket.clone(),
        host: a.host.clone(),
        port: a.port,
        user: a.user.clone(),
        password_file: a.password_file.clone(),
        ..Default::default()
    };
    let conn = coffer::source::connection(&options)?;
    let target = match (&a.socket, &a.host) {
        (Some(s), _) => Target::Socket(s.clone()),
        (None, Some(h)) => Target::Tcp { host: h.clone(), port: a.port.unwrap_or(3306) },
        _ => unreachable!("checked by the caller"),
    };
    let user = conn.user.clone().unwrap_or_else(|| "root".into());
    let password = conn.password.clone().unwrap_or_default();
    let mut client = Client::connect(&target, &user, password.as_bytes(), std::time::Duration::from_secs(10), None)
        .context("cannot connect")?;
    let rows = client.query("SELECT VERSION()").context("cannot query")?;
    Ok(rows.first().and_then(|r| r.first()).cloned().flatten().unwrap_or_default())
}

/// The command line `words` under the profile, parsed as a run would parse it.
fn parse_as(cmd: &clap::Command, profile: &str, file: &Option<PathBuf>, words: &[&str]) -> Result<Cli> {
    let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    let (argv, _) = config::apply_to(cmd, argv(profile, file, &words))?;
    let matches = cmd.clone().try_get_matches_from(argv).map_err(|e| crate::exit::usage(first_line(&e.to_string())))?;
    Ok(Cli::from_arg_matches(&matches)?)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned()
}
