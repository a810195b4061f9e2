//! `nightmare-monkey check-config FILE`: everything the daemon checks at startup
//! (syntax, values, plugins, every fault's own config), without running anything.

use std::path::Path;

use crate::{
    config,
    runtime::daemon,
    runtime::setup,
    support::{orphans, UsageError},
};

/// `println!`, but a reader that went away (`| head`) ends nothing: the check's exit
/// status is still its own. Any other failure to write is an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        match writeln!(std::io::stdout(), $($arg)*) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(anyhow::anyhow!("cannot write to stdout: {e}"));
            }
            _ => {}
        }
    }};
}

/// Runs `check-config`. What a plugin file's worker leaves behind while loading or
/// building a fault never outlives the command ([`orphans::ending_what_escapes`]).
pub fn run(file: &Path, connect: bool) -> anyhow::Result<()> {
    orphans::ending_what_escapes(|| check(file, connect))
}

fn check(file: &Path, connect: bool) -> anyhow::Result<()> {
    let (config, errors) = config::check_file(file).map_err(|e| UsageError(e.into()))?;
    if !errors.is_empty() {
        return Err(UsageError(setup::all_errors(&config, errors).into()).into());
    }
    let setup = setup::build(&config, setup::Mode::Check).map_err(|e| UsageError(e.into()))?;
    say!("{}: ok", file.display());
    for warning in setup.warnings.iter().chain(&setup.untrusted) {
        say!("  warning: {warning}");
    }
    say!("  {}", daemon::banner(&config));
    say!("  faults: {}", setup.engine.fault_names().join(", "));
    match &config.timer_fault {
        Some(fault) => say!("  timer: fires {fault}"),
        None => say!("  timer: off"),
    }
    for p in &config.pollers {
        say!(
            "  poller {}: GET {} every {}, fires {} every {} at {}",
            p.name,
            p.shown_url(),
            humantime::format_duration(p.period),
            p.fault,
            p.step,
            p.pointer
        );
    }
    for n in &config.notifiers {
        say!(
            "  notifier {}: {} to {} {} after each fault",
            n.name,
            match n.kind {
                crate::output::notifier::HookKind::Slack => "a Slack message",
                crate::output::notifier::HookKind::Json => "the outcome as JSON",
            },
            // The URL may be a secret (Slack's is): only where it goes.
            crate::support::shown_url::origin(&n.url),
            if n.delay.is_zero() {
                "right".to_owned()
            } else {
                humantime::format_duration(n.delay).to_string()
            }
        );
    }
    for f in &config.faults {
        let labels = |probes: &[crate::probe::Probe]| {
            probes
                .iter()
                .map(|p| p.label())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !f.steady_state.is_empty() {
            say!(
                "  fault {}: steady state {}",
                f.name,
                labels(&f.steady_state)
            );
        }
        if let Some(r) = &f.recovery {
            say!(
                "  fault {}: recovery {} every {} (deadline {})",
                f.name,
                labels(&r.probes),
                humantime::format_duration(r.every),
                humantime::format_duration(r.deadline)
            );
        }
    }
    if let Some(halt) = &config.halt {
        let labels: Vec<String> = halt.probes.iter().map(|p| p.label()).collect();
        say!(
            "  halt: {} every {}, after failing {}",
            labels.join(", "),
            humantime::format_duration(halt.every),
            humantime::format_duration(halt.after)
        );
    }
    if let Some(node) = &config.node {
        say!("  node: {node} (every random stream labelled with it)");
    }
    if let Some(fleet) = &config.fleet {
        fleet_lines(fleet, connect)?;
    }
    match &config.http {
        Some(http) => say!(
            "  http: {}{}",
            http.listen,
            if !http.tokens.is_empty() {
                " (token required)"
            } else {
                ""
            }
        ),
        None => say!("  http: off"),
    }
    say!(
        "  {}",
        if config.execute {
            "executes faults (execute: true)"
        } else {
            "dry run"
        }
    );
    Ok(())
}

/// The fleet's lines; with `connect`, what its coordinator holds (an error if it cannot
/// be reached).
fn fleet_lines(fleet: &crate::fleet::config::FleetConfig, connect: bool) -> anyhow::Result<()> {
    let limits = [
        fleet
            .budget
            .map(|(max, per)| format!(", at most {max} per {}", humantime::format_duration(per))),
        fleet
            .min_gap
            .map(|gap| format!(", {} between faults", humantime::format_duration(gap))),
    ]
    .into_iter()
    .flatten()
    .collect::<String>();
    say!(
        "  fleet: etcd {} under {}: {} fault(s) at once{limits}, lease {}",
        fleet.endpoints.join(" "),
        fleet.prefix,
        fleet.max_concurrent,
        humantime::format_duration(fleet.lease_ttl)
    );
    // Kept on etcd's clock, by leases of whole seconds: said where it shows.
    let spans = [
        ("min_gap", fleet.min_gap),
        ("the budget's per", fleet.budget.map(|(_, per)| per)),
    ];
    for (name, span) in spans {
        let Some(span) = span.filter(|s| *s < std::time::Duration::from_secs(60)) else {
            continue;
        };
        say!(
            "    note: {name} {} is kept by etcd's leases, in whole seconds: held {} to {} after an admission",
            humantime::format_duration(span),
            humantime::format_duration(span),
            humantime::format_duration(crate::fleet::rule::longest(span))
        );
    }
    if let Some(tls) = &fleet.tls {
        say!("    etcd: {}", tls.describe());
    }
    if connect {
        let admin = crate::fleet::admin(fleet);
        let lines = admin
            .view()
            .map_err(|e| anyhow::anyhow!("fleet: cannot reach {} ({e})", admin.place()))?
            .lines();
        for line in lines {
            say!("    {line}");
        }
    }
    Ok(())
}
