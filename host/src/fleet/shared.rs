//! What the fleet thread's tasks share (the gateway, the configuration, the lease, the
//! state told to the daemon), and what they all say the same way.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    config::FleetConfig,
    gateway::{Compare, Gateway, Kv, Op, Txn},
    FleetState, Refused, Switch,
};
use crate::support::lock::lock;

pub(super) struct Shared {
    pub(super) gateway: Gateway,
    pub(super) config: FleetConfig,
    pub(super) node: String,
    /// Where its lines go (the daemon's log).
    pub(super) log: fn(String),
    pub(super) lease: Mutex<Lease>,
    pub(super) state: watch::Sender<FleetState>,
    /// The fleet's keys as the watch last told them (those of `watch::ranges`: not the
    /// slots, the members nor the admissions), while it runs: an admission decides on
    /// them and sends its one transaction at once; a stale copy only loses the
    /// transaction, which reads them afresh.
    pub(super) seen: Mutex<Option<BTreeMap<String, Kv>>>,
    /// The admissions of this process: those handed out and not given back, and those
    /// under way (see [`Tracked`]).
    pub(super) tracked: Mutex<Tracked>,
    /// The leases the gap's and the budget's keys and the admissions kept are tied to
    /// (see `rule` and `history`).
    pub(super) rule: Mutex<Leases>,
    /// What this node last read of the slots (see `admission`).
    pub(super) slots: Mutex<SlotsSeen>,
    /// Told when the lease's loop has stopped for good ([`Lease::parked`]).
    pub(super) parked: tokio::sync::Notify,
}

/// What this process holds in etcd, so that a slot held by its lease that no live
/// admission holds (its answer lost, its give-back failed) is found and given back.
#[derive(Default)]
pub(super) struct Tracked {
    /// The creation revisions of the slots handed to the engine and not given back.
    pub(super) live: BTreeSet<i64>,
    /// Admissions under way: their slot may be in etcd before it is in `live`.
    pub(super) under_way: usize,
    /// How many admissions ever started: a look at the slots holds only if none
    /// started or was under way meanwhile.
    pub(super) started: u64,
}

/// What a node last read of the slots: a hint for the next admission's pick (a stale
/// one only loses a transaction), and when no slot was held at or past the fleet's
/// limit.
#[derive(Debug, Default)]
pub(super) struct SlotsSeen {
    /// The slots held, as last read (and as this node took and gave back since).
    pub(super) held: BTreeSet<u32>,
    /// The roster's revision and the fleet's limit at which a read found no slot at or
    /// past the limit (see `admission::free_slot`).
    pub(super) none_past: Option<(i64, u32)>,
}

#[derive(Default)]
pub(super) struct Lease {
    pub(super) id: Option<i64>,
    /// The id the node asks etcd to give the lease it is being granted, until it has
    /// it: drawn by the node, so that a grant whose answer was lost is the same lease
    /// when asked again (not a second one), and can be ended as the node leaves.
    pub(super) asked: Option<i64>,
    pub(super) renewed: Option<Instant>,
    /// The last failure, said once until a renewal works again.
    pub(super) failing: Option<String>,
    /// The node left the fleet: no lease is granted any more.
    pub(super) closed: bool,
    /// The lease's loop saw `closed` and stopped for good, a lease it was granted while
    /// the node left ended first (told through [`Shared::parked`]).
    pub(super) parked: bool,
    /// What the node last said of itself, written again under each new lease.
    pub(super) member: Option<super::Member>,
    /// What etcd last took of it, and under which lease: what the node said and etcd
    /// did not take (said as a lease was being granted, or a write that failed) is
    /// written at the next `announce` (see [`Lease::unwritten`]).
    pub(super) written: Option<(i64, super::Member)>,
    /// A write of what the node said is under way (one at a time).
    pub(super) writing: bool,
    /// Why the last such write failed, said once until one works again.
    pub(super) unwritten_why: Option<String>,
}

impl Lease {
    /// The lease to write what the node said under, if etcd has not taken it under the
    /// lease it holds now and no write is under way. It was only written when it
    /// changed: said as its lease was being granted (`announce` found no lease yet), or
    /// its write failed, it stayed unwritten, and the node unlisted, until it said
    /// something new.
    pub(super) fn unwritten(&self) -> Option<i64> {
        let (id, member) = (self.id?, self.member.as_ref()?);
        let taken = self
            .written
            .as_ref()
            .is_some_and(|(under, written)| *under == id && written == member);
        (!taken && !self.writing).then_some(id)
    }
}

/// A span of the fleet's rule (see `rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span {
    Gap,
    Budget,
    /// How long the admissions are kept (`history::keep`).
    History,
}

/// The leases a node attaches the rule's keys and its admissions to, as last granted.
#[derive(Default)]
pub(super) struct Leases {
    gap: Option<Granted>,
    budget: Option<Granted>,
    history: Option<Granted>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Granted {
    pub(super) id: i64,
    /// When the grant was sent: etcd's countdown started after it.
    pub(super) asked: Instant,
}

impl Leases {
    pub(super) fn of(&mut self, span: Span) -> &mut Option<Granted> {
        match span {
            Span::Gap => &mut self.gap,
            Span::Budget => &mut self.budget,
            Span::History => &mut self.history,
        }
    }

    /// The lease for `span` if it was asked for less than `within` ago (0: none).
    pub(super) fn fresh(&mut self, span: Span, within: Duration) -> i64 {
        self.of(span)
            .filter(|g| g.asked.elapsed() < within)
            .map_or(0, |g| g.id)
    }
}

pub(super) fn unreachable(why: String) -> Refused {
    Refused {
        why: format!("the coordinator is unreachable ({why})"),
        retry_after: Some(Duration::from_secs(1)),
        unreachable: true,
    }
}

impl Shared {
    pub(super) fn log(&self, line: String) {
        (self.log)(format!("fleet: {line}"));
    }

    pub(super) fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.config.prefix)
    }

    /// A place of the node's own among `n` (the slot or the budget's key it tries first,
    /// so that nodes asking at once seldom race for the same): its name's hash (FNV-1a)
    /// modulo `n`.
    pub(super) fn spread(&self, n: u32) -> u32 {
        let hash = self.node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % u64::from(n.max(1))) as u32
    }

    pub(super) fn slot_key(&self, slot: u32) -> String {
        self.key(&format!("slots/{slot}"))
    }

    /// Writes what the node last said of itself under lease `id`.
    pub(super) async fn put_member(&self, id: i64) {
        let Some(member) = lock(&self.lease).member.clone() else {
            return;
        };
        let key = self.key(&format!("members/{}", member.node));
        let value = serde_json::to_vec(&member).unwrap_or_default();
        let answer = self.gateway.txn(&[], &[Op::Put(key, value, id)]).await;
        let new_failure = {
            let mut lease = lock(&self.lease);
            match answer {
                Ok(_) => {
                    lease.written = Some((id, member));
                    lease.unwritten_why = None;
                    None
                }
                // Tried again at the next `announce`, a second later: said once.
                Err(e) if lease.unwritten_why.as_ref() != Some(&e) => {
                    lease.unwritten_why = Some(e.clone());
                    Some(e)
                }
                Err(_) => None,
            }
        };
        if let Some(e) = new_failure {
            self.log(format!("cannot say what this node does ({e})"));
        }
    }

    /// Joins under lease `id`, in one transaction: says this node's `max_concurrent`
    /// (`<prefix>/limits/<node>`), moves `<prefix>/roster` (an admission decided on a
    /// copy of the keys that does not know this limit yet fails its transaction, and
    /// decides again), and writes what the node last said of itself. A lease whose limit
    /// could not be said is not used: the fleet would not know it.
    /// Whether it wrote the node's member key (it had said nothing yet, else).
    ///
    /// The node's name must be free, or this lease's already: one held under another
    /// lease is another daemon's of the same name (or this one's last run's, ended
    /// without leaving: its lease ends within its TTL). Then nothing is written, and the
    /// node stays cut off, saying why, until the name is free: two daemons of one name
    /// would count as one node, and the first to leave would drop the other's keys.
    pub(super) async fn join(&self, id: i64) -> Result<bool, String> {
        let key = self.key(&format!("limits/{}", self.node));
        let value = self.config.max_concurrent.to_string().into_bytes();
        let mut ops = vec![
            Op::Put(key.clone(), value, id),
            Op::Put(self.key("roster"), self.node.clone().into_bytes(), 0),
        ];
        let member = lock(&self.lease).member.clone();
        if let Some(member) = &member {
            let key = self.key(&format!("members/{}", member.node));
            ops.push(Op::Put(
                key,
                serde_json::to_vec(member).unwrap_or_default(),
                id,
            ));
        }
        let cannot = |e: String| format!("cannot say this node's max_concurrent ({e})");
        let free = Txn {
            compare: vec![Compare::Created(key.clone(), 0)],
            success: ops.clone(),
            failure: vec![Op::Range(
                key.clone().into_bytes(),
                [key.as_bytes(), b"\0"].concat(),
            )],
        };
        let answer = self.gateway.run(&free).await.map_err(cannot)?;
        if !answer.held {
            let holder = answer.kvs(0).first().map_or(0, |kv| kv.lease);
            let (ours, _) = match holder == id {
                true => self
                    .gateway
                    .txn(&[Compare::Lease(key, id)], &ops)
                    .await
                    .map_err(cannot)?,
                false => (false, 0),
            };
            if !ours && holder == id {
                return Err(format!(
                    "this daemon's lease {id:x} ended as it joined; a new one is asked for"
                ));
            }
            if !ours {
                return Err(format!(
                    "the node name `{}` is held in the fleet under lease {holder:x}, not this daemon's: another daemon runs as `{}`, or this one's last run ended without leaving (its lease ends by itself within that run's lease_ttl); two daemons must not share a name (--node)",
                    self.node, self.node,
                ));
            }
        }
        if let Some(member) = &member {
            lock(&self.lease).written = Some((id, member.clone()));
        }
        Ok(member.is_some())
    }

    /// The node's lease now (`None`: it has none).
    pub(super) fn set_lease(&self, id: Option<i64>) {
        let lease = id.map(|id| format!("{id:x}"));
        self.state.send_if_modified(|state| {
            let changed = state.lease != lease;
            state.lease = lease;
            changed
        });
    }

    pub(super) fn set_cut_off(&self, why: Option<String>) {
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

    /// The fleet's keys as last seen, if the watch runs.
    pub(super) fn seen(&self) -> Option<Vec<Kv>> {
        lock(&self.seen)
            .as_ref()
            .map(|kvs| kvs.values().cloned().collect())
    }

    /// Starts the copy of the fleet's keys over from `kvs` (`None`: no copy, the watch
    /// is down); the switch follows.
    pub(super) fn see_all(&self, kvs: Option<Vec<Kv>>) {
        let switch_key = self.key("switch");
        if let Some(kvs) = &kvs {
            self.set_switch(switch_of(kvs.iter().find(|kv| kv.key == switch_key)));
        }
        *lock(&self.seen) = kvs.map(|kvs| kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect());
    }

    /// One change the watch told; the switch follows.
    pub(super) fn see(&self, deleted: bool, kv: Kv) {
        if kv.key == self.key("switch") {
            self.set_switch(if deleted { None } else { switch_of(Some(&kv)) });
        }
        if let Some(seen) = lock(&self.seen).as_mut() {
            if deleted {
                seen.remove(&kv.key);
            } else {
                seen.insert(kv.key.clone(), kv);
            }
        }
    }

    pub(super) fn set_switch(&self, switch: Option<Switch>) {
        self.state.send_if_modified(|state| {
            let changed = state.switch != switch;
            state.switch = switch;
            changed
        });
    }
}

/// The environment variable of the test hook that moves the fleet code's wall clock:
/// a whole number of milliseconds (`-600000`: ten minutes behind), read once at start.
/// For tests only, which run nodes whose clocks disagree on one machine.
pub const CLOCK_SKEW_ENV: &str = "NIGHTMARE_MONKEY_TEST_FLEET_CLOCK_SKEW_MS";

/// The wall clock as the fleet code reads it: the host's, moved by the test hook
/// [`CLOCK_SKEW_ENV`] if it is set.
pub(super) fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let skew = *SKEW.get_or_init(|| {
        std::env::var(CLOCK_SKEW_ENV)
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .unwrap_or(0)
    });
    chrono::Utc::now() + chrono::TimeDelta::milliseconds(skew)
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

#[cfg(test)]
mod tests {
    use super::Lease;
    use crate::fleet::Member;

    fn member(paused: Option<&str>) -> Member {
        Member {
            node: "web-1".to_owned(),
            version: "1.0.0".to_owned(),
            paused: paused.map(str::to_owned),
            in_effect: 0,
        }
    }

    /// What the node said is written under the lease it holds until etcd has taken it
    /// there, one write at a time. It was written only when it changed: a node that
    /// said it as its lease was being granted (or whose write failed) went unlisted in
    /// `/api/fleet` until it paused or ran a fault.
    #[test]
    fn what_a_node_said_is_written_until_etcd_took_it_under_its_lease() {
        let (running, paused) = (member(None), member(Some("a review")));
        let lease = |id, said: &Member, written: Option<(i64, &Member)>, writing| Lease {
            id,
            member: Some(said.clone()),
            written: written.map(|(under, m)| (under, m.clone())),
            writing,
            ..Lease::default()
        };
        // Said while the lease was granted: nothing written yet.
        assert_eq!(lease(Some(7), &running, None, false).unwritten(), Some(7));
        // Taken under this lease: nothing to write.
        assert_eq!(
            lease(Some(7), &running, Some((7, &running)), false).unwritten(),
            None
        );
        // Said something new since.
        assert_eq!(
            lease(Some(7), &paused, Some((7, &running)), false).unwritten(),
            Some(7)
        );
        // Taken under the lease before (it ended with its keys).
        assert_eq!(
            lease(Some(8), &running, Some((7, &running)), false).unwritten(),
            Some(8)
        );
        // A write under way; no lease; nothing said.
        assert_eq!(lease(Some(7), &running, None, true).unwritten(), None);
        assert_eq!(lease(None, &running, None, false).unwritten(), None);
        assert_eq!(
            Lease {
                id: Some(7),
                ..Lease::default()
            }
            .unwritten(),
            None
        );
    }
}
