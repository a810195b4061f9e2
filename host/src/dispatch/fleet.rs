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
