//! The halt conditions: probes checked all along (`halt: (probes, after, every)`); one
//! that fails for longer than `after` pauses the monkey exactly as the kill switch does
//! (every active fault reverted), with `halt: <probe>: <reason>` as the pause's reason.
//! `resume` is manual; once resumed, the probes are watched afresh. A probe that passes
//! now and then while it fails (a flapping service) counts as failing: only a whole
//! `after` without a failure ends its failing stretch.

use std::time::Duration;

use tokio::sync::watch;

use crate::{dispatch::Injector, output::log, probe::Halt};

/// Checks `halt`'s probes every `every` until `stopped`; halts the monkey when one has
/// failed for longer than `after`. A paused monkey is not probed (nothing to halt).
pub async fn watch(injector: Injector, halt: Halt, mut stopped: watch::Receiver<bool>) {
    // Since when each probe has been failing, passes in between included.
    let mut failing: Vec<Failing> = vec![Failing::default(); halt.probes.len()];
    loop {
        if injector.paused().is_some() {
            failing.iter_mut().for_each(|f| *f = Failing::default());
        } else {
            for (probe, failing) in halt.probes.iter().zip(failing.iter_mut()) {
                let Err(reason) = probe.check().await else {
                    continue;
                };
                let now = tokio::time::Instant::now();
                let failed_for = failing.failed(now, halt.after);
                if failed_for >= halt.after {
                    let label = probe.label();
                    log::line(format!(
                        "halt: {label}: {reason} (failing for {}): Nightmare Monkey pauses itself and reverts every active fault; POST /api/resume to resume",
                        humantime::format_duration(whole_ms(failed_for))
                    ));
                    if halt.scope == crate::probe::HaltScope::Fleet {
                        pause_fleet(&injector, &label, &reason).await;
                    }
                    injector.halt(label, reason).await;
                    break;
                }
            }
            if injector.paused().is_some() {
                failing.iter_mut().for_each(|f| *f = Failing::default());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(halt.every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// A halt with `scope: Fleet`: the fleet's switch too, so every node pauses.
async fn pause_fleet(injector: &Injector, label: &str, reason: &str) {
    let by = format!("halt probe {label}");
    match injector.fleet_switch(true, by, reason.to_owned()).await {
        Ok(told) => log::line(format!("halt: {told}")),
        Err(None) => log::line("halt: scope Fleet, but this daemon is in no fleet"),
        Err(Some(why)) => log::line(format!(
            "halt: cannot pause the fleet ({why}): only this node is paused"
        )),
    }
}

/// A probe's failing stretch: from its first failure until a whole `after` passes with
/// none (passes in between do not end it: a flapping probe is failing).
#[derive(Debug, Clone, Copy, Default)]
struct Failing {
    since: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
}

impl Failing {
    /// The probe failed at `now`: how long it has been failing.
    fn failed(&mut self, now: tokio::time::Instant, after: Duration) -> Duration {
        let stretch_over = self.last.is_none_or(|last| now - last > after);
        if stretch_over {
            self.since = Some(now);
        }
        self.last = Some(now);
        now - self.since.unwrap_or(now)
    }
}

/// Whether a halt probe already fails: `--execute` does not start then. The first
/// that fails, as `<probe>: <reason>`.
pub async fn failing_at_start(halt: &Halt) -> Option<String> {
    crate::probe::first_failure(&halt.probes)
        .await
        .map(|(probe, reason)| format!("{probe}: {reason}"))
}

fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Failing;

    const AFTER: Duration = Duration::from_secs(30);

    #[test]
    fn a_probe_failing_every_other_check_is_failing() {
        let start = Instant::now();
        let mut failing = Failing::default();
        let at = |s: u64| start + Duration::from_secs(s);
        // Checked every 5 s, failing every other time (passes are not told).
        assert_eq!(failing.failed(at(0), AFTER), Duration::ZERO);
        assert_eq!(failing.failed(at(10), AFTER), Duration::from_secs(10));
        assert_eq!(failing.failed(at(20), AFTER), Duration::from_secs(20));
        assert_eq!(failing.failed(at(30), AFTER), AFTER);
    }

    #[test]
    fn a_whole_after_without_a_failure_ends_the_stretch() {
        let start = Instant::now();
        let mut failing = Failing::default();
        let at = |s: u64| start + Duration::from_secs(s);
        failing.failed(at(0), AFTER);
        failing.failed(at(30), AFTER);
        // 30 s since the last failure is still the same stretch; 31 s is a new one.
        assert_eq!(failing.failed(at(60), AFTER), Duration::from_secs(60));
        assert_eq!(failing.failed(at(91), AFTER), Duration::ZERO);
        assert_eq!(failing.failed(at(92), AFTER), Duration::from_secs(1));
    }
}
