//! One injection: the guards, the intent on disk, the plugin's call (in two phases for a
//! fault that prepares), the outcome on disk, and what is in effect listed for its revert.

use super::*;
use crate::domain::injection::Pause;

impl Engine {
    /// Injects a fault once, if every guard lets it, journaling it before and after.
    /// Synchronous: the plugin may block, so async callers run this off their runtime.
    pub fn inject(&self, ask: &Ask) -> Result<Injection, InjectError> {
        // Every revert of all at once from here on is one this fault may miss.
        let sweeps = self.sweeps.load(Ordering::SeqCst);
        let lease_sweeps = self.lease_sweeps.load(Ordering::SeqCst);
        let now = Utc::now();
        let slot = self
            .guard(&ask.fault, now, true)
            .inspect_err(count_refusal)?;
        // The fleet's admission, if any: held until the fault is over (see admission.rs).
        let mut fleet_slot = self.admit(ask, now)?;
        let mut intent = self.intent(ask, &slot.plugin, now);
        intent.fleet = fleet_slot.admission();
        let dry_run = intent.dry_run;
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
        let request = self.request(ask, &intent);
        let started = Instant::now();
        // Listed as in flight until its outcome is settled (recorded, and listed as
        // active or reverted), so that shutting down always finds it in one list or the
        // other.
        let _in_flight = InFlight::enter(&self.in_flight, &intent.id, &ask.fault);
        let answer = if !dry_run && slot.fault.prepares() {
            match self.two_phases(slot, &intent, request, sweeps) {
                Ok(answer) => answer,
                Err(error) => {
                    self.forget(now);
                    return Err(error);
                }
            }
        } else if let Err(error) = self.confirm_fleet(&intent, dry_run) {
            self.forget(now);
            return Err(error);
        } else {
            slot.fault.inject(&request).map_err(|e| (e, None))
        };
        let done = Utc::now();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err((error, undo)) => {
                self.forget(now);
                if undo.is_some() {
                    fleet_slot.keep(&intent.id);
                }
                let record = OutcomeRecord::failed(&intent.id, done, elapsed_ms, error.to_string());
                self.failed(ask, record, undo);
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
                fleet_slot.keep(&intent.id);
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
        let recorded = self.record_outcome(OutcomeRecord::of(&injection), revert_due.is_some());
        metrics::get().fault(&ask.fault, ask.trigger, &injection.outcome.result);
        // A one-phase fault in effect: its second copy now (a prepared one has it).
        if recorded.is_ok() && revert_due.is_some() && !slot.fault.prepares() {
            self.checkpoint_now();
        }
        let id = &injection.intent.id;
        if undated && recorded.is_ok() {
            let reverted = self.revert_at_once(id, "contract", self.plugin_timeout);
            return Err(undated_revert(&ask.fault, reverted));
        }
        if let (Err(error), Some(_)) = (recorded, revert_due) {
            return Err(InjectError::Unrecorded {
                fault: ask.fault.clone(),
                path: self.journal_path(),
                error,
                reverted: self.revert_at_once(id, "journal", self.plugin_timeout),
            });
        }
        if revert_due.is_some() {
            self.undo_if_stopped_meanwhile(id, sweeps, lease_sweeps);
        }
        Ok(injection)
    }

    /// Why the monkey stopped since `sweeps` was read: paused now, or every active fault
    /// reverted at once meanwhile (a switch turned on and off again while the plugin
    /// worked still turned it on).
    fn stopped_since(&self, sweeps: u64) -> Option<Pause> {
        self.paused()
            .or_else(|| (self.sweeps.load(Ordering::SeqCst) != sweeps).then_some(Pause::Switch))
    }

    /// Paused (or shutting down, or cut off from the fleet) while the plugin worked: the
    /// kill switch did not see fault `id` among the active ones, so it is undone now, on
    /// a thread of its own. So is one whose fleet lease ended meanwhile (even if a new
    /// one was had since): its admission may be of the lease that ended.
    fn undo_if_stopped_meanwhile(&self, id: &str, sweeps: u64, lease_sweeps: u64) {
        let cut_off =
            self.fleet_cut_off() || self.lease_sweeps.load(Ordering::SeqCst) != lease_sweeps;
        if self.stopped_since(sweeps).is_some() || cut_off {
            let reason = if self.closing.load(Ordering::SeqCst) {
                "shutdown"
            } else if cut_off {
                "fleet-cut-off"
            } else {
                "pause"
            };
            self.revert_at_once(id, reason, Duration::ZERO);
        }
    }

    /// The intent of `ask`, a fault of `plugin`, at `now`: its id and its seed, drawn from
    /// the fault's own stream.
    fn intent(&self, ask: &Ask, plugin: &str, now: DateTime<Utc>) -> Intent {
        let stream = stream_name(&format!("fault/{}", ask.fault), self.node.as_deref());
        let (seed, stream_position) = self.draw(&stream);
        let id = format!(
            "{}-{}",
            self.run,
            self.next_id.fetch_add(1, Ordering::SeqCst)
        );
        Intent {
            id,
            at: now,
            fault: ask.fault.clone(),
            plugin: plugin.to_owned(),
            trigger: ask.trigger.to_owned(),
            requested_by: ask.requested_by.clone(),
            desc: ask.desc.clone(),
            dry_run: !self.execute,
            master_seed: self.master_seed,
            stream,
            stream_position,
            seed,
            fleet: None,
        }
    }

    /// What the plugin is asked: the intent's seed, and the processes it must leave
    /// alone (those of faults in effect or being reverted, and the plugin workers: the
    /// monkey's own processes, as it is).
    fn request(&self, ask: &Ask, intent: &Intent) -> Request {
        let mut avoid: Vec<u32> = lock(&self.active).values().filter_map(|a| a.pid).collect();
        avoid.extend(self.reverts.pids());
        avoid.extend((self.protected)());
        Request {
            seed: intent.seed,
            dry_run: intent.dry_run,
            desc: ask.desc.clone(),
            avoid,
            ..Request::default()
        }
    }

    /// Records an injection that failed. One that changed nothing is only recorded; an
    /// apply that may have acted before it failed (`undo`: its prepared state) is
    /// recorded as active, to be undone from that state, and reverted at once.
    fn failed(&self, ask: &Ask, mut record: OutcomeRecord, undo: Option<serde_json::Value>) {
        metrics::get().fault(&ask.fault, ask.trigger, metrics::FAILED);
        match undo {
            None => {
                let _ = self.record_outcome(record, false);
            }
            Some(state) => {
                record.revert = Some(state.clone());
                let id = record.id.clone();
                let _ = self.record_outcome(record, true);
                self.activate(&id, &ask.fault, state, None, None);
                self.revert_at_once(&id, "apply-failed", self.plugin_timeout);
            }
        }
    }

    /// Reverts fault `id` now, for `reason`, waiting for its plugin at most `wait`;
    /// whether the revert was done within it (or there was nothing to revert).
    fn revert_at_once(&self, id: &str, reason: &str, wait: Duration) -> bool {
        match self.take(id, reason) {
            Some(job) => run_all(vec![job], wait).is_empty(),
            None => true,
        }
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
        sweeps: u64,
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
            let _ = self.record_outcome(failed, false);
            return Err(InjectError::Journal {
                path: self.journal_path(),
                error,
            });
        }
        self.checkpoint_now();
        self.confirm_fleet(intent, false)?;
        // Stopped while it prepared (which changes nothing): nothing is applied, and the
        // switch refused it, as it refuses what comes after it (counted so).
        if let Some(why) = self.stopped_since(sweeps) {
            metrics::get().refused(Refusal::Paused);
            let failed = OutcomeRecord::failed(
                &intent.id,
                Utc::now(),
                0,
                "not applied: the monkey was paused while it prepared".to_owned(),
            );
            let _ = self.record_outcome(failed, true);
            return Err(InjectError::Paused(why));
        }
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
    pub(super) fn forget(&self, at: DateTime<Utc>) {
        lock(&self.budget).forget(at);
    }

    fn record_outcome(&self, record: OutcomeRecord, durable: bool) -> Result<(), String> {
        let record = Record::Outcome(record);
        self.write(&record, durable).inspect_err(|e| {
            log::line(format!(
                "journal: cannot record the outcome of {} in {}: {e}",
                record.fault_id().unwrap_or_default(),
                self.journal_path()
            ));
        })
    }
}

/// The error of fault `fault`, whose outcome carried revert state without a time to
/// revert; `reverted`: whether the revert done at once is done.
fn undated_revert(fault: &str, reverted: bool) -> InjectError {
    InjectError::Plugin {
        fault: fault.to_owned(),
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
    }
}

/// The injections whose plugin has not answered yet (id and fault); `ended` is told
/// each time one ends, for whoever waits for them all (shutting down).
#[derive(Default)]
pub(super) struct Flights {
    pub(super) all: Mutex<BTreeMap<String, String>>,
    ended: Condvar,
    /// Whoever waits on `ended` (only they are told: a wake-up is a system call).
    waiting: AtomicUsize,
}

impl Flights {
    /// Waits until none is in flight, at most `wait`.
    pub(super) fn settle(&self, wait: Duration) {
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
pub(super) struct InFlight<'a> {
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

/// Counts a guard's refusal in the metrics by its reason (other errors are not
/// refusals of a guard).
fn count_refusal(error: &InjectError) {
    let counted = match error {
        InjectError::Paused(_) => Refusal::Paused,
        InjectError::Sleeping { .. } => Refusal::Window,
        InjectError::Loading { .. } => Refusal::Loading,
        InjectError::OverBudget { .. } => Refusal::Budget,
        _ => return,
    };
    metrics::get().refused(counted);
}
