//! The sandbox: the monkey on the command alone, practice kept apart, plugin files.

use super::*;

/// `sandbox`: the monkey, executing, only reaches what the command started; the sandbox
/// ends with the command and passes its status on; killed at its PID, the monkey goes to
/// bed and the command ends with it. (Run inside a namespace of the test's
/// own as well, so nothing here can reach this machine's processes.)
#[test]
fn the_sandbox_unleashes_the_monkey_on_the_command_alone() {
    let dir = TestDir::new("drill-sandbox");
    let cfg = dir.join("sandbox.ron");
    fs::write(
        &cfg,
        r#"(schedule: Uniform(min_interval: 1, max_interval: 1), window: (days: "*", time: "00:00-24:00"),
            faults: {"process-kill": (config: (include_cmdlines: ["^sleep 1000$"]))})"#,
    )
    .unwrap();
    let disk = dir.join("disk.ron");
    fs::write(
        &disk,
        format!(r#"(faults: {{"disk": (plugin: "disk-fill", config: (path: {dir:?}))}})"#),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#""$NM" sandbox --config {cfg} --seed 4 -- sh -c 'sleep 1000 & wait $!; echo "victim gone $?"; exit 3'
echo "code $?"
"$NM" sandbox --config {disk} -- true
echo "code $?"
{PRELUDE}
"$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 -- sh -c 'sleep 1000 & wait' 2>{d}/term.log & s=$!
await 'Next fault' {d}/term.log
kill -TERM $s; wait $s; echo "killed $?"
n=0; while grep -qx sleep /proc/[0-9]*/comm 2>/dev/null && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
echo "left $(grep -lx sleep /proc/[0-9]*/comm 2>/dev/null | wc -l)""#,
        cfg = cfg.display(),
        disk = disk.display(),
        d = dir.display()
    ));
    let term = fs::read_to_string(dir.join("term.log")).unwrap();
    assert_eq!(pairs(&run.stdout, "killed"), ["0"], "{term}");
    assert!(
        term.contains(" Nightmare Monkey goes to bed (SIGTERM).\n"),
        "the sandbox's PID killed: the monkey goes to bed as on the host: {term}"
    );
    assert!(
        term.contains(" Sandbox: stopped before the command exited; it ends with the sandbox\n"),
        "{term}"
    );
    assert_eq!(
        pairs(&run.stdout, "left"),
        ["0"],
        "the command ends with it: {term}"
    );
    assert_eq!(pairs(&run.stdout, "victim"), ["gone 137"], "{}", run.stderr);
    assert_eq!(
        pairs(&run.stdout, "code"),
        ["3", "2"],
        "the command's status, then a refusal"
    );
    assert!(run.stderr.contains(" Kill: sleep(PID:"), "{}", run.stderr);
    assert!(run
        .stderr
        .contains(" Nightmare Monkey goes to bed (the sandbox's command exited).\n"));
    assert!(run.stderr.contains(
        "error: sandbox: fault `disk` (plugin disk-fill) acts outside the PID namespace; only process faults (process-kill, process-pause) run in the sandbox\n"
    ));
}

/// Practice is kept apart: the sandbox journals into a state directory of its own, even
/// when its config names a journal, so a real daemon's budget and report never count its
/// faults; it joins no fleet. A plugin file's fault runs there only when `--process-plugin` vouches for it
/// (the sandbox cannot tell what a file does); a built-in that acts outside, never.
#[test]
fn the_sandbox_keeps_practice_apart_and_runs_only_process_faults() {
    let dir = TestDir::new("drill-sandbox-apart");
    let lib = crate::util::built_lib("libcompat_plugin.so");
    let cfg = dir.join("practice.ron");
    fs::write(
        &cfg,
        format!(
            r#"(schedule: Uniform(min_interval: 1, max_interval: 1), window: (days: "*", time: "00:00-24:00"),
                journal: {real:?}, plugins: [{lib:?}], faults: {{"roll": (plugin: "old-timer")}},
                notifiers: {{"chat": Json(url: "http://127.0.0.1:9/", retries: 0)}},
                fleet: (coordinator: Etcd(endpoints: ["http://127.0.0.1:9"], prefix: "/nm"), max_concurrent: 1))"#,
            real = dir.join("real.jsonl")
        ),
    )
    .unwrap();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"export STATE_DIRECTORY={d}/state
"$NM" sandbox --config {cfg} -- true 2>{d}/refused.log; echo "refused $?"
"$NM" sandbox --config {cfg} --process-plugin old-timer --process-plugin disk-fill -- true 2>{d}/builtin.log; echo "builtin $?"
"$NM" sandbox --config {cfg} --process-plugin nosuch -- true 2>{d}/unknown.log; echo "unknown $?"
"$NM" sandbox --config {cfg} --process-plugin old-timer --state-dir {d}/state -- true 2>{d}/daemons.log; echo "daemons $?"
"$NM" sandbox --config {cfg} --process-plugin old-timer -- sh -c 'n=0; until grep -q type.:.outcome {d}/state/sandbox/journal.jsonl 2>/dev/null || [ $n -gt 500 ]; do n=$((n+1)); sleep 0.02; done' 2>{d}/ran.log; echo "ran $?""#,
        cfg = cfg.display(),
    ));
    let log = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(pairs(&run.stdout, "refused"), ["2"], "{}", run.stderr);
    assert_eq!(
        log("refused.log"),
        "error: sandbox: fault `roll` (plugin old-timer) comes from a plugin file, which the sandbox runs only if it acts on processes alone: say so with --process-plugin old-timer\n"
    );
    assert_eq!(pairs(&run.stdout, "builtin"), ["2"]);
    assert_eq!(
        log("builtin.log"),
        "error: sandbox: --process-plugin disk-fill: disk-fill is a built-in that acts outside the PID namespace; only process faults (process-kill, process-pause) and plugin files run in the sandbox\n"
    );
    assert_eq!(pairs(&run.stdout, "unknown"), ["2"]);
    assert_eq!(
        log("unknown.log"),
        "error: sandbox: --process-plugin nosuch: no configured fault uses a plugin of that name (the faults use: old-timer)\n"
    );
    assert_eq!(pairs(&run.stdout, "daemons"), ["2"]);
    assert!(
        log("daemons.log").starts_with(&format!(
            "error: sandbox: --state-dir {d}/state: that is a daemon's state directory"
        )),
        "{}",
        log("daemons.log")
    );
    let ran = log("ran.log");
    assert!(
        ran.contains(" Sandbox: the 1 configured notifier stays quiet: practice tells no one\n"),
        "{ran}"
    );
    // Nor takes a fleet's slot: with its coordinator out of reach, a fleet's member
    // would refuse every fault.
    assert!(
        ran.contains(
            " Sandbox: the config's fleet is left out: practice takes none of its slots\n"
        ),
        "{ran}"
    );
    assert_eq!(pairs(&run.stdout, "ran"), ["0"], "{ran}");
    let journal = format!("{d}/state/sandbox/journal.jsonl");
    assert!(
        ran.contains(&format!(
            " Sandbox: its journal is apart from any daemon's (report --journal {journal})\n"
        )),
        "{ran}"
    );
    assert!(ran.contains(&format!(" Journal: {journal}\n")), "{ran}");
    let practiced = fs::read_to_string(&journal).unwrap();
    assert!(practiced.contains(r#""fault":"roll""#), "{ran}");
    assert!(
        practiced.contains(r#""type":"outcome""#),
        "{practiced}\n{ran}"
    );
    assert!(
        !dir.join("real.jsonl").exists() && !dir.join("state/journal.jsonl").exists(),
        "neither the config's journal nor the daemon's default one: {ran}"
    );
}

/// An ordinary user's sandbox loads a plugin file that passes the trust checks: they are
/// made outside the namespace, as that user (inside, root's files show as owned by
/// nobody, and every check there refused every file).
#[test]
fn an_ordinary_users_sandbox_loads_a_trusted_plugin_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TestDir::new("drill-sandbox-user");
    let d = dir.display();
    // The binary where the user may run it (a checkout may sit in root's home).
    let nm = dir.join("nightmare-monkey");
    fs::copy(crate::util::bin(), &nm).unwrap();
    crate::util::trusted_mode(&nm);
    let state = dir.join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    let lib = crate::util::built_lib("libcompat_plugin.so");
    let cfg = dir.join("practice.ron");
    fs::write(
        &cfg,
        format!(
            r#"(schedule: Uniform(min_interval: 1, max_interval: 1), window: (days: "*", time: "00:00-24:00"),
                plugins: [{lib:?}], faults: {{"roll": (plugin: "old-timer")}})"#
        ),
    )
    .unwrap();
    let run: crate::util::Run = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&nm)
        .args(["sandbox", "--config", cfg.to_str().unwrap()])
        .args(["--process-plugin", "old-timer", "--", "sh", "-c"])
        .arg(format!(
            "n=0; until grep -q type.:.outcome {d}/state/sandbox/journal.jsonl 2>/dev/null || [ $n -gt 500 ]; do n=$((n+1)); sleep 0.02; done"
        ))
        .env("STATE_DIRECTORY", &state)
        .output()
        .expect("setpriv runs (util-linux)")
        .into();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("not trusted"), "{}", run.stderr);
    let journal = fs::read_to_string(state.join("sandbox/journal.jsonl")).unwrap();
    assert!(journal.contains(r#""fault":"roll""#), "{journal}");
}

/// The monkey, PID 1 of the sandbox, blocks SIGTERM, SIGINT and SIGHUP in every thread
/// (a PID 1 drops a signal it neither catches nor blocks; the monkey reads them from a
/// signalfd), and the command it starts has none of them blocked: a blocked mask is
/// inherited through fork and exec, and the command could no longer be stopped by them.
/// Both are read from outside the sandbox (a shell's own mask changes while it waits).
#[test]
fn the_sandboxs_command_starts_with_no_stop_signal_blocked() {
    let dir = TestDir::new("sandbox-masks");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 -- sleep 1000 2>{d}/log & s=$!
await 'Next fault' {d}/log
for p in /proc/[0-9]*; do
  awk -v p=$p '/^Name/ {{n=$2}} /^NSpid/ {{l=$NF}} /^SigBlk/ {{b=$2}}
    END {{if (n == "sleep") print "command", b; if (n ~ /^nightmare/ && l == 1) print "init", p}}' $p/status 2>/dev/null
done > {d}/found
cat {d}/found
for t in $(sed -n 's/^init //p' {d}/found)/task/*; do awk '/^SigBlk/ {{print "thread", $2}}' $t/status; done
kill -TERM $s; wait $s; echo "killed $?""#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "killed"), ["0"], "{}\n{log}", run.stderr);
    let stops = crate::util::STOP_SIGNALS;
    let masks = |key: &str| -> Vec<u64> {
        pairs(&run.stdout, key)
            .iter()
            .map(|hex| u64::from_str_radix(hex, 16).unwrap())
            .collect()
    };
    let command = masks("command");
    assert_eq!(command.len(), 1, "{}", run.stdout);
    assert_eq!(
        command[0] & stops,
        0,
        "the command blocks stop signals: {}",
        run.stdout
    );
    let threads = masks("thread");
    assert!(threads.len() >= 3, "the monkey's threads: {}", run.stdout);
    assert!(
        threads.iter().all(|m| m & stops == stops),
        "a thread of the monkey takes stop signals: {}",
        run.stdout
    );
}

/// Shell helpers for the sandbox's own stops: `ended PID` waits (10 s at most) until the
/// sandbox at PID has exited, then kills it if it has not, and prints its status as
/// `status TAG CODE`; `left TAG` waits (10 s at most) until nothing the sandbox started
/// runs (`unshare`, the monkey, the command's `sleep`), and prints how many do.
const STOP_PRELUDE: &str = r#"
# Exited: a zombie, or reaped already (the shell reaps its jobs as they end).
over() { case "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" in Z|'') true;; *) false;; esac; }
ended() { end=$(( $(date +%s) + 10 ))
  until over $1 || [ "$(date +%s)" -gt $end ]; do sleep 0.02; done
  over $1 || kill -KILL $1; wait $1; echo "status $2 $?"; }
running() { grep -lxE 'sleep|unshare|nightmare-monke' /proc/[0-9]*/comm 2>/dev/null | wc -l; }
left() { end=$(( $(date +%s) + 10 ))
  until [ "$(running)" = 0 ] || [ "$(date +%s)" -gt $end ]; do sleep 0.02; done; echo "left $1 $(running)"; }
"#;

/// Killed at its PID by any signal that ends a plain command, the sandbox leaves nothing
/// running: SIGINT (as `timeout -s INT` sends it, not from a terminal) is handed on to the
/// monkey, SIGHUP and SIGUSR1 stop it as SIGTERM does, and the monkey goes to bed; a
/// SIGKILL, which nothing can catch, takes `unshare`, the monkey and the command with it.
#[test]
fn the_sandbox_killed_by_any_signal_leaves_nothing_running() {
    let dir = TestDir::new("drill-sandbox-signals");
    let run = in_namespace(&format!(
        r#"{PRELUDE}{STOP_PRELUDE}
for sig in INT HUP USR1 KILL; do
  "$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 --state-dir {d}/$sig -- sleep 1000 2>{d}/$sig.log & s=$!
  await 'Next fault' {d}/$sig.log
  kill -$sig $s; ended $s $sig; left $sig
done"#,
        d = dir.display()
    ));
    let log = |sig: &str| fs::read_to_string(dir.join(format!("{sig}.log"))).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "status"),
        ["INT 0", "HUP 0", "USR1 0", "KILL 137"],
        "{}\n{}\n{}\n{}",
        run.stderr,
        log("INT"),
        log("HUP"),
        log("USR1")
    );
    for (sig, bed) in [
        ("INT", Some("SIGINT")),
        ("HUP", Some("SIGTERM")),
        ("USR1", Some("SIGTERM")),
        ("KILL", None),
    ] {
        assert_eq!(
            pairs(&run.stdout, "left")
                .iter()
                .find(|l| l.starts_with(&format!("{sig} ")))
                .map(String::as_str),
            Some(format!("{sig} 0").as_str()),
            "SIG{sig} to the sandbox leaves what it started running: {}",
            log(sig)
        );
        if let Some(bed) = bed {
            assert!(
                log(sig).contains(&format!(" Nightmare Monkey goes to bed ({bed}).\n")),
                "SIG{sig}: {}",
                log(sig)
            );
        }
    }
}

/// A SIGTERM at the sandbox's PID in the first moments of its start is never lost: one
/// that comes before its handlers waits for them, and one that comes before the monkey
/// can take it (no PID 1 in the namespace yet, or one that would drop it) is sent again
/// until it can. Sent at once, or a few milliseconds after the start, over many runs,
/// the sandbox ends each time, with nothing it started left running: stopped (0), or
/// killed by the signal itself before it had begun (143).
#[test]
fn a_stop_as_the_sandbox_starts_is_never_lost() {
    let dir = TestDir::new("drill-sandbox-early-stop");
    let run = in_namespace(&format!(
        r#"{STOP_PRELUDE}
for i in $(seq 1 24); do
  "$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 --state-dir {d}/$i -- sleep 1000 2>{d}/$i.log & s=$!
  # Spread over the start's first milliseconds (not a wait for anything).
  [ $((i % 4)) = 0 ] || sleep 0.00$((i % 4))
  kill -TERM $s; ended $s $i; left $i
done"#,
        d = dir.display()
    ));
    let statuses = pairs(&run.stdout, "status");
    assert_eq!(statuses.len(), 24, "{}", run.stderr);
    for status in statuses {
        let (i, code) = status.split_once(' ').unwrap();
        let log = fs::read_to_string(dir.join(format!("{i}.log"))).unwrap_or_default();
        assert!(
            code == "0" || code == "143",
            "run {i}: the SIGTERM was lost (status {code}): {log}"
        );
    }
    assert!(
        pairs(&run.stdout, "left").iter().all(|l| l.ends_with(" 0")),
        "{}",
        run.stdout
    );
}

/// The sandbox shares the host's network: the config's proxies are left out, said in one
/// line, rather than listening on the host's port and forwarding to the real upstream
/// (the net-proxy fault, their one use, is refused there anyway). (In a network
/// namespace of the test's own, so that the old behaviour took no port of this
/// machine's.)
#[test]
fn the_sandbox_leaves_the_configs_proxies_out() {
    let dir = TestDir::new("drill-sandbox-proxies");
    let cfg = dir.join("proxied.ron");
    fs::write(
        &cfg,
        r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false),
            proxies: {"db": (listen: "127.0.0.1:15432", upstream: "127.0.0.1:5432")},
            faults: {"process-kill": (config: (include_names: ["^sleep$"]))})"#,
    )
    .unwrap();
    let run = crate::util::in_network_namespace(
        &[],
        &format!(
            r#""$NM" sandbox --config {cfg} --state-dir {d}/state -- true 2>{d}/log; echo "code $?""#,
            cfg = cfg.display(),
            d = dir.display()
        ),
    );
    let log = fs::read_to_string(dir.join("log")).unwrap();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    assert!(
        log.contains(
            " Sandbox: the config's proxies are left out (db): practice listens on none of the host's ports\n"
        ),
        "{log}"
    );
    assert!(!log.contains("Proxy db"), "{log}");
}

/// A `--state-dir` that leads back into a daemon's state directory through `..` is
/// refused as the directory itself is, whether the part before the `..` exists or not
/// (the sandbox would create it, and journal into the daemon's directory).
#[test]
fn a_state_dir_that_leads_back_into_a_daemons_is_refused() {
    let dir = TestDir::new("drill-sandbox-dotdot");
    let d = dir.display();
    fs::create_dir(dir.join("elsewhere")).unwrap();
    let run = in_namespace(&format!(
        r#"export STATE_DIRECTORY={d}/state
for at in state/new/.. elsewhere/../state new/../state state/.; do
  "$NM" sandbox --min-interval 1 --max-interval 1 -d '*' -t 00:00-24:00 --state-dir {d}/$at -- true 2>{d}/log; echo "code $at $?"
  echo "said $at $(head -n 1 {d}/log)"
done"#
    ));
    let places = [
        "state/new/..",
        "elsewhere/../state",
        "new/../state",
        "state/.",
    ];
    assert_eq!(
        pairs(&run.stdout, "code"),
        places.map(|p| format!("{p} 2")),
        "{}",
        run.stdout
    );
    for (said, place) in pairs(&run.stdout, "said").iter().zip(places) {
        assert!(
            said.starts_with(&format!(
                "{place} error: sandbox: --state-dir {d}/{place}: that is a daemon's state directory"
            )),
            "{said}"
        );
    }
    assert!(!dir.join("state/journal.jsonl").exists());
}

/// `--listen` with an address and no port takes a free port, as `--help` says, not the
/// daemon's 8080 (which a real daemon on the same network may hold). (In a network
/// namespace of the test's own.)
#[test]
fn a_listen_address_without_a_port_takes_a_free_one() {
    let dir = TestDir::new("drill-sandbox-listen");
    let run = crate::util::in_network_namespace(
        &[],
        &format!(
            r#""$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 --state-dir {d}/state --listen 127.0.0.1 -- true 2>{d}/log; echo "code $?""#,
            d = dir.display()
        ),
    );
    let log = fs::read_to_string(dir.join("log")).unwrap();
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    let port = log
        .lines()
        .find_map(|l| l.split_once(" Listening on http://127.0.0.1:"))
        .map(|(_, port)| port.to_owned());
    assert!(
        port.as_deref()
            .is_some_and(|p| p.parse::<u16>().is_ok() && p != "8080"),
        "{log}"
    );
}

/// When the monkey cannot start, the sandbox says so rather than blame a stop: an API
/// port that is taken is found before the command starts, which then never runs; any
/// other failure of its start (here, another sandbox executing on the same state
/// directory) is said as the monkey's, the command ending with the sandbox. (In a
/// network namespace of the test's own.)
#[test]
fn a_monkey_that_cannot_start_is_said_so() {
    let dir = TestDir::new("drill-sandbox-no-start");
    let run = crate::util::in_network_namespace(
        &[],
        &format!(
            r#"{PRELUDE}
sb() {{ "$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 "$@"; }}
"$NM" sandbox --min-interval 3600 --max-interval 3600 -d '*' -t 00:00-24:00 --listen 127.0.0.1:18080 --state-dir {d}/a -- sleep 1000 2>{d}/first.log & s=$!
await 'Listening on' {d}/first.log
sb --listen 127.0.0.1:18080 --state-dir {d}/b -- sh -c 'echo > {d}/port-started' 2>{d}/port.log; echo "port $?"
sb --state-dir {d}/a -- sh -c 'echo > {d}/shared-started; sleep 1000' 2>{d}/shared.log; echo "shared $?"
kill -TERM $s; wait $s; echo "first $?""#,
            d = dir.display()
        ),
    );
    let log = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "first"), ["0"], "{}", log("first.log"));
    assert_eq!(pairs(&run.stdout, "port"), ["2"], "{}", log("port.log"));
    assert_eq!(
        log("port.log"),
        "error: sandbox: cannot listen on 127.0.0.1:18080 for the API: Address already in use (os error 98): give another address with --listen or --port, or leave them out for a free port\n"
    );
    assert!(!dir.join("port-started").exists(), "the command ran");
    let shared = log("shared.log");
    assert_ne!(pairs(&run.stdout, "shared"), ["0"], "{shared}");
    assert!(
        shared.contains(
            " Sandbox: the monkey could not run (the error follows); the command ends with the sandbox\nerror: "
        ),
        "{shared}"
    );
    assert!(!shared.contains("stopped before"), "{shared}");
}
