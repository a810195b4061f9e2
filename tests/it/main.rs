//! End-to-end tests of the `nightmare-monkey` binary.
//!
//! Real signals are only ever sent inside a fresh PID namespace that the test creates
//! (`unshare --user --map-root-user --pid --fork --mount-proc`), to processes the test
//! started there. Everything run against this machine's own processes is a dry run.

mod answer_key;
mod api;
mod config;
mod daemon;
mod dashboard;
mod detect;
mod drill;
mod fleet;
mod halt;
mod house;
mod journal;
mod kill;
mod network;
mod ops;
mod other_sites;
mod outcomes;
mod pictures;
mod plugins;
mod poller;
mod poller_hostile;
mod proxy;
mod readme;
mod reverts;
mod start;
mod steady_state;
mod util;
mod watchers;
