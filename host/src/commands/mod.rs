//! One module per subcommand; `run` dispatches. No subcommand runs the daemon.

mod check;
pub mod history;
mod kill;
mod plan;
mod plugins;
mod sandbox;
mod switch;

use clap::CommandFactory as _;

use crate::{
    cli::{Cli, Command},
    runtime::daemon,
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
        Some(Command::PluginWorker { file }) => crate::plugin::worker::serve(&file),
        Some(Command::Pause(args)) => switch::run(args, true),
        Some(Command::Resume(args)) => switch::run(args, false),
        Some(Command::Status(args)) => switch::status(args),
        Some(Command::Completions { shell }) => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nightmare-monkey", &mut text);
            print(&text)
        }
        Some(Command::Man) => print(&man_page()?),
    }
}

/// The manual page, generated from the command line's definition. Its footer names the
/// version without the git revision, so the copy in `doc/` changes only with the CLI.
pub fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command().version(env!("CARGO_PKG_VERSION")))
        .source(format!("nightmare-monkey {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    Ok(page)
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
