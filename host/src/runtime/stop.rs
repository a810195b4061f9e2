//! Signals noted from the first instant of a start. The async runtime's own handlers
//! exist only once plugins are loaded and what a crash left is reverted; until then the
//! kernel's default would end the daemon on the spot (exit 143 for SIGTERM, 129 for
//! SIGHUP, the recovery cut short). Noted here, a stop (SIGTERM, SIGINT) is acted on as
//! soon as the start can: after recovery (nothing is left half-reverted), and before a
//! SIGHUP restart (a stop wins over a restart under way); a SIGHUP once the daemon runs.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, OnceLock,
};

use anyhow::Context as _;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// What was received: the stop signal (its number; 0 for none) and whether a SIGHUP
/// came that nobody has acted on yet.
struct Received {
    stop: Arc<AtomicUsize>,
    hangup: Arc<AtomicBool>,
}

static RECEIVED: OnceLock<Received> = OnceLock::new();

/// Notes SIGTERM, SIGINT and SIGHUP from now on; the first call installs, later ones
/// do nothing. The runtime's handlers, installed later, are told of every signal too.
pub fn install() -> anyhow::Result<()> {
    if RECEIVED.get().is_some() {
        return Ok(());
    }
    let received = Received {
        stop: Arc::new(AtomicUsize::new(0)),
        hangup: Arc::new(AtomicBool::new(false)),
    };
    for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        signal_hook::flag::register_usize(signal, received.stop.clone(), signal as usize)
            .with_context(|| format!("cannot handle {name}"))?;
    }
    signal_hook::flag::register(SIGHUP, received.hangup.clone()).context("cannot handle SIGHUP")?;
    let _ = RECEIVED.set(received);
    // Held by the image that restarted into this one (see `hold`): delivered now, to
    // the handlers just installed.
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held()), None)
        .context("cannot unblock SIGTERM, SIGINT and SIGHUP")?;
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP.
fn held() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Holds SIGTERM, SIGINT and SIGHUP back in this thread, just before it execs a SIGHUP
/// restart: the mask survives the exec, so a stop sent while the new image starts
/// waits for its handlers (`install` lets them through) instead of killing it. A
/// signal that another thread catches in the instant before the exec is lost.
pub fn hold() {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held()), None);
}

/// Whether a SIGHUP came since the last call (or since [`install`]); it is forgotten.
pub fn take_hangup() -> bool {
    RECEIVED
        .get()
        .is_some_and(|r| r.hangup.swap(false, Ordering::SeqCst))
}

/// The stop signal received since [`install`], by name.
pub fn requested() -> Option<&'static str> {
    let signal = RECEIVED.get()?.stop.load(Ordering::SeqCst);
    name(signal)
}

fn name(signal: usize) -> Option<&'static str> {
    match i32::try_from(signal).ok()? {
        SIGTERM => Some("SIGTERM"),
        SIGINT => Some("SIGINT"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named() {
        assert_eq!(name(SIGTERM as usize), Some("SIGTERM"));
        assert_eq!(name(SIGINT as usize), Some("SIGINT"));
        assert_eq!(name(0), None);
        assert_eq!(name(usize::MAX), None);
    }
}
