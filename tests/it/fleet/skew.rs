//! The fleet's gap and budget on etcd's clock: nodes whose clocks are ten minutes apart
//! (the daemon's test hook moves the wall clock its fleet code reads) keep them all the
//! same.

use std::time::{Duration, Instant};

use super::{config, etcd::Etcd, kill, leased, until, SKEW};
use crate::util::{Daemon, Sleeper, TestDir, DEADLINE};
const GAP: Duration = Duration::from_secs(3);

#[test]
fn the_gap_and_the_budget_hold_across_nodes_whose_clocks_disagree() {
    let etcd = Etcd::start("skew");
    let _sleeper = Sleeper::start();
    let dirs = [TestDir::new("fleet-skew-a"), TestDir::new("fleet-skew-b")];
    let fleet = r#"max_concurrent: 2, budget: (max: 2, per: "5m"), min_gap: "3s""#;
    // Node a's clock is ten minutes behind, node b's ten minutes ahead.
    let mut daemons: Vec<Daemon> = dirs
        .iter()
        .zip([("a", "-600000"), ("b", "600000")])
        .map(|(dir, (node, skew))| {
            let cfg = config(dir, &etcd, "/nm/skew", fleet);
            Daemon::start_with_env(&["--config", &cfg, "--node", node], &[(SKEW, skew)])
        })
        .collect();
    let (a, b) = (daemons[0].port(), daemons[1].port());
    leased(a, "a");
    leased(b, "b");

    let asked = Instant::now();
    let first = kill(a);
    assert_eq!(first.status, 200, "{first:?}");
    // Twenty minutes later by b's clock, and yet the gap has not passed.
    let refused = kill(b);
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(
                "fleet: min gap: at least 3s between the fleet's faults; the next fits in "
            ),
        "{}",
        refused.body
    );
    until(DEADLINE, "b is admitted once the gap passed", || {
        kill(b).status == 200
    });
    let gap = asked.elapsed();
    assert!(
        gap >= GAP,
        "b admitted {gap:?} after a's admission was asked"
    );
    // Two in five minutes: both nodes refused, whatever their clocks say (by the gap
    // first, then by the budget).
    for port in [a, b] {
        let mut refused = kill(port);
        until(
            DEADLINE,
            "refused by the budget once the gap passed",
            || {
                refused = kill(port);
                assert_eq!(refused.status, 429, "{refused:?}");
                !refused.body.contains("fleet: min gap: ")
            },
        );
        let message = refused.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.starts_with("fleet: fleet budget: 2 faults per 5m used; the next fits in "),
            "{message}"
        );
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((280..=302).contains(&retry), "{retry}");
    }
}
