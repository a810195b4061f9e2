//! What a child process starts with. The daemon blocks SIGTERM, SIGINT and SIGHUP in
//! every thread (`runtime::stop` reads them from a signalfd), and std's `Command` (and
//! tokio's, which is std's) passes the mask on through fork and exec: a child started
//! as it is would keep them blocked, and no SIGTERM, Ctrl-C or SIGHUP would reach it.

use std::os::unix::process::CommandExt as _;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Has `command`'s child start with SIGTERM, SIGINT and SIGHUP unblocked, as any program
/// expects (the rest of the mask is left as the daemon was given it).
pub fn stop_signals_unblocked(command: &mut std::process::Command) -> &mut std::process::Command {
    let mut stops = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stops.add(signal);
    }
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls may be made: it copies a set built before the fork and
    // calls `pthread_sigmask`, which is one; it allocates and locks nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&stops), None)
                .map_err(std::io::Error::from)
        })
    }
}
