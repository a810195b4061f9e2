//! The journal: every fault, from every trigger, as JSON Lines. An `intent` record is
//! written (and fsynced, unless it is a dry run) before the fault is injected, an
//! `outcome` record after, and a `revert` record when a reversible fault is undone. A
//! crash therefore loses nothing: an intent without an outcome says a fault may have
//! happened, and an outcome with revert state but no revert record is a fault still
//! active, which the next start reverts. A fault injected in two phases also has a
//! `prepared` record between its intent and its outcome, fsynced before the fault is
//! applied: the revert state of a target chosen but not yet acted on, so that a crash
//! before the outcome is on disk still leaves what undoes it.
//!
//! The file is opened for each record (faults are rare), so it can be rotated or
//! removed while the daemon runs; if a record cannot be written, the fault it announces
//! is not injected.

use std::{
    fs::{self, OpenOptions},
    io::{self, BufRead as _, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use nightmare_monkey_plugin_api::sdk::ProcessInfo;
use serde::{Deserialize, Serialize};

pub(crate) use super::drill::{
    DetectedRecord, HaltedRecord, NotRecoveredRecord, RecoveredRecord, RefusedRecord,
};
use super::injection::Injection;
pub use super::injection::Intent;
use crate::support::lock::lock;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum Record {
    /// A fault about to be injected.
    Intent(Intent),
    /// What the injection did.
    Outcome(OutcomeRecord),
    /// A reversible fault undone.
    Revert(RevertRecord),
    /// The target of a two-phase fault, chosen and about to be acted on.
    Prepared(PreparedRecord),
    /// Someone or something noticed a fault.
    Detected(DetectedRecord),
    /// The system came back after a fault.
    Recovered(RecoveredRecord),
    /// The system had not come back by the deadline.
    NotRecovered(NotRecoveredRecord),
    /// A fault refused: the steady state was not met.
    Refused(RefusedRecord),
    /// The monkey paused itself: a halt probe failed.
    Halted(HaltedRecord),
}

impl Record {
    /// The fault a record is about, if it is about one that has an intent.
    pub fn fault_id(&self) -> Option<&str> {
        match self {
            Record::Intent(i) => Some(&i.id),
            Record::Outcome(o) => Some(&o.id),
            Record::Revert(r) => Some(&r.id),
            Record::Prepared(p) => Some(&p.id),
            Record::Detected(d) => Some(&d.id),
            Record::Recovered(r) => Some(&r.id),
            Record::NotRecovered(r) => Some(&r.id),
            Record::Refused(_) | Record::Halted(_) => None,
        }
    }

    /// When it was written.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Record::Intent(i) => i.at,
            Record::Outcome(o) => o.at,
            Record::Revert(r) => r.at,
            Record::Prepared(p) => p.at,
            Record::Detected(d) => d.at,
            Record::Recovered(r) => r.at,
            Record::NotRecovered(r) => r.at,
            Record::Refused(r) => r.at,
            Record::Halted(h) => h.at,
        }
    }
}

/// The target of a two-phase fault before it is acted on: what undoes the fault once it
/// is applied (and is harmless if it never was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PreparedRecord {
    /// The intent's id.
    pub id: String,
    /// When the plugin chose it.
    pub at: DateTime<Utc>,
    /// The revert state of the target.
    pub revert: serde_json::Value,
    /// The process chosen, for process faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    /// One line for humans (`will stop sleep(PID:12) for 30s`).
    #[serde(default)]
    pub summary: String,
}

/// What an injection did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutcomeRecord {
    /// The intent's id.
    pub id: String,
    /// When the plugin answered.
    pub at: DateTime<Utc>,
    /// How long the plugin took.
    pub elapsed_ms: u64,
    /// One word (`killed`, `survived`, `vanished`, `paused`, `dry-run`, `failed`).
    pub result: String,
    /// The verb of the log line.
    #[serde(default)]
    pub action: String,
    /// The process acted on.
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    /// The signal sent.
    #[serde(default)]
    pub signal: Option<String>,
    /// One line for humans.
    #[serde(default)]
    pub summary: String,
    /// The plugin's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What reverting it needs, for a reversible fault that is now active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<serde_json::Value>,
    /// When it is due to be reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_due: Option<DateTime<Utc>>,
}

impl OutcomeRecord {
    /// The journal's line for what an injection did. Only an active fault keeps its
    /// revert state: it is what a restart reverts from.
    pub fn of(injection: &Injection) -> Self {
        let outcome = &injection.outcome;
        Self {
            id: injection.intent.id.clone(),
            at: injection.done,
            elapsed_ms: injection.elapsed_ms,
            result: outcome.result.clone(),
            action: outcome.action.clone(),
            process: outcome.process.clone(),
            signal: outcome.signal.clone(),
            summary: outcome.summary.clone(),
            error: None,
            revert: injection.revert_due.and(outcome.revert.clone()),
            revert_due: injection.revert_due,
        }
    }

    /// The journal's line for an injection the plugin failed.
    pub fn failed(id: &str, at: DateTime<Utc>, elapsed_ms: u64, error: String) -> Self {
        Self {
            id: id.to_owned(),
            at,
            elapsed_ms,
            result: "failed".to_owned(),
            action: String::new(),
            process: None,
            signal: None,
            summary: String::new(),
            error: Some(error),
            revert: None,
            revert_due: None,
        }
    }
}

/// A reversible fault undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RevertRecord {
    /// The intent's id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why now: `due`, `shutdown`, `pause`, `halt`, `recovery`.
    pub reason: String,
    /// `reverted`, `vanished` or `failed`.
    pub result: String,
    /// One line for humans.
    #[serde(default)]
    pub summary: String,
}

/// Refuses a journal path that exists but is no regular file, before anything opens
/// it: a directory cannot be appended to, and opening a FIFO blocks until a writer
/// comes (the daemon would hang, silently, before its first log line). A path that does
/// not exist yet is fine: the journal is created there.
pub(crate) fn check_path(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) => regular(&meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether what `meta` describes is a regular file; if not, an error saying what it is.
fn regular(meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(io::Error::other(format!(
        "it is {kind}, not a regular file"
    )))
}

/// The journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    // One writer at a time, so lines never interleave.
    writing: Mutex<()>,
    /// Bytes appended since whoever waits for growth last looked.
    grown: Mutex<u64>,
    grew: std::sync::Condvar,
}

/// What was read back, with anything wrong in it (tests read a journal whole; the
/// daemon and the commands never do).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// One sentence per line that could not be read (a torn last line after a crash).
    pub problems: Vec<String>,
}

/// The least free space on the journal's file system for a start: a few faults'
/// records (a real fault's are about 1.5 KB).
const MIN_FREE: u64 = 8 * 1024;

impl Journal {
    /// Opens the journal at `path`, creating its directory; a torn last line (a crash in
    /// the middle of a write) is closed with a newline so the next record starts clean.
    pub fn open(path: &Path) -> io::Result<Journal> {
        check_path(path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::support::state::create_private_dir(dir)?;
        // Opening for appends writes nothing: a full disk shows only at the first fault,
        // when every fault is refused. It is said now instead.
        let free = rustix::fs::statvfs(dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        if let Ok(free) = free.map_err(io::Error::from) {
            if free < MIN_FREE {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "no space left on its file system ({free} bytes free; a fault's records need some KiB)"
                    ),
                ));
            }
        }
        let mut file = open_locked(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Journal {
            path: path.to_owned(),
            writing: Mutex::new(()),
            grown: Mutex::new(0),
            grew: std::sync::Condvar::new(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; `durable` waits until it is on disk. A record always starts
    /// a line of its own: an append that fails (a full disk, an I/O error) is cut back
    /// off the file, and a torn line found at the end is closed first.
    pub(crate) fn append(&self, record: &Record, durable: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let _one_at_a_time = lock(&self.writing);
        let mut file = open_locked(&self.path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        let written =
            file.write_all(&line)
                .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // What part of it was written goes, so no later record is glued to it; but
            // only if nobody else (a `kill` beside the daemon that does not lock)
            // appended meanwhile: then the torn line stays, and the next append closes it.
            let now = file.metadata().map(|m| m.len()).unwrap_or(0);
            if now <= len + line.len() as u64 {
                let _ = file.set_len(len);
            }
            return Err(e);
        }
        *lock(&self.grown) += line.len() as u64;
        self.grew.notify_all();
        Ok(())
    }

    /// Renames the journal to an archive beside it (named by the instant) and starts a
    /// new one, with every writer locked out: this process's appends, and (by `flock`)
    /// other processes'. `settle` runs first, while the old file is whole and still the
    /// journal (the checkpoint reads it to its end). Returns the archive.
    pub(crate) fn rotate(&self, settle: impl FnOnce() -> io::Result<()>) -> io::Result<PathBuf> {
        let _one_at_a_time = lock(&self.writing);
        let old = open_locked(&self.path)?;
        settle()?;
        let archive = super::archive::archive_path(&self.path, Utc::now());
        if fs::symlink_metadata(&archive).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", archive.display()),
            ));
        }
        fs::rename(&self.path, &archive)?;
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?
            .sync_all()?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        drop(old);
        Ok(archive)
    }

    /// Runs `f` while no record is being appended (by this process): what it reads of
    /// the file is whole, and stays (an append that fails is cut back before `f` runs).
    pub(crate) fn quiet<T>(&self, f: impl FnOnce() -> T) -> T {
        let _one_at_a_time = lock(&self.writing);
        f()
    }

    /// Blocks until at least `bytes` were appended since the last call returned (no
    /// polling: the appends wake it).
    pub(crate) fn wait_grown(&self, bytes: u64) {
        let grown = lock(&self.grown);
        let mut grown = self
            .grew
            .wait_while(grown, |g| *g < bytes)
            .unwrap_or_else(|p| p.into_inner());
        *grown = 0;
    }
}

/// Opens the journal at `path` for appending and takes its lock (`flock`, exclusive;
/// released when the file is closed), the one every writer takes. A journal rotated
/// while the lock was awaited is the archive now: the path is opened again.
fn open_locked(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    loop {
        // Whatever the path has become meanwhile (a FIFO, a symlink to /dev/null), the
        // open never blocks and only a regular file is written: records written into
        // nothing would be records lost.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            // It names host processes and their command lines: this user's alone.
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        let held = file.metadata()?;
        regular(&held)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        match fs::metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => return Ok(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads a journal; a missing file is an empty one. Lines that cannot be read are
/// reported and skipped, never fatal.
#[cfg(test)]
pub(crate) fn read(path: &Path) -> io::Result<Contents> {
    let mut records = Vec::new();
    let problems = each(path, |record| records.push(record))?;
    Ok(Contents { records, problems })
}

/// Hands every record of a journal to `take`, in file order, holding one line at a time
/// in memory; returns one sentence per line that could not be read. A missing file is
/// an empty one.
pub(crate) fn each(path: &Path, take: impl FnMut(Record)) -> io::Result<Vec<String>> {
    each_from(path, 0, take).map(|(_, problems)| problems)
}

/// The same from byte `offset` on (the start of a line); also returns where the last
/// whole line ends (a line still being written, or torn, is left for later).
pub(crate) fn each_from(
    path: &Path,
    offset: u64,
    mut take: impl FnMut(Record),
) -> io::Result<(u64, Vec<String>)> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut end = offset;
    let mut problems = Vec::new();
    let mut reader = io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        let complete = line.ends_with(b"\n");
        if complete {
            end += line.len() as u64;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(text.trim_end()) {
            Ok(record) => take(record),
            Err(_) if !complete => problems.push(format!(
                "{}: line {number} is torn (the daemon stopped while writing it); ignored",
                path.display()
            )),
            Err(e) => problems.push(format!(
                "{}: line {number} is unreadable ({e}); ignored",
                path.display()
            )),
        }
    }
    Ok((end, problems))
}

/// Hands every record of a journal and its archives to `take`, the oldest archive first
/// and the journal last, one line at a time in memory; returns one sentence per line
/// that could not be read.
pub(crate) fn each_with_archives(
    path: &Path,
    mut take: impl FnMut(Record),
) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files = super::archive::newest_first(path)?;
    files.reverse();
    for file in files {
        problems.extend(each(&file, &mut take)?);
    }
    Ok(problems)
}

/// The lines of a journal and then of its archives, from the last to the first: see
/// [`lines_backwards`]. [`AllBackwards::position`] says where the line just read is.
pub(crate) fn lines_backwards_with_archives(path: &Path) -> io::Result<AllBackwards> {
    let mut files = super::archive::newest_first(path)?;
    files.reverse();
    Ok(AllBackwards {
        files,
        reading: None,
    })
}

/// Where a line of a journal starts: the file (by device and inode, which it keeps when
/// it is rotated into an archive) and the byte offset in it. What a page of history
/// hands back to ask for the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.dev, self.ino, self.offset)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(dev)), Some(Ok(ino)), Some(Ok(offset)), None) => {
                Ok(Position { dev, ino, offset })
            }
            _ => Err(format!(
                "invalid before `{text}`: expected the `next` of a page, like 2049.1835.42"
            )),
        }
    }
}

/// See [`lines_backwards_with_archives`].
pub(crate) struct AllBackwards {
    /// The files still to read, the next one last.
    files: Vec<PathBuf>,
    reading: Option<Backwards>,
}

impl AllBackwards {
    /// Where the line just read starts.
    pub(crate) fn position(&self) -> Option<Position> {
        self.reading.as_ref().map(|r| Position {
            dev: r.dev,
            ino: r.ino,
            offset: r.offset,
        })
    }
}

impl Iterator for AllBackwards {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(line) = self.reading.as_mut().and_then(Iterator::next) {
                return Some(line);
            }
            let file = self.files.pop()?;
            match lines_backwards(&file) {
                Ok(lines) => self.reading = Some(lines),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The lines of a journal from the last to the first (without their newline), read in
/// blocks from the end: what a look at the recent past costs is the recent past. A
/// missing file has none.
pub(crate) fn lines_backwards(path: &Path) -> io::Result<Backwards> {
    use std::os::unix::fs::MetadataExt as _;
    let file = match fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let meta = match &file {
        Some(f) => Some(f.metadata()?),
        None => None,
    };
    Ok(Backwards {
        file,
        end: meta.as_ref().map_or(0, fs::Metadata::len),
        dev: meta.as_ref().map_or(0, |m| m.dev()),
        ino: meta.as_ref().map_or(0, |m| m.ino()),
        offset: 0,
        carry: Vec::new(),
        ready: Vec::new(),
        skipping: false,
    })
}

/// See [`lines_backwards`].
pub(crate) struct Backwards {
    file: Option<fs::File>,
    /// Where the part not read yet ends.
    end: u64,
    /// The file's device and inode.
    dev: u64,
    ino: u64,
    /// Where the line returned last starts.
    offset: u64,
    /// The start of a line whose beginning is still to be read.
    carry: Vec<u8>,
    /// Whole lines read, with where each starts, the last one first... popped from the
    /// back.
    ready: Vec<(u64, Vec<u8>)>,
    /// A line too long to keep is being passed over.
    skipping: bool,
}

const BLOCK: u64 = 64 * 1024;

/// The longest line read back; a longer one is skipped.
const MAX_LINE: usize = 4 * 1024 * 1024;

impl Iterator for Backwards {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::os::unix::fs::FileExt as _;
        loop {
            if let Some((offset, line)) = self.ready.pop() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                self.offset = offset;
                return Some(Ok(line));
            }
            let file = self.file.as_ref()?;
            if self.end == 0 {
                self.file = None;
                let first = std::mem::take(&mut self.carry);
                if first.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                self.offset = 0;
                return Some(Ok(first));
            }
            // A line of megabytes is no record (zeros after a crash, say): dropped, so
            // that reading back stays linear.
            if self.carry.len() > MAX_LINE {
                self.carry.clear();
                self.skipping = true;
            }
            let start = self.end.saturating_sub(BLOCK);
            let mut block = vec![0u8; (self.end - start) as usize];
            if let Err(e) = file.read_exact_at(&mut block, start) {
                self.file = None;
                return Some(Err(e));
            }
            self.end = start;
            block.extend_from_slice(&self.carry);
            let mut at = start;
            let mut parts: Vec<(u64, Vec<u8>)> = block
                .split(|b| *b == b'\n')
                .map(|part| {
                    let here = at;
                    at += part.len() as u64 + 1;
                    (here, part.to_vec())
                })
                .collect();
            // The first part may be the end of a line that starts in an earlier block.
            let (_, first) = parts.remove(0);
            if self.skipping {
                // Passing over a dropped line: what of it this block holds goes too.
                match parts.pop() {
                    None => self.carry = Vec::new(),
                    Some(_) => {
                        self.skipping = false;
                        self.carry = first;
                    }
                }
            } else {
                self.carry = first;
            }
            self.ready = parts;
        }
    }
}

/// Where a look back starts (`history --since`, `GET /api/history?since=`): an RFC 3339
/// instant, or a duration back from now (`2h`, `30m`).
pub(crate) fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    match humantime::parse_duration(text) {
        Ok(d) => chrono::TimeDelta::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .ok_or_else(|| format!("since `{text}` is too long ago")),
        Err(_) => Err(format!(
            "invalid since `{text}`: expected an instant like 2026-12-01T09:00:00+09:00 or a duration like 2h"
        )),
    }
}

/// One fault as the answer key shows it: its intent joined with what followed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The intent.
    #[serde(flatten)]
    pub intent: Intent,
    /// What happened (none: the daemon stopped before the plugin answered).
    pub outcome: Option<OutcomeRecord>,
    /// When and how it was reverted, for reversible faults.
    pub reverted: Option<RevertRecord>,
    /// The target of a two-phase fault, journaled before it was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedRecord>,
    /// Who or what noticed it, first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected: Option<DetectedRecord>,
    /// When the system came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<RecoveredRecord>,
    /// The deadline it missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_recovered: Option<NotRecoveredRecord>,
}

impl Entry {
    /// A fault asked for, nothing known of it yet.
    pub fn of(intent: Intent) -> Self {
        Self {
            intent,
            outcome: None,
            reverted: None,
            prepared: None,
            detected: None,
            recovered: None,
            not_recovered: None,
        }
    }

    /// Takes a later record of this fault (its outcome, revert, detection ...); the
    /// first detection stands, the latest of the others.
    pub fn take(&mut self, record: Record) {
        match record {
            Record::Outcome(o) => self.outcome = Some(o),
            Record::Revert(r) => self.reverted = Some(r),
            Record::Prepared(p) => self.prepared = Some(p),
            Record::Detected(d) => {
                self.detected.get_or_insert(d);
            }
            Record::Recovered(r) => self.recovered = Some(r),
            Record::NotRecovered(r) => self.not_recovered = Some(r),
            Record::Intent(_) | Record::Refused(_) | Record::Halted(_) => {}
        }
    }

    /// Whether this is a reversible fault not yet reverted (a revert that failed leaves
    /// it active: the next start tries again): one whose outcome carries revert state,
    /// or a two-phase fault prepared and not settled (the daemon stopped before its
    /// outcome was on disk: it may be in effect).
    pub fn is_active(&self) -> bool {
        self.revert_state().is_some()
    }

    /// What undoes it, while it is active.
    pub fn revert_state(&self) -> Option<&serde_json::Value> {
        if self.intent.dry_run || self.reverted.as_ref().is_some_and(|r| r.result != "failed") {
            return None;
        }
        match &self.outcome {
            Some(outcome) => outcome.revert.as_ref(),
            None => self.prepared.as_ref().map(|p| &p.revert),
        }
    }
}

/// Joins the records into one entry per fault, in the order they were asked for.
#[cfg(test)]
pub(crate) fn entries(records: &[Record]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for record in records {
        match record {
            Record::Intent(intent) => {
                index.insert(intent.id.clone(), out.len());
                out.push(Entry::of(intent.clone()));
            }
            other => {
                if let Some(&i) = other.fault_id().and_then(|id| index.get(id)) {
                    out[i].take(other.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
