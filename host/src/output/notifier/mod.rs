//! Webhooks told about each fault, after a delay: a Slack-compatible incoming webhook
//! (`{"text": ...}`) or a generic JSON POST of the whole outcome (the API's answer). The
//! delay lets a drill's answer reach the channel only after the team had its chance.
//! Delivery never holds a fault up: each notification is its own task, retried with
//! backoff, and every failure is logged. A notification still waiting when the daemon
//! stops is dropped, and the log says so.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use nightmare_monkey_plugin_api::sdk::Rng;
use tokio::sync::watch;

pub use config::RawNotifier;

mod config;

use crate::{
    domain::injection::Injection,
    output::{answer::Answer, log, logline, metrics},
    support::{
        backoff::Backoff,
        lock::lock,
        text::{clip_cmdline, escape_controls},
    },
};

/// What a notifier posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Slack's incoming webhook: `{"text": "..."}`.
    Slack,
    /// The injection as JSON, as `POST /api/kill` answers it.
    Json,
}

/// One configured notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Its name in the config (`notifiers: {"NAME": ...}`).
    pub name: String,
    /// What it posts.
    pub kind: HookKind,
    /// Where.
    pub url: String,
    /// Extra headers (and `Authorization` from a token).
    pub headers: Vec<(String, String)>,
    /// How long after the fault.
    pub delay: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How many times a failed delivery is tried again.
    pub retries: u32,
}

/// The waits between attempts: from a second, doubling, up to five minutes, each
/// stretched by a jitter from the notifier's own seed stream (`notifier/<name>`, with the
/// node's label in a fleet), so a fleet's monkeys do not retry in lockstep.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    ceiling: Duration::from_secs(300),
};

/// The daemon's notifiers: who hears of each fault. Cloning shares them.
#[derive(Clone, Default)]
pub struct Notifiers(Option<Arc<Shared>>);

struct Shared {
    client: reqwest::Client,
    list: Vec<(NotifierConfig, Mutex<Rng>)>,
    stop: watch::Receiver<bool>,
}

impl Notifiers {
    /// The notifiers of `list`, each with its jitter stream (`rng` gives one by the
    /// notifier's name); `stop` turning true drops what is still waiting.
    pub fn start(
        list: Vec<NotifierConfig>,
        rng: impl Fn(&str) -> Rng,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        if list.is_empty() {
            return Ok(Self::default());
        }
        // No redirect is followed: reqwest's own policy sends every header but
        // `Authorization` and `Cookie` to whatever host a redirect names, and turns a
        // POST into a body-less GET after a 302, which the hook then answers as sent.
        let client = reqwest::Client::builder()
            .user_agent(concat!("nightmare-monkey/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let list = list
            .into_iter()
            .map(|n| {
                let stream = rng(&n.name);
                (n, Mutex::new(stream))
            })
            .collect();
        Ok(Self(Some(Arc::new(Shared { client, list, stop }))))
    }

    /// Tells every notifier about a fault, each on its own task. Returns at once.
    pub fn tell(&self, injection: &Injection) {
        let Some(shared) = &self.0 else {
            return;
        };
        for (index, (notifier, _)) in shared.list.iter().enumerate() {
            let body = payload(notifier.kind, injection);
            let what = format!("fault {}", injection.intent.id);
            let shared = shared.clone();
            let delay = notifier.delay;
            tokio::spawn(async move { deliver(&shared, index, &what, body, delay).await });
        }
    }

    /// Tells every notifier of what came of the drill (a fault not recovered by its
    /// deadline, a halt), `what` naming it in the log: Slack hooks get `text`, JSON
    /// hooks `record` (the journal's record). At once, without the notifiers' delay:
    /// the delay hides a fault from its responders for a while, and this is no fault.
    pub fn tell_event(&self, what: &str, text: &str, record: serde_json::Value) {
        let Some(shared) = &self.0 else {
            return;
        };
        for (index, (notifier, _)) in shared.list.iter().enumerate() {
            let body = match notifier.kind {
                HookKind::Slack => slack_message(&escape_controls(text)),
                HookKind::Json => record.clone(),
            };
            let what = what.to_owned();
            let shared = shared.clone();
            tokio::spawn(async move { deliver(&shared, index, &what, body, Duration::ZERO).await });
        }
    }
}

/// What a notifier posts for `injection`: the log's two lines for Slack, the API's
/// answer for JSON.
pub fn payload(kind: HookKind, injection: &Injection) -> serde_json::Value {
    match kind {
        HookKind::Slack => slack_message(&format!(
            "{}\n{}",
            logline::fault_line(injection),
            logline::result_line(injection)
        )),
        HookKind::Json => {
            let mut body = serde_json::to_value(Answer::of(injection)).unwrap_or_default();
            // A chat or an audit hook gets what a log line shows of a command line.
            if let Some(cmdline) = body.pointer_mut("/process/cmdline") {
                if let Some(text) = cmdline.as_str() {
                    *cmdline = clip_cmdline(text).into_owned().into();
                }
            }
            body
        }
    }
}

/// Slack's `{"text": ...}` for `text`, with `&`, `<` and `>` escaped as Slack asks. The
/// text is the log's lines, which carry a description (any API client's) and process
/// names (any local user's): unescaped, `<!channel>` would call the whole channel and
/// `<https://...|the runbook>` show a link under a false name. The message itself uses no
/// markup, so all of it is escaped. (A JSON hook's body needs nothing: it is data.)
fn slack_message(text: &str) -> serde_json::Value {
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    serde_json::json!({ "text": format!("Nightmare Monkey: {text}") })
}

/// Waits `wait` unless the daemon stops first (`false`).
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn deliver(
    shared: &Shared,
    index: usize,
    id: &str,
    body: serde_json::Value,
    delay: Duration,
) {
    let (notifier, rng) = &shared.list[index];
    let name = &notifier.name;
    let mut stop = shared.stop.clone();
    if !wait_or_stop(&mut stop, delay).await {
        log::line(format!(
            "warning: notifier {name}: {id} not sent: the daemon stopped during the delay"
        ));
        return;
    }
    let mut wait = Duration::ZERO;
    for attempt in 0..=notifier.retries {
        if attempt > 0 && !wait_or_stop(&mut stop, wait).await {
            log::line(format!(
                "warning: notifier {name}: {id} not sent: the daemon stopped between attempts"
            ));
            return;
        }
        let mut request = shared
            .client
            .post(&notifier.url)
            .timeout(notifier.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (header, value) in &notifier.headers {
            request = request.header(header, value);
        }
        let why = match request.send().await {
            Ok(answer) if answer.status().is_success() => {
                metrics::get().notification(name, "sent");
                log::line(format!("notifier {name}: {id} sent"));
                return;
            }
            Ok(answer) if answer.status().is_redirection() => format!(
                "the hook answered {}, a redirect: not followed (give the URL it names)",
                answer.status()
            ),
            Ok(answer) => format!("the hook answered {}", answer.status()),
            // The URL may hold a secret (Slack's does): name the error, not the URL.
            Err(e) => format!("POST failed: {}", describe(&e)),
        };
        if attempt < notifier.retries {
            wait = BACKOFF.wait(attempt + 1, &mut lock(rng));
            log::line(format!(
                "warning: notifier {name}: {id}: {why}; retrying in {}",
                humantime::format_duration(wait)
            ));
        } else {
            metrics::get().notification(name, "failed");
            let tries = attempt + 1;
            log::line(format!(
                "warning: notifier {name}: {id} not sent: {why}; gave up after {tries} {}",
                if tries == 1 { "attempt" } else { "attempts" }
            ));
        }
    }
}

/// A reqwest error without its URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request error"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind} ({cause})")
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use nightmare_monkey_plugin_api::sdk::{Outcome, ProcessInfo};

    use super::*;
    use crate::domain::injection::Intent;

    #[test]
    fn a_chat_message_is_the_log_lines_and_a_json_body_a_cut_command_line() {
        let injection = Injection {
            intent: Intent {
                id: "1-1".into(),
                at: Utc::now(),
                fault: "process-kill".into(),
                plugin: "process-kill".into(),
                trigger: "http".into(),
                requested_by: None,
                desc: "guess\nwho".into(),
                dry_run: true,
                master_seed: 1,
                stream: "fault/process-kill".into(),
                stream_position: 0,
                seed: 2,
                fleet: None,
            },
            outcome: Outcome {
                action: "Kill".into(),
                result: "dry-run".into(),
                process: Some(ProcessInfo {
                    name: "java".into(),
                    pid: 7,
                    ppid: 1,
                    cmdline: "j".repeat(2000),
                    ..ProcessInfo::default()
                }),
                ..Outcome::default()
            },
            elapsed_ms: 0,
            done: Utc::now(),
            revert_due: None,
        };
        let slack = payload(HookKind::Slack, &injection);
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("Nightmare Monkey: (Dryrun) Kill: java(PID:7 PPID:1) - guess\\nwho\n")
        );
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            slack_message("<!channel> see <https://evil.example|the runbook> & more")["text"],
            "Nightmare Monkey: &lt;!channel&gt; see &lt;https://evil.example|the runbook&gt; &amp; more"
        );
        let json = payload(HookKind::Json, &injection);
        let cmdline = json["process"]["cmdline"].as_str().unwrap();
        assert!(cmdline.ends_with("… (1700 more bytes)"), "{cmdline}");
        assert_eq!(json["desc"], "guess\nwho");
    }
}
