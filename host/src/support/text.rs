//! Text that came from outside (a client's description, a process's name and command
//! line, a plugin's summary) on its way into a line of the log, the answer key or a chat
//! message: control characters are escaped so nobody can start a line of their own (a
//! forged `Kill:` line), and long text is cut so one process's 2 MB command line does
//! not flood a log or a channel.

use std::borrow::Cow;

/// `text` with every control character (and the Unicode line and paragraph separators)
/// written as an escape: `\n`, `\r`, `\t`, `\u{1b}`. Text without any is borrowed as is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (at a character boundary), with `…` and how much
/// was left out when it was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} more bytes)",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_start_a_line_of_its_own() {
        let forged = "x\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged";
        let escaped = escape_controls(forged);
        assert!(!escaped.contains('\n'));
        assert_eq!(
            escaped,
            "x\\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged"
        );
        assert_eq!(
            escape_controls("a\r\tb\u{1b}[31m\u{2028}\u{7f}"),
            "a\\r\\tb\\u{1b}[31m\\u{2028}\\u{7f}"
        );
        assert!(matches!(escape_controls("plain ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_so() {
        assert!(matches!(clip("short", 10), Cow::Borrowed("short")));
        assert_eq!(clip("abcdef", 4), "abcd… (2 more bytes)");
        // `é` is two bytes: a cut inside it moves back to its start.
        assert_eq!(clip("aé", 2), "a… (2 more bytes)");
        assert_eq!(clip("abcdef", 6), "abcdef");
    }
}
