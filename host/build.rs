//! Records the git revision the binary is built from, for `--version`; a build outside
//! a git checkout (a crates.io package, a tarball) says so instead.

use std::{path::Path, process::Command};

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let text = match revision {
        Some(rev) => format!("git {rev}"),
        None => "not built from a git checkout".to_owned(),
    };
    println!("cargo:rustc-env=NIGHTMARE_MONKEY_REVISION={text}");
    // Run again when HEAD moves: a commit, a checkout, a pull.
    println!("cargo:rerun-if-changed=build.rs");
    if Path::new("../.git/HEAD").exists() {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        if let Ok(head) = std::fs::read_to_string("../.git/HEAD") {
            if let Some(reference) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed=../.git/{reference}");
            }
        }
    }
}
