//! Where operators look: Prometheus metrics, JSON logs, the log level, and a command line
//! that explains itself (help with examples, completions, the man page, the version).

use crate::util::{http, monkey, temp_dir, Daemon, Sleeper};

/// Writes `config` to `dir/c.ron` and starts the daemon on it, the API on loopback.
fn daemon_with(dir: &std::path::Path, config: impl AsRef<str>) -> (Daemon, u16) {
    let file = dir.join("c.ron");
    std::fs::write(&file, config.as_ref()).unwrap();
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        file.to_str().unwrap(),
    ]);
    let port = d.port();
    (d, port)
}

/// The samples of a text exposition: `name{labels}` -> value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn metrics_count_faults_and_refusals_by_reason() {
    let _victim = Sleeper::start();
    let dir = temp_dir("metrics");
    let (_d, port) = daemon_with(
        &dir,
        r#"(http: (token: "s3cret"), window: (days: "*", time: "00:00-24:00"))"#,
    );
    let auth = ["Authorization: Bearer s3cret"];
    let kill = |headers: &[&str]| http(port, "POST", "/api/kill", headers, br#"{"desc":"m"}"#);
    assert_eq!(kill(&auth).status, 200);
    assert_eq!(kill(&auth).status, 200);
    assert_eq!(kill(&[]).status, 401);
    // Scraping needs the token too when one is set.
    assert_eq!(http(port, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(http(port, "POST", "/api/pause", &auth, b"").status, 200);
    assert_eq!(kill(&auth).status, 503);

    let a = http(port, "GET", "/metrics", &auth, b"");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        a.header("content-type")
    );
    let s = samples(&a.body);
    let get = |key: &str| {
        s.get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in\n{}", a.body))
    };
    for (key, want) in [
        (
            r#"nightmare_monkey_faults_total{fault="process-kill",trigger="http",result="dry-run"}"#,
            2.0,
        ),
        (r#"nightmare_monkey_refusals_total{reason="auth"}"#, 2.0),
        (r#"nightmare_monkey_refusals_total{reason="paused"}"#, 1.0),
        (r#"nightmare_monkey_refusals_total{reason="window"}"#, 0.0),
        (r#"nightmare_monkey_refusals_total{reason="budget"}"#, 0.0),
        ("nightmare_monkey_active_faults", 0.0),
        ("nightmare_monkey_plugin_load_failures_total", 0.0),
    ] {
        assert_eq!(get(key), want, "{key}");
    }
    let info = s
        .keys()
        .find(|k| k.starts_with("nightmare_monkey_build_info{"))
        .expect("build info");
    assert!(
        info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(a.body.ends_with("# EOF\n"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn window_budget_and_plugin_failures_are_counted_too() {
    // Something to pick besides the test's own ancestors.
    let _victim = Sleeper::start();
    let dir = temp_dir("metrics-refusals");
    std::fs::write(dir.join("broken.so"), b"not a library").unwrap();
    let config = dir.join("c.ron");
    std::fs::write(
        &config,
        r#"(window: (days: "*", time: "00:00-24:00"), budget: (per_hour: 1))"#,
    )
    .unwrap();
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        dir.to_str().unwrap(),
    ]);
    let port = d.port();
    let kill = || http(port, "POST", "/api/kill", &[], br#"{"desc":"b"}"#);
    let (first, second) = (kill(), kill());
    assert_eq!((first.status, second.status), (200, 429), "{}", first.body);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_refusals_total{reason="budget"}"#],
        1.0
    );
    assert_eq!(s["nightmare_monkey_plugin_load_failures_total"], 1.0);
    drop(d);

    // A window open only on the day after tomorrow's weekday: closed now.
    let day = (chrono::Local::now().date_naive() + chrono::Duration::days(2))
        .format("%w")
        .to_string();
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "-d", &day, "-t", "00:00-24:00"]);
    let port = d.port();
    assert_eq!(kill_status(port), 503);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_refusals_total{reason="window"}"#],
        1.0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn kill_status(port: u16) -> u16 {
    http(port, "POST", "/api/kill", &[], br#"{"desc":"w"}"#).status
}

#[test]
fn json_logs_carry_the_same_facts_as_the_plain_lines() {
    let _victim = Sleeper::start();
    let mut d = Daemon::start_json(
        &["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"],
        &[],
    );
    let port = d.port();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"json please"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    let line = d.wait_for(|l| l.contains(r#""event":"fault""#));
    let fault: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(fault["level"], "info");
    assert_eq!(fault["desc"], "json please");
    assert_eq!(fault["trigger"], "http");
    assert_eq!(fault["dry_run"], true);
    assert_eq!(fault["result"], "dry-run");
    assert_eq!(fault["process"]["pid"], answer["pid"]);
    assert_eq!(fault["process"]["name"], answer["name"]);
    assert_eq!(fault["id"], answer["id"]);
    assert_eq!(
        fault["message"],
        format!(
            "(Dryrun) Kill: {}(PID:{} PPID:{}) - json please",
            answer["name"].as_str().unwrap(),
            answer["pid"],
            answer["ppid"]
        )
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    for line in &d.log {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["time"].is_string() && v["level"].is_string() && v["message"].is_string());
    }
}

#[test]
fn rust_log_sets_the_level() {
    let dir = temp_dir("rust-log");
    std::fs::write(dir.join("broken.so"), b"not a library").unwrap();
    let mut d = Daemon::start_json(
        &[
            "--listen",
            "127.0.0.1:0",
            "--plugin-dir",
            dir.to_str().unwrap(),
        ],
        &[("RUST_LOG", "warn")],
    );
    let warning = d.wait_for(|l| l.contains("broken.so"));
    assert!(warning.contains(r#""level":"warn""#), "{warning}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    assert!(
        d.log.iter().all(|l| l.contains(r#""level":"warn""#)),
        "only warnings at RUST_LOG=warn: {:?}",
        d.log
    );
    std::fs::remove_dir_all(dir).unwrap();
}

const SUBCOMMANDS: &[&str] = &[
    "plan",
    "history",
    "pause",
    "resume",
    "sandbox",
    "check-config",
    "kill",
    "plugins check",
    "plugins list",
    "completions",
    "man",
];

#[test]
fn every_subcommand_explains_itself_with_examples() {
    for sub in SUBCOMMANDS {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let run = monkey(&args);
        assert_eq!(run.code, Some(0), "{sub}: {}", run.stderr);
        assert!(
            run.stdout.contains("Examples:"),
            "{sub} --help:\n{}",
            run.stdout
        );
    }
    let top = monkey(&["--help"]);
    assert!(top
        .stdout
        .contains("Exit codes: 0 success, 1 runtime failure"));
}

#[test]
fn version_names_the_revision() {
    let run = monkey(&["--version"]);
    assert_eq!(run.code, Some(0));
    let text = run.stdout.trim();
    // In a git checkout (CI's clone included) it is exactly the commit built.
    let repo = repo_file("");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(&repo)
        .output()
        .ok()
        .filter(|o| o.status.success() && repo.join(".git").is_dir());
    let expected = match head {
        Some(o) => format!("git {}", String::from_utf8_lossy(&o.stdout).trim()),
        None => "not built from a git checkout".to_owned(),
    };
    assert_eq!(
        text,
        format!(
            "nightmare-monkey {} ({expected})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn completions_for_each_shell_and_a_clear_error_for_others() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = monkey(&["completions", shell]);
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        for word in ["nightmare-monkey", "check-config", "min-interval"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let run = monkey(&["completions", "tcsh"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("possible values: bash"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_man_page_in_doc_is_the_one_the_cli_generates() {
    let run = monkey(&["man"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doc/nightmare-monkey.1"),
    )
    .unwrap();
    assert!(
        run.stdout == committed,
        "doc/nightmare-monkey.1 is stale: run `cargo run -- man > doc/nightmare-monkey.1`"
    );
    assert!(committed.contains(".SH SUBCOMMANDS") && committed.contains("check\\-config"));
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping_and_sighup_applies_a_config_that_checks() {
    use std::os::unix::net::UnixDatagram;
    let _victim = Sleeper::start();
    let dir = temp_dir("sd-notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(crate::util::DEADLINE))
        .unwrap();
    // The next notification that is not a watchdog ping.
    let receive = || loop {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification in time");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text != "WATCHDOG=1" {
            return text;
        }
    };
    let config = dir.join("c.ron");
    std::fs::write(&config, r#"(window: (days: "*", time: "00:00-24:00"))"#).unwrap();
    let mut d = Daemon::start_json(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let port = d.port();
    let ready = receive();
    assert!(
        ready.starts_with("READY=1\nSTATUS=Nightmare Monkey is playing"),
        "{ready}"
    );
    // Pings every 100 ms, half the watchdog period.
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    // A configuration with errors: said, and not applied.
    std::fs::write(&config, r#"(window: (days: "Funday"))"#).unwrap();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("not applied"));
    assert!(line.contains(r#""level":"warn""#), "{line}");
    assert!(d.log.iter().any(|l| l.contains("Funday")), "{:?}", d.log);
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(
        http(
            port,
            "POST",
            "/api/faults/stop-one",
            &[],
            br#"{"desc":"x"}"#
        )
        .status,
        404
    );

    // One that checks out: a restart in place (same PID, same pipe) that applies it,
    // with the kill switch still on if it was.
    assert_eq!(http(port, "POST", "/api/pause", &[], b"").status, 200);
    std::fs::write(
        &config,
        r#"(window: (days: "*", time: "00:00-24:00"), faults: {"stop-one": (plugin: "process-pause", config: (duration: "1s"))})"#,
    )
    .unwrap();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("restarting with it"));
    assert!(
        line.contains("the configuration checks out (2 faults)"),
        "{line}"
    );
    assert_eq!(
        receive(),
        "RELOADING=1\nSTATUS=restarting with the new configuration"
    );
    d.wait_for(|l| l.contains("goes to bed (SIGHUP: restarting with the new configuration)"));
    let port = d.port();
    assert!(receive().starts_with("READY=1\n"));
    assert!(d
        .log
        .iter()
        .any(|l| l.contains("Paused, as before the SIGHUP restart")));
    let fire = || {
        http(
            port,
            "POST",
            "/api/faults/stop-one",
            &[],
            br#"{"desc":"new"}"#,
        )
    };
    let a = fire();
    assert_eq!(a.status, 503, "still paused: {}", a.body);
    assert_eq!(http(port, "POST", "/api/resume", &[], b"").status, 200);
    let a = fire();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["fault"], "stop-one");

    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    assert_eq!(receive(), "STOPPING=1");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `Key=value` settings of a unit file (comments and sections dropped), in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("Key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/systemd/nightmare-monkey.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings = unit_settings(&text);
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} is missing"))
    };
    assert_eq!(get("Type"), "notify");
    assert!(get("WatchdogSec").ends_with('s'));
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("CapabilityBoundingSet"), "CAP_KILL");
    assert_eq!(get("AmbientCapabilities"), "CAP_KILL");
    assert_eq!(get("StateDirectory"), "nightmare-monkey");
    assert_eq!(get("ConfigurationDirectory"), "nightmare-monkey");
    assert_eq!(get("ProtectSystem"), "strict");
    assert!(
        !settings.iter().any(|(k, _)| k == "ProtectProc"),
        "the monkey must see every process"
    );
    let exec = get("ExecStart");
    assert_eq!(
        exec,
        "/usr/bin/nightmare-monkey --config /etc/nightmare-monkey/config.ron"
    );
    // systemd itself agrees, where it is installed (with our binary in ExecStart).
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if analyze.is_ok_and(|o| o.status.success()) {
        let dir = temp_dir("unit");
        let unit = dir.join("nightmare-monkey.service");
        std::fs::write(
            &unit,
            text.replace(
                "/usr/bin/nightmare-monkey",
                crate::util::bin().to_str().unwrap(),
            ),
        )
        .unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn webhooks_hear_of_each_fault_after_their_delay_and_retry_failures() {
    use crate::util::{FakeServer, Reply};
    let _victim = Sleeper::start();
    let chat = FakeServer::start(vec![Reply::body(200, "ok")]);
    // The generic hook fails once, then takes it.
    let audit = FakeServer::start(vec![Reply::body(500, "down"), Reply::body(200, "{}")]);
    let dir = temp_dir("webhooks");
    let url_file = dir.join("slack-url");
    std::fs::write(&url_file, format!("{}/services/T0/B0/secret\n", chat.url())).unwrap();
    let config = dir.join("c.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    notifiers: {{
        "chat": Slack(url_file: "{}", delay: "300ms"),
        "audit": Json(url: "{}/hooks/monkey", headers: {{"X-Team": "sre"}}, token: "t0k"),
    }},
)"#,
            url_file.display(),
            audit.url()
        ),
    )
    .unwrap();
    let check = monkey(&["check-config", config.to_str().unwrap()]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(
        check.stdout.contains(&format!(
            "  notifier chat: a Slack message to {} 300ms after each fault\n",
            chat.url()
        )) && check.stdout.contains(&format!(
            "  notifier audit: the outcome as JSON to {} right after each fault\n",
            audit.url()
        )),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("secret"), "{}", check.stdout);
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let port = d.port();
    let fired = std::time::Instant::now();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"guess who"}"#);
    // The answer does not wait for any hook.
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(fired.elapsed() < std::time::Duration::from_millis(300));
    let answer = answer.json();

    let slack = &chat.wait_requests(1)[0];
    assert!(
        slack.at.duration_since(fired) >= std::time::Duration::from_millis(300),
        "the delay holds the answer back"
    );
    assert_eq!(
        (slack.method.as_str(), slack.path.as_str()),
        ("POST", "/services/T0/B0/secret")
    );
    assert_eq!(slack.header("content-type"), Some("application/json"));
    let text: serde_json::Value = serde_json::from_str(&slack.body).unwrap();
    assert_eq!(
        text["text"],
        format!(
            "Nightmare Monkey: (Dryrun) Kill: {}(PID:{} PPID:{}) - guess who\n{}",
            answer["name"].as_str().unwrap(),
            answer["pid"],
            answer["ppid"],
            d.wait_for(|l| l.starts_with("dry-run: "))
        )
    );

    let seen = audit.wait_requests(2);
    assert_eq!(seen[1].path, "/hooks/monkey");
    assert_eq!(seen[1].header("x-team"), Some("sre"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer t0k"));
    let outcome: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(outcome["id"], answer["id"]);
    assert_eq!(outcome["pid"], answer["pid"]);
    assert_eq!(outcome["desc"], "guess who");
    assert!(seen[1].at.duration_since(seen[0].at) >= std::time::Duration::from_secs(1));
    let retry = d.wait_for(|l| l.contains("notifier audit") && l.contains("retrying"));
    // The first retry waits a second stretched by a jitter of up to half (so a fleet's
    // monkeys do not retry in lockstep): `1s`, or `1s 234ms`.
    let (head, wait) = retry.split_once("; retrying in ").expect(&retry);
    assert!(
        head.starts_with("warning: notifier audit: fault ")
            && head.ends_with(": the hook answered 500 Internal Server Error"),
        "{retry}"
    );
    let extra_ms = match wait.strip_prefix("1s") {
        Some("") => 0,
        Some(ms) => ms
            .strip_prefix(' ')
            .and_then(|ms| ms.strip_suffix("ms"))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(u64::MAX),
        None => u64::MAX,
    };
    assert!(extra_ms < 500, "a wait in [1s, 1.5s): {retry}");
    let sent = |who: &str, l: &str| {
        l.starts_with(&format!("notifier {who}: fault ")) && l.ends_with(" sent")
    };
    d.wait_for(|l| sent("audit", l));
    if !d.log.iter().any(|l| sent("chat", l)) {
        d.wait_for(|l| sent("chat", l));
    }
    assert!(
        !d.log.iter().any(|l| l.contains("secret")),
        "the Slack URL is a secret and never logged"
    );
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    assert_eq!(
        s[r#"nightmare_monkey_notifications_total{notifier="audit",result="sent"}"#],
        1.0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_hook_that_never_answers_is_given_up_on_and_the_fault_is_not_held_up() {
    let _victim = Sleeper::start();
    // A port nobody listens on: bound, read, released.
    let port_gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("webhook-down");
    let (mut d, port) = daemon_with(
        &dir,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), notifiers: {{"gone": Json(url: "http://127.0.0.1:{port_gone}/", retries: 0)}})"#
        ),
    );
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"x"}"#).status,
        200
    );
    let line = d.wait_for(|l| l.contains("notifier gone"));
    assert!(
        line.contains("POST failed: cannot connect") && line.ends_with("gave up after 1 attempt"),
        "{line}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Checks a configuration as the daemon would; panics with its errors.
fn assert_checks(config_text: &str, dir: &std::path::Path, what: &str) {
    let file = dir.join(format!("{what}.ron"));
    std::fs::write(&file, config_text).unwrap();
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
}

#[test]
fn one_seed_and_the_node_name_replay_each_node_of_a_fleet() {
    let plan = |node: Option<&str>| {
        let mut args = vec![
            "plan",
            "--seed",
            "42",
            "--count",
            "3",
            "-d",
            "*",
            "-t",
            "00:00-24:00",
            "--from",
            "2026-12-01T00:00:00Z",
        ];
        if let Some(node) = node {
            args.extend(["--node", node]);
        }
        let run = monkey(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stdout
    };
    assert_eq!(plan(Some("web-1")), plan(Some("web-1")), "a node replays");
    assert_ne!(plan(Some("web-1")), plan(Some("web-2")), "nodes differ");
    assert_ne!(plan(Some("web-1")), plan(None));
    let run = monkey(&["plan", "--node", "not a name"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid node name `not a name`"),
        "{}",
        run.stderr
    );

    // The fault streams too: the same pick on the same node, another on another.
    let _victims: Vec<Sleeper> = (0..8).map(|_| Sleeper::start()).collect();
    let seed_of = |node: &str| {
        let mut d = Daemon::start(&[
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "9",
            "--node",
            node,
            "-d",
            "*",
            "-t",
            "00:00-24:00",
        ]);
        let port = d.port();
        let a = http(port, "POST", "/api/kill", &[], br#"{"desc":"fleet"}"#);
        assert_eq!(a.status, 200, "{}", a.body);
        let line = d.log.iter().find(|l| l.starts_with("Node: ")).cloned();
        assert_eq!(
            line.as_deref(),
            Some(
                format!(
                    "Node: {node} (every random stream is labelled with it: streams@node/{node})"
                )
                .as_str()
            )
        );
        a.json()["seed"].as_u64().unwrap()
    };
    assert_eq!(seed_of("db-1"), seed_of("db-1"));
    assert_ne!(seed_of("db-1"), seed_of("db-2"));
}

#[test]
fn the_kubernetes_manifests_give_the_daemon_what_it_needs() {
    let text =
        std::fs::read_to_string(repo_file("deploy/kubernetes/nightmare-monkey.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let (config_map, secret, daemon_set, service) = (
        find("ConfigMap"),
        find("Secret"),
        find("DaemonSet"),
        find("Service"),
    );
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "the monkey must see the node's processes"
    );
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--node"), "$(NODE_NAME)");
    let env = &container["env"][0];
    assert_eq!(env["name"], "NODE_NAME");
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let caps = &container["securityContext"]["capabilities"];
    assert_eq!(caps["drop"][0], "ALL");
    assert_eq!(caps["add"][0], "KILL");

    // The config file is where the ConfigMap is mounted, under its key.
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mount_of = |volume: &str| {
        mounts.iter().find(|m| m["name"] == volume).unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let config_path = after("--config");
    assert_eq!(
        volume("config")["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let (dir, key) = config_path.rsplit_once('/').unwrap();
    assert_eq!(dir, mount_of("config"));
    let config = config_map["data"][key]
        .as_str()
        .expect("the config in the ConfigMap");

    // The token file the config names is the Secret's key where it is mounted.
    assert_eq!(
        volume("token")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let token_key = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .next()
        .unwrap();
    let token_path = format!("{}/{}", mount_of("token"), token_key.as_str().unwrap());
    assert!(
        config.contains(&format!("token_file: \"{token_path}\"")),
        "{config}"
    );
    // The Service and the probes reach the port the config listens on.
    assert!(config.contains("listen: \"0.0.0.0:8080\""));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "api");
    assert_eq!(
        service["spec"]["selector"],
        daemon_set["spec"]["selector"]["matchLabels"]
    );
    assert!(config.contains(&format!("state_dir: \"{}\"", mount_of("state"))));

    // And the daemon accepts the config, with a token where the Secret would be.
    let dir = temp_dir("k8s-config");
    let token = dir.join("api-token");
    std::fs::write(&token, "t").unwrap();
    assert_checks(
        &config.replace(&token_path, token.to_str().unwrap()),
        &dir,
        "configmap",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_nomad_job_runs_one_monkey_per_node_with_a_config_that_checks() {
    let text =
        std::fs::read_to_string(repo_file("deploy/nomad/nightmare-monkey.nomad.hcl")).unwrap();
    assert!(text.contains("type        = \"system\""));
    assert!(text.contains("\"--node\", \"${node.unique.name}\""));
    assert!(text.contains("path     = \"/healthz\""));
    // The config template, rendered as Nomad would, checks.
    let start = text.find("<<-EOT\n").unwrap() + "<<-EOT\n".len();
    let end = text.find("EOT\n      }").unwrap();
    let dir = temp_dir("nomad-config");
    std::fs::write(dir.join("api-token"), "t").unwrap();
    let rendered = text[start..end]
        .replace("{{ env \"NOMAD_PORT_api\" }}", "8080")
        .replace("{{ env \"NOMAD_SECRETS_DIR\" }}", dir.to_str().unwrap());
    assert!(!rendered.contains("{{"), "{rendered}");
    assert_checks(&rendered, &dir, "nomad");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failed_polls_are_counted_by_poller() {
    use crate::util::{FakeServer, Reply};
    let server = FakeServer::start(vec![Reply::body(500, "oops")]);
    let dir = temp_dir("metrics-poller");
    let (_d, port) = daemon_with(
        &dir,
        format!(
            r#"(timer: (enabled: false), state_dir: {dir:?}, pollers: {{"likes": Qiita(item_id: "abc", base_url: "{}", period: "15ms", max_backoff: "30ms")}})"#,
            server.url()
        ),
    );
    // A poll is counted before the next one starts: three requests seen, two counted.
    server.wait_requests(3);
    let s = samples(&http(port, "GET", "/metrics", &[], b"").body);
    let errors = s[r#"nightmare_monkey_poller_errors_total{poller="likes"}"#];
    assert!(errors >= 2.0, "{errors}");
    std::fs::remove_dir_all(dir).unwrap();
}
