//! The journal: every fault, from every trigger, as JSON Lines. An `intent` record is
//! written (and fsynced, unless it is a dry run) before the fault is injected, an
//! `outcome` record after, and a `revert` record when a reversible fault is undone. A
//! crash therefore loses nothing: an intent without an outcome says a fault may have
//! happened, and an outcome with revert state but no revert record is a fault still
//! active, which the next start reverts. A fault injected in two phases also has a
//! `prepared` record between its intent and its outcome, fsynced before the fault is
//! applied: the revert state of a target chosen but not yet acted on, so that a crash
//! before the outcome is on disk still leaves what undoes it.
//!
//! The file is opened for each record (faults are rare), so it can be rotated or
//! removed while the daemon runs; if a record cannot be written, the fault it announces
//! is not injected.

use std::{
    fs::{self, OpenOptions},
    io::{self, BufRead, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use nightmare_monkey_plugin_api::sdk::ProcessInfo;
use serde::{Deserialize, Serialize};

mod file;
mod reading;

pub use file::Journal;
pub(crate) use file::{check_appendable, check_free, check_path};
#[cfg(test)]
pub(crate) use reading::{each, lines_backwards, read};
pub(crate) use reading::{
    each_from, each_line_from, each_line_with_archives, each_with_archives,
    lines_backwards_with_archives, Position,
};

pub(crate) use crate::domain::drill::{
    DetectedRecord, HaltedRecord, NotRecoveredRecord, RecoveredRecord, RefusedRecord, ResumedRecord,
};
use crate::domain::injection::Injection;
pub use crate::domain::injection::Intent;
use crate::support::lock::lock;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum Record {
    /// A fault about to be injected.
    Intent(Intent),
    /// What the injection did.
    Outcome(OutcomeRecord),
    /// A reversible fault undone.
    Revert(RevertRecord),
    /// The target of a two-phase fault, chosen and about to be acted on.
    Prepared(PreparedRecord),
    /// Someone or something noticed a fault.
    Detected(DetectedRecord),
    /// The system came back after a fault.
    Recovered(RecoveredRecord),
    /// The system had not come back by the deadline.
    NotRecovered(NotRecoveredRecord),
    /// A fault refused: the steady state was not met.
    Refused(RefusedRecord),
    /// The monkey paused itself: a halt probe failed.
    Halted(HaltedRecord),
    /// A halt ended: the monkey was resumed.
    Resumed(ResumedRecord),
}

impl Record {
    /// The fault a record is about, if it is about one that has an intent.
    pub fn fault_id(&self) -> Option<&str> {
        match self {
            Record::Intent(i) => Some(&i.id),
            Record::Outcome(o) => Some(&o.id),
            Record::Revert(r) => Some(&r.id),
            Record::Prepared(p) => Some(&p.id),
            Record::Detected(d) => Some(&d.id),
            Record::Recovered(r) => Some(&r.id),
            Record::NotRecovered(r) => Some(&r.id),
            Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => None,
        }
    }

    /// When it was written.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Record::Intent(i) => i.at,
            Record::Outcome(o) => o.at,
            Record::Revert(r) => r.at,
            Record::Prepared(p) => p.at,
            Record::Detected(d) => d.at,
            Record::Recovered(r) => r.at,
            Record::NotRecovered(r) => r.at,
            Record::Refused(r) => r.at,
            Record::Halted(h) => h.at,
            Record::Resumed(r) => r.at,
        }
    }
}

/// The target of a two-phase fault before it is acted on: what undoes the fault once it
/// is applied (and is harmless if it never was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PreparedRecord {
    /// The intent's id.
    pub id: String,
    /// When the plugin chose it.
    pub at: DateTime<Utc>,
    /// The revert state of the target.
    pub revert: serde_json::Value,
    /// The process chosen, for process faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    /// One line for humans (`will stop sleep(PID:12) for 30s`).
    #[serde(default)]
    pub summary: String,
}

/// What an injection did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutcomeRecord {
    /// The intent's id.
    pub id: String,
    /// When the plugin answered.
    #[serde(serialize_with = "crate::support::text::rfc3339")]
    pub at: DateTime<Utc>,
    /// How long the plugin took.
    pub elapsed_ms: u64,
    /// One word (`killed`, `survived`, `vanished`, `paused`, `dry-run`, `failed`).
    pub result: String,
    /// The verb of the log line.
    #[serde(default)]
    pub action: String,
    /// The process acted on.
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    /// The signal sent.
    #[serde(default)]
    pub signal: Option<String>,
    /// One line for humans.
    #[serde(default)]
    pub summary: String,
    /// The plugin's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What reverting it needs, for a reversible fault that is now active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<serde_json::Value>,
    /// When it is due to be reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_due: Option<DateTime<Utc>>,
}

impl OutcomeRecord {
    /// The journal's line for what an injection did. Only an active fault keeps its
    /// revert state: it is what a restart reverts from.
    pub fn of(injection: &Injection) -> Self {
        let outcome = &injection.outcome;
        Self {
            id: injection.intent.id.clone(),
            at: injection.done,
            elapsed_ms: injection.elapsed_ms,
            result: outcome.result.clone(),
            action: outcome.action.clone(),
            process: outcome.process.clone(),
            signal: outcome.signal.clone(),
            summary: outcome.summary.clone(),
            error: None,
            revert: injection.revert_due.and(outcome.revert.clone()),
            revert_due: injection.revert_due,
        }
    }

    /// The journal's line for an injection the plugin failed.
    pub fn failed(id: &str, at: DateTime<Utc>, elapsed_ms: u64, error: String) -> Self {
        Self {
            id: id.to_owned(),
            at,
            elapsed_ms,
            result: "failed".to_owned(),
            action: String::new(),
            process: None,
            signal: None,
            summary: String::new(),
            error: Some(error),
            revert: None,
            revert_due: None,
        }
    }
}

/// A reversible fault undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RevertRecord {
    /// The intent's id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why now: `due`, `shutdown`, `pause`, `halt`, `recovery`.
    pub reason: String,
    /// `reverted`, `vanished` or `failed`.
    pub result: String,
    /// One line for humans.
    #[serde(default)]
    pub summary: String,
}

/// Where a look back starts (`history --since`, `GET /api/history?since=`): an RFC 3339
/// instant, or a duration back from now (`2h`, `30m`).
pub(crate) fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    match humantime::parse_duration(text) {
        Ok(d) => chrono::TimeDelta::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .ok_or_else(|| format!("since `{text}` is too long ago")),
        Err(_) => Err(format!(
            "invalid since `{text}`: expected an instant like 2026-12-01T09:00:00+09:00 or a duration like 2h"
        )),
    }
}

/// One fault as the answer key shows it: its intent joined with what followed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The intent.
    #[serde(flatten)]
    pub intent: Intent,
    /// What happened (none: the daemon stopped before the plugin answered).
    pub outcome: Option<OutcomeRecord>,
    /// When and how it was reverted, for reversible faults.
    pub reverted: Option<RevertRecord>,
    /// The target of a two-phase fault, journaled before it was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedRecord>,
    /// Who or what noticed it, first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected: Option<DetectedRecord>,
    /// When the system came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<RecoveredRecord>,
    /// The deadline it missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_recovered: Option<NotRecoveredRecord>,
}

impl Entry {
    /// A fault asked for, nothing known of it yet.
    pub fn of(intent: Intent) -> Self {
        Self {
            intent,
            outcome: None,
            reverted: None,
            prepared: None,
            detected: None,
            recovered: None,
            not_recovered: None,
        }
    }

    /// Takes a later record of this fault (its outcome, revert, detection ...); the
    /// first detection stands, the latest of the others.
    pub fn take(&mut self, record: Record) {
        match record {
            Record::Outcome(o) => self.outcome = Some(o),
            Record::Revert(r) => self.reverted = Some(r),
            Record::Prepared(p) => self.prepared = Some(p),
            Record::Detected(d) => {
                self.detected.get_or_insert(d);
            }
            Record::Recovered(r) => self.recovered = Some(r),
            Record::NotRecovered(r) => self.not_recovered = Some(r),
            Record::Intent(_) | Record::Refused(_) | Record::Halted(_) | Record::Resumed(_) => {}
        }
    }

    /// Whether this is a reversible fault not yet reverted (a revert that failed leaves
    /// it active: the next start tries again): one whose outcome carries revert state,
    /// or a two-phase fault prepared and not settled (the daemon stopped before its
    /// outcome was on disk: it may be in effect).
    pub fn is_active(&self) -> bool {
        self.revert_state().is_some()
    }

    /// The process it acted on (or its prepared target), if one.
    pub fn pid(&self) -> Option<u32> {
        self.outcome
            .as_ref()
            .and_then(|o| o.process.as_ref())
            .or_else(|| self.prepared.as_ref().and_then(|p| p.process.as_ref()))
            .map(|p| p.pid)
    }

    /// What undoes it, while it is active.
    pub fn revert_state(&self) -> Option<&serde_json::Value> {
        if self.intent.dry_run || self.reverted.as_ref().is_some_and(|r| r.result != "failed") {
            return None;
        }
        match &self.outcome {
            Some(outcome) => outcome.revert.as_ref(),
            None => self.prepared.as_ref().map(|p| &p.revert),
        }
    }
}

/// Joins the records into one entry per fault, in the order they were asked for.
#[cfg(test)]
pub(crate) fn entries(records: &[Record]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for record in records {
        match record {
            Record::Intent(intent) => {
                index.insert(intent.id.clone(), out.len());
                out.push(Entry::of(intent.clone()));
            }
            other => {
                if let Some(&i) = other.fault_id().and_then(|id| index.get(id)) {
                    out[i].take(other.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
