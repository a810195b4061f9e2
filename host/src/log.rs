//! The daemon's log: the original's plain lines, `YYYY/MM/DD HH:MM:SS message`, on
//! stderr as Go's `log` wrote them.

use std::{fmt::Display, io::Write as _};

use chrono::Local;

use crate::logline;

/// Writes one log line.
pub fn line(message: impl Display) {
    let mut err = std::io::stderr().lock();
    // A closed stderr must not take the daemon down; there is nowhere to report it.
    let _ = writeln!(err, "{} {message}", logline::timestamp(&Local::now()));
}
