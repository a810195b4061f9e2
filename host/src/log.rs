//! The daemon's log: the original's plain lines, `YYYY/MM/DD HH:MM:SS message`, on
//! stderr as Go's `log` wrote them.

use std::{fmt::Display, io::Write as _};

use chrono::Local;

use crate::logline;

/// Writes one log line, in one write: stderr is unbuffered, and lines written piece by
/// piece cost a system call each piece and could interleave with another thread's.
pub fn line(message: impl Display) {
    let text = format!("{} {message}\n", logline::timestamp(&Local::now()));
    // A closed stderr must not take the daemon down; there is nowhere to report it.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
