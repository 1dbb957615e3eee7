//! Which backups a prune keeps: a pure function of what the listing and the backups' sealed
//! descriptions say, so that its rules can be checked for any listing (the property tests
//! below), hostile ones included.
//!
//! The rules fail closed. A backup that cannot be read might be anything (an incremental whose
//! parents only it knows, a backup of the window): it is kept, with everything older than it.
//! A backup dated in the future is suspect: it is kept, and takes no place of a readable one
//! in the counts. Chains are followed only through backups that were read. The newest full is
//! always kept. A plan that would delete every backup, or the newest, is refused unless asked
//! for by name.

use coffer_mysql::meta::{BackupKind, ChainLink};

/// A listed time more than this far ahead of the clock is in the future (clocks differ).
pub const FUTURE_SKEW: i64 = 15 * 60;

/// What prune knows of a backup's place in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chained {
    /// Its link (from its sealed description with a key; from its catalog record without).
    Link(ChainLink),
    /// A backup that needs no other (an image made before chains, or not of a server).
    Alone,
    /// No record says, and no key was given to read the image.
    Unknown,
}

/// What was learned of one listed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Opened with the key: its chain and binary log position, from its sealed description.
    Sealed {
        /// Its chain link (`Alone`: no link).
        chain: Chained,
        /// Its binary log position: the file's number and the position.
        binlog: Option<(u64, u64)>,
    },
    /// Read without a key: what its catalog record says in the clear (anyone who can write
    /// to the bucket could have written it).
    Unverified(Chained),
    /// It does not open with the key given, is not an image, or could not be read.
    Unreadable(String),
}

/// A backup under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name under the prefix.
    pub name: String,
    /// Unix seconds (see [`backup_time`]).
    pub time: i64,
    /// What was learned of it.
    pub state: State,
}

/// The time a backup counts as taken at: the time in its name (or, without one, its sealed
/// creation time), never later than its sealed creation time allows: a name can make a backup
/// look older, never newer than its header says.
pub fn backup_time(named: Option<i64>, sealed_created: Option<i64>, modified: i64) -> i64 {
    match (named, sealed_created) {
        (Some(n), Some(c)) => n.min(c.saturating_add(FUTURE_SKEW)),
        (None, Some(c)) => c,
        (Some(n), None) => n,
        (None, None) => modified,
    }
}

/// How many of each kind to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N.
    pub last: usize,
    /// The newest of each of the last N days that have one.
    pub daily: usize,
    /// The newest of each of the last N weeks (Monday to Sunday) that have one.
    pub weekly: usize,
}

impl Policy {
    /// The counts asked for; one not given keeps none of its kind.
    pub fn given(last: Option<usize>, daily: Option<usize>, weekly: Option<usize>) -> Self {
        Policy { last: last.unwrap_or(0), daily: daily.unwrap_or(0), weekly: weekly.unwrap_or(0) }
    }

    /// Does it keep nothing by itself?
    pub fn is_empty(&self) -> bool {
        self.last == 0 && self.daily == 0 && self.weekly == 0
    }
}

/// What a prune is asked to keep.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The counts kept.
    pub policy: Policy,
    /// With point-in-time recovery kept: the window's start (Unix seconds).
    pub pitr_start: Option<i64>,
    /// Now (Unix seconds).
    pub now: i64,
    /// Backups another job is using (a lease names them), with who.
    pub in_use: Vec<(String, String)>,
}

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// For each candidate (in the order given: newest first), why it is kept; none: it goes.
    pub reasons: Vec<Vec<String>>,
    /// The backup point-in-time recovery of the window starts from, if one was found.
    pub pitr_base: Option<usize>,
    /// Said once each.
    pub warnings: Vec<String>,
    /// The candidates the keep rules counted (read, or listed without a key; not dated in the
    /// future), newest first.
    pub counted: Vec<usize>,
}

impl Plan {
    /// Would this plan delete every backup, or the newest one the rules count? Then it is not
    /// carried out without an explicit option. Returns why, in one line.
    pub fn refusal(&self, candidates: &[Candidate]) -> Option<String> {
        let doomed = self.reasons.iter().filter(|r| r.is_empty()).count();
        if doomed == 0 {
            return None;
        }
        if doomed == candidates.len() {
            return Some(format!("the plan deletes every backup ({doomed})"));
        }
        let newest = *self.counted.first()?;
        self.reasons[newest]
            .is_empty()
            .then(|| format!("the plan deletes the newest backup, {}", candidates[newest].name))
    }
}

fn suspect_time(time: i64, now: i64) -> bool {
    time > now.saturating_add(FUTURE_SKEW)
}

/// The plan for `candidates` (newest first) under `rules`.
pub fn plan(candidates: &[Candidate], rules: &Rules) -> Plan {
    let n = candidates.len();
    let mut plan = Plan { reasons: vec![Vec::new(); n], ..Default::default() };
    let suspect: Vec<bool> = candidates.iter().map(|c| suspect_time(c.time, rules.now)).collect();
    let counted: Vec<usize> =
        (0..n).filter(|&i| !suspect[i] && !matches!(candidates[i].state, State::Unreadable(_))).collect();
    plan.counted = counted.clone();
    keep_by_policy(candidates, &counted, rules.policy, &mut plan.reasons);
    if let Some(start) = rules.pitr_start {
        keep_for_pitr(candidates, &counted, start, &mut plan);
    }
    // The newest full: whatever the rules say, a chain can start again from it.
    if let Some(&i) = counted.iter().find(|&&i| is_full(&candidates[i].state)) {
        add(&mut plan.reasons[i], "newest full");
    }
    for (name, who) in &rules.in_use {
        for (c, r) in candidates.iter().zip(plan.reasons.iter_mut()) {
            if c.name == *name {
                add(r, &format!("in use by {who}"));
            }
        }
    }
    for (i, c) in candidates.iter().enumerate() {
        if suspect[i] {
            add(&mut plan.reasons[i], "dated in the future");
            plan.warnings.push(format!(
                "{}: dated {} UTC, in the future: kept, and not counted by the rules",
                c.name,
                crate::text::utc(c.time)
            ));
        }
    }
    keep_unreadable(candidates, &mut plan);
    keep_chains(candidates, &mut plan);
    plan
}

fn add(reasons: &mut Vec<String>, why: &str) {
    if !reasons.iter().any(|r| r == why) {
        reasons.push(why.to_owned());
    }
}

fn is_full(state: &State) -> bool {
    match state {
        State::Sealed { chain, .. } | State::Unverified(chain) => match chain {
            Chained::Link(l) => l.kind == BackupKind::Full,
            Chained::Alone => true,
            Chained::Unknown => false,
        },
        State::Unreadable(_) => false,
    }
}

/// The newest N, and the newest of each of the last N days and weeks, among `counted`.
fn keep_by_policy(candidates: &[Candidate], counted: &[usize], p: Policy, reasons: &mut [Vec<String>]) {
    for &i in counted.iter().take(p.last) {
        add(&mut reasons[i], "last");
    }
    let mut by = |n: usize, reason: &str, period: &dyn Fn(i64) -> i64| {
        let mut seen = Vec::new();
        for &i in counted {
            let key = period(candidates[i].time);
            if seen.len() < n && !seen.contains(&key) {
                seen.push(key);
                add(&mut reasons[i], reason);
            }
        }
    };
    by(p.daily, "daily", &|t| t.div_euclid(86_400));
    // 1970-01-01 was a Thursday: +3 days makes weeks start on Mondays.
    by(p.weekly, "weekly", &|t| (t.div_euclid(86_400) + 3).div_euclid(7));
}

/// Every backup taken in the window (whatever it is: recovery to a point in it may start from
/// it), and the newest before its start that recorded a binlog position (recovery to the
/// window's first moments starts there).
fn keep_for_pitr(candidates: &[Candidate], counted: &[usize], start: i64, plan: &mut Plan) {
    for (c, r) in candidates.iter().zip(plan.reasons.iter_mut()) {
        if c.time > start {
            add(r, "pitr window");
        }
    }
    let before: Vec<usize> = counted.iter().copied().filter(|&i| candidates[i].time <= start).collect();
    let positioned =
        before.iter().copied().find(|&i| matches!(candidates[i].state, State::Sealed { binlog: Some(_), .. }));
    match (positioned, before.first()) {
        (Some(i), _) => {
            add(&mut plan.reasons[i], "pitr");
            plan.pitr_base = Some(i);
        }
        (None, Some(&i)) => {
            add(&mut plan.reasons[i], "newest before the pitr window");
            plan.warnings.push(format!(
                "no backup from before the recovery window's start ({} UTC) recorded a binlog position: \
                 {} is kept, and no binary log is deleted",
                crate::text::utc(start),
                candidates[i].name
            ));
        }
        (None, None) => {}
    }
}

/// A backup that cannot be read is kept, and so is everything older than it.
fn keep_unreadable(candidates: &[Candidate], plan: &mut Plan) {
    let Some(first) = candidates.iter().position(|c| matches!(c.state, State::Unreadable(_))) else { return };
    for (i, c) in candidates.iter().enumerate() {
        if let State::Unreadable(why) = &c.state {
            add(&mut plan.reasons[i], "cannot be read");
            plan.warnings.push(format!("{}: {why}: kept, with every backup older than it", c.name));
        } else if not_newer(candidates, i, first) {
            add(&mut plan.reasons[i], &format!("older than {}, which cannot be read", candidates[first].name));
        }
    }
}

/// Is candidate `j` older than candidate `i`, or of the same second (names decide the order of
/// a second, and names are anyone's)?
fn not_newer(candidates: &[Candidate], j: usize, i: usize) -> bool {
    j > i || candidates[j].time == candidates[i].time
}

/// The link of a candidate whose chain is known (read, or listed without a key).
fn link_of(c: &Candidate) -> Option<&Chained> {
    match &c.state {
        State::Sealed { chain, .. } | State::Unverified(chain) => Some(chain),
        State::Unreadable(_) => None,
    }
}

/// Every backup a kept one builds on (following `parent`, each one less deep and of the same
/// full, among backups that were read); for a kept backup whose chain is unknown, or whose
/// parent is not found, everything older.
fn keep_chains(candidates: &[Candidate], plan: &mut Plan) {
    let mut by_id: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        if let Some(Chained::Link(l)) = link_of(c) {
            // Two backups claiming one id: neither is trusted as a parent (one is forged).
            if by_id.insert(l.id.as_str(), i).is_some() {
                by_id.insert(l.id.as_str(), usize::MAX);
            }
        }
    }
    // Marking a parent can mark more (its own chain): until nothing changes.
    loop {
        let before: usize = plan.reasons.iter().map(Vec::len).sum();
        for i in 0..candidates.len() {
            if plan.reasons[i].is_empty() {
                continue;
            }
            match link_of(&candidates[i]) {
                None | Some(Chained::Alone) => {}
                Some(Chained::Unknown) => keep_older(candidates, plan, i, "whose chain is unknown"),
                Some(Chained::Link(link)) => keep_parents(candidates, plan, &by_id, i, link),
            }
        }
        if plan.reasons.iter().map(Vec::len).sum::<usize>() == before {
            break;
        }
    }
}

fn keep_older(candidates: &[Candidate], plan: &mut Plan, i: usize, why: &str) {
    let reason = format!("older than {}, {why}", candidates[i].name);
    for j in (0..candidates.len()).filter(|&j| j != i && not_newer(candidates, j, i)) {
        if plan.reasons[j].is_empty() {
            plan.reasons[j].push(reason.clone());
        }
    }
}

fn keep_parents(
    candidates: &[Candidate],
    plan: &mut Plan,
    by_id: &std::collections::HashMap<&str, usize>,
    i: usize,
    link: &ChainLink,
) {
    let mut child = link;
    while let Some(p) = child.parent.as_deref() {
        let parent = by_id.get(p).and_then(|&j| match candidates.get(j).and_then(link_of) {
            Some(Chained::Link(l)) if l.depth.checked_add(1) == Some(child.depth) && l.full == child.full => {
                Some((j, l))
            }
            _ => None,
        });
        let Some((j, l)) = parent else {
            let warning = format!(
                "{} needs backup {p}, which no backup read under the prefix is: everything older is kept",
                candidates[i].name
            );
            if !plan.warnings.contains(&warning) {
                plan.warnings.push(warning);
            }
            keep_older(candidates, plan, i, "whose parent is not found");
            return;
        };
        add(&mut plan.reasons[j], &format!("needed by {}", candidates[i].name));
        child = l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_not_given_keeps_none_of_its_kind() {
        assert_eq!(Policy::given(Some(7), None, Some(2)), Policy { last: 7, daily: 0, weekly: 2 });
        assert!(Policy::given(None, None, None).is_empty());
    }
    use proptest::prelude::*;

    const DAY: i64 = 86_400;
    /// 2026-11-22 12:00:00 UTC, a Sunday.
    const SUNDAY: i64 = 1_795_348_800;

    fn id(n: u8) -> String {
        format!("{n:032x}")
    }

    fn sealed(chain: Chained, binlog: Option<(u64, u64)>) -> State {
        State::Sealed { chain, binlog }
    }

    fn candidates(states: Vec<State>, times: &[i64]) -> Vec<Candidate> {
        states
            .into_iter()
            .zip(times)
            .enumerate()
            .map(|(i, (state, &time))| Candidate { name: format!("b{i}"), time, state })
            .collect()
    }

    fn kept(plan: &Plan) -> Vec<usize> {
        plan.reasons.iter().enumerate().filter(|(_, r)| !r.is_empty()).map(|(i, _)| i).collect()
    }

    #[test]
    fn rules_keep_what_each_asks() {
        // Newest first: two a day for ten days, from Sunday 2026-11-22 back.
        let times: Vec<i64> = (0..20).map(|i| SUNDAY - (i / 2) * DAY - (i % 2) * 3600).collect();
        let all = candidates((0..20).map(|_| sealed(Chained::Link(ChainLink::full(id(1))), None)).collect(), &times);
        // One full each, all with the same id: the newest is "the newest full" either way.
        let kept_with = |p: Policy| kept(&plan(&all, &Rules { policy: p, now: SUNDAY, ..Rules::default() }));
        assert_eq!(kept_with(Policy { last: 3, ..Policy::default() }), [0, 1, 2]);
        assert_eq!(kept_with(Policy { daily: 4, ..Policy::default() }), [0, 2, 4, 6]);
        // Weekly: Sunday's week (Mon 16 - Sun 22) and the week before (Mon 9 - Sun 15).
        assert_eq!(kept_with(Policy { weekly: 5, ..Policy::default() }), [0, 14]);
        let both =
            plan(&all, &Rules { policy: Policy { last: 1, daily: 2, weekly: 2 }, now: SUNDAY, ..Rules::default() });
        assert_eq!(both.reasons[0], ["last", "daily", "weekly", "newest full"]);
        assert_eq!(both.reasons[2], ["daily"]);
        assert_eq!(both.reasons[14], ["weekly"]);
        assert!(both.reasons[1].is_empty() && both.reasons[19].is_empty());
    }

    #[test]
    fn kept_backups_keep_what_they_build_on() {
        // Newest first: inc2 <- inc1 <- full1; a differential on full1; full0 alone.
        let full1 = ChainLink::full(id(1));
        let inc1 = ChainLink::on(&full1, BackupKind::Incremental, id(2));
        let inc2 = ChainLink::on(&inc1, BackupKind::Incremental, id(3));
        let diff = ChainLink::on(&full1, BackupKind::Differential, id(4));
        let states = vec![
            Chained::Link(inc2),
            Chained::Link(diff),
            Chained::Link(inc1),
            Chained::Link(full1),
            Chained::Alone,
            Chained::Unknown,
            Chained::Alone,
        ];
        let times: Vec<i64> = (0..7).map(|i| SUNDAY - i * 3600).collect();
        let all = candidates(states.into_iter().map(State::Unverified).collect(), &times);
        let with = |in_use: &[usize]| {
            let in_use = in_use.iter().map(|&i| (format!("b{i}"), "a test".to_owned())).collect();
            plan(&all, &Rules { now: SUNDAY, in_use, ..Rules::default() })
        };
        // The newest full (b3) is always kept; keeping the newest incremental keeps its chain.
        assert_eq!(kept(&with(&[])), [3]);
        let p = with(&[0]);
        assert_eq!(kept(&p), [0, 2, 3]);
        assert!(p.reasons[3].contains(&"needed by b0".to_owned()), "{p:?}");
        assert_eq!(kept(&with(&[1])), [1, 3]);
        // A backup whose chain is unknown keeps everything older.
        assert_eq!(kept(&with(&[5])), [3, 5, 6]);
        // A kept incremental whose chain cannot be followed to its full keeps everything older.
        let p = plan(&all[..3], &Rules { now: SUNDAY, in_use: vec![("b0".into(), "t".into())], ..Rules::default() });
        assert!(
            p.warnings.iter().any(|w| w.contains("b0 needs backup") && w.contains("everything older is kept")),
            "{p:?}"
        );
        assert_eq!(kept(&p), [0, 1, 2]);
    }

    #[test]
    fn what_cannot_be_read_keeps_everything_older() {
        let full = |n| sealed(Chained::Link(ChainLink::full(id(n))), Some((1, 4)));
        let times: Vec<i64> = (0..5).map(|i| SUNDAY - i * DAY).collect();
        let all = candidates(vec![full(1), State::Unreadable("another key".into()), full(2), full(3), full(4)], &times);
        let p = plan(&all, &Rules { policy: Policy { last: 1, ..Policy::default() }, now: SUNDAY, ..Rules::default() });
        assert_eq!(kept(&p), [0, 1, 2, 3, 4]);
        assert!(p.reasons[3][0].contains("older than b1, which cannot be read"), "{p:?}");
    }

    #[test]
    fn the_pitr_window_is_kept_by_time_whatever_the_backups_say() {
        // Directory backups (no binlog position), all inside the window: all kept.
        let times: Vec<i64> = (0..4).map(|i| SUNDAY - i * 60).collect();
        let all = candidates((0..4).map(|_| sealed(Chained::Alone, None)).collect(), &times);
        let p = plan(&all, &Rules { pitr_start: Some(SUNDAY - 3600), now: SUNDAY, ..Rules::default() });
        assert_eq!(kept(&p), [0, 1, 2, 3]);
        assert_eq!(p.pitr_base, None);
        // The window starts after them: the newest before it is kept, with a warning.
        let p = plan(&all, &Rules { pitr_start: Some(SUNDAY + 1), now: SUNDAY + 2, ..Rules::default() });
        assert_eq!(kept(&p), [0]);
        assert!(p.warnings.iter().any(|w| w.contains("recorded a binlog position")), "{p:?}");
    }

    #[test]
    fn future_dates_take_no_place_of_a_readable_backup() {
        // Three junk objects dated 2099 and three real backups: keep-last 3 keeps the real ones.
        let mut times = vec![4_070_908_800, 4_070_995_200, 4_071_081_600];
        times.extend([SUNDAY, SUNDAY - DAY, SUNDAY - 2 * DAY]);
        let mut states = vec![sealed(Chained::Alone, None); 3];
        states.extend((1..=3).map(|n| sealed(Chained::Link(ChainLink::full(id(n))), None)));
        let all = candidates(states, &times);
        let p = plan(&all, &Rules { policy: Policy { last: 3, ..Policy::default() }, now: SUNDAY, ..Rules::default() });
        assert_eq!(kept(&p), [0, 1, 2, 3, 4, 5]);
        assert_eq!(p.reasons[3], ["last", "newest full"]);
        assert_eq!(p.reasons[0], ["dated in the future"]);
        assert!(p.refusal(&all).is_none());
    }

    #[test]
    fn a_plan_deleting_the_newest_or_everything_is_refused() {
        let times: Vec<i64> = (0..3).map(|i| SUNDAY - i * DAY).collect();
        let all = candidates(vec![State::Unverified(Chained::Unknown); 3], &times);
        let mut p =
            plan(&all, &Rules { policy: Policy { last: 1, ..Policy::default() }, now: SUNDAY, ..Rules::default() });
        assert_eq!(p.refusal(&all), None, "{p:?}");
        p.reasons[0].clear();
        assert!(p.refusal(&all).unwrap().contains("newest backup, b0"));
        for r in &mut p.reasons {
            r.clear();
        }
        assert!(p.refusal(&all).unwrap().contains("every backup (3)"));
    }

    #[test]
    fn names_cannot_make_a_backup_newer_than_its_header() {
        assert_eq!(backup_time(Some(100), Some(5_000), 0), 100);
        assert_eq!(backup_time(Some(4_070_908_800), Some(SUNDAY), 0), SUNDAY + FUTURE_SKEW);
        assert_eq!(backup_time(None, Some(SUNDAY), 7), SUNDAY);
        assert_eq!(backup_time(None, None, 7), 7);
    }

    /// A listing as a hostile or unlucky bucket gives it: real chains, forged links (missing
    /// parents, wrong depths, ids claimed twice), backups that do not open, future dates.
    fn listing() -> impl Strategy<Value = (Vec<Candidate>, Rules)> {
        let state = (0u8..10, 0u8..6, 0u8..4, any::<bool>(), 0u64..5).prop_map(|(kind, a, b, pos, file)| {
            let full = ChainLink::full(id(a));
            let link = match kind {
                0 => return State::Unreadable("does not open".into()),
                1 => return sealed(Chained::Alone, pos.then_some((file, 4))),
                2..=4 => full,
                5..=7 => {
                    // An incremental of full `a`, `b` deep, on the backup with id `a*16+b-1`
                    // (or on the full itself at depth 1).
                    let parent = if b <= 1 { id(a) } else { id(a * 16 + b - 1) };
                    ChainLink {
                        id: id(a * 16 + b),
                        kind: BackupKind::Incremental,
                        parent: Some(parent),
                        full: id(a),
                        depth: u32::from(b.max(1)),
                    }
                }
                8 => ChainLink::on(&full, BackupKind::Differential, id(200 + b)),
                _ => ChainLink {
                    id: id(100 + b),
                    kind: BackupKind::Incremental,
                    parent: Some(id(99)),
                    full: id(a),
                    depth: 3,
                },
            };
            sealed(Chained::Link(link), pos.then_some((file, 4)))
        });
        let entry = (state, 0i64..40, 0u8..8).prop_map(|(state, hours_ago, future)| {
            let time = if future == 0 { SUNDAY + 365 * DAY } else { SUNDAY - hours_ago * 3600 };
            (state, time)
        });
        let rules = (
            0usize..4,
            0usize..3,
            0usize..2,
            proptest::option::of(0i64..48),
            proptest::collection::vec(0usize..12, 0..2),
        );
        (proptest::collection::vec(entry, 0..12), rules).prop_map(|(entries, (last, daily, weekly, pitr, in_use))| {
            let mut all: Vec<(State, i64)> = entries;
            all.sort_by_key(|e| std::cmp::Reverse(e.1));
            let candidates = all
                .into_iter()
                .enumerate()
                .map(|(i, (state, time))| Candidate { name: format!("b{i}"), time, state })
                .collect();
            let rules = Rules {
                policy: Policy { last, daily, weekly },
                pitr_start: pitr.map(|h| SUNDAY - h * 3600),
                now: SUNDAY,
                in_use: in_use.into_iter().map(|i| (format!("b{i}"), "a job".to_owned())).collect(),
            };
            (candidates, rules)
        })
    }

    /// The backup `c` builds on, if exactly one read backup is that parent.
    fn parent_of<'a>(all: &'a [Candidate], link: &ChainLink) -> Option<(usize, &'a ChainLink)> {
        let p = link.parent.as_deref()?;
        let with: Vec<usize> =
            (0..all.len()).filter(|&j| matches!(link_of(&all[j]), Some(Chained::Link(l)) if l.id == p)).collect();
        let [j] = with[..] else { return None };
        match link_of(&all[j]) {
            Some(Chained::Link(l)) if l.depth + 1 == link.depth && l.full == link.full => Some((j, l)),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A keyed prune never deletes a backup a kept one builds on, one the window needs,
        /// the newest full, anything it could not read or anything older than that.
        #[test]
        fn a_prune_never_deletes_what_it_must_keep((all, rules) in listing()) {
            let p = plan(&all, &rules);
            let keeps = |i: usize| !p.reasons[i].is_empty();
            for (i, c) in all.iter().enumerate() {
                // Unreadable, and everything older; dated in the future.
                if matches!(c.state, State::Unreadable(_)) {
                    prop_assert!((i..all.len()).all(keeps), "{i} {p:?}");
                }
                if c.time > rules.now + FUTURE_SKEW {
                    prop_assert!(keeps(i));
                }
                // The window, by time.
                if rules.pitr_start.is_some_and(|s| c.time > s) {
                    prop_assert!(keeps(i));
                }
                if rules.in_use.iter().any(|(n, _)| *n == c.name) {
                    prop_assert!(keeps(i));
                }
                // Chains of kept backups, whole; or everything older.
                if let (true, Some(Chained::Link(link))) = (keeps(i), link_of(c)) {
                    let mut child = link;
                    while child.parent.is_some() {
                        match parent_of(&all, child) {
                            Some((j, l)) => {
                                prop_assert!(keeps(j), "{i} needs {j}: {p:?}");
                                child = l;
                            }
                            None => {
                                prop_assert!((i..all.len()).all(keeps), "{i}'s parent is missing: {p:?}");
                                break;
                            }
                        }
                    }
                }
            }
            let counted = |i: &usize| all[*i].time <= rules.now + FUTURE_SKEW && !matches!(all[*i].state, State::Unreadable(_));
            // The newest full that was read.
            if let Some(f) = (0..all.len()).filter(counted).find(|&i| is_full(&all[i].state)) {
                prop_assert!(keeps(f));
            }
            // Point-in-time recovery from the window's start.
            if let Some(start) = rules.pitr_start {
                let base = (0..all.len())
                    .filter(counted)
                    .find(|&i| all[i].time <= start && matches!(all[i].state, State::Sealed { binlog: Some(_), .. }));
                if let Some(b) = base {
                    prop_assert!(keeps(b));
                    prop_assert_eq!(p.pitr_base, Some(b));
                }
            }
            // A count keeps the newest counted backup; with the window alone, a plan that
            // would delete it is refused.
            if !rules.policy.is_empty() {
                prop_assert!(p.refusal(&all).is_none(), "{p:?}");
            }
            if let Some(newest) = (0..all.len()).find(counted) {
                prop_assert!(keeps(newest) || p.refusal(&all).is_some(), "{p:?}");
            }
        }
    }
}
