//! The fleet's admission of a fault, after the local guards and before the intent: the
//! coordinator's one transaction, a refusal journaled like a steady state's, and the
//! slot held while the fault is in flight or in effect (given back once its revert is
//! journaled, or at once when nothing stays in effect).

use super::*;
use crate::{
    domain::injection::{Admission, Pause},
    fleet::Coordinator,
};

/// The coordinator, and the slots held by faults in effect, by id (given back when
/// their revert is done: [`Reverts`] calls [`Admissions::release`]).
#[derive(Default)]
pub(crate) struct Admissions {
    coordinator: std::sync::OnceLock<Arc<dyn Coordinator>>,
    held: Mutex<BTreeMap<String, Admission>>,
}

impl std::fmt::Debug for Admissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admissions")
            .field("fleet", &self.coordinator.get().is_some())
            .field("held", &self.held)
            .finish()
    }
}

impl Admissions {
    /// Gives back the slot fault `id` held, if it held one.
    pub(crate) fn release(&self, id: &str) {
        let admission = lock(&self.held).remove(id);
        if let (Some(admission), Some(coordinator)) = (admission, self.coordinator.get()) {
            coordinator.release(&admission);
        }
    }
}

/// A slot held by an injection under way: given back when this drops, unless the fault
/// stays in effect ([`Held::keep`]).
pub(super) struct Held<'a> {
    admissions: &'a Admissions,
    admission: Option<Admission>,
}

impl Held<'_> {
    /// Fault `id` stays in effect: its slot is held until its revert is done. Called
    /// before the fault is listed as active, so no revert can end before it.
    pub(super) fn keep(&mut self, id: &str) {
        if let Some(admission) = self.admission.take() {
            lock(&self.admissions.held).insert(id.to_owned(), admission);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let (Some(admission), Some(coordinator)) =
            (self.admission.take(), self.admissions.coordinator.get())
        {
            coordinator.release(&admission);
        }
    }
}

impl Engine {
    /// The same engine, every fault admitted by `coordinator` first.
    pub(crate) fn with_fleet(self, coordinator: Arc<dyn Coordinator>) -> Self {
        let _ = self.reverts.admissions.coordinator.set(coordinator);
        self
    }

    /// The fleet's coordinator, in a fleet drill.
    pub(crate) fn fleet(&self) -> Option<&Arc<dyn Coordinator>> {
        self.reverts.admissions.coordinator.get()
    }

    /// Whether this node is cut off from the fleet's coordinator (it reverts what it
    /// holds, and admits nothing).
    pub(super) fn fleet_cut_off(&self) -> bool {
        self.fleet().is_some_and(|c| c.state().cut_off.is_some())
    }

    /// The faults in effect admitted under a lease other than `lease` (the node's lease
    /// now; `None`: it has none): the fleet no longer counts them.
    pub(crate) fn held_outside_lease(&self, lease: Option<&str>) -> Vec<String> {
        lock(&self.reverts.admissions.held)
            .iter()
            .filter(|(_, admission)| Some(admission.lease.as_str()) != lease)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The fleet's switch, while it is on.
    pub(super) fn fleet_paused(&self) -> Option<Pause> {
        let switch = self.fleet()?.state().switch?;
        Some(Pause::Fleet(switch.to_string()))
    }

    /// Asks the coordinator to admit `ask` (none in a single-host drill). A refusal is
    /// journaled `refused` and counted, its budget place given back (taken at `now`);
    /// no intent, no draw.
    pub(super) fn admit(&self, ask: &Ask, now: DateTime<Utc>) -> Result<Held<'_>, InjectError> {
        let admissions = &self.reverts.admissions;
        let Some(coordinator) = admissions.coordinator.get() else {
            return Ok(Held {
                admissions,
                admission: None,
            });
        };
        let asked = std::time::Instant::now();
        let admitted = coordinator.admit(&ask.fault);
        metrics::get().admission(asked.elapsed());
        match admitted {
            Ok(admission) => Ok(Held {
                admissions,
                admission: Some(admission),
            }),
            Err(refused) => {
                self.forget(now);
                metrics::get().refused(Refusal::Fleet);
                let error = InjectError::Fleet {
                    why: refused.why,
                    retry_after: refused.retry_after,
                    unreachable: refused.unreachable,
                };
                self.note(&Record::Refused(RefusedRecord {
                    id: format!(
                        "{}-{}",
                        self.run,
                        self.next_id.fetch_add(1, Ordering::SeqCst)
                    ),
                    at: now,
                    fault: ask.fault.clone(),
                    trigger: ask.trigger.to_owned(),
                    desc: ask.desc.clone(),
                    reason: error.to_string(),
                }));
                Err(error)
            }
        }
    }
}

impl Engine {
    /// Checks, just before a real fault is applied, that its admission still holds (a
    /// fresh read: a node frozen past its lease between admission and apply must not
    /// apply what the fleet no longer counts). If it does not, the intent's outcome is
    /// journaled failed, and the fault refused.
    pub(super) fn confirm_fleet(&self, intent: &Intent, dry_run: bool) -> Result<(), InjectError> {
        let (Some(admission), Some(coordinator), false) = (&intent.fleet, self.fleet(), dry_run)
        else {
            return Ok(());
        };
        let Err(refused) = coordinator.confirm(admission) else {
            return Ok(());
        };
        metrics::get().refused(Refusal::Fleet);
        let error = InjectError::Fleet {
            why: refused.why,
            retry_after: refused.retry_after,
            unreachable: refused.unreachable,
        };
        let failed = OutcomeRecord::failed(&intent.id, Utc::now(), 0, error.to_string());
        if let Err(e) = self.write(&Record::Outcome(failed), true) {
            log::line(format!(
                "journal: cannot record the outcome of {} in {}: {e}",
                intent.id,
                self.journal_path()
            ));
        }
        Err(error)
    }
}

impl Held<'_> {
    /// The admission, for the intent.
    pub(super) fn admission(&self) -> Option<Admission> {
        self.admission.clone()
    }
}
