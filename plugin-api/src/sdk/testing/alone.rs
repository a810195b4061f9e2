//! Tests that starve or confine their own process (descriptors used up, a memory cgroup
//! joined): each runs in a fresh run of the test binary, alone, so that no other test's
//! thread shares the shortage or the limit.

use std::process::Command;

/// Set in the run that [`alone`] starts: the test body runs there.
const ALONE: &str = "NM_SDK_TEST_ALONE";

/// Runs `body` in a run of this test binary of its own, which runs the test `name` only
/// (its path in the crate, as `cargo test` lists it, e.g. `tests::holds_in_a_cgroup`),
/// and fails if that run fails. What `body` does to its process (a lower descriptor
/// limit, a cgroup joined) touches no other test.
///
/// # Panics
///
/// When the run alone fails, or runs no test (a `name` that names none).
pub fn alone(name: &str, body: impl FnOnce()) {
    if std::env::var_os(ALONE).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the test binary's own path: {e}"));
    let run = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the test binary again: {e}"));
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && out.contains("1 passed"),
        "{name}, run alone: {}\n{out}\n{err}",
        run.status
    );
}

/// Every descriptor this process may open but `free`, held until dropped (with the
/// limit lowered meanwhile, as `prlimit --nofile=64` would: the default may be a million).
#[cfg(test)]
pub(crate) struct Starved {
    _held: Vec<std::fs::File>,
    limit: rustix::process::Rlimit,
}

#[cfg(test)]
impl Starved {
    /// Opens `/dev/null` until the limit, then closes `free` of them again. Only in a
    /// test run [`alone`].
    pub(crate) fn leaving(free: usize) -> Starved {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        assert!(
            std::env::var_os(ALONE).is_some(),
            "starving a shared test run"
        );
        let limit = getrlimit(Resource::Nofile);
        let low = Rlimit {
            current: Some(64),
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, low).expect("the descriptor limit lowered");
        let mut held = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            held.push(file);
        }
        assert!(held.len() >= free, "fewer than {free} descriptors to leave");
        held.truncate(held.len() - free);
        Starved { _held: held, limit }
    }
}

#[cfg(test)]
impl Drop for Starved {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.limit);
    }
}
