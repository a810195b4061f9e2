//! One notification's way to its hook: the delay, a connection of the hook's few, the
//! attempts and the waits between them, each cut short by the daemon's stop (and said).
//! What one hook holds is bounded: a hook that hangs costs [`MAX_CONNECTIONS`] sockets
//! and [`MAX_PENDING`] notifications, and a fault past that is not sent, and said.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use nightmare_monkey_plugin_api::sdk::Rng;
use tokio::sync::{watch, Semaphore};

use super::{NotifierConfig, BACKOFF};
use crate::{
    output::{log, metrics},
    support::lock::lock,
};

/// The most notifications one notifier holds at once: waiting for their delay, for a
/// connection, or between attempts. A drill with a 15-minute delay fires far fewer in
/// that time; a hook that hangs while faults go on would otherwise hold them all.
pub const MAX_PENDING: usize = 100;

/// The most attempts one notifier has under way at once, each an open socket: a hook
/// that accepts and never answers holds each for its `timeout` (up to 10 minutes, times
/// `retries`), and without a bound these took every descriptor the daemon had.
pub const MAX_CONNECTIONS: usize = 4;

/// What the notifiers share: the client, each hook, the daemon's stop.
pub(super) struct Shared {
    pub(super) client: reqwest::Client,
    pub(super) hooks: Vec<Hook>,
    pub(super) stop: watch::Receiver<bool>,
}

/// One notifier and what it holds.
pub(super) struct Hook {
    pub(super) config: NotifierConfig,
    /// The jitter of its backoff.
    rng: Mutex<Rng>,
    /// The notifications it holds, at most [`MAX_PENDING`]; shutdown waits for none.
    pending: watch::Sender<usize>,
    /// Its attempts under way, at most [`MAX_CONNECTIONS`].
    connections: Semaphore,
}

impl Hook {
    pub(super) fn new(config: NotifierConfig, rng: Rng) -> Self {
        Self {
            config,
            rng: Mutex::new(rng),
            pending: watch::Sender::new(0),
            connections: Semaphore::new(MAX_CONNECTIONS),
        }
    }
}

impl Shared {
    /// Sends `body` to hook `index` after `delay`, on a task of its own; `what` names it
    /// in the log. One more than the hook may hold is not sent, and said.
    pub(super) fn send(
        self: &Arc<Self>,
        index: usize,
        what: String,
        body: serde_json::Value,
        delay: Duration,
    ) {
        let hook = &self.hooks[index];
        let admitted = hook.pending.send_if_modified(|held| {
            let room = *held < MAX_PENDING;
            if room {
                *held += 1;
            }
            room
        });
        if !admitted {
            let name = &hook.config.name;
            metrics::get().notification(name, "dropped");
            log::line(format!(
                "warning: notifier {name}: {what} not sent: {MAX_PENDING} notifications are waiting already (the hook is slow or down)"
            ));
            return;
        }
        let held = Held {
            shared: self.clone(),
            index,
        };
        tokio::spawn(async move { held.deliver(&what, body, delay).await });
    }

    /// Waits, at most `wait`, until no hook holds a notification.
    pub(super) async fn settle(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        for hook in &self.hooks {
            let mut held = hook.pending.subscribe();
            let _ = tokio::time::timeout_at(deadline, held.wait_for(|n| *n == 0)).await;
        }
    }
}

/// A notification a hook holds, let go when its task ends, however it ends.
struct Held {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.hooks[self.index]
            .pending
            .send_modify(|held| *held = held.saturating_sub(1));
    }
}

impl Held {
    async fn deliver(&self, id: &str, body: serde_json::Value, delay: Duration) {
        let hook = &self.shared.hooks[self.index];
        let notifier = &hook.config;
        let name = &notifier.name;
        let mut stop = self.shared.stop.clone();
        let stopped = |when: &str| {
            log::line(format!(
                "warning: notifier {name}: {id} not sent: the daemon stopped {when}"
            ));
        };
        if !wait_or_stop(&mut stop, delay).await {
            return stopped("during the delay");
        }
        let body = body.to_string();
        let mut wait = Duration::ZERO;
        for attempt in 0..=notifier.retries {
            if attempt > 0 && !wait_or_stop(&mut stop, wait).await {
                return stopped("between attempts");
            }
            // The attempt under way is cut off too: the exit waits for no hook, and a
            // notification the hook may not have had is said. The stop is looked at
            // first: a connection freed by another's end must not start a new attempt
            // once the daemon stops.
            let answer = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return stopped("before the hook answered"),
                answer = self.attempt(&body) => answer,
            };
            let Err(why) = answer else {
                metrics::get().notification(name, "sent");
                log::line(format!("notifier {name}: {id} sent"));
                return;
            };
            if attempt < notifier.retries {
                wait = BACKOFF.wait(attempt + 1, &mut lock(&hook.rng));
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

    /// One POST, once one of the hook's connections is free: why it failed, if it did.
    async fn attempt(&self, body: &str) -> Result<(), String> {
        let hook = &self.shared.hooks[self.index];
        let notifier = &hook.config;
        // Never closed: the semaphore lives as long as the hook.
        let _connection = hook
            .connections
            .acquire()
            .await
            .map_err(|_| "the notifier is closed".to_owned())?;
        let mut request = self
            .shared
            .client
            .post(&notifier.url)
            .timeout(notifier.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        for (header, value) in &notifier.headers {
            request = request.header(header, value);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) if answer.status().is_redirection() => Err(format!(
                "the hook answered {}, a redirect: not followed (give the URL it names)",
                answer.status()
            )),
            Ok(answer) => Err(format!("the hook answered {}", answer.status())),
            // The URL may hold a secret (Slack's does): name the error, not the URL.
            Err(e) => Err(format!("POST failed: {}", describe(&e))),
        }
    }
}

/// Waits `wait` unless the daemon stops first (`false`).
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(wait) => true,
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
