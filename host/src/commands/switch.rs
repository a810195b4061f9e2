//! `nightmare-monkey pause`, `resume` and `status`: a running daemon, through its API (so
//! a pause reverts active faults at once, as `POST /api/pause` does). Without a daemon
//! they say so, and point to the pause file, which works with or without one.

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, Context as _};

use crate::{
    cli::{AckArgs, RevertArgs, StatusArgs, SwitchArgs},
    config,
    support::UsageError,
};

/// Where the daemon is and how to talk to it.
struct Daemon {
    url: String,
    token: Option<String>,
    pause_file: PathBuf,
}

impl Daemon {
    /// From the flags, the environment and the configuration.
    fn find(args: &SwitchArgs) -> anyhow::Result<Self> {
        let daemon_args = crate::cli::DaemonArgs {
            config: args.config.clone(),
            ..Default::default()
        };
        let config = config::load(&daemon_args).map_err(|e| UsageError(e.into()))?;
        let url = match (&args.url, &config.http) {
            (Some(url), _) => {
                // A URL that cannot be one is the user's slip, not a daemon out of reach.
                match reqwest::Url::parse(&with_scheme(url)) {
                    Ok(parsed)
                        if matches!(parsed.scheme(), "http" | "https")
                            && parsed.host().is_some() => {}
                    _ => {
                        return Err(UsageError(anyhow!(
                            "--url: invalid URL `{url}`: expected the daemon's address, e.g. http://127.0.0.1:8080 or 127.0.0.1:8080"
                        ))
                        .into())
                    }
                }
                with_scheme(url.trim_end_matches('/'))
            }
            (None, Some(http)) => format!("http://{}", http.listen),
            (None, None) => {
                return Err(UsageError(anyhow!(
                    "the HTTP API is off in the config: there is no running daemon to talk to (the pause file {} pauses it all the same)",
                    config.pause_file.display()
                ))
                .into())
            }
        };
        let token = match (
            &args.token_file,
            std::env::var("NIGHTMARE_MONKEY_TOKEN").ok(),
        ) {
            (Some(file), _) => Some(
                crate::support::small_file::read_text(file, crate::support::small_file::MAX_SECRET)
                    .map_err(|e| {
                        UsageError(anyhow!("cannot read token file {}: {e}", file.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(token)) => Some(token),
            (None, None) => config
                .http
                .as_ref()
                .and_then(|h| h.tokens.first().map(|(_, t)| t.clone())),
        };
        Ok(Self {
            url,
            token,
            pause_file: config.pause_file,
        })
    }

    /// Sends `method path` and returns the JSON answer; an answer that is not a success
    /// is an error carrying the daemon's message.
    fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send(method, path, None)
    }

    /// [`Daemon::call`] with a JSON body.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let url = &self.url;
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("cannot build an HTTP client")?;
            let mut request = client.request(method, format!("{url}{path}"));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.body(body.to_string());
            }
            let response = request.send().await.map_err(|e| {
                // The innermost cause says it best (`Connection refused (os error 111)`).
                let mut why: &dyn std::error::Error = &e;
                while let Some(source) = why.source() {
                    why = source;
                }
                anyhow!(
                    "cannot reach the daemon at {url} ({why}): is it running, and is that its address (--url, --config)? Without a daemon, the pause file {} pauses the next start",
                    self.pause_file.display()
                )
            })?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| anyhow!("cannot read the answer of the daemon at {url}: {e}"))?;
            let body: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow!("the daemon at {url} answered {status} without JSON: {e}"))?;
            if !status.is_success() {
                anyhow::bail!(
                    "{}",
                    body["message"]
                        .as_str()
                        .map_or_else(|| format!("the daemon at {url} answered {status}"), |_| text(&body["message"]))
                );
            }
            Ok(body)
        })
    }
}

/// A text of the daemon's answer, to print: it carries what clients, processes,
/// plugins and the fleet's coordinator wrote, so it is one line, with no terminal
/// escape (`""` if it is not a string).
fn text(v: &serde_json::Value) -> String {
    crate::support::text::escape_controls(v.as_str().unwrap_or_default()).into_owned()
}

/// `127.0.0.1:8080` as `http://127.0.0.1:8080`: a URL without a scheme means HTTP.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Runs `pause` (`on`) or `resume`. A resume that leaves the daemon paused (its pause
/// file exists) fails, saying why.
pub fn run(args: SwitchArgs, on: bool) -> anyhow::Result<()> {
    let daemon = Daemon::find(&args)?;
    let path = if on { "/api/pause" } else { "/api/resume" };
    let answer = daemon.call(reqwest::Method::POST, path)?;
    println!("{}", text(&answer["message"]));
    Ok(())
}

/// Runs `ack`.
pub fn ack(args: AckArgs) -> anyhow::Result<()> {
    let daemon = Daemon::find(&args.daemon)?;
    let by = args.by.clone().unwrap_or_else(|| {
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "someone".to_owned())
    });
    let mut body = serde_json::json!({ "by": by });
    if let Some(id) = &args.id {
        body["id"] = serde_json::json!(id);
    }
    let answer = daemon.send(reqwest::Method::POST, "/api/ack", Some(body))?;
    if args.json {
        println!("{answer}");
    } else {
        println!(
            "{} ({}) {}: noticed by {} after {}",
            text(&answer["id"]),
            text(&answer["fault"]),
            text(&answer["target"]),
            text(&answer["by"]),
            crate::domain::drill::human_ms(answer["ttd_ms"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

/// Runs `revert`: one fault in effect (or `--all`), through `POST /api/revert/{id}`.
pub fn revert(args: RevertArgs) -> anyhow::Result<()> {
    if args.id.is_none() && !args.all {
        return Err(UsageError(anyhow!(
            "which fault? Give its id (`status` lists the faults in effect), or --all for every one"
        ))
        .into());
    }
    let daemon = Daemon::find(&args.daemon)?;
    let ids: Vec<String> = match &args.id {
        Some(id) => vec![id.clone()],
        None => daemon.call(reqwest::Method::GET, "/api/status")?["active"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect(),
    };
    if ids.is_empty() {
        println!("no fault is in effect: nothing to revert");
    }
    for id in ids {
        // An id is a path segment: anything else is refused here, as the API would.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(UsageError(anyhow!(
                "`{id}` is not a fault id: expected one like 1795723590302-1, as `status` lists them"
            ))
            .into());
        }
        let answer = daemon.call(reqwest::Method::POST, &format!("/api/revert/{id}"))?;
        if args.json {
            println!("{answer}");
        } else {
            println!("{}", text(&answer["message"]));
        }
    }
    Ok(())
}

/// Runs `status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let daemon = Daemon::find(&args.daemon)?;
    let status = daemon.call(reqwest::Method::GET, "/api/status")?;
    if args.json {
        println!("{status}");
    } else {
        print!("{}", describe(&daemon.url, &status));
    }
    Ok(())
}

/// The status as lines for people.
fn describe(url: &str, s: &serde_json::Value) -> String {
    let mut out = String::new();
    let state = match text(&s["state"]).as_str() {
        "paused" => format!("paused: {}", text(&s["paused"])),
        "sleeping" => match s["sleeping_until"].as_str() {
            Some(until) => format!("sleeping until {until} (outside the window)"),
            None => "sleeping (the window never opens)".to_owned(),
        },
        other => other.to_owned(),
    };
    let mode = if s["execute"].as_bool() == Some(true) {
        "EXECUTE: faults are real"
    } else {
        "dry run"
    };
    out.push_str(&format!(
        "Nightmare Monkey {} at {url}: {state} ({mode})\n",
        text(&s["version"])
    ));
    out.push_str(&format!("  window: {}\n", text(&s["window"])));
    match s.get("next") {
        Some(next) => {
            let within =
                humantime::format_duration(Duration::from_secs(next["in_s"].as_u64().unwrap_or(0)));
            out.push_str(&if next["in_window"].as_bool() == Some(false) {
                format!(
                    "  next fault: none at {} (in {within}): outside the window, the timer wakes, sleeps on and draws again\n",
                    text(&next["at"])
                )
            } else {
                format!(
                    "  next fault: {} at {} (in {within})\n",
                    text(&next["fault"]),
                    text(&next["at"])
                )
            })
        }
        None => out.push_str("  next fault: none (the timer is off)\n"),
    }
    let budget = &s["budget"];
    let mut limits = Vec::new();
    for (key, span) in [("per_hour", "this hour"), ("per_day", "today")] {
        if let Some(used) = budget.get(key).filter(|u| !u.is_null()) {
            limits.push(format!(
                "{} of {} {span}",
                used["used"].as_u64().unwrap_or(0),
                used["limit"].as_u64().unwrap_or(0)
            ));
        }
    }
    let wait = budget["next_fits_in_s"].as_u64().unwrap_or(0);
    let fits = if wait == 0 {
        "a fault fits now".to_owned()
    } else {
        format!(
            "the next fits in {}",
            humantime::format_duration(Duration::from_secs(wait))
        )
    };
    if limits.is_empty() {
        out.push_str("  budget: no limit\n");
    } else {
        out.push_str(&format!("  budget: {} used; {fits}\n", limits.join(", ")));
    }
    let active = s["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        out.push_str("  active: none\n");
    }
    for fault in &active {
        out.push_str(&format!(
            "  active: {} ({}), due {}\n",
            text(&fault["id"]),
            text(&fault["fault"]),
            fault["due"]
                .as_str()
                .map_or_else(|| "when reverted".to_owned(), |_| text(&fault["due"]))
        ));
    }
    for revert in s["reverting"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  reverting: {} ({})\n",
            text(&revert["id"]),
            text(&revert["fault"])
        ));
    }
    for proxy in s["proxies"].as_array().cloned().unwrap_or_default() {
        out.push_str(&proxy_lines(&proxy));
    }
    if s["journal"].is_string() {
        out.push_str(&format!("  journal: {}\n", text(&s["journal"])));
    }
    out
}

/// A proxy of `GET /api/status` as lines: where it listens and forwards, its traffic,
/// each toxic in effect.
fn proxy_lines(p: &serde_json::Value) -> String {
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut out = format!(
        "  proxy {}: {} -> {}, {} open ({} accepted), {} bytes up, {} down{}\n",
        text(&p["name"]),
        text(&p["listen"]),
        text(&p["upstream"]),
        number(&p["connections"]),
        number(&p["accepted"]),
        number(&p["bytes_upstream"]),
        number(&p["bytes_downstream"]),
        if p["upstream_failing"].as_bool() == Some(true) {
            "; the upstream does not answer"
        } else {
            ""
        }
    );
    if p["listening"].as_bool() == Some(false) {
        out.pop();
        out.push_str("; not listening\n");
    }
    for toxic in p["toxics"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "    toxic {}: {}\n",
            text(&toxic["id"]),
            text(&toxic["what"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_that_does_not_listen_says_so() {
        let proxy = serde_json::json!({
            "name": "db", "listen": "127.0.0.1:15432", "upstream": "10.0.0.5:5432",
            "connections": 0, "accepted": 3, "bytes_upstream": 10, "bytes_downstream": 20,
            "upstream_failing": false, "listening": false, "toxics": [],
        });
        assert_eq!(
            proxy_lines(&proxy),
            "  proxy db: 127.0.0.1:15432 -> 10.0.0.5:5432, 0 open (3 accepted), 10 bytes up, 20 down; not listening\n"
        );
        let mut older = proxy.clone();
        older.as_object_mut().unwrap().remove("listening");
        assert!(!proxy_lines(&older).contains("not listening"));
    }

    #[test]
    fn a_url_without_a_scheme_means_http() {
        assert_eq!(with_scheme("127.0.0.1:18099"), "http://127.0.0.1:18099");
        assert_eq!(with_scheme("https://monkey:8443"), "https://monkey:8443");
    }

    #[test]
    fn the_status_reads_as_lines() {
        let s = serde_json::json!({
            "version": "0.1.0",
            "state": "playing",
            "execute": false,
            "window": "from 11:00 to 18:00, Mon thru Fri (Asia/Tokyo)",
            "next": {"at": "2026-11-26T15:42:10+09:00", "in_s": 723, "fault": "process-kill", "in_window": true},
            "budget": {"per_hour": {"used": 1, "limit": 4}, "per_day": null, "next_fits_in_s": 0},
            "active": [{"id": "1-2", "fault": "freeze", "due": "2026-11-26T15:30:00+09:00"}],
            "reverting": [],
            "journal": "/var/lib/nightmare-monkey/journal.jsonl"
        });
        assert_eq!(
            describe("http://127.0.0.1:8080", &s),
            "Nightmare Monkey 0.1.0 at http://127.0.0.1:8080: playing (dry run)
  window: from 11:00 to 18:00, Mon thru Fri (Asia/Tokyo)
  next fault: process-kill at 2026-11-26T15:42:10+09:00 (in 12m 3s)
  budget: 1 of 4 this hour used; a fault fits now
  active: 1-2 (freeze), due 2026-11-26T15:30:00+09:00
  journal: /var/lib/nightmare-monkey/journal.jsonl
"
        );
        let mut outside = s.clone();
        outside["next"]["in_window"] = serde_json::json!(false);
        assert!(describe("u", &outside).contains(
            "  next fault: none at 2026-11-26T15:42:10+09:00 (in 12m 3s): outside the window, the timer wakes, sleeps on and draws again\n"
        ));
        let paused = serde_json::json!({
            "version": "0.1.0", "state": "paused", "paused": "POST /api/resume to resume",
            "execute": true, "window": "w", "budget": {"next_fits_in_s": 60},
            "active": [], "reverting": [{"id": "1-3", "fault": "freeze"}]
        });
        assert_eq!(
            describe("u", &paused),
            "Nightmare Monkey 0.1.0 at u: paused: POST /api/resume to resume (EXECUTE: faults are real)
  window: w
  next fault: none (the timer is off)
  budget: no limit
  active: none
  reverting: 1-3 (freeze)
"
        );
    }
}
