//! Records the git revision the binary is built from, for `--version`; a build outside
//! a git checkout (a crates.io package, a tarball) says so instead. And, for release
//! builds linked by LLD, lays out the functions the daemon runs (`startup-order.txt`)
//! next to each other.

use std::{path::Path, process::Command};

/// Whether this build links with LLD, which takes `--symbol-ordering-file`: Rust 1.90+
/// on x86_64-unknown-linux-gnu links with its own rust-lld unless told otherwise.
fn links_with_lld() -> bool {
    let target_ok = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split_whitespace()
                .nth(1)?
                .split('.')
                .nth(1)?
                .parse::<u32>()
                .ok()
        });
    let own_linker = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|f| f.contains("linker") || f.contains("link-arg"));
    target_ok && minor.is_some_and(|m| m >= 90) && !own_linker
}

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

    // The functions a start and a request run, in one place in the binary: the kernel
    // maps code in 64 KiB around each page touched, so scattered startup code kept
    // 3.6 MB of the binary resident, packed it keeps about 1.2 MB (bench/run: idle RSS
    // 6.6 -> 4.8 MB). Names missing from the binary are skipped; bench/order-startup
    // makes the list anew.
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=NIGHTMARE_MONKEY_NO_ORDERING");
    let order = Path::new("startup-order.txt");
    if std::env::var("PROFILE").is_ok_and(|p| p == "release")
        && std::env::var_os("NIGHTMARE_MONKEY_NO_ORDERING").is_none()
        && order.exists()
        && links_with_lld()
    {
        if let Ok(path) = order.canonicalize() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                path.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
    // Run again when HEAD moves: a commit, a checkout, a pull.
    println!("cargo:rerun-if-changed=build.rs");
    // Git says where HEAD and the branch's ref live: in a worktree `.git` is a file and
    // they are in the main checkout's `.git/worktrees/<name>` and `.git/refs`.
    let git_path = |what: &str| {
        Command::new("git")
            .args(["rev-parse", "--path-format=absolute", "--git-path", what])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    if let Some(head) = git_path("HEAD").filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={head}");
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(reference) = text.trim().strip_prefix("ref: ") {
                // A packed ref lives in packed-refs. Only files that exist are named: cargo
                // reruns a build script on every build for a path that does not.
                let path = git_path(reference)
                    .filter(|p| Path::new(p).exists())
                    .or_else(|| git_path("packed-refs").filter(|p| Path::new(p).exists()));
                if let Some(path) = path {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
}
