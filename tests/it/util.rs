//! Helpers: run the real binary, run a script in a fresh PID namespace, find the built
//! plugin libraries.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nightmare-monkey"))
}

/// The state directory every run of the binary gets (journal, pause file, poller state),
/// so no test writes to this machine's /var/lib/nightmare-monkey.
pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("nm-it-state-{}", std::process::id()))
}

/// The binary, ready to run, with its state kept under [`state_dir`].
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env("STATE_DIRECTORY", state_dir())
        .env_remove("RUST_BACKTRACE");
    c
}

/// Where cargo puts the plugin libraries it builds for this test run: beside the test
/// binary, in `target/<profile>/deps` (the copies one level up are refreshed only by
/// `cargo build`, so they may be stale).
pub fn lib_dir() -> PathBuf {
    std::env::current_exe()
        .expect("the test binary has a path")
        .parent()
        .expect("the test binary has a directory")
        .to_owned()
}

/// A plugin library built for this run (`libprocess_kill.so`, `libpanic_plugin.so`).
pub fn built_lib(name: &str) -> PathBuf {
    let path = lib_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// What a finished command left.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary with `args` (on this machine: use only for dry runs).
pub fn monkey(args: &[&str]) -> Run {
    command()
        .args(args)
        .output()
        .expect("the binary runs")
        .into()
}

/// Runs `script` with `sh` as PID 1 of a fresh PID namespace (with its own /proc), with
/// `$NM` naming the binary and `$LIB` the directory of the built plugins. Only processes
/// the script starts there can be signalled.
pub fn in_namespace(script: &str) -> Run {
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            script,
        ])
        .env("NM", bin())
        .env("LIB", lib_dir())
        .env("STATE_DIRECTORY", state_dir())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("unshare runs (install util-linux)");
    let run = Run::from(out);
    assert!(
        !run.stderr.contains("unshare: "),
        "cannot create a PID namespace here: {}",
        run.stderr
    );
    run
}

/// The JSON objects printed one a line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect()
}

/// The `key value` lines a script printed, as pairs.
pub fn pairs(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
        .collect()
}

/// A daemon the test started, with its log lines as they come.
pub struct Daemon {
    child: Option<std::process::Child>,
    pid: u32,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: Vec<String>,
    /// Started with `--log-format json`: lines are kept whole, not stripped of a
    /// timestamp.
    json: bool,
}

/// How long any wait for the daemon may take before the test fails.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

impl Daemon {
    /// Starts `nightmare-monkey ARGS` (dry run unless the args say otherwise: on this
    /// machine tests never pass --execute).
    pub fn start(args: &[&str]) -> Daemon {
        Self::spawn(args, &[])
    }

    /// Starts it with `--log-format json` and these environment variables.
    pub fn start_json(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let mut d = Self::spawn(&all, env);
        d.json = true;
        d
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        assert!(
            !args.contains(&"--execute"),
            "never --execute outside a namespace"
        );
        let mut child = command()
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            pid: child.id(),
            child: Some(child),
            lines,
            log: Vec::new(),
            json: false,
        }
    }

    /// Waits for a log line (timestamp stripped) for which `want` holds, and returns it.
    pub fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> String {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let message = if self.json {
                        line
                    } else {
                        strip_timestamp(&line).to_owned()
                    };
                    self.log.push(message.clone());
                    if want(&message) {
                        return message;
                    }
                }
                Err(_) => panic!(
                    "no such log line within {DEADLINE:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The port from `Listening on http://127.0.0.1:PORT`.
    pub fn port(&mut self) -> u16 {
        let line = if self.json {
            let line = self.wait_for(|l| l.contains("\"Listening on http://"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            v["message"].as_str().unwrap().to_owned()
        } else {
            self.wait_for(|l| l.starts_with("Listening on http://"))
        };
        line.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends a signal by name to this daemon (our own child, by its exact PID).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the daemon to exit and returns its exit code, with all its log.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("the daemon is running");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let Ok(status) = rx.recv_timeout(DEADLINE) else {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            panic!(
                "the daemon did not exit within {DEADLINE:?}: {:?}",
                self.log
            );
        };
        // The reader thread ends at the pipe's end of file.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            let message = if self.json {
                line
            } else {
                strip_timestamp(&line).to_owned()
            };
            self.log.push(message);
        }
        status.expect("waiting for the daemon").code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `2017/12/14 16:32:41 message` -> `message`, checking the timestamp's shape.
pub fn strip_timestamp(line: &str) -> &str {
    let shape: String = line
        .chars()
        .take(20)
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999/99/99 99:99:99 ", "not a log line: {line:?}");
    &line[20..]
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; `headers` are extra `Name: value` lines.
pub fn http(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Answer {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body; that is fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// One scripted answer of the fake HTTP server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: std::time::Duration,
}

impl Reply {
    /// 200 with `{"likes_count": N}`, as Qiita answers.
    pub fn likes(n: i64) -> Reply {
        Reply::body(200, &format!("{{\"id\":\"abc\",\"likes_count\":{n}}}"))
    }
    pub fn body(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }
}

/// What the fake server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve_one(mut stream: std::net::TcpStream, state: &Shared) {
    use std::io::{BufRead as _, Write as _};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let method = first.split(' ').next().unwrap_or_default().to_owned();
    let path = first.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let reply = {
        let (lock, seen) = &**state;
        let mut guard = lock.lock().unwrap();
        let reply = if guard.0.len() > 1 {
            guard.0.pop_front().unwrap()
        } else {
            guard.0[0].clone()
        };
        guard.1.push(Seen {
            method,
            path,
            headers,
            body,
            at: std::time::Instant::now(),
        });
        seen.notify_all();
        reply
    };
    std::thread::sleep(reply.delay);
    let mut answer = format!(
        "HTTP/1.1 {} Status\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        answer.push_str(&format!("{k}: {v}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&reply.body);
    let _ = stream.write_all(answer.as_bytes());
}

type Shared = std::sync::Arc<(
    std::sync::Mutex<(std::collections::VecDeque<Reply>, Vec<Seen>)>,
    std::sync::Condvar,
)>;

/// A fake HTTP server on loopback answering a script, one reply a request, the last one
/// again once the script is spent. It stands in for the Qiita API.
pub struct FakeServer {
    pub port: u16,
    shared: Shared,
}

impl FakeServer {
    pub fn start(script: Vec<Reply>) -> FakeServer {
        assert!(!script.is_empty());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Shared = Default::default();
        shared.0.lock().unwrap().0 = script.into();
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = state.clone();
                // One thread a connection: a reply that hangs must not hold up the next.
                std::thread::spawn(move || serve_one(stream, &state));
            }
        });
        FakeServer { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until it has answered at least `n` requests, and returns what it saw.
    pub fn wait_requests(&self, n: usize) -> Vec<Seen> {
        let (lock, seen) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = seen
            .wait_timeout_while(guard, DEADLINE, |g| g.1.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} requests within {DEADLINE:?}",
            guard.1.len()
        );
        guard.1.clone()
    }
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nm-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process of our own for dry runs to choose (killed, by its PID, when dropped).
pub struct Sleeper(std::process::Child);

impl Sleeper {
    pub fn start() -> Sleeper {
        Sleeper::named(std::path::Path::new("sleep"))
    }
    /// Runs a copy of `sleep` under another name, so its short name (comm) is that name.
    pub fn named(program: &std::path::Path) -> Sleeper {
        Sleeper(
            Command::new(program)
                .arg("1000")
                .spawn()
                .expect("sleep starts"),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
