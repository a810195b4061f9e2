//! Helpers: run the real binary, run a script in a fresh PID namespace, find the built
//! plugin libraries.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nightmare-monkey"))
}

/// A library built beside the binary (`libprocess_kill.so`, `libpanic_plugin.so`).
pub fn built_lib(name: &str) -> PathBuf {
    let path = bin().parent().expect("binary has a directory").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// What a finished command left.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary with `args` (on this machine: use only for dry runs).
pub fn monkey(args: &[&str]) -> Run {
    Command::new(bin())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
        .into()
}

/// Runs `script` with `sh` as PID 1 of a fresh PID namespace (with its own /proc), with
/// `$NM` naming the binary and `$LIB` the directory of the built plugins. Only processes
/// the script starts there can be signalled.
pub fn in_namespace(script: &str) -> Run {
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            script,
        ])
        .env("NM", bin())
        .env("LIB", bin().parent().expect("binary has a directory"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("unshare runs (install util-linux)");
    let run = Run::from(out);
    assert!(
        !run.stderr.contains("unshare: "),
        "cannot create a PID namespace here: {}",
        run.stderr
    );
    run
}

/// The JSON objects printed one a line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect()
}

/// The `key value` lines a script printed, as pairs.
pub fn pairs(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
        .collect()
}
