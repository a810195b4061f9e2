//! The one record of a fault, shared by every layer: what a trigger asks for (`Ask`),
//! what the engine decided and drew before calling the plugin (`Intent`), and what
//! happened (`Injection`: the intent and the plugin's outcome). Each boundary renders an
//! `Injection` with one function of its own (the API answer, the log lines, the journal
//! line, the notifier body); none copies it into a look-alike.
//!
//! Also the seam between the engine and the plugins (`Fault`), so the engine knows no
//! ABI and can be tested with a fake.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightmare_monkey_plugin_api::sdk::{Outcome, PluginError, ProcessInfo, Request};
use serde::{Deserialize, Serialize};

use crate::support::text::escape_controls;

/// What a trigger asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The configured fault.
    pub fault: String,
    /// Why.
    pub desc: String,
    /// Which trigger (`timer`, `http`, `poller`, `cli`).
    pub trigger: &'static str,
    /// Who, when known (the API client's address and token name).
    pub requested_by: Option<String>,
}

/// The longest description anyone may give (the API's `desc`, `kill --desc`): it is
/// journaled, logged and sent to chat, so it is a sentence, not a document.
pub const MAX_DESC_BYTES: usize = 1024;

/// What is wrong with a description given by a person or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDesc {
    /// Empty or only white space: a fault nobody can tell the reason of.
    Empty,
    /// Longer than [`MAX_DESC_BYTES`].
    TooLong,
}

/// Checks a description as every trigger that takes one from outside does (the API,
/// `kill --desc`), so that each refuses exactly what the other refuses; each words the
/// refusal for its own users.
pub fn check_desc(desc: &str) -> Result<(), BadDesc> {
    if desc.len() > MAX_DESC_BYTES {
        Err(BadDesc::TooLong)
    } else if desc.trim().is_empty() {
        Err(BadDesc::Empty)
    } else {
        Ok(())
    }
}

/// A fault about to be injected: the ask, with everything the engine decided and drew
/// for it. Journaled (and, for a real fault, on disk) before the plugin is called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// Unique across runs: `<run start in ms>-<n>`.
    pub id: String,
    /// When it was asked for.
    #[serde(serialize_with = "crate::support::text::rfc3339")]
    pub at: DateTime<Utc>,
    /// The configured fault.
    pub fault: String,
    /// The plugin providing it.
    pub plugin: String,
    /// What asked (`timer`, `http`, `poller`, `cli`).
    pub trigger: String,
    /// Who asked, when known: the API client's address and token name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Why.
    pub desc: String,
    /// Whether this is a dry run.
    pub dry_run: bool,
    /// The run's master seed.
    pub master_seed: u64,
    /// The stream the seed came from (`fault/<name>`).
    pub stream: String,
    /// How many values that stream had given before this one (0 for the first).
    pub stream_position: u64,
    /// The seed the plugin got.
    pub seed: u64,
    /// The fleet's admission, in a fleet drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Admission>,
}

/// A fault admitted by the fleet's coordinator: the slot it holds, the lease it holds it
/// with (hex, as `etcdctl` shows it), and etcd's revision at the admission, a fencing
/// token (a later admission carries a greater one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The slot, `0..max_concurrent`.
    pub slot: u32,
    /// The node's lease.
    pub lease: String,
    /// etcd's revision at the admission.
    pub revision: i64,
}

/// One injection that happened: its intent and what the plugin reported.
#[derive(Debug, Clone)]
pub struct Injection {
    /// What was asked, decided and drawn.
    pub intent: Intent,
    /// What the plugin reported.
    pub outcome: Outcome,
    /// How long the plugin took.
    pub elapsed_ms: u64,
    /// When the plugin answered.
    pub done: DateTime<Utc>,
    /// For a reversible fault now active: when it will be reverted.
    pub revert_due: Option<DateTime<Utc>>,
}

/// A process as the original named it: `sshd(PID:23183 PPID:1)`. The one place this
/// is formatted.
pub(crate) fn who(process: &ProcessInfo) -> String {
    // A process chooses its own name: control characters in it are escaped.
    format!(
        "{}(PID:{} PPID:{})",
        escape_controls(&process.name),
        process.pid,
        process.ppid
    )
}

/// A configured fault as the engine uses it: inject once, undo once. The plugin
/// boundary implements it over the ABI; tests implement it with a fake.
pub trait Fault: Send + Sync {
    /// Injects the fault once (synchronous; may block).
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError>;
    /// Undoes an injection, given the `revert` state of its outcome.
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError>;
    /// Whether it injects in two phases (`prepare`, then `apply`: see
    /// [`nightmare_monkey_plugin_api::sdk::Phase`]).
    fn prepares(&self) -> bool {
        false
    }
    /// The plugin it waits for, while that plugin's file is still loading: until then
    /// it is refused ([`InjectError::Loading`]) before anything is journaled.
    fn loading(&self) -> Option<&str> {
        None
    }
}

/// Why the monkey injects nothing now. How it is said (with how to resume) is the
/// door's to word: see `dispatch::refusal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// It is shutting down.
    ShuttingDown,
    /// The kill switch is on.
    Switch,
    /// A halt probe turned the kill switch on, for this reason.
    Halt(String),
    /// The pause file exists.
    PauseFile(std::path::PathBuf),
    /// The fleet's switch is on (who, since when, why).
    Fleet(String),
}

/// Why an injection did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The kill switch is on.
    #[error("Nightmare Monkey is paused ({0})")]
    Paused(Pause),
    /// A steady-state probe failed just before the injection: the fault was refused
    /// (journaled as refused, no budget used).
    #[error("steady state not met: {probe}: {reason}")]
    SteadyState {
        /// The probe, as written (short).
        probe: String,
        /// Why it failed.
        reason: String,
    },
    /// Outside the window: the monkey sleeps. Carries when the window next opens.
    #[error("Nightmare Monkey is sleeping now")]
    Sleeping {
        /// The next opening, if any within a year.
        opens: Option<DateTime<Utc>>,
    },
    /// Over budget.
    #[error("over budget ({why}): the next fault fits in {} s", ceil_secs(*.retry_after))]
    OverBudget {
        /// How long until a fault fits again.
        retry_after: Duration,
        /// Which limit.
        why: String,
    },
    /// The intent could not be journaled, so the fault was not injected.
    #[error("cannot write the journal {path}: {error}; the fault was not injected")]
    Journal {
        /// The journal's path.
        path: String,
        /// Why.
        error: String,
    },
    /// A reversible fault happened but its outcome, which a restart reverts from, could
    /// not be journaled: it was reverted at once rather than left where no one could
    /// find it.
    #[error("{fault}: cannot record the outcome in the journal {path}: {error}; the fault was {}", if *.reverted { "reverted at once" } else { "being reverted at once (its plugin has not answered yet)" })]
    Unrecorded {
        /// The fault's name.
        fault: String,
        /// The journal's path.
        path: String,
        /// Why.
        error: String,
        /// Whether the revert was done by the time of the answer.
        reverted: bool,
    },
    /// The fault's plugin file is still loading (the daemon serves while a slow one
    /// loads): nothing was journaled, no budget used.
    #[error("fault `{fault}` is not ready: its plugin `{plugin}` is still loading; try again once the log says it loaded")]
    Loading {
        /// The fault's name.
        fault: String,
        /// Its plugin.
        plugin: String,
    },
    /// The fleet's coordinator refused it (journaled `refused`, no budget, no draw).
    #[error("fleet: {why}")]
    Fleet {
        /// Why (`slots full (...)`, `fleet budget: ...`, `min gap: ...`, `the
        /// coordinator is unreachable (...)`).
        why: String,
        /// When an admission may fit again, if known.
        retry_after: Option<Duration>,
        /// Whether the coordinator could not be asked (503 rather than 429).
        unreachable: bool,
    },
    /// No fault of that name is configured.
    #[error("no fault named `{0}` is configured")]
    UnknownFault(String),
    /// The request's deadline passed: what it waited for says whether the plugin was
    /// called at all.
    #[error("{fault}: {}", .waited.says(*.after))]
    TimedOut {
        /// The fault's name.
        fault: String,
        /// The deadline.
        after: std::time::Duration,
        /// What it was waiting for then.
        waited: Waited,
    },
    /// The call could not complete.
    #[error("{fault}: the injection failed: {reason}")]
    Crashed {
        /// The fault's name.
        fault: String,
        /// What happened.
        reason: String,
    },
    /// The plugin refused or failed.
    #[error("{fault}: {error}")]
    Plugin {
        /// The fault's name.
        fault: String,
        /// What the plugin said.
        error: PluginError,
    },
}

/// What a request was waiting for when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Its fault's turn: another request for a fault with a steady state checks it, or
    /// injects, first.
    Turn,
    /// A place among the injections at once.
    Place,
    /// Its steady state's check.
    SteadyState,
    /// The plugin's answer (it goes on running on its thread).
    Plugin,
}

impl Waited {
    /// What the 504 and the log say, after `fault: `.
    fn says(self, after: Duration) -> String {
        let after = humantime::format_duration(after);
        let nothing = "given up (no plugin was called, nothing was journaled)";
        match self {
            Waited::Turn => format!(
                "another request for this fault was still checking its steady state or injecting after {after}; {nothing}"
            ),
            Waited::Place => {
                format!("no free place among the injections at once within {after}; {nothing}")
            }
            Waited::SteadyState => {
                format!("its steady state was not checked within {after}; {nothing}")
            }
            Waited::Plugin => format!(
                "no answer from the plugin within {after}; given up (the journal keeps its intent)"
            ),
        }
    }
}

impl InjectError {
    /// Whether the drill refused the fault on purpose (the window, the kill switch, the
    /// budget, the steady state, a plugin still loading), as opposed to a failure someone
    /// should look at. The one classification every trigger and the API use.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            InjectError::Sleeping { .. }
                | InjectError::OverBudget { .. }
                | InjectError::Paused(_)
                | InjectError::SteadyState { .. }
                | InjectError::Loading { .. }
                | InjectError::Fleet { .. }
        )
    }
}

/// Whole seconds, rounded up (at least 1): what `Retry-After` and messages say.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_the_originals_shape() {
        let p = ProcessInfo {
            name: "sshd".into(),
            pid: 23183,
            ppid: 1,
            ..ProcessInfo::default()
        };
        assert_eq!(who(&p), "sshd(PID:23183 PPID:1)");
    }

    #[test]
    fn a_description_is_a_sentence() {
        assert_eq!(check_desc("I like kill!"), Ok(()));
        assert_eq!(check_desc(""), Err(BadDesc::Empty));
        assert_eq!(check_desc(" \t\n"), Err(BadDesc::Empty));
        assert_eq!(check_desc(&"x".repeat(MAX_DESC_BYTES)), Ok(()));
        assert_eq!(
            check_desc(&"x".repeat(MAX_DESC_BYTES + 1)),
            Err(BadDesc::TooLong)
        );
    }

    #[test]
    fn seconds_round_up_and_never_say_zero() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
