//! The etcd coordinator. Keys under the fleet's prefix: `slots/<n>` (a fault in flight
//! or in effect, tied to its node's lease), `gap` and `budget/<n>` (the fleet's gap and
//! budget, tied to leases of their span: see `rule`), `switch` (the fleet's pause, while
//! it stands), `members/<node>` (what each node says of itself), `limits/<node>` and
//! `roster` (each node's `max_concurrent`, and a key moved as a node joins),
//! `admissions/` (the recent admissions, for `history --fleet`: see `history`).
//!
//! Everything runs on one thread of its own (`fleet`) with its own single-threaded
//! runtime: the lease's renewal every TTL/3 (`lease`), the switch's watch, and the
//! admissions the engine's threads ask for (they wait for the answer within a deadline).
//! So a slow etcd never holds up the daemon's runtime, and the engine stays synchronous.

use std::{
    sync::{mpsc, Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    config::FleetConfig,
    gateway::{Compare, Gateway, Op, CALL_TIMEOUT},
    lease::{end_lease, keep_lease, LEAVE_DEADLINE, TICK},
    shared::{unreachable, Lease, Shared},
    Admission, Coordinator, FleetState, Refused,
};
use crate::support::lock::lock;

/// How long an admission may take in all, retries after a lost race included.
const ADMIT_DEADLINE: Duration = Duration::from_secs(2);
/// How long a release that failed waits before it tries again.
const RELEASE_RETRY: Duration = Duration::from_millis(250);

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
            super::etcd_admin::write_switch(&shared.gateway, shared.key("switch"), switch.as_ref())
                .await
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
        let unwritten = {
            let mut lease = lock(&self.shared.lease);
            lease.member = Some(member);
            let unwritten = lease.unwritten();
            lease.writing |= unwritten.is_some();
            unwritten
        };
        if let Some(id) = unwritten {
            let shared = self.shared.clone();
            self.runtime.spawn(async move {
                shared.put_member(id).await;
                lock(&shared.lease).writing = false;
            });
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
