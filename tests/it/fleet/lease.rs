//! What a node holds under its lease: nothing it does not know of, and nothing from a
//! lease that ended, whatever happened to the answers on the way.

use super::{relay::Relay, *};

#[test]
fn a_slot_held_by_the_nodes_lease_but_by_none_of_its_faults_is_given_back() {
    let etcd = Etcd::start("stray");
    let _sleeper = Sleeper::start();
    let dir = TestDir::new("fleet-stray");
    let cfg = config(
        &dir,
        &etcd,
        "/nm/stray",
        r#"max_concurrent: 1, lease_ttl: "3s""#,
    );
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    let mut lease = 0;
    until(
        DEADLINE,
        "the node says what it does, under its lease",
        || {
            lease = etcd.lease_of("/nm/stray/members/a");
            lease != 0
        },
    );
    // The only slot, won under the node's lease by an admission whose asker never got
    // the answer: renewed with the lease, it would stop the fleet for good.
    etcd.put_with_lease(
        "/nm/stray/slots/0",
        r#"{"node":"a","fault":"process-kill","at":"lost"}"#,
        lease,
    );
    until(DEADLINE, "the stray slot is given back", || {
        etcd.get_prefix("/nm/stray/slots/").is_empty()
    });
    assert_eq!(
        etcd.lease_of("/nm/stray/members/a"),
        lease,
        "given back under the same lease, not freed by its end"
    );
    let answer = kill(port);
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn a_fault_admitted_under_a_lease_that_ended_is_reverted_though_a_new_one_follows() {
    let etcd = Etcd::start("relet");
    let node = Executing::start("relet", &etcd, r#"lease_ttl: "3s""#);
    let intent = node.pause();
    let old = i64::from_str_radix(intent["fleet"]["lease"].as_str().unwrap(), 16).unwrap();
    // SIGSTOP takes hold when the victim next runs: on a busy machine, a moment later.
    until(DEADLINE, "the victim is stopped", || node.sleeper_stopped());
    // The lease ends under the node (as it does when the node is frozen past its TTL):
    // its slot is gone, and a new lease comes at its next renewal, with no cut-off long
    // enough to be seen.
    etcd.revoke(old);
    assert!(etcd.get_prefix("/nm/relet/slots/").is_empty());
    until(DEADLINE, "the fault of the old lease is reverted", || {
        journal(&node.dir).iter().any(|r| {
            r["type"] == "revert" && r["reason"] == "fleet-cut-off" && r["result"] == "reverted"
        })
    });
    assert!(!node.sleeper_stopped());
    until(DEADLINE, "the node has a new lease", || {
        ![0, old].contains(&etcd.lease_of("/nm/relet/members/relet"))
    });
}

#[test]
fn a_node_whose_packets_are_dropped_reverts_before_its_lease_ends() {
    let etcd = Etcd::start("blackhole");
    // Three endpoints (relays to the one etcd), each of which could make a renewal
    // wait its whole timeout once packets are dropped.
    let relays: Vec<Relay> = (0..3).map(|_| Relay::start(etcd.port)).collect();
    let endpoints: Vec<String> = relays.iter().map(Relay::endpoint).collect();
    let dir = TestDir::new("blackhole");
    let cfg = config_with(&dir, &endpoints, "/nm/blackhole", "", r#"lease_ttl: "3s""#);
    let node = Executing::run("blackhole", dir, &cfg);
    node.pause();
    assert_eq!(etcd.get_prefix("/nm/blackhole/slots/").len(), 1);
    for relay in &relays {
        relay.blackhole();
    }
    let took = until(DEADLINE, "the cut-off node reverts", || {
        journal(&node.dir).iter().any(|r| {
            r["type"] == "revert" && r["reason"] == "fleet-cut-off" && r["result"] == "reverted"
        })
    });
    // Its slot could not be given back (no packet gets through): it is still there only
    // while the lease lives.
    assert_eq!(
        etcd.get_prefix("/nm/blackhole/slots/").len(),
        1,
        "reverted {took:?} after the packets were dropped: past the lease (TTL 3s)"
    );
    assert!(!node.sleeper_stopped());
    eprintln!("reverted {took:?} after the packets were dropped (lease TTL 3s)");
}

#[test]
fn a_slot_won_after_its_asker_gave_up_is_given_back() {
    let etcd = Etcd::start("late");
    let _sleeper = Sleeper::start();
    // Six endpoints that drop every packet, then etcd itself: an admission waits out
    // each one's timeout (1 s) and wins its slot after its asker's 2 s. Six, not three:
    // a call that timed out at the start (a loaded machine) moves the next call on to
    // the next endpoint, and the admission must still meet at least three holes.
    let relays: Vec<Relay> = (0..6).map(|_| Relay::start(etcd.port)).collect();
    let mut endpoints: Vec<String> = relays.iter().map(Relay::endpoint).collect();
    endpoints.push(etcd.endpoint());
    let dir = TestDir::new("fleet-late");
    // A long lease: no renewal between the blackhole and the admission (the first call
    // after the blackhole tries every endpoint in turn).
    let cfg = config_with(
        &dir,
        &endpoints,
        "/nm/late",
        "",
        r#"max_concurrent: 1, lease_ttl: "60s""#,
    );
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    until(DEADLINE, "the node says what it does", || {
        etcd.lease_of("/nm/late/members/a") != 0
    });
    for relay in &relays {
        relay.blackhole();
    }
    let answer = kill(port);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("no admission within 2s"), "{answer:?}");
    daemon.wait_for(|l| l.contains("slot 0 was won after its asker gave up: giving it back"));
    until(DEADLINE, "the late slot is given back", || {
        etcd.get_prefix("/nm/late/slots/").is_empty()
    });
}

#[test]
fn a_node_leaving_while_its_first_call_goes_unheard_still_ends_its_lease() {
    let (etcd, relay, mut daemon) = node_behind_relay("leave-unheard", false, false);
    // Granted, and its grant heard: the node's key carries it. (etcd's count alone was
    // not enough: a grant whose answer the blackhole below swallowed would be a lease
    // the node heard of only by asking again.)
    until_leased(&etcd, "leave-unheard");
    assert_eq!(etcd.leases(), 1);
    // Nothing more gets through on the connections open now: the first call to end the
    // lease, on one of them, runs out of time unheard; a new connection gets through.
    relay.blackhole_open();
    leaves_and_ends_its_lease(&mut daemon, &etcd);
}

/// Node "a" of a fleet under `/nm/<name>` on a fresh etcd, with a lease TTL of 60 s
/// (longer than any test waits), told a relay in front of that etcd as its endpoint
/// (then etcd itself, when `direct_too`); the relay swallows etcd's answers to grants
/// from the start when `swallow`.
fn node_behind_relay(name: &str, swallow: bool, direct_too: bool) -> (Etcd, Relay, Daemon) {
    let etcd = Etcd::start(name);
    let relay = Relay::start(etcd.port);
    if swallow {
        relay.swallow_grants();
    }
    let dir = TestDir::new(&format!("fleet-{name}"));
    let mut endpoints = vec![relay.endpoint()];
    if direct_too {
        endpoints.push(etcd.endpoint());
    }
    let prefix = format!("/nm/{name}");
    let cfg = config_with(&dir, &endpoints, &prefix, "", r#"lease_ttl: "60s""#);
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    daemon.port();
    (etcd, relay, daemon)
}

/// Waits until node "a" under `/nm/<name>` says what it does under a lease.
fn until_leased(etcd: &Etcd, name: &str) {
    let key = format!("/nm/{name}/members/a");
    until(
        DEADLINE,
        "the node says what it does, under its lease",
        || etcd.lease_of(&key) != 0,
    );
}

#[test]
fn grants_granted_unheard_make_one_lease_the_node_takes_when_it_hears() {
    let (etcd, relay, mut daemon) = node_behind_relay("grant-unheard", true, false);
    // etcd grants each ask; the node hears no answer, and asks again.
    until(DEADLINE, "the node asks for its lease a third time", || {
        relay.grants() >= 3
    });
    assert_eq!(
        etcd.leases(),
        1,
        "asked again for the same lease, not for a new one each time: {:?}",
        daemon.log
    );
    relay.hear_grants();
    until_leased(&etcd, "grant-unheard");
    assert_eq!(etcd.leases(), 1, "the node took the lease granted unheard");
    leaves_and_ends_its_lease(&mut daemon, &etcd);
}

#[test]
fn a_node_leaving_before_it_heard_its_grant_still_ends_its_lease() {
    let (etcd, relay, mut daemon) = node_behind_relay("leave-ungranted", true, false);
    until(
        DEADLINE,
        "etcd granted a lease the node never heard of",
        || relay.grants() >= 1 && etcd.leases() == 1,
    );
    leaves_and_ends_its_lease(&mut daemon, &etcd);
}

#[test]
fn a_grant_heard_unanswered_on_one_endpoint_is_the_lease_the_next_endpoint_has() {
    // The relay first: the node's first call is its first grant, which etcd grants
    // through the relay unheard; the same call then asks the next endpoint, which
    // answers that the lease already exists.
    let (etcd, relay, mut daemon) = node_behind_relay("grant-next-endpoint", true, true);
    until_leased(&etcd, "grant-next-endpoint");
    assert!(
        relay.grants() >= 1,
        "the first grant went through the relay"
    );
    assert_eq!(
        etcd.leases(),
        1,
        "the lease granted unheard is the node's, not another left to run out its TTL: {:?}",
        daemon.log
    );
    leaves_and_ends_its_lease(&mut daemon, &etcd);
}

/// Stops `daemon` (SIGTERM) and checks that etcd holds no lease of a node once it is
/// gone (those its admissions are kept under stay): its lease ended with it, not a TTL
/// later.
fn leaves_and_ends_its_lease(daemon: &mut Daemon, etcd: &Etcd) {
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
    assert_eq!(
        etcd.short_leases(),
        0,
        "its lease ended with it, not a TTL later: {:?}",
        daemon.log
    );
}

/// A second daemon started with a node name a live one holds does not join: it says
/// why and refuses every fault (it fails closed), and its leaving takes nothing of the
/// first one's from the fleet.
#[test]
fn a_second_daemon_of_one_node_name_never_joins_nor_drops_the_first() {
    let etcd = Etcd::start("same-name");
    let _victim = Sleeper::start();
    let (one, two) = (
        TestDir::new("fleet-same-name-1"),
        TestDir::new("fleet-same-name-2"),
    );
    let fleet = "max_concurrent: 1";
    let mut first = Daemon::start(&[
        "--config",
        &config(&one, &etcd, "/nm/same-name", fleet),
        "--node",
        "web-1",
    ]);
    let port = first.port();
    leased(port, "web-1");
    let mut second = Daemon::start(&[
        "--config",
        &config(&two, &etcd, "/nm/same-name", fleet),
        "--node",
        "web-1",
    ]);
    // Said before or after it listens, as the lease's first try goes.
    let port_two = second.port();
    let held = |l: &str| l.contains("is held in the fleet under lease");
    let said = match second.log.iter().find(|l| held(l)) {
        Some(line) => line.clone(),
        None => second.wait_for(held),
    };
    assert!(
        said.contains("the node name `web-1` is held in the fleet under lease ")
            && said.contains("two daemons must not share a name (--node)"),
        "{said}"
    );
    let refused = kill(port_two);
    assert_eq!(refused.status, 503, "{refused:?}");
    second.signal("TERM");
    assert_eq!(second.wait_exit(), Some(0), "{:?}", second.log);
    // The first one's keys are its own still, and it admits as before.
    assert_eq!(
        etcd.get_prefix("/nm/same-name/limits/"),
        [("/nm/same-name/limits/web-1".to_owned(), "1".to_owned())]
    );
    leased(port, "web-1");
    let admitted = kill(port);
    assert_eq!(admitted.status, 200, "{admitted:?}");
    leaves_and_ends_its_lease(&mut first, &etcd);
}
