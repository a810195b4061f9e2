//! `stale-lock`: an example third-party fault plugin for nightmare-monkey.
//!
//! It leaves a stale lock or PID file behind, the kind a crashed process leaves, which then
//! keeps a service from starting (`another instance is already running`), blocks a package
//! manager, or stops a cron job that checks for it. The on-call engineer has to find it.
//! After `duration` the host reverts the fault and the file is removed again (only if it is
//! still the file this plugin wrote).
//!
//! ```ron
//! faults: {
//!     "stale-pidfile": (plugin: "stale-lock", config: (
//!         path: "/run/myapp/myapp.pid",   // required; never overwritten if it exists
//!         content: "4194304\n",           // what a stale PID file says (default)
//!         duration: "10m",                // at most 24h
//!     )),
//! },
//! ```
//!
//! It shows everything a plugin must do: a validated config (every field but `path`
//! optional, unknown fields refused), nothing changed in a dry run, a reversible outcome
//! (`revert` + `revert_after_ms`) and a `revert` that undoes exactly what was done.
#![deny(missing_docs)]
// `export_plugin!` exports an unmangled symbol, which Rust counts as unsafe code.
#![deny(unsafe_code)]

use std::{fs::OpenOptions, io::Write as _, path::PathBuf, time::Duration};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request},
};
use serde::{Deserialize, Serialize};

/// The plugin's configuration, as written in the daemon's RON config.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The lock file to leave behind (required).
    pub path: Option<PathBuf>,
    /// What to write in it.
    pub content: Option<String>,
    /// How long it stays (a duration in seconds or with a unit suffix: `90`, `10m`, `1h`).
    pub duration: Option<sdk::DurationText>,
}

/// Reads `30`, `90s`, `10m`, `2h` (kept dependency-free on purpose: an example).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// What the host keeps to revert: which file, with which content.
#[derive(Debug, Serialize, Deserialize)]
struct Written {
    path: PathBuf,
    content: String,
}

/// The `stale-lock` fault.
#[derive(Debug)]
pub struct StaleLock {
    path: PathBuf,
    content: String,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

impl FaultPlugin for StaleLock {
    const NAME: &'static str = "stale-lock";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "leaves a stale lock file behind for a while";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let path = config.path.ok_or_else(|| {
            config_error("path is required: the lock file to leave behind".to_owned())
        })?;
        if !path.is_absolute() {
            return Err(config_error(format!(
                "path `{}` must be absolute",
                path.display()
            )));
        }
        let duration = match config.duration.as_deref() {
            None => Duration::from_secs(600),
            Some(text) => parse_duration(text)
                .filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400))
                .ok_or_else(|| {
                    config_error(format!(
                        "duration `{text}`: expected 1s to 24h, e.g. 90s, 10m or 1h"
                    ))
                })?,
        };
        Ok(Self {
            path,
            content: config.content.unwrap_or_else(|| "4194304\n".to_owned()),
            duration,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let shown = self.path.display();
        let mut outcome = Outcome {
            action: "Lock".to_owned(),
            ..Outcome::default()
        };
        if request.dry_run {
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = format!(
                "would leave {shown} behind for {} s",
                self.duration.as_secs()
            );
            return Ok(outcome);
        }
        // create_new: a file that is already there is never touched.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .map_err(|e| {
                PluginError::new(ErrorKind::Failed, format!("cannot create {shown}: {e}"))
            })?;
        file.write_all(self.content.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                PluginError::new(ErrorKind::Failed, format!("cannot write {shown}: {e}"))
            })?;
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!("left {shown} behind for {} s", self.duration.as_secs());
        outcome.revert = Some(serde_json::json!(Written {
            path: self.path.clone(),
            content: self.content.clone(),
        }));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let written: Written = sdk::read_state(state)?;
        let shown = written.path.display();
        let (result, summary) = match std::fs::read_to_string(&written.path) {
            Ok(now) if now == written.content => match std::fs::remove_file(&written.path) {
                Ok(()) => (results::REVERTED, format!("removed {shown}")),
                Err(e) => {
                    return Err(PluginError::new(
                        ErrorKind::Failed,
                        format!("cannot remove {shown}: {e}"),
                    ))
                }
            },
            Ok(_) => (
                results::VANISHED,
                format!("{shown} was rewritten by someone else: left as it is"),
            ),
            Err(_) => (results::VANISHED, format!("{shown} is already gone")),
        };
        Ok(Outcome {
            action: "Unlock".to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}

export_plugin!(StaleLock);

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::testing::Harness;

    use super::*;

    /// Through the ABI as the daemon loads it: a dry run writes nothing, inject writes the
    /// lock, revert (from a fresh instance, as after a restart; twice) removes it.
    #[test]
    fn keeps_the_contracts() {
        let lock = std::env::temp_dir().join(format!("nm-stale-lock-{}.pid", std::process::id()));
        let _ = std::fs::remove_file(&lock);
        let harness = Harness::of::<StaleLock>();
        harness
            .contract(&format!("(path: {lock:?}, duration: \"1m\")"))
            .watch(|| std::fs::read_to_string(&lock).ok())
            .check_all()
            .unwrap();
        harness.config_error("", "path").unwrap();
        harness
            .config_error("(path: \"relative\")", "path")
            .unwrap();
        harness
            .config_error(&format!("(path: {lock:?}, duration: \"2d\")"), "duration")
            .unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("soon"), None);
    }
}
