//! Reading a file's text into `RawConfig`, past the errors in its values. serde stops at
//! the first one, so the setting in error is blanked out of a copy of the text (its bytes
//! become spaces, so every position after it still holds) and the copy is read again,
//! until it reads: a typo or a wrong type at any level hides nothing else of the file.
//! A syntax error ends the reading (what follows it cannot be told apart), with the errors
//! found before it. Each error is one line at `file:line:col`, naming the setting
//! (`budget.per_hour: expected an integer`) unless RON's message names it already.

use std::{ops::Range, path::Path};

use ron::error::{Error as RonError, Position};

use super::{ConfigErrors, RawConfig};

/// Settings in error blanked out, at most, before the file is given up on.
const MAX_ERRORS: usize = 64;

/// How the files are read: plain values for options, and `Qiita(item_id: ..)` rather than
/// `Qiita((item_id: ..))`.
fn options() -> ron::Options {
    ron::Options::default().with_default_extension(
        ron::extensions::Extensions::IMPLICIT_SOME
            | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
    )
}

/// Reads `text`, which [`readable`] returned, as the file as written.
pub(super) fn raw<'a>(path: &Path, text: &'a str) -> Result<RawConfig<'a>, ConfigErrors> {
    options()
        .from_str::<RawConfig>(text)
        .map_err(|e| ConfigErrors(vec![located(path, &e.span.start, &e.code.to_string())]))
}

/// The file's text with every setting in error blanked out, and those errors; `Err` with
/// every error found when the file cannot be read on (a syntax error).
pub(super) fn readable(path: &Path, text: &str) -> Result<(String, Vec<String>), ConfigErrors> {
    let mut text = text.to_owned();
    let mut errors = Vec::new();
    loop {
        let Err(e) = options().from_str::<RawConfig>(&text) else {
            return Ok((text, errors));
        };
        if !in_value(&e.code) {
            // Syntax: nothing after it can be read. Whatever RON expected at the very
            // end (a comma, a `)`), the file stopped too soon.
            let at_end = offset(&text, &e.span.start) >= text.trim_end().len();
            let code = if at_end { &RonError::Eof } else { &e.code };
            errors.push(located(path, &e.span.start, &syntax(code)));
            return Err(ConfigErrors(errors));
        }
        let item = item_at(&text, offset(&text, &e.span.start));
        errors.push(located(
            path,
            &e.span.start,
            &message(&e.code, item.as_ref().map(|i| i.path.as_str())),
        ));
        match item {
            Some(item) if errors.len() < MAX_ERRORS && blank(&mut text, item.range.clone()) => {}
            _ => return Err(ConfigErrors(errors)),
        }
    }
}

fn located(path: &Path, at: &Position, message: &str) -> String {
    format!("{}:{}:{}: {message}", path.display(), at.line, at.col)
}

/// Whether the error is in a value that is otherwise well-formed RON (a wrong type, an
/// unknown field or variant), so that the text goes on after it; the rest are syntax.
fn in_value(code: &RonError) -> bool {
    matches!(
        code,
        RonError::Message(_)
            | RonError::ExpectedArray
            | RonError::ExpectedBoolean
            | RonError::ExpectedChar
            | RonError::ExpectedFloat
            | RonError::ExpectedInteger
            | RonError::ExpectedOption
            | RonError::ExpectedMap
            | RonError::ExpectedDifferentStructName { .. }
            | RonError::ExpectedStructLike
            | RonError::ExpectedNamedStructLike(_)
            | RonError::ExpectedUnit
            | RonError::ExpectedString
            | RonError::ExpectedByteString
            | RonError::ExpectedIdentifier
            | RonError::IntegerOutOfBounds
            | RonError::InvalidValueForType { .. }
            | RonError::ExpectedDifferentLength { .. }
            | RonError::NoSuchEnumVariant { .. }
            | RonError::NoSuchStructField { .. }
            | RonError::MissingStructField { .. }
            | RonError::DuplicateStructField { .. }
            | RonError::ExpectedRawValue
    )
}

/// A syntax error's text: RON's own words, or what to look for where they say little.
fn syntax(code: &RonError) -> String {
    match code {
        RonError::Eof => {
            "the file ends inside the configuration: a `(`, `[`, `{` or `\"` is not closed"
                .to_owned()
        }
        RonError::TrailingCharacters => {
            "text after the configuration's closing `)`: a file holds one configuration `(...)`"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// The error's text: what was expected, after the setting's path where RON's own words
/// do not name it.
fn message(code: &RonError, path: Option<&str>) -> String {
    let what = match code {
        // These name the field or the variant already.
        RonError::NoSuchEnumVariant { .. }
        | RonError::NoSuchStructField { .. }
        | RonError::MissingStructField { .. }
        | RonError::DuplicateStructField { .. } => return code.to_string(),
        RonError::ExpectedInteger => "expected an integer".to_owned(),
        RonError::ExpectedFloat => "expected a number".to_owned(),
        RonError::ExpectedBoolean => "expected true or false".to_owned(),
        RonError::ExpectedString => "expected a string in double quotes".to_owned(),
        RonError::ExpectedArray => "expected a list `[...]`".to_owned(),
        RonError::ExpectedMap => "expected a map `{...}`".to_owned(),
        RonError::ExpectedStructLike => "expected settings in parentheses `(...)`".to_owned(),
        RonError::IntegerOutOfBounds => {
            "the number is out of range: expected a whole number, 0 or more, that fits the setting"
                .to_owned()
        }
        // The file itself: RawConfig is named `config`.
        RonError::ExpectedNamedStructLike("config") => {
            "expected the configuration in parentheses `(...)`; `()` alone is the original's defaults"
                .to_owned()
        }
        RonError::ExpectedNamedStructLike(_) => {
            "expected settings in parentheses `(...)`".to_owned()
        }
        RonError::InvalidValueForType { expected, found } => {
            format!("expected {expected}, found {found}")
        }
        other => lower_first(&other.to_string()),
    };
    match path {
        Some(path) if !path.is_empty() => format!("{path}: {what}"),
        _ => what,
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The byte offset of RON's `line:col` (columns in characters) in `text`.
fn offset(text: &str, at: &Position) -> usize {
    let line_start = if at.line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(at.line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let line = &text[line_start..];
    line_start
        + line
            .char_indices()
            .nth(at.col.saturating_sub(1))
            .map_or(line.len(), |(i, _)| i)
}

/// Turns `range` of `text` into spaces (line ends kept); false if there was nothing to
/// blank, so the reading cannot go round in circles.
fn blank(text: &mut String, range: Range<usize>) -> bool {
    let Some(part) = text.get(range.clone()) else {
        return false;
    };
    if part.trim().is_empty() {
        return false;
    }
    let spaces: String = part
        .bytes()
        .map(|b| if b == b'\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &spaces);
    true
}

/// One entry of a `(...)`, `[...]` or `{...}`: its bytes (with the comma after it) and
/// the path of keys down to it (`window.days`, `faults."kill".config`, `plugins[1]`).
#[derive(Debug, PartialEq)]
struct Item {
    range: Range<usize>,
    path: String,
}

/// A piece of RON text: what the structure of the file is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Open(u8),
    Close,
    Comma,
    Colon,
    /// A value or a name: a string, a number, an identifier.
    Atom,
}

/// The tokens of `text` from byte `from` on, each with where it starts; comments and
/// blanks skipped, strings (raw ones too) and characters taken whole.
fn tokens(text: &str, from: usize) -> impl Iterator<Item = (usize, Token)> + '_ {
    let bytes = text.as_bytes();
    let mut i = from;
    std::iter::from_fn(move || loop {
        let c = *bytes.get(i)?;
        let start = i;
        match c {
            b if b.is_ascii_whitespace() => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = block_comment_end(bytes, i),
            b'(' | b'[' | b'{' => {
                i += 1;
                return Some((start, Token::Open(c)));
            }
            b')' | b']' | b'}' => {
                i += 1;
                return Some((start, Token::Close));
            }
            b',' => {
                i += 1;
                return Some((start, Token::Comma));
            }
            b':' => {
                i += 1;
                return Some((start, Token::Colon));
            }
            b'"' => {
                i = quoted_end(bytes, i + 1, b'"');
                return Some((start, Token::Atom));
            }
            b'\'' => {
                i = quoted_end(bytes, i + 1, b'\'');
                return Some((start, Token::Atom));
            }
            _ => {
                while bytes
                    .get(i)
                    .is_some_and(|&b| !b.is_ascii_whitespace() && !b"()[]{},:\"'/".contains(&b))
                {
                    i += 1;
                }
                let word = &text[start..i];
                if matches!(word, "r" | "br") || word.starts_with("r#") || word.starts_with("br#") {
                    // A raw string: `r#"..."#`, closed by a quote and as many hashes.
                    let hashes = word.bytes().filter(|&b| b == b'#').count();
                    if bytes.get(i) == Some(&b'"') {
                        let close = format!("\"{}", "#".repeat(hashes));
                        i = text[i + 1..]
                            .find(&close)
                            .map_or(bytes.len(), |n| i + 1 + n + close.len());
                    }
                } else if word == "b" && bytes.get(i) == Some(&b'"') {
                    i = quoted_end(bytes, i + 1, b'"');
                }
                if i == start {
                    i += 1; // a lone `/`
                }
                return Some((start, Token::Atom));
            }
        }
    })
}

/// Just after the quote that closes a string or character begun before `i`.
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b == b'\\' {
            i += 1;
        } else if b == quote {
            return i;
        }
    }
    bytes.len()
}

/// Just after the block comment that starts at `i` (they nest, in RON).
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A bracket open at the point reached, and its entry in progress.
struct Frame {
    bracket: u8,
    /// Where its current entry starts, once it has begun.
    entry: Option<usize>,
    /// The current entry's key, once its `:` is seen.
    key: Option<String>,
    /// The current entry's number.
    index: usize,
}

/// The innermost entry that holds the byte `at`: the setting an error there is about. At
/// a closing bracket (a field missing in what it closes), the entry it closes.
fn item_at(text: &str, at: usize) -> Option<Item> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut found = None;
    let mut atom_at = None;
    for (pos, token) in tokens(text, 0) {
        // An error inside an atom (RON points into `-1` at the number): that atom's.
        if pos > at && atom_at.is_some_and(|a| a < at) {
            found = Some(Token::Atom);
            break;
        }
        if let (Some(top), Token::Open(_) | Token::Atom) = (frames.last_mut(), token) {
            top.entry.get_or_insert(pos);
        }
        if pos >= at {
            found = Some(token);
            break;
        }
        atom_at = (token == Token::Atom).then_some(pos);
        match token {
            Token::Open(bracket) => frames.push(Frame {
                bracket,
                entry: None,
                key: None,
                index: 0,
            }),
            Token::Close => {
                frames.pop();
            }
            Token::Comma => {
                if let Some(top) = frames.last_mut() {
                    top.entry = None;
                    top.key = None;
                    top.index += 1;
                }
            }
            Token::Colon => {
                if let Some(top) = frames.last_mut() {
                    if top.key.is_none() {
                        top.key = top.entry.map(|start| text[start..pos].trim().to_owned());
                    }
                }
            }
            Token::Atom => {}
        }
    }
    // The entry the error is in: the innermost one begun, or, at a closing bracket or
    // before an entry begins, the one that holds the bracket.
    let mut depth = frames.len();
    if found == Some(Token::Close) || frames.last().is_some_and(|f| f.entry.is_none()) {
        depth = depth.checked_sub(1)?;
    }
    let frame = frames.get(depth.checked_sub(1)?)?;
    let start = frame.entry?;
    let path = frames[..depth].iter().fold(String::new(), |mut path, f| {
        match (f.bracket, &f.key) {
            (b'[', _) => path.push_str(&format!("[{}]", f.index)),
            (_, Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            _ => {}
        }
        path
    });
    Some(Item {
        range: start..entry_end(text, start),
        path,
    })
}

/// Just after the entry that starts at `start`: after its comma, or at the bracket that
/// closes what holds it.
fn entry_end(text: &str, start: usize) -> usize {
    let mut depth = 0usize;
    for (pos, token) in tokens(text, start) {
        match token {
            Token::Open(_) => depth += 1,
            Token::Close if depth == 0 => return pos,
            Token::Close => depth -= 1,
            Token::Comma if depth == 0 => return pos + 1,
            _ => {}
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str, at: &str) -> Option<(String, String)> {
        let at = text.find(at).unwrap();
        item_at(text, at).map(|i| (text[i.range].to_owned(), i.path))
    }

    #[test]
    fn the_entry_at_an_error_and_its_path() {
        let text = r#"(seed: "x", budget: (per_hour: "y"), faults: {"a": (confg: ())}, plugins: ["p", 3])"#;
        assert_eq!(
            item(text, "\"x\""),
            Some(("seed: \"x\",".into(), "seed".into()))
        );
        assert_eq!(
            item(text, "\"y\""),
            Some(("per_hour: \"y\"".into(), "budget.per_hour".into()))
        );
        assert_eq!(
            item(text, "confg"),
            Some(("confg: ()".into(), "faults.\"a\"".into()))
        );
        assert_eq!(item(text, "3]"), Some(("3".into(), "plugins[1]".into())));
        // At a closing bracket: the entry it closes.
        let text = "(pollers: {\"q\": Qiita(period: \"1h\")})";
        assert_eq!(
            item(text, ")}"),
            Some((
                "\"q\": Qiita(period: \"1h\")".into(),
                "pollers.\"q\"".into()
            ))
        );
    }

    /// RON points into a number it cannot take (after the `-` of `-1`): the error is
    /// that number's setting, also at the last entry of a struct, never the parent's
    /// (which would hide the parent's other errors).
    #[test]
    fn an_error_inside_the_last_number_of_a_struct_is_that_settings() {
        let text = r#"(budget: (min_gap: "zz", per_hour: -1))"#;
        let at = text.find("-1").unwrap() + 1;
        let item = item_at(text, at).unwrap();
        assert_eq!(
            (&text[item.range.clone()], item.path.as_str()),
            ("per_hour: -1", "budget.per_hour")
        );
    }

    #[test]
    fn strings_and_comments_hide_no_structure() {
        let text = "(\n  // a, (comment\n  node: \"a,)\", /* x, ( /* y */ ) */ seed: r#\"(\"#,\n)";
        assert_eq!(
            item(text, "r#"),
            Some(("seed: r#\"(\"#,".into(), "seed".into()))
        );
        assert_eq!(
            item(text, "\"a"),
            Some(("node: \"a,)\",".into(), "node".into()))
        );
    }

    #[test]
    fn every_error_in_a_value_is_found_and_the_rest_still_read() {
        let text = "(\n    seed: \"forty-two\",\n    budget: (per_hour: -1, min_gap: 5),\n    faults: {\"a\": (confg: ())},\n    window: (days: \"*\"),\n)";
        let (read, errors) = readable(Path::new("c.ron"), text).unwrap();
        assert_eq!(
            errors,
            [
                "c.ron:2:10: seed: expected an integer",
                "c.ron:3:25: budget.per_hour: the number is out of range: expected a whole number, 0 or more, that fits the setting",
                "c.ron:4:20: Unexpected field named `confg` in `fault`, expected one of `plugin`, `config`, `steady_state`, or `recovery` instead",
            ]
        );
        assert_eq!(read.len(), text.len());
        assert!(read.contains("window: (days: \"*\")"));
        assert!(raw(Path::new("c.ron"), &read).is_ok());
    }

    #[test]
    fn an_empty_file_an_open_one_and_one_with_more_say_what_to_do() {
        let first = |text: &str| match readable(Path::new("c.ron"), text) {
            Err(e) => e.0[0].clone(),
            Ok((_, errors)) => errors[0].clone(),
        };
        assert_eq!(
            first(""),
            "c.ron:1:1: expected the configuration in parentheses `(...)`; `()` alone is the original's defaults"
        );
        assert_eq!(
            first("(seed: 1,"),
            "c.ron:1:9: the file ends inside the configuration: a `(`, `[`, `{` or `\"` is not closed"
        );
        assert_eq!(
            first("(window: (days: \"1-5\"\n"),
            "c.ron:1:22: the file ends inside the configuration: a `(`, `[`, `{` or `\"` is not closed"
        );
        assert_eq!(
            first("() junk"),
            "c.ron:1:3: text after the configuration's closing `)`: a file holds one configuration `(...)`"
        );
        assert_eq!(
            first("(http: 5)"),
            "c.ron:1:7: http: expected settings in parentheses `(...)`"
        );
    }

    #[test]
    fn a_syntax_error_ends_the_reading_with_what_came_before() {
        let text = "(seed: \"x\", window: (days: \"1-5\"";
        let errors = readable(Path::new("c.ron"), text).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0], "c.ron:1:7: seed: expected an integer");
    }
}
