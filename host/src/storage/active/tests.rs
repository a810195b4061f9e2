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

/// The last halt with no resume after it is carried by the checkpoint: a start after a
/// crash reads it from there and what followed, never the whole journal.
#[test]
fn a_checkpoint_carries_the_last_halt_until_a_resume() {
    let path = scratch("halted");
    let journal = Journal::open(&path).unwrap();
    let halted = |reason: &str| {
        Record::Halted(journal::HaltedRecord {
            at: Utc::now(),
            probe: "command false".into(),
            reason: reason.into(),
        })
    };
    let resumed = Record::Resumed(journal::ResumedRecord {
        at: Utc::now(),
        halt: "command false: exited 1".into(),
    });
    journal.append(&halted("exited 1"), false).unwrap();
    let mut checkpoint = Checkpoint::load(&path);
    checkpoint.catch_up(&path).unwrap();
    assert_eq!(
        checkpoint.halted().as_deref(),
        Some("command false: exited 1")
    );
    checkpoint.save(&path).unwrap();
    // A start reads it from the checkpoint (the journal before it is gone here).
    std::fs::write(&path, b"").unwrap();
    let journal = Journal::open(&path).unwrap();
    let mut next = Checkpoint::load(&path);
    next.catch_up(&path).unwrap();
    assert_eq!(next.halted().as_deref(), Some("command false: exited 1"));
    journal.append(&resumed, false).unwrap();
    next.catch_up(&path).unwrap();
    assert_eq!(next.halted(), None);
    journal.append(&halted("exited 2"), false).unwrap();
    next.catch_up(&path).unwrap();
    assert_eq!(next.halted().as_deref(), Some("command false: exited 2"));
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
    for kind in ["detected", "recovered", "not-recovered", "refused"] {
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
