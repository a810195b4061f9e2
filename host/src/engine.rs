//! The engine: the single owner of the configured faults and the seeded random streams.
//! Every request, from any trigger, is injected here, so every one passes the same path.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use chrono::{DateTime, Local};
use nightmare_monkey_plugin_api::sdk::{PluginError, Request, Rng};
use serde::Serialize;

use crate::{plugin::Fault, window::Window};

/// The engine's record of one injection, from which log lines and answers are made.
#[derive(Debug, Clone, Serialize)]
pub struct Injection {
    /// The process's short name (empty for faults without a process).
    pub name: String,
    /// Why the fault happened.
    pub desc: String,
    /// The process's PID (0 without a process).
    pub pid: u32,
    /// Its parent's PID.
    pub ppid: u32,
    /// The configured fault that was injected.
    pub fault: String,
    /// What asked for it (`timer`, `http`, `cli`).
    pub trigger: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The master seed of the run.
    pub master_seed: u64,
    /// The seed the fault was given, drawn from its stream.
    pub seed: u64,
    /// When the fault was injected.
    pub at: DateTime<Local>,
    /// What the plugin reported.
    #[serde(flatten)]
    pub outcome: nightmare_monkey_plugin_api::sdk::Outcome,
}

/// Why an injection did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// Outside the window: the monkey sleeps. Carries when the window next opens.
    #[error("Nightmare Monkey is sleeping now")]
    Sleeping {
        /// The next opening, if any within a year.
        opens: Option<DateTime<chrono::Utc>>,
    },
    /// No fault of that name is configured.
    #[error("no fault named `{0}` is configured")]
    UnknownFault(String),
    /// The plugin did not answer in time (it goes on running on its thread).
    #[error("{fault}: no answer from the plugin within {secs} s")]
    TimedOut {
        /// The fault's name.
        fault: String,
        /// The deadline.
        secs: u64,
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

/// The engine.
pub struct Engine {
    master_seed: u64,
    execute: bool,
    window: Option<Window>,
    faults: BTreeMap<String, Fault>,
    streams: Mutex<HashMap<String, Rng>>,
}

impl Engine {
    /// An engine with no faults. Nothing is ever executed unless `execute` is set; with a
    /// window, nothing is injected outside it.
    pub fn new(master_seed: u64, execute: bool, window: Option<Window>) -> Self {
        Self {
            master_seed,
            execute,
            window,
            faults: BTreeMap::new(),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a configured fault under `name`.
    pub fn add_fault(&mut self, name: &str, fault: Fault) -> anyhow::Result<()> {
        if self.faults.insert(name.to_owned(), fault).is_some() {
            anyhow::bail!("two faults are named `{name}`: fault names must be unique");
        }
        Ok(())
    }

    /// The master seed.
    pub fn master_seed(&self) -> u64 {
        self.master_seed
    }

    /// Whether faults are really injected.
    pub fn executes(&self) -> bool {
        self.execute
    }

    /// The names of the configured faults, sorted.
    pub fn fault_names(&self) -> Vec<String> {
        self.faults.keys().cloned().collect()
    }

    /// A fresh copy of the named stream, for a trigger that draws on its own (the timer).
    pub fn stream(&self, name: &str) -> Rng {
        Rng::stream(self.master_seed, name)
    }

    /// The next value of the named stream. Streams are independent: drawing from one
    /// never shifts another, so adding a trigger or a fault leaves the rest as they were.
    pub fn draw(&self, stream: &str) -> u64 {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .entry(stream.to_owned())
            .or_insert_with(|| Rng::stream(self.master_seed, stream))
            .next_u64()
    }

    /// Injects the fault `name` once, with the next seed of its stream. Synchronous: the
    /// plugin may block, so async callers run this off their runtime.
    pub fn inject(&self, name: &str, desc: &str, trigger: &str) -> Result<Injection, InjectError> {
        if let Some(window) = &self.window {
            let now = chrono::Utc::now();
            if !window.contains(now) {
                return Err(InjectError::Sleeping {
                    opens: window.next_open(now),
                });
            }
        }
        let fault = self
            .faults
            .get(name)
            .ok_or_else(|| InjectError::UnknownFault(name.to_owned()))?;
        let seed = self.draw(&format!("fault/{name}"));
        let request = Request {
            seed,
            dry_run: !self.execute,
            desc: desc.to_owned(),
        };
        let at = Local::now();
        let outcome = fault
            .inject(&request)
            .map_err(|error| InjectError::Plugin {
                fault: name.to_owned(),
                error,
            })?;
        let process = outcome.process.clone().unwrap_or_default();
        Ok(Injection {
            name: process.name,
            desc: desc.to_owned(),
            pid: process.pid,
            ppid: process.ppid,
            fault: name.to_owned(),
            trigger: trigger.to_owned(),
            dry_run: request.dry_run,
            master_seed: self.master_seed,
            seed,
            at,
            outcome,
        })
    }
}
