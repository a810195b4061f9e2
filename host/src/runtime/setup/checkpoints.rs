//! The journal's checkpoints: taken at the start, every so often and at the exit, and
//! the rotation and pruning that go with them.

use std::sync::{Arc, Mutex};

use crate::{
    engine::Engine,
    output::log,
    storage::{
        active::{self, Checkpoint},
        archive::{self, Retention},
        journal::Journal,
    },
};

/// Takes a checkpoint now (logging why not, if it cannot), while no record is being
/// appended: a line read is never cut back afterwards. Then, if the journal has grown to
/// `retention.rotate_at`, rotates it (the checkpoint read it to its end first, with every
/// writer locked out) and removes the archives `retention` no longer keeps.
pub fn checkpoint_now(checkpoint: &Mutex<Checkpoint>, journal: &Journal, retention: &Retention) {
    let path = journal.path();
    let mut checkpoint = crate::support::lock::lock(checkpoint);
    if let Err(e) = checkpoint.take(journal) {
        log::line(format!(
            "journal: cannot take a checkpoint of {} ({e}): the next start reads from the last one",
            path.display()
        ));
        return;
    }
    if std::fs::metadata(path).map_or(true, |m| m.len() < retention.rotate_at) {
        return;
    }
    let rotated = journal
        .rotate(|| checkpoint.catch_up(path).map(drop))
        .and_then(|archive| {
            // The checkpoint now names the new journal (the archive's rest is empty).
            checkpoint.take(journal)?;
            Ok(archive)
        });
    match rotated {
        Ok(archive) => log::line(format!(
            "journal: rotated {} to {}",
            path.display(),
            archive.display()
        )),
        Err(e) => {
            log::line(format!(
                "journal: cannot rotate {} ({e}); it goes on growing",
                path.display()
            ));
            return;
        }
    }
    match archive::prune(path, retention) {
        Ok(gone) => {
            for removed in gone {
                log::line(if removed.recent {
                    format!(
                        "journal: removed {} (past journal_retention.max_size, though it holds records of the last day: a restart counts against the budget only what the journal and its newest archive still hold; raise max_size to keep a day)",
                        removed.path.display()
                    )
                } else {
                    format!(
                        "journal: removed {} (past the retention)",
                        removed.path.display()
                    )
                });
            }
        }
        Err(e) => log::line(format!(
            "journal: cannot remove old archives of {} ({e})",
            path.display()
        )),
    }
}

/// Keeps the journal's checkpoint up to date: one now, and one each time the journal
/// has grown by [`active::CHECKPOINT_EVERY`] (or by `retention.rotate_at`, if smaller),
/// on a thread that sleeps until then; each may rotate the journal.
pub fn keep_checkpoints(
    engine: &Engine,
    checkpoint: Checkpoint,
    retention: Retention,
) -> Arc<Mutex<Checkpoint>> {
    let checkpoint = Arc::new(Mutex::new(checkpoint));
    let Some(journal) = engine.shared_journal() else {
        return checkpoint;
    };
    engine.keep_checkpoint(checkpoint.clone());
    checkpoint_now(&checkpoint, &journal, &retention);
    let kept = checkpoint.clone();
    let every = active::CHECKPOINT_EVERY.min(retention.rotate_at);
    let spawned = std::thread::Builder::new()
        .name("checkpoint".to_owned())
        .spawn(move || loop {
            journal.wait_grown(every);
            checkpoint_now(&kept, &journal, &retention);
        });
    if let Err(e) = spawned {
        log::line(format!(
            "warning: cannot start the checkpoint thread ({e}): the next start reads the journal from this start on"
        ));
    }
    checkpoint
}
