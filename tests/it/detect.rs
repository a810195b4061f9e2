//! Did the team notice? Acks and Alertmanager alerts mark a fault detected (time to
//! detect, once), and `report` says what a drill came to. Real faults only, in PID
//! namespaces the tests create.

use std::fs;

use crate::{
    drill::PRELUDE,
    util::{in_namespace, json_lines, monkey, pairs, Drill, TestDir},
};

/// A daemon config: the common header with two tokens, the state in `dir`, and a pause
/// (30 s) that may only choose `sleep 1000`.
fn config(dir: &std::path::Path) -> String {
    Drill::new(dir)
        .named("c.ron")
        .http(r#"tokens: {"alice": "a-secret", "hubot": "h-secret"}"#)
        .config(
            r#"faults: {
        "freeze": (plugin: "process-pause", config: (duration: "30s", include_cmdlines: ["^sleep 1000$"])),
        "process-kill": (config: (include_cmdlines: ["^sleep 1000$"])),
    }"#,
        )
        .write()
}

/// An ack a known while after a real fault measures that while, names who, and stands:
/// a second ack is refused, so is one of a dry run or of an unknown id.
#[test]
fn an_ack_after_a_known_delay_measures_the_time_to_detect() {
    let dir = TestDir::new("detect-ack");
    let cfg = config(&dir);
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!; sleep 1000 & started $!;
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
H='Authorization: Bearer a-secret'
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/faults/freeze -d '{{"desc":"game day"}}' >/dev/null
sleep 0.4
export NIGHTMARE_MONKEY_TOKEN=a-secret
"$NM" ack --url 127.0.0.1:$p --by alice --json; echo "code $?"
"$NM" ack --url 127.0.0.1:$p; echo "code $?"
"$NM" ack --url 127.0.0.1:$p --id 1-1; echo "code $?"
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/kill -d '{{"desc":"second"}}' >/dev/null
curl -s -H 'Authorization: Bearer h-secret' -X POST http://127.0.0.1:$p/api/ack -d ''; echo
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/ack -d '{{"by": 7}}'; echo
kill -TERM $m; wait $m
"$NM" history --journal {d}/journal.jsonl"#,
        d = dir.display()
    ));
    let answers = json_lines(&run.stdout);
    let first = &answers[0];
    assert_eq!(first["by"], "alice", "{}", run.stdout);
    assert_eq!(first["fault"], "freeze");
    let ttd = first["ttd_ms"].as_u64().unwrap();
    assert!((400..3_000).contains(&ttd), "{ttd}");
    assert_eq!(
        pairs(&run.stdout, "code"),
        ["0", "1", "1"],
        "{}",
        run.stderr
    );
    // A second ack does not slide onto an older fault: the latest was noticed.
    assert!(
        run.stderr.contains(&format!(
            "error: fault {} was noticed already, by alice after ",
            first["id"].as_str().unwrap()
        )),
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("error: no fault `1-1` in the journal's last 7 days"));
    // Without `by`, the token's name says who.
    assert_eq!(answers[1]["by"], "hubot", "{}\n{}", run.stdout, run.stderr);
    assert_eq!(answers[1]["fault"], "process-kill");
    assert_eq!(answers[2]["code"], 400);
    assert_eq!(answers[2]["message"], "by must be a non-empty string");
    let log = fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains(") freeze (") || log.contains(" (freeze) sleep(PID:"),
        "{log}"
    );
    assert!(log.contains(" by alice after "), "{log}");
    assert!(
        run.stdout.contains("; noticed by alice after "),
        "history says who noticed: {}",
        run.stdout
    );
}

/// Alertmanager's webhook (payload version 4): a firing alert that started after the
/// latest unnoticed fault marks it detected by `alertmanager:<alertname>`, wherever it
/// stands in the list (Alertmanager sorts by labels, not time); one firing since before
/// the fault, or whose start is in the future, marks nothing and the answer says why;
/// with nothing open the answer is still 200 (Alertmanager would retry anything else);
/// a payload that is not Alertmanager's is 400.
#[test]
fn an_alertmanager_payload_marks_the_latest_fault_detected() {
    let dir = TestDir::new("detect-alerts");
    let cfg = config(&dir);
    // Firing since long before the fault: about something else.
    let old = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"DiskFull"},"startsAt":"2020-01-01T00:00:00Z"}]}"#;
    let future = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Ahead"},"startsAt":"2099-01-01T00:00:00Z"}]}"#;
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!;
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
H='Authorization: Bearer a-secret'
alert() {{ curl -s -H "$H" -X POST http://127.0.0.1:$p/api/alerts -d "$1"; echo; }}
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/kill -d '{{"desc":"x"}}' >/dev/null
now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
payload=$(printf '{{"version":"4","status":"firing","receiver":"monkey","groupKey":"x","alerts":[{{"status":"resolved","labels":{{"alertname":"Old"}}}},{{"status":"firing","labels":{{"alertname":"DiskFull"}},"startsAt":"2020-01-01T00:00:00Z"}},{{"status":"firing","labels":{{"alertname":"SleepDown","severity":"page"}},"startsAt":"%s"}}]}}' "$now")
alert '{old}'
alert '{future}'
alert "$payload"
alert "$payload"
alert '{{"version":"3","alerts":[]}}'
alert 'not json'
curl -s -X POST http://127.0.0.1:$p/api/alerts -d "$payload"; echo
kill -TERM $m; wait $m"#,
        d = dir.display()
    ));
    let answers = json_lines(&run.stdout);
    assert_eq!(answers.len(), 7, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(answers[0]["detected"], serde_json::Value::Null);
    assert!(
        answers[0]["why"].as_str().is_some_and(
            |w| w.starts_with("the alert started at 2020-01-01T00:00:00Z, before fault ")
        ),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1]["detected"], serde_json::Value::Null);
    assert_eq!(
        answers[1]["why"],
        "no firing alert marks a fault: Ahead starts in the future (\"2099-01-01T00:00:00Z\")"
    );
    // The alert that started after the fault marks it, though one before it did not.
    assert_eq!(
        answers[2]["detected"]["by"], "alertmanager:SleepDown",
        "{}",
        answers[2]
    );
    assert_eq!(answers[2]["detected"]["fault"], "process-kill");
    // Sent again (Alertmanager repeats a firing group): no older fault is marked.
    assert_eq!(answers[3]["detected"], serde_json::Value::Null);
    assert!(
        answers[3]["why"]
            .as_str()
            .is_some_and(|w| w.contains(" was noticed already, by alertmanager:SleepDown after ")),
        "{}",
        answers[3]
    );
    assert_eq!(answers[4]["code"], 400);
    assert_eq!(
        answers[4]["message"],
        "expected Alertmanager's webhook payload version \"4\""
    );
    assert_eq!(answers[5]["code"], 400);
    assert_eq!(answers[6]["code"], 401, "the token guards it too");
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(
        log.contains("alerts: no firing alert marks a fault: Ahead starts in the future"),
        "{log}"
    );
}

/// `report` on a journal holding every kind of ending (coped, undetected, not
/// recovered, recovered late, a dry run, a failure, a refusal, a halt): the text and
/// Markdown as committed, and the JSON's sums.
#[test]
fn the_report_of_a_mixed_journal_is_as_committed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/it/report");
    let journal = dir.join("mixed.jsonl");
    for (format, golden) in [("text", "mixed.txt"), ("md", "mixed.md")] {
        let out = crate::util::command()
            .env("TZ", "UTC")
            .args(["report", "--journal", journal.to_str().unwrap()])
            .args(["--since", "2026-11-26T00:00:00Z", "--format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let expected = fs::read_to_string(dir.join(golden)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "tests/it/report/{golden} (regenerate it with TZ=UTC nightmare-monkey report --journal tests/it/report/mixed.jsonl --since 2026-11-26T00:00:00Z --format {format})"
        );
    }
    let run = monkey(&[
        "report",
        "--journal",
        journal.to_str().unwrap(),
        "--since",
        "2026-11-26T00:00:00Z",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let s = &report["summary"];
    assert_eq!(
        (
            &s["real"],
            &s["detected"],
            &s["undetected"],
            &s["recovered"],
            &s["recovered_late"],
            &s["not_recovered"],
            &s["resilience_percent"]
        ),
        (
            &serde_json::json!(4),
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(25)
        )
    );
    assert_eq!(
        s["ttd"],
        serde_json::json!({"count": 3, "median_ms": 120000, "p90_ms": 600000})
    );
    // The first ack stands: alice's, not bob's a minute later.
    assert_eq!(report["faults"][0]["detected_by"], "alice");
    // A period with nothing in it is a report of nothing, not an error.
    let empty = monkey(&[
        "report",
        "--journal",
        journal.to_str().unwrap(),
        "--since",
        "1h",
    ]);
    assert_eq!(empty.code, Some(0), "{}", empty.stderr);
    assert!(
        empty.stdout.contains("resilience: no fault to judge"),
        "{}",
        empty.stdout
    );
    let bad = monkey(&[
        "report",
        "--journal",
        journal.to_str().unwrap(),
        "--since",
        "soon",
    ]);
    assert_eq!(bad.code, Some(2));
}

/// An ack whose client hangs up before the answer (a chat bot's short timeout) is done
/// whole or not at all: taken and logged, or neither. A second ack then says which.
#[test]
fn an_ack_whose_client_hung_up_is_done_whole_and_logged() {
    let dir = TestDir::new("detect-ack-hangup");
    let cfg = config(&dir);
    // A day's dry runs before it, which the ack reads through: long enough for the
    // hang-up to be seen while it works.
    let at = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let journal: String = (1..=10_000)
        .map(|n| {
            format!(
                r#"{{"type":"intent","id":"1-{n}","at":"{at}","fault":"k","plugin":"process-kill","trigger":"timer","desc":"d","dry_run":true,"master_seed":1,"stream":"fault/k","stream_position":{n},"seed":2}}
{{"type":"outcome","id":"1-{n}","at":"{at}","elapsed_ms":1,"result":"dry-run","summary":"s"}}
"#
            )
        })
        .collect();
    fs::write(dir.join("journal.jsonl"), journal).unwrap();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
H='Authorization: Bearer a-secret'
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/faults/freeze -d '{{"desc":"game day"}}' >/dev/null
perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new("127.0.0.1:$ARGV[0]") or die "$!";
  print $s "POST /api/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a-secret\r\nContent-Length: 12\r\n\r\n{{\"by\":\"bot\"}}";
  select(undef, undef, undef, 0.02); close $s' $p
await 'Detected: ' {d}/log && echo logged
curl -s -H "$H" -X POST http://127.0.0.1:$p/api/ack -d '{{"by":"alice"}}'; echo
kill -TERM $m; wait $m"#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let logged = run.stdout.lines().any(|l| l == "logged");
    let second = json_lines(&run.stdout)
        .into_iter()
        .next()
        .expect("the second ack's answer");
    if logged {
        assert!(log.contains(" by bot after "), "{log}");
        assert_eq!(second["code"], 409, "{second}\n{log}");
    } else {
        assert_eq!(
            second["by"], "alice",
            "taken without a word: {second}\n{log}"
        );
    }
}

/// An ack hours after its fault (acks are taken for a day) still counts in the report,
/// however many faults came between.
#[test]
fn a_late_ack_counts_in_the_report() {
    let dir = TestDir::new("detect-late");
    let journal = dir.join("journal.jsonl");
    let intent = |n: u32, at: &str| {
        format!(
            r#"{{"type":"intent","id":"1-{n}","at":"{at}","fault":"k","plugin":"process-kill","trigger":"timer","desc":"d","dry_run":false,"master_seed":1,"stream":"fault/k","stream_position":{n},"seed":2}}"#
        )
    };
    let outcome = |n: u32, at: &str| {
        format!(
            r#"{{"type":"outcome","id":"1-{n}","at":"{at}","elapsed_ms":1,"result":"killed","summary":"s"}}"#
        )
    };
    let lines = [
        intent(1, "2026-11-26T08:00:00Z"),
        outcome(1, "2026-11-26T08:00:00.100Z"),
        intent(2, "2026-11-26T10:30:00Z"),
        outcome(2, "2026-11-26T10:30:00.100Z"),
        r#"{"type":"detected","id":"1-1","at":"2026-11-26T10:31:00Z","ttd_ms":9060000,"by":"alice"}"#.to_owned(),
    ];
    fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let run = monkey(&[
        "report",
        "--journal",
        journal.to_str().unwrap(),
        "--since",
        "2026-11-26T00:00:00Z",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["faults"][0]["detected_by"], "alice", "{report}");
    assert_eq!(report["faults"][0]["verdict"], "coped");
    assert_eq!(report["summary"]["detected"], 1);
}

/// Text that would mislead a reader reaches no output as it is: a victim whose name
/// holds a bidi override (U+202E: what follows it shows reversed) and an ack whose `by` is a
/// Markdown image with an isolate (U+2066). The log, `history` and the report as text,
/// Markdown and HTML show the characters escaped, and the Markdown no live link.
#[test]
fn names_that_mislead_are_escaped_in_every_output() {
    let dir = TestDir::new("detect-misleading");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(r#"faults: { "process-kill": (config: (include_names: ["^ev"])) }"#)
        .write();
    let victim = dir.join("ev\u{202e}il");
    fs::copy("/bin/sleep", &victim).unwrap();
    let by = "[x](https://evil.example/p.png)\u{2066}";
    let run = in_namespace(&format!(
        r#"{PRELUDE}
'{victim}' 1000 &
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/kill '{{"desc":"misleading"}}' >/dev/null
curl -s -X POST http://127.0.0.1:$p/api/ack -d '{{"by":"{by}"}}' >/dev/null
kill -TERM $m; wait $m
"$NM" history --journal {d}/journal.jsonl > {d}/history.txt
for f in text md html; do "$NM" report --journal {d}/journal.jsonl --format $f > {d}/report.$f; done"#,
        d = dir.display(),
        victim = victim.display()
    ));
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let log = read("log");
    assert!(
        log.contains("Kill: ev\\u{202e}il(PID:"),
        "{log}\n{}",
        run.stderr
    );
    for name in [
        "log",
        "history.txt",
        "report.text",
        "report.md",
        "report.html",
    ] {
        let text = read(name);
        // Markdown writes the escape's backslash as `\\`, which reads as one.
        let shown = if name == "report.md" {
            "ev\\\\u{202e}il"
        } else {
            "ev\\u{202e}il"
        };
        assert!(text.contains(shown), "{name}: {text}");
        assert!(
            !text.contains('\u{202e}') && !text.contains('\u{2066}'),
            "{name} holds a raw bidi character: {text}"
        );
    }
    for name in ["log", "report.text"] {
        assert!(
            read(name).contains("[x](https://evil.example/p.png)\\u{2066}"),
            "{name}: {}",
            read(name)
        );
    }
    let md = read("report.md");
    assert!(
        md.contains("\\[x\\](https\\://evil.example/p.png)\\\\u{2066}") && !md.contains("[x]("),
        "{md}"
    );
}
