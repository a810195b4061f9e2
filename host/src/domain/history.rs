//! The answer key a page at a time: the latest faults of a journal (or those before an
//! instant), read from its end backwards, so that a look at the recent past costs the
//! recent past, whatever the history, and memory holds a page, not the journal.

use std::{collections::HashMap, io, path::Path};

use chrono::{DateTime, TimeDelta, Utc};

use super::journal::{self, Entry, OutcomeRecord, Position, PreparedRecord, Record, RevertRecord};

/// The most faults one page may hold.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// Which faults: those asked for in `[since, until)` and journaled before `before` (of
/// run `run`, if given), the latest `limit` of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Where the page before this one started: the `next` of a page.
    pub before: Option<Position>,
    pub limit: usize,
    /// Only the faults of this run.
    pub run: Option<String>,
}

/// The run a fault belongs to: its id's prefix (`<run start in ms>-<n>`), shared by every
/// fault one start of the daemon (or one `kill`) asked for.
pub(crate) fn run_of(id: &str) -> &str {
    id.split_once('-').map_or(id, |(run, _)| run)
}

/// A run as `history --run` and `GET /api/history?run=` name it: one meaning for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Run {
    /// `last`: the run of the latest fault journaled.
    Last,
    /// A run's number: the part of a fault's id before the dash.
    Number(String),
}

impl Run {
    /// `last` or a run's number; else the reason, to be prefixed with where it came from.
    pub(crate) fn parse(text: &str) -> Result<Run, String> {
        match text {
            "last" => Ok(Run::Last),
            run if !run.is_empty() && run.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Run::Number(run.to_owned()))
            }
            run => Err(format!(
                "invalid run `{}`: expected last, or a run's number (the part of a fault's id before the dash)",
                crate::support::text::clip(&crate::support::text::escape_controls(run), 64)
            )),
        }
    }

    /// The run's number, read from the journal at `path` for `last`; `None`: there is
    /// no last run (no fault journaled).
    pub(crate) fn number(self, path: &Path) -> io::Result<Option<String>> {
        match self {
            Run::Last => last_run(path),
            Run::Number(run) => Ok(Some(run)),
        }
    }
}

/// The run of the latest fault journaled (`history --run last`), if there is one.
fn last_run(path: &Path) -> io::Result<Option<String>> {
    for line in journal::lines_backwards_with_archives(path)? {
        if let Ok(Record::Intent(intent)) = serde_json::from_slice::<Record>(&line?) {
            return Ok(Some(run_of(&intent.id).to_owned()));
        }
    }
    Ok(None)
}

/// One page of the answer key.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The faults, oldest first.
    pub entries: Vec<Entry>,
    /// Where this page starts, if there are older faults in range: the `before` that
    /// asks for the next (older) page. A position in the journal, not an instant: faults
    /// injected at once may be journaled out of the order of their instants, and none
    /// falls between two pages.
    pub next: Option<Position>,
    /// Lines of the part read that could not be read.
    pub problems: Vec<String>,
}

/// How long after its intent an outcome may be written: a plugin call's longest
/// deadline, and then some. Outcomes older than this before the page are not kept.
const OUTCOME_LAG: TimeDelta = TimeDelta::minutes(15);

/// Reads one page, backwards from the journal's end (through its archives).
pub(crate) fn page(path: &Path, query: Query) -> io::Result<Page> {
    let mut page = Page::default();
    let limit = query.limit.clamp(1, MAX_LIMIT);
    // Read before their intents (they come later in the file): the latest revert of
    // each fault, and the outcomes near the page.
    let mut outcomes: HashMap<String, OutcomeRecord> = HashMap::new();
    let mut reverts: HashMap<String, RevertRecord> = HashMap::new();
    let mut prepared: HashMap<String, PreparedRecord> = HashMap::new();
    // What followed each fault (detections, recoveries), in the order read: backwards.
    let mut followed: HashMap<String, Vec<Record>> = HashMap::new();
    // Whether the reading has gone past `before` (always, without one).
    let mut past_before = query.before.is_none();
    let mut met_its_file = false;
    // Where the oldest fault of the page so far was journaled.
    let mut oldest = None;
    if let Some(before) = query.before {
        if !holds(path, before)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the cursor {before} names no file of this journal (its archive was removed, or it came from another journal): ask again without it"
                ),
            ));
        }
    }
    let mut lines = journal::lines_backwards_with_archives(path)?;
    while let Some(line) = lines.next() {
        let line = line?;
        let here = lines.position();
        if let (false, Some(before), Some(here)) = (past_before, query.before, here) {
            // Before it in its file, or in a file older than its.
            let in_its_file = (here.dev, here.ino) == (before.dev, before.ino);
            past_before =
                (in_its_file && here.offset < before.offset) || (met_its_file && !in_its_file);
            met_its_file |= in_its_file;
        }
        let record = match serde_json::from_slice::<Record>(&line) {
            Ok(record) => record,
            Err(e) => {
                page.problems.push(format!(
                    "{}: an unreadable line ({e}); ignored",
                    path.display()
                ));
                continue;
            }
        };
        match record {
            Record::Revert(r) => {
                reverts.entry(r.id.clone()).or_insert(r);
            }
            Record::Prepared(p) => {
                if query.until.is_none_or(|until| p.at < until + OUTCOME_LAG) {
                    prepared.insert(p.id.clone(), p);
                }
            }
            Record::Outcome(o) => {
                // Not those of faults well after the page: their intents come first and
                // take them away, but an outcome without one would stay.
                if query.until.is_none_or(|until| o.at < until + OUTCOME_LAG) {
                    outcomes.insert(o.id.clone(), o);
                }
            }
            Record::Detected(_) | Record::Recovered(_) | Record::NotRecovered(_) => {
                if let Some(id) = record.fault_id() {
                    followed.entry(id.to_owned()).or_default().push(record);
                }
            }
            Record::Refused(_) | Record::Halted(_) => {}
            Record::Intent(intent) => {
                let other_run = query
                    .run
                    .as_deref()
                    .is_some_and(|run| run != run_of(&intent.id));
                if !past_before || other_run || query.until.is_some_and(|until| intent.at >= until)
                {
                    // Newer than the page, or not of the run: what was kept for it goes.
                    outcomes.remove(&intent.id);
                    reverts.remove(&intent.id);
                    prepared.remove(&intent.id);
                    followed.remove(&intent.id);
                    continue;
                }
                if query.since.is_some_and(|since| intent.at < since) {
                    break;
                }
                if page.entries.len() == limit {
                    // One more in range: the page is full and there is an older one,
                    // before where the page's oldest fault was journaled.
                    page.next = oldest;
                    break;
                }
                oldest = here;
                let mut entry = Entry::of(intent);
                entry.outcome = outcomes.remove(&entry.intent.id);
                entry.reverted = reverts.remove(&entry.intent.id);
                entry.prepared = prepared.remove(&entry.intent.id);
                // Read backwards: the oldest last, taken last (the first detection
                // stands, the latest recovery).
                for record in followed
                    .remove(&entry.intent.id)
                    .into_iter()
                    .flatten()
                    .rev()
                {
                    entry.take(record);
                }
                page.entries.push(entry);
            }
        }
    }
    page.entries.reverse();
    Ok(page)
}

/// Whether the journal at `path` (or one of its archives) is the file `position` is in.
fn holds(path: &Path, position: Position) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    for file in super::archive::newest_first(path)? {
        if let Ok(meta) = std::fs::metadata(&file) {
            if (meta.dev(), meta.ino()) == (position.dev, position.ino) {
                return Ok(meta.len() >= position.offset);
            }
        }
    }
    Ok(false)
}

/// The whole answer key, oldest first, read forward in bounded memory: each fault is
/// held until its records are likely all in (its outcome and revert come within
/// [`SETTLE`] of it), then handed on; at most [`MAX_HELD`] are held at once.
pub(crate) struct Stream {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// The faults held, in the order they were asked for, by sequence number.
    held: std::collections::BTreeMap<u64, Entry>,
    /// Their sequence numbers by id.
    ids: HashMap<String, u64>,
    next: u64,
}

/// How long after a fault its records are waited for: a pause lasts at most an hour, a
/// plugin call ten minutes. A revert later than this (one retried for long) shows in the
/// paged listing (`--limit`), not in the whole one.
pub(crate) const SETTLE: TimeDelta = TimeDelta::hours(2);

/// The most faults held at once (the oldest are handed on early beyond it).
pub(crate) const MAX_HELD: usize = 10_000;

impl Stream {
    /// A stream of the faults asked for in `[since, until)`.
    pub(crate) fn new(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        Self {
            since,
            until,
            held: std::collections::BTreeMap::new(),
            ids: HashMap::new(),
            next: 0,
        }
    }

    /// Takes the next record of the journal; hands on (to `out`) the faults it settles.
    pub(crate) fn take<E>(
        &mut self,
        record: Record,
        out: &mut impl FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let now = match record {
            Record::Intent(intent) => {
                let at = intent.at;
                let in_range =
                    self.since.is_none_or(|t| at >= t) && self.until.is_none_or(|t| at < t);
                if in_range {
                    self.ids.insert(intent.id.clone(), self.next);
                    self.held.insert(self.next, Entry::of(intent));
                    self.next += 1;
                }
                at
            }
            Record::Prepared(p) => {
                let at = p.at;
                if let Some(e) = self.entry(&p.id) {
                    e.prepared = Some(p);
                }
                at
            }
            Record::Outcome(o) => {
                let at = o.at;
                if let Some(e) = self.entry(&o.id) {
                    e.outcome = Some(o);
                }
                at
            }
            Record::Revert(r) => {
                let at = r.at;
                if let Some(e) = self.entry(&r.id) {
                    e.reverted = Some(r);
                }
                at
            }
            Record::Detected(_) | Record::Recovered(_) | Record::NotRecovered(_) => {
                let at = record.at();
                if let Some(e) = record
                    .fault_id()
                    .map(str::to_owned)
                    .and_then(|id| self.entry(&id))
                {
                    e.take(record);
                }
                at
            }
            Record::Refused(_) | Record::Halted(_) => record.at(),
        };
        loop {
            let crowded = self.held.len() > MAX_HELD;
            let Some(first) = self.held.first_entry() else {
                break;
            };
            if !crowded && first.get().intent.at + SETTLE >= now {
                break;
            }
            let entry = first.remove();
            self.ids.remove(&entry.intent.id);
            out(&entry)?;
        }
        Ok(())
    }

    /// The journal ended: hands on every fault still held.
    pub(crate) fn finish<E>(
        mut self,
        out: &mut impl FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some((_, entry)) = self.held.pop_first() {
            out(&entry)?;
        }
        Ok(())
    }

    fn entry(&mut self, id: &str) -> Option<&mut Entry> {
        self.ids.get(id).and_then(|n| self.held.get_mut(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::journal::{Intent, Journal};

    fn intent(id: &str, at: DateTime<Utc>) -> Record {
        Record::Intent(Intent {
            id: id.into(),
            at,
            fault: "f".into(),
            plugin: "p".into(),
            trigger: "http".into(),
            requested_by: None,
            desc: "d".into(),
            dry_run: true,
            master_seed: 1,
            stream: "s".into(),
            stream_position: 0,
            seed: 1,
        })
    }

    #[test]
    fn pages_go_back_from_the_end_with_their_outcomes_and_reverts() {
        let dir = std::env::temp_dir().join(format!("nm-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        let journal = Journal::open(&path).unwrap();
        let start = Utc::now() - TimeDelta::hours(1);
        let at = |i: i64| start + TimeDelta::seconds(i);
        for i in 0..10 {
            let id = format!("1-{i}");
            journal.append(&intent(&id, at(i)), false).unwrap();
            let mut o = OutcomeRecord::failed(&id, at(i), 1, String::new());
            o.result = "paused".into();
            journal.append(&Record::Outcome(o), false).unwrap();
        }
        // The revert of fault 3, long after.
        journal
            .append(
                &Record::Revert(RevertRecord {
                    id: "1-3".into(),
                    at: at(100),
                    reason: "due".into(),
                    result: "reverted".into(),
                    summary: String::new(),
                }),
                false,
            )
            .unwrap();
        let ids = |p: &Page| {
            p.entries
                .iter()
                .map(|e| e.intent.id.clone())
                .collect::<Vec<_>>()
        };
        let latest = page(
            &path,
            Query {
                since: None,
                until: None,
                before: None,
                limit: 4,
                run: None,
            },
        )
        .unwrap();
        assert_eq!(
            ids(&latest),
            ["1-6", "1-7", "1-8", "1-9"],
            "the latest, oldest first"
        );
        assert!(latest.next.is_some());
        assert!(latest.entries.iter().all(|e| e.outcome.is_some()));
        let older = page(
            &path,
            Query {
                since: None,
                until: None,
                before: latest.next,
                limit: 4,
                run: None,
            },
        )
        .unwrap();
        assert_eq!(ids(&older), ["1-2", "1-3", "1-4", "1-5"]);
        assert_eq!(
            older.entries[1].reverted.as_ref().unwrap().result,
            "reverted"
        );
        let last = page(
            &path,
            Query {
                since: None,
                until: None,
                before: older.next,
                limit: 4,
                run: None,
            },
        )
        .unwrap();
        assert_eq!(ids(&last), ["1-0", "1-1"]);
        assert_eq!(last.next, None, "no older page");
        let since = page(
            &path,
            Query {
                since: Some(at(8)),
                until: None,
                before: None,
                limit: 100,
                run: None,
            },
        )
        .unwrap();
        assert_eq!(ids(&since), ["1-8", "1-9"]);
        assert_eq!(since.next, None);
        let until = page(
            &path,
            Query {
                since: None,
                until: Some(at(2)),
                before: None,
                limit: 100,
                run: None,
            },
        )
        .unwrap();
        assert_eq!(ids(&until), ["1-0", "1-1"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Faults injected at once can be journaled out of the order of their instants; a
    /// page ends at a place in the journal, not an instant, so none falls between two
    /// pages, whether in the journal or in one of its archives.
    #[test]
    fn pages_follow_the_journal_not_the_clock_and_go_on_into_archives() {
        let dir = std::env::temp_dir().join(format!("nm-history-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        let journal = Journal::open(&path).unwrap();
        let start = Utc::now() - TimeDelta::hours(1);
        let at = |s: i64| start + TimeDelta::seconds(s);
        for (id, s) in [("a", 5), ("b", 3), ("c", 4)] {
            journal.append(&intent(id, at(s)), false).unwrap();
        }
        journal.rotate(|| Ok(())).unwrap();
        for (id, s) in [("d", 9), ("e", 7), ("f", 8)] {
            journal.append(&intent(id, at(s)), false).unwrap();
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let one = page(
                &path,
                Query {
                    since: None,
                    until: None,
                    before,
                    limit: 1,
                    run: None,
                },
            )
            .unwrap();
            seen.extend(one.entries.iter().map(|e| e.intent.id.clone()));
            match one.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["f", "e", "d", "c", "b", "a"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_older_page_keeps_its_outcomes_however_far_back() {
        let dir = std::env::temp_dir().join(format!("nm-history-far-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        let journal = Journal::open(&path).unwrap();
        let start = Utc::now() - TimeDelta::days(1);
        for i in 0..6 {
            let id = format!("2-{i}");
            let at = start + TimeDelta::hours(i);
            journal.append(&intent(&id, at), false).unwrap();
            let mut o = OutcomeRecord::failed(&id, at, 1, String::new());
            o.result = "dry-run".into();
            journal.append(&Record::Outcome(o), false).unwrap();
        }
        let query = |before| Query {
            since: None,
            until: None,
            before,
            limit: 3,
            run: None,
        };
        let first = page(&path, query(None)).unwrap();
        let second = page(&path, query(first.next)).unwrap();
        assert_eq!(second.entries.len(), 3);
        assert!(
            second.entries.iter().all(|e| e.outcome.is_some()),
            "{:?}",
            second.entries
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The whole listing, read forward: each fault with the records that came for it,
    /// handed on once settled (its outcome and revert in), in the order asked for; only
    /// those in range.
    #[test]
    fn the_stream_hands_on_each_fault_whole_once_settled_in_order() {
        let start = Utc::now() - TimeDelta::days(1);
        let at = |mins: i64| start + TimeDelta::minutes(mins);
        let outcome = |id: &str, m: i64| {
            let mut o = OutcomeRecord::failed(id, at(m), 1, String::new());
            o.result = "paused".into();
            Record::Outcome(o)
        };
        let revert = |id: &str, m: i64| {
            Record::Revert(RevertRecord {
                id: id.into(),
                at: at(m),
                reason: "due".into(),
                result: "reverted".into(),
                summary: String::new(),
            })
        };
        let records = [
            intent("early", at(-10)),
            intent("a", at(0)),
            outcome("a", 0),
            intent("b", at(1)),
            outcome("b", 1),
            revert("a", 60),
            // Long after: `a` and `b` are settled and handed on before this is taken.
            intent("c", at(200)),
            revert("b", 201),
            outcome("c", 200),
            intent("late", at(400)),
            intent("d", at(299)),
        ];
        let mut stream = Stream::new(Some(at(0)), Some(at(300)));
        let mut out: Vec<(String, Option<String>, Option<String>, usize)> = Vec::new();
        let mut record = |e: &Entry, taken: usize| {
            out.push((
                e.intent.id.clone(),
                e.outcome.as_ref().map(|o| o.result.clone()),
                e.reverted.as_ref().map(|r| r.result.clone()),
                taken,
            ))
        };
        for (i, r) in records.into_iter().enumerate() {
            let taken = i + 1;
            stream
                .take::<()>(r, &mut |e| {
                    record(e, taken);
                    Ok(())
                })
                .unwrap();
        }
        stream
            .finish::<()>(&mut |e| {
                record(e, 0);
                Ok(())
            })
            .unwrap();
        let p = || Some("paused".to_owned());
        let r = || Some("reverted".to_owned());
        assert_eq!(
            out,
            [
                ("a".into(), p(), r(), 7),
                // b's revert came after it was handed on: past SETTLE, it is not waited for.
                ("b".into(), p(), None, 7),
                ("c".into(), p(), None, 10),
                // Held to the end of the journal, then handed on as it is.
                ("d".into(), None, None, 0),
            ]
        );
    }

    /// One run's faults, a page at a time: the run is chosen before the limit counts,
    /// and a cursor this journal does not hold is refused rather than read past.
    #[test]
    fn a_run_is_paged_on_its_own_and_a_foreign_cursor_is_refused() {
        let dir = std::env::temp_dir().join(format!("nm-history-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        let journal = Journal::open(&path).unwrap();
        let start = Utc::now() - TimeDelta::hours(1);
        for (i, id) in ["1-1", "2-1", "1-2", "2-2", "2-3"].iter().enumerate() {
            journal
                .append(&intent(id, start + TimeDelta::seconds(i as i64)), false)
                .unwrap();
        }
        let query = |before| Query {
            before,
            limit: 1,
            run: Some("1".to_owned()),
            ..Query::default()
        };
        let first = page(&path, query(None)).unwrap();
        assert_eq!(first.entries[0].intent.id, "1-2");
        let second = page(&path, query(first.next)).unwrap();
        assert_eq!(second.entries[0].intent.id, "1-1");
        assert_eq!(second.next, None);
        assert_eq!(last_run(&path).unwrap().as_deref(), Some("2"));
        assert_eq!(
            Run::parse("last")
                .unwrap()
                .number(&path)
                .unwrap()
                .as_deref(),
            Some("2")
        );
        assert_eq!(Run::parse("17"), Ok(Run::Number("17".to_owned())));
        for bad in ["", "Last", "1-2", "x\n"] {
            assert!(Run::parse(bad).is_err(), "{bad}");
        }
        let foreign = Position {
            dev: 1,
            ino: 1,
            offset: 0,
        };
        let refused = page(&path, query(Some(foreign))).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        assert!(refused
            .to_string()
            .starts_with("the cursor 1.1.0 names no file of this journal"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
