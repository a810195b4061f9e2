//! The live dashboard: `GET /` serves one self-contained page (HTML, CSS and JS in the
//! binary, nothing from the network), `GET /api/events` streams what happens as
//! server-sent events, and `POST /api/revert/{id}` is its "revert now".
//!
//! The page itself holds no data and is the same for everyone, so it is served without
//! a token: everything it shows comes from the API, with the token the page asks for
//! once (kept for the tab only, in `sessionStorage`).

use std::{
    convert::Infallible,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use serde_json::json;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use warp::{
    http::{header, StatusCode},
    reply::Response,
    Reply,
};

use super::{error, retry_after, Api, Caller};
use crate::output::{
    events::{self, Event},
    log,
};

/// The page, as served.
pub(super) const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the page. It names no fault, host or state: those come from the API. It
/// says only whether the API wants a token (`data-auth`), as any 401 would.
///
/// Its one script runs by a nonce drawn for this answer, never by `'unsafe-inline'`: so
/// markup that ever slipped into the page (a name from /proc, a timeline's text) could
/// not run an inline handler (`onload=`, `onerror=`) or a script of its own.
pub(super) fn page(needs_token: bool) -> Response {
    let Ok(nonce) = getrandom::u64().and_then(|a| getrandom::u64().map(|b| (a, b))) else {
        return retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no randomness for the page's script nonce now: try again",
            ),
            Some(1),
        );
    };
    let nonce = format!("{:016x}{:016x}", nonce.0, nonce.1);
    let mut page = PAGE.replacen("<script>", &format!(r#"<script nonce="{nonce}">"#), 1);
    if needs_token {
        page = page.replacen(r#"data-auth="none""#, r#"data-auth="token""#, 1);
    }
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut answer = warp::reply::html(page).into_response();
    let headers = answer.headers_mut();
    // Nothing from elsewhere: the page's own script (by its nonce) and style, its own API.
    match header::HeaderValue::from_str(&policy) {
        Ok(policy) => headers.insert(header::CONTENT_SECURITY_POLICY, policy),
        // Hex digits and ASCII: never. Without its policy, no page.
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "no policy for the page"),
    };
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    // Drawn anew each time: never kept by a cache.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    answer
}

/// How many watch `GET /api/events` at once, at most ([`max_watchers`] lowers it to
/// half of `http.max_connections`). A watcher that stops reading gives its place back:
/// once its buffers are full, the server's write gives up after the header timeout
/// (`server::Watched`) and the stream, with its place, is dropped. One that reads
/// nothing while nothing happens fills no buffer: when every place is taken, the next
/// watcher takes the place of the one that has watched longest, if that one has watched
/// for the header timeout (its stream ends; the dashboard comes back by itself). Only
/// when every place was taken less than that ago is a watcher answered 503.
pub(super) const MAX_WATCHERS: usize = 32;

/// The places among the watchers when the server serves `max_connections` at once:
/// half of them, at most [`MAX_WATCHERS`]. A stream is a request in flight for as long
/// as it lasts, so the server never closes one to make room; were every connection a
/// stream, `/healthz` and the kill switch would wait unaccepted until one ended. Half is
/// always left for them (and every other request), whatever the cap.
pub(super) fn max_watchers(max_connections: usize) -> usize {
    (max_connections / 2).min(MAX_WATCHERS)
}

/// The watchers' places, the longest held first.
static WATCHERS: std::sync::Mutex<std::collections::VecDeque<Place>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Numbers the places.
static NEXT_PLACE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A place taken: since when, and how its watcher is told to give it up.
struct Place {
    number: u64,
    since: std::time::Instant,
    given_up: Arc<tokio::sync::Notify>,
}

/// A place among the watchers, given back when the stream ends.
struct Watching {
    number: u64,
    /// Told when another watcher took this place.
    given_up: Arc<tokio::sync::Notify>,
}

impl Watching {
    /// One of `max` places, or the place of the one that has watched longest if it has
    /// watched for `kept`.
    fn take(max: usize, kept: Duration) -> Option<Self> {
        Self::take_at(std::time::Instant::now(), max, kept)
    }

    fn take_at(now: std::time::Instant, max: usize, kept: Duration) -> Option<Self> {
        if max == 0 {
            return None;
        }
        let mut places = crate::support::lock::lock(&WATCHERS);
        if places.len() >= max {
            let oldest = places.front()?;
            if now.saturating_duration_since(oldest.since) < kept {
                return None;
            }
            if let Some(oldest) = places.pop_front() {
                // A permit, kept if its stream is not waiting right now.
                oldest.given_up.notify_one();
            }
        }
        let number = NEXT_PLACE.fetch_add(1, Ordering::SeqCst);
        let given_up = Arc::new(tokio::sync::Notify::new());
        places.push_back(Place {
            number,
            since: now,
            given_up: given_up.clone(),
        });
        Some(Watching { number, given_up })
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        crate::support::lock::lock(&WATCHERS).retain(|p| p.number != self.number);
    }
}

/// How often a silent stream says it is alive (proxies close silent connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/events`: what happens, as server-sent events: `hello` first, then each
/// journal record by its type (`intent`, `outcome`, `revert`, `detected`,
/// `recovered`, ...), `switch` (the kill switch) and `next` (the timer's next fault);
/// `lagged` if this watcher fell behind (look again). Ends when the daemon shuts down,
/// or when a newcomer takes its place (one of `places`, [`max_watchers`]).
pub(super) fn stream(places: usize, kept: Duration) -> Response {
    if places == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no event stream with http.max_connections: 1: half of the connections are kept for other requests (raise it to 2 or more)",
        );
    }
    let Some(place) = Watching::take(places, kept) else {
        return retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("busy: {places} are watching the events already; try again"),
            ),
            Some(5),
        );
    };
    let hello = warp::sse::Event::default()
        .event("hello")
        .data(json!({ "version": env!("CARGO_PKG_VERSION") }).to_string());
    let start = futures_util::stream::once(async move { Ok::<_, Infallible>(hello) });
    let follow =
        futures_util::stream::unfold(Some((events::subscribe(), place)), |state| async move {
            let (mut receiver, place) = state?;
            // A place another watcher took ends this stream.
            let event = tokio::select! {
                event = next(&mut receiver) => event?,
                () = place.given_up.notified() => return None,
            };
            Some((Ok::<_, Infallible>(event), Some((receiver, place))))
        });
    let events = futures_util::StreamExt::chain(start, follow);
    let mut answer = warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events))
        .into_response();
    // Not buffered on the way (nginx): each event goes out as it happens.
    answer
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    answer
}

/// The next event to send; `None`: the daemon shuts down.
async fn next(receiver: &mut Receiver<Event>) -> Option<warp::sse::Event> {
    // Subscribed after the daemon said goodbye: nothing more will come.
    if events::closed() {
        return None;
    }
    match receiver.recv().await {
        Ok(Event::Happened { kind, data }) => {
            Some(warp::sse::Event::default().event(kind).data(data))
        }
        Ok(Event::Closing) | Err(RecvError::Closed) => None,
        Err(RecvError::Lagged(missed)) => Some(
            warp::sse::Event::default()
                .event("lagged")
                .data(json!({ "missed": missed }).to_string()),
        ),
    }
}

/// The longest fault id taken: ids are `<ms>-<n>`.
const MAX_ID: usize = 64;

/// `POST /api/revert/{id}`: reverts the active fault `id` now. 404 if it is not active
/// (never was, or already reverted); the answer says whether its revert is done or still
/// under way (its plugin has not answered within a tenth of a second).
pub(super) async fn revert(api: Arc<Api>, caller: Caller, id: String) -> Response {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !well_formed {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a fault id like 1764141234567-1 (GET /api/status lists the active faults)",
        );
    }
    // Done whole on a task of its own, logged included, whoever stops waiting.
    let injector = api.injector.clone();
    let (asked, who) = (id.clone(), caller.0.clone());
    let reverting = tokio::spawn(async move {
        let reverted = injector.revert(asked.clone()).await;
        if let Ok(Some((fault, _))) = &reverted {
            log::line(format!(
                "Revert now of {asked} ({fault}) asked (POST /api/revert, {who})"
            ));
        }
        reverted
    });
    let Ok(reverted) = reverting.await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the revert failed");
    };
    match reverted {
        Err(()) => retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no thread could be started for the revert now: try again (the fault is still active)",
            ),
            Some(1),
        ),
        Ok(Some((fault, under_way))) => {
            let message = if under_way {
                format!("reverting {id} ({fault}): its plugin has not answered yet")
            } else {
                format!("{id} ({fault}) reverted")
            };
            warp::reply::json(
                &json!({ "id": id, "fault": fault, "reverted": !under_way, "message": message }),
            )
            .into_response()
        }
        Ok(None) if api.injector.is_reverting(&id) => error(
            StatusCode::CONFLICT,
            format!("the revert of {id} is under way already: its plugin has not answered yet, or failed and is tried again until it works (GET /api/status lists it under reverting)"),
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no active fault {id}: it was reverted already, or never was active (GET /api/status lists the active ones)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn a_newcomer_takes_the_longest_held_place_once_it_was_held_long_enough() {
        let kept = Duration::from_secs(30);
        let start = std::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let max = MAX_WATCHERS;
        let mut all: Vec<Watching> = (0..max as u64)
            .map(|i| Watching::take_at(at(i), max, kept).expect("a free place"))
            .collect();
        // Every place taken less than 30 s ago: refused.
        assert!(Watching::take_at(at(29), max, kept).is_none());
        // The first was taken 30 s ago: its place goes to the newcomer, and it is told.
        let newcomer = Watching::take_at(at(30), max, kept).expect("the oldest place");
        assert!(all[0].given_up.notified().now_or_never().is_some());
        assert!(all[1].given_up.notified().now_or_never().is_none());
        // The second's turn comes a second later, not before.
        assert!(Watching::take_at(at(30), max, kept).is_none());
        assert!(Watching::take_at(at(31), max, kept).is_some());
        assert!(all[1].given_up.notified().now_or_never().is_some());
        // A place given back (its stream ended) is free again, whoever took it.
        all.truncate(2);
        drop(newcomer);
        assert!(lock_len() < MAX_WATCHERS);
        drop(all);
        assert_eq!(lock_len(), 0);
    }

    #[test]
    fn watchers_never_take_more_than_half_of_the_connections() {
        assert_eq!(max_watchers(1), 0);
        assert_eq!(max_watchers(2), 1);
        assert_eq!(max_watchers(4), 2);
        assert_eq!(max_watchers(63), 31);
        assert_eq!(max_watchers(64), MAX_WATCHERS);
        assert_eq!(max_watchers(65536), MAX_WATCHERS);
    }

    fn lock_len() -> usize {
        crate::support::lock::lock(&WATCHERS).len()
    }
}
