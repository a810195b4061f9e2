//! A poller's settings (`pollers: {"name": Qiita(...) | Json(...)}`): the raw forms as
//! written and their validation into a `PollerConfig`.

use std::{collections::BTreeMap, path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::support::{
    located::{check_url, duration, read_token, request_headers, DurationText, Source},
    text::escape_controls,
};

/// How many faults one poll may fire when the count is past several thresholds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CatchUp {
    /// One per poll, as the article's script did (a jump from 0 to 30 likes fires one
    /// fault per poll until it has caught up).
    #[default]
    OnePerPoll,
    /// All of them in the same poll.
    AllAtOnce,
}

/// A validated poller.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The poller's name (logs, the seed stream, the state file).
    pub name: String,
    /// What to GET.
    pub url: String,
    /// Where the integer is in the answer (RFC 6901 JSON pointer, `/likes_count`).
    pub pointer: String,
    /// A fault each time the count passes a multiple of this.
    pub step: u64,
    /// Time between polls when all is well.
    pub period: Duration,
    /// The fault to fire.
    pub fault: String,
    /// Extra request headers (a token becomes `Authorization: Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// The description; `{count}` and `{likes}` stand for the count.
    pub desc: String,
    /// How many faults one poll may fire.
    pub catch_up: CatchUp,
    /// Connect and read timeout of one request.
    pub timeout: Duration,
    /// The longest wait between polls while failing.
    pub max_backoff: Duration,
    /// With no state yet, start at the first multiple above the current count instead
    /// of catching up from zero.
    pub start_from_current: bool,
    /// Where the threshold is kept.
    pub state_file: PathBuf,
}

impl PollerConfig {
    /// The URL as logs show it: without a password or the query's values.
    pub fn shown_url(&self) -> std::borrow::Cow<'_, str> {
        crate::support::shown_url::redacted(&self.url)
    }
}

/// A poller as written: the Qiita preset or any JSON counter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "poller")]
pub enum RawPoller {
    /// The Qiita preset: an article's `likes_count`, as the article's script read it.
    Qiita(RawQiita),
    /// Any JSON counter.
    Json(RawJson),
}

/// The longest `period` and `max_backoff`: a day.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The longest `timeout` of one request.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Qiita's public API and its limits: 60 requests an hour without a token.
pub const QIITA_API: &str = "https://qiita.com";
const QIITA_MIN_PERIOD_WITHOUT_TOKEN: Duration = Duration::from_secs(60);

/// The settings every poller kind shares, as borrowed from either kind.
struct Shared<'a> {
    step: u64,
    period: &'a str,
    fault: &'a Option<String>,
    token: &'a Option<String>,
    token_file: &'a Option<PathBuf>,
    desc: &'a str,
    catch_up: CatchUp,
    timeout: &'a str,
    max_backoff: &'a str,
    start_from_current: bool,
    state_file: &'a Option<PathBuf>,
}

/// Declares a poller kind: its own fields (with their defaults), then the fields every
/// kind shares, listed here once. A macro rather than `#[serde(flatten)]`: serde cannot
/// combine `flatten` with `deny_unknown_fields`, and refusing a misspelt field matters
/// more. The own fields come first, so serde's "expected one of" lists them first.
macro_rules! poller_kind {
    (
        $(#[$meta:meta])*
        $name:ident as $serde_name:literal {
            $( $field:ident: $ty:ty = $default:expr, )*
        }
        step: $step:expr,
        desc: $desc:expr,
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(default, deny_unknown_fields, rename = $serde_name)]
        pub struct $name {
            $( $field: $ty, )*
            step: u64,
            period: DurationText,
            fault: Option<String>,
            token: Option<String>,
            token_file: Option<PathBuf>,
            desc: String,
            catch_up: CatchUp,
            timeout: DurationText,
            max_backoff: DurationText,
            start_from_current: bool,
            state_file: Option<PathBuf>,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    step: $step,
                    period: DurationText("10m".to_owned()),
                    fault: None,
                    token: None,
                    token_file: None,
                    desc: $desc.to_owned(),
                    catch_up: CatchUp::OnePerPoll,
                    timeout: DurationText("10s".to_owned()),
                    max_backoff: DurationText("1h".to_owned()),
                    start_from_current: false,
                    state_file: None,
                }
            }
        }

        impl $name {
            fn shared(&self) -> Shared<'_> {
                Shared {
                    step: self.step,
                    period: &self.period,
                    fault: &self.fault,
                    token: &self.token,
                    token_file: &self.token_file,
                    desc: &self.desc,
                    catch_up: self.catch_up,
                    timeout: &self.timeout,
                    max_backoff: &self.max_backoff,
                    start_from_current: self.start_from_current,
                    state_file: &self.state_file,
                }
            }
        }
    };
}

poller_kind! {
    /// The Qiita preset: an article's `likes_count`, as the article's script read it.
    RawQiita as "Qiita" {
        item_id: Option<String> = None,
        base_url: String = QIITA_API.to_owned(),
    }
    step: 3,
    desc: "Congraturations you have got {likes} like",
}

poller_kind! {
    /// Any JSON counter.
    RawJson as "Json" {
        url: Option<String> = None,
        pointer: Option<String> = None,
        headers: BTreeMap<String, String> = BTreeMap::new(),
    }
    step: 1,
    desc: "the counter reached {count}",
}

impl RawPoller {
    /// Validates poller `name`; the Qiita preset becomes a JSON poller on the article's
    /// URL. `faults` are the configured faults' names, `default_fault` the one it fires
    /// when it names none, `state_dir` where its state file goes by default.
    pub fn validate(
        &self,
        name: &str,
        default_fault: Option<&str>,
        faults: &[String],
        state_dir: &Path,
        src: &Source<'_>,
        errors: &mut Vec<String>,
    ) -> Option<PollerConfig> {
        let raw = self;
        let key = format!("\"{name}\"");
        let at = |field: &str| src.at(&["pollers", &key, field]);
        let before = errors.len();
        check_name(name, src, errors);
        // The fields both kinds share, then what differs.
        let Shared {
            step,
            period,
            fault,
            token,
            token_file,
            desc,
            catch_up,
            timeout,
            max_backoff,
            start_from_current: start,
            state_file,
        } = match raw {
            RawPoller::Qiita(q) => q.shared(),
            RawPoller::Json(j) => j.shared(),
        };
        if step == 0 {
            errors.push(format!("{}: step must be at least 1", at("step")));
        }
        let period = duration(period, &at("period"), "period", MAX_PERIOD, errors);
        let timeout = duration(timeout, &at("timeout"), "timeout", MAX_TIMEOUT, errors);
        let max_backoff = duration(
            max_backoff,
            &at("max_backoff"),
            "max_backoff",
            MAX_PERIOD,
            errors,
        );
        let fault = fired_fault(name, fault.as_deref(), default_fault, faults, src, errors);
        let token = read_token(token, token_file, &["pollers", &key], src, errors).ok()?;
        let (url, pointer, headers) = match raw {
            RawPoller::Qiita(q) => {
                let Some(item) = q.item_id.as_deref().filter(|i| !i.is_empty()) else {
                    errors.push(format!("{}: poller `{name}` needs item_id, the article's id (the last part of its URL)", src.at(&["pollers", &key])));
                    return None;
                };
                if q.base_url == QIITA_API
                    && token.is_none()
                    && period.is_some_and(|p| p < QIITA_MIN_PERIOD_WITHOUT_TOKEN)
                {
                    errors.push(format!("{}: a period under 1m would exceed Qiita's 60 requests an hour without a token: give a token or a longer period", at("period")));
                }
                let base = q.base_url.trim_end_matches('/');
                (
                    format!("{base}/api/v2/items/{item}"),
                    "/likes_count".to_owned(),
                    Vec::new(),
                )
            }
            RawPoller::Json(j) => {
                let (Some(url), Some(pointer)) = (&j.url, &j.pointer) else {
                    errors.push(format!(
                    "{}: poller `{name}` needs url and pointer (a JSON pointer like /likes_count)",
                    src.at(&["pollers", &key])
                ));
                    return None;
                };
                if !pointer.starts_with('/') {
                    errors.push(format!("{}: invalid pointer `{pointer}`: expected a JSON pointer like /likes_count or /data/0/count", at("pointer")));
                }
                let headers = j
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (url.clone(), pointer.clone(), headers)
            }
        };
        check_url(&url, &at("url"), errors);
        let headers = request_headers(headers, token, &at("headers"), errors);
        if errors.len() > before {
            return None;
        }
        Some(PollerConfig {
            name: name.to_owned(),
            url,
            pointer,
            step,
            period: period?,
            fault,
            headers,
            desc: desc.to_owned(),
            catch_up,
            timeout: timeout?,
            max_backoff: max_backoff?,
            start_from_current: start,
            state_file: state_file
                .clone()
                .unwrap_or_else(|| state_dir.join(format!("poller-{name}.json"))),
        })
    }
}

/// The longest poller name.
const MAX_NAME: usize = 100;

/// A poller's name goes into its state file's name (`poller-NAME.json`), its log lines
/// and its metrics: letters, digits, `-`, `_` and `.` only, so that `../x` names no file
/// outside the state directory and no name can break a line.
fn check_name(name: &str, src: &Source<'_>, errors: &mut Vec<String>) {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        errors.push(format!(
            "{}: invalid poller name `{}`: expected 1 to {MAX_NAME} letters, digits, `-`, `_` or `.` (it names the state file poller-NAME.json)",
            src.at(&["pollers", &format!("\"{name}\"")]),
            escape_controls(name)
        ));
    }
}

/// Refuses two pollers that keep their thresholds in one file: each would overwrite
/// the other's, and a restart would repeat or skip faults.
pub fn check_state_files(pollers: &[PollerConfig], src: &Source<'_>, errors: &mut Vec<String>) {
    for (i, poller) in pollers.iter().enumerate() {
        let shared = pollers[..i]
            .iter()
            .find(|other| other.state_file == poller.state_file);
        if let Some(other) = shared {
            let key = format!("\"{}\"", poller.name);
            errors.push(format!(
                "{}: pollers `{}` and `{}` would share the state file {}: give each its own state_file",
                src.at(&["pollers", &key, "state_file"]),
                other.name,
                poller.name,
                poller.state_file.display()
            ));
        }
    }
}

/// The fault poller `name` fires: its own, or the timer's (`default_fault`) when it
/// names none; an error unless it is one of the configured `faults`.
fn fired_fault(
    name: &str,
    fault: Option<&str>,
    default_fault: Option<&str>,
    faults: &[String],
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> String {
    let key = format!("\"{name}\"");
    let fault = fault.or(default_fault).unwrap_or_default().to_owned();
    if fault.is_empty() {
        errors.push(format!(
            "{}: poller `{name}` names no fault, and the timer's cannot stand in: several are configured ({}); name one with fault: \"NAME\"",
            src.at(&["pollers", &key]),
            faults.join(", ")
        ));
    } else if !faults.contains(&fault) {
        errors.push(format!(
            "{}: poller `{name}` fires `{fault}`, which is not a configured fault (configured: {})",
            src.at(&["pollers", &key, "fault"]),
            faults.join(", ")
        ));
    }
    fault
}
