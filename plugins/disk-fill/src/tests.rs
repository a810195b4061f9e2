//! The fault's own tests: its contracts through the ABI, and fills of a tmpfs of the
//! test's own (mounted in a namespace the test makes).

use std::{os::unix::fs::PermissionsExt, process::Command};

use super::*;
use nightmare_monkey_plugin_api::sdk::testing::Harness;

/// Set in the run of the test binary that runs in namespaces of its own: the directory
/// the test works in.
const INSIDE: &str = "NM_DISK_FILL_TEST_DIR";

/// A fresh directory `/tmp/df-<pid>-<name>`, removed when dropped (even when the test
/// panics), opened up first in case the test left it unsearchable.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = PathBuf::from(format!("/tmp/df-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, PermissionsExt::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this is the run inside the namespaces (then the test runs, in the directory
/// returned); else runs the test `name` (its full path) again inside `unshare` with
/// `flags`, in a fresh [`TestDir`], asserts that run passed, and returns `None`. Never
/// skipped in silence: without `unshare` it fails.
fn inside(name: &str, flags: &[&str]) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(INSIDE) {
        return Some(dir.into());
    }
    let dir = TestDir::new(name.rsplit("::").next().unwrap_or(name));
    let run = Command::new("unshare")
        .args(flags)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(INSIDE, &dir.0)
        .output()
        .expect("unshare runs (install util-linux)");
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success() && out.contains("1 passed"),
        "{name}, run in its namespaces: {}\n{out}\n{err}",
        run.status
    );
    None
}

/// Whether this is the run inside the namespaces, on a tmpfs of `mib` MiB mounted on its
/// directory (then the test runs there); else as [`inside`]. A test that writes or measures
/// a disk does it here, never on the host's `/tmp`: a CI machine's may be 99% full.
fn on_own_tmpfs(name: &str, mib: u64) -> Option<PathBuf> {
    let dir = inside(name, &["--user", "--map-root-user", "--mount"])?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "a tmpfs mounted on {}", dir.display());
    Some(dir)
}

/// A fault filling `dir`, up to `target_percent`, leaving `floor_mib` free.
fn fill(dir: &Path, target_percent: u64, floor_mib: u64) -> DiskFill {
    DiskFill::new(Config {
        path: Some(dir.to_owned()),
        target_percent: Some(target_percent),
        floor_mib: Some(floor_mib),
        ..Config::default()
    })
    .unwrap()
}

fn prepared(fault: &DiskFill, seed: u64) -> serde_json::Value {
    let request = Request {
        seed,
        ..Request::default()
    };
    fault.prepare(&request).unwrap().revert.unwrap()
}

fn applied(fault: &DiskFill, state: &serde_json::Value) -> Result<Outcome, PluginError> {
    fault.apply(&Request::default(), state)
}

/// Fills prepared together (the daemon runs injections at once) and then applied one
/// after the other, on a 16 MiB tmpfs: each takes only what is left above the floor when
/// it is applied, and one with nothing left is refused. Each measured the disk before
/// any had taken its space: the filesystem filled up (ENOSPC for the last).
#[test]
fn fills_applied_after_another_stay_above_the_floor() {
    let Some(dir) = on_own_tmpfs(
        "tests::fills_applied_after_another_stay_above_the_floor",
        16,
    ) else {
        return;
    };
    let free = || space(&dir).unwrap().1;
    assert_eq!(space(&dir).unwrap(), (16 * MIB, 16 * MIB));
    let up_to_the_floor = fill(&dir, 99, 4);
    let by_a_third = fill(&dir, 40, 4);
    let first = prepared(&up_to_the_floor, 1);
    let second = prepared(&up_to_the_floor, 2);
    let small = prepared(&by_a_third, 3);
    assert_eq!(first["size"], 12 * MIB);
    assert_eq!(second["size"], 12 * MIB);
    assert_eq!(small["size"], 6 * MIB);

    let taken = applied(&by_a_third, &small).unwrap();
    assert_eq!(taken.details["bytes"], 6 * MIB);
    assert_eq!(free(), 10 * MIB);
    // Prepared for 12 MiB; 6 MiB are left above the floor now.
    let taken = applied(&up_to_the_floor, &first).unwrap();
    assert_eq!(taken.result, results::INJECTED);
    assert_eq!(taken.details["bytes"], 6 * MIB, "{}", taken.summary);
    assert_eq!(taken.details["after_percent"], 75);
    assert_eq!(free(), 4 * MIB);
    // Nothing left above the floor: refused, and nothing made.
    let refused = applied(&up_to_the_floor, &second).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::NoTarget, "{refused}");
    assert_eq!(
        refused.message,
        format!(
            "{} is 75% used with 4 MiB free: nothing to fill below the target of 99% and the floor of 4 MiB",
            dir.display()
        )
    );
    assert!(!Path::new(second["file"].as_str().unwrap()).exists());
    assert_eq!(free(), 4 * MIB);
    for state in [&small, &first] {
        assert_eq!(
            up_to_the_floor.revert(state).unwrap().result,
            results::REVERTED
        );
    }
    assert_eq!(free(), 16 * MIB);

    // Three at once (measured, created and reserved under one lock): one takes its
    // 12 MiB, the others find nothing left above the floor.
    let states: Vec<_> = (4..7)
        .map(|seed| prepared(&up_to_the_floor, seed))
        .collect();
    let start = std::sync::Barrier::new(states.len());
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = states
            .iter()
            .map(|state| {
                s.spawn(|| {
                    start.wait();
                    applied(&up_to_the_floor, state)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(free(), 4 * MIB, "{outcomes:?}");
    let taken: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(taken.len(), 1, "{outcomes:?}");
    assert_eq!(taken[0].details["bytes"], 12 * MIB);
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert_eq!(e.kind, ErrorKind::NoTarget, "{e}");
        }
    }
}

/// Through the ABI: a dry run and `prepare` create nothing, and reverting what was
/// prepared is harmless. (A real fill takes a filesystem to its target: not here.) On a
/// tmpfs of its own: on a host disk over 99% full a dry run is refused, rightly.
#[test]
fn keeps_the_contracts_it_can_without_filling_a_disk() {
    let Some(dir) = on_own_tmpfs(
        "tests::keeps_the_contracts_it_can_without_filling_a_disk",
        16,
    ) else {
        return;
    };
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        names
    };
    let harness = Harness::of::<DiskFill>();
    let contract = harness
        .contract(&format!(
            "(path: {:?}, target_percent: 99, floor_mib: 0)",
            dir
        ))
        .watch(listing);
    contract.check_dry_run().unwrap();
    contract.check_no_panics().unwrap();
    contract
        .check_config_errors(&[
            ("", "path"),
            ("(path: \"/nonexistent/dir\")", "path"),
            (
                &format!("(path: {:?}, target_percent: 0)", dir),
                "target_percent",
            ),
            (&format!("(path: {:?}, duration: \"1y\")", dir), "duration"),
        ])
        .unwrap();
}

#[test]
fn only_a_fill_files_name_is_taken_for_one() {
    assert!(is_fill_file(Path::new(
        "/d/.nightmare-monkey-fill-0123456789abcdef"
    )));
    for other in [
        "/d/.nightmare-monkey-fill-0123456789abcde",
        "/d/.nightmare-monkey-fill-0123456789abcdeg",
        "/d/.nightmare-monkey-fill-0123456789abcdef0",
        "/d/data.db",
        "/",
    ] {
        assert!(!is_fill_file(Path::new(other)), "{other}");
    }
}

/// A prepared state (the daemon stopped between the phases) frees the file if it
/// was made, and says there is nothing to free if not; never another file. On a tmpfs of
/// its own: the apply measures the disk, and the host's may be too full for any fill.
#[test]
fn a_prepared_state_reverts_whether_or_not_it_was_applied() {
    let Some(dir) = on_own_tmpfs(
        "tests::a_prepared_state_reverts_whether_or_not_it_was_applied",
        16,
    ) else {
        return;
    };
    let fault = DiskFill::new(Config {
        path: Some(dir.clone()),
        target_percent: Some(99),
        floor_mib: Some(0),
        ..Config::default()
    })
    .unwrap();
    let request = Request {
        seed: 5,
        dry_run: false,
        ..Request::default()
    };
    // Preparing names a fill file and creates nothing.
    let named = fault.prepare(&request).unwrap().revert.unwrap();
    assert!(is_fill_file(Path::new(named["file"].as_str().unwrap())));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let file = dir.join(".nightmare-monkey-fill-00000000000000aa");
    let state = serde_json::json!({ "file": file, "size": MIB, "percent": [1, 2] });
    assert_eq!(fault.revert(&state).unwrap().result, results::VANISHED);
    // Applied with a small size, then reverted from the prepared state alone.
    let applied = fault.apply(&request, &state).unwrap();
    assert_eq!(applied.result, results::INJECTED);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), MIB);
    assert_eq!(fault.revert(&state).unwrap().result, results::REVERTED);
    assert!(!file.exists());
    // Taken already (another fault drew the same name): refused, never taken over.
    std::fs::write(&file, "another fault's").unwrap();
    let taken = fault.apply(&request, &state).unwrap_err();
    assert_eq!(taken.kind, ErrorKind::NoTarget, "{taken}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "another fault's");
    std::fs::remove_file(&file).unwrap();
    // A directory of that name is no fill file.
    std::fs::create_dir(&file).unwrap();
    assert_eq!(fault.revert(&state).unwrap().result, results::VANISHED);
}

/// A fill file that cannot be looked at (its directory unsearchable: EACCES, in a user
/// namespace whose root has no power over the directory) is an error, which the host
/// tries again, and is removed once it can be; never taken for gone. It was, and the
/// fault was closed with its file left filling the disk.
#[test]
fn a_fill_file_that_cannot_be_looked_at_is_not_gone() {
    let Some(dir) = inside(
        "tests::a_fill_file_that_cannot_be_looked_at_is_not_gone",
        &["--user"],
    ) else {
        return;
    };
    let fault = fill(&dir, 99, 0);
    let file = dir.join(".nightmare-monkey-fill-00000000000000bb");
    std::fs::write(&file, "taken").unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    let applied = serde_json::json!({ "file": file, "dev": meta.dev(), "ino": meta.ino() });
    let prepared = serde_json::json!({ "file": file, "size": MIB });
    let mode = |mode| {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    mode(0o000);
    for state in [&applied, &prepared] {
        let error = fault.revert(state).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Denied, "{error}");
        assert_eq!(
            error.message,
            format!(
                "cannot look at {}: Permission denied (os error 13)",
                file.display()
            )
        );
    }
    mode(0o700);
    assert!(file.exists(), "the file is still there");
    assert_eq!(fault.revert(&applied).unwrap().result, results::REVERTED);
    assert!(!file.exists());
}

/// The directory looked in is the one cleaned: the fill file's directory moved away and
/// another put in its place, with a file of the same name, between the look and the
/// remove. The fill file is removed where it now is, and the other file is left alone.
/// By path, the remove took the other file (the look had seen the fill file).
#[test]
fn the_file_looked_at_is_the_file_removed() {
    let base = TestDir::new("moved");
    let (dir, moved) = (base.0.join("fill"), base.0.join("moved"));
    std::fs::create_dir(&dir).unwrap();
    let name = ".nightmare-monkey-fill-00000000000000cc";
    std::fs::write(dir.join(name), "the fill file").unwrap();
    let meta = std::fs::metadata(dir.join(name)).unwrap();
    let applied = Filled {
        file: dir.join(name),
        dev: Some(meta.dev()),
        ino: Some(meta.ino()),
        size: None,
    };
    let prepared = Filled {
        file: dir.join(name),
        dev: None,
        ino: None,
        size: Some(MIB),
    };
    for filled in [applied, prepared] {
        std::fs::write(dir.join(name), "the fill file").unwrap();
        let removed = remove::remove_checked(&filled, || {
            std::fs::rename(&dir, &moved).unwrap();
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(name), "another file").unwrap();
        });
        assert!(removed.unwrap());
        assert!(!moved.join(name).exists(), "the fill file is removed");
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "another file"
        );
        std::fs::remove_dir(&moved).unwrap();
    }
}
