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
//!
//! "At most all of them" holds across faults: the threads of every cpu-hog fault in effect
//! in the process together burn at most as many cores as it may use
//! (`std::thread::available_parallelism`, which counts the CPUs it may run on and the
//! cgroup's CPU quota). A fault that would burn more is refused whole, with an error of
//! kind `NoTarget` (nothing in effect, nothing to revert, no fault counted), rather than
//! given what is left: a fault that burns fewer cores than its config says would make a
//! drill that says "2 cores" measure one. Its check and its threads' start are one step
//! under a lock, so faults injected at once cannot both pass it.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        LazyLock, Mutex,
    },
    thread::JoinHandle,
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
static RUNNING: LazyLock<StopFlags> = LazyLock::new(StopFlags::default);

/// The burning threads of this process, every fault's, shared as [`RUNNING`] is.
static BURNING: LazyLock<Burning> = LazyLock::new(Burning::default);

/// The burning threads of this process: how many run, and each fault's, to wait for at
/// its revert.
#[derive(Debug, Default)]
struct Burning {
    /// Each fault's threads by its token, until reverted. Its lock is also the one under
    /// which a fault checks the cap and starts its threads.
    threads: Mutex<HashMap<u64, Vec<JoinHandle<()>>>>,
    /// Threads started and not yet ended, counted by the threads themselves ([`Claim`]):
    /// one that stopped on its own at its deadline frees its core without a revert.
    live: AtomicUsize,
}

/// One burning thread's core, counted in [`Burning::live`] for as long as this lives:
/// made before the thread is started, moved into it and dropped when it ends (or with the
/// closure, when the thread could not be started).
struct Claim;

impl Claim {
    fn new() -> Claim {
        BURNING.live.fetch_add(1, Ordering::SeqCst);
        Claim
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        BURNING.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The cores this process may burn: those it may run on, within its cgroup's quota.
fn cores_here() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl FaultPlugin for CpuHog {
    const NAME: &'static str = "cpu-hog";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "burns CPU cores for a while";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let available = cores_here();
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
        // Checked and started under one lock: two faults injected at once cannot both
        // see the cores free.
        let mut threads = BURNING.threads.lock().unwrap_or_else(|p| p.into_inner());
        let (burning, cap) = (BURNING.live.load(Ordering::SeqCst), cores_here());
        if burning + self.cores > cap {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "cannot burn {} core(s) more: {burning} of the {cap} core(s) this process may use burn already under other cpu-hog faults, and together they burn at most all {cap}; try again when one of them has ended",
                    self.cores
                ),
            ));
        }
        let stop = RUNNING.start(token);
        let until = Instant::now() + self.duration + GRACE;
        let mut started = Vec::with_capacity(self.cores);
        for i in 0..self.cores {
            let (flag, claim) = (stop.clone(), Claim::new());
            let thread = std::thread::Builder::new()
                .name(format!("cpu-hog-{i}"))
                .spawn(move || {
                    let _claim = claim;
                    burn(&flag, until);
                })
                .map_err(|e| {
                    // Those started stop, and free their cores, on their own.
                    RUNNING.stop(token);
                    PluginError::new(
                        ErrorKind::Failed,
                        format!("cannot start a burning thread: {e}"),
                    )
                })?;
            started.push(thread);
        }
        threads.insert(token, started);
        drop(threads);
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!("burning {} core(s) for {how_long}", self.cores);
        outcome.revert = Some(StopFlags::state(token));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let token = StopFlags::token(state)?;
        let stopped = RUNNING.stop(token);
        // Waited for (a few milliseconds: each thread looks at its flag that often), so
        // that the cores are free for the next fault once the revert has answered.
        let threads = BURNING
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        for thread in threads.into_iter().flatten() {
            let _ = thread.join();
        }
        let (result, summary) = if stopped {
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
    use nightmare_monkey_plugin_api::sdk::testing::{alone, threads_named, Harness};

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

    /// Waits until `n` threads of this process are named `cpu-hog-*` (a thread takes its
    /// name a moment after it is started).
    fn until_burning(n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while threads_named("cpu-hog-") != n {
            assert!(
                Instant::now() < deadline,
                "{} burning threads, expected {n}",
                threads_named("cpu-hog-")
            );
            std::thread::yield_now();
        }
    }

    /// The threads of every fault in effect burn at most the cores this process may use:
    /// a fault beyond them is refused whole (`NoTarget`), one after the other or many at
    /// once, and once a fault is reverted its cores are free for the next. Alone in its
    /// run: another test's burning thread would take a core.
    #[test]
    fn faults_together_burn_at_most_every_core() {
        alone("tests::faults_together_burn_at_most_every_core", || {
            let harness = Harness::of::<CpuHog>();
            let all = harness.fault("(percent: 100, duration: \"1m\")").unwrap();
            let one = harness.fault("(cores: 1, duration: \"1m\")").unwrap();
            let real = |seed| Request {
                seed,
                dry_run: false,
                ..Request::default()
            };
            let cores = cores_here();
            let burning = all.inject(&real(1)).unwrap();
            assert_eq!(burning.result, results::INJECTED);
            let refused = one.inject(&real(2)).unwrap_err();
            assert_eq!(refused.kind, ErrorKind::NoTarget, "{refused}");
            assert_eq!(
                refused.message,
                format!("cannot burn 1 core(s) more: {cores} of the {cores} core(s) this process may use burn already under other cpu-hog faults, and together they burn at most all {cores}; try again when one of them has ended")
            );
            until_burning(cores);
            one.revert(&burning.revert.unwrap()).unwrap();
            assert_eq!(
                threads_named("cpu-hog-"),
                0,
                "the revert waits for its threads"
            );

            // Twice as many faults as cores, injected at once: as many pass as there are
            // cores, and the others are refused.
            let answers: Vec<Result<Outcome, PluginError>> = std::thread::scope(|scope| {
                let one = &one;
                let injecting: Vec<_> = (0..2 * cores as u64)
                    .map(|i| scope.spawn(move || one.inject(&real(10 + i))))
                    .collect();
                injecting.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let (passed, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
            assert_eq!(passed.len(), cores, "{refused:?}");
            assert!(refused
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::NoTarget)));
            until_burning(cores);
            for outcome in passed {
                one.revert(&outcome.unwrap().revert.unwrap()).unwrap();
            }
            assert_eq!(threads_named("cpu-hog-"), 0);
            let again = one.inject(&real(3)).unwrap();
            assert_eq!(again.result, results::INJECTED);
            one.revert(&again.revert.unwrap()).unwrap();
        });
    }
}
