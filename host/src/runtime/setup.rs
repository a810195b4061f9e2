//! From a validated configuration to a running engine: load the plugins, build every
//! configured fault, fix the seed. Shared by the daemon, `plan` and `check-config`, so a
//! file that checks clean also starts.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use crate::{
    config::{Config, ConfigErrors},
    domain::{
        active::{self, Checkpoint},
        archive::{self, Retention},
        injection::Fault,
        journal::{self, Journal},
    },
    engine::{run_all_unless, Engine, Guards},
    output::log,
    plugin::{self, Plugin, PluginInfo, Supervision},
    support::state,
    triggers::poller::{self, Saved},
};

/// An engine ready to run.
pub struct Setup {
    /// The engine, with every configured fault.
    pub engine: Engine,
    /// Every plugin available.
    pub plugins: Vec<PluginInfo>,
    /// Which plugin each fault uses.
    pub fault_plugins: BTreeMap<String, String>,
    /// Whether the seed was drawn (not given).
    pub seed_drawn: bool,
    /// Each poller's saved state (`None`: it starts fresh), in the config's order.
    pub poller_states: Vec<Option<Saved>>,
    /// The loaded plugins by name.
    pub loaded: BTreeMap<String, Plugin>,
    /// Plugin files from the plugin directories that were skipped, and why: logged at
    /// startup, fatal only for a plugin the config uses.
    pub warnings: Vec<String>,
    /// Plugin files loaded though they failed the trust checks
    /// (`allow_untrusted_plugins`), and why they failed: logged at startup.
    pub untrusted: Vec<String>,
    /// Why the journal cannot be opened for writing, if it cannot: fatal, but only
    /// after the recovery, which needs only to read it.
    pub journal_error: Option<String>,
}

/// How plugin files are run here: each call within `timeout`, and what their workers
/// write on stderr logged a line at a time.
pub fn supervision(timeout: std::time::Duration) -> Supervision {
    Supervision::new(timeout, Arc::new(log::line))
}

/// Loads every plugin file at once, each on a thread of its own: a file whose worker
/// hangs while loading costs the start one `plugin_timeout` (its load's deadline), not
/// one per file. In the daemon (`run`) a load still running after [`SLOW_LOAD`] is said,
/// so a slow start is never silent (a quick one says nothing: `check-config` and a start
/// that fails give the same lines). The results come in the order of `files`.
fn load_files(
    config: &Config,
    files: Vec<&std::path::Path>,
    run: bool,
) -> Vec<anyhow::Result<Plugin>> {
    let load = |path: &std::path::Path| {
        Plugin::load(
            path,
            config.plugin_trust,
            supervision(config.plugin_timeout),
        )
    };
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<usize>();
        let started: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, &path)| {
                let done = done.clone();
                std::thread::Builder::new()
                    .name("plugin-load".to_owned())
                    .spawn_scoped(scope, move || {
                        let loaded = load(path);
                        let _ = done.send(i);
                        loaded
                    })
                    .map_err(|_| path)
            })
            .collect();
        drop(done);
        if run {
            let until = std::time::Instant::now() + SLOW_LOAD;
            let mut answered = vec![false; files.len()];
            while let Ok(i) =
                finished.recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
            {
                answered[i] = true;
            }
            for (i, (path, thread)) in files.iter().zip(&started).enumerate() {
                if thread.is_ok() && !answered[i] {
                    log::line(format!(
                        "Loading plugin {}: no answer yet after {}; waiting at most {} for it",
                        path.display(),
                        humantime::format_duration(SLOW_LOAD),
                        humantime::format_duration(config.plugin_timeout)
                    ));
                }
            }
        }
        started
            .into_iter()
            .map(|thread| match thread {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("cannot load plugin: loading it panicked"))
                }),
                // No thread for it: loaded here, after the others started.
                Err(path) => load(path),
            })
            .collect()
    })
}

/// How long a plugin file may take to load before the daemon says it is waiting for it.
const SLOW_LOAD: std::time::Duration = std::time::Duration::from_secs(1);

/// A configuration `config::load_all` found errors in (`errors`), refused with every
/// error at once: the file's, then those of its plugins and faults, checked on what
/// could be built (a refused setting standing in at its default), nothing written.
pub fn all_errors(config: &Config, mut errors: Vec<String>) -> ConfigErrors {
    if let Err(more) = build(config, false) {
        for e in more.0 {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
    }
    ConfigErrors(errors)
}

/// Builds the engine; every problem is reported, each naming where it was written. With
/// `run` false (`check-config`) nothing is written anywhere: the journal is not opened.
pub fn build(config: &Config, run: bool) -> Result<Setup, ConfigErrors> {
    let mut errors = Vec::new();
    let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
    // Plugin directories: listed first, so that every file, named or found, loads in
    // one concurrent pass.
    let mut warnings = Vec::new();
    let mut found = Vec::new();
    for dir in &config.plugin_dirs {
        match plugin::discover(dir, config.plugin_trust) {
            Ok(files) => found.extend(files),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    let named: Vec<&std::path::Path> = config
        .plugin_files
        .iter()
        .map(|(p, _)| p.as_path())
        .collect();
    let found_paths: Vec<&std::path::Path> = found.iter().map(|p| p.as_path()).collect();
    let mut loads = load_files(config, [named, found_paths].concat(), run).into_iter();
    let loaded = plugin::builtins().into_iter().map(Ok).chain(
        config
            .plugin_files
            .iter()
            .zip(loads.by_ref())
            .map(|((_, at), load)| load.map_err(|e| format!("{at}: {e:#}"))),
    );
    for p in loaded {
        match p {
            Ok(p) => {
                if let Some(first) = plugins.get(&p.manifest.name) {
                    errors.push(format!(
                        "two plugins are named `{}`: {} and {}; remove one",
                        p.manifest.name, first.source, p.source
                    ));
                } else {
                    plugins.insert(p.manifest.name.clone(), p);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // A file that cannot load is skipped with its reason, and two files claiming one
    // name are both set aside; either is fatal only for a plugin the config uses
    // (below).
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    let mut from_dirs: BTreeMap<String, Plugin> = BTreeMap::new();
    for load in loads {
        match load {
            Err(e) => warnings.push(format!("{e:#}; skipped")),
            Ok(p) => {
                let name = p.manifest.name.clone();
                if let Some(first) = plugins.get(&name) {
                    warnings.push(format!(
                        "plugin `{name}` in {} is ignored: the name is taken by {}",
                        p.source, first.source
                    ));
                } else if let Some(first) = from_dirs.remove(&name) {
                    let why = format!(
                        "two plugin files are named `{name}`: {} and {}; remove one",
                        first.source, p.source
                    );
                    warnings.push(format!("{why}; both are ignored"));
                    skipped.insert(name, why);
                } else if let Some(why) = skipped.get(&name) {
                    warnings.push(format!("plugin {} is ignored too: {why}", p.source));
                } else {
                    from_dirs.insert(name, p);
                }
            }
        }
    }
    plugins.extend(from_dirs);
    let untrusted = plugins
        .values()
        .filter_map(|p| p.untrusted.clone())
        .collect();

    let (seed, seed_drawn) = match config.seed {
        Some(seed) => (seed, false),
        None => match getrandom::u64() {
            Ok(seed) => (seed, true),
            Err(e) => {
                return Err(ConfigErrors(vec![format!(
                    "cannot draw a random seed: {e}"
                )]))
            }
        },
    };
    // A journal path that is no regular file is refused the same way by check-config,
    // which opens nothing.
    let mut journal_error = None;
    let journal = if run {
        // A journal that cannot be written, or is no regular file at all, is refused
        // after the recovery: the faults a crash left behind are undone from what can
        // be read (the checkpoint beside it, at least), whatever the disk allows. A path
        // that is no regular file is never opened (a FIFO would block).
        journal::check_path(&config.journal)
            .and_then(|()| Journal::open(&config.journal))
            .map_err(|e| {
                journal_error = Some((
                    errors.len(),
                    format!("cannot open the journal {}: {e}", config.journal.display()),
                ))
            })
            .ok()
    } else {
        let checked = journal::check_path(&config.journal).and_then(|()| {
            match config
                .journal
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                Some(dir) => state::prepare_dir(dir, false),
                None => Ok(()),
            }
        });
        if let Err(e) = checked {
            errors.push(format!(
                "cannot open the journal {}: {e}",
                config.journal.display()
            ));
        }
        None
    };
    let guards = Guards {
        window: Some(config.window.clone()),
        limits: config.limits,
        pause_file: Some(config.pause_file.clone()),
    };
    let mut engine = Engine::new(seed, config.execute, guards, journal)
        .with_node(config.node.clone())
        .with_plugin_timeout(config.plugin_timeout)
        .protecting(plugin::live_workers);
    let mut fault_plugins = BTreeMap::new();
    for fault in &config.faults {
        let at = if fault.location.is_empty() {
            String::new()
        } else {
            format!("{}: ", fault.location)
        };
        let Some(plugin) = plugins.get(&fault.plugin) else {
            let why = match skipped.get(&fault.plugin) {
                Some(why) => format!("but {why}"),
                None => format!(
                    "which is not loaded (available: {}{})",
                    plugins.keys().cloned().collect::<Vec<_>>().join(", "),
                    if warnings.is_empty() {
                        String::new()
                    } else {
                        format!("; skipped: {}", warnings.join("; "))
                    }
                ),
            };
            errors.push(format!(
                "{at}fault `{}` uses plugin `{}`, {why}",
                fault.name, fault.plugin
            ));
            continue;
        };
        match plugin.new_fault(&fault.config) {
            Ok(f) => {
                if let Err(e) = engine.add_fault(&fault.name, &fault.plugin, f) {
                    errors.push(format!("{at}{e}"));
                }
                fault_plugins.insert(fault.name.clone(), fault.plugin.clone());
            }
            Err(e) => {
                // A position the plugin reports in its config text, turned into one in
                // the user's file.
                let (at, message) = match &config.file {
                    Some(file) if !fault.location.is_empty() => {
                        let (at, message) = fault.locate_error(&e.message, file);
                        (format!("{at}: "), message)
                    }
                    _ => (at, e.message.as_str()),
                };
                errors.push(format!(
                    "{at}fault `{}` ({}): invalid config: {message}",
                    fault.name, fault.plugin,
                ))
            }
        }
    }
    let mut poller_states = Vec::new();
    for poller in &config.pollers {
        if let Some(dir) = poller
            .state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            if let Err(e) = state::prepare_dir(dir, run) {
                errors.push(format!(
                    "poller {}: cannot create state directory {}: {e}",
                    poller.name,
                    dir.display()
                ));
                continue;
            }
        }
        match poller::load_state(poller) {
            Ok(saved) => poller_states.push(saved),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // Stopped by other errors anyway: the journal's is said in its place among them.
        if let Some((at, error)) = journal_error {
            errors.insert(at, error);
        }
        return Err(ConfigErrors(errors));
    }
    let journal_error = journal_error.map(|(_, error)| error);
    let infos = plugins.values().map(Plugin::info).collect();
    Ok(Setup {
        engine,
        plugins: infos,
        loaded: plugins,
        warnings,
        untrusted,
        journal_error,
        fault_plugins,
        seed_drawn,
        poller_states,
    })
}

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

/// Reads the journal before anything else happens. The faults of the last day count
/// against the budget again (a restart, a crash loop included, gets no fresh budget),
/// and what a previous run left active (it crashed, or was killed, mid-fault) is
/// reverted: every outcome with revert state and no revert record, and every two-phase
/// fault whose target was prepared but whose outcome never came. The plugin checks the
/// process is still the one it stopped (by start time).
pub fn recover(
    engine: &Engine,
    plugins: &BTreeMap<String, Plugin>,
    path: &std::path::Path,
) -> Checkpoint {
    // Read only: whether it can be written is another question, asked after this. What
    // is read: the checkpoint, the records since, and the end of the journal as far back
    // as the budget looks; never the whole history.
    let mut checkpoint = Checkpoint::load(path);
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
    let mut jobs = Vec::new();
    for entry in checkpoint.active() {
        let Some(state) = entry.revert_state().cloned() else {
            continue;
        };
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
        // The fault as configured now (if the same plugin still makes it), else a
        // default one of the plugin that made it.
        let fault = match engine.fault(name, &entry.intent.plugin) {
            Some(fault) => fault,
            None => match plugins.get(&entry.intent.plugin).map(|p| p.new_fault("")) {
                Some(Ok(fault)) => Arc::new(fault) as Arc<dyn Fault>,
                // A plugin whose config has required fields builds no fault from none.
                Some(Err(e)) => {
                    log::line(format!(
                        "Recovering {id}: {name} is no longer configured and plugin {} cannot build a fault without a config ({}); configure it again to revert it, or revert it by hand: {state}",
                        entry.intent.plugin, e.message
                    ));
                    continue;
                }
                None => {
                    log::line(format!(
                        "Recovering {id}: plugin {} is not loaded; revert it by hand: {state}",
                        entry.intent.plugin
                    ));
                    continue;
                }
            },
        };
        jobs.push(engine.revert_job(fault, id, name, state, "recovery"));
    }
    // All at once, each on a thread of its own: a plugin whose revert hangs holds up
    // neither the others nor the start, nor a stop signal sent meanwhile.
    let wait = engine.plugin_timeout();
    let stopped = || super::stop::requested().is_some();
    for left in run_all_unless(jobs, wait, &stopped) {
        let why = match super::stop::requested() {
            Some(signal) => format!("{signal} came before its plugin answered"),
            None => format!(
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
    checkpoint
}
