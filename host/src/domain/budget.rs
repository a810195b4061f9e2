//! Budgets shared by every trigger: at most N faults an hour and a day, and a minimum gap
//! between two faults. The clock is passed in, so the arithmetic is tested on its own.

use std::{collections::VecDeque, time::Duration};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::support::located::{duration, DurationText, Source};

/// The longest `min_gap`: a week.
pub const MAX_MIN_GAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Faults in any 60 minutes.
    pub per_hour: Option<u32>,
    /// Faults in any 24 hours.
    pub per_day: Option<u32>,
    /// The least time between two faults.
    pub min_gap: Option<Duration>,
}

/// The budget as written (`budget: (per_hour: 2, min_gap: "10m")`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "budget")]
pub struct RawBudget {
    per_hour: Option<u32>,
    per_day: Option<u32>,
    min_gap: Option<DurationText>,
}

impl RawBudget {
    /// Validates the limits; none is zero (leaving one out means no limit).
    pub fn validate(&self, src: &Source<'_>, errors: &mut Vec<String>) -> Limits {
        let min_gap = self.min_gap.as_deref().and_then(|text| {
            duration(
                text,
                &src.at(&["budget", "min_gap"]),
                "min_gap",
                MAX_MIN_GAP,
                errors,
            )
        });
        for (value, key) in [(self.per_hour, "per_hour"), (self.per_day, "per_day")] {
            if value == Some(0) {
                errors.push(format!(
                    "{}: {key} must be at least 1 (leave it out for no limit)",
                    src.at(&["budget", key])
                ));
            }
        }
        Limits {
            per_hour: self.per_hour,
            per_day: self.per_day,
            min_gap,
        }
    }
}

/// What is left of a budget (`status`, `GET /api/status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Left {
    /// The faults of the last hour against `per_hour`, if there is such a limit.
    pub per_hour: Option<Used>,
    /// The faults of the last day against `per_day`, if there is such a limit.
    pub per_day: Option<Used>,
    /// Seconds until the next fault fits (0: one fits now).
    pub next_fits_in_s: u64,
}

/// Faults counted against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Used {
    pub used: u32,
    pub limit: u32,
}

/// The faults of the last day, against the limits.
#[derive(Debug, Default)]
pub struct Budget {
    limits: Limits,
    recent: VecDeque<DateTime<Utc>>,
    /// How many recent faults the limits can need: only the last `per_hour` (or
    /// `per_day`) faults decide whether another fits, and a gap needs the last one. Older
    /// ones are dropped, so memory stays bounded however busy the API is (without this,
    /// 100k dry runs held 1.4 MB for a day; BENCHMARKS.md).
    keep: usize,
}

/// Extra places kept beyond what the limits need, so that a fault that did not happen
/// can give its place back while a few others were recorded meanwhile (the daemon runs
/// at most four injections at once).
const FORGET_SLACK: usize = 8;

const HOUR: chrono::TimeDelta = chrono::TimeDelta::hours(1);
const DAY: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Budget {
    /// A budget with these limits.
    pub fn new(limits: Limits) -> Self {
        let needed = [
            limits.per_hour.map_or(0, |n| n as usize),
            limits.per_day.map_or(0, |n| n as usize),
            usize::from(limits.min_gap.is_some()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Self {
            limits,
            recent: VecDeque::new(),
            keep: if needed == 0 {
                0
            } else {
                needed + FORGET_SLACK
            },
        }
    }

    /// `Ok` if a fault may happen at `now`; else how long until one may, and which limit.
    pub fn check(&mut self, now: DateTime<Utc>) -> Result<(), (Duration, String)> {
        while self.recent.front().is_some_and(|t| now - *t >= DAY) {
            self.recent.pop_front();
        }
        let mut wait = chrono::TimeDelta::zero();
        let mut why = Vec::new();
        if let (Some(gap), Some(last)) = (self.limits.min_gap, self.recent.back()) {
            let gap = chrono::TimeDelta::from_std(gap).unwrap_or(DAY);
            if now - *last < gap {
                wait = wait.max(*last + gap - now);
                why.push(format!(
                    "at least {} between faults",
                    humantime::format_duration(gap.to_std().unwrap_or_default())
                ));
            }
        }
        for (limit, span, name) in [
            (self.limits.per_hour, HOUR, "an hour"),
            (self.limits.per_day, DAY, "a day"),
        ] {
            let Some(limit) = limit else { continue };
            let inside: Vec<&DateTime<Utc>> =
                self.recent.iter().filter(|t| now - **t < span).collect();
            if inside.len() >= limit as usize {
                // The fault that has to fall out of the span before another fits.
                let oldest = inside[inside.len() - limit as usize];
                wait = wait.max(*oldest + span - now);
                why.push(format!(
                    "at most {limit} {} {name}",
                    if limit == 1 { "fault" } else { "faults" }
                ));
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            let secs = wait.num_milliseconds().max(0) as u64;
            Err((Duration::from_millis(secs), why.join(" and ")))
        }
    }

    /// What is left of it at `now`: for each limit, the faults counted and the limit, and
    /// how long until the next fault fits (zero if one fits now).
    pub fn left(&self, now: DateTime<Utc>) -> Left {
        let count = |span: chrono::TimeDelta| {
            self.recent.iter().filter(|t| now - **t < span).count() as u32
        };
        let mut probe = Budget {
            limits: self.limits,
            recent: self.recent.clone(),
            keep: self.keep,
        };
        Left {
            per_hour: self.limits.per_hour.map(|limit| Used {
                used: count(HOUR).min(limit),
                limit,
            }),
            per_day: self.limits.per_day.map(|limit| Used {
                used: count(DAY).min(limit),
                limit,
            }),
            next_fits_in_s: match probe.check(now) {
                Ok(()) => 0,
                Err((wait, _)) => crate::domain::injection::ceil_secs(wait),
            },
        }
    }

    /// How many of the latest faults the limits look at (0: no limit, none).
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// A fault happens at `now` (recorded when it is let through, so two requests at once
    /// cannot both take the last place).
    pub fn record(&mut self, now: DateTime<Utc>) {
        self.recent.push_back(now);
        while self.recent.len() > self.keep {
            self.recent.pop_front();
        }
    }

    /// The fault recorded at `at` did not happen after all (its intent could not be
    /// journaled, or the plugin failed): it gives its place back.
    pub fn forget(&mut self, at: DateTime<Utc>) {
        if let Some(i) = self.recent.iter().rposition(|t| *t == at) {
            self.recent.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// The budget `text` (RON) validated: its limits and its errors.
    fn validated(text: &str) -> (Limits, Vec<String>) {
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let raw: RawBudget = options.from_str(text).unwrap();
        let mut errors = Vec::new();
        let src = Source::new(std::path::Path::new(""), "");
        (raw.validate(&src, &mut errors), errors)
    }

    #[test]
    fn a_fault_an_hour_old_is_no_longer_counted_and_keep_says_how_many_are() {
        let limits = Limits {
            per_hour: Some(3),
            ..Limits::default()
        };
        let mut budget = Budget::new(limits);
        assert_eq!(budget.keep(), 3 + FORGET_SLACK);
        assert_eq!(Budget::new(Limits::default()).keep(), 0);
        budget.record(at(0));
        budget.record(at(1));
        let used = |now| budget.left(at(now)).per_hour.map(|u| u.used);
        assert_eq!(used(3599), Some(2));
        assert_eq!(used(3600), Some(1), "the one of an hour ago has aged out");
        assert_eq!(used(3601), Some(0));
    }

    #[test]
    fn limits_are_taken_as_written_and_a_zero_is_refused() {
        assert_eq!(
            validated(r#"(per_hour: 2, per_day: 5, min_gap: "7days")"#),
            (
                Limits {
                    per_hour: Some(2),
                    per_day: Some(5),
                    min_gap: Some(Duration::from_secs(7 * 24 * 3600)),
                },
                vec![]
            )
        );
        assert_eq!(validated("()"), (Limits::default(), vec![]));
        let (_, errors) = validated("(per_hour: 0, per_day: 1)");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].ends_with("per_hour must be at least 1 (leave it out for no limit)"),
            "{errors:?}"
        );
        let (_, errors) = validated("(per_day: 0)");
        assert!(
            errors[0].contains("per_day must be at least 1"),
            "{errors:?}"
        );
        // A week at most between two faults.
        let (limits, errors) = validated(r#"(min_gap: "169h")"#);
        assert_eq!((limits.min_gap, errors.len()), (None, 1), "{errors:?}");
    }

    #[test]
    fn only_what_the_limits_need_is_kept() {
        let mut free = Budget::new(Limits::default());
        let mut hourly = Budget::new(Limits {
            per_hour: Some(3),
            ..Limits::default()
        });
        for t in 0..10_000 {
            free.record(at(t));
            hourly.record(at(t));
        }
        assert_eq!(free.recent.len(), 0);
        assert!(free.check(at(10_000)).is_ok());
        assert_eq!(hourly.recent.len(), 3 + FORGET_SLACK);
        // Still exact: three in the last hour (at 9997, 9998, 9999), so the next must
        // wait for the one at 9997 to age out.
        assert_eq!(
            hourly.check(at(10_000)).unwrap_err().0,
            Duration::from_secs(9997 + 3600 - 10_000)
        );
    }

    #[test]
    fn what_is_left_counts_each_span_and_says_when_the_next_fits() {
        let mut b = Budget::new(Limits {
            per_hour: Some(2),
            per_day: Some(4),
            min_gap: Some(Duration::from_secs(60)),
        });
        let used = |used, limit| Some(Used { used, limit });
        assert_eq!(
            b.left(at(0)),
            Left {
                per_hour: used(0, 2),
                per_day: used(0, 4),
                next_fits_in_s: 0
            }
        );
        b.record(at(0));
        b.record(at(100));
        // Two in the hour: the next fits when the one at 0 is an hour old.
        assert_eq!(
            b.left(at(200)),
            Left {
                per_hour: used(2, 2),
                per_day: used(2, 4),
                next_fits_in_s: 3400
            }
        );
        assert_eq!(b.left(at(3630)).per_hour, used(1, 2));
        assert_eq!(b.left(at(3630)).next_fits_in_s, 0);
        // Two in the hour again (at 100 and 3630): the longer wait wins, 40 s until the
        // one at 100 ages out, over the 30 s left of the gap.
        b.record(at(3630));
        assert_eq!(b.left(at(3660)).next_fits_in_s, 40);
        assert_eq!(b.left(at(3700)).next_fits_in_s, 0);
        assert_eq!(b.left(at(3660)).per_day, used(3, 4));
        // The day full: the next fits when the first is a day old.
        b.record(at(7300));
        assert_eq!(b.left(at(7400)).per_day, used(4, 4));
        assert_eq!(b.left(at(7400)).next_fits_in_s, 86_400 - 7400);
        assert_eq!(Budget::new(Limits::default()).left(at(0)).per_hour, None);
    }

    #[test]
    fn min_gap_waits_out_the_rest_of_the_gap() {
        let mut b = Budget::new(Limits {
            min_gap: Some(Duration::from_secs(300)),
            ..Limits::default()
        });
        assert!(b.check(at(0)).is_ok());
        b.record(at(0));
        assert_eq!(
            b.check(at(120)),
            Err((
                Duration::from_secs(180),
                "at least 5m between faults".to_owned()
            ))
        );
        assert!(b.check(at(300)).is_ok());
    }

    #[test]
    fn per_hour_and_per_day_slide() {
        let mut b = Budget::new(Limits {
            per_hour: Some(2),
            per_day: Some(3),
            ..Limits::default()
        });
        for t in [0, 60] {
            assert!(b.check(at(t)).is_ok());
            b.record(at(t));
        }
        assert_eq!(
            b.check(at(600)),
            Err((
                Duration::from_secs(3000),
                "at most 2 faults an hour".to_owned()
            ))
        );
        assert!(b.check(at(3600)).is_ok());
        b.record(at(3600));
        // Three in the day: the next fits once the first is a day old.
        assert_eq!(
            b.check(at(7300)),
            Err((
                Duration::from_secs(86_400 - 7300),
                "at most 3 faults a day".to_owned()
            ))
        );
        assert!(b.check(at(86_400)).is_ok());
    }

    #[test]
    fn a_fault_that_did_not_happen_gives_its_place_back() {
        let mut b = Budget::new(Limits {
            per_hour: Some(1),
            ..Limits::default()
        });
        b.record(at(0));
        assert!(b.check(at(10)).is_err());
        b.forget(at(0));
        assert!(b.check(at(10)).is_ok());
    }

    #[test]
    fn no_limits_never_refuse() {
        let mut b = Budget::new(Limits::default());
        for t in 0..1000 {
            assert!(b.check(at(t)).is_ok());
            b.record(at(t));
        }
    }
}
