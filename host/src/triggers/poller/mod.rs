//! The poller trigger: read an integer from a JSON document over HTTP every period (a
//! Qiita article's `likes_count`, any counter) and ask for one fault each time the count
//! passes the next multiple of the step, as the article's cron'd script did.
//!
//! The threshold starts at one step and advances one step per fault that happened; a
//! fault refused (window, no target) leaves it where it is, so it is retried on a later
//! poll. It is kept in a state file written atomically after every advance, so a restart
//! neither repeats nor skips a fault. A count that goes down fires nothing and never
//! moves the threshold back.

use std::time::Duration;

use nightmare_monkey_plugin_api::sdk::Rng;
use serde::{Deserialize, Serialize};

pub use config::{check_state_files, CatchUp, PollerConfig, RawPoller};

mod config;
mod fetch;
use fetch::{client, fetch};
use tokio::sync::watch;

use crate::{
    dispatch::Injector,
    domain::injection::Ask,
    output::log,
    support::{backoff::Backoff, state},
};

/// What is kept between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The count at which the next fault fires.
    pub threshold: u64,
}

/// Reads the state file: `None` when there is none yet. A file that exists but cannot be
/// read or understood is an error: silently starting over would repeat faults.
pub fn load_state(config: &PollerConfig) -> Result<Option<Saved>, String> {
    let path = &config.state_file;
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) if saved.threshold >= 1 => Ok(Some(saved)),
            Ok(_) => Err(format!(
                "poller {}: state file {} holds threshold 0: fix it or delete it to start counting again",
                config.name,
                path.display()
            )),
            Err(e) => Err(format!(
                "poller {}: state file {} is corrupt ({e}): fix it or delete it to start counting again",
                config.name,
                path.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "poller {}: cannot read state file {}: {e}",
            config.name,
            path.display()
        )),
    }
}

/// The most faults one poll fires, whatever the count: a counter that jumps (a bug, a
/// hostile server) under `catch_up: AllAtOnce` would otherwise fire one per step passed,
/// thousands at once. The rest stay due and fire on later polls, as `OnePerPoll` catches
/// up; a `budget` bounds the day.
pub const MAX_FAULTS_PER_POLL: u64 = 10;

/// The threshold arithmetic, apart from any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    step: u64,
    threshold: u64,
    catch_up: CatchUp,
}

impl Counter {
    /// A counter at `threshold` (one step when starting fresh).
    pub fn new(step: u64, threshold: u64, catch_up: CatchUp) -> Self {
        Self {
            step,
            threshold,
            catch_up,
        }
    }

    /// The count at which the next fault fires.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// How many thresholds `count` has reached: the faults owed.
    pub fn passed(&self, count: u64) -> u64 {
        match count.checked_sub(self.threshold) {
            Some(over) => over / self.step + 1,
            None => 0,
        }
    }

    /// How many faults are due at `count` in this poll: one, or with `AllAtOnce` every
    /// one owed, up to [`MAX_FAULTS_PER_POLL`].
    pub fn due(&self, count: u64) -> u64 {
        match self.catch_up {
            CatchUp::OnePerPoll => self.passed(count).min(1),
            CatchUp::AllAtOnce => self.passed(count).min(MAX_FAULTS_PER_POLL),
        }
    }

    /// One fault happened: the next one is a step further.
    pub fn advance(&mut self) {
        self.threshold = self.threshold.saturating_add(self.step);
    }

    /// The first multiple of the step above `count`.
    pub fn start_above(&mut self, count: u64) {
        self.threshold = (count / self.step + 1).saturating_mul(self.step);
    }
}

/// The wait after `failures` failed polls in a row: the period doubled per failure,
/// up to `max_backoff`, with a jitter from the poller's own stream.
fn backoff(config: &PollerConfig, failures: u32, rng: &mut Rng) -> Duration {
    Backoff {
        first: config.period,
        ceiling: config.max_backoff,
    }
    .wait(failures, rng)
}

fn describe(config: &PollerConfig, count: u64) -> String {
    config
        .desc
        .replace("{count}", &count.to_string())
        .replace("{likes}", &count.to_string())
}

/// Logs a message once while it stays the same.
#[derive(Default)]
struct Once(Option<String>);

impl Once {
    fn log(&mut self, message: String) {
        if self.0.as_deref() != Some(message.as_str()) {
            log::line(&message);
            self.0 = Some(message);
        }
    }

    fn clear(&mut self) -> bool {
        self.0.take().is_some()
    }
}

/// Polls until told to stop.
pub async fn run(
    injector: Injector,
    config: PollerConfig,
    saved: Option<Saved>,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) {
    let name = &config.name;
    // Told to stop before it first ran (a stop during the start): it says nothing.
    if *stop.borrow() {
        return;
    }
    let client = match client(config.timeout) {
        Ok(client) => client,
        Err(e) => {
            log::line(format!(
                "poller {name}: cannot build an HTTP client: {e}; it stops"
            ));
            return;
        }
    };
    let fresh = saved.is_none();
    let mut counter = Counter::new(
        config.step,
        saved.map_or(config.step, |s| s.threshold),
        config.catch_up,
    );
    log::line(format!(
        "Polling {} every {} for {} (next fault at {}{})",
        config.shown_url(),
        humantime::format_duration(config.period),
        config.pointer,
        counter.threshold(),
        if fresh && config.start_from_current {
            ", or the first multiple above the current count"
        } else {
            ""
        }
    ));
    let mut failures: u32 = 0;
    let mut fetch_errors = Once::default();
    let mut refusals = Once::default();
    let mut first = fresh && config.start_from_current;
    // Whether the poller said that more faults are owed than one poll fires.
    let mut held_back = false;
    loop {
        let wait = match fetch(&client, &config).await {
            Ok(count) => {
                if fetch_errors.clear() {
                    log::line(format!(
                        "poller {name}: recovered after {failures} failed polls (count {count})"
                    ));
                }
                failures = 0;
                if std::mem::take(&mut first) {
                    counter.start_above(count);
                    save(&config, counter);
                }
                let (owed, due) = (counter.passed(count), counter.due(count));
                if config.catch_up == CatchUp::AllAtOnce && owed > due {
                    if !std::mem::replace(&mut held_back, true) {
                        log::line(format!(
                            "poller {name}: count {count} is {owed} faults past the threshold {}; at most {MAX_FAULTS_PER_POLL} a poll, the rest on later polls",
                            counter.threshold()
                        ));
                    }
                } else {
                    held_back = false;
                }
                for _ in 0..due {
                    let ask = Ask {
                        fault: config.fault.clone(),
                        desc: describe(&config, count),
                        trigger: "poller",
                        requested_by: Some(name.clone()),
                    };
                    match injector.inject(ask).await {
                        Ok(_) => {
                            refusals.clear();
                            counter.advance();
                            save(&config, counter);
                        }
                        Err(why) => {
                            // A failure was logged by the injector already, as a failure.
                            let what = if why.is_refusal() {
                                format!("the fault was refused ({why})")
                            } else {
                                "the fault failed (said above)".to_owned()
                            };
                            refusals.log(format!(
                                "poller {name}: count {count} reached {} but {what}; retrying on a later poll",
                                counter.threshold()
                            ));
                            break;
                        }
                    }
                }
                config.period
            }
            Err(e) => {
                crate::output::metrics::get().poller_error(name);
                failures = failures.saturating_add(1);
                let wait =
                    backoff(&config, failures, &mut rng).max(e.retry_after.unwrap_or_default());
                fetch_errors.log(format!("poller {name}: {}; backing off", e.message));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn save(config: &PollerConfig, counter: Counter) {
    let saved = Saved {
        threshold: counter.threshold(),
    };
    let text = serde_json::json!(saved).to_string();
    if let Err(e) = state::write_atomic(&config.state_file, text.as_bytes()) {
        // Nothing else can be done from here: say it loudly; the next advance tries again.
        log::line(format!(
            "poller {}: cannot write state file {}: {e}; a restart would repeat faults",
            config.name,
            config.state_file.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(counts: &[u64], catch_up: CatchUp) -> Vec<u64> {
        let mut c = Counter::new(3, 3, catch_up);
        let mut fired = Vec::new();
        for &count in counts {
            for _ in 0..c.due(count) {
                fired.push(count);
                c.advance();
            }
        }
        fired
    }

    #[test]
    fn one_fault_per_poll_catches_up_like_the_article() {
        assert_eq!(
            fires(
                &[0, 2, 3, 4, 7, 30, 30, 30, 2, 30, 30, 30, 30, 30, 30, 30],
                CatchUp::OnePerPoll
            ),
            [3, 7, 30, 30, 30, 30, 30, 30, 30, 30]
        );
    }

    #[test]
    fn all_at_once_fires_every_threshold_passed() {
        assert_eq!(fires(&[0, 30, 31], CatchUp::AllAtOnce), [30; 10]);
        assert_eq!(fires(&[5, 4, 5, 6], CatchUp::AllAtOnce), [5, 6]);
    }

    #[test]
    fn one_poll_fires_at_most_ten_however_far_the_count_jumps() {
        let c = Counter::new(1, 1, CatchUp::AllAtOnce);
        assert_eq!(c.due(1_000_000_000_000), MAX_FAULTS_PER_POLL);
        assert_eq!(c.passed(1_000_000_000_000), 1_000_000_000_000);
        assert_eq!(c.due(u64::MAX), MAX_FAULTS_PER_POLL);
        assert_eq!(Counter::new(3, 3, CatchUp::OnePerPoll).due(u64::MAX), 1);
    }

    #[test]
    fn start_above_skips_to_the_next_multiple() {
        let mut c = Counter::new(3, 3, CatchUp::OnePerPoll);
        c.start_above(30);
        assert_eq!((c.threshold(), c.due(32), c.due(33)), (33, 0, 1));
    }
}
