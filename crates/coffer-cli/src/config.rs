//! Profiles: `[profile.NAME]` tables of a TOML file whose keys are the commands' long options.
//!
//! A value comes from, lowest first: the option's default, the profile (a `[profile.NAME.CMD]`
//! table over the profile's own keys), a `COFFER_*` environment variable, the command line. The
//! profile's values are added to the command line of the run (as `--option=value`) for each
//! option neither given nor set in the environment, so clap checks them as it checks flags;
//! they are checked once more when the file is read, to name the file, line and column.

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where the system's profiles are kept.
pub const SYSTEM_FILE: &str = "/etc/coffer/coffer.toml";

/// Options no profile sets for every command at once (they name one run's input or output, or
/// overwrite): only in a command's own table.
const PER_COMMAND_ONLY: &[&str] =
    &["output", "to", "to-dir", "force", "name", "from", "slot", "until", "until-gtid", "until-position", "dry-run"];

/// Options that no profile and no environment variable sets.
const NEVER: &[&str] = &["help", "version", "profile", "config"];

/// Options without a `COFFER_*` variable: what a stray variable must not change.
const NO_ENV: &[&str] = &["force", "output", "to", "to-dir", "name", "from", "slot", "dry-run"];

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

/// A position in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
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
    Flag(bool),
    Text(String),
    List(Vec<String>),
}

/// One key of a profile: for every command (`section` empty) or one (`["binlog", "archive"]`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub section: Vec<String>,
    pub value: Value,
    pub at: Place,
}

impl Entry {
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
    pub path: PathBuf,
    pub profiles: BTreeMap<String, Vec<Entry>>,
}

/// What the profile added to this run's command line, for `config show`.
#[derive(Debug)]
pub struct Applied {
    pub profile: String,
    /// (option id, where it comes from) for each option the profile set.
    pub set: Vec<(String, Place, bool)>,
}

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
        .filter(|(_, long)| !NEVER.contains(&long.as_str()) && !NO_ENV.contains(&long.as_str()))
        .collect();
    for (id, long) in ids {
        let var = format!("COFFER_{}", long.to_uppercase().replace('-', "_"));
        cmd = cmd.mut_arg(id, |a| a.env(var));
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, |s| with_env(s, false));
    }
    cmd
}

/// The config file to read: `--config`, else the user's (`$XDG_CONFIG_HOME/coffer/coffer.toml`)
/// if it exists, else the system's. Whichever it is, [`Config::read`] obeys it only if nobody
/// but its reader and root can have written it: as root, a `$HOME` that another user chose
/// (`sudo -E`, `su -m`) leads to a file root does not own, which is refused.
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

/// Opens a config file that only root and the reader (the effective user) can have written, as
/// ssh and git demand of theirs: a profile names commands coffer runs (`key-command`) and files
/// it reads, so a file another user could change would run their commands as this user. The
/// file is opened once and checked through its descriptor, then every directory up to `/`.
fn open_trusted(path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let unreadable =
        |e: std::io::Error| crate::exit::usage(format!("cannot read the config file {}: {e}", path.display()));
    let refuse = |why: String| crate::exit::usage(format!("refusing the config file {}: {why}", path.display()));
    // The directories checked are those of the real path: no symlink is left in it to swap.
    let real = std::fs::canonicalize(path).map_err(unreadable)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&real)
        .map_err(unreadable)?;
    let md = file.metadata().map_err(unreadable)?;
    if !md.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    trusted(&real, &md, "it", false).map_err(refuse)?;
    for (n, dir) in real.ancestors().skip(1).enumerate() {
        let dmd = std::fs::symlink_metadata(dir).map_err(unreadable)?;
        // Others can write to /tmp, but its sticky bit keeps them from renaming or removing
        // what is not theirs: enough above the file, not for the file's own directory.
        let sticky = n > 0 && dmd.mode() & 0o1000 != 0;
        trusted(dir, &dmd, &format!("its directory {}", dir.display()), sticky).map_err(refuse)?;
    }
    Ok((file, md))
}

/// Why `what` (at `path`) is not to be trusted: owned by another user than root and the
/// effective one, or writable by group or others (unless `sticky`).
fn trusted(path: &Path, md: &std::fs::Metadata, what: &str, sticky: bool) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let owner = md.uid();
    if owner != 0 && owner != me {
        let whom = if me == 0 {
            "not root, and as root coffer obeys only root's files: name one with --config (sudo -H and su - \
             give root's HOME), or chown root"
                .to_owned()
        } else {
            format!(
                "not root or you (uid {me}), and a profile names what coffer runs: use a file of your own, \
                 or chown {me}"
            )
        };
        return Err(format!("{what} is owned by {}, {whom} {}", user_name(owner), path.display()));
    }
    if md.mode() & 0o022 != 0 && !sticky {
        let fix = if md.mode() & 0o1000 != 0 {
            "move the file into a directory of its own".to_owned()
        } else {
            format!("chmod go-w {}", path.display())
        };
        return Err(format!(
            "group or others can write {what} (mode {:04o}), and a profile names what coffer runs: {fix}",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// "NAME (uid N)", or "uid N" for a uid without a name.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// The command line with the profile's options added (unchanged without `--profile`); what
/// was added is kept for [`applied`].
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
    let Some(profile) = first.get_one::<String>("profile").cloned() else { return Ok((argv, None)) };
    let (names, leaf) = leaf_of(&first);
    if names.first().is_none_or(|n| NOT_PROFILED.contains(&n.as_str())) {
        return Ok((argv, None));
    }
    let path = locate(first.get_one::<PathBuf>("config").map(PathBuf::as_path));
    let config = Config::read(&path, cmd)?;
    let entries = config.profile(&profile)?;
    let Some(sub) = find(cmd, &names) else { return Ok((argv, None)) };
    let mut added = Vec::new();
    let mut set = Vec::new();
    for (key, entry) in effective(entries, &names) {
        set_aws(&entry);
        let Some((checked, arg, given)) = target(cmd, sub, &names, &key, &entry) else { continue };
        let given_already = |a: &Arg| {
            matches!(leaf.value_source(a.get_id().as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
        };
        if given_already(checked) || given_already(arg) {
            continue;
        }
        let value = match given {
            Given::Value(v) => v,
            Given::SecretPath(secret) => Value::Text(format!("/proc/self/fd/{}", private_fd(&secret)?)),
            Given::SecretFd(secret) => Value::Text(private_fd(&secret)?.to_string()),
        };
        let tokens = tokens(arg, &value);
        if tokens.is_empty() {
            continue;
        }
        set.push((arg.get_id().to_string(), entry.at.clone(), entry.is_secret()));
        added.extend(tokens);
    }
    let mut argv = argv;
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, added);
    Ok((argv, Some(Applied { profile, set })))
}

/// The profile's entries for a command: its own table's over the profile's.
fn effective(entries: &[Entry], names: &[String]) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.section.is_empty()) {
        out.insert(e.key.clone(), e.clone());
    }
    for e in entries.iter().filter(|e| !e.section.is_empty() && e.section == names) {
        out.insert(e.key.clone(), e.clone());
    }
    out
}

/// What a key gives an option: its value, or a secret handed over through a private file.
enum Given {
    Value(Value),
    /// A path (`/proc/self/fd/N`) to a private file holding the secret.
    SecretPath(String),
    /// A descriptor number of a private file holding the secret.
    SecretFd(String),
}

/// The option of command `names` that `key` sets (checked for a value given otherwise), the
/// option that receives it, and what; `None` where the command has no such option.
fn target<'a>(
    root: &'a Command,
    sub: &'a Command,
    names: &[String],
    key: &str,
    entry: &Entry,
) -> Option<(&'a Arg, &'a Arg, Given)> {
    let path = names.join(" ");
    let positional = |id: &str| sub.get_arguments().find(|a| a.is_positional() && a.get_id() == id);
    let plain = |a: &'a Arg| (a, a, Given::Value(entry.value.clone()));
    let secret = match &entry.value {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    };
    match key {
        "repository" => match path.as_str() {
            "backup" => long(root, sub, "output").map(plain),
            "catalog" | "prune" => positional("prefix").map(plain),
            "restore" | "drill" => positional("image").map(plain),
            _ => None,
        },
        "binlogs" => match path.as_str() {
            "binlog archive" => long(root, sub, "output").map(plain),
            "binlog list" | "binlog fetch" => positional("prefix").map(plain),
            _ => long(root, sub, "binlogs").map(plain),
        },
        "password" => long(root, sub, "password-file").zip(secret).map(|(a, s)| (a, a, Given::SecretPath(s))),
        // Not as --key-hex: that one warns of the process list, which this key never reaches.
        "key-hex" => match (long(root, sub, "key-hex"), long(root, sub, "key-fd"), secret) {
            (Some(hex), Some(fd), Some(s)) => Some((hex, fd, Given::SecretFd(s))),
            _ => None,
        },
        k if SPECIAL.contains(&k) => None,
        k => long(root, sub, k).map(plain),
    }
}

/// The option `--name` of `sub`, or of the root when global.
fn long<'a>(root: &'a Command, sub: &'a Command, name: &str) -> Option<&'a Arg> {
    let has = |a: &&Arg| a.get_long() == Some(name);
    sub.get_arguments().find(has).or_else(|| root.get_arguments().filter(|a| a.is_global_set()).find(has))
}

/// The command-line words that give `arg` the value.
fn tokens(arg: &Arg, value: &Value) -> Vec<OsString> {
    let word = |v: &str| -> OsString {
        match arg.get_long() {
            Some(l) if !arg.is_positional() => format!("--{l}={v}").into(),
            _ => v.into(),
        }
    };
    match value {
        Value::Flag(true) => arg.get_long().map(|l| vec![format!("--{l}").into()]).unwrap_or_default(),
        Value::Flag(false) => Vec::new(),
        Value::Text(t) => vec![word(t)],
        Value::List(l) => l.iter().map(|v| word(v)).collect(),
    }
}

/// Sets an AWS variable from the profile, unless the environment has it (the environment
/// comes before the file). Runs before any thread starts.
fn set_aws(entry: &Entry) {
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

/// Every command a profile may name a table for: (path, command).
fn commands(cmd: &Command) -> Vec<(Vec<String>, &Command)> {
    fn walk<'a>(at: &'a Command, path: Vec<String>, out: &mut Vec<(Vec<String>, &'a Command)>) {
        for s in at.get_subcommands() {
            if path.is_empty() && NOT_PROFILED.contains(&s.get_name()) {
                continue;
            }
            let mut p = path.clone();
            p.push(s.get_name().to_owned());
            out.push((p.clone(), s));
            walk(s, p, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, Vec::new(), &mut out);
    out
}

impl Config {
    /// Reads and checks the file: TOML, only `[profile.NAME]` tables, every key an option of
    /// some command (or of the command its table names) with a value of the right kind, and
    /// private if it holds a secret; before that, written by nobody but root and this user
    /// ([`open_trusted`]). Errors name the file, line and column (exit code 2).
    pub fn read(path: &Path, cmd: &Command) -> Result<Config> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let (mut file, md) = open_trusted(path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| crate::exit::usage(format!("cannot read the config file {}: {e}", path.display())))?;
        let config = Self::parse(path, &text, cmd)?;
        if let Some(secret) = config.profiles.values().flatten().find(|e| e.is_secret()) {
            let mode = md.mode();
            if mode & 0o077 != 0 {
                return Err(crate::exit::usage(format!(
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

    /// [`Config::read`] of text already read (no mode check).
    pub fn parse(path: &Path, text: &str, cmd: &Command) -> Result<Config> {
        let at = |span: std::ops::Range<usize>| place(path, text, span.start);
        let fail = |span: std::ops::Range<usize>, msg: String| crate::exit::usage(format!("{}: {msg}", at(span)));
        let doc = DeTable::parse(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start);
            crate::exit::usage(format!("{}: {}", place(path, text, start), e.message().trim()))
        })?;
        let mut profiles = BTreeMap::new();
        let commands = commands(cmd);
        for (key, value) in doc.get_ref() {
            if key.get_ref() != "profile" {
                return Err(fail(
                    key.span(),
                    format!("unknown table {:?}: profiles are [profile.NAME]", key.get_ref()),
                ));
            }
            let DeValue::Table(table) = value.get_ref() else {
                return Err(fail(value.span(), "profile must be a table of profiles: [profile.NAME]".into()));
            };
            for (name, body) in table {
                let n = name.get_ref();
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
                    return Err(fail(
                        name.span(),
                        format!("{n:?}: a profile's name is letters, digits, '_', '-', '.'"),
                    ));
                }
                let DeValue::Table(body) = body.get_ref() else {
                    return Err(fail(body.span(), format!("profile.{n} must be a table")));
                };
                let mut entries = Vec::new();
                collect(body, &[], cmd, &commands, &mut entries, &at, &fail)?;
                profiles.insert(n.to_string(), entries);
            }
        }
        Ok(Config { path: path.to_owned(), profiles })
    }

    /// The entries of a profile.
    pub fn profile(&self, name: &str) -> Result<&[Entry]> {
        self.profiles.get(name).map(Vec::as_slice).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            crate::exit::usage(format!(
                "no profile {name:?} in {} (it has: {})",
                self.path.display(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
    }
}

type Fail<'a> = dyn Fn(std::ops::Range<usize>, String) -> anyhow::Error + 'a;

/// The entries of one table of a profile (`section` names its command), checked.
fn collect(
    table: &DeTable,
    section: &[String],
    root: &Command,
    commands: &[(Vec<String>, &Command)],
    out: &mut Vec<Entry>,
    at: &dyn Fn(std::ops::Range<usize>) -> Place,
    fail: &Fail,
) -> Result<()> {
    for (key, value) in table {
        let k = key.get_ref().to_string();
        if let DeValue::Table(inner) = value.get_ref() {
            let mut path = section.to_vec();
            path.push(k.clone());
            if !commands.iter().any(|(p, _)| *p == path) {
                return Err(fail(
                    key.span(),
                    format!("{:?} is not a command: a table of a profile names one", path.join(" ")),
                ));
            }
            collect(inner, &path, root, commands, out, at, fail)?;
            continue;
        }
        let entry =
            Entry { key: k.clone(), section: section.to_vec(), value: value_of(value, fail)?, at: at(key.span()) };
        check(&entry, key.span(), value.span(), root, commands, fail)?;
        out.push(entry);
    }
    Ok(())
}

/// A TOML value as a [`Value`]: strings, integers, booleans, arrays of strings and integers.
fn value_of(v: &Spanned<DeValue>, fail: &Fail) -> Result<Value> {
    let scalar = |v: &Spanned<DeValue>| -> Result<String> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.to_string()),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map(|n| n.to_string())
                .map_err(|_| fail(v.span(), "an integer out of range".into())),
            DeValue::Float(_) => {
                Err(fail(v.span(), "a number with a fraction: options take whole numbers or text".into()))
            }
            DeValue::Datetime(_) => Err(fail(v.span(), "a date: write it as a string".into())),
            DeValue::Boolean(_) | DeValue::Array(_) | DeValue::Table(_) => {
                Err(fail(v.span(), "expected a string or a number".into()))
            }
        }
    };
    Ok(match v.get_ref() {
        DeValue::Boolean(b) => Value::Flag(*b),
        DeValue::Array(items) => Value::List(items.iter().map(scalar).collect::<Result<_>>()?),
        _ => Value::Text(scalar(v)?),
    })
}

/// Refuses a key no command of the table takes, and a value its option refuses.
fn check(
    entry: &Entry,
    key_span: std::ops::Range<usize>,
    span: std::ops::Range<usize>,
    root: &Command,
    commands: &[(Vec<String>, &Command)],
    fail: &Fail,
) -> Result<()> {
    let key = entry.key.as_str();
    let in_section = !entry.section.is_empty();
    if SPECIAL.contains(&key) {
        if key.starts_with("aws-") && in_section {
            return Err(fail(key_span, format!("{key} belongs to the profile, not to one command's table")));
        }
        return match &entry.value {
            Value::Text(_) => Ok(()),
            _ => Err(fail(span, format!("{key} is text"))),
        };
    }
    if NEVER.contains(&key) || (!in_section && PER_COMMAND_ONLY.contains(&key)) {
        let why = if NEVER.contains(&key) {
            "cannot be set in a profile"
        } else {
            "only in a command's table, such as [profile.NAME.backup]"
        };
        return Err(fail(key_span, format!("{key} {why}")));
    }
    let scope: Vec<&Command> = if in_section {
        commands.iter().filter(|(p, _)| *p == entry.section).map(|(_, c)| *c).collect()
    } else {
        commands.iter().map(|(_, c)| *c).collect()
    };
    let args: Vec<&Arg> = scope.iter().filter_map(|c| long(root, c, key)).collect();
    if args.is_empty() {
        let whose = if in_section { format!("of {}", entry.section.join(" ")) } else { "of any command".into() };
        return Err(fail(key_span, format!("unknown key {key:?}: not an option {whose}")));
    }
    for arg in args {
        check_value(arg, &entry.value).map_err(|msg| fail(span.clone(), format!("{key}: {msg}")))?;
    }
    Ok(())
}

/// Whether `arg` takes `value`, as its own parser says.
fn check_value(arg: &Arg, value: &Value) -> std::result::Result<(), String> {
    let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    let many = matches!(arg.get_action(), ArgAction::Append);
    match value {
        Value::Flag(_) if flag => return Ok(()),
        Value::Flag(_) => return Err("expected a value, not true or false".into()),
        _ if flag => return Err("a flag: true or false".into()),
        Value::List(_) if !many => return Err("takes one value, not a list".into()),
        _ => {}
    }
    let values = match value {
        Value::Text(t) => vec![t.clone()],
        Value::List(l) => l.clone(),
        Value::Flag(_) => unreachable!("handled above"),
    };
    let probe_arg = Arg::new("v").long("v").action(ArgAction::Append).value_parser(arg.get_value_parser().clone());
    let probe = Command::new("probe").no_binary_name(true).arg(probe_arg);
    for v in values {
        if let Err(e) = probe.clone().try_get_matches_from([format!("--v={v}")]) {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
            return Err(line.replace(" for '--v <v>'", "").replace(" for '--v <v>...'", ""));
        }
    }
    Ok(())
}

/// The line and column (from 1) of byte `offset` of `text`.
fn place(file: &Path, text: &str, offset: usize) -> Place {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Place { file: file.to_owned(), line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("c.toml"), text, &command())
    }

    fn error(text: &str) -> String {
        crate::exit::one_line(&parse(text).unwrap_err())
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
        assert!(crate::exit::one_line(&c.profile("dev").unwrap_err()).contains("it has: prod"));
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
                    let line = crate::exit::one_line(&e);
                    proptest::prop_assert!(!line.contains('\n'), "{line}");
                    proptest::prop_assert!(line.starts_with("c.toml:"), "{line}");
                }
            }
        }
    }
}
