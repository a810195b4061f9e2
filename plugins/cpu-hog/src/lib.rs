//! `cpu-hog`: burns CPU cores for a while: the "everything is slow, load is through the
//! roof" incident. The burning threads run inside the daemon and stop when the fault is
//! reverted (when due, on shutdown, on pause); they also stop on their own shortly after the
//! duration, so a lost revert cannot leave them burning, and they end with the daemon.
//!
//! ```ron
//! faults: {
//!     "cpu": (plugin: "cpu-hog", config: (
//!         cores: 2,          // how many cores to burn (at most all of them), or:
//!         // percent: 50,    // a share of the host's cores, at least one
//!         duration: "2m",    // at most 1h
//!     )),
//! },
//! ```

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request, Rng, StopFlags},
};
use serde::Deserialize;

const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long past their duration the threads wait for the revert before stopping anyway.
const GRACE: Duration = Duration::from_secs(10);

/// The fault's configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How many cores to burn (default 1).
    pub cores: Option<usize>,
    /// Or a share of the host's cores, in percent (rounded up, at least one core).
    pub percent: Option<usize>,
    /// How long (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
}

/// The `cpu-hog` fault.
#[derive(Debug)]
pub struct CpuHog {
    cores: usize,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// The stop flags of the burns running in this process, shared by every instance of the
/// fault: one built anew (a config reload, a recovery) must stop what an earlier one
/// started, as `sdk::testing`'s revert-from-a-fresh-instance contract checks.
static RUNNING: std::sync::LazyLock<StopFlags> = std::sync::LazyLock::new(StopFlags::default);

impl FaultPlugin for CpuHog {
    const NAME: &'static str = "cpu-hog";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "burns CPU cores for a while";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = match (config.cores, config.percent) {
            (Some(_), Some(_)) => {
                return Err(config_error("give cores or percent, not both".to_owned()))
            }
            (Some(n), None) if (1..=available).contains(&n) => n,
            (Some(n), None) => {
                return Err(config_error(format!(
                    "cores {n}: expected 1 to {available} (this host's cores)"
                )))
            }
            (None, Some(p)) if (1..=100).contains(&p) => (available * p).div_ceil(100).max(1),
            (None, Some(p)) => return Err(config_error(format!("percent {p}: expected 1 to 100"))),
            (None, None) => 1,
        };
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self { cores, duration })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let how_long = humantime::format_duration(self.duration);
        let mut outcome = Outcome {
            action: "Burn".to_owned(),
            details: serde_json::json!({ "cores": self.cores, "duration_ms": self.duration.as_millis() as u64 }),
            ..Outcome::default()
        };
        if request.dry_run {
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = format!("would burn {} core(s) for {how_long}", self.cores);
            return Ok(outcome);
        }
        let token = Rng::from_seed(request.seed).next_u64();
        let stop = RUNNING.start(token);
        let until = Instant::now() + self.duration + GRACE;
        for i in 0..self.cores {
            let flag = stop.clone();
            std::thread::Builder::new()
                .name(format!("cpu-hog-{i}"))
                .spawn(move || burn(&flag, until))
                .map_err(|e| {
                    RUNNING.stop(token);
                    PluginError::new(
                        ErrorKind::Failed,
                        format!("cannot start a burning thread: {e}"),
                    )
                })?;
        }
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!("burning {} core(s) for {how_long}", self.cores);
        outcome.revert = Some(StopFlags::state(token));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let (result, summary) = if RUNNING.stop(StopFlags::token(state)?) {
            (results::REVERTED, "stopped burning".to_owned())
        } else {
            // Threads live in the process: after a restart there is nothing left to stop.
            (
                results::VANISHED,
                "nothing burning any more (it ended with its process)".to_owned(),
            )
        };
        Ok(Outcome {
            action: "Cool".to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}

/// Spins until told to stop or the hard deadline passes, checking both now and then.
fn burn(stop: &AtomicBool, until: Instant) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

export_plugin!(CpuHog);

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::testing::{threads_named, Harness};

    use super::*;

    /// Through the ABI, for real (one core, for the few milliseconds between inject and
    /// revert): revert from a fresh instance stops the burning threads.
    #[test]
    fn keeps_the_contracts() {
        let harness = Harness::of::<CpuHog>();
        harness
            .contract("(cores: 1, duration: \"1m\")")
            .watch(|| threads_named("cpu-hog-"))
            .check_all()
            .unwrap();
        harness.config_error("(cores: 0)", "cores").unwrap();
        harness.config_error("(percent: 101)", "percent").unwrap();
        harness
            .config_error("(duration: \"2d\")", "duration")
            .unwrap();
    }
}
