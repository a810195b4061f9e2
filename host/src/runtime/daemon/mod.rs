//! The daemon: start the triggers, inject what they ask for through the engine, stop
//! cleanly on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

mod announce;
mod ending;
mod events;
mod process;
mod restart;

use ending::{abandoned, last_checkpoint, Ending, RUNTIME_WAIT, SHUTDOWN_WAIT, TRIGGERS_WAIT};
use process::{adopt_orphans, few_malloc_arenas, keep_name, raise_open_files};
use restart::{restart, RESTART_PAUSED};

use crate::{
    cli::DaemonArgs,
    config::{self, Config},
    dispatch::{FaultProbes, Injector, MAX_INJECTIONS_AT_ONCE},
    domain::schedule::Timer,
    output::{log, notifier::Notifiers},
    runtime::{
        halt, pause_file,
        setup::{self, Setup},
        stop, systemd,
    },
    support::{orphans, UsageError},
    triggers::{http, poller, timer},
};

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    few_malloc_arenas();
    // Before any thread: each inherits the stop signals blocked (`stop`).
    stop::install()?;
    log::start_writer();
    log::init(args.log_format.unwrap_or_default());
    adopt_orphans();
    let (config, errors) = config::load_all(&args).map_err(|e| UsageError(e.into()))?;
    if !errors.is_empty() {
        return Err(UsageError(setup::all_errors(&config, errors).into()).into());
    }
    run_with(config, None, Some(args))
}

/// Runs the daemon with a validated configuration until SIGTERM or SIGINT, or until
/// `ended` says the sandbox's command exited.
pub fn run_config(
    config: Config,
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<()> {
    few_malloc_arenas();
    // The sandbox's init has done it before its first thread; this start from the
    // caller's first thread otherwise.
    stop::install()?;
    log::start_writer();
    run_with(config, ended, None)
}

/// `args`, when given, are what SIGHUP checks the configuration again with.
fn run_with(
    config: Config,
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
    args: Option<DaemonArgs>,
) -> anyhow::Result<()> {
    raise_open_files();
    keep_name();
    // The same checks as check-config, the directories created for real. Plugin files
    // load meanwhile, each in a worker of its own. A problem found without them is said
    // with every other, the loads waited for, as check-config says it.
    let mut begun = setup::begin(&config, setup::Mode::Run).map_err(|e| UsageError(e.into()))?;
    if begun.has_errors() {
        // Every error, those the files bring included.
        let errors = match begun.finish() {
            Err(errors) => errors,
            Ok(_) => crate::config::ConfigErrors(vec!["the configuration has errors".into()]),
        };
        return Err(UsageError(errors.into()).into());
    }
    if let Some(dir) = config
        .pause_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        // Best effort: without it the watcher says why it cannot watch.
        let _ = crate::support::state::create_private_dir(dir);
    }
    // Held until the daemon ends: what the journal holds in effect is this daemon's to
    // revert, not that of another started on the same journal meanwhile.
    // Two that execute on one journal would each revert the other's faults at a start
    // (a restart of either included): the second is refused. A dry one shares it.
    let owner = crate::storage::owner::take(&config.journal);
    let owned_by = match &owner {
        crate::storage::owner::Owner::Other { lock, pid } => Some(format!(
            "another nightmare-monkey{} runs on {} (it holds {})",
            pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
            config.journal.display(),
            lock.display()
        )),
        _ => None,
    };
    if let Some(other) = owned_by.as_deref().filter(|_| config.execute) {
        return Err(UsageError(anyhow::anyhow!(
            "{other}: two executing daemons on one journal would revert each other's faults; stop it first, or give this one a state_dir (or journal) of its own"
        ))
        .into());
    }
    // Before anything else: undo what a crashed run left active, with the built-ins at
    // once (a plugin file's faults once it has loaded). Reading is all it needs; a
    // journal that cannot be written stops the start only after it.
    let (checkpoint, mut waiting) = setup::recover(
        begun.engine(),
        begun.builtins(),
        &config.journal,
        begun.has_files(),
        owned_by.as_deref(),
    );
    // A halt the journal holds with no resume after it: the last run crashed (or
    // stopped) halted, and a halt's resume is manual.
    let journaled_halt = checkpoint.halted();
    // A file still loading after a second does not hold up the start (the API, the
    // pause file): its faults are refused until it has loaded.
    let all_loaded = begun.wait(setup::SLOW_LOAD);
    let (setup, later) = if all_loaded || begun.has_errors() {
        let setup = begun.finish().map_err(|e| UsageError(e.into()))?;
        setup::recover_rest(&setup.engine, &setup.loaded, std::mem::take(&mut waiting));
        (setup, None)
    } else {
        let (setup, mut later) = begun.split();
        for path in later.going_on_without() {
            log::line(format!(
                "Loading plugin {}: no answer yet after {}; starting without it (its faults are refused until it has loaded, at most {} from now)",
                path.display(),
                humantime::format_duration(setup::SLOW_LOAD),
                humantime::format_duration(config.plugin_timeout)
            ));
        }
        for entry in &waiting {
            log::line(format!(
                "Recovering {}: plugin {} is not loaded yet; reverted once the plugin files have loaded",
                entry.intent.id, entry.intent.plugin
            ));
        }
        (setup, Some(later))
    };
    if let Some(error) = &setup.journal_error {
        return Err(UsageError(anyhow::anyhow!("{error}")).into());
    }
    // Stopped while it started: what a crash left is reverted (or named), and nothing
    // else starts.
    if let Some(signal) = stop::requested() {
        log::line(format!(
            "Nightmare Monkey goes to bed ({signal}, before it started)."
        ));
        let unfinished = setup.engine.reverting();
        return abandoned(&[], &unfinished);
    }
    let retention = config.journal_retention;
    let checkpoint = setup::keep_checkpoints(&setup.engine, checkpoint, retention);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Injections run on blocking threads; a handful at once is plenty, and every
        // extra thread costs its stack and a malloc arena that outlive a burst.
        .max_blocking_threads(MAX_INJECTIONS_AT_ONCE)
        .build()
        .context("cannot start the async runtime")?;
    let journal = setup.engine.shared_journal();
    let later = later.map(|later| Loading { later, waiting });
    let result = runtime.block_on(serve(config, setup, later, ended, args, journaled_halt));
    // The last checkpoint: the next start reads only what comes after it.
    if let Some(journal) = journal {
        last_checkpoint(checkpoint, journal, retention);
    }
    // A plugin call still running on a blocking thread must not hold the exit up.
    runtime.shutdown_timeout(RUNTIME_WAIT);
    let Ending::Restart { paused, halted } = result? else {
        return Ok(());
    };
    // A stop that came while the restart shut down wins: no new start; one that comes
    // later stays pending for the new image (`stop`).
    restart(paused, halted)
}

/// Starts the configuration's proxies (`net_faults::proxy`, on a thread of their own),
/// each said in one line; one that cannot listen stops the start, naming it.
fn start_proxies(config: &Config) -> anyhow::Result<()> {
    if config.proxies.is_empty() {
        return Ok(());
    }
    net_faults::proxy::start_all(Box::new(|line: &str| log::line(line.to_owned())))
        .map_err(|e| anyhow::anyhow!(e))?;
    for proxy in &config.proxies {
        log::line(format!(
            "Proxy {}: listening on {}, forwarding to {}",
            proxy.name, proxy.listen, proxy.upstream
        ));
    }
    Ok(())
}

/// The original's banner: `Nightmare Monkey is playing from 11:00 to 18:00, Mon thru Fri.`
pub fn banner(config: &Config) -> String {
    format!(
        "Nightmare Monkey is playing {}, {}.",
        config.window.time, config.window.days
    )
}

/// The plugin files still loading once the daemon serves, and what the recovery left for
/// them.
struct Loading {
    later: setup::Later,
    waiting: Vec<crate::storage::journal::Entry>,
}

async fn serve(
    config: Config,
    setup: Setup,
    loading: Option<Loading>,
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
    args: Option<DaemonArgs>,
    journaled_halt: Option<String>,
) -> anyhow::Result<Ending> {
    // Watched first: a signal that arrives once we look started is answered.
    let mut signals = stop::Waiter::new()?;
    // Real faults into a system already failing its halt conditions: not started. A
    // SIGHUP restart of a paused (or halted) daemon starts paused: nothing is injected,
    // and the drill must not end because the system is still sick. Any other start
    // whose journal holds a halt checks, and starts halted.
    let restarted_paused = std::env::var(RESTART_PAUSED).ok();
    let journaled_halt = journaled_halt.filter(|_| restarted_paused.is_none());
    // A stop during the check wins at once, as during the start's other waits: the
    // check is dropped (a probe's command ends with it) and nothing starts.
    if let (true, Some(halt), None) = (setup.engine.executes(), &config.halt, &restarted_paused) {
        let failing = tokio::select! {
            biased;
            signal = signals.next_stop() => {
                log::line(format!(
                    "Nightmare Monkey goes to bed ({signal}, before it started)."
                ));
                abandoned(&[], &setup.engine.reverting())?;
                return Ok(Ending::Stop);
            }
            failing = halt::failing_at_start(halt) => failing,
        };
        if let Some(failing) = failing {
            return Err(UsageError(anyhow::anyhow!(
                "halt probe {failing}: not starting --execute while a halt condition fails"
            ))
            .into());
        }
    }
    start_proxies(&config)?;
    let engine = Arc::new(setup.engine);
    announce::announce(
        &config,
        &announce::Loaded {
            seed_drawn: setup.seed_drawn,
            warnings: &setup.warnings,
            untrusted: &setup.untrusted,
        },
        &engine,
    );
    announce::keep_switch(&engine, restarted_paused.as_deref());
    if let Some(why) = journaled_halt {
        announce::keep_halt(&engine, why);
    }

    let (stop, stopped) = watch::channel(false);
    let injector = injector(&config, &engine, &stopped)?;
    let plugins = Arc::new(std::sync::RwLock::new(http::PluginList {
        loaded: setup.plugins.clone(),
        loading: loading
            .as_ref()
            .map(|l| {
                l.later
                    .loading()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default(),
    }));
    let server = start_api(&config, &injector, &plugins, setup.fault_plugins, &stopped)?;
    let triggers = start_triggers(&config, &engine, &injector, setup.poller_states, &stopped);
    if let Some(file) = engine.pause_file().cloned() {
        pause_file::watch(engine.clone(), file);
    }

    // systemd (Type=notify) learns that the API listens and the triggers run.
    let _ = systemd::notify(&format!("READY=1\nSTATUS={}", banner(&config)));
    let housekeeping = housekeeping();
    let loaded = loading.map(|loading| finish_loading(loading, engine.clone()));
    let end = events::wait_for_end(
        &mut signals,
        ended,
        loaded,
        &plugins,
        args.as_ref(),
        &engine,
        &restart::Running {
            listen: config.http.as_ref().map(|h| h.listen),
            journal: config.journal.clone(),
            busy: 0,
        },
    )
    .await;
    for task in housekeeping {
        task.abort();
    }
    let _ = systemd::notify(match end.ending {
        Ending::Stop => "STOPPING=1",
        Ending::Restart { .. } => "RELOADING=1\nSTATUS=restarting with the new configuration",
    });
    log::line(format!("Nightmare Monkey goes to bed ({}).", end.signal));
    // The dashboards' event streams end, or the server would wait for them.
    crate::output::events::close();
    let _ = stop.send(true);
    // Every trigger stops at its next wait; an injection under way finishes (its lines are
    // logged, its revert is known) unless it takes longer than the exit may.
    let deadline = tokio::time::Instant::now() + TRIGGERS_WAIT;
    for task in server.into_iter().chain(triggers) {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
    // No fault outlives the monkey: revert what is still in effect, each on a thread of
    // its own, waiting for hung plugins no longer than the exit may take.
    let (in_flight, unfinished) = injector.close(SHUTDOWN_WAIT).await;
    // A fault a crashed run left through a plugin this run lacks holds no slot: the
    // node leaves all the same (else its lease outlives it, and the next start waits).
    if in_flight.is_empty() && engine.only_stranded(&unfinished) {
        crate::runtime::fleet::leave(&engine).await;
    }
    if let Some(errors) = end.refused {
        abandoned(&in_flight, &unfinished).ok();
        return Err(UsageError(errors.into()).into());
    }
    // A restart goes on (exec ends the hung calls; the new start's recovery retries the
    // reverts the journal still lists as active); a stop says so with its exit status.
    match end.ending {
        Ending::Stop => abandoned(&in_flight, &unfinished)?,
        Ending::Restart { .. } => {
            abandoned(&in_flight, &unfinished).ok();
        }
    }
    Ok(end.ending)
}

/// The tasks that run as long as the daemon does: the sweep for orphans, and systemd's
/// watchdog when it asks for one.
fn housekeeping() -> Vec<tokio::task::JoinHandle<()>> {
    // A grandchild that left its session is adopted when its parent ends, after the
    // sweep at a worker's or a probe's end: that parent was the daemon's child by then
    // (adopted too), so its end is a SIGCHLD, and each one sweeps. Nothing wakes the
    // daemon while no child ends.
    let sweeper = tokio::spawn(async {
        orphans::sweep();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(mut ended) => {
                while ended.recv().await.is_some() {
                    orphans::sweep();
                }
            }
            Err(e) => {
                log::line(format!(
                    "warning: cannot watch for SIGCHLD ({e}): orphans are looked for every {}s",
                    orphans::SWEEP_EVERY.as_secs()
                ));
                let mut tick = tokio::time::interval(orphans::SWEEP_EVERY);
                loop {
                    tick.tick().await;
                    orphans::sweep();
                }
            }
        }
    });
    let watchdog = systemd::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = systemd::notify("WATCHDOG=1");
            }
        })
    });
    std::iter::once(sweeper).chain(watchdog).collect()
}

/// The one door every trigger goes through, with the notifiers and each fault's probes;
/// what the last run was still watching (a SIGHUP restart, a crash) is watched on.
fn injector(
    config: &Config,
    engine: &Arc<crate::engine::Engine>,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Injector> {
    let notifiers = Notifiers::start(
        config.notifiers.clone(),
        |name| engine.stream(&format!("notifier/{name}")),
        stopped.clone(),
    )
    .context("cannot start the notifiers")?;
    let probes = config
        .faults
        .iter()
        .filter(|f| !f.steady_state.is_empty() || f.recovery.is_some())
        .map(|f| {
            let probes = FaultProbes {
                steady_state: f.steady_state.clone(),
                recovery: f.recovery.clone(),
                ..FaultProbes::default()
            };
            (f.name.clone(), probes)
        })
        .collect();
    let injector = Injector::new(engine.clone(), notifiers).with_probes(probes);
    injector.resume_recoveries();
    Ok(injector)
}

/// The HTTP API, listening, if one is configured.
fn start_api(
    config: &Config,
    injector: &Injector,
    plugins: &Arc<std::sync::RwLock<http::PluginList>>,
    fault_plugins: std::collections::BTreeMap<String, String>,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(http_config) = &config.http else {
        return Ok(None);
    };
    let api = http::Api {
        injector: injector.clone(),
        kill_fault: config.kill_fault.clone(),
        tokens: http_config.tokens.clone(),
        plugins: plugins.clone(),
        fault_plugins,
        window: format!(
            "{}, {} ({})",
            config.window.time,
            config.window.days,
            config.zone_name.as_deref().unwrap_or("local time")
        ),
        zone: config.zone_name.clone(),
    };
    let mut rx = stopped.clone();
    let (addr, server) = http::bind(http_config, api, async move {
        let _ = rx.wait_for(|s| *s).await;
    })?;
    if http_config.public_without_token {
        log::line(format!(
            "warning: listening on {addr} without a token (http.allow_public_without_token): anyone who reaches it can inject faults"
        ));
    }
    log::line(format!("Listening on http://{addr}"));
    Ok(Some(tokio::spawn(server)))
}

/// The timer, the pollers and the halt probes, each a task of its own.
fn start_triggers(
    config: &Config,
    engine: &Arc<crate::engine::Engine>,
    injector: &Injector,
    poller_states: Vec<Option<crate::triggers::poller::Saved>>,
    stopped: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let timer = config.timer_fault.clone().map(|fault| {
        let timer = Timer::new(
            config.schedule.clone(),
            config.window.clone(),
            engine.stream("trigger/timer"),
        );
        tokio::spawn(timer::run(injector.clone(), timer, fault, stopped.clone()))
    });
    let pollers = config
        .pollers
        .iter()
        .zip(poller_states)
        .map(|(poller_config, saved)| {
            let rng = engine.stream(&format!("trigger/poller/{}", poller_config.name));
            tokio::spawn(poller::run(
                injector.clone(),
                poller_config.clone(),
                saved,
                rng,
                stopped.clone(),
            ))
        });
    let halt = config
        .halt
        .clone()
        .map(|h| tokio::spawn(halt::watch(injector.clone(), h, stopped.clone())));
    let fleet = engine.fleet().map(|coordinator| {
        tokio::spawn(crate::runtime::fleet::follow(
            injector.clone(),
            engine.clone(),
            coordinator.clone(),
            stopped.clone(),
        ))
    });
    timer
        .into_iter()
        .chain(pollers)
        .chain(halt)
        .chain(fleet)
        .collect()
}

/// The plugin files still loading: once every one has answered, their faults are built
/// (and ready) and what the recovery left for them is reverted, on a thread of their
/// own; told on the receiver (an error stops the daemon, as it would have stopped the
/// start).
fn finish_loading(loading: Loading, engine: Arc<crate::engine::Engine>) -> events::Told {
    let (tell, told) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("plugin-load".to_owned())
        .spawn(move || {
            let Loading {
                mut later,
                mut waiting,
            } = loading;
            // Each file as it answers: its faults ready, what a crash left of it reverted
            // (on a thread of its own: a revert that hangs holds up no other file).
            while let Some(answered) = later.next() {
                let Some(plugin) = answered else { continue };
                let name = plugin.manifest.name.clone();
                log::line(format!(
                    "Loaded plugin {name} from {}: its faults are ready",
                    plugin.source
                ));
                let (mine, rest): (Vec<_>, Vec<_>) =
                    waiting.into_iter().partition(|e| e.intent.plugin == name);
                waiting = rest;
                if mine.is_empty() {
                    continue;
                }
                let engine = engine.clone();
                let plugins = std::collections::BTreeMap::from([(name, plugin)]);
                let _ = std::thread::Builder::new()
                    .name("recover".to_owned())
                    .spawn(move || setup::recover_rest(&engine, &plugins, mine));
            }
            match later.complete() {
                // Said first (the plugins listed), then reverted: what is left waits
                // for a plugin no file brought, and is named for it.
                Ok(loaded) => {
                    let plugins = loaded.plugins.clone();
                    let _ = tell.send(Ok(loaded));
                    setup::recover_rest(&engine, &plugins, waiting);
                }
                Err(errors) => {
                    let _ = tell.send(Err(errors));
                }
            }
        });
    if let Err(e) = spawned {
        log::line(format!(
            "warning: no thread to finish loading the plugin files: {e}"
        ));
    }
    told
}
