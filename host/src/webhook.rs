//! Webhooks told about each fault, after a delay: a Slack-compatible incoming webhook
//! (`{"text": ...}`) or a generic JSON POST of the whole outcome (the API's answer). The
//! delay lets a drill's answer reach the channel only after the team had its chance.
//! Delivery never holds a fault up: each notification is its own task, retried with
//! backoff, and every failure is logged. A notification still waiting when the daemon
//! stops is dropped, and the log says so.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde_json::json;
use tokio::sync::watch;

use crate::{engine::Injection, log, logline, metrics};

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

/// The first wait before a retry; it doubles each time, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

struct Notifiers {
    client: reqwest::Client,
    list: Vec<NotifierConfig>,
    stop: watch::Receiver<bool>,
}

static NOTIFIERS: OnceLock<Arc<Notifiers>> = OnceLock::new();

/// Sets the daemon's notifiers; `stop` turning true drops what is still waiting.
pub fn start(list: Vec<NotifierConfig>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("nightmare-monkey/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let _ = NOTIFIERS.set(Arc::new(Notifiers { client, list, stop }));
    Ok(())
}

/// What a notifier posts for `injection`.
pub fn payload(kind: HookKind, injection: &Injection) -> serde_json::Value {
    match kind {
        HookKind::Slack => json!({
            "text": format!(
                "Nightmare Monkey: {}\n{}",
                logline::fault_line(injection),
                logline::result_line(injection)
            )
        }),
        HookKind::Json => serde_json::to_value(injection).unwrap_or_default(),
    }
}

/// Tells every notifier about a fault, each on its own task. Returns at once.
pub fn fault(injection: &Injection) {
    let Some(notifiers) = NOTIFIERS.get() else {
        return;
    };
    for (index, notifier) in notifiers.list.iter().enumerate() {
        let body = payload(notifier.kind, injection);
        let id = injection.id.clone();
        let notifiers = notifiers.clone();
        tokio::spawn(async move { deliver(&notifiers, index, &id, body).await });
    }
}

/// The wait before attempt `attempt` (1 is the first retry).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Waits `wait` unless the daemon stops first (`false`).
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn deliver(notifiers: &Notifiers, index: usize, id: &str, body: serde_json::Value) {
    let notifier = &notifiers.list[index];
    let name = &notifier.name;
    let mut stop = notifiers.stop.clone();
    if !wait_or_stop(&mut stop, notifier.delay).await {
        log::line(format!(
            "warning: notifier {name}: fault {id} not sent: the daemon stopped during the delay"
        ));
        return;
    }
    for attempt in 0..=notifier.retries {
        if attempt > 0 && !wait_or_stop(&mut stop, backoff(attempt)).await {
            log::line(format!(
                "warning: notifier {name}: fault {id} not sent: the daemon stopped between attempts"
            ));
            return;
        }
        let mut request = notifiers
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
                log::line(format!("notifier {name}: fault {id} sent"));
                return;
            }
            Ok(answer) => format!("the hook answered {}", answer.status()),
            // The URL may hold a secret (Slack's does): name the error, not the URL.
            Err(e) => format!("POST failed: {}", describe(&e)),
        };
        if attempt < notifier.retries {
            log::line(format!(
                "warning: notifier {name}: fault {id}: {why}; retrying in {}",
                humantime::format_duration(backoff(attempt + 1))
            ));
        } else {
            metrics::get().notification(name, "failed");
            let tries = attempt + 1;
            log::line(format!(
                "warning: notifier {name}: fault {id} not sent: {why}; gave up after {tries} {}",
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
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let waits: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
