//! `process-pause`: a reversible fault. It stops one random process with SIGSTOP (chosen
//! and signalled exactly as `process-kill` does) and, when the host reverts it after the
//! configured duration, lets it go on with SIGCONT, checking first by start time that it
//! is still the same process.
//!
//! A stopped process looks hung to everything around it: health checks time out, queues
//! back up, clients retry. That is the incident to train on.
//!
//! A process that is stopped already (state `T`, by an operator's SIGSTOP or job control,
//! or `t`, under a debugger) is someone else's stop: it is never chosen, and one found
//! stopped when the pause comes to be applied is left as it is and the injection refused
//! (an error of kind `NoTarget`: nothing in effect, nothing to revert, no fault counted).
//! A SIGCONT at the revert would otherwise end a stop that was never ours.
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
        process::{is_stopped_state, signal_exact, Exact, Selector, Signal},
        results, ErrorKind, FaultPlugin, Outcome, PluginError, ProcessInfo, Request,
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
    /// meanwhile is left alone, and so is one that someone else stopped since it was
    /// chosen (refused with [`ErrorKind::NoTarget`]: the host records nothing in effect
    /// and owes no revert, so no SIGCONT of ours ever ends that stop).
    ///
    /// The look at its state and the SIGSTOP are two system calls: a process stopped by
    /// someone else in the microseconds between them is taken for ours, and continued at
    /// the revert. No signal tests and stops at once, and the kernel keeps no count of
    /// stops that would tell a revert whose stop it ends, so that window stays open; so
    /// does the case of a process stopped by someone else while it is paused by us.
    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let stopped: Stopped = sdk::read_state(prepared)?;
        let who = format!("{}(PID:{})", stopped.name, stopped.pid);
        let mut outcome = self.outcome(stopped.listed, stopped.considered);
        let sent = match Exact::open(stopped.pid, stopped.start_time)? {
            None => false,
            Some(process) => {
                if let Some(state) = process.state()?.filter(|s| is_stopped_state(*s)) {
                    return Err(stopped_by_another(&who, state));
                }
                process.signal(Signal::STOP)?
            }
        };
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

/// The refusal of a victim found stopped (state `state`) when it was to be paused.
fn stopped_by_another(who: &str, state: char) -> PluginError {
    let by = if state == 't' {
        "by a debugger or another tracer"
    } else {
        "by a stop signal or job control"
    };
    PluginError::new(
        ErrorKind::NoTarget,
        format!(
            "{who} is stopped already (state {state}, {by}): left as it is, not paused; its stop is someone else's to end"
        ),
    )
}

export_plugin!(ProcessPause);

#[cfg(test)]
mod tests {
    use super::*;
    use nightmare_monkey_plugin_api::sdk::{
        process::stopped,
        testing::{Child, Harness},
        Phase,
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

    /// A process stopped by someone else (its operator, here the test) is never paused:
    /// not chosen when it is stopped already, and refused at apply when it was stopped
    /// between prepare and apply. Either way it stays stopped, and no revert state comes
    /// back whose SIGCONT would end that stop.
    #[test]
    fn a_process_stopped_by_someone_else_is_never_paused() {
        let child = Child::sleep();
        let pid = child.pid();
        let fault = Harness::of::<ProcessPause>()
            .fault(&format!("(duration: \"1m\", scope: Tree({pid}))"))
            .unwrap();
        let request = Request {
            seed: 1,
            dry_run: false,
            ..Request::default()
        };
        let prepared = fault
            .inject(&Request {
                phase: Phase::Prepare,
                ..request.clone()
            })
            .unwrap();
        let state = prepared.revert.expect("a running child is chosen");

        let info = ProcessInfo::of(pid).unwrap();
        assert!(signal_exact(pid, info.start_time, Signal::STOP).unwrap());
        // A signal is delivered a moment after it is sent.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stopped(pid) != Some(true) {
            assert!(std::time::Instant::now() < deadline, "SIGSTOP never took");
            std::thread::yield_now();
        }
        let refused = fault
            .inject(&Request {
                phase: Phase::Apply,
                prepared: Some(state),
                ..request.clone()
            })
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::NoTarget, "{refused}");
        assert_eq!(
            refused.message,
            format!("sleep(PID:{pid}) is stopped already (state T, by a stop signal or job control): left as it is, not paused; its stop is someone else's to end")
        );
        let unchosen = fault.inject_as_host(&request).unwrap_err();
        assert_eq!(unchosen.kind, ErrorKind::NoTarget, "{unchosen}");
        assert_eq!(stopped(pid), Some(true));
        assert!(stopped_by_another("gdb(PID:9)", 't')
            .message
            .contains("(state t, by a debugger or another tracer)"));
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
