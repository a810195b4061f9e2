//! From a validated configuration to a running engine: load the plugins, build every
//! configured fault, fix the seed. Shared by the daemon, `plan` and `check-config`, so a
//! file that checks clean also starts.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{mpsc, Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, Outcome, PluginError, Request};

use crate::{
    config::{Config, ConfigErrors, FaultConfig},
    domain::{
        active::{self, Checkpoint},
        archive::{self, Retention},
        injection::Fault,
        journal::{self, Entry, Journal},
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

/// How long a plugin file may take to load before it is said that it is waited for (and
/// the daemon starts serving without it).
pub const SLOW_LOAD: Duration = Duration::from_secs(1);

/// Who is told what loading the plugin files does: the daemon logs each load as it
/// begins; all of them say a load that takes longer than [`SLOW_LOAD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: the journal is opened, each load is logged as it begins.
    Run,
    /// `kill --config`: the journal is opened.
    Once,
    /// `check-config`: nothing is written anywhere, the journal is not opened.
    Check,
    /// The check a SIGHUP asks for: as `Check`, its lines marked `SIGHUP: `.
    Hangup,
}

impl Mode {
    fn writes(self) -> bool {
        matches!(self, Mode::Run | Mode::Once)
    }

    fn say(self, line: String) {
        match self {
            Mode::Hangup => log::line(format!("SIGHUP: {line}")),
            Mode::Run | Mode::Once | Mode::Check => log::line(line),
        }
    }
}

/// Where a fault waiting for its plugin file goes once built.
type Built = Arc<OnceLock<Arc<dyn Fault>>>;

/// A configured fault whose plugin file is still loading: refused with
/// [`crate::domain::injection::InjectError::Loading`] until [`Later::complete`] gives it
/// the fault its plugin built.
struct Deferred {
    plugin: String,
    fault: Built,
}

impl Fault for Deferred {
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        self.ready()?.inject(request)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        self.ready()?.revert(state)
    }

    fn prepares(&self) -> bool {
        self.fault.get().is_some_and(|f| f.prepares())
    }

    fn loading(&self) -> Option<&str> {
        self.fault.get().is_none().then_some(self.plugin.as_str())
    }
}

impl Deferred {
    fn ready(&self) -> Result<&Arc<dyn Fault>, PluginError> {
        self.fault.get().ok_or_else(|| {
            PluginError::new(
                ErrorKind::Failed,
                format!("plugin `{}` is still loading", self.plugin),
            )
        })
    }
}

/// A setup under way ([`begin`]): what needs no plugin file is built and checked, and
/// each plugin file's worker is starting on a thread of its own.
pub struct Begun {
    setup: Setup,
    later: Later,
}

/// What is left of a setup once the engine exists: the plugin files' loads, and the
/// faults (and errors) that wait for them.
pub struct Later {
    config: Config,
    mode: Mode,
    /// Every plugin file: those the config names (in its order), then those found in the
    /// plugin directories.
    files: Vec<PathBuf>,
    /// How many of `files` the config names.
    named: usize,
    /// Each file's load, once it has answered.
    answered: Vec<Option<anyhow::Result<Plugin>>>,
    answers: mpsc::Receiver<(usize, anyhow::Result<Plugin>)>,
    /// The names the built-ins take, and where each came from.
    builtins: BTreeMap<String, String>,
    /// Why a plugin directory could not be read.
    dir_warnings: Vec<String>,
    /// Each configured fault waiting for a file's plugin (its index in the config), and
    /// where it goes once built.
    deferred: Vec<(usize, Built)>,
    /// Each configured fault's error found so far, in the config's order.
    fault_errors: Vec<Option<String>>,
    /// Why the journal cannot be opened: it stops the setup in `check-config`; in the
    /// daemon it is said among other errors that stop it anyway, else it is refused
    /// after the recovery ([`Setup::journal_error`]).
    journal_error: Option<String>,
    poller_errors: Vec<String>,
}

/// What the plugin files brought, once every one has answered.
pub struct Loaded {
    /// The plugins of the files, by name.
    pub plugins: BTreeMap<String, Plugin>,
    /// Files skipped, and why (see [`Setup::warnings`]).
    pub warnings: Vec<String>,
    /// Files loaded though untrusted (see [`Setup::untrusted`]).
    pub untrusted: Vec<String>,
}

/// Starts a setup: checks every plugin file without running any of its code (missing,
/// untrusted and junk files are refused here, quickly), starts the workers of the others,
/// each on a thread of its own, and builds the engine with every fault of a built-in
/// (those of a file's plugin wait for it).
pub fn begin(config: &Config, mode: Mode) -> Result<Begun, ConfigErrors> {
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
    // Plugin directories: listed first, so that every file, named or found, loads in
    // one concurrent pass.
    let mut dir_warnings = Vec::new();
    let mut files: Vec<PathBuf> = config.plugin_files.iter().map(|(p, _)| p.clone()).collect();
    let named = files.len();
    for dir in &config.plugin_dirs {
        match plugin::discover(dir, config.plugin_trust) {
            Ok(found) => files.extend(found),
            Err(e) => dir_warnings.push(format!("{e:#}")),
        }
    }
    let (tell, answers) = mpsc::channel();
    let mut answered = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let prepared = match Plugin::prepare(path, config.plugin_trust) {
            Ok(prepared) => prepared,
            Err(e) => {
                answered.push(Some(Err(e)));
                continue;
            }
        };
        if mode == Mode::Run {
            mode.say(format!("Loading plugin {}", path.display()));
        }
        let supervision = supervision(config.plugin_timeout);
        let tell = tell.clone();
        let spawned = std::thread::Builder::new()
            .name("plugin-load".to_owned())
            .spawn(move || {
                let _ = tell.send((i, prepared.start(supervision)));
            });
        answered.push(match spawned {
            Ok(_) => None,
            Err(e) => Some(Err(anyhow::anyhow!(
                "cannot load plugin {}: no thread to load it on: {e}",
                path.display()
            ))),
        });
    }

    let mut journal_error = None;
    let journal = if mode.writes() {
        // A journal that cannot be written, or is no regular file at all, is refused
        // after the recovery: the faults a crash left behind are undone from what can
        // be read (the checkpoint beside it, at least), whatever the disk allows. A path
        // that is no regular file is never opened (a FIFO would block).
        journal::check_path(&config.journal)
            .and_then(|()| Journal::open(&config.journal))
            .map_err(|e| {
                journal_error = Some(format!(
                    "cannot open the journal {}: {e}",
                    config.journal.display()
                ))
            })
            .ok()
    } else {
        // A journal path that is no regular file is refused the same way by
        // check-config, which opens nothing.
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
            journal_error = Some(format!(
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
    let builtins: BTreeMap<String, Plugin> = plugin::builtins()
        .into_iter()
        .map(|p| (p.manifest.name.clone(), p))
        .collect();
    let mut fault_plugins = BTreeMap::new();
    let mut fault_errors = Vec::with_capacity(config.faults.len());
    let mut deferred = Vec::new();
    for (i, fault) in config.faults.iter().enumerate() {
        fault_plugins.insert(fault.name.clone(), fault.plugin.clone());
        let error = match builtins.get(&fault.plugin) {
            // A file's plugin: built once the file has loaded (a file that takes a
            // built-in's name is refused or ignored, so this one is the built-in).
            None => {
                let slot = Arc::new(OnceLock::new());
                let waiting = Deferred {
                    plugin: fault.plugin.clone(),
                    fault: slot.clone(),
                };
                deferred.push((i, slot));
                engine
                    .add_fault(&fault.name, &fault.plugin, waiting)
                    .err()
                    .map(|e| format!("{}{e}", at(fault)))
            }
            Some(plugin) => match plugin.new_fault(&fault.config) {
                Ok(f) => engine
                    .add_fault(&fault.name, &fault.plugin, f)
                    .err()
                    .map(|e| format!("{}{e}", at(fault))),
                Err(e) => Some(invalid_config(config, fault, &e)),
            },
        };
        fault_errors.push(error);
    }
    let mut poller_states = Vec::new();
    let mut poller_errors = Vec::new();
    for poller in &config.pollers {
        if let Some(dir) = poller
            .state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            if let Err(e) = state::prepare_dir(dir, mode.writes()) {
                poller_errors.push(format!(
                    "poller {}: cannot create state directory {}: {e}",
                    poller.name,
                    dir.display()
                ));
                continue;
            }
        }
        match poller::load_state(poller) {
            Ok(saved) => poller_states.push(saved),
            Err(e) => poller_errors.push(e),
        }
    }
    let infos = builtins.values().map(Plugin::info).collect();
    let taken = builtins
        .iter()
        .map(|(name, p)| (name.clone(), p.source.to_string()))
        .collect();
    // The daemon stops at a journal it cannot write only after the recovery.
    let setup_journal_error = journal_error.clone().filter(|_| mode.writes());
    Ok(Begun {
        setup: Setup {
            engine,
            plugins: infos,
            fault_plugins,
            seed_drawn,
            poller_states,
            loaded: builtins,
            warnings: Vec::new(),
            untrusted: Vec::new(),
            journal_error: setup_journal_error,
        },
        later: Later {
            config: config.clone(),
            mode,
            files,
            named,
            answered,
            answers,
            builtins: taken,
            dir_warnings,
            deferred,
            fault_errors,
            journal_error,
            poller_errors,
        },
    })
}

/// `fault`'s location, as a prefix of an error about it.
fn at(fault: &FaultConfig) -> String {
    if fault.location.is_empty() {
        String::new()
    } else {
        format!("{}: ", fault.location)
    }
}

/// The error of a fault whose plugin refused its config; a position the plugin reports
/// in its config text is turned into one in the user's file.
fn invalid_config(config: &Config, fault: &FaultConfig, e: &PluginError) -> String {
    let (at, message) = match &config.file {
        Some(file) if !fault.location.is_empty() => {
            let (at, message) = fault.locate_error(&e.message, file);
            (format!("{at}: "), message)
        }
        _ => (at(fault), e.message.as_str()),
    };
    format!(
        "{at}fault `{}` ({}): invalid config: {message}",
        fault.name, fault.plugin,
    )
}

impl Begun {
    /// The engine, with every built-in's fault (the others wait for their files).
    pub fn engine(&self) -> &Engine {
        &self.setup.engine
    }

    /// The built-in plugins.
    pub fn builtins(&self) -> &BTreeMap<String, Plugin> {
        &self.setup.loaded
    }

    /// Whether there are plugin files (loading or loaded, not yet taken in).
    pub fn has_files(&self) -> bool {
        !self.later.files.is_empty()
    }

    /// Whether something is wrong already, whatever the plugin files say.
    pub fn has_errors(&self) -> bool {
        let later = &self.later;
        later.fault_errors.iter().any(Option::is_some)
            || !later.poller_errors.is_empty()
            || (later.journal_error.is_some() && !later.mode.writes())
            || later.answered[..later.named]
                .iter()
                .any(|a| matches!(a, Some(Err(_))))
    }

    /// Waits for the plugin files until `wait` has passed; whether every one answered.
    pub fn wait(&mut self, wait: Duration) -> bool {
        self.later.wait(Some(Instant::now() + wait))
    }

    /// The setup as far as it goes without the plugin files still loading (their faults
    /// are refused until loaded), and what is left to do.
    pub fn split(self) -> (Setup, Later) {
        (self.setup, self.later)
    }

    /// Waits for every plugin file and completes the setup: every problem is reported,
    /// each naming where it was written.
    pub fn finish(self) -> Result<Setup, ConfigErrors> {
        let (mut setup, later) = self.split();
        setup.absorb(later.complete()?);
        Ok(setup)
    }
}

impl Setup {
    /// Adds what the plugin files brought.
    pub fn absorb(&mut self, loaded: Loaded) {
        self.plugins
            .extend(loaded.plugins.values().map(Plugin::info));
        self.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        self.loaded.extend(loaded.plugins);
        self.warnings.extend(loaded.warnings);
        self.untrusted.extend(loaded.untrusted);
    }
}

impl Later {
    /// The plugin files still loading.
    pub fn loading(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .zip(&self.answered)
            .filter(|(_, a)| a.is_none())
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Takes the answers in until every file has answered (true) or `until` passes.
    /// A load still running after [`SLOW_LOAD`] is said, once.
    fn wait(&mut self, until: Option<Instant>) -> bool {
        let slow_at = Instant::now() + SLOW_LOAD;
        let mut said = false;
        while self.answered.iter().any(Option::is_none) {
            let now = Instant::now();
            if !said && now >= slow_at {
                said = true;
                for path in self.loading() {
                    self.mode.say(format!(
                        "Loading plugin {}: no answer yet after {}; waiting at most {} for it",
                        path.display(),
                        humantime::format_duration(SLOW_LOAD),
                        humantime::format_duration(self.config.plugin_timeout)
                    ));
                }
            }
            let next = if said { until } else { Some(slow_at) };
            let next = match (next, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let answer = match next {
                Some(at) => match self.answers.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(answer) => answer,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if until.is_some_and(|u| Instant::now() >= u) {
                            return false;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match self.answers.recv() {
                    Ok(answer) => answer,
                    Err(_) => break,
                },
            };
            self.answered[answer.0] = Some(answer.1);
        }
        // A thread that ended without a word (it panicked): its file failed.
        for (path, answer) in self.files.iter().zip(&mut self.answered) {
            if answer.is_none() {
                *answer = Some(Err(anyhow::anyhow!(
                    "cannot load plugin {}: loading it panicked",
                    path.display()
                )));
            }
        }
        true
    }

    /// Waits for every plugin file, then builds the faults that waited for them. `Err`
    /// holds every error of the setup, those found before the files loaded included,
    /// in the order of the file.
    pub fn complete(mut self) -> Result<Loaded, ConfigErrors> {
        self.wait(None);
        let mut errors = Vec::new();
        let mut warnings = self.dir_warnings;
        let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
        let mut answers = self
            .answered
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(anyhow::anyhow!("cannot load plugin: no answer"))));
        for ((_, at), load) in self.config.plugin_files.iter().zip(answers.by_ref()) {
            match load {
                Ok(p) => {
                    let first =
                        self.builtins.get(&p.manifest.name).cloned().or_else(|| {
                            plugins.get(&p.manifest.name).map(|f| f.source.to_string())
                        });
                    if let Some(first) = first {
                        errors.push(format!(
                            "two plugins are named `{}`: {} and {}; remove one",
                            p.manifest.name, first, p.source
                        ));
                    } else {
                        plugins.insert(p.manifest.name.clone(), p);
                    }
                }
                Err(e) => errors.push(format!("{at}: {e:#}")),
            }
        }
        // A file that cannot load is skipped with its reason, and two files claiming one
        // name are both set aside; either is fatal only for a plugin the config uses
        // (below).
        let mut skipped: BTreeMap<String, String> = BTreeMap::new();
        let mut from_dirs: BTreeMap<String, Plugin> = BTreeMap::new();
        for load in answers {
            match load {
                Err(e) => warnings.push(format!("{e:#}; skipped")),
                Ok(p) => {
                    let name = p.manifest.name.clone();
                    let first = self
                        .builtins
                        .get(&name)
                        .cloned()
                        .or_else(|| plugins.get(&name).map(|f| f.source.to_string()));
                    if let Some(first) = first {
                        warnings.push(format!(
                            "plugin `{name}` in {} is ignored: the name is taken by {first}",
                            p.source
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
        for (i, slot) in &self.deferred {
            let fault = &self.config.faults[*i];
            if self.fault_errors[*i].is_some() {
                continue;
            }
            let Some(plugin) = plugins.get(&fault.plugin) else {
                let why = match skipped.get(&fault.plugin) {
                    Some(why) => format!("but {why}"),
                    None => format!(
                        "which is not loaded (available: {}{})",
                        self.builtins
                            .keys()
                            .chain(plugins.keys())
                            .cloned()
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", "),
                        if warnings.is_empty() {
                            String::new()
                        } else {
                            format!("; skipped: {}", warnings.join("; "))
                        }
                    ),
                };
                self.fault_errors[*i] = Some(format!(
                    "{}fault `{}` uses plugin `{}`, {why}",
                    at(fault),
                    fault.name,
                    fault.plugin
                ));
                continue;
            };
            match plugin.new_fault(&fault.config) {
                Ok(f) => {
                    let _ = slot.set(Arc::new(f));
                }
                Err(e) => self.fault_errors[*i] = Some(invalid_config(&self.config, fault, &e)),
            }
        }
        let journal_at = errors.len();
        errors.extend(self.fault_errors.into_iter().flatten());
        errors.extend(self.poller_errors);
        if let Some(error) = self.journal_error {
            // In the daemon, said only among errors that stop it anyway.
            if !errors.is_empty() || !self.mode.writes() {
                errors.insert(journal_at, error);
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Loaded {
            plugins,
            warnings,
            untrusted,
        })
    }
}

/// A configuration `config::load_all` found errors in (`errors`), refused with every
/// error at once: the file's, then those of its plugins and faults, checked on what
/// could be built (a refused setting standing in at its default), nothing written.
pub fn all_errors(config: &Config, mut errors: Vec<String>) -> ConfigErrors {
    if let Err(more) = build(config, Mode::Check) {
        for e in more.0 {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
    }
    ConfigErrors(errors)
}

/// Builds the engine, waiting for every plugin file; every problem is reported, each
/// naming where it was written. Only [`Mode::Run`] and [`Mode::Once`] write anything
/// (the journal is opened).
pub fn build(config: &Config, mode: Mode) -> Result<Setup, ConfigErrors> {
    begin(config, mode)?.finish()
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
///
/// With `loading` (plugin files still load), a fault whose plugin may be one of them is
/// not reverted yet: it is returned, for [`recover_rest`] once they have loaded.
pub fn recover(
    engine: &Engine,
    plugins: &BTreeMap<String, Plugin>,
    path: &std::path::Path,
    loading: bool,
) -> (Checkpoint, Vec<Entry>) {
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
    let mut waiting = Vec::new();
    let mut entries = Vec::new();
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
}
