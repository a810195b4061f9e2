//! Text that came from outside (a client's description, a process's name and command
//! line, a plugin's summary) on its way into a line of the log, the answer key or a chat
//! message: control characters are escaped so nobody can start a line of their own (a
//! forged `Kill:` line), and long text is cut so one process's 2 MB command line does
//! not flood a log or a channel.

use std::borrow::Cow;

/// `text` with every control character, the Unicode line and paragraph separators, and
/// the invisible format characters that reorder or hide text (bidi overrides and
/// isolates such as U+202E and U+2066, zero-width characters, the byte order mark)
/// written as an escape: `\n`, `\r`, `\t`, `\u{1b}`, `\u{202e}`. A name shown reversed
/// or with hidden parts could pass for another. Text without any is borrowed as is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || hides_or_reorders(c);
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

/// Whether `c` is a separator or an invisible format character that changes how the
/// text around it reads (Unicode's bidi controls, zero-width characters, invisible
/// operators, the byte order mark).
fn hides_or_reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// `text` for a Markdown document, inside a line (a table's cell, a list item's text):
/// controls escaped as above, then what could start markup behind a backslash, so a
/// name is read as text, never as a link or an image (`[`, `]`), an autolink (`<`,
/// `https\://`, `www\.`, `a\@b.c`), HTML, an entity (`&#8238;` would be U+202E again),
/// emphasis, code or a table cell's end. The rest stays as it is: `sleep(PID:12)` reads
/// the same raw and rendered.
pub fn escape_markdown(text: &str) -> String {
    let text = escape_controls(text);
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        let rest = &text[i + c.len_utf8()..];
        let before = &text[..i];
        let starts_link = match c {
            ':' => rest.starts_with("//"),
            '.' => before.to_ascii_lowercase().ends_with("www"),
            _ => "\\`*_[]<>|~&@".contains(c),
        };
        if starts_link {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

/// How much of a command line the monkey keeps anywhere: answers, journal, log, chat.
pub const CMDLINE_SHOWN: usize = 300;

/// A command line cut to [`CMDLINE_SHOWN`] bytes as [`clip`] cuts; one cut already is
/// left as it is, so that it may pass through this again on its way out.
pub fn clip_cmdline(text: &str) -> Cow<'_, str> {
    let cut_already = text.rsplit_once("… (").is_some_and(|(kept, marker)| {
        kept.len() <= CMDLINE_SHOWN
            && marker
                .strip_suffix(" more bytes)")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if cut_already {
        return Cow::Borrowed(text);
    }
    clip(text, CMDLINE_SHOWN)
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
    fn characters_that_reorder_or_hide_text_are_escaped() {
        // "evil\u{202e}gpj.exe" shows as "evilexe.jpg".
        assert_eq!(
            escape_controls("evil\u{202e}gpj.exe"),
            "evil\\u{202e}gpj.exe"
        );
        assert_eq!(
            escape_controls("a\u{2066}b\u{2069}c\u{200b}d\u{feff}e\u{061c}f"),
            "a\\u{2066}b\\u{2069}c\\u{200b}d\\u{feff}e\\u{61c}f"
        );
        // Letters of right-to-left scripts are text, not controls.
        assert!(matches!(escape_controls("שלום مرحبا"), Cow::Borrowed(_)));
    }

    #[test]
    fn markdown_reads_a_name_as_text() {
        assert_eq!(
            escape_markdown("![x](https://evil/p.png) <b>"),
            "!\\[x\\](https\\://evil/p.png) \\<b\\>"
        );
        assert_eq!(
            escape_markdown("WWW.evil.com|*a*_b_`c`~d~"),
            "WWW\\.evil.com\\|\\*a\\*\\_b\\_\\`c\\`\\~d\\~"
        );
        assert_eq!(escape_markdown("mail@evil.com"), "mail\\@evil.com");
        assert_eq!(escape_markdown("sleep\n"), "sleep\\\\n");
        assert_eq!(escape_markdown("&#8238;"), "\\&#8238;");
        // What cannot start markup stays as it is.
        assert_eq!(
            escape_markdown("api-server(PID:101) alertmanager:DbDown 1.5"),
            "api-server(PID:101) alertmanager:DbDown 1.5"
        );
    }

    #[test]
    fn a_command_line_is_cut_once() {
        let long = "a".repeat(1000);
        let once = clip_cmdline(&long).into_owned();
        assert_eq!(once, format!("{}… (700 more bytes)", "a".repeat(300)));
        assert_eq!(clip_cmdline(&once), once);
        assert!(matches!(clip_cmdline("sleep 1000"), Cow::Borrowed(_)));
        // Text that only looks cut at its end is cut all the same.
        let forged = format!("{}… (1 more bytes)", "b".repeat(400));
        assert!(clip_cmdline(&forged).len() < forged.len());
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

/// Serialises an instant as chrono does (RFC 3339, `Z` for UTC, as many fraction digits
/// as it needs), in one string: chrono's own `Serialize` hands serde_json one character
/// at a time, each escaped on its own (a tenth of a journal record's cost).
pub fn rfc3339<Tz, S>(at: &chrono::DateTime<Tz>, serializer: S) -> Result<S::Ok, S::Error>
where
    Tz: chrono::TimeZone,
    Tz::Offset: std::fmt::Display,
    S: serde::Serializer,
{
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod rfc3339_tests {
    use chrono::{DateTime, FixedOffset, TimeZone as _, Utc};

    #[derive(serde::Serialize)]
    struct Ours<Tz: chrono::TimeZone>(#[serde(serialize_with = "super::rfc3339")] DateTime<Tz>)
    where
        Tz::Offset: std::fmt::Display;

    #[test]
    fn instants_serialise_as_chrono_serialises_them() {
        let plus_two = FixedOffset::east_opt(7200).unwrap();
        for (secs, nanos) in [
            (0, 0),
            (1_800_000_000, 1),
            (1_800_000_000, 120_000_000),
            (1_800_000_000, 123_456_000),
            (1_800_000_000, 999_999_999),
            (-86_400 * 365 * 2_000, 500),
        ] {
            let utc = Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(
                serde_json::to_string(&Ours(utc)).unwrap(),
                serde_json::to_string(&utc).unwrap()
            );
            let local = utc.with_timezone(&plus_two);
            assert_eq!(
                serde_json::to_string(&Ours(local)).unwrap(),
                serde_json::to_string(&local).unwrap()
            );
        }
    }
}
