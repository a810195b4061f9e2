//! Notifiers against hooks that misbehave on purpose (a redirect, no answer at all) and
//! text that would be markup or a secret in the wrong place.

use super::{daemon_with, samples};
use crate::util::{http, monkey, Answer, Daemon, Drill, FakeServer, Reply, Sleeper, TestDir};

/// The daemon with these notifiers (the inside of `notifiers: {...}`), the timer off:
/// it and its API's port.
fn telling(dir: &TestDir, notifiers: &str) -> (Daemon, u16) {
    let config = Drill::new(dir)
        .without("timer")
        .config(&format!("notifiers: {{{notifiers}}}"));
    daemon_with(dir, config.text())
}

/// A fault with this description, through the API: its answer.
fn fault(port: u16, desc: &str) -> Answer {
    let body = serde_json::json!({ "desc": desc }).to_string();
    let answer = http(port, "POST", "/api/kill", &[], body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
}

/// `nightmare_monkey_notifications_total` of `notifier` and `result`.
fn counted(port: u16, notifier: &str, result: &str) -> f64 {
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    let key = format!(
        r#"nightmare_monkey_notifications_total{{notifier="{notifier}",result="{result}"}}"#
    );
    s.get(&key).copied().unwrap_or_default()
}

#[test]
fn a_hook_that_redirects_is_not_followed_and_its_headers_stay() {
    let _victim = Sleeper::start();
    let other = FakeServer::start(vec![Reply::body(200, "{}")]);
    let mut moved = Reply::body(302, "");
    moved.headers.push((
        "Location".into(),
        format!("http://localhost:{}/elsewhere", other.port),
    ));
    let hook = FakeServer::start(vec![moved]);
    let dir = TestDir::new("webhook-redirect");
    let (mut d, port) = telling(
        &dir,
        &format!(
            r#""audit": Json(url: "{}/hook", headers: {{"X-Api-Key": "AUDIT-SECRET"}}, retries: 0)"#,
            hook.url()
        ),
    );
    fault(port, "x");
    let line = d.wait_for(|l| l.contains("notifier audit"));
    assert!(
        line.starts_with("warning: notifier audit: fault ")
            && line.ends_with(" not sent: the hook answered 302 Found, a redirect: not followed (give the URL it names); gave up after 1 attempt"),
        "{line}"
    );
    assert_eq!(hook.wait_requests(1).len(), 1);
    assert!(
        other.wait_requests(0).is_empty(),
        "the redirect was followed"
    );
    assert_eq!(counted(port, "audit", "failed"), 1.0);
    assert_eq!(counted(port, "audit", "sent"), 0.0);
}

/// A description (any API client's) and a process name (any local user's) reach Slack
/// as text: `<!here>` calls no one, `<https://...|label>` is no link.
#[test]
fn slack_markup_in_a_description_is_escaped() {
    let _victim = Sleeper::start();
    let chat = FakeServer::start(vec![Reply::body(200, "ok")]);
    let dir = TestDir::new("webhook-markup");
    let (mut d, port) = telling(
        &dir,
        &format!(r#""chat": Slack(url: "{}/services/T/B/X")"#, chat.url()),
    );
    fault(
        port,
        "<!here> see <https://evil.example/x|the runbook> & more",
    );
    d.wait_for(|l| l.contains("notifier chat") && l.ends_with(" sent"));
    let body: serde_json::Value = serde_json::from_str(&chat.wait_requests(1)[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains(
            " - &lt;!here&gt; see &lt;https://evil.example/x|the runbook&gt; &amp; more\n"
        ),
        "{text}"
    );
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
}

/// A hook that takes the request and never answers.
fn hung_hook() -> FakeServer {
    let mut hang = Reply::body(200, "{}");
    hang.delay = std::time::Duration::from_secs(600);
    FakeServer::start(vec![hang])
}

#[test]
fn a_notification_cut_off_at_shutdown_is_said() {
    let _victim = Sleeper::start();
    let hook = hung_hook();
    let dir = TestDir::new("webhook-cut");
    let (mut d, port) = telling(
        &dir,
        &format!(
            r#""audit": Json(url: "{}/hook", timeout: "10m", retries: 0)"#,
            hook.url()
        ),
    );
    let id = fault(port, "x").json()["id"].as_str().unwrap().to_owned();
    hook.wait_requests(1);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let said = format!(
        "warning: notifier audit: fault {id} not sent: the daemon stopped before the hook answered"
    );
    assert!(d.log.contains(&said), "{:?}", d.log);
}

/// A hook that hangs holds 4 connections and 100 notifications; the next fault's is
/// not sent, and said.
#[test]
fn a_hung_hook_holds_a_few_sockets_and_a_hundred_notifications() {
    let _victim = Sleeper::start();
    let hook = hung_hook();
    let dir = TestDir::new("webhook-hung");
    let (mut d, port) = telling(
        &dir,
        &format!(
            r#""audit": Json(url: "{}/hook", timeout: "10m", retries: 20)"#,
            hook.url()
        ),
    );
    for _ in 0..101 {
        fault(port, "x");
    }
    let line = d.wait_for(|l| l.contains("notifier audit"));
    assert!(
        line.starts_with("warning: notifier audit: fault ")
            && line.ends_with(
                " not sent: 100 notifications are waiting already (the hook is slow or down)"
            ),
        "{line}"
    );
    hook.wait_requests(4);
    assert_eq!(counted(port, "audit", "dropped"), 1.0);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    // No attempt ended, so no fifth connection was ever opened.
    assert_eq!(hook.wait_requests(0).len(), 4);
    let cut = d
        .log
        .iter()
        .filter(|l| l.ends_with(" not sent: the daemon stopped before the hook answered"))
        .count();
    assert_eq!(cut, 100, "{:?}", d.log);
}

/// A webhook URL kept in `url_file` is a secret: a malformed one is not shown, nor is a
/// password in an inline one.
#[test]
fn a_notifiers_url_is_not_shown_even_when_malformed() {
    let dir = TestDir::new("webhook-secret-url");
    let url_file = dir.join("slack-url");
    std::fs::write(
        &url_file,
        "htps://hooks.example.com/services/T0/B0/S3CRET\n",
    )
    .unwrap();
    let check = |name: &str, notifiers: &str| {
        let config = Drill::new(&dir)
            .named(name)
            .config(&format!("notifiers: {{{notifiers}}}"))
            .write();
        monkey(&["check-config", &config])
    };
    let bad = check(
        "bad.ron",
        &format!(r#""chat": Slack(url_file: "{}")"#, url_file.display()),
    );
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.ends_with(
            ": invalid URL (not shown: it may be a secret): expected http:// or https://\n"
        ),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("S3CRET"), "{}", bad.stderr);
    let good = check(
        "good.ron",
        r#""audit": Json(url: "http://audit:pa55@127.0.0.1:18400/hook")"#,
    );
    assert_eq!(good.code, Some(0), "{}", good.stderr);
    assert!(
        good.stdout.contains(
            "  notifier audit: the outcome as JSON to http://127.0.0.1:18400 right after each fault\n"
        ),
        "{}",
        good.stdout
    );
    assert!(!good.stdout.contains("pa55"), "{}", good.stdout);
}
