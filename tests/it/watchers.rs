//! `GET /api/events` has 32 places: clients that take one and never read must not keep
//! the dashboard out. Once their buffers are full, their writes wait; after the header
//! timeout the daemon cuts them off and their places are free again. With few
//! connections, watchers take at most half of them: the rest stays for the kill switch.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use crate::util::{http, Daemon, Drill, Sleeper, TestDir};

/// The places among the watchers (`MAX_WATCHERS` in the dashboard's module).
const PLACES: usize = 32;

/// Connects with a small receive buffer (set before the connection, so the window the
/// daemon sees is small too), asks for the events and reads the answer's head: the
/// status line and, for a place taken, the stream's first event.
pub(crate) fn watch(port: u16) -> (TcpStream, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let text = loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        let refused = text.contains("\r\n\r\n") && !text.starts_with("HTTP/1.1 200");
        if refused || text.contains("event:hello") {
            break text;
        }
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            other => panic!("the answer ended ({other:?}) after {text:?}"),
        }
    };
    (stream, text)
}

#[test]
fn watchers_that_never_read_give_their_places_back() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("deaf-watchers");
    let cfg = Drill::new(&dir)
        .named("config.ron")
        .without("timer")
        // Long enough for 32 connections on a busy machine: a place taken longer ago
        // goes to the next watcher (below).
        .http(r#"header_timeout: "10s""#)
        .write();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let port = daemon.port();

    // Every place taken by a client that, from now on, reads nothing.
    let deaf: Vec<TcpStream> = (0..PLACES)
        .map(|_| {
            let (stream, head) = watch(port);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            stream
        })
        .collect();
    let (_, refused) = watch(port);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");

    // Events until their buffers are full; then, within the header timeout and a
    // margin, a new watcher finds a place.
    let desc = format!(r#"{{"desc":"{}"}}"#, "x".repeat(1000));
    let started = Instant::now();
    let mut faults = 0;
    let head = loop {
        let kill = http(port, "POST", "/api/kill", &[], desc.as_bytes());
        assert_eq!(kill.status, 200, "{}", kill.body);
        faults += 1;
        let (_stream, head) = watch(port);
        if head.starts_with("HTTP/1.1 200") {
            break head;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no place after {faults} faults in {:?}: {head}",
            started.elapsed()
        );
    };
    assert!(head.contains("event:hello"), "{head}");
    eprintln!(
        "a place came back after {faults} faults, {:?}",
        started.elapsed()
    );
    // The deaf ones are cut off (the daemon closed its end: seen in /proc, without
    // reading, for a reader is no longer deaf). One whose buffers were not quite full
    // yet (a busy machine spreads the events unevenly) fills with a few more events.
    let end = Instant::now() + Duration::from_secs(60);
    let api = port;
    for stream in &deaf {
        let local = stream.local_addr().unwrap().port();
        while !closed_by_the_daemon(api, local) {
            assert!(
                Instant::now() < end,
                "not cut off within 60 s: {:?}",
                std::fs::read_to_string("/proc/net/tcp")
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains(&format!(":{local:04X}")))
                    .collect::<Vec<_>>()
            );
            http(api, "POST", "/api/kill", &[], desc.as_bytes());
        }
    }
    // Then each reads what the kernel held, then the end.
    for mut stream in deaf {
        let mut sink = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("not cut off: {e}"),
                Ok(_) => {}
            }
        }
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}

/// Clients that take every place and never read while nothing happens fill no buffer:
/// a newcomer takes the place of the one that has watched longest once it has watched
/// for the header timeout, and that one's stream ends.
#[test]
fn a_newcomer_takes_the_place_of_a_watcher_that_read_nothing_while_nothing_happened() {
    let dir = TestDir::new("quiet-deaf-watchers");
    let cfg = Drill::new(&dir)
        .named("config.ron")
        .without("timer")
        .http(r#"header_timeout: "2s""#)
        .write();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let port = daemon.port();
    let mut deaf: Vec<TcpStream> = (0..PLACES)
        .map(|_| {
            let (stream, head) = watch(port);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            stream
        })
        .collect();
    // No fault, no event: only the newcomer's asking frees a place.
    let end = Instant::now() + Duration::from_secs(60);
    let (_newcomer, head) = loop {
        let (stream, head) = watch(port);
        if head.starts_with("HTTP/1.1 200") {
            break (stream, head);
        }
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(Instant::now() < end, "no place within 60 s: {head}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(head.contains("event:hello"), "{head}");
    // The first one's stream ended: what it never read, then the end of the chunks.
    let mut first = deaf.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}

/// Under `http.max_connections: 4`, as many open dashboards as connections: two watch,
/// the others are told that the places are taken, and `/healthz` and the kill switch are
/// answered at once (their connections were not all taken by streams, which the server
/// never closes to make room), long before the header timeout.
#[test]
fn open_dashboards_leave_connections_for_the_kill_switch() {
    let dir = TestDir::new("few-connections-watchers");
    let mut daemon = Drill::new(&dir)
        .http(r#"max_connections: 4, header_timeout: "10m""#)
        .start(&[]);
    let port = daemon.port();
    let dashboards: Vec<(TcpStream, String)> = (0..4).map(|_| watch(port)).collect();

    // Each within the client's deadline (15 s), not the header timeout (10 min).
    let health = http(port, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);
    let pause = http(port, "POST", "/api/pause", &[], b"");
    assert_eq!(pause.status, 200, "{}", pause.body);

    let (watching, refused): (Vec<_>, Vec<_>) = dashboards
        .into_iter()
        .partition(|(_, head)| head.starts_with("HTTP/1.1 200"));
    let heads: Vec<&String> = refused.iter().map(|(_, head)| head).collect();
    assert_eq!(watching.len(), 2, "{heads:#?}");
    for (mut stream, head) in refused {
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no length: {head}"));
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("busy: 2 are watching"), "{body}");
    }
    // The watchers still watch: each sees the switch flip.
    for (mut stream, _) in watching {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("event:switch") {
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                other => panic!("the stream ended ({other:?}): {seen:?}"),
            }
        }
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}

/// Whether the daemon closed its end of the connection from our local port `ours` to
/// its port `api`: its socket is no longer established in /proc/net/tcp (FIN_WAIT1
/// while the kernel still holds what the client never read, or gone). Seen without
/// reading: a client that reads is no longer deaf.
fn closed_by_the_daemon(api: u16, ours: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (format!(":{api:04X}"), format!(":{ours:04X}"));
    let state = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let theirs = fields.get(1)?.ends_with(&local) && fields.get(2)?.ends_with(&remote);
        theirs.then(|| fields.get(3).map(|s| s.to_string()))?
    });
    // 01 is ESTABLISHED.
    state.as_deref() != Some("01")
}
