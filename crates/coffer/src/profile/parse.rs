//! The file's text, read into profiles and checked against the commands' options.

use super::{applies_to, Commands, Config, Entry, Place, Takes, Value, NEVER, PER_COMMAND_ONLY, SPECIAL};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// [`Config::parse`].
pub(super) fn parse(path: &Path, text: &str, commands: &dyn Commands) -> Result<Config> {
    let at = |span: std::ops::Range<usize>| place(path, text, span.start);
    let fail = |span: std::ops::Range<usize>, msg: String| Error::usage(format!("{}: {msg}", at(span)));
    let doc = DeTable::parse(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        Error::usage(format!("{}: {}", place(path, text, start), e.message().trim()))
    })?;
    let mut profiles = BTreeMap::new();
    let paths: Vec<Vec<String>> = commands.paths().into_iter().filter(|p| applies_to(p)).collect();
    for (key, value) in doc.get_ref() {
        if key.get_ref() != "profile" {
            return Err(fail(key.span(), format!("unknown table {:?}: profiles are [profile.NAME]", key.get_ref())));
        }
        let DeValue::Table(table) = value.get_ref() else {
            return Err(fail(value.span(), "profile must be a table of profiles: [profile.NAME]".into()));
        };
        for (name, body) in table {
            let n = name.get_ref();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
                return Err(fail(name.span(), format!("{n:?}: a profile's name is letters, digits, '_', '-', '.'")));
            }
            let DeValue::Table(body) = body.get_ref() else {
                return Err(fail(body.span(), format!("profile.{n} must be a table")));
            };
            let mut entries = Vec::new();
            collect(body, &[], commands, &paths, &mut entries, &at, &fail)?;
            profiles.insert(n.to_string(), entries);
        }
    }
    Ok(Config { path: path.to_owned(), profiles })
}

type Fail<'a> = dyn Fn(std::ops::Range<usize>, String) -> Error + 'a;

/// The entries of one table of a profile (`section` names its command), checked.
fn collect(
    table: &DeTable,
    section: &[String],
    commands: &dyn Commands,
    paths: &[Vec<String>],
    out: &mut Vec<Entry>,
    at: &dyn Fn(std::ops::Range<usize>) -> Place,
    fail: &Fail,
) -> Result<()> {
    for (key, value) in table {
        let k = key.get_ref().to_string();
        if let DeValue::Table(inner) = value.get_ref() {
            let mut path = section.to_vec();
            path.push(k.clone());
            if !paths.contains(&path) {
                return Err(fail(
                    key.span(),
                    format!("{:?} is not a command: a table of a profile names one", path.join(" ")),
                ));
            }
            collect(inner, &path, commands, paths, out, at, fail)?;
            continue;
        }
        let entry =
            Entry { key: k.clone(), section: section.to_vec(), value: value_of(value, fail)?, at: at(key.span()) };
        check(&entry, key.span(), value.span(), commands, paths, fail)?;
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
    commands: &dyn Commands,
    paths: &[Vec<String>],
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
    let scope = paths.iter().filter(|p| !in_section || **p == entry.section);
    let found: Vec<(&Vec<String>, Takes)> = scope.filter_map(|p| Some((p, commands.takes(p, key)?))).collect();
    if found.is_empty() {
        let whose = if in_section { format!("of {}", entry.section.join(" ")) } else { "of any command".into() };
        return Err(fail(key_span, format!("unknown key {key:?}: not an option {whose}")));
    }
    for (path, takes) in found {
        check_value(commands, path, key, takes, &entry.value)
            .map_err(|msg| fail(span.clone(), format!("{key}: {msg}")))?;
    }
    Ok(())
}

/// Whether option `--long` of the command at `path`, which takes values as `takes` says, takes
/// `value`, as its own parser says.
fn check_value(
    commands: &dyn Commands,
    path: &[String],
    long: &str,
    takes: Takes,
    value: &Value,
) -> std::result::Result<(), String> {
    let flag = takes == Takes::Flag;
    let many = takes == Takes::Many;
    match value {
        Value::Flag(_) if flag => return Ok(()),
        Value::Flag(_) => return Err("expected a value, not true or false".into()),
        _ if flag => return Err("a flag: true or false".into()),
        Value::List(_) if !many => return Err("takes one value, not a list".into()),
        _ => {}
    }
    for v in value.texts() {
        commands.parses(path, long, &v)?;
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
