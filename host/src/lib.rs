//! The nightmare-monkey host as a library: what the `nightmare-monkey` binary runs, and
//! what the benchmark harness (`bench/`) drives in-process. Not a stable API: plugins
//! depend on `nightmare-monkey-plugin-api`, never on this crate.
//!
//! The layers, from the top down (ARCHITECTURE.md has the map): `commands` and `cli`;
//! `runtime` (the daemon's process); `config` (assembles every component's settings);
//! `triggers` (timer, HTTP, pollers: they only ask); `dispatch` (the one door: admission,
//! deadline, refusals, what follows a fault); `engine` (guards, journal, seed streams);
//! `plugin` (the ABI boundary), `probe` (checks of the system under drill) and `output`
//! (log, metrics, notifiers), side by side; `storage` (the journal and what is read
//! back from it); `domain` (the record and the rules); `support`. Arrows point down only: `tests/it/house.rs` checks it.

mod cli;
mod commands;
mod config;
mod dispatch;
pub mod domain;
pub mod engine;
mod fleet;
mod output;
pub mod plugin;
mod probe;
mod runtime;
pub mod storage;
mod support;
mod triggers;

use std::process::ExitCode;

use clap::Parser as _;

/// The first line of clap's report of a usage error, without its `error: `.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

use crate::support::UsageError;

/// Parses the command line, runs it and maps the outcome to the exit code: 0 done,
/// 1 a runtime failure, 2 a usage or configuration error.
pub fn main() -> ExitCode {
    one_line_panics();
    let before = runtime::stop::block_at_birth();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error where JSON was asked for: the script gets it as JSON too
            // (clap's own lines stay on stderr). Help and --version are not errors.
            if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                println!("{}", error_json(&clap_message(&e), 2));
            }
            e.exit()
        }
    };
    // The daemon and the sandbox's init read the stop signals; every other command
    // leaves them to the kernel, as a command line tool does (Ctrl-C ends it).
    if !cli.reads_stop_signals() {
        runtime::stop::unblock_at_birth(before);
    }
    let json = cli.wants_json();
    let result = commands::run(cli);
    // The daemon's last lines are queued: written before the exit, unless stderr is
    // not read at all (then the exit does not wait for it long).
    let flush = || output::log::flush(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => {
            flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Several configuration errors come one a line; each gets the prefix.
            for line in format!("{e:#}").lines() {
                output::log::raw(&format!("error: {line}\n"));
            }
            flush();
            let code: u8 = if e.is::<UsageError>() { 2 } else { 1 };
            // Asked for JSON, a script gets its error as JSON too, on stdout.
            if json {
                println!("{}", error_json(&format!("{e:#}"), code));
            }
            ExitCode::from(code)
        }
    }
}

/// An error as `--json` modes print it: `{"error": {"code": N, "message": "..."}}`, the
/// exit code and every line of the message.
fn error_json(message: &str, code: u8) -> serde_json::Value {
    let lines: Vec<&str> = message.lines().collect();
    serde_json::json!({ "error": { "code": code, "message": lines.join("; "), "lines": lines } })
}

/// A panic (a bug of ours, or of a plugin linked in: the SDK catches it at the
/// boundary) is one line of the log, at `error`, in the log's format, not a message and
/// a backtrace over many; `RUST_BACKTRACE` set keeps Rust's own report.
fn one_line_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        output::log::error(panic_line(&info.to_string()));
        // A panic may end the process: its line is written first, if stderr is read.
        output::log::flush(std::time::Duration::from_millis(200));
    }));
}

/// The log line of a panic whose report is `report`.
fn panic_line(report: &str) -> String {
    format!("panic: {}", support::text::escape_controls(report))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_json_error_carries_the_code_and_every_line() {
        assert_eq!(
            super::error_json("a:1:2: bad\na:3:4: worse", 2),
            serde_json::json!({"error": {"code": 2, "message": "a:1:2: bad; a:3:4: worse", "lines": ["a:1:2: bad", "a:3:4: worse"]}})
        );
    }

    #[test]
    fn a_panic_is_one_line() {
        let line = super::panic_line("panicked at src/x.rs:1:2:\nboom");
        assert_eq!(line, "panic: panicked at src/x.rs:1:2:\\nboom");
        assert!(!line.contains('\n'));
    }
}
