//! Time to detect: an on-call engineer's ack (`POST /api/ack`, `nightmare-monkey ack`) or
//! a monitoring alert (`POST /api/alerts`) marks a fault noticed, once, in the journal.
//! The fault is found in the journal (the latest not yet noticed, or the one named), so
//! a fault injected before a restart, or by `kill` beside the daemon, counts too.

use chrono::{DateTime, TimeDelta, Utc};

use super::Engine;
use crate::domain::drill::{human_ms, AckError, Acknowledged, DetectedRecord};
use crate::storage::{
    history::{self, Query},
    journal::{Entry, Record},
    report,
};

/// How far back an ack without an id looks for the fault it is about: a fault older
/// than a day is no drill's open question any more.
pub(crate) const OPEN_FOR: TimeDelta = TimeDelta::hours(24);

/// How far back an ack naming its fault looks.
const NAMED_FOR: TimeDelta = TimeDelta::days(7);

/// Acks are decided and written one at a time: two at once must not both find the same
/// fault unnoticed.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Engine {
    /// Marks a fault noticed by `by` at `now`: the one `id` names, else the latest fault
    /// injected for real in the last day, if nobody noticed it yet (an older one is
    /// named by its id: an ack, or an alert sent again, must not slide onto a fault
    /// nobody was looking at). `started`: when what noticed it began (an alert's
    /// `startsAt`); one that began before the fault is not about it. Journaled
    /// (fsynced) before it is answered.
    pub(crate) fn acknowledge(
        &self,
        by: &str,
        id: Option<&str>,
        started: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Acknowledged, AckError> {
        let journal = self.journal.as_ref().ok_or(AckError::NoJournal)?;
        let _one = crate::support::lock::lock(&ONE_AT_A_TIME);
        let since = now - if id.is_some() { NAMED_FOR } else { OPEN_FOR };
        let page = history::page(
            journal.path(),
            Query {
                since: Some(since),
                limit: history::MAX_LIMIT,
                ..Query::default()
            },
        )
        .map_err(|e| AckError::Journal(format!("cannot read {}: {e}", journal.path().display())))?;
        let entry = match id {
            Some(id) => {
                let entry = page
                    .entries
                    .iter()
                    .find(|e| e.intent.id == id)
                    .ok_or_else(|| AckError::Unknown(id.to_owned()))?;
                if !report::was_real(entry) {
                    return Err(AckError::NotReal {
                        id: id.to_owned(),
                        result: if entry.intent.dry_run {
                            "a dry run".to_owned()
                        } else {
                            entry
                                .outcome
                                .as_ref()
                                .map_or_else(|| "unfinished".to_owned(), |o| o.result.clone())
                        },
                    });
                }
                if let Some(first) = &entry.detected {
                    return Err(AckError::Already {
                        id: id.to_owned(),
                        by: first.by.clone(),
                        after: human_ms(first.ttd_ms),
                    });
                }
                entry
            }
            None => {
                let latest = page
                    .entries
                    .iter()
                    .rev()
                    .find(|e| report::was_real(e))
                    .ok_or(AckError::NothingOpen)?;
                if let Some(first) = &latest.detected {
                    return Err(AckError::Already {
                        id: latest.intent.id.clone(),
                        by: first.by.clone(),
                        after: human_ms(first.ttd_ms),
                    });
                }
                latest
            }
        };
        let injected = injected_at(entry);
        if let Some(started) = started.filter(|s| *s < injected) {
            return Err(AckError::Before {
                id: entry.intent.id.clone(),
                started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                injected: injected.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        let record = detected(entry, by, now);
        let written = Record::Detected(record.clone());
        journal
            .append(&written, true)
            .map_err(|e| AckError::Journal(format!("cannot write the journal: {e}")))?;
        crate::output::events::record(&written);
        let row = report::Row::of(entry);
        Ok(Acknowledged {
            id: record.id,
            fault: row.fault,
            target: row.target,
            ttd_ms: record.ttd_ms,
            by: record.by,
        })
    }
}

/// When a fault took effect: its plugin's answer.
fn injected_at(entry: &Entry) -> DateTime<Utc> {
    entry.outcome.as_ref().map_or(entry.intent.at, |o| o.at)
}

/// The record of `entry` noticed by `by` at `now`: its time to detect counts from the
/// injection (the plugin's answer), not from the ask.
fn detected(entry: &Entry, by: &str, now: DateTime<Utc>) -> DetectedRecord {
    let injected = injected_at(entry);
    DetectedRecord {
        id: entry.intent.id.clone(),
        at: now,
        ttd_ms: (now - injected).num_milliseconds().max(0) as u64,
        by: by.to_owned(),
    }
}
