//! systemd: readiness, watchdog and stopping notifications, SIGHUP, the hardened unit.

use crate::util::{http, Daemon, Drill, Sleeper, TestDir};

#[test]
fn systemd_hears_ready_watchdog_and_stopping_and_sighup_applies_a_config_that_checks() {
    use std::os::unix::net::UnixDatagram;
    let _victim = Sleeper::start();
    let dir = TestDir::new("sd-notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(crate::util::DEADLINE))
        .unwrap();
    // The next notification that is not a watchdog ping.
    let receive = || loop {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification in time");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text != "WATCHDOG=1" {
            return text;
        }
    };
    let drill = || Drill::new(&dir).named("c.ron").without("timer");
    let config = drill().write();
    let mut d = Daemon::start_json(
        &["--listen", "127.0.0.1:0", "--config", &config],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let port = d.port();
    let ready = receive();
    assert!(
        ready.starts_with("READY=1\nSTATUS=Nightmare Monkey is playing"),
        "{ready}"
    );
    // Pings every 100 ms, half the watchdog period.
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    // A configuration with errors: said, and not applied.
    std::fs::write(&config, r#"(window: (days: "Funday"))"#).unwrap();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("not applied"));
    assert!(line.contains(r#""level":"warn""#), "{line}");
    assert!(d.log.iter().any(|l| l.contains("Funday")), "{:?}", d.log);
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(
        http(
            port,
            "POST",
            "/api/faults/stop-one",
            &[],
            br#"{"desc":"x"}"#
        )
        .status,
        404
    );

    // One that checks out: a restart in place (same PID, same pipe) that applies it,
    // with the kill switch still on if it was.
    assert_eq!(http(port, "POST", "/api/pause", &[], b"").status, 200);
    drill()
        .config(r#"faults: {"stop-one": (plugin: "process-pause", config: (duration: "1s"))}"#)
        .write();
    d.signal("HUP");
    let line = d.wait_for(|l| l.contains("restarting with it"));
    assert!(
        // It names one fault, so only that one: no process-kill beside it.
        line.contains("the configuration checks out (1 fault)"),
        "{line}"
    );
    assert_eq!(
        receive(),
        "RELOADING=1\nSTATUS=restarting with the new configuration"
    );
    d.wait_for(|l| l.contains("goes to bed (SIGHUP: restarting with the new configuration)"));
    let port = d.port();
    assert!(receive().starts_with("READY=1\n"));
    // Restarted through /proc/self/exe, it keeps its name for ps, top and pgrep.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", d.pid())).unwrap();
    assert_eq!(comm, "nightmare-monke\n");
    assert!(d
        .log
        .iter()
        .any(|l| l.contains("Paused, as before the SIGHUP restart")));
    let fire = || {
        http(
            port,
            "POST",
            "/api/faults/stop-one",
            &[],
            br#"{"desc":"new"}"#,
        )
    };
    let a = fire();
    assert_eq!(a.status, 503, "still paused: {}", a.body);
    assert_eq!(http(port, "POST", "/api/resume", &[], b"").status, 200);
    let a = fire();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["fault"], "stop-one");

    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
    assert_eq!(receive(), "STOPPING=1");
}

/// `Key=value` settings of a unit file (comments and sections dropped), in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("Key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/systemd/nightmare-monkey.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings = unit_settings(&text);
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} is missing"))
    };
    assert_eq!(get("Type"), "notify");
    assert!(get("WatchdogSec").ends_with('s'));
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("LimitNOFILE"), "65536");
    assert_eq!(get("CapabilityBoundingSet"), "CAP_KILL");
    assert_eq!(get("AmbientCapabilities"), "CAP_KILL");
    assert_eq!(get("StateDirectory"), "nightmare-monkey");
    assert_eq!(get("ConfigurationDirectory"), "nightmare-monkey");
    assert_eq!(get("ProtectSystem"), "strict");
    // A configuration error (exit 2) is not restarted every few seconds.
    assert_eq!(get("RestartPreventExitStatus"), "2");
    assert!(
        !settings.iter().any(|(k, _)| k == "ProtectProc"),
        "the monkey must see every process"
    );
    let exec = get("ExecStart");
    assert_eq!(
        exec,
        "/usr/bin/nightmare-monkey --config /etc/nightmare-monkey/config.ron"
    );
    // systemd itself agrees, where it is installed (with our binary in ExecStart).
    if !systemd_agrees(&text, "unit") {
        eprintln!("systemd-analyze is not installed: the unit is not verified by systemd");
    }
}

/// Whether `systemd-analyze verify` could judge the unit `text` (with our binary in
/// its `ExecStart`), written in a test directory named after `name`; fails the test
/// when systemd finds fault with it. `false`: systemd-analyze is not installed.
pub(super) fn systemd_agrees(text: &str, name: &str) -> bool {
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if !analyze.is_ok_and(|o| o.status.success()) {
        return false;
    }
    let dir = TestDir::new(name);
    let unit = dir.join("nightmare-monkey.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/bin/nightmare-monkey",
            crate::util::bin().to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
