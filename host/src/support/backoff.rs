//! The wait before trying again, for everything that retries over the network (the
//! pollers' polls, the notifiers' deliveries): doubled per failure up to a ceiling, then
//! stretched by a random factor in [1, 1.5). Without the jitter, every monkey of a fleet
//! that failed together would retry together, in lockstep, against the same endpoint.
//! The factor comes from a seeded stream of the caller's, so a drill still replays.

use std::time::Duration;

use nightmare_monkey_plugin_api::sdk::Rng;

/// Doubling waits with a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// The longest wait before jitter.
    pub ceiling: Duration,
}

impl Backoff {
    /// The wait before retry `attempt` (1 is the first), without jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.ceiling)
    }

    /// The wait before retry `attempt`, stretched by a factor in [1, 1.5) drawn from
    /// `rng`, to whole milliseconds (so a log line says `1s 234ms`, not nanoseconds);
    /// never shorter than the base, so a sub-millisecond base is kept as it is.
    pub fn wait(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let base = self.base(attempt);
        let stretched = base.mul_f64(1.0 + rng.unit_f64() / 2.0);
        Duration::from_millis(u64::try_from(stretched.as_millis()).unwrap_or(u64::MAX)).max(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFIER: Backoff = Backoff {
        first: Duration::from_secs(1),
        ceiling: Duration::from_secs(300),
    };

    #[test]
    fn base_doubles_up_to_the_ceiling() {
        let waits: Vec<u64> = (1..=12).map(|a| NOTIFIER.base(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(NOTIFIER.base(0), Duration::from_secs(1));
        assert_eq!(NOTIFIER.base(u32::MAX), NOTIFIER.ceiling);
    }

    #[test]
    fn jitter_stretches_by_up_to_half_and_differs_between_streams() {
        let mut a = Rng::stream(7, "notifier/chat@node/web-1");
        let mut b = Rng::stream(7, "notifier/chat@node/web-2");
        let wa: Vec<Duration> = (1..=20).map(|n| NOTIFIER.wait(n, &mut a)).collect();
        let wb: Vec<Duration> = (1..=20).map(|n| NOTIFIER.wait(n, &mut b)).collect();
        for (n, w) in (1..=20).zip(&wa) {
            let base = NOTIFIER.base(n);
            assert!(*w >= base && *w < base.mul_f64(1.5), "{n}: {w:?}");
            assert_eq!(w.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
        }
        assert_ne!(wa, wb, "two nodes do not retry in lockstep");
        let tiny = Backoff {
            first: Duration::from_micros(300),
            ceiling: Duration::from_micros(300),
        };
        assert!(
            tiny.wait(1, &mut a) >= Duration::from_micros(300),
            "never rounded to 0"
        );
        let mut again = Rng::stream(7, "notifier/chat@node/web-1");
        let replay: Vec<Duration> = (1..=20).map(|n| NOTIFIER.wait(n, &mut again)).collect();
        assert_eq!(wa, replay, "the same stream replays the same waits");
    }
}
