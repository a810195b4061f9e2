//! SIGHUP against what the running daemon holds: a journal never moves away from a fault
//! it lists as in effect.

use super::*;

/// A SIGHUP whose configuration moves the journal while a fault is in effect is refused
/// whole, saying why: the new start reads only the new journal, and the fault the old
/// one lists would be forgotten (its victim left stopped). Once the fault is reverted,
/// the same file applies.
#[test]
fn a_reload_never_moves_the_journal_away_from_a_fault_in_effect() {
    let dir = TestDir::new("drill-reload-journal");
    let cfg = config(&dir, "");
    with_pause(&cfg, "10m");
    // The same file, but for its journal.
    let moved = dir.join("moved.ron");
    let text = fs::read_to_string(&cfg).unwrap().replacen(
        "(\n",
        &format!("(\n    journal: \"{}/two.jsonl\",\n", dir.display()),
        1,
    );
    fs::write(&moved, text).unwrap();
    let moved = moved.display();
    let run = in_namespace(&format!(
        r#"{PRELUDE}
sleep 1000 & started $!; v=$!
"$NM" --config {cfg} --execute 2>{d}/log & d=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/pause '{{"desc":"frozen"}}' >/dev/null
echo "paused $(st $v)"
cp {moved} {cfg}
kill -HUP $d
await 'not applied' {d}/log
echo "refused $(st $v)"
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
kill -HUP $d
await 'Journal: {d}/two.jsonl' {d}/log
kill -TERM $d; wait $d; echo "code $?"
echo "after $(st $v)""#,
        d = dir.display()
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "paused"), ["T"], "{}\n{log}", run.stderr);
    assert_eq!(pairs(&run.stdout, "refused"), ["T"], "{log}");
    assert!(
        log.contains(&format!(
            "warning: SIGHUP: journal: it moves from {d}/journal.jsonl to {d}/two.jsonl while 1 fault is in effect or under way",
            d = dir.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("SIGHUP: the configuration checks out"),
        "{log}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    assert!(resumed(&run.stdout, "after"), "{log}");
}

/// A SIGHUP whose configuration moves the API to an address another process holds is
/// refused, saying so: the restart would have stopped there (exit 1), and the daemon
/// with it.
#[test]
fn a_reload_onto_an_address_another_process_holds_is_refused() {
    let dir = TestDir::new("reload-taken-port");
    let cfg = Drill::new(&dir).write();
    let mut d = crate::util::Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    Drill::new(&dir)
        .set("http", &format!("(listen: \"{addr}\")"))
        .write();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("http.listen"));
    assert!(
        line.starts_with(&format!(
            "warning: SIGHUP: http.listen: cannot listen on {addr}: Address already in use"
        )),
        "{line}"
    );
    d.wait_for(|l| l.contains("not applied"));
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}
