use super::*;
use crate::storage::journal::{Intent, Journal};

fn intent(id: &str, at: DateTime<Utc>) -> Record {
    Record::Intent(Intent {
        id: id.into(),
        at,
        fault: "f".into(),
        plugin: "p".into(),
        trigger: "http".into(),
        requested_by: None,
        desc: "d".into(),
        dry_run: true,
        master_seed: 1,
        stream: "s".into(),
        stream_position: 0,
        seed: 1,
        fleet: None,
    })
}

#[test]
fn pages_go_back_from_the_end_with_their_outcomes_and_reverts() {
    let dir = std::env::temp_dir().join(format!("nm-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let start = Utc::now() - TimeDelta::hours(1);
    let at = |i: i64| start + TimeDelta::seconds(i);
    for i in 0..10 {
        let id = format!("1-{i}");
        journal.append(&intent(&id, at(i)), false).unwrap();
        let mut o = OutcomeRecord::failed(&id, at(i), 1, String::new());
        o.result = "paused".into();
        journal.append(&Record::Outcome(o), false).unwrap();
    }
    // The revert of fault 3, long after.
    journal
        .append(
            &Record::Revert(RevertRecord {
                id: "1-3".into(),
                at: at(100),
                reason: "due".into(),
                result: "reverted".into(),
                summary: String::new(),
            }),
            false,
        )
        .unwrap();
    let ids = |p: &Page| {
        p.entries
            .iter()
            .map(|e| e.intent.id.clone())
            .collect::<Vec<_>>()
    };
    let latest = page(
        &path,
        Query {
            since: None,
            until: None,
            before: None,
            limit: 4,
            run: None,
        },
    )
    .unwrap();
    assert_eq!(
        ids(&latest),
        ["1-6", "1-7", "1-8", "1-9"],
        "the latest, oldest first"
    );
    assert!(latest.next.is_some());
    assert!(latest.entries.iter().all(|e| e.outcome.is_some()));
    let older = page(
        &path,
        Query {
            since: None,
            until: None,
            before: latest.next,
            limit: 4,
            run: None,
        },
    )
    .unwrap();
    assert_eq!(ids(&older), ["1-2", "1-3", "1-4", "1-5"]);
    assert_eq!(
        older.entries[1].reverted.as_ref().unwrap().result,
        "reverted"
    );
    let last = page(
        &path,
        Query {
            since: None,
            until: None,
            before: older.next,
            limit: 4,
            run: None,
        },
    )
    .unwrap();
    assert_eq!(ids(&last), ["1-0", "1-1"]);
    assert_eq!(last.next, None, "no older page");
    let since = page(
        &path,
        Query {
            since: Some(at(8)),
            until: None,
            before: None,
            limit: 100,
            run: None,
        },
    )
    .unwrap();
    assert_eq!(ids(&since), ["1-8", "1-9"]);
    assert_eq!(since.next, None);
    let until = page(
        &path,
        Query {
            since: None,
            until: Some(at(2)),
            before: None,
            limit: 100,
            run: None,
        },
    )
    .unwrap();
    assert_eq!(ids(&until), ["1-0", "1-1"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Faults injected at once can be journaled out of the order of their instants; a
/// page ends at a place in the journal, not an instant, so none falls between two
/// pages, whether in the journal or in one of its archives.
#[test]
fn pages_follow_the_journal_not_the_clock_and_go_on_into_archives() {
    let dir = std::env::temp_dir().join(format!("nm-history-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let start = Utc::now() - TimeDelta::hours(1);
    let at = |s: i64| start + TimeDelta::seconds(s);
    for (id, s) in [("a", 5), ("b", 3), ("c", 4)] {
        journal.append(&intent(id, at(s)), false).unwrap();
    }
    journal.rotate(|| Ok(())).unwrap();
    for (id, s) in [("d", 9), ("e", 7), ("f", 8)] {
        journal.append(&intent(id, at(s)), false).unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let one = page(
            &path,
            Query {
                since: None,
                until: None,
                before,
                limit: 1,
                run: None,
            },
        )
        .unwrap();
        seen.extend(one.entries.iter().map(|e| e.intent.id.clone()));
        match one.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["f", "e", "d", "c", "b", "a"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_older_page_keeps_its_outcomes_however_far_back() {
    let dir = std::env::temp_dir().join(format!("nm-history-far-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let start = Utc::now() - TimeDelta::days(1);
    for i in 0..6 {
        let id = format!("2-{i}");
        let at = start + TimeDelta::hours(i);
        journal.append(&intent(&id, at), false).unwrap();
        let mut o = OutcomeRecord::failed(&id, at, 1, String::new());
        o.result = "dry-run".into();
        journal.append(&Record::Outcome(o), false).unwrap();
    }
    let query = |before| Query {
        since: None,
        until: None,
        before,
        limit: 3,
        run: None,
    };
    let first = page(&path, query(None)).unwrap();
    let second = page(&path, query(first.next)).unwrap();
    assert_eq!(second.entries.len(), 3);
    assert!(
        second.entries.iter().all(|e| e.outcome.is_some()),
        "{:?}",
        second.entries
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The whole listing, read forward: each fault with the records that came for it,
/// handed on once settled (its outcome and revert in), in the order asked for, joined
/// with those that came after it was handed on; only those in range. The first reading
/// keeps the late records alone, not those of faults out of range.
#[test]
fn the_stream_hands_on_each_fault_whole_once_settled_in_order() {
    let start = Utc::now() - TimeDelta::days(1);
    let at = |mins: i64| start + TimeDelta::minutes(mins);
    let outcome = |id: &str, m: i64| {
        let mut o = OutcomeRecord::failed(id, at(m), 1, String::new());
        o.result = "paused".into();
        Record::Outcome(o)
    };
    let revert = |id: &str, m: i64| {
        Record::Revert(RevertRecord {
            id: id.into(),
            at: at(m),
            reason: "due".into(),
            result: "reverted".into(),
            summary: String::new(),
        })
    };
    let records = [
        intent("early", at(-10)),
        outcome("early", -10),
        intent("a", at(0)),
        outcome("a", 0),
        intent("b", at(1)),
        outcome("b", 1),
        revert("a", 60),
        // Long after: `a` and `b` are settled and handed on before this is taken.
        intent("c", at(200)),
        revert("b", 201),
        outcome("c", 200),
        intent("late", at(400)),
        intent("d", at(299)),
        outcome("late", 400),
    ];
    let mut late = LateRecords::new(Some(at(0)), Some(at(300)));
    for r in &records {
        late.take(r.clone());
    }
    let kept: Vec<&String> = late.records.keys().collect();
    assert_eq!(kept, ["b"], "b's revert, after b was handed on");
    // Read from the journal's lines (what `history` does), the first reading keeps the
    // same records, reading whole only those it keeps.
    let mut from_lines = LateRecords::new(Some(at(0)), Some(at(300)));
    for r in &records {
        from_lines
            .take_line(&serde_json::to_string(r).unwrap())
            .unwrap();
    }
    assert_eq!(
        serde_json::to_value(&from_lines.records["b"]).unwrap(),
        serde_json::to_value(&late.records["b"]).unwrap()
    );
    assert_eq!(from_lines.records.len(), 1);
    assert!(from_lines.take_line("{\"type\":\"intent\"}").is_err());
    let mut stream = late.stream();
    let mut out: Vec<(String, Option<String>, Option<String>, usize)> = Vec::new();
    let mut record = |e: &Entry, taken: usize| {
        out.push((
            e.intent.id.clone(),
            e.outcome.as_ref().map(|o| o.result.clone()),
            e.reverted.as_ref().map(|r| r.result.clone()),
            taken,
        ))
    };
    for (i, r) in records.into_iter().enumerate() {
        let taken = i + 1;
        stream
            .take::<()>(r, &mut |e| {
                record(e, taken);
                Ok(())
            })
            .unwrap();
    }
    stream
        .finish::<()>(&mut |e| {
            record(e, 0);
            Ok(())
        })
        .unwrap();
    let p = || Some("paused".to_owned());
    let r = || Some("reverted".to_owned());
    assert_eq!(
        out,
        [
            ("a".into(), p(), r(), 8),
            // b's revert came after it was handed on (past SETTLE): the first reading
            // found it.
            ("b".into(), p(), r(), 8),
            ("c".into(), p(), None, 11),
            // Held to the end of the journal, then handed on as it is.
            ("d".into(), None, None, 0),
        ]
    );
}

/// One run's faults, a page at a time: the run is chosen before the limit counts,
/// and a cursor this journal does not hold is refused rather than read past.
#[test]
fn a_run_is_paged_on_its_own_and_a_foreign_cursor_is_refused() {
    let dir = std::env::temp_dir().join(format!("nm-history-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let start = Utc::now() - TimeDelta::hours(1);
    for (i, id) in ["1-1", "2-1", "1-2", "2-2", "2-3"].iter().enumerate() {
        journal
            .append(&intent(id, start + TimeDelta::seconds(i as i64)), false)
            .unwrap();
    }
    let query = |before| Query {
        before,
        limit: 1,
        run: Some("1".to_owned()),
        ..Query::default()
    };
    let first = page(&path, query(None)).unwrap();
    assert_eq!(first.entries[0].intent.id, "1-2");
    let second = page(&path, query(first.next)).unwrap();
    assert_eq!(second.entries[0].intent.id, "1-1");
    assert_eq!(second.next, None);
    assert_eq!(last_run(&path).unwrap().as_deref(), Some("2"));
    assert_eq!(
        Run::parse("last")
            .unwrap()
            .number(&path)
            .unwrap()
            .as_deref(),
        Some("2")
    );
    assert_eq!(Run::parse("17"), Ok(Run::Number("17".to_owned())));
    for bad in ["", "Last", "1-2", "x\n"] {
        assert!(Run::parse(bad).is_err(), "{bad}");
    }
    let foreign = Position {
        dev: 1,
        ino: 1,
        offset: 0,
    };
    let refused = page(&path, query(Some(foreign))).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
    assert!(refused
        .to_string()
        .starts_with("the cursor 1.1.0 names no file of this journal"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_page_of_one_run_reads_back_no_further_than_the_runs_first_fault() {
    let dir = std::env::temp_dir().join(format!("nm-history-run-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.jsonl");
    // Before both runs, a line that cannot be read: read, it would be said.
    std::fs::write(&path, "{older history\n").unwrap();
    let journal = Journal::open(&path).unwrap();
    let first = Utc::now() - TimeDelta::hours(3);
    let second = first + TimeDelta::hours(2);
    let run = |start: DateTime<Utc>, n: u32| format!("{}-{n}", start.timestamp_millis());
    journal
        .append(
            &intent(&run(first, 1), first + TimeDelta::seconds(1)),
            false,
        )
        .unwrap();
    for n in 1..=2 {
        let at = second + TimeDelta::seconds(n.into());
        journal.append(&intent(&run(second, n), at), false).unwrap();
    }
    let of = |start: DateTime<Utc>| {
        page(
            &path,
            Query {
                limit: 10,
                run: Some(start.timestamp_millis().to_string()),
                ..Query::default()
            },
        )
        .unwrap()
    };
    let latest = of(second);
    let ids: Vec<&str> = latest
        .entries
        .iter()
        .map(|e| e.intent.id.as_str())
        .collect();
    assert_eq!(ids, [run(second, 1), run(second, 2)]);
    assert_eq!(latest.next, None);
    assert!(latest.problems.is_empty(), "{:?}", latest.problems);
    // The older run too: read back to its first fault, not past it.
    let older = of(first);
    assert_eq!(older.entries.len(), 1);
    assert!(older.problems.is_empty(), "{:?}", older.problems);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A clock stepped back writes a fault stamped before `since` ahead of faults in range:
/// a page passes over it and reads on, as the whole listing does, and stops only at a
/// fault stamped more than [`CLOCK_SLACK`] before `since`.
#[test]
fn a_fault_stamped_before_since_does_not_end_the_page() {
    let dir = std::env::temp_dir().join(format!("nm-history-stepped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let now = Utc::now();
    for (id, ago) in [
        // In range, but behind a fault stamped days before `since`: not read.
        ("1-1", TimeDelta::minutes(90)),
        ("1-2", TimeDelta::days(5)),
        ("1-3", TimeDelta::hours(1)),
        // The clock stepped back three hours.
        ("1-4", TimeDelta::hours(3)),
        ("1-5", TimeDelta::minutes(10)),
    ] {
        journal.append(&intent(id, now - ago), false).unwrap();
    }
    let since = Some(now - TimeDelta::hours(2));
    let page = page(
        &path,
        Query {
            since,
            limit: 10,
            ..Query::default()
        },
    )
    .unwrap();
    let ids: Vec<&str> = page.entries.iter().map(|e| e.intent.id.as_str()).collect();
    assert_eq!(ids, ["1-3", "1-5"]);
    assert_eq!(page.next, None);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A line of megabytes (zeros after a crash) is passed over by a page as by the whole
/// listing, and said as it is.
#[test]
fn a_page_says_the_lines_too_long_to_read() {
    let dir = std::env::temp_dir().join(format!("nm-history-long-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.jsonl");
    let journal = Journal::open(&path).unwrap();
    let now = Utc::now();
    journal.append(&intent("1-1", now), false).unwrap();
    let long_at = std::fs::metadata(&path).unwrap().len();
    let mut text = std::fs::read(&path).unwrap();
    text.extend(std::iter::repeat_n(0u8, 5 << 20));
    text.push(b'\n');
    std::fs::write(&path, text).unwrap();
    journal.append(&intent("1-2", now), false).unwrap();
    let read = page(
        &path,
        Query {
            limit: 10,
            ..Query::default()
        },
    )
    .unwrap();
    let ids: Vec<&str> = read.entries.iter().map(|e| e.intent.id.as_str()).collect();
    assert_eq!(ids, ["1-1", "1-2"]);
    assert_eq!(
        read.problems,
        [format!(
            "{}: the line at byte {long_at} is longer than 4 MiB, no record (zeros after a crash?); ignored",
            path.display()
        )]
    );
    // The file's first line too.
    std::fs::write(&path, vec![b'x'; 5 << 20]).unwrap();
    journal.append(&intent("1-3", now), false).unwrap();
    let read = page(
        &path,
        Query {
            limit: 10,
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(read.entries.len(), 1);
    assert_eq!(read.problems.len(), 1, "{:?}", read.problems);
    assert!(read.problems[0].contains(": the line at byte 0 is longer than 4 MiB"));
    std::fs::remove_dir_all(dir).unwrap();
}
