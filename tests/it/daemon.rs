//! The daemon: banner, log lines, timer, window, signals, lifecycle.

use std::time::Instant;

use crate::util::{http, in_namespace, monkey, pairs, Daemon, Drill};

const FAST: &[&str] = &[
    "--min-interval",
    "1",
    "--max-interval",
    "1",
    "-d",
    "*",
    "-t",
    "00:00-24:00",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(extra);
    all
}

#[test]
fn startup_prints_the_original_banner_then_the_first_wait() {
    let mut d = Daemon::start(&args(&["--seed", "42"]));
    d.wait_for(|l| l.starts_with("Next: "));
    let port = d.log[4].rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        d.log,
        [
            "Seed: 42".to_owned(),
            "Nightmare Monkey is playing from 11:00 to 18:00, Mon thru Fri.".to_owned(),
            "Dry run: nothing will be changed (give --execute to inject faults for real)"
                .to_owned(),
            format!(
                "Journal: {}",
                crate::util::state_dir().join("journal.jsonl").display()
            ),
            format!("Listening on http://127.0.0.1:{port}"),
            // The first draw of seed 42's timer stream, in [3600, 21600].
            "Next: 14158 seconds after".to_owned(),
        ]
    );
}

#[test]
fn a_drawn_seed_is_logged_for_replay() {
    let mut d = Daemon::start(&args(&[]));
    let line = d.wait_for(|l| l.starts_with("Seed: "));
    assert!(
        line.ends_with(")") && line.contains("(drawn; replay this drill with --seed "),
        "{line}"
    );
}

#[test]
fn the_timer_fires_the_original_lines_in_the_window() {
    let mut kid = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let mut d = Daemon::start(&args(&[FAST, &["--seed", "1"]].concat()));
    let line = d.wait_for(|l| l.contains("Kill: "));
    assert!(
        line.starts_with("(Dryrun) Kill: ") && line.ends_with(") - by monkey"),
        "{line}"
    );
    let result = d.wait_for(|_| true);
    assert!(
        result.starts_with("dry-run: would send SIGKILL to "),
        "{result}"
    );
    assert_eq!(d.wait_for(|_| true), "Next: 1 seconds after");
    kid.kill().unwrap();
    kid.wait().unwrap();
}

#[test]
fn outside_the_window_the_monkey_sleeps_with_good_dream() {
    // Every day of the coming week skipped: the window is shut now, whatever the clock.
    let dir = crate::util::TestDir::new("sleep");
    let today = chrono::Local::now().date_naive();
    let dates: Vec<String> = (-1..8)
        .map(|i| format!("\"{}\"", today + chrono::Duration::days(i)))
        .collect();
    let closed = format!(
        r#"(days: "*", time: "00:00-24:00", skip_dates: [{}])"#,
        dates.join(", ")
    );
    let mut d = Drill::new(&dir)
        .named("closed.ron")
        .without("timer")
        .set("schedule", "Uniform(min_interval: 1, max_interval: 1)")
        .set("window", &closed)
        .start(&["--listen", "127.0.0.1:0"]);
    d.wait_for(|l| l == "Next: 1 seconds after");
    d.wait_for(|l| l == "Nightmare Monkey is sleeping with good dream.");
    assert_eq!(d.wait_for(|_| true), "Next: 1 seconds after");
    assert!(!d.log.iter().any(|l| l.contains("Kill:")));
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly_within_a_second() {
    for signal in ["TERM", "INT"] {
        let mut d = Daemon::start(&args(&[]));
        d.port();
        let sent = Instant::now();
        d.signal(signal);
        assert_eq!(d.wait_exit(), Some(0), "{signal}: {:?}", d.log);
        assert!(
            sent.elapsed().as_millis() < 1000,
            "{signal} took {:?}",
            sent.elapsed()
        );
        assert_eq!(
            d.log.last().unwrap(),
            &format!("Nightmare Monkey goes to bed (SIG{signal}).")
        );
    }
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let run = monkey(&["--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.ends_with(&format!(
            "error: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)\n"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let run = monkey(&["--listen", "0.0.0.0:8080"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "error: --listen: refusing to listen on 0.0.0.0:8080 without a token: anyone who reaches it could inject faults. Set http.token or http.token_file in the config (or http.allow_public_without_token: true to accept that), or listen on 127.0.0.1\n"
    );
}

#[test]
fn a_public_address_is_allowed_only_with_a_token_or_an_explicit_opt_out() {
    let dir = crate::util::TestDir::new("public");
    for (name, http) in [
        (
            "token",
            r#"(listen: "0.0.0.0:8080", token: "0123456789abcdef")"#,
        ),
        (
            "opt-out",
            r#"(listen: "0.0.0.0:8080", allow_public_without_token: true)"#,
        ),
    ] {
        let file = dir.join(format!("{name}.ron"));
        std::fs::write(&file, format!("(http: {http})")).unwrap();
        let run = monkey(&["check-config", file.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
    }
}

#[test]
fn the_zone_flag_moves_the_window() {
    let plan = |zone: &str| {
        monkey(&[
            "plan",
            "--seed",
            "1",
            "--count",
            "1",
            "--from",
            "2026-11-23T00:00:00Z",
            "--min-interval",
            "60",
            "--max-interval",
            "60",
            "-d",
            "*",
            "-t",
            "09:00-10:00",
            "--timezone",
            zone,
        ])
        .stdout
    };
    assert_eq!(
        plan("Asia/Tokyo"),
        "2026-11-23T09:01:00+09:00 process-kill\n"
    );
    assert_eq!(plan("UTC"), "2026-11-23T09:00:00+00:00 process-kill\n");
}

#[test]
fn malformed_flags_name_the_flag_and_the_form() {
    let cases: &[(&[&str], &str)] = &[
        (&["-d", "Mon-Fry"], "error: --day: invalid days `Mon-Fry`: `Fry` is not a day: expected a number 0-7 (0 and 7 are Sunday) or a three-letter name (Sun, Mon, Tue, Wed, Thu, Fri, Sat)\n"),
        (&["-t", "9-17"], "error: --time: invalid time `9-17`: expected HH:MM-HH:MM, e.g. 11:00-18:00 (22:00-02:00 wraps midnight; 00:00-24:00 is all day)\n"),
        (&["--min-interval", "10", "--max-interval", "5"], "error: --min-interval/--max-interval: the minimum interval (10 s) is greater than the maximum (5 s)\n"),
        (&["--timezone", "Tokyo"], "error: --timezone: unknown time zone `Tokyo`: expected an IANA name like Asia/Tokyo or Europe/Berlin, or local\n"),
        (&["--config", "/nonexistent.ron"], "error: cannot read config file /nonexistent.ron: No such file or directory (os error 2)\n"),
        (&["--listen", "localhost:x"], "error: --listen: invalid listen address `localhost:x`: expected IP or IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080\n"),
    ];
    for (flags, expected) in cases {
        let run = monkey(flags);
        assert_eq!(run.code, Some(2), "{flags:?}");
        assert_eq!(run.stderr, *expected, "{flags:?}");
    }
}

/// With --execute, only inside a fresh PID namespace: the timer kills the one process the
/// config allows, and the daemon reports it killed.
#[test]
fn executed_timer_faults_kill_in_a_namespace() {
    let run = in_namespace(
        r#"sleep 1000 & started $!; v=$!; echo "victim $v"
cat > cfg.ron <<'CFG'
(schedule: Uniform(min_interval: 1, max_interval: 1), window: (days: "*", time: "00:00-24:00"),
 faults: {"process-kill": (config: (include_cmdlines: ["^sleep 1000$"]))})
CFG
"$NM" --config cfg.ron --execute --seed 9 --listen 127.0.0.1:0 2>log & d=$!
end=$(($(date +%s) + 15)); until grep -q '^.\{20\}killed: ' log; do [ "$(date +%s)" -gt $end ] && break; done
kill -TERM $d; wait $d; echo "code $?"; cat log
echo "state $(cut -d' ' -f3 /proc/$v/stat 2>/dev/null || echo gone)""#,
    );
    let v = pairs(&run.stdout, "victim")[0].clone();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!(" Kill: sleep(PID:{v} PPID:1) - by monkey\n")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!(
        " killed: sent SIGKILL to sleep(PID:{v}), it exited"
    )));
    let state = pairs(&run.stdout, "state")[0].clone();
    assert!(state == "Z" || state == "gone", "victim is {state}");
}

#[test]
fn plan_is_deterministic_and_honours_bounds_and_window() {
    let flags = [
        "plan",
        "--seed",
        "7",
        "--from",
        "2026-11-23T00:00:00Z",
        "--count",
        "200",
        "--min-interval",
        "60",
        "--max-interval",
        "600",
        "-d",
        "1-5",
        "-t",
        "22:00-02:00",
    ];
    let first = monkey(&flags);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(
        first.stdout,
        monkey(&flags).stdout,
        "same inputs, same bytes"
    );
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = first
        .stdout
        .lines()
        .map(|l| {
            let (t, fault) = l.split_once(' ').unwrap();
            assert_eq!(fault, "process-kill");
            chrono::DateTime::parse_from_rfc3339(t).unwrap()
        })
        .collect();
    assert_eq!(times.len(), 200);
    for t in &times {
        use chrono::{Datelike as _, Timelike as _};
        let local = t.with_timezone(&chrono::Local);
        let m = local.hour() * 60 + local.minute();
        assert!(!(120..22 * 60).contains(&m), "{t} outside 22:00-02:00");
        assert!(
            (1..=5).contains(&local.weekday().num_days_from_sunday()),
            "{t} on a weekend"
        );
    }
    let other = monkey(&["plan", "--seed", "8", "--from", "2026-11-23T00:00:00Z"]);
    assert_ne!(
        other.stdout,
        monkey(&["plan", "--seed", "7", "--from", "2026-11-23T00:00:00Z"]).stdout
    );
}

#[test]
fn plan_steps_stay_within_the_interval_bounds() {
    let run = monkey(&[
        "plan",
        "--seed",
        "3",
        "--from",
        "2026-11-23T00:00:00Z",
        "--count",
        "300",
        "--min-interval",
        "5",
        "--max-interval",
        "9",
        "-d",
        "*",
        "-t",
        "00:00-24:00",
    ]);
    let times: Vec<i64> = run
        .stdout
        .lines()
        .map(|l| {
            chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    let steps: std::collections::BTreeSet<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        steps,
        (5..=9).collect(),
        "every wait in [5, 9] and all of them reached"
    );
}

/// A request in flight when SIGTERM arrives is still answered, and the daemon exits 0
/// well within its 800 ms wait for it. The fixture plugin sleeps 200 ms, creating a file
/// when it starts (the rest of that wait is a busy machine's margin).
#[test]
fn sigterm_answers_the_request_in_flight() {
    let dir = crate::util::TestDir::new("inflight");
    let started = dir.join("started");
    let config = crate::drill::panicky_drill(
        &dir,
        "",
        &format!(
            r#""slow": (plugin: "panicky", config: (sleep_ms: 200, started_file: {started:?}))"#
        ),
    );
    let mut d = Daemon::start(&args(&["--config", &config]));
    let port = d.port();
    let request = std::thread::spawn(move || {
        crate::util::http(
            port,
            "POST",
            "/api/faults/slow",
            &[],
            br#"{"desc":"in flight"}"#,
        )
    });
    let until = Instant::now() + crate::util::DEADLINE;
    while !started.exists() {
        assert!(Instant::now() < until, "the injection never started");
        std::thread::yield_now();
    }
    let sent = Instant::now();
    d.signal("TERM");
    let answer = request.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["summary"], "slept 200 ms");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    // Not the whole shutdown's waits (2.5 s): the answer ended the wait for it.
    assert!(
        sent.elapsed().as_millis() < 2000,
        "took {:?}",
        sent.elapsed()
    );
}

/// SIGHUP never waits behind plugins either: with every injection thread held by a
/// plugin that sleeps (and one more request waiting for a place), the configuration is
/// checked on a thread of its own and the daemon restarts in place; the new process
/// (the hung calls ended with the old image) then stops cleanly.
#[test]
fn sighup_restarts_with_every_injection_thread_hung() {
    let dir = crate::util::TestDir::new("sighup-hung");
    let started = dir.join("started");
    let config = crate::drill::panicky_drill(
        &dir,
        "",
        &format!(
            r#""slow": (plugin: "panicky", config: (sleep_ms: 600000, started_file: {started:?}))"#
        ),
    );
    let mut d = Daemon::start(&args(&["--config", &config]));
    let port = d.port();
    // Sent and left hanging: the restart drops these connections, unanswered.
    let hanging: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            use std::io::Write as _;
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let body = r#"{"desc":"hang"}"#;
            write!(
                c,
                "POST /api/faults/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            c
        })
        .collect();
    let until = Instant::now() + crate::util::DEADLINE;
    while std::fs::read_to_string(&started)
        .unwrap_or_default()
        .lines()
        .count()
        < 4
    {
        assert!(Instant::now() < until, "the injections never started");
        std::thread::yield_now();
    }
    d.signal("HUP");
    d.wait_for(|l| l.contains("goes to bed (SIGHUP: restarting with the new configuration)"));
    let port = d.port();
    let healthy = crate::util::http(port, "GET", "/healthz", &[], b"");
    assert_eq!(healthy.status, 200);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    drop(hanging);
}

/// Paused by the pause file, the timer logs that it skips and injects nothing.
#[test]
fn a_paused_timer_skips_its_faults() {
    let dir = crate::util::TestDir::new("paused-timer");
    let pause = dir.join("paused");
    std::fs::write(&pause, "").unwrap();
    let mut d = Drill::new(&dir)
        .named("cfg.ron")
        .without("timer")
        .set("schedule", "Uniform(min_interval: 1, max_interval: 1)")
        .start(&["--listen", "127.0.0.1:0"]);
    let skipped = d.wait_for(|l| l.contains("the timer skips this one"));
    assert_eq!(
        skipped,
        format!(
            "Nightmare Monkey is paused (the pause file {} exists; remove it to resume): the timer skips this one",
            pause.display()
        )
    );
    assert!(!d.log.iter().any(|l| l.contains("Kill:")));
}

/// The soft and hard "Max open files" of a process, from /proc.
fn open_files_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

#[test]
fn the_daemon_raises_its_soft_limit_of_open_files_to_the_hard_one() {
    // prlimit execs the monkey in place: the child's PID is the daemon's.
    let mut child = std::process::Command::new("prlimit")
        .args(["--nofile=256:2048", "--"])
        .arg(crate::util::bin())
        .args(["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"])
        .env("STATE_DIRECTORY", crate::util::state_dir())
        .env_remove("RUST_BACKTRACE")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux)");
    let pid = child.id();
    // Wait for the daemon to say it listens: by then the limit is raised.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let listening = lines.any(|l| l.is_ok_and(|l| l.contains("Listening on http://")));
    let limit = open_files_limit(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the daemon never listened");
    assert_eq!(limit, Some(("2048".to_owned(), "2048".to_owned())));
}

#[test]
fn a_restart_does_not_hand_out_a_fresh_budget() {
    let dir = crate::util::TestDir::new("budget-restart");
    // The journal and the pause file in `dir`: the budget lives in the journal.
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .without("timer")
        .config("budget: (per_hour: 1)")
        .write();
    let start = || {
        let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", &cfg]);
        let port = d.port();
        (d, port)
    };
    let kill = |port| http(port, "POST", "/api/kill", &[], br#"{"desc":"budget"}"#).status;
    let (d, port) = start();
    assert_eq!(kill(port), 200);
    // A crash, not a clean stop: the budget lives on in the journal alone.
    d.signal("KILL");
    drop(d);
    let (_d, port) = start();
    assert_eq!(
        kill(port),
        429,
        "the hour's one fault was spent before the crash"
    );
    // A one-shot kill with the same config honours it too.
    let run = monkey(&["kill", "--config", &cfg, "--seed", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("over budget (at most 1 fault an hour)"),
        "{}",
        run.stderr
    );
}
