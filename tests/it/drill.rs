//! After the drill: the journal, the answer key, reversible faults and their reverts
//! (when due, on shutdown, on pause, after a crash), budgets and the kill switch. Every
//! test that injects for real does it in a PID namespace it created.

use std::fs;

use crate::util::{http, in_namespace, json_lines, monkey, pairs, temp_dir, Daemon, Sleeper};

/// Shell helpers for the namespace scripts: wait for a line in a file (with a deadline),
/// the state letter of a process, the daemon's port from its log.
pub(crate) const PRELUDE: &str = r#"
await() { end=$(( $(date +%s) + 10 )); until grep -q -- "$1" "$2"; do
  [ "$(date +%s)" -gt $end ] && { echo "timed out waiting for $1 in $2" >&2; cat "$2" >&2; return 1; }; sleep 0.02; done; }
# A process just continued may be running a moment before it sleeps again: R is waited out.
st() { for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  s=$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null); [ "$s" = R ] || break; sleep 0.05; done; echo "${s:-gone}"; }
port() { sed -n 's|.*Listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$1" | tail -n 1; }
post() { curl -s -X POST "http://127.0.0.1:$1$2" -d "$3"; echo; }
"#;

/// A daemon config: all days and hours, no timer, the API on a free loopback port, the
/// state (journal, pause file) in `dir`, and a pause fault and a kill fault that may only
/// choose `sleep 1000`.
fn config(dir: &std::path::Path, extra: &str) -> String {
    let file = dir.join("drill.ron");
    fs::write(
        &file,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    timer: (enabled: false),
    http: (listen: "127.0.0.1:0"),
    state_dir: {dir:?},
    faults: {{
        "pause": (plugin: "process-pause", config: (duration: "{{PAUSE}}", include_cmdlines: ["^sleep 1000$"])),
        "process-kill": (config: (include_cmdlines: ["^sleep 1000$"])),
    }},
    {extra}
)"#
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_owned()
}

/// A drill config in `dir` with the panicky fixture loaded: every day and hour, no
/// timer, the API on a free loopback port, `extra` settings and these `faults` (the
/// map's entries). Returns its path.
pub(crate) fn panicky_drill(
    dir: &std::path::Path,
    extra: &str,
    faults: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("panicky.ron");
    fs::write(
        &cfg,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    timer: (enabled: false),
    http: (listen: "127.0.0.1:0"),
    state_dir: {dir:?},
    plugins: [{lib:?}],
    {extra}
    faults: {{ {faults} }},
)"#,
            lib = crate::util::built_lib("libpanic_plugin.so"),
        ),
    )
    .unwrap();
    cfg
}

/// [`config`] with pauses of 10 minutes and the journal in `dir/fs`, where the test's
/// script mounts a small tmpfs to break it.
fn journal_on_tmpfs(dir: &std::path::Path) -> String {
    let cfg = config(
        dir,
        &format!("journal: {:?},", dir.join("fs/journal.jsonl")),
    );
    with_pause(&cfg, "10m");
    cfg
}

fn with_pause(file: &str, duration: &str) {
    let text = fs::read_to_string(file)
        .unwrap()
        .replace("{PAUSE}", duration);
    fs::write(file, text).unwrap();
}

#[test]
fn no_intent_on_disk_no_signal() {
    let dir = temp_dir("drill-intent");
    let cfg = config(
        &dir,
        // A budget of one: the refused fault must not use it up.
        &format!(
            "journal: {:?}, budget: (per_hour: 1),",
            dir.join("j/journal.jsonl")
        ),
    );
    with_pause(&cfg, "1m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
rm -r {d}/j && touch {d}/j   # the journal's directory is now a file: nothing can be written
post $p /api/kill '{{"desc":"no journal"}}'
echo "state $(st $v)"
rm {d}/j && mkdir {d}/j      # writable again
post $p /api/kill '{{"desc":"journal back"}}'
echo "state $(st $v)"
kill -TERM $d; wait $d; echo "code $?""#,
        d = dir.display()
    ));
    let answer = &json_lines(&run.stdout)[0];
    assert_eq!(answer["code"], 503, "{}", run.stdout);
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot write the journal {}/j/journal.jsonl: ",
            dir.display()
        )) && message.ends_with("; the fault was not injected"),
        "{message}"
    );
    let states = pairs(&run.stdout, "state");
    assert_eq!(states[0], "S", "the victim was never signalled");
    let second = &json_lines(&run.stdout)[1];
    assert_eq!(
        second["result"], "killed",
        "the budget of one was still free: {second}"
    );
    assert!(states[1] == "Z" || states[1] == "gone", "{states:?}");
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pauses_are_reverted_when_due_on_shutdown_and_after_a_crash_and_the_answer_key_shows_it() {
    let dir = temp_dir("drill-pause");
    let cfg = config(&dir, "");
    with_pause(&cfg, "700ms");
    let long = dir.join("long.ron");
    fs::write(
        &long,
        fs::read_to_string(&cfg).unwrap().replace("700ms", "10m"),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & v=$!; echo "victim $v"
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/pause '{{"desc":"due"}}' >/dev/null
echo "paused $(st $v)"
await 'Revert (due)' {d}/log1
echo "due $(st $v)"
post $p /api/kill '{{"desc":"the end"}}' >/dev/null
kill -TERM $d; wait $d
sleep 1000 & v=$!; echo "victim $v"
"$NM" --config {long} --execute 2>{d}/log2 & d=$!
await Listening {d}/log2; p=$(port {d}/log2)
post $p /api/faults/pause '{{"desc":"crash"}}' >/dev/null
kill -KILL $d; wait $d
echo "crashed $(st $v)"
"$NM" --config {long} --execute 2>{d}/log3 & d=$!
await 'Revert (recovery)' {d}/log3
echo "recovered $(st $v)"
await Listening {d}/log3; p=$(port {d}/log3)
post $p /api/faults/pause '{{"desc":"shutdown"}}' >/dev/null
echo "paused $(st $v)"
kill -TERM $d; wait $d; echo "code $?"
echo "shutdown $(st $v)""#,
        long = long.display(),
        d = dir.display()
    ));
    assert_eq!(pairs(&run.stdout, "paused"), ["T", "T"], "{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "due"), ["S"]);
    assert_eq!(
        pairs(&run.stdout, "crashed"),
        ["T"],
        "a SIGKILLed monkey leaves it stopped"
    );
    assert_eq!(
        pairs(&run.stdout, "recovered"),
        ["S"],
        "the next start lets it go on"
    );
    assert_eq!(
        pairs(&run.stdout, "shutdown"),
        ["S"],
        "a clean stop reverts first"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);

    // The answer key, from the journal the runs wrote.
    let history = monkey(&[
        "history",
        "--journal",
        dir.join("journal.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    // Three runs (three starts), a line between each two.
    let runs: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| l.starts_with("-- run "))
        .collect();
    assert_eq!(runs.len(), 2, "{}", history.stdout);
    assert!(runs[0].contains(", started "), "{}", runs[0]);
    let lines: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| !l.starts_with("-- run "))
        .map(|l| &l[20..])
        .collect();
    let last = monkey(&[
        "history",
        "--journal",
        dir.join("journal.jsonl").to_str().unwrap(),
        "--run",
        "last",
    ]);
    assert_eq!(last.stdout.lines().count(), 1, "{}", last.stdout);
    assert!(last.stdout.contains(" - shutdown ["), "{}", last.stdout);
    let victims = pairs(&run.stdout, "victim");
    let (v1, v2) = (&victims[0], &victims[1]);
    assert_eq!(lines.len(), 4, "{}", history.stdout);
    let expect = [
        format!("paused pause: sleep(PID:{v1} PPID:1) - due [http 127.0.0.1:"),
        format!("killed process-kill: sleep(PID:{v1} PPID:1) - the end [http 127.0.0.1:"),
        format!("paused pause: sleep(PID:{v2} PPID:1) - crash [http 127.0.0.1:"),
        format!("paused pause: sleep(PID:{v2} PPID:1) - shutdown [http 127.0.0.1:"),
    ];
    let tails = ["(due)", "] SIGKILL", "(recovery)", "(shutdown)"];
    for ((line, start), tail) in lines.iter().zip(&expect).zip(tails) {
        assert!(
            line.starts_with(start.as_str()) && line.ends_with(tail),
            "{line}"
        );
    }
    let json = monkey(&[
        "history",
        "--journal",
        dir.join("journal.jsonl").to_str().unwrap(),
        "--json",
    ]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let faults = parsed["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 4);
    assert_eq!(faults[0]["stream"], "fault/pause");
    assert_eq!(faults[0]["stream_position"], 0);
    assert_eq!(faults[0]["outcome"]["process"]["cmdline"], "sleep 1000");
    assert_eq!(faults[2]["reverted"]["reason"], "recovery");
    assert_eq!(faults[2]["reverted"]["result"], "reverted");
    // The same, a page at a time from the end: the latest two, then the two before.
    let journal = dir.join("journal.jsonl");
    let page = |extra: &[&str]| {
        let mut args = vec![
            "history",
            "--journal",
            journal.to_str().unwrap(),
            "--limit",
            "2",
        ];
        args.extend_from_slice(extra);
        monkey(&args)
    };
    let latest = page(&[]);
    assert_eq!(
        latest
            .stdout
            .lines()
            .filter(|l| !l.starts_with("-- run "))
            .count(),
        2,
        "{}",
        latest.stdout
    );
    let next = latest
        .stderr
        .trim()
        .strip_prefix("(older faults: --before ")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{}", latest.stderr))
        .to_owned();
    let older = page(&["--before", &next, "--json"]);
    let alone = monkey(&[
        "history",
        "--journal",
        journal.to_str().unwrap(),
        "--before",
        &next,
    ]);
    assert_eq!(
        (alone.code, alone.stderr.as_str()),
        (
            Some(2),
            "error: --before goes with --limit: it asks for the page before one shown\n"
        )
    );
    let older: serde_json::Value = serde_json::from_str(&older.stdout).unwrap();
    assert_eq!(older["faults"], serde_json::json!(faults[..2]));
    assert_eq!(older["next"], serde_json::Value::Null);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_pause_file_api_and_cli_stop_everything_and_revert_at_once() {
    let dir = temp_dir("drill-switch");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/pause '{{"desc":"one"}}' >/dev/null
echo "stopped $(st $v)"
touch {d}/paused
await 'Revert (pause)' {d}/log
echo "file $(st $v)"
post $p /api/kill '{{"desc":"refused"}}'
rm {d}/paused
await 'playing again' {d}/log
post $p /api/faults/pause '{{"desc":"two"}}' >/dev/null
echo "stopped $(st $v)"
post $p /api/pause ''
echo "api $(st $v)"
post $p /api/kill '{{"desc":"refused"}}'
"$NM" resume --url http://127.0.0.1:$p
post $p /api/faults/pause '{{"desc":"three"}}' >/dev/null
echo "stopped $(st $v)"
"$NM" pause --url http://127.0.0.1:$p
echo "cli $(st $v)"
"$NM" resume --url http://127.0.0.1:$p
kill -TERM $d; wait $d; echo "code $?""#,
        d = dir.display()
    ));
    assert_eq!(
        pairs(&run.stdout, "stopped"),
        ["T", "T", "T"],
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "file"), ["S"]);
    assert_eq!(pairs(&run.stdout, "api"), ["S"]);
    assert_eq!(pairs(&run.stdout, "cli"), ["S"]);
    let refusals: Vec<serde_json::Value> = json_lines(&run.stdout)
        .into_iter()
        .filter(|j| j["code"] == 503)
        .collect();
    assert_eq!(
        refusals[0]["message"],
        format!(
            "Nightmare Monkey is paused (the pause file {}/paused exists; remove it to resume)",
            dir.display()
        )
    );
    assert_eq!(
        refusals[1]["message"],
        "Nightmare Monkey is paused (POST /api/resume to resume)"
    );
    assert!(run.stdout.contains(
        "\nNightmare Monkey is paused: every trigger is refused and active faults were reverted\n"
    ));
    assert!(run.stdout.contains("\nNightmare Monkey is playing again\n"));
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

/// Budgets only need dry runs: the daemon runs on this machine, with a victim of ours.
/// Hung plugins never hold the kill switch or the exit: with every injection thread held
/// by a plugin that sleeps, one more request waiting for a thread, and an active fault
/// whose revert hangs, `POST /api/pause` still answers at once and resumes the real
/// victim, naming the revert still under way; SIGTERM then exits within 3 s, non-zero,
/// naming every plugin call it abandoned.
#[test]
fn the_kill_switch_and_sigterm_never_wait_behind_hung_plugins() {
    let dir = temp_dir("drill-hung");
    let started = dir.join("started");
    let cfg = panicky_drill(
        &dir,
        "",
        &format!(
            r#""pause": (plugin: "process-pause", config: (duration: "10m", include_cmdlines: ["^sleep 1000$"])),
               "stuck": (plugin: "panicky", config: (revert_after_ms: 600000, revert_sleep_ms: 600000)),
               "slow": (plugin: "panicky", config: (sleep_ms: 600000, started_file: {started:?})),"#
        ),
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/pause '{{"desc":"victim"}}' >/dev/null
post $p /api/faults/stuck '{{"desc":"stuck"}}' >/dev/null
echo "stopped $(st $v)"
for i in 1 2 3 4 5; do post $p /api/faults/slow '{{"desc":"slow"}}' >/dev/null & done
end=$(( $(date +%s) + 10 ))
until [ "$(cat {d}/started 2>/dev/null | wc -l)" -ge 4 ]; do [ "$(date +%s)" -gt $end ] && break; sleep 0.02; done
t=$(ms); post $p /api/pause ''; echo "pause_ms $(( $(ms) - t ))"
echo "api $(st $v)"
t=$(ms); kill -TERM $d; wait $d; echo "code $?"; echo "term_ms $(( $(ms) - t ))""#,
        cfg = cfg.display(),
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let said = |key: &str| pairs(&run.stdout, key);
    assert_eq!(
        said("stopped"),
        ["T"],
        "{}\n{}\n{log}",
        run.stdout,
        run.stderr
    );
    assert_eq!(said("api"), ["S"], "the victim runs again\n{log}");
    let pause_ms: u64 = said("pause_ms")[0].parse().unwrap();
    // The switch waits 50 ms for reverts at most; the rest is curl and a busy machine.
    assert!(pause_ms < 1000, "POST /api/pause took {pause_ms} ms");
    let answer = json_lines(&run.stdout)
        .into_iter()
        .find(|j| j.get("paused").is_some())
        .expect("the pause answer");
    assert_eq!(answer["paused"], true);
    assert_eq!(
        answer["reverting"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with("Nightmare Monkey is paused: every trigger is refused; still reverting (their plugins have not answered yet): ")
            && message.ends_with(" (stuck)"),
        "{answer}"
    );
    assert_eq!(said("code"), ["1"], "{log}");
    let term_ms: u64 = said("term_ms")[0].parse().unwrap();
    assert!(term_ms < 3000, "SIGTERM took {term_ms} ms\n{log}");
    let abandoned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("going to bed without"))
        .collect();
    assert_eq!(
        abandoned
            .iter()
            .filter(|l| l.ends_with("(slow), whose plugin has not answered"))
            .count(),
        4,
        "{log}"
    );
    assert_eq!(
        abandoned
            .iter()
            .filter(|l| l.contains("the revert of")
                && l.ends_with("(stuck), whose plugin has not answered"))
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("error: stopped with 5 plugin calls abandoned"),
        "{log}"
    );
    eprintln!("pause answered in {pause_ms} ms, SIGTERM exit in {term_ms} ms");
    fs::remove_dir_all(dir).unwrap();
}

/// A plugin whose revert hangs does not hold the next start: recovery gives up on it
/// after `plugin_timeout`, says so, and the daemon starts; at SIGTERM it is named.
#[test]
fn recovery_gives_up_on_a_revert_that_hangs() {
    let dir = temp_dir("drill-hung-recovery");
    let cfg = panicky_drill(
        &dir,
        r#"plugin_timeout: "300ms","#,
        r#""stuck": (plugin: "panicky", config: (revert_after_ms: 600000, revert_sleep_ms: 600000))"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/stuck '{{"desc":"stuck"}}' >/dev/null
kill -KILL $d; wait $d
"$NM" --config {cfg} --execute 2>{d}/log2 & d=$!
await Listening {d}/log2 && echo started
kill -TERM $d; wait $d; echo "code $?""#,
        cfg = cfg.display(),
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log2")).unwrap_or_default();
    assert!(run.stdout.contains("started\n"), "{}\n{log}", run.stderr);
    let gave_up: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("did not answer within 300ms; abandoned"))
        .collect();
    assert_eq!(gave_up.len(), 1, "{log}");
    assert!(gave_up[0].contains("the plugin of stuck"), "{log}");
    assert_eq!(pairs(&run.stdout, "code"), ["1"], "{log}");
    assert!(
        log.contains("(stuck), whose plugin has not answered"),
        "{log}"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// A plugin whose `revert` segfaults takes down its worker, not the daemon: the revert
/// is logged as failed with why and tried again, and the plugin's next call gets a fresh
/// worker. It crashes at every try, so at SIGTERM it is named and the exit is 1.
#[test]
fn a_revert_that_crashes_takes_down_its_worker_not_the_daemon() {
    let dir = temp_dir("drill-revert-crash");
    let cfg = panicky_drill(
        &dir,
        "",
        r#""crash-revert": (plugin: "panicky", config: (revert_after_ms: 100, crash_in_revert: "segv")),
           "ok": (plugin: "panicky", config: (sleep_ms: 1)),"#,
    );
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/crash-revert '{{"desc":"x"}}' >/dev/null
await 'Revert (due)' {d}/log
post $p /api/faults/ok '{{"desc":"after"}}'
kill -TERM $d; wait $d; echo "code $?""#,
        cfg = cfg.display(),
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(
        log.contains("Revert (due): failed: its worker was killed by SIGSEGV (the next call starts a fresh one); trying again in 1s"),
        "{log}"
    );
    let after = json_lines(&run.stdout);
    assert_eq!(after[0]["summary"], "slept 1 ms", "{}\n{log}", run.stdout);
    // It crashes at every try: at bedtime, one last try, then it is named, exit 1.
    assert!(log.contains("going to bed without the revert of"), "{log}");
    assert_eq!(pairs(&run.stdout, "code"), ["1"], "{log}");
    fs::remove_dir_all(dir).unwrap();
}

/// A revert that fails for a reason that passes is tried again until it works: the
/// daemon's descriptors are cut to 3 (`prlimit`), so the pause's revert cannot open its
/// pidfd (EMFILE); the real victim stays stopped and the revert is retried; with the
/// limit raised again, the next try resumes it.
#[test]
fn a_revert_that_fails_for_lack_of_descriptors_is_retried_until_it_works() {
    let dir = temp_dir("drill-emfile");
    let cfg = config(&dir, "");
    with_pause(&cfg, "1s");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/pause '{{"desc":"x"}}' >/dev/null
echo "stopped $(st $v)"
prlimit --pid $d --nofile=3:
await 'Revert (due): failed: ' {d}/log
echo "failing $(st $v)"
prlimit --pid $d --nofile=1024:
await 'Revert (due): reverted' {d}/log
echo "after $(st $v)"
kill -TERM $d; wait $d; echo "code $?""#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "stopped"),
        ["T"],
        "{}\n{log}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "failing"), ["T"], "{log}");
    assert_eq!(pairs(&run.stdout, "after"), ["S"], "{log}");
    assert!(
        log.contains("Revert (due): failed: cannot open a pidfd for PID")
            && log.contains("Too many open files (os error 24); trying again in 1s"),
        "{log}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    fs::remove_dir_all(dir).unwrap();
}

/// Recovery needs only to read: with the state directory remounted read-only after a
/// crash mid-pause, the next start still resumes the victim from the journal, then
/// refuses to run (it could not journal anything) with one line and exit 2.
#[test]
fn recovery_reads_a_journal_it_cannot_write_then_the_start_is_refused() {
    let dir = temp_dir("drill-ro-journal");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/pause '{{"desc":"x"}}' >/dev/null
kill -KILL $d; wait $d
echo "stopped $(st $v)"
mount --bind {d} {d} && mount -o remount,ro,bind {d} || exit 99
"$NM" --config {cfg} --execute; echo "code $?"
echo "after $(st $v)""#,
        d = dir.display()
    ));
    assert_eq!(
        pairs(&run.stdout, "stopped"),
        ["T"],
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "after"), ["S"], "{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "code"), ["2"], "{}", run.stderr);
    let log: Vec<&str> = run.stderr.lines().collect();
    assert!(
        log.iter()
            .any(|l| l.ends_with("Revert (recovery): reverted: sent SIGCONT to sleep(PID:2)")),
        "{}",
        run.stderr
    );
    assert_eq!(
        log.last().copied(),
        Some(format!(
            "error: cannot open the journal {}/journal.jsonl: Read-only file system (os error 30)",
            dir.display()
        ))
        .as_deref(),
        "{}",
        run.stderr
    );
    fs::remove_dir_all(dir).unwrap();
}

/// A full disk mid-fault: the journal's file system (a 64 KiB tmpfs) is filled so that a
/// pause's intent fits and its prepared target does not (nothing is done), then so that
/// the target fits and the outcome does not (the victim is resumed at once). Either way
/// the answer is 503, never 200; a half-written line is cut back, so once there is room
/// again every line of the journal reads whole and every fault is in it.
#[test]
fn a_full_disk_injects_nothing_or_reverts_at_once_never_leaves_a_victim_stopped() {
    let dir = temp_dir("drill-enospc");
    let cfg = journal_on_tmpfs(&dir);
    let run = in_namespace(&format!(
        r#"{PRELUDE}
mkdir -p {d}/fs && mount -t tmpfs -o size=64k tmpfs {d}/fs || exit 99
j={d}/fs/journal.jsonl
sleep 1000 & v=$!
# Leaves $1 bytes free on the journal's filesystem, all in the journal's last page: pads
# it with newlines (blank lines, skipped when read), then fills the rest.
room() {{ l=$(wc -c < $j); n=$(( (8192 - $1 - l % 4096) % 4096 )); head -c $n /dev/zero | tr '\0' '\n' >> $j
  dd if=/dev/zero of={d}/fs/fill bs=4096 2>/dev/null; }}
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
# One pause, undone by the kill switch, to measure its records.
post $p /api/faults/pause '{{"desc":"a measure"}}' >/dev/null
post $p /api/pause >/dev/null; post $p /api/resume >/dev/null
i=$(grep '"type":"intent"' $j | wc -c); r=$(grep '"type":"prepared"' $j | wc -c)
# Room for the intent, not for the victim's prepared record: nothing is done.
room $(( i + 150 ))
post $p /api/faults/pause '{{"desc":"no room to prepare"}}'
echo "unprepared $(st $v)"
rm {d}/fs/fill
# Room for the intent and the prepared victim, not for the outcome: undone at once.
room $(( i + r + 150 ))
post $p /api/faults/pause '{{"desc":"full disk"}}'
echo "after $(st $v)"
rm {d}/fs/fill
post $p /api/faults/pause '{{"desc":"room again"}}' >/dev/null
echo "stopped $(st $v)"
kill -TERM $d; wait $d; echo "code $?"
echo "end $(st $v)"
# The journal, read back while its filesystem is still there.
"$NM" history --journal $j --json > {d}/history.json"#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let answers: Vec<serde_json::Value> = json_lines(&run.stdout)
        .into_iter()
        .filter(|j| j.get("code").is_some())
        .collect();
    let [unprepared, unrecorded] = &answers[..] else {
        panic!("{}\n{}\n{log}", run.stdout, run.stderr)
    };
    assert_eq!(unprepared["code"], 503, "{unprepared}\n{log}");
    let message = unprepared["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot write the journal ")
            && message
                .ends_with("No space left on device (os error 28); the fault was not injected"),
        "{message}"
    );
    assert_eq!(
        pairs(&run.stdout, "unprepared"),
        ["S"],
        "never stopped\n{log}"
    );
    assert_eq!(unrecorded["code"], 503, "{unrecorded}\n{log}");
    let message = unrecorded["message"].as_str().unwrap();
    assert!(
        message.starts_with("pause: cannot record the outcome in the journal ")
            && message
                .ends_with("No space left on device (os error 28); the fault was reverted at once"),
        "{message}"
    );
    assert_eq!(pairs(&run.stdout, "after"), ["S"], "resumed at once\n{log}");
    assert_eq!(pairs(&run.stdout, "stopped"), ["T"], "{log}");
    assert_eq!(pairs(&run.stdout, "end"), ["S"], "{log}");
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    let history = fs::read_to_string(dir.join("history.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(
        parsed["problems"],
        serde_json::json!([]),
        "no glued or torn line"
    );
    // Every fault is there: the measure, the two refused, the one after.
    let descs: Vec<&str> = parsed["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["desc"].as_str().unwrap())
        .collect();
    assert_eq!(
        descs,
        ["a measure", "no room to prepare", "full disk", "room again"],
        "{history}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn over_budget_answers_429_with_retry_after_and_the_history_api_agrees() {
    let _victim = Sleeper::start();
    let dir = temp_dir("drill-budget");
    let cfg = config(&dir, r#"budget: (per_hour: 2, min_gap: "1h"),"#);
    with_pause(&cfg, "1s");
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let fire = |desc: &str| {
        http(
            port,
            "POST",
            "/api/kill",
            &[],
            format!(r#"{{"desc":"{desc}"}}"#).as_bytes(),
        )
    };
    assert_eq!(fire("first").status, 200);
    let refused = fire("second");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.json()["message"],
        "over budget (at least 1h between faults): the next fault fits in 3600 s"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry), "{retry}");
    let history = http(port, "GET", "/api/history", &[], b"").json();
    let faults = history["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "a refused request is no fault");
    assert_eq!(faults[0]["desc"], "first");
    assert_eq!(faults[0]["dry_run"], true);
    assert_eq!(faults[0]["outcome"]["result"], "dry-run");
    assert_eq!(
        http(port, "GET", "/api/history?since=1m", &[], b"").json()["faults"],
        history["faults"]
    );
    assert_eq!(
        http(port, "GET", "/api/history?since=soon", &[], b"").status,
        400
    );
    assert_eq!(
        history["next"],
        serde_json::Value::Null,
        "one page holds it all"
    );
    let page = http(port, "GET", "/api/history?limit=0", &[], b"");
    assert_eq!(
        (page.status, page.json()["message"].clone()),
        (400, serde_json::json!("limit must be 1 to 10000"))
    );
    let lost = http(port, "GET", "/api/history?before=yesterday", &[], b"");
    assert_eq!(
        (lost.status, lost.json()["message"].clone()),
        (
            400,
            serde_json::json!(
                "invalid before `yesterday`: expected the `next` of a page, like 2049.1835.42"
            )
        )
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_journal_line_is_reported_and_the_rest_is_kept() {
    let _victim = Sleeper::start();
    let dir = temp_dir("drill-torn");
    let journal = dir.join("journal.jsonl");
    let cfg = config(&dir, "");
    with_pause(&cfg, "1s");
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"before"}"#).status,
        200
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    // A crash in the middle of a write.
    let mut text = fs::read_to_string(&journal).unwrap();
    text.push_str(r#"{"type":"intent","id":"9-9","at":"2026-"#);
    fs::write(&journal, text).unwrap();
    let run = monkey(&["history", "--journal", journal.to_str().unwrap()]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stderr,
        format!(
            "warning: {}: line 3 is torn (the daemon stopped while writing it); ignored\n",
            journal.display()
        )
    );
    assert_eq!(run.stdout.lines().count(), 1);
    // The next run closes the torn line and goes on appending whole records.
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"after"}"#).status,
        200
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let run = monkey(&["history", "--journal", journal.to_str().unwrap()]);
    let faults = run.stdout.lines().filter(|l| !l.starts_with("-- run "));
    assert_eq!(faults.count(), 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("line 3 is unreadable"),
        "{}",
        run.stderr
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn named_tokens_are_journaled_by_name_never_by_value() {
    let _victim = Sleeper::start();
    let dir = temp_dir("drill-tokens");
    let cfg = config(&dir, "");
    with_pause(&cfg, "1s");
    let text = fs::read_to_string(&cfg).unwrap().replace(
        r#"http: (listen: "127.0.0.1:0"),"#,
        r#"http: (listen: "127.0.0.1:0", tokens: {"alice": "a11ce-secret", "bot": "b0t-secret"}),"#,
    );
    fs::write(&cfg, text).unwrap();
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let a = http(
        port,
        "POST",
        "/api/kill",
        &["Authorization: Bearer b0t-secret"],
        br#"{"desc":"request from hubot"}"#,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"x"}"#).status,
        401
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""requested_by":"127.0.0.1:"#) && journal.contains(" (bot)\""),
        "{journal}"
    );
    assert!(
        !journal.contains("secret"),
        "a token was written: {journal}"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// disk-fill on a tmpfs of the test's own (mounted in the test's namespace): filled to the
/// target when injected, freed when due, and freed by the next start after a crash.
#[test]
fn disk_fill_takes_the_space_and_gives_it_back_even_after_a_crash() {
    let dir = temp_dir("drill-disk");
    let fs_dir = dir.join("fs");
    fs::create_dir_all(&fs_dir).unwrap();
    let cfg = dir.join("disk.ron");
    let write = |duration: &str| {
        fs::write(
            &cfg,
            format!(
                r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                    state_dir: {:?}, faults: {{"disk": (plugin: "disk-fill", config: (path: {fs_dir:?}, target_percent: 50, floor_mib: 4, duration: "{duration}"))}})"#,
                dir.join("state")
            ),
        )
        .unwrap();
    };
    write("600ms");
    let long = dir.join("long.ron");
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
used() {{ df -P {fs} | awk 'NR==2 {{ print $5 }}'; }}
mount -t tmpfs -o size=64m tmpfs {fs}
"$NM" --config {cfg} --execute 2>{d}/log1 & m=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/disk '{{"desc":"no space left"}}'
echo "filled $(used)"
await 'Revert (due)' {d}/log1
echo "freed $(used)"
kill -TERM $m; wait $m
sed 's/600ms/10m/' {cfg} > {long}
"$NM" --config {long} --execute 2>{d}/log2 & m=$!
await Listening {d}/log2; p=$(port {d}/log2)
post $p /api/faults/disk '{{"desc":"crash"}}' >/dev/null
echo "filled $(used)"
kill -KILL $m; wait $m
echo "crashed $(used)"
"$NM" --config {long} --execute 2>{d}/log3 & m=$!
await 'Revert (recovery)' {d}/log3
echo "recovered $(used)"
kill -TERM $m; wait $m; echo "code $?""#,
        fs = fs_dir.display(),
        cfg = cfg.display(),
        long = long.display(),
    ));
    let answer = &json_lines(&run.stdout)[0];
    assert_eq!(
        answer["result"], "injected",
        "{}\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(answer["details"]["after_percent"], 49);
    assert_eq!(pairs(&run.stdout, "filled"), ["49%", "49%"]);
    assert_eq!(pairs(&run.stdout, "freed"), ["0%"]);
    assert_eq!(
        pairs(&run.stdout, "crashed"),
        ["49%"],
        "a killed daemon leaves the file"
    );
    assert_eq!(
        pairs(&run.stdout, "recovered"),
        ["0%"],
        "the next start removes it"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

/// `sandbox`: the monkey, executing, only reaches what the command started; the sandbox
/// ends with the command and passes its status on; killed at its PID, the monkey goes to
/// bed and the command ends with it. (Run inside a namespace of the test's
/// own as well, so nothing here can reach this machine's processes.)
#[test]
fn the_sandbox_unleashes_the_monkey_on_the_command_alone() {
    let dir = temp_dir("drill-sandbox");
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
    fs::remove_dir_all(dir).unwrap();
}

/// Practice is kept apart: the sandbox journals into a state directory of its own, even
/// when its config names a journal, so a real daemon's budget and report never count its
/// faults. A plugin file's fault runs there only when `--process-plugin` vouches for it
/// (the sandbox cannot tell what a file does); a built-in that acts outside, never.
#[test]
fn the_sandbox_keeps_practice_apart_and_runs_only_process_faults() {
    let dir = temp_dir("drill-sandbox-apart");
    let lib = crate::util::built_lib("libcompat_plugin.so");
    let cfg = dir.join("practice.ron");
    fs::write(
        &cfg,
        format!(
            r#"(schedule: Uniform(min_interval: 1, max_interval: 1), window: (days: "*", time: "00:00-24:00"),
                journal: {real:?}, plugins: [{lib:?}], faults: {{"roll": (plugin: "old-timer")}})"#,
            real = dir.join("real.jsonl")
        ),
    )
    .unwrap();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"export STATE_DIRECTORY={d}/state
"$NM" sandbox --config {cfg} -- true 2>{d}/refused.log; echo "refused $?"
"$NM" sandbox --config {cfg} --process-plugin old-timer --process-plugin disk-fill -- true 2>{d}/builtin.log; echo "builtin $?"
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
    let ran = log("ran.log");
    assert_eq!(pairs(&run.stdout, "ran"), ["0"], "{ran}");
    let journal = format!("{d}/state/sandbox/journal.jsonl");
    assert!(
        ran.contains(&format!(
            " Sandbox: its journal is apart from any daemon's (report --journal {journal})\n"
        )),
        "{ran}"
    );
    assert!(ran.contains(&format!(" Journal: {journal}\n")), "{ran}");
    assert!(
        fs::read_to_string(&journal)
            .unwrap()
            .contains(r#""fault":"roll""#),
        "{ran}"
    );
    assert!(
        !dir.join("real.jsonl").exists() && !dir.join("state/journal.jsonl").exists(),
        "neither the config's journal nor the daemon's default one: {ran}"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// An ordinary user's sandbox loads a plugin file that passes the trust checks: they are
/// made outside the namespace, as that user (inside, root's files show as owned by
/// nobody, and every check there refused every file).
#[test]
fn an_ordinary_users_sandbox_loads_a_trusted_plugin_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("drill-sandbox-user");
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
    fs::remove_dir_all(dir).unwrap();
}

/// cpu-hog burns inside the daemon (its threads show in /proc) and stops when due.
#[test]
fn cpu_hog_burns_and_stops_when_due() {
    let dir = temp_dir("drill-cpu");
    let cfg = dir.join("cpu.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                state_dir: {dir:?}, faults: {{"cpu": (plugin: "cpu-hog", config: (cores: 1, duration: "700ms"))}})"#
        ),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
hogs() {{ grep -l cpu-hog /proc/$1/task/*/comm 2>/dev/null | wc -l; }}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(hogs $m)"
post $p /api/faults/cpu '{{"desc":"hot"}}'
echo "burning $(hogs $m)"
await 'Revert (due)' {d}/log
n=0; while [ "$(hogs $m)" -gt 0 ] && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
echo "after $(hogs $m)"
kill -TERM $m; wait $m; echo "code $?""#,
        cfg = cfg.display(),
        d = dir.display()
    ));
    assert_eq!(
        json_lines(&run.stdout)[0]["summary"],
        "burning 1 core(s) for 700ms",
        "{}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "before"), ["0"]);
    assert_eq!(pairs(&run.stdout, "burning"), ["1"]);
    assert_eq!(pairs(&run.stdout, "after"), ["0"]);
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

/// memory-hog holds its memory inside the daemon (its RSS grows) and gives it back when due.
#[test]
fn memory_hog_holds_and_lets_go_when_due() {
    let dir = temp_dir("drill-memory");
    let cfg = dir.join("memory.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                state_dir: {dir:?}, faults: {{"memory": (plugin: "memory-hog", config: (mib: 64, floor_mib: 64, duration: "700ms"))}})"#
        ),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
rss() {{ awk '/^VmRSS:/ {{ print int($2 / 1024) }}' /proc/$1/status; }}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(rss $m)"
post $p /api/faults/memory '{{"desc":"swap storm"}}'
echo "holding $(rss $m)"
await 'Revert (due)' {d}/log
n=0; while [ "$(rss $m)" -gt 40 ] && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
echo "after $(rss $m)"
kill -TERM $m; wait $m; echo "code $?""#,
        cfg = cfg.display(),
        d = dir.display()
    ));
    let answer = &json_lines(&run.stdout)[0];
    assert_eq!(
        answer["result"], "injected",
        "{}\n{}",
        run.stdout, run.stderr
    );
    assert!(answer["summary"]
        .as_str()
        .unwrap()
        .starts_with("holding 64 MiB of "));
    let mib = |key: &str| -> u64 { pairs(&run.stdout, key)[0].parse().unwrap() };
    assert!(mib("holding") >= mib("before") + 60, "{}", run.stdout);
    assert!(mib("after") + 50 <= mib("holding"), "{}", run.stdout);
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

/// A fault from a plugin directory is reverted after a crash too: the example plugin's
/// lock file is removed by the next start, which loads the plugin from the same directory.
#[test]
fn a_directory_plugins_fault_is_reverted_after_a_crash() {
    let dir = temp_dir("drill-stale");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    fs::copy(
        crate::util::built_lib("libstale_lock.so"),
        plugins.join("libstale_lock.so"),
    )
    .unwrap();
    let lock = dir.join("app.pid");
    let cfg = dir.join("stale.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                state_dir: {dir:?}, plugin_dirs: [{plugins:?}],
                faults: {{"stale": (plugin: "stale-lock", config: (path: {lock:?}, duration: "10m"))}})"#
        ),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log1 & m=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/stale '{{"desc":"stale pid"}}' >/dev/null
[ -e {lock} ] && echo "lock present"
kill -KILL $m; wait $m
[ -e {lock} ] && echo "lock left by the crash"
"$NM" --config {cfg} --execute 2>{d}/log2 & m=$!
# The revert that worked (a first try may fail under load, and be tried again).
await 'Revert (recovery): reverted' {d}/log2
[ -e {lock} ] || echo "lock removed"
kill -TERM $m; wait $m; echo "code $?""#,
        cfg = cfg.display(),
        lock = lock.display(),
        d = dir.display()
    ));
    for line in [
        "lock present",
        "lock left by the crash",
        "lock removed",
        "code 0",
    ] {
        assert!(
            run.stdout.contains(&format!("{line}\n")),
            "{line}: {}\n{}",
            run.stdout,
            run.stderr
        );
    }
    fs::remove_dir_all(dir).unwrap();
}

/// A process stopped by process-pause is left alone by process-kill while the pause lasts.
#[test]
fn a_paused_process_is_not_killed_meanwhile() {
    let dir = temp_dir("drill-avoid");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & a=$!; sleep 1000 & b=$!
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/pause '{{"desc":"freeze one"}}'
post $p /api/kill '{{"desc":"kill the other"}}'
post $p /api/kill '{{"desc":"nothing left"}}'
echo "states $(st $a) $(st $b)"
kill -TERM $m; wait $m; echo "code $?""#,
        d = dir.display()
    ));
    let out = json_lines(&run.stdout);
    assert_eq!(out.len(), 3, "{}\n{}", run.stdout, run.stderr);
    let paused = &out[0]["pid"];
    assert_eq!(out[0]["result"], "paused");
    assert_eq!(out[1]["result"], "killed");
    assert_ne!(
        &out[1]["pid"], paused,
        "the paused process was not the one killed"
    );
    assert_eq!(out[2]["code"], 503);
    assert!(out[2]["message"]
        .as_str()
        .unwrap()
        .contains("no eligible process"));
    let states = pairs(&run.stdout, "states")[0].clone();
    assert!(
        states.contains('T') && (states.contains('Z') || states.contains("gone")),
        "{states}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    fs::remove_dir_all(dir).unwrap();
}

/// A pause injects in two phases: its victim is journaled (fsynced) before the SIGSTOP,
/// so a daemon killed at any moment of the injection leaves what undoes it. Checked
/// twice: from a journal caught between the phases (written as the daemon writes it,
/// with the victim stopped), and by SIGKILLs at a spread of moments during real
/// injections, each followed by a start that must leave the victim running.
#[test]
fn a_sigkill_at_any_moment_of_a_pause_leaves_no_victim_stopped_after_the_next_start() {
    let dir = temp_dir("drill-any-moment");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
j={d}/journal.jsonl
sleep 1000 & v=$!
kill -STOP $v
t=$(cut -d' ' -f22 /proc/$v/stat); now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo '{{"type":"intent","id":"1-1","at":"'$now'","fault":"pause","plugin":"process-pause","trigger":"http","desc":"caught","dry_run":false,"master_seed":1,"stream":"fault/pause","stream_position":0,"seed":2}}' > $j
echo '{{"type":"prepared","id":"1-1","at":"'$now'","revert":{{"pid":'$v',"start_time":'$t',"name":"sleep"}}}}' >> $j
echo "caught $(st $v)"
"$NM" --config {cfg} --execute 2>{d}/log0 & d=$!
await Listening {d}/log0
echo "recovered $(st $v)"
kill -TERM $d; wait $d
# The outcome torn by the crash at a spread of bytes (none of it; the first byte; the
# middle; all but its newline): the prepared target is there whole, fsynced first.
o='{{"type":"outcome","id":"1-1","at":"'$now'","elapsed_ms":1,"result":"paused","action":"Pause","process":{{"name":"sleep","pid":'$v',"ppid":1,"start_time":'$t'}},"signal":"SIGSTOP","summary":"stopped sleep(PID:'$v') for 10m","revert":{{"pid":'$v',"start_time":'$t',"name":"sleep"}},"revert_due":"'$now'"}}'
head -n 2 $j > {d}/caught
for cut in 0 1 $(( ${{#o}} / 2 )) ${{#o}}; do
  kill -STOP $v; rm -f $j.checkpoint
  {{ cat {d}/caught; printf '%s' "$o" | head -c $cut; }} > $j
  "$NM" --config {cfg} --execute 2>{d}/log.torn.$cut & d=$!
  await Listening {d}/log.torn.$cut
  echo "torn $(st $v)"
  kill -TERM $d; wait $d
done
kill -KILL $v
for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
  sleep 1000 & v=$!
  "$NM" --config {cfg} --execute 2>{d}/log$i.a & d=$!
  await Listening {d}/log$i.a; p=$(port {d}/log$i.a)
  post $p /api/faults/pause '{{"desc":"any moment"}}' >/dev/null 2>&1 & c=$!
  if [ $((i % 2)) = 0 ]; then
    # A spread of moments (not a synchronisation): 0 to 50 ms after the request left.
    sleep 0.0$((i * 4 / 10))$((i * 4 % 10))
  else
    # The moment the victim stops (read without a fork): between the SIGSTOP and the
    # outcome on disk, or just after.
    end=$(( $(date +%s) + 10 ))
    until {{ read -r s < /proc/$v/stat; set -- $s; [ "$3" = T ]; }} || [ "$(date +%s)" -gt $end ]; do :; done
  fi
  kill -KILL $d; wait $d 2>/dev/null; wait $c
  echo "outcome $(grep -c '"type":"outcome"' {d}/journal.jsonl)"
  echo "killed $(st $v)"
  "$NM" --config {cfg} --execute 2>{d}/log$i.b & d=$!
  await Listening {d}/log$i.b
  echo "after $(st $v)"
  kill -TERM $d; wait $d; kill -KILL $v 2>/dev/null
done"#,
        d = dir.display()
    ));
    let log0 = fs::read_to_string(dir.join("log0")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "caught"), ["T"], "{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "recovered"), ["S"], "{log0}");
    assert!(
        log0.contains(
            " EXECUTE: faults are real: processes will be signalled and resources taken\n"
        ),
        "{log0}"
    );
    assert_eq!(
        pairs(&run.stdout, "torn"),
        ["S", "S", "S", "S"],
        "{}",
        run.stderr
    );
    assert!(
        log0.contains("Recovering: 1-1 (pause) was being injected when the last run stopped; its prepared target is reverted"),
        "{log0}"
    );
    let after = pairs(&run.stdout, "after");
    assert_eq!(after.len(), 12, "{}\n{}", run.stdout, run.stderr);
    assert!(
        after.iter().all(|s| s == "S"),
        "a victim left stopped: {}",
        run.stdout
    );
    fs::remove_dir_all(dir).unwrap();
}

/// A journal past `rotate_at` is rotated at start (and whenever it grows past it again):
/// the archive keeps the past, the budget and `history` read on into it, and an archive
/// older than `keep` is removed.
#[test]
fn the_journal_rotates_and_its_archives_are_read_on_and_kept_as_long_as_told() {
    let dir = temp_dir("drill-rotate");
    let journal = dir.join("journal.jsonl");
    let now = chrono::Utc::now();
    let line = |id: &str, at: chrono::DateTime<chrono::Utc>| {
        format!(
            concat!(
                r#"{{"type":"intent","id":"{id}","at":"{at}","fault":"process-kill","plugin":"process-kill","trigger":"timer","desc":"by monkey","dry_run":true,"master_seed":1,"stream":"fault/process-kill","stream_position":0,"seed":2}}"#,
                "\n",
                r#"{{"type":"outcome","id":"{id}","at":"{at}","elapsed_ms":1,"result":"dry-run","action":"Kill","summary":"would kill"}}"#,
                "\n"
            ),
            id = id,
            at = at.to_rfc3339()
        )
    };
    // 200 faults of three days ago (some 90 KiB), then two of the last hour.
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&line(&format!("old-{i}"), now - chrono::TimeDelta::days(3)));
    }
    for i in 0..2 {
        text.push_str(&line(
            &format!("today-{i}"),
            now - chrono::TimeDelta::minutes(30),
        ));
    }
    fs::write(&journal, &text).unwrap();
    // An archive from two years ago: past `keep`.
    let ancient = dir.join("journal.jsonl-20241101T000000.000Z");
    fs::write(
        &ancient,
        line("ancient", now - chrono::TimeDelta::days(730)),
    )
    .unwrap();
    let cfg = config(
        &dir,
        r#"journal_retention: (rotate_at: "64KiB", keep: "400d"), budget: (per_day: 3),"#,
    );
    with_pause(&cfg, "1m");
    // A candidate for the (dry) kill.
    let _sleeper = Sleeper::start();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let rotated = daemon.wait_for(|l| l.starts_with("journal: rotated "));
    let archive = rotated
        .rsplit(" to ")
        .next()
        .map(std::path::PathBuf::from)
        .unwrap();
    assert_eq!(
        fs::read_to_string(&archive).unwrap(),
        text,
        "the past, whole"
    );
    daemon.wait_for(|l| {
        l == format!(
            "journal: removed {} (past the retention)",
            ancient.display()
        )
    });
    assert!(!ancient.exists());
    let port = daemon.port();
    // Two of today's faults are in the archive: one more fits the day, not two.
    let first = http(port, "POST", "/api/kill", &[], br#"{"desc":"third"}"#);
    assert_eq!(first.status, 200, "{}", first.body);
    let second = http(port, "POST", "/api/kill", &[], br#"{"desc":"fourth"}"#);
    assert_eq!(second.status, 429, "{}", second.body);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
    // The answer key reads on from the journal into its archive.
    let history = monkey(&["history", "--journal", journal.to_str().unwrap()]);
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    let lines: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| !l.starts_with("-- run "))
        .collect();
    assert_eq!(lines.len(), 203, "{}", history.stderr);
    assert!(lines[202].contains("- third [http"), "{}", lines[202]);
    let latest = monkey(&[
        "history",
        "--journal",
        journal.to_str().unwrap(),
        "--limit",
        "3",
        "--json",
    ]);
    let latest: serde_json::Value = serde_json::from_str(&latest.stdout).unwrap();
    let ids: Vec<&str> = latest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..2], ["today-0", "today-1"]);
    fs::remove_dir_all(dir).unwrap();
}

/// The journal broken under a running daemon, then the daemon SIGKILLed: emptied, cut
/// short (at 100 bytes; right after the fault's intent), replaced by a directory or a
/// symlink to /dev/null before the next start, the fault renamed to another plugin's;
/// and, while the daemon runs, replaced by a symlink to /dev/null or its filesystem
/// remounted read-only. No victim stays stopped: what undoes a fault is in the
/// checkpoint beside the journal too, recovery reverts from it whatever the journal
/// allows (and with the plugin that made the fault), and a journal that is no longer a
/// writable regular file is never written to (the fault is then not injected).
#[test]
fn a_journal_emptied_cut_or_replaced_under_the_daemon_leaves_no_victim_stopped() {
    let dir = temp_dir("drill-broken");
    let cfg = journal_on_tmpfs(&dir);
    let run = in_namespace(&format!(
        r#"{PRELUDE}
mkdir -p {d}/fs && mount -t tmpfs -o size=1m tmpfs {d}/fs || exit 99
j={d}/fs/journal.jsonl
# Pauses a fresh victim through a fresh daemon, breaks the journal with "$1", SIGKILLs
# the daemon, starts another and says the victim's state.
drill() {{
  sleep 1000 & v=$!
  "$NM" --config {cfg} --execute 2>{d}/log.$1 & d=$!
  await Listening {d}/log.$1; p=$(port {d}/log.$1)
  post $p /api/faults/pause '{{"desc":"'$1'"}}' > {d}/answer.$1
  echo "paused.$1 $(st $v)"
  # The intent's line alone is left, cut at its end: the checkpoint knows more.
  n=$(grep -n '"desc":"'$1'"' $j | tail -n 1 | cut -d: -f1)
  case $1 in
    emptied) : > $j ;;
    cut) truncate -s 100 $j ;;
    cut-after-intent) truncate -s $(head -n $n $j | wc -c) $j ;;
  esac
  kill -KILL $d; wait $d 2>/dev/null
  case $1 in
    directory|null)
      # The journal's path is no regular file now: the start is refused (exit 2),
      # after the recovery has reverted from the checkpoint.
      mv $j $j.saved
      if [ $1 = directory ]; then mkdir $j; else ln -s /dev/null $j; fi
      "$NM" --config {cfg} --execute 2>{d}/log.$1.after; echo "exit.$1 $?"
      rm -r $j; mv $j.saved $j ;;
    renamed)
      # The fault's name now stands for another plugin's fault.
      sed 's/plugin: "process-pause", config: (duration: "10m", /plugin: "process-kill", config: (/' {cfg} > {d}/renamed.ron
      "$NM" --config {d}/renamed.ron --execute 2>{d}/log.$1.after & d=$!
      await Listening {d}/log.$1.after
      kill -TERM $d; wait $d ;;
    *)
      "$NM" --config {cfg} --execute 2>{d}/log.$1.after & d=$!
      await Listening {d}/log.$1.after
      kill -TERM $d; wait $d ;;
  esac
  echo "after.$1 $(st $v)"
  kill -KILL $v
}}
for case in emptied cut cut-after-intent directory null renamed; do drill $case; done
# Replaced by a symlink to /dev/null while the daemon runs: nothing is injected.
sleep 1000 & v=$!
"$NM" --config {cfg} --execute 2>{d}/log.null & d=$!
await Listening {d}/log.null; p=$(port {d}/log.null)
mv $j $j.saved; ln -s /dev/null $j
post $p /api/faults/pause '{{"desc":"into nothing"}}'
echo "null $(st $v)"
kill -KILL $d; wait $d 2>/dev/null
rm $j; mv $j.saved $j
# The filesystem remounted read-only while the daemon runs: the same.
"$NM" --config {cfg} --execute 2>{d}/log.ro & d=$!
await Listening {d}/log.ro; p=$(port {d}/log.ro)
mount -o remount,ro {d}/fs
post $p /api/faults/pause '{{"desc":"read-only"}}'
echo "ro $(st $v)"
kill -KILL $d; wait $d 2>/dev/null"#,
        d = dir.display()
    ));
    let log = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    for case in [
        "emptied",
        "cut",
        "cut-after-intent",
        "directory",
        "null",
        "renamed",
    ] {
        assert_eq!(
            pairs(&run.stdout, &format!("paused.{case}")),
            ["T"],
            "{}\n{}",
            run.stderr,
            log(&format!("log.{case}"))
        );
        assert_eq!(
            pairs(&run.stdout, &format!("after.{case}")),
            ["S"],
            "{case}: {}",
            log(&format!("log.{case}.after"))
        );
    }
    assert_eq!(pairs(&run.stdout, "exit.directory"), ["2"]);
    assert_eq!(pairs(&run.stdout, "exit.null"), ["2"]);
    assert!(log("log.directory.after").contains("it is a directory, not a regular file"));
    let answers: Vec<serde_json::Value> = json_lines(&run.stdout)
        .into_iter()
        .filter(|j| j.get("code").is_some())
        .collect();
    let [null, ro] = &answers[..] else {
        panic!("{}\n{}", run.stdout, run.stderr)
    };
    assert_eq!(null["code"], 503, "{null}");
    assert!(
        null["message"]
            .as_str()
            .unwrap()
            .ends_with("it is a device, not a regular file; the fault was not injected"),
        "{null}"
    );
    assert_eq!(ro["code"], 503, "{ro}");
    assert!(
        ro["message"]
            .as_str()
            .unwrap()
            .ends_with("Read-only file system (os error 30); the fault was not injected"),
        "{ro}"
    );
    assert_eq!(pairs(&run.stdout, "null"), ["S"]);
    assert_eq!(pairs(&run.stdout, "ro"), ["S"]);
    fs::remove_dir_all(dir).unwrap();
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// A big journal (40,000 faults, some 24 MB, a busy year) weighs on neither the start,
/// nor a page of history, nor the whole listing: each stays within a memory bound below
/// what holding the journal would take (before the checkpoint and the paged history, a
/// start held about 1 KiB a fault, and a look at the history 6 KiB).
#[test]
fn start_and_history_on_a_big_journal_stay_within_a_memory_bound() {
    use std::io::Write as _;
    let dir = temp_dir("drill-big");
    let journal = dir.join("journal.jsonl");
    let now = chrono::Utc::now();
    let faults = 40_000;
    {
        let mut out = std::io::BufWriter::new(fs::File::create(&journal).unwrap());
        for i in 0..faults {
            let at = (now - chrono::TimeDelta::days(300) + chrono::TimeDelta::minutes(4 * i))
                .to_rfc3339();
            writeln!(
                out,
                r#"{{"type":"intent","id":"1-{i}","at":"{at}","fault":"process-kill","plugin":"process-kill","trigger":"timer","desc":"by monkey","dry_run":true,"master_seed":1,"stream":"fault/process-kill","stream_position":{i},"seed":{i}}}"#
            )
            .unwrap();
            writeln!(
                out,
                r#"{{"type":"outcome","id":"1-{i}","at":"{at}","elapsed_ms":1,"result":"dry-run","action":"Kill","process":{{"name":"sleep","pid":{pid},"ppid":1,"cmdline":"sleep 600","user":"root","uid":0,"start_time":64996}},"signal":"SIGKILL","summary":"would send SIGKILL to sleep(PID:{pid})"}}"#,
                pid = 1000 + i % 30000
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
    let size_mib = fs::metadata(&journal).unwrap().len() >> 20;
    assert!(size_mib >= 20, "{size_mib} MiB");
    let cfg = config(&dir, "");
    with_pause(&cfg, "1m");
    // The first start reads it once, a line at a time (there is no checkpoint yet): the
    // most a start ever reads.
    {
        let mut daemon = Daemon::start(&["--config", &cfg]);
        let port = daemon.port();
        let started = peak_kib(daemon.pid());
        let page = http(port, "GET", "/api/history", &[], b"").json();
        assert_eq!(page["faults"].as_array().unwrap().len(), 100);
        assert!(page["next"].is_string());
        let served = peak_kib(daemon.pid());
        assert!(
            started < 32_000 && served < 32_000,
            "peak RSS {started} KiB after start, {served} KiB after a page, for a {size_mib} MiB journal"
        );
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(), Some(0));
    }
    // The whole listing, streamed, under a data limit below the journal's size.
    let run = std::process::Command::new("prlimit")
        .arg("--data=16777216")
        .arg("--")
        .arg(crate::util::bin())
        .args(["history", "--journal", journal.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        run.stdout.iter().filter(|b| **b == b'\n').count(),
        faults as usize
    );
    fs::remove_dir_all(dir).unwrap();
}

/// An I/O error (EIO, as a dying disk gives) on each of a fault's journal writes in
/// turn, through a library that fails the journal's writes on cue
/// (`tests/fixtures/eio/eio.c`): on the intent or on the prepared target, nothing is
/// injected; on the outcome, the fault is reverted at once. Then a pause that worked,
/// a SIGKILL, and the next start lets its victim go on.
#[test]
fn an_io_error_on_any_journal_write_leaves_no_victim_stopped() {
    let dir = temp_dir("drill-eio");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let lib = dir.join("libeio.so");
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eio/eio.c");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc runs");
    assert!(built.success());
    let run = in_namespace(&format!(
        r#"{PRELUDE}
j={d}/journal.jsonl
# The next $1 writes to the journal succeed, the rest fail with EIO.
eio() {{ echo $1 > {d}/eio.new && mv {d}/eio.new {d}/eio; }}
sleep 1000 & v=$!
LD_PRELOAD={lib} NM_EIO_FILE=$j NM_EIO_SWITCH={d}/eio "$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
for n in 0 1 2; do
  eio $n
  post $p /api/faults/pause '{{"desc":"after '$n' writes"}}'
  echo "eio$n $(st $v)"
done
rm {d}/eio
post $p /api/faults/pause '{{"desc":"whole"}}' >/dev/null
echo "paused $(st $v)"
kill -KILL $d; wait $d 2>/dev/null
"$NM" --config {cfg} --execute 2>{d}/log.after & d=$!
await Listening {d}/log.after
echo "after $(st $v)"
kill -TERM $d; wait $d; kill -KILL $v"#,
        d = dir.display(),
        lib = lib.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let answers: Vec<serde_json::Value> = json_lines(&run.stdout)
        .into_iter()
        .filter(|j| j.get("code").is_some())
        .collect();
    let [intent, prepared, outcome] = &answers[..] else {
        panic!("{}\n{}\n{log}", run.stdout, run.stderr)
    };
    for (answer, ends) in [
        (
            intent,
            "Input/output error (os error 5); the fault was not injected",
        ),
        (
            prepared,
            "Input/output error (os error 5); the fault was not injected",
        ),
        (
            outcome,
            "Input/output error (os error 5); the fault was reverted at once",
        ),
    ] {
        assert_eq!(answer["code"], 503, "{answer}\n{log}");
        assert!(
            answer["message"].as_str().unwrap().ends_with(ends),
            "{answer}"
        );
    }
    for n in 0..3 {
        assert_eq!(pairs(&run.stdout, &format!("eio{n}")), ["S"], "{log}");
    }
    assert_eq!(pairs(&run.stdout, "paused"), ["T"], "{log}");
    assert_eq!(pairs(&run.stdout, "after"), ["S"]);
    fs::remove_dir_all(dir).unwrap();
}
