//! One poll's request: GET the document, within the poll's `timeout` from the first byte
//! sent to the last byte read, and no more of it than [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use super::PollerConfig;

/// The most bytes of an answer a poll reads. A counter needs a few; Qiita's item answer
/// carries the article twice (its Markdown and its HTML), and a long article comes near
/// 1 MiB, so the bound leaves room for that and no more: a server streaming without end
/// costs the daemon at most this much memory, once.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a poll gave no count.
#[derive(Debug)]
pub(super) struct PollError {
    pub(super) message: String,
    pub(super) retry_after: Option<Duration>,
}

impl PollError {
    fn new(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

/// One poll: GET the document and read the integer at the pointer.
pub(super) async fn fetch(
    client: &reqwest::Client,
    config: &PollerConfig,
) -> Result<u64, PollError> {
    let url = config.shown_url();
    // The client's own timeouts bound the connection and each read; this one bounds the
    // whole request, so a server that drips a byte a second cannot hold a poll forever.
    let deadline = Instant::now() + config.timeout;
    let within = humantime::format_duration(config.timeout);
    let mut request = client.get(&config.url);
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    let answer = match timeout_at(deadline, request.send()).await {
        Err(_) => {
            return Err(PollError::new(format!(
                "GET {url} failed: no answer within {within}"
            )))
        }
        Ok(Err(e)) => {
            let what = if e.is_timeout() {
                format!("no answer within {within}")
            } else {
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                cause.to_string()
            };
            return Err(PollError::new(format!("GET {url} failed: {what}")));
        }
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let message = match retry_after {
            Some(d) => format!(
                "GET {url} answered 429 Too Many Requests (Retry-After: {} s)",
                d.as_secs()
            ),
            None => format!("GET {url} answered 429 Too Many Requests"),
        };
        return Err(PollError {
            message,
            retry_after,
        });
    }
    if status.is_redirection() {
        return Err(PollError::new(format!(
            "GET {url} answered {status}, a redirect to another scheme, host or port: not followed (give the URL it names)"
        )));
    }
    if !status.is_success() {
        return Err(PollError::new(format!("GET {url} answered {status}")));
    }
    let body = match timeout_at(deadline, read_at_most(answer, MAX_ANSWER_BYTES)).await {
        Err(_) => Err(format!("the answer did not end within {within}")),
        Ok(Err(Unread::TooLarge)) => Err(format!(
            "the answer is larger than {} MiB, more than a counter needs",
            MAX_ANSWER_BYTES / (1024 * 1024)
        )),
        Ok(Err(Unread::Failed(e))) => Err(format!("cannot read the answer: {e}")),
        Ok(Ok(body)) => Ok(body),
    }
    .map_err(|what| PollError::new(format!("GET {url}: {what}")))?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| PollError::new(format!("GET {url}: the answer is not JSON ({e})")))?;
    match json.pointer(&config.pointer) {
        None => Err(PollError::new(format!(
            "GET {url}: the answer has no {}",
            config.pointer
        ))),
        Some(value) => value.as_u64().ok_or_else(|| {
            PollError::new(format!(
                "GET {url}: {} is {value}, not a non-negative integer",
                config.pointer
            ))
        }),
    }
}

/// Why an answer's body was not read.
enum Unread {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body of `answer`, read a chunk at a time and given up as soon as it passes
/// `limit` bytes (or says it will, in its `Content-Length`).
async fn read_at_most(mut answer: reqwest::Response, limit: usize) -> Result<Vec<u8>, Unread> {
    if answer
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(Unread::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(Unread::Failed)? {
        if body.len() + chunk.len() > limit {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The HTTP client every poller uses.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!(
            "nightmare-monkey/",
            env!("CARGO_PKG_VERSION"),
            " (+https://github.com/nightmare-monkey/nightmare-monkey)"
        ))
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(same_origin_only))
        .build()
}

/// The most redirects one poll follows.
const MAX_REDIRECTS: usize = 5;

/// Follows a redirect within the origin first asked (scheme, host and port) only. A
/// poller's headers carry its secrets (a token, an API key), and reqwest's own policy
/// sends every header but `Authorization` and `Cookie` to whatever host a redirect
/// names; an API that moved a resource on its own host (GitHub's renamed repositories)
/// still works. A redirect elsewhere is handed back as the answer, and said.
fn same_origin_only(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let same = attempt
        .previous()
        .first()
        .is_some_and(|first| first.origin() == attempt.url().origin());
    if !same {
        attempt.stop()
    } else if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else {
        attempt.follow()
    }
}
