//! etcd v3 through its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`,
//! `/v3/watch`, `/v3/auth/authenticate`), which every etcd since 3.4 serves on its
//! client port, over the reqwest already linked (see ARCHITECTURE.md for why not the
//! gRPC client). Keys and values cross in base64, 64-bit numbers as strings.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use super::config::{Credentials, FleetConfig};
use crate::support::lock::lock;

/// A range of keys: from the first to the second (excluded).
pub type Range = (Vec<u8>, Vec<u8>);

/// How long one call may take (a watch: to connect).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A key as etcd holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A comparison of a transaction (all must hold for its success branch).
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's creation revision (0: it does not exist).
    Created(String, i64),
    /// The key's last modification revision (0: it does not exist).
    Modified(String, i64),
    /// The lease the key is tied to (0: none).
    Lease(String, i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Writes the key, tied to a lease (0: none).
    Put(String, Vec<u8>, i64),
    /// Deletes the key.
    Delete(String),
    /// Reads every key from the first to the second (excluded).
    Range(Vec<u8>, Vec<u8>),
}

/// A transaction: when every comparison holds, the operations of `success`, else those
/// of `failure`; all at one revision.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// What etcd answered to a transaction: whether its comparisons held, the revision
/// after, and the answers of the branch it took, one for each operation.
#[derive(Debug, Clone)]
pub struct Answer {
    pub held: bool,
    pub revision: i64,
    responses: Value,
}

impl Answer {
    /// The keys the `i`th operation of the branch taken read (a [`Op::Range`]).
    pub fn kvs(&self, i: usize) -> Vec<Kv> {
        self.responses[i]["response_range"]["kvs"]
            .as_array()
            .map(|all| all.iter().filter_map(kv).collect())
            .unwrap_or_default()
    }
}

/// One etcd cluster, reached through whichever endpoint answers.
pub struct Gateway {
    client: reqwest::Client,
    watcher: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    current: AtomicUsize,
    credentials: Option<Credentials>,
    token: Mutex<Option<String>>,
}

impl Gateway {
    /// A gateway to the etcd of `config`: its endpoints, signing in with its
    /// credentials, over https with its certificates when given.
    pub fn new(config: &FleetConfig) -> anyhow::Result<Self> {
        let build = |timeout: Option<Duration>| -> anyhow::Result<reqwest::Client> {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(CALL_TIMEOUT)
                .tcp_nodelay(true)
                .no_proxy();
            if let Some(t) = timeout {
                builder = builder.timeout(t);
            }
            if let Some(tls) = &config.tls {
                builder = tls.apply(builder)?;
            }
            Ok(builder.build()?)
        };
        Ok(Self {
            client: build(Some(CALL_TIMEOUT))?,
            watcher: build(None)?,
            endpoints: config.endpoints.clone(),
            current: AtomicUsize::new(0),
            credentials: config.credentials.clone(),
            token: Mutex::new(None),
        })
    }

    /// `POST path` with `body` to the first endpoint that answers; its JSON.
    pub async fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call_noting(path, body, &mut false).await
    }

    /// As [`Gateway::call`]; `passed_over` is set when an endpoint was passed over after
    /// the call may have reached its member (see [`Gateway::send`]).
    async fn call_noting(
        &self,
        path: &str,
        body: Value,
        passed_over: &mut bool,
    ) -> Result<Value, String> {
        let response = self
            .send(&self.client, path, &body.to_string(), false, passed_over)
            .await?;
        let status = response.status();
        // A member answered: whatever fails from here, it may have acted on the call.
        let bytes = response.bytes().await.map_err(|e| {
            *passed_over = true;
            format!("cannot read etcd's answer: {}", innermost(&e))
        })?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            *passed_over = true;
            format!("etcd answered {status} without JSON: {e}")
        })?;
        if status.is_success() {
            return Ok(answer);
        }
        let message = error_message(&answer);
        if status == reqwest::StatusCode::UNAUTHORIZED || message.contains("invalid auth token") {
            *lock(&self.token) = None;
        }
        Err(format!("etcd answered {status}: {message}"))
    }

    /// Sends to each endpoint in turn, from the one that answered last, until one
    /// serves: an endpoint that cannot be reached, or whose member answers that it
    /// cannot serve now (a 5xx: `etcdserver: no leader`, `request timed out`, a gateway
    /// in trouble; or 429, `etcdserver: too many requests`: its raft log is too far
    /// ahead of what it has applied), is passed over for the next one. Another client
    /// error (a 4xx: auth, a bad request) is an answer: another member would say the
    /// same. `require_leader` asks the member to refuse (and later cancel) when it has
    /// no leader (etcd's `hasleader` metadata, which the JSON gateway takes as a
    /// `Grpc-Metadata-` header). `passed_over` is set when an endpoint was passed over
    /// after the request may have reached its member (it ran out of time once sent, or
    /// its member said it could not serve, perhaps after it acted on it): not when it
    /// could not be connected to.
    async fn send(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &str,
        require_leader: bool,
        passed_over: &mut bool,
    ) -> Result<reqwest::Response, String> {
        let mut why = Vec::new();
        let first = self.current.load(Ordering::Relaxed);
        for i in 0..self.endpoints.len() {
            let at = (first + i) % self.endpoints.len();
            let endpoint = &self.endpoints[at];
            // The next call starts at the next endpoint, unless this one answers: a
            // caller that gives up on one that never answers does not ask it first again.
            self.current
                .store((at + 1) % self.endpoints.len(), Ordering::Relaxed);
            let token = match self.token(endpoint).await {
                Ok(token) => token,
                Err(e) => {
                    why.push(e);
                    continue;
                }
            };
            let mut request = client
                .post(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                .body(body.to_owned());
            if let Some(token) = token {
                request = request.header("Authorization", token);
            }
            if require_leader {
                request = request.header("Grpc-Metadata-hasleader", "true");
            }
            match request.send().await {
                Ok(response) if cannot_serve_now(response.status()) => {
                    *passed_over = true;
                    let status = response.status();
                    let bytes = response.bytes().await.unwrap_or_default();
                    why.push(format!(
                        "{endpoint}: {status}: {}",
                        error_message(&serde_json::from_slice(&bytes).unwrap_or_default())
                    ));
                }
                Ok(response) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(e) => {
                    *passed_over |= !e.is_connect();
                    why.push(format!(
                        "{endpoint}: {}",
                        with_hint(endpoint, innermost(&e))
                    ));
                }
            }
        }
        Err(format!("no etcd endpoint answered ({})", why.join("; ")))
    }

    /// The auth token for `endpoint`, signing in if there is none yet.
    async fn token(&self, endpoint: &str) -> Result<Option<String>, String> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        if let Some(token) = lock(&self.token).clone() {
            return Ok(Some(token));
        }
        let body = json!({"name": credentials.username, "password": credentials.password});
        let response = self
            .client
            .post(format!("{endpoint}/v3/auth/authenticate"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{endpoint}: {}", innermost(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match answer["token"].as_str() {
            Some(token) if status.is_success() => {
                *lock(&self.token) = Some(token.to_owned());
                Ok(Some(token.to_owned()))
            }
            _ => Err(format!(
                "{endpoint}: cannot sign in as {} ({status}: {})",
                credentials.username,
                answer["message"].as_str().unwrap_or("no message")
            )),
        }
    }

    /// Every key under `prefix`, and the revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<Kv>, i64), String> {
        self.range(prefix.as_bytes(), &prefix_end(prefix)).await
    }

    /// Every key from `from` to `to` (excluded), and the revision they were read at.
    pub async fn range(&self, from: &[u8], to: &[u8]) -> Result<(Vec<Kv>, i64), String> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({"key": b64(from), "range_end": b64(to)}),
            )
            .await?;
        let kvs = answer["kvs"]
            .as_array()
            .map(|all| all.iter().filter_map(kv).collect())
            .unwrap_or_default();
        Ok((kvs, number(&answer["header"]["revision"])))
    }

    /// At most `limit` keys from `from` to `to` (excluded), at `revision` (0: the
    /// latest): them, the revision they were read at, and whether more follow.
    pub async fn range_page(
        &self,
        (from, to): (&[u8], &[u8]),
        limit: usize,
        revision: i64,
    ) -> Result<(Vec<Kv>, i64, bool), String> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({"key": b64(from), "range_end": b64(to), "limit": limit.to_string(), "revision": revision.to_string()}),
            )
            .await?;
        let kvs = answer["kvs"]
            .as_array()
            .map(|all| all.iter().filter_map(kv).collect())
            .unwrap_or_default();
        let more = answer["more"].as_bool().unwrap_or(false);
        Ok((kvs, number(&answer["header"]["revision"]), more))
    }

    /// Runs `ops` if every comparison holds: whether they held, and the revision after.
    pub async fn txn(&self, compare: &[Compare], ops: &[Op]) -> Result<(bool, i64), String> {
        let txn = Txn {
            compare: compare.to_vec(),
            success: ops.to_vec(),
            failure: Vec::new(),
        };
        let answer = self.run(&txn).await?;
        Ok((answer.held, answer.revision))
    }

    /// As [`Gateway::txn`]; `passed_over` is set when an endpoint was passed over after
    /// the transaction may have reached its member (it may have been applied there).
    pub async fn txn_noting(
        &self,
        compare: &[Compare],
        ops: &[Op],
        passed_over: &mut bool,
    ) -> Result<(bool, i64), String> {
        let txn = Txn {
            compare: compare.to_vec(),
            success: ops.to_vec(),
            failure: Vec::new(),
        };
        let answer = self
            .call_noting("/v3/kv/txn", txn_json(&txn), passed_over)
            .await?;
        Ok((
            answer["succeeded"].as_bool().unwrap_or(false),
            number(&answer["header"]["revision"]),
        ))
    }

    /// Runs transaction `txn`: etcd's answer.
    pub async fn run(&self, txn: &Txn) -> Result<Answer, String> {
        let answer = self.call("/v3/kv/txn", txn_json(txn)).await?;
        Ok(Answer {
            held: answer["succeeded"].as_bool().unwrap_or(false),
            revision: number(&answer["header"]["revision"]),
            responses: answer.get("responses").cloned().unwrap_or(Value::Null),
        })
    }

    /// A new lease of `ttl`: its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, String> {
        self.grant_as(ttl, 0, &mut false).await
    }

    /// A new lease of `ttl` with id `id` (0: etcd chooses one): its id. A lease that
    /// already has `id` is an error (`etcdserver: lease already exists`). `passed_over`
    /// is set when an endpoint was passed over after the ask may have reached it: etcd
    /// may have granted the lease there, unheard, and then says the lease exists.
    pub async fn grant_as(
        &self,
        ttl: Duration,
        id: i64,
        passed_over: &mut bool,
    ) -> Result<i64, String> {
        let answer = self
            .call_noting(
                "/v3/lease/grant",
                json!({"TTL": ttl.as_secs().to_string(), "ID": id.to_string()}),
                passed_over,
            )
            .await?;
        match number(&answer["ID"]) {
            0 => Err(format!("etcd granted no lease: {answer}")),
            id => Ok(id),
        }
    }

    /// Renews lease `id`: the TTL it has again (0: it had expired).
    pub async fn keep_alive(&self, id: i64) -> Result<i64, String> {
        let answer = self
            .call("/v3/lease/keepalive", json!({"ID": id.to_string()}))
            .await?;
        Ok(number(&answer["result"]["TTL"]))
    }

    /// Ends lease `id` and every key tied to it.
    pub async fn revoke(&self, id: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", json!({"ID": id.to_string()}))
            .await
            .map(drop)
    }

    /// The endpoints, as configured.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The cluster's members as etcd lists them: (name, client URLs).
    pub async fn members(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        let answer = self.call("/v3/cluster/member/list", json!({})).await?;
        Ok(answer["members"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| {
                        let urls = m["clientURLs"]
                            .as_array()
                            .map(|u| {
                                u.iter()
                                    .filter_map(|u| u.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (m["name"].as_str().unwrap_or("").to_owned(), urls)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Watches the keys of `ranges` (each from its first to its second, excluded; one
    /// watcher each, on one stream) from revision `from`:
    /// each change as it comes (whether the key was deleted, and the key), until the
    /// stream ends or fails (the caller reads again and watches anew). `heard` counts
    /// the messages the stream brought (changes and progress notifications alike): a
    /// stream that stays open but brings nothing is found out by the caller (see
    /// `watch.rs`). The member is asked to cancel the watch when it loses its leader,
    /// and for progress notifications (at etcd's own interval, 10 min by default).
    pub async fn watch(
        &self,
        ranges: &[Range],
        from: i64,
        heard: &AtomicU64,
        mut changed: impl FnMut(bool, Kv),
    ) -> Result<(), String> {
        // The gateway reads the request's body as a stream of requests: one a line.
        let body: Vec<String> = ranges
            .iter()
            .map(|(key, end)| json!({"create_request": {"key": b64(key), "range_end": b64(end), "start_revision": from.to_string(), "progress_notify": true}}).to_string())
            .collect();
        let body = body.join("\n");
        let mut response = self
            .send(&self.watcher, "/v3/watch", &body, true, &mut false)
            .await?;
        if !response.status().is_success() {
            return Err(format!("etcd answered {} to a watch", response.status()));
        }
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| innermost(&e))? {
            buffer.extend_from_slice(&chunk);
            // One JSON message a line.
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                heard.fetch_add(1, Ordering::Relaxed);
                if message["error"].is_object() {
                    return Err(format!("the watch ended: {}", message["error"]));
                }
                let result = &message["result"];
                if result["canceled"].as_bool() == Some(true) {
                    return Err(format!(
                        "etcd cancelled the watch: {}",
                        result["cancel_reason"].as_str().unwrap_or("no reason")
                    ));
                }
                for event in result["events"].as_array().into_iter().flatten() {
                    if let Some(kv) = kv(&event["kv"]) {
                        changed(event["type"].as_str() == Some("DELETE"), kv);
                    }
                }
            }
            if buffer.len() > 1 << 20 {
                return Err("a watch message over 1 MiB".to_owned());
            }
        }
        Err("the watch stream ended".to_owned())
    }

    /// What changed in the keys of `ranges` that a watch which told of revisions up to
    /// `told` has not: the number of keys there, and how many were written after
    /// `told`. One transaction of two reads a range whose answers are a number and
    /// (while the watch keeps up) nothing, whatever the number of keys.
    pub async fn changes_after(&self, ranges: &[Range], told: i64) -> Result<(u64, usize), String> {
        let mut reads = Vec::new();
        for (key, end) in ranges {
            let (key, end) = (b64(key), b64(end));
            reads
                .push(json!({"request_range": {"key": key, "range_end": end, "count_only": true}}));
            reads.push(
                json!({"request_range": {"key": key, "range_end": end, "keys_only": true,
                "min_mod_revision": (told + 1).to_string()}}),
            );
        }
        let answer = self.call("/v3/kv/txn", json!({ "success": reads })).await?;
        let (mut count, mut newer) = (0, 0);
        for i in 0..ranges.len() {
            let range = |i: usize| &answer["responses"][i]["response_range"];
            // 64-bit numbers cross as text, and a zero not at all.
            count += range(2 * i)["count"]
                .as_str()
                .map_or(Ok(0), str::parse::<u64>)
                .map_err(|e| format!("etcd answered a count that is no number: {e}"))?;
            newer += range(2 * i + 1)["kvs"].as_array().map_or(0, Vec::len);
        }
        Ok((count, newer))
    }
}

/// A transaction as etcd's JSON gateway takes it.
fn txn_json(txn: &Txn) -> Value {
    let compare: Vec<Value> = txn.compare.iter().map(compare_json).collect();
    let ops = |ops: &[Op]| ops.iter().map(op_json).collect::<Vec<Value>>();
    json!({"compare": compare, "success": ops(&txn.success), "failure": ops(&txn.failure)})
}

fn compare_json(compare: &Compare) -> Value {
    match compare {
        Compare::Created(key, rev) => {
            json!({"result": "EQUAL", "target": "CREATE", "key": b64(key.as_bytes()), "create_revision": rev.to_string()})
        }
        Compare::Modified(key, rev) => {
            json!({"result": "EQUAL", "target": "MOD", "key": b64(key.as_bytes()), "mod_revision": rev.to_string()})
        }
        Compare::Lease(key, lease) => {
            json!({"result": "EQUAL", "target": "LEASE", "key": b64(key.as_bytes()), "lease": lease.to_string()})
        }
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put(key, value, lease) => {
            json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}})
        }
        Op::Delete(key) => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
        Op::Range(from, to) => json!({"request_range": {"key": b64(from), "range_end": b64(to)}}),
    }
}

/// Whether a member that answered `status` cannot serve now, where another might: a
/// 5xx, or 429 (gRPC's `ResourceExhausted`: `etcdserver: too many requests`, a member
/// whose applying lags its raft log; also `database space exceeded`, which every member
/// says alike, so asking the others costs a round trip each and changes nothing).
fn cannot_serve_now(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The message of an error the gateway answered: `{"error": ..., "message": ...}`, or
/// on a stream `{"error": {"message": ...}}` (a watch refused for want of a leader).
fn error_message(answer: &Value) -> &str {
    answer["message"]
        .as_str()
        .or(answer["error"].as_str())
        .or(answer["error"]["message"].as_str())
        .unwrap_or("no message")
}

/// `why` a call to `endpoint` failed, with what to look at: for a certificate etcd's
/// server sent that could not be checked, which of its checks failed; for a plain
/// `http://` connection closed at once, TLS.
fn with_hint(endpoint: &str, why: String) -> String {
    let hint = if !why.contains("invalid peer certificate") {
        (endpoint.starts_with("http://")
            && why.contains("connection closed before message completed"))
        .then_some("if etcd serves TLS, the endpoint needs https://")
    } else if why.contains("not valid for name") {
        Some("the endpoint's host must be a name or address etcd's certificate is for")
    } else if why.contains("UnknownIssuer") || why.contains("BadSignature") {
        Some("is etcd's certificate signed by the CA of ca_file?")
    } else {
        None
    };
    match hint {
        Some(hint) => format!("{why} ({hint})"),
        None => why,
    }
}

/// The innermost cause of an error (`Connection refused (os error 111)`).
fn innermost(e: &dyn std::error::Error) -> String {
    let mut why = e;
    while let Some(source) = why.source() {
        why = source;
    }
    why.to_string()
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The end of the range of every key starting with `prefix` (the prefix with its last
/// byte plus one).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A 64-bit number as the gateway writes it (a string), or a plain one; 0 when absent.
fn number(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

/// A key and its value as the gateway sends them. A key that is no UTF-8 (someone
/// else's, under the prefix) is kept, its other bytes escaped (`\\xff`): one key each,
/// as etcd counts them, or the watch would seem to miss a change for good.
fn kv(v: &Value) -> Option<Kv> {
    let key = STANDARD.decode(v["key"].as_str()?).ok()?;
    let key = String::from_utf8(key).unwrap_or_else(|e| e.into_bytes().escape_ascii().to_string());
    let value = v["value"]
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .unwrap_or_default();
    Some(Kv {
        key,
        value,
        create_revision: number(&v["create_revision"]),
        mod_revision: number(&v["mod_revision"]),
        lease: number(&v["lease"]),
    })
}

#[cfg(test)]
mod tests;
