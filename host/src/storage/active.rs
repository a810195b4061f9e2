//! What a start needs of the past, without reading the past: the faults that may be in
//! effect, from a checkpoint beside the journal (`<journal>.checkpoint`) and the records
//! written since; and the budget's recent faults, read from the journal's end backwards
//! only as far as the limits look.
//!
//! The journal stays the record of everything, and the checkpoint is derived from it
//! alone: where in the journal it was taken (the file's identity and a byte offset) and
//! the faults that were open there (an intent not yet settled, or an outcome with revert
//! state and no successful revert). A start applies the records after the offset to
//! that set; the daemon takes a new checkpoint at start, whenever the journal has grown
//! by [`CHECKPOINT_EVERY`] since the last, and on the way out. What a start reads is
//! therefore what is open plus what was written since the last checkpoint, whatever the
//! history. Whoever wrote the records (the daemon, `kill`), they count. A journal
//! replaced, emptied or cut shorter than the offset is read again from its start, its
//! records applied on top of the checkpoint's.

use std::{
    collections::BTreeMap,
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    archive,
    journal::{self, Entry, Record},
};
use crate::support::state;

/// How much the journal may grow before the daemon takes a new checkpoint.
pub(crate) const CHECKPOINT_EVERY: u64 = 4 * 1024 * 1024;

/// The checkpoint file of the journal at `journal`.
pub(crate) fn checkpoint_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// The faults open at a point of the journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The journal file's device and inode: another file is read from its start.
    dev: u64,
    ino: u64,
    /// How far the journal was applied: the end of its last whole line.
    pub offset: u64,
    /// The bytes just before the offset, as they were: a file replaced or rewritten
    /// under the same name (and inode) does not hold them there.
    #[serde(default)]
    mark: Vec<u8>,
    /// The faults open there, by id.
    open: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// The checkpoint beside `journal`, or an empty one (from the journal's start) if
    /// there is none or it cannot be read.
    #[cfg(test)]
    pub(crate) fn load(journal: &Path) -> Self {
        Self::load_saying(journal).0
    }

    /// [`Checkpoint::load`], with why a checkpoint that is there could not be used.
    pub(crate) fn load_saying(journal: &Path) -> (Self, Option<String>) {
        let path = checkpoint_path(journal);
        let why = match std::fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (Self::default(), None),
            Err(e) => e.to_string(),
            Ok(text) => match serde_json::from_slice(&text) {
                Ok(checkpoint) => return (checkpoint, None),
                Err(e) => e.to_string(),
            },
        };
        let said = format!(
            "the checkpoint {} cannot be read ({why}); the journal is read from its start, with the archives of the last two days",
            path.display()
        );
        (Self::default(), Some(said))
    }

    /// Applies what the journal holds past the checkpoint; returns the problems met
    /// (torn or unreadable lines), one sentence each.
    pub(crate) fn catch_up(&mut self, journal: &Path) -> io::Result<Vec<String>> {
        let meta = match std::fs::metadata(journal) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        let same = (meta.dev(), meta.ino()) == (self.dev, self.ino)
            && meta.len() >= self.offset
            && mark(journal, self.offset)? == self.mark;
        if !same {
            // The journal was rotated (or replaced) since: the rest of the file the
            // checkpoint was taken in, under its archive's name, and every archive after
            // it, before the journal from its start.
            // One that cannot be read is said and passed over: the rest, the journal
            // above all, are read all the same.
            let (archives, unread) = self.archives_since(journal)?;
            problems.extend(unread);
            for (archive, from) in archives {
                match journal::each_from(&archive, from, |record| self.apply(record)) {
                    Ok((_, more)) => problems.extend(more),
                    Err(e) => problems.push(unreadable_archive(&archive, &e)),
                }
            }
            self.dev = meta.dev();
            self.ino = meta.ino();
            self.offset = 0;
        }
        let (end, more) = journal::each_line_from(journal, self.offset, |line| {
            if !self.may_change(line) {
                return Ok(());
            }
            self.apply(serde_json::from_str(line)?);
            Ok(())
        })?;
        problems.extend(more);
        self.offset = end;
        self.mark = mark(journal, end)?;
        self.prune(Utc::now());
        Ok(problems)
    }

    /// The archives of `journal` a checkpoint that no longer matches it still has to
    /// read, oldest first, each with where to start: the checkpoint's own file (it keeps
    /// its inode when rotated) from the offset, and those after it whole. Without a
    /// checkpoint, those rotated in the last two days (a fault open longer than that
    /// was in a checkpoint); with one whose file is gone, none.
    /// The checkpoint's own file whose mark cannot be read is taken for the one (it is
    /// the same file): reading it is said to fail and passed over, and the archives
    /// after it are read all the same. Archives that cannot be listed are said, and
    /// none is read.
    fn archives_since(&self, journal: &Path) -> io::Result<(Vec<Since>, Vec<String>)> {
        let archives = match archive::archives(journal) {
            Ok(archives) => archives,
            Err(e) => {
                let said = format!(
                    "cannot list the archives of {} ({e}); none is read: a fault only they hold open is not reverted",
                    journal.display()
                );
                return Ok((Vec::new(), vec![said]));
            }
        };
        let first = if (self.dev, self.ino) == (0, 0) {
            let since = Utc::now() - chrono::TimeDelta::days(2);
            archives.iter().position(|a| a.at >= since).map(|i| (i, 0))
        } else {
            let mut found = None;
            for (i, a) in archives.iter().enumerate() {
                if (a.dev, a.ino) == (self.dev, self.ino) && a.len >= self.offset {
                    match mark(&a.path, self.offset) {
                        Ok(mark) if mark != self.mark => {}
                        _ => found = Some((i, self.offset)),
                    }
                }
            }
            found
        };
        let since = match first {
            Some((i, offset)) => archives[i..]
                .iter()
                .enumerate()
                .map(|(k, a)| (a.path.clone(), if k == 0 { offset } else { 0 }))
                .collect(),
            None => Vec::new(),
        };
        Ok((since, Vec::new()))
    }

    fn apply(&mut self, record: Record) {
        match record {
            // Read again (a journal rewritten or cut short is read from its start), an
            // intent never takes the place of what is known of it already.
            Record::Intent(intent) if !intent.dry_run => {
                self.open
                    .entry(intent.id.clone())
                    .or_insert_with(|| Entry::of(intent));
            }
            Record::Intent(_) => {}
            Record::Prepared(prepared) => {
                if let Some(entry) = self.open.get_mut(&prepared.id) {
                    entry.prepared = Some(prepared);
                }
            }
            Record::Outcome(outcome) => {
                if outcome.revert.is_none() {
                    self.open.remove(&outcome.id);
                } else if let Some(entry) = self.open.get_mut(&outcome.id) {
                    entry.outcome = Some(outcome);
                }
            }
            Record::Revert(revert) => {
                if revert.result == "failed" {
                    if let Some(entry) = self.open.get_mut(&revert.id) {
                        entry.reverted = Some(revert);
                    }
                } else {
                    self.open.remove(&revert.id);
                }
            }
            // What followed a fault says nothing of what is in effect.
            Record::Detected(_)
            | Record::Recovered(_)
            | Record::NotRecovered(_)
            | Record::Refused(_)
            | Record::Halted(_) => {}
        }
    }

    /// Whether the record on `line` may change what is open, by the few fields that say
    /// so: a dry run's intent, what follows a fault, and any record of a fault no longer
    /// open leave it as it is (most lines of a busy journal), and are not read whole.
    fn may_change(&self, line: &str) -> bool {
        #[derive(Deserialize)]
        struct Peek<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default, borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            dry_run: Option<bool>,
        }
        let Ok(peek) = serde_json::from_str::<Peek>(line) else {
            // Read whole, to say what is wrong with it.
            return true;
        };
        let open = |id: &Option<std::borrow::Cow<str>>| {
            id.as_deref().is_some_and(|id| self.open.contains_key(id))
        };
        match &*peek.kind {
            "intent" => peek.dry_run != Some(true),
            "outcome" | "prepared" | "revert" => open(&peek.id),
            "detected" | "recovered" | "not-recovered" | "refused" | "halted" => false,
            _ => true,
        }
    }

    /// An intent that never got an outcome or a prepared target names nothing to undo:
    /// after a day it is no longer kept waiting for one.
    fn prune(&mut self, now: DateTime<Utc>) {
        let day = chrono::TimeDelta::days(1);
        self.open
            .retain(|_, e| e.outcome.is_some() || e.prepared.is_some() || now - e.intent.at < day);
    }

    /// The faults in effect: outcomes with revert state not reverted, and two-phase
    /// faults prepared but never settled.
    pub(crate) fn active(&self) -> Vec<Entry> {
        self.open
            .values()
            .filter(|e| e.is_active())
            .cloned()
            .collect()
    }

    /// Catches up with `journal` while no record is being appended to it (by this
    /// process: what is read is whole, and stays), then writes it beside it.
    pub(crate) fn take(&mut self, journal: &journal::Journal) -> io::Result<()> {
        let path = journal.path();
        journal.quiet(|| self.catch_up(path).and_then(|_| self.save(path)))
    }

    /// Writes it beside `journal`, atomically.
    pub(crate) fn save(&self, journal: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        state::write_atomic(&checkpoint_path(journal), &text)
    }
}

/// An archive to read, and from which byte.
type Since = (PathBuf, u64);

/// What is said of an archive that cannot be read.
fn unreadable_archive(archive: &Path, e: &io::Error) -> String {
    format!(
        "cannot read the archive {} ({e}); passed over: a fault it alone holds open is not reverted",
        archive.display()
    )
}

/// The (up to) 64 bytes of `journal` before `offset`.
fn mark(journal: &Path, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let start = offset.saturating_sub(64);
    let mut bytes = vec![0u8; (offset - start) as usize];
    if !bytes.is_empty() {
        std::fs::File::open(journal)?.read_exact_at(&mut bytes, start)?;
    }
    Ok(bytes)
}

/// When the faults that count against a budget happened, oldest first: the faults of
/// the last day (not one its plugin failed), at most `keep` of the latest, read from the
/// journal's end backwards.
pub(crate) fn spent(
    journal: &Path,
    keep: usize,
    now: DateTime<Utc>,
) -> io::Result<Vec<DateTime<Utc>>> {
    let mut times = Vec::new();
    if keep == 0 {
        return Ok(times);
    }
    let day = chrono::TimeDelta::days(1);
    let mut failed = std::collections::HashSet::new();
    for line in journal::lines_backwards_with_archives(journal)? {
        let line = line?;
        let Ok(record) = serde_json::from_slice::<Record>(&line) else {
            continue;
        };
        match record {
            Record::Outcome(o) if o.result == "failed" => {
                failed.insert(o.id);
            }
            Record::Intent(intent) => {
                if now - intent.at >= day {
                    break;
                }
                if !failed.contains(&intent.id) {
                    times.push(intent.at);
                    if times.len() >= keep {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    times.reverse();
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::journal::{Journal, OutcomeRecord, RevertRecord};

    fn intent(id: &str, at: DateTime<Utc>, dry_run: bool) -> Record {
        Record::Intent(journal::Intent {
            id: id.into(),
            at,
            fault: "pause".into(),
            plugin: "process-pause".into(),
            trigger: "http".into(),
            requested_by: None,
            desc: "d".into(),
            dry_run,
            master_seed: 1,
            stream: "fault/pause".into(),
            stream_position: 0,
            seed: 1,
            fleet: None,
        })
    }

    fn outcome(id: &str, result: &str, revert: bool) -> Record {
        let mut o = OutcomeRecord::failed(id, Utc::now(), 1, String::new());
        o.result = result.into();
        o.error = None;
        o.revert = revert.then(|| serde_json::json!({ "pid": 7 }));
        Record::Outcome(o)
    }

    fn revert(id: &str, result: &str) -> Record {
        Record::Revert(RevertRecord {
            id: id.into(),
            at: Utc::now(),
            reason: "due".into(),
            result: result.into(),
            summary: String::new(),
        })
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nm-active-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("journal.jsonl")
    }

    #[test]
    fn a_checkpoint_carries_what_is_open_and_a_start_reads_only_what_follows() {
        let path = scratch("checkpoint");
        let journal = Journal::open(&path).unwrap();
        let now = Utc::now();
        for record in [
            intent("1", now, false),
            outcome("1", "paused", true), // active
            intent("2", now, false),
            outcome("2", "killed", false), // done
            intent("3", now, true),
            outcome("3", "dry-run", true), // a dry run is never active
            intent("4", now, false),
            outcome("4", "paused", true),
            revert("4", "failed"),   // still in effect
            intent("5", now, false), // in flight: its outcome may come later
        ] {
            journal.append(&record, false).unwrap();
        }
        let mut checkpoint = Checkpoint::load(&path);
        assert!(checkpoint.catch_up(&path).unwrap().is_empty());
        let ids = |c: &Checkpoint| {
            c.active()
                .into_iter()
                .map(|e| e.intent.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&checkpoint), ["1", "4"]);
        checkpoint.save(&path).unwrap();
        let at = checkpoint.offset;
        assert_eq!(at, std::fs::metadata(&path).unwrap().len());
        for record in [outcome("5", "paused", true), revert("1", "reverted")] {
            journal.append(&record, false).unwrap();
        }
        // A start: the checkpoint, then only what was written after it.
        let mut next = Checkpoint::load(&path);
        assert_eq!(next.offset, at);
        next.catch_up(&path).unwrap();
        assert_eq!(ids(&next), ["4", "5"]);
        // Rewritten in place (same inode), longer than the offset: read from its start.
        let mut rewritten = next.clone();
        let text = std::fs::read(&path).unwrap();
        let mut other = b"\n".repeat(text.len() + 10);
        other.extend_from_slice(&serde_json::to_vec(&revert("5", "reverted")).unwrap());
        other.push(b'\n');
        std::fs::write(&path, &other).unwrap();
        rewritten.catch_up(&path).unwrap();
        assert_eq!(
            ids(&rewritten),
            ["4"],
            "the record at the new file's end was read"
        );
        std::fs::write(&path, &text).unwrap();
        // The journal replaced by another file: read from its start, on top.
        std::fs::remove_file(&path).unwrap();
        let journal = Journal::open(&path).unwrap();
        journal.append(&revert("4", "reverted"), false).unwrap();
        next.catch_up(&path).unwrap();
        assert_eq!(ids(&next), ["5"]);
    }

    /// Only records that may change what is open are read whole; the rest are skipped by
    /// their type, dry run and id, and a line that cannot be peeked at is read whole (to
    /// say what is wrong with it).
    #[test]
    fn only_records_that_may_change_what_is_open_are_read_whole() {
        let now = Utc::now();
        let mut checkpoint = Checkpoint::default();
        let line = |r: Record| serde_json::to_string(&r).unwrap();
        assert!(checkpoint.may_change(&line(intent("a\"1", now, false))));
        assert!(!checkpoint.may_change(&line(intent("a\"1", now, true))));
        checkpoint.apply(intent("a\"1", now, false));
        for (open, closed) in [
            (
                outcome("a\"1", "paused", true),
                outcome("b", "paused", true),
            ),
            (
                outcome("a\"1", "killed", false),
                outcome("b", "killed", false),
            ),
            (revert("a\"1", "reverted"), revert("b", "reverted")),
        ] {
            assert!(checkpoint.may_change(&line(open)));
            assert!(!checkpoint.may_change(&line(closed)));
        }
        let prepared = |id: &str| {
            format!(r#"{{"type":"prepared","id":"{id}","at":"2026-12-06T00:00:00Z","revert":1}}"#)
        };
        assert!(checkpoint.may_change(&prepared("a\\\"1")));
        assert!(!checkpoint.may_change(&prepared("b")));
        for kind in [
            "detected",
            "recovered",
            "not-recovered",
            "refused",
            "halted",
        ] {
            let text = format!(r#"{{"type":"{kind}","id":"a\"1"}}"#);
            assert!(!checkpoint.may_change(&text), "{kind}");
        }
        assert!(checkpoint.may_change(r#"{"type":"something-new","id":"b"}"#));
        assert!(checkpoint.may_change("{not json"));
        assert!(checkpoint.may_change(r#"{"id":"b"}"#));
    }

    fn ids(c: &Checkpoint) -> Vec<String> {
        c.active().into_iter().map(|e| e.intent.id).collect()
    }

    /// A rotation loses nothing: what was appended before it is in the archive, what
    /// after in the new journal, and a checkpoint taken before it (the daemon killed
    /// between the rename and the next checkpoint) reads the rest of its file under the
    /// archive's name, then the new journal.
    #[test]
    fn a_rotation_loses_no_record_even_for_a_checkpoint_taken_before_it() {
        let path = scratch("rotate");
        let journal = Journal::open(&path).unwrap();
        let now = Utc::now();
        journal.append(&intent("1", now, false), false).unwrap();
        journal
            .append(&outcome("1", "paused", true), false)
            .unwrap();
        let mut before = Checkpoint::load(&path);
        before.catch_up(&path).unwrap();
        assert_eq!(ids(&before), ["1"]);
        // Written after that checkpoint, before the rotation.
        journal.append(&intent("2", now, false), false).unwrap();
        journal
            .append(&outcome("2", "paused", true), false)
            .unwrap();
        let mut settled = None;
        let archive = journal
            .rotate(|| {
                settled = Some(std::fs::metadata(&path)?.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(settled, Some(std::fs::metadata(&archive).unwrap().len()));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "a new journal");
        journal.append(&revert("1", "reverted"), false).unwrap();
        journal.append(&intent("3", now, false), false).unwrap();
        journal
            .append(&outcome("3", "paused", true), false)
            .unwrap();
        let mut after = before.clone();
        after.catch_up(&path).unwrap();
        assert_eq!(ids(&after), ["2", "3"]);
        // Without a checkpoint, the archives of the last two days are read too.
        let mut fresh = Checkpoint::default();
        fresh.catch_up(&path).unwrap();
        assert_eq!(ids(&fresh), ["2", "3"]);
        // Both files, read as one journal: newest first backwards, oldest first forward.
        let back: Vec<String> = journal::lines_backwards_with_archives(&path)
            .unwrap()
            .map(|l| serde_json::from_slice::<Record>(&l.unwrap()).unwrap())
            .map(|r| match r {
                Record::Intent(i) => format!("i{}", i.id),
                Record::Outcome(o) => format!("o{}", o.id),
                Record::Revert(r) => format!("r{}", r.id),
                Record::Prepared(p) => format!("p{}", p.id),
                other => format!("?{:?}", other.fault_id()),
            })
            .collect();
        assert_eq!(back, ["o3", "i3", "r1", "o2", "i2", "o1", "i1"]);
        let mut forward = Vec::new();
        journal::each_with_archives(&path, |r| {
            if let Record::Intent(i) = r {
                forward.push(i.id);
            }
        })
        .unwrap();
        assert_eq!(forward, ["1", "2", "3"]);
    }

    /// The checkpoint's own file, rotated since, that cannot be read (root's, mode
    /// 000, for a daemon without `CAP_DAC_OVERRIDE`): it is passed over, and the
    /// archives after it and the journal are read all the same.
    #[test]
    fn an_unreadable_archive_of_the_checkpoint_hides_none_after_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = scratch("rotate-unreadable");
        let journal = Journal::open(&path).unwrap();
        let now = Utc::now();
        let open = |id: &str| {
            journal.append(&intent(id, now, false), false).unwrap();
            journal.append(&outcome(id, "paused", true), false).unwrap();
        };
        open("1");
        let mut before = Checkpoint::load(&path);
        before.catch_up(&path).unwrap();
        open("2");
        let first = journal.rotate(|| Ok(())).unwrap();
        open("3");
        // Archives are named by the millisecond: the next one a millisecond later.
        let named = Utc::now().timestamp_millis();
        while Utc::now().timestamp_millis() <= named {
            std::hint::spin_loop();
        }
        let second = journal.rotate(|| Ok(())).unwrap();
        assert_ne!(first, second);
        open("4");
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o000)).unwrap();
        let (caught, problems) = without_dac_override(|| {
            let mut after = before.clone();
            let problems = after.catch_up(&path).unwrap();
            (after, problems)
        });
        assert_eq!(ids(&caught), ["1", "3", "4"], "{problems:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "cannot read the archive {} (Permission denied",
                first.display()
            )),
            "{problems:?}"
        );
    }

    /// Runs `f` on this thread without the capabilities that read any file (as a
    /// daemon run by systemd without them), then gives them back.
    fn without_dac_override<T>(f: impl FnOnce() -> T) -> T {
        use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
        let had = capabilities(None).unwrap();
        let mut less = had;
        less.effective -= CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
        set_capabilities(None, less).unwrap();
        let made = f();
        set_capabilities(None, had).unwrap();
        made
    }

    /// A writer that waited for the lock while the journal was rotated (a `kill`
    /// beside the daemon) writes to the new journal, never into the archive.
    #[test]
    fn an_append_waiting_through_a_rotation_lands_in_the_new_journal() {
        let path = scratch("rotate-lock");
        let journal = std::sync::Arc::new(Journal::open(&path).unwrap());
        journal
            .append(&intent("1", Utc::now(), false), false)
            .unwrap();
        // Another process's lock, held while the file is renamed under it.
        let other = std::fs::File::open(&path).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = std::thread::spawn({
            let journal = journal.clone();
            move || {
                tx.send(()).unwrap();
                journal.append(&intent("2", Utc::now(), false), false)
            }
        });
        rx.recv().unwrap();
        let archive = path.with_file_name("journal.jsonl-20260101T000000.000Z");
        std::fs::rename(&path, &archive).unwrap();
        std::fs::write(&path, "").unwrap();
        drop(other);
        waiting.join().unwrap().unwrap();
        let ids = |file: &Path| {
            let mut all = Vec::new();
            journal::each(file, |r| {
                if let Record::Intent(i) = r {
                    all.push(i.id);
                }
            })
            .unwrap();
            all
        };
        assert_eq!(ids(&archive), ["1"]);
        assert_eq!(ids(&path), ["2"]);
    }

    #[test]
    fn the_budget_reads_the_end_of_the_journal_back_only_as_far_as_it_looks() {
        let path = scratch("spent");
        let journal = Journal::open(&path).unwrap();
        let now = Utc::now();
        let ago = |mins| now - chrono::TimeDelta::minutes(mins);
        journal
            .append(&intent("old", ago(2 * 24 * 60), false), false)
            .unwrap();
        for i in 0..50 {
            journal
                .append(&intent(&format!("a{i}"), ago(50 - i), false), false)
                .unwrap();
        }
        journal.append(&intent("f", ago(0), false), false).unwrap();
        journal
            .append(&outcome("f", "failed", false), false)
            .unwrap();
        let all = spent(&path, 100, now).unwrap();
        assert_eq!(
            all.len(),
            50,
            "the last day's, not the failed one nor the old one"
        );
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        assert_eq!(spent(&path, 3, now).unwrap(), all[47..].to_vec());
        assert!(spent(&path, 0, now).unwrap().is_empty());
        assert!(spent(&path.with_extension("none"), 5, now)
            .unwrap()
            .is_empty());
        // Rotated in between, the same faults count: the archives are read on back.
        journal.rotate(|| Ok(())).unwrap();
        journal.append(&intent("n", ago(0), false), false).unwrap();
        let across = spent(&path, 100, now).unwrap();
        assert_eq!(across.len(), 51);
        assert_eq!(across[..50], all[..]);
    }

    #[test]
    fn lines_come_back_last_first_across_blocks() {
        let path = scratch("backwards");
        let lines: Vec<String> = (0..5000)
            .map(|i| format!("{i}:{}", "x".repeat(i % 97)))
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n\n").unwrap();
        let back: Vec<String> = journal::lines_backwards(&path)
            .unwrap()
            .map(|l| String::from_utf8(l.unwrap()).unwrap())
            .collect();
        let mut expected = lines;
        expected.reverse();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_line_of_megabytes_is_passed_over_not_piled_up() {
        let path = scratch("huge-line");
        let mut text = b"first\n".to_vec();
        text.extend(std::iter::repeat_n(b'z', 10 * 1024 * 1024));
        text.extend_from_slice(b"\nlast\n");
        std::fs::write(&path, &text).unwrap();
        let started = std::time::Instant::now();
        let back: Vec<Vec<u8>> = journal::lines_backwards(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, [b"last".to_vec(), b"first".to_vec()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
