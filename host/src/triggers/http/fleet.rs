//! The fleet through the API: `GET /api/fleet`, and its switch: `POST /api/pause?scope=fleet` (with an optional
//! `reason=`) and `POST /api/resume?scope=fleet`, token-protected like the node's own
//! switch. They write the switch in the fleet's coordinator; every daemon of the fleet,
//! this one included, follows it from there. Without `scope=fleet` the node's own
//! switch answers (`routes::controls`).

use std::sync::Arc;

use serde::Deserialize;
use warp::{http::StatusCode, reply::Response, Filter, Rejection, Reply};

use super::{error, routes::Routes, Api, Caller};
use crate::output::log;

/// The query of a fleet-wide switch.
#[derive(Debug, Deserialize)]
struct Scope {
    scope: String,
    #[serde(default)]
    reason: String,
}

/// `POST /api/pause?scope=fleet` and `POST /api/resume?scope=fleet`; any other scope
/// falls through to the node's own switch.
pub(super) fn switch<A>(authorized: &A) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let fleet = warp::query::<Scope>().and_then(|scope: Scope| async move {
        if scope.scope == "fleet" {
            Ok(scope.reason)
        } else {
            Err(warp::reject::not_found())
        }
    });
    let on = warp::path!("api" / "pause").map(|| true);
    let off = warp::path!("api" / "resume").map(|| false);
    on.or(off)
        .unify()
        .and(warp::post())
        .and(fleet)
        .and(authorized.clone())
        .then(
            |on: bool, reason: String, api: Arc<Api>, caller: Caller| async move {
                turn(api, caller, on, reason).await
            },
        )
        .boxed()
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

async fn turn(api: Arc<Api>, caller: Caller, on: bool, reason: String) -> Response {
    let by = caller.0.clone();
    match api.injector.fleet_switch(on, by, reason).await {
        Err(None) => error(
            StatusCode::BAD_REQUEST,
            "scope=fleet: this daemon is in no fleet (its config has no fleet: section)",
        ),
        Err(Some(why)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "scope=fleet: the fleet's switch could not be written ({why}); nothing was changed"
            ),
        ),
        Ok(message) => {
            log::line(format!(
                "{message} ({}, {})",
                if on {
                    "POST /api/pause?scope=fleet"
                } else {
                    "POST /api/resume?scope=fleet"
                },
                caller.0
            ));
            warp::reply::json(
                &serde_json::json!({ "paused": on, "scope": "fleet", "message": message }),
            )
            .into_response()
        }
    }
}
