//! Reverts: when due, retried, at the last try, now, and what stays listed meanwhile.

use super::*;

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

/// Shutting down wakes a revert waiting to try again for one last try; if that fails
/// too, it stays listed as under way, so shutdown names it.
#[test]
fn shutting_down_gives_a_failing_revert_one_last_try_then_names_it() {
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
    // The last try runs on the revert's own thread, as soon as a busy machine lets it.
    while usize::MAX - fake.revert_failures_left() < 2
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let still = engine.settle(std::time::Duration::from_millis(300));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(
        (still[0].id.as_str(), still[0].fault.as_str()),
        (injection.intent.id.as_str(), "fake")
    );
    // Named for what became of it: its plugin answered, with a failure (at its last
    // try, or the one before if the machine is slow to run the last).
    let named = still[0].waiting_for();
    assert!(
        named.starts_with("which failed (")
            && (named.ends_with(") at its last try")
                || named.ends_with(") and waits to try again")),
        "{still:?}"
    );
    let tries = usize::MAX - fake.revert_failures_left();
    assert_eq!(tries, 2, "the first try and one last one at shutdown");
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
            fault: "fake".into(),
            why: None,
        }]
    );
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

/// A revert done is announced to whoever listened before it (recovery watching waits on
/// it instead of looking again and again), also when it took more than one try.
#[test]
fn a_revert_done_is_announced_to_who_listens() {
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).revert_fails(1);
    let (engine, _) = engine("announced", true, Guards::default(), &fake);
    let engine = engine.with_revert_retry(QUICK_RETRY);
    let id = engine.inject(&ask()).unwrap().intent.id;
    let mut cx = Context::from_waker(Waker::noop());
    let ended = engine.revert_ended();
    let mut ended = std::pin::pin!(ended);
    ended.as_mut().enable();
    assert!(
        ended.as_mut().poll(&mut cx).is_pending(),
        "nothing done yet"
    );
    // The first try fails (the revert stays under way); the second succeeds.
    let left = engine.revert_all("pause", std::time::Duration::from_secs(30));
    assert!(left.is_empty() && !engine.is_active(&id), "{left:?}");
    assert_eq!(ended.as_mut().poll(&mut cx), Poll::Ready(()));
}

/// A reversible fault injected on a thread of its own, `meanwhile` done while its plugin
/// works; returns the engine and the fake once the injection has answered, and its
/// answer.
fn in_flight_while(
    name: &str,
    meanwhile: impl FnOnce(&Engine),
) -> (std::sync::Arc<Engine>, Fake, Result<Injection, InjectError>) {
    let gate = fake::gate();
    let fake = Fake::new(Behaviour::Reversible { ms: 60_000 }).held(&gate);
    let (engine, _) = engine(name, true, Guards::default(), &fake);
    let engine = std::sync::Arc::new(engine);
    let injecting = std::thread::spawn({
        let engine = engine.clone();
        move || engine.inject(&ask())
    });
    while fake.calls().is_empty() {
        std::thread::yield_now();
    }
    meanwhile(&engine);
    fake::open(&gate);
    let answer = injecting.join().unwrap();
    (engine, fake, answer)
}

/// Waits until `fake` was asked for a revert (on a thread of its own).
fn reverted(fake: &Fake) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while lock(&fake.reverts).is_empty() {
        assert!(std::time::Instant::now() < end, "never reverted");
        std::thread::yield_now();
    }
}

/// The kill switch turned on and off again while a plugin worked: the switch's revert of
/// all did not see the fault (not in effect yet), so the injection reverts what it
/// leaves in effect itself, though the monkey plays again by then.
#[test]
fn a_fault_in_flight_when_the_switch_flipped_on_and_off_is_reverted_at_once() {
    let (engine, fake, answer) = in_flight_while("switch-in-flight", |engine| {
        engine.set_paused(true);
        assert!(engine.revert_all("pause", Duration::ZERO).is_empty());
        engine.set_paused(false);
    });
    let injection = answer.expect("the fault happened");
    assert!(injection.revert_due.is_some());
    reverted(&fake);
    assert_eq!(*lock(&fake.reverts), [serde_json::json!({ "pid": 200 })]);
    // A fault asked after the switch is left to its due time.
    let after = engine.inject(&ask()).unwrap();
    assert!(engine.active().iter().any(|a| a.id == after.intent.id));
    assert_eq!(lock(&fake.reverts).len(), 1);
}

/// The fleet's lease ended (and maybe a new one was had) while a plugin worked: the
/// lease's revert did not see the fault, so the injection reverts it itself.
#[test]
fn a_fault_in_flight_when_a_lease_ended_is_reverted_at_once() {
    let (_, fake, answer) = in_flight_while("lease-in-flight", |engine| {
        assert!(engine
            .revert_outside_lease(Some("a later lease"), "fleet-cut-off", Duration::ZERO)
            .is_empty());
    });
    answer.expect("the fault happened");
    reverted(&fake);
}

/// A fault a crashed run left through a plugin this run lacks is listed, and counts as
/// nothing this run holds: shutdown leaves the fleet for it, not for a revert under way.
#[test]
fn a_stranded_fault_is_listed_but_holds_nothing_of_this_run() {
    let engine = Engine::new(7, true, Guards::default(), None);
    engine.stranded(
        "1-1",
        "lockout",
        None,
        "which waits for plugin gone to be loaded".into(),
    );
    let listed = engine.reverting();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].why.as_deref(),
        Some("which waits for plugin gone to be loaded")
    );
    assert!(engine.only_stranded(&listed));
    engine.awaiting_plugin("2-1", "lingering", None);
    assert!(!engine.only_stranded(&engine.reverting()));
    assert!(engine.only_stranded(&[]));
}
