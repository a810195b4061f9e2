//! Network faults in `report`, as any other fault: a dry run and a real one in the
//! test's network namespace, each a row with its fault, trigger, result and target.

use std::fs;

use super::{config, in_network_namespace, TestDir};
use crate::util::pairs;

/// The same `net-loss` fired by a daemon without `--execute` (a dry run) and by one with
/// it (rules applied in the test's namespace, then reverted by the switch): the report,
/// as JSON and as text, has both rows, the real one judged (no detection: undetected),
/// the dry run not, and neither in effect.
#[test]
fn network_faults_show_in_the_report_like_any_other() {
    let dir = TestDir::new("net-report");
    let cfg = config(
        &dir,
        r#""loss": (plugin: "net-loss", config: (percent: 20, protocol: "udp", ports: [9999], duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
"$NM" --config {cfg} 2>{d}/dry-log & m=$!
await Listening {d}/dry-log; p=$(port {d}/dry-log)
post $p /api/faults/loss '{{"desc":"rehearsal"}}' >/dev/null
kill -TERM $m; wait $m; echo "dry_code $?"
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/loss '{{"desc":"flaky link"}}' >/dev/null
echo "table $(table)"
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
kill -TERM $m; wait $m; echo "code $?"
TZ=UTC "$NM" report --config {cfg} --since 1h --format json >{d}/report.json; echo "json $?"
TZ=UTC "$NM" report --config {cfg} --since 1h >{d}/report.txt; echo "text $?""#
    ));
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let (json, text) = (read("report.json"), read("report.txt"));
    let context = format!(
        "{}\n{}\n{}\n{json}\n{text}",
        run.stdout,
        run.stderr,
        read("log")
    );
    for (key, want) in [
        ("dry_code", "0"),
        ("table", "present"),
        ("code", "0"),
        ("json", "0"),
        ("text", "0"),
    ] {
        assert_eq!(pairs(&run.stdout, key), [want], "{key}\n{context}");
    }
    let report: serde_json::Value = serde_json::from_str(&json).expect(&context);
    let rows = report["faults"].as_array().expect(&context);
    assert_eq!(rows.len(), 2, "{context}");
    let (dry, real) = (&rows[0], &rows[1]);
    for row in rows {
        assert_eq!(row["fault"], "loss", "{context}");
        assert_eq!(row["trigger"], "http", "{context}");
        assert!(row.get("in_effect").is_none(), "{context}");
    }
    assert_eq!(dry["result"], "dry-run", "{context}");
    assert_eq!(dry["verdict"], "not-judged", "{context}");
    assert_eq!(real["result"], "injected", "{context}");
    assert_eq!(real["verdict"], "undetected", "{context}");
    // The target is what it did (would do): the JSON has a dry run's exact rules, the
    // table only their start, so that one script does not widen every row.
    let target = |row: &serde_json::Value| row["target"].as_str().unwrap_or_default().to_owned();
    let what = "drop 20% of incoming and outgoing udp packets on ports 9999 for 10m";
    assert!(
        target(dry).starts_with(&format!(
            "would {what} with: nft 'add table inet nightmare_monkey;"
        )) && target(dry).ends_with("numgen random mod 100 < 20 drop'"),
        "{context}"
    );
    assert!(
        target(real).starts_with(&format!("dropping {}", &what[5..])),
        "{context}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" loss ")).collect();
    assert_eq!(lines.len(), 2, "{context}");
    assert!(
        lines[0].contains(&format!("would {what} with: nft 'add table"))
            && lines[0].contains("… ")
            && lines[0].contains(" dry-run "),
        "{context}"
    );
    assert!(
        lines[1].contains(&format!("dropping {} (chains loss_", &what[5..]))
            && lines[1].contains(" injected ")
            && lines[1].ends_with("undetected"),
        "{context}"
    );
    for line in text.lines() {
        assert!(
            line.chars().count() < 250,
            "a report line of {} characters\n{context}",
            line.chars().count()
        );
    }
}
