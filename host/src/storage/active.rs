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
    /// The last halt there, unless a resume followed it: a start after a crash starts
    /// halted (a halt's resume is manual).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    halted: Option<journal::HaltedRecord>,
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
            Record::Halted(halted) => self.halted = Some(halted),
            Record::Resumed(_) => self.halted = None,
            // What followed a fault says nothing of what is in effect.
            Record::Detected(_)
            | Record::Recovered(_)
            | Record::NotRecovered(_)
            | Record::Refused(_) => {}
        }
    }

    /// Whether the record on `line` may change what is open (or halted), by the few
    /// fields that say so: a dry run's intent, what follows a fault, and any record of a
    /// fault no longer open leave it as it is (most lines of a busy journal), and are not
    /// read whole.
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
            "detected" | "recovered" | "not-recovered" | "refused" => false,
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

    /// The halt in effect, `<probe>: <reason>`: the last one journaled, if no resume
    /// followed it.
    pub(crate) fn halted(&self) -> Option<String> {
        self.halted
            .as_ref()
            .map(|h| format!("{}: {}", h.probe, h.reason))
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
mod tests;
