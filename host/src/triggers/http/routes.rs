//! The routes, by concern: a fault and what is known of faults, the controls, and what
//! is looked at. Each group is boxed: one chain of every route nests types deep enough
//! to overflow the compiler's recursion limit in optimised builds.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use bytes::Bytes;
use serde_json::json;
use warp::{filters::BoxedFilter, http::header, reply::Response, Filter, Rejection, Reply};

use super::{
    bearer, dashboard, drill, fire, history, no_kill_fault, same_token, switch, unknown_fault, Api,
    Caller, Peer, Unauthorized,
};
use crate::output::metrics;

/// A group of routes. The filters every route shares (the caller, the body) stay
/// unboxed: a box is a call through a pointer on every request.
pub(super) type Routes = BoxedFilter<(Response,)>;

/// The API and the caller (its address, and the token's name), or a rejection when a
/// token is needed and none of them was given.
pub(super) fn authorized(
    api: Arc<Api>,
) -> impl Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static {
    let with_api = warp::any().map(move || api.clone());
    with_api
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::ext::optional::<Peer>())
        .and_then(
            |api: Arc<Api>, auth: Option<String>, peer: Option<Peer>| async move {
                let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.0.to_string());
                if api.tokens.is_empty() {
                    return Ok((api, Caller(peer)));
                }
                let given = auth.as_deref().and_then(bearer);
                // Every token is compared, so the time taken says nothing about which.
                let name = api
                    .tokens
                    .iter()
                    .filter(|(_, token)| given.is_some_and(|g| same_token(g, token)))
                    .map(|(name, _)| name.clone())
                    .next_back();
                match name {
                    Some(name) => Ok((api, Caller(format!("{peer} ({name})")))),
                    None => Err(warp::reject::custom(Unauthorized)),
                }
            },
        )
        .untuple_one()
}

/// `/healthz`, `POST /api/kill`, `POST /api/faults/{name}`, `GET /api/plugins`,
/// `GET /api/history` and `GET /api/status`.
pub(super) fn faults<A, B>(authorized: &A, body: &B) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
    B: Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({ "status": "ok" })).into_response());
    let kill = warp::path!("api" / "kill")
        .and(warp::post())
        .and(authorized.clone())
        .and(body.clone())
        .and_then(|api: Arc<Api>, caller: Caller, body: Bytes| async move {
            let Some(fault) = api.kill_fault.clone() else {
                return Ok::<_, Infallible>(no_kill_fault(&api));
            };
            Ok::<_, Infallible>(fire(api, caller, fault, &body).await)
        });
    let fault = warp::path!("api" / "faults" / String)
        .and(warp::post())
        .and(authorized.clone())
        .and(body.clone())
        .and_then(
            |name: String, api: Arc<Api>, caller: Caller, body: Bytes| async move {
                if !api.fault_plugins.contains_key(&name) {
                    return Ok::<_, Infallible>(unknown_fault(&api, &name));
                }
                Ok::<_, Infallible>(fire(api, caller, name, &body).await)
            },
        );
    let plugins = warp::path!("api" / "plugins")
        .and(warp::get())
        .and(authorized.clone())
        .map(|api: Arc<Api>, _: Caller| {
            let faults: Vec<_> = api
                .fault_plugins
                .iter()
                .map(|(name, plugin)| json!({ "name": name, "plugin": plugin }))
                .collect();
            let list = api.plugins.read().unwrap_or_else(|p| p.into_inner());
            warp::reply::json(
                &json!({ "plugins": list.loaded, "loading": list.loading, "faults": faults }),
            )
            .into_response()
        });
    let history = warp::path!("api" / "history")
        .and(warp::get())
        .and(authorized.clone())
        .and(warp::query::<BTreeMap<String, String>>())
        .then(
            |api: Arc<Api>, _: Caller, query: BTreeMap<String, String>| history::answer(api, query),
        );
    let status = warp::path!("api" / "status")
        .and(warp::get())
        .and(authorized.clone())
        .map(|api: Arc<Api>, _: Caller| {
            let mut status = serde_json::to_value(api.injector.status()).unwrap_or_default();
            if let Some(fields) = status.as_object_mut() {
                fields.insert("version".to_owned(), json!(env!("CARGO_PKG_VERSION")));
                fields.insert("window".to_owned(), json!(api.window));
                fields.insert("zone".to_owned(), json!(api.zone));
                fields.insert("proxies".to_owned(), json!(net_faults::proxy::status()));
            }
            warp::reply::json(&status).into_response()
        });
    health
        .or(kill)
        .unify()
        .or(fault)
        .unify()
        .or(plugins)
        .unify()
        .or(history)
        .unify()
        .or(status)
        .unify()
        .boxed()
}

/// The kill switch (`POST /api/pause`, `POST /api/resume`), `POST /api/revert/{id}`,
/// `POST /api/ack` and `POST /api/alerts`.
pub(super) fn controls<A, B>(authorized: &A, body: &B) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
    B: Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let pause = warp::path!("api" / "pause")
        .and(warp::post())
        .and(authorized.clone())
        .and_then(|api: Arc<Api>, caller: Caller| async move {
            Ok::<_, Infallible>(switch(api, caller, true).await)
        });
    let resume = warp::path!("api" / "resume")
        .and(warp::post())
        .and(authorized.clone())
        .and_then(|api: Arc<Api>, caller: Caller| async move {
            Ok::<_, Infallible>(switch(api, caller, false).await)
        });
    let revert = warp::path!("api" / "revert" / String)
        .and(warp::post())
        .and(authorized.clone())
        .then(|id: String, api: Arc<Api>, caller: Caller| async move {
            dashboard::revert(api, caller, id).await
        });
    let ack = warp::path!("api" / "ack")
        .and(warp::post())
        .and(authorized.clone())
        .and(body.clone())
        .then(|api: Arc<Api>, caller: Caller, body: Bytes| async move {
            drill::ack(api, caller, &body).await
        });
    let alerts = warp::path!("api" / "alerts")
        .and(warp::post())
        .and(authorized.clone())
        .and(body.clone())
        .then(
            |api: Arc<Api>, _: Caller, body: Bytes| async move { drill::alerts(api, &body).await },
        );
    pause
        .or(resume)
        .unify()
        .or(revert)
        .unify()
        .or(ack)
        .unify()
        .or(alerts)
        .unify()
        .boxed()
}

/// `GET /api/report`, `GET /metrics`, the dashboard's page (`GET /`) and its events
/// (`GET /api/events`).
/// `watchers`: the places among the event watchers; `kept`: how long a watcher keeps its
/// place whoever comes (the header timeout, which bounds every client that reads
/// nothing).
pub(super) fn looks<A>(
    authorized: &A,
    needs_token: bool,
    watchers: usize,
    kept: std::time::Duration,
) -> Routes
where
    A: Filter<Extract = (Arc<Api>, Caller), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let report = warp::path!("api" / "report")
        .and(warp::get())
        .and(authorized.clone())
        .and(warp::query::<BTreeMap<String, String>>())
        .then(
            |api: Arc<Api>, _: Caller, query: BTreeMap<String, String>| async move {
                drill::report(api, query).await
            },
        );
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(authorized.clone())
        .map(|api: Arc<Api>, _: Caller| {
            metrics::get().set_paused(api.injector.paused().is_some());
            let mut answer = metrics::get().render().into_response();
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            answer
        });
    let dashboard = warp::path::end()
        .and(warp::get())
        .map(move || dashboard::page(needs_token));
    let events = warp::path!("api" / "events")
        .and(warp::get())
        .and(authorized.clone())
        .map(move |_: Arc<Api>, _: Caller| dashboard::stream(watchers, kept));
    report
        .or(metrics)
        .unify()
        .or(dashboard)
        .unify()
        .or(events)
        .unify()
        .boxed()
}
