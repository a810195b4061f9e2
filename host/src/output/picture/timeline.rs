//! The drill as a timeline: each fault a mark at its time (its verdict's colour, shape
//! and letter), its time to detect and to recover as bars after it, refusals and halts
//! marked, the axis in the window's zone. Used by `report --format html` and by the
//! daemon's dashboard ([`timeline_svg`]).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};

use super::{count, escape_html, local, svg_open, Mark};
use crate::domain::{drill::human_ms, window::Zone};
use crate::storage::{
    journal::{HaltedRecord, RefusedRecord},
    report::{Report, Row},
};

/// The most faults drawn; beyond, every n-th is drawn, and the picture says so.
pub(crate) const MAX_DRAWN: usize = 2_000;
/// Up to this many drawn faults carry their letter inside their mark.
const MAX_LETTERED: usize = 300;
/// Up to this many drawn faults have their times written beside their bars.
const MAX_NOTED: usize = 60;
/// Rows of marks; more faults at once overlap in the emptiest row.
const MAX_LANES: usize = 8;
const WIDTH: f64 = 1000.0;
/// The axis runs from `X0` to `X1`.
const X0: f64 = 44.0;
const X1: f64 = 956.0;
const LANE: f64 = 24.0;
/// Roughly how wide a character of the small text is.
const CHAR: f64 = 5.0;

const STYLE: &str = ".nm-grid{stroke:#ddd;stroke-width:1}.nm-axis{stroke:#444;stroke-width:1}\
.nm-ttd{fill:#0072b2}.nm-ttr{fill:#a6dcef;stroke:#0072b2;stroke-width:.5}\
.nm-halt{stroke:#222;stroke-width:1.5;stroke-dasharray:5 3}.nm-hbox{fill:#222}\
.nm-ref{stroke:#d55e00;stroke-width:2;fill:none}\
.nm-svg .nm-end{text-anchor:end}.nm-svg .nm-mid{text-anchor:middle}";

/// The faults of `report` asked for in [`from`, `to`) as one `<svg>` element, standalone
/// (it has its namespace) or embedded in a page: every mark a verdict's shape, colour and
/// letter, with a tooltip (`<title>`) naming the fault, whom it struck and its times;
/// the time to detect as a bar above the line after the mark, the time to recover below;
/// refusals (×) under the faults and halts (a dashed line, H) across them; the axis in
/// `zone`'s wall-clock time; a legend. Beyond [`MAX_DRAWN`] faults in range, every n-th
/// is drawn and the picture says so; with none, it says that.
pub fn timeline_svg(
    report: &Report,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: &Zone,
) -> String {
    // An empty or reversed period is drawn as one hour from `from`, never divided by.
    let to = if to > from {
        to
    } else {
        from + Duration::hours(1)
    };
    let scale = Scale {
        from,
        span_ms: (to - from).num_milliseconds().max(1) as f64,
    };
    let x = |t: DateTime<Utc>| scale.x(t);
    let in_range = |t: DateTime<Utc>| t >= from && t < to;

    let mut rows: Vec<&Row> = report.faults.iter().filter(|r| in_range(r.at)).collect();
    rows.sort_by_key(|r| r.at);
    let stride = rows.len().div_ceil(MAX_DRAWN).max(1);
    let drawn: Vec<&Row> = rows.iter().step_by(stride).copied().collect();
    let lettered = drawn.len() <= MAX_LETTERED;
    let noted = drawn.len() <= MAX_NOTED;
    let refused: Vec<_> = report.refused.iter().filter(|r| in_range(r.at)).collect();
    let halts: Vec<_> = report.halts.iter().filter(|h| in_range(h.at)).collect();

    let (placed, lanes) = place(&drawn, &x, noted);

    let top = 44.0;
    let refusals_y = top + lanes * LANE + 8.0;
    let axis_y = if refused.is_empty() {
        top + lanes * LANE + 4.0
    } else {
        refusals_y + 12.0
    };
    let legend_y = axis_y + 52.0;
    let height = legend_y + 30.0;

    let period = format!(
        "{} to {} ({})",
        local(zone, from, "%Y-%m-%d %H:%M"),
        local(zone, to, "%Y-%m-%d %H:%M"),
        zone.name()
    );
    let mut out = svg_open(
        WIDTH,
        height,
        &label(&rows, refused.len(), halts.len(), &period),
        STYLE,
    );
    let _ = write!(
        out,
        r#"<text class="nm-h" x="{X0}" y="18">{} fault{}, {}</text>"#,
        count(rows.len()),
        if rows.len() == 1 { "" } else { "s" },
        escape_html(&period)
    );
    if stride > 1 {
        let _ = write!(
            out,
            r#"<text class="nm-end" x="{X1}" y="34">thinned: every {} fault drawn ({} of {}); the table lists them all</text>"#,
            ordinal(stride),
            count(drawn.len()),
            count(rows.len())
        );
    }

    axis(&mut out, &ticks(from, to, zone), &x, top, axis_y);
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<text class="nm-h nm-mid" x="{}" y="{}">No faults from {}</text>"#,
            WIDTH / 2.0,
            top + LANE / 2.0 + 4.0,
            escape_html(&period)
        );
    }

    for mark in placed {
        draw_fault(&mut out, &mark, &x, top, zone, lettered);
    }
    draw_refusals(&mut out, &refused, &x, refusals_y, zone);
    draw_halts(&mut out, &halts, &x, top, axis_y, zone);
    legend(&mut out, legend_y);
    out.push_str("</svg>");
    out
}

/// Where a time falls across the picture.
struct Scale {
    from: DateTime<Utc>,
    span_ms: f64,
}

impl Scale {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        X0 + ((t - self.from).num_milliseconds() as f64 / self.span_ms).clamp(0.0, 1.0) * (X1 - X0)
    }
}

/// A fault as placed: its row, its lane, where its mark and its bars end, its note.
type Placed<'a> = (&'a Row, usize, f64, f64, Option<String>);

/// Places each fault in the first lane where it fits, its bars and note included (at
/// most [`MAX_LANES`]; past them, in the lane that ends first); how many lanes it took.
fn place<'a>(
    drawn: &[&'a Row],
    x: &dyn Fn(DateTime<Utc>) -> f64,
    noted: bool,
) -> (Vec<Placed<'a>>, f64) {
    let mut lane_ends: Vec<f64> = Vec::new();
    let mut placed = Vec::with_capacity(drawn.len());
    for row in drawn {
        let at = x(row.at);
        let after = |ms: Option<u64>| ms.map(|ms| x(row.at + Duration::milliseconds(ms as i64)));
        let bars_end = after(row.ttd_ms)
            .into_iter()
            .chain(after(row.ttr_ms))
            .fold(at, f64::max);
        let note = noted.then(|| note(row)).flatten();
        let end = (at + 8.0).max(bars_end + 2.0)
            + note.as_ref().map_or(0.0, |n| n.len() as f64 * CHAR + 4.0);
        let lane = match lane_ends.iter().position(|&e| e <= at - 8.0) {
            Some(lane) => lane,
            None if lane_ends.len() < MAX_LANES => {
                lane_ends.push(f64::MIN);
                lane_ends.len() - 1
            }
            None => (0..lane_ends.len())
                .min_by(|&a, &b| lane_ends[a].total_cmp(&lane_ends[b]))
                .unwrap_or(0),
        };
        lane_ends[lane] = lane_ends[lane].max(end);
        placed.push((*row, lane, at, bars_end, note));
    }
    (placed, lane_ends.len().max(1) as f64)
}

/// The axis: a line across, ticks at round wall-clock times, light lines up.
fn axis(
    out: &mut String,
    ticks: &[(DateTime<Utc>, String, Option<String>)],
    x: &dyn Fn(DateTime<Utc>) -> f64,
    top: f64,
    axis_y: f64,
) {
    let mut grid = String::new();
    for (t, _, _) in ticks {
        let _ = write!(grid, "M{:.1} {top}V{axis_y}", x(*t));
    }
    if !grid.is_empty() {
        let _ = write!(out, r#"<path class="nm-grid" d="{grid}"/>"#);
    }
    let _ = write!(out, r#"<path class="nm-axis" d="M{X0} {axis_y}H{X1}"/>"#);
    for (t, first, second) in ticks {
        let tx = x(*t);
        let _ = write!(
            out,
            r#"<path class="nm-axis" d="M{tx:.1} {axis_y}v4"/><text class="nm-mid" x="{tx:.1}" y="{}">{first}</text>"#,
            axis_y + 15.0
        );
        if let Some(second) = second {
            let _ = write!(
                out,
                r#"<text class="nm-mid nm-small" x="{tx:.1}" y="{}">{second}</text>"#,
                axis_y + 27.0
            );
        }
    }
}

/// One fault: its mark, its bars (time to detect above, to recover below), its note, and
/// a tooltip.
fn draw_fault(
    out: &mut String,
    placed: &Placed<'_>,
    x: &dyn Fn(DateTime<Utc>) -> f64,
    top: f64,
    zone: &Zone,
    lettered: bool,
) {
    let (row, lane, at, bars_end, note) = placed;
    let (row, at, bars_end) = (*row, *at, *bars_end);
    let cy = top + LANE / 2.0 + *lane as f64 * LANE;
    let mark = Mark::of(row);
    let _ = write!(
        out,
        "<g><title>{}</title>",
        escape_html(&tooltip(row, zone))
    );
    let bar = |out: &mut String, class: &str, y: f64, ms: Option<u64>| {
        if let Some(ms) = ms {
            let end = x(row.at + Duration::milliseconds(ms as i64));
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{at:.1}" y="{y:.1}" width="{:.1}" height="4"/>"#,
                (end - at).max(1.0)
            );
        }
    };
    bar(out, "nm-ttd", cy - 5.0, row.ttd_ms);
    bar(out, "nm-ttr", cy + 1.0, row.ttr_ms);
    mark.draw(out, at, cy, lettered);
    if let Some(note) = note {
        let _ = write!(
            out,
            r#"<text class="nm-small" x="{:.1}" y="{:.1}">{note}</text>"#,
            (at + 8.0).max(bars_end + 2.0),
            cy + 3.0
        );
    }
    out.push_str("</g>");
}

/// The refusals, as crosses under the faults.
fn draw_refusals(
    out: &mut String,
    refused: &[&RefusedRecord],
    x: &dyn Fn(DateTime<Utc>) -> f64,
    refusals_y: f64,
    zone: &Zone,
) {
    for r in refused {
        let rx = x(r.at);
        let _ = write!(
            out,
            r#"<g><title>{}</title><path class="nm-ref" d="M{:.1} {:.1}l8 8m0-8l-8 8"/></g>"#,
            escape_html(&format!(
                "{} refused {} ({}): {}",
                local(zone, r.at, "%Y-%m-%d %H:%M:%S"),
                r.fault,
                r.trigger,
                r.reason
            )),
            rx - 4.0,
            refusals_y - 4.0
        );
    }
}

/// The halts, as dashed lines across the faults.
fn draw_halts(
    out: &mut String,
    halts: &[&HaltedRecord],
    x: &dyn Fn(DateTime<Utc>) -> f64,
    top: f64,
    axis_y: f64,
    zone: &Zone,
) {
    for h in halts {
        let hx = x(h.at);
        let _ = write!(
            out,
            r#"<g><title>{}</title><path class="nm-halt" d="M{hx:.1} {}V{axis_y}"/><rect class="nm-hbox" x="{:.1}" y="{}" width="12" height="12"/><text class="nm-l" x="{hx:.1}" y="{}">H</text></g>"#,
            escape_html(&format!(
                "{} halted: {}: {}",
                local(zone, h.at, "%Y-%m-%d %H:%M:%S"),
                h.probe,
                h.reason
            )),
            top - 2.0,
            hx - 6.0,
            top - 14.0,
            top - 5.0
        );
    }
}

/// What a screen reader says of the picture.
fn label(rows: &[&Row], refused: usize, halts: usize, period: &str) -> String {
    let mut text = format!(
        "Timeline of {} fault{} from {period}",
        count(rows.len()),
        if rows.len() == 1 { "" } else { "s" }
    );
    let kinds: Vec<String> = Mark::LEGEND
        .iter()
        .filter_map(|kind| {
            let n = rows
                .iter()
                .filter(|r| {
                    let m = Mark::of(r);
                    m == *kind || matches!((m, kind), (Mark::NotJudged(_), Mark::NotJudged(_)))
                })
                .count();
            let words = match kind {
                Mark::NotJudged(_) => "not judged",
                kind => kind.words(),
            };
            (n > 0).then(|| format!("{} {words}", count(n)))
        })
        .collect();
    if !kinds.is_empty() {
        let _ = write!(text, ": {}", kinds.join(", "));
    }
    let _ = write!(
        text,
        "; {} refusal{}, {} halt{}",
        count(refused),
        if refused == 1 { "" } else { "s" },
        count(halts),
        if halts == 1 { "" } else { "s" }
    );
    text
}

/// The times beside a fault's bars: `D 2m R 40s`.
fn note(row: &Row) -> Option<String> {
    let parts: Vec<String> = [("D", row.ttd_ms), ("R", row.ttr_ms)]
        .into_iter()
        .filter_map(|(what, ms)| ms.map(|ms| format!("{what} {}", human_ms(ms))))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A fault's tooltip: when, what, whom, and how it went.
fn tooltip(row: &Row, zone: &Zone) -> String {
    let mut text = format!(
        "{} {} → {}: {}",
        local(zone, row.at, "%Y-%m-%d %H:%M:%S"),
        row.fault,
        if row.target.is_empty() {
            "-"
        } else {
            &row.target
        },
        row.result
    );
    if let (Some(ms), Some(by)) = (row.ttd_ms, &row.detected_by) {
        let _ = write!(text, "; detected after {} by {by}", human_ms(ms));
    }
    if let Some(ms) = row.ttr_ms {
        let _ = write!(text, "; recovered after {}", human_ms(ms));
    }
    let _ = write!(text, "; {}", Mark::of(row).words());
    text
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", count(n))
}

/// Round wall-clock times in `zone` across [`from`, `to`), ten at most: each with its
/// label and, where the day (or the month) changes, a second line.
pub(crate) fn ticks(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: &Zone,
) -> Vec<(DateTime<Utc>, String, Option<String>)> {
    const STEPS: [i64; 11] = [15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 40320];
    let span = (to - from).num_minutes().max(1);
    let step = STEPS
        .into_iter()
        .find(|s| span / s <= 10)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    // Every quarter hour of UTC is looked at in the zone (offsets are whole quarter
    // hours), up to a bound: a years-long period gets fewer ticks, not a slow picture.
    let quarter = Duration::minutes(15);
    let first = from.timestamp().div_euclid(900) * 900;
    let Some(mut t) = DateTime::from_timestamp(first, 0) else {
        return Vec::new();
    };
    let scan = Duration::minutes(15 * (span / 15 / 40_000 + 1));
    let mut out: Vec<(DateTime<Utc>, String, Option<String>)> = Vec::new();
    let mut last: Option<chrono::NaiveDate> = None;
    while t < to {
        if t >= from {
            let l = zone.naive(t);
            let minute = i64::from(l.hour() * 60 + l.minute());
            let round = if step < 1440 {
                minute % step == 0
            } else {
                minute == 0
                    && match step {
                        1440 => true,
                        2880 => l.ordinal() % 2 == 1,
                        10080 => l.weekday() == Weekday::Mon,
                        _ => l.day() == 1,
                    }
            };
            if round {
                let date = l.date();
                let (first, second) = if step < 1440 {
                    (
                        l.format("%H:%M").to_string(),
                        (last != Some(date)).then(|| l.format("%a %d %b").to_string()),
                    )
                } else {
                    (
                        l.format("%a %d").to_string(),
                        last.is_none_or(|d| d.month() != date.month())
                            .then(|| l.format("%b %Y").to_string()),
                    )
                };
                last = Some(date);
                out.push((t, first, second));
            }
        }
        t += if step < 60 { quarter } else { scan };
    }
    out
}

/// The legend: every mark, the bars, refusals and halts, in two rows.
fn legend(out: &mut String, y: f64) {
    let mut lx = X0 + 6.0;
    for mark in Mark::LEGEND {
        let words = match mark {
            Mark::NotJudged(_) => "not judged (D dry run, F failed, V vanished)",
            mark => mark.words(),
        };
        mark.draw(out, lx, y, true);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{words}</text>"#,
            lx + 10.0,
            y + 4.0
        );
        lx += 10.0 + words.len() as f64 * 6.0 + 24.0;
    }
    let y2 = y + 20.0;
    let _ = write!(
        out,
        r#"<rect class="nm-ttd" x="{X0}" y="{:.1}" width="24" height="4"/><text x="{}" y="{:.1}">above: time to detect (D)</text>"#,
        y2 - 3.0,
        X0 + 30.0,
        y2 + 2.0
    );
    let _ = write!(
        out,
        r#"<rect class="nm-ttr" x="230" y="{:.1}" width="24" height="4"/><text x="260" y="{:.1}">below: time to recover (R)</text>"#,
        y2 - 1.0,
        y2 + 2.0
    );
    let _ = write!(
        out,
        r#"<path class="nm-ref" d="M422 {:.1}l8 8m0-8l-8 8"/><text x="436" y="{:.1}">refused: steady state not met</text>"#,
        y2 - 4.0,
        y2 + 4.0
    );
    let _ = write!(
        out,
        r#"<rect class="nm-hbox" x="630" y="{:.1}" width="12" height="12"/><text class="nm-l" x="636" y="{:.1}">H</text><text x="648" y="{:.1}">halted: a halt probe paused the monkey</text>"#,
        y2 - 6.0,
        y2 + 3.0,
        y2 + 4.0
    );
}

#[cfg(test)]
mod tests;
