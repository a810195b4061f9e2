//! `nightmare-monkey pause` and `resume`: the kill switch of a running daemon, through its
//! API (so a pause reverts active faults at once, as `POST /api/pause` does).

use std::time::Duration;

use anyhow::{anyhow, Context as _};

use crate::{cli::SwitchArgs, config, support::UsageError};

/// Runs `pause` (`on`) or `resume`.
pub fn run(args: SwitchArgs, on: bool) -> anyhow::Result<()> {
    let daemon_args = crate::cli::DaemonArgs {
        config: args.config.clone(),
        ..Default::default()
    };
    let config = config::load(&daemon_args).map_err(|e| UsageError(e.into()))?;
    let url = match (&args.url, &config.http) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(http)) => format!("http://{}", http.listen),
        (None, None) => {
            return Err(UsageError(anyhow!(
                "the HTTP API is off in the config: there is no running daemon to talk to"
            ))
            .into())
        }
    };
    let token = match (
        &args.token_file,
        std::env::var("NIGHTMARE_MONKEY_TOKEN").ok(),
    ) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| UsageError(anyhow!("cannot read token file {}: {e}", file.display())))?
                .trim()
                .to_owned(),
        ),
        (None, Some(token)) => Some(token),
        (None, None) => config
            .http
            .as_ref()
            .and_then(|h| h.tokens.first().map(|(_, t)| t.clone())),
    };
    let path = if on { "pause" } else { "resume" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer: serde_json::Value = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build an HTTP client")?;
        let mut request = client.post(format!("{url}/api/{path}"));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the daemon at {url}: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow!("cannot read the answer of the daemon at {url}: {e}"))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("the daemon at {url} answered {status} without JSON: {e}"))?;
        if !status.is_success() {
            anyhow::bail!(
                "the daemon at {url} answered {status}: {}",
                body["message"].as_str().unwrap_or_default()
            );
        }
        Ok(body)
    })?;
    println!("{}", answer["message"].as_str().unwrap_or_default());
    Ok(())
}
