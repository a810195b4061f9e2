//! The daemon's process: from a validated configuration to a running engine (`setup`),
//! the async runtime, the triggers started and stopped, signals, restarts, the pause
//! file's watcher, the halt conditions' watch and systemd's notifications (`daemon`,
//! `pause_file`, `halt`, `systemd`), and the signals noted before the runtime exists
//! (`stop`).

pub mod daemon;
mod fleet;
mod halt;
mod pause_file;
pub mod setup;
pub(crate) mod stop;
pub mod systemd;
