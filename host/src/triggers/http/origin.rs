//! Who may call the API from a browser: only the API's own pages. Checked once, before
//! every route, from the request's head alone.
//!
//! Two attacks, both from an ordinary web page the operator happens to open:
//! - **Another site's request.** A `text/plain` form or a `no-cors` fetch is a "simple
//!   request": the browser sends it to `http://127.0.0.1:8080` without asking first, and
//!   the body is read as JSON whatever its type (the original's curl sends a form type).
//!   So a request a browser marks as coming from elsewhere (an `Origin` that is not the
//!   API's own, `Sec-Fetch-Site` other than `same-origin` or `none`) is refused, whatever
//!   its content type. The one exception is a `GET` of the dashboard's page: a link in a
//!   runbook opens it; it holds no data and refuses to be framed.
//! - **DNS rebinding.** A page whose name is made to resolve to 127.0.0.1 is, to the
//!   browser, the same origin as itself, and reads the answers. Its requests name *its*
//!   host, so a token-less API answers only to a `Host` that cannot be rebound: an IP
//!   address (loopback, the listen address, or any of the host's when listening on all),
//!   `localhost`, or a name in `http.allowed_hosts`. The port is not checked: a port
//!   mapping (`docker -p 9000:8080`, `kubectl port-forward`) changes it, and the name is
//!   what a rebinding page cannot hide. With a token the name is not checked (a rebound
//!   page has no token, and fleets call the API by a Service's name).
//!
//! Clients that are not browsers send no `Origin` and no `Sec-Fetch-*`: curl, hubot,
//! Alertmanager and Prometheus pass as before.

use std::net::IpAddr;

use warp::{
    http::{header::HeaderMap, Method, StatusCode},
    Filter, Rejection,
};

/// A request refused here, with its status and its one message.
#[derive(Debug)]
pub(super) struct Refused {
    pub status: StatusCode,
    pub message: String,
}

impl warp::reject::Reject for Refused {}

/// What the API accepts as its own.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    /// The address the API listens on.
    listen: IpAddr,
    /// Whether a token is required (then any `Host` is accepted).
    needs_token: bool,
    /// `http.allowed_hosts`, lower-case: names (with a port, or not) the API also
    /// answers to, and whose pages are its own.
    allowed: Vec<String>,
}

/// The longest header value looked at, and quoted back.
const MAX_QUOTED: usize = 100;

impl Guard {
    pub(super) fn new(listen: IpAddr, needs_token: bool, allowed: &[String]) -> Guard {
        Guard {
            listen,
            needs_token,
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// The filter that refuses what [`Guard::check`] refuses, before any route.
    pub(super) fn filter(self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and_then(
                move |method: Method, path: warp::path::FullPath, headers: HeaderMap| {
                    let checked = self.check(&method, path.as_str(), &headers);
                    async move { checked.map_err(warp::reject::custom) }
                },
            )
            .untuple_one()
    }

    /// Whether a request with this head may go on.
    pub(super) fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Refused> {
        let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{FFFD}"));
        let host = text("host");
        if let Some(host) = host.filter(|host| !self.needs_token && !self.known_host(host)) {
            return Err(self.misdirected(host));
        }
        let page = path == "/" && (method == Method::GET || method == Method::HEAD);
        if page {
            return Ok(());
        }
        let origin = text("origin");
        if let Some(site) = text("sec-fetch-site") {
            if !matches!(site, "same-origin" | "none") {
                let from = origin.map_or_else(String::new, |o| format!(" ({})", quoted(o)));
                return Err(foreign(format!("Sec-Fetch-Site `{}`{from}", quoted(site))));
            }
        }
        match origin {
            Some(origin) if !self.own_origin(origin, host) => {
                Err(foreign(format!("Origin `{}`", quoted(origin))))
            }
            _ => Ok(()),
        }
    }

    fn misdirected(&self, host: &str) -> Refused {
        let host = quoted(host);
        let listen = self.listen_named();
        Refused {
            status: StatusCode::MISDIRECTED_REQUEST,
            message: format!(
                "refused: Host `{host}` is not this API's: expected localhost, 127.0.0.1, [::1]{listen} (any port), or a name in http.allowed_hosts; a page whose name points here (DNS rebinding) is not the API's"
            ),
        }
    }

    /// `, 10.0.0.5` when the listen address is not one of those already named.
    fn listen_named(&self) -> String {
        match self.listen {
            ip if ip.is_loopback() => String::new(),
            ip if ip.is_unspecified() => ", any address of this host".to_owned(),
            IpAddr::V4(ip) => format!(", {ip}"),
            IpAddr::V6(ip) => format!(", [{ip}]"),
        }
    }

    /// Whether `Host` names this API in a way no other site's page can.
    fn known_host(&self, host: &str) -> bool {
        let Some((name, _port)) = split_authority(host) else {
            return false;
        };
        let name = name.to_ascii_lowercase();
        if name == "localhost" {
            return true;
        }
        let own_address = ip_of(&name).is_some_and(|ip| {
            ip.is_loopback() || ip == self.listen || self.listen.is_unspecified()
        });
        own_address
            || self
                .allowed
                .iter()
                .any(|allowed| match split_authority(allowed) {
                    Some((allowed_name, _)) => allowed_name == name,
                    None => false,
                })
    }

    /// Whether `origin` is the API's own: the scheme and authority the browser used to
    /// reach this very request (its `Host`), or a name in `http.allowed_hosts` (a
    /// reverse proxy that passes its own `Host` on, or not).
    fn own_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            // `null` (a sandboxed frame, a file, a data: URL) and anything else.
            return false;
        };
        let authority = authority.to_ascii_lowercase();
        if split_authority(&authority).is_none() {
            return false;
        }
        if host.is_some_and(|host| host.eq_ignore_ascii_case(&authority)) {
            return true;
        }
        self.allowed.contains(&authority)
    }
}

/// The refusal of a request another site's page sent (`what` says how it is known).
fn foreign(what: String) -> Refused {
    Refused {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "refused: a page from another site may not call this API ({what}); only the dashboard it serves may, or a client that is not a browser (curl); behind a reverse proxy, name it in http.allowed_hosts"
        ),
    }
}

/// `name` and its port from `name`, `name:port`, `[v6]` or `[v6]:port`; `None` if it
/// is not one of those.
fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let rest = &text[end + 1..];
        let port = match rest {
            "" => None,
            rest => Some(rest.strip_prefix(':')?),
        };
        (&text[..=end], port)
    } else {
        match text.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    let valid_name = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if !valid_name {
        return None;
    }
    match port {
        None => Some((name, None)),
        Some(port) => port.parse().ok().map(|p| (name, Some(p))),
    }
}

/// The address a `Host`'s name writes (`127.0.0.1`, `[::1]`), if it is one.
fn ip_of(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => name.parse().ok(),
    }
}

/// A client's header, clipped and with its control characters escaped, to be quoted in
/// an answer.
fn quoted(text: &str) -> String {
    crate::support::text::clip(text, MAX_QUOTED).into_owned()
}

/// Checks an `http.allowed_hosts` entry: a name or address, with a port or not, and
/// nothing else (no scheme, no path); the reason if not.
pub(super) fn allowed_host_error(entry: &str) -> Option<String> {
    if entry.contains("://") || entry.contains('/') {
        return Some(format!(
            "allowed host `{entry}` is a URL: give the name only, with the port if the address has one, e.g. monkey.example.com or monkey.example.com:8443"
        ));
    }
    let valid = match split_authority(entry) {
        Some((name, _)) => {
            ip_of(name).is_some() || (name.len() <= 253 && !name.contains(['[', ']', ':']))
        }
        None => false,
    };
    (!valid).then(|| format!(
        "invalid allowed host `{entry}`: expected a host name with an optional port, e.g. monkey.example.com or monkey.example.com:8443"
    ))
}

#[cfg(test)]
mod tests;
