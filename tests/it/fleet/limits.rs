//! A rollout that changes `max_concurrent`: the fleet keeps the smallest any of its
//! nodes says, until that node leaves.

use super::{config, etcd::Etcd, kill, leased, until};
use crate::util::{Daemon, Sleeper, TestDir, DEADLINE};

#[test]
fn nodes_with_different_max_concurrent_keep_the_smallest() {
    let etcd = Etcd::start("limits");
    let _sleeper = Sleeper::start();
    let dirs = [
        TestDir::new("fleet-limits-a"),
        TestDir::new("fleet-limits-b"),
    ];
    let mut daemons: Vec<Daemon> = dirs
        .iter()
        .zip([("a", 2), ("b", 1)])
        .map(|(dir, (node, max))| {
            let cfg = config(dir, &etcd, "/nm/limits", &format!("max_concurrent: {max}"));
            Daemon::start(&["--config", &cfg, "--node", node])
        })
        .collect();
    let (a, b) = (daemons[0].port(), daemons[1].port());
    leased(a, "a");
    leased(b, "b");
    // One slot held elsewhere: node a (2) is refused, since node b says 1.
    etcd.put(
        "/nm/limits/slots/0",
        r#"{"node":"elsewhere","fault":"x","at":"now"}"#,
    );
    let refused = kill(a);
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.json()["message"],
        "fleet: slots full (1 of 1 held: elsewhere; the fleet's smallest max_concurrent is node b's, this node's is 2)"
    );
    let refused = kill(b);
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.json()["message"],
        "fleet: slots full (1 of 1 held: elsewhere)"
    );
    // Node b leaves (its lease ends at bedtime): node a's 2 is the fleet's again.
    let mut b_daemon = daemons.pop().unwrap();
    b_daemon.signal("TERM");
    assert_eq!(b_daemon.wait_exit(), Some(0));
    until(DEADLINE, "node b's limit is gone", || {
        etcd.get_prefix("/nm/limits/limits/").len() == 1
    });
    let admitted = kill(a);
    assert_eq!(admitted.status, 200, "{admitted:?}");
}
