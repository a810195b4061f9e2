//! What the journal records of requests: the budget's refusals, and who asked.

use super::*;

#[test]
fn over_budget_answers_429_with_retry_after_and_the_history_api_agrees() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("drill-budget");
    let cfg = config(&dir, r#"budget: (per_hour: 2, min_gap: "1h"),"#);
    with_pause(&cfg, "1s");
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let fire = |desc: &str| {
        http(
            port,
            "POST",
            "/api/kill",
            &[],
            format!(r#"{{"desc":"{desc}"}}"#).as_bytes(),
        )
    };
    assert_eq!(fire("first").status, 200);
    let refused = fire("second");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.json()["message"],
        "over budget (at least 1h between faults): the next fault fits in 3600 s"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry), "{retry}");
    let history = http(port, "GET", "/api/history", &[], b"").json();
    let faults = history["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "a refused request is no fault");
    assert_eq!(faults[0]["desc"], "first");
    assert_eq!(faults[0]["dry_run"], true);
    assert_eq!(faults[0]["outcome"]["result"], "dry-run");
    assert_eq!(
        http(port, "GET", "/api/history?since=1m", &[], b"").json()["faults"],
        history["faults"]
    );
    assert_eq!(
        http(port, "GET", "/api/history?since=soon", &[], b"").status,
        400
    );
    assert_eq!(
        history["next"],
        serde_json::Value::Null,
        "one page holds it all"
    );
    let page = http(port, "GET", "/api/history?limit=0", &[], b"");
    assert_eq!(
        (page.status, page.json()["message"].clone()),
        (400, serde_json::json!("limit must be 1 to 10000"))
    );
    let lost = http(port, "GET", "/api/history?before=yesterday", &[], b"");
    assert_eq!(
        (lost.status, lost.json()["message"].clone()),
        (
            400,
            serde_json::json!(
                "invalid before `yesterday`: expected the `next` of a page, like 2049.1835.42"
            )
        )
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn named_tokens_are_journaled_by_name_never_by_value() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("drill-tokens");
    let cfg = config(&dir, "");
    with_pause(&cfg, "1s");
    let text = fs::read_to_string(&cfg).unwrap().replace(
        r#"http: (listen: "127.0.0.1:0"),"#,
        r#"http: (listen: "127.0.0.1:0", tokens: {"alice": "a11ce-secret", "bot": "b0t-secret"}),"#,
    );
    fs::write(&cfg, text).unwrap();
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let a = http(
        port,
        "POST",
        "/api/kill",
        &["Authorization: Bearer b0t-secret"],
        br#"{"desc":"request from hubot"}"#,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"x"}"#).status,
        401
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""requested_by":"127.0.0.1:"#) && journal.contains(" (bot)\""),
        "{journal}"
    );
    assert!(
        !journal.contains("secret"),
        "a token was written: {journal}"
    );
}
