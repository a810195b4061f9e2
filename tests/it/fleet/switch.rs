//! The fleet's switch against a fault in effect: a daemon executing for real (in a PID
//! namespace of its own) reverts what it holds when the switch goes on, and its victim
//! runs again.

use super::*;

#[test]
fn the_fleet_switch_reverts_a_fault_in_effect_within_a_second() {
    let etcd = Etcd::start("switch-revert");
    let node = Executing::start("switch-revert", &etcd, "max_concurrent: 1");
    // The namespace's `sleep 1000`, paused for 10 minutes: in effect, holding the slot.
    let intent = node.pause();
    until(DEADLINE, "the victim is stopped", || node.sleeper_stopped());
    assert_eq!(etcd.get_prefix("/nm/switch-revert/slots/").len(), 1);
    let cfg = node.dir.join("fleet.ron");
    let asked = Instant::now();
    let paused = monkey(&[
        "pause",
        "--fleet",
        "--reason",
        "stop the drill",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(paused.code, Some(0), "{}", paused.stderr);
    let set = Instant::now();
    let reverted = || {
        journal(&node.dir)
            .into_iter()
            .find(|r| r["type"] == "revert" && r["id"] == intent["id"])
    };
    until(DEADLINE, "the fault's revert is journaled", || {
        reverted().is_some()
    });
    let took = set.elapsed();
    let revert = reverted().unwrap();
    assert_eq!(revert["reason"], "fleet-pause", "{revert}");
    assert_eq!(revert["result"], "reverted", "{revert}");
    eprintln!(
        "reverted {took:?} after the fleet's switch was set, {:?} after pause --fleet was started",
        asked.elapsed()
    );
    // As the switch's own test allows: a second from the switch set, and a little for
    // the poll.
    assert!(
        took < Duration::from_millis(1200),
        "reverted {took:?} after the switch was set"
    );
    assert!(!node.sleeper_stopped(), "the victim runs again");
    // Its slot is given back, and the node refuses while the switch stands.
    until(DEADLINE, "the slot is given back", || {
        etcd.get_prefix("/nm/switch-revert/slots/").is_empty()
    });
    let refused = kill(node.port);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains(": stop the drill"), "{refused:?}");
}
