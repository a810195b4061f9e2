//! How a pause is said, and the failure line a trigger logs (the HTTP answer of an
//! `InjectError` is the HTTP trigger's: `triggers::http::refusal`).

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
