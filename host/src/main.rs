//! `nightmare-monkey`: parse the command line, run, map the error to an exit code.
#![deny(unsafe_code)]

mod budget;
mod cli;
mod commands;
mod config;
mod daemon;
mod engine;
mod journal;
#[allow(unsafe_code)]
mod loader;
mod log;
mod logline;
mod plugin;
mod schedule;
mod setup;
mod state;
mod triggers;
mod window;

use std::process::ExitCode;

use clap::Parser as _;

/// An error the user caused with a flag, a config or a plugin file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] anyhow::Error);

fn main() -> ExitCode {
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
