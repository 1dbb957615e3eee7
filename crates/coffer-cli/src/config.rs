//! Profiles on the command line (see `coffer::profile`): the profile's values are added to the
//! command line of the run (as `--option=value`) for each option neither given nor set in the
//! environment, so clap checks them as it checks flags; and every option gets its `COFFER_*`
//! variable.

use crate::cli::Cli;
use anyhow::Result;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use coffer::profile::{self, Applied, Config, RunOption, Takes, Target};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

static APPLIED: OnceLock<Applied> = OnceLock::new();

/// The profile this run uses, if any (a metrics label).
pub fn profile_name() -> Option<&'static str> {
    APPLIED.get().map(|a| a.profile.as_str())
}

/// The command line's definition: [`Cli`], with a `COFFER_*` variable for each option.
pub fn command() -> Command {
    with_env(Cli::command(), true)
}

fn with_env(mut cmd: Command, root: bool) -> Command {
    let ids: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && a.get_env().is_none() && (root || !a.is_global_set()))
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_owned())))
        .filter(|(_, long)| !profile::NEVER.contains(&long.as_str()) && !profile::NO_ENV.contains(&long.as_str()))
        .collect();
    for (id, long) in ids {
        cmd = cmd.mut_arg(id, |a| a.env(profile::env_var(&long)));
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, |s| with_env(s, false));
    }
    cmd
}

/// The config file (`coffer::profile::locate`), read and checked against the command line.
pub fn read(given: Option<&std::path::Path>, cmd: &Command) -> Result<Config> {
    Ok(Config::read(&profile::locate(given), &Clap(cmd))?)
}

/// The command line with the profile's options added (unchanged without `--profile`); what
/// was added is kept for [`profile_name`].
pub fn apply(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let (argv, applied) = apply_to(cmd, argv)?;
    if let Some(a) = applied {
        let _ = APPLIED.set(a);
    }
    Ok(argv)
}

/// [`apply`], returning what was added.
pub fn apply_to(cmd: &Command, argv: Vec<OsString>) -> Result<(Vec<OsString>, Option<Applied>)> {
    // A first reading finds the profile, the command, and what the command line and the
    // environment already set. Anything it cannot read is left for the real parse to report.
    let Ok(first) = cmd.clone().ignore_errors(true).try_get_matches_from(&argv) else { return Ok((argv, None)) };
    let Some(name) = first.get_one::<String>("profile").cloned() else { return Ok((argv, None)) };
    let (names, leaf) = leaf_of(&first);
    if !profile::applies_to(&names) {
        return Ok((argv, None));
    }
    let config = read(first.get_one::<PathBuf>("config").map(PathBuf::as_path), cmd)?;
    let Some(sub) = find(cmd, &names) else { return Ok((argv, None)) };
    let option = |t: Target| {
        let arg = match t {
            Target::Long(l) => long(cmd, sub, l),
            Target::Positional(id) => sub.get_arguments().find(|a| a.is_positional() && a.get_id() == id),
        }?;
        let id = arg.get_id().as_str();
        let given = matches!(leaf.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        let long = arg.get_long().filter(|_| !arg.is_positional()).map(str::to_owned);
        Some(RunOption { id: id.to_owned(), long, given })
    };
    let (added, applied) = profile::additions(&config, &name, &names, option)?;
    let mut argv = argv;
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, added);
    Ok((argv, Some(applied)))
}

/// The command line's commands and options, as a profile takes them.
pub struct Clap<'a>(pub &'a Command);

impl Clap<'_> {
    fn arg(&self, path: &[String], name: &str) -> Option<&Arg> {
        long(self.0, find(self.0, path)?, name)
    }
}

impl profile::Commands for Clap<'_> {
    fn paths(&self) -> Vec<Vec<String>> {
        fn walk(at: &Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            for s in at.get_subcommands() {
                let mut p = path.clone();
                p.push(s.get_name().to_owned());
                out.push(p.clone());
                walk(s, p, out);
            }
        }
        let mut out = Vec::new();
        walk(self.0, Vec::new(), &mut out);
        out
    }

    fn takes(&self, path: &[String], long: &str) -> Option<Takes> {
        Some(match self.arg(path, long)?.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => Takes::Flag,
            ArgAction::Append => Takes::Many,
            _ => Takes::One,
        })
    }

    /// The option's own value parser, tried on `value`.
    fn parses(&self, path: &[String], long: &str, value: &str) -> std::result::Result<(), String> {
        let Some(arg) = self.arg(path, long) else { return Ok(()) };
        let probe_arg = Arg::new("v").long("v").action(ArgAction::Append).value_parser(arg.get_value_parser().clone());
        let probe = Command::new("probe").no_binary_name(true).arg(probe_arg);
        if let Err(e) = probe.try_get_matches_from([format!("--v={value}")]) {
            return Err(first_line(&e).replace(" for '--v <v>'", "").replace(" for '--v <v>...'", ""));
        }
        Ok(())
    }
}

/// The first line of clap's error, without its `error: `.
pub fn first_line(e: &clap::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned()
}

/// The option `--name` of `sub`, or of the root when global.
fn long<'a>(root: &'a Command, sub: &'a Command, name: &str) -> Option<&'a Arg> {
    let has = |a: &&Arg| a.get_long() == Some(name);
    sub.get_arguments().find(has).or_else(|| root.get_arguments().filter(|a| a.is_global_set()).find(has))
}

/// The names of the subcommands chosen, and the matches of the last.
fn leaf_of(m: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut names = Vec::new();
    let mut at = m;
    while let Some((name, sub)) = at.subcommand() {
        names.push(name.to_owned());
        at = sub;
    }
    (names, at)
}

/// The subcommand at `names`.
fn find<'a>(cmd: &'a Command, names: &[String]) -> Option<&'a Command> {
    let mut at = cmd;
    for n in names {
        at = at.find_subcommand(n)?;
    }
    Some(at)
}
