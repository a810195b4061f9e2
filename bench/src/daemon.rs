//! The real daemon, started as the harness's child with its API on loopback, and what
//! the kernel says it costs.

use std::{
    ffi::OsString,
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::original;

/// A running daemon; stopped (SIGTERM, then waited for) when dropped.
pub struct Daemon {
    child: Child,
    /// Where its API listens.
    pub addr: SocketAddr,
    /// How long it took from the spawn to accepting a connection.
    pub startup: Duration,
}

/// A free loopback port: bound, read, released.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}

/// The config every benchmark runs with: dry, every day and hour, the API on `addr`, the
/// state in `dir`; the timer on with the original's intervals (hours apart) or off.
fn config(addr: SocketAddr, dir: &Path, timer: bool, more: &str) -> String {
    format!(
        r#"(
    schedule: Uniform(min_interval: 3600, max_interval: 21600),
    window: (days: "*", time: "00:00-24:00"),
    http: (enabled: true, listen: "{addr}"),
    timer: (enabled: {timer}),
    state_dir: "{dir}",
    plugin_dirs: [],{more}
)
"#,
        dir = dir.display()
    )
}

impl Daemon {
    /// Starts `binary` and waits until its API accepts connections.
    pub fn start(binary: &Path, dir: &Path, timer: bool) -> anyhow::Result<Daemon> {
        Self::start_with(binary, dir, timer, "", &[])
    }

    /// The same with `more` config fields (each line starting with a comma) and `args`.
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        timer: bool,
        more: &str,
        args: &[&str],
    ) -> anyhow::Result<Daemon> {
        let addr = free_port()?;
        let config_path: PathBuf = dir.join("bench.ron");
        fs::create_dir_all(dir)?;
        fs::write(&config_path, config(addr, dir, timer, more))?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("STATE_DIRECTORY", dir);
        let hint = format!(
            "run `{} --config {}` to see why",
            binary.display(),
            config_path.display()
        );
        Self::spawn(&mut command, addr, &hint, Duration::from_secs(10))
    }

    /// The same as [`Daemon::start`] with no timer, run by `wrapper` (a program and its
    /// arguments, such as valgrind's), which may take a minute to start it.
    pub fn start_wrapped(
        wrapper: &[OsString],
        binary: &Path,
        dir: &Path,
    ) -> anyhow::Result<Daemon> {
        let Some((program, arguments)) = wrapper.split_first() else {
            bail!("no program to run the daemon with");
        };
        let addr = free_port()?;
        let config_path: PathBuf = dir.join("bench.ron");
        fs::create_dir_all(dir)?;
        fs::write(&config_path, config(addr, dir, false, ""))?;
        let mut command = Command::new(program);
        command
            .args(arguments)
            .arg(binary)
            .arg("--config")
            .arg(&config_path)
            .env("STATE_DIRECTORY", dir);
        let hint = format!(
            "run `{} {} --config {}` to see why",
            Path::new(program).display(),
            binary.display(),
            config_path.display()
        );
        Self::spawn(&mut command, addr, &hint, Duration::from_secs(60))
    }

    /// Starts the original Nightmare Monkey (the 2017 Go daemon) at `binary`, dry, and
    /// waits until its API accepts connections. It binds every interface: only ever
    /// called inside the network namespace the harness made, where loopback is alone.
    pub fn start_original(binary: &Path) -> anyhow::Result<Daemon> {
        let addr = free_port()?;
        let mut command = Command::new(binary);
        command.args(original::arguments(addr.port()));
        let hint = format!(
            "run `{} {}` to see why (is it the original's binary?)",
            binary.display(),
            original::arguments(addr.port()).join(" ")
        );
        Self::spawn(&mut command, addr, &hint, Duration::from_secs(10))
    }

    /// Spawns `command`, output thrown away, and waits until `addr` accepts a
    /// connection, at most `limit`; `hint` says how to see why it did not.
    fn spawn(
        command: &mut Command,
        addr: SocketAddr,
        hint: &str,
        limit: Duration,
    ) -> anyhow::Result<Daemon> {
        let start = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}",
                    Path::new(command.get_program()).display()
                )
            })?;
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("the daemon exited ({status}) before listening; {hint}");
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the daemon did not listen on {addr} within {} s; {hint}",
                    limit.as_secs()
                );
            }
            thread::sleep(Duration::from_micros(100));
        }
        let startup = start.elapsed();
        Ok(Daemon {
            child,
            addr,
            startup,
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the kernel says of it now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Our own child, by its exact PID.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on the PID of a child not yet reaped, so it cannot be reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}

/// A process's resident memory, CPU time and context switches (wake-ups), summed over
/// its threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Resident set, in KiB: everything mapped in, the shared pages of the binary and
    /// libc included.
    pub rss_kib: u64,
    /// Its anonymous part, in KiB: the memory that is the process's alone.
    pub anon_kib: u64,
    /// CPU time of all its threads, from the scheduler's nanosecond accounting.
    pub cpu: Duration,
    /// Voluntary and involuntary context switches of all its threads.
    pub switches: u64,
    /// How many threads.
    pub threads: usize,
}

/// The number after `key` in a `/proc/.../status` text.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Usage {
    /// Reads `/proc/<pid>/status` and every thread's `status` and `schedstat`.
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let mut usage = Usage {
            rss_kib: status_field(&status, "VmRSS:").context("no VmRSS")?,
            anon_kib: status_field(&status, "RssAnon:").unwrap_or(0),
            ..Usage::default()
        };
        for task in fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?.path();
            let Ok(status) = fs::read_to_string(task.join("status")) else {
                continue; // the thread ended meanwhile
            };
            usage.switches += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0)
                + status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            let schedstat = fs::read_to_string(task.join("schedstat")).unwrap_or_default();
            let ns: u64 = schedstat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            usage.cpu += Duration::from_nanos(ns);
            usage.threads += 1;
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read() {
        let text = "Name:\tx\nVmRSS:\t   4321 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_field(text, "VmRSS:"), Some(4321));
        assert_eq!(status_field(text, "voluntary_ctxt_switches:"), Some(7));
        assert_eq!(status_field(text, "nonvoluntary_ctxt_switches:"), None);
    }

    #[test]
    fn this_process_has_a_usage() {
        let usage = Usage::of(std::process::id()).unwrap();
        assert!(usage.rss_kib > 0 && usage.threads >= 1, "{usage:?}");
    }
}
