//! Did the team notice? `POST /api/ack` (an engineer, a chat bot's "ack") and
//! `POST /api/alerts` (Alertmanager's webhook) mark a fault detected; `GET /api/report`
//! answers what the drill came to.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;
use warp::{http::StatusCode, reply::Response, Reply};

use super::{error, Api, Caller};
use crate::{
    dispatch::{AckError, Acknowledged},
    domain::journal::parse_since,
    output::{log, picture::timeline::timeline_svg},
    support::{text::escape_controls, thread::on_own_thread},
};

/// The longest `by` kept: a name, not a letter.
const MAX_BY: usize = 64;

/// `POST /api/ack` with `{"by": "alice"}` and, optionally, `"id"`: the fault's first
/// ack. Without `by`, the token's name (or the client's address) says who.
pub(super) async fn ack(api: Arc<Api>, caller: Caller, body: &[u8]) -> Response {
    let request: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    r#"send a JSON object like {"by": "alice"} (and "id" for a fault other than the latest)"#,
                )
            }
        }
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match request.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Ok(Some(s.trim().to_owned()))
            }
            Some(_) => Err(format!("{key} must be a non-empty string")),
        }
    };
    let (by, id) = match (text("by"), text("id")) {
        (Ok(by), Ok(id)) => (by, id),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let by = by.unwrap_or_else(|| who(&caller));
    if by.chars().count() > MAX_BY {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "by is {} characters long: at most {MAX_BY}",
                by.chars().count()
            ),
        );
    }
    // A name from the network is data: it never forges a log or journal line.
    let by = escape_controls(&by).into_owned();
    answer(api.injector.acknowledge(by, id, None).await)
}

/// Who an ack without `by` came from: the token's name, else the client's address.
fn who(caller: &Caller) -> String {
    match caller.0.split_once(" (") {
        Some((_, name)) => name.trim_end_matches(')').to_owned(),
        None => caller.0.clone(),
    }
}

/// The answer to an ack (or an alert that marked a fault).
fn answer(done: Option<Result<Acknowledged, AckError>>) -> Response {
    match done {
        Some(Ok(ack)) => warp::reply::json(&ack).into_response(),
        Some(Err(e)) => {
            let status = match e {
                AckError::Unknown(_) => StatusCode::NOT_FOUND,
                AckError::NothingOpen
                | AckError::NotReal { .. }
                | AckError::Already { .. }
                | AckError::Before { .. } => StatusCode::CONFLICT,
                AckError::NoJournal | AckError::Journal(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.to_string())
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ack could not be taken now: try again",
        ),
    }
}

/// `POST /api/alerts`: Alertmanager's webhook (payload version 4). The first firing
/// alert marks the latest unnoticed fault detected, `by` `alertmanager:<alertname>`.
/// Always 200 for a payload that reads (Alertmanager retries anything else), saying
/// what it did: `{"detected": {...}}` or `{"detected": null, "why": "..."}`.
pub(super) async fn alerts(api: Arc<Api>, body: &[u8]) -> Response {
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "send Alertmanager's webhook payload (a JSON object with \"alerts\")",
            )
        }
    };
    if payload.get("version").and_then(|v| v.as_str()) != Some("4") {
        return error(
            StatusCode::BAD_REQUEST,
            "expected Alertmanager's webhook payload version \"4\"",
        );
    }
    let Some(alerts) = payload.get("alerts").and_then(|a| a.as_array()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the payload has no \"alerts\" list",
        );
    };
    let firing = alerts
        .iter()
        .find(|a| a.get("status").and_then(|s| s.as_str()).unwrap_or("firing") == "firing");
    let Some(firing) = firing else {
        return warp::reply::json(&json!({"detected": null, "why": "no alert is firing"}))
            .into_response();
    };
    let name = firing
        .pointer("/labels/alertname")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("unnamed");
    let name: String = escape_controls(name).chars().take(MAX_BY).collect();
    // An alert firing since before the fault is about something else.
    let started = firing
        .get("startsAt")
        .and_then(|s| s.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    match api
        .injector
        .acknowledge(format!("alertmanager:{name}"), None, started)
        .await
    {
        Some(Ok(ack)) => warp::reply::json(&json!({ "detected": ack })).into_response(),
        // Alertmanager sends a firing group again and again: that is no error.
        Some(Err(
            e @ (AckError::NothingOpen | AckError::Already { .. } | AckError::Before { .. }),
        )) => {
            log::line(format!("alert {name}: {e}"));
            warp::reply::json(&json!({"detected": null, "why": e.to_string()})).into_response()
        }
        other => answer(other),
    }
}

/// `GET /api/report?since=7d`: the report as JSON; with `format=svg`, its timeline
/// from `since` to now as one SVG picture (the dashboard's).
pub(super) async fn report(api: Arc<Api>, query: BTreeMap<String, String>) -> Response {
    // The last week unless asked otherwise, as `report` does: all of a year's
    // archives read at every request is not a default.
    let since = match parse_since(query.get("since").map_or("7d", String::as_str)) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let svg = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("svg") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format: `{other}` is not one of json, svg"),
            )
        }
    };
    // A few at once, as history's: each reads the disk on a thread of its own.
    let Ok(_reading) = super::history::HISTORY_READERS.try_acquire() else {
        return super::retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: other reads of the journal are under way; try again",
            ),
            Some(1),
        );
    };
    let Some(journal) = api.injector.journal_path() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no journal: nothing to report",
        );
    };
    on_own_thread("report", move || {
        match crate::domain::report::read(&journal, Some(since)) {
            Ok(report) if svg => {
                let picture =
                    timeline_svg(&report, since, chrono::Utc::now(), &api.injector.zone());
                let mut answer = picture.into_response();
                let headers = answer.headers_mut();
                headers.insert(
                    warp::http::header::CONTENT_TYPE,
                    warp::http::HeaderValue::from_static("image/svg+xml; charset=utf-8"),
                );
                // Opened on its own, a picture runs nothing and fetches nothing.
                headers.insert(
                    warp::http::header::CONTENT_SECURITY_POLICY,
                    warp::http::HeaderValue::from_static(
                        "default-src 'none'; style-src 'unsafe-inline'",
                    ),
                );
                headers.insert(
                    warp::http::header::X_CONTENT_TYPE_OPTIONS,
                    warp::http::HeaderValue::from_static("nosniff"),
                );
                answer
            }
            Ok(report) => warp::reply::json(&report).into_response(),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {}: {e}", journal.display()),
            ),
        }
    })
    .await
    .unwrap_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "busy: try again"))
}
