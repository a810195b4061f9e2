//! `nightmare-monkey history`: the answer key. One line per fault from the journal, with
//! what happened and, for reversible faults, when and why it was reverted.

use std::path::PathBuf;

use anyhow::anyhow;
use chrono::{DateTime, Local, Utc};

use crate::{
    cli::HistoryArgs,
    config,
    domain::{
        history, injection,
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
    // The journal holds what clients and processes wrote: one fault, one line.
    escape_controls(&out).into_owned()
}

/// `history --limit N`: one page, read backwards from the journal's end.
fn page(
    path: &std::path::Path,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let page = history::page(
        path,
        history::Query {
            since,
            until,
            limit,
        },
    )
    .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?;
    for problem in &page.problems {
        eprintln!("warning: {problem}");
    }
    let next = page.next.map(|t| t.to_rfc3339());
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
    for e in &page.entries {
        println!("{}", line(e));
    }
    if let Some(next) = next {
        eprintln!("(older faults: --until {next})");
    }
    Ok(())
}

/// Runs `history`.
pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let path: PathBuf = match (&args.journal, &args.config) {
        (Some(path), _) => path.clone(),
        (None, Some(file)) => {
            config::check_file(file)
                .map_err(|e| UsageError(e.into()))?
                .journal
        }
        (None, None) => {
            config::load(&Default::default())
                .map_err(|e| UsageError(e.into()))?
                .journal
        }
    };
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
    if let Some(limit) = args.limit {
        return page(&path, since, until, usize::from(limit), args.json);
    }
    let contents = journal::read(&path)
        .map_err(|e| anyhow!("cannot read the journal {}: {e}", path.display()))?;
    for problem in &contents.problems {
        eprintln!("warning: {problem}");
    }
    let entries: Vec<Entry> = journal::entries(&contents.records)
        .into_iter()
        .filter(|e| since.is_none_or(|t| e.intent.at >= t))
        .filter(|e| until.is_none_or(|t| e.intent.at < t))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({ "faults": entries, "problems": contents.problems })
            )?
        );
    } else if entries.is_empty() {
        eprintln!("no faults in {}", path.display());
    } else {
        for e in &entries {
            println!("{}", line(e));
        }
    }
    Ok(())
}
