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

/// A switch write that only ran out of time may still be applied (etcd took it and did
/// not answer): `pause --fleet` never says that nothing was changed then. It says so only
/// when no member could have received it.
#[test]
fn a_switch_write_that_ran_out_of_time_is_never_said_unchanged() {
    let etcd = Etcd::start("switch-slow");
    let dir = TestDir::new("fleet-switch-slow");
    let cfg = config(&dir, &etcd, "/nm/switch-slow", "max_concurrent: 1");
    let pause = |cfg: &str| monkey(&["pause", "--fleet", "--reason", "incident", "--config", cfg]);
    etcd.freeze(true);
    let slow = pause(&cfg);
    etcd.freeze(false);
    assert_eq!(slow.code, Some(1), "{}", slow.stderr);
    assert!(
        slow.stderr
            .contains("; it may still be written: read it back with status --fleet"),
        "{}",
        slow.stderr
    );
    assert!(
        !slow.stderr.contains("nothing was changed"),
        "{}",
        slow.stderr
    );
    // Nothing listens there: the write never left.
    let closed = crate::util::ReservedPort::reserve();
    let nowhere = config_with(
        &dir,
        &[format!("http://127.0.0.1:{}", closed.port())],
        "/nm/switch-slow",
        "",
        "max_concurrent: 1",
    );
    let refused = pause(&nowhere);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("; nothing was changed\n"),
        "{}",
        refused.stderr
    );
}
