//! The halt conditions: probes checked all along (`halt: (probes, after, every)`); one
//! that fails for longer than `after` pauses the monkey exactly as the kill switch does
//! (every active fault reverted), with `halt: <probe>: <reason>` as the pause's reason.
//! `resume` is manual; once resumed, the probes are watched afresh.

use std::time::Duration;

use tokio::sync::watch;

use crate::{dispatch::Injector, output::log, probe::Halt};

/// Checks `halt`'s probes every `every` until `stopped`; halts the monkey when one has
/// failed for longer than `after`. A paused monkey is not probed (nothing to halt).
pub async fn watch(injector: Injector, halt: Halt, mut stopped: watch::Receiver<bool>) {
    // Since when each probe has been failing, in a row.
    let mut failing: Vec<Option<tokio::time::Instant>> = vec![None; halt.probes.len()];
    loop {
        if injector.paused().is_some() {
            failing.iter_mut().for_each(|f| *f = None);
        } else {
            for (probe, since) in halt.probes.iter().zip(failing.iter_mut()) {
                let Err(reason) = probe.check().await else {
                    *since = None;
                    continue;
                };
                let now = tokio::time::Instant::now();
                let since = *since.get_or_insert(now);
                if now - since >= halt.after {
                    let label = probe.label();
                    log::line(format!(
                        "halt: {label}: {reason} (failing for {}): Nightmare Monkey pauses itself and reverts every active fault; POST /api/resume to resume",
                        humantime::format_duration(whole_ms(now - since))
                    ));
                    injector.halt(label, reason).await;
                    break;
                }
            }
            if injector.paused().is_some() {
                failing.iter_mut().for_each(|f| *f = None);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(halt.every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
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
