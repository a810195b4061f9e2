//! A fleet drill's admissions, readable afterwards from etcd: `history --fleet` says
//! which node got which fault when, with the fencing token each node journaled; etcd
//! keeps them for as long as the config says, on its own clock.

use super::{config, etcd::Etcd, journal, kill, until, SKEW};
use crate::util::{monkey, Daemon, Sleeper, TestDir, DEADLINE};

/// Node b's clock runs three days ahead, more than the two days the admissions are
/// kept: it neither sweeps a's away nor has its own forgotten early.
#[test]
fn history_fleet_lists_which_node_got_which_fault_when() {
    let etcd = Etcd::start("admissions");
    let _sleeper = Sleeper::start();
    let dirs = [TestDir::new("fleet-adm-a"), TestDir::new("fleet-adm-b")];
    let fleet = r#"max_concurrent: 2, budget: (max: 5, per: "2d")"#;
    let cfgs: Vec<String> = dirs
        .iter()
        .map(|dir| config(dir, &etcd, "/nm/adm", fleet))
        .collect();
    let three_days = (3 * 24 * 3600 * 1000).to_string();
    let mut daemons: Vec<Daemon> = cfgs
        .iter()
        .zip([("a", "0"), ("b", three_days.as_str())])
        .map(|(cfg, (node, skew))| {
            Daemon::start_with_env(&["--config", cfg, "--node", node], &[(SKEW, skew)])
        })
        .collect();
    let ports: Vec<u16> = daemons.iter_mut().map(Daemon::port).collect();
    super::leased(ports[0], "a");
    super::leased(ports[1], "b");
    for port in [ports[0], ports[1], ports[0]] {
        let answer = kill(port);
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Given back in the background, after the dry run.
        until(DEADLINE, "the slot is given back", || {
            etcd.get_prefix("/nm/adm/slots/").is_empty()
        });
    }
    // Its fencing token and its slot, as the node journaled them.
    let token = |dir: &TestDir, nth: usize| {
        journal(dir)
            .into_iter()
            .filter(|r| r["type"] == "intent")
            .nth(nth)
            .map(|r| {
                let fleet = &r["fleet"];
                (
                    fleet["revision"].as_i64().unwrap(),
                    fleet["slot"].as_i64().unwrap(),
                )
            })
            .unwrap()
    };
    let expected = [
        ("a", token(&dirs[0], 0)),
        ("b", token(&dirs[1], 0)),
        ("a", token(&dirs[0], 1)),
    ];

    let run = monkey(&["history", "--fleet", "--config", &cfgs[1]]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0], "fleet /nm/adm: 3 admission(s) (kept 2days)",
        "{}",
        run.stdout
    );
    for (line, (node, (revision, slot))) in lines[1..].iter().zip(expected) {
        assert!(
            line.ends_with(&format!(
                "Z {node} process-kill (slot {slot}, revision {revision})"
            )),
            "{line}"
        );
    }
    assert_eq!(lines.len(), 4, "{}", run.stdout);

    let json = monkey(&["history", "--fleet", "--json", "--config", &cfgs[0]]);
    let all: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let got: Vec<(String, i64)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["node"].as_str().unwrap().to_owned(),
                a["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = expected
        .iter()
        .map(|(n, (r, _))| (n.to_string(), *r))
        .collect();
    assert_eq!(got, expected);

    // Each is tied to a lease of two days and up to a 24th more (the lease is used for
    // new admissions that long), so etcd ends it when its own clock says so.
    let kept = etcd.get_prefix("/nm/adm/admissions/");
    assert_eq!(kept.len(), 3, "{kept:?}");
    let leases: Vec<i64> = kept.iter().map(|(key, _)| etcd.lease_of(key)).collect();
    for lease in &leases {
        let ttl = etcd.granted_ttl(*lease);
        let two_days = 2 * 24 * 3600;
        assert!(
            (two_days..=two_days + 2 * 3600 + 60).contains(&ttl),
            "admissions kept {ttl} s under lease {lease:x}"
        );
    }
    let a_lease = etcd.lease_of(&kept[0].0);
    etcd.revoke(a_lease);
    let after = monkey(&["history", "--fleet", "--config", &cfgs[0]]);
    let lines: Vec<&str> = after.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", after.stdout);
    assert!(
        lines[0].starts_with("fleet /nm/adm: 1 admission(s)")
            && lines[1].contains(" b process-kill "),
        "{}",
        after.stdout
    );
    // --since cuts the list; --fleet wants the config that names the fleet.
    let none = monkey(&[
        "history",
        "--fleet",
        "--since",
        "2099-01-01T00:00:00Z",
        "--config",
        &cfgs[0],
    ]);
    assert!(
        none.stdout.starts_with("fleet /nm/adm: 0 admission(s)"),
        "{}",
        none.stdout
    );
    let usage = monkey(&["history", "--fleet"]);
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
    assert!(usage.stderr.contains("--config"), "{}", usage.stderr);
}

#[test]
fn history_fleet_reads_a_long_history_a_page_at_a_time() {
    let etcd = Etcd::start("pages");
    let dir = TestDir::new("fleet-pages");
    let cfg = config(&dir, &etcd, "/nm/pages", "");
    // Eleven admissions, read three at a time: four pages, the last one short.
    for n in 0..11 {
        let ms = 1_796_000_000_000_i64 + n * 60_000;
        etcd.put(
            &format!("/nm/pages/admissions/{ms:016}-web-{n}-0"),
            &format!(
                r#"{{"at":"2026-12-01T00:{n:02}:00.000Z","node":"web-{n}","fault":"pause","slot":0}}"#
            ),
        );
    }
    let ranges = || etcd.metric("etcd_debugging_mvcc_range_total");
    let before = ranges();
    let run: crate::util::Run = crate::util::command()
        .env("NIGHTMARE_MONKEY_FLEET_PAGE", "3")
        .args(["history", "--fleet", "--json", "--config", &cfg])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let all: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let nodes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..11).map(|n| format!("web-{n}")).collect();
    assert_eq!(nodes, expected, "each once, in order, across the pages");
    let read = ranges() - before;
    assert!(read >= 4.0, "{read} range(s): not a page at a time");
}
