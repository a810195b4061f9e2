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

/// Whether `[since, until)` is the wrong way round (`--since 1h --until 2h`: the two
/// swapped, most likely): said as a mistake, never answered with an empty list.
pub(crate) fn is_backwards(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> bool {
    matches!((since, until), (Some(since), Some(until)) if since > until)
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
                    "{}: an unreadable line ({}); ignored",
                    path.display(),
                    crate::support::text::escape_controls(&e.to_string())
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
    page.problems.extend(lines.problems());
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

/// The whole answer key, oldest first, read forward twice in bounded memory. The second
/// reading ([`Stream`]) holds each fault until its records are likely all in (its
/// outcome and revert come within [`SETTLE`] of it), then hands it on; at most
/// [`MAX_HELD`] are held at once. The first ([`LateRecords`]) holds the same faults the
/// same way, by id and instant alone, and keeps the records that come for a fault after
/// it would be handed on (an ack a day after its fault, a revert retried for hours), so
/// that the second joins them to their fault as it hands it on: nothing is left out,
/// and what is kept beyond the faults held is the late records alone.
pub(crate) struct Stream {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    held: Holding<Entry>,
    /// The records the first reading found late, by fault.
    late: HashMap<String, Vec<Record>>,
}

/// How long after a fault its records are waited for: a pause lasts at most an hour, a
/// plugin call ten minutes. Records later than this are found by the first reading
/// ([`LateRecords`]).
pub(crate) const SETTLE: TimeDelta = TimeDelta::hours(2);

/// The most faults held at once (the oldest are handed on early beyond it).
pub(crate) const MAX_HELD: usize = 10_000;

/// Faults held in the order they were asked for, with what is kept of each, until
/// [`SETTLE`] after them (or while more than [`MAX_HELD`] are held). The one rule of
/// when a fault is handed on, for both readings of the whole answer key: they must
/// agree on it record by record.
struct Holding<T> {
    /// The faults held, by sequence number: id, instant and what is kept.
    held: std::collections::BTreeMap<u64, (String, DateTime<Utc>, T)>,
    /// Their sequence numbers by id.
    ids: HashMap<String, u64>,
    next: u64,
}

impl<T> Holding<T> {
    fn new() -> Self {
        Self {
            held: std::collections::BTreeMap::new(),
            ids: HashMap::new(),
            next: 0,
        }
    }

    fn hold(&mut self, id: String, at: DateTime<Utc>, kept: T) {
        self.ids.insert(id.clone(), self.next);
        self.held.insert(self.next, (id, at, kept));
        self.next += 1;
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let n = self.ids.get(id)?;
        self.held.get_mut(n).map(|(_, _, kept)| kept)
    }

    /// Hands on (to `out`) the faults settled once the journal reached `now`.
    fn settle<E>(
        &mut self,
        now: DateTime<Utc>,
        mut out: impl FnMut(String, T) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let crowded = self.held.len() > MAX_HELD;
            let Some(first) = self.held.first_entry() else {
                break;
            };
            let (_, at, _) = first.get();
            if !crowded && at.checked_add_signed(SETTLE).is_none_or(|end| end >= now) {
                break;
            }
            let (n, (id, _, kept)) = first.remove_entry();
            self.forget(&id, n);
            out(id, kept)?;
        }
        Ok(())
    }

    /// Hands on every fault still held.
    fn drain<E>(&mut self, mut out: impl FnMut(String, T) -> Result<(), E>) -> Result<(), E> {
        while let Some((n, (id, _, kept))) = self.held.pop_first() {
            self.forget(&id, n);
            out(id, kept)?;
        }
        Ok(())
    }

    /// Drops the id of fault `n` (not that of a later fault journaled with the same id).
    fn forget(&mut self, id: &str, n: u64) {
        if self.ids.get(id) == Some(&n) {
            self.ids.remove(id);
        }
    }
}

/// The first reading of the whole answer key: see [`Stream`].
pub(crate) struct LateRecords {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// The faults in range, as the second reading holds them.
    in_range: Holding<()>,
    /// The faults out of range, held the same way so that their records are not taken
    /// for late ones of faults in range (every record after `until` would be).
    others: Holding<()>,
    /// The records that came for a fault not held (late, or of a fault out of range
    /// that was handed on too), by fault, in the order read.
    records: HashMap<String, Vec<Record>>,
}

impl LateRecords {
    /// The first reading of the faults asked for in `[since, until)`.
    pub(crate) fn new(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        Self {
            since,
            until,
            in_range: Holding::new(),
            others: Holding::new(),
            records: HashMap::new(),
        }
    }

    /// Takes the next line of the journal, reading of it only its type, fault and time
    /// unless it is a late record (most lines are not): the first reading costs a
    /// fraction of the second. An error is a line that cannot be read (the second
    /// reading says so).
    pub(crate) fn take_line(&mut self, line: &str) -> Result<(), serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Peek<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default, borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
            at: DateTime<Utc>,
        }
        let peek: Peek = serde_json::from_str(line)?;
        match (&*peek.kind, peek.id) {
            ("intent", Some(id)) => {
                if in_range(self.since, self.until, peek.at) {
                    self.in_range.hold(id.into_owned(), peek.at, ());
                } else {
                    self.others.hold(id.into_owned(), peek.at, ());
                }
            }
            ("refused" | "halted" | "resumed", _) => {}
            (_, Some(id))
                if self.in_range.get_mut(&id).is_some() || self.others.get_mut(&id).is_some() => {}
            // Late, or of no type this reading knows: read whole, as `take` would.
            _ => self.take(serde_json::from_str(line)?),
        }
        let _ = self.in_range.settle(peek.at, |_, ()| Ok::<_, ()>(()));
        let _ = self.others.settle(peek.at, |_, ()| Ok::<_, ()>(()));
        Ok(())
    }

    /// Takes the next record of the journal.
    pub(crate) fn take(&mut self, record: Record) {
        let now = record.at();
        match record {
            Record::Intent(intent) => {
                if in_range(self.since, self.until, intent.at) {
                    self.in_range.hold(intent.id, intent.at, ());
                } else {
                    self.others.hold(intent.id, intent.at, ());
                }
            }
            Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => {}
            _ => {
                if let Some(id) = record.fault_id() {
                    if self.in_range.get_mut(id).is_none() && self.others.get_mut(id).is_none() {
                        self.records.entry(id.to_owned()).or_default().push(record);
                    }
                }
            }
        }
        let _ = self.in_range.settle(now, |_, ()| Ok::<_, ()>(()));
        let _ = self.others.settle(now, |_, ()| Ok::<_, ()>(()));
    }

    /// The second reading, which joins these records to their faults.
    pub(crate) fn stream(self) -> Stream {
        Stream {
            since: self.since,
            until: self.until,
            held: Holding::new(),
            late: self.records,
        }
    }
}

/// Whether an instant is in `[since, until)`.
fn in_range(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    since.is_none_or(|t| at >= t) && until.is_none_or(|t| at < t)
}

impl Stream {
    /// Takes the next record of the journal; hands on (to `out`) the faults it settles.
    pub(crate) fn take<E>(
        &mut self,
        record: Record,
        out: &mut impl FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let now = record.at();
        match record {
            Record::Intent(intent) => {
                if in_range(self.since, self.until, intent.at) {
                    self.held
                        .hold(intent.id.clone(), intent.at, Entry::of(intent));
                }
            }
            Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => {}
            _ => {
                if let Some(entry) = record
                    .fault_id()
                    .map(str::to_owned)
                    .and_then(|id| self.held.get_mut(&id))
                {
                    entry.take(record);
                }
            }
        }
        let late = &mut self.late;
        self.held
            .settle(now, |id, entry| out(&joined(late, id, entry)))
    }

    /// The journal ended: hands on every fault still held.
    pub(crate) fn finish<E>(
        mut self,
        out: &mut impl FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let late = &mut self.late;
        self.held.drain(|id, entry| out(&joined(late, id, entry)))
    }
}

/// `entry` with the records that came for it late, taken in the order read (after its
/// others: they came after it was handed on).
fn joined(late: &mut HashMap<String, Vec<Record>>, id: String, mut entry: Entry) -> Entry {
    for record in late.remove(&id).into_iter().flatten() {
        entry.take(record);
    }
    entry
}

#[cfg(test)]
mod tests;
