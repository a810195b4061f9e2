//! `renice`: an example process fault for nightmare-monkey. It lowers the CPU priority of
//! one random process (raises its nice value) for a while, then gives the old value back:
//! the service still runs, only slowly whenever the machine is busy, which is the kind of
//! "it is up but something is off" incident a drill should have.
//!
//! ```ron
//! faults: {
//!     "slow-worker": (plugin: "renice", config: (
//!         nice: 19,                      // 1 to 19 (default 19, the lowest priority)
//!         duration: "10m",               // at most 1h (default 5m)
//!         include_names: ["^my-worker$"], // the selection of every process fault
//!     )),
//! },
//! ```
//!
//! It shows how a process fault acts by PID on exactly the process it chose: the system
//! has no pidfd form of `setpriority`, so every call goes through
//! [`Exact::act`](nightmare_monkey_plugin_api::sdk::process::Exact::act), which runs it
//! only while the process is still the one chosen. No start time is compared by hand.
//! Giving a priority back needs `CAP_SYS_NICE` (root): a daemon without it gets
//! `ErrorKind::Denied` from `revert`, and the host keeps the fault in effect and tries
//! again every minute.
#![deny(missing_docs)]
// `export_plugin!` exports an unmangled symbol, which Rust counts as unsafe code.
#![deny(unsafe_code)]

use std::time::Duration;

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{
        self,
        process::{Exact, Selector},
        results, ErrorKind, FaultPlugin, Outcome, PluginError, ProcessInfo, Request,
    },
};
use rustix::process::{getpriority_process, setpriority_process, Pid};
use serde::{Deserialize, Serialize};

/// The longest a process stays reniced.
const MAX_DURATION: Duration = Duration::from_secs(3600);

nightmare_monkey_plugin_api::process_config! {
    /// The fault's configuration, as written in RON.
    pub struct Config {
        /// The nice value to set: 1 (a little lower) to 19 (the lowest priority).
        pub nice: Option<i32>,
        /// How long it stays so (default 5 min, at most 1 h).
        pub duration: Option<sdk::DurationText>,
    }
}

/// Which process, exactly, and its nice value before and during the fault: what
/// `revert` needs, and what `prepare` hands to `apply`.
#[derive(Debug, Serialize, Deserialize)]
struct Reniced {
    pid: u32,
    start_time: u64,
    name: String,
    before: i32,
    during: i32,
}

/// The `renice` fault.
#[derive(Debug)]
pub struct Renice {
    nice: i32,
    duration: Duration,
    selector: Selector,
}

/// A `getpriority`/`setpriority` failure as a plugin reports it: refused (EPERM, EACCES:
/// lowering a nice value needs CAP_SYS_NICE) is [`ErrorKind::Denied`].
fn refused(what: &str, pid: u32, e: rustix::io::Errno) -> PluginError {
    let kind = if e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS {
        ErrorKind::Denied
    } else {
        ErrorKind::Failed
    };
    PluginError::new(kind, format!("cannot {what} of PID {pid}: {e}"))
}

fn nice_of(pid: u32) -> Result<i32, PluginError> {
    getpriority_process(Pid::from_raw(pid as i32))
        .map_err(|e| refused("read the nice value", pid, e))
}

fn set_nice(pid: u32, nice: i32) -> Result<(), PluginError> {
    setpriority_process(Pid::from_raw(pid as i32), nice)
        .map_err(|e| refused(&format!("set the nice value {nice}"), pid, e))
}

impl Renice {
    fn outcome(&self, action: &str, result: &str, summary: String) -> Outcome {
        Outcome {
            action: action.to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        }
    }
}

impl FaultPlugin for Renice {
    const NAME: &'static str = "renice";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "lowers one random process's CPU priority (nice) for a while, then gives it back";
    const PREPARES: bool = true;
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let nice = config.nice.unwrap_or(19);
        if !(1..=19).contains(&nice) {
            return Err(PluginError::new(
                ErrorKind::Config,
                format!("nice: {nice} is out of range: expected 1 to 19 (a lower priority)"),
            ));
        }
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(300),
            MAX_DURATION,
        )?;
        let selector = Selector::new(&config.selection())?;
        Ok(Self {
            nice,
            duration,
            selector,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let mut prepared = self.prepare(request)?;
        match (&prepared.revert, request.dry_run) {
            (Some(_), true) => {
                prepared.result = results::DRY_RUN.to_owned();
                prepared.summary = prepared.summary.replacen("will ", "would ", 1);
                prepared.revert = None;
                prepared.revert_after_ms = None;
                Ok(prepared)
            }
            (Some(state), false) => self.apply(request, state),
            (None, _) => Ok(prepared),
        }
    }

    /// Chooses the process and reads its nice value; changes nothing.
    fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let info = self.selector.choose(request.seed, &request.avoid)?.info;
        let who = format!("{}(PID:{})", info.name, info.pid);
        let Some(before) = Exact::of(&info)?
            .map(|process| process.act(nice_of))
            .transpose()?
            .flatten()
        else {
            let mut outcome = self.outcome(
                "Renice",
                results::VANISHED,
                format!("{who} was gone before it could be reniced"),
            );
            outcome.process = Some(info);
            return Ok(outcome);
        };
        let mut outcome = self.outcome(
            "Renice",
            "prepared",
            format!(
                "will renice {who} from {before} to {} for {}s",
                self.nice,
                self.duration.as_secs()
            ),
        );
        outcome.revert = Some(serde_json::json!(Reniced {
            pid: info.pid,
            start_time: info.start_time,
            name: info.name.clone(),
            before,
            during: self.nice,
        }));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        outcome.process = Some(info);
        Ok(outcome)
    }

    /// Renices exactly the prepared process: one that took its PID is left alone.
    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let state: Reniced = sdk::read_state(prepared)?;
        let who = format!("{}(PID:{})", state.name, state.pid);
        let process = ProcessInfo {
            name: state.name.clone(),
            pid: state.pid,
            start_time: state.start_time,
            ..ProcessInfo::default()
        };
        let done = match Exact::open(state.pid, state.start_time)? {
            Some(exact) => exact.act(|pid| set_nice(pid, state.during))?,
            None => None,
        };
        let mut outcome = match done {
            Some(()) => {
                let mut outcome = self.outcome(
                    "Renice",
                    results::INJECTED,
                    format!(
                        "reniced {who} from {} to {} for {}s",
                        state.before,
                        state.during,
                        self.duration.as_secs()
                    ),
                );
                outcome.revert = Some(prepared.clone());
                outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
                outcome
            }
            None => self.outcome(
                "Renice",
                results::VANISHED,
                format!("{who} was gone before it could be reniced"),
            ),
        };
        outcome.process = Some(process);
        Ok(outcome)
    }

    /// Gives the old nice value back to exactly the process reniced, unless someone
    /// changed it since (then it is theirs, and left alone).
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let state: Reniced = sdk::read_state(state)?;
        let who = format!("{}(PID:{})", state.name, state.pid);
        let gone = || {
            self.outcome(
                "Renice back",
                results::VANISHED,
                format!("{who} is gone: nothing to give back"),
            )
        };
        let Some(process) = Exact::open(state.pid, state.start_time)? else {
            return Ok(gone());
        };
        let done = process.act(|pid| {
            let now = nice_of(pid)?;
            if now == state.during {
                set_nice(pid, state.before)?;
            }
            Ok(now)
        })?;
        Ok(match done {
            None => gone(),
            Some(now) if now == state.during || now == state.before => self.outcome(
                "Renice back",
                results::REVERTED,
                format!("gave {who} its nice value {} back", state.before),
            ),
            Some(now) => self.outcome(
                "Renice back",
                "left",
                format!("{who} has the nice value {now} now, set by someone else: left as it is"),
            ),
        })
    }
}

export_plugin!(Renice);

#[cfg(test)]
mod tests {
    use super::*;
    use nightmare_monkey_plugin_api::sdk::testing::{Child, Harness};

    /// Whether this test may give a priority back (CAP_SYS_NICE): tried on a child.
    fn may_lower_nice() -> bool {
        let child = Child::sleep();
        set_nice(child.pid(), 1).is_ok() && set_nice(child.pid(), 0).is_ok()
    }

    /// Through the ABI, on a child of its own: a dry run and `prepare` leave its nice
    /// value, inject raises it, revert (from a fresh instance, twice) gives it back.
    #[test]
    fn keeps_the_contracts_on_a_child_of_its_own() {
        let child = Child::sleep();
        let pid = child.pid();
        let harness = Harness::of::<Renice>();
        let contract = harness
            .contract(&format!("(nice: 15, duration: \"1m\", scope: Tree({pid}))"))
            .watch(|| nice_of(pid).ok());
        if may_lower_nice() {
            contract.check_all().unwrap();
        } else {
            // Without CAP_SYS_NICE the revert is refused, as `Denied`: what the host
            // keeps in effect and tries again every minute.
            contract.check_dry_run().unwrap();
            let fault = harness
                .fault(&format!("(nice: 15, scope: Tree({pid}))"))
                .unwrap();
            let outcome = fault.inject_as_host(&Request::default()).unwrap();
            assert_eq!(nice_of(pid).unwrap(), 15);
            let e = fault.revert(&outcome.revert.unwrap()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Denied, "{e}");
        }
    }

    /// A process that exited is not reniced, and its revert is `vanished`, not an error.
    #[test]
    fn a_process_that_is_gone_is_left_alone() {
        let mut child = Child::sleep();
        let pid = child.pid();
        let fault = Harness::of::<Renice>()
            .fault(&format!("(scope: Tree({pid}))"))
            .unwrap();
        let prepared = fault
            .inject(&Request {
                dry_run: false,
                phase: sdk::Phase::Prepare,
                ..Request::default()
            })
            .unwrap();
        let state = prepared.revert.unwrap();
        child.end();
        let applied = fault
            .inject(&Request {
                dry_run: false,
                phase: sdk::Phase::Apply,
                prepared: Some(state.clone()),
                ..Request::default()
            })
            .unwrap();
        assert_eq!(applied.result, results::VANISHED);
        assert_eq!(applied.revert, None);
        assert_eq!(fault.revert(&state).unwrap().result, results::VANISHED);
    }

    #[test]
    fn config_errors_name_the_field() {
        let harness = Harness::of::<Renice>();
        harness.config_error("(nice: 0)", "nice").unwrap();
        harness.config_error("(nice: 20)", "nice").unwrap();
        harness
            .config_error("(duration: \"2h\")", "duration")
            .unwrap();
        harness.config_error("(nicee: 3)", "nicee").unwrap();
    }
}
