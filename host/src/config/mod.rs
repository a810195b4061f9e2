//! Configuration in two stages: `RawConfig`, the RON file as written (every field
//! optional, unknown fields refused), then `Config`, validated together with the command
//! line's overrides, which cannot hold an invalid state. Every error of a file is
//! reported at once, each with `file:line:column`.
//!
//! This module only assembles: each component owns its raw settings and their
//! validation next to its code (the window, the schedule and the budget in `domain`, the
//! HTTP API, the timer and the pollers in `triggers`, the notifiers in `output`), and
//! `support::located` says where in the file a setting was written. A fault's own
//! configuration is carried to its plugin as the text the user wrote (`fault`). `parse`
//! reads the file past the errors in its values, so none hides another.

mod fault;
mod parse;
mod proxies;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    cli::DaemonArgs,
    domain::{
        budget::{Limits, RawBudget},
        schedule::{self, RawSchedule, Schedule},
        window::{RawWindow, Window, WindowFlags},
    },
    output::notifier::{NotifierConfig, RawNotifier},
    plugin::Trust,
    probe::{Halt, RawHalt},
    storage::archive::{RawRetention, Retention},
    support::{
        located::{duration, DurationText, Source},
        small_file::{read_text, MAX_CONFIG},
        state,
    },
    triggers::{
        http::{HttpConfig, RawHttp},
        poller::{PollerConfig, RawPoller},
        timer::{RawTimer, DEFAULT_FAULT},
    },
};

pub use crate::support::located::ConfigErrors;
use fault::{fault_config, timer_fault, RawFault};
pub use fault::{position_in_words, valid_fault_name, FaultConfig};

/// The file as written. Borrows the file's text: a fault's `config` stays the very text
/// the user wrote, where it was written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "config")]
pub struct RawConfig<'a> {
    execute: Option<bool>,
    seed: Option<u64>,
    node: Option<String>,
    schedule: Option<RawSchedule>,
    window: RawWindow,
    http: RawHttp,
    timer: RawTimer,
    #[serde(borrow, deserialize_with = "crate::support::unique::names")]
    faults: std::collections::BTreeMap<String, RawFault<'a>>,
    plugins: Vec<PathBuf>,
    plugin_dirs: Option<Vec<PathBuf>>,
    plugin_timeout: Option<DurationText>,
    allow_untrusted_plugins: Option<bool>,
    #[serde(deserialize_with = "crate::support::unique::names")]
    pollers: std::collections::BTreeMap<String, RawPoller>,
    #[serde(deserialize_with = "crate::support::unique::names")]
    notifiers: std::collections::BTreeMap<String, RawNotifier>,
    state_dir: Option<PathBuf>,
    journal: Option<PathBuf>,
    journal_retention: RawRetention,
    pause_file: Option<PathBuf>,
    budget: RawBudget,
    halt: Option<RawHalt>,
    fleet: Option<crate::fleet::config::RawFleet>,
    #[serde(deserialize_with = "crate::support::unique::names")]
    proxies: std::collections::BTreeMap<String, proxies::RawProxy>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
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
    /// The fault `/api/kill` (and `kill --config`) fires: the timer's, even when the
    /// timer is off; none when several faults are configured and none is named for it.
    pub kill_fault: Option<String>,
    /// Every configured fault: those the file names, else the original's `process-kill`.
    pub faults: Vec<FaultConfig>,
    /// The pollers.
    pub pollers: Vec<PollerConfig>,
    /// The webhooks told about each fault.
    pub notifiers: Vec<NotifierConfig>,
    /// The journal file.
    pub journal: PathBuf,
    /// When the journal is rotated and how long its archives are kept.
    pub journal_retention: Retention,
    /// The file whose existence pauses the monkey.
    pub pause_file: PathBuf,
    /// Rate limits shared by every trigger.
    pub limits: Limits,
    /// Plugin files to load, each with where it was written.
    pub plugin_files: Vec<(PathBuf, String)>,
    /// Directories whose `*.so` files are loaded as plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// How long a plugin may take for one call (an injection, a revert) before its
    /// caller gives up on it.
    pub plugin_timeout: std::time::Duration,
    /// Whether plugin files that fail the trust checks are loaded anyway.
    pub plugin_trust: Trust,
    /// Probes whose failure pauses the monkey.
    pub halt: Option<Halt>,
    /// The fleet's coordination, in a fleet drill.
    pub fleet: Option<crate::fleet::config::FleetConfig>,
    /// The TCP proxies the daemon runs (for the `net-proxy` fault).
    pub proxies: Vec<net_faults::proxy::Spec>,
}

/// Builds the configuration from the command line and, if given there, its file.
pub fn load(args: &DaemonArgs) -> Result<Config, ConfigErrors> {
    let (config, errors) = load_all(args)?;
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The configuration as far as it can be built, and every error in its values: a
/// setting in error is replaced by its default, so that what depends on the rest (the
/// plugins, every fault's own config) can still be checked in the same run and all the
/// file's errors reported at once. `Err` only for a file that cannot be read or parsed.
pub fn load_all(args: &DaemonArgs) -> Result<(Config, Vec<String>), ConfigErrors> {
    let Some(path) = &args.config else {
        return Ok(assemble(
            RawConfig::default(),
            args,
            &Source::new(Path::new(""), ""),
        ));
    };
    let text = read_text(path, MAX_CONFIG).map_err(|e| {
        ConfigErrors(vec![format!(
            "cannot read config file {}: {e}",
            path.display()
        )])
    })?;
    let (text, mut errors) = parse::readable(path, &text)?;
    let raw = parse::raw(path, &text)?;
    let (config, more) = assemble(raw, args, &Source::new(path, &text));
    errors.extend(more);
    Ok((config, errors))
}

/// Checks a file on its own, as `check-config` does.
pub fn check_file(path: &Path) -> Result<(Config, Vec<String>), ConfigErrors> {
    load_all(&DaemonArgs {
        config: Some(path.to_owned()),
        ..DaemonArgs::default()
    })
}

/// Assembles the components' validated settings, in the file's order of concerns, so
/// errors come in a stable order; a setting in error is its default in the result.
fn assemble(raw: RawConfig, args: &DaemonArgs, src: &Source<'_>) -> (Config, Vec<String>) {
    let mut errors = Vec::new();
    let window = raw.window.validate(
        WindowFlags {
            day: args.day.as_ref(),
            time: args.time.as_ref(),
            timezone: args.timezone.as_ref(),
        },
        src,
        &mut errors,
    );
    let schedule = schedule::validate(
        raw.schedule.as_ref(),
        (args.min_interval, args.max_interval),
        src,
        &mut errors,
    );
    let http = if raw.http.enabled() {
        raw.http
            .validate(args.listen.as_deref(), args.port, src, &mut errors)
    } else {
        None
    };

    let faults = faults(&raw, src, &mut errors);
    let timer_fault = timer_fault(&raw.timer, &faults, src, &mut errors);
    for (key, path) in [
        ("state_dir", &raw.state_dir),
        ("journal", &raw.journal),
        ("pause_file", &raw.pause_file),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            errors.push(format!(
                "{}: {key}: expected a path, not an empty string (leave it out for its default)",
                src.at(&[key])
            ));
        }
    }
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| raw.state_dir.clone())
        .unwrap_or_else(state::default_dir);
    let fault_names: Vec<String> = faults.iter().map(|f| f.name.clone()).collect();
    let pollers: Vec<PollerConfig> = raw
        .pollers
        .iter()
        .filter_map(|(name, poller)| {
            poller.validate(
                name,
                timer_fault.as_deref(),
                &fault_names,
                &state_dir,
                src,
                &mut errors,
            )
        })
        .collect();
    crate::triggers::poller::check_state_files(&pollers, src, &mut errors);

    let node = node_name(args, &raw, src, &mut errors);
    let notifiers: Vec<NotifierConfig> = raw
        .notifiers
        .iter()
        .filter_map(|(name, hook)| hook.validate(name, src, &mut errors))
        .collect();
    let limits = raw.budget.validate(src, &mut errors);
    let journal_retention = raw.journal_retention.validate(src, &mut errors);
    let (halt, fleet) = halt_and_fleet(&raw, src, &mut errors);
    let plugin_timeout = plugin_timeout(&raw, src, &mut errors);
    let proxies = proxies::validate(
        &raw.proxies,
        http.as_ref().map(|h| h.listen),
        src,
        &mut errors,
    );

    // What was refused stands in at its default (the errors say what was wrong), so
    // that the rest is still checked.
    let (window, zone_name) = window.unwrap_or_else(|| {
        RawWindow::default()
            .validate(Default::default(), src, &mut Vec::new())
            .expect("the default window is valid")
    });
    let schedule = schedule.unwrap_or_else(|| {
        schedule::validate(None, (None, None), src, &mut Vec::new())
            .expect("the default schedule is valid")
    });
    let plugin_timeout = plugin_timeout.unwrap_or(crate::engine::PLUGIN_TIMEOUT);
    let config = Config {
        file: args.config.clone(),
        execute: args.execute || raw.execute.unwrap_or(false),
        seed: args.seed.or(raw.seed),
        node,
        schedule,
        window,
        zone_name,
        http,
        timer_fault: timer_fault.clone().filter(|_| raw.timer.enabled),
        kill_fault: timer_fault,
        faults,
        pollers,
        notifiers,
        journal: raw
            .journal
            .clone()
            .unwrap_or_else(|| state_dir.join("journal.jsonl")),
        journal_retention,
        pause_file: raw
            .pause_file
            .clone()
            .unwrap_or_else(|| state_dir.join("paused")),
        limits,
        plugin_dirs: plugin_dirs(&raw, args),
        plugin_files: plugin_files(&raw, src),
        plugin_timeout,
        plugin_trust: Trust::allowing_untrusted(
            args.allow_untrusted_plugins || raw.allow_untrusted_plugins.unwrap_or(false),
        ),
        halt,
        fleet,
        proxies,
    };
    (config, errors)
}

/// The halt probes and the fleet's coordination, each checked, and checked together: a
/// halt that pauses the fleet needs one.
fn halt_and_fleet(
    raw: &RawConfig,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> (Option<Halt>, Option<crate::fleet::config::FleetConfig>) {
    let halt = raw
        .halt
        .as_ref()
        .and_then(|halt| halt.validate(src, errors));
    let fleet = raw
        .fleet
        .as_ref()
        .and_then(|fleet| fleet.validate(src, errors));
    if halt
        .as_ref()
        .is_some_and(|h| h.scope == crate::probe::HaltScope::Fleet)
        && raw.fleet.is_none()
    {
        errors.push(format!(
            "{}: scope Fleet pauses the fleet through its coordinator: add a fleet: section, or leave scope out",
            src.at(&["halt", "scope"])
        ));
    }
    (halt, fleet)
}

/// How long a plugin call may take (`None`: the setting is in error).
fn plugin_timeout(
    raw: &RawConfig,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<std::time::Duration> {
    match &raw.plugin_timeout {
        None => Some(crate::engine::PLUGIN_TIMEOUT),
        Some(text) => duration(
            text,
            &src.at(&["plugin_timeout"]),
            "plugin_timeout",
            MAX_PLUGIN_TIMEOUT,
            errors,
        ),
    }
}

/// The faults the file names, each checked; the original's fault only when the file
/// names none (a config that names its faults arms only those).
fn faults(raw: &RawConfig, src: &Source<'_>, errors: &mut Vec<String>) -> Vec<FaultConfig> {
    let mut faults: Vec<FaultConfig> = Vec::new();
    for (name, fault) in &raw.faults {
        let location = src.at(&["faults", &format!("\"{name}\"")]);
        if !valid_fault_name(name) {
            errors.push(format!("{location}: invalid fault name `{name}`: expected lower-case letters, digits and dashes"));
        }
        faults.push(fault_config(name, fault, location, src, errors));
    }
    if faults.is_empty() {
        faults.push(FaultConfig {
            name: DEFAULT_FAULT.to_owned(),
            plugin: DEFAULT_FAULT.to_owned(),
            config: String::new(),
            location: String::new(),
            config_at: None,
            steady_state: Vec::new(),
            recovery: None,
        });
    }
    faults
}

/// The directories plugin files are loaded from: the flags', else the file's, else the
/// default ones.
fn plugin_dirs(raw: &RawConfig, args: &DaemonArgs) -> Vec<PathBuf> {
    if !args.plugin_dirs.is_empty() {
        return args.plugin_dirs.clone();
    }
    raw.plugin_dirs.clone().unwrap_or_else(|| {
        crate::plugin::DEFAULT_DIRS
            .iter()
            .map(PathBuf::from)
            .collect()
    })
}

/// The plugin files the file names, each with where it is named.
fn plugin_files(raw: &RawConfig, src: &Source<'_>) -> Vec<(PathBuf, String)> {
    raw.plugins
        .iter()
        .map(|p| {
            (
                p.clone(),
                src.at(&["plugins", &format!("\"{}\"", p.display())]),
            )
        })
        .collect()
}

/// The longest `plugin_timeout`: a plugin call longer than this is a hung plugin.
const MAX_PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// This host's name in a fleet drill, from `--node` or the file.
fn node_name(
    args: &DaemonArgs,
    raw: &RawConfig<'_>,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let (name, origin) = match (&args.node, &raw.node) {
        (Some(flag), _) => (flag.clone(), "--node".to_owned()),
        (None, Some(file)) => (file.clone(), src.at(&["node"])),
        (None, None) => return None,
    };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_flag_wins_over_the_file_and_is_checked() {
        let text = "(node: \"web-1\")";
        let raw = parse::raw(Path::new("c.ron"), text).unwrap();
        let src = Source::new(Path::new("c.ron"), text);
        let mut errors = Vec::new();
        let args = |node: Option<&str>| DaemonArgs {
            node: node.map(str::to_owned),
            ..DaemonArgs::default()
        };
        assert_eq!(
            node_name(&args(None), &raw, &src, &mut errors),
            Some("web-1".into())
        );
        assert_eq!(
            node_name(&args(Some("db_2.eu")), &raw, &src, &mut errors),
            Some("db_2.eu".into())
        );
        assert_eq!(
            node_name(&args(Some(&"x".repeat(253))), &raw, &src, &mut errors).map(|n| n.len()),
            Some(253)
        );
        assert!(errors.is_empty(), "{errors:?}");
        for bad in ["", "web 1", "web/1", &"x".repeat(254)] {
            assert_eq!(
                node_name(&args(Some(bad)), &raw, &src, &mut errors),
                None,
                "{bad}"
            );
        }
        assert_eq!(errors.len(), 4);
        assert!(
            errors[1].starts_with("--node: invalid node name `web 1`: expected letters"),
            "{}",
            errors[1]
        );
        let none = parse::raw(Path::new("c.ron"), "()").unwrap();
        assert_eq!(node_name(&args(None), &none, &src, &mut errors), None);
        assert_eq!(errors.len(), 4);
    }

    /// Parses and validates `text` as the daemon does; every error must be one line.
    fn check_one_line_errors(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let path = Path::new("fuzz.ron");
        let args = DaemonArgs {
            config: Some(path.to_owned()),
            ..DaemonArgs::default()
        };
        let errors = match parse::readable(path, text) {
            Err(errors) => {
                proptest::prop_assert!(!errors.0.is_empty());
                errors.0
            }
            Ok((text, mut errors)) => {
                let raw = parse::raw(path, &text);
                proptest::prop_assert!(raw.is_ok(), "{raw:?}");
                if let Ok(raw) = raw {
                    errors.extend(assemble(raw, &args, &Source::new(path, &text)).1);
                }
                errors
            }
        };
        {
            for error in &errors {
                proptest::prop_assert!(!error.contains('\n'), "a multi-line error: {error:?}");
                proptest::prop_assert!(error.starts_with("fuzz.ron"), "unlocated: {error:?}");
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        // Any text at all: an error or a config, never a panic, every error one line
        // naming where it is.
        #[test]
        fn any_text_is_a_config_or_one_line_errors(text in "[ -~\n]{0,300}") {
            check_one_line_errors(&text)?;
        }

        // Well-formed files with any values where the numbers, durations and patterns
        // go: the bounds and parsers answer for each, in one line.
        #[test]
        fn any_values_are_valid_or_refused_in_one_line(
            min in proptest::num::u64::ANY,
            max in proptest::num::u64::ANY,
            per_hour in proptest::num::u32::ANY,
            connections in proptest::num::usize::ANY,
            body in proptest::num::u64::ANY,
            days in "[-*,0-9A-Za-z ]{0,12}",
            time in "[-:0-9 ]{0,13}",
            gap in "[0-9]{0,22}[a-z]{0,4}",
            timeout in "[0-9]{0,22}[a-z]{0,4}",
            period in "[0-9]{0,22}[a-z]{0,4}",
            zone in "[A-Za-z/_+-]{0,20}",
        ) {
            let text = format!(
                r#"(
    schedule: Uniform(min_interval: {min}, max_interval: {max}),
    window: (days: "{days}", time: "{time}", timezone: "{zone}"),
    budget: (per_hour: {per_hour}, min_gap: "{gap}"),
    http: (max_connections: {connections}, max_body_bytes: {body}, header_timeout: "{timeout}"),
    plugin_timeout: "{timeout}",
    pollers: {{"likes": Qiita(item_id: "abc", period: "{period}")}},
)"#
            );
            check_one_line_errors(&text)?;
        }
    }
}
