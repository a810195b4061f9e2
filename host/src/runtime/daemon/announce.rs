//! What the daemon says as it starts: the seed, the banner, what it will and will not
//! do, where it records; a kill switch kept across a SIGHUP restart, and a halt kept
//! across any end.

use crate::{config::Config, engine::Engine, output::log};

/// What the setup found that the start says.
pub(super) struct Loaded<'a> {
    /// Whether the seed was drawn (not given).
    pub seed_drawn: bool,
    /// Plugin files skipped, and why.
    pub warnings: &'a [String],
    /// Plugin files loaded though untrusted.
    pub untrusted: &'a [String],
}

/// Logs the start's lines, the original's banner among them.
pub(super) fn announce(config: &Config, loaded: &Loaded<'_>, engine: &Engine) {
    let seed = engine.master_seed();
    if loaded.seed_drawn {
        log::line(format!(
            "Seed: {seed} (drawn; replay this drill with --seed {seed})"
        ));
    } else {
        log::line(format!("Seed: {seed}"));
    }
    if let Some(node) = engine.node() {
        log::line(format!(
            "Node: {node} (every random stream is labelled with it: streams@node/{node})"
        ));
    }
    log::line(super::banner(config));
    for warning in loaded.warnings {
        crate::output::metrics::get().plugin_load_failed();
        log::line(format!("warning: {warning}"));
    }
    for warning in loaded.untrusted {
        log::line(format!("warning: {warning}"));
    }
    if let Some(zone) = &config.zone_name {
        log::line(format!("Time zone: {zone}"));
    }
    if !config.window.skip.is_empty() {
        let dates: Vec<String> = config.window.skip.iter().map(|d| d.to_string()).collect();
        log::line(format!("Sleeping all day on {}", dates.join(", ")));
    }
    if engine.executes() {
        log::line("EXECUTE: faults are real: processes will be signalled and resources taken");
    } else {
        log::line("Dry run: nothing will be changed (give --execute to inject faults for real)");
    }
    // Where every fault is recorded, dry runs included: named once, so nobody is
    // surprised by a file of host processes' command lines.
    log::line(format!("Journal: {}", config.journal.display()));
}

/// A kill switch turned on (or a halt) before a SIGHUP restart stays on: `restarted`
/// is what the restart passed on (see [`super::restart`](mod@super::restart)).
pub(super) fn keep_switch(engine: &Engine, restarted: Option<&str>) {
    match restarted.map(|p| p.strip_prefix("halt: ")) {
        Some(Some(why)) => {
            engine.set_halted(why.to_owned());
            log::line(format!(
                "Halted, as before the SIGHUP restart ({why}): POST /api/resume to resume"
            ));
        }
        Some(None) => {
            engine.set_paused(true);
            log::line("Paused, as before the SIGHUP restart: POST /api/resume to resume");
        }
        None => {}
    }
}

/// A halt the journal holds, with no resume after it, stays: the last run crashed or
/// stopped while halted (`why`: `<probe>: <reason>`), and a halt's resume is manual.
pub(super) fn keep_halt(engine: &Engine, why: String) {
    log::line(format!(
        "Halted, as the last run left it ({why}): POST /api/resume to resume"
    ));
    engine.set_halted(why);
}
