//! Configuration in two stages: `RawConfig`, the RON file as written (every field
//! optional, unknown fields refused), then `Config`, validated together with the command
//! line's overrides, which cannot hold an invalid state. Every error of a file is
//! reported at once, each with `file:line:column`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{
    cli::DaemonArgs,
    schedule::Schedule,
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
    schedule: Option<RawSchedule>,
    window: RawWindow,
    http: RawHttp,
    timer: RawTimer,
    faults: BTreeMap<String, RawFault>,
    plugins: Vec<PathBuf>,
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
    /// The bearer token every `/api` call must carry, if any.
    pub token: Option<String>,
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
    /// Plugin files to load, each with where it was written.
    pub plugin_files: Vec<(PathBuf, String)>,
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
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
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

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let (Some(days), Some(time), Some(zone), Some(schedule)) = (days, time, zone, schedule) else {
        return Err(ConfigErrors(vec!["invalid configuration".to_owned()]));
    };
    Ok(Config {
        execute: args.execute || raw.execute.unwrap_or(false),
        seed: args.seed.or(raw.seed),
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
    let token = match (&raw.token, &raw.token_file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{}: give http.token or http.token_file, not both",
                src.at(&["http", "token"])
            ));
            return None;
        }
        (Some(t), None) => Some(t.clone()),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) => {
                errors.push(format!(
                    "{}: token file {} is empty",
                    src.at(&["http", "token_file"]),
                    file.display()
                ));
                return None;
            }
            Err(e) => {
                errors.push(format!(
                    "{}: cannot read token file {}: {e}",
                    src.at(&["http", "token_file"]),
                    file.display()
                ));
                return None;
            }
        },
        (None, None) => None,
    };
    if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        errors.push(format!(
            "{}: the token is empty",
            src.at(&["http", "token"])
        ));
        return None;
    }
    if !addr.ip().is_loopback() && token.is_none() && !raw.allow_public_without_token {
        errors.push(format!(
            "{at}: refusing to listen on {addr} without a token: anyone who reaches it could inject faults. Set http.token or http.token_file in the config (or http.allow_public_without_token: true to accept that), or listen on 127.0.0.1"
        ));
        return None;
    }
    Some(HttpConfig {
        listen: addr,
        token,
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
