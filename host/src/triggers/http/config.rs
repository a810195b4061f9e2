//! The HTTP trigger's settings (`http: (...)` in the file, `--listen` and `--port` on
//! the command line): the raw form as written and its validation.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use serde::Deserialize;

use std::time::Duration;

use super::server::{Limits, LIMITS};
use crate::support::located::{duration, read_token, DurationText, Source};

/// The original's port.
pub const DEFAULT_PORT: u16 = 8080;

/// The largest `max_body_bytes`: a MiB (a description is a sentence).
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The largest `max_connections`.
pub const MAX_CONNECTIONS: usize = 65536;

/// The longest `header_timeout`.
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "http")]
pub struct RawHttp {
    enabled: bool,
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(deserialize_with = "crate::support::unique::names")]
    tokens: BTreeMap<String, String>,
    allow_public_without_token: bool,
    max_body_bytes: u64,
    max_connections: usize,
    header_timeout: Option<DurationText>,
    allowed_hosts: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token: None,
            token_file: None,
            tokens: BTreeMap::new(),
            allow_public_without_token: false,
            max_body_bytes: 64 * 1024,
            max_connections: LIMITS.max_connections,
            header_timeout: None,
            allowed_hosts: Vec::new(),
        }
    }
}

/// The HTTP trigger's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The accepted bearer tokens, each with the name journaled for it (the unnamed
    /// `token` is named `token`). Empty: no token is required.
    pub tokens: Vec<(String, String)>,
    /// Whether a public address without a token was explicitly allowed.
    pub public_without_token: bool,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Connections served at once, and how long a client may take to send a request
    /// head (also how long a keep-alive connection may stay idle).
    pub limits: Limits,
    /// Names (with a port, or not) the API answers to besides its addresses and
    /// `localhost`, and whose pages are its own: a reverse proxy's, a DNS name.
    pub allowed_hosts: Vec<String>,
}

impl RawHttp {
    /// Whether the API is on (`http.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Validates the settings with the command line's `--listen` and `--port`.
    pub fn validate(
        &self,
        listen_flag: Option<&str>,
        port_flag: Option<u16>,
        src: &Source<'_>,
        errors: &mut Vec<String>,
    ) -> Option<HttpConfig> {
        let raw = self;
        let (listen, at) = match (listen_flag, &raw.listen) {
            (Some(l), _) => (Some(l.to_owned()), "--listen".to_owned()),
            (None, Some(l)) => (Some(l.clone()), src.at(&["http", "listen"])),
            (None, None) => (None, String::new()),
        };
        let mut addr = match listen {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => match bare_ip(&text) {
                    Some(ip) => SocketAddr::new(ip, DEFAULT_PORT),
                    None => {
                        errors.push(format!("{at}: invalid listen address `{text}`: expected IP or IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"));
                        return None;
                    }
                },
            },
        };
        if let Some(port) = port_flag {
            // `--listen 0.0.0.0 -p 9000` is one address; two ports are a contradiction,
            // never silently settled.
            if let (Some(text), Ok(given)) =
                (listen_flag, listen_flag.unwrap_or("").parse::<SocketAddr>())
            {
                errors.push(format!(
                    "--port {port} and --listen {text} both give a port ({}): give the port once",
                    given.port()
                ));
                return None;
            }
            addr.set_port(port);
        }
        if !(1..=MAX_BODY_BYTES).contains(&raw.max_body_bytes) {
            errors.push(format!(
                "{}: max_body_bytes must be 1 to {MAX_BODY_BYTES} (got {})",
                src.at(&["http", "max_body_bytes"]),
                raw.max_body_bytes
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&raw.max_connections) {
            errors.push(format!(
                "{}: max_connections must be 1 to {MAX_CONNECTIONS} (got {})",
                src.at(&["http", "max_connections"]),
                raw.max_connections
            ));
        }
        let header_timeout = match &raw.header_timeout {
            None => Some(LIMITS.header_read_timeout),
            Some(text) => duration(
                text,
                &src.at(&["http", "header_timeout"]),
                "header_timeout",
                MAX_HEADER_TIMEOUT,
                errors,
            ),
        };
        let hosts_at = src.offset_at(0, &["http", "allowed_hosts"]);
        for host in &raw.allowed_hosts {
            if let Some(e) = super::origin::allowed_host_error(host) {
                let at = src.at_from(hosts_at, &[&format!("{host:?}")]);
                errors.push(format!("{at}: {e}"));
            }
        }
        let token = read_token(&raw.token, &raw.token_file, &["http"], src, errors).ok()?;
        let mut tokens: Vec<(String, String)> =
            token.into_iter().map(|t| ("token".to_owned(), t)).collect();
        for (name, secret) in &raw.tokens {
            if secret.trim().is_empty() {
                errors.push(format!(
                    "{}: the token of `{name}` is empty",
                    src.at(&["http", "tokens", &format!("\"{name}\"")])
                ));
                return None;
            }
            tokens.push((name.clone(), secret.trim().to_owned()));
        }
        if let Some(refused) = shape_of(&tokens, &addr, |name| {
            if name == "token" && !raw.tokens.contains_key("token") {
                let key = if raw.token.is_some() {
                    "token"
                } else {
                    "token_file"
                };
                src.at(&["http", key])
            } else {
                src.at(&["http", "tokens", &format!("\"{name}\"")])
            }
        }) {
            errors.push(refused);
            return None;
        }
        if !addr.ip().is_loopback() && tokens.is_empty() && !raw.allow_public_without_token {
            errors.push(format!(
            "{at}: refusing to listen on {addr} without a token: anyone who reaches it could inject faults. Set http.token or http.token_file in the config (or http.allow_public_without_token: true to accept that), or listen on 127.0.0.1"
        ));
            return None;
        }
        Some(HttpConfig {
            listen: addr,
            tokens,
            public_without_token: !addr.ip().is_loopback() && raw.allow_public_without_token,
            max_body_bytes: raw.max_body_bytes,
            limits: Limits {
                max_connections: raw.max_connections,
                header_read_timeout: header_timeout?,
            },
            allowed_hosts: raw.allowed_hosts.clone(),
        })
    }
}

/// The shortest token for an address others can reach.
pub const MIN_PUBLIC_TOKEN: usize = 16;

/// What is wrong with the tokens (name, secret) of an API on `addr`, at the place
/// `at(name)` says: each must fit an `Authorization: Bearer` header (printable ASCII, no
/// space), be long enough to guess on an address others reach, and be its caller's own
/// (two alike would name every caller after one of them).
fn shape_of(
    tokens: &[(String, String)],
    addr: &SocketAddr,
    at: impl Fn(&str) -> String,
) -> Option<String> {
    for (i, (name, secret)) in tokens.iter().enumerate() {
        let whose = if name == "token" && i == 0 {
            "the token".to_owned()
        } else {
            format!("the token of `{name}`")
        };
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Some(format!(
                "{}: {whose} holds a space, a control or a non-ASCII character: an Authorization header carries printable ASCII (e.g. `openssl rand -hex 16`)",
                at(name)
            ));
        }
        if !addr.ip().is_loopback() && secret.len() < MIN_PUBLIC_TOKEN {
            return Some(format!(
                "{}: {whose} is {} characters long, fewer than the {MIN_PUBLIC_TOKEN} an address others reach ({addr}) needs (e.g. `openssl rand -hex 16`)",
                at(name),
                secret.len()
            ));
        }
        if let Some((other, _)) = tokens[..i].iter().find(|(_, s)| s == secret) {
            return Some(format!(
                "{}: {whose} is the same as `{other}`'s: each caller needs a token of its own",
                at(name)
            ));
        }
    }
    None
}

/// An address with no port: `127.0.0.1`, `::1`, or an IPv6 address bracketed as the
/// daemon prints it (`[::1]`).
pub fn bare_ip(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token fits a Bearer header, is long enough where others can reach the API,
    /// and is its caller's own.
    #[test]
    fn a_token_has_the_shape_a_caller_can_send_and_nobody_can_guess() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let at = |name: &str| format!("f.ron:1:1 ({name})");
        let tokens = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect()
        };
        let good = "0123456789abcdef";
        assert_eq!(shape_of(&tokens(&[("token", good)]), &public, at), None);
        assert_eq!(shape_of(&tokens(&[("token", "s3cret")]), &local, at), None);
        assert_eq!(
            shape_of(&tokens(&[("token", "s3cret")]), &public, at).unwrap(),
            "f.ron:1:1 (token): the token is 6 characters long, fewer than the 16 an address others reach (0.0.0.0:8080) needs (e.g. `openssl rand -hex 16`)"
        );
        for bad in ["abc\ndef", "abc def", "abcé"] {
            let said = shape_of(&tokens(&[("ops", bad)]), &local, at).unwrap();
            assert!(
                said.starts_with("f.ron:1:1 (ops): the token of `ops` holds a space, a control or a non-ASCII character"),
                "{said}"
            );
        }
        assert_eq!(
            shape_of(&tokens(&[("token", good), ("bob", good)]), &local, at).unwrap(),
            "f.ron:1:1 (bob): the token of `bob` is the same as `token`'s: each caller needs a token of its own"
        );
    }

    #[test]
    fn an_address_without_a_port_may_be_bracketed_only_if_ipv6() {
        let v6 = |t: &str| t.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).ok();
        assert_eq!(bare_ip("[::1]"), v6("::1"));
        assert_eq!(bare_ip("[::]"), v6("::"));
        assert_eq!(bare_ip("::1"), v6("::1"));
        assert_eq!(bare_ip("127.0.0.1"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        for wrong in ["[127.0.0.1]", "[::1", "::1]", "[]", "localhost", ""] {
            assert_eq!(bare_ip(wrong), None, "{wrong}");
        }
    }
}
