//! Loading plugins from files: the `.so` of the built-in, clear refusals, caught panics.

use std::fs;

use std::path::{Path, PathBuf};

use crate::util::{
    built_lib, command, in_namespace, json_lines, monkey, pairs, trusted_mode, Daemon, Drill,
    TestDir,
};

/// The built-in's own `.so` loads like any other plugin; since the built-in takes its
/// name, `check` warns that the daemon would not use the file.
#[test]
fn check_prints_name_and_version_of_the_built_in_as_a_so() {
    let lib = built_lib("libprocess_kill.so");
    let run = monkey(&["plugins", "check", lib.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!(
            "process-kill 0.1.0 (plugin-api 1.1.0) from {}: signals one random process (never PID 1, the monkey, its ancestors or kernel threads)\n",
            lib.display()
        )
    );
    assert_eq!(
        run.stderr,
        "warning: the name `process-kill` is taken by a built-in fault: the daemon ignores this file in a plugin directory and refuses to start with it in `plugins: [...]`; give the plugin another NAME\n"
    );
}

#[test]
fn the_so_is_loaded_dynamically_and_kills() {
    let run = in_namespace(
        r#"sleep 1000 & started $!; echo "victim $!"
"$NM" kill --plugin "$LIB/libprocess_kill.so" --execute --json"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &json_lines(&run.stdout)[0];
    assert_eq!(out["pid"].to_string(), pairs(&run.stdout, "victim")[0]);
    assert_eq!(out["result"], "killed");
}

#[test]
fn a_garbage_file_is_not_a_shared_library() {
    let dir = TestDir::new("garbage");
    let file = dir.join("garbage.so");
    fs::write(&file, b"this is not ELF").unwrap();
    let run = monkey(&["plugins", "check", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot load plugin {}: not a shared library (expected an ELF .so built as a cdylib)\n",
            file.display()
        )
    );
}

#[test]
fn a_library_that_is_no_plugin_says_so() {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("the test links libc dynamically");
    let run = monkey(&["plugins", "check", libc]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!("error: cannot load plugin {libc}: not a nightmare-monkey plugin (it exports no nightmare_monkey_plugin_v1__* symbol; build it with nightmare_monkey_plugin_api::export_plugin!)\n")
    );
}

#[test]
fn a_missing_file_is_named() {
    let run = monkey(&["kill", "--plugin", "/nonexistent/libx.so"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "error: cannot load plugin /nonexistent/libx.so: no such file: check that its Cargo.toml has `crate-type = [\"cdylib\"]` under [lib] and that the build finished\n"
    );
    // What cargo leaves for a crate built without `crate-type = ["cdylib"]`.
    let dir = crate::util::TestDir::new("rlib-only");
    std::fs::write(dir.join("libx.rlib"), b"!<arch>\n").unwrap();
    let so = dir.join("libx.so");
    let run = monkey(&["kill", "--plugin", so.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot load plugin {}: no such file, but {} is there: the crate was built as a Rust library only; check that its Cargo.toml has `crate-type = [\"cdylib\"]` under [lib] and that the build finished\n",
            so.display(),
            dir.join("libx.rlib").display()
        )
    );
}

#[test]
fn a_panicking_plugin_yields_an_error_and_the_host_goes_on() {
    let lib = built_lib("libpanic_plugin.so");
    let run = monkey(&["kill", "--plugin", lib.to_str().unwrap(), "--seed", "1"]);
    // An error exit of our own, not an abort: the panic never crossed the boundary.
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with("error: panicky: the plugin panicked: panicky always panics\n"),
        "{}",
        run.stderr
    );
    let run = monkey(&[
        "kill",
        "--plugin",
        lib.to_str().unwrap(),
        "--fault-config",
        "(panic_in_new: true)",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.ends_with(
        "error: invalid --fault-config for panicky: the plugin panicked: panicky refuses to be built\n"
    ));
}

/// What a plugin file's worker leaves behind with setpgid() (a shell holding the
/// worker's stderr, and its child) does not outlive a one-shot `kill`, nor hold its
/// exit: the command adopts them as the daemon does, and ends them with the worker, the
/// child once the shell has ended. What the command inherited (a shell's background job
/// in a session of its own, still its child after `exec`) is not its orphan: left alone.
#[test]
fn kill_ends_what_escaped_its_plugin_and_leaves_what_it_inherited() {
    let lib = built_lib("libpanic_plugin.so");
    let script = format!(
        "setsid sleep 1000.66 >/dev/null 2>&1 & echo $!; exec {} kill --plugin {} --fault-config '(setpgid_then_exit: Some(\"1000.67\"))'",
        crate::util::bin().display(),
        lib.display()
    );
    let run = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let inherited = crate::util::alive_with_cmdline(b"sleep\x001000.66\x00");
    let escaped = crate::util::alive_with_cmdline(b"sleep\x001000.67\x00");
    // Ends the one this test started, by the PID its shell printed.
    let pid = String::from_utf8_lossy(&run.stdout);
    let pid = pid.lines().next().unwrap_or_default().trim();
    assert!(pid.parse::<u32>().is_ok(), "no PID printed: {pid:?}");
    let _ = std::process::Command::new("kill").arg(pid).status();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("its worker exited with status 3"),
        "{stderr}"
    );
    assert_eq!(
        (inherited, escaped),
        (1, 0),
        "the inherited sleep, the escaped one"
    );
}

/// `plugins check` and `check-config` start a worker for each plugin file: what its
/// plugin leaves behind while loading, in a process group of its own, does not outlive
/// the command (it adopts and ends it, as `kill` does).
#[test]
fn checks_end_what_a_plugin_leaves_behind_while_loading() {
    let dir = TestDir::new("checks-escape");
    let (cfg, lib) = panicky_daemon(
        &dir,
        "",
        r#""ok": (plugin: "panicky", config: (sleep_ms: 1)),"#,
    );
    // Short sleeps: whatever a failure leaves behind ends by itself.
    for (args, seconds) in [
        (vec!["plugins", "check", lib.to_str().unwrap()], "100.71"),
        (vec!["check-config", cfg.to_str().unwrap()], "100.72"),
    ] {
        let run = crate::util::command()
            .args(&args)
            .env("PANICKY_ESCAPE_ON_LOAD", seconds)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{args:?}: {said}");
        let cmdline = format!("sleep\0{seconds}\0");
        assert_eq!(
            crate::util::alive_with_cmdline(cmdline.as_bytes()),
            0,
            "{args:?} left its plugin's child behind"
        );
    }
}

/// `kill` gives up on a plugin that does not answer within `--plugin-timeout`, with one
/// line and a failure exit, rather than wait for ever.
#[test]
fn kill_gives_up_on_a_plugin_that_hangs() {
    let lib = built_lib("libpanic_plugin.so");
    let dir = TestDir::new("kill-timeout");
    let started = std::time::Instant::now();
    let run = monkey(&[
        "kill",
        "--plugin",
        lib.to_str().unwrap(),
        "--fault-config",
        "(sleep_ms: 600000)",
        // The deadline of the worker's load and of building the fault too (with eight
        // CPU hogs on two cores, a whole `kill` of a fault that answers at once took
        // 350 ms, five times as long as idle): only the hang is to meet it.
        "--plugin-timeout",
        "3s",
        "--seed",
        "1",
        "--journal",
        dir.join("journal.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: panicky: no answer from the plugin within 3s; given up (the journal keeps its intent)\n"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let run = monkey(&["kill", "--plugin-timeout", "0s"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid value '0s' for '--plugin-timeout <DURATION>': expected a duration longer than zero"),
        "{}",
        run.stderr
    );
}

#[test]
fn list_shows_built_ins_plugins_and_failures_side_by_side() {
    let dir = TestDir::new("list");
    fs::copy(
        built_lib("libpanic_plugin.so"),
        dir.join("libpanic_plugin.so"),
    )
    .unwrap();
    fs::copy(
        built_lib("libprocess_kill.so"),
        dir.join("libprocess_kill.so"),
    )
    .unwrap();
    fs::write(dir.join("broken.so"), b"nope").unwrap();
    fs::write(dir.join("README.txt"), b"not a plugin, not a .so").unwrap();
    // A second file of the same plugin: the daemon sets both aside.
    let again = TestDir::new("list-again");
    for file in ["libpanic_plugin.so", "libpanic_again.so"] {
        fs::copy(built_lib("libpanic_plugin.so"), again.join(file)).unwrap();
    }
    let twice = monkey(&["plugins", "list", "--plugin-dir", again.to_str().unwrap()]);
    let a = again.display();
    assert!(
        twice.stdout.ends_with(&format!(
            "panicky        0.1.0    1.1.0    {a}/libpanic_again.so (set aside: {a}/libpanic_plugin.so is named `panicky` too; neither loads: remove one)
panicky        0.1.0    1.1.0    {a}/libpanic_plugin.so (set aside: {a}/libpanic_again.so is named `panicky` too; neither loads: remove one)
"
        )),
        "{}",
        twice.stdout
    );
    let run = monkey(&["plugins", "list", "--plugin-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let d = dir.display();
    assert_eq!(
        run.stdout,
        format!(
            "NAME           VERSION  API      SOURCE
process-kill   0.1.0    1.1.0    built-in
process-pause  0.1.0    1.1.0    built-in
disk-fill      0.1.0    1.1.0    built-in
cpu-hog        0.1.0    1.1.0    built-in
memory-hog     0.1.0    1.1.0    built-in
net-loss       0.1.0    1.1.0    built-in
net-partition  0.1.0    1.1.0    built-in
net-reject     0.1.0    1.1.0    built-in
net-bandwidth  0.1.0    1.1.0    built-in
net-delay      0.1.0    1.1.0    built-in
net-proxy      0.1.0    1.1.0    built-in
-              -        -        cannot load plugin {d}/broken.so: not a shared library (expected an ELF .so built as a cdylib)
panicky        0.1.0    1.1.0    {d}/libpanic_plugin.so
process-kill   0.1.0    1.1.0    {d}/libprocess_kill.so (ignored: the name is taken by built-in)
"
        )
    );
}

/// A plugin directory someone named that does not exist is most likely a slip in its
/// name: `plugins list` refuses it, `check-config` and the daemon's start warn (a config
/// shared by hosts may name a directory some of them lack).
#[test]
fn a_named_plugin_directory_that_does_not_exist_is_said() {
    let dir = TestDir::new("missing-plugin-dir");
    let missing = dir.join("nope");
    let m = missing.display();
    let listed = monkey(&["plugins", "list", "--plugin-dir", missing.to_str().unwrap()]);
    assert_eq!(listed.code, Some(2), "{}", listed.stdout);
    assert_eq!(
        listed.stderr,
        format!("error: plugin directory {m} does not exist\n")
    );
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!("(plugin_dirs: [{:?}])", missing.to_str().unwrap()),
    )
    .unwrap();
    let checked = monkey(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    assert!(
        checked.stdout.contains(&format!(
            "  warning: plugin directory {m} does not exist: no plugin is loaded from it\n"
        )),
        "{}",
        checked.stdout
    );
    // The default directories, absent on most hosts, are not worth a word.
    let quiet = dir.join("quiet.ron");
    fs::write(&quiet, "()").unwrap();
    let checked = monkey(&["check-config", quiet.to_str().unwrap()]);
    assert!(!checked.stdout.contains("warning"), "{}", checked.stdout);
}

/// A plugin built against the frozen 1.0.0 copy of the interface
/// (`tests/fixtures/plugin-api-1.0.0`) still loads and works: a change to `plugin-api`
/// that would break older plugins fails here.
#[test]
fn a_plugin_built_against_the_frozen_1_0_0_interface_still_works() {
    let lib = built_lib("libcompat_plugin.so");
    let run = monkey(&["plugins", "check", lib.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!(
            "old-timer 1.0.0 (plugin-api 1.0.0+frozen) from {}: test fixture built against plugin-api 1.0.0\n",
            lib.display()
        )
    );
    assert_eq!(run.stderr, "", "a plugin of its own name: no warning");
    let run = monkey(&[
        "kill",
        "--plugin",
        lib.to_str().unwrap(),
        "--fault-config",
        "(sides: 6)",
        "--seed",
        "3",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &json_lines(&run.stdout)[0];
    let summary = out["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("rolled ") && summary.ends_with(" (dry run: true)"),
        "{summary}"
    );
    assert_eq!(out["fault"], "old-timer");
}

/// The fault template as a plugin author starts from it: installed into a plugin
/// directory, fired through the API, left in effect when the daemon is SIGKILLed; a next
/// daemon without the fault in its config says it cannot revert it (its config has a
/// required field) and leaves it; the one after, with it, reverts it from the journal,
/// by an instance built anew.
/// `--execute` only ever runs in a namespace.
#[test]
fn the_template_fault_is_reverted_by_the_next_daemon_after_a_crash() {
    let dir = TestDir::new("template-plugin");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    crate::util::trusted_mode(&plugins);
    fs::copy(
        built_lib("libfault_template.so"),
        plugins.join("libfault_template.so"),
    )
    .unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "key = 1\n").unwrap();
    chmod(&file, 0o640);
    let cfg = Drill::new(&dir)
        .named("cfg.ron")
        .config(&format!(
            r#"faults: {{"lockout": (plugin: "fault-template", config: (path: {file:?}, duration: "1h"))}}"#
        ))
        .write();
    // The same daemon without the fault: it cannot build one from no config, and says so.
    let bare = Drill::new(&dir).named("bare.ron").write();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"await() {{ end=$(( $(date +%s) + 10 )); until grep -q -- "$1" "$2"; do [ "$(date +%s)" -gt $end ] && return 1; sleep 0.02; done; }}
"$NM" --config {cfg} --plugin-dir {plugins} --execute 2>{d}/log1 & m=$!
await Listening {d}/log1; p=$(sed -n 's|.*Listening on http://127.0.0.1:\([0-9]*\)$|\1|p' {d}/log1)
curl -s -X POST http://127.0.0.1:$p/api/faults/lockout -d '{{"desc":"config unreadable"}}'; echo
echo "during $(stat -c %a {file})"
kill -KILL $m; wait $m
echo "after crash $(stat -c %a {file})"
"$NM" --config {bare} --plugin-dir {plugins} --execute 2>{d}/log0 & m=$!
await Listening {d}/log0; kill -TERM $m; wait $m
echo "unconfigured $(stat -c %a {file})"
"$NM" --config {cfg} --plugin-dir {plugins} --execute 2>{d}/log2 & m=$!
await 'Revert (recovery)' {d}/log2
echo "after restart $(stat -c %a {file})"
kill -TERM $m; wait $m; cat {d}/log1 {d}/log0 {d}/log2 >&2"#,
        plugins = plugins.display(),
        file = file.display(),
    ));
    let out = json_lines(&run.stdout);
    assert_eq!(out[0]["result"], "injected", "{}", run.stderr);
    assert_eq!(
        out[0]["summary"],
        format!("changed {} from 640 to 000 for 3600s", file.display())
    );
    assert_eq!(pairs(&run.stdout, "during"), ["0"], "{}", run.stderr);
    assert_eq!(pairs(&run.stdout, "after crash"), ["0"]);
    assert_eq!(pairs(&run.stdout, "unconfigured"), ["0"]);
    assert!(
        run.stderr.contains(" (lockout) was left active by the last run\n")
            && run.stderr.contains(" lockout is no longer configured and plugin fault-template cannot build a fault without a config (no configuration given, but the field `path` is required); configure it again to revert it, or revert it by hand: {"),
        "{}",
        run.stderr
    );
    assert_eq!(
        pairs(&run.stdout, "after restart"),
        ["640"],
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            " Revert (recovery): reverted: gave {} its mode 640 back\n",
            file.display()
        )),
        "{}",
        run.stderr
    );
}

/// The example third-party plugin, found through `--plugin-dir` next to a broken file,
/// used from the config and through `POST /api/faults/{name}`, and reverted when due.
/// `--execute` only ever runs in a namespace, even for a fault that touches no process.
#[test]
fn the_example_plugin_loads_from_a_plugin_directory_and_reverts() {
    let dir = TestDir::new("example-plugin");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    fs::copy(
        built_lib("libstale_lock.so"),
        plugins.join("libstale_lock.so"),
    )
    .unwrap();
    fs::write(plugins.join("broken.so"), b"nope").unwrap();
    let lock = dir.join("app.pid");
    let cfg = Drill::new(&dir)
        .named("cfg.ron")
        .config(&format!(
            r#"faults: {{"stale": (plugin: "stale-lock", config: (path: {lock:?}, duration: "1"))}}"#
        ))
        .write();
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"await() {{ end=$(( $(date +%s) + 10 )); until grep -q -- "$1" "$2"; do [ "$(date +%s)" -gt $end ] && return 1; sleep 0.02; done; }}
"$NM" --config {cfg} --plugin-dir {plugins} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(sed -n 's|.*Listening on http://127.0.0.1:\([0-9]*\)$|\1|p' {d}/log)
curl -s http://127.0.0.1:$p/api/plugins; echo
curl -s -X POST http://127.0.0.1:$p/api/faults/stale -d '{{"desc":"stale pid"}}'; echo
echo "content $(cat {lock})"
await 'Revert (due)' {d}/log
[ -e {lock} ] && echo "still there" || echo "lock removed"
kill -TERM $m; wait $m; cat {d}/log >&2"#,
        plugins = plugins.display(),
        lock = lock.display(),
    ));
    let out = json_lines(&run.stdout);
    let listed = out[0]["plugins"].as_array().unwrap();
    let stale = listed
        .iter()
        .find(|p| p["name"] == "stale-lock")
        .expect("stale-lock is listed");
    assert_eq!(
        stale["source"],
        format!("{}/libstale_lock.so", plugins.display())
    );
    assert_eq!(out[1]["result"], "injected", "{}", run.stderr);
    assert_eq!(
        out[1]["summary"],
        format!("left {} behind for 1 s", lock.display())
    );
    assert_eq!(pairs(&run.stdout, "content"), ["4194304"]);
    assert!(run.stdout.contains("\nlock removed\n"), "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            " warning: cannot load plugin {}/broken.so: not a shared library (expected an ELF .so built as a cdylib); skipped\n",
            plugins.display()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&format!(
        " Revert (due): reverted: removed {}\n",
        lock.display()
    )));
}

#[test]
fn two_plugin_files_with_one_name_are_both_set_aside() {
    let dir = TestDir::new("duplicates");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    for name in ["a.so", "b.so"] {
        fs::copy(built_lib("libstale_lock.so"), plugins.join(name)).unwrap();
    }
    let (a, b) = (plugins.join("a.so"), plugins.join("b.so"));
    let cfg = dir.join("cfg.ron");
    fs::write(&cfg, format!("(plugin_dirs: [{plugins:?}])")).unwrap();
    let run = monkey(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains(&format!(
        "  warning: two plugin files are named `stale-lock`: {} and {}; remove one; both are ignored\n",
        a.display(),
        b.display()
    )));
    let text = format!(
        r#"(plugin_dirs: [{plugins:?}], faults: {{"stale": (plugin: "stale-lock", config: (path: "/run/x.pid"))}})"#
    );
    fs::write(&cfg, &text).unwrap();
    let col = text.find("\"stale\"").unwrap() + 1;
    let run = monkey(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        format!(
            "error: {}:1:{col}: fault `stale` uses plugin `stale-lock`, but two plugin files are named `stale-lock`: {} and {}; remove one\n",
            cfg.display(),
            a.display(),
            b.display()
        )
    );
}

/// `POST /api/faults/{fault}` with a description.
fn fire(port: u16, fault: &str) -> crate::util::Answer {
    crate::util::http(
        port,
        "POST",
        &format!("/api/faults/{fault}"),
        &[],
        br#"{"desc":"x"}"#,
    )
}

/// A daemon config in `dir` around a copy of the panicky fixture (every day and hour, no
/// timer, state in `dir`), with `extra` settings and these `faults` (the map's entries).
/// Returns the config's path and the copy's.
fn panicky_daemon(dir: &Path, extra: &str, faults: &str) -> (PathBuf, PathBuf) {
    let lib = dir.join("libpanic_plugin.so");
    fs::copy(built_lib("libpanic_plugin.so"), &lib).unwrap();
    let cfg = Drill::new(dir)
        .named("cfg.ron")
        .without("http")
        .config(&format!(
            r#"plugins: [{lib:?}], {extra} faults: {{ {faults} }}"#
        ))
        .write();
    (cfg.into(), lib)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

mod trust;
mod workers;
