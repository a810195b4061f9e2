//! The dashboard's event stream: bounded, ended with the daemon, and a storm of events
//! refreshing the page at most twice a second.

use super::*;

/// Reads an event stream until `want` shows; what was read.
fn read_until(stream: &mut std::net::TcpStream, want: &str) -> String {
    use std::io::Read as _;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = stream.read(&mut buf).expect("the stream goes on");
        assert!(
            n > 0,
            "the stream ended before {want}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn watch(port: u16) -> std::net::TcpStream {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n"
    )
    .unwrap();
    stream
}

#[test]
fn events_are_streamed_bounded_and_end_when_the_daemon_stops() {
    let dir = TestDir::new("dashboard-events");
    let cfg = config(
        &dir,
        r#", tokens: {"instructor": "s3cret-token"}"#,
        "^sleep$",
    );
    let _victim = Sleeper::start();
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let mut first = watch(port);
    let head = read_until(&mut first, "event:hello");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let fault = api(port, "POST", "/api/kill", "s3cret-token");
    let seen = read_until(&mut first, "event:outcome");
    assert!(seen.contains("event:intent"), "{seen}");
    let id = fault["id"].as_str().unwrap();
    assert!(
        seen.lines()
            .any(|l| l.starts_with("data:{") && l.contains(&format!(r#""id":"{id}""#))),
        "{seen}"
    );
    // The timeline, as the page draws it: a picture that runs nothing.
    let auth = "Authorization: Bearer s3cret-token";
    let svg = http(
        port,
        "GET",
        "/api/report?since=24h&format=svg",
        &[auth],
        b"",
    );
    assert_eq!(svg.status, 200, "{}", svg.body);
    assert_eq!(
        svg.header("content-type"),
        Some("image/svg+xml; charset=utf-8")
    );
    assert_eq!(
        svg.header("content-security-policy"),
        Some("default-src 'none'; style-src 'unsafe-inline'")
    );
    assert!(
        svg.body.starts_with("<svg") && svg.body.contains("1 fault"),
        "{}",
        svg.body
    );
    // The pause and the resume are told too.
    api(port, "POST", "/api/pause", "s3cret-token");
    read_until(&mut first, r#"data:{"paused":"#);

    // At most 32 watch at once; the next is told to come back.
    let mut others: Vec<_> = (1..32).map(|_| watch(port)).collect();
    for other in &mut others {
        read_until(other, "event:hello");
    }
    let mut one_too_many = watch(port);
    let refused = read_until(&mut one_too_many, "\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    drop(others.pop());
    // A place freed is a place taken (the server notices the closed socket at once).
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = watch(port);
        let answer = read_until(&mut again, "\r\n\r\n");
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < end, "the place never came back: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Going to bed ends every stream; nothing holds the exit up.
    let stopping = Instant::now();
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_storm_of_events_is_at_most_two_refreshes_a_second() {
    let dir = TestDir::new("dashboard-storm");
    let cfg = config(&dir, "", "^sleep$");
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let browser = Browser::start(1024, 800);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.until(
        Duration::from_secs(30),
        "live",
        r#"return document.getElementById("live").textContent === "live""#,
    );
    // Counts the page's reads of the journal from now on (a refresh still pending from
    // the start counts too: the bound below leaves room for one at each end).
    browser.run(
        r#"window.reads = 0;
           const fetch0 = window.fetch;
           window.fetch = (url, opts) => { if (String(url).startsWith("/api/report")) window.reads++; return fetch0(url, opts); };"#,
        json!([]),
    );
    // Forty flips of the switch in about two seconds: forty events.
    let started = Instant::now();
    for i in 0..40 {
        let path = if i % 2 == 0 {
            "/api/pause"
        } else {
            "/api/resume"
        };
        assert_eq!(http(port, "POST", path, &[], b"").status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    // The last event is still shown, within a second or so.
    browser.until(
        Duration::from_secs(3),
        "playing again",
        r#"return document.getElementById("state").textContent === "Playing""#,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let reads = browser
        .run("return window.reads", json!([]))
        .as_u64()
        .unwrap();
    // Two reads a refresh, two refreshes a second (and one more at each end).
    let most = 2 * (2 * took.as_secs() + 4);
    eprintln!("dashboard: {reads} journal reads for 40 events in {took:?}");
    assert!(
        reads <= most,
        "{reads} journal reads in {took:?}: at most {most}"
    );
    drop(browser);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}
