//! `coffer config show|check`: what a profile sets, and whether what it names is reachable.

use crate::cli::{Cli, Command as Cmd, ConfigCommand, KeyCommand};
use crate::config;
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::FromArgMatches;
use coffer::profile::{CheckReport, Config, Entry, Finding, ProfileCheck, ShownOption, Source};
use std::path::PathBuf;

pub fn run(cmd: ConfigCommand, profile: Option<String>, file: Option<PathBuf>, quiet: bool) -> Result<()> {
    match cmd {
        ConfigCommand::Show { command, json } => show(profile, file, command, json),
        ConfigCommand::Check { json } => check(profile, file, json, quiet),
    }
}

fn show(profile: Option<String>, file: Option<PathBuf>, command: Vec<String>, json: bool) -> Result<()> {
    let profile = profile.ok_or_else(|| crate::exit::usage("config show needs --profile NAME"))?;
    let cmd = config::command();
    let rows = if command.is_empty() {
        let config = config::read(file.as_deref(), &cmd)?;
        config.profile(&profile)?.iter().map(Entry::row).collect::<Vec<_>>()
    } else {
        options_of(&cmd, &profile, &file, &command)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    rows.iter().for_each(|r| println!("{}", r.line()));
    Ok(())
}

/// Every option of `command` that has a value in a run under the profile, and its source.
fn options_of(
    cmd: &clap::Command,
    profile: &str,
    file: &Option<PathBuf>,
    command: &[String],
) -> Result<Vec<ShownOption>> {
    let (argv, applied) = config::apply_to(cmd, coffer::profile::argv(profile, file.as_deref(), command))?;
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
        let source = match (source, from_file(id)) {
            (ValueSource::CommandLine, Some((_, at, secret))) => Source::File { at, secret: *secret },
            (ValueSource::CommandLine, None) => Source::Flag,
            (ValueSource::EnvVariable, _) => {
                Source::Env(arg.get_env().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default())
            }
            _ => Source::Default,
        };
        rows.push(ShownOption::of_run(name, source, &values, matches!(arg.get_long(), Some("key-hex"))));
    }
    Ok(rows)
}

fn check(profile: Option<String>, file: Option<PathBuf>, json: bool, quiet: bool) -> Result<()> {
    let cmd = config::command();
    let config = config::read(file.as_deref(), &cmd)?;
    let mut report = CheckReport { file: config.path.clone(), profiles: Vec::new() };
    for name in &config.to_check(profile.as_deref())? {
        let checked = ProfileCheck::new(name, check_profile(&cmd, &config, name, &file, quiet));
        if !json {
            checked.lines().iter().for_each(|l| println!("{l}"));
        }
        report.profiles.push(checked);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.outcome()?)
}

/// Checks what the profile `name` names (`coffer::profile::check`), with the secrets and the
/// server a run under it would use.
fn check_profile(
    cmd: &clap::Command,
    config: &Config,
    name: &str,
    file: &Option<PathBuf>,
    quiet: bool,
) -> Vec<Finding> {
    // The secrets, opened as a restore would open them (no terminal prompt).
    let keys = match parse_as(cmd, name, file, &["key", "id"]) {
        Ok(Cli { command: Cmd::Key(KeyCommand::Id { key }), .. }) => {
            let mut sources = key.sources();
            sources.passphrase_prompt = false;
            Some(Ok(sources))
        }
        Ok(_) => None,
        Err(e) => Some(Err(crate::exit::one_line(&e))),
    };
    // The server the profile's `binlog archive` would use.
    let server = match parse_as(cmd, name, file, &["binlog", "archive", "--output=file:///nowhere/"]) {
        Ok(Cli { command: Cmd::Binlog(crate::cli::BinlogCommand::Archive(a)), .. }) => Some(a.server()),
        _ => None,
    };
    let entries = config.profile(name).unwrap_or_default();
    let spec = coffer::profile::CheckSpec { entries, keys, server, quiet };
    coffer::profile::check(&spec, &crate::report::env(true, 1))
}

/// The command line `words` under the profile, parsed as a run would parse it.
fn parse_as(cmd: &clap::Command, profile: &str, file: &Option<PathBuf>, words: &[&str]) -> Result<Cli> {
    let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    let (argv, _) = config::apply_to(cmd, coffer::profile::argv(profile, file.as_deref(), &words))?;
    let matches = cmd.clone().try_get_matches_from(argv).map_err(|e| crate::exit::usage(config::first_line(&e)))?;
    Ok(Cli::from_arg_matches(&matches)?)
}
