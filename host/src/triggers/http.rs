//! The HTTP trigger (warp): the original's `POST /api/kill`, plus `POST /api/faults/{name}`,
//! `GET /api/plugins` and `GET /healthz`. Every answer is JSON; errors are
//! `{"code": N, "message": "..."}`. A bearer token, when set, guards every `/api` call.

use std::{collections::BTreeMap, convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use anyhow::anyhow;
use bytes::Bytes;
use chrono::Utc;
use nightmare_monkey_plugin_api::sdk::ErrorKind;
use serde_json::json;
use warp::{
    http::{header, StatusCode},
    reply::Response,
    Filter, Rejection, Reply,
};

use crate::{
    config::HttpConfig,
    daemon,
    engine::{Engine, InjectError},
    setup::PluginInfo,
};

/// What the handlers share.
pub struct Api {
    /// The engine every request goes to.
    pub engine: Arc<Engine>,
    /// The fault `/api/kill` fires.
    pub kill_fault: String,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    /// For `/api/plugins`.
    pub plugins: Vec<PluginInfo>,
    /// Which plugin each fault uses.
    pub fault_plugins: BTreeMap<String, String>,
}

const ROUTES: &str =
    "the API has POST /api/kill, POST /api/faults/{name}, GET /api/plugins and GET /healthz";

/// An error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "code": status.as_u16(), "message": message.into() });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

#[derive(Debug)]
struct Unauthorized;
impl warp::reject::Reject for Unauthorized {}

/// Compares without leaking where the first difference is.
fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Binds the listener (so a taken port fails at startup) and returns the server future.
pub fn bind(
    config: &HttpConfig,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let api = Arc::new(api);
    let with_api = warp::any().map(move || api.clone());
    let authorized = with_api
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|api: Arc<Api>, auth: Option<String>| async move {
            match &api.token {
                None => Ok(api),
                Some(token) => {
                    let given = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
                    if given.is_some_and(|g| same_token(g.trim(), token)) {
                        Ok(api)
                    } else {
                        Err(warp::reject::custom(Unauthorized))
                    }
                }
            }
        });
    let body = warp::body::content_length_limit(config.max_body_bytes).and(warp::body::bytes());

    let kill = warp::path!("api" / "kill")
        .and(warp::post())
        .and(authorized.clone())
        .and(body)
        .and_then(|api: Arc<Api>, body: Bytes| async move {
            let fault = api.kill_fault.clone();
            Ok::<_, Infallible>(fire(api, fault, &body).await)
        });
    let fault = warp::path!("api" / "faults" / String)
        .and(warp::post())
        .and(authorized.clone())
        .and(body)
        .and_then(|name: String, api: Arc<Api>, body: Bytes| async move {
            Ok::<_, Infallible>(fire(api, name, &body).await)
        });
    let plugins = warp::path!("api" / "plugins")
        .and(warp::get())
        .and(authorized)
        .map(|api: Arc<Api>| {
            let faults: Vec<_> = api
                .fault_plugins
                .iter()
                .map(|(name, plugin)| json!({ "name": name, "plugin": plugin }))
                .collect();
            warp::reply::json(&json!({ "plugins": api.plugins, "faults": faults })).into_response()
        });
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({ "status": "ok" })).into_response());

    let max = config.max_body_bytes;
    let routes = health
        .or(kill)
        .unify()
        .or(fault)
        .unify()
        .or(plugins)
        .unify()
        .recover(move |r| rejection(r, max));
    warp::serve(routes)
        .try_bind_with_graceful_shutdown(config.listen, shutdown)
        .map_err(|e| {
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            anyhow!("cannot listen on {}: {cause}", config.listen)
        })
}

/// The description from a body like the original's `{"desc":"I like kill!"}`, whatever
/// the content type (curl's `-d` sends a form type with a JSON body); else the message of
/// the 400 answer.
fn desc(body: &[u8]) -> Result<String, &'static str> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| "format error")?;
    match value.get("desc") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(serde_json::Value::String(_)) => {
            Err("desc must not be empty: say why, e.g. {\"desc\":\"I like kill!\"}")
        }
        Some(_) => Err("desc must be a string, e.g. {\"desc\":\"I like kill!\"}"),
        None => Err("desc is required: send a JSON object like {\"desc\":\"I like kill!\"}"),
    }
}

async fn fire(api: Arc<Api>, fault: String, body: &[u8]) -> Response {
    let desc = match desc(body) {
        Ok(desc) => desc,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match daemon::inject(api.engine.clone(), fault, desc, "http").await {
        Ok(injection) => warp::reply::json(&injection).into_response(),
        Err(InjectError::Sleeping { opens }) => {
            let mut answer = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Nightmare Monkey is sleeping now",
            );
            if let Some(opens) = opens {
                let secs = (opens - Utc::now()).num_seconds().max(1);
                if let Ok(value) = secs.to_string().parse() {
                    answer.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            answer
        }
        Err(e @ InjectError::UnknownFault(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ InjectError::Plugin { .. }) => {
            let status = match &e {
                InjectError::Plugin { error, .. } if error.kind == ErrorKind::NoTarget => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            error(status, e.to_string())
        }
        Err(e @ InjectError::TimedOut { .. }) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e @ InjectError::Crashed { .. }) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn rejection(r: Rejection, max_body: u64) -> Result<Response, Infallible> {
    Ok(if r.find::<Unauthorized>().is_some() {
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
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max_body} bytes"),
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        error(
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required",
        )
    } else if r.is_not_found() {
        error(StatusCode::NOT_FOUND, format!("not found: {ROUTES}"))
    } else {
        error(StatusCode::BAD_REQUEST, "bad request")
    })
}
