//! The halt conditions: probes checked all along (`halt: (probes, after, every)`); one
//! that fails for longer than `after` pauses the monkey exactly as the kill switch does
//! (every active fault reverted), with `halt: <probe>: <reason>` as the pause's reason.
//! `resume` is manual; once resumed, the probes are watched afresh.
//!
//! Each probe is checked on a task of its own, every `every` after its last check ended:
//! one that hangs to its timeout delays no other. How long one has been failing is its
//! [`Stretch`]: a check that timed out failed, a flapping probe is failing, and the time
//! between two checks never starts the count again. A halt comes at a check: the first
//! failing one at least `after` since the stretch began (with `every` at least `after`,
//! the second failing check in a row; with `after: 0`, the first).

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};

use crate::{dispatch::Injector, output::log, probe::Halt};

mod stretch;

use stretch::Stretch;

/// Checks each of `halt`'s probes every `every` until `stopped`; halts the monkey when
/// one has failed for longer than `after`. A paused monkey is not probed (nothing to
/// halt). A check under way when the daemon stops is dropped at once.
pub async fn watch(injector: Injector, halt: Halt, stopped: watch::Receiver<bool>) {
    let halt = Arc::new(halt);
    // One halt at a time: a second probe past `after` finds the monkey paused already.
    let deciding = Arc::new(tokio::sync::Mutex::new(()));
    // Dropped (the daemon's exit aborts this task), it aborts every probe's.
    let mut probes = tokio::task::JoinSet::new();
    for index in 0..halt.probes.len() {
        probes.spawn(watch_one(
            injector.clone(),
            halt.clone(),
            index,
            deciding.clone(),
            stopped.clone(),
        ));
    }
    while probes.join_next().await.is_some() {}
}

/// Checks probe `index` of `halt` every `every` until `stopped`.
async fn watch_one(
    injector: Injector,
    halt: Arc<Halt>,
    index: usize,
    deciding: Arc<tokio::sync::Mutex<()>>,
    mut stopped: watch::Receiver<bool>,
) {
    let probe = &halt.probes[index];
    let mut stretch = Stretch::default();
    loop {
        if injector.paused().is_some() {
            stretch = Stretch::default();
        } else {
            let began = Instant::now();
            let checked = tokio::select! {
                checked = probe.check() => checked,
                _ = stopped.wait_for(|s| *s) => return,
            };
            match checked {
                Ok(_) => stretch.passed(),
                Err(reason) => {
                    let failed_for = stretch.failed(began, Instant::now(), halt.after);
                    if failed_for >= halt.after {
                        let _one = deciding.lock().await;
                        if injector.paused().is_none() {
                            let label = probe.label();
                            log::line(format!(
                                "halt: {label}: {reason} (failing for {}): Nightmare Monkey pauses itself and reverts every active fault; POST /api/resume to resume",
                                humantime::format_duration(whole_ms(failed_for))
                            ));
                            if halt.scope == crate::probe::HaltScope::Fleet {
                                pause_fleet(&injector, &label, &reason).await;
                            }
                            injector.halt(label, reason).await;
                        }
                    }
                }
            }
            if injector.paused().is_some() {
                stretch = Stretch::default();
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
