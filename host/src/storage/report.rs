//! `report` and `GET /api/report`: a journal read forward (through its archives) into
//! what the drill came to, per fault and in sum ([`Report`]).

use std::{io, path::Path};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::drill::{HaltedRecord, RefusedRecord};
use crate::support::text::escape_controls;

use super::{
    history::LateRecords,
    journal::{self, Entry, Record},
};

/// The report of the faults asked for since `since` (all, without), and the lines that
/// could not be read. Read twice, as `history` reads the whole answer key
/// ([`LateRecords`], then [`Stream`](super::history::Stream)): first the refusals, the
/// halts and what came for a fault later than the stream waits for it (an ack a day
/// after, a revert retried for hours), then the faults, each joined with what came for
/// it.
pub(crate) fn read(path: &Path, since: Option<DateTime<Utc>>) -> io::Result<Report> {
    let in_range = |at: DateTime<Utc>| since.is_none_or(|s| at >= s);
    let mut late = LateRecords::new(since, None);
    let mut report = Report::since(since);
    let problems = journal::each_with_archives(path, |record| {
        match &record {
            Record::Refused(r) if in_range(r.at) => report.refused(r.clone()),
            Record::Halted(h) if in_range(h.at) => report.halted(h.clone()),
            _ => {}
        }
        late.take(record);
    })?;
    report.problems(problems);
    let mut add = |e: &Entry| {
        report.add(e);
        Ok::<(), std::convert::Infallible>(())
    };
    let mut stream = late.stream();
    journal::each_with_archives(path, |record| {
        let _ = stream.take(record, &mut add);
    })?;
    let _ = stream.finish(&mut add);
    Ok(report.finish())
}

/// How a fault went, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Verdict {
    /// Noticed, and back within the deadline (or no recovery was checked).
    Coped,
    /// Back, but after the deadline.
    Late,
    /// Not back by the deadline (nor after).
    NotRecovered,
    /// Nobody and nothing noticed it.
    Undetected,
    /// Nothing to judge: a dry run, a failed injection, one that never finished.
    NotJudged,
}

impl Verdict {
    /// The word the text report prints.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Coped => "coped",
            Verdict::Late => "recovered late",
            Verdict::NotRecovered => "not recovered",
            Verdict::Undetected => "undetected",
            Verdict::NotJudged => "-",
        }
    }
}

/// The results that say a fault changed something a team could notice (`sdk::results`:
/// a process killed, one that survived its signal, one stopped, a fault injected). Any
/// other word (`vanished`, `failed`, a plugin's own `unchanged`) is listed, not judged:
/// guessing would count faults that never happened as undetected.
pub(crate) const JUDGED_RESULTS: [&str; 4] = ["killed", "survived", "paused", "injected"];

/// Whether a fault changed something a team could notice: injected for real, with a
/// result that says so ([`JUDGED_RESULTS`]).
pub(crate) fn was_real(entry: &Entry) -> bool {
    !entry.intent.dry_run
        && entry
            .outcome
            .as_ref()
            .is_some_and(|o| JUDGED_RESULTS.contains(&o.result.as_str()))
}

/// The verdict on one fault. Recovery outranks detection: a system that did not come
/// back is the finding, noticed or not.
pub(crate) fn verdict(entry: &Entry) -> Verdict {
    if !was_real(entry) {
        return Verdict::NotJudged;
    }
    match (&entry.recovered, &entry.not_recovered, &entry.detected) {
        (Some(r), _, _) if r.late => Verdict::Late,
        (None, Some(_), _) => Verdict::NotRecovered,
        (_, _, None) => Verdict::Undetected,
        _ => Verdict::Coped,
    }
}

/// One fault in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub id: String,
    pub at: DateTime<Utc>,
    pub fault: String,
    pub trigger: String,
    /// Whom it struck (`sleep(PID:12)`), or what it did.
    pub target: String,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttd_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttr_ms: Option<u64>,
    pub verdict: Verdict,
    /// Still in effect at the end of the journal: its revert never came, or failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_effect: bool,
}

impl Row {
    /// The report's line for `entry`.
    pub fn of(entry: &Entry) -> Self {
        let outcome = entry.outcome.as_ref();
        // A process names itself: what it chose is data, never a control character.
        let target = match outcome.and_then(|o| o.process.as_ref()) {
            Some(p) => format!("{}(PID:{})", escape_controls(&p.name), p.pid),
            None => escape_controls(&outcome.map(|o| o.summary.clone()).unwrap_or_default())
                .into_owned(),
        };
        Self {
            id: entry.intent.id.clone(),
            at: entry.intent.at,
            fault: entry.intent.fault.clone(),
            trigger: entry.intent.trigger.clone(),
            target,
            result: outcome.map_or_else(|| "unfinished".to_owned(), |o| o.result.clone()),
            ttd_ms: entry.detected.as_ref().map(|d| d.ttd_ms),
            detected_by: entry.detected.as_ref().map(|d| d.by.clone()),
            ttr_ms: entry.recovered.as_ref().map(|r| r.ttr_ms),
            verdict: verdict(entry),
            in_effect: entry.is_active(),
        }
    }

    /// The result as a report shows it: `paused (in effect)` for a fault still in effect.
    pub fn shown_result(&self) -> String {
        if self.in_effect {
            format!("{} (in effect)", self.result)
        } else {
            self.result.clone()
        }
    }
}

/// Median and 90th percentile of some times, ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<u64>,
}

impl Spread {
    /// Of `values` (nearest rank: the smallest value at or above the share).
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let rank = |q: f64| -> Option<u64> {
            if values.is_empty() {
                return None;
            }
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            Some(values[i])
        };
        Self {
            count: values.len(),
            median_ms: rank(0.5),
            p90_ms: rank(0.9),
        }
    }
}

/// The drill in sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Faults asked for in the period (dry runs included).
    pub faults: usize,
    /// Injected for real (see [`was_real`]).
    pub real: usize,
    pub dry_runs: usize,
    pub failed: usize,
    pub detected: usize,
    pub undetected: usize,
    pub recovered: usize,
    pub recovered_late: usize,
    pub not_recovered: usize,
    pub ttd: Spread,
    pub ttr: Spread,
    /// Faults refused because the steady state was not met.
    pub steady_state_refusals: usize,
    pub halts: usize,
    /// The share of real faults the team coped with, in percent (none: no real fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resilience_percent: Option<u32>,
}

/// The most refusals, and the most halts, a report lists one by one (the latest); the
/// most lines that could not be read it lists (the first).
pub(crate) const MAX_LISTED: usize = 1_000;

/// The most faults a report lists one by one (the latest); its sums count them all.
pub(crate) const MAX_ROWS: usize = 10_000;

/// The most seeds, and the most nodes, a report notes.
pub(crate) const MAX_NOTED: usize = 8;

/// The report's figures: per fault, and in sum.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    pub since: Option<DateTime<Utc>>,
    /// The faults, oldest first (the latest [`MAX_ROWS`]).
    pub faults: std::collections::VecDeque<Row>,
    /// Faults in range not listed (beyond [`MAX_ROWS`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub faults_not_listed: usize,
    /// The latest [`MAX_LISTED`] refusals (all are counted in the summary).
    pub refused: std::collections::VecDeque<RefusedRecord>,
    /// The latest [`MAX_LISTED`] halts (all are counted in the summary).
    pub halts: std::collections::VecDeque<HaltedRecord>,
    /// The lines of the journal that could not be read (torn, unreadable, too long),
    /// one sentence each, the first [`MAX_LISTED`] and then how many more. Absent when
    /// every line was read, so a clean journal's report is as it always was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub summary: Summary,
    /// The master seeds of the faults (the first [`MAX_NOTED`]), for the picture's title.
    #[serde(skip)]
    pub seeds: std::collections::BTreeSet<u64>,
    /// The fleet nodes the faults were drawn for (`@node/` in their streams; the first
    /// [`MAX_NOTED`]), for the picture's title.
    #[serde(skip)]
    pub nodes: std::collections::BTreeSet<String>,
    #[serde(skip)]
    ttds: Vec<u64>,
    #[serde(skip)]
    ttrs: Vec<u64>,
    #[serde(skip)]
    judged: usize,
    #[serde(skip)]
    coped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// An empty report of the faults since `since`.
    pub fn since(since: Option<DateTime<Utc>>) -> Self {
        Self {
            since,
            ..Self::default()
        }
    }

    /// Adds a fault refused for its steady state (a poller in a sick spell refuses one a
    /// poll: the latest are listed, all counted).
    pub fn refused(&mut self, record: RefusedRecord) {
        self.summary.steady_state_refusals += 1;
        self.refused.push_back(record);
        if self.refused.len() > MAX_LISTED {
            self.refused.pop_front();
        }
    }

    /// Notes the lines that could not be read (the first [`MAX_LISTED`]: a journal of
    /// garbage makes no report of megabytes).
    pub fn problems(&mut self, mut problems: Vec<String>) {
        if problems.len() > MAX_LISTED {
            let more = problems.len() - MAX_LISTED;
            problems.truncate(MAX_LISTED);
            problems.push(format!("and {more} more lines that could not be read"));
        }
        self.problems = problems;
    }

    /// Adds a halt.
    pub fn halted(&mut self, record: HaltedRecord) {
        self.summary.halts += 1;
        self.halts.push_back(record);
        if self.halts.len() > MAX_LISTED {
            self.halts.pop_front();
        }
    }

    /// Adds one fault.
    pub fn add(&mut self, entry: &Entry) {
        let row = Row::of(entry);
        if row.verdict != Verdict::NotJudged {
            self.judged += 1;
            self.coped += usize::from(row.verdict == Verdict::Coped);
            self.ttds.extend(row.ttd_ms);
            self.ttrs.extend(row.ttr_ms);
        }
        if self.seeds.len() < MAX_NOTED {
            self.seeds.insert(entry.intent.master_seed);
        }
        if let Some((_, node)) = entry.intent.stream.split_once("@node/") {
            if self.nodes.len() < MAX_NOTED && !self.nodes.contains(node) {
                self.nodes.insert(node.to_owned());
            }
        }
        let s = &mut self.summary;
        s.faults += 1;
        if entry.intent.dry_run {
            s.dry_runs += 1;
        } else if entry.outcome.as_ref().is_some_and(|o| o.result == "failed") {
            s.failed += 1;
        }
        if was_real(entry) {
            s.real += 1;
            match &entry.detected {
                Some(_) => s.detected += 1,
                None => s.undetected += 1,
            }
            match (&entry.recovered, &entry.not_recovered) {
                (Some(r), _) if r.late => s.recovered_late += 1,
                (Some(_), _) => s.recovered += 1,
                (None, Some(_)) => s.not_recovered += 1,
                (None, None) => {}
            }
        }
        self.faults.push_back(row);
        if self.faults.len() > MAX_ROWS {
            self.faults.pop_front();
            self.faults_not_listed += 1;
        }
    }

    /// Closes the sums: the spreads and the resilience figure.
    pub fn finish(mut self) -> Self {
        self.summary.ttd = Spread::of(std::mem::take(&mut self.ttds));
        self.summary.ttr = Spread::of(std::mem::take(&mut self.ttrs));
        // Rounded down: 199 of 200 is 99%, never a perfect score it was not.
        self.summary.resilience_percent =
            (self.judged > 0).then(|| ((self.coped * 100) / self.judged) as u32);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fault from journal lines (its intent first), as the journal has them.
    fn fault(lines: &[&str]) -> Entry {
        let mut records = lines
            .iter()
            .map(|l| serde_json::from_str::<Record>(l).unwrap());
        let Some(Record::Intent(intent)) = records.next() else {
            panic!("an intent first");
        };
        let mut entry = Entry::of(intent);
        for r in records {
            entry.take(r);
        }
        entry
    }

    const INTENT: &str = r#"{"type":"intent","id":"1-1","at":"2026-11-26T10:00:00Z","fault":"k","plugin":"process-kill","trigger":"timer","desc":"d","dry_run":false,"master_seed":1,"stream":"fault/k","stream_position":0,"seed":2}"#;
    const DRY: &str = r#"{"type":"intent","id":"1-1","at":"2026-11-26T10:00:00Z","fault":"k","plugin":"process-kill","trigger":"timer","desc":"d","dry_run":true,"master_seed":1,"stream":"fault/k","stream_position":0,"seed":2}"#;
    const KILLED: &str = r#"{"type":"outcome","id":"1-1","at":"2026-11-26T10:00:01Z","elapsed_ms":1,"result":"killed","summary":"s"}"#;
    const FAILED: &str = r#"{"type":"outcome","id":"1-1","at":"2026-11-26T10:00:01Z","elapsed_ms":1,"result":"failed","summary":""}"#;
    const SEEN: &str =
        r#"{"type":"detected","id":"1-1","at":"2026-11-26T10:01:01Z","ttd_ms":60000,"by":"alice"}"#;
    const SEEN_LATER: &str =
        r#"{"type":"detected","id":"1-1","at":"2026-11-26T10:02:01Z","ttd_ms":120000,"by":"bob"}"#;
    const BACK: &str =
        r#"{"type":"recovered","id":"1-1","at":"2026-11-26T10:00:05Z","ttr_ms":4000}"#;
    const LATE: &str = r#"{"type":"recovered","id":"1-1","at":"2026-11-26T10:09:00Z","ttr_ms":539000,"late":true}"#;
    const MISSED: &str = r#"{"type":"not-recovered","id":"1-1","at":"2026-11-26T10:05:01Z","deadline_ms":300000,"reason":"p: down"}"#;

    #[test]
    fn each_ending_has_its_verdict() {
        assert_eq!(verdict(&fault(&[INTENT, KILLED, SEEN])), Verdict::Coped);
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, SEEN, BACK])),
            Verdict::Coped
        );
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, BACK])),
            Verdict::Undetected
        );
        assert_eq!(verdict(&fault(&[INTENT, KILLED])), Verdict::Undetected);
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, SEEN, MISSED])),
            Verdict::NotRecovered
        );
        // Not back is the finding, noticed or not.
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, MISSED])),
            Verdict::NotRecovered
        );
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, SEEN, MISSED, LATE])),
            Verdict::Late
        );
        assert_eq!(
            verdict(&fault(&[INTENT, KILLED, MISSED, LATE])),
            Verdict::Late
        );
        assert_eq!(verdict(&fault(&[DRY, KILLED, SEEN])), Verdict::NotJudged);
        assert_eq!(verdict(&fault(&[INTENT, FAILED, SEEN])), Verdict::NotJudged);
        assert_eq!(verdict(&fault(&[INTENT])), Verdict::NotJudged);
        let vanished = KILLED.replace("\"killed\"", "\"vanished\"");
        assert_eq!(verdict(&fault(&[INTENT, &vanished])), Verdict::NotJudged);
        // Only the results that say something happened are judged: a plugin's own word
        // is listed, not counted as an undetected fault.
        for judged in JUDGED_RESULTS {
            let said = KILLED.replace("\"killed\"", &format!("\"{judged}\""));
            assert_eq!(
                verdict(&fault(&[INTENT, &said])),
                Verdict::Undetected,
                "{judged}"
            );
        }
        let unchanged = KILLED.replace("\"killed\"", "\"unchanged\"");
        assert_eq!(verdict(&fault(&[INTENT, &unchanged])), Verdict::NotJudged);
        // The first detection stands.
        let twice = fault(&[INTENT, KILLED, SEEN, SEEN_LATER]);
        assert_eq!(
            twice.detected.as_ref().map(|d| d.by.as_str()),
            Some("alice")
        );
    }

    /// A fault whose revert never came, or failed, is marked in effect; one reverted
    /// (or never reversible) is not.
    #[test]
    fn a_fault_left_in_effect_is_marked() {
        let paused = r#"{"type":"outcome","id":"1-1","at":"2026-11-26T10:00:01Z","elapsed_ms":1,"result":"paused","summary":"s","revert":{"pid":2},"revert_after_ms":60000}"#;
        let failed = r#"{"type":"revert","id":"1-1","at":"2026-11-26T10:01:01Z","reason":"due","result":"failed","summary":"EPERM"}"#;
        let done = r#"{"type":"revert","id":"1-1","at":"2026-11-26T10:01:02Z","reason":"due","result":"reverted","summary":"ok"}"#;
        let left = Row::of(&fault(&[INTENT, paused]));
        assert!(left.in_effect);
        assert_eq!(left.shown_result(), "paused (in effect)");
        assert!(Row::of(&fault(&[INTENT, paused, failed])).in_effect);
        let back = Row::of(&fault(&[INTENT, paused, failed, done]));
        assert!(!back.in_effect);
        assert_eq!(back.shown_result(), "paused");
        assert!(!Row::of(&fault(&[INTENT, KILLED])).in_effect);
    }

    #[test]
    fn the_sums_count_every_ending_and_round_the_resilience() {
        let mut report = Report::since(None);
        for lines in [
            &[INTENT, KILLED, SEEN, BACK][..],
            &[INTENT, KILLED, BACK],
            &[INTENT, KILLED, SEEN, MISSED, LATE],
            &[DRY, KILLED],
            &[INTENT, FAILED],
        ] {
            report.add(&fault(lines));
        }
        let s = report.finish().summary;
        assert_eq!((s.faults, s.real, s.dry_runs, s.failed), (5, 3, 1, 1));
        assert_eq!((s.detected, s.undetected), (2, 1));
        assert_eq!((s.recovered, s.recovered_late, s.not_recovered), (2, 1, 0));
        assert_eq!(s.ttd.count, 2);
        assert_eq!(s.ttr.count, 3);
        // One coped of three judged: 33%.
        assert_eq!(s.resilience_percent, Some(33));
        let mut two = Report::since(None);
        two.add(&fault(&[INTENT, KILLED, SEEN]));
        two.add(&fault(&[INTENT, KILLED]));
        two.add(&fault(&[INTENT, KILLED, SEEN]));
        assert_eq!(two.finish().summary.resilience_percent, Some(66));
        let mut most = Report::since(None);
        for _ in 0..199 {
            most.add(&fault(&[INTENT, KILLED, SEEN]));
        }
        most.add(&fault(&[INTENT, KILLED]));
        assert_eq!(most.finish().summary.resilience_percent, Some(99));
        assert_eq!(
            Report::since(None).finish().summary.resilience_percent,
            None
        );
    }

    #[test]
    fn refusals_and_halts_are_counted_all_and_listed_the_latest() {
        let mut report = Report::since(None);
        let refused: RefusedRecord = serde_json::from_str(
            r#"{"id":"1-9","at":"2026-11-26T10:00:00Z","fault":"k","trigger":"poller","reason":"steady state not met: p: down"}"#,
        )
        .unwrap();
        for _ in 0..MAX_LISTED + 5 {
            report.refused(refused.clone());
        }
        let report = report.finish();
        assert_eq!(report.refused.len(), MAX_LISTED);
        assert_eq!(report.summary.steady_state_refusals, MAX_LISTED + 5);
    }

    #[test]
    fn the_lines_that_could_not_be_read_are_listed_the_first_and_counted() {
        let mut report = Report::since(None);
        report.problems((0..MAX_LISTED + 5).map(|n| format!("line {n}")).collect());
        assert_eq!(report.problems.len(), MAX_LISTED + 1);
        assert_eq!(report.problems[0], "line 0");
        assert_eq!(
            report.problems[MAX_LISTED],
            "and 5 more lines that could not be read"
        );
        let json = serde_json::to_value(Report::since(None).finish()).unwrap();
        assert!(json.get("problems").is_none(), "{json}");
    }

    #[test]
    fn the_seeds_and_nodes_of_the_faults_are_noted() {
        let mut report = Report::since(None);
        report.add(&fault(&[INTENT, KILLED]));
        let web = INTENT
            .replace("\"fault/k\"", "\"fault/k@node/web-1\"")
            .replace("\"master_seed\":1", "\"master_seed\":9");
        report.add(&fault(&[&web, KILLED]));
        report.add(&fault(&[&web, KILLED]));
        let report = report.finish();
        assert_eq!(report.seeds.iter().copied().collect::<Vec<_>>(), [1, 9]);
        assert_eq!(report.nodes.iter().collect::<Vec<_>>(), ["web-1"]);
        // Not in the JSON: the API's answer is as it was.
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("seeds").is_none() && json.get("nodes").is_none());
    }

    #[test]
    fn a_report_lists_the_latest_rows_and_counts_them_all() {
        let mut report = Report::since(None);
        for _ in 0..MAX_ROWS + 3 {
            report.add(&fault(&[INTENT, KILLED]));
        }
        let report = report.finish();
        assert_eq!(report.faults.len(), MAX_ROWS);
        assert_eq!(report.faults_not_listed, 3);
        assert_eq!(report.summary.faults, MAX_ROWS + 3);
    }

    #[test]
    fn spreads_take_the_nearest_rank() {
        assert_eq!(Spread::of(vec![]), Spread::default());
        let s = Spread::of(vec![5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!((s.count, s.median_ms, s.p90_ms), (10, Some(5), Some(9)));
        let one = Spread::of(vec![42]);
        assert_eq!((one.median_ms, one.p90_ms), (Some(42), Some(42)));
        let two = Spread::of(vec![10, 20]);
        assert_eq!((two.median_ms, two.p90_ms), (Some(10), Some(20)));
    }
}
