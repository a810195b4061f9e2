//! Our nftables table, and the one change of it at a time this process makes: rules
//! added and removed in one transaction each, spoken to the kernel in-process over
//! netlink (`nfnetlink`), as `nft` itself speaks to it.
//!
//! Why not a run of `nft -f -` (what this did first) nor libnftables: a run costs a
//! process start and, when it comes right after a revert, the kernel's RCU grace
//! period as it closes its socket (15 ms, 31 ms after a revert, against well under a
//! millisecond here: BENCHMARKS.md), and libnftables has no maintained Rust binding.
//! What is installed is still nft's own text: the rules are values (`rules`), rendered
//! once as the script the dry run prints and the journal keeps (an operator can paste
//! it into `nft -f`), once as the netlink batch (`nfexpr`, the expressions `nft`
//! generates for that text); a test reads the installed rules back with `nft -j list`
//! and holds them equal to what `nft -f` makes of the script. Every part is rendered
//! from checked values (numbers, addresses, our chain names), never from text a user
//! wrote.

use std::sync::Mutex;

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};

pub use crate::nfnetlink::Via;
use crate::rules::Chain;

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

/// What a failed `tc` said, as a kind and its first line: denied without the
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

/// Installs `chains` in our table as one transaction (all of it or nothing), spoken
/// over netlink (`nfnetlink`).
pub fn apply(chains: &[Chain], via: Via) -> Result<(), PluginError> {
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    crate::nfnetlink::apply(TABLE, chains, via)
}

/// Removes `chains` (those that are gone already are no error), with the table if no
/// other chain is in it, in one transaction spoken over netlink (`nfnetlink`: a run of
/// `nft` would wait out the kernel's reclaim, see there). Returns the chains that were
/// there.
pub fn remove(chains: &[String], via: Via) -> Result<Vec<String>, PluginError> {
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    crate::nfnetlink::remove(TABLE, chains, via)
}
