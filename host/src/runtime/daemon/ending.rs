//! How the daemon ends: the bounds of its waits (gone within 3 s of SIGTERM whatever
//! plugins and its disk do), the last checkpoint, and what it names as given up.

use std::time::Duration;

use super::setup;
use crate::{engine::Unfinished, output::log};

/// Names each plugin call given up at the exit, injections (`in_flight`: id and fault)
/// and reverts (a revert that waits for something else, a plugin to load or its next
/// try, is named as one); `Err` when there is one, which makes the exit status 1.
pub(super) fn abandoned(
    in_flight: &[(String, String)],
    unfinished: &[Unfinished],
) -> anyhow::Result<()> {
    let named: Vec<String> = in_flight
        .iter()
        .map(|(id, fault)| format!("the injection {id} ({fault}), whose plugin has not answered"))
        .chain(
            unfinished
                .iter()
                .map(|u| format!("the revert of {} ({}), {}", u.id, u.fault, u.waiting_for())),
        )
        .collect();
    for what in &named {
        log::line(format!("warning: going to bed without {what}"));
    }
    let waiting = unfinished.iter().filter(|u| u.why.is_some()).count();
    let calls = named.len() - waiting;
    if !named.is_empty() {
        anyhow::bail!("{}", summary(calls, waiting));
    }
    Ok(())
}

/// The exit's last line, for `calls` plugin calls given up on and `waiting` reverts
/// that wait for something else (no call under way).
fn summary(calls: usize, waiting: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let parts: Vec<String> = [
        (calls > 0).then(|| plural(calls, "plugin call abandoned", "plugin calls abandoned")),
        (waiting > 0).then(|| plural(waiting, "revert not done", "reverts not done")),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "stopped with {}: {} may still be in effect (the next start retries each revert the journal lists as active; an injection without an outcome in the journal cannot be undone from it)",
        parts.join(" and "),
        if calls + waiting == 1 { "what it did" } else { "what they did" },
    )
}

/// How long shutdown waits for the triggers (an injection under way among them) to stop.
pub(super) const TRIGGERS_WAIT: Duration = Duration::from_millis(800);

/// How long shutdown waits for the reverts of active faults, after the triggers.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_millis(1500);

/// How long the runtime waits for plugin calls still running on its blocking threads.
pub(super) const RUNTIME_WAIT: Duration = Duration::from_millis(200);

/// How long the exit waits for its last checkpoint: a journal whose lock another
/// process holds (a backup taking the writers' lock) holds up no exit.
const LAST_CHECKPOINT_WAIT: Duration = Duration::from_millis(300);

/// The daemon is gone within 3 s of SIGTERM whatever plugins do (the guide says so): its
/// waits leave a fifth of a second for the rest of the exit.
const _: () = assert!(
    TRIGGERS_WAIT.as_millis()
        + SHUTDOWN_WAIT.as_millis()
        + RUNTIME_WAIT.as_millis()
        + LAST_CHECKPOINT_WAIT.as_millis()
        <= 2800
);

/// Takes the last checkpoint on a thread of its own, waiting for it at most
/// [`LAST_CHECKPOINT_WAIT`]: one that has not had its turn by then is given up (the
/// checkpoint file is replaced whole or not at all, and the next start reads from the
/// one before).
pub(super) fn last_checkpoint(
    checkpoint: std::sync::Arc<std::sync::Mutex<crate::storage::active::Checkpoint>>,
    journal: std::sync::Arc<crate::storage::journal::Journal>,
    retention: crate::storage::archive::Retention,
) {
    let (done, taken) = std::sync::mpsc::channel();
    let path = journal.path().to_owned();
    let (in_line, journal_in_line) = (checkpoint.clone(), journal.clone());
    let spawned = std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || {
            setup::checkpoint_now(&checkpoint, &journal, &retention);
            let _ = done.send(());
        });
    if spawned.is_err() {
        // No thread to be had (a process limit): in line, as it always was.
        setup::checkpoint_now(&in_line, &journal_in_line, &retention);
    } else if taken.recv_timeout(LAST_CHECKPOINT_WAIT).is_err() {
        log::line(format!(
            "journal: no last checkpoint of {} within {} (a write waits for the journal's lock, which another process may hold, or the disk is slow): the next start reads on from the one before",
            path.display(),
            humantime::format_duration(LAST_CHECKPOINT_WAIT)
        ));
    }
}

/// How the daemon ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// For good (SIGTERM, SIGINT, the sandbox's command exited).
    Stop,
    /// To start again with the configuration it just checked (SIGHUP); `paused`: the
    /// kill switch was on, and stays on across the restart.
    Restart {
        paused: bool,
        halted: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::summary;

    /// A revert that waits for its plugin to load, or for its next try, is no plugin
    /// call: the last line counts each as what it is.
    #[test]
    fn the_last_line_counts_abandoned_calls_and_waiting_reverts_apart() {
        let tail = "may still be in effect (the next start retries each revert the journal lists as active; an injection without an outcome in the journal cannot be undone from it)";
        assert_eq!(
            summary(1, 0),
            format!("stopped with 1 plugin call abandoned: what it did {tail}")
        );
        assert_eq!(
            summary(5, 0),
            format!("stopped with 5 plugin calls abandoned: what they did {tail}")
        );
        assert_eq!(
            summary(0, 1),
            format!("stopped with 1 revert not done: what it did {tail}")
        );
        assert_eq!(
            summary(2, 3),
            format!(
                "stopped with 2 plugin calls abandoned and 3 reverts not done: what they did {tail}"
            )
        );
    }
}
