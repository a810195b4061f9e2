//! Webhooks told about each fault, after a delay: a Slack-compatible incoming webhook
//! (`{"text": ...}`) or a generic JSON POST of the whole outcome (the API's answer). The
//! delay lets a drill's answer reach the channel only after the team had its chance.
//! Delivery never holds a fault up: each notification is its own task (`delivery`),
//! retried with backoff, and every failure is logged. A notification still waiting or
//! under way when the daemon stops is dropped, and the log says so.

use std::{sync::Arc, time::Duration};

use nightmare_monkey_plugin_api::sdk::Rng;
use tokio::sync::watch;

pub use config::RawNotifier;

mod config;
mod delivery;

use delivery::{Hook, Shared};

use crate::{
    domain::injection::Injection,
    output::{answer::Answer, logline},
    support::{
        backoff::Backoff,
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
        let hooks = list
            .into_iter()
            .map(|n| {
                let stream = rng(&n.name);
                Hook::new(n, stream)
            })
            .collect();
        Ok(Self(Some(Arc::new(Shared {
            client,
            hooks,
            stop,
        }))))
    }

    /// Waits, at most `wait`, until every notification has had its last word: after the
    /// daemon's stop each ends at once, saying it was not sent.
    pub async fn settle(&self, wait: Duration) {
        if let Some(shared) = &self.0 {
            shared.settle(wait).await;
        }
    }

    /// Tells every notifier about a fault, each on its own task. Returns at once.
    pub fn tell(&self, injection: &Injection) {
        let Some(shared) = &self.0 else {
            return;
        };
        for (index, hook) in shared.hooks.iter().enumerate() {
            let body = payload(hook.config.kind, injection);
            let what = format!("fault {}", injection.intent.id);
            shared.send(index, what, body, hook.config.delay);
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
        for (index, hook) in shared.hooks.iter().enumerate() {
            let body = match hook.config.kind {
                HookKind::Slack => slack_message(&escape_controls(text)),
                HookKind::Json => record.clone(),
            };
            shared.send(index, what.to_owned(), body, Duration::ZERO);
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
