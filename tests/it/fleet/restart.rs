//! Failing closed beyond one node: a holder killed outright and started again reverts
//! its fault from the journal; every etcd member stopped, every daemon refuses and
//! reverts before its lease ends.

use super::*;

#[test]
fn a_holder_killed_and_started_again_reverts_its_fault_from_the_journal() {
    let etcd = Etcd::start("restart");
    let dir = TestDir::new("fleet-restart");
    let cfg = config(&dir, &etcd, "/nm/restart", r#"lease_ttl: "2s""#);
    let (log, again) = (dir.join("log"), dir.join("log-again"));
    // The daemon, then, once the test has killed it, the same daemon started again in
    // the same namespace (its victim still there, still stopped).
    let daemon = format!(r#""$NM" --config {cfg} --execute --node restart"#);
    let script = format!(
        "sleep 1000 & {daemon} 2>{}; {daemon} 2>{} & wait",
        log.display(),
        again.display()
    );
    let node = Executing::run_script("restart", dir, &script);
    let intent = node.pause();
    until(DEADLINE, "the victim is stopped", || node.sleeper_stopped());
    signal(node.daemon_pid(), "KILL");
    let killed = Instant::now();
    let reverted = || {
        journal(&node.dir)
            .into_iter()
            .find(|r| r["type"] == "revert" && r["id"] == intent["id"])
    };
    until(
        DEADLINE,
        "the restarted daemon reverts from the journal",
        || reverted().is_some(),
    );
    let revert = reverted().unwrap();
    let text = std::fs::read_to_string(&again).unwrap_or_default();
    assert_eq!(revert["reason"], "recovery", "{revert}: {text}");
    assert_eq!(revert["result"], "reverted", "{revert}: {text}");
    assert!(!node.sleeper_stopped(), "the victim runs again: {text}");
    eprintln!(
        "reverted {:?} after its holder was killed",
        killed.elapsed()
    );
    // The killed holder's slot frees with its lease, whatever the new daemon does.
    until(DEADLINE, "the slot frees", || {
        etcd.get_prefix("/nm/restart/slots/").is_empty()
    });
}

#[test]
fn every_etcd_member_stopped_every_daemon_refuses_and_reverts_before_its_lease_ends() {
    let mut cluster = Etcd::cluster("all-down", 3);
    let members: Vec<&Etcd> = cluster.iter().collect();
    let fleet = r#"max_concurrent: 2, lease_ttl: "3s""#;
    let nodes: Vec<Executing> = ["all-down-a", "all-down-b"]
        .into_iter()
        .map(|name| {
            let dir = TestDir::new(name);
            let cfg = config_on(&dir, &members, "/nm/all-down", fleet);
            Executing::run(name, dir, &cfg)
        })
        .collect();
    let intents: Vec<serde_json::Value> = nodes.iter().map(Executing::pause).collect();
    for node in &nodes {
        until(DEADLINE, "the victim is stopped", || node.sleeper_stopped());
    }
    assert_eq!(cluster[0].get_prefix("/nm/all-down/slots/").len(), 2);
    let stopped = Instant::now();
    for member in &mut cluster {
        member.stop();
    }
    // Each node's revert as first seen, polled together.
    let mut seen: Vec<Option<Duration>> = vec![None; nodes.len()];
    until(DEADLINE, "every cut-off node reverts", || {
        for (i, (node, intent)) in nodes.iter().zip(&intents).enumerate() {
            let done = journal(&node.dir)
                .iter()
                .any(|r| r["type"] == "revert" && r["id"] == intent["id"]);
            if done && seen[i].is_none() {
                seen[i] = Some(stopped.elapsed());
            }
        }
        seen.iter().all(Option::is_some)
    });
    for ((node, intent), took) in nodes.iter().zip(&intents).zip(seen) {
        let took = took.unwrap();
        let log = std::fs::read_to_string(node.dir.join("log")).unwrap_or_default();
        let revert = journal(&node.dir)
            .into_iter()
            .find(|r| r["type"] == "revert" && r["id"] == intent["id"])
            .unwrap();
        assert_eq!(revert["reason"], "fleet-cut-off", "{revert}: {log}");
        assert_eq!(revert["result"], "reverted", "{revert}: {log}");
        eprintln!(
            "{} reverted {took:?} after etcd stopped (lease TTL 3s)",
            node.node
        );
        assert!(
            took < Duration::from_secs(3),
            "{} reverted {took:?} after etcd stopped, past its lease (TTL 3s): {log}",
            node.node
        );
        assert!(!node.sleeper_stopped(), "{}'s victim runs again", node.node);
        let refused = kill(node.port);
        assert_eq!(refused.status, 503, "{refused:?}");
        assert!(
            refused
                .body
                .contains("fleet: the coordinator is unreachable"),
            "{refused:?}"
        );
    }
}
