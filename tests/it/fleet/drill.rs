//! A whole fleet drill: six daemons, each executing in a PID namespace of its own with
//! its own node name and state, on a 3-member etcd, each reaching etcd through relays
//! the test owns; fast faults at their own sleepers. The fleet's limits are checked
//! from every journal and from etcd; then one daemon is cut off alone.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use super::{config_with, etcd::Etcd, journal, relay::Relay, until, Executing};
use crate::util::{http, Answer, TestDir, DEADLINE};

const NODES: usize = 6;
const MAX_CONCURRENT: usize = 2;
const BUDGET: (usize, i64) = (2, 6000);
const MIN_GAP_MS: i64 = 1000;
const TTL: Duration = Duration::from_secs(4);
// The gap and the budget are kept on etcd's clock, by leases of whole seconds (a 1 s gap
// holds about 3 s): faults of 4 s, so that both slots are held at times, and a budget
// that binds before them.
const FLEET: &str =
    r#"max_concurrent: 2, budget: (max: 2, per: "6s"), min_gap: "1s", lease_ttl: "4s""#;
/// Admissions in all before the fleet's limits are checked.
const ADMISSIONS: usize = 6;
/// How long they may take: the budget lets two in about eight seconds through.
const DRILL_TIME: Duration = Duration::from_secs(90);

fn fire(node: &Executing, fault: &str) -> Answer {
    let path = format!("/api/faults/{fault}");
    http(node.port, "POST", &path, &[], br#"{"desc":"drill"}"#)
}

/// One fault admitted by the fleet, as its node journaled it.
#[derive(Debug)]
struct Held {
    node: usize,
    revision: i64,
    slot: i64,
    /// From its `prepared` record (else its outcome) to its revert (or its outcome, if
    /// it has no revert): within the slot's hold, around the time it was in effect.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn at(record: &serde_json::Value) -> DateTime<Utc> {
    record["at"].as_str().unwrap().parse().unwrap()
}

/// Every admission of `node`'s journal; `None` while one is not over yet.
fn held(node: usize, dir: &std::path::Path) -> Option<Vec<Held>> {
    let records = journal(dir);
    let mut all = Vec::new();
    for intent in records.iter().filter(|r| r["type"] == "intent") {
        let Some(revision) = intent["fleet"]["revision"].as_i64() else {
            continue;
        };
        let of = |kind: &str| {
            records
                .iter()
                .find(|r| r["type"] == kind && r["id"] == intent["id"])
        };
        let outcome = of("outcome")?;
        let end = match outcome["revert"].is_object() {
            true => of("revert")?,
            false => outcome,
        };
        // From its `prepared` record, written after the admission and before the fault
        // is applied (the intent's time is taken before the admission is asked for).
        let start = of("prepared").unwrap_or(outcome);
        all.push(Held {
            node,
            revision,
            slot: intent["fleet"]["slot"].as_i64().unwrap(),
            from: at(start),
            to: at(end),
        });
    }
    Some(all)
}

/// Never more than the slots in effect at once, fencing tokens in the order of the
/// admissions, each slot held by its node at its revision.
fn check_slots(all: &[Held], etcd: &Etcd) {
    let mut edges: Vec<(DateTime<Utc>, i32)> =
        all.iter().flat_map(|h| [(h.from, 1), (h.to, -1)]).collect();
    // An end before a start at the same instant: the slot was given back first.
    edges.sort();
    let mut now = 0;
    for (when, step) in edges {
        now += step;
        assert!(
            now <= MAX_CONCURRENT as i32,
            "{now} faults at once at {when}: {all:#?}"
        );
    }
    let revisions: BTreeSet<i64> = all.iter().map(|h| h.revision).collect();
    assert_eq!(revisions.len(), all.len(), "one token per admission");
    // A slot's holders, in the order of their tokens, each after the one before.
    for slot in 0..MAX_CONCURRENT as i64 {
        let mut holders: Vec<&Held> = all.iter().filter(|h| h.slot == slot).collect();
        holders.sort_by_key(|h| h.revision);
        for pair in holders.windows(2) {
            assert!(pair[0].to <= pair[1].from, "slot {slot}: {pair:#?}");
        }
    }
    // And each node's, in the order of its journal.
    for node in 0..NODES {
        let mine: Vec<i64> = all
            .iter()
            .filter(|h| h.node == node)
            .map(|h| h.revision)
            .collect();
        assert!(
            mine.windows(2).all(|p| p[0] < p[1]),
            "node {node}: {mine:?}"
        );
    }
    for a in all {
        let slot = etcd
            .get_at(&format!("/nm/drill/slots/{}", a.slot), a.revision)
            .unwrap_or_default();
        let node = format!("\"node\":\"drill-{}\"", a.node);
        assert!(slot.contains(&node), "{a:?}: {slot}");
    }
}

/// The fleet budget and gap, from the admissions etcd keeps for `history --fleet`: each
/// stamped when its node decided, after it read the gap's key gone and before its
/// transaction took it (one machine: one clock).
fn check_budget(all: &[Held], etcd: &Etcd) {
    let mut times: Vec<i64> = etcd
        .get_prefix("/nm/drill/admissions/")
        .iter()
        .map(|(key, _)| {
            let name = key.trim_start_matches("/nm/drill/admissions/");
            name.split('-').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        times.len() >= all.len(),
        "one kept per admission: {times:?}"
    );
    times.sort();
    for (i, t) in times.iter().enumerate() {
        if i > 0 {
            assert!(t - times[i - 1] >= MIN_GAP_MS, "min gap: {times:?}");
        }
        let inside = times[..=i].iter().filter(|s| t - *s < BUDGET.1).count();
        assert!(inside <= BUDGET.0, "fleet budget: {times:?}");
    }
}

#[test]
fn six_daemons_keep_the_fleet_limits_and_one_cut_off_alone_fails_closed() {
    let cluster = Etcd::cluster("drill", 3);
    let relays: Vec<Vec<Relay>> = (0..NODES)
        .map(|_| cluster.iter().map(|m| Relay::start(m.port)).collect())
        .collect();
    let nodes: Vec<Executing> = std::thread::scope(|s| {
        let starting: Vec<_> = relays
            .iter()
            .enumerate()
            .map(|(i, relays)| {
                s.spawn(move || {
                    let name = format!("drill-{i}");
                    let dir = TestDir::new(&name);
                    let endpoints: Vec<String> = relays.iter().map(Relay::endpoint).collect();
                    let cfg = config_with(&dir, &endpoints, "/nm/drill", "", FLEET);
                    Executing::run(&name, dir, &cfg)
                })
            })
            .collect();
        starting.into_iter().map(|t| t.join().unwrap()).collect()
    });

    // Every node fires fast faults at its own sleeper until the fleet admitted enough.
    let admitted = AtomicUsize::new(0);
    let refusals = Mutex::new(BTreeSet::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for node in &nodes {
            let (admitted, refusals) = (&admitted, &refusals);
            s.spawn(move || {
                while admitted.load(Ordering::SeqCst) < ADMISSIONS {
                    assert!(started.elapsed() < DRILL_TIME, "the drill is too slow");
                    let answer = fire(node, "linger");
                    match answer.status {
                        200 => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            // Its own sleeper runs again before it fires again.
                            until(DEADLINE, "the pause is over", || !node.sleeper_stopped());
                        }
                        429 | 503 if answer.body.contains("no eligible process") => {}
                        429 | 503 => {
                            let message = answer.json()["message"].as_str().unwrap().to_owned();
                            assert!(message.starts_with("fleet: "), "{message}");
                            let reason = message.split([' ', ':']).nth(2).unwrap().to_owned();
                            refusals.lock().unwrap().insert(reason);
                        }
                        _ => panic!("{answer:?}"),
                    }
                    // The pace of an eager operator, not a synchronisation.
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    eprintln!(
        "{ADMISSIONS} admissions in {:?}; refused for {refusals:?}",
        started.elapsed()
    );
    let mut all = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut mine = None;
        until(DEADLINE, "every fault of the drill is over", || {
            mine = held(i, &node.dir);
            mine.is_some()
        });
        all.extend(mine.unwrap());
    }
    assert!(all.len() >= ADMISSIONS, "{all:#?}");
    let refusals = refusals.into_inner().unwrap();
    for reason in ["slots", "min", "fleet"] {
        assert!(
            refusals.contains(reason),
            "no refusal for {reason}: {refusals:?}"
        );
    }
    check_slots(&all, &cluster[0]);
    check_budget(&all, &cluster[0]);
    no_victim_stopped(&nodes);

    cut_off_alone(&nodes, &relays);
}

/// Node 0 holds a long fault when its relays are cut: it refuses with reason fleet and
/// reverts before its lease can end, while node 1 is still admitted.
fn cut_off_alone(nodes: &[Executing], relays: &[Vec<Relay>]) {
    let (alone, other) = (&nodes[0], &nodes[1]);
    until(DEADLINE, "node 0 is admitted a long pause", || {
        fire(alone, "pause").status == 200
    });
    let intent = journal(&alone.dir)
        .into_iter()
        .rfind(|r| r["type"] == "intent" && r["fault"] == "pause")
        .unwrap();
    let revision = intent["fleet"]["revision"].as_i64().unwrap();
    for relay in &relays[0] {
        relay.cut();
    }
    let cut = Instant::now();
    let reverted = until(DEADLINE, "node 0 reverts", || {
        journal(&alone.dir).iter().any(|r| {
            r["type"] == "revert"
                && r["id"] == intent["id"]
                && r["reason"] == "fleet-cut-off"
                && r["result"] == "reverted"
        })
    });
    eprintln!("node 0 reverted {reverted:?} after it was cut off (lease TTL {TTL:?})");
    assert!(
        reverted < TTL,
        "reverted after {reverted:?}, past its lease"
    );
    let refused = fire(alone, "blink");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("fleet: the coordinator is unreachable"),
        "{}",
        refused.body
    );
    let last = journal(&alone.dir).pop().unwrap();
    assert_eq!(last["type"], "refused", "{last}");
    assert!(
        last["reason"].as_str().unwrap().starts_with("fleet: "),
        "{last}"
    );
    // Meanwhile another node is still admitted, after the cut.
    until(DEADLINE, "node 1 is admitted after the cut", || {
        fire(other, "blink").status == 200
    });
    let after = journal(&other.dir)
        .into_iter()
        .rfind(|r| r["type"] == "intent")
        .unwrap();
    assert!(
        after["fleet"]["revision"].as_i64() > Some(revision),
        "{after}"
    );
    eprintln!(
        "node 1 admitted {:?} after node 0 was cut off",
        cut.elapsed()
    );
    until(DEADLINE, "node 1's fault is over", || {
        held(1, &other.dir).is_some()
    });
    no_victim_stopped(nodes);
}

fn no_victim_stopped(nodes: &[Executing]) {
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            !node.sleeper_stopped(),
            "node {i} left its victim stopped: {:#?}",
            journal(&node.dir).iter().rev().take(4).collect::<Vec<_>>()
        );
    }
}
