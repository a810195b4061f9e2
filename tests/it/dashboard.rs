//! The dashboard in a real browser (Debian's headless Chromium through ChromeDriver):
//! the token asked for once, the state shown, a fault seen within a second through the
//! server-sent events, pause and resume from the keyboard, "revert now" on a real paused
//! process (in a PID namespace), the report and the plan as pictures. Screenshots go to
//! `$NIGHTMARE_MONKEY_SCREENSHOTS` (`doc/img/regenerate` sets it to `doc/img`), else to
//! a temporary directory.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::util::{
    http, namespace,
    webdriver::{Browser, ENTER, SHIFT, TAB},
    Daemon, Drill, Sleeper, TestDir,
};

/// Where screenshots go.
fn shots() -> PathBuf {
    std::env::var_os("NIGHTMARE_MONKEY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nm-it-screenshots"))
}

/// The largest the page may be: it is one file, served on every visit.
const MAX_PAGE_BYTES: usize = 32 * 1024;

/// Every control has a name a screen reader says: its text, `aria-label` or a label.
const UNLABELLED: &str = r#"return [...document.querySelectorAll("button, input, select, textarea")]
  .filter((e) => e.offsetParent !== null || e.closest("dialog[open]"))
  .filter((e) => !(e.getAttribute("aria-label") || e.textContent.trim()
     || (e.id && document.querySelector(`label[for="${e.id}"]`))))
  .map((e) => e.outerHTML);"#;

/// `rest` goes into `http: (...)`; process-kill chooses among processes named `victim`.
fn config(dir: &Path, rest: &str, victim: &str) -> PathBuf {
    Drill::new(dir)
        .named("dashboard.ron")
        .without("timer")
        .http(rest)
        .set(
            "schedule",
            "Uniform(min_interval: 21600, max_interval: 21600)",
        )
        .config(&format!(
            "budget: (per_hour: 5),\n    faults: {{ \"process-kill\": (config: (include_names: [{victim:?}])) }}"
        ))
        .write()
        .into()
}

/// The text `name` (a JS variable `setup` sets) once `check` (a JS expression over it)
/// holds, within 30 seconds.
fn text_until(browser: &Browser, what: &str, setup: &str, name: &str, check: &str) -> String {
    browser
        .until(
            Duration::from_secs(30),
            what,
            &format!("{setup}\nreturn ({check}) && {name}"),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn api(port: u16, method: &str, path: &str, token: &str) -> serde_json::Value {
    let auth = format!("Authorization: Bearer {token}");
    http(
        port,
        method,
        path,
        &[&auth],
        b"{\"desc\":\"dashboard test\"}",
    )
    .json()
}

#[test]
fn the_dashboard_asks_for_its_token_shows_the_state_hears_a_fault_and_flips_the_switch() {
    let dir = TestDir::new("dashboard");
    let cfg = config(
        &dir,
        r#", tokens: {"instructor": "s3cret-token"}"#,
        "^<i>evil$",
    );
    // The (dry-run) victim calls itself markup: it must show as text.
    let program = dir.join("<i>evil");
    fs::copy("/bin/sleep", &program).unwrap();
    let _victim = Sleeper::named(&program);
    let mut daemon = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let port = daemon.port();

    let page_bytes = the_page_is_self_contained(port);
    let browser = Browser::start(1280, 1000);
    the_page_asks_for_the_token(&browser, port, page_bytes);
    the_token_opens_the_board(&browser);
    a_fault_shows_through_the_event_stream(&browser, port);
    the_switch_flips_by_keyboard_and_by_mouse(&browser, port);
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    drop(browser);
    daemon.signal("TERM");
    assert_eq!(
        daemon.wait_exit(),
        Some(0),
        "the event stream does not hold the exit up"
    );
}

/// The page holds nothing of the monkey's and loads nothing from elsewhere; its size.
fn the_page_is_self_contained(port: u16) -> usize {
    // The same bytes with a token or without.
    let bare = http(port, "GET", "/", &[], b"");
    assert_eq!(bare.status, 200);
    let with_token = http(
        port,
        "GET",
        "/",
        &["Authorization: Bearer s3cret-token"],
        b"",
    );
    // Each answer has its own script nonce: the same page besides.
    let unsalted = |body: &str| {
        regex::Regex::new(r#"nonce="[0-9a-f]{32}""#)
            .unwrap()
            .replace(body, "nonce")
            .into_owned()
    };
    assert_ne!(bare.body, with_token.body, "a nonce is drawn per answer");
    assert_eq!(unsalted(&bare.body), unsalted(&with_token.body));
    assert!(
        bare.body.len() <= MAX_PAGE_BYTES,
        "the page is {} bytes",
        bare.body.len()
    );
    for outside in ["http://", "https://", "src=", "<link"] {
        assert!(!bare.body.contains(outside), "the page loads {outside}");
    }
    assert!(bare
        .header("content-security-policy")
        .is_some_and(|p| p.contains("default-src 'none'")));
    // The events want the token too.
    assert_eq!(http(port, "GET", "/api/events", &[], b"").status, 401);

    bare.body.len()
}

/// The page asks for the token first, paints quickly, shows nothing without it.
fn the_page_asks_for_the_token(browser: &Browser, port: u16, page_bytes: usize) {
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.until(
        Duration::from_secs(30),
        "the token form",
        r#"return !document.getElementById("login").hidden"#,
    );
    // As the browser measured it (the entry comes once the frame is presented).
    let first_paint = browser.until(
        Duration::from_secs(30),
        "the first contentful paint",
        r#"const p = performance.getEntriesByType("paint").find((e) => e.name === "first-contentful-paint");
           return p && Math.round(p.startTime)"#,
    );
    eprintln!(
        "dashboard: {} bytes, first contentful paint {first_paint} ms",
        page_bytes
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    assert_eq!(
        browser.run(
            r#"return document.getElementById("board").hidden"#,
            json!([])
        ),
        true,
        "nothing shows without the token"
    );
}

/// A wrong token is refused, and said so; the right one opens the board.
fn the_token_opens_the_board(browser: &Browser) {
    browser.type_into("#token", "wrong");
    browser.keys(&[ENTER]);
    browser.until(
        Duration::from_secs(30),
        "the refusal",
        r#"return document.getElementById("problem").textContent.includes("refused")"#,
    );
    let refused = browser.console_errors();
    assert!(
        refused.iter().all(|e| e.contains("401")),
        "only the refused request: {refused:?}"
    );
    browser.type_into("#token", "s3cret-token");
    browser.keys(&[ENTER]);
    let state = browser.until(
        Duration::from_secs(30),
        "the state",
        r#"return !document.getElementById("board").hidden && document.getElementById("state").textContent"#,
    );
    assert_eq!(state, "Playing");
    browser.until(
        Duration::from_secs(30),
        "the event stream",
        r#"return document.getElementById("live").textContent === "live""#,
    );
    let shown = browser.run(
        r#"const t = (id) => document.getElementById(id).textContent;
           return [t("mode"), t("window"), t("next"), t("next-detail"), t("budget"), t("budget-detail")];"#,
        json!([]),
    );
    assert_eq!(shown[0], "dry run");
    assert_eq!(shown[1], "from 00:00 to 24:00, Sun thru Sat (local time)");
    assert!(
        shown[2].as_str().unwrap().len() == 8,
        "a clock time: {shown}"
    );
    assert!(
        shown[3]
            .as_str()
            .unwrap()
            .contains("process-kill in 5h 59m"),
        "{shown}"
    );
    assert_eq!(shown[4], "5 of 5");
    assert_eq!(shown[5], "left in the last hour");
}

/// A fault shows once its event arrives: the page polls nothing (it refreshes on the
/// events alone), so the row appearing is the event stream at work.
fn a_fault_shows_through_the_event_stream(browser: &Browser, port: u16) {
    let sent = Instant::now();
    let fault = api(port, "POST", "/api/kill", "s3cret-token");
    let answered = sent.elapsed();
    let target = format!(
        "{}(PID:{})",
        fault["process"]["name"].as_str().unwrap(),
        fault["pid"]
    );
    let row = browser.until(
        Duration::from_secs(30),
        "the fault in the table",
        &format!(
            r#"const row = document.querySelector('#latest tbody tr');
               return row && row.innerText.includes({target}) && row.innerText"#,
            target = serde_json::to_string(&target).unwrap()
        ),
    );
    let seen = sent.elapsed();
    assert!(
        row.as_str().unwrap().contains(&target),
        "{row} shows {target}"
    );
    assert!(target.starts_with("<i>evil(PID:"), "{target}");
    assert_eq!(
        browser.run(
            "return document.querySelectorAll('main i').length",
            json!([])
        ),
        0,
        "a name is never markup"
    );
    eprintln!("dashboard: the fault answered in {answered:?}, shown after {seen:?}");
    assert_eq!(browser.run(UNLABELLED, json!([])), json!([]));
    browser.screenshot(&shots().join("dashboard.png"));
}

/// Keyboard only: Tab to the switch, Enter, Shift+Tab from Cancel to Pause, Enter; then
/// Cancel changes nothing and the mouse resumes.
fn the_switch_flips_by_keyboard_and_by_mouse(browser: &Browser, port: u16) {
    browser.run(
        "document.activeElement.blur(); window.scrollTo(0, 0)",
        json!([]),
    );
    let mut tabs = 0;
    while browser.run("return document.activeElement.id", json!([])) != "switch" {
        browser.keys(&[TAB]);
        tabs += 1;
        assert!(tabs < 30, "the switch is not reachable with Tab");
    }
    browser.keys(&[ENTER]);
    browser.until(
        Duration::from_secs(30),
        "the confirmation",
        r#"return document.getElementById("confirm").open && document.activeElement.id === "confirm-no""#,
    );
    assert_eq!(browser.run(UNLABELLED, json!([])), json!([]));
    browser.screenshot(&shots().join("dashboard-pause.png"));
    browser.keys(&[SHIFT, TAB]);
    assert_eq!(
        browser.run("return document.activeElement.id", json!([])),
        "confirm-yes"
    );
    browser.keys(&[ENTER]);
    let state = browser.until(
        Duration::from_secs(30),
        "paused",
        r#"const s = document.getElementById("state").textContent;
           return s.startsWith("Paused") && s"#,
    );
    assert_eq!(
        api(port, "GET", "/api/status", "s3cret-token")["state"],
        "paused",
        "{state}"
    );
    assert_eq!(
        browser.run("return document.activeElement.id", json!([])),
        "switch",
        "the focus goes back to the switch"
    );

    // Cancel changes nothing; the mouse resumes.
    browser.click("#switch");
    browser.click("#confirm-no");
    assert_eq!(
        api(port, "GET", "/api/status", "s3cret-token")["state"],
        "paused"
    );
    browser.click("#switch");
    browser.click("#confirm-yes");
    browser.until(
        Duration::from_secs(30),
        "playing again",
        r#"return document.getElementById("state").textContent === "Playing""#,
    );
    assert_eq!(
        api(port, "GET", "/api/status", "s3cret-token")["state"],
        "playing"
    );
}

/// A daemon with `--execute` inside a PID namespace of its own, in the background,
/// with `sleep 98765` there for its pause fault; ended (and everything in the namespace
/// with it) when dropped.
struct Namespace {
    child: Child,
    dir: PathBuf,
}

impl Namespace {
    fn start(dir: &Path, cfg: &Path) -> Namespace {
        let script = format!(
            r#"sleep 98765 & started $!; "$NM" --config {cfg} --execute 2>{d}/log; sleep 1000"#,
            cfg = cfg.display(),
            d = dir.display()
        );
        let child = namespace(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare runs (install util-linux)");
        Namespace {
            child,
            dir: dir.to_owned(),
        }
    }

    /// The daemon's port, from its log.
    fn port(&self) -> u16 {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            if let Some(port) = log
                .lines()
                .find_map(|l| l.split("Listening on http://127.0.0.1:").nth(1))
            {
                return port.trim().parse().unwrap();
            }
            assert!(Instant::now() < end, "the daemon did not listen: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The state letter of the namespace's `sleep 98765`, read from this side's /proc:
    /// the one descended from our own `unshare`.
    fn victim_state(&self) -> String {
        let ours = |mut pid: u32| {
            for _ in 0..16 {
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
                let Some(parent) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok())
                else {
                    return false;
                };
                if parent == self.child.id() {
                    return true;
                }
                pid = parent;
            }
            false
        };
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline == b"sleep\x0098765\x00" && ours(pid) {
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
                return after.split_whitespace().next().unwrap_or("?").to_owned();
            }
        }
        "gone".to_owned()
    }

    fn until_victim(&self, want: &str) -> String {
        let end = Instant::now() + crate::util::DEADLINE;
        loop {
            let state = self.victim_state();
            if state == want || Instant::now() > end {
                return state;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Our own child, by its handle; --kill-child ends the namespace with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn revert_now_resumes_a_paused_process() {
    let dir = TestDir::new("dashboard-revert");
    let file = Drill::new(&dir)
        .named("revert.ron")
        .config(
            r#"faults: {
        "freeze": (plugin: "process-pause", config: (duration: "10m", include_cmdlines: ["^sleep 98765$"])),
    }"#,
        )
        .write();
    let namespace = Namespace::start(&dir, file.as_ref());
    let port = namespace.port();
    let fault = http(
        port,
        "POST",
        "/api/faults/freeze",
        &[],
        br#"{"desc":"a frozen worker"}"#,
    )
    .json();
    assert_eq!(fault["result"], "paused", "{fault}");
    assert_eq!(namespace.until_victim("T"), "T", "stopped by the fault");

    let browser = Browser::start(1280, 1000);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    let row = browser.until(
        Duration::from_secs(30),
        "the active fault",
        r#"const row = document.querySelector('#active tbody tr');
           return row && row.innerText"#,
    );
    let id = fault["id"].as_str().unwrap();
    assert!(row.as_str().unwrap().contains(id), "{row}");
    assert_eq!(
        browser.run(
            r#"return document.getElementById("mode").textContent"#,
            json!([])
        ),
        "EXECUTE: faults are real"
    );
    browser.screenshot(&shots().join("dashboard-active.png"));
    browser.click(&format!(
        r#"#active button[aria-label="Revert now: freeze {id}"]"#
    ));
    browser.until(
        Duration::from_secs(30),
        "no fault in effect",
        r#"return !document.getElementById("none-active").hidden"#,
    );
    assert_eq!(
        namespace.until_victim("S"),
        "S",
        "running (sleeping) again after revert now"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    // Reverted once, as asked: a second revert finds nothing active.
    let again = http(port, "POST", &format!("/api/revert/{id}"), &[], b"");
    assert_eq!(again.status, 404, "{}", again.body);
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""type":"revert""#) && journal.contains(r#""reason":"asked""#),
        "{journal}"
    );
    let log = fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains(&format!(
            "Revert now of {id} (freeze) asked (POST /api/revert, 127.0.0.1:"
        )),
        "{log}"
    );
}

#[test]
fn the_report_and_the_plan_read_in_a_browser_and_print() {
    let dir = TestDir::new("dashboard-pictures");
    let report = dir.join("drill.html");
    let journal = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/it/report/mixed.jsonl");
    let run = crate::util::monkey(&[
        "report",
        "--journal",
        journal.to_str().unwrap(),
        "--since",
        "2020-01-01T00:00:00Z",
        "--format",
        "html",
        "-o",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let plan = dir.join("plan.html");
    let run = crate::util::monkey(&[
        "plan",
        "--seed",
        "7",
        "--from",
        "2026-12-07T09:00:00+09:00",
        "--count",
        "12",
        "-d",
        "Mon-Fri",
        "-t",
        "10:00-18:00",
        "--node",
        "web-1",
        "--node",
        "web-2",
        "--format",
        "html",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let browser = Browser::start(1280, 1000);
    for (file, shot) in [(&report, "report.png"), (&plan, "plan.png")] {
        browser.goto(&format!("file://{}", file.display()));
        let pictures = browser.run(
            r#"return [...document.querySelectorAll("svg")].map((s) => s.getBoundingClientRect().width)"#,
            json!([]),
        );
        assert!(
            pictures.as_array().is_some_and(
                |p| !p.is_empty() && p.iter().all(|w| w.as_f64().unwrap_or(0.0) > 300.0)
            ),
            "{file:?} draws its pictures: {pictures}"
        );
        assert_eq!(browser.console_errors(), Vec::<String>::new(), "{file:?}");
        browser.screenshot(&shots().join(shot));
        let pdf = browser.print_pdf();
        assert!(pdf.starts_with(b"%PDF"), "{file:?} prints");
    }
}

mod controls;
mod events;
mod fleet;
mod proxies;
