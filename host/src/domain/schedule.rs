//! When the timer fires: a uniform interval (the original's, fixed), an exponential one
//! (a mean time between faults, as Chaos Monkey does) or a cron expression. The window is
//! applied on top by whoever fires: a fire outside it sleeps and draws again.

use std::str::FromStr;

use chrono::{DateTime, Local, Utc};
use nightmare_monkey_plugin_api::sdk::Rng;

use serde::Deserialize;

use crate::{
    domain::window::{Window, Zone},
    support::located::{seconds, DurationText, Source},
};

/// The original's shortest wait, seconds.
pub const DEFAULT_MIN_INTERVAL: u64 = 3600;
/// The original's longest wait, seconds.
pub const DEFAULT_MAX_INTERVAL: u64 = 21600;
/// The longest wait and the longest mean a schedule may have: 30 days, in seconds. A
/// drill that waits longer is a typo (a wait of 2^64 s once overflowed into a fault
/// every instant).
pub const MAX_INTERVAL: u64 = 30 * 24 * 3600;

/// The schedule as written (`schedule: Uniform(...) | Exponential(...) | Cron("...")`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "schedule")]
pub enum RawSchedule {
    /// The original's uniform wait.
    Uniform {
        /// Shortest wait (seconds, or a duration like "5m").
        #[serde(default)]
        min_interval: Option<DurationText>,
        /// Longest wait.
        #[serde(default)]
        max_interval: Option<DurationText>,
    },
    /// A mean wait.
    Exponential {
        /// Mean wait (seconds, or a duration like "90m").
        mean: DurationText,
    },
    /// A cron expression with seconds.
    Cron(String),
}

/// Validates the schedule of the file (`None`: the original's) with the command line's
/// `--min-interval` and `--max-interval`, which make it uniform and win over the file.
pub fn validate(
    raw: Option<&RawSchedule>,
    (min_flag, max_flag): (Option<u64>, Option<u64>),
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Option<Schedule> {
    // Each written wait in whole seconds; an error is said once, located.
    let mut secs = |text: &Option<DurationText>, key: &str| -> Result<Option<u64>, ()> {
        text.as_deref()
            .map(|t| seconds(t, &src.at(&["schedule", key]), key))
            .transpose()
            .map_err(|e| errors.push(e))
    };
    let (file_min, file_max) = match raw {
        Some(RawSchedule::Uniform {
            min_interval,
            max_interval,
        }) => match (
            secs(min_interval, "min_interval"),
            secs(max_interval, "max_interval"),
        ) {
            (Ok(min), Ok(max)) => (min, max),
            _ => return None,
        },
        _ => (None, None),
    };
    if min_flag.is_some() || max_flag.is_some() {
        let min = min_flag.or(file_min).unwrap_or(DEFAULT_MIN_INTERVAL);
        let max = max_flag.or(file_max).unwrap_or(DEFAULT_MAX_INTERVAL);
        return Schedule::uniform(min, max)
            .map_err(|e| errors.push(format!("--min-interval/--max-interval: {e}")))
            .ok();
    }
    match raw {
        None => Schedule::uniform(DEFAULT_MIN_INTERVAL, DEFAULT_MAX_INTERVAL).ok(),
        Some(RawSchedule::Uniform { .. }) => Schedule::uniform(
            file_min.unwrap_or(DEFAULT_MIN_INTERVAL),
            file_max.unwrap_or(DEFAULT_MAX_INTERVAL),
        )
        .map_err(|e| errors.push(format!("{}: {e}", src.at(&["schedule", "min_interval"]))))
        .ok(),
        Some(RawSchedule::Exponential { mean }) => {
            let at = src.at(&["schedule", "mean"]);
            let mean = match seconds(mean, &at, "mean") {
                Ok(mean) => mean,
                Err(e) => {
                    errors.push(e);
                    return None;
                }
            };
            if mean == 0 {
                errors.push(format!("{at}: the mean interval must be at least 1 second"));
                return None;
            }
            if mean > MAX_INTERVAL {
                errors.push(format!(
                    "{at}: the mean interval must be at most {MAX_INTERVAL} seconds (30 days), not {mean}"
                ));
                return None;
            }
            Some(Schedule::Exponential { mean })
        }
        Some(RawSchedule::Cron(expr)) => Schedule::cron(expr)
            .map_err(|e| errors.push(format!("{}: {e}", src.at(&["schedule"]))))
            .ok(),
    }
}

/// The accepted form of a cron expression, for error messages.
pub const CRON_FORM: &str = "a cron expression with seconds: sec min hour day-of-month month day-of-week [year], e.g. \"0 */15 * * * *\"";

/// A schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A wait uniform in `min..=max` seconds.
    Uniform {
        /// Shortest wait, seconds.
        min: u64,
        /// Longest wait, seconds.
        max: u64,
    },
    /// An exponentially distributed wait with this mean, in seconds (at least 1 s).
    Exponential {
        /// Mean wait, seconds.
        mean: u64,
    },
    /// The fire times of a cron expression, read in the window's zone.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// A uniform schedule; `min > max` is refused.
    pub fn uniform(min: u64, max: u64) -> Result<Self, String> {
        if min > max {
            return Err(format!(
                "the minimum interval ({min} s) is greater than the maximum ({max} s)"
            ));
        }
        if max == 0 {
            return Err("the maximum interval must be at least 1 second".to_owned());
        }
        if max > MAX_INTERVAL {
            return Err(format!(
                "the maximum interval must be at most {MAX_INTERVAL} seconds (30 days), not {max}"
            ));
        }
        Ok(Schedule::Uniform { min, max })
    }

    /// A cron schedule.
    pub fn cron(expr: &str) -> Result<Self, String> {
        cron::Schedule::from_str(expr)
            .map(|s| Schedule::Cron(Box::new(s)))
            .map_err(|e| {
                // The crate's message repeats the expression with a caret under it; keep
                // only its last line, the reason, if it has one (a caret alone says
                // nothing here).
                let text = e.to_string();
                let reason = text
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .filter(|l| !l.chars().all(|c| c == '^' || c.is_whitespace()))
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                format!("invalid cron expression `{expr}`{reason}: expected {CRON_FORM}")
            })
    }

    /// The next fire time after `now`, drawing from `rng` for random schedules. `None`
    /// only for a cron expression that never fires again.
    pub fn next_after(
        &self,
        rng: &mut Rng,
        now: DateTime<Utc>,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        let secs = match self {
            Schedule::Uniform { min, max } => rng.between((*min).max(1), *max),
            Schedule::Exponential { mean } => {
                let u = rng.unit_f64();
                let wait = -(*mean as f64) * (1.0 - u).ln();
                // Capped so one unlucky draw cannot silence a drill for weeks.
                wait.round().clamp(1.0, (*mean as f64) * 20.0) as u64
            }
            Schedule::Cron(s) => {
                return match zone {
                    Zone::Local => s
                        .after(&now.with_timezone(&Local))
                        .next()
                        .map(|t| t.to_utc()),
                    Zone::Named(tz) => s.after(&now.with_timezone(tz)).next().map(|t| t.to_utc()),
                }
            }
        };
        // Saturating: whatever the schedule holds, the next fire is strictly later than
        // `now` (at worst the end of time), never earlier and never a panic.
        let wait = i64::try_from(secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds);
        Some(
            wait.and_then(|w| now.checked_add_signed(w))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

/// The daemon's timer, without the waiting: the same draws in the same order make the
/// same fire times, so `plan` previews exactly what the daemon will do.
pub struct Timer {
    schedule: Schedule,
    window: Window,
    rng: Rng,
}

/// One step of the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// When it fires.
    pub at: DateTime<Utc>,
    /// Whether the window is open then (else the monkey sleeps and draws again).
    pub in_window: bool,
}

impl Timer {
    /// A timer drawing from `rng` (the `trigger/timer` stream).
    pub fn new(schedule: Schedule, window: Window, rng: Rng) -> Self {
        Self {
            schedule,
            window,
            rng,
        }
    }

    /// The next fire after `now`.
    pub fn next(&mut self, now: DateTime<Utc>) -> Option<Fire> {
        let at = self
            .schedule
            .next_after(&mut self.rng, now, &self.window.zone)?;
        Some(Fire {
            at,
            in_window: self.window.contains(at),
        })
    }

    /// The next `count` fires inside the window, from `from`, giving up after `limit`
    /// draws (a cron expression that never meets the window).
    pub fn plan(&mut self, from: DateTime<Utc>, count: usize, limit: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut now = from;
        for _ in 0..limit {
            if out.len() == count {
                break;
            }
            let Some(fire) = self.next(now) else { break };
            if fire.in_window {
                out.push(fire.at);
            }
            now = fire.at;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone as _;
    use proptest::prelude::{prop_assert, proptest};

    use super::*;
    use crate::domain::window::{Days, TimeRange};

    /// At least `secs` after `at`, or the end of time.
    fn at_least(at: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
        i64::try_from(secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|d| at.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    proptest! {
        // Whatever a schedule holds (validation bypassed on purpose: the whole u64
        // range), the next fire is strictly later, at least the minimum later, and
        // nothing panics: a wait can never overflow into a fault every instant.
        #[test]
        fn the_next_fire_is_never_sooner_than_the_minimum(
            min in 0u64..,
            extra in 0u64..,
            mean in 1u64..,
            seed in 0u64..,
        ) {
            let start = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
            let schedules = [
                Schedule::Uniform { min, max: min.saturating_add(extra) },
                Schedule::Exponential { mean },
            ];
            for schedule in schedules {
                let mut rng = Rng::stream(seed, "t");
                let floor = match schedule {
                    Schedule::Uniform { min, .. } => min.max(1),
                    _ => 1,
                };
                let mut at = start;
                for _ in 0..3 {
                    if at == DateTime::<Utc>::MAX_UTC {
                        break;
                    }
                    let next = schedule.next_after(&mut rng, at, &Zone::Local).unwrap();
                    prop_assert!(next > at);
                    prop_assert!(next >= at_least(at, floor));
                    at = next;
                }
            }
        }
    }

    #[test]
    fn intervals_and_means_have_a_bound() {
        assert!(Schedule::uniform(1, MAX_INTERVAL).is_ok());
        assert_eq!(
            Schedule::uniform(1, MAX_INTERVAL + 1).unwrap_err(),
            "the maximum interval must be at most 2592000 seconds (30 days), not 2592001"
        );
        let huge = Schedule::uniform(u64::MAX, u64::MAX).unwrap_err();
        assert!(huge.contains("at most 2592000 seconds"), "{huge}");
        let src = Source::new(
            std::path::Path::new("c.ron"),
            "(schedule: Exponential(mean: 9))",
        );
        let mut errors = Vec::new();
        let mean = |text: &str| RawSchedule::Exponential {
            mean: DurationText(text.to_owned()),
        };
        assert!(validate(Some(&mean("2592001s")), (None, None), &src, &mut errors).is_none());
        assert_eq!(
            errors,
            ["c.ron:1:24: the mean interval must be at most 2592000 seconds (30 days), not 2592001"]
        );
        // Written as a duration, the same as seconds.
        let mut errors = Vec::new();
        let ninety = validate(Some(&mean("1h30m")), (None, None), &src, &mut errors);
        assert!(
            matches!(ninety, Some(Schedule::Exponential { mean: 5400 })),
            "{errors:?}"
        );
        assert!(validate(Some(&mean("0s")), (None, None), &src, &mut errors).is_none());
        assert_eq!(
            errors,
            ["c.ron:1:24: the mean interval must be at least 1 second"]
        );
    }

    fn always() -> Window {
        Window {
            days: Days::parse("*").unwrap(),
            time: TimeRange::parse("00:00-24:00").unwrap(),
            zone: Zone::parse("UTC").unwrap(),
            skip: BTreeSet::new(),
        }
    }

    #[test]
    fn uniform_waits_stay_within_bounds_and_reach_both() {
        let s = Schedule::uniform(3, 7).unwrap();
        let mut rng = Rng::from_seed(1);
        let now = DateTime::from_timestamp(0, 0).unwrap();
        let waits: BTreeSet<i64> = (0..2000)
            .map(|_| (s.next_after(&mut rng, now, &Zone::Local).unwrap() - now).num_seconds())
            .collect();
        assert_eq!(waits, (3..=7).collect());
        let fixed = Schedule::uniform(5, 5).unwrap();
        assert_eq!(
            fixed.next_after(&mut rng, now, &Zone::Local),
            Some(now + chrono::Duration::seconds(5))
        );
        assert_eq!(
            Schedule::uniform(9, 3).unwrap_err(),
            "the minimum interval (9 s) is greater than the maximum (3 s)"
        );
    }

    #[test]
    fn exponential_mean_is_about_right() {
        let s = Schedule::Exponential { mean: 600 };
        let mut rng = Rng::from_seed(2);
        let now = DateTime::from_timestamp(0, 0).unwrap();
        let total: i64 = (0..5000)
            .map(|_| (s.next_after(&mut rng, now, &Zone::Local).unwrap() - now).num_seconds())
            .sum();
        let mean = total as f64 / 5000.0;
        assert!((560.0..640.0).contains(&mean), "{mean}");
    }

    #[test]
    fn cron_fires_on_its_times_and_plan_replays() {
        let s = Schedule::cron("0 */15 * * * *").unwrap();
        let from = DateTime::parse_from_rfc3339("2026-11-25T10:07:00Z")
            .unwrap()
            .to_utc();
        let mut timer = Timer::new(s, always(), Rng::from_seed(0));
        let plan = timer.plan(from, 3, 100);
        let shown: Vec<String> = plan.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            shown,
            [
                "2026-11-25T10:15:00+00:00",
                "2026-11-25T10:30:00+00:00",
                "2026-11-25T10:45:00+00:00"
            ]
        );
        assert!(Schedule::cron("every tuesday").is_err());
    }

    #[test]
    fn a_bad_cron_expression_says_why_when_the_crate_does() {
        let why = |expr: &str| Schedule::cron(expr).err().unwrap_or_default();
        assert!(
            why("every tuesday").starts_with("invalid cron expression `every tuesday` (The 'Seconds' field does not support using names. 'every' specified.): expected a cron expression with seconds"),
            "{}",
            why("every tuesday")
        );
        // Too few fields: the crate has only a caret to say, which says nothing here.
        assert!(
            why("* * *").starts_with(
                "invalid cron expression `* * *`: expected a cron expression with seconds"
            ),
            "{}",
            why("* * *")
        );
    }
}
