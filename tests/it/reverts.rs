//! Reverts are never dropped: one whose plugin hangs stays under way, and is said so.

use crate::{
    drill::{panicky_drill, PRELUDE},
    util::{in_namespace, json_lines, TestDir},
};

/// A second "revert now" of a fault whose revert is stuck says it is under way (409),
/// not that it was reverted already (it used to answer 404, "reverted already").
#[test]
fn a_second_revert_now_of_a_stuck_revert_says_it_is_under_way() {
    let dir = TestDir::new("reverts-stuck");
    let cfg = panicky_drill(
        &dir,
        "",
        r#""stuck": (plugin: "panicky", config: (revert_after_ms: 600000, revert_sleep_ms: 600000))"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
id=$(post $p /api/faults/stuck '{{"desc":"stuck"}}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
post $p /api/revert/$id ''
post $p /api/revert/$id ''
kill -KILL $d; wait $d"#,
        d = dir.display()
    ));
    let answers = json_lines(&run.stdout);
    assert_eq!(answers.len(), 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(answers[0]["reverted"], false, "{}", answers[0]);
    assert_eq!(answers[1]["code"], 409, "{}", answers[1]);
    let message = answers[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the revert of ") && message.contains(" is under way already"),
        "{message}"
    );
}
