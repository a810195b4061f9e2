//! The start: stop signals from its first instant (during recovery, during the check of
//! a SIGHUP: a stop wins over a restart under way), and plugin files that hang while
//! they load.

use std::fs;

use crate::{
    drill::{panicky_drill, PRELUDE},
    util::{built_lib, in_namespace, pairs, temp_dir, trusted_mode, Daemon},
};

/// A SIGTERM while a start reverts what a crash left (its runtime's handlers do not
/// exist yet) is not the kernel's default (exit 143): the start gives up waiting for
/// the hung revert at once, names it, starts nothing, and exits 1.
#[test]
fn sigterm_during_recovery_abandons_a_hung_revert_and_starts_nothing() {
    let dir = temp_dir("signals-recovery");
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
        cfg = cfg.display(),
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
    fs::remove_dir_all(dir).unwrap();
}

/// A SIGTERM right behind a SIGHUP stops the daemon: it does not restart (same PID, a
/// second `Listening on`) and run on. Three times, the signals back to back.
#[test]
fn sigterm_during_a_sighup_check_stops_instead_of_restarting() {
    for _ in 0..3 {
        let mut d = Daemon::start(&["--listen", "127.0.0.1:0"]);
        d.port();
        d.signal("HUP");
        d.signal("TERM");
        assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
        let started = d
            .log
            .iter()
            .filter(|l| l.starts_with("Listening on"))
            .count();
        assert_eq!(started, 1, "restarted: {:?}", d.log);
    }
}

/// Plugin files load all at once, and a load still running after a second is said:
/// three files that hang while they load cost the start one `plugin_timeout`, not three (a victim a crash left
/// stopped waited for all of them, 90 s with the default timeout).
#[test]
fn plugin_files_that_hang_while_loading_are_waited_for_together() {
    let dir = temp_dir("start-hung-loads");
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
        &[("PANICKY_HANG_ON_LOAD", "1")],
    );
    d.port();
    let took = started.elapsed();
    let log = d.log.clone();
    let begun: Vec<usize> = (0..log.len())
        .filter(|&i| {
            log[i].starts_with("Loading plugin ")
                && log[i].contains(": no answer yet after 1s; waiting at most 5s for it")
        })
        .collect();
    let failed: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].contains("no answer from its worker within 5s"))
        .collect();
    assert_eq!((begun.len(), failed.len()), (3, 3), "{log:#?}");
    // Every load was waited for before the first one was given up on: together.
    assert!(begun[2] < failed[0], "one after another: {log:#?}");
    // Together: one timeout (5 s), far from three (15 s), whatever else the machine does.
    assert!(took < std::time::Duration::from_secs(14), "{took:?}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
    fs::remove_dir_all(dir).unwrap();
}
