//! The confirm step: a node frozen between a fault's admission and its apply, past its
//! lease, never applies that fault when it wakes (its admission is read again first).

use super::{config, etcd::Etcd, journal, signal, until, Executing};
use crate::util::{http, TestDir, DEADLINE};

#[test]
fn a_node_frozen_between_admission_and_apply_past_its_lease_never_applies() {
    let etcd = Etcd::start("confirm");
    let dir = TestDir::new("confirm");
    let (started, go, applied) = (dir.join("started"), dir.join("go"), dir.join("applied"));
    let lib = crate::util::built_lib("libslow_prepare.so");
    // The fleet's config, with the fixture that waits in `prepare` for `go`.
    let cfg = config(&dir, &etcd, "/nm/confirm", r#"lease_ttl: "2s""#);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    faults: {",
        &format!(
            "    plugins: [{lib:?}],\n    faults: {{\n        \"slow\": (plugin: \"slow-prepare\", config: (started_file: {started:?}, go_file: {go:?}, applied_file: {applied:?})),"
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let node = Executing::run("confirm", dir, &cfg);
    node.leased();
    let port = node.port;
    let asked = std::thread::spawn(move || {
        http(
            port,
            "POST",
            "/api/faults/slow",
            &[],
            br#"{"desc":"frozen"}"#,
        )
    });
    // Admitted (its slot held under the node's lease), and preparing.
    until(DEADLINE, "the fault is admitted and preparing", || {
        started.exists()
    });
    assert_eq!(etcd.get_prefix("/nm/confirm/slots/").len(), 1);
    let intent = journal(&node.dir)
        .into_iter()
        .find(|r| r["type"] == "intent")
        .expect("an intent");
    assert!(intent["fleet"]["revision"].as_i64().is_some(), "{intent}");

    // Frozen until its lease ends and its slot with it; then it goes on.
    let daemon = node.daemon_pid();
    signal(daemon, "STOP");
    until(DEADLINE, "the frozen node's lease ends", || {
        etcd.get_prefix("/nm/confirm/slots/").is_empty()
    });
    std::fs::write(&go, "").unwrap();
    signal(daemon, "CONT");

    let answer = asked.join().unwrap();
    assert!(
        [429, 503].contains(&answer.status) && answer.body.contains("\"fleet: "),
        "{answer:?}"
    );
    assert!(!applied.exists(), "applied after its lease ended");
    let records = journal(&node.dir);
    let of = |kind: &str| {
        records
            .iter()
            .filter(|r| r["type"] == kind && r["id"] == intent["id"])
            .collect::<Vec<_>>()
    };
    assert_eq!(of("prepared").len(), 1, "{records:#?}");
    let outcome = of("outcome");
    assert_eq!(outcome.len(), 1, "{records:#?}");
    assert_eq!(outcome[0]["result"], "failed", "{records:#?}");
    assert!(
        outcome[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("fleet: ")),
        "{records:#?}"
    );
    eprintln!("refused as it woke: {}", answer.body);
}
