//! One configured fault: its settings as written (`RawFault`), validated into a
//! `FaultConfig` whose plugin config is the very text the user wrote, so that a position
//! the plugin reports in it points into the file; and which fault the timer and
//! `POST /api/kill` fire.

use std::path::Path;

use ron::value::RawValue;
use serde::Deserialize;

use crate::{
    probe::{validate_list, Probe, RawProbe, RawRecovery, Recovery},
    support::located::Source,
    triggers::timer::{RawTimer, DEFAULT_FAULT},
};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "fault")]
pub(super) struct RawFault<'a> {
    plugin: Option<String>,
    #[serde(borrow)]
    config: Option<&'a RawValue>,
    steady_state: Vec<RawProbe>,
    recovery: Option<RawRecovery>,
}

/// One configured fault: a name, the plugin that provides it and its config as RON text.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// The name triggers and the API use.
    pub name: String,
    /// The plugin's name (built-in or from `plugins`).
    pub plugin: String,
    /// The plugin's configuration, the RON text as written (empty for the defaults).
    pub config: String,
    /// Where the fault was written (`file:line:col`), for errors about it.
    pub location: String,
    /// Where its `config` text starts in the file (line, column), so that a position
    /// the plugin reports in it can be turned into one in the file.
    pub config_at: Option<(usize, usize)>,
    /// Probes that must pass just before it is injected, or it is refused.
    pub steady_state: Vec<Probe>,
    /// Probes polled after it until they pass (time to recover).
    pub recovery: Option<Recovery>,
}

impl FaultConfig {
    /// Where the plugin's error `message` points in the user's file, and the message
    /// without its position. The plugin reports `line:col[-line:col]: message` inside
    /// the config text; that becomes `file:line:col` in the file. Without a position
    /// (or for a fault not written in a file), the fault's own location.
    pub fn locate_error<'m>(&self, message: &'m str, file: &Path) -> (String, &'m str) {
        let at_fault = || self.location.clone();
        let Some(((line, col), rest)) = position(message) else {
            return (at_fault(), message);
        };
        match self.config_at {
            Some((start_line, start_col)) => {
                let (line, col) = if line == 1 {
                    (start_line, start_col + col - 1)
                } else {
                    (start_line + line - 1, col)
                };
                (format!("{}:{line}:{col}", file.display()), rest)
            }
            None => (at_fault(), rest),
        }
    }
}

/// A plugin's error about a config given on the command line (`--fault-config`), its
/// leading position in words at the end: `unknown field (at column 2)`, or `(at line 2,
/// column 3)` in a config of several lines. A message without one is returned as it is.
pub fn position_in_words(message: &str) -> String {
    match position(message) {
        Some(((1, col), rest)) => format!("{rest} (at column {col})"),
        Some(((line, col), rest)) => format!("{rest} (at line {line}, column {col})"),
        None => message.to_owned(),
    }
}

/// A leading `line:col` or `line:col-line:col` position, and the rest of the message.
fn position(message: &str) -> Option<((usize, usize), &str)> {
    let (head, rest) = message.split_once(": ")?;
    let mut starts = head.split('-').map(|p| {
        p.split_once(':')
            .and_then(|(l, c)| Some((l.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
    });
    let start = starts.next()??;
    if starts.any(|p| p.is_none()) || start.0 == 0 || start.1 == 0 {
        return None;
    }
    Some((start, rest))
}

/// Whether `name` may name a fault: lower-case letters, digits and dashes.
pub fn valid_fault_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The fault the timer and `POST /api/kill` fire: `timer.fault`, else `process-kill` when
/// it is configured, else the only fault; with several and none of them `process-kill`,
/// none (an error while the timer is on: it must be told which).
pub(super) fn timer_fault(
    timer: &RawTimer,
    faults: &[FaultConfig],
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let names = || {
        faults
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = &timer.fault {
        if !faults.iter().any(|f| &f.name == name) {
            errors.push(format!(
                "{}: the timer fires `{name}`, which is not a configured fault (configured: {})",
                src.at(&["timer", "fault"]),
                names()
            ));
        }
        return Some(name.clone());
    }
    let fault = match faults {
        [only] => Some(&only.name),
        _ => faults.iter().map(|f| &f.name).find(|n| *n == DEFAULT_FAULT),
    };
    if fault.is_none() && timer.enabled {
        errors.push(format!(
            "{}: which fault does the timer fire? several are configured ({}) and none is `{DEFAULT_FAULT}`: name one with `timer: (fault: \"NAME\")`, or turn the timer off with `timer: (enabled: false)`",
            src.at(&["faults"]),
            names()
        ));
    }
    fault.cloned()
}

/// A fault as configured; its plugin config travels as the text the user wrote (`()`
/// stands for the defaults, as an absent config does).
pub(super) fn fault_config(
    name: &str,
    fault: &RawFault<'_>,
    location: String,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> FaultConfig {
    let key = format!("\"{name}\"");
    let keys = ["faults", key.as_str()];
    let steady_state = validate_list(
        &fault.steady_state,
        &["faults", &key, "steady_state"],
        src,
        errors,
    );
    let recovery = fault
        .recovery
        .as_ref()
        .and_then(|r| r.validate(&steady_state, &keys, src, errors));
    let written = fault.config.map(|raw| raw.trim().get_ron());
    let (config, config_at) = match written {
        None | Some("()") => (String::new(), None),
        Some(text) => (
            text.to_owned(),
            src.offset_of(text).map(|offset| src.line_col(offset)),
        ),
    };
    FaultConfig {
        name: name.to_owned(),
        plugin: fault.plugin.clone().unwrap_or_else(|| name.to_owned()),
        config,
        location,
        config_at,
        steady_state,
        recovery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_said_in_words_at_the_end() {
        assert_eq!(
            position_in_words("1:2-1:7: Unexpected field named `signl`"),
            "Unexpected field named `signl` (at column 2)"
        );
        assert_eq!(
            position_in_words("3:4: Expected string"),
            "Expected string (at line 3, column 4)"
        );
        // No position: as it is, a `word: ` prefix included.
        assert_eq!(
            position_in_words("signal: unknown signal `KILLL`"),
            "signal: unknown signal `KILLL`"
        );
        assert_eq!(position_in_words("0:3: odd"), "0:3: odd");
    }

    fn fault(text: &str) -> FaultConfig {
        let raw = super::super::parse::raw(Path::new("c.ron"), text).unwrap();
        let src = Source::new(Path::new("c.ron"), text);
        let f = &raw.faults["kill"];
        fault_config(
            "kill",
            f,
            src.at(&["faults", "\"kill\""]),
            &src,
            &mut Vec::new(),
        )
    }

    #[test]
    fn a_plugin_config_travels_as_written_and_its_errors_point_into_the_file() {
        let text = "(faults: {\n  \"kill\": (config: (\n    sginal: \"TERM\", // typo\n  )),\n})";
        let f = fault(text);
        assert_eq!(f.config, "(\n    sginal: \"TERM\", // typo\n  )");
        assert_eq!(f.config_at, Some((2, 20)));
        let file = Path::new("c.ron");
        // A position on the config's first line is shifted by its column; a later line
        // keeps its column.
        assert_eq!(
            f.locate_error("1:2-1:3: Unexpected", file),
            ("c.ron:2:21".to_owned(), "Unexpected")
        );
        assert_eq!(
            f.locate_error("2:5-2:11: Unexpected field", file),
            ("c.ron:3:5".to_owned(), "Unexpected field")
        );
        assert_eq!(
            f.locate_error("3:1: x", file),
            ("c.ron:4:1".to_owned(), "x")
        );
        // No position: the fault's own place, the message whole.
        assert_eq!(
            f.locate_error("signal: unknown signal", file),
            ("c.ron:2:3".to_owned(), "signal: unknown signal")
        );
        assert_eq!(fault("(faults: {\"kill\": (config: ())})").config, "");
        assert_eq!(fault("(faults: {\"kill\": ()})").config_at, None);
    }

    #[test]
    fn fault_names_are_lower_case_letters_digits_and_dashes() {
        for good in ["process-kill", "a", "kill-2", "0"] {
            assert!(valid_fault_name(good), "{good}");
        }
        for bad in ["", "Kill", "kill_it", "kill it", "kill/x", "é"] {
            assert!(!valid_fault_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_a_real_position_is_taken_for_one() {
        assert_eq!(position("3:7: x"), Some(((3, 7), "x")));
        assert_eq!(position("3:7-4:1: x: y"), Some(((3, 7), "x: y")));
        assert_eq!(position("signal: unknown"), None);
        assert_eq!(position("0:1: x"), None);
        assert_eq!(position("3:7-z: x"), None);
    }
}
