//! `GET /metrics`: faults by result, refusals by reason, failed polls.

use super::{daemon_with, samples};
use crate::util::{http, temp_dir, Daemon, Sleeper};

#[test]
fn metrics_count_faults_and_refusals_by_reason() {
    let _victim = Sleeper::start();
    let dir = temp_dir("metrics");
    let (_d, port) = daemon_with(
        &dir,
        r#"(http: (token: "s3cret"), window: (days: "*", time: "00:00-24:00"))"#,
    );
    let auth = ["Authorization: Bearer s3cret"];
    let kill = |headers: &[&str]| http(port, "POST", "/api/kill", headers, br#"{"desc":"m"}"#);
    assert_eq!(kill(&auth).status, 200);
    assert_eq!(kill(&auth).status, 200);
    assert_eq!(kill(&[]).status, 401);
    // Scraping needs the token too when one is set.
    assert_eq!(http(port, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(http(port, "POST", "/api/pause", &auth, b"").status, 200);
    assert_eq!(kill(&auth).status, 503);

    let a = http(port, "GET", "/metrics", &auth, b"");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        a.header("content-type")
    );
    let s = samples(&a.body);
    let get = |key: &str| {
        s.get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in\n{}", a.body))
    };
    for (key, want) in [
        (
            r#"nightmare_monkey_faults_total{fault="process-kill",trigger="http",result="dry-run"}"#,
            2.0,
        ),
        (r#"nightmare_monkey_refusals_total{reason="auth"}"#, 2.0),
        (r#"nightmare_monkey_refusals_total{reason="paused"}"#, 1.0),
        (r#"nightmare_monkey_refusals_total{reason="window"}"#, 0.0),
        (r#"nightmare_monkey_refusals_total{reason="budget"}"#, 0.0),
        ("nightmare_monkey_active_faults", 0.0),
        ("nightmare_monkey_plugin_load_failures_total", 0.0),
    ] {
        assert_eq!(get(key), want, "{key}");
    }
    let info = s
        .keys()
        .find(|k| k.starts_with("nightmare_monkey_build_info{"))
        .expect("build info");
    assert!(
        info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(a.body.ends_with("# EOF\n"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn window_budget_and_plugin_failures_are_counted_too() {
    // Something to pick besides the test's own ancestors.
    let _victim = Sleeper::start();
    let dir = temp_dir("metrics-refusals");
    std::fs::write(dir.join("broken.so"), b"not a library").unwrap();
    let config = dir.join("c.ron");
    // A journal of its own: the budget counts the last day of the journal, and the
    // shared state directory's holds other tests' faults.
    std::fs::write(
        &config,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), budget: (per_hour: 1), journal: {:?})"#,
            dir.join("journal.jsonl")
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        dir.to_str().unwrap(),
    ]);
    let port = d.port();
    let kill = || http(port, "POST", "/api/kill", &[], br#"{"desc":"b"}"#);
    let (first, second) = (kill(), kill());
    assert_eq!((first.status, second.status), (200, 429), "{}", first.body);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_refusals_total{reason="budget"}"#],
        1.0
    );
    assert_eq!(s["nightmare_monkey_plugin_load_failures_total"], 1.0);
    drop(d);

    // A window open only on the day after tomorrow's weekday: closed now.
    let day = (chrono::Local::now().date_naive() + chrono::Duration::days(2))
        .format("%w")
        .to_string();
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "-d", &day, "-t", "00:00-24:00"]);
    let port = d.port();
    assert_eq!(kill_status(port), 503);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_refusals_total{reason="window"}"#],
        1.0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn kill_status(port: u16) -> u16 {
    http(port, "POST", "/api/kill", &[], br#"{"desc":"w"}"#).status
}

#[test]
fn failed_polls_are_counted_by_poller() {
    use crate::util::{FakeServer, Reply};
    let server = FakeServer::start(vec![Reply::body(500, "oops")]);
    let dir = temp_dir("metrics-poller");
    let (_d, port) = daemon_with(
        &dir,
        format!(
            r#"(timer: (enabled: false), state_dir: {dir:?}, pollers: {{"likes": Qiita(item_id: "abc", base_url: "{}", period: "15ms", max_backoff: "30ms")}})"#,
            server.url()
        ),
    );
    // A poll is counted before the next one starts: three requests seen, two counted.
    server.wait_requests(3);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    let errors = s[r#"nightmare_monkey_poller_errors_total{poller="likes"}"#];
    assert!(errors >= 2.0, "{errors}");
    std::fs::remove_dir_all(dir).unwrap();
}
