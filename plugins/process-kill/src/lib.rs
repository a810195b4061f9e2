//! `process-kill`: nightmare-monkey's built-in fault. It signals one random process,
//! exactly, and reports what happened to it.
//!
//! The crate is both an `rlib`, which the host links as its built-in fault, and a `cdylib`
//! that loads as a plugin like any other; both go through the same ABI.
//!
//! Who can be chosen, how cheaply and how exactly: see the SDK's `sdk::process`. The outcome says
//! whether the victim died (`killed`), was still alive after the grace period
//! (`survived`) or was gone first (`vanished`).
//!
//! Configuration (RON, every field optional):
//!
//! ```ron
//! (
//!     signal: "SIGKILL",              // name, short name or number
//!     include_names: ["^nginx$"],     // regexes on the short name (comm); empty: all
//!     exclude_names: ["^sshd$"],
//!     include_cmdlines: [],           // regexes on the command line
//!     exclude_cmdlines: ["--critical"],
//!     users: ["www-data", "1000"],    // names or UIDs; empty: all
//!     grace_ms: 1000,                 // how long to wait for the victim to exit
//! )
//! ```

use std::time::Duration;

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{
        process::{Exact, Selector, Signal},
        results, ErrorKind, FaultPlugin, Outcome, PluginError, Request,
    },
};

nightmare_monkey_plugin_api::process_config! {
    /// The fault's configuration, as written in RON.
    pub struct Config {
        /// The signal to send (default `SIGKILL`).
        pub signal: Option<String>,
    }
    after_users {
        /// How long to wait for the victim to exit after the signal (default 1000 ms).
        pub grace_ms: Option<u64>,
    }
}

/// The `process-kill` fault.
#[derive(Debug)]
pub struct ProcessKill {
    signal: Signal,
    selector: Selector,
    grace: Duration,
}

impl FaultPlugin for ProcessKill {
    const NAME: &'static str = "process-kill";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "signals one random process (never PID 1, the monkey, its ancestors or kernel threads)";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let signal = match &config.signal {
            None => Signal::KILL,
            Some(text) => Signal::parse(text)
                .map_err(|e| PluginError::new(ErrorKind::Config, format!("signal: {e}")))?,
        };
        // A stop signal leaves its victim stopped until somebody continues it, and
        // nothing here ever will: that fault is process-pause, which does.
        if signal.stops() {
            return Err(PluginError::new(
                ErrorKind::Config,
                format!(
                    "signal: {} would leave the process stopped for good: use the process-pause fault, which continues it when due",
                    signal.name()
                ),
            ));
        }
        let selector = Selector::new(&config.selection())?;
        Ok(Self {
            signal,
            selector,
            grace: Duration::from_millis(config.grace_ms.unwrap_or(1000)),
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let chosen = self.selector.choose(request.seed, &request.avoid)?;
        let info = chosen.info;
        let signal = self.signal.name();
        let result = if request.dry_run {
            results::DRY_RUN
        } else {
            match Exact::of(&info)? {
                None => results::VANISHED,
                Some(process) => {
                    if !process.signal(self.signal)? {
                        results::VANISHED
                    } else if process.wait_exit(self.grace)? {
                        results::KILLED
                    } else {
                        results::SURVIVED
                    }
                }
            }
        };
        let who = format!("{}(PID:{})", info.name, info.pid);
        let summary = match result {
            results::DRY_RUN => format!("would send {signal} to {who}"),
            results::KILLED => format!("sent {signal} to {who}, it exited"),
            results::SURVIVED => format!(
                "sent {signal} to {who}, still alive after {} ms",
                self.grace.as_millis()
            ),
            _ => format!("{who} was gone before {signal} could be sent"),
        };
        Ok(Outcome {
            action: "Kill".to_owned(),
            result: result.to_owned(),
            process: Some(info),
            signal: Some(signal),
            summary,
            details: serde_json::json!({ "listed": chosen.listed, "considered": chosen.considered }),
            ..Outcome::default()
        })
    }
}

export_plugin!(ProcessKill);

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::parse_config;

    use super::*;
    use nightmare_monkey_plugin_api::sdk::{
        process::stopped,
        testing::{Child, Harness},
    };

    /// Through the ABI: a dry run leaves its only candidate, a child of its own, alone;
    /// no revert state makes it panic; config errors name the field.
    #[test]
    fn keeps_the_contracts() {
        let child = Child::sleep();
        let pid = child.pid();
        let harness = Harness::of::<ProcessKill>();
        let contract = harness
            .contract(&format!("(scope: Tree({pid}))"))
            .watch(|| stopped(pid));
        contract.check_dry_run().unwrap();
        contract.check_no_panics().unwrap();
        contract
            .check_config_errors(&[
                ("(signal: \"FOO\")", "signal"),
                ("(signal: \"STOP\")", "signal"),
                ("(exclude_cmdlines: [\"(\"])", "exclude_cmdlines"),
            ])
            .unwrap();
    }

    #[test]
    fn stop_signals_are_refused_with_a_pointer_to_process_pause() {
        for stop in ["STOP", "SIGTSTP", "ttin", "22"] {
            let config: Config = parse_config(&format!("(signal: \"{stop}\")")).unwrap();
            let error = ProcessKill::new(config).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Config);
            assert!(
                error.message.contains("use the process-pause fault"),
                "{stop}: {}",
                error.message
            );
        }
        let term: Config = parse_config("(signal: \"TERM\")").unwrap();
        assert!(ProcessKill::new(term).is_ok());
    }
}
