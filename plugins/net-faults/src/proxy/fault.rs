//! `net-proxy`: turns one toxic on in one proxy for the fault's duration, and off at
//! its revert (when due, by the kill switch, at shutdown). Two phases like the other
//! network faults: the toxic's id is drawn and journaled before it is turned on.

use std::time::{Duration, Instant, SystemTime};

use nightmare_monkey_plugin_api::sdk::{
    self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request, Rng,
};
use serde::{Deserialize, Serialize};

use super::{
    declared, declared_spec, find, instance, running,
    toxic::{Described, Direction, RawToxic, Toxic},
    Active, Spec,
};

const MAX_DURATION: Duration = Duration::from_secs(3600);

/// `net-proxy`'s configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy, as named under `proxies:` (required).
    pub proxy: Option<String>,
    /// The toxic (required): `Latency(latency: "100ms")`, `Down`, ...
    pub toxic: Option<RawToxic>,
    /// Which way the bytes it acts on flow: `"upstream"`, `"downstream"` (default) or
    /// `"both"`, for toxics with one.
    pub direction: Option<String>,
    /// How long the toxic stays on (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
}

/// What the revert needs: which toxic of which proxy, turned on by which process.
#[derive(Debug, Serialize, Deserialize)]
struct Turned {
    proxy: String,
    toxic_id: String,
    /// The process that ran the proxy ([`instance`]).
    instance: String,
    /// The toxic, for the revert's words.
    toxic: Toxic,
    #[serde(default)]
    direction: Option<Direction>,
}

/// The `net-proxy` fault.
#[derive(Debug)]
pub struct NetProxy {
    spec: Spec,
    toxic: Toxic,
    direction: Option<Direction>,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

const TOXICS: &str = "Latency(latency: \"100ms\", jitter: \"10ms\"), Bandwidth(rate: 64), SlowClose(delay: \"1s\"), Timeout(timeout: \"5s\"; \"0s\": never closed), ResetPeer(timeout: \"0s\"), Slicer(average_size: 64, size_variation: 16, delay: \"1ms\"), LimitData(bytes: 1000) or Down";

impl NetProxy {
    fn what(&self) -> String {
        format!(
            "{} on proxy {} ({} -> {})",
            Described(&self.toxic, self.direction),
            self.spec.name,
            self.spec.listen,
            self.spec.upstream
        )
    }

    fn lasting(&self) -> humantime::FormattedDuration {
        humantime::format_duration(self.duration)
    }
}

impl FaultPlugin for NetProxy {
    const NAME: &'static str = "net-proxy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "turns a toxic on in one of the daemon's TCP proxies: latency, bandwidth, timeout, reset, down, ...";
    const PREPARES: bool = true;
    type Config = ProxyConfig;

    fn new(config: ProxyConfig) -> Result<Self, PluginError> {
        let names = || {
            let names = declared();
            if names.is_empty() {
                "none is declared: add proxies: {\"db\": (listen: \"127.0.0.1:15432\", upstream: \"10.0.0.5:5432\")} to the configuration (for kill, give it with --config)".to_owned()
            } else {
                format!("declared: {}", names.join(", "))
            }
        };
        let name = config.proxy.ok_or_else(|| {
            config_error(format!(
                "proxy is required: the name of a proxy under proxies: ({})",
                names()
            ))
        })?;
        let spec = declared_spec(&name)
            .ok_or_else(|| config_error(format!("proxy `{name}`: no such proxy ({})", names())))?;
        let raw = config
            .toxic
            .ok_or_else(|| config_error(format!("toxic is required: one of {TOXICS}")))?;
        let direction = config
            .direction
            .as_deref()
            .map(|d| match d {
                "upstream" => Ok(Direction::Upstream),
                "downstream" => Ok(Direction::Downstream),
                "both" => Ok(Direction::Both),
                other => Err(config_error(format!(
                    "direction `{other}`: expected upstream, downstream or both"
                ))),
            })
            .transpose()?;
        let (toxic, direction) = raw.check(direction)?;
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self {
            spec,
            toxic,
            direction,
            duration,
        })
    }

    fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let id = format!("{:016x}", Rng::from_seed(request.seed).next_u64());
        let state = Turned {
            proxy: self.spec.name.clone(),
            toxic_id: id.clone(),
            instance: instance().to_owned(),
            toxic: self.toxic.clone(),
            direction: self.direction,
        };
        Ok(Outcome {
            action: "Toxic".to_owned(),
            result: "prepared".to_owned(),
            summary: format!("{} for {} (toxic {id})", self.what(), self.lasting()),
            details: serde_json::json!({
                "proxy": self.spec.name,
                "listen": self.spec.listen.to_string(),
                "upstream": self.spec.upstream,
                "toxic": self.toxic,
                "direction": self.direction,
                "toxic_id": id,
            }),
            revert: Some(serde_json::json!(state)),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let state: Turned = sdk::read_state(prepared)?;
        let proxy = running(&state.proxy).map_err(|e| PluginError::new(ErrorKind::Failed, e))?;
        proxy.add(Active {
            id: state.toxic_id.clone(),
            toxic: self.toxic.clone(),
            direction: self.direction,
            since: Instant::now(),
            since_wall: SystemTime::now(),
        });
        if self.toxic == Toxic::Down {
            proxy.await_listening(false);
        }
        Ok(Outcome {
            action: "Toxic".to_owned(),
            result: results::INJECTED.to_owned(),
            summary: format!(
                "{} for {} (toxic {})",
                self.what(),
                self.lasting(),
                state.toxic_id
            ),
            details: serde_json::json!({
                "proxy": self.spec.name,
                "toxic": self.toxic,
                "direction": self.direction,
                "toxic_id": state.toxic_id,
            }),
            revert: Some(prepared.clone()),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let prepared = self.prepare(request)?;
        if !request.dry_run {
            let state = prepared.revert.clone().ok_or_else(|| {
                PluginError::new(ErrorKind::Failed, "the prepared state is missing")
            })?;
            return self.apply(request, &state);
        }
        Ok(Outcome {
            result: results::DRY_RUN.to_owned(),
            summary: format!("would turn on {} for {}", self.what(), self.lasting()),
            revert: None,
            revert_after_ms: None,
            ..prepared
        })
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let state: Turned = sdk::read_state(state)?;
        let what = format!(
            "{} on proxy {}",
            Described(&state.toxic, state.direction),
            state.proxy
        );
        let summary = if state.instance != instance() {
            format!("nothing to turn off: {what} ended with the process that ran the proxy")
        } else {
            match find(&state.proxy) {
                Some(proxy) if proxy.remove(&state.toxic_id) => {
                    // The toxic is off either way; a proxy that cannot listen again
                    // (another program took its address meanwhile) is said, not hidden.
                    if state.toxic == Toxic::Down && !proxy.await_listening(true) {
                        let why = proxy.relisten_error().unwrap_or_else(|| {
                            format!("proxy {}: not listening again within 2s", state.proxy)
                        });
                        format!(
                            "turned off {what}, but the proxy does not listen again: {why}; it tries again every 100ms"
                        )
                    } else {
                        format!("turned off {what}")
                    }
                }
                _ => format!("nothing to turn off: {what} was not on"),
            }
        };
        Ok(Outcome {
            action: "Restore".to_owned(),
            result: results::REVERTED.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}
