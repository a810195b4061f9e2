//! `nightmare-monkey history`: the answer key. One line per fault from the journal, with
//! what happened and, for reversible faults, when and why it was reverted.

use std::{io::Write as _, path::PathBuf};

use anyhow::anyhow;
use chrono::{DateTime, Local, Utc};

use crate::{
    cli::HistoryArgs,
    config,
    domain::{drill::human_ms, injection},
    storage::{
        history,
        journal::{self, parse_since, Entry},
    },
    support::{text::escape_controls, UsageError},
};

fn stamp(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y/%m/%d %H:%M:%S")
        .to_string()
}

/// One line of the answer key.
pub fn line(e: &Entry) -> String {
    let i = &e.intent;
    let mut who = i.trigger.clone();
    if let Some(by) = &i.requested_by {
        who.push(' ');
        who.push_str(by);
    }
    let (result, target, tail) = match &e.outcome {
        None => (
            "unknown".to_owned(),
            "?".to_owned(),
            ": no outcome recorded (the daemon stopped during the fault)".to_owned(),
        ),
        Some(o) => {
            let target = o
                .process
                .as_ref()
                .map_or_else(|| o.summary.clone(), injection::who);
            let tail = match &o.error {
                Some(error) => format!(": {error}"),
                None => match &o.signal {
                    Some(signal) => format!(" {signal}"),
                    None => String::new(),
                },
            };
            (o.result.clone(), target, tail)
        }
    };
    let mut out = format!(
        "{} {result} {}: {target} - {} [{who}]{tail}",
        stamp(i.at),
        i.fault,
        i.desc
    );
    match (&e.reverted, e.outcome.as_ref().and_then(|o| o.revert_due)) {
        (Some(r), _) => out.push_str(&format!("; {} {} ({})", r.result, stamp(r.at), r.reason)),
        (None, Some(due)) => out.push_str(&format!("; still active, due {}", stamp(due))),
        (None, None) => {}
    }
    // What followed: who noticed it, whether the system came back.
    if let Some(d) = &e.detected {
        out.push_str(&format!(
            "; noticed by {} after {}",
            d.by,
            human_ms(d.ttd_ms)
        ));
    }
    match (&e.recovered, &e.not_recovered) {
        (Some(r), _) => out.push_str(&format!(
            "; recovered after {}{}",
            human_ms(r.ttr_ms),
            if r.late { " (late)" } else { "" }
        )),
        (None, Some(n)) => out.push_str(&format!(
            "; not recovered within {} ({})",
            human_ms(n.deadline_ms),
            n.reason
        )),
        (None, None) => {}
    }
    // The journal holds what clients and processes wrote: one fault, one line.
    escape_controls(&out).into_owned()
}

/// A line between the faults of two runs (two starts of the daemon, or two `kill`s):
/// `-- run 1795712215564, started 2026/11/26 17:00:15`.
fn run_line(run: &str) -> String {
    let started = run
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .map(|t| format!(", started {}", stamp(t)))
        .unwrap_or_default();
    format!("-- run {run}{started}")
}

/// Prints `entry` as a line, after a run line if its run is not the one printed before.
fn print_line(
    out: &mut impl std::io::Write,
    entry: &Entry,
    last_run: &mut Option<String>,
) -> std::io::Result<()> {
    let run = history::run_of(&entry.intent.id);
    if last_run.as_deref().is_some_and(|last| last != run) {
        writeln!(out, "{}", run_line(run))?;
    }
    *last_run = Some(run.to_owned());
    writeln!(out, "{}", line(entry))
}

/// `history --limit N`: one page, read backwards from the journal's end.
fn page(path: &std::path::Path, query: history::Query, json: bool) -> anyhow::Result<()> {
    let page = history::page(path, query).map_err(|e| match e.kind() {
        // A cursor this journal does not hold: the user's to fix.
        std::io::ErrorKind::InvalidInput => {
            anyhow::Error::from(UsageError(anyhow!("--before: {e}")))
        }
        _ => anyhow!("cannot read the journal {}: {e}", path.display()),
    })?;
    for problem in &page.problems {
        eprintln!("warning: {problem}");
    }
    let next = page.next.map(|p| p.to_string());
    if json {
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({ "faults": page.entries, "problems": page.problems, "next": next })
            )?
        );
        return Ok(());
    }
    if page.entries.is_empty() {
        eprintln!("no faults in {}", path.display());
    }
    let mut last_run = None;
    let mut out = std::io::stdout().lock();
    for e in &page.entries {
        print_line(&mut out, e, &mut last_run)?;
    }
    if let Some(next) = next {
        eprintln!("(older faults: --before {next})");
    }
    Ok(())
}

/// The journal `--journal` names, else the one of `--config`'s file, else the default;
/// one that does not exist (nor its archives) is an error, not an empty history.
pub(crate) fn journal_of(
    journal: Option<&PathBuf>,
    config: Option<&PathBuf>,
) -> anyhow::Result<PathBuf> {
    let path: PathBuf = match (journal, config) {
        (Some(path), _) => path.clone(),
        (None, Some(file)) => {
            // Only the journal's path is needed: a value in error elsewhere in the
            // file does not stand between the reader and the history.
            config::check_file(file)
                .map_err(|e| UsageError(e.into()))?
                .0
                .journal
        }
        (None, None) => {
            config::load(&Default::default())
                .map_err(|e| UsageError(e.into()))?
                .journal
        }
    };
    // A mistyped path is no empty history: said, and a failure.
    let archived = crate::storage::archive::archives(&path).is_ok_and(|a| !a.is_empty());
    if !path.exists() && !archived {
        anyhow::bail!(
            "no journal at {}: nothing was journaled there (another path? --journal FILE, or --config FILE for the daemon's)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `history`.
pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    if args.fleet {
        return super::fleet::history(&args);
    }
    let path = journal_of(args.journal.as_ref(), args.config.as_ref())?;
    let since = match &args.since {
        Some(text) => Some(parse_since(text).map_err(|e| UsageError(anyhow!("--since: {e}")))?),
        None => None,
    };
    let until = match &args.until {
        Some(text) => Some(
            parse_since(text)
                .map_err(|e| UsageError(anyhow!("--until: {}", e.replacen("since", "until", 1))))?,
        ),
        None => None,
    };
    if history::is_backwards(since, until) {
        return Err(UsageError(anyhow!(
            "--since {} is after --until {}: no fault can be in between (the two swapped?)",
            args.since.as_deref().unwrap_or_default(),
            args.until.as_deref().unwrap_or_default()
        ))
        .into());
    }
    let before = match &args.before {
        Some(text) => Some(text.parse::<journal::Position>().map_err(|e| {
            UsageError(anyhow!(
                "--before: {}",
                e.replacen("invalid before", "invalid cursor", 1)
            ))
        })?),
        None => None,
    };
    let run = match args.run.as_deref() {
        Some(text) => Some(
            history::Run::parse(text)
                .map_err(|e| UsageError(anyhow!("--run: {e}")))?
                .number(&path)
                .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?
                .ok_or_else(|| anyhow!("no faults in {}: no last run", path.display()))?,
        ),
        None => None,
    };
    match (args.limit, before) {
        (Some(limit), before) => {
            let query = history::Query {
                since,
                until,
                before,
                limit: usize::from(limit),
                run: run.clone(),
            };
            return page(&path, query, args.json);
        }
        (None, Some(_)) => {
            return Err(UsageError(anyhow!(
                "--before goes with --limit: it asks for the page before one shown"
            ))
            .into())
        }
        (None, None) => {}
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut printed = 0usize;
    let mut first = true;
    if args.json {
        write!(out, "{{\"faults\":[")?;
    }
    let mut last_run = None;
    let mut print = |e: &Entry| -> std::io::Result<()> {
        if run
            .as_deref()
            .is_some_and(|r| r != history::run_of(&e.intent.id))
        {
            return Ok(());
        }
        printed += 1;
        if args.json {
            if !std::mem::take(&mut first) {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)
        } else {
            print_line(&mut out, e, &mut last_run)
        }
    };
    // First what came for a fault too late for the stream to wait for it (an ack hours
    // after), then the faults, each joined with it.
    let mut late = history::LateRecords::new(since, until);
    journal::each_line_with_archives(&path, |line| late.take_line(line))
        .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?;
    let mut stream = late.stream();
    let mut failed = None;
    let problems = journal::each_with_archives(&path, |record| {
        if failed.is_none() {
            failed = stream.take(record, &mut print).err();
        }
    })
    .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    stream.finish(&mut print)?;
    if args.json {
        write!(out, "],\"problems\":")?;
        serde_json::to_writer(&mut out, &problems)?;
        // The shape of a page (`GET /api/history`): the whole listing has no older one.
        writeln!(out, ",\"next\":null}}")?;
    }
    out.flush()?;
    drop(out);
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    if printed == 0 && !args.json {
        eprintln!("no faults in {}", path.display());
    }
    Ok(())
}
