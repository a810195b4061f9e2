//! The engine against a fake fault: the guards, the journal's order, the seed streams,
//! the active faults and their reverts, without a plugin or a process in sight.

use std::path::PathBuf;

use chrono::{Datelike as _, Utc};
use nightmare_monkey_plugin_api::sdk::ErrorKind;

use super::{
    fake::{Behaviour, Fake},
    *,
};
use crate::domain::window::{Days, TimeRange, Window, Zone};
use crate::storage::journal::{self, Record};

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
        matches!(engine.inject(&ask()), Err(InjectError::Paused(why)) if why.to_string() == "POST /api/resume to resume")
    );
    engine.set_paused(false);
    std::fs::write(dir.join("paused"), "").unwrap();
    match engine.inject(&ask()) {
        Err(InjectError::Paused(why)) => {
            assert!(why.to_string().contains("remove it to resume"), "{why}")
        }
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
fn a_dry_run_the_journal_refuses_gives_back_its_own_budget_place_only() {
    let hit = Fake::new(Behaviour::Hit);
    let fail = Fake::new(Behaviour::Fail(ErrorKind::NoTarget));
    let guards = Guards {
        limits: Limits {
            per_hour: Some(2),
            ..Limits::default()
        },
        ..Guards::default()
    };
    let (mut engine, path) = engine("dry-whole", false, guards, &hit);
    engine
        .add_fault("fail", "fake-plugin", fail.clone())
        .unwrap();
    let fail_ask = Ask {
        fault: "fail".into(),
        ..ask()
    };
    engine.inject(&ask()).unwrap();
    // The journal's path becomes a directory: the intent cannot be written, so the
    // fault is refused as the journal's, and nothing of it is on disk.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    for asked in [ask(), fail_ask] {
        match engine.inject(&asked) {
            Err(InjectError::Journal { path: p, .. }) => {
                assert_eq!(p, path.display().to_string())
            }
            other => panic!("{}: {other:?}", asked.fault),
        }
    }
    std::fs::remove_dir(&path).unwrap();
    // The two refused gave their places back, and only theirs: one more of the two an
    // hour fits, then none.
    engine.inject(&ask()).unwrap();
    assert!(matches!(
        engine.inject(&ask()),
        Err(InjectError::OverBudget { .. })
    ));
    match &records(&path)[..] {
        [Record::Intent(i), Record::Outcome(o)] => {
            assert_eq!((i.id.as_str(), i.dry_run), (o.id.as_str(), true))
        }
        other => panic!("{other:?}"),
    }
}

mod reverts;
mod two_phases;

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
