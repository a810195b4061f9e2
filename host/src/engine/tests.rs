//! The engine against a fake fault: the guards, the journal's order, the seed streams,
//! the active faults and their reverts, without a plugin or a process in sight.

use std::path::PathBuf;

use chrono::{Datelike as _, Utc};
use nightmare_monkey_plugin_api::sdk::ErrorKind;

use super::{
    fake::{Behaviour, Fake},
    *,
};
use crate::domain::{
    journal::{self, Record},
    window::{Days, TimeRange, Window, Zone},
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nm-engine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn engine(name: &str, execute: bool, guards: Guards, fake: &Fake) -> (Engine, PathBuf) {
    let path = scratch(name).join("journal.jsonl");
    let mut engine = Engine::new(7, execute, guards, Some(Journal::open(&path).unwrap()));
    engine
        .add_fault("fake", "fake-plugin", fake.clone())
        .unwrap();
    (engine, path)
}

fn ask() -> Ask {
    Ask {
        fault: "fake".into(),
        desc: "by test".into(),
        trigger: "cli",
        requested_by: Some("tester".into()),
    }
}

fn records(path: &std::path::Path) -> Vec<Record> {
    journal::read(path).unwrap().records
}

#[test]
fn an_injection_is_journaled_intent_first_then_outcome_and_comes_back_whole() {
    let fake = Fake::new(Behaviour::Hit);
    let (engine, path) = engine("whole", false, Guards::default(), &fake);
    let injection = engine.inject(&ask()).unwrap();
    let intent = &injection.intent;
    assert_eq!(
        (
            intent.fault.as_str(),
            intent.plugin.as_str(),
            intent.trigger.as_str(),
            intent.desc.as_str(),
            intent.requested_by.as_deref(),
            intent.dry_run,
            intent.master_seed,
            intent.stream.as_str(),
            intent.stream_position,
        ),
        (
            "fake",
            "fake-plugin",
            "cli",
            "by test",
            Some("tester"),
            true,
            7,
            "fault/fake",
            0,
        )
    );
    assert_eq!(injection.outcome.result, "dry-run");
    assert_eq!(injection.revert_due, None);
    // The plugin saw a dry run, the intent's seed and the description.
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].dry_run);
    assert_eq!(
        (calls[0].seed, calls[0].desc.as_str()),
        (intent.seed, "by test")
    );
    match &records(&path)[..] {
        [Record::Intent(i), Record::Outcome(o)] => {
            assert_eq!(i, intent);
            assert_eq!(
                (o.id.as_str(), o.result.as_str()),
                (intent.id.as_str(), "dry-run")
            );
            assert_eq!(o.process.as_ref().map(|p| p.pid), Some(100));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_execute_makes_a_fault_real() {
    let fake = Fake::new(Behaviour::Hit);
    let (engine, _) = engine("execute", true, Guards::default(), &fake);
    let injection = engine.inject(&ask()).unwrap();
    assert!(!injection.intent.dry_run && !fake.calls()[0].dry_run);
    assert_eq!(injection.outcome.result, "killed");
}

#[test]
fn seeds_replay_from_the_master_seed_and_streams_are_independent() {
    let fake = Fake::new(Behaviour::Hit);
    let (a, _) = engine("seed-a", false, Guards::default(), &fake);
    let (mut b, _) = engine("seed-b", false, Guards::default(), &fake);
    // A second fault in b draws from its own stream: it shifts nothing of `fake`'s.
    b.add_fault("other", "fake-plugin", fake.clone()).unwrap();
    let other = Ask {
        fault: "other".into(),
        ..ask()
    };
    b.inject(&other).unwrap();
    let seeds = |e: &Engine| -> Vec<u64> {
        (0..3)
            .map(|_| e.inject(&ask()).unwrap().intent.seed)
            .collect()
    };
    let (sa, sb) = (seeds(&a), seeds(&b));
    assert_eq!(sa, sb);
    assert_eq!(
        sa.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3
    );
    assert_eq!(a.inject(&ask()).unwrap().intent.stream_position, 3);
    let labelled = Engine::new(7, false, Guards::default(), None).with_node(Some("web-1".into()));
    assert_eq!(
        stream_name("fault/fake", labelled.node()),
        "fault/fake@node/web-1"
    );
}

#[test]
fn the_kill_switch_and_the_pause_file_refuse_before_anything_is_written() {
    let fake = Fake::new(Behaviour::Hit);
    let dir = scratch("pause");
    let guards = Guards {
        pause_file: Some(dir.join("paused")),
        ..Guards::default()
    };
    let (engine, path) = engine("pause-journal", false, guards, &fake);
    engine.set_paused(true);
    assert!(engine.switched_off());
    assert!(
        matches!(engine.inject(&ask()), Err(InjectError::Paused(why)) if why == "POST /api/resume to resume")
    );
    engine.set_paused(false);
    std::fs::write(dir.join("paused"), "").unwrap();
    match engine.inject(&ask()) {
        Err(InjectError::Paused(why)) => assert!(why.contains("remove it to resume"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(dir.join("paused")).unwrap();
    assert!(engine.inject(&ask()).is_ok());
    assert!(fake.calls().len() == 1 && records(&path).len() == 2);
}

#[test]
fn outside_the_window_the_monkey_sleeps_and_says_when_it_wakes() {
    let fake = Fake::new(Behaviour::Hit);
    let tomorrow = (Utc::now().weekday().num_days_from_sunday() + 1) % 7;
    let window = Window {
        days: Days::parse(&tomorrow.to_string()).unwrap(),
        time: TimeRange::parse("00:00-24:00").unwrap(),
        zone: Zone::parse("UTC").unwrap(),
        skip: Default::default(),
    };
    let guards = Guards {
        window: Some(window),
        ..Guards::default()
    };
    let (engine, path) = engine("window", false, guards, &fake);
    match engine.inject(&ask()) {
        Err(InjectError::Sleeping { opens: Some(at) }) => {
            let wait = at - Utc::now();
            assert!(wait > chrono::TimeDelta::zero() && wait <= chrono::TimeDelta::days(1));
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty() && records(&path).is_empty());
}

#[test]
fn the_budget_counts_faults_that_happened_and_gives_back_the_rest() {
    let fail = Fake::new(Behaviour::Fail(ErrorKind::NoTarget));
    let hit = Fake::new(Behaviour::Hit);
    let guards = Guards {
        limits: Limits {
            per_hour: Some(1),
            ..Limits::default()
        },
        ..Guards::default()
    };
    let (mut engine, path) = engine("budget", false, guards, &fail);
    engine.add_fault("hit", "fake-plugin", hit.clone()).unwrap();
    // A failed fault is journaled as failed and uses no budget...
    match engine.inject(&ask()) {
        Err(InjectError::Plugin { fault, error }) => {
            assert_eq!((fault.as_str(), error.kind), ("fake", ErrorKind::NoTarget))
        }
        other => panic!("{other:?}"),
    }
    match &records(&path)[..] {
        [Record::Intent(_), Record::Outcome(o)] => {
            assert_eq!(o.result, "failed");
            assert_eq!(o.error.as_deref(), Some("the fake failed"));
        }
        other => panic!("{other:?}"),
    }
    // ...so one real one still fits, and then the hour is spent.
    let hit_ask = Ask {
        fault: "hit".into(),
        ..ask()
    };
    engine.inject(&hit_ask).unwrap();
    match engine.inject(&hit_ask) {
        Err(InjectError::OverBudget { retry_after, why }) => {
            assert!(
                retry_after > std::time::Duration::from_secs(3500),
                "{retry_after:?}"
            );
            assert!(why.contains("hour"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hit.calls().len(), 1);
}

#[test]
fn an_unknown_fault_and_an_unwritable_journal_inject_nothing() {
    let fake = Fake::new(Behaviour::Hit);
    let (engine, path) = engine("journal", true, Guards::default(), &fake);
    assert!(matches!(
        engine.inject(&Ask { fault: "nope".into(), ..ask() }),
        Err(InjectError::UnknownFault(name)) if name == "nope"
    ));
    // The journal's path becomes a directory: the intent cannot be written.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    match engine.inject(&ask()) {
        Err(InjectError::Journal { path: p, .. }) => assert_eq!(p, path.display().to_string()),
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty(), "no intent on disk, no fault");
}

#[test]
fn a_reversible_fault_is_active_until_reverted_once_and_meanwhile_avoided() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 });
    let (engine, path) = engine("revert", true, Guards::default(), &fake);
    let first = engine.inject(&ask()).unwrap();
    let due = first.revert_due.expect("an active fault has a due time");
    assert!(due > first.done && due <= first.done + chrono::TimeDelta::seconds(60));
    // The next fault leaves the process under this one alone.
    let second = engine.inject(&ask()).unwrap();
    assert_eq!(fake.calls()[1].avoid, [200]);
    match &records(&path)[1] {
        Record::Outcome(o) => {
            assert_eq!(o.revert, Some(serde_json::json!({ "pid": 200 })));
            assert_eq!(o.revert_due, Some(due));
        }
        other => panic!("{other:?}"),
    }
    let reverted = engine.revert(&first.intent.id, "due").unwrap();
    assert_eq!(reverted.result, "reverted");
    assert!(
        engine.revert(&first.intent.id, "due").is_none(),
        "once only"
    );
    // Reverting all reverts what is still active, and waits for it.
    let left = engine.revert_all("pause", std::time::Duration::from_secs(60));
    assert!(left.is_empty());
    assert_eq!(lock(&fake.reverts).len(), 2);
    assert!(engine
        .revert_all("pause", std::time::Duration::ZERO)
        .is_empty());
    let reverts: Vec<(String, String)> = records(&path)
        .into_iter()
        .filter_map(|r| match r {
            Record::Revert(r) => Some((r.id, r.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reverts,
        [
            (first.intent.id.clone(), "due".to_owned()),
            (second.intent.id.clone(), "pause".to_owned())
        ]
    );
}

#[test]
fn a_dry_run_of_a_reversible_fault_leaves_nothing_active() {
    let fake = Fake::new(Behaviour::Reversible { ms: 10 });
    let (engine, _) = engine("dry-revert", false, Guards::default(), &fake);
    let injection = engine.inject(&ask()).unwrap();
    assert_eq!(injection.revert_due, None);
    assert!(engine.revert(&injection.intent.id, "due").is_none());
    engine.inject(&ask()).unwrap();
    assert!(fake.calls()[1].avoid.is_empty());
}

const QUICK_RETRY: Backoff = Backoff {
    first: std::time::Duration::from_millis(5),
    ceiling: std::time::Duration::from_millis(20),
};

/// A revert that fails for a reason that may pass is tried again until it succeeds;
/// meanwhile the fault is in effect (listed as under way, active in the journal), and
/// the journal ends with it reverted.
#[test]
fn a_failed_revert_is_tried_again_until_it_succeeds() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(3);
    let (engine, path) = engine("retry", true, Guards::default(), &fake);
    let engine = engine.with_revert_retry(QUICK_RETRY);
    let injection = engine.inject(&ask()).unwrap();
    let id = injection.intent.id;
    let left = engine.revert_all("pause", std::time::Duration::from_secs(30));
    assert!(left.is_empty(), "reverted within the wait: {left:?}");
    assert_eq!(lock(&fake.reverts).len(), 1, "one revert succeeded");
    assert!(engine.reverting().is_empty());
    let results: Vec<String> = records(&path)
        .into_iter()
        .filter_map(|r| match r {
            Record::Revert(r) => Some(r.result),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        ["failed", "reverted"],
        "the first failure and the success"
    );
    // After the failure alone, the journal still lists it as active.
    let all = records(&path);
    let upto_failure = &all[..all.len() - 1];
    let entry = journal::entries(upto_failure)
        .into_iter()
        .find(|e| e.intent.id == id)
        .unwrap();
    assert!(entry.is_active(), "a failed revert leaves the fault active");
    assert!(!journal::entries(&all)[0].is_active());
}

/// Going to bed wakes a revert waiting to try again for one last try; if that fails
/// too, it stays listed as under way, so shutdown names it.
#[test]
fn going_to_bed_gives_a_failing_revert_one_last_try_then_names_it() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(usize::MAX);
    let (engine, _) = engine("retry-close", true, Guards::default(), &fake);
    let slow = Backoff {
        first: std::time::Duration::from_secs(3600),
        ceiling: std::time::Duration::from_secs(3600),
    };
    let engine = engine.with_revert_retry(slow);
    let injection = engine.inject(&ask()).unwrap();
    let left = engine.revert_all("due", std::time::Duration::from_millis(20));
    assert_eq!(left.len(), 1, "waiting an hour to try again");
    let started = std::time::Instant::now();
    engine.close();
    let still = engine.settle(std::time::Duration::from_millis(300));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        still,
        [Unfinished {
            id: injection.intent.id,
            fault: "fake".into()
        }]
    );
    let tries = usize::MAX - fake.revert_failures_left();
    assert_eq!(tries, 2, "the first try and one last one at bedtime");
}

/// A revert refused for a lasting reason (the system said no, the plugin cannot
/// revert, its state is bad, it panicked) is never dropped: it stays under way (in
/// effect, its process left alone by the next fault) and is tried again, at the longest
/// wait only, until it works (someone mended the cause).
#[test]
fn a_revert_refused_for_good_stays_in_effect_and_is_tried_again_at_the_longest_wait() {
    let retry = Backoff {
        first: std::time::Duration::from_millis(1),
        ceiling: std::time::Duration::from_millis(60),
    };
    for kind in [
        ErrorKind::Denied,
        ErrorKind::NotReversible,
        ErrorKind::Config,
        ErrorKind::Panic,
    ] {
        let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(2);
        let (engine, _) = engine("retry-lasting", true, Guards::default(), &fake);
        let engine = engine.with_revert_retry(retry);
        engine.inject(&ask()).unwrap();
        fake.fail_reverts_with(kind.clone());
        let started = std::time::Instant::now();
        let left = engine.revert_all("pause", std::time::Duration::ZERO);
        assert_eq!(left.len(), 1, "{kind:?}: under way");
        // Its process (200) is left alone meanwhile.
        engine.inject(&ask()).unwrap();
        assert!(fake.calls()[1].avoid.contains(&200), "{kind:?}");
        let still = engine.settle(std::time::Duration::from_secs(30));
        assert!(still.is_empty(), "{kind:?}: reverted in the end: {still:?}");
        assert_eq!(fake.revert_failures_left(), 0, "{kind:?}: two failures");
        assert_eq!(lock(&fake.reverts).len(), 1, "{kind:?}: then one success");
        // Two waits at the ceiling (60 ms each), not the doubling 1 ms and 2 ms.
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(120),
            "{kind:?}: tried again after {:?}",
            started.elapsed()
        );
    }
}

/// However often a revert fails, it is not given up on (it used to vanish after 30
/// tries, about 24 minutes: listed nowhere, the victim still stopped).
#[test]
fn a_revert_is_tried_again_however_often_it_fails() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(40);
    let (engine, _) = engine("retry-forever", true, Guards::default(), &fake);
    let engine = engine.with_revert_retry(Backoff {
        first: std::time::Duration::from_millis(1),
        ceiling: std::time::Duration::from_millis(1),
    });
    engine.inject(&ask()).unwrap();
    let left = engine.revert_all("due", std::time::Duration::from_secs(30));
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(fake.revert_failures_left(), 0);
    assert_eq!(lock(&fake.reverts).len(), 1, "the 41st try worked");
}

/// Revert state without `revert_after_ms` is a plugin's contract error: the fault is
/// journaled active and reverted at once (it used to be never reverted: not when due,
/// not on pause, not at shutdown, not after a crash), and the injection fails saying
/// why. A dry run has nothing to revert.
#[test]
fn revert_state_without_a_due_time_is_reverted_at_once_and_refused() {
    let fake = Fake::new(Behaviour::Undated);
    let (real, path) = engine("undated", true, Guards::default(), &fake);
    let Err(InjectError::Plugin { error, .. }) = real.inject(&ask()) else {
        panic!("a contract error");
    };
    assert_eq!(
        error.message,
        "its outcome carries revert state but no revert_after_ms (a plugin contract error: nothing would ever undo it); it was reverted at once"
    );
    assert_eq!(lock(&fake.reverts).len(), 1, "reverted at once");
    assert!(real.active().is_empty() && real.reverting().is_empty());
    let reasons: Vec<String> = records(&path)
        .into_iter()
        .filter_map(|r| match r {
            Record::Revert(r) => Some(format!("{} {}", r.reason, r.result)),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("contract "), "{reasons:?}");
    let (dry, _) = engine("undated-dry", false, Guards::default(), &fake);
    assert!(dry.inject(&ask()).is_ok());
}

/// A revert that failed with no thread to try again on stays listed as under way (named
/// at exit, and the journal keeps it active for the next start).
#[test]
fn a_revert_that_failed_in_line_stays_listed() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(usize::MAX);
    let (engine, _) = engine("retry-in-line", true, Guards::default(), &fake);
    let injection = engine.inject(&ask()).unwrap();
    let mut job = engine.take(&injection.intent.id, "pause").unwrap();
    job.may_wait = false;
    job.run();
    assert_eq!(
        engine.reverting(),
        [Unfinished {
            id: injection.intent.id,
            fault: "fake".into()
        }]
    );
}

fn two_phase(hold: Option<&fake::Gate>, apply: Option<ErrorKind>) -> Fake {
    Fake::new(Behaviour::TwoPhase {
        ms: 60_000,
        hold: hold.cloned(),
        apply,
    })
}

/// A fault that prepares is asked for its target first, the target goes to disk, and
/// only then is it applied; a dry run stays one call that changes nothing.
#[test]
fn a_two_phase_fault_is_prepared_journaled_then_applied() {
    let fake = two_phase(None, None);
    let (real, path) = engine("two-phase", true, Guards::default(), &fake);
    let injection = real.inject(&ask()).unwrap();
    assert_eq!(injection.outcome.result, "paused");
    assert!(injection.revert_due.is_some());
    let phases: Vec<(Phase, Option<serde_json::Value>)> = fake
        .calls()
        .into_iter()
        .map(|r| (r.phase, r.prepared))
        .collect();
    assert_eq!(
        phases,
        [
            (Phase::Prepare, None),
            (Phase::Apply, Some(serde_json::json!({"pid": 300})))
        ]
    );
    match &records(&path)[..] {
        [Record::Intent(i), Record::Prepared(p), Record::Outcome(o)] => {
            assert_eq!((&p.id, &o.id), (&i.id, &i.id));
            assert_eq!(p.revert, serde_json::json!({"pid": 300}));
            assert_eq!(p.process.as_ref().map(|p| p.pid), Some(300));
            assert_eq!(o.result, "paused");
        }
        other => panic!("{other:?}"),
    }

    let dry = two_phase(None, None);
    let (dry_engine, path) = engine("two-phase-dry", false, Guards::default(), &dry);
    assert_eq!(dry_engine.inject(&ask()).unwrap().outcome.result, "dry-run");
    assert_eq!(dry.calls().len(), 1);
    assert_eq!(dry.calls()[0].phase, Phase::Whole);
    assert_eq!(records(&path).len(), 2, "no prepared record for a dry run");
}

/// Caught between the phases (the daemon killed while the plugin applies), the journal
/// already holds what undoes the fault: a start reading it finds the fault active, with
/// the prepared state to revert.
#[test]
fn a_fault_caught_mid_apply_is_active_in_the_journal_with_its_prepared_state() {
    let hold = fake::gate();
    let fake = two_phase(Some(&hold), None);
    let (engine, path) = engine("two-phase-held", true, Guards::default(), &fake);
    engine.keep_checkpoint(std::sync::Arc::default());
    let engine = std::sync::Arc::new(engine);
    let injecting = std::thread::spawn({
        let engine = engine.clone();
        move || engine.inject(&ask())
    });
    // The apply is under way once the second call is in.
    while fake.calls().len() < 2 {
        std::thread::yield_now();
    }
    let mut checkpoint = crate::domain::active::Checkpoint::default();
    checkpoint.catch_up(&path).unwrap();
    let active = checkpoint.active();
    assert_eq!(active.len(), 1);
    assert!(active[0].outcome.is_none());
    assert_eq!(
        active[0].revert_state(),
        Some(&serde_json::json!({"pid": 300}))
    );
    // Its second copy: the checkpoint beside the journal, taken before the apply. The
    // journal emptied now, a start still finds what undoes the fault.
    let saved = std::fs::read(&path).unwrap();
    std::fs::write(&path, "").unwrap();
    let mut after_loss = crate::domain::active::Checkpoint::load(&path);
    after_loss.catch_up(&path).unwrap();
    assert_eq!(after_loss.active().len(), 1, "from the checkpoint");
    std::fs::write(&path, saved).unwrap();
    fake::open(&hold);
    injecting.join().unwrap().unwrap();
    let mut after = crate::domain::active::Checkpoint::default();
    after.catch_up(&path).unwrap();
    assert_eq!(after.active().len(), 1, "active from its outcome now");
    assert!(after.active()[0].outcome.is_some());
}

/// An apply that failed in a way that may have acted first (a crash, a panic, a plugin
/// that did not answer) is reverted at once from its prepared state; one the plugin
/// refused is not.
#[test]
fn an_apply_that_may_have_acted_is_reverted_at_once_one_refused_is_not() {
    let fake = two_phase(None, Some(ErrorKind::Failed));
    let (failing, path) = engine("two-phase-failed", true, Guards::default(), &fake);
    let error = failing.inject(&ask()).unwrap_err();
    assert!(matches!(error, InjectError::Plugin { .. }), "{error}");
    assert_eq!(*lock(&fake.reverts), [serde_json::json!({"pid": 300})]);
    assert!(failing.active().is_empty());
    let entries = journal::entries(&records(&path));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome.as_ref().unwrap().result, "failed");
    let reverted = entries[0].reverted.as_ref().unwrap();
    assert_eq!(
        (reverted.reason.as_str(), reverted.result.as_str()),
        ("apply-failed", "reverted")
    );
    assert!(!entries[0].is_active());

    let refused = two_phase(None, Some(ErrorKind::Denied));
    let (refusing, path) = engine("two-phase-denied", true, Guards::default(), &refused);
    refusing.inject(&ask()).unwrap_err();
    assert!(lock(&refused.reverts).is_empty());
    let entries = journal::entries(&records(&path));
    assert!(entries[0].reverted.is_none() && !entries[0].is_active());
}

/// A target that cannot be journaled is never acted on: the answer says the journal
/// failed, and the budget place is given back.
#[test]
fn a_prepared_target_that_cannot_be_journaled_is_never_applied() {
    let mut fake = two_phase(None, None);
    let dir = scratch("two-phase-unjournaled");
    let path = dir.join("journal.jsonl");
    let moved = dir.join("moved.jsonl");
    // Between the phases the journal's path becomes a directory.
    fake.on_prepare = Some(std::sync::Arc::new({
        let (path, moved) = (path.clone(), moved.clone());
        move || {
            std::fs::rename(&path, &moved).unwrap();
            std::fs::create_dir(&path).unwrap();
        }
    }));
    let guards = Guards {
        limits: Limits {
            per_hour: Some(1),
            ..Limits::default()
        },
        ..Guards::default()
    };
    let mut engine = Engine::new(7, true, guards, Some(Journal::open(&path).unwrap()));
    engine
        .add_fault("fake", "fake-plugin", fake.clone())
        .unwrap();
    let error = engine.inject(&ask()).unwrap_err();
    assert!(
        matches!(&error, InjectError::Journal { error, .. } if error.contains("Is a directory")),
        "{error}"
    );
    assert_eq!(fake.calls().len(), 1, "prepared, never applied");
    assert!(engine.active().is_empty());
    // The budget place was given back: one more fits the hour.
    assert!(lock(&engine.budget).check(Utc::now()).is_ok());
}

#[test]
fn revert_now_reverts_one_active_fault_once_and_leaves_the_others() {
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 });
    let (engine, path) = engine("revert-now", true, Guards::default(), &fake);
    let first = engine.inject(&ask()).unwrap();
    let second = engine.inject(&ask()).unwrap();
    let wait = std::time::Duration::from_secs(60);
    assert_eq!(
        engine.revert_now(&first.intent.id, wait),
        Some((first.intent.fault.clone(), false)),
        "reverted within the wait"
    );
    assert!(!engine.is_active(&first.intent.id));
    assert!(
        engine.is_active(&second.intent.id),
        "only the one asked for"
    );
    assert_eq!(engine.revert_now(&first.intent.id, wait), None, "once only");
    assert_eq!(engine.revert_now("0-0", wait), None, "never active");
    let asked: Vec<String> = records(&path)
        .into_iter()
        .filter_map(|r| match r {
            Record::Revert(r) if r.reason == "asked" => Some(r.id),
            _ => None,
        })
        .collect();
    assert_eq!(asked, std::slice::from_ref(&first.intent.id));
}

/// A fault whose plugin file is still loading.
struct StillLoading;

impl Fault for StillLoading {
    fn inject(&self, _: &Request) -> Result<Outcome, PluginError> {
        panic!("a fault still loading is never called")
    }

    fn revert(&self, _: &serde_json::Value) -> Result<Outcome, PluginError> {
        panic!("a fault still loading is never called")
    }

    fn loading(&self) -> Option<&str> {
        Some("slow-plugin")
    }
}

#[test]
fn a_fault_whose_plugin_is_still_loading_is_refused_before_anything_is_journaled() {
    let fake = Fake::new(Behaviour::Hit);
    let guards = Guards {
        limits: Limits {
            per_hour: Some(1),
            ..Limits::default()
        },
        ..Guards::default()
    };
    let (mut engine, path) = engine("loading", false, guards, &fake);
    engine
        .add_fault("slow", "slow-plugin", StillLoading)
        .unwrap();
    let before = records(&path).len();
    let slow = Ask {
        fault: "slow".into(),
        ..ask()
    };
    assert!(!engine.admits("slow", Utc::now()));
    match engine.inject(&slow) {
        Err(InjectError::Loading { fault, plugin }) => {
            assert_eq!((fault.as_str(), plugin.as_str()), ("slow", "slow-plugin"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(records(&path).len(), before, "nothing journaled");
    // No budget used: the one fault an hour allows still fits.
    assert!(engine.admits("fake", Utc::now()));
    engine.inject(&ask()).unwrap();
}
