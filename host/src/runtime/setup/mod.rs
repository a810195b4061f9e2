//! From a validated configuration to a running engine: load the plugins, build every
//! configured fault, fix the seed. Shared by the daemon, `plan` and `check-config`, so a
//! file that checks clean also starts.
//!
//! `loading`: the plugin files' loads, and the faults that wait for them; `recover`:
//! what a crashed run left active; `checkpoints`: the journal's checkpoints and
//! rotation.

mod checkpoints;
mod loading;
mod recover;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::sdk::PluginError;

pub use checkpoints::{checkpoint_now, keep_checkpoints};
use loading::{Built, Deferred};
pub use loading::{Later, Loaded, SLOW_LOAD};
pub use recover::{honour_halt, recover, recover_rest, restore_budget};

use crate::{
    config::{Config, ConfigErrors, FaultConfig},
    engine::{Engine, Guards},
    output::log,
    plugin::{self, Plugin, PluginInfo, Supervision},
    storage::journal::{self, Journal},
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

/// A setup under way ([`begin`]): what needs no plugin file is built and checked, and
/// each plugin file's worker is starting on a thread of its own.
pub struct Begun {
    setup: Setup,
    later: Later,
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
    // A SIGHUP's configuration with a proxy that could not listen would stop the
    // restarted daemon: refused here, the daemon runs on unchanged.
    if matches!(mode, Mode::Hangup) {
        let cannot = net_faults::proxy::can_listen(&config.proxies);
        if !cannot.is_empty() {
            return Err(ConfigErrors(cannot));
        }
    }
    let loads = loading::start(config, mode);
    let (journal, journal_error) = open_journal(config, mode);
    let guards = Guards {
        window: Some(config.window.clone()),
        limits: config.limits,
        pause_file: Some(config.pause_file.clone()),
    };
    let mut engine = Engine::new(seed, config.execute, guards, journal)
        .with_node(config.node.clone())
        .with_plugin_timeout(config.plugin_timeout)
        .protecting(plugin::live_workers);
    if let (Some(fleet), Mode::Run) = (&config.fleet, mode) {
        engine = engine.with_fleet(super::fleet::connect(fleet, config.node.as_deref())?);
    }
    let builtins: BTreeMap<String, Plugin> = plugin::builtins()
        .into_iter()
        .map(|p| (p.manifest.name.clone(), p))
        .collect();
    // A net-proxy fault names one of these: declared before the faults are built. The
    // check a SIGHUP asks for leaves the running daemon's declared proxies alone.
    let faults = if matches!(mode, Mode::Hangup) {
        net_faults::proxy::checking(&config.proxies, || {
            add_faults(&mut engine, config, &builtins)
        })
    } else {
        net_faults::proxy::declare(config.proxies.clone());
        // What a network fault never cuts: the coordinator, every member of it.
        if mode.writes() {
            let endpoints = config.fleet.as_ref().map(|f| f.endpoints.as_slice());
            let (spared, unresolved) =
                crate::fleet::peers::endpoint_addrs(endpoints.unwrap_or_default());
            for endpoint in unresolved {
                mode.say(format!(
                    "fleet: endpoint {endpoint} did not resolve: network faults spare it only while a connection to it is open"
                ));
            }
            net_faults::declare_peers(spared);
            // And the daemon's own ports: in a one-shot `kill`, the daemon this config
            // describes runs in another process, its API (the kill switch) there.
            let ports = config
                .http
                .iter()
                .map(|http| http.listen.port())
                .chain(config.proxies.iter().map(|p| p.listen.port()))
                .collect();
            net_faults::declare_listening(ports);
            // The proxies' connections (six descriptors each) never take those the API
            // and the reverts need: what is left of the limit is theirs.
            let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX);
            let api = config.http.as_ref().map_or(0, |http| {
                crate::triggers::http::connections_within(http.limits.max_connections, open_files)
            });
            let reserved = crate::triggers::http::RESERVED_FILES;
            let left = open_files.saturating_sub(reserved + api);
            // A proxy that listens and accepts no one is worse than none: refused here.
            if !config.proxies.is_empty() && left < net_faults::proxy::FILES_PER_CONNECTION {
                return Err(ConfigErrors(vec![format!(
                    "proxies: the limit of open files is {open_files}: the API's {api} connections and the {reserved} descriptors kept for reverts, plugins and the journal leave none for the proxies' connections ({} descriptors each); raise it (LimitNOFILE=, ulimit -n) or lower http.max_connections",
                    net_faults::proxy::FILES_PER_CONNECTION
                )]));
            }
            net_faults::proxy::limit_files(left);
        }
        add_faults(&mut engine, config, &builtins)
    };
    let (poller_states, poller_errors) = poller_states(config, mode);
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
            fault_plugins: faults.plugins,
            seed_drawn,
            poller_states,
            loaded: builtins,
            warnings: exposed_proxies(config),
            untrusted: Vec::new(),
            journal_error: setup_journal_error,
        },
        later: Later {
            config: config.clone(),
            mode,
            loads,
            builtins: taken,
            deferred: faults.deferred,
            fault_errors: faults.errors,
            journal_error,
            poller_errors,
        },
    })
}

/// A warning for each proxy listening beyond loopback: it asks no token of anyone, and
/// whoever reaches it reaches its upstream through it (and meets its toxics).
fn exposed_proxies(config: &Config) -> Vec<String> {
    config
        .proxies
        .iter()
        .filter(|p| !net_faults::proxy::only_local(p.listen))
        .map(|p| {
            format!(
                "proxy `{}` listens on {}: it is reachable from other hosts, and through it so is {} (listen on 127.0.0.1 unless they are to use it)",
                p.name, p.listen, p.upstream
            )
        })
        .collect()
}

/// The journal, opened for appends when `mode` writes (else only checked: nothing is
/// created), and why it cannot be, if it cannot.
fn open_journal(config: &Config, mode: Mode) -> (Option<Journal>, Option<String>) {
    let error =
        |e: std::io::Error| format!("cannot open the journal {}: {e}", config.journal.display());
    if mode.writes() {
        // A journal that cannot be written, or is no regular file at all, is refused
        // after the recovery: the faults a crash left behind are undone from what can
        // be read (the checkpoint beside it, at least), whatever the disk allows. A path
        // that is no regular file is never opened (a FIFO would block).
        let waiting = || log::line(waiting_for(&config.journal));
        match journal::check_appendable(&config.journal)
            .and_then(|()| Journal::open_saying(&config.journal, waiting))
        {
            Ok(journal) => (Some(journal), None),
            Err(e) => (None, Some(error(e))),
        }
    } else {
        // A journal path that is no regular file is refused the same way by
        // check-config, which opens nothing.
        // And a full disk: a SIGHUP restart onto it would stop the daemon.
        let checked = journal::check_appendable(&config.journal).and_then(|()| {
            match config
                .journal
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                Some(dir) => state::prepare_dir(dir, false).and_then(|()| journal::check_free(dir)),
                None => Ok(()),
            }
        });
        (None, checked.err().map(error))
    }
}

/// What a start says while another process holds the journal's lock.
fn waiting_for(journal: &std::path::Path) -> String {
    let holders = crate::support::flocks::holders(journal);
    let who = match holders.as_slice() {
        [] => "another process".to_owned(),
        [pid] => format!("PID {pid}"),
        pids => format!(
            "PIDs {}",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "journal: {} is locked by {who} (flock); the start waits until it lets go",
        journal.display()
    )
}

/// The configured faults as added to the engine.
struct Faults {
    /// Which plugin each fault uses.
    plugins: BTreeMap<String, String>,
    /// Each fault's error, in the config's order.
    errors: Vec<Option<String>>,
    /// The faults that wait for a plugin file, by their index in the config.
    deferred: Vec<(usize, Built)>,
}

/// Adds every configured fault to `engine`: a built-in's built now, a file's plugin's
/// standing in as [`Deferred`] until the file has loaded.
fn add_faults(engine: &mut Engine, config: &Config, builtins: &BTreeMap<String, Plugin>) -> Faults {
    let mut faults = Faults {
        plugins: BTreeMap::new(),
        errors: Vec::with_capacity(config.faults.len()),
        deferred: Vec::new(),
    };
    for (i, fault) in config.faults.iter().enumerate() {
        faults
            .plugins
            .insert(fault.name.clone(), fault.plugin.clone());
        let error = match builtins.get(&fault.plugin) {
            // A file's plugin: built once the file has loaded (a file that takes a
            // built-in's name is refused or ignored, so this one is the built-in).
            None => {
                let slot = Built::default();
                let waiting = Deferred {
                    plugin: fault.plugin.clone(),
                    fault: slot.clone(),
                };
                faults.deferred.push((i, slot));
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
        faults.errors.push(error);
    }
    faults
}

/// Each poller's saved state, in the config's order, and the errors of those whose
/// state cannot be kept.
fn poller_states(config: &Config, mode: Mode) -> (Vec<Option<Saved>>, Vec<String>) {
    let mut states = Vec::new();
    let mut errors = Vec::new();
    for poller in &config.pollers {
        if let Some(dir) = poller
            .state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            if let Err(e) = state::prepare_dir(dir, mode.writes()) {
                errors.push(format!(
                    "poller {}: cannot create state directory {}: {e}",
                    poller.name,
                    dir.display()
                ));
                continue;
            }
        }
        match poller::load_state(poller) {
            Ok(saved) => states.push(saved),
            Err(e) => errors.push(e),
        }
    }
    (states, errors)
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
        self.later.loads.any()
    }

    /// Whether something is wrong already, whatever the plugin files say.
    pub fn has_errors(&self) -> bool {
        let later = &self.later;
        later.fault_errors.iter().any(Option::is_some)
            || !later.poller_errors.is_empty()
            || (later.journal_error.is_some() && !later.mode.writes())
            || later.loads.named_failed()
    }

    /// Waits for the plugin files until `wait` has passed; whether every one answered.
    pub fn wait(&mut self, wait: Duration) -> bool {
        self.later.loads.take_answers(Some(Instant::now() + wait))
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
