//! Configuration files: every invalid fixture gives its exact message, every example
//! checks clean.

use std::{fs, path::Path};

use crate::util::{self, monkey, Drill, TestDir};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `tests/it/invalid_configs/NAME.ron` must fail `check-config` (and the daemon) with
/// exit code 2 and exactly `NAME.stderr` (`{file}` standing for the file's path).
#[test]
fn every_invalid_config_gives_its_exact_message() {
    let dir = repo().join("tests/it/invalid_configs");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        let file = path.to_str().unwrap();
        let expected = fs::read_to_string(path.with_extension("stderr"))
            .unwrap_or_else(|_| panic!("{file} has no .stderr beside it"))
            .replace("{file}", file);
        for args in [vec!["check-config", file], vec!["--config", file]] {
            let run = monkey(&args);
            assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
            assert_eq!(run.stderr, expected, "{args:?}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn all_errors_of_a_file_come_at_once() {
    let file = repo().join("tests/it/invalid_configs/all_errors_at_once.ron");
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    assert_eq!(run.stderr.lines().count(), 5, "{}", run.stderr);
    // A fault's own config is checked by its plugin even when values of the file were
    // refused: the daemon's start, check-config and `kill --config` say it all at once.
    for args in [
        vec!["check-config", file.to_str().unwrap()],
        vec!["--config", file.to_str().unwrap()],
        vec!["kill", "--config", file.to_str().unwrap()],
    ] {
        let run = monkey(&args);
        assert_eq!(run.code, Some(2), "{args:?}");
        assert!(
            run.stderr.contains("invalid days `8`"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("unknown signal `KILLL`"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn every_example_config_checks_clean() {
    let mut checked = 0;
    for entry in fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ron") {
            let run = monkey(&["check-config", path.to_str().unwrap()]);
            assert_eq!(run.code, Some(0), "{}: {}", path.display(), run.stderr);
            assert!(run.stdout.starts_with(&format!("{}: ok\n", path.display())));
            checked += 1;
        }
    }
    assert!(checked >= 3);
    // The fault example is a plugin config: it must be accepted as --fault-config.
    let fault = fs::read_to_string(repo().join("examples/faults/process-kill.ron")).unwrap();
    let run = monkey(&["kill", "--seed", "1", "--json", "--fault-config", &fault]);
    assert_ne!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn flags_override_the_file() {
    let file = repo().join("examples/tokyo-office-hours.ron");
    let run = monkey(&[
        "plan",
        "--config",
        file.to_str().unwrap(),
        "--seed",
        "1",
        "--count",
        "3",
        "--min-interval",
        "60",
        "--max-interval",
        "60",
        "--from",
        "2026-12-01T10:00:00+09:00",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Uniform 60 s from the flags replaces the file's exponential schedule; the file's
    // zone still applies.
    assert_eq!(
        run.stdout,
        "2026-12-01T10:01:00+09:00 process-kill\n2026-12-01T10:02:00+09:00 process-kill\n2026-12-01T10:03:00+09:00 process-kill\n"
    );
}

/// Days as crontab(5) writes them mean the same from `-d` and from `window.days`: a fault a
/// day for a week lands on exactly these weekdays, and the banner names them.
#[test]
fn days_read_as_crontab_from_the_flag_and_the_file() {
    use chrono::Datelike;

    let dir = crate::util::TestDir::new("cron-days");
    let cases: &[(&str, &[u32], &str)] = &[
        ("0-7", &[0, 1, 2, 3, 4, 5, 6], "Sun thru Sat"),
        ("1-7", &[0, 1, 2, 3, 4, 5, 6], "Mon thru Sun"),
        ("*", &[0, 1, 2, 3, 4, 5, 6], "Sun thru Sat"),
        ("7", &[0], "Sun"),
        ("Mon-Fri", &[1, 2, 3, 4, 5], "Mon thru Fri"),
        ("sat,sun", &[0, 6], "Sat, Sun"),
        ("Fri-Mon", &[0, 1, 5, 6], "Fri thru Mon"),
    ];
    for &(days, weekdays, banner) in cases {
        let config = dir.join("days.ron");
        fs::write(&config, format!("(window: (days: {days:?}))")).unwrap();
        let config = config.to_str().unwrap();
        let plan = |window: &[&str]| {
            let mut args = vec![
                "plan",
                "--seed",
                "5",
                "--from",
                "2026-11-23T00:00:00Z",
                "--count",
                "7",
                "--min-interval",
                "86400",
                "--max-interval",
                "86400",
                "-t",
                "00:00-24:00",
                "--timezone",
                "UTC",
            ];
            args.extend_from_slice(window);
            let run = monkey(&args);
            assert_eq!(run.code, Some(0), "{days}: {}", run.stderr);
            run.stdout
        };
        let planned = plan(&["-d", days]);
        let mut seen: Vec<u32> = planned
            .lines()
            .map(|l| {
                let at = chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap());
                at.unwrap().weekday().num_days_from_sunday()
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, weekdays, "{days}: {planned}");
        assert_eq!(plan(&["--config", config]), planned, "{days} from the file");
        let checked = monkey(&["check-config", config]);
        assert!(
            checked
                .stdout
                .contains(&format!("playing from 11:00 to 18:00, {banner}.\n")),
            "{days}: {}",
            checked.stdout
        );
    }
}

#[test]
fn the_tokyo_drill_previews_the_same_every_time() {
    let file = repo().join("examples/tokyo-office-hours.ron");
    let args = [
        "plan",
        "--config",
        file.to_str().unwrap(),
        "--from",
        "2026-12-01T09:00:00+09:00",
        "--count",
        "5",
    ];
    let run = monkey(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, monkey(&args).stdout);
    assert!(
        run.stdout
            .lines()
            .all(|l| l.contains("+09:00 process-kill")),
        "{}",
        run.stdout
    );
}

#[test]
fn a_fifo_at_the_journal_path_is_refused_at_once_not_waited_on() {
    let dir = crate::util::TestDir::new("journal-fifo");
    let fifo = dir.join("journal.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let config = dir.join("c.ron");
    fs::write(&config, format!("(journal: {fifo:?})")).unwrap();
    for args in [
        vec!["check-config"],
        vec!["--listen", "127.0.0.1:0", "--config"],
    ] {
        let mut child = crate::util::command()
            .args(&args)
            .arg(&config)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > crate::util::DEADLINE {
                let _ = child.kill();
                panic!("{args:?}: still waiting on the FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.ends_with(&format!(
                "error: cannot open the journal {}: it is a FIFO, not a regular file\n",
                fifo.display()
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// A journal path that names a file of something else (a slip: `journal:
/// "/etc/passwd"`), or a place on `/proc`, is refused by check-config and the start
/// alike, and the file is left as it was.
#[test]
fn a_journal_path_that_names_something_else_is_refused_and_left_alone() {
    let dir = crate::util::TestDir::new("journal-else");
    let passwd = dir.join("passwd");
    let text = "root:x:0:0:root:/root:/bin/bash\n";
    fs::write(&passwd, text).unwrap();
    for (journal, why) in [
        (
            passwd.to_str().unwrap(),
            "it holds something else (its first byte begins no record): the daemon appends only to a journal of its own; name a new file",
        ),
        (
            "/proc/self/journal.jsonl",
            "it is on /proc, a view of the kernel, not a place for files",
        ),
    ] {
        let config = dir.join("c.ron");
        fs::write(&config, format!("(journal: {journal:?})")).unwrap();
        for args in [
            vec!["check-config"],
            vec!["--listen", "127.0.0.1:0", "--config"],
        ] {
            let mut all = args.clone();
            all.push(config.to_str().unwrap());
            let run = monkey(&all);
            assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
            assert!(
                run.stderr
                    .contains(&format!("error: cannot open the journal {journal}: {why}\n")),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(fs::read_to_string(&passwd).unwrap(), text);
}

/// A state directory that cannot be created (here on a read-only file system, mounted
/// in a namespace of the test's own) is refused by check-config exactly as the daemon
/// refuses it at start: the same lines, exit 2 both.
#[test]
fn check_config_refuses_an_uncreatable_state_directory_as_the_daemon_does() {
    let dir = crate::util::TestDir::new("ro-state");
    let cfg = dir.join("ro.ron");
    fs::write(
        &cfg,
        format!(
            r#"(state_dir: {:?}, http: (enabled: false), pollers: {{"likes": Qiita(item_id: "abc")}})"#,
            dir.join("ro/state")
        ),
    )
    .unwrap();
    let run = crate::util::in_namespace(&format!(
        r#"mkdir -p {d}/ro && mount -t tmpfs -o ro tmpfs {d}/ro || exit 99
"$NM" check-config {cfg} 2>{d}/check; echo "check $?"
"$NM" --config {cfg} 2>{d}/daemon; echo "daemon $?""#,
        d = dir.display(),
        cfg = cfg.display()
    ));
    assert_eq!(
        crate::util::pairs(&run.stdout, "check"),
        ["2"],
        "{}",
        run.stderr
    );
    assert_eq!(crate::util::pairs(&run.stdout, "daemon"), ["2"]);
    let check = fs::read_to_string(dir.join("check")).unwrap();
    let daemon = fs::read_to_string(dir.join("daemon")).unwrap();
    let state = dir.join("ro/state");
    assert_eq!(
        check,
        format!(
            "error: cannot open the journal {s}/journal.jsonl: Read-only file system (os error 30)\nerror: poller likes: cannot create state directory {s}: Read-only file system (os error 30)\n",
            s = state.display()
        )
    );
    assert_eq!(daemon, check, "the daemon refuses the same way");
}

/// One grammar for durations: a fault's `duration` takes seconds as a number, as the
/// daemon's own settings do (`Exponential(mean: 90)`), or a duration text.
#[test]
fn every_fault_duration_takes_a_number_of_seconds_or_a_duration() {
    let dir = TestDir::new("config-durations");
    let file = dir.join("d.ron");
    fs::write(
        &file,
        format!(
            r#"(
    schedule: Exponential(mean: 90),
    timer: (enabled: false),
    faults: {{
        "freeze": (plugin: "process-pause", config: (duration: 90)),
        "hog": (plugin: "cpu-hog", config: (duration: "1m30s")),
        "mem": (plugin: "memory-hog", config: (duration: 90)),
        "fill": (plugin: "disk-fill", config: (path: {dir:?}, duration: "90")),
    }},
)"#
        ),
    )
    .unwrap();
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = monkey(&[
        "kill",
        "--plugin",
        util::built_lib("libstale_lock.so").to_str().unwrap(),
        "--fault-config",
        &format!("(path: {:?}, duration: 90)", dir.join("lock")),
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        answer["summary"]
            .as_str()
            .unwrap()
            .ends_with(" behind for 90 s"),
        "{answer}"
    );
}

/// PLUGINS.md's drill is safe to start as written, with `--execute` too: it names one
/// fault, so that fault alone is armed (no `process-kill` on the timer).
#[test]
fn the_plugin_guides_drill_arms_only_its_own_fault() {
    let guide = fs::read_to_string(repo().join("PLUGINS.md")).unwrap();
    let drill = guide
        .split("```ron\n")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("\"lockout\"") && b.contains("plugin_dirs"))
        .expect("PLUGINS.md has the drill config");
    let dir = TestDir::new("config-guide-drill");
    let plugins = dir.join("plugins");
    fs::create_dir(&plugins).unwrap();
    util::trusted_mode(&plugins);
    fs::copy(
        util::built_lib("libfault_template.so"),
        plugins.join("libfault_template.so"),
    )
    .unwrap();
    let file = dir.join("drill.ron");
    fs::write(
        &file,
        // The template, built here, is the guide's lock-config under its first name.
        drill
            .replace("/tmp/pluginwalk", dir.to_str().unwrap())
            .replace("\"lock-config\"", "\"fault-template\""),
    )
    .unwrap();
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("\n  faults: lockout\n  timer: fires lockout\n"),
        "{}",
        run.stdout
    );
}

/// With several faults named, none of them `process-kill`, and the timer off, nothing is
/// armed by default: `POST /api/kill` answers 404 naming what to configure (no fault of
/// the original's appears), each fault still fires by its name, and `kill --config`
/// asks for `--fault`.
#[test]
fn api_kill_without_a_fault_for_the_timer_says_what_to_configure() {
    let dir = TestDir::new("config-no-kill-fault");
    let cfg = Drill::new(&dir)
        .named("c.ron")
        .config(
            r#"faults: {"gentle": (plugin: "process-kill", config: (signal: "TERM")), "freeze": (plugin: "process-pause")}"#,
        )
        .write();
    let mut d = util::Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let kill = util::http(port, "POST", "/api/kill", &[], br#"{"desc":"x"}"#);
    assert_eq!(kill.status, 404, "{}", kill.body);
    assert_eq!(
        kill.json()["message"],
        r#"POST /api/kill fires the timer's fault, and the config names none: several faults are configured (freeze, gentle); fire one with POST /api/faults/NAME, or name it in the config with timer: (fault: "NAME")"#
    );
    let plugins = util::http(port, "GET", "/api/plugins", &[], b"").json();
    assert_eq!(
        plugins["faults"],
        serde_json::json!([{"name": "freeze", "plugin": "process-pause"}, {"name": "gentle", "plugin": "process-kill"}])
    );
    let _victim = util::Sleeper::start();
    let gentle = util::http(port, "POST", "/api/faults/gentle", &[], br#"{"desc":"x"}"#);
    assert_eq!(gentle.status, 200, "{}", gentle.body);
    let once = monkey(&["kill", "--config", &cfg]);
    assert_eq!(once.code, Some(2));
    assert_eq!(
        once.stderr,
        format!(
            "error: --fault: {} configures several faults and none for the timer: name the one to inject (configured: freeze, gentle)\n",
            cfg
        )
    );
    drop(d);
}

/// `check-config FILE | head -c 10`: a reader that goes away ends nothing; the check's
/// exit status is still its own, and no panic is printed.
#[test]
fn check_config_into_a_closed_pipe_is_still_a_clean_check() {
    let file = repo().join("examples/fast-demo.ron");
    let (reader, writer) = std::io::pipe().unwrap();
    // Nobody reads: the first write fails with EPIPE.
    drop(reader);
    let out = util::command()
        .args(["check-config", file.to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// A config or token path that is no regular file, or a file past its bound, is refused
/// at once, saying what it is: a FIFO hung the start and SIGHUP's check (and every
/// SIGHUP after it) without a word, and `/dev/zero` was read until memory ran out. A
/// SIGHUP once the file is put right applies it.
#[test]
fn a_config_or_token_path_that_is_no_regular_file_is_refused_at_once() {
    let dir = TestDir::new("config-fifo");
    let fifo = dir.join("fifo.ron");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    // Bounded from outside: on a FIFO the old reading waited for good.
    let check = |file: &Path| -> util::Run {
        std::process::Command::new("timeout")
            .arg("20")
            .arg(util::bin())
            .args(["check-config", file.to_str().unwrap()])
            .output()
            .unwrap()
            .into()
    };
    let run = check(&fifo);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("it is a FIFO, not a regular file"),
        "{}",
        run.stderr
    );
    let token = dir.join("token.ron");
    fs::write(&token, r#"(http: (token_file: "/dev/zero"))"#).unwrap();
    let run = check(&token);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read token file /dev/zero: it is a device, not a regular file"),
        "{}",
        run.stderr
    );
    let huge = dir.join("huge.ron");
    fs::write(&huge, format!("({})", " ".repeat(1024 * 1024))).unwrap();
    let run = check(&huge);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("it is 1048578 bytes long, more than the 1048576 read"),
        "{}",
        run.stderr
    );

    // SIGHUP: the config replaced by a FIFO is said and not applied; put right, the
    // next SIGHUP applies it.
    let config = Drill::new(&dir).named("c.ron").without("timer").write();
    let mut d = util::Daemon::start(&["--listen", "127.0.0.1:0", "--config", &config]);
    d.port();
    fs::remove_file(&config).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        Path::new(&config),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("not a regular file"));
    assert!(line.contains("it is a FIFO"), "{line}");
    d.wait_for(|l| l.contains("not applied"));
    fs::remove_file(&config).unwrap();
    Drill::new(&dir).named("c.ron").without("timer").write();
    d.signal("HUP");
    d.wait_for(|l| l.contains("the configuration checks out"));
    d.port();
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}
