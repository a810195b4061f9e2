//! `Daemon`: the real daemon started by a test, its log lines read as they come.

use super::*;

/// A daemon the test started, with its log lines as they come.
pub struct Daemon {
    child: Option<std::process::Child>,
    pid: u32,
    lines: std::sync::mpsc::Receiver<String>,
    /// While true, nobody reads the daemon's stderr (a reader that stopped reading).
    stalled: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
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

    /// Starts it with these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn(args, env)
    }

    /// Starts it with `--log-format json` and these environment variables.
    pub fn start_json(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let mut d = Self::spawn(&all, env);
        d.json = true;
        d
    }

    /// Starts it under `prlimit --nofile=LIMITS` (prlimit execs it in place: same PID).
    pub fn start_with_open_files(limits: &str, args: &[&str]) -> Daemon {
        let mut command = std::process::Command::new("prlimit");
        command
            .arg(format!("--nofile={limits}"))
            .arg("--")
            .arg(bin())
            .env("STATE_DIRECTORY", state_dir())
            .env_remove("RUST_BACKTRACE");
        Self::spawn_command(command, args, &[])
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_command(command(), args, env)
    }

    fn spawn_command(
        mut command: std::process::Command,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        assert!(
            !args.contains(&"--execute"),
            "never --execute outside a namespace"
        );
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        let stalled = std::sync::Arc::<(std::sync::Mutex<bool>, std::sync::Condvar)>::default();
        let gate = stalled.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut reader = std::io::BufReader::new(stderr);
            loop {
                let (held, changed) = &*gate;
                drop(
                    changed
                        .wait_while(held.lock().unwrap(), |held| *held)
                        .unwrap(),
                );
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line).to_owned();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            pid: child.id(),
            child: Some(child),
            lines,
            stalled,
            log: Vec::new(),
            json: false,
        }
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops reading the daemon's stderr (`false`: reads again), as a paused terminal or
    /// a hung log collector does.
    pub fn stall_log(&self, stalled: bool) {
        let (held, changed) = &*self.stalled;
        *held.lock().unwrap() = stalled;
        changed.notify_all();
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

    /// The port from `Listening on http://127.0.0.1:PORT`, once every plugin file has
    /// loaded: the daemon serves without a file that takes longer than a second (as one
    /// can on a busy machine), refusing its faults as still loading meanwhile.
    pub fn port(&mut self) -> u16 {
        let before = self.log.len();
        let port = self.port_while_loading();
        // This start's lines only: a restart's earlier start may have been slow.
        let slow =
            |l: &String| l.contains(": no answer yet after ") && l.contains("starting without it");
        if self.log[before..].iter().any(slow) {
            self.wait_for(|l| l.contains("Plugin files loaded: "));
        }
        port
    }

    /// The port from `Listening on http://127.0.0.1:PORT`, plugin files loading or not.
    pub fn port_while_loading(&mut self) -> u16 {
        let line = if self.json {
            let line = self.wait_for(|l| l.contains("\"Listening on http://"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            v["message"].as_str().unwrap().to_owned()
        } else {
            self.wait_for(|l| l.starts_with("Listening on http://"))
        };
        line.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends these signals to this daemon (our own child, by its exact PID) back to back,
    /// microseconds apart: two `kill` commands can be hundreds of milliseconds apart on a
    /// busy machine.
    pub fn signals_at_once(&self, signals: &[nix::sys::signal::Signal]) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("a PID"));
        for &signal in signals {
            nix::sys::signal::kill(pid, signal).expect("the daemon is signalled");
        }
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
            // Where it stands, for the next one who reads this failure: each thread's
            // state and kernel wait, and the signals pending, blocked and caught.
            let threads = threads_of(self.pid);
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            // And what it wrote that nobody waited for (the pipe ends with it).
            self.stall_log(false);
            let mut unread = Vec::new();
            while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
                unread.push(line);
            }
            panic!(
                "the daemon did not exit within {DEADLINE:?}: {:?}\nthen, unread: {unread:?}\nits threads:\n{threads}",
                self.log
            );
        };
        // The reader thread ends at the pipe's end of file.
        self.stall_log(false);
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            // The closing `error: ...` lines of an exit 1 are written as they are.
            let message = if self.json || line.starts_with("error: ") {
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

/// Each thread of process `pid`: its name, state, the kernel function it waits in, and
/// its signal masks (pending, blocked, caught), one line each.
fn threads_of(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(gone)".to_owned();
    };
    let mut lines = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let status = read("status");
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map_or("?", str::trim)
                .to_owned()
        };
        lines.push(format!(
            "  {} {}: state {}, waits in {}, SigPnd {} ShdPnd {} SigBlk {} SigCgt {}",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            field("State:"),
            read("wchan").trim(),
            field("SigPnd:"),
            field("ShdPnd:"),
            field("SigBlk:"),
            field("SigCgt:"),
        ));
    }
    lines.sort();
    lines.join("\n")
}
