//! A halt probe's failing stretch, measured from its checks alone (no clock of its own):
//! unit-tested with instants written down.

use std::time::Duration;

use tokio::time::Instant;

/// A probe's failing stretch: from the start of its first failing check until a whole
/// `after` passes in which it was seen passing and never failing. Passes in between do
/// not end it (a flapping probe is failing), and neither does the time between two
/// checks, however long: a check that hangs to its timeout, or an `every` longer than
/// `after`, does not start the count again.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stretch {
    /// When the first failing check of the stretch began.
    since: Option<Instant>,
    /// When the last failing check began.
    last: Option<Instant>,
    /// Whether a check passed since the last failure.
    passed: bool,
}

impl Stretch {
    /// A check that began at `began` failed: how long the probe has been failing by
    /// `now` (the check's end).
    pub(super) fn failed(&mut self, began: Instant, now: Instant, after: Duration) -> Duration {
        let over = match self.last {
            None => true,
            Some(last) => self.passed && began.saturating_duration_since(last) > after,
        };
        if over {
            self.since = Some(began);
        }
        self.last = Some(began);
        self.passed = false;
        now.saturating_duration_since(self.since.unwrap_or(began))
    }

    /// A check passed.
    pub(super) fn passed(&mut self) {
        self.passed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    /// The instant `s` seconds after `start`.
    fn at(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    /// A check that took no time, failing at second `s`.
    fn fail(stretch: &mut Stretch, start: Instant, s: u64, after: Duration) -> Duration {
        stretch.failed(at(start, s), at(start, s), after)
    }

    #[test]
    fn a_probe_failing_every_other_check_is_failing() {
        let start = Instant::now();
        let mut stretch = Stretch::default();
        // Checked every 5 s, failing every other time.
        assert_eq!(fail(&mut stretch, start, 0, AFTER), Duration::ZERO);
        stretch.passed();
        assert_eq!(
            fail(&mut stretch, start, 10, AFTER),
            Duration::from_secs(10)
        );
        stretch.passed();
        assert_eq!(
            fail(&mut stretch, start, 20, AFTER),
            Duration::from_secs(20)
        );
        stretch.passed();
        assert_eq!(fail(&mut stretch, start, 30, AFTER), AFTER);
    }

    #[test]
    fn a_whole_after_of_passes_without_a_failure_ends_the_stretch() {
        let start = Instant::now();
        let mut stretch = Stretch::default();
        fail(&mut stretch, start, 0, AFTER);
        stretch.passed();
        fail(&mut stretch, start, 30, AFTER);
        stretch.passed();
        // 30 s since the last failure is still the same stretch; 31 s is a new one.
        assert_eq!(
            fail(&mut stretch, start, 60, AFTER),
            Duration::from_secs(60)
        );
        stretch.passed();
        assert_eq!(fail(&mut stretch, start, 91, AFTER), Duration::ZERO);
        assert_eq!(fail(&mut stretch, start, 92, AFTER), Duration::from_secs(1));
    }

    /// Checks further apart than `after` (a check that hangs to its timeout, or `every`
    /// longer than `after`), failing each time: one stretch, which reaches `after` at the
    /// second check (it used to start again at each, and never reach it).
    #[test]
    fn failures_further_apart_than_after_are_one_stretch() {
        let start = Instant::now();
        let mut stretch = Stretch::default();
        let after = Duration::from_secs(1);
        assert_eq!(fail(&mut stretch, start, 0, after), Duration::ZERO);
        assert_eq!(fail(&mut stretch, start, 5, after), Duration::from_secs(5));
        assert_eq!(
            fail(&mut stretch, start, 60, after),
            Duration::from_secs(60)
        );
    }

    /// A check that hangs to its timeout has been failing since it began.
    #[test]
    fn a_check_that_timed_out_failed_from_its_start() {
        let start = Instant::now();
        let mut stretch = Stretch::default();
        let failed_for = stretch.failed(at(start, 0), at(start, 3), Duration::from_secs(2));
        assert_eq!(failed_for, Duration::from_secs(3));
    }
}
