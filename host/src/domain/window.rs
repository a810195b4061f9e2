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

/// Allowed weekdays, 0 = Sunday, with the items as written for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Days {
    allowed: [bool; 7],
    /// The first and last day (0-6) of each item; each day a step picks is an item.
    segments: Vec<(u8, u8)>,
}

/// The accepted form of `--day`, for error messages.
pub const DAYS_FORM: &str = "crontab-style weekdays: a day (0-7, 0 and 7 are Sunday, or a name like Mon), a range like 1-5 or Mon-Fri (Fri-Mon wraps over the weekend), a list like sat,sun, * for every day, or a step like */2";

/// The accepted form of one day, for error messages.
const DAY_FORM: &str =
    "a number 0-7 (0 and 7 are Sunday) or a three-letter name (Sun, Mon, Tue, Wed, Thu, Fri, Sat)";

/// The accepted form of `--time`, for error messages.
pub const TIME_FORM: &str =
    "HH:MM-HH:MM, e.g. 11:00-18:00 (22:00-02:00 wraps midnight; 00:00-24:00 is all day)";

impl Days {
    /// Parses crontab's day-of-week field (crontab(5)): a comma list of `*`, a day (0-7
    /// or a name in any case) and ranges of two days, where `*` and ranges may take a
    /// step (`*/2`, `Mon-Fri/2`). Spaces around items and their parts are ignored.
    ///
    /// One departure, which this parser has always made: cron refuses a range that
    /// starts after its end, here it wraps over the weekend (`Fri-Mon` and `5-1` are Fri,
    /// Sat, Sun and Mon).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let fail = |why: String| format!("invalid days `{spec}`: {why}");
        if spec.trim().is_empty() {
            return Err(fail(format!("no days given: expected {DAYS_FORM}")));
        }
        let mut days = Self {
            allowed: [false; 7],
            segments: Vec::new(),
        };
        for item in spec.split(',').map(str::trim) {
            let (run, step) = parse_item(item).map_err(fail)?;
            days.add(&run, step);
        }
        Ok(days)
    }

    /// Allows every `step`th day of `run` (cron's numbers, where 7 is Sunday again).
    fn add(&mut self, run: &[u8], step: usize) {
        let mut picked: Vec<u8> = run.iter().step_by(step).map(|d| d % 7).collect();
        for &d in &picked {
            self.allowed[usize::from(d)] = true;
        }
        if step == 1 {
            // A whole week reads from its first day on: `0-7` is "Sun thru Sat", not
            // "Sun thru Sun".
            let last = if run.len() >= 7 {
                (picked[0] + 6) % 7
            } else {
                picked[picked.len() - 1]
            };
            self.segments.push((picked[0], last));
        } else {
            // Only `0-7/7` picks a day twice (0 and 7), one after the other.
            picked.dedup();
            self.segments.extend(picked.iter().map(|&d| (d, d)));
        }
    }

    /// Whether weekday `d` (0 = Sunday) is allowed.
    pub fn allows(&self, d: u32) -> bool {
        self.allowed[(d % 7) as usize]
    }
}

/// One item of the days list: the days it walks in cron's numbers (0-7), and its step.
/// The error names the part at fault.
fn parse_item(item: &str) -> Result<(Vec<u8>, usize), String> {
    if item.is_empty() {
        return Err(
            "an empty item in the list: expected a day, a range or * between commas".to_owned(),
        );
    }
    let (base, step) = match item.split_once('/') {
        None => (item, 1),
        Some((base, step)) => match number(step.trim()) {
            Some(n @ 1..=7) => (base.trim(), usize::from(n)),
            _ => {
                return Err(format!(
                    "`{item}`: the step must be 1-7, like */2 or Mon-Fri/2"
                ))
            }
        },
    };
    let run = if base == "*" {
        (0..=6).collect()
    } else if let Some((a, b)) = base.split_once('-') {
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() || b.contains('-') {
            return Err(format!(
                "`{base}` is not a range: expected two days joined by -, like 1-5 or Fri-Mon"
            ));
        }
        let (a, b) = (day(a)?, day(b)?);
        if a <= b {
            (a..=b).collect()
        } else {
            // Wraps: on from Sunday, as 0 (a start of 7 adds nothing before it).
            (a..=6).chain(0..=b).collect()
        }
    } else if item.contains('/') {
        return Err(format!(
            "`{item}`: a step goes after * or a range, like */2 or Mon-Fri/2"
        ));
    } else {
        vec![day(base)?]
    };
    Ok((run, step))
}

/// A day in cron's numbers: 0-7 (0 and 7 are Sunday) or a three-letter name, any case.
fn day(text: &str) -> Result<u8, String> {
    match number(text) {
        Some(d @ 0..=7) => Ok(d),
        _ => (0u8..)
            .zip(DAY_NAMES)
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(d, _)| d)
            .ok_or_else(|| format!("`{text}` is not a day: expected {DAY_FORM}")),
    }
}

/// Digits only, as cron reads numbers (Rust's parser would also take a `+`).
fn number(text: &str) -> Option<u8> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
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
        if start == 24 * 60 {
            return Err(format!(
                "invalid time `{spec}`: a range cannot start at 24:00: expected {TIME_FORM}"
            ));
        }
        if start == end {
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

    /// The wall-clock time of `at` in this zone.
    pub fn naive(&self, at: DateTime<Utc>) -> NaiveDateTime {
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

    /// The first instant whose local time is `local` or later: the earliest with that
    /// local time, or, when a DST gap skipped it, the first after the gap.
    fn reached(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        // The first local minute that exists is where the gap ends: gaps end on a whole
        // minute (only the local mean times of the past had seconds in their offsets),
        // and none is longer than a day (Samoa skipped 2011-12-30).
        (0..=1440)
            .map(|m| local + Duration::minutes(m))
            .find_map(|local| self.instant(local))
    }

    /// Its name, as a reader would look it up: the IANA name, or for `local` the host's
    /// zone's name when the host says it (`local time` when it does not).
    pub fn name(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_owned(),
            Zone::Local => jiff::tz::TimeZone::system()
                .iana_name()
                .map_or_else(|| "local time".to_owned(), str::to_owned),
        }
    }

    /// An instant as RFC 3339 in this zone.
    pub fn rfc3339(&self, at: DateTime<Utc>) -> String {
        match self {
            Zone::Local => at.with_timezone(&Local).to_rfc3339(),
            Zone::Named(tz) => at.with_timezone(tz).to_rfc3339(),
        }
    }

    /// `at` as a clock time for people, in whole seconds (`status`, the API, events).
    pub fn clock(&self, at: DateTime<Utc>) -> String {
        use chrono::Timelike as _;
        self.rfc3339(at.with_nanosecond(0).unwrap_or(at))
    }
}

/// An instant and the zone to show it in: it serializes as [`Zone::clock`] says.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockTime {
    pub at: DateTime<Utc>,
    pub zone: Zone,
}

impl serde::Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.zone.clock(self.at))
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
        // Local time only moves forward, so the window opens where it reaches a day's
        // start (a wrapping range is open at 00:00) or the range's start, or, when a DST
        // gap skipped that moment, where the gap ends. The exception is not looked for: a
        // fall-back fold that repeats the range's end opens the window again for the
        // repeated minutes, and the opening after that is returned instead.
        let today = self.zone.naive(at).date();
        (0..373)
            .filter_map(|i| today.checked_add_signed(Duration::days(i)))
            .flat_map(|date| [0, self.time.start].map(|m| date.and_hms_opt(m / 60, m % 60, 0)))
            .flatten()
            .filter_map(|local| self.zone.reached(local))
            .filter(|t| *t > at && self.contains(*t))
            .min()
    }
}

#[cfg(test)]
mod tests;
