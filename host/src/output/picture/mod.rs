//! Pictures instead of logs: the drill's timeline (`timeline`) and the plan's week grid
//! (`week`) as SVG, the self-contained HTML pages around them (`page`), and what they
//! share: escaping, the verdicts' marks, times in the window's zone.
//!
//! Everything is drawn here, in the binary, as text: no script, no font, no image and
//! nothing fetched, so a file works offline, opens years later and prints. An SVG uses
//! no `id` (two of them embedded in one page would clash) and only classes prefixed
//! `nm-`, so that its inner `<style>` cannot restyle the page it is embedded in.

pub mod page;
pub mod timeline;
pub mod week;

use std::{borrow::Cow, fmt::Write as _};

use chrono::{DateTime, Utc};

use crate::{
    domain::window::Zone,
    storage::report::{Row, Verdict},
    support::text::escape_controls,
};

/// `text` safe inside HTML or SVG, as element content and as a quoted attribute: its
/// control characters written as escapes first (`\u{1b}`: a terminal's colour codes are
/// shown, not obeyed, and XML allows no control character anyway), then `& < > " '` as
/// entities. Text without any is borrowed as is.
pub fn escape_html(text: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '&' | '<' | '>' | '"' | '\'' | '\u{fffe}' | '\u{ffff}');
    let text = escape_controls(text);
    if !text.contains(special) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Not characters XML allows.
            '\u{fffe}' | '\u{ffff}' => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The opening of a standalone or embedded SVG: its namespace, a `viewBox` of
/// `width` x `height`, the full width of its container, an accessible name, a `<title>`
/// and the shared style with `style` after it.
pub(crate) fn svg_open(width: f64, height: f64, label: &str, style: &str) -> String {
    let label = escape_html(label);
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{label}" class="nm-svg"><title>{label}</title><style>{SVG_STYLE}{style}</style>"#
    )
}

/// The style every picture shares: text, and the verdicts' marks.
const SVG_STYLE: &str = ".nm-svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#222}\
.nm-svg .nm-h{font-size:13px;font-weight:bold}\
.nm-svg .nm-small{font-size:9px;fill:#555}\
.nm-m{stroke:#222;stroke-width:1}\
.nm-coped{fill:#009e73}.nm-late{fill:#e69f00}.nm-notrec{fill:#d55e00}\
.nm-undet{fill:#cc79a7}.nm-unjudged{fill:#fff;stroke:#777}\
.nm-svg .nm-l{font-size:8px;font-weight:bold;text-anchor:middle;fill:#fff}\
.nm-svg .nm-ld{font-size:8px;font-weight:bold;text-anchor:middle;fill:#222}";

/// How a fault is marked: a colour, a shape and a letter, so that colour is never the
/// only cue (print in black and white, colour-blind readers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Coped: a green circle, C.
    Coped,
    /// Recovered late: an orange diamond, L.
    Late,
    /// Not recovered: a red square, N.
    NotRecovered,
    /// Undetected: a pink triangle, U.
    Undetected,
    /// Not judged: a hollow circle, with D (dry run), F (failed), V (vanished) or ?
    /// (never finished).
    NotJudged(char),
}

impl Mark {
    /// The mark of a report's row.
    pub fn of(row: &Row) -> Self {
        match row.verdict {
            Verdict::Coped => Mark::Coped,
            Verdict::Late => Mark::Late,
            Verdict::NotRecovered => Mark::NotRecovered,
            Verdict::Undetected => Mark::Undetected,
            Verdict::NotJudged => Mark::NotJudged(match row.result.as_str() {
                "dry-run" => 'D',
                "failed" => 'F',
                "vanished" => 'V',
                "unfinished" => '?',
                // Refused by its plugin, or a result this version does not know.
                _ => '-',
            }),
        }
    }

    /// Its class (colour).
    pub fn class(self) -> &'static str {
        match self {
            Mark::Coped => "nm-coped",
            Mark::Late => "nm-late",
            Mark::NotRecovered => "nm-notrec",
            Mark::Undetected => "nm-undet",
            Mark::NotJudged(_) => "nm-unjudged",
        }
    }

    /// Its letter.
    pub fn letter(self) -> char {
        match self {
            Mark::Coped => 'C',
            Mark::Late => 'L',
            Mark::NotRecovered => 'N',
            Mark::Undetected => 'U',
            Mark::NotJudged(c) => c,
        }
    }

    /// Its words, for legends and tables.
    pub fn words(self) -> &'static str {
        match self {
            Mark::Coped => "coped",
            Mark::Late => "recovered late",
            Mark::NotRecovered => "not recovered",
            Mark::Undetected => "undetected",
            Mark::NotJudged('D') => "not judged: dry run",
            Mark::NotJudged('F') => "not judged: failed",
            Mark::NotJudged('V') => "not judged: vanished",
            Mark::NotJudged('?') => "not judged: unfinished",
            Mark::NotJudged(_) => "not judged",
        }
    }

    /// The mark centred on (`x`, `y`), 12 units across, with its letter inside when
    /// `letter`.
    pub fn draw(self, out: &mut String, x: f64, y: f64, letter: bool) {
        let class = self.class();
        let _ = match self {
            Mark::Coped | Mark::NotJudged(_) => write!(
                out,
                r#"<circle class="nm-m {class}" cx="{x:.1}" cy="{y:.1}" r="6"/>"#
            ),
            Mark::Late => write!(
                out,
                r#"<path class="nm-m {class}" d="M{x:.1} {:.1}l7 7-7 7-7-7z"/>"#,
                y - 7.0
            ),
            Mark::NotRecovered => write!(
                out,
                r#"<rect class="nm-m {class}" x="{:.1}" y="{:.1}" width="11" height="11"/>"#,
                x - 5.5,
                y - 5.5
            ),
            Mark::Undetected => write!(
                out,
                r#"<path class="nm-m {class}" d="M{:.1} {:.1}h14l-7 12z"/>"#,
                x - 7.0,
                y - 6.0
            ),
        };
        if letter {
            let dark = matches!(self, Mark::Late | Mark::NotJudged(_));
            let _ = write!(
                out,
                r#"<text class="{}" x="{x:.1}" y="{:.1}">{}</text>"#,
                if dark { "nm-ld" } else { "nm-l" },
                // The triangle's centre of mass sits higher than its box's.
                if self == Mark::Undetected {
                    y + 1.0
                } else {
                    y + 3.0
                },
                self.letter()
            );
        }
    }

    /// Every kind, for the legends.
    pub const LEGEND: [Mark; 5] = [
        Mark::Coped,
        Mark::Late,
        Mark::NotRecovered,
        Mark::Undetected,
        Mark::NotJudged('D'),
    ];
}

/// The wall-clock time of `at` in `zone`, formatted.
pub(crate) fn local(zone: &Zone, at: DateTime<Utc>, format: &str) -> String {
    zone.naive(at).format(format).to_string()
}

/// A count with thousands separated, as the pictures' notes write them: `12,345`.
pub(crate) fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_shown_not_obeyed() {
        assert_eq!(
            escape_html("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(
            escape_html("a\"b&c\n<img src=x>"),
            "a&quot;b&amp;c\\n&lt;img src=x&gt;"
        );
        assert_eq!(escape_html("\u{fffe}"), "\\u{fffe}");
        assert!(matches!(escape_html("api-server(PID:1)"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_verdict_has_its_own_shape_and_letter() {
        let mut seen = std::collections::HashSet::new();
        for mark in Mark::LEGEND {
            let mut out = String::new();
            mark.draw(&mut out, 10.0, 10.0, true);
            let shape = out.split(' ').next().unwrap_or_default().to_owned();
            assert!(out.contains(mark.class()), "{out}");
            assert!(out.contains(&format!(">{}</text>", mark.letter())), "{out}");
            seen.insert((shape, mark.letter()));
        }
        assert_eq!(seen.len(), Mark::LEGEND.len());
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(2_000), "2,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
