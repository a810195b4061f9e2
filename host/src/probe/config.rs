//! Probes as written (`Http(..)`, `Process(..)`, `Command(..)`, `Prometheus(..)`), a
//! fault's `recovery` and the top-level `halt`, and their validation: every field
//! bounded, every error located (`file:line:col`) and collected with the file's others.

use std::time::Duration;

use serde::Deserialize;

use super::{
    command::Command,
    http::{Http, Status},
    process::Process,
    prometheus::{Bound, Prometheus},
    Pattern, Probe,
};
use crate::support::located::{at_most, check_url, duration, DurationText, Source};

/// The most probes one list may hold.
pub const MAX_PROBES: usize = 16;
/// The longest timeout of one probe.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest recovery deadline, halt `after`, and wait between checks.
pub const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);
/// The shortest wait between two checks of the same probes.
pub const MIN_EVERY: Duration = Duration::from_millis(100);
/// The longest regular expression, and what its compiled form may take.
const MAX_PATTERN: usize = 1024;
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// The most arguments, and the longest one, of a `Command`.
const MAX_ARGS: usize = 64;
const MAX_ARG: usize = 4096;
/// The longest URL and query.
const MAX_URL: usize = 2048;
const MAX_QUERY: usize = 4096;
/// The largest `min` of a `Process` probe.
const MAX_MIN: u32 = 100_000;

/// A probe as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "probe")]
pub enum RawProbe {
    /// `Http(url: "...", status: "2xx" | 200 | [200, 204], body: "regex", timeout: "2s")`.
    Http(RawHttp),
    /// `Process(name: "regex", min: 1)`.
    Process(RawProcess),
    /// `Command(argv: ["...", ...], timeout: "5s")`.
    Command(RawCommand),
    /// `Prometheus(url: "...", query: "...", below: x | above: x, timeout: "5s")`.
    Prometheus(RawPrometheus),
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Http")]
pub struct RawHttp {
    url: Option<String>,
    status: RawStatus,
    body: Option<String>,
    timeout: DurationText,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            url: None,
            status: RawStatus::Text("2xx".to_owned()),
            body: None,
            timeout: DurationText("2s".to_owned()),
        }
    }
}

/// A status as written: `"2xx"`, `200` (or `"200"`), `[200, 204]`.
#[derive(Debug)]
enum RawStatus {
    Text(String),
    Codes(Vec<u64>),
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    r#"a status class ("2xx"), a code (200) or a list of codes ([200, 204])"#,
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStatus, E> {
                Ok(RawStatus::Text(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawStatus, E> {
                Ok(RawStatus::Codes(vec![v]))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawStatus, E> {
                u64::try_from(v)
                    .map(|v| RawStatus::Codes(vec![v]))
                    .map_err(|_| E::custom(format!("a status cannot be negative ({v})")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawStatus, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<u64>()? {
                    if codes.len() == 100 {
                        return Err(serde::de::Error::custom("at most 100 status codes"));
                    }
                    codes.push(code);
                }
                Ok(RawStatus::Codes(codes))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Process")]
pub struct RawProcess {
    name: Option<String>,
    min: u32,
}

impl Default for RawProcess {
    fn default() -> Self {
        Self { name: None, min: 1 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Command")]
pub struct RawCommand {
    argv: Vec<String>,
    timeout: DurationText,
}

impl Default for RawCommand {
    fn default() -> Self {
        Self {
            argv: Vec::new(),
            timeout: DurationText("5s".to_owned()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "Prometheus")]
pub struct RawPrometheus {
    url: Option<String>,
    query: Option<String>,
    below: Option<f64>,
    above: Option<f64>,
    timeout: DurationText,
}

impl Default for RawPrometheus {
    fn default() -> Self {
        Self {
            url: None,
            query: None,
            below: None,
            above: None,
            timeout: DurationText("5s".to_owned()),
        }
    }
}

/// Where one probe of a list was written (the byte its kind starts at), for errors
/// located at its fields.
struct At<'a, 's> {
    from: usize,
    src: &'a Source<'s>,
}

impl At<'_, '_> {
    /// `file:line:col` of `field` in this probe (of the probe itself for its kind).
    fn at(&self, field: &str) -> String {
        if matches!(field, "Http" | "Process" | "Command" | "Prometheus") {
            return self.src.at_from(self.from, &[]);
        }
        self.src.at_from(self.from, &[field])
    }
}

/// Where each probe of the list at `keys` starts: the kinds written one after the other.
fn starts(keys: &[&str], src: &Source<'_>, count: usize) -> Vec<usize> {
    let text = src.text();
    let mut from = src.offset_at(0, keys);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let next = ["Http", "Process", "Command", "Prometheus"]
            .iter()
            .filter_map(|kind| {
                let mut at = from;
                loop {
                    let i = at + text.get(at..)?.find(kind)?;
                    let after = text[i + kind.len()..].trim_start();
                    let word_before = text[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_');
                    if after.starts_with('(') && !word_before {
                        return Some(i);
                    }
                    at = i + kind.len();
                }
            })
            .min();
        match next {
            Some(i) => {
                out.push(i);
                from = i + 1;
            }
            None => out.push(from),
        }
    }
    out
}

/// A regular expression of at most [`MAX_PATTERN`] characters that compiles.
fn pattern(text: &str, at: &str, key: &str, errors: &mut Vec<String>) -> Option<Pattern> {
    if text.len() > MAX_PATTERN {
        errors.push(format!(
            "{at}: {key} is too long: at most {MAX_PATTERN} characters"
        ));
        return None;
    }
    match regex::RegexBuilder::new(text)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(Pattern(re)),
        Err(e) => {
            let first = e.to_string();
            let last = first.lines().last().unwrap_or_default().trim();
            let why = last.strip_prefix("error: ").unwrap_or(last);
            errors.push(format!("{at}: invalid {key} `{text}`: {why}"));
            None
        }
    }
}

/// A URL given, of HTTP(S), not too long.
fn url(url: &Option<String>, at: &str, kind: &str, errors: &mut Vec<String>) -> Option<String> {
    let Some(url) = url else {
        errors.push(format!("{at}: a {kind} probe needs a url"));
        return None;
    };
    if url.len() > MAX_URL {
        errors.push(format!(
            "{at}: url is too long: at most {MAX_URL} characters"
        ));
        return None;
    }
    let before = errors.len();
    check_url(url, at, errors);
    (errors.len() == before).then(|| url.clone())
}

/// A probe's timeout: a duration of at most [`MAX_TIMEOUT`].
fn timeout(text: &str, at: &str, errors: &mut Vec<String>) -> Option<Duration> {
    duration(text, at, "timeout", MAX_TIMEOUT, errors)
}

impl RawProbe {
    /// The probe, or `None` with its errors added; `from` is where it was written.
    fn validate(&self, from: usize, src: &Source<'_>, errors: &mut Vec<String>) -> Option<Probe> {
        let at = At { from, src };
        match self {
            RawProbe::Http(raw) => raw.validate(&at, errors),
            RawProbe::Process(raw) => raw.validate(&at, errors),
            RawProbe::Command(raw) => raw.validate(&at, errors),
            RawProbe::Prometheus(raw) => raw.validate(&at, errors),
        }
    }
}

impl RawHttp {
    fn validate(&self, at: &At<'_, '_>, errors: &mut Vec<String>) -> Option<Probe> {
        let url = url(&self.url, &at.at("Http"), "Http", errors);
        let status = self.status(&at.at("status"), errors);
        let body = self
            .body
            .as_deref()
            .map(|b| pattern(b, &at.at("body"), "body", errors));
        let timeout = timeout(&self.timeout, &at.at("timeout"), errors);
        Some(Probe::Http(Http {
            url: url?,
            status: status?,
            body: match body {
                Some(p) => Some(p?),
                None => None,
            },
            timeout: timeout?,
        }))
    }

    fn status(&self, at: &str, errors: &mut Vec<String>) -> Option<Status> {
        let code = |c: u64| (100..=599).contains(&c).then_some(c as u16);
        let status = match &self.status {
            RawStatus::Text(t) => match t.as_bytes() {
                [c @ b'1'..=b'5', b'x', b'x'] | [c @ b'1'..=b'5', b'X', b'X'] => {
                    Some(Status::Class(u16::from(c - b'0')))
                }
                _ => t
                    .parse::<u64>()
                    .ok()
                    .and_then(code)
                    .map(|c| Status::Codes(vec![c])),
            },
            RawStatus::Codes(codes) if !codes.is_empty() => codes
                .iter()
                .map(|c| code(*c))
                .collect::<Option<Vec<u16>>>()
                .map(Status::Codes),
            RawStatus::Codes(_) => None,
        };
        if status.is_none() {
            let written = match &self.status {
                RawStatus::Text(t) => format!("{t:?}"),
                RawStatus::Codes(c) if c.len() == 1 => c[0].to_string(),
                RawStatus::Codes(c) => format!("{c:?}"),
            };
            errors.push(format!(
                r#"{at}: invalid status {written}: expected a class ("2xx"), a code from 100 to 599 (200) or a list of codes ([200, 204])"#,
            ));
        }
        status
    }
}

impl RawProcess {
    fn validate(&self, at: &At<'_, '_>, errors: &mut Vec<String>) -> Option<Probe> {
        let name = match &self.name {
            Some(name) => pattern(name, &at.at("name"), "name", errors),
            None => {
                errors.push(format!("{}: a Process probe needs a name (a regular expression of short process names)", at.at("Process")));
                None
            }
        };
        if !(1..=MAX_MIN).contains(&self.min) {
            errors.push(format!(
                "{}: min {} is out of range: from 1 to {MAX_MIN}",
                at.at("min"),
                self.min
            ));
            return None;
        }
        Some(Probe::Process(Process {
            name: name?,
            min: self.min,
        }))
    }
}

impl RawCommand {
    fn validate(&self, at: &At<'_, '_>, errors: &mut Vec<String>) -> Option<Probe> {
        let here = at.at("argv");
        let argv_ok = if self.argv.is_empty() || self.argv[0].is_empty() {
            errors.push(format!(
                "{here}: a Command probe needs an argv: the program, then its arguments (no shell)"
            ));
            false
        } else if self.argv.len() > MAX_ARGS {
            errors.push(format!(
                "{here}: argv has {} entries: at most {MAX_ARGS}",
                self.argv.len()
            ));
            false
        } else if self
            .argv
            .iter()
            .any(|a| a.len() > MAX_ARG || a.contains('\0'))
        {
            errors.push(format!(
                "{here}: an argument is too long (at most {MAX_ARG} bytes) or holds a NUL"
            ));
            false
        } else {
            true
        };
        let timeout = timeout(&self.timeout, &at.at("timeout"), errors);
        argv_ok.then_some(())?;
        Some(Probe::Command(Command {
            argv: self.argv.clone(),
            timeout: timeout?,
        }))
    }
}

impl RawPrometheus {
    fn validate(&self, at: &At<'_, '_>, errors: &mut Vec<String>) -> Option<Probe> {
        let url = url(&self.url, &at.at("Prometheus"), "Prometheus", errors);
        let query = match &self.query {
            Some(q) if !q.trim().is_empty() && q.len() <= MAX_QUERY => Some(q.clone()),
            _ => {
                errors.push(format!(
                    "{}: a Prometheus probe needs a query (PromQL, at most {MAX_QUERY} characters)",
                    at.at("query")
                ));
                None
            }
        };
        let bound = match (self.below, self.above) {
            (Some(b), None) if b.is_finite() => Some(Bound::Below(b)),
            (None, Some(a)) if a.is_finite() => Some(Bound::Above(a)),
            _ => {
                errors.push(format!(
                    "{}: a Prometheus probe needs one bound: below: x or above: x (a finite number)",
                    at.at("Prometheus")
                ));
                None
            }
        };
        let timeout = timeout(&self.timeout, &at.at("timeout"), errors);
        Some(Probe::Prometheus(Prometheus {
            url: url?,
            query: query?,
            bound: bound?,
            timeout: timeout?,
        }))
    }
}

/// A list of probes, at most [`MAX_PROBES`]; `keys` locate it.
pub fn validate_list(
    raw: &[RawProbe],
    keys: &[&str],
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Vec<Probe> {
    if raw.len() > MAX_PROBES {
        errors.push(format!(
            "{}: {} probes: at most {MAX_PROBES}",
            src.at(keys),
            raw.len()
        ));
    }
    let raw = &raw[..raw.len().min(MAX_PROBES)];
    raw.iter()
        .zip(starts(keys, src, raw.len()))
        .filter_map(|(p, from)| p.validate(from, src, errors))
        .collect()
}

/// A wait between checks: from [`MIN_EVERY`] to [`MAX_SPAN`].
fn every(text: &str, at: &str, errors: &mut Vec<String>) -> Option<Duration> {
    let d = duration(text, at, "every", MAX_SPAN, errors)?;
    if d < MIN_EVERY {
        errors.push(format!(
            "{at}: every `{}` is too short: at least 100ms",
            text
        ));
        return None;
    }
    Some(d)
}

/// A fault's `recovery` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "recovery")]
pub struct RawRecovery {
    probes: Option<Vec<RawProbe>>,
    deadline: DurationText,
    every: DurationText,
}

impl Default for RawRecovery {
    fn default() -> Self {
        Self {
            probes: None,
            deadline: DurationText("5m".to_owned()),
            every: DurationText("1s".to_owned()),
        }
    }
}

/// After a fault: probes polled every `every` until all pass; `not-recovered` at the
/// deadline (polling goes on up to ten deadlines, for a late recovery).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The probes (the fault's steady state when none are given).
    pub probes: Vec<Probe>,
    /// When a fault not recovered yet is said not to have recovered.
    pub deadline: Duration,
    /// The wait between two checks.
    pub every: Duration,
}

impl RawRecovery {
    /// The recovery of the fault written at `keys` (`faults`, `"web"`); its probes
    /// default to the fault's `steady_state`. `None` (with an error) when it has none.
    pub fn validate(
        &self,
        steady_state: &[Probe],
        keys: &[&str],
        src: &Source<'_>,
        errors: &mut Vec<String>,
    ) -> Option<Recovery> {
        let mut here = keys.to_vec();
        here.push("recovery");
        let at = |key: &str| src.at(&[here.as_slice(), &[key]].concat());
        let probes = match &self.probes {
            Some(raw) => validate_list(raw, &[here.as_slice(), &["probes"]].concat(), src, errors),
            None => steady_state.to_vec(),
        };
        let deadline = duration(
            &self.deadline,
            &at("deadline"),
            "deadline",
            MAX_SPAN,
            errors,
        );
        let every = every(&self.every, &at("every"), errors);
        if probes.is_empty() && self.probes.as_ref().is_none_or(Vec::is_empty) {
            errors.push(format!(
                "{}: recovery has no probes: give probes: [...] or a steady_state to default to",
                src.at(&here)
            ));
            return None;
        }
        Some(Recovery {
            probes,
            deadline: deadline?,
            every: every?,
        })
    }
}

/// The top-level `halt` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "halt")]
pub struct RawHalt {
    probes: Vec<RawProbe>,
    after: DurationText,
    every: DurationText,
    scope: HaltScope,
}

/// What a halt pauses: this node (the default), or the whole fleet (its switch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum HaltScope {
    /// This node only.
    #[default]
    Node,
    /// Every node of the fleet, through the fleet's switch (needs a `fleet:` section).
    Fleet,
}

impl Default for RawHalt {
    fn default() -> Self {
        Self {
            probes: Vec::new(),
            after: DurationText("1m".to_owned()),
            every: DurationText("10s".to_owned()),
            scope: HaltScope::Node,
        }
    }
}

/// Halt conditions: probes checked every `every`; one failing for longer than `after`
/// pauses the monkey as the kill switch does.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    /// The probes.
    pub probes: Vec<Probe>,
    /// How long one may fail before the monkey halts.
    pub after: Duration,
    /// The wait between two checks.
    pub every: Duration,
    /// What a halt pauses.
    pub scope: HaltScope,
}

impl RawHalt {
    /// The halt conditions, `None` without probes.
    pub fn validate(&self, src: &Source<'_>, errors: &mut Vec<String>) -> Option<Halt> {
        let probes = validate_list(&self.probes, &["halt", "probes"], src, errors);
        let after = match humantime::parse_duration(&self.after) {
            Ok(d) => at_most(
                d,
                &self.after,
                &src.at(&["halt", "after"]),
                "after",
                MAX_SPAN,
                errors,
            ),
            Err(_) => {
                errors.push(format!(
                    "{}: invalid after `{}`: expected a duration like 1m, 30s or 0s",
                    src.at(&["halt", "after"]),
                    &*self.after
                ));
                None
            }
        };
        let every = every(&self.every, &src.at(&["halt", "every"]), errors);
        if self.probes.is_empty() {
            return None;
        }
        Some(Halt {
            probes,
            after: after?,
            every: every?,
            scope: self.scope,
        })
    }
}

#[cfg(test)]
mod tests;
