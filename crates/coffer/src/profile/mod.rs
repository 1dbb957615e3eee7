//! Profiles: `[profile.NAME]` tables of a TOML file whose keys are the commands' long options.
//!
//! A value comes from, lowest first: the option's default, the profile (a `[profile.NAME.CMD]`
//! table over the profile's own keys), a `COFFER_*` environment variable, the command line. The
//! `coffer` binary adds the profile's values to the command line of the run (as
//! `--option=value`) for each option neither given nor set in the environment, so that its
//! parser checks them as it checks flags; they are checked once more when the file is read, to
//! name the file, line and column.
//!
//! This module reads and checks the file ([`Config::read`]: whose file is obeyed, which keys a
//! profile may hold) and says what each key gives a command ([`effective`], [`target`]); what
//! the commands and their options are, a program says through [`Commands`].

mod check;
mod parse;
mod shown;
mod trust;

pub use check::{check, CheckSpec, Finding};
pub use shown::{argv, CheckReport, ProfileCheck, ShownOption, Source};

use crate::{Context, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the system's profiles are kept.
pub const SYSTEM_FILE: &str = "/etc/coffer/coffer.toml";

/// Options no profile sets for every command at once (they name one run's input or output, or
/// overwrite): only in a command's own table.
const PER_COMMAND_ONLY: &[&str] =
    &["output", "to", "to-dir", "force", "name", "from", "slot", "until", "until-gtid", "until-position", "dry-run"];

/// Options that no profile and no environment variable sets.
pub const NEVER: &[&str] = &["help", "version", "profile", "config"];

/// Options without a `COFFER_*` variable: what a stray variable must not change.
pub const NO_ENV: &[&str] = &["force", "output", "to", "to-dir", "name", "from", "slot", "dry-run"];

/// Keys of a profile that are not options. `repository` and `binlogs` also stand for the
/// commands' positional prefixes; `password` becomes a `--password-file` that only this process
/// reads; the AWS keys set the variables object storage reads, unless they are set already.
const SPECIAL: &[&str] = &[
    "repository",
    "binlogs",
    "password",
    "aws-access-key-id",
    "aws-secret-access-key",
    "aws-session-token",
    "aws-region",
];

/// Keys whose value is a secret: a file holding one must be private (mode 0600), and `config
/// show` prints where it comes from, never what it is.
const SECRETS: &[&str] = &["password", "key-hex", "aws-secret-access-key", "aws-session-token"];

/// The commands a profile applies to are all but these.
const NOT_PROFILED: &[&str] = &["config", "completions", "manpage"];

/// Whether a profile applies to the command at `path` (`["binlog", "archive"]`).
pub fn applies_to(path: &[String]) -> bool {
    path.first().is_some_and(|n| !NOT_PROFILED.contains(&n.as_str()))
}

/// The commands whose options a profile sets, as the program that reads it defines them (the
/// `coffer` binary: from its argument parser).
pub trait Commands {
    /// Every command, by its path (`["binlog", "archive"]`), parents before their
    /// subcommands.
    fn paths(&self) -> Vec<Vec<String>>;
    /// How the command at `path` takes the option `--long` (its own, or a global one), if it
    /// has it.
    fn takes(&self, path: &[String], long: &str) -> Option<Takes>;
    /// Whether that option takes `value`, as its own parser says; the parser's message (one
    /// line) if it does not.
    fn parses(&self, path: &[String], long: &str, value: &str) -> std::result::Result<(), String>;
}

/// How an option takes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A flag: true or false.
    Flag,
    /// One value.
    One,
    /// Any number of values (given more than once).
    Many,
}

/// A position in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// Its line, from 1.
    pub line: usize,
    /// Its column (in characters), from 1.
    pub column: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A value as the file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `true` or `false`.
    Flag(bool),
    /// A string or an integer.
    Text(String),
    /// An array of strings and integers.
    List(Vec<String>),
}

impl Value {
    /// The texts of the value (none for a flag).
    pub fn texts(&self) -> Vec<String> {
        match self {
            Value::Text(t) => vec![t.clone()],
            Value::List(l) => l.clone(),
            Value::Flag(_) => Vec::new(),
        }
    }

    /// The command-line words that give the value to the option `--long` (`--long=v` each; a
    /// flag set is `--long`), or to a positional argument (`long`: `None`; the values as they are).
    pub fn words(&self, long: Option<&str>) -> Vec<std::ffi::OsString> {
        let word = |v: &String| -> std::ffi::OsString {
            match long {
                Some(l) => format!("--{l}={v}").into(),
                None => v.into(),
            }
        };
        match self {
            Value::Flag(true) => long.map(|l| vec![format!("--{l}").into()]).unwrap_or_default(),
            _ => self.texts().iter().map(word).collect(),
        }
    }
}

/// The environment variable of the option `--long`: `COFFER_LONG_NAME`.
pub fn env_var(long: &str) -> String {
    format!("COFFER_{}", long.to_uppercase().replace('-', "_"))
}

/// One key of a profile: for every command (`section` empty) or one (`["binlog", "archive"]`).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key: an option's long name, or one of the keys that are not options.
    pub key: String,
    /// The command whose table holds the key (empty: the profile's own keys).
    pub section: Vec<String>,
    /// The value.
    pub value: Value,
    /// Where the key is written.
    pub at: Place,
}

impl Entry {
    /// Whether the value is a secret (never shown).
    pub fn is_secret(&self) -> bool {
        SECRETS.contains(&self.key.as_str())
    }

    /// The value as `config show` prints it.
    pub fn shown(&self) -> String {
        if self.is_secret() {
            return format!("<secret from {}>", self.at);
        }
        match &self.value {
            Value::Flag(b) => b.to_string(),
            Value::Text(t) => t.clone(),
            Value::List(l) => l.join(", "),
        }
    }
}

/// A config file, read and checked.
#[derive(Debug)]
pub struct Config {
    /// The file.
    pub path: PathBuf,
    /// Its profiles by name, each key in the order of the file.
    pub profiles: BTreeMap<String, Vec<Entry>>,
}

/// The config file to read: `given` (`--config`), else the user's
/// (`$XDG_CONFIG_HOME/coffer/coffer.toml`) if it exists, else the system's. Whichever it is,
/// [`Config::read`] obeys it only if nobody but its reader and root can have written it: as
/// root, a `$HOME` that another user chose (`sudo -E`, `su -m`) leads to a file root does not
/// own, which is refused.
pub fn locate(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_owned();
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(user) = xdg.map(|d| d.join("coffer/coffer.toml")).filter(|p| p.is_file()) {
        return user;
    }
    PathBuf::from(SYSTEM_FILE)
}

impl Config {
    /// Reads and checks the file: TOML, only `[profile.NAME]` tables, every key an option of
    /// some command (or of the command its table names) with a value of the right kind, and
    /// private if it holds a secret; before that, written by nobody but root and this user.
    /// Errors name the file, line and column (usage errors: exit code 2).
    pub fn read(path: &Path, commands: &dyn Commands) -> Result<Config> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let (mut file, md) = trust::open_trusted(path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Error::usage(format!("cannot read the config file {}: {e}", path.display())))?;
        let config = Self::parse(path, &text, commands)?;
        if let Some(secret) = config.profiles.values().flatten().find(|e| e.is_secret()) {
            let mode = md.mode();
            if mode & 0o077 != 0 {
                return Err(Error::usage(format!(
                    "{}: {} is a secret written in the file, but the file is readable by group or others \
                     (mode {:04o}): chmod 600 {}, or name a file that holds it",
                    secret.at,
                    secret.key,
                    mode & 0o7777,
                    path.display()
                )));
            }
        }
        Ok(config)
    }

    /// [`Config::read`] of text already read (no check of the file's owner or mode).
    pub fn parse(path: &Path, text: &str, commands: &dyn Commands) -> Result<Config> {
        parse::parse(path, text, commands)
    }

    /// The entries of a profile.
    pub fn profile(&self, name: &str) -> Result<&[Entry]> {
        self.profiles.get(name).map(Vec::as_slice).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            Error::usage(format!(
                "no profile {name:?} in {} (it has: {})",
                self.path.display(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
    }
}

/// The profile's entries for the command at `path`: its own table's over the profile's.
pub fn effective(entries: &[Entry], path: &[String]) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.section.is_empty()) {
        out.insert(e.key.clone(), e.clone());
    }
    for e in entries.iter().filter(|e| !e.section.is_empty() && e.section == path) {
        out.insert(e.key.clone(), e.clone());
    }
    out
}

/// An option of a command, as a key of a profile names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The option `--NAME`, of the command or global.
    Long(&'a str),
    /// The command's positional argument of this id.
    Positional(&'a str),
}

/// What a key gives an option: its value, or a secret handed over through a private file.
#[derive(Debug)]
pub enum Given {
    /// The value as written.
    Value(Value),
    /// A secret, given as a path (`/proc/self/fd/N`) to a private file holding it.
    SecretPath(String),
    /// A secret, given as the descriptor number of a private file holding it.
    SecretFd(String),
}

impl Given {
    /// The value the option receives: a secret is written into a file only this process can
    /// name (a memfd, mode 0600, kept open for the life of the process), and the option is
    /// given its path or descriptor: never the process list.
    pub fn value(self) -> Result<Value> {
        Ok(match self {
            Given::Value(v) => v,
            Given::SecretPath(secret) => Value::Text(format!("/proc/self/fd/{}", private_fd(&secret)?)),
            Given::SecretFd(secret) => Value::Text(private_fd(&secret)?.to_string()),
        })
    }
}

/// What `entry` sets for the command at `path`: the option checked for a value given
/// otherwise, the option that receives the value, and what it receives. `None` for a key that
/// is not an option (the AWS keys: see [`set_aws`]); the caller skips an option the command
/// does not have.
pub fn target<'e>(path: &[String], entry: &'e Entry) -> Option<(Target<'e>, Target<'e>, Given)> {
    let plain = |t: Target<'e>| Some((t, t, Given::Value(entry.value.clone())));
    let secret = match &entry.value {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    };
    match entry.key.as_str() {
        "repository" => match path.join(" ").as_str() {
            "backup" => plain(Target::Long("output")),
            "catalog" | "prune" => plain(Target::Positional("prefix")),
            "restore" | "drill" => plain(Target::Positional("image")),
            _ => None,
        },
        "binlogs" => match path.join(" ").as_str() {
            "binlog archive" => plain(Target::Long("output")),
            "binlog list" | "binlog fetch" => plain(Target::Positional("prefix")),
            _ => plain(Target::Long("binlogs")),
        },
        "password" => {
            secret.map(|s| (Target::Long("password-file"), Target::Long("password-file"), Given::SecretPath(s)))
        }
        // Not as --key-hex: that one warns of the process list, which this key never reaches.
        "key-hex" => secret.map(|s| (Target::Long("key-hex"), Target::Long("key-fd"), Given::SecretFd(s))),
        k if SPECIAL.contains(&k) => None,
        k => plain(Target::Long(k)),
    }
}

/// An option of a run's command line, as [`additions`] asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOption {
    /// The option's id (what [`Applied::set`] names).
    pub id: String,
    /// `--LONG`, or `None` for a positional argument.
    pub long: Option<String>,
    /// The run gives it already (on the command line, or in a `COFFER_*` variable).
    pub given: bool,
}

/// What a profile added to a run's command line, for `config show`.
#[derive(Debug)]
pub struct Applied {
    /// The profile's name.
    pub profile: String,
    /// (option id, where its value comes from, whether it is a secret) of each option set.
    pub set: Vec<(String, Place, bool)>,
}

/// The words that profile `name` adds to a run of the command at `path`, for each option the
/// run does not give already (`option` finds an option of the command, and says whether the
/// run gives it; the keys of options the command does not have are skipped), and what they
/// set. AWS keys set their variables ([`set_aws`]): to be called before any thread starts.
pub fn additions(
    config: &Config,
    name: &str,
    path: &[String],
    option: impl Fn(Target) -> Option<RunOption>,
) -> Result<(Vec<std::ffi::OsString>, Applied)> {
    let mut added = Vec::new();
    let mut set = Vec::new();
    for entry in effective(config.profile(name)?, path).into_values() {
        set_aws(&entry);
        let Some((checked, arg, given)) = target(path, &entry) else { continue };
        let (Some(checked), Some(arg)) = (option(checked), option(arg)) else { continue };
        if checked.given || arg.given {
            continue;
        }
        let words = given.value()?.words(arg.long.as_deref());
        if words.is_empty() {
            continue;
        }
        set.push((arg.id, entry.at.clone(), entry.is_secret()));
        added.extend(words);
    }
    Ok((added, Applied { profile: name.to_owned(), set }))
}

/// Sets an AWS variable from the profile, unless the environment has it (the environment
/// comes before the file). To be called before any thread starts.
pub fn set_aws(entry: &Entry) {
    let var = match entry.key.as_str() {
        "aws-access-key-id" => "AWS_ACCESS_KEY_ID",
        "aws-secret-access-key" => "AWS_SECRET_ACCESS_KEY",
        "aws-session-token" => "AWS_SESSION_TOKEN",
        "aws-region" => "AWS_REGION",
        _ => return,
    };
    if let (None, Value::Text(v)) = (std::env::var_os(var), &entry.value) {
        std::env::set_var(var, v);
    }
}

/// A file that only this process can name (a memfd, mode 0600) holding `secret`, as an open
/// descriptor: how an inline secret reaches the options that read a file or descriptor, never
/// the process list.
fn private_fd(secret: &str) -> Result<i32> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let fd = memfd_create(c"coffer-secret", MFdFlags::MFD_CLOEXEC).context("cannot hold the profile's secret")?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .context("cannot hold the profile's secret")?;
    let mut file = std::fs::File::from(fd);
    file.write_all(secret.as_bytes()).context("cannot hold the profile's secret")?;
    // Kept open for the life of the process: the secret is read through it.
    Ok(file.into_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `backup` (`--compress`, `--threads`, `--mysql`, `--key-file`, `--output`) and `binlog
    /// archive` (`--segment-time`, `--key-hex`, `--key-fd`), and `config`, which no profile
    /// sets.
    struct Fake;

    impl Commands for Fake {
        fn paths(&self) -> Vec<Vec<String>> {
            let p = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
            vec![p(&["backup"]), p(&["binlog"]), p(&["binlog", "archive"]), p(&["config"])]
        }
        fn takes(&self, path: &[String], long: &str) -> Option<Takes> {
            let path = path.join(" ");
            match (path.as_str(), long) {
                (_, "threads") => Some(Takes::One),
                ("backup", "compress" | "output") => Some(Takes::One),
                ("backup", "mysql") => Some(Takes::Flag),
                ("backup", "key-file") => Some(Takes::Many),
                ("binlog archive", "segment-time" | "key-hex" | "key-fd") => Some(Takes::One),
                _ => None,
            }
        }
        fn parses(&self, _: &[String], long: &str, value: &str) -> std::result::Result<(), String> {
            match long {
                "threads" | "segment-time" if value.parse::<u64>().is_err() => Err(format!("invalid value '{value}'")),
                _ => Ok(()),
            }
        }
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("c.toml"), text, &Fake)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().one_line()
    }

    #[test]
    fn keys_are_options_of_the_commands_their_table_names() {
        let c = parse(
            "[profile.p]\nthreads = 2\nmysql = true\nkey-file = [\"/a\", \"/b\"]\nrepository = \"s3://b/\"\n\
             [profile.p.binlog.archive]\nsegment-time = 30\n",
        )
        .unwrap();
        let p = c.profile("p").unwrap();
        assert_eq!(p.len(), 5);
        let seg = p.iter().find(|e| e.key == "segment-time").unwrap();
        assert_eq!((seg.section.join(" ").as_str(), seg.at.line, seg.at.column), ("binlog archive", 7, 1));
        assert_eq!(c.profile("q").unwrap_err().one_line(), "no profile \"q\" in c.toml (it has: p)");
        let archive: Vec<String> = vec!["binlog".into(), "archive".into()];
        assert_eq!(effective(p, &archive).len(), 5);
        assert!(!effective(p, &["backup".into()]).contains_key("segment-time"));
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        assert_eq!(
            error("[profile.p]\nthreds = 1\n"),
            "c.toml:2:1: unknown key \"threds\": not an option of any command"
        );
        assert_eq!(error("[profile.p]\nthreads = \"x\"\n"), "c.toml:2:11: threads: invalid value 'x'");
        assert_eq!(error("[profile.p]\nmysql = 1\n"), "c.toml:2:9: mysql: a flag: true or false");
        assert_eq!(error("[profile.p]\nthreads = true\n"), "c.toml:2:11: threads: expected a value, not true or false");
        assert_eq!(error("[profile.p]\nthreads = [1]\n"), "c.toml:2:11: threads: takes one value, not a list");
        assert_eq!(
            error("[profile.p]\noutput = \"x\"\n"),
            "c.toml:2:1: output only in a command's table, such as [profile.NAME.backup]"
        );
        assert_eq!(error("[profile.p]\nprofile = \"x\"\n"), "c.toml:2:1: profile cannot be set in a profile");
        assert_eq!(
            error("[profile.p.config]\nthreads = 1\n"),
            "c.toml:1:12: \"config\" is not a command: a table of a profile names one"
        );
        assert_eq!(
            error("[profile.p.backup]\nsegment-time = 1\n"),
            "c.toml:2:1: unknown key \"segment-time\": not an option of backup"
        );
        assert_eq!(
            error("[profile.p.backup]\naws-region = \"x\"\n"),
            "c.toml:2:1: aws-region belongs to the profile, not to one command's table"
        );
        assert_eq!(error("[p]\n"), "c.toml:1:2: unknown table \"p\": profiles are [profile.NAME]");
        assert_eq!(
            error("[profile.\"a b\"]\n"),
            "c.toml:1:10: \"a b\": a profile's name is letters, digits, '_', '-', '.'"
        );
        assert_eq!(Error::usage("x").exit_code(), parse("[p]\n").unwrap_err().exit_code());
    }

    #[test]
    fn a_profile_adds_the_options_a_run_does_not_give() {
        let c = parse(
            "[profile.p]\nthreads = 2\nmysql = true\nkey-file = [\"/a\", \"/b\"]\nrepository = \"s3://b/\"\n\
             [profile.p.backup]\ncompress = \"lz4\"\n",
        )
        .unwrap();
        // The run gives --threads; the command has no --compress.
        let option = |t: Target| {
            let long = match t {
                Target::Long(l @ ("threads" | "mysql" | "key-file" | "output")) => l,
                _ => return None,
            };
            Some(RunOption { id: long.replace('-', "_"), long: Some(long.into()), given: long == "threads" })
        };
        let (words, applied) = additions(&c, "p", &["backup".into()], option).unwrap();
        let words: Vec<_> = words.iter().map(|w| w.to_str().unwrap()).collect();
        assert_eq!(words, ["--key-file=/a", "--key-file=/b", "--mysql", "--output=s3://b/"]);
        let set: Vec<_> = applied.set.iter().map(|(id, at, _)| (id.as_str(), at.line)).collect();
        assert_eq!(set, [("key_file", 4), ("mysql", 3), ("output", 5)]);
        assert_eq!(applied.profile, "p");
        assert!(additions(&c, "q", &["backup".into()], option).is_err());
    }

    proptest::proptest! {
        /// Any text is a config file or one error line with its place; never a panic.
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

    #[test]
    fn keys_name_their_options() {
        let entry = |key: &str, value: Value| Entry {
            key: key.into(),
            section: Vec::new(),
            value,
            at: Place { file: "c.toml".into(), line: 1, column: 1 },
        };
        let path = |w: &str| w.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let repo = entry("repository", Value::Text("s3://b/".into()));
        assert!(matches!(target(&path("backup"), &repo), Some((Target::Long("output"), _, Given::Value(_)))));
        assert!(matches!(target(&path("prune"), &repo), Some((Target::Positional("prefix"), _, _))));
        assert!(target(&path("key id"), &repo).is_none());
        let hex = entry("key-hex", Value::Text("00".into()));
        assert!(matches!(
            target(&path("binlog archive"), &hex),
            Some((Target::Long("key-hex"), Target::Long("key-fd"), Given::SecretFd(_)))
        ));
        assert!(hex.is_secret() && hex.shown() == "<secret from c.toml:1:1>");
        assert!(target(&path("backup"), &entry("aws-region", Value::Text("x".into()))).is_none());
        assert!(target(&path("backup"), &entry("password", Value::Flag(true))).is_none());
        assert!(applies_to(&path("binlog archive")) && !applies_to(&path("config show")) && !applies_to(&[]));
    }
}
