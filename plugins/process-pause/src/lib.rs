//! `process-pause`: a reversible fault. It stops one random process with SIGSTOP (chosen
//! and signalled exactly as `process-kill` does) and, when the host reverts it after the
//! configured duration, lets it go on with SIGCONT, checking first by start time that it
//! is still the same process.
//!
//! A stopped process looks hung to everything around it: health checks time out, queues
//! back up, clients retry. That is the incident to train on.
//!
//! Configuration (RON, every field optional):
//!
//! ```ron
//! (
//!     duration: "30s",               // how long the victim stays stopped (at most 1h)
//!     include_names: ["^nginx$"],    // the same selection as process-kill
//!     exclude_names: [],
//!     include_cmdlines: [],
//!     exclude_cmdlines: [],
//!     users: [],
//! )
//! ```

use std::time::Duration;

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{
        self,
        process::{signal_exact, Selector, Signal},
        results, FaultPlugin, Outcome, PluginError, ProcessInfo, Request,
    },
};
use serde::{Deserialize, Serialize};

/// The longest pause: a drill fault, not an outage.
const MAX_DURATION: Duration = Duration::from_secs(3600);

nightmare_monkey_plugin_api::process_config! {
    /// The fault's configuration, as written in RON.
    pub struct Config {
        /// How long the victim stays stopped (default 30 s, at most 1 h).
        pub duration: Option<sdk::DurationText>,
    }
}

/// What the host keeps to let the victim go on: which process, exactly. Prepared (before
/// the SIGSTOP) it also carries the whole process, for the outcome of the apply.
#[derive(Debug, Serialize, Deserialize)]
struct Stopped {
    pid: u32,
    start_time: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    process: Option<ProcessInfo>,
    /// How many processes were listed and considered when it was chosen.
    #[serde(default, skip_serializing_if = "is_zero")]
    listed: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    considered: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The `process-pause` fault.
#[derive(Debug)]
pub struct ProcessPause {
    duration: Duration,
    selector: Selector,
}

impl ProcessPause {
    /// The outcome's common part, before anything is done.
    fn outcome(&self, listed: usize, considered: usize) -> Outcome {
        Outcome {
            action: "Pause".to_owned(),
            signal: Some("SIGSTOP".to_owned()),
            details: serde_json::json!({
                "listed": listed,
                "considered": considered,
                "duration_ms": self.duration.as_millis() as u64,
            }),
            ..Outcome::default()
        }
    }

    fn how_long(&self) -> String {
        humantime::format_duration(self.duration).to_string()
    }
}

impl FaultPlugin for ProcessPause {
    const NAME: &'static str = "process-pause";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "stops one random process (SIGSTOP) for a while, then lets it go on (SIGCONT)";
    const PREPARES: bool = true;
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(30),
            MAX_DURATION,
        )?;
        let selector = Selector::new(&config.selection())?;
        Ok(Self { duration, selector })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let prepared = self.prepare(request)?;
        if request.dry_run {
            let mut outcome = prepared;
            outcome.result = results::DRY_RUN.to_owned();
            outcome.revert = None;
            outcome.revert_after_ms = None;
            if let Some(info) = &outcome.process {
                outcome.summary = format!(
                    "would stop {}(PID:{}) for {}",
                    info.name,
                    info.pid,
                    self.how_long()
                );
            }
            return Ok(outcome);
        }
        match &prepared.revert {
            Some(state) => self.apply(request, state),
            None => Ok(prepared),
        }
    }

    /// Chooses the victim; stops nothing.
    fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let chosen = self.selector.choose(request.seed, &request.avoid)?;
        let info = chosen.info;
        let mut outcome = self.outcome(chosen.listed, chosen.considered);
        outcome.result = "prepared".to_owned();
        outcome.summary = format!(
            "will stop {}(PID:{}) for {}",
            info.name,
            info.pid,
            self.how_long()
        );
        outcome.revert = Some(serde_json::json!(Stopped {
            pid: info.pid,
            start_time: info.start_time,
            name: info.name.clone(),
            process: Some(info.clone()),
            listed: chosen.listed,
            considered: chosen.considered,
        }));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        outcome.process = Some(info);
        Ok(outcome)
    }

    /// Stops exactly the prepared victim (by start time): a process that took its PID
    /// meanwhile is left alone.
    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let stopped: Stopped = sdk::read_state(prepared)?;
        let who = format!("{}(PID:{})", stopped.name, stopped.pid);
        let mut outcome = self.outcome(stopped.listed, stopped.considered);
        let sent = signal_exact(stopped.pid, stopped.start_time, Signal::STOP)?;
        if sent {
            outcome.result = results::PAUSED.to_owned();
            outcome.summary = format!("stopped {who} for {}", self.how_long());
            outcome.revert = Some(serde_json::json!(Stopped {
                pid: stopped.pid,
                start_time: stopped.start_time,
                name: stopped.name.clone(),
                process: None,
                listed: 0,
                considered: 0,
            }));
            outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        } else {
            outcome.result = results::VANISHED.to_owned();
            outcome.summary = format!("{who} was gone before SIGSTOP could be sent");
        }
        outcome.process = Some(stopped.process.unwrap_or(ProcessInfo {
            name: stopped.name,
            pid: stopped.pid,
            start_time: stopped.start_time,
            ..ProcessInfo::default()
        }));
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let stopped: Stopped = sdk::read_state(state)?;
        let who = format!("{}(PID:{})", stopped.name, stopped.pid);
        let resumed = signal_exact(stopped.pid, stopped.start_time, Signal::CONT)?;
        Ok(Outcome {
            action: "Resume".to_owned(),
            signal: Some("SIGCONT".to_owned()),
            result: if resumed {
                results::REVERTED
            } else {
                results::VANISHED
            }
            .to_owned(),
            summary: if resumed {
                format!("sent SIGCONT to {who}")
            } else {
                format!("{who} is gone (or its PID now names another process): nothing to resume")
            },
            ..Outcome::default()
        })
    }
}

export_plugin!(ProcessPause);

#[cfg(test)]
mod tests {
    use super::*;
    use nightmare_monkey_plugin_api::sdk::{
        process::stopped,
        testing::{Child, Harness},
    };

    /// Through the ABI, on a child of its own: a dry run and `prepare` leave it running,
    /// inject stops it, revert (from a fresh instance, twice) lets it go on.
    #[test]
    fn keeps_the_contracts_on_a_child_of_its_own() {
        let child = Child::sleep();
        let pid = child.pid();
        Harness::of::<ProcessPause>()
            .contract(&format!("(duration: \"1m\", scope: Tree({pid}))"))
            .watch(|| stopped(pid))
            .check_all()
            .unwrap();
    }

    #[test]
    fn config_errors_are_one_line_naming_the_field() {
        let harness = Harness::of::<ProcessPause>();
        harness
            .config_error("(duration: \"2h\")", "duration")
            .unwrap();
        harness
            .config_error("(include_names: [\"a(\"])", "include_names")
            .unwrap();
        harness
            .config_error("(users: [\"no-such-user-here\"])", "users")
            .unwrap();
        harness.config_error("(scope: Tree(0))", "scope").unwrap();
    }
}
