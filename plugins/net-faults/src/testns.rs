//! For the tests that need a kernel's nftables: a user and network namespace of the
//! test's own, never the machine's (the test binary runs the one test again inside
//! `unshare --user --map-root-user --net`), and `nft` to read what is there.

use std::process::{Command, Stdio};

/// Set in the copy of the test binary that runs in a namespace of its own.
const INSIDE: &str = "NM_NET_FAULTS_TEST_INSIDE";

/// Whether this is the copy inside the namespace (then run the test); else runs the
/// test `name` (its full path) there, asserts it passed and returns false. Never
/// skipped in silence: without `unshare` it fails.
pub fn inside(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(INSIDE, "1")
        .status();
    let status = status.expect("unshare runs (install util-linux)");
    assert!(status.success(), "the test in its namespace failed");
    false
}

/// Runs `nft` with `args` and the script `input`; its output (it must succeed).
pub fn nft(args: &[&str], input: &str) -> String {
    let mut child = Command::new(crate::nft::program("nft"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft runs (install nftables)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?} {input:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
