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
        active::Checkpoint,
        budget::{Budget, Limits},
        injection::{Ask, Fault, InjectError, Injection, Intent},
        journal::{Journal, OutcomeRecord, PreparedRecord, Record, RefusedRecord},
        window::Window,
    },
    output::{
        events, log,
        metrics::{self, Refusal},
    },
    support::lock::lock,
};

mod ack;
mod revert;
use crate::support::backoff::Backoff;
pub(crate) use ack::{AckError, Acknowledged};
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
    pub sleeping_until: Option<String>,
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
}

/// A reversible fault in effect, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ActiveFault {
    pub id: String,
    pub fault: String,
    /// When it is due to be reverted, in the window's zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
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

    /// Why the monkey is paused, if it is.
    pub(crate) fn paused(&self) -> Option<String> {
        if self.closing.load(Ordering::SeqCst) {
            return Some("it is going to bed".to_owned());
        }
        if self.paused.load(Ordering::SeqCst) {
            if let Some(why) = lock(&self.halted).as_ref() {
                return Some(format!("halt: {why}; POST /api/resume to resume"));
            }
            return Some("POST /api/resume to resume".to_owned());
        }
        match &self.guards.pause_file {
            Some(file) if file.exists() => Some(format!(
                "the pause file {} exists; remove it to resume",
                file.display()
            )),
            _ => None,
        }
    }

    /// Whether `at` is inside the window (always, without one).
    pub(crate) fn in_window(&self, at: DateTime<Utc>) -> bool {
        self.guards.window.as_ref().is_none_or(|w| w.contains(at))
    }

    /// The window's zone (the host's without a window): pictures are drawn in it.
    pub(crate) fn zone(&self) -> crate::domain::window::Zone {
        self.guards
            .window
            .as_ref()
            .map_or(crate::domain::window::Zone::Local, |w| w.zone.clone())
    }

    /// An instant as the window's zone shows it (the host's without a window).
    pub(crate) fn clock(&self, at: DateTime<Utc>) -> String {
        use chrono::Timelike as _;
        // Whole seconds: a clock time for people.
        let at = at.with_nanosecond(0).unwrap_or(at);
        match &self.guards.window {
            Some(window) => window.zone.rfc3339(at),
            None => at.with_timezone(&chrono::Local).to_rfc3339(),
        }
    }

    /// What it is doing at `now`.
    pub(crate) fn status(&self, now: DateTime<Utc>) -> EngineStatus {
        let paused = self.paused();
        let sleeping = match (&paused, &self.guards.window) {
            (None, Some(window)) if !window.contains(now) => Some(window.next_open(now)),
            _ => None,
        };
        EngineStatus {
            state: match (&paused, &sleeping) {
                (Some(_), _) => "paused",
                (None, Some(_)) => "sleeping",
                (None, None) => "playing",
            },
            sleeping_until: sleeping.flatten().map(|t| self.clock(t)),
            paused,
            execute: self.execute,
            active: lock(&self.active)
                .iter()
                .map(|(id, a)| ActiveFault {
                    id: id.clone(),
                    fault: a.fault.clone(),
                    due: a.due.map(|t| self.clock(t)),
                })
                .collect(),
            reverting: self.reverting(),
            budget: lock(&self.budget).left(now),
            journal: self.journal.as_ref().map(|j| j.path().to_owned()),
        }
    }

    /// The pause file, while it exists (it holds the monkey paused whatever the API's
    /// switch says).
    pub(crate) fn pause_file_holds(&self) -> bool {
        self.guards.pause_file.as_ref().is_some_and(|f| f.exists())
    }

    /// Turns the API's pause switch on or off, at once: from now on every request is
    /// refused, and an injection under way that leaves a fault active reverts it as soon
    /// as its plugin answers. The faults already active are the caller's to revert
    /// ([`Engine::revert_all`]), as long as it cares to wait.
    pub(crate) fn set_paused(&self, on: bool) {
        if !on {
            *lock(&self.halted) = None;
        }
        self.paused.store(on, Ordering::SeqCst);
    }

    /// Why the monkey halted itself, while it is halted.
    pub(crate) fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// Pauses as the switch does, saying why (`<probe>: <reason>`): a halt probe failed
    /// for too long. `resume` turns it off like any pause.
    pub(crate) fn set_halted(&self, why: String) {
        *lock(&self.halted) = Some(why);
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Whether fault `fault` would be let through the guards at `now` (the switch, the
    /// window, the budget), without taking anything: steady-state probes are run only
    /// for a fault that would be injected.
    pub(crate) fn admits(&self, fault: &str, now: DateTime<Utc>) -> bool {
        self.paused().is_none()
            && self.in_window(now)
            && self
                .faults
                .get(fault)
                .is_some_and(|s| s.fault.loading().is_none())
            && lock(&self.budget).check(now).is_ok()
    }

    /// Refuses `ask` because its steady state was not met: journaled as `refused` with an
    /// id from the intents' counter, counted; no intent, no budget, no draw.
    pub(crate) fn refuse_unsteady(&self, ask: &Ask, probe: String, reason: String) -> InjectError {
        metrics::get().refused(Refusal::SteadyState);
        let error = InjectError::SteadyState { probe, reason };
        let record = RefusedRecord {
            id: format!(
                "{}-{}",
                self.run,
                self.next_id.fetch_add(1, Ordering::SeqCst)
            ),
            at: Utc::now(),
            fault: ask.fault.clone(),
            trigger: ask.trigger.to_owned(),
            desc: ask.desc.clone(),
            reason: error.to_string(),
        };
        self.note(&Record::Refused(record));
        error
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

    /// The monkey goes to bed: every request is refused from now on, and an injection
    /// under way reverts what it leaves active as soon as its plugin answers.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.reverts.close();
    }

    /// The reverts whose plugin has not answered yet, as (id, fault): what may still be
    /// in effect though no longer listed as active.
    pub(crate) fn reverting(&self) -> Vec<Unfinished> {
        self.reverts.list()
    }

    /// Waits until no injection is in flight and no revert under way, at most `wait`;
    /// the reverts still under way. The injections first: one that ends while the monkey
    /// goes to bed reverts what it left active at once, and that revert is waited for.
    pub(crate) fn settle(&self, wait: Duration) -> Vec<Unfinished> {
        let started = Instant::now();
        self.in_flight.settle(wait);
        self.reverts.settle(wait.saturating_sub(started.elapsed()))
    }

    /// Waits shorter between the tries of a failed revert (tests).
    #[cfg(test)]
    pub(crate) fn with_revert_retry(mut self, retry: Backoff) -> Self {
        self.revert_retry = retry;
        self
    }

    /// The injections whose plugin has not answered yet, as (id, fault).
    pub(crate) fn in_flight(&self) -> Vec<(String, String)> {
        lock(&self.in_flight.all)
            .iter()
            .map(|(id, fault)| (id.clone(), fault.clone()))
            .collect()
    }

    /// Whether the API's kill switch is on (the pause file aside).
    pub(crate) fn switched_off(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The pause file, if one is configured.
    pub(crate) fn pause_file(&self) -> Option<&PathBuf> {
        self.guards.pause_file.as_ref()
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

    /// Injects a fault once, if every guard lets it, journaling it before and after.
    /// Synchronous: the plugin may block, so async callers run this off their runtime.
    pub fn inject(&self, ask: &Ask) -> Result<Injection, InjectError> {
        if let Some(why) = self.paused() {
            metrics::get().refused(Refusal::Paused);
            return Err(InjectError::Paused(why));
        }
        let now = Utc::now();
        if let Some(window) = &self.guards.window {
            if !window.contains(now) {
                metrics::get().refused(Refusal::Window);
                return Err(InjectError::Sleeping {
                    opens: window.next_open(now),
                });
            }
        }
        let slot = self
            .faults
            .get(&ask.fault)
            .ok_or_else(|| InjectError::UnknownFault(ask.fault.clone()))?;
        if let Some(plugin) = slot.fault.loading() {
            metrics::get().refused(Refusal::Loading);
            return Err(InjectError::Loading {
                fault: ask.fault.clone(),
                plugin: plugin.to_owned(),
            });
        }
        {
            let mut budget = lock(&self.budget);
            if let Err((retry_after, why)) = budget.check(now) {
                metrics::get().refused(Refusal::Budget);
                return Err(InjectError::OverBudget { retry_after, why });
            }
            budget.record(now);
        }
        let stream = stream_name(&format!("fault/{}", ask.fault), self.node.as_deref());
        let (seed, stream_position) = self.draw(&stream);
        let id = format!(
            "{}-{}",
            self.run,
            self.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let dry_run = !self.execute;
        let intent = Intent {
            id,
            at: now,
            fault: ask.fault.clone(),
            plugin: slot.plugin.clone(),
            trigger: ask.trigger.to_owned(),
            requested_by: ask.requested_by.clone(),
            desc: ask.desc.clone(),
            dry_run,
            master_seed: self.master_seed,
            stream,
            stream_position,
            seed,
        };
        // A real fault is announced on disk before it happens; a dry run changes
        // nothing, so it need not wait for the disk.
        if let Err(error) = self.write(&Record::Intent(intent.clone()), !dry_run) {
            metrics::get().refused(Refusal::Journal);
            self.forget(now);
            return Err(InjectError::Journal {
                path: self.journal_path(),
                error,
            });
        }

        // Processes under a fault of their own, and the plugin workers (the monkey's
        // own processes, as it is): never chosen.
        // The processes of faults in effect, and of those whose revert is under way.
        let mut avoid: Vec<u32> = lock(&self.active).values().filter_map(|a| a.pid).collect();
        avoid.extend(self.reverts.pids());
        avoid.extend((self.protected)());
        let request = Request {
            seed,
            dry_run,
            desc: ask.desc.clone(),
            avoid,
            ..Request::default()
        };
        let started = Instant::now();
        // Listed as in flight until its outcome is settled (recorded, and listed as
        // active or reverted), so that going to bed always finds it in one list or the
        // other.
        let _in_flight = InFlight::enter(&self.in_flight, &intent.id, &ask.fault);
        let answer = if !dry_run && slot.fault.prepares() {
            match self.two_phases(slot, &intent, request) {
                Ok(answer) => answer,
                Err(error) => {
                    self.forget(now);
                    return Err(error);
                }
            }
        } else {
            slot.fault.inject(&request).map_err(|e| (e, None))
        };
        let done = Utc::now();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err((error, undo)) => {
                let mut record =
                    OutcomeRecord::failed(&intent.id, done, elapsed_ms, error.to_string());
                self.forget(now);
                metrics::get().fault(&ask.fault, ask.trigger, "failed");
                match undo {
                    // A failure that changed nothing: logged, and the answer is the failure.
                    None => {
                        let _ = self.record_outcome(&record, false);
                    }
                    // An apply that may have acted before it failed: undone from its
                    // prepared state, and active in the journal until it is.
                    Some(state) => {
                        record.revert = Some(state.clone());
                        let _ = self.record_outcome(&record, true);
                        self.activate(&intent.id, &ask.fault, state, None, None);
                        if let Some(job) = self.take(&intent.id, "apply-failed") {
                            run_all(vec![job], self.plugin_timeout);
                        }
                    }
                }
                return Err(InjectError::Plugin {
                    fault: ask.fault.clone(),
                    error,
                });
            }
        };
        // Revert state without a time to revert is a plugin's contract error: the fault
        // is in effect and nothing would ever undo it (not when due, not on pause, not at
        // shutdown). It is journaled as active and undone at once, and the injection
        // fails, naming the error.
        let undated = outcome.revert.is_some() && outcome.revert_after_ms.is_none() && !dry_run;
        let revert_due = match (&outcome.revert, outcome.revert_after_ms) {
            (Some(state), after) if !dry_run => {
                let pid = outcome.process.as_ref().map(|p| p.pid);
                let due = done + chrono::TimeDelta::milliseconds(after.unwrap_or(0) as i64);
                self.activate(&intent.id, &ask.fault, state.clone(), pid, Some(due));
                Some(due)
            }
            _ => None,
        };
        let injection = Injection {
            intent,
            outcome,
            elapsed_ms,
            done,
            revert_due,
        };
        // An active fault's record is what a restart reverts from: it must be on disk. If
        // it cannot be, the fault is undone now rather than left where nobody could find
        // it after a crash.
        let recorded = self.record_outcome(&OutcomeRecord::of(&injection), revert_due.is_some());
        metrics::get().fault(&ask.fault, ask.trigger, &injection.outcome.result);
        // A one-phase fault in effect: its second copy now (a prepared one has it).
        if recorded.is_ok() && revert_due.is_some() && !slot.fault.prepares() {
            self.checkpoint_now();
        }
        if undated && recorded.is_ok() {
            let reverted = match self.take(&injection.intent.id, "contract") {
                Some(job) => run_all(vec![job], self.plugin_timeout).is_empty(),
                None => true,
            };
            return Err(InjectError::Plugin {
                fault: ask.fault.clone(),
                error: PluginError::new(
                    ErrorKind::Failed,
                    format!(
                        "its outcome carries revert state but no revert_after_ms (a plugin contract error: nothing would ever undo it); {}",
                        if reverted {
                            "it was reverted at once"
                        } else {
                            "its revert is under way, and tried again until it works"
                        }
                    ),
                ),
            });
        }
        if let (Err(error), Some(_)) = (recorded, revert_due) {
            let reverted = match self.take(&injection.intent.id, "journal") {
                Some(job) => run_all(vec![job], self.plugin_timeout).is_empty(),
                None => true,
            };
            return Err(InjectError::Unrecorded {
                fault: ask.fault.clone(),
                path: self.journal_path(),
                error,
                reverted,
            });
        }
        // Paused (or going to bed) while the plugin worked: the kill switch did not see
        // this fault among the active ones, so it is undone now, on a thread of its own.
        if revert_due.is_some() && self.paused().is_some() {
            let reason = if self.closing.load(Ordering::SeqCst) {
                "shutdown"
            } else {
                "pause"
            };
            if let Some(job) = self.take(&injection.intent.id, reason) {
                run_all(vec![job], Duration::ZERO);
            }
        }
        Ok(injection)
    }

    /// Keeps `checkpoint` up to date whenever a fault comes into effect.
    pub(crate) fn keep_checkpoint(&self, checkpoint: Arc<Mutex<Checkpoint>>) {
        let _ = self.checkpoint.set(checkpoint);
    }

    /// Takes the checkpoint now: what undoes a fault just journaled is then in two files,
    /// so a journal emptied, cut short or replaced afterwards still leaves it (the next
    /// start reverts from the checkpoint).
    fn checkpoint_now(&self) {
        let (Some(checkpoint), Some(journal)) = (self.checkpoint.get(), &self.journal) else {
            return;
        };
        if let Err(e) = lock(checkpoint).take(journal) {
            log::line(format!(
                "journal: cannot take a checkpoint of {} ({e}): the fault is undone from the journal alone after a crash",
                journal.path().display()
            ));
        }
    }

    /// Lists fault `id` as active: in effect until reverted.
    fn activate(
        &self,
        id: &str,
        fault: &str,
        state: serde_json::Value,
        pid: Option<u32>,
        due: Option<DateTime<Utc>>,
    ) {
        let mut active = lock(&self.active);
        active.insert(
            id.to_owned(),
            Active {
                fault: fault.to_owned(),
                state,
                pid,
                due,
            },
        );
        self.reverts.set_active(active.len());
    }

    /// A two-phase injection (see [`nightmare_monkey_plugin_api::sdk::Phase`]): the plugin
    /// chooses the target and changes nothing, the target's revert state goes to disk,
    /// and only then is the fault applied. Whenever the daemon stops from then on, the
    /// journal holds what undoes it. The plugin's answer (with, for an apply that failed
    /// in a way that may have acted first, the state to undo it from), or why nothing
    /// was applied.
    fn two_phases(
        &self,
        slot: &Slot,
        intent: &Intent,
        request: Request,
    ) -> Result<Result<Outcome, (PluginError, Option<serde_json::Value>)>, InjectError> {
        let prepared = match slot.fault.inject(&Request {
            phase: Phase::Prepare,
            ..request.clone()
        }) {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err((e, None))),
        };
        // No revert state: the plugin settled it (nothing to act on).
        let Some(state) = prepared.revert.clone() else {
            return Ok(Ok(prepared));
        };
        let record = PreparedRecord {
            id: intent.id.clone(),
            at: Utc::now(),
            revert: state.clone(),
            process: prepared.process.clone(),
            summary: prepared.summary.clone(),
        };
        if let Err(error) = self.write(&Record::Prepared(record), true) {
            metrics::get().refused(Refusal::Journal);
            let failed = OutcomeRecord::failed(&intent.id, Utc::now(), 0, error.clone());
            let _ = self.record_outcome(&failed, false);
            return Err(InjectError::Journal {
                path: self.journal_path(),
                error,
            });
        }
        self.checkpoint_now();
        let applied = slot.fault.inject(&Request {
            phase: Phase::Apply,
            prepared: Some(state.clone()),
            ..request
        });
        Ok(applied.map_err(|e| {
            // A plugin that refused said it changed nothing; one that crashed, panicked,
            // failed otherwise or did not answer may have acted first.
            let refused = matches!(
                e.kind,
                ErrorKind::Config | ErrorKind::NoTarget | ErrorKind::Denied
            );
            (e, (!refused).then_some(state))
        }))
    }

    /// Gives back the budget place of a fault that did not happen.
    fn forget(&self, at: DateTime<Utc>) {
        lock(&self.budget).forget(at);
    }

    fn record_outcome(&self, record: &OutcomeRecord, durable: bool) -> Result<(), String> {
        self.write(&Record::Outcome(record.clone()), durable)
            .inspect_err(|e| {
                log::line(format!(
                    "journal: cannot record the outcome of {} in {}: {e}",
                    record.id,
                    self.journal_path()
                ));
            })
    }

    /// The revert of the active fault `id`, taken off the active ones (once: `None` if
    /// it is not active any more).
    pub(crate) fn take(&self, id: &str, reason: &str) -> Option<RevertJob> {
        // Listed as reverting before it leaves the active ones: never in neither list.
        let mut all = lock(&self.active);
        let active = all.remove(id)?;
        self.reverts.set_active(all.len());
        let slot = self.faults.get(&active.fault)?;
        let job = self.revert_job(slot.fault.clone(), id, &active.fault, active.state, reason);
        Some(job.acting_on(active.pid))
    }

    /// Reverts the active fault `id` now (journaled with the reason `asked`), on a thread
    /// of its own, waiting at most `wait`: which fault it was, and whether its revert was still under way
    /// then. `None` if it is not active (never was, or already reverted or reverting).
    pub(crate) fn revert_now(&self, id: &str, wait: Duration) -> Option<(String, bool)> {
        let job = self.take(id, "asked")?;
        let fault = job.fault_name.clone();
        let under_way = !run_all(vec![job], wait).is_empty();
        Some((fault, under_way))
    }

    /// Whether fault `id` is active (in effect, its revert not begun).
    pub(crate) fn is_active(&self, id: &str) -> bool {
        lock(&self.active).contains_key(id)
    }

    /// The active faults, as (id, fault).
    pub(crate) fn active(&self) -> Vec<Unfinished> {
        lock(&self.active)
            .iter()
            .map(|(id, a)| Unfinished {
                id: id.clone(),
                fault: a.fault.clone(),
            })
            .collect()
    }

    /// Reverts the active fault `id` here and now (once: `None` if it is not active any
    /// more).
    #[cfg(test)]
    pub(crate) fn revert(
        &self,
        id: &str,
        reason: &str,
    ) -> Option<nightmare_monkey_plugin_api::sdk::Outcome> {
        self.take(id, reason).map(RevertJob::run)
    }

    /// The revert of fault `id` (of the configured fault `fault_name`) with `fault`,
    /// whose revert state is `state`: for active faults and for those a crash left
    /// behind.
    pub(crate) fn revert_job(
        &self,
        fault: Arc<dyn Fault>,
        id: &str,
        fault_name: &str,
        state: serde_json::Value,
        reason: &str,
    ) -> RevertJob {
        RevertJob {
            id: id.to_owned(),
            fault_name: fault_name.to_owned(),
            fault,
            state,
            reason: reason.to_owned(),
            journal: self.journal.clone(),
            reverts: self.reverts.clone(),
            retry: self.revert_retry,
            pid: None,
            may_wait: true,
            unlist: true,
        }
        .listed()
    }

    /// Reverts every active fault (on shutdown and on pause), each on a thread of its
    /// own, waiting at most `wait`; returns those whose plugin had not answered by then.
    pub(crate) fn revert_all(&self, reason: &str, wait: Duration) -> Vec<Unfinished> {
        let ids: Vec<String> = lock(&self.active).keys().cloned().collect();
        let jobs = ids.iter().filter_map(|id| self.take(id, reason)).collect();
        run_all(jobs, wait)
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

/// The injections whose plugin has not answered yet (id and fault); `ended` is told
/// each time one ends, for whoever waits for them all (going to bed).
#[derive(Default)]
struct Flights {
    all: Mutex<BTreeMap<String, String>>,
    ended: Condvar,
    /// Whoever waits on `ended` (only they are told: a wake-up is a system call).
    waiting: AtomicUsize,
}

impl Flights {
    /// Waits until none is in flight, at most `wait`.
    fn settle(&self, wait: Duration) {
        let all = lock(&self.all);
        // Counted under the lock that the end of a flight takes: no end is missed.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = self
            .ended
            .wait_timeout_while(all, wait, |all| !all.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An injection listed as in flight for as long as this lives (a panic included).
struct InFlight<'a> {
    flights: &'a Flights,
    id: String,
}

impl<'a> InFlight<'a> {
    fn enter(flights: &'a Flights, id: &str, fault: &str) -> Self {
        lock(&flights.all).insert(id.to_owned(), fault.to_owned());
        Self {
            flights,
            id: id.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut all = lock(&self.flights.all);
        all.remove(&self.id);
        let waited_for = self.flights.waiting.load(Ordering::SeqCst) > 0;
        drop(all);
        if waited_for {
            self.flights.ended.notify_all();
        }
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
