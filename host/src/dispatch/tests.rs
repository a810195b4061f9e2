use super::*;
use crate::{
    domain::injection::Ask,
    engine::{
        fake::{self, Behaviour, Fake},
        Guards,
    },
    support::lock::lock,
};

fn injector(fake: &Fake, execute: bool) -> Injector {
    let mut engine = Engine::new(1, execute, Guards::default(), None);
    engine.add_fault("fake", "fake", fake.clone()).unwrap();
    Injector::new(Arc::new(engine), Notifiers::default())
}

fn ask() -> Ask {
    Ask {
        fault: "fake".into(),
        desc: "by test".into(),
        trigger: "timer",
        requested_by: None,
    }
}

#[tokio::test]
async fn a_plugin_that_hangs_is_given_up_on_at_the_deadline() {
    let gate = fake::gate();
    let fake = Fake::new(Behaviour::Block(gate.clone()));
    let door = injector(&fake, false).with_deadline(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let result = door.inject(ask()).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    match result {
        Err(e @ InjectError::TimedOut { .. }) => {
            assert!(!e.is_refusal());
        }
        other => panic!("{other:?}"),
    }
    // Let the blocked thread go, so the runtime can shut down.
    fake::open(&gate);
}

#[tokio::test]
async fn a_reversible_fault_is_reverted_when_due() {
    let fake = Fake::new(Behaviour::Reversible { ms: 20 });
    let door = injector(&fake, true);
    let injection = door.inject(ask()).await.unwrap();
    assert!(injection.revert_due.is_some());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock(&fake.reverts).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never reverted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*lock(&fake.reverts), [serde_json::json!({ "pid": 200 })]);
}

#[tokio::test]
async fn the_kill_switch_refuses_every_trigger_alike_until_resumed() {
    let fake = Fake::new(Behaviour::Hit);
    let door = injector(&fake, false);
    assert_eq!(
        door.switch(true).await,
        Switched {
            paused: Some("POST /api/resume to resume".into()),
            reverting: vec![],
        }
    );
    let refused = door.inject(ask()).await.unwrap_err();
    assert!(matches!(refused, InjectError::Paused(_)) && refused.is_refusal());
    assert_eq!(
        door.switch(false).await,
        Switched {
            paused: None,
            reverting: vec![]
        }
    );
    assert!(door.inject(ask()).await.is_ok());
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(door.journal_path(), None);
    let path = std::env::temp_dir().join(format!("nm-dispatch-{}.jsonl", std::process::id()));
    let journal = crate::storage::journal::Journal::open(&path).unwrap();
    let with = Injector::new(
        Arc::new(Engine::new(1, false, Guards::default(), Some(journal))),
        Notifiers::default(),
    );
    assert_eq!(with.journal_path(), Some(path.clone()));
    let _ = std::fs::remove_file(path);
}

/// Every thread the runtime has for injections is held by a plugin that hangs, one
/// more injection waits for a thread, and an active fault's plugin hangs in `revert`:
/// the kill switch still answers at once, names the revert still under way, and the
/// injection that was waiting is refused.
#[test]
fn the_kill_switch_never_waits_behind_plugins() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_INJECTIONS_AT_ONCE)
        .build()
        .unwrap();
    let hang = fake::gate();
    let hung = Fake::new(Behaviour::Block(hang.clone()));
    let stuck_revert = fake::gate();
    let stuck = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_held(&stuck_revert);
    let mut engine = Engine::new(1, true, Guards::default(), None);
    engine.add_fault("hung", "fake", hung.clone()).unwrap();
    engine.add_fault("stuck", "fake", stuck.clone()).unwrap();
    let door = Injector::new(Arc::new(engine), Notifiers::default());
    runtime.block_on(async {
        let active = door.inject(ask_for("stuck")).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..=MAX_INJECTIONS_AT_ONCE {
            let door = door.clone();
            waiting.push(tokio::spawn(
                async move { door.inject(ask_for("hung")).await },
            ));
        }
        while hung.calls().len() < MAX_INJECTIONS_AT_ONCE {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let switched = door.switch(true).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "the switch took {took:?}");
        assert!(switched.paused.is_some());
        assert_eq!(
            switched.reverting,
            [Unfinished {
                id: active.intent.id.clone(),
                fault: "stuck".into(),
                why: None,
            }]
        );
        fake::open(&stuck_revert);
        fake::open(&hang);
        let mut refused = 0;
        for task in waiting {
            if let Err(InjectError::Paused(_)) = task.await.unwrap() {
                refused += 1;
            }
        }
        assert_eq!(refused, 1, "the one that waited for a thread is refused");
        assert_eq!(hung.calls().len(), MAX_INJECTIONS_AT_ONCE);
    });
}

/// Paused while a plugin works: the fault it leaves active is reverted as soon as it
/// answers, and shutting down names an injection and a revert whose plugins hang.
#[tokio::test]
async fn what_the_switch_could_not_see_is_reverted_and_closing_names_what_hangs() {
    let hold = fake::gate();
    let late = Fake::new(Behaviour::Reversible { ms: 60_000 }).held(&hold);
    let mut engine = Engine::new(1, true, Guards::default(), None);
    engine.add_fault("late", "fake", late.clone()).unwrap();
    let door = Injector::new(Arc::new(engine), Notifiers::default());
    let under_way = tokio::spawn({
        let door = door.clone();
        async move { door.inject(ask_for("late")).await }
    });
    while late.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    assert!(door.switch(true).await.reverting.is_empty());
    fake::open(&hold);
    assert!(under_way.await.unwrap().is_ok());
    until(
        || lock(&late.reverts).len() == 1,
        "reverted as soon as it answered",
    )
    .await;

    let hang = fake::gate();
    let stuck_revert = fake::gate();
    let hung = Fake::new(Behaviour::Block(hang.clone()));
    let stuck = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_held(&stuck_revert);
    let mut engine = Engine::new(1, true, Guards::default(), None);
    engine.add_fault("hung", "fake", hung.clone()).unwrap();
    engine.add_fault("stuck", "fake", stuck).unwrap();
    let door = Injector::new(Arc::new(engine), Notifiers::default());
    let active = door.inject(ask_for("stuck")).await.unwrap();
    let hanging = tokio::spawn({
        let door = door.clone();
        async move { door.inject(ask_for("hung")).await }
    });
    while hung.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let (in_flight, unfinished) = door.close(Duration::from_millis(50)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].1, "hung");
    assert_eq!(
        unfinished,
        [Unfinished {
            id: active.intent.id,
            fault: "stuck".into(),
            why: None,
        }]
    );
    assert!(matches!(
        door.inject(ask_for("stuck")).await,
        Err(InjectError::Paused(why)) if why.to_string() == "it is going to bed"
    ));
    fake::open(&hang);
    fake::open(&stuck_revert);
    let _ = hanging.await;
}

/// Waits until `done` holds (a revert runs on a thread of its own), within a bound.
async fn until(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A plugin that answers after its caller gave up (504) still did what it did: the
/// fault it leaves active is reverted when due, and a request that never got a
/// place among the injections never runs at all.
#[test]
fn a_late_answer_is_reverted_when_due_and_a_request_that_never_ran_never_runs() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_INJECTIONS_AT_ONCE)
        .build()
        .unwrap();
    let hold = fake::gate();
    let late = Fake::new(Behaviour::Reversible { ms: 20 }).held(&hold);
    let mut engine = Engine::new(1, true, Guards::default(), None);
    engine.add_fault("late", "fake", late.clone()).unwrap();
    let door = Injector::new(Arc::new(engine), Notifiers::default())
        .with_deadline(Duration::from_millis(50));
    runtime.block_on(async {
        let mut asked = Vec::new();
        for _ in 0..=MAX_INJECTIONS_AT_ONCE {
            let door = door.clone();
            asked.push(tokio::spawn(
                async move { door.inject(ask_for("late")).await },
            ));
        }
        for task in asked {
            assert!(matches!(
                task.await.unwrap(),
                Err(InjectError::TimedOut { .. })
            ));
        }
        assert_eq!(
            late.calls().len(),
            MAX_INJECTIONS_AT_ONCE,
            "one never got a place"
        );
        fake::open(&hold);
        until(
            || lock(&late.reverts).len() == MAX_INJECTIONS_AT_ONCE,
            "reverted the late faults",
        )
        .await;
        // The one that never got a place did not run later either.
        assert_eq!(late.calls().len(), MAX_INJECTIONS_AT_ONCE);
    });
}

/// A journal of its own for one test.
fn journal_in(name: &str) -> (PathBuf, crate::storage::journal::Journal) {
    let dir = std::env::temp_dir().join(format!("nm-dispatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.jsonl");
    let journal = crate::storage::journal::Journal::open(&path).unwrap();
    (path, journal)
}

fn records(path: &std::path::Path) -> Vec<crate::storage::journal::Record> {
    crate::storage::journal::read(path).unwrap().records
}

fn probes_of(steady: Vec<Probe>, recovery: Option<Recovery>) -> BTreeMap<String, FaultProbes> {
    BTreeMap::from([(
        "fake".to_owned(),
        FaultProbes {
            steady_state: steady,
            recovery,
            ..FaultProbes::default()
        },
    )])
}

/// A failing steady state refuses the fault before the engine: no plugin call, no
/// intent, no budget used, a `refused` record with an id like the intents'; a
/// passing one lets it through.
#[tokio::test]
async fn a_steady_state_not_met_refuses_the_fault_journaled_and_free_of_budget() {
    use crate::domain::budget::Limits;
    use crate::storage::journal::Record;
    let (path, journal) = journal_in("steady");
    let fake = Fake::new(Behaviour::Hit);
    let guards = Guards {
        limits: Limits {
            per_hour: Some(1),
            ..Limits::default()
        },
        ..Guards::default()
    };
    let mut engine = Engine::new(1, false, guards, Some(journal));
    engine.add_fault("fake", "fake", fake.clone()).unwrap();
    let engine = Arc::new(engine);
    let failing = Injector::new(engine.clone(), Notifiers::default()).with_probes(probes_of(
        vec![crate::probe::command(&["false"], Duration::from_secs(5))],
        None,
    ));
    let refused = failing.inject(ask()).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "steady state not met: command false: exited 1"
    );
    assert!(matches!(refused, InjectError::SteadyState { .. }) && refused.is_refusal());
    assert!(fake.calls().is_empty());
    match records(&path).as_slice() {
        [Record::Refused(r)] => {
            assert_eq!(
                (r.fault.as_str(), r.trigger.as_str(), r.desc.as_str()),
                ("fake", "timer", "by test")
            );
            assert_eq!(r.reason, "steady state not met: command false: exited 1");
            assert!(r.id.ends_with("-1"), "{}", r.id);
        }
        other => panic!("{other:?}"),
    }
    // The budget of one is whole: the next fault, its steady state met, happens.
    let passing = Injector::new(engine, Notifiers::default()).with_probes(probes_of(
        vec![crate::probe::command(&["true"], Duration::from_secs(5))],
        None,
    ));
    let injection = passing.inject(ask()).await.unwrap();
    assert!(injection.intent.id.ends_with("-2"), "the refusal took id 1");
    assert_eq!(fake.calls().len(), 1);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Probes draw nothing from the seeded streams: the same seeds reach the plugin with
/// steady-state probes as without.
#[tokio::test]
async fn probes_leave_the_seeded_streams_alone() {
    let mut seeds = Vec::new();
    for with in [false, true] {
        let fake = Fake::new(Behaviour::Hit);
        let door = injector(&fake, false);
        let door = if with {
            door.with_probes(probes_of(
                vec![crate::probe::command(&["true"], Duration::from_secs(5))],
                None,
            ))
        } else {
            door
        };
        for _ in 0..3 {
            door.inject(ask()).await.unwrap();
        }
        seeds.push(fake.calls().iter().map(|r| r.seed).collect::<Vec<_>>());
    }
    assert_eq!(seeds[0], seeds[1]);
}

/// After a real fault, the recovery probes are polled until they pass: `recovered`
/// with the time from the outcome; not at all after a dry run.
#[tokio::test]
async fn a_recovery_is_measured_from_the_outcome() {
    use crate::storage::journal::Record;
    let (path, journal) = journal_in("recovery");
    let flag = path.with_file_name("up");
    let fake = Fake::new(Behaviour::Hit);
    let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
    engine.add_fault("fake", "fake", fake.clone()).unwrap();
    let recovery = Recovery {
        probes: vec![crate::probe::command(
            &["test", "-e", flag.to_str().unwrap()],
            Duration::from_secs(5),
        )],
        deadline: Duration::from_secs(60),
        every: Duration::from_millis(100),
    };
    let door = Injector::new(Arc::new(engine), Notifiers::default())
        .with_probes(probes_of(vec![], Some(recovery)));
    let injection = door.inject(ask()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&flag, "").unwrap();
    until(
        || {
            records(&path)
                .iter()
                .any(|r| matches!(r, Record::Recovered(_)))
        },
        "recovered",
    )
    .await;
    match records(&path).last() {
        Some(Record::Recovered(r)) => {
            assert_eq!(r.id, injection.intent.id);
            assert!(!r.late);
            // From the injection's end to the passing probes, as the clock read them
            // (not against a stopwatch of the test's, which a busy machine pulls apart
            // from the daemon's): the flag came 300 ms after it at the soonest.
            let since_done = (r.at - injection.done).num_milliseconds();
            assert!(
                r.ttr_ms >= 300 && (r.ttr_ms as i64 - since_done).abs() <= 1,
                "{} ms, {since_done} ms from the injection's end to the record",
                r.ttr_ms
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A reversible fault's recovery is timed from its revert: `recovered` comes after
/// the `revert` record, its `ttr_ms` counted from there, not from the outcome.
#[tokio::test]
async fn a_reversible_faults_recovery_is_timed_from_its_revert() {
    use crate::storage::journal::Record;
    let (path, journal) = journal_in("reversible");
    let fake = Fake::new(Behaviour::Reversible { ms: 300 });
    let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
    engine.add_fault("fake", "fake", fake.clone()).unwrap();
    let recovery = Recovery {
        probes: vec![crate::probe::command(&["true"], Duration::from_secs(5))],
        deadline: Duration::from_secs(60),
        every: Duration::from_millis(100),
    };
    let door = Injector::new(Arc::new(engine), Notifiers::default())
        .with_probes(probes_of(vec![], Some(recovery)));
    door.inject(ask()).await.unwrap();
    until(
        || {
            records(&path)
                .iter()
                .any(|r| matches!(r, Record::Recovered(_)))
        },
        "recovered",
    )
    .await;
    let all = records(&path);
    let revert = all
        .iter()
        .position(|r| matches!(r, Record::Revert(_)))
        .unwrap();
    match &all[revert + 1..] {
        [Record::Recovered(r)] => {
            // Timed from the revert (the watcher hears of it once it is journaled): at
            // most the time between the two records. From the outcome it would be the
            // fault's 300 ms more. No bound a busy machine can miss.
            let since_revert = (r.at - all[revert].at()).num_milliseconds();
            let since_outcome = all
                .iter()
                .find(|r| matches!(r, Record::Outcome(_)))
                .map(|o| (r.at - o.at()).num_milliseconds())
                .unwrap();
            assert!(
                r.ttr_ms as i64 <= since_revert + 1 && since_outcome - since_revert >= 300,
                "{} ms; the revert {since_revert} ms before, the outcome {since_outcome} ms",
                r.ttr_ms
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Not recovered by the deadline: `not-recovered` with the last failure, and a late
/// `recovered` when the probes pass afterwards (looked for until ten deadlines: 10 s,
/// for a busy machine to run the probe that passes).
#[tokio::test]
async fn a_recovery_past_its_deadline_is_not_recovered_then_late() {
    use crate::storage::journal::Record;
    let (path, journal) = journal_in("late");
    let flag = path.with_file_name("up");
    let fake = Fake::new(Behaviour::Hit);
    let mut engine = Engine::new(1, true, Guards::default(), Some(journal));
    engine.add_fault("fake", "fake", fake.clone()).unwrap();
    let recovery = Recovery {
        probes: vec![crate::probe::command(
            &["test", "-e", flag.to_str().unwrap()],
            Duration::from_secs(5),
        )],
        deadline: Duration::from_millis(1000),
        every: Duration::from_millis(50),
    };
    let door = Injector::new(Arc::new(engine), Notifiers::default())
        .with_probes(probes_of(vec![], Some(recovery)));
    door.inject(ask()).await.unwrap();
    until(
        || {
            records(&path)
                .iter()
                .any(|r| matches!(r, Record::NotRecovered(_)))
        },
        "not recovered",
    )
    .await;
    std::fs::write(&flag, "").unwrap();
    until(
        || {
            records(&path)
                .iter()
                .any(|r| matches!(r, Record::Recovered(_)))
        },
        "recovered late",
    )
    .await;
    let tail: Vec<Record> = records(&path).into_iter().skip(2).collect();
    match tail.as_slice() {
        [Record::NotRecovered(n), Record::Recovered(r)] => {
            assert_eq!(n.deadline_ms, 1000);
            assert!(n.reason.starts_with("command test -e "), "{}", n.reason);
            assert!(n.reason.ends_with(": exited 1"), "{}", n.reason);
            assert!(r.late);
            assert!(r.ttr_ms >= 1000);
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A halt pauses as the switch does: every active fault reverted, the reason says
/// the probe; `resume` clears it.
#[tokio::test]
async fn a_halt_pauses_reverts_and_says_why() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 });
    let door = injector(&fake, true);
    door.inject(ask()).await.unwrap();
    let halted = door.halt("process ^db$".into(), "0 processes".into()).await;
    assert_eq!(
        halted.paused.as_deref(),
        Some("halt: process ^db$: 0 processes; POST /api/resume to resume")
    );
    until(|| lock(&fake.reverts).len() == 1, "reverted").await;
    assert!(matches!(
        door.inject(ask()).await,
        Err(InjectError::Paused(why)) if why.to_string().starts_with("halt: ")
    ));
    assert_eq!(door.switch(false).await.paused, None);
}

fn ask_for(fault: &str) -> Ask {
    Ask {
        fault: fault.into(),
        ..ask()
    }
}

/// What a request's deadline cut short is said as it was: the fault's turn behind
/// another request (whose plugin hangs), or its own steady state's check (a probe slower
/// than the deadline is dropped at it). Neither blames the plugin, called by neither.
#[tokio::test]
async fn a_deadline_says_what_it_cut_short_and_bounds_the_steady_state() {
    let gate = fake::gate();
    let fake = Fake::new(Behaviour::Block(gate.clone()));
    let steady = |argv: &[&str]| {
        probes_of(
            vec![crate::probe::command(argv, Duration::from_secs(30))],
            None,
        )
    };
    let door = injector(&fake, false)
        .with_probes(steady(&["true"]))
        .with_deadline(Duration::from_millis(300));
    let first = tokio::spawn({
        let door = door.clone();
        async move { door.inject(ask()).await }
    });
    while fake.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let second = door.inject(ask()).await.unwrap_err();
    assert_eq!(
        second.to_string(),
        "fake: another request for this fault was still checking its steady state or injecting after 300ms; given up (no plugin was called, nothing was journaled)"
    );
    // The first's plugin had its own deadline, and is the one blamed.
    assert!(matches!(
        first.await.unwrap(),
        Err(InjectError::TimedOut {
            waited: Waited::Plugin,
            ..
        })
    ));
    fake::open(&gate);

    let slow = injector(&fake, false)
        .with_probes(steady(&["sleep", "30"]))
        .with_deadline(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let cut = slow.inject(ask()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        cut.to_string(),
        "fake: its steady state was not checked within 300ms; given up (no plugin was called, nothing was journaled)"
    );
    assert_eq!(fake.calls().len(), 1);
}
