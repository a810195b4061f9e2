//! `nightmare-monkey pause --fleet` and `resume --fleet`: the fleet's switch, written in
//! the coordinator named by the config's `fleet:` section. Every daemon of the fleet
//! watches it; no daemon is needed here. And `status --fleet`, `history --fleet`: what
//! the coordinator holds. All through [`fleet::FleetAdmin`], whatever the coordinator.

use anyhow::anyhow;
use chrono::{DateTime, Utc};

use crate::{
    cli::{HistoryArgs, StatusArgs},
    config,
    fleet::{self, config::FleetConfig, Switch},
    storage::journal::parse_since,
    support::{text::escape_controls, UsageError},
};

/// Turns the switch of the fleet that the config `file` names on (`on`, saying
/// `reason`) or off.
pub fn switch(
    file: Option<&std::path::Path>,
    on: bool,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let fleet = fleet_of(file)?;
    let switch = on.then(|| Switch {
        by: who(),
        reason: reason.unwrap_or_default().to_owned(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let admin = fleet::admin(&fleet);
    admin.set_switch(switch.clone()).map_err(|e| {
        anyhow!(
            "cannot write the switch of the fleet's {}: {e}",
            admin.place()
        )
    })?;
    let said = match switch {
        Some(switch) => format!(
            "{switch}: every daemon of the fleet pauses and reverts its faults within a second\n"
        ),
        None => "the fleet's switch is off: every daemon of the fleet plays again\n".to_owned(),
    };
    super::print(said.as_bytes())
}

/// Runs `status --fleet`: what the fleet's coordinator holds.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let fleet = fleet_of(args.daemon.config.as_deref())?;
    let admin = fleet::admin(&fleet);
    let view = admin
        .view()
        .map_err(|e| anyhow!("cannot reach the fleet's {} ({e})", admin.place()))?;
    // The fleet's limit is its most careful node's, which may be fewer than this config's.
    let mut text = format!(
        "fleet {}: {} fault(s) at once",
        fleet.prefix, view.max_concurrent
    );
    if view.max_concurrent != fleet.max_concurrent {
        text.push_str(&format!(
            " (a node says so; this config says {})",
            fleet.max_concurrent
        ));
    }
    text.push('\n');
    for line in view.lines() {
        text.push_str(&format!("  {line}\n"));
    }
    super::print(text.as_bytes())
}

/// Runs `history --fleet`: which node got which fault when, as the fleet's coordinator
/// keeps it (oldest first), within `--since` and `--until`.
pub fn history(args: &HistoryArgs) -> anyhow::Result<()> {
    let fleet = fleet_of(args.config.as_deref())?;
    let bound = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<DateTime<Utc>>> {
        text.as_deref()
            .map(|t| parse_since(t).map_err(|e| UsageError(anyhow!("--{flag}: {e}")).into()))
            .transpose()
    };
    let (since, until) = (bound("since", &args.since)?, bound("until", &args.until)?);
    let admin = fleet::admin(&fleet);
    let all = admin
        .admissions()
        .map_err(|e| anyhow!("cannot reach the fleet's {} ({e})", admin.place()))?;
    let shown: Vec<_> = all
        .into_iter()
        .filter(|a| {
            let at = DateTime::parse_from_rfc3339(&a.at).map(|t| t.with_timezone(&Utc));
            at.is_ok_and(|at| since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u))
        })
        .collect();
    if args.json {
        let text = serde_json::to_string_pretty(&shown)? + "\n";
        return super::print(text.as_bytes());
    }
    let mut text = format!(
        "fleet {}: {} admission(s) (kept {})\n",
        fleet.prefix,
        shown.len(),
        humantime::format_duration(crate::fleet::history::keep(&fleet))
    );
    for a in shown {
        // As the admitting node (or whoever can write the coordinator) wrote it.
        let line = format!(
            "{} {} {} (slot {}, revision {})",
            a.at, a.node, a.fault, a.slot, a.revision
        );
        text.push_str(&escape_controls(&line));
        text.push('\n');
    }
    super::print(text.as_bytes())
}

/// The `fleet:` section of the config at `file`, or why there is none.
fn fleet_of(file: Option<&std::path::Path>) -> anyhow::Result<FleetConfig> {
    let args = crate::cli::DaemonArgs {
        config: file.map(ToOwned::to_owned),
        ..Default::default()
    };
    let config = config::load(&args).map_err(|e| UsageError(e.into()))?;
    config.fleet.ok_or_else(|| {
        UsageError(anyhow!(
            "--fleet needs a config with a fleet: section (--config FILE): it names the fleet's coordinator"
        ))
        .into()
    })
}

/// Who turns the switch: `$USER@<host>`.
fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}
