//! A web page the operator happens to open must not drive the API: in a real browser
//! (headless Chromium), a page served from another origin on loopback posts a
//! `text/plain` form and `no-cors` fetches at a token-less daemon and reads what it can;
//! nothing changes and nothing is read, while curl-like clients and the daemon's own
//! dashboard work as before. A `Host` that is not the API's (DNS rebinding) is refused.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::util::{http, webdriver::Browser, Daemon, Drill, FakeServer, Reply, Sleeper, TestDir};

/// A token-less daemon's config (the default), all day, its journal in `dir`.
fn config(dir: &Path, http_rest: &str) -> PathBuf {
    Drill::new(dir)
        .named("other-sites.ron")
        .without("timer")
        .http(http_rest)
        .set(
            "schedule",
            "Uniform(min_interval: 21600, max_interval: 21600)",
        )
        .write()
        .into()
}

/// The page of another site: each way a page can send a request without asking the
/// API first (a form, `no-cors` fetches, a plain GET, an event stream), 6 requests.
fn hostile_page(api: &str) -> String {
    format!(
        r#"<!doctype html><title>cat pictures</title>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="{api}/api/kill" enctype="text/plain" target="sink">
<input name='{{"desc":"a page of another site","x":"' value='"}}'></form>
<script>
const api = "{api}";
new EventSource(api + "/api/events");
window.sent = Promise.allSettled([
  fetch(api + "/api/pause", {{ method: "POST", mode: "no-cors", body: "{{}}" }}),
  fetch(api + "/api/faults/process-kill", {{ method: "POST", mode: "no-cors",
    headers: {{ "Content-Type": "text/plain" }}, body: '{{"desc":"a page of another site"}}' }}),
  fetch(api + "/api/history").then((r) => r.text()),
  fetch(api + "/metrics", {{ mode: "no-cors" }}),
]).then((all) => {{ document.title = "sent"; return all.map((r) => r.status + " " + (r.value && r.value.status)); }});
document.getElementById("form").submit();
</script>"#
    )
}

/// How many requests the API refused from other sites (its metrics).
fn refused(port: u16) -> f64 {
    let metrics = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix(r#"nightmare_monkey_refusals_total{reason="origin"} "#))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no origin refusals in\n{}", metrics.body))
}

/// Waits (up to 15 s) until the API has refused `n` requests of other sites.
fn wait_refused(port: u16, n: f64) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = refused(port);
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "only {seen} of {n} requests of other sites refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_page_of_another_site_changes_nothing_and_reads_nothing() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("other-sites");
    let cfg = config(&dir, "");
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let api = format!("http://127.0.0.1:{port}");
    let site = FakeServer::start(vec![Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: hostile_page(&api),
        delay: Duration::ZERO,
    }]);

    let browser = Browser::start(800, 600);
    // Another port of the same address (same site, another origin), then another name
    // (another site): the browser marks them differently; both are refused.
    for origin in [
        format!("http://127.0.0.1:{}", site.port),
        format!("http://localhost:{}", site.port),
    ] {
        let before = refused(port);
        browser.goto(&format!("{origin}/"));
        browser.until(
            Duration::from_secs(30),
            "the page's requests",
            r#"return document.title === "sent""#,
        );
        wait_refused(port, before + 6.0);
    }
    drop(browser);

    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(status["state"], "playing", "{status}");
    let history = http(port, "GET", "/api/history", &[], b"").json();
    assert_eq!(history["faults"], json!([]), "nothing journaled: {history}");

    // The documented clients, as they are: the article's curl (a form type, no
    // Origin), hubot (JSON), Alertmanager (JSON, no Origin), the switch.
    let form = ["Content-Type: application/x-www-form-urlencoded"];
    let kill = http(
        port,
        "POST",
        "/api/kill",
        &form,
        br#"{"desc":"I like kill!"}"#,
    );
    assert_eq!(kill.status, 200, "{}", kill.body);
    // And the article's command itself, as written (curl is among the test's packages).
    let curl = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://localhost:{port}/api/kill"),
        ])
        .args(["-d", r#"{"desc":"I like kill!"}"#])
        .output()
        .expect("curl runs");
    let answer: serde_json::Value = serde_json::from_slice(&curl.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&curl.stdout)));
    assert_eq!(answer["desc"], "I like kill!", "{answer}");
    let json = ["Content-Type: application/json"];
    let hubot = http(
        port,
        "POST",
        "/api/kill",
        &json,
        br#"{"desc":"request from hubot"}"#,
    );
    assert_eq!(hubot.status, 200, "{}", hubot.body);
    let alerts = http(
        port,
        "POST",
        "/api/alerts",
        &json,
        br#"{"version":"4","alerts":[]}"#,
    );
    assert_eq!(alerts.status, 200, "{}", alerts.body);
    assert_eq!(http(port, "POST", "/api/pause", &form, b"").status, 200);
    assert_eq!(http(port, "POST", "/api/resume", &form, b"").status, 200);
    let history = http(port, "GET", "/api/history", &[], b"").json();
    assert_eq!(
        history["faults"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );

    // The daemon's own dashboard, token-less, by name and by address: it reads and it
    // flips the switch (a same-origin POST carries its Origin).
    let browser = Browser::start(1280, 1000);
    for own in [format!("http://localhost:{port}/"), format!("{api}/")] {
        browser.goto(&own);
        browser.until(
            Duration::from_secs(30),
            "the live board",
            r#"return document.getElementById("state").textContent === "Playing"
                && document.getElementById("live").textContent === "live""#,
        );
        browser.click("#switch");
        browser.click("#confirm-yes");
        browser.until(
            Duration::from_secs(30),
            "paused",
            r#"return document.getElementById("state").textContent.startsWith("Paused")"#,
        );
        assert_eq!(
            http(port, "GET", "/api/status", &[], b"").json()["state"],
            "paused"
        );
        browser.click("#switch");
        browser.click("#confirm-yes");
        browser.until(
            Duration::from_secs(30),
            "playing again",
            r#"return document.getElementById("state").textContent === "Playing""#,
        );
        assert_eq!(browser.console_errors(), Vec::<String>::new(), "{own}");
    }
}

/// One raw HTTP/1.1 request with exactly these header lines (no Host unless given).
fn raw(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(&format!("{h}\r\n"));
    }
    if method == "POST" {
        request.push_str("Content-Length: 2\r\n\r\n{}");
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_host_that_is_not_the_api_s_is_refused_without_a_token() {
    let dir = TestDir::new("other-hosts");
    let cfg = config(&dir, r#", allowed_hosts: ["monkey.example.com"]"#);
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    // What a page whose name now resolves to 127.0.0.1 sends: its own name.
    for (method, path) in [
        ("GET", "/api/history"),
        ("GET", "/api/events"),
        ("GET", "/metrics"),
        ("GET", "/api/status"),
        ("GET", "/api/report"),
        ("POST", "/api/pause"),
    ] {
        let (status, body) = raw(port, method, path, &["Host: evil.example:8080"]);
        assert_eq!(status, 421, "{method} {path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["message"],
            "refused: Host `evil.example:8080` is not this API's: expected localhost, 127.0.0.1, [::1] (any port), or a name in http.allowed_hosts; a page whose name points here (DNS rebinding) is not the API's"
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
        "LOCALHOST:9000".to_owned(),
        "monkey.example.com".to_owned(),
    ] {
        let (status, body) = raw(port, "GET", "/api/status", &[&format!("Host: {host}")]);
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, _) = raw(port, "GET", "/api/status", &["Host: [::1]"]);
    assert_eq!(status, 200);
    assert_eq!(
        http(port, "GET", "/api/status", &[], b"").json()["state"],
        "playing",
        "the refused pause changed nothing"
    );

    // With a token, a name is not checked (a rebound page has no token; fleets call the
    // API by a Service's name), and another site's page is refused all the same.
    let cfg = config(&dir, r#", token: "s3cret""#);
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let auth = "Authorization: Bearer s3cret";
    let (status, body) = raw(
        port,
        "GET",
        "/api/status",
        &["Host: nightmare-monkey.nightmare-monkey.svc:8080", auth],
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(
        port,
        "POST",
        "/api/pause",
        &[
            &format!("Host: 127.0.0.1:{port}"),
            "Origin: http://127.0.0.1:3000",
            auth,
        ],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin `http://127.0.0.1:3000`"), "{body}");
}
