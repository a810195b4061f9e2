//! The etcd coordinator. Keys under the fleet's prefix: `slots/<n>` (a fault in flight
//! or in effect, tied to its node's lease), `budget` (the fleet's recent admissions, as
//! milliseconds since the epoch), `switch` (the fleet's pause, while it stands).
//!
//! Everything runs on one thread of its own (`fleet`) with its own single-threaded
//! runtime: the lease's renewal every TTL/3, the switch's watch, and the admissions the
//! engine's threads ask for (they wait for the answer within a deadline). So a slow
//! etcd never holds up the daemon's runtime, and the engine stays synchronous.

use std::{
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    config::FleetConfig,
    gateway::{Compare, Gateway, Kv, Op, CALL_TIMEOUT},
    Admission, Coordinator, FleetState, Refused, Switch,
};
use crate::support::lock::lock;

/// How often the lease's age is looked at (and a failed renewal tried again).
const TICK: Duration = Duration::from_millis(200);
/// How long an admission may take in all, retries after a lost race included.
const ADMIT_DEADLINE: Duration = Duration::from_secs(2);
/// How many times an admission that lost a race to another node reads again.
const ADMIT_TRIES: usize = 16;

/// The etcd coordinator of one node.
pub struct Etcd {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

struct Shared {
    gateway: Gateway,
    config: FleetConfig,
    node: String,
    /// Where its lines go (the daemon's log).
    log: fn(String),
    lease: Mutex<Lease>,
    state: watch::Sender<FleetState>,
}

#[derive(Default)]
struct Lease {
    id: Option<i64>,
    renewed: Option<Instant>,
    /// The last failure, said once until a renewal works again.
    failing: Option<String>,
    /// The node left the fleet: no lease is granted any more.
    closed: bool,
    /// What the node last said of itself, written again under each new lease.
    member: Option<super::Member>,
}

/// A slot's value: who holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Holder {
    pub node: String,
    pub fault: String,
    pub at: String,
}

/// The budget key's value.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Recent {
    /// Admissions, ms since the epoch, oldest first.
    pub times: Vec<i64>,
}

impl Etcd {
    /// Starts the coordinator of node `node`: its thread, a lease, the switch's watch.
    /// Waits a little for the first reading of the switch, so that a node that starts
    /// while the fleet is paused starts paused.
    /// Its lines go to `log`.
    pub fn start(config: &FleetConfig, node: &str, log: fn(String)) -> anyhow::Result<Arc<Self>> {
        let gateway = Gateway::new(config.endpoints.clone(), config.credentials.clone())?;
        let (state, _) = watch::channel(FleetState {
            cut_off: Some("the coordinator has not answered yet".to_owned()),
            switch: None,
        });
        let shared = Arc::new(Shared {
            gateway,
            config: config.clone(),
            node: node.to_owned(),
            log,
            lease: Mutex::new(Lease::default()),
            state,
        });
        let (handle_tx, handle_rx) = mpsc::channel();
        let (first_tx, first_rx) = mpsc::channel::<()>();
        let on_thread = shared.clone();
        std::thread::Builder::new()
            .name("fleet".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    tokio::spawn(watch_switch(on_thread.clone(), first_tx));
                    keep_lease(on_thread).await;
                });
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the fleet thread ended at once"))?
            .map_err(|e| anyhow::anyhow!("cannot start the fleet's runtime: {e}"))?;
        let _ = first_rx.recv_timeout(ADMIT_DEADLINE);
        Ok(Arc::new(Self { shared, runtime }))
    }

    /// Runs `work` on the fleet's thread and waits for its answer at most `wait`.
    fn wait_for<T: Send + 'static>(
        &self,
        wait: Duration,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv_timeout(wait).ok()
    }
}

impl Coordinator for Etcd {
    fn admit(&self, fault: &str) -> Result<Admission, Refused> {
        if let Some(why) = self.shared.state.borrow().cut_off.clone() {
            return Err(unreachable(why));
        }
        let shared = self.shared.clone();
        let fault = fault.to_owned();
        self.wait_for(ADMIT_DEADLINE + CALL_TIMEOUT, async move {
            tokio::time::timeout(ADMIT_DEADLINE, admit(&shared, &fault))
                .await
                .unwrap_or_else(|_| {
                    Err(unreachable(format!(
                        "no admission within {}",
                        humantime::format_duration(ADMIT_DEADLINE)
                    )))
                })
        })
        .unwrap_or_else(|| Err(unreachable("the fleet thread did not answer".to_owned())))
    }

    fn confirm(&self, admission: &Admission) -> Result<(), Refused> {
        if let Some(why) = self.shared.state.borrow().cut_off.clone() {
            return Err(unreachable(why));
        }
        let shared = self.shared.clone();
        let admission = admission.clone();
        self.wait_for(ADMIT_DEADLINE, async move {
            let key = shared.slot_key(admission.slot);
            let (kvs, _) = shared.gateway.range_prefix(&key).await.map_err(unreachable)?;
            match kvs.iter().find(|kv| kv.key == key) {
                Some(kv) if kv.create_revision == admission.revision => Ok(()),
                _ => Err(Refused {
                    why: format!(
                        "the admission at revision {} was lost before the fault was applied (its lease ended)",
                        admission.revision
                    ),
                    retry_after: Some(Duration::from_secs(1)),
                    unreachable: false,
                }),
            }
        })
        .unwrap_or_else(|| Err(unreachable("the fleet thread did not answer".to_owned())))
    }

    fn release(&self, admission: &Admission) {
        let shared = self.shared.clone();
        let admission = admission.clone();
        self.runtime.spawn(async move {
            let key = shared.slot_key(admission.slot);
            let done = shared
                .gateway
                .txn(
                    &[Compare::Created(key.clone(), admission.revision)],
                    &[Op::Delete(key)],
                )
                .await;
            if let Err(e) = done {
                shared.log(format!(
                    "cannot give back slot {} ({e}): it frees when the lease ends",
                    admission.slot
                ));
            }
        });
    }

    fn state(&self) -> FleetState {
        self.shared.state.borrow().clone()
    }

    fn changes(&self) -> watch::Receiver<FleetState> {
        self.shared.state.subscribe()
    }

    fn announce(&self, member: super::Member) {
        let member = super::Member {
            node: self.shared.node.clone(),
            ..member
        };
        let (lease, changed) = {
            let mut lease = lock(&self.shared.lease);
            let changed = lease.member.as_ref() != Some(&member);
            lease.member = Some(member);
            (lease.id, changed)
        };
        if let (Some(id), true) = (lease, changed) {
            let shared = self.shared.clone();
            self.runtime
                .spawn(async move { shared.put_member(id).await });
        }
    }

    fn close(&self) {
        let Some(id) = ({
            let mut lease = lock(&self.shared.lease);
            lease.closed = true;
            lease.id.take()
        }) else {
            return;
        };
        let shared = self.shared.clone();
        let revoked = self.wait_for(CALL_TIMEOUT, async move { shared.gateway.revoke(id).await });
        if let Some(Err(e)) = revoked {
            self.shared.log(format!(
                "cannot end the lease ({e}): its slots free when it ends"
            ));
        }
    }
}

fn unreachable(why: String) -> Refused {
    Refused {
        why: format!("the coordinator is unreachable ({why})"),
        retry_after: Some(Duration::from_secs(1)),
        unreachable: true,
    }
}

impl Shared {
    fn log(&self, line: String) {
        (self.log)(format!("fleet: {line}"));
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.config.prefix)
    }

    fn slot_key(&self, slot: u32) -> String {
        self.key(&format!("slots/{slot}"))
    }

    /// Writes what the node last said of itself under lease `id`.
    async fn put_member(&self, id: i64) {
        let Some(member) = lock(&self.lease).member.clone() else {
            return;
        };
        let key = self.key(&format!("members/{}", member.node));
        let value = serde_json::to_vec(&member).unwrap_or_default();
        if let Err(e) = self.gateway.txn(&[], &[Op::Put(key, value, id)]).await {
            self.log(format!("cannot say what this node does ({e})"));
        }
    }

    fn set_cut_off(&self, why: Option<String>) {
        self.state.send_if_modified(|state| {
            let changed = state.cut_off.is_some() != why.is_some();
            if changed {
                match &why {
                    Some(why) => self.log(format!(
                        "cut off from the coordinator ({why}): refusing every fault and reverting those in effect before the lease can end"
                    )),
                    None => self.log(format!(
                        "node {} admitted by etcd at {} under {}",
                        self.node,
                        self.gateway.endpoints().join(" "),
                        self.config.prefix
                    )),
                }
            }
            state.cut_off = why;
            changed
        });
    }

    fn set_switch(&self, switch: Option<Switch>) {
        self.state.send_if_modified(|state| {
            let changed = state.switch != switch;
            state.switch = switch;
            changed
        });
    }
}

/// Grants the lease and renews it every TTL/3; past `fail_after` without a renewal the
/// node is cut off until one works again. Runs for the life of the process.
async fn keep_lease(shared: Arc<Shared>) {
    let mut attempted: Option<Instant> = None;
    loop {
        let (id, renewed) = {
            let lease = lock(&shared.lease);
            if lease.closed {
                return;
            }
            (lease.id, lease.renewed)
        };
        let due = match (renewed, attempted) {
            (Some(renewed), Some(attempted)) => {
                renewed.elapsed() >= shared.config.renew_every() && attempted.elapsed() >= TICK
            }
            _ => true,
        };
        if due {
            attempted = Some(Instant::now());
            let answer = match id {
                Some(id) => shared.gateway.keep_alive(id).await.map(|ttl| (id, ttl)),
                None => match shared.gateway.grant(shared.config.lease_ttl).await {
                    Ok(id) => {
                        shared.put_member(id).await;
                        Ok((id, 1))
                    }
                    Err(e) => Err(e),
                },
            };
            let mut lease = lock(&shared.lease);
            match answer {
                Ok((id, ttl)) if ttl > 0 => {
                    lease.id = Some(id);
                    lease.renewed = Some(Instant::now());
                    lease.failing = None;
                }
                Ok(_) => {
                    // Expired: whatever it held is gone; a new one is granted at once.
                    lease.id = None;
                    lease.renewed = None;
                }
                Err(e) => {
                    if lease.failing.as_deref() != Some(e.as_str()) {
                        shared.log(format!("cannot renew the lease: {e}"));
                    }
                    lease.failing = Some(e);
                }
            }
        }
        let cut_off = {
            let lease = lock(&shared.lease);
            match (lease.id, lease.renewed) {
                (Some(_), Some(renewed)) if renewed.elapsed() < shared.config.fail_after() => None,
                _ => Some(
                    lease
                        .failing
                        .clone()
                        .unwrap_or_else(|| "no lease".to_owned()),
                ),
            }
        };
        shared.set_cut_off(cut_off);
        tokio::time::sleep(TICK).await;
    }
}

/// Reads the switch and watches it, again after each failure. `first` is told once the
/// switch has been read (or could not be).
async fn watch_switch(shared: Arc<Shared>, first: mpsc::Sender<()>) {
    let key = shared.key("switch");
    let mut first = Some(first);
    loop {
        match shared.gateway.range_prefix(&key).await {
            Ok((kvs, revision)) => {
                shared.set_switch(switch_of(kvs.iter().find(|kv| kv.key == key)));
                first.take();
                let watched = shared
                    .gateway
                    .watch(&key, revision + 1, |kv| {
                        shared.set_switch(switch_of(kv.as_ref()));
                    })
                    .await;
                if let Err(e) = watched {
                    shared.log(format!("watching the switch: {e}; watching again"));
                }
            }
            Err(_) => {
                first.take();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(super) fn switch_of(kv: Option<&Kv>) -> Option<Switch> {
    let kv = kv?;
    Some(
        serde_json::from_slice(&kv.value).unwrap_or_else(|_| Switch {
            by: "?".to_owned(),
            reason: String::from_utf8_lossy(&kv.value).into_owned(),
            at: String::new(),
        }),
    )
}

/// One admission: read the fleet's keys at one revision, decide, and claim in one
/// transaction that holds only if nothing it read changed; read again after a lost race.
async fn admit(shared: &Shared, fault: &str) -> Result<Admission, Refused> {
    let config = &shared.config;
    let (slots_key, budget_key, switch_key) = (
        shared.key("slots/"),
        shared.key("budget"),
        shared.key("switch"),
    );
    for _ in 0..ADMIT_TRIES {
        let lease = lock(&shared.lease)
            .id
            .ok_or_else(|| unreachable("no lease".to_owned()))?;
        let (kvs, _) = shared
            .gateway
            .range_prefix(&format!("{}/", config.prefix))
            .await
            .map_err(unreachable)?;
        let find = |key: &str| kvs.iter().find(|kv| kv.key == key);
        if let Some(switch) = switch_of(find(&switch_key)) {
            return Err(Refused {
                why: switch.to_string(),
                retry_after: None,
                unreachable: false,
            });
        }
        let held: Vec<(u32, String)> = kvs
            .iter()
            .filter_map(|kv| {
                let n: u32 = kv.key.strip_prefix(&slots_key)?.parse().ok()?;
                let holder: Option<Holder> = serde_json::from_slice(&kv.value).ok();
                Some((n, holder.map_or_else(|| "?".to_owned(), |h| h.node)))
            })
            .collect();
        let Some(slot) = (0..config.max_concurrent).find(|n| !held.iter().any(|(h, _)| h == n))
        else {
            let nodes: Vec<&str> = held.iter().map(|(_, node)| node.as_str()).collect();
            return Err(Refused {
                why: format!(
                    "slots full ({} of {} held: {})",
                    held.len(),
                    config.max_concurrent,
                    nodes.join(", ")
                ),
                retry_after: Some(Duration::from_secs(1)),
                unreachable: false,
            });
        };
        let budget = find(&budget_key);
        let now = Utc::now().timestamp_millis();
        let mut recent: Recent = budget
            .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            .unwrap_or_default();
        let limited = config.budget.is_some() || config.min_gap.is_some();
        if limited {
            check_budget(config, &mut recent, now)?;
        }
        let holder = Holder {
            node: shared.node.clone(),
            fault: fault.to_owned(),
            at: Utc::now().to_rfc3339(),
        };
        let slot_key = shared.slot_key(slot);
        let mut compare = vec![
            Compare::Created(slot_key.clone(), 0),
            Compare::Modified(
                switch_key.clone(),
                find(&switch_key).map_or(0, |kv| kv.mod_revision),
            ),
        ];
        let mut ops = vec![Op::Put(
            slot_key,
            serde_json::to_vec(&holder).unwrap_or_default(),
            lease,
        )];
        if limited {
            recent.times.push(now);
            compare.push(Compare::Modified(
                budget_key.clone(),
                budget.map_or(0, |kv| kv.mod_revision),
            ));
            ops.push(Op::Put(
                budget_key.clone(),
                serde_json::to_vec(&recent).unwrap_or_default(),
                0,
            ));
        }
        match shared.gateway.txn(&compare, &ops).await {
            Ok((true, revision)) => {
                return Ok(Admission {
                    slot,
                    lease: format!("{lease:x}"),
                    revision,
                })
            }
            Ok((false, _)) => continue,
            Err(e) if e.contains("lease not found") => {
                lock(&shared.lease).id = None;
                return Err(unreachable(format!("the lease ended: {e}")));
            }
            Err(e) => return Err(unreachable(e)),
        }
    }
    Err(Refused {
        why: format!("lost the race for a slot {ADMIT_TRIES} times in a row"),
        retry_after: Some(Duration::from_secs(1)),
        unreachable: false,
    })
}

/// The admissions counted against the fleet budget at `now` (ms), and how long until
/// the next one fits (`None`: now).
pub(super) fn next_fits(
    config: &FleetConfig,
    recent: &Recent,
    now: i64,
) -> (usize, Option<Duration>) {
    let mut recent = Recent {
        times: recent.times.clone(),
    };
    let wait = check_budget(config, &mut recent, now)
        .err()
        .and_then(|r| r.retry_after);
    let per = config.budget.map_or(0, |(_, per)| {
        i64::try_from(per.as_millis()).unwrap_or(i64::MAX)
    });
    (
        recent.times.iter().filter(|t| now - **t < per).count(),
        wait,
    )
}

/// Checks the fleet budget and gap against the recent admissions at `now` (ms),
/// dropping those too old to count.
fn check_budget(config: &FleetConfig, recent: &mut Recent, now: i64) -> Result<(), Refused> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let span = config
        .budget
        .map_or(0, |(_, per)| ms(per))
        .max(config.min_gap.map_or(0, ms));
    recent.times.retain(|t| now - *t < span);
    if let (Some(gap), Some(last)) = (config.min_gap, recent.times.last()) {
        if now - last < ms(gap) {
            let wait = Duration::from_millis((last + ms(gap) - now).max(0) as u64);
            return Err(Refused {
                why: format!(
                    "min gap: at least {} between the fleet's faults; the next fits in {} s",
                    humantime::format_duration(gap),
                    crate::domain::injection::ceil_secs(wait)
                ),
                retry_after: Some(wait),
                unreachable: false,
            });
        }
    }
    if let Some((max, per)) = config.budget {
        let inside: Vec<i64> = recent
            .times
            .iter()
            .copied()
            .filter(|t| now - t < ms(per))
            .collect();
        if inside.len() >= max as usize {
            let oldest = inside[inside.len() - max as usize];
            let wait = Duration::from_millis((oldest + ms(per) - now).max(0) as u64);
            return Err(Refused {
                why: format!(
                    "fleet budget: {max} faults per {} used; the next fits in {} s",
                    humantime::format_duration(per),
                    crate::domain::injection::ceil_secs(wait)
                ),
                retry_after: Some(wait),
                unreachable: false,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(budget: Option<(u32, u64)>, gap: Option<u64>) -> FleetConfig {
        FleetConfig {
            endpoints: vec![],
            prefix: "/nm".into(),
            credentials: None,
            max_concurrent: 1,
            budget: budget.map(|(max, per)| (max, Duration::from_secs(per))),
            min_gap: gap.map(Duration::from_secs),
            lease_ttl: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_budget_and_the_gap_refuse_with_when_the_next_fits() {
        let mut recent = Recent {
            times: vec![0, 10_000, 20_000],
        };
        let refused = check_budget(&config(Some((3, 60)), None), &mut recent, 30_000).unwrap_err();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
        assert!(
            refused
                .why
                .starts_with("fleet budget: 3 faults per 1m used"),
            "{}",
            refused.why
        );
        assert!(check_budget(&config(Some((3, 60)), None), &mut recent, 60_000).is_ok());
        assert_eq!(recent.times, [10_000, 20_000], "the oldest fell out");
        let refused = check_budget(&config(None, Some(5)), &mut recent, 22_000).unwrap_err();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(3)));
        assert!(
            refused.why.starts_with("min gap: at least 5s"),
            "{}",
            refused.why
        );
    }
}
