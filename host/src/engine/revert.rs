//! Reverts as jobs: what undoing one fault needs (the fault, its revert state, the
//! journal), owned, so that it runs on a thread of its own. A revert never waits for a
//! thread of the injections' pool, and whoever waits for one (the kill switch, shutdown,
//! recovery at start) waits only as long as it chose to: a plugin whose `revert` hangs
//! is abandoned, named, and left in the journal for the next start to try again.
//!
//! A revert is never dropped: one that fails is tried again until it succeeds (a
//! plugin says a target that is gone with a result, `vanished`, not an error). A failure
//! that may pass (too many open files, a worker that died, a plugin that did not
//! answer) is tried again after doubling waits up to a minute; one the plugin calls
//! lasting (denied, not reversible, a bad state, a panic) once a minute, in case the
//! operator mends the cause. Meanwhile the fault counts as in effect (`/metrics`,
//! `status`), no other fault chooses its process, the journal keeps it active (a failed
//! revert record does not close it), and shutting down wakes it for one last try before
//! naming it (exit 1); the next start tries again.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use nightmare_monkey_plugin_api::sdk::{ErrorKind, Outcome, PluginError};

use crate::{
    domain::injection::Fault,
    output::{log, metrics},
    storage::journal::{Journal, Record, RevertRecord},
    support::{backoff::Backoff, lock::lock},
};

/// The waits between tries of a revert that failed.
pub(crate) const REVERT_RETRY: Backoff = Backoff {
    first: Duration::from_secs(1),
    ceiling: Duration::from_secs(60),
};

/// The reverts under way, by id (with their fault's name), from the moment a revert is
/// taken off the active faults until it is done; and whether the monkey is shutting down.
#[derive(Debug, Default)]
pub(crate) struct Reverts {
    under_way: Mutex<BTreeMap<String, UnderWay>>,
    /// Told of every revert done, and of shutting down.
    changed: Condvar,
    /// Told of every revert done, for async waiters (recovery watching).
    ended: tokio::sync::Notify,
    closing: AtomicBool,
    /// The active faults (not yet under way), as the engine last said: with the reverts
    /// under way, what `/metrics` counts as in effect.
    active: AtomicUsize,
    /// The fleet's slots held by faults in effect: given back as their revert is done.
    pub(super) admissions: super::admission::Admissions,
}

/// A revert under way: its fault's name, the process it acts on, and what it waits for
/// when it is not its plugin's answer.
#[derive(Debug, Clone)]
struct UnderWay {
    fault: String,
    pid: Option<u32>,
    why: Option<String>,
    /// Left by a crashed run through a plugin this run cannot call: no revert is
    /// under way, and it holds nothing of this run's (no fleet slot).
    stranded: bool,
}

impl Reverts {
    pub(super) fn add(&self, id: &str, fault: &str, pid: Option<u32>) {
        let mut all = lock(&self.under_way);
        let fault = fault.to_owned();
        all.insert(
            id.to_owned(),
            UnderWay {
                fault,
                pid,
                why: None,
                stranded: false,
            },
        );
        self.publish(all.len());
    }

    /// The processes that reverts under way act on: no fault chooses them meanwhile.
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.under_way)
            .values()
            .filter_map(|u| u.pid)
            .collect()
    }

    pub(super) fn remove(&self, id: &str) {
        let mut all = lock(&self.under_way);
        all.remove(id);
        self.publish(all.len());
        self.changed.notify_all();
        self.ended.notify_waiters();
        drop(all);
        self.admissions.release(id);
    }

    /// Resolves when a revert under way is next done; create it before looking at the
    /// lists (and `enable` it), so a revert done meanwhile is not missed.
    pub(crate) fn ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.ended.notified()
    }

    /// Says what revert `id` waits for (its plugin's file, a try after a failure), for
    /// whoever names it unfinished.
    /// `None`: its plugin has the call.
    pub(super) fn note(&self, id: &str, why: Option<String>) {
        if let Some(under_way) = lock(&self.under_way).get_mut(id) {
            under_way.why = why;
        }
    }

    /// Marks revert `id` stranded (see [`UnderWay::stranded`]).
    pub(super) fn strand(&self, id: &str) {
        if let Some(under_way) = lock(&self.under_way).get_mut(id) {
            under_way.stranded = true;
        }
    }

    /// Whether every one of `ids` is stranded (or no longer listed).
    pub(crate) fn all_stranded<'a>(&self, mut ids: impl Iterator<Item = &'a str>) -> bool {
        let all = lock(&self.under_way);
        ids.all(|id| all.get(id).is_none_or(|u| u.stranded))
    }

    /// What revert `id` waits for, if it was said.
    fn why(&self, id: &str) -> Option<String> {
        lock(&self.under_way).get(id).and_then(|u| u.why.clone())
    }

    /// The engine's count of active faults changed.
    pub(crate) fn set_active(&self, active: usize) {
        self.active.store(active, Ordering::SeqCst);
        self.publish(lock(&self.under_way).len());
    }

    fn publish(&self, under_way: usize) {
        metrics::get().set_active(self.active.load(Ordering::SeqCst) + under_way);
    }

    /// The reverts under way.
    pub(crate) fn list(&self) -> Vec<Unfinished> {
        lock(&self.under_way)
            .iter()
            .map(|(id, under_way)| Unfinished {
                id: id.clone(),
                fault: under_way.fault.clone(),
                why: under_way.why.clone(),
            })
            .collect()
    }

    /// Shutting down: a revert waiting to try again tries at once, one last time.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _all = lock(&self.under_way);
        self.changed.notify_all();
    }

    /// Waits until no revert is under way, at most `wait`; returns those still are.
    pub(crate) fn settle(&self, wait: Duration) -> Vec<Unfinished> {
        let all = lock(&self.under_way);
        let (all, _) = self
            .changed
            .wait_timeout_while(all, wait, |all| !all.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        drop(all);
        self.list()
    }

    /// Sleeps `wait` before the next try, or less if the monkey shuts down; whether it
    /// does.
    fn nap(&self, wait: Duration) -> bool {
        let all = lock(&self.under_way);
        let _ = self
            .changed
            .wait_timeout_while(all, wait, |_| !self.closing.load(Ordering::SeqCst))
            .unwrap_or_else(|p| p.into_inner());
        self.closing.load(Ordering::SeqCst)
    }
}

/// Undoing one fault: everything it needs, owned. Listed in [`Reverts`] for as long as
/// it lives.
pub(crate) struct RevertJob {
    /// The fault's journal id.
    pub id: String,
    /// The configured fault's name.
    pub fault_name: String,
    pub(super) fault: Arc<dyn Fault>,
    pub(super) state: serde_json::Value,
    /// The process it acts on, if known.
    pub(super) pid: Option<u32>,
    pub(super) reason: String,
    pub(super) journal: Option<Arc<Journal>>,
    pub(super) reverts: Arc<Reverts>,
    pub(super) retry: Backoff,
    /// Whether it may wait to try again (not when run in its caller's stead).
    pub(super) may_wait: bool,
    /// Whether it leaves the list of reverts under way when it is over (not when it
    /// failed with no thread to try again on: it stays listed, and is named at exit).
    pub(super) unlist: bool,
}

impl RevertJob {
    /// Lists the job as under way.
    pub(super) fn listed(self) -> Self {
        self.reverts.add(&self.id, &self.fault_name, self.pid);
        self
    }

    /// The same job, known to act on process `pid`: no fault chooses it meanwhile.
    pub(crate) fn acting_on(mut self, pid: Option<u32>) -> Self {
        self.pid = pid;
        self.listed()
    }
}

/// A revert that had not answered when its waiter stopped waiting: it may still be in
/// effect, and the journal still lists it as active, so the next start tries again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Unfinished {
    /// The fault's journal id.
    pub id: String,
    /// The configured fault's name.
    pub fault: String,
    /// What it waits for, when not its plugin's answer (`which failed (...) and waits to
    /// try again`, `which waits for its plugin file to load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Unfinished {
    /// How it is named when given up on: what it waits for, by default its plugin's
    /// answer.
    pub(crate) fn waiting_for(&self) -> &str {
        self.why
            .as_deref()
            .unwrap_or("whose plugin has not answered")
    }
}

impl Drop for RevertJob {
    fn drop(&mut self) {
        if self.unlist {
            self.reverts.remove(&self.id);
        }
    }
}

/// Whether a failed revert may well succeed soon if tried again: a failure of the
/// moment (too many open files, a worker that died or did not answer: `Failed`, or a
/// kind this host does not know). The others (the system refused, the plugin cannot
/// revert, its state is bad, it panicked) are tried again too, but only at the longest
/// wait: they pass only once someone mends their cause.
fn passing(error: &PluginError) -> bool {
    matches!(error.kind, ErrorKind::Failed | ErrorKind::Other)
}

impl RevertJob {
    /// Reverts, journals the revert and logs it (`Revert (reason): result: summary`).
    /// A failure that may pass is tried again (see the module's doc) for as long as it
    /// takes; shutting down gives it one last try, and then it waits to be abandoned,
    /// still listed as under way.
    pub(crate) fn run(self) -> Outcome {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.reverts.note(&self.id, None);
            let error = match self.fault.revert(&self.state) {
                Ok(outcome) => {
                    let record = self.record(&outcome.result, &outcome.summary);
                    log::line(format!(
                        "Revert ({}): {}: {}",
                        self.reason, outcome.result, outcome.summary
                    ));
                    // Watchers hear of it once it is over: journaled, and no longer
                    // listed as under way (a dashboard that looks then sees it done).
                    drop(self);
                    crate::output::events::record(&record);
                    return outcome;
                }
                Err(error) => error,
            };
            let failed = Outcome {
                result: "failed".to_owned(),
                summary: error.to_string(),
                ..Outcome::default()
            };
            let record = (attempt == 1).then(|| self.record("failed", &failed.summary));
            // Tried again (or listed until the exit): still under way, as watchers see.
            if let Some(record) = record {
                crate::output::events::record(&record);
            }
            if !self.may_wait {
                log::line(format!(
                    "Revert ({}): failed: {error}; no thread to try again on: {} ({}) stays in effect, is named at exit, and the next start tries again",
                    self.reason, self.id, self.fault_name
                ));
                let mut parked = self;
                parked.unlist = false;
                return failed;
            }
            if self.reverts.closing.load(Ordering::SeqCst) && attempt > 1 {
                self.reverts.note(
                    &self.id,
                    Some(format!("which failed ({error}) at its last try")),
                );
                log::line(format!(
                    "Revert ({}): failed again: {error}; going to bed with {} ({}) still in effect",
                    self.reason, self.id, self.fault_name
                ));
                // Listed as under way until the process ends, so shutting down names it.
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let wait = if passing(&error) {
                self.retry.base(attempt)
            } else {
                self.retry.ceiling
            };
            log::line(format!(
                "Revert ({}): failed: {error}; trying again in {}",
                self.reason,
                humantime::format_duration(wait)
            ));
            self.reverts.note(
                &self.id,
                Some(format!("which failed ({error}) and waits to try again")),
            );
            self.reverts.nap(wait);
        }
    }

    /// Journals how the revert went (a failed one keeps the fault active there); the
    /// record, for the watchers to hear of when the job is over.
    fn record(&self, result: &str, summary: &str) -> Record {
        let record = Record::Revert(RevertRecord {
            id: self.id.clone(),
            at: Utc::now(),
            reason: self.reason.clone(),
            result: result.to_owned(),
            summary: summary.to_owned(),
        });
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.append(&record, true) {
                log::error(format!(
                    "journal: cannot record the revert of {} in {}: {e}",
                    self.id,
                    journal.path().display()
                ));
            }
        }
        record
    }
}

/// Sends the id when dropped, however the thread ends.
struct Done(mpsc::Sender<String>, Option<String>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(id) = self.1.take() {
            let _ = self.0.send(id);
        }
    }
}

/// Runs every job on a thread of its own, all at once, and waits for them until `wait`
/// is over; returns the ones still running then (they go on, and log when they end).
/// A job whose thread cannot be started runs here, in line.
pub(crate) fn run_all(jobs: Vec<RevertJob>, wait: Duration) -> Vec<Unfinished> {
    run_all_unless(jobs, wait, &|| false)
}

/// How often a wait that may be given up looks whether to give up.
const GIVE_UP_EVERY: Duration = Duration::from_millis(50);

/// [`run_all`], giving up the wait early once `give_up` says so (a stop signal during
/// a start's recovery: the daemon does not wait `plugin_timeout` for a hung plugin).
pub(crate) fn run_all_unless(
    jobs: Vec<RevertJob>,
    wait: Duration,
    give_up: &dyn Fn() -> bool,
) -> Vec<Unfinished> {
    let deadline = Instant::now().checked_add(wait);
    let (done, finished) = mpsc::channel::<String>();
    let mut running: Vec<Unfinished> = Vec::new();
    let mut reverts: Option<Arc<Reverts>> = None;
    for job in jobs {
        let unfinished = Unfinished {
            id: job.id.clone(),
            fault: job.fault_name.clone(),
            why: None,
        };
        reverts.get_or_insert_with(|| job.reverts.clone());
        let done = done.clone();
        let id = job.id.clone();
        // Shared with the thread, so that a thread that cannot start leaves it here.
        let job = Arc::new(Mutex::new(Some(job)));
        let spawned = std::thread::Builder::new()
            .name("revert".to_owned())
            .spawn({
                let job = job.clone();
                move || {
                    // Told as done even if the revert panics: a panic is an answer, not a
                    // hang (the panic hook has logged it).
                    let _done = Done(done, Some(id));
                    let taken = lock(&job).take();
                    if let Some(job) = taken {
                        job.run();
                    }
                }
            });
        match spawned {
            Ok(_) => running.push(unfinished),
            Err(e) => {
                log::line(format!(
                    "warning: cannot start a thread to revert {} ({e}); reverting in line, once",
                    unfinished.id
                ));
                let taken = lock(&job).take();
                if let Some(mut job) = taken {
                    // Its caller may be the async runtime: one try, no waiting.
                    job.may_wait = false;
                    job.run();
                }
            }
        }
    }
    drop(done);
    while !running.is_empty() && !give_up() {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // A signal handler cannot wake this wait: it looks again every so often.
        let slice = left.map_or(GIVE_UP_EVERY, |left| left.min(GIVE_UP_EVERY));
        match finished.recv_timeout(slice) {
            Ok(id) => running.retain(|r| r.id != id),
            Err(mpsc::RecvTimeoutError::Timeout) if left > Some(slice) || left.is_none() => {}
            Err(_) => break,
        }
    }
    if let Some(reverts) = reverts {
        for left in &mut running {
            left.why = reverts.why(&left.id);
        }
    }
    running
}
