//! The dashboard's controls: revert now, a confirmed pause, and a page that runs only
//! its own script.

use super::*;

#[test]
fn revert_wants_one_fault_id_or_all() {
    let none = crate::util::monkey(&["revert", "--url", "127.0.0.1:9"]);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert_eq!(
        none.stderr.trim(),
        "error: which fault? Give its id (`status` lists the faults in effect), or --all for every one"
    );
    let both = crate::util::monkey(&["revert", "1-1", "--all", "--url", "127.0.0.1:9"]);
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    let bad = crate::util::monkey(&["revert", "../x", "--url", "127.0.0.1:9"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert_eq!(
        bad.stderr.trim(),
        "error: `../x` is not a fault id: expected one like 1795723590302-1, as `status` lists them"
    );
    // Nobody there: said, with the way out.
    let gone = crate::util::monkey(&["revert", "1-1", "--url", "127.0.0.1:9"]);
    assert_eq!(gone.code, Some(1), "{}", gone.stderr);
    assert!(
        gone.stderr
            .contains("cannot reach the daemon at http://127.0.0.1:9"),
        "{}",
        gone.stderr
    );
}

#[test]
fn a_confirmed_pause_pauses_even_if_the_state_changed_behind_the_dialog() {
    let dir = TestDir::new("dashboard-stale-dialog");
    let cfg = config(&dir, "", "^sleep$");
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let browser = Browser::start(1280, 1000);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.until(
        Duration::from_secs(30),
        "live and playing",
        r#"return document.getElementById("live").textContent === "live"
             && document.getElementById("state").textContent === "Playing""#,
    );
    // The instructor asks to pause...
    browser.click("#switch");
    browser.until(
        Duration::from_secs(30),
        "the confirmation",
        r#"return document.getElementById("confirm").open
             && document.getElementById("confirm-yes").textContent === "Pause""#,
    );
    // ...a colleague pauses meanwhile, and the page hears of it behind the dialog...
    assert_eq!(http(port, "POST", "/api/pause", &[], b"").status, 200);
    browser.until(
        Duration::from_secs(30),
        "the pause seen behind the dialog",
        r#"return document.getElementById("state").textContent.startsWith("Paused")"#,
    );
    // ...and "Pause" still means pause: never a resume nobody confirmed.
    browser.click("#confirm-yes");
    for _ in 0..2 {
        daemon.wait_for(|l| l.starts_with("Nightmare Monkey is paused (POST /api/pause, "));
    }
    let status = http(port, "GET", "/api/status", &[], b"").json();
    assert_eq!(status["state"], "paused", "{status}");
    drop(browser);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn the_page_runs_its_own_script_only_never_an_injected_handler() {
    let dir = TestDir::new("dashboard-csp");
    let cfg = config(&dir, "", "^sleep$");
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();
    let page = http(port, "GET", "/", &[], b"");
    let policy = page.header("content-security-policy").unwrap_or_default();
    let nonce = policy
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(nonce.len(), 32, "script-src by a nonce: {policy}");
    let scripts = policy
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap_or_default();
    assert!(!scripts.contains("unsafe"), "{policy}");
    assert!(page.body.contains(&format!(r#"<script nonce="{nonce}">"#)));
    assert_eq!(page.body.matches("<script").count(), 1);
    let again = http(port, "GET", "/", &[], b"");
    assert!(
        !again.body.contains(&nonce),
        "a nonce is never served twice"
    );

    let browser = Browser::start(1024, 800);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.until(
        Duration::from_secs(30),
        "the board (the page's own script runs)",
        r#"return !document.getElementById("board").hidden"#,
    );
    // Markup that slipped into the page (as the timeline's SVG is put in) runs nothing.
    // Each of its two images fires a load or an error event. Listeners of the test's
    // own, added in the same script (before either event can fire), count them: the
    // inline handlers come first in each dispatch, so once both are counted, a handler
    // that could run has run.
    browser.run(
        r##"document.getElementById("timeline").innerHTML =
             '<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=" width="1" height="1" onload="window.pwned = 1" onerror="window.pwned = 2"/></svg><img src="data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=" onload="window.pwned = 3" onerror="window.pwned = 4">';
           window.fired = 0;
           for (const image of document.querySelectorAll("#timeline image, #timeline img")) {
             image.addEventListener("load", () => { window.fired += 1; });
             image.addEventListener("error", () => { window.fired += 1; });
           }"##,
        json!([]),
    );
    browser.until(
        Duration::from_secs(30),
        "a load or error event on both images",
        "return window.fired >= 2",
    );
    assert_eq!(
        browser.run(
            "return window.pwned === undefined ? null : window.pwned",
            json!([])
        ),
        json!(null),
        "an injected inline handler ran"
    );
    drop(browser);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), Some(0));
}
