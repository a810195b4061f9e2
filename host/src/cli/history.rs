//! The flags of `history`, with its help text.

use std::path::PathBuf;

use clap::Args;

pub(super) const HISTORY_EXAMPLES: &str = "\
Examples:
  nightmare-monkey history                        the default journal (state directory)
  nightmare-monkey history --since 2h
  nightmare-monkey history --run last             the faults of the latest run only
  nightmare-monkey history --limit 50             the latest 50, and the --before of older ones
  nightmare-monkey history --config drill.ron --json
  nightmare-monkey history --fleet --config drill.ron   which node got which fault when";

/// `history`.
// `<state dir>` in a `--help` text is not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The journal file [default: the config's, else <state dir>/journal.jsonl]
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Read the journal path from this configuration
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only faults since this instant (RFC 3339) or this long ago (2h, 30m)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only faults before this instant (RFC 3339) or this long ago
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// With --limit: the page before the one shown, from where it said (its `next`,
    /// printed as `(older faults: --before CURSOR)`)
    #[arg(long, value_name = "CURSOR")]
    pub before: Option<String>,
    /// Only the latest N faults (1 to 10000), read from the journal's end backwards: a
    /// page costs a page, whatever the history [default: all, read from the start]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=crate::storage::history::MAX_LIMIT as i64))]
    pub limit: Option<u16>,
    /// Only the faults of one run (one start of the daemon, one `kill`): `last`, or its
    /// number, the part of a fault's id before the dash. Without it, a line
    /// `-- run N, started ...` separates the runs
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Print JSON (the same as GET /api/history)
    #[arg(long)]
    pub json: bool,
    /// The fleet's admissions instead, from its coordinator (the config's fleet:
    /// section): which node got which fault when, kept for the fleet budget's period
    /// (a day at least)
    #[arg(long, requires = "config", conflicts_with_all = ["journal", "before", "limit", "run"])]
    pub fleet: bool,
}
