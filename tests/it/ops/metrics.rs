//! `GET /metrics`: faults by result, refusals by reason, failed polls; a plugin's
//! result that forges nothing.

use super::{daemon_with, samples};
use crate::util::{http, Daemon, Drill, Sleeper, TestDir};

#[test]
fn metrics_count_faults_and_refusals_by_reason() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("metrics");
    let (_d, port) = daemon_with(
        &dir,
        Drill::new(&dir)
            .without("timer")
            .http(r#"token: "s3cret""#)
            .text(),
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
}

#[test]
fn window_budget_and_plugin_failures_are_counted_too() {
    // Something to pick besides the test's own ancestors.
    let _victim = Sleeper::start();
    let dir = TestDir::new("metrics-refusals");
    std::fs::write(dir.join("broken.so"), b"not a library").unwrap();
    // A journal of its own (in `dir`, the state directory): the budget counts the last
    // day of the journal, and the shared state directory's holds other tests' faults.
    let config = Drill::new(&dir)
        .named("c.ron")
        .without("timer")
        .config("budget: (per_hour: 1)")
        .write();
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        &config,
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
}

/// A plugin's `result` is one word by contract, not by force. One made to look like
/// samples (a quote, newlines, `nightmare_monkey_paused 1`) is counted as `other`, as is
/// any word that is not the SDK's: it forges no sample and adds no series.
#[test]
fn a_plugins_result_forges_no_sample_and_adds_no_series() {
    let dir = TestDir::new("metrics-hostile-result");
    let cfg = crate::drill::panicky_drill(
        &dir,
        "",
        r#""hostile": (plugin: "panicky", config: (result: "dry-run\"} 1\nnightmare_monkey_paused 1\nforged_total{a=\"")),
        "own-word": (plugin: "panicky", config: (result: "unchanged")),"#,
    );
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    for fault in ["hostile", "hostile", "own-word"] {
        let path = format!("/api/faults/{fault}");
        let fired = http(port, "POST", &path, &[], br#"{"desc":"h"}"#);
        assert_eq!(fired.status, 200, "{fault}: {}", fired.body);
    }
    let text = http(port, "GET", "/metrics", &[], b"").body;
    let sampled: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for line in &sampled {
        assert!(line.starts_with("nightmare_monkey_"), "{line:?} in\n{text}");
    }
    let named = |prefix: &str| -> Vec<&str> {
        let mut lines: Vec<&str> = sampled
            .iter()
            .copied()
            .filter(|l| l.starts_with(prefix))
            .collect();
        lines.sort_unstable();
        lines
    };
    assert_eq!(
        named("nightmare_monkey_paused"),
        ["nightmare_monkey_paused 0"],
        "{text}"
    );
    let mut want = [
        r#"nightmare_monkey_faults_total{fault="hostile",trigger="http",result="other"} 2"#,
        r#"nightmare_monkey_faults_total{fault="own-word",trigger="http",result="other"} 1"#,
    ];
    want.sort_unstable();
    assert_eq!(named("nightmare_monkey_faults_total"), want, "{text}");
    assert!(text.ends_with("# EOF\n"));
}

fn kill_status(port: u16) -> u16 {
    http(port, "POST", "/api/kill", &[], br#"{"desc":"w"}"#).status
}

#[test]
fn failed_polls_are_counted_by_poller() {
    use crate::util::{FakeServer, Reply};
    let server = FakeServer::start(vec![Reply::body(500, "oops")]);
    let dir = TestDir::new("metrics-poller");
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
}

/// The Grafana dashboard (`deploy/grafana/nightmare-monkey.json`) is one Grafana
/// imports, and every query asks for a metric the daemon serves: each metric a panel
/// names is a family of a real scrape.
#[test]
fn the_grafana_dashboard_queries_only_metrics_the_daemon_serves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/nightmare-monkey.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // What an import needs: a title, a uid, a schema version, panels laid on the grid.
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: its id is taken"
        );
        assert!(
            ["stat", "timeseries", "gauge", "table", "bargauge"]
                .contains(&panel["type"].as_str().unwrap()),
            "{title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: off the grid"
        );
        let uid = panel["datasource"]["uid"].as_str().unwrap();
        let variable = uid.trim_start_matches("${").trim_end_matches('}');
        assert!(variables.contains(&variable), "{title}: no variable {uid}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert!(target["refId"].is_string(), "{title}");
            exprs.push((
                title.to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let _victim = Sleeper::start();
    let dir = TestDir::new("metrics-grafana");
    let (_d, port) = daemon_with(&dir, Drill::new(&dir).without("timer").text());
    // A fault (dry), so that the labelled families have their first sample.
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"g"}"#).status,
        200
    );
    let scrape = http(port, "GET", "/metrics", &[], b"").body;
    let mut families: std::collections::BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // A family with labels shows from its first sample on (a recovery needs a real
    // fault and probes): those are taken from the registry's own declarations.
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/output/metrics.rs"),
    )
    .unwrap();
    let declared = regex::Regex::new(r#"registry\.register\(\s*"([a-z_]+)""#).unwrap();
    for name in ["recoveries", "notifications", "poller_errors"] {
        assert!(
            declared.captures_iter(&source).any(|c| &c[1] == name),
            "{name} is not declared in output/metrics.rs"
        );
        families.insert(format!("nightmare_monkey_{name}"));
    }
    let metric = regex::Regex::new(r"nightmare_monkey_[a-z_]+").unwrap();
    let mut named = 0;
    for (title, expr) in &exprs {
        for m in metric.find_iter(expr) {
            let name = m.as_str();
            let family = ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                families.contains(family),
                "{title}: `{name}` is not served (families: {families:?})"
            );
            named += 1;
        }
    }
    assert!(named >= exprs.len(), "every query names a metric");
}
