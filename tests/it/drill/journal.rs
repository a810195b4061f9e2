//! The journal under stress: a full disk, torn or replaced files, I/O errors, rotation,
//! a big history.

use super::*;

#[test]
fn no_intent_on_disk_no_signal() {
    let dir = TestDir::new("drill-intent");
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
sleep 1000 & started $!; v=$!
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
}

/// Recovery needs only to read: with the state directory remounted read-only after a
/// crash mid-pause, the next start still resumes the victim from the journal, then
/// refuses to run (it could not journal anything) with one line and exit 2.
#[test]
fn recovery_reads_a_journal_it_cannot_write_then_the_start_is_refused() {
    let dir = TestDir::new("drill-ro-journal");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!; v=$!
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
    assert!(resumed(&run.stdout, "after"), "{}", run.stderr);
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
}

/// A full disk mid-fault: the journal's file system (a 64 KiB tmpfs) is filled so that a
/// pause's intent fits and its prepared target does not (nothing is done), then so that
/// the target fits and the outcome does not (the victim is resumed at once). Either way
/// the answer is 503, never 200; a half-written line is cut back, so once there is room
/// again every line of the journal reads whole and every fault is in it.
#[test]
fn a_full_disk_injects_nothing_or_reverts_at_once_never_leaves_a_victim_stopped() {
    let dir = TestDir::new("drill-enospc");
    let cfg = journal_on_tmpfs(&dir);
    let run = in_namespace(&format!(
        r#"{PRELUDE}
mkdir -p {d}/fs && mount -t tmpfs -o size=64k tmpfs {d}/fs || exit 99
j={d}/fs/journal.jsonl
sleep 1000 & started $!; v=$!
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
    assert!(resumed(&run.stdout, "after"), "resumed at once\n{log}");
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
}

#[test]
fn a_torn_journal_line_is_reported_and_the_rest_is_kept() {
    let _victim = Sleeper::start();
    let dir = TestDir::new("drill-torn");
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
}

/// A journal past `rotate_at` is rotated at start (and whenever it grows past it again):
/// the archive keeps the past, the budget and `history` read on into it, and an archive
/// older than `keep` is removed.
#[test]
fn the_journal_rotates_and_its_archives_are_read_on_and_kept_as_long_as_told() {
    let dir = TestDir::new("drill-rotate");
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
    let dir = TestDir::new("drill-broken");
    let cfg = journal_on_tmpfs(&dir);
    let run = in_namespace(&format!(
        r#"{PRELUDE}
mkdir -p {d}/fs && mount -t tmpfs -o size=1m tmpfs {d}/fs || exit 99
j={d}/fs/journal.jsonl
# Pauses a fresh victim through a fresh daemon, breaks the journal with "$1", SIGKILLs
# the daemon, starts another and says the victim's state.
drill() {{
  sleep 1000 & started $!; v=$!
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
sleep 1000 & started $!; v=$!
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
    let dir = TestDir::new("drill-big");
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
}

/// An I/O error (EIO, as a dying disk gives) on each of a fault's journal writes in
/// turn, through a library that fails the journal's writes on cue
/// (`tests/fixtures/eio/eio.c`): on the intent or on the prepared target, nothing is
/// injected; on the outcome, the fault is reverted at once. Then a pause that worked,
/// a SIGKILL, and the next start lets its victim go on.
#[test]
fn an_io_error_on_any_journal_write_leaves_no_victim_stopped() {
    let dir = TestDir::new("drill-eio");
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
sleep 1000 & started $!; v=$!
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
    assert!(resumed(&run.stdout, "after"), "{}", run.stdout);
}

/// Recovery reads what it can: a checkpoint that is garbage and an archive it may not
/// read (root's, mode 000, read by a daemon without `CAP_DAC_OVERRIDE`, as a systemd
/// unit may run it) are each said and passed over, and the fault the journal holds
/// open is reverted all the same.
#[test]
fn an_unreadable_archive_or_checkpoint_never_hides_the_journal_from_recovery() {
    let dir = TestDir::new("drill-unreadable-archive");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!; v=$!
"$NM" --config {cfg} --execute 2>{d}/log1 & d=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/pause '{{"desc":"x"}}' >/dev/null
kill -KILL $d; wait $d
echo "stopped $(st $v)"
echo garbage > {d}/journal.jsonl.checkpoint
a={d}/journal.jsonl-$(date -u -d '-1 hour' +%Y%m%dT%H%M%S.000Z)
echo '{{}}' > $a; chmod 000 $a
setpriv --bounding-set -dac_override,-dac_read_search "$NM" --config {cfg} --execute 2>{d}/log2 & d=$!
await 'Revert (recovery)' {d}/log2
echo "after $(became $v S)"
kill -TERM $d; wait $d"#,
        d = dir.display()
    ));
    assert_eq!(pairs(&run.stdout, "stopped"), ["T"], "{}", run.stderr);
    let log = fs::read_to_string(dir.join("log2")).unwrap();
    assert!(resumed(&run.stdout, "after"), "{log}\n{}", run.stderr);
    let said = |text: &str| log.lines().any(|l| l.contains(text));
    assert!(
        said(&format!(
            "journal: the checkpoint {}/journal.jsonl.checkpoint cannot be read (expected value at line 1 column 1); the journal is read from its start",
            dir.display()
        )),
        "{log}"
    );
    assert!(
        said("journal: cannot read the archive ")
            && said("(Permission denied (os error 13)); passed over"),
        "{log}"
    );
    assert!(
        said("Revert (recovery): reverted: sent SIGCONT to sleep(PID:2)"),
        "{log}"
    );
}
