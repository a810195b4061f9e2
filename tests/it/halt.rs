//! Halt conditions under a misbehaving probe: one that hangs to its timeout, checks
//! further apart than `after`, a stop during the start's halt check, a halt across a
//! crash. Dry runs, except those that need `--execute` (in a PID namespace).

use std::net::TcpListener;

use crate::{
    drill::PRELUDE,
    util::{http, hung_server, in_namespace, pairs, Daemon, Drill, TestDir},
};

/// A loopback URL where nothing listens (the connection is refused at once).
fn refusing_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// Starts a dry run with these halt conditions, waits for its halt, sees it paused,
/// stops it: the halt's log line.
fn halt_line(dir: &std::path::Path, halt: &str) -> String {
    let mut d = Drill::new(dir)
        .config(&format!("halt: {halt}"))
        .start(&["--seed", "1"]);
    let port = d.port();
    let halted = d.wait_for(|l| l.starts_with("halt: "));
    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(status["state"], "paused", "{status}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    halted
}

/// A probe that hangs to its timeout (longer than `after`) delays no other: the one
/// listed after it, failing fast, halts the monkey (the hung one used to space every
/// check of the list a timeout apart, which started each failing stretch again).
#[test]
fn a_hung_halt_probe_keeps_no_other_from_halting() {
    let dir = TestDir::new("halt-hung-other");
    let ((hung, _), refused) = (hung_server(), refusing_url());
    let halted = halt_line(
        &dir,
        &format!(
            r#"(probes: [Http(url: "{hung}", timeout: "10s"), Http(url: "{refused}", timeout: "10s")], after: "2s", every: "100ms")"#
        ),
    );
    assert!(
        halted.starts_with(&format!("halt: http {refused}: ")),
        "{halted}"
    );
}

/// A probe that hangs to its timeout halts by itself: a check that timed out failed,
/// from the instant it began.
#[test]
fn a_halt_probe_that_hangs_halts() {
    let dir = TestDir::new("halt-hung");
    let (hung, _) = hung_server();
    let halted = halt_line(
        &dir,
        &format!(r#"(probes: [Http(url: "{hung}", timeout: "2s")], after: "1s", every: "100ms")"#),
    );
    assert!(
        halted.starts_with(&format!(
            "halt: http {hung}: GET failed: no answer within 2s (failing for "
        )),
        "{halted}"
    );
}

/// Checked every `after` (or less often), a probe failing at every check halts at the
/// second: the time between two checks does not start its count again (it never
/// halted).
#[test]
fn a_probe_failing_at_every_check_halts_though_checked_every_after() {
    let dir = TestDir::new("halt-every-after");
    let halted = halt_line(
        &dir,
        r#"(probes: [Command(argv: ["false"])], after: "1s", every: "1s")"#,
    );
    assert!(
        halted.starts_with("halt: command false: exited 1 (failing for "),
        "{halted}"
    );
}

/// A SIGTERM while the start of `--execute` checks a halt probe that hangs is answered
/// at once, as a stop during the start's other waits is: the check is dropped (its
/// command ends), nothing starts, exit 0. It used to wait for the probe's timeout, then
/// exit 2 saying the halt condition failed.
#[test]
fn sigterm_during_the_starts_halt_check_stops_at_once() {
    let dir = TestDir::new("halt-start-sigterm");
    let cfg = Drill::new(&dir)
        .config(r#"halt: (probes: [Command(argv: ["sleep", "1000.41"], timeout: "30s")])"#)
        .write();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
end=$(( $(date +%s) + 15 ))
until grep -qx sleep /proc/[0-9]*/comm 2>/dev/null; do
  [ "$(date +%s)" -gt $end ] && {{ echo "the probe never ran" >&2; break; }}; sleep 0.02; done
s=$(date +%s%N); kill -TERM $m; wait $m; echo "code $?"
echo "took $(( ($(date +%s%N) - s) / 1000000 ))"
echo "left $(grep -lx sleep /proc/[0-9]*/comm 2>/dev/null | wc -l)""#,
        d = dir.display()
    ));
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}\n{log}", run.stderr);
    let took: u64 = pairs(&run.stdout, "took")[0].parse().unwrap();
    assert!(took < 10_000, "answered after {took} ms");
    assert!(
        log.contains("Nightmare Monkey goes to bed (SIGTERM, before it started)."),
        "{log}"
    );
    assert!(!log.contains("Listening on"), "nothing started: {log}");
    assert_eq!(
        pairs(&run.stdout, "left"),
        ["0"],
        "the probe's command ended"
    );
}

/// A halt outlives a crash: the next start (its probe passing by then) starts halted,
/// with the same reason, until someone resumes; the resume is journaled, and the start
/// after it plays. It used to play again at once.
#[test]
fn a_halt_outlives_a_crash_until_a_resume() {
    let dir = TestDir::new("halt-crash");
    let sick = dir.join("sick");
    let cfg = Drill::new(&dir)
        .config(&format!(
            r#"halt: (probes: [Command(argv: ["test", "!", "-e", {sick:?}])], after: 0, every: "100ms")"#
        ))
        .write();
    let why = format!(
        "halt: command test ! -e {}: exited 1; POST /api/resume to resume",
        sick.display()
    );
    let mut d = Daemon::start(&["--config", &cfg]);
    d.port();
    std::fs::write(&sick, "").unwrap();
    d.wait_for(|l| l.starts_with("halt: "));
    // Killed once the halt is journaled (the log line comes first).
    let journal = dir.join("journal.jsonl");
    let until = std::time::Instant::now() + crate::util::DEADLINE;
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains(r#""type":"halted""#)
    {
        assert!(std::time::Instant::now() < until, "no halt journaled");
        std::thread::yield_now();
    }
    d.signal("KILL");
    d.wait_exit();
    std::fs::remove_file(&sick).unwrap();
    // A one-shot fault on the journal honours the halt too (it went through before).
    let one_shot = || {
        crate::util::monkey(&[
            "kill", "--config", &cfg, "--seed", "1", "--desc", "one shot",
        ])
    };
    let refused = one_shot();
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert_eq!(
        refused.stderr,
        format!(
            "error: Nightmare Monkey is halted (command test ! -e {}: exited 1, as the journal {} holds): start the daemon on this journal and POST /api/resume to resume\n",
            sick.display(),
            journal.display()
        )
    );

    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(status["state"], "paused", "{status}\n{:?}", d.log);
    assert_eq!(status["paused"], why);
    assert!(
        d.log
            .iter()
            .any(|l| l.starts_with("Halted, as the last run left it (")),
        "{:?}",
        d.log
    );
    assert_eq!(http(port, "POST", "/api/resume", &[], b"").status, 200);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let journal = std::fs::read_to_string(&journal).unwrap();
    let resumed: Vec<_> = crate::util::json_lines(&journal)
        .into_iter()
        .filter(|r| r["type"] == "resumed")
        .collect();
    assert_eq!(resumed.len(), 1, "{journal}");
    assert_eq!(
        resumed[0]["halt"],
        format!("command test ! -e {}: exited 1", sick.display())
    );

    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(status["paused"], serde_json::Value::Null, "{status}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let resumed = one_shot();
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert!(resumed.stdout.contains("(Dryrun) "), "{}", resumed.stdout);
}

/// A `Command` halt probe under way when the daemon stops ends with its whole process
/// group, not its leader alone (the rest of the group used to outlive the daemon). In a
/// PID namespace: what could outlive it dies with the namespace.
#[test]
fn a_command_probe_under_way_at_a_stop_ends_with_its_group() {
    let dir = TestDir::new("halt-probe-group");
    let cfg = Drill::new(&dir)
        .config(r#"halt: (probes: [Command(argv: ["sh", "-c", "sleep 1000.51 & sleep 1000.52 & exec sleep 1000.53"], timeout: "5m")], after: "1h", every: "1s")"#)
        .write();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
count() {{ ps -eo args | grep -c '^sleep 1000\.5[123]$'; }}
"$NM" --config {cfg} 2>{d}/log & m=$!
end=$(( $(date +%s) + 15 ))
until [ "$(count)" -eq 3 ]; do
  [ "$(date +%s)" -gt $end ] && {{ echo "the probe never ran" >&2; break; }}; sleep 0.02; done
kill -TERM $m; wait $m; echo "code $?"
end=$(( $(date +%s) + 10 ))
until [ "$(count)" -eq 0 ] || [ "$(date +%s)" -gt $end ]; do sleep 0.02; done
echo "left $(count)""#,
        d = dir.display()
    ));
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}\n{log}", run.stderr);
    assert_eq!(pairs(&run.stdout, "left"), ["0"], "{}\n{log}", run.stderr);
}
