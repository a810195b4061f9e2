use super::*;
use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

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

fn allowed(days: &Days) -> Vec<u32> {
    (0..7).filter(|&d| days.allows(d)).collect()
}

/// crontab(5)'s day-of-week field, spec by spec: the days allowed (0 = Sunday) and
/// the banner's words. Ranges that start after their end (`5-1`, `Fri-Mon`, `Sat-Sun`)
/// are ours: cron refuses them.
#[test]
fn days_follow_crontab() {
    const ALL: &[u32] = &[0, 1, 2, 3, 4, 5, 6];
    const WEEKDAYS: &[u32] = &[1, 2, 3, 4, 5];
    const WEEKEND: &[u32] = &[0, 6];
    let table: &[(&str, &[u32], &str)] = &[
        ("*", ALL, "Sun thru Sat"),
        ("0-7", ALL, "Sun thru Sat"),
        ("1-7", ALL, "Mon thru Sun"),
        ("0-6", ALL, "Sun thru Sat"),
        ("7", &[0], "Sun"),
        ("0", &[0], "Sun"),
        ("07", &[0], "Sun"),
        ("6", &[6], "Sat"),
        ("1-5", WEEKDAYS, "Mon thru Fri"),
        ("Mon-Fri", WEEKDAYS, "Mon thru Fri"),
        ("mon-fri", WEEKDAYS, "Mon thru Fri"),
        ("MON-fRi", WEEKDAYS, "Mon thru Fri"),
        ("1-Fri", WEEKDAYS, "Mon thru Fri"),
        ("sat,sun", WEEKEND, "Sat, Sun"),
        ("0,6", WEEKEND, "Sun, Sat"),
        ("6-7", WEEKEND, "Sat thru Sun"),
        ("Sat-Sun", WEEKEND, "Sat thru Sun"),
        ("Fri-Mon", &[0, 1, 5, 6], "Fri thru Mon"),
        ("5-1", &[0, 1, 5, 6], "Fri thru Mon"),
        ("7-1", &[0, 1], "Sun thru Mon"),
        ("7-0", &[0], "Sun"),
        ("Mon-Sun", ALL, "Mon thru Sun"),
        ("Wed-Tue", ALL, "Wed thru Tue"),
        ("Tue-Tue", &[2], "Tue"),
        ("1,3,5-6", &[1, 3, 5, 6], "Mon, Wed, Fri thru Sat"),
        (" 1 - 5 , Sat ", &[1, 2, 3, 4, 5, 6], "Mon thru Fri, Sat"),
        ("*/1", ALL, "Sun thru Sat"),
        ("*/2", &[0, 2, 4, 6], "Sun, Tue, Thu, Sat"),
        ("*/3", &[0, 3, 6], "Sun, Wed, Sat"),
        ("*/7", &[0], "Sun"),
        ("* / 2", &[0, 2, 4, 6], "Sun, Tue, Thu, Sat"),
        ("1-5/2", &[1, 3, 5], "Mon, Wed, Fri"),
        ("Mon-Fri/2", &[1, 3, 5], "Mon, Wed, Fri"),
        ("Mon-Fri/1", WEEKDAYS, "Mon thru Fri"),
        ("0-7/7", &[0], "Sun"),
        ("0-7/2", &[0, 2, 4, 6], "Sun, Tue, Thu, Sat"),
        ("Fri-Mon/2", &[0, 5], "Fri, Sun"),
    ];
    for &(spec, days, banner) in table {
        let parsed = Days::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(allowed(&parsed), days, "{spec}");
        assert_eq!(parsed.to_string(), banner, "{spec}");
    }
}

#[test]
fn days_errors_name_the_part_and_the_form() {
    let day = |part: &str| format!("`{part}` is not a day: expected {DAY_FORM}");
    let range = |part: &str| {
        format!("`{part}` is not a range: expected two days joined by -, like 1-5 or Fri-Mon")
    };
    let step = |item: &str| format!("`{item}`: the step must be 1-7, like */2 or Mon-Fri/2");
    let lone =
        |item: &str| format!("`{item}`: a step goes after * or a range, like */2 or Mon-Fri/2");
    let empty = "an empty item in the list: expected a day, a range or * between commas";
    let none = format!("no days given: expected {DAYS_FORM}");
    let table: &[(&str, String)] = &[
        ("", none.clone()),
        ("  ", none),
        ("8", day("8")),
        ("255", day("255")),
        ("256", day("256")),
        ("+1", day("+1")),
        ("mon-fry", day("fry")),
        ("Monday", day("Monday")),
        ("Funday", day("Funday")),
        ("Mon Fri", day("Mon Fri")),
        ("*-5", day("*")),
        ("1-", range("1-")),
        ("-1", range("-1")),
        ("-", range("-")),
        ("1-2-3", range("1-2-3")),
        ("1,,2", empty.to_owned()),
        ("1,", empty.to_owned()),
        (",1", empty.to_owned()),
        ("*/0", step("*/0")),
        ("*/8", step("*/8")),
        ("*/", step("*/")),
        ("*/x", step("*/x")),
        ("1-5/+2", step("1-5/+2")),
        ("*/2/2", step("*/2/2")),
        ("1/2", lone("1/2")),
        ("/2", lone("/2")),
        ("Mon/1", lone("Mon/1")),
    ];
    for (spec, why) in table {
        assert_eq!(
            Days::parse(spec).unwrap_err(),
            format!("invalid days `{spec}`: {why}")
        );
    }
}

/// The weekdays (0 = Sunday) cron allows for day-of-week items, each read as its first
/// and last number (0-7) and its step.
fn cron_days(items: &[(u8, u8, usize)]) -> Vec<u32> {
    // As cron does it: set each number of each item, then 7 counts as Sunday.
    let mut bits = [false; 8];
    for &(first, last, step) in items {
        for d in (first..=last).step_by(step) {
            bits[usize::from(d)] = true;
        }
    }
    bits[0] |= bits[7];
    (0..7).filter(|&d| bits[d as usize]).collect()
}

proptest! {
    /// Any field cron accepts (ranges never wrap in cron) means the same days here.
    #[test]
    fn days_mean_what_cron_means(
        items in proptest::collection::vec(
            (0u8..=7, 0u8..=7, 1usize..=7, 0u8..5, 0u8..4), 1..5),
    ) {
        // form: 0 one day, 1 a range, 2 a stepped range, 3 `*`, 4 `*/step`;
        // spelling: 0 numbers, else names (lower, upper, as written) where one exists.
        let show = |d: u8, spelling: u8| match (d, spelling) {
            (7, _) | (_, 0) => d.to_string(),
            (_, 1) => DAY_NAMES[usize::from(d)].to_lowercase(),
            (_, 2) => DAY_NAMES[usize::from(d)].to_uppercase(),
            _ => DAY_NAMES[usize::from(d)].to_owned(),
        };
        let mut text = Vec::new();
        let mut meant = Vec::new();
        for &(a, b, step, form, spelling) in &items {
            let (a, b) = (a.min(b), a.max(b));
            let (item, days) = match form {
                0 => (show(a, spelling), (a, a, 1)),
                1 => (format!("{}-{}", show(a, spelling), show(b, spelling)), (a, b, 1)),
                2 => (format!("{}-{}/{step}", show(a, spelling), show(b, spelling)), (a, b, step)),
                3 => ("*".to_owned(), (0, 7, 1)),
                _ => (format!("*/{step}"), (0, 7, step)),
            };
            text.push(item);
            meant.push(days);
        }
        let text = text.join(",");
        let days = Days::parse(&text).unwrap();
        prop_assert_eq!(allowed(&days), cron_days(&meant), "{}", text);
    }
}

#[test]
fn times_wrap_midnight() {
    let t = TimeRange::parse("22:00-02:00").unwrap();
    assert!(t.contains(23 * 60) && t.contains(60) && !t.contains(12 * 60) && !t.contains(120));
    assert!(t.contains(22 * 60) && !t.contains(22 * 60 - 1) && t.contains(119));
    let day = TimeRange::parse("09:00-17:00").unwrap();
    assert!(day.contains(9 * 60) && day.contains(17 * 60 - 1));
    assert!(!day.contains(9 * 60 - 1) && !day.contains(17 * 60));
    assert!(TimeRange::parse("00:00-24:00")
        .unwrap()
        .contains(24 * 60 - 1));
}

#[test]
fn times_parse_exactly() {
    let bad = |spec: &str| format!("invalid time `{spec}`: expected {TIME_FORM}");
    let late = |spec: &str| {
        format!("invalid time `{spec}`: a range cannot start at 24:00: expected {TIME_FORM}")
    };
    let table: &[(&str, Result<&str, String>)] = &[
        ("11:00-18:00", Ok("from 11:00 to 18:00")),
        ("22:00-02:00", Ok("from 22:00 to 02:00")),
        ("00:00-24:00", Ok("from 00:00 to 24:00")),
        ("23:59-24:00", Ok("from 23:59 to 24:00")),
        ("01:24-02:00", Ok("from 01:24 to 02:00")),
        (" 9:05 - 17:59 ", Ok("from 09:05 to 17:59")),
        ("24:00-05:00", Err(late("24:00-05:00"))),
        ("24:00-24:00", Err(late("24:00-24:00"))),
        ("24:00-00:00", Err(late("24:00-00:00"))),
        ("11:00-24:01", Err(bad("11:00-24:01"))),
        ("11:00-11:00", Err(bad("11:00-11:00"))),
        ("00:00-00:00", Err(bad("00:00-00:00"))),
        ("11:60-13:00", Err(bad("11:60-13:00"))),
        ("25:00-26:00", Err(bad("25:00-26:00"))),
        ("11-18", Err(bad("11-18"))),
        ("11:00", Err(bad("11:00"))),
        ("x", Err(bad("x"))),
    ];
    for (spec, expected) in table {
        assert_eq!(
            TimeRange::parse(spec).map(|t| t.to_string()),
            expected.clone().map(str::to_owned),
            "{spec}"
        );
    }
}

/// The window of `(window: (...))`, read as the config file's parser reads it.
fn raw_window(text: &str) -> RawWindow {
    let inner = &text["(window: ".len()..text.len() - 1];
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(inner)
        .unwrap()
}

#[test]
fn the_flags_win_over_the_file_and_each_error_is_located() {
    let text = r#"(window: (days: "sat,sun", time: "09:00-10:00", timezone: "UTC",
                     skip_dates: ["2026-12-25"]))"#;
    let raw = raw_window(text);
    let src = Source::new(std::path::Path::new("w.ron"), text);
    let mut errors = Vec::new();
    let (w, zone) = raw
        .validate(WindowFlags::default(), &src, &mut errors)
        .unwrap();
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(
        (w.days.to_string(), w.time.to_string(), zone.as_deref()),
        (
            "Sat, Sun".to_owned(),
            "from 09:00 to 10:00".to_owned(),
            Some("UTC")
        )
    );
    assert_eq!(
        w.skip,
        [NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()].into()
    );

    let (day, tokyo) = ("Mon-Fri".to_owned(), "Asia/Tokyo".to_owned());
    let flags = WindowFlags {
        day: Some(&day),
        time: None,
        timezone: Some(&tokyo),
    };
    let (w, zone) = raw.validate(flags, &src, &mut errors).unwrap();
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(
        (w.days.to_string(), w.time.to_string(), zone.as_deref()),
        (
            "Mon thru Fri".to_owned(),
            "from 09:00 to 10:00".to_owned(),
            Some("Asia/Tokyo")
        )
    );

    let text = r#"(window: (days: "Sun-Fry", skip_dates: ["12/25"]))"#;
    let raw = raw_window(text);
    let src = Source::new(std::path::Path::new("w.ron"), text);
    assert!(raw
        .validate(WindowFlags::default(), &src, &mut errors)
        .is_none());
    assert_eq!(
        errors,
        [
            format!("w.ron:1:11: invalid days `Sun-Fry`: `Fry` is not a day: expected {DAY_FORM}"),
            "w.ron:1:41: invalid skip date `12/25`: expected YYYY-MM-DD, e.g. 2026-12-25"
                .to_owned(),
        ]
    );
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

/// New York springs from 02:00 to 03:00 on 2026-03-08: a window starting at 02:30
/// opens at 03:00 that day, not at 02:30 the next (23.5 h late).
#[test]
fn a_window_starting_in_a_gap_opens_where_the_gap_ends() {
    let w = window("*", "02:30-05:00", "America/New_York");
    // 00:00 EST: two hours of real time before 03:00 EDT.
    let at = utc("2026-03-08T05:00:00Z");
    let open = w.next_open(at).unwrap();
    assert_eq!(w.zone.rfc3339(open), "2026-03-08T03:00:00-04:00");
    assert_eq!(open - at, Duration::hours(2));
    assert!(!w.contains(open - Duration::seconds(1)));
    // From the last second before the gap (01:59:59 EST) too.
    assert_eq!(w.next_open(utc("2026-03-08T06:59:59Z")), Some(open));
    // A day later the range's start exists again.
    assert_eq!(
        w.next_open(utc("2026-03-08T10:00:00Z"))
            .map(|t| w.zone.rfc3339(t)),
        Some("2026-03-09T02:30:00-04:00".to_owned())
    );
}

/// Lord Howe springs by half an hour, from 02:00 to 02:30, on 2026-10-04.
#[test]
fn a_half_hour_gap_ends_on_the_half_hour() {
    let w = window("*", "02:10-05:00", "Australia/Lord_Howe");
    let open = w.next_open(utc("2026-10-03T13:30:00Z")).unwrap();
    assert_eq!(w.zone.rfc3339(open), "2026-10-04T02:30:00+11:00");
}

/// Santiago springs from 00:00 to 01:00 on Sunday 2026-09-06: a Sunday starts at 01:00.
#[test]
fn a_day_whose_midnight_is_skipped_starts_where_the_gap_ends() {
    let w = window("Sun", "22:00-02:00", "America/Santiago");
    // Saturday 12:00; Saturday 22:00 is not Sunday.
    let open = w.next_open(utc("2026-09-05T16:00:00Z")).unwrap();
    assert_eq!(w.zone.rfc3339(open), "2026-09-06T01:00:00-03:00");
}

/// A start that happens twice (New York falls back from 02:00 to 01:00 on
/// 2026-11-01) opens the first time.
#[test]
fn a_window_starting_in_a_fold_opens_the_first_time() {
    let w = window("*", "01:30-05:00", "America/New_York");
    let open = w.next_open(utc("2026-11-01T04:00:00Z")).unwrap();
    assert_eq!(w.zone.rfc3339(open), "2026-11-01T01:30:00-04:00");
}

#[test]
fn a_skipped_time_is_reached_where_its_gap_ends() {
    let zone = |name| Zone::parse(name).unwrap();
    let local = |s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    let new_york = zone("America/New_York");
    assert_eq!(
        new_york.reached(local("2026-03-08 02:59")),
        Some(utc("2026-03-08T07:00:00Z"))
    );
    assert_eq!(
        new_york.reached(local("2026-03-08 01:59")),
        Some(utc("2026-03-08T06:59:00Z"))
    );
    // Samoa skipped all of 2011-12-30: its noon is reached at the 31st's midnight.
    assert_eq!(
        zone("Pacific/Apia")
            .reached(local("2011-12-30 12:00"))
            .map(|t| zone("Pacific/Apia").rfc3339(t)),
        Some("2011-12-31T00:00:00+14:00".to_owned())
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

#[test]
fn a_clock_time_is_whole_seconds_in_its_zone() {
    let at: DateTime<Utc> = "2026-12-06T02:03:04.987654Z".parse().unwrap();
    let tokyo = Zone::parse("Asia/Tokyo").unwrap();
    assert_eq!(tokyo.clock(at), "2026-12-06T11:03:04+09:00");
    let shown = ClockTime { at, zone: tokyo };
    assert_eq!(
        serde_json::to_string(&shown).unwrap(),
        "\"2026-12-06T11:03:04+09:00\""
    );
}
