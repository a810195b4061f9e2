//! Configuration in two stages: `RawConfig`, the RON file as written (every field
//! optional, unknown fields refused), then `Config`, validated together with the command
//! line's overrides, which cannot hold an invalid state. Every error of a file is
//! reported at once, each with `file:line:column`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{
    budget::Limits,
    cli::DaemonArgs,
    schedule::Schedule,
    state,
    triggers::poller::{CatchUp, PollerConfig},
    webhook::{HookKind, NotifierConfig},
    window::{Days, TimeRange, Window, Zone},
};

/// The defaults, the original's.
pub const DEFAULT_MIN_INTERVAL: u64 = 3600;
/// The original's longest wait.
pub const DEFAULT_MAX_INTERVAL: u64 = 21600;
/// The original's days.
pub const DEFAULT_DAYS: &str = "1-5";
/// The original's hours.
pub const DEFAULT_TIME: &str = "11:00-18:00";
/// The original's port.
pub const DEFAULT_PORT: u16 = 8080;
/// The built-in fault the timer and `/api/kill` fire by default.
pub const DEFAULT_FAULT: &str = "process-kill";
/// The timer's description, the original's.
pub const TIMER_DESC: &str = "by monkey";

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "config")]
pub struct RawConfig {
    execute: Option<bool>,
    seed: Option<u64>,
    node: Option<String>,
    schedule: Option<RawSchedule>,
    window: RawWindow,
    http: RawHttp,
    timer: RawTimer,
    faults: BTreeMap<String, RawFault>,
    plugins: Vec<PathBuf>,
    plugin_dirs: Option<Vec<PathBuf>>,
    pollers: BTreeMap<String, RawPoller>,
    notifiers: BTreeMap<String, RawNotifier>,
    state_dir: Option<PathBuf>,
    journal: Option<PathBuf>,
    pause_file: Option<PathBuf>,
    budget: RawBudget,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "budget")]
struct RawBudget {
    per_hour: Option<u32>,
    per_day: Option<u32>,
    min_gap: Option<String>,
}

/// A webhook told about every fault: `Slack(...)` posts Slack's `{"text": ...}`,
/// `Json(...)` the whole outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "notifier")]
enum RawNotifier {
    Slack(RawHook),
    Json(RawHook),
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "hook")]
struct RawHook {
    url: Option<String>,
    url_file: Option<PathBuf>,
    delay: String,
    retries: u32,
    timeout: String,
    headers: BTreeMap<String, String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Default for RawHook {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            delay: "0s".to_owned(),
            retries: 5,
            timeout: "10s".to_owned(),
            headers: BTreeMap::new(),
            token: None,
            token_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "poller")]
enum RawPoller {
    Qiita(RawQiita),
    Json(RawJson),
}

// `Qiita` and `Json` repeat the fields they share: serde cannot combine `flatten` with
// `deny_unknown_fields`, and refusing unknown fields matters more here than the repetition.

/// The Qiita preset: an article's `likes_count`, as the article's script read it.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Qiita")]
struct RawQiita {
    item_id: Option<String>,
    base_url: String,
    step: u64,
    period: String,
    fault: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    desc: String,
    catch_up: CatchUp,
    timeout: String,
    max_backoff: String,
    start_from_current: bool,
    state_file: Option<PathBuf>,
}

/// Qiita's public API and its limits: 60 requests an hour without a token.
pub const QIITA_API: &str = "https://qiita.com";
const QIITA_MIN_PERIOD_WITHOUT_TOKEN: Duration = Duration::from_secs(60);

impl Default for RawQiita {
    fn default() -> Self {
        Self {
            item_id: None,
            base_url: QIITA_API.to_owned(),
            step: 3,
            period: "10m".to_owned(),
            fault: None,
            token: None,
            token_file: None,
            desc: "Congraturations you have got {likes} like".to_owned(),
            catch_up: CatchUp::OnePerPoll,
            timeout: "10s".to_owned(),
            max_backoff: "1h".to_owned(),
            start_from_current: false,
            state_file: None,
        }
    }
}

/// Any JSON counter.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Json")]
struct RawJson {
    url: Option<String>,
    pointer: Option<String>,
    headers: BTreeMap<String, String>,
    step: u64,
    period: String,
    fault: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    desc: String,
    catch_up: CatchUp,
    timeout: String,
    max_backoff: String,
    start_from_current: bool,
    state_file: Option<PathBuf>,
}

impl Default for RawJson {
    fn default() -> Self {
        Self {
            url: None,
            pointer: None,
            headers: BTreeMap::new(),
            step: 1,
            period: "10m".to_owned(),
            fault: None,
            token: None,
            token_file: None,
            desc: "the counter reached {count}".to_owned(),
            catch_up: CatchUp::OnePerPoll,
            timeout: "10s".to_owned(),
            max_backoff: "1h".to_owned(),
            start_from_current: false,
            state_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "schedule")]
enum RawSchedule {
    Uniform {
        #[serde(default)]
        min_interval: Option<u64>,
        #[serde(default)]
        max_interval: Option<u64>,
    },
    Exponential {
        mean: u64,
    },
    Cron(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "window")]
struct RawWindow {
    days: Option<String>,
    time: Option<String>,
    timezone: Option<String>,
    skip_dates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "http")]
struct RawHttp {
    enabled: bool,
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    tokens: BTreeMap<String, String>,
    allow_public_without_token: bool,
    max_body_bytes: u64,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token: None,
            token_file: None,
            tokens: BTreeMap::new(),
            allow_public_without_token: false,
            max_body_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "timer")]
struct RawTimer {
    enabled: bool,
    fault: String,
}

impl Default for RawTimer {
    fn default() -> Self {
        Self {
            enabled: true,
            fault: DEFAULT_FAULT.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "fault")]
struct RawFault {
    plugin: Option<String>,
    config: Option<ron::Value>,
}

/// The HTTP trigger's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The accepted bearer tokens, each with the name journaled for it (the unnamed
    /// `token` is named `token`). Empty: no token is required.
    pub tokens: Vec<(String, String)>,
    /// Whether a public address without a token was explicitly allowed.
    pub public_without_token: bool,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
}

/// One configured fault: a name, the plugin that provides it and its config as RON text.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// The name triggers and the API use.
    pub name: String,
    /// The plugin's name (built-in or from `plugins`).
    pub plugin: String,
    /// The plugin's configuration, as RON text (empty for the defaults).
    pub config: String,
    /// Where it was written, for errors the plugin finds in it.
    pub location: String,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether faults are really injected.
    pub execute: bool,
    /// The master seed, if fixed.
    pub seed: Option<u64>,
    /// This host's name in a fleet drill, labelling every random stream.
    pub node: Option<String>,
    /// The timer's schedule.
    pub schedule: Schedule,
    /// When faults may happen.
    pub window: Window,
    /// Whether the zone was given explicitly (else the host's).
    pub zone_name: Option<String>,
    /// The HTTP trigger, when enabled.
    pub http: Option<HttpConfig>,
    /// The fault the timer fires, when the timer is enabled.
    pub timer_fault: Option<String>,
    /// The fault `/api/kill` fires.
    pub kill_fault: String,
    /// Every configured fault (at least the default one).
    pub faults: Vec<FaultConfig>,
    /// The pollers.
    pub pollers: Vec<PollerConfig>,
    /// The webhooks told about each fault.
    pub notifiers: Vec<NotifierConfig>,
    /// The journal file.
    pub journal: PathBuf,
    /// The file whose existence pauses the monkey.
    pub pause_file: PathBuf,
    /// Rate limits shared by every trigger.
    pub limits: Limits,
    /// Plugin files to load, each with where it was written.
    pub plugin_files: Vec<(PathBuf, String)>,
    /// Directories whose `*.so` files are loaded as plugins.
    pub plugin_dirs: Vec<PathBuf>,
}

/// Errors found in a file or on the command line, all of them.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Where in the file a setting was written.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// `file:line:col` of the key path (`window.days`), best effort: the first
    /// occurrence of each key after the previous one.
    fn at(&self, keys: &[&str]) -> String {
        let mut from = 0;
        for key in keys {
            match find_key(&self.text[from..], key) {
                Some(i) => from += i,
                None => break,
            }
        }
        let (line, col) = line_col(self.text, from);
        format!("{}:{line}:{col}", self.path.display())
    }
}

fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = text[start..].find(key) {
        let at = start + i;
        let before_ok = at == 0
            || !text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = text[at + key.len()..].trim_start();
        if before_ok && (after.starts_with(':') || key.starts_with('"')) {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Reads and parses a file; a syntax or type error is one located error.
pub fn read_file(path: &Path) -> Result<(RawConfig, String), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![format!(
            "cannot read config file {}: {e}",
            path.display()
        )])
    })?;
    let options =
        // Plain values for options, and `Qiita(item_id: ..)` rather than `Qiita((item_id: ..))`.
        ron::Options::default().with_default_extension(
            ron::extensions::Extensions::IMPLICIT_SOME
                | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
        );
    match options.from_str::<RawConfig>(&text) {
        Ok(raw) => Ok((raw, text)),
        Err(e) => Err(ConfigErrors(vec![format!(
            "{}:{}:{}: {}",
            path.display(),
            e.span.start.line,
            e.span.start.col,
            e.code
        )])),
    }
}

/// Builds the configuration from the command line and, if given there, its file.
pub fn load(args: &DaemonArgs) -> Result<Config, ConfigErrors> {
    let (raw, text) = match &args.config {
        Some(path) => read_file(path)?,
        None => (RawConfig::default(), String::new()),
    };
    let path = args.config.clone().unwrap_or_default();
    validate(
        raw,
        args,
        &Source {
            path: &path,
            text: &text,
        },
    )
}

/// Checks a file on its own, as `check-config` does.
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    load(&DaemonArgs {
        config: Some(path.to_owned()),
        ..DaemonArgs::default()
    })
}

fn validate(raw: RawConfig, args: &DaemonArgs, src: &Source<'_>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let days = setting(
        (&args.day, "--day"),
        (&raw.window.days, &["window", "days"]),
        DEFAULT_DAYS,
        src,
        Days::parse,
        &mut errors,
    );
    let time = setting(
        (&args.time, "--time"),
        (&raw.window.time, &["window", "time"]),
        DEFAULT_TIME,
        src,
        TimeRange::parse,
        &mut errors,
    );
    let zone = setting(
        (&args.timezone, "--timezone"),
        (&raw.window.timezone, &["window", "timezone"]),
        "local",
        src,
        Zone::parse,
        &mut errors,
    );
    let zone_name = args
        .timezone
        .clone()
        .or_else(|| raw.window.timezone.clone());
    let mut skip = BTreeSet::new();
    for date in &raw.window.skip_dates {
        match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(d) => {
                skip.insert(d);
            }
            Err(_) => errors.push(format!(
                "{}: invalid skip date `{date}`: expected YYYY-MM-DD, e.g. 2026-12-25",
                src.at(&["window", "skip_dates", &format!("\"{date}\"")])
            )),
        }
    }

    let schedule = if args.min_interval.is_some() || args.max_interval.is_some() {
        let (file_min, file_max) = match &raw.schedule {
            Some(RawSchedule::Uniform {
                min_interval,
                max_interval,
            }) => (*min_interval, *max_interval),
            _ => (None, None),
        };
        let min = args
            .min_interval
            .or(file_min)
            .unwrap_or(DEFAULT_MIN_INTERVAL);
        let max = args
            .max_interval
            .or(file_max)
            .unwrap_or(DEFAULT_MAX_INTERVAL);
        Schedule::uniform(min, max)
            .map_err(|e| errors.push(format!("--min-interval/--max-interval: {e}")))
            .ok()
    } else {
        match &raw.schedule {
            None => Schedule::uniform(DEFAULT_MIN_INTERVAL, DEFAULT_MAX_INTERVAL).ok(),
            Some(RawSchedule::Uniform {
                min_interval,
                max_interval,
            }) => Schedule::uniform(
                min_interval.unwrap_or(DEFAULT_MIN_INTERVAL),
                max_interval.unwrap_or(DEFAULT_MAX_INTERVAL),
            )
            .map_err(|e| errors.push(format!("{}: {e}", src.at(&["schedule", "min_interval"]))))
            .ok(),
            Some(RawSchedule::Exponential { mean }) if *mean == 0 => {
                errors.push(format!(
                    "{}: the mean interval must be at least 1 second",
                    src.at(&["schedule", "mean"])
                ));
                None
            }
            Some(RawSchedule::Exponential { mean }) => Some(Schedule::Exponential { mean: *mean }),
            Some(RawSchedule::Cron(expr)) => Schedule::cron(expr)
                .map_err(|e| errors.push(format!("{}: {e}", src.at(&["schedule"]))))
                .ok(),
        }
    };

    let http = if raw.http.enabled {
        http_config(&raw.http, args, src, &mut errors)
    } else {
        None
    };

    let mut faults: Vec<FaultConfig> = Vec::new();
    for (name, fault) in &raw.faults {
        let location = src.at(&["faults", &format!("\"{name}\"")]);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            errors.push(format!("{location}: invalid fault name `{name}`: expected lower-case letters, digits and dashes"));
        }
        faults.push(FaultConfig {
            name: name.clone(),
            plugin: fault.plugin.clone().unwrap_or_else(|| name.clone()),
            config: fault.config.as_ref().map(ron_text).unwrap_or_default(),
            location,
        });
    }
    let timer_fault = raw.timer.fault.clone();
    if !faults.iter().any(|f| f.name == DEFAULT_FAULT) {
        faults.push(FaultConfig {
            name: DEFAULT_FAULT.to_owned(),
            plugin: DEFAULT_FAULT.to_owned(),
            config: String::new(),
            location: String::new(),
        });
    }
    if !faults.iter().any(|f| f.name == timer_fault) {
        errors.push(format!(
            "{}: the timer fires `{timer_fault}`, which is not a configured fault (configured: {})",
            src.at(&["timer", "fault"]),
            faults
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let state_dir = raw.state_dir.clone().unwrap_or_else(state::default_dir);
    let fault_names: Vec<String> = faults.iter().map(|f| f.name.clone()).collect();
    let pollers: Vec<PollerConfig> = raw
        .pollers
        .iter()
        .filter_map(|(name, poller)| {
            poller_config(
                name,
                poller,
                &timer_fault,
                &fault_names,
                &state_dir,
                src,
                &mut errors,
            )
        })
        .collect();

    let node = match (&args.node, &raw.node) {
        (Some(flag), _) => Some((flag.clone(), "--node".to_owned())),
        (None, Some(file)) => Some((file.clone(), src.at(&["node"]))),
        (None, None) => None,
    }
    .and_then(|(name, origin)| {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if valid {
            Some(name)
        } else {
            errors.push(format!(
                "{origin}: invalid node name `{name}`: expected letters, digits, dots, dashes and underscores, like a host or Kubernetes node name"
            ));
            None
        }
    });

    let notifiers: Vec<NotifierConfig> = raw
        .notifiers
        .iter()
        .filter_map(|(name, hook)| notifier_config(name, hook, src, &mut errors))
        .collect();

    let min_gap = raw.budget.min_gap.as_deref().and_then(|text| {
        duration(
            text,
            &src.at(&["budget", "min_gap"]),
            "min_gap",
            &mut errors,
        )
    });
    for (value, key) in [
        (raw.budget.per_hour, "per_hour"),
        (raw.budget.per_day, "per_day"),
    ] {
        if value == Some(0) {
            errors.push(format!(
                "{}: {key} must be at least 1 (leave it out for no limit)",
                src.at(&["budget", key])
            ));
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let (Some(days), Some(time), Some(zone), Some(schedule)) = (days, time, zone, schedule) else {
        return Err(ConfigErrors(vec!["invalid configuration".to_owned()]));
    };
    Ok(Config {
        execute: args.execute || raw.execute.unwrap_or(false),
        seed: args.seed.or(raw.seed),
        node,
        schedule,
        window: Window {
            days,
            time,
            zone,
            skip,
        },
        zone_name,
        http,
        timer_fault: raw.timer.enabled.then(|| timer_fault.clone()),
        kill_fault: timer_fault,
        faults,
        pollers,
        notifiers,
        journal: raw
            .journal
            .clone()
            .unwrap_or_else(|| state_dir.join("journal.jsonl")),
        pause_file: raw
            .pause_file
            .clone()
            .unwrap_or_else(|| state_dir.join("paused")),
        limits: Limits {
            per_hour: raw.budget.per_hour,
            per_day: raw.budget.per_day,
            min_gap,
        },
        plugin_dirs: if args.plugin_dirs.is_empty() {
            raw.plugin_dirs.clone().unwrap_or_else(|| {
                crate::plugin::DEFAULT_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            })
        } else {
            args.plugin_dirs.clone()
        },
        plugin_files: raw
            .plugins
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    src.at(&["plugins", &format!("\"{}\"", p.display())]),
                )
            })
            .collect(),
    })
}

/// A setting from its flag, else from the file, else its default, parsed; an error names
/// whichever of the flag or the file's `line:col` it came from.
fn setting<T>(
    (flag, flag_name): (&Option<String>, &str),
    (file, keys): (&Option<String>, &[&str]),
    default: &str,
    src: &Source<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
    errors: &mut Vec<String>,
) -> Option<T> {
    let (text, origin) = match (flag, file) {
        (Some(v), _) => (v.as_str(), flag_name.to_owned()),
        (None, Some(v)) => (v.as_str(), src.at(keys)),
        (None, None) => (default, "default".to_owned()),
    };
    parse(text)
        .map_err(|e| errors.push(format!("{origin}: {e}")))
        .ok()
}

/// A secret given inline (`token`) or in a file (`token_file`, trimmed), never both and
/// never empty. `section` is the key path of the enclosing table, for error locations.
fn read_token(
    token: &Option<String>,
    token_file: &Option<PathBuf>,
    section: &[&str],
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Result<Option<String>, ()> {
    let at = |key: &str| src.at(&[section, &[key]].concat());
    let mut fail = |message: String| {
        errors.push(message);
        Err(())
    };
    match (token, token_file) {
        (Some(_), Some(_)) => fail(format!(
            "{}: give token or token_file, not both",
            at("token")
        )),
        (Some(t), None) if t.trim().is_empty() => {
            fail(format!("{}: the token is empty", at("token")))
        }
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) if t.trim().is_empty() => fail(format!(
                "{}: token file {} is empty",
                at("token_file"),
                file.display()
            )),
            Ok(t) => Ok(Some(t.trim().to_owned())),
            Err(e) => fail(format!(
                "{}: cannot read token file {}: {e}",
                at("token_file"),
                file.display()
            )),
        },
        (None, None) => Ok(None),
    }
}

fn duration(text: &str, at: &str, key: &str, errors: &mut Vec<String>) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Some(d),
        _ => {
            errors.push(format!(
                "{at}: invalid {key} `{text}`: expected a duration like 10m, 30s or 250ms"
            ));
            None
        }
    }
}

/// Validates one poller; the Qiita preset becomes a JSON poller on the article's URL.
/// Checks configured request headers (one error per invalid one, located at `at`) and
/// adds `Authorization: Bearer TOKEN` when there is a token.
fn request_headers(
    mut headers: Vec<(String, String)>,
    token: Option<String>,
    at: &str,
    errors: &mut Vec<String>,
) -> Vec<(String, String)> {
    for (header, value) in &headers {
        let name_ok = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok();
        if !name_ok || reqwest::header::HeaderValue::from_str(value).is_err() {
            errors.push(format!(
                "{at}: invalid header `{header}`: expected a header name and a printable value"
            ));
        }
    }
    if let Some(token) = token {
        headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
    }
    headers
}

/// Checks one notifier: a URL (inline or in a file, since a Slack webhook URL is a
/// secret), durations, headers and token.
fn notifier_config(
    name: &str,
    raw: &RawNotifier,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<NotifierConfig> {
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
        (None, Some(file)) => match std::fs::read_to_string(file) {
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
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!(
                "{}: invalid URL `{url}`: expected http:// or https://",
                at(if hook.url.is_some() {
                    "url"
                } else {
                    "url_file"
                })
            ));
        }
    }
    let delay = match humantime::parse_duration(&hook.delay) {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(format!(
                "{}: invalid delay `{}`: expected a duration like 0s, 15m or 1h",
                at("delay"),
                hook.delay
            ));
            None
        }
    };
    let timeout = duration(&hook.timeout, &at("timeout"), "timeout", errors);
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

fn poller_config(
    name: &str,
    raw: &RawPoller,
    default_fault: &str,
    faults: &[String],
    state_dir: &Path,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<PollerConfig> {
    let key = format!("\"{name}\"");
    let at = |field: &str| src.at(&["pollers", &key, field]);
    let before = errors.len();
    // The fields both kinds share, then what differs.
    let (
        step,
        period,
        fault,
        token,
        token_file,
        desc,
        catch_up,
        timeout,
        max_backoff,
        start,
        state_file,
    ) = match raw {
        RawPoller::Qiita(q) => (
            q.step,
            &q.period,
            &q.fault,
            &q.token,
            &q.token_file,
            &q.desc,
            q.catch_up,
            &q.timeout,
            &q.max_backoff,
            q.start_from_current,
            &q.state_file,
        ),
        RawPoller::Json(j) => (
            j.step,
            &j.period,
            &j.fault,
            &j.token,
            &j.token_file,
            &j.desc,
            j.catch_up,
            &j.timeout,
            &j.max_backoff,
            j.start_from_current,
            &j.state_file,
        ),
    };
    if step == 0 {
        errors.push(format!("{}: step must be at least 1", at("step")));
    }
    let period = duration(period, &at("period"), "period", errors);
    let timeout = duration(timeout, &at("timeout"), "timeout", errors);
    let max_backoff = duration(max_backoff, &at("max_backoff"), "max_backoff", errors);
    let fault = fault.clone().unwrap_or_else(|| default_fault.to_owned());
    if !faults.contains(&fault) {
        errors.push(format!(
            "{}: poller `{name}` fires `{fault}`, which is not a configured fault (configured: {})",
            at("fault"),
            faults.join(", ")
        ));
    }
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
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errors.push(format!(
            "{}: invalid URL `{url}`: expected http:// or https://",
            at("url")
        ));
    }
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
        desc: desc.clone(),
        catch_up,
        timeout: timeout?,
        max_backoff: max_backoff?,
        start_from_current: start,
        state_file: state_file
            .clone()
            .unwrap_or_else(|| state_dir.join(format!("poller-{name}.json"))),
    })
}

fn http_config(
    raw: &RawHttp,
    args: &DaemonArgs,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<HttpConfig> {
    let (listen, at) = match (&args.listen, &raw.listen) {
        (Some(l), _) => (Some(l.clone()), "--listen".to_owned()),
        (None, Some(l)) => (Some(l.clone()), src.at(&["http", "listen"])),
        (None, None) => (None, String::new()),
    };
    let mut addr = match listen {
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, DEFAULT_PORT),
                Err(_) => {
                    errors.push(format!("{at}: invalid listen address `{text}`: expected IP or IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"));
                    return None;
                }
            },
        },
    };
    if let Some(port) = args.port {
        addr.set_port(port);
    }
    let token = read_token(&raw.token, &raw.token_file, &["http"], src, errors).ok()?;
    let mut tokens: Vec<(String, String)> =
        token.into_iter().map(|t| ("token".to_owned(), t)).collect();
    for (name, secret) in &raw.tokens {
        if secret.trim().is_empty() {
            errors.push(format!(
                "{}: the token of `{name}` is empty",
                src.at(&["http", "tokens", &format!("\"{name}\"")])
            ));
            return None;
        }
        tokens.push((name.clone(), secret.trim().to_owned()));
    }
    if !addr.ip().is_loopback() && tokens.is_empty() && !raw.allow_public_without_token {
        errors.push(format!(
            "{at}: refusing to listen on {addr} without a token: anyone who reaches it could inject faults. Set http.token or http.token_file in the config (or http.allow_public_without_token: true to accept that), or listen on 127.0.0.1"
        ));
        return None;
    }
    Some(HttpConfig {
        listen: addr,
        tokens,
        public_without_token: !addr.ip().is_loopback() && raw.allow_public_without_token,
        max_body_bytes: raw.max_body_bytes,
    })
}

/// A plugin config written inline in the file, back as RON text. Maps with identifier
/// keys are written as structs (`(signal: "TERM")`), which is how RON spells the
/// plugin's config struct; `ron::Value` itself no longer knows which it was.
fn ron_text(value: &ron::Value) -> String {
    let mut out = String::new();
    write_ron(value, &mut out);
    if out == "()" {
        out.clear();
    }
    out
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_ron(value: &ron::Value, out: &mut String) {
    use ron::Value as V;
    match value {
        V::Map(map) => {
            let idents = map
                .iter()
                .all(|(k, _)| matches!(k, V::String(s) if is_ident(s)));
            out.push(if idents { '(' } else { '{' });
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    V::String(s) if idents => out.push_str(s),
                    _ => write_ron(k, out),
                }
                out.push_str(": ");
                write_ron(v, out);
            }
            out.push(if idents { ')' } else { '}' });
        }
        V::Seq(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ron(v, out);
            }
            out.push(']');
        }
        V::Option(Some(v)) => {
            out.push_str("Some(");
            write_ron(v, out);
            out.push(')');
        }
        other => {
            let _ = write!(out, "{}", ron::to_string(other).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_plugin_config_comes_back_as_struct_syntax() {
        let v: ron::Value =
            ron::from_str(r#"(signal: "TERM", users: ["a", "b"], grace_ms: 5, m: {"k x": 1})"#)
                .unwrap();
        assert_eq!(
            ron_text(&v),
            r#"(grace_ms: 5, m: {"k x": 1}, signal: "TERM", users: ["a", "b"])"#
        );
        assert_eq!(ron_text(&ron::from_str::<ron::Value>("()").unwrap()), "");
    }

    #[test]
    fn keys_are_located_by_line_and_column() {
        let text = "(\n  window: (\n    days: \"9\",\n  ),\n)";
        let src = Source {
            path: Path::new("c.ron"),
            text,
        };
        assert_eq!(src.at(&["window", "days"]), "c.ron:3:5");
    }
}
