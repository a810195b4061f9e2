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
use nightmare_monkey_plugin_api::sdk::ErrorKind;

pub(crate) use crate::engine::{AckError, Acknowledged};

use crate::{
    domain::{
        injection::{ceil_secs, Ask, InjectError, Injection},
        journal::{HaltedRecord, NotRecoveredRecord, Record, RecoveredRecord},
    },
    engine::{run_all, Engine, Unfinished},
    output::{events, log, metrics, notifier::Notifiers},
    probe::{first_failure, Probe, Recovery},
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
}

/// When the timer fires next, and which fault.
type Next = (DateTime<Utc>, String);

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

/// Where a recovery watch starts.
enum Watched {
    /// A fault just injected: from its end (reversible: its revert, awaited).
    Injected {
        revert_due: Option<DateTime<Utc>>,
        done: DateTime<Utc>,
    },
    /// A fault of an earlier run: from this instant, past its deadline or not.
    Since { from: DateTime<Utc>, overdue: bool },
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
        }
    }

    /// The same door, checking each fault's steady state and recovery with `probes`.
    pub fn with_probes(mut self, probes: BTreeMap<String, FaultProbes>) -> Self {
        self.probes = Arc::new(probes);
        self
    }

    /// The timer's next fault is `fault` at `at` (none: the timer stopped).
    pub fn set_next(&self, next: Option<Next>) {
        let said = next
            .as_ref()
            .map(|(at, fault)| serde_json::json!({ "at": self.engine.clock(*at), "fault": fault }));
        *lock(&self.next) = next;
        events::publish("next", said.unwrap_or_default());
    }

    /// Why the monkey is paused, if it is.
    pub fn paused(&self) -> Option<String> {
        self.engine.paused()
    }

    /// An instant as the window's zone shows it.
    pub fn clock(&self, at: DateTime<Utc>) -> String {
        self.engine.clock(at)
    }

    /// The window's zone, for pictures.
    pub fn zone(&self) -> crate::domain::window::Zone {
        self.engine.zone()
    }

    /// Whether a fault may be injected at `at` as far as the window goes.
    pub fn in_window(&self, at: DateTime<Utc>) -> bool {
        self.engine.in_window(at)
    }

    /// What the monkey is doing now.
    pub fn status(&self) -> Status {
        let now = Utc::now();
        Status {
            engine: self.engine.status(now),
            next: lock(&self.next).as_ref().map(|(at, fault)| NextFault {
                at: self.engine.clock(*at),
                in_s: (*at - now).num_seconds().max(0) as u64,
                fault: fault.clone(),
                in_window: self.engine.in_window(*at),
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
        let name = ask.fault.clone();
        let trigger = ask.trigger;
        let mut deadline = tokio::time::Instant::now() + self.deadline;
        let timed_out = || InjectError::TimedOut {
            fault: name.clone(),
            after: self.deadline,
        };
        // A fault with a steady state: its turn first (the one before it has its
        // outcome), then a place, then the check; all of it within the deadline.
        let turn = match self.probes.get(&ask.fault) {
            Some(p) if !p.steady_state.is_empty() => {
                match tokio::time::timeout_at(deadline, p.one_at_a_time.clone().lock_owned()).await
                {
                    Ok(turn) => Ok(Some(turn)),
                    Err(_) => Err(timed_out()),
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
                    Err(_) => Err(timed_out()),
                    Ok(Err(closed)) => Err(InjectError::Crashed {
                        fault: name.clone(),
                        reason: closed.to_string(),
                    }),
                    Ok(Ok(slot)) => Ok((slot, turn)),
                }
            }
        };
        let result = match slot {
            Err(e) => Err(e),
            Ok((slot, turn)) => {
                if let Some(refused) = self.steady_state(&ask).await {
                    return Err(refused);
                }
                // The plugin gets the whole deadline, whatever the probes took.
                deadline = deadline.max(tokio::time::Instant::now() + self.deadline);
                let worker = self.engine.clone();
                let mut call = tokio::task::spawn_blocking(move || {
                    let (_slot, _turn) = (slot, turn);
                    worker.inject(&ask)
                });
                tokio::select! {
                    joined = &mut call => joined.unwrap_or_else(|join| {
                        Err(InjectError::Crashed {
                            fault: name.clone(),
                            reason: join.to_string(),
                        })
                    }),
                    _ = tokio::time::sleep_until(deadline) => {
                        self.answer_late(call, trigger, name.clone());
                        Err(timed_out())
                    }
                }
            }
        };
        match &result {
            Ok(injection) => self.happened(injection),
            Err(e) => {
                if let Some(line) = failure_line(trigger, e) {
                    log::line(line);
                }
            }
        }
        result
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

    /// What follows a fault that happened: the original's log lines, the notifiers,
    /// the revert of a reversible one when due, and its recovery's watch.
    fn happened(&self, injection: &Injection) {
        log::injection(injection);
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

    /// Polls `recovery`'s probes after `injection` (after its revert, for a reversible
    /// fault) until they all pass: `recovered` with the time to recover, or
    /// `not-recovered` at the deadline and then, if it comes within
    /// [`RECOVERY_LOOKS_AFTER`] deadlines, a late `recovered`.
    fn watch_recovery(&self, injection: &Injection, recovery: Recovery) {
        self.watch(
            injection.intent.id.clone(),
            injection.intent.fault.clone(),
            Watched::Injected {
                revert_due: injection.revert_due,
                done: injection.done,
            },
            recovery,
        );
    }

    /// Takes up again, after a start (a SIGHUP restart, a crash), the recovery watches
    /// the last run left: every real fault of a configured recovery, in the journal, with
    /// no recovery record yet (or only `not-recovered`), still within
    /// [`RECOVERY_LOOKS_AFTER`] deadlines of it. A watch is not lost to a reload.
    pub fn resume_recoveries(&self) {
        let Some(longest) = self
            .probes
            .values()
            .filter_map(|p| p.recovery.as_ref())
            .map(|r| r.deadline * RECOVERY_LOOKS_AFTER)
            .max()
        else {
            return;
        };
        let Some(path) = self.journal_path() else {
            return;
        };
        let now = Utc::now();
        let since = now - chrono::TimeDelta::from_std(longest).unwrap_or_default();
        let Ok(page) = crate::domain::history::page(
            &path,
            crate::domain::history::Query {
                since: Some(since),
                limit: crate::domain::history::MAX_LIMIT,
                ..Default::default()
            },
        ) else {
            return;
        };
        for entry in page.entries {
            let Some(recovery) = self
                .probes
                .get(&entry.intent.fault)
                .and_then(|p| p.recovery.clone())
            else {
                continue;
            };
            if entry.recovered.is_some() || !crate::domain::report::was_real(&entry) {
                continue;
            }
            let Some(outcome) = &entry.outcome else {
                continue;
            };
            // From the revert for a reversible fault (the start's recovery reverted what
            // was still active), else from the injection.
            let from = match (&entry.reverted, outcome.revert_due) {
                (Some(r), _) => r.at,
                (None, Some(_)) => now,
                (None, None) => outcome.at,
            };
            log::line(format!(
                "recovery: {} ({}) watched again after the restart",
                entry.intent.fault, entry.intent.id
            ));
            self.watch(
                entry.intent.id.clone(),
                entry.intent.fault.clone(),
                Watched::Since {
                    from,
                    overdue: entry.not_recovered.is_some(),
                },
                recovery,
            );
        }
    }

    fn watch(&self, id: String, fault: String, watched: Watched, recovery: Recovery) {
        let door = self.clone();
        tokio::spawn(async move {
            let give_up = recovery.deadline * RECOVERY_LOOKS_AFTER;
            let (from, mut overdue) = match watched {
                Watched::Injected {
                    revert_due: Some(due),
                    ..
                } => match door.reverted(&id, due, give_up).await {
                    Some(at) => (at, false),
                    None => return,
                },
                Watched::Injected { done, .. } => (done, false),
                Watched::Since { from, overdue } => (from, overdue),
            };
            let deadline =
                from + chrono::TimeDelta::from_std(recovery.deadline).unwrap_or_default();
            let end = from + chrono::TimeDelta::from_std(give_up).unwrap_or_default();
            loop {
                let failed = first_failure(&recovery.probes).await;
                let now = Utc::now();
                let Some((probe, reason)) = failed else {
                    let ttr_ms = (now - from).num_milliseconds().max(0) as u64;
                    log::line(format!(
                        "recovery: {fault} ({id}) recovered in {ttr_ms} ms{}",
                        if overdue {
                            " (late: after its deadline)"
                        } else {
                            ""
                        }
                    ));
                    metrics::get().recovery(&fault, if overdue { "late" } else { "recovered" });
                    metrics::get().recovered(ttr_ms);
                    door.note(Record::Recovered(RecoveredRecord {
                        id,
                        at: now,
                        ttr_ms,
                        late: overdue,
                    }))
                    .await;
                    return;
                };
                if !overdue && now >= deadline {
                    overdue = true;
                    let reason = format!("{probe}: {reason}");
                    log::line(format!(
                        "recovery: {fault} ({id}) not recovered within {}: {reason}",
                        humantime::format_duration(recovery.deadline)
                    ));
                    metrics::get().recovery(&fault, "not-recovered");
                    let record = Record::NotRecovered(NotRecoveredRecord {
                        id: id.clone(),
                        at: now,
                        deadline_ms: recovery.deadline.as_millis() as u64,
                        reason: reason.clone(),
                    });
                    door.notifiers.tell_event(
                        &format!("not-recovered of {id}"),
                        &format!(
                            "{fault} ({id}) not recovered within {}: {reason}",
                            humantime::format_duration(recovery.deadline)
                        ),
                        serde_json::to_value(&record).unwrap_or_default(),
                    );
                    door.note(record).await;
                }
                if now >= end {
                    log::line(format!(
                        "recovery: {fault} ({id}) still not recovered after {}: no longer watched",
                        humantime::format_duration(give_up)
                    ));
                    return;
                }
                // Not past the deadline unsaid: the record comes at the deadline.
                let mut wait = recovery.every;
                if !overdue {
                    wait = wait.min((deadline - now).to_std().unwrap_or_default());
                }
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Waits until the reversible fault `id`, due to be reverted at `due`, is reverted
    /// (neither active nor being reverted), at most `bound` past `due`; when. Looked at
    /// often around `due` and after it (the instant is the time to recover's start),
    /// less often before (a pause or a halt may revert it early).
    async fn reverted(
        &self,
        id: &str,
        due: DateTime<Utc>,
        bound: Duration,
    ) -> Option<DateTime<Utc>> {
        let end = due + chrono::TimeDelta::from_std(bound).unwrap_or_default();
        loop {
            let reverting = self.engine.reverting().iter().any(|u| u.id == id);
            if !self.engine.is_active(id) && !reverting {
                return Some(Utc::now());
            }
            let now = Utc::now();
            if now >= end {
                return None;
            }
            let early = (due - now).to_std().unwrap_or_default() > Duration::from_secs(1);
            let wait = if early { 250 } else { 20 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Appends `record` to the journal off the runtime (a writer may hold its lock).
    async fn note(&self, record: Record) {
        let engine = self.engine.clone();
        let _ = on_own_thread("journal", move || engine.note(&record)).await;
    }

    /// The monkey pauses itself because `probe` failed for too long (`reason`): exactly
    /// as the kill switch does (every active fault reverted), saying why; journaled
    /// `halted`. `resume` is manual.
    pub async fn halt(&self, probe: String, reason: String) -> Switched {
        self.engine.set_halted(format!("{probe}: {reason}"));
        metrics::get().halted();
        let text = format!(
            "halt: {probe}: {reason}: paused, every active fault reverted; POST /api/resume to resume"
        );
        let record = Record::Halted(HaltedRecord {
            at: Utc::now(),
            probe,
            reason,
        });
        self.notifiers.tell_event(
            "halt",
            &text,
            serde_json::to_value(&record).unwrap_or_default(),
        );
        self.note(record).await;
        self.revert_all("halt", SWITCH_WAIT).await;
        Switched {
            paused: self.engine.paused(),
            reverting: self.engine.reverting(),
        }
    }

    /// A plugin that answers after its caller gave up still did what it did: it is
    /// logged, told and, if reversible, reverted when due like any other.
    fn answer_late(
        &self,
        call: tokio::task::JoinHandle<Result<Injection, InjectError>>,
        trigger: &'static str,
        fault: String,
    ) {
        let door = self.clone();
        tokio::spawn(async move {
            if let Ok(Ok(injection)) = call.await {
                log::line(format!(
                    "{trigger}: {fault}: the plugin answered after its deadline ({} ms): the fault happened",
                    injection.elapsed_ms
                ));
                door.happened(&injection);
            }
        });
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

    /// Marks a fault noticed by `by` (the one `id` names, else the latest unnoticed real
    /// fault of the last day), on a thread of its own (it reads the journal), and logs
    /// it. `Ok(None)`: the thread could not be started.
    pub async fn acknowledge(
        &self,
        by: String,
        id: Option<String>,
        started: Option<DateTime<Utc>>,
    ) -> Option<Result<Acknowledged, AckError>> {
        let engine = self.engine.clone();
        let done = on_own_thread("ack", move || {
            engine.acknowledge(&by, id.as_deref(), started, Utc::now())
        })
        .await?;
        if let Ok(ack) = &done {
            crate::output::metrics::get().detected(ack.ttd_ms);
            log::line(format!(
                "Detected: {} ({}) {} by {} after {}",
                ack.id,
                ack.fault,
                ack.target,
                ack.by,
                crate::domain::drill::human_ms(ack.ttd_ms)
            ));
        }
        Some(done)
    }

    /// Turns the kill switch on or off (off: unless the pause file holds it on, which
    /// leaves it as it was). On: every request is refused from this instant,
    /// and every active fault is reverted, each on a thread of its own; the answer comes
    /// after [`SWITCH_WAIT`] at most, naming the reverts still under way.
    pub async fn switch(&self, on: bool) -> Switched {
        // A resume the pause file refuses changes nothing: the switch stays as it was.
        if on || !self.engine.pause_file_holds() {
            self.engine.set_paused(on);
        }
        if on {
            self.revert_all("pause", SWITCH_WAIT).await;
        }
        let paused = self.engine.paused();
        events::publish("switch", serde_json::json!({ "paused": paused }));
        Switched {
            paused,
            reverting: self.engine.reverting(),
        }
    }

    /// Reverts the active fault `id` at once ("revert now"), on a thread of its own,
    /// waiting at most [`SWITCH_WAIT`] for its plugin: which fault it was and whether
    /// its revert is still under way. `Ok(None)`: no such fault is active; `Err`: no
    /// thread could be started for it (nothing was taken: try again).
    pub async fn revert(&self, id: String) -> Result<Option<(String, bool)>, ()> {
        let engine = self.engine.clone();
        on_own_thread("revert", move || engine.revert_now(&id, SWITCH_WAIT))
            .await
            .ok_or(())
    }

    /// Whether fault `id`'s revert is under way (its plugin has not answered, or it is
    /// being tried again).
    pub fn is_reverting(&self, id: &str) -> bool {
        self.engine.reverting().iter().any(|r| r.id == id)
    }

    /// Reverts every active fault, each on a thread of its own, waiting at most `wait`,
    /// without blocking the runtime (in line only if no thread can be started at all).
    async fn revert_all(&self, reason: &'static str, wait: Duration) {
        let engine = self.engine.clone();
        if on_own_thread(reason, move || engine.revert_all(reason, wait))
            .await
            .is_none()
        {
            self.engine.revert_all(reason, Duration::ZERO);
        }
    }

    /// Goes to bed: refuses every request from now on, reverts every active fault, each
    /// on a thread of its own, and waits for them at most `wait`. Returns what was
    /// abandoned: injections whose plugin never answered (id, fault), and reverts still
    /// under way (these and any the kill switch started). Either may have left something
    /// in effect.
    pub async fn close(&self, wait: Duration) -> (Vec<(String, String)>, Vec<Unfinished>) {
        self.engine.close();
        let started = tokio::time::Instant::now();
        self.revert_all("shutdown", wait).await;
        // Reverts started before (due, pause, retrying) get the rest of the wait too.
        let engine = self.engine.clone();
        let left = wait.saturating_sub(started.elapsed());
        let mut unfinished = on_own_thread("shutdown", move || engine.settle(left))
            .await
            .unwrap_or_else(|| self.engine.reverting());
        unfinished.extend(self.engine.active());
        (self.engine.in_flight(), unfinished)
    }

    /// The journal file, for a look back (`GET /api/history`); `None` without one.
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.engine.journal().map(|j| j.path().to_owned())
    }
}

/// The log line of an injection that failed, if it is one to log here: refusals are the
/// trigger's to mention (the timer and the pollers say them once in their own line, the
/// API answers them); a failure (a plugin's error, a timeout, the journal) is logged
/// once, here, whichever trigger asked.
fn failure_line(trigger: &str, error: &InjectError) -> Option<String> {
    (!Refusal::of(error).is_refusal).then(|| format!("{trigger}: {error}"))
}

/// How a client is told that an injection did not happen: the HTTP status, the message
/// and when to try again. The one rendering of an `InjectError` for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The message, as the error says it.
    pub message: String,
    /// When a retry may succeed (`Retry-After`, whole seconds).
    pub retry_after: Option<u64>,
    /// Whether the drill refused it on purpose (window, kill switch, budget), as opposed
    /// to a failure somebody should look at.
    pub is_refusal: bool,
}

impl Refusal {
    /// The refusal of `error`, now.
    pub fn of(error: &InjectError) -> Self {
        Self::at(error, Utc::now())
    }

    /// The refusal of `error` at `now` (the clock is passed in for tests).
    pub fn at(error: &InjectError, now: DateTime<Utc>) -> Self {
        let (status, retry_after, is_refusal) = match error {
            InjectError::Sleeping { opens } => (
                503,
                opens.map(|t| ceil_secs((t - now).to_std().unwrap_or_default())),
                true,
            ),
            InjectError::OverBudget { retry_after, .. } => {
                (429, Some(ceil_secs(*retry_after)), true)
            }
            InjectError::Paused(_) | InjectError::SteadyState { .. } => (503, None, true),
            InjectError::Journal { .. } | InjectError::Unrecorded { .. } => (503, None, false),
            InjectError::UnknownFault(_) => (404, None, false),
            InjectError::Loading { .. } => (503, Some(1), true),
            InjectError::Plugin { error, .. } if error.kind == ErrorKind::NoTarget => {
                (503, None, false)
            }
            InjectError::Plugin { .. } | InjectError::Crashed { .. } => (502, None, false),
            InjectError::TimedOut { .. } => (504, None, false),
        };
        Self {
            status,
            message: error.to_string(),
            retry_after,
            is_refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::PluginError;

    use super::*;
    use crate::{
        domain::injection::Ask,
        engine::{
            fake::{self, Behaviour, Fake},
            Guards,
        },
        support::lock::lock,
    };

    fn injector(fake: &Fake, execute: bool) -> Injector {
        let mut engine = Engine::new(1, execute, Guards::default(), None);
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        Injector::new(Arc::new(engine), Notifiers::default())
    }

    fn ask() -> Ask {
        Ask {
            fault: "fake".into(),
            desc: "by test".into(),
            trigger: "timer",
            requested_by: None,
        }
    }

    #[tokio::test]
    async fn a_plugin_that_hangs_is_given_up_on_at_the_deadline() {
        let gate = fake::gate();
        let fake = Fake::new(Behaviour::Block(gate.clone()));
        let door = injector(&fake, false).with_deadline(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let result = door.inject(ask()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        match result {
            Err(e @ InjectError::TimedOut { .. }) => {
                assert_eq!(Refusal::of(&e).status, 504);
                assert!(!Refusal::of(&e).is_refusal);
            }
            other => panic!("{other:?}"),
        }
        // Let the blocked thread go, so the runtime can shut down.
        fake::open(&gate);
    }

    #[tokio::test]
    async fn a_reversible_fault_is_reverted_when_due() {
        let fake = Fake::new(Behaviour::Reversible { ms: 20 });
        let door = injector(&fake, true);
        let injection = door.inject(ask()).await.unwrap();
        assert!(injection.revert_due.is_some());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&fake.reverts).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never reverted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*lock(&fake.reverts), [serde_json::json!({ "pid": 200 })]);
    }

    #[tokio::test]
    async fn the_kill_switch_refuses_every_trigger_alike_until_resumed() {
        let fake = Fake::new(Behaviour::Hit);
        let door = injector(&fake, false);
        assert_eq!(
            door.switch(true).await,
            Switched {
                paused: Some("POST /api/resume to resume".into()),
                reverting: vec![],
            }
        );
        let refused = door.inject(ask()).await.unwrap_err();
        let refusal = Refusal::of(&refused);
        assert_eq!((refusal.status, refusal.is_refusal), (503, true));
        assert_eq!(
            door.switch(false).await,
            Switched {
                paused: None,
                reverting: vec![]
            }
        );
        assert!(door.inject(ask()).await.is_ok());
        assert_eq!(fake.calls().len(), 1);
        assert_eq!(door.journal_path(), None);
        let path = std::env::temp_dir().join(format!("nm-dispatch-{}.jsonl", std::process::id()));
        let journal = crate::domain::journal::Journal::open(&path).unwrap();
        let with = Injector::new(
            Arc::new(Engine::new(1, false, Guards::default(), Some(journal))),
            Notifiers::default(),
        );
        assert_eq!(with.journal_path(), Some(path.clone()));
        let _ = std::fs::remove_file(path);
    }

    /// Every thread the runtime has for injections is held by a plugin that hangs, one
    /// more injection waits for a thread, and an active fault's plugin hangs in `revert`:
    /// the kill switch still answers at once, names the revert still under way, and the
    /// injection that was waiting is refused.
    #[test]
    fn the_kill_switch_never_waits_behind_plugins() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(MAX_INJECTIONS_AT_ONCE)
            .build()
            .unwrap();
        let hang = fake::gate();
        let hung = Fake::new(Behaviour::Block(hang.clone()));
        let stuck_revert = fake::gate();
        let stuck = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_held(&stuck_revert);
        let mut engine = Engine::new(1, true, Guards::default(), None);
        engine.add_fault("hung", "fake", hung.clone()).unwrap();
        engine.add_fault("stuck", "fake", stuck.clone()).unwrap();
        let door = Injector::new(Arc::new(engine), Notifiers::default());
        runtime.block_on(async {
            let active = door.inject(ask_for("stuck")).await.unwrap();
            let mut waiting = Vec::new();
            for _ in 0..=MAX_INJECTIONS_AT_ONCE {
                let door = door.clone();
                waiting.push(tokio::spawn(
                    async move { door.inject(ask_for("hung")).await },
                ));
            }
            while hung.calls().len() < MAX_INJECTIONS_AT_ONCE {
                tokio::task::yield_now().await;
            }
            let started = std::time::Instant::now();
            let switched = door.switch(true).await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(1), "the switch took {took:?}");
            assert!(switched.paused.is_some());
            assert_eq!(
                switched.reverting,
                [Unfinished {
                    id: active.intent.id.clone(),
                    fault: "stuck".into()
                }]
            );
            fake::open(&stuck_revert);
            fake::open(&hang);
            let mut refused = 0;
            for task in waiting {
                if let Err(InjectError::Paused(_)) = task.await.unwrap() {
                    refused += 1;
                }
            }
            assert_eq!(refused, 1, "the one that waited for a thread is refused");
            assert_eq!(hung.calls().len(), MAX_INJECTIONS_AT_ONCE);
        });
    }

    /// Paused while a plugin works: the fault it leaves active is reverted as soon as it
    /// answers, and going to bed names an injection and a revert whose plugins hang.
    #[tokio::test]
    async fn what_the_switch_could_not_see_is_reverted_and_closing_names_what_hangs() {
        let hold = fake::gate();
        let late = Fake::new(Behaviour::Reversible { ms: 60_000 }).held(&hold);
        let mut engine = Engine::new(1, true, Guards::default(), None);
        engine.add_fault("late", "fake", late.clone()).unwrap();
        let door = Injector::new(Arc::new(engine), Notifiers::default());
        let under_way = tokio::spawn({
            let door = door.clone();
            async move { door.inject(ask_for("late")).await }
        });
        while late.calls().is_empty() {
            tokio::task::yield_now().await;
        }
        assert!(door.switch(true).await.reverting.is_empty());
        fake::open(&hold);
        assert!(under_way.await.unwrap().is_ok());
        until(
            || lock(&late.reverts).len() == 1,
            "reverted as soon as it answered",
        )
        .await;

        let hang = fake::gate();
        let stuck_revert = fake::gate();
        let hung = Fake::new(Behaviour::Block(hang.clone()));
        let stuck = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_held(&stuck_revert);
        let mut engine = Engine::new(1, true, Guards::default(), None);
        engine.add_fault("hung", "fake", hung.clone()).unwrap();
        engine.add_fault("stuck", "fake", stuck).unwrap();
        let door = Injector::new(Arc::new(engine), Notifiers::default());
        let active = door.inject(ask_for("stuck")).await.unwrap();
        let hanging = tokio::spawn({
            let door = door.clone();
            async move { door.inject(ask_for("hung")).await }
        });
        while hung.calls().is_empty() {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let (in_flight, unfinished) = door.close(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(in_flight.len(), 1);
        assert_eq!(in_flight[0].1, "hung");
        assert_eq!(
            unfinished,
            [Unfinished {
                id: active.intent.id,
                fault: "stuck".into()
            }]
        );
        assert!(matches!(
            door.inject(ask_for("stuck")).await,
            Err(InjectError::Paused(why)) if why == "it is going to bed"
        ));
        fake::open(&hang);
        fake::open(&stuck_revert);
        let _ = hanging.await;
    }

    /// Waits until `done` holds (a revert runs on a thread of its own), within a bound.
    async fn until(done: impl Fn() -> bool, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A plugin that answers after its caller gave up (504) still did what it did: the
    /// fault it leaves active is reverted when due, and a request that never got a
    /// place among the injections never runs at all.
    #[test]
    fn a_late_answer_is_reverted_when_due_and_a_request_that_never_ran_never_runs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(MAX_INJECTIONS_AT_ONCE)
            .build()
            .unwrap();
        let hold = fake::gate();
        let late = Fake::new(Behaviour::Reversible { ms: 20 }).held(&hold);
        let mut engine = Engine::new(1, true, Guards::default(), None);
        engine.add_fault("late", "fake", late.clone()).unwrap();
        let door = Injector::new(Arc::new(engine), Notifiers::default())
            .with_deadline(Duration::from_millis(50));
        runtime.block_on(async {
            let mut asked = Vec::new();
            for _ in 0..=MAX_INJECTIONS_AT_ONCE {
                let door = door.clone();
                asked.push(tokio::spawn(
                    async move { door.inject(ask_for("late")).await },
                ));
            }
            for task in asked {
                assert!(matches!(
                    task.await.unwrap(),
                    Err(InjectError::TimedOut { .. })
                ));
            }
            assert_eq!(
                late.calls().len(),
                MAX_INJECTIONS_AT_ONCE,
                "one never got a place"
            );
            fake::open(&hold);
            until(
                || lock(&late.reverts).len() == MAX_INJECTIONS_AT_ONCE,
                "reverted the late faults",
            )
            .await;
            // The one that never got a place did not run later either.
            assert_eq!(late.calls().len(), MAX_INJECTIONS_AT_ONCE);
        });
    }

    /// A journal of its own for one test.
    fn journal_in(name: &str) -> (PathBuf, crate::domain::journal::Journal) {
        let dir = std::env::temp_dir().join(format!("nm-dispatch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.jsonl");
        let journal = crate::domain::journal::Journal::open(&path).unwrap();
        (path, journal)
    }

    fn records(path: &std::path::Path) -> Vec<crate::domain::journal::Record> {
        crate::domain::journal::read(path).unwrap().records
    }

    fn probes_of(steady: Vec<Probe>, recovery: Option<Recovery>) -> BTreeMap<String, FaultProbes> {
        BTreeMap::from([(
            "fake".to_owned(),
            FaultProbes {
                steady_state: steady,
                recovery,
                ..FaultProbes::default()
            },
        )])
    }

    /// A failing steady state refuses the fault before the engine: no plugin call, no
    /// intent, no budget used, a `refused` record with an id like the intents'; a
    /// passing one lets it through.
    #[tokio::test]
    async fn a_steady_state_not_met_refuses_the_fault_journaled_and_free_of_budget() {
        use crate::domain::{budget::Limits, journal::Record};
        let (path, journal) = journal_in("steady");
        let fake = Fake::new(Behaviour::Hit);
        let guards = Guards {
            limits: Limits {
                per_hour: Some(1),
                ..Limits::default()
            },
            ..Guards::default()
        };
        let mut engine = Engine::new(1, false, guards, Some(journal));
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        let engine = Arc::new(engine);
        let failing = Injector::new(engine.clone(), Notifiers::default()).with_probes(probes_of(
            vec![crate::probe::command(&["false"], Duration::from_secs(5))],
            None,
        ));
        let refused = failing.inject(ask()).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "steady state not met: command false: exited 1"
        );
        let refusal = Refusal::of(&refused);
        assert_eq!((refusal.status, refusal.is_refusal), (503, true));
        assert!(fake.calls().is_empty());
        match records(&path).as_slice() {
            [Record::Refused(r)] => {
                assert_eq!(
                    (r.fault.as_str(), r.trigger.as_str(), r.desc.as_str()),
                    ("fake", "timer", "by test")
                );
                assert_eq!(r.reason, "steady state not met: command false: exited 1");
                assert!(r.id.ends_with("-1"), "{}", r.id);
            }
            other => panic!("{other:?}"),
        }
        // The budget of one is whole: the next fault, its steady state met, happens.
        let passing = Injector::new(engine, Notifiers::default()).with_probes(probes_of(
            vec![crate::probe::command(&["true"], Duration::from_secs(5))],
            None,
        ));
        let injection = passing.inject(ask()).await.unwrap();
        assert!(injection.intent.id.ends_with("-2"), "the refusal took id 1");
        assert_eq!(fake.calls().len(), 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Probes draw nothing from the seeded streams: the same seeds reach the plugin with
    /// steady-state probes as without.
    #[tokio::test]
    async fn probes_leave_the_seeded_streams_alone() {
        let mut seeds = Vec::new();
        for with in [false, true] {
            let fake = Fake::new(Behaviour::Hit);
            let door = injector(&fake, false);
            let door = if with {
                door.with_probes(probes_of(
                    vec![crate::probe::command(&["true"], Duration::from_secs(5))],
                    None,
                ))
            } else {
                door
            };
            for _ in 0..3 {
                door.inject(ask()).await.unwrap();
            }
            seeds.push(fake.calls().iter().map(|r| r.seed).collect::<Vec<_>>());
        }
        assert_eq!(seeds[0], seeds[1]);
    }

    /// After a real fault, the recovery probes are polled until they pass: `recovered`
    /// with the time from the outcome; not at all after a dry run.
    #[tokio::test]
    async fn a_recovery_is_measured_from_the_outcome() {
        use crate::domain::journal::Record;
        let (path, journal) = journal_in("recovery");
        let flag = path.with_file_name("up");
        let fake = Fake::new(Behaviour::Hit);
        let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        let recovery = Recovery {
            probes: vec![crate::probe::command(
                &["test", "-e", flag.to_str().unwrap()],
                Duration::from_secs(5),
            )],
            deadline: Duration::from_secs(60),
            every: Duration::from_millis(100),
        };
        let door = Injector::new(Arc::new(engine), Notifiers::default())
            .with_probes(probes_of(vec![], Some(recovery)));
        let injection = door.inject(ask()).await.unwrap();
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&flag, "").unwrap();
        until(
            || {
                records(&path)
                    .iter()
                    .any(|r| matches!(r, Record::Recovered(_)))
            },
            "recovered",
        )
        .await;
        let measured = started.elapsed().as_millis() as u64;
        match records(&path).last() {
            Some(Record::Recovered(r)) => {
                assert_eq!(r.id, injection.intent.id);
                assert!(!r.late);
                assert!(r.ttr_ms >= 300 && r.ttr_ms <= measured + 50, "{}", r.ttr_ms);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A reversible fault's recovery is timed from its revert: `recovered` comes after
    /// the `revert` record, its `ttr_ms` counted from there, not from the outcome.
    #[tokio::test]
    async fn a_reversible_faults_recovery_is_timed_from_its_revert() {
        use crate::domain::journal::Record;
        let (path, journal) = journal_in("reversible");
        let fake = Fake::new(Behaviour::Reversible { ms: 300 });
        let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        let recovery = Recovery {
            probes: vec![crate::probe::command(&["true"], Duration::from_secs(5))],
            deadline: Duration::from_secs(60),
            every: Duration::from_millis(100),
        };
        let door = Injector::new(Arc::new(engine), Notifiers::default())
            .with_probes(probes_of(vec![], Some(recovery)));
        door.inject(ask()).await.unwrap();
        until(
            || {
                records(&path)
                    .iter()
                    .any(|r| matches!(r, Record::Recovered(_)))
            },
            "recovered",
        )
        .await;
        let all = records(&path);
        let revert = all
            .iter()
            .position(|r| matches!(r, Record::Revert(_)))
            .unwrap();
        match &all[revert + 1..] {
            [Record::Recovered(r)] => assert!(r.ttr_ms < 250, "{}", r.ttr_ms),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Not recovered by the deadline: `not-recovered` with the last failure, and a late
    /// `recovered` when the probes pass afterwards.
    #[tokio::test]
    async fn a_recovery_past_its_deadline_is_not_recovered_then_late() {
        use crate::domain::journal::Record;
        let (path, journal) = journal_in("late");
        let flag = path.with_file_name("up");
        let fake = Fake::new(Behaviour::Hit);
        let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        let recovery = Recovery {
            probes: vec![crate::probe::command(
                &["test", "-e", flag.to_str().unwrap()],
                Duration::from_secs(5),
            )],
            deadline: Duration::from_millis(200),
            every: Duration::from_millis(50),
        };
        let door = Injector::new(Arc::new(engine), Notifiers::default())
            .with_probes(probes_of(vec![], Some(recovery)));
        door.inject(ask()).await.unwrap();
        until(
            || {
                records(&path)
                    .iter()
                    .any(|r| matches!(r, Record::NotRecovered(_)))
            },
            "not recovered",
        )
        .await;
        std::fs::write(&flag, "").unwrap();
        until(
            || {
                records(&path)
                    .iter()
                    .any(|r| matches!(r, Record::Recovered(_)))
            },
            "recovered late",
        )
        .await;
        let tail: Vec<Record> = records(&path).into_iter().skip(2).collect();
        match tail.as_slice() {
            [Record::NotRecovered(n), Record::Recovered(r)] => {
                assert_eq!(n.deadline_ms, 200);
                assert!(n.reason.starts_with("command test -e "), "{}", n.reason);
                assert!(n.reason.ends_with(": exited 1"), "{}", n.reason);
                assert!(r.late);
                assert!(r.ttr_ms >= 200);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A halt pauses as the switch does: every active fault reverted, the reason says
    /// the probe; `resume` clears it.
    #[tokio::test]
    async fn a_halt_pauses_reverts_and_says_why() {
        let fake = Fake::new(Behaviour::Reversible { ms: 60_000 });
        let door = injector(&fake, true);
        door.inject(ask()).await.unwrap();
        let halted = door.halt("process ^db$".into(), "0 processes".into()).await;
        assert_eq!(
            halted.paused.as_deref(),
            Some("halt: process ^db$: 0 processes; POST /api/resume to resume")
        );
        until(|| lock(&fake.reverts).len() == 1, "reverted").await;
        assert!(matches!(
            door.inject(ask()).await,
            Err(InjectError::Paused(why)) if why.starts_with("halt: ")
        ));
        assert_eq!(door.switch(false).await.paused, None);
    }

    fn ask_for(fault: &str) -> Ask {
        Ask {
            fault: fault.into(),
            ..ask()
        }
    }

    #[test]
    fn each_error_has_one_status_message_and_retry() {
        let now = Utc::now();
        let sleeping = InjectError::Sleeping {
            opens: Some(now + chrono::TimeDelta::milliseconds(61_500)),
        };
        assert_eq!(
            Refusal::at(&sleeping, now),
            Refusal {
                status: 503,
                message: "Nightmare Monkey is sleeping now".into(),
                retry_after: Some(62),
                is_refusal: true,
            }
        );
        let budget = InjectError::OverBudget {
            retry_after: Duration::from_millis(1500),
            why: "2 faults per hour".into(),
        };
        let r = Refusal::at(&budget, now);
        assert_eq!(
            (r.status, r.retry_after, r.is_refusal),
            (429, Some(2), true)
        );
        assert_eq!(r.message, budget.to_string());
        let plugin = |kind| InjectError::Plugin {
            fault: "f".into(),
            error: PluginError::new(kind, "x"),
        };
        let cases = [
            (InjectError::Paused("why".into()), 503, true),
            (
                InjectError::Journal {
                    path: "j".into(),
                    error: "e".into(),
                },
                503,
                false,
            ),
            (InjectError::UnknownFault("f".into()), 404, false),
            (plugin(ErrorKind::NoTarget), 503, false),
            (plugin(ErrorKind::Failed), 502, false),
            (
                InjectError::Crashed {
                    fault: "f".into(),
                    reason: "r".into(),
                },
                502,
                false,
            ),
            (
                InjectError::TimedOut {
                    fault: "f".into(),
                    after: Duration::from_secs(30),
                },
                504,
                false,
            ),
        ];
        for (error, status, is_refusal) in cases {
            let r = Refusal::at(&error, now);
            assert_eq!(
                (r.status, r.is_refusal, r.retry_after),
                (status, is_refusal, None),
                "{error}"
            );
            assert_eq!(
                failure_line("poller", &error),
                (!is_refusal).then(|| format!("poller: {error}"))
            );
        }
        assert_eq!(failure_line("timer", &sleeping), None);
        assert_eq!(failure_line("http", &budget), None);
        // A fault of a plugin still loading: try again in a second; not a failure.
        let loading = InjectError::Loading {
            fault: "f".into(),
            plugin: "p".into(),
        };
        let r = Refusal::at(&loading, now);
        assert_eq!(
            (r.status, r.is_refusal, r.retry_after),
            (503, true, Some(1))
        );
        assert_eq!(failure_line("poller", &loading), None);
    }
}
