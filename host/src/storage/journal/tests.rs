use super::*;

fn intent(id: &str) -> Record {
    Record::Intent(Intent {
        id: id.into(),
        at: Utc::now(),
        fault: "process-kill".into(),
        plugin: "process-kill".into(),
        trigger: "timer".into(),
        requested_by: None,
        desc: "by monkey".into(),
        dry_run: false,
        master_seed: 1,
        stream: "fault/process-kill".into(),
        stream_position: 0,
        seed: 2,
        fleet: None,
    })
}

#[test]
fn only_a_regular_file_or_nothing_is_a_journal() {
    let dir = std::env::temp_dir().join(format!("nm-journal-kind-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    assert!(check_path(&dir.join("new.jsonl")).is_ok());
    fs::write(dir.join("file"), "").unwrap();
    assert!(check_path(&dir.join("file")).is_ok());
    let error = Journal::open(&dir).unwrap_err();
    assert_eq!(error.to_string(), "it is a directory, not a regular file");
    let fifo = dir.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    // Opening it would block for good; the check refuses it first.
    assert_eq!(
        Journal::open(&fifo).unwrap_err().to_string(),
        "it is a FIFO, not a regular file"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// A file that holds something else (`journal: "/etc/passwd"`) or a path on `/proc` is
/// refused before it is opened; a journal, an empty file, or one a crash left zeros or
/// a newline at the start of passes.
#[test]
fn a_file_of_something_else_or_a_path_on_proc_is_no_journal() {
    let dir = std::env::temp_dir().join(format!("nm-journal-else-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    fs::write(&file, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    assert_eq!(
        check_appendable(&file).unwrap_err().to_string(),
        "it holds something else (its first byte begins no record): the daemon appends only to a journal of its own; name a new file"
    );
    // Read it may be (recovery reads whatever a journal holds).
    assert!(check_path(&file).is_ok());
    assert!(Journal::open(&file).is_err());
    assert_eq!(
        fs::read(&file).unwrap(),
        b"root:x:0:0:root:/root:/bin/bash\n"
    );
    for fine in [&b"{\"type\":\"intent\"}\n"[..], b"\n{}", b"\0\0\0", b""] {
        fs::write(&file, fine).unwrap();
        assert!(check_appendable(&file).is_ok(), "{fine:?}");
    }
    for on_proc in ["/proc/journal.jsonl", "/proc/self/journal.jsonl"] {
        let error = check_path(Path::new(on_proc)).unwrap_err().to_string();
        assert!(error.starts_with("it is on /"), "{on_proc}: {error}");
    }
    fs::remove_dir_all(dir).unwrap();
}

/// A journal path that became something else than a file under the running daemon
/// (a symlink to /dev/null, a FIFO) is never written to: a record written into
/// nothing is a record lost, and the fault it announces must not happen.
#[test]
fn an_append_refuses_a_path_that_is_no_longer_a_regular_file() {
    let dir = std::env::temp_dir().join(format!("nm-journal-null-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), true).unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    assert_eq!(
        journal
            .append(&intent("1-2"), true)
            .unwrap_err()
            .to_string(),
        "it is a device, not a regular file"
    );
    fs::remove_file(&path).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    assert_eq!(
        journal
            .append(&intent("1-3"), true)
            .unwrap_err()
            .to_string(),
        "it is a FIFO, not a regular file"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_last_line_is_reported_closed_and_skipped() {
    let dir = std::env::temp_dir().join(format!("nm-journal-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), true).unwrap();
    // A crash halfway through the next line.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"type":"intent","id":"1-2","at":"#)
        .unwrap();
    let torn = read(&path).unwrap();
    assert!(matches!(&torn.records[..], [Record::Intent(i)] if i.id == "1-1"));
    assert_eq!(
        torn.problems,
        [format!(
            "{}: line 2 is torn (the daemon stopped while writing it); ignored",
            path.display()
        )]
    );
    // Reopening closes the torn line, so the next record is whole.
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-3"), true).unwrap();
    let after = read(&path).unwrap();
    assert_eq!(after.records.len(), 2);
    assert_eq!(after.problems.len(), 1);
    assert!(after.problems[0].contains("line 2 is unreadable"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_record_never_glues_to_a_partial_line_left_while_the_journal_is_open() {
    let dir = std::env::temp_dir().join(format!("nm-journal-glue-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), true).unwrap();
    // Something wrote half a line behind the open journal's back (a failed write
    // that could not be cut back).
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"type":"intent","id":"1-2""#).unwrap();
    journal.append(&intent("1-3"), false).unwrap();
    let after = read(&path).unwrap();
    let ids: Vec<&str> = after
        .records
        .iter()
        .map(|r| match r {
            Record::Intent(i) => i.id.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(
        ids,
        ["1-1", "1-3"],
        "the record after the partial line is whole"
    );
    assert_eq!(after.problems.len(), 1);
    fs::remove_dir_all(dir).unwrap();
}

/// The file is kept open between records, but the path decides: a journal renamed
/// away (rotated by another process) or removed gets no more records, the path's new
/// file does.
#[test]
fn an_append_follows_the_path_when_the_file_was_renamed_or_removed() {
    let dir = std::env::temp_dir().join(format!("nm-journal-moved-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), false).unwrap();
    let moved = dir.join("archive.jsonl");
    fs::rename(&path, &moved).unwrap();
    journal.append(&intent("1-2"), false).unwrap();
    fs::remove_file(&path).unwrap();
    journal.append(&intent("1-3"), false).unwrap();
    let ids = |p: &Path| -> Vec<String> {
        read(p)
            .unwrap()
            .records
            .iter()
            .map(|r| match r {
                Record::Intent(i) => i.id.clone(),
                _ => String::new(),
            })
            .collect()
    };
    assert_eq!(ids(&moved), ["1-1"]);
    assert_eq!(ids(&path), ["1-3"]);
    fs::remove_dir_all(dir).unwrap();
}

/// Between records the journal's lock is free: another writer (a `kill` beside the
/// daemon, a rotation) is never held up by the file the daemon keeps open.
#[test]
fn the_lock_is_given_up_after_each_append() {
    let dir = std::env::temp_dir().join(format!("nm-journal-unlocked-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), false).unwrap();
    journal.append(&intent("1-2"), true).unwrap();
    let other = fs::File::open(&path).unwrap();
    rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("the journal's lock is free between appends");
    fs::remove_dir_all(dir).unwrap();
}

/// The checkpoint writer waits for a number of bytes and is woken once they are there,
/// not before.
#[test]
fn a_wait_for_growth_ends_when_enough_was_appended() {
    let dir = std::env::temp_dir().join(format!("nm-journal-grown-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = std::sync::Arc::new(Journal::open(&path).unwrap());
    let one = serde_json::to_vec(&intent("1-1")).unwrap().len() as u64 + 1;
    let (done, waited) = std::sync::mpsc::channel();
    let waiter = journal.clone();
    let at = path.clone();
    std::thread::spawn(move || {
        waiter.wait_grown(3 * one);
        // How much the journal held when the wait ended.
        let _ = done.send(fs::metadata(&at).map(|m| m.len()).unwrap_or(0));
    });
    // Appended only once the waiter waits, so that the wake-up is what is tested.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !journal.someone_waits() {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never waited"
        );
        std::thread::yield_now();
    }
    for id in ["1-1", "1-2", "1-3"] {
        journal.append(&intent(id), false).unwrap();
    }
    let held = waited
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("three records wake the wait for three records' bytes");
    assert!(
        held >= 3 * one,
        "woken after {held} bytes, before {}",
        3 * one
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_line_longer_than_the_longest_kept_is_read_past_and_dropped() {
    use reading::{next_line, LineRead};
    let text = b"abc\nabcdef\nabcdefg\n\nxy";
    // A buffer of 3 bytes: every line comes in more than one piece.
    let mut reader = io::BufReader::with_capacity(3, &text[..]);
    let mut line = Vec::new();
    let mut lines = Vec::new();
    loop {
        let read = next_line(&mut reader, &mut line, 7).unwrap();
        if read.taken == 0 {
            break;
        }
        lines.push((read, String::from_utf8(line.clone()).unwrap()));
    }
    let read = |taken, complete, too_long| LineRead {
        taken,
        complete,
        too_long,
    };
    assert_eq!(
        lines,
        [
            (read(4, true, false), "abc\n".to_owned()),
            // Seven bytes with its newline: the longest kept.
            (read(7, true, false), "abcdef\n".to_owned()),
            (read(8, true, true), String::new()),
            (read(1, true, false), "\n".to_owned()),
            (read(2, false, false), "xy".to_owned()),
        ]
    );
    // What is held of a long line never grows past the longest kept and a buffer's
    // worth: a line of megabytes costs no megabytes.
    let long = [vec![b'x'; 1 << 20], b"\n".to_vec()].concat();
    let mut reader = io::BufReader::with_capacity(4096, &long[..]);
    let mut line = Vec::new();
    let read = next_line(&mut reader, &mut line, 1000).unwrap();
    assert!(read.too_long && read.complete && read.taken == long.len() as u64);
    assert!(line.capacity() <= 8192, "{}", line.capacity());
}

#[test]
fn a_run_of_zeros_is_one_unreadable_line_and_the_records_after_it_are_read() {
    let dir = std::env::temp_dir().join(format!("nm-journal-zeros-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    journal.append(&intent("1-1"), true).unwrap();
    let zeros_at = fs::metadata(&path).unwrap().len();
    // 5 MiB of zeros, as a crash on some file systems leaves them, with no newline.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&vec![0u8; 5 << 20]).unwrap();
    let (end, problems) = each_from(&path, 0, |_| {}).unwrap();
    assert_eq!(end, zeros_at, "a line not ended is left for later");
    assert_eq!(
        problems,
        [format!(
            "{}: line 2 is longer than 4 MiB, no record (zeros after a crash?); ignored",
            path.display()
        )]
    );
    // The next append ends the run: the records after it are read.
    drop(Journal::open(&path).unwrap());
    journal.append(&intent("1-2"), true).unwrap();
    let mut ids = Vec::new();
    let (end, problems) = each_from(&path, 0, |r| {
        if let Record::Intent(i) = r {
            ids.push(i.id)
        }
    })
    .unwrap();
    assert_eq!(ids, ["1-1", "1-2"]);
    assert_eq!(end, fs::metadata(&path).unwrap().len());
    assert_eq!(problems.len(), 1, "{problems:?}");
    fs::remove_dir_all(dir).unwrap();
}
