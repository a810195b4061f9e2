//! The engine: the single owner of the configured faults and the seeded random streams.
//! Every request, from any trigger, is injected here, so every one passes the same path.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use chrono::{DateTime, Local};
use nightmare_monkey_plugin_api::sdk::{PluginError, Request, Rng};
use serde::Serialize;

use crate::plugin::Fault;

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
    /// No fault of that name is configured.
    #[error("no fault named `{0}` is configured")]
    UnknownFault(String),
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
    faults: BTreeMap<String, Fault>,
    streams: Mutex<HashMap<String, Rng>>,
}

impl Engine {
    /// An engine with no faults. Nothing is ever executed unless `execute` is set.
    pub fn new(master_seed: u64, execute: bool) -> Self {
        Self {
            master_seed,
            execute,
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
    pub fn inject(&self, name: &str, desc: &str) -> Result<Injection, InjectError> {
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
            dry_run: request.dry_run,
            master_seed: self.master_seed,
            seed,
            at,
            outcome,
        })
    }
}
