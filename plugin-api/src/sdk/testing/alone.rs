//! The SDK's own tests that starve their process of a resource (descriptors): each runs
//! in a fresh run of the test binary, alone, so that no other test's thread shares the
//! shortage.

use std::{fs::File, process::Command};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Set in the run that [`alone`] starts: the test body runs there.
const ALONE: &str = "NM_SDK_TEST_ALONE";

/// Runs `body` in a run of this test binary of its own that runs the test `name` only
/// (its path under the crate, as `cargo test` lists it); fails if that run fails.
pub(crate) fn alone(name: &str, body: impl FnOnce()) {
    if std::env::var_os(ALONE).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's own path");
    let run = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs again");
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
pub(crate) struct Starved {
    _held: Vec<File>,
    limit: Rlimit,
}

impl Starved {
    /// Opens `/dev/null` until the limit, then closes `free` of them again. Only in a
    /// test run [`alone`].
    pub(crate) fn leaving(free: usize) -> Starved {
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
        while let Ok(file) = File::open("/dev/null") {
            held.push(file);
        }
        assert!(held.len() >= free, "fewer than {free} descriptors to leave");
        held.truncate(held.len() - free);
        Starved { _held: held, limit }
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        let _ = setrlimit(Resource::Nofile, self.limit);
    }
}
