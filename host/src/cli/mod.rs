//! The command line: every flag, its default and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod client;
mod history;

pub use client::{AckArgs, PauseArgs, ResumeArgs, RevertArgs, StatusArgs, SwitchArgs};
use client::{ACK_EXAMPLES, PAUSE_EXAMPLES, RESUME_EXAMPLES, REVERT_EXAMPLES, STATUS_EXAMPLES};
pub use history::HistoryArgs;
use history::HISTORY_EXAMPLES;

/// `--version`: the package version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("NIGHTMARE_MONKEY_REVISION"),
    ")"
);

const ABOUT: &str = "Controlled, random, replayable faults for incident-response drills";

const LONG_ABOUT: &str = "\
nightmare-monkey injects controlled, random faults into a development or staging host so \
that on-call teams can practise incident response. It is the successor of the 2017 \
Nightmare Monkey: dry run unless --execute is given, the same log lines, and far more \
safety (PID 1, the monkey, its ancestors and kernel threads are never chosen; victims are \
signalled exactly through a pidfd).";

const AFTER_HELP: &str = "\
Examples:
  nightmare-monkey                                    the original's defaults, dry run
  nightmare-monkey --min-interval 1 --max-interval 2 -d '*' -t 00:00-24:00
                                                      a fast demo: a dry fault every 1-2 s
  nightmare-monkey --config examples/tokyo-office-hours.ron --execute

Exit codes: 0 success, 1 runtime failure (for example no eligible process), 2 usage, \
configuration or plugin error.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "nightmare-monkey",
    version = VERSION,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; without a subcommand the daemon runs.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The daemon's flags.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The daemon's flags: the original's, with its names and defaults, plus a few more.
/// Each overrides the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {
    /// Really inject faults. Without it the monkey runs dry: it logs what it would do
    #[arg(long)]
    pub execute: bool,

    /// Shortest wait between faults, in seconds [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub min_interval: Option<u64>,

    /// Longest wait between faults, in seconds [default: 21600]
    #[arg(long, value_name = "SECONDS")]
    pub max_interval: Option<u64>,

    /// Allowed weekdays, as crontab's day-of-week field: 1-5 or Mon-Fri, sat,sun, 0-7 or *
    /// (every day), */2; 0 and 7 are Sunday; Fri-Mon and 5-1 wrap [default: 1-5]
    #[arg(short = 'd', long = "day", value_name = "DAYS")]
    pub day: Option<String>,

    /// Allowed time of day, HH:MM-HH:MM; 22:00-02:00 wraps midnight [default: 11:00-18:00]
    #[arg(short = 't', long = "time", value_name = "RANGE")]
    pub time: Option<String>,

    /// Time zone of --day and --time, an IANA name like Asia/Tokyo [default: the host's]
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,

    /// HTTP API port [default: 8080]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// HTTP API address, IP or IP:PORT [default: 127.0.0.1:8080]. A non-loopback address
    /// needs a token (see the config's http.token)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Configuration file (RON); every field optional, flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Master seed: the same seed and config replay the same drill [default: drawn at
    /// random and logged]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Load every *.so in this directory as a plugin; repeatable, replaces the config's
    /// plugin_dirs [default: /usr/local/lib/nightmare-monkey/plugins,
    /// /usr/lib/nightmare-monkey/plugins]
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,

    /// Load plugin files that fail the trust checks (owned by root or this user, written
    /// by no one else, up the whole path), with a warning each: for development as a user,
    /// never on a shared host
    #[arg(long)]
    pub allow_untrusted_plugins: bool,

    /// Where the journal, the pause file and the pollers' state live (created 0700);
    /// replaces the config's state_dir [default: $STATE_DIRECTORY (systemd's
    /// StateDirectory=), else /var/lib/nightmare-monkey for root, else
    /// ~/.local/state/nightmare-monkey]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// This host's name in a fleet drill: every random stream is labelled with it, so one
    /// --seed for the whole fleet still gives each node its own draws, each replayable
    /// [default: none, streams unlabelled]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// Log format: the original's plain lines, or one JSON object a line (for journald,
    /// Loki...). The level comes from RUST_LOG (error, warn, info, debug, off) [default:
    /// plain]
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<crate::output::log::Format>,
}

impl Cli {
    /// Whether the command reads SIGTERM, SIGINT and SIGHUP itself, and so keeps them
    /// blocked from the first instant: the daemon and the sandbox's init
    /// (`runtime::stop`), and the sandbox, until its handlers are in place (one that came
    /// before must still stop it, the monkey included).
    pub fn reads_stop_signals(&self) -> bool {
        matches!(
            self.command,
            None | Some(Command::SandboxInit(_)) | Some(Command::Sandbox(_))
        )
    }

    /// Whether the command asked for JSON output (`--json`): its errors are JSON too.
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Some(Command::Kill(a)) => a.json,
            Some(Command::History(a)) => a.json,
            Some(Command::Status(a)) => a.json,
            Some(Command::Ack(a)) => a.json,
            Some(Command::Revert(a)) => a.json,
            Some(Command::Report(a)) => a.format == ReportFormat::Json,
            _ => false,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the next fire times of the timer: the instructor's preview of a drill
    #[command(
        after_help = PLAN_EXAMPLES,
        // The daemon's flags that change nothing of a plan: accepted (a daemon's command
        // line can be copied as it is), not shown.
        mut_arg("execute", |a| a.hide(true)),
        mut_arg("port", |a| a.hide(true)),
        mut_arg("listen", |a| a.hide(true)),
        mut_arg("plugin_dirs", |a| a.hide(true)),
        mut_arg("allow_untrusted_plugins", |a| a.hide(true)),
        mut_arg("log_format", |a| a.hide(true)),
        // `plan` takes `--node` repeated (`PlanArgs::nodes`); the daemon's single one
        // steps aside under a name nobody types.
        mut_arg("node", |a| a.long("daemon-node").hide(true))
    )]
    Plan(PlanArgs),
    /// The answer key: what the monkey did, one line per fault, from the journal
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Pause a running daemon: every trigger is refused and active faults are reverted
    #[command(after_help = PAUSE_EXAMPLES)]
    Pause(PauseArgs),
    /// Resume a paused daemon (fails while its pause file exists)
    #[command(after_help = RESUME_EXAMPLES)]
    Resume(ResumeArgs),
    /// What a running daemon is doing: playing, sleeping or paused (and why), the next
    /// fault, what is in effect, the budget left
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Mark a fault noticed, for its time to detect: the latest unnoticed one, or --id
    #[command(after_help = ACK_EXAMPLES)]
    Ack(AckArgs),
    /// Revert one fault in effect now, on a running daemon (the dashboard's Revert now)
    #[command(after_help = REVERT_EXAMPLES)]
    Revert(RevertArgs),
    /// What a drill came to: per fault, who noticed and when, whether the system came
    /// back, and in sum, from the journal
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Run COMMAND in a fresh PID namespace and unleash the monkey on it alone, for real
    #[command(
        after_help = SANDBOX_EXAMPLES,
        // It always executes: the flag changes nothing there.
        mut_arg("execute", |a| a.hide(true)),
        // The sandbox shares the host's network: it takes a free port unless told.
        mut_arg("port", |a| a.help("HTTP API port [default: a free one]")),
        mut_arg("listen", |a| a.help(
            "HTTP API address, IP or IP:PORT [default: 127.0.0.1 on a free port]. A non-loopback address needs a token (see the config's http.token)"
        )),
        mut_arg("allow_untrusted_plugins", |a| a.help(
            "Load plugin files that fail the trust checks, with a warning each. The checks are made before the sandbox's namespace, as the user who runs it"
        )),
        mut_arg("state_dir", |a| a.help(
            "Where the sandbox keeps its journal and pause file, apart from any daemon's (created 0700) [default: sandbox/ in the daemon's default state directory: $STATE_DIRECTORY/sandbox, else /var/lib/nightmare-monkey/sandbox for root, else ~/.local/state/nightmare-monkey/sandbox]"
        ))
    )]
    Sandbox(SandboxArgs),
    /// (internal) the sandbox's PID 1
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit(SandboxArgs),
    /// Internal: serve one plugin file's calls, for the daemon or a command that started
    /// this process (JSON lines on stdin and stdout)
    #[command(name = "__plugin-worker", hide = true)]
    PluginWorker {
        /// The plugin file the image on stdin came from (for messages)
        file: PathBuf,
    },
    /// Check a configuration file without running anything
    #[command(after_help = CHECK_EXAMPLES)]
    CheckConfig {
        /// The configuration file (RON)
        file: PathBuf,
        /// Reach the fleet's coordinator too and say what it holds
        #[arg(long)]
        connect: bool,
    },
    /// Inject one fault now and print what happened (a dry run unless --execute)
    #[command(after_help = KILL_EXAMPLES)]
    Kill(KillArgs),
    /// Inspect fault plugins: check a plugin file, list what is available
    #[command(subcommand, after_help = PLUGINS_EXAMPLES)]
    Plugins(PluginsCommand),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from this command line's definition
    #[command(after_help = MAN_EXAMPLES)]
    Man,
}

const CHECK_EXAMPLES: &str = "\
Reads the file as the daemon would, loads its plugins and builds every fault, and prints
every problem at once with file:line:col. Exit code 0 when the daemon would start, 2 if not.

Examples:
  nightmare-monkey check-config examples/tokyo-office-hours.ron
  nightmare-monkey check-config /etc/nightmare-monkey/config.ron \\
    && systemctl reload nightmare-monkey";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  nightmare-monkey completions bash > /etc/bash_completion.d/nightmare-monkey
  nightmare-monkey completions zsh > \"${fpath[1]}/_nightmare-monkey\"
  nightmare-monkey completions fish > ~/.config/fish/completions/nightmare-monkey.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  nightmare-monkey man | man -l -
  nightmare-monkey man > /usr/local/share/man/man1/nightmare-monkey.1";

const PLAN_EXAMPLES: &str = "\
Formats: text (one fire time a line, RFC 3339 in the window's zone), svg (a week grid: 7
day columns from Monday, 24 hour rows in the window's zone, the window shaded, each fire a
numbered dot with its time as a tooltip; one grid per node and week), html (the same
picture in a self-contained page, every fire time listed under it; no script, nothing
fetched, prints). With several --node, the nodes stand side by side and text lines start
with the node.

Examples:
  nightmare-monkey plan --seed 42 --count 5
  nightmare-monkey plan --config examples/tokyo-office-hours.ron --from 2026-12-01T09:00:00+09:00
  nightmare-monkey plan --seed 42 --format svg -o plan.svg
  nightmare-monkey plan --seed 42 --node web-1 --node web-2 --format html -o fleet.html";

/// `plan`: the timer's next fire times, computed without waiting.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The schedule flags, as the daemon takes them.
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// Start from this instant (RFC 3339) [default: now]
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,

    /// How many fire times to print (per node), 1 to 10000
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = plan_count)]
    pub count: usize,

    /// This host's name in a fleet drill, as the daemon's --node; repeat it to plan
    /// several nodes side by side (--node web-1 --node web-2) [default: the config's
    /// node, else none]
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,

    /// text, svg or html
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub format: PlanFormat,

    /// Write to this file (whole, or not at all) instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The plan's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// One fire time a line.
    Text,
    /// A week grid per node and week (SVG).
    Svg,
    /// The week grids and the list in one self-contained HTML page.
    Html,
}

const SANDBOX_EXAMPLES: &str = "\
A practice ground for newcomers, on any Linux machine, root or not: COMMAND and everything
it starts run in a new PID namespace, and the monkey, with --execute, can only see and hit
those processes (COMMAND itself included). Only process faults run there: process-kill,
process-pause, and a plugin file's fault vouched for with --process-plugin. The journal and
the pause file are the sandbox's own, apart from any daemon's (the config's journal,
pause_file and state_dir are not used). It ends when COMMAND exits, with its status.

Examples:
  nightmare-monkey sandbox --min-interval 5 --max-interval 20 -d '*' -t 00:00-24:00 \\
    -- ./start-my-stack.sh
  nightmare-monkey sandbox --config drill.ron -- docker-compose-like-supervisor --foreground
  nightmare-monkey sandbox --config drill.ron --process-plugin renice -- ./start-my-stack.sh";

/// `sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The daemon's flags (the monkey always executes in the sandbox).
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// A plugin file's plugin whose faults act on processes alone (through their PIDs),
    /// so the sandbox confines them: run them there; repeatable
    #[arg(long = "process-plugin", value_name = "NAME")]
    pub process_plugins: Vec<String>,
    /// The command to run in the sandbox, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

const REPORT_EXAMPLES: &str = "\
Verdicts: coped (noticed, and back within its recovery deadline where one was checked),
recovered late, not recovered, undetected; dry runs and failed injections are not judged.
Resilience: the share of judged faults the team coped with.

html is one self-contained page (no script, nothing fetched, prints): the sums, a
timeline of the faults (each marked by its verdict with a colour, a shape and a letter,
its times to detect and to recover as bars after it, refusals and halts marked) and the
table, times in the window's zone of --config (else the host's).

Examples:
  nightmare-monkey report                            the last 7 days, the default journal
  nightmare-monkey report --since 2026-11-26T09:00:00+09:00 --format md > drill.md
  nightmare-monkey report --config /etc/nightmare-monkey/config.ron --format json
  nightmare-monkey report --since 1d --format html -o drill.html";

/// The report's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Lines for a terminal.
    Text,
    /// The whole report as one JSON object (as GET /api/report answers).
    Json,
    /// A Markdown table and summary, for a post-mortem page.
    Md,
    /// One self-contained HTML page with the timeline, the sums and the table.
    Html,
}

/// `report`.
// `<state dir>` in a `--help` text is not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The journal file [default: the config's, else <state dir>/journal.jsonl]
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Read the journal path from this configuration
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Faults since this instant (RFC 3339) or this long ago (7d, 2h) [default: 7d]
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// text, json, md or html
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Write to this file (whole, or not at all) instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

const PLUGINS_EXAMPLES: &str = "\
Examples:
  nightmare-monkey plugins list                        the built-ins and the default directories
  nightmare-monkey plugins list --plugin-dir target/release
  nightmare-monkey plugins check target/release/libstale_lock.so
(target/release/*.so are built by `cargo build --release --workspace`)";

const KILL_EXAMPLES: &str = "\
Examples:
  nightmare-monkey kill                      pick a victim, send nothing (dry run)
  nightmare-monkey kill --seed 42            the same pick every time on the same processes
  nightmare-monkey kill --fault-config '(signal: \"TERM\", exclude_names: [\"^sshd$\"])'
  nightmare-monkey kill --plugin ./libmy_fault.so --desc 'game day'
  nightmare-monkey kill --fault net-loss --fault-config '(percent: 10, ports: [5432])'
  nightmare-monkey kill --config /etc/nightmare-monkey/config.ron --fault gentle-kill";

/// `kill`: one injection.
// `<state dir>` in a `--help` text is not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Really inject the fault. Without it nothing changes: the monkey says what it would do
    #[arg(long)]
    pub execute: bool,

    /// Master seed: the same seed and the same processes choose the same victim [default:
    /// drawn at random and printed]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Why: the description in the log line (up to 1024 bytes, as the API takes it)
    #[arg(long, value_name = "TEXT", default_value = "by monkey", value_parser = desc)]
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

    /// Journal the fault here [default: <state dir>/journal.jsonl, or the config's]
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,

    /// Take the fault from this daemon configuration: its plugins, its faults' settings
    /// (exclusions included), its seed, journal and pause file
    #[arg(long, value_name = "FILE", conflicts_with_all = ["plugin", "fault_config"])]
    pub config: Option<PathBuf>,

    /// With --config: the configured fault to inject [default: the one POST /api/kill
    /// fires]; without: the built-in fault to inject (net-loss, disk-fill, ...) [default:
    /// process-kill]
    #[arg(long, value_name = "NAME", conflicts_with = "plugin")]
    pub fault: Option<String>,

    /// Load a --plugin file that fails the trust checks, with a warning (see the daemon's
    /// --allow-untrusted-plugins)
    #[arg(long)]
    pub allow_untrusted_plugins: bool,

    /// Give up on the plugin if a call (the injection, the revert) takes longer, e.g. 10s
    /// or 2m [default: 30s, or the config's plugin_timeout]
    #[arg(long, value_name = "DURATION", value_parser = plugin_timeout)]
    pub plugin_timeout: Option<std::time::Duration>,
}

/// The most fire times `plan --count` prints per node: months of a fast drill, and
/// far below the draws the plan gives up after, so a plan cut short always means a
/// schedule that does not meet its window.
pub const MAX_PLAN_COUNT: usize = 10_000;

/// A `plan --count`: 1 to [`MAX_PLAN_COUNT`].
fn plan_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_PLAN_COUNT).contains(&n) => Ok(n),
        Ok(_) => Err(format!("expected 1 to {MAX_PLAN_COUNT} fire times")),
        Err(_) => Err(format!(
            "expected a number of fire times, 1 to {MAX_PLAN_COUNT}"
        )),
    }
}

/// A `--desc`: what `POST /api/kill` would take as its `desc`.
fn desc(text: &str) -> Result<String, String> {
    use crate::domain::injection::{check_desc, BadDesc, MAX_DESC_BYTES};
    match check_desc(text) {
        Ok(()) => Ok(text.to_owned()),
        Err(BadDesc::Empty) => {
            Err("the description must not be empty: say why, e.g. --desc 'game day'".to_owned())
        }
        Err(BadDesc::TooLong) => Err(format!(
            "the description is {} bytes long, more than {MAX_DESC_BYTES}: say why in a sentence",
            text.len()
        )),
    }
}

/// A `--plugin-timeout`: a duration from 1 ms to 10 minutes.
fn plugin_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("expected a duration longer than zero".to_owned()),
        Ok(d) if d > std::time::Duration::from_secs(600) => Err("too long: at most 10m".to_owned()),
        Ok(d) => Ok(d),
        Err(_) => Err("expected a duration like 10s, 2m or 500ms".to_owned()),
    }
}

/// `plugins ...`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Load a plugin file and print its name and version, or why it cannot load
    #[command(
        after_help = "Examples:\n  nightmare-monkey plugins check target/release/libstale_lock.so"
    )]
    Check {
        /// The plugin's shared library (.so)
        file: PathBuf,
        /// Load it even if it fails the trust checks, with a warning
        #[arg(long)]
        allow_untrusted_plugins: bool,
    },
    /// List the built-in plugins and every plugin found in the plugin directories
    #[command(
        after_help = "Examples:\n  nightmare-monkey plugins list\n  nightmare-monkey plugins list --plugin-dir ./target/release"
    )]
    List {
        /// A directory to search for plugins (*.so); repeatable [default:
        /// /usr/local/lib/nightmare-monkey/plugins, /usr/lib/nightmare-monkey/plugins]
        #[arg(long = "plugin-dir", value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Load files that fail the trust checks, with a warning
        #[arg(long)]
        allow_untrusted_plugins: bool,
    },
}

#[cfg(test)]
mod tests;
