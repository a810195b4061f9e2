//! The command line: every flag, its default and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Controlled, random, replayable faults for incident-response drills";

const LONG_ABOUT: &str = "\
nightmare-monkey injects controlled, random faults into a development or staging host so \
that on-call teams can practise incident response. It is the successor of the 2017 \
Nightmare Monkey: dry run unless --execute is given, the same log lines, and far more \
safety (PID 1, the monkey, its ancestors and kernel threads are never chosen; victims are \
signalled exactly through a pidfd).";

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 runtime failure (for example no eligible process), 2 usage, \
configuration or plugin error.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "nightmare-monkey",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inject one fault now and print what happened (a dry run unless --execute)
    #[command(after_help = KILL_EXAMPLES)]
    Kill(KillArgs),
    /// Inspect fault plugins: check a plugin file, list what is available
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

const KILL_EXAMPLES: &str = "\
Examples:
  nightmare-monkey kill                      pick a victim, send nothing (dry run)
  nightmare-monkey kill --seed 42            the same pick every time on the same processes
  nightmare-monkey kill --fault-config '(signal: \"TERM\", exclude_names: [\"^sshd$\"])'
  nightmare-monkey kill --plugin ./libmy_fault.so --desc 'game day'";

/// `kill`: one injection.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Really inject the fault. Without it nothing changes: the monkey says what it would do
    #[arg(long)]
    pub execute: bool,

    /// Master seed: the same seed and the same processes choose the same victim [default:
    /// drawn at random and printed]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Why: the description in the log line
    #[arg(long, value_name = "TEXT", default_value = "by monkey")]
    pub desc: String,

    /// Use the fault of this plugin file instead of the built-in process-kill
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<PathBuf>,

    /// The fault's configuration in RON, e.g. '(signal: "TERM", users: ["www-data"])'
    #[arg(long, value_name = "RON")]
    pub fault_config: Option<String>,

    /// Print the whole outcome as one JSON object instead of log lines
    #[arg(long)]
    pub json: bool,
}

/// `plugins ...`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Load a plugin file and print its name and version, or why it cannot load
    Check {
        /// The plugin's shared library (.so)
        file: PathBuf,
    },
    /// List the built-in plugins and every plugin found in the plugin directories
    List {
        /// A directory to search for plugins (*.so); repeatable [default:
        /// /usr/local/lib/nightmare-monkey/plugins, /usr/lib/nightmare-monkey/plugins]
        #[arg(long = "plugin-dir", value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}
