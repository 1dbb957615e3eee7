//! InnoDB page validation while a backup reads the files (like pgBackRest's page checksums):
//! a warning per corrupt page, or a refused backup with --fail-on-corrupt.

use crate::report::Report;
use coffer_format::{EntryMeta, Segment};
use coffer_fs::source::Span;
use coffer_image::{Findings, Inspect, InspectFile};
use coffer_innodb::{ChunkChecker, Policy};
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
    /// Page 0 could not be read as a tablespace header: reported with the first chunk.
    Broken(String),
}

impl InspectFile for Checker {
    fn align(&self) -> u64 {
        match self {
            Checker::Pages(c) => c.page_size(),
            Checker::Broken(_) => 1,
        }
    }

    fn chunk(&self, span: &Span, segments: &[Segment], data: &[u8]) -> Findings {
        match self {
            Checker::Broken(why) if span.range_start == 0 => Findings { units: 1, problems: vec![why.clone()] },
            Checker::Broken(_) => Findings::default(),
            Checker::Pages(c) => {
                let segs: Vec<(u64, u32)> = segments.iter().map(|s| (s.offset, s.len)).collect();
                let r = c.check(span.range_start, span.range_end, &segs, data, span.last);
                let problems =
                    r.corrupt.iter().map(|p| format!("page {} at byte {}: {}", p.page, p.offset, p.reason)).collect();
                Findings { units: r.pages, problems }
            }
        }
    }
}

impl Inspect for InnodbInspector {
    fn file(&self, meta: &EntryMeta, source: &Path, file: &std::fs::File) -> Option<Arc<dyn InspectFile>> {
        let name = String::from_utf8_lossy(&meta.path);
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
