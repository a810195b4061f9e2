//! The nightmare-monkey host as a library: what the `nightmare-monkey` binary runs, and
//! what the benchmark harness (`bench/`) drives in-process. Not a stable API: plugins
//! depend on `nightmare-monkey-plugin-api`, never on this crate.
#![deny(unsafe_code)]

pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod journal;
#[allow(unsafe_code)]
pub mod loader;
pub mod log;
pub mod logline;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod schedule;
pub mod setup;
pub mod state;
pub mod triggers;
pub mod tz;
pub mod webhook;
pub mod window;

use std::process::ExitCode;

use clap::Parser as _;

/// An error the user caused with a flag, a config or a plugin file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] anyhow::Error);

/// Parses the command line, runs it and maps the outcome to the exit code: 0 done,
/// 1 a runtime failure, 2 a usage or configuration error.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Several configuration errors come one a line; each gets the prefix.
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            if e.is::<UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
