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

/// How far before `since` a page reads on. The journal is in the order faults were
/// asked for, their stamps in the clock's, and a clock stepped back (NTP correcting a
/// wrong boot clock, a VM restored from a snapshot) writes a fault stamped before
/// `since` ahead of faults in range: such a fault is passed over, not taken for the
/// start of the range, and the reading ends at the first fault stamped more than this
/// before `since`. A day: clock steps are seconds to hours (a local time taken for UTC
/// is at most 14 h off), and a day more of journal is some 1,900 faults of a busy drill
/// (3 MB) to read back. A clock wrong by more than a day hides, from the pages, the
/// faults in range written before it was put right; the whole listing (without
/// `--limit`) reads everything and shows them.
const CLOCK_SLACK: TimeDelta = TimeDelta::days(1);

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
    // A run numbers its faults from 1 (`<run>-1`): read backwards, nothing of the run
    // comes before its first, whatever the clock said.
    let first_of_run = query.run.as_deref().map(|run| format!("{run}-1"));
    // Nothing in range is looked for before a fault stamped before this.
    let stop_before = query
        .since
        .and_then(|since| since.checked_sub_signed(CLOCK_SLACK));
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
            Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => {}
            Record::Intent(intent) => {
                let other_run = query
                    .run
                    .as_deref()
                    .is_some_and(|run| run != run_of(&intent.id));
                let before_since = query.since.is_some_and(|since| intent.at < since);
                if !past_before
                    || other_run
                    || before_since
                    || query.until.is_some_and(|until| intent.at >= until)
                {
                    // Newer than the page, older, or not of the run: what was kept for it
                    // goes.
                    outcomes.remove(&intent.id);
                    reverts.remove(&intent.id);
                    prepared.remove(&intent.id);
                    followed.remove(&intent.id);
                    if past_before && stop_before.is_some_and(|stop| intent.at < stop) {
                        break;
                    }
                    continue;
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
                let first = first_of_run.as_deref() == Some(entry.intent.id.as_str());
                page.entries.push(entry);
                if first {
                    break;
                }
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
            Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => record.at(),
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
mod tests;
