//! `nightmare-monkey report`: what a drill came to, from the journal: per fault who
//! noticed it and when, whether the system came back, a verdict, and in sum; as text,
//! JSON, Markdown or a self-contained HTML page (`output::picture`), to stdout or `-o`.

use std::fmt::Write as _;

use anyhow::anyhow;
use chrono::{DateTime, SubsecRound as _, Utc};

use crate::{
    cli::{ReportArgs, ReportFormat},
    config,
    domain::{drill::human_ms, window::Zone},
    output::picture::{self, page::ReportPage},
    storage::{
        journal::parse_since,
        report::{self, Report, Spread},
    },
    support::{
        text::{escape_controls, escape_markdown},
        UsageError,
    },
};

/// What `report` looks back over without `--since`.
const DEFAULT_SINCE: &str = "7d";

/// Runs `report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let since_text = args.since.as_deref().unwrap_or(DEFAULT_SINCE);
    let since = parse_since(since_text).map_err(|e| UsageError(anyhow!("--since: {e}")))?;
    let path = super::history::journal_of(args.journal.as_ref(), args.config.as_ref())?;
    let report = report::read(&path, Some(since))
        .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?;
    // As `history` says them: on stderr, whatever the format (the JSON has them too).
    for problem in &report.problems {
        eprintln!("warning: {problem}");
    }
    let out = match args.format {
        ReportFormat::Json => serde_json::to_string(&report)? + "\n",
        ReportFormat::Text => text(&report, since),
        ReportFormat::Md => markdown(&report, since),
        ReportFormat::Html => {
            // Times in the window's zone, as the drill was planned; the host's without
            // a config.
            let zone = match &args.config {
                Some(file) => {
                    config::check_file(file)
                        .map_err(|e| UsageError(e.into()))?
                        .0
                        .window
                        .zone
                }
                None => Zone::Local,
            };
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
            picture::page::report_html(&ReportPage {
                report: &report,
                since,
                until: Utc::now().trunc_subsecs(0),
                zone: &zone,
                host: host.as_deref().map(str::trim).filter(|h| !h.is_empty()),
            })
        }
    };
    super::emit(args.output.as_deref(), &out)
}

/// The most characters of a target the text and Markdown tables show: a fault that is
/// not a process is named by its summary, and a dry run's may hold a whole script (a
/// network fault's nftables rules) that would make every row of the table as wide. The
/// JSON has it whole.
const TARGET_SHOWN: usize = 120;

/// `target` cut to [`TARGET_SHOWN`] characters, an ellipsis saying so.
fn shown_target(target: &str) -> String {
    match target.char_indices().nth(TARGET_SHOWN - 1) {
        Some((at, _)) if target.chars().count() > TARGET_SHOWN => {
            format!("{}…", &target[..at])
        }
        _ => target.to_owned(),
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), human_ms)
}

fn spread(name: &str, s: &Spread) -> String {
    match (s.median_ms, s.p90_ms) {
        (Some(median), Some(p90)) => format!(
            "{name}: median {}, p90 {} ({} fault{})",
            human_ms(median),
            human_ms(p90),
            s.count,
            if s.count == 1 { "" } else { "s" }
        ),
        _ => format!("{name}: none measured"),
    }
}

/// The sums, as lines.
fn summary_lines(r: &Report) -> Vec<String> {
    let s = &r.summary;
    let mut lines = vec![
        format!(
            "{} real fault{} ({} dry run{}, {} failed): {} detected, {} undetected; {} recovered in time, {} late, {} not recovered",
            s.real,
            if s.real == 1 { "" } else { "s" },
            s.dry_runs,
            if s.dry_runs == 1 { "" } else { "s" },
            s.failed,
            s.detected,
            s.undetected,
            s.recovered,
            s.recovered_late,
            s.not_recovered
        ),
        spread("time to detect", &s.ttd),
        spread("time to recover", &s.ttr),
        format!(
            "steady-state refusals: {}; halts: {}",
            s.steady_state_refusals, s.halts
        ),
    ];
    lines.push(match s.resilience_percent {
        Some(p) => format!("resilience: {p}% of the judged faults coped with"),
        None => "resilience: no fault to judge".to_owned(),
    });
    lines
}

/// Lines for a terminal.
fn text(r: &Report, since: DateTime<Utc>) -> String {
    let mut out = format!(
        "Drill report: {} fault{} since {}\n",
        r.summary.faults,
        if r.summary.faults == 1 { "" } else { "s" },
        since
            .with_timezone(&chrono::Local)
            .format("%Y/%m/%d %H:%M:%S")
    );
    if r.faults_not_listed > 0 {
        let _ = writeln!(out, "(the {} oldest not listed)", r.faults_not_listed);
    }
    let header = [
        "WHEN", "ID", "FAULT", "TARGET", "TRIGGER", "RESULT", "TTD", "BY", "TTR", "VERDICT",
    ];
    let rows: Vec<[String; 10]> = r
        .faults
        .iter()
        .map(|f| {
            [
                f.at.with_timezone(&chrono::Local)
                    .format("%Y/%m/%d %H:%M:%S")
                    .to_string(),
                escape_controls(&f.id).into_owned(),
                escape_controls(&f.fault).into_owned(),
                shown_target(&f.target),
                escape_controls(&f.trigger).into_owned(),
                escape_controls(&f.shown_result()).into_owned(),
                ms(f.ttd_ms),
                escape_controls(f.detected_by.as_deref().unwrap_or("-")).into_owned(),
                ms(f.ttr_ms),
                f.verdict.word().to_owned(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let _ = write!(l, "{cell:<w$}  ");
                }
            }
            l.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(&header.map(str::to_owned)));
        for row in &rows {
            out.push_str(&line(row));
        }
    }
    for refused in &r.refused {
        let _ = writeln!(
            out,
            "refused {} ({}, {}): {}",
            escape_controls(&refused.fault),
            escape_controls(&refused.trigger),
            refused
                .at
                .with_timezone(&chrono::Local)
                .format("%Y/%m/%d %H:%M:%S"),
            escape_controls(&refused.reason)
        );
    }
    for halt in &r.halts {
        let _ = writeln!(
            out,
            "halted {}: {}: {}",
            halt.at
                .with_timezone(&chrono::Local)
                .format("%Y/%m/%d %H:%M:%S"),
            escape_controls(&halt.probe),
            escape_controls(&halt.reason)
        );
    }
    out.push_str("Summary:\n");
    for line in summary_lines(r) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// A Markdown page: the table and the sums.
fn markdown(r: &Report, since: DateTime<Utc>) -> String {
    // A cell is one line of text: no row broken by a newline, no markup let through (a
    // process named like a link or an image stays text).
    let cell = |s: &str| escape_markdown(s);
    let mut out = format!(
        "# Drill report\n\n{} fault{} since {}.\n\n",
        r.summary.faults,
        if r.summary.faults == 1 { "" } else { "s" },
        since.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if !r.faults.is_empty() {
        out.push_str("| when (UTC) | id | fault | target | trigger | result | time to detect | by | time to recover | verdict |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for f in &r.faults {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.at.format("%Y-%m-%d %H:%M:%S"),
                cell(&f.id),
                cell(&f.fault),
                cell(&shown_target(&f.target)),
                cell(&f.trigger),
                cell(&f.shown_result()),
                ms(f.ttd_ms),
                cell(f.detected_by.as_deref().unwrap_or("-")),
                ms(f.ttr_ms),
                f.verdict.word()
            );
        }
        out.push('\n');
    }
    for refused in &r.refused {
        let _ = writeln!(
            out,
            "- Refused {} ({}) at {}: {}",
            cell(&refused.fault),
            cell(&refused.trigger),
            refused.at.format("%Y-%m-%d %H:%M:%S UTC"),
            cell(&refused.reason)
        );
    }
    for halt in &r.halts {
        let _ = writeln!(
            out,
            "- Halted at {}: {}: {}",
            halt.at.format("%Y-%m-%d %H:%M:%S UTC"),
            cell(&halt.probe),
            cell(&halt.reason)
        );
    }
    out.push_str("\n## Summary\n\n");
    for line in summary_lines(r) {
        let _ = writeln!(out, "- {line}");
    }
    out
}
