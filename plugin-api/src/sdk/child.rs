//! Programs a plugin runs (`tc`, `nft`, a script). The daemon blocks SIGTERM, SIGINT and
//! SIGHUP in every thread (it reads them from a signalfd), and std's `Command` passes
//! the mask on through fork and exec: a program a built-in fault starts as it is would
//! keep them blocked, and no SIGTERM, Ctrl-C or SIGHUP would reach it. A plugin file runs
//! in a worker that starts with them unblocked; the call costs nothing there either.
//!
//! ```no_run
//! use nightmare_monkey_plugin_api::sdk::child::stop_signals_unblocked;
//!
//! let status = stop_signals_unblocked(&mut std::process::Command::new("tc"))
//!     .args(["qdisc", "show"])
//!     .status()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::os::unix::process::CommandExt as _;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Has `command`'s child start with SIGTERM, SIGINT and SIGHUP unblocked, as any program
/// expects (the rest of the mask is left as the caller has it).
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
