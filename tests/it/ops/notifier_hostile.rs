//! Notifiers against hooks that misbehave on purpose (a redirect, no answer at all) and
//! text that would be markup or a secret in the wrong place.

use super::{daemon_with, samples};
use crate::util::{http, Answer, Daemon, Drill, FakeServer, Reply, Sleeper, TestDir};

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
