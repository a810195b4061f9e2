//! SIGHUP: the configuration checked again, and a restart in place with it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    cli::DaemonArgs,
    config::{self, Config},
    output::log,
    runtime::setup,
    support::thread::on_own_thread,
};

/// Set for the process a SIGHUP restart starts when the kill switch was on.
pub(super) const RESTART_PAUSED: &str = "NIGHTMARE_MONKEY_RESTART_PAUSED";

/// Runs this very binary again, same PID, same arguments: the new configuration is read
/// as at any start. `/proc/self/exe`, not a path: a package upgrade may have replaced
/// the file, and a restart must not switch binaries behind the operator's back.
/// `Ok`: a stop signal came first, and the daemon stops instead (one that comes later
/// stays pending through the exec, and the new image stops before it starts).
pub(super) fn restart(paused: bool, halted: Option<String>) -> anyhow::Result<()> {
    // Halted, the reason goes along: `status` still says why after the restart.
    let marker = match (paused, halted) {
        (_, Some(why)) => Some(format!("halt: {why}")),
        (true, None) => Some("1".to_owned()),
        (false, None) => None,
    };
    // The very binary that runs (even if the file was replaced since), under the name it
    // was started with: `ps` shows the command line as it was.
    let (args, env) = exec_arguments(std::env::args_os(), std::env::vars_os(), marker.as_deref())?;
    // What is queued for the log would be lost with this image.
    log::flush(Duration::from_secs(1));
    // The last look, as close to the exec as can be.
    if let Some(signal) = crate::runtime::stop::requested() {
        log::line(format!(
            "{signal} during the SIGHUP restart: stopping instead"
        ));
        return Ok(());
    }
    // `execve` itself: the mask and what is pending survive it, so a stop that comes in
    // this instant waits for the new image. std's `Command::exec` keeps the mask too
    // today (Rust 1.95, checked), but does not promise it, and older versions emptied
    // it first: a stop in that instant would have taken the kernel's default.
    let error = match nix::unistd::execve(c"/proc/self/exe", &args, &env) {
        Err(error) => error,
        Ok(never) => match never {},
    };
    Err(anyhow::anyhow!("cannot restart after SIGHUP: {error}"))
}

/// The new image's arguments (as this one was started) and environment (this one's,
/// with [`RESTART_PAUSED`] set to `marker`, or removed).
fn exec_arguments(
    args: impl Iterator<Item = std::ffi::OsString>,
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    marker: Option<&str>,
) -> anyhow::Result<(Vec<std::ffi::CString>, Vec<std::ffi::CString>)> {
    use std::os::unix::ffi::OsStrExt as _;
    let text = |bytes: Vec<u8>| {
        std::ffi::CString::new(bytes).map_err(|_| {
            anyhow::anyhow!(
                "cannot restart after SIGHUP: an argument or the environment holds a NUL byte"
            )
        })
    };
    let args = args
        .map(|a| text(a.as_bytes().to_vec()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for (key, value) in vars.filter(|(key, _)| key != RESTART_PAUSED) {
        let mut pair = key.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        env.push(text(pair)?);
    }
    if let Some(marker) = marker {
        env.push(text(format!("{RESTART_PAUSED}={marker}").into_bytes())?);
    }
    Ok((args, env))
}

/// What a SIGHUP's check compares the new configuration with: the running daemon's.
#[derive(Debug, Clone)]
pub(super) struct Running {
    /// Where its API listens (`None`: it has none).
    pub listen: Option<SocketAddr>,
    /// Its journal.
    pub journal: PathBuf,
    /// How many faults are in effect, being reverted or being injected.
    pub busy: usize,
}

/// SIGHUP: the configuration is checked again, and only a configuration that checks out
/// is applied, by a restart in place (same PID, same arguments): active faults are
/// reverted and the timer, budget and seed streams start afresh, as at any start. One
/// with errors is logged and the daemon runs on unchanged. `true`: restart.
pub(super) async fn check_again(args: Option<&DaemonArgs>, running: Running) -> bool {
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
                    .map_err(|e| e.to_string())?;
                let refused = against_running(&config, &running);
                if refused.is_empty() {
                    Ok(config.faults.len())
                } else {
                    Err(refused.join("\n"))
                }
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

/// What the new image would fail at, or lose, that the configuration alone does not
/// say: an API address another process holds (the restart would stop there), and a
/// journal moved away from the faults it lists as in effect (the new start reads the
/// new one only, and would forget them).
fn against_running(config: &Config, running: &Running) -> Vec<String> {
    let mut refused = Vec::new();
    if let Some(http) = config
        .http
        .as_ref()
        .filter(|h| Some(h.listen) != running.listen)
    {
        if let Err(e) = std::net::TcpListener::bind(http.listen) {
            refused.push(format!(
                "http.listen: cannot listen on {}: {e}",
                http.listen
            ));
        }
    }
    if config.journal != running.journal && running.busy > 0 {
        refused.push(format!(
            "journal: it moves from {} to {} while {} {} in effect or under way: the journal that lists them must stay where the next start reads it; revert them first (pause, or revert --all), then send SIGHUP again",
            running.journal.display(),
            config.journal.display(),
            running.busy,
            if running.busy == 1 { "fault is" } else { "faults are" },
        ));
    }
    refused
}

#[cfg(test)]
mod tests {
    use std::ffi::{CString, OsString};

    use super::*;

    fn texts(v: &[CString]) -> Vec<&str> {
        v.iter().map(|c| c.to_str().unwrap()).collect()
    }

    #[test]
    fn the_new_image_gets_the_same_arguments_and_the_marker_alone() {
        let args = ["nightmare-monkey", "--config", "/etc/nm.ron"].map(OsString::from);
        let vars = || {
            [
                ("PATH", "/usr/bin"),
                (RESTART_PAUSED, "1"),
                ("EMPTY", ""),
                ("WITH", "a=b"),
            ]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .into_iter()
        };
        let (argv, env) = exec_arguments(args.clone().into_iter(), vars(), None).unwrap();
        assert_eq!(
            texts(&argv),
            ["nightmare-monkey", "--config", "/etc/nm.ron"]
        );
        assert_eq!(texts(&env), ["PATH=/usr/bin", "EMPTY=", "WITH=a=b"]);
        let (_, env) = exec_arguments(args.into_iter(), vars(), Some("halt: db down")).unwrap();
        assert_eq!(
            texts(&env),
            [
                "PATH=/usr/bin",
                "EMPTY=",
                "WITH=a=b",
                "NIGHTMARE_MONKEY_RESTART_PAUSED=halt: db down"
            ]
        );
    }

    #[test]
    fn a_nul_byte_is_refused_not_cut() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = OsString::from_vec(b"a\0b".to_vec());
        let none = std::iter::empty::<(OsString, OsString)>();
        let error = exec_arguments([bad.clone()].into_iter(), none, None).unwrap_err();
        assert!(error.to_string().contains("NUL byte"), "{error}");
        let vars = [(OsString::from("K"), bad)].into_iter();
        assert!(exec_arguments(std::iter::empty(), vars, None).is_err());
    }
}
