//! A real browser for the dashboard's tests: Debian's headless Chromium driven through
//! ChromeDriver over the W3C WebDriver protocol (JSON over HTTP on loopback), with the
//! few commands the tests need. `.ci/run` installs `chromium` and `chromium-driver`.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// ChromeDriver and one browser session; both end when dropped, and the browser's
/// profile directory goes after them.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: Option<super::TestDir>,
}

/// The W3C key for Tab, Enter and Shift (WebDriver's private-use code points).
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const SHIFT: &str = "\u{E008}";

/// A port for ChromeDriver that no other browser of this test run takes: below the
/// ephemeral range (where the daemons' `127.0.0.1:0` land), one per browser, checked
/// free. Two tests must never share a driver: the first to end would kill the other's.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::SeqCst) % 4_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and a headless Chromium session
    /// `width` x `height` pixels, with the flags that keep it off the network.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (.ci/run installs chromium-driver)");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile: None,
        };
        let ready = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver ended ({status}); under `ulimit -v`? Chromium maps more address space than most");
            }
            assert!(Instant::now() < ready, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let profile = browser
            .profile
            .insert(super::TestDir::new(&format!("chromium-profile-{port}")));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`. Panics on an error answer, naming it.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, answer) = request(self.port, method, path, &body);
        let value: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("chromedriver said ({e}): {answer}"));
        assert!(status == 200, "WebDriver {method} {path}: {answer}");
        value.get("value").cloned().unwrap_or(Value::Null)
    }

    fn session(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{rest}", self.session), body)
    }

    /// Opens `url` and waits for the page's load.
    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; what it
    /// returns. An `async` body's promise is awaited.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits (up to `within`) until `script` returns something truthy; that value.
    pub fn until(&self, within: Duration, what: &str, script: &str) -> Value {
        let end = Instant::now() + within;
        loop {
            let value = self.run(script, json!([]));
            let truthy =
                !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("");
            if truthy {
                return value;
            }
            if Instant::now() > end {
                let page = self.run("return document.body.innerText", json!([]));
                panic!("timed out waiting for {what}; the page shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The element `css` selects (its WebDriver reference).
    pub fn find(&self, css: &str) -> Value {
        let element = self.session(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        element
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    fn element_id(element: &Value) -> &str {
        element.as_str().expect("an element reference")
    }

    /// Clicks the element `css` selects. A live page may redraw it between the find and
    /// the click (a stale reference): found again, a few times.
    pub fn click(&self, css: &str) {
        for _ in 0..5 {
            let element = self.find(css);
            let id = Self::element_id(&element);
            let path = format!("/session/{}/element/{id}/click", self.session);
            let (status, answer) = request(self.port, "POST", &path, "{}");
            if status == 200 {
                return;
            }
            assert!(
                answer.contains("stale element reference"),
                "WebDriver click on {css}: {answer}"
            );
        }
        panic!("{css} was redrawn under every click");
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        let id = Self::element_id(&element);
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses `keys` (each a key or a WebDriver key code) on the keyboard, one after
    /// the other, wherever the focus is; `SHIFT` held with the key after it.
    pub fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        let mut shift = false;
        for key in keys {
            if *key == SHIFT {
                shift = true;
                actions.push(json!({ "type": "keyDown", "value": SHIFT }));
                continue;
            }
            actions.push(json!({ "type": "keyDown", "value": key }));
            actions.push(json!({ "type": "keyUp", "value": key }));
            if shift {
                actions.push(json!({ "type": "keyUp", "value": SHIFT }));
                shift = false;
            }
        }
        self.session(
            "POST",
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
        self.session("DELETE", "/actions", None);
    }

    /// What the browser's console said at `SEVERE` level since the last look (errors,
    /// failed loads, uncaught exceptions).
    pub fn console_errors(&self) -> Vec<String> {
        let logs = self.session("POST", "/se/log", Some(json!({ "type": "browser" })));
        logs.as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self.session("GET", "/screenshot", None);
        let bytes = decode(&png);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// The page printed as PDF (A4), as Chromium prints it.
    pub fn print_pdf(&self) -> Vec<u8> {
        decode(&self.session("POST", "/print", Some(json!({}))))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                "",
            );
        }
        // Our own child, by its handle.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The bytes of a base64 answer (screenshots, PDFs).
fn decode(value: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// One HTTP/1.1 request to ChromeDriver, which keeps connections open: the answer is
/// read by its `Content-Length`. Its status and body.
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer).unwrap();
    (status, String::from_utf8_lossy(&answer).into_owned())
}
