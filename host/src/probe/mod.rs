//! Probes: small checks of the system under drill, each answering pass or fail with a
//! one-line reason within its timeout, never blocking the async runtime. The same
//! probes serve a fault's steady state (checked just before it is injected), its
//! recovery (polled after it) and the halt conditions (checked all along).
//!
//! One module a kind: `http` (a status and a body), `process` (processes whose short
//! name matches, in the daemon's PID namespace), `command` (an argv that exits 0, no
//! shell), `prometheus` (an instant query against a bound). `config` holds the raw
//! forms as written and their validation. Probes draw nothing from the seeded streams:
//! a drill replays the same with or without them.

use std::time::Duration;

mod command;
mod config;
mod http;
mod process;
mod prometheus;

pub use config::{validate_list, Halt, HaltScope, RawHalt, RawProbe, RawRecovery, Recovery};

/// A validated probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `Http(url, status, body, timeout)`.
    Http(http::Http),
    /// `Process(name, min)`.
    Process(process::Process),
    /// `Command(argv, timeout)`.
    Command(command::Command),
    /// `Prometheus(url, query, below | above, timeout)`.
    Prometheus(prometheus::Prometheus),
}

/// A regular expression that compares by its text (a probe's config is compared whole).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// The longest a probe's reason is: one line, clipped.
const MAX_REASON: usize = 200;

/// The longest a probe's label is in a reason, a log line or a journal record.
const MAX_LABEL: usize = 60;

/// Clips `text` to `max` characters (an ellipsis says it was), control characters
/// escaped: a reason quotes what a server or a command said.
fn clip(text: &str, max: usize) -> String {
    let text = crate::support::text::escape_controls(text.trim()).into_owned();
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Probe {
    /// The probe as written, short: `http http://127.0.0.1:8080/health`. A URL's user,
    /// password and query values are shown as `***`: the label goes into the log, the
    /// journal's halt records, `/metrics` and `check-config`, read by more people than
    /// the configuration.
    pub fn label(&self) -> String {
        let long = match self {
            Probe::Http(p) => format!("http {}", crate::support::shown_url::redacted(&p.url)),
            Probe::Process(p) => format!("process {}", p.name.0.as_str()),
            Probe::Command(p) => format!("command {}", p.argv.join(" ")),
            Probe::Prometheus(p) => format!("prometheus {}", p.query),
        };
        clip(&long, MAX_LABEL)
    }

    /// The longest this probe may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Probe::Http(p) => p.timeout,
            Probe::Process(_) => process::TIMEOUT,
            Probe::Command(p) => p.timeout,
            Probe::Prometheus(p) => p.timeout,
        }
    }

    /// Checks once: `Ok(reason)` if it passes, `Err(reason)` if not; always within its
    /// timeout (plus a moment: the outer bound only catches a check that overran its own).
    pub async fn check(&self) -> Result<String, String> {
        let bound = self.timeout() + Duration::from_millis(500);
        let checked = tokio::time::timeout(bound, async {
            match self {
                Probe::Http(p) => p.check().await,
                Probe::Process(p) => p.check().await,
                Probe::Command(p) => p.check().await,
                Probe::Prometheus(p) => p.check().await,
            }
        })
        .await;
        match checked {
            Ok(Ok(reason)) => Ok(clip(&reason, MAX_REASON)),
            Ok(Err(reason)) => Err(clip(&reason, MAX_REASON)),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout())
            )),
        }
    }
}

/// A `Command` probe (tests elsewhere in the host build probes without a file).
#[cfg(test)]
pub(crate) fn command(argv: &[&str], timeout: Duration) -> Probe {
    Probe::Command(command::Command {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        timeout,
    })
}

/// Checks `probes` one after the other; the first that fails, as `<probe>: <reason>`
/// (label and reason apart).
pub async fn first_failure(probes: &[Probe]) -> Option<(String, String)> {
    for probe in probes {
        if let Err(reason) = probe.check().await {
            return Some((probe.label(), reason));
        }
    }
    None
}

/// An HTTP client for one probe: its timeout for connecting and for the whole answer,
/// no proxy from the environment (a probe checks what it names), a few redirects.
fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// What a failed request says in a reason: the timeout, or the innermost cause.
fn request_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The body of an answer, at most `max` bytes (a probe reads what it needs, not more).
async fn body_upto(mut answer: reqwest::Response, max: usize) -> Result<Body, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| format!("cannot read the answer: {}", e.without_url()))?
    {
        let room = max - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok(Body { bytes, cut: true });
        }
    }
    Ok(Body { bytes, cut: false })
}

/// An answer's body, read up to a bound.
struct Body {
    /// Its first bytes, at most the bound.
    bytes: Vec<u8>,
    /// Whether there was more.
    cut: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_labels_are_one_clipped_line() {
        assert_eq!(clip("a\nb", 10), "a\\nb");
        assert_eq!(clip(&"x".repeat(300), 5), "xxxx…");
    }

    /// A probe URL's secrets stay out of its label (and so out of the log, the journal
    /// and `/metrics`). They were shown as written.
    #[test]
    fn a_probe_urls_secrets_are_not_in_its_label() {
        let probe = Probe::Http(http::Http {
            url: "http://ops:pa55@127.0.0.1:9/health?token=s3cret".to_owned(),
            status: http::Status::Class(2),
            body: None,
            timeout: Duration::from_secs(1),
        });
        assert_eq!(
            probe.label(),
            "http http://***@127.0.0.1:9/health?token=***"
        );
    }
}
