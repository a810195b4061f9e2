//! The journal's bounds, through the real daemon.

use std::fs;

use crate::util::{http, Daemon, Drill, TestDir};

/// A daemon config in `dir`: the common header, then `rest`.
fn config(dir: &std::path::Path, rest: &str) -> String {
    Drill::new(dir).named("cfg.ron").config(rest).write()
}

/// `journal_retention.max_size` is a bound, also for archives rotated within the last
/// day (they used to stay whatever the size: 1.87 MB of archives against 128 KiB); a
/// removal of one of those is said, with what it means for the budget.
#[test]
fn max_size_bounds_the_archives_of_the_last_day() {
    let dir = TestDir::new("journal-max-size");
    // Its own victim, the only one the fault may choose: a host (a CI container whose
    // PID 1 reaps nothing) may have no eligible process of its own.
    let victim = Victim(
        std::process::Command::new("sh")
            .args(["-c", "read x", "journal-max-size"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cfg = config(
        &dir,
        r#"journal_retention: (rotate_at: "64KiB", max_size: "128KiB"),
           faults: { "process-kill": (config: (include_cmdlines: ["^sh -c read x journal-max-size$"])) }"#,
    );
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    // About 1.5 KB a dry run with this description: some 900 KB, fourteen rotations.
    let body = format!(r#"{{"desc":"{}"}}"#, "x".repeat(900));
    for _ in 0..600 {
        let answer = http(port, "POST", "/api/kill", &[], body.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let said = d.wait_for(|l| l.contains("past journal_retention.max_size"));
    assert!(
        said.ends_with(", though it holds records of the last day: a restart counts against the budget only what the journal and its newest archive still hold; raise max_size to keep a day)"),
        "{said}"
    );
    // The last checkpoint, at the exit, rotates and prunes as any other.
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    let mut archives: Vec<(String, u64)> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(name, _)| name.starts_with("journal.jsonl-"))
        .collect();
    archives.sort();
    let total: u64 = archives.iter().map(|(_, len)| len).sum();
    let newest = archives.last().map_or(0, |(_, len)| *len);
    assert!(
        total <= (128 * 1024).max(newest),
        "{total} bytes of archives: {archives:?}"
    );
    assert!(!archives.is_empty(), "{:?}", d.log);
    drop(victim);
}

/// A start on a full disk is refused, in one line, exit 2, after recovery (it needs
/// only to read): opening a file for appends writes nothing, so the daemon used to start
/// and then refuse every fault.
#[test]
fn a_start_on_a_full_disk_is_refused() {
    let dir = TestDir::new("journal-full-disk");
    let journal = dir.join("fs/journal.jsonl");
    let cfg = config(&dir, &format!("journal: {journal:?}"));
    let run = crate::util::in_namespace(&format!(
        r#"mkdir -p {d}/fs && mount -t tmpfs -o size=64k tmpfs {d}/fs || exit 99
dd if=/dev/zero of={d}/fs/fill bs=4096 2>/dev/null
"$NM" --config {cfg}; echo "code $?"
"$NM" check-config {cfg} 2>{d}/check; echo "check $?""#,
        d = dir.display(),
    ));
    // check-config (and a SIGHUP's check, the same) says so too: a restart onto the full
    // disk would stop the daemon.
    assert_eq!(
        crate::util::pairs(&run.stdout, "check"),
        ["2"],
        "{}",
        run.stderr
    );
    let check = fs::read_to_string(dir.join("check")).unwrap_or_default();
    assert!(
        check.contains("no space left on its file system (0 bytes free"),
        "{check}"
    );
    assert_eq!(
        crate::util::pairs(&run.stdout, "code"),
        ["2"],
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot open the journal {}: no space left on its file system (0 bytes free; a fault's records need some KiB)\n",
            journal.display()
        )
    );
}

/// A command line is kept to the same 300 bytes everywhere: the API's answer, the
/// journal and the log (the answer and the journal used to carry 2 KB of it whole).
#[test]
fn a_command_line_is_cut_alike_in_the_answer_the_journal_and_the_log() {
    let dir = TestDir::new("journal-cmdline");
    let long = "a".repeat(2000);
    // A shell waiting on a pipe nobody writes: no child of its own to leave behind.
    let victim = Victim(
        std::process::Command::new("sh")
            .args(["-c", "read x", &long])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cfg = config(
        &dir,
        r#"faults: { "process-kill": (config: (include_cmdlines: ["^sh -c read x a+$"])) }"#,
    );
    let mut d = Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"long"}"#);
    let cut = format!("sh -c read x {}… (1713 more bytes)", "a".repeat(287));
    assert_eq!(
        answer.json()["process"]["cmdline"],
        cut.as_str(),
        "{}",
        answer.body
    );
    let logged = d.wait_for(|l| l.starts_with("dry-run: "));
    assert!(logged.contains(&format!("cmdline {cut:?}")), "{logged}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let outcome: serde_json::Value = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|r: &serde_json::Value| r["type"] == "outcome")
        .unwrap();
    assert_eq!(outcome["process"]["cmdline"], cut.as_str(), "{outcome}");
    drop(victim);
}

/// A child of the test, killed by its exact PID when dropped (a failed test included).
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--state-dir` says where the state goes; the daemon names its journal at start, and
/// what it creates there is its user's alone: the directory 0700, every file 0600 (the
/// journal names host processes and their command lines).
#[test]
fn the_state_goes_where_told_named_and_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TestDir::new("journal-state-dir");
    let state = dir.join("state");
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "-d",
        "*",
        "-t",
        "00:00-24:00",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let port = d.port();
    let journal = state.join("journal.jsonl");
    assert!(
        d.log.contains(&format!("Journal: {}", journal.display())),
        "{:?}",
        d.log
    );
    let answer = http(port, "POST", "/api/kill", &[], br#"{"desc":"private"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let files: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.contains(&journal), "{files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

/// A process of the test's own holding a file's `flock`, as a backup holds the
/// journal's: `flock` takes the lock and runs a shell that says its PID and becomes
/// `sleep`.
struct LockHolder {
    flock: std::process::Child,
    sleeper: u32,
}

impl LockHolder {
    fn take(path: &std::path::Path) -> LockHolder {
        use std::io::BufRead as _;
        let mut flock = std::process::Command::new("flock")
            .arg(path)
            .args(["sh", "-c", "echo $$; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock (util-linux)");
        let mut said = String::new();
        std::io::BufReader::new(flock.stdout.take().unwrap())
            .read_line(&mut said)
            .unwrap();
        let sleeper = said.trim().parse().unwrap();
        LockHolder { flock, sleeper }
    }

    /// The PID `/proc/locks` names: `flock`'s, which took the lock.
    fn pid(&self) -> u32 {
        self.flock.id()
    }

    /// Lets go: the holder and its sleep, our own, killed by their exact PIDs.
    fn release(mut self) {
        for pid in [self.sleeper, self.flock.id()] {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.flock.wait();
    }
}

/// A start while another process holds the journal's lock (a backup taking the
/// writers' lock) says whom it waits for, and goes on once that one lets go.
#[test]
fn a_start_that_waits_for_the_journals_lock_says_whom_it_waits_for() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TestDir::new("start-locked-journal");
    let cfg = Drill::new(&dir).named("cfg.ron").without("timer").write();
    let journal = dir.join("journal.jsonl");
    fs::write(&journal, "").unwrap();
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o600)).unwrap();
    let holder = LockHolder::take(&journal);
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let waiting = daemon.wait_for(|l| l.starts_with("journal: "));
    let flock = holder.pid();
    holder.release();
    assert_eq!(
        waiting,
        format!(
            "journal: {} is locked by PID {flock} (flock); the start waits until it lets go",
            journal.display(),
        )
    );
    let port = daemon.port();
    assert_eq!(
        http(port, "POST", "/api/kill", &[], br#"{"desc":"after"}"#).status,
        200
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0), "{:?}", daemon.log);
}

/// A process that holds the journal's lock (a backup taking the writers' lock) while a
/// fault waits for it holds up no exit: the last checkpoint is given up, said, and the
/// daemon is gone within its bound.
#[test]
fn a_journal_locked_by_another_process_holds_up_no_exit() {
    let _victim = crate::util::Sleeper::start();
    let dir = TestDir::new("locked-journal");
    let cfg = Drill::new(&dir).named("cfg.ron").without("timer").write();
    let mut daemon = Daemon::start(&["--config", &cfg]);
    let port = daemon.port();
    let kill = move |desc: &str| {
        http(
            port,
            "POST",
            "/api/kill",
            &[],
            format!(r#"{{"desc":"{desc}"}}"#).as_bytes(),
        )
    };
    assert_eq!(kill("first").status, 200, "the journal exists");
    let holder = LockHolder::take(&dir.join("journal.jsonl"));
    // A fault now waits for the lock in the kernel (its answer never comes: the
    // daemon ends first).
    let asking = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = r#"{"desc":"blocked"}"#;
        let _ = write!(
            stream,
            "POST /api/kill HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let waiter = format!(" -> FLOCK  ADVISORY  WRITE {} ", daemon.pid());
    let end = std::time::Instant::now() + crate::util::DEADLINE;
    while !fs::read_to_string("/proc/locks").unwrap().contains(&waiter) {
        assert!(
            std::time::Instant::now() < end,
            "the fault never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait_exit();
    let took = started.elapsed();
    holder.release();
    let _ = asking.join();
    // 3 s promised; as much again for a busy machine. The lock's holder lives 30 s.
    assert!(
        took < std::time::Duration::from_secs(6),
        "{took:?}: {:?}",
        daemon.log
    );
    assert!(
        daemon.log.iter().any(|l| l.starts_with(&format!(
            "journal: no last checkpoint of {}/journal.jsonl within 300ms (a write waits for the journal's lock",
            dir.display()
        ))),
        "{:?}",
        daemon.log
    );
    // A dry run abandoned leaves nothing in effect.
    assert_eq!(code, Some(0), "{:?}", daemon.log);
    assert!(
        !daemon
            .log
            .iter()
            .any(|l| l.contains("its caller went away")),
        "the daemon went away, not the caller: {:?}",
        daemon.log
    );
}
