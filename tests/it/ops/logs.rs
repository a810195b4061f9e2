//! The log: JSON lines with the same facts as the plain ones, and `RUST_LOG`.

use crate::util::{http, Daemon, Sleeper, TestDir};

#[test]
fn json_logs_carry_the_same_facts_as_the_plain_lines() {
    let _victim = Sleeper::start();
    let mut d = Daemon::start_json(
        &["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"],
        &[],
    );
    let port = d.port();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"json please"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    let line = d.wait_for(|l| l.contains(r#""event":"fault""#));
    let fault: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(fault["level"], "info");
    assert_eq!(fault["desc"], "json please");
    assert_eq!(fault["trigger"], "http");
    assert_eq!(fault["dry_run"], true);
    assert_eq!(fault["result"], "dry-run");
    assert_eq!(fault["process"]["pid"], answer["pid"]);
    assert_eq!(fault["process"]["name"], answer["name"]);
    assert_eq!(fault["id"], answer["id"]);
    assert_eq!(
        fault["message"],
        format!(
            "(Dryrun) Kill: {}(PID:{} PPID:{}) - json please",
            answer["name"].as_str().unwrap(),
            answer["pid"],
            answer["ppid"]
        )
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    for line in &d.log {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["time"].is_string() && v["level"].is_string() && v["message"].is_string());
    }
}

#[test]
fn rust_log_sets_the_level() {
    let dir = TestDir::new("rust-log");
    std::fs::write(dir.join("broken.so"), b"not a library").unwrap();
    let mut d = Daemon::start_json(
        &[
            "--listen",
            "127.0.0.1:0",
            "--plugin-dir",
            dir.to_str().unwrap(),
        ],
        &[("RUST_LOG", "warn")],
    );
    let warning = d.wait_for(|l| l.contains("broken.so"));
    assert!(warning.contains(r#""level":"warn""#), "{warning}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    assert!(
        d.log.iter().all(|l| l.contains(r#""level":"warn""#)),
        "only warnings at RUST_LOG=warn: {:?}",
        d.log
    );
}

/// A log reader that stops reading (a paused terminal, a blocking container log driver,
/// a hung journald) never holds the daemon: with its stderr unread, faults, `/healthz`,
/// the kill switch and SIGTERM all answer; the lines that did not fit are dropped,
/// counted in the metrics, and said in one line once stderr is read again.
#[test]
fn a_log_reader_that_stops_reading_never_holds_the_daemon() {
    let _victim = Sleeper::start();
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"]);
    let port = d.port();
    d.stall_log(true);
    // Two log lines a fault, each carrying the description: the pipe (64 KiB) and the
    // queue (256 KiB) are full long before the bound.
    let body = format!(r#"{{"desc":"{}"}}"#, "x".repeat(250));
    let dropped = || {
        let metrics = http(port, "GET", "/metrics", &[], b"").body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("nightmare_monkey_log_lines_dropped_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the metric is there")
    };
    let mut fired = 0;
    while dropped() == 0 {
        for _ in 0..50 {
            let answer = http(port, "POST", "/api/kill", &[], body.as_bytes());
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
        fired += 50;
        assert!(fired < 20_000, "no log line was ever dropped");
    }
    // Still serving while nobody reads: the API, the kill switch.
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
    let paused = http(port, "POST", "/api/pause", &[], b"");
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.json()["paused"], true);
    let resumed = http(port, "POST", "/api/resume", &[], b"");
    assert_eq!(resumed.json()["paused"], false, "{}", resumed.body);
    // Read again: what was dropped is said, once the writer catches up.
    d.stall_log(false);
    // "1 log line dropped" or "N log lines dropped": the burst may overflow by one.
    let said = d.wait_for(|l| l.contains(" dropped: stderr was not read"));
    assert!(said.starts_with("warning: "), "{said}");
    let count: u64 = said["warning: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {said}"));
    assert!(count > 0 && count <= dropped(), "{said}");
    // Unread again, SIGTERM is acted on: the exit waits for the log a second at most.
    d.stall_log(true);
    let before = dropped();
    while dropped() == before {
        for _ in 0..50 {
            http(port, "POST", "/api/kill", &[], body.as_bytes());
        }
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
}
