//! What the commands ask of the fleet's etcd, without joining the fleet:
//! `check-config --connect` (the members, who holds the slots, the switch) and
//! `pause --fleet` / `resume --fleet` (the switch); and the view of the fleet that
//! `status --fleet` and `GET /api/fleet` show.

use super::{
    admission::Holder,
    config::FleetConfig,
    gateway::{Gateway, Kv, Op},
    shared::switch_of,
    Member, Switch,
};
use serde::Serialize;

/// The fleet as its coordinator holds it now: `status --fleet`, `check-config
/// --connect` (as lines) and `GET /api/fleet` (as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The etcd cluster's members: (name, client URLs).
    pub etcd: Vec<(String, Vec<String>)>,
    /// The revision it was read at.
    pub revision: i64,
    /// Slots in all.
    pub max_concurrent: u32,
    /// The slots held, and by whom.
    pub slots: Vec<HeldSlot>,
    /// The nodes, as each last said of itself.
    pub nodes: Vec<Member>,
    /// The fleet budget, if there is one or a gap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetUsed>,
    /// The fleet's switch, while it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
}

/// A slot held.
#[derive(Debug, Clone, Serialize)]
pub struct HeldSlot {
    pub slot: String,
    pub node: String,
    pub fault: String,
    pub since: String,
}

/// The fleet budget used.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetUsed {
    /// Admissions counted against it.
    pub used: usize,
    /// `max` per `per_s` seconds, if there is a budget (else only a gap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_s: Option<u64>,
    /// Seconds until the next admission fits (0: now).
    pub next_fits_in_s: u64,
}

/// Reads the fleet through `gateway`.
pub(super) async fn view(gateway: &Gateway, config: &FleetConfig) -> Result<View, String> {
    let etcd = gateway.members().await?;
    let (kvs, revision) = super::history::state(gateway, config).await?;
    let (slots, nodes) = (
        format!("{}/slots/", config.prefix),
        format!("{}/members/", config.prefix),
    );
    let held = kvs
        .iter()
        .filter_map(|kv| {
            let slot = kv.key.strip_prefix(&slots)?.to_owned();
            let holder: Holder = serde_json::from_slice(&kv.value).ok()?;
            Some(HeldSlot {
                slot,
                node: holder.node,
                fault: holder.fault,
                since: holder.at,
            })
        })
        .collect();
    let members = kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&nodes))
        .filter_map(|kv| serde_json::from_slice::<Member>(&kv.value).ok())
        .collect();
    let budget = match config.budget.is_some() || config.min_gap.is_some() {
        true => Some(budget_used(gateway, config, &kvs).await),
        false => None,
    };
    let switch_key = format!("{}/switch", config.prefix);
    Ok(View {
        etcd,
        revision,
        max_concurrent: config.max_concurrent,
        slots: held,
        nodes: members,
        budget,
        switch: switch_of(kvs.iter().find(|kv| kv.key == switch_key)),
    })
}

/// The fleet budget used (its keys alive), and when the next admission fits: when the
/// lease that holds it back ends, as etcd counts it.
async fn budget_used(gateway: &Gateway, config: &FleetConfig, kvs: &[Kv]) -> BudgetUsed {
    let (gap, budget) = super::rule::found(config, kvs);
    let mut wait = std::time::Duration::ZERO;
    if let Some(gap) = gap {
        let left = super::rule::time_left_at(gateway, gap.lease).await;
        wait = wait.max(left.unwrap_or_default());
    }
    if let (Some((max, _)), Some(oldest)) = (config.budget, budget.first()) {
        if budget.len() >= max as usize {
            let left = super::rule::time_left_at(gateway, oldest.lease).await;
            wait = wait.max(left.unwrap_or_default());
        }
    }
    BudgetUsed {
        used: budget.len(),
        max: config.budget.map(|(max, _)| max),
        per_s: config.budget.map(|(_, per)| per.as_secs()),
        next_fits_in_s: match wait.is_zero() {
            true => 0,
            false => crate::domain::injection::ceil_secs(wait),
        },
    }
}

impl View {
    /// The view as lines, for people.
    pub fn lines(&self) -> Vec<String> {
        let etcd: Vec<String> = self
            .etcd
            .iter()
            .map(|(name, urls)| format!("{name} ({})", urls.join(" ")))
            .collect();
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| {
                format!(
                    "slot {}: {} ({}, since {})",
                    s.slot, s.node, s.fault, s.since
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|m| {
                format!(
                    "{} ({}, {} in effect, version {})",
                    m.node,
                    m.paused
                        .as_ref()
                        .map_or_else(|| "playing".to_owned(), |why| format!("paused: {why}")),
                    m.in_effect,
                    m.version
                )
            })
            .collect();
        let mut lines = vec![
            format!(
                "etcd: {} member(s) reachable at revision {}: {}",
                etcd.len(),
                self.revision,
                etcd.join(", ")
            ),
            format!(
                "slots: {} of {} held{}{}",
                slots.len(),
                self.max_concurrent,
                if slots.is_empty() { "" } else { ": " },
                slots.join("; ")
            ),
            format!("nodes: {}: {}", nodes.len(), nodes.join("; ")),
        ];
        if let Some(b) = &self.budget {
            let used = match (b.max, b.per_s) {
                (Some(max), Some(per)) => format!(
                    "{} of {max} per {} used",
                    b.used,
                    humantime::format_duration(std::time::Duration::from_secs(per))
                ),
                _ => "no budget".to_owned(),
            };
            lines.push(match b.next_fits_in_s {
                0 => format!("fleet budget: {used}; the next admission fits now"),
                s => format!("fleet budget: {used}; the next admission fits in {s} s"),
            });
        }
        lines.push(match &self.switch {
            Some(switch) => format!("switch: {switch}"),
            None => "switch: off (the fleet plays)".to_owned(),
        });
        lines
    }
}

/// What `check-config --connect` and `status --fleet` say of the fleet; `Err`: the
/// coordinator could not be reached.
pub fn describe(config: &FleetConfig) -> anyhow::Result<Vec<String>> {
    on_runtime(config, |gateway, config| async move {
        view(&gateway, &config)
            .await
            .map(|v| v.lines())
            .map_err(anyhow::Error::msg)
    })
}

/// The fleet's admissions kept in its coordinator, oldest first (`history --fleet`).
pub fn admissions(config: &FleetConfig) -> anyhow::Result<Vec<super::history::Admitted>> {
    on_runtime(config, |gateway, config| async move {
        super::history::read(&gateway, &config)
            .await
            .map_err(anyhow::Error::msg)
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
    let gateway = Gateway::new(config)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work(gateway, config.clone()))
}
