//! The node's lease with etcd (see `etcd`): granted under an id the node draws, renewed
//! every TTL/3 on the fleet's thread, the node cut off past `fail_after` since the last
//! renewal that worked was sent, and ended as the node leaves.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    gateway::{Compare, Op, CALL_TIMEOUT},
    shared::Shared,
};
use crate::support::lock::lock;

/// How often the lease's age is looked at (and a failed renewal tried again).
pub(super) const TICK: Duration = Duration::from_millis(200);
/// How long a node leaving the fleet tries to end its lease: several calls, as one may
/// time out while etcd is slow (a busy disk, an election), and short beside a service
/// manager's stop timeout. Past it the slots free when the lease ends by itself.
pub(super) const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

/// Ends lease `id` as the node leaves: tried again after a call that ran out of time
/// (etcd slow) or whose sign-in had expired (once), until [`LEAVE_DEADLINE`] draws
/// near; a call refused at once (etcd down) would be refused again.
pub(super) async fn end_lease(shared: &Shared, id: i64) -> Result<(), String> {
    let last = tokio::time::Instant::now() + LEAVE_DEADLINE - CALL_TIMEOUT;
    let mut signed_in_again = false;
    loop {
        let asked = tokio::time::Instant::now();
        let e = match shared.gateway.revoke(id).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // A try whose answer was lost ended it.
        if e.contains("lease not found") {
            return Ok(());
        }
        // The gateway forgot the token: the next call signs in again.
        let expired = !signed_in_again && e.contains("invalid auth token");
        signed_in_again |= expired;
        let timed_out = asked.elapsed() >= CALL_TIMEOUT / 2;
        if asked >= last || !(timed_out || expired) {
            return Err(e);
        }
    }
}

/// Gives back every slot held by lease `lease` that no live admission of this process
/// holds (an answer lost, a give-back that failed), each only if still the same slot.
/// Skipped while an admission is under way (its slot may be in etcd before it is
/// known here).
async fn reconcile(shared: &Shared, lease: i64) {
    let started = {
        let tracked = lock(&shared.tracked);
        if tracked.under_way > 0 {
            return;
        }
        tracked.started
    };
    let Ok((kvs, _)) = shared.gateway.range_prefix(&shared.key("slots/")).await else {
        return;
    };
    let stale: Vec<_> = {
        let tracked = lock(&shared.tracked);
        if tracked.under_way > 0 || tracked.started != started {
            return;
        }
        kvs.into_iter()
            .filter(|kv| kv.lease == lease && !tracked.live.contains(&kv.create_revision))
            .collect()
    };
    for kv in stale {
        shared.log(format!(
            "{} is held by this node's lease but by none of its faults: giving it back",
            kv.key
        ));
        let compare = [Compare::Created(kv.key.clone(), kv.create_revision)];
        if let Err(e) = shared.gateway.txn(&compare, &[Op::Delete(kv.key)]).await {
            shared.log(format!("cannot give it back yet ({e})"));
        }
    }
}

/// Grants the lease and renews it every TTL/3; past `fail_after` since the last renewal
/// that worked was sent, the node is cut off (told on a timer of its own, whatever a
/// renewal waits for) until one works again. Runs for the life of the process.
pub(super) async fn keep_lease(shared: Arc<Shared>) {
    tokio::spawn(follow_cut_off(shared.clone()));
    let mut attempted: Option<Instant> = None;
    loop {
        let (id, renewed, closed) = {
            let lease = lock(&shared.lease);
            (lease.id, lease.renewed, lease.closed)
        };
        if closed {
            // A grant that failed before the node left may have got through unheard.
            let asked = lock(&shared.lease).asked.take();
            if let Some(id) = asked {
                if let Err(e) = end_lease(&shared, id).await {
                    shared.log(format!("cannot end the lease ({e}): it ends by itself"));
                }
            }
            // Left the fleet: nothing more to renew. The thread's runtime lives on (to
            // the process's end) for the calls still under way, the lease's own end
            // among them: returning would drop them unfinished.
            lock(&shared.lease).parked = true;
            shared.parked.notify_waiters();
            return std::future::pending().await;
        }
        let due = match (renewed, attempted) {
            (Some(renewed), Some(attempted)) => {
                renewed.elapsed() >= shared.config.renew_every() && attempted.elapsed() >= TICK
            }
            _ => true,
        };
        if due {
            // Stamped when sent: etcd renews the lease when it gets it, not before.
            let sent = Instant::now();
            attempted = Some(sent);
            let (answer, granted) = match id {
                Some(id) => (renew(&shared, id, renewed, sent).await, false),
                None => (grant(&shared).await, true),
            };
            let (answer, granted) = match answer {
                // Expired: whatever it held is gone; a new one is granted at once
                // (the faults admitted under the old one are reverted: see
                // `FleetState::lease`), unless the node is leaving.
                Ok((_, 0)) if forget_expired(&shared) => (grant(&shared).await, true),
                other => (other, granted),
            };
            // Stored only while the node stays: the check and the store under one lock,
            // so that `close` never misses a lease granted as it leaves.
            let stray = {
                let mut lease = lock(&shared.lease);
                if granted && answer.is_ok() {
                    lease.asked = None;
                }
                match answer {
                    Ok((id, _)) if lease.closed => granted.then_some(id),
                    // A grant that failed may have got through unheard (etcd granted it,
                    // its answer was lost): ended too ("not found" if it did not).
                    Err(_) if lease.closed => lease.asked.take(),
                    Ok((id, _)) => {
                        if lease.id == Some(id) {
                            tokio::spawn({
                                let shared = shared.clone();
                                async move { reconcile(&shared, id).await }
                            });
                        }
                        lease.id = Some(id);
                        lease.renewed = Some(sent);
                        lease.failing = None;
                        None
                    }
                    Err(e) => {
                        if lease.failing.as_deref() != Some(e.as_str()) {
                            shared.log(format!("cannot renew the lease: {e}"));
                        }
                        lease.failing = Some(e);
                        None
                    }
                }
            };
            if let Some(id) = stray {
                // Granted while the node left: ended before the loop stops, or the node
                // would be listed as a member for a whole TTL.
                if let Err(e) = end_lease(&shared, id).await {
                    shared.log(format!("cannot end the lease ({e}): it ends by itself"));
                }
            }
            if lock(&shared.lease).closed {
                continue;
            }
        }
        publish(&shared);
        tokio::time::sleep(TICK).await;
    }
}

/// Forgets the node's lease, which expired, unless the node is leaving: whether it did.
/// The check and the change under one lock, so that `close` either takes the old id
/// (and no new lease is granted) or finds none and waits for the loop, which ends the
/// lease it is granted meanwhile.
fn forget_expired(shared: &Shared) -> bool {
    let mut lease = lock(&shared.lease);
    if !lease.closed {
        lease.id = None;
        lease.renewed = None;
    }
    !lease.closed
}

/// Renews lease `id` (last renewed at `renewed`, this one sent at `sent`): the TTL it
/// has again (0: it had expired). Waits no longer than the time left before the node is
/// cut off (an answer after it is too late to matter); the next try starts at the next
/// endpoint.
async fn renew(
    shared: &Shared,
    id: i64,
    renewed: Option<Instant>,
    sent: Instant,
) -> Result<(i64, i64), String> {
    let left = renewed
        .map(|renewed| (renewed + shared.config.fail_after()).saturating_duration_since(sent))
        .filter(|left| *left >= TICK)
        .unwrap_or(CALL_TIMEOUT);
    match tokio::time::timeout(left, shared.gateway.keep_alive(id)).await {
        Ok(answer) => answer.map(|ttl| (id, ttl)),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(left)
        )),
    }
}

/// Tells the daemon, every tick, the node's lease and whether it is cut off.
async fn follow_cut_off(shared: Arc<Shared>) {
    while !lock(&shared.lease).closed {
        publish(&shared);
        tokio::time::sleep(TICK).await;
    }
}

/// Tells the daemon the node's lease now, and whether it is cut off: no lease, or none
/// renewed within `fail_after`.
fn publish(shared: &Shared) {
    let (id, cut_off) = {
        let lease = lock(&shared.lease);
        let cut_off = match (lease.id, lease.renewed) {
            (Some(_), Some(renewed)) if renewed.elapsed() < shared.config.fail_after() => None,
            _ => Some(
                lease
                    .failing
                    .clone()
                    .unwrap_or_else(|| "no lease".to_owned()),
            ),
        };
        (lease.id, cut_off)
    };
    shared.set_lease(id);
    shared.set_cut_off(cut_off);
}

/// A new lease, and what the node says of itself written under it: its id (and a TTL
/// that is not 0). The lease's id is the one asked for by the tries before that did not
/// end (see [`Lease::asked`](super::shared::Lease)), or a new one.
async fn grant(shared: &Shared) -> Result<(i64, i64), String> {
    let asked = lock(&shared.lease).asked;
    let id = match asked {
        Some(id) => id,
        None => {
            let id = lease_id().map_err(|e| format!("cannot draw a lease id: {e}"))?;
            lock(&shared.lease).asked = Some(id);
            id
        }
    };
    // Whether this try passed over an endpoint that may have granted the lease unheard.
    let mut passed_over = false;
    let granted = shared
        .gateway
        .grant_as(shared.config.lease_ttl, id, &mut passed_over)
        .await;
    match granted {
        Ok(_) => {}
        // An earlier ask got through, and its answer was lost (an earlier try's, or this
        // try's at an endpoint it passed over): the lease is this node's, its countdown
        // started then. Renewed now, so that it lives at least a TTL from when this try
        // was sent, as the loop counts.
        Err(e) if (asked.is_some() || passed_over) && e.contains("lease already exists") => {
            if shared.gateway.keep_alive(id).await? == 0 {
                return Err("the lease granted unheard had ended".to_owned());
            }
        }
        // Another's lease has the id just drawn (never asked for before): the next try
        // draws another.
        Err(e) if e.contains("lease already exists") => {
            lock(&shared.lease).asked = None;
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    if !shared.join(id).await? {
        // The node said what it does while it joined (it started): said now.
        shared.put_member(id).await;
    }
    Ok((id, 1))
}

/// A lease id of the node's own: random (never from the drill's seed, which the nodes
/// of a fleet may share), positive, as etcd takes them.
fn lease_id() -> Result<i64, getrandom::Error> {
    let id = (getrandom::u64()? >> 1) as i64;
    Ok(id.max(1))
}

#[cfg(test)]
mod tests {
    use super::lease_id;

    #[test]
    fn lease_ids_are_positive_and_drawn_anew() {
        let ids: std::collections::BTreeSet<i64> = (0..1000)
            .map(|_| lease_id().expect("a random id"))
            .collect();
        assert!(ids.iter().all(|&id| id > 0), "etcd takes positive ids only");
        assert!(ids.len() > 990, "{} distinct ids in 1000 draws", ids.len());
    }
}
