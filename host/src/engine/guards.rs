//! What stands between a trigger and a fault: the kill switch (the API's, a halt, the
//! pause file), the window and the budget, decided in one place ([`Engine::admits`] and
//! [`Engine::inject`] ask the same guards); and the engine's status.

use super::*;
use crate::domain::injection::Pause;

impl Engine {
    /// Why the monkey is paused, if it is.
    pub(crate) fn paused(&self) -> Option<Pause> {
        if self.closing.load(Ordering::SeqCst) {
            return Some(Pause::ShuttingDown);
        }
        if self.paused.load(Ordering::SeqCst) {
            if let Some(why) = lock(&self.halted).as_ref() {
                return Some(Pause::Halt(why.clone()));
            }
            return Some(Pause::Switch);
        }
        if let Some(fleet) = self.fleet_paused() {
            return Some(fleet);
        }
        match &self.guards.pause_file {
            Some(file) if file.exists() => Some(Pause::PauseFile(file.clone())),
            _ => None,
        }
    }

    /// The window's zone (the host's without a window): pictures are drawn in it.
    pub(crate) fn zone(&self) -> crate::domain::window::Zone {
        self.guards
            .window
            .as_ref()
            .map_or(crate::domain::window::Zone::Local, |w| w.zone.clone())
    }

    /// What it is doing at `now`.
    pub(crate) fn status(&self, now: DateTime<Utc>) -> EngineStatus {
        let paused = self.paused();
        let zone = self.zone();
        let shown = |at| ClockTime {
            at,
            zone: zone.clone(),
        };
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
            sleeping_until: sleeping.flatten().map(shown),
            paused: paused.map(|p| p.to_string()),
            execute: self.execute,
            active: lock(&self.active)
                .iter()
                .map(|(id, a)| ActiveFault {
                    id: id.clone(),
                    fault: a.fault.clone(),
                    due: a.due.map(shown),
                })
                .collect(),
            reverting: self.reverting(),
            budget: lock(&self.budget).left(now),
            journal: self.journal.as_ref().map(|j| j.path().to_owned()),
            fleet: self.fleet().is_some(),
            node: self
                .fleet()
                .map(|fleet| fleet.node().to_owned())
                .or_else(|| self.node().map(str::to_owned)),
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
        self.guard(fault, now, false).is_ok()
    }

    /// The guards every injection passes, in this order: the kill switch, the window, a
    /// configured fault whose plugin has loaded, the budget. With `take`, the budget's
    /// place is taken too, under the same lock as its check (give it back with
    /// [`Engine::forget`] if the fault does not happen). `Ok`: the fault's slot.
    pub(super) fn guard(
        &self,
        fault: &str,
        now: DateTime<Utc>,
        take: bool,
    ) -> Result<&Slot, InjectError> {
        if let Some(why) = self.paused() {
            return Err(InjectError::Paused(why));
        }
        if let Some(window) = &self.guards.window {
            if !window.contains(now) {
                return Err(InjectError::Sleeping {
                    opens: window.next_open(now),
                });
            }
        }
        let slot = self
            .faults
            .get(fault)
            .ok_or_else(|| InjectError::UnknownFault(fault.to_owned()))?;
        if let Some(plugin) = slot.fault.loading() {
            return Err(InjectError::Loading {
                fault: fault.to_owned(),
                plugin: plugin.to_owned(),
            });
        }
        let mut budget = lock(&self.budget);
        if let Err((retry_after, why)) = budget.check(now) {
            return Err(InjectError::OverBudget { retry_after, why });
        }
        if take {
            budget.record(now);
        }
        Ok(slot)
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

    /// Whether the API's kill switch is on (the pause file aside).
    pub(crate) fn switched_off(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The pause file, if one is configured.
    pub(crate) fn pause_file(&self) -> Option<&PathBuf> {
        self.guards.pause_file.as_ref()
    }
}
