//! Talking to nftables through the `nft` program: a script on its standard input
//! (`nft -f -`, one atomic transaction: all of it applies or none) to add rules; their
//! removal speaks the same protocol as `nft` does, in-process (`nfnetlink`).
//!
//! Why the program and not a library: libnftables has no maintained Rust binding, and
//! `nft` is what every host with nftables has and what an operator reads. The script is
//! nft's own text, so the dry run shows, and the journal keeps, byte for byte what is
//! applied, and an operator can paste it; every part of it is rendered from checked
//! values (numbers, addresses, our chain names), never from text a user wrote.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::Mutex,
};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};

/// Our table: every rule of every network fault lives in it, and nothing else does.
pub const TABLE: &str = "inet nightmare_monkey";

/// One change of our table at a time within this process: removing the table once it
/// is empty must not race a fault adding its chain.
static LOCK: Mutex<()> = Mutex::new(());

/// The program `name` (`nft`, `tc`): on the `PATH`, else where Debian and others put it
/// (a daemon's `PATH` may lack the sbin directories).
pub fn program(name: &str) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    let sbin = format!("/usr/sbin/{name}");
    if on_path {
        name.to_owned()
    } else if std::path::Path::new(&sbin).is_file() {
        sbin
    } else {
        format!("/sbin/{name}")
    }
}

/// Runs `nft` with `args` and `input` on its standard input; its standard output, or
/// its error as one sentence.
fn nft(args: &[&str], input: &str) -> Result<String, PluginError> {
    let mut child = Command::new(program("nft"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            PluginError::new(
                ErrorKind::Failed,
                format!("cannot run nft: {e} (install nftables: network faults need it)"),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as nft's own error below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PluginError::new(ErrorKind::Failed, format!("nft did not finish: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // nft repeats the failing line and underlines it: the first line says it all.
    let (kind, first) = failure(&out.stderr, "File exists");
    let hint = match kind {
        ErrorKind::Denied => " (network faults need CAP_NET_ADMIN)",
        ErrorKind::NoTarget => " (a chain of this name is another fault's: nothing applied)",
        _ => "",
    };
    Err(PluginError::new(kind, format!("nft: {first}{hint}")))
}

/// What a failed `nft` or `tc` said, as a kind and its first line: denied without the
/// capability, no target when its message has `missing` in it, else failed.
pub fn failure(stderr: &[u8], missing: &str) -> (ErrorKind, String) {
    let stderr = String::from_utf8_lossy(stderr);
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_owned();
    let kind = if stderr.contains("Operation not permitted") {
        ErrorKind::Denied
    } else if stderr.contains(missing) {
        ErrorKind::NoTarget
    } else {
        ErrorKind::Failed
    };
    (kind, first)
}

/// Applies `script` as one transaction.
pub fn apply(script: &str) -> Result<(), PluginError> {
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    nft(&["-f", "-"], script).map(drop)
}

/// Removes `chains` (those that are gone already are no error), with the table if no
/// other chain is in it, in one transaction spoken over netlink (`nfnetlink`: a run of
/// `nft` would wait out the kernel's reclaim, see there). Returns the chains that were
/// there.
pub fn remove(chains: &[String]) -> Result<Vec<String>, PluginError> {
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    crate::nfnetlink::remove(TABLE, chains)
}
