//! `nightmare-monkey kill`: one injection, through the same door as the daemon's
//! triggers (`dispatch::Injector`: the steady state, the deadline, the revert when due),
//! its answer printed here.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{anyhow, Context as _};
use chrono::Local;
use nightmare_monkey_plugin_api::sdk::ErrorKind;

use crate::{
    cli::KillArgs,
    config,
    dispatch::{FaultProbes, Injector},
    domain::injection::{Ask, InjectError, Pause},
    engine::{Engine, Guards, PLUGIN_TIMEOUT},
    output::{answer::Answer, logline, notifier::Notifiers},
    plugin::{self, Plugin, Trust},
    runtime::setup,
    storage::{journal::Journal, owner},
    support::{orphans, UsageError},
};

/// Runs `kill`. What a plugin file's worker or a probe's command leaves behind never
/// outlives the command ([`orphans::ending_what_escapes`]).
pub fn run(args: KillArgs) -> anyhow::Result<()> {
    orphans::ending_what_escapes(|| run_adopting(args))
}

fn run_adopting(args: KillArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.config {
        return run_configured(&args, path);
    }
    let plugin = match &args.plugin {
        Some(path) => {
            let plugin = Plugin::load(
                path,
                Trust::allowing_untrusted(args.allow_untrusted_plugins),
                setup::supervision(args.plugin_timeout.unwrap_or(PLUGIN_TIMEOUT)),
            )
            .map_err(UsageError)?;
            if let Some(warning) = &plugin.untrusted {
                eprintln!("warning: {warning}");
            }
            plugin
        }
        None => builtin(args.fault.as_deref().unwrap_or("process-kill"))?,
    };
    let name = plugin.manifest.name.clone();
    let fault = plugin
        .new_fault(args.fault_config.as_deref().unwrap_or_default())
        .map_err(|e| {
            let said = config::position_in_words(&e.to_string());
            UsageError(anyhow!("invalid --fault-config for {name}: {said}"))
        })?;

    let seed = match args.seed {
        Some(seed) => seed,
        None => {
            let seed = getrandom::u64().context("cannot draw a random seed")?;
            eprintln!(
                "{} Seed: {seed} (replay this pick with --seed {seed})",
                logline::timestamp(&Local::now())
            );
            seed
        }
    };
    let state_dir = crate::support::state::default_dir();
    let journal_path = match &args.journal {
        Some(path) => path.clone(),
        None => state_dir.join("journal.jsonl"),
    };
    let journal = Journal::open(&journal_path).map_err(|e| {
        anyhow!(
            "cannot open the journal {}: {e} (give --journal FILE to use another)",
            journal_path.display()
        )
    })?;
    // The kill switch holds here too: the daemon's default pause file stops a one-shot
    // fault as it stops the daemon's.
    let guards = Guards {
        pause_file: Some(state_dir.join("paused")),
        ..Guards::default()
    };
    let mut engine = Engine::new(seed, args.execute, guards, Some(journal))
        .with_plugin_timeout(args.plugin_timeout.unwrap_or(PLUGIN_TIMEOUT))
        .protecting(crate::plugin::live_workers);
    engine.add_fault(&name, &name, fault)?;
    setup::honour_halt(&engine);

    once(engine, BTreeMap::new(), &name, &args)
}

/// The built-in plugin `name` (`kill --fault NAME` without `--config`).
fn builtin(name: &str) -> anyhow::Result<Plugin> {
    let builtins = plugin::builtins();
    let names: Vec<String> = builtins.iter().map(|p| p.manifest.name.clone()).collect();
    builtins
        .into_iter()
        .find(|p| p.manifest.name == name)
        .ok_or_else(|| {
            UsageError(anyhow!(
                "--fault: no built-in fault is named `{name}` (built-in: {}; a configured fault needs --config)",
                names.join(", ")
            ))
            .into()
        })
}

/// `kill --config FILE [--fault NAME]`: a fault as the daemon configured it.
fn run_configured(args: &KillArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let (mut config, errors) = config::check_file(path).map_err(|e| UsageError(e.into()))?;
    if !errors.is_empty() {
        return Err(UsageError(setup::all_errors(&config, errors).into()).into());
    }
    config.seed = args.seed.or(config.seed);
    config.execute |= args.execute;
    // The fleet admits a node's faults through the daemon, which holds its lease: a
    // fault this command made would pass the fleet's max_concurrent, budget, min_gap and
    // switch unseen.
    if config.execute && config.fleet.is_some() {
        return Err(UsageError(anyhow!(
            "--config {}: its fleet: section admits real faults only through the daemon (max_concurrent, budget, min_gap and the fleet's switch hold there): ask the running daemon (POST /api/kill), or leave out --execute for a dry run",
            path.display()
        ))
        .into());
    }
    if args.allow_untrusted_plugins {
        config.plugin_trust = Trust::Anyone;
    }
    if let Some(journal) = &args.journal {
        config.journal = journal.clone();
    }
    let Some(fault) = args.fault.clone().or(config.kill_fault.clone()) else {
        let names: Vec<&str> = config.faults.iter().map(|f| f.name.as_str()).collect();
        return Err(UsageError(anyhow!(
            "--fault: {} configures several faults and none for the timer: name the one to inject (configured: {})",
            path.display(),
            names.join(", ")
        ))
        .into());
    };
    let setup = setup::build(&config, setup::Mode::Once).map_err(|e| UsageError(e.into()))?;
    if let Some(error) = setup.journal_error {
        return Err(UsageError(anyhow!(error)).into());
    }
    for warning in setup.warnings.iter().chain(&setup.untrusted) {
        eprintln!("warning: {warning}");
    }
    let mut engine = setup.engine.without_window();
    if let Some(timeout) = args.plugin_timeout {
        engine = engine.with_plugin_timeout(timeout);
    }
    setup::restore_budget(&engine);
    setup::honour_halt(&engine);
    if setup.seed_drawn {
        let seed = engine.master_seed();
        eprintln!(
            "{} Seed: {seed} (replay this pick with --seed {seed})",
            logline::timestamp(&Local::now())
        );
    }
    if !engine.fault_names().contains(&fault) {
        return Err(UsageError(anyhow!(
            "--fault: no fault named `{fault}` is configured in {} (configured: {})",
            path.display(),
            engine.fault_names().join(", ")
        ))
        .into());
    }
    // Its steady state is checked before, as the daemon checks it; its recovery is the
    // daemon's to watch: this command ends with the fault.
    let probes = config
        .faults
        .iter()
        .filter(|f| f.name == fault && !f.steady_state.is_empty())
        .map(|f| {
            let probes = FaultProbes {
                steady_state: f.steady_state.clone(),
                ..FaultProbes::default()
            };
            (f.name.clone(), probes)
        })
        .collect();
    once(engine, probes, &fault, args)
}

/// Injects `name` once through the door every trigger of the daemon goes through (a
/// steady state that fails refuses it, journaled `refused`; the plugin has the plugin
/// timeout), prints it, and stays until a reversible fault is reverted.
fn once(
    engine: Engine,
    probes: BTreeMap<String, FaultProbes>,
    name: &str,
    args: &KillArgs,
) -> anyhow::Result<()> {
    // Held while the fault is: a daemon started on the journal meanwhile leaves it in
    // effect to this command, which reverts it when due.
    let _owner = own_journal(&engine, args.execute)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let injector = Injector::new(Arc::new(engine), Notifiers::default())
        .with_probes(probes)
        .answering_itself();
    let done = runtime.block_on(inject(&injector, name, args));
    // A plugin call given up on is abandoned, not waited for.
    runtime.shutdown_background();
    done
}

/// The lock beside `engine`'s journal (see [`owner`]), taken as a daemon takes it when
/// the fault is real. A real fault on the journal of a daemon that runs is refused: the
/// daemon would take it for one a crash left, and revert it at its next start. A dry
/// run holds nothing in effect: it shares the journal and takes no lock.
fn own_journal(engine: &Engine, execute: bool) -> anyhow::Result<Option<owner::Owner>> {
    let Some(journal) = engine.journal().map(|j| j.path().to_owned()) else {
        return Ok(None);
    };
    if !execute {
        return Ok(None);
    }
    match owner::take(&journal) {
        owner::Owner::Other { lock, pid } => Err(UsageError(anyhow!(
            "a nightmare-monkey daemon{} runs on {} (it holds {}): a real fault of this command would be the daemon's to revert at its next start; ask the daemon (POST /api/faults/NAME), or give this command a journal of its own (--journal FILE, or state_dir in its config)",
            pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
            journal.display(),
            lock.display()
        ))
        .into()),
        taken => Ok(Some(taken)),
    }
}

/// Injects `name`, prints it, and waits for its revert if it is reversible.
async fn inject(injector: &Injector, name: &str, args: &KillArgs) -> anyhow::Result<()> {
    let ask = Ask {
        fault: name.to_owned(),
        desc: args.desc.clone(),
        trigger: "cli",
        requested_by: None,
    };
    let injection = match injector.inject(ask).await {
        Ok(injection) => injection,
        Err(InjectError::Plugin { fault, error }) if error.kind == ErrorKind::Config => {
            return Err(UsageError(anyhow!("{fault}: {error}")).into())
        }
        // A halt the daemon left in the journal (see `setup::honour_halt`): only the
        // daemon resumes it.
        Err(InjectError::Paused(Pause::Halt(why))) => {
            let journal = injector.journal_path().unwrap_or_default();
            return Err(anyhow!(
                "Nightmare Monkey is halted ({why}, as the journal {} holds): start the daemon on this journal and POST /api/resume to resume",
                journal.display()
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&Answer::of(&injection))?);
    } else {
        let ts = logline::timestamp(&injection.intent.at.with_timezone(&Local));
        println!("{ts} {}", logline::fault_line(&injection));
        println!("{ts} {}", logline::result_line(&injection));
    }
    match injection.revert_due {
        // Not active any more: the pause file appeared while the plugin worked, and the
        // fault was reverted the moment it answered.
        Some(due) if injector.is_active(&injection.intent.id) => {
            until_reverted(injector, &injection.intent.id, due).await?
        }
        _ => {}
    }
    Ok(())
}

/// A reversible fault injected by the one-shot command is reverted before it ends: when
/// due, or at once on Ctrl-C or SIGTERM. (Killed outright, it is reverted by the daemon's
/// next start, from the journal.)
async fn until_reverted(
    injector: &Injector,
    id: &str,
    due: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    eprintln!(
        "{} Reverting at {} (Ctrl-C reverts now)",
        logline::timestamp(&Local::now()),
        logline::timestamp(&due.with_timezone(&Local))
    );
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let interrupted = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    injector
        .until_reverted(id, due, interrupted)
        .await
        .map_err(|timeout| {
            anyhow!(
                "the revert of {id}: no answer from the plugin within {}; given up: the fault may still be in effect (the daemon's next start reverts it from the journal)",
                humantime::format_duration(timeout)
            )
        })
}
