//! The fleet's controls through the one door: every fault in effect reverted when the
//! fleet's switch goes on or the node loses its coordinator.

use super::*;

impl Injector {
    /// Reverts every active fault for `reason`, as the kill switch does (each on a
    /// thread of its own, the answer after [`SWITCH_WAIT`] at most), without turning the
    /// node's own switch on: the fleet's state already refuses every new fault.
    pub async fn revert_for_fleet(&self, reason: &'static str) {
        let engine = self.engine.clone();
        if on_own_thread(reason, move || engine.revert_all(reason, SWITCH_WAIT))
            .await
            .is_none()
        {
            self.engine.revert_all(reason, Duration::ZERO);
        }
        events::publish(
            "switch",
            serde_json::json!({ "paused": self.engine.paused().map(|p| p.to_string()) }),
        );
    }
}

impl Injector {
    /// Reverts every fault in effect admitted under a lease other than `lease` (the
    /// node's lease now), as [`Injector::revert_for_fleet`] does.
    pub async fn revert_outside_lease(&self, lease: Option<String>) {
        let engine = self.engine.clone();
        let reason = "fleet-cut-off";
        let lease_now = lease.clone();
        let on_thread =
            move || engine.revert_outside_lease(lease_now.as_deref(), reason, SWITCH_WAIT);
        if on_own_thread(reason, on_thread).await.is_none() {
            self.engine
                .revert_outside_lease(lease.as_deref(), reason, Duration::ZERO);
        }
    }
}

impl Injector {
    /// Turns the fleet's switch on (by `by`, for `reason`) or off in the coordinator, on
    /// a thread of its own; what the fleet is told. `Err(None)`: this daemon is in no
    /// fleet; `Err(Some(why))`: the coordinator could not be written.
    pub async fn fleet_switch(
        &self,
        on: bool,
        by: String,
        reason: String,
    ) -> Result<String, Option<String>> {
        let coordinator = self.engine.fleet().cloned().ok_or(None)?;
        let switch = on.then(|| crate::fleet::Switch {
            by,
            reason,
            at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let told = match &switch {
            Some(switch) => format!(
                "{switch}: every daemon of the fleet pauses and reverts its faults within a second"
            ),
            None => "the fleet's switch is off: every daemon of the fleet plays again".to_owned(),
        };
        match on_own_thread("fleet-switch", move || coordinator.set_switch(switch)).await {
            Some(Ok(())) => Ok(told),
            Some(Err(why)) => Err(Some(why)),
            None => Err(Some("no thread to write it on".to_owned())),
        }
    }
}

impl Injector {
    /// The fleet as its coordinator holds it now, read on a thread of its own. `None`:
    /// this daemon is in no fleet.
    pub async fn fleet_view(&self) -> Option<Result<crate::fleet::admin::View, String>> {
        let coordinator = self.engine.fleet().cloned()?;
        Some(
            on_own_thread("fleet-view", move || coordinator.view())
                .await
                .unwrap_or_else(|| Err("no thread to read it on".to_owned())),
        )
    }
}
