//! How a client is told that an injection did not happen: the HTTP status of each
//! `InjectError`, `Retry-After`, whether it is a refusal on purpose. HTTP's alone: the
//! layers below say what happened, not how a web client hears it.

use chrono::{DateTime, Utc};
use nightmare_monkey_plugin_api::sdk::ErrorKind;

use crate::domain::injection::{ceil_secs, InjectError};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nightmare_monkey_plugin_api::sdk::PluginError;

    use super::*;
    use crate::dispatch::failure_line;

    #[test]
    fn each_error_has_one_status_message_and_retry() {
        let now = Utc::now();
        let sleeping = InjectError::Sleeping {
            opens: Some(now + chrono::TimeDelta::milliseconds(61_500)),
        };
        assert_eq!(
            Refusal::at(&sleeping, now),
            Refusal {
                status: 503,
                message: "Nightmare Monkey is sleeping now".into(),
                retry_after: Some(62),
                is_refusal: true,
            }
        );
        let budget = InjectError::OverBudget {
            retry_after: Duration::from_millis(1500),
            why: "2 faults per hour".into(),
        };
        let r = Refusal::at(&budget, now);
        assert_eq!(
            (r.status, r.retry_after, r.is_refusal),
            (429, Some(2), true)
        );
        assert_eq!(r.message, budget.to_string());
        let plugin = |kind| InjectError::Plugin {
            fault: "f".into(),
            error: PluginError::new(kind, "x"),
        };
        let cases = [
            (
                InjectError::Paused(crate::domain::injection::Pause::Switch),
                503,
                true,
            ),
            (
                InjectError::Journal {
                    path: "j".into(),
                    error: "e".into(),
                },
                503,
                false,
            ),
            (InjectError::UnknownFault("f".into()), 404, false),
            (plugin(ErrorKind::NoTarget), 503, false),
            (plugin(ErrorKind::Failed), 502, false),
            (
                InjectError::Crashed {
                    fault: "f".into(),
                    reason: "r".into(),
                },
                502,
                false,
            ),
            (
                InjectError::TimedOut {
                    fault: "f".into(),
                    after: Duration::from_secs(30),
                    waited: crate::domain::injection::Waited::Plugin,
                },
                504,
                false,
            ),
        ];
        for (error, status, is_refusal) in cases {
            let r = Refusal::at(&error, now);
            assert_eq!(
                (r.status, r.is_refusal, r.retry_after),
                (status, is_refusal, None),
                "{error}"
            );
            assert_eq!(
                failure_line("poller", &error),
                (!is_refusal).then(|| format!("poller: {error}"))
            );
        }
        assert_eq!(failure_line("timer", &sleeping), None);
        assert_eq!(failure_line("http", &budget), None);
        // A fault of a plugin still loading: try again in a second; not a failure.
        let loading = InjectError::Loading {
            fault: "f".into(),
            plugin: "p".into(),
        };
        let r = Refusal::at(&loading, now);
        assert_eq!(
            (r.status, r.is_refusal, r.retry_after),
            (503, true, Some(1))
        );
        assert_eq!(failure_line("poller", &loading), None);
    }

    /// How a pause is said: the words every client and log line shows, each with how to end
    /// it (the engine says only why).
    #[test]
    fn a_pause_is_said_with_how_to_resume() {
        use crate::domain::injection::Pause;
        let said = [
            Pause::ShuttingDown,
            Pause::Switch,
            Pause::Halt("probe x failing".into()),
            Pause::PauseFile("/run/nm/paused".into()),
        ]
        .map(|p| p.to_string());
        assert_eq!(
            said,
            [
                "it is going to bed",
                "POST /api/resume to resume",
                "halt: probe x failing; POST /api/resume to resume",
                "the pause file /run/nm/paused exists; remove it to resume",
            ]
        );
        assert_eq!(
            InjectError::Paused(Pause::Switch).to_string(),
            "Nightmare Monkey is paused (POST /api/resume to resume)"
        );
    }
}
