//! Per-file results, in the shape `coffer validate` prints and serialises.

use crate::page::{Algo, Problem, Verdict};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Corrupt,
    /// Not an InnoDB tablespace (or one that is never read back, like ibtmp1).
    NotChecked,
    /// InnoDB, but no page could be verified (all encrypted with keys we do not have, ...).
    Unverifiable,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Corrupt => "corrupt",
            Self::NotChecked => "not_checked",
            Self::Unverifiable => "unverifiable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptPage {
    pub page: u64,
    /// Byte offset of the page in its file.
    pub offset: u64,
    pub reason: String,
}

/// Counts of page verdicts, mergeable across threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub pages: u64,
    pub valid: BTreeMap<Algo, u64>,
    pub empty: u64,
    /// Valid pages found inside page_compressed pages (also counted in `valid`).
    pub decompressed: u64,
    pub unverifiable: BTreeMap<String, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
    pub corrupt: Vec<CorruptPage>,
}

impl Tally {
    pub fn add(&mut self, page: u64, offset: u64, verdict: Verdict) {
        self.pages += 1;
        match verdict {
            Verdict::Valid { algo, inside } => {
                *self.valid.entry(algo).or_default() += 1;
                if inside.is_some() {
                    self.decompressed += 1;
                }
            }
            Verdict::Empty => self.empty += 1,
            Verdict::Unverifiable(why) => *self.unverifiable.entry(why).or_default() += 1,
            Verdict::Skipped(why) => *self.skipped.entry(why).or_default() += 1,
            Verdict::Corrupt(problems) => self.corrupt.push(CorruptPage { page, offset, reason: join(&problems) }),
        }
    }

    /// A problem that is not one page's verdict (a truncated file, a damaged page 0).
    pub fn add_corrupt(&mut self, page: u64, offset: u64, reason: String) {
        self.pages += 1;
        self.corrupt.push(CorruptPage { page, offset, reason });
    }

    pub fn merge(&mut self, other: Tally) {
        self.pages += other.pages;
        for (k, v) in other.valid {
            *self.valid.entry(k).or_default() += v;
        }
        self.empty += other.empty;
        self.decompressed += other.decompressed;
        for (k, v) in other.unverifiable {
            *self.unverifiable.entry(k).or_default() += v;
        }
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        self.corrupt.extend(other.corrupt);
    }

    pub fn unverifiable_pages(&self) -> u64 {
        self.unverifiable.values().sum()
    }
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
}

/// What validation found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// As given, or relative to the directory or image.
    pub path: String,
    pub status: Status,
    /// `db.table` (and partition) for a file-per-table tablespace.
    pub table: Option<String>,
    /// Page layout, e.g. "MariaDB full_crc32, 16K".
    pub format: Option<String>,
    pub bytes: u64,
    pub tally: Tally,
    /// Why a file was not checked or is unverifiable, or a note on a checked one.
    pub note: Option<String>,
}

impl FileReport {
    pub fn not_checked(path: String, bytes: u64, why: &str) -> Self {
        Self {
            path,
            status: Status::NotChecked,
            table: None,
            format: None,
            bytes,
            tally: Tally::default(),
            note: Some(why.into()),
        }
    }

    /// Derives the status from the tally.
    pub fn conclude(mut self) -> Self {
        self.tally.corrupt.sort_by_key(|c| c.page);
        let verified = self.tally.valid.values().sum::<u64>() + self.tally.empty;
        self.status = if !self.tally.corrupt.is_empty() {
            Status::Corrupt
        } else if verified == 0 && self.tally.unverifiable_pages() > 0 {
            Status::Unverifiable
        } else {
            Status::Ok
        };
        if self.note.is_none() && self.tally.unverifiable_pages() > 0 {
            let reasons: Vec<String> =
                self.tally.unverifiable.iter().map(|(why, n)| format!("{n} pages {why}")).collect();
            self.note = Some(format!("not verifiable: {}", reasons.join("; ")));
        }
        self
    }

    /// The algorithm(s) the valid pages carry, most common first: "crc32", "crc32+innodb".
    pub fn algorithm(&self) -> String {
        let mut algos: Vec<(&Algo, &u64)> = self.tally.valid.iter().collect();
        algos.sort_by(|a, b| b.1.cmp(a.1));
        let names: Vec<&str> = algos.iter().map(|(a, _)| a.name()).collect();
        if names.is_empty() {
            "none found".into()
        } else {
            names.join("+")
        }
    }
}

/// `db/t1.ibd` → `db.t1`; `db/t1#P#p0.ibd` → `db.t1 partition p0`. MySQL and MariaDB encode
/// special characters in names as `@XXXX`; those are decoded.
pub fn table_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_suffix(".ibd")?;
    let db = path.rsplit('/').nth(1)?;
    let (table, part) = match stem.split_once("#P#").or_else(|| stem.split_once("#p#")) {
        Some((t, p)) => (t, Some(p)),
        None => (stem, None),
    };
    let mut name = format!("{}.{}", decode_filename(db), decode_filename(table));
    if let Some(p) = part {
        name.push_str(&format!(" partition {}", decode_filename(p)));
    }
    Some(name)
}

/// Decodes the `@XXXX` escapes of MySQL file names (four hex digits of a UTF-16 code unit).
fn decode_filename(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 5);
        match hex.and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 5..];
            }
            None => {
                out.push('@');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(table_name("sbtest/sbtest1.ibd").as_deref(), Some("sbtest.sbtest1"));
        assert_eq!(table_name("db/t#P#p0.ibd").as_deref(), Some("db.t partition p0"));
        assert_eq!(table_name("my@002ddb/t@0020x.ibd").as_deref(), Some("my-db.t x"));
        assert_eq!(table_name("ibdata1"), None);
    }
}
