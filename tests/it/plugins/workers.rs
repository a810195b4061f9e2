//! A plugin file's worker: what a plugin that crashes, hangs, floods, loops or leaves
//! children behind can and cannot do to the daemon.

use super::*;

/// A plugin file runs in a worker process: one that segfaults, aborts, exits or hangs
/// in `inject` fails that fault (502, or 504 past the deadline; journaled), its worker
/// starts afresh, and the daemon goes on answering.
#[test]
fn a_plugin_that_crashes_or_hangs_takes_down_its_worker_not_the_daemon() {
    let dir = TestDir::new("crashes");
    let journal = dir.join("journal.jsonl");
    // The deadline of every call, a fresh worker's load and its faults' building
    // included: after each crash the next call starts one, which took some 400 ms with
    // eight CPU hogs on two cores (against 500 ms). Only the hang is to meet it.
    let (cfg, _) = panicky_daemon(
        &dir,
        r#"plugin_timeout: "3s","#,
        r#""segv": (plugin: "panicky", config: (crash_in_inject: "segv")),
           "abort": (plugin: "panicky", config: (crash_in_inject: "abort")),
           "exit": (plugin: "panicky", config: (crash_in_inject: "exit")),
           "hang": (plugin: "panicky", config: (sleep_ms: 600000)),
           "ok": (plugin: "panicky", config: (sleep_ms: 1)),
           "slow": (plugin: "panicky", config: (sleep_ms: 500)),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let fire = |fault: &str| fire(port, fault);
    for (fault, status, message) in [
        (
            "segv",
            502,
            "segv: its worker was killed by SIGSEGV (the next call starts a fresh one)",
        ),
        ("ok", 200, ""),
        (
            "abort",
            502,
            "abort: its worker was killed by SIGABRT (the next call starts a fresh one)",
        ),
        (
            "exit",
            502,
            "exit: its worker exited with status 3 (the next call starts a fresh one)",
        ),
        ("ok", 200, ""),
        (
            "hang",
            504,
            "hang: no answer from the plugin within 3s; given up (the journal keeps its intent)",
        ),
        ("slow", 200, ""),
    ] {
        let answer = fire(fault);
        assert_eq!(answer.status, status, "{fault}: {}", answer.body);
        if status == 200 {
            let slept = if fault == "slow" { 500 } else { 1 };
            assert_eq!(answer.json()["summary"], format!("slept {slept} ms"));
        } else {
            assert_eq!(answer.json()["message"], message, "{fault}");
        }
    }
    // The call asked right after the hang's 504 went to a fresh worker: it used to go to
    // the hung one, and die with it (502) when that was stopped, 250 ms past the deadline.
    d.wait_for(|l| {
        l == "plugin panicky: a call had no answer within 3s: its worker was stopped, with every call in flight on it"
    });
    assert_eq!(
        crate::util::http(port, "GET", "/healthz", &[], b"").status,
        200
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    let history = monkey(&["history", "--journal", journal.to_str().unwrap(), "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let results: Vec<&str> = parsed["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"]["result"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        results,
        ["failed", "dry-run", "failed", "failed", "dry-run", "failed", "dry-run"],
        "every crash journaled as failed"
    );
}

/// A call that answers after its deadline (504) but before its worker is stopped is
/// still recorded, though a call asked in between went to a fresh worker: the worker
/// past its deadline is retired, not killed, by the next call. A retired worker did not
/// die: five retirements and then six crashes in a row still leave the crash loop's
/// five free restarts untouched (counted as deaths, the last crashes would be refused).
#[test]
fn a_late_answer_is_recorded_though_the_next_call_went_to_a_fresh_worker() {
    let dir = TestDir::new("late-answer");
    let pids = dir.join("pids");
    let (cfg, _) = panicky_daemon(
        &dir,
        r#"plugin_timeout: "1s","#,
        &format!(
            r#""late": (plugin: "panicky", config: (sleep_ms: 1100, pid_file: Some({pids:?}))),
               "ok": (plugin: "panicky", config: (sleep_ms: 1, pid_file: Some({pids:?}))),
               "segv": (plugin: "panicky", config: (crash_in_inject: "segv")),"#
        ),
    );
    let last_two_pids = || -> (u32, u32) {
        let text = std::fs::read_to_string(&pids).unwrap();
        let pids: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
        (pids[pids.len() - 2], pids[pids.len() - 1])
    };
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    assert_eq!(fire(port, "ok").status, 200);
    for round in 0..5 {
        let late = fire(port, "late");
        assert_eq!(late.status, 504, "round {round}: {}", late.body);
        let next = fire(port, "ok");
        assert_eq!(next.status, 200, "round {round}: {}", next.body);
        assert_eq!(next.json()["summary"], "slept 1 ms");
        // The late answer comes 100 ms past the deadline, 150 ms before the worker
        // would be stopped.
        let said = d.wait_for(|l| {
            l.contains("late: the plugin answered after its deadline")
                || l.contains("its worker was stopped")
        });
        assert!(
            said.contains("late: the plugin answered after its deadline"),
            "round {round}: {said}"
        );
        // The retired worker, having answered, is let go without waiting for another
        // call. (Asked after the late answer, the next call rightly found the worker in
        // service: nothing to look at then. Answered while the fresh worker was starting,
        // it is let go by that start already.)
        let (retired, fresh) = last_two_pids();
        if retired != fresh {
            assert!(
                ends_within(retired, std::time::Duration::from_secs(10)),
                "round {round}: retired worker {retired} still runs"
            );
        }
    }
    for crash in 0..6 {
        let answer = fire(port, "segv");
        assert_eq!(answer.status, 502, "{}", answer.body);
        assert_eq!(
            answer.json()["message"],
            "segv: its worker was killed by SIGSEGV (the next call starts a fresh one)",
            "crash {crash}"
        );
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// Whether process `pid` (not this one's child) ends within `within`: its pidfd becomes
/// readable as it ends; one already gone has none.
fn ends_within(pid: u32, within: std::time::Duration) -> bool {
    use rustix::{event, process};
    let Some(pid) = process::Pid::from_raw(pid as i32) else {
        return true;
    };
    let Ok(pidfd) = process::pidfd_open(pid, process::PidfdFlags::empty()) else {
        return true;
    };
    let timeout = event::Timespec::try_from(within).unwrap();
    let mut fds = [event::PollFd::new(&pidfd, event::PollFlags::IN)];
    event::poll(&mut fds, Some(&timeout)).unwrap() == 1
}

/// What a plugin writes on stderr reaches the log escaped: a carriage return or a
/// terminal escape cannot overwrite or colour a line, a bidi override cannot reorder one.
#[test]
fn what_a_plugin_says_on_stderr_is_escaped() {
    let dir = TestDir::new("plugin-says");
    let (cfg, _) = panicky_daemon(
        &dir,
        "",
        r#""say": (plugin: "panicky", config: (sleep_ms: 1, say: "x\r2026/12/06 12:00:00 Kill: sshd(PID:1 PPID:0)\u{1b}[31m\u{202e}")),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    assert_eq!(fire(port, "say").status, 200);
    let said = d.wait_for(|l| l.starts_with("plugin panicky: x"));
    assert_eq!(
        said,
        "plugin panicky: x\\r2026/12/06 12:00:00 Kill: sshd(PID:1 PPID:0)\\u{1b}[31m\\u{202e}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// A plugin that crashes at every call gets a few fresh workers at once, then one after
/// a doubling wait: a burst of 30 calls starts a handful of workers, not 30 (it used to
/// start 100 in 0.6 s), and the calls in between are refused at once, saying why.
#[test]
fn a_plugin_in_a_crash_loop_gets_fresh_workers_slower_and_slower() {
    let dir = TestDir::new("crash-loop");
    let (cfg, _) = panicky_daemon(
        &dir,
        "",
        r#""segv": (plugin: "panicky", config: (crash_in_inject: "segv")),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let messages: Vec<String> = (0..30)
        .map(|_| {
            let answer = fire(port, "segv");
            assert_eq!(answer.status, 502, "{}", answer.body);
            answer.json()["message"].as_str().unwrap().to_owned()
        })
        .collect();
    let crashed = messages
        .iter()
        .filter(|m| {
            m.ends_with("its worker was killed by SIGSEGV (the next call starts a fresh one)")
        })
        .count();
    let waited: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("segv: its worker died "))
        .collect();
    assert_eq!(crashed + waited.len(), 30, "{messages:#?}");
    // Five fresh workers at once (six crashes with the first), then 100 ms, 200 ms...
    assert!(
        messages[..6].iter().all(|m| m.contains("SIGSEGV")),
        "{messages:#?}"
    );
    assert!(
        waited.len() >= 10,
        "{crashed} workers crashed: {messages:#?}"
    );
    // Six deaths at least (more if a wait had passed already on a busy machine).
    let deaths: u32 = waited[0]
        .strip_prefix("segv: its worker died ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", waited[0]));
    assert!(deaths >= 6, "{}", waited[0]);
    assert!(
        waited[0].contains(
            " times in a row, each within 10s of its start; the next fresh one starts in "
        ),
        "{}",
        waited[0]
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// Whatever a plugin writes, or leaves behind, cannot hold or fill the daemon: 200 MB
/// on stdout without a newline costs the daemon a 4 KiB log line, not 200 MB; a plugin
/// that starts a program (which inherits its worker's output) and exits is reported at
/// once, not at the deadline, and the program goes down with the worker's process group.
#[test]
fn what_a_plugin_writes_or_leaves_behind_cannot_hold_or_fill_the_daemon() {
    let dir = TestDir::new("flood");
    let (cfg, _) = panicky_daemon(
        &dir,
        r#"plugin_timeout: "20s","#,
        r#""flood": (plugin: "panicky", config: (flood_bytes: 200000000, sleep_ms: 1)),
           "orphan": (plugin: "panicky", config: (spawn_then_exit: true)),
           "ok": (plugin: "panicky", config: (sleep_ms: 1)),
           "slow": (plugin: "panicky", config: (sleep_ms: 500)),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let fire = |fault: &str| fire(port, fault);
    let flood = fire("flood");
    assert_eq!(flood.status, 200, "{}", flood.body);
    let said = d.wait_for(|l| l.starts_with("plugin panicky: aaaa"));
    assert_eq!(
        said.len(),
        "plugin panicky: ".len() + 4096 + " [cut at 4 KiB]".len()
    );
    assert!(said.ends_with("aaaa [cut at 4 KiB]"));
    let rss_kib: u64 = fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 64 * 1024, "the daemon holds {rss_kib} KiB");

    let started = std::time::Instant::now();
    let orphan = fire("orphan");
    assert_eq!(orphan.status, 502, "{}", orphan.body);
    assert_eq!(
        orphan.json()["message"],
        "orphan: its worker exited with status 3 (the next call starts a fresh one)"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "known when the worker ended, not at the deadline: {:?}",
        started.elapsed()
    );
    // The program it started went down with the worker's process group.
    let until = std::time::Instant::now() + crate::util::DEADLINE;
    while sleepers() > 0 {
        assert!(
            std::time::Instant::now() < until,
            "the plugin's program outlived its worker"
        );
        std::thread::yield_now();
    }
    assert_eq!(fire("ok").status, 200, "a fresh worker");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// Live processes whose command line is `sleep 1000.5` (the fixture's orphan).
fn sleepers() -> usize {
    crate::util::alive_with_cmdline(b"sleep\x001000.5\x00")
}

/// A plugin's child that leaves its worker's process group does not outlive its
/// worker: one that calls setsid() (a session of its own) and one that calls setpgid()
/// (a group of its own, in the daemon's session, which the daemon did not start). The
/// daemon, their subreaper, adopts them when the worker ends, and ends them.
#[test]
fn a_plugins_child_that_leaves_its_group_ends_with_its_worker() {
    let dir = TestDir::new("escaped-child");
    let (cfg, _) = panicky_daemon(
        &dir,
        "",
        r#""session": (plugin: "panicky", config: (setsid_then_exit: true)),
           "group": (plugin: "panicky", config: (setpgid_then_exit: Some("1000.7"))),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    for (fault, sleeper) in [
        ("session", b"sleep\x001000.6\x00"),
        ("group", b"sleep\x001000.7\x00"),
    ] {
        let answer = fire(port, fault);
        assert_eq!(answer.status, 502, "{fault}: {}", answer.body);
        let until = std::time::Instant::now() + crate::util::DEADLINE;
        while crate::util::alive_with_cmdline(sleeper) > 0 {
            assert!(
                std::time::Instant::now() < until,
                "the plugin's child that left its {fault} outlived its worker"
            );
            std::thread::yield_now();
        }
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// A plugin worker is the monkey's own process: no process fault chooses it, even one
/// whose filter matches nothing else (it would kill or stop the plugin under the daemon).
#[test]
fn no_process_fault_chooses_a_plugin_worker() {
    let dir = TestDir::new("plugins-workers");
    let lib = built_lib("libstale_lock.so");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(&format!(
            r#"plugins: [{lib:?}],
    faults: {{
        "lock": (plugin: "stale-lock", config: (path: {lock:?})),
        "kw": (plugin: "process-kill", config: (include_cmdlines: ["__plugin-worker"])),
        "pw": (plugin: "process-pause", config: (include_cmdlines: ["__plugin-worker"])),
    }}"#,
            lock = dir.join("lock")
        ))
        .write();
    let run = in_namespace(&format!(
        r#"{prelude}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
workers() {{ n=0; for f in /proc/[0-9]*/cmdline; do
  [ "$(tr '\0' '\n' < $f 2>/dev/null | sed -n 2p)" = __plugin-worker ] && n=$((n+1)); done; echo $n; }}
echo "workers $(workers)"
curl -s -X POST http://127.0.0.1:$p/api/faults/kw -d '{{"desc":"x"}}'; echo
curl -s -X POST http://127.0.0.1:$p/api/faults/pw -d '{{"desc":"x"}}'; echo
echo "workers $(workers)"
kill -TERM $m; wait $m"#,
        prelude = crate::drill::PRELUDE,
        d = dir.display()
    ));
    let answers = json_lines(&run.stdout);
    assert_eq!(pairs(&run.stdout, "workers"), ["1", "1"], "{}", run.stderr);
    for answer in &answers {
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("no eligible process")),
            "{answer}"
        );
    }
    assert_eq!(answers.len(), 2);
}

/// A worker, and so whatever its plugin starts, has SIGTERM, SIGINT and SIGHUP
/// unblocked: the daemon blocks them in every thread (it reads them from a signalfd),
/// and a child inherits the mask through fork and exec.
#[test]
fn a_worker_starts_with_no_stop_signal_blocked() {
    let dir = TestDir::new("worker-mask");
    let (cfg, _) = panicky_daemon(
        &dir,
        "",
        r#""ok": (plugin: "panicky", config: (sleep_ms: 1)),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let answer = fire(d.port(), "ok");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut masks = Vec::new();
    for task in fs::read_dir(format!("/proc/{}/task", d.pid()))
        .unwrap()
        .flatten()
    {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let cmdline = fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).nth(1) != Some(b"__plugin-worker") {
                continue;
            }
            let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            masks.extend(crate::util::signal_mask(&status, "SigBlk:"));
        }
    }
    assert!(!masks.is_empty(), "no worker found");
    assert!(
        masks.iter().all(|m| m & crate::util::STOP_SIGNALS == 0),
        "a worker blocks stop signals: {masks:x?}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}
