//! The `Command` probe: an argv (no shell) that must exit 0 within its timeout. It runs
//! in a process group of its own, which is killed whole when it ends (in time, at the
//! timeout, or when the check is dropped: a stop of the daemon, a start's halt check
//! given up), so a script's children do not outlive it; one that left the group with
//! setsid() or setpgid() is swept by the daemon (`support::orphans`).

use std::{os::fd::AsFd as _, process::Stdio, time::Duration};

use rustix::process::{pidfd_open, waitid, PidfdFlags, WaitId, WaitIdOptions};

use crate::support::{child::stop_signals_unblocked, orphans, thread::on_own_thread};

/// `Command(argv, timeout)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub(super) argv: Vec<String>,
    pub(super) timeout: Duration,
}

impl Command {
    pub(super) async fn check(&self) -> Result<String, String> {
        let (program, args) = self.argv.split_first().ok_or("an empty argv")?;
        let mut command = tokio::process::Command::new(program);
        // The daemon blocks the stop signals; the probe must not inherit that.
        stop_signals_unblocked(command.as_std_mut());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // Known as the daemon's until it is reaped: what leaves the group is not.
        let (mut child, group) = orphans::start_group(|| command.spawn(), |c| c.id())
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        // Its group is its own (process_group(0)) and its leader not reaped until the end,
        // so the group's ID names exactly what it started.
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        // Declared after the child: dropped first, while its leader is not reaped yet.
        let whole_group = GroupKill(pid);
        let in_time = match pid.and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok()) {
            // Waited for on a thread of its own (not the injections' pool), without
            // reaping: the group's ID stays its own until the end.
            Some(pidfd) => {
                let waited = on_own_thread("probe", move || {
                    waitid(
                        WaitId::PidFd(pidfd.as_fd()),
                        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                    )
                });
                tokio::time::timeout(self.timeout, waited).await.is_ok()
            }
            // No pidfd to watch: its exit, reaped.
            None => tokio::time::timeout(self.timeout, child.wait())
                .await
                .is_ok(),
        };
        // In time or not, what it left running in its group ends with it; an orphan that
        // left the group (setsid) is the daemon's now, and swept.
        drop(whole_group);
        let status = child.wait().await;
        drop(group);
        orphans::sweep();
        if !in_time {
            return Err(format!(
                "no exit within {}: killed",
                humantime::format_duration(self.timeout)
            ));
        }
        match status {
            Ok(status) if status.success() => Ok("exited 0".to_owned()),
            Ok(status) => Err(match status.code() {
                Some(code) => format!("exited {code}"),
                None => format!("ended by a signal ({status})"),
            }),
            Err(e) => Err(format!("cannot wait for {program}: {e}")),
        }
    }
}

/// Kills a probe's process group (named by its leader) when dropped: at the check's end,
/// and when the check itself is dropped before it (`kill_on_drop` reaches the leader
/// alone, and what it started in its group would run on).
struct GroupKill(Option<rustix::process::Pid>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(argv: &[&str], timeout_ms: u64) -> Command {
        Command {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn a_command_passes_on_exit_0_fails_otherwise_and_is_killed_at_its_timeout() {
        assert_eq!(
            command(&["true"], 5000).check().await,
            Ok("exited 0".into())
        );
        assert_eq!(
            command(&["false"], 5000).check().await,
            Err("exited 1".into())
        );
        // No shell: the argv is the program and its arguments, as written.
        assert_eq!(
            command(&["sh", "-c", "exit 3"], 5000).check().await,
            Err("exited 3".into())
        );
        let started = std::time::Instant::now();
        assert_eq!(
            command(&["sleep", "30"], 200).check().await,
            Err("no exit within 200ms: killed".into())
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let missing = command(&["/nonexistent/probe"], 5000)
            .check()
            .await
            .unwrap_err();
        assert!(
            missing.starts_with("cannot run /nonexistent/probe: "),
            "{missing}"
        );
    }
}
