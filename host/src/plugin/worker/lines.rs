//! What a worker writes, read as lines: each cut at a cap (a plugin that writes 200 MB
//! without a newline costs the daemon a few KiB), and a panic's report, which Rust
//! prints on several lines, folded into one.

/// Rust's report of a panic in a plugin (its own copy of std prints it, on several
/// lines) folded into one line, as the host's own panics are: where it panicked and the
/// message's first line; Rust's hint to set `RUST_BACKTRACE` is dropped, and a backtrace
/// (which only `RUST_BACKTRACE` asks for) goes on as it comes. Other lines pass as they
/// are; blank ones are dropped.
#[derive(Debug, Default)]
pub(super) struct PanicReports {
    /// The report being read: where it panicked, and the message's lines so far.
    open: Option<(String, Vec<String>)>,
}

impl PanicReports {
    /// The lines to say for `line`.
    pub(super) fn feed(&mut self, line: &str) -> Vec<String> {
        if let Some(at) = panicked_at(line) {
            let mut out = self.end();
            self.open = Some((at.to_owned(), Vec::new()));
            out.retain(|l| !l.is_empty());
            return out;
        }
        // Rust's hint follows only the first panic of a process: dropped, it tells
        // nothing the log does not.
        if line.starts_with("note: run with `RUST_BACKTRACE") {
            return self.end();
        }
        match &mut self.open {
            // The message's first line closes the report: what follows is its own line.
            Some((_, message)) => {
                message.push(line.to_owned());
                self.end()
            }
            None if line.trim().is_empty() => Vec::new(),
            None => vec![line.to_owned()],
        }
    }

    /// The report still open, as one line.
    pub(super) fn end(&mut self) -> Vec<String> {
        match self.open.take() {
            Some((at, message)) => vec![format!("panicked at {at} {}", message.join(" / "))],
            None => Vec::new(),
        }
    }
}

/// Where a panic report's first line says it panicked: `thread 'x' (12) panicked at
/// src/lib.rs:5:9:` gives `src/lib.rs:5:9:`.
fn panicked_at(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("thread '")?;
    rest.split_once("' ")
        .and_then(|(_, after)| after.split_once("panicked at "))
        .map(|(_, at)| at)
}

/// A line read from a worker, without its newline.
pub(super) struct Line {
    pub(super) bytes: Vec<u8>,
    /// It was longer than allowed: `bytes` holds its start.
    pub(super) cut: bool,
}

/// The next line of `reader`, at most `cap` bytes of it kept: the rest of a longer line
/// is read and dropped, or, with `give_up`, not read at all (the line ends there).
/// `None` at the end (or on an error).
pub(super) fn read_capped(
    reader: &mut impl std::io::BufRead,
    cap: usize,
    give_up: bool,
) -> Option<Line> {
    let mut bytes = Vec::new();
    let mut cut = false;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return any.then_some(Line { bytes, cut }),
        };
        if buf.is_empty() {
            return any.then_some(Line { bytes, cut });
        }
        any = true;
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = cap.saturating_sub(bytes.len());
        if chunk.len() > room {
            cut = true;
            bytes.extend_from_slice(&chunk[..room]);
        } else {
            bytes.extend_from_slice(chunk);
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() || (cut && give_up) {
            return Some(Line { bytes, cut });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_s_panic_report_is_one_line_and_a_backtrace_goes_on() {
        let mut reports = PanicReports::default();
        let mut said: Vec<String> = [
            "",
            "thread '<unnamed>' (3198) panicked at src/lib.rs:57:13:",
            "panicky always panics",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "a line of its own",
            // A second panic: no hint after it, and what follows is not swallowed.
            "thread 'x' panicked at src/a.rs:1:1:",
            "two",
            "lines",
            "after the second",
            "thread 'z' panicked at src/c.rs:3:3:",
            "with a backtrace",
            "stack backtrace:",
            "   0: f",
            "thread 'y' panicked at src/b.rs:2:2:",
        ]
        .iter()
        .flat_map(|l| reports.feed(l))
        .collect();
        said.extend(reports.end());
        assert_eq!(
            said,
            [
                "panicked at src/lib.rs:57:13: panicky always panics",
                "a line of its own",
                "panicked at src/a.rs:1:1: two",
                "lines",
                "after the second",
                "panicked at src/c.rs:3:3: with a backtrace",
                "stack backtrace:",
                "   0: f",
                "panicked at src/b.rs:2:2: ",
            ]
        );
        assert_eq!(
            panicked_at("thread 'main' panicked at x.rs:1:2:"),
            Some("x.rs:1:2:")
        );
        assert_eq!(panicked_at("threads panicked at"), None);
    }

    #[test]
    fn lines_are_read_cut_at_their_cap() {
        let text = b"short\nlonger than ten bytes\nend";
        let mut reader = std::io::BufReader::with_capacity(4, &text[..]);
        let mut lines = Vec::new();
        while let Some(line) = read_capped(&mut reader, 10, false) {
            lines.push((String::from_utf8(line.bytes).unwrap(), line.cut));
        }
        assert_eq!(
            lines,
            [
                ("short".to_owned(), false),
                ("longer tha".to_owned(), true),
                ("end".to_owned(), false)
            ]
        );
        // Giving up: the line ends at the cap, without reading the rest (an endless
        // line without a newline cannot hold the reader).
        let mut endless = std::io::BufReader::with_capacity(4, std::io::repeat(b'a'));
        let line = read_capped(&mut endless, 10, true).unwrap();
        assert!(line.cut && line.bytes.len() == 10);
    }
}
