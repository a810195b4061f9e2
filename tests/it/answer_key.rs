//! `history` and `report` on journals written by hand, no daemon: a clock stepped
//! back, records that came hours after their fault, text a client or a process chose,
//! lines that cannot be read.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::util::{monkey, Run, TestDir};

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A fault asked for by the timer at `at`.
fn intent(id: &str, at: DateTime<Utc>) -> Value {
    json!({"type": "intent", "id": id, "at": stamp(at), "fault": "k", "plugin": "process-kill",
        "trigger": "timer", "desc": "d", "dry_run": false, "master_seed": 1, "stream": "fault/k",
        "stream_position": 0, "seed": 2})
}

/// A process killed at `at`.
fn killed(id: &str, at: DateTime<Utc>) -> Value {
    json!({"type": "outcome", "id": id, "at": stamp(at), "elapsed_ms": 1, "result": "killed",
        "summary": "s"})
}

/// `journal.jsonl` in `dir`, of these records.
fn journal(dir: &TestDir, records: &[Value]) -> PathBuf {
    let path = dir.join("journal.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `nightmare-monkey history --journal PATH ARGS...`.
fn history(path: &std::path::Path, args: &[&str]) -> Run {
    let mut all = vec!["history", "--journal", path.to_str().unwrap()];
    all.extend_from_slice(args);
    monkey(&all)
}

/// The ids of the faults of a `history --json`.
fn ids(run: &Run) -> Vec<String> {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    answer["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A clock stepped back three hours wrote a fault stamped before `--since` between two
/// in range: the page (`--limit`) lists what the whole listing lists.
#[test]
fn a_page_and_the_whole_listing_agree_after_the_clock_stepped_back() {
    let dir = TestDir::new("key-stepped-back");
    let now = Utc::now();
    let mut records = Vec::new();
    for (id, ago) in [
        ("1-1", TimeDelta::hours(1)),
        ("1-2", TimeDelta::hours(3)),
        ("1-3", TimeDelta::minutes(10)),
    ] {
        records.extend([intent(id, now - ago), killed(id, now - ago)]);
    }
    let path = journal(&dir, &records);
    let whole = ids(&history(&path, &["--since", "2h", "--json"]));
    let page = ids(&history(
        &path,
        &["--since", "2h", "--limit", "10", "--json"],
    ));
    assert_eq!(whole, ["1-1", "1-3"]);
    assert_eq!(page, whole);
}

/// An ack three hours after its fault, another fault between: the whole listing shows
/// the ack and the recovery, as a page does.
#[test]
fn the_whole_listing_shows_an_ack_hours_after_its_fault() {
    let dir = TestDir::new("key-late-ack");
    let t = Utc::now() - TimeDelta::hours(6);
    let path = journal(
        &dir,
        &[
            intent("2-1", t),
            killed("2-1", t + TimeDelta::seconds(1)),
            intent("2-2", t + TimeDelta::minutes(150)),
            killed("2-2", t + TimeDelta::minutes(150)),
            json!({"type": "detected", "id": "2-1", "at": stamp(t + TimeDelta::hours(3)),
                "ttd_ms": 10_799_000, "by": "alice"}),
            json!({"type": "recovered", "id": "2-1", "at": stamp(t + TimeDelta::hours(3)),
                "ttr_ms": 10_804_000, "late": true}),
        ],
    );
    for args in [&["--json"][..], &["--json", "--limit", "10"]] {
        let run = history(&path, args);
        let answer: Value = serde_json::from_str(&run.stdout).unwrap();
        let first = &answer["faults"][0];
        assert_eq!(first["id"], "2-1", "{args:?}");
        assert_eq!(first["detected"]["by"], "alice", "{args:?}: {first}");
        assert_eq!(first["recovered"]["late"], true, "{args:?}: {first}");
    }
    let text = history(&path, &[]);
    assert!(
        text.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("; noticed by alice after 2h 59m 59s; recovered after 3h 4s (late)"),
        "{}",
        text.stdout
    );
}

/// A pause reverted three hours after it (its revert retried while the clock jumped):
/// the report does not show it in effect.
#[test]
fn a_report_shows_a_pause_reverted_hours_later_as_reverted() {
    let dir = TestDir::new("key-late-revert");
    let t = Utc::now() - TimeDelta::hours(8);
    let mut paused = killed("3-1", t + TimeDelta::seconds(1));
    paused["result"] = json!("paused");
    paused["revert"] = json!({"pid": 42, "start_time": 1, "name": "sleep"});
    paused["revert_due"] = json!(stamp(t + TimeDelta::seconds(31)));
    let path = journal(
        &dir,
        &[
            intent("3-1", t),
            paused,
            intent("3-2", t + TimeDelta::hours(3)),
            killed("3-2", t + TimeDelta::hours(3)),
            json!({"type": "revert", "id": "3-1", "at": stamp(t + TimeDelta::hours(3)),
                "reason": "due", "result": "reverted", "summary": "ok"}),
        ],
    );
    let run = monkey(&[
        "report",
        "--journal",
        path.to_str().unwrap(),
        "--since",
        "1d",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["faults"][0]["id"], "3-1");
    assert_eq!(report["faults"][0].get("in_effect"), None, "{report}");
    let listed: Value = serde_json::from_str(&history(&path, &["--json"]).stdout).unwrap();
    assert_eq!(listed["faults"][0]["reverted"]["result"], "reverted");
}

/// What a client or a process chose, and the journal's own broken lines, reach a
/// terminal escaped: in `history`'s warnings (serde quotes the line it could not read)
/// and in `report`'s refusals, as text and as Markdown.
#[test]
fn control_characters_of_the_journal_never_reach_the_terminal() {
    let dir = TestDir::new("key-controls");
    let now = Utc::now() - TimeDelta::minutes(10);
    let mut hostile = intent("\u{1b}[31m5-1", now);
    hostile["fault"] = json!("k\u{1b}[2J");
    hostile["trigger"] = json!("http\u{1b}]0;x\u{7}");
    let path = journal(
        &dir,
        &[
            hostile,
            killed("\u{1b}[31m5-1", now),
            json!({"type": "refused", "id": "1-9", "at": stamp(now), "fault": "kk\u{1b}[5mBLINK",
                "trigger": "poller\u{1b}[7m", "reason": "steady \u{1b}[1m"}),
            json!({"type": "\u{1b}]0;PWNED\u{7}\u{1b}[41m"}),
            json!({"type": "detected", "id": "x", "at": stamp(now), "ttd_ms": "\u{1b}[42mgreen",
                "by": "a"}),
        ],
    );
    let journal = path.to_str().unwrap();
    let runs = [
        history(&path, &[]),
        history(&path, &["--limit", "5"]),
        monkey(&["report", "--journal", journal, "--since", "1h"]),
        monkey(&[
            "report",
            "--journal",
            journal,
            "--since",
            "1h",
            "--format",
            "md",
        ]),
    ];
    for run in &runs {
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(['\u{1b}', '\u{7}']), "{text:?}");
        }
    }
    assert!(
        runs[0]
            .stderr
            .contains(r"unknown variant `\u{1b}]0;PWNED\u{7}\u{1b}[41m`"),
        "{}",
        runs[0].stderr
    );
    assert!(
        runs[2]
            .stdout
            .contains(r"refused kk\u{1b}[5mBLINK (poller\u{1b}[7m, "),
        "{}",
        runs[2].stdout
    );
}

/// A torn last line and one that cannot be read are said by `report` as by `history`:
/// on stderr, and in the JSON's `problems` (absent when every line was read).
#[test]
fn a_report_says_which_lines_it_could_not_read() {
    let dir = TestDir::new("key-report-problems");
    let now = Utc::now() - TimeDelta::minutes(10);
    let path = journal(&dir, &[intent("6-1", now), killed("6-1", now)]);
    let journal = path.to_str().unwrap();
    let json = [
        "report",
        "--journal",
        journal,
        "--since",
        "1h",
        "--format",
        "json",
    ];
    let clean: Value = serde_json::from_str(&monkey(&json).stdout).unwrap();
    assert_eq!(clean.get("problems"), None, "{clean}");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{not a record\n{\"type\":\"intent\",\"id\":\"6-2\",\"at\":\"2026-");
    std::fs::write(&path, text).unwrap();
    let said = [
        format!(
            "{journal}: line 3 is unreadable (key must be a string at line 1 column 2); ignored"
        ),
        format!("{journal}: line 4 is torn (the daemon stopped while writing it); ignored"),
    ];
    let run = monkey(&json);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["problems"], json!(said));
    assert_eq!(report["summary"]["faults"], 1);
    let run = monkey(&["report", "--journal", journal, "--since", "1h"]);
    assert_eq!(
        run.stderr,
        format!("warning: {}\nwarning: {}\n", said[0], said[1])
    );
}

/// A cursor into an archive since removed is refused with a usage error, as the guide
/// says, not answered with an empty page.
#[test]
fn a_cursor_into_a_removed_archive_is_refused() {
    let dir = TestDir::new("key-removed-archive");
    let now = Utc::now() - TimeDelta::hours(1);
    let archive = dir.join("journal.jsonl-20261201T000000.000Z");
    let old: String = ["7-1", "7-2"]
        .iter()
        .map(|id| format!("{}\n", intent(id, now)))
        .collect();
    std::fs::write(&archive, old).unwrap();
    let path = journal(&dir, &[intent("7-3", now)]);
    let next = |args: &[&str]| {
        let run = history(&path, &[&["--json", "--limit", "1"], args].concat());
        let page: Value = serde_json::from_str(&run.stdout).unwrap();
        page["next"].as_str().unwrap().to_owned()
    };
    let into_archive = next(&["--before", &next(&[])]);
    std::fs::remove_file(&archive).unwrap();
    let run = history(&path, &["--limit", "1", "--before", &into_archive]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert_eq!(
        run.stderr,
        format!("error: --before: the cursor {into_archive} names no file of this journal (its archive was removed, or it came from another journal): ask again without it\n")
    );
}

/// `history --json` has the shape of `GET /api/history` with or without `--limit`:
/// `faults`, `problems` and `next` (`null`: no older page).
#[test]
fn the_whole_listing_as_json_has_the_shape_of_a_page() {
    let dir = TestDir::new("key-json-shape");
    let now = Utc::now() - TimeDelta::minutes(10);
    let path = journal(&dir, &[intent("8-1", now), killed("8-1", now)]);
    for args in [&["--json"][..], &["--json", "--limit", "5"]] {
        let run = history(&path, args);
        let answer: Value = serde_json::from_str(&run.stdout).unwrap();
        let mut keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["faults", "next", "problems"], "{args:?}");
        assert_eq!(answer["next"], Value::Null, "{args:?}");
    }
}

/// `--since` after `--until` (the two swapped) is a usage error naming both, not an
/// empty answer key.
#[test]
fn since_after_until_is_a_usage_error() {
    let dir = TestDir::new("key-backwards-range");
    let now = Utc::now() - TimeDelta::minutes(90);
    let path = journal(&dir, &[intent("9-1", now), killed("9-1", now)]);
    for args in [
        &["--since", "1h", "--until", "2h"][..],
        &["--since", "1h", "--until", "2h", "--limit", "5"],
    ] {
        let run = history(&path, args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stdout);
        assert_eq!(
            run.stderr,
            "error: --since 1h is after --until 2h: no fault can be in between (the two swapped?)\n"
        );
    }
    let right = history(&path, &["--since", "2h", "--until", "1h"]);
    assert_eq!(right.stdout.lines().count(), 1, "{}", right.stderr);
}
