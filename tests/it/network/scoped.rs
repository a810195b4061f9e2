//! Scopes the faults beside `net-loss`'s `Namespace` and `Cgroup` reach: `Tree(PID)`,
//! and `net-bandwidth` scoped to a child's network namespace.

use super::{strike_a_child, TestDir};
use crate::util::pairs;

/// `scope: Tree(PID)`: the network namespace of the tree's root process, as with
/// `Namespace(PID)`; the parent's namespace is untouched.
#[test]
fn a_fault_scoped_to_a_tree_strikes_its_roots_namespace_and_leaves_the_parents() {
    let dir = TestDir::new("net-tree");
    strike_a_child(
        &dir,
        &[],
        "",
        r#"--fault net-loss --fault-config "(percent: 100, protocol: \"udp\", ports: [9999], scope: Tree($c))""#,
        "udp 127.0.0.1:40000 127.0.0.1:9999 300",
    )
    .only_the_child("300", "loss_");
}

/// `net-bandwidth` scoped to a child's network namespace: its `lo` gets our tbf and
/// sends 1.5 MB in no less than 2.5 s (3 s at 4 Mbit/s, less a burst); the parent's `lo`
/// keeps its own qdisc and its speed; Ctrl-C removes the tbf from the child's.
#[test]
fn net_bandwidth_scoped_to_a_child_limits_its_namespace_only() {
    let dir = TestDir::new("net-bandwidth-scope");
    let struck = strike_a_child(
        &dir,
        &[],
        "",
        r#"--fault net-bandwidth --fault-config "(interface: \"lo\", rate: \"4mbit\", scope: Namespace($c))""#,
        "echo $($IN tc qdisc show dev lo | cut -d' ' -f2,3) $(bulk 9996 1500000)",
    );
    let (run, out, log) = (&struck.run, &struck.out, &struck.log);
    let context = format!("{}\n{}\n{out}\n{log}", run.stdout, run.stderr);
    // Each line: the table (absent: no nftables here), the qdisc and its handle, ms.
    let seen = |key: &str| -> (String, u32) {
        let values = pairs(&run.stdout, key);
        let words: Vec<&str> = values
            .first()
            .unwrap_or_else(|| panic!("no {key}\n{context}"))
            .split_whitespace()
            .collect();
        assert_eq!(words.len(), 4, "{key}\n{context}");
        (
            format!("{} {}", words[1], words[2]),
            words[3].parse().unwrap(),
        )
    };
    let (child, slow) = seen("child");
    let (parent, fast) = seen("parent");
    let (reverted, again) = seen("reverted");
    assert_eq!(child, "tbf 4e4d:", "{context}");
    assert_eq!(parent, "noqueue 0:", "{context}");
    assert_eq!(reverted, "noqueue 0:", "{context}");
    assert!(slow >= 2500, "{slow} ms at 4mbit in the child\n{context}");
    assert!(
        fast < 1500 && again < 1500,
        "{fast} ms in the parent, {again} in the child after: unlimited\n{context}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{context}");
    let child_pid = &pairs(&run.stdout, "child_pid")[0];
    assert!(
        out.contains(&format!("in the network namespace of PID {child_pid}")),
        "{context}"
    );
    assert!(
        log.contains("Revert (interrupted): reverted: removed the tbf qdisc 4e4d: of lo"),
        "{context}"
    );
}
