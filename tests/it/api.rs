//! The HTTP API, as the article's clients use it and as nobody should be able to break it.

use crate::util::{http, Daemon};

fn daemon(extra: &[&str]) -> (Daemon, u16) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--seed", "5"];
    args.extend_from_slice(extra);
    let mut d = Daemon::start(&args);
    let port = d.port();
    (d, port)
}

const OPEN: &[&str] = &["-d", "*", "-t", "00:00-24:00"];

#[test]
fn the_articles_curl_works_as_written() {
    let mut kid = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let (mut d, port) = daemon(OPEN);
    // curl -d sends a form content type; the body is JSON all the same.
    let a = http(
        port,
        "POST",
        "/api/kill",
        &["Content-Type: application/x-www-form-urlencoded"],
        br#"{"desc":"I like kill!"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["desc"], "I like kill!");
    assert!(j["name"].is_string() && j["pid"].is_u64() && j["ppid"].is_u64());
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["trigger"], "http");
    let line = d.wait_for(|l| l.contains("Kill: "));
    assert_eq!(
        line,
        format!(
            "(Dryrun) Kill: {}(PID:{} PPID:{}) - I like kill!",
            j["name"].as_str().unwrap(),
            j["pid"],
            j["ppid"]
        ),
        "the log line and the answer come from the same outcome"
    );
    // The chat bot's way.
    let a = http(
        port,
        "POST",
        "/api/kill",
        &["Content-Type: application/json"],
        br#"{"desc":"request from hubot"}"#,
    );
    assert_eq!(
        (a.status, a.json()["desc"].as_str()),
        (200, Some("request from hubot"))
    );
    kid.kill().unwrap();
    kid.wait().unwrap();
}

#[test]
fn bad_requests_get_clear_json_errors_never_500() {
    let (_d, port) = daemon(OPEN);
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        ("POST", "/api/kill", b"{\"desc\":", 400, "format error"),
        ("POST", "/api/kill", b"", 400, "format error"),
        ("POST", "/api/kill", b"{}", 400, "desc is required: send a JSON object like {\"desc\":\"I like kill!\"}"),
        ("POST", "/api/kill", b"[1,2]", 400, "desc is required: send a JSON object like {\"desc\":\"I like kill!\"}"),
        ("POST", "/api/kill", b"{\"desc\":\"  \"}", 400, "desc must not be empty: say why, e.g. {\"desc\":\"I like kill!\"}"),
        ("POST", "/api/kill", b"{\"desc\":5}", 400, "desc must be a string, e.g. {\"desc\":\"I like kill!\"}"),
        ("GET", "/api/kill", b"", 405, "method not allowed: the API has POST /api/kill, POST /api/faults/{name}, GET /api/plugins, GET /api/history, GET /api/status, POST /api/pause, POST /api/resume, POST /api/revert/{id}, POST /api/ack, POST /api/alerts, GET /api/report, GET /api/events, GET /metrics, GET /healthz and the dashboard at GET /"),
        ("DELETE", "/api/plugins", b"", 405, "method not allowed: the API has POST /api/kill, POST /api/faults/{name}, GET /api/plugins, GET /api/history, GET /api/status, POST /api/pause, POST /api/resume, POST /api/revert/{id}, POST /api/ack, POST /api/alerts, GET /api/report, GET /api/events, GET /metrics, GET /healthz and the dashboard at GET /"),
        ("GET", "/nowhere", b"", 404, "not found: the API has POST /api/kill, POST /api/faults/{name}, GET /api/plugins, GET /api/history, GET /api/status, POST /api/pause, POST /api/resume, POST /api/revert/{id}, POST /api/ack, POST /api/alerts, GET /api/report, GET /api/events, GET /metrics, GET /healthz and the dashboard at GET /"),
        ("POST", "/api/faults/nope", b"{\"desc\":\"x\"}", 404, "no fault named `nope` is configured (configured: process-kill); GET /api/plugins lists them"),
        ("POST", "/api/faults/nope", b"", 404, "no fault named `nope` is configured (configured: process-kill); GET /api/plugins lists them"),
        ("POST", "/api/revert/..%2Fx", b"", 400, "expected a fault id like 1764141234567-1 (GET /api/status lists the active faults)"),
        ("POST", "/api/revert/1764141234567-1", b"", 404, "no active fault 1764141234567-1: it was reverted already, or never was active (GET /api/status lists the active ones)"),
        ("GET", "/api/report?format=png", b"", 400, "format: `png` is not one of json, svg"),
    ];
    for (method, path, body, status, message) in cases {
        let a = http(port, method, path, &[], body);
        assert_eq!(
            a.status,
            *status,
            "{method} {path} {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            a.json(),
            serde_json::json!({"code": status, "message": message})
        );
    }
    let big = vec![b'x'; 70_000];
    let a = http(port, "POST", "/api/kill", &[], &big);
    assert_eq!(a.status, 413);
    assert_eq!(a.json()["message"], "the body is larger than 65536 bytes");
}

/// A body without Content-Length is read, not refused with 411: `curl -X POST` with no
/// `-d` sends neither a body nor a length (the original answered `format error`), and a
/// client may send its body chunked, counted against the same limit as it comes.
#[test]
fn bodies_without_a_length_are_read_and_bounded() {
    use std::io::{Read as _, Write as _};
    let (_d, port) = daemon(OPEN);
    let raw = |head: &str, body: &[u8]| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let request = format!(
            "POST /api/kill HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{head}\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        // A server may answer (413) before reading the whole body; that is fine.
        let _ = stream.write_all(body);
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        (status, body)
    };
    let chunked_by = |body: &[u8], size: usize| {
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let chunked = |body: &[u8]| chunked_by(body, 8192);
    let te = "Transfer-Encoding: chunked\r\n";
    // A body in many small chunks is read whole, every piece in its place.
    let (status, answer) = raw(te, &chunked_by(br#"{"desc":"sent in small pieces"}"#, 4));
    assert_eq!(
        (status, &answer["desc"]),
        (200, &serde_json::json!("sent in small pieces")),
        "{answer}"
    );
    let cases: &[(&str, Vec<u8>, u16, &str)] = &[
        ("", Vec::new(), 400, "format error"),
        (
            te,
            chunked(b"{\"desc\":\"  \"}"),
            400,
            "desc must not be empty: say why, e.g. {\"desc\":\"I like kill!\"}",
        ),
        (
            te,
            chunked(&[b'x'; 70_000]),
            413,
            "the body is larger than 65536 bytes",
        ),
    ];
    for (head, body, status, message) in cases {
        let answer = raw(head, body);
        assert_eq!(
            answer,
            (
                *status,
                serde_json::json!({"code": status, "message": message})
            ),
            "{head:?}"
        );
    }
}

#[test]
fn named_faults_plugins_and_health() {
    let mut kid = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let (_d, port) = daemon(OPEN);
    let a = http(
        port,
        "POST",
        "/api/faults/process-kill",
        &[],
        br#"{"desc":"by name"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["fault"], "process-kill");
    let p = http(port, "GET", "/api/plugins", &[], b"").json();
    let names: Vec<&str> = p["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cpu-hog",
            "disk-fill",
            "memory-hog",
            "net-bandwidth",
            "net-delay",
            "net-loss",
            "net-partition",
            "net-proxy",
            "net-reject",
            "process-kill",
            "process-pause"
        ]
    );
    assert!(p["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["source"] == "built-in"));
    assert_eq!(
        p["faults"],
        serde_json::json!([{"name": "process-kill", "plugin": "process-kill"}])
    );
    assert_eq!(
        http(port, "GET", "/healthz", &[], b"").json(),
        serde_json::json!({"status": "ok"})
    );
    kid.kill().unwrap();
    kid.wait().unwrap();
}

#[test]
fn outside_the_window_it_answers_503_with_retry_after() {
    // Closed all day every day but one hour a week from now cannot be open now:
    // open only on the day after tomorrow's weekday, which is not today's.
    let day = (chrono::Local::now().date_naive() + chrono::Duration::days(2))
        .format("%w")
        .to_string();
    let (_d, port) = daemon(&["-d", &day, "-t", "00:00-24:00"]);
    let a = http(port, "POST", "/api/kill", &[], br#"{"desc":"too early"}"#);
    assert_eq!(a.status, 503);
    assert_eq!(
        a.json(),
        serde_json::json!({"code": 503, "message": "Nightmare Monkey is sleeping now"})
    );
    let retry: i64 = a.header("retry-after").unwrap().parse().unwrap();
    // Opens at midnight starting the day after tomorrow: between 1 and 2 days away.
    assert!(
        (86_400 - 3_700..=2 * 86_400 + 3_700).contains(&retry),
        "{retry}"
    );
}

/// The timer's next wake outside the window is no fault, and neither the log nor
/// `status` says there is one then.
#[test]
fn a_timer_wake_outside_the_window_is_not_called_a_fault() {
    let day = (chrono::Local::now().date_naive() + chrono::Duration::days(2))
        .format("%w")
        .to_string();
    let (mut d, port) = daemon(&["-d", &day, "--min-interval", "60", "--max-interval", "60"]);
    let next = d.wait_for(|l| l.starts_with("Next fault: "));
    assert!(
        next.starts_with("Next fault: none at ")
            && next.ends_with(": outside the window, the timer wakes, sleeps on and draws again"),
        "{next}"
    );
    let s = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(s["next"]["in_window"], false, "{s}");
    let open = daemon(OPEN);
    let (mut d, port) = open;
    let next = d.wait_for(|l| l.starts_with("Next fault: "));
    assert!(next.starts_with("Next fault: process-kill at "), "{next}");
    assert_eq!(
        http(port, "GET", "/api/status", &[], b"").json()["next"]["in_window"],
        true
    );
}

#[test]
fn a_token_guards_every_api_call() {
    let dir = crate::util::TestDir::new("token");
    let file = crate::util::Drill::new(&dir)
        .named("token.ron")
        .without("timer")
        .http(r#"token: "s3cret""#)
        .write();
    let (_d, port) = daemon(&["--config", &file]);
    let unauthorized = serde_json::json!({"code": 401, "message": "missing or wrong token: send Authorization: Bearer <token>"});
    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"][..],
        &["Authorization: s3cret"][..],
    ] {
        for (method, path) in [
            ("POST", "/api/kill"),
            ("GET", "/api/plugins"),
            ("POST", "/api/faults/process-kill"),
            ("POST", "/api/pause?scope=fleet"),
            ("POST", "/api/resume?scope=fleet"),
            ("POST", "/api/pause?scope=Fleet"),
            ("GET", "/api/fleet"),
        ] {
            let a = http(port, method, path, headers, br#"{"desc":"x"}"#);
            assert_eq!(
                (a.status, a.json()),
                (401, unauthorized.clone()),
                "{method} {path} {headers:?}"
            );
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
    }
    let a = http(
        port,
        "GET",
        "/api/plugins",
        &["Authorization: Bearer s3cret"],
        b"",
    );
    assert_eq!(a.status, 200);
    // Health probes need no token.
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_description_cannot_forge_a_log_line_or_flood_one() {
    let (mut d, port) = daemon(OPEN);
    let forged = "x\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged";
    let body = serde_json::json!({ "desc": forged }).to_string();
    let a = http(port, "POST", "/api/kill", &[], body.as_bytes());
    assert_eq!(a.status, 200, "{}", a.body);
    // The answer keeps the text as sent (JSON escapes it); the log line escapes it.
    assert_eq!(a.json()["desc"], forged);
    let line = d.wait_for(|l| l.contains("Kill: ") && l.contains("forged"));
    assert!(
        line.ends_with(r" - x\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged"),
        "{line}"
    );
    d.wait_for(|l| l.starts_with("dry-run: "));
    assert!(
        !d.log
            .iter()
            .any(|l| l.starts_with("Kill: sshd(PID:1 PPID:0)")),
        "a forged line: {:?}",
        d.log
    );
    let long = serde_json::json!({ "desc": "a".repeat(1025) }).to_string();
    let b = http(port, "POST", "/api/kill", &[], long.as_bytes());
    assert_eq!(b.status, 400);
    assert_eq!(
        b.json()["message"],
        "desc is longer than 1024 bytes: say why in a sentence"
    );
}

/// 1,100 idle connections against a daemon held to 1,024 descriptors (soft and hard, so
/// it cannot raise them): `/healthz` and a fault (which opens the journal and reads
/// /proc) are still served at once, each new client taking the place of the oldest
/// idle connection, and the descriptors it keeps in reserve stay free.
#[test]
fn a_crowd_of_idle_connections_neither_starves_healthz_nor_the_descriptors() {
    use std::{
        net::TcpStream,
        time::{Duration, Instant},
    };
    // This test holds 1,100 sockets itself.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let mut d = crate::util::Daemon::start_with_open_files(
        "1024:1024",
        &["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"],
    );
    let port = d.port();
    let crowd: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let started = Instant::now();
    let health = http(port, "GET", "/healthz", &[], b"");
    let took = started.elapsed();
    assert_eq!(health.status, 200);
    assert!(took < Duration::from_secs(5), "/healthz took {took:?}");
    let fault = http(port, "POST", "/api/kill", &[], br#"{"desc":"in a crowd"}"#);
    assert_eq!(fault.status, 200, "{}", fault.body);
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    assert!(
        open <= 1024 - 256 + 16,
        "{open} descriptors open: the reserve for reverts is gone"
    );
    drop(crowd);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    eprintln!("/healthz in a crowd of 1,100: {took:?}, {open} descriptors open");
}

/// `status` (and `GET /api/status`) says what the daemon is doing; `resume` fails while
/// the pause file holds it back; `/metrics` shows the switch; without a daemon, `pause`
/// says so and points to the pause file.
#[test]
fn status_tells_the_state_and_resume_tells_the_truth() {
    let dir = crate::util::TestDir::new("api-status");
    let pause_file = dir.join("paused");
    let cfg = crate::util::Drill::new(&dir)
        .named("status.ron")
        .without("timer")
        .config(
            r#"budget: (per_hour: 4), schedule: Uniform(min_interval: 3600, max_interval: 3600)"#,
        )
        .write();
    let _victim = crate::util::Sleeper::start();
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let next = d.wait_for(|l| l.starts_with("Next fault: "));
    assert!(next.starts_with("Next fault: process-kill at "), "{next}");
    let url = format!("127.0.0.1:{port}");
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--url", &url];
        args.extend_from_slice(extra);
        crate::util::monkey(&args)
    };
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"one"}"#).status,
        200
    );
    let json = status(&["--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let s: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(s["state"], "playing");
    assert_eq!(s["execute"], false);
    assert_eq!(
        s["budget"]["per_hour"],
        serde_json::json!({"used": 1, "limit": 4})
    );
    assert_eq!(s["next"]["fault"], "process-kill");
    assert!(
        (3590..=3600).contains(&s["next"]["in_s"].as_u64().unwrap()),
        "{s}"
    );
    assert_eq!(
        s["journal"].as_str(),
        Some(dir.join("journal.jsonl").to_str().unwrap())
    );
    let lines = status(&[]);
    let first = lines.stdout.lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        first,
        format!(
            "Nightmare Monkey {} at http://{url}: playing (dry run)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        lines
            .stdout
            .contains("\n  budget: 1 of 4 this hour used; a fault fits now\n"),
        "{}",
        lines.stdout
    );
    let metric = |port| {
        http(port, "GET", "/metrics", &[], b"")
            .body
            .lines()
            .find(|l| l.starts_with("nightmare_monkey_paused "))
            .map(str::to_owned)
    };
    assert_eq!(metric(port).as_deref(), Some("nightmare_monkey_paused 0"));
    // The pause file holds it back: resume cannot, and says so.
    std::fs::write(&pause_file, "").unwrap();
    d.wait_for(|l| l.starts_with("Nightmare Monkey is paused: "));
    let resume = crate::util::monkey(&["resume", "--url", &url]);
    assert_eq!(
        (resume.code, resume.stderr.as_str()),
        (
            Some(1),
            format!(
                "error: still paused: the pause file {} exists; remove it to resume\n",
                pause_file.display()
            )
            .as_str()
        )
    );
    assert_eq!(metric(port).as_deref(), Some("nightmare_monkey_paused 1"));
    let paused: serde_json::Value = serde_json::from_str(&status(&["--json"]).stdout).unwrap();
    assert_eq!(paused["state"], "paused");
    // Refused, the resume changed nothing: with the API's switch on as well, removing
    // the file leaves it paused by the switch.
    std::fs::remove_file(&pause_file).unwrap();
    d.wait_for(|l| l.starts_with("Nightmare Monkey is playing again: "));
    assert_eq!(http(port, "POST", "/api/pause", &[], b"").status, 200);
    std::fs::write(&pause_file, "").unwrap();
    d.wait_for(|l| l.starts_with("Nightmare Monkey is paused: "));
    assert_eq!(http(port, "POST", "/api/resume", &[], b"").status, 409);
    std::fs::remove_file(&pause_file).unwrap();
    let still = d.wait_for(|l| l.contains(" was removed; Nightmare Monkey is still paused: "));
    assert!(
        still.ends_with("still paused: POST /api/resume to resume"),
        "{still}"
    );
    let held: serde_json::Value = serde_json::from_str(&status(&["--json"]).stdout).unwrap();
    assert_eq!(held["paused"], "POST /api/resume to resume");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    without_a_daemon_pause_points_to_the_file(&cfg, &url, &pause_file);
}

/// No daemon at `url`: `pause` says so, with the way that works without one.
fn without_a_daemon_pause_points_to_the_file(cfg: &str, url: &str, pause_file: &std::path::Path) {
    let alone = crate::util::monkey(&["pause", "--config", cfg, "--url", url]);
    assert_eq!(alone.code, Some(1));
    assert!(
        alone.stderr.starts_with(&format!(
            "error: cannot reach the daemon at http://{url} (Connection refused"
        )),
        "{}",
        alone.stderr
    );
    assert!(
        alone.stderr.ends_with(&format!(
            "Without a daemon, the pause file {} pauses the next start\n",
            pause_file.display()
        )),
        "{}",
        alone.stderr
    );
}

/// `GET /api/history?run=last` means what `history --run last` means: the run of the
/// latest fault journaled (one start of the daemon).
#[test]
fn history_of_the_last_run_as_the_command_line_reads_it() {
    let _victim = crate::util::Sleeper::start();
    let dir = crate::util::TestDir::new("history-last-run");
    let cfg = crate::util::Drill::new(&dir)
        .named("config.ron")
        .without("timer")
        .write();
    let kill = |port: u16, desc: &str| {
        let body = format!(r#"{{"desc":"{desc}"}}"#);
        let a = http(port, "POST", "/api/kill", &[], body.as_bytes());
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["id"].as_str().unwrap().to_owned()
    };
    let ids = |port: u16, query: &str| -> Vec<String> {
        let a = http(port, "GET", &format!("/api/history{query}"), &[], b"");
        assert_eq!(a.status, 200, "{query}: {}", a.body);
        a.json()["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let mut first = Daemon::start(&["--config", &cfg]);
    let port = first.port();
    assert_eq!(ids(port, "?run=last"), Vec::<String>::new(), "no run yet");
    let earlier = [kill(port, "first run"), kill(port, "first run again")];
    assert_eq!(ids(port, "?run=last"), earlier);
    first.signal("TERM");
    assert_eq!(first.wait_exit(), Some(0));

    let mut second = Daemon::start(&["--config", &cfg]);
    let port = second.port();
    let latest = kill(port, "second run");
    assert_eq!(ids(port, "?run=last"), std::slice::from_ref(&latest));
    let first_run = earlier[0].split('-').next().unwrap();
    assert_eq!(ids(port, &format!("?run={first_run}")), earlier);
    assert_eq!(ids(port, "").len(), 3);
    let cli = crate::util::monkey(&["history", "--config", &cfg, "--run", "last", "--json"]);
    assert_eq!(cli.code, Some(0), "{}", cli.stderr);
    let cli: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
    let cli_ids: Vec<String> = cli["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cli_ids, [latest], "the API and the command line agree");

    let bad = http(port, "GET", "/api/history?run=yesterday", &[], b"");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["message"],
        "run: invalid run `yesterday`: expected last, or a run's number (the part of a fault's id before the dash)"
    );
}

/// A scope other than `fleet` is a 400 that changes nothing: a mistyped `scope=Fleet`
/// must not pause this daemon alone. Without a scope, the daemon's own switch answers.
#[test]
fn a_scope_other_than_fleet_is_refused_and_switches_nothing() {
    let (_d, port) = daemon(OPEN);
    let expected = |scope: &str| serde_json::json!({"code": 400, "message": format!("invalid scope `{scope}`: expected scope=fleet (every daemon of the fleet), or no scope for this daemon alone")});
    let paused = || http(port, "GET", "/api/status", &[], b"").json()["paused"].clone();
    for (path, scope) in [
        ("/api/pause?scope=Fleet", "Fleet"),
        ("/api/pause?scope=flet&reason=typo", "flet"),
        ("/api/pause?scope=", ""),
        ("/api/pause?scope=fleet&scope=node", "node"),
        ("/api/resume?scope=FLEET", "FLEET"),
    ] {
        let a = http(port, "POST", path, &[], b"");
        assert_eq!((a.status, a.json()), (400, expected(scope)), "{path}");
        assert_eq!(
            paused(),
            serde_json::Value::Null,
            "{path} paused the daemon"
        );
    }
    // scope=fleet itself is taken, and this daemon says it is in no fleet.
    let fleet = http(port, "POST", "/api/pause?scope=fleet", &[], b"");
    assert_eq!(fleet.status, 400, "{}", fleet.body);
    assert!(
        fleet.body.contains("this daemon is in no fleet"),
        "{}",
        fleet.body
    );
    // Without a scope (other parameters are not looked at), the daemon's own switch.
    let own = http(port, "POST", "/api/pause?reason=x", &[], b"");
    assert_eq!(
        (own.status, own.json()),
        (
            200,
            serde_json::json!({"paused": true, "reverting": [], "message": "Nightmare Monkey is paused: every trigger is refused and active faults were reverted"})
        )
    );
    let again = http(port, "POST", "/api/resume", &[], b"");
    assert_eq!(
        (again.status, again.json()),
        (
            200,
            serde_json::json!({"paused": false, "reverting": [], "message": "Nightmare Monkey is playing again"})
        )
    );
}

/// A client that sends a head and then its body never whole holds a connection no
/// longer than the head's timeout (else 512 of them keep out every client, the kill
/// switch's included); a body broken as HTTP frames it is a 400 naming it.
#[test]
fn a_body_that_never_comes_whole_is_cut_off_and_a_broken_one_is_a_400() {
    use crate::util::{Drill, TestDir};
    use std::io::{Read as _, Write as _};
    let dir = TestDir::new("slow-body");
    let cfg = Drill::new(&dir)
        .named("config.ron")
        .without("timer")
        .http(r#"header_timeout: "1s""#)
        .write();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let port = daemon.port();
    let answer = |request: &[u8]| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        // Read to the end: the daemon answers and closes, the client sends no more.
        let mut text = Vec::new();
        let _ = stream.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    };
    let slow = answer(
        format!(
            "POST /api/kill HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    );
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(
        slow.contains(r#""message":"the body did not come whole within 1s""#),
        "{slow}"
    );
    let broken = answer(
        format!(
            "POST /api/kill HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        .as_bytes(),
    );
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    assert!(broken.contains("the body cannot be read: "), "{broken}");
    // Neither was taken for a fault.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    assert!(!journal.contains(r#""type":"intent""#), "{journal}");
}

mod caching;
