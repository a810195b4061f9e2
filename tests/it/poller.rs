//! The poller trigger against a fake Qiita API on loopback: thresholds, catch-up,
//! restarts, bad days, the token, the window.

use std::{fs, path::Path};

use crate::util::{monkey, Daemon, Drill, FakeServer, Reply, Sleeper, TestDir};

/// A config with only this poller (the common header, the API off), its state under
/// `dir`.
fn drill<'a>(dir: &'a Path, poller: &str) -> Drill<'a> {
    Drill::new(dir)
        .named("poller.ron")
        .set("http", "(enabled: false)")
        .config(&format!("pollers: {{\"qiita\": {poller}}}"))
}

/// [`drill`], written: its path.
fn config(dir: &Path, poller: &str) -> String {
    drill(dir, poller).write()
}

/// A Qiita poller on `server`, polling fast. Its timeout is far beyond a poll's few
/// milliseconds: a poll that timed out would have taken its scripted answer with it (the
/// server counts it as given), and every later one would come a step late.
fn qiita(server: &FakeServer, more: &str) -> String {
    qiita_within(server, "10s", more)
}

/// [`qiita`] with this timeout.
fn qiita_within(server: &FakeServer, timeout: &str, more: &str) -> String {
    format!(
        r#"Qiita(item_id: "abc", base_url: "{}", period: "15ms", max_backoff: "60ms", timeout: "{timeout}"{more})"#,
        server.url()
    )
}

/// Runs the daemon until the server has answered `requests` polls, stops it, and returns
/// the likes counts of the faults it fired, in order, with its whole log.
fn run(config: &str, server: &FakeServer, requests: usize) -> (Vec<u64>, Vec<String>) {
    let mut d = Daemon::start(&["--config", config, "--seed", "11"]);
    server.wait_requests(requests);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    let fired = d
        .log
        .iter()
        .filter(|l| l.contains("Kill: "))
        .map(|l| {
            let n = l.split(" - Congraturations you have got ").nth(1).unwrap();
            n.strip_suffix(" like").unwrap().parse().unwrap()
        })
        .collect();
    (fired, d.log.clone())
}

fn state(dir: &Path) -> String {
    fs::read_to_string(dir.join("poller-qiita.json")).unwrap_or_default()
}

#[test]
fn thresholds_and_one_per_poll_catch_up_over_a_scripted_sequence() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-seq");
    let counts = [0, 2, 3, 4, 7, 30, 30, 30, 2, 30, 30, 30, 30, 30, 30, 30];
    let server = FakeServer::start(counts.iter().map(|n| Reply::likes(*n)).collect());
    let (fired, log) = run(
        &config(&dir, &qiita(&server, "")),
        &server,
        counts.len() + 5,
    );
    // 3 at 3, 6 at 7, then one per poll at 30 (9 .. 30), none while it dips to 2.
    assert_eq!(fired, [3, 7, 30, 30, 30, 30, 30, 30, 30, 30], "{log:?}");
    assert_eq!(state(&dir), r#"{"threshold":33}"#);
    let seen = server.wait_requests(1);
    assert_eq!(seen[0].path, "/api/v2/items/abc");
}

#[test]
fn all_at_once_fires_every_passed_threshold_in_one_poll() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-all");
    let server = FakeServer::start(vec![Reply::likes(0), Reply::likes(30), Reply::likes(31)]);
    let poller = qiita(&server, ", catch_up: AllAtOnce");
    let (fired, _) = run(&config(&dir, &poller), &server, 6);
    assert_eq!(fired, [30; 10]);
    assert_eq!(state(&dir), r#"{"threshold":33}"#);
}

#[test]
fn a_falling_count_fires_nothing_and_keeps_the_threshold() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-down");
    let server = FakeServer::start([5, 2, 0, 4, 5].map(Reply::likes).to_vec());
    let (fired, _) = run(&config(&dir, &qiita(&server, "")), &server, 8);
    assert_eq!(fired, [5]);
    assert_eq!(state(&dir), r#"{"threshold":6}"#);
}

#[test]
fn a_restart_neither_repeats_nor_skips() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-restart");
    let first = FakeServer::start(vec![Reply::likes(5)]);
    let (fired, _) = run(&config(&dir, &qiita(&first, "")), &first, 4);
    assert_eq!(fired, [5]);
    assert_eq!(state(&dir), r#"{"threshold":6}"#);
    let second = FakeServer::start(vec![Reply::likes(5), Reply::likes(5), Reply::likes(6)]);
    let (fired, log) = run(&config(&dir, &qiita(&second, "")), &second, 6);
    assert_eq!(fired, [6], "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.ends_with("for /likes_count (next fault at 6)")),
        "{log:?}"
    );
    assert_eq!(state(&dir), r#"{"threshold":9}"#);
}

#[test]
fn a_corrupt_or_unreadable_state_file_stops_the_start() {
    let dir = TestDir::new("poll-corrupt");
    let server = FakeServer::start(vec![Reply::likes(5)]);
    let file = config(&dir, &qiita(&server, ""));
    let state_file = dir.join("poller-qiita.json");
    fs::write(&state_file, "{\"thresh").unwrap();
    let run = monkey(&["--config", &file]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!("error: poller qiita: state file {} is corrupt (EOF while parsing a string at line 1 column 8): fix it or delete it to start counting again\n", state_file.display())
    );
    fs::remove_file(&state_file).unwrap();
    fs::create_dir(&state_file).unwrap();
    let run = monkey(&["--config", &file]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!(
            "error: poller qiita: cannot read state file {}: Is a directory (os error 21)\n",
            state_file.display()
        )
    );
}

#[test]
fn bad_days_are_logged_once_back_off_and_never_fire() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-bad");
    let mut script = vec![
        Reply::body(500, "oops"),
        Reply::body(500, "oops"),
        Reply::body(200, "<html>not json</html>"),
        Reply::body(200, r#"{"id":"abc"}"#),
        Reply::body(200, r#"{"likes_count":"many"}"#),
        Reply::body(429, "{}"),
    ];
    script[5].headers.push(("Retry-After".into(), "1".into()));
    // One answer that comes too late: past a timeout no other poll comes near, even on
    // a busy machine (at 300 ms, a poll slowed by one would take a good answer with it).
    let mut hang = Reply::likes(100);
    hang.delay = std::time::Duration::from_secs(5);
    script.push(hang);
    script.push(Reply::likes(3));
    let server = FakeServer::start(script);
    let url = format!("{}/api/v2/items/abc", server.url());
    let (fired, log) = run(&config(&dir, &qiita_within(&server, "2s", "")), &server, 10);
    let expected = [
        format!("poller qiita: GET {url} answered 500 Internal Server Error; backing off"),
        format!("poller qiita: GET {url}: the answer is not JSON (expected value at line 1 column 1); backing off"),
        format!("poller qiita: GET {url}: the answer has no /likes_count; backing off"),
        format!("poller qiita: GET {url}: /likes_count is \"many\", not a non-negative integer; backing off"),
        format!("poller qiita: GET {url} answered 429 Too Many Requests (Retry-After: 1 s); backing off"),
        format!("poller qiita: GET {url} failed: no answer within 2s; backing off"),
        "poller qiita: recovered after 7 failed polls (count 3)".to_owned(),
    ];
    let said: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("poller qiita: "))
        .collect();
    assert_eq!(
        said,
        expected.iter().collect::<Vec<_>>(),
        "each logged once, in order"
    );
    assert_eq!(
        fired,
        [3],
        "nothing fired on a bad day; the good answer after it did"
    );
}

#[test]
fn the_token_and_a_user_agent_are_sent() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-token");
    let server = FakeServer::start(vec![Reply::likes(0)]);
    fs::write(dir.join("token"), "t0ken\n").unwrap();
    let poller = qiita(&server, &format!(", token_file: {:?}", dir.join("token")));
    run(&config(&dir, &poller), &server, 2);
    let seen = server.wait_requests(2);
    assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
    let agent = seen[0].header("user-agent").unwrap();
    assert!(agent.starts_with("nightmare-monkey/0.1.0 "), "{agent}");
}

#[test]
fn outside_the_window_the_fault_waits_and_the_threshold_stays() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("poll-window");
    let today = chrono::Local::now().date_naive();
    let dates: Vec<String> = (-1..8)
        .map(|i| format!("\"{}\"", today + chrono::Duration::days(i)))
        .collect();
    let closed = format!(
        r#"(days: "*", time: "00:00-24:00", skip_dates: [{}])"#,
        dates.join(", ")
    );
    let server = FakeServer::start(vec![Reply::likes(3)]);
    let (fired, log) = run(
        &drill(&dir, &qiita(&server, ""))
            .set("window", &closed)
            .write(),
        &server,
        5,
    );
    assert!(fired.is_empty());
    let refusals: Vec<&String> = log.iter().filter(|l| l.contains("was refused")).collect();
    assert_eq!(
        refusals,
        ["poller qiita: count 3 reached 3 but the fault was refused (Nightmare Monkey is sleeping now); retrying on a later poll"],
        "logged once"
    );
    assert_eq!(state(&dir), "", "the threshold never advanced");
}

#[test]
fn a_refused_fault_is_retried_on_a_later_poll() {
    let dir = TestDir::new("poll-retry");
    let server = FakeServer::start(vec![Reply::likes(3)]);
    let faults = r#"faults: {"process-kill": (config: (include_names: ["^nmtarget$"]))}"#;
    let file = drill(&dir, &qiita(&server, "")).config(faults).write();
    let mut d = Daemon::start(&["--config", &file]);
    // A plugin's failure is said once as a failure, and the poller says it retries.
    d.wait_for(|l| l.starts_with("poller: process-kill: no eligible process"));
    d.wait_for(|l| l.ends_with("but the fault failed (said above); retrying on a later poll"));
    // Now give it something to hit: a copy of sleep whose short name is nmtarget.
    let target = dir.join("nmtarget");
    fs::copy("/bin/sleep", &target).unwrap();
    let _victim = Sleeper::named(&target);
    let line = d.wait_for(|l| l.contains("Kill: "));
    assert!(line.starts_with("(Dryrun) Kill: nmtarget(PID:"), "{line}");
    assert!(line.ends_with(" - Congraturations you have got 3 like"));
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    assert_eq!(
        d.log
            .iter()
            .filter(|l| l.contains("but the fault failed (said above)"))
            .count(),
        1,
        "the poller's own line once"
    );
    assert!(
        !d.log.iter().any(|l| l.contains("was refused")),
        "{:?}",
        d.log
    );
    assert_eq!(state(&dir), r#"{"threshold":6}"#);
}

#[test]
fn poller_config_errors_are_located() {
    let dir = TestDir::new("poll-config");
    let file = dir.join("bad.ron");
    fs::write(
        &file,
        "(pollers: {\n  \"a\": Qiita(step: 0, period: \"often\"),\n  \"b\": Json(url: \"ftp://x\", pointer: \"likes\"),\n  \"c\": Qiita(item_id: \"x\", period: \"10s\"),\n})",
    )
    .unwrap();
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    let f = file.display();
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!(
            "error: {f}:2:14: step must be at least 1
error: {f}:2:23: invalid period `often`: expected a duration like 10m, 30s or 250ms
error: {f}:2:3: poller `a` needs item_id, the article's id (the last part of its URL)
error: {f}:3:29: invalid pointer `likes`: expected a JSON pointer like /likes_count or /data/0/count
error: {f}:3:13: invalid URL `ftp://x`: expected http:// or https://
error: {f}:4:28: a period under 1m would exceed Qiita's 60 requests an hour without a token: give a token or a longer period
"
        )
    );
}
