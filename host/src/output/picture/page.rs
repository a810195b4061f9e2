//! Self-contained HTML pages: the shell every page shares (inline style that prints:
//! white paper, no dark background, tables that break between rows) and the drill
//! report's page (`report --format html`).

use std::fmt::Write as _;

use chrono::{DateTime, Duration, DurationRound as _, Utc};

use super::{count, escape_html, local, timeline::timeline_svg, Mark};
use crate::domain::{drill::human_ms, window::Zone};
use crate::storage::report::{Report, Spread, Summary};

const PAGE_STYLE: &str = ":root{color-scheme:light}\
body{font:14px/1.45 system-ui,sans-serif;color:#111;background:#fff;margin:0 auto;max-width:1100px;padding:16px 24px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #bbb}\
.nm-meta{color:#333;margin:0 0 12px}\
table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#f2f2f2}td.nm-t{white-space:nowrap;font-variant-numeric:tabular-nums}td.nm-n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.nm-sum{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:8px;margin:0;padding:0;list-style:none}\
.nm-sum li{border:1px solid #bbb;border-radius:4px;padding:6px 8px}.nm-sum b{display:block;font-size:19px}\
.nm-v{display:inline-block;min-width:1.3em;text-align:center;font-weight:bold;border:1px solid #222;border-radius:3px;margin-right:4px}\
.nm-v.nm-coped{background:#009e73;color:#fff}.nm-v.nm-late{background:#e69f00}\
.nm-v.nm-notrec{background:#d55e00;color:#fff}.nm-v.nm-undet{background:#cc79a7}\
.nm-v.nm-unjudged{background:#fff}\
figure{margin:8px 0}figcaption{color:#333;font-size:12px}.nm-note{color:#333;font-size:12px}\
@media print{body{max-width:none;padding:0;font-size:11px}h2{break-after:avoid}\
figure,.nm-sum li,tr{break-inside:avoid}thead{display:table-header-group}\
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}@page{margin:12mm}}";

/// A whole HTML page around `body`, titled `title` (escaped here), with the shared style
/// and `style` after it: one file, nothing fetched, no script.
pub(crate) fn html_page(title: &str, style: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{PAGE_STYLE}{style}</style>\n</head>\n<body>\n{body}\n<p class=\"nm-note\">Made by nightmare-monkey {}: one file, no script, nothing fetched; it prints as it shows.</p>\n</body>\n</html>\n",
        escape_html(title),
        env!("CARGO_PKG_VERSION")
    )
}

/// A table: its header, then a row per item, each cell `(class, html)`; a cell's html is
/// escaped by the caller (a verdict's cell holds its badge).
pub(crate) fn table<'a>(
    out: &mut String,
    headers: &[&str],
    rows: impl IntoIterator<Item = Vec<(&'a str, String)>>,
) {
    out.push_str("<table>\n<thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (class, html) in row {
            match class {
                "" => {
                    let _ = write!(out, "<td>{html}</td>");
                }
                class => {
                    let _ = write!(out, "<td class=\"{class}\">{html}</td>");
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// What the report's page says around the figures.
pub struct ReportPage<'a> {
    pub report: &'a Report,
    /// The report's period: since when, and until (when it was made).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The zone times are shown in.
    pub zone: &'a Zone,
    /// The host the report was made on, when the journal names no node.
    pub host: Option<&'a str>,
}

/// The span the timeline draws: from the hour of the first fault, refusal or halt to
/// the hour after the last one ended (its times to detect and recover included), so a
/// two-hour drill in a week's report is not a dot; the whole period when there is
/// nothing to draw.
pub(crate) fn drill_span(
    report: &Report,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let faults = report.faults.iter().flat_map(|r| {
        let last = r.ttd_ms.max(r.ttr_ms).unwrap_or(0);
        [
            r.at,
            r.at + Duration::milliseconds(i64::try_from(last).unwrap_or(i64::MAX / 2)),
        ]
    });
    let others = report
        .refused
        .iter()
        .map(|r| r.at)
        .chain(report.halts.iter().map(|h| h.at));
    let (Some(first), Some(last)) = (
        faults.clone().chain(others.clone()).min(),
        faults.chain(others).max(),
    ) else {
        return (since, until.max(since + Duration::hours(1)));
    };
    let hour = Duration::hours(1);
    let from = first.duration_trunc(hour).unwrap_or(first);
    let to = last.duration_trunc(hour).unwrap_or(last) + hour;
    (from, to)
}

/// The drill report as one self-contained page: the title and period, the sums, the
/// timeline, every fault, refusal and halt.
pub fn report_html(page: &ReportPage<'_>) -> String {
    let ReportPage {
        report: r,
        since,
        until,
        zone,
        ..
    } = *page;
    let when = |t: DateTime<Utc>| local(zone, t, "%Y-%m-%d %H:%M:%S");
    let mut body = String::new();
    heading(&mut body, page);
    summary(&mut body, &r.summary);
    let (from, to) = drill_span(r, since, until);
    let _ = write!(
        body,
        "<h2>Timeline</h2>\n<figure>{}<figcaption>Each fault at its time, marked by its verdict (colour, shape and letter); after it, its time to detect (the bar above the line) and to recover (below). Hover a mark for the details. Times in {}.</figcaption></figure>\n",
        timeline_svg(r, from, to, zone),
        escape_html(&zone.name())
    );

    faults(&mut body, r, &when);
    refusals_and_halts(&mut body, r, &when);
    html_page(
        &format!("Drill report, {} to {}", when(since), when(until)),
        "",
        &body,
    )
}

/// The report's title and what it covers: how many faults, when, where, which seeds.
fn heading(body: &mut String, page: &ReportPage<'_>) {
    let ReportPage {
        report: r,
        since,
        until,
        zone,
        host,
    } = *page;
    let s = &r.summary;
    let when = |t: DateTime<Utc>| local(zone, t, "%Y-%m-%d %H:%M:%S");
    let _ = write!(
        body,
        "<h1>Drill report</h1>\n<p class=\"nm-meta\">{} fault{} from {} to {} ({})",
        count(s.faults),
        if s.faults == 1 { "" } else { "s" },
        when(since),
        when(until),
        escape_html(&zone.name())
    );
    let nodes: Vec<&str> = r.nodes.iter().map(String::as_str).collect();
    match (nodes.is_empty(), host) {
        (false, _) => {
            let _ = write!(
                body,
                " · node{} {}",
                if nodes.len() == 1 { "" } else { "s" },
                escape_html(&nodes.join(", "))
            );
        }
        (true, Some(host)) => {
            let _ = write!(body, " · host {}", escape_html(host));
        }
        (true, None) => {}
    }
    if !r.seeds.is_empty() {
        let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
        let _ = write!(
            body,
            " · seed{} {}",
            if seeds.len() == 1 { "" } else { "s" },
            seeds.join(", ")
        );
    }
    body.push_str("</p>\n");
}

/// The summary's figures.
fn summary(body: &mut String, s: &Summary) {
    body.push_str("<h2>Summary</h2>\n<ul class=\"nm-sum\">\n");
    let spread = |sp: &Spread| match (sp.median_ms, sp.p90_ms) {
        (Some(m), Some(p)) => format!(
            "{} / {}</b>median / p90 of {} fault{}",
            human_ms(m),
            human_ms(p),
            count(sp.count),
            if sp.count == 1 { "" } else { "s" }
        ),
        _ => "-</b>none measured".to_owned(),
    };
    let items = [
        (
            "Resilience".to_owned(),
            match s.resilience_percent {
                Some(p) => format!("{p}%</b>of the judged faults coped with"),
                None => "-</b>no fault to judge".to_owned(),
            },
        ),
        (
            "Faults".to_owned(),
            format!(
                "{}</b>{} real, {} dry run{}, {} failed",
                count(s.faults),
                count(s.real),
                count(s.dry_runs),
                if s.dry_runs == 1 { "" } else { "s" },
                count(s.failed)
            ),
        ),
        (
            "Detected / undetected".to_owned(),
            format!(
                "{} / {}</b>of the real faults",
                count(s.detected),
                count(s.undetected)
            ),
        ),
        (
            "Recovered / late / not recovered".to_owned(),
            format!(
                "{} / {} / {}</b>recovered in time, late, not at all",
                count(s.recovered),
                count(s.recovered_late),
                count(s.not_recovered)
            ),
        ),
        ("Time to detect".to_owned(), spread(&s.ttd)),
        ("Time to recover".to_owned(), spread(&s.ttr)),
        (
            "Refusals / halts".to_owned(),
            format!(
                "{} / {}</b>steady state not met; halt probes failing",
                count(s.steady_state_refusals),
                count(s.halts)
            ),
        ),
    ];
    for (name, value) in items {
        let _ = writeln!(body, "<li>{name}<b>{value}</li>");
    }
    body.push_str("</ul>\n");
}

/// The table of the faults, each with its verdict.
fn faults(body: &mut String, r: &Report, when: &dyn Fn(DateTime<Utc>) -> String) {
    body.push_str("<h2>Faults</h2>\n");
    if r.faults_not_listed > 0 {
        let _ = writeln!(
            body,
            "<p class=\"nm-note\">The {} oldest are not listed (they are counted in the summary).</p>",
            count(r.faults_not_listed)
        );
    }
    if r.faults.is_empty() {
        body.push_str("<p>No faults in this period.</p>\n");
    } else {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), human_ms);
        table(
            body,
            &[
                "When",
                "Fault",
                "Target",
                "Trigger",
                "Result",
                "Time to detect",
                "By",
                "Time to recover",
                "Verdict",
            ],
            r.faults.iter().map(|f| {
                let mark = Mark::of(f);
                vec![
                    ("nm-t", when(f.at)),
                    ("", escape_html(&f.fault).into_owned()),
                    (
                        "",
                        escape_html(if f.target.is_empty() { "-" } else { &f.target }).into_owned(),
                    ),
                    ("", escape_html(&f.trigger).into_owned()),
                    ("", escape_html(&f.shown_result()).into_owned()),
                    ("nm-n", ms(f.ttd_ms)),
                    (
                        "",
                        escape_html(f.detected_by.as_deref().unwrap_or("-")).into_owned(),
                    ),
                    ("nm-n", ms(f.ttr_ms)),
                    (
                        "",
                        format!(
                            "<span class=\"nm-v {}\">{}</span>{}",
                            mark.class(),
                            mark.letter(),
                            mark.words()
                        ),
                    ),
                ]
            }),
        );
    }
}

/// The faults refused for their steady state, and the halts.
fn refusals_and_halts(body: &mut String, r: &Report, when: &dyn Fn(DateTime<Utc>) -> String) {
    if !r.refused.is_empty() {
        body.push_str("<h2>Refused: steady state not met</h2>\n");
        table(
            body,
            &["When", "Fault", "Trigger", "Why"],
            r.refused.iter().map(|x| {
                vec![
                    ("nm-t", when(x.at)),
                    ("", escape_html(&x.fault).into_owned()),
                    ("", escape_html(&x.trigger).into_owned()),
                    ("", escape_html(&x.reason).into_owned()),
                ]
            }),
        );
    }
    if !r.halts.is_empty() {
        body.push_str("<h2>Halts</h2>\n");
        table(
            body,
            &["When", "Probe", "Why"],
            r.halts.iter().map(|h| {
                vec![
                    ("nm-t", when(h.at)),
                    ("", escape_html(&h.probe).into_owned()),
                    ("", escape_html(&h.reason).into_owned()),
                ]
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::storage::report::{Row, Verdict};

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap()
    }

    fn row(at: DateTime<Utc>, target: &str, by: &str) -> Row {
        Row {
            id: "1-1".to_owned(),
            at,
            fault: "process-kill".to_owned(),
            trigger: "timer".to_owned(),
            target: target.to_owned(),
            result: "killed".to_owned(),
            ttd_ms: Some(600_000),
            detected_by: Some(by.to_owned()),
            ttr_ms: None,
            verdict: Verdict::Coped,
            in_effect: false,
        }
    }

    #[test]
    fn the_page_escapes_what_processes_named_themselves() {
        let mut report = Report::since(None);
        report.faults.push_back(row(
            at(10, 0),
            "<script>alert(1)</script>(PID:7)",
            "\x1b[31mmallory",
        ));
        report.summary.faults = 1;
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let html = report_html(&ReportPage {
            report: &report,
            since: at(0, 0),
            until: at(20, 0),
            zone: &zone,
            host: Some("<b>host</b>"),
        });
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains('\x1b'));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;(PID:7)"));
        assert!(html.contains("\\u{1b}[31mmallory"));
        assert!(html.contains("host &lt;b&gt;host&lt;/b&gt;"));
        // In Berlin's time: 10:00 UTC is 11:00 CET.
        assert!(html.contains("<td class=\"nm-t\">2026-11-26 11:00:00</td>"));
        assert!(html.contains("<span class=\"nm-v nm-coped\">C</span>coped"));
        assert!(html.contains("@media print"));
        for forbidden in ["src=", "href", "url(", "@import", "<link"] {
            assert!(!html.contains(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn an_empty_report_is_a_clear_page() {
        let zone = Zone::parse("UTC").unwrap();
        let html = report_html(&ReportPage {
            report: &Report::since(None).finish(),
            since: at(0, 0),
            until: at(20, 0),
            zone: &zone,
            host: None,
        });
        assert!(html.contains("0 faults from 2026-11-26 00:00:00 to 2026-11-26 20:00:00 (UTC)"));
        assert!(html.contains(">No faults from 2026-11-26 00:00 to 2026-11-26 20:00 (UTC)</text>"));
        assert!(html.contains("<p>No faults in this period.</p>"));
        assert!(html.contains("<li>Resilience<b>-</b>no fault to judge</li>"));
    }

    #[test]
    fn the_timeline_spans_the_drill_not_the_whole_week() {
        let mut report = Report::since(None);
        report.faults.push_back(row(at(10, 20), "a(PID:1)", "x"));
        report.faults.push_back(row(at(13, 55), "b(PID:2)", "x"));
        let week_ago = at(0, 0) - Duration::days(7);
        // The last fault's ten minutes to detect end at 14:05: up to 15:00.
        assert_eq!(
            drill_span(&report, week_ago, at(20, 0)),
            (at(10, 0), at(15, 0))
        );
        assert_eq!(
            drill_span(&Report::since(None), week_ago, at(20, 0)),
            (week_ago, at(20, 0))
        );
    }
}
