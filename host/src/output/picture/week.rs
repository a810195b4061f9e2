//! The answer key as a picture (`plan --format svg|html`): a week grid per node and
//! week, 7 day columns from Monday and 24 hour rows in the window's zone (wall clock),
//! the window's hours shaded, every fire time a numbered dot with its time as a tooltip.
//! Several nodes stand side by side, at the same scale; several weeks one under another.

use std::{collections::BTreeSet, fmt::Write as _};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

use super::{
    count, escape_html,
    page::{html_page, table},
    svg_open,
};
use crate::domain::window::{Window, Zone};

/// The most weeks drawn (a plan of thousands of fires); the list under the page's
/// picture still has every fire.
const MAX_WEEKS: usize = 12;
/// The most dots drawn, over every grid.
const MAX_MARKS: usize = 5_000;
/// Up to this many dots in a grid carry their number.
const MAX_NUMBERED: usize = 60;
const LABEL_W: f64 = 26.0;
const COL: f64 = 36.0;
const ROW: f64 = 12.0;
const HEAD: f64 = 40.0;
const GRID_W: f64 = LABEL_W + 7.0 * COL;
const GRID_H: f64 = HEAD + 24.0 * ROW;
const GAP_X: f64 = 28.0;
const GAP_Y: f64 = 24.0;
const MARGIN: f64 = 12.0;
const TOP: f64 = 44.0;

const STYLE: &str = ".nm-open{fill:#cfe8f7}.nm-skip{fill:#eee}\
.nm-grid{stroke:#bbb;stroke-width:.5;fill:none}\
.nm-fire{fill:#d55e00;stroke:#222;stroke-width:.75}.nm-before{fill:#fff;opacity:.7}\
.nm-svg .nm-end{text-anchor:end}.nm-svg .nm-mid{text-anchor:middle}";

/// One node's fire times.
pub struct NodePlan {
    /// Its name (`--node`), none for an unlabelled stream.
    pub node: Option<String>,
    pub times: Vec<DateTime<Utc>>,
}

/// What the grid shows.
pub struct PlanPicture<'a> {
    /// The timer's fault.
    pub fault: &'a str,
    pub seed: u64,
    pub window: &'a Window,
    /// Where the plan starts (`--from`).
    pub from: DateTime<Utc>,
    pub nodes: &'a [NodePlan],
}

/// Where an instant falls on the grid: the Monday of its week, its day (0 = Monday)
/// and its minute of the day, all in `zone`'s wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell {
    pub week: NaiveDate,
    pub day: u32,
    pub minute: u32,
}

pub(crate) fn place(zone: &Zone, at: DateTime<Utc>) -> Cell {
    let local = zone.naive(at);
    let day = local.weekday().num_days_from_monday();
    Cell {
        week: local.date() - Duration::days(i64::from(day)),
        day,
        minute: local.hour() * 60 + local.minute(),
    }
}

/// The grids as one `<svg>` element (standalone, or embedded in the page).
pub fn week_svg(p: &PlanPicture<'_>) -> String {
    let zone = &p.window.zone;
    let all_weeks: BTreeSet<NaiveDate> = p
        .nodes
        .iter()
        .flat_map(|n| n.times.iter().map(|t| place(zone, *t).week))
        .collect();
    let weeks: Vec<NaiveDate> = all_weeks.iter().copied().take(MAX_WEEKS).collect();
    let fires: usize = p.nodes.iter().map(|n| n.times.len()).sum();
    let columns = p.nodes.len().max(1) as f64;
    let width = (2.0 * MARGIN + columns * GRID_W + (columns - 1.0) * GAP_X).max(700.0);
    let rows = weeks.len().max(1) as f64;
    let legend_y = TOP + rows * (GRID_H + GAP_Y) + 4.0;
    let height = legend_y + 24.0;

    let label = label(p, fires, &weeks);
    let mut out = svg_open(width, height, &label, STYLE);
    let _ = write!(
        out,
        r#"<text class="nm-h" x="{MARGIN}" y="18">{}: {} fire time{}, seed {}</text><text x="{MARGIN}" y="34">window: {} {}; times in {} (wall clock)</text>"#,
        escape_html(p.fault),
        count(fires),
        if fires == 1 { "" } else { "s" },
        p.seed,
        p.window.days,
        p.window.time,
        escape_html(&zone.name())
    );
    if all_weeks.len() > weeks.len() {
        let _ = write!(
            out,
            r#"<text class="nm-end" x="{}" y="34">the first {} weeks of {} drawn</text>"#,
            width - MARGIN,
            weeks.len(),
            all_weeks.len()
        );
    }
    let marks = draw_fires(&mut out, p, &weeks);
    if marks < fires && all_weeks.len() == weeks.len() {
        let _ = write!(
            out,
            r#"<text class="nm-end" x="{}" y="34">the first {} fire times drawn</text>"#,
            width - MARGIN,
            count(marks)
        );
    }
    if fires == 0 {
        let _ = write!(
            out,
            r#"<text class="nm-h" x="{MARGIN}" y="{}">No fire time in the window</text>"#,
            TOP + HEAD + 20.0
        );
    }
    legend(&mut out, legend_y);
    out.push_str("</svg>");
    out
}

/// What a screen reader says of the picture.
fn label(p: &PlanPicture<'_>, fires: usize, weeks: &[NaiveDate]) -> String {
    let zone = &p.window.zone;
    let names: Vec<String> = p.nodes.iter().filter_map(|n| n.node.clone()).collect();
    format!(
        "Week grid of {} fire time{} of {}{} in {}{}",
        count(fires),
        if fires == 1 { "" } else { "s" },
        p.fault,
        if names.is_empty() {
            String::new()
        } else {
            format!(
                ", node{} {}",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            )
        },
        zone.name(),
        match (weeks.first(), weeks.last()) {
            (Some(a), Some(b)) if a == b => format!(", week of {a}"),
            (Some(a), Some(b)) => format!(", weeks of {a} to {b}"),
            _ => String::new(),
        }
    )
}

/// Each node's grids, a week each, with its fire times (at most [`MAX_MARKS`] in all,
/// numbered where a week holds few); how many were drawn.
fn draw_fires(out: &mut String, p: &PlanPicture<'_>, weeks: &[NaiveDate]) -> usize {
    let zone = &p.window.zone;
    let mut marks = 0;
    for (i, plan) in p.nodes.iter().enumerate() {
        let gx = MARGIN + i as f64 * (GRID_W + GAP_X);
        for (j, week) in weeks.iter().enumerate() {
            let gy = TOP + j as f64 * (GRID_H + GAP_Y);
            grid(out, p.window, p.from, plan.node.as_deref(), *week, (gx, gy));
            let here: Vec<(usize, Cell, DateTime<Utc>)> = plan
                .times
                .iter()
                .enumerate()
                .map(|(k, t)| (k, place(zone, *t), *t))
                .filter(|(_, c, _)| c.week == *week)
                .collect();
            let numbered = here.len() <= MAX_NUMBERED;
            for (k, cell, at) in here {
                if marks == MAX_MARKS {
                    break;
                }
                marks += 1;
                let (cx, cy) = spot(cell, gx, gy);
                let _ = write!(
                    out,
                    r#"<circle class="nm-fire" cx="{cx:.1}" cy="{cy:.1}" r="3.5"><title>{}#{}: {} {}</title></circle>"#,
                    plan.node
                        .as_deref()
                        .map(|n| format!("{} ", escape_html(n)))
                        .unwrap_or_default(),
                    k + 1,
                    zone.naive(at).format("%a"),
                    zone.rfc3339(at)
                );
                if numbered {
                    let _ = write!(
                        out,
                        r#"<text class="nm-small" x="{:.1}" y="{:.1}">{}</text>"#,
                        cx + 5.0,
                        cy + 3.0,
                        k + 1
                    );
                }
            }
        }
    }
    marks
}

/// The legend, at `y`.
fn legend(out: &mut String, y: f64) {
    let _ = write!(
        out,
        r#"<rect class="nm-open" x="{MARGIN}" y="{:.1}" width="14" height="10"/><text x="{}" y="{:.1}">window open</text><circle class="nm-fire" cx="{}" cy="{:.1}" r="3.5"/><text x="{}" y="{:.1}">fire time: its number in the list (hover for its time)</text><rect class="nm-skip" x="{}" y="{:.1}" width="14" height="10"/><text x="{}" y="{:.1}">skipped date</text><rect class="nm-grid" x="{}" y="{:.1}" width="14" height="10"/><text x="{}" y="{:.1}">before --from (faded)</text>"#,
        y - 8.0,
        MARGIN + 20.0,
        y + 1.0,
        MARGIN + 110.0,
        y - 3.0,
        MARGIN + 118.0,
        y + 1.0,
        MARGIN + 430.0,
        y - 8.0,
        MARGIN + 450.0,
        y + 1.0,
        MARGIN + 530.0,
        y - 8.0,
        MARGIN + 550.0,
        y + 1.0
    );
}

/// The centre of a fire's dot: its day's column, its minute down the day.
fn spot(cell: Cell, gx: f64, gy: f64) -> (f64, f64) {
    (
        gx + LABEL_W + (f64::from(cell.day) + 0.5) * COL,
        gy + HEAD + f64::from(cell.minute) / 60.0 * ROW,
    )
}

/// One week's empty grid at (`gx`, `gy`): the node and the week, the days, the window's
/// hours shaded (and skipped dates), what comes before `from` veiled, the hour lines.
fn grid(
    out: &mut String,
    window: &Window,
    from: DateTime<Utc>,
    node: Option<&str>,
    week: NaiveDate,
    (gx, gy): (f64, f64),
) {
    let _ = write!(
        out,
        r#"<text class="nm-h" x="{gx}" y="{}">{}week of {} (W{:02})</text>"#,
        gy + 12.0,
        node.map(|n| format!("{} · ", escape_html(n)))
            .unwrap_or_default(),
        week.format("%Y-%m-%d"),
        week.iso_week().week()
    );
    let x0 = gx + LABEL_W;
    let top = gy + HEAD;
    for d in 0..7u32 {
        let date = week + Duration::days(i64::from(d));
        let cx = x0 + f64::from(d) * COL;
        let _ = write!(
            out,
            r#"<text class="nm-mid" x="{:.1}" y="{}">{}<tspan class="nm-small"> {}</tspan></text>"#,
            cx + COL / 2.0,
            gy + 34.0,
            date.format("%a"),
            date.format("%d")
        );
        if window.skip.contains(&date) {
            let _ = write!(
                out,
                r#"<rect class="nm-skip" x="{cx:.1}" y="{top}" width="{COL}" height="{}"><title>{} skipped</title></rect>"#,
                24.0 * ROW,
                date
            );
            continue;
        }
        if !window.days.allows(date.weekday().num_days_from_sunday()) {
            continue;
        }
        // The open minutes of the day, as runs: one rectangle each.
        let mut start = None;
        for m in 0..=1440u32 {
            let open = m < 1440 && window.time.contains(m);
            match (open, start) {
                (true, None) => start = Some(m),
                (false, Some(s)) => {
                    let _ = write!(
                        out,
                        r#"<rect class="nm-open" x="{cx:.1}" y="{:.1}" width="{COL}" height="{:.1}"/>"#,
                        top + f64::from(s) / 60.0 * ROW,
                        f64::from(m - s) / 60.0 * ROW
                    );
                    start = None;
                }
                _ => {}
            }
        }
    }
    // What comes before the plan starts is veiled.
    let start = place(&window.zone, from);
    if start.week == week {
        let veil = |out: &mut String, d: u32, minutes: u32| {
            let _ = write!(
                out,
                r#"<rect class="nm-before" x="{:.1}" y="{top}" width="{COL}" height="{:.1}"/>"#,
                x0 + f64::from(d) * COL,
                f64::from(minutes) / 60.0 * ROW
            );
        };
        for d in 0..start.day {
            veil(out, d, 1440);
        }
        if start.minute > 0 {
            veil(out, start.day, start.minute);
        }
    }
    let mut lines = String::new();
    for h in 0..=24 {
        let _ = write!(lines, "M{x0} {}h{}", top + f64::from(h) * ROW, 7.0 * COL);
    }
    for d in 0..=7 {
        let _ = write!(lines, "M{} {top}v{}", x0 + f64::from(d) * COL, 24.0 * ROW);
    }
    let _ = write!(out, r#"<path class="nm-grid" d="{lines}"/>"#);
    for h in (0..24).step_by(3) {
        let _ = write!(
            out,
            r#"<text class="nm-end nm-small" x="{}" y="{:.1}">{h:02}:00</text>"#,
            x0 - 3.0,
            top + f64::from(h) * ROW + 4.0
        );
    }
}

/// The plan as one self-contained page: the grids, and every fire time listed.
pub fn plan_html(p: &PlanPicture<'_>) -> String {
    let zone = &p.window.zone;
    let mut body = format!(
        "<h1>Plan: {}</h1>\n<p class=\"nm-meta\">Seed {} · window {} {} · times in {}</p>\n<figure>{}</figure>\n",
        escape_html(p.fault),
        p.seed,
        p.window.days,
        p.window.time,
        escape_html(&zone.name()),
        week_svg(p)
    );
    for plan in p.nodes {
        let _ = writeln!(
            body,
            "<h2>{}</h2>",
            match &plan.node {
                Some(n) => format!("Node {}", escape_html(n)),
                None => "Fire times".to_owned(),
            }
        );
        table(
            &mut body,
            &["#", "Fires at", "Day", "Fault"],
            plan.times.iter().enumerate().map(|(k, at)| {
                vec![
                    ("nm-n", (k + 1).to_string()),
                    ("nm-t", zone.rfc3339(*at)),
                    ("", zone.naive(*at).format("%a").to_string()),
                    ("", escape_html(p.fault).into_owned()),
                ]
            }),
        );
    }
    html_page(&format!("Plan: {}, seed {}", p.fault, p.seed), "", &body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone as _;

    use super::*;
    use crate::domain::window::{Days, TimeRange};

    fn window(zone: &str) -> Window {
        Window {
            days: Days::parse("1-5").unwrap(),
            time: TimeRange::parse("11:00-18:00").unwrap(),
            zone: Zone::parse(zone).unwrap(),
            skip: BTreeSet::new(),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// The grid of one unnamed node's `times`, planned from Monday 2026-11-23.
    fn drawn(w: &Window, times: Vec<DateTime<Utc>>) -> String {
        week_svg(&PlanPicture {
            fault: "process-kill",
            seed: 1,
            window: w,
            from: utc(2026, 11, 23, 0, 0),
            nodes: &[NodePlan { node: None, times }],
        })
    }

    #[test]
    fn a_fire_time_lands_on_its_wall_clock_day_and_hour() {
        for (zone, at, week, day, minute, why) in [
            (
                "Europe/Berlin",
                utc(2026, 1, 15, 12, 0),
                date(2026, 1, 12),
                3,
                13 * 60,
                "winter, UTC+1: Thursday 13:00",
            ),
            (
                "Europe/Berlin",
                utc(2026, 3, 29, 1, 30),
                date(2026, 3, 23),
                6,
                3 * 60 + 30,
                "the clocks go forward (02:00 -> 03:00): Sunday 03:30 summer time",
            ),
            (
                "Europe/Berlin",
                utc(2026, 10, 25, 1, 30),
                date(2026, 10, 19),
                6,
                2 * 60 + 30,
                "the clocks go back (03:00 -> 02:00): the second Sunday 02:30",
            ),
            (
                "Asia/Tokyo",
                utc(2026, 11, 29, 20, 0),
                date(2026, 11, 30),
                0,
                5 * 60,
                "late on Sunday in UTC is Monday in Tokyo: the next week",
            ),
        ] {
            assert_eq!(
                place(&Zone::parse(zone).unwrap(), at),
                Cell { week, day, minute },
                "{why}"
            );
        }
        // And the dot is drawn there: Monday's column, 05:00 down.
        let w = window("Asia/Tokyo");
        let fire = utc(2026, 11, 29, 20, 0);
        let svg = drawn(&w, vec![fire]);
        let (cx, cy) = spot(place(&w.zone, fire), MARGIN, TOP);
        assert_eq!(
            (cx, cy),
            (MARGIN + LABEL_W + COL / 2.0, TOP + HEAD + 5.0 * ROW)
        );
        assert!(
            svg.contains(&format!(r#"<circle class="nm-fire" cx="{cx:.1}" cy="{cy:.1}" r="3.5"><title>#1: Mon 2026-11-30T05:00:00+09:00</title></circle>"#)),
            "{svg}"
        );
        assert!(svg.contains("week of 2026-11-30 (W49)"));
        assert!(svg.contains("times in Asia/Tokyo (wall clock)"));
    }

    #[test]
    fn the_window_is_shaded_on_its_days_only() {
        let mut w = window("Europe/Berlin");
        w.skip.insert(date(2026, 12, 2));
        let svg = drawn(&w, vec![utc(2026, 12, 1, 12, 0)]);
        // Mon, Tue, Thu, Fri: 11:00 to 18:00, seven rows; Wed is skipped; not the weekend.
        let open = format!(
            r#"y="{:.1}" width="{COL}" height="{:.1}"/>"#,
            TOP + HEAD + 11.0 * ROW,
            7.0 * ROW
        );
        assert_eq!(svg.matches(&open).count(), 4, "{svg}");
        assert_eq!(svg.matches(r#"<rect class="nm-skip""#).count(), 2); // and the legend's
        assert!(svg.contains("<title>2026-12-02 skipped</title>"));
        assert!(svg.contains("window: Mon thru Fri from 11:00 to 18:00"));
    }

    #[test]
    fn nodes_stand_side_by_side_at_the_same_scale() {
        let w = window("UTC");
        let nodes = [
            NodePlan {
                node: Some("web-1".to_owned()),
                times: vec![utc(2026, 12, 1, 12, 0)],
            },
            NodePlan {
                node: Some("<web-2>".to_owned()),
                times: vec![utc(2026, 12, 1, 15, 0), utc(2026, 12, 9, 11, 0)],
            },
        ];
        let p = PlanPicture {
            fault: "process-kill",
            seed: 42,
            window: &w,
            from: utc(2026, 12, 1, 11, 0),
            nodes: &nodes,
        };
        let svg = week_svg(&p);
        // Two weeks (the second node's second fire is a week later), two nodes: four grids.
        assert_eq!(svg.matches("week of ").count(), 4);
        assert!(svg.contains(">web-1 · week of 2026-11-30 (W49)</text>"));
        assert!(svg.contains(&format!(
            r#"x="{}" y="{}">&lt;web-2&gt; · week of 2026-12-07 (W50)</text>"#,
            MARGIN + GRID_W + GAP_X,
            TOP + GRID_H + GAP_Y + 12.0
        )));
        // Three fires, and the legend's dot.
        assert_eq!(svg.matches(r#"<circle class="nm-fire" cx"#).count(), 4);
        assert!(svg.contains("<title>web-1 #1: Tue 2026-12-01T12:00:00+00:00</title>"));
        assert!(svg.contains("<title>&lt;web-2&gt; #2: Wed 2026-12-09T11:00:00+00:00</title>"));
        assert!(svg.contains("aria-label=\"Week grid of 3 fire times of process-kill, nodes web-1, &lt;web-2&gt; in UTC, weeks of 2026-11-30 to 2026-12-07\""));
        let html = plan_html(&p);
        assert!(html.contains("<h2>Node &lt;web-2&gt;</h2>"));
        assert!(html.contains("<td class=\"nm-t\">2026-12-09T11:00:00+00:00</td><td>Wed</td>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn no_fire_time_is_said() {
        let svg = drawn(&window("UTC"), vec![]);
        assert!(svg.contains(">No fire time in the window</text>"));
        assert!(svg.ends_with("</svg>"));
    }
}
