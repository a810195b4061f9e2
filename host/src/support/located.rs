//! Where a setting was written, and the checks every component's configuration shares.
//! Each component (a trigger, a notifier, the window, the budget) validates its own raw
//! settings next to its code; they all locate errors with `Source` (`file:line:col`) and
//! collect them into one list, so a file's errors are reported at once.

use std::{path::Path, path::PathBuf, time::Duration};

/// A duration as a configuration writes it, every duration setting alike (the plugins'
/// too): the SDK's type, so a fault's config and the daemon's read `90` and `"5m"` the same.
pub use nightmare_monkey_plugin_api::sdk::DurationText;

/// Whole seconds of a duration setting written `text`; else an error naming it.
pub fn seconds(text: &str, at: &str, key: &str) -> Result<u64, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.subsec_nanos() == 0 => Ok(d.as_secs()),
        Ok(_) => Err(format!(
            "{at}: {key} `{text}` is not a whole number of seconds"
        )),
        Err(_) => Err(format!(
            "{at}: invalid {key} `{text}`: expected seconds (90) or a duration like 90s, 5m or 1h30m"
        )),
    }
}

/// Errors found in a file or on the command line, all of them.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Where in the file a setting was written: the file's path and text, so that every
/// component's validation can name `file:line:col` for what it refuses.
pub struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    /// The file at `path` whose text is `text` (both empty: no file, flags only).
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// Where `inner`, a slice of the file's own text, begins in it, as a byte offset
    /// (`None` for text that is not part of the file, e.g. a copy).
    pub fn offset_of(&self, inner: &str) -> Option<usize> {
        let start = (inner.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        (start + inner.len() <= self.text.len()).then_some(start)
    }

    /// `line:col` (1-based) of the byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    /// `file:line:col` of the key path (`window.days`), best effort: the first
    /// occurrence of each key after the previous one.
    pub fn at(&self, keys: &[&str]) -> String {
        self.at_from(0, keys)
    }

    /// `file:line:col` of the key path searched from the byte `from` on (an entry of a
    /// list, whose keys repeat from one entry to the next).
    pub fn at_from(&self, from: usize, keys: &[&str]) -> String {
        let (line, col) = line_col(self.text, self.offset_at(from, keys));
        format!("{}:{line}:{col}", self.path.display())
    }

    /// The byte offset of the key path searched from the byte `from` on.
    pub fn offset_at(&self, mut from: usize, keys: &[&str]) -> usize {
        for key in keys {
            match self.text.get(from..).and_then(|rest| find_key(rest, key)) {
                Some(i) => from += i,
                None => break,
            }
        }
        from
    }

    /// The file's text.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = text[start..].find(key) {
        let at = start + i;
        let before_ok = at == 0
            || !text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = text[at + key.len()..].trim_start();
        if before_ok && (after.starts_with(':') || key.starts_with('"')) {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// A setting from its flag, else from the file, else its default, parsed; an error names
/// whichever of the flag or the file's `line:col` it came from.
pub fn setting<T>(
    (flag, flag_name): (&Option<String>, &str),
    (file, keys): (&Option<String>, &[&str]),
    default: &str,
    src: &Source<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
    errors: &mut Vec<String>,
) -> Option<T> {
    let (text, origin) = match (flag, file) {
        (Some(v), _) => (v.as_str(), flag_name.to_owned()),
        (None, Some(v)) => (v.as_str(), src.at(keys)),
        (None, None) => (default, "default".to_owned()),
    };
    parse(text)
        .map_err(|e| errors.push(format!("{origin}: {e}")))
        .ok()
}

/// A secret given inline (`token`) or in a file (`token_file`, trimmed), never both and
/// never empty. `section` is the key path of the enclosing table, for error locations.
pub fn read_token(
    token: &Option<String>,
    token_file: &Option<PathBuf>,
    section: &[&str],
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Result<Option<String>, ()> {
    let at = |key: &str| src.at(&[section, &[key]].concat());
    let mut fail = |message: String| {
        errors.push(message);
        Err(())
    };
    match (token, token_file) {
        (Some(_), Some(_)) => fail(format!(
            "{}: give token or token_file, not both",
            at("token")
        )),
        (Some(t), None) if t.trim().is_empty() => {
            fail(format!("{}: the token is empty", at("token")))
        }
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(file)) => {
            match super::small_file::read_text(file, super::small_file::MAX_SECRET) {
                Ok(t) if t.trim().is_empty() => fail(format!(
                    "{}: token file {} is empty",
                    at("token_file"),
                    file.display()
                )),
                Ok(t) => Ok(Some(t.trim().to_owned())),
                Err(e) => fail(format!(
                    "{}: cannot read token file {}: {e}",
                    at("token_file"),
                    file.display()
                )),
            }
        }
        (None, None) => Ok(None),
    }
}

pub fn duration(
    text: &str,
    at: &str,
    key: &str,
    max: Duration,
    errors: &mut Vec<String>,
) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => at_most(d, text, at, key, max, errors),
        _ => {
            errors.push(format!(
                "{at}: invalid {key} `{text}`: expected a duration like 10m, 30s or 250ms"
            ));
            None
        }
    }
}

/// `d` (written `text`) if it is at most `max`; else an error naming the field and the
/// bound. Every duration of the configuration has one: a value past it is a typo or a
/// unit mistake, and some (a wait of 10^13 s) would overflow the clock arithmetic.
pub fn at_most(
    d: Duration,
    text: &str,
    at: &str,
    key: &str,
    max: Duration,
    errors: &mut Vec<String>,
) -> Option<Duration> {
    if d <= max {
        return Some(d);
    }
    errors.push(format!(
        "{at}: {key} `{text}` is too long: at most {}",
        humantime::format_duration(max)
    ));
    None
}

/// Checks configured request headers (one error per invalid one, located at `at`) and
/// adds `Authorization: Bearer TOKEN` when there is a token.
pub fn request_headers(
    mut headers: Vec<(String, String)>,
    token: Option<String>,
    at: &str,
    errors: &mut Vec<String>,
) -> Vec<(String, String)> {
    for (header, value) in &headers {
        let name_ok = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok();
        if !name_ok || reqwest::header::HeaderValue::from_str(value).is_err() {
            errors.push(format!(
                "{at}: invalid header `{header}`: expected a header name and a printable value"
            ));
        }
    }
    if let Some(token) = token {
        headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
    }
    headers
}

/// Checks that `url` is an HTTP(S) URL that names a host (and a valid port, if any);
/// `at` locates the setting. An error shows the URL without its secrets
/// ([`redacted`](crate::support::shown_url::redacted)).
pub fn check_url(url: &str, at: &str, errors: &mut Vec<String>) {
    let shown = format!("`{}`", crate::support::shown_url::redacted(url));
    check_url_shown_as(url, &shown, at, errors);
}

/// [`check_url`] for a URL that is a secret as a whole (a Slack webhook's, perhaps kept
/// in a file for that reason): an error does not show it.
pub fn check_secret_url(url: &str, at: &str, errors: &mut Vec<String>) {
    check_url_shown_as(url, "(not shown: it may be a secret)", at, errors);
}

fn check_url_shown_as(url: &str, shown: &str, at: &str, errors: &mut Vec<String>) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errors.push(format!(
            "{at}: invalid URL {shown}: expected http:// or https://"
        ));
        return;
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => errors.push(format!("{at}: invalid URL {shown}: it names no host")),
        Err(e) => errors.push(format!(
            "{at}: invalid URL {shown}: {e} (expected http://HOST[:PORT][/PATH])"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that can never be asked (no host, a port past 65535, a space in the host)
    /// is refused where it is written, not at the first call.
    #[test]
    fn a_url_names_a_host_and_a_valid_port() {
        let check = |url: &str| {
            let mut errors = Vec::new();
            check_url(url, "f:1:2", &mut errors);
            errors
        };
        for fine in [
            "http://127.0.0.1:2379",
            "https://etcd.example:2379/",
            "http://[::1]:8080/hook?x=1",
        ] {
            assert_eq!(check(fine), Vec::<String>::new(), "{fine}");
        }
        assert_eq!(
            check("ftp://x"),
            ["f:1:2: invalid URL `ftp://x`: expected http:// or https://"]
        );
        assert_eq!(
            check("http://"),
            ["f:1:2: invalid URL `http://`: empty host (expected http://HOST[:PORT][/PATH])"]
        );
        assert_eq!(
            check("http://127.0.0.1:99999"),
            ["f:1:2: invalid URL `http://127.0.0.1:99999`: invalid port number (expected http://HOST[:PORT][/PATH])"]
        );
        assert_eq!(check("http://exa mple:2379").len(), 1);
    }

    /// Every duration setting takes seconds as a number or a duration as text.
    #[test]
    fn a_duration_is_written_as_seconds_or_as_text() {
        #[derive(Debug, serde::Deserialize)]
        struct Both {
            number: DurationText,
            text: DurationText,
        }
        let quoted: Both = ron::from_str(r#"(number: "90", text: "1h30m")"#).unwrap();
        assert_eq!(quoted.number.0, "90s");
        let both: Both = ron::from_str(r#"(number: 90, text: "1h30m")"#).unwrap();
        assert_eq!(
            (both.number.0.as_str(), both.text.0.as_str()),
            ("90s", "1h30m")
        );
        assert_eq!(seconds(&both.number, "f:1:2", "mean"), Ok(90));
        assert_eq!(seconds(&both.text, "f:1:2", "mean"), Ok(5400));
        assert_eq!(
            seconds("1.5s", "f:1:2", "mean"),
            Err("f:1:2: mean `1.5s` is not a whole number of seconds".to_owned())
        );
        assert_eq!(
            seconds("soon", "f:1:2", "mean"),
            Err("f:1:2: invalid mean `soon`: expected seconds (90) or a duration like 90s, 5m or 1h30m".to_owned())
        );
        let negative = ron::from_str::<Both>(r#"(number: -5, text: "1s")"#).unwrap_err();
        assert!(
            negative
                .to_string()
                .contains("a duration cannot be negative (-5)"),
            "{negative}"
        );
        let wrong = ron::from_str::<Both>(r#"(number: true, text: "1s")"#).unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains(r#"seconds (90) or a duration like "90s", "5m" or "1h30m""#),
            "{wrong}"
        );
    }

    #[test]
    fn keys_are_located_by_line_and_column() {
        let text = "(\n  window: (\n    days: \"9\",\n  ),\n)";
        let src = Source::new(Path::new("c.ron"), text);
        assert_eq!(src.at(&["window", "days"]), "c.ron:3:5");
        assert_eq!(src.line_col(11), (2, 10));
        assert_eq!(src.offset_of(&text[4..10]), Some(4));
        assert_eq!(
            src.offset_of("window"),
            None,
            "a copy is not part of the file"
        );
    }

    #[test]
    fn a_key_is_a_whole_word_followed_by_a_colon_or_a_quoted_name() {
        let text = "(my_days: 1, days_x: 2, days: 3, \"web\": (days: 4))";
        assert_eq!(find_key(text, "days"), text.find("days: 3"));
        assert_eq!(find_key(text, "\"web\""), text.find("\"web\""));
        assert_eq!(find_key("(days : 5)", "days"), Some(1));
        assert_eq!(find_key("(days = 5)", "days"), None);
        assert_eq!(find_key("(zzdays, days: 1)", "days"), Some(9));
        let src = Source::new(Path::new("c.ron"), text);
        // A path is followed key by key; a missing key leaves the last one found.
        let inner = text.find("days: 4").unwrap() + 1;
        assert_eq!(src.at(&["\"web\"", "days"]), format!("c.ron:1:{inner}"));
        assert_eq!(src.at(&["nope"]), "c.ron:1:1");
    }

    #[test]
    fn shared_field_checks_say_where_and_what_was_expected() {
        let src = Source::new(Path::new("c.ron"), "(http: (token: \" \"))");
        let mut errors = Vec::new();
        let day = Duration::from_secs(86_400);
        let ten = duration("10m", "here", "period", day, &mut errors);
        assert_eq!(ten, Some(Duration::from_secs(600)));
        assert_eq!(
            duration("1d", "here", "period", day, &mut errors),
            Some(day)
        );
        assert_eq!(duration("0s", "here", "period", day, &mut errors), None);
        assert_eq!(duration("soon", "here", "period", day, &mut errors), None);
        assert_eq!(duration("1d 1s", "here", "period", day, &mut errors), None);
        assert_eq!(
            duration("300000y", "here", "period", day, &mut errors),
            None
        );
        assert_eq!(
            errors,
            [
                "here: invalid period `0s`: expected a duration like 10m, 30s or 250ms",
                "here: invalid period `soon`: expected a duration like 10m, 30s or 250ms",
                "here: period `1d 1s` is too long: at most 1day",
                "here: period `300000y` is too long: at most 1day",
            ]
        );
        errors.clear();
        let token = |t: Option<&str>, errors: &mut Vec<String>| {
            read_token(&t.map(str::to_owned), &None, &["http"], &src, errors)
        };
        assert_eq!(
            token(Some("s3cret"), &mut errors),
            Ok(Some("s3cret".into()))
        );
        assert_eq!(token(None, &mut errors), Ok(None));
        assert_eq!(token(Some(" "), &mut errors), Err(()));
        assert_eq!(errors, ["c.ron:1:9: the token is empty"]);
        let both = read_token(
            &Some("a".into()),
            &Some("f".into()),
            &["http"],
            &src,
            &mut errors,
        );
        assert_eq!(both, Err(()));
        assert_eq!(errors[1], "c.ron:1:9: give token or token_file, not both");
        let dir = std::env::temp_dir().join(format!("nm-located-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), " from-file \n").unwrap();
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let file = |name: &str, errors: &mut Vec<String>| {
            read_token(&None, &Some(dir.join(name)), &["http"], &src, errors)
        };
        assert_eq!(file("t", &mut errors), Ok(Some("from-file".into())));
        assert_eq!(file("empty", &mut errors), Err(()));
        assert!(errors[2].ends_with("empty is empty"), "{}", errors[2]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn headers_are_checked_and_a_token_becomes_a_bearer() {
        let mut errors = Vec::new();
        let headers = vec![("X-Team".to_owned(), "sre".to_owned())];
        assert_eq!(
            request_headers(headers, Some("t0k".into()), "here", &mut errors),
            [
                ("X-Team".to_owned(), "sre".to_owned()),
                ("Authorization".to_owned(), "Bearer t0k".to_owned())
            ]
        );
        let bad = vec![("Bad Name".to_owned(), "x".to_owned())];
        request_headers(bad, None, "here", &mut errors);
        assert_eq!(
            errors,
            ["here: invalid header `Bad Name`: expected a header name and a printable value"]
        );
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let src = Source::new(Path::new("c.ron"), "(window: (days: \"x\"))");
        let parse = |s: &str| s.parse::<u8>().map_err(|_| format!("bad `{s}`"));
        let mut errors = Vec::new();
        let (flag, file, bad) = (
            Some("1".to_owned()),
            Some("2".to_owned()),
            Some("x".to_owned()),
        );
        let keys: &[&str] = &["window", "days"];
        let mut get = |f: &Option<String>, v: &Option<String>| {
            setting((f, "--day"), (v, keys), "3", &src, parse, &mut errors)
        };
        assert_eq!(get(&flag, &file), Some(1));
        assert_eq!(get(&None, &file), Some(2));
        assert_eq!(get(&None, &None), Some(3));
        assert_eq!(get(&bad, &file), None);
        assert_eq!(get(&None, &bad), None);
        assert_eq!(errors, ["--day: bad `x`", "c.ron:1:11: bad `x`"]);
    }
}
