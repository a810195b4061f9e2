//! `memory-hog`: holds memory for a while: the "the box is swapping, everything crawls"
//! incident. The memory is taken inside the daemon, page by page, and given back when the
//! fault is reverted (when due, on shutdown, on pause; with the daemon itself after a crash).
//!
//! It never pushes the host, or the daemon's container, to the OOM killer: it takes at most
//! what is available above a floor (`MemAvailable`, or the room the daemon's memory
//! cgroups leave it where smaller, less what other holds being taken at the same moment
//! will use), and while it holds memory a watcher lets go of it at once if that falls
//! below the floor (because something else grew), so the kernel never has to pick a
//! victim, least of all the daemon.
//!
//! ```ron
//! faults: {
//!     "memory": (plugin: "memory-hog", config: (
//!         mib: 1024,          // how much to hold, or:
//!         // percent: 50,     // a share of MemAvailable at injection time
//!         floor_mib: 256,     // never leave less than this available
//!         duration: "2m",     // at most 1h
//!     )),
//! },
//! ```

mod cgroup;
mod room;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request, Rng, StopFlags},
};
use serde::Deserialize;

const MIB: u64 = 1 << 20;
const PAGE: usize = 4096;
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How often the watcher reads `MemAvailable` while the memory is held.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The fault's configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How many MiB to hold (default 256).
    pub mib: Option<u64>,
    /// Or a share of what is available at injection time, in percent (1 to 90).
    pub percent: Option<u64>,
    /// Never leave less than this many MiB available (default 256).
    pub floor_mib: Option<u64>,
    /// How long (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
}

enum Amount {
    Mib(u64),
    Percent(u64),
}

/// The `memory-hog` fault.
pub struct MemoryHog {
    amount: Amount,
    floor: u64,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// The holds being taken in this process, shared by every instance of the fault.
static TAKING: std::sync::LazyLock<room::Reservations> =
    std::sync::LazyLock::new(room::Reservations::default);

impl MemoryHog {
    /// How much to take of `free` (what is available, less what other holds being taken
    /// will use); an error of kind `NoTarget` when that is nothing.
    fn size(&self, free: u64) -> Result<u64, PluginError> {
        let wanted = match self.amount {
            Amount::Mib(n) => n.saturating_mul(MIB),
            Amount::Percent(p) => free / 100 * p,
        };
        let size = wanted.min(free.saturating_sub(self.floor)) / MIB * MIB;
        if size == 0 {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "only {} MiB available, at or under the floor of {} MiB: nothing to take",
                    free / MIB,
                    self.floor / MIB
                ),
            ));
        }
        Ok(size)
    }
}

/// The stop flags of the holds running in this process, shared by every instance of the
/// fault: one built anew (a config reload, a recovery) must stop what an earlier one
/// started, as `sdk::testing`'s revert-from-a-fresh-instance contract checks.
static RUNNING: std::sync::LazyLock<StopFlags> = std::sync::LazyLock::new(StopFlags::default);

impl FaultPlugin for MemoryHog {
    const NAME: &'static str = "memory-hog";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "holds memory for a while, never pushing the host to the OOM killer";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let amount = match (config.mib, config.percent) {
            (Some(_), Some(_)) => {
                return Err(config_error("give mib or percent, not both".to_owned()))
            }
            (Some(0), None) => return Err(config_error("mib: expected at least 1".to_owned())),
            (Some(n), None) => Amount::Mib(n),
            (None, Some(p)) if (1..=90).contains(&p) => Amount::Percent(p),
            (None, Some(p)) => return Err(config_error(format!("percent {p}: expected 1 to 90"))),
            (None, None) => Amount::Mib(256),
        };
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self {
            amount,
            floor: config.floor_mib.unwrap_or(256).saturating_mul(MIB),
            duration,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        // Reserved until every page is touched: by then `available` shows the hold.
        let (reserved, free) = TAKING.reserve(room::available, |free| self.size(free))?;
        let size = reserved.bytes();
        let how_long = humantime::format_duration(self.duration);
        let mut outcome = Outcome {
            action: "Hold".to_owned(),
            details: serde_json::json!({ "bytes": size, "available_before": free }),
            ..Outcome::default()
        };
        if request.dry_run {
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = format!(
                "would hold {} MiB of {} MiB available for {how_long}",
                size / MIB,
                free / MIB
            );
            return Ok(outcome);
        }
        // Take it now, touching every page, so the outcome is true when it is reported.
        let mut memory = Vec::new();
        memory.try_reserve_exact(size as usize).map_err(|e| {
            PluginError::new(
                ErrorKind::Failed,
                format!("cannot take {} MiB: {e}", size / MIB),
            )
        })?;
        memory.resize(size as usize, 0u8);
        for page in memory.chunks_mut(PAGE) {
            page[0] = 1;
        }
        drop(reserved);
        let token = Rng::from_seed(request.seed).next_u64();
        let flag = RUNNING.start(token);
        let floor = self.floor;
        let until = Instant::now() + self.duration + Duration::from_secs(10);
        std::thread::Builder::new()
            .name("memory-hog".to_owned())
            .spawn(move || hold(memory, &flag, floor, until))
            .map_err(|e| {
                RUNNING.stop(token);
                PluginError::new(ErrorKind::Failed, format!("cannot start the holder: {e}"))
            })?;
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!(
            "holding {} MiB of {} MiB available for {how_long}",
            size / MIB,
            free / MIB
        );
        outcome.revert = Some(StopFlags::state(token));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let (result, summary) = if RUNNING.stop(StopFlags::token(state)?) {
            (results::REVERTED, "let the memory go".to_owned())
        } else {
            // The memory lived in the process: after a restart there is nothing to free.
            (
                results::VANISHED,
                "nothing held any more (it ended with its process)".to_owned(),
            )
        };
        Ok(Outcome {
            action: "Release".to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}

/// Holds `memory` until told to stop, the hard deadline, or what is available under the
/// floor.
fn hold(memory: Vec<u8>, stop: &AtomicBool, floor: u64, until: Instant) {
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        if room::available().is_ok_and(|a| a < floor) {
            break;
        }
        std::thread::sleep(WATCH_EVERY);
    }
    drop(memory);
}

export_plugin!(MemoryHog);

#[cfg(test)]
mod tests;
