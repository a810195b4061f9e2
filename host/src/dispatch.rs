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
mod tests;
