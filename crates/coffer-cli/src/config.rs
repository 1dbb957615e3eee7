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
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
            return Err(line.replace(" for '--v <v>'", "").replace(" for '--v <v>...'", ""));
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use coffer::profile::Value;

    fn parse(text: &str) -> coffer::Result<Config> {
        Config::parse(std::path::Path::new("c.toml"), text, &Clap(&command()))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().one_line()
    }

    #[test]
    fn profiles_take_the_commands_options() {
        let c = parse(
            "[profile.prod]\nrepository = \"s3://b/prod/\"\nkey-file = [\"/k1\", \"/k2\"]\nthreads = 4\nmysql = true\n\
             [profile.prod.backup]\ncompress = \"lz4\"\n[profile.prod.binlog.archive]\nsegment-time = 30\n",
        )
        .unwrap();
        let p = c.profile("prod").unwrap();
        assert_eq!(p.len(), 6);
        let seg = p.iter().find(|e| e.key == "segment-time").unwrap();
        assert_eq!(seg.section, ["binlog", "archive"]);
        assert_eq!(seg.value, Value::Text("30".into()));
        assert_eq!((seg.at.line, seg.at.column), (9, 1));
        assert!(c.profile("dev").unwrap_err().one_line().contains("it has: prod"));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        assert_eq!(
            error("[profile.prod]\ncompres = \"zstd\"\n"),
            "c.toml:2:1: unknown key \"compres\": not an option of any command"
        );
        assert_eq!(
            error("[profile.prod]\n  threads = \"many\"\n"),
            "c.toml:2:13: threads: invalid value 'many': invalid digit found in string"
        );
        assert!(error("[profile.prod]\ncompress = \"brotli\"\n")
            .starts_with("c.toml:2:12: compress: invalid value 'brotli'"));
        assert_eq!(error("[profile.prod]\nmysql = \"yes\"\n"), "c.toml:2:9: mysql: a flag: true or false");
        assert_eq!(error("[profile.prod]\nthreads = [1, 2]\n"), "c.toml:2:11: threads: takes one value, not a list");
        assert_eq!(
            error("[profile.prod]\nlevel = 1.5\n"),
            "c.toml:2:9: a number with a fraction: options take whole numbers or text"
        );
        assert_eq!(
            error("[profile.prod]\noutput = \"/x\"\n"),
            "c.toml:2:1: output only in a command's table, such as [profile.NAME.backup]"
        );
        assert_eq!(
            error("[profile.prod.bakup]\ncompress = \"lz4\"\n"),
            "c.toml:1:15: \"bakup\" is not a command: a table of a profile names one"
        );
        assert_eq!(
            error("[profile.prod.prune]\ncompress = \"lz4\"\n"),
            "c.toml:2:1: unknown key \"compress\": not an option of prune"
        );
        assert_eq!(error("[prod]\nthreads = 1\n"), "c.toml:1:2: unknown table \"prod\": profiles are [profile.NAME]");
        assert!(
            error("[profile.prod]\nthreads = \n").starts_with("c.toml:2:"),
            "{}",
            error("[profile.prod]\nthreads = \n")
        );
        assert!(error("[profile.prod.backup]\naws-region = \"x\"\n").contains("belongs to the profile"));
    }

    #[test]
    fn the_readmes_example_is_a_valid_profile() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("# /etc/coffer/coffer.toml").expect("the example");
        let end = start + readme[start..].find("```").expect("its end");
        let c = parse(&readme[start..end]).unwrap();
        assert!(c.profile("prod").unwrap().len() > 10);
    }

    #[test]
    fn every_command_option_has_a_variable() {
        let cmd = command();
        let backup = cmd.find_subcommand("backup").unwrap();
        let env = |long: &str| {
            backup.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env()).map(|e| e.to_owned())
        };
        assert_eq!(env("compress").unwrap(), "COFFER_COMPRESS");
        assert_eq!(env("key-file").unwrap(), "COFFER_KEY_FILE");
        assert_eq!(env("force"), None);
        assert_eq!(env("output"), None);
        let archive = cmd.find_subcommand("binlog").unwrap().find_subcommand("archive").unwrap();
        assert!(archive.get_arguments().any(|a| a.get_env().is_some_and(|e| e == "COFFER_SEGMENT_TIME")));
    }

    proptest::proptest! {
        /// Any text is a config file or one error line; never a panic.
        #[test]
        fn any_text_parses_or_fails_in_one_line(text in "(\\[profile\\.[a-z]{1,3}(\\.backup)?\\]\n|[a-z-]{1,12} = (\"[^\"\n]{0,8}\"|[0-9]{1,3}|true|\\[1, \"x\"\\])\n|.{0,10}\n){0,8}") {
            match parse(&text) {
                Ok(c) => {
                    for e in c.profiles.values().flatten() {
                        proptest::prop_assert!(e.at.line >= 1 && e.at.column >= 1);
                    }
                }
                Err(e) => {
                    let line = e.one_line();
                    proptest::prop_assert!(!line.contains('\n'), "{line}");
                    proptest::prop_assert!(line.starts_with("c.toml:"), "{line}");
                }
            }
        }
    }
}
