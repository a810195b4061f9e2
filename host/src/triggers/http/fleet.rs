//! The fleet through the API: `GET /api/fleet`, and its switch: `POST /api/pause?scope=fleet` (with an optional
//! `reason=`) and `POST /api/resume?scope=fleet`, token-protected like the node's own
//! switch. They write the switch in the fleet's coordinator; every daemon of the fleet,
//! this one included, follows it from there. Without `scope` the node's own switch
//! answers (`routes::controls`); any other scope is a 400.

use std::sync::Arc;

use warp::{http::StatusCode, reply::Response, Filter, Rejection, Reply};

use super::{error, routes::Routes, Api, Caller};
use crate::output::log;

/// The one scope there is besides this node's own (no `scope` at all).
const FLEET: &str = "fleet";

/// `POST /api/pause?scope=fleet` and `POST /api/resume?scope=fleet`; without a scope the
/// request falls through to the node's own switch, and any other scope is a 400 (a
/// mistyped `scope=Fleet` must not pause this node alone).
pub(super) fn switch<A>(authorized: &A) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
{
    // Every pair of the query, so that no repeated or odd parameter makes it fail to
    // parse and fall through to the node's own switch.
    let fleet = warp::query::<Vec<(String, String)>>().and_then(
        |query: Vec<(String, String)>| async move {
            let of = |name: &str| -> Vec<String> {
                query
                    .iter()
                    .filter(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
                    .collect()
            };
            let scopes = of("scope");
            if scopes.is_empty() {
                return Err(warp::reject::not_found());
            }
            Ok(match scopes.into_iter().find(|scope| scope != FLEET) {
                Some(other) => Err(other),
                None => Ok(of("reason").pop().unwrap_or_default()),
            })
        },
    );
    let on = warp::path!("api" / "pause").map(|| true);
    let off = warp::path!("api" / "resume").map(|| false);
    on.or(off)
        .unify()
        .and(warp::post())
        .and(fleet)
        .and(authorized.clone())
        .then(
            |on: bool, reason: Result<String, String>, api: Arc<Api>, caller: Caller| async move {
                match reason {
                    Ok(reason) => match crate::fleet::Switch::check_reason(&reason) {
                        Ok(()) => turn(api, caller, on, reason).await,
                        Err(why) => error(StatusCode::BAD_REQUEST, why),
                    },
                    Err(scope) => error(StatusCode::BAD_REQUEST, unknown_scope(&scope)),
                }
            },
        )
        .boxed()
}

/// The message of a 400 for `scope` other than `fleet`.
fn unknown_scope(scope: &str) -> String {
    format!(
        "invalid scope `{}`: expected scope=fleet (every daemon of the fleet), or no scope for this daemon alone",
        scope.escape_debug()
    )
}

/// `GET /api/fleet`: the fleet as its coordinator holds it (nodes, slots, budget,
/// switch).
pub(super) fn view<A>(authorized: &A) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
{
    warp::path!("api" / "fleet")
        .and(warp::get())
        .and(authorized.clone())
        .then(|api: Arc<Api>, _: Caller| async move {
            match api.injector.fleet_view().await {
                None => error(
                    StatusCode::NOT_FOUND,
                    "this daemon is in no fleet (its config has no fleet: section)",
                ),
                Some(Err(why)) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the fleet from etcd ({why})"),
                ),
                Some(Ok(view)) => warp::reply::json(&view).into_response(),
            }
        })
        .boxed()
}

/// Done whole on a task of its own, logged included, whoever stops waiting (as the
/// node's own switch is).
async fn turn(api: Arc<Api>, caller: Caller, on: bool, reason: String) -> Response {
    let injector = api.injector.clone();
    let who = caller.0.clone();
    let turning = tokio::spawn(async move {
        let turned = injector.fleet_switch(on, who.clone(), reason).await;
        if let Ok(message) = &turned {
            log::line(format!(
                "{message} ({}, {who})",
                if on {
                    "POST /api/pause?scope=fleet"
                } else {
                    "POST /api/resume?scope=fleet"
                },
            ));
        }
        turned
    });
    let Ok(turned) = turning.await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "scope=fleet: the fleet's switch failed",
        );
    };
    match turned {
        Err(None) => error(
            StatusCode::BAD_REQUEST,
            "scope=fleet: this daemon is in no fleet (its config has no fleet: section)",
        ),
        Err(Some(why)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scope=fleet: the fleet's switch could not be written ({why})"),
        ),
        Ok(message) => warp::reply::json(
            &serde_json::json!({ "paused": on, "scope": "fleet", "message": message }),
        )
        .into_response(),
    }
}
