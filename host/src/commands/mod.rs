//! One module per subcommand; `run` dispatches. No subcommand runs the daemon.

mod check;
mod fleet;
pub mod history;
mod kill;
mod plan;
mod plugins;
mod report;
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
        Some(Command::CheckConfig { file, connect }) => check::run(&file, connect),
        Some(Command::History(args)) => history::run(args),
        Some(Command::Sandbox(args)) => sandbox::enter(&args),
        Some(Command::SandboxInit(args)) => sandbox::init(args),
        Some(Command::PluginWorker { file }) => crate::plugin::worker::serve(&file),
        Some(Command::Pause(args)) if args.fleet => {
            fleet::switch(args.daemon.config.as_deref(), true, args.reason.as_deref())
        }
        Some(Command::Resume(args)) if args.fleet => {
            fleet::switch(args.daemon.config.as_deref(), false, None)
        }
        Some(Command::Pause(args)) => switch::run(args.daemon, true),
        Some(Command::Resume(args)) => switch::run(args.daemon, false),
        Some(Command::Status(args)) if args.fleet => fleet::status(&args),
        Some(Command::Status(args)) => switch::status(args),
        Some(Command::Ack(args)) => switch::ack(args),
        Some(Command::Revert(args)) => switch::revert(args),
        Some(Command::Report(args)) => report::run(args),
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
    let page = String::from_utf8(page)?;
    // One page ships: a subcommand is named as it is typed (its --help says the rest),
    // not as a page of its own that does not exist.
    let page = page
        .replace("(1)\n", "\n")
        .replace("nightmare\\-monkey\\-", "nightmare\\-monkey ");
    // The sections clap does not write, before the version.
    let page = match page.find("\n.SH VERSION") {
        Some(at) => format!(
            "{}\n{}{}",
            &page[..at],
            MAN_SECTIONS.trim_end(),
            &page[at..]
        ),
        None => format!("{page}{MAN_SECTIONS}"),
    };
    Ok(page.into_bytes())
}

/// The manual's own sections: files, configuration, API, exit status (roff).
const MAN_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/nightmare\-monkey/config.ron\fR
The configuration, given with \fB\-\-config\fR (RON, every field optional).
.TP
\fI/var/lib/nightmare\-monkey/journal.jsonl\fR
The journal (root's state directory; \fI~/.local/state/nightmare\-monkey\fR otherwise): every fault as JSON Lines, with \fIjournal.jsonl.checkpoint\fR (what a start reads) and the archives \fIjournal.jsonl\-<instant>\fR beside it.
.TP
\fI/var/lib/nightmare\-monkey/paused\fR
The pause file: while it exists, the monkey is paused and every fault in effect is reverted.
.TP
\fI/var/lib/nightmare\-monkey/sandbox/\fR
The state directory of \fBsandbox\fR (its journal and pause file), apart from the daemon's, so practice never counts in a real drill's budget or report.
.TP
\fI/usr/lib/nightmare\-monkey/plugins\fR, \fI/usr/local/lib/nightmare\-monkey/plugins\fR
Plugin files (*.so) loaded at start; owned by root, writable by no one else.
.SH CONFIGURATION
Top\-level fields: execute, seed, node, schedule (Uniform(min_interval, max_interval), Exponential(mean), Cron("...")), window (days, time, timezone, skip_dates), http (enabled, listen, token, token_file, tokens, allow_public_without_token, allowed_hosts, max_body_bytes, max_connections, header_timeout), timer (enabled, fault), faults, plugins, plugin_dirs, plugin_timeout, allow_untrusted_plugins, pollers, notifiers, state_dir, journal, journal_retention (rotate_at, keep, max_size), pause_file, budget (per_hour, per_day, min_gap). A config that names its faults arms only those. Every duration is seconds (90) or a duration ("5m", "1h30m"). \fBnightmare\-monkey check\-config FILE\fR checks a file; /usr/share/doc/nightmare\-monkey/guide/configuration.md describes every field.
.SH API
.TP
\fBPOST /api/kill\fR {"desc": "..."}
Injects the timer's fault: timer.fault, else process\-kill when configured (a config that names no fault has it alone), else the config's only fault; 404 when it names several and none for the timer; \fBPOST /api/faults/NAME\fR any configured one.
.TP
\fBGET /api/status\fR
Playing, sleeping or paused, the next fault, what is in effect, the budget left.
.TP
\fBGET /api/history\fR ?limit&since&until&before&run
The answer key, a page at a time.
.TP
\fBPOST /api/pause\fR, \fBPOST /api/resume\fR
The kill switch.
.TP
\fBGET /api/plugins\fR, \fBGET /metrics\fR, \fBGET /healthz\fR
Plugins and faults, Prometheus metrics, liveness (no token).
.PP
Every answer but the metrics is JSON; errors are {"code": N, "message": "..."}. With tokens configured, send Authorization: Bearer TOKEN.
.SH "EXIT STATUS"
0 success; 1 runtime failure (for example no eligible process, no daemon to reach); 2 usage, configuration or plugin error.
"#;

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
/// Writes `text` to `file` whole (a temporary file beside it, renamed over it: a reader
/// never sees half a report), or to stdout without one (`-o`).
fn emit(file: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    match file {
        None => print(text.as_bytes()),
        Some(path) => crate::support::state::write_atomic(path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display())),
    }
}

fn print(text: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
