//! The plugin files' loads: each file's worker started on a thread of its own, all at
//! once, and the faults of their plugins, which wait for them ([`Deferred`]).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{mpsc, Arc, OnceLock},
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, Outcome, PluginError, Request};

use super::{at, invalid_config, supervision, Mode};
use crate::{
    config::{Config, ConfigErrors},
    domain::injection::Fault,
    plugin::{self, Plugin},
};

/// How long a plugin file may take to load before it is said that it is waited for (and
/// the daemon starts serving without it).
pub const SLOW_LOAD: Duration = Duration::from_secs(1);

/// Where a fault waiting for its plugin file goes once built.
pub(super) type Built = Arc<OnceLock<Arc<dyn Fault>>>;

/// A configured fault whose plugin file is still loading: refused with
/// [`crate::domain::injection::InjectError::Loading`] until [`Later::complete`] gives it
/// the fault its plugin built.
pub(super) struct Deferred {
    pub(super) plugin: String,
    pub(super) fault: Built,
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

/// What is left of a setup once the engine exists: the plugin files' loads, and the
/// faults (and errors) that wait for them.
pub struct Later {
    pub(super) config: Config,
    pub(super) mode: Mode,
    /// The plugin files' loads.
    pub(super) loads: Loads,
    /// The names the built-ins take, and where each came from.
    pub(super) builtins: BTreeMap<String, String>,
    /// Each configured fault waiting for a file's plugin (its index in the config), and
    /// where it goes once built.
    pub(super) deferred: Vec<(usize, Built)>,
    /// Each configured fault's error found so far, in the config's order.
    pub(super) fault_errors: Vec<Option<String>>,
    /// Why the journal cannot be opened: it stops the setup in `check-config`; in the
    /// daemon it is said among other errors that stop it anyway, else it is refused
    /// after the recovery ([`Setup::journal_error`](super::Setup::journal_error)).
    pub(super) journal_error: Option<String>,
    pub(super) poller_errors: Vec<String>,
}

/// What the plugin files brought, once every one has answered.
pub struct Loaded {
    /// The plugins of the files, by name.
    pub plugins: BTreeMap<String, Plugin>,
    /// Files skipped, and why (see [`Setup::warnings`](super::Setup::warnings)).
    pub warnings: Vec<String>,
    /// Files loaded though untrusted (see [`Setup::untrusted`](super::Setup::untrusted)).
    pub untrusted: Vec<String>,
}

/// How often a wait for the plugin files looks for a stop signal.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Every plugin file's load: those the config names (in its order), then those found in
/// the plugin directories.
pub(super) struct Loads {
    files: Vec<PathBuf>,
    /// How many of `files` the config names.
    named: usize,
    /// Each file's load, once it has answered.
    answered: Vec<Option<anyhow::Result<Plugin>>>,
    answers: mpsc::Receiver<(usize, anyhow::Result<Plugin>)>,
    /// Why a plugin directory could not be read.
    dir_warnings: Vec<String>,
    /// When the loads began.
    began: Instant,
    /// Whether the loads still running after [`SLOW_LOAD`] were said.
    said_slow: bool,
    /// The files that answered while waited for in bulk, not yet taken one by one
    /// ([`Later::next`]).
    fresh: Vec<usize>,
}

/// Lists the plugin directories and starts every file's load: those that fail the
/// checks that run none of their code have answered already.
pub(super) fn start(config: &Config, mode: Mode) -> Loads {
    // Plugin directories: listed first, so that every file, named or found, loads in
    // one concurrent pass.
    let mut dir_warnings = Vec::new();
    let mut files: Vec<PathBuf> = config.plugin_files.iter().map(|(p, _)| p.clone()).collect();
    let named = files.len();
    for dir in &config.plugin_dirs {
        if let Some(missing) = plugin::missing_dir(dir) {
            dir_warnings.push(format!("{missing}: no plugin is loaded from it"));
        }
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
    Loads {
        files,
        named,
        answered,
        answers,
        dir_warnings,
        began: Instant::now(),
        said_slow: false,
        fresh: Vec::new(),
    }
}

impl Loads {
    /// Whether there are plugin files at all.
    pub(super) fn any(&self) -> bool {
        !self.files.is_empty()
    }

    /// The files still loading.
    fn still_loading(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .zip(&self.answered)
            .filter(|(_, a)| a.is_none())
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Takes the answers in until every file has answered (true) or `until` passes.
    pub(super) fn take_answers(&mut self, until: Option<Instant>) -> bool {
        while self.answered.iter().any(Option::is_none) {
            let answer = match until {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    match self.answers.recv_timeout(left) {
                        Ok(answer) => answer,
                        Err(mpsc::RecvTimeoutError::Timeout) => return false,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Without a deadline, a stop signal ends the wait: the loads still
                // running are given up on (their workers end with the daemon).
                None => match self.answers.recv_timeout(STOP_POLL) {
                    Ok(answer) => answer,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(signal) = crate::runtime::stop::requested() {
                            self.give_up(signal);
                            break;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            self.answered[answer.0] = Some(answer.1);
            self.fresh.push(answer.0);
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

    /// Waits for the next answer (a stop signal ends the wait, failing the loads still
    /// running); its index, or `None` once every file has answered.
    fn take_one(&mut self) -> Option<usize> {
        while self.answered.iter().any(Option::is_none) {
            match self.answers.recv_timeout(STOP_POLL) {
                Ok((index, answer)) => {
                    self.answered[index] = Some(answer);
                    return Some(index);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(signal) = crate::runtime::stop::requested() {
                        self.give_up(signal);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.take_answers(None);
                }
            }
        }
        None
    }

    /// Fails every load still running: `signal` came before it answered.
    fn give_up(&mut self, signal: &str) {
        for (path, answer) in self.files.iter().zip(&mut self.answered) {
            if answer.is_none() {
                *answer = Some(Err(anyhow::anyhow!(
                    "cannot load plugin {}: {signal} came before it loaded; not waited for",
                    path.display()
                )));
            }
        }
    }

    /// Whether a file the config names has failed already.
    pub(super) fn named_failed(&self) -> bool {
        self.answered[..self.named]
            .iter()
            .any(|a| matches!(a, Some(Err(_))))
    }
}

impl Later {
    /// The plugin files still loading.
    pub fn loading(&self) -> Vec<PathBuf> {
        self.loads.still_loading()
    }

    /// The plugin files still loading, for a caller that says itself that it goes on
    /// without them: the wait for them says nothing more.
    pub fn going_on_without(&mut self) -> Vec<PathBuf> {
        self.loads.said_slow = true;
        self.loads.still_loading()
    }

    /// Waits for the next file to answer (a stop signal ends the wait); when it is one the
    /// config names and it brought a plugin that no built-in's name takes, builds the
    /// faults waiting for it at once (their 503 ends) and returns it, for what a crash
    /// left of it to be reverted. `None` once every file has answered. A file of a plugin
    /// directory waits for [`Later::complete`]: a named file of the same name, still
    /// loading, would take precedence. A conflict found later (two named files, one
    /// name) still refuses the configuration in [`Later::complete`].
    pub fn next(&mut self) -> Option<Option<Plugin>> {
        let index = match self.loads.fresh.pop() {
            Some(index) => index,
            None => self.loads.take_one()?,
        };
        let Some(Ok(plugin)) = &self.loads.answered[index] else {
            return Some(None);
        };
        if index >= self.loads.named {
            return Some(None);
        }
        if self.builtins.contains_key(&plugin.manifest.name) {
            return Some(None);
        }
        for (i, slot) in &self.deferred {
            let fault = &self.config.faults[*i];
            if fault.plugin != plugin.manifest.name || self.fault_errors[*i].is_some() {
                continue;
            }
            // A config the plugin refuses is said by `complete`, with every other error.
            if let Ok(built) = plugin.new_fault(&fault.config) {
                let _ = slot.set(Arc::new(built));
            }
        }
        Some(Some(plugin.clone()))
    }

    /// Takes every answer in; the loads still running [`SLOW_LOAD`] after they began are
    /// said, once.
    fn wait_all(&mut self) {
        let slow_at = self.loads.began + SLOW_LOAD;
        if !self.loads.said_slow && !self.loads.take_answers(Some(slow_at)) {
            self.loads.said_slow = true;
            for path in self.loads.still_loading() {
                self.mode.say(format!(
                    "Loading plugin {}: no answer yet after {}; waiting at most {} for it",
                    path.display(),
                    humantime::format_duration(SLOW_LOAD),
                    humantime::format_duration(self.config.plugin_timeout)
                ));
            }
        }
        self.loads.take_answers(None);
    }

    /// Waits for every plugin file, then builds the faults that waited for them. `Err`
    /// holds every error of the setup, those found before the files loaded included,
    /// in the order of the file.
    pub fn complete(mut self) -> Result<Loaded, ConfigErrors> {
        self.wait_all();
        let answers =
            self.loads.answered.into_iter().map(|a| {
                a.unwrap_or_else(|| Err(anyhow::anyhow!("cannot load plugin: no answer")))
            });
        let mut taken = TakenIn {
            plugins: BTreeMap::new(),
            errors: Vec::new(),
            warnings: self.loads.dir_warnings,
            skipped: BTreeMap::new(),
        };
        taken.take_in(&self.builtins, &self.config.plugin_files, answers);
        for (i, slot) in &self.deferred {
            let fault = &self.config.faults[*i];
            if self.fault_errors[*i].is_some() {
                continue;
            }
            let built = match taken.plugins.get(&fault.plugin) {
                // Built already, as its file answered (see `Later::next`).
                Some(_) if slot.get().is_some() => continue,
                Some(plugin) => plugin
                    .new_fault(&fault.config)
                    .map_err(|e| invalid_config(&self.config, fault, &e)),
                None => Err(format!(
                    "{}fault `{}` uses plugin `{}`, {}",
                    at(fault),
                    fault.name,
                    fault.plugin,
                    taken.why_missing(&fault.plugin, &self.builtins)
                )),
            };
            match built {
                Ok(f) => {
                    let _ = slot.set(Arc::new(f));
                }
                Err(e) => self.fault_errors[*i] = Some(e),
            }
        }
        let mut errors = taken.errors;
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
        let untrusted = taken
            .plugins
            .values()
            .filter_map(|p| p.untrusted.clone())
            .collect();
        Ok(Loaded {
            plugins: taken.plugins,
            warnings: taken.warnings,
            untrusted,
        })
    }
}

/// The plugins the files brought, as far as their names allow.
struct TakenIn {
    /// By name.
    plugins: BTreeMap<String, Plugin>,
    /// Files the config names that failed, or whose name is taken.
    errors: Vec<String>,
    /// Files of the plugin directories that were skipped, and why.
    warnings: Vec<String>,
    /// The names two directory files claimed, and why both were set aside.
    skipped: BTreeMap<String, String>,
}

impl TakenIn {
    /// Takes in each file's load, in the order of the files: those `named` in the
    /// config first (a failure is an error), then those of the plugin directories (a
    /// failure, or a name taken, skips the file with a warning; two files claiming one
    /// name are both set aside: fatal only for a plugin the config uses). `builtins`
    /// holds the names the built-ins take, and where each came from.
    fn take_in(
        &mut self,
        builtins: &BTreeMap<String, String>,
        named: &[(PathBuf, String)],
        mut answers: impl Iterator<Item = anyhow::Result<Plugin>>,
    ) {
        let taken_by = |plugins: &BTreeMap<String, Plugin>, name: &str| {
            builtins
                .get(name)
                .cloned()
                .or_else(|| plugins.get(name).map(|f| f.source.to_string()))
        };
        for ((_, at), load) in named.iter().zip(answers.by_ref()) {
            match load {
                Ok(p) => match taken_by(&self.plugins, &p.manifest.name) {
                    Some(first) => self.errors.push(format!(
                        "two plugins are named `{}`: {} and {}; remove one",
                        p.manifest.name, first, p.source
                    )),
                    None => {
                        self.plugins.insert(p.manifest.name.clone(), p);
                    }
                },
                Err(e) => self.errors.push(format!("{at}: {e:#}")),
            }
        }
        let mut from_dirs: BTreeMap<String, Plugin> = BTreeMap::new();
        for load in answers {
            let p = match load {
                Err(e) => {
                    self.warnings.push(format!("{e:#}; skipped"));
                    continue;
                }
                Ok(p) => p,
            };
            let name = p.manifest.name.clone();
            if let Some(first) = taken_by(&self.plugins, &name) {
                self.warnings.push(format!(
                    "plugin `{name}` in {} is ignored: the name is taken by {first}",
                    p.source
                ));
            } else if let Some(first) = from_dirs.remove(&name) {
                let why = format!(
                    "two plugin files are named `{name}`: {} and {}; remove one",
                    first.source, p.source
                );
                self.warnings.push(format!("{why}; both are ignored"));
                self.skipped.insert(name, why);
            } else if let Some(why) = self.skipped.get(&name) {
                self.warnings
                    .push(format!("plugin {} is ignored too: {why}", p.source));
            } else {
                from_dirs.insert(name, p);
            }
        }
        self.plugins.extend(from_dirs);
    }

    /// Why no plugin is named `name`, for the error of a fault that uses it.
    fn why_missing(&self, name: &str, builtins: &BTreeMap<String, String>) -> String {
        if let Some(why) = self.skipped.get(name) {
            return format!("but {why}");
        }
        let available: std::collections::BTreeSet<&String> =
            builtins.keys().chain(self.plugins.keys()).collect();
        format!(
            "which is not loaded (available: {}{})",
            available
                .into_iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", self.warnings.join("; "))
            }
        )
    }
}
