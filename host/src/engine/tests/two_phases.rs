//! Two-phase faults: prepared, journaled, then applied; what a failed apply leaves.

use super::*;

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
    let mut checkpoint = crate::storage::active::Checkpoint::default();
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
    let mut after_loss = crate::storage::active::Checkpoint::load(&path);
    after_loss.catch_up(&path).unwrap();
    assert_eq!(after_loss.active().len(), 1, "from the checkpoint");
    std::fs::write(&path, saved).unwrap();
    fake::open(&hold);
    injecting.join().unwrap().unwrap();
    let mut after = crate::storage::active::Checkpoint::default();
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

/// The kill switch turned on (and off again) while a two-phase fault prepared: it is
/// not applied at all, and its journal says why.
#[test]
fn a_fault_prepared_while_the_switch_flipped_is_never_applied() {
    let gate = fake::gate();
    let fake = two_phase(None, None).held(&gate);
    let (engine, path) = engine("two-phase-switch", true, Guards::default(), &fake);
    let engine = std::sync::Arc::new(engine);
    let injecting = std::thread::spawn({
        let engine = engine.clone();
        move || engine.inject(&ask())
    });
    while fake.calls().is_empty() {
        std::thread::yield_now();
    }
    engine.set_paused(true);
    engine.revert_all("pause", Duration::ZERO);
    engine.set_paused(false);
    fake::open(&gate);
    let refused = injecting.join().unwrap();
    assert!(
        matches!(
            refused,
            Err(InjectError::Paused(crate::domain::injection::Pause::Switch))
        ),
        "{refused:?}"
    );
    let phases: Vec<Phase> = fake.calls().into_iter().map(|r| r.phase).collect();
    assert_eq!(phases, [Phase::Prepare], "applied after the switch");
    match &records(&path)[..] {
        [Record::Intent(_), Record::Prepared(_), Record::Outcome(o)] => {
            assert_eq!(o.result, "failed");
            assert_eq!(
                o.error.as_deref(),
                Some("not applied: the monkey was paused while it prepared")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(engine.active().is_empty());
}
