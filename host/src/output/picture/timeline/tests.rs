use chrono::TimeZone as _;

use super::*;
use crate::domain::drill::{HaltedRecord, RefusedRecord};
use crate::storage::report::Verdict;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap()
}

fn row(h: u32, verdict: Verdict, result: &str, target: &str) -> Row {
    Row {
        id: format!("1-{h}"),
        at: at(h, 0),
        fault: "process-kill".to_owned(),
        trigger: "timer".to_owned(),
        target: target.to_owned(),
        result: result.to_owned(),
        ttd_ms: Some(120_000),
        detected_by: Some("alice".to_owned()),
        ttr_ms: Some(40_000),
        verdict,
        in_effect: false,
    }
}

fn utc() -> Zone {
    Zone::parse("UTC").unwrap()
}

/// A report with every verdict, a refusal and a halt.
fn mixed() -> Report {
    let mut report = Report::since(None);
    report.faults.extend([
        row(10, Verdict::Coped, "killed", "api-server(PID:101)"),
        row(11, Verdict::Late, "killed", "worker(PID:102)"),
        row(12, Verdict::NotRecovered, "paused", "db(PID:103)"),
        row(13, Verdict::Undetected, "killed", "cache(PID:104)"),
        row(14, Verdict::NotJudged, "dry-run", "sleep(PID:105)"),
        row(15, Verdict::NotJudged, "failed", ""),
    ]);
    report.refused.push_back(
        serde_json::from_value::<RefusedRecord>(serde_json::json!({
            "id": "1-9", "at": "2026-11-26T16:00:00Z", "fault": "process-kill",
            "trigger": "timer", "reason": "steady state not met: p: down"
        }))
        .unwrap(),
    );
    report.halts.push_back(
        serde_json::from_value::<HaltedRecord>(serde_json::json!({
            "at": "2026-11-26T16:30:00Z", "probe": "error_rate", "reason": "0.2 > 0.05"
        }))
        .unwrap(),
    );
    report
}

#[test]
fn each_fault_is_marked_with_its_verdict_and_its_bars() {
    let svg = timeline_svg(&mixed(), at(9, 0), at(18, 0), &utc());
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 "#));
    assert!(svg.ends_with("</svg>"));
    for needle in [
            r#"role="img""#,
            r#"width="100%""#,
            "aria-label=\"Timeline of 6 faults from 2026-11-26 09:00 to 2026-11-26 18:00 (UTC): 1 coped, 1 recovered late, 1 not recovered, 1 undetected, 2 not judged; 1 refusal, 1 halt\"",
            "<title>Timeline of 6 faults",
        ] {
            assert!(svg.contains(needle), "{needle} in {svg}");
        }
    // One mark of each kind, with its letter (the legend has one of each too).
    for (class, letter) in [
        ("nm-coped", 'C'),
        ("nm-late", 'L'),
        ("nm-notrec", 'N'),
        ("nm-undet", 'U'),
    ] {
        assert_eq!(svg.matches(&format!("nm-m {class}")).count(), 2, "{class}");
        assert!(svg.contains(&format!(">{letter}</text>")));
    }
    assert_eq!(svg.matches("nm-m nm-unjudged").count(), 3);
    assert!(svg.contains(">F</text>"));
    assert!(svg.contains("<title>2026-11-26 10:00:00 process-kill → api-server(PID:101): killed; detected after 2m by alice; recovered after 40s; coped</title>"));
    // Four judged faults and two not judged, each with both bars, and the legend's.
    assert_eq!(svg.matches(r#"<rect class="nm-ttd""#).count(), 7);
    assert_eq!(svg.matches(r#"<rect class="nm-ttr""#).count(), 7);
    assert!(svg.contains(">D 2m R 40s</text>"));
    assert!(svg.contains("refused process-kill (timer): steady state not met: p: down"));
    assert!(svg.contains("halted: error_rate: 0.2 &gt; 0.05"));
    assert_eq!(svg.matches(r#"class="nm-halt""#).count(), 1);
    // Ticks at round hours of the zone.
    assert!(svg.contains(">10:00</text>") && svg.contains(">Thu 26 Nov</text>"));
    for forbidden in ["<script", " id=", "href", "src=", "url("] {
        assert!(!svg.contains(forbidden), "{forbidden}");
    }
}

#[test]
fn hostile_names_are_escaped() {
    let mut report = Report::since(None);
    let mut evil = row(
        10,
        Verdict::Coped,
        "killed",
        "<script>alert(1)</script>(PID:6)",
    );
    evil.detected_by = Some("\x1b[31mmallory\"".to_owned());
    evil.fault = "a&b".to_owned();
    report.faults.push_back(evil);
    let svg = timeline_svg(&report, at(9, 0), at(12, 0), &utc());
    assert!(!svg.contains("<script"));
    assert!(!svg.contains('\x1b'));
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;(PID:6)"));
    assert!(svg.contains("by \\u{1b}[31mmallory&quot;"));
    assert!(svg.contains("a&amp;b"));
}

#[test]
fn an_empty_period_says_there_was_no_fault() {
    let svg = timeline_svg(&Report::since(None), at(9, 0), at(9, 0), &utc());
    assert!(svg.contains(">No faults from 2026-11-26 09:00 to 2026-11-26 10:00 (UTC)</text>"));
    assert!(svg.contains("aria-label=\"Timeline of 0 faults"));
    assert_eq!(svg.matches("nm-m nm-coped").count(), 1, "the legend's only");
    // Faults out of range are not drawn.
    let svg = timeline_svg(&mixed(), at(0, 0), at(1, 0), &utc());
    assert!(svg.contains(">No faults from"));
}

#[test]
fn beyond_the_cap_faults_are_thinned_and_it_says_so() {
    let mut report = Report::since(None);
    for i in 0..5_000 {
        let mut r = row(10, Verdict::Coped, "killed", "x(PID:1)");
        r.at = at(0, 0) + Duration::seconds(i * 10);
        report.faults.push_back(r);
    }
    let svg = timeline_svg(&report, at(0, 0), at(18, 0), &utc());
    assert!(
        svg.contains("thinned: every 3rd fault drawn (1,667 of 5,000)"),
        "{}",
        &svg[..2000]
    );
    // The legend's coped mark, and the drawn ones.
    assert_eq!(svg.matches("nm-m nm-coped").count(), 1_668);
    // A few elements a fault: no letters or notes at this size.
    assert!(svg.len() < 1_667 * 400, "{} bytes", svg.len());
}

#[test]
fn ticks_are_round_in_the_zone() {
    let tokyo = Zone::parse("Asia/Tokyo").unwrap();
    let t = ticks(at(0, 10), at(9, 0), &tokyo);
    // Hourly labels at round Tokyo hours: 09:10 JST is the start.
    assert_eq!(t[0].1, "10:00");
    assert_eq!(t[0].0, at(1, 0));
    assert_eq!(t[0].2.as_deref(), Some("Thu 26 Nov"));
    let kolkata = Zone::parse("Asia/Kolkata").unwrap();
    let t = ticks(at(0, 0), at(9, 0), &kolkata);
    assert_eq!((t[0].0, t[0].1.as_str()), (at(0, 30), "06:00"));
    // A week: daily ticks, the month once.
    let t = ticks(at(0, 0), at(0, 0) + Duration::days(7), &utc());
    assert_eq!(t.len(), 7);
    assert_eq!(t[0].1, "Thu 26");
    assert_eq!(t[0].2.as_deref(), Some("Nov 2026"));
    assert_eq!(t[5].2.as_deref(), Some("Dec 2026"));
    assert!(t[1].2.is_none());
}
