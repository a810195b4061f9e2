//! Did the team notice? `POST /api/ack` (an engineer, a chat bot's "ack") and
//! `POST /api/alerts` (Alertmanager's webhook) mark a fault detected; `GET /api/report`
//! answers what the drill came to.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;
use warp::{http::StatusCode, reply::Response, Reply};

use super::{error, Api, Caller};
use crate::{
    domain::drill::{AckError, Acknowledged},
    output::{log, picture::timeline::timeline_svg},
    storage::journal::parse_since,
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

/// `POST /api/alerts`: Alertmanager's webhook (payload version 4). A firing alert that
/// started after the latest unnoticed fault marks it detected, `by`
/// `alertmanager:<alertname>` (see [`marking_alert`]).
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
    let (name, started) = match marking_alert(alerts, chrono::Utc::now()) {
        Ok(found) => found,
        Err(why) => {
            log::line(format!("alerts: {why}"));
            return warp::reply::json(&json!({"detected": null, "why": why})).into_response();
        }
    };
    match api
        .injector
        .acknowledge(format!("alertmanager:{name}"), None, Some(started))
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

/// How far ahead of this host's clock an alert's `startsAt` may be (another host's clock)
/// and still be taken as now.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Of the firing alerts whose `startsAt` reads and is not in the future, the one that
/// started last, by name: if any started after the fault, it did (Alertmanager sorts a
/// notification's alerts by their labels, not by time). `Err` says why none can mark a
/// fault: none is firing, or each one's start is missing, unreadable or in the future.
fn marking_alert(
    alerts: &[serde_json::Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, chrono::DateTime<chrono::Utc>), String> {
    let mut latest: Option<(String, chrono::DateTime<chrono::Utc>)> = None;
    let mut refused = Vec::new();
    let mut firing = 0;
    for alert in alerts {
        if alert
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("firing")
            != "firing"
        {
            continue;
        }
        firing += 1;
        let name = alert
            .pointer("/labels/alertname")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("unnamed");
        let name: String = escape_controls(name).chars().take(MAX_BY).collect();
        let text = alert.get("startsAt").and_then(|s| s.as_str());
        let started = text
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        match started {
            Some(t) if t > now + CLOCK_SKEW => {
                refused.push(format!("{name} starts in the future ({})", shown(text)))
            }
            Some(t) => {
                if latest.as_ref().is_none_or(|(_, l)| t > *l) {
                    latest = Some((name, t));
                }
            }
            None => refused.push(format!(
                "{name} has no startsAt that reads as an RFC 3339 time ({})",
                shown(text)
            )),
        }
    }
    if let Some(found) = latest {
        return Ok(found);
    }
    if firing == 0 {
        return Err("no alert is firing".to_owned());
    }
    let more = refused.len().saturating_sub(3);
    refused.truncate(3);
    let mut why = format!("no firing alert marks a fault: {}", refused.join("; "));
    if more > 0 {
        why.push_str(&format!("; and {more} more"));
    }
    Err(why)
}

/// A `startsAt` as a client sent it, for a message: escaped and cut.
fn shown(text: Option<&str>) -> String {
    match text {
        Some(t) => format!(
            "{:?}",
            escape_controls(t).chars().take(64).collect::<String>()
        ),
        None => "missing".to_owned(),
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
        match crate::storage::report::read(&journal, Some(since)) {
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::marking_alert;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn alert(name: &str, status: &str, starts: serde_json::Value) -> serde_json::Value {
        json!({"status": status, "labels": {"alertname": name}, "startsAt": starts})
    }

    const NOW: &str = "2026-12-06T12:00:00Z";

    #[test]
    fn the_firing_alert_that_started_last_marks_whatever_its_place() {
        // Sorted by labels, as Alertmanager sends them: the older alert first.
        let alerts = [
            alert("A-Old", "firing", json!("2026-12-06T09:00:00Z")),
            alert("B-New", "firing", json!("2026-12-06T11:59:00+00:00")),
            alert("C-Gone", "resolved", json!("2026-12-06T11:59:30Z")),
            alert("D-Mid", "firing", json!("2026-12-06T11:00:00Z")),
        ];
        assert_eq!(
            marking_alert(&alerts, at(NOW)),
            Ok(("B-New".to_owned(), at("2026-12-06T11:59:00Z")))
        );
        // No status reads as firing.
        let unlabelled = [json!({"startsAt": "2026-12-06T11:00:00Z"})];
        assert_eq!(
            marking_alert(&unlabelled, at(NOW)),
            Ok(("unnamed".to_owned(), at("2026-12-06T11:00:00Z")))
        );
    }

    #[test]
    fn bad_or_future_starts_mark_nothing_and_say_why() {
        let alerts = [
            alert("Ahead", "firing", json!("2026-12-06T12:00:06Z")),
            alert("Garbled", "firing", json!("yesterday")),
            alert("Number", "firing", json!(12)),
        ];
        assert_eq!(
            marking_alert(&alerts, at(NOW)),
            Err("no firing alert marks a fault: Ahead starts in the future (\"2026-12-06T12:00:06Z\"); Garbled has no startsAt that reads as an RFC 3339 time (\"yesterday\"); Number has no startsAt that reads as an RFC 3339 time (missing)".to_owned())
        );
        // A clock a few seconds ahead is another host's, not the future.
        let skewed = [alert("Skewed", "firing", json!("2026-12-06T12:00:05Z"))];
        assert_eq!(
            marking_alert(&skewed, at(NOW)).map(|(n, _)| n),
            Ok("Skewed".to_owned())
        );
        // A bad alert beside a good one: the good one marks.
        let mixed = [
            alert("Garbled", "firing", json!("soon")),
            alert("Good", "firing", json!("2026-12-06T11:00:00Z")),
        ];
        assert_eq!(
            marking_alert(&mixed, at(NOW)).map(|(n, _)| n),
            Ok("Good".to_owned())
        );
    }

    #[test]
    fn nothing_firing_or_many_bad_is_said_in_one_bounded_line() {
        let resolved = [alert("Done", "resolved", json!("2026-12-06T11:00:00Z"))];
        assert_eq!(
            marking_alert(&resolved, at(NOW)),
            Err("no alert is firing".to_owned())
        );
        assert_eq!(
            marking_alert(&[], at(NOW)),
            Err("no alert is firing".to_owned())
        );
        let many: Vec<_> = (0..10)
            .map(|i| alert(&format!("Bad{i}"), "firing", json!("x")))
            .collect();
        let why = marking_alert(&many, at(NOW)).unwrap_err();
        assert!(why.ends_with("; and 7 more"), "{why}");
        assert!(why.contains("Bad2") && !why.contains("Bad3"), "{why}");
    }
}
