//! A notifier's settings (`notifiers: {"name": Slack(...) | Json(...)}`): the raw form
//! as written and its validation into a `NotifierConfig`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{HookKind, NotifierConfig};
use crate::support::located::{
    at_most, check_secret_url, duration, read_token, request_headers, DurationText, Source,
};

/// The longest `delay` before a notification: a day.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
/// The longest `timeout` of one attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most `retries`.
pub const MAX_RETRIES: u32 = 20;

/// A webhook told about every fault: `Slack(...)` posts Slack's `{"text": ...}`,
/// `Json(...)` the whole outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "notifier")]
pub enum RawNotifier {
    /// Slack's incoming webhook.
    Slack(RawHook),
    /// A JSON POST of the whole outcome.
    Json(RawHook),
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "hook")]
pub struct RawHook {
    url: Option<String>,
    url_file: Option<PathBuf>,
    delay: DurationText,
    retries: u32,
    timeout: DurationText,
    headers: BTreeMap<String, String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Default for RawHook {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            delay: DurationText("0s".to_owned()),
            retries: 5,
            timeout: DurationText("10s".to_owned()),
            headers: BTreeMap::new(),
            token: None,
            token_file: None,
        }
    }
}

/// Checks one notifier: a URL (inline or in a file, since a Slack webhook URL is a
/// secret), durations, headers and token.
impl RawNotifier {
    /// Validates notifier `name`.
    pub fn validate(
        &self,
        name: &str,
        src: &Source<'_>,
        errors: &mut Vec<String>,
    ) -> Option<NotifierConfig> {
        let raw = self;
        let key = format!("\"{name}\"");
        let at = |field: &str| src.at(&["notifiers", &key, field]);
        let before = errors.len();
        let (kind, hook) = match raw {
            RawNotifier::Slack(h) => (HookKind::Slack, h),
            RawNotifier::Json(h) => (HookKind::Json, h),
        };
        let url = match (&hook.url, &hook.url_file) {
            (Some(_), Some(_)) => {
                errors.push(format!("{}: give url or url_file, not both", at("url")));
                None
            }
            (None, None) => {
                errors.push(format!(
                    "{}: notifier `{name}` needs url (or url_file, a file holding it)",
                    src.at(&["notifiers", &key])
                ));
                None
            }
            (Some(url), None) => Some(url.trim().to_owned()),
            (None, Some(file)) => match crate::support::small_file::read_text(
                file,
                crate::support::small_file::MAX_SECRET,
            ) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) => {
                    errors.push(format!(
                        "{}: cannot read url_file {}: {e}",
                        at("url_file"),
                        file.display()
                    ));
                    None
                }
            },
        };
        if let Some(url) = &url {
            let key = if hook.url.is_some() {
                "url"
            } else {
                "url_file"
            };
            check_secret_url(url, &at(key), errors);
        }
        let delay = match humantime::parse_duration(&hook.delay) {
            Ok(d) => at_most(d, &hook.delay, &at("delay"), "delay", MAX_DELAY, errors),
            Err(_) => {
                errors.push(format!(
                    "{}: invalid delay `{}`: expected a duration like 0s, 15m or 1h",
                    at("delay"),
                    hook.delay
                ));
                None
            }
        };
        if hook.retries > MAX_RETRIES {
            errors.push(format!(
                "{}: retries must be at most {MAX_RETRIES} (got {})",
                at("retries"),
                hook.retries
            ));
        }
        let timeout = duration(
            &hook.timeout,
            &at("timeout"),
            "timeout",
            MAX_TIMEOUT,
            errors,
        );
        // A token error is already in `errors`; the headers are still checked.
        let token = read_token(
            &hook.token,
            &hook.token_file,
            &["notifiers", &key],
            src,
            errors,
        )
        .unwrap_or(None);
        let headers = request_headers(
            hook.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            token,
            &at("headers"),
            errors,
        );
        if errors.len() > before {
            return None;
        }
        Some(NotifierConfig {
            name: name.to_owned(),
            kind,
            url: url?,
            headers,
            delay: delay?,
            timeout: timeout?,
            retries: hook.retries,
        })
    }
}
