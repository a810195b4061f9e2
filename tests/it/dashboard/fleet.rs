//! The dashboard's fleet panel, against two daemons on a real etcd (on loopback): the
//! nodes and what they do, the slots and who holds them, the fleet budget, and the
//! fleet's switch flipped from the page. Without `fleet:` there is no panel.

use super::*;
use crate::fleet::etcd::Etcd;

/// A dry-run daemon's config in `dir`, in the fleet under `prefix` on `etcd`: one slot,
/// at most 5 faults an hour; a kill fault that may choose only `sleep 1000`.
fn fleet_config(dir: &Path, etcd: &Etcd, prefix: &str) -> PathBuf {
    let file = dir.join("fleet.ron");
    fs::write(
        &file,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    timer: (enabled: false),
    http: (listen: "127.0.0.1:0"),
    state_dir: {dir:?},
    faults: {{ "process-kill": (config: (include_cmdlines: ["^sleep 1000$"])) }},
    fleet: (
        coordinator: Etcd(endpoints: [{:?}], prefix: "{prefix}"),
        max_concurrent: 1,
        budget: (max: 5, per: "1h"),
    ),
)"#,
            etcd.endpoint()
        ),
    )
    .unwrap();
    file
}

/// The panel's text, once `check` (a JS expression over `fleet`, the panel's text) holds.
fn panel_until(browser: &Browser, what: &str, check: &str) -> String {
    text_until(
        browser,
        what,
        r#"const panel = document.getElementById("fleet");
           const fleet = panel.hidden ? "" : panel.innerText;"#,
        "fleet",
        check,
    )
}

#[test]
fn the_fleet_panel_shows_nodes_slots_budget_and_flips_the_fleet_switch() {
    let etcd = Etcd::start("dashboard");
    let _victim = Sleeper::start();
    let dirs = [TestDir::new("dash-fleet-a"), TestDir::new("dash-fleet-b")];
    let mut daemons: Vec<Daemon> = dirs
        .iter()
        .zip(["web-1", "web-2"])
        .map(|(dir, node)| {
            let cfg = fleet_config(dir, &etcd, "/nm/dash");
            Daemon::start(&["--config", cfg.to_str().unwrap(), "--node", node])
        })
        .collect();
    let ports: Vec<u16> = daemons.iter_mut().map(Daemon::port).collect();
    let browser = Browser::start(1280, 1100);
    browser.goto(&format!("http://127.0.0.1:{}/", ports[0]));

    // Both nodes, playing, nothing held, nothing used.
    let shown = panel_until(
        &browser,
        "both nodes playing",
        r#"fleet.includes("web-1") && fleet.includes("web-2") && fleet.includes("Fleet playing")"#,
    );
    assert!(shown.contains("0 of 1 slots held"), "{shown}");
    assert!(shown.contains("0 of 5 per 1h used"), "{shown}");
    assert!(shown.contains("No slot is held."), "{shown}");
    assert!(shown.contains("etcd: 1 member at revision"), "{shown}");
    // This daemon's own row is marked, and only it.
    assert!(shown.contains("web-1 (this node)"), "{shown}");
    assert!(!shown.contains("web-2 (this node)"), "{shown}");
    assert_eq!(
        browser.run(
            r##"return [...document.querySelectorAll("#fleet-nodes tr[aria-current=true] td.node")].map(td => td.firstChild.textContent)"##,
            json!([])
        ),
        json!(["web-1"])
    );
    let status = http(ports[1], "GET", "/api/status", &[], b"").json();
    assert_eq!(status["node"], "web-2", "{status}");

    // A fault on the other node counts against the fleet budget, seen here.
    let fault = http(ports[1], "POST", "/api/kill", &[], br#"{"desc":"fleet"}"#);
    assert_eq!(fault.status, 200, "{}", fault.body);
    panel_until(
        &browser,
        "the budget used",
        r#"fleet.includes("1 of 5 per 1h used")"#,
    );

    // A slot held elsewhere shows with its holder.
    etcd.put(
        "/nm/dash/slots/0",
        r#"{"node":"db-7","fault":"pause","at":"2026-12-06T11:40:02Z"}"#,
    );
    let shown = panel_until(
        &browser,
        "the slot held",
        r#"fleet.includes("1 of 1 slots held") && fleet.includes("db-7")"#,
    );
    assert!(shown.contains("pause"), "{shown}");
    etcd.delete("/nm/dash/slots/0");
    panel_until(
        &browser,
        "the slot free",
        r#"fleet.includes("No slot is held.")"#,
    );

    // Paused from the page, with a reason: every node pauses, and says so.
    browser.click("#fleet-switch");
    browser.until(
        Duration::from_secs(30),
        "the confirmation asking why",
        r#"return document.getElementById("confirm").open
             && !document.getElementById("confirm-why-row").hidden
             && document.getElementById("confirm-title").textContent === "Pause the whole fleet?""#,
    );
    assert_eq!(browser.run(UNLABELLED, json!([])), json!([]));
    browser.type_into("#confirm-why", "game day is over");
    browser.click("#confirm-yes");
    let shown = panel_until(
        &browser,
        "the fleet paused, on both nodes",
        r#"fleet.includes("Fleet paused") && fleet.includes("game day is over")
           && (fleet.match(/paused \(the fleet's switch\)/g) || []).length === 2"#,
    );
    assert!(shown.contains("Resume the fleet"), "{shown}");
    browser.until(
        Duration::from_secs(30),
        "this node paused",
        r#"return document.getElementById("state").textContent.includes("the fleet is paused by")"#,
    );
    for &port in &ports {
        let status = http(port, "GET", "/api/status", &[], b"").json();
        assert_eq!(status["state"], "paused", "{status}");
        assert_eq!(status["fleet"], true, "{status}");
    }
    let refused = http(ports[1], "POST", "/api/kill", &[], br#"{"desc":"fleet"}"#);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        browser.run("return document.activeElement.id", json!([])),
        "fleet-switch",
        "the focus goes back to the fleet's switch"
    );
    browser.screenshot(&shots().join("dashboard-fleet.png"));

    // Resumed from the page: playing again everywhere.
    browser.click("#fleet-switch");
    browser.click("#confirm-yes");
    panel_until(
        &browser,
        "the fleet playing, on both nodes",
        r#"fleet.includes("Fleet playing") && !fleet.includes("paused:")"#,
    );
    browser.until(
        Duration::from_secs(30),
        "this node playing",
        r#"return document.getElementById("state").textContent === "Playing""#,
    );
    assert_eq!(
        http(ports[1], "GET", "/api/status", &[], b"").json()["state"],
        "playing"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    drop(browser);
    for daemon in &mut daemons {
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(), Some(0));
    }
}

#[test]
fn without_a_fleet_there_is_no_fleet_panel() {
    let dir = TestDir::new("dashboard-no-fleet");
    let cfg = config(&dir, "", "^sleep$");
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert!(status.get("fleet").is_none(), "{status}");
    let browser = Browser::start(1024, 800);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.until(
        Duration::from_secs(30),
        "the board",
        r#"return document.getElementById("state").textContent === "Playing""#,
    );
    assert_eq!(
        browser.run(
            r#"return document.getElementById("fleet").hidden"#,
            json!([])
        ),
        true
    );
    // Never asked for: no 404 in the console.
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    drop(browser);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}
