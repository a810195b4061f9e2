//! A fleet refusal is a refusal like the budget's: it draws nothing from the fault's
//! stream (the admission comes before the draw), and an unreachable coordinator says
//! when to try again.

use super::*;

#[test]
fn a_fleet_refusal_draws_nothing_and_an_unreachable_coordinator_says_when_to_retry() {
    let mut etcd = Etcd::start("no-draw");
    let _sleeper = Sleeper::start();
    let dir = TestDir::new("fleet-no-draw");
    let cfg = config(&dir, &etcd, "/nm/no-draw", "max_concurrent: 1");
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a", "--seed", "7"]);
    let port = daemon.port();
    leased(port, "a");
    let free = || {
        until(DEADLINE, "the slot is given back", || {
            etcd.get_prefix("/nm/no-draw/slots/").is_empty()
        })
    };
    // The only slot held elsewhere: three refusals.
    etcd.put(
        "/nm/no-draw/slots/0",
        r#"{"node":"elsewhere","fault":"x","at":"now"}"#,
    );
    for _ in 0..3 {
        let refused = kill(port);
        assert_eq!(refused.status, 429, "{refused:?}");
    }
    etcd.delete("/nm/no-draw/slots/0");
    // The next two admissions draw the stream's first two values: the refusals drew none.
    for _ in 0..2 {
        assert_eq!(kill(port).status, 200);
        free();
    }
    let records = journal(&dir);
    let intents: Vec<_> = records.iter().filter(|r| r["type"] == "intent").collect();
    let positions: Vec<_> = intents.iter().map(|r| &r["stream_position"]).collect();
    assert_eq!(positions, [0, 1], "{intents:#?}");
    assert_eq!(intents[0]["stream"], "fault/process-kill@node/a");
    assert_eq!(
        records.iter().filter(|r| r["type"] == "refused").count(),
        3,
        "{records:#?}"
    );

    // The coordinator gone: 503, with when to try again.
    etcd.stop();
    let refused = kill(port);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("fleet: the coordinator is unreachable (")),
        "{refused:?}"
    );
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    let last = journal(&dir).pop().unwrap();
    assert_eq!(last["type"], "refused", "{last}");
    assert_eq!(last["reason"], refused.json()["message"], "{last}");
    let metrics = http(port, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains(r#"nightmare_monkey_refusals_total{reason="fleet"} 4"#),
        "{metrics}"
    );
}

/// `status --fleet` counts as admission decides: a slot key whose value does not read is
/// held (as `?`), the fleet's limit is its most careful node's, and a budget key no
/// admission takes counts for nothing.
#[test]
fn status_counts_the_slots_limit_and_budget_as_admission_does() {
    let etcd = Etcd::start("status-as-admission");
    let dir = TestDir::new("fleet-status-as-admission");
    let cfg = config(
        &dir,
        &etcd,
        "/nm/sa",
        r#"max_concurrent: 5, budget: (max: 1, per: "30s"),"#,
    );
    etcd.put("/nm/sa/slots/0", "garbage");
    etcd.put("/nm/sa/limits/careful", "1");
    etcd.put("/nm/sa/budget/x", "junk");
    etcd.put("/nm/sa/budget/1", "junk");
    let status = monkey(&["status", "--fleet", "--config", &cfg]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(
        status
            .stdout
            .starts_with("fleet /nm/sa: 1 fault(s) at once (a node says so; this config says 5)\n"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("\n  slots: 1 of 1 held: slot 0: ? (?, since ?)\n"),
        "{}",
        status.stdout
    );
    // Read into a pipe nobody reads: no panic, no error.
    for args in [
        &["status", "--fleet"][..],
        &["history", "--fleet"],
        &["history", "--fleet", "--json"],
    ] {
        let mut child = crate::util::command()
            .args(args)
            .args(["--config", &cfg])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(
        status
            .stdout
            .contains("fleet budget: 0 of 1 per 30s used; the next admission fits now"),
        "{}",
        status.stdout
    );
}
