//! The one door between the triggers and the engine. A trigger hands an `Ask` to the
//! `Injector` and gets an `Injection` or an `InjectError` back; the injector runs the
//! engine off the async runtime with a deadline, logs the original's lines, tells the
//! notifiers and schedules the revert of a reversible fault. It also owns the kill
//! switch and the one rendering of a refusal for clients (`Refusal`), so the timer, the
//! API and the pollers admit and refuse alike.
//!
//! Below it: the engine (guards, journal, plugins) and the outputs. Above it: the
//! triggers, which import nothing else of the daemon.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};

mod control;
mod fleet;
mod once;
mod recovery;
mod refusal;

pub(crate) use refusal::failure_line;

use crate::{
    domain::injection::{Ask, InjectError, Injection, Waited},
    engine::{run_all, Engine, Unfinished},
    output::{events, log, metrics, notifier::Notifiers},
    probe::{first_failure, Probe, Recovery},
    storage::journal::{HaltedRecord, NotRecoveredRecord, Record, RecoveredRecord},
    support::{lock::lock, thread::on_own_thread},
};

/// What is checked around one fault: its steady state before, its recovery after.
#[derive(Debug, Clone, Default)]
pub struct FaultProbes {
    /// Probes that must pass just before the fault is injected.
    pub steady_state: Vec<Probe>,
    /// Probes polled after it until they pass.
    pub recovery: Option<Recovery>,
    /// Held from a steady state's check to the outcome of the injection it admitted:
    /// one injection of the fault at a time, so that the check sees what the one before
    /// did (three kills at once guarded by "at least 3 workers" killed two).
    pub one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

/// A recovery is polled after its deadline for this many deadlines in all, for a late
/// `recovered`; then given up on.
pub const RECOVERY_LOOKS_AFTER: u32 = 10;

/// How many injections run at once; more wait their turn (the wait counts against the
/// plugin timeout). Reverts and the kill switch never wait for these: each runs on a
/// thread of its own.
pub const MAX_INJECTIONS_AT_ONCE: usize = 4;

/// How long the kill switch waits for the reverts it starts before it answers: enough
/// for a plugin that answers at once (a SIGCONT) to be reported as reverted, short
/// enough that the switch answers within a tenth of a second whatever plugins do.
pub const SWITCH_WAIT: Duration = Duration::from_millis(50);

/// What the kill switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// Why the monkey is still paused, if it is (the pause file outlives `resume`).
    pub paused: Option<String>,
    /// Active faults whose revert had not answered when the switch answered: they are
    /// being reverted in the background.
    pub reverting: Vec<Unfinished>,
}

/// What the triggers share: the engine, and who hears of each fault.
#[derive(Clone)]
pub struct Injector {
    engine: Arc<Engine>,
    notifiers: Notifiers,
    deadline: Duration,
    /// One permit per injection at once ([`MAX_INJECTIONS_AT_ONCE`]).
    slots: Arc<tokio::sync::Semaphore>,
    /// The timer's next fault: when, and which.
    next: Arc<Mutex<Option<Next>>>,
    /// Each fault's probes, by name (faults without any are absent).
    probes: Arc<BTreeMap<String, FaultProbes>>,
    /// Whether a fault's lines and a failure's line are logged here (not for a command
    /// that prints its answer itself: see [`Injector::answering_itself`]).
    logs_faults: bool,
}

/// A fault that happened, with what was made of it on the thread that ran it: its log
/// lines (`None`: not logged here, or below the level set) and what the trigger asked
/// for ([`Injector::inject_then`]).
struct Done<T> {
    injection: Injection,
    lines: Option<String>,
    made: T,
}

/// A fault's call on its blocking thread.
type Call<T> = tokio::task::JoinHandle<Result<Done<T>, InjectError>>;

/// A call under way, owed its follow-up (log lines, notifiers, the revert when due)
/// whoever stops waiting for it. Dropped with the call still in flight (the request's
/// future dropped: its client hung up), it hands the call to a task of its own.
struct InFlight<'a, T: Send + 'static> {
    call: Option<Call<T>>,
    door: &'a Injector,
    trigger: &'static str,
    fault: &'a str,
}

impl<T: Send + 'static> InFlight<'_, T> {
    /// The call's end; the call is no longer owed anything here.
    async fn joined(&mut self) -> Result<Done<T>, InjectError> {
        let Some(call) = self.call.as_mut() else {
            return Err(self.crashed("its call was already taken".to_owned()));
        };
        let joined = call.await;
        self.call = None;
        joined.unwrap_or_else(|join| Err(self.crashed(join.to_string())))
    }

    fn crashed(&self, reason: String) -> InjectError {
        InjectError::Crashed {
            fault: self.fault.to_owned(),
            reason,
        }
    }
}

impl<T: Send + 'static> Drop for InFlight<'_, T> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.door
                .followed_up_without_its_caller(call, self.trigger, self.fault.to_owned());
        }
    }
}

/// When the timer fires next, which fault, and whether that instant is in the window
/// (decided once, by the schedule's `Timer::next`).
type Next = (DateTime<Utc>, String, bool);

/// What the monkey is doing (`status`, `GET /api/status`): the engine's state, and the
/// timer's next fault.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    #[serde(flatten)]
    engine: crate::engine::EngineStatus,
    /// The timer's next fault, if the timer runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<NextFault>,
}

/// The timer's next fault.
#[derive(Debug, Clone, serde::Serialize)]
struct NextFault {
    /// When, in the window's zone.
    at: String,
    /// In how many seconds.
    in_s: u64,
    /// Which fault.
    fault: String,
    /// Whether that instant is inside the window: outside it the timer wakes, sleeps
    /// (no fault) and draws its next wait.
    in_window: bool,
}

impl Injector {
    /// The door to `engine`; `notifiers` hear of every fault that happened.
    pub fn new(engine: Arc<Engine>, notifiers: Notifiers) -> Self {
        Self {
            deadline: engine.plugin_timeout(),
            engine,
            notifiers,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_INJECTIONS_AT_ONCE)),
            next: Arc::default(),
            probes: Arc::default(),
            logs_faults: true,
        }
    }

    /// The same door, checking each fault's steady state and recovery with `probes`.
    pub fn with_probes(mut self, probes: BTreeMap<String, FaultProbes>) -> Self {
        self.probes = Arc::new(probes);
        self
    }

    /// The timer's next fault is `fault` at `at` (none: the timer stopped).
    pub fn set_next(&self, next: Option<Next>) {
        let said = next.as_ref().map(
            |(at, fault, _)| serde_json::json!({ "at": self.engine.zone().clock(*at), "fault": fault }),
        );
        *lock(&self.next) = next;
        events::publish("next", said.unwrap_or_default());
    }

    /// Why the monkey is paused, if it is.
    pub fn paused(&self) -> Option<String> {
        self.engine.paused().map(|p| p.to_string())
    }

    /// An instant as the window's zone shows it (the host's without a window).
    pub fn clock(&self, at: DateTime<Utc>) -> String {
        self.engine.zone().clock(at)
    }

    /// The window's zone, for pictures.
    pub fn zone(&self) -> crate::domain::window::Zone {
        self.engine.zone()
    }

    /// What the monkey is doing now.
    pub fn status(&self) -> Status {
        let now = Utc::now();
        Status {
            engine: self.engine.status(now),
            next: lock(&self.next)
                .as_ref()
                .map(|(at, fault, in_window)| NextFault {
                    at: self.engine.zone().clock(*at),
                    in_s: (*at - now).num_seconds().max(0) as u64,
                    fault: fault.clone(),
                    in_window: *in_window,
                }),
        }
    }

    /// The same door with another deadline for a plugin's answer.
    #[cfg(test)]
    fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Injects through the engine off the async runtime, with a deadline, logs the
    /// original's lines for it, tells the notifiers and schedules the revert of a
    /// reversible fault. Every trigger comes through here.
    pub async fn inject(&self, ask: Ask) -> Result<Injection, InjectError> {
        self.inject_then(ask, |_| ())
            .await
            .map(|(injection, ())| injection)
    }

    /// [`Injector::inject`], with `then` run on the fault's blocking thread as soon as
    /// the fault happened, as its log lines are rendered there: work taken off the one
    /// async thread every request shares (the API renders its answer so).
    pub async fn inject_then<T: Send + 'static>(
        &self,
        ask: Ask,
        then: impl FnOnce(&Injection) -> T + Send + 'static,
    ) -> Result<(Injection, T), InjectError> {
        let name = ask.fault.clone();
        let trigger = ask.trigger;
        let mut deadline = tokio::time::Instant::now() + self.deadline;
        let timed_out = |waited| InjectError::TimedOut {
            fault: name.clone(),
            after: self.deadline,
            waited,
        };
        // A fault with a steady state: its turn first (the one before it has its
        // outcome), then a place, then the check; all of it within the deadline.
        let turn = match self.probes.get(&ask.fault) {
            Some(p) if !p.steady_state.is_empty() => {
                match tokio::time::timeout_at(deadline, p.one_at_a_time.clone().lock_owned()).await
                {
                    Ok(turn) => Ok(Some(turn)),
                    Err(_) => Err(timed_out(Waited::Turn)),
                }
            }
            _ => Ok(None),
        };
        // A place among the injections at once is waited for, within the deadline, here:
        // a request that never got one never runs, however long the plugins hang.
        let slot = match turn {
            Err(e) => Err(e),
            Ok(turn) => {
                match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
                    Err(_) => Err(timed_out(Waited::Place)),
                    Ok(Err(closed)) => Err(InjectError::Crashed {
                        fault: name.clone(),
                        reason: closed.to_string(),
                    }),
                    Ok(Ok(slot)) => Ok((slot, turn)),
                }
            }
        };
        // The check, last: a check that outlasts the deadline is dropped (a probe's
        // command ends with it), nothing journaled, no plugin called.
        let slot = match slot {
            Err(e) => Err(e),
            Ok(held) => match tokio::time::timeout_at(deadline, self.steady_state(&ask)).await {
                Ok(Some(refused)) => return Err(refused),
                Ok(None) => Ok(held),
                Err(_) => Err(timed_out(Waited::SteadyState)),
            },
        };
        let result = match slot {
            Err(e) => Err(e),
            Ok((slot, turn)) => {
                // The plugin gets the whole deadline, whatever the probes took.
                deadline = deadline.max(tokio::time::Instant::now() + self.deadline);
                let worker = self.engine.clone();
                let logs = self.logs_faults;
                let due = deadline.into_std();
                let call = tokio::task::spawn_blocking(move || {
                    let (_slot, _turn) = (slot, turn);
                    // Its worker is judged overdue by the instant this answers 504 at.
                    let _due = crate::plugin::worker::injections_due_by(due);
                    worker.inject(&ask).map(|injection| {
                        let lines = logs.then(|| log::injection_text(&injection)).flatten();
                        let made = then(&injection);
                        Done {
                            injection,
                            lines,
                            made,
                        }
                    })
                });
                // Owed its follow-up from here on, whoever stops waiting for it.
                let mut flight = InFlight {
                    call: Some(call),
                    door: self,
                    trigger,
                    fault: &name,
                };
                let joined = tokio::select! {
                    joined = flight.joined() => Some(joined),
                    _ = tokio::time::sleep_until(deadline) => None,
                };
                match (joined, flight.call.take()) {
                    (Some(joined), _) => joined,
                    (None, call) => {
                        if let Some(call) = call {
                            self.answer_late(call, trigger, name.clone());
                        }
                        Err(timed_out(Waited::Plugin))
                    }
                }
            }
        };
        match result {
            Ok(done) => {
                self.follow_up(&done.injection, done.lines.as_deref());
                Ok((done.injection, done.made))
            }
            Err(e) => {
                if let Some(line) = failure_line(trigger, &e).filter(|_| self.logs_faults) {
                    log::line(line);
                }
                Err(e)
            }
        }
    }

    /// A fault whose caller went away while it was under way (a client that hung up:
    /// hyper drops the request's future) still happens: it is logged, told and, if
    /// reversible, reverted when due like any other, or its failure logged.
    fn followed_up_without_its_caller<T: Send + 'static>(
        &self,
        call: Call<T>,
        trigger: &'static str,
        fault: String,
    ) {
        let closing = matches!(
            self.engine.paused(),
            Some(crate::domain::injection::Pause::ShuttingDown)
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current()
            .map_err(drop)
            .and_then(|r| if closing { Err(()) } else { Ok(r) })
        else {
            // The daemon is going away (the request dropped with its connection): the
            // engine journals what happens, and the shutdown reverts what is active and
            // names what it abandons.
            return;
        };
        if self.logs_faults {
            log::line(format!(
                "{trigger}: {fault}: its caller went away before the answer; the fault goes on and is followed up as any other"
            ));
        }
        let door = self.clone();
        runtime.spawn(async move {
            match call.await {
                Ok(Ok(done)) => door.follow_up(&done.injection, done.lines.as_deref()),
                Ok(Err(e)) => {
                    if let Some(line) = failure_line(trigger, &e).filter(|_| door.logs_faults) {
                        log::line(line);
                    }
                }
                // A panic on the blocking thread: the engine journaled what it could.
                Err(_) => {}
            }
        });
    }

    /// A plugin that answers after its caller gave up still did what it did: it is
    /// logged, told and, if reversible, reverted when due like any other.
    fn answer_late<T: Send + 'static>(&self, call: Call<T>, trigger: &'static str, fault: String) {
        let door = self.clone();
        tokio::spawn(async move {
            if let Ok(Ok(done)) = call.await {
                log::line(format!(
                    "{trigger}: {fault}: the plugin answered after its deadline ({} ms): the fault happened",
                    done.injection.elapsed_ms
                ));
                door.follow_up(&done.injection, done.lines.as_deref());
            }
        });
    }

    /// The steady state of the fault `ask` names, checked just before it would be
    /// injected (only if the guards would let it through: a paused or sleeping monkey
    /// probes nothing). The refusal, journaled, if a probe fails. Dry runs check it too:
    /// a rehearsal shows what the drill would refuse.
    async fn steady_state(&self, ask: &Ask) -> Option<InjectError> {
        let probes = &self.probes.get(&ask.fault)?.steady_state;
        if probes.is_empty() || !self.engine.admits(&ask.fault, Utc::now()) {
            return None;
        }
        let (probe, reason) = first_failure(probes).await?;
        let engine = self.engine.clone();
        let asked = ask.clone();
        let refused = on_own_thread("journal", move || {
            engine.refuse_unsteady(&asked, probe, reason)
        })
        .await;
        Some(refused.unwrap_or_else(|| InjectError::Crashed {
            fault: ask.fault.clone(),
            reason: "the refusal could not be journaled".to_owned(),
        }))
    }

    /// What follows a fault that happened: the original's log lines (`lines`, rendered
    /// where the fault ran), the notifiers, the revert of a reversible one when due, and
    /// its recovery's watch.
    fn follow_up(&self, injection: &Injection, lines: Option<&str>) {
        if let Some(lines) = lines {
            log::raw(lines);
        }
        self.notifiers.tell(injection);
        if let Some(due) = injection.revert_due {
            self.schedule_revert(injection.intent.id.clone(), due);
        }
        // A dry run changed nothing: there is nothing to recover from.
        if !injection.intent.dry_run {
            if let Some(recovery) = self
                .probes
                .get(&injection.intent.fault)
                .and_then(|p| p.recovery.clone())
            {
                self.watch_recovery(injection, recovery);
            }
        }
    }

    /// Reverts fault `id` at `due` on a thread of its own, unless something (shutdown,
    /// pause) reverted it first.
    fn schedule_revert(&self, id: String, due: DateTime<Utc>) {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if let Some(job) = engine.take(&id, "due") {
                // Started, not waited for: it logs and journals itself when it ends.
                run_all(vec![job], Duration::ZERO);
            }
        });
    }

    /// The journal file, for a look back (`GET /api/history`); `None` without one.
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.engine.journal().map(|j| j.path().to_owned())
    }
}

#[cfg(test)]
mod tests;
