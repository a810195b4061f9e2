//! Loading plugins from files: the `.so` of the built-in, clear refusals, caught panics.

use std::fs;

use std::path::{Path, PathBuf};

use crate::util::{
    built_lib, command, in_namespace, json_lines, monkey, pairs, temp_dir, trusted_mode, Daemon,
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
        r#"sleep 1000 & echo "victim $!"
"$NM" kill --plugin "$LIB/libprocess_kill.so" --execute --json"#,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &json_lines(&run.stdout)[0];
    assert_eq!(out["pid"].to_string(), pairs(&run.stdout, "victim")[0]);
    assert_eq!(out["result"], "killed");
}

#[test]
fn a_garbage_file_is_not_a_shared_library() {
    let dir = temp_dir("garbage");
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
    fs::remove_dir_all(dir).unwrap();
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
    let dir = crate::util::temp_dir("rlib-only");
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

/// `kill` gives up on a plugin that does not answer within `--plugin-timeout`, with one
/// line and a failure exit, rather than wait for ever.
#[test]
fn kill_gives_up_on_a_plugin_that_hangs() {
    let lib = built_lib("libpanic_plugin.so");
    let dir = temp_dir("kill-timeout");
    let started = std::time::Instant::now();
    let run = monkey(&[
        "kill",
        "--plugin",
        lib.to_str().unwrap(),
        "--fault-config",
        "(sleep_ms: 600000)",
        "--plugin-timeout",
        "200ms",
        "--seed",
        "1",
        "--journal",
        dir.join("journal.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: panicky: no answer from the plugin within 200ms; given up (the journal keeps its intent)\n"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let run = monkey(&["kill", "--plugin-timeout", "0s"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid value '0s' for '--plugin-timeout <DURATION>': expected a duration longer than zero"),
        "{}",
        run.stderr
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn list_shows_built_ins_plugins_and_failures_side_by_side() {
    let dir = temp_dir("list");
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
-              -        -        cannot load plugin {d}/broken.so: not a shared library (expected an ELF .so built as a cdylib)
panicky        0.1.0    1.1.0    {d}/libpanic_plugin.so
process-kill   0.1.0    1.1.0    {d}/libprocess_kill.so (ignored: the name is taken by built-in)
"
        )
    );
    fs::remove_dir_all(dir).unwrap();
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
    let dir = temp_dir("template-plugin");
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
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                state_dir: {dir:?}, faults: {{"lockout": (plugin: "fault-template", config: (path: {file:?}, duration: "1h"))}})"#
        ),
    )
    .unwrap();
    // The same daemon without the fault: it cannot build one from no config, and says so.
    let bare = dir.join("bare.ron");
    fs::write(
        &bare,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"), state_dir: {dir:?})"#
        ),
    )
    .unwrap();
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
        cfg = cfg.display(),
        bare = bare.display(),
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
    fs::remove_dir_all(dir).unwrap();
}

/// The example third-party plugin, found through `--plugin-dir` next to a broken file,
/// used from the config and through `POST /api/faults/{name}`, and reverted when due.
/// `--execute` only ever runs in a namespace, even for a fault that touches no process.
#[test]
fn the_example_plugin_loads_from_a_plugin_directory_and_reverts() {
    let dir = temp_dir("example-plugin");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    fs::copy(
        built_lib("libstale_lock.so"),
        plugins.join("libstale_lock.so"),
    )
    .unwrap();
    fs::write(plugins.join("broken.so"), b"nope").unwrap();
    let lock = dir.join("app.pid");
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
                state_dir: {dir:?}, faults: {{"stale": (plugin: "stale-lock", config: (path: {lock:?}, duration: "1"))}})"#
        ),
    )
    .unwrap();
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
        cfg = cfg.display(),
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
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_plugin_files_with_one_name_are_both_set_aside() {
    let dir = temp_dir("duplicates");
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
    fs::remove_dir_all(dir).unwrap();
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
    let cfg = dir.join("cfg.ron");
    fs::write(
        &cfg,
        format!(
            r#"(plugins: [{lib:?}], window: (days: "*", time: "00:00-24:00"), timer: (enabled: false),
               state_dir: {dir:?}, {extra} faults: {{ {faults} }})"#
        ),
    )
    .unwrap();
    (cfg, lib)
}

/// Builds the hostile fixture (`tests/fixtures/hostile/hostile.c`) into `dir` with the C
/// compiler every Rust build has, its junk header `header_size` bytes long.
fn hostile(dir: &Path, header_size: usize) -> PathBuf {
    let so = dir.join(format!("libhostile{header_size}.so"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile/hostile.c");
    let built = std::process::Command::new("cc")
        .args([
            "-shared",
            "-fPIC",
            &format!("-DHEADER_SIZE={header_size}"),
            "-o",
        ])
        .arg(&so)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(built.success());
    trusted_mode(&so);
    so
}

/// `plugins check FILE`, with $NM_MARKER set for the hostile fixture's constructor.
fn check(file: &Path, marker: &Path, extra: &[&str]) -> crate::util::Run {
    command()
        .args(["plugins", "check"])
        .arg(file)
        .args(extra)
        .env("NM_MARKER", marker)
        .output()
        .expect("the binary runs")
        .into()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A shared object whose header is junk, or that sits where others can write, or that
/// another user owns, is refused with one line naming the file and the reason, before it
/// is mapped: its constructor never runs.
#[test]
fn untrusted_or_junk_files_are_refused_before_any_of_their_code_runs() {
    let dir = temp_dir("hostile");
    let marker = dir.join("constructor-ran");
    let junk = hostile(&dir, 8);
    // The marker works: any dynamic loader that maps the file runs the constructor.
    let preload = std::process::Command::new("true")
        .env("LD_PRELOAD", &junk)
        .env("NM_MARKER", &marker)
        .status()
        .unwrap();
    assert!(
        preload.success() && marker.exists(),
        "the fixture's constructor works"
    );
    fs::remove_file(&marker).unwrap();

    let run = check(&junk, &marker, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let prefix = format!(
        "error: cannot load plugin {}: its plugin header nightmare_monkey_plugin_v1__hostile is 8 bytes, not the ",
        junk.display()
    );
    assert!(run.stderr.starts_with(&prefix), "{}", run.stderr);
    let size: usize = run.stderr[prefix.len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The right size, junk inside.
    let sized = hostile(&dir, size);
    let run = check(&sized, &marker, &[]);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot load plugin {}: its plugin header nightmare_monkey_plugin_v1__hostile does not start with abi_stable's mark: it is not a header export_plugin! writes\n",
            sized.display()
        )
    );

    // A real plugin where others can write, or owned by another user.
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    let lib = open.join("libpanic_plugin.so");
    fs::copy(built_lib("libpanic_plugin.so"), &lib).unwrap();
    fs::copy(&junk, open.join("libhostile.so")).unwrap();
    chmod(&open, 0o777);
    for file in [lib.clone(), open.join("libhostile.so")] {
        let run = check(&file, &marker, &[]);
        assert_eq!(run.code, Some(2));
        assert_eq!(
            run.stderr,
            format!(
                "error: cannot load plugin {}: not trusted: the directory {} is writable by its group and everyone (mode 777): anyone there could replace the plugin (chmod go-w {}) (--allow-untrusted-plugins loads it anyway)\n",
                file.display(),
                open.display(),
                open.display()
            )
        );
    }
    // The opt-out loads it, loudly.
    let run = check(&lib, &marker, &["--allow-untrusted-plugins"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.starts_with(&format!(
        "warning: plugin {} is not trusted (the directory {} is writable by its group and everyone",
        lib.display(),
        open.display()
    )));
    assert!(run
        .stderr
        .ends_with("loaded anyway, as --allow-untrusted-plugins asks\n"));
    // Through a symlink from a trusted directory: the target's directory counts.
    let link = dir.join("liblinked.so");
    std::os::unix::fs::symlink(&lib, &link).unwrap();
    assert!(check(&link, &marker, &[])
        .stderr
        .contains("not trusted: the directory"));
    chmod(&open, 0o755);
    assert_eq!(check(&link, &marker, &[]).code, Some(0));
    // Writable by its group.
    chmod(&lib, 0o775);
    assert!(check(&lib, &marker, &[]).stderr.contains(&format!(
        "not trusted: {} is writable by its group (mode 775;",
        lib.display()
    )));
    chmod(&lib, 0o755);
    // Another user's (only root can give a file away; CI runs as root).
    if rustix::process::geteuid().is_root() {
        rustix::fs::chown(&lib, Some(rustix::fs::Uid::from_raw(4321)), None).unwrap();
        assert!(check(&lib, &marker, &[])
            .stderr
            .contains("is owned by uid 4321, neither root nor the user the monkey runs as"));
    }
    // The daemon and check-config refuse the same way.
    let cfg = dir.join("hostile.ron");
    fs::write(
        &cfg,
        format!("(plugins: [{:?}])", open.join("libhostile.so")),
    )
    .unwrap();
    chmod(&open, 0o777);
    let run: crate::util::Run = command()
        .args(["check-config"])
        .arg(&cfg)
        .env("NM_MARKER", &marker)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("not trusted: the directory"),
        "{}",
        run.stderr
    );
    assert!(!marker.exists(), "no constructor of a refused file ran");
    chmod(&open, 0o755);
    fs::remove_dir_all(dir).unwrap();
}

/// The daemon maps a private copy of each plugin file: copying another file over it in
/// place (as `cp` does) changes nothing in the running daemon. It used to crash it.
#[test]
fn overwriting_a_loaded_plugin_file_does_not_touch_the_running_daemon() {
    let dir = temp_dir("overwrite");
    let (cfg, lib) = panicky_daemon(
        &dir,
        "",
        r#""slow": (plugin: "panicky", config: (sleep_ms: 1)), "segv": (plugin: "panicky", config: (crash_in_inject: "segv"))"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let before = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
    assert_eq!(before.status, 200, "{}", before.body);
    // In place: same inode, new bytes (another plugin's), as `cp` does.
    fs::write(&lib, fs::read(built_lib("libprocess_kill.so")).unwrap()).unwrap();
    for _ in 0..3 {
        let after = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
        assert_eq!(after.status, 200, "{}", after.body);
        assert_eq!(after.json()["summary"], "slept 1 ms");
    }
    // Even a fresh worker (the last one crashed) runs the bytes loaded at start, not
    // what the file holds now.
    let crash = crate::util::http(port, "POST", "/api/faults/segv", &[], br#"{"desc":"x"}"#);
    assert_eq!(crash.status, 502, "{}", crash.body);
    let fresh = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.json()["summary"], "slept 1 ms");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    fs::remove_dir_all(dir).unwrap();
}

/// A plugin file runs in a worker process: one that segfaults, aborts, exits or hangs
/// in `inject` fails that fault (502, or 504 past the deadline; journaled), its worker
/// starts afresh, and the daemon goes on answering.
#[test]
fn a_plugin_that_crashes_or_hangs_takes_down_its_worker_not_the_daemon() {
    let dir = temp_dir("crashes");
    let journal = dir.join("journal.jsonl");
    let (cfg, _) = panicky_daemon(
        &dir,
        r#"plugin_timeout: "500ms","#,
        r#""segv": (plugin: "panicky", config: (crash_in_inject: "segv")),
           "abort": (plugin: "panicky", config: (crash_in_inject: "abort")),
           "exit": (plugin: "panicky", config: (crash_in_inject: "exit")),
           "hang": (plugin: "panicky", config: (sleep_ms: 600000)),
           "ok": (plugin: "panicky", config: (sleep_ms: 1)),"#,
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
            "hang: no answer from the plugin within 500ms; given up (the journal keeps its intent)",
        ),
        ("ok", 200, ""),
    ] {
        let answer = fire(fault);
        assert_eq!(answer.status, status, "{fault}: {}", answer.body);
        if status == 200 {
            assert_eq!(answer.json()["summary"], "slept 1 ms");
        } else {
            assert_eq!(answer.json()["message"], message, "{fault}");
        }
    }
    assert_eq!(
        crate::util::http(port, "GET", "/healthz", &[], b"").status,
        200
    );
    // Just past the deadline the hung call's worker is stopped: nothing is left in flight.
    d.wait_for(|l| {
        l == "plugin panicky: a call had no answer within 500ms: its worker was stopped, with every call in flight on it"
    });
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
    fs::remove_dir_all(dir).unwrap();
}

/// What a plugin writes on stderr reaches the log escaped: a carriage return or a
/// terminal escape cannot overwrite or colour a line, a bidi override cannot reorder one.
#[test]
fn what_a_plugin_says_on_stderr_is_escaped() {
    let dir = temp_dir("plugin-says");
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
    fs::remove_dir_all(dir).unwrap();
}

/// A plugin that crashes at every call gets a few fresh workers at once, then one after
/// a doubling wait: a burst of 30 calls starts a handful of workers, not 30 (it used to
/// start 100 in 0.6 s), and the calls in between are refused at once, saying why.
#[test]
fn a_plugin_in_a_crash_loop_gets_fresh_workers_slower_and_slower() {
    let dir = temp_dir("crash-loop");
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
    fs::remove_dir_all(dir).unwrap();
}

/// Whatever a plugin writes, or leaves behind, cannot hold or fill the daemon: 200 MB
/// on stdout without a newline costs the daemon a 4 KiB log line, not 200 MB; a plugin
/// that starts a program (which inherits its worker's output) and exits is reported at
/// once, not at the deadline, and the program goes down with the worker's process group.
#[test]
fn what_a_plugin_writes_or_leaves_behind_cannot_hold_or_fill_the_daemon() {
    let dir = temp_dir("flood");
    let (cfg, _) = panicky_daemon(
        &dir,
        r#"plugin_timeout: "20s","#,
        r#""flood": (plugin: "panicky", config: (flood_bytes: 200000000, sleep_ms: 1)),
           "orphan": (plugin: "panicky", config: (spawn_then_exit: true)),
           "ok": (plugin: "panicky", config: (sleep_ms: 1)),"#,
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
    fs::remove_dir_all(dir).unwrap();
}

/// Live processes whose command line is `sleep 1000.5` (the fixture's orphan).
fn sleepers() -> usize {
    crate::util::alive_with_cmdline(b"sleep\x001000.5\x00")
}

/// A plugin's child that calls setsid() (a session of its own, out of its worker's
/// process group) does not outlive its worker: the daemon, its subreaper, adopts it
/// when the worker ends and ends it.
#[test]
fn a_plugins_child_that_calls_setsid_ends_with_its_worker() {
    let dir = temp_dir("setsid-child");
    let (cfg, _) = panicky_daemon(
        &dir,
        "",
        r#""escape": (plugin: "panicky", config: (setsid_then_exit: true)),"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let answer = fire(port, "escape");
    assert_eq!(answer.status, 502, "{}", answer.body);
    let until = std::time::Instant::now() + crate::util::DEADLINE;
    while crate::util::alive_with_cmdline(b"sleep\x001000.6\x00") > 0 {
        assert!(
            std::time::Instant::now() < until,
            "the plugin's setsid child outlived its worker"
        );
        std::thread::yield_now();
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    fs::remove_dir_all(dir).unwrap();
}

/// A plugin worker is the monkey's own process: no process fault chooses it, even one
/// whose filter matches nothing else (it would kill or stop the plugin under the daemon).
#[test]
fn no_process_fault_chooses_a_plugin_worker() {
    let dir = temp_dir("plugins-workers");
    let lib = built_lib("libstale_lock.so");
    let cfg = dir.join("c.ron");
    fs::write(
        &cfg,
        format!(
            r#"(window: (days: "*", time: "00:00-24:00"), timer: (enabled: false), http: (listen: "127.0.0.1:0"),
    state_dir: {dir:?}, plugins: [{lib:?}],
    faults: {{
        "lock": (plugin: "stale-lock", config: (path: {lock:?})),
        "kw": (plugin: "process-kill", config: (include_cmdlines: ["__plugin-worker"])),
        "pw": (plugin: "process-pause", config: (include_cmdlines: ["__plugin-worker"])),
    }})"#,
            lock = dir.join("lock")
        ),
    )
    .unwrap();
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
        cfg = cfg.display(),
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
    fs::remove_dir_all(dir).unwrap();
}
