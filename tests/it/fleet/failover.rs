//! A member that answers but cannot serve (or is too busy to) is passed over for the
//! next endpoint; a cluster that lost its majority is refused, never admitted; a watch
//! whose stream stays open but brings nothing is found out, one that lags is not.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use super::{relay::Relay, *};

/// An HTTP server the test owns that answers every request with one error, as etcd's
/// JSON gateway does: a member without a leader answers 503 (gRPC's `Unavailable`).
struct Sick {
    port: u16,
    asked: Arc<AtomicUsize>,
}

impl Sick {
    fn start(status: &'static str, message: &'static str) -> Sick {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || answer_sick(stream, &counter, status, message));
            }
        });
        Sick { port, asked }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Reads each request of the connection (headers, then its body) and answers `status`
/// with `message`.
fn answer_sick(stream: std::net::TcpStream, asked: &AtomicUsize, status: &str, message: &str) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        asked.fetch_add(1, Ordering::SeqCst);
        let json = format!(r#"{{"error":"{message}","message":"{message}"}}"#);
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A fleet whose first endpoint answers `status` with `message` and whose second is
/// etcd: a fault is admitted all the same, the first having been asked, and
/// `check-config --connect` passes it over too.
fn passed_over(name: &str, status: &'static str, message: &'static str) -> (Etcd, Sick, TestDir) {
    let etcd = Etcd::start(name);
    let _sleeper = Sleeper::start();
    let first = Sick::start(status, message);
    let dir = TestDir::new(&format!("fleet-{name}"));
    let endpoints = [first.endpoint(), etcd.endpoint()];
    let prefix = format!("/nm/{name}");
    let cfg = config_with(&dir, &endpoints, &prefix, "", "max_concurrent: 1");
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    leased(port, "a");
    let answer = kill(port);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        first.asked.load(Ordering::SeqCst) > 0,
        "the member that answered {status} was asked first"
    );
    let checked = monkey(&["check-config", "--connect", &cfg]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    (etcd, first, dir)
}

#[test]
fn a_member_that_answers_it_cannot_serve_is_passed_over_for_the_next() {
    let (etcd, _sick, dir) =
        passed_over("sick", "503 Service Unavailable", "etcdserver: no leader");

    // A client error is an answer: another member would say the same.
    let refusing = Sick::start("401 Unauthorized", "etcdserver: invalid auth token");
    let endpoints = [refusing.endpoint(), etcd.endpoint()];
    let cfg = config_with(&dir, &endpoints, "/nm/sick", "", "");
    let checked = monkey(&["check-config", "--connect", &cfg]);
    assert_ne!(checked.code, Some(0), "{}", checked.stdout);
    assert!(
        checked
            .stderr
            .contains("etcd answered 401 Unauthorized: etcdserver: invalid auth token"),
        "{}",
        checked.stderr
    );
}

/// A member too busy to take more (`etcdserver: too many requests`, 429: its applying
/// lags its raft log) is passed over like one that cannot serve; when every member
/// says it, the node refuses, naming it.
#[test]
fn a_member_that_answers_too_many_requests_is_passed_over_for_the_next() {
    let (_etcd, busy, dir) = passed_over(
        "busy",
        "429 Too Many Requests",
        "etcdserver: too many requests",
    );

    // Alone, it is no coordinator: what it said is said.
    let cfg = config_with(&dir, &[busy.endpoint()], "/nm/busy", "", "");
    let checked = monkey(&["check-config", "--connect", &cfg]);
    assert_ne!(checked.code, Some(0), "{}", checked.stdout);
    assert!(
        checked
            .stderr
            .contains("429 Too Many Requests: etcdserver: too many requests"),
        "{}",
        checked.stderr
    );
}

#[test]
fn a_cluster_that_lost_its_majority_refuses_and_reverts_within_the_lease() {
    let mut cluster = Etcd::cluster("majority", 3);
    let members: Vec<&Etcd> = cluster.iter().collect();
    let dir = TestDir::new("majority");
    let cfg = config_on(&dir, &members, "/nm/majority", r#"lease_ttl: "6s""#);
    let node = Executing::run("majority", dir, &cfg);
    node.pause();
    // Two of three stopped: the last one has no leader; it answers `no leader` or
    // times out, and never commits.
    cluster[1].stop();
    cluster[2].stop();
    let stopped = Instant::now();
    let took = until(DEADLINE, "the node reverts", || {
        journal(&node.dir).iter().any(|r| {
            r["type"] == "revert" && r["reason"] == "fleet-cut-off" && r["result"] == "reverted"
        })
    });
    let log = std::fs::read_to_string(node.dir.join("log")).unwrap_or_default();
    assert!(
        took < Duration::from_secs(6),
        "reverted {took:?} after the majority stopped, past the lease (TTL 6s): {log}"
    );
    eprintln!("reverted {took:?} after 2 of 3 members stopped (lease TTL 6s)");
    while stopped.elapsed() < Duration::from_secs(7) {
        let refused = kill(node.port);
        assert_eq!(refused.status, 503, "{refused:?}");
        assert!(refused.body.contains("fleet: "), "{refused:?}");
    }
    let intents = journal(&node.dir)
        .iter()
        .filter(|r| r["type"] == "intent")
        .count();
    assert_eq!(intents, 1, "nothing admitted without a majority");
}

#[test]
fn a_watch_that_goes_silent_is_found_out_and_the_switch_followed() {
    let etcd = Etcd::start("silent");
    let relays: Vec<Relay> = (0..2).map(|_| Relay::start(etcd.port)).collect();
    let endpoints: Vec<String> = relays.iter().map(Relay::endpoint).collect();
    let dir = TestDir::new("fleet-silent");
    let cfg = config_with(&dir, &endpoints, "/nm/silent", "", "");
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    leased(port, "a");
    // The connections open now (the watch's stream among them) forward nothing more,
    // held open: the stream stays open, silent. New connections get through.
    for relay in &relays {
        relay.blackhole_open();
    }
    let direct = TestDir::new("fleet-silent-cli");
    let cli = config_with(&direct, &[etcd.endpoint()], "/nm/silent", "", "");
    let paused = monkey(&["pause", "--fleet", "--reason", "silent", "--config", &cli]);
    assert_eq!(paused.code, Some(0), "{}", paused.stderr);
    let set = Instant::now();
    let paused_by = || {
        http(port, "GET", "/api/status", &[], b"").json()["paused"]
            .as_str()
            .is_some_and(|why| why.contains(": silent"))
    };
    until(DEADLINE, "the node follows the switch", paused_by);
    let took = set.elapsed();
    eprintln!("paused {took:?} after the switch, its watch silent");
    daemon.wait_for(|l| l.contains("the watch brought nothing for 2s"));
}

/// A watch that keeps up is never taken for a silent one: after the keys changed (the
/// switch set and lifted) and over at least six checks (two reads of each of the three
/// ranges watched, counted by etcd), the daemon has logged no restart of its watch.
#[test]
fn a_watch_that_keeps_up_is_never_restarted() {
    let etcd = Etcd::start("keeps-up");
    let dir = TestDir::new("fleet-keeps-up");
    let cfg = config_with(&dir, &[etcd.endpoint()], "/nm/keepsup", "", "");
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    leased(port, "a");
    for (verb, want) in [("pause", true), ("resume", false)] {
        let flipped = monkey(&[verb, "--fleet", "--reason", "keeps up", "--config", &cfg]);
        assert_eq!(flipped.code, Some(0), "{}", flipped.stderr);
        until(DEADLINE, "the node follows the switch", || {
            http(port, "GET", "/api/status", &[], b"").json()["paused"].is_string() == want
        });
    }
    let ranges = || etcd.metric("etcd_debugging_mvcc_range_total");
    let from = ranges();
    until(DEADLINE, "six checks of the watch", || {
        ranges() - from >= 36.0
    });
    // A line logged after the checks: every line before it has been read by then.
    daemon.signal("HUP");
    let line = daemon.wait_for(|l| l.contains("watch") || l.starts_with("SIGHUP: "));
    assert!(
        line.starts_with("SIGHUP: "),
        "the watch was restarted: {line}"
    );
}

/// A watch whose stream lags (what etcd sends on it comes 1.3 s late: more than a look,
/// less than the quiet looks) but keeps bringing the changes is not restarted: over at
/// least five looks while a watched key changes every 200 ms the daemon logs no restart,
/// and the switch reaches it over that stream, late.
#[test]
fn a_watch_that_lags_but_keeps_bringing_the_changes_is_not_restarted() {
    let etcd = Etcd::start("lagging");
    let relay = Relay::start(etcd.port);
    let dir = TestDir::new("fleet-lagging");
    let cfg = config_with(&dir, &[relay.endpoint()], "/nm/lagging", "", "");
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    leased(port, "a");
    // The watch's stream and the calls' connection.
    until(DEADLINE, "the watch is connected", || {
        relay.connections() >= 2
    });
    let lag = Duration::from_millis(1300);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // A watched key that means nothing to an admission (no number: no limit).
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                etcd.put("/nm/lagging/limits/observer", &format!("change {i}"));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        relay.lag_open(lag);
        let reads = || etcd.metric("etcd_debugging_mvcc_range_total");
        let from = reads();
        // Six reads a look (two for each of the three ranges watched).
        until(DEADLINE, "five looks at the lagging watch", || {
            reads() - from >= 30.0
        });
        etcd.put(
            "/nm/lagging/switch",
            r#"{"by":"test","reason":"lagging","at":"now"}"#,
        );
        let set = Instant::now();
        until(DEADLINE, "the node follows the switch", || {
            http(port, "GET", "/api/status", &[], b"").json()["paused"]
                .as_str()
                .is_some_and(|why| why.contains(": lagging"))
        });
        let took = set.elapsed();
        stop.store(true, Ordering::SeqCst);
        eprintln!("paused {took:?} after the switch, its watch {lag:?} late");
        assert!(
            took >= lag - Duration::from_millis(100),
            "the switch came in {took:?}, not over the stream {lag:?} late: it was restarted"
        );
    });
    // A line logged after the looks: every line before it has been read by then.
    daemon.signal("HUP");
    let line = daemon.wait_for(|l| l.contains("watch") || l.starts_with("SIGHUP: "));
    assert!(
        line.starts_with("SIGHUP: "),
        "the watch was restarted: {line}"
    );
}
