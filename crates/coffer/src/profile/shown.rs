//! `config show` and `config check` as they print: an option's value and where it comes from;
//! what was checked of each profile.

use super::{Config, Entry, Finding, Place};
use crate::{Error, Result};
use serde::Serialize;
use std::ffi::OsString;
use std::path::PathBuf;

/// An option as `config show` prints it: its name, value and source. Serialized with its
/// fields in this order (`option`, `source`, `value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownOption {
    /// `--compress`, `<source>`, or for an entry of the file `[backup] compress`.
    pub option: String,
    /// Where the value comes from: `flag`, `env VAR`, `default`, `file PATH:LINE:COL`.
    pub source: String,
    /// The value (a secret is never shown).
    pub value: String,
}

/// Where an option's value in a run comes from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// The command line.
    Flag,
    /// The profile, at this place; `secret`: never shown.
    File {
        /// Where the file sets it.
        at: &'a Place,
        /// Whether the value is a secret.
        secret: bool,
    },
    /// The environment variable named.
    Env(String),
    /// The option's default.
    Default,
}

impl ShownOption {
    /// The option `option` of a run, with its `values` from `source`; `secret`: an option whose
    /// value is never shown on the command line or in the environment either.
    pub fn of_run(option: String, source: Source, values: &[String], secret: bool) -> Self {
        let hidden = || if secret { "<secret>".into() } else { values.join(", ") };
        let (value, source) = match source {
            Source::File { at, secret: true } => (format!("<secret from {at}>"), format!("file {at}")),
            Source::File { at, secret: false } => (values.join(", "), format!("file {at}")),
            Source::Flag => (hidden(), "flag".into()),
            Source::Env(var) => (hidden(), format!("env {var}")),
            Source::Default => (values.join(", "), "default".into()),
        };
        ShownOption { option, source, value }
    }

    /// The line `config show` prints.
    pub fn line(&self) -> String {
        format!("{:<28} {:<40} {}", self.option, self.value, self.source)
    }
}

impl Entry {
    /// The entry as `config show` prints it, with the variable that overrides it if it is set.
    pub fn row(&self) -> ShownOption {
        let option = if self.section.is_empty() {
            self.key.clone()
        } else {
            format!("[{}] {}", self.section.join(" "), self.key)
        };
        let var = super::env_var(&self.key);
        let mut source = format!("file {}", self.at);
        if std::env::var_os(&var).is_some() {
            source.push_str(&format!(" (overridden by {var})"));
        }
        ShownOption { option, source, value: self.shown() }
    }
}

/// What `config check` found of one profile. Serialized as `--json` shows it: `checks`, `ok`,
/// `profile`.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileCheck {
    /// What was checked.
    pub checks: Vec<Finding>,
    /// Whether every check passed.
    pub ok: bool,
    /// The profile's name.
    pub profile: String,
}

impl ProfileCheck {
    /// The findings of the profile `name`.
    pub fn new(name: &str, checks: Vec<Finding>) -> Self {
        ProfileCheck { ok: checks.iter().all(|f| f.ok), checks, profile: name.to_owned() }
    }

    /// The checks that failed.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|f| !f.ok).count()
    }

    /// The lines `config check` prints: `NAME: ok   WHAT: DETAIL` or `NAME: FAIL WHAT: DETAIL`.
    pub fn lines(&self) -> Vec<String> {
        let line =
            |f: &Finding| format!("{}: {} {}: {}", self.profile, if f.ok { "ok  " } else { "FAIL" }, f.what, f.detail);
        self.checks.iter().map(line).collect()
    }
}

/// `config check --json`'s document: the file and each profile checked.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The config file.
    pub file: PathBuf,
    /// Each profile checked.
    pub profiles: Vec<ProfileCheck>,
}

impl CheckReport {
    /// Fails when a check failed: `N check(s) failed`.
    pub fn outcome(&self) -> Result<()> {
        match self.profiles.iter().map(ProfileCheck::failed).sum::<usize>() {
            0 => Ok(()),
            failed => Err(Error::msg(format!("{failed} check{} failed", if failed == 1 { "" } else { "s" }))),
        }
    }
}

impl Config {
    /// The profiles `config check` checks: `profile` (which must be in the file), or every
    /// profile of the file (a file with none is refused).
    pub fn to_check(&self, profile: Option<&str>) -> Result<Vec<String>> {
        let names: Vec<String> = match profile {
            Some(p) => {
                self.profile(p)?;
                vec![p.to_owned()]
            }
            None => self.profiles.keys().cloned().collect(),
        };
        if names.is_empty() {
            return Err(Error::usage(format!("{} has no profile ([profile.NAME])", self.path.display())));
        }
        Ok(names)
    }
}

/// The argument vector of a run of `command` (its words) under the profile, with the config
/// file given (`--config`).
pub fn argv(profile: &str, file: Option<&std::path::Path>, command: &[String]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["coffer".into(), "--profile".into(), profile.into()];
    if let Some(f) = file {
        argv.extend(["--config".into(), f.as_os_str().to_owned()]);
    }
    argv.extend(command.iter().map(OsString::from));
    argv
}
