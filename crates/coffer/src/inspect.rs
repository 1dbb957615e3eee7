//! InnoDB page validation while a backup reads the files (like pgBackRest's page checksums):
//! a warning per corrupt page, or a refused backup with --fail-on-corrupt.
//!
//! The pages inside the `.delta` files of an incremental backup (mariabackup, xtrabackup) are
//! checked too: the `.meta` beside the delta on disk gives their size (whatever order the walk
//! meets the two in), or, without one, the delta itself does (`coffer_innodb::delta::infer`).

use crate::report::Report;
use coffer_format::{EntryMeta, Segment};
use coffer_fs::source::Span;
use coffer_image::{Findings, Inspect, InspectFile};
use coffer_innodb::delta::{delta_of, read_meta_beside, DeltaChecker};
use coffer_innodb::{classify, ChunkChecker, Kind, Policy};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the page check of a backup found.
#[derive(Debug, Default, Clone)]
pub struct PageCounts {
    /// Tablespaces checked.
    pub files: u64,
    /// Pages checked.
    pub pages: u64,
    /// Corrupt pages.
    pub corrupt: u64,
    /// The files with corrupt pages.
    pub corrupt_files: std::collections::BTreeSet<Vec<u8>>,
}

/// Checks the InnoDB pages of a backup's files as they are read.
pub(crate) struct InnodbInspector {
    pub fail_on_corrupt: bool,
    pub report: Arc<dyn Report>,
    pub counts: Mutex<PageCounts>,
}

enum Checker {
    Pages(ChunkChecker),
    /// An incremental delta, and what is wrong with its `.meta` (reported with the first chunk).
    Delta(DeltaChecker, Option<String>),
    /// Page 0 could not be read as a tablespace header: reported with the first chunk.
    Broken(String),
}

impl InspectFile for Checker {
    fn align(&self) -> u64 {
        match self {
            Checker::Pages(c) => c.page_size(),
            Checker::Delta(c, _) => c.page_size(),
            Checker::Broken(_) => 1,
        }
    }

    fn chunk(&self, span: &Span, segments: &[Segment], data: &[u8]) -> Findings {
        match self {
            Checker::Broken(why) if span.range_start == 0 => Findings { units: 1, problems: vec![why.clone()] },
            Checker::Broken(_) => Findings::default(),
            Checker::Pages(c) => {
                let segs: Vec<(u64, u32)> = segments.iter().map(|s| (s.offset, s.len)).collect();
                findings(c.check(span.range_start, span.range_end, &segs, data, span.last))
            }
            Checker::Delta(c, meta_problem) => {
                let segs: Vec<(u64, u32)> = segments.iter().map(|s| (s.offset, s.len)).collect();
                let mut f = findings(c.check(span.range_start, span.range_end, &segs, data, span.last));
                if let (Some(why), 0) = (meta_problem, span.range_start) {
                    f.units += 1;
                    f.problems.insert(0, why.clone());
                }
                f
            }
        }
    }
}

fn findings(r: coffer_innodb::ChunkResult) -> Findings {
    let problems = r.corrupt.iter().map(|p| format!("page {} at byte {}: {}", p.page, p.offset, p.reason)).collect();
    Findings { units: r.pages, problems }
}

/// The checker of an incremental delta (`name` ends in `.delta`) found at `source`: its `.meta`
/// is read from beside it. `None`: not checked (a later part of the system tablespace, whose
/// delta numbers pages from the start of its file, not of the space).
fn delta_checker(stem: &str, source: &Path, file: &std::fs::File) -> Option<Checker> {
    if matches!(classify(stem), Kind::System(n) if n > 1) {
        return None;
    }
    let (meta, meta_problem) = match read_meta_beside(source) {
        Ok(meta) => (meta, None),
        Err(why) => (None, Some(why)),
    };
    Some(match DeltaChecker::open_file(file, meta.as_ref(), Policy::Auto) {
        Ok(c) => Checker::Delta(c, meta_problem),
        Err(why) => Checker::Broken(match meta_problem {
            Some(m) => format!("{m}; {why}"),
            None => why,
        }),
    })
}

impl Inspect for InnodbInspector {
    fn file(&self, meta: &EntryMeta, source: &Path, file: &std::fs::File) -> Option<Arc<dyn InspectFile>> {
        let name = String::from_utf8_lossy(&meta.path);
        if let Some(stem) = delta_of(&name) {
            let checker = delta_checker(stem, source, file)?;
            self.counts.lock().expect("lock").files += 1;
            return Some(Arc::new(checker));
        }
        let checker = match ChunkChecker::open(file, source, &name, Policy::Auto)? {
            Ok(c) => Checker::Pages(c),
            Err(why) => Checker::Broken(why),
        };
        self.counts.lock().expect("lock").files += 1;
        Some(Arc::new(checker))
    }

    fn report(&self, path: &[u8], findings: Findings) -> Result<(), String> {
        let mut counts = self.counts.lock().expect("lock");
        counts.pages += findings.units;
        if findings.problems.is_empty() {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(path);
        counts.corrupt += findings.problems.len() as u64;
        counts.corrupt_files.insert(path.to_vec());
        if self.fail_on_corrupt {
            return Err(format!("{shown} has a corrupt InnoDB page: {} (--fail-on-corrupt)", findings.problems[0]));
        }
        for p in &findings.problems {
            self.report.warn(&format!("corrupt InnoDB page in {shown}: {p}"));
        }
        Ok(())
    }
}
