//! How an `InjectError` is told to a client: the HTTP status, `Retry-After`, whether
//! it is a refusal on purpose; and the failure line a trigger logs.

use std::fmt;

use super::*;
use crate::domain::injection::Pause;

/// How a pause is said, with how to end it: the API's route, or the pause file.
impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pause::ShuttingDown => f.write_str("it is going to bed"),
            Pause::Switch => f.write_str("POST /api/resume to resume"),
            Pause::Halt(why) => write!(f, "halt: {why}; POST /api/resume to resume"),
            Pause::Fleet(why) => write!(f, "{why}; `nightmare-monkey resume --fleet` to resume"),
            Pause::PauseFile(file) => write!(
                f,
                "the pause file {} exists; remove it to resume",
                file.display()
            ),
        }
    }
}

/// The log line of an injection that failed, if it is one to log here: refusals are the
/// trigger's to mention (the timer and the pollers say them once in their own line, the
/// API answers them); a failure (a plugin's error, a timeout, the journal) is logged
/// once, here, whichever trigger asked.
pub(crate) fn failure_line(trigger: &str, error: &InjectError) -> Option<String> {
    (!error.is_refusal()).then(|| format!("{trigger}: {error}"))
}

/// How a client is told that an injection did not happen: the HTTP status, the message
/// and when to try again. The one rendering of an `InjectError` for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The message, as the error says it.
    pub message: String,
    /// When a retry may succeed (`Retry-After`, whole seconds).
    pub retry_after: Option<u64>,
    /// Whether the drill refused it on purpose (window, kill switch, budget), as opposed
    /// to a failure somebody should look at.
    pub is_refusal: bool,
}

impl Refusal {
    /// The refusal of `error`, now.
    pub fn of(error: &InjectError) -> Self {
        Self::at(error, Utc::now())
    }

    /// The refusal of `error` at `now` (the clock is passed in for tests).
    pub fn at(error: &InjectError, now: DateTime<Utc>) -> Self {
        let (status, retry_after) = match error {
            InjectError::Sleeping { opens } => (
                503,
                opens.map(|t| ceil_secs((t - now).to_std().unwrap_or_default())),
            ),
            InjectError::OverBudget { retry_after, .. } => (429, Some(ceil_secs(*retry_after))),
            InjectError::Paused(_) | InjectError::SteadyState { .. } => (503, None),
            InjectError::Journal { .. } | InjectError::Unrecorded { .. } => (503, None),
            InjectError::Fleet {
                retry_after,
                unreachable,
                ..
            } => (
                if *unreachable { 503 } else { 429 },
                retry_after.map(ceil_secs),
            ),
            InjectError::UnknownFault(_) => (404, None),
            InjectError::Loading { .. } => (503, Some(1)),
            InjectError::Plugin { error, .. } if error.kind == ErrorKind::NoTarget => (503, None),
            InjectError::Plugin { .. } | InjectError::Crashed { .. } => (502, None),
            InjectError::TimedOut { .. } => (504, None),
        };
        Self {
            status,
            message: error.to_string(),
            retry_after,
            is_refusal: error.is_refusal(),
        }
    }
}
