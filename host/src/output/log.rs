//! The daemon's log on stderr. By default the original's plain lines,
//! `YYYY/MM/DD HH:MM:SS message`, as Go's `log` wrote them; with `--log-format json`, one
//! JSON object a line with the same facts (`time`, `level`, `message`, and for a fault
//! its fields), for journald, Loki and the like. `RUST_LOG` sets the level as usual
//! (`error`, `warn`, `info`, `debug`, `off`; `nightmare_monkey=warn` works too).
//!
//! In the daemon ([`start_writer`]) no thread that serves the API, the switch, a revert,
//! recovery or shutdown ever waits for stderr: lines go into a bounded queue that one
//! writer thread empties. When nobody reads stderr (a paused terminal, a blocking
//! container log driver, a hung journald) the queue fills and further lines are
//! dropped, counted (`nightmare_monkey_log_lines_dropped_total`), and said in one line
//! when the writer catches up. Commands write in line: a person waits for them.

use std::{
    fmt::Display,
    io::Write as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Condvar, Mutex, OnceLock,
    },
    time::Duration,
};

use chrono::Local;
use serde_json::{json, Map, Value};

use crate::{domain::injection::Injection, output::logline};

/// How lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The original's plain lines.
    #[default]
    Plain,
    /// One JSON object a line.
    Json,
}

/// How much is written; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    Off,
    /// Something failed.
    Error,
    /// Something is wrong but the monkey goes on.
    Warn,
    /// What the monkey does: the default.
    Info,
    /// More.
    Debug,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Level::Off),
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The level a `RUST_LOG` value sets for this program: its own directive
/// (`nightmare_monkey=LEVEL`) if any, else a bare level, else `info`. Directives for
/// other crates are ignored (there are no other logs to filter).
pub fn level_from_env(value: Option<&str>) -> Level {
    let Some(value) = value else {
        return Level::Info;
    };
    let mut bare = None;
    for directive in value.split(',') {
        match directive.split_once('=') {
            Some((target, level)) if target.trim().replace('-', "_") == "nightmare_monkey" => {
                if let Some(level) = Level::parse(level) {
                    return level;
                }
            }
            Some(_) => {}
            None => bare = Level::parse(directive).or(bare),
        }
    }
    bare.unwrap_or(Level::Info)
}

static SETTINGS: OnceLock<(Format, Level)> = OnceLock::new();

/// Sets the format, and the level from `RUST_LOG`; the first call wins. Without it,
/// plain lines at `info`.
pub fn init(format: Format) {
    let level = level_from_env(std::env::var("RUST_LOG").ok().as_deref());
    let _ = SETTINGS.set((format, level));
}

fn settings() -> (Format, Level) {
    *SETTINGS.get_or_init(|| {
        (
            Format::Plain,
            level_from_env(std::env::var("RUST_LOG").ok().as_deref()),
        )
    })
}

/// Writes a whole text in one write: stderr is unbuffered, and a line written piece by
/// piece costs a system call a piece and could interleave with another thread's.
fn write_now(text: &str) {
    // A closed stderr must not take the daemon down; there is nowhere to report it.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Hands a text to the writer thread if there is one (dropping it if its queue is
/// full), else writes it in line.
fn write(text: &str) {
    if WRITER.load(Ordering::SeqCst) {
        QUEUE.push(text);
    } else {
        write_now(text);
    }
}

/// The most the queue holds, in bytes: some thousands of lines, enough for a burst
/// while stderr is slow (a line is 100 to 400 bytes); past it lines are dropped, not
/// waited for.
const QUEUE_BYTES: usize = 256 * 1024;

/// How long the writer stays awake after a write before it waits for the next line:
/// the most a line waits in the queue while lines keep coming.
const LINGER: Duration = Duration::from_millis(2);

/// The lines waiting for the writer thread.
struct Queue {
    waiting: Mutex<Waiting>,
    /// Told when a line is queued (the writer waits on it).
    queued: Condvar,
    /// Told when the writer has written all it took (a flush waits on it).
    written: Condvar,
}

struct Waiting {
    /// Whole lines, in order.
    text: String,
    /// Lines dropped since the writer last said so.
    dropped: u64,
    /// Whether the writer is writing what it took.
    writing: bool,
    /// Whether the writer waits for a line (only then is it woken: a line queued while
    /// it writes is taken with the next batch).
    asleep: bool,
    /// How many wait for everything queued to be written.
    flushing: usize,
}

static QUEUE: Queue = Queue {
    waiting: Mutex::new(Waiting {
        text: String::new(),
        dropped: 0,
        writing: false,
        asleep: false,
        flushing: 0,
    }),
    queued: Condvar::new(),
    written: Condvar::new(),
};

/// Whether the writer thread runs (lines are queued for it).
static WRITER: AtomicBool = AtomicBool::new(false);

impl Queue {
    fn push(&self, text: &str) {
        let mut waiting = crate::support::lock::lock(&self.waiting);
        if waiting.text.len() + text.len() > QUEUE_BYTES {
            waiting.dropped += 1;
            drop(waiting);
            crate::output::metrics::get().log_line_dropped();
            return;
        }
        waiting.text.push_str(text);
        let asleep = waiting.asleep;
        drop(waiting);
        if asleep {
            self.queued.notify_one();
        }
    }

    /// The writer thread: takes everything queued, writes it in one go (blocking as
    /// long as stderr does), then says how many lines were dropped meanwhile.
    fn write_forever(&self) {
        loop {
            let mut waiting = crate::support::lock::lock(&self.waiting);
            while waiting.text.is_empty() && waiting.dropped == 0 {
                waiting.asleep = true;
                waiting = self.queued.wait(waiting).unwrap_or_else(|p| p.into_inner());
                waiting.asleep = false;
            }
            let text = std::mem::take(&mut waiting.text);
            let dropped = std::mem::take(&mut waiting.dropped);
            waiting.writing = true;
            drop(waiting);
            write_now(&text);
            if dropped > 0 {
                let said = format!(
                    "{dropped} log {} dropped: stderr was not read, and the monkey never waits for it (nightmare_monkey_log_lines_dropped_total counts them)",
                    if dropped == 1 { "line" } else { "lines" }
                );
                let said = match settings().0 {
                    Format::Plain => format!("warning: {said}"),
                    Format::Json => said,
                };
                if let Some(line) = render(Level::Warn, &said, Map::new()) {
                    write_now(&line);
                }
            }
            let mut waiting = crate::support::lock::lock(&self.waiting);
            waiting.writing = false;
            let flushing = waiting.flushing > 0;
            let more = !waiting.text.is_empty();
            drop(waiting);
            if flushing {
                self.written.notify_all();
            } else if !more {
                // Lines come in bursts (two a fault, a fault after another under load):
                // lingering a moment lets the next ones gather, where waiting for them
                // would be woken for every line. Idle, the writer then waits for good.
                std::thread::sleep(LINGER);
            }
        }
    }

    /// Waits until everything queued is written, at most `wait`.
    fn flush(&self, wait: Duration) {
        let mut waiting = crate::support::lock::lock(&self.waiting);
        waiting.flushing += 1;
        let (mut waiting, _) = self
            .written
            .wait_timeout_while(waiting, wait, |w| {
                !w.text.is_empty() || w.dropped > 0 || w.writing
            })
            .unwrap_or_else(|p| p.into_inner());
        waiting.flushing -= 1;
    }
}

/// From now on, lines go through a bounded queue to one writer thread (the daemon);
/// the first call starts it. Without a thread for it, lines are written in line.
pub fn start_writer() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("log".to_owned())
            .spawn(|| QUEUE.write_forever());
        match started {
            Ok(_) => WRITER.store(true, Ordering::SeqCst),
            Err(e) => write_now(&format!(
                "warning: cannot start the log's writer ({e}); writing in line\n"
            )),
        }
    });
}

/// Writes `text` as it is (a command's closing `error: ...` lines), after every line
/// logged before it, through the queue when the writer runs.
pub fn raw(text: &str) {
    write(text);
}

/// Waits until every line logged so far is written, at most `wait` (before an exit or
/// an exec, which would lose what is queued).
pub fn flush(wait: Duration) {
    if WRITER.load(Ordering::SeqCst) {
        QUEUE.flush(wait);
    }
}

/// A line as written, in the format set; `None` below the level set.
fn render(level: Level, message: &str, fields: Map<String, Value>) -> Option<String> {
    let (format, max) = settings();
    if level > max {
        return None;
    }
    let now = Local::now();
    Some(match format {
        Format::Plain => {
            let mut line = String::with_capacity(message.len() + 21);
            push_plain(&mut line, &now, message);
            line
        }
        Format::Json => {
            let mut object = Map::new();
            object.insert("time".into(), json!(now.to_rfc3339()));
            object.insert("level".into(), json!(level.name()));
            object.insert("message".into(), json!(message));
            object.extend(fields);
            format!("{}\n", Value::Object(object))
        }
    })
}

/// Appends `message` as a plain line of `now`: the original's timestamp, a space, the
/// message and the end of the line.
fn push_plain(text: &mut String, now: &chrono::DateTime<Local>, message: &str) {
    logline::push_timestamp(text, now);
    text.push(' ');
    text.push_str(message);
    text.push('\n');
}

fn emit(level: Level, message: &str, fields: Map<String, Value>) {
    if let Some(line) = render(level, message, fields) {
        write(&line);
    }
}

/// Writes one line at `info`; a message that starts with `warning: ` is a warning (the
/// plain line keeps the prefix, the JSON object says it in its level).
pub fn line(message: impl Display) {
    let message = message.to_string();
    match message.strip_prefix("warning: ") {
        Some(rest) if settings().0 == Format::Json => emit(Level::Warn, rest, Map::new()),
        Some(_) => emit(Level::Warn, &message, Map::new()),
        None => emit(Level::Info, &message, Map::new()),
    }
}

/// Writes one line at `error`.
pub fn error(message: impl Display) {
    emit(Level::Error, &message.to_string(), Map::new());
}

/// The lines of an injection: the original's two plain lines, or one JSON object with
/// the fault's fields; `None` below the level set. Rendered where the fault ran (a
/// blocking thread, not the API's one async thread) and written with [`raw`].
pub fn injection_text(injection: &Injection) -> Option<String> {
    let fault = logline::fault_line(injection);
    let result = logline::result_line(injection);
    match settings().0 {
        // Both lines at once: one clock reading, one hand-off to the writer.
        Format::Plain if Level::Info <= settings().1 => {
            let now = Local::now();
            let mut lines = String::with_capacity(fault.len() + result.len() + 42);
            push_plain(&mut lines, &now, &fault);
            push_plain(&mut lines, &now, &result);
            Some(lines)
        }
        Format::Plain => None,
        Format::Json => {
            let (intent, outcome) = (&injection.intent, &injection.outcome);
            let mut fields = Map::new();
            fields.insert("event".into(), json!("fault"));
            fields.insert("id".into(), json!(intent.id));
            fields.insert("fault".into(), json!(intent.fault));
            fields.insert("trigger".into(), json!(intent.trigger));
            fields.insert("desc".into(), json!(intent.desc));
            fields.insert("dry_run".into(), json!(intent.dry_run));
            fields.insert("seed".into(), json!(intent.seed));
            fields.insert("result".into(), json!(outcome.result));
            fields.insert("summary".into(), json!(outcome.summary));
            if let Some(process) = &outcome.process {
                fields.insert("process".into(), json!(process));
            }
            if let Some(signal) = &outcome.signal {
                fields.insert("signal".into(), json!(signal));
            }
            if let Some(due) = injection.revert_due {
                fields.insert("revert_due".into(), json!(due.to_rfc3339()));
            }
            render(Level::Info, &fault, fields)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_sets_the_level() {
        assert_eq!(level_from_env(None), Level::Info);
        assert_eq!(level_from_env(Some("warn")), Level::Warn);
        assert_eq!(level_from_env(Some("OFF")), Level::Off);
        assert_eq!(level_from_env(Some("hyper=debug,error")), Level::Error);
        assert_eq!(
            level_from_env(Some("debug,nightmare_monkey=warn")),
            Level::Warn
        );
        assert_eq!(level_from_env(Some("nightmare-monkey=error")), Level::Error);
        assert_eq!(level_from_env(Some("nonsense")), Level::Info);
        assert!(Level::Warn < Level::Info && Level::Error < Level::Warn);
    }
}
