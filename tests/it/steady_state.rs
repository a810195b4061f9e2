//! A steady state that hangs: the request that checks it, and one waiting behind it for
//! the fault's turn, each answer within the request's deadline and say what they waited
//! for. Dry runs.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crate::util::{http, hung_server, json_lines, Drill, TestDir, DEADLINE};

/// The steady state's check is bounded by the request's deadline (`plugin_timeout`),
/// not by its probe's longer timeout; a request behind it gets a 504 that says what it
/// waited for, not "no answer from the plugin" (no plugin was called, nothing was
/// journaled). It used to wait the probe's whole timeout, and to blame the plugin.
#[test]
fn a_hung_steady_state_answers_within_the_deadline_saying_what_was_waited_for() {
    let dir = TestDir::new("steady-hung");
    let (hung, taken) = hung_server();
    let mut d = Drill::new(&dir)
        .config(r#"plugin_timeout: "2s""#)
        .config(&format!(
            r#"faults: {{"guarded": (plugin: "process-kill", config: (include_names: ["^nosuch$"]), steady_state: [Http(url: "{hung}", timeout: "20s")])}}"#
        ))
        .start(&["--seed", "1"]);
    let port = d.port();
    let started = Instant::now();
    let first = std::thread::spawn(move || {
        http(port, "POST", "/api/faults/guarded", &[], br#"{"desc":"a"}"#)
    });
    // The second asks once the first's probe is under way (it holds the fault's turn).
    let until = Instant::now() + DEADLINE;
    while taken.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the steady state was never checked");
        std::thread::yield_now();
    }
    let second = http(port, "POST", "/api/faults/guarded", &[], br#"{"desc":"b"}"#);
    assert_eq!(second.status, 504, "{}", second.body);
    // Its turn comes as the first gives up, and its own check is cut short in turn
    // (or, a busy machine's timers firing together, its wait for the turn is).
    let said = second.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let nothing = "; given up (no plugin was called, nothing was journaled)";
    assert!(
        said == format!("guarded: its steady state was not checked within 2s{nothing}")
            || said == format!("guarded: another request for this fault was still checking its steady state or injecting after 2s{nothing}"),
        "{said}"
    );
    let first = first.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first.status, 504, "{}", first.body);
    assert_eq!(
        first.json()["message"],
        "guarded: its steady state was not checked within 2s; given up (no plugin was called, nothing was journaled)"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    assert!(json_lines(&journal).is_empty(), "{journal}");
}
