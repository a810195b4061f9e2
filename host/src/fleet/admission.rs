//! One admission against etcd: the switch, a slot, the fleet budget and the gap
//! decided on the fleet's keys (as the watch last told them, else read at one
//! revision), then one transaction that holds only if nothing decided on changed (else
//! it reads them again in the same round trip, and the node decides again). The gap and
//! the budget are keys tied to leases, on etcd's clock (see `rule`). The slots change
//! with every fault: no node watches them (each change would go to every node), so a
//! node picks a slot from what it last read of them (`SlotsSeen`), and its
//! transaction, which takes the slot only if it is free, tells it when that was stale.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    gateway::{Compare, Kv, Op, Txn},
    history,
    rule::{self, Declined},
    shared::{switch_of, unreachable, Shared, SlotsSeen, Span},
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

/// One admission: decide on the fleet's keys (as the watch last told them, else read
/// at one revision), and claim in one transaction that holds only if nothing decided on
/// changed; after a lost race, decide again on what its failure branch read.
pub(super) async fn admit(shared: &Shared, fault: &str) -> Result<Admission, Refused> {
    let config = &shared.config;
    let (from, to) = history::state_range(config);
    // What to decide on, and whether it was read just now: first the keys as the watch
    // told them (one round trip when they are current), then what the last lost race
    // read in its own round trip.
    let mut known: Option<(Vec<Kv>, bool)> = shared.seen().map(|kvs| (kvs, false));
    let mut granted = false;
    for _ in 0..ADMIT_TRIES {
        let lease = lock(&shared.lease)
            .id
            .ok_or_else(|| unreachable("no lease".to_owned()))?;
        let (kvs, fresh) = match known.take() {
            Some(known) => known,
            None => {
                let (kvs, _) = history::state(&shared.gateway, config)
                    .await
                    .map_err(unreachable)?;
                (kvs, true)
            }
        };
        let attempt = match decide(shared, fault, &kvs, lease, fresh) {
            Err(Declined::NeedLeases(spans)) => {
                // Granted now (the node was idle), then decided again on the same keys;
                // a grant slower than a lease stays fresh is etcd too slow to admit.
                if std::mem::replace(&mut granted, true) {
                    return Err(unreachable(
                        "etcd is too slow to grant the fleet's leases (gap, budget, admissions kept)"
                            .to_owned(),
                    ));
                }
                rule::grant(shared, &spans).await.map_err(unreachable)?;
                known = Some((kvs, fresh));
                continue;
            }
            // A refusal is only ever said on keys read just now.
            Err(_) if !fresh => continue,
            Err(Declined::Refused(refused)) => return Err(refused),
            Err(Declined::Waits { why, lease, span }) => {
                return Err(rule::waits(shared, why, lease, span).await)
            }
            Err(Declined::ReadSlots) => continue,
            Ok(attempt) => attempt,
        };
        let mut txn = attempt.txn;
        txn.failure = vec![Op::Range(from.clone(), to.clone())];
        match shared.gateway.run(&txn).await {
            Ok(answer) if answer.held => {
                lock(&shared.slots).held.insert(attempt.slot);
                return Ok(Admission {
                    slot: attempt.slot,
                    lease: format!("{lease:x}"),
                    revision: answer.revision,
                });
            }
            Ok(answer) => known = Some((answer.kvs(0), true)),
            Err(e) if e.contains("lease not found") => {
                // The node's, or (never seen) one of the gap's and budget's: all anew.
                *lock(&shared.rule) = Default::default();
                lock(&shared.lease).id = None;
                return Err(unreachable(format!("the lease ended: {e}")));
            }
            Err(e) => {
                // The transaction may have been applied though its answer was lost.
                give_back_if_ours(shared, attempt.slot, &attempt.at).await;
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

/// This node gave back `slot`: the next pick may have it.
pub(super) fn given_back(shared: &Shared, slot: u32) {
    lock(&shared.slots).held.remove(&slot);
}

/// What one attempt at an admission sends: the slot it claims (stamped `at`), and its
/// transaction (but what it reads when it fails).
struct Attempt {
    slot: u32,
    at: String,
    txn: Txn,
}

/// Decides on the fleet's keys `kvs` (`fresh`: read just now, else as the watch told
/// them, without the slots): the switch, a slot, the fleet budget and gap; the
/// transaction that claims the slot under `lease`, if the fault fits.
fn decide(
    shared: &Shared,
    fault: &str,
    kvs: &[Kv],
    lease: i64,
    fresh: bool,
) -> Result<Attempt, Declined> {
    let config = &shared.config;
    let switch_key = shared.key("switch");
    let find = |key: &str| kvs.iter().find(|kv| kv.key == key);
    if let Some(switch) = switch_of(find(&switch_key)) {
        return Err(Declined::Refused(Refused {
            why: switch.to_string(),
            retry_after: None,
            unreachable: false,
        }));
    }
    let roster_key = shared.key("roster");
    let roster = find(&roster_key).map_or(0, |kv| kv.mod_revision);
    let slot = free_slot(shared, kvs, fresh, roster)?;
    let kept_under = lock(&shared.rule).fresh(Span::History, history::fresh(config));
    let (rule_compare, rule_ops) = match rule::claim(shared, kvs) {
        Err(Declined::NeedLeases(mut spans)) => {
            if kept_under == 0 {
                spans.push(Span::History);
            }
            return Err(Declined::NeedLeases(spans));
        }
        claimed => claimed?,
    };
    if kept_under == 0 {
        return Err(Declined::NeedLeases(vec![Span::History]));
    }
    let now = super::shared::wall_clock();
    let holder = Holder {
        node: shared.node.clone(),
        fault: fault.to_owned(),
        // To the nanosecond: it tells this attempt's slot from any other.
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    let slot_key = shared.slot_key(slot);
    let mut compare = vec![
        Compare::Created(slot_key.clone(), 0),
        Compare::Modified(
            switch_key.clone(),
            find(&switch_key).map_or(0, |kv| kv.mod_revision),
        ),
        Compare::Modified(roster_key, roster),
    ];
    compare.extend(rule_compare);
    let mut ops = vec![Op::Put(
        slot_key,
        serde_json::to_vec(&holder).unwrap_or_default(),
        lease,
    )];
    ops.extend(rule_ops);
    ops.push(history::op(
        config,
        &shared.node,
        fault,
        (slot, now.timestamp_millis()),
        kept_under,
    ));
    Ok(Attempt {
        slot,
        at: holder.at,
        txn: Txn {
            compare,
            success: ops,
            failure: Vec::new(),
        },
    })
}

/// A slot to claim: one no one holds, tried from a place of the node's own (so that
/// nodes asking at once seldom race for the same); or why none is free. The fleet's
/// limit is the smallest `max_concurrent` any of its nodes says (`limits/<node>`): a
/// rollout that changes it never exceeds the smaller. A slot past the limit (taken under
/// a larger one) counts until it is given back, and none is taken meanwhile, so that two
/// nodes cannot both take the last.
///
/// Keys read just now (`fresh`) hold the slots: they decide, and are kept as the hint
/// for the next picks. Else the hint picks, and it is read first when it cannot: when it
/// has no free slot, or was not read at the roster's revision `roster` and this limit
/// with no slot past the limit. That holds while the roster stays: a slot past the limit
/// is only ever taken by a node that did not know the smaller limit yet, and the join
/// that told it moved the roster, which every admission compares.
fn free_slot(shared: &Shared, kvs: &[Kv], fresh: bool, roster: i64) -> Result<u32, Declined> {
    let (max, by) = fleet_limit(&shared.config, kvs);
    let mut seen = lock(&shared.slots);
    let holders = held_slots(shared, kvs);
    if fresh {
        let past = holders.iter().any(|(n, _)| *n >= max);
        *seen = SlotsSeen {
            held: holders.iter().map(|(n, _)| *n).collect(),
            none_past: (!past).then_some((roster, max)),
        };
    } else if seen.none_past != Some((roster, max)) {
        return Err(Declined::ReadSlots);
    }
    let first = shared.spread(max);
    let free = (0..max)
        .map(|n| (first + n) % max)
        .find(|n| !seen.held.contains(n))
        .filter(|_| seen.none_past == Some((roster, max)));
    match free {
        Some(slot) => Ok(slot),
        None if !fresh => Err(Declined::ReadSlots),
        None => {
            let nodes: Vec<&str> = holders.iter().map(|(_, node)| node.as_str()).collect();
            let smaller = by.map_or_else(String::new, |node| {
                format!(
                    "; the fleet's smallest max_concurrent is node {node}'s, this node's is {}",
                    shared.config.max_concurrent
                )
            });
            Err(Declined::Refused(Refused {
                why: format!(
                    "slots full ({} of {max} held: {}{smaller})",
                    holders.len(),
                    nodes.join(", ")
                ),
                retry_after: Some(Duration::from_secs(1)),
                unreachable: false,
            }))
        }
    }
}

/// The slots held in `kvs`, and by which node: a key under `slots/` that is no slot's
/// (`slots/x`, `slots/01`) counts as past every limit.
fn held_slots(shared: &Shared, kvs: &[Kv]) -> Vec<(u32, String)> {
    let slots_key = shared.key("slots/");
    kvs.iter()
        .filter_map(|kv| {
            let name = kv.key.strip_prefix(&slots_key)?;
            let n = name
                .parse::<u32>()
                .ok()
                .filter(|n| n.to_string() == name)
                .unwrap_or(u32::MAX);
            let holder: Option<Holder> = serde_json::from_slice(&kv.value).ok();
            Some((n, holder.map_or_else(|| "?".to_owned(), |h| h.node)))
        })
        .collect()
}

/// The fleet's limit: the smallest `max_concurrent` of `config`'s and those the nodes
/// say in `kvs`, and which node says it if not `config`.
pub(super) fn fleet_limit(
    config: &super::config::FleetConfig,
    kvs: &[Kv],
) -> (u32, Option<String>) {
    let limits_key = format!("{}/limits/", config.prefix);
    let mut limit = (config.max_concurrent, None);
    for kv in kvs {
        let Some(node) = kv.key.strip_prefix(&limits_key) else {
            continue;
        };
        let said = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n >= 1);
        if let Some(n) = said.filter(|n| *n < limit.0) {
            limit = (n, Some(node.to_owned()));
        }
    }
    limit
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
