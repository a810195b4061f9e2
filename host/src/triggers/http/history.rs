//! `GET /api/history`: the answer key as JSON, a page at a time, read from the
//! journal's end backwards on a thread of its own, a few readers at once.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;
use warp::{http::StatusCode, reply::Response, Reply};

use super::{error, retry_after, Api};
use crate::{
    storage::{
        history as pages,
        journal::{parse_since, Position},
    },
    support::thread::on_own_thread,
};

/// The answer to `GET /api/history?query`.
pub(super) async fn answer(api: Arc<Api>, query: BTreeMap<String, String>) -> Response {
    // A few at once: each reads the disk on a thread of its own.
    let Ok(_reading) = HISTORY_READERS.try_acquire() else {
        return retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("busy: {MAX_HISTORY_READERS} history reads are under way; try again"),
            ),
            Some(1),
        );
    };
    // Off the runtime, on a thread of its own: a long look back never holds up
    // /healthz or the kill switch.
    on_own_thread("history", move || history(&api, &query))
        .await
        .unwrap_or_else(|| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the history could not be read",
            )
        })
}

/// How many `GET /api/history` are read at once; more are answered 503 with
/// `Retry-After`, so no crowd of slow looks back can take the disk and the threads.
const MAX_HISTORY_READERS: usize = 4;
pub(super) static HISTORY_READERS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_HISTORY_READERS);

/// How many faults a page of `GET /api/history` holds unless `limit` says.
const HISTORY_PAGE: usize = 100;

/// The answer key as JSON, a page at a time: the latest `limit` faults (default 100, at
/// most 10,000) asked for in `[since, until)`, oldest first, and `next`, the `before`
/// of the older page when there is one. Read from the journal's end backwards.
fn history(api: &Api, query: &BTreeMap<String, String>) -> Response {
    let instant = |key: &str| match query.get(key).map(|t| parse_since(t)) {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(t)),
        Some(Err(e)) => Err(e.replacen("since", key, 1)),
    };
    let (since, until) = match (instant("since"), instant("until")) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if pages::is_backwards(since, until) {
        return error(
            StatusCode::BAD_REQUEST,
            "since is after until: no fault can be in between (the two swapped?)",
        );
    }
    let before = match query.get("before").map(|b| b.parse::<Position>()) {
        None => None,
        Some(Ok(position)) => Some(position),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => HISTORY_PAGE,
        Some(Ok(n)) if (1..=pages::MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be 1 to {}", pages::MAX_LIMIT),
            )
        }
    };
    let run = match query.get("run").map(|r| pages::Run::parse(r)) {
        None => None,
        Some(Ok(run)) => Some(run),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("run: {e}")),
    };
    let nothing = || {
        warp::reply::json(&json!({ "faults": [], "problems": [], "next": null })).into_response()
    };
    let Some(path) = api.injector.journal_path() else {
        return nothing();
    };
    // `last` as `history --run last` reads it: the run of the latest fault journaled.
    let run = match run.map(|r| r.number(&path)) {
        None => None,
        Some(Ok(Some(run))) => Some(run),
        Some(Ok(None)) => return nothing(),
        Some(Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the journal {}: {e}", path.display()),
            )
        }
    };
    match pages::page(
        &path,
        pages::Query {
            since,
            until,
            before,
            limit,
            run,
        },
    ) {
        Ok(page) => warp::reply::json(&json!({
            "faults": page.entries,
            "problems": page.problems,
            "next": page.next.map(|p| p.to_string()),
        }))
        .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            error(StatusCode::BAD_REQUEST, format!("before: {e}"))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the journal {}: {e}", path.display()),
        ),
    }
}
