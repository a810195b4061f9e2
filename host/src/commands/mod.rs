//! One module per subcommand; `run` dispatches.

mod kill;
mod plugins;

use crate::cli::{Cli, Command};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Kill(args) => kill::run(args),
        Command::Plugins(cmd) => plugins::run(cmd),
    }
}
