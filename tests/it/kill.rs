//! `nightmare-monkey kill`: choice, exactness, reproducibility and safety.

use std::{collections::BTreeSet, process::Command};

use crate::util::{in_namespace, json_lines, monkey, pairs, resumed, Drill, TestDir};

fn pids(text: &str, key: &str) -> Vec<u64> {
    pairs(text, key)
        .iter()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// `state PID S` lines: the process state letter, or `gone`.
fn states(text: &str) -> Vec<(u64, String)> {
    pairs(text, "state")
        .iter()
        .map(|l| {
            let (pid, state) = l.split_once(' ').unwrap();
            (pid.parse().unwrap(), state.to_owned())
        })
        .collect()
}

const PRINT_STATES: &str = r#"for p in $victims; do
  s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); echo "state $p ${s:-gone}"
done"#;

#[test]
fn dry_run_leaves_every_victim_alive_and_prints_the_original_line() {
    let run = in_namespace(&format!(
        r#"victims=""; for i in 1 2 3 4 5; do sleep 1000 & started $!; victims="$victims $!"; echo "victim $!"; done
"$NM" kill --seed 1
{PRINT_STATES}"#
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let victims = pids(&run.stdout, "victim");
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains("Kill")).collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    let (stamp, rest) = lines[0].split_at(20);
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999/99/99 99:99:99 ");
    let chosen = victims
        .iter()
        .find(|v| rest == format!("(Dryrun) Kill: sleep(PID:{v} PPID:1) - by monkey"))
        .unwrap_or_else(|| panic!("unexpected line {rest:?}"));
    let result = run.stdout.lines().find(|l| l.contains("dry-run:")).unwrap();
    assert!(
        result.ends_with(&format!(
            " dry-run: would send SIGKILL to sleep(PID:{chosen}) [user root, cmdline \"sleep 1000\"]"
        )),
        "{result}"
    );
    for (pid, state) in states(&run.stdout) {
        assert_eq!(state, "S", "victim {pid} was touched by a dry run");
    }
}

#[test]
fn execute_kills_exactly_the_reported_process() {
    let run = in_namespace(&format!(
        r#"victims=""; for i in 1 2 3 4 5; do sleep 1000 & started $!; victims="$victims $!"; done
"$NM" kill --execute --json --seed 7 --desc "game day"
{PRINT_STATES}"#
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &json_lines(&run.stdout)[0];
    assert_eq!(out["result"], "killed");
    assert_eq!(out["dry_run"], false);
    assert_eq!(out["desc"], "game day");
    assert_eq!(out["name"], "sleep");
    assert_eq!(out["ppid"], 1);
    assert_eq!(out["signal"], "SIGKILL");
    assert_eq!(out["process"]["cmdline"], "sleep 1000");
    assert_eq!(out["process"]["user"], "root");
    let killed = out["pid"].as_u64().unwrap();
    let states = states(&run.stdout);
    assert_eq!(states.len(), 5);
    for (pid, state) in states {
        if pid == killed {
            assert!(state == "Z" || state == "gone", "{pid} is {state}");
        } else {
            assert_eq!(state, "S", "{pid} was not the reported victim");
        }
    }
}

#[test]
fn executed_line_has_no_dryrun_mark_and_reports_the_result() {
    let run = in_namespace(
        r#"sleep 1000 & started $!; echo "victim $!"
"$NM" kill --execute --seed 3"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v = pids(&run.stdout, "victim")[0];
    let lines: Vec<&str> = run.stdout.lines().skip(1).map(|l| &l[20..]).collect();
    assert_eq!(
        lines,
        [
            format!("Kill: sleep(PID:{v} PPID:1) - by monkey"),
            format!("killed: sent SIGKILL to sleep(PID:{v}), it exited [user root, cmdline \"sleep 1000\"]"),
        ]
    );
}

#[test]
fn pid_1_and_the_monkeys_ancestors_are_never_chosen() {
    let run = in_namespace(
        r#"for i in 1 2 3; do sleep 1000 & started $!; echo "victim $!"; done
sh -c 'echo "ancestor $$"; i=0; while [ $i -lt 60 ]; do "$NM" kill --json --seed $i || exit 1; i=$((i+1)); done'"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let victims: BTreeSet<u64> = pids(&run.stdout, "victim").into_iter().collect();
    let ancestor = pids(&run.stdout, "ancestor")[0];
    let chosen: Vec<u64> = json_lines(&run.stdout)
        .iter()
        .map(|o| o["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(chosen.len(), 60);
    for pid in &chosen {
        assert!(*pid != 1 && *pid != ancestor, "chose protected PID {pid}");
        assert!(victims.contains(pid), "chose {pid}, not one of {victims:?}");
    }
    // Uniform over the three victims: each is hit (missing one has odds below 1e-10).
    assert_eq!(chosen.iter().copied().collect::<BTreeSet<_>>(), victims);
}

#[test]
fn a_process_that_ignores_the_signal_is_reported_survived() {
    let run = in_namespace(
        r#"sh -c 'trap "" TERM; exec sleep 1000' & v=$!; echo "victim $v"
while [ "$(cat /proc/$v/comm)" != sleep ]; do :; done
"$NM" kill --execute --json --fault-config '(signal: "TERM", grace_ms: 300)'
echo "state $v $(cut -d' ' -f3 /proc/$v/stat)""#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v = pids(&run.stdout, "victim")[0];
    let out = &json_lines(&run.stdout)[0];
    assert_eq!(out["pid"], v);
    assert_eq!(out["signal"], "SIGTERM");
    assert_eq!(out["result"], "survived");
    assert_eq!(
        out["summary"],
        format!("sent SIGTERM to sleep(PID:{v}), still alive after 300 ms")
    );
    assert_eq!(states(&run.stdout), [(v, "S".to_owned())]);
}

#[test]
fn the_same_seed_picks_the_same_victim_and_other_seeds_vary() {
    let run = in_namespace(
        r#"for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & started $!; done
"$NM" kill --json --seed 5; "$NM" kill --json --seed 5
for s in 0 1 2 3 4 5 6 7 8 9; do "$NM" kill --json --seed $s; done"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let chosen: Vec<u64> = json_lines(&run.stdout)
        .iter()
        .map(|o| o["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(chosen[0], chosen[1]);
    assert_eq!(chosen[0], chosen[2 + 5], "seed 5 once more");
    assert!(chosen[2..].iter().collect::<BTreeSet<_>>().len() >= 3);
}

#[test]
fn without_a_seed_one_is_drawn_and_printed_and_replays() {
    let run = in_namespace(
        r#"for i in 1 2 3 4 5 6 7 8; do sleep 1000 & started $!; done
"$NM" kill --json 2>seed.txt; cat seed.txt >&2
seed=$(sed -n 's/.*replay this pick with --seed \([0-9]*\).*/\1/p' seed.txt)
"$NM" kill --json --seed "$seed"; rm seed.txt"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains(" Seed: "), "{}", run.stderr);
    let out = json_lines(&run.stdout);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["pid"], out[1]["pid"]);
    assert_eq!(out[0]["master_seed"], out[1]["master_seed"]);
}

#[test]
fn no_eligible_process_is_a_clear_error() {
    let run = in_namespace(r#""$NM" kill --seed 1"#);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        "error: process-kill: no eligible process among 2 listed in /proc (PID 1, the monkey, its ancestors, kernel threads, zombies, stopped processes and processes under another fault are never chosen; check the include/exclude filters)\n"
    );
}

#[test]
fn filters_narrow_the_choice() {
    let run = in_namespace(
        r#"sleep 1000 & started $!; v=$!; echo "victim $v"; cat & echo "other $!"
# The fork is a shell until it has exec'd sleep: wait for that, or an early pick finds
# no "sleep" command line at all.
until [ "$(cat /proc/$v/comm)" = sleep ]; do :; done
i=0; while [ $i -lt 20 ]; do "$NM" kill --json --seed $i --fault-config '(include_cmdlines: ["^sleep "])'; i=$((i+1)); done
"$NM" kill --json --seed 1 --fault-config '(exclude_names: ["^(sleep|cat)$"])'; echo "code $?""#,
    );
    let v = pids(&run.stdout, "victim")[0];
    let out = json_lines(&run.stdout);
    assert_eq!(out.len(), 21);
    assert!(out[..20].iter().all(|o| o["pid"] == v));
    // The last finds none, and says so in JSON, as it was asked.
    assert_eq!(out[20]["error"]["code"], 1, "{}", out[20]);
    assert_eq!(pairs(&run.stdout, "code"), ["1"]);
}

#[test]
fn bad_fault_config_names_the_field_and_exits_2() {
    let run = monkey(&["kill", "--fault-config", "(signal: \"SIGFOO\")"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "error: invalid --fault-config for process-kill: signal: unknown signal `SIGFOO`: expected a name like SIGKILL, TERM or a number like 9\n"
    );
    let run = monkey(&["kill", "--fault-config", "(exclude_names: [\"(\"])"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with(
            "error: invalid --fault-config for process-kill: exclude_names: invalid regex `(`: "
        ),
        "{}",
        run.stderr
    );
    // A mistake RON itself finds: where, in words, after what.
    let run = monkey(&["kill", "--fault-config", "(signl: \"TERM\")"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with(
            "error: invalid --fault-config for process-kill: Unexpected field named `signl`"
        ) && run.stderr.ends_with(" (at column 2)\n"),
        "{}",
        run.stderr
    );
}

/// `--desc` takes what `POST /api/kill` takes as its `desc`: nothing empty, nothing past
/// 1024 bytes. Refused before anything is chosen or journaled (the journal given does
/// not even come to exist).
#[test]
fn a_description_the_api_would_refuse_is_a_usage_error() {
    let dir = TestDir::new("kill-desc");
    let journal = dir.join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let long = "x".repeat(1025);
    for (desc, message) in [
        (
            "",
            "the description must not be empty: say why, e.g. --desc 'game day'",
        ),
        (
            "  ",
            "the description must not be empty: say why, e.g. --desc 'game day'",
        ),
        (
            long.as_str(),
            "the description is 1025 bytes long, more than 1024: say why in a sentence",
        ),
    ] {
        let run = monkey(&["kill", "--seed", "1", "--journal", journal, "--desc", desc]);
        assert_eq!(run.code, Some(2), "{desc:?}: {}{}", run.stdout, run.stderr);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value ") && first.ends_with(&format!(": {message}")),
            "{desc:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{desc:?}: nothing chosen");
        assert!(
            !std::path::Path::new(journal).exists(),
            "{desc:?}: nothing journaled"
        );
    }
}

/// On this machine itself, dry runs only: over many seeds no kernel thread, PID 1 or
/// ancestor of the test is ever chosen.
#[test]
fn dry_runs_on_the_host_never_choose_kernel_threads_or_ancestors() {
    let mut children: Vec<_> = (0..3)
        .map(|_| Command::new("sleep").arg("1000").spawn().unwrap())
        .collect();
    let mut protected = BTreeSet::from([1u64]);
    let mut pid = std::process::id() as u64;
    while pid > 1 {
        protected.insert(pid);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        pid = after.split(' ').nth(1).unwrap().parse().unwrap();
    }
    for seed in 0..30 {
        let run = monkey(&["kill", "--json", "--seed", &seed.to_string()]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let out = &json_lines(&run.stdout)[0];
        assert_eq!(out["dry_run"], true);
        let chosen = out["pid"].as_u64().unwrap();
        assert!(!protected.contains(&chosen), "chose protected PID {chosen}");
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{chosen}/stat")) {
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let flags: u64 = after.split(' ').nth(6).unwrap().parse().unwrap();
            assert_eq!(flags & 0x0020_0000, 0, "chose kernel thread {chosen}");
        }
    }
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// `scope: Tree(PID)`: only that process and its descendants.
#[test]
fn a_tree_scope_confines_the_choice() {
    let run = in_namespace(
        r#"sh -c 'sleep 1000 & echo "child $!"; sleep 1000 & echo "child $!"; exec sleep 1000' & root=$!
echo "root $root"
for i in 1 2 3; do sleep 1000 & started $!; done
# The root execs sleep only after starting both children.
until [ "$(cat /proc/$root/comm)" = sleep ]; do :; done
i=0; while [ $i -lt 30 ]; do "$NM" kill --json --seed $i --fault-config "(scope: Tree($root))"; i=$((i+1)); done"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut tree: BTreeSet<u64> = pids(&run.stdout, "child").into_iter().collect();
    tree.insert(pids(&run.stdout, "root")[0]);
    let chosen: BTreeSet<u64> = json_lines(&run.stdout)
        .iter()
        .map(|o| o["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        chosen, tree,
        "only, and every one of, the tree under the root"
    );
}

/// `scope: Namespace(PID)`: only processes in that PID namespace (dry runs from outside it).
#[test]
fn a_namespace_scope_confines_the_choice() {
    let mut outside = Command::new("sleep").arg("1000").spawn().unwrap();
    let mut ns = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sleep",
            "1000",
        ])
        .spawn()
        .unwrap();
    // The namespace's PID 1 is the forked child of unshare; wait for it to be sleep.
    let children = format!("/proc/{}/task/{}/children", ns.id(), ns.id());
    let until = std::time::Instant::now() + crate::util::DEADLINE;
    let inner: u64 = loop {
        assert!(
            std::time::Instant::now() < until,
            "the namespace never started"
        );
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n") {
                break pid.parse().unwrap();
            }
        }
        std::thread::yield_now();
    };
    for seed in 0..10 {
        let config = format!("(scope: Namespace({inner}))");
        let run = monkey(&[
            "kill",
            "--json",
            "--seed",
            &seed.to_string(),
            "--fault-config",
            &config,
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(json_lines(&run.stdout)[0]["pid"], inner);
    }
    ns.kill().unwrap();
    ns.wait().unwrap();
    outside.kill().unwrap();
    outside.wait().unwrap();
}

/// `scope: Cgroup(PATH)`: only processes of that cgroup (here the test's own; dry runs).
#[test]
fn a_cgroup_scope_confines_the_choice() {
    // Ours, and killed however the test ends.
    let _sleeper = crate::util::Sleeper::start();
    let me = std::process::id().to_string();
    // The test's own cgroup, wherever this machine mounts its hierarchies.
    let lines = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let group = lines
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let first = controllers.split(',').next().unwrap_or_default();
            let candidates = if first.is_empty() {
                vec![path.to_owned(), format!("unified{path}")]
            } else {
                vec![format!("{first}{path}")]
            };
            candidates.into_iter().find(|c| {
                std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/cgroup.procs"))
                    .is_ok_and(|procs| procs.lines().any(|p| p == me))
            })
        })
        .next()
        .expect("the test runs in some cgroup");
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/{group}/cgroup.procs")).unwrap();
    for seed in 0..10 {
        let config = format!("(scope: Cgroup({group:?}))");
        let run = monkey(&[
            "kill",
            "--json",
            "--seed",
            &seed.to_string(),
            "--fault-config",
            &config,
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let pid = json_lines(&run.stdout)[0]["pid"].to_string();
        // Our cgroup, or one below it; a process of another test that has ended since
        // it was chosen cannot say, and is no counterexample.
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"));
        let mine = procs.lines().any(|p| p == pid)
            || cgroup
                .as_ref()
                .is_ok_and(|c| c.contains(group.trim_start_matches(|ch: char| ch != '/')));
        assert!(
            mine || cgroup.is_err(),
            "PID {pid} is not in cgroup {group}"
        );
    }
}

#[test]
fn the_pause_file_stops_a_one_shot_fault_too() {
    let dir = crate::util::TestDir::new("kill-paused");
    let run = |dir: &std::path::Path| {
        crate::util::command()
            .env("STATE_DIRECTORY", dir)
            .args(["kill", "--seed", "1", "--desc", "while paused"])
            .output()
            .unwrap()
    };
    std::fs::write(dir.join("paused"), "").unwrap();
    let refused = run(&dir);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!(
            "error: Nightmare Monkey is paused (the pause file {} exists; remove it to resume)\n",
            dir.join("paused").display()
        )
    );
    std::fs::remove_file(dir.join("paused")).unwrap();
    let dry = run(&dir);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("(Dryrun) Kill: "));
}

#[test]
fn with_config_kill_uses_a_configured_fault_its_exclusions_and_its_pause_file() {
    let dir = crate::util::TestDir::new("kill-config");
    let cfg = dir.join("c.ron");
    std::fs::write(
        &cfg,
        format!(
            r#"(
    journal: {:?},
    pause_file: {:?},
    window: (days: "0", time: "00:00-00:01"),
    faults: {{"process-kill": (), "gentle": (plugin: "process-kill", config: (signal: "TERM", exclude_names: ["^sleep$"]))}},
)"#,
            dir.join("journal.jsonl"),
            dir.join("paused"),
        ),
    )
    .unwrap();
    let run = in_namespace(&format!(
        r#"sleep 1000 & started $!; v=$!
until [ "$(cat /proc/$v/comm)" = sleep ]; do :; done
echo "victim $v"
"$NM" kill --config {cfg} --seed 1 --json; echo "default $?"
"$NM" kill --config {cfg} --fault gentle --seed 1; echo "gentle $?"
"$NM" kill --config {cfg} --fault nope --seed 1; echo "nope $?"
touch {paused}; "$NM" kill --config {cfg} --seed 1; echo "paused $?""#,
        cfg = cfg.display(),
        paused = dir.join("paused").display(),
    ));
    // The default fault (what /api/kill fires) may take the sleep; the window does not
    // hold for a one-shot fault.
    let v = pids(&run.stdout, "victim")[0];
    let out = json_lines(&run.stdout);
    assert_eq!(out.len(), 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(out[0]["pid"], v);
    assert_eq!(out[0]["fault"], "process-kill");
    assert_eq!(pairs(&run.stdout, "default"), ["0"]);
    // `gentle` excludes sleep: nothing else is eligible in the namespace.
    assert_eq!(pairs(&run.stdout, "gentle"), ["1"]);
    assert!(
        run.stderr.contains("error: gentle: no eligible process"),
        "{}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "nope"), ["2"]);
    assert!(
        run.stderr.contains(&format!(
            "error: --fault: no fault named `nope` is configured in {} (configured: gentle, process-kill)",
            cfg.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "paused"), ["1"]);
    assert!(run
        .stderr
        .contains("error: Nightmare Monkey is paused (the pause file"));
}

/// A reversible fault of a one-shot `kill` is reverted when due by the revert the
/// daemon's door schedules for every fault: journaled `due`, the victim running again,
/// and the command ends after it.
#[test]
fn a_one_shot_pause_is_reverted_when_due_through_the_door() {
    let dir = TestDir::new("kill-due");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(
            r#"faults: {"freeze": (plugin: "process-pause", config: (duration: "3s", include_cmdlines: ["^sleep 1000$"]))}"#,
        )
        .write();
    let run = in_namespace(&format!(
        r#"sleep 1000 & started $!; v=$!
until [ "$(cat /proc/$v/comm)" = sleep ]; do :; done
"$NM" kill --config {cfg} --fault freeze --execute --seed 1 --json & k=$!
n=0; until [ "$(cut -d' ' -f3 /proc/$v/stat)" = T ] || [ $n -ge 1500 ]; do n=$((n+1)); sleep 0.01; done
echo "during $(cut -d' ' -f3 /proc/$v/stat)"
wait $k; echo "code $?"
echo "after $(cut -d' ' -f3 /proc/$v/stat)""#
    ));
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "during"), ["T"], "{}", run.stderr);
    assert!(resumed(&run.stdout, "after"), "{}", run.stderr);
    assert_eq!(json_lines(&run.stdout)[0]["fault"], "freeze");
    assert!(
        run.stderr.contains(" Reverting at ") && run.stderr.contains(" Revert (due): reverted: "),
        "{}",
        run.stderr
    );
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let reverts: Vec<serde_json::Value> = json_lines(&journal)
        .into_iter()
        .filter(|r| r["type"] == "revert")
        .collect();
    assert_eq!(reverts.len(), 1, "{journal}");
    assert_eq!(reverts[0]["reason"], "due");
    assert_eq!(reverts[0]["result"], "reverted");
}

/// A process its operator stopped is no victim for a pause: the one-shot fault finds no
/// eligible process and journals nothing in effect, and the process is still stopped
/// afterwards (a pause that took it would have continued it at its revert).
#[test]
fn a_pause_leaves_a_process_its_operator_stopped_alone() {
    let dir = TestDir::new("kill-stopped");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(
            r#"faults: {"freeze": (plugin: "process-pause", config: (duration: "1s", include_cmdlines: ["^sleep 1000$"]))}"#,
        )
        .write();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"sleep 1000 & started $!; v=$!
until [ "$(cat /proc/$v/comm)" = sleep ]; do :; done
kill -STOP $v
until [ "$(cut -d' ' -f3 /proc/$v/stat)" = T ]; do :; done
"$NM" kill --config {cfg} --fault freeze --execute --seed 1 2>{d}/kill.log; echo "code $?"
echo "after $(cut -d' ' -f3 /proc/$v/stat)""#
    ));
    let log = std::fs::read_to_string(dir.join("kill.log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["1"], "{log}{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "after"), ["T"], "{log}");
    assert!(
        log.contains("error: freeze: no eligible process among")
            && log.contains("stopped processes"),
        "{log}"
    );
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    assert!(
        !journal.contains(r#""type":"revert""#) && !journal.contains(r#""result":"paused""#),
        "{journal}"
    );
}

/// A one-shot fault and a daemon on one journal never undo each other: a daemon started
/// while `kill --execute` holds its fault leaves it to the command (a dry one shares the
/// journal, one that executes is refused), and `kill --execute` is refused while a
/// daemon runs on the journal.
#[test]
fn a_one_shot_fault_and_a_daemon_on_one_journal_leave_each_other_alone() {
    let dir = TestDir::new("kill-owner");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(
            r#"faults: {"freeze": (plugin: "process-pause", config: (duration: "5m", include_cmdlines: ["^sleep 1000$"]))}"#,
        )
        .write();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"sleep 1000 & started $!; v=$!
until [ "$(cat /proc/$v/comm)" = sleep ]; do :; done
"$NM" kill --config {cfg} --fault freeze --execute --seed 1 2>{d}/kill.log & k=$!
n=0; until [ "$(cut -d' ' -f3 /proc/$v/stat)" = T ] || [ $n -ge 1500 ]; do n=$((n+1)); sleep 0.01; done
"$NM" --config {cfg} 2>{d}/dry.log & m=$!
n=0; until grep -q Listening {d}/dry.log || [ $n -ge 1500 ]; do n=$((n+1)); sleep 0.01; done
echo "beside $(cut -d' ' -f3 /proc/$v/stat)"
kill -TERM $m; wait $m
timeout 20 "$NM" --config {cfg} --execute 2>{d}/real.log; echo "real $?"
kill -INT $k; wait $k; echo "code $?"
"$NM" --config {cfg} --execute 2>{d}/daemon.log & m=$!
n=0; until grep -q Listening {d}/daemon.log || [ $n -ge 1500 ]; do n=$((n+1)); sleep 0.01; done
timeout 20 "$NM" kill --config {cfg} --fault freeze --execute --seed 1 2>{d}/refused.log; echo "refused $?"
echo "after $(cut -d' ' -f3 /proc/$v/stat)"
kill -TERM $m; wait $m"#
    ));
    let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "beside"), ["T"], "{}", log("dry.log"));
    assert_eq!(pairs(&run.stdout, "real"), ["2"], "{}", log("real.log"));
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{}", log("kill.log"));
    assert!(
        log("kill.log").contains(" Revert (interrupted): reverted: "),
        "{}",
        log("kill.log")
    );
    assert_eq!(
        pairs(&run.stdout, "refused"),
        ["2"],
        "{}",
        log("refused.log")
    );
    assert!(
        log("refused.log").contains(&format!(
            "runs on {d}/journal.jsonl (it holds {d}/journal.jsonl.owner): a real fault of this command would be the daemon's to revert at its next start"
        )),
        "{}",
        log("refused.log")
    );
    assert!(resumed(&run.stdout, "after"), "{}", run.stderr);
}
