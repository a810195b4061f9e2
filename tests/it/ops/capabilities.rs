//! What the network faults need, said alike where an operator grants it: SECURITY.md's
//! table, the systemd unit's commented settings and the DaemonSet's comment.

use std::collections::BTreeSet;

use super::repo_file;

/// Every network fault: each of the three places names each.
const NETWORK_FAULTS: [&str; 6] = [
    "net-loss",
    "net-partition",
    "net-reject",
    "net-bandwidth",
    "net-delay",
    "net-proxy",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap()
}

/// The words of `text` that start with `prefix` (`CAP_`), up to the first character
/// that is not a capital, a digit or `_`.
fn words_from(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

/// The unit's commented network settings: from the first comment that names the network
/// faults to the end of `[Service]`.
fn unit_network_block(unit: &str) -> Vec<&str> {
    let start = unit
        .lines()
        .position(|l| l.starts_with("# Network faults"))
        .expect("the unit says what the network faults need");
    unit.lines()
        .skip(start)
        .take_while(|l| !l.starts_with('['))
        .collect()
}

#[test]
fn the_network_faults_capabilities_are_the_same_in_security_md_the_unit_and_the_daemonset() {
    let security = read("SECURITY.md");
    let section = security
        .split("## What the network faults need")
        .nth(1)
        .expect("SECURITY.md has the section")
        .split("\n## ")
        .next()
        .unwrap();
    let unit = read("examples/systemd/nightmare-monkey.service");
    let block = unit_network_block(&unit).join("\n");
    let yaml = read("deploy/kubernetes/nightmare-monkey.yaml");
    let comment: String = yaml
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("securityContext:"))
        .skip(1)
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches('#').trim()))
        .collect();
    for fault in NETWORK_FAULTS {
        assert!(section.contains(fault), "SECURITY.md does not name {fault}");
        assert!(block.contains(fault), "the unit does not name {fault}");
        assert!(
            comment.contains(fault),
            "the DaemonSet does not name {fault}"
        );
    }

    // The capabilities: the unit's widest suggestion, the DaemonSet's suggested `add`,
    // and SECURITY.md's table (a proxy's low port aside) are one set.
    let suggested: Vec<BTreeSet<String>> = block
        .lines()
        .filter_map(|l| l.strip_prefix("#AmbientCapabilities="))
        .map(|l| words_from(l, "CAP_"))
        .collect();
    let widest = suggested.last().expect("the unit suggests capabilities");
    assert!(
        suggested.iter().all(|s| s.is_subset(widest)),
        "{suggested:?}"
    );
    let network: BTreeSet<String> = widest
        .iter()
        .filter(|c| *c != "CAP_KILL")
        .cloned()
        .collect();
    assert_eq!(
        network,
        ["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
            .map(str::to_owned)
            .into()
    );
    let mut in_security = words_from(section, "CAP_");
    in_security.remove("CAP_NET_BIND_SERVICE");
    in_security.remove("CAP_KILL");
    assert_eq!(in_security, network, "SECURITY.md's table");
    let add_line = comment
        .lines()
        .find_map(|l| l.strip_prefix("add: "))
        .expect("the DaemonSet's comment suggests an `add:`");
    let add: Vec<String> = serde_yaml::from_str(add_line).unwrap();
    let add: BTreeSet<String> = add
        .iter()
        .filter(|c| *c != "KILL")
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert_eq!(add, network, "the DaemonSet's `add`");

    // What the unit suggests lets a thread enter a network namespace: an allow-list
    // naming net, or a deny-list that does not (`~net` would forbid exactly that).
    let restrict = block
        .lines()
        .find_map(|l| l.strip_prefix("#RestrictNamespaces="))
        .expect("the unit says how to allow setns");
    let (deny, kinds) = match restrict.strip_prefix('~') {
        Some(kinds) => (true, kinds),
        None => (false, restrict),
    };
    assert_ne!(
        deny,
        kinds.split_whitespace().any(|k| k == "net"),
        "RestrictNamespaces={restrict} forbids entering a network namespace"
    );
    assert!(block.contains("#RestrictAddressFamilies=") && block.contains("AF_NETLINK"));
    assert!(
        !block.contains("run nft") && !block.contains("to nft"),
        "the faults run no nft: {block}"
    );
}

/// The unit with the network settings it suggests taken in is one systemd accepts.
#[test]
fn the_units_network_settings_make_a_valid_unit() {
    let unit = read("examples/systemd/nightmare-monkey.service");
    let mut taken: Vec<(String, String)> = Vec::new();
    for line in unit_network_block(&unit) {
        // `#Key=value`: a setting to take in (prose has spaces before its `=`).
        let Some((key, value)) = line.strip_prefix('#').and_then(|l| l.split_once('=')) else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let value = value
            .split(" (and the same in CapabilityBoundingSet)")
            .next()
            .unwrap();
        taken.retain(|(k, _)| k != key);
        taken.push((key.to_owned(), value.to_owned()));
        if key == "AmbientCapabilities" {
            taken.retain(|(k, _)| k != "CapabilityBoundingSet");
            taken.push(("CapabilityBoundingSet".to_owned(), value.to_owned()));
        }
    }
    assert_eq!(
        taken
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<BTreeSet<_>>(),
        [
            "AmbientCapabilities",
            "CapabilityBoundingSet",
            "RestrictAddressFamilies",
            "RestrictNamespaces"
        ]
        .into()
    );
    let rewritten: String = unit
        .lines()
        .map(|line| {
            let key = line.split_once('=').map(|(k, _)| k);
            match taken.iter().find(|(k, _)| Some(k.as_str()) == key) {
                Some((k, v)) if !line.starts_with('#') => format!("{k}={v}\n"),
                _ => format!("{line}\n"),
            }
        })
        .collect();
    for (k, v) in &taken {
        assert!(rewritten.contains(&format!("\n{k}={v}\n")), "{k} taken in");
    }
    if !super::systemd::systemd_agrees(&rewritten, "unit-net") {
        eprintln!("systemd-analyze is not installed: the rewritten unit is not verified");
    }
}
