//! Validating a delta whose bytes arrive in order (a file inside an image).

use super::{infer, DeltaError, DeltaJudge, DeltaMeta, DeltaPage, DeltaParser, Inference, INFER_MAX};
use crate::page::Policy;
use crate::report::{table_name, FileReport, Status, Tally};

/// Where a delta report's `.meta` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSource {
    /// The `.meta` was read before the delta.
    Given,
    /// Inferred from the delta itself ([`infer`]); a `.meta` that comes later is checked against
    /// it ([`cross_check`]).
    Inferred(DeltaMeta),
}

enum State {
    /// Collecting the first bytes to infer the page size from.
    Inferring(Vec<u8>),
    Parsing {
        parser: DeltaParser,
        judge: Box<DeltaJudge>,
    },
    /// The structure broke (reported): nothing more is read.
    Stopped,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Inferring(_) => "Inferring",
            State::Parsing { .. } => "Parsing",
            State::Stopped => "Stopped",
        })
    }
}

/// Validates a delta whose bytes arrive in order (a file inside an image), like
/// [`crate::PageStream`] does a tablespace. Offsets may jump ahead (holes, read as zeros).
#[derive(Debug)]
pub struct DeltaStream {
    report: FileReport,
    policy: Policy,
    state: State,
    pos: u64,
    source: MetaSource,
}

impl DeltaStream {
    /// `meta`: the delta's `.meta`, if it came first; without it the page size is inferred.
    pub fn new(display: String, policy: Policy, meta: Option<&DeltaMeta>) -> Self {
        let report = FileReport {
            table: table_name(display.strip_suffix(".delta").unwrap_or(&display)),
            path: display,
            status: Status::Ok,
            format: None,
            bytes: 0,
            tally: Tally::default(),
            note: None,
        };
        let (state, source) = match meta {
            Some(m) => (
                State::Parsing {
                    parser: DeltaParser::new(m.physical_size()),
                    judge: Box::new(DeltaJudge::new(m, policy)),
                },
                MetaSource::Given,
            ),
            None => (
                State::Inferring(Vec::new()),
                MetaSource::Inferred(DeltaMeta { page_size: 0, zip_size: 0, space_id: None, space_flags: None }),
            ),
        };
        Self { report, policy, state, pos: 0, source }
    }

    /// Pages read so far.
    pub fn pages(&self) -> u64 {
        self.report.tally.pages
    }

    /// A finding that is not about the delta's bytes (its `.meta` is unreadable, ...).
    pub fn add_problem(&mut self, reason: String) {
        self.report.tally.add_corrupt(0, 0, reason);
    }

    /// Feeds the bytes at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) {
        if offset > self.pos {
            self.zeros(offset - self.pos);
        }
        self.pos += data.len() as u64;
        self.feed(data);
    }

    fn zeros(&mut self, n: u64) {
        self.pos = self.pos.saturating_add(n);
        self.feed_zeros(n);
    }

    fn feed_zeros(&mut self, n: u64) {
        match &mut self.state {
            State::Parsing { parser, judge } => {
                let tally = &mut self.report.tally;
                if let Err(e) = parser.zeros(n, &mut |p: DeltaPage<'_>| record(tally, judge, p)) {
                    self.stop(e);
                }
            }
            State::Inferring(prefix) => {
                // Zeros break a block header: the first ones are enough to tell.
                let k = (INFER_MAX - prefix.len()).min(n.min(INFER_MAX as u64) as usize);
                prefix.resize(prefix.len() + k, 0);
                self.try_infer(false);
                // A full prefix always concludes: the rest goes to the parser, if any.
                if n > k as u64 && !matches!(self.state, State::Inferring(_)) {
                    self.feed_zeros(n - k as u64);
                }
            }
            State::Stopped => {}
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Parsing { parser, judge } => {
                let tally = &mut self.report.tally;
                let result = parser.feed(data, &mut |p: DeltaPage<'_>| record(tally, judge, p));
                if let Err(e) = result {
                    self.stop(e);
                }
            }
            State::Inferring(prefix) => {
                let k = (INFER_MAX - prefix.len()).min(data.len());
                prefix.extend_from_slice(&data[..k]);
                let rest = &data[k..];
                self.try_infer(false);
                if !rest.is_empty() {
                    self.feed(rest);
                }
            }
            State::Stopped => {}
        }
    }

    fn try_infer(&mut self, complete: bool) {
        let State::Inferring(prefix) = &mut self.state else { return };
        match infer(prefix, complete) {
            Inference::NeedMore => {}
            Inference::Failed(why) => {
                self.report.tally.add_corrupt(0, 0, format!("{why} (no .meta came before it)"));
                self.state = State::Stopped;
            }
            Inference::Found { meta, format } => {
                let prefix = std::mem::take(prefix);
                self.source = MetaSource::Inferred(meta);
                self.state = State::Parsing {
                    parser: DeltaParser::new(meta.physical_size()),
                    judge: Box::new(DeltaJudge::with_format(&meta, format, self.policy)),
                };
                self.feed(&prefix);
            }
        }
    }

    fn stop(&mut self, e: DeltaError) {
        self.report.tally.add_corrupt(e.page().map_or(0, u64::from), e.offset(), e.to_string());
        self.state = State::Stopped;
    }

    /// Ends the delta, `size` bytes long (the rest after the last data is a hole). Returns its
    /// report and where its page size came from.
    pub fn finish(mut self, size: u64) -> (FileReport, MetaSource) {
        if size > self.pos {
            self.zeros(size - self.pos);
        }
        self.try_infer(true);
        self.report.bytes = size;
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Parsing { parser, judge } => {
                self.report.format = Some(format!("incremental delta, {}", judge.describe()));
                match parser.finish() {
                    Ok(s) if s.pages == 0 => {
                        self.report.note = Some("no page changed since the base backup".into());
                    }
                    Ok(_) => {}
                    Err(e) => self.stop(e),
                }
            }
            State::Inferring(_) | State::Stopped => {}
        }
        (self.report.conclude(), self.source)
    }
}

/// Judges one page into `tally`.
fn record(tally: &mut Tally, judge: &mut DeltaJudge, p: DeltaPage<'_>) {
    match judge.judge(p.page_no, p.bytes) {
        Ok(verdict) => tally.add(u64::from(p.page_no), p.offset, verdict),
        Err(why) => tally.add_corrupt(u64::from(p.page_no), p.offset, why),
    }
}

/// Checks a `.meta` that came after its delta against what the delta showed: a finding added to
/// the delta's report if they disagree (the engines would apply the delta with the `.meta`'s
/// page size).
pub fn cross_check(report: &mut FileReport, inferred: &DeltaMeta, meta: &DeltaMeta) {
    let mut problems = Vec::new();
    if inferred.page_size != 0 && inferred.physical_size() != meta.physical_size() {
        problems.push(format!(
            "its .meta says {}-byte pages, but the delta's pages are {} bytes",
            meta.physical_size(),
            inferred.physical_size()
        ));
    }
    if let (Some(a), Some(b)) = (inferred.space_id, meta.space_id) {
        if a != b && inferred.page_size != 0 {
            problems.push(format!("its .meta says space id {b}, but the delta's first page is of space {a}"));
        }
    }
    if problems.is_empty() {
        return;
    }
    let mut r = report.clone();
    for p in problems {
        r.tally.add_corrupt(0, 0, p);
    }
    *report = r.conclude();
}
