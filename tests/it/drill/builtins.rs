//! The resource faults: disk-fill, cpu-hog and memory-hog, in effect and given back. Each
//! lasts 3 s: long enough to be seen in effect after its answer on a busy machine.

use super::*;

/// disk-fill on a tmpfs of the test's own (mounted in the test's namespace): filled to the
/// target when injected, freed when due, and freed by the next start after a crash.
#[test]
fn disk_fill_takes_the_space_and_gives_it_back_even_after_a_crash() {
    let dir = TestDir::new("drill-disk");
    let fs_dir = dir.join("fs");
    fs::create_dir_all(&fs_dir).unwrap();
    let cfg = Drill::new(&dir)
        .named("disk.ron")
        .set("state_dir", &format!("{:?}", dir.join("state")))
        .config(&format!(
            r#"faults: {{"disk": (plugin: "disk-fill", config: (path: {fs_dir:?}, target_percent: 50, floor_mib: 4, duration: "3s"))}}"#
        ))
        .write();
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
sed 's/"3s"/"10m"/' {cfg} > {long}
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
}

/// cpu-hog burns inside the daemon (its threads show in /proc) and stops when due.
#[test]
fn cpu_hog_burns_and_stops_when_due() {
    let dir = TestDir::new("drill-cpu");
    let cfg = Drill::new(&dir)
        .named("cpu.ron")
        .config(r#"faults: {"cpu": (plugin: "cpu-hog", config: (cores: 1, duration: "3s"))}"#)
        .write();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
hogs() {{ grep -l cpu-hog /proc/$1/task/*/comm 2>/dev/null | wc -l; }}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(hogs $m)"
post $p /api/faults/cpu '{{"desc":"hot"}}'
# A thread takes its name once it runs: on a busy machine, a moment after the answer.
n=0; while [ "$(hogs $m)" -eq 0 ] && [ $n -lt 250 ]; do n=$((n+1)); sleep 0.01; done
echo "burning $(hogs $m)"
await 'Revert (due)' {d}/log
n=0; while [ "$(hogs $m)" -gt 0 ] && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
echo "after $(hogs $m)"
kill -TERM $m; wait $m; echo "code $?""#,
        d = dir.display()
    ));
    assert_eq!(
        json_lines(&run.stdout)[0]["summary"],
        "burning 1 core(s) for 3s",
        "{}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "before"), ["0"]);
    assert_eq!(pairs(&run.stdout, "burning"), ["1"]);
    assert_eq!(pairs(&run.stdout, "after"), ["0"]);
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
}

/// memory-hog holds its memory inside the daemon (its RSS grows) and gives it back when due.
#[test]
fn memory_hog_holds_and_lets_go_when_due() {
    let dir = TestDir::new("drill-memory");
    let cfg = Drill::new(&dir)
        .named("memory.ron")
        .config(
            r#"faults: {"memory": (plugin: "memory-hog", config: (mib: 64, floor_mib: 64, duration: "3s"))}"#,
        )
        .write();
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
}
