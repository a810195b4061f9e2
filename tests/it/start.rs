//! The start: stop signals from its first instant (during recovery, during the check of
//! a SIGHUP: a stop wins over a restart under way), and plugin files that hang while
//! they load.

use std::fs;

use crate::{
    drill::{panicky_drill, PRELUDE},
    util::{
        built_lib, http, in_namespace, pairs, signal_mask, trusted_mode, Daemon, Drill, TestDir,
        STOP_SIGNALS,
    },
};

/// A SIGTERM while a start reverts what a crash left (its runtime's handlers do not
/// exist yet) is not the kernel's default (exit 143): the start gives up waiting for
/// the hung revert at once, names it, starts nothing, and exits 1.
#[test]
fn sigterm_during_recovery_abandons_a_hung_revert_and_starts_nothing() {
    let dir = TestDir::new("signals-recovery");
    let cfg = panicky_drill(
        &dir,
        r#"plugin_timeout: "10m","#,
        r#""stuck": (plugin: "panicky", config: (revert_after_ms: 600000, revert_sleep_ms: 600000))"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/stuck '{{"desc":"stuck"}}' >/dev/null
kill -KILL $d; wait $d
"$NM" --config {cfg} --execute 2>{d}/log2 & d=$!
await 'Recovering: ' {d}/log2
kill -TERM $d; wait $d; echo "code $?""#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log2")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["1"], "{}\n{log}", run.stderr);
    assert!(
        log.contains(": SIGTERM came before its plugin answered; abandoned (it may still be in effect; the next start tries again)"),
        "{log}"
    );
    assert!(
        log.contains("Nightmare Monkey goes to bed (SIGTERM, before it started)."),
        "{log}"
    );
    assert!(
        log.contains("(stuck), whose plugin has not answered"),
        "{log}"
    );
    assert!(!log.contains("Listening on"), "nothing started: {log}");
}

/// A SIGTERM right behind a SIGHUP stops the daemon: it does not restart (same PID, a
/// second `Listening on`) and run on. Three times, the signals back to back (one
/// process sends both: a second `kill` command could come after the restart).
#[test]
fn sigterm_during_a_sighup_check_stops_instead_of_restarting() {
    use nix::sys::signal::Signal;
    for _ in 0..3 {
        let mut d = Daemon::start(&["--listen", "127.0.0.1:0"]);
        d.port();
        d.signals_at_once(&[Signal::SIGHUP, Signal::SIGTERM]);
        assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
        let started = d
            .log
            .iter()
            .filter(|l| l.starts_with("Listening on"))
            .count();
        assert_eq!(started, 1, "restarted: {:?}", d.log);
    }
}

/// No thread of the daemon ever takes a stop signal itself: SIGTERM, SIGINT and SIGHUP
/// are blocked in every thread (those the API's faults run on included) and caught by
/// none, before and after a SIGHUP restart, so they wait on the daemon's descriptor.
/// A handler that ran in some other thread in the instant before a restart's exec lost
/// the SIGTERM with the old image: the daemon ran on (seen 2 times in 300 runs of the
/// test above beside a build).
#[test]
fn every_thread_leaves_the_stop_signals_to_the_daemon_before_and_after_a_restart() {
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "-d", "*", "-t", "00:00-24:00"]);
    let port = d.port();
    // A fault, so that the threads faults run on exist too.
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"threads"}"#);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_stops_left_to_the_daemon(d.pid());
    d.signal("HUP");
    d.wait_for(|l| l.starts_with("Nightmare Monkey goes to bed (SIGHUP"));
    let port = d.port();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"threads"}"#);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_stops_left_to_the_daemon(d.pid());
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// The stop signals are blocked as the process begins, before its command line is
/// read; a command other than the daemon then leaves them to the kernel, as a command
/// line tool does: Ctrl-C ends it (here `status`, waiting for a daemon that never
/// answers).
#[test]
fn a_command_other_than_the_daemon_ends_at_ctrl_c() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut client = std::process::Command::new(crate::util::bin())
        .args(["status", "--url", &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _asked = silent.accept().unwrap();
    let status = fs::read_to_string(format!("/proc/{}/status", client.id())).unwrap();
    assert_eq!(
        signal_mask(&status, "SigBlk:").unwrap() & STOP_SIGNALS,
        0,
        "{status}"
    );
    let pid = nix::unistd::Pid::from_raw(client.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(client.wait().unwrap().signal(), Some(2));
}

/// Every thread of `pid` blocks SIGHUP, SIGINT and SIGTERM and has no handler for them.
fn assert_stops_left_to_the_daemon(pid: u32) {
    let mut seen = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // ended meanwhile
        };
        let mask =
            |key| signal_mask(&status, key).unwrap_or_else(|| panic!("no {key} in {status}"));
        let name = status.lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            mask("SigBlk:") & STOP_SIGNALS,
            STOP_SIGNALS,
            "{name} takes stop signals"
        );
        assert_eq!(
            mask("SigCgt:") & STOP_SIGNALS,
            0,
            "{name} has a handler for them"
        );
        seen += 1;
    }
    // The runtime's, the log's, the checkpoint's, the pause file's and a fault's at least.
    assert!(seen >= 5, "only {seen} threads");
}

/// Plugin files load all at once, each load said as it begins, and one still running
/// after a second is said too: the daemon serves meanwhile, and three files that hang
/// while they load cost one `plugin_timeout` (their load's deadline), not three (a victim
/// a crash left stopped waited for all of them, 90 s with the default timeout).
#[test]
fn plugin_files_that_hang_while_loading_are_waited_for_together() {
    let dir = TestDir::new("start-hung-loads");
    let plugins = dir.join("plugins");
    fs::create_dir(&plugins).unwrap();
    trusted_mode(&plugins);
    for n in 1..=3 {
        let file = plugins.join(format!("libhang{n}.so"));
        fs::copy(built_lib("libpanic_plugin.so"), &file).unwrap();
        trusted_mode(&file);
    }
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(plugin_dirs: [{plugins:?}], plugin_timeout: "5s", http: (listen: "127.0.0.1:0"), state_dir: {dir:?})"#
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut d = Daemon::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("PANICKY_HANG_ON_LOAD", "forever")],
    );
    d.port_while_loading();
    d.wait_for(|l| l.starts_with("Plugin files loaded: "));
    let took = started.elapsed();
    let log = d.log.clone();
    let find = |what: &dyn Fn(&str) -> bool| -> Vec<usize> {
        (0..log.len()).filter(|&i| what(&log[i])).collect()
    };
    let begun = find(&|l| l.starts_with("Loading plugin ") && l.ends_with(".so"));
    let slow = find(&|l| {
        l.starts_with("Loading plugin ")
            && l.contains(": no answer yet after 1s; starting without it (its faults are refused until it has loaded, at most 5s from now)")
    });
    let failed = find(&|l| l.contains("no answer from its worker within 5s"));
    let listening = find(&|l| l.starts_with("Listening on "));
    assert_eq!(
        (begun.len(), slow.len(), failed.len(), listening.len()),
        (3, 3, 3, 1),
        "{log:#?}"
    );
    // Every load began before any was said slow, and the API listened before the first
    // was given up on.
    assert!(begun[2] < slow[0], "{log:#?}");
    assert!(listening[0] < failed[0], "{log:#?}");
    // Together: one timeout (5 s), far from three (15 s), whatever else the machine does.
    assert!(took < std::time::Duration::from_secs(14), "{took:?}");
    // SIGHUP's check loads them together too, and says what it waits for.
    d.signal("HUP");
    d.wait_for(|l| l.starts_with("SIGHUP: the configuration checks out"));
    let waited = d
        .log
        .iter()
        .filter(|l| {
            l.starts_with("SIGHUP: Loading plugin ")
                && l.ends_with(": no answer yet after 1s; waiting at most 5s for it")
        })
        .count();
    assert_eq!(waited, 3, "{:#?}", d.log);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    // check-config loads them together too, and says what it waits for.
    let started = std::time::Instant::now();
    let check: crate::util::Run = crate::util::command()
        .args(["check-config", cfg.to_str().unwrap()])
        .env("PANICKY_HANG_ON_LOAD", "forever")
        .output()
        .unwrap()
        .into();
    assert!(started.elapsed() < std::time::Duration::from_secs(14));
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert_eq!(
        check
            .stderr
            .matches(": no answer yet after 1s; waiting at most 5s for it")
            .count(),
        3,
        "{}",
        check.stderr
    );
    assert_eq!(
        check
            .stdout
            .matches("no answer from its worker within 5s")
            .count(),
        3,
        "{}",
        check.stdout
    );
}

/// A plugin file that hangs while it loads holds up neither the recovery of what a
/// built-in did (a victim the crashed run left stopped is continued at once) nor the
/// API and the pause file: the faults of the plugin still loading are refused with a
/// clear answer, `/api/plugins` lists the file as loading, and SIGTERM ends it all.
#[test]
fn a_plugin_file_still_loading_holds_up_neither_recovery_nor_the_api() {
    let dir = TestDir::new("start-loading");
    let cfg = panicky_drill(
        &dir,
        r#"plugin_timeout: "10m","#,
        r#""freeze": (plugin: "process-pause", config: (duration: "10m", include_cmdlines: ["^sleep 1000$"])),
           "stuck": (plugin: "panicky", config: ()),
           "lingering": (plugin: "panicky", config: (revert_after_ms: 600000))"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!; v=$!
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/freeze '{{"desc":"freeze"}}' >/dev/null
post $p /api/faults/lingering '{{"desc":"linger"}}' >/dev/null
echo "frozen $(st $v)"
kill -KILL $d; wait $d
PANICKY_HANG_ON_LOAD=forever "$NM" --config {cfg} --execute 2>{d}/log2 & d=$!
await Listening {d}/log2; p=$(port {d}/log2)
echo "recovered $(st $v)"
echo "stuck $(curl -s -o {d}/stuck -w '%{{http_code}}' -X POST http://127.0.0.1:$p/api/faults/stuck -d '{{"desc":"stuck"}}')"
curl -s http://127.0.0.1:$p/api/plugins > {d}/plugins
curl -s http://127.0.0.1:$p/api/status > {d}/status
echo "paused $(curl -s -o /dev/null -w '%{{http_code}}' -X POST http://127.0.0.1:$p/api/pause)"
kill -TERM $d; wait $d; echo "code $?"
kill -KILL $v"#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log2")).unwrap_or_default();
    let said = |k: &str| pairs(&run.stdout, k);
    assert_eq!(
        [
            said("frozen"),
            said("recovered"),
            said("stuck"),
            said("paused"),
            said("code")
        ],
        [["T"], ["S"], ["503"], ["200"], ["1"]],
        "{}\n{}\n{log}",
        run.stdout,
        run.stderr
    );
    let stuck = fs::read_to_string(dir.join("stuck")).unwrap();
    assert!(
        stuck.contains("fault `stuck` is not ready: its plugin `panicky` is still loading"),
        "{stuck}"
    );
    let plugins: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("plugins")).unwrap()).unwrap();
    assert_eq!(
        plugins["loading"],
        serde_json::json!([crate::util::built_lib("libpanic_plugin.so")]),
        "{plugins}"
    );
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in {log}"))
    };
    assert!(at("Recovering: ") < at("Listening on"), "{log}");
    assert!(!log.contains("Plugin files loaded"), "{log}");
    // What the panicky plugin left in effect waits for its file: listed as reverting
    // meanwhile, and named (exit 1) when the monkey goes to bed without it.
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("status")).unwrap()).unwrap();
    let reverting = status["reverting"].to_string();
    assert!(reverting.contains("lingering"), "{status}");
    assert!(
        log.contains("warning: going to bed without the revert of ")
            && log.contains(" (lingering), which waits for its plugin file to load"),
        "{log}"
    );
}

/// What a file's plugin left active when the last run crashed is reverted as soon as
/// that file has loaded, also when it loads after the daemon has started serving.
#[test]
fn a_slow_plugin_files_faults_are_recovered_once_it_has_loaded() {
    let dir = TestDir::new("start-slow-recovery");
    let cfg = panicky_drill(
        &dir,
        "",
        r#""lingering": (plugin: "panicky", config: (revert_after_ms: 600000))"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/lingering '{{"desc":"linger"}}' >/dev/null
kill -KILL $d; wait $d
PANICKY_HANG_ON_LOAD=2000 "$NM" --config {cfg} --execute 2>{d}/log2 & d=$!
await 'Revert (recovery)' {d}/log2
kill -TERM $d; wait $d; echo "code $?""#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log2")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}\n{log}", run.stderr);
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in {log}"))
    };
    // Slower than a second: the daemon served first, then reverted.
    at(": no answer yet after 1s; starting without it");
    assert!(
        at("plugin panicky is not loaded yet; reverted once the plugin files have loaded")
            < at("Listening on"),
        "{log}"
    );
    assert!(at("Listening on") < at("Revert (recovery)"), "{log}");
    assert!(
        at("Plugin files loaded: panicky") > at("Listening on"),
        "{log}"
    );
}

/// A stop during a SIGHUP check that waits for a hung plugin file wins at once: the
/// daemon does not wait out the plugin timeout (a minute here) before going to bed.
#[test]
fn sigterm_during_a_sighup_check_that_waits_for_a_plugin_file_stops_at_once() {
    let dir = TestDir::new("start-hup-hung");
    let plugins = dir.join("plugins");
    fs::create_dir(&plugins).unwrap();
    trusted_mode(&plugins);
    let file = plugins.join("libhang.so");
    fs::copy(built_lib("libpanic_plugin.so"), &file).unwrap();
    trusted_mode(&file);
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(plugin_dirs: [{plugins:?}], plugin_timeout: "60s", http: (listen: "127.0.0.1:0"), state_dir: {dir:?})"#
        ),
    )
    .unwrap();
    let mut d = Daemon::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("PANICKY_HANG_ON_LOAD", "forever")],
    );
    d.port_while_loading();
    d.signal("HUP");
    d.wait_for(|l| l.starts_with("SIGHUP: Loading plugin ") && l.contains("no answer yet"));
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    assert!(
        d.log
            .iter()
            .any(|l| l == "SIGTERM during the SIGHUP check: stopping instead"),
        "{:?}",
        d.log
    );
    assert!(
        !d.log.iter().any(|l| l.contains("checks out")),
        "{:?}",
        d.log
    );
}

/// A start refused for an error of its own (a bad value) lists the plugin files' errors
/// too, so it waits for them; a stop meanwhile ends that wait at once, naming the files
/// not waited for, instead of holding the exit for a plugin timeout.
#[test]
fn sigterm_while_a_refused_start_waits_for_a_hung_plugin_file_stops_at_once() {
    let dir = TestDir::new("start-refused-hung");
    let lib = dir.join("libhang.so");
    fs::copy(built_lib("libpanic_plugin.so"), &lib).unwrap();
    trusted_mode(&lib);
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(plugins: [{lib:?}], plugin_timeout: "60s", http: (listen: "127.0.0.1:0"), state_dir: {dir:?},
               faults: {{"freeze": (plugin: "process-pause", config: (duration: "zz"))}})"#
        ),
    )
    .unwrap();
    // Its own child, by PID; the start is refused before anything is injected.
    let run: crate::util::Run = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"{PRELUDE}
PANICKY_HANG_ON_LOAD=forever "{nm}" --config {cfg} 2>{d}/log & m=$!
await 'Loading plugin .*libhang.so$' {d}/log
kill -TERM $m; wait $m; echo "code $?""#,
            nm = crate::util::bin().display(),
            cfg = cfg.display(),
            d = dir.display()
        ))
        .env("STATE_DIRECTORY", &dir)
        .output()
        .unwrap()
        .into();
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["2"], "{}\n{log}", run.stderr);
    assert!(
        log.contains("fault `freeze` (process-pause): invalid config"),
        "{log}"
    );
    assert!(
        log.contains("libhang.so: SIGTERM came before it loaded; not waited for"),
        "{log}"
    );
}

/// A plugin file that loads at once is not held up by one that hangs: its faults answer
/// while the other file still loads, and what a crash left of it is reverted then.
#[test]
fn a_fast_plugin_file_is_not_held_up_by_a_slow_one() {
    let dir = TestDir::new("start-fast-slow");
    let cfg = Drill::new(&dir)
        .named("cfg.ron")
        .config(&format!(
            r#"plugin_timeout: "10m",
    plugins: [{fast:?}, {slow:?}],
    faults: {{"roll": (plugin: "old-timer"), "stuck": (plugin: "panicky", config: ())}}"#,
            fast = built_lib("libcompat_plugin.so"),
            slow = built_lib("libpanic_plugin.so"),
        ))
        .write();
    let mut d = Daemon::start_with_env(&["--config", &cfg], &[("PANICKY_HANG_ON_LOAD", "forever")]);
    let port = d.port_while_loading();
    // The fast file's faults are built as it answers, and said ready.
    d.wait_for(|l| {
        l.starts_with("Loaded plugin old-timer from ") && l.ends_with(": its faults are ready")
    });
    let roll = crate::util::http(port, "POST", "/api/faults/roll", &[], br#"{"desc":"r"}"#);
    assert_eq!(roll.status, 200, "{}", roll.body);
    let stuck = crate::util::http(port, "POST", "/api/faults/stuck", &[], br#"{"desc":"s"}"#);
    assert_eq!(stuck.status, 503, "{}", stuck.body);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// What a crashed run left in effect through a plugin no longer loaded stays listed as
/// in effect (reverting, saying what it waits for) and is named, exit 1, when the monkey
/// goes to bed: never dropped from sight while the journal still holds it open.
#[test]
fn a_fault_whose_plugin_is_gone_stays_in_sight_and_is_named_at_exit() {
    let dir = TestDir::new("start-plugin-gone");
    let cfg = Drill::new(&dir).named("c.ron").without("timer").write();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    fs::write(
        dir.join("journal.jsonl"),
        format!(
            r#"{{"type":"intent","id":"1-1","at":"{now}","fault":"lockout","plugin":"gone","trigger":"http","desc":"d","dry_run":false,"master_seed":1,"stream":"fault/lockout","stream_position":0,"seed":2}}
{{"type":"outcome","id":"1-1","at":"{now}","elapsed_ms":1,"result":"applied","summary":"locked","revert":{{"x":1}}}}
"#
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let port = daemon.port();
    let status = crate::util::http(port, "GET", "/api/status", &[], b"").json();
    assert!(
        status["reverting"].to_string().contains("lockout"),
        "{status}\n{:?}",
        daemon.log
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(1), "{:?}", daemon.log);
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("Recovering 1-1: plugin gone is not loaded; revert it by hand: "))
            && daemon.log.iter().any(|l| l
                .starts_with("warning: going to bed without the revert of ")
                && l.contains(" (lockout), which waits for plugin gone to be loaded"))
            && daemon.log.iter().any(|l| l.starts_with(
                "error: stopped with 1 revert not done: what it did may still be in effect"
            )),
        "{:?}",
        daemon.log
    );
}
