//! The HTTP trigger (warp): the original's `POST /api/kill`, plus `POST /api/faults/{name}`,
//! `GET /api/plugins`, `GET /api/history`, the kill switch (`POST /api/pause`,
//! `POST /api/resume`), what a drill came to (`POST /api/ack`, `POST /api/alerts`,
//! `GET /api/report`), the live dashboard (`GET /`, `GET /api/events`,
//! `POST /api/revert/{id}`), `GET /metrics` (Prometheus) and `GET /healthz`. Every answer
//! but the metrics, the page and the events is JSON; errors are
//! `{"code": N, "message": "..."}`. Before any route, `origin` refuses what another
//! site's page sends and, without a token, a `Host` that is not the API's. Bearer
//! tokens, when set, guard every call but `/healthz` and the page (which holds no
//! data), and each request is journaled with the client's address and the token's name.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::anyhow;
use serde_json::json;
use warp::{
    http::{header, StatusCode},
    reply::Response,
    Filter, Rejection, Reply,
};

use crate::{
    dispatch::Injector,
    domain::injection::{check_desc, Ask, BadDesc, Injection},
    output::{
        answer::Answer,
        log,
        metrics::{self, Refusal as Refused},
    },
    plugin::PluginInfo,
};

pub use config::{bare_ip, HttpConfig, RawHttp};

mod config;
mod dashboard;
mod drill;
mod fleet;
mod history;
mod origin;
mod refusal;

use refusal::Refusal;
mod routes;
mod server;

use server::Peer;

/// The plugins `/api/plugins` lists.
#[derive(Debug, Default)]
pub struct PluginList {
    /// Those loaded.
    pub loaded: Vec<PluginInfo>,
    /// The plugin files still loading (their faults are refused until they have).
    pub loading: Vec<String>,
}

/// What the handlers share.
pub struct Api {
    /// The door every request goes through.
    pub injector: Injector,
    /// The fault `/api/kill` fires (the timer's); none when the config names several
    /// faults and none for the timer.
    pub kill_fault: Option<String>,
    /// The accepted tokens by name (empty: none required).
    pub tokens: Vec<(String, String)>,
    /// For `/api/plugins`: it changes once the plugin files still loading at the start
    /// have loaded.
    pub plugins: Arc<RwLock<PluginList>>,
    /// Which plugin each fault uses.
    pub fault_plugins: BTreeMap<String, String>,
    /// The window as the banner says it, with its zone (`from 11:00 to 18:00, Mon thru
    /// Fri (Asia/Tokyo)`), for `/api/status`.
    pub window: String,
    /// The window's IANA zone, if it has one (else local time), for `/api/status`.
    pub zone: Option<String>,
}

const ROUTES: &str = "the API has POST /api/kill, POST /api/faults/{name}, GET /api/plugins, GET /api/history, GET /api/status, POST /api/pause, POST /api/resume, POST /api/revert/{id}, POST /api/ack, POST /api/alerts, GET /api/report, GET /api/events, GET /metrics, GET /healthz and the dashboard at GET /";

/// Who is asking: the client's address and, with named tokens, the token's name (never
/// the token).
#[derive(Debug, Clone)]
struct Caller(String);

/// An error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "code": status.as_u16(), "message": message.into() });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

#[derive(Debug)]
struct Unauthorized;
impl warp::reject::Reject for Unauthorized {}

/// Compares without leaking where the first difference is, or the expected length:
/// every byte of the expected token is compared, whatever was given.
fn same_token(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut differ = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        differ |= e ^ given.get(i).copied().unwrap_or(!e);
    }
    differ == 0
}

/// The credentials of an `Authorization` header with the bearer scheme, which is
/// case-insensitive (RFC 7235): `Bearer x`, `bearer x`, `BEARER x`.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Binds the listener (so a taken port fails at startup) and returns the server future.
pub fn bind(
    config: &HttpConfig,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let api = Arc::new(api);
    let needs_token = !api.tokens.is_empty();
    let authorized = routes::authorized(api);
    let body = whole_body(config.max_body_bytes, config.limits.header_read_timeout);
    let max = config.max_body_bytes;
    // Before any route: a page of another site, or one that rebound its name to us,
    // is refused whatever it asks for.
    let guard = origin::Guard::new(config.listen.ip(), needs_token, &config.allowed_hosts);
    let limits = within_open_files(config.limits);
    let every = routes::faults(&authorized, &body)
        .or(fleet::switch(&authorized))
        .unify()
        .or(fleet::view(&authorized))
        .unify()
        .or(routes::controls(&authorized, &body))
        .unify()
        .or(routes::looks(
            &authorized,
            needs_token,
            dashboard::max_watchers(limits.max_connections),
            limits.header_read_timeout,
        ))
        .unify()
        .boxed();
    // Every answer says `Cache-Control: no-store` unless it says otherwise (the server
    // adds it: `server::NOT_TO_KEEP`).
    let routes = guard
        .filter()
        .and(every)
        .recover(move |r| rejection(r, max));
    server::bind(config.listen, routes, limits, shutdown)
        .map_err(|e| anyhow!("cannot listen on {}: {e}", config.listen))
}

/// A body past `max_body_bytes`, said before it is read (its Content-Length) or as it
/// comes (chunked).
#[derive(Debug)]
struct TooLarge;

impl warp::reject::Reject for TooLarge {}

/// A body that did not come whole within the time a request head has
/// (`http.header_timeout`): a client that sends a head and then nothing more holds a
/// connection no longer than one that sends half a head.
#[derive(Debug)]
struct TooSlow(Duration);

impl warp::reject::Reject for TooSlow {}

/// A body that cannot be read as HTTP frames it (a broken chunk).
#[derive(Debug)]
struct Unreadable(String);

impl warp::reject::Reject for Unreadable {}

/// The request's body, whole, at most `max` bytes. A request without Content-Length is
/// read too, rather than refused with 411: `curl -X POST` without `-d` sends no body and
/// no length (the original answered `format error`, and so does the API), and a client
/// may send its body chunked; either is counted as it comes and cut off past `max`.
/// All of it within `within` of the head's end.
fn whole_body(
    max: u64,
    within: Duration,
) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length, stream| async move {
            tokio::time::timeout(within, read_whole(length, stream, max))
                .await
                .unwrap_or_else(|_| Err(warp::reject::custom(TooSlow(within))))
        })
}

/// [`whole_body`]'s reading, past the filter's types that cannot be named.
async fn read_whole<B: bytes::Buf>(
    length: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<B, warp::Error>>,
    max: u64,
) -> Result<bytes::Bytes, Rejection> {
    use futures_util::StreamExt as _;
    if length.is_some_and(|length| length > max) {
        return Err(warp::reject::custom(TooLarge));
    }
    let mut stream = std::pin::pin!(stream);
    // A body in one piece (nearly every request's) is taken as it came, not copied.
    let mut first: Option<bytes::Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        // A client gone mid-body gets no answer anyway; a broken chunk gets a 400.
        let mut chunk = chunk.map_err(|e| warp::reject::custom(Unreadable(e.to_string())))?;
        total += chunk.remaining() as u64;
        if total > max {
            return Err(warp::reject::custom(TooLarge));
        }
        let piece = chunk.copy_to_bytes(chunk.remaining());
        if first.is_none() && joined.is_empty() {
            first = Some(piece);
        } else {
            if let Some(first) = first.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&piece);
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// Descriptors kept out of the connections' reach: for the reverts' pidfds, the
/// plugin workers' pipes, the journal and the pause file's watch.
pub(crate) const RESERVED_FILES: u64 = 256;

/// The configured limits, with the connection cap lowered (and said once) if the limit
/// of open files would not leave [`RESERVED_FILES`] besides them.
fn within_open_files(limits: server::Limits) -> server::Limits {
    let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let fits = connections_within(limits.max_connections, open_files);
    if (limits.max_connections as u64) <= fits {
        return limits;
    }
    log::line(format!(
        "warning: serving at most {fits} connections at once, not {}: the limit of open files is {open_files}, and {RESERVED_FILES} are kept for reverts, plugins and the journal (raise LimitNOFILE=)",
        limits.max_connections
    ));
    server::Limits {
        max_connections: fits as usize,
        ..limits
    }
}

/// The connections the API serves at once (each a descriptor) when `max_connections`
/// are configured and `open_files` is the limit: its cap, lowered as
/// [`within_open_files`] lowers it.
pub(crate) fn connections_within(max_connections: usize, open_files: u64) -> u64 {
    (max_connections as u64).min(open_connections(open_files))
}

/// How many connections fit in `open_files` descriptors besides the reserve (at least 16).
fn open_connections(open_files: u64) -> u64 {
    open_files.saturating_sub(RESERVED_FILES).max(16)
}

/// The description from a body like the original's `{"desc":"I like kill!"}`, whatever
/// the content type (curl's `-d` sends a form type with a JSON body; a browser's form of
/// another site never gets here: `origin` refuses it); else the message of the 400
/// answer.
fn desc(body: &[u8]) -> Result<String, &'static str> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| "format error")?;
    match value.get("desc") {
        Some(serde_json::Value::String(s)) => match check_desc(s) {
            Ok(()) => Ok(s.clone()),
            Err(BadDesc::TooLong) => Err("desc is longer than 1024 bytes: say why in a sentence"),
            Err(BadDesc::Empty) => {
                Err("desc must not be empty: say why, e.g. {\"desc\":\"I like kill!\"}")
            }
        },
        Some(_) => Err("desc must be a string, e.g. {\"desc\":\"I like kill!\"}"),
        None => Err("desc is required: send a JSON object like {\"desc\":\"I like kill!\"}"),
    }
}

/// The bytes asked for an answer's JSON at once: most answers fit, and the request
/// stays below glibc's first "large" size (1,024 bytes with its header).
const ANSWER_ROOM: usize = 1000;

async fn fire(api: Arc<Api>, caller: Caller, fault: String, body: &[u8]) -> Response {
    let desc = match desc(body) {
        Ok(desc) => desc,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let ask = Ask {
        fault,
        desc,
        trigger: "http",
        requested_by: Some(caller.0),
    };
    // The answer's JSON is written where the fault ran, off the one async thread, into
    // room for most answers (some 550 bytes; a long command line or description takes
    // more) asked at once, and under 1 KiB: a bigger request, or one grown past it by
    // doubling, makes glibc's `malloc` tidy up its free lists first, at every fault.
    let render = |injection: &Injection| {
        let mut body = Vec::with_capacity(ANSWER_ROOM);
        serde_json::to_writer(&mut body, &Answer::of(injection)).map(|()| body)
    };
    match api.injector.inject_then(ask, render).await {
        Ok((_, Ok(body))) => {
            let mut answer = Response::new(body.into());
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            answer
        }
        Ok((injection, Err(_))) => warp::reply::json(&Answer::of(&injection)).into_response(),
        Err(e) => {
            let refusal = Refusal::of(&e);
            let status =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            retry_after(error(status, refusal.message), refusal.retry_after)
        }
    }
}

/// `/api/faults/NAME` for a fault the config does not name: the ones it does.
fn unknown_fault(api: &Api, name: &str) -> Response {
    let names: Vec<&str> = api.fault_plugins.keys().map(String::as_str).collect();
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no fault named `{}` is configured (configured: {}); GET /api/plugins lists them",
            crate::support::text::escape_controls(&crate::support::text::clip(name, 100)),
            names.join(", ")
        ),
    )
}

/// `/api/kill` where the config names several faults and none for the timer: which to
/// fire is the config's to say, not the route's.
fn no_kill_fault(api: &Api) -> Response {
    let names: Vec<&str> = api.fault_plugins.keys().map(String::as_str).collect();
    error(
        StatusCode::NOT_FOUND,
        format!(
            "POST /api/kill fires the timer's fault, and the config names none: several faults are configured ({}); fire one with POST /api/faults/NAME, or name it in the config with timer: (fault: \"NAME\")",
            names.join(", ")
        ),
    )
}

/// Adds `Retry-After` in whole seconds (at least 1).
pub(super) fn retry_after(mut answer: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        if let Ok(value) = secs.to_string().parse() {
            answer.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    answer
}

/// The kill switch. It acts at once: every request is refused from then on; the active
/// faults are reverted, each on a thread of its own, and the answer (within a tenth of a
/// second) names those whose plugin had not answered yet.
/// Done whole on a task of its own, logged included, whoever stops waiting: a client
/// that hangs up right after asking still pauses the monkey, and the log says who did.
async fn switch(api: Arc<Api>, caller: Caller, on: bool) -> Response {
    let injector = api.injector.clone();
    let switching = tokio::spawn(async move {
        let switched = injector.switch(on).await;
        match (on, &switched.paused) {
            (false, Some(why)) => log::line(format!(
                "Nightmare Monkey is still paused (POST /api/resume, {}): {why}",
                caller.0
            )),
            _ => log::line(format!(
                "Nightmare Monkey is {} (POST /api/{}, {})",
                if on { "paused" } else { "resumed" },
                if on { "pause" } else { "resume" },
                caller.0
            )),
        }
        switched
    });
    let switched = match switching.await {
        Ok(switched) => switched,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the kill switch failed: {e}"),
            )
        }
    };
    let reverting: Vec<String> = switched
        .reverting
        .iter()
        .map(|r| format!("{} ({})", r.id, r.fault))
        .collect();
    let message = match (&switched.paused, on) {
        (Some(_), true) if reverting.is_empty() => {
            "Nightmare Monkey is paused: every trigger is refused and active faults were reverted".to_owned()
        }
        (Some(_), true) => format!(
            "Nightmare Monkey is paused: every trigger is refused; still reverting (their plugins have not answered yet): {}",
            reverting.join(", ")
        ),
        (Some(why), false) => format!("still paused: {why}"),
        (None, _) => "Nightmare Monkey is playing again".to_owned(),
    };
    let ids: Vec<&str> = switched.reverting.iter().map(|r| r.id.as_str()).collect();
    let answer = warp::reply::json(
        &json!({ "paused": switched.paused.is_some(), "reverting": ids, "message": message }),
    );
    // A resume that leaves it paused (the pause file) did not do what was asked.
    let status = if !on && switched.paused.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    warp::reply::with_status(answer, status).into_response()
}

async fn rejection(r: Rejection, max_body: u64) -> Result<Response, Infallible> {
    Ok(if let Some(refused) = r.find::<origin::Refused>() {
        metrics::get().refused(Refused::Origin);
        error(refused.status, refused.message.clone())
    } else if r.find::<Unauthorized>().is_some() {
        metrics::get().refused(Refused::Auth);
        let mut answer = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
        );
        answer.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        answer
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method not allowed: {ROUTES}"),
        )
    } else if r.find::<TooLarge>().is_some() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max_body} bytes"),
        )
    } else if let Some(TooSlow(within)) = r.find() {
        error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not come whole within {}",
                humantime::format_duration(*within)
            ),
        )
    } else if let Some(Unreadable(why)) = r.find() {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "the body cannot be read: {}",
                crate::support::text::escape_controls(why)
            ),
        )
    } else if r.is_not_found() {
        error(StatusCode::NOT_FOUND, format!("not found: {ROUTES}"))
    } else {
        error(StatusCode::BAD_REQUEST, "bad request")
    })
}

#[cfg(test)]
mod tests {
    use crate::domain::injection::MAX_DESC_BYTES;

    proptest::proptest! {
        // Whatever a client sends as a body: a description within the bounds, or a
        // one-line reason for the 400; never a panic.
        #[test]
        fn any_body_is_a_description_or_a_one_line_refusal(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            desc in "\\PC{0,1100}",
            nesting in 0usize..400,
        ) {
            let json = serde_json::json!({ "desc": desc }).to_string();
            let nested = format!("{}{}", "[".repeat(nesting), "]".repeat(nesting));
            for body in [body, json.into_bytes(), nested.into_bytes()] {
                match super::desc(&body) {
                    Ok(desc) => {
                        proptest::prop_assert!(!desc.trim().is_empty());
                        proptest::prop_assert!(desc.len() <= MAX_DESC_BYTES);
                    }
                    Err(message) => proptest::prop_assert!(!message.contains('\n')),
                }
            }
        }
    }

    #[test]
    fn connections_leave_a_reserve_of_descriptors() {
        assert_eq!(super::open_connections(1024), 768);
        assert_eq!(super::open_connections(300), 44);
        assert_eq!(super::open_connections(100), 16, "never fewer than 16");
        assert_eq!(super::open_connections(u64::MAX), u64::MAX - 256);
    }

    use super::*;

    #[test]
    fn tokens_compare_whole_and_the_scheme_is_case_insensitive() {
        assert!(same_token("s3cret", "s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3cret", "s3creu"] {
            assert!(!same_token(wrong, "s3cret"), "{wrong}");
        }
        assert!(
            !same_token("\u{0}", ""),
            "a longer guess than an empty token"
        );
        assert!(same_token("", ""));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn a_description_is_a_sentence_not_a_flood() {
        let ok = format!("{{\"desc\":\"{}\"}}", "a".repeat(MAX_DESC_BYTES));
        assert_eq!(desc(ok.as_bytes()).map(|d| d.len()), Ok(MAX_DESC_BYTES));
        let long = format!("{{\"desc\":\"{}\"}}", "a".repeat(MAX_DESC_BYTES + 1));
        assert_eq!(
            desc(long.as_bytes()),
            Err("desc is longer than 1024 bytes: say why in a sentence")
        );
    }
}
