//! The operator's side of a fleet on etcd ([`super::FleetAdmin`]): what the commands
//! ask of the fleet's etcd without joining the fleet (no lease, no slot), each call on
//! a runtime of its own; and the fleet's [`View`] read from etcd, which the daemon's
//! coordinator shows too (`GET /api/fleet`).

use super::{
    admin::{BudgetUsed, HeldSlot, Reached, View},
    admission::Holder,
    config::FleetConfig,
    gateway::{Gateway, Kv, Op},
    history::Admitted,
    shared::switch_of,
    FleetAdmin, Member, Switch,
};

/// The fleet's etcd, as `pause --fleet`, `resume --fleet`, `status --fleet`, `history
/// --fleet` and `check-config --connect` reach it.
pub struct EtcdAdmin {
    config: FleetConfig,
}

impl EtcdAdmin {
    pub fn new(config: &FleetConfig) -> EtcdAdmin {
        EtcdAdmin {
            config: config.clone(),
        }
    }

    /// Runs `work` with a gateway to the fleet's etcd, on a runtime of its own.
    fn on_runtime<T, F: std::future::Future<Output = anyhow::Result<T>>>(
        &self,
        work: impl FnOnce(Gateway, FleetConfig) -> F,
    ) -> anyhow::Result<T> {
        let gateway = Gateway::new(&self.config)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work(gateway, self.config.clone()))
    }
}

impl FleetAdmin for EtcdAdmin {
    fn place(&self) -> String {
        format!("etcd at {}", self.config.endpoints.join(", "))
    }

    fn set_switch(&self, switch: Option<Switch>) -> anyhow::Result<()> {
        self.on_runtime(|gateway, config| async move {
            write_switch(
                &gateway,
                format!("{}/switch", config.prefix),
                switch.as_ref(),
            )
            .await
            .map_err(anyhow::Error::msg)
        })
    }

    fn view(&self) -> anyhow::Result<View> {
        self.on_runtime(|gateway, config| async move {
            view(&gateway, &config).await.map_err(anyhow::Error::msg)
        })
    }

    fn admissions(&self) -> anyhow::Result<Vec<Admitted>> {
        self.on_runtime(|gateway, config| async move {
            super::history::read(&gateway, &config)
                .await
                .map_err(anyhow::Error::msg)
        })
    }
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
            // Held as admission counts it, whatever it holds: one that does not read
            // shows as `?`.
            let holder = serde_json::from_slice::<Holder>(&kv.value).unwrap_or(Holder {
                node: "?".to_owned(),
                fault: "?".to_owned(),
                at: "?".to_owned(),
            });
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
        reached: Reached::Etcd { etcd, revision },
        max_concurrent: super::admission::fleet_limit(config, &kvs).0,
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
    if let (Some((max, _)), Some((_, oldest))) = (config.budget, budget.first()) {
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

/// Writes the fleet's switch at `key` (`None`: turns it off). An error says whether
/// nothing was changed (no member could have received it) or the write may still be
/// applied (a member took it and did not answer in time, or said it could not serve).
pub(super) async fn write_switch(
    gateway: &Gateway,
    key: String,
    switch: Option<&Switch>,
) -> Result<(), String> {
    let op = match switch {
        Some(switch) => Op::Put(key, serde_json::to_vec(switch).unwrap_or_default(), 0),
        None => Op::Delete(key),
    };
    let mut passed_over = false;
    match gateway.txn_noting(&[], &[op], &mut passed_over).await {
        Ok(_) => Ok(()),
        Err(e) if passed_over => Err(format!(
            "{e}; it may still be written: read it back with status --fleet"
        )),
        Err(e) => Err(format!("{e}; nothing was changed")),
    }
}
