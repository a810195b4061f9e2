//! One module per subcommand; `run` dispatches. No subcommand runs the daemon.

mod check;
mod kill;
mod plan;
mod plugins;

use crate::{
    cli::{Cli, Command},
    daemon,
};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => daemon::run(cli.daemon),
        Some(Command::Kill(args)) => kill::run(args),
        Some(Command::Plugins(cmd)) => plugins::run(cmd),
        Some(Command::Plan(args)) => plan::run(args),
        Some(Command::CheckConfig { file }) => check::run(&file),
    }
}
