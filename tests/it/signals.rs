//! Stop signals from the first instant: during the recovery of a start, and during the
//! check of a SIGHUP (a stop wins over a restart under way).

use std::fs;

use crate::{
    drill::{panicky_drill, PRELUDE},
    util::{in_namespace, pairs, temp_dir, Daemon},
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
