//! One module per subcommand; `run` dispatches. No subcommand runs the daemon.

mod check;
pub mod history;
mod kill;
mod plan;
mod plugins;
mod sandbox;
mod switch;

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
        Some(Command::History(args)) => history::run(args),
        Some(Command::Sandbox(_)) => sandbox::enter(),
        Some(Command::SandboxInit(args)) => sandbox::init(args),
        Some(Command::Pause(args)) => switch::run(args, true),
        Some(Command::Resume(args)) => switch::run(args, false),
    }
}
