//! The etcd coordinator. Keys under the fleet's prefix: `slots/<n>` (a fault in flight
//! or in effect, tied to its node's lease), `gap` and `budget/<n>` (the fleet's gap and
//! budget, tied to leases of their span: see `rule`), `switch` (the fleet's pause, while
//! it stands), `members/<node>` (what each node says of itself), `limits/<node>` and
//! `roster` (each node's `max_concurrent`, and a key moved as a node joins),
//! `admissions/` (the recent admissions, for `history --fleet`: see `history`).
//!
//! Everything runs on one thread of its own (`fleet`) with its own single-threaded
//! runtime: the lease's renewal every TTL/3, the switch's watch, and the admissions the
//! engine's threads ask for (they wait for the answer within a deadline). So a slow
//! etcd never holds up the daemon's runtime, and the engine stays synchronous.

use std::{
    sync::{mpsc, Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    config::FleetConfig,
    gateway::{Compare, Gateway, Op, CALL_TIMEOUT},
    shared::{unreachable, Lease, Shared},
    Admission, Coordinator, FleetState, Refused,
};
use crate::support::lock::lock;

/// How often the lease's age is looked at (and a failed renewal tried again).
const TICK: Duration = Duration::from_millis(200);
/// How long an admission may take in all, retries after a lost race included.
const ADMIT_DEADLINE: Duration = Duration::from_secs(2);
/// How long a release that failed waits before it tries again.
const RELEASE_RETRY: Duration = Duration::from_millis(250);
/// How long a node leaving the fleet tries to end its lease: several calls, as one may
/// time out while etcd is slow (a busy disk, an election), and short beside a service
/// manager's stop timeout. Past it the slots free when the lease ends by itself.
const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

/// The etcd coordinator of one node.
pub struct Etcd {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl Etcd {
    /// Starts the coordinator of node `node`: its thread, a lease, the switch's watch.
    /// Waits a little for the first reading of the switch, so that a node that starts
    /// while the fleet is paused starts paused.
    /// Its lines go to `log`.
    pub fn start(config: &FleetConfig, node: &str, log: fn(String)) -> anyhow::Result<Arc<Self>> {
        let gateway = Gateway::new(config)?;
        let (state, _) = watch::channel(FleetState {
            cut_off: Some("the coordinator has not answered yet".to_owned()),
            switch: None,
            lease: None,
        });
        let shared = Arc::new(Shared {
            gateway,
            config: config.clone(),
            node: node.to_owned(),
            log,
            lease: Mutex::new(Lease::default()),
            state,
            seen: Mutex::new(None),
            tracked: Mutex::default(),
            rule: Mutex::default(),
            slots: Mutex::default(),
            swept: Mutex::default(),
            parked: tokio::sync::Notify::new(),
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
        let handoff = Arc::new(Handoff::default());
        {
            let mut tracked = lock(&shared.tracked);
            tracked.under_way += 1;
            tracked.started += 1;
        }
        let on_task = handoff.clone();
        // The admission runs to its end on its own task, whether the caller still
        // waits or not: a slot it won after the caller gave up is given back.
        self.runtime.spawn(async move {
            let admitted = super::admission::admit(&shared, &fault).await;
            let gave_up = {
                let mut tracked = lock(&shared.tracked);
                tracked.under_way -= 1;
                let mut state = lock(&on_task.state);
                if *state == Handing::GaveUp {
                    true
                } else {
                    if let Ok(admission) = &admitted {
                        tracked.live.insert(admission.revision);
                    }
                    *state = Handing::Done(admitted.clone());
                    on_task.done.notify_all();
                    false
                }
            };
            if admitted.is_ok() {
                // After the answer: the next admission finds its leases ready.
                super::rule::refresh(&shared, &super::rule::spans(&shared.config)).await;
            }
            if let (true, Ok(admission)) = (gave_up, admitted) {
                shared.log(format!(
                    "slot {} was won after its asker gave up: giving it back",
                    admission.slot
                ));
                give_back(&shared, &admission).await;
            }
        });
        handoff.wait(ADMIT_DEADLINE).unwrap_or_else(|| {
            Err(unreachable(format!(
                "no admission within {}",
                humantime::format_duration(ADMIT_DEADLINE)
            )))
        })
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
        lock(&self.shared.tracked).live.remove(&admission.revision);
        let shared = self.shared.clone();
        let admission = admission.clone();
        self.runtime
            .spawn(async move { give_back(&shared, &admission).await });
    }

    fn state(&self) -> FleetState {
        self.shared.state.borrow().clone()
    }

    fn changes(&self) -> watch::Receiver<FleetState> {
        self.shared.state.subscribe()
    }

    fn set_switch(&self, switch: Option<super::Switch>) -> Result<(), String> {
        let shared = self.shared.clone();
        // The write may try every endpoint in turn, each for up to a call's timeout.
        let endpoints = self.shared.gateway.endpoints().len().max(1) as u32;
        let wait = CALL_TIMEOUT * endpoints + TICK;
        self.wait_for(wait, async move {
            let key = shared.key("switch");
            let op = match &switch {
                Some(switch) => Op::Put(key, serde_json::to_vec(switch).unwrap_or_default(), 0),
                None => Op::Delete(key),
            };
            shared
                .gateway
                .txn(&[], &[op])
                .await
                .map(drop)
                .map_err(|e| format!("{e}; nothing was changed"))
        })
        .unwrap_or_else(|| {
            Err(format!(
                "etcd did not answer within {}; the switch may still be written: read it back with status --fleet",
                humantime::format_duration(wait)
            ))
        })
    }

    fn view(&self) -> Result<super::admin::View, String> {
        let shared = self.shared.clone();
        self.wait_for(CALL_TIMEOUT * 2 + TICK, async move {
            super::etcd_admin::view(&shared.gateway, &shared.config).await
        })
        .unwrap_or_else(|| Err("etcd did not answer in time".to_owned()))
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

    fn node(&self) -> &str {
        &self.shared.node
    }

    fn close(&self) {
        let id = {
            let mut lease = lock(&self.shared.lease);
            lease.closed = true;
            lease.id.take()
        };
        let shared = self.shared.clone();
        let left = self.wait_for(LEAVE_DEADLINE, async move {
            match id {
                Some(id) => end_lease(&shared, id).await,
                // No lease, perhaps one being granted: the lease's loop ends that one
                // as it stops, which is waited for.
                None => {
                    loop {
                        let parked = shared.parked.notified();
                        if lock(&shared.lease).parked {
                            break;
                        }
                        parked.await;
                    }
                    Ok(())
                }
            }
        });
        let why = match left {
            Some(Ok(())) => return,
            Some(Err(e)) => e,
            None => format!(
                "no answer within {}",
                humantime::format_duration(LEAVE_DEADLINE)
            ),
        };
        self.shared.log(format!(
            "cannot end the lease ({why}): its slots free when it ends"
        ));
    }
}

/// Ends lease `id` as the node leaves: tried again after a call that ran out of time
/// (etcd slow) or whose sign-in had expired (once), until [`LEAVE_DEADLINE`] draws
/// near; a call refused at once (etcd down) would be refused again.
async fn end_lease(shared: &Shared, id: i64) -> Result<(), String> {
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

/// Gives back the slot of `admission`, tried again while the lease it was taken with
/// lives: a slot not given back under a lease still renewed would be held for good.
async fn give_back(shared: &Shared, admission: &Admission) {
    let key = shared.slot_key(admission.slot);
    let mut said = false;
    loop {
        let done = shared
            .gateway
            .txn(
                &[Compare::Created(key.clone(), admission.revision)],
                &[Op::Delete(key.clone())],
            )
            .await;
        let Err(e) = done else {
            super::admission::given_back(shared, admission.slot);
            return;
        };
        let alive =
            lock(&shared.lease).id.map(|id| format!("{id:x}")) == Some(admission.lease.clone());
        if !alive {
            return;
        }
        if !said {
            shared.log(format!(
                "cannot give back slot {} yet ({e}): trying again",
                admission.slot
            ));
            said = true;
        }
        tokio::time::sleep(RELEASE_RETRY).await;
    }
}

/// An admission's answer, handed from its task to the engine's thread that asked.
#[derive(Default)]
struct Handoff {
    state: Mutex<Handing>,
    done: Condvar,
}

#[derive(Default, PartialEq)]
enum Handing {
    #[default]
    Waiting,
    Done(Result<Admission, Refused>),
    /// The asker gave up: the task gives back what it won.
    GaveUp,
}

impl Handoff {
    /// The answer within `wait`, else `None` (and the task is told the asker gave up).
    fn wait(&self, wait: Duration) -> Option<Result<Admission, Refused>> {
        let until = Instant::now() + wait;
        let mut state = lock(&self.state);
        loop {
            if let Handing::Done(_) = &*state {
                let Handing::Done(answer) = std::mem::take(&mut *state) else {
                    return None;
                };
                return Some(answer);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                *state = Handing::GaveUp;
                return None;
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
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
async fn keep_lease(shared: Arc<Shared>) {
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

/// Reads the fleet's keys an admission decides on (see `watch::ranges`) and watches
/// them, again after each failure: the switch follows, and admissions decide on what
/// was seen. `first` is told once the switch has been read (or could not be).
async fn watch_switch(shared: Arc<Shared>, first: mpsc::Sender<()>) {
    let ranges = super::watch::ranges(&shared.config);
    let mut first = Some(first);
    loop {
        match super::history::state(&shared.gateway, &shared.config).await {
            Ok((mut kvs, revision)) => {
                kvs.retain(|kv| super::watch::within(&ranges, &kv.key));
                shared.see_all(Some(kvs));
                first.take();
                let watched = super::watch::follow(&shared, &ranges, revision + 1).await;
                shared.see_all(None);
                if let Err(e) = watched {
                    shared.log(format!("watching the fleet: {e}; watching again"));
                }
            }
            Err(_) => {
                first.take();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
