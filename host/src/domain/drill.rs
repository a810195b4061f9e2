//! What followed a fault, as journal records: who or what noticed it and when
//! (`detected`), whether the system came back (`recovered`, `not-recovered`), what was
//! refused for a sick system (`refused`) and when the monkey stopped itself (`halted`).
//! `report` reads them into what a drill came to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Someone or something noticed a fault: an on-call engineer's ack, a monitoring alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DetectedRecord {
    /// The fault's id.
    pub id: String,
    /// When it was noticed.
    pub at: DateTime<Utc>,
    /// Time to detect: from the injection (its outcome) to the ack, ms.
    pub ttd_ms: u64,
    /// Who or what: a name (`alice`), or `alertmanager:<alertname>`.
    pub by: String,
}

/// The system came back: every recovery probe passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecoveredRecord {
    /// The fault's id.
    pub id: String,
    /// When the probes all passed.
    pub at: DateTime<Utc>,
    /// Time to recover: from the injection (or its revert, for a reversible fault), ms.
    pub ttr_ms: u64,
    /// Whether it came after the deadline (a `not-recovered` came first).
    #[serde(default)]
    pub late: bool,
}

/// The system had not come back by the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NotRecoveredRecord {
    /// The fault's id.
    pub id: String,
    /// When the deadline passed.
    pub at: DateTime<Utc>,
    /// The deadline, ms after the injection (or its revert).
    pub deadline_ms: u64,
    /// The probe still failing and why.
    pub reason: String,
}

/// A fault not injected because the system was not in its steady state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RefusedRecord {
    /// An id like an intent's.
    pub id: String,
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// The configured fault.
    pub fault: String,
    /// What asked.
    pub trigger: String,
    /// Why it was asked for.
    #[serde(default)]
    pub desc: String,
    /// `steady state not met: <probe>: <reason>`.
    pub reason: String,
}

/// The monkey paused itself: a halt probe failed for too long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HaltedRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// The probe, as written (short).
    pub probe: String,
    /// Why it failed.
    pub reason: String,
}

/// A halt ended: someone resumed the monkey (`POST /api/resume`, `resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResumedRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// The halt it ended, `<probe>: <reason>`.
    pub halt: String,
}

/// `1m 5s`, `850ms`: a time to detect or recover, for people.
pub(crate) fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = (ms + 500) / 1000;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1_499), "1s");
        assert_eq!(human_ms(1_500), "2s");
        assert_eq!(human_ms(65_000), "1m 5s");
    }
}

/// A fault marked noticed.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Acknowledged {
    /// The fault's id.
    pub id: String,
    /// The configured fault.
    pub fault: String,
    /// Whom it struck, or what it did.
    pub target: String,
    /// Time to detect, ms.
    pub ttd_ms: u64,
    /// Who or what noticed it.
    pub by: String,
}

/// Why nothing was marked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AckError {
    /// No journal to find faults in.
    #[error("no journal: acks are kept in it")]
    NoJournal,
    /// Nothing was injected for real in the last day.
    #[error("no fault to acknowledge: none was injected for real in the last 24 hours")]
    NothingOpen,
    /// An alert that was firing before the fault: it is not about it.
    #[error("the alert started at {started}, before fault {id} was injected at {injected}: it is not about it")]
    Before {
        /// The latest fault.
        id: String,
        /// When the alert started firing.
        started: String,
        /// When the fault was injected.
        injected: String,
    },
    /// The id names no fault of the last week.
    #[error("no fault `{0}` in the journal's last 7 days")]
    Unknown(String),
    /// That fault changed nothing to notice.
    #[error("fault {id} was {result}: nothing happened to notice")]
    NotReal {
        /// The fault.
        id: String,
        /// What it came to (`a dry run`, `failed`).
        result: String,
    },
    /// Noticed already: the first ack stands.
    #[error("fault {id} was noticed already, by {by} after {after}")]
    Already {
        /// The fault.
        id: String,
        /// Who first.
        by: String,
        /// Its time to detect, for people.
        after: String,
    },
    /// The journal could not be read or written.
    #[error("{0}")]
    Journal(String),
}
