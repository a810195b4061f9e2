//! What the commands ask of the fleet's etcd, without joining the fleet:
//! `check-config --connect` (the members, who holds the slots, the switch) and
//! `pause --fleet` / `resume --fleet` (the switch).

use super::{
    admission::{next_fits, Holder, Recent},
    config::FleetConfig,
    gateway::{Gateway, Op},
    shared::switch_of,
    Member, Switch,
};

/// What `check-config --connect` says of the fleet: the members, who holds the slots,
/// the budget and the switch; `Err`: the coordinator could not be reached.
pub fn describe(config: &FleetConfig) -> anyhow::Result<Vec<String>> {
    on_runtime(config, |gateway, config| async move {
        let members = gateway.members().await.map_err(anyhow::Error::msg)?;
        let (kvs, revision) = gateway
            .range_prefix(&format!("{}/", config.prefix))
            .await
            .map_err(anyhow::Error::msg)?;
        let mut lines = vec![format!(
            "etcd: {} member(s) reachable at revision {revision}: {}",
            members.len(),
            members
                .iter()
                .map(|(name, urls)| format!("{name} ({})", urls.join(" ")))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        let slots = format!("{}/slots/", config.prefix);
        let held: Vec<String> = kvs
            .iter()
            .filter_map(|kv| {
                let n = kv.key.strip_prefix(&slots)?;
                let holder: Holder = serde_json::from_slice(&kv.value).ok()?;
                Some(format!(
                    "slot {n}: {} ({}, since {})",
                    holder.node, holder.fault, holder.at
                ))
            })
            .collect();
        lines.push(format!(
            "slots: {} of {} held{}{}",
            held.len(),
            config.max_concurrent,
            if held.is_empty() { "" } else { ": " },
            held.join("; ")
        ));
        let nodes = format!("{}/members/", config.prefix);
        let members: Vec<String> = kvs
            .iter()
            .filter(|kv| kv.key.starts_with(&nodes))
            .filter_map(|kv| serde_json::from_slice::<Member>(&kv.value).ok())
            .map(|m| {
                format!(
                    "{} ({}, {} in effect, version {})",
                    m.node,
                    m.paused
                        .map_or_else(|| "playing".to_owned(), |why| format!("paused: {why}")),
                    m.in_effect,
                    m.version
                )
            })
            .collect();
        lines.push(format!("nodes: {}: {}", members.len(), members.join("; ")));
        if config.budget.is_some() || config.min_gap.is_some() {
            let budget_key = format!("{}/budget", config.prefix);
            let recent: Recent = kvs
                .iter()
                .find(|kv| kv.key == budget_key)
                .and_then(|kv| serde_json::from_slice(&kv.value).ok())
                .unwrap_or_default();
            let (used, wait) = next_fits(&config, &recent, chrono::Utc::now().timestamp_millis());
            let used = match config.budget {
                Some((max, per)) => format!(
                    "{used} of {max} per {} used",
                    humantime::format_duration(per)
                ),
                None => "no budget".to_owned(),
            };
            lines.push(match wait {
                Some(wait) => format!(
                    "fleet budget: {used}; the next admission fits in {} s",
                    crate::domain::injection::ceil_secs(wait)
                ),
                None => format!("fleet budget: {used}; the next admission fits now"),
            });
        }
        let switch_key = format!("{}/switch", config.prefix);
        lines.push(
            match switch_of(kvs.iter().find(|kv| kv.key == switch_key)) {
                Some(switch) => format!("switch: {switch}"),
                None => "switch: off (the fleet plays)".to_owned(),
            },
        );
        Ok(lines)
    })
}

/// Turns the fleet's switch on (`Some`) or off, as `pause --fleet` and `resume --fleet`.
pub fn set_switch(config: &FleetConfig, switch: Option<Switch>) -> anyhow::Result<()> {
    on_runtime(config, |gateway, config| async move {
        let key = format!("{}/switch", config.prefix);
        let op = match &switch {
            Some(switch) => Op::Put(key, serde_json::to_vec(switch).unwrap_or_default(), 0),
            None => Op::Delete(key),
        };
        gateway
            .txn(&[], &[op])
            .await
            .map(drop)
            .map_err(anyhow::Error::msg)
    })
}

/// Runs `work` with a gateway to the fleet's etcd, on a runtime of its own.
fn on_runtime<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    config: &FleetConfig,
    work: impl FnOnce(Gateway, FleetConfig) -> F,
) -> anyhow::Result<T> {
    let gateway = Gateway::new(config.endpoints.clone(), config.credentials.clone())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work(gateway, config.clone()))
}
