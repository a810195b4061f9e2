//! A URL as a log line or `check-config` shows it: a poller's or notifier's URL may carry
//! a secret (a password, an `api_key` in the query, a Slack webhook's whole path), and a
//! log is read by more people than the configuration.

use std::borrow::Cow;

/// `url` with its user name, password and the values of its query shown as `***` and
/// its fragment left out; a URL with none of these, or that does not parse, as written.
pub fn redacted(url: &str) -> Cow<'_, str> {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return Cow::Borrowed(url);
    };
    let userinfo = !parsed.username().is_empty() || parsed.password().is_some();
    if !userinfo && parsed.query().is_none() && parsed.fragment().is_none() {
        return Cow::Borrowed(url);
    }
    if userinfo {
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("***");
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k, "***")));
    }
    parsed.set_fragment(None);
    Cow::Owned(parsed.into())
}

/// Only where `url` goes: its scheme, host and port (`https://hooks.slack.com`), for a
/// URL that is a secret as a whole.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_url_are_not_shown() {
        assert_eq!(
            redacted("https://user:pa55@api.example.com:8443/v1/count?api_key=k3y&item=7#top"),
            "https://***@api.example.com:8443/v1/count?api_key=***&item=***"
        );
        assert_eq!(redacted("http://u@h/p?flag"), "http://***@h/p?flag=***");
        let plain = "https://qiita.com/api/v2/items/c31be8235354a3e21945";
        assert!(matches!(redacted(plain), Cow::Borrowed(u) if u == plain));
        assert_eq!(
            origin("https://u:p@hooks.slack.com/services/T0/B0/S3CRET"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:18400/hook"),
            "http://127.0.0.1:18400"
        );
    }
}
