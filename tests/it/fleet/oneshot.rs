//! The fleet seen from `kill --config`, which runs no daemon and holds no lease: a real
//! fault from it would pass the fleet's limits and switch, so it is refused; a dry run
//! shows what a network fault would spare, the coordinator's every member included.

use crate::util::{in_namespace, monkey, TestDir};

/// A config in `dir` with a net-partition of all of loopback and a fleet on two etcd
/// endpoints that no one listens on (nothing here reaches them).
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("fleet.ron");
    std::fs::write(
        &file,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    timer: (enabled: false),
    state_dir: {dir:?},
    faults: {{"net-partition": (config: (peers: ["127.0.0.0/8"]))}},
    fleet: (coordinator: Etcd(endpoints: ["http://127.0.0.1:9", "http://127.0.0.2:23790"], prefix: "/nm/oneshot")),
)"#
        ),
    )
    .unwrap();
    file
}

/// `kill --config F --execute` with a `fleet:` section: refused before anything is
/// journaled or applied. Run in namespaces of the test's own (a network namespace too),
/// so that even a broken refusal could cut nothing but them.
#[test]
fn a_real_fault_from_kill_config_is_refused_when_a_fleet_admits_faults() {
    let dir = TestDir::new("fleet-oneshot-execute");
    let file = config(&dir);
    let run = in_namespace(&format!(
        "timeout 20 unshare --net \"$NM\" kill --config {file:?} --fault net-partition --execute; echo code $?"
    ));
    assert!(
        run.stdout.contains("code 2"),
        "{} {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "error: --config {}: its fleet: section admits real faults only through the daemon",
            file.display()
        )),
        "{}",
        run.stderr
    );
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    assert!(journal.is_empty(), "nothing is journaled: {journal}");
}

/// The dry run of a partition that covers the coordinator spares every endpoint of it,
/// though no connection to them is open.
#[test]
fn a_network_fault_spares_every_member_of_the_coordinator() {
    let dir = TestDir::new("fleet-oneshot-spared");
    let file = config(&dir);
    let run = monkey(&[
        "kill",
        "--config",
        file.to_str().unwrap(),
        "--fault",
        "net-partition",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(answer["result"], "dry-run");
    let script = answer["details"]["nft"].as_str().unwrap();
    let chain = answer["details"]["chains"][1].as_str().unwrap();
    let rules: Vec<&str> = script.lines().collect();
    let at = |rule: &str| {
        let line = format!("add rule inet nightmare_monkey {chain} {rule}");
        rules
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no `{line}` in {script}"))
    };
    let drop = at("ip daddr 127.0.0.0/8 drop");
    for member in [
        "ip daddr 127.0.0.1 tcp dport 9 accept",
        "ip daddr 127.0.0.2 tcp dport 23790 accept",
    ] {
        assert!(
            at(member) < drop,
            "{member} comes before the drop: {script}"
        );
    }
}
