//! Which plugin files are loaded at all: untrusted or junk files refused before any of
//! their code runs, and a loaded file overwritten under the daemon.

use super::*;

/// Builds the C fixture `tests/fixtures/FIXTURE` into `dir` as the shared object `file`
/// with the C compiler every Rust build has, with these `-D` definitions.
fn c_fixture(dir: &Path, fixture: &str, file: &str, defines: &[String]) -> PathBuf {
    let so = dir.join(file);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(fixture);
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC"])
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg("-o")
        .arg(&so)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(built.success());
    trusted_mode(&so);
    so
}

/// Builds the hostile fixture (`tests/fixtures/hostile/hostile.c`) into `dir`, its junk
/// header `header_size` bytes long.
fn hostile(dir: &Path, header_size: usize) -> PathBuf {
    c_fixture(
        dir,
        "hostile/hostile.c",
        &format!("libhostile{header_size}.so"),
        &[format!("HEADER_SIZE={header_size}")],
    )
}

/// `plugins check FILE`, with $NM_MARKER set for the hostile fixture's constructor.
fn check(file: &Path, marker: &Path, extra: &[&str]) -> crate::util::Run {
    command()
        .args(["plugins", "check"])
        .arg(file)
        .args(extra)
        .env("NM_MARKER", marker)
        .output()
        .expect("the binary runs")
        .into()
}

/// A shared object whose header is junk, or that sits where others can write, or that
/// another user owns, is refused with one line naming the file and the reason, before it
/// is mapped: its constructor never runs.
#[test]
fn untrusted_or_junk_files_are_refused_before_any_of_their_code_runs() {
    let dir = TestDir::new("hostile");
    let marker = dir.join("constructor-ran");
    let junk = hostile(&dir, 8);
    // The marker works: any dynamic loader that maps the file runs the constructor.
    let preload = std::process::Command::new("true")
        .env("LD_PRELOAD", &junk)
        .env("NM_MARKER", &marker)
        .status()
        .unwrap();
    assert!(
        preload.success() && marker.exists(),
        "the fixture's constructor works"
    );
    fs::remove_file(&marker).unwrap();

    let run = check(&junk, &marker, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let prefix = format!(
        "error: cannot load plugin {}: its plugin header nightmare_monkey_plugin_v1__hostile is 8 bytes, not the ",
        junk.display()
    );
    assert!(run.stderr.starts_with(&prefix), "{}", run.stderr);
    let size: usize = run.stderr[prefix.len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The right size, junk inside.
    let sized = hostile(&dir, size);
    let run = check(&sized, &marker, &[]);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot load plugin {}: its plugin header nightmare_monkey_plugin_v1__hostile does not start with abi_stable's mark: it is not a header export_plugin! writes\n",
            sized.display()
        )
    );

    // A real plugin where others can write, or owned by another user.
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    let lib = open.join("libpanic_plugin.so");
    fs::copy(built_lib("libpanic_plugin.so"), &lib).unwrap();
    fs::copy(&junk, open.join("libhostile.so")).unwrap();
    chmod(&open, 0o777);
    for file in [lib.clone(), open.join("libhostile.so")] {
        let run = check(&file, &marker, &[]);
        assert_eq!(run.code, Some(2));
        assert_eq!(
            run.stderr,
            format!(
                "error: cannot load plugin {}: not trusted: the directory {} is writable by its group and everyone (mode 777): anyone there could replace the plugin (chmod go-w {}) (--allow-untrusted-plugins loads it anyway)\n",
                file.display(),
                open.display(),
                open.display()
            )
        );
    }
    // The opt-out loads it, loudly.
    let run = check(&lib, &marker, &["--allow-untrusted-plugins"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.starts_with(&format!(
        "warning: plugin {} is not trusted (the directory {} is writable by its group and everyone",
        lib.display(),
        open.display()
    )));
    assert!(run
        .stderr
        .ends_with("loaded anyway, as --allow-untrusted-plugins asks\n"));
    // Through a symlink from a trusted directory: the target's directory counts.
    let link = dir.join("liblinked.so");
    std::os::unix::fs::symlink(&lib, &link).unwrap();
    assert!(check(&link, &marker, &[])
        .stderr
        .contains("not trusted: the directory"));
    chmod(&open, 0o755);
    assert_eq!(check(&link, &marker, &[]).code, Some(0));
    // Writable by its group.
    chmod(&lib, 0o775);
    assert!(check(&lib, &marker, &[]).stderr.contains(&format!(
        "not trusted: {} is writable by its group (mode 775;",
        lib.display()
    )));
    chmod(&lib, 0o755);
    // Another user's (only root can give a file away; CI runs as root).
    if rustix::process::geteuid().is_root() {
        rustix::fs::chown(&lib, Some(rustix::fs::Uid::from_raw(4321)), None).unwrap();
        assert!(check(&lib, &marker, &[])
            .stderr
            .contains("is owned by uid 4321, neither root nor the user the monkey runs as"));
    }
    // The daemon and check-config refuse the same way.
    let cfg = dir.join("hostile.ron");
    fs::write(
        &cfg,
        format!("(plugins: [{:?}])", open.join("libhostile.so")),
    )
    .unwrap();
    chmod(&open, 0o777);
    let run: crate::util::Run = command()
        .args(["check-config"])
        .arg(&cfg)
        .env("NM_MARKER", &marker)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("not trusted: the directory"),
        "{}",
        run.stderr
    );
    assert!(!marker.exists(), "no constructor of a refused file ran");
    chmod(&open, 0o755);
}

/// The daemon maps a private copy of each plugin file: copying another file over it in
/// place (as `cp` does) changes nothing in the running daemon. It used to crash it.
#[test]
fn overwriting_a_loaded_plugin_file_does_not_touch_the_running_daemon() {
    let dir = TestDir::new("overwrite");
    let (cfg, lib) = panicky_daemon(
        &dir,
        "",
        r#""slow": (plugin: "panicky", config: (sleep_ms: 1)), "segv": (plugin: "panicky", config: (crash_in_inject: "segv"))"#,
    );
    let mut d = Daemon::start(&["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let port = d.port();
    let before = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
    assert_eq!(before.status, 200, "{}", before.body);
    // In place: same inode, new bytes (another plugin's), as `cp` does.
    fs::write(&lib, fs::read(built_lib("libprocess_kill.so")).unwrap()).unwrap();
    for _ in 0..3 {
        let after = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
        assert_eq!(after.status, 200, "{}", after.body);
        assert_eq!(after.json()["summary"], "slept 1 ms");
    }
    // Even a fresh worker (the last one crashed) runs the bytes loaded at start, not
    // what the file holds now.
    let crash = crate::util::http(port, "POST", "/api/faults/segv", &[], br#"{"desc":"x"}"#);
    assert_eq!(crash.status, 502, "{}", crash.body);
    let fresh = crate::util::http(port, "POST", "/api/faults/slow", &[], br#"{"desc":"x"}"#);
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.json()["summary"], "slept 1 ms");
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:?}", d.log);
}

/// A FIFO or a device named as a plugin is refused at once, in one line, even with
/// `--allow-untrusted-plugins`: the read would wait for good, or never end.
#[test]
fn a_fifo_or_a_device_is_no_plugin_whatever_the_trust() {
    let dir = TestDir::new("plugin-fifo");
    let fifo = dir.join("fifo.so");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let marker = dir.join("constructor-ran");
    for file in [fifo.as_path(), Path::new("/dev/zero")] {
        for extra in [&[][..], &["--allow-untrusted-plugins"]] {
            let mut child = command()
                .args(["plugins", "check"])
                .arg(file)
                .args(extra)
                .env("NM_MARKER", &marker)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let end = std::time::Instant::now() + crate::util::DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > end {
                    let _ = child.kill();
                    panic!("{file:?} {extra:?}: still reading");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{file:?} {extra:?}: {stderr}");
            assert_eq!(
                stderr,
                format!(
                    "error: cannot load plugin {}: it is not a regular file\n",
                    file.display()
                ),
                "{extra:?}"
            );
        }
    }
}

/// A plugin header another abi_stable wrote (0.10: its mark, its version) is refused in
/// one sentence that says so, before anything past the version is read: never a
/// worker's crash. And a file the dynamic loader refuses is named as the user named it.
#[test]
fn a_header_of_another_abi_stable_is_refused_saying_so() {
    let dir = TestDir::new("plugin-oldabi");
    let marker = dir.join("constructor-ran");
    // The size of this host's headers, as the refusal of a short one says it.
    let run = check(&hostile(&dir, 8), &marker, &[]);
    let size: usize = run
        .stderr
        .split(" bytes, not the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {}", run.stderr));
    let build = |file: &str, more: &[&str]| {
        let defines: Vec<String> = [format!("HEADER_SIZE={size}")]
            .into_iter()
            .chain(more.iter().map(|d| (*d).to_owned()))
            .collect();
        c_fixture(&dir, "oldabi/oldabi.c", file, &defines)
    };
    // One the dynamic loader refuses is named by its file, not the private copy mapped.
    let undefined = build("libundefined.so", &["UNDEFINED"]);
    let run = check(&undefined, &marker, &[]);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot load plugin {}: the dynamic loader refused it: libundefined.so: undefined symbol: nm_missing_symbol\n",
            undefined.display()
        )
    );
    let so = build("liboldabi.so", &[]);
    let run = check(&so, &marker, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot load plugin {}: built with an incompatible abi_stable (0.10; this host's is 0.11): rebuild it against this host's nightmare-monkey-plugin-api\n",
            so.display()
        )) && run.stderr.lines().count() == 1,
        "{}",
        run.stderr
    );
}
