//! `nightmare-monkey pause --fleet` and `resume --fleet`: the fleet's switch, written in
//! the coordinator named by the config's `fleet:` section. Every daemon of the fleet
//! watches it; no daemon is needed here.

use anyhow::anyhow;

use crate::{
    cli::{PauseArgs, StatusArgs},
    config,
    fleet::{admin, config::FleetConfig, Switch},
    support::UsageError,
};

/// Turns the fleet's switch on (`on`) or off.
pub fn switch(args: &PauseArgs, on: bool) -> anyhow::Result<()> {
    let fleet = fleet_of(args.daemon.config.as_deref())?;
    let switch = on.then(|| Switch {
        by: who(),
        reason: args.reason.clone().unwrap_or_default(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    admin::set_switch(&fleet, switch.clone()).map_err(|e| {
        anyhow!(
            "cannot reach the fleet's etcd at {} ({e}); nothing was changed",
            fleet.endpoints.join(", ")
        )
    })?;
    match switch {
        Some(switch) => println!(
            "{switch}: every daemon of the fleet pauses and reverts its faults within a second"
        ),
        None => println!("the fleet's switch is off: every daemon of the fleet plays again"),
    }
    Ok(())
}

/// Runs `status --fleet`: what the fleet's coordinator holds.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let fleet = fleet_of(args.daemon.config.as_deref())?;
    let lines = admin::describe(&fleet).map_err(|e| {
        anyhow!(
            "cannot reach the fleet's etcd at {} ({e})",
            fleet.endpoints.join(", ")
        )
    })?;
    println!(
        "fleet {}: {} fault(s) at once",
        fleet.prefix, fleet.max_concurrent
    );
    for line in lines {
        println!("  {line}");
    }
    Ok(())
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
