//! The scripts pinned, the refusals, and what a revert state may name.

use super::*;

fn fault(kind: Action, text: &str) -> Result<PacketFault, String> {
    sdk::parse_config::<Config>(text)
        .and_then(|c| PacketFault::new(kind, c))
        .map_err(|e| e.message)
}

/// The script, pinned: it is what the dry run shows and what nft runs.
#[test]
fn a_loss_is_one_chain_per_hook_sparing_ssh_and_the_api_first() {
    let loss = fault(
        Action::Loss(0),
        r#"(percent: 30, protocol: "udp", ports: [9999], direction: "in")"#,
    )
    .unwrap();
    let (script, chains) = loss.script(0xab, &[22, 8080], &[]);
    assert_eq!(chains, ["loss_00000000000000ab_in"]);
    assert_eq!(
        script,
        "add table inet nightmare_monkey
create chain inet nightmare_monkey loss_00000000000000ab_in { type filter hook input priority filter; policy accept; }
add rule inet nightmare_monkey loss_00000000000000ab_in tcp dport { 22, 8080 } accept
add rule inet nightmare_monkey loss_00000000000000ab_in tcp sport { 22, 8080 } accept
add rule inet nightmare_monkey loss_00000000000000ab_in meta l4proto udp th dport 9999 numgen random mod 100 < 30 drop
add rule inet nightmare_monkey loss_00000000000000ab_in meta l4proto udp th sport 9999 numgen random mod 100 < 30 drop
"
    );
    let fine = fault(Action::Loss(0), "(percent: 0.5)").unwrap();
    let (script, chains) = fine.script(1, &[], &[]);
    assert_eq!(chains.len(), 2, "both ways by default");
    assert!(script.ends_with(
        "add rule inet nightmare_monkey loss_0000000000000001_out numgen random mod 10000 < 50 drop\n"
    ));
    assert!(chains.iter().all(|c| is_chain_name(c)));
    let coordinator = (std::net::IpAddr::from([10, 0, 0, 9]), 2379);
    let (script, _) = fine.script(1, &[], &[coordinator]);
    assert!(script.contains("loss_0000000000000001_in ip daddr 10.0.0.9 tcp dport 2379 accept\nadd rule inet nightmare_monkey loss_0000000000000001_in ip saddr 10.0.0.9 tcp sport 2379 accept\n"), "{script}");
    let all = fault(Action::Loss(0), "(percent: 100)").unwrap();
    assert!(all
        .script(1, &[], &[])
        .0
        .ends_with("loss_0000000000000001_out drop\n"));
}

#[test]
fn a_reject_resets_tcp_and_answers_the_rest_unreachable() {
    let reject = fault(
        Action::Reject,
        r#"(peers: ["127.0.0.2"], direction: "out")"#,
    )
    .unwrap();
    let (script, _) = reject.script(2, &[], &[]);
    let rules: Vec<&str> = script.lines().skip(5).collect();
    assert_eq!(
        rules,
        [
            "add rule inet nightmare_monkey reject_0000000000000002_out ip daddr 127.0.0.2 meta l4proto tcp reject with tcp reset",
            "add rule inet nightmare_monkey reject_0000000000000002_out ip daddr 127.0.0.2 reject with icmpx type port-unreachable",
        ]
    );
}

#[test]
fn each_fault_refuses_what_is_not_its_own_saying_why() {
    for (kind, text, expected) in [
        (Action::Loss(0), "()", "percent is required: the share of matching packets to drop, e.g. 10"),
        (Action::Loss(0), "(percent: 0)", "percent 0: expected 0.01 to 100 (hundredths are kept)"),
        (Action::Loss(0), "(percent: 100.5)", "percent 100.5: expected 0.01 to 100 (hundredths are kept)"),
        (Action::Loss(0), "(percent: 100.004)", "percent 100.004: expected 0.01 to 100 (hundredths are kept)"),
        (Action::Loss(0), "(percent: 0.001)", "percent 0.001: expected 0.01 to 100 (hundredths are kept)"),
        (Action::Partition, "(ports: [80], percent: 5)", "percent: net-partition acts on every matching packet; net-loss drops a share"),
        (Action::Partition, "()", "net-partition needs peers or ports: without them it cuts this host off from everything"),
        (Action::Reject, r#"(ports: [80], duration: "2h")"#, "duration: invalid duration `2h`: expected more than 0 and at most 1h, e.g. 30s, 5m or 500ms"),
    ] {
        assert_eq!(fault(kind, text).unwrap_err(), expected, "{text}");
    }
}

/// A dry run shows the exact script and needs no nft; a filter of spared ports
/// alone is refused.
#[test]
fn a_dry_run_says_the_script_and_changes_nothing() {
    let partition = fault(Action::Partition, r#"(ports: [5432], protocol: "tcp")"#).unwrap();
    let dry = partition
        .inject(&Request {
            seed: 3,
            ..Request::default()
        })
        .unwrap();
    assert_eq!(dry.result, results::DRY_RUN);
    assert!(dry.revert.is_none());
    let script = dry.details["nft"].as_str().unwrap();
    assert!(
        script.contains("meta l4proto tcp th dport 5432 drop"),
        "{script}"
    );
    assert!(
        dry.summary.starts_with("would drop all incoming and outgoing tcp packets on ports 5432 for 1m with: nft 'add table inet nightmare_monkey; create chain"),
        "{}",
        dry.summary
    );
    let ssh = fault(Action::Partition, r#"(ports: [22], protocol: "tcp")"#).unwrap();
    let refused = ssh.prepare(&Request::default()).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::NoTarget);
    assert!(
        refused
            .message
            .starts_with("every port the filter names is spared (22"),
        "{}",
        refused.message
    );
    let hit = fault(
        Action::Partition,
        r#"(ports: [22], protocol: "tcp", spare_ssh: false)"#,
    )
    .unwrap();
    assert!(hit.prepare(&Request::default()).is_ok());
}

/// The apply makes the rules again and sends nothing unless they read as the
/// journaled script: another configuration's state, or one without its id, is refused.
#[test]
fn an_apply_refuses_a_state_whose_script_is_not_its_rules() {
    // An apply that failed to refuse would install its rules: never on this machine's
    // own network stack, only in a namespace of the test's own.
    if !crate::testns::inside(
        "packets::tests::an_apply_refuses_a_state_whose_script_is_not_its_rules",
    ) {
        return;
    }
    let request = Request {
        seed: 5,
        ..Request::default()
    };
    let thirty = fault(Action::Loss(0), r#"(percent: 30, ports: [9999])"#).unwrap();
    let forty = fault(Action::Loss(0), r#"(percent: 40, ports: [9999])"#).unwrap();
    let state = thirty.prepare(&request).unwrap().revert.unwrap();
    let e = forty.apply(&state).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed);
    assert_eq!(
        e.message,
        "the prepared script is not what this fault's configuration makes now (changed since it was prepared?): nothing applied"
    );
    let mut no_id = state.clone();
    no_id.as_object_mut().unwrap().remove("id");
    assert_eq!(
        thirty.apply(&no_id).unwrap_err().message,
        "the prepared state has no id for its chains"
    );
}

/// A scope that names the daemon's own namespace is the daemon's (its API spared);
/// one that names no process is refused.
#[test]
fn a_scope_names_a_namespace_by_process() {
    let me = std::process::id();
    let own = fault(
        Action::Loss(0),
        &format!("(percent: 5, scope: Namespace({me}))"),
    )
    .unwrap();
    assert_eq!(own.namespace().unwrap(), None);
    let gone = fault(Action::Loss(0), "(percent: 5, scope: Tree(4194304))").unwrap();
    let e = gone.prepare(&Request::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoTarget);
    assert!(
        e.message
            .starts_with("scope: cannot read the network namespace of PID 4194304: "),
        "{}",
        e.message
    );
    let target = Target { pid: me, inode: 1 };
    assert!(netns::open(&target).is_none(), "no namespace has inode 1");
}

#[test]
fn only_our_chain_names_reach_nft_from_a_revert_state() {
    let forged = serde_json::json!({ "chains": ["input; flush ruleset"] });
    let e = revert(&forged).unwrap_err();
    assert_eq!(
        e.message,
        "unreadable revert state: `input; flush ruleset` is not a network fault's chain"
    );
    for bad in [
        "loss_00000000000000ab",
        "loss_00000000000000AB_in",
        "nat_00000000000000ab_in",
        "loss_00ab_in",
    ] {
        assert!(!is_chain_name(bad), "{bad}");
    }
    assert_eq!(percent(3000), "30%");
    assert_eq!(percent(50), "0.5%");
    assert_eq!(percent(1234), "12.34%");
}

/// `nft -j list` of our table, its handles and nft's own note left out, each set's
/// elements in order (a hashed set lists in its seed's order).
fn listing() -> serde_json::Value {
    fn tidy(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("handle");
                if let Some(serde_json::Value::Array(items)) = map.get_mut("set") {
                    items.sort_by_key(|i| i.to_string());
                }
                map.values_mut().for_each(tidy);
            }
            serde_json::Value::Array(items) => {
                items.retain(|i| i.get("metainfo").is_none());
                items.iter_mut().for_each(tidy);
            }
            _ => {}
        }
    }
    let text = crate::testns::nft(&["-j", "list", "table", "inet", "nightmare_monkey"], "");
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    tidy(&mut value);
    value
}

/// What the dry run prints is what is installed: for faults of every kind and shape
/// (sets of ports and of both address families, ranges, networks on and off a byte,
/// `/0`, touching and overlapping ranges nft merges, spared ports and peers), the
/// script run by `nft -f` and the same rules sent over netlink read back equal, in a
/// user and network namespace of the test's own; the revert then leaves nothing.
#[test]
fn the_rules_installed_read_back_as_the_script_the_dry_run_prints() {
    use std::net::IpAddr;
    if !crate::testns::inside(
        "packets::tests::the_rules_installed_read_back_as_the_script_the_dry_run_prints",
    ) {
        return;
    }
    let fleet: [(IpAddr, u16); 2] = [
        (IpAddr::from([10, 0, 0, 9]), 2379),
        ("fd00::9".parse().unwrap(), 2380),
    ];
    let loss = Action::Loss(0);
    for (kind, text, spared, peers) in [
        (
            loss,
            r#"(percent: 30, protocol: "udp", ports: [9999], direction: "in")"#,
            &[22, 8080][..],
            &[][..],
        ),
        (loss, "(percent: 0.5)", &[22], &fleet[..]),
        (loss, "(percent: 100)", &[], &[]),
        (
            loss,
            r#"(percent: 12.34, ports: [53, "8000-8100", "60000-65535"], peers: ["10.0.0.0/8", "192.168.1.7", "10.16.0.0/12"])"#,
            &[22],
            &[],
        ),
        (
            Action::Partition,
            r#"(protocol: "icmp", peers: ["::/0", "fd00::/8", "127.0.0.2", "0.0.0.0/0"])"#,
            &[],
            &[],
        ),
        (
            Action::Partition,
            r#"(ports: ["1-65535"], peers: ["10.16.0.0/12"])"#,
            &[],
            &[],
        ),
        (
            Action::Partition,
            r#"(peers: ["0.0.0.0/0", "fd00::/8"], direction: "out")"#,
            &[22],
            &[],
        ),
        (
            Action::Partition,
            r#"(protocol: "tcp", ports: [80, 53], peers: ["127.0.0.2", "127.0.0.3"])"#,
            &[],
            &[],
        ),
        (
            Action::Partition,
            r#"(ports: ["53-60", "61-70"], peers: ["fd00::1", "fd00::2"])"#,
            &[],
            &[],
        ),
        (
            Action::Reject,
            r#"(peers: ["127.0.0.2"], direction: "out")"#,
            &[22],
            &[],
        ),
        (
            Action::Reject,
            r#"(protocol: "tcp", ports: [6379])"#,
            &[],
            &[],
        ),
        (
            Action::Reject,
            r#"(protocol: "udp", ports: [53], peers: ["::1"])"#,
            &[],
            &[],
        ),
    ] {
        let fault = fault(kind, text).unwrap();
        let chains = fault.chains(0xab, spared, peers);
        let script = rules::script(nft::TABLE, &chains);
        crate::testns::nft(&["-f", "-"], &script);
        let by_nft = listing();
        crate::testns::nft(&["delete", "table", "inet", "nightmare_monkey"], "");
        nft::apply(&chains, nft::Via::Kept).unwrap();
        let ours = listing();
        assert_eq!(ours, by_nft, "{text}:\n{script}");
        let rules = ours["nftables"].as_array().unwrap().iter();
        let added = script.lines().filter(|l| l.starts_with("add rule")).count();
        assert_eq!(
            rules.filter(|i| i.get("rule").is_some()).count(),
            added,
            "{script}"
        );
        let names: Vec<String> = chains.iter().map(|c| c.name.clone()).collect();
        assert_eq!(nft::remove(&names, nft::Via::Kept).unwrap(), names);
        let left = crate::testns::nft(&["list", "ruleset"], "");
        assert!(!left.contains("nightmare_monkey"), "{left}");
    }
}
