//! Reverts as jobs: what undoing one fault needs (the fault, its revert state, the
//! journal), owned, so that it runs on a thread of its own. A revert never waits for a
//! thread of the injections' pool, and whoever waits for one (the kill switch, shutdown,
//! recovery at start) waits only as long as it chose to: a plugin whose `revert` hangs
//! is abandoned, named, and left in the journal for the next start to try again.

use std::{
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use nightmare_monkey_plugin_api::sdk::Outcome;

use crate::{
    domain::{
        injection::Fault,
        journal::{Journal, Record, RevertRecord},
    },
    output::log,
    support::lock::lock,
};

/// The reverts under way, by id (with their fault's name): listed from the moment a
/// revert is taken off the active faults until its plugin answers.
pub(crate) type Reverting = Arc<Mutex<std::collections::BTreeMap<String, String>>>;

/// Undoing one fault: everything it needs, owned. Listed in [`Reverting`] for as long as
/// it lives.
pub(crate) struct RevertJob {
    /// The fault's journal id.
    pub id: String,
    /// The configured fault's name.
    pub fault_name: String,
    pub(super) fault: Arc<dyn Fault>,
    pub(super) state: serde_json::Value,
    pub(super) reason: String,
    pub(super) journal: Option<Arc<Journal>>,
    pub(super) reverting: Reverting,
}

/// A revert that had not answered when its waiter stopped waiting: it may still be in
/// effect, and the journal still lists it as active, so the next start tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfinished {
    /// The fault's journal id.
    pub id: String,
    /// The configured fault's name.
    pub fault: String,
}

impl Drop for RevertJob {
    fn drop(&mut self) {
        lock(&self.reverting).remove(&self.id);
    }
}

impl RevertJob {
    /// Reverts, journals the revert and logs it (`Revert (reason): result: summary`).
    pub(crate) fn run(self) -> Outcome {
        let outcome = self.fault.revert(&self.state).unwrap_or_else(|e| Outcome {
            result: "failed".to_owned(),
            summary: e.to_string(),
            ..Outcome::default()
        });
        let record = RevertRecord {
            id: self.id.clone(),
            at: Utc::now(),
            reason: self.reason.clone(),
            result: outcome.result.clone(),
            summary: outcome.summary.clone(),
        };
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.append(&Record::Revert(record), true) {
                log::error(format!(
                    "journal: cannot record the revert of {} in {}: {e}",
                    self.id,
                    journal.path().display()
                ));
            }
        }
        log::line(format!(
            "Revert ({}): {}: {}",
            self.reason, outcome.result, outcome.summary
        ));
        outcome
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
    let deadline = Instant::now().checked_add(wait);
    let (done, finished) = mpsc::channel::<String>();
    let mut running: Vec<Unfinished> = Vec::new();
    for job in jobs {
        let unfinished = Unfinished {
            id: job.id.clone(),
            fault: job.fault_name.clone(),
        };
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
                    "warning: cannot start a thread to revert {} ({e}); reverting in line",
                    unfinished.id
                ));
                let taken = lock(&job).take();
                if let Some(job) = taken {
                    job.run();
                }
            }
        }
    }
    drop(done);
    while !running.is_empty() {
        let answer = match deadline {
            Some(deadline) => {
                finished.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
            None => finished
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match answer {
            Ok(id) => running.retain(|r| r.id != id),
            Err(_) => break,
        }
    }
    running
}
