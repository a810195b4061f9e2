//! The log: JSON lines with the same facts as the plain ones, and `RUST_LOG`.

use crate::util::{http, temp_dir, Daemon, Sleeper};

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
    let dir = temp_dir("rust-log");
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
    std::fs::remove_dir_all(dir).unwrap();
}
