//! The engine: the single owner of the configured faults, the guards (pause switch,
//! window, budget), the journal, the active reversible faults and the seeded random
//! streams. Every request, from any trigger, is injected here, so every one passes the
//! same guards and is journaled the same way.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use nightmare_monkey_plugin_api::sdk::{ErrorKind, Outcome, Phase, PluginError, Request, Rng};

use crate::{
    domain::{
        budget::{Budget, Limits},
        injection::{Ask, Fault, InjectError, Injection, Intent},
        window::Window,
    },
    output::{
        events, log,
        metrics::{self, Refusal},
    },
    storage::{
        active::Checkpoint,
        journal::{Journal, OutcomeRecord, PreparedRecord, Record, RefusedRecord},
    },
    support::lock::lock,
};

mod ack;
mod admission;
mod guards;
mod in_effect;
mod inject;
mod revert;

use crate::domain::window::ClockTime;
use crate::support::backoff::Backoff;

use inject::Flights;
pub(crate) use revert::{run_all, run_all_unless, RevertJob, Reverts, Unfinished, REVERT_RETRY};

/// How long a plugin may take for one call (an injection, a revert) unless the
/// configuration says otherwise (`plugin_timeout`).
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A reversible fault in effect.
#[derive(Debug, Clone)]
struct Active {
    fault: String,
    state: serde_json::Value,
    /// The process it acts on, which other faults leave alone meanwhile.
    pid: Option<u32>,
    /// When it is due to be reverted.
    due: Option<DateTime<Utc>>,
}

/// What the engine is doing now (`status`, `GET /api/status`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EngineStatus {
    /// `playing`, `sleeping` (outside the window) or `paused`.
    pub state: &'static str,
    /// Why it is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Sleeping: when the window opens next (none within a year: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleeping_until: Option<ClockTime>,
    /// Whether faults are real.
    pub execute: bool,
    /// The reversible faults in effect, with when each is due to be reverted.
    pub active: Vec<ActiveFault>,
    /// Reverts under way (or waiting to try again).
    pub reverting: Vec<Unfinished>,
    /// What is left of the budget.
    pub budget: crate::domain::budget::Left,
    /// The journal file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// Whether this daemon is in a fleet (`GET /api/fleet` shows it); said only then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fleet: bool,
    /// This daemon's node: its name in its fleet, else its `--node` label, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A reversible fault in effect, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ActiveFault {
    pub id: String,
    pub fault: String,
    /// When it is due to be reverted, in the window's zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<ClockTime>,
}

/// One configured fault.
struct Slot {
    plugin: String,
    fault: Arc<dyn Fault>,
}

/// The guards every request passes.
#[derive(Debug, Default)]
pub struct Guards {
    /// When faults may happen (`None`: always).
    pub(crate) window: Option<Window>,
    /// Rate limits.
    pub(crate) limits: Limits,
    /// A file whose existence pauses the monkey.
    pub(crate) pause_file: Option<PathBuf>,
}

/// The engine.
pub struct Engine {
    master_seed: u64,
    execute: bool,
    guards: Guards,
    paused: AtomicBool,
    /// How many times every active fault was reverted at once (the kill switch, a halt,
    /// the pause file, shutdown): an injection under way when one began was not among
    /// them, and reverts what it leaves in effect itself (`Engine::stopped_since`).
    sweeps: AtomicU64,
    /// The same for the faults reverted because the fleet's lease they were admitted
    /// under ended ([`Engine::revert_outside_lease`]).
    lease_sweeps: AtomicU64,
    /// Why the monkey paused itself (a halt probe), while the switch it turned on is on.
    halted: Mutex<Option<String>>,
    closing: AtomicBool,
    budget: Mutex<Budget>,
    journal: Option<Arc<Journal>>,
    run: u64,
    next_id: AtomicU64,
    faults: BTreeMap<String, Slot>,
    streams: Mutex<HashMap<String, (Rng, u64)>>,
    active: Mutex<BTreeMap<String, Active>>,
    /// Injections whose plugin has not answered yet.
    in_flight: Flights,
    reverts: Arc<Reverts>,
    revert_retry: Backoff,
    node: Option<String>,
    plugin_timeout: Duration,
    /// The daemon's checkpoint, taken again as soon as a fault is in effect (or about
    /// to be): a second copy of what undoes it, beside the journal.
    checkpoint: std::sync::OnceLock<Arc<Mutex<Checkpoint>>>,
    /// The monkey's own processes besides itself (its plugin workers), never chosen.
    protected: fn() -> Vec<u32>,
}

/// The name a stream has on `node`: `fault/kill@node/web-1`. With one seed for a whole
/// fleet, each node then draws its own values, and each replays exactly from the seed
/// and its name. Without a node label, the plain name (single-host drills).
pub(crate) fn stream_name(name: &str, node: Option<&str>) -> String {
    match node {
        Some(node) => format!("{name}@node/{node}"),
        None => name.to_owned(),
    }
}

impl Engine {
    /// An engine with no faults. Nothing is ever executed unless `execute` is set.
    pub fn new(master_seed: u64, execute: bool, guards: Guards, journal: Option<Journal>) -> Self {
        Self {
            master_seed,
            execute,
            budget: Mutex::new(Budget::new(guards.limits)),
            guards,
            paused: AtomicBool::new(false),
            sweeps: AtomicU64::new(0),
            lease_sweeps: AtomicU64::new(0),
            halted: Mutex::new(None),
            closing: AtomicBool::new(false),
            journal: journal.map(Arc::new),
            run: Utc::now().timestamp_millis().max(0) as u64,
            next_id: AtomicU64::new(1),
            faults: BTreeMap::new(),
            streams: Mutex::new(HashMap::new()),
            active: Mutex::new(BTreeMap::new()),
            in_flight: Flights::default(),
            reverts: Arc::default(),
            revert_retry: REVERT_RETRY,
            node: None,
            plugin_timeout: PLUGIN_TIMEOUT,
            checkpoint: std::sync::OnceLock::new(),
            protected: Vec::new,
        }
    }

    /// The same engine, never choosing the processes `protected` names at the time of a
    /// fault (the plugin workers: the engine knows no ABI, so its owner says which).
    pub(crate) fn protecting(mut self, protected: fn() -> Vec<u32>) -> Self {
        self.protected = protected;
        self
    }

    /// The same engine without a window: a one-shot `kill` is now, whatever the drill's
    /// hours (the pause file and the budget still hold).
    pub(crate) fn without_window(mut self) -> Self {
        self.guards.window = None;
        self
    }

    /// Counts faults of a previous run (their times, oldest first) against the budget,
    /// so a restart, a crash loop included, does not hand out a fresh budget.
    pub(crate) fn restore_budget(&self, times: impl IntoIterator<Item = DateTime<Utc>>) {
        let mut budget = lock(&self.budget);
        for at in times {
            budget.record(at);
        }
    }

    /// How many of the latest faults the budget looks at (0: it has no limits).
    pub(crate) fn budget_keep(&self) -> usize {
        lock(&self.budget).keep()
    }

    /// The node label of the streams, if any.
    pub(crate) fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Labels every stream with this node's name (see [`stream_name`]).
    pub(crate) fn with_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    /// How long a plugin may take for one call before its caller gives up on it.
    pub(crate) fn plugin_timeout(&self) -> Duration {
        self.plugin_timeout
    }

    /// Gives every plugin call `timeout` (the configuration's `plugin_timeout`).
    pub(crate) fn with_plugin_timeout(mut self, timeout: Duration) -> Self {
        self.plugin_timeout = timeout;
        self
    }

    /// Adds a configured fault under `name`, provided by `plugin`.
    pub fn add_fault(
        &mut self,
        name: &str,
        plugin: &str,
        fault: impl Fault + 'static,
    ) -> anyhow::Result<()> {
        let slot = Slot {
            plugin: plugin.to_owned(),
            fault: Arc::new(fault),
        };
        if self.faults.insert(name.to_owned(), slot).is_some() {
            anyhow::bail!("two faults are named `{name}`: fault names must be unique");
        }
        Ok(())
    }

    /// The master seed.
    pub(crate) fn master_seed(&self) -> u64 {
        self.master_seed
    }

    /// Whether faults are really injected.
    pub(crate) fn executes(&self) -> bool {
        self.execute
    }

    /// The journal, if there is one.
    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// The journal, shared (for a thread that watches it grow).
    pub(crate) fn shared_journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }

    /// The names of the configured faults, sorted.
    pub(crate) fn fault_names(&self) -> Vec<String> {
        self.faults.keys().cloned().collect()
    }

    /// A fresh copy of the named stream, for a trigger that draws on its own (the timer).
    pub(crate) fn stream(&self, name: &str) -> Rng {
        Rng::stream(self.master_seed, &stream_name(name, self.node.as_deref()))
    }

    /// The next value of the named stream and its position in it. Streams are
    /// independent: drawing from one never shifts another.
    fn draw(&self, stream: &str) -> (u64, u64) {
        let mut streams = lock(&self.streams);
        let (rng, drawn) = streams
            .entry(stream.to_owned())
            .or_insert_with(|| (Rng::stream(self.master_seed, stream), 0));
        let position = *drawn;
        *drawn += 1;
        (rng.next_u64(), position)
    }

    /// Appends a record that announces nothing (a refusal, a recovery, a halt): not
    /// fsynced; a failure is logged, and changes nothing else.
    pub(crate) fn note(&self, record: &Record) {
        if let Err(e) = self.write(record, false) {
            log::line(format!(
                "journal: cannot write to {}: {e}",
                self.journal_path()
            ));
        }
    }

    fn write(&self, record: &Record, durable: bool) -> Result<(), String> {
        if let Some(journal) = &self.journal {
            journal.append(record, durable).map_err(|e| e.to_string())?;
        }
        events::record(record);
        Ok(())
    }

    fn journal_path(&self) -> String {
        self.journal
            .as_ref()
            .map(|j| j.path().display().to_string())
            .unwrap_or_default()
    }

    /// The configured fault `name`, for reverting what a previous run left active.
    /// Only if it is still made by `plugin`: a name given to another fault since
    /// would revert with the wrong plugin.
    pub(crate) fn fault(&self, name: &str, plugin: &str) -> Option<Arc<dyn Fault>> {
        self.faults
            .get(name)
            .filter(|s| s.plugin == plugin)
            .map(|s| s.fault.clone())
    }
}
#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
