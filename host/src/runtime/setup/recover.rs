//! What a crashed run left active, reverted at the start: with the built-ins at once,
//! with a plugin file's plugin once the file has loaded.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    domain::injection::Fault,
    engine::{run_all_unless, Engine},
    output::log,
    plugin::Plugin,
    storage::{
        active::{self, Checkpoint},
        journal::{self, Entry},
    },
};

/// Counts the faults the journal holds from the last day against the engine's budget
/// (`kill --config`: a one-shot run honours the budget the daemon keeps), reading the
/// journal's end only as far back as the limits look. A journal that cannot be read
/// counts nothing.
pub fn restore_budget(engine: &Engine) {
    let Some(journal) = engine.journal() else {
        return;
    };
    if let Ok(times) = active::spent(journal.path(), engine.budget_keep(), chrono::Utc::now()) {
        engine.restore_budget(times);
    }
}

/// Halts `engine` as the daemon would start, if its journal holds a halt with no resume
/// after it (`kill`: a one-shot run honours a halt the daemon left, as it honours the
/// kill switch's pause file): what it halts for (`<probe>: <reason>`). A journal that
/// cannot be read halts nothing: the daemon's start says why.
pub fn honour_halt(engine: &Engine) -> Option<String> {
    let path = engine.journal()?.path();
    let (mut checkpoint, _) = Checkpoint::load_saying(path);
    checkpoint.catch_up(path).ok()?;
    let why = checkpoint.halted()?;
    engine.set_halted(why.clone());
    Some(why)
}

/// Reads the journal before anything else happens. The faults of the last day count
/// against the budget again (a restart, a crash loop included, gets no fresh budget),
/// and what a previous run left active (it crashed, or was killed, mid-fault) is
/// reverted: every outcome with revert state and no revert record, and every two-phase
/// fault whose target was prepared but whose outcome never came. The plugin checks the
/// process is still the one it stopped (by start time).
///
/// With `loading` (plugin files still load), a fault whose plugin may be one of them is
/// not reverted yet: it is returned, for [`recover_rest`] once they have loaded.
///
/// With `owned_by` (another live daemon holds the journal's owner lock, see
/// [`crate::storage::owner`]: who), nothing is reverted: what is in effect is that
/// daemon's, and the log says so.
pub fn recover(
    engine: &Engine,
    plugins: &BTreeMap<String, Plugin>,
    path: &std::path::Path,
    loading: bool,
    owned_by: Option<&str>,
) -> (Checkpoint, Vec<Entry>) {
    // Read only: whether it can be written is another question, asked after this. What
    // is read: the checkpoint, the records since, and the end of the journal as far back
    // as the budget looks; never the whole history.
    let (mut checkpoint, unusable) = Checkpoint::load_saying(path);
    if let Some(why) = unusable {
        log::line(format!("journal: {why}"));
    }
    // A journal that cannot be read (or is no regular file: never opened) leaves the
    // checkpoint's faults, which are reverted all the same.
    let read = journal::check_path(path).and_then(|()| checkpoint.catch_up(path));
    let readable = read.is_ok();
    match read {
        Ok(problems) => {
            for problem in &problems {
                log::line(format!("journal: {problem}"));
            }
        }
        // Said only when the checkpoint holds something to revert: else the start is
        // refused in one line of its own, if it is.
        Err(e) if !checkpoint.active().is_empty() => log::line(format!(
            "journal: cannot read {} to recover ({e}): what the checkpoint beside it holds is reverted",
            path.display()
        )),
        Err(_) => {}
    }
    if readable {
        match active::spent(path, engine.budget_keep(), chrono::Utc::now()) {
            Ok(times) => engine.restore_budget(times),
            Err(e) => log::line(format!(
                "journal: cannot read {} for the budget: {e}",
                path.display()
            )),
        }
    }
    let mut waiting = Vec::new();
    let mut entries = Vec::new();
    if let Some(owner) = owned_by {
        let ids: Vec<String> = checkpoint
            .active()
            .iter()
            .filter(|e| e.revert_state().is_some())
            .map(|e| format!("{} ({})", e.intent.id, e.intent.fault))
            .collect();
        if !ids.is_empty() {
            log::line(format!(
                "journal: {owner}: what it holds in effect is its own, not reverted by this dry run: {}",
                ids.join(", ")
            ));
        }
        return (checkpoint, waiting);
    }
    for entry in checkpoint.active() {
        if entry.revert_state().is_none() {
            continue;
        }
        let id = &entry.intent.id;
        let name = &entry.intent.fault;
        if entry.outcome.is_none() {
            log::line(format!(
                "Recovering: {id} ({name}) was being injected when the last run stopped; its prepared target is reverted"
            ));
        } else {
            log::line(format!(
                "Recovering: {id} ({name}) was left active by the last run"
            ));
        }
        let plugin = &entry.intent.plugin;
        let configured = engine.fault(name, plugin);
        let ready = match &configured {
            Some(fault) => fault.loading().is_none(),
            None => plugins.contains_key(plugin),
        };
        if loading && !ready {
            engine.awaiting_plugin(&entry.intent.id, name, entry.pid());
            waiting.push(entry);
        } else {
            entries.push(entry);
        }
    }
    revert_left(engine, plugins, entries);
    (checkpoint, waiting)
}

/// Reverts what [`recover`] left for the plugin files, now that they have loaded.
pub fn recover_rest(engine: &Engine, plugins: &BTreeMap<String, Plugin>, entries: Vec<Entry>) {
    revert_left(engine, plugins, entries);
}

/// Reverts each of `entries` with its fault as configured now (if the same plugin still
/// makes it), else a default one of the plugin that made it; all at once, each on a
/// thread of its own: a plugin whose revert hangs holds up neither the others nor the
/// start, nor a stop signal sent meanwhile.
fn revert_left(engine: &Engine, plugins: &BTreeMap<String, Plugin>, entries: Vec<Entry>) {
    let mut jobs = Vec::new();
    for entry in entries {
        let Some(state) = entry.revert_state().cloned() else {
            continue;
        };
        let id = &entry.intent.id;
        let name = &entry.intent.fault;
        let fault = match engine.fault(name, &entry.intent.plugin) {
            Some(fault) => fault,
            None => match plugins.get(&entry.intent.plugin).map(|p| p.new_fault("")) {
                Some(Ok(fault)) => Arc::new(fault) as Arc<dyn Fault>,
                // A plugin whose config has required fields builds no fault from none.
                Some(Err(e)) => {
                    engine.stranded(
                        id,
                        name,
                        entry.pid(),
                        format!("which waits for {name} to be configured again"),
                    );
                    log::line(format!(
                        "Recovering {id}: {name} is no longer configured and plugin {} cannot build a fault without a config ({}); configure it again to revert it, or revert it by hand: {state}",
                        entry.intent.plugin, e.message
                    ));
                    continue;
                }
                None => {
                    engine.stranded(
                        id,
                        name,
                        entry.pid(),
                        format!(
                            "which waits for plugin {} to be loaded",
                            entry.intent.plugin
                        ),
                    );
                    log::line(format!(
                        "Recovering {id}: plugin {} is not loaded; revert it by hand: {state}",
                        entry.intent.plugin
                    ));
                    continue;
                }
            },
        };
        jobs.push(
            engine
                .revert_job(fault, id, name, state, "recovery")
                .acting_on(entry.pid()),
        );
    }
    let wait = engine.plugin_timeout();
    let stopped = || crate::runtime::stop::requested().is_some();
    for left in run_all_unless(jobs, wait, &stopped) {
        let why = match (crate::runtime::stop::requested(), &left.why) {
            (Some(signal), Some(waits)) => format!("{signal} came while its revert, {waits}"),
            (Some(signal), None) => format!("{signal} came before its plugin answered"),
            // A revert that failed and waits to try again says so.
            (None, Some(waits)) => format!(
                "its revert, {waits}, was not done within {}",
                humantime::format_duration(wait)
            ),
            (None, None) => format!(
                "the plugin of {} did not answer within {}",
                left.fault,
                humantime::format_duration(wait)
            ),
        };
        log::line(format!(
            "Recovering {}: {why}; abandoned (it may still be in effect; the next start tries again)",
            left.id,
        ));
    }
}
