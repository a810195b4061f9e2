//! `nightmare-monkey plan`: the timer's next fire times, exactly as the daemon started
//! at `--from` with the same seed and config would fire them; for one node or several
//! (each draws its own stream), as lines or as a week grid (`output::picture::week`).

use std::fmt::Write as _;

use anyhow::anyhow;
use chrono::{DateTime, SubsecRound, Utc};
use nightmare_monkey_plugin_api::sdk::Rng;

use crate::{
    cli::{PlanArgs, PlanFormat},
    config::{self, Config},
    domain::schedule::Timer,
    output::picture::week::{self, NodePlan, PlanPicture},
    support::UsageError,
};

/// Gives up on a schedule that does not meet the window within this many draws.
const DRAW_LIMIT: usize = 1_000_000;

/// Runs `plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    // One config per node: each `--node` is checked as the daemon checks its own.
    let mut configs: Vec<Config> = Vec::new();
    if args.nodes.is_empty() {
        configs.push(config::load(&args.daemon).map_err(|e| UsageError(e.into()))?);
    }
    for (i, node) in args.nodes.iter().enumerate() {
        if args.nodes[..i].contains(node) {
            return Err(UsageError(anyhow!("--node {node} is given twice")).into());
        }
        let mut daemon = args.daemon.clone();
        daemon.node = Some(node.clone());
        configs.push(config::load(&daemon).map_err(|e| UsageError(e.into()))?);
    }
    let Some(config) = configs.first() else {
        unreachable!("one config without --node, one a node with")
    };
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
    // One seed for the whole fleet, as the daemons would share it.
    let seed = match config.seed {
        Some(seed) => seed,
        None => {
            let seed = getrandom::u64().map_err(|e| anyhow!("cannot draw a random seed: {e}"))?;
            eprintln!("Seed: {seed} (drawn; give --seed {seed} to the daemon to run this plan)");
            seed
        }
    };
    let plans: Vec<NodePlan> = configs
        .iter()
        .map(|c| {
            let mut timer = Timer::new(
                c.schedule.clone(),
                c.window.clone(),
                Rng::stream(
                    seed,
                    &crate::engine::stream_name("trigger/timer", c.node.as_deref()),
                ),
            );
            NodePlan {
                node: c.node.clone(),
                times: timer.plan(from, args.count, DRAW_LIMIT),
            }
        })
        .collect();
    let picture = PlanPicture {
        fault: &fault,
        seed,
        window: &config.window,
        from,
        nodes: &plans,
    };
    let out = match args.format {
        PlanFormat::Text => {
            let mut out = String::new();
            for plan in &plans {
                for at in &plan.times {
                    // Several nodes: each line says whose it is.
                    if let (true, Some(node)) = (args.nodes.len() > 1, &plan.node) {
                        let _ = write!(out, "{node} ");
                    }
                    let _ = writeln!(out, "{} {fault}", config.window.zone.rfc3339(*at));
                }
            }
            out
        }
        PlanFormat::Svg => week::week_svg(&picture) + "\n",
        PlanFormat::Html => week::plan_html(&picture),
    };
    super::emit(args.output.as_deref(), &out)?;
    if let Some(short) = plans.iter().find(|p| p.times.len() < args.count) {
        anyhow::bail!(
            "only {} fire times {}fall inside the window within {DRAW_LIMIT} draws: check that the schedule and the window can meet",
            short.times.len(),
            match (&short.node, args.nodes.len() > 1) {
                (Some(node), true) => format!("of node {node} "),
                _ => String::new(),
            }
        );
    }
    Ok(())
}
