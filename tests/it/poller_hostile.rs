//! The poller against servers that misbehave on purpose, and what it must never show.

use std::{io::Write as _, net::TcpStream, time::Duration};

use crate::util::{raw_server, Daemon, Drill, FakeServer, Reply, TestDir};

/// A config with this one poller, named `p`, and the built-in fault: its path.
fn config(dir: &TestDir, poller: &str) -> String {
    Drill::new(dir)
        .config(&format!(r#"pollers: {{"p": {poller}}}"#))
        .config(r#"faults: {"process-kill": ()}"#)
        .write()
}

/// Runs the daemon on `config` until poller `p` says its first poll failed, and stops
/// it: that line, and the daemon with its whole log.
fn first_failure(config: &str) -> (String, Daemon) {
    let mut d = Daemon::start(&["--config", config, "--seed", "1"]);
    let line = d.wait_for(|l| l.starts_with("poller p: GET"));
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    (line, d)
}

/// 5 MiB of blanks, chunked, then a count: valid JSON, but past any answer a poll reads.
fn endless(stream: &mut TcpStream) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let blanks = vec![b' '; 64 * 1024];
    for _ in 0..80 {
        let chunk = format!("{:x}\r\n", blanks.len());
        let sent = stream
            .write_all(chunk.as_bytes())
            .and_then(|()| stream.write_all(&blanks))
            .and_then(|()| stream.write_all(b"\r\n"));
        if sent.is_err() {
            return;
        }
    }
    let _ = stream.write_all(b"b\r\n{\"count\":1}\r\n0\r\n\r\n");
}

/// A count, one byte every tenth of a second: whole only after ten seconds.
fn drip(stream: &mut TcpStream) {
    let body = format!("{:>100}", "{\"count\":1}");
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for byte in body.bytes() {
        // The server's pace, not a wait for the daemon.
        std::thread::sleep(Duration::from_millis(100));
        if stream.write_all(&[byte]).is_err() {
            return;
        }
    }
}

/// An answer past 4 MiB, and one that drips past the timeout: each a bad day, said
/// once, and nothing fired.
#[test]
fn an_answer_too_large_or_too_slow_is_given_up_and_said_once() {
    let cases: [(_, fn(&mut TcpStream), _, _); 2] = [
        (
            "poll-huge",
            endless,
            r#"period: "20ms", max_backoff: "40ms""#,
            "the answer is larger than 4 MiB, more than a counter needs",
        ),
        (
            "poll-drip",
            drip,
            r#"period: "1h", timeout: "1s""#,
            "the answer did not end within 1s",
        ),
    ];
    for (name, answer, timing, why) in cases {
        let dir = TestDir::new(name);
        let url = raw_server(answer);
        let (line, d) = first_failure(&config(
            &dir,
            &format!(r#"Json(url: "{url}/c", pointer: "/count", {timing})"#),
        ));
        assert_eq!(line, format!("poller p: GET {url}/c: {why}; backing off"));
        let said = d.log.iter().filter(|l| l.starts_with("poller p: GET"));
        assert_eq!(said.count(), 1, "said once: {:?}", d.log);
        assert!(!d.log.iter().any(|l| l.contains("Kill: ")), "{:?}", d.log);
    }
}

/// A count of a thousand billion, always.
fn huge_count(stream: &mut TcpStream) {
    let body = "{\"count\":1000000000000}";
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The daemon on [`config`].
fn poller(dir: &TestDir, poller: &str) -> Daemon {
    Daemon::start(&["--config", &config(dir, poller), "--seed", "1"])
}

#[test]
fn one_poll_fires_at_most_ten_faults_however_far_the_count_jumps() {
    let dir = TestDir::new("poll-jump");
    let url = raw_server(huge_count);
    let mut d = poller(
        &dir,
        &format!(r#"Json(url: "{url}/c", pointer: "/count", period: "1h", catch_up: AllAtOnce)"#),
    );
    d.wait_for(|l| {
        l == "poller p: count 1000000000000 is 1000000000000 faults past the threshold 1; at most 10 a poll, the rest on later polls"
    });
    // Said before the poll fires; then ten faults, and the next poll is an hour away.
    for _ in 0..10 {
        d.wait_for(|l| l.contains("Kill: ") && l.ends_with(" - the counter reached 1000000000000"));
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let fired = d.log.iter().filter(|l| l.contains("Kill: ")).count();
    assert_eq!(fired, 10, "{:?}", d.log);
    assert_eq!(
        std::fs::read_to_string(dir.join("poller-p.json")).unwrap(),
        r#"{"threshold":11}"#
    );
}

/// A 302 to `location`.
fn redirect(location: &str) -> Reply {
    let mut reply = Reply::body(302, "");
    reply.headers.push(("Location".into(), location.to_owned()));
    reply
}

#[test]
fn a_redirect_to_another_host_is_not_followed_and_the_secret_stays() {
    let dir = TestDir::new("poll-redirect");
    let other = FakeServer::start(vec![Reply::likes(0)]);
    // Another host to the client, though the same address.
    let server = FakeServer::start(vec![redirect(&format!(
        "http://localhost:{}/count",
        other.port
    ))]);
    let url = format!("{}/c", server.url());
    let (line, _) = first_failure(&config(
        &dir,
        &format!(
            r#"Json(url: "{url}", pointer: "/likes_count", period: "1h", headers: {{"PRIVATE-TOKEN": "S3CRET"}})"#
        ),
    ));
    assert_eq!(
        line,
        format!("poller p: GET {url} answered 302 Found, a redirect to another scheme, host or port: not followed (give the URL it names); backing off")
    );
    let seen = server.wait_requests(1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("private-token"), Some("S3CRET"));
    assert!(
        other.wait_requests(0).is_empty(),
        "the redirect was followed"
    );
}

#[test]
fn a_redirect_on_the_same_host_is_followed_with_the_headers() {
    let dir = TestDir::new("poll-moved");
    let server = FakeServer::start(vec![redirect("/new"), Reply::likes(1)]);
    let mut d = poller(
        &dir,
        &format!(
            r#"Json(url: "{}/old", pointer: "/likes_count", period: "1h", headers: {{"PRIVATE-TOKEN": "S3CRET"}})"#,
            server.url()
        ),
    );
    d.wait_for(|l| l.contains("Kill: ") && l.ends_with(" - the counter reached 1"));
    let seen = server.wait_requests(2);
    assert_eq!(
        (seen[0].path.as_str(), seen[1].path.as_str()),
        ("/old", "/new")
    );
    assert_eq!(seen[1].header("private-token"), Some("S3CRET"));
}

#[test]
fn a_password_or_a_key_in_a_pollers_url_is_never_shown() {
    let dir = TestDir::new("poll-secret-url");
    // A port nobody listens on, kept so: every poll fails, and says its URL.
    let gone = crate::util::ReservedPort::reserve();
    let port = gone.port();
    let url = format!("http://user:pa55@127.0.0.1:{port}/c?api_key=k3y&item=7");
    let shown = format!("http://***@127.0.0.1:{port}/c?api_key=***&item=***");
    let config = config(
        &dir,
        &format!(r#"Json(url: "{url}", pointer: "/count", period: "1h")"#),
    );
    let check = crate::util::monkey(&["check-config", &config]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(
        check
            .stdout
            .contains(&format!("  poller p: GET {shown} every 1h, ")),
        "{}",
        check.stdout
    );
    let (line, d) = first_failure(&config);
    assert!(
        line.starts_with(&format!("poller p: GET {shown} failed: ")),
        "{line}"
    );
    assert!(
        d.log
            .iter()
            .any(|l| l.starts_with(&format!("Polling {shown} every 1h"))),
        "{:?}",
        d.log
    );
    for text in d.log.iter().chain([&check.stdout, &check.stderr]) {
        assert!(!text.contains("pa55") && !text.contains("k3y"), "{text}");
    }
}
