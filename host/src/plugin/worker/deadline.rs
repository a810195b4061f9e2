//! When a call to a worker is due, and when its worker is stopped: the caller's own
//! deadline where it has one (the dispatch's 504), carried on the caller's thread; a
//! worker with a call past it takes no new call (it is retired), and it is stopped only
//! [`GRACE`] past the call's own deadline.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::mpsc,
    time::{Duration, Instant},
};

use super::Reply;

/// How much longer than its own deadline a call waits before its worker is stopped:
/// whoever called (the dispatch, `kill`, recovery) gives up at its deadline itself and
/// says so; the worker is stopped just after, which frees the thread that waited for it.
/// Calls asked meanwhile go to a fresh worker.
pub(super) const GRACE: Duration = Duration::from_millis(250);

thread_local! {
    /// When whoever asks for injections on this thread gives up on them
    /// ([`injections_due_by`]).
    static DUE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Until the guard it returns is dropped, the injections this thread asks of workers are
/// due at `at` (or at their own deadline, if that comes first): the instant their caller
/// gives up and says so. A worker with a call past it takes no new call, so a call asked
/// after the caller's 504 goes to a fresh worker, whichever thread woke first. The worker
/// is still stopped only [`GRACE`] past the call's own deadline: a call sent with little
/// of its caller's time left (a two-phase fault's apply) is not cut short. Reverts and
/// the building of faults keep their own deadline.
pub(crate) fn injections_due_by(at: Instant) -> InjectionsDue {
    InjectionsDue(DUE.replace(Some(at)))
}

/// Gives this thread's injections back the deadline they had before [`injections_due_by`].
pub(crate) struct InjectionsDue(Option<Instant>);

impl Drop for InjectionsDue {
    fn drop(&mut self) {
        DUE.set(self.0);
    }
}

/// For a call sent at `now`: when it is due (its caller's deadline, or `timeout` from
/// now, whichever comes first), past which its worker takes no new call; and when its
/// worker is stopped if it has not answered ([`GRACE`] past its own deadline, whatever
/// its caller's). A call sent after its caller gave up (a two-phase fault's apply after
/// a long prepare) is due at its own deadline: it says nothing of the worker yet.
pub(super) fn deadlines(
    now: Instant,
    timeout: Duration,
    callers: Option<Instant>,
) -> (Instant, Instant) {
    let own = now + timeout;
    let due = callers.filter(|at| *at > now).map_or(own, |at| at.min(own));
    (due, own + GRACE)
}

/// The deadline this thread's injections are due by, if its caller set one.
pub(super) fn callers_due() -> Option<Instant> {
    DUE.get()
}

/// Whether one of the calls `pending` is past its deadline at `now`.
pub(super) fn overdue(pending: &HashMap<u64, Waiting>, now: Instant) -> bool {
    pending.values().any(|w| w.due <= now)
}

/// A call sent and not yet answered: where its reply goes, and when it is due (past it,
/// its worker takes no new call).
pub(super) struct Waiting {
    pub(super) answer: mpsc::Sender<Reply>,
    pub(super) due: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_due_at_its_callers_deadline_or_its_own_but_stopped_only_past_its_own() {
        let now = Instant::now();
        let timeout = Duration::from_secs(3);
        let stop_at = now + timeout + GRACE;
        assert_eq!(deadlines(now, timeout, None), (now + timeout, stop_at));
        let sooner = now + Duration::from_secs(1);
        assert_eq!(deadlines(now, timeout, Some(sooner)), (sooner, stop_at));
        let past = now - Duration::from_secs(1);
        assert_eq!(
            deadlines(now, timeout, Some(past)),
            (now + timeout, stop_at),
            "a call sent after its caller gave up gets its own time"
        );
        assert_eq!(
            deadlines(now, timeout, Some(now)),
            (now + timeout, stop_at),
            "nor one sent at the very instant"
        );
        let later = now + Duration::from_secs(5);
        assert_eq!(
            deadlines(now, timeout, Some(later)),
            (now + timeout, stop_at)
        );
    }

    #[test]
    fn a_threads_injections_are_due_by_its_caller_while_the_guard_lives() {
        let first = Instant::now() + Duration::from_secs(1);
        let second = first + Duration::from_secs(1);
        assert_eq!(DUE.get(), None);
        {
            let _outer = injections_due_by(first);
            assert_eq!(DUE.get(), Some(first));
            {
                let _inner = injections_due_by(second);
                assert_eq!(DUE.get(), Some(second));
            }
            assert_eq!(DUE.get(), Some(first));
            let elsewhere = std::thread::spawn(|| DUE.get()).join().unwrap();
            assert_eq!(
                elsewhere, None,
                "another thread's injections keep their own"
            );
        }
        assert_eq!(DUE.get(), None);
    }

    #[test]
    fn a_worker_is_overdue_once_a_call_on_it_is_past_its_deadline() {
        let now = Instant::now();
        let mut pending = HashMap::new();
        assert!(!overdue(&pending, now));
        let (answer, _rx) = mpsc::channel();
        pending.insert(
            1,
            Waiting {
                answer: answer.clone(),
                due: now + Duration::from_millis(1),
            },
        );
        assert!(!overdue(&pending, now));
        pending.insert(2, Waiting { answer, due: now });
        assert!(overdue(&pending, now), "due at this very instant");
    }
}
