//! `nightmare-monkey plan`: the timer's next fire times, exactly as the daemon started
//! at `--from` with the same seed and config would fire them.

use anyhow::anyhow;
use chrono::{DateTime, SubsecRound, Utc};
use nightmare_monkey_plugin_api::sdk::Rng;

use crate::{cli::PlanArgs, config, domain::schedule::Timer, support::UsageError};

/// Gives up on a schedule that does not meet the window within this many draws.
const DRAW_LIMIT: usize = 1_000_000;

/// Runs `plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let config = config::load(&args.daemon).map_err(|e| UsageError(e.into()))?;
    let Some(fault) = config.timer_fault.clone() else {
        return Err(UsageError(anyhow!(
            "the timer is disabled in the config (timer.enabled: false): there is nothing to plan"
        ))
        .into());
    };
    let from = match &args.from {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .map_err(|e| UsageError(anyhow!("--from: invalid instant `{text}` ({e}): expected RFC 3339, e.g. 2026-12-01T09:00:00+09:00")))?,
        None => Utc::now().trunc_subsecs(0),
    };
    let seed = match config.seed {
        Some(seed) => seed,
        None => {
            let seed = getrandom::u64().map_err(|e| anyhow!("cannot draw a random seed: {e}"))?;
            eprintln!("Seed: {seed} (drawn; give --seed {seed} to the daemon to run this plan)");
            seed
        }
    };
    let mut timer = Timer::new(
        config.schedule.clone(),
        config.window.clone(),
        Rng::stream(
            seed,
            &crate::engine::stream_name("trigger/timer", config.node.as_deref()),
        ),
    );
    let times = timer.plan(from, args.count, DRAW_LIMIT);
    for at in &times {
        println!("{} {fault}", config.window.zone.rfc3339(*at));
    }
    if times.len() < args.count {
        anyhow::bail!(
            "only {} fire times fall inside the window within {DRAW_LIMIT} draws: check that the schedule and the window can meet",
            times.len()
        );
    }
    Ok(())
}
