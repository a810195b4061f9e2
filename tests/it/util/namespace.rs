//! Fresh namespaces for the tests that run the daemon `--execute`: a user and PID
//! namespace (with its own /proc), where only the processes a script starts can be
//! signalled, and a network namespace beside for the network faults, where rules touch
//! nothing of this machine's.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use super::{bin, lib_dir, state_dir, Run};

/// Runs `script` with `sh` as PID 1 of a fresh PID namespace (with its own /proc), with
/// `$NM` naming the binary and `$LIB` the directory of the built plugins. Only processes
/// the script starts there can be signalled. The script starts in a directory of its own
/// ([`run_dir`]), which is also the daemon's state directory.
pub fn in_namespace(script: &str) -> Run {
    run(namespace(script))
}

/// Runs `script` as [`in_namespace`] does, in a fresh network namespace too, its
/// loopback up (nftables rules and qdiscs added there touch nothing of this
/// machine's), and in the namespaces `more` asks `unshare` for (`--cgroup`).
pub fn in_network_namespace(more: &[&str], script: &str) -> Run {
    let flags: Vec<&str> = ["--net"].iter().chain(more).copied().collect();
    run(unshare(&flags, &format!("ip link set lo up\n{script}")))
}

/// The command that runs `script` as [`in_namespace`] says; killing it (our own child)
/// ends the namespace and everything in it (`--kill-child`).
pub fn namespace(script: &str) -> Command {
    unshare(&[], script)
}

/// `unshare` with a user and PID namespace and `more` namespaces, running `script`.
fn unshare(more: &[&str], script: &str) -> Command {
    // `started PID`: waits until a process the script put in the background has become
    // its program (until then it is a copy of `sh`, which a fault could pick instead).
    let script = format!(
        "started() {{ while [ \"$(cat /proc/$1/comm 2>/dev/null)\" = sh ]; do :; done; }}\n{script}"
    );
    let dir = run_dir();
    let mut command = Command::new("unshare");
    command
        .args(["--user", "--map-root-user"])
        .args(more)
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            &script,
        ])
        .env("NM", bin())
        .env("LIB", lib_dir())
        .env("STATE_DIRECTORY", &dir)
        .current_dir(&dir)
        .env_remove("RUST_BACKTRACE");
    command
}

/// A new directory under [`state_dir`] for one namespace's script: the files it writes
/// go there rather than into the source tree, and what a daemon executed there is in a
/// journal of its own, never recovered by the daemon of another test.
fn run_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = state_dir().join(format!("ns-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Runs `command` to its end; `unshare` failing (no user namespaces here) fails the test.
fn run(mut command: Command) -> Run {
    let out = command.output().expect("unshare runs (install util-linux)");
    let run = Run::from(out);
    assert!(
        !run.stderr.contains("unshare: "),
        "cannot create the namespaces here: {}",
        run.stderr
    );
    run
}
