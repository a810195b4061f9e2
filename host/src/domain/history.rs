//! The answer key a page at a time: the latest faults of a journal (or those before an
//! instant), read from its end backwards, so that a look at the recent past costs the
//! recent past, whatever the history, and memory holds a page, not the journal.

use std::{collections::HashMap, io, path::Path};

use chrono::{DateTime, TimeDelta, Utc};

use super::journal::{self, Entry, OutcomeRecord, PreparedRecord, Record, RevertRecord};

/// The most faults one page may hold.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// Which faults: those asked for in `[since, until)`, the latest `limit` of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// One page of the answer key.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The faults, oldest first.
    pub entries: Vec<Entry>,
    /// Where the next (older) page ends, if there are older faults in range: the
    /// `until` to ask for it.
    pub next: Option<DateTime<Utc>>,
    /// Lines of the part read that could not be read.
    pub problems: Vec<String>,
}

/// How long after its intent an outcome may be written: a plugin call's longest
/// deadline, and then some. Outcomes older than this before the page are not kept.
const OUTCOME_LAG: TimeDelta = TimeDelta::minutes(15);

/// Reads one page, backwards from the journal's end.
pub(crate) fn page(path: &Path, query: Query) -> io::Result<Page> {
    let mut page = Page::default();
    let limit = query.limit.clamp(1, MAX_LIMIT);
    // Read before their intents (they come later in the file): the latest revert of
    // each fault, and the outcomes near the page.
    let mut outcomes: HashMap<String, OutcomeRecord> = HashMap::new();
    let mut reverts: HashMap<String, RevertRecord> = HashMap::new();
    let mut prepared: HashMap<String, PreparedRecord> = HashMap::new();
    for line in journal::lines_backwards(path)? {
        let line = line?;
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
            Record::Intent(intent) => {
                if query.until.is_some_and(|until| intent.at >= until) {
                    // Newer than the page: what was kept for it goes.
                    outcomes.remove(&intent.id);
                    reverts.remove(&intent.id);
                    prepared.remove(&intent.id);
                    continue;
                }
                if query.since.is_some_and(|since| intent.at < since) {
                    break;
                }
                if page.entries.len() == limit {
                    // One more in range: the page is full and there is an older one.
                    page.next = page.entries.last().map(|e| e.intent.at);
                    break;
                }
                let mut entry = Entry::of(intent);
                entry.outcome = outcomes.remove(&entry.intent.id);
                entry.reverted = reverts.remove(&entry.intent.id);
                entry.prepared = prepared.remove(&entry.intent.id);
                page.entries.push(entry);
            }
        }
    }
    page.entries.reverse();
    Ok(page)
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
                limit: 4,
            },
        )
        .unwrap();
        assert_eq!(
            ids(&latest),
            ["1-6", "1-7", "1-8", "1-9"],
            "the latest, oldest first"
        );
        assert_eq!(latest.next, Some(at(6)));
        assert!(latest.entries.iter().all(|e| e.outcome.is_some()));
        let older = page(
            &path,
            Query {
                since: None,
                until: latest.next,
                limit: 4,
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
                until: older.next,
                limit: 4,
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
                limit: 100,
            },
        )
        .unwrap();
        assert_eq!(ids(&since), ["1-8", "1-9"]);
        assert_eq!(since.next, None);
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
        let query = |until| Query {
            since: None,
            until,
            limit: 3,
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
}
