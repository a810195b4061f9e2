//! Named IANA time zones as a `chrono::TimeZone`, read through jiff from the host's tz
//! database (`/usr/share/zoneinfo`, or `TZDIR`), with jiff's bundled copy as a fallback
//! for hosts without one (minimal containers).
//!
//! Why not chrono-tz: it compiles every zone into the binary as tables of pointers, about
//! 38,000 relocations that the loader patches at every start. Measured with `bench/run`:
//! over a millisecond of each start and 1.3 MB of dirty memory in a daemon that should
//! cost its host almost nothing. jiff keeps its bundled database as plain bytes and reads
//! only the zone asked for. Reading the host's database also means a window follows the
//! host's tzdata updates, like every other program on it.

use std::{fmt, sync::Arc};

use chrono::{
    Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
};
use jiff::tz::AmbiguousOffset;

/// A named zone, such as `Asia/Tokyo`.
#[derive(Clone)]
pub struct NamedZone {
    name: Arc<str>,
    tz: jiff::tz::TimeZone,
}

impl fmt::Debug for NamedZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamedZone({})", self.name)
    }
}

impl PartialEq for NamedZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl NamedZone {
    /// The zone called `name`; `None` if no tz database knows it.
    pub fn get(name: &str) -> Option<Self> {
        let tz = jiff::tz::TimeZone::get(name).ok()?;
        Some(Self {
            name: name.into(),
            tz,
        })
    }

    /// Its IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn offset(&self, offset: jiff::tz::Offset) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            // Real zones stay within ±14 h; chrono's limit is ±24 h.
            fixed: FixedOffset::east_opt(offset.seconds())
                .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero is a valid offset")),
        }
    }
}

/// The offset of a [`NamedZone`] at some instant, carrying its zone (chrono rebuilds the
/// zone of a `DateTime` from its offset).
#[derive(Clone, Debug)]
pub struct ZoneOffset {
    zone: NamedZone,
    fixed: FixedOffset,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

/// A chrono local datetime as jiff's civil datetime; `None` outside jiff's years
/// (-9999 to 9999).
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        local.nanosecond().min(999_999_999) as i32,
    )
    .ok()
}

impl TimeZone for NamedZone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Self {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<ZoneOffset> {
        let Some(civil) = civil(local) else {
            return LocalResult::None;
        };
        match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(self.offset(offset)),
            // A local time skipped by a transition (the spring-forward hour) does not exist.
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            // A repeated local time: the earlier instant has the offset from before.
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let seconds = utc.and_utc().timestamp();
        let instant = jiff::Timestamp::new(seconds, 0).unwrap_or(if seconds < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        self.offset(self.tz.to_offset(instant))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn zone(name: &str) -> NamedZone {
        NamedZone::get(name).unwrap()
    }

    #[test]
    fn utc_to_local_follows_daylight_saving() {
        let berlin = zone("Europe/Berlin");
        let winter = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
        let summer = Utc.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap();
        assert_eq!(
            winter.with_timezone(&berlin).to_rfc3339(),
            "2026-01-15T13:00:00+01:00"
        );
        assert_eq!(
            summer.with_timezone(&berlin).to_rfc3339(),
            "2026-07-15T14:00:00+02:00"
        );
        // Far past the last transition a slim tz file lists: the rule itself applies.
        let later = Utc.with_ymd_and_hms(2090, 7, 15, 12, 0, 0).unwrap();
        assert_eq!(
            later.with_timezone(&berlin).to_rfc3339(),
            "2090-07-15T14:00:00+02:00"
        );
        let tokyo = zone("Asia/Tokyo");
        assert_eq!(
            summer.with_timezone(&tokyo).to_rfc3339(),
            "2026-07-15T21:00:00+09:00"
        );
    }

    #[test]
    fn gaps_do_not_exist_and_folds_are_ambiguous() {
        let new_york = zone("America/New_York");
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        // 2026-03-08 02:30 is skipped; 2026-11-01 01:30 happens twice.
        let gap = day(8).and_hms_opt(2, 30, 0).unwrap();
        assert!(matches!(
            new_york.from_local_datetime(&gap),
            LocalResult::None
        ));
        let fold = NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        let LocalResult::Ambiguous(early, late) = new_york.from_local_datetime(&fold) else {
            panic!("01:30 on the fall-back day should be ambiguous");
        };
        assert_eq!(early.to_rfc3339(), "2026-11-01T01:30:00-04:00");
        assert_eq!(late.to_rfc3339(), "2026-11-01T01:30:00-05:00");
        assert!(early < late);
        let plain = day(10).and_hms_opt(9, 0, 0).unwrap();
        assert_eq!(
            new_york
                .from_local_datetime(&plain)
                .single()
                .unwrap()
                .to_utc(),
            Utc.with_ymd_and_hms(2026, 3, 10, 13, 0, 0).unwrap()
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(NamedZone::get("Mars/Olympus_Mons").is_none());
        assert_eq!(zone("UTC").name(), "UTC");
    }
}
