//! The fault's own tests: its contracts through the ABI, and holds in a memory cgroup of
//! the test's own making.

use std::{
    path::PathBuf,
    sync::{Arc, Barrier},
};

use nightmare_monkey_plugin_api::sdk::{
    testing::{alone, threads_named, Harness},
    DurationText,
};

use super::*;

/// Through the ABI, for real (1 MiB): revert from a fresh instance lets it go.
#[test]
fn keeps_the_contracts() {
    let harness = Harness::of::<MemoryHog>();
    harness
        .contract("(mib: 1, floor_mib: 0, duration: \"1m\")")
        .watch(|| threads_named("memory-hog"))
        .check_all()
        .unwrap();
    harness.config_error("(mib: 0)", "mib").unwrap();
    harness.config_error("(percent: 91)", "percent").unwrap();
}

/// A memory cgroup made under the test process's own, named after the test process that
/// started the run alone (so that it can remove what a run killed by the OOM killer left).
struct TestCgroup {
    dir: PathBuf,
    version: cgroup::Version,
}

impl TestCgroup {
    fn dir_for(test: u32) -> Option<(PathBuf, cgroup::Version)> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let ours = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mounts = cgroup::mounts(&mountinfo);
        let (parent, mount) =
            cgroup::own_cgroups(&ours, &mounts)
                .into_iter()
                .find(|(dir, m)| match m.version {
                    cgroup::Version::V1 => true,
                    // v2: only where the memory controller reaches the children.
                    cgroup::Version::V2 => {
                        std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
                    }
                })?;
        Some((parent.join(format!("sdk-mh-{test}")), mount.version))
    }

    /// Makes it, limited to `limit` bytes, and moves this process into it; `None` where
    /// the machine does not let the test (not root, no memory controller at hand).
    fn join(limit: u64) -> Option<TestCgroup> {
        let (dir, version) = Self::dir_for(std::os::unix::process::parent_id())?;
        std::fs::create_dir(&dir).ok()?;
        let cgroup = TestCgroup { dir, version };
        let file = match version {
            cgroup::Version::V1 => "memory.limit_in_bytes",
            cgroup::Version::V2 => "memory.max",
        };
        std::fs::write(cgroup.dir.join(file), limit.to_string()).ok()?;
        std::fs::write(
            cgroup.dir.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .ok()?;
        Some(cgroup)
    }

    /// Bytes charged to it now.
    fn usage(&self) -> u64 {
        let file = match self.version {
            cgroup::Version::V1 => "memory.usage_in_bytes",
            cgroup::Version::V2 => "memory.current",
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Removes what a run alone left (it may have been killed inside).
    fn remove_left_by(test: u32) {
        if let Some((dir, _)) = Self::dir_for(test) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Back to the cgroup we came from, so that this one can go.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::write(parent.join("cgroup.procs"), std::process::id().to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn hog(mib: u64, floor_mib: u64) -> MemoryHog {
    MemoryHog::new(Config {
        mib: Some(mib),
        floor_mib: Some(floor_mib),
        duration: Some(DurationText("1m".to_owned())),
        ..Config::default()
    })
    .unwrap()
}

/// Bytes held by what `inject` answered, and its revert state.
fn held(outcome: &Outcome) -> u64 {
    outcome.details["bytes"].as_u64().unwrap()
}

/// In a cgroup limited to 32 MiB (on a host with gigabytes available), holds stay within
/// the cgroup's room above the floor: three taken at once share it rather than each take
/// it all, and one that asks for more than the limit takes what the room allows. Either
/// mistake gets this process OOM-killed, and the test fails. Skipped (and says so) where
/// the machine lets the test make no memory cgroup.
#[test]
fn holds_stay_within_the_cgroup_of_the_daemon() {
    let name = "tests::holds_stay_within_the_cgroup_of_the_daemon";
    let run = std::panic::catch_unwind(|| {
        alone(name, || {
            const LIMIT: u64 = 32 * MIB;
            let Some(cgroup) = TestCgroup::join(LIMIT) else {
                println!("skipped: no memory cgroup can be made here");
                return;
            };
            // Three at once, each asking for 12 MiB with a floor of 4: 36 MiB in all
            // would pass the limit.
            let three = Arc::new(hog(12, 4));
            let barrier = Arc::new(Barrier::new(3));
            let threads: Vec<_> = (0..3u64)
                .map(|i| {
                    let (hog, barrier) = (three.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        hog.inject(&Request {
                            seed: 100 + i,
                            dry_run: false,
                            ..Request::default()
                        })
                    })
                })
                .collect();
            let mut states = Vec::new();
            let mut together = 0;
            for thread in threads {
                match thread.join().unwrap() {
                    Ok(outcome) => {
                        together += held(&outcome);
                        states.push(outcome.revert.unwrap());
                    }
                    Err(e) => assert_eq!(e.kind, ErrorKind::NoTarget, "{e}"),
                }
            }
            assert!(
                (12 * MIB..=LIMIT - 4 * MIB).contains(&together),
                "held {} MiB at once in a cgroup of 32 MiB with a floor of 4",
                together / MIB
            );
            for state in &states {
                three.revert(state).unwrap();
            }
            // The holders let go on their own threads: wait until the cgroup shows it.
            let deadline = Instant::now() + Duration::from_secs(60);
            while cgroup.usage() > 8 * MIB {
                assert!(Instant::now() < deadline, "the holds were never let go");
                std::thread::yield_now();
            }
            // One asking for more than the limit takes what the room leaves.
            let big = hog(64, 4);
            let outcome = big
                .inject(&Request {
                    dry_run: false,
                    ..Request::default()
                })
                .unwrap();
            assert!(
                (MIB..=LIMIT - 4 * MIB).contains(&held(&outcome)),
                "{}",
                outcome.summary
            );
            big.revert(&outcome.revert.unwrap()).unwrap();
        })
    });
    TestCgroup::remove_left_by(std::process::id());
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}
