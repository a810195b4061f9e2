//! After the drill: the journal, the answer key, reversible faults and their reverts
//! (when due, on shutdown, on pause, after a crash), budgets and the kill switch. Every
//! test that injects for real does it in a PID namespace it created.

use std::fs;

use crate::util::{
    http, in_namespace, json_lines, monkey, pairs, resumed, Daemon, Drill, Sleeper, TestDir,
};

/// Shell helpers for the namespace scripts: wait for a line in a file (with a deadline),
/// the state letter of a process (now, or once it is one), the daemon's port from its
/// log.
pub(crate) const PRELUDE: &str = r#"
await() { end=$(( $(date +%s) + 10 )); until grep -q -- "$1" "$2"; do
  [ "$(date +%s)" -gt $end ] && { echo "timed out waiting for $1 in $2" >&2; cat "$2" >&2; return 1; }; sleep 0.02; done; }
# A process just continued may be running a moment before it sleeps again: R is waited out.
st() { for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  s=$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null); [ "$s" = R ] || break; sleep 0.05; done; echo "${s:-gone}"; }
# The state letter of a process once it is $2, or after 10 s whatever it is: a signal a
# revert sends may land a moment after the answer that started it.
became() { end=$(( $(date +%s) + 10 )); until [ "$(st $1)" = "$2" ] || [ "$(date +%s)" -gt $end ]; do
  sleep 0.02; done; st $1; }
port() { sed -n 's|.*Listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$1" | tail -n 1; }
post() { curl -s -X POST "http://127.0.0.1:$1$2" -d "$3"; echo; }
"#;

/// A daemon config: the common header (the state, journal and pause file in `dir`), a
/// pause fault and a kill fault that may only choose `sleep 1000`, then `extra`. The
/// pause lasts `{PAUSE}`, which [`with_pause`] sets.
fn config(dir: &std::path::Path, extra: &str) -> String {
    Drill::new(dir)
        .config(
            r#"faults: {
        "pause": (plugin: "process-pause", config: (duration: "{PAUSE}", include_cmdlines: ["^sleep 1000$"])),
        "process-kill": (config: (include_cmdlines: ["^sleep 1000$"])),
    }"#,
        )
        .config(extra)
        .write()
}

/// A drill config in `dir` with the panicky fixture loaded: the common header, `extra`
/// settings and these `faults` (the map's entries). Returns its path.
pub(crate) fn panicky_drill(dir: &std::path::Path, extra: &str, faults: &str) -> String {
    let lib = crate::util::built_lib("libpanic_plugin.so");
    Drill::new(dir)
        .named("panicky.ron")
        .config(&format!("plugins: [{lib:?}]"))
        .config(extra)
        .config(&format!("faults: {{ {faults} }}"))
        .write()
}

/// [`config`] with pauses of 10 minutes and the journal in `dir/fs`, where the test's
/// script mounts a small tmpfs to break it.
fn journal_on_tmpfs(dir: &std::path::Path) -> String {
    let cfg = config(
        dir,
        &format!("journal: {:?},", dir.join("fs/journal.jsonl")),
    );
    with_pause(&cfg, "10m");
    cfg
}

fn with_pause(file: &str, duration: &str) {
    let text = fs::read_to_string(file)
        .unwrap()
        .replace("{PAUSE}", duration);
    fs::write(file, text).unwrap();
}

mod builtins;
mod journal;
mod reload;
mod requests;
mod reverts;
mod sandbox;
