//! When the monkey may play: weekdays (crontab style, ranges may wrap), a time of day
//! (may wrap midnight), a time zone and dates to skip. A moment is inside when its own
//! local date is an allowed weekday and not skipped, and its local time is in the range.

use std::{collections::BTreeSet, fmt};

use chrono::{
    DateTime, Datelike, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use serde::Deserialize;

use crate::{
    domain::tz::NamedZone,
    support::located::{setting, Source},
};

/// The original's days.
pub const DEFAULT_DAYS: &str = "1-5";
/// The original's hours.
pub const DEFAULT_TIME: &str = "11:00-18:00";

/// The window as written (`window: (...)`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "window")]
pub struct RawWindow {
    days: Option<String>,
    time: Option<String>,
    timezone: Option<String>,
    skip_dates: Vec<String>,
}

/// The command line's say on the window: `--day`, `--time`, `--timezone`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowFlags<'a> {
    /// `--day`.
    pub day: Option<&'a String>,
    /// `--time`.
    pub time: Option<&'a String>,
    /// `--timezone`.
    pub timezone: Option<&'a String>,
}

impl RawWindow {
    /// Validates the window with the command line's flags, which win over the file.
    /// Also returns the zone's name when one was given (else the host's zone is used).
    pub fn validate(
        &self,
        flags: WindowFlags<'_>,
        src: &Source<'_>,
        errors: &mut Vec<String>,
    ) -> Option<(Window, Option<String>)> {
        let days = setting(
            (&flags.day.cloned(), "--day"),
            (&self.days, &["window", "days"]),
            DEFAULT_DAYS,
            src,
            Days::parse,
            errors,
        );
        let time = setting(
            (&flags.time.cloned(), "--time"),
            (&self.time, &["window", "time"]),
            DEFAULT_TIME,
            src,
            TimeRange::parse,
            errors,
        );
        let zone = setting(
            (&flags.timezone.cloned(), "--timezone"),
            (&self.timezone, &["window", "timezone"]),
            "local",
            src,
            Zone::parse,
            errors,
        );
        let zone_name = flags.timezone.cloned().or_else(|| self.timezone.clone());
        let mut skip = BTreeSet::new();
        for date in &self.skip_dates {
            match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
                Ok(d) => {
                    skip.insert(d);
                }
                Err(_) => errors.push(format!(
                    "{}: invalid skip date `{date}`: expected YYYY-MM-DD, e.g. 2026-12-25",
                    src.at(&["window", "skip_dates", &format!("\"{date}\"")])
                )),
            }
        }
        Some((
            Window {
                days: days?,
                time: time?,
                zone: zone?,
                skip,
            },
            zone_name,
        ))
    }
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Allowed weekdays, 0 = Sunday, with the segments as written for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Days {
    allowed: [bool; 7],
    segments: Vec<(u8, u8)>,
}

/// The accepted form of `--day`, for error messages.
pub const DAYS_FORM: &str = "crontab-style weekdays: a number 0-7 (0 and 7 are Sunday), a range like 1-5 (5-1 wraps over the weekend), a list like 1,3,5, or *";

/// The accepted form of `--time`, for error messages.
pub const TIME_FORM: &str =
    "HH:MM-HH:MM, e.g. 11:00-18:00 (22:00-02:00 wraps midnight; 00:00-24:00 is all day)";

impl Days {
    /// Parses `1-5`, `0,6`, `5-1`, `*`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = || format!("invalid days `{spec}`: expected {DAYS_FORM}");
        let day = |t: &str| -> Result<u8, String> {
            match t.trim().parse::<u8>() {
                Ok(d @ 0..=7) => Ok(d % 7),
                _ => Err(bad()),
            }
        };
        let mut allowed = [false; 7];
        let mut segments = Vec::new();
        for item in spec.split(',') {
            let (a, b) = match item.trim() {
                "*" => (0, 6),
                t => match t.split_once('-') {
                    Some((a, b)) => (day(a)?, day(b)?),
                    None => {
                        let d = day(t)?;
                        (d, d)
                    }
                },
            };
            let mut d = a;
            loop {
                allowed[d as usize] = true;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            segments.push((a, b));
        }
        Ok(Self { allowed, segments })
    }

    /// Whether weekday `d` (0 = Sunday) is allowed.
    pub fn allows(&self, d: u32) -> bool {
        self.allowed[(d % 7) as usize]
    }
}

impl fmt::Display for Days {
    /// As the original's banner: `Mon thru Fri`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    DAY_NAMES[a as usize].to_owned()
                } else {
                    format!("{} thru {}", DAY_NAMES[a as usize], DAY_NAMES[b as usize])
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A time of day range in minutes after midnight; wraps when `end <= start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    start: u32,
    end: u32,
}

impl TimeRange {
    /// Parses `11:00-18:00`, `22:00-02:00`, `00:00-24:00`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = || format!("invalid time `{spec}`: expected {TIME_FORM}");
        let minute = |t: &str| -> Result<u32, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if m > 59 || h > 24 || (h == 24 && m != 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minute(a)?, minute(b)?);
        if start == end || start == 24 * 60 {
            return Err(bad());
        }
        Ok(Self { start, end })
    }

    /// Whether minute-of-day `m` is inside.
    pub fn contains(&self, m: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

impl fmt::Display for TimeRange {
    /// As the original's banner: `from 11:00 to 18:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {:02}:{:02} to {:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The zone the window is read in.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// The host's local zone (TZ, /etc/localtime).
    Local,
    /// A named IANA zone.
    Named(NamedZone),
}

impl Zone {
    /// Parses an IANA name (`Asia/Tokyo`) or `local`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name == "local" {
            return Ok(Zone::Local);
        }
        NamedZone::get(name).map(Zone::Named).ok_or_else(|| {
            format!("unknown time zone `{name}`: expected an IANA name like Asia/Tokyo or Europe/Berlin, or local")
        })
    }

    fn naive(&self, at: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Local => at.with_timezone(&Local).naive_local(),
            Zone::Named(tz) => at.with_timezone(tz).naive_local(),
        }
    }

    /// The earliest instant with this local time (skips a DST gap's missing hour).
    fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Local => Local
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.to_utc()),
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.to_utc()),
        }
    }

    /// An instant as RFC 3339 in this zone.
    pub fn rfc3339(&self, at: DateTime<Utc>) -> String {
        match self {
            Zone::Local => at.with_timezone(&Local).to_rfc3339(),
            Zone::Named(tz) => at.with_timezone(tz).to_rfc3339(),
        }
    }
}

/// When faults may happen.
#[derive(Debug, Clone)]
pub struct Window {
    /// Allowed weekdays.
    pub days: Days,
    /// Allowed time of day.
    pub time: TimeRange,
    /// The zone both are read in.
    pub zone: Zone,
    /// Local dates on which the monkey sleeps all day (holidays).
    pub skip: BTreeSet<NaiveDate>,
}

impl Window {
    /// Whether `at` is inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = self.zone.naive(at);
        self.days.allows(local.weekday().num_days_from_sunday())
            && !self.skip.contains(&local.date())
            && self.time.contains(local.hour() * 60 + local.minute())
    }

    /// The first instant at or after `at` inside the window, if there is one within a
    /// year and a week.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.contains(at) {
            return Some(at);
        }
        // The window can only open at a day's start (a wrapping range is open at 00:00),
        // at the range's start, or, when a DST gap swallowed that start, at the first
        // hour after it: try those, day by day.
        let today = self.zone.naive(at).date();
        let next_hour = (self.time.start / 60 + 1) * 60 % 1440;
        let starts = [0, self.time.start, next_hour];
        (0..373)
            .filter_map(|i| today.checked_add_signed(Duration::days(i)))
            .flat_map(|date| starts.map(|m| date.and_hms_opt(m / 60, m % 60, 0)))
            .flatten()
            .filter_map(|local| self.zone.instant(local))
            .filter(|t| *t > at && self.contains(*t))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};

    fn window(days: &str, time: &str, zone: &str) -> Window {
        Window {
            days: Days::parse(days).unwrap(),
            time: TimeRange::parse(time).unwrap(),
            zone: Zone::parse(zone).unwrap(),
            skip: BTreeSet::new(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn days_follow_crontab() {
        let d = Days::parse("1-5").unwrap();
        assert_eq!(d.to_string(), "Mon thru Fri");
        assert!((1..=5).all(|x| d.allows(x)) && !d.allows(0) && !d.allows(6));
        let wrap = Days::parse("5-1").unwrap();
        assert_eq!(wrap.to_string(), "Fri thru Mon");
        assert!([5, 6, 0, 1].iter().all(|x| wrap.allows(*x)) && !wrap.allows(3));
        let sunday = Days::parse("7").unwrap();
        assert!(sunday.allows(0) && sunday.to_string() == "Sun");
        assert_eq!(
            Days::parse("1,3,5-6").unwrap().to_string(),
            "Mon, Wed, Fri thru Sat"
        );
        assert!(Days::parse("*").unwrap().allowed.iter().all(|a| *a));
        for bad in ["8", "mon", "1-", "", "1,,2"] {
            assert_eq!(
                Days::parse(bad).unwrap_err(),
                format!("invalid days `{bad}`: expected {DAYS_FORM}")
            );
        }
    }

    #[test]
    fn times_wrap_midnight() {
        let t = TimeRange::parse("22:00-02:00").unwrap();
        assert!(t.contains(23 * 60) && t.contains(60) && !t.contains(12 * 60) && !t.contains(120));
        assert_eq!(
            TimeRange::parse("11:00-18:00").unwrap().to_string(),
            "from 11:00 to 18:00"
        );
        assert!(TimeRange::parse("00:00-24:00")
            .unwrap()
            .contains(24 * 60 - 1));
        for bad in ["11-18", "25:00-26:00", "11:00-11:00", "11:60-12:00", "x"] {
            assert!(TimeRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zones_and_skipped_dates_apply() {
        // 2026-11-27 is a Friday; 10:00 UTC is 19:00 in Tokyo.
        let w = window("1-5", "11:00-18:00", "Asia/Tokyo");
        assert!(!w.contains(utc("2026-11-27T10:00:00Z")));
        assert!(w.contains(utc("2026-11-27T08:59:00Z")));
        let mut holiday = w.clone();
        holiday
            .skip
            .insert(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert!(!holiday.contains(utc("2026-11-27T08:59:00Z")));
        // Friday 19:00 Tokyo: next opening is Monday 11:00 Tokyo.
        assert_eq!(
            w.next_open(utc("2026-11-27T10:00:00Z")),
            Some(utc("2026-11-30T02:00:00Z"))
        );
    }

    proptest! {
        #[test]
        fn next_open_is_the_first_open_minute(
            secs in 1_700_000_000i64..1_900_000_000,
            start in 0u32..1440, len in 1u32..1440,
            days in proptest::collection::vec(0u8..8, 1..4),
            zone in proptest::sample::select(vec!["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"]),
        ) {
            let end = (start + len) % 1440;
            let time = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
            let days = days.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
            let w = window(&days, &time, zone);
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            let open = w.next_open(at).unwrap();
            prop_assert!(open >= at && w.contains(open));
            // No whole minute between `at` and `open` is inside.
            let mut t = at;
            while t + Duration::minutes(1) <= open {
                prop_assert!(!w.contains(t) || t == open);
                t += Duration::minutes(1);
                if t - at > Duration::days(8) { break; }
            }
        }
    }
}
