//! The daemon's side of a fleet drill: the coordinator started with the node's name, and
//! a task that follows the fleet's state: when the fleet's switch goes on, or the node
//! is cut off from the coordinator, every fault in effect is reverted at once (the
//! engine already refuses new ones).

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    config::ConfigErrors,
    dispatch::Injector,
    engine::Engine,
    fleet::{config::FleetConfig, etcd::Etcd, Coordinator, Member},
    output::log,
};

/// Starts the coordinator of this node (`--node`, else the host's name).
pub fn connect(
    fleet: &FleetConfig,
    node: Option<&str>,
) -> Result<Arc<dyn Coordinator>, ConfigErrors> {
    let node = node.map_or_else(host_name, str::to_owned);
    let etcd = Etcd::start(fleet, &node, log::line)
        .map_err(|e| ConfigErrors(vec![format!("fleet: cannot start the coordinator: {e}")]))?;
    Ok(etcd)
}

/// The host's name (`/proc/sys/kernel/hostname`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Follows the fleet's state until `stopped`: reverts every fault in effect when the
/// switch goes on or the node is cut off, and says so.
pub async fn follow(
    injector: Injector,
    engine: Arc<Engine>,
    coordinator: Arc<dyn Coordinator>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut changes = coordinator.changes();
    let mut before = changes.borrow_and_update().clone();
    if let Some(switch) = &before.switch {
        log::line(format!("fleet: {switch}: starting paused"));
    }
    let mut every = tokio::time::interval(ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = every.tick() => {
                announce(&engine, &*coordinator);
                continue;
            }
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = changes.borrow_and_update().clone();
        match (&before.switch, &now.switch) {
            (None, Some(switch)) => {
                log::line(format!(
                    "fleet: {switch}: Nightmare Monkey pauses and reverts every active fault"
                ));
                injector.revert_for_fleet("fleet-pause").await;
            }
            (Some(_), None) => {
                log::line("fleet: the fleet's switch is off: playing again");
                crate::output::events::publish(
                    "switch",
                    serde_json::json!({ "paused": engine.paused().map(|p| p.to_string()) }),
                );
            }
            _ => {}
        }
        if before.cut_off.is_none() && now.cut_off.is_some() {
            injector.revert_for_fleet("fleet-cut-off").await;
        }
        if now.lease != before.lease {
            // However quickly a new lease followed the old one (and the cut-off went
            // unseen), what the old one held is gone from the fleet's count.
            injector.revert_outside_lease(now.lease.clone()).await;
        }
        before = now;
    }
}

/// Leaves the fleet at the end, nothing in effect: this node's slots free at once.
pub async fn leave(engine: &Arc<crate::engine::Engine>) {
    if let Some(coordinator) = engine.fleet().cloned() {
        let _ = tokio::task::spawn_blocking(move || coordinator.close()).await;
    }
}

/// How often a node says what it does (only a change is written).
const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Tells the coordinator what this node does now.
fn announce(engine: &Engine, coordinator: &dyn Coordinator) {
    let status = engine.status(chrono::Utc::now());
    coordinator.announce(Member {
        node: engine.node().unwrap_or("").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        paused: status.paused,
        in_effect: status.active.len() + status.reverting.len(),
    });
}
