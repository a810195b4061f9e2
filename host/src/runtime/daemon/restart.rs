//! SIGHUP: the configuration checked again, and a restart in place with it.

use std::time::Duration;

use crate::{cli::DaemonArgs, config, output::log, runtime::setup, support::thread::on_own_thread};

/// Set for the process a SIGHUP restart starts when the kill switch was on.
pub(super) const RESTART_PAUSED: &str = "NIGHTMARE_MONKEY_RESTART_PAUSED";

/// Runs this very binary again, same PID, same arguments: the new configuration is read
/// as at any start. `/proc/self/exe`, not a path: a package upgrade may have replaced
/// the file, and a restart must not switch binaries behind the operator's back.
/// `Ok`: a stop signal came first, and the daemon stops instead (one that comes later
/// waits, blocked in this thread, for the new image's handlers).
pub(super) fn restart(paused: bool, halted: Option<String>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    // The very binary that runs (even if the file was replaced since), under the name it
    // was started with: `ps` shows the command line as it was.
    let mut command = std::process::Command::new("/proc/self/exe");
    let mut args = std::env::args_os();
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    command.args(args);
    // Halted, the reason goes along: `status` still says why after the restart.
    match (paused, halted) {
        (_, Some(why)) => command.env(RESTART_PAUSED, format!("halt: {why}")),
        (true, None) => command.env(RESTART_PAUSED, "1"),
        (false, None) => command.env_remove(RESTART_PAUSED),
    };
    // What is queued for the log would be lost with this image.
    log::flush(Duration::from_secs(1));
    // The last look, as close to the exec as can be: a stop taken by another thread's
    // handler after it would be lost with this image.
    if let Some(signal) = crate::runtime::stop::requested() {
        log::line(format!(
            "{signal} during the SIGHUP restart: stopping instead"
        ));
        return Ok(());
    }
    let error = command.exec();
    Err(anyhow::anyhow!("cannot restart after SIGHUP: {error}"))
}

/// SIGHUP: the configuration is checked again, and only a configuration that checks out
/// is applied, by a restart in place (same PID, same arguments): active faults are
/// reverted and the timer, budget and seed streams start afresh, as at any start. One
/// with errors is logged and the daemon runs on unchanged. `true`: restart.
pub(super) async fn check_again(args: Option<&DaemonArgs>) -> bool {
    let Some(args) = args.cloned() else {
        log::line("SIGHUP: nothing to reload here (the sandbox's monkey)");
        return false;
    };
    // On a thread of its own: the injections' threads may all be held by hung plugins.
    let checked = on_own_thread("sighup", move || {
        config::load(&args)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                setup::build(&config, setup::Mode::Hangup)
                    .map(|_| config.faults.len())
                    .map_err(|e| e.to_string())
            })
    })
    .await;
    match checked {
        Some(Ok(faults)) => {
            log::line(format!(
                "SIGHUP: the configuration checks out ({faults} {}); restarting with it (active faults are reverted; the timer, budget and seed streams start afresh)",
                if faults == 1 { "fault" } else { "faults" }
            ));
            true
        }
        Some(Err(errors)) => {
            for line in errors.lines() {
                log::line(format!("warning: SIGHUP: {line}"));
            }
            log::line(
                "warning: SIGHUP: the configuration has errors; not applied. Running on unchanged.",
            );
            false
        }
        None => {
            log::line("warning: SIGHUP: the check could not run (no thread for it, or it panicked); running on unchanged");
            false
        }
    }
}
