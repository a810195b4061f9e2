//! Webhook notifiers: after their delay, retried with backoff, never holding a fault up.

use super::{daemon_with, samples};
use crate::util::{http, monkey, Daemon, Drill, Sleeper, TestDir};

#[test]
fn webhooks_hear_of_each_fault_after_their_delay_and_retry_failures() {
    use crate::util::{FakeServer, Reply};
    let _victim = Sleeper::start();
    let chat = FakeServer::start(vec![Reply::body(200, "ok")]);
    // The generic hook fails once, then takes it.
    let audit = FakeServer::start(vec![Reply::body(500, "down"), Reply::body(200, "{}")]);
    let dir = TestDir::new("webhooks");
    let url_file = dir.join("slack-url");
    std::fs::write(&url_file, format!("{}/services/T0/B0/secret\n", chat.url())).unwrap();
    let config = Drill::new(&dir)
        .named("c.ron")
        .without("timer")
        .config(&format!(
            r#"notifiers: {{
        "chat": Slack(url_file: "{}", delay: "2s"),
        "audit": Json(url: "{}/hooks/monkey", headers: {{"X-Team": "sre"}}, token: "t0k"),
    }}"#,
            url_file.display(),
            audit.url()
        ))
        .write();
    let check = monkey(&["check-config", &config]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(
        check.stdout.contains(&format!(
            "  notifier chat: a Slack message to {} 2s after each fault\n",
            chat.url()
        )) && check.stdout.contains(&format!(
            "  notifier audit: the outcome as JSON to {} right after each fault\n",
            audit.url()
        )),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("secret"), "{}", check.stdout);
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", &config]);
    let port = d.port();
    let fired = std::time::Instant::now();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"guess who"}"#);
    let answered = std::time::Instant::now();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();

    let slack = &chat.wait_requests(1)[0];
    assert!(
        slack.at.duration_since(fired) >= std::time::Duration::from_secs(2),
        "the delay holds the message back"
    );
    // The answer does not wait for any hook: it came before the Slack message (2 s
    // after the fault) and before the audit hook's retry (a second after its first
    // try). Ordered, not timed against a bound a busy machine can miss.
    assert!(answered < slack.at, "the answer waited for the Slack hook");
    assert_eq!(
        (slack.method.as_str(), slack.path.as_str()),
        ("POST", "/services/T0/B0/secret")
    );
    assert_eq!(slack.header("content-type"), Some("application/json"));
    let text: serde_json::Value = serde_json::from_str(&slack.body).unwrap();
    assert_eq!(
        text["text"],
        format!(
            "Nightmare Monkey: (Dryrun) Kill: {}(PID:{} PPID:{}) - guess who\n{}",
            answer["name"].as_str().unwrap(),
            answer["pid"],
            answer["ppid"],
            d.wait_for(|l| l.starts_with("dry-run: "))
        )
    );

    let seen = audit.wait_requests(2);
    assert_eq!(seen[1].path, "/hooks/monkey");
    assert_eq!(seen[1].header("x-team"), Some("sre"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer t0k"));
    let outcome: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(outcome["id"], answer["id"]);
    assert_eq!(outcome["pid"], answer["pid"]);
    assert_eq!(outcome["desc"], "guess who");
    assert!(seen[1].at.duration_since(seen[0].at) >= std::time::Duration::from_secs(1));
    assert!(
        answered < seen[1].at,
        "the answer waited for the audit hook"
    );
    let retry = d.wait_for(|l| l.contains("notifier audit") && l.contains("retrying"));
    // The first retry waits a second stretched by a jitter of up to half (so a fleet's
    // monkeys do not retry in lockstep): `1s`, or `1s 234ms`.
    let (head, wait) = retry.split_once("; retrying in ").expect(&retry);
    assert!(
        head.starts_with("warning: notifier audit: fault ")
            && head.ends_with(": the hook answered 500 Internal Server Error"),
        "{retry}"
    );
    let extra_ms = match wait.strip_prefix("1s") {
        Some("") => 0,
        Some(ms) => ms
            .strip_prefix(' ')
            .and_then(|ms| ms.strip_suffix("ms"))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(u64::MAX),
        None => u64::MAX,
    };
    assert!(extra_ms < 500, "a wait in [1s, 1.5s): {retry}");
    let sent = |who: &str, l: &str| {
        l.starts_with(&format!("notifier {who}: fault ")) && l.ends_with(" sent")
    };
    d.wait_for(|l| sent("audit", l));
    if !d.log.iter().any(|l| sent("chat", l)) {
        d.wait_for(|l| sent("chat", l));
    }
    assert!(
        !d.log.iter().any(|l| l.contains("secret")),
        "the Slack URL is a secret and never logged"
    );
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_notifications_total{notifier="audit",result="sent"}"#],
        1.0
    );
}

#[test]
fn a_hook_that_never_answers_is_given_up_on_and_the_fault_is_not_held_up() {
    let _victim = Sleeper::start();
    // A port nobody listens on, kept so (a port let go may be any other test's next).
    let gone = crate::util::ReservedPort::reserve();
    let port_gone = gone.port();
    let dir = TestDir::new("webhook-down");
    let (mut d, port) = daemon_with(
        &dir,
        Drill::new(&dir)
            .without("timer")
            .config(&format!(
                r#"notifiers: {{"gone": Json(url: "http://127.0.0.1:{port_gone}/", retries: 0)}}"#
            ))
            .text(),
    );
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"x"}"#).status,
        200
    );
    let line = d.wait_for(|l| l.contains("notifier gone"));
    assert!(
        line.contains("POST failed: cannot connect") && line.ends_with("gave up after 1 attempt"),
        "{line}"
    );
}
