//! One admission against etcd: the slot, the fleet budget and the gap decided on the
//! fleet's keys (as the watch last told them, else read at one revision), then one
//! transaction that holds only if nothing decided on changed (else it reads them again
//! in the same round trip, and the node decides again); and the fleet budget's
//! arithmetic.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{
    config::FleetConfig,
    gateway::{Compare, Kv, Op},
    shared::{switch_of, unreachable, Shared},
    Admission, Refused,
};
use crate::support::lock::lock;

/// How many times an admission that lost a race to another node reads again.
const ADMIT_TRIES: usize = 16;

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

/// One admission: decide on the fleet's keys (as the watch last told them, else read
/// at one revision), and claim in one transaction that holds only if nothing decided on
/// changed; after a lost race, decide again on what its failure branch read.
pub(super) async fn admit(shared: &Shared, fault: &str) -> Result<Admission, Refused> {
    let config = &shared.config;
    let (from, to) = super::history::state_range(config);
    // What to decide on: first the keys as the watch told them (one round trip when
    // they are current), then what the last lost race read in its own round trip.
    let mut known: Option<Vec<Kv>> = shared.seen();
    let mut seen = known.is_some();
    for _ in 0..ADMIT_TRIES {
        let lease = lock(&shared.lease)
            .id
            .ok_or_else(|| unreachable("no lease".to_owned()))?;
        let kvs = match known.take() {
            Some(kvs) => kvs,
            None => {
                super::history::state(&shared.gateway, config)
                    .await
                    .map_err(unreachable)?
                    .0
            }
        };
        let decided = decide(shared, fault, &kvs, lease);
        // A refusal is only ever said on keys read just now.
        if std::mem::take(&mut seen) && decided.is_err() {
            continue;
        }
        let Attempt {
            slot,
            at,
            compare,
            ops,
        } = decided?;
        let read_again = Some((from.as_slice(), to.as_slice()));
        match shared
            .gateway
            .txn_else_range(&compare, &ops, read_again)
            .await
        {
            Ok((true, revision, _)) => {
                return Ok(Admission {
                    slot,
                    lease: format!("{lease:x}"),
                    revision,
                })
            }
            Ok((false, _, kvs)) => known = Some(kvs),
            Err(e) if e.contains("lease not found") => {
                lock(&shared.lease).id = None;
                return Err(unreachable(format!("the lease ended: {e}")));
            }
            Err(e) => {
                // The transaction may have been applied though its answer was lost.
                give_back_if_ours(shared, slot, &at).await;
                return Err(unreachable(e));
            }
        }
    }
    Err(Refused {
        why: format!("lost the race for a slot {ADMIT_TRIES} times in a row"),
        retry_after: Some(Duration::from_secs(1)),
        unreachable: false,
    })
}

/// What one attempt at an admission sends: the slot it claims (stamped `at`), and its
/// transaction.
struct Attempt {
    slot: u32,
    at: String,
    compare: Vec<Compare>,
    ops: Vec<Op>,
}

/// Decides on the fleet's keys `kvs`: the switch, a free slot, the fleet budget and
/// gap; the transaction that claims the slot under `lease`, if the fault fits.
fn decide(shared: &Shared, fault: &str, kvs: &[Kv], lease: i64) -> Result<Attempt, Refused> {
    let config = &shared.config;
    let (slots_key, budget_key, switch_key) = (
        shared.key("slots/"),
        shared.key("budget"),
        shared.key("switch"),
    );
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
    // From a place of the node's own, so that nodes asking at once seldom race for the
    // same slot.
    let first = shared.first_slot();
    let Some(slot) = (0..config.max_concurrent)
        .map(|n| (first + n) % config.max_concurrent)
        .find(|n| !held.iter().any(|(h, _)| h == n))
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
        // To the nanosecond: it tells this attempt's slot from any other.
        at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
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
    ops.extend(super::history::ops(config, &shared.node, fault, slot, now));
    if limited {
        recent.times.push(now);
        compare.push(Compare::Modified(
            budget_key.clone(),
            budget.map_or(0, |kv| kv.mod_revision),
        ));
        ops.push(Op::Put(
            budget_key,
            serde_json::to_vec(&recent).unwrap_or_default(),
            0,
        ));
    }
    Ok(Attempt {
        slot,
        at: holder.at,
        compare,
        ops,
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

/// Gives back slot `slot` if this node took it in the attempt stamped `at`.
async fn give_back_if_ours(shared: &Shared, slot: u32, at: &str) {
    let key = shared.slot_key(slot);
    let Ok((kvs, _)) = shared.gateway.range_prefix(&key).await else {
        return;
    };
    let ours = kvs.iter().find(|kv| {
        kv.key == key
            && serde_json::from_slice::<Holder>(&kv.value)
                .is_ok_and(|h| h.at == at && h.node == shared.node)
    });
    if let Some(kv) = ours {
        let compare = [Compare::Created(key.clone(), kv.create_revision)];
        let _ = shared.gateway.txn(&compare, &[Op::Delete(key)]).await;
    }
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
            tls: None,
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
